//! The emulated GICv3 register files: the distributor (GICD, 64 KiB) and one redistributor
//! per vCPU (GICR: an RD frame and an SGI frame, 64 KiB each), with affinity routing always
//! on; LPIs (GICR_CTLR.EnableLPIs, PROPBASER, PENDBASER) only when an emulated ITS offers
//! them (`lpi`). Access rules follow the GICv3 architecture: 32-bit registers take
//! word accesses only, IPRIORITYR also takes bytes, IROUTER and GICR_TYPER take 64-bit or
//! 32-bit accesses; anything else aborts. Reserved offsets read as zero and ignore writes.

use super::{lr, HwOp, IrqState, Vgic, PRIORITY_MASK, PRIVATE_IRQS, SGI_COUNT};
use crate::domain::mmio::{MmioAccess, MmioDevice, MmioResult};
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};
use crate::sync::SpinMutex as Mutex;

/// GICR_TYPER.PLPIS: physical LPIs supported (what the guest sees as its LPIs).
pub const GICR_TYPER_PLPIS: u64 = 1 << 0;
/// GICD_TYPER.LPIS.
pub const GICD_TYPER_LPIS: u32 = 1 << 17;

/// Bumped by every write to an emulated GIC register: the arch layer compares it with what
/// it saw last to skip list-register work on guest entry when nothing changed.
pub static REGISTER_WRITES: AtomicU64 = AtomicU64::new(0);

/// GICD_CTLR (non-secure view of a GIC with two security states).
pub const CTLR_ENABLE_GRP0: u32 = 1 << 0;
pub const CTLR_ENABLE_GRP1A: u32 = 1 << 1;
pub const CTLR_ARE_NS: u32 = 1 << 4;

/// GICD_IROUTER bits kept: Aff3 (39:32), IRM (31), Aff2-Aff0 (23:0).
const ROUTE_MASK: u64 = (0xff << 32) | (1 << 31) | 0xff_ffff;

/// Size of the distributor frame.
pub const GICD_SIZE: u64 = 0x1_0000;
/// Size of one vCPU's redistributor (RD frame + SGI frame).
pub const GICR_STRIDE: u64 = 0x2_0000;

/// GICD_IIDR / GICR_IIDR: implementer 0x43b (JEP106 code of Arm) in the low 12 bits, product
/// ID 'X' (0x58) in bits 31:24 so guests can tell this emulation apart.
pub const IIDR: u32 = (0x58 << 24) | 0x43b;
/// PIDR2: ArchRev 3 (GICv3) in bits 7:4.
pub const PIDR2: u32 = 0x3b;

mod gicd {
    pub const CTLR: u64 = 0x0000;
    pub const TYPER: u64 = 0x0004;
    pub const IIDR: u64 = 0x0008;
    pub const IGROUPR: u64 = 0x0080;
    pub const ISENABLER: u64 = 0x0100;
    pub const ICENABLER: u64 = 0x0180;
    pub const ISPENDR: u64 = 0x0200;
    pub const ICPENDR: u64 = 0x0280;
    pub const ISACTIVER: u64 = 0x0300;
    pub const ICACTIVER: u64 = 0x0380;
    pub const IPRIORITYR: u64 = 0x0400;
    pub const ICFGR: u64 = 0x0c00;
    pub const IROUTER: u64 = 0x6000;
    pub const IROUTER_END: u64 = 0x8000;
}

mod gicr {
    pub const CTLR: u64 = 0x0000;
    pub const IIDR: u64 = 0x0004;
    pub const TYPER: u64 = 0x0008;
    pub const WAKER: u64 = 0x0014;
    pub const SGI: u64 = 0x1_0000;
}

pub(super) const ID_PIDR2: u64 = 0xffe8;
pub(super) const ID_CIDR: [(u64, u32); 4] = [(0xfff0, 0x0d), (0xfff4, 0xf0), (0xfff8, 0x05), (0xfffc, 0xb1)];

/// Which bit-per-interrupt register a write targets.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum BitReg {
    Group,
    SetEnable,
    ClearEnable,
    SetPending,
    ClearPending,
    SetActive,
    ClearActive,
}

impl BitReg {
    /// The register at `off` among the seven bit-per-interrupt arrays (each `len` bytes),
    /// and the byte offset inside it.
    pub(super) fn at(off: u64, len: u64) -> Option<(BitReg, u64)> {
        // The arrays follow each other every 0x80 bytes from IGROUPR to ICACTIVER.
        const TABLE: [BitReg; 7] = [
            BitReg::Group,
            BitReg::SetEnable,
            BitReg::ClearEnable,
            BitReg::SetPending,
            BitReg::ClearPending,
            BitReg::SetActive,
            BitReg::ClearActive,
        ];
        const STRIDE: u64 = gicd::ISENABLER - gicd::IGROUPR;
        const _: () = {
            let bases = [gicd::IGROUPR, gicd::ISENABLER, gicd::ICENABLER, gicd::ISPENDR, gicd::ICPENDR, gicd::ISACTIVER, gicd::ICACTIVER];
            let mut k = 0;
            while k < bases.len() {
                assert!(bases[k] == gicd::IGROUPR + k as u64 * STRIDE);
                k += 1;
            }
        };
        let rel = off.checked_sub(gicd::IGROUPR)?;
        let (k, inner) = ((rel / STRIDE) as usize, rel % STRIDE);
        if inner >= len {
            return None;
        }
        TABLE.get(k).map(|&r| (r, inner))
    }
}

pub(super) fn word_only(a: &MmioAccess) -> bool {
    a.size == 4 && a.offset % 4 == 0
}

pub(super) fn word_or_dword(a: &MmioAccess) -> bool {
    (a.size == 4 || a.size == 8) && a.offset % u64::from(a.size) == 0
}

/// Read-as-zero/write-ignored for a well-formed word access, abort otherwise.
pub(super) fn raz_wi(a: &MmioAccess) -> MmioResult {
    if word_only(a) {
        MmioResult::Done(0)
    } else {
        MmioResult::Abort
    }
}

/// The 32-bit half of a 64-bit register an access selects, or the whole register.
pub(super) fn read64(a: &MmioAccess, reg_base: u64, value: u64) -> u64 {
    if a.size == 8 {
        value
    } else if a.offset - reg_base == 4 {
        value >> 32
    } else {
        value & 0xffff_ffff
    }
}

/// `old` with the half (or whole) a write to `reg_base` selects replaced by the written value.
pub(super) fn write64(a: &MmioAccess, reg_base: u64, old: u64) -> u64 {
    if a.size == 8 {
        a.value
    } else if a.offset - reg_base == 4 {
        (old & 0xffff_ffff) | (a.value << 32)
    } else {
        (old & !0xffff_ffff) | (a.value & 0xffff_ffff)
    }
}

/// Bit n set where `f` holds for `states[n]`.
#[inline]
fn gather(states: &[IrqState], f: impl Fn(&IrqState) -> bool) -> u32 {
    let mut w = 0u32;
    for (b, irq) in states.iter().take(32).enumerate() {
        w |= u32::from(f(irq)) << b;
    }
    w
}

impl Vgic {
    /// GICD_TYPER: ITLinesNumber, 10 INTID bits (or the LPIs' width and LPIS when LPIs are
    /// offered), no 1-of-N routing.
    pub fn gicd_typer(&self) -> u32 {
        match self.lpis.id_bits {
            0 => self.it_lines | (9 << 19) | (1 << 25),
            bits => self.it_lines | (u32::from(bits - 1) << 19) | GICD_TYPER_LPIS | (1 << 25),
        }
    }

    /// GICR_TYPER of `vcpu`: its affinity, Processor_Number = vCPU id, Last on the final one.
    pub fn gicr_typer(&self, vcpu: usize) -> u64 {
        let Some(v) = self.vcpus.get(vcpu) else { return 0 };
        let aff = v.affinity;
        let packed = ((aff >> 32) & 0xff) << 24 | (aff & 0xff_ffff);
        let last = if vcpu + 1 == self.vcpus.len() { 1 << 4 } else { 0 };
        let plpis = if self.lpis.id_bits != 0 { GICR_TYPER_PLPIS } else { 0 };
        (packed << 32) | ((vcpu as u64 & 0xffff) << 8) | last | plpis
    }

    /// The state bits of the LR holding `irq`, if one does.
    fn lr_bits(&self, vcpu: usize, irq: &IrqState) -> u64 {
        match (irq.lr, self.vcpus.get(vcpu)) {
            (Some(i), Some(v)) => v.lr_value.get(usize::from(i)).copied().unwrap_or(0) & (lr::PENDING | lr::ACTIVE),
            _ => 0,
        }
    }

    /// Change the state bits of the LR holding `intid` (on `vcpu`): written back by `flush`.
    fn edit_lr(&mut self, vcpu: usize, intid: u32, set: u64, clear: u64) {
        let Some(slot) = self.irq(vcpu, intid).and_then(|i| i.lr) else { return };
        let slot = usize::from(slot);
        if let Some(v) = self.vcpus.get_mut(vcpu) {
            if let Some(val) = v.lr_value.get_mut(slot) {
                *val = (*val | set) & !clear;
                v.lr_stale |= 1 << slot;
            }
        }
    }

    /// Write one bit (`1` written) of a bit-per-interrupt register.
    fn bit_write(&mut self, vcpu: usize, reg: BitReg, intid: u32, one: bool) {
        // The LR of an SPI lives on the vCPU it was delivered to.
        let lr_vcpu = if intid < PRIVATE_IRQS { vcpu } else { self.spi_target(intid).unwrap_or(0) };
        let Some(irq) = self.irq_mut(vcpu, intid) else { return };
        if irq.hw && one && matches!(reg, BitReg::SetEnable | BitReg::ClearEnable) {
            let on = reg == BitReg::SetEnable;
            if irq.enabled != on {
                irq.enabled = on;
                self.push_hw_op(HwOp::Enable(intid, on));
            }
            return;
        }
        match (reg, one) {
            (BitReg::Group, v) => irq.group1 = v,
            (BitReg::SetEnable, true) => irq.enabled = true,
            (BitReg::ClearEnable, true) => irq.enabled = false,
            (BitReg::SetPending, true) => irq.pending = true,
            (BitReg::ClearPending, true) => {
                irq.pending = false;
                // A physically active SPI that never reached an LR is dropped here: the
                // physical GIC must let go of it too.
                let drop_hw = irq.hw_active && irq.lr.is_none();
                if drop_hw {
                    irq.hw_active = false;
                    self.push_hw_op(HwOp::Deactivate(intid));
                }
                self.edit_lr(lr_vcpu, intid, 0, lr::PENDING);
            }
            (BitReg::SetActive, true) => {
                irq.active = true;
                self.edit_lr(lr_vcpu, intid, lr::ACTIVE, 0);
            }
            (BitReg::ClearActive, true) => {
                irq.active = false;
                self.edit_lr(lr_vcpu, intid, 0, lr::ACTIVE);
            }
            _ => {}
        }
    }

    /// A bit-per-interrupt register word covering INTIDs `first..first + 32`.
    pub(super) fn bits_access(&mut self, vcpu: usize, reg: BitReg, first: u32, a: &MmioAccess) -> MmioResult {
        if !word_only(a) {
            return MmioResult::Abort;
        }
        let nr = self.nr_irqs();
        if first >= nr {
            return MmioResult::Done(0);
        }
        let in_range = if nr - first >= 32 { u32::MAX } else { (1u32 << (nr - first)) - 1 };
        if !a.write {
            return MmioResult::Done(u64::from(self.bits_read(vcpu, reg, first) & in_range));
        }
        let value = a.value as u32 & in_range;
        // Writing 0 to a set/clear register does nothing: only the ones are visited. A group
        // write sets every bit either way. SGIs are group-configurable and enable/pend like
        // others; nothing is read-only here.
        let mut bits = if reg == BitReg::Group { in_range } else { value };
        while bits != 0 {
            let b = bits.trailing_zeros();
            bits &= bits - 1;
            let intid = first + b;
            self.bit_write(vcpu, reg, intid, value & (1 << b) != 0);
            self.candidate(vcpu, intid);
        }
        self.mark_all_dirty();
        MmioResult::Done(0)
    }

    /// The 32 bits of a bit-per-interrupt register from INTID `first` (a multiple of 32),
    /// as a read shows them (bits past the last INTID are zero).
    fn bits_read(&self, vcpu: usize, reg: BitReg, first: u32) -> u32 {
        let states: &[IrqState] = if first < PRIVATE_IRQS {
            match self.vcpus.get(vcpu) {
                Some(v) => &v.private,
                None => return 0,
            }
        } else {
            let start = (first - PRIVATE_IRQS) as usize;
            let end = (start + 32).min(self.spis.len());
            self.spis.get(start..end).unwrap_or(&[])
        };
        match reg {
            BitReg::Group => gather(states, |irq| irq.group1),
            BitReg::SetEnable | BitReg::ClearEnable => gather(states, |irq| irq.enabled),
            BitReg::SetActive | BitReg::ClearActive => gather(states, |irq| irq.active),
            BitReg::SetPending | BitReg::ClearPending => {
                // The LR's copy of the pending bit counts for interrupts an LR holds.
                let lr_vcpu = |irq: &IrqState, b: usize| {
                    if first < PRIVATE_IRQS {
                        vcpu
                    } else if irq.lr.is_some() {
                        self.spi_target(first + b as u32).unwrap_or(0)
                    } else {
                        vcpu
                    }
                };
                states.iter().enumerate().fold(0u32, |w, (b, irq)| {
                    let on = irq.is_pending() || (irq.lr.is_some() && self.lr_bits(lr_vcpu(irq, b), irq) & lr::PENDING != 0);
                    if on { w | (1 << b) } else { w }
                })
            }
        }
    }

    /// IPRIORITYR bytes for INTIDs starting at `first` (byte or word access).
    pub(super) fn priority_access(&mut self, vcpu: usize, first: u32, a: &MmioAccess) -> MmioResult {
        let ok = a.size == 1 || (a.size == 4 && a.offset % 4 == 0);
        if !ok {
            return MmioResult::Abort;
        }
        let mut out = 0u64;
        for b in 0..u32::from(a.size) {
            let Some(irq) = self.irq_mut(vcpu, first + b) else { continue };
            if a.write {
                irq.priority = ((a.value >> (8 * b)) as u8) & PRIORITY_MASK;
            } else {
                out |= u64::from(irq.priority) << (8 * b);
            }
        }
        if a.write {
            self.mark_all_dirty();
        }
        MmioResult::Done(out)
    }

    /// ICFGR word covering INTIDs `first..first + 16`: bit 2k+1 set = edge-triggered. SGIs
    /// are always edge (read-only).
    pub(super) fn config_access(&mut self, vcpu: usize, first: u32, a: &MmioAccess) -> MmioResult {
        if !word_only(a) {
            return MmioResult::Abort;
        }
        let mut out = 0u64;
        for k in 0..16u32 {
            let intid = first + k;
            let Some(irq) = self.irq_mut(vcpu, intid) else { continue };
            if a.write && intid >= SGI_COUNT {
                let edge = a.value & (1 << (2 * k + 1)) != 0;
                let changed = irq.edge != edge;
                irq.edge = edge;
                let hw = irq.hw;
                if changed {
                    self.candidate(vcpu, intid);
                }
                if hw && changed {
                    self.push_hw_op(HwOp::Configure(intid, edge));
                }
            }
            let edge = self.irq(vcpu, intid).is_some_and(|i| i.edge);
            if edge {
                out |= 1 << (2 * k + 1);
            }
        }
        if a.write {
            self.mark_all_dirty();
        }
        MmioResult::Done(out)
    }

    /// An access to the distributor by `vcpu`.
    pub fn gicd_access(&mut self, vcpu: usize, a: MmioAccess) -> MmioResult {
        if !matches!(a.size, 1 | 2 | 4 | 8) {
            return MmioResult::Abort;
        }
        let off = a.offset;
        match off {
            gicd::CTLR => {
                if !word_only(&a) {
                    return MmioResult::Abort;
                }
                if a.write {
                    self.ctlr = (a.value as u32) & (CTLR_ENABLE_GRP0 | CTLR_ENABLE_GRP1A);
                    self.all_candidates();
                    self.mark_all_dirty();
                }
                MmioResult::Done(u64::from(self.ctlr | CTLR_ARE_NS))
            }
            gicd::TYPER => if word_only(&a) { MmioResult::Done(u64::from(self.gicd_typer())) } else { MmioResult::Abort },
            gicd::IIDR => if word_only(&a) { MmioResult::Done(u64::from(IIDR)) } else { MmioResult::Abort },
            _ if BitReg::at(off, 0x80).is_some() => {
                let Some((reg, inner)) = BitReg::at(off, 0x80) else { return MmioResult::Abort };
                let first = (inner / 4) as u32 * 32;
                if first < PRIVATE_IRQS {
                    // With affinity routing, SGIs and PPIs are configured in the redistributor.
                    return raz_wi(&a);
                }
                self.bits_access(vcpu, reg, first, &a)
            }
            _ if (gicd::IPRIORITYR..gicd::IPRIORITYR + 0x400).contains(&off) => {
                let first = (off - gicd::IPRIORITYR) as u32 & !(u32::from(a.size) - 1);
                if first < PRIVATE_IRQS {
                    return if a.size == 1 || a.size == 4 { MmioResult::Done(0) } else { MmioResult::Abort };
                }
                self.priority_access(vcpu, first, &a)
            }
            _ if (gicd::ICFGR..gicd::ICFGR + 0x100).contains(&off) => {
                let first = ((off - gicd::ICFGR) / 4) as u32 * 16;
                if first < PRIVATE_IRQS {
                    return raz_wi(&a);
                }
                self.config_access(vcpu, first, &a)
            }
            _ if (gicd::IROUTER..gicd::IROUTER_END).contains(&off) => {
                if !word_or_dword(&a) {
                    return MmioResult::Abort;
                }
                let reg = off & !7;
                let intid = ((reg - gicd::IROUTER) / 8) as u32;
                if intid < PRIVATE_IRQS {
                    return MmioResult::Done(0);
                }
                let Some(irq) = self.irq_mut(vcpu, intid) else { return MmioResult::Done(0) };
                if a.write {
                    irq.route = write64(&a, reg, irq.route) & ROUTE_MASK;
                    self.mark_all_dirty();
                }
                let route = self.irq(vcpu, intid).map(|i| i.route).unwrap_or(0);
                MmioResult::Done(read64(&a, reg, route))
            }
            ID_PIDR2 => if word_only(&a) { MmioResult::Done(u64::from(PIDR2)) } else { MmioResult::Abort },
            _ => {
                if let Some(&(_, v)) = ID_CIDR.iter().find(|(o, _)| *o == off) {
                    return if word_only(&a) { MmioResult::Done(u64::from(v)) } else { MmioResult::Abort };
                }
                // Reserved, GICD_SGIR (no effect with affinity routing), NSACR, IGRPMODR,
                // message-based SPI registers: read as zero, writes ignored.
                if a.size == 8 && off % 8 == 0 { MmioResult::Done(0) } else { raz_wi(&a) }
            }
        }
    }

    /// An access to the redistributor region (every vCPU's frames, in vCPU order).
    pub fn gicr_access(&mut self, _caller: usize, a: MmioAccess) -> MmioResult {
        if !matches!(a.size, 1 | 2 | 4 | 8) {
            return MmioResult::Abort;
        }
        let vcpu = (a.offset / GICR_STRIDE) as usize;
        let off = a.offset % GICR_STRIDE;
        if vcpu >= self.vcpus.len() {
            // Beyond the last redistributor: nothing there (the guest stops at Last).
            return if word_or_dword(&a) { MmioResult::Done(0) } else { MmioResult::Abort };
        }
        let a = MmioAccess { offset: off, ..a };
        if off >= gicr::SGI {
            let sgi_off = off - gicr::SGI;
            let a = MmioAccess { offset: sgi_off, ..a };
            if let Some((reg, _)) = BitReg::at(sgi_off, 4) {
                return self.bits_access(vcpu, reg, 0, &a);
            }
            if (gicd::IPRIORITYR..gicd::IPRIORITYR + 0x20).contains(&sgi_off) {
                let first = (sgi_off - gicd::IPRIORITYR) as u32 & !(u32::from(a.size) - 1);
                return self.priority_access(vcpu, first, &a);
            }
            if (gicd::ICFGR..gicd::ICFGR + 8).contains(&sgi_off) {
                let first = ((sgi_off - gicd::ICFGR) / 4) as u32 * 16;
                return self.config_access(vcpu, first, &a);
            }
            return raz_wi(&a);
        }
        match off {
            gicr::CTLR => self.gicr_ctlr_access(vcpu, &a),
            gicr::IIDR => if word_only(&a) { MmioResult::Done(u64::from(IIDR)) } else { MmioResult::Abort },
            gicr::TYPER | 0x000c => {
                if !word_or_dword(&a) || (a.size == 8 && off != gicr::TYPER) {
                    return MmioResult::Abort;
                }
                if a.write {
                    return MmioResult::Done(0);
                }
                MmioResult::Done(read64(&a, gicr::TYPER, self.gicr_typer(vcpu)))
            }
            gicr::WAKER => {
                if !word_only(&a) {
                    return MmioResult::Abort;
                }
                if a.write {
                    self.all_private_candidates(vcpu);
                }
                let v = &mut self.vcpus[vcpu];
                if a.write {
                    v.asleep = a.value & (1 << 1) != 0;
                    v.dirty = true;
                }
                // ChildrenAsleep (bit 2) follows ProcessorSleep at once.
                MmioResult::Done(if v.asleep { 0b110 } else { 0 })
            }
            ID_PIDR2 => if word_only(&a) { MmioResult::Done(u64::from(PIDR2)) } else { MmioResult::Abort },
            _ => {
                if let Some(&(_, v)) = ID_CIDR.iter().find(|(o, _)| *o == off) {
                    return if word_only(&a) { MmioResult::Done(u64::from(v)) } else { MmioResult::Abort };
                }
                if let Some(r) = self.gicr_lpi_access(vcpu, &a) {
                    return r;
                }
                // PROPBASER/PENDBASER (without LPIs), STATUSR, reserved space: RAZ/WI.
                if a.size == 8 && off % 8 == 0 { MmioResult::Done(0) } else { raz_wi(&a) }
            }
        }
    }
}

/// A domain's vGIC, shared by its distributor and redistributor devices and the arch layer.
pub type SharedVgic = Arc<Mutex<Vgic>>;

/// The emulated distributor as an MMIO device.
pub struct GicdDevice(pub SharedVgic);

impl MmioDevice for GicdDevice {
    fn name(&self) -> &str {
        "vGICv3 distributor"
    }
    fn access(&mut self, vcpu: usize, access: MmioAccess) -> MmioResult {
        let r = self.0.lock().gicd_access(vcpu, access);
        if access.write {
            REGISTER_WRITES.fetch_add(1, Ordering::Release);
        }
        r
    }
}

/// The emulated redistributors (all vCPUs, one region) as an MMIO device.
pub struct GicrDevice(pub SharedVgic);

impl MmioDevice for GicrDevice {
    fn name(&self) -> &str {
        "vGICv3 redistributors"
    }
    fn access(&mut self, vcpu: usize, access: MmioAccess) -> MmioResult {
        let r = self.0.lock().gicr_access(vcpu, access);
        if access.write {
            REGISTER_WRITES.fetch_add(1, Ordering::Release);
        }
        r
    }
}
