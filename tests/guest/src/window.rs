//! Timed windows over the virtual counter, shared by both architectures' benchmarks: starting
//! a window on a counter edge, and the per-call figure of a loop with the call against the
//! same loop without it.

use crate::println;

/// Waits for `counter` to tick, so a window starts on an edge; returns the new value.
pub fn edge(counter: impl Fn() -> u64) -> u64 {
    let t0 = counter();
    loop {
        let t = counter();
        if t != t0 {
            return t;
        }
    }
}

/// Prints the null hypercall's lines: `full` ticks for `n` calls in a loop, `empty` for the
/// loop alone, the counter at `freq` Hz; the per-call figure in tenths of a ns.
pub fn report_null_hypercall(full: u64, empty: u64, n: u64, freq: u64) {
    let delta = full.saturating_sub(empty) as u128;
    let tenths = if freq == 0 { 0 } else { delta * 10_000_000_000 / (freq as u128 * n as u128) };
    println!("bench null_hypercall_ticks: {full} empty_loop_ticks: {empty} calls: {n} cntfrq: {freq}");
    println!("bench null_hypercall_ns: {}.{}", tenths / 10, tenths % 10);
}
