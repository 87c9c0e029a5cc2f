//! `heartbeat` (a domU): prints `heartbeat N` every [`PERIOD_MS`] of its virtual counter
//! (`heartbeat-slow`: every [`SLOW_PERIOD_MS`], for tests whose dom0 prints on the same
//! console meanwhile), forever, so that a system test can tell it still runs after what
//! happened beside it. In between it waits in WFI for its virtual timer: no interrupt is
//! enabled at its GIC, the timer's line only ends the wait (so the vCPU sleeps rather than
//! spins).

use crate::bench::{counter, frequency};
use crate::println;
use core::arch::asm;

/// Time between two heartbeats.
pub const PERIOD_MS: u64 = 250;
/// Time between two heartbeats in `heartbeat-slow` mode.
pub const SLOW_PERIOD_MS: u64 = 2000;

pub fn domu(period_ms: u64) -> ! {
    let period = frequency() * period_ms / 1000;
    let mut n = 0u64;
    loop {
        n += 1;
        println!("heartbeat {n}");
        let until = counter() + period;
        while counter() < until {
            // SAFETY: the EL1 virtual timer, deadline `until`, enabled with its interrupt
            // unmasked at the timer (PSTATE.I stays masked: nothing is taken); WFI returns
            // once its line is high, or earlier on any other wakeup.
            unsafe {
                asm!("msr cntv_cval_el0, {c}", "msr cntv_ctl_el0, {one}", "isb", "wfi",
                     c = in(reg) until, one = in(reg) 1u64, options(nomem, nostack));
            }
        }
        // SAFETY: the timer off until the next wait.
        unsafe { asm!("msr cntv_ctl_el0, xzr", "isb", options(nomem, nostack)) };
    }
}
