//! Done-when #1, selection: the Snow display pipeline, QEMU virt and grant-dma cases.
#![allow(clippy::single_range_in_vec_init)]

use dom0_dma::hv::{xenfeat, XenFeatures};
use dom0_dma::select::{select, select_group, DeviceFacts, DmaEnv, DmaGroup, IommuKind, Override, Reason, SelectError};
use dom0_dma::DmaKind;

const SNOW_RAM_TOP: u64 = 0x4000_0000 + 0x8000_0000;

fn snow_env() -> DmaEnv {
    DmaEnv { features: XenFeatures::XEN_DOM0_DIRECT, ram_top: SNOW_RAM_TOP }
}

/// FIMD or mixer on the Snow: behind a SysMMU owned by dom0 (iommus kept) or by xenith.
fn snow_dev(name: &'static str, dom0_owns_sysmmu: bool) -> DeviceFacts<'static> {
    DeviceFacts {
        name,
        iommus: dom0_owns_sysmmu.then_some(IommuKind::ExynosSysmmu),
        grant_dma_backend: None,
        hypervisor_iommu: !dom0_owns_sysmmu,
        coherent: false,
        dma_mask: 0xFFFF_FFFF,
    }
}

fn display(fimd_dom0: bool, mixer_dom0: bool) -> DmaGroup<'static> {
    DmaGroup {
        name: "exynos-drm",
        members: vec![
            (snow_dev("14400000.fimd", fimd_dom0), Override::Auto),
            (snow_dev("14450000.mixer", mixer_dom0), Override::Auto),
        ],
    }
}

#[test]
fn snow_sysmmus_owned_by_dom0_give_one_iommu_domain() {
    let g = select_group(&display(true, true), &snow_env()).unwrap();
    assert_eq!(g.choice.kind, DmaKind::IommuDma);
    assert_eq!(g.choice.iommu, Some(IommuKind::ExynosSysmmu));
    assert!(g.members.iter().all(|(_, c)| c.kind == DmaKind::IommuDma && c.reason == Reason::Dom0DrivesIommu));
}

#[test]
fn snow_sysmmus_owned_by_xenith_give_direct() {
    let g = select_group(&display(false, false), &snow_env()).unwrap();
    assert_eq!(g.choice.kind, DmaKind::Direct);
    assert!(g.members.iter().all(|(_, c)| c.reason == Reason::HypervisorOwnsIommu));
}

#[test]
fn snow_one_of_each_is_a_group_error_naming_the_mixer() {
    for (fimd, mixer) in [(true, false), (false, true)] {
        let e = select_group(&display(fimd, mixer), &snow_env()).unwrap_err();
        match &e {
            SelectError::GroupMismatch { device, reference, .. } => {
                assert_eq!(device, "14450000.mixer");
                assert_eq!(reference, "14400000.fimd");
            }
            other => panic!("unexpected {other:?}"),
        }
        let msg = e.to_string();
        assert!(msg.contains("14450000.mixer differs"), "{msg}");
        assert!(msg.contains("IOMMU"), "the why is in the message: {msg}");
    }
}

#[test]
fn the_linux_bug_cannot_happen_swiotlb_never_replaces_dom0_iommu_ops() {
    // Direct-mapped dom0 (the condition under which Linux swaps in swiotlb-xen ops) and a
    // mixer whose SysMMU dom0 drives: still IommuDma.
    let c = select(&snow_dev("14450000.mixer", true), &snow_env(), Override::Auto).unwrap();
    assert_eq!(c.kind, DmaKind::IommuDma);
    // Even when asked.
    let e = select(&snow_dev("14450000.mixer", true), &snow_env(), Override::Force(DmaKind::XenSwiotlb)).unwrap_err();
    assert!(matches!(e, SelectError::OverrideImpossible { ref device, .. } if device == "14450000.mixer"), "{e}");
}

#[test]
fn snow_device_without_iommu_uses_swiotlb_xen() {
    let mmc = DeviceFacts { dma_mask: u64::MAX, ..DeviceFacts::new("12200000.mmc") };
    let c = select(&mmc, &snow_env(), Override::Auto).unwrap();
    assert_eq!((c.kind, c.reason), (DmaKind::XenSwiotlb, Reason::DirectMappedNoIommu));
}

// QEMU virt: RAM at 0x4000_0000, SMMUv3 either kept by xenith or given to dom0 (nested stage 1).
fn qemu_env(ram: u64) -> DmaEnv {
    DmaEnv { features: XenFeatures::XEN_DOM0_DIRECT, ram_top: 0x4000_0000 + ram }
}

fn edu(mask: u64) -> DeviceFacts<'static> {
    DeviceFacts { name: "0000:00:02.0", dma_mask: mask, coherent: true, ..DeviceFacts::new("0000:00:02.0") }
}

#[test]
fn qemu_hypervisor_owned_smmu_is_direct() {
    let d = DeviceFacts { hypervisor_iommu: true, ..edu(u64::MAX) };
    let c = select(&d, &qemu_env(1 << 30), Override::Auto).unwrap();
    assert_eq!((c.kind, c.reason), (DmaKind::Direct, Reason::HypervisorOwnsIommu));
}

#[test]
fn qemu_32bit_mask_below_ram_bounces() {
    let d = DeviceFacts { hypervisor_iommu: true, ..edu(0xFFFF_FFFF) };
    let c = select(&d, &qemu_env(4 << 30), Override::Auto).unwrap();
    assert_eq!((c.kind, c.reason), (DmaKind::XenSwiotlb, Reason::MaskBelowRam));
    // RAM entirely below 4 GiB: the same mask needs no bounce.
    let c = select(&d, &qemu_env(1 << 30), Override::Auto).unwrap();
    assert_eq!(c.kind, DmaKind::Direct);
}

#[test]
fn qemu_dom0_owned_smmu_stage1_is_iommu_dma() {
    let d = DeviceFacts { iommus: Some(IommuKind::Smmuv3), ..edu(u64::MAX) };
    let c = select(&d, &qemu_env(1 << 30), Override::Auto).unwrap();
    assert_eq!((c.kind, c.iommu), (DmaKind::IommuDma, Some(IommuKind::Smmuv3)));
}

#[test]
fn qemu_force_bounce_override_for_the_test_guest() {
    let d = DeviceFacts { hypervisor_iommu: true, ..edu(u64::MAX) };
    let c = select(&d, &qemu_env(1 << 30), Override::Force(DmaKind::XenSwiotlb)).unwrap();
    assert_eq!((c.kind, c.reason), (DmaKind::XenSwiotlb, Reason::Override));
}

#[test]
fn not_on_xen_is_direct() {
    let env = DmaEnv { features: XenFeatures::NONE, ram_top: 0x8000_0000 };
    assert_eq!(select(&edu(u64::MAX), &env, Override::Auto).unwrap().kind, DmaKind::Direct);
}

#[test]
fn not_direct_mapped_without_iommu_has_no_path() {
    let f = XenFeatures::XEN_DOM0_DIRECT.with(xenfeat::DIRECT_MAPPED, false).with(xenfeat::NOT_DIRECT_MAPPED, true);
    let env = DmaEnv { features: f, ram_top: 0x8000_0000 };
    let e = select(&edu(u64::MAX), &env, Override::Auto).unwrap_err();
    assert!(matches!(e, SelectError::NoDmaPath { .. }));
    // ...but the same device behind a hypervisor-owned IOMMU is fine.
    let d = DeviceFacts { hypervisor_iommu: true, ..edu(u64::MAX) };
    assert_eq!(select(&d, &env, Override::Auto).unwrap().kind, DmaKind::Direct);
}

#[test]
fn grant_dma_binding_wins_and_groups_by_backend() {
    let env = qemu_env(1 << 30);
    let v = |name, dom| DeviceFacts { grant_dma_backend: Some(dom), ..DeviceFacts::new(name) };
    let c = select(&v("virtio0", 1), &env, Override::Auto).unwrap();
    assert_eq!((c.kind, c.backend, c.reason), (DmaKind::GrantDma, Some(1), Reason::GrantDmaBinding));
    let same = DmaGroup { name: "vq", members: vec![(v("virtio0", 1), Override::Auto), (v("virtio1", 1), Override::Auto)] };
    assert!(select_group(&same, &env).is_ok());
    let diff = DmaGroup { name: "vq", members: vec![(v("virtio0", 1), Override::Auto), (v("virtio1", 2), Override::Auto)] };
    assert!(matches!(select_group(&diff, &env), Err(SelectError::GroupMismatch { device, .. }) if device == "virtio1"));
    // Grant DMA cannot be forced without a binding.
    assert!(select(&edu(u64::MAX), &env, Override::Force(DmaKind::GrantDma)).is_err());
}

#[test]
fn override_per_device_not_global() {
    // Overriding one member of the display group breaks the group, and the error names it.
    let mut g = display(false, false);
    g.members[1].1 = Override::Force(DmaKind::XenSwiotlb);
    let e = select_group(&g, &snow_env()).unwrap_err();
    assert!(matches!(e, SelectError::GroupMismatch { ref device, .. } if device == "14450000.mixer"), "{e}");
    // The other member is untouched by it.
    assert_eq!(select(&g.members[0].0, &snow_env(), g.members[0].1).unwrap().kind, DmaKind::Direct);
}

#[test]
fn empty_group_is_an_error() {
    let g = DmaGroup { name: "none", members: vec![] };
    assert!(matches!(select_group(&g, &snow_env()), Err(SelectError::EmptyGroup { .. })));
}

// ---- From the selection to working ops: the Snow display pipeline end to end ----

mod end_to_end {
    use super::*;
    use dom0_dma::iommu::sysmmu::SysmmuDomain;
    use dom0_dma::iommu::{IommuDma, IommuDomain};
    use dom0_dma::sim::{SimArch, SimHypervisor, SimMachine};
    use dom0_dma::{AnyDmaOps, ArchDmaOps, Direct, Direction, DmaAttrs, DmaOps, RamMap, Shared};
    use std::rc::Rc;
    use sysmmu_model::mem::SimMem;
    use sysmmu_model::sysmmu::{ModelConfig, SysmmuModel};

    type Ops = AnyDmaOps<SimArch, SimHypervisor, SysmmuDomain<SimArch, &'static SysmmuModel>>;

    struct RcRegs;
    impl RcRegs {
        fn model() -> &'static SysmmuModel {
            Box::leak(Box::new(SysmmuModel::new(ModelConfig::v3(3), Rc::new(SimMem::new(&[(0..0x1000)])))))
        }
    }

    /// Build the ops for the display group the way a dom0 would: one domain for the group,
    /// every member's SysMMU attached to it.
    fn build(fimd_dom0: bool, mixer_dom0: bool) -> Result<Vec<Ops>, SelectError> {
        let m = SimMachine::new(0x4000_0000, 32 << 20);
        let ram = RamMap::new(&[(0x4000_0000, 32 << 20)]);
        let g = select_group(&display(fimd_dom0, mixer_dom0), &snow_env())?;
        let arch = SimArch::new(&m, false);
        Ok(match g.choice.kind {
            DmaKind::IommuDma => {
                let tables = arch.alloc_pages(256 << 10, 16 << 10).unwrap();
                let mut dom = SysmmuDomain::new(arch.clone(), tables, 256 << 10).unwrap();
                for _ in &g.members {
                    dom.attach(RcRegs::model());
                }
                let shared = Shared::new(IommuDma::new(arch, dom, 0xFFFF_FFFF, ram));
                g.members.iter().map(|_| AnyDmaOps::IommuDma(shared.clone())).collect()
            }
            DmaKind::Direct => g.members.iter().map(|_| AnyDmaOps::Direct(Direct::new(arch.clone(), 0xFFFF_FFFF, ram.clone()))).collect(),
            other => panic!("unexpected {other}"),
        })
    }

    #[test]
    fn dom0_owned_sysmmus_share_one_domain_with_both_instances_attached() {
        let ops = build(true, true).unwrap();
        let (AnyDmaOps::IommuDma(a), AnyDmaOps::IommuDma(b)) = (&ops[0], &ops[1]) else { panic!("not IommuDma") };
        assert!(a.same_as(b), "FIMD and mixer share one IOMMU domain");
        assert_eq!(a.0.borrow().domain().instances().len(), 2);
        let mut fimd: Ops = AnyDmaOps::IommuDma(a.clone());
        let fb = fimd.map_page(0x4100_0000, 1 << 20, Direction::ToDevice, DmaAttrs::NONE).unwrap();
        // The mixer's SysMMU walks the same table: the framebuffer IOVA is valid for it too.
        for inst in a.0.borrow().domain().instances() {
            assert_eq!(inst.pt_base(), a.0.borrow().domain().pgd());
        }
        assert_eq!(a.0.borrow().domain().iova_to_phys(fb).unwrap().0, 0x4100_0000);
        fimd.unmap_page(fb, 1 << 20, Direction::ToDevice, DmaAttrs::NONE).unwrap();
    }

    #[test]
    fn xenith_owned_sysmmus_give_direct_ops() {
        let mut ops = build(false, false).unwrap();
        assert!(ops.iter().all(|o| o.kind() == DmaKind::Direct));
        assert_eq!(ops[1].map_page(0x4100_0000, 4096, Direction::ToDevice, DmaAttrs::NONE).unwrap(), 0x4100_0000);
    }

    #[test]
    fn mixed_ownership_builds_nothing() {
        assert!(matches!(build(true, false), Err(SelectError::GroupMismatch { device, .. }) if device == "14450000.mixer"));
    }
}
