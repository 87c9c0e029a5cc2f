//! ARMv7-A-only conformance rows: data-cache maintenance by set/way (trapped with HCR.TSW on
//! Xen 4.17 armhf) and the CP15 registers HCR.TAC and HCR.TIDCP trap (ACTLR, and L2CTLR of
//! the Cortex-A15's implementation-defined c9 space).

use crate::cases::{Case, Expect, Observed};
use core::ptr::{addr_of, addr_of_mut};

#[repr(C, align(4096))]
struct Page([u8; 4096]);
static mut SW_PAGE: Page = Page([0; 4096]);

const PATTERN: u32 = 0x5e7_3a11;

#[derive(Clone, Copy)]
enum SetWayOp {
    Isw,
    Csw,
    Cisw,
}

/// Level-1 data cache: (sets, ways, log2 line bytes), from CCSIDR (CSSELR = 0).
fn l1_geometry() -> (u32, u32, u32) {
    let ccsidr: u32;
    // SAFETY: selects the L1 data cache and reads its geometry.
    unsafe {
        core::arch::asm!("mcr p15, 2, {z}, c0, c0, 0", "isb", "mrc p15, 1, {c}, c0, c0, 0", z = in(reg) 0u32, c = out(reg) ccsidr, options(nostack))
    };
    let line_shift = (ccsidr & 7) + 4;
    let ways = ((ccsidr >> 3) & 0x3ff) + 1;
    let sets = ((ccsidr >> 13) & 0x7fff) + 1;
    (sets, ways, line_shift)
}

/// Write a pattern, walk every set and way of level 1 with `op` (as ARMv7 Linux does when it
/// turns its caches off), read the pattern back: the exception the instruction took, or 1 if
/// every operation completed and the data survived.
fn dc_set_way(op: SetWayOp) -> Observed {
    // SAFETY: our own page.
    unsafe { core::ptr::write_volatile(addr_of_mut!(SW_PAGE) as *mut u32, PATTERN) };
    let (sets, ways, line_shift) = l1_geometry();
    let way_shift = 32 - (ways.max(2) - 1).ilog2() - 1;
    crate::exceptions::clear();
    let mut first_at = 0u32;
    'outer: for way in 0..ways {
        for set in 0..sets {
            let v = (way << way_shift) | (set << line_shift);
            let at: u32;
            // SAFETY: cache maintenance by set/way on level 1 (bits 3:1 = 0): no memory is
            // changed architecturally; an UNDEF resumes after the instruction.
            unsafe {
                match op {
                    SetWayOp::Isw => core::arch::asm!("adr {at}, 1f", "1: mcr p15, 0, {v}, c7, c6, 2", "nop", at = out(reg) at, v = in(reg) v, options(nostack)),
                    SetWayOp::Csw => core::arch::asm!("adr {at}, 1f", "1: mcr p15, 0, {v}, c7, c10, 2", "nop", at = out(reg) at, v = in(reg) v, options(nostack)),
                    SetWayOp::Cisw => core::arch::asm!("adr {at}, 1f", "1: mcr p15, 0, {v}, c7, c14, 2", "nop", at = out(reg) at, v = in(reg) v, options(nostack)),
                }
            }
            if first_at == 0 {
                first_at = at;
            }
            if crate::exceptions::last().0 != 0 {
                break 'outer;
            }
        }
    }
    if let (_, Some(e)) = crate::exceptions::last() {
        return Observed::Exception { e, at: u64::from(first_at) };
    }
    // SAFETY: our own page.
    let v = unsafe { core::ptr::read_volatile(addr_of!(SW_PAGE) as *const u32) };
    Observed::NoException(i64::from(v == PATTERN))
}

/// ACTLR (MRC p15, 0, c1, c0, 1) as the guest reads it.
fn actlr_read() -> Observed {
    crate::exceptions::clear();
    let (v, at): (u32, u32);
    // SAFETY: a register read; an UNDEF resumes after it.
    unsafe { core::arch::asm!("adr {at}, 1f", "mov {v}, #0", "1: mrc p15, 0, {v}, c1, c0, 1", "nop", at = out(reg) at, v = out(reg) v, options(nostack)) };
    match crate::exceptions::last() {
        (_, Some(e)) => Observed::Exception { e, at: u64::from(at) },
        _ => Observed::NoException(i64::from(v)),
    }
}

/// Write ACTLR with its SMP bit (6) flipped, then read it back: 1 if the value changed
/// (Xen 4.17 ignores the write), 0 if not; the original value is written back.
fn actlr_write_then_read() -> Observed {
    crate::exceptions::clear();
    let (before, after): (u32, u32);
    // SAFETY: ACTLR.SMP toggled and restored at once; nothing runs in between that depends on
    // coherency (one CPU, no DMA); an UNDEF resumes after the faulting instruction.
    unsafe {
        core::arch::asm!(
            "mrc p15, 0, {b}, c1, c0, 1",
            "eor {t}, {b}, #0x40",
            "mcr p15, 0, {t}, c1, c0, 1",
            "isb",
            "mrc p15, 0, {a}, c1, c0, 1",
            "mcr p15, 0, {b}, c1, c0, 1",
            "isb",
            b = out(reg) before, t = out(reg) _, a = out(reg) after, options(nostack),
        )
    };
    match crate::exceptions::last() {
        (_, Some(e)) => Observed::Exception { e, at: 0 },
        _ => Observed::NoException(i64::from(after != before)),
    }
}

/// L2CTLR (MRC p15, 1, c9, c0, 2): implementation-defined c9 space, which HCR.TIDCP traps.
fn l2ctlr_read() -> Observed {
    crate::exceptions::clear();
    let (v, at): (u32, u32);
    // SAFETY: a register read; an UNDEF resumes after it.
    unsafe { core::arch::asm!("adr {at}, 1f", "mov {v}, #0", "1: mrc p15, 1, {v}, c9, c0, 2", "nop", at = out(reg) at, v = out(reg) v, options(nostack)) };
    match crate::exceptions::last() {
        (_, Some(e)) => Observed::Exception { e, at: u64::from(at) },
        _ => Observed::NoException(i64::from(v)),
    }
}

/// The ARMv7-A-only rows.
pub static ARM32_CASES: &[Case] = &[
    Case { name: "cache.dc_isw", run: || dc_set_way(SetWayOp::Isw), expect: Expect::Recorded },
    Case { name: "cache.dc_csw", run: || dc_set_way(SetWayOp::Csw), expect: Expect::Recorded },
    Case { name: "cache.dc_cisw", run: || dc_set_way(SetWayOp::Cisw), expect: Expect::Recorded },
    Case { name: "cp15.actlr.read", run: actlr_read, expect: Expect::Recorded },
    Case { name: "cp15.actlr.write_ignored", run: actlr_write_then_read, expect: Expect::Recorded },
    Case { name: "cp15.l2ctlr.read", run: l2ctlr_read, expect: Expect::Recorded },
];
