//! Xen's own toolstack in Linux dom0: Debian's xen-utils-4.17 (`xl`, `xenstored`,
//! `xenconsoled`, `xen-init-dom0`) and xenstore-utils with every shared library they load, from
//! Debian's arm64 packages (fetched and unpacked under .cache/ like the kernel). They go into a
//! second cpio archive appended to dom0's busybox initramfs (the kernel unpacks concatenated
//! archives in order), with /etc/xenith/toolstack.sh, which the initramfs's /init runs when it
//! is there: it starts xenstored, xen-init-dom0 and xenconsoled, then runs `xl info`, `xl list`
//! and `xl vcpu-list`.
//!
//! `cargo xtask run --dom0 linux --toolstack` boots it; the system tests
//! `linux_dom0_toolstack_xl` (xenith) and `linux_dom0_toolstack_xl_on_xen` (Debian's Xen 4.17,
//! the reference) run the same script.

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
    ("usr/bin/xenstore", "usr/bin/xenstore"),
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
    format!(
        "#!/bin/sh\n\
         # Xen's toolstack in dom0: the daemons, then xl's view of the machine.\n\
         export LD_LIBRARY_PATH=/{LIBDIR}\n\
         export PATH=/usr/sbin:/usr/bin:/sbin:/bin\n\
         mkdir -p /run /var /var/lib/xen /var/lib/xenstored /var/log/xen /etc/xen && touch /etc/xen/xl.conf\n\
         mount -t tmpfs tmpfs /run && mkdir -p /run/xen /run/xenstored /run/lock && ln -sf /run /var/run\n\
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
         echo {DONE}\n"
    )
}

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
    for d in ["etc", "etc/xenith", "lib", LIBDIR, "usr", "usr/sbin", "usr/bin"] {
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
    b.timeout = Duration::from_secs(150);
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

/// The lines of one command's output (`xl-info: ...`).
fn lines<'a>(o: &'a Outcome, tag: &str) -> Vec<&'a str> {
    o.output.lines().filter_map(|l| l.trim_end().split_once(tag).map(|(_, r)| r)).collect()
}

/// [`check`] on xenith: the machine's 2 CPUs.
pub fn systest_check(o: &Outcome) -> std::result::Result<(), String> {
    check(o, Some("2"))
}

/// [`check`] on Xen 4.17: under TCG on a loaded host Xen sometimes fails to bring its second
/// CPU up (then runs both dom0 vCPUs on one), which is Xen's and QEMU's business here.
pub fn xen_systest_check(o: &Outcome) -> std::result::Result<(), String> {
    check(o, None)
}

/// `xl info` printed the machine (its CPUs, memory, the hypervisor's version) and `xl list`
/// Domain-0 with its vCPUs; the daemons run; dom0 went on to its marker and powered off.
fn check(o: &Outcome, nr_cpus: Option<&str>) -> std::result::Result<(), String> {
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
