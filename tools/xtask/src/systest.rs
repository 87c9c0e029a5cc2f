//! System tests: boot xenith under QEMU and assert on what it (and its dom0) print. Every
//! test also requires QEMU to end by itself: a hang is a failure.

use crate::build::Images;
use crate::env::Result;
use crate::qemu::{Boot, Outcome};
use std::time::Duration;

struct Case {
    name: &'static str,
    boot: Boot,
    check: fn(&Outcome) -> std::result::Result<(), String>,
}

fn expect(out: &Outcome, needle: &str) -> std::result::Result<(), String> {
    if out.has(needle) {
        Ok(())
    } else {
        Err(format!("expected output containing `{needle}`"))
    }
}

fn ends_by_itself(out: &Outcome) -> std::result::Result<(), String> {
    if out.timed_out {
        Err("QEMU did not end: the hypervisor hung".into())
    } else {
        Ok(())
    }
}

fn fatal_and_off(out: &Outcome, needle: &str) -> std::result::Result<(), String> {
    ends_by_itself(out)?;
    expect(out, needle)?;
    expect(out, "cannot continue")?;
    expect(out, "powering off")
}

/// `N passed, M failed` from the guest: (N, M).
pub fn guest_summary(out: &Outcome) -> Option<(u32, u32)> {
    out.output.lines().rev().find_map(|l| {
        let l = l.trim();
        let (p, rest) = l.split_once(" passed, ")?;
        let f = rest.strip_suffix(" failed")?;
        Some((p.trim().parse().ok()?, f.trim().parse().ok()?))
    })
}

fn cases(images: &Images) -> Vec<Case> {
    let base = |dom0: bool| {
        let mut b = Boot::new(images.hypervisor.clone());
        if dom0 {
            b.dom0 = Some(images.test_guest.clone());
        }
        b.timeout = Duration::from_secs(90);
        b
    };
    vec![
        Case {
            name: "test_guest_as_dom0",
            boot: base(true),
            check: |o| {
                ends_by_itself(o)?;
                expect(o, "xenith 0.1.0")?;
                expect(o, "RAM bank")?;
                expect(o, "dom0: RAM ")?;
                expect(o, "starting dom0")?;
                match guest_summary(o) {
                    Some((p, 0)) if p > 0 => {}
                    other => return Err(format!("guest summary {other:?}, wanted `N passed, 0 failed`")),
                }
                expect(o, "hardware domain powered off")?;
                if o.exit_code != Some(0) {
                    return Err(format!("QEMU exit code {:?}", o.exit_code));
                }
                Ok(())
            },
        },
        Case { name: "no_dom0_module", boot: base(false), check: |o| fatal_and_off(o, "no dom0 kernel") },
        Case {
            name: "dom0_not_an_arm64_image",
            boot: Boot { dom0: Some(images.test_guest_elf.clone()), ..base(true) },
            check: |o| fatal_and_off(o, "not an arm64 Image"),
        },
        Case {
            name: "dom0_mem_larger_than_ram",
            boot: Boot { cmdline: "dom0_mem=4G".into(), ..base(true) },
            check: |o| fatal_and_off(o, "dom0_mem=4G"),
        },
        Case {
            name: "no_device_tree",
            // An ELF given to -kernel is entered with x0 = 0: no DTB.
            boot: Boot { hypervisor: images.hypervisor_elf.clone(), ..base(true) },
            check: |o| fatal_and_off(o, "no usable device tree"),
        },
    ]
}

pub fn run_all(images: &Images) -> Result<()> {
    let cases = cases(images);
    let (mut passed, mut failed) = (0, 0);
    for case in &cases {
        let out = case.boot.run()?;
        match (case.check)(&out) {
            Ok(()) => {
                passed += 1;
                println!("test systest::{} ... ok ({:.1} s)", case.name, out.wall.as_secs_f64());
            }
            Err(why) => {
                failed += 1;
                println!("test systest::{} ... FAILED: {why}", case.name);
                println!("---- output ({}):", crate::qemu::shell_line(&case.boot.command()));
                let lines: Vec<&str> = out.output.lines().collect();
                for l in &lines[lines.len().saturating_sub(60)..] {
                    println!("  | {l}");
                }
            }
        }
    }
    println!("system tests: {passed} passed, {failed} failed");
    if failed > 0 {
        Err(format!("{failed} system test(s) failed"))
    } else {
        Ok(())
    }
}

/// Null-hypercall round trip measured by the guest under `-icount shift=0` (1 ns of virtual
/// time per instruction, so the figure is deterministic).
pub fn bench(images: &Images) -> Result<()> {
    let mut b = Boot::new(images.hypervisor.clone());
    b.dom0 = Some(images.test_guest.clone());
    b.dom0_args = "console=hvc0 bench".into();
    b.icount = true;
    b.timeout = Duration::from_secs(300);
    let out = b.run()?;
    let lines: Vec<&str> = out.output.lines().filter(|l| l.starts_with("bench ")).collect();
    if lines.is_empty() || out.timed_out {
        return Err(format!("the guest printed no bench lines (timed out: {})\n{}", out.timed_out, out.output));
    }
    println!("xenith on QEMU virt, -icount shift=0 (1 instruction = 1 ns of guest time):");
    for l in lines {
        println!("  {l}");
    }
    Ok(())
}
