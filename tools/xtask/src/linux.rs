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
/// dom0's command line (the Xen reference setup's, see ../shared/facts/environment.md).
pub const DOM0_ARGS: &str = "console=hvc0 earlycon=xenboot rdinit=/init";

/// Modules the kernel package builds as modules that /init loads: Xen's devices (so /dev/xen
/// has evtchn, gntdev and privcmd) and virtio-rng (/dev/hwrng, when QEMU has a
/// virtio-rng-pci device: DMA behind the SMMU and a passed-through INTx interrupt).
const MODULES: &[&str] = &["xen-evtchn", "xen-gntdev", "xen-gntalloc", "xen-privcmd", "xenfs", "virtio-rng"];

/// Paths of the kernel and initramfs to boot.
pub struct Dom0Linux {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// Fetch (cached) the kernel and busybox, build the initramfs.
pub fn fixtures() -> Result<Dom0Linux> {
    let kpkg = env::debian_depends("linux-image-arm64", "arm64")?;
    let kdir = env::debian_package(&kpkg, "arm64")?;
    let kernel = std::fs::read_dir(kdir.join("boot"))
        .map_err(|e| format!("{}: {e}", kdir.join("boot").display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
        .ok_or_else(|| format!("{kpkg} has no /boot/vmlinuz-*"))?;
    check_image(&kernel)?;
    let version = kernel.file_name().map(|n| n.to_string_lossy().trim_start_matches("vmlinuz-").to_string()).unwrap_or_default();
    let bb = env::debian_package("busybox-static", "arm64")?.join("bin/busybox");
    let busybox = std::fs::read(&bb).map_err(|e| format!("{}: {e}", bb.display()))?;
    let modules = modules(&kdir.join("lib/modules").join(&version))?;

    let out = env::cache_dir().join("linux");
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let initrd = out.join(format!("initramfs-{version}.cpio"));
    std::fs::write(&initrd, initramfs(&busybox, &modules)).map_err(|e| format!("{}: {e}", initrd.display()))?;
    Ok(Dom0Linux { kernel, initrd })
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

/// The wanted modules, each after the modules it depends on (read from its `depends=` modinfo;
/// the package ships no modules.dep), decompressed: `(file name, bytes)`.
fn modules(moddir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let dir = moddir.join("kernel/drivers");
    let mut found: Vec<(String, Vec<u8>)> = Vec::new();
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
            if MODULES.contains(&stem.as_str()) {
                found.push((stem, unpack_module(&path)?));
            }
        }
    }
    let mut order: Vec<(String, Vec<u8>)> = Vec::new();
    fn place(name: &str, found: &[(String, Vec<u8>)], order: &mut Vec<(String, Vec<u8>)>, depth: u32) {
        if depth > 8 || order.iter().any(|(n, _)| n == name) {
            return;
        }
        let Some((_, bytes)) = found.iter().find(|(n, _)| n == name) else { return };
        for dep in modinfo(bytes, "depends").split(',').filter(|d| !d.is_empty()) {
            place(dep, found, order, depth + 1);
        }
        order.push((name.to_string(), bytes.clone()));
    }
    for m in MODULES {
        if found.iter().any(|(n, _)| n == m) {
            place(m, &found, &mut order, 0);
        } else {
            eprintln!("xtask: kernel module {m} not found under {} (built in?): skipped", dir.display());
        }
    }
    Ok(order.into_iter().map(|(n, b)| (format!("{n}.ko"), b)).collect())
}

/// A module file's bytes, decompressed when it is `.ko.xz` (with the host's `xz`).
fn unpack_module(path: &Path) -> Result<Vec<u8>> {
    if path.extension().is_some_and(|e| e == "xz") {
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

/// dom0's /init.
fn init_script(modules: &[(String, Vec<u8>)]) -> String {
    let mut s = String::from(
        "#!/bin/busybox sh\n\
         /bin/busybox --install -s /bin\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sysfs /sys\n\
         mount -t devtmpfs devtmpfs /dev\n",
    );
    for (name, _) in modules {
        s.push_str(&format!("insmod /lib/modules/{name} || echo \"insmod {name} failed\"\n"));
    }
    s.push_str(&format!(
        "mkdir -p /proc/xen && mount -t xenfs xenfs /proc/xen 2>/dev/null\n\
         echo {MARKER}\n\
         echo \"hypervisor type: $(cat /sys/hypervisor/type 2>&1)\"\n\
         echo \"/dev/xen: $(ls /dev/xen 2>&1 | tr '\\n' ' ')\"\n\
         echo \"cpus online: $(cat /sys/devices/system/cpu/online)\"\n\
         if grep -qv none /sys/class/misc/hw_random/rng_current 2>/dev/null; then echo \"hwrng: $(timeout 10 head -c 16 /dev/hwrng | od -An -tx1 | tr -d '\\n')\"; fi\n\
         echo \"interrupts:\"; cat /proc/interrupts\n\
         poweroff -f\n"
    ));
    s
}

/// The initramfs: busybox, /init, device node for the console, Xen modules.
pub fn initramfs(busybox: &[u8], modules: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut c = Cpio::default();
    for d in ["bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules", "sbin", "usr", "usr/bin", "usr/sbin"] {
        c.dir(d);
    }
    c.file("bin/busybox", 0o755, busybox);
    c.symlink("bin/sh", "busybox");
    // The kernel opens /dev/console for init's stdio before devtmpfs is mounted.
    c.node("dev/console", 0o020600, 5, 1);
    for (name, bytes) in modules {
        c.file(&format!("lib/modules/{name}"), 0o644, bytes);
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
    let l = fixtures()?;
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

/// The system test's boot: Linux dom0 on xenith, 90 s to reach the marker and power off,
/// with a virtio-rng PCI device whose DMA goes through the hypervisor's SMMUv3 (the case
/// Xen 4.17 fails). Its fixtures are fetched on first use (about 90 MB, cached under .cache/).
pub fn systest_boot(hypervisor: PathBuf) -> Boot {
    let mut b = Boot::new(hypervisor);
    b.timeout = Duration::from_secs(90);
    b.extra.extend(["-device".to_string(), "virtio-rng-pci,iommu_platform=on,disable-legacy=on".to_string()]);
    if let Err(e) = use_for(&mut b) {
        eprintln!("xtask: Linux dom0 fixtures: {e}");
        b.dom0 = Some(PathBuf::from("/nonexistent/linux-dom0-fixtures-unavailable"));
    }
    b
}

/// What the Linux dom0 system test requires of the boot.
pub fn systest_check(o: &Outcome) -> std::result::Result<(), String> {
    if !o.has(MARKER) {
        let last = o.output.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(format!("dom0 never printed {MARKER} (timed out: {}); last line: {last}", o.timed_out));
    }
    for needle in ["hypervisor type: xen", "evtchn", "gntdev", "privcmd", "hardware domain powered off"] {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn init_prints_marker_and_powers_off() {
        let s = init_script(&[("xen-evtchn.ko".into(), vec![])]);
        assert!(s.contains(MARKER) && s.contains("poweroff -f") && s.contains("insmod /lib/modules/xen-evtchn.ko"));
    }
}

/// The Linux dom0 system test runs unless `XENITH_LINUX_SYSTEST=0` (it fetches ~90 MB of
/// Debian packages on first use; skip it offline).
pub fn systest_enabled() -> bool {
    std::env::var_os("XENITH_LINUX_SYSTEST").is_none_or(|v| v != "0")
}
