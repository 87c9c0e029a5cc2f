//! The driver and the shadow table run against the register-level SysMMU model (tests/models),
//! through the same `Mmio`/`PhysMem` traits they use on the Exynos5250.
#![allow(clippy::single_range_in_vec_init)]

use std::collections::BTreeMap;
use std::rc::Rc;
use std::vec::Vec;

use platform::exynos5250::sysmmu_pt::{
    lv1_entry_pa, Lv1Entry, Lv2TableAllocator, Prot, PtFormat, SysmmuPageTable, LV2_TABLE_SIZE,
};
use platform::{Mmio, PhysMem};
use proptest::prelude::*;
use sysmmu_model::{DmaError, ModelConfig, ModelFault, SimMem, SysmmuModel};

use super::regs::*;
use super::*;

const RAM_START: u64 = 0x4000_0000;
const RAM_END: u64 = 0x8000_0000;
const PGD: u64 = 0x4000_0000;
const POOL: u64 = 0x4010_0000;
const MIB: u64 = 1 << 20;

/// Level-2 tables from a fixed pool, recycled.
struct Pool {
    next: u64,
    free: Vec<u64>,
    live: usize,
}

impl Pool {
    fn new() -> Self {
        Pool { next: POOL, free: Vec::new(), live: 0 }
    }
}

impl Lv2TableAllocator for Pool {
    fn alloc_lv2(&mut self) -> Option<u64> {
        self.live += 1;
        Some(self.free.pop().unwrap_or_else(|| {
            let p = self.next;
            self.next += LV2_TABLE_SIZE as u64;
            p
        }))
    }
    fn free_lv2(&mut self, pa: u64) {
        self.live -= 1;
        self.free.push(pa);
    }
}

fn rig(cfg: ModelConfig) -> (Rc<SimMem>, SysmmuModel) {
    let mem = Rc::new(SimMem::new(&[RAM_START..RAM_END]));
    let model = SysmmuModel::new(cfg, mem.clone());
    (mem, model)
}

type Shadow<'a> = ShadowTable<&'a SimMem, Pool, &'a SysmmuModel>;

fn shadow<'a>(mem: &'a SimMem, model: &'a SysmmuModel) -> Shadow<'a> {
    let mmu = Sysmmu::probe(model).expect("known version");
    let mut sh = ShadowTable::new(mem, Pool::new(), mmu.pt_format(), PGD).unwrap();
    sh.attach(mmu).map_err(|(e, _)| e).unwrap();
    sh
}

/// A DMA by the master; a fault is handled by the driver (decoded, cleared, resumed) and returned.
fn dma(model: &SysmmuModel, iova: u64, write: bool) -> Result<u64, SysmmuFault> {
    match model.translate(iova as u32, write) {
        Ok(pa) => Ok(pa),
        Err(DmaError::Fault { .. }) => {
            assert_eq!(model.translate(iova as u32, write), Err(DmaError::Stalled), "blocked on fault");
            let mmu = Sysmmu::probe(model).unwrap();
            let f = mmu.handle_fault(true).expect("a fault is pending");
            assert!(!model.irq_pending() && !model.is_blocked(), "cleared and resumed");
            Err(f)
        }
        Err(e) => panic!("unexpected DMA result {e:?}"),
    }
}

fn v3(minor: u8) -> ModelConfig {
    ModelConfig::v3(minor)
}

#[test]
fn version_decode_classify_and_cfg() {
    assert_eq!(SysmmuVersion::from_reg(0x8000_0001), SysmmuVersion::new(1, 0));
    assert_eq!(SysmmuVersion::from_reg((3 << 28) | (3 << 21)), SysmmuVersion::new(3, 3));
    assert_eq!(SysmmuVersion::from_reg((5 << 28) | (1 << 21) | 0x1fffff), SysmmuVersion::new(5, 1));
    assert_eq!(classify(3 << 28), Ok((SysmmuVersion::new(3, 0), RegLayout::V1)));
    assert_eq!(classify(2 << 28).map(|v| v.1), Ok(RegLayout::V1));
    assert_eq!(classify(5 << 28).map(|v| v.1), Ok(RegLayout::V5));
    assert!(matches!(classify(7 << 28), Err(SysmmuError::Unsupported { .. })));
    assert!(matches!(classify(0), Err(SysmmuError::UnknownVersion { .. })));
    assert!(matches!(classify((3 << 28) | (4 << 21)), Err(SysmmuError::UnknownVersion { .. })));
    assert!(matches!(classify(0xF000_0000), Err(SysmmuError::UnknownVersion { .. })));
    let qos = 15 << 7;
    assert_eq!(cfg_for(SysmmuVersion::new(3, 1)), 1 | qos | 4);
    assert_eq!(cfg_for(SysmmuVersion::new(3, 2)), 1 | qos | (1 << 20) | (1 << 22) | 4);
    assert_eq!(cfg_for(SysmmuVersion::new(3, 3)), qos | (1 << 20) | (1 << 24) | 4);
    assert_eq!(cfg_for(SysmmuVersion::new(5, 0)), qos | (1 << 20) | (1 << 24) | 4);
    let e = SysmmuError::UnknownVersion { raw: 0xF000_0000, version: SysmmuVersion::new(15, 0) };
    assert_eq!(std::format!("{e}"), "unknown SysMMU VERSION 0xf0000000 (v15.0); device left blocked");
}

#[test]
fn unknown_or_unsupported_version_is_an_error_and_leaves_the_device_blocked() {
    for raw in [0u32, 0xF000_0000, (3 << 28) | (9 << 21), 7 << 28, 0xFFFF_FFFF] {
        let (_mem, model) = rig(ModelConfig { version_override: Some(raw), ..v3(3) });
        assert!(!model.is_isolated(), "out of reset the SysMMU bypasses");
        let err = Sysmmu::probe(&model).err().expect("refused");
        assert!(matches!(err, SysmmuError::UnknownVersion { .. } | SysmmuError::Unsupported { .. }));
        assert_eq!(model.ctrl(), CTRL_BLOCK);
        assert!(model.is_blocked());
        assert_eq!(model.translate(0x4000_0000, false), Err(DmaError::Stalled), "never wide open");
    }
}

#[test]
fn block_handshake_is_bounded() {
    let (_mem, model) = rig(ModelConfig { block_latency: Some(10), ..v3(3) });
    let mmu = Sysmmu::probe(&model).unwrap();
    assert_eq!(mmu.block(), Ok(()));
    assert_eq!(model.stats().status_reads, 11);
    mmu.unblock();
    assert!(!model.is_blocked());

    let (_mem, model) = rig(ModelConfig { block_latency: None, ..v3(3) });
    let mmu = Sysmmu::probe(&model).unwrap();
    assert_eq!(mmu.block(), Err(SysmmuError::BlockTimeout { polls: 120 }));
    assert_eq!(model.stats().status_reads, 120);
    assert_eq!(model.ctrl(), CTRL_BLOCK, "left blocked");
    assert_eq!(mmu.enable(PGD), Err(SysmmuError::BlockTimeout { polls: 120 }));
    assert_eq!(model.translate(0x1000, false), Err(DmaError::Stalled));
}

#[test]
fn enable_programs_cfg_and_pt_base_per_version() {
    for cfg in [ModelConfig::v2(), v3(0), v3(1), v3(2), v3(3), ModelConfig::v5()] {
        let (mem, model) = rig(cfg.clone());
        let sh = shadow(&mem, &model);
        let v = sh.sysmmus()[0].version();
        assert_eq!(v, SysmmuVersion::new(cfg.major, cfg.minor));
        assert_eq!(model.cfg_reg(), cfg_for(v));
        assert_eq!(model.pt_base(), PGD);
        assert!(model.is_enabled() && !model.is_blocked());
        assert!(model.stats().flush_all >= 1);
        // Every level-1 entry is the zero link, cleaned.
        assert_eq!(mem.dirty_lines(), 0);
        let zl = sh.table().zero_lv2link();
        assert_eq!(mem.device_read_u32(lv1_entry_pa(PGD, 0xFFF0_0000)), Ok(zl));
    }
}

#[test]
fn disable_is_bypass_and_isolate_is_not() {
    let (mem, model) = rig(v3(3));
    let sh = shadow(&mem, &model);
    let mmu = &sh.sysmmus()[0];
    mmu.disable();
    assert_eq!(model.translate(0x4123_4000, true), Ok(0x4123_4000));
    mmu.isolate();
    assert_eq!(model.translate(0x4123_4000, true), Err(DmaError::Stalled));
}

#[test]
fn resume_after_power_domain_off_reprograms_before_the_master_runs() {
    let (mem, model) = rig(v3(3));
    let mut sh = shadow(&mem, &model);
    sh.map(0x0010_0000, 0x5000_0000, 0x1000, true).unwrap();
    model.power_cycle();
    assert!(!model.is_isolated(), "after power-up the SysMMU bypasses");
    sh.resume().unwrap();
    assert_eq!(model.cfg_reg(), cfg_for(SysmmuVersion::new(3, 3)));
    assert_eq!(dma(&model, 0x0010_0000, true), Ok(0x5000_0000));
    assert!(dma(&model, 0x0020_0000, true).is_err());
}

/// Sections, 64 KiB and 4 KiB pages across level-2 table and section boundaries, on every version.
#[test]
fn map_unmap_all_page_sizes_across_boundaries() {
    for cfg in [ModelConfig::v2(), v3(1), v3(2), v3(3), ModelConfig::v5()] {
        let (mem, model) = rig(cfg);
        let mut sh = shadow(&mem, &model);
        // 0x00F0_0000 .. 0x0221_3000: 4K/64K up to the 1 MiB boundary, then sections, then pages.
        let ipa = 0x00F0_0000 - 0x1_1000;
        let pa = 0x5000_0000 - 0x1_1000;
        let len = 0x1_1000 + 0x30_0000 + 0x21_3000 - 0x20_0000;
        sh.map(ipa, pa, len, true).unwrap();
        assert_eq!(mem.dirty_lines(), 0, "every table write cleaned");
        assert!(matches!(sh.table().lv1_entry(&*mem, 0x0100_0000), Ok(Lv1Entry::Section { .. })));
        assert!(matches!(sh.table().lv1_entry(&*mem, 0x00E0_0000), Ok(Lv1Entry::Lv2Link { .. })));
        for off in (0..len).step_by(0x1000) {
            assert_eq!(dma(&model, ipa + off, true), Ok(pa + off), "iova {:#x}", ipa + off);
        }
        assert_eq!(dma(&model, ipa - 0x1000, false).unwrap_err().kind, FaultKind::Page);
        assert_eq!(dma(&model, ipa + len, false).unwrap_err().iova as u64, ipa + len);

        // Punch holes: a 4K page in a section, a 64K page, across the 1 MiB boundary.
        for (hole, hlen) in [(0x0110_5000u64, 0x1000u64), (0x00EF_0000, 0x1_0000), (0x00FF_F000, 0x2000)] {
            sh.unmap(hole, hlen).unwrap();
            for off in (0..len).step_by(0x1000) {
                let va = ipa + off;
                let gone = va >= hole && va < hole + hlen;
                let r = dma(&model, va, false);
                if gone {
                    assert_eq!(r.unwrap_err().kind, FaultKind::Page, "iova {va:#x} unmapped");
                }
            }
        }
        for off in (0..len).step_by(0x1000) {
            let va = ipa + off;
            let expect = sh.lookup(va).map(|(p, _)| p);
            assert_eq!(dma(&model, va, false).ok(), expect, "iova {va:#x}");
        }
        // Read-only remap of a section: writes fault with the AW access-protection type.
        sh.map(0x0120_0000, 0x5020_0000 + MIB, MIB, false).unwrap();
        assert_eq!(dma(&model, 0x0120_0000, false), Ok(0x5030_0000));
        let f = dma(&model, 0x0120_0000 + 0x4_0000, true).unwrap_err();
        assert_eq!((f.kind, f.access, f.iova), (FaultKind::AccessProtection, FaultAccess::Write, 0x0124_0000));

        sh.unmap(0, 0x0400_0000).unwrap();
        for off in (0..len).step_by(0x1_0000) {
            assert!(dma(&model, ipa + off, false).is_err());
        }
        for i in 0..4096u64 {
            assert_eq!(mem.read_u32(PGD + 4 * i), Ok(sh.table().zero_lv2link()));
        }
        assert_eq!(mem.dirty_lines(), 0);
    }
}

#[test]
fn dma_to_unmapped_iova_faults_and_the_model_reports_it() {
    let (mem, model) = rig(v3(3));
    let mut sh = shadow(&mem, &model);
    sh.map(0x1000_0000, 0x5000_0000, 0x1000, true).unwrap();
    assert_eq!(model.dma(0x1000_0000, 0x1000, true), Ok(std::vec![0x5000_0000]));
    let err = model.dma(0x1000_0800, 0x1000, false).unwrap_err();
    assert_eq!(err, DmaError::Fault { fault: ModelFault::Page { write: false }, iova: 0x1000_1000 });
    assert!(model.irq_pending() && model.is_blocked());
    assert_eq!(model.read32(v1::MMU_INT_STATUS), 1);
    assert_eq!(model.read32(v1::MMU_PAGE_FAULT_ADDR), 0x1000_1000);
    assert_eq!(model.dma(0x1000_0000, 4, false), Err(DmaError::Stalled));
    // Unblocking before INT_CLEAR does not resume the master.
    sh.sysmmus()[0].unblock();
    assert!(model.is_blocked());
    let f = sh.sysmmus()[0].handle_fault(true).unwrap();
    assert_eq!(std::format!("{f}"), "SysMMU page fault at IOVA 0x10001000 (INT_STATUS 0x1, bit 0)");
    assert_eq!(model.dma(0x1000_0000, 4, false), Ok(std::vec![0x5000_0000]));
    assert_eq!(sh.sysmmus()[0].handle_fault(true), Err(SysmmuError::NoFault));
}

/// A fault reaches the CPU the way it does on the Exynos5250: the SysMMU's interrupt line is an
/// input of the interrupt combiner, whose group drives a GIC SPI. The handler finds the SysMMU
/// from the SPI through the combiner's status, takes the fault, and the line (and the SPI) drops.
#[test]
fn fault_interrupt_routed_through_the_combiner_and_cleared_by_the_handler() {
    use platform::exynos5250::combiner::{Combiner, CombinerIrq};
    use platform::exynos5250::SYSMMUS;
    use sysmmu_model::soc::CombinerModel;

    let (mem, model) = rig(v3(3));
    let mut sh = shadow(&mem, &model);
    let mixer = SYSMMUS.iter().find(|s| s.name == "sysmmu_tv").expect("the mixer's SysMMU");
    let input = CombinerIrq::new(mixer.combiner.0, mixer.combiner.1).unwrap();
    let mut combiner = CombinerModel::new();
    combiner.connect(input.group, input.bit, || model.irq_pending());
    let c = Combiner::new(&combiner);
    c.disable_all();
    c.enable(input);
    sh.map(0x2000_0000, 0x5000_0000, 0x1000, true).unwrap();
    assert!(!combiner.spi_level(input.spi()));
    assert!(model.dma(0x2000_1000, 4, true).is_err());
    assert!(combiner.spi_level(input.spi()), "the fault raises the mixer SysMMU's SPI");
    let found: Vec<_> = c.pending_for_spi(input.spi()).collect();
    assert_eq!(found, std::vec![input]);
    let f = sh.sysmmus()[0].handle_fault(true).unwrap();
    assert_eq!(f.kind, FaultKind::Page);
    assert!(!combiner.spi_level(input.spi()), "taking the fault drops the line");
    assert_eq!(model.dma(0x2000_0000, 4, true), Ok(std::vec![0x5000_0000]));
}

#[test]
fn fault_without_resume_keeps_the_master_stopped() {
    let (mem, model) = rig(v3(1));
    let sh = shadow(&mem, &model);
    assert!(model.translate(0x2000, true).is_err());
    let f = sh.sysmmus()[0].handle_fault(false).unwrap();
    assert_eq!(f.kind, FaultKind::Page);
    assert!(!model.irq_pending());
    assert_eq!(model.translate(0x2000, true), Err(DmaError::Stalled));
}

/// Each of the 8 v1-v3 fault types, produced by the model, decoded with its own address register.
#[test]
fn every_v3_fault_type_with_its_address_register() {
    let (mem, model) = rig(ModelConfig { secure_ranges: std::vec![0x7000_0000..0x7010_0000], ..v3(3) });
    let mut pool = Pool::new();
    let mut pt = SysmmuPageTable::new(&*mem, &mut pool, PtFormat::V1, PGD).unwrap();
    let mmu = Sysmmu::probe(&model).unwrap();
    mmu.enable(PGD).unwrap();
    let m = |pt: &mut SysmmuPageTable, pool: &mut Pool, iova: u32, pa: u64, prot: Prot| {
        let f = pt.map(&*mem, pool, iova, pa, 0x1000, prot).unwrap();
        mmu.apply(f).unwrap();
    };
    m(&mut pt, &mut pool, 0x0010_0000, 0x5000_0000, Prot::NONE);
    m(&mut pt, &mut pool, 0x0020_0000, 0x5000_0000, Prot::RO);
    m(&mut pt, &mut pool, 0x0030_0000, 0x2000_0000, Prot::RW); // not RAM
    m(&mut pt, &mut pool, 0x0040_0000, 0x7000_0000, Prot::RW); // secure

    let cases: [(u32, bool, FaultKind, FaultAccess, u8, usize); 6] = [
        (0x0000_1000, false, FaultKind::Page, FaultAccess::Unknown, 0, v1::MMU_PAGE_FAULT_ADDR),
        (0x0010_0000, false, FaultKind::AccessProtection, FaultAccess::Read, 5, v1::MMU_AR_FAULT_ADDR),
        (0x0020_0000, true, FaultKind::AccessProtection, FaultAccess::Write, 7, v1::MMU_AW_FAULT_ADDR),
        (0x0030_0000, true, FaultKind::BusError, FaultAccess::Unknown, 3, v1::MMU_DEFAULT_SLAVE_ADDR),
        (0x0040_0000, false, FaultKind::Security, FaultAccess::Read, 4, v1::MMU_AR_FAULT_ADDR),
        (0x0040_0000, true, FaultKind::Security, FaultAccess::Write, 6, v1::MMU_AW_FAULT_ADDR),
    ];
    for (iova, write, kind, access, bit, reg) in cases {
        let iova = iova + 0x10; // a byte address, not just a page
        assert!(matches!(model.translate(iova, write), Err(DmaError::Fault { .. })));
        assert_eq!(model.read32(reg), iova);
        let f = mmu.handle_fault(true).unwrap();
        assert_eq!((f.kind, f.access, f.bit, f.iova), (kind, access, bit, iova), "{f}");
        assert!(!model.is_blocked());
    }
    // Multi-hit cannot come from a consistent walk: the model raises it as the hardware would.
    for (write, bit, reg) in [(false, 1u8, v1::MMU_AR_FAULT_ADDR), (true, 2, v1::MMU_AW_FAULT_ADDR)] {
        model.inject_fault(ModelFault::MultiHit { write }, 0x0abc_d000 + u32::from(bit));
        assert_eq!(model.read32(reg), 0x0abc_d000 + u32::from(bit));
        let f = mmu.handle_fault(true).unwrap();
        assert_eq!((f.kind, f.bit, f.iova), (FaultKind::MultiHit, bit, 0x0abc_d000 + u32::from(bit)));
        assert_eq!(f.access, if write { FaultAccess::Write } else { FaultAccess::Read });
    }
    // Two pending faults: handled one at a time, the master resumes only after the last.
    model.inject_fault(ModelFault::Page { write: false }, 0x1000);
    model.inject_fault(ModelFault::AccessProt { write: true }, 0x2000);
    assert_eq!(mmu.handle_fault(true).unwrap().bit, 0);
    assert!(model.is_blocked());
    assert_eq!(mmu.handle_fault(true).unwrap().bit, 7);
    assert!(!model.is_blocked());
}

#[test]
fn every_v5_fault_type_with_its_address_register() {
    let (mem, model) = rig(ModelConfig::v5());
    let mut sh = shadow(&mem, &model);
    sh.map(0x0020_0000, 0x5000_0000, 0x1000, false).unwrap();
    let f = dma(&model, 0x0030_0000, false).unwrap_err();
    assert_eq!((f.kind, f.access, f.bit, f.iova), (FaultKind::Page, FaultAccess::Read, 1, 0x0030_0000));
    let f = dma(&model, 0x0030_0000, true).unwrap_err();
    assert_eq!((f.kind, f.access, f.bit), (FaultKind::Page, FaultAccess::Write, 17));
    let f = dma(&model, 0x0020_0004, true).unwrap_err();
    assert_eq!((f.kind, f.access, f.bit, f.iova), (FaultKind::AccessProtection, FaultAccess::Write, 19, 0x0020_0004));
    let mmu = &sh.sysmmus()[0];
    for (fault, bit, kind) in [
        (ModelFault::PageTableWalk { write: false }, 0u8, FaultKind::PageTableWalk),
        (ModelFault::MultiHit { write: true }, 18, FaultKind::MultiHit),
        (ModelFault::Security { write: false }, 4, FaultKind::Security),
        (ModelFault::Security { write: true }, 20, FaultKind::Security),
    ] {
        model.inject_fault(fault, 0x00C0_0000 + u32::from(bit));
        let f = mmu.handle_fault(true).unwrap();
        assert_eq!((f.kind, f.bit, f.iova), (kind, bit, 0x00C0_0000 + u32::from(bit)));
    }
}

/// The v3.x prefetch buffer caches the fault entries next to a walked page. Mapping a neighbour
/// without flushing (the rule broken on purpose) faults; the shadow table's real code never does.
#[test]
fn prefetch_quirk_bites_when_the_flush_rule_is_broken() {
    for minor in [1u8, 2, 3] {
        let (mem, model) = rig(v3(minor));
        let mut pool = Pool::new();
        let mut pt = SysmmuPageTable::new(&*mem, &mut pool, PtFormat::V1, PGD).unwrap();
        let mmu = Sysmmu::probe(&model).unwrap();
        mmu.enable(PGD).unwrap();
        let f = pt.map(&*mem, &mut pool, 0x0010_0000, 0x5000_0000, 0x1000, Prot::RW).unwrap();
        mmu.flush_flpd(0x0010_0000); // only the level-1 part of the rule
        let _ = f;
        assert_eq!(model.translate(0x0010_0000, false), Ok(0x5000_0000));
        // Neighbour mapped, no TLB/prefetch flush: the cached fault entry bites.
        pt.map(&*mem, &mut pool, 0x0010_3000, 0x5000_3000, 0x1000, Prot::RW).unwrap();
        assert_eq!(
            model.translate(0x0010_3000, false),
            Err(DmaError::Fault { fault: ModelFault::Page { write: false }, iova: 0x0010_3000 }),
            "v3.{minor}: stale prefetched fault entry"
        );
        assert!(model.stats().prefetch_hits >= 1);
        mmu.handle_fault(true).unwrap();
        // The driver's flush of the mapped range fixes it.
        mmu.flush_entries(0x0010_3000, 0x1000).unwrap();
        assert_eq!(model.translate(0x0010_3000, false), Ok(0x5000_3000));

        // The same sequence through the shadow table never faults.
        let (mem, model) = rig(v3(minor));
        let mut sh = shadow(&mem, &model);
        sh.map(0x0010_0000, 0x5000_0000, 0x1000, true).unwrap();
        assert_eq!(model.translate(0x0010_0000, false), Ok(0x5000_0000));
        sh.map(0x0010_3000, 0x5000_3000, 0x1000, true).unwrap();
        assert_eq!(model.translate(0x0010_3000, false), Ok(0x5000_3000));
    }
}

/// For regions the driver lays out itself (no flush on map), the 128/256 KiB gap rule is what keeps
/// the prefetch from caching a future neighbour's fault entries.
#[test]
fn prefetch_gap_rule_layout() {
    for minor in [1u8, 2, 3] {
        let version = SysmmuVersion::new(3, minor);
        let granule = prefetch_granule(version);
        assert_eq!(granule, if minor == 1 { 128 << 10 } else { 256 << 10 });
        // Laid out by IovaLayout, mapped without any TLB flush: never faults.
        let mut layout = IovaLayout::new(version, 0x0100_0000, 0x0200_0000);
        let places = [0x3000u64, 0x1_1000, 0x1000];
        let starts: Vec<u32> = places.iter().map(|&l| layout.place(l).unwrap()).collect();
        for w in starts.windows(2) {
            assert!(u64::from(w[1]) % granule == 0 && u64::from(w[1] - w[0]) >= granule + 0x1000);
        }
        let broken = [starts[0] + 0x3000, starts[0] + 0x5000]; // packed right after the first region
        for (regions, should_fault) in [(starts.clone(), false), (std::vec![starts[0], broken[0], broken[1]], true)] {
            let (mem, model) = rig(v3(minor));
            let mut pool = Pool::new();
            let mut pt = SysmmuPageTable::new(&*mem, &mut pool, PtFormat::V1, PGD).unwrap();
            let mmu = Sysmmu::probe(&model).unwrap();
            mmu.enable(PGD).unwrap();
            let mut faulted = false;
            for (i, &r) in regions.iter().enumerate() {
                let f = pt.map(&*mem, &mut pool, r, 0x5000_0000 + u64::from(r), 0x1000, Prot::RW).unwrap();
                if f.flpd {
                    mmu.flush_flpd(r);
                }
                if model.translate(r, true).is_err() {
                    faulted = true;
                    mmu.handle_fault(true).unwrap();
                }
                let _ = i;
            }
            assert_eq!(faulted, should_fault, "v3.{minor} regions {regions:x?}");
        }
    }
    // v3.2 needs 256 KiB: a 128 KiB (v3.1) layout is not enough.
    let mut l31 = IovaLayout::new(SysmmuVersion::new(3, 1), 0x0100_0000, 0x0200_0000);
    let a = l31.place(0x1000).unwrap();
    let b = l31.place(0x1000).unwrap();
    let (mem, model) = rig(v3(2));
    let mut pool = Pool::new();
    let mut pt = SysmmuPageTable::new(&*mem, &mut pool, PtFormat::V1, PGD).unwrap();
    let mmu = Sysmmu::probe(&model).unwrap();
    mmu.enable(PGD).unwrap();
    let f = pt.map(&*mem, &mut pool, a, 0x5000_0000, 0x1000, Prot::RW).unwrap();
    mmu.flush_flpd(f.iova as u32);
    assert!(model.translate(a, false).is_ok());
    pt.map(&*mem, &mut pool, b, 0x5001_0000, 0x1000, Prot::RW).unwrap();
    assert!(model.translate(b, false).is_err(), "v3.2 prefetches 256 KiB");
}

/// A table write the CPU did not clean is invisible to the walker.
#[test]
fn missing_cache_clean_is_caught() {
    let (mem, model) = rig(v3(3));
    let mut sh = shadow(&mem, &model);
    sh.map(0x0050_0000, 0x5000_0000, 0x1000, true).unwrap();
    let cleaned = mem.cleaned_lines();
    assert!(cleaned > 0);
    // Hand-written neighbour entry, flushed but not cleaned: the walker still sees a fault.
    let Lv1Entry::Lv2Link { table_pa } = sh.table().lv1_entry(&*mem, 0x0050_0000).unwrap() else {
        panic!("expected a level-2 table")
    };
    let entry_pa = table_pa + 4 * 0x40;
    mem.write_u32(entry_pa, 0x5004_0000 | (1 << 4) | 2).unwrap();
    sh.sysmmus()[0].flush_all().unwrap();
    assert_eq!(dma(&model, 0x0054_0000, false).unwrap_err().kind, FaultKind::Page);
    assert!(mem.stale_device_reads() >= 1);
    assert!(mem.is_dirty(entry_pa));
    mem.clean_dcache(entry_pa, 4);
    sh.sysmmus()[0].flush_all().unwrap();
    assert_eq!(dma(&model, 0x0054_0000, false), Ok(0x5004_0000));
}

/// v3.3: a raw fault value in a level-1 entry, once in the FLPD cache, survives FLUSH_ENTRY. The
/// zero-LV2 link keeps every empty level-1 entry a link, which FLUSH_ENTRY does drop.
#[test]
fn v33_zero_lv2_link_scheme() {
    // Broken on purpose: an all-zero level-1 table.
    let (mem, model) = rig(v3(3));
    for i in 0..4096u64 {
        mem.write_u32(PGD + 4 * i, 0).unwrap();
    }
    mem.clean_dcache(PGD, 0x4000);
    let mmu = Sysmmu::probe(&model).unwrap();
    mmu.enable(PGD).unwrap();
    assert!(model.translate(0x0010_0000, false).is_err()); // speculative fill of 0x0..0x7F_FFFF
    mmu.handle_fault(true).unwrap();
    let section = platform::exynos5250::sysmmu_pt::encode_lv1(
        PtFormat::V1,
        Lv1Entry::Section { pa: 0x5030_0000, prot: Prot::RW },
    )
    .unwrap();
    mem.write_u32(lv1_entry_pa(PGD, 0x0030_0000), section).unwrap();
    mem.clean_dcache(lv1_entry_pa(PGD, 0x0030_0000), 4);
    mmu.flush_flpd(0x0030_0000);
    mmu.flush_entries(0x0030_0000, MIB).unwrap();
    assert!(model.translate(0x0030_0000, false).is_err(), "sticky cached fault level-1 entry");
    mmu.handle_fault(true).unwrap();

    // The real code: zero links everywhere, the same sequence works, and unmap writes the link back.
    let (mem, model) = rig(v3(3));
    let mut sh = shadow(&mem, &model);
    assert!(dma(&model, 0x0010_0000, false).is_err());
    sh.map(0x0030_0000, 0x5030_0000, MIB, true).unwrap();
    assert_eq!(dma(&model, 0x0030_0000, false), Ok(0x5030_0000));
    assert_eq!(dma(&model, 0x0030_1000, false), Ok(0x5030_1000));
    assert!(model.stats().flpd_hits > 0);
    sh.unmap(0x0030_0000, MIB).unwrap();
    assert_eq!(mem.read_u32(lv1_entry_pa(PGD, 0x0030_0000)), Ok(sh.table().zero_lv2link()));
    assert!(dma(&model, 0x0030_0000, false).is_err());
    sh.map(0x0030_0000, 0x5040_0000, 0x1000, true).unwrap();
    assert_eq!(dma(&model, 0x0030_0000, false), Ok(0x5040_0000));
}

#[test]
fn flush_entry_counts_per_version() {
    for (cfg, expect) in [(ModelConfig::v2(), 64u64), (v3(1), 256)] {
        let (mem, model) = rig(cfg);
        let mut sh = shadow(&mem, &model);
        sh.map(0x0100_0000, 0x5000_0000, MIB, true).unwrap();
        let before = model.stats();
        sh.unmap(0x0100_0000, MIB).unwrap();
        let after = model.stats();
        assert_eq!(after.flush_entry - before.flush_entry, expect);
        assert_eq!(after.flush_while_unblocked, before.flush_while_unblocked, "TLB flushes run blocked");
        // A big range: v2 still needs only 64 entry flushes, v3 uses one flush-all.
        sh.map(0, 0x5000_0000, 0x0400_0000, true).unwrap();
        let before = model.stats();
        sh.unmap(0, 0x0400_0000).unwrap();
        let after = model.stats();
        if expect == 64 {
            assert_eq!(after.flush_entry - before.flush_entry, 64);
        } else {
            assert_eq!(after.flush_all - before.flush_all, 1);
        }
    }
    let (mem, model) = rig(ModelConfig::v5());
    let mut sh = shadow(&mem, &model);
    sh.map(0x0100_0000, 0x5000_0000, MIB, true).unwrap();
    sh.unmap(0x0100_0000, 0x2000).unwrap();
    assert_eq!(model.stats().flush_range, 1);
}

#[test]
fn shadow_rejects_bad_input_without_panicking() {
    let (mem, model) = rig(v3(3));
    let mut sh = shadow(&mem, &model);
    assert!(matches!(sh.map(0x1001, 0x5000_0000, 0x1000, true), Err(ShadowError::Misaligned { .. })));
    assert!(matches!(sh.map(0x1000, 0x5000_0000, 0, true), Err(ShadowError::Misaligned { .. })));
    assert!(matches!(sh.unmap(0x1000, 0x800), Err(ShadowError::Misaligned { .. })));
    // PA above 4 GiB cannot be expressed by v3: error, and the IPA stays unmapped.
    sh.map(0x1000, 0x5000_0000, 0x1000, true).unwrap();
    assert!(matches!(sh.map(0x1000, 0x1_0000_0000, 0x1000, true), Err(ShadowError::Table(_))));
    assert_eq!(sh.lookup(0x1000), None);
    assert!(dma(&model, 0x1000, false).is_err());
    // IPAs above 4 GiB are not DMA-addressable: ignored.
    assert_eq!(sh.map(0x1_0000_0000, 0x5000_0000, 0x1000, true), Ok(()));
    assert_eq!(sh.map(0xFFFF_F000, 0x5000_0000, 0x2000, true), Ok(()));
    assert_eq!(sh.lookup(0xFFFF_F000), Some((0x5000_0000, true)));
}

#[derive(Clone, Debug)]
enum P2mOp {
    Map { ipa_page: u64, pages: u64, pa_mib: u64, aligned: bool, writable: bool },
    Unmap { ipa_page: u64, pages: u64 },
}

const WINDOW_PAGES: u64 = 16 * 256; // 16 MiB of IPA

fn op_strategy() -> impl Strategy<Value = P2mOp> {
    prop_oneof![
        (0..WINDOW_PAGES, 1u64..600, 0u64..64, any::<bool>(), any::<bool>()).prop_map(
            |(ipa_page, pages, pa_mib, aligned, writable)| P2mOp::Map { ipa_page, pages, pa_mib, aligned, writable }
        ),
        (0..WINDOW_PAGES, prop_oneof![1u64..20, 200u64..700]).prop_map(|(ipa_page, pages)| P2mOp::Unmap { ipa_page, pages }),
    ]
}

fn check_page(model: &SysmmuModel, p2m: &BTreeMap<u64, (u64, bool)>, page: u64) -> Result<(), TestCaseError> {
    check_against(model, page, p2m.get(&page).copied())
}

/// The master's read and write at `page` behave as the p2m entry `expect` says.
fn check_against(model: &SysmmuModel, page: u64, expect: Option<(u64, bool)>) -> Result<(), TestCaseError> {
    let ipa = page << 12;
    match expect {
        Some((pa, writable)) => {
            prop_assert_eq!(dma(model, ipa + 8, false), Ok(pa + 8), "read ipa {:#x}", ipa);
            let w = dma(model, ipa, true);
            if writable {
                prop_assert_eq!(w, Ok(pa), "write ipa {:#x}", ipa);
            } else {
                prop_assert_eq!(w.map_err(|f| f.kind), Err(FaultKind::AccessProtection));
            }
        }
        None => {
            let f = dma(model, ipa, false);
            prop_assert_eq!(f.map_err(|f| (f.kind, f.iova as u64)), Err((FaultKind::Page, ipa)), "ipa {:#x}", ipa);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// After any sequence of p2m changes the SysMMU (model) translates exactly like the p2m, with
    /// DMAs interleaved so that stale TLB, prefetch and FLPD entries would show.
    #[test]
    fn shadow_translates_like_the_p2m(
        ops in proptest::collection::vec(op_strategy(), 1..24),
        version in 0usize..5,
    ) {
        let cfg = [ModelConfig::v2(), v3(1), v3(2), v3(3), ModelConfig::v5()][version].clone();
        let (mem, model) = rig(cfg);
        let mut sh = shadow(&mem, &model);
        let mut p2m: BTreeMap<u64, (u64, bool)> = BTreeMap::new();
        for op in &ops {
            let touched = match *op {
                P2mOp::Map { ipa_page, pages, pa_mib, aligned, writable } => {
                    let pages = pages.min(WINDOW_PAGES - ipa_page);
                    let off = if aligned { (ipa_page << 12) % MIB } else { 0x3000 };
                    let pa = 0x5000_0000 + pa_mib * MIB + off;
                    sh.map(ipa_page << 12, pa, pages << 12, writable).unwrap();
                    for i in 0..pages {
                        p2m.insert(ipa_page + i, (pa + (i << 12), writable));
                    }
                    (ipa_page, pages)
                }
                P2mOp::Unmap { ipa_page, pages } => {
                    let pages = pages.min(WINDOW_PAGES - ipa_page);
                    sh.unmap(ipa_page << 12, pages << 12).unwrap();
                    for i in 0..pages {
                        p2m.remove(&(ipa_page + i));
                    }
                    (ipa_page, pages)
                }
            };
            prop_assert_eq!(mem.dirty_lines(), 0, "uncleaned table write");
            // Probe the edges and some of the inside of the touched range, and its neighbours.
            let (first, n) = touched;
            let mut probes = std::vec![first.saturating_sub(1), first, first + n / 2, first + n - 1, first + n];
            probes.extend((first..first + n).step_by(37));
            for p in probes.into_iter().filter(|&p| p < WINDOW_PAGES) {
                check_page(&model, &p2m, p)?;
            }
        }
        for page in (0..WINDOW_PAGES).step_by(3) {
            check_page(&model, &p2m, page)?;
            prop_assert_eq!(sh.lookup(page << 12), p2m.get(&page).copied());
        }
    }
}

/// The real stage-2 code as the p2m: every change is applied to `mm::p2m::Stage2` and mirrored into
/// the shadow table, and the SysMMU (model) must translate as `Stage2::lookup` does.
mod with_stage2 {
    use super::*;
    use crate::mm::{FrameAlloc, S2Attr, Stage2, Stage2Config, TlbOps};

    struct Frames {
        next: u64,
        free: Vec<u64>,
    }
    impl FrameAlloc for Frames {
        fn alloc_frame(&mut self) -> Option<u64> {
            self.free.pop().or_else(|| {
                let p = self.next;
                self.next += 0x1000;
                Some(p)
            })
        }
        fn free_frame(&mut self, pa: u64) {
            self.free.push(pa);
        }
    }
    struct NoTlb;
    impl TlbOps for NoTlb {
        fn invalidate_ipa(&mut self, _: u16, _: u64) {}
        fn invalidate_vmid(&mut self, _: u16) {}
        fn sync(&mut self) {}
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn shadow_translates_like_stage2(
            ops in proptest::collection::vec(op_strategy(), 1..20),
            version in 0usize..3,
        ) {
            let cfg = [v3(1), v3(3), ModelConfig::v5()][version].clone();
            let (mem, model) = rig(cfg);
            let mut sh = shadow(&mem, &model);
            let p2m_mem = SimMem::new(&[0x4000_0000..0x4100_0000]);
            let mut frames = Frames { next: 0x4000_0000, free: Vec::new() };
            let mut s2 = Stage2::new(1, Stage2Config { ipa_bits: 32, pa_bits: 32 }, &mut frames, &p2m_mem).unwrap();
            for op in &ops {
                let (first, n) = match *op {
                    P2mOp::Map { ipa_page, pages, pa_mib, aligned, writable } => {
                        let pages = pages.min(WINDOW_PAGES - ipa_page);
                        let off = if aligned { (ipa_page << 12) % MIB } else { 0x3000 };
                        let pa = 0x5000_0000 + pa_mib * MIB + off;
                        let attr = if writable { S2Attr::RAM_RW } else { S2Attr::RAM_RO };
                        s2.map(ipa_page << 12, pa, pages << 12, attr, &mut frames, &p2m_mem, &mut NoTlb).unwrap();
                        sh.map(ipa_page << 12, pa, pages << 12, writable).unwrap();
                        (ipa_page, pages)
                    }
                    P2mOp::Unmap { ipa_page, pages } => {
                        let pages = pages.min(WINDOW_PAGES - ipa_page);
                        s2.unmap(ipa_page << 12, pages << 12, &mut frames, &p2m_mem, &mut NoTlb).unwrap();
                        sh.unmap(ipa_page << 12, pages << 12).unwrap();
                        (ipa_page, pages)
                    }
                };
                let mut probes = std::vec![first.saturating_sub(1), first, first + n / 2, first + n - 1, first + n];
                probes.extend((first..first + n).step_by(41));
                for p in probes.into_iter().filter(|&p| p < WINDOW_PAGES) {
                    let expect = s2.lookup(p << 12, &p2m_mem).map(|t| (t.pa, t.attr.write));
                    check_against(&model, p, expect)?;
                }
            }
            for page in (0..WINDOW_PAGES).step_by(5) {
                let expect = s2.lookup(page << 12, &p2m_mem).map(|t| (t.pa, t.attr.write));
                check_against(&model, page, expect)?;
            }
        }
    }
}
