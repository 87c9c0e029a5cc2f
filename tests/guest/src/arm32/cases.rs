//! ARMv7-A-only conformance rows: data-cache maintenance by set/way (trapped with HCR.TSW on
//! Xen 4.17 armhf) and the CP15 registers HCR.TAC and HCR.TIDCP trap (ACTLR, and L2CTLR of
//! the Cortex-A15's implementation-defined c9 space).

use crate::cases::{Case, Expect, Observed, SetWayOp};
use core::ptr::{addr_of, addr_of_mut};

#[repr(C, align(4096))]
struct Page([u8; 4096]);
static mut SW_PAGE: Page = Page([0; 4096]);

const PATTERN: u32 = 0x5e7_3a11;

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
/// turns its caches off), read the pattern back (`cases::set_way_walk`).
fn dc_set_way(op: SetWayOp) -> Observed {
    // SAFETY: our own page.
    unsafe { core::ptr::write_volatile(addr_of_mut!(SW_PAGE) as *mut u32, PATTERN) };
    // DCISW, DCCSW and DCCISW are MCR p15, 0, Rt, c7, CRm, 2 with CRm 6, 10 and 14.
    macro_rules! by_set_way {
        ($crm:literal, $v:expr) => {{
            let at: u32;
            // SAFETY: cache maintenance by set/way on level 1 (bits 3:1 = 0): no memory is
            // changed architecturally; an UNDEF resumes after the instruction.
            unsafe { core::arch::asm!("adr {at}, 1f", concat!("1: mcr p15, 0, {v}, c7, ", $crm, ", 2"), "nop", at = out(reg) at, v = in(reg) $v, options(nostack)) };
            u64::from(at)
        }};
    }
    let walk = |v: u64| match op {
        SetWayOp::Isw => by_set_way!("c6", v as u32),
        SetWayOp::Csw => by_set_way!("c10", v as u32),
        SetWayOp::Cisw => by_set_way!("c14", v as u32),
    };
    // SAFETY: our own page.
    let intact = || unsafe { core::ptr::read_volatile(addr_of!(SW_PAGE) as *const u32) } == PATTERN;
    crate::cases::set_way_walk(l1_geometry(), walk, intact)
}

/// A CP15 register read `read` performs (returning the value and the instruction's address),
/// as the guest sees it: the value, or the exception it took.
fn observe_read(read: impl FnOnce() -> (u32, u32)) -> Observed {
    crate::exceptions::clear();
    let (v, at) = read();
    match crate::exceptions::last() {
        (_, Some(e)) => Observed::Exception { e, at: u64::from(at) },
        _ => Observed::NoException(i64::from(v)),
    }
}

/// ACTLR (MRC p15, 0, c1, c0, 1) as the guest reads it.
fn actlr_read() -> Observed {
    observe_read(|| {
        let (v, at): (u32, u32);
        // SAFETY: a register read; an UNDEF resumes after it.
        unsafe { core::arch::asm!("adr {at}, 1f", "mov {v}, #0", "1: mrc p15, 0, {v}, c1, c0, 1", "nop", at = out(reg) at, v = out(reg) v, options(nostack)) };
        (v, at)
    })
}

/// L2CTLR (MRC p15, 1, c9, c0, 2): implementation-defined c9 space, which HCR.TIDCP traps.
fn l2ctlr_read() -> Observed {
    observe_read(|| {
        let (v, at): (u32, u32);
        // SAFETY: a register read; an UNDEF resumes after it.
        unsafe { core::arch::asm!("adr {at}, 1f", "mov {v}, #0", "1: mrc p15, 1, {v}, c9, c0, 2", "nop", at = out(reg) at, v = out(reg) v, options(nostack)) };
        (v, at)
    })
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

/// The ARMv7-A-only rows.
pub static ARM32_CASES: &[Case] = &[
    Case { name: "cache.dc_isw", run: || dc_set_way(SetWayOp::Isw), expect: Expect::Recorded },
    Case { name: "cache.dc_csw", run: || dc_set_way(SetWayOp::Csw), expect: Expect::Recorded },
    Case { name: "cache.dc_cisw", run: || dc_set_way(SetWayOp::Cisw), expect: Expect::Recorded },
    Case { name: "cp15.actlr.read", run: actlr_read, expect: Expect::Recorded },
    Case { name: "cp15.actlr.write_ignored", run: actlr_write_then_read, expect: Expect::Recorded },
    Case { name: "cp15.l2ctlr.read", run: l2ctlr_read, expect: Expect::Recorded },
];
