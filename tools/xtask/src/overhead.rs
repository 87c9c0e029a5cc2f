//! What a hypervisor adds to the boot of its dom0, in instructions: the same kernel and
//! initramfs booted bare at EL1, under xenith and under Xen 4.17, each to the first thing
//! dom0's /init does (tools/xtask/fuzz/cntvct.rs prints the virtual counter), under
//! `-icount shift=0,sleep=off` (1 instruction = 1 ns of the counter's time; idle time is
//! skipped ahead to the next timer, as the figures count it). 1 vCPU, 512 MiB.
//!
//! The counter dom0 reads is QEMU's since its start under xenith (CNTVOFF_EL2 = 0) and bare; Xen
//! offsets a domain's virtual counter to when it creates it, so its raw console timestamp
//! (`console_timestamps=raw`: the physical counter) of the last line before dom0's memory is
//! allocated is added: a lower bound of the offset, so Xen's figure is if anything too small.

use crate::env::Result;
use crate::qemu::Boot;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The line /init's first program prints.
const PREFIX: &str = "CNTVCT ";

/// `(ticks, hz)` from the first `CNTVCT <ticks> <hz>` line.
pub fn parse_cntvct(out: &str) -> Option<(u64, u64)> {
    out.lines().find_map(|l| {
        let rest = &l[l.find(PREFIX)? + PREFIX.len()..];
        let mut it = rest.split_whitespace();
        Some((it.next()?.trim_end_matches('.').parse().ok()?, it.next()?.trim_end_matches('.').parse().ok()?))
    })
}

/// Xen's raw timestamp (hex counter ticks) of the last `(XEN) [...]` line before the one that
/// starts building dom0's memory.
pub fn xen_dom0_offset(out: &str) -> Option<u64> {
    let mut last = None;
    for l in out.lines() {
        if l.contains("Allocating 1:1 mappings") || l.contains("Loading d0 kernel") {
            return last;
        }
        if let Some(rest) = l.strip_prefix("(XEN) [") {
            if let Some(end) = rest.find(']') {
                if let Ok(t) = u64::from_str_radix(&rest[..end], 16) {
                    last = Some(t);
                }
            }
        }
    }
    None
}

/// Instructions for `ticks` at `hz` under `-icount shift=0` (1 ns each).
fn instructions(ticks: u64, hz: u64) -> f64 {
    ticks as f64 * 1e9 / hz.max(1) as f64
}

/// Run QEMU to completion (or the timeout) and return what it printed.
fn run_bare(kernel: &PathBuf, initrd: &PathBuf) -> Result<String> {
    let mut c = Command::new("qemu-system-aarch64");
    c.args(["-M", "virt,gic-version=3,iommu=smmuv3", "-cpu", "cortex-a57", "-smp", "1", "-m", "512M"])
        .args(["-nographic", "-no-reboot", "-monitor", "none", "-serial", "stdio", "-icount", "shift=0,sleep=off"])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyAMA0 rdinit=/init"]);
    let child = c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|e| format!("qemu: {e}"))?;
    let out = wait_with_timeout(child, Duration::from_secs(300))?;
    Ok(out)
}

fn wait_with_timeout(mut child: std::process::Child, limit: Duration) -> Result<String> {
    let start = std::time::Instant::now();
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    loop {
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().map_err(|_| "reader thread".to_string())
}

/// The three boots and the ratio of the two overheads; printed as a table.
pub fn bench(xenith: PathBuf, xen: PathBuf) -> Result<()> {
    let l = crate::linux::fixtures()?;
    let bare_out = run_bare(&l.kernel, &l.initrd)?;
    let (bt, hz) = parse_cntvct(&bare_out).ok_or("bare Linux never printed CNTVCT (is /bin/cntvct in the initramfs?)")?;
    let bare = instructions(bt, hz);
    let mut rows = Vec::new();
    for (name, hyp, cmdline) in [
        ("xenith", xenith, "dom0_mem=512M dom0_max_vcpus=1".to_string()),
        ("Xen 4.17", xen, format!("{} dom0_max_vcpus=1 console_timestamps=raw", crate::linux::XEN_CMDLINE)),
    ] {
        let mut b = Boot::new(hyp);
        b.cmdline = cmdline;
        b.smp = 1;
        b.icount = true;
        b.timeout = Duration::from_secs(300);
        crate::linux::use_for(&mut b)?;
        let out = b.run()?;
        let (t, hz) = parse_cntvct(&out.output).ok_or_else(|| format!("{name}: dom0 never printed CNTVCT"))?;
        let offset = if name == "xenith" { 0 } else { xen_dom0_offset(&out.output).ok_or("Xen: no raw timestamp before dom0's memory allocation")? };
        rows.push((name, instructions(t + offset, hz)));
    }
    println!("Boot to dom0's /init (first program), same kernel + initramfs, 1 vCPU, -icount shift=0,sleep=off:");
    println!("  bare Linux at EL1 (512 MiB): {:.1} M instructions", bare / 1e6);
    for (name, total) in &rows {
        println!("  {name:<9} {:.1} M, overhead {:.1} M", total / 1e6, (total - bare) / 1e6);
    }
    if let [(_, a), (_, b)] = rows.as_slice() {
        let (oa, ob) = (a - bare, b - bare);
        if ob > 0.0 {
            println!("  overhead ratio xenith / Xen 4.17: {:.3} (target <= 0.25)", oa / ob);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_counter_line_and_xens_offset() {
        assert_eq!(parse_cntvct("x\nCNTVCT 123456 62500000\r\ny"), Some((123456, 62500000)));
        assert_eq!(parse_cntvct("(xenith) CNTVCT 7 62500000."), Some((7, 62500000)));
        assert_eq!(parse_cntvct("nothing"), None);
        let xen = "(XEN) [0000000000001000] a\n(XEN) [00000000000020ff] b\n(XEN) [0000000000003000] Allocating 1:1 mappings totalling 512MB for dom0:\n";
        assert_eq!(xen_dom0_offset(xen), Some(0x20ff));
        assert_eq!(xen_dom0_offset("(XEN) [0000000000001000] a\n"), None);
        assert!((instructions(62_500_000, 62_500_000) - 1e9).abs() < 1.0);
    }
}
