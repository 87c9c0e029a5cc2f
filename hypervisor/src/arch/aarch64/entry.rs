//! The arm64 Image header, the boot CPU's entry, the EL2 exception vectors and guest entry.
//!
//! Entry contract (Linux arm64 boot protocol, as QEMU `-kernel` and U-Boot `booti` honour it):
//! EL2, MMU off, x0 = physical address of the DTB. The image is linked at 0x40080000 (RAM base
//! + text_offset on QEMU virt); the entry code checks it runs there and parks otherwise.

use core::arch::global_asm;

/// Size of the per-CPU EL2 stack.
pub const STACK_SIZE: usize = 64 * 1024;

#[repr(C, align(16))]
pub struct Stack(pub [u8; STACK_SIZE]);

/// The boot CPU's EL2 stack. Guest traps start on a fresh frame at its top.
#[no_mangle]
pub static mut BOOT_STACK: Stack = Stack([0; STACK_SIZE]);

/// General-purpose registers of the interrupted guest plus ELR/SPSR, as the vectors save them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TrapFrame {
    pub x: [u64; 31],
    pub elr: u64,
    pub spsr: u64,
    _pad: u64,
}

impl TrapFrame {
    pub const ZERO: TrapFrame = TrapFrame { x: [0; 31], elr: 0, spsr: 0, _pad: 0 };
}

/// ESR_EL2 of `HVC #0xEA1` from AArch64 (EC 0x16, IL, ISS = the immediate, Xen's tag): the
/// vectors send it to the hypercall path (hvc.rs) before saving the full frame.
pub const HVC_XEN_ESR: u32 = (0x16 << 26) | (1 << 25) | guest_abi::hypercall::XEN_HYPERCALL_TAG as u32;

/// Bytes the vectors reserve for a `TrapFrame` (16-aligned).
pub const FRAME_SIZE: usize = 34 * 8;
const _: () = assert!(core::mem::size_of::<TrapFrame>() == FRAME_SIZE);

global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    // arm64 Image header (Documentation/arch/arm64/booting.rst layout).
    b       1f                      // code0
    .long   0                       // code1
    .quad   0x80000                 // text_offset
    .quad   __image_size            // image_size (includes BSS)
    .quad   0x2                     // flags: LE, 4 KiB pages, 2 MiB-aligned base near RAM start
    .quad   0, 0, 0                 // res2..res4
    .ascii  "ARM\x64"               // magic
    .long   0                       // res5
1:
    mov     x19, x0                 // DTB
    mrs     x1, CurrentEL
    cmp     x1, #(2 << 2)
    b.ne    .Lpark                  // not entered at EL2: nothing we can do
    adr     x1, _start
    ldr     x2, =_start
    cmp     x1, x2
    b.ne    .Lpark                  // not loaded at the link address
    mrs     x1, mpidr_el1
    and     x1, x1, #0xff
    cbnz    x1, .Lpark              // secondaries come up through PSCI CPU_ON later

    // Zero BSS (MMU off: aligned 8-byte stores only).
    ldr     x1, =__bss_start
    ldr     x2, =__bss_end
2:  cmp     x1, x2
    b.hs    3f
    str     xzr, [x1], #8
    b       2b
3:
    ldr     x1, =BOOT_STACK
    add     x1, x1, #{stack_size}
    mov     sp, x1
    ldr     x1, =el2_vectors
    msr     vbar_el2, x1
    isb
    mov     x0, x19
    bl      xenith_boot_el2
.Lpark:
    msr     daifset, #0xf
    wfe
    b       .Lpark

    .ltorg

// ---------------------------------------------------------------------------------------
// EL2 vectors. Traps from the guest save a TrapFrame on the EL2 stack and call Rust.
    .macro  SAVE_FRAME
    sub     sp, sp, #{frame}
    stp     x0, x1, [sp, #0 * 8]
    stp     x2, x3, [sp, #2 * 8]
    stp     x4, x5, [sp, #4 * 8]
    stp     x6, x7, [sp, #6 * 8]
    stp     x8, x9, [sp, #8 * 8]
    stp     x10, x11, [sp, #10 * 8]
    stp     x12, x13, [sp, #12 * 8]
    stp     x14, x15, [sp, #14 * 8]
    stp     x16, x17, [sp, #16 * 8]
    stp     x18, x19, [sp, #18 * 8]
    stp     x20, x21, [sp, #20 * 8]
    stp     x22, x23, [sp, #22 * 8]
    stp     x24, x25, [sp, #24 * 8]
    stp     x26, x27, [sp, #26 * 8]
    stp     x28, x29, [sp, #28 * 8]
    mrs     x0, elr_el2
    mrs     x1, spsr_el2
    stp     x30, x0, [sp, #30 * 8]
    str     x1, [sp, #32 * 8]
    .endm

    .macro  VECTOR target
    .balign 0x80
    b       \target
    .endm

    // On every exception from a guest, before the hypervisor takes any indirect branch: the
    // speculation barriers spectre.rs chose (XENITH_SPECTRE_ENTRY; nothing on most CPUs).
    // x0 and x1 are already saved in the frame at sp; x2/x3 are saved around a firmware call
    // (SMCCC 1.1 preserves x4-x17).
    // The firmware call 0x8000_<fid_lo> when flag bit \bit (in w0) is set; w0 holds the flags
    // again afterwards.
    .macro  SPECTRE_FW_CALL bit, fid_lo
    tbz     w0, #\bit, .Lspectre_fw_skip\@
    stp     x2, x3, [sp, #2 * 8]
    mov     w0, #\fid_lo
    movk    w0, #0x8000, lsl #16
    smc     #0
    ldp     x2, x3, [sp, #2 * 8]
    adrp    x0, XENITH_SPECTRE_ENTRY
    ldr     w0, [x0, :lo12:XENITH_SPECTRE_ENTRY]
.Lspectre_fw_skip\@:
    .endm

    .macro  SPECTRE_ENTRY
    adrp    x0, XENITH_SPECTRE_ENTRY
    ldr     w0, [x0, :lo12:XENITH_SPECTRE_ENTRY]
    cbz     w0, .Lspectre_done\@
    SPECTRE_FW_CALL 0, 0x8000       // SMCCC_ARCH_WORKAROUND_1 (0x80008000)
    SPECTRE_FW_CALL 1, 0x3fff       // SMCCC_ARCH_WORKAROUND_3 (0x80003fff)
    tbz     w0, #2, .Lspectre_no_clrbhb\@
    hint    #22                     // CLRBHB
    isb
.Lspectre_no_clrbhb\@:
    ubfx    w0, w0, #8, #8          // history-loop iterations
    cbz     w0, .Lspectre_done\@
.Lspectre_loop\@:
    b       . + 4                   // each taken branch displaces one history entry
    subs    w0, w0, #1
    b.ne    .Lspectre_loop\@
    dsb     nsh
    isb
.Lspectre_done\@:
    .endm

    .section .text.vectors, "ax"
    .balign 0x800
    .global el2_vectors
el2_vectors:
    VECTOR  el2_cur_sp0             // current EL with SP_EL0: never used
    VECTOR  el2_cur_sp0
    VECTOR  el2_cur_sp0
    VECTOR  el2_cur_sp0
    VECTOR  el2_cur_sync            // current EL with SP_EL2: a hypervisor bug
    VECTOR  el2_cur_irq
    VECTOR  el2_cur_fiq
    VECTOR  el2_cur_serror
    VECTOR  el2_lower_sync          // lower EL, AArch64
    VECTOR  el2_lower_irq
    VECTOR  el2_lower_fiq
    VECTOR  el2_lower_serror
    VECTOR  el2_lower32_sync        // lower EL, AArch32: only EL0 can be (HCR_EL2.RW: EL1 is
    VECTOR  el2_lower_irq           // AArch64), and the guest may be told it can (ID_AA64PFR0.EL0);
    VECTOR  el2_lower_fiq           // the same handlers serve it (the frame holds r0-r14 in
    VECTOR  el2_lower_serror        // x0-x14, as the architecture maps them)

el2_lower_sync:
    // A Xen hypercall (ESR_EL2 = EC 0x16, IL, HVC #0xEA1) takes the short path (hvc.rs): only
    // the registers the Rust handler may clobber are saved (AAPCS64: x0-x18, x30; it keeps
    // x19-x29), into an `HvcRegs` at the bottom of a TrapFrame-sized slot.
    sub     sp, sp, #{frame}
    stp     x0, x1, [sp, #0 * 8]
    SPECTRE_ENTRY
    mrs     x0, esr_el2
    mov     w1, #{hvc_esr_lo}
    movk    w1, #{hvc_esr_hi}, lsl #16
    cmp     w0, w1
    b.ne    .Lfull_sync
    stp     x2, x3, [sp, #2 * 8]
    stp     x4, x5, [sp, #4 * 8]
    stp     x6, x7, [sp, #6 * 8]
    stp     x8, x9, [sp, #8 * 8]
    stp     x10, x11, [sp, #10 * 8]
    stp     x12, x13, [sp, #12 * 8]
    stp     x14, x15, [sp, #14 * 8]
    stp     x16, x17, [sp, #16 * 8]
    stp     x18, x30, [sp, #18 * 8]
    mov     x0, sp
    bl      xenith_hypercall
    ldp     x18, x30, [sp, #18 * 8]
    ldp     x16, x17, [sp, #16 * 8]
    ldp     x14, x15, [sp, #14 * 8]
    ldp     x12, x13, [sp, #12 * 8]
    ldp     x10, x11, [sp, #10 * 8]
    ldp     x8, x9, [sp, #8 * 8]
    ldp     x6, x7, [sp, #6 * 8]
    ldp     x4, x5, [sp, #4 * 8]
    ldp     x2, x3, [sp, #2 * 8]
    ldp     x0, x1, [sp, #0 * 8]
    add     sp, sp, #{frame}
    eret
    dsb     nsh
    isb
.Lfull_sync:
    // Any other trap: the whole TrapFrame (x0/x1 are already saved).
    stp     x2, x3, [sp, #2 * 8]
    stp     x4, x5, [sp, #4 * 8]
    stp     x6, x7, [sp, #6 * 8]
    stp     x8, x9, [sp, #8 * 8]
    stp     x10, x11, [sp, #10 * 8]
    stp     x12, x13, [sp, #12 * 8]
    stp     x14, x15, [sp, #14 * 8]
    stp     x16, x17, [sp, #16 * 8]
    stp     x18, x19, [sp, #18 * 8]
    stp     x20, x21, [sp, #20 * 8]
    stp     x22, x23, [sp, #22 * 8]
    stp     x24, x25, [sp, #24 * 8]
    stp     x26, x27, [sp, #26 * 8]
    stp     x28, x29, [sp, #28 * 8]
    mrs     x0, elr_el2
    mrs     x1, spsr_el2
    stp     x30, x0, [sp, #30 * 8]
    str     x1, [sp, #32 * 8]
    mov     x0, sp
    bl      xenith_trap_lower_sync
    b       xenith_return_to_guest
el2_lower_irq:
    SAVE_FRAME
    SPECTRE_ENTRY
    mov     x0, sp
    bl      xenith_trap_lower_irq
    b       xenith_return_to_guest
el2_lower_fiq:
    SAVE_FRAME
    SPECTRE_ENTRY
    mov     x0, sp
    bl      xenith_trap_lower_irq
    b       xenith_return_to_guest
el2_lower_serror:
    SAVE_FRAME
    SPECTRE_ENTRY
    mov     x0, sp
    bl      xenith_trap_lower_serror
    b       xenith_return_to_guest
el2_lower32_sync:
    SAVE_FRAME
    SPECTRE_ENTRY
    mov     x0, sp
    bl      xenith_trap_lower_sync
    b       xenith_return_to_guest

el2_cur_sp0:
    SAVE_FRAME
    mov     x0, sp
    mov     x1, #0
    bl      xenith_trap_hyp
el2_cur_sync:
    SAVE_FRAME
    mov     x0, sp
    mov     x1, #1
    bl      xenith_trap_hyp
el2_cur_irq:
    SAVE_FRAME
    mov     x0, sp
    mov     x1, #2
    bl      xenith_trap_hyp
el2_cur_fiq:
    SAVE_FRAME
    mov     x0, sp
    mov     x1, #3
    bl      xenith_trap_hyp
el2_cur_serror:
    SAVE_FRAME
    mov     x0, sp
    mov     x1, #4
    bl      xenith_trap_hyp

// Restore the TrapFrame at sp and return to the guest.
    .global xenith_return_to_guest
xenith_return_to_guest:
    ldp     x30, x0, [sp, #30 * 8]
    ldr     x1, [sp, #32 * 8]
    msr     elr_el2, x0
    msr     spsr_el2, x1
    ldp     x0, x1, [sp, #0 * 8]
    ldp     x2, x3, [sp, #2 * 8]
    ldp     x4, x5, [sp, #4 * 8]
    ldp     x6, x7, [sp, #6 * 8]
    ldp     x8, x9, [sp, #8 * 8]
    ldp     x10, x11, [sp, #10 * 8]
    ldp     x12, x13, [sp, #12 * 8]
    ldp     x14, x15, [sp, #14 * 8]
    ldp     x16, x17, [sp, #16 * 8]
    ldp     x18, x19, [sp, #18 * 8]
    ldp     x20, x21, [sp, #20 * 8]
    ldp     x22, x23, [sp, #22 * 8]
    ldp     x24, x25, [sp, #24 * 8]
    ldp     x26, x27, [sp, #26 * 8]
    ldp     x28, x29, [sp, #28 * 8]
    add     sp, sp, #{frame}
    eret
    dsb     nsh
    isb

// enter_guest(frame: *const TrapFrame, stack_top: u64) -> !: first entry into a vCPU.
    .global xenith_enter_guest
xenith_enter_guest:
    sub     x1, x1, #{frame}
    mov     sp, x1
    mov     x2, #0
4:  ldr     x3, [x0, x2]
    str     x3, [sp, x2]
    add     x2, x2, #8
    cmp     x2, #{frame}
    b.lo    4b
    b       xenith_return_to_guest
"#,
    stack_size = const STACK_SIZE,
    frame = const FRAME_SIZE,
    hvc_esr_lo = const HVC_XEN_ESR & 0xffff,
    hvc_esr_hi = const HVC_XEN_ESR >> 16,
);

extern "C" {
    fn xenith_enter_guest(frame: *const TrapFrame, stack_top: u64) -> !;
}

/// Enter a guest for the first time with the registers in `frame`, abandoning the current
/// EL2 stack: from now on the hypervisor runs only in trap handlers.
pub fn enter_guest(frame: &TrapFrame) -> ! {
    let top = core::ptr::addr_of!(BOOT_STACK) as u64 + STACK_SIZE as u64;
    // SAFETY: the frame is copied onto the top of the boot stack before the stack is reused;
    // the EL1/EL2 system registers for the guest were programmed by the caller.
    unsafe { xenith_enter_guest(frame, top) }
}
