//! Boot plans for real device trees: QEMU virt's (as QEMU dumps it with a guest-loader dom0
//! module) and the Snow's (Debian's exynos5250-snow.dtb), through the same code the binary runs.

extern crate std;

use super::*;
use crate::dt::boot_info::{BootModule, ModuleKind};
use crate::dt::fixtures::{self, QEMU_VIRT_DOM0, QEMU_VIRT_GICV2_DOM0, SNOW};
use crate::iommu::policy::OwnerReason;
use platform::PhysMem;

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
    // A module inside xenith's memory (here its last 2 MiB block, past the image's end).
    let mut inside = info.clone();
    inside.modules[0].region = r(0x40b0_0000, 0x1000);
    let e = plan(&dt, &inside, IMAGE, DTB).err().unwrap();
    assert!(e.contains("overlaps xenith's memory 0x40000000+0xc00000"), "{e}");
    inside.modules[0].region = r(0x40c0_0000, 0x1000);
    assert!(plan(&dt, &inside, IMAGE, DTB).is_ok(), "just past it");
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
    let Board::Exynos5250(b) = &p.board else { panic!("not the Exynos5250: {:?}", p.board) };
    assert_eq!(b.mct, r(0x101c_0000, 0x800));
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

/// QEMU virt's DT with dom0less domUs under /chosen, as U-Boot or QEMU's guest-loader write
/// them: (name, vCPUs, kernel module address). Each kernel module is 8 KiB.
fn with_domus(fixture: &str, domus: &[(&str, u32, u32)]) -> HostDt {
    use crate::dt::fdt::Tree;
    let be = |v: &[u32]| v.iter().flat_map(|x| x.to_be_bytes()).collect::<Vec<u8>>();
    let strs = |v: &[&str]| v.iter().flat_map(|s| s.bytes().chain([0])).collect::<Vec<u8>>();
    let mut t = Tree::parse(&fixtures::load(fixture)).unwrap();
    let root = t.root();
    let chosen = t.node(root).children.iter().copied().find(|&c| t.node(c).name == "chosen").unwrap();
    for &(name, vcpus, kernel) in domus {
        let d = t.add_node(chosen, name);
        t.set_prop(d, "compatible", strs(&["xen,domain"]));
        t.set_prop(d, "#address-cells", be(&[1]));
        t.set_prop(d, "#size-cells", be(&[1]));
        t.set_prop(d, "memory", be(&[0, 4096]));
        t.set_prop(d, "cpus", be(&[vcpus]));
        t.set_prop(d, "vpl011", Vec::new());
        let k = t.add_node(d, &format!("module@{kernel:x}"));
        t.set_prop(k, "compatible", strs(&["multiboot,kernel", "multiboot,module"]));
        t.set_prop(k, "reg", be(&[kernel, 0x2000]));
        t.set_prop(k, "bootargs", strs(&["console=ttyAMA0"]));
    }
    HostDt::parse(&t.to_blob()).unwrap()
}

/// A small arm64 Image (text_offset 512 KiB) of `len` bytes.
fn domu_image(len: usize) -> Vec<u8> {
    let mut b = alloc::vec![0u8; len];
    b[8..16].copy_from_slice(&0x8_0000u64.to_le_bytes());
    b[16..24].copy_from_slice(&(len as u64).to_le_bytes());
    b[24..32].copy_from_slice(&0xau64.to_le_bytes());
    b[0x38..0x3c].copy_from_slice(b"ARM\x64");
    b
}

#[test]
fn dom0less_domus_start_on_the_cpus_dom0_leaves_through_the_arch() {
    use crate::contract::fake::{Call, FakeArch};
    use crate::domain::domu::GUEST_RAM0_BASE;
    use crate::domain::registry::Domains;
    use crate::domain::vcpu::Cpus;
    let (k1, k2, k3, k4) = (0x8000_0000u32, 0x8000_4000u32, 0x8000_8000u32, 0x8000_c000u32);
    let dt = with_domus(QEMU_VIRT_DOM0, &[("domU1", 1, k1), ("domU2", 2, k2), ("domU3", 1, k3), ("domU4", 1, k4)]);
    let info = dt.boot_info().unwrap();
    // A machine with four CPUs (QEMU's -smp 4) whose memory holds the kernel modules, then
    // the pool guests' RAM and tables come from.
    let arch = FakeArch::new(0x8000_0000, 24 << 20);
    arch.frames.lock().unwrap().reserve(0x8000_0000, 1 << 20).unwrap();
    arch.phys.write(u64::from(k1), &domu_image(0x2000)).unwrap();
    arch.phys.write(u64::from(k3), b"not an arm64 Image").unwrap();
    arch.phys.write(u64::from(k4), &domu_image(0x2000)).unwrap();
    let cpus = Cpus::new();
    let mpidrs: Vec<u64> = (0..4).map(|i| info.cpus.first().map_or(0, |c| c.mpidr) + i).collect();
    assert_eq!(cpus.setup_dom0(&mpidrs, 2), 2);
    let domains = Domains::new();
    let started = start_domus(&arch, &dt, &domains, &cpus, 288);
    // domU2 asks for two vCPUs and domU3's kernel is not an Image: both are skipped; domU1
    // and domU4 take CPUs 2 and 3.
    assert_eq!(started, [1, 4]);
    let starts = arch.started();
    assert_eq!(starts.len(), 2);
    for (s, (id, cpu)) in starts.iter().zip([(1, 2), (4, 3)]) {
        assert_eq!((s.domain, s.vcpu, s.cpu, s.mpidr), (id, 0, cpu, mpidrs[cpu]));
        assert_eq!(s.entry, GUEST_RAM0_BASE + 0x8_0000, "the Image's text_offset into the domU's RAM");
        let d = domains.get(id).unwrap();
        assert!(!d.is_hardware && !d.direct_mapped);
        assert_eq!(d.placement.lock().cpu[0], cpu as u32);
        assert!(arch.vgics.get(id).is_some(), "d{id} has its own vGIC");
        let p2m = d.p2m.read();
        let p2m = p2m.as_ref().unwrap();
        assert_eq!((s.vttbr, s.vtcr), (p2m.vttbr(), p2m.vtcr()));
        assert_eq!(s.vttbr >> 48, u64::from(DOM0_VMID + id), "VMID");
        // Its RAM was cleaned before its CPU started (it runs with caches off at first).
        let bank = d.ram().as_slice()[0];
        let at = |c: &Call| arch.calls().iter().position(|x| x == c);
        let clean = at(&Call::Clean { pa: bank.pa, len: bank.size }).expect("RAM cleaned");
        assert!(clean < at(&Call::StartCpu(*s)).unwrap());
    }
    assert!(domains.get(2).is_none() && domains.get(3).is_none());
    // With no spare CPU, nothing starts.
    let cpus = Cpus::new();
    cpus.setup_dom0(&mpidrs[..2], 2);
    let arch = FakeArch::new(0x8000_0000, 24 << 20);
    arch.phys.write(u64::from(k1), &domu_image(0x2000)).unwrap();
    assert!(start_domus(&arch, &dt, &Domains::new(), &cpus, 288).is_empty());
    assert!(arch.started().is_empty());
}

#[test]
fn a_domu_whose_cpu_does_not_start_is_reported_not_started() {
    use crate::contract::fake::FakeArch;
    use crate::domain::registry::Domains;
    use crate::domain::vcpu::Cpus;
    let dt = with_domus(SNOW, &[("domU1", 1, 0x8000_0000)]);
    let arch = FakeArch { broken_cpus: alloc::vec![1], ..FakeArch::new(0x8000_0000, 16 << 20) };
    arch.frames.lock().unwrap().reserve(0x8000_0000, 1 << 20).unwrap();
    arch.phys.write(0x8000_0000, &domu_image(0x2000)).unwrap();
    let cpus = Cpus::new();
    // The Snow's two Cortex-A15s: dom0 on one, the domU's on the other.
    let info = dt.boot_info().unwrap();
    let mpidrs: Vec<u64> = info.cpus.iter().map(|c| c.mpidr).collect();
    assert_eq!(mpidrs.len(), 2);
    cpus.setup_dom0(&mpidrs, 1);
    let domains = Domains::new();
    assert!(start_domus(&arch, &dt, &domains, &cpus, 160).is_empty());
    assert!(arch.started().is_empty());
}

#[test]
fn dom0s_stage2_maps_its_devices_then_its_ram_page_granular_when_the_smmu_shares_it() {
    use crate::mm::testmem::TestMem;
    let (dt, info) = qemu("dom0_mem=32M");
    let mut p = plan(&dt, &info, IMAGE, DTB).unwrap();
    let layout = p.dom0_layout(&info, &image_header()).unwrap();
    let ram = r(layout.ram_base, layout.ram_size);
    for (drivers, page_granular) in [(&[IommuKind::SmmuV3][..], true), (&[][..], false)] {
        let d = p.decide(&dt, &info, drivers, ram, None, 1).unwrap();
        let phys = TestMem::new(0x1_0000_0000, 8 << 20);
        let mut frames = RegionAllocator::new();
        frames.add(0x1_0000_0000, 8 << 20).unwrap();
        let mut tlb = phys.tlb();
        let (p2m, mapped) = build_dom0_stage2(&d, ram, &mut frames, &phys, &mut tlb).unwrap();
        assert_eq!(mapped, d.dom0_devices.len());
        assert_eq!(p2m.is_page_granular(), page_granular);
        // Direct-mapped: RAM and every device region at its own address; the host GIC and
        // the hypervisor's UART are not mapped (they trap).
        for ipa in [ram.base, ram.base + ram.size - 4096] {
            assert_eq!(p2m.lookup_pa(ipa, &phys), Some(ipa));
        }
        assert_eq!(p2m.lookup_pa(ram.base + ram.size, &phys), None);
        for (_, dev) in &d.dom0_devices {
            assert_eq!(p2m.lookup_pa(dev.base, &phys), Some(dev.base));
        }
        assert_eq!(p2m.lookup_pa(0x0800_0000, &phys), None, "GICD");
        assert_eq!(p2m.lookup_pa(0x0900_0000, &phys), None, "hypervisor UART");
    }
    // Out of table frames: an error naming dom0's stage 2, not a panic.
    let d = p.decide(&dt, &info, &[IommuKind::SmmuV3], ram, None, 1).unwrap();
    let phys = TestMem::new(0x1_0000_0000, 1 << 20);
    let mut frames = RegionAllocator::new();
    frames.add(0x1_0000_0000, 64 << 10).unwrap();
    let mut tlb = phys.tlb();
    let e = build_dom0_stage2(&d, ram, &mut frames, &phys, &mut tlb).err().unwrap();
    assert!(e.starts_with("dom0 stage 2"), "{e}");
}

#[test]
fn dom0s_vgic_has_the_spis_its_dt_names() {
    let (dt, info) = qemu("dom0_mem=64M");
    let mut p = plan(&dt, &info, IMAGE, DTB).unwrap();
    let layout = p.dom0_layout(&info, &image_header()).unwrap();
    let d = p.decide(&dt, &info, &[IommuKind::SmmuV3], r(layout.ram_base, layout.ram_size), None, 1).unwrap();
    // GICD_TYPER.ITLinesNumber: QEMU virt's GICv3 has 288 INTIDs (8); dom0's devices reach
    // INTID 79 (the last virtio-mmio transport's SPI 47): blocks 0..=2.
    let highest = HostDt::parse(&d.dom0_dtb).unwrap().highest_gic_intid().unwrap();
    assert_eq!(highest, 79);
    assert_eq!(dom0_vgic_lines(&d.dom0_dtb, 8), 2);
    assert_eq!(dom0_vgic_lines(&d.dom0_dtb, 1), 1, "never more than the host has");
    assert_eq!(dom0_vgic_lines(b"not a DTB", 8), 8, "every host INTID when the DT cannot bound them");
}

#[test]
fn boot_modules_go_back_to_the_pool_unless_still_in_use() {
    let (dt, info) = qemu("dom0_mem=64M");
    let mut p = plan(&dt, &info, IMAGE, DTB).unwrap();
    let module = page_round(info.modules[0].region);
    let free = p.free.total_free();
    assert_eq!(release_boot_modules(&info, &[p.hypervisor, p.host_dtb], &mut p.free), module.size);
    assert_eq!(p.free.total_free(), free + module.size);
    // A module overlapping what is kept (here: claimed to hold the host DTB) stays reserved.
    let mut p = plan(&dt, &info, IMAGE, DTB).unwrap();
    assert_eq!(release_boot_modules(&info, &[module], &mut p.free), 0);
    assert_eq!(p.free.total_free(), free);
}

#[test]
fn dom0_gets_a_vgic_of_the_hosts_gic_version_at_its_addresses() {
    let v3 = load(QEMU_VIRT_DOM0).boot_info().unwrap().gic;
    let Dom0Vgic::V3(cfg) = dom0_vgic(&v3, 8, 2).unwrap() else { panic!("GICv3 host, GICv3 dom0") };
    assert_eq!((cfg.gicd, cfg.gicr), (v3.distributor.base, v3.redistributors[0].base));
    assert_eq!((cfg.gicr_size, cfg.it_lines, cfg.vcpus), (v3.redistributors[0].size, 8, 2));
    assert!(cfg.passthrough_spis, "dom0's devices' interrupts pass through");

    let v2 = load(QEMU_VIRT_GICV2_DOM0).boot_info().unwrap().gic;
    assert_eq!(v2.version, 2);
    assert_eq!(dom0_vgic(&v2, 4, 1).unwrap(), Dom0Vgic::V2 { it_lines: 4, vcpus: 1 });

    let mut no_rdist = v3.clone();
    no_rdist.redistributors.clear();
    assert_eq!(dom0_vgic(&no_rdist, 8, 1).unwrap_err(), "GICv3 without a redistributor region");
}

#[test]
fn the_hypervisor_takes_each_smmu_its_probe_finds_usable_and_dom0_gets_the_rest() {
    use crate::contract::fake::{Call, FakeArch};
    let (dt, info) = qemu("dom0_mem=64M");
    let mut p = plan(&dt, &info, IMAGE, DTB).unwrap();
    let layout = p.dom0_layout(&info, &image_header()).unwrap();
    let ram = r(layout.ram_base, layout.ram_size);
    let smmu = "/smmuv3@9050000";
    // The probe answers: the hypervisor drives it and takes it over for the StreamIDs the PCI
    // bridge's iommu-map names (0..0x10000: 16 bits); dom0's RAM is then mapped with pages.
    let arch = FakeArch::new(0x8000_0000, 1 << 20);
    let d = p.decide_on_hardware(&arch, &dt, &info, ram, None, 1).unwrap();
    assert_eq!(d.ownership.owner_of_iommu(smmu), Some(IommuOwner::Hypervisor));
    assert!(d.page_granular);
    assert_eq!(arch.calls(), [Call::TakeSmmu { path: smmu.into(), sid_bits: Some(16) }]);
    // No stage 2: dom0 keeps it, as on Xen, and nothing is taken over.
    let base = p.topology.iommus[0].regs[0].base;
    let arch = FakeArch { smmus_without_stage2: alloc::vec![base], ..FakeArch::new(0x8000_0000, 1 << 20) };
    let d = p.decide_on_hardware(&arch, &dt, &info, ram, None, 1).unwrap();
    assert_eq!(d.ownership.owner_of_iommu(smmu), Some(IommuOwner::Dom0));
    assert!(!d.page_granular);
    assert!(arch.calls().is_empty());
    // Usable but it cannot be taken over: every SMMU taken is given back and the decision is
    // made again without the driver, so dom0 gets it.
    let arch = FakeArch { smmus_refusing: alloc::vec![smmu.into()], ..FakeArch::new(0x8000_0000, 1 << 20) };
    let d = p.decide_on_hardware(&arch, &dt, &info, ram, None, 1).unwrap();
    assert_eq!(d.ownership.owner_of_iommu(smmu), Some(IommuOwner::Dom0));
    assert!(!d.page_granular);
    assert_eq!(arch.calls(), [Call::ReleaseSmmus]);
    assert!(!iommu_shares_p2m(&d.ownership));
}

#[test]
fn dom0_gets_an_emulated_its_only_when_the_hypervisor_could_take_the_physical_one() {
    use crate::contract::fake::FakeArch;
    let (dt, info) = qemu("dom0_mem=64M");
    let its = ("/intc@8000000/its@8080000".to_string(), 0x0809_0000u64);
    let arch = FakeArch { its: Some(its.clone()), ..FakeArch::new(0x8000_0000, 1 << 20) };
    let mut p = plan(&dt, &info, IMAGE, DTB).unwrap();
    assert!(p.take_its(&arch, &dt, &info, 2));
    assert_eq!(p.emulated_its, Some(its.clone()));
    // The ITS cannot be used: no emulated one, dom0's PCI devices fall back to INTx.
    assert!(!p.take_its(&FakeArch::new(0x8000_0000, 1 << 20), &dt, &info, 2));
    assert_eq!(p.emulated_its, None);
    // its=hide: the hypervisor does not even try.
    let (dt, info) = qemu("its=hide");
    let mut p = plan(&dt, &info, IMAGE, DTB).unwrap();
    assert!(!p.take_its(&arch, &dt, &info, 2));
    assert_eq!(p.emulated_its, None);
}

#[test]
fn dom0s_pci_streams_attach_to_its_stage2_and_a_nested_smmu_gets_an_emulated_one() {
    use crate::contract::fake::{Call, FakeArch};
    let smmu = "/smmuv3@9050000";
    for (cmdline, nested) in [("dom0_mem=64M", false), ("dom0_mem=64M iommu-owner=nested:/smmuv3@9050000", true)] {
        let (dt, info) = qemu(cmdline);
        let mut p = plan(&dt, &info, IMAGE, DTB).unwrap();
        let layout = p.dom0_layout(&info, &image_header()).unwrap();
        let ecam = dt.reg(dt.find_path("/pcie@10000000").unwrap()).unwrap()[0].base;
        // Bus 0: the host bridge (00:00.0) and a device at 00:01.0 (RID 8).
        let arch = FakeArch { pci_functions: alloc::vec![(ecam, 0, 0x0008_1b36), (ecam, 8, 0x1005_1af4)], ..FakeArch::new(0x8000_0000, 1 << 20) };
        let d = p.decide_on_hardware(&arch, &dt, &info, r(layout.ram_base, layout.ram_size), None, 1).unwrap();
        let p2m = (DOM0_VMID, 0x1_0000_0000_1000, 0x8035_3558);
        let streams = attach_dom0_streams(&arch, &dt, &d.ownership, p2m);
        let attached: Vec<_> = arch.calls().into_iter().filter_map(|c| if let Call::AttachStream { path, sid, vmid } = c { Some((path, sid, vmid)) } else { None }).collect();
        assert_eq!(attached, [(smmu.to_string(), 0, DOM0_VMID), (smmu.to_string(), 8, DOM0_VMID)], "{cmdline}");
        assert_eq!(iommu_shares_p2m(&d.ownership), !nested);
        if !nested {
            assert!(streams.is_empty());
            continue;
        }
        assert_eq!(streams, [(smmu.to_string(), alloc::vec![0, 8])]);
        // dom0's emulated SMMU: for those streams, with the SPIs its node names for events
        // and global errors (QEMU virt: eventq SPI 74 -> INTID 106, gerror SPI 77 -> 109).
        let mut dom = dom0_domain(r(layout.ram_base, layout.ram_size), 1, Stage2::new(DOM0_VMID, Stage2Config::DOMAIN, &mut *arch.frames.lock().unwrap(), &arch.phys).unwrap());
        attach_vsmmus(&arch, &dt, &d.ownership, &mut dom, streams, p2m, DOM0_IPA_BITS);
        let vsmmu = arch.calls().into_iter().find(|c| matches!(c, Call::AttachVsmmu { .. })).unwrap();
        let Call::AttachVsmmu { dom: id, path, sids, event, gerror } = vsmmu else { unreachable!() };
        assert_eq!((id, path.as_str(), sids), (0, smmu, alloc::vec![0, 8]));
        assert!(event.is_some() && gerror.is_some() && event != gerror, "{event:?} {gerror:?}");
    }
}

#[test]
fn dom0_is_the_direct_mapped_hardware_domain_with_a_grant_table_its_region_holds() {
    use crate::contract::fake::FakeArch;
    let arch = FakeArch::new(0x8000_0000, 1 << 20);
    let p2m = Stage2::new(DOM0_VMID, Stage2Config::DOMAIN, &mut *arch.frames.lock().unwrap(), &arch.phys).unwrap();
    let vttbr = p2m.vttbr();
    let dom = dom0_domain(r(0x5000_0000, 256 << 20), 2, p2m);
    assert!(dom.id == 0 && dom.is_hardware && dom.direct_mapped);
    assert_eq!(dom.max_vcpus, 2);
    assert_eq!(dom.ram().as_slice(), [RamBank { ipa: 0x5000_0000, pa: 0x5000_0000, size: 256 << 20 }]);
    assert_eq!(dom.p2m.read().as_ref().map(|p| p.vttbr()), Some(vttbr));
    let (frames, _) = crate::domain::grant::limits();
    assert_eq!(dom.grants.lock().max_frames(), frames.min((GNTTAB_SIZE / 4096) as u32));
}

#[test]
fn the_memory_line_accounts_for_every_mib() {
    let (dt, mut info) = qemu("dom0_mem=64M");
    info.reserved.push(crate::dt::boot_info::MemRegion { region: r(0x7000_0000, 0x1800), source: crate::dt::boot_info::ReservedSource::MemReserve });
    let p = plan(&dt, &info, IMAGE, DTB).unwrap();
    let used = MemoryUse { guests: 256 << 20, free: 1500 << 20, static_heap: 4 << 20, heap_used: 300 << 10 };
    // 2048 MiB of RAM: 256 the guests', 1500 free, 8 KiB firmware's; xenith the rest (291 MiB).
    assert_eq!(
        p.memory_line(&info, &used),
        "memory: xenith uses 291 MiB of 2048 MiB (image 12 MiB with a 4 MiB static heap, 8 MiB more heap, 300 KiB of it in use; \
         page tables, SMMU queues and the host DTB the rest); guests 256 MiB, free 1500 MiB"
    );
}

#[test]
fn ram_a_32_bit_hypervisor_cannot_address_is_set_aside() {
    let (dt, mut info) = qemu("dom0_mem=64M");
    let mut p = plan(&dt, &info, IMAGE, DTB).unwrap();
    let free = p.free.total_free();
    assert_eq!(p.set_aside_ram_above(&info, 1 << 32).unwrap(), 0, "QEMU virt's 2 GiB lie below 4 GiB");
    assert_eq!(p.free.total_free(), free);
    // A second bank across and above 4 GiB: its part above goes, what is below stays free.
    info.memory.push(r(0xc000_0000, 2 << 30));
    let mut p = plan(&dt, &info, IMAGE, DTB).unwrap();
    let before = p.free.total_free();
    assert_eq!(p.set_aside_ram_above(&info, 1 << 32).unwrap(), 1 << 30);
    assert_eq!(p.free.total_free(), before - (1 << 30));
}

/// A zImage header (start 0: position independent) of `len` bytes.
fn zimage_header(len: u32) -> [u8; crate::domain::zimage::HEADER_LEN] {
    let mut h = [0u8; crate::domain::zimage::HEADER_LEN];
    h[0x24..0x28].copy_from_slice(&crate::domain::zimage::MAGIC.to_le_bytes());
    h[0x2c..0x30].copy_from_slice(&len.to_le_bytes());
    h
}

/// The boot the arm32 hypervisor makes on the Snow, with the fake arch answering the hardware
/// questions: Debian's DTB read into the plan (memory, GIC-400, arch timer, MCT, UART3, the board's
/// blocks and the RAM log ring), dom0's RAM placed as for its zImage, the SysMMUs probed and the
/// ownership table decided, dom0's DT edited to match, its stage 2 built, the SysMMUs the
/// hypervisor keeps brought up over dom0's memory. Returns the ownership table's text.
fn snow_boot(cmdline: &str, arch: &crate::contract::fake::FakeArch) -> (Plan, Decisions, Region) {
    use crate::contract::fake::Call;
    use platform::exynos5250::logring::{SNOW_RING_BASE, SNOW_RING_SIZE};
    let (dt, info) = snow(cmdline);
    // Memory, GIC-400, arch timer, UART3.
    assert_eq!(info.memory, [r(0x4000_0000, 0x8000_0000)]);
    assert_eq!((info.gic.version, info.gic.distributor, info.gic.cpu_interface), (2, r(0x1048_1000, 0x1000), Some(r(0x1048_2000, 0x2000))));
    assert_eq!((info.gic.hyp_interface, info.gic.vcpu_interface), (Some(r(0x1048_4000, 0x2000)), Some(r(0x1048_6000, 0x2000))));
    let timer = info.timer.as_ref().unwrap();
    assert_eq!((timer.ppis(), timer.clock_frequency), (alloc::vec![29, 30, 27, 26], Some(24_000_000)));
    assert_eq!(info.psci, None);
    let mut p = plan(&dt, &info, r(0x5100_4000, 2 << 20), r(0x5ffe_c000, 0x1_0000)).unwrap();
    assert_eq!(p.console, Console::SamsungUart { path: "/soc/serial@12c30000".into(), base: 0x12c3_0000 });
    let ring = r(SNOW_RING_BASE, SNOW_RING_SIZE);
    assert_eq!(
        p.board,
        Board::Exynos5250(exynos5250::Blocks {
            mct: r(0x101c_0000, 0x800),
            pmu: r(0x1004_0000, 0x5000),
            sysram: r(0x0202_0000, 0x1000),
            boot_addr_offset: 0,
            secure_firmware: false,
            combiner: r(0x1044_0000, 0x1000),
            power_domains: [0x1004_4000, 0x1004_4040, 0x1004_4060, 0x1004_40a0, 0x1004_40c0].map(|b| r(b, 0x20)).to_vec(),
            log_ring: Some(ring),
        })
    );
    assert!(p.reservations.contains(&("RAM log ring", ring)));
    // dom0's RAM, as the arm32 boot places it for its zImage: never over the ring.
    let layout = crate::domain::zimage::plan(&mut p.free, p.cmdline.dom0_mem.and_then(|m| m.target()), 0x4200_0000, &zimage_header(5 << 20), 5 << 20, None).unwrap();
    let ram = r(layout.ram_base, layout.ram_size);
    assert_eq!(ram.size, 1152 << 20);
    assert!(ram.base + ram.size <= ring.base || ram.base >= ring.base + ring.size);
    assert!(p.free.free_ranges().all(|(b, s)| b + s <= ring.base || b >= ring.base + ring.size), "the ring is not in the frame pool");
    let d = p.decide_on_hardware(arch, &dt, &info, ram, None, 2).unwrap();
    let t = &d.ownership;
    std::println!("Snow boot plan ({cmdline}):\n{t}");
    assert_eq!(t.rows.len(), 23);
    assert_eq!(t.to_string().lines().count(), 24, "a heading and one line per SysMMU");
    // dom0's stage 2: its devices, the ring read-only, its RAM.
    let mut built = None;
    arch.with_machine(&mut |m| built = Some(build_dom0_stage2(&d, ram, &mut *m.frames, m.mem, &mut *m.tlb)));
    let (p2m, mapped) = built.unwrap().unwrap();
    assert_eq!(mapped, d.dom0_devices.len() + 1);
    let at_ring = p2m.lookup(ring.base + 0x40, &arch.phys).expect("the ring is mapped for dom0");
    assert_eq!((at_ring.pa, at_ring.attr), (ring.base + 0x40, S2Attr::RAM_RO));
    // The SysMMUs the hypervisor keeps, brought up over dom0's RAM and the ring.
    let up = start_sysmmus(arch, &dt, &d.ownership, &p.board, ram, &[ring]);
    let Some(Call::StartSysmmus { combiner, sysmmus, ram: r0, readonly }) = arch.calls().into_iter().find(|c| matches!(c, Call::StartSysmmus { .. })) else {
        panic!("no SysMMU started")
    };
    assert_eq!((combiner, r0, readonly), (0x1044_0000, ram, alloc::vec![ring]));
    assert_eq!(sysmmus.len(), t.rows.iter().filter(|r| r.owner == IommuOwner::Hypervisor).count());
    // Every one's fault input is kept from dom0, those left blocked too (attached once their
    // power domain comes on).
    assert_eq!(up, sysmmus.iter().filter_map(|s| s.irq).collect::<Vec<_>>());
    assert_eq!(up.len(), sysmmus.len());
    // Every fault input comes from the DT's combiner specifier and every power domain from its
    // `power-domains`, and both match the board's table.
    for s in &sysmmus {
        let known = platform::exynos5250::sysmmu_at(s.base).unwrap_or_else(|| panic!("{} unknown", s.path));
        assert_eq!(s.irq, Some(known.combiner), "{}", s.path);
        assert_eq!(s.power_domain, known.power_domain.map(|d| d.region().base), "{}", s.path);
    }
    // dom0 keeps the PMU but for the power domains' page, whose accesses trap to the filter.
    let pmu = "/soc/system-controller@10040000";
    let pmu_pieces: Vec<Region> = d.dom0_devices.iter().filter(|(p, _)| p == pmu).map(|(_, r)| *r).collect();
    assert_eq!(pmu_pieces, [r(0x1004_0000, 0x4000)]);
    assert!(d.dom0_devices.iter().all(|(_, r)| r.base + r.size <= 0x1004_4000 || r.base >= 0x1004_5000), "the power-domain page is not mapped");
    assert!(p2m.lookup(0x1004_40a0, &arch.phys).is_none());
    assert!(p2m.lookup(0x1004_3ffc, &arch.phys).is_some(), "the rest of the PMU is dom0's");
    (p, d, ram)
}

/// dom0's DT for the Snow, whatever the owners: the MCT and UART3 are the hypervisor's, the ring
/// is reserved memory, the chipid and PWM pages are dom0's.
fn check_snow_dom0_dt(d: &Decisions, ram: Region) -> HostDt {
    use platform::exynos5250::logring::{SNOW_RING_BASE, SNOW_RING_SIZE};
    let dom0 = HostDt::parse(&d.dom0_dtb).unwrap();
    for gone in ["/soc/timer@101c0000", "/soc/serial@12c30000"] {
        assert!(dom0.find_path(gone).is_none(), "{gone} in dom0's DT");
        assert!(!d.dom0_devices.iter().any(|(p, _)| p == gone), "{gone} mapped into dom0");
    }
    for kept in ["/soc/chipid@10000000", "/soc/pwm@12dd0000"] {
        assert!(d.dom0_devices.iter().any(|(p, _)| p == kept), "{kept} not mapped");
    }
    let node = dom0.find_path(&alloc::format!("/reserved-memory/xenith-log@{SNOW_RING_BASE:x}")).expect("the ring in dom0's DT");
    assert!(dom0.is_compatible(node, LOG_RING_COMPATIBLE) && dom0.has_prop(node, "no-map"));
    // dom0 keeps its combiner, but its accesses trap (the hypervisor's inputs are filtered).
    assert!(dom0.find_path("/soc/interrupt-controller@10440000").is_some());
    assert!(!d.dom0_devices.iter().any(|(p, _)| p == "/soc/interrupt-controller@10440000"));
    let bi = dom0.boot_info().unwrap();
    assert_eq!(bi.memory, [ram]);
    assert_eq!(bi.reserved.iter().map(|m| m.region).collect::<Vec<_>>(), [r(SNOW_RING_BASE, SNOW_RING_SIZE)]);
    assert_eq!(bi.cpus.len(), 2);
    dom0
}

#[test]
fn snow_boots_through_the_fake_arch_with_every_sysmmu_the_hypervisors() {
    use crate::contract::fake::FakeArch;
    let arch = FakeArch::new(0x4000_0000, 8 << 20);
    let (_, d, ram) = snow_boot("dom0_mem=1152M dom0_max_vcpus=2", &arch);
    let t = &d.ownership;
    assert!(t.rows.iter().all(|r| r.owner == IommuOwner::Hypervisor));
    assert!(d.page_granular);
    let dom0 = check_snow_dom0_dt(&d, ram);
    for (mmu, master) in [("/soc/sysmmu@14650000", "/soc/mixer@14450000"), ("/soc/sysmmu@14640000", "/soc/fimd@14400000"), ("/soc/sysmmu@10a60000", "/soc/g2d@10850000")] {
        assert!(dom0.find_path(mmu).is_none(), "{mmu} in dom0's DT");
        assert!(!d.dom0_devices.iter().any(|(p, _)| p == mmu), "{mmu} mapped into dom0");
        let m = dom0.find_path(master).unwrap();
        assert!(!dom0.has_prop(m, "iommus"), "{master} still names its SysMMU");
    }
}

#[test]
fn snow_boots_through_the_fake_arch_with_the_mixer_and_fimd_sysmmus_dom0s() {
    use crate::contract::fake::FakeArch;
    let arch = FakeArch::new(0x4000_0000, 8 << 20);
    let (_, d, ram) = snow_boot("dom0_mem=1152M dom0_max_vcpus=2 iommu-owner=dom0:/soc/mixer@14450000,dom0:/soc/fimd@14400000", &arch);
    let t = &d.ownership;
    for m in ["/soc/mixer@14450000", "/soc/fimd@14400000"] {
        assert_eq!(t.owner_of_master(m), Some(IommuOwner::Dom0), "{m}");
    }
    assert_eq!(t.rows.iter().filter(|r| r.owner == IommuOwner::Hypervisor).count(), 21);
    assert!(t.rows.iter().filter(|r| r.owner == IommuOwner::Dom0).all(|r| matches!(r.reason, OwnerReason::CommandLine)));
    let dom0 = check_snow_dom0_dt(&d, ram);
    for mmu in ["/soc/sysmmu@14650000", "/soc/sysmmu@14640000"] {
        assert!(dom0.find_path(mmu).is_some(), "{mmu} not in dom0's DT");
        assert!(d.dom0_devices.iter().any(|(p, _)| p == mmu), "{mmu} not mapped");
    }
    assert!(dom0.has_prop(dom0.find_path("/soc/mixer@14450000").unwrap(), "iommus"));
    assert!(dom0.find_path("/soc/sysmmu@10a60000").is_none());
}

#[test]
fn snow_sysmmus_whose_power_domain_is_off_are_left_blocked() {
    use crate::contract::fake::FakeArch;
    // The GSC power domain off at boot: its four SysMMUs read VERSION 0.
    let off = alloc::vec![0x13e8_0000, 0x13e9_0000, 0x13ea_0000, 0x13eb_0000];
    let arch = FakeArch { sysmmus_off: off, ..FakeArch::new(0x4000_0000, 8 << 20) };
    let (_, d, _) = snow_boot("dom0_mem=1152M", &arch);
    // The others answer: the driver is used, and the hypervisor still owns the GSC's SysMMUs
    // (left blocked: their masters' DMA stalls rather than reaching any memory).
    assert!(d.ownership.hypervisor_drives("/soc/sysmmu@13e80000"));
}

#[test]
fn snow_with_no_sysmmu_answering_gives_dom0_the_masters_sysmmus() {
    use crate::contract::fake::FakeArch;
    let (dt, info) = snow("dom0_mem=1152M");
    let all: Vec<u64> = platform::exynos5250::SYSMMUS.iter().map(|s| s.base).collect();
    let arch = FakeArch { sysmmus_off: all, ..FakeArch::new(0x4000_0000, 8 << 20) };
    let p = plan(&dt, &info, r(0x5100_4000, 2 << 20), r(0x5ffe_c000, 0x1_0000)).unwrap();
    let d = p.decide_on_hardware(&arch, &dt, &info, r(0x6000_0000, 1152 << 20), None, 1).unwrap();
    assert_eq!(d.ownership.owner_of_master("/soc/mixer@14450000"), Some(IommuOwner::Dom0));
    // The hypervisor still keeps (blocked) the SysMMUs no master of dom0's uses, and their
    // fault inputs; the masters' ones and their inputs are dom0's.
    let kept = start_sysmmus(&arch, &dt, &d.ownership, &p.board, r(0x6000_0000, 1152 << 20), &[]);
    for s in platform::exynos5250::SYSMMUS {
        assert_eq!(kept.contains(&s.combiner), s.master.is_none(), "{}", s.name);
    }
}

#[test]
fn an_exynos5250_dt_without_its_mct_is_a_clear_error() {
    use crate::dt::fdt::Tree;
    let mut t = Tree::parse(&fixtures::load(SNOW)).unwrap();
    let dt = load(SNOW);
    let mct = dt.find_path("/soc/timer@101c0000").unwrap();
    t.node_mut(mct).deleted = true;
    let dt = HostDt::parse(&t.to_blob()).unwrap();
    let info = dt.boot_info().unwrap();
    let e = plan(&dt, &info, r(0x5100_4000, 2 << 20), r(0x5ffe_c000, 0x1_0000)).err().expect("refused");
    assert!(e.contains("samsung,exynos4210-mct"), "{e}");
}

#[test]
fn trapped_pages_are_cut_out_of_dom0s_device_regions() {
    let pmu = r(0x1004_0000, 0x5000);
    assert_eq!(without_pages(pmu, &[0x1004_4000]), [r(0x1004_0000, 0x4000)]);
    assert_eq!(without_pages(pmu, &[0x1004_1000, 0x1004_3000, 0x1004_1000]), [r(0x1004_0000, 0x1000), r(0x1004_2000, 0x1000), r(0x1004_4000, 0x1000)]);
    assert_eq!(without_pages(r(0x1004_4000, 0x1000), &[0x1004_4000]), []);
    assert_eq!(without_pages(pmu, &[0x1044_0000]), [pmu], "a page elsewhere leaves it whole");
}
