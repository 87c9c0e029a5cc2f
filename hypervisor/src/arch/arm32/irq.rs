//! Physical interrupts taken while a guest runs, and dom0's vGIC: an acknowledged interrupt
//! goes to the vGIC protocol (`vgic_glue`, with `vtimer`'s handlers for the timers' PPIs),
//! and before guest entry the list registers are refilled. The hardware is `gic`'s.

use super::entry::TrapFrame;
use super::gic::{self, KICK_SGI};
use super::vgic_glue::{self, TimerPpis};
use crate::domain::Domain;
use crate::dt::boot_info::GicInfo;
use crate::irq::vgic::domains::VGICS;
use alloc::string::String;

pub use super::vgic_glue::guest_exit;

/// Give dom0 its vGICv2 (the GICV frame mapped at its GICC) and register it.
pub fn attach_vgic_v2(dom: &mut Domain, info: &GicInfo, it_lines: u32, vcpus: usize) -> Result<(), String> {
    let vgic = super::gic_v2::attach_vgic(dom, info, it_lines, vcpus, vgic_glue::notify_mask_here)?;
    VGICS.insert(dom.id, vgic)?;
    Ok(())
}

/// The vCPU is about to re-enter the guest: take the physical interrupts that arrived while
/// the hypervisor ran, then refill the list registers if its interrupt state changed.
#[inline]
pub fn guest_entry() {
    if gic::irq_pending() {
        let _ = take_physical_irqs();
    }
    vgic_glue::flush_if_changed();
}

/// The timers' PPIs go to `vtimer`.
const TIMERS: TimerPpis = TimerPpis { virtual_timer: super::vtimer::on_virtual_timer, hyp_timer: super::vtimer::on_hyp_timer };

/// Acknowledge and handle every pending physical interrupt (the vGIC protocol's, the timers'
/// PPIs `vtimer`'s). Returns the first INTID taken.
pub fn take_physical_irqs() -> Option<u32> {
    gic::take_physical_irqs(|intid| {
        super::board::on_irq(intid);
        vgic_glue::take_physical(intid, KICK_SGI, &TIMERS)
    })
}

/// An IRQ taken to HYP mode while a guest ran.
pub fn irq_from_guest(_frame: &mut TrapFrame) {
    guest_exit();
    let _ = take_physical_irqs();
    guest_entry();
}
