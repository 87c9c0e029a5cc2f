//! The architecture-neutral half of running a vGIC on the physical CPUs, shared by AArch64
//! and ARMv7 (included by path): which CPU must look at its vCPU's interrupts again (`notify`,
//! a kick), reading the list registers back on guest exit and refilling them before guest
//! entry when the vCPU's interrupt state changed, and the injections other code asks for
//! (event-channel upcalls, timer expiries, level lines). The architecture's `gic` module gives
//! the hardware side: `kick`, `HwLrs` (its list registers) and `apply_hw_ops`; `percpu` says
//! what this CPU runs. It imports nothing else of the architecture: `irq` and `vtimer` call it
//! (`irq` passes `vtimer`'s handlers in).

use super::percpu::{self, this_cpu, MAX_CPUS};
use crate::domain::{DomId, Domain};
use crate::irq::vgic::domains::VGICS;
use crate::irq::vgic::regs::{SharedVgic, REGISTER_WRITES};
use crate::irq::vgic::{HYP_TIMER_PPI, MAINTENANCE_PPI, PRIVATE_IRQS, VTIMER_PPI};
use crate::log;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

// Per physical CPU (each runs one vCPU of one domain; its vGIC is that domain's, in `VGICS`):
/// its vCPU's list registers hold something (guest exit must read them back);
static LRS_LIVE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// its vCPU's interrupt state changed since the last flush (set before any kick);
static WORK: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// the vGIC register-write count its last flush saw.
static SEEN_WRITES: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Physical interrupts taken that nobody claims (logged a few times only).
static STRAY: AtomicU32 = AtomicU32::new(0);

/// When vCPUs share CPUs, the scheduler's wakeup of a vCPU with new interrupt state: it
/// returns the CPU to kick (`None`: the vCPU runs nowhere). The scheduler sits above this
/// file, so it registers it (`set_wake`); without it each vCPU has its CPU (`percpu::cpu_of`).
static WAKE: crate::sync::Once<fn(DomId, usize) -> Option<usize>> = crate::sync::Once::new();

/// Register the scheduler's wakeup (once, at boot, before any domain runs).
#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
pub fn set_wake(wake: fn(DomId, usize) -> Option<usize>) {
    WAKE.call_once(|| wake);
}

/// Whether to log one more unclaimed physical interrupt (the first few only).
pub fn log_stray() -> bool {
    STRAY.fetch_add(1, Ordering::Relaxed) < 8
}

/// What the architecture's timer code does when one of its PPIs fires: `vtimer` sits above
/// this file, so its handlers come in as values.
pub struct TimerPpis {
    /// The guest's virtual timer (PPI 27).
    pub virtual_timer: fn(),
    /// The hypervisor's timer backing the guest's physical timer (PPI 26).
    pub hyp_timer: fn(),
}

/// Act on physical SGI, PPI or SPI `intid`, acknowledged and its priority dropped: a
/// passed-through SPI pends on dom0's vCPU it targets, the timers' PPIs go to `timers`, the
/// maintenance interrupt and the kick (`kick_sgi`) only make `guest_entry` look again.
/// Returns whether the caller deactivates it now (not a passed-through SPI: the guest does,
/// through a HW list register).
pub fn take_physical(intid: u32, kick_sgi: u32, timers: &TimerPpis) -> bool {
    if intid >= PRIVATE_IRQS {
        let target = dom0_vgic().and_then(|v| {
            let mut g = v.lock();
            g.inject_hw(intid).ok().map(|()| g.spi_target(intid))
        });
        if let Some(Some(t)) = target {
            notify(0, t);
        }
        if target.is_none() && log_stray() {
            log!("physical SPI {intid} is not passed through to a guest: ignored");
        }
        return target.is_none();
    }
    match intid {
        VTIMER_PPI => (timers.virtual_timer)(),
        HYP_TIMER_PPI => (timers.hyp_timer)(),
        // Underflow: the list registers drained; `guest_entry` refills them. A kick: another
        // CPU changed this vCPU's interrupts; `guest_entry` looks at them.
        MAINTENANCE_PPI => {}
        k if k == kick_sgi => {}
        other => {
            if log_stray() {
                log!("physical IRQ {other} has no handler: ignored");
            }
        }
    }
    true
}

/// Note that vCPU `vcpu` of domain `dom` has new interrupt state, and make the CPU running it
/// look (`kick`). Nothing happens for a vCPU that runs nowhere (not started, or parked).
pub fn notify(dom: DomId, vcpu: usize) {
    // Also the scheduler's wakeup of a vCPU waiting in WFI (when vCPUs share CPUs).
    let cpu = match WAKE.get() {
        Some(wake) => wake(dom, vcpu),
        None => percpu::cpu_of(dom, vcpu),
    };
    let Some(cpu) = cpu else { return };
    if let Some(w) = WORK.get(cpu) {
        w.store(true, Ordering::Release);
    }
    super::gic::kick(cpu);
}

/// Make every vCPU of `dom` in `mask` (bit n: vCPU n) look at its interrupts.
pub fn notify_mask(dom: DomId, mut mask: u64) {
    while mask != 0 {
        let v = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        notify(dom, v);
    }
}

/// The vCPUs in `mask` of the domain whose vCPU runs on this CPU look at their interrupts
/// (a guest's GICD_SGIR write is emulated on the writing vCPU's CPU).
pub fn notify_mask_here(mask: u64) {
    notify_mask(percpu::current_domain(), mask)
}

/// The vGIC of the vCPU on this CPU (its domain's), if that domain has one.
#[inline]
pub fn current_vgic() -> Option<&'static SharedVgic> {
    VGICS.get(percpu::current_domain())
}

/// dom0's vGIC, whichever CPU asks (its passed-through SPIs, events other domains raise for it).
pub fn dom0_vgic() -> Option<&'static SharedVgic> {
    VGICS.get(0)
}

/// The vCPU left the guest: read the list registers back into the vGIC. Inline: on most
/// exits no list register was filled and this is one load.
#[inline]
pub fn guest_exit() {
    let me = this_cpu();
    if LRS_LIVE.get(me).is_some_and(|l| l.load(Ordering::Relaxed)) {
        guest_exit_sync(me);
    }
}

#[inline(never)]
fn guest_exit_sync(me: usize) {
    if let Some(v) = current_vgic() {
        v.lock().sync(percpu::current_vcpu() as usize, &mut super::gic::HwLrs::new());
        if let Some(w) = WORK.get(me) {
            w.store(true, Ordering::Relaxed);
        }
    }
}

/// Before guest entry (once the physical interrupts are taken): fill the list registers if
/// the vCPU's interrupt state changed. Inline: the usual case (nothing changed since the last
/// flush) is three loads.
#[inline]
pub fn flush_if_changed() {
    let me = this_cpu();
    let (Some(work), Some(seen)) = (WORK.get(me), SEEN_WRITES.get(me)) else { return };
    let writes = REGISTER_WRITES.load(Ordering::Acquire);
    if !work.load(Ordering::Acquire) && seen.load(Ordering::Relaxed) == writes {
        return;
    }
    flush(me, writes);
}

#[inline(never)]
fn flush(me: usize, writes: u64) {
    let Some(v) = current_vgic() else { return };
    let (Some(work), Some(seen)) = (WORK.get(me), SEEN_WRITES.get(me)) else { return };
    work.store(false, Ordering::Relaxed);
    seen.store(writes, Ordering::Relaxed);
    let vcpu = percpu::current_vcpu() as usize;
    let mut g = v.lock();
    g.flush(vcpu, &mut super::gic::HwLrs::new());
    if let Some(l) = LRS_LIVE.get(me) {
        l.store(g.lrs_in_use(vcpu), Ordering::Relaxed);
    }
    let ops = g.take_hw_ops();
    drop(g);
    if !ops.is_empty() {
        super::gic::apply_hw_ops(&ops);
    }
}

/// This CPU's list-register bookkeeping for the vCPU being switched out: whether its list
/// registers hold something, and the vGIC register-write count its last flush saw.
#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
pub fn take_cpu_state() -> (bool, u64) {
    let me = this_cpu();
    let live = LRS_LIVE.get(me).is_some_and(|l| l.swap(false, Ordering::Relaxed));
    (live, SEEN_WRITES.get(me).map_or(0, |s| s.load(Ordering::Relaxed)))
}

/// The same for the vCPU switched in (its list registers restored): its interrupt state may
/// have changed while it was out, so the next guest entry flushes.
#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
pub fn put_cpu_state(live: bool, seen: u64) {
    let me = this_cpu();
    if let (Some(l), Some(s), Some(w)) = (LRS_LIVE.get(me), SEEN_WRITES.get(me), WORK.get(me)) {
        l.store(live, Ordering::Relaxed);
        s.store(seen, Ordering::Relaxed);
        w.store(true, Ordering::Release);
    }
}

/// Deliver `dom`'s event-channel upcalls: for each vCPU whose vcpu_info.evtchn_upcall_pending
/// an event set (bit n of `evtchn.upcall_pending`, the event-channel code's hook), pend the
/// domain's callback PPI on that vCPU, as Xen injects it. A PPI already pending absorbs it.
pub fn deliver_event_upcall(dom: &Domain) {
    // Only the set bits are visited (usually none).
    let mut pending = dom.take_upcalls();
    while pending != 0 {
        let vcpu = pending.trailing_zeros() as usize;
        pending &= pending - 1;
        inject_edge(dom.id, vcpu, dom.callback_ppi);
    }
}

/// Latch an edge (or message) interrupt `intid` for `vcpu` of domain `dom`: for callers
/// outside the vGIC (an event-channel upcall delivered as a PPI, a virtual timer expiry).
pub fn inject_edge(dom: DomId, vcpu: usize, intid: u32) {
    if let Some(v) = VGICS.get(dom) {
        if let Err(e) = v.lock().inject_edge(vcpu, intid) {
            log!("d{dom}: vGIC: cannot inject: {e}");
            return;
        }
        notify(dom, vcpu);
    }
}

/// Drive the line of a level-sensitive `intid` for `vcpu` of domain `dom` (an emulated
/// device's interrupt, the emulated physical timer's PPI). Takes effect at the vCPU's next
/// entry.
pub fn set_irq_level(dom: DomId, vcpu: usize, intid: u32, high: bool) {
    if let Some(v) = VGICS.get(dom) {
        if let Err(e) = v.lock().set_level(vcpu, intid, high) {
            log!("d{dom}: vGIC: cannot set level: {e}");
            return;
        }
        notify(dom, vcpu);
    }
}
