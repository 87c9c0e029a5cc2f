//! Entry from a firmware that stays in the Secure world (the Chromebook Snow's verified-boot
//! U-Boot; QEMU virt with `secure=on` booting a bare image): the boot CPU arrives in Secure SVC
//! mode, and xenith makes itself non-secure HYP mode.
//!
//! `xenith_secure_to_hyp` (called by the entry code in Secure SVC, MMU off) installs a small
//! monitor (MVBAR), gives the non-secure side the FPU (NSACR CP10/CP11), and issues an SMC whose
//! handler sets SCR (NS, HCE, FW, AW; IRQ/FIQ/aborts taken in the non-secure world) and returns
//! in HYP mode. The monitor stays: what only the Secure world may change is asked of it later,
//! once the device tree is read, by SMCs with xenith's own function IDs (`GIC_GROUPS`: every
//! interrupt of the distributor and this CPU's banked ones to Group 1, the non-secure group,
//! priority mask fully open; `SET_CNTFRQ`, the counter frequency register only Secure PL1 can
//! write). Any other SMC (PSCI on a board without PSCI firmware) returns NOT_SUPPORTED (-1).
//! The monitor keeps no state and no stack: each call uses r0-r3 only.

use core::arch::global_asm;

/// Monitor calls (SMC32 fast calls in the SiP range, which QEMU's PSCI emulation leaves to EL3).
pub const ENTER_HYP: u32 = 0x8200_ff00;
pub const GIC_GROUPS: u32 = 0x8200_ff01;
pub const SET_CNTFRQ: u32 = 0x8200_ff02;
/// SCR: NS (bit 0), FW (4) and AW (5) so the non-secure side owns CPSR.F/A, HCE (8).
pub const SCR_NONSECURE_HYP: u32 = 0x131;
/// NSACR: CP10 and CP11 (VFP/Advanced SIMD) usable from the non-secure world.
pub const NSACR_FPU: u32 = 0xc00;
/// CPSR for the return to HYP mode with A, I and F masked.
pub const CPSR_HYP_MASKED: u32 = 0x1da;

global_asm!(
    r#"
    .syntax unified
    .arch_extension sec
    .arch_extension virt
    .arm
    .section .text.monitor, "ax"

// xenith_secure_to_hyp: from Secure SVC (MMU off) to non-secure HYP. Returns r0 = 1 in HYP mode,
// or r0 = 0 still in SVC when the CPU lacks the Security or Virtualization Extensions.
// Clobbers r0-r4 and r12; the caller's other registers survive (SVC's banked LR does not
// exist in HYP mode, so the return address travels in r12).
    .global xenith_secure_to_hyp
xenith_secure_to_hyp:
    mov     r12, lr
    mrc     p15, 0, r0, c0, c1, 1   // ID_PFR1
    tst     r0, #0xf0               // Security Extensions
    tstne   r0, #0xf000             // Virtualization Extensions
    moveq   r0, #0
    bxeq    r12
    ldr     r0, =xenith_monitor_vectors
    mcr     p15, 0, r0, c12, c0, 1  // MVBAR
    ldr     r0, ={nsacr}
    mcr     p15, 0, r0, c1, c1, 2   // NSACR
    isb
    ldr     r0, ={enter_hyp}
    smc     #0                      // returns here in non-secure HYP mode
    mov     r0, #1
    bx      r12

    .ltorg

// Monitor vectors: only the SMC entry (0x08) is used; anything else is a bug that parks.
    .balign 32
xenith_monitor_vectors:
    b       .                       // not used
    b       .                       // not used
    b       xenith_monitor_smc
    b       .                       // prefetch abort
    b       .                       // data abort
    b       .                       // not used
    b       .                       // IRQ (SCR.IRQ = 0: never routed here)
    b       .                       // FIQ (SCR.FIQ = 0: never routed here)

// In Monitor mode (always Secure, MMU off): r0 = function ID, r1-r2 its arguments; returns to
// the caller with r0 = result. Uses r0-r3 only.
xenith_monitor_smc:
    ldr     r3, ={enter_hyp}
    cmp     r0, r3
    beq     1f
    ldr     r3, ={gic_groups}
    cmp     r0, r3
    beq     2f
    ldr     r3, ={set_cntfrq}
    cmp     r0, r3
    beq     4f
    mvn     r0, #0                  // NOT_SUPPORTED
    movs    pc, lr

1:  // ENTER_HYP: the non-secure world with HYP mode enabled, back to the caller in HYP mode.
    ldr     r3, ={scr}
    mcr     p15, 0, r3, c1, c1, 0   // SCR
    isb
    ldr     r3, ={cpsr_hyp}
    msr     spsr_cxsf, r3
    movs    pc, lr

2:  // GIC_GROUPS(r1 = GICD, r2 = GICC): IGROUPR0..n all ones, GICC_PMR = 0xff.
    ldr     r3, [r1, #4]            // GICD_TYPER
    and     r3, r3, #0x1f           // ITLinesNumber: (n + 1) IGROUPR registers
    add     r3, r3, #1
    add     r1, r1, #0x80           // GICD_IGROUPR0
    mvn     r0, #0
3:  str     r0, [r1], #4
    subs    r3, r3, #1
    bne     3b
    mov     r0, #0xff
    str     r0, [r2, #4]            // GICC_PMR
    dsb     sy
    mov     r0, #0
    movs    pc, lr

4:  // SET_CNTFRQ(r1 = Hz).
    mcr     p15, 0, r1, c14, c0, 0  // CNTFRQ
    isb
    mov     r0, #0
    movs    pc, lr

    .ltorg
"#,
    nsacr = const NSACR_FPU,
    enter_hyp = const ENTER_HYP,
    gic_groups = const GIC_GROUPS,
    set_cntfrq = const SET_CNTFRQ,
    scr = const SCR_NONSECURE_HYP,
    cpsr_hyp = const CPSR_HYP_MASKED,
);

/// Whether the boot CPU came through `xenith_secure_to_hyp` (the monitor is xenith's).
static OWNED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Record that the entry code installed the monitor (called once, before anything asks it).
pub fn set_owned() {
    OWNED.store(true, core::sync::atomic::Ordering::Relaxed);
}

/// The monitor is xenith's: the CPU was entered in Secure SVC mode.
pub fn owned() -> bool {
    OWNED.load(core::sync::atomic::Ordering::Relaxed)
}

fn call(fid: u32, a1: u32, a2: u32) -> u32 {
    let mut r0 = fid;
    // SAFETY: an SMC to xenith's own monitor (installed by the entry code), which touches only
    // r0-r3 and the GIC or CNTFRQ as the function ID says, and returns to the next instruction.
    unsafe {
        core::arch::asm!(".arch_extension sec", "smc #0", inout("r0") r0, inout("r1") a1 => _, inout("r2") a2 => _,
            out("r3") _, options(nostack))
    };
    r0
}

/// The GIC the boot CPU moved to the non-secure group, and the counter frequency it
/// programmed: what a secondary that also arrives in Secure SVC mode repeats for its own banked
/// state (`secondary_to_nonsecure`).
static GIC: [core::sync::atomic::AtomicU32; 2] = [const { core::sync::atomic::AtomicU32::new(0) }; 2];
static CNTFRQ: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// Every interrupt of the GIC at `gicd`/`gicc` to the non-secure group (the distributor's
/// shared ones and this CPU's banked ones), this CPU's priority mask open: a GIC with the
/// Security Extensions resets with everything Secure, which HYP mode can neither see nor take.
/// Nothing to do unless xenith owns the monitor.
pub fn gic_to_nonsecure(gicd: u64, gicc: u64) -> Result<(), &'static str> {
    if !owned() {
        return Ok(());
    }
    let (Ok(d), Ok(c)) = (u32::try_from(gicd), u32::try_from(gicc)) else { return Err("the GIC is above 4 GiB") };
    match call(GIC_GROUPS, d, c) {
        0 => {
            GIC[0].store(d, core::sync::atomic::Ordering::Relaxed);
            GIC[1].store(c, core::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
        _ => Err("the monitor refused GIC_GROUPS"),
    }
}

/// On a secondary CPU that `xenith_sysram_secondary_entry` switched from Secure SVC to
/// non-secure HYP (its own MVBAR, NSACR and SCR: banked per CPU): its banked GIC interrupts
/// (SGIs, PPIs) to the non-secure group and its priority mask open, and its CNTFRQ (a per-CPU
/// register) programmed if the firmware left it 0, as the boot CPU's were.
pub fn secondary_to_nonsecure() -> Result<(), &'static str> {
    let (d, c) = (GIC[0].load(core::sync::atomic::Ordering::Relaxed), GIC[1].load(core::sync::atomic::Ordering::Relaxed));
    if d == 0 {
        return Err("the boot CPU never moved the GIC to the non-secure group");
    }
    if call(GIC_GROUPS, d, c) != 0 {
        return Err("the monitor refused GIC_GROUPS");
    }
    let hz = CNTFRQ.load(core::sync::atomic::Ordering::Relaxed);
    if super::regs::Cntfrq::read() == 0 && hz != 0 && call(SET_CNTFRQ, hz, 0) != 0 {
        return Err("the monitor refused SET_CNTFRQ");
    }
    Ok(())
}

/// Program CNTFRQ (Secure PL1 only) through the monitor; false when xenith does not own it.
pub fn set_cntfrq(hz: u32) -> bool {
    let done = owned() && call(SET_CNTFRQ, hz, 0) == 0;
    if done {
        CNTFRQ.store(hz, core::sync::atomic::Ordering::Relaxed);
    }
    done
}
