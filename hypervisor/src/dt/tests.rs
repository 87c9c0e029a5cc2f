//! Tests of the DT reader, boot info, command line and dom0 builder against real device trees
//! (QEMU virt's, dumped by QEMU 10; the Chromebook Snow's, from Debian's armhf kernel package).

extern crate std;

use alloc::borrow::ToOwned;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use std::println;

use super::cmdline::{parse_size, HypervisorCmdline};
use super::dom0::{build_dom0_dt, extended_regions, msi_device_ids, physical_masters, physical_masters_except, Dom0DtSpec, PhysicalMasters, EXT_REGION_MIN};
use super::fixtures::{self, QEMU_VIRT, QEMU_VIRT_DOM0, SNOW};
use super::*;
use crate::iommu::policy::{DmaTopology, IommuKind, IommuOwner, OwnerOverride, OwnershipTable, PlatformDefaults};

fn load(name: &str) -> HostDt {
    HostDt::parse(&fixtures::load(name)).unwrap()
}

fn r(base: u64, size: u64) -> Region {
    Region { base, size }
}

/// Re-serializes `dt` after `edit` changed its tree, and parses the result.
fn edited(dt: &HostDt, edit: impl FnOnce(&HostDt, &mut Tree)) -> HostDt {
    let mut t = dt.tree().clone();
    edit(dt, &mut t);
    HostDt::parse(&t.to_blob()).unwrap()
}

/// Test-only: decompiles a blob with `dtc` when it is installed and checks dtc accepts it.
fn dtc_accepts(blob: &[u8]) {
    use std::process::{Command, Stdio};
    // One file per call: tests run on several threads of one process.
    static CALLS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
    let n = CALLS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(std::format!("xenith-dom0-{}-{n}.dtb", std::process::id()));
    std::fs::write(&path, blob).unwrap();
    let out = Command::new("dtc")
        .args(["-I", "dtb", "-O", "dts", "-o", "/dev/null"])
        .arg(&path)
        .stderr(Stdio::piped())
        .output();
    let _ = std::fs::remove_file(&path);
    match out {
        Ok(o) => assert!(
            o.status.success(),
            "dtc rejects dom0's DT: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(_) => println!("dtc not installed: skipping the dtc check"),
    }
}

// ---------------------------------------------------------------- reader

#[test]
fn round_trip_preserves_every_node_and_property() {
    for f in [QEMU_VIRT, QEMU_VIRT_DOM0, SNOW] {
        let a = load(f);
        let b = HostDt::parse(&a.tree().to_blob()).unwrap();
        assert_eq!(a.tree().nodes.len(), b.tree().nodes.len(), "{f}");
        for (x, y) in a.tree().nodes.iter().zip(&b.tree().nodes) {
            assert_eq!(
                (&x.name, &x.props, &x.children),
                (&y.name, &y.props, &y.children),
                "{f}"
            );
        }
    }
}

#[test]
fn rejects_truncated_bad_magic_and_oversized_blobs() {
    let blob = fixtures::load(SNOW);
    assert_eq!(
        HostDt::parse(&blob[..20]).unwrap_err(),
        DtError::Truncated {
            len: 20,
            needed: 40
        }
    );
    let e = HostDt::parse(&blob[..blob.len() - 100]).unwrap_err();
    assert_eq!(
        e,
        DtError::TotalSizeBeyondBlob {
            totalsize: blob.len() as u32,
            blob_len: blob.len() - 100
        }
    );
    assert!(e.to_string().contains("beyond"), "{e}");

    assert_eq!(HostDt::totalsize_of(&blob[..40]), Ok(blob.len()));
    assert_eq!(
        HostDt::totalsize_of(&blob[..8]),
        Err(DtError::Truncated { len: 8, needed: 40 })
    );

    let mut bad = blob.clone();
    bad[0] = 0xde;
    let e = HostDt::parse(&bad).unwrap_err();
    assert_eq!(e, DtError::BadMagic(0xde0d_feed));
    assert_eq!(
        e.to_string(),
        "not a device tree: magic is 0xde0dfeed, expected 0xd00dfeed"
    );

    let mut bad = blob.clone();
    bad[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        HostDt::parse(&bad),
        Err(DtError::TotalSizeBeyondBlob { .. })
    ));

    let mut bad = blob.clone();
    bad[20..24].copy_from_slice(&15u32.to_be_bytes()); // version
    assert!(matches!(
        HostDt::parse(&bad),
        Err(DtError::UnsupportedVersion { version: 15, .. })
    ));

    let mut bad = blob.clone();
    bad[32..36].copy_from_slice(&0x10_0000u32.to_be_bytes()); // size_dt_strings
    assert!(matches!(
        HostDt::parse(&bad),
        Err(DtError::BlockOutOfBounds {
            block: "strings",
            ..
        })
    ));

    // A token that is not one: overwrite the root's FDT_BEGIN_NODE.
    let mut bad = blob.clone();
    let off = u32::from_be_bytes([bad[8], bad[9], bad[10], bad[11]]) as usize;
    bad[off..off + 4].copy_from_slice(&7u32.to_be_bytes());
    let e = HostDt::parse(&bad).unwrap_err();
    assert_eq!(
        e,
        DtError::BadStructure {
            offset: off,
            reason: "unknown token"
        }
    );
}

#[test]
fn paths_aliases_phandles_and_compatibles() {
    let snow = load(SNOW);
    let uart = snow.find_path("serial3").unwrap();
    assert_eq!(snow.path(uart), "/soc/serial@12c30000");
    assert_eq!(snow.find_path("/soc/serial@12c30000"), Some(uart));
    assert_eq!(snow.reg(uart).unwrap(), vec![r(0x12c3_0000, 0x100)]);
    assert_eq!(snow.interrupts(uart).unwrap()[0].gic_intid(), Some(32 + 54));
    let gic = snow.gic_node().unwrap();
    assert_eq!(snow.find_phandle(1), Some(gic));
    assert_eq!(snow.find_compatible("samsung,exynos-sysmmu").len(), 23);
    assert_eq!(
        snow.prop_strings(gic, "compatible").unwrap().unwrap(),
        ["arm,gic-400", "arm,cortex-a15-gic"]
    );
    assert!(snow.find_path("/soc/nonexistent").is_none());
    assert!(snow.find_path("nosuchalias").is_none());
    // A property with the wrong length names the node and property.
    let e = snow.prop_u32(gic, "reg").unwrap_err();
    assert_eq!(e.to_string(), "device tree node /soc/interrupt-controller@10481000: property `reg`: length 32 is not one cell");
}

// ---------------------------------------------------------------- boot info

fn check_qemu_common(bi: &BootInfo) {
    assert_eq!(bi.memory, vec![r(0x4000_0000, 0x8000_0000)]);
    let uart = bi.stdout.as_ref().unwrap();
    assert_eq!(uart.path, "/pl011@9000000");
    assert_eq!(uart.compatible, ["arm,pl011", "arm,primecell"]);
    assert_eq!(uart.mmio, Some(r(0x0900_0000, 0x1000)));
    assert_eq!(uart.interrupt.as_ref().unwrap().gic_intid(), Some(33));
    assert_eq!(bi.psci, Some(PsciMethod::Smc));
    assert_eq!(bi.gic.version, 3);
    assert_eq!(bi.gic.compatible, ["arm,gic-v3"]);
    assert_eq!(bi.gic.distributor, r(0x0800_0000, 0x1_0000));
    assert_eq!(bi.gic.redistributors, vec![r(0x080a_0000, 0xf6_0000)]);
    assert_eq!(
        bi.gic.maintenance_irq.as_ref().unwrap().gic_intid(),
        Some(25)
    );
    assert_eq!(bi.timer.as_ref().unwrap().ppis(), [29, 30, 27, 26]);
    assert_eq!(bi.cpus.iter().map(|c| c.mpidr).collect::<Vec<_>>(), [0, 1]);
    assert!(bi.warnings.is_empty(), "{:?}", bi.warnings);
}

#[test]
fn qemu_virt_boot_info() {
    let bi = load(QEMU_VIRT).boot_info().unwrap();
    check_qemu_common(&bi);
    assert!(bi.modules.is_empty());
    assert_eq!(bi.hypervisor_cmdline, None);
    assert_eq!(bi.dom0_cmdline(), None);
}

#[test]
fn qemu_virt_guest_loader_module_is_dom0_kernel() {
    let bi = load(QEMU_VIRT_DOM0).boot_info().unwrap();
    check_qemu_common(&bi);
    assert_eq!(bi.modules.len(), 1);
    let k = bi.kernel().unwrap();
    assert_eq!(k.path, "/chosen/module@0x49000000");
    assert_eq!(k.kind, ModuleKind::Kernel);
    // The size is the file given to guest-loader (xtask uses a 4 KiB dummy); only its presence matters.
    assert_eq!(k.region.base, 0x4900_0000);
    assert!(k.region.size > 0);
    assert_eq!(k.bootargs.as_deref(), Some("console=hvc0"));
    assert!(bi.ramdisk().is_none());
    assert_eq!(bi.dom0_cmdline(), Some("console=hvc0"));
}

#[test]
fn modules_without_specific_kind_are_kernel_then_ramdisk_and_cmdlines_follow_xen() {
    let dt = edited(&load(QEMU_VIRT), |dt, t| {
        let chosen = dt.find_path("/chosen").unwrap();
        t.set_prop(chosen, "#address-cells", 1u32.to_be_bytes().to_vec());
        t.set_prop(chosen, "#size-cells", 1u32.to_be_bytes().to_vec());
        t.set_prop(
            chosen,
            "bootargs",
            b"dom0_mem=512M iommu-owner=dom0:/pcie@10000000\0".to_vec(),
        );
        t.set_prop(
            chosen,
            "xen,dom0-bootargs",
            b"console=hvc0 root=/dev/vda\0".to_vec(),
        );
        for (name, compat, base) in [
            (
                "module@48000000",
                &b"xen,linux-zimage\0xen,multiboot-module\0"[..],
                0x4800_0000u32,
            ),
            ("module@4a000000", &b"multiboot,module\0"[..], 0x4a00_0000),
            ("module@4b000000", &b"multiboot,module\0"[..], 0x4b00_0000),
        ] {
            let m = t.add_node(chosen, name);
            t.set_prop(m, "compatible", compat.to_vec());
            t.set_prop(
                m,
                "reg",
                [base.to_be_bytes(), 0x1000u32.to_be_bytes()].concat(),
            );
        }
    });
    let bi = dt.boot_info().unwrap();
    let kinds: Vec<_> = bi.modules.iter().map(|m| (m.region.base, m.kind)).collect();
    // The zImage-compatible node is the kernel; the first unknown is then "the kernel" too (Xen's guess
    // counter does not look at what was found), the second the ramdisk.
    assert_eq!(
        kinds,
        [
            (0x4800_0000, ModuleKind::Kernel),
            (0x4a00_0000, ModuleKind::Kernel),
            (0x4b00_0000, ModuleKind::Ramdisk)
        ]
    );
    assert_eq!(bi.kernel().unwrap().region.base, 0x4800_0000);
    // xen,dom0-bootargs present: /chosen/bootargs is the hypervisor's.
    assert_eq!(
        bi.hypervisor_cmdline.as_deref(),
        Some("dom0_mem=512M iommu-owner=dom0:/pcie@10000000")
    );
    assert_eq!(bi.dom0_cmdline(), Some("console=hvc0 root=/dev/vda"));
}

#[test]
fn xen_bootargs_and_initrd_properties() {
    let dt = edited(&load(QEMU_VIRT_DOM0), |dt, t| {
        let chosen = dt.find_path("/chosen").unwrap();
        t.set_prop(
            chosen,
            "xen,xen-bootargs",
            b"console=dtuart dom0_mem=1G\0".to_vec(),
        );
        t.set_prop(
            chosen,
            "linux,initrd-start",
            0x4c00_0000u64.to_be_bytes().to_vec(),
        );
        t.set_prop(
            chosen,
            "linux,initrd-end",
            0x4c20_0000u32.to_be_bytes().to_vec(),
        );
        let rm = t.add_node(dt.root(), "reserved-memory");
        t.set_prop(rm, "#address-cells", 2u32.to_be_bytes().to_vec());
        t.set_prop(rm, "#size-cells", 2u32.to_be_bytes().to_vec());
        t.set_prop(rm, "ranges", Vec::new());
        let fw = t.add_node(rm, "fw@7e000000");
        t.set_prop(
            fw,
            "reg",
            [0u32, 0x7e00_0000, 0, 0x20_0000]
                .iter()
                .flat_map(|c| c.to_be_bytes())
                .collect(),
        );
        t.mem_reserve.push((0x4000_0000, 0x1000));
    });
    let bi = dt.boot_info().unwrap();
    assert_eq!(
        bi.hypervisor_cmdline.as_deref(),
        Some("console=dtuart dom0_mem=1G")
    );
    assert_eq!(bi.ramdisk().unwrap().region, r(0x4c00_0000, 0x20_0000));
    assert_eq!(bi.reserved.len(), 2);
    assert_eq!(bi.reserved[0].region, r(0x4000_0000, 0x1000));
    assert_eq!(bi.reserved[1].region, r(0x7e00_0000, 0x20_0000));
    assert_eq!(
        bi.reserved[1].source,
        boot_info::ReservedSource::Node("/reserved-memory/fw@7e000000".to_owned())
    );
}

#[test]
fn module_without_reg_is_an_error_naming_it() {
    let dt = edited(&load(QEMU_VIRT_DOM0), |dt, t| {
        let m = dt.find_path("/chosen/module@0x49000000").unwrap();
        t.remove_prop(m, "reg");
    });
    let e = dt.boot_info().unwrap_err();
    assert_eq!(
        e.to_string(),
        "device tree node /chosen/module@0x49000000: no `reg` property"
    );
}

#[test]
fn snow_boot_info() {
    let bi = load(SNOW).boot_info().unwrap();
    assert_eq!(bi.memory, vec![r(0x4000_0000, 0x8000_0000)]);
    assert!(bi.reserved.is_empty());
    assert!(bi.modules.is_empty());
    let uart = bi.stdout.as_ref().unwrap();
    assert_eq!(uart.path, "/soc/serial@12c30000");
    assert_eq!(uart.mmio, Some(r(0x12c3_0000, 0x100)));
    assert_eq!(uart.options.as_deref(), Some("115200n8"));
    assert_eq!(uart.interrupt.as_ref().unwrap().gic_intid(), Some(86));
    assert_eq!(bi.psci, None);
    assert_eq!(bi.gic.version, 2);
    assert_eq!(bi.gic.distributor, r(0x1048_1000, 0x1000));
    assert_eq!(bi.gic.cpu_interface, Some(r(0x1048_2000, 0x2000)));
    assert_eq!(bi.gic.hyp_interface, Some(r(0x1048_4000, 0x2000)));
    assert_eq!(bi.gic.vcpu_interface, Some(r(0x1048_6000, 0x2000)));
    assert_eq!(
        bi.gic.maintenance_irq.as_ref().unwrap().gic_intid(),
        Some(25)
    );
    let timer = bi.timer.as_ref().unwrap();
    assert_eq!(timer.ppis(), [29, 30, 27, 26]);
    assert_eq!(timer.clock_frequency, Some(24_000_000));
    assert_eq!(bi.cpus.iter().map(|c| c.mpidr).collect::<Vec<_>>(), [0, 1]);
    // "console=tty1" with no dom0-specific arguments anywhere is dom0's, as on Xen.
    assert_eq!(bi.hypervisor_cmdline, None);
    assert_eq!(bi.dom0_cmdline(), Some("console=tty1"));
}

#[test]
fn device_regions_cover_devices_and_pci_windows() {
    let dt = load(QEMU_VIRT);
    let regs = dt.device_regions();
    let has = |p: &str, reg: Region, k: RegionKind| {
        regs.iter()
            .any(|d| d.path == p && d.region == reg && d.kind == k)
    };
    assert!(has(
        "/pl011@9000000",
        r(0x0900_0000, 0x1000),
        RegionKind::Reg
    ));
    assert!(has(
        "/smmuv3@9050000",
        r(0x0905_0000, 0x2_0000),
        RegionKind::Reg
    ));
    assert!(
        has(
            "/pcie@10000000",
            r(0x40_1000_0000, 0x1000_0000),
            RegionKind::Reg
        ),
        "ECAM"
    );
    assert!(
        has(
            "/pcie@10000000",
            r(0x3eff_0000, 0x1_0000),
            RegionKind::PciWindow
        ),
        "I/O window"
    );
    assert!(
        has(
            "/pcie@10000000",
            r(0x1000_0000, 0x2eff_0000),
            RegionKind::PciWindow
        ),
        "32-bit MMIO window"
    );
    assert!(
        has(
            "/pcie@10000000",
            r(0x80_0000_0000, 0x80_0000_0000),
            RegionKind::PciWindow
        ),
        "64-bit MMIO window"
    );
    assert!(has(
        "/intc@8000000/its@8080000",
        r(0x0808_0000, 0x2_0000),
        RegionKind::Reg
    ));
    assert!(!regs
        .iter()
        .any(|d| d.path.starts_with("/memory") || d.path.starts_with("/cpus")));

    let snow = load(SNOW);
    let regs = snow.device_regions();
    assert!(regs
        .iter()
        .any(|d| d.path == "/soc/mixer@14450000" && d.region == r(0x1445_0000, 0x1_0000)));
    // I2C children have no CPU address: not listed. Disabled nodes neither.
    assert!(!regs
        .iter()
        .any(|d| d.path.contains("i2c@") && d.path.matches('/').count() > 2));
    for d in &regs {
        let n = snow.find_path(&d.path).unwrap();
        assert!(snow.is_available(n), "{} is disabled", d.path);
    }
}

// ---------------------------------------------------------------- command line

#[test]
fn cmdline_options() {
    let c = HypervisorCmdline::parse(
        "dom0_mem=512M console=dtuart dtuart=serial0 loglvl=all iommu-owner=dom0:/soc/mixer@14450000,hypervisor:/soc/fimd@14400000 bootscrub=0",
    )
    .unwrap();
    assert_eq!(c.dom0_mem.unwrap().target(), Some(512 << 20));
    assert_eq!(c.console.as_deref(), Some("dtuart"));
    assert_eq!(c.dtuart.as_deref(), Some("serial0"));
    assert_eq!(c.iommu_owner.len(), 2);
    assert_eq!(c.iommu_owner[0].path, "/soc/mixer@14450000");
    assert_eq!(c.iommu_owner[0].owner, IommuOwner::Dom0);
    assert_eq!(c.iommu_owner[1].owner, IommuOwner::Hypervisor);
    assert_eq!(c.unknown, ["loglvl=all", "bootscrub=0"]);
    assert!(!c.noreboot);
    assert!(HypervisorCmdline::parse("noreboot").unwrap().noreboot);
    assert!(HypervisorCmdline::parse("noreboot=on").unwrap().noreboot);
    assert!(!HypervisorCmdline::parse("noreboot no-noreboot").unwrap().noreboot);
    assert!(!HypervisorCmdline::parse("noreboot=0").unwrap().noreboot);
    assert!(HypervisorCmdline::parse("noreboot=maybe").is_err());

    assert_eq!(parse_size("1G"), Some(1 << 30));
    assert_eq!(parse_size("64k"), Some(64 << 10));
    assert_eq!(parse_size("0x10M"), Some(16 << 20));
    assert_eq!(
        parse_size("0x100000B"),
        Some(0x100000b << 10),
        "B is a hex digit after 0x, as with Xen's strtoull"
    );
    assert_eq!(
        parse_size("1024"),
        Some(1 << 20),
        "no suffix is KiB, as on Xen"
    );
    let m = HypervisorCmdline::parse("dom0_mem=1G,max:768M")
        .unwrap()
        .dom0_mem
        .unwrap();
    assert_eq!(m.target(), Some(768 << 20));

    let e = HypervisorCmdline::parse("dom0_mem=12Q").unwrap_err();
    assert_eq!(
        e.to_string(),
        "command line option `dom0_mem=12Q`: \"12Q\" is not a size (e.g. 512M, 1G)"
    );
    assert!(HypervisorCmdline::parse("dom0_mem=-1G").is_err());
    assert!(HypervisorCmdline::parse("dom0_mem").is_err());
    let e = HypervisorCmdline::parse("iommu-owner=guest:/x").unwrap_err();
    assert!(e.to_string().contains("owner \"guest\""), "{e}");
    let c = HypervisorCmdline::parse("iommu-owner=nested:/pcie@10000000").unwrap();
    assert_eq!(c.iommu_owner, [OwnerOverride { path: "/pcie@10000000".to_owned(), owner: IommuOwner::Nested }]);
}

// ---------------------------------------------------------------- dom0's DT

fn snow_spec() -> Dom0DtSpec {
    Dom0DtSpec {
        memory: vec![r(0x5000_0000, 0x2000_0000)],
        bootargs: Some("console=hvc0 root=/dev/mmcblk1p3".to_owned()),
        initrd: Some(r(0x6800_0000, 0x40_0000)),
        grant_table: r(0xb000_0000, 0x4_0000),
        extended_regions: Vec::new(),
        evtchn_ppi: 31,
        remove_nodes: vec!["/soc/serial@12c30000".to_owned()],
        ..Default::default()
    }
}

/// Checks what every dom0 DT must satisfy; returns it parsed.
fn check_dom0_common(blob: &[u8], spec: &Dom0DtSpec) -> HostDt {
    let d = HostDt::parse(blob).unwrap();
    dtc_accepts(blob);
    let root = d.root();
    let (na, ns) = d.cells_of_bus(root).unwrap();
    // Memory: one node, dom0's banks.
    let mems: Vec<_> = d
        .children(root)
        .iter()
        .copied()
        .filter(|&n| d.name(n).starts_with("memory"))
        .collect();
    assert_eq!(mems.len(), 1);
    assert_eq!(d.reg(mems[0]).unwrap(), spec.memory);
    // /chosen.
    let chosen = d.find_path("/chosen").unwrap();
    assert_eq!(
        d.prop_str(chosen, "bootargs").unwrap(),
        spec.bootargs.as_deref()
    );
    for gone in ["xen,xen-bootargs", "xen,dom0-bootargs", "stdout-path"] {
        assert!(!d.has_prop(chosen, gone), "{gone}");
    }
    assert!(d.children(chosen).iter().all(|&c| !d.is_boot_module(c)));
    if let Some(rd) = spec.initrd {
        assert_eq!(
            d.prop(chosen, "linux,initrd-start").unwrap(),
            rd.base.to_be_bytes()
        );
        assert_eq!(
            d.prop(chosen, "linux,initrd-end").unwrap(),
            (rd.base + rd.size).to_be_bytes()
        );
    }
    // /hypervisor.
    let hyp = d.find_path("/hypervisor").unwrap();
    assert_eq!(d.compatible(hyp), ["xen,xen-4.17", "xen,xen"]);
    assert_eq!(d.reg(hyp).unwrap()[0], spec.grant_table);
    let irq = &d.interrupts(hyp).unwrap()[0];
    assert_eq!(irq.gic_intid(), Some(spec.evtchn_ppi));
    assert_eq!(irq.gic_flags(), Some(0xf08));
    assert!(irq.controller_is_gic);
    let _ = (na, ns);
    // /psci.
    let psci = d.find_path("/psci").unwrap();
    assert_eq!(
        d.compatible(psci),
        ["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]
    );
    assert_eq!(d.prop_str(psci, "method").unwrap(), Some("hvc"));
    // No CPU PMU, nothing removed is still there.
    assert!(d.nodes().all(|n| !d
        .compatible(n)
        .iter()
        .any(|c| *c == "arm,cortex-a15-pmu" || *c == "arm,armv8-pmuv3")));
    for p in &spec.remove_nodes {
        assert!(d.find_path(p).is_none(), "{p} still present");
    }
    // Every phandle reference of the IOMMU/interrupt kind resolves.
    for n in d.nodes() {
        for prop in ["iommus", "interrupt-parent"] {
            if let Some(cells) = d.prop_cells(n, prop).unwrap() {
                assert!(
                    d.find_phandle(cells[0]).is_some(),
                    "{} {prop} dangles",
                    d.path(n)
                );
            }
        }
    }
    d
}

#[test]
fn qemu_dom0_dt() {
    let host = load(QEMU_VIRT_DOM0);
    let topo = DmaTopology::from_dt(&host).unwrap();
    let table = OwnershipTable::decide(
        &topo,
        PlatformDefaults::for_dt(&host),
        &[],
        &[IommuKind::SmmuV3],
    );
    let mut spec = Dom0DtSpec {
        memory: vec![r(0x4800_0000, 0x2000_0000)],
        bootargs: Some("console=hvc0".to_owned()),
        grant_table: r(0x3800_0000, 0x4_0000),
        extended_regions: vec![r(0x1_0000_0000, 0x4000_0000)],
        evtchn_ppi: 31,
        remove_nodes: vec!["/pl011@9000000".to_owned()],
        ..Default::default()
    };
    spec.add_edits(&table.dom0_dt_edits());
    let blob = build_dom0_dt(&host, &spec).unwrap();
    let d = check_dom0_common(&blob, &spec);
    assert!(d.find_path("/smmuv3@9050000").is_none());
    let pcie = d.find_path("/pcie@10000000").unwrap();
    assert!(!d.has_prop(pcie, "iommu-map"));
    assert!(d.has_prop(pcie, "msi-map"));
    let hyp = d.find_path("/hypervisor").unwrap();
    assert_eq!(
        d.reg(hyp).unwrap(),
        [r(0x3800_0000, 0x4_0000), r(0x1_0000_0000, 0x4000_0000)]
    );
    // GICv3: distributor and redistributors only.
    let gic = d.find_path("/intc@8000000").unwrap();
    assert_eq!(
        d.reg(gic).unwrap(),
        [r(0x0800_0000, 0x1_0000), r(0x080a_0000, 0xf6_0000)]
    );
    assert!(d.find_path("/pmu").is_none());
    // Without the SMMU (SPIs 74-77), the last virtio-mmio transport's SPI 47 is the highest
    // INTID dom0's vGIC needs: 96 INTIDs instead of the host's 288.
    assert_eq!(host.highest_gic_intid().unwrap(), 32 + 77);
    assert_eq!(d.highest_gic_intid().unwrap(), 32 + 47);
    // Nothing else lost: host - (module, pmu, smmu, uart) - (memory, psci: rebuilt) + (memory, psci, hypervisor).
    assert_eq!(d.tree().nodes.len(), host.tree().nodes.len() - 3);
}

#[test]
fn snow_dom0_dt_default_policy_hides_every_sysmmu() {
    let host = load(SNOW);
    let topo = DmaTopology::from_dt(&host).unwrap();
    let table = OwnershipTable::decide(
        &topo,
        PlatformDefaults::for_dt(&host),
        &[],
        &[IommuKind::ExynosSysmmu],
    );
    let edits = table.dom0_dt_edits();
    assert_eq!(edits.remove_nodes.len(), 23);
    assert!(edits.mmio_to_map.is_empty());
    assert_eq!(edits.mmio_withheld.len(), 23);
    let mut spec = snow_spec();
    spec.add_edits(&edits);
    let blob = build_dom0_dt(&host, &spec).unwrap();
    let d = check_dom0_common(&blob, &spec);
    assert!(d.find_compatible("samsung,exynos-sysmmu").is_empty());
    for m in [
        "/soc/fimd@14400000",
        "/soc/mixer@14450000",
        "/soc/g2d@10850000",
        "/soc/codec@11000000",
        "/soc/rotator@11c00000",
        "/soc/gsc@13e00000",
        "/soc/gsc@13e10000",
        "/soc/gsc@13e20000",
        "/soc/gsc@13e30000",
    ] {
        let n = d.find_path(m).unwrap();
        assert!(!d.has_prop(n, "iommus"), "{m} keeps iommus");
        assert!(
            d.is_enabled(n) || !host.is_enabled(host.find_path(m).unwrap()),
            "{m} got disabled"
        );
    }
    // GICv2: GICD + GICC only; the GIC keeps its phandle, /hypervisor points at it.
    let gic = d.find_path("/soc/interrupt-controller@10481000").unwrap();
    assert_eq!(
        d.reg(gic).unwrap(),
        [r(0x1048_1000, 0x1000), r(0x1048_2000, 0x2000)]
    );
    assert_eq!(
        d.prop_u32(d.find_path("/hypervisor").unwrap(), "interrupt-parent")
            .unwrap(),
        Some(1)
    );
    // Samsung's power-management unit is not a CPU PMU: it stays.
    assert!(!d.find_compatible("samsung,exynos5250-pmu").is_empty());
    assert!(d.find_path("/pmu").is_none());
}

#[test]
fn snow_dom0_dt_with_mixer_and_fimd_given_to_dom0() {
    let host = load(SNOW);
    let topo = DmaTopology::from_dt(&host).unwrap();
    let c =
        HypervisorCmdline::parse("iommu-owner=dom0:/soc/mixer@14450000,dom0:/soc/fimd@14400000")
            .unwrap();
    let table = OwnershipTable::decide(
        &topo,
        PlatformDefaults::for_dt(&host),
        &c.iommu_owner,
        &[IommuKind::ExynosSysmmu],
    );
    println!("{table}");
    assert_eq!(
        table.owner_of_master("/soc/mixer@14450000"),
        Some(IommuOwner::Dom0)
    );
    assert_eq!(
        table.owner_of_master("/soc/fimd@14400000"),
        Some(IommuOwner::Dom0)
    );
    assert_eq!(
        table.owner_of_master("/soc/g2d@10850000"),
        Some(IommuOwner::Hypervisor)
    );
    let edits = table.dom0_dt_edits();
    assert_eq!(edits.remove_nodes.len(), 21);
    let mapped: Vec<_> = edits
        .mmio_to_map
        .iter()
        .map(|d| (d.path.as_str(), d.region))
        .collect();
    assert_eq!(
        mapped,
        [
            ("/soc/sysmmu@14640000", r(0x1464_0000, 0x1000)),
            ("/soc/sysmmu@14650000", r(0x1465_0000, 0x1000))
        ]
    );
    let mut spec = snow_spec();
    spec.add_edits(&edits);
    let blob = build_dom0_dt(&host, &spec).unwrap();
    let d = check_dom0_common(&blob, &spec);
    assert_eq!(d.find_compatible("samsung,exynos-sysmmu").len(), 2);
    for (m, mmu) in [
        ("/soc/mixer@14450000", "/soc/sysmmu@14650000"),
        ("/soc/fimd@14400000", "/soc/sysmmu@14640000"),
    ] {
        let n = d.find_path(m).unwrap();
        let ph = d.prop_cells(n, "iommus").unwrap().unwrap();
        assert_eq!(d.find_phandle(ph[0]), d.find_path(mmu), "{m}");
    }
    assert!(!d.has_prop(d.find_path("/soc/g2d@10850000").unwrap(), "iommus"));
}

#[test]
fn dom0_spec_errors_name_what_is_wrong() {
    let host = load(SNOW);
    let mut spec = snow_spec();
    spec.remove_nodes.push("/soc/nothing@0".to_owned());
    assert_eq!(
        build_dom0_dt(&host, &spec).unwrap_err(),
        DtError::MissingNode("/soc/nothing@0".to_owned())
    );
    let mut spec = snow_spec();
    spec.evtchn_ppi = 40;
    assert!(build_dom0_dt(&host, &spec)
        .unwrap_err()
        .to_string()
        .contains("/hypervisor"));
    let mut spec = snow_spec();
    spec.memory = vec![r(0x1_0000_0000, 0x1000)]; // the Snow's root has 1 address cell
    assert!(build_dom0_dt(&host, &spec)
        .unwrap_err()
        .to_string()
        .contains("does not fit"));
}

#[test]
fn dom0_dt_refuses_references_into_removed_nodes_and_drops_dangling_aliases() {
    let host = load(SNOW);
    // Hide the mixer's SysMMU without stripping the mixer's `iommus`: a builder bug, caught.
    let mut spec = snow_spec();
    spec.remove_nodes.push("/soc/sysmmu@14650000".to_owned());
    let e = build_dom0_dt(&host, &spec).unwrap_err();
    assert_eq!(
        e.to_string(),
        "device tree node /soc/mixer@14450000: property `iommus`: refers to /soc/sysmmu@14650000, which dom0's DT no longer has"
    );
    // The removed console UART's alias is gone, the others stay.
    let d = HostDt::parse(&build_dom0_dt(&host, &snow_spec()).unwrap()).unwrap();
    assert_eq!(d.alias("serial3"), None);
    assert_eq!(d.alias("serial0"), Some("/soc/serial@12c00000"));
}

// ---------------------------------------------------------------- fuzz

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn fuzz_one(blob: &[u8]) {
        let Ok(dt) = HostDt::parse(blob) else { return };
        let _ = dt.boot_info();
        let _ = dt.device_regions();
        let topo = DmaTopology::from_dt(&dt).unwrap();
        let table = OwnershipTable::decide(
            &topo,
            PlatformDefaults::for_dt(&dt),
            &[],
            &[IommuKind::SmmuV3, IommuKind::ExynosSysmmu],
        );
        let _ = table.to_string();
        let mut spec = snow_spec();
        spec.remove_nodes.clear();
        spec.add_edits(&table.dom0_dt_edits());
        if let Ok(out) = build_dom0_dt(&dt, &spec) {
            HostDt::parse(&out).unwrap();
        }
    }

    fn compact(name: &str) -> Vec<u8> {
        load(name).tree().to_blob()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

        #[test]
        fn corrupted_snow_never_panics(edits in proptest::collection::vec((any::<u32>(), any::<u8>()), 1..12)) {
            let mut blob = compact(SNOW);
            for (pos, byte) in edits {
                let len = blob.len() as u32;
                blob[(pos % len) as usize] = byte;
            }
            fuzz_one(&blob);
        }

        #[test]
        fn corrupted_qemu_never_panics(
            edits in proptest::collection::vec((any::<u32>(), any::<u8>()), 1..12),
            cut in any::<u16>(),
        ) {
            let mut blob = compact(QEMU_VIRT_DOM0);
            for (pos, byte) in edits {
                let len = blob.len() as u32;
                blob[(pos % len) as usize] = byte;
            }
            // Sometimes also truncate (keeping totalsize, so the block checks are exercised).
            if cut % 4 == 0 {
                let keep = blob.len() - (cut as usize % blob.len());
                blob.truncate(keep);
            }
            fuzz_one(&blob);
        }

        #[test]
        fn any_command_line_parses_or_errors(line in "[ -~]{0,80}", opt in "(dom0_mem|console|iommu-owner)=[ -~]{0,20}") {
            let _ = HypervisorCmdline::parse(&line);
            let _ = HypervisorCmdline::parse(&opt);
        }

        #[test]
        fn any_bytes_as_an_arm64_image(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = crate::domain::image::Arm64Image::parse(&bytes).map(|i| i.memory_needed());
        }

        #[test]
        fn corrupted_property_values_never_panic(node in any::<u16>(), prop in any::<u8>(), value in proptest::collection::vec(any::<u8>(), 0..24)) {
            // Well-formed FDT, garbage in one property: exercises the property decoders, not just the reader.
            let host = load(SNOW);
            let mut t = host.tree().clone();
            let n = NodeId(node as u32 % t.nodes.len() as u32);
            if !t.node(n).props.is_empty() {
                let i = prop as usize % t.node(n).props.len();
                t.node_mut(n).props[i].value = value;
            }
            fuzz_one(&t.to_blob());
        }
    }
}

#[test]
fn dom0_cpus_list_only_dom0s_vcpus() {
    let host = load(QEMU_VIRT_DOM0);
    let cpus = host.find_path("/cpus").unwrap();
    let host_cpus: Vec<_> = host.children(cpus).iter().copied().filter(|&c| host.name(c).starts_with("cpu@")).collect();
    let spec = |vcpus| Dom0DtSpec {
        memory: vec![r(0x4800_0000, 0x2000_0000)],
        grant_table: r(0x3800_0000, 0x4_0000),
        evtchn_ppi: 31,
        vcpus,
        ..Default::default()
    };
    let d = HostDt::parse(&build_dom0_dt(&host, &spec(Some(1))).unwrap()).unwrap();
    let dc = d.find_path("/cpus").unwrap();
    let kept: Vec<_> = d.children(dc).iter().copied().filter(|&c| d.name(c).starts_with("cpu@")).collect();
    assert_eq!(kept.len(), 1);
    let reg = d.prop(kept[0], "reg").unwrap();
    assert!(reg.iter().all(|&b| b == 0), "vCPU 0 has MPIDR affinity 0");
    assert!(d.find_path("/cpus/cpu-map").is_none());
    // As many as the host has: all kept, numbered 0..n.
    let n = host_cpus.len() as u32;
    let d = HostDt::parse(&build_dom0_dt(&host, &spec(Some(n))).unwrap()).unwrap();
    let dc = d.find_path("/cpus").unwrap();
    let regs: Vec<u32> = d
        .children(dc)
        .iter()
        .copied()
        .filter(|&c| d.name(c).starts_with("cpu@"))
        .map(|c| d.prop(c, "reg").unwrap().last().copied().unwrap().into())
        .collect();
    assert_eq!(regs, (0..n).collect::<Vec<_>>());
    // More vCPUs than CPUs, or none: refused, not invented.
    assert!(build_dom0_dt(&host, &spec(Some(n + 1))).is_err());
    assert!(build_dom0_dt(&host, &spec(Some(0))).is_err());
}

#[test]
fn highest_gic_intid_covers_interrupts_and_pci_interrupt_maps() {
    // QEMU virt: the SMMUv3's gerror (SPI 77) is the highest; the PCIe INTx map names SPIs 3-6.
    let virt = load(QEMU_VIRT);
    assert_eq!(virt.highest_gic_intid().unwrap(), 32 + 77);
    let pcie = virt.find_path("/pcie@10000000").unwrap();
    let intx: Vec<u32> = virt
        .interrupt_map_parents(pcie)
        .unwrap()
        .iter()
        .filter_map(IrqSpec::gic_intid)
        .collect();
    assert_eq!(intx.len(), 16);
    assert_eq!(intx[..4], [35, 36, 37, 38]);
    assert!(intx.iter().all(|i| (35..=38).contains(i)));
    // The Snow's GIC (Exynos combiner interrupts do not name GIC SPIs directly).
    assert_eq!(load(SNOW).highest_gic_intid().unwrap(), 156);
    // An interrupt-map entry pointing higher raises it.
    let dt = edited(&virt, |dt, t| {
        let pcie = dt.find_path("/pcie@10000000").unwrap();
        let gic = dt.phandle(dt.find_path("/intc@8000000").unwrap()).unwrap();
        let entry: Vec<u8> = [0, 0, 0, 1, gic, 0, 0, 0, 200, 4]
            .iter()
            .flat_map(|c: &u32| c.to_be_bytes())
            .collect();
        t.set_prop(pcie, "interrupt-map", entry);
    });
    assert_eq!(dt.highest_gic_intid().unwrap(), 232);
}

#[test]
fn highest_gic_intid_is_unknown_with_an_msi_frame_or_a_bad_map() {
    let virt = load(QEMU_VIRT);
    let v2m = edited(&virt, |dt, t| {
        let gic = dt.find_path("/intc@8000000").unwrap();
        let f = t.add_node(gic, "v2m@8020000");
        t.set_prop(f, "compatible", b"arm,gic-v2m-frame\0".to_vec());
    });
    assert!(v2m.highest_gic_intid().is_err());
    let truncated = edited(&virt, |dt, t| {
        let pcie = dt.find_path("/pcie@10000000").unwrap();
        let gic = dt.phandle(dt.find_path("/intc@8000000").unwrap()).unwrap();
        let entry: Vec<u8> = [0u32, 0, 0, 1, gic, 0, 0, 0]
            .iter()
            .flat_map(|c| c.to_be_bytes())
            .collect();
        t.set_prop(pcie, "interrupt-map", entry);
    });
    assert!(truncated.highest_gic_intid().is_err());
    let dangling = edited(&virt, |dt, t| {
        let pcie = dt.find_path("/pcie@10000000").unwrap();
        let entry: Vec<u8> = [0u32, 0, 0, 1, 0xdead, 0, 0, 0, 3, 4]
            .iter()
            .flat_map(|c| c.to_be_bytes())
            .collect();
        t.set_prop(pcie, "interrupt-map", entry);
    });
    assert!(dangling.highest_gic_intid().is_err());
}

#[test]
fn devices_mastering_by_physical_address_are_kept_from_dom0() {
    let host = load(QEMU_VIRT);
    let m = physical_masters(&host);
    let kept: Vec<&str> = m.kept.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(kept, ["/intc@8000000/its@8080000", "/fw-cfg@9020000"]);
    assert_eq!(m.strip, [("/pcie@10000000".to_owned(), "msi-map".to_owned())]);
    // dom0's DT without them and without the reference builds and has neither.
    let mut spec = snow_spec();
    spec.memory = vec![r(0x8000_0000, 0x2000_0000)];
    spec.remove_nodes = m.kept.iter().map(|(p, _)| p.clone()).collect();
    spec.strip_props = m.strip.clone();
    let d = HostDt::parse(&build_dom0_dt(&host, &spec).unwrap()).unwrap();
    assert!(d.find_compatible("arm,gic-v3-its").is_empty());
    assert!(d.find_compatible("qemu,fw-cfg-mmio").is_empty());
    let pcie = d.find_path("/pcie@10000000").unwrap();
    assert!(!d.has_prop(pcie, "msi-map"));
    assert!(d.has_prop(pcie, "iommu-map"));
    // Without stripping, the dangling reference is refused (a builder bug, caught).
    spec.strip_props.clear();
    assert!(build_dom0_dt(&host, &spec).unwrap_err().to_string().contains("msi-map"));
    // The Snow has neither.
    assert_eq!(physical_masters(&load(SNOW)), PhysicalMasters::default());
}

#[test]
fn an_emulated_its_keeps_its_node_and_msi_map_for_dom0() {
    let host = load(QEMU_VIRT);
    let m = physical_masters_except(&host, &["arm,gic-v3-its"]);
    let kept: Vec<&str> = m.kept.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(kept, ["/fw-cfg@9020000"], "fw_cfg stays the hypervisor's");
    assert!(m.strip.is_empty());
    let its = host.find_compatible("arm,gic-v3-its")[0];
    let ph = host.phandle(its).unwrap();
    // QEMU virt: msi-map = <0 &its 0 0x10000>: every requester ID is a DeviceID of dom0's.
    assert_eq!(msi_device_ids(&host, ph), [(0, 0x1_0000)]);
    assert!(msi_device_ids(&host, ph + 1000).is_empty());
    let mut spec = snow_spec();
    spec.memory = vec![r(0x8000_0000, 0x2000_0000)];
    spec.remove_nodes = m.kept.iter().map(|(p, _)| p.clone()).collect();
    let d = HostDt::parse(&build_dom0_dt(&host, &spec).unwrap()).unwrap();
    assert_eq!(d.find_compatible("arm,gic-v3-its").len(), 1);
    assert!(d.has_prop(d.find_path("/pcie@10000000").unwrap(), "msi-map"));
}

#[test]
fn extended_regions_are_the_unused_space_as_xen_finds_it() {
    let host = load(QEMU_VIRT);
    let gnttab = r(0x3800_0000, 0x4_0000);
    let ext = extended_regions(&host, 40, &[gnttab]);
    // QEMU virt (2 GiB): RAM 0x4000_0000-0xc000_0000, PCIe ECAM at 0x40_1000_0000, 64-bit
    // window 0x80_0000_0000-0x100_0000_0000 (the whole top of a 40-bit space), devices and the
    // 32-bit window below 1 GiB.
    assert!(!ext.is_empty());
    for e in &ext {
        assert_eq!(e.base % (2 << 20), 0, "{e}");
        assert_eq!(e.size % (2 << 20), 0, "{e}");
        assert!(e.size >= EXT_REGION_MIN, "{e}");
        assert!(e.base + e.size <= 1 << 40, "{e}");
        for d in host.device_regions() {
            let dr = d.region;
            assert!(e.base + e.size <= dr.base || dr.base + dr.size <= e.base, "{e} overlaps {} {dr}", d.path);
        }
        assert!(e.base + e.size <= gnttab.base || gnttab.base + gnttab.size <= e.base);
        assert!(e.base + e.size <= 0x4000_0000 || e.base >= 0xc000_0000, "{e} overlaps RAM");
    }
    // Right above RAM, up to the PCIe ECAM window; and the hole between the virtio-mmio
    // transports and the 32-bit PCIe window.
    assert!(ext.contains(&r(0xc000_0000, 0x40_1000_0000 - 0xc000_0000)), "{ext:x?}");
    assert!(ext.contains(&r(0x0a20_0000, 0x1000_0000 - 0x0a20_0000)), "{ext:x?}");
    // A smaller IPA space cuts them.
    assert!(extended_regions(&host, 36, &[]).iter().all(|e| e.base + e.size <= 1 << 36));
    assert_eq!(extended_regions(&host, 32, &[]), [r(0x0a20_0000, 0x1000_0000 - 0x0a20_0000), r(0xc000_0000, 0x4000_0000)]);
}

#[test]
fn spin_table_cpus_give_their_release_address() {
    let dt = edited(&load(QEMU_VIRT_DOM0), |dt, t| {
        let cpu1 = dt.find_path("/cpus/cpu@1").unwrap();
        t.set_prop(cpu1, "enable-method", b"spin-table\0".to_vec());
        t.set_prop(cpu1, "cpu-release-addr", 0x4000_f000u64.to_be_bytes().to_vec());
        let cpu0 = dt.find_path("/cpus/cpu@0").unwrap();
        t.set_prop(cpu0, "cpu-release-addr", 0x4000_e000u32.to_be_bytes().to_vec());
    });
    let bi = dt.boot_info().unwrap();
    assert_eq!(bi.cpus[1].enable_method.as_deref(), Some("spin-table"));
    assert_eq!(bi.cpus[1].release_addr, Some(0x4000_f000));
    assert_eq!(bi.cpus[0].release_addr, Some(0x4000_e000), "one cell");
    let bad = edited(&load(QEMU_VIRT_DOM0), |dt, t| {
        let cpu1 = dt.find_path("/cpus/cpu@1").unwrap();
        t.set_prop(cpu1, "cpu-release-addr", [0u8; 12].to_vec());
    });
    let bi = bad.boot_info().unwrap();
    assert!(bi.warnings.iter().any(|w| format!("{w}").contains("cpu-release-addr")), "three cells: {:?}", bi.warnings);
}
