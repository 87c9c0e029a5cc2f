//! The zImage header, the boot CPU's entry in HYP mode, the HYP vectors (HVBAR) and guest entry.
//!
//! Entry contract (the ARM Linux zImage protocol, as QEMU `-kernel` and U-Boot `bootz` honour
//! it): HYP mode, MMU off, r0 = 0, r1 = machine type, r2 = physical address of the DTB. Secure
//! SVC mode (a firmware that never leaves the Secure world) is accepted too: `monitor.rs`
//! switches the CPU to non-secure HYP mode first. The
//! image is linked at 0x40010000 (QEMU virt's RAM base + the 0x10000 where `-kernel` loads a
//! raw image; the header's start address says so to `bootz`); the entry code checks it runs
//! there in HYP mode and parks otherwise.

use core::arch::global_asm;

/// Size of the per-CPU HYP stack.
pub const STACK_SIZE: usize = 64 * 1024;

#[repr(C, align(16))]
pub struct Stack(pub [u8; STACK_SIZE]);

/// The boot CPU's HYP stack. Guest traps start on a fresh frame at its top.
#[no_mangle]
pub static mut BOOT_STACK: Stack = Stack([0; STACK_SIZE]);

/// A trapped guest's registers as the HYP trap vector saves them: r0-r12, the banked LR_usr
/// (HYP mode shares it with user mode, so the handler's own calls would clobber it), and the
/// return state ELR_hyp/SPSR_hyp. The guest's other banked registers (SP and LR of each PL1
/// mode, SPSRs, r8-r12_fiq) are untouched by the hypervisor and stay in the CPU: each vCPU
/// has a physical CPU to itself.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TrapFrame {
    pub r: [u32; 13],
    pub lr_usr: u32,
    pub elr: u32,
    pub spsr: u32,
}

impl TrapFrame {
    pub const ZERO: TrapFrame = TrapFrame { r: [0; 13], lr_usr: 0, elr: 0, spsr: 0 };
}

/// Bytes the vectors reserve for a `TrapFrame` (8-aligned, as AAPCS wants the stack).
pub const FRAME_SIZE: usize = 16 * 4;
const _: () = assert!(core::mem::size_of::<TrapFrame>() == FRAME_SIZE);

/// The zImage magic `bootz` and QEMU look for at offset 0x24.
pub const ZIMAGE_MAGIC: u32 = 0x016f_2818;

global_asm!(
    r#"
    .syntax unified
    .arch_extension virt
    .arm
    .section .text.head, "ax"
    .global _start
_start:
    // zImage header (arch/arm/boot/compressed layout): eight NOPs, a branch, the magic, the
    // start and end addresses (absolute: the image runs where it is linked), the endianness.
    .rept   8
    mov     r0, r0
    .endr
    b       1f
    .word   {zimage_magic}
    .word   _start
    .word   __image_end
    .word   0x04030201
1:
    cpsid   aif
    mov     r10, r2                 // DTB
    mov     r11, #0                 // 1: entered in Secure SVC, the monitor is ours
    adr     r3, _start
    ldr     r4, =_start
    cmp     r3, r4
    bne     .Lpark                  // not loaded at the link address
    mrc     p15, 0, r3, c0, c0, 5   // MPIDR
    ands    r3, r3, #0xff
    bne     .Lpark                  // secondaries come up through PSCI CPU_ON later
    mrs     r3, cpsr
    and     r3, r3, #0x1f
    cmp     r3, #0x13               // SVC: a firmware that stays Secure (monitor.rs)
    bne     3f
    bl      xenith_secure_to_hyp
    mov     r11, r0
3:  mrs     r3, cpsr
    and     r3, r3, #0x1f
    cmp     r3, #0x1a
    bne     .Lpark                  // not in HYP mode: nothing we can do

    // A module bundle (platform::bundle) at the BSS start: move it to its destination past
    // xenith's memory before the BSS is cleared. r9 = what happened (boot::bundle), r6 = the
    // destination. Copies 32 bytes at a time from the end down: the destination is above.
    mov     r9, #{bundle_none}
    mov     r6, #0
    ldr     r3, =__bss_start
    ldr     r4, [r3]
    ldr     r5, ={magic0}
    cmp     r4, r5
    bne     5f
    ldr     r4, [r3, #4]
    ldr     r5, ={magic1}
    cmp     r4, r5
    bne     5f
    mov     r9, #{bundle_refused_layout}
    ldr     r6, [r3, #16]           // destination
    ldr     r7, [r3, #20]           // total length
    ldr     r4, =__image_end
    cmp     r6, r4
    blo     5f                      // inside xenith's own memory
    ldr     r4, ={dest_mask}
    tst     r6, r4
    bne     5f
    tst     r7, #{granule_mask}
    bne     5f
    cmp     r7, #{header_len}
    blo     5f
    ldr     r4, ={max_len}
    cmp     r7, r4
    bhi     5f
    adds    r8, r6, r7              // the destination's end
    bcs     5f
    // The DTB (r10, header totalsize, at most 2 MiB counted) must lie clear of [r6, r8).
    mov     r9, #{bundle_refused_dtb}
    mov     r4, #4
    tst     r10, #3
    bne     6f
    ldr     r4, [r10, #4]
    rev     r4, r4
    cmp     r4, #0x200000
    movhi   r4, #0x200000
6:  add     r4, r10, r4
    cmp     r10, r8
    bhs     7f
    cmp     r4, r6
    bhi     5f
7:  add     r3, r3, r7              // the source's end
    ldr     r6, =__bss_start
8:  ldmdb   r3!, {{r0-r2, r4, r5, r7, r12, lr}}
    stmdb   r8!, {{r0-r2, r4, r5, r7, r12, lr}}
    cmp     r3, r6
    bhi     8b
    mov     r6, r8                  // the destination's start
    mov     r9, #{bundle_moved}
5:
    // Zero BSS (MMU off: aligned word stores only).
    ldr     r3, =__bss_start
    ldr     r4, =__bss_end
    mov     r5, #0
2:  cmp     r3, r4
    strlo   r5, [r3], #4
    blo     2b

    ldr     sp, =BOOT_STACK + {stack_size}
    ldr     r3, =hyp_vectors
    mcr     p15, 4, r3, c12, c0, 0  // HVBAR
    isb
    mov     r0, r10
    mov     r1, r11
    mov     r2, r9
    mov     r3, r6
    bl      xenith_boot_hyp
.Lpark:
    cpsid   aif
    wfe
    b       .Lpark

    .ltorg

// ---------------------------------------------------------------------------------------
// HYP vectors. 0x14 (HYP trap) takes every trap from a guest: hypercalls, SMCs, stage-2
// aborts, trapped CP15 accesses. IRQ/FIQ at 0x18/0x1c come from guests too (the hypervisor
// runs with interrupts masked). The rest can only be raised by HYP mode itself: a bug.
    .section .text.vectors, "ax"
    .balign 32
    .global hyp_vectors
hyp_vectors:
    b       hyp_bad_reset
    b       hyp_bad_undef
    b       hyp_bad_hvc
    b       hyp_bad_pabt
    b       hyp_bad_dabt
    b       hyp_guest_trap
    b       hyp_guest_irq
    b       hyp_guest_fiq

    .macro  SAVE_FRAME
    sub     sp, sp, #{frame}
    stm     sp, {{r0-r12, lr}}
    mrs     r0, elr_hyp
    mrs     r1, spsr
    str     r0, [sp, #14 * 4]
    str     r1, [sp, #15 * 4]
    .endm

    .macro  BAD kind
    SAVE_FRAME
    mov     r0, sp
    mov     r1, #\kind
    bl      xenith_trap_hyp
    .endm

hyp_guest_trap:
    SAVE_FRAME
    mov     r0, sp
    bl      xenith_trap_guest
    b       xenith_return_to_guest
hyp_guest_irq:
    SAVE_FRAME
    mov     r0, sp
    bl      xenith_trap_guest_irq
    b       xenith_return_to_guest
hyp_guest_fiq:
    SAVE_FRAME
    mov     r0, sp
    bl      xenith_trap_guest_irq
    b       xenith_return_to_guest

hyp_bad_reset:
    BAD     0
hyp_bad_undef:
    BAD     1
hyp_bad_hvc:
    BAD     2
hyp_bad_pabt:
    BAD     3
hyp_bad_dabt:
    BAD     4

// Restore the TrapFrame at sp and return to the guest.
    .global xenith_return_to_guest
xenith_return_to_guest:
    ldr     r0, [sp, #14 * 4]
    ldr     r1, [sp, #15 * 4]
    msr     elr_hyp, r0
    msr     spsr_cxsf, r1
    ldm     sp, {{r0-r12, lr}}
    add     sp, sp, #{frame}
    eret

// enter_guest(frame: *const TrapFrame, stack_top: u32) -> !: first entry into a vCPU.
    .global xenith_enter_guest
xenith_enter_guest:
    sub     sp, r1, #{frame}
    mov     r2, #0
4:  ldr     r3, [r0, r2]
    str     r3, [sp, r2]
    add     r2, r2, #4
    cmp     r2, #{frame}
    blo     4b
    b       xenith_return_to_guest
"#,
    zimage_magic = const ZIMAGE_MAGIC,
    magic0 = const platform::bundle::MAGIC[0],
    magic1 = const platform::bundle::MAGIC[1],
    dest_mask = const (platform::bundle::DEST_ALIGN - 1) as u32,
    granule_mask = const (platform::bundle::COPY_GRANULE - 1) as u32,
    header_len = const platform::bundle::HEADER_LEN,
    max_len = const platform::bundle::MAX_LEN as u32,
    bundle_none = const crate::boot::bundle::NONE,
    bundle_moved = const crate::boot::bundle::MOVED,
    bundle_refused_layout = const crate::boot::bundle::REFUSED_LAYOUT,
    bundle_refused_dtb = const crate::boot::bundle::REFUSED_DTB,
    stack_size = const STACK_SIZE,
    frame = const FRAME_SIZE,
);

extern "C" {
    fn xenith_enter_guest(frame: *const TrapFrame, stack_top: u32) -> !;
}

/// Enter a guest for the first time with the registers in `frame`, abandoning the current
/// HYP stack: from now on the hypervisor runs only in trap handlers.
pub fn enter_guest(frame: &TrapFrame) -> ! {
    let top = core::ptr::addr_of!(BOOT_STACK) as u32 + STACK_SIZE as u32;
    // SAFETY: the frame is copied onto the top of the boot stack before the stack is reused;
    // the guest's system registers were programmed by the caller.
    unsafe { xenith_enter_guest(frame, top) }
}

/// Enter a guest on a secondary CPU whose HYP stack tops at `stack_top`.
///
/// # Safety
/// `stack_top` is this CPU's own stack, which nothing on it uses any more.
pub unsafe fn enter_guest_on(frame: &TrapFrame, stack_top: u32) -> ! {
    // SAFETY: the caller's contract; the frame is copied before the stack is reused.
    unsafe { xenith_enter_guest(frame, stack_top) }
}
