//! System tests of dom0less domUs beside Linux dom0: Debian's kernel (dom0's) booting as a
//! domU with its own busybox initramfs to a marker on its vpl011, and test-guest domUs that
//! crash on purpose while dom0 goes on.

use crate::env::Result;
use crate::linux::{self, DOM0_AFTER_DOMU, DOMU_MARKER, MARKER};
use crate::qemu::{Boot, Outcome};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where QEMU loads the Linux domU's kernel and initramfs (above dom0's modules).
const DOMU_KERNEL_ADDR: u64 = 0x5000_0000;
const DOMU_MEMORY_KIB: u64 = 256 * 1024;
/// The Linux domU's command line.
pub const DOMU_ARGS: &str = "console=ttyAMA0 rdinit=/init";

/// A `/chosen/domU1` node with a kernel and a ramdisk module. `xen,enhanced = "no-xenstore"`:
/// the kernel finds Xen (the /hypervisor node: grant table, event channels) and no xenstore
/// is set up for it (nothing in dom0 would introduce it).
fn linux_domu_node(kernel: (u64, u64), ramdisk: (u64, u64), vcpus: u32) -> String {
    format!(
        "\t\tdomU1 {{\n\t\t\tcompatible = \"xen,domain\";\n\t\t\t#address-cells = <0x1>;\n\t\t\t#size-cells = <0x1>;\n\t\t\tmemory = <0x0 {DOMU_MEMORY_KIB:#x}>;\n\t\t\tcpus = <{vcpus:#x}>;\n\t\t\tvpl011;\n\t\t\txen,enhanced = \"no-xenstore\";\n\
         \t\t\tmodule@{:x} {{\n\t\t\t\tcompatible = \"multiboot,kernel\", \"multiboot,module\";\n\t\t\t\treg = <{:#x} {:#x}>;\n\t\t\t\tbootargs = \"{DOMU_ARGS}\";\n\t\t\t}};\n\
         \t\t\tmodule@{:x} {{\n\t\t\t\tcompatible = \"multiboot,ramdisk\", \"multiboot,module\";\n\t\t\t\treg = <{:#x} {:#x}>;\n\t\t\t}};\n\t\t}};\n",
        kernel.0, kernel.0, kernel.1, ramdisk.0, ramdisk.0, ramdisk.1
    )
}

fn size(p: &Path) -> Result<u64> {
    Ok(std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?.len())
}

/// Linux dom0 (1 vCPU) waiting for its domU to stop (`xenith-wait-domu`), and a Linux domU
/// (Debian's kernel, its own initramfs, `vcpus` vCPUs) on the second CPU.
fn linux_domu_boot_inner(hypervisor: PathBuf, cmdline: &str, tag: &str, vcpus: u32) -> Result<Boot> {
    let mut b = Boot::new(hypervisor);
    b.timeout = Duration::from_secs(240);
    b.cmdline = cmdline.into();
    b.smp = 2;
    linux::use_for(&mut b)?;
    b.dom0_args = format!("{} xenith-wait-domu", linux::DOM0_ARGS);
    let domu = linux::domu_fixtures()?;
    let ksize = size(&domu.kernel)?;
    let rd_addr = (DOMU_KERNEL_ADDR + ksize).div_ceil(2 << 20) * (2 << 20);
    let rsize = size(&domu.initrd)?;
    b.extra.extend([
        "-device".to_string(),
        format!("loader,file={},addr={DOMU_KERNEL_ADDR:#x},force-raw=on", domu.kernel.display()),
        "-device".to_string(),
        format!("loader,file={},addr={rd_addr:#x},force-raw=on", domu.initrd.display()),
    ]);
    let node = linux_domu_node((DOMU_KERNEL_ADDR, ksize), (rd_addr, rsize), vcpus);
    b.dtb = Some(crate::conformance::dom0less_dtb_with(&b, &node, tag)?);
    Ok(b)
}

fn or_unavailable(b: Result<Boot>, hypervisor: PathBuf, what: &str) -> Boot {
    b.unwrap_or_else(|e| {
        eprintln!("xtask: {what}: {e}");
        Boot { dom0: Some(PathBuf::from("/nonexistent/dom0less-fixtures-unavailable")), ..Boot::new(hypervisor) }
    })
}

pub fn linux_domu_boot(hypervisor: PathBuf) -> Boot {
    or_unavailable(linux_domu_boot_inner(hypervisor.clone(), "dom0_max_vcpus=1", "linux-domu", 1), hypervisor, "Linux domU fixtures")
}

/// The same machine (2 CPUs) with `sched=credit`: dom0 has both CPUs (2 vCPUs) and the domU
/// has 2 vCPUs (`cpus = <2>`, the second started by its PSCI CPU_ON) that share them.
pub fn linux_domu_credit_boot(hypervisor: PathBuf) -> Boot {
    or_unavailable(linux_domu_boot_inner(hypervisor.clone(), "dom0_max_vcpus=2 sched=credit", "linux-domu-credit", 2), hypervisor, "Linux domU fixtures")
}

/// The line of `out` containing `needle`, by index.
fn line_of(out: &Outcome, needle: &str) -> Option<usize> {
    out.output.lines().position(|l| l.contains(needle))
}

/// The domU reached its userspace marker on its vpl011, its virtual timer interrupted it, it
/// saw Xen; it stopped; dom0 heard of it (VIRQ_DOM_EXC), went on and powered the machine off.
pub fn linux_domu_check(o: &Outcome) -> std::result::Result<(), String> {
    if o.timed_out {
        return Err("QEMU did not end: the hypervisor or a guest hung".into());
    }
    if let Some(t) = o.trouble() {
        return Err(format!("trouble on the console:\n{}", t.join("\n")));
    }
    let marker = line_of(o, &format!("DOM1: {DOMU_MARKER}")).ok_or("the domU never printed its marker on its vpl011 (DOM1: ...)")?;
    let timer = o.output.lines().find_map(|l| l.split("DOM1: domU timer after: ").nth(1)).ok_or("no domU timer line")?;
    // "11:       1234     GICv3  27 Level     arch_timer"
    let ticks: u64 = timer.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
    if ticks == 0 || !timer.contains("27") {
        return Err(format!("the domU's virtual timer (PPI 27) never interrupted it: `{timer}`"));
    }
    if !o.has("DOM1: domU hypervisor type: xen") {
        return Err("the domU does not see Xen in /sys/hypervisor/type".into());
    }
    if line_of(o, MARKER).is_none() {
        return Err(format!("dom0 never printed {MARKER}"));
    }
    let stopped = line_of(o, "d1: shutdown (PowerOff)").ok_or("the domU's power-off was not reported")?;
    let heard = line_of(o, "dom0: domexc: VIRQ_DOM_EXC received").ok_or("dom0 did not receive VIRQ_DOM_EXC")?;
    let after = line_of(o, DOM0_AFTER_DOMU).ok_or("dom0 did not go on after the domU stopped")?;
    if !(marker < stopped && stopped < heard && heard <= after) {
        return Err(format!("out of order: domU marker line {marker}, its stop {stopped}, dom0 heard {heard}, dom0 went on {after}"));
    }
    if !o.has("hardware domain powered off") {
        return Err("dom0 did not power the machine off".into());
    }
    println!("    domU timer: {}", timer.trim());
    Ok(())
}

/// The crashes the crash test's domUs make, in domU order, and the line each must produce.
pub const CRASHES: [(&str, &str); 3] = [
    ("undef", "d1v0: UNDEF loop: "),
    ("abort", "d2v0: data abort loop: "),
    ("shutdown", "d3: shutdown (Crash)"),
];

/// Linux dom0 (1 vCPU) beside three test-guest domUs that crash at once (an UNDEF loop, a
/// data-abort loop, SCHEDOP_shutdown(crash)), each on a CPU of its own.
fn crash_boot_inner(hypervisor: PathBuf, guest: &Path) -> Result<Boot> {
    let mut b = Boot::new(hypervisor);
    b.timeout = Duration::from_secs(180);
    b.cmdline = "dom0_max_vcpus=1".into();
    b.smp = 1;
    linux::use_for(&mut b)?;
    let args: Vec<String> = CRASHES.iter().map(|(k, _)| format!("console=ttyAMA0 domu domu-crash={k}")).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    crate::conformance::with_domus(b, guest, &args, "domu-crash")
}

pub fn crash_boot(hypervisor: PathBuf, guest: &Path) -> Boot {
    or_unavailable(crash_boot_inner(hypervisor.clone(), guest), hypervisor, "domU crash test fixtures")
}

/// Each crash reported (one line naming the domain and why) and the domU's CPU stopped; dom0
/// goes on to its userspace marker afterwards and powers the machine off.
pub fn crash_check(o: &Outcome) -> std::result::Result<(), String> {
    if o.timed_out {
        return Err("QEMU did not end: the hypervisor or dom0 hung".into());
    }
    let mut last = 0;
    for (i, (kind, line)) in CRASHES.iter().enumerate() {
        let id = i + 1;
        if !o.has(&format!("DOM{id}: domu-crash: {kind}")) {
            return Err(format!("d{id} did not start its {kind} crash"));
        }
        let at = line_of(o, line).ok_or_else(|| format!("d{id}'s {kind} crash was not reported (`{line}`)"))?;
        let stop = line_of(o, &format!("d{id}: shutdown (Crash): its CPU stops")).ok_or_else(|| format!("d{id}'s CPU was not stopped"))?;
        last = last.max(at).max(stop);
    }
    let marker = line_of(o, MARKER).ok_or(format!("dom0 never printed {MARKER}"))?;
    if marker < last {
        return Err("dom0 reached its marker before the last domU crash was reported: the test proves nothing".into());
    }
    if !o.has("hardware domain powered off") {
        return Err("dom0 did not go on to power the machine off".into());
    }
    Ok(())
}
