//! Noise (`bench-noise` as dom0, `noise-busy` / `noise-idle` as a domU): what other domains'
//! activity adds to dom0's null hypercall. The domUs either loop on `xen_version` or sit in
//! WFI; dom0 times many short windows of null hypercalls with the virtual counter.
//!
//! Under `-icount` QEMU runs all vCPUs on one host thread, round robin, and the virtual counter
//! follows the instructions of every vCPU: a window during which QEMU switched to a domU's
//! vCPU also counts that vCPU's turn. A turn lasts until the vCPU waits or yields, at most the
//! time to the next timer deadline divided by the number of vCPUs (0.1 s of virtual time
//! without one). A busy domU keeps its virtual timer armed [`HORIZON_TICKS`] ahead (never
//! letting it fire), which cuts turns to about 100 000 instructions: the domUs' hypercalls run
//! interleaved with dom0's every few hundred of dom0's calls, not once in a long while.
//! dom0's windows are far shorter than a turn, so most see dom0's vCPU alone and the median
//! window is dom0's own cost. The windows set aside as interrupted (over 1.5 times the median)
//! are counted and printed: their share follows from the turn length; a hypervisor whose waits
//! yielded to another vCPU would show many more with busy domUs than with idle ones.

use crate::bench::{counter, edge};
use crate::println;
use core::arch::asm;
use guest_abi::hypercall::HYPERVISOR_XEN_VERSION;
use guest_abi::version::XENVER_VERSION;

/// Null hypercalls per window.
const CALLS: u64 = 32;
/// Timed windows (after as many discarded ones, while the domUs get going).
const WINDOWS: usize = 2000;
/// How far ahead a busy domU keeps its virtual timer deadline, in counter ticks (16
/// instructions each at QEMU virt's 62.5 MHz under -icount shift=0): 300 000 instructions.
const HORIZON_TICKS: u64 = 300_000 / 16;

fn null_hypercall() {
    // SAFETY: XENVER_version takes no buffer.
    unsafe {
        asm!("hvc #0xEA1", inlateout("x0") XENVER_VERSION as u64 => _, inlateout("x1") 0u64 => _,
             lateout("x2") _, lateout("x3") _, lateout("x4") _,
             inlateout("x16") HYPERVISOR_XEN_VERSION => _, options(nostack));
    }
}

fn empty() {
    // SAFETY: an empty instruction sequence with the null hypercall's register constraints.
    unsafe {
        asm!("", inlateout("x0") XENVER_VERSION as u64 => _, inlateout("x1") 0u64 => _,
             lateout("x2") _, lateout("x3") _, lateout("x4") _,
             inlateout("x16") HYPERVISOR_XEN_VERSION => _, options(nostack));
    }
}

/// `WINDOWS` windows of `CALLS` calls of `f`, in counter ticks, sorted.
fn windows(f: fn()) -> [u64; WINDOWS] {
    let mut w = [0u64; WINDOWS];
    for slot in w.iter_mut() {
        let t0 = edge();
        for _ in 0..CALLS {
            f();
        }
        *slot = counter() - t0;
    }
    w.sort_unstable();
    w
}

/// dom0's side: prints the median null hypercall (ns = instructions under -icount) and how
/// many windows were interrupted.
pub fn run() {
    let freq = crate::bench::frequency();
    let _ = windows(null_hypercall); // warm-up: the domUs reach their loops
    let full = windows(null_hypercall);
    let base = windows(empty);
    let (m, e) = (full[WINDOWS / 2], base[WINDOWS / 2]);
    let interrupted = full.iter().filter(|&&t| t * 2 > m * 3).count();
    let tenths = if freq == 0 { 0 } else { u128::from(m.saturating_sub(e)) * 10_000_000_000 / (u128::from(freq) * u128::from(CALLS)) };
    println!("bench noise_null_hypercall_ns: {}.{} median_ticks: {m} empty_ticks: {e} calls: {CALLS}", tenths / 10, tenths % 10);
    println!("bench noise_interrupted_windows: {interrupted}");
    println!("bench noise_windows: {WINDOWS}");
}

/// A domU's side, forever: null hypercalls back to back (`busy`) or WFI (idle).
pub fn domu(busy: bool) -> ! {
    println!("noise: domU {}", if busy { "looping on xen_version" } else { "idle in WFI" });
    loop {
        if busy {
            null_hypercall();
            // SAFETY: the EL1 virtual timer, re-armed before it can fire (IRQs stay masked).
            unsafe {
                asm!("msr cntv_tval_el0, {t}", "msr cntv_ctl_el0, {one}", t = in(reg) HORIZON_TICKS, one = in(reg) 1u64, options(nomem, nostack))
            };
        } else {
            // SAFETY: waits for an interrupt (none is enabled: the vCPU stays idle).
            unsafe { asm!("wfi", options(nomem, nostack)) };
        }
    }
}
