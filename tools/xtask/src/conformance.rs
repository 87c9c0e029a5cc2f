//! `cargo xtask conformance`: the test guest's observed values on xenith, compared case by case
//! with real Xen 4.17's (tests/conformance/expected-xen-4.17.txt). `--against xen` boots the same
//! guest on Debian's Xen 4.17 under the same QEMU and rewrites that file. A difference is a
//! failure unless tests/conformance/deviations.txt lists it (with xenith's value and a reason).

use crate::build::{self, Images, GUEST_TARGET};
use crate::env::{self, Result};
use crate::fixtures;
use crate::qemu::{Boot, Outcome};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Xen's command line for the reference run: dom0 gets the same 512 MiB and the one vCPU
/// xenith gives it (the other CPU runs the domU).
const XEN_CMDLINE: &str = "dom0_mem=512M console=dtuart dtuart=/pl011@9000000 bootscrub=0 dom0_max_vcpus=1";
/// The benchmark's (no domU): as the reference run was recorded before domUs.
pub const XEN_BENCH_CMDLINE: &str = "dom0_mem=512M console=dtuart dtuart=/pl011@9000000 bootscrub=0";
/// Where the domU's kernel (the test guest again) is loaded, and its RAM (KiB).
const DOMU_KERNEL_ADDR: u64 = 0x4c00_0000;
const DOMU_MEMORY_KIB: u64 = 128 * 1024;

fn dir() -> PathBuf {
    env::root().join("tests/conformance")
}

/// The QEMU CPU model of the full run; on other models only the guest's `cpu.*` cases run
/// (as dom0, no domU), each model with its own expected and deviations files.
pub const FULL_RUN_CPU: &str = "cortex-a57";
/// The other CPU models the conformance run covers.
pub const OTHER_CPUS: [&str; 1] = ["max"];

/// The GIC versions the full run covers: QEMU virt's `gic-version=` 3 and 2 (the GICv2 run has
/// its own expected and deviations files, `-gicv2`).
pub const GIC_VERSIONS: [u8; 2] = [3, 2];

fn expected_path(cpu: &str, gic: u8) -> PathBuf {
    if gic == 2 {
        dir().join("expected-xen-4.17-gicv2.txt")
    } else if cpu == FULL_RUN_CPU {
        dir().join("expected-xen-4.17.txt")
    } else {
        dir().join(format!("expected-xen-4.17-{cpu}.txt"))
    }
}
fn deviations_path(cpu: &str, gic: u8) -> PathBuf {
    if gic == 2 {
        dir().join("deviations-gicv2.txt")
    } else if cpu == FULL_RUN_CPU {
        dir().join("deviations.txt")
    } else {
        dir().join(format!("deviations-{cpu}.txt"))
    }
}

/// `case <name>: <value>` lines, in order: dom0's (console_io, printed as is) and the domUs'
/// (their emulated UARTs, printed by the hypervisor as `DOM1: case ...` / `DOM2: case ...`
/// after its own prefix).
pub fn parse_cases(output: &str) -> Vec<(String, String)> {
    output
        .lines()
        .filter_map(|l| {
            let l = l.trim_end();
            let l = ["DOM1: case ", "DOM2: case "].iter().find_map(|p| l.find(p)).map_or(l, |i| &l[i + "DOM1: ".len()..]);
            let rest = l.strip_prefix("case ")?;
            let (name, value) = rest.split_once(": ")?;
            Some((name.trim().to_string(), value.trim().to_string()))
        })
        .collect()
}

/// One listed deviation: xenith's value for a case and why it differs from Xen's.
#[derive(Debug, PartialEq)]
pub struct Deviation {
    pub xenith: String,
    pub reason: String,
}

/// `<name>: <xenith value> -- <reason>` per line; `#` starts a comment line.
pub fn parse_deviations(text: &str) -> std::result::Result<BTreeMap<String, Deviation>, String> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || format!("deviations.txt:{}: want `<case>: <xenith value> -- <reason>`", i + 1);
        let (name, rest) = line.split_once(": ").ok_or_else(bad)?;
        let (value, reason) = rest.split_once(" -- ").ok_or_else(bad)?;
        if reason.trim().is_empty() {
            return Err(bad());
        }
        out.insert(name.trim().to_string(), Deviation { xenith: value.trim().to_string(), reason: reason.trim().to_string() });
    }
    Ok(out)
}

/// What happened to one case.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Match,
    Deviation,
    Differs,
    MissingOnXenith,
    NotInExpected,
}

/// Compare xenith's cases with Xen's: one line per case and the verdicts.
pub fn compare(expected: &[(String, String)], got: &[(String, String)], devs: &BTreeMap<String, Deviation>) -> (Vec<String>, Vec<Verdict>) {
    let got_map: BTreeMap<&str, &str> = got.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let exp_map: BTreeMap<&str, &str> = expected.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let mut lines = Vec::new();
    let mut verdicts = Vec::new();
    for (name, xen) in expected {
        let (line, v) = match got_map.get(name.as_str()) {
            None => (format!("MISSING  {name}: xen {xen}, xenith printed nothing"), Verdict::MissingOnXenith),
            Some(x) if *x == xen => {
                let note = if devs.contains_key(name) { " (listed deviation is stale)" } else { "" };
                (format!("ok       {name}: {x}{note}"), Verdict::Match)
            }
            Some(x) => match devs.get(name) {
                Some(d) if d.xenith == *x => (format!("DEVIATES {name}: xen {xen}, xenith {x} -- {}", d.reason), Verdict::Deviation),
                Some(d) => (format!("DIFFERS  {name}: xen {xen}, xenith {x} (deviations.txt lists {})", d.xenith), Verdict::Differs),
                None => (format!("DIFFERS  {name}: xen {xen}, xenith {x}"), Verdict::Differs),
            },
        };
        lines.push(line);
        verdicts.push(v);
    }
    for (name, x) in got {
        if !exp_map.contains_key(name.as_str()) {
            lines.push(format!("NEW      {name}: xenith {x}, not in the expected file (run `cargo xtask conformance --against xen`)"));
            verdicts.push(Verdict::NotInExpected);
        }
    }
    (lines, verdicts)
}

/// Build only the test guest (the reference run does not need the hypervisor crate).
fn guest_image() -> Result<PathBuf> {
    env::run(Command::new("cargo").args(["build", "--release", "-p", "test-guest", "--bin", "test-guest", "--target", GUEST_TARGET]).current_dir(env::root()))?;
    let elf_path = env::target_dir().join(GUEST_TARGET).join("release").join("test-guest");
    let bytes = std::fs::read(&elf_path).map_err(|e| format!("{}: {e}", elf_path.display()))?;
    let (_, image) = crate::elf::flatten(&bytes).map_err(|e| format!("{}: {e}", elf_path.display()))?;
    std::fs::create_dir_all(env::images_dir()).map_err(|e| e.to_string())?;
    let out = env::images_dir().join("test-guest.Image");
    std::fs::write(&out, image).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(out)
}

/// The `/chosen/domU1` node (Xen's dom0less binding) that runs the test guest as a domU.
fn domu_node(kernel_size: u64) -> String {
    dom0less_node(1, DOMU_KERNEL_ADDR, DOMU_MEMORY_KIB, kernel_size, "console=ttyAMA0 domu")
}

/// The conformance run's second domU (domU2): the test guest again, which turns its only
/// vCPU off with PSCI CPU_OFF (nothing of it may run after that, and nothing else stops).
const DOMU2_KERNEL_ADDR: u64 = 0x4e00_0000;
const DOMU2_MEMORY_KIB: u64 = 64 * 1024;

/// A `/chosen/domU<n>` node: one vCPU, a vpl011, `memory_kib` of RAM, its kernel at `addr`.
pub fn dom0less_node(n: u32, addr: u64, memory_kib: u64, kernel_size: u64, bootargs: &str) -> String {
    dom0less_node_with(n, addr, memory_kib, kernel_size, bootargs, "")
}

/// [`dom0less_node`] with more properties (`props`: DTS lines, each ending in `;`).
pub fn dom0less_node_with(n: u32, addr: u64, memory_kib: u64, kernel_size: u64, bootargs: &str, props: &str) -> String {
    format!(
        "\t\tdomU{n} {{\n\t\t\tcompatible = \"xen,domain\";\n\t\t\t#address-cells = <0x1>;\n\t\t\t#size-cells = <0x1>;\n\t\t\tmemory = <0x0 {memory_kib:#x}>;\n\t\t\tcpus = <0x1>;\n\t\t\tvpl011;\n{props}\t\t\tmodule@{addr:x} {{\n\t\t\t\tcompatible = \"multiboot,kernel\", \"multiboot,module\";\n\t\t\t\treg = <{addr:#x} {kernel_size:#x}>;\n\t\t\t\tbootargs = \"{bootargs}\";\n\t\t\t}};\n\t\t}};\n"
    )
}

/// Insert `node` as the last child of /chosen in a `dtc -O dts` listing (after its properties
/// and other children, as the format wants).
pub fn add_to_chosen(dts: &str, node: &str) -> std::result::Result<String, String> {
    let at = dts.find("\tchosen {").ok_or("no /chosen node in QEMU's device tree")?;
    let end = at + dts[at..].find("\n\t};").ok_or("unterminated /chosen")? + 1;
    Ok(format!("{}{node}{}", &dts[..end], &dts[end..]))
}

/// QEMU's device tree for exactly this boot, with a domU running `guest` added to /chosen
/// (files named after `tag`).
fn dom0less_dtb(b: &Boot, guest: &std::path::Path, tag: &str, cpu_off_domu: bool) -> Result<PathBuf> {
    let size = std::fs::metadata(guest).map_err(|e| format!("{}: {e}", guest.display()))?.len();
    let mut nodes = domu_node(size);
    if cpu_off_domu {
        // `xen,enhanced`: the toolstack rows read and set its xenstore parameters and page.
        nodes.push_str(&dom0less_node_with(2, DOMU2_KERNEL_ADDR, DOMU2_MEMORY_KIB, size, "console=ttyAMA0 domu-cpu-off", "\t\t\txen,enhanced = \"enabled\";\n"));
    }
    dom0less_dtb_with(b, &nodes, tag)
}

/// QEMU's device tree for exactly this boot with `nodes` (dom0less domains) added to /chosen.
pub fn dom0less_dtb_with(b: &Boot, nodes: &str, tag: &str) -> Result<PathBuf> {
    env::ensure_tool("dtc", "device-tree-compiler")?;
    let dir = env::target_dir().join("conformance").join(tag);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let plain = dir.join("qemu-virt.dtb");
    let mut dump = b.clone();
    dump.dumpdtb = Some(plain.clone());
    env::run(dump.command().stdout(std::process::Stdio::null()))?;
    let dts = env::output(Command::new("dtc").args(["-q", "-I", "dtb", "-O", "dts"]).arg(&plain))?;
    let src = dir.join("dom0less.dts");
    std::fs::write(&src, add_to_chosen(&dts, nodes)?).map_err(|e| e.to_string())?;
    let out = dir.join("dom0less.dtb");
    env::run(Command::new("dtc").args(["-q", "-I", "dts", "-O", "dtb", "-o"]).arg(&out).arg(&src))?;
    Ok(out)
}

/// `b` with a dom0less domU1 whose kernel module is `kernel` (loaded by QEMU, named in the
/// DT QEMU would give this exact machine). `tag` names the generated files.
pub fn with_domu(mut b: Boot, kernel: &std::path::Path, tag: &str) -> Result<Boot> {
    b.extra.push("-device".into());
    b.extra.push(format!("loader,file={},addr={DOMU_KERNEL_ADDR:#x},force-raw=on", kernel.display()));
    b.dtb = Some(dom0less_dtb(&b, kernel, tag, false)?);
    Ok(b)
}

/// The conformance run's machine: domU1 as in [`with_domu`] and domU2 (the guest in
/// `domu-cpu-off` mode), each with a CPU of its own beside dom0's.
fn with_conformance_domus(mut b: Boot, kernel: &std::path::Path, tag: &str) -> Result<Boot> {
    b.smp = b.smp.max(3);
    for addr in [DOMU_KERNEL_ADDR, DOMU2_KERNEL_ADDR] {
        b.extra.push("-device".into());
        b.extra.push(format!("loader,file={},addr={addr:#x},force-raw=on", kernel.display()));
    }
    b.dtb = Some(dom0less_dtb(&b, kernel, tag, true)?);
    Ok(b)
}

/// `b` with one dom0less domU per entry of `bootargs` (domU1, domU2, ...), all booting `kernel`;
/// QEMU gets one more CPU per domU (each runs on a CPU of its own on xenith).
pub fn with_domus(mut b: Boot, kernel: &std::path::Path, bootargs: &[&str], tag: &str) -> Result<Boot> {
    b.extra.push("-device".into());
    b.extra.push(format!("loader,file={},addr={DOMU_KERNEL_ADDR:#x},force-raw=on", kernel.display()));
    b.smp += bootargs.len() as u32;
    let size = std::fs::metadata(kernel).map_err(|e| format!("{}: {e}", kernel.display()))?.len();
    // Several domUs may boot the same module: each gets a copy.
    let nodes: String = bootargs.iter().enumerate().map(|(i, a)| dom0less_node(i as u32 + 1, DOMU_KERNEL_ADDR, DOMU_MEMORY_KIB, size, a)).collect();
    b.dtb = Some(dom0less_dtb_with(&b, &nodes, tag)?);
    Ok(b)
}

/// Noise: dom0's null hypercall (the test guest's `bench-noise` windows) while two dom0less
/// domUs (the test guest again, one vCPU each on CPUs of their own) loop on hypercalls, and
/// while they idle in WFI; dom0 has one vCPU. Returns the `bench` values of both boots.
pub fn noise_run(hypervisor: PathBuf, cmdline: &str, guest: PathBuf) -> Result<(BTreeMap<String, f64>, BTreeMap<String, f64>)> {
    let run = |mode: &str| -> Result<BTreeMap<String, f64>> {
        let mut b = Boot::new(hypervisor.clone());
        b.cmdline = format!("{cmdline} dom0_max_vcpus=1").trim().to_string();
        b.smp = 1;
        b.dom0 = Some(guest.clone());
        b.dom0_args = "console=hvc0 bench-noise".into();
        b.icount = true;
        b.timeout = Duration::from_secs(600);
        let arg = format!("console=ttyAMA0 domu noise-{mode}");
        let b = with_domus(b, &guest, &[&arg, &arg], &format!("noise-{mode}"))?;
        let out = b.run()?;
        if std::env::var_os("XENITH_NOISE_LOG").is_some() {
            eprintln!("{}", out.output);
        }
        let v = bench_values(&out.output);
        // Both domUs must have reached their loop (each says so on its console).
        let started = out.output.matches("noise: domU ").count();
        if started < 2 {
            return Err(format!("noise ({mode} domUs): {started} of 2 domUs reached their loop: {}", tail(&out)));
        }
        if !v.contains_key("noise_null_hypercall_ns") {
            return Err(format!("noise ({mode} domUs): no result: {}", tail(&out)));
        }
        Ok(v)
    };
    Ok((run("idle")?, run("busy")?))
}

/// Print the noise figures of one hypervisor: idle vs busy domUs and the increase.
pub fn print_noise(name: &str, idle: &BTreeMap<String, f64>, busy: &BTreeMap<String, f64>) {
    let key = "noise_null_hypercall_ns";
    let (i, b) = (idle.get(key).copied().unwrap_or(f64::NAN), busy.get(key).copied().unwrap_or(f64::NAN));
    let w = |m: &BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(f64::NAN);
    println!(
        "  {name}: dom0 null hypercall {i:.1} with 2 idle domUs, {b:.1} with 2 domUs looping on hypercalls: {:+.1} % (target <= +10 %); windows set aside as interrupted by another vCPU's turn: {} idle, {} busy (of {})",
        (b / i - 1.0) * 100.0,
        w(idle, "noise_interrupted_windows"),
        w(busy, "noise_interrupted_windows"),
        w(busy, "noise_windows"),
    );
}

fn boot(hypervisor: PathBuf, cmdline: &str, guest: PathBuf, cpu: &str, gic: u8) -> Result<Outcome> {
    let mut b = Boot::new(hypervisor);
    b.cmdline = cmdline.into();
    b.cpu = cpu.into();
    b.gic = gic;
    b.dom0 = Some(guest.clone());
    let full = cpu == FULL_RUN_CPU;
    let mut b = if full {
        b.dom0_args = "console=hvc0 domu-peer".into();
        with_conformance_domus(b, &guest, if gic == 2 { "run-gicv2" } else { "run" })?
    } else {
        b.dom0_args = "console=hvc0 cpu-cases".into();
        b
    };
    b.timeout = Duration::from_secs(180);
    let out = b.run()?;
    if out.timed_out {
        return Err(format!("QEMU did not end within {:?}: {}", b.timeout, tail(&out)));
    }
    if crate::systest::guest_summary(&out).is_none() {
        return Err(format!("the guest did not reach its summary line (a case crashed it?): {}", tail(&out)));
    }
    if full && !out.output.lines().any(|l| l.contains("DOM1: domu: ") && l.contains(" passed, ")) {
        return Err(format!("the domU did not reach its summary line: {}", tail(&out)));
    }
    Ok(out)
}

fn tail(out: &Outcome) -> String {
    let lines: Vec<&str> = out.output.lines().collect();
    let mut s = String::from("last output:\n");
    for l in &lines[lines.len().saturating_sub(30)..] {
        s.push_str("  | ");
        s.push_str(l);
        s.push('\n');
    }
    s
}

/// `--against xen`: record Xen 4.17's values on QEMU CPU `cpu` as its expected file.
pub fn record_xen(cpu: &str, gic: u8) -> Result<()> {
    let xen = fixtures::xen_4_17()?;
    let guest = guest_image()?;
    let out = boot(xen, XEN_CMDLINE, guest, cpu, gic)?;
    let cases = parse_cases(&out.output);
    let log = env::target_dir().join(format!("conformance-xen-4.17-{cpu}-gicv{gic}.log"));
    let _ = std::fs::write(&log, &out.output);
    for l in out.output.lines().filter(|l| l.starts_with("fail ")) {
        println!("xen: {l} (the guest table's expectation; Xen's value is recorded)");
    }
    let mut text = String::new();
    text.push_str("# The test guest's observed values on real Xen 4.17 (Debian xen-hypervisor-4.17-arm64) as dom0\n");
    if cpu == FULL_RUN_CPU {
        text.push_str(&format!("# under QEMU virt (cortex-a57, GICv{gic}, 2 GiB, 3 CPUs), with the same guest as two dom0less domUs beside\n"));
        text.push_str("# it (domu.* lines are domU1's, xdom.* dom0's side of their grant exchange, domu2.* domU2's, which\n");
        text.push_str("# turns its only vCPU off).\n");
    } else {
        text.push_str(&format!("# under QEMU virt (-cpu {cpu}, GICv3, 2 GiB, 2 CPUs): only the guest's cpu.* cases (bootarg cpu-cases).\n"));
    }
    text.push_str(if gic == 2 { "# Written by `cargo xtask conformance --against xen --gic 2`;\n" } else { "# Written by `cargo xtask conformance --against xen`;\n" });
    text.push_str(&format!("# Xen command line: {XEN_CMDLINE}\n"));
    for (name, value) in &cases {
        text.push_str(&format!("case {name}: {value}\n"));
    }
    std::fs::create_dir_all(dir()).map_err(|e| e.to_string())?;
    std::fs::write(expected_path(cpu, gic), text).map_err(|e| e.to_string())?;
    let (p, f) = crate::systest::guest_summary(&out).unwrap_or((0, 0));
    println!("conformance: recorded {} cases from Xen 4.17 on {cpu}, GICv{gic} into {} (guest's own table: {p} passed, {f} failed)", cases.len(), expected_path(cpu, gic).display());
    Ok(())
}

/// Run the guest on xenith and compare with the expected file.
/// Run the suite on xenith and diff it; the number of cases that matched Xen or a listed
/// deviation (an error on any other difference).
pub fn check(images: &Images) -> Result<usize> {
    let mut matched = 0;
    for gic in GIC_VERSIONS {
        matched += check_cpu(images, FULL_RUN_CPU, gic)?;
    }
    for cpu in OTHER_CPUS {
        matched += check_cpu(images, cpu, 3)?;
    }
    Ok(matched)
}

/// The conformance diff on QEMU CPU `cpu` with GIC version `gic`.
fn check_cpu(images: &Images, cpu: &str, gic: u8) -> Result<usize> {
    let expected_path = expected_path(cpu, gic);
    let text = std::fs::read_to_string(&expected_path).map_err(|e| format!("{}: {e} (run `cargo xtask conformance --against xen`)", expected_path.display()))?;
    let expected = parse_cases(&text);
    // The GICv2 run lists its own deviations on top of the GICv3 run's on the same CPU.
    let mut devs = BTreeMap::new();
    let files = if gic == 2 { vec![deviations_path(cpu, 3), deviations_path(cpu, 2)] } else { vec![deviations_path(cpu, gic)] };
    for f in files {
        if let Ok(t) = std::fs::read_to_string(&f) {
            devs.extend(parse_deviations(&t)?);
        }
    }
    println!("conformance on -cpu {cpu}, GICv{gic}:");
    let out = boot(images.hypervisor.clone(), "", images.test_guest.clone(), cpu, gic)?;
    let log = env::target_dir().join(format!("conformance-xenith-{cpu}-gicv{gic}.log"));
    let _ = std::fs::write(&log, &out.output);
    let got = parse_cases(&out.output);
    let (lines, verdicts) = compare(&expected, &got, &devs);
    for l in &lines {
        println!("{l}");
    }
    let count = |v: Verdict| verdicts.iter().filter(|x| **x == v).count();
    let (ok, dev, diff, missing, new) = (count(Verdict::Match), count(Verdict::Deviation), count(Verdict::Differs), count(Verdict::MissingOnXenith), count(Verdict::NotInExpected));
    println!("conformance (-cpu {cpu}, GICv{gic}): {} cases: {ok} match Xen 4.17, {dev} listed deviations, {diff} differ, {missing} missing, {new} not in the expected file", expected.len());
    if diff + missing + new > 0 {
        Err(format!("{} conformance difference(s) on -cpu {cpu}, GICv{gic} not listed in {}", diff + missing + new, deviations_path(cpu, gic).display()))
    } else {
        Ok(ok + dev)
    }
}

/// `bench` lines of one boot of the test guest in bench mode under `-icount shift=0`.
fn bench_run(hypervisor: PathBuf, cmdline: &str, guest: PathBuf) -> Result<BTreeMap<String, f64>> {
    bench_run_mode(hypervisor, cmdline, guest, "bench", None, 3)
}

/// [`bench_run`] with the guest's bench mode (`bench`: everything; `bench-exits`: the null
/// hypercall and the per-exit costs); `smp`: that many CPUs, each a vCPU of dom0 (the guest
/// runs on vCPU 0, the others stay off but exist in its vGIC).
fn bench_run_mode(hypervisor: PathBuf, cmdline: &str, guest: PathBuf, mode: &str, smp: Option<u32>, gic: u8) -> Result<BTreeMap<String, f64>> {
    let mut b = Boot::new(hypervisor);
    b.cmdline = cmdline.into();
    b.gic = gic;
    if let Some(n) = smp {
        b.smp = n;
        b.cmdline = format!("{} dom0_max_vcpus={n}", b.cmdline).trim_start().to_string();
    }
    b.dom0 = Some(guest);
    b.dom0_args = format!("console=hvc0 {mode}");
    b.icount = true;
    b.timeout = Duration::from_secs(300);
    // The per-exit SPI bench raises edu's INTx (a physical SPI dom0 owns on both hypervisors).
    b.extra = crate::systest::edu_device();
    let out = b.run()?;
    let v = bench_values(&out.output);
    if v.is_empty() {
        return Err(format!("no bench lines: {}", tail(&out)));
    }
    Ok(v)
}

/// The `bench <key>: <number> ...` lines of a boot's output (the first number after each key).
pub fn bench_values(output: &str) -> BTreeMap<String, f64> {
    let mut v = BTreeMap::new();
    for l in output.lines() {
        let Some(rest) = l.trim().strip_prefix("bench ") else { continue };
        if let Some((k, x)) = rest.split_once(": ") {
            if let Some(x) = x.split_whitespace().next().and_then(|x| x.parse::<f64>().ok()) {
                v.insert(k.to_string(), x);
            }
        }
    }
    v
}

/// The keys `bench --only exits` reports.
const EXIT_KEYS: [&str; 8] = [
    "null_hypercall_ns",
    "exit_gicd_read_ns",
    "exit_gicd_write_ns",
    "exit_gicr_read_ns",
    "exit_gicr_write_ns",
    "exit_sgi_self_ns",
    "exit_vtimer_tick_ns",
    "exit_spi_ns",
];

/// The grant and balloon round trips `bench --against xen` reports besides those.
const ROUND_TRIP_KEYS: [&str; 12] = [
    "grant_map_unmap_ns",
    "grant_map_ns",
    "grant_query_size_ns",
    "grant_map_held_1_ns",
    "grant_map_held_1024_ns",
    "grant_map_held_32768_ns",
    "grant_unmap_held_1_ns",
    "grant_unmap_held_1024_ns",
    "grant_unmap_held_32768_ns",
    "decrease_reservation_page_ns",
    "populate_physmap_page_ns",
    "balloon_cycle_page_ns",
];

/// One row of the xenith / Xen 4.17 table; returns the ratio when both figures are there.
pub(crate) fn print_row(key: &str, ours: &BTreeMap<String, f64>, xen: &BTreeMap<String, f64>) -> Option<f64> {
    let (a, b) = (ours.get(key).copied(), xen.get(key).copied());
    let f = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.1}"));
    let ratio = match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    println!("  {key:<28} {:>12} {:>12} {:>8}", f(a), f(b), ratio.map_or("-".to_string(), |r| format!("{r:.3}")));
    ratio
}

/// Where `bench --only exits --against xen` keeps Xen 4.17's figures, for later runs without
/// `--against xen`.
fn xen_exits_cache(smp: Option<u32>, gic: u8) -> PathBuf {
    let gic = if gic == 2 { "-gicv2" } else { "" };
    match smp {
        Some(n) => env::images_dir().join(format!("xen-4.17-exits-smp{n}{gic}.txt")),
        None => env::images_dir().join(format!("xen-4.17-exits{gic}.txt")),
    }
}

/// A fingerprint of the files a cached Xen figure depends on (the Xen image and the guest:
/// the guest's loops are part of every figure).
fn fingerprint(files: &[&Path]) -> Result<String> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for f in files {
        std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?.hash(&mut h);
    }
    Ok(format!("{:016x}", h.finish()))
}

/// `cargo xtask bench --only exits [--smp N] [--against xen]`: the null hypercall and one exit
/// of each kind on xenith; with `--against xen` the same boot on Xen 4.17 (its figures then
/// cached in target/), without it Xen's cached figures when they were recorded with this same
/// guest. `smp`: N CPUs and dom0 vCPUs on both. Fails when a figure is over Xen's.
pub fn bench_exits(images: &Images, against_xen: bool, smp: Option<u32>, gic: u8) -> Result<()> {
    let xen_image = fixtures::xen_4_17()?;
    let print = fingerprint(&[&xen_image, &images.test_guest])?;
    let cache = xen_exits_cache(smp, gic);
    let (xen, source) = if against_xen {
        let v = bench_run_mode(xen_image, XEN_BENCH_CMDLINE, images.test_guest.clone(), "bench-exits", smp, gic)?;
        let mut text = format!("fingerprint {print}\n");
        for (k, x) in &v {
            text.push_str(&format!("{k} {x}\n"));
        }
        let _ = std::fs::write(&cache, text);
        (v, "measured now")
    } else {
        let text = std::fs::read_to_string(&cache).unwrap_or_default();
        let mut lines = text.lines();
        if lines.next() == Some(&format!("fingerprint {print}")) {
            let v = lines
                .filter_map(|l| l.split_once(' '))
                .filter_map(|(k, x)| Some((k.to_string(), x.parse::<f64>().ok()?)))
                .collect();
            (v, "cached from an earlier --against xen run with this guest")
        } else {
            (BTreeMap::new(), "none recorded for this guest: run with --against xen")
        }
    };
    let ours = bench_run_mode(images.hypervisor.clone(), "", images.test_guest.clone(), "bench-exits", smp, gic)?;
    let mut cpus = smp.map_or(String::new(), |n| format!(", {n} CPUs and dom0 vCPUs"));
    if gic == 2 {
        cpus.push_str(", GICv2");
    }
    println!("null hypercall and exits under -icount shift=0 (1 instruction = 1 ns of guest time{cpus}); Xen 4.17: {source}");
    println!("  {:<28} {:>12} {:>12} {:>8}", "", "xenith", "Xen 4.17", "ratio");
    let mut over = Vec::new();
    for key in EXIT_KEYS {
        if print_row(key, &ours, &xen).is_some_and(|r| r > 1.0) {
            over.push(key);
        }
    }
    // A GICv2 has no redistributors: no GICR rows there.
    if let Some(missing) = EXIT_KEYS.iter().filter(|k| gic == 3 || !k.contains("gicr")).find(|k| !ours.contains_key(**k)) {
        return Err(format!("xenith's boot printed no {missing}"));
    }
    if over.is_empty() {
        Ok(())
    } else {
        Err(format!("over Xen 4.17's: {over:?}"))
    }
}

/// `cargo xtask bench --against xen`: the guest's round trips on xenith and on Xen 4.17, same
/// QEMU, same guest, instructions counted the same way, and their ratio.
pub fn bench_against_xen(images: &Images) -> Result<()> {
    let xen = bench_run(fixtures::xen_4_17()?, XEN_BENCH_CMDLINE, images.test_guest.clone())?;
    let ours = bench_run(images.hypervisor.clone(), "", images.test_guest.clone())?;
    println!("guest round trips under -icount shift=0 (1 instruction = 1 ns of guest time):");
    println!("  {:<28} {:>12} {:>12} {:>8}", "", "xenith", "Xen 4.17", "ratio");
    let mut ours = ours;
    let mut xen = xen;
    for v in [&mut ours, &mut xen] {
        if let (Some(d), Some(p)) = (v.get("decrease_reservation_page_ns"), v.get("populate_physmap_page_ns")) {
            let sum = d + p;
            v.insert("balloon_cycle_page_ns".into(), sum);
        }
    }
    for key in ["null_hypercall_ns"].iter().chain(&ROUND_TRIP_KEYS).chain(&EXIT_KEYS[1..]) {
        print_row(key, &ours, &xen);
    }
    println!("  (targets: hypercall and grant round trips at most half of Xen's, ratio <= 0.5; the balloon cycle and each exit_* at most Xen's, ratio <= 1)");
    for op in ["map", "unmap"] {
        if let (Some(one), Some(many)) = (ours.get(&format!("grant_{op}_held_1_ns")), ours.get(&format!("grant_{op}_held_32768_ns"))) {
            println!("  xenith grant {op} with 32768 mappings held / with 1: {:.3} (target <= 1.2)", many / one);
        }
    }
    println!("noise: dom0 (1 vCPU) null hypercall, median of short windows under -icount, two dom0less domUs idle vs looping:");
    let (i, b) = noise_run(images.hypervisor.clone(), "", images.test_guest.clone())?;
    print_noise("xenith", &i, &b);
    let (i, b) = noise_run(fixtures::xen_4_17()?, XEN_BENCH_CMDLINE, images.test_guest.clone())?;
    print_noise("Xen 4.17", &i, &b);
    crate::linux::bench_against_xen(images.hypervisor.clone(), fixtures::xen_4_17()?)?;
    crate::overhead::bench(images.hypervisor.clone(), fixtures::xen_4_17()?)?;
    crate::toolstack::bench_against_xen(images.hypervisor.clone(), fixtures::xen_4_17()?)
}

/// `cargo xtask conformance [--against xen [--vulnerabilities | --console]] [--cpu MODEL]`.
pub fn main(args: &[String]) -> Result<()> {
    let (mut against_xen, mut cpu, mut vulns, mut console, mut gic) = (false, None, false, false, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--against" => match it.next().map(String::as_str) {
                Some("xen") => against_xen = true,
                other => return Err(format!("--against: only `xen` is known, got {other:?}")),
            },
            "--cpu" => match it.next().map(String::as_str) {
                Some(c) if c == FULL_RUN_CPU || OTHER_CPUS.contains(&c) => cpu = Some(c.to_string()),
                other => return Err(format!("--cpu: one of {FULL_RUN_CPU} {OTHER_CPUS:?}, got {other:?}")),
            },
            "--gic" => match it.next().map(String::as_str) {
                Some("2") => gic = Some(2),
                Some("3") => gic = Some(3),
                other => return Err(format!("--gic: 2 or 3, got {other:?}")),
            },
            "--vulnerabilities" => vulns = true,
            "--console" => console = true,
            other => return Err(format!("conformance: unknown option `{other}`")),
        }
    }
    if console {
        if !against_xen {
            return Err("--console goes with --against xen (the system test compares xenith's)".into());
        }
        return crate::console::record_xen();
    }
    if vulns {
        if !against_xen {
            return Err("--vulnerabilities goes with --against xen (the system tests compare xenith's)".into());
        }
        let cpus: Vec<&str> = match &cpu {
            Some(c) => vec![c.as_str()],
            None => crate::vulnerabilities::CPUS.iter().map(|(c, _)| *c).collect(),
        };
        return cpus.into_iter().try_for_each(crate::vulnerabilities::record_xen);
    }
    if gic == Some(2) && cpu.as_deref().is_some_and(|c| c != FULL_RUN_CPU) {
        return Err(format!("--gic 2 runs the full table, on {FULL_RUN_CPU} only"));
    }
    match (against_xen, cpu, gic) {
        (true, cpu, gic) => record_xen(cpu.as_deref().unwrap_or(FULL_RUN_CPU), gic.unwrap_or(3)),
        (false, cpu, Some(gic)) => check_cpu(&build::all()?, cpu.as_deref().unwrap_or(FULL_RUN_CPU), gic).map(|_| ()),
        (false, Some(cpu), None) => check_cpu(&build::all()?, &cpu, 3).map(|_| ()),
        (false, None, None) => check(&build::all()?).map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cases(s: &str) -> Vec<(String, String)> {
        parse_cases(s)
    }

    #[test]
    fn parses_case_lines_among_other_output() {
        let c = cases("(XEN) hello\ncase a.b: -22 (-EINVAL)\r\nnoise case x: 1\ncase c: 0x1\n");
        assert_eq!(c, vec![("a.b".into(), "-22 (-EINVAL)".into()), ("c".into(), "0x1".into())]);
    }

    #[test]
    fn domu_lines_come_through_either_hypervisors_prefix() {
        let c = cases("(XEN) DOM1: case domu.a: 0x1\n(xenith) DOM1: case domu.b: 0 \n(xenith) DOM2: case domu2.c: 1\n(xenith) DOM3: case other: 1\n");
        assert_eq!(c, vec![("domu.a".into(), "0x1".into()), ("domu.b".into(), "0".into()), ("domu2.c".into(), "1".into())]);
    }

    #[test]
    fn domu_node_goes_last_under_chosen() {
        let dts = "/ {\n\tchosen {\n\t\tbootargs = \"x\";\n\t\tmodule@1 {\n\t\t};\n\t};\n\tcpus {\n\t};\n};\n";
        let out = add_to_chosen(dts, &domu_node(0x9000)).unwrap();
        let at = out.find("domU1 {").unwrap();
        assert!(out.find("module@1 {").unwrap() < at && at < out.find("cpus {").unwrap());
        assert!(out.contains("reg = <0x4c000000 0x9000>;") && out.contains("memory = <0x0 0x20000>;") && out.contains("vpl011;"));
        assert!(add_to_chosen("/ { };", "n").is_err());
    }

    #[test]
    fn deviations_need_a_reason() {
        assert!(parse_deviations("a: 1 -- because\n# c\n").is_ok());
        assert!(parse_deviations("a: 1\n").is_err());
        assert!(parse_deviations("a: 1 --  \n").is_err());
    }

    #[test]
    fn verdicts() {
        let exp = cases("case a: 1\ncase b: 2\ncase c: 3\ncase d: 4\n");
        let got = cases("case a: 1\ncase b: 5\ncase c: 6\ncase e: 7\n");
        let devs = parse_deviations("b: 5 -- listed\nc: 9 -- listed with another value\n").unwrap();
        let (_, v) = compare(&exp, &got, &devs);
        assert_eq!(v, vec![Verdict::Match, Verdict::Deviation, Verdict::Differs, Verdict::MissingOnXenith, Verdict::NotInExpected]);
    }
}
