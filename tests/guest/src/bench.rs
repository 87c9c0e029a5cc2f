//! The null-hypercall micro-benchmark (`bench` on the command line): N calls of
//! `xen_version(XENVER_version)` timed with the virtual counter, minus the same loop without the HVC.
//! Under `-icount shift=0` the counter advances with executed instructions, so results repeat exactly.

use crate::println;
use core::arch::asm;
use guest_abi::hypercall::HYPERVISOR_XEN_VERSION;
use guest_abi::version::XENVER_VERSION;

/// Calls per timed window.
pub const N: u64 = 100_000;

pub fn counter() -> u64 {
    let t: u64;
    // SAFETY: CNTVCT_EL0 is readable at EL1; the ISB keeps the read from moving.
    unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) t, options(nomem, nostack)) };
    t
}

pub fn frequency() -> u64 {
    let f: u64;
    // SAFETY: reading CNTFRQ_EL0.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) f, options(nomem, nostack)) };
    f
}

/// Waits for the counter to tick, so each window starts on an edge.
pub fn edge() -> u64 {
    crate::window::edge(counter)
}

fn timed(hvc: bool) -> u64 {
    let start = edge();
    for _ in 0..N {
        if hvc {
            // SAFETY: XENVER_version takes no buffer.
            unsafe {
                asm!("hvc #0xEA1", inlateout("x0") XENVER_VERSION as u64 => _, inlateout("x1") 0u64 => _,
                     lateout("x2") _, lateout("x3") _, lateout("x4") _,
                     inlateout("x16") HYPERVISOR_XEN_VERSION => _, options(nostack));
            }
        } else {
            // SAFETY: an empty instruction sequence with the same register constraints.
            unsafe {
                asm!("", inlateout("x0") XENVER_VERSION as u64 => _, inlateout("x1") 0u64 => _,
                     lateout("x2") _, lateout("x3") _, lateout("x4") _,
                     inlateout("x16") HYPERVISOR_XEN_VERSION => _, options(nostack));
            }
        }
    }
    counter() - start
}

/// Runs the benchmark and prints its lines.
pub fn run() {
    null_hypercall();
    grant_map_unmap(frequency());
}

/// The null hypercall round trip alone (also part of `bench-exits`).
pub fn null_hypercall() {
    let freq = frequency();
    let empty = timed(false);
    let full = timed(true);
    crate::window::report_null_hypercall(full, empty, N, freq);
}

/// Grant map + unmap round trips of a page the guest grants to itself (same measurement as
/// above: two hypercalls per round, argument set-up included).
const GRANT_ROUNDS: u64 = 10_000;

fn grant_map_unmap(freq: u64) {
    if !crate::ops::bench_grant_setup() {
        println!("bench grant_map_unmap: cannot set up the grant table");
        return;
    }
    let start = edge();
    let mut in_map = 0u64;
    for _ in 0..GRANT_ROUNDS {
        let t0 = counter();
        let mut t1 = 0;
        if !crate::ops::bench_grant_map_unmap(&mut || t1 = counter()) {
            println!("bench grant_map_unmap: a map or unmap failed");
            return;
        }
        in_map += t1 - t0;
    }
    let ticks = counter() - start;
    let q0 = edge();
    for _ in 0..GRANT_ROUNDS {
        crate::ops::bench_grant_query();
    }
    let query = counter() - q0;
    let per = |t: u64| if freq == 0 { 0 } else { t as u128 * 10_000_000_000 / (freq as u128 * GRANT_ROUNDS as u128) };
    println!("bench grant_map_ns: {}.{}", per(in_map) / 10, per(in_map) % 10);
    println!("bench grant_query_size_ns: {}.{}", per(query) / 10, per(query) % 10);
    println!("bench grant_map_unmap_ticks: {ticks} rounds: {GRANT_ROUNDS}");
    println!("bench grant_map_unmap_ns: {}.{}", per(ticks) / 10, per(ticks) % 10);
    grant_held(freq);
    memory_cycle(freq);
}

/// Mappings held while a map and an unmap are timed (one figure each per count).
const HELD: [u32; 3] = [1, 1024, 32768];
const HELD_MAX: usize = 32768;
/// Rounds per count in [`grant_held`].
const HELD_ROUNDS: u64 = 4096;

/// Grant map and unmap costs with many mappings held: the self-grants of grant frame 0, 64
/// mappings per reference at distinct addresses above [`crate::ops::BENCH_HOLD_IPA`], then the
/// same map + unmap round as above, the two calls timed apart.
fn grant_held(freq: u64) {
    static mut HANDLES: [u32; HELD_MAX] = [0; HELD_MAX];
    // SAFETY: one CPU runs the benchmark; nothing else touches the array.
    let handles = unsafe { &mut *core::ptr::addr_of_mut!(HANDLES) };
    crate::ops::bench_grant_fill_frame();
    let per = |t: u64| if freq == 0 { 0 } else { t as u128 * 10_000_000_000 / (freq as u128 * HELD_ROUNDS as u128) };
    let mut held = 0usize;
    for n in HELD {
        while held < n as usize {
            match crate::ops::bench_grant_hold(held as u32) {
                Some(h) => handles[held] = h,
                None => {
                    println!("bench grant_held: holding mapping {held} failed");
                    release(&handles[..held]);
                    return;
                }
            }
            held += 1;
        }
        let (mut in_map, mut in_unmap) = (0u64, 0u64);
        edge();
        for _ in 0..HELD_ROUNDS {
            let t0 = counter();
            let mut t1 = 0;
            if !crate::ops::bench_grant_map_unmap(&mut || t1 = counter()) {
                println!("bench grant_held: a map or unmap failed with {n} held");
                release(&handles[..held]);
                return;
            }
            let t2 = counter();
            in_map += t1 - t0;
            in_unmap += t2 - t1;
        }
        println!("bench grant_map_held_{n}_ns: {}.{}", per(in_map) / 10, per(in_map) % 10);
        println!("bench grant_unmap_held_{n}_ns: {}.{}", per(in_unmap) / 10, per(in_unmap) % 10);
    }
    release(&handles[..held]);
}

fn release(handles: &[u32]) {
    for (i, &h) in handles.iter().enumerate() {
        if !crate::ops::bench_grant_release(i as u32, h) {
            println!("bench grant_held: releasing mapping {i} failed");
            return;
        }
    }
}

/// Rounds of [`memory_cycle`].
const CYCLE_ROUNDS: u64 = 1024;

/// A balloon cycle of one page: decrease_reservation then populate_physmap of the same frame,
/// each timed.
fn memory_cycle(freq: u64) {
    let per = |t: u64| if freq == 0 { 0 } else { t as u128 * 10_000_000_000 / (freq as u128 * CYCLE_ROUNDS as u128) };
    let (mut dec, mut pop) = (0u64, 0u64);
    edge();
    for _ in 0..CYCLE_ROUNDS {
        let t0 = counter();
        let d = crate::ops::bench_decrease();
        let t1 = counter();
        let p = crate::ops::bench_populate();
        let t2 = counter();
        if !d || !p {
            println!("bench memory_cycle: decrease {d} populate {p}");
            return;
        }
        dec += t1 - t0;
        pop += t2 - t1;
    }
    println!("bench decrease_reservation_page_ns: {}.{}", per(dec) / 10, per(dec) % 10);
    println!("bench populate_physmap_page_ns: {}.{}", per(pop) / 10, per(pop) % 10);
}
