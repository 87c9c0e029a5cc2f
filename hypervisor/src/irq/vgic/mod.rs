//! A virtual GICv3 for one domain: per-interrupt state (enabled, pending, active, priority,
//! trigger, group, route), the emulated distributor and redistributor register files
//! (`regs`), and the injection logic that moves pending interrupts into the CPU's list
//! registers and reads their state back. Hardware is reached only through [`ListRegisters`],
//! so everything here runs in host tests.
//!
//! The model: a guest-visible interrupt is either held here (pending latch, line level,
//! active) or, once chosen for delivery, owned by one list register. `sync` (after the vCPU
//! exits) reads the list registers back — an LR the guest has deactivated is free again —
//! and `flush` (before it re-enters) fills free LRs by priority. When more interrupts are
//! pending than there are LRs, the underflow maintenance interrupt brings the vCPU back to
//! the hypervisor as soon as the LRs drain, and `flush` continues.

pub mod domains;
pub mod lpi;
pub mod lr;
pub mod v2;
pub mod regs;
// Property tests (proptest), not built for the loom model checks.
#[cfg(all(test, not(loom)))]
mod tests;

use alloc::vec::Vec;

/// INTIDs below this are banked per vCPU (SGIs 0-15, PPIs 16-31).
pub const PRIVATE_IRQS: u32 = 32;
/// SGIs are INTIDs 0-15.
pub const SGI_COUNT: u32 = 16;
/// INTIDs 1020-1023 are special; SPIs stop below them.
pub const MAX_INTID: u32 = 1020;
/// The GIC maintenance interrupt (PPI, as on QEMU virt and Arm's recommendation).
pub const MAINTENANCE_PPI: u32 = 25;
/// The hypervisor's physical timer (CNTHP) PPI.
pub const HYP_TIMER_PPI: u32 = 26;
/// The EL1 virtual timer PPI.
pub const VTIMER_PPI: u32 = 27;
/// The EL1 physical timer PPI.
pub const PTIMER_PPI: u32 = 30;
/// Most list registers the architecture allows (ICH_VTR_EL2.ListRegs is 4 bits).
pub const MAX_LRS: usize = 16;
/// Priority bits kept: the virtual CPU interface on QEMU (ICH_VTR_EL2.PRIbits) and most
/// cores implement 5; lower bits read as zero, as on hardware with 32 priority levels.
pub const PRIORITY_MASK: u8 = 0xf8;

/// GICD_TYPER.ITLinesNumber for a domain's vGIC: the fewest 32-INTID blocks that hold
/// `highest_intid` (the highest INTID the domain's devices use), at most the host's
/// `host_it_lines`. Every implemented SPI costs the guest's GIC driver trapped register
/// writes at boot (one IROUTER each, a priority word per four, ...): none for lines no
/// device has.
pub fn it_lines_for(highest_intid: u32, host_it_lines: u32) -> u32 {
    (highest_intid / 32).min(host_it_lines)
}

/// Why an injection request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VgicError {
    /// No such vCPU in this domain.
    BadVcpu(usize),
    /// The INTID is not implemented (beyond ITLinesNumber, or special).
    BadIntid(u32),
}

impl core::fmt::Display for VgicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadVcpu(v) => write!(f, "no vCPU {v}"),
            Self::BadIntid(i) => write!(f, "INTID {i} is not implemented"),
        }
    }
}

/// What the vGIC needs from the CPU's virtual interface (ICH_LR<n>_EL2 and ICH_HCR_EL2).
pub trait ListRegisters {
    /// Number of implemented list registers (ICH_VTR_EL2.ListRegs + 1).
    fn count(&self) -> usize;
    fn read(&self, index: usize) -> u64;
    fn write(&mut self, index: usize, value: u64);
    /// Ask for the underflow maintenance interrupt (ICH_HCR_EL2.UIE): raised when at most
    /// one LR still holds an interrupt, so the hypervisor can refill them.
    fn set_underflow_irq(&mut self, on: bool);
}

/// One interrupt's state as the guest's GIC holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqState {
    pub enabled: bool,
    /// Latched pending state: an edge, a write to ISPENDR, or an SGI.
    pub pending: bool,
    /// Input line level (level-sensitive sources): pending while high.
    pub level: bool,
    pub active: bool,
    pub priority: u8,
    /// Edge-triggered (ICFGR bit set) rather than level-sensitive.
    pub edge: bool,
    pub group1: bool,
    /// The list register holding this interrupt, if any.
    pub lr: Option<u8>,
    /// GICD_IROUTER (SPIs only): affinity, or bit 31 (IRM) for "any vCPU".
    pub route: u64,
    /// Backed by the physical SPI with the same INTID (a device passed through to the domain).
    pub hw: bool,
    /// The physical interrupt was taken and is active at the physical GIC until the guest
    /// deactivates it (the LR carries the HW bit, so its EOI reaches the physical GIC).
    pub hw_active: bool,
}

impl IrqState {
    const RESET: IrqState = IrqState {
        enabled: false,
        pending: false,
        level: false,
        active: false,
        priority: 0,
        edge: false,
        group1: false,
        lr: None,
        route: 0,
        hw: false,
        hw_active: false,
    };

    /// Pending, counting a high line of a level-sensitive interrupt.
    pub fn is_pending(&self) -> bool {
        self.pending || (!self.edge && self.level)
    }
}

/// What the physical GIC must do for a passed-through SPI after the guest changed its virtual
/// state (applied by the arch layer before the vCPU re-enters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HwOp {
    /// Enable or disable the physical SPI (routed to the CPU running the vCPU).
    Enable(u32, bool),
    /// Set its trigger: edge (true) or level.
    Configure(u32, bool),
    /// Deactivate it: the guest dropped the interrupt without deactivating it through an LR.
    Deactivate(u32),
}

/// The banked interrupts and list-register bookkeeping of one vCPU.
#[derive(Clone, Debug)]
struct VcpuIrqs {
    /// MPIDR affinity fields only (Aff3 in bits 39:32, Aff2-Aff0 in 23:0).
    affinity: u64,
    private: [IrqState; PRIVATE_IRQS as usize],
    /// INTID held by each list register.
    lr_owner: [Option<u32>; MAX_LRS],
    /// The value of each owned LR as last read or to be written.
    lr_value: [u64; MAX_LRS],
    /// LRs changed here (by register writes) that `flush` must write back.
    lr_stale: u16,
    /// The LRs that hold an interrupt (bit n: `lr_owner[n]` is `Some`), so exit and entry
    /// visit only those.
    lr_used: u16,
    /// GICR_WAKER.ProcessorSleep.
    asleep: bool,
    /// Something may be deliverable that `flush` has not looked at yet.
    dirty: bool,
    /// Private interrupts that may be deliverable (bit n: INTID n): set by every change that
    /// can make one deliverable, cleared by the scan once it is not. `flush` looks only at
    /// these instead of all 32.
    candidates: u32,
}

impl VcpuIrqs {
    fn new(affinity: u64) -> Self {
        let mut private = [IrqState::RESET; PRIVATE_IRQS as usize];
        for (i, irq) in private.iter_mut().enumerate() {
            // SGIs are always edge-triggered; PPIs reset to level-sensitive.
            irq.edge = (i as u32) < SGI_COUNT;
        }
        Self { affinity, private, lr_owner: [None; MAX_LRS], lr_value: [0; MAX_LRS], lr_stale: 0, lr_used: 0, asleep: true, dirty: false, candidates: 0 }
    }
}

/// A mask of the `n` lowest bits (`n` at most 32).
fn low_bits(n: usize) -> u32 {
    if n >= 32 {
        u32::MAX
    } else {
        (1u32 << n) - 1
    }
}

/// The affinity fields of an MPIDR value.
pub fn mpidr_affinity(mpidr: u64) -> u64 {
    mpidr & 0xff_00ff_ffff
}

/// The virtual GICv3 of one domain.
#[derive(Clone, Debug)]
pub struct Vgic {
    vcpus: Vec<VcpuIrqs>,
    spis: Vec<IrqState>,
    /// GICD_TYPER.ITLinesNumber: INTIDs up to 32 * (it_lines + 1) - 1 exist.
    it_lines: u32,
    /// GICD_CTLR bits the guest set (EnableGrp0/EnableGrp1A).
    ctlr: u32,
    /// Physical-GIC work for passed-through SPIs, drained by `take_hw_ops`.
    hw_ops: Vec<HwOp>,
    /// SPIs that may be deliverable (bit n of word w: INTID 32 + 64 w + n), kept as the
    /// private `candidates` are: the scan in `flush` visits only these, not every SPI.
    spi_candidates: Vec<u64>,
    /// The words of `spi_candidates` that may be non-zero (bit w: word w), so a scan with no
    /// SPI candidate costs one load.
    spi_candidate_words: u32,
    /// LPIs (INTIDs from 8192), when an emulated ITS gives the domain some.
    lpis: lpi::Lpis,
}

impl Vgic {
    /// A vGIC with the host's ITLinesNumber (`it_lines`, at most 31) and one redistributor per
    /// vCPU, whose MPIDRs are `vcpu_mpidrs` (vCPU id = index).
    pub fn new(it_lines: u32, vcpu_mpidrs: &[u64]) -> Self {
        let it_lines = it_lines.min(31);
        let nr = (32 * (it_lines + 1)).min(MAX_INTID);
        let spis = alloc::vec![IrqState::RESET; (nr - PRIVATE_IRQS) as usize];
        let vcpus = vcpu_mpidrs.iter().map(|&m| VcpuIrqs::new(mpidr_affinity(m))).collect();
        let words = (nr - PRIVATE_IRQS).div_ceil(64) as usize;
        let lpis = lpi::Lpis::new(vcpu_mpidrs.len());
        Self { vcpus, spis, it_lines, ctlr: 0, hw_ops: Vec::new(), spi_candidates: alloc::vec![0; words], spi_candidate_words: 0, lpis }
    }

    pub fn vcpu_count(&self) -> usize {
        self.vcpus.len()
    }

    /// One past the highest implemented INTID.
    pub fn nr_irqs(&self) -> u32 {
        PRIVATE_IRQS + self.spis.len() as u32
    }

    /// The state of `intid` as `vcpu` sees it (private interrupts are per vCPU).
    pub fn irq(&self, vcpu: usize, intid: u32) -> Option<&IrqState> {
        if intid >= lpi::LPI_BASE {
            return self.lpis.map.get(&intid).map(|l| &l.irq);
        }
        if intid < PRIVATE_IRQS {
            self.vcpus.get(vcpu)?.private.get(intid as usize)
        } else {
            self.spis.get((intid - PRIVATE_IRQS) as usize)
        }
    }

    fn irq_mut(&mut self, vcpu: usize, intid: u32) -> Option<&mut IrqState> {
        if intid >= lpi::LPI_BASE {
            return self.lpis.map.get_mut(&intid).map(|l| &mut l.irq);
        }
        if intid < PRIVATE_IRQS {
            self.vcpus.get_mut(vcpu)?.private.get_mut(intid as usize)
        } else {
            self.spis.get_mut((intid - PRIVATE_IRQS) as usize)
        }
    }

    /// The vCPU an SPI is delivered to: the one its IROUTER names, or vCPU 0 when routed to
    /// "any" (IRM). `None` when the route names no vCPU of this domain.
    pub fn spi_target(&self, intid: u32) -> Option<usize> {
        let irq = self.irq(0, intid)?;
        if irq.route & (1 << 31) != 0 {
            return if self.vcpus.is_empty() { None } else { Some(0) };
        }
        let aff = mpidr_affinity(irq.route);
        self.vcpus.iter().position(|v| v.affinity == aff)
    }

    /// Mark the vCPU(s) that may now have something to deliver for `intid`.
    fn touch(&mut self, vcpu: usize, intid: u32) {
        self.candidate(vcpu, intid);
        if intid < PRIVATE_IRQS {
            if let Some(v) = self.vcpus.get_mut(vcpu) {
                v.dirty = true;
            }
        } else if let Some(t) = self.spi_target(intid) {
            self.vcpus[t].dirty = true;
        }
    }

    /// `intid` (banked on `vcpu` if private) may have become deliverable: the next scan looks
    /// at it. Every change that can make an interrupt deliverable (pending, line high,
    /// enabled, group, its list register freed, the redistributor woken) calls this.
    pub(crate) fn candidate(&mut self, vcpu: usize, intid: u32) {
        if intid < PRIVATE_IRQS {
            if let Some(v) = self.vcpus.get_mut(vcpu) {
                v.candidates |= 1 << intid;
            }
        } else if intid < lpi::LPI_BASE {
            // (LPIs have no candidate set: every flush looks at the mapped ones.)
            let i = (intid - PRIVATE_IRQS) as usize;
            if let Some(w) = self.spi_candidates.get_mut(i / 64) {
                *w |= 1 << (i % 64);
                self.spi_candidate_words |= 1 << (i / 64);
            }
        }
    }

    /// Every interrupt of every vCPU may have become deliverable (a distributor group enabled).
    pub(crate) fn all_candidates(&mut self) {
        for v in &mut self.vcpus {
            v.candidates = u32::MAX;
        }
        for w in &mut self.spi_candidates {
            *w = u64::MAX;
        }
        self.spi_candidate_words = low_bits(self.spi_candidates.len());
    }

    /// Every private interrupt of `vcpu` may have become deliverable (its redistributor woke).
    pub(crate) fn all_private_candidates(&mut self, vcpu: usize) {
        if let Some(v) = self.vcpus.get_mut(vcpu) {
            v.candidates = u32::MAX;
        }
    }

    fn mark_all_dirty(&mut self) {
        for v in &mut self.vcpus {
            v.dirty = true;
        }
    }

    fn check(&self, vcpu: usize, intid: u32) -> Result<(), VgicError> {
        if vcpu >= self.vcpus.len() {
            return Err(VgicError::BadVcpu(vcpu));
        }
        if intid >= self.nr_irqs() {
            return Err(VgicError::BadIntid(intid));
        }
        Ok(())
    }

    /// An edge (or a message: SGI, timer expiry) for `intid`; `vcpu` selects the bank for
    /// private interrupts and is ignored for SPIs.
    pub fn inject_edge(&mut self, vcpu: usize, intid: u32) -> Result<(), VgicError> {
        self.check(vcpu, intid)?;
        if let Some(irq) = self.irq_mut(vcpu, intid) {
            irq.pending = true;
        }
        self.touch(vcpu, intid);
        Ok(())
    }

    /// Make SPI `intid` the virtual face of the physical SPI with the same INTID (or stop).
    pub fn set_hw(&mut self, intid: u32, hw: bool) -> Result<(), VgicError> {
        if intid < PRIVATE_IRQS {
            return Err(VgicError::BadIntid(intid));
        }
        self.check(0, intid)?;
        if let Some(irq) = self.irq_mut(0, intid) {
            irq.hw = hw;
        }
        Ok(())
    }

    /// The physical SPI `intid` fired and was acknowledged (priority dropped, still active):
    /// deliver it with the HW bit so the guest's deactivation reaches the physical GIC.
    /// Refused for SPIs that are not passed through (the caller deactivates them itself).
    pub fn inject_hw(&mut self, intid: u32) -> Result<(), VgicError> {
        self.check(0, intid)?;
        match self.irq_mut(0, intid) {
            Some(irq) if irq.hw && intid >= PRIVATE_IRQS => {
                irq.pending = true;
                irq.hw_active = true;
            }
            _ => return Err(VgicError::BadIntid(intid)),
        }
        self.touch(0, intid);
        Ok(())
    }

    /// Physical-GIC work the guest's register writes asked for since the last call.
    pub fn take_hw_ops(&mut self) -> Vec<HwOp> {
        if self.hw_ops.is_empty() {
            return Vec::new();
        }
        core::mem::take(&mut self.hw_ops)
    }

    pub(crate) fn push_hw_op(&mut self, op: HwOp) {
        // Bounded: a guest hammering enable bits cannot grow this without limit.
        if self.hw_ops.len() < 4096 {
            self.hw_ops.push(op);
        }
    }

    /// Drive the input line of a level-sensitive `intid` high or low.
    pub fn set_level(&mut self, vcpu: usize, intid: u32, high: bool) -> Result<(), VgicError> {
        self.check(vcpu, intid)?;
        let mut changed = false;
        if let Some(irq) = self.irq_mut(vcpu, intid) {
            changed = irq.level != high;
            irq.level = high;
            if irq.edge && high && changed {
                // A rising edge on an interrupt configured edge-triggered latches it.
                irq.pending = true;
            }
        }
        if changed {
            self.touch(vcpu, intid);
        }
        Ok(())
    }

    /// Whether the group of `irq` is enabled at the distributor.
    fn group_enabled(&self, irq: &IrqState) -> bool {
        let bit = if irq.group1 { regs::CTLR_ENABLE_GRP1A } else { regs::CTLR_ENABLE_GRP0 };
        self.ctlr & bit != 0
    }

    /// Could `irq` be put into a list register now?
    fn deliverable(&self, irq: &IrqState) -> bool {
        irq.enabled && irq.is_pending() && irq.lr.is_none() && self.group_enabled(irq)
    }

    /// Visit the interrupts `vcpu` could take now (not yet in an LR): `(priority, intid)`.
    /// Only candidates are looked at (see `candidate`); with `prune`, those found not
    /// deliverable stop being candidates until a change makes them one again.
    fn for_each_candidate(&mut self, vcpu: usize, prune: bool, mut f: impl FnMut(u8, u32)) {
        let Some(v) = self.vcpus.get(vcpu) else { return };
        if !v.asleep {
            let mut bits = v.candidates;
            let mut keep = bits;
            while bits != 0 {
                let i = bits.trailing_zeros();
                bits &= bits - 1;
                let irq = &v.private[i as usize];
                if self.deliverable(irq) {
                    f(irq.priority, i);
                } else {
                    keep &= !(1 << i);
                }
            }
            if prune {
                self.vcpus[vcpu].candidates = keep;
            }
        }
        let mut words = self.spi_candidate_words;
        while words != 0 {
            let w = words.trailing_zeros() as usize;
            words &= words - 1;
            let Some(&word) = self.spi_candidates.get(w) else { continue };
            let mut bits = word;
            let mut keep = bits;
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let i = 64 * w + b;
                let Some(irq) = self.spis.get(i) else {
                    keep &= !(1 << b);
                    continue;
                };
                if !self.deliverable(irq) {
                    keep &= !(1 << b);
                    continue;
                }
                let intid = PRIVATE_IRQS + i as u32;
                if self.spi_target(intid) == Some(vcpu) {
                    f(irq.priority, intid);
                }
            }
            if prune {
                self.spi_candidates[w] = keep;
                if keep == 0 {
                    self.spi_candidate_words &= !(1 << w);
                }
            }
        }
        if !self.lpis.map.is_empty() {
            self.for_each_lpi_candidate(vcpu, &mut f);
        }
    }

    /// The candidate sets' invariant: every interrupt that is deliverable now is a candidate
    /// (an interrupt the scan never looks at would never be delivered).
    #[cfg(test)]
    pub fn candidates_cover_deliverable(&self) -> bool {
        let private = self.vcpus.iter().all(|v| {
            v.private.iter().enumerate().all(|(i, irq)| !self.deliverable(irq) || v.candidates & (1 << i) != 0)
        });
        let words = self.spi_candidates.iter().enumerate().all(|(w, &x)| x == 0 || self.spi_candidate_words & (1 << w) != 0);
        private
            && words
            && self.spis.iter().enumerate().all(|(i, irq)| !self.deliverable(irq) || self.spi_candidates[i / 64] & (1 << (i % 64)) != 0)
    }

    /// The list-register bookkeeping's invariant: `lr_used` names exactly the owned LRs.
    #[cfg(test)]
    pub fn lr_used_matches_owners(&self) -> bool {
        self.vcpus.iter().all(|v| (0..MAX_LRS).all(|i| (v.lr_used & (1 << i) != 0) == v.lr_owner[i].is_some()))
    }

    /// Read back the list registers after `vcpu` ran: free the ones the guest deactivated,
    /// record the active/pending state of the rest.
    pub fn sync<L: ListRegisters + ?Sized>(&mut self, vcpu: usize, lrs: &mut L) {
        let Some(v) = self.vcpus.get(vcpu) else { return };
        let mut used = v.lr_used & low_bits(lrs.count().min(MAX_LRS)) as u16;
        while used != 0 {
            let i = used.trailing_zeros() as usize;
            used &= used - 1;
            let Some(intid) = self.vcpus[vcpu].lr_owner[i] else { continue };
            let value = lrs.read(i);
            let freed = lr::is_free(value) || lr::intid(value) != intid;
            let v = &mut self.vcpus[vcpu];
            if freed {
                if lr::intid(value) == intid && value & (lr::HW | lr::EOI_MAINT) == lr::EOI_MAINT {
                    // Clear it, or its EOI maintenance interrupt stays asserted.
                    lrs.write(i, 0);
                }
                v.lr_owner[i] = None;
                v.lr_used &= !(1 << i);
                v.lr_value[i] = 0;
                v.lr_stale &= !(1 << i);
                v.dirty = true;
                self.candidate(vcpu, intid);
            } else {
                v.lr_value[i] = value;
            }
            if let Some(irq) = self.irq_mut(vcpu, intid) {
                if freed {
                    irq.lr = None;
                    irq.active = false;
                    // A HW LR the guest deactivated deactivated the physical SPI too.
                    irq.hw_active = false;
                } else {
                    irq.active = lr::is_active(value);
                }
            }
        }
    }

    /// Fill `vcpu`'s free list registers with its highest-priority pending interrupts, write
    /// back LRs changed by register writes, and ask for the underflow maintenance interrupt
    /// while interrupts are left waiting for a free LR.
    pub fn flush<L: ListRegisters + ?Sized>(&mut self, vcpu: usize, lrs: &mut L) {
        let Some(v) = self.vcpus.get(vcpu) else { return };
        if !v.dirty && v.lr_stale == 0 {
            return;
        }
        let n = lrs.count().min(MAX_LRS);
        let implemented = low_bits(n) as u16;
        // The usual case after a register write: no LR held or changed, nothing that could be
        // delivered. Nothing to write but the underflow request (off).
        let idle = v.lr_stale == 0
            && v.lr_used & implemented == 0
            && (v.asleep || v.candidates == 0)
            && self.spi_candidate_words == 0
            // LPIs have no candidate set: they are looked at on every flush.
            && self.lpis.map.is_empty();
        if idle {
            lrs.set_underflow_irq(false);
            self.vcpus[vcpu].dirty = false;
            return;
        }

        // Interrupts already in an LR that became pending again (an edge while active).
        let mut used = self.vcpus[vcpu].lr_used & implemented;
        while used != 0 {
            let i = used.trailing_zeros() as usize;
            used &= used - 1;
            let Some(intid) = self.vcpus[vcpu].lr_owner[i] else { continue };
            let Some(irq) = self.irq(vcpu, intid).copied() else { continue };
            // A physically active SPI cannot pend again until the guest deactivates it.
            if irq.pending && irq.enabled && !irq.hw_active {
                let v = &mut self.vcpus[vcpu];
                if !lr::is_pending(v.lr_value[i]) {
                    v.lr_value[i] |= lr::PENDING;
                    v.lr_stale |= 1 << i;
                }
                if let Some(irq) = self.irq_mut(vcpu, intid) {
                    irq.pending = false;
                }
            }
        }
        // Write back what register writes changed; an LR left with no state is free.
        let mut stale = self.vcpus[vcpu].lr_stale & implemented;
        while stale != 0 {
            let i = stale.trailing_zeros() as usize;
            stale &= stale - 1;
            let value = self.vcpus[vcpu].lr_value[i];
            if lr::is_free(value) {
                let owner = self.vcpus[vcpu].lr_owner[i].take();
                self.vcpus[vcpu].lr_used &= !(1 << i);
                self.vcpus[vcpu].lr_value[i] = 0;
                let mut deactivate = None;
                if let Some(irq) = owner.and_then(|o| self.irq_mut(vcpu, o)) {
                    irq.lr = None;
                    irq.active = false;
                    if irq.hw_active {
                        irq.hw_active = false;
                        deactivate = owner;
                    }
                }
                if let Some(intid) = deactivate {
                    self.push_hw_op(HwOp::Deactivate(intid));
                }
                if let Some(o) = owner {
                    self.candidate(vcpu, o);
                }
                lrs.write(i, 0);
            } else {
                lrs.write(i, value);
            }
        }
        self.vcpus[vcpu].lr_stale = 0;

        let free = implemented & !self.vcpus[vcpu].lr_used;
        // Most CPUs have at most 4 LRs: a short array to sort into is cheaper to set up.
        let (total, chosen) = if free.count_ones() <= 4 { self.fill::<4, L>(vcpu, lrs, free) } else { self.fill::<MAX_LRS, L>(vcpu, lrs, free) };
        let left = total > chosen;
        lrs.set_underflow_irq(left);
        // With nothing left over, nothing changes until new input arrives or an LR frees up.
        self.vcpus[vcpu].dirty = left;
    }

    /// Put the best candidates of `vcpu` (at most `K`) into its `free` LRs (bit n: LR n).
    /// Returns how many candidates were deliverable and how many went into an LR.
    fn fill<const K: usize, L: ListRegisters + ?Sized>(&mut self, vcpu: usize, lrs: &mut L, free: u16) -> (usize, usize) {
        // The best candidates for the free LRs, in priority order (lowest value first, then
        // lowest INTID): keys `priority << 32 | INTID`.
        let want = (free.count_ones() as usize).min(K);
        let mut best = [0u64; K];
        let mut chosen = 0usize;
        let mut total = 0usize;
        self.for_each_candidate(vcpu, true, |prio, intid| {
            total += 1;
            if want == 0 {
                return;
            }
            let key = u64::from(prio) << 32 | u64::from(intid);
            if chosen < want {
                best[chosen] = key;
                chosen += 1;
            } else if key < best[chosen - 1] {
                best[chosen - 1] = key;
            } else {
                return;
            }
            // Keep `best[..chosen]` sorted (insertion step).
            let mut j = chosen - 1;
            while j > 0 && best[j] < best[j - 1] {
                best.swap(j, j - 1);
                j -= 1;
            }
        });
        let mut slots = free;
        for &key in &best[..chosen] {
            let intid = key as u32;
            let slot = slots.trailing_zeros() as usize;
            slots &= slots - 1;
            let Some(irq) = self.irq_mut(vcpu, intid) else { continue };
            let mut value = lr::encode(intid, irq.priority, irq.group1, true, irq.active);
            if irq.hw_active {
                value = lr::with_hw(value, intid);
            } else if !irq.edge && irq.level {
                // A level interrupt whose line is still high: come back when the guest
                // deactivates it, so it pends again at once rather than at the next exit.
                value |= lr::EOI_MAINT;
            }
            irq.lr = Some(slot as u8);
            // The pending state now lives in the LR; a level interrupt whose line stays high
            // pends again once the guest deactivates it.
            irq.pending = false;
            let v = &mut self.vcpus[vcpu];
            v.lr_owner[slot] = Some(intid);
            v.lr_used |= 1 << slot;
            v.lr_value[slot] = value;
            lrs.write(slot, value);
        }
        (total, chosen)
    }

    /// Whether any of `vcpu`'s list registers holds an interrupt (then `sync` has work).
    pub fn lrs_in_use(&self, vcpu: usize) -> bool {
        self.vcpus.get(vcpu).is_some_and(|v| v.lr_used != 0)
    }

    /// Whether `vcpu` has an interrupt it could take: one pending in an LR, or one waiting for
    /// an LR (what a trapped WFI would wait for; vCPUs pinned one per CPU wait natively).
    pub fn has_deliverable(&mut self, vcpu: usize) -> bool {
        let Some(v) = self.vcpus.get(vcpu) else { return false };
        if v.lr_owner.iter().zip(v.lr_value.iter()).any(|(o, val)| o.is_some() && lr::is_pending(*val)) {
            return true;
        }
        let mut any = false;
        self.for_each_candidate(vcpu, false, |_, _| any = true);
        any
    }

    /// The vCPUs `sgi` sent by `sender` targets, as a bit mask (bit n: vCPU n, the first 64):
    /// those `SgiRequest::targets` accepts, found with one subtraction per vCPU.
    pub fn sgi_targets(&self, sender: usize, sgi: &SgiRequest) -> u64 {
        let n = self.vcpus.len().min(64);
        if sgi.all_but_self {
            let all = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
            return if sender < 64 { all & !(1 << sender) } else { all };
        }
        // A vCPU is a target when its affinity is the cluster's with Aff0 in the range the
        // target list covers (16 * RS ..) and its bit set: its distance from the range's first
        // affinity is under 16 exactly then (Aff0 is the low byte; the range starts at most at
        // 240, so another cluster is at least 16 away or below it).
        let base = sgi.cluster | (u64::from(sgi.rs) * 16);
        let list = u64::from(sgi.target_list);
        let mut targets = 0u64;
        for (i, v) in self.vcpus[..n].iter().enumerate() {
            let d = v.affinity.wrapping_sub(base);
            if d < 16 && list & (1 << d) != 0 {
                targets |= 1 << i;
            }
        }
        targets
    }

    /// A write of `value` to ICC_SGI1R_EL1 by `sender`: latch the SGI on every target vCPU.
    /// Returns the targeted vCPUs as a bit mask (vCPUs beyond 63 are not addressable).
    pub fn send_sgi(&mut self, sender: usize, value: u64) -> u64 {
        let sgi = SgiRequest::decode(value);
        let targets = self.sgi_targets(sender, &sgi);
        let mut left = targets;
        while left != 0 {
            let i = left.trailing_zeros() as usize;
            left &= left - 1;
            let _ = self.inject_edge(i, sgi.intid);
        }
        targets
    }
}

/// A decoded ICC_SGI1R_EL1 value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgiRequest {
    pub intid: u32,
    /// Interrupt Routing Mode: all vCPUs except the sender.
    pub all_but_self: bool,
    /// Aff3.Aff2.Aff1 of the targets, in MPIDR positions.
    pub cluster: u64,
    /// Range selector: the target list names Aff0 values 16 * rs .. 16 * rs + 15.
    pub rs: u8,
    pub target_list: u16,
}

impl SgiRequest {
    pub fn decode(value: u64) -> Self {
        let aff1 = (value >> 16) & 0xff;
        let aff2 = (value >> 32) & 0xff;
        let aff3 = (value >> 48) & 0xff;
        Self {
            intid: ((value >> 24) & 0xf) as u32,
            all_but_self: value & (1 << 40) != 0,
            cluster: (aff3 << 32) | (aff2 << 16) | (aff1 << 8),
            rs: ((value >> 44) & 0xf) as u8,
            target_list: (value & 0xffff) as u16,
        }
    }

    /// Whether a vCPU with affinity `affinity` (and `is_sender`) is a target.
    pub fn targets(&self, is_sender: bool, affinity: u64) -> bool {
        if self.all_but_self {
            return !is_sender;
        }
        if affinity & !0xff != self.cluster {
            return false;
        }
        let aff0 = (affinity & 0xff) as u32;
        let base = u32::from(self.rs) * 16;
        aff0 >= base && aff0 < base + 16 && self.target_list & (1 << (aff0 - base)) != 0
    }
}
