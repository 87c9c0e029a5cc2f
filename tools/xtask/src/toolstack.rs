//! Xen's own toolstack in Linux dom0: Debian's xen-utils-4.17 (`xl`, `xenstored`,
//! `xenconsoled`, `xen-init-dom0`, libxl's `xenconsole`) and xenstore-utils with every shared
//! library they load, from Debian's arm64 packages (fetched and unpacked under .cache/ like the
//! kernel). They go into a second cpio archive appended to dom0's busybox initramfs (the kernel
//! unpacks concatenated archives in order), with /etc/xenith/toolstack.sh, which the
//! initramfs's /init runs when it is there, and a domU to create (xl_domu.rs: its kernel,
//! initramfs, disk image and xl configuration, dom0's backend modules, the hotplug scripts).
//!
//! The script starts xenstored, xen-init-dom0 and xenconsoled (with devpts mounted: xenconsoled
//! gives each domU's console a pty), runs `xl info`, `xl list` and `xl vcpu-list`, then a
//! domU's life: loads loop, xen-blkback and xen-netback, notes `xl info`'s free memory, `xl
//! create`s the domU (2 vCPUs, a file in dom0 as its disk through blkback, a routed vif through
//! netback), follows it with `xl console` (its stdin a FIFO nobody writes, so no terminal is
//! needed; every line it prints goes to dom0's console as `xl-console: ...`) until the domU
//! reports its disk and network checks, sets a cap of 50 % on it with `xl sched-<scheduler> -c`
//! and reads it back, measures the CPU time the busy domU gets capped and uncapped, pings it
//! from dom0, `xl destroy`s it and waits for the
//! free memory to come back. Every step prints a tagged line that [`systest_check`] reads.
//!
//! With `xenith-dom0less` on dom0's command line the script runs Debian's `init-dom0less`
//! instead of the domU's life: the boot's dom0less domU1 (`xen,enhanced`) is introduced to
//! xenstore and named for libxl, `xl list` shows it, and `xl pause` stops its heartbeats until
//! `xl unpause` (`linux_dom0_toolstack_dom0less` and its `_on_xen` twin).
//!
//! `cargo xtask run --dom0 linux --toolstack` boots it; the system tests
//! `linux_dom0_toolstack_xl` (xenith, `sched=credit`: the domU's vCPUs share the CPUs with
//! dom0's) and `linux_dom0_toolstack_xl_on_xen` (Debian's Xen 4.17, the reference) run the
//! same script; `cargo xtask bench --only xl` times `xl create` to the domU's marker on both.

use crate::env::{self, Result};
use crate::linux::Cpio;
use crate::qemu::{Boot, Outcome};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Debian arm64 packages: the programs, their libraries, and the C library.
const PACKAGES: &[&str] = &[
    "xen-utils-4.17",
    "xenstore-utils",
    "libxenmisc4.17",
    "libxencall1",
    "libxenevtchn1",
    "libxenforeignmemory1",
    "libxengnttab1",
    "libxenstore4",
    "libxentoollog1",
    "libxentoolcore1",
    "libxendevicemodel1",
    "libxenhypfs1",
    "libyajl2",
    "libfdt1",
    "libuuid1",
    "zlib1g",
    "libc6",
    "libgcc-s1",
];

/// Programs: (path in the packages, path in the initramfs).
const PROGRAMS: &[(&str, &str)] = &[
    ("usr/lib/xen-4.17/bin/xl", "usr/sbin/xl"),
    ("usr/lib/xen-4.17/bin/xenstored", "usr/sbin/xenstored"),
    ("usr/lib/xen-4.17/bin/xenconsoled", "usr/sbin/xenconsoled"),
    ("usr/lib/xen-4.17/bin/xen-init-dom0", "usr/sbin/xen-init-dom0"),
    ("usr/lib/xen-4.17/bin/init-dom0less", "usr/sbin/init-dom0less"),
    ("usr/bin/xenstore", "usr/bin/xenstore"),
    // `xl console` runs it from libxl's private directory.
    ("usr/lib/xen-4.17/bin/xenconsole", "usr/lib/xen-4.17/bin/xenconsole"),
];

/// Names the xenstore multi-call program answers to.
const XENSTORE_NAMES: &[&str] = &["xenstore-ls", "xenstore-read", "xenstore-write", "xenstore-list", "xenstore-exists", "xenstore-rm"];

/// Loaded by glibc at run time (thread cancellation), never named as NEEDED.
const ALSO_LOADED: &[&str] = &["libgcc_s.so.1"];

/// Where the libraries go (the dynamic loader's multiarch directory; the script also sets
/// LD_LIBRARY_PATH to it).
const LIBDIR: &str = "lib/aarch64-linux-gnu";

/// Printed by the script once every `xl` command ran.
pub const DONE: &str = "TOOLSTACK-DONE";

/// The script /init runs (see the module documentation).
fn script() -> String {
    use crate::xl_domu::{DOMU_IP, DONE as DOMU_DONE, MARKER as DOMU_MARKER, NAME};
    format!(
        "#!/bin/sh\n\
         # Xen's toolstack in dom0: the daemons, xl's view of the machine, then a domU's life.\n\
         export LD_LIBRARY_PATH=/{LIBDIR}\n\
         export PATH=/usr/sbin:/usr/bin:/sbin:/bin\n\
         mkdir -p /run /var /var/lib/xen /var/lib/xenstored /var/log/xen /etc/xen\n\
         echo 'autoballoon=\"off\"' > /etc/xen/xl.conf\n\
         mount -t tmpfs tmpfs /run && mkdir -p /run/xen /run/xenstored /run/lock && ln -sf /run /var/run && ln -sf /run/lock /var/lock\n\
         # xenconsoled gives each domU's console a pty.\n\
         mkdir -p /dev/pts && mount -t devpts devpts /dev/pts\n\
         echo \"toolstack: starting xenstored\"\n\
         XENSTORED_ROOTDIR=/var/lib/xenstored xenstored --pid-file /run/xen/xenstored.pid\n\
         i=0; until xenstore-read / >/dev/null 2>&1 || [ $i -ge 50 ]; do sleep 0.2; i=$((i+1)); done\n\
         xenstore-read / >/dev/null 2>&1 && echo \"toolstack: xenstored answers\" || echo \"toolstack: xenstored does not answer\"\n\
         xen-init-dom0 && echo \"toolstack: xen-init-dom0 done\" || echo \"toolstack: xen-init-dom0 failed ($?)\"\n\
         xenconsoled --pid-file=/run/xen/xenconsoled.pid && echo \"toolstack: xenconsoled started\" || echo \"toolstack: xenconsoled failed ($?)\"\n\
         echo \"toolstack: xl info\"; xl info 2>&1 | sed 's/^/xl-info: /'\n\
         echo \"toolstack: xl list\"; xl list 2>&1 | sed 's/^/xl-list: /'\n\
         echo \"toolstack: xl vcpu-list\"; xl vcpu-list 2>&1 | sed 's/^/xl-vcpu-list: /'\n\
         echo \"toolstack: daemons: $(for p in xenstored xenconsoled; do pidof $p >/dev/null && echo -n \"$p \"; done)\"\n\
         if grep -q {DOM0LESS_FLAG} /proc/cmdline; then\n\
         # The boot's dom0less domU (xen,enhanced): introduced to xenstore and named for libxl.\n\
         echo \"toolstack: xl list before init-dom0less\"; xl list 2>&1 | sed 's/^/xl-list-pre: /'\n\
         init-dom0less > /tmp/init-dom0less.log 2>&1; rc=$?\n\
         sed 's/^/init-dom0less: /' /tmp/init-dom0less.log\n\
         echo \"{INIT_DOM0LESS_EXIT} $rc\"\n\
         echo \"toolstack: xl list after init-dom0less\"; xl list 2>&1 | sed 's/^/xl-list-dom0less: /'\n\
         xl vcpu-list 2>&1 | sed 's/^/xl-vcpu-list-dom0less: /'\n\
         echo \"toolstack: dom0less xenstore: name $(xenstore-read /local/domain/1/name 2>&1), store port $(xenstore-read /local/domain/1/store/port 2>&1), ring-ref $(xenstore-read /local/domain/1/store/ring-ref 2>&1)\"\n\
         sleep 5\n\
         # Paused, it beats no more and `xl list` shows it paused; unpaused, it beats again.\n\
         xl pause {DOM0LESS_NAME}; echo \"{PAUSE_EXIT} $?\"\n\
         xl list 2>&1 | sed 's/^/xl-list-paused: /'\n\
         sleep {PAUSED_SECS}\n\
         echo \"{UNPAUSING}\"\n\
         xl unpause {DOM0LESS_NAME}; echo \"{UNPAUSE_EXIT} $?\"\n\
         xl list 2>&1 | sed 's/^/xl-list-unpaused: /'\n\
         sleep {PAUSED_SECS}\n\
         echo \"{DOM0LESS_DONE}\"\n\
         elif [ -f /etc/xenith/domu.cfg ]; then\n\
         for m in $(cat /etc/xenith/xl-modules); do n=$(echo ${{m%.ko}} | tr - _); [ -d /sys/module/$n ] || insmod /lib/modules/xl/$m || echo \"toolstack: insmod $m failed\"; done\n\
         free_mem() {{ xl info | awk '$1 == \"free_memory\" {{ print $3 }}'; }}\n\
         free_before=$(free_mem)\n\
         echo \"toolstack: free_memory before create: $free_before\"\n\
         echo \"{UPTIME_AT_CREATE} $(cut -d' ' -f1 /proc/uptime)\"\n\
         echo \"{CREATE_START}\"\n\
         xl create /etc/xenith/domu.cfg > /tmp/xl-create.log 2>&1; rc=$?\n\
         sed 's/^/xl-create: /' /tmp/xl-create.log\n\
         echo \"toolstack: xl create exit $rc\"\n\
         echo \"{UPTIME_AT_CREATE_EXIT} $(cut -d' ' -f1 /proc/uptime)\"\n\
         if [ $rc -eq 0 ]; then\n\
         mkfifo /tmp/console-in; (exec sleep 100000 > /tmp/console-in) & hold=$!\n\
         xl console {NAME} < /tmp/console-in 2>&1 | awk '{{ sub(/\\r$/, \"\"); print \"xl-console: \" $0; if (!seen && index($0, \"{DOMU_MARKER}\")) {{ seen = 1; getline u < \"/proc/uptime\"; close(\"/proc/uptime\"); split(u, f, \" \"); print \"{UPTIME_AT_DOMU_MARKER} \" f[1] }} fflush(); print > \"/tmp/domu-console.log\"; fflush(\"/tmp/domu-console.log\") }}' &\n\
         i=0; until grep -q {DOMU_DONE} /tmp/domu-console.log 2>/dev/null || [ $i -ge 600 ]; do sleep 0.2; i=$((i+1)); done\n\
         grep -q {DOMU_DONE} /tmp/domu-console.log 2>/dev/null && echo \"toolstack: domU done\" || echo \"toolstack: the domU never printed {DOMU_DONE}\"\n\
         echo \"toolstack: xl list with the domU\"; xl list 2>&1 | sed 's/^/xl-list-domu: /'\n\
         xl vcpu-list {NAME} 2>&1 | sed 's/^/xl-vcpu-list-domu: /'\n\
         # A cap of 50 % of a CPU on the domU (busy on one vCPU now), read back, its CPU time\n\
         # over 4 s, the cap removed and the same again, with the scheduler in force (credit on\n\
         # xenith; Debian's Xen 4.17 runs credit2: both take `-c`).\n\
         sched=$(xl info | awk '$1 == \"xen_scheduler\" {{ print $3 }}')\n\
         cpu_time() {{ t0=$(xl list {NAME} | awk 'NR == 2 {{ print $6 }}'); w0=$(cut -d' ' -f1 /proc/uptime); sleep 4; t1=$(xl list {NAME} | awk 'NR == 2 {{ print $6 }}'); w1=$(cut -d' ' -f1 /proc/uptime); echo \"{CPU_TIME} $1 $t0 $t1 wall $w0 $w1\"; }}\n\
         xl sched-$sched -d {NAME} 2>&1 | sed 's/^/xl-sched-before: /'\n\
         xl sched-$sched -d {NAME} -c 50 2>&1 | sed 's/^/xl-sched-put: /'\n\
         xl sched-$sched -d {NAME} 2>&1 | sed 's/^/xl-sched-capped: /'\n\
         cpu_time capped; xl vcpu-list {NAME} 2>&1 | sed 's/^/xl-vcpu-list-capped: /'\n\
         xl sched-$sched -d {NAME} -c 0 2>&1 | sed 's/^/xl-sched-put: /'\n\
         xl sched-$sched -d {NAME} 2>&1 | sed 's/^/xl-sched-uncapped: /'\n\
         cpu_time uncapped; xl vcpu-list {NAME} 2>&1 | sed 's/^/xl-vcpu-list-uncapped: /'\n\
         echo \"toolstack: dom0 pings the domU: $(ping -c 2 -W 5 {DOMU_IP} 2>&1 | grep 'packets transmitted')\"\n\
         # dom0 maps the domU's xenstore grant and holds it across the destroy.\n\
         xl domid {NAME} > /tmp/gnthold.domid 2>/dev/null; gh=\n\
         if [ -x /bin/gnthold ]; then /bin/gnthold > /tmp/gnthold.log 2>&1 & gh=$!; i=0; until grep -q mapped /tmp/gnthold.log || [ $i -ge 50 ]; do sleep 0.1; i=$((i+1)); done; sed 's/^/gnthold: /' /tmp/gnthold.log; fi\n\
         xl destroy {NAME} > /tmp/xl-destroy.log 2>&1; rc=$?\n\
         sed 's/^/xl-destroy: /' /tmp/xl-destroy.log\n\
         echo \"toolstack: xl destroy exit $rc\"\n\
         echo \"toolstack: xl list while dom0 holds its grant\"; xl list 2>&1 | sed 's/^/xl-list-held: /'\n\
         [ -n \"$gh\" ] && kill $gh && wait $gh 2>/dev/null; echo \"toolstack: grant released\"\n\
         kill $hold 2>/dev/null\n\
         fi\n\
         i=0; while :; do free_after=$(free_mem); [ \"$free_after\" = \"$free_before\" ] || [ $i -ge 50 ] && break; sleep 0.2; i=$((i+1)); done\n\
         echo \"toolstack: free_memory after destroy: $free_after\"\n\
         echo \"toolstack: xl list after destroy\"; xl list 2>&1 | sed 's/^/xl-list-after: /'\n\
         sed 's/^/hotplug: /' /var/log/xen/hotplug.log 2>/dev/null\n\
         [ $rc -eq 0 ] || for f in /var/log/xen/*.log; do sed \"s|^|$f: |\" $f; done\n\
         fi\n\
         echo {DONE}\n"
    )
}

/// In dom0's command line: the boot has a dom0less domU for `init-dom0less` (the script does
/// that instead of `xl create`).
const DOM0LESS_FLAG: &str = "xenith-dom0less";
/// Printed with the domU's CPU time (`xl list`, s) and dom0's uptime before and after 4 s, capped
/// at 50 % and uncapped.
const CPU_TIME: &str = "toolstack: domU cpu time";
/// Printed with init-dom0less's exit status.
const INIT_DOM0LESS_EXIT: &str = "toolstack: init-dom0less exit";
/// Printed at the end of the dom0less steps: 5 s after `init-dom0less` (the domU's heartbeats
/// meanwhile show it runs on), `xl pause` of the domU, [`PAUSED_SECS`] s, `xl unpause` and as
/// long again.
const DOM0LESS_DONE: &str = "toolstack: dom0less done";
/// Printed with `xl pause`'s exit status (of the dom0less domU).
const PAUSE_EXIT: &str = "toolstack: xl pause exit";
/// Printed before `xl unpause`, [`PAUSED_SECS`] s after the pause.
const UNPAUSING: &str = "toolstack: dom0less unpausing";
/// Printed with `xl unpause`'s exit status.
const UNPAUSE_EXIT: &str = "toolstack: xl unpause exit";
/// Seconds dom0 leaves the domU paused, and then running: 3 of its 2-s heartbeats.
const PAUSED_SECS: u32 = 6;

/// Printed by the script just before `xl create` (the bench times from this line to the
/// domU's marker).
pub const CREATE_START: &str = "toolstack: xl create starting";
/// dom0's /proc/uptime just before `xl create`, and when the domU's marker came through `xl
/// console` (the bench's guest-time figure under -icount).
const UPTIME_AT_CREATE: &str = "toolstack: dom0 uptime at xl create:";
/// dom0's /proc/uptime as `xl create` has returned (the domain built, its vCPUs unpaused).
const UPTIME_AT_CREATE_EXIT: &str = "toolstack: dom0 uptime at xl create exit:";
const UPTIME_AT_DOMU_MARKER: &str = "toolstack: dom0 uptime at the domU marker:";

/// The ELF's NEEDED libraries (`readelf -d`).
fn needed(path: &Path) -> Result<Vec<String>> {
    let out = env::output(Command::new("readelf").arg("-d").arg(path))?;
    Ok(out.lines().filter(|l| l.contains("(NEEDED)")).filter_map(|l| l.split('[').nth(1)?.split(']').next().map(str::to_string)).collect())
}

/// The toolstack's cpio archive (programs, libraries, the script), built from the packages.
fn archive() -> Result<Vec<u8>> {
    env::ensure_tool("readelf", "binutils")?;
    let roots: Vec<PathBuf> = PACKAGES.iter().map(|p| env::debian_package(p, "arm64")).collect::<Result<_>>()?;
    // Every shared object the packages ship, by file name (the first package's wins).
    let mut libs: BTreeMap<String, PathBuf> = BTreeMap::new();
    for root in &roots {
        for dir in ["lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu", "usr/lib", "lib"] {
            let Ok(rd) = std::fs::read_dir(root.join(dir)) else { continue };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.contains(".so") {
                    libs.entry(name).or_insert(e.path());
                }
            }
        }
    }
    let find_program = |rel: &str| roots.iter().map(|r| r.join(rel)).find(|p| p.exists()).ok_or_else(|| format!("no package of {PACKAGES:?} has /{rel}"));
    let mut c = Cpio::default();
    for d in ["etc", "etc/xenith", "lib", LIBDIR, "usr", "usr/sbin", "usr/bin", "usr/lib", "usr/lib/xen-4.17", "usr/lib/xen-4.17/bin"] {
        c.dir(d);
    }
    // Programs, then the libraries they need, transitively.
    let mut todo: Vec<PathBuf> = Vec::new();
    for (from, to) in PROGRAMS {
        let p = find_program(from)?;
        c.file(to, 0o755, &std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?);
        todo.push(p);
    }
    for name in XENSTORE_NAMES {
        c.symlink(&format!("usr/bin/{name}"), "xenstore");
    }
    let mut placed: BTreeMap<String, ()> = BTreeMap::new();
    let mut wanted: Vec<String> = ALSO_LOADED.iter().map(|s| s.to_string()).collect();
    while let Some(p) = todo.pop() {
        wanted.extend(needed(&p)?);
        while let Some(name) = wanted.pop() {
            if placed.contains_key(&name) {
                continue;
            }
            let path = libs.get(&name).ok_or_else(|| format!("{name} (needed by the toolstack) is in none of the packages {PACKAGES:?}"))?;
            let real = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let bytes = std::fs::read(&real).map_err(|e| format!("{}: {e}", real.display()))?;
            if name.starts_with("ld-linux") {
                c.file(&format!("lib/{name}"), 0o755, &bytes);
            } else {
                c.file(&format!("{LIBDIR}/{name}"), 0o755, &bytes);
            }
            placed.insert(name, ());
            todo.push(real);
        }
    }
    c.file("etc/xenith/toolstack.sh", 0o755, script().as_bytes());
    crate::xl_domu::add_to(&mut c)?;
    Ok(c.finish())
}

/// dom0's initramfs with the toolstack appended: `base` (the busybox initramfs) followed by the
/// toolstack's archive, cached next to it.
fn initramfs(base: &Path) -> Result<PathBuf> {
    let out = base.with_extension("toolstack.cpio");
    let mut bytes = std::fs::read(base).map_err(|e| format!("{}: {e}", base.display()))?;
    bytes.extend(archive()?);
    std::fs::write(&out, bytes).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(out)
}

/// Give a Linux-dom0 boot (one `linux::use_for` set up) the toolstack: its initrd becomes the
/// busybox initramfs with the toolstack appended.
pub fn use_for(boot: &mut Boot) -> Result<()> {
    let at = boot.extra.iter().position(|a| a.starts_with("guest-loader,") && a.contains(",initrd=")).ok_or("--toolstack needs --dom0 linux (a dom0 with the busybox initramfs)")?;
    let arg = boot.extra[at].clone();
    let (head, path) = arg.split_once(",initrd=").ok_or("no initrd")?;
    let combined = initramfs(Path::new(path))?;
    boot.extra[at] = format!("{head},initrd={}", combined.display());
    Ok(())
}

/// The system test's boot on hypervisor `hypervisor` with Xen's `cmdline`: Linux dom0 with 2
/// vCPUs and the toolstack.
pub fn systest_boot(hypervisor: PathBuf, cmdline: &str) -> Boot {
    let mut b = Boot::new(hypervisor);
    b.timeout = Duration::from_secs(300);
    b.cmdline = format!("{cmdline} dom0_max_vcpus={}", crate::linux::SYSTEST_VCPUS).trim().to_string();
    if let Err(e) = crate::linux::use_for(&mut b).and_then(|()| use_for(&mut b)) {
        eprintln!("xtask: Linux dom0 with the toolstack: {e}");
        b.dom0 = Some(PathBuf::from("/nonexistent/toolstack-fixtures-unavailable"));
    }
    b
}

/// The reference: the same boot on Debian's Xen 4.17.
pub fn xen_systest_boot() -> Boot {
    match crate::fixtures::xen_4_17() {
        Ok(xen) => systest_boot(xen, crate::linux::XEN_CMDLINE),
        Err(e) => {
            eprintln!("xtask: Xen 4.17 fixtures: {e}");
            Boot::new(PathBuf::from("/nonexistent/xen-4.17-fixtures-unavailable"))
        }
    }
}

/// Where QEMU loads the dom0less domU's kernel (the test guest): above dom0's kernel and its
/// initramfs with the toolstack (about 100 MB from 0x49000000).
const DOM0LESS_KERNEL_ADDR: u64 = 0x5800_0000;
/// The dom0less domU's RAM.
const DOM0LESS_MEMORY_MIB: u64 = 64;
/// Its console line (vpl011) in heartbeat mode, on both hypervisors.
const DOM0LESS_HEARTBEAT: &str = "DOM1: heartbeat ";
/// The guest frame of a dom0less domain's xenstore page that init-dom0less populates and
/// writes to xenstore: the second of Xen's magic pages (0x39000000 on ARM).
const XENSTORE_RING_REF: u64 = 0x39001;
/// The name init-dom0less gives domain 1.
const DOM0LESS_NAME: &str = "dom0less-1";

/// The dom0less system test's boot on `hypervisor` with `cmdline`: the toolstack boot with a
/// dom0less domU (the test guest `guest` printing a heartbeat every 2 s, one vCPU, 64 MiB,
/// `xen,enhanced = "enabled"`) that shares the 2 CPUs with dom0's 2 vCPUs; dom0's script runs
/// init-dom0less and lists it instead of creating a domU.
pub fn dom0less_systest_boot(hypervisor: PathBuf, cmdline: &str, guest: &Path) -> Boot {
    dom0less_boot(hypervisor, cmdline, guest, "toolstack-dom0less", 3)
}

/// [`dom0less_systest_boot`] on QEMU virt with `gic-version=2`.
pub fn dom0less_systest_boot_gicv2(hypervisor: PathBuf, cmdline: &str, guest: &Path) -> Boot {
    dom0less_boot(hypervisor, cmdline, guest, "toolstack-dom0less-gicv2", 2)
}

/// [`dom0less_systest_boot`], its generated files named after `tag`, on a GICv`gic`.
fn dom0less_boot(hypervisor: PathBuf, cmdline: &str, guest: &Path, tag: &str, gic: u8) -> Boot {
    let mut b = systest_boot(hypervisor.clone(), cmdline);
    b.gic = gic;
    b.dom0_args = format!("{} {DOM0LESS_FLAG}", b.dom0_args);
    let with_domu = |mut b: Boot| -> Result<Boot> {
        let size = std::fs::metadata(guest).map_err(|e| format!("{}: {e}", guest.display()))?.len();
        b.extra.push("-device".into());
        b.extra.push(format!("loader,file={},addr={DOM0LESS_KERNEL_ADDR:#x},force-raw=on", guest.display()));
        let node = crate::conformance::dom0less_node_with(1, DOM0LESS_KERNEL_ADDR, DOM0LESS_MEMORY_MIB << 10, size, "console=ttyAMA0 domu heartbeat-slow", "\t\t\txen,enhanced = \"enabled\";\n");
        b.dtb = Some(crate::conformance::dom0less_dtb_with(&b, &node, tag)?);
        Ok(b)
    };
    with_domu(b).unwrap_or_else(|e| {
        eprintln!("xtask: the dom0less domU for the toolstack: {e}");
        Boot { dom0: Some(PathBuf::from("/nonexistent/toolstack-dom0less-unavailable")), ..Boot::new(hypervisor) }
    })
}

/// The same boot on Debian's Xen 4.17, the reference.
pub fn xen_dom0less_systest_boot(guest: &Path) -> Boot {
    match crate::fixtures::xen_4_17() {
        Ok(xen) => dom0less_boot(xen, crate::linux::XEN_CMDLINE, guest, "toolstack-dom0less-xen", 3),
        Err(e) => {
            eprintln!("xtask: Xen 4.17 fixtures: {e}");
            Boot::new(PathBuf::from("/nonexistent/xen-4.17-fixtures-unavailable"))
        }
    }
}

/// init-dom0less introduced the dom0less domU: it exited 0 having initialised domain 1;
/// xenstore has the domain's name and store port; `xl list` shows it by name as domain 1
/// with its 64 MiB and 1 vCPU, `xl vcpu-list` its vCPU; the domU printed heartbeats before
/// and at least 2 after init-dom0less (it ran on), and its domain was never stopped. The
/// system tests run it after [`check`] (on Xen without the CPU count, as in
/// [`xen_systest_check`]).
pub fn check_dom0less(o: &Outcome) -> std::result::Result<(), String> {
    if !o.has(DOM0LESS_DONE) {
        return Err(format!("the script never printed `{DOM0LESS_DONE}`"));
    }
    if !o.has(&format!("{INIT_DOM0LESS_EXIT} 0")) {
        return Err(format!("init-dom0less failed: {:?}", lines(o, "init-dom0less: ")));
    }
    if !lines(o, "init-dom0less: ").iter().any(|l| l.trim() == "Init dom0less domain: 1") {
        return Err(format!("init-dom0less did not initialise domain 1: {:?}", lines(o, "init-dom0less: ")));
    }
    let xs = lines(o, "toolstack: dom0less xenstore: ");
    let xs = xs.first().ok_or("no xenstore line for the dom0less domU")?;
    if !xs.starts_with(&format!("name {DOM0LESS_NAME}, store port ")) || !xs.ends_with(&format!("ring-ref {XENSTORE_RING_REF}")) {
        return Err(format!("xenstore for domain 1: `{xs}`"));
    }
    let listed = lines(o, "xl-list-dom0less: ");
    let row = listed.iter().find(|l| l.starts_with(DOM0LESS_NAME)).ok_or_else(|| format!("`xl list` after init-dom0less does not show {DOM0LESS_NAME}: {listed:?}"))?;
    let cols: Vec<&str> = row.split_whitespace().collect();
    if cols.get(1) != Some(&"1") || cols.get(2) != Some(&DOM0LESS_MEMORY_MIB.to_string().as_str()) || cols.get(3) != Some(&"1") {
        return Err(format!("`xl list`: {DOM0LESS_NAME} should be domain 1 with {DOM0LESS_MEMORY_MIB} MiB and 1 vCPU: {row}"));
    }
    let vcpus = lines(o, "xl-vcpu-list-dom0less: ").iter().filter(|l| l.starts_with(DOM0LESS_NAME)).count();
    if vcpus != 1 {
        return Err(format!("`xl vcpu-list` shows {vcpus} vCPUs of {DOM0LESS_NAME}, want 1"));
    }
    let (before, after) = crate::linux::domu_beat_through(o, DOM0LESS_HEARTBEAT, INIT_DOM0LESS_EXIT, "init-dom0less ended")?;
    println!("    dom0less: `{row}`; heartbeats {before} before init-dom0less ended, {after} after");
    check_dom0less_pause(o)
}

/// `xl pause` of the dom0less domU stopped it and `xl unpause` let it go on: both exited 0; it
/// beat between init-dom0less and the pause, not once in the [`PAUSED_SECS`] s after the pause
/// returned, and at least twice after the unpause; `xl list` showed it paused (`p` in its
/// state) while it was, and not after.
fn check_dom0less_pause(o: &Outcome) -> std::result::Result<(), String> {
    for exit in [PAUSE_EXIT, UNPAUSE_EXIT] {
        if !o.has(&format!("{exit} 0")) {
            return Err(format!("`{exit} 0` not in the output: {:?}", lines(o, exit)));
        }
    }
    let state = |tag: &str| -> std::result::Result<String, String> {
        let listed = lines(o, tag);
        let row = listed.iter().find(|l| l.starts_with(DOM0LESS_NAME)).ok_or_else(|| format!("`xl list` ({tag}) does not show {DOM0LESS_NAME}: {listed:?}"))?;
        row.split_whitespace().nth(4).map(str::to_string).ok_or_else(|| format!("`xl list` ({tag}): no state in `{row}`"))
    };
    let (paused, unpaused) = (state("xl-list-paused: ")?, state("xl-list-unpaused: ")?);
    if !paused.contains('p') || unpaused.contains('p') {
        return Err(format!("`xl list` state of {DOM0LESS_NAME}: `{paused}` while paused, `{unpaused}` after the unpause"));
    }
    let all: Vec<&str> = o.output.lines().collect();
    let at = |mark: &str| all.iter().position(|l| l.contains(mark)).ok_or_else(|| format!("no line with `{mark}`"));
    let (init, pause, unpausing, unpause, done) = (at(INIT_DOM0LESS_EXIT)?, at(PAUSE_EXIT)?, at(UNPAUSING)?, at(UNPAUSE_EXIT)?, at(DOM0LESS_DONE)?);
    // Between the marker lines, not on them (a line of the guest's may be cut into dom0's).
    let beats = |from: usize, to: usize| all.get(from + 1..to).map_or(0, |ls| ls.iter().filter(|l| l.contains(DOM0LESS_HEARTBEAT)).count());
    let (running, while_paused, resumed) = (beats(init, pause), beats(pause, unpausing), beats(unpause, done));
    println!("    dom0less pause: heartbeats {running} before `xl pause`, {while_paused} in the {PAUSED_SECS} s paused, {resumed} after `xl unpause`; xl list `{paused}` then `{unpaused}`");
    if running == 0 || while_paused != 0 || resumed < 2 {
        return Err(format!("the dom0less domU's heartbeats: {running} before the pause (want some), {while_paused} while paused (want 0), {resumed} after the unpause (want at least 2)"));
    }
    Ok(())
}

/// The lines of one command's output (`xl-info: ...`).
fn lines<'a>(o: &'a Outcome, tag: &str) -> Vec<&'a str> {
    o.output.lines().filter_map(|l| l.trim_end().split_once(tag).map(|(_, r)| r)).collect()
}

/// [`check`] and [`check_domu`] on xenith: the machine's 2 CPUs.
pub fn systest_check(o: &Outcome) -> std::result::Result<(), String> {
    check(o, Some("2"))?;
    check_domu(o)
}

/// [`check`] and [`check_domu`] on Xen 4.17: under TCG on a loaded host Xen sometimes fails to
/// bring its second CPU up (then runs both dom0 vCPUs on one), which is Xen's and QEMU's
/// business here.
pub fn xen_systest_check(o: &Outcome) -> std::result::Result<(), String> {
    check(o, None)?;
    check_domu(o)
}

/// The domU's life: `xl create` succeeded; through `xl console` its marker (with both vCPUs
/// online), the disk's file with the payload's checksum, every ping to dom0 answered; `xl list`
/// showed it with its vCPUs and memory; dom0 reached it over the vif; `xl destroy` succeeded,
/// it left `xl list` and `xl info`'s free memory came back to its value before the create; the
/// hotplug scripts attached and detached the loop device and brought the vif up.
fn check_domu(o: &Outcome) -> std::result::Result<(), String> {
    use crate::xl_domu::{DONE as DOMU_DONE, MARKER as DOMU_MARKER, MEMORY_MIB, NAME, PINGS, VCPUS};
    if !o.has("toolstack: xl create exit 0") {
        let why: Vec<&str> = lines(o, "xl-create: ");
        return Err(format!("`xl create` failed: {why:?}"));
    }
    let console = lines(o, "xl-console: ");
    let marker = console.iter().find(|l| l.starts_with(DOMU_MARKER)).ok_or_else(|| format!("`xl console` never showed the domU's `{DOMU_MARKER}`"))?;
    if !marker.ends_with("cpus 0-1") {
        return Err(format!("the domU's vCPUs online: {marker}, want cpus 0-1"));
    }
    let want = crate::xl_domu::payload_sha256().map_err(|e| format!("the payload's checksum: {e}"))?;
    let disk = console.iter().find_map(|l| l.strip_prefix("domu-disk: ")).ok_or("the domU printed no domu-disk line")?;
    if disk != format!("sha256 {want}") {
        return Err(format!("the domU's disk: `{disk}`, want sha256 {want}"));
    }
    let net = console.iter().find_map(|l| l.strip_prefix("domu-net: ")).ok_or("the domU printed no domu-net line")?;
    if !net.starts_with(&format!("{PINGS} packets transmitted, {PINGS} packets received")) {
        return Err(format!("the domU's pings to dom0: `{net}`, want {PINGS} of {PINGS} answered"));
    }
    if !console.iter().any(|l| *l == format!("domu: vcpus {VCPUS}")) || !console.iter().any(|l| l.starts_with(DOMU_DONE)) || !o.has("toolstack: domU done") {
        return Err(format!("the domU did not report {VCPUS} vCPUs and `{DOMU_DONE}`"));
    }
    let listed = lines(o, "xl-list-domu: ");
    let row = listed.iter().find(|l| l.starts_with(NAME)).ok_or_else(|| format!("`xl list` did not show {NAME}: {listed:?}"))?;
    let cols: Vec<&str> = row.split_whitespace().collect();
    if cols.get(2) != Some(&MEMORY_MIB.to_string().as_str()) || cols.get(3) != Some(&VCPUS.to_string().as_str()) {
        return Err(format!("`xl list`: {NAME} should have {MEMORY_MIB} MiB and {VCPUS} vCPUs: {row}"));
    }
    let vcpus = lines(o, "xl-vcpu-list-domu: ").iter().filter(|l| l.starts_with(NAME)).count();
    if vcpus != VCPUS as usize {
        return Err(format!("`xl vcpu-list {NAME}` shows {vcpus} vCPUs, want {VCPUS}"));
    }
    // `xl sched-<scheduler> -d NAME`: `NAME ID Weight Cap`; the cap 0, 50 once set, 0 again.
    for (tag, cap) in [("xl-sched-before: ", "0"), ("xl-sched-capped: ", "50"), ("xl-sched-uncapped: ", "0")] {
        let shown = lines(o, tag);
        let row = shown.iter().map(|l| l.split_whitespace().collect::<Vec<_>>()).find(|c| c.first() == Some(&NAME));
        if row.as_ref().and_then(|c| c.get(3)) != Some(&cap) {
            return Err(format!("`xl sched-<scheduler> -d {NAME}` ({tag}) should show cap {cap}: {shown:?} {:?}", lines(o, "xl-sched-put: ")));
        }
    }
    // Its CPU time over 4 s of wall clock, one vCPU busy and the other idle: about half a CPU
    // capped (the whole cap goes to the busy vCPU, as on Xen), nearly one uncapped.
    let share = |what: &str| -> std::result::Result<f64, String> {
        let l = lines(o, &format!("{CPU_TIME} {what} ")).first().copied().ok_or_else(|| format!("no `{CPU_TIME} {what}` line"))?;
        let f: Vec<f64> = l.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        match f[..] {
            [t0, t1, w0, w1] if w1 > w0 => Ok((t1 - t0) / (w1 - w0)),
            _ => Err(format!("`{CPU_TIME} {what} {l}`: not CPU times and uptimes")),
        }
    };
    let (capped, uncapped) = (share("capped")?, share("uncapped")?);
    if !(0.2..=0.7).contains(&capped) || uncapped < 0.8 {
        return Err(format!("the busy domU used {capped:.2} CPUs capped at 50 % and {uncapped:.2} uncapped: want 0.2-0.7 and at least 0.8"));
    }
    if !o.has("toolstack: dom0 pings the domU: 2 packets transmitted, 2 packets received") {
        return Err("dom0's pings to the domU over the vif were not both answered".into());
    }
    if !o.has("toolstack: xl destroy exit 0") {
        return Err(format!("`xl destroy` failed: {:?}", lines(o, "xl-destroy: ")));
    }
    // While dom0 maps its xenstore grant the destroyed domain stays, dying (`d`), with the
    // held page; once dom0 unmaps it the domain is gone.
    let held = lines(o, "gnthold: ");
    let domid = held.iter().find_map(|l| l.split_once("mapped d")?.1.split_whitespace().next()).ok_or_else(|| format!("dom0 did not map the domU's xenstore grant: {held:?}"))?;
    let during = lines(o, "xl-list-held: ");
    let dying = during.iter().map(|l| l.split_whitespace().collect::<Vec<_>>()).any(|c| c.len() >= 6 && c[1] == domid && c[4].ends_with('d'));
    if !dying {
        return Err(format!("`xl list` after `xl destroy`, dom0 still mapping d{domid}'s grant, should show it dying: {during:?}"));
    }
    if lines(o, "xl-list-after: ").iter().any(|l| l.starts_with(NAME) || l.split_whitespace().nth(1) == Some(domid)) {
        return Err(format!("{NAME} is still in `xl list` after `xl destroy`"));
    }
    let free = |tag: &str| lines(o, tag).first().and_then(|v| v.trim().parse::<u64>().ok());
    match (free("toolstack: free_memory before create: "), free("toolstack: free_memory after destroy: ")) {
        (Some(a), Some(b)) if a == b => {}
        (a, b) => return Err(format!("`xl info` free_memory: {a:?} MiB before `xl create`, {b:?} after `xl destroy`")),
    }
    let hotplug = lines(o, "hotplug: ");
    for (what, ok) in [
        ("the block script attached the file to a loop device", hotplug.iter().any(|l| l.starts_with("block: /var/lib/xenith/disk.img on /dev/loop"))),
        ("the block script detached the loop device", hotplug.iter().any(|l| l.starts_with("block: /dev/loop") && l.ends_with(" detached"))),
        ("vif-route brought the vif up", hotplug.iter().any(|l| l.starts_with("vif-route: vif") && l.ends_with(" up"))),
    ] {
        if !ok {
            return Err(format!("expected: {what} ({hotplug:?})"));
        }
    }
    Ok(())
}

/// `xl info` printed the machine (its CPUs, memory, the hypervisor's version) and `xl list`
/// Domain-0 with its vCPUs; the daemons run; dom0 went on to its marker and powered off.
pub fn check(o: &Outcome, nr_cpus: Option<&str>) -> std::result::Result<(), String> {
    if !o.has(DONE) {
        return Err(format!("the toolstack script never printed `{DONE}` (timed out: {})", o.timed_out));
    }
    for needle in ["toolstack: xenstored answers", "toolstack: xen-init-dom0 done", "toolstack: xenconsoled started"] {
        if !o.has(needle) {
            return Err(format!("expected `{needle}`"));
        }
    }
    let info = lines(o, "xl-info: ");
    let field = |k: &str| info.iter().find_map(|l| l.split_once(':').filter(|(key, _)| key.trim() == k).map(|(_, v)| v.trim().to_string()));
    for (k, want) in [("nr_cpus", nr_cpus), ("xen_major", Some("4")), ("xen_minor", Some("17")), ("total_memory", None), ("free_memory", None), ("xen_scheduler", None), ("xen_caps", None)] {
        match (field(k), want) {
            (None, _) => return Err(format!("`xl info` printed no {k}: {info:?}")),
            (Some(v), Some(w)) if v != w => return Err(format!("`xl info` {k}: {v}, want {w}")),
            _ => {}
        }
    }
    let total: u64 = field("total_memory").and_then(|v| v.parse().ok()).unwrap_or(0);
    if !(2000..=2048).contains(&total) {
        return Err(format!("`xl info` total_memory {total} MiB, want the machine's 2 GiB"));
    }
    let list = lines(o, "xl-list: ");
    let dom0 = list.iter().find(|l| l.starts_with("Domain-0")).ok_or_else(|| format!("`xl list` has no Domain-0: {list:?}"))?;
    let cols: Vec<&str> = dom0.split_whitespace().collect();
    if cols.get(1) != Some(&"0") || cols.get(3) != Some(&"2") {
        return Err(format!("`xl list`: Domain-0 should be id 0 with 2 vCPUs: {dom0}"));
    }
    let mem: u64 = cols.get(2).and_then(|m| m.parse().ok()).unwrap_or(0);
    if !(500..=512).contains(&mem) {
        return Err(format!("`xl list`: Domain-0 has {mem} MiB, want dom0_mem's 512: {dom0}"));
    }
    let vcpus = lines(o, "xl-vcpu-list: ").iter().filter(|l| l.starts_with("Domain-0")).count();
    if vcpus != 2 {
        return Err(format!("`xl vcpu-list` shows {vcpus} Domain-0 vCPUs, want 2"));
    }
    for needle in [crate::linux::MARKER] {
        if !o.has(needle) {
            return Err(format!("expected `{needle}` after the toolstack"));
        }
    }
    for bad in ["HYPERVISOR BUG", "panicked", "domain killed", "Kernel panic", "Internal error: Oops", "segfault"] {
        if o.has(bad) {
            return Err(format!("`{bad}` in the output"));
        }
    }
    Ok(())
}

/// The `xl console` line that carries the domU's marker.
fn domu_marker_line() -> String {
    format!("xl-console: {}", crate::xl_domu::MARKER)
}

/// Part of `cargo xtask bench --against xen` (alone: `cargo xtask bench --only xl`): the system
/// test's boot (Linux dom0 with 2 vCPUs and the toolstack, the domU with 2 vCPUs on the 2 CPUs)
/// on xenith (`sched=credit`) and on Xen 4.17, wall seconds from dom0's "xl create starting"
/// line to the domU's marker arriving through `xl console`, both lines timestamped by the host
/// as they reach QEMU's serial port (median of 3 boots each, alternating between the
/// hypervisors so a change in the host's load falls on both). The domU's own uptime at its
/// marker (guest seconds: kernel boot to /init) is printed beside it. Then one boot each under
/// `-icount shift=0,sleep=off`: dom0's uptime from `xl create` to the marker's arrival, the
/// figure the verdict uses (the wall-clock one moves with the shared host's load). Fails
/// (after printing Xen's figures) when `xl create` or the domU fails on either, or xenith is
/// slower than Xen under -icount.
pub fn bench_against_xen(xenith: PathBuf, xen: PathBuf) -> Result<()> {
    let runs: usize = std::env::var("XENITH_XL_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let boots = [("xenith", systest_boot(xenith, "sched=credit")), ("Xen 4.17", systest_boot(xen, crate::linux::XEN_CMDLINE))];
    let needles = [CREATE_START.to_string(), domu_marker_line()];
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); boots.len()];
    let mut uptimes: Vec<Vec<f64>> = vec![Vec::new(); boots.len()];
    let mut failed: Vec<Option<String>> = vec![None; boots.len()];
    for run in 1..=runs {
        for (i, (name, b)) in boots.iter().enumerate() {
            if failed[i].is_some() {
                continue;
            }
            let (t, out) = crate::linux::needle_times(b, &needles)?;
            let o = Outcome { output: out, raw: Vec::new(), exit_code: None, timed_out: false, wall: Duration::ZERO, trouble_at: None };
            match (t[0], t[1]) {
                (Some(start), Some(marker)) => {
                    let up = lines(&o, &format!("{} uptime ", crate::xl_domu::MARKER)).first().and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok());
                    println!("  {name}: run {run}: xl create -> domU marker {:.2} s (domU uptime at marker {})", marker - start, up.map_or("-".into(), |u| format!("{u:.2} s")));
                    times[i].push(marker - start);
                    uptimes[i].extend(up);
                }
                (None, _) => failed[i] = Some(format!("dom0 never reached `xl create` (last lines:\n{})", crate::linux::tail(&o.output))),
                (Some(_), None) if !o.has("toolstack: xl create exit 0") => failed[i] = Some(format!("xl create failed: {:?}", lines(&o, "xl-create: "))),
                (Some(_), None) => failed[i] = Some(format!("the domU's marker never came through `xl console` (last lines:\n{})", crate::linux::tail(&o.output))),
            }
        }
    }
    // One more boot each under -icount shift=0,sleep=off: dom0's own clock (executed
    // instructions, idle time skipped to the next timer) from `xl create` to the marker, which
    // the host's load does not move.
    let mut guest: Vec<Option<f64>> = vec![None; boots.len()];
    for (i, (name, b)) in boots.iter().enumerate() {
        if failed[i].is_some() {
            continue;
        }
        let b = Boot { icount: true, timeout: Duration::from_secs(900), ..b.clone() };
        let o = b.run()?;
        let log = crate::env::root().join("target").join("systest-logs").join(format!("xl_bench_icount_{}.log", if i == 0 { "xenith" } else { "xen" }));
        let _ = std::fs::create_dir_all(log.parent().unwrap_or(Path::new("."))).and_then(|_| std::fs::write(&log, &o.output));
        let at = |tag: &str| lines(&o, tag).first().and_then(|v| v.trim().parse::<f64>().ok());
        match (at(UPTIME_AT_CREATE), at(UPTIME_AT_DOMU_MARKER)) {
            (Some(a), Some(m)) => {
                let e = at(UPTIME_AT_CREATE_EXIT).map_or("-".to_string(), |e| format!("{:.2} + {:.2}", e - a, m - e));
                println!("  {name}: -icount: xl create -> domU marker {:.2} guest s (building the domain + booting it: {e})", m - a);
                guest[i] = Some(m - a);
            }
            _ => failed[i] = Some(format!("the -icount boot did not time xl create -> the domU's marker (last lines:\n{})", crate::linux::tail(&o.output))),
        }
    }
    println!("xl create -> domU marker through xl console (Linux domU, 2 vCPUs, disk + vif; dom0 2 vCPUs; -smp 2):");
    println!("  {:<10} {:>25} {:>26} {:>22}", "", "create->marker (median s)", "domU uptime at marker (s)", "-icount (guest s)");
    let f = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.2}"));
    for (i, (name, _)) in boots.iter().enumerate() {
        match &failed[i] {
            Some(why) => println!("  {name}: {why}"),
            None => println!("  {name:<10} {:>25} {:>26} {:>22}", f(crate::linux::median(times[i].clone())), f(crate::linux::median(uptimes[i].clone())), f(guest[i])),
        }
    }
    if let Some((name, why)) = boots.iter().zip(&failed).find_map(|((n, _), w)| w.as_ref().map(|w| (n, w))) {
        return Err(format!("{name}: {why}"));
    }
    let (a, b) = (crate::linux::median(times[0].clone()).unwrap_or(f64::MAX), crate::linux::median(times[1].clone()).unwrap_or(0.0));
    let (ga, gb) = (guest[0].unwrap_or(f64::MAX), guest[1].unwrap_or(0.0));
    println!("  ratio xenith/Xen: {:.3} wall clock, {:.3} -icount (target <= 1)", a / b, ga / gb);
    if ga > gb {
        return Err(format!("xenith's xl create -> domU marker ({ga:.2} guest s under -icount) is slower than Xen 4.17's ({gb:.2})"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The domU part of a run on Xen 4.17 (lines from the system test's output).
    const XEN_RUN: &str = "toolstack: free_memory before create: 1504
toolstack: xl create starting
toolstack: xl create exit 0
xl-console: XENITH-XL-DOMU-USERSPACE-OK uptime 23.04 cpus 0-1
xl-console: domu-disk: sha256 f29fb072131fcfc725b5ec446ad19960b2b1b4fd78a3cbf5867009111fe602e0
xl-console: domu-net: 3 packets transmitted, 3 packets received, 0% packet loss
xl-console: domu: vcpus 2
xl-console: XENITH-XL-DOMU-DONE
toolstack: domU done
xl-list-domu: Name                                        ID   Mem VCPUs\tState\tTime(s)
xl-list-domu: Domain-0                                     0   512     2     r-----      61.9
xl-list-domu: xenith-domu                                  1   128     2     ------      33.0
xl-vcpu-list-domu: Name                                ID  VCPU   CPU State   Time(s) Affinity (Hard / Soft)
xl-vcpu-list-domu: xenith-domu                          1     0    0   -b-      19.1  all / all
xl-vcpu-list-domu: xenith-domu                          1     1    0   -b-      16.0  all / all
xl-sched-before: Name                                ID Weight  Cap
xl-sched-before: xenith-domu                          1    256    0
xl-sched-capped: Name                                ID Weight  Cap
xl-sched-capped: xenith-domu                          1    256   50
toolstack: domU cpu time capped 18.7 20.7 wall 40.12 44.84
xl-sched-uncapped: Name                                ID Weight  Cap
xl-sched-uncapped: xenith-domu                          1    256    0
toolstack: domU cpu time uncapped 23.4 28.2 wall 48.18 52.67
toolstack: dom0 pings the domU: 2 packets transmitted, 2 packets received, 0% packet loss
gnthold: gnthold: mapped d1 ref 1, first byte 0
toolstack: xl destroy exit 0
toolstack: xl list while dom0 holds its grant
xl-list-held: Name                                        ID   Mem VCPUs\tState\tTime(s)
xl-list-held: Domain-0                                     0   512     2     r-----     149.8
xl-list-held: (null)                                       1     0     2     --p--d      83.5
toolstack: grant released
toolstack: free_memory after destroy: 1504
xl-list-after: Name                                        ID   Mem VCPUs\tState\tTime(s)
xl-list-after: Domain-0                                     0   512     2     r-----      72.4
hotplug: block add backend/vbd/1/51712
hotplug: block: /var/lib/xenith/disk.img on /dev/loop0 (7:0)
hotplug: vif-route online vif1.0 backend/vif/1/0
hotplug: vif-route: vif1.0 up
hotplug: block remove backend/vbd/1/51712
hotplug: vif-route offline vif1.0 backend/vif/1/0
hotplug: block: /dev/loop0 detached
";

    fn outcome(output: &str) -> Outcome {
        Outcome { output: output.to_string(), raw: Vec::new(), exit_code: None, timed_out: false, wall: Duration::ZERO, trouble_at: None }
    }

    /// The script parses as a POSIX shell script (`sh -n`): a stray quote in a tag would stop
    /// dom0's script before its first line.
    #[test]
    fn script_parses() {
        use std::io::Write;
        let mut sh = std::process::Command::new("sh").arg("-n").stdin(std::process::Stdio::piped()).spawn().expect("sh");
        sh.stdin.take().expect("stdin").write_all(script().as_bytes()).expect("write");
        assert!(sh.wait().expect("sh -n").success(), "sh -n refused the script:\n{}", script());
    }

    #[test]
    fn domu_check_takes_the_xen_run() {
        assert_eq!(check_domu(&outcome(XEN_RUN)), Ok(()));
    }

    #[test]
    fn domu_check_refuses_each_failure() {
        for (from, to) in [
            ("xl create exit 0", "xl create exit 3"),
            ("XENITH-XL-DOMU-USERSPACE-OK", "XENITH-XL-DOMU-USERSPACE-??"),
            ("cpus 0-1", "cpus 0"),
            ("sha256 f29f", "sha256 029f"),
            ("3 packets received", "2 packets received"),
            ("domu: vcpus 2", "domu: vcpus 1"),
            ("   128     2     ------", "   128     1     ------"),
            ("xl-vcpu-list-domu: xenith-domu                          1     1", "xl-vcpu-list-domu: (gone)"),
            ("xl-sched-capped: xenith-domu                          1    256   50", "xl-sched-capped: xenith-domu                          1    256    0"),
            ("xl-sched-uncapped: xenith-domu                          1    256    0", "xl-sched-uncapped: xenith-domu                          1    256   50"),
            ("xl-sched-before: xenith-domu", "xl-sched-before: libxl: error"),
            // The cap ignored: the busy vCPU runs on.
            ("capped 18.7 20.7 wall", "capped 18.7 22.7 wall"),
            ("uncapped 23.4 28.2 wall", "uncapped 23.4 25.4 wall"),
            ("toolstack: domU cpu time uncapped", "toolstack: domU cpu uncapped"),
            ("dom0 pings the domU: 2 packets transmitted, 2 packets received", "dom0 pings the domU: 2 packets transmitted, 0 packets received"),
            ("xl destroy exit 0", "xl destroy exit 1"),
            ("free_memory after destroy: 1504", "free_memory after destroy: 1376"),
            ("xl-list-after: Domain-0", "xl-list-after: xenith-domu 1 128 2\nxl-list-after: Domain-0"),
            ("xl-list-after: Domain-0", "xl-list-after: (null) 1 0 2 --p--d 83.5\nxl-list-after: Domain-0"),
            ("gnthold: mapped d1", "gnthold: map ioctl: -22"),
            ("2     --p--d", "2     --p---"),
            ("xl-list-held: (null)", "xl-list-gone: (null)"),
            ("on /dev/loop0 (7:0)", "failed"),
            ("vif1.0 up", "vif1.0 down"),
        ] {
            assert!(XEN_RUN.contains(from), "{from}");
            let bad = XEN_RUN.replacen(from, to, 1);
            assert!(check_domu(&outcome(&bad)).is_err(), "accepted with `{from}` -> `{to}`");
        }
    }
}
