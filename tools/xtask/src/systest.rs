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

/// dom0's vulnerabilities files against Xen 4.17's on `cpu`; each file's verdict is printed.
fn vulnerabilities(o: &Outcome, cpu: &str) -> std::result::Result<(), String> {
    for l in o.output.lines().filter(|l| l.contains("(xenith) firmware: ") || l.contains("(xenith) spectre: ")) {
        println!("    {}", l.trim());
    }
    for l in crate::vulnerabilities::check(o, cpu)? {
        println!("    vulnerabilities (-cpu {cpu}): {l}");
    }
    Ok(())
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

/// The guest ran to its summary with no failure and QEMU ended by itself.
fn guest_clean(o: &Outcome) -> std::result::Result<(), String> {
    ends_by_itself(o)?;
    match guest_summary(o) {
        Some((p, 0)) if p > 0 => Ok(()),
        other => Err(format!("guest summary {other:?}, wanted `N passed, 0 failed`")),
    }
}

/// QEMU's edu device (with a 64-bit DMA mask: RAM starts at 1 GiB) and the guest's edu checks.
/// QEMU's `edu` PCI device, DMA addresses unmasked (QEMU virt's RAM is above its default mask).
pub fn edu_device() -> Vec<String> {
    vec!["-device".into(), "edu,dma_mask=0xffffffffffffffff".into()]
}

fn edu_boot(mut b: Boot, mode: &str) -> Boot {
    b.extra = edu_device();
    b.dom0_args = format!("console=hvc0 {mode}");
    b
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
        // The same on QEMU virt with a GICv2: the physical GICv2 driver, dom0's vGICv2 (its
        // SGI to itself through GICD_SGIR and the GICV frame at its GICC).
        Case {
            name: "test_guest_as_dom0_gicv2",
            boot: Boot { gic: 2, ..base(true) },
            check: |o| {
                guest_clean(o)?;
                expect(o, "GICv2: distributor 0x8000000")?;
                expect(o, "vGICv2 distributor 0x8000000")?;
                expect(o, "virtual CPU interface 0x8040000 mapped at 0x8010000")?;
                expect(o, "case gic.sgi_to_self: 0x5")?;
                expect(o, "hardware domain powered off")
            },
        },
        Case {
            name: "edu_dma_through_hypervisor_smmu",
            boot: edu_boot(base(true), "edu"),
            check: |o| {
                guest_clean(o)?;
                expect(o, "case edu.dma_round_trip: 4096 bytes back intact")?;
                expect(o, "case edu.dma_read_not_owned: blocked")?;
                expect(o, "case edu.smmu_visible_to_dom0: node absent, IDR0 abort")?;
                expect(o, "/smmuv3@9050000 (SMMUv3)  hypervisor  platform default")?;
                // The blocked transfers are reported, with stream and address.
                expect(o, "F_TRANSLATION")?;
                expect(o, "0x40080000")?;
                expect(o, "0xbff00000")
            },
        },
        Case {
            name: "smmu_stage1_only_falls_back_to_dom0",
            boot: Boot { smmu_stage: "1".into(), ..edu_boot(base(true), "edu=unisolated") },
            check: |o| {
                guest_clean(o)?;
                expect(o, "no stage-2 support")?;
                expect(o, "/smmuv3@9050000 (SMMUv3)  dom0")?;
                expect(o, "case edu.dma_round_trip: 4096 bytes back intact")
            },
        },
        Case {
            name: "smmu_override_to_dom0",
            boot: Boot { cmdline: "iommu-owner=dom0:/pcie@10000000".into(), ..edu_boot(base(true), "edu=unisolated") },
            check: |o| {
                guest_clean(o)?;
                expect(o, "command-line override")?;
                // dom0's DT keeps the SMMU node and its registers are mapped for dom0.
                expect(o, "case edu.smmu_visible_to_dom0: node present, IDR0 0x")?;
                expect(o, "case edu.dma_read_not_owned: device read memory the guest does not own")
            },
        },
        Case {
            // dom0 drives the emulated SMMU itself: its stage 1 over xenith's stage 2.
            name: "edu_dma_through_nested_vsmmu",
            boot: Boot { cmdline: "iommu-owner=nested:/pcie@10000000".into(), ..edu_boot(base(true), "edu-nested") },
            check: |o| {
                guest_clean(o)?;
                expect(o, "/smmuv3@9050000 (SMMUv3)  nested  command-line override")?;
                expect(o, "dom0 gets an emulated SMMUv3")?;
                expect(o, "case edu_nested.dma_round_trip: 4096 bytes back intact through both stages")?;
                expect(o, "translates nested: dom0's stage 1")?;
                expect(o, "case edu_nested.stage1_to_foreign_memory: blocked by stage 2")?;
                // The blocked read is the hypervisor's stage-2 fault, logged with its IPA.
                expect(o, "0x40080000")?;
                expect(o, "case edu_nested.stage1_fault_to_dom0: event")?;
                expect(o, "case edu_nested.bad_command: CMDQ_CONS")?;
                expect(o, "case edu_nested.command_error_acknowledged: queue resumed")?;
                expect(o, "case edu_nested.bad_ste: event")?;
                expect(o, "case edu_nested.features: 0x16805: not direct-mapped")?;
                expect(o, "case edu_nested.dma_layer.select: Ok(IommuDma)")?;
                expect(o, "case edu_nested.dma_layer.round_trip: IOVAs Ok(")?;
                expect(o, "dom0's configuration refused (C_BAD_STE)")
            },
        },
        Case {
            name: "edu_dma_through_dom0_dma_layer",
            // 6 GiB of RAM and a 4 GiB dom0, so dom0 has RAM above a 32-bit DMA mask.
            boot: Boot { mem: "6G".into(), cmdline: "dom0_mem=4G".into(), ..edu_boot(base(true), "edu-dma") },
            check: |o| {
                guest_clean(o)?;
                expect(o, "case dma_layer.select.full_mask: Ok(Direct)")?;
                expect(o, "case dma_layer.direct.round_trip: Ok(")?;
                expect(o, "case dma_layer.select.mask_32: Ok(XenSwiotlb)")?;
                expect(o, "2 bounced, data intact")
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
            name: "malformed_device_tree",
            boot: Boot {
                extra: vec!["-dtb".into(), crate::env::fixtures_dir().join("qemu-virt-aarch64-bad-gic-reg.dtb").display().to_string()],
                ..base(true)
            },
            check: |o| fatal_and_off(o, "property `reg`: 5 cells is not a multiple of"),
        },
        Case {
            name: "no_device_tree",
            // An ELF given to -kernel is entered with x0 = 0: no DTB.
            boot: Boot { hypervisor: images.hypervisor_elf.clone(), ..base(true) },
            check: |o| fatal_and_off(o, "no usable device tree"),
        },
    ]
}

/// Run every system test; the number that passed (an error if any failed).
pub fn run_all(images: &Images) -> Result<u32> {
    run_matching(images, None)
}

/// Run the system tests whose name contains `filter` (all without one); the number that
/// passed (an error if any failed, or if none matched).
pub fn run_matching(images: &Images, filter: Option<&str>) -> Result<u32> {
    let mut cases = cases(images);
    // dom0less domUs that cannot run: reported, and dom0 boots anyway.
    let one_cpu = Boot { smp: 1, ..Boot::new(images.hypervisor.clone()) };
    cases.push(Case {
        name: "domu_without_a_free_cpu",
        boot: crate::conformance::with_domu(Boot { dom0: Some(images.test_guest.clone()), ..one_cpu.clone() }, &images.test_guest, "no-cpu")?,
        check: |o| {
            guest_clean(o)?;
            expect(o, "domU1: no CPU left (dom0 has 1 of 1; xenith runs one vCPU per CPU): not started")
        },
    });
    // sched=credit: the same domU shares dom0's only CPU (time-sliced, WFI trapped).
    cases.push(Case {
        name: "domu_shares_a_cpu_under_credit",
        boot: crate::conformance::with_domu(Boot { dom0: Some(images.test_guest.clone()), cmdline: "sched=credit".into(), ..one_cpu.clone() }, &images.test_guest, "credit-share")?,
        check: |o| {
            guest_clean(o)?;
            expect(o, "scheduler: credit (sched=)")?;
            // The domU ran between dom0's timeslices (it then waits for a dom0 that does not
            // know it, until dom0 powers the machine off).
            expect(o, "DOM1: case domu.grant.offer_to_dom0: 0x1")?;
            expect(o, "vCPU switches (sched=credit): ")
        },
    });
    // The same on a GICv2 host (sched=credit runs there; the domU, whose vGIC is a GICv3,
    // uses no virtual CPU interface, so this does not tell whether a switch carries GICH).
    cases.push(Case {
        name: "domu_shares_a_cpu_under_credit_gicv2",
        boot: crate::conformance::with_domu(Boot { dom0: Some(images.test_guest.clone()), cmdline: "sched=credit".into(), gic: 2, ..one_cpu.clone() }, &images.test_guest, "credit-share-gicv2")?,
        check: |o| {
            guest_clean(o)?;
            expect(o, "GICv2: distributor 0x8000000")?;
            expect(o, "scheduler: credit (sched=)")?;
            expect(o, "DOM1: case domu.grant.offer_to_dom0: 0x1")?;
            expect(o, "vCPU switches (sched=credit): ")
        },
    });
    cases.push(Case {
        name: "domu_kernel_not_an_arm64_image",
        boot: crate::conformance::with_domu(Boot { dom0: Some(images.test_guest.clone()), ..Boot::new(images.hypervisor.clone()) }, &images.test_guest_elf, "bad-kernel")?,
        check: |o| {
            guest_clean(o)?;
            expect(o, "domU1: cannot build d1: its kernel module is not an arm64 Image: not started")
        },
    });
    // Debian's Linux as dom0, to the marker its /init prints (linux.rs; opt-in for now).
    if crate::linux::systest_enabled() {
        // Each Linux boot on cortex-a57 and max also compares dom0's
        // /sys/devices/system/cpu/vulnerabilities/* with Xen 4.17's (vulnerabilities.rs).
        cases.push(Case {
            name: "linux_dom0_userspace",
            boot: crate::linux::systest_boot(images.hypervisor.clone()),
            check: |o| {
                crate::linux::systest_check(o)?;
                vulnerabilities(o, "cortex-a57")
            },
        });
        // The same on a GICv2 host (2 vCPUs: IPIs through the emulated GICD_SGIR, timer PPIs
        // and the virtio-rng's interrupt through the GICH list registers).
        cases.push(Case {
            name: "linux_dom0_gicv2",
            boot: Boot { gic: 2, ..crate::linux::systest_boot(images.hypervisor.clone()) },
            check: |o| {
                crate::linux::systest_check(o)?;
                expect(o, "vGICv2 distributor")?;
                if let Some(lines) = o.trouble() {
                    return Err(format!("trouble in the output:\n{}", lines.join("\n")));
                }
                Ok(())
            },
        });
        // The same under sched=credit beside a dom0less domU that never blocks (the test guest
        // looping on hypercalls): it shares a CPU with one of dom0's vCPUs, so each timeslice
        // switch saves and restores the GICH virtual interface with Linux's state in it. The
        // domU leaves that interface alone, so a switch that kept it in place would pass too.
        cases.push(Case {
            name: "linux_dom0_gicv2_shares_a_cpu_under_credit",
            boot: {
                let mut b = Boot { gic: 2, smp: 1, ..crate::linux::systest_boot(images.hypervisor.clone()) };
                b.cmdline.push_str(" sched=credit");
                b.timeout = Duration::from_secs(240);
                crate::conformance::with_domus(b, &images.test_guest, &["console=ttyAMA0 domu noise-busy"], "linux-gicv2-credit")?
            },
            check: |o| {
                crate::linux::systest_check(o)?;
                expect(o, "vGICv2 distributor")?;
                expect(o, "scheduler: credit (sched=)")?;
                expect(o, "dom0: 2 vCPU(s)")?;
                expect(o, "DOM1: noise: domU looping on xen_version")?;
                let switches = o.output.lines().find_map(|l| l.split("vCPU switches (sched=credit): ").nth(1)).and_then(|n| n.trim().parse::<u64>().ok());
                if switches.is_none_or(|n| n < 10) {
                    return Err(format!("vCPU switches {switches:?}: wanted the domU and dom0 to take turns"));
                }
                if let Some(lines) = o.trouble() {
                    return Err(format!("trouble in the output:\n{}", lines.join("\n")));
                }
                Ok(())
            },
        });
        // The same on QEMU's `max` CPU (SVE, SME, MTE, pointer authentication, ...).
        cases.push(Case {
            name: "linux_dom0_cpu_max",
            boot: Boot { cpu: "max".into(), ..crate::linux::systest_boot(images.hypervisor.clone()) },
            check: |o| {
                crate::linux::cpu_max_check(o)?;
                vulnerabilities(o, "max")
            },
        });
        // The reference: Linux dom0 on Xen 4.17 on both CPUs, in the same run, still reads
        // the vulnerabilities files xenith's two boots above are compared with.
        for (name, cpu, check) in [
            ("xen_4_17_vulnerabilities_cortex_a57", "cortex-a57", (|o| crate::vulnerabilities::check_xen_live(o, "cortex-a57")) as fn(&Outcome) -> std::result::Result<(), String>),
            ("xen_4_17_vulnerabilities_max", "max", |o| crate::vulnerabilities::check_xen_live(o, "max")),
        ] {
            let boot = crate::vulnerabilities::xen_boot(cpu).unwrap_or_else(|e| {
                eprintln!("xtask: {name}: Xen 4.17 fixtures: {e}");
                Boot::new(std::path::PathBuf::from("/nonexistent/xen-4.17-fixtures-unavailable"))
            });
            cases.push(Case { name, boot, check });
        }
        // Every speculation barrier of the exception vectors forced on (spectre_entry=all:
        // firmware WORKAROUND_1 and _3 calls, CLRBHB, the 32-iteration history loop on every
        // exception from a guest): Linux boots as usual, the guest's registers survive them.
        cases.push(Case {
            name: "linux_dom0_spectre_entry_barriers",
            boot: {
                let mut b = crate::linux::systest_boot(images.hypervisor.clone());
                b.cmdline.push_str(" spectre_entry=all");
                b
            },
            check: |o| {
                crate::linux::systest_check(o)?;
                expect(o, "spectre_entry=all: every entry barrier runs")?;
                vulnerabilities(o, "cortex-a57")
            },
        });
        // A hostile dom0 process: 100 000 random hypercalls through /dev/xen/privcmd (~25 s).
        cases.push(Case { name: "linux_dom0_msi_through_emulated_its", boot: crate::linux::msi_systest_boot(images.hypervisor.clone()), check: crate::linux::msi_systest_check });
        // dom0 drives its own IOMMU: an emulated SMMUv3, nested over xenith's stage 2.
        cases.push(Case { name: "linux_dom0_nested_smmu", boot: crate::linux::nested_systest_boot(images.hypervisor.clone()), check: crate::linux::nested_systest_check });
        cases.push(Case { name: "linux_dom0_its_hidden_falls_back_to_intx", boot: crate::linux::its_hidden_systest_boot(images.hypervisor.clone()), check: crate::linux::its_hidden_systest_check });
        cases.push(Case { name: "linux_dom0_privcmd_fuzz", boot: crate::linux::fuzz_systest_boot(images.hypervisor.clone()), check: crate::linux::fuzz_systest_check });
        // Xen's toolstack (Debian's xen-utils-4.17) in Linux dom0: xl info, xl list, xl vcpu-list
        // print the machine and Domain-0; the same script on Xen 4.17 is the reference.
        cases.push(Case { name: "linux_dom0_toolstack_xl", boot: crate::toolstack::systest_boot(images.hypervisor.clone(), "sched=credit"), check: crate::toolstack::systest_check });
        cases.push(Case { name: "linux_dom0_toolstack_xl_on_xen", boot: crate::toolstack::xen_systest_boot(), check: crate::toolstack::xen_systest_check });
        // A dom0less domU (xen,enhanced) that dom0's init-dom0less introduces: `xl list` names
        // it; the same script on Xen 4.17 is the reference.
        cases.push(Case { name: "linux_dom0_toolstack_dom0less", boot: crate::toolstack::dom0less_systest_boot(images.hypervisor.clone(), "sched=credit", &images.test_guest), check: |o| crate::toolstack::check(o, Some("2")).and_then(|()| crate::toolstack::check_dom0less(o)) });
        // The same on a GICv2 host (dom0's 2 vCPUs and the domU share the 2 CPUs under credit).
        cases.push(Case {
            name: "linux_dom0_toolstack_dom0less_gicv2",
            boot: crate::toolstack::dom0less_systest_boot_gicv2(images.hypervisor.clone(), "sched=credit", &images.test_guest),
            check: |o| {
                crate::toolstack::check(o, Some("2")).and_then(|()| crate::toolstack::check_dom0less(o))?;
                expect(o, "vGICv2 distributor")?;
                expect(o, "vCPU switches (sched=credit): ")
            },
        });
        cases.push(Case { name: "linux_dom0_toolstack_dom0less_on_xen", boot: crate::toolstack::xen_dom0less_systest_boot(&images.test_guest), check: |o| crate::toolstack::check(o, None).and_then(|()| crate::toolstack::check_dom0less(o)) });
        // A hostile dom0 process aimed at the toolstack's hypercalls: 100 000 sysctl/domctl calls.
        cases.push(Case { name: "linux_dom0_toolstack_fuzz", boot: crate::linux::toolstack_fuzz_systest_boot(images.hypervisor.clone(), &images.test_guest), check: crate::linux::toolstack_fuzz_systest_check });
        // dom0 panics (panic=1, sysrq c): the hypervisor restarts the machine as Xen does.
        cases.push(Case { name: "linux_dom0_crash_restarts_machine", boot: crate::linux::crash_systest_boot(images.hypervisor.clone()), check: crate::linux::crash_systest_check });
        // dom0's console bytes reach the UART exactly as on Xen 4.17.
        cases.push(Case { name: "linux_dom0_console_bytes", boot: crate::console::boot(images.hypervisor.clone(), ""), check: crate::console::check });
        // bookworm-backports' kernel takes its grant mappings from the extended regions.
        cases.push(Case { name: "linux_dom0_extended_regions", boot: crate::extregions::systest_boot(images.hypervisor.clone()), check: crate::extregions::systest_check });
        // Debian's kernel as a dom0less domU beside Linux dom0: its own vGIC, virtual timer,
        // vpl011 and Xen's guest DT, to a marker on its vpl011 (dom0less.rs).
        cases.push(Case { name: "linux_domu_beside_linux_dom0", boot: crate::dom0less::linux_domu_boot(images.hypervisor.clone()), check: crate::dom0less::linux_domu_check });
        // The same under sched=credit with dom0 on both CPUs: the domU's 2 vCPUs share them.
        cases.push(Case {
            name: "linux_domu_shares_cpus_with_linux_dom0_under_credit",
            boot: crate::dom0less::linux_domu_credit_boot(images.hypervisor.clone()),
            check: |o| {
                crate::dom0less::linux_domu_check(o)?;
                expect(o, "DOM1: domU cpus online: 0-1")?;
                expect(o, "scheduler: credit (sched=)")?;
                expect(o, "dom0: 2 vCPU(s)")?;
                expect(o, "vCPU switches (sched=credit): ")
            },
        });
        // domUs that crash (UNDEF loop, abort loop, shutdown with reason crash): reported,
        // their CPUs stopped, dom0 goes on.
        cases.push(Case { name: "domu_crashes_reported_dom0_goes_on", boot: crate::dom0less::crash_boot(images.hypervisor.clone(), &images.test_guest), check: crate::dom0less::crash_check });
        // The SMP stress suite, short: 4 vCPUs, 30 s of every workload at once (stress.rs).
        cases.push(Case { name: "linux_dom0_stress_short", boot: crate::stress::systest_boot(images.hypervisor.clone()), check: crate::stress::systest_check });
    }
    // ARMv7-A: set/way maintenance trapped (HCR.TSW) and handled, on QEMU's AArch32 `-cpu max`.
    cases.push(Case { name: "arm32_setway_trapped", boot: crate::arm32::setway_systest_boot(), check: crate::arm32::setway_systest_check });
    // ARMv7-A entered in Secure SVC mode, as the Snow's firmware leaves the CPU: xenith makes
    // itself non-secure HYP mode and runs the arm32 test guest as dom0 (arm32.rs).
    cases.push(Case { name: "arm32_secure_svc_entry", boot: crate::arm32::secure_systest_boot(), check: crate::arm32::secure_systest_check });
    // ARMv7-A: Debian's armhf Linux as dom0 of xenith in HYP mode (arm32.rs).
    if crate::linux::systest_enabled() {
        cases.push(Case { name: "linux_dom0_arm32", boot: crate::arm32::linux_systest_boot(), check: crate::arm32::linux_systest_check });
        // The same dom0 through a real U-Boot's bootm of a FIT without loadables: the modules
        // travel in xenith's module bundle, as on the Snow's stock firmware (uboot.rs).
        cases.push(Case { name: "arm32_uboot_bootm_module_bundle", boot: crate::uboot::systest_boot(), check: crate::uboot::systest_check });
        // Without the bundle the modules never arrive: a clear reason, then power off.
        cases.push(Case { name: "arm32_uboot_bootm_without_bundle_says_why", boot: crate::uboot::no_bundle_systest_boot(), check: crate::uboot::no_bundle_systest_check });
        // With the modules also as loadables inside the bundle (the Snow card's FIT layout).
        cases.push(Case { name: "arm32_uboot_bootm_loadables_inside_the_bundle", boot: crate::uboot::loadables_systest_boot(), check: crate::uboot::loadables_systest_check });
        // Both CPUs left in Secure SVC mode by firmware (CPU 1 in a spin-table pen): each
        // switches itself to non-secure HYP mode; Linux dom0 runs on both (arm32.rs).
        cases.push(Case { name: "arm32_secure_svc_secondary", boot: crate::arm32::secure_smp_systest_boot(), check: crate::arm32::secure_smp_systest_check });
    }
    cases.retain(|c| filter.is_none_or(|f| c.name.contains(f)));
    if cases.is_empty() {
        return Err(format!("no system test matches {filter:?}"));
    }
    let (mut passed, mut failed) = (0, 0);
    for case in &cases {
        let out = case.boot.run()?;
        // The whole output, kept for failures whose cause scrolls out of the lines shown.
        let log = crate::env::root().join("target").join("systest-logs").join(format!("{}.log", case.name));
        let _ = std::fs::create_dir_all(log.parent().unwrap_or(&log)).and_then(|()| std::fs::write(&log, &out.output));
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
                println!("---- whole output: {}", log.display());
            }
        }
    }
    println!("system tests: {passed} passed, {failed} failed");
    if failed > 0 {
        Err(format!("{failed} system test(s) failed"))
    } else {
        Ok(passed)
    }
}

/// Run one benchmark boot and return its `bench ...` lines.
fn bench_lines(b: &Boot) -> Result<Vec<String>> {
    let out = b.run()?;
    let lines: Vec<String> = out.output.lines().filter(|l| l.starts_with("bench ")).map(String::from).collect();
    if lines.is_empty() || out.timed_out {
        return Err(format!("the guest printed no bench lines (timed out: {})\n{}", out.timed_out, out.output));
    }
    Ok(lines)
}

/// The number after `key: ` in a bench line.
fn bench_value(lines: &[String], key: &str) -> Option<f64> {
    lines.iter().find_map(|l| l.split(&format!("{key}: ")).nth(1)?.split_whitespace().next()?.parse().ok())
}

/// Benchmarks measured by the guest under `-icount shift=0` (1 ns of virtual time per
/// instruction, so the figures are deterministic): the null-hypercall round trip, and edu DMA
/// with the SMMU translating (hypervisor-owned) against the same transfers with the SMMU
/// handed to dom0 and left in bypass.
pub fn bench(images: &Images) -> Result<()> {
    let mut b = Boot::new(images.hypervisor.clone());
    b.dom0 = Some(images.test_guest.clone());
    b.dom0_args = "console=hvc0 bench".into();
    b.icount = true;
    b.timeout = Duration::from_secs(300);
    let lines = bench_lines(&Boot { extra: edu_device(), ..b.clone() })?;
    println!("xenith on QEMU virt, -icount shift=0 (1 instruction = 1 ns of guest time):");
    for l in &lines {
        println!("  {l}");
    }
    println!("noise: dom0 (1 vCPU) null hypercall, median of short windows under -icount, two dom0less domUs idle vs looping:");
    let (idle, busy) = crate::conformance::noise_run(images.hypervisor.clone(), "", images.test_guest.clone())?;
    crate::conformance::print_noise("xenith", &idle, &busy);
    let translated = bench_lines(&edu_boot(b.clone(), "edu-bench"))?;
    let bypass = bench_lines(&Boot { cmdline: "iommu-owner=dom0:/pcie@10000000".into(), ..edu_boot(b.clone(), "edu-bench") })?;
    let (t, p) = (bench_value(&translated, "edu_dma_4k_ns"), bench_value(&bypass, "edu_dma_4k_ns"));
    println!("  edu 4 KiB DMA, SMMU translating through dom0's stage 2: {} ns per transfer", t.unwrap_or(f64::NAN));
    println!("  edu 4 KiB DMA, SMMU bypassed (handed to dom0, disabled): {} ns per transfer", p.unwrap_or(f64::NAN));
    if let (Some(t), Some(p)) = (t, p) {
        println!("  throughput ratio translating/bypass: {:.3} (target >= 0.9)", p / t);
    }
    blkbench(images)?;
    host_bench_lines()
}

/// Nested/stage-2-alone ratio of dom0's virtio-blk read throughput the bench requires.
pub const BLKBENCH_TARGET: f64 = 0.8;

/// virtio-blk reads in a Linux dom0: its own stage 1 nested over xenith's stage 2 against
/// xenith's stage 2 alone, three 64 MiB uncached reads per boot, in guest time. The verdict
/// compares MiB per second of dom0's busy time (elapsed minus idle: instructions, not host
/// latency); the elapsed rates are printed beside it. Returns whether the target is met.
pub fn blkbench(images: &Images) -> Result<bool> {
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let round = |v: &[f64], scale: f64| v.iter().map(|x| (x * scale).round() / scale).collect::<Vec<_>>();
    let mut medians = Vec::new();
    for nested in [false, true] {
        let out = crate::linux::blkbench_boot(images.hypervisor.clone(), nested)?.run()?;
        let reads = crate::linux::blkbench_reads(&out.output);
        if reads.len() != 3 {
            return Err(format!(
                "virtio-blk bench boot (nested: {nested}): {} of 3 blkbench lines (timed out: {})\n{}",
                reads.len(),
                out.timed_out,
                out.output
            ));
        }
        let rates: Vec<f64> = reads.iter().map(|r| r.rate()).collect();
        let busy: Vec<f64> = reads.iter().map(|r| r.busy_rate()).collect();
        let idle: Vec<f64> = reads.iter().map(|r| r.idle_secs / r.secs).collect();
        println!(
            "  virtio-blk read, Linux dom0, {}: {:?} MiB per busy s (median {:.1}); elapsed {:?} MiB/s, idle share {:?}",
            if nested { "dom0's stage 1 nested over xenith's stage 2 (vSMMU)" } else { "xenith's stage 2 alone" },
            round(&busy, 10.0),
            median(busy.clone()),
            round(&rates, 10.0),
            round(&idle, 1000.0),
        );
        medians.push((median(busy), median(rates)));
    }
    let [(alone_busy, alone), (nested_busy, nested)] = medians[..] else { unreachable!("two boots") };
    let ratio = nested_busy / alone_busy;
    let met = ratio >= BLKBENCH_TARGET;
    println!(
        "  virtio-blk read throughput nested/stage-2-alone: {ratio:.3} per busy second (target >= {BLKBENCH_TARGET}: {}); elapsed {:.3}",
        if met { "met" } else { "NOT met" },
        nested / alone
    );
    Ok(met)
}

/// Figures computed by host tests named `bench_*` (deterministic counts over the real code
/// and the register models), printed as `bench ...` lines.
fn host_bench_lines() -> Result<()> {
    let out = crate::env::output(
        std::process::Command::new("cargo")
            .args(["test", "-q", "-p", "xenith-hypervisor", "--lib", "bench_", "--", "--nocapture", "--test-threads=1"])
            .current_dir(crate::env::root()),
    )?;
    println!("host-side figures (cargo test -p xenith-hypervisor --lib bench_ -- --nocapture):");
    for l in out.lines().filter(|l| l.starts_with("bench ")) {
        println!("  {l}");
    }
    // Criterion benches (wall time on this machine: compare runs on the same machine only).
    for (pkg, bench) in [("xenith-hypervisor", "sysmmu"), ("xenith-dom0-dma", "dma")] {
        println!("criterion: cargo bench -p {pkg} --bench {bench} -- --warm-up-time 1 --measurement-time 2");
        crate::env::run(
            std::process::Command::new("cargo")
                .args(["bench", "-q", "-p", pkg, "--bench", bench, "--", "--warm-up-time", "1", "--measurement-time", "2"])
                .current_dir(crate::env::root()),
        )?;
    }
    Ok(())
}
