//! Done-when #1, the implementations: swiotlb-xen decisions, map_resource, consistency errors,
//! IOTLB batching, grant DMA, and the SysMMU domain against the register-level model.
#![allow(clippy::single_range_in_vec_init)]

use dom0_dma::grant::{split_grant_dma_addr, GrantDma};
use dom0_dma::hv::XenFeatures;
use dom0_dma::iommu::lpae::{cmd, RecordingCmdq, Smmuv3S1Domain};
use dom0_dma::iommu::sysmmu::SysmmuDomain;
use dom0_dma::iommu::{FlushMode, IommuDma, IommuDomain};
use dom0_dma::sim::{SimArch, SimHypervisor, SimMachine};
use dom0_dma::swiotlb::{decide, BounceReason, ForeignP2m, SwiotlbDecision, XenSwiotlb};
use dom0_dma::{Direct, Direction, DmaAttrs, DmaError, DmaKind, DmaOps, PhysMem, RamMap, SgEntry, Shared};

const RAM: u64 = 0x4000_0000;
const RAM_SIZE: u64 = 32 << 20;
const MMIO: u64 = 0x0900_0000;
const FOREIGN: u64 = 0x2_0000_0000;
const BUF: u64 = RAM + (16 << 20);

fn machine() -> SimMachine {
    let m = SimMachine::new(RAM, RAM_SIZE);
    m.add_foreign_memory(FOREIGN, 1 << 20);
    m
}
fn ram() -> RamMap {
    RamMap::new(&[(RAM, RAM_SIZE)])
}
fn hv(m: &SimMachine) -> SimHypervisor {
    SimHypervisor::new(m, XenFeatures::XEN_DOM0_DIRECT.0)
}
fn smmu(m: &SimMachine) -> Smmuv3S1Domain<SimArch, RecordingCmdq> {
    Smmuv3S1Domain::new(SimArch::new(m, true), RecordingCmdq::default(), 7).unwrap()
}

// ---- swiotlb-xen decisions ----

#[test]
fn swiotlb_decides_on_mask() {
    let p2m = ForeignP2m::default();
    assert_eq!(decide(&p2m, BUF, 4096, u64::MAX, false, true, false), SwiotlbDecision::Direct { bus: BUF, foreign: false });
    assert_eq!(decide(&p2m, BUF, 4096, BUF + 4095, false, true, false), SwiotlbDecision::Direct { bus: BUF, foreign: false });
    assert_eq!(decide(&p2m, BUF, 4096, BUF + 4094, false, true, false), SwiotlbDecision::Bounce(BounceReason::BeyondMask));
    assert_eq!(decide(&p2m, BUF, 4096, u64::MAX, false, true, true), SwiotlbDecision::Bounce(BounceReason::Forced));
}

#[test]
fn swiotlb_decides_on_straddle() {
    let mut p2m = ForeignP2m::default();
    // Local frames are machine-contiguous (direct-mapped): crossing a page is fine.
    assert!(matches!(decide(&p2m, BUF + 0xF00, 0x200, u64::MAX, false, true, false), SwiotlbDecision::Direct { .. }));
    // Two foreign frames that are not machine-contiguous: a straddling buffer bounces.
    p2m.insert(BUF >> 12, FOREIGN >> 12);
    p2m.insert((BUF >> 12) + 1, (FOREIGN >> 12) + 5);
    assert_eq!(
        decide(&p2m, BUF + 0xF00, 0x200, u64::MAX, true, true, false),
        SwiotlbDecision::Bounce(BounceReason::StraddlesNonContiguous)
    );
    // Machine-contiguous foreign frames do not.
    p2m.insert((BUF >> 12) + 1, (FOREIGN >> 12) + 1);
    assert_eq!(
        decide(&p2m, BUF + 0xF00, 0x200, u64::MAX, true, true, false),
        SwiotlbDecision::Direct { bus: FOREIGN + 0xF00, foreign: true }
    );
}

#[test]
fn swiotlb_decides_on_foreign() {
    let mut p2m = ForeignP2m::default();
    p2m.insert(BUF >> 12, FOREIGN >> 12);
    // Foreign frame: the machine address, not dom0's pfn.
    assert_eq!(decide(&p2m, BUF + 8, 64, u64::MAX, false, true, false), SwiotlbDecision::Direct { bus: FOREIGN + 8, foreign: true });
    // Non-coherent device and no GNTTABOP_cache_flush: cannot maintain the cache, bounce.
    assert_eq!(decide(&p2m, BUF + 8, 64, u64::MAX, false, false, false), SwiotlbDecision::Bounce(BounceReason::ForeignNeedsCacheFlush));
    // Coherent device: no maintenance needed.
    assert!(matches!(decide(&p2m, BUF + 8, 64, u64::MAX, true, false, false), SwiotlbDecision::Direct { .. }));
    // A foreign machine address beyond the mask bounces.
    assert_eq!(decide(&p2m, BUF, 64, 0xFFFF_FFFF, true, true, false), SwiotlbDecision::Bounce(BounceReason::BeyondMask));
}

#[test]
fn swiotlb_foreign_frame_end_to_end_with_cache_flush_hypercall() {
    let m = machine();
    let h = hv(&m);
    let p2m = ForeignP2m::shared();
    // Backend: dom1 offers a frame; dom0 grant-maps it at BUF.
    h.offer_grant(1, 42, FOREIGN >> 12, false);
    let gm = p2m.borrow_mut().map_grant(&h, BUF, 1, 42, false).unwrap();
    assert_eq!(gm.dev_bus_addr, FOREIGN);
    m.write(BUF, b"from the frontend").unwrap(); // CPU writes through the grant mapping
    let mut sw = XenSwiotlb::new(SimArch::new(&m, false), h.clone(), p2m.clone(), u64::MAX, ram(), 1 << 20).unwrap();
    let dma = sw.map_page(BUF, 17, Direction::ToDevice, DmaAttrs::NONE).unwrap();
    assert_eq!(dma, FOREIGN, "device gets the machine address from dev_bus_addr");
    let mut seen = [0u8; 17];
    m.machine_read(dma, &mut seen).unwrap();
    assert_eq!(&seen, b"from the frontend");
    assert_eq!(h.counts().cache_flushes, 1, "foreign frame maintained by GNTTABOP_cache_flush");
    assert_eq!(m.cache_counts().for_device, 0, "not by the arch path");
    sw.unmap_page(dma, 17, Direction::ToDevice, DmaAttrs::NONE).unwrap();
    // A local buffer uses the arch path.
    let d2 = sw.map_page(BUF + 0x10000, 64, Direction::ToDevice, DmaAttrs::NONE).unwrap();
    assert_eq!(m.cache_counts().for_device, 1);
    sw.unmap_page(d2, 64, Direction::ToDevice, DmaAttrs::NONE).unwrap();
    p2m.borrow_mut().unmap_grant(&h, BUF, gm).unwrap();
    assert_eq!(h.counts().live_grant_maps, 0);
}

#[test]
fn swiotlb_bounces_beyond_mask_and_copies_back() {
    let m = machine();
    let mask = BUF - 1; // the buffer is just above what the device reaches
    let mut sw = XenSwiotlb::new(SimArch::new(&m, false), hv(&m), ForeignP2m::shared(), mask, ram(), 1 << 20).unwrap();
    m.write(BUF, &[0xAB; 4096]).unwrap();
    let dma = sw.map_page(BUF, 4096, Direction::Bidirectional, DmaAttrs::NONE).unwrap();
    assert!(dma + 4095 <= mask);
    let (pool, size) = sw.pool_range();
    assert!(dma >= pool && dma < pool + size as u64);
    let mut seen = [0u8; 4096];
    m.machine_read(dma, &mut seen).unwrap();
    assert_eq!(seen, [0xAB; 4096]);
    m.machine_write(dma, &[0xCD; 4096]).unwrap(); // the device writes the bounce buffer
    sw.unmap_page(dma, 4096, Direction::Bidirectional, DmaAttrs::NONE).unwrap();
    m.read(BUF, &mut seen).unwrap();
    assert_eq!(seen, [0xCD; 4096]);
    assert_eq!(sw.stats().bounced, 1);
    assert_eq!(sw.pool_stats().live, 0);
    assert!(matches!(
        sw.map_page(BUF, 1 << 20, Direction::ToDevice, DmaAttrs::NONE),
        Err(DmaError::TooLarge { .. })
    ));
}

// ---- map_resource ----

#[test]
fn map_resource_is_mmio_only_in_every_implementation() {
    let m = machine();
    let h = hv(&m);
    let mut all: Vec<Box<dyn DmaOps>> = vec![
        Box::new(Direct::new(SimArch::new(&m, true), u64::MAX, ram())),
        Box::new(XenSwiotlb::new(SimArch::new(&m, true), h.clone(), ForeignP2m::shared(), u64::MAX, ram(), 1 << 16).unwrap()),
        Box::new(IommuDma::new(SimArch::new(&m, true), smmu(&m), u64::MAX, ram())),
    ];
    for ops in all.iter_mut() {
        let e = ops.map_resource(RAM + 0x1000, 0x100, Direction::ToDevice, DmaAttrs::NONE).unwrap_err();
        assert_eq!(e, DmaError::ResourceIsRam { phys: RAM + 0x1000, size: 0x100 }, "{:?}", ops.kind());
        assert!(e.to_string().contains("MMIO only"));
        // Straddling into RAM is RAM too.
        assert!(matches!(ops.map_resource(RAM - 0x80, 0x100, Direction::ToDevice, DmaAttrs::NONE), Err(DmaError::ResourceIsRam { .. })));
        let d = ops.map_resource(MMIO + 0x40, 0x10, Direction::FromDevice, DmaAttrs::NONE).unwrap();
        if ops.kind() != DmaKind::IommuDma {
            assert_eq!(d, MMIO + 0x40, "1:1 on ARM");
        }
        ops.unmap_resource(d, 0x10, Direction::FromDevice, DmaAttrs::NONE).unwrap();
    }
    // Mask-checked.
    let mut d = Direct::new(SimArch::new(&m, true), 0x00FF_FFFF, ram());
    assert!(matches!(d.map_resource(MMIO, 0x10, Direction::ToDevice, DmaAttrs::NONE), Err(DmaError::MaskExceeded { .. })));
    // Grant DMA cannot hand MMIO to another domain.
    let mut g = GrantDma::new(SimArch::new(&m, true), h, 1, 256, ram());
    assert!(matches!(g.map_resource(MMIO, 0x10, Direction::ToDevice, DmaAttrs::NONE), Err(DmaError::Unsupported { .. })));
}

#[test]
fn iommu_map_resource_maps_mmio_as_device_memory() {
    let m = machine();
    let mut io = IommuDma::new(SimArch::new(&m, true), smmu(&m), u64::MAX, ram());
    let d = io.map_resource(MMIO + 0x40, 0x10, Direction::FromDevice, DmaAttrs::NONE).unwrap();
    let (pa, prot) = io.domain().iova_to_phys(d).unwrap();
    assert_eq!(pa, MMIO + 0x40);
    assert!(prot.mmio);
}

// ---- consistency errors ----

fn check_errors(ops: &mut dyn DmaOps, buf: u64) {
    let kind = ops.kind();
    let d = ops.map_page(buf, 512, Direction::ToDevice, DmaAttrs::NONE).unwrap();
    assert_eq!(
        ops.unmap_page(d, 256, Direction::ToDevice, DmaAttrs::NONE),
        Err(DmaError::SizeMismatch { dma: d, mapped: 512, requested: 256 }),
        "{kind}"
    );
    // Still mapped after the refused unmap.
    ops.sync_for_device(d, 512, Direction::ToDevice).unwrap();
    ops.unmap_page(d, 512, Direction::ToDevice, DmaAttrs::NONE).unwrap();
    assert_eq!(ops.unmap_page(d, 512, Direction::ToDevice, DmaAttrs::NONE), Err(DmaError::DoubleUnmap { dma: d }), "{kind}");
    let bogus = d ^ 0x7_0000;
    assert_eq!(ops.unmap_page(bogus, 512, Direction::ToDevice, DmaAttrs::NONE), Err(DmaError::NotMapped { dma: bogus }), "{kind}");
    assert!(matches!(ops.sync_for_cpu(bogus, 4, Direction::ToDevice), Err(DmaError::NotMapped { .. })), "{kind}");
    assert_eq!(ops.map_page(buf, 0, Direction::ToDevice, DmaAttrs::NONE), Err(DmaError::ZeroSize), "{kind}");
}

#[test]
fn unmap_errors_are_errors_not_panics_in_every_implementation() {
    let before = dom0_dma::log::warning_count();
    let m = machine();
    let h = hv(&m);
    check_errors(&mut Direct::new(SimArch::new(&m, false), u64::MAX, ram()), BUF);
    check_errors(&mut XenSwiotlb::new(SimArch::new(&m, false), h.clone(), ForeignP2m::shared(), u64::MAX, ram(), 1 << 16).unwrap(), BUF);
    check_errors(
        &mut XenSwiotlb::new(SimArch::new(&m, false), h.clone(), ForeignP2m::shared(), u64::MAX, ram(), 1 << 16).unwrap().force_bounce(true),
        BUF,
    );
    check_errors(&mut IommuDma::new(SimArch::new(&m, false), smmu(&m), u64::MAX, ram()), BUF);
    check_errors(&mut GrantDma::new(SimArch::new(&m, false), h, 3, 256, ram()), BUF);
    assert!(dom0_dma::log::warning_count() >= before + 5 * 4, "each error is logged");
}

#[test]
fn coherent_buffers_free_once() {
    let m = machine();
    let mut io = IommuDma::new(SimArch::new(&m, true), smmu(&m), u64::MAX, ram());
    let b = io.alloc_coherent(5000).unwrap();
    assert_eq!(b.size, 8192);
    assert_eq!(io.domain().iova_to_phys(b.dma + 4096).unwrap().0, b.phys + 4096);
    io.free_coherent(b).unwrap();
    assert!(matches!(io.free_coherent(b), Err(DmaError::DoubleUnmap { .. })));
    io.check_consistency().unwrap();
}

// ---- IommuDma: batching, cross-checks ----

#[test]
fn sg_unmap_is_one_invalidation_and_deferred_mode_batches() {
    let m = machine();
    let mut io = IommuDma::new(SimArch::new(&m, true), smmu(&m), u64::MAX, ram());
    let mut sg: Vec<SgEntry> = (0..16).map(|i| SgEntry::new(BUF + i * 0x3000 + 0x10, 0x1800)).collect();
    assert_eq!(io.map_sg(&mut sg, Direction::FromDevice, DmaAttrs::NONE).unwrap(), 16);
    for s in &sg {
        assert_eq!(io.domain().iova_to_phys(s.dma).unwrap().0, s.phys);
        assert_eq!(io.domain().iova_to_phys(s.dma + s.len as u64 - 1).unwrap().0, s.phys + s.len as u64 - 1);
    }
    io.check_consistency().unwrap();
    let before = io.stats().iotlb_syncs;
    io.unmap_sg(&sg, Direction::FromDevice, DmaAttrs::NONE).unwrap();
    assert_eq!(io.stats().iotlb_syncs - before, 1, "one invalidation for a 16-entry list");
    let syncs = io.domain().cmdq().cmds.iter().filter(|c| c[0] & 0xFF == cmd::CMD_SYNC).count();
    assert_eq!(syncs, 1);
    assert_eq!(io.domain().mapped_bytes(), 0);

    let mut io = IommuDma::new(SimArch::new(&m, true), smmu(&m), u64::MAX, ram()).with_flush_mode(FlushMode::Deferred { batch: 32 });
    let ds: Vec<u64> = (0..64).map(|i| io.map_page(BUF + i * 4096, 4096, Direction::ToDevice, DmaAttrs::NONE).unwrap()).collect();
    for d in &ds {
        io.unmap_page(*d, 4096, Direction::ToDevice, DmaAttrs::NONE).unwrap();
    }
    assert_eq!(io.stats().unmaps, 64);
    assert_eq!(io.stats().iotlb_syncs, 2, "64 unmaps, batches of 32");
    assert_eq!(io.iova_stats().live, 0, "IOVAs released only after their invalidation");
    let d = io.map_page(BUF, 4096, Direction::ToDevice, DmaAttrs::NONE).unwrap();
    io.unmap_page(d, 4096, Direction::ToDevice, DmaAttrs::NONE).unwrap();
    assert_eq!(io.pending_unmaps(), 1);
    assert!(io.iova_stats().live > 0, "queued IOVA not reusable yet");
    io.flush();
    assert_eq!((io.pending_unmaps(), io.iova_stats().live, io.stats().iotlb_syncs), (0, 0, 3));
}

#[test]
fn to_device_mappings_are_read_only_in_the_io_page_table() {
    let m = machine();
    let mut io = IommuDma::new(SimArch::new(&m, true), smmu(&m), u64::MAX, ram());
    let r = io.map_page(BUF, 100, Direction::ToDevice, DmaAttrs::NONE).unwrap();
    let w = io.map_page(BUF + 4096, 100, Direction::FromDevice, DmaAttrs::NONE).unwrap();
    assert!(!io.domain().iova_to_phys(r).unwrap().1.write);
    assert!(io.domain().iova_to_phys(w).unwrap().1.write);
}

#[test]
fn lpae_table_and_iova_allocator_agree() {
    let m = machine();
    let mut io = IommuDma::new(SimArch::new(&m, true), smmu(&m), u64::MAX, ram());
    let mut live = Vec::new();
    for i in 0..50u64 {
        let size = 1 + (i * 7919) as usize % (3 << 20);
        let d = io.map_page(RAM + (i % 4) * (4 << 20) + (i * 64) % 4096, size, Direction::Bidirectional, DmaAttrs::NONE).unwrap();
        live.push((d, size));
        if i % 3 == 0 {
            let (d, s) = live.remove(0);
            io.unmap_page(d, s, Direction::Bidirectional, DmaAttrs::NONE).unwrap();
        }
    }
    io.check_consistency().unwrap();
    let leaves: u64 = io.domain().leaves().iter().map(|l| l.2).sum();
    assert_eq!(leaves, io.domain().mapped_bytes());
    for (d, s) in live {
        io.unmap_page(d, s, Direction::Bidirectional, DmaAttrs::NONE).unwrap();
    }
    assert!(io.domain().leaves().is_empty());
    assert_eq!(io.iova_stats().live, 0);
}

#[test]
fn smmuv3_context_descriptor_fields() {
    let m = machine();
    let d = smmu(&m);
    let cd = d.context_descriptor();
    assert_eq!(cd[0] & 0x3F, 16, "T0SZ");
    assert_eq!(cd[0] >> 31 & 1, 1, "V");
    assert_eq!(cd[0] >> 41 & 1, 1, "AA64");
    assert_eq!(cd[0] >> 48, 7, "ASID");
    assert_eq!(cd[1], d.root());
}

// ---- The Exynos SysMMU domain against the register-level model ----

#[test]
fn sysmmu_domain_shared_by_fimd_and_mixer_against_the_model() {
    use std::rc::Rc;
    use sysmmu_model::mem::SimMem;
    use sysmmu_model::sysmmu::{ModelConfig, SysmmuModel};
    let mem = Rc::new(SimMem::new(&[(0x4000_0000..0x4100_0000)]));
    let fimd = SysmmuModel::new(ModelConfig::v3(3), mem.clone());
    let mixer = SysmmuModel::new(ModelConfig::v3(3), mem.clone());
    let mut dom = SysmmuDomain::new(&*mem, 0x4080_0000, 64 << 10).unwrap();
    dom.attach(&fimd);
    dom.attach(&mixer);
    assert!(fimd.is_enabled() && mixer.is_enabled());
    assert_eq!(fimd.pt_base(), dom.pgd());
    let mut g = Default::default();
    dom.map(0x1000_0000, 0x4010_0000, 0x3000, dom0_dma::iommu::IoProt::RW).unwrap();
    mem.write(0x4010_1000, b"pixels").unwrap();
    mem.clean_dcache(0x4010_1000, 6);
    let mut buf = [0u8; 6];
    mixer.dma_read(0x1000_1000, &mut buf).unwrap();
    assert_eq!(&buf, b"pixels");
    fimd.dma_read(0x1000_1000, &mut buf).unwrap();
    assert_eq!(&buf, b"pixels");
    dom.unmap(0x1000_0000, 0x3000, &mut g).unwrap();
    dom.iotlb_sync(&g);
    assert!(mixer.dma_read(0x1000_1000, &mut buf).is_err(), "flushed: the stale TLB entry is gone");
    assert!(fimd.dma_read(0x1000_0000, &mut buf).is_err());
    assert_eq!(dom.block_timeouts(), 0);
}

#[test]
fn sysmmu_iommu_dma_round_trip_and_batching() {
    // The same domain type as IommuDma's table, on the simulator's memory, with the model's
    // registers (the model only handshakes here; translation is checked by walking the table).
    use std::rc::Rc;
    use sysmmu_model::mem::SimMem;
    use sysmmu_model::sysmmu::{ModelConfig, SysmmuModel};
    let m = machine();
    let regs_mem = Rc::new(SimMem::new(&[(0..0x1000)]));
    let regs = SysmmuModel::new(ModelConfig::v3(3), regs_mem);
    let arch = SimArch::new(&m, false);
    let tables = dom0_dma::ArchDmaOps::alloc_pages(&arch, 256 << 10, 16 << 10).unwrap();
    let mut dom = SysmmuDomain::new(arch.clone(), tables, 256 << 10).unwrap();
    dom.attach(&regs);
    let mut io = IommuDma::new(arch, dom, 0xFFFF_FFFF, ram());
    let mut sg: Vec<SgEntry> = (0..8).map(|i| SgEntry::new(BUF + i * 0x2000, 0x1000)).collect();
    io.map_sg(&mut sg, Direction::ToDevice, DmaAttrs::NONE).unwrap();
    for s in &sg {
        assert_eq!(io.domain().iova_to_phys(s.dma).unwrap().0, s.phys);
        assert!(s.dma + 0xFFF <= 0xFFFF_FFFF);
    }
    io.check_consistency().unwrap();
    let ops_before = io.domain().invalidation_ops();
    io.unmap_sg(&sg, Direction::ToDevice, DmaAttrs::NONE).unwrap();
    assert_eq!(io.stats().iotlb_syncs, 1);
    assert!(io.domain().invalidation_ops() - ops_before <= 8, "per-entry flushes for one small batch");
    assert_eq!(io.domain().lv2_tables(), 0, "emptied level-2 tables are freed");
}

// ---- Grant DMA ----

#[test]
fn grant_dma_addresses_and_read_only_to_device() {
    let m = machine();
    let h = hv(&m);
    let mut g = GrantDma::new(SimArch::new(&m, true), h.clone(), 5, 1024, ram());
    m.write(BUF + 0xFF0, b"0123456789abcdefXYZ").unwrap();
    let d = g.map_page(BUF + 0xFF0, 19, Direction::ToDevice, DmaAttrs::NONE).unwrap();
    let (gref, off) = split_grant_dma_addr(d).unwrap();
    assert_eq!(d >> 63, 1);
    assert_eq!(off, 0xFF0);
    assert_eq!(d, 1 << 63 | u64::from(gref) << 12 | 0xFF0);
    assert_eq!(h.counts().live_front_grants, 2, "two pages, two consecutive grants");
    let (ma, ro) = h.resolve_grant_addr(5, d).unwrap();
    assert!(ro, "to-device is granted read-only");
    assert_eq!(ma, BUF + 0xFF0);
    let (ma2, _) = h.resolve_grant_addr(5, d + 0x10).unwrap();
    assert_eq!(ma2, BUF + 0x1000, "next gref is the next page");
    assert!(h.resolve_grant_addr(6, d).is_err(), "only the backend");
    let w = g.map_page(BUF + 0x4000, 64, Direction::FromDevice, DmaAttrs::NONE).unwrap();
    assert!(!h.resolve_grant_addr(5, w).unwrap().1);
    // A backend still holding a grant: unmap reports it and the references are never reused.
    h.backend_map(5, split_grant_dma_addr(w).unwrap().0).unwrap();
    assert!(g.unmap_page(w, 64, Direction::FromDevice, DmaAttrs::NONE).is_err());
    assert_eq!(g.leaked_grefs(), 1);
    g.unmap_page(d, 19, Direction::ToDevice, DmaAttrs::NONE).unwrap();
    assert_eq!(g.grefs_in_use(), 1);
    assert!(g.set_dma_mask(0xFFFF_FFFF).is_err());
}

// ---- Groups share one instance ----

#[test]
fn group_members_share_one_iommu_domain() {
    let m = machine();
    let shared = Shared::new(IommuDma::new(SimArch::new(&m, true), smmu(&m), u64::MAX, ram()));
    let mut fimd = shared.clone();
    let mut mixer = shared.clone();
    assert!(fimd.same_as(&mixer));
    let a = fimd.map_page(BUF, 4096, Direction::ToDevice, DmaAttrs::NONE).unwrap();
    let b = mixer.map_page(BUF + 4096, 4096, Direction::ToDevice, DmaAttrs::NONE).unwrap();
    assert_ne!(a, b, "one IOVA space");
    // A buffer mapped by one is visible at the same IOVA to the other (same table).
    assert_eq!(shared.0.borrow().domain().iova_to_phys(a).unwrap().0, BUF);
    mixer.unmap_page(a, 4096, Direction::ToDevice, DmaAttrs::NONE).unwrap();
    fimd.unmap_page(b, 4096, Direction::ToDevice, DmaAttrs::NONE).unwrap();
}

#[test]
fn sysmmu_v3_iova_ranges_keep_the_prefetch_holes() {
    use std::rc::Rc;
    use sysmmu_model::mem::SimMem;
    use sysmmu_model::sysmmu::{ModelConfig, SysmmuModel};
    for (minor, want) in [(1u8, 128u64 << 10), (3, 256 << 10)] {
        let m = machine();
        let regs = SysmmuModel::new(ModelConfig::v3(minor), Rc::new(SimMem::new(&[0..0x1000])));
        let arch = SimArch::new(&m, true);
        let tables = dom0_dma::ArchDmaOps::alloc_pages(&arch, 256 << 10, 16 << 10).unwrap();
        let mut dom = SysmmuDomain::new(arch.clone(), tables, 256 << 10).unwrap();
        dom.attach(&regs);
        let mut io = IommuDma::new(arch, dom, 0xFFFF_FFFF, ram());
        assert_eq!((io.iova_guard().align, io.iova_guard().hole), (want, want));
        let maps: Vec<(u64, usize)> = (0..20u64)
            .map(|i| {
                let len = 1 + (i as usize * 37_000) % (600 << 10);
                (io.map_page(BUF + i * 4096, len, Direction::Bidirectional, DmaAttrs::NONE).unwrap(), len)
            })
            .collect();
        for &(d, len) in &maps {
            let start = d & !0xFFF;
            assert_eq!(start % want, 0, "v3.{minor}: IOVA {d:#x} aligned");
            let end = (d + len as u64 + 0xFFF) & !0xFFF;
            for hole in (end..end + want).step_by(4096) {
                assert!(io.domain().iova_to_phys(hole).is_none(), "v3.{minor}: hole after {d:#x} unmapped at {hole:#x}");
            }
        }
        io.check_consistency().unwrap();
        for (d, len) in maps {
            io.unmap_page(d, len, Direction::Bidirectional, DmaAttrs::NONE).unwrap();
        }
        assert_eq!(io.iova_stats().live, 0);
    }
}

#[test]
fn swiotlb_devices_can_share_one_bounce_pool() {
    use dom0_dma::swiotlb::BouncePool;
    let m = machine();
    let arch = SimArch::new(&m, true);
    let pool = BouncePool::allocate(&arch, 64 << 10).unwrap();
    let p2m = ForeignP2m::shared();
    let mut a = XenSwiotlb::with_pool(arch.clone(), hv(&m), p2m.clone(), u64::MAX, ram(), pool.clone()).force_bounce(true);
    let mut b = XenSwiotlb::with_pool(arch, hv(&m), p2m, u64::MAX, ram(), pool.clone()).force_bounce(true);
    let x = a.map_page(BUF, 4096, Direction::ToDevice, DmaAttrs::NONE).unwrap();
    let y = b.map_page(BUF + 4096, 4096, Direction::ToDevice, DmaAttrs::NONE).unwrap();
    assert_ne!(x, y);
    assert_eq!(pool.borrow().stats().live, 8192);
    // Each device unmaps only its own mappings.
    assert!(matches!(b.unmap_page(x, 4096, Direction::ToDevice, DmaAttrs::NONE), Err(DmaError::NotMapped { .. })));
    a.unmap_page(x, 4096, Direction::ToDevice, DmaAttrs::NONE).unwrap();
    b.unmap_page(y, 4096, Direction::ToDevice, DmaAttrs::NONE).unwrap();
    assert_eq!(pool.borrow().stats().live, 0);
}
