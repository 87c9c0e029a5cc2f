//! Guest timers. The EL1 virtual timer is the guest's own hardware (CNTV_*, offset by
//! CNTVOFF_EL2); its PPI 27 is taken at EL2, where the hypervisor masks it (CNTV_CTL.IMASK)
//! and injects virtual PPI 27 — the guest unmasks it when it programs the next deadline. The
//! EL1 physical timer is trapped (CNTHCTL_EL2.EL1PCEN = 0) and emulated on the hypervisor's
//! own physical timer (CNTHP, PPI 26): its state is per vCPU here, and its output is a level
//! on virtual PPI 30. The physical counter stays readable (EL1PCTEN = 1).
//!
//! CNTHP also ends the running vCPU's slice (`domain::vcpu::SLICE_US`): it is armed for
//! whichever comes first, the slice's end or the emulated timer's deadline.

use super::entry::TrapFrame;
use super::regs::isb;
use crate::irq::vgic::{PTIMER_PPI, VTIMER_PPI};
use crate::sysreg;
use super::percpu::{self, this_cpu, MAX_CPUS};
use crate::sync::SpinMutex as Mutex;
use crate::domain::vcpu::{hyp_timer_deadline, slice_end};
use core::sync::atomic::{AtomicU64, Ordering};

/// CNT*_CTL bits.
const CTL_ENABLE: u64 = 1 << 0;
const CTL_IMASK: u64 = 1 << 1;
const CTL_ISTATUS: u64 = 1 << 2;

/// CNTHCTL_EL2 for a guest: EL1PCTEN (counter readable), EL1PCEN clear (physical timer trapped).
const CNTHCTL_GUEST: u64 = 0b01;

/// The emulated EL1 physical timer of the vCPU on this CPU, and the end of its slice.
#[derive(Clone, Copy, Debug, Default)]
struct PhysTimer {
    ctl: u64,
    cval: u64,
    /// The counter value at which the vCPU's slice ends (`u64::MAX`: it has none).
    slice_end: u64,
}

/// Per physical CPU (each runs one vCPU).
static PTIMER: [Mutex<PhysTimer>; MAX_CPUS] = [const { Mutex::new(PhysTimer { ctl: 0, cval: 0, slice_end: 0 }) }; MAX_CPUS];

/// Per physical CPU, when its scheduler next needs a scheduling point (the hypervisor timer
/// serves the slice, the emulated timer and this; `u64::MAX`: never, always so under
/// `sched=null`).
static SCHED_EVENT: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(u64::MAX) }; MAX_CPUS];

/// This CPU's emulated physical timer.
fn ptimer() -> &'static Mutex<PhysTimer> {
    &PTIMER[this_cpu() % MAX_CPUS]
}

/// Saved virtual-timer state of a vCPU that is not running (for when vCPUs share a CPU).
#[derive(Clone, Copy, Debug, Default)]
pub struct VtimerState {
    pub ctl: u64,
    pub cval: u64,
    pub offset: u64,
}

/// Program the timer controls for vCPU `vcpu_id` about to run: the physical timer trapped,
/// the virtual counter offset (0: dom0's virtual counter equals the physical one, as the
/// host's firmware set it), the virtual timer off; its first slice begins.
pub fn configure_vcpu(_vcpu_id: u64) {
    sysreg!(write CNTHCTL_EL2, CNTHCTL_GUEST);
    sysreg!(write CNTVOFF_EL2, 0);
    sysreg!(write CNTV_CTL_EL0, 0);
    let t = PhysTimer { slice_end: next_slice_end(), ..PhysTimer::default() };
    *ptimer().lock() = t;
    arm_hyp_timer(&t, None);
}

/// The end of a slice that starts now.
fn next_slice_end() -> u64 {
    slice_end(now(), sysreg!(read CNTFRQ_EL0))
}

/// The vCPU blocks (a trapped WFI waits on its CPU): it has no slice until it wakes, so the
/// hypervisor timer fires only for the guest's physical timer meanwhile (a blocked vCPU is
/// not woken by its scheduler, as on Xen, whose idle CPUs take no slice interrupt).
pub fn block() {
    let mut t = ptimer().lock();
    t.slice_end = u64::MAX;
    arm_hyp_timer(&t, pending_deadline(&t));
}

/// The blocked vCPU woke: a new slice begins.
pub fn wake() {
    let mut t = ptimer().lock();
    t.slice_end = next_slice_end();
    arm_hyp_timer(&t, pending_deadline(&t));
}

/// Stop this CPU's hypervisor timer (the CPU stops running vCPUs).
pub fn stop() {
    sysreg!(write CNTHP_CTL_EL2, 0);
    isb();
}

/// Save the running vCPU's virtual timer (it keeps counting; its interrupt is masked by the
/// hardware only while disabled).
pub fn save() -> VtimerState {
    let s = VtimerState { ctl: sysreg!(read CNTV_CTL_EL0), cval: sysreg!(read CNTV_CVAL_EL0), offset: sysreg!(read CNTVOFF_EL2) };
    sysreg!(write CNTV_CTL_EL0, 0);
    isb();
    s
}

/// Restore a vCPU's virtual timer before it runs.
pub fn restore(s: &VtimerState) {
    sysreg!(write CNTVOFF_EL2, s.offset);
    sysreg!(write CNTV_CVAL_EL0, s.cval);
    sysreg!(write CNTV_CTL_EL0, s.ctl);
    isb();
}

/// The host virtual-timer PPI fired: the guest's deadline passed. Mask it at the timer (the
/// guest clears IMASK when it programs the next one) and hand the guest its PPI 27.
pub fn on_virtual_timer() {
    let ctl = sysreg!(read CNTV_CTL_EL0);
    sysreg!(write CNTV_CTL_EL0, ctl | CTL_IMASK);
    isb();
    super::vgic_glue::inject_edge(percpu::current_domain(), percpu::current_vcpu() as usize, VTIMER_PPI);
}

/// The hypervisor timer fired: the vCPU's slice ended (with one vCPU per CPU it runs on for
/// another), the guest's physical-timer deadline passed, or both.
pub fn on_hyp_timer() {
    sysreg!(write CNTHP_CTL_EL2, CTL_IMASK);
    isb();
    // A scheduler event that came is done with (the scheduling point after the interrupt
    // sets the next); otherwise CNTHP would fire again at once.
    let event = &SCHED_EVENT[this_cpu() % MAX_CPUS];
    if event.load(Ordering::Relaxed) <= now() {
        event.store(u64::MAX, Ordering::Relaxed);
    }
    let t = {
        let mut t = ptimer().lock();
        if now() >= t.slice_end {
            t.slice_end = next_slice_end();
        }
        *t
    };
    update_ptimer_line(&t);
}

fn now() -> u64 {
    isb();
    sysreg!(read CNTPCT_EL0)
}

/// Whether the emulated timer's condition is met and it asserts its interrupt.
fn fired(t: &PhysTimer) -> bool {
    t.ctl & CTL_ENABLE != 0 && now() >= t.cval
}

/// Drive virtual PPI 30 from the emulated timer, and arm CNTHP for the next of its deadline
/// and the slice's end.
fn update_ptimer_line(t: &PhysTimer) {
    let asserted = fired(t) && t.ctl & CTL_IMASK == 0;
    super::vgic_glue::set_irq_level(percpu::current_domain(), percpu::current_vcpu() as usize, PTIMER_PPI, asserted);
    arm_hyp_timer(t, if asserted { None } else { pending_deadline(t) });
}

/// The emulated timer's deadline while it is armed to interrupt (enabled, not masked).
fn pending_deadline(t: &PhysTimer) -> Option<u64> {
    (t.ctl & CTL_ENABLE != 0 && t.ctl & CTL_IMASK == 0).then_some(t.cval)
}

/// Arm CNTHP for the slice's end, the emulated timer's pending deadline `guest` or this CPU's
/// scheduler event, whichever is soonest.
fn arm_hyp_timer(t: &PhysTimer, guest: Option<u64>) {
    let sched = SCHED_EVENT[this_cpu() % MAX_CPUS].load(Ordering::Relaxed);
    sysreg!(write CNTHP_CVAL_EL2, hyp_timer_deadline(t.slice_end, guest).min(sched));
    sysreg!(write CNTHP_CTL_EL2, CTL_ENABLE);
    isb();
}

/// Emulate a trapped access to CNTP_CTL_EL0, CNTP_CVAL_EL0 or CNTP_TVAL_EL0 (EC 0x18,
/// `iss`). Returns false for other registers.
pub fn emulate_sysreg(frame: &mut TrapFrame, iss: u64) -> bool {
    // Op0 3, Op1 3, CRn 14, CRm 2; Op2 selects the register.
    let key = iss & 0x31_fc1e;
    if key != (3 << 20) | (3 << 14) | (14 << 10) | (2 << 1) {
        return false;
    }
    let op2 = (iss >> 17) & 7;
    let read = iss & 1 != 0;
    let rt = ((iss >> 5) & 0x1f) as usize;
    let value = if rt == 31 { 0 } else { frame.x[rt] };
    let mut t = ptimer().lock();
    let result = match (op2, read) {
        (1, true) => Some(t.ctl | if fired(&t) { CTL_ISTATUS } else { 0 }),
        (1, false) => {
            t.ctl = value & (CTL_ENABLE | CTL_IMASK);
            None
        }
        (2, true) => Some(t.cval),
        (2, false) => {
            t.cval = value;
            None
        }
        // TVAL: a signed 32-bit view of CVAL - now.
        (0, true) => Some(t.cval.wrapping_sub(now()) & 0xffff_ffff),
        (0, false) => {
            t.cval = now().wrapping_add(value as u32 as i32 as i64 as u64);
            None
        }
        _ => return false,
    };
    match result {
        Some(v) => {
            if rt != 31 {
                frame.x[rt] = v;
            }
        }
        None => update_ptimer_line(&t),
    }
    true
}

/// The scheduler's next event on this CPU (`None`: none): CNTHP is re-armed for it.
pub fn set_sched_event(at: Option<u64>) {
    SCHED_EVENT[this_cpu() % MAX_CPUS].store(at.unwrap_or(u64::MAX), Ordering::Relaxed);
    let t = *ptimer().lock();
    arm_hyp_timer(&t, if fired(&t) { None } else { pending_deadline(&t) });
}

/// Take the running vCPU's emulated physical timer off this CPU (it is switched out):
/// `(ctl, cval)`; this CPU's is reset.
pub fn take_ptimer() -> (u64, u64) {
    let mut p = ptimer().lock();
    let t = *p;
    // The CPU's next vCPU (if any) starts a slice of its own when it is put on.
    *p = PhysTimer { slice_end: u64::MAX, ..PhysTimer::default() };
    (t.ctl, t.cval)
}

/// The running vCPU's emulated physical timer: `(ctl, cval)`.
pub fn peek_ptimer() -> (u64, u64) {
    let t = *ptimer().lock();
    (t.ctl, t.cval)
}

/// Put a vCPU's emulated physical timer on this CPU (it is switched in) and drive its line.
pub fn put_ptimer(ctl: u64, cval: u64) {
    let t = PhysTimer { ctl, cval, slice_end: next_slice_end() };
    *ptimer().lock() = t;
    update_ptimer_line(&t);
}

/// A switched-out vCPU's timers: its virtual timer (`ctl`, `cval`, virtual offset `offset`)
/// and its emulated physical timer (`pctl`, `pcval`).
#[derive(Clone, Copy, Debug, Default)]
pub struct SavedTimers {
    pub ctl: u64,
    pub cval: u64,
    pub offset: u64,
    pub pctl: u64,
    pub pcval: u64,
}

fn armed(ctl: u64) -> bool {
    ctl & CTL_ENABLE != 0 && ctl & CTL_IMASK == 0
}

impl SavedTimers {
    /// The physical counter time at which they want the vCPU (each timer only when enabled
    /// and unmasked).
    pub fn deadline(&self) -> Option<u64> {
        let v = armed(self.ctl).then(|| self.cval.saturating_add(self.offset));
        let p = armed(self.pctl).then_some(self.pcval);
        match (v, p) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Their deadline passed (`now`): the virtual timer, if due, is masked here and vCPU
    /// `vcpu` of `dom` gets its PPI 27; the emulated physical timer's line is raised if due.
    /// The interrupts wake it.
    pub fn expire(&mut self, dom: crate::domain::DomId, vcpu: usize, now: u64) {
        if armed(self.ctl) && now >= self.cval.saturating_add(self.offset) {
            self.ctl |= CTL_IMASK;
            super::vgic_glue::inject_edge(dom, vcpu, VTIMER_PPI);
        }
        if armed(self.pctl) && now >= self.pcval {
            super::vgic_glue::set_irq_level(dom, vcpu, PTIMER_PPI, true);
        }
    }
}
