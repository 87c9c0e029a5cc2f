//! The null-hypercall micro-benchmark on ARMv7-A (`bench` on the command line): N calls of
//! `xen_version(XENVER_version)` through `hvc #0xEA1` timed with the virtual counter (CNTVCT,
//! the 64-bit CP15 register read with MRRC), minus the same loop without the HVC. Under
//! `-icount shift=0` the counter advances one tick per executed instruction, so the figure is
//! an instruction count and repeats exactly.

use core::arch::asm;
use guest_abi::hypercall::HYPERVISOR_XEN_VERSION;
use guest_abi::version::XENVER_VERSION;

/// Calls per timed window.
pub const N: u64 = 100_000;

pub fn counter() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: CNTVCT is readable at PL1 (the virtual counter is always accessible to the
    // kernel); the ISB keeps the read from moving across the loop.
    unsafe { asm!("isb", "mrrc p15, 1, {}, {}, c14", out(reg) lo, out(reg) hi, options(nomem, nostack)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

pub fn frequency() -> u64 {
    let f: u32;
    // SAFETY: reading CNTFRQ.
    unsafe { asm!("mrc p15, 0, {}, c14, c0, 0", out(reg) f, options(nomem, nostack)) };
    u64::from(f)
}

fn timed(hvc: bool) -> u64 {
    let start = crate::window::edge(counter);
    for _ in 0..N {
        if hvc {
            // SAFETY: XENVER_version takes no buffer; r0-r4 and r12 are declared clobbered.
            unsafe {
                asm!(".arch_extension virt", "hvc #0xEA1",
                     inlateout("r0") XENVER_VERSION => _, inlateout("r1") 0u32 => _,
                     lateout("r2") _, lateout("r3") _, lateout("r4") _,
                     inlateout("r12") HYPERVISOR_XEN_VERSION as u32 => _, options(nostack));
            }
        } else {
            // SAFETY: an empty instruction sequence with the same register constraints.
            unsafe {
                asm!("",
                     inlateout("r0") XENVER_VERSION => _, inlateout("r1") 0u32 => _,
                     lateout("r2") _, lateout("r3") _, lateout("r4") _,
                     inlateout("r12") HYPERVISOR_XEN_VERSION as u32 => _, options(nostack));
            }
        }
    }
    counter() - start
}

/// Runs the benchmark and prints its lines (the same keys as the AArch64 guest's).
pub fn run() {
    let freq = frequency();
    let empty = timed(false);
    let full = timed(true);
    crate::window::report_null_hypercall(full, empty, N, freq);
}
