//! Running a guest in Non-secure PL1 (SVC mode first): HYP configuration for a domain, guest
//! virtual address translation with the CPU's ATS12NSO* operations, and exception injection
//! into the guest's own AArch32 modes.

use super::entry::TrapFrame;
use super::regs::{isb, Cnthctl, Cntvoff, CntvCtl, CnthpCtl, Hcr, Hstr, Midr, Par, Sctlr, Vbar, Vmpidr, Vpidr, Vtcr, Vttbr};

/// HCR while a guest runs: stage 2 on (VM), set/way invalidates upgraded to clean+invalidate
/// (SWIO), stage-1 walks to device memory fault (PTW), physical FIQ/IRQ/asynchronous aborts to
/// HYP (FMO/IMO/AMO), barriers and TLB/cache maintenance broadcast inner shareable (FB,
/// BSU), SMC trapped (TSC: guests reach PSCI through the hypervisor), set/way maintenance
/// trapped (TSW: it reaches only this CPU's caches and names no address; setway.rs), ACTLR
/// accesses trapped (TAC: reads see the CPU's value, writes are ignored, as on Xen 4.17) and
/// the implementation-defined c9-c11 registers trapped (TIDCP: UNDEF, as on Xen 4.17).
///
/// WFI/WFE are not trapped: each vCPU has a physical CPU of its own, as on AArch64.
pub const HCR_GUEST: u32 = (1 << 0) // VM
    | (1 << 1)                      // SWIO
    | (1 << 2)                      // PTW
    | (1 << 3) | (1 << 4) | (1 << 5) // FMO, IMO, AMO
    | (1 << 9)                      // FB
    | (0b01 << 10)                  // BSU: inner shareable
    | (1 << 19)                     // TSC
    | (1 << 20)                     // TIDCP
    | (1 << 21)                     // TAC
    | super::setway::HCR_TSW;

/// CPSR a vCPU starts in (and the zImage protocol asks for): SVC mode, A32, A/I/F masked.
pub const CPSR_SVC_MASKED: u32 = 0x1d3;

/// SCTLR at vCPU reset (Cortex-A15's reset value): MMU, caches and alignment checks off.
const SCTLR_RESET: u32 = 0x00c5_0078;
/// CNTHCTL for a guest: PL1PCTEN (physical counter readable), PL1PCEN clear (the PL1 physical
/// timer traps and is emulated: vtimer.rs).
const CNTHCTL_GUEST: u32 = 0b01;

/// Program the HYP and PL1 registers for running vCPU `vcpu_id` of a domain whose stage 2 is
/// `vttbr`/`vtcr`.
pub fn configure(vttbr: u64, vtcr: u32, vcpu_id: u32) {
    Vtcr::write(vtcr);
    Vttbr::write(vttbr);
    Vpidr::write(Midr::read());
    // Multiprocessor format (bit 31), Aff0 = the vCPU.
    Vmpidr::write((1 << 31) | (vcpu_id & 0xff));
    Sctlr::write(SCTLR_RESET);
    Cnthctl::write(CNTHCTL_GUEST);
    Cntvoff::write(0);
    CntvCtl::write(0);
    CnthpCtl::write(0);
    super::vtimer::reset_vcpu();
    Hstr::write(0);
    Hcr::write(HCR_GUEST);
    isb();
    // SAFETY: invalidate every non-HYP TLB entry (TLBIALLNSNHIS) left from before.
    unsafe { core::arch::asm!("dsb ishst", "mcr p15, 4, {z}, c8, c3, 4", "dsb ish", "isb", z = in(reg) 0u32) };
}

/// Translate a guest virtual address of the running vCPU to a physical address with the
/// guest's current stage 1 and its stage 2 (ATS12NSOPR/ATS12NSOPW). `None` if either stage
/// faults or the address does not fit 32 bits. PAR is the guest's register: it is preserved.
pub fn gva_to_pa(gva: u64, write: bool) -> Option<u64> {
    let va = u32::try_from(gva).ok()?;
    let saved = Par::read();
    // SAFETY: address translation operation; the result lands in PAR only.
    unsafe {
        if write {
            core::arch::asm!("mcr p15, 0, {}, c7, c8, 5", in(reg) va, options(nostack, preserves_flags));
        } else {
            core::arch::asm!("mcr p15, 0, {}, c7, c8, 4", in(reg) va, options(nostack, preserves_flags));
        }
    }
    isb();
    let par = Par::read();
    Par::write(saved);
    if par & 1 != 0 {
        return None;
    }
    // Bit 11 says which format the result has: long descriptor (PA[39:12]) or short (PA[31:12]).
    let pa = if par & (1 << 11) != 0 { par & 0xff_ffff_f000 } else { par & 0xffff_f000 };
    Some(pa | (gva & 0xfff))
}

/// Processor modes (CPSR.M).
pub mod mode {
    pub const USR: u32 = 0x10;
    pub const FIQ: u32 = 0x11;
    pub const IRQ: u32 = 0x12;
    pub const SVC: u32 = 0x13;
    pub const ABT: u32 = 0x17;
    pub const HYP: u32 = 0x1a;
    pub const UND: u32 = 0x1b;
    pub const SYS: u32 = 0x1f;
}

const CPSR_T: u32 = 1 << 5;
const CPSR_I: u32 = 1 << 7;
const CPSR_A: u32 = 1 << 8;
const CPSR_E: u32 = 1 << 9;
/// IT[7:2] (bits 15:10), IT[1:0] (26:25) and J (24): cleared on exception entry.
const CPSR_IT_J: u32 = (0x3f << 10) | (0b11 << 25) | (1 << 24);

/// Which exception the guest takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exception {
    Undef,
    PrefetchAbort,
    DataAbort,
}

/// Make the guest take `what` as the hardware would: its SPSR and LR in the target mode
/// (LR = `lr`, the value the architecture gives it: undef = the next instruction, prefetch
/// abort = the faulting one + 4, data abort = the faulting one + 8), the new CPSR (mode,
/// interrupts masked as the exception masks them, Thumb and endianness from SCTLR.TE/EE), and
/// the PC at the vector (SCTLR.V: high vectors, else VBAR).
pub fn inject(frame: &mut TrapFrame, what: Exception, lr: u32) {
    let (new_mode, offset, mask) = match what {
        Exception::Undef => (mode::UND, 0x04, CPSR_I),
        Exception::PrefetchAbort => (mode::ABT, 0x0c, CPSR_I | CPSR_A),
        Exception::DataAbort => (mode::ABT, 0x10, CPSR_I | CPSR_A),
    };
    let sctlr = Sctlr::read();
    // SAFETY: writes the target mode's banked SPSR and LR (MSR banked register, virtualization
    // extensions): registers of the guest only, which it gets as the exception defines them.
    unsafe {
        if new_mode == mode::UND {
            core::arch::asm!(".arch_extension virt", "msr spsr_und, {s}", "msr lr_und, {l}", s = in(reg) frame.spsr, l = in(reg) lr);
        } else {
            core::arch::asm!(".arch_extension virt", "msr spsr_abt, {s}", "msr lr_abt, {l}", s = in(reg) frame.spsr, l = in(reg) lr);
        }
    }
    let mut cpsr = (frame.spsr & !(0x1f | CPSR_T | CPSR_E | CPSR_IT_J)) | new_mode | mask;
    if sctlr & (1 << 30) != 0 {
        cpsr |= CPSR_T;
    }
    if sctlr & (1 << 25) != 0 {
        cpsr |= CPSR_E;
    }
    let base = if sctlr & (1 << 13) != 0 { 0xffff_0000 } else { Vbar::read() };
    frame.spsr = cpsr;
    frame.elr = base.wrapping_add(offset);
}

/// Whether the trapped guest context was in user mode (PL0).
pub fn from_user(frame: &TrapFrame) -> bool {
    frame.spsr & 0x1f == mode::USR
}

/// Whether the guest runs Thumb code at the trap.
pub fn in_thumb(frame: &TrapFrame) -> bool {
    frame.spsr & CPSR_T != 0
}

/// Fault status values the guest's DFSR/IFSR get for an injected abort: a synchronous
/// external abort, in the format the guest's TTBCR.EAE selects (long: bit 9 set, status 0x10;
/// short: FS = 0b01000), with WnR (bit 11) for writes.
pub fn abort_fsr(long_format: bool, write: bool) -> u32 {
    let fs = if long_format { (1 << 9) | 0x10 } else { 0x08 };
    fs | if write { 1 << 11 } else { 0 }
}

/// A banked register of the trapped guest context: `reg` 13 (SP) or 14 (LR) of the mode
/// `frame.spsr` names. User and System mode share LR_usr, which the trap frame holds (HYP
/// mode banks no LR of its own). `None` for a mode a guest cannot be in.
pub fn read_banked(frame: &TrapFrame, reg: usize) -> Option<u32> {
    let v: u32;
    macro_rules! mrs {
        ($r:literal) => {
            // SAFETY: reads a banked register of the guest's (MRS banked, virtualization
            // extensions); no memory effects.
            unsafe { core::arch::asm!(".arch_extension virt", concat!("mrs {}, ", $r), out(reg) v, options(nomem, nostack, preserves_flags)) }
        };
    }
    match (frame.spsr & 0x1f, reg) {
        (mode::USR | mode::SYS, 14) => return Some(frame.lr_usr),
        (mode::USR | mode::SYS, 13) => mrs!("sp_usr"),
        (mode::SVC, 13) => mrs!("sp_svc"),
        (mode::SVC, 14) => mrs!("lr_svc"),
        (mode::ABT, 13) => mrs!("sp_abt"),
        (mode::ABT, 14) => mrs!("lr_abt"),
        (mode::UND, 13) => mrs!("sp_und"),
        (mode::UND, 14) => mrs!("lr_und"),
        (mode::IRQ, 13) => mrs!("sp_irq"),
        (mode::IRQ, 14) => mrs!("lr_irq"),
        (mode::FIQ, 13) => mrs!("sp_fiq"),
        (mode::FIQ, 14) => mrs!("lr_fiq"),
        _ => return None,
    }
    Some(v)
}

/// Write `v` to banked register `reg` (13 or 14) of the trapped guest context's mode (see
/// [`read_banked`]). False for a mode a guest cannot be in.
pub fn write_banked(frame: &mut TrapFrame, reg: usize, v: u32) -> bool {
    macro_rules! msr {
        ($r:literal) => {
            // SAFETY: writes a banked register of the guest's, as the emulated load defines.
            unsafe { core::arch::asm!(".arch_extension virt", concat!("msr ", $r, ", {}"), in(reg) v, options(nomem, nostack, preserves_flags)) }
        };
    }
    match (frame.spsr & 0x1f, reg) {
        (mode::USR | mode::SYS, 14) => frame.lr_usr = v,
        (mode::USR | mode::SYS, 13) => msr!("sp_usr"),
        (mode::SVC, 13) => msr!("sp_svc"),
        (mode::SVC, 14) => msr!("lr_svc"),
        (mode::ABT, 13) => msr!("sp_abt"),
        (mode::ABT, 14) => msr!("lr_abt"),
        (mode::UND, 13) => msr!("sp_und"),
        (mode::UND, 14) => msr!("lr_und"),
        (mode::IRQ, 13) => msr!("sp_irq"),
        (mode::IRQ, 14) => msr!("lr_irq"),
        (mode::FIQ, 13) => msr!("sp_fiq"),
        (mode::FIQ, 14) => msr!("lr_fiq"),
        _ => return false,
    }
    true
}
