//! When the hypervisor's own timer (CNTHP) must fire on a CPU running a vCPU: the decisions
//! behind the architecture's `vtimer` code, pure so they run in host tests.
//!
//! CNTHP serves two things. It backs the guest's emulated physical timer (its deadline, while
//! that timer is enabled, unmasked and not yet fired). And it re-checks the guest's virtual
//! timer while that timer's interrupt is *held*: the deadline passed, the hypervisor masked
//! the timer (CNTV_CTL.IMASK) and injected the virtual PPI, and the guest has not taken it
//! yet — it runs with interrupts masked (Linux's stop_machine, for one). Until the guest
//! re-arms, its timer has no deadline of its own, so nothing on the CPU has one; the
//! re-check gives the CPU a deadline every [`HELD_RECHECK_HZ`]th of a second.
//!
//! Why that matters: under QEMU's single-threaded TCG (`-icount`), one host thread runs the
//! vCPUs in turns, and a turn ends at the machine's next timer deadline (else after 0.1 s of
//! guest time). In stop_machine one vCPU spins in `multi_cpu_stop` while the other flushes
//! the kernel's TLB entries page by page, and each broadcast TLBI ends the flushing vCPU's
//! turn: without a deadline the spinner burns a long turn per TLBI, and Debian's armhf dom0
//! spends some 20 s of guest time there (an RCU stall) instead of a fraction of a second. On
//! hardware each vCPU has its CPU and the re-check costs one exit a millisecond, only while a
//! guest leaves its timer interrupt unhandled.

/// CNT*_CTL bits.
pub const CTL_ENABLE: u64 = 1 << 0;
pub const CTL_IMASK: u64 = 1 << 1;

/// Re-checks a second while a guest's virtual-timer interrupt is held.
pub const HELD_RECHECK_HZ: u64 = 1000;

/// Whether the guest's virtual timer, whose interrupt the hypervisor masked when it fired, is
/// still as the hypervisor left it: enabled and masked. A guest that took the interrupt and
/// programmed its next deadline has cleared IMASK; one that stopped its timer has cleared
/// ENABLE. Either way the hold is over.
pub fn vtimer_still_held(cntv_ctl: u64) -> bool {
    cntv_ctl & (CTL_ENABLE | CTL_IMASK) == CTL_ENABLE | CTL_IMASK
}

/// The emulated physical timer's deadline, if CNTHP must fire for it: enabled, its interrupt
/// unmasked, and its output not already asserted.
pub fn ptimer_deadline(ctl: u64, cval: u64, asserted: bool) -> Option<u64> {
    (ctl & CTL_ENABLE != 0 && ctl & CTL_IMASK == 0 && !asserted).then_some(cval)
}

/// The compare value CNTHP gets (`None`: off): the earlier of the emulated physical timer's
/// deadline and, while the virtual timer's interrupt is held, the next re-check `freq /
/// HELD_RECHECK_HZ` counter ticks after `now` (at least one tick).
pub fn hyp_timer_deadline(ptimer: Option<u64>, vtimer_held: bool, now: u64, freq: u64) -> Option<u64> {
    let recheck = vtimer_held.then(|| now.saturating_add((freq / HELD_RECHECK_HZ).max(1)));
    match (ptimer, recheck) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FREQ: u64 = 62_500_000;

    #[test]
    fn a_held_timer_stays_held_until_the_guest_rearms_or_stops_it() {
        // As the hypervisor leaves it once it fired (ISTATUS, bit 2, may be either).
        assert!(vtimer_still_held(CTL_ENABLE | CTL_IMASK));
        assert!(vtimer_still_held(CTL_ENABLE | CTL_IMASK | 4));
        // The guest programmed its next deadline (Linux clears IMASK) ...
        assert!(!vtimer_still_held(CTL_ENABLE));
        // ... or shut the timer down.
        assert!(!vtimer_still_held(CTL_IMASK));
        assert!(!vtimer_still_held(0));
    }

    #[test]
    fn the_physical_timer_needs_cnthp_only_while_it_can_still_fire() {
        assert_eq!(ptimer_deadline(CTL_ENABLE, 500, false), Some(500));
        assert_eq!(ptimer_deadline(CTL_ENABLE, 500, true), None, "already asserted");
        assert_eq!(ptimer_deadline(CTL_ENABLE | CTL_IMASK, 500, false), None, "masked by the guest");
        assert_eq!(ptimer_deadline(0, 500, false), None, "disabled");
    }

    #[test]
    fn cnthp_fires_at_the_earlier_of_the_physical_timer_and_the_recheck() {
        let now = 1_000_000;
        let step = FREQ / HELD_RECHECK_HZ;
        // Nothing to do: CNTHP off (no exits at all while the guest handles its own timer).
        assert_eq!(hyp_timer_deadline(None, false, now, FREQ), None);
        // Only the physical timer.
        assert_eq!(hyp_timer_deadline(Some(now + 5), false, now, FREQ), Some(now + 5));
        // Only the held virtual timer: one re-check a millisecond.
        assert_eq!(hyp_timer_deadline(None, true, now, FREQ), Some(now + step));
        // Both: whichever comes first.
        assert_eq!(hyp_timer_deadline(Some(now + 10), true, now, FREQ), Some(now + 10));
        assert_eq!(hyp_timer_deadline(Some(now + 10 * step), true, now, FREQ), Some(now + step));
    }

    #[test]
    fn the_recheck_is_never_now_and_never_wraps() {
        // A counter slower than the re-check rate still moves the deadline forward.
        assert_eq!(hyp_timer_deadline(None, true, 7, 10), Some(8));
        assert_eq!(hyp_timer_deadline(None, true, u64::MAX - 1, FREQ), Some(u64::MAX));
    }
}
