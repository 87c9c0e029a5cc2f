//! Exceptions injected into a guest at EL1: the return state and syndrome its handler sees,
//! and the ESR values xenith reports (as Xen 4.17 reports them).

use super::entry::TrapFrame;
use crate::sysreg;

/// PSTATE a vCPU starts in, and that exceptions injected into EL1 enter with: EL1h, DAIF masked.
pub const SPSR_EL1H_MASKED: u64 = 0x3c5;

/// Make the guest take a synchronous exception at EL1 as if the hardware had raised it:
/// ESR_EL1 = `esr`, FAR_EL1 = `far` (when given), return state saved in ELR/SPSR_EL1.
/// `return_to` is the address the guest's handler sees in ELR_EL1.
pub fn inject_sync(frame: &mut TrapFrame, esr: u64, far: Option<u64>, return_to: u64) {
    let offset = match frame.spsr & 0x1f {
        0b00000 => 0x400,         // EL0 (AArch64): lower EL vector
        m if m & 0x10 != 0 => 0x600, // EL0 in AArch32 (EL1 is always AArch64): lower EL, AArch32
        0b00100 => 0x000,         // EL1t
        _ => 0x200,               // EL1h
    };
    sysreg!(write ELR_EL1, return_to);
    sysreg!(write SPSR_EL1, frame.spsr);
    sysreg!(write ESR_EL1, esr);
    if let Some(f) = far {
        sysreg!(write FAR_EL1, f);
    }
    frame.elr = sysreg!(read VBAR_EL1) + offset;
    frame.spsr = SPSR_EL1H_MASKED;
}

/// True when the trapped guest context was running at EL0 (AArch64, or AArch32: its modes
/// at EL1 do not exist here, HCR_EL2.RW making EL1 AArch64).
pub fn from_el0(frame: &TrapFrame) -> bool {
    frame.spsr & 0xf == 0 || frame.spsr & 0x10 != 0
}

/// ESR values for injected exceptions.
pub mod esr {
    const IL: u64 = 1 << 25;
    /// Unknown reason (an UNDEFINED instruction).
    pub fn undef() -> u64 {
        IL
    }
    /// A data abort, reported as Xen 4.17 reports one it injects: the exception class and IL
    /// only (ISS 0), e.g. 0x96000000 from EL1.
    pub fn data_abort(from_el0: bool) -> u64 {
        let ec: u64 = if from_el0 { 0x24 } else { 0x25 };
        (ec << 26) | IL
    }
    /// An instruction abort, likewise.
    pub fn prefetch_abort(from_el0: bool) -> u64 {
        let ec: u64 = if from_el0 { 0x20 } else { 0x21 };
        (ec << 26) | IL
    }
}
