//! The physical GICv2 in HYP mode and dom0's vGICv2: the hypervisor takes its own PPIs
//! (maintenance 25, HYP timer 26, virtual timer 27) and the kick SGI, passes every SPI through
//! to dom0, and carries the vGIC core's list registers to the GICH list registers. The GICv2
//! driver, the vGIC front end and the per-CPU exit/entry protocol are the same code as on
//! AArch64 (`gic_v2.rs`, `vgic_glue.rs`, shared by path); this file is ARMv7's hardware side.

use super::percpu::this_cpu;
use crate::dt::boot_info::GicInfo;
use crate::irq::vgic::{HwOp, ListRegisters, HYP_TIMER_PPI, MAINTENANCE_PPI, VTIMER_PPI};
use alloc::string::String;

/// Priority the hypervisor gives its PPIs.
pub(super) const HYP_PRIORITY: u8 = 0x80;
/// The SGI one CPU sends another to make it look at its vCPU's interrupts again.
pub(super) const KICK_SGI: u32 = 0;
/// The private interrupts the hypervisor takes on every CPU.
pub(super) const HYP_PPIS: [u32; 4] = [KICK_SGI, MAINTENANCE_PPI, HYP_TIMER_PPI, VTIMER_PPI];
/// Priority of passed-through SPIs at the physical GIC (below the hypervisor's own PPIs).
const GUEST_SPI_PRIORITY: u8 = 0xa0;

/// Bring up the host's GICv2 on the boot CPU. Returns its ITLinesNumber.
pub fn init(info: &GicInfo) -> Result<u32, String> {
    if info.version != 2 {
        return Err(alloc::format!("GICv{} at {}: ARMv7 hosts have a GICv2", info.version, info.path));
    }
    super::gic_v2::init(info, &HYP_PPIS, HYP_PRIORITY)
}

/// This CPU's banked GIC state, CPU interface and virtual interface (secondary CPUs).
pub fn init_this_cpu() -> Result<(), String> {
    super::gic_v2::init_this_cpu(&HYP_PPIS, HYP_PRIORITY)
}

/// Make physical CPU `cpu` re-examine its vCPU's interrupts: a physical SGI, unless it is
/// this CPU (which looks on its way back to the guest).
pub fn kick(cpu: usize) {
    if cpu == this_cpu() {
        return;
    }
    if let Some(g) = super::gic_v2::get() {
        super::regs::dsb_ish();
        g.send_sgi(KICK_SGI, super::gic_v2::cpu_mask(cpu));
    }
}

/// The GICH list registers behind the vGIC core's trait.
pub struct HwLrs {
    count: usize,
}

impl HwLrs {
    pub fn new() -> Self {
        Self { count: super::gic_v2::lr_count() as usize }
    }
}

impl Default for HwLrs {
    fn default() -> Self {
        Self::new()
    }
}

impl ListRegisters for HwLrs {
    fn count(&self) -> usize {
        self.count
    }
    fn read(&self, index: usize) -> u64 {
        super::gic_v2::read_lr(index)
    }
    fn write(&mut self, index: usize, v: u64) {
        super::gic_v2::write_lr(index, v)
    }
    fn set_underflow_irq(&mut self, on: bool) {
        if let Some(g) = super::gic_v2::get() {
            g.set_underflow_irq(on);
        }
    }
}

/// ISR (CP15 c12, c1, 0): bit 7, a physical IRQ is pending.
#[inline]
pub fn irq_pending() -> bool {
    let isr: u32;
    // SAFETY: reads a status register; no memory effects.
    unsafe { core::arch::asm!("mrc p15, 0, {}, c12, c1, 0", out(reg) isr, options(nomem, nostack, preserves_flags)) };
    isr & (1 << 7) != 0
}

/// Carry out on the physical distributor what the guest's writes to passed-through SPIs
/// asked for.
pub(super) fn apply_hw_ops(ops: &[HwOp]) {
    for &op in ops {
        super::gic_v2::apply_hw_op(op, GUEST_SPI_PRIORITY);
    }
}

/// Acknowledge every pending physical interrupt, drop its priority and hand it to `dispatch`,
/// which says whether to deactivate it now (false: the guest does, through a HW list
/// register). Returns the first INTID taken.
#[inline]
pub fn take_physical_irqs(mut dispatch: impl FnMut(u32) -> bool) -> Option<u32> {
    let g = super::gic_v2::get()?;
    let mut first = None;
    for _ in 0..64 {
        let iar = g.acknowledge();
        let intid = iar & 0x3ff;
        if intid >= crate::irq::gicv2::SPURIOUS {
            return first;
        }
        first = first.or(Some(intid));
        // Priority drop; deactivation below or by the guest.
        g.end_of_interrupt(iar);
        if dispatch(intid) {
            g.deactivate(iar);
        }
    }
    first
}
