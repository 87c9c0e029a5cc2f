//! `cargo xtask stress`: the SMP dom0 stress suite. Debian's Linux as dom0 (linux.rs's kernel
//! and initramfs) runs tools/xtask/stress/stress.rs on every vCPU for a while, on xenith and,
//! with `--against xen`, on Debian's Xen 4.17 under the same QEMU. This side reads the
//! program's `STRESS` lines, checks dom0's health on the console and says PASS or FAIL.

use crate::env::{self, Result};
use crate::qemu::{Boot, Outcome};
use std::path::PathBuf;
use std::time::Duration;

/// Every workload the program runs, in the order it reports them.
pub const WORKLOADS: [&str; 6] = ["grant", "balloon", "evtchn", "privcmd", "memory", "dma"];

/// The DMA disk: small (sparse) and looped over by the program.
const DISK_MIB: u64 = 64;

/// Console lines that make dom0 unhealthy wherever they appear.
const KERNEL_TROUBLE: [&str; 8] =
    ["Oops", "BUG:", "WARNING:", "rcu_sched self-detected stall", "rcu: INFO", "Kernel panic", "Internal error", "STRESS-FAILED"];

/// The hypervisors' own line prefixes: any such line while the load runs is a finding.
const HYPERVISOR_PREFIXES: [&str; 2] = ["(xenith)", "(XEN)"];

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Hyp {
    Xenith,
    Xen,
}

impl Hyp {
    pub fn name(self) -> &'static str {
        match self {
            Hyp::Xenith => "xenith",
            Hyp::Xen => "Xen 4.17",
        }
    }
    fn file_tag(self) -> &'static str {
        match self {
            Hyp::Xenith => "xenith",
            Hyp::Xen => "xen",
        }
    }
}

/// `cargo xtask stress` options.
#[derive(Clone, Debug, PartialEq)]
pub struct Opts {
    pub against_xen: bool,
    /// Only Xen 4.17 (to check the suite itself).
    pub xen_only: bool,
    pub vcpus: u32,
    pub secs: u64,
    pub boots: u32,
    pub icount: bool,
    /// A subset of `WORKLOADS` (comma-separated), for isolating a failure.
    pub only: Option<String>,
    /// xenith times every hypercall and prints the table at the end (`hypercall_stats`).
    pub hypercall_stats: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts { against_xen: false, xen_only: false, vcpus: 4, secs: 60, boots: 1, icount: false, only: None, hypercall_stats: false }
    }
}

pub fn parse_args(args: &[String]) -> Result<Opts> {
    let mut o = Opts::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{a} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|_| format!("{a}: `{v}` is not a number"));
        match a.as_str() {
            "--against" => match value()?.as_str() {
                "xen" => o.against_xen = true,
                other => return Err(format!("--against: only `xen` is known, got `{other}`")),
            },
            "--xen-only" => o.xen_only = true,
            "--vcpus" => o.vcpus = num(value()?)?.clamp(1, 16) as u32,
            "--secs" => o.secs = num(value()?)?.max(1),
            "--boots" => o.boots = num(value()?)?.max(1) as u32,
            "--icount" => o.icount = true,
            "--hypercall-stats" => o.hypercall_stats = true,
            "--only" => {
                let v = value()?;
                if let Some(bad) = v.split(',').find(|w| !WORKLOADS.contains(w)) {
                    return Err(format!("--only: unknown workload `{bad}` (known: {})", WORKLOADS.join(", ")));
                }
                o.only = Some(v);
            }
            other => return Err(format!("stress: unknown option `{other}`")),
        }
    }
    Ok(o)
}

impl Opts {
    fn workloads(&self) -> Vec<&'static str> {
        match &self.only {
            Some(list) => WORKLOADS.iter().copied().filter(|w| list.split(',').any(|x| x == *w)).collect(),
            None => WORKLOADS.to_vec(),
        }
    }
}

/// One `STRESS <name> ops=N errors=N integrity=ok ...` line.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    pub name: String,
    pub ops: u64,
    pub errors: u64,
    pub integrity: String,
    /// The other `key=value` fields, in order (`procs`, `maps`, `mib`, `ms`, ...).
    pub extra: Vec<(String, String)>,
}

impl Workload {
    fn field(&self, key: &str) -> Option<u64> {
        self.extra.iter().find(|(k, _)| k == key).and_then(|(_, v)| v.parse().ok())
    }
}

/// What one boot's console says about the suite.
#[derive(Debug, Default)]
pub struct Report {
    pub workloads: Vec<Workload>,
    pub started: bool,
    pub done: bool,
    /// `STRESS-ERR` lines (the program's descriptions of its errors).
    pub errors: Vec<String>,
    /// `STRESS-INFO` lines (what was still in progress at the stop, ...).
    pub notes: Vec<String>,
    /// Lines that make the boot unhealthy, with their line numbers.
    pub unhealthy: Vec<(usize, String)>,
    /// Milliseconds of load (from `STRESS-LOAD-END ms=`).
    pub load_ms: Option<u64>,
    /// Where dom0's CPU time went during the load (`STRESS-CPU user_ms=.. idle_ms=..`).
    pub cpu: Option<String>,
}

fn parse_workload(rest: &str) -> Option<Workload> {
    let mut words = rest.split_whitespace();
    let name = words.next()?.to_string();
    let mut w = Workload { name, ops: 0, errors: 0, integrity: String::new(), extra: Vec::new() };
    let (mut ops, mut errors) = (None, None);
    for kv in words {
        let (k, v) = kv.split_once('=')?;
        match k {
            "ops" => ops = v.parse().ok(),
            "errors" => errors = v.parse().ok(),
            "integrity" => w.integrity = v.to_string(),
            _ => w.extra.push((k.to_string(), v.to_string())),
        }
    }
    w.ops = ops?;
    w.errors = errors?;
    Some(w)
}

/// Read a boot's console output.
pub fn parse(output: &str) -> Report {
    let mut r = Report::default();
    let mut loading = false;
    for (i, raw) in output.lines().enumerate() {
        // xenith prints a guest's carriage return as '.' (a non-printing byte).
        let line = raw.trim_end().trim_end_matches('.');
        // The program's lines can follow other text on the same console line (hvc output is
        // not line-buffered against the kernel's): look for the markers anywhere.
        if line.contains("STRESS-START") {
            r.started = true;
            loading = true;
        }
        if let Some(at) = line.find("STRESS-LOAD-END") {
            loading = false;
            r.load_ms = line[at..].split("ms=").nth(1).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok());
        }
        if line.contains("STRESS-DONE") {
            r.done = true;
        }
        if let Some(at) = line.find("STRESS-CPU ") {
            r.cpu = Some(line[at + "STRESS-CPU ".len()..].to_string());
        }
        if let Some(at) = line.find("STRESS-ERR ") {
            r.errors.push(line[at..].to_string());
        }
        if let Some(at) = line.find("STRESS-INFO ") {
            r.notes.push(line[at..].to_string());
        }
        if let Some(at) = line.find("STRESS ") {
            if let Some(w) = parse_workload(&line[at + "STRESS ".len()..]) {
                r.workloads.push(w);
            }
        }
        let kernel = KERNEL_TROUBLE.iter().any(|p| line.contains(p)) || crate::health::is_trouble(line);
        let hypervisor = loading && HYPERVISOR_PREFIXES.iter().any(|p| line.contains(p));
        if kernel || hypervisor {
            r.unhealthy.push((i, line.to_string()));
        }
    }
    r
}

/// Why a boot failed (empty: it passed): every wanted workload reported ops > 0, 0 errors and
/// intact data, the program finished, and dom0 stayed healthy.
pub fn verdict(r: &Report, wanted: &[&str]) -> Vec<String> {
    let mut why = Vec::new();
    if !r.started {
        why.push("the stress program never started (no STRESS-START)".to_string());
    } else if !r.done {
        why.push("the stress program never finished (no STRESS-DONE)".to_string());
    }
    for name in wanted {
        match r.workloads.iter().find(|w| w.name == *name) {
            None if r.done => why.push(format!("{name}: no STRESS line")),
            None => {}
            Some(w) => {
                if w.ops == 0 {
                    why.push(format!("{name}: 0 ops"));
                }
                if w.errors > 0 {
                    why.push(format!("{name}: {} errors", w.errors));
                }
                if w.integrity != "ok" {
                    why.push(format!("{name}: integrity {}", w.integrity));
                }
            }
        }
    }
    if let Some((_, l)) = r.unhealthy.first() {
        why.push(format!("unhealthy: {} console line(s), first: `{}`", r.unhealthy.len(), l.trim()));
    }
    why
}

/// A fresh sparse disk for one boot's DMA workload.
fn disk(tag: &str) -> Result<PathBuf> {
    let dir = env::cache_dir().join("linux");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join(format!("stress-disk-{tag}.img"));
    let _ = std::fs::remove_file(&path);
    let f = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.set_len(DISK_MIB << 20).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// QEMU's arguments for the disk: a virtio-blk PCI device, modern only; on xenith its DMA is
/// translated by the SMMU the hypervisor owns (`iommu_platform=on`).
fn disk_args(hyp: Hyp, disk: &std::path::Path) -> [String; 4] {
    let iommu = if hyp == Hyp::Xenith { ",iommu_platform=on" } else { "" };
    [
        "-drive".to_string(),
        format!("if=none,file={},format=raw,id=d0", disk.display()),
        "-device".to_string(),
        format!("virtio-blk-pci,drive=d0{iommu},disable-legacy=on"),
    ]
}

/// The boot: QEMU virt (GICv3, SMMUv3, cortex-a57) with `vcpus` CPUs and 2 GiB, dom0 with
/// 512 MiB and one vCPU per CPU, the stress program on its command line, and a virtio-blk disk
/// whose DMA goes through the SMMU on xenith (`iommu_platform=on`); Debian's Xen 4.17 cannot
/// drive that SMMU, so its disk does plain DMA.
pub fn boot(hyp: Hyp, image: PathBuf, o: &Opts) -> Result<Boot> {
    let mut b = Boot::new(image);
    crate::linux::use_for(&mut b)?;
    b.smp = o.vcpus;
    b.mem = "2G".into();
    b.icount = o.icount;
    // pci=nomsi: neither hypervisor gives dom0 an ITS, and Linux warns (a WARNING: trace) when
    // virtio-pci then tries MSI-X; INTx works on both.
    let mut args = format!("{} pci=nomsi xenith-stress={}", crate::linux::DOM0_ARGS, o.secs);
    if let Some(only) = &o.only {
        args.push_str(&format!(" xenith-stress-only={only}"));
    }
    b.dom0_args = args;
    b.cmdline = match hyp {
        Hyp::Xenith => format!("dom0_mem=512M dom0_max_vcpus={}{}", o.vcpus, if o.hypercall_stats { " hypercall_stats" } else { "" }),
        Hyp::Xen => format!("{} dom0_max_vcpus={}", crate::linux::XEN_CMDLINE, o.vcpus),
    };
    let disk = disk(hyp.file_tag())?;
    b.extra.extend(disk_args(hyp, &disk));
    // Boot (~10 s here, far more under -icount or with many vCPUs on 2 host cores), the load,
    // then the program's drain (up to a minute for a stuck process).
    b.timeout = if o.icount { Duration::from_secs(600 + 40 * o.secs) } else { Duration::from_secs(240 + 3 * o.secs) };
    // After an oops, more console (what dom0 does next) before QEMU is stopped: a dom0 that
    // oopsed under the load often hangs rather than powering off.
    b.trouble_grace = Duration::from_secs(30);
    Ok(b)
}

/// One boot's result.
struct BootResult {
    hyp: Hyp,
    index: u32,
    report: Report,
    why: Vec<String>,
    wall: Duration,
    log: PathBuf,
}

fn print_boot(r: &BootResult, o: &Opts) {
    let unit = if o.icount { "guest s" } else { "s" };
    println!(
        "{}, boot {} of {}: {} vCPUs, {} {unit} of load (wall {:.1} s): {}",
        r.hyp.name(),
        r.index,
        o.boots,
        o.vcpus,
        o.secs,
        r.wall.as_secs_f64(),
        if r.why.is_empty() { "PASS" } else { "FAIL" }
    );
    println!("  {:<9} {:>10} {:>7} {:<10} details", "workload", "ops", "errors", "integrity");
    for w in &r.report.workloads {
        let details: Vec<String> = w.extra.iter().filter(|(k, _)| k != "ms").map(|(k, v)| format!("{k}={v}")).collect();
        println!("  {:<9} {:>10} {:>7} {:<10} {}", w.name, w.ops, w.errors, w.integrity, details.join(" "));
    }
    if let Some(cpu) = &r.report.cpu {
        println!("  dom0 CPU time during the load: {cpu}");
    }
    for why in &r.why {
        println!("  FAIL: {why}");
    }
    for e in r.report.errors.iter().chain(&r.report.notes).take(12) {
        println!("  {e}");
    }
    for (n, l) in r.report.unhealthy.iter().take(12) {
        println!("  unhealthy, console line {}: {}", n + 1, l.trim());
    }
    println!("  console log: {}", r.log.display());
}

/// The console lines around the first unhealthy one (what the lead needs to see).
fn context(output: &str, r: &Report) -> Vec<String> {
    let Some((at, _)) = r.unhealthy.first() else { return Vec::new() };
    let lines: Vec<&str> = output.lines().collect();
    let from = at.saturating_sub(15);
    let to = (*at + 25).min(lines.len());
    lines[from..to].iter().map(|l| l.to_string()).collect()
}

/// One boot of the suite on `hyp`, printed.
fn one(hyp: Hyp, image: &std::path::Path, o: &Opts, index: u32) -> Result<BootResult> {
    let b = boot(hyp, image.to_path_buf(), o)?;
    println!("xtask: stress boot {index} on {}: {}", hyp.name(), crate::qemu::shell_line(&b.command()));
    let out = b.run()?;
    let dir = env::target_dir().join("stress");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let only = o.only.as_ref().map(|w| format!("-{}", w.replace(',', "+"))).unwrap_or_default();
    let icount = if o.icount { "-icount" } else { "" };
    let log = dir.join(format!("{}-{}cpu-{}s{icount}{only}-boot{index}.log", hyp.file_tag(), o.vcpus, o.secs));
    std::fs::write(&log, &out.output).map_err(|e| format!("{}: {e}", log.display()))?;
    // The disk is scratch space: drop it.
    for a in &b.extra {
        if let Some(f) = a.strip_prefix("if=none,file=").and_then(|r| r.split(',').next()) {
            let _ = std::fs::remove_file(f);
        }
    }
    let report = parse(&out.output);
    let mut why = verdict(&report, &o.workloads());
    match out.trouble_at {
        Some(t) if out.timed_out => why.push(format!("QEMU stopped {:?} after the first trouble line (at {:.1} s)", b.trouble_grace, t.as_secs_f64())),
        _ if out.timed_out => why.push(format!("QEMU did not end within {:?}", b.timeout)),
        _ => {}
    }
    let r = BootResult { hyp, index, report, why, wall: out.wall, log };
    print_boot(&r, o);
    let ctx = context(&out.output, &r.report);
    if !ctx.is_empty() {
        println!("  console around the first unhealthy line:");
        for l in ctx {
            println!("    > {l}");
        }
    }
    Ok(r)
}

/// Mean ops per second of load over a hypervisor's boots, per workload.
fn rates(results: &[BootResult], hyp: Hyp, name: &str) -> Option<f64> {
    let v: Vec<f64> = results
        .iter()
        .filter(|r| r.hyp == hyp)
        .filter_map(|r| {
            let w = r.report.workloads.iter().find(|w| w.name == name)?;
            let ms = w.field("ms").or(r.report.load_ms)?.max(1);
            Some(w.ops as f64 * 1000.0 / ms as f64)
        })
        .collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// `cargo xtask stress [--against xen] [--vcpus N] [--secs S] [--boots K] [--icount] [--only W,..]`.
pub fn main(args: &[String]) -> Result<()> {
    let o = parse_args(args)?;
    let images = if o.xen_only { None } else { Some(crate::build::all()?) };
    let xen = if o.against_xen || o.xen_only { Some(crate::fixtures::xen_4_17()?) } else { None };
    let mut results = Vec::new();
    // With --against xen the hypervisors alternate, so a change in the shared host's load
    // falls on both.
    for i in 1..=o.boots {
        if let Some(images) = &images {
            results.push(one(Hyp::Xenith, &images.hypervisor, &o, i)?);
        }
        if let Some(x) = &xen {
            results.push(one(Hyp::Xen, x, &o, i)?);
        }
    }
    if o.against_xen {
        let unit = if o.icount { "guest second (-icount: instructions decide)" } else { "second (wall clock)" };
        println!("ops per {unit} of load, mean of {} boot(s) each, {} vCPUs:", o.boots, o.vcpus);
        println!("  {:<9} {:>12} {:>12} {:>8}", "workload", "xenith", "Xen 4.17", "ratio");
        for name in o.workloads() {
            let (a, b) = (rates(&results, Hyp::Xenith, name), rates(&results, Hyp::Xen, name));
            let f = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.1}"));
            let ratio = match (a, b) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
                _ => "-".into(),
            };
            println!("  {name:<9} {:>12} {:>12} {ratio:>8}", f(a), f(b));
        }
    }
    let failed: Vec<String> = results.iter().filter(|r| !r.why.is_empty()).map(|r| format!("{} boot {}", r.hyp.name(), r.index)).collect();
    let passed = results.len() - failed.len();
    println!("stress: {passed} passed, {} failed", failed.len());
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("stress suite failed: {}", failed.join(", ")))
    }
}

/// The system test's boot: xenith, 4 vCPUs, 30 s of every workload.
pub fn systest_boot(hypervisor: PathBuf) -> Boot {
    let o = Opts { vcpus: 4, secs: 30, ..Opts::default() };
    match boot(Hyp::Xenith, hypervisor, &o) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("xtask: stress boot: {e}");
            let mut b = Boot::new(PathBuf::from("/nonexistent"));
            b.dom0 = Some(PathBuf::from("/nonexistent/linux-dom0-fixtures-unavailable"));
            b
        }
    }
}

/// Every workload ran (ops > 0) with 0 errors and intact data, and dom0 stayed healthy.
pub fn systest_check(o: &Outcome) -> std::result::Result<(), String> {
    let r = parse(&o.output);
    let mut why = verdict(&r, &WORKLOADS);
    if o.timed_out {
        why.push("QEMU did not end".into());
    }
    if why.is_empty() {
        return Ok(());
    }
    let mut msg = why.join("; ");
    for e in r.errors.iter().take(6) {
        msg.push_str(&format!("\n    {e}"));
    }
    for l in context(&o.output, &r) {
        msg.push_str(&format!("\n    > {l}"));
    }
    Err(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
[    1.0] Booting Linux\n\
(XEN) d0v0: boot message before the load\n\
STRESS-START cpus=2 secs=5\n\
STRESS grant ops=7255 errors=0 integrity=ok procs=2 maps=14510 max_mappers=2 ms=5000\n\
STRESS balloon ops=2 errors=0 integrity=ok procs=1 step_kb=8192 ms=5000\n\
STRESS-LOAD-END ms=5000\n\
STRESS evtchn ops=100 errors=0 integrity=ok procs=2 sent=300 received=150 ms=5000\n\
STRESS privcmd ops=10 errors=0 integrity=ok procs=2 ms=5000\n\
STRESS memory ops=10 errors=0 integrity=ok procs=2 ms=5000\n\
STRESS dma ops=10 errors=0 integrity=ok procs=2 mib=64 ms=5000\n\
STRESS-DONE\n\
(XEN) Hardware Dom0 halted: halting machine\n";

    #[test]
    fn a_clean_boot_passes() {
        let r = parse(GOOD);
        assert!(r.started && r.done);
        assert_eq!(r.load_ms, Some(5000));
        assert_eq!(r.workloads.len(), 6);
        assert_eq!(r.workloads[0], Workload {
            name: "grant".into(),
            ops: 7255,
            errors: 0,
            integrity: "ok".into(),
            extra: vec![("procs".into(), "2".into()), ("maps".into(), "14510".into()), ("max_mappers".into(), "2".into()), ("ms".into(), "5000".into())],
        });
        assert_eq!(r.workloads[5].field("mib"), Some(64));
        // Hypervisor lines before and after the load do not count.
        assert!(r.unhealthy.is_empty());
        assert!(verdict(&r, &WORKLOADS).is_empty());
    }

    #[test]
    fn errors_zero_ops_missing_workloads_and_bad_data_fail() {
        let bad = GOOD.replace("grant ops=7255 errors=0", "grant ops=7255 errors=3").replace("memory ops=10", "memory ops=0").replace("dma ops=10 errors=0 integrity=ok", "dma ops=10 errors=1 integrity=bad");
        let why = verdict(&parse(&bad), &WORKLOADS);
        assert_eq!(why, ["grant: 3 errors", "memory: 0 ops", "dma: 1 errors", "dma: integrity bad"]);
        let missing = GOOD.replace("STRESS privcmd ops=10 errors=0 integrity=ok procs=2 ms=5000\n", "");
        assert_eq!(verdict(&parse(&missing), &WORKLOADS), ["privcmd: no STRESS line"]);
        // A subset run only wants its own workloads.
        assert!(verdict(&parse(&missing), &["grant", "dma"]).is_empty());
        let unfinished: String = GOOD.lines().take(5).map(|l| format!("{l}\n")).collect();
        assert_eq!(verdict(&parse(&unfinished), &["grant"]), ["the stress program never finished (no STRESS-DONE)"]);
        assert_eq!(verdict(&parse("booting\n"), &["grant"]), ["the stress program never started (no STRESS-START)"]);
    }

    #[test]
    fn kernel_trouble_anywhere_and_hypervisor_lines_during_the_load_are_unhealthy() {
        for (line, unhealthy) in [
            ("(xenith) d0: data abort at IPA 0x4a000000: not owned, abort injected", true),
            ("(XEN) d0v1 Unhandled SMC/HVC", true),
            ("[   12.5] Internal error: Oops: 0000000096000004 [#1] SMP", true),
            ("[   12.5] WARNING: CPU: 1 PID: 80 at mm/page_alloc.c:5000", true),
            ("[   30.1] rcu: INFO: rcu_sched self-detected stall on CPU", true),
            ("[   12.5] xen:balloon: Cannot add additional memory", false),
        ] {
            let out = GOOD.replace("STRESS-LOAD-END", &format!("{line}\nSTRESS-LOAD-END"));
            let r = parse(&out);
            assert_eq!(!r.unhealthy.is_empty(), unhealthy, "{line}");
            assert_eq!(verdict(&r, &WORKLOADS).is_empty(), !unhealthy, "{line}");
        }
        let after = format!("{GOOD}[  40.0] Kernel panic - not syncing: Fatal exception\n");
        assert_eq!(parse(&after).unhealthy.len(), 1);
        let r = parse(&GOOD.replace("STRESS-LOAD-END", "(xenith) d0: data abort\nSTRESS-LOAD-END"));
        assert_eq!(r.unhealthy[0].0, 5, "the line number is kept for the context");
    }

    #[test]
    fn carriage_returns_printed_as_dots_are_ignored() {
        let dotted: String = GOOD.lines().map(|l| format!("{l}.\n")).collect();
        let r = parse(&dotted);
        assert_eq!(r.load_ms, Some(5000));
        assert_eq!(r.workloads[0].field("ms"), Some(5000));
        assert!(verdict(&r, &WORKLOADS).is_empty());
    }

    #[test]
    fn lines_glued_to_kernel_output_still_count() {
        let r = parse("[ 9.1] random: crng initSTRESS-START cpus=1 secs=1\nxSTRESS grant ops=1 errors=0 integrity=ok\nSTRESS-ERR grant cpu=0 gntdev map ioctl -22\nSTRESS-DONE\n");
        assert!(r.started && r.done);
        assert_eq!(r.workloads[0].ops, 1);
        assert_eq!(r.errors, ["STRESS-ERR grant cpu=0 gntdev map ioctl -22"]);
        let r = parse("STRESS-INFO balloon down to target_kb 516096 unfinished at the stop after 9000 ms; current_kb 520000\n");
        assert_eq!(r.notes.len(), 1);
        assert!(r.errors.is_empty());
    }

    #[test]
    fn options() {
        let a = |s: &str| parse_args(&s.split_whitespace().map(String::from).collect::<Vec<_>>());
        assert_eq!(a("").unwrap(), Opts::default());
        let o = a("--against xen --vcpus 2 --secs 10 --boots 3 --icount --only grant,dma").unwrap();
        assert_eq!(o, Opts { against_xen: true, xen_only: false, vcpus: 2, secs: 10, boots: 3, icount: true, only: Some("grant,dma".into()), hypercall_stats: false });
        assert_eq!(o.workloads(), ["grant", "dma"]);
        assert!(a("--against kvm").is_err());
        assert!(a("--only grant,bogus").is_err());
        assert!(a("--secs ten").is_err());
        assert!(a("--vcpus").is_err());
    }

    #[test]
    fn dma_disk_goes_through_the_smmu_on_xenith_only() {
        let p = std::path::Path::new("/tmp/d.img");
        assert_eq!(disk_args(Hyp::Xenith, p), ["-drive", "if=none,file=/tmp/d.img,format=raw,id=d0", "-device", "virtio-blk-pci,drive=d0,iommu_platform=on,disable-legacy=on"]);
        assert_eq!(disk_args(Hyp::Xen, p)[3], "virtio-blk-pci,drive=d0,disable-legacy=on");
    }
}
