//! Host tests of the GICv2 front end: banked SGI/PPI registers, ITARGETSR routing, GICD_SGIR,
//! access rules, and delivery through the shared core into list registers converted to the
//! GICH format.

use super::*;
use crate::irq::gicv2;
use crate::irq::vgic::{lr, ListRegisters, MAX_LRS};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

fn rd(off: u64, size: u8) -> MmioAccess {
    MmioAccess { offset: off, size, write: false, value: 0 }
}
fn wr(off: u64, size: u8, value: u64) -> MmioAccess {
    MmioAccess { offset: off, size, write: true, value }
}
fn done(r: (MmioResult, u64)) -> u64 {
    match r.0 {
        MmioResult::Done(v) => v,
        MmioResult::Abort => panic!("unexpected abort"),
    }
}

/// GICH list registers as the hardware holds them (GICv2 format), seen by the core through
/// the same conversion the arch layer uses.
struct V2Lrs {
    lr: Vec<u32>,
    underflow: bool,
}

impl V2Lrs {
    fn new(n: usize) -> Self {
        Self { lr: alloc::vec![0; n], underflow: false }
    }
    /// The guest reads GICV_IAR: the highest-priority pending LR becomes active.
    fn ack(&mut self) -> Option<u32> {
        let i = (0..self.lr.len())
            .filter(|&i| self.lr[i] & gicv2::lr::PENDING != 0 && self.lr[i] & gicv2::lr::ACTIVE == 0)
            .min_by_key(|&i| ((self.lr[i] >> 23) & 0x1f, self.lr[i] & 0x3ff))?;
        self.lr[i] = (self.lr[i] & !gicv2::lr::PENDING) | gicv2::lr::ACTIVE;
        Some(self.lr[i] & 0x1fff)
    }
    /// The guest writes GICV_EOIR with what GICV_IAR gave it.
    fn eoi(&mut self, iar: u32) {
        for v in &mut self.lr {
            if *v & 0x3ff == iar & 0x3ff && *v & gicv2::lr::ACTIVE != 0 {
                *v &= !gicv2::lr::ACTIVE;
            }
        }
    }
}

impl ListRegisters for V2Lrs {
    fn count(&self) -> usize {
        self.lr.len().min(MAX_LRS)
    }
    fn read(&self, i: usize) -> u64 {
        gicv2::lr_to_v3(self.lr[i])
    }
    fn write(&mut self, i: usize, v: u64) {
        self.lr[i] = gicv2::lr_from_v3(v, 0);
    }
    fn set_underflow_irq(&mut self, on: bool) {
        self.underflow = on;
    }
}

/// QEMU virt's GICv2: 288 INTIDs (ITLinesNumber 8).
fn vgic(vcpus: usize) -> Vgic {
    Vgic::new_v2(8, vcpus)
}

/// Linux's bring-up: distributor enabled.
fn enabled(vcpus: usize) -> Vgic {
    let mut g = vgic(vcpus);
    done(g.gicd_v2_access(0, wr(gicd::CTLR, 4, 1)));
    g
}

#[test]
fn typer_names_the_lines_and_the_vcpus_and_ctlr_keeps_only_enable() {
    let mut g = vgic(2);
    assert_eq!(done(g.gicd_v2_access(0, rd(gicd::TYPER, 4))), 8 | (1 << 5));
    done(g.gicd_v2_access(0, wr(gicd::CTLR, 4, 0xffff_ffff)));
    assert_eq!(done(g.gicd_v2_access(1, rd(gicd::CTLR, 4))), 1);
    assert_eq!(done(g.gicd_v2_access(0, rd(ID_PIDR2, 4))) >> 4 & 0xf, 2);
    assert_eq!(Vgic::new_v2(8, 12).vcpu_count(), MAX_VCPUS);
}

#[test]
fn sgi_and_ppi_registers_are_banked_per_vcpu() {
    let mut g = vgic(2);
    // vCPU 1 enables PPI 27 and SGI 1; vCPU 0 sees neither.
    done(g.gicd_v2_access(1, wr(0x100, 4, (1 << 27) | (1 << 1))));
    assert_eq!(done(g.gicd_v2_access(1, rd(0x100, 4))), (1 << 27) | (1 << 1));
    assert_eq!(done(g.gicd_v2_access(0, rd(0x100, 4))), 0);
    // Priorities of private interrupts are banked too (byte access).
    done(g.gicd_v2_access(0, wr(0x400 + 27, 1, 0xa0)));
    assert_eq!(done(g.gicd_v2_access(0, rd(0x418, 4))) >> 24, 0xa0);
    assert_eq!(done(g.gicd_v2_access(1, rd(0x418, 4))) >> 24, 0);
    // SPIs are shared: vCPU 1 sees what vCPU 0 enabled.
    done(g.gicd_v2_access(0, wr(0x104, 4, 1 << 3)));
    assert_eq!(done(g.gicd_v2_access(1, rd(0x104, 4))), 1 << 3);
    // SGIs stay edge-triggered whatever is written to ICFGR0.
    done(g.gicd_v2_access(0, wr(0xc00, 4, 0)));
    assert_eq!(done(g.gicd_v2_access(0, rd(0xc00, 4))), 0xaaaa_aaaa);
}

#[test]
fn private_itargetsr_reads_the_accessing_vcpus_bit_and_ignores_writes() {
    let mut g = vgic(4);
    assert_eq!(done(g.gicd_v2_access(0, rd(gicd::ITARGETSR, 4))), 0x0101_0101);
    assert_eq!(done(g.gicd_v2_access(2, rd(gicd::ITARGETSR + 0x1c, 4))), 0x0404_0404);
    done(g.gicd_v2_access(3, wr(gicd::ITARGETSR + 0x1f, 1, 0x1)));
    assert_eq!(done(g.gicd_v2_access(3, rd(gicd::ITARGETSR + 0x1f, 1))), 0x08);
}

#[test]
fn itargetsr_routes_an_spi_to_the_lowest_vcpu_named() {
    let mut g = enabled(4);
    // SPI 40 is byte 0 of ITARGETSR10: to vCPUs 2 and 3 -> delivered to vCPU 2.
    done(g.gicd_v2_access(0, wr(gicd::ITARGETSR + 40, 1, 0b1100)));
    assert_eq!(g.spi_targets_v2(40), Some(0b1100));
    assert_eq!(g.spi_target(40), Some(2));
    assert_eq!(done(g.gicd_v2_access(1, rd(gicd::ITARGETSR + 40, 4))) & 0xff, 0b1100);
    // Bits naming absent vCPUs are dropped; an empty mask routes nowhere.
    done(g.gicd_v2_access(0, wr(gicd::ITARGETSR + 40, 4, 0x00f0_0000 | 0x30)));
    assert_eq!(g.spi_targets_v2(40), Some(0));
    assert_eq!(g.spi_target(40), None);
    assert_eq!(g.spi_targets_v2(41), Some(0));
    assert_eq!(g.spi_targets_v2(42), Some(0));
    assert_eq!(g.spi_targets_v2(45), Some(1), "untouched SPIs keep their reset target, vCPU 0");
    // Delivered where the mask says: enable, pend, and only vCPU 1's LRs get it.
    done(g.gicd_v2_access(0, wr(gicd::ITARGETSR + 44, 1, 0b10)));
    done(g.gicd_v2_access(0, wr(0x104, 4, 1 << 12)));
    done(g.gicd_v2_access(0, wr(0x204, 4, 1 << 12)));
    let (mut l0, mut l1) = (V2Lrs::new(4), V2Lrs::new(4));
    g.flush(0, &mut l0);
    g.flush(1, &mut l1);
    assert_eq!(l0.ack(), None);
    assert_eq!(l1.ack(), Some(44));
    // Pending reads back through the LR while it is there; EOI frees it.
    l1.eoi(44);
    g.sync(1, &mut l1);
    assert!(!g.lrs_in_use(1));
}

#[test]
fn sgir_sends_to_the_list_to_all_but_self_and_to_self() {
    assert_eq!(SgirRequest::decode(0x0006_0003, 0, 4), SgirRequest { intid: 3, targets: 0b0110 });
    assert_eq!(SgirRequest::decode(0x0100_0005, 1, 4), SgirRequest { intid: 5, targets: 0b1101 });
    assert_eq!(SgirRequest::decode(0x0200_0001, 2, 4), SgirRequest { intid: 1, targets: 0b0100 });
    assert_eq!(SgirRequest::decode(0x0300_0001, 2, 4).targets, 0);
    // Targets beyond the domain's vCPUs are dropped.
    assert_eq!(SgirRequest::decode(0x00ff_0000, 0, 2).targets, 0b11);

    let mut g = enabled(2);
    done(g.gicd_v2_access(1, wr(0x100, 4, 1 << 2)));
    let r = g.gicd_v2_access(0, wr(gicd::SGIR, 4, 0x0002_0002));
    assert_eq!(r.1, 0b10, "the caller is told whom to kick");
    let mut l1 = V2Lrs::new(4);
    g.flush(1, &mut l1);
    assert_eq!(l1.ack(), Some(2));
    // An SGI to a vCPU that has not enabled it stays pending there.
    let r = g.gicd_v2_access(1, wr(gicd::SGIR, 4, 0x0100_0002));
    assert_eq!(r.1, 0b01);
    assert_eq!(done(g.gicd_v2_access(0, rd(0x200, 4))) & (1 << 2), 1 << 2);
    assert_eq!(done(g.gicd_v2_access(0, rd(gicd::SGIR, 4))), 0, "SGIR reads as zero");
}

#[test]
fn the_device_tells_the_targets_of_an_sgi() {
    static TOLD: AtomicU64 = AtomicU64::new(0);
    fn record(mask: u64) {
        TOLD.fetch_or(mask, Ordering::Relaxed);
    }
    let shared = Arc::new(crate::sync::SpinMutex::new(enabled(3)));
    let mut dev = GicdV2Device { vgic: shared, notify: record };
    assert!(matches!(dev.access(0, wr(gicd::SGIR, 4, 0x0100_0007)), MmioResult::Done(0)));
    assert_eq!(TOLD.load(Ordering::Relaxed), 0b110);
}

#[test]
fn access_rules_word_byte_and_sizes() {
    let mut g = vgic(1);
    assert!(matches!(g.gicd_v2_access(0, rd(gicd::CTLR, 1)).0, MmioResult::Abort));
    assert!(matches!(g.gicd_v2_access(0, rd(gicd::TYPER, 8)).0, MmioResult::Abort));
    assert!(matches!(g.gicd_v2_access(0, rd(0x102, 2)).0, MmioResult::Abort));
    assert!(matches!(g.gicd_v2_access(0, wr(gicd::SGIR, 1, 1)).0, MmioResult::Abort));
    assert!(matches!(g.gicd_v2_access(0, rd(gicd::ITARGETSR + 2, 2)).0, MmioResult::Abort));
    // IGROUPR: Group 0 only.
    done(g.gicd_v2_access(0, wr(gicd::IGROUPR + 4, 4, u64::from(u32::MAX))));
    assert_eq!(done(g.gicd_v2_access(0, rd(gicd::IGROUPR + 4, 4))), 0);
    // Beyond the implemented lines: zero.
    assert_eq!(done(g.gicd_v2_access(0, rd(0x100 + 4 * 20, 4))), 0);
    assert_eq!(done(g.gicd_v2_access(0, rd(0xf10, 4))), 0);
}

#[test]
fn a_level_ppi_reaches_the_gich_list_register_in_group_0_with_eoi_maintenance() {
    let mut g = enabled(2);
    done(g.gicd_v2_access(1, wr(0x100, 4, 1 << 27)));
    done(g.gicd_v2_access(1, wr(0x41b, 1, 0xa0)));
    g.set_level(1, 27, true).unwrap();
    let mut l = V2Lrs::new(4);
    g.flush(1, &mut l);
    let v = l.lr.iter().copied().find(|&v| v & 0x3ff == 27).expect("PPI 27 in an LR");
    assert_eq!(v & gicv2::lr::GROUP1, 0);
    assert_ne!(v & gicv2::lr::EOI, 0);
    assert_eq!((v >> 23) & 0x1f, 0xa0 >> 3);
    assert!(lr::is_pending(gicv2::lr_to_v3(v)));
}

#[test]
fn a_passed_through_spi_carries_its_physical_id() {
    let mut g = enabled(1);
    g.set_hw(48, true).unwrap();
    done(g.gicd_v2_access(0, wr(0x104, 4, 1 << 16)));
    assert_eq!(g.take_hw_ops(), alloc::vec![crate::irq::vgic::HwOp::Enable(48, true)]);
    g.inject_hw(48).unwrap();
    let mut l = V2Lrs::new(4);
    g.flush(0, &mut l);
    let v = l.lr.iter().copied().find(|&v| v & 0x3ff == 48).expect("SPI 48 in an LR");
    assert_eq!(v & (gicv2::lr::HW | (0x3ff << 10)), gicv2::lr::HW | (48 << 10));
}
