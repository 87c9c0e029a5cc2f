//! Linux dom0's /sys/devices/system/cpu/vulnerabilities/* (printed by /init as
//! `vuln: NAME: VALUE`) compared with Xen 4.17's on the same QEMU CPU, recorded in
//! tests/conformance/vulnerabilities-xen-4.17-<cpu>.txt. xenith passes a file when it reads the
//! same as Xen's or names a stronger mitigation; any other difference must be listed in
//! tests/conformance/deviations.txt as `vulnerabilities.<cpu>.<NAME>: <xenith's value> -- <why>`.

use crate::conformance::parse_deviations;
use crate::env::{self, Result};
use crate::fixtures;
use crate::qemu::{Boot, Outcome};
use std::path::PathBuf;
use std::time::Duration;

/// The CPUs the comparison covers, with the short tag of their expected file.
pub const CPUS: [(&str, &str); 2] = [("cortex-a57", "a57"), ("max", "max")];

/// Xen 4.17's command line for the recording: the reference setup's, dom0 with 2 vCPUs as
/// in xenith's system test.
const XEN_CMDLINE: &str = "dom0_mem=512M console=dtuart dtuart=/pl011@9000000 bootscrub=0 dom0_max_vcpus=2";

fn tag(cpu: &str) -> &str {
    CPUS.iter().find(|(c, _)| *c == cpu).map_or(cpu, |(_, t)| t)
}

fn expected_path(cpu: &str) -> PathBuf {
    env::root().join(format!("tests/conformance/vulnerabilities-xen-4.17-{}.txt", tag(cpu)))
}

/// `vuln: NAME: VALUE` lines, wherever a hypervisor's console prefix puts them.
pub fn parse(output: &str) -> Vec<(String, String)> {
    output
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find("vuln: ")? + "vuln: ".len()..];
            let (name, value) = rest.split_once(": ")?;
            Some((name.trim().to_string(), value.trim().to_string()))
        })
        .collect()
}

/// How strong an answer is: "Not affected" > any "Mitigation: ..." > anything else.
fn strength(v: &str) -> u8 {
    if v == "Not affected" {
        2
    } else if v.starts_with("Mitigation") {
        1
    } else {
        0
    }
}

/// Whether xenith's answer is as strong as Xen's: the same, a stronger class, or the same
/// mitigation with more added (e.g. ", BHB").
pub fn at_least(xen: &str, xenith: &str) -> bool {
    xen == xenith || strength(xenith) > strength(xen) || (strength(xen) == 1 && strength(xenith) == 1 && xenith.starts_with(xen))
}

/// Compare dom0's files on `cpu` with Xen's recorded ones; Err lists every file that is
/// neither as strong as Xen's nor a listed deviation (with exactly that value).
pub fn check(o: &Outcome, cpu: &str) -> std::result::Result<Vec<String>, String> {
    let path = expected_path(cpu);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e} (record it: `cargo xtask conformance --against xen --vulnerabilities`)", path.display()))?;
    let xen = parse(&text);
    if xen.is_empty() {
        return Err(format!("{}: no `vuln:` lines", path.display()));
    }
    let devs_path = env::root().join("tests/conformance/deviations.txt");
    let devs = parse_deviations(&std::fs::read_to_string(&devs_path).map_err(|e| format!("{}: {e}", devs_path.display()))?)?;
    let ours = parse(&o.output);
    let (mut lines, mut bad) = (Vec::new(), Vec::new());
    for (name, x) in &xen {
        let key = format!("vulnerabilities.{}.{name}", tag(cpu));
        match ours.iter().find(|(n, _)| n == name).map(|(_, v)| v) {
            None => bad.push(format!("{name}: xen `{x}`, xenith printed nothing")),
            Some(v) if at_least(x, v) => lines.push(format!("{name}: xen `{x}`, xenith `{v}`: ok")),
            Some(v) => match devs.get(&key) {
                Some(d) if d.xenith == *v => lines.push(format!("{name}: xen `{x}`, xenith `{v}`: listed deviation ({})", d.reason)),
                _ => bad.push(format!("{name}: xen `{x}`, xenith `{v}` is weaker and `{key}: {v}` is not in deviations.txt")),
            },
        }
    }
    for (name, v) in &ours {
        if !xen.iter().any(|(n, _)| n == name) {
            bad.push(format!("{name}: xenith `{v}`, not in {} (re-record)", path.display()));
        }
    }
    if bad.is_empty() {
        Ok(lines)
    } else {
        Err(format!("vulnerabilities on -cpu {cpu} weaker than Xen 4.17's:\n  {}", bad.join("\n  ")))
    }
}

/// Linux dom0 on Debian's Xen 4.17 on `cpu` (the reference setup the files were recorded with).
pub fn xen_boot(cpu: &str) -> Result<Boot> {
    let mut b = Boot::new(fixtures::xen_4_17()?);
    b.cmdline = XEN_CMDLINE.into();
    b.cpu = cpu.into();
    b.timeout = Duration::from_secs(240);
    crate::linux::use_for(&mut b)?;
    Ok(b)
}

/// Xen 4.17's files in this boot are still the recorded ones (name for name, value for value):
/// with the xenith system tests' comparison against the recording, both hypervisors are
/// compared in the same run.
pub fn check_xen_live(o: &Outcome, cpu: &str) -> std::result::Result<(), String> {
    let path = expected_path(cpu);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (recorded, live) = (parse(&text), parse(&o.output));
    if live.is_empty() {
        return Err(format!("Linux dom0 on Xen 4.17 (-cpu {cpu}) printed no `vuln:` lines"));
    }
    if recorded != live {
        let diff: Vec<String> = live.iter().filter(|l| !recorded.contains(l)).map(|(n, v)| format!("{n}: {v}")).collect();
        return Err(format!("Xen 4.17 on -cpu {cpu} now reads differently from {} (re-record with `cargo xtask conformance --against xen --vulnerabilities`): {diff:?}", path.display()));
    }
    Ok(())
}

/// `--against xen --vulnerabilities`: boot Linux dom0 on Xen 4.17 on `cpu` and write its files.
pub fn record_xen(cpu: &str) -> Result<()> {
    let out = xen_boot(cpu)?.run()?;
    let got = parse(&out.output);
    if got.is_empty() {
        let log = env::target_dir().join(format!("vulnerabilities-xen-4.17-{}.log", tag(cpu)));
        let _ = std::fs::write(&log, &out.output);
        return Err(format!("Linux dom0 on Xen 4.17 (-cpu {cpu}) printed no `vuln:` lines; output in {}", log.display()));
    }
    let mut text = String::new();
    text.push_str(&format!("# Linux dom0's /sys/devices/system/cpu/vulnerabilities/* on Debian's Xen 4.17 under QEMU virt -cpu {cpu}\n"));
    text.push_str("# (the kernel and initramfs of the Linux system test). Written by\n");
    text.push_str(&format!("# `cargo xtask conformance --against xen --vulnerabilities --cpu {cpu}`; Xen command line: {XEN_CMDLINE}\n"));
    for (n, v) in &got {
        text.push_str(&format!("vuln: {n}: {v}\n"));
        println!("xen -cpu {cpu}: {n}: {v}");
    }
    let path = expected_path(cpu);
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_under_any_prefix() {
        let v = parse("noise\n(XEN) vuln: spectre_v2: Mitigation: Branch predictor hardening, BHB\nvuln: meltdown: Not affected\r\n");
        assert_eq!(v, vec![("spectre_v2".into(), "Mitigation: Branch predictor hardening, BHB".into()), ("meltdown".into(), "Not affected".into())]);
    }

    #[test]
    fn ordering_of_answers() {
        assert!(at_least("Vulnerable", "Vulnerable"));
        assert!(at_least("Vulnerable", "Mitigation: Speculative Store Bypass disabled via prctl"));
        assert!(at_least("Mitigation: Branch predictor hardening", "Not affected"));
        assert!(at_least("Mitigation: Branch predictor hardening", "Mitigation: Branch predictor hardening, BHB"));
        assert!(!at_least("Mitigation: Branch predictor hardening, BHB", "Mitigation: Branch predictor hardening"));
        assert!(!at_least("Mitigation: Branch predictor hardening, BHB", "Vulnerable"));
        assert!(!at_least("Not affected", "Mitigation: __user pointer sanitization"));
    }
}
