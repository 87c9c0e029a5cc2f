//! Host tests of the vGICv3: register semantics and access rules, injection by priority,
//! list-register overflow and refill, level vs edge, SGI decoding and SPI routing.

use super::regs::{GicdDevice, GicrDevice, CTLR_ARE_NS, CTLR_ENABLE_GRP1A, GICR_STRIDE, IIDR};
use super::*;
use crate::domain::mmio::{MmioAccess, MmioDevice, MmioResult};
use alloc::sync::Arc;
use proptest::prelude::*;

/// A CPU interface with `n` list registers, as hardware behaves between a flush and a sync.
struct FakeLrs {
    lr: Vec<u64>,
    underflow: bool,
    writes: usize,
}

impl FakeLrs {
    fn new(n: usize) -> Self {
        Self { lr: vec![0; n], underflow: false, writes: 0 }
    }
    /// The guest acknowledges the highest-priority pending LR (pending -> active); returns its INTID.
    fn ack(&mut self) -> Option<u32> {
        let i = (0..self.lr.len())
            .filter(|&i| lr::is_pending(self.lr[i]) && !lr::is_active(self.lr[i]))
            .min_by_key(|&i| (lr::priority(self.lr[i]), lr::intid(self.lr[i])))?;
        self.lr[i] = (self.lr[i] & !lr::PENDING) | lr::ACTIVE;
        Some(lr::intid(self.lr[i]))
    }
    /// The guest writes EOIR for `intid` (priority drop + deactivate).
    fn eoi(&mut self, intid: u32) {
        for v in &mut self.lr {
            if lr::intid(*v) == intid && lr::is_active(*v) {
                *v &= !lr::ACTIVE;
            }
        }
    }
    fn intids(&self) -> Vec<u32> {
        self.lr.iter().filter(|v| !lr::is_free(**v)).map(|v| lr::intid(*v)).collect()
    }
}

impl ListRegisters for FakeLrs {
    fn count(&self) -> usize {
        self.lr.len()
    }
    fn read(&self, i: usize) -> u64 {
        self.lr[i]
    }
    fn write(&mut self, i: usize, v: u64) {
        self.writes += 1;
        self.lr[i] = v;
    }
    fn set_underflow_irq(&mut self, on: bool) {
        self.underflow = on;
    }
}

fn rd(off: u64, size: u8) -> MmioAccess {
    MmioAccess { offset: off, size, write: false, value: 0 }
}
fn wr(off: u64, size: u8, value: u64) -> MmioAccess {
    MmioAccess { offset: off, size, write: true, value }
}
fn done(r: MmioResult) -> u64 {
    match r {
        MmioResult::Done(v) => v,
        MmioResult::Abort => panic!("unexpected abort"),
    }
}

/// QEMU virt's GIC: 288 INTIDs (ITLinesNumber 8); vCPUs with MPIDR Aff0 = id.
fn vgic(vcpus: usize) -> Vgic {
    let mpidrs: Vec<u64> = (0..vcpus as u64).map(|i| (1 << 31) | i).collect();
    Vgic::new(8, &mpidrs)
}

/// A guest's GIC bring-up as Linux does it: distributor on, redistributor awake.
fn enabled(vcpus: usize) -> Vgic {
    let mut g = vgic(vcpus);
    done(g.gicd_access(0, wr(0, 4, u64::from(CTLR_ENABLE_GRP1A) | 1)));
    for v in 0..vcpus as u64 {
        done(g.gicr_access(0, wr(v * GICR_STRIDE + 0x14, 4, 0)));
        // All private interrupts group 1.
        done(g.gicr_access(0, wr(v * GICR_STRIDE + 0x1_0080, 4, 0xffff_ffff)));
    }
    for r in 1..9u64 {
        done(g.gicd_access(0, wr(0x80 + 4 * r, 4, 0xffff_ffff)));
    }
    g
}

fn enable_spi(g: &mut Vgic, intid: u32, prio: u8) {
    done(g.gicd_access(0, wr(0x100 + 4 * u64::from(intid / 32), 4, 1 << (intid % 32))));
    done(g.gicd_access(0, wr(0x400 + u64::from(intid), 1, u64::from(prio))));
}

fn enable_ppi(g: &mut Vgic, vcpu: usize, intid: u32, prio: u8) {
    let base = vcpu as u64 * GICR_STRIDE + 0x1_0000;
    done(g.gicr_access(0, wr(base + 0x100, 4, 1 << intid)));
    done(g.gicr_access(0, wr(base + 0x400 + u64::from(intid), 1, u64::from(prio))));
}

#[test]
fn gicd_identification_registers() {
    let mut g = vgic(1);
    assert_eq!(done(g.gicd_access(0, rd(0, 4))) as u32 & CTLR_ARE_NS, CTLR_ARE_NS, "affinity routing always on");
    let typer = done(g.gicd_access(0, rd(4, 4))) as u32;
    assert_eq!(typer & 0x1f, 8, "ITLinesNumber from the host");
    assert_eq!(typer & (1 << 17), 0, "no LPIs");
    assert_eq!((typer >> 19) & 0x1f, 9, "10 INTID bits");
    assert_eq!(done(g.gicd_access(0, rd(8, 4))) as u32, IIDR);
    assert_eq!(done(g.gicd_access(0, rd(0xffe8, 4))) & 0xf0, 0x30, "PIDR2 ArchRev = GICv3");
    assert_eq!(done(g.gicr_access(0, rd(0xffe8, 4))) & 0xf0, 0x30);
    assert_eq!(g.nr_irqs(), 288);
}

#[test]
fn gicd_ctlr_keeps_only_enable_bits() {
    let mut g = vgic(1);
    done(g.gicd_access(0, wr(0, 4, 0xffff_ffff)));
    assert_eq!(done(g.gicd_access(0, rd(0, 4))), 0b1_0011);
    done(g.gicd_access(0, wr(0, 4, 0)));
    assert_eq!(done(g.gicd_access(0, rd(0, 4))), u64::from(CTLR_ARE_NS));
}

#[test]
fn access_size_rules() {
    let mut g = vgic(2);
    // 32-bit registers: word accesses only.
    assert_eq!(g.gicd_access(0, rd(0, 1)), MmioResult::Abort);
    assert_eq!(g.gicd_access(0, rd(0, 8)), MmioResult::Abort);
    assert_eq!(g.gicd_access(0, rd(0x104, 2)), MmioResult::Abort);
    assert_eq!(g.gicd_access(0, rd(0x106, 4)), MmioResult::Abort, "unaligned");
    assert_eq!(g.gicd_access(0, rd(0xc08, 1)), MmioResult::Abort);
    // IPRIORITYR: bytes and words.
    done(g.gicd_access(0, wr(0x421, 1, 0xa0)));
    assert_eq!(done(g.gicd_access(0, rd(0x420, 4))), 0xa000);
    assert_eq!(g.gicd_access(0, rd(0x420, 2)), MmioResult::Abort);
    assert_eq!(g.gicd_access(0, rd(0x422, 4)), MmioResult::Abort);
    // IROUTER: 64-bit, or 32-bit halves.
    done(g.gicd_access(0, wr(0x6000 + 8 * 40, 8, 0x0000_0001_0000_0001)));
    assert_eq!(done(g.gicd_access(0, rd(0x6000 + 8 * 40, 8))), 0x1_0000_0001);
    assert_eq!(done(g.gicd_access(0, rd(0x6000 + 8 * 40 + 4, 4))), 1);
    done(g.gicd_access(0, wr(0x6000 + 8 * 40, 4, 0x8000_0000)));
    assert_eq!(done(g.gicd_access(0, rd(0x6000 + 8 * 40, 8))), 0x1_8000_0000);
    assert_eq!(g.gicd_access(0, rd(0x6000 + 8 * 40 + 4, 8)), MmioResult::Abort);
    assert_eq!(g.gicd_access(0, rd(0x6000 + 8 * 40, 2)), MmioResult::Abort);
    // GICR_TYPER: 64-bit at 0x8, or halves; 64-bit at 0xc aborts.
    assert_eq!(g.gicr_access(0, rd(0xc, 8)), MmioResult::Abort);
    assert_eq!(g.gicr_access(0, rd(0x14, 1)), MmioResult::Abort);
    // Nonsense sizes never reach the register logic.
    assert_eq!(g.gicd_access(0, rd(0x400, 3)), MmioResult::Abort);
}

#[test]
fn reserved_and_unimplemented_space_is_raz_wi() {
    let mut g = vgic(1);
    assert_eq!(done(g.gicd_access(0, wr(0x10, 4, 0xffff_ffff))), 0);
    assert_eq!(done(g.gicd_access(0, rd(0x5000, 4))), 0);
    // Bits for INTIDs beyond ITLinesNumber read as zero and ignore writes.
    done(g.gicd_access(0, wr(0x100 + 4 * 9, 4, 0xffff_ffff)));
    assert_eq!(done(g.gicd_access(0, rd(0x100 + 4 * 9, 4))), 0);
    done(g.gicd_access(0, wr(0x400 + 300, 1, 0xff)));
    assert_eq!(done(g.gicd_access(0, rd(0x400 + 300, 1))), 0);
    assert_eq!(done(g.gicd_access(0, rd(0x6000 + 8 * 1000, 8))), 0);
    // With affinity routing, the distributor's words for INTIDs 0-31 are RAZ/WI.
    done(g.gicd_access(0, wr(0x100, 4, 0xffff_ffff)));
    assert_eq!(done(g.gicd_access(0, rd(0x100, 4))), 0);
    assert!(!g.irq(0, 27).unwrap().enabled);
    // Redistributors past the last vCPU read as zero.
    assert_eq!(done(g.gicr_access(0, rd(5 * GICR_STRIDE + 8, 8))), 0);
}

#[test]
fn enable_pending_active_set_clear_pairs() {
    let mut g = vgic(1);
    done(g.gicd_access(0, wr(0x104, 4, 0b1010)));
    done(g.gicd_access(0, wr(0x104, 4, 0b0100)));
    assert_eq!(done(g.gicd_access(0, rd(0x104, 4))), 0b1110);
    assert_eq!(done(g.gicd_access(0, rd(0x184, 4))), 0b1110, "ICENABLER reads the same state");
    done(g.gicd_access(0, wr(0x184, 4, 0b0010)));
    assert_eq!(done(g.gicd_access(0, rd(0x104, 4))), 0b1100);
    assert!(g.irq(0, 34).unwrap().enabled && !g.irq(0, 33).unwrap().enabled);
    done(g.gicd_access(0, wr(0x204, 4, 1 << 5)));
    assert!(g.irq(0, 37).unwrap().pending);
    assert_eq!(done(g.gicd_access(0, rd(0x284, 4))), 1 << 5);
    done(g.gicd_access(0, wr(0x284, 4, 1 << 5)));
    assert!(!g.irq(0, 37).unwrap().pending);
    done(g.gicd_access(0, wr(0x304, 4, 1)));
    assert_eq!(done(g.gicd_access(0, rd(0x384, 4))), 1);
    done(g.gicd_access(0, wr(0x384, 4, 1)));
    assert_eq!(done(g.gicd_access(0, rd(0x304, 4))), 0);
    // IGROUPR is a plain read/write register.
    done(g.gicd_access(0, wr(0x84, 4, 0xf0f0)));
    assert_eq!(done(g.gicd_access(0, rd(0x84, 4))), 0xf0f0);
}

#[test]
fn icfgr_sgis_are_edge_and_read_only() {
    let mut g = vgic(1);
    let sgi_frame = 0x1_0000;
    assert_eq!(done(g.gicr_access(0, rd(sgi_frame + 0xc00, 4))), 0xaaaa_aaaa);
    done(g.gicr_access(0, wr(sgi_frame + 0xc00, 4, 0)));
    assert_eq!(done(g.gicr_access(0, rd(sgi_frame + 0xc00, 4))), 0xaaaa_aaaa);
    // PPIs reset level-sensitive, configurable.
    assert_eq!(done(g.gicr_access(0, rd(sgi_frame + 0xc04, 4))), 0);
    done(g.gicr_access(0, wr(sgi_frame + 0xc04, 4, 1 << 23)));
    assert!(g.irq(0, 27).unwrap().edge);
    // SPIs.
    done(g.gicd_access(0, wr(0xc08, 4, 0b10)));
    assert!(g.irq(0, 32).unwrap().edge && !g.irq(0, 33).unwrap().edge);
    assert_eq!(done(g.gicd_access(0, rd(0xc08, 4))), 0b10);
}

#[test]
fn gicr_typer_and_waker() {
    let mut g = vgic(3);
    for v in 0..3u64 {
        let typer = done(g.gicr_access(0, rd(v * GICR_STRIDE + 8, 8)));
        assert_eq!(typer >> 32, v, "affinity = vMPIDR");
        assert_eq!((typer >> 8) & 0xffff, v, "Processor_Number = vCPU id");
        assert_eq!(typer & (1 << 4) != 0, v == 2, "Last only on the final redistributor");
        assert_eq!(typer & 1, 0, "no LPIs");
        assert_eq!(done(g.gicr_access(0, rd(v * GICR_STRIDE + 0xc, 4))), v);
    }
    let mut aff = Vgic::new(8, &[0x0000_0001_0002_0304]);
    assert_eq!(aff.gicr_typer(0) >> 32, 0x0102_0304, "Aff3.Aff2.Aff1.Aff0");
    let _ = aff.gicr_access(0, rd(8, 8));
    // WAKER: asleep at reset; clearing ProcessorSleep clears ChildrenAsleep.
    assert_eq!(done(g.gicr_access(0, rd(0x14, 4))), 0b110);
    done(g.gicr_access(0, wr(0x14, 4, 0)));
    assert_eq!(done(g.gicr_access(0, rd(0x14, 4))), 0);
    assert_eq!(done(g.gicr_access(0, rd(GICR_STRIDE + 0x14, 4))), 0b110, "per redistributor");
}

#[test]
fn injects_by_priority_and_refills_after_underflow() {
    let mut g = enabled(1);
    let prios = [(40u32, 0xa0u8), (41, 0x80), (42, 0x20), (43, 0xa0), (44, 0x40), (45, 0x80)];
    for &(i, p) in &prios {
        enable_spi(&mut g, i, p);
        g.inject_edge(0, i).unwrap();
    }
    let mut lrs = FakeLrs::new(4);
    g.flush(0, &mut lrs);
    let mut first = lrs.intids();
    first.sort();
    assert_eq!(first, vec![41, 42, 44, 45], "the four best priorities, ties by INTID");
    assert!(lrs.underflow, "two left over: ask for the maintenance interrupt");
    // The guest takes them in priority order.
    let mut order = Vec::new();
    while let Some(i) = lrs.ack() {
        order.push(i);
        lrs.eoi(i);
    }
    assert_eq!(order, vec![42, 44, 41, 45]);
    g.sync(0, &mut lrs);
    g.flush(0, &mut lrs);
    let mut second = lrs.intids();
    second.sort();
    assert_eq!(second, vec![40, 43]);
    assert!(!lrs.underflow, "nothing left waiting");
    for i in [40, 43] {
        assert_eq!(g.irq(0, i).unwrap().lr.is_some(), true);
    }
    while let Some(i) = lrs.ack() {
        lrs.eoi(i);
    }
    g.sync(0, &mut lrs);
    assert!(lrs.intids().is_empty());
    assert!(g.irq(0, 40).unwrap().lr.is_none());
    // Nothing new: flush does not touch the hardware.
    let before = lrs.writes;
    g.flush(0, &mut lrs);
    assert_eq!(lrs.writes, before);
}

#[test]
fn a_higher_priority_interrupt_replaces_a_worse_candidate() {
    let mut g = enabled(1);
    for i in 32..40 {
        enable_spi(&mut g, i, 0xf0 - (i as u8 - 32) * 8);
        g.inject_edge(0, i).unwrap();
    }
    let mut lrs = FakeLrs::new(2);
    g.flush(0, &mut lrs);
    let mut got = lrs.intids();
    got.sort();
    assert_eq!(got, vec![38, 39]);
}

#[test]
fn level_interrupt_repends_while_the_line_is_high() {
    let mut g = enabled(1);
    enable_ppi(&mut g, 0, VTIMER_PPI, 0xa0);
    let mut lrs = FakeLrs::new(4);
    g.set_level(0, VTIMER_PPI, true).unwrap();
    g.flush(0, &mut lrs);
    assert!(lrs.lr[0] & lr::EOI_MAINT != 0, "level: maintenance interrupt on deactivation");
    assert_eq!(lrs.ack(), Some(VTIMER_PPI));
    lrs.eoi(VTIMER_PPI);
    g.sync(0, &mut lrs);
    g.flush(0, &mut lrs);
    assert_eq!(lrs.intids(), vec![VTIMER_PPI], "line still high: injected again");
    // The device drops the line before the guest takes it again.
    g.set_level(0, VTIMER_PPI, false).unwrap();
    assert_eq!(lrs.ack(), Some(VTIMER_PPI));
    lrs.eoi(VTIMER_PPI);
    g.sync(0, &mut lrs);
    assert_eq!(lrs.lr[0], 0, "the freed LR is cleared so its EOI maintenance interrupt drops");
    g.flush(0, &mut lrs);
    assert!(lrs.intids().is_empty(), "line low: not injected again");
    assert!(!g.has_deliverable(0));
}

#[test]
fn edges_coalesce_while_pending_and_queue_behind_active() {
    let mut g = enabled(1);
    enable_spi(&mut g, 50, 0x80);
    done(g.gicd_access(0, wr(0xc0c, 4, 0b10 << 4))); // INTID 50 edge
    let mut lrs = FakeLrs::new(4);
    g.inject_edge(0, 50).unwrap();
    g.inject_edge(0, 50).unwrap();
    g.flush(0, &mut lrs);
    assert_eq!(lrs.intids(), vec![50]);
    assert!(!g.irq(0, 50).unwrap().pending, "pending state moved into the LR");
    g.inject_edge(0, 50).unwrap();
    g.sync(0, &mut lrs);
    g.flush(0, &mut lrs);
    assert_eq!(lrs.lr.iter().filter(|v| !lr::is_free(**v)).count(), 1, "one LR, not two");
    // Taken (active), then another edge: pending+active in the same LR.
    assert_eq!(lrs.ack(), Some(50));
    g.sync(0, &mut lrs);
    assert!(g.irq(0, 50).unwrap().active);
    g.inject_edge(0, 50).unwrap();
    g.flush(0, &mut lrs);
    let v = lrs.lr.iter().copied().find(|v| lr::intid(*v) == 50).unwrap();
    assert!(lr::is_active(v) && lr::is_pending(v));
    lrs.eoi(50);
    assert_eq!(lrs.ack(), Some(50));
    lrs.eoi(50);
    g.sync(0, &mut lrs);
    assert!(lrs.intids().is_empty());
    assert!(!g.irq(0, 50).unwrap().active);
}

#[test]
fn nothing_is_delivered_while_disabled() {
    let mut g = vgic(1);
    enable_spi(&mut g, 33, 0);
    done(g.gicd_access(0, wr(0x84, 4, 0xffff_ffff)));
    g.inject_edge(0, 33).unwrap();
    let mut lrs = FakeLrs::new(4);
    g.flush(0, &mut lrs);
    assert!(lrs.intids().is_empty(), "distributor group 1 disabled");
    done(g.gicd_access(0, wr(0, 4, u64::from(CTLR_ENABLE_GRP1A))));
    done(g.gicd_access(0, wr(0x184, 4, 1 << 1)));
    g.flush(0, &mut lrs);
    assert!(lrs.intids().is_empty(), "interrupt disabled");
    assert!(g.irq(0, 33).unwrap().pending, "but it stays pending");
    done(g.gicd_access(0, wr(0x104, 4, 1 << 1)));
    g.flush(0, &mut lrs);
    assert_eq!(lrs.intids(), vec![33]);
    let v = lrs.lr[0];
    assert!(v & lr::GROUP1 != 0);
    // Private interrupts wait for the redistributor to wake.
    let mut g = vgic(1);
    done(g.gicd_access(0, wr(0, 4, u64::from(CTLR_ENABLE_GRP1A))));
    done(g.gicr_access(0, wr(0x1_0080, 4, 0xffff_ffff)));
    enable_ppi(&mut g, 0, 27, 0);
    g.inject_edge(0, 27).unwrap();
    let mut lrs = FakeLrs::new(4);
    g.flush(0, &mut lrs);
    assert!(lrs.intids().is_empty());
    done(g.gicr_access(0, wr(0x14, 4, 0)));
    g.flush(0, &mut lrs);
    assert_eq!(lrs.intids(), vec![27]);
}

#[test]
fn clearing_pending_or_active_reaches_the_list_register() {
    let mut g = enabled(1);
    enable_spi(&mut g, 60, 0x80);
    g.inject_edge(0, 60).unwrap();
    let mut lrs = FakeLrs::new(4);
    g.flush(0, &mut lrs);
    g.sync(0, &mut lrs);
    assert_eq!(done(g.gicd_access(0, rd(0x204 + 0, 4))) & (1 << 28), 1 << 28, "ISPENDR shows LR state");
    done(g.gicd_access(0, wr(0x284, 4, 1 << 28)));
    g.flush(0, &mut lrs);
    assert!(lrs.intids().is_empty(), "ICPENDR removed it from the LR");
    assert!(g.irq(0, 60).unwrap().lr.is_none());
    // Active in an LR, cleared with ICACTIVER.
    g.inject_edge(0, 60).unwrap();
    g.flush(0, &mut lrs);
    lrs.ack();
    g.sync(0, &mut lrs);
    assert_eq!(done(g.gicd_access(0, rd(0x304, 4))), 1 << 28);
    done(g.gicd_access(0, wr(0x384, 4, 1 << 28)));
    g.flush(0, &mut lrs);
    assert!(lrs.intids().is_empty());
    assert!(!g.irq(0, 60).unwrap().active);
}

#[test]
fn spis_follow_irouter() {
    let mut g = enabled(2);
    enable_spi(&mut g, 40, 0x80);
    done(g.gicd_access(0, wr(0x6000 + 8 * 40, 8, 1)));
    g.inject_edge(0, 40).unwrap();
    let (mut l0, mut l1) = (FakeLrs::new(4), FakeLrs::new(4));
    g.flush(0, &mut l0);
    g.flush(1, &mut l1);
    assert!(l0.intids().is_empty());
    assert_eq!(l1.intids(), vec![40]);
    // IRM: any vCPU (vCPU 0 here). A route to no vCPU delivers nowhere.
    assert_eq!({ done(g.gicd_access(0, wr(0x6000 + 8 * 41, 8, 1 << 31))); g.spi_target(41) }, Some(0));
    done(g.gicd_access(0, wr(0x6000 + 8 * 42, 8, 7)));
    assert_eq!(g.spi_target(42), None);
}

#[test]
fn sgi1r_decoding() {
    // Target list 0b101 in cluster 0, SGI 3.
    let r = SgiRequest::decode((3 << 24) | 0b101);
    assert_eq!(r.intid, 3);
    assert!(r.targets(false, 0) && !r.targets(false, 1) && r.targets(true, 2));
    // RS = 1: the list names Aff0 16..31.
    let r = SgiRequest::decode((1 << 44) | 1);
    assert!(r.targets(false, 16) && !r.targets(false, 0));
    // Aff1 must match.
    let r = SgiRequest::decode((1 << 16) | 1);
    assert!(r.targets(false, 0x100) && !r.targets(false, 0));
    // Aff3/Aff2 positions.
    let r = SgiRequest::decode((2 << 48) | (3 << 32) | 1);
    assert!(r.targets(false, (2 << 32) | (3 << 16)));
    // IRM: everyone but the sender, whatever the list says.
    let r = SgiRequest::decode((1 << 40) | (15 << 24));
    assert_eq!(r.intid, 15);
    assert!(r.targets(false, 5) && !r.targets(true, 0));

    let mut g = enabled(3);
    for v in 0..3 {
        enable_ppi(&mut g, v, 1, 0x80);
    }
    assert_eq!(g.send_sgi(0, (1 << 24) | 0b110), 0b110);
    assert!(!g.irq(0, 1).unwrap().pending && g.irq(1, 1).unwrap().pending && g.irq(2, 1).unwrap().pending);
    assert_eq!(g.send_sgi(1, (1 << 40) | (2 << 24)), 0b101);
    assert!(g.irq(0, 2).unwrap().pending && !g.irq(1, 2).unwrap().pending);
    assert!(g.has_deliverable(1));
}

#[test]
fn injection_rejects_bad_vcpus_and_intids() {
    let mut g = vgic(1);
    assert_eq!(g.inject_edge(1, 27), Err(VgicError::BadVcpu(1)));
    assert_eq!(g.inject_edge(0, 288), Err(VgicError::BadIntid(288)));
    assert_eq!(g.set_level(0, u32::MAX, true), Err(VgicError::BadIntid(u32::MAX)));
    let mut lrs = FakeLrs::new(4);
    g.flush(7, &mut lrs);
    g.sync(7, &mut lrs);
    assert!(!g.has_deliverable(7));
}

#[test]
fn devices_share_one_state() {
    let shared = Arc::new(crate::sync::SpinMutex::new(vgic(1)));
    let mut d = GicdDevice(shared.clone());
    let mut r = GicrDevice(shared.clone());
    d.access(0, wr(0x104, 4, 1));
    r.access(0, wr(0x1_0100, 4, 1 << 27));
    let g = shared.lock();
    assert!(g.irq(0, 32).unwrap().enabled && g.irq(0, 27).unwrap().enabled);
}

#[test]
fn a_guest_that_grabs_lrs_back_is_tolerated() {
    // An LR that no longer holds what the vGIC put there (e.g. clobbered) counts as free.
    let mut g = enabled(1);
    enable_spi(&mut g, 33, 0);
    g.inject_edge(0, 33).unwrap();
    let mut lrs = FakeLrs::new(1);
    g.flush(0, &mut lrs);
    lrs.lr[0] = lr::encode(99, 0, true, true, false);
    g.sync(0, &mut lrs);
    assert!(g.irq(0, 33).unwrap().lr.is_none());
}

proptest! {
    /// No access, however malformed, panics; reads stay within the access size.
    #[test]
    fn random_accesses_never_panic(ops in proptest::collection::vec((any::<bool>(), 0u64..0x4_0000, prop_oneof![Just(1u8), Just(2), Just(3), Just(4), Just(8), Just(0)], any::<bool>(), any::<u64>()), 1..200)) {
        let mut g = vgic(2);
        for i in 40..72 {
            g.set_hw(i, true).unwrap();
        }
        let mut lrs = FakeLrs::new(4);
        for (dist, off, size, write, value) in ops {
            if value & 0x10 != 0 {
                let _ = g.inject_hw((value >> 16) as u32 % 300);
            }
            prop_assert!(g.take_hw_ops().len() <= 4096);
            let a = MmioAccess { offset: if dist { off % 0x1_0000 } else { off }, size, write, value };
            let r = if dist { g.gicd_access(0, a) } else { g.gicr_access(1, a) };
            if let MmioResult::Done(v) = r {
                if !write && (1..8).contains(&size) {
                    prop_assert!(v >> (8 * u32::from(size)) == 0, "read wider than the access");
                }
            }
            let _ = g.inject_edge((value % 3) as usize, (value >> 8) as u32 % 300);
            g.sync(0, &mut lrs);
            g.flush(0, &mut lrs);
            if value & 1 == 1 {
                if let Some(i) = lrs.ack() { lrs.eoi(i); }
            }
        }
    }
}

proptest! {
    /// Whatever a guest writes, whatever is injected, acknowledged or deactivated, on any vCPU:
    /// every deliverable interrupt stays in the candidate sets `flush` scans, and what it
    /// delivers is what a scan of every interrupt would have chosen first.
    #[test]
    fn candidate_sets_cover_every_deliverable_interrupt(ops in proptest::collection::vec((0u8..8, any::<u64>(), any::<u64>()), 1..300)) {
        let mut g = enabled(2);
        for i in 40..48 {
            g.set_hw(i, true).unwrap();
        }
        let mut lrs = [FakeLrs::new(4), FakeLrs::new(4)];
        for (kind, x, y) in ops {
            let vcpu = (y % 2) as usize;
            let intid = (x % 300) as u32;
            match kind {
                0 => {
                    // A bit-per-interrupt register word (any of the seven arrays), distributor or redistributor.
                    let reg = 0x80 * (1 + (x >> 16) % 7);
                    if x & 0x100 != 0 {
                        let _ = g.gicd_access(0, wr(reg + 4 * ((x >> 24) % 9), 4, y >> 8));
                    } else {
                        let _ = g.gicr_access(0, wr(vcpu as u64 * GICR_STRIDE + 0x1_0000 + reg, 4, y >> 8));
                    }
                }
                1 => { let _ = g.inject_edge(vcpu, intid); }
                2 => { let _ = g.set_level(vcpu, intid, y & 4 != 0); }
                3 => { let _ = g.inject_hw(intid); }
                4 => {
                    // Priority, trigger, route or the distributor's groups.
                    let _ = match (x >> 20) % 4 {
                        0 => g.gicd_access(0, wr(0x400 + u64::from(intid), 1, y)),
                        1 => g.gicd_access(0, wr(0xc00 + 4 * u64::from(intid / 16), 4, y)),
                        2 => g.gicd_access(0, wr(0x6000 + 8 * u64::from(intid), 8, y & 1)),
                        _ => g.gicd_access(0, wr(0, 4, y & 3)),
                    };
                }
                5 => { let _ = g.gicr_access(0, wr(vcpu as u64 * GICR_STRIDE + 0x14, 4, y & 2)); }
                6 => {
                    if let Some(i) = lrs[vcpu].ack() {
                        if y & 8 != 0 { lrs[vcpu].eoi(i); }
                    }
                }
                _ => {}
            }
            let _ = g.take_hw_ops();
            prop_assert!(g.candidates_cover_deliverable());
            g.sync(vcpu, &mut lrs[vcpu]);
            prop_assert!(g.candidates_cover_deliverable());
            prop_assert!(g.lr_used_matches_owners());
            g.flush(vcpu, &mut lrs[vcpu]);
            prop_assert!(g.candidates_cover_deliverable());
            prop_assert!(g.lr_used_matches_owners());
        }
    }
}

fn passthrough(g: &mut Vgic, intid: u32) {
    g.set_hw(intid, true).unwrap();
}

#[test]
fn passed_through_spi_enable_and_trigger_reach_the_physical_gic() {
    let mut g = enabled(1);
    passthrough(&mut g, 35);
    enable_spi(&mut g, 35, 0xa0);
    enable_spi(&mut g, 36, 0xa0); // not passed through: no physical work
    done(g.gicd_access(0, wr(0xc08, 4, 0b10 << 6))); // INTID 35 edge
    done(g.gicd_access(0, wr(0x184, 4, 1 << 3)));
    done(g.gicd_access(0, wr(0x184, 4, 1 << 3))); // already disabled: nothing more
    assert_eq!(g.take_hw_ops(), vec![HwOp::Enable(35, true), HwOp::Configure(35, true), HwOp::Enable(35, false)]);
    assert!(g.take_hw_ops().is_empty());
    assert_eq!(g.set_hw(27, true), Err(VgicError::BadIntid(27)), "only SPIs are passed through");
    assert_eq!(g.inject_hw(36), Err(VgicError::BadIntid(36)), "not passed through");
}

#[test]
fn physical_spi_is_delivered_with_the_hw_bit_and_the_guest_eoi_releases_it() {
    let mut g = enabled(1);
    passthrough(&mut g, 37);
    enable_spi(&mut g, 37, 0xa0);
    g.take_hw_ops();
    g.inject_hw(37).unwrap();
    let mut lrs = FakeLrs::new(4);
    g.flush(0, &mut lrs);
    let v = lrs.lr[0];
    assert_eq!(lr::intid(v), 37);
    assert!(v & lr::HW != 0 && (v >> 32) & 0x3ff == 37, "HW bit and pINTID");
    assert_eq!(lrs.ack(), Some(37));
    lrs.eoi(37); // hardware deactivates the physical SPI
    g.sync(0, &mut lrs);
    assert!(!g.irq(0, 37).unwrap().hw_active);
    assert!(g.take_hw_ops().is_empty(), "nothing for the hypervisor to deactivate");
    // Pended by the guest itself (ISPENDR): no HW link, nothing physical to deactivate.
    done(g.gicd_access(0, wr(0x204, 4, 1 << 5)));
    g.flush(0, &mut lrs);
    let v = lrs.lr.iter().copied().find(|v| !lr::is_free(*v)).unwrap();
    assert_eq!(v & lr::HW, 0);
}

#[test]
fn a_dropped_physical_spi_is_deactivated_by_the_hypervisor() {
    let mut g = enabled(1);
    passthrough(&mut g, 38);
    enable_spi(&mut g, 38, 0xa0);
    g.take_hw_ops();
    // Delivered to an LR, then the guest clears it with ICPENDR before taking it.
    g.inject_hw(38).unwrap();
    let mut lrs = FakeLrs::new(4);
    g.flush(0, &mut lrs);
    g.sync(0, &mut lrs);
    done(g.gicd_access(0, wr(0x284, 4, 1 << 6)));
    g.flush(0, &mut lrs);
    assert!(lrs.intids().is_empty());
    assert_eq!(g.take_hw_ops(), vec![HwOp::Deactivate(38)]);
    // Pending while disabled, then cleared: never reached an LR.
    done(g.gicd_access(0, wr(0x184, 4, 1 << 6)));
    g.take_hw_ops();
    g.inject_hw(38).unwrap();
    g.flush(0, &mut lrs);
    assert!(lrs.intids().is_empty());
    done(g.gicd_access(0, wr(0x284, 4, 1 << 6)));
    assert_eq!(g.take_hw_ops(), vec![HwOp::Deactivate(38)]);
}

#[test]
fn it_lines_cover_the_highest_intid_and_no_more_than_the_host() {
    // QEMU virt's DT names up to INTID 109 (SMMUv3 gerror, SPI 77): 128 INTIDs, 3 lines.
    assert_eq!(it_lines_for(109, 8), 3);
    assert_eq!(it_lines_for(127, 8), 3);
    assert_eq!(it_lines_for(128, 8), 4);
    // Only SGIs and PPIs named: one block of 32.
    assert_eq!(it_lines_for(31, 8), 0);
    // Never more than the host has.
    assert_eq!(it_lines_for(1019, 8), 8);
    let g = Vgic::new(it_lines_for(109, 8), &[0x8000_0000]);
    assert_eq!(g.nr_irqs(), 128);
    let d = GicdDevice(Arc::new(crate::sync::SpinMutex::new(g)));
    let mut d = d;
    assert_eq!(done(d.access(0, rd(0x4, 4))) & 0x1f, 3, "GICD_TYPER.ITLinesNumber");
    // IROUTER of the last implemented SPI takes a route; the next one is reserved (RAZ/WI).
    d.access(0, wr(0x6000 + 8 * 127, 8, 1));
    assert_eq!(done(d.access(0, rd(0x6000 + 8 * 127, 8))), 1);
    d.access(0, wr(0x6000 + 8 * 128, 8, 1));
    assert_eq!(done(d.access(0, rd(0x6000 + 8 * 128, 8))), 0);
}

proptest! {
    /// The SGI target mask `send_sgi` computes is the vCPUs `SgiRequest::targets` accepts,
    /// whatever the vCPUs' affinities (Xen's layout, clusters of 8, arbitrary) and the request.
    #[test]
    fn sgi_targets_match_the_reference(value in any::<u64>(), sender in 0usize..6, layout in 0u8..3, raw in proptest::collection::vec(any::<u64>(), 1..6)) {
        let mpidrs: Vec<u64> = raw.iter().enumerate().map(|(i, r)| match layout {
            0 => (1 << 31) | ((i as u64 >> 4) << 8) | (i as u64 & 0xf),
            1 => (1 << 31) | ((i as u64 >> 3) << 8) | (i as u64 & 7),
            _ => *r & 0xff_00ff_ffff,
        }).collect();
        let g = Vgic::new(8, &mpidrs);
        // Requests that hit: the target list and cluster of one of the vCPUs, half the time.
        let value = if value & 1 == 0 {
            let a = mpidr_affinity(mpidrs[(value as usize >> 1) % mpidrs.len()]);
            let aff0 = a & 0xff;
            (value & !((0xff << 16) | (0xff << 32) | (0xff << 48) | (0xf << 44) | 0xffff | (1 << 40)))
                | ((a >> 8) & 0xff) << 16 | ((a >> 16) & 0xff) << 32 | ((a >> 32) & 0xff) << 48
                | (aff0 >> 4) << 44 | 1 << (aff0 & 0xf) | (value >> 50) & 0xffff
        } else {
            value
        };
        let sgi = SgiRequest::decode(value);
        let want = mpidrs.iter().enumerate().filter(|&(i, &m)| sgi.targets(i == sender, mpidr_affinity(m))).fold(0u64, |t, (i, _)| t | 1 << i);
        prop_assert_eq!(g.sgi_targets(sender, &sgi), want);
    }
}
