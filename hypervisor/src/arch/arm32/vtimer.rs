//! Guest timers. The PL1 virtual timer (CNTV_*) is the guest's own hardware, offset by
//! CNTVOFF; its PPI 27 is taken in HYP mode, where the hypervisor masks it (CNTV_CTL.IMASK)
//! and injects virtual PPI 27 (the guest unmasks it when it programs the next deadline). The
//! PL1 physical timer is trapped (CNTHCTL.PL1PCEN = 0) and emulated per vCPU on the HYP
//! timer (CNTHP, PPI 26): CNTP_CTL and CNTP_TVAL by MCR/MRC, CNTP_CVAL by MCRR/MRRC; its
//! output is a level on virtual PPI 30. The physical counter stays readable (PL1PCTEN = 1).
//! CNTHP also re-checks the virtual timer while its interrupt is held (fired and masked here,
//! not yet taken by the guest): `irq::guest_timer` says when CNTHP fires.

use super::entry::TrapFrame;
use super::regs::{isb, CntvCtl, CnthpCtl, CnthpCval};
use super::percpu::{self, this_cpu, MAX_CPUS};
use crate::irq::guest_timer;
use crate::irq::vgic::{PTIMER_PPI, VTIMER_PPI};
use crate::sync::SpinMutex as Mutex;
use core::sync::atomic::{AtomicBool, Ordering};

/// CNT*_CTL bits.
const CTL_ENABLE: u32 = 1 << 0;
const CTL_IMASK: u32 = 1 << 1;
const CTL_ISTATUS: u32 = 1 << 2;

/// The emulated PL1 physical timer of the vCPU on a CPU.
#[derive(Clone, Copy, Debug, Default)]
struct PhysTimer {
    ctl: u32,
    cval: u64,
}

/// Per physical CPU (each runs one vCPU).
static PTIMER: [Mutex<PhysTimer>; MAX_CPUS] = [const { Mutex::new(PhysTimer { ctl: 0, cval: 0 }) }; MAX_CPUS];

fn ptimer() -> &'static Mutex<PhysTimer> {
    &PTIMER[this_cpu() % MAX_CPUS]
}

/// Per physical CPU: its vCPU's virtual-timer interrupt is held (`irq::guest_timer`).
static VTIMER_HELD: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

fn vtimer_held() -> &'static AtomicBool {
    &VTIMER_HELD[this_cpu() % MAX_CPUS]
}

/// The vCPU about to run on this CPU starts with its emulated timer off and nothing held.
pub fn reset_vcpu() {
    *ptimer().lock() = PhysTimer::default();
    vtimer_held().store(false, Ordering::Relaxed);
}

fn now() -> u64 {
    isb();
    super::regs::Cntpct::read()
}

fn fired(t: &PhysTimer) -> bool {
    t.ctl & CTL_ENABLE != 0 && now() >= t.cval
}

/// The host virtual-timer PPI fired: the guest's deadline passed. Mask it at the timer and
/// hand the guest its PPI 27; until the guest re-arms or stops the timer, CNTHP re-checks it.
pub fn on_virtual_timer() {
    CntvCtl::write(CntvCtl::read() | CTL_IMASK);
    isb();
    super::vgic_glue::inject_edge(percpu::current_domain(), percpu::current_vcpu() as usize, VTIMER_PPI);
    vtimer_held().store(true, Ordering::Relaxed);
    let t = *ptimer().lock();
    let asserted = fired(&t) && t.ctl & CTL_IMASK == 0;
    arm_hyp_timer(&t, asserted);
}

/// The HYP timer (the guest's physical timer, or the held virtual timer's re-check) fired.
pub fn on_hyp_timer() {
    CnthpCtl::write(CTL_IMASK);
    isb();
    let t = *ptimer().lock();
    update_ptimer_line(&t);
}

/// Drive virtual PPI 30 from the emulated timer, and arm CNTHP for its next deadline.
fn update_ptimer_line(t: &PhysTimer) {
    let asserted = fired(t) && t.ctl & CTL_IMASK == 0;
    super::vgic_glue::set_irq_level(percpu::current_domain(), percpu::current_vcpu() as usize, PTIMER_PPI, asserted);
    arm_hyp_timer(t, asserted);
}

/// Program CNTHP for the emulated physical timer's deadline and, while the virtual timer's
/// interrupt is held, its next re-check (the hold ends once the guest re-armed or stopped it).
fn arm_hyp_timer(t: &PhysTimer, ptimer_asserted: bool) {
    let held = vtimer_held();
    let still = held.load(Ordering::Relaxed) && guest_timer::vtimer_still_held(u64::from(CntvCtl::read()));
    if !still {
        held.store(false, Ordering::Relaxed);
    }
    let ptimer = guest_timer::ptimer_deadline(u64::from(t.ctl), t.cval, ptimer_asserted);
    match guest_timer::hyp_timer_deadline(ptimer, still, now(), super::regs::counter_freq()) {
        Some(cval) => {
            CnthpCval::write(cval);
            CnthpCtl::write(CTL_ENABLE);
        }
        None => CnthpCtl::write(0),
    }
    isb();
}

/// A trapped CP15 access (MCR/MRC: `iss` of EC 0x03, or MCRR/MRRC: EC 0x04 with `double`) to
/// the physical timer. Returns false for any other register.
pub fn emulate_cp15(frame: &mut TrapFrame, iss: u32, double: bool) -> bool {
    let read = iss & 1 != 0;
    let rt = ((iss >> 5) & 0xf) as usize;
    let crm = (iss >> 1) & 0xf;
    let mut t = ptimer().lock();
    if double {
        // MCRR/MRRC p15, Opc1, Rt, Rt2, CRm: CNTP_CVAL is Opc1 2, CRm 14.
        let opc1 = (iss >> 16) & 0xf;
        let rt2 = ((iss >> 10) & 0xf) as usize;
        if opc1 != 2 || crm != 14 || rt > 12 || rt2 > 12 {
            return false;
        }
        if read {
            frame.r[rt] = t.cval as u32;
            frame.r[rt2] = (t.cval >> 32) as u32;
        } else {
            t.cval = u64::from(frame.r[rt]) | (u64::from(frame.r[rt2]) << 32);
            update_ptimer_line(&t);
        }
        return true;
    }
    // MCR/MRC p15, Opc1, Rt, CRn, CRm, Opc2: CNTP_TVAL is 0, c14, c2, 0; CNTP_CTL 0, c14, c2, 1.
    let (opc2, opc1, crn) = ((iss >> 17) & 7, (iss >> 14) & 7, (iss >> 10) & 0xf);
    if opc1 != 0 || crn != 14 || crm != 2 || rt > 12 {
        return false;
    }
    match (opc2, read) {
        (1, true) => frame.r[rt] = t.ctl | if fired(&t) { CTL_ISTATUS } else { 0 },
        (1, false) => {
            t.ctl = frame.r[rt] & (CTL_ENABLE | CTL_IMASK);
            update_ptimer_line(&t);
        }
        // TVAL: a signed 32-bit view of CVAL - now.
        (0, true) => frame.r[rt] = t.cval.wrapping_sub(now()) as u32,
        (0, false) => {
            t.cval = now().wrapping_add(frame.r[rt] as i32 as i64 as u64);
            update_ptimer_line(&t);
        }
        _ => return false,
    }
    true
}
