//! Real Linux as dom0: Debian's arm64 kernel (a raw `Image` in /boot/vmlinuz-*) and a small
//! initramfs built here from busybox-static, whose /init prints a marker, what
//! /sys/hypervisor and /dev/xen show, and powers off. Packages are fetched and cached by
//! `env::debian_package`; the initramfs is an uncompressed newc cpio written by this file.

use crate::env::{self, Result};
use crate::qemu::{Boot, Outcome};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Printed by /init once dom0 userspace runs.
pub const MARKER: &str = "XENITH-DOM0-USERSPACE-OK";
/// The line /init prints just before [`MARKER`]: dom0's /proc/uptime then.
pub const UPTIME_AT_MARKER: &str = "dom0 uptime at marker:";
/// dom0's command line (the Xen reference setup's, see ../shared/facts/environment.md).
pub const DOM0_ARGS: &str = "console=hvc0 earlycon=xenboot rdinit=/init";

/// Modules the kernel package builds as modules that /init loads: Xen's devices (so /dev/xen
/// has evtchn, gntdev and privcmd) and virtio-rng (/dev/hwrng, when QEMU has a
/// virtio-rng-pci device: DMA behind the SMMU and a passed-through INTx interrupt), and
/// virtio-blk (/dev/vda, the stress suite's DMA disk).
const MODULES: &[&str] = &["xen-evtchn", "xen-gntdev", "xen-gntalloc", "xen-privcmd", "xenfs", "virtio_pci", "virtio-rng", "virtio_blk", "virtio_net"];
/// Modules /init loads only for the MSI test (`xenith-msi` on dom0's command line): the
/// network driver and what it needs, so other boots (and their timings) do not change.
const MSI_ONLY_MODULES: &[&str] = &["virtio_net", "net_failover", "failover"];

/// Paths of the kernel and initramfs to boot.
pub struct Dom0Linux {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// Fetch (cached) Debian stable's kernel and busybox, build the initramfs.
pub fn fixtures() -> Result<Dom0Linux> {
    fixtures_from(env::Suite::Stable)
}

/// Debian stable's kernel package, unpacked: its directory, its raw Image and its version
/// (the modules are under lib/modules/VERSION).
pub fn stable_kernel() -> Result<(PathBuf, PathBuf, String)> {
    kernel_from(env::Suite::Stable)
}

fn kernel_from(suite: env::Suite) -> Result<(PathBuf, PathBuf, String)> {
    let kpkg = env::debian_depends_in("linux-image-arm64", "arm64", suite)?;
    let kdir = env::debian_package(&kpkg, "arm64")?;
    let (kernel, version) = vmlinuz(&kdir, &kpkg)?;
    check_image(&kernel)?;
    Ok((kdir, kernel, version))
}

/// As [`fixtures`], with the kernel from `suite` (bookworm-backports' 6.12 has
/// CONFIG_XEN_UNPOPULATED_ALLOC: it takes grant and foreign mappings from the extended regions).
pub fn fixtures_from(suite: env::Suite) -> Result<Dom0Linux> {
    let (kdir, kernel, version) = kernel_from(suite)?;
    let bb = env::debian_package("busybox-static", "arm64")?.join("bin/busybox");
    let busybox = std::fs::read(&bb).map_err(|e| format!("{}: {e}", bb.display()))?;
    let modules = modules(&kdir.join("lib/modules").join(&version))?;

    let out = env::cache_dir().join("linux");
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let initrd = out.join(format!("initramfs-{version}.cpio"));
    let fuzz = match user_program(&out, "tools/xtask/fuzz/privcmd_fuzz.rs", "privcmd_fuzz") {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!("xtask: privcmd fuzzer not built ({e}): `xenith-fuzz` will report FUZZ-FAILED");
            None
        }
    };
    let stress = match user_program(&out, "tools/xtask/stress/stress.rs", "stress") {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!("xtask: stress suite not built ({e}): `xenith-stress=` will report STRESS-FAILED");
            None
        }
    };
    let cntvct = match user_program(&out, "tools/xtask/fuzz/cntvct.rs", "cntvct") {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!("xtask: counter reader not built ({e}): the boot-overhead bench will find no CNTVCT line");
            None
        }
    };
    let toolstack_fuzz = match user_program(&out, "tools/xtask/fuzz/toolstack_fuzz.rs", "toolstack_fuzz") {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!("xtask: toolstack fuzzer not built ({e}): `xenith-tsfuzz` will report TSFUZZ-FAILED");
            None
        }
    };
    let domexc = match user_program(&out, "tools/xtask/fuzz/domexc.rs", "domexc") {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!("xtask: VIRQ_DOM_EXC waiter not built ({e}): `xenith-wait-domu` will not wait");
            None
        }
    };
    let gnthold = match user_program(&out, "tools/xtask/fuzz/gnthold.rs", "gnthold") {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!("xtask: grant holder not built ({e}): the toolstack test's destroy will find no grant held");
            None
        }
    };
    let programs = Programs { fuzzer: fuzz.as_deref(), stress: stress.as_deref(), cntvct: cntvct.as_deref(), domexc: domexc.as_deref(), toolstack_fuzzer: toolstack_fuzz.as_deref(), gnthold: gnthold.as_deref() };
    std::fs::write(&initrd, initramfs(&busybox, &modules, &programs)).map_err(|e| format!("{}: {e}", initrd.display()))?;
    Ok(Dom0Linux { kernel, initrd })
}

/// Printed by dom0's /init (`xenith-wait-domu`) once its domU stopped, or it gave up waiting.
pub const DOM0_AFTER_DOMU: &str = "dom0: still running after the domU stopped";
/// Printed by the domU's /init once its userspace runs (on its vpl011: `DOM1: ...`).
pub const DOMU_MARKER: &str = "XENITH-DOMU-USERSPACE-OK";

/// The domU's /init: the marker, its virtual timer's interrupt count before and after a
/// sleep (which needs that interrupt), what /sys/hypervisor says, the CPUs online, then power
/// off after a
/// while (time for dom0 to be listening for VIRQ_DOM_EXC).
fn domu_init_script() -> String {
    format!(
        "#!/bin/busybox sh\n\
         /bin/busybox --install -s /bin\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sysfs /sys\n\
         echo \"{DOMU_MARKER} uptime $(cat /proc/uptime)\"\n\
         echo \"domU timer before: $(grep arch_timer /proc/interrupts)\"\n\
         sleep 2\n\
         echo \"domU timer after: $(grep arch_timer /proc/interrupts)\"\n\
         echo \"domU hypervisor type: $(cat /sys/hypervisor/type 2>&1)\"\n\
         echo \"domU cpus online: $(cat /sys/devices/system/cpu/online)\"\n\
         echo \"domU interrupts:\"; cat /proc/interrupts\n\
         sleep 20\n\
         echo \"domU: powering off\"\n\
         poweroff -f\n"
    )
}

/// A dom0less domU's initramfs: busybox and its /init, nothing else.
pub fn domu_initramfs(busybox: &[u8]) -> Vec<u8> {
    let mut c = busybox_archive(busybox, &[]);
    c.file("init", 0o755, domu_init_script().as_bytes());
    c.finish()
}

/// Debian stable's kernel (dom0's) and the domU's own initramfs, built here.
pub fn domu_fixtures() -> Result<Dom0Linux> {
    let l = fixtures()?;
    let bb = env::debian_package("busybox-static", "arm64")?.join("bin/busybox");
    let busybox = std::fs::read(&bb).map_err(|e| format!("{}: {e}", bb.display()))?;
    let initrd = env::cache_dir().join("linux").join("initramfs-domu.cpio");
    std::fs::write(&initrd, domu_initramfs(&busybox)).map_err(|e| format!("{}: {e}", initrd.display()))?;
    Ok(Dom0Linux { kernel: l.kernel, initrd })
}

/// Printed by /init after the privcmd fuzzer ran its calls (`xenith-fuzz` on dom0's command line).
pub const FUZZ_DONE: &str = "FUZZ-DONE calls=100000";

/// Build a dom0 userspace program (`src`, relative to the repository: no_std, raw Linux
/// syscalls, e.g. tools/xtask/fuzz/privcmd_fuzz.rs) with rustc alone into a static aarch64
/// ELF: no C toolchain or Linux Rust target is needed, only aarch64-unknown-none and its
/// rust-lld. Returns the stripped executable's bytes.
fn user_program(out: &Path, src: &str, name: &str) -> Result<Vec<u8>> {
    let src = env::root().join(src);
    let exe = out.join(name);
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let st = std::process::Command::new(rustc)
        .current_dir(env::root())
        .args(["--edition", "2021", "--target", "aarch64-unknown-none", "-C", "panic=abort", "-C", "opt-level=2"])
        .args(["-C", "relocation-model=static", "-C", "strip=symbols", "-C", "debuginfo=0", "-C", "link-arg=--entry=_start", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    if !st.success() {
        return Err(format!("rustc {} failed", src.display()));
    }
    std::fs::read(&exe).map_err(|e| format!("{}: {e}", exe.display()))
}

/// The kernel in an unpacked kernel package `kdir` (package `kpkg`): its /boot/vmlinuz-* and
/// the version its name carries.
pub fn vmlinuz(kdir: &Path, kpkg: &str) -> Result<(PathBuf, String)> {
    let kernel = std::fs::read_dir(kdir.join("boot"))
        .map_err(|e| format!("{}: {e}", kdir.join("boot").display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
        .ok_or_else(|| format!("{kpkg} has no /boot/vmlinuz-*"))?;
    let version = kernel.file_name().map(|n| n.to_string_lossy().trim_start_matches("vmlinuz-").to_string()).unwrap_or_default();
    Ok((kernel, version))
}

/// A raw arm64 Image has "ARM\x64" at offset 0x38 (a gzip or EFI zboot kernel would not boot).
fn check_image(path: &Path) -> Result<()> {
    let mut head = [0u8; 64];
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    std::io::Read::read_exact(&mut f, &mut head).map_err(|e| format!("{}: {e}", path.display()))?;
    if &head[0x38..0x3c] != b"ARM\x64" {
        return Err(format!("{} is not a raw arm64 Image (no ARM\\x64 magic at 0x38)", path.display()));
    }
    Ok(())
}

/// dom0's modules ([`MODULES`]), see [`modules_named`].
pub fn modules(moddir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    modules_named(moddir, MODULES)
}

/// The modules `wanted`, each after the modules it depends on (read from its `depends=` modinfo;
/// the package ships no modules.dep), decompressed: `(file name, bytes)`.
pub fn modules_named(moddir: &Path, wanted: &[&str]) -> Result<Vec<(String, Vec<u8>)>> {
    let dir = moddir.join("kernel");
    // Every module file by name (read only when wanted: a wanted module's dependencies,
    // e.g. virtio_pci's virtio_pci_modern_dev on 6.1, come along).
    let mut paths: std::collections::BTreeMap<String, std::path::PathBuf> = std::collections::BTreeMap::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let stem = file.split('.').next().unwrap_or("").to_string();
            paths.insert(stem, path);
        }
    }
    fn place(name: &str, paths: &std::collections::BTreeMap<String, std::path::PathBuf>, order: &mut Vec<(String, Vec<u8>)>, depth: u32) -> Result<()> {
        // modinfo names dependencies with '_' where files may use '-'.
        let key = [name.to_string(), name.replace('_', "-"), name.replace('-', "_")].into_iter().find(|k| paths.contains_key(k));
        let Some(key) = key else { return Ok(()) }; // built in
        if depth > 8 || order.iter().any(|(n, _)| *n == key) {
            return Ok(());
        }
        let bytes = unpack_module(&paths[&key])?;
        for dep in modinfo(&bytes, "depends").split(',').filter(|d| !d.is_empty()) {
            place(dep, paths, order, depth + 1)?;
        }
        order.push((key, bytes));
        Ok(())
    }
    let mut order: Vec<(String, Vec<u8>)> = Vec::new();
    for m in wanted {
        if paths.contains_key(*m) {
            place(m, &paths, &mut order, 0)?;
        } else {
            eprintln!("xtask: kernel module {m} not found under {} (built in?): skipped", dir.display());
        }
    }
    Ok(order.into_iter().map(|(n, b)| (format!("{n}.ko"), b)).collect())
}

/// A module file's bytes, decompressed when it is `.ko.xz` (with the host's `xz`).
fn unpack_module(path: &Path) -> Result<Vec<u8>> {
    if path.extension().is_some_and(|e| e == "xz") {
        // A fresh Debian machine may lack xz (bookworm-backports' kernel compresses its modules).
        env::ensure_tool("xz", "xz-utils")?;
        let out = std::process::Command::new("xz")
            .arg("-dc")
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run xz to unpack {}: {e}", path.display()))?;
        if !out.status.success() {
            return Err(format!("xz -dc {} failed", path.display()));
        }
        return Ok(out.stdout);
    }
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// A `key=value` string from a module's .modinfo section ("" if absent).
fn modinfo(module: &[u8], key: &str) -> String {
    let needle = format!("{key}=");
    module
        .split(|&b| b == 0)
        .find_map(|field| field.strip_prefix(needle.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

/// Markers around the bytes /init writes to the console with `xenith-console-bytes` (console.rs
/// compares what reaches the UART with Xen 4.17's).
pub const CONSOLE_BYTES_BEGIN: &[u8] = b"CONSOLE-BYTES-BEGIN";
pub const CONSOLE_BYTES_END: &[u8] = b"CONSOLE-BYTES-END";

/// What /init writes: every byte value but NUL, then line endings a program may write.
pub fn console_payload() -> Vec<u8> {
    let mut p: Vec<u8> = (1..=255u8).collect();
    p.extend_from_slice(b"\r\nCRLF\nLF\rCR\r\rCRCR\n\tTAB\x1b[1mESC\x1b[0m \xc3\xa9 UTF-8\x7f\nend without newline\r");
    p
}

/// The /init lines that write [`console_payload`] between the markers (`printf` with octal escapes).
pub fn console_bytes_init_lines() -> String {
    let fmt: String = console_payload().iter().map(|b| format!("\\{b:03o}")).collect();
    format!(
        "if grep -q xenith-console-bytes /proc/cmdline; then echo {}; printf '{fmt}'; echo; echo {}; fi\n",
        String::from_utf8_lossy(CONSOLE_BYTES_BEGIN),
        String::from_utf8_lossy(CONSOLE_BYTES_END)
    )
}

/// dom0's /init.
fn init_script(modules: &[(String, Vec<u8>)]) -> String {
    let mut s = String::from(
        "#!/bin/busybox sh\n\
         [ -x /bin/cntvct ] && /bin/cntvct\n\
         /bin/busybox --install -s /bin\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sysfs /sys\n\
         mount -t devtmpfs devtmpfs /dev\n",
    );
    for (name, _) in modules {
        let stem = name.split('.').next().unwrap_or("");
        let only_msi = if MSI_ONLY_MODULES.contains(&stem) { "grep -q xenith-msi /proc/cmdline && " } else { "" };
        s.push_str(&format!("{only_msi}{{ insmod /lib/modules/{name} || echo \"insmod {name} failed\"; }}\n"));
    }
    // With a dom0less domU beside it: hear of its stop (VIRQ_DOM_EXC) from early on.
    s.push_str("if grep -q xenith-wait-domu /proc/cmdline; then /bin/domexc > /tmp/domexc.log 2>&1 & fi\n");
    s.push_str(&console_bytes_init_lines());
    s.push_str(&format!(
        "mkdir -p /proc/xen && mount -t xenfs xenfs /proc/xen 2>/dev/null\n\
         if grep -q xenith-fuzz /proc/cmdline; then if [ -x /bin/privcmd_fuzz ]; then /bin/privcmd_fuzz; else echo FUZZ-FAILED no fuzzer; fi; echo \"fuzz: dom0 alive after the fuzzer, $(cat /proc/uptime)\"; fi\n\
         if [ -x /etc/xenith/toolstack.sh ]; then /etc/xenith/toolstack.sh; fi\n\
         if grep -q xenith-tsfuzz /proc/cmdline; then if [ -x /bin/toolstack_fuzz ]; then /bin/toolstack_fuzz; else echo TSFUZZ-FAILED no fuzzer; fi; echo \"tsfuzz: dom0 alive after the fuzzer, $(cat /proc/uptime)\"; sleep 2; for step in pause unpause destroy; do touch /tmp/tsfuzz-$step; [ -x /bin/toolstack_fuzz ] && /bin/toolstack_fuzz; rm -f /tmp/tsfuzz-$step; [ $step = pause ] && sleep 2 && echo \"{TSFUZZ_UNPAUSING}\"; [ $step = unpause ] && sleep 2; done; sleep 2; echo \"tsfuzz: after the domU's destroy\"; fi\n\
         if grep -q xenith-stress= /proc/cmdline; then if [ -x /bin/stress ]; then /bin/stress; else echo STRESS-FAILED no stress program; fi; fi\n\
         if grep -q xenith-msi /proc/cmdline; then echo \"msi-blk: $(md5sum /dev/vda)\"; ip link set eth0 up; timeout 15 udhcpc -i eth0 -n -q -t 3 -s /bin/true >/dev/null 2>&1; ip addr add 10.0.2.15/24 dev eth0 2>/dev/null; ping -c 2 -W 2 10.0.2.15 >/dev/null 2>&1; echo \"msi-net: rx $(cat /sys/class/net/eth0/statistics/rx_packets) tx $(cat /sys/class/net/eth0/statistics/tx_packets)\"; fi\n\
         if grep -q xenith-nested /proc/cmdline; then for d in /sys/kernel/iommu_groups/*/devices/*; do g=${{d%/devices/*}}; echo \"iommu-group: ${{g##*/}} $(cat $d/vendor):$(cat $d/device) $(cat $g/type)\"; done; dmesg | grep -i smmu | sed 's/^/smmu-dmesg: /'; fi\n\
         if grep -q xenith-blkbench /proc/cmdline; then dd if=/dev/vda of=/dev/null bs=1M count=4 2>/dev/null; for i in 1 2 3; do echo 3 > /proc/sys/vm/drop_caches; x=$(awk '/sleeptime/{{s+=$(NF-1)}} END{{printf \"%.0f\", s}}' /proc/timer_list); a=$(/bin/cntvct); dd if=/dev/vda of=/dev/null bs=256k 2>/dev/null; b=$(/bin/cntvct); y=$(awk '/sleeptime/{{s+=$(NF-1)}} END{{printf \"%.0f\", s}}' /proc/timer_list); echo \"blkbench: $a $b idle-ns $x $y\"; done; fi\n\
         if grep -q xenith-iomem /proc/cmdline; then grep -i xen /proc/iomem | sed 's/^/iomem: /'; fi\n\
         echo \"{UPTIME_AT_MARKER} $(cat /proc/uptime)\"\n\
         echo {MARKER}\n\
         for f in /sys/devices/system/cpu/vulnerabilities/*; do echo \"vuln: ${{f##*/}}: $(cat $f)\"; done\n\
         if grep -q xenith-wait-domu /proc/cmdline; then i=0; while [ $i -lt 150 ] && ! grep -q received /tmp/domexc.log; do sleep 1; i=$((i+1)); done; sed 's/^/dom0: /' /tmp/domexc.log; echo \"{DOM0_AFTER_DOMU}: $(cat /proc/uptime)\"; fi\n\
         if grep -q xenith-crash /proc/cmdline; then echo \"crash: triggering a kernel crash (sysrq c)\"; echo c > /proc/sysrq-trigger; fi\n\
         echo \"hypervisor type: $(cat /sys/hypervisor/type 2>&1)\"\n\
         echo \"/dev/xen: $(ls /dev/xen 2>&1 | tr '\\n' ' ')\"\n\
         echo \"cpus online: $(cat /sys/devices/system/cpu/online)\"\n\
         if grep -qv none /sys/class/misc/hw_random/rng_current 2>/dev/null; then echo \"hwrng: $(timeout 10 head -c 16 /dev/hwrng | od -An -tx1 | tr -d '\\n')\"; fi\n\
         echo \"interrupts:\"; cat /proc/interrupts\n\
         if grep -q xenith-stay /proc/cmdline; then echo \"xenith-stay: dom0 stays up\"; while true; do sleep 3600; done; fi\n\
         poweroff -f\n"
    ));
    s
}

/// The dom0 userspace programs built here (absent when they could not be built).
#[derive(Default)]
pub struct Programs<'a> {
    /// /bin/privcmd_fuzz (`xenith-fuzz`).
    pub fuzzer: Option<&'a [u8]>,
    /// /bin/stress (`xenith-stress=SECS`).
    pub stress: Option<&'a [u8]>,
    /// /bin/cntvct, /init's first command (the boot-overhead bench reads its line).
    pub cntvct: Option<&'a [u8]>,
    /// /bin/domexc (`xenith-wait-domu`: waits for VIRQ_DOM_EXC).
    pub domexc: Option<&'a [u8]>,
    /// /bin/toolstack_fuzz (`xenith-tsfuzz`).
    pub toolstack_fuzzer: Option<&'a [u8]>,
    /// /bin/gnthold (the toolstack script holds a domU's grant across its destroy).
    pub gnthold: Option<&'a [u8]>,
}

/// A busybox initramfs without its /init: the directories, busybox as /bin/sh, the console's
/// device node and `modules` in /lib/modules.
pub fn busybox_archive(busybox: &[u8], modules: &[(String, Vec<u8>)]) -> Cpio {
    let mut c = Cpio::default();
    for d in ["bin", "dev", "proc", "sys", "tmp", "mnt", "lib", "lib/modules", "sbin", "usr", "usr/bin", "usr/sbin"] {
        c.dir(d);
    }
    c.file("bin/busybox", 0o755, busybox);
    c.symlink("bin/sh", "busybox");
    // The kernel opens /dev/console for init's stdio before devtmpfs is mounted.
    c.node("dev/console", 0o020600, 5, 1);
    for (name, bytes) in modules {
        c.file(&format!("lib/modules/{name}"), 0o644, bytes);
    }
    c
}

/// The initramfs: busybox, /init, device node for the console, Xen modules, our programs.
pub fn initramfs(busybox: &[u8], modules: &[(String, Vec<u8>)], programs: &Programs) -> Vec<u8> {
    let mut c = busybox_archive(busybox, modules);
    if let Some(f) = programs.fuzzer {
        c.file("bin/privcmd_fuzz", 0o755, f);
    }
    if let Some(f) = programs.stress {
        c.file("bin/stress", 0o755, f);
    }
    if let Some(f) = programs.cntvct {
        c.file("bin/cntvct", 0o755, f);
    }
    if let Some(f) = programs.domexc {
        c.file("bin/domexc", 0o755, f);
    }
    if let Some(f) = programs.toolstack_fuzzer {
        c.file("bin/toolstack_fuzz", 0o755, f);
    }
    if let Some(f) = programs.gnthold {
        c.file("bin/gnthold", 0o755, f);
    }
    c.file("init", 0o755, init_script(modules).as_bytes());
    c.finish()
}

/// A newc ("070701") cpio archive writer.
#[derive(Default)]
pub struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            if mode & 0o170000 == 0o040000 { 2 } else { 1 },
            0, // mtime: reproducible archives
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }
    fn pad(&mut self) {
        while self.out.len() % 4 != 0 {
            self.out.push(0);
        }
    }
    pub fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, (0, 0), &[]);
    }
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100000 | perm, (0, 0), data);
    }
    pub fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, 0o120777, (0, 0), target.as_bytes());
    }
    pub fn node(&mut self, name: &str, mode: u32, major: u32, minor: u32) {
        self.entry(name, mode, (major, minor), &[]);
    }
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        // Pad to 512 bytes as cpio does; the kernel skips trailing zeros.
        while self.out.len() % 512 != 0 {
            self.out.push(0);
        }
        self.out
    }
}

/// Point a boot at Linux dom0 (`run --dom0 linux`).
pub fn use_for(boot: &mut Boot) -> Result<()> {
    use_kernel_from(boot, env::Suite::Stable)
}

/// As [`use_for`], with the kernel from `suite`.
pub fn use_kernel_from(boot: &mut Boot, suite: env::Suite) -> Result<()> {
    let l = fixtures_from(suite)?;
    // Debian's kernel (~44 MB) runs past the usual initrd address (0x4b200000): load the
    // initrd after it, 2 MiB aligned.
    let size = std::fs::metadata(&l.kernel).map_err(|e| e.to_string())?.len();
    let addr = (crate::qemu::DOM0_KERNEL_ADDR + size).div_ceil(2 << 20) * (2 << 20);
    boot.dom0 = Some(l.kernel);
    boot.initrd = None;
    boot.extra.extend(["-device".to_string(), format!("guest-loader,addr={addr:#x},initrd={}", l.initrd.display())]);
    boot.dom0_args = DOM0_ARGS.into();
    Ok(())
}

/// The system test's boot: Linux dom0 on xenith with 2 vCPUs (`dom0_max_vcpus=2`, one per
/// QEMU CPU), 90 s to reach the marker and power off, with a virtio-rng PCI device whose DMA
/// goes through the hypervisor's SMMUv3 (the case Xen 4.17 fails). Its fixtures are fetched on
/// first use (about 90 MB, cached under .cache/).
pub fn systest_boot(hypervisor: PathBuf) -> Boot {
    let mut b = Boot::new(hypervisor);
    b.timeout = Duration::from_secs(90);
    b.cmdline = format!("dom0_max_vcpus={SYSTEST_VCPUS}");
    b.extra.extend(["-device".to_string(), "virtio-rng-pci,iommu_platform=on,disable-legacy=on".to_string()]);
    if let Err(e) = use_for(&mut b) {
        eprintln!("xtask: Linux dom0 fixtures: {e}");
        b.dom0 = Some(PathBuf::from("/nonexistent/linux-dom0-fixtures-unavailable"));
    }
    b
}

/// The disk the MSI test reads: 1 MiB of a fixed pattern, and its MD5.
fn msi_disk() -> Result<(PathBuf, String)> {
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let dir = env::cache_dir().join("linux");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join("msi-disk.img");
    std::fs::write(&path, &data).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((path, md5_hex(&data)))
}

/// MD5 of `data` as lowercase hex (what busybox's `md5sum` prints; RFC 1321).
fn md5_hex(data: &[u8]) -> String {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11,
        16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    // K[i] = floor(2^32 * |sin(i + 1)|).
    let k: Vec<u32> = (0..64).map(|i| ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32).collect();
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64).wrapping_mul(8)).to_le_bytes());
    let mut h: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    for chunk in msg.chunks_exact(64) {
        let m: Vec<u32> = chunk.chunks_exact(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])).collect();
        let [mut a, mut b, mut c, mut d] = h;
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(S[i]));
        }
        h = [h[0].wrapping_add(a), h[1].wrapping_add(b), h[2].wrapping_add(c), h[3].wrapping_add(d)];
    }
    h.iter().flat_map(|w| w.to_le_bytes()).map(|b| format!("{b:02x}")).collect()
}

/// The MSI system test's boot: Linux dom0 (2 vCPUs) with the emulated ITS (the default) and
/// three modern virtio PCI devices behind the hypervisor's SMMUv3 — rng, blk (the fixed disk)
/// and net (QEMU's user network, nothing outside the VM) — whose MSI-X go through the ITS.
pub fn msi_systest_boot(hypervisor: PathBuf) -> Boot {
    let mut b = systest_boot(hypervisor);
    b.dom0_args = format!("{DOM0_ARGS} xenith-msi");
    match msi_disk() {
        Ok((disk, _)) => b.extra.extend(
            [
                "-drive".to_string(),
                format!("if=none,file={},format=raw,id=msidisk", disk.display()),
                "-device".into(),
                "virtio-blk-pci,drive=msidisk,iommu_platform=on,disable-legacy=on".into(),
                "-nic".into(),
                "none".into(),
                "-netdev".into(),
                "user,id=msinet,restrict=on".into(),
                "-device".into(),
                "virtio-net-pci,netdev=msinet,iommu_platform=on,disable-legacy=on".into(),
            ],
        ),
        Err(e) => eprintln!("xtask: MSI test disk: {e}"),
    }
    b
}

/// The MSI system test: the usual Linux dom0 checks, the ITS taken by the hypervisor, every
/// virtio device's MSI-X lines on the ITS with interrupts counted, the disk read back with
/// the right checksum, and the network device moving packets.
pub fn msi_systest_check(o: &Outcome) -> std::result::Result<(), String> {
    systest_check(o)?;
    if !o.has("is the hypervisor's") || !o.has("dom0 gets an emulated ITS") {
        return Err("xenith did not take the ITS for an emulated one".into());
    }
    let (_, sum) = msi_disk().map_err(|e| e.to_string())?;
    let want = format!("msi-blk: {sum}  /dev/vda");
    if !o.has(&want) {
        let got = o.output.lines().find(|l| l.starts_with("msi-blk:")).unwrap_or("(none)");
        return Err(format!("disk read back wrong: wanted `{want}`, got `{got}`"));
    }
    let net = o.output.lines().find_map(|l| l.strip_prefix("msi-net: ")).ok_or("no msi-net line")?;
    let counts: Vec<u64> = net.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    if counts.len() != 2 || counts[0] == 0 || counts[1] == 0 {
        return Err(format!("virtio-net moved no packets: `{net}`"));
    }
    // /proc/interrupts: ITS-MSI lines with counts for the rng, the disk and the network.
    let mut with_counts = Vec::new();
    for l in o.output.lines().filter(|l| l.contains("ITS-MSI")) {
        let n: u64 = l.split_whitespace().skip(1).take(SYSTEST_VCPUS as usize).filter_map(|w| w.parse::<u64>().ok()).sum();
        if n > 0 {
            with_counts.push(l.split_whitespace().last().unwrap_or("").to_string());
        }
    }
    for dev in ["virtio0", "virtio1", "virtio2"] {
        if !with_counts.iter().any(|name| name.starts_with(dev)) {
            return Err(format!("no ITS-MSI interrupts counted for {dev} (lines with counts: {with_counts:?})"));
        }
    }
    Ok(())
}

/// The nested-translation system test's boot: the MSI test's devices (virtio-rng, -blk, -net,
/// all `iommu_platform=on`) with `iommu-owner=nested:/pcie@10000000`: Linux dom0 drives an
/// emulated SMMUv3 (its arm-smmu-v3 driver, default DMA domains) whose stage 1 xenith installs
/// nested over dom0's stage 2 in the physical SMMU.
pub fn nested_systest_boot(hypervisor: PathBuf) -> Boot {
    let mut b = msi_systest_boot(hypervisor);
    b.cmdline = format!("dom0_max_vcpus={SYSTEST_VCPUS} iommu-owner=nested:/pcie@10000000");
    b.dom0_args = format!("{DOM0_ARGS} xenith-msi xenith-nested");
    b
}

/// Linux probed the emulated SMMU, each virtio device is in an IOMMU group with a DMA (not
/// identity) default domain, xenith installed their streams nested, and the devices work
/// through both stages: random bytes, the disk's MD5, packets both ways; no SMMU fault.
pub fn nested_systest_check(o: &Outcome) -> std::result::Result<(), String> {
    msi_systest_check(o)?;
    if !o.has("dom0 gets an emulated SMMUv3") {
        return Err("xenith gave dom0 no emulated SMMU".into());
    }
    if !o.output.lines().any(|l| l.starts_with("smmu-dmesg:") && l.contains("arm-smmu-v3") && l.contains("ias")) {
        return Err("dom0's arm-smmu-v3 driver did not probe the emulated SMMU".into());
    }
    // virtio 1.0 PCI device IDs: net 0x1041, blk 0x1042, rng 0x1044.
    let groups: Vec<&str> = o.output.lines().filter_map(|l| l.strip_prefix("iommu-group: ")).collect();
    for (dev, what) in [("0x1041", "virtio-net"), ("0x1042", "virtio-blk"), ("0x1044", "virtio-rng")] {
        let Some(g) = groups.iter().find(|g| g.contains(&format!("0x1af4:{dev}"))) else {
            return Err(format!("{what} is in no IOMMU group: {groups:?}"));
        };
        if !g.ends_with(" DMA") && !g.ends_with(" DMA-FQ") {
            return Err(format!("{what}'s IOMMU group has no DMA default domain: `{g}`"));
        }
    }
    let nested = o.output.lines().filter(|l| l.contains("translates nested: dom0's stage 1")).count();
    if nested < 3 {
        return Err(format!("xenith installed {nested} nested streams, wanted the three virtio devices'"));
    }
    for bad in ["smmu: F_", "smmu: C_BAD", "configuration refused", "physical SMMU command failed", "CMD_SYNC timeout"] {
        if o.has(bad) {
            return Err(format!("`{bad}` in the output"));
        }
    }
    Ok(())
}

/// Size of the disk the virtio-blk read bench reads.
const BLKBENCH_MIB: u64 = 64;

/// The virtio-blk read bench's boot: Linux dom0 (1 vCPU, `-icount shift=0,sleep=off`: guest
/// time follows instructions) reading a 64 MiB disk in 256 KiB requests, three times, the
/// page cache dropped before each (so every byte is DMA); `nested`: through dom0's emulated
/// SMMU (IOMMU DMA ops, nested translation), else through xenith's stage 2 alone (swiotlb-xen
/// ops on a direct-mapped dom0).
///
/// QEMU completes the disk's requests in its own threads, in host time. A vCPU that idles
/// (WFI) while one is in flight makes `sleep=off` jump the guest clock to the next timer
/// deadline, so how often that happens, and with it the elapsed guest time, follows host load.
/// dom0 therefore polls when idle (`nohlt`: no WFI, no jump; the wait costs the poll loop's
/// instructions), and each read also reports dom0's idle time so that the busy time, the
/// instructions dom0 and xenith execute per read, can be compared independently of the host.
pub fn blkbench_boot(hypervisor: PathBuf, nested: bool) -> Result<Boot> {
    let mut b = Boot::new(hypervisor);
    b.timeout = Duration::from_secs(600);
    b.icount = true;
    use_for(&mut b)?;
    b.cmdline = if nested { "dom0_max_vcpus=1 iommu-owner=nested:/pcie@10000000".into() } else { "dom0_max_vcpus=1".into() };
    b.dom0_args = format!("{DOM0_ARGS} nohlt xenith-blkbench");
    let dir = env::cache_dir().join("linux");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let disk = dir.join("blkbench-disk.img");
    if std::fs::metadata(&disk).map(|m| m.len()).unwrap_or(0) != BLKBENCH_MIB << 20 {
        let data: Vec<u8> = (0..(BLKBENCH_MIB << 20) as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
        std::fs::write(&disk, &data).map_err(|e| format!("{}: {e}", disk.display()))?;
    }
    b.extra.extend([
        "-drive".to_string(),
        format!("if=none,file={},format=raw,id=benchdisk", disk.display()),
        "-device".into(),
        "virtio-blk-pci,drive=benchdisk,iommu_platform=on,disable-legacy=on".into(),
    ]);
    Ok(b)
}

/// One of the virtio-blk bench's reads, in guest time: how long it took and how much of that
/// dom0's only vCPU was idle (waiting for the disk).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlkRead {
    pub secs: f64,
    pub idle_secs: f64,
}

impl BlkRead {
    /// MiB per guest second.
    pub fn rate(&self) -> f64 {
        BLKBENCH_MIB as f64 / self.secs
    }

    /// MiB per second of dom0's busy (non-idle) guest time.
    pub fn busy_rate(&self) -> f64 {
        BLKBENCH_MIB as f64 / (self.secs - self.idle_secs)
    }
}

/// The bench's reads from its `blkbench: CNTVCT t0 hz CNTVCT t1 hz idle-ns i0 i1` lines (the
/// idle nanoseconds are dom0's NO_HZ idle and iowait sleep times from /proc/timer_list).
pub fn blkbench_reads(output: &str) -> Vec<BlkRead> {
    output
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.strip_prefix("blkbench: ")?.split_whitespace().collect();
            let num = |i: usize| w.get(i)?.parse::<f64>().ok();
            let (t0, hz, t1) = (num(1)?, num(2)?, num(4)?);
            if w.get(6) != Some(&"idle-ns") {
                return None;
            }
            let (i0, i1) = (num(7)?, num(8)?);
            let secs = (t1 - t0) / hz;
            let idle_secs = (i1 - i0) / 1e9;
            (t1 > t0 && hz > 0.0 && i1 >= i0 && idle_secs < secs).then_some(BlkRead { secs, idle_secs })
        })
        .collect()
}

/// The fallback: with `its=hide` the ITS is kept from dom0 (no node, no msi-map, frame not
/// mapped) and the virtio-rng PCI device works through its INTx line.
pub fn its_hidden_systest_boot(hypervisor: PathBuf) -> Boot {
    let mut b = systest_boot(hypervisor);
    b.cmdline = format!("dom0_max_vcpus={SYSTEST_VCPUS} its=hide");
    b
}

pub fn its_hidden_systest_check(o: &Outcome) -> std::result::Result<(), String> {
    systest_check(o)?;
    if !o.has("its@8080000: kept from dom0") {
        return Err("the ITS was not kept from dom0".into());
    }
    if o.has("ITS-MSI") {
        return Err("dom0 has ITS-MSI interrupts although the ITS is hidden".into());
    }
    Ok(())
}

/// The hostile-dom0 system test's boot: as `systest_boot` (no extra device), with `xenith-fuzz`
/// on dom0's command line so /init runs the privcmd fuzzer before the marker.
pub fn fuzz_systest_boot(hypervisor: PathBuf) -> Boot {
    let mut b = Boot::new(hypervisor);
    b.timeout = Duration::from_secs(120);
    if let Err(e) = use_for(&mut b) {
        eprintln!("xtask: Linux dom0 fixtures: {e}");
        b.dom0 = Some(PathBuf::from("/nonexistent/linux-dom0-fixtures-unavailable"));
    }
    b.dom0_args = format!("{DOM0_ARGS} xenith-fuzz");
    b
}

/// 100 000 random hypercalls from dom0 userspace: the fuzzer finished, dom0 went on to the
/// marker and powered off cleanly, and xenith never reported a bug of its own.
pub fn fuzz_systest_check(o: &Outcome) -> std::result::Result<(), String> {
    if !o.has(FUZZ_DONE) {
        let last = o.output.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(format!("the fuzzer never printed `{FUZZ_DONE}` (timed out: {}); last line: {last}", o.timed_out));
    }
    for needle in ["fuzz: dom0 alive after the fuzzer", MARKER, "hardware domain powered off"] {
        if !o.has(needle) {
            return Err(format!("expected output containing `{needle}` after the fuzzer"));
        }
    }
    for bad in ["HYPERVISOR BUG", "panicked", "domain killed", "Kernel panic", "Internal error: Oops"] {
        if o.has(bad) {
            return Err(format!("`{bad}` in the output"));
        }
    }
    if o.timed_out {
        return Err("QEMU did not end after poweroff -f".into());
    }
    Ok(())
}

/// The crashing-dom0 system test's boot: `panic=1 xenith-crash` on dom0's command line, so
/// /init crashes the kernel (sysrq c) after the marker and Linux asks the hypervisor to stop it
/// a second later.
pub fn crash_systest_boot(hypervisor: PathBuf) -> Boot {
    let mut b = Boot::new(hypervisor);
    b.timeout = Duration::from_secs(90);
    b.cmdline = format!("dom0_max_vcpus={SYSTEST_VCPUS}");
    if let Err(e) = use_for(&mut b) {
        eprintln!("xtask: Linux dom0 fixtures: {e}");
        b.dom0 = Some(PathBuf::from("/nonexistent/linux-dom0-fixtures-unavailable"));
    }
    b.dom0_args = format!("{DOM0_ARGS} panic=1 xenith-crash");
    b
}

/// A crashed dom0 takes the machine down as on Xen: the kernel's panic reaches the hypervisor
/// through Xen's ABI, the hypervisor says what dom0 asked for and restarts the machine (QEMU,
/// under -no-reboot, exits) within 10 s of the crash; the runner saw the crash as trouble.
pub fn crash_systest_check(o: &Outcome) -> std::result::Result<(), String> {
    if !o.has("crash: triggering a kernel crash") {
        return Err("dom0 never reached the crash trigger".into());
    }
    let Some(at) = o.trouble_at else { return Err("the runner saw no trouble line for the crash".into()) };
    let said = o.output.lines().find(|l| l.contains("(xenith) hardware domain ") && !l.contains("powered off"));
    let Some(said) = said else { return Err("the hypervisor never said what the crashed dom0 asked for".into()) };
    if !said.contains("restarting the machine") {
        return Err(format!("expected a restart, got `{said}`"));
    }
    if o.timed_out || o.exit_code != Some(0) {
        return Err(format!("QEMU did not exit by itself on the restart (timed out: {}, exit {:?})", o.timed_out, o.exit_code));
    }
    let after = o.wall.saturating_sub(at);
    if after > Duration::from_secs(10) {
        return Err(format!("the machine restarted {:.1} s after the crash (at most 10 s)", after.as_secs_f64()));
    }
    if o.has("HYPERVISOR BUG") {
        return Err("`HYPERVISOR BUG` in the output".into());
    }
    Ok(())
}

/// dom0's vCPUs in the system test (QEMU's `-smp` is 2).
pub const SYSTEST_VCPUS: u32 = 2;

/// What the Linux dom0 system test requires of the boot.
pub fn systest_check(o: &Outcome) -> std::result::Result<(), String> {
    if !o.has(MARKER) {
        let last = o.output.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(format!("dom0 never printed {MARKER} (timed out: {}); last line: {last}", o.timed_out));
    }
    let online = format!("cpus online: 0-{}", SYSTEST_VCPUS - 1);
    for needle in ["hypervisor type: xen", "evtchn", "gntdev", "privcmd", online.as_str(), "hardware domain powered off"] {
        if !o.has(needle) {
            return Err(format!("expected output containing `{needle}`"));
        }
    }
    // 16 random bytes read through the SMMU: "hwrng:  xx xx ..." with at least one non-zero.
    let hwrng = o.output.lines().find_map(|l| l.strip_prefix("hwrng:")).unwrap_or("");
    let bytes: Vec<u8> = hwrng.split_whitespace().filter_map(|h| u8::from_str_radix(h.trim_end_matches('.'), 16).ok()).collect();
    if bytes.len() != 16 || bytes.iter().all(|&b| b == 0) {
        return Err(format!("dom0 read no random bytes from /dev/hwrng (virtio-rng behind the SMMU): `hwrng:{hwrng}`"));
    }
    if o.timed_out {
        return Err("QEMU did not end after poweroff -f".into());
    }
    Ok(())
}

/// Linux dom0 on `-cpu max`: the usual boot to the marker and power-off, nothing killed or
/// panicked, the hidden features stayed hidden (Linux saw no SVE, SME or MTE) and the offered
/// pointer authentication was taken up.
pub fn cpu_max_check(o: &Outcome) -> std::result::Result<(), String> {
    systest_check(o)?;
    if let Some(lines) = o.trouble() {
        return Err(format!("trouble in the output:\n{}", lines.join("\n")));
    }
    for needle in ["cpu features: ID_AA64PFR0_EL1 host", "CPU features: detected: Address authentication"] {
        if !o.has(needle) {
            return Err(format!("expected output containing `{needle}`"));
        }
    }
    for hidden in ["Scalable Vector Extension", "Scalable Matrix Extension", "Memory Tagging Extension"] {
        if o.has(hidden) {
            return Err(format!("dom0 detected a hidden feature: `{hidden}`"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blkbench_lines_give_elapsed_and_busy_time() {
        let out = "noise\nblkbench: CNTVCT 1000000000 1000000000 CNTVCT 1128000000 1000000000 idle-ns 5000 28005000\n\
                   blkbench: CNTVCT 10 1000000000 CNTVCT 5 1000000000 idle-ns 0 0\n\
                   blkbench: CNTVCT 0 1000000000 CNTVCT 100 1000000000 idle-ns 0 200\n\
                   blkbench: CNTVCT 0 1000000000 CNTVCT 100 1000000000\n";
        let r = blkbench_reads(out);
        // Counter going backwards, idle longer than the read, no idle figures: refused.
        assert_eq!(r.len(), 1);
        assert!((r[0].secs - 0.128).abs() < 1e-12 && (r[0].idle_secs - 0.028).abs() < 1e-12);
        assert!((r[0].rate() - 500.0).abs() < 1e-9);
        assert!((r[0].busy_rate() - 640.0).abs() < 1e-9);
    }

    #[test]
    fn cpio_newc_layout() {
        let mut c = Cpio::default();
        c.file("init", 0o755, b"abc");
        let a = c.finish();
        assert_eq!(&a[..6], b"070701");
        // Header (110) + "init\0" (5) padded to 116, then the 3 data bytes padded to 4.
        assert_eq!(&a[110..115], b"init\0");
        assert_eq!(&a[116..119], b"abc");
        assert_eq!(&a[120..126], b"070701");
        let mode = std::str::from_utf8(&a[14..22]).unwrap();
        assert_eq!(u32::from_str_radix(mode, 16).unwrap(), 0o100755);
        let size = std::str::from_utf8(&a[54..62]).unwrap();
        assert_eq!(u32::from_str_radix(size, 16).unwrap(), 3);
        assert!(a.windows(10).any(|w| w == b"TRAILER!!!"));
        assert_eq!(a.len() % 512, 0);
    }

    #[test]
    fn modinfo_fields() {
        let m = b"\x7fELF junk\0license=GPL\0depends=xen-privcmd,foo\0name=xenfs\0";
        assert_eq!(modinfo(m, "depends"), "xen-privcmd,foo");
        assert_eq!(modinfo(m, "vermagic"), "");
    }

    #[test]
    fn user_programs_are_static_aarch64_executables() {
        let dir = std::env::temp_dir().join(format!("xenith-fuzz-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (src, name) in [("tools/xtask/fuzz/privcmd_fuzz.rs", "privcmd_fuzz"), ("tools/xtask/stress/stress.rs", "stress"), ("tools/xtask/fuzz/cntvct.rs", "cntvct"), ("tools/xtask/fuzz/gnthold.rs", "gnthold")] {
            let elf = user_program(&dir, src, name).unwrap();
            assert_eq!(&elf[..5], b"\x7fELF\x02", "{name}");
            assert_eq!(u16::from_le_bytes([elf[16], elf[17]]), 2, "{name}: ET_EXEC");
            assert_eq!(u16::from_le_bytes([elf[18], elf[19]]), 0xb7, "{name}: EM_AARCH64");
            // No PT_INTERP: static.
            assert!(!elf.windows(3).any(|w| w == b"ld-"), "{name}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn counts_exceptions_into_el2_from_guests() {
        let path = std::env::temp_dir().join(format!("xenith-int-log-{}", std::process::id()));
        let log = [
            "Taking exception 5 [IRQ] on CPU 0\n...from EL1 to EL2\n...with ESR 0x16/0x5a000ea1\n...with SPSR 0x600003c5\n",
            "Exception return from AArch64 EL2 to AArch64 EL1 PC 0xffff0000\n",
            "Taking exception 2 [SVC] on CPU 1\n...from EL0 to EL1\n...with ESR 0x15/0x56000000\n",
            "Taking exception 5 [IRQ] on CPU 1\n...from EL2 to EL2\n",
            "Taking exception 11 [Hypervisor Call] on CPU 0\n...from EL1 to EL2\n...with ESR 0x16/0x5a000000\n",
            "Taking exception 11 [Hypervisor Call] on CPU 1\n...from EL1 to EL2\n...with ESR 0x16/0x5a000ea1\n",
            "Taking exception 11 [Hypervisor Call] on CPU 0\n...from EL0 to EL2\n...with ESR 0x16/0x5a000ea1\n",
            // MSR ICC_SGI1R_EL1, x1; a data abort; a WFI; a sysreg read.
            "Taking exception 1 [Undefined Instruction] on CPU 0\n...from EL1 to EL2\n...with ESR 0x18/0x3a3036\n",
            "Taking exception 4 [Data Abort] on CPU 0\n...from EL1 to EL2\n...with ESR 0x24/0x93800007\n",
            "Taking exception 1 [Undefined Instruction] on CPU 1\n...from EL1 to EL2\n...with ESR 0x1/0x1e00000\n",
            "Taking exception 1 [Undefined Instruction] on CPU 1\n...from EL1 to EL2\n...with ESR 0x18/0x3201801\n",
            // Two records interleaved: both count.
            "Taking exception 5 [IRQ] on CPU 0\n...from EL1 to EL2\nTaking exception 5 [IRQ] on CPU 1\n...from EL1 to EL2\n",
        ]
        .concat();
        std::fs::write(&path, log).unwrap();
        let n = count_el2_entries(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(n.total, 10);
        assert_eq!(
            n.kinds,
            [("irq", 3), ("hypercall", 2), ("data-abort", 1), ("sgi-send", 1), ("smccc", 1), ("sysreg", 1), ("wfi", 1)]
        );
        assert_eq!(n.kinds_line(), "irq 3, hypercall 2, data-abort 1, sgi-send 1, smccc 1, sysreg 1, wfi 1");
        assert_eq!(own_trap_count("x\n(xenith) traps from guests: 1234\n"), Some(1234));
        let out = "(xenith) traps from guests: 3\n(xenith) traps by CPU: 3 = 2 + 1\n(xenith) traps by kind (CPU 0/1): wfi 1/1,\n(xenith)   hypercall 1/0\n(xenith) hardware domain powered off\n(xenith)   not this\n";
        assert_eq!(own_trap_breakdown(out), ["traps by CPU: 3 = 2 + 1", "traps by kind (CPU 0/1): wfi 1/1,", "  hypercall 1/0"]);
        assert!(own_trap_breakdown("(xenith)   indented but no header\n").is_empty());
    }

    #[test]
    fn md5_matches_rfc_1321() {
        assert_eq!(super::md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(super::md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(super::md5_hex(&[b'a'; 1000]), "cabe45dcc9ae5b66ba86600cca6b8ba8");
    }

    #[test]
    fn init_prints_marker_and_powers_off() {
        let s = init_script(&[("xen-evtchn.ko".into(), vec![])]);
        assert!(s.contains(MARKER) && s.contains("poweroff -f") && s.contains("insmod /lib/modules/xen-evtchn.ko"));
        // dom0's uptime is printed just before the marker.
        assert!(s.find(UPTIME_AT_MARKER) < s.find(&format!("echo {MARKER}")));
    }

    #[test]
    fn uptime_at_marker_reads_the_first_proc_uptime_field() {
        let out = format!("[    1.0] boot\n{UPTIME_AT_MARKER} 4.91 7.20\n{MARKER}\n");
        assert_eq!(super::uptime_at_marker(&out), Some(4.91));
        assert_eq!(super::uptime_at_marker(&format!("{MARKER}\n")), None);
        assert_eq!(super::uptime_at_marker(&format!("{UPTIME_AT_MARKER} cat: /proc/uptime: No such file\n")), None);
    }
}

/// The Linux dom0 system test runs unless `XENITH_LINUX_SYSTEST=0` (it fetches ~90 MB of
/// Debian packages on first use; skip it offline).
pub fn systest_enabled() -> bool {
    std::env::var_os("XENITH_LINUX_SYSTEST").is_none_or(|v| v != "0")
}

/// Xen 4.17's command line for the Linux comparison (the reference setup's, scrubbing off).
pub const XEN_CMDLINE: &str = "dom0_mem=512M console=dtuart dtuart=/pl011@9000000 bootscrub=0";

/// One timed boot of Linux dom0: seconds from QEMU's start to the /init marker, the whole
/// output, and (with `trace`) the number of exceptions QEMU's `-d int` log shows taken into
/// EL2 from EL0/EL1, i.e. guest traps into the hypervisor, counted the same way for any
/// hypervisor.
fn timed_boot(b: &Boot, trace: Option<&Path>) -> Result<(Option<f64>, String, Option<El2Entries>)> {
    let (times, output, traps) = timed_lines(b, trace, &[MARKER])?;
    Ok((times[0], output, traps))
}

/// One boot of `b` without a trace: for each of `needles`, wall seconds from QEMU's start to
/// the first console line containing it (None if none did), and the console output.
pub(crate) fn needle_times(b: &Boot, needles: &[&str]) -> Result<(Vec<Option<f64>>, String)> {
    timed_lines(b, None, needles).map(|(t, out, _)| (t, out))
}

/// [`timed_boot`] for any `needles`.
fn timed_lines(b: &Boot, trace: Option<&Path>, needles: &[&str]) -> Result<(Vec<Option<f64>>, String, Option<El2Entries>)> {
    use std::io::BufRead;
    let mut cmd = b.command();
    if let Some(log) = trace {
        let _ = std::fs::remove_file(log);
        cmd.args(["-d", "int", "-D"]).arg(log);
    }
    let start = std::time::Instant::now();
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start qemu-system-aarch64: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel::<(String, f64)>();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).split(b'\n').map_while(|l| l.ok()) {
            let t = start.elapsed().as_secs_f64();
            if tx.send((String::from_utf8_lossy(&line).replace('\r', ""), t)).is_err() {
                break;
            }
        }
    });
    let (mut output, mut times, mut killed) = (String::new(), vec![None; needles.len()], false);
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok((line, t)) => {
                for (time, needle) in times.iter_mut().zip(needles) {
                    if time.is_none() && line.contains(needle) {
                        *time = Some(t);
                    }
                }
                output.push_str(&line);
                output.push('\n');
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(_) if start.elapsed() > b.timeout => {
                let _ = child.kill();
                killed = true;
                break;
            }
            Err(_) => {}
        }
    }
    let _ = child.wait();
    let _ = reader.join();
    let traps = match trace {
        // Counted from boot to poweroff only: a boot killed at the timeout has no such count.
        Some(_) if killed => return Err(format!("QEMU did not power off within {:?}:\n{}", b.timeout, tail(&output))),
        Some(log) => Some(count_el2_entries(log)?),
        None => None,
    };
    Ok((times, output, traps))
}

/// Exceptions into EL2 from a lower EL counted in a QEMU `-d int` log, in all and by kind.
#[derive(Clone, Debug, Default, PartialEq)]
struct El2Entries {
    total: u64,
    /// (kind, count), most frequent first.
    kinds: Vec<(&'static str, u64)>,
}

impl El2Entries {
    /// "hypercall 975, irq 700, ...".
    fn kinds_line(&self) -> String {
        self.kinds.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
    }
}

/// The kind of an exception taken to EL2, named as xenith's own counters name them where they
/// agree: from QEMU's exception name ("IRQ", "Hypervisor Call", ...) and the ESR the next
/// record line gives ("0x16/0x5a000ea1": EC / ISS).
fn el2_entry_kind(name: &str, esr: Option<(u64, u64)>) -> &'static str {
    if name == "IRQ" || name == "FIQ" {
        return "irq";
    }
    let Some((ec, iss)) = esr else { return "other" };
    match ec {
        0x16 if iss & 0xffff == 0xea1 => "hypercall",
        0x16 | 0x17 if iss & 0xffff == 0 => "smccc",
        0x01 if iss & 1 == 0 => "wfi",
        0x01 => "wfe",
        // MSR ICC_SGI1R_EL1 (Op0 3, Op1 0, CRn 12, CRm 11, Op2 5, a write).
        0x18 if iss & 0x3f_fc1f == (3 << 20) | (5 << 17) | (12 << 10) | (11 << 1) => "sgi-send",
        0x18 | 0x00 => "sysreg",
        0x24 => "data-abort",
        _ => "other",
    }
}

/// Exceptions into EL2 from a lower EL in a QEMU `-d int` log: each "Taking exception N [Name]"
/// record is followed by a "...from ELx to ELy" line and, for synchronous ones, "...with ESR".
fn count_el2_entries(log: &Path) -> Result<El2Entries> {
    use std::io::BufRead;
    let f = std::fs::File::open(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut kinds: std::collections::BTreeMap<&'static str, u64> = Default::default();
    // The exception being read: its name, and whether it went from EL0/EL1 to EL2.
    let mut name = String::new();
    let mut pending: Option<String> = None;
    let mut finish = |pending: &mut Option<String>, esr: Option<(u64, u64)>| {
        if let Some(n) = pending.take() {
            *kinds.entry(el2_entry_kind(&n, esr)).or_default() += 1;
        }
    };
    for line in std::io::BufReader::new(f).split(b'\n').map_while(|l| l.ok()) {
        let line = String::from_utf8_lossy(&line);
        if let Some(rest) = line.strip_prefix("Taking exception ") {
            finish(&mut pending, None);
            name = rest.split('[').nth(1).and_then(|r| r.split(']').next()).unwrap_or("").to_string();
        } else if line.ends_with("from EL1 to EL2") || line.ends_with("from EL0 to EL2") {
            // (Records of two CPUs may interleave: every such line counts once, whatever follows.)
            finish(&mut pending, None);
            pending = Some(std::mem::take(&mut name));
        } else if let Some(esr) = line.strip_prefix("...with ESR ") {
            let mut parts = esr.trim().split('/').map(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok());
            let parsed = match (parts.next().flatten(), parts.next().flatten()) {
                (Some(ec), Some(iss)) => Some((ec, iss & 0x1ff_ffff)),
                _ => None,
            };
            finish(&mut pending, parsed);
        } else if !line.starts_with("...") {
            finish(&mut pending, None);
        }
    }
    finish(&mut pending, None);
    let mut kinds: Vec<(&'static str, u64)> = kinds.into_iter().collect();
    kinds.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    Ok(El2Entries { total: kinds.iter().map(|(_, n)| n).sum(), kinds })
}

/// The number in "(xenith) traps from guests: N".
fn own_trap_count(output: &str) -> Option<u64> {
    output.lines().find_map(|l| l.split("traps from guests: ").nth(1)).and_then(|n| n.trim().parse().ok())
}

/// xenith's per-CPU and per-kind trap breakdown: the "(xenith) traps by ..." lines and their
/// indented continuations, without the prefix.
fn own_trap_breakdown(output: &str) -> Vec<String> {
    let mut out = Vec::new();
    for l in output.lines() {
        let Some(rest) = l.strip_prefix("(xenith) ") else { continue };
        if rest.starts_with("traps by ") || (rest.starts_with("  ") && !out.is_empty()) {
            out.push(rest.trim_end().to_string());
        } else if !out.is_empty() {
            break;
        }
    }
    out
}

/// One boot of `b` without a trace: wall seconds from QEMU's start to the marker line (None if
/// dom0 never printed it), and the console output.
/// dom0's uptime in seconds when /init reached its marker, from a boot's console output.
pub(crate) fn uptime_at_marker(out: &str) -> Option<f64> {
    let line = out.lines().find(|l| l.contains(UPTIME_AT_MARKER))?;
    let rest = &line[line.find(UPTIME_AT_MARKER)? + UPTIME_AT_MARKER.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

pub(crate) fn marker_boot(b: &Boot) -> Result<(Option<f64>, String)> {
    timed_boot(b, None).map(|(t, out, _)| (t, out))
}

pub(crate) fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied()
}

/// Part of `cargo xtask bench --against xen`: Linux dom0 (same kernel, same initramfs, same
/// QEMU, no extra devices) on xenith and on Xen 4.17 (`bootscrub=0`, `dom0_mem=512M`): wall
/// seconds from QEMU's start to the /init marker (median of 3 boots each), and the traps into
/// the hypervisor from boot to poweroff, counted for both from QEMU's `-d int` log (one more
/// boot each; logging slows it, so it is not timed). xenith's own counter is printed too.
///
/// Those trap counts follow the wall clock: the guest's timer ticks and idle wake-ups, most
/// of its exits, grow with the host's load (and with the logging, which slows the hypervisor
/// that traps more). So each hypervisor is also booted under `-icount shift=0,sleep=off`,
/// where executed instructions drive the guest clock: the same count within a few percent
/// from run to run, whatever the host does.
pub fn bench_against_xen(xenith: PathBuf, xen: PathBuf) -> Result<()> {
    const RUNS: usize = 3;
    // Both dom0s get 2 vCPUs (Xen gives dom0 every CPU by default; QEMU has 2).
    let xenith_cmdline = format!("dom0_max_vcpus={SYSTEST_VCPUS}");
    let mut boots = Vec::new();
    for (name, hyp, cmdline) in [("xenith", xenith, xenith_cmdline.as_str()), ("Xen 4.17", xen, XEN_CMDLINE)] {
        let mut b = Boot::new(hyp);
        b.cmdline = cmdline.into();
        b.timeout = Duration::from_secs(180);
        use_for(&mut b)?;
        boots.push((name, b));
    }
    // Timed boots alternate between the hypervisors, so a change in the host's load (the
    // machine is shared) falls on both.
    let mut times = vec![Vec::new(); boots.len()];
    for i in 0..RUNS {
        for ((name, b), times) in boots.iter().zip(times.iter_mut()) {
            let (t, out, _) = timed_boot(b, None)?;
            let t = t.ok_or_else(|| format!("{name}: run {i}: dom0 never printed {MARKER}; last lines:\n{}", tail(&out)))?;
            println!("  {name}: run {}: marker at {t:.2} s", i + 1);
            times.push(t);
        }
    }
    let mut rows = Vec::new();
    let mut breakdown = Vec::new();
    let mut qemu_kinds = Vec::new();
    for ((name, b), times) in boots.iter().zip(times) {
        let name = *name;
        let log = env::cache_dir().join("linux").join(format!("bench-int-{}.log", name.split(' ').next().unwrap_or("x")));
        let (_, out, traps) = timed_boot(b, Some(&log))?;
        let traps = traps.map(|t| t.total);
        let _ = std::fs::remove_file(&log);
        let own = own_trap_count(&out);
        if !out.contains(MARKER) {
            return Err(format!("{name}: the -d int boot did not reach {MARKER}:\n{}", tail(&out)));
        }
        breakdown.extend(own_trap_breakdown(&out).into_iter().map(|l| format!("{name}, wall clock: {l}")));
        let icount = Boot { icount: true, ..b.clone() };
        let (_, out, traps_icount) = timed_boot(&icount, Some(&log))?;
        if let Some(t) = &traps_icount {
            qemu_kinds.push(format!("{name}, -icount, QEMU log: {}", t.kinds_line()));
        }
        let traps_icount = traps_icount.map(|t| t.total);
        let _ = std::fs::remove_file(&log);
        if !out.contains(MARKER) {
            return Err(format!("{name}: the -icount -d int boot did not reach {MARKER}:\n{}", tail(&out)));
        }
        breakdown.extend(own_trap_breakdown(&out).into_iter().map(|l| format!("{name}, -icount: {l}")));
        rows.push((name, median(times), traps, own, traps_icount));
    }
    println!("Linux dom0 boot to the /init marker ({MARKER}), same kernel/initramfs/QEMU, -smp 2:");
    println!("  {:<10} {:>17} {:>20} {:>12} {:>16}", "", "marker (median s)", "traps (QEMU -d int)", "own counter", "traps, -icount");
    let f = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.2}"));
    let g = |x: Option<u64>| x.map_or("-".to_string(), |x| x.to_string());
    for (name, t, traps, own, traps_icount) in &rows {
        println!("  {name:<10} {:>17} {:>20} {:>12} {:>16}", f(*t), g(*traps), g(*own), g(*traps_icount));
    }
    if let [(_, Some(ta), Some(na), _, ia), (_, Some(tb), Some(nb), _, ib)] = rows.as_slice() {
        let icount = match (ia, ib) {
            (Some(a), Some(b)) => format!("{:.3}", *a as f64 / *b as f64),
            _ => "-".into(),
        };
        println!("  ratio xenith/Xen: time {:.3}, traps {:.3} (wall clock), {icount} (-icount)", ta / tb, *na as f64 / *nb as f64);
    }
    println!("  (targets: time <= Xen's, traps <= 25% of Xen's; traps = exceptions from EL0/EL1 taken to EL2)");
    for l in qemu_kinds.iter().chain(&breakdown) {
        println!("  {l}");
    }
    Ok(())
}

pub(crate) fn tail(out: &str) -> String {
    let lines: Vec<&str> = out.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

#[cfg(test)]
mod console_bytes_tests {
    use super::console_bytes_init_lines;

    #[test]
    fn init_lines_escape_every_byte() {
        let l = console_bytes_init_lines();
        assert!(l.contains("\\001\\002") && l.contains("\\377") && l.contains("\\047"));
        assert!(!l[l.find("printf '").unwrap() + 8..l.rfind('\'').unwrap()].contains('\''));
    }
}

/// A dom0less domain 1 ran through an event and after it: the lines with its heartbeat
/// (`beat`) before the first line containing `mark` (`what`, for the error) and after it,
/// some before and at least 2 after, and nothing stopped the domain. Returns both counts.
pub fn domu_beat_through(o: &Outcome, beat: &str, mark: &str, what: &str) -> std::result::Result<(usize, usize), String> {
    let lines: Vec<&str> = o.output.lines().collect();
    let at = lines.iter().position(|l| l.contains(mark)).ok_or_else(|| format!("no line with `{mark}`"))?;
    let before = lines[..at].iter().filter(|l| l.contains(beat)).count();
    let after = lines[at..].iter().filter(|l| l.contains(beat)).count();
    if before == 0 || after < 2 {
        return Err(format!("the domU's heartbeats: {before} before {what}, {after} after it (expected some, then at least 2)"));
    }
    for gone in ["d1: destroyed", "d1: shutdown", "d1v0: UNDEF loop", "d1v0: data abort loop"] {
        if o.has(gone) {
            return Err(format!("the domU stopped: `{gone}` in the output"));
        }
    }
    Ok((before, after))
}

/// Printed by /init after the toolstack fuzzer ran its calls (`xenith-tsfuzz`).
pub const TSFUZZ_DONE: &str = "TSFUZZ-DONE calls=100000";

/// The dom0less domU beside the toolstack fuzzer: the test guest printing a heartbeat.
pub const TSFUZZ_DOMU_ARGS: &str = "console=ttyAMA0 domu heartbeat";
/// A heartbeat of that domU on the console (xenith prefixes its vpl011 output).
const HEARTBEAT: &str = "DOM1: heartbeat ";
/// What the fuzzer prints when run again to destroy the domU, before destroydomain's return.
const DESTROY_ASKED: &str = "tsfuzz-destroy: d1 destroydomain ";
/// The same for the pause and the unpause before it.
const PAUSE_ASKED: &str = "tsfuzz-pause: d1 pausedomain ";
const UNPAUSE_ASKED: &str = "tsfuzz-unpause: d1 unpausedomain ";
/// Printed by /init 2 s after the pause, before the unpause.
const TSFUZZ_UNPAUSING: &str = "tsfuzz: unpausing the domU";

/// The hostile-toolstack system test's boot: Linux dom0 (2 vCPUs) running
/// tools/xtask/fuzz/toolstack_fuzz.rs (100 000 sysctl/domctl calls) before the marker, and a
/// dom0less domU (the test guest, `guest`, on a CPU of its own) printing heartbeats meanwhile;
/// dom0 waits 2 s after the fuzzer, so the domU's heartbeats after it show it still runs.
pub fn toolstack_fuzz_systest_boot(hypervisor: PathBuf, guest: &std::path::Path) -> Boot {
    let mut b = fuzz_systest_boot(hypervisor.clone());
    b.cmdline = format!("dom0_max_vcpus={SYSTEST_VCPUS}");
    b.dom0_args = format!("{DOM0_ARGS} xenith-tsfuzz");
    crate::conformance::with_domus(b, guest, &[TSFUZZ_DOMU_ARGS], "tsfuzz-domu").unwrap_or_else(|e| {
        eprintln!("xtask: toolstack fuzz domU: {e}");
        Boot { dom0: Some(PathBuf::from("/nonexistent/tsfuzz-domu-unavailable")), ..Boot::new(hypervisor) }
    })
}

/// The return value the fuzzer printed after `asked` in `line` (the domU's console line may be
/// cut into it right after the number: the guest runs again the moment the call returns).
fn returned<'a>(line: &'a str, asked: &str) -> Option<&'a str> {
    let rest = line.split_once(asked)?.1;
    let end = rest.find(|c: char| c != '-' && !c.is_ascii_digit()).unwrap_or(rest.len());
    Some(&rest[..end]).filter(|n| !n.is_empty())
}

/// 100 000 sysctl/domctl calls from dom0 userspace: the fuzzer finished, dom0 reached the
/// marker and powered off, and xenith reported no bug of its own.
pub fn toolstack_fuzz_systest_check(o: &Outcome) -> std::result::Result<(), String> {
    if !o.has(TSFUZZ_DONE) {
        let last = o.output.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(format!("the fuzzer never printed `{TSFUZZ_DONE}` (timed out: {}); last line: {last}", o.timed_out));
    }
    for needle in ["tsfuzz: dom0 alive after the fuzzer", MARKER, "hardware domain powered off"] {
        if !o.has(needle) {
            return Err(format!("expected output containing `{needle}` after the fuzzer"));
        }
    }
    // The fuzzer's valid createdomain calls made domains and its destroydomain calls took some
    // away again: the lifecycle ran under hostile calls, not only the argument checks.
    let created = o.output.matches(": created by d0").count();
    let destroyed = o.output.matches(": destroyed by d0").count();
    if created == 0 || destroyed == 0 {
        return Err(format!("the fuzzer created {created} and destroyed {destroyed} domains: expected some of each"));
    }
    println!("toolstack fuzz: {created} domains created and {destroyed} destroyed by the fuzzer");
    // The domU ran through the fuzzer and after it: heartbeats before the fuzzer's end and
    // after it, and no stop of domain 1 until dom0 destroyed it.
    let lines: Vec<&str> = o.output.lines().collect();
    let done = lines.iter().position(|l| l.contains(TSFUZZ_DONE)).unwrap_or(0);
    let destroy = lines.iter().position(|l| l.contains(DESTROY_ASKED)).ok_or("dom0 did not destroy the domU after the fuzzer")?;
    // The hypervisor's lines about the destroy come before dom0 prints its return.
    let destroy = lines[done..destroy].iter().position(|l| l.contains("d1: gone") || l.contains("d1: destroyed")).map_or(destroy, |i| done + i);
    // Then dom0 pauses it (its vCPU waits on its own CPU), waits 2 s and unpauses it.
    let at = |mark: &str| lines.iter().position(|l| l.contains(mark)).ok_or_else(|| format!("no line with `{mark}` after the fuzzer"));
    let (pause, unpausing, unpause) = (at(PAUSE_ASKED)?, at(TSFUZZ_UNPAUSING)?, at(UNPAUSE_ASKED)?);
    for (i, asked) in [(pause, PAUSE_ASKED), (unpause, UNPAUSE_ASKED)] {
        if returned(lines[i], asked) != Some("0") {
            return Err(format!("`{}`: the domctl failed", lines[i].trim()));
        }
    }
    let beats = |from: usize, to: usize| lines.get(from + 1..to).map_or(0, |ls| ls.iter().filter(|l| l.contains(HEARTBEAT)).count());
    let beats_before = lines[..done].iter().filter(|l| l.contains(HEARTBEAT)).count();
    let beats_after = beats(done, pause);
    let (paused, resumed) = (beats(pause, unpausing), beats(unpause, destroy));
    if beats_before == 0 || beats_after < 2 {
        return Err(format!("the domU's heartbeats: {beats_before} before the fuzzer's end, {beats_after} after it (expected some, then at least 2)"));
    }
    if paused != 0 || resumed < 2 || o.has("d1: paused, but") {
        return Err(format!("the domU's heartbeats: {paused} in the 2 s it was paused (want 0), {resumed} after the unpause (want at least 2); pause's wait ran out: {}", o.has("d1: paused, but")));
    }
    println!("toolstack fuzz: the domU beat {paused} times in the 2 s dom0 had it paused and {resumed} after the unpause");
    for gone in ["d1: destroyed", "d1: shutdown", "d1v0: UNDEF loop", "d1v0: data abort loop"] {
        if lines[..destroy].iter().any(|l| l.contains(gone)) {
            return Err(format!("the domU stopped: `{gone}` in the output"));
        }
    }
    println!("toolstack fuzz: the domU beat {beats_before} times during the fuzzer and {beats_after} after it");
    // dom0 destroys the dom0less domU (as Xen 4.17 lets it): destroydomain returns 0, the
    // domain goes (its RAM back to the pool, its CPU released) and beats no more.
    let asked = lines.iter().find(|l| l.contains(DESTROY_ASKED)).map_or("", |l| l.trim());
    if returned(asked, DESTROY_ASKED) != Some("0") || !o.has("d1: gone") {
        return Err(format!("the domU's destroy: `{asked}`, `d1: gone` logged: {}", o.has("d1: gone")));
    }
    let end = lines.iter().position(|l| l.contains("tsfuzz: after the domU's destroy")).ok_or("dom0 did not go on after the domU's destroy")?;
    let late = lines[destroy..end].iter().filter(|l| l.contains(HEARTBEAT)).count();
    if late > 1 {
        return Err(format!("the domU beat {late} times after its destroy"));
    }
    for bad in ["HYPERVISOR BUG", "panicked", "domain killed", "Kernel panic", "Internal error: Oops", "soft lockup", "rcu_sched self-detected stall", "rcu: INFO"] {
        if o.has(bad) {
            return Err(format!("`{bad}` in the output"));
        }
    }
    if o.timed_out {
        return Err("QEMU did not end after poweroff -f".into());
    }
    Ok(())
}
