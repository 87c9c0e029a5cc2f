//! Physical interrupts taken while a guest runs, and what dom0's and the domUs' vGICs are
//! attached with: an acknowledged interrupt goes where it belongs (a host LPI to the vGIC that
//! owns it; the rest to `vgic_glue`, with `vtimer`'s handlers for the timers' PPIs), and
//! before guest entry the list registers are refilled. The hardware is `gic`'s (`gic_v2`'s on a
//! GICv2 host).

use super::entry::TrapFrame;
use super::gic::{self, KICK_SGI};
use super::percpu;
use super::vgic_glue::{self, current_vgic, dom0_vgic, notify, notify_mask, TimerPpis};
use crate::domain::Domain;
use crate::dt::boot_info::GicInfo;
use crate::irq::its::lpi::LPI_BASE;
use crate::irq::vgic::domains::{VgicConfig, VGICS};
use crate::trap_stats::TrapKind;
use crate::{log, sysreg};
use alloc::string::String;

pub use super::vgic_glue::guest_exit;

/// Give dom0 a vGICv2 on a GICv2 host (`vcpus` vCPUs; the GICV frame mapped at its GICC) and
/// make it that domain's vGIC.
pub fn attach_vgic_v2(dom: &mut Domain, info: &GicInfo, it_lines: u32, vcpus: usize) -> Result<(), String> {
    let vgic = super::gic_v2::attach_vgic(dom, info, it_lines, vcpus, vgic_glue::notify_mask_here)?;
    VGICS.insert(dom.id, vgic)?;
    Ok(())
}

/// Give `dom` a vGICv3 (`cfg`: where, how many vCPUs, whether its SPIs pass through) and
/// log it.
pub fn attach_vgic(dom: &mut Domain, cfg: &VgicConfig) -> Result<(), String> {
    let vgic = crate::irq::vgic::domains::attach(&VGICS, dom, cfg)?;
    let intids = vgic.lock().nr_irqs();
    log!(
        "d{}: vGICv3 distributor {:#x} ({} INTIDs{}), redistributors {:#x} for {} vCPU(s) (trapped and emulated)",
        dom.id,
        cfg.gicd,
        intids,
        if cfg.passthrough_spis { ", SPIs passed through" } else { "" },
        cfg.gicr,
        cfg.vcpus
    );
    Ok(())
}

/// The vCPU is about to re-enter the guest: first take the physical interrupts that became
/// pending while the hypervisor ran (each would otherwise exit again right after the return),
/// then fill the list registers if its interrupt state changed. Inline: the usual case
/// (nothing pending, nothing changed since the last flush) is a register read and three loads.
#[inline]
pub fn guest_entry() {
    // ISR_EL1.I: a physical IRQ is pending (at EL2 it reports the physical state). When vCPUs
    // share CPUs it is left to the IRQ exit it causes, which is a scheduling point.
    if sysreg!(read ISR_EL1) & (1 << 7) != 0 && !percpu::shares_cpus() {
        let _ = take_physical_irqs();
    }
    vgic_glue::flush_if_changed();
}

/// Acknowledge and handle every pending physical interrupt. Returns the first INTID taken,
/// if any.
pub fn take_physical_irqs() -> Option<u32> {
    gic::take_physical_irqs(dispatch)
}

/// The timers' PPIs go to `vtimer`.
const TIMERS: TimerPpis = TimerPpis { virtual_timer: super::vtimer::on_virtual_timer, hyp_timer: super::vtimer::on_hyp_timer };

/// Where physical interrupt `intid` (acknowledged, its priority dropped) goes: a host LPI (an
/// MSI through the ITS) pends its virtual LPI (no active state to deactivate), the rest goes
/// to the vGIC protocol. Returns whether it is deactivated now.
fn dispatch(intid: u32) -> bool {
    // Under `sched=null` a kick is noted wherever it is taken (with other interrupts in the
    // same exit, or on the way back into the guest from a hypercall or a trap), so that the
    // next IRQ exit acts on it.
    if intid == KICK_SGI && !percpu::shares_cpus() {
        percpu::note_kick();
    }
    if intid >= LPI_BASE {
        take_lpi(intid);
        return false;
    }
    vgic_glue::take_physical(intid, KICK_SGI, &TIMERS)
}

/// Host LPI `intid` fired: pend the virtual LPI it stands for.
fn take_lpi(intid: u32) {
    let target = super::its::lpi_target(intid);
    let vcpu = target.and_then(|t| dom0_vgic().and_then(|v| v.lock().lpi_set_pending(t.vlpi, true)));
    match vcpu {
        Some(v) => notify(0, v),
        None => {
            if vgic_glue::log_stray() {
                log!("host LPI {intid} is not mapped to a guest: ignored");
            }
        }
    }
}

/// An IRQ taken while a guest ran. When vCPUs share CPUs it is a scheduling point (the tick,
/// a kick or a timer deadline): `reschedule` (the scheduler's, which sits above this file) may
/// put another vCPU's frame in `frame`; on a CPU of its own a kick taken since the last IRQ
/// exit may be its domain's destroy or pause, which `kicked` (also the scheduler's) carries
/// out. Returns its kind for the trap counters (by the first INTID taken).
pub fn irq_from_guest(frame: &mut TrapFrame, reschedule: fn(&mut TrapFrame), kicked: fn()) -> TrapKind {
    guest_exit();
    let first = take_physical_irqs();
    if percpu::shares_cpus() {
        reschedule(frame);
    } else if percpu::take_kick() {
        kicked();
    }
    guest_entry();
    TrapKind::of_irq(first, KICK_SGI)
}

/// Emulate a trapped MSR/MRS of a GIC system register (EC 0x18, `iss`): a write to
/// ICC_SGI1R_EL1 sends SGIs. Returns false for other registers.
pub fn emulate_sysreg(frame: &mut TrapFrame, iss: u64) -> bool {
    // Op0 3, Op1 0 (bits 16:14 clear), CRn 12, CRm 11, Op2 5, a write (Direction 0).
    let key = iss & 0x3f_fc1e;
    let sgi1r = (3 << 20) | (5 << 17) | (12 << 10) | (11 << 1);
    if key != sgi1r {
        return false;
    }
    let rt = ((iss >> 5) & 0x1f) as usize;
    if iss & 1 != 0 {
        // A read of a write-only register: read as zero rather than kill the guest.
        if rt != 31 {
            frame.x[rt] = 0;
        }
        return true;
    }
    let value = if rt == 31 { 0 } else { frame.x[rt] };
    if let Some(v) = current_vgic() {
        let targets = v.lock().send_sgi(percpu::current_vcpu() as usize, value);
        notify_mask(percpu::current_domain(), targets);
    }
    true
}
