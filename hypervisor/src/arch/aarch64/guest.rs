//! Running a guest at EL1: EL2 configuration for a domain, guest-virtual address translation
//! with the CPU's AT instructions, and exception injection.

use super::entry::TrapFrame;
use super::regs::isb;
use crate::sysreg;

/// HCR_EL2 while a guest runs: stage 2 on, SMC trapped, physical interrupts to EL2, set/way
/// cache ops upgraded, implementation-defined and auxiliary control registers trapped, the
/// feature ID registers trapped (TID3: guests see `crate::cpufeature`'s view), broadcast of
/// TLB/cache maintenance inner shareable, EL1 is AArch64. `cpufeat::hcr_bits` adds what the
/// CPU's features call for (pointer authentication, RAS).
///
/// WFI and WFE are trapped (TWI, TWE), as Xen 4.17 traps them by default: the hypervisor
/// decides what a vCPU's wait does (`domain::vcpu::on_wait`; trap.rs carries it out). With one
/// vCPU per physical CPU (smp.rs) a WFE goes on at once and a WFI with no interrupt waiting for
/// the vCPU becomes a WFI of its CPU at EL2, woken by any physical interrupt (its timers, the
/// GIC maintenance interrupt, the kick SGI another CPU sends after changing this vCPU's
/// interrupts), after which `gic::guest_entry` fills the list registers.
pub const HCR_GUEST: u64 = (1 << 0)  // VM
    | (1 << 1)                        // SWIO
    | (1 << 2)                        // PTW
    | (1 << 3) | (1 << 4) | (1 << 5)  // FMO, IMO, AMO
    | (1 << 9)                        // FB
    | (0b01 << 10)                    // BSU: inner shareable
    | (1 << 13)                       // TWI
    | (1 << 14)                       // TWE
    | (1 << 18)                       // TID3
    | (1 << 19)                       // TSC
    | (1 << 20)                       // TIDCP
    | (1 << 21)                       // TACR
    | (1 << 22)                       // TSW
    | (1 << 31);                      // RW

/// PSTATE a vCPU starts in, and that exceptions injected into EL1 enter with: EL1h, DAIF masked.
pub const SPSR_EL1H_MASKED: u64 = 0x3c5;

/// SCTLR_EL1 at vCPU reset: MMU and caches off, RES1 bits set.
pub const SCTLR_EL1_RESET: u64 = 0x30d0_0800;

/// Program the EL2 and EL1 registers for running vCPU `vcpu_id` of a domain whose stage 2 is
/// described by `vttbr`/`vtcr`.
pub fn configure(vttbr: u64, vtcr: u64, vcpu_id: u64) {
    sysreg!(write VTCR_EL2, vtcr);
    sysreg!(write VTTBR_EL2, vttbr);
    let midr = sysreg!(read MIDR_EL1);
    sysreg!(write VPIDR_EL2, midr);
    sysreg!(write VMPIDR_EL2, (1 << 31) | vcpu_id);
    sysreg!(write SCTLR_EL1, SCTLR_EL1_RESET);
    // Timers: physical counter readable, physical timer trapped and emulated (vtimer.rs).
    super::vtimer::configure_vcpu(vcpu_id);
    // FP/SIMD, debug and PMU are the guest's; SVE, SME, trace, AMU, SPE are trapped
    // (cpufeature.rs decides), and the vCPU's pointer-authentication keys start reset.
    super::cpufeat::configure_vcpu();
    sysreg!(write HSTR_EL2, 0);
    sysreg!(write HCR_EL2, HCR_GUEST | super::cpufeat::hcr_bits());
    isb();
    // SAFETY: invalidate any stage-1+2 TLB entries for this VMID left from before.
    unsafe { core::arch::asm!("dsb ishst", "tlbi vmalls12e1is", "dsb ish", "isb") };
}

/// Translate a guest virtual address of the running vCPU to a physical address with the
/// guest's current stage 1 and its stage 2 (`AT S12E1R`/`S12E1W`). `None` if either stage
/// faults. PAR_EL1 is the guest's register: it is preserved.
pub fn gva_to_pa(gva: u64, write: bool) -> Option<u64> {
    let saved = sysreg!(read PAR_EL1);
    // SAFETY: address translation instruction; result lands in PAR_EL1 only.
    unsafe {
        if write {
            core::arch::asm!("at s12e1w, {}", in(reg) gva, options(nostack, preserves_flags));
        } else {
            core::arch::asm!("at s12e1r, {}", in(reg) gva, options(nostack, preserves_flags));
        }
    }
    isb();
    let par = sysreg!(read PAR_EL1);
    sysreg!(write PAR_EL1, saved);
    if par & 1 != 0 {
        None
    } else {
        Some((par & 0x0000_ffff_ffff_f000) | (gva & 0xfff))
    }
}

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
