//! What the CPU looks like from the guest: the feature ID registers it reads (which a
//! hypervisor trapping them with HCR_EL2.TID3 answers), and what happens when it uses a
//! feature: SVE and SME (hidden by Xen 4.17: UNDEF expected, never a dead domain), pointer
//! authentication keys and PACGA, the activity monitors. The values depend on the CPU QEMU
//! models; the conformance diff compares them with Xen 4.17's on the same CPU.

use crate::cases::{Case, Expect, Observed};
use crate::exceptions::{self, EC_UNKNOWN, ESR_IL};
use core::arch::asm;

/// ESR_EL1 of an UNDEFINED instruction (EC 0, IL).
const ESR_UNDEF: u64 = (EC_UNKNOWN as u64) << 26 | ESR_IL;

macro_rules! read_sysreg {
    ($name:literal) => {{
        let v: u64;
        // SAFETY: an ID register read has no side effects (and traps to the hypervisor at most).
        unsafe { asm!(concat!("mrs {}, ", $name), out(reg) v, options(nomem, nostack, preserves_flags)) };
        Observed::Hex(v)
    }};
}

/// Run `f` (which executes one instruction that may trap, followed by a `nop`) and report
/// the exception it took, or the value it left.
fn trapping(f: impl FnOnce() -> (u64, i64)) -> Observed {
    exceptions::clear();
    let (at, v) = f();
    match exceptions::last() {
        (_, Some(e)) => Observed::Exception { e, at },
        (_, None) => Observed::NoException(v),
    }
}

/// CPACR_EL1 with FP/SIMD, SVE (ZEN, bits 17:16) and SME (SMEN, bits 25:24) enabled at EL1,
/// so that an SVE or SME instruction reaches the hypervisor's trap (CPTR_EL2) instead of
/// EL1's own. On a CPU without them the bits are ignored.
const CPACR_ALL: u64 = 3 << 20 | 3 << 16 | 3 << 24;
const CPACR_FP: u64 = 3 << 20;

fn with_cpacr<T>(v: u64, f: impl FnOnce() -> T) -> T {
    // SAFETY: only the FP/SVE/SME enables change; FP stays enabled throughout.
    unsafe { asm!("msr cpacr_el1, {}", "isb", in(reg) v, options(nostack)) };
    let r = f();
    // SAFETY: as above: back to FP/SIMD only.
    unsafe { asm!("msr cpacr_el1, {}", "isb", in(reg) CPACR_FP, options(nostack)) };
    r
}

/// `rdvl x0, #1` (SVE): the vector length in bytes, or UNDEF where SVE is not offered.
fn sve_rdvl() -> Observed {
    with_cpacr(CPACR_ALL, || {
        trapping(|| {
            let (at, x0): (u64, i64);
            // SAFETY: one SVE instruction (as its encoding, for assemblers without SVE); the
            // vector resumes past it on an exception.
            unsafe { asm!("adr {at}, 1f", "1: .inst 0x04bf5020", "nop", at = out(reg) at, inlateout("x0") 0i64 => x0, options(nostack)) };
            (at, x0)
        })
    })
}

/// `mrs x0, ZCR_EL1` (SVE's control register).
fn zcr_el1() -> Observed {
    with_cpacr(CPACR_ALL, || {
        trapping(|| {
            let (at, x0): (u64, i64);
            // SAFETY: a register read that may trap; the vector resumes past it.
            unsafe { asm!("adr {at}, 1f", "1: mrs x0, s3_0_c1_c2_0", "nop", at = out(reg) at, out("x0") x0, options(nostack)) };
            (at, x0)
        })
    })
}

/// `mrs x0, SMCR_EL1` (SME's control register).
fn smcr_el1() -> Observed {
    with_cpacr(CPACR_ALL, || {
        trapping(|| {
            let (at, x0): (u64, i64);
            // SAFETY: as in `zcr_el1`.
            unsafe { asm!("adr {at}, 1f", "1: mrs x0, s3_0_c1_c2_6", "nop", at = out(reg) at, out("x0") x0, options(nostack)) };
            (at, x0)
        })
    })
}

/// Write a pattern to APIAKeyLo_EL1 and read it back: the value read, or the exception
/// (UNDEF where pointer authentication is not offered).
fn pauth_key_round_trip() -> Observed {
    const PATTERN: i64 = 0x0123_4567_89ab_cdef;
    let wrote = trapping(|| {
        let at: u64;
        // SAFETY: the key register is the guest's own; it uses no pointer authentication.
        unsafe { asm!("adr {at}, 1f", "1: msr s3_0_c2_c1_0, {v}", "nop", at = out(reg) at, v = in(reg) PATTERN, options(nostack)) };
        (at, 0)
    });
    if !matches!(wrote, Observed::NoException(_)) {
        return wrote;
    }
    trapping(|| {
        let (at, x0): (u64, i64);
        // SAFETY: as above, a read.
        unsafe { asm!("adr {at}, 1f", "1: mrs x0, s3_0_c2_c1_0", "nop", at = out(reg) at, out("x0") x0, options(nostack)) };
        (at, x0)
    })
}

/// `pacga x0, x1, x2` (the generic key; not gated by SCTLR_EL1): 1 when it produced a
/// code in the top half, or the exception.
fn pacga() -> Observed {
    match trapping(|| {
        let (at, x0): (u64, i64);
        // SAFETY: one instruction that computes into x0; the vector resumes past it.
        unsafe {
            asm!("adr {at}, 1f", "1: .inst 0x9ac23020", "nop", at = out(reg) at, inlateout("x0") 0i64 => x0,
                 in("x1") 0x1234u64, in("x2") 0x5678u64, options(nostack))
        };
        (at, x0)
    }) {
        Observed::NoException(v) => Observed::NoException(i64::from(v as u64 >> 32 != 0)),
        o => o,
    }
}

/// `mrs x0, AMCR_EL0` (activity monitors, hidden by Xen 4.17).
fn amcr_el0() -> Observed {
    trapping(|| {
        let (at, x0): (u64, i64);
        // SAFETY: as in `zcr_el1`.
        unsafe { asm!("adr {at}, 1f", "1: mrs x0, s3_3_c13_c2_0", "nop", at = out(reg) at, out("x0") x0, options(nostack)) };
        (at, x0)
    })
}

/// UNDEF, reported at the instruction (ELR = the instruction).
const UNDEF_AT: Expect = Expect::Exception { esr: ESR_UNDEF, elr_offset: 0 };

pub static CPU_CASES: &[Case] = &[
    Case { name: "cpu.id.aa64pfr0", run: || read_sysreg!("s3_0_c0_c4_0"), expect: Expect::Recorded },
    Case { name: "cpu.id.aa64pfr1", run: || read_sysreg!("s3_0_c0_c4_1"), expect: Expect::Recorded },
    Case { name: "cpu.id.aa64zfr0", run: || read_sysreg!("s3_0_c0_c4_4"), expect: Expect::Eq(0) },
    Case { name: "cpu.id.aa64smfr0", run: || read_sysreg!("s3_0_c0_c4_5"), expect: Expect::Eq(0) },
    Case { name: "cpu.id.aa64dfr0", run: || read_sysreg!("s3_0_c0_c5_0"), expect: Expect::Recorded },
    Case { name: "cpu.id.aa64isar0", run: || read_sysreg!("s3_0_c0_c6_0"), expect: Expect::Recorded },
    Case { name: "cpu.id.aa64isar1", run: || read_sysreg!("s3_0_c0_c6_1"), expect: Expect::Recorded },
    Case { name: "cpu.id.aa64isar2", run: || read_sysreg!("s3_0_c0_c6_2"), expect: Expect::Recorded },
    Case { name: "cpu.id.aa64mmfr0", run: || read_sysreg!("s3_0_c0_c7_0"), expect: Expect::Recorded },
    Case { name: "cpu.id.aa64mmfr1", run: || read_sysreg!("s3_0_c0_c7_1"), expect: Expect::Recorded },
    Case { name: "cpu.id.aa64mmfr2", run: || read_sysreg!("s3_0_c0_c7_2"), expect: Expect::Recorded },
    // SVE and SME are hidden (Xen 4.17 too): their instructions and registers are UNDEFINED.
    Case { name: "cpu.sve.rdvl", run: sve_rdvl, expect: UNDEF_AT },
    Case { name: "cpu.sve.zcr_el1", run: zcr_el1, expect: UNDEF_AT },
    Case { name: "cpu.sme.smcr_el1", run: smcr_el1, expect: UNDEF_AT },
    // Pointer authentication: UNDEF on a CPU without it (cortex-a57); on one with it, Xen
    // 4.17 hides it and xenith offers it (the key reads back).
    Case { name: "cpu.pauth.key_round_trip", run: pauth_key_round_trip, expect: Expect::Recorded },
    Case { name: "cpu.pauth.pacga", run: pacga, expect: Expect::Recorded },
    Case { name: "cpu.amu.amcr_el0", run: amcr_el0, expect: UNDEF_AT },
];
