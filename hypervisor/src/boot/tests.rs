//! Boot plans for real device trees: QEMU virt's (as QEMU dumps it with a guest-loader dom0
//! module) and the Snow's (Debian's exynos5250-snow.dtb), through the same code the binary runs.

extern crate std;

use super::*;
use crate::dt::boot_info::{BootModule, ModuleKind};
use crate::dt::fixtures::{self, QEMU_VIRT_DOM0, QEMU_VIRT_GICV2_DOM0, SNOW};
use crate::iommu::policy::OwnerReason;

fn load(name: &str) -> HostDt {
    HostDt::parse(&fixtures::load(name)).unwrap()
}

fn r(base: u64, size: u64) -> Region {
    Region { base, size }
}

/// An arm64 Image header (text_offset 0, image_size 16 MiB).
fn image_header() -> [u8; 64] {
    let mut h = [0u8; 64];
    h[16..24].copy_from_slice(&(16u64 << 20).to_le_bytes());
    h[24..32].copy_from_slice(&2u64.to_le_bytes());
    h[0x38..0x3c].copy_from_slice(b"ARM\x64");
    h
}

const IMAGE: Region = Region { base: 0x4008_0000, size: 10 << 20 };
const DTB: Region = Region { base: 0x4800_0000, size: 0x1_0000 };

fn qemu(cmdline: &str) -> (HostDt, BootInfo) {
    let dt = load(QEMU_VIRT_DOM0);
    let mut info = dt.boot_info().unwrap();
    info.hypervisor_cmdline = Some(cmdline.into());
    (dt, info)
}

#[test]
fn qemu_virt_console_memory_and_command_line() {
    let (dt, info) = qemu("dom0_mem=256M dom0_max_vcpus=1-2 spectre_entry=all gnttab_max_frames=32 sched=credit2 gnttab_max_maptrack_frames=8 noreboot");
    let p = plan(&dt, &info, IMAGE, DTB).unwrap();
    assert_eq!(p.console, Console::Pl011 { path: "/pl011@9000000".into(), base: 0x0900_0000 });
    assert_eq!(p.board, Board::Generic);
    assert_eq!(p.dom0_max_vcpus, Some(2));
    assert!(p.spectre_entry_all && p.cmdline.noreboot);
    assert_eq!(p.ignored_options, ["sched=credit2"]);
    assert_eq!(p.hypervisor, r(0x4000_0000, 12 << 20), "whole 2 MiB blocks from the image's");
    let what: Vec<_> = p.reservations.iter().map(|(w, _)| *w).collect();
    assert_eq!(what, ["xenith", "host DTB", "module"]);
    assert_eq!(p.ram_total, 2 << 30);
    assert_eq!(p.extra_heap, 8 << 20);
    assert_eq!(p.free.total_free(), (2 << 30) - (12 << 20) - (64 << 10) - super::page_round(info.modules[0].region).size);
    assert_eq!(p.topology.iommus.len(), 1);
}

#[test]
fn qemu_virt_with_the_smmu_driver_keeps_it_and_maps_dom0_page_granular() {
    let (dt, info) = qemu("dom0_mem=256M");
    let mut p = plan(&dt, &info, IMAGE, DTB).unwrap();
    let layout = p.dom0_layout(&info, &image_header()).unwrap();
    assert_eq!(layout.ram_size, 256 << 20);
    let ram = r(layout.ram_base, layout.ram_size);
    let d = p.decide(&dt, &info, &[IommuKind::SmmuV3], ram, None, 2).unwrap();
    assert!(d.page_granular);
    assert_eq!(d.ownership.owner_of_iommu("/smmuv3@9050000"), Some(IommuOwner::Hypervisor));
    // dom0 sees neither the hypervisor's UART, nor the SMMU it keeps, nor the ITS and fw_cfg
    // (they master memory by physical address), nor the host GIC (it gets a vGIC there).
    for hidden in ["/pl011@9000000", "/smmuv3@9050000", "/intc@8000000", "/intc@8000000/its@8080000", "/fw-cfg@9020000"] {
        assert!(!d.dom0_devices.iter().any(|(p, _)| p == hidden), "{hidden} must not be mapped");
    }
    assert!(d.kept_masters.iter().any(|(p, _)| p == "/intc@8000000/its@8080000"));
    assert!(d.dom0_devices.iter().any(|(p, _)| p == "/pcie@10000000"));
    assert!(d.dom0_devices.iter().all(|(_, r)| r.size % 4096 == 0 && r.base % 4096 == 0));
    let dom0 = HostDt::parse(&d.dom0_dtb).unwrap();
    let bi = dom0.boot_info().unwrap();
    assert_eq!(bi.memory, [ram]);
    assert_eq!(bi.cpus.len(), 2);
    assert!(dom0.find_path("/pl011@9000000").is_none());
    assert!(!d.dom0_dt.extended_regions.is_empty());
    assert_eq!(d.dom0_dt.grant_table, r(0x4000_0000, GNTTAB_SIZE));
}

#[test]
fn qemu_virt_with_an_emulated_its_keeps_its_node_and_maps_only_the_doorbell() {
    let (dt, info) = qemu("dom0_mem=256M");
    let mut p = plan(&dt, &info, IMAGE, DTB).unwrap();
    assert!(p.its_emulation, "the default");
    assert!(p.ignored_options.is_empty());
    let layout = p.dom0_layout(&info, &image_header()).unwrap();
    p.emulated_its = Some(("/intc@8000000/its@8080000".into(), 0x0809_0000));
    let d = p.decide(&dt, &info, &[IommuKind::SmmuV3], r(layout.ram_base, layout.ram_size), None, 2).unwrap();
    assert!(!d.kept_masters.iter().any(|(p, _)| p.contains("its@")));
    assert!(d.kept_masters.iter().any(|(p, _)| p == "/fw-cfg@9020000"));
    // The control frame traps (not mapped); the doorbell page alone is mapped 1:1.
    assert!(!d.dom0_devices.iter().any(|(p, _)| p == "/intc@8000000/its@8080000"));
    let doorbell: Vec<_> = d.dom0_devices.iter().filter(|(p, _)| p.contains("its@")).map(|(_, r)| *r).collect();
    assert_eq!(doorbell, [r(0x0809_0000, 4096)]);
    let dom0 = HostDt::parse(&d.dom0_dtb).unwrap();
    assert_eq!(dom0.find_compatible("arm,gic-v3-its").len(), 1);
    assert!(dom0.has_prop(dom0.find_path("/pcie@10000000").unwrap(), "msi-map"));
    // `its=hide` is the fallback: understood, not ignored.
    let (dt, info) = qemu("its=hide");
    let p = plan(&dt, &info, IMAGE, DTB).unwrap();
    assert!(!p.its_emulation && p.ignored_options.is_empty());
}

#[test]
fn qemu_virt_with_a_gicv2_gives_dom0_its_distributor_and_cpu_interface_only() {
    let dt = load(QEMU_VIRT_GICV2_DOM0);
    let info = dt.boot_info().unwrap();
    let gic = &info.gic;
    assert_eq!(gic.version, 2);
    assert!(gic.compatible.iter().any(|c| c == "arm,cortex-a15-gic"));
    assert_eq!(gic.distributor, r(0x0800_0000, 0x1_0000));
    assert_eq!(gic.cpu_interface, Some(r(0x0801_0000, 0x1_0000)));
    assert_eq!(gic.hyp_interface, Some(r(0x0803_0000, 0x1_0000)));
    assert_eq!(gic.vcpu_interface, Some(r(0x0804_0000, 0x1_0000)));
    let mut p = plan(&dt, &info, IMAGE, DTB).unwrap();
    let layout = p.dom0_layout(&info, &image_header()).unwrap();
    let d = p.decide(&dt, &info, &[IommuKind::SmmuV3], r(layout.ram_base, layout.ram_size), None, 2).unwrap();
    // The GIC's four frames are not mapped (the distributor traps, GICV is mapped at GICC by
    // the arch layer); the GICv2m MSI frame is dom0's, 1:1, as on Xen.
    assert!(!d.dom0_devices.iter().any(|(p, _)| p == "/intc@8000000"));
    let v2m: Vec<_> = d.dom0_devices.iter().filter(|(p, _)| p == "/intc@8000000/v2m@8020000").map(|(_, r)| *r).collect();
    assert_eq!(v2m, [r(0x0802_0000, 0x1000)]);
    let dom0 = HostDt::parse(&d.dom0_dtb).unwrap();
    let g = dom0.boot_info().unwrap().gic;
    assert_eq!((g.version, g.distributor, g.cpu_interface), (2, r(0x0800_0000, 0x1_0000), Some(r(0x0801_0000, 0x1_0000))));
    assert_eq!((g.hyp_interface, g.vcpu_interface, g.maintenance_irq), (None, None, None));
    assert!(dom0.find_path("/intc@8000000/v2m@8020000").is_some());
    // dom0's vGIC: the GICv2m frame allocates SPIs its DT does not name, so every host INTID
    // stays, and the log says why; a DT that does not parse keeps them all too.
    let (lines, why) = dom0_it_lines(&d.dom0_dtb, 8);
    assert_eq!(lines, 8);
    assert!(why.is_some_and(|w| w.contains("GICv2m")));
    let (lines, why) = dom0_it_lines(b"not a device tree", 5);
    assert_eq!(lines, 5);
    assert!(why.is_some());
}

#[test]
fn qemu_virt_without_a_driver_gives_dom0_the_smmu_as_xen_does() {
    let (dt, info) = qemu("");
    let mut p = plan(&dt, &info, IMAGE, DTB).unwrap();
    let layout = p.dom0_layout(&info, &image_header()).unwrap();
    let d = p.decide(&dt, &info, &[], r(layout.ram_base, layout.ram_size), None, 1).unwrap();
    assert!(!d.page_granular);
    assert_eq!(d.ownership.owner_of_iommu("/smmuv3@9050000"), Some(IommuOwner::Dom0));
    assert!(d.dom0_devices.iter().any(|(p, _)| p == "/smmuv3@9050000"));
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let (dt, info) = qemu("dom0_mem=");
    assert!(plan(&dt, &info, IMAGE, DTB).err().unwrap().starts_with("command line: "));
    let (dt, info) = qemu("dom0_mem=64G");
    let mut p = plan(&dt, &info, IMAGE, DTB).unwrap();
    assert!(p.dom0_layout(&info, &image_header()).is_err());
    let (dt, info) = qemu("");
    let mut p = plan(&dt, &info, IMAGE, DTB).unwrap();
    assert!(p.dom0_layout(&info, &[0u8; 64]).unwrap_err().contains("arm64"), "not an Image");
    let mut none = info.clone();
    none.modules.clear();
    assert!(p.dom0_layout(&none, &image_header()).is_err());
}

#[test]
fn dom0_vcpus_are_bounded_by_host_cpus_and_the_maximum() {
    assert_eq!(dom0_vcpus(None, 4, 4), 1);
    assert_eq!(dom0_vcpus(Some(2), 4, 4), 2);
    assert_eq!(dom0_vcpus(Some(8), 2, 4), 2);
    assert_eq!(dom0_vcpus(Some(8), 8, 4), 4);
    assert_eq!(dom0_vcpus(Some(0), 2, 4), 1);
}

/// The Snow as its firmware (or a chained U-Boot) would hand it over: Debian's DTB, dom0's
/// kernel at 0x42000000, and the command line from the 2023 Xen-on-Snow setup.
fn snow(cmdline: &str) -> (HostDt, BootInfo) {
    let dt = load(SNOW);
    let mut info = dt.boot_info().unwrap();
    info.modules.push(BootModule {
        path: "/chosen/dom0".into(),
        kind: ModuleKind::Kernel,
        region: r(0x4200_0000, 5 << 20),
        bootargs: Some("console=tty1 root=/dev/mmcblk1p4 rw rootwait clk_ignore_unused".into()),
        for_domu: false,
    });
    info.hypervisor_cmdline = Some(cmdline.into());
    (dt, info)
}

#[test]
fn snow_plan_reads_the_board_from_debians_dtb() {
    let (dt, info) = snow("dom0_mem=1152M dom0_max_vcpus=2");
    assert_eq!(info.memory, [r(0x4000_0000, 0x8000_0000)]);
    assert_eq!(info.gic.version, 2, "GIC-400");
    assert_eq!(info.gic.distributor, r(0x1048_1000, 0x1000));
    assert_eq!(info.gic.cpu_interface, Some(r(0x1048_2000, 0x2000)));
    assert_eq!(info.gic.hyp_interface, Some(r(0x1048_4000, 0x2000)));
    assert_eq!(info.timer.as_ref().unwrap().ppis(), [29, 30, 27, 26], "PPIs 13, 14, 11, 10");
    assert_eq!(info.psci, None, "no PSCI: secondaries start through SYSRAM");
    assert_eq!(info.cpus.len(), 2);
    let p = plan(&dt, &info, r(0x5100_4000, 2 << 20), r(0x5ffe_c000, 0x1_0000)).unwrap();
    assert_eq!(p.console, Console::SamsungUart { path: "/soc/serial@12c30000".into(), base: 0x12c3_0000 });
    assert_eq!(p.board, Board::Exynos5250 { mct: Some(r(0x101c_0000, 0x800)) });
    assert_eq!(p.dom0_max_vcpus, Some(2));
    assert_eq!(p.topology.iommus.len(), 23);
    assert_eq!(p.extra_heap, 8 << 20);
}

#[test]
fn snow_ownership_table_and_dom0_dt() {
    let (dt, info) = snow("dom0_mem=1152M iommu-owner=dom0:/soc/mixer@14450000,dom0:/soc/fimd@14400000");
    let p = plan(&dt, &info, r(0x5100_4000, 2 << 20), r(0x5ffe_c000, 0x1_0000)).unwrap();
    let ram = r(0x6000_0000, 1152 << 20);
    let d = p.decide(&dt, &info, &[IommuKind::ExynosSysmmu], ram, None, 2).unwrap();
    let t = &d.ownership;
    std::println!("Snow boot plan, SysMMU driver present, mixer and FIMD given to dom0:\n{t}");
    assert_eq!(t.rows.len(), 23);
    assert_eq!(t.to_string().lines().count(), 24, "a heading and one line per SysMMU");
    for m in ["/soc/mixer@14450000", "/soc/fimd@14400000"] {
        assert_eq!(t.owner_of_master(m), Some(IommuOwner::Dom0), "{m}");
    }
    assert_eq!(t.owner_of_master("/soc/g2d@10850000"), Some(IommuOwner::Hypervisor));
    assert_eq!(t.rows.iter().filter(|r| r.owner == IommuOwner::Hypervisor).count(), 21);
    assert!(t.rows.iter().filter(|r| r.owner == IommuOwner::Dom0).all(|r| matches!(r.reason, OwnerReason::CommandLine)));
    assert!(d.page_granular);
    let dom0 = HostDt::parse(&d.dom0_dtb).unwrap();
    // The MCT drives the arch timer's counter and UART3 is the hypervisor's console.
    for gone in ["/soc/timer@101c0000", "/soc/serial@12c30000"] {
        assert!(dom0.find_path(gone).is_none(), "{gone} in dom0's DT");
        assert!(!d.dom0_devices.iter().any(|(p, _)| p == gone), "{gone} mapped into dom0");
    }
    // SysMMUs dom0 gets stay in its DT and are mapped; those the hypervisor keeps are neither.
    let mixer_mmu = "/soc/sysmmu@14650000";
    assert!(dom0.find_path(mixer_mmu).is_some());
    assert!(d.dom0_devices.iter().any(|(p, _)| p == mixer_mmu));
    let g2d_mmu = "/soc/sysmmu@10a60000";
    assert!(dom0.find_path(g2d_mmu).is_none());
    assert!(!d.dom0_devices.iter().any(|(p, _)| p == g2d_mmu));
    // The chipid and PWM timer pages stay dom0's (Xen maps them for dom0 too).
    for kept in ["/soc/chipid@10000000", "/soc/pwm@12dd0000"] {
        assert!(d.dom0_devices.iter().any(|(p, _)| p == kept), "{kept} not mapped");
    }
    let bi = dom0.boot_info().unwrap();
    assert_eq!(bi.memory, [ram]);
    assert_eq!(bi.cpus.len(), 2);
    assert!(d.dom0_dt.extended_regions.is_empty(), "a 32-bit dom0 gets none, as on Xen 4.17");
}
