//! The physical GICv2 (GIC-400, QEMU's `arm,cortex-a15-gic`) as the hypervisor drives it:
//! the distributor (GICD), this CPU's CPU interface (GICC, banked per CPU at one address) and
//! the virtual interface control block (GICH: list registers, maintenance). GICv2 has no
//! system registers, so everything here is MMIO through [`Mmio`] and runs the same on
//! AArch64, ARMv7 and under host tests. The distributor and CPU-interface register offsets
//! come from the `arm-gic` crate's layout; GICH is not in that crate and is written here.
//!
//! Interrupts are used without security extensions in mind (QEMU virt) but also work from the
//! non-secure side of a GIC that has them (the Snow's GIC-400): only enables, priorities,
//! targets, configuration and the CPU interface's non-secure view are touched.

use arm_gic::gicv2::registers::{Gicc, Gicd, Typer};
use core::mem::offset_of;
use platform::Mmio;

/// INTIDs 1020-1023 are special (1023: nothing pending).
pub const SPURIOUS: u32 = 1020;

/// GICC_CTLR: signalling on (the non-secure Enable bit, bit 0 in either view), and
/// EOImodeNS (bit 9): an EOIR write only drops priority, deactivation is a separate GICC_DIR
/// write or, for an interrupt passed to a guest, the guest's EOI through a HW list register.
const GICC_CTLR_ENABLE_EOIMODE: u32 = 1 | (1 << 9);

/// GICH register offsets (GIC architecture v2, virtual interface control).
mod gich {
    pub const HCR: usize = 0x00;
    pub const VTR: usize = 0x04;
    pub const VMCR: usize = 0x08;
    pub const ELRSR0: usize = 0x30;
    pub const ELRSR1: usize = 0x34;
    pub const APR: usize = 0xf0;
    pub const LR0: usize = 0x100;
    /// GICH_HCR.En: the virtual CPU interface works.
    pub const HCR_EN: u32 = 1 << 0;
    /// GICH_HCR.UIE: maintenance interrupt while at most one list register is valid.
    pub const HCR_UIE: u32 = 1 << 1;
}

/// The GICv2 list-register format (GICH_LR<n>): HW[31], Grp1[30], State[29:28] (pending 28,
/// active 29), Priority[27:23] (the top 5 bits of the 8-bit priority), PhysicalID[19:10] with
/// HW set, else EOI[19] and CPUID[12:10] (the SGI's source), VirtualID[9:0].
pub mod lr {
    pub const HW: u32 = 1 << 31;
    pub const GROUP1: u32 = 1 << 30;
    pub const ACTIVE: u32 = 1 << 29;
    pub const PENDING: u32 = 1 << 28;
    pub const EOI: u32 = 1 << 19;
    pub const PRIORITY_SHIFT: u32 = 23;
    pub const PHYS_SHIFT: u32 = 10;
    pub const CPUID_SHIFT: u32 = 10;
}

/// Most list registers a vCPU switch carries (the vGIC core uses no more).
const SAVED_LRS: usize = crate::irq::vgic::MAX_LRS;

/// A vCPU's virtual CPU interface while it is off its CPU (`sched=credit`): GICH_HCR (with
/// the underflow request and EOICount), GICH_VMCR (the guest's GICV_CTLR, PMR, BPR), GICH_APR
/// (the active priorities), and the list registers in the GICv2 format as they were (an
/// SGI's source CPU kept), 0 for those that were empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtState {
    pub hcr: u32,
    pub vmcr: u32,
    pub apr: u32,
    pub lrs: [u32; SAVED_LRS],
}

impl VirtState {
    /// A vCPU that has not run: the virtual interface enabled, nothing in it.
    pub const FRESH: Self = Self { hcr: gich::HCR_EN, vmcr: 0, apr: 0, lrs: [0; SAVED_LRS] };
}

/// One GICv2: its three register blocks. `M` is the hardware (`RawMmio`) or a model.
pub struct GicV2<M: Mmio> {
    pub gicd: M,
    pub gicc: M,
    pub gich: M,
}

fn gicd_off<const N: usize>(field: usize, index: usize) -> usize {
    field + 4 * index.min(N - 1)
}

const IGROUPR: usize = offset_of!(Gicd, igroupr);
const ISENABLER: usize = offset_of!(Gicd, isenabler);
const ICENABLER: usize = offset_of!(Gicd, icenabler);
const ICPENDR: usize = offset_of!(Gicd, icpendr);
const ICACTIVER: usize = offset_of!(Gicd, icactiver);
const IPRIORITYR: usize = offset_of!(Gicd, ipriorityr);
const ITARGETSR: usize = offset_of!(Gicd, itargetsr);
const ICFGR: usize = offset_of!(Gicd, icfgr);
const SGIR: usize = offset_of!(Gicd, sgir);

impl<M: Mmio> GicV2<M> {
    pub fn new(gicd: M, gicc: M, gich: M) -> Self {
        Self { gicd, gicc, gich }
    }

    /// GICD_TYPER as the `arm-gic` crate decodes it.
    pub fn typer(&self) -> Typer {
        let raw = self.gicd.read32(offset_of!(Gicd, typer));
        // `Typer` is a transparent u32: every value is one.
        zerocopy::transmute!(raw)
    }

    /// GICD_TYPER.ITLinesNumber: INTIDs up to 32 * (n + 1) - 1 exist.
    pub fn it_lines(&self) -> u32 {
        self.typer().num_irqs() / 32 - 1
    }

    /// The distributor on, every SPI disabled (each is enabled when a guest enables it).
    pub fn init_distributor(&self) {
        self.gicd.write32(offset_of!(Gicd, ctlr), 0);
        let words = (self.it_lines() as usize + 1).min(32);
        for w in 1..words {
            self.gicd.write32(gicd_off::<0x20>(ICENABLER, w), u32::MAX);
            self.gicd.write32(gicd_off::<0x20>(ICPENDR, w), u32::MAX);
            self.gicd.write32(gicd_off::<0x20>(ICACTIVER, w), u32::MAX);
        }
        // Group 0 is what a GIC without security extensions signals as IRQ; on one with them
        // this register is secure-only and the write is ignored (everything is non-secure).
        for w in 0..words {
            self.gicd.write32(gicd_off::<0x20>(IGROUPR, w), 0);
        }
        // EnableGrp0 | EnableGrp1 (the non-secure view's bit 0 is its Enable).
        self.gicd.write32(offset_of!(Gicd, ctlr), 0b11);
    }

    /// This CPU's banked part: its SGIs and PPIs all off except `ppis` (at `priority`), the
    /// CPU interface on (EOImode 1, every priority unmasked), the virtual interface on and
    /// empty. Returns this CPU's interface mask (the bit GICD_ITARGETSR and GICD_SGIR name
    /// it by), read from the banked ITARGETSR0.
    pub fn init_cpu(&self, ppis: &[u32], priority: u8) -> u8 {
        self.gicd.write32(ICENABLER, u32::MAX);
        self.gicd.write32(ICPENDR, u32::MAX);
        self.gicd.write32(ICACTIVER, u32::MAX);
        let mut enable = 0u32;
        for &p in ppis.iter().filter(|&&p| p < 32) {
            self.set_priority(p, priority);
            enable |= 1 << p;
        }
        self.gicd.write32(ISENABLER, enable);
        self.gicc.write32(offset_of!(Gicc, pmr), 0xff);
        self.gicc.write32(offset_of!(Gicc, bpr), 0);
        self.gicc.write32(offset_of!(Gicc, ctlr), GICC_CTLR_ENABLE_EOIMODE);
        for i in 0..self.lr_count() {
            self.write_lr(i, 0);
        }
        self.gich.write32(gich::APR, 0);
        self.gich.write32(gich::VMCR, 0);
        self.gich.write32(gich::HCR, gich::HCR_EN);
        self.cpu_mask()
    }

    /// This CPU's interface mask: ITARGETSR0-7 read back the reading CPU's own bit.
    pub fn cpu_mask(&self) -> u8 {
        self.gicd.read32(ITARGETSR) as u8
    }

    /// Acknowledge the highest-priority pending interrupt: GICC_IAR (INTID in 9:0, an SGI's
    /// source CPU in 12:10). An INTID of 1020 or more means none.
    pub fn acknowledge(&self) -> u32 {
        self.gicc.read32(offset_of!(Gicc, iar))
    }

    /// Priority drop of an acknowledged interrupt (`iar` as `acknowledge` returned it).
    pub fn end_of_interrupt(&self, iar: u32) {
        self.gicc.write32(offset_of!(Gicc, eoir), iar);
    }

    /// Deactivate an interrupt whose priority was dropped.
    pub fn deactivate(&self, iar: u32) {
        self.gicc.write32(offset_of!(Gicc, dir), iar);
    }

    /// Send SGI `sgi` to the CPU interfaces in `targets`.
    pub fn send_sgi(&self, sgi: u32, targets: u8) {
        self.gicd.write32(SGIR, (u32::from(targets) << 16) | (sgi & 0xf));
    }

    fn set_priority(&self, intid: u32, priority: u8) {
        let off = gicd_off::<0x100>(IPRIORITYR, intid as usize / 4);
        let shift = 8 * (intid % 4);
        let v = (self.gicd.read32(off) & !(0xff << shift)) | (u32::from(priority) << shift);
        self.gicd.write32(off, v);
    }

    /// Enable SPI `intid`, signalled to the CPU interfaces in `targets` at `priority`.
    pub fn enable_spi(&self, intid: u32, targets: u8, priority: u8) {
        let off = gicd_off::<0x100>(ITARGETSR, intid as usize / 4);
        let shift = 8 * (intid % 4);
        let v = (self.gicd.read32(off) & !(0xff << shift)) | (u32::from(targets) << shift);
        self.gicd.write32(off, v);
        self.set_priority(intid, priority);
        self.gicd.write32(gicd_off::<0x20>(ISENABLER, intid as usize / 32), 1 << (intid % 32));
    }

    pub fn disable_spi(&self, intid: u32) {
        self.gicd.write32(gicd_off::<0x20>(ICENABLER, intid as usize / 32), 1 << (intid % 32));
    }

    /// Edge-triggered (true) or level-sensitive.
    pub fn configure(&self, intid: u32, edge: bool) {
        let off = gicd_off::<0x40>(ICFGR, intid as usize / 16);
        let bit = 1u32 << (2 * (intid % 16) + 1);
        let v = self.gicd.read32(off);
        self.gicd.write32(off, if edge { v | bit } else { v & !bit });
    }

    /// Implemented list registers (GICH_VTR.ListRegs + 1), at most 64.
    pub fn lr_count(&self) -> usize {
        (self.gich.read32(gich::VTR) & 0x3f) as usize + 1
    }

    pub fn read_lr(&self, index: usize) -> u32 {
        self.gich.read32(gich::LR0 + 4 * index.min(63))
    }

    pub fn write_lr(&self, index: usize, value: u32) {
        self.gich.write32(gich::LR0 + 4 * index.min(63), value);
    }

    /// Save this CPU's virtual interface into `out` and leave it empty for the next vCPU:
    /// only the list registers GICH_ELRSR does not report empty are read (and cleared), the
    /// active priorities cleared, and GICH_HCR back to En alone (no underflow interrupt for an
    /// interface with nothing in it).
    pub fn save_virtual(&self, out: &mut VirtState) {
        let n = self.lr_count().min(SAVED_LRS);
        let empty = u64::from(self.gich.read32(gich::ELRSR0)) | u64::from(self.gich.read32(gich::ELRSR1)) << 32;
        for (i, lr) in out.lrs.iter_mut().enumerate() {
            *lr = 0;
            if i < n && empty & (1 << i) == 0 {
                *lr = self.read_lr(i);
                self.write_lr(i, 0);
            }
        }
        out.hcr = self.gich.read32(gich::HCR);
        out.vmcr = self.gich.read32(gich::VMCR);
        out.apr = self.gich.read32(gich::APR);
        self.gich.write32(gich::APR, 0);
        self.gich.write32(gich::HCR, gich::HCR_EN);
    }

    /// Load a vCPU's virtual interface (as `save_virtual` left it) on this CPU: every list
    /// register written (the empty ones 0, so nothing of the vCPU before remains), then the
    /// active priorities, GICV_CTLR/PMR/BPR and last GICH_HCR.
    pub fn restore_virtual(&self, s: &VirtState) {
        let n = self.lr_count().min(SAVED_LRS);
        for (i, &lr) in s.lrs.iter().enumerate().take(n) {
            self.write_lr(i, lr);
        }
        self.gich.write32(gich::APR, s.apr);
        self.gich.write32(gich::VMCR, s.vmcr);
        self.gich.write32(gich::HCR, s.hcr);
    }

    /// GICH_HCR.UIE on or off (written only when it changes).
    pub fn set_underflow_irq(&self, on: bool) {
        let hcr = self.gich.read32(gich::HCR);
        let want = if on { hcr | gich::HCR_UIE } else { hcr & !gich::HCR_UIE };
        if want != hcr {
            self.gich.write32(gich::HCR, want);
        }
    }
}

/// A GICv3-format list-register value (the vGIC core's, `irq::vgic::lr`) in the GICv2
/// format, with `source` as an SGI's CPUID. Priority keeps its top 5 bits (what GICv2 holds).
pub fn lr_from_v3(v: u64, source: u8) -> u32 {
    use crate::irq::vgic::lr as v3;
    let intid = v3::intid(v) & 0x3ff;
    let mut out = intid | (u32::from(v3::priority(v) >> 3) << lr::PRIORITY_SHIFT);
    if v & v3::PENDING != 0 {
        out |= lr::PENDING;
    }
    if v & v3::ACTIVE != 0 {
        out |= lr::ACTIVE;
    }
    if v & v3::GROUP1 != 0 {
        out |= lr::GROUP1;
    }
    if v & v3::HW != 0 {
        out |= lr::HW | ((((v >> 32) & 0x3ff) as u32) << lr::PHYS_SHIFT);
    } else {
        if v & v3::EOI_MAINT != 0 {
            out |= lr::EOI;
        }
        if intid < 16 {
            out |= u32::from(source & 7) << lr::CPUID_SHIFT;
        }
    }
    out
}

/// A GICv2 list-register value in the GICv3 format the vGIC core keeps (an SGI's CPUID is
/// dropped: the core does not keep it).
pub fn lr_to_v3(v: u32) -> u64 {
    use crate::irq::vgic::lr as v3;
    let intid = v & 0x3ff;
    let prio = (((v >> lr::PRIORITY_SHIFT) & 0x1f) << 3) as u8;
    let mut out = v3::encode(intid, prio, v & lr::GROUP1 != 0, v & lr::PENDING != 0, v & lr::ACTIVE != 0);
    if v & lr::HW != 0 {
        out = v3::with_hw(out, (v >> lr::PHYS_SHIFT) & 0x3ff);
    } else if v & lr::EOI != 0 {
        out |= v3::EOI_MAINT;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use alloc::vec::Vec;
    use core::cell::RefCell;

    /// A register block that remembers writes (and logs them), with fixed values for reads
    /// of registers never written.
    #[derive(Default)]
    struct Regs {
        values: RefCell<BTreeMap<usize, u32>>,
        writes: RefCell<Vec<(usize, u32)>>,
    }

    impl Mmio for &Regs {
        fn read32(&self, offset: usize) -> u32 {
            self.values.borrow().get(&offset).copied().unwrap_or(0)
        }
        fn write32(&self, offset: usize, value: u32) {
            self.values.borrow_mut().insert(offset, value);
            self.writes.borrow_mut().push((offset, value));
        }
    }

    fn gic<'a>(d: &'a Regs, c: &'a Regs, h: &'a Regs) -> GicV2<&'a Regs> {
        GicV2::new(d, c, h)
    }

    #[test]
    fn register_offsets_are_the_architected_ones() {
        assert_eq!((IGROUPR, ISENABLER, ICENABLER, ICPENDR, ICACTIVER), (0x80, 0x100, 0x180, 0x280, 0x380));
        assert_eq!((IPRIORITYR, ITARGETSR, ICFGR, SGIR), (0x400, 0x800, 0xc00, 0xf00));
        assert_eq!((offset_of!(Gicc, iar), offset_of!(Gicc, eoir), offset_of!(Gicc, dir)), (0xc, 0x10, 0x1000));
    }

    #[test]
    fn it_lines_and_list_registers_come_from_typer_and_vtr() {
        let (d, c, h) = (Regs::default(), Regs::default(), Regs::default());
        d.values.borrow_mut().insert(0x4, 0x0000_fc08); // ITLinesNumber 8: 288 INTIDs
        h.values.borrow_mut().insert(0x4, 0x9000_0003); // 4 list registers
        let g = gic(&d, &c, &h);
        assert_eq!(g.it_lines(), 8);
        assert_eq!(g.lr_count(), 4);
    }

    #[test]
    fn init_cpu_enables_only_the_given_ppis_and_reports_the_interface_bit() {
        let (d, c, h) = (Regs::default(), Regs::default(), Regs::default());
        d.values.borrow_mut().insert(ITARGETSR, 0x0202_0202); // CPU interface 1 reading
        d.values.borrow_mut().insert(IPRIORITYR + 24, 0x1122_3344);
        h.values.borrow_mut().insert(0x4, 3);
        let g = gic(&d, &c, &h);
        assert_eq!(g.init_cpu(&[0, 25, 26, 27], 0x80), 2);
        let v = d.values.borrow();
        assert_eq!(v[&ISENABLER], (1 << 0) | (1 << 25) | (1 << 26) | (1 << 27));
        // PPIs 25-27 at 0x80, INTID 24's priority byte kept.
        assert_eq!(v[&(IPRIORITYR + 24)], 0x8080_8044);
        assert_eq!(c.values.borrow()[&0], GICC_CTLR_ENABLE_EOIMODE);
        assert_eq!(h.values.borrow()[&gich::HCR], gich::HCR_EN);
        for i in 0..4 {
            assert_eq!(h.values.borrow()[&(gich::LR0 + 4 * i)], 0);
        }
    }

    #[test]
    fn enable_spi_sets_its_target_byte_priority_and_enable_bit_only() {
        let (d, c, h) = (Regs::default(), Regs::default(), Regs::default());
        d.values.borrow_mut().insert(ITARGETSR + 0x30, 0x0101_0101);
        let g = gic(&d, &c, &h);
        g.enable_spi(50, 0x2, 0xa0);
        let v = d.values.borrow();
        assert_eq!(v[&(ITARGETSR + 0x30)], 0x0102_0101);
        assert_eq!(v[&(IPRIORITYR + 0x30)], 0x00a0_0000);
        assert_eq!(v[&(ISENABLER + 4)], 1 << 18);
        drop(v);
        g.disable_spi(50);
        assert_eq!(d.values.borrow()[&(ICENABLER + 4)], 1 << 18);
        g.configure(50, true);
        assert_eq!(d.values.borrow()[&(ICFGR + 12)], 1 << 5);
        g.configure(50, false);
        assert_eq!(d.values.borrow()[&(ICFGR + 12)], 0);
    }

    #[test]
    fn sgis_name_their_targets_by_interface_mask() {
        let (d, c, h) = (Regs::default(), Regs::default(), Regs::default());
        let g = gic(&d, &c, &h);
        g.send_sgi(0, 0b10);
        assert_eq!(d.writes.borrow().last(), Some(&(SGIR, 0x0002_0000)));
        g.send_sgi(0x13, 0b1);
        assert_eq!(d.writes.borrow().last(), Some(&(SGIR, 0x0001_0003)));
    }

    #[test]
    fn underflow_bit_is_written_only_on_change() {
        let (d, c, h) = (Regs::default(), Regs::default(), Regs::default());
        h.values.borrow_mut().insert(gich::HCR, gich::HCR_EN);
        let g = gic(&d, &c, &h);
        g.set_underflow_irq(false);
        assert!(h.writes.borrow().is_empty());
        g.set_underflow_irq(true);
        assert_eq!(h.values.borrow()[&gich::HCR], gich::HCR_EN | gich::HCR_UIE);
    }

    /// A GICH block with `lrs` list registers holding `values` (0 empty: GICH_ELRSR set).
    fn gich_with(h: &Regs, values: &[u32]) {
        let mut m = h.values.borrow_mut();
        m.insert(gich::VTR, values.len() as u32 - 1);
        let mut empty = 0u64;
        for (i, &v) in values.iter().enumerate() {
            m.insert(gich::LR0 + 4 * i, v);
            if v == 0 {
                empty |= 1 << i;
            }
        }
        m.insert(gich::ELRSR0, empty as u32);
        m.insert(gich::ELRSR1, (empty >> 32) as u32);
    }

    #[test]
    fn a_switch_saves_the_list_registers_in_use_and_leaves_the_interface_empty() {
        let (d, c, h) = (Regs::default(), Regs::default(), Regs::default());
        // LR1 a pending SGI 3 from CPU 2, LR3 an active HW SPI; LR0 and LR2 empty.
        let sgi = 3 | (2 << lr::CPUID_SHIFT) | lr::PENDING;
        let spi = 48 | (48 << lr::PHYS_SHIFT) | lr::HW | lr::ACTIVE;
        gich_with(&h, &[0, sgi, 0, spi]);
        h.values.borrow_mut().insert(gich::HCR, gich::HCR_EN | gich::HCR_UIE | (3 << 27));
        h.values.borrow_mut().insert(gich::VMCR, 0xf000_0201);
        h.values.borrow_mut().insert(gich::APR, 1 << 4);
        let g = gic(&d, &c, &h);
        let mut s = VirtState::FRESH;
        s.lrs[2] = 0xdead;
        g.save_virtual(&mut s);
        assert_eq!(s.hcr, gich::HCR_EN | gich::HCR_UIE | (3 << 27));
        assert_eq!((s.vmcr, s.apr), (0xf000_0201, 1 << 4));
        let mut want = [0; SAVED_LRS];
        (want[1], want[3]) = (sgi, spi);
        assert_eq!(s.lrs, want, "the SGI's source CPU kept, empty ones 0");
        // Only the two in use were read back and cleared; the interface is left enabled and
        // empty, with no underflow interrupt.
        let lr_writes: Vec<_> = h.writes.borrow().iter().filter(|(o, _)| *o >= gich::LR0).copied().collect();
        assert_eq!(lr_writes, [(gich::LR0 + 4, 0), (gich::LR0 + 12, 0)]);
        assert_eq!(h.values.borrow()[&gich::HCR], gich::HCR_EN);
        assert_eq!(h.values.borrow()[&gich::APR], 0);
    }

    #[test]
    fn a_switch_restores_every_list_register_then_the_control_registers() {
        let (d, c, h) = (Regs::default(), Regs::default(), Regs::default());
        // The vCPU before left LR0 and LR2 full; the incoming one had only LR1.
        gich_with(&h, &[27 | lr::PENDING, 0, 30 | lr::ACTIVE, 0]);
        let g = gic(&d, &c, &h);
        let mut s = VirtState::FRESH;
        s.lrs[1] = 33 | lr::PENDING | lr::EOI;
        (s.hcr, s.vmcr, s.apr) = (gich::HCR_EN | gich::HCR_UIE, 0x1f0_0001, 1 << 2);
        g.restore_virtual(&s);
        let v = h.values.borrow();
        let lrs: Vec<u32> = (0..4).map(|i| v[&(gich::LR0 + 4 * i)]).collect();
        assert_eq!(lrs, [0, 33 | lr::PENDING | lr::EOI, 0, 0]);
        assert_eq!((v[&gich::APR], v[&gich::VMCR], v[&gich::HCR]), (1 << 2, 0x1f0_0001, gich::HCR_EN | gich::HCR_UIE));
        // GICH_HCR last: the interface is enabled (and may signal underflow) only once its
        // list registers are the incoming vCPU's.
        assert_eq!(h.writes.borrow().last(), Some(&(gich::HCR, gich::HCR_EN | gich::HCR_UIE)));
        // Only the implemented list registers are touched.
        assert!(h.writes.borrow().iter().all(|(o, _)| *o < gich::LR0 + 16));
    }

    #[test]
    fn save_then_restore_gives_back_the_same_interface() {
        let (d, c, h) = (Regs::default(), Regs::default(), Regs::default());
        let values = [5 | lr::PENDING | (1 << lr::CPUID_SHIFT), 0, 40 | lr::PENDING | lr::ACTIVE | lr::GROUP1, 27 | lr::EOI];
        gich_with(&h, &values);
        // LR3: invalid state but EOI set: GICH_ELRSR does not count it empty.
        h.values.borrow_mut().insert(gich::ELRSR0, 0b0010);
        h.values.borrow_mut().insert(gich::HCR, gich::HCR_EN | gich::HCR_UIE);
        h.values.borrow_mut().insert(gich::VMCR, 0x4c00_0003);
        h.values.borrow_mut().insert(gich::APR, 0x8000_0001);
        let g = gic(&d, &c, &h);
        let mut s = VirtState::FRESH;
        g.save_virtual(&mut s);
        assert_eq!(&s.lrs[..4], &values);
        g.restore_virtual(&s);
        let v = h.values.borrow();
        assert_eq!((0..4).map(|i| v[&(gich::LR0 + 4 * i)]).collect::<Vec<_>>(), values);
        assert_eq!((v[&gich::HCR], v[&gich::VMCR], v[&gich::APR]), (gich::HCR_EN | gich::HCR_UIE, 0x4c00_0003, 0x8000_0001));
    }

    #[test]
    fn list_register_formats_convert_both_ways() {
        use crate::irq::vgic::lr as v3;
        // A pending virtual PPI 27 at priority 0xa0 with the EOI maintenance request.
        let v = v3::encode(27, 0xa0, false, true, false) | v3::EOI_MAINT;
        let w = lr_from_v3(v, 0);
        assert_eq!(w, 27 | (0x14 << 23) | lr::PENDING | lr::EOI);
        assert_eq!(lr_to_v3(w), v);
        // A passed-through SPI: HW with its physical INTID, active and pending.
        let v = v3::with_hw(v3::encode(48, 0x80, false, true, true), 48);
        let w = lr_from_v3(v, 3);
        assert_eq!(w, 48 | (0x10 << 23) | lr::PENDING | lr::ACTIVE | lr::HW | (48 << 10));
        assert_eq!(lr_to_v3(w), v);
        // An SGI carries its source CPU; the core's format drops it.
        let w = lr_from_v3(v3::encode(3, 0, false, true, false), 1);
        assert_eq!(w, 3 | (1 << 10) | lr::PENDING);
        assert_eq!(lr_to_v3(w), v3::encode(3, 0, false, true, false));
        // An empty register stays empty, and a low priority keeps its top 5 bits.
        assert_eq!(lr_from_v3(0, 0), 0);
        assert_eq!(lr_to_v3(lr_from_v3(v3::encode(40, 0xff, true, true, false), 0)), v3::encode(40, 0xf8, true, true, false));
    }
}
