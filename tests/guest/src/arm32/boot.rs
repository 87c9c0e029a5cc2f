//! Entry on ARMv7-A: the zImage header, self-relocation, stacks and the PL1 exception vectors.
//! Everything here runs with the MMU off, before any Rust code.
//!
//! Boot contract (Linux's 32-bit zImage protocol, as Xen's and xenith's dom0 builders implement
//! it): SVC mode, MMU and D-cache off, r0 = 0, r1 = machine type, r2 = physical address of the
//! DTB; loaded at any 64 KiB-aligned address in RAM (the header's start word is 0; Xen and
//! xenith align a zImage to 2 MiB). The BSS is zero in the file.

use core::arch::global_asm;

global_asm!(
    r#"
    .syntax unified
    .arm
    .section .text.head, "ax"
    .global _start
_start:
    .rept   8
    mov     r0, r0
    .endr
    b       1f
    .word   0x016f2818              // zImage magic
    .word   0                       // start: position independent
    .word   _end - _start           // end: the whole image, zero-filled BSS included
    .word   0x04030201              // little-endian

1:  cpsid   aif
    mov     r10, r2                 // DTB physical address
    adr     r11, _start             // where _start was loaded (linked at 0: also the slide)

    // The image is linked at 0; `cargo xtask` appended, at _end, the table of what holds an
    // absolute address: [n_abs, n_movt, word offsets.., MOVT offsets..]. Each word gets the
    // load address added, each MOVT (A1 encoding, imm4:imm12) its upper half. The lower halves
    // in the MOVW partners stay right only for a 64 KiB-aligned load address: park otherwise.
    mov     r3, r11, lsl #16
    cmp     r3, #0
    bne     3f
    ldr     r3, 10f
    add     r3, r3, r11
    ldm     r3!, {{r4, r5}}
2:  subs    r4, r4, #1
    blo     6f
    ldr     r6, [r3], #4
    ldr     r7, [r11, r6]
    add     r7, r7, r11
    str     r7, [r11, r6]
    b       2b
6:  mov     r8, r11, lsr #16
7:  subs    r5, r5, #1
    blo     8f
    ldr     r6, [r3], #4
    ldr     r7, [r11, r6]
    ubfx    r9, r7, #0, #12
    ubfx    r12, r7, #16, #4
    orr     r9, r9, r12, lsl #12
    add     r9, r9, r8
    bfi     r7, r9, #0, #12
    lsr     r9, r9, #12
    bfi     r7, r9, #16, #4
    str     r7, [r11, r6]
    b       7b
3:  b       3b                      // loaded at an address this image cannot run at
10: .word   _end - _start
8:  // The patched instructions were written with the MMU and caches off.
    mov     r3, #0
    mcr     p15, 0, r3, c7, c5, 0   // ICIALLU
    mcr     p15, 0, r3, c7, c5, 6   // BPIALL
    dsb
    isb
    // From here on literal words hold run-time addresses.
    cps     #0x1b                   // undefined-instruction mode's stack
    ldr     sp, =__und_stack_top
    cps     #0x17                   // abort mode's stack
    ldr     sp, =__abt_stack_top
    cps     #0x12                   // IRQ mode's stack
    ldr     sp, =__abt_stack_top
    cps     #0x13
    ldr     sp, =__stack_top
    ldr     r3, =exception_vectors
    mcr     p15, 0, r3, c12, c0, 0  // VBAR (SCTLR.V is 0: low vectors at VBAR)
    // FP/SIMD usable at PL1 (CPACR cp10/cp11 full access).
    mov     r3, #(0xf << 20)
    mcr     p15, 0, r3, c1, c0, 2
    isb
    mov     r0, r10
    mov     r1, r11
    bl      rust_entry
5:  wfe
    b       5b
    .ltorg

    .section .bss.stack, "aw", %nobits
    .balign 16
    .space  0x10000
__stack_top:
    .space  0x400
__und_stack_top:
    .space  0x400
__abt_stack_top:

    // PL1 vectors. Undefined instruction, prefetch and data aborts record (count, vector,
    // fault status, fault address, the faulting instruction) in EXCEPTION_RECORD and resume
    // after the faulting instruction (4 bytes: the cases run A32 code).
    .section .text.vectors, "ax"
    .balign 32
exception_vectors:
    b       .                       // reset
    b       vec_undef
    movs    pc, lr                  // SVC: nothing to do
    b       vec_pabt
    b       vec_dabt
    b       .                       // unused
    subs    pc, lr, #4              // IRQ: none is enabled
    subs    pc, lr, #4              // FIQ

vec_undef:
    push    {{r0-r3}}
    mov     r2, #1
    mov     r1, #0                  // no fault status
    mov     r0, #0                  // no fault address
    sub     lr, lr, #4              // the undefined instruction
    b       record
vec_pabt:
    push    {{r0-r3}}
    mov     r2, #3
    mrc     p15, 0, r1, c5, c0, 1   // IFSR
    mrc     p15, 0, r0, c6, c0, 2   // IFAR
    sub     lr, lr, #4              // the faulting instruction
    b       record
vec_dabt:
    push    {{r0-r3}}
    mov     r2, #4
    mrc     p15, 0, r1, c5, c0, 0   // DFSR
    mrc     p15, 0, r0, c6, c0, 0   // DFAR
    sub     lr, lr, #8              // the faulting instruction
record:
    ldr     r3, =EXCEPTION_RECORD   // u64 [count, vector, status, address, instruction]
    str     r2, [r3, #8]
    str     r1, [r3, #16]
    str     r0, [r3, #24]
    str     lr, [r3, #32]
    ldr     r2, [r3]
    add     r2, r2, #1
    str     r2, [r3]
    // Resume where a case asked (RESUME_AT, once), else after the faulting instruction.
    ldr     r3, =RESUME_AT
    ldr     r1, [r3]
    cmp     r1, #0
    addeq   lr, lr, #4
    movne   lr, r1
    movne   r1, #0
    strne   r1, [r3]
    pop     {{r0-r3}}
    movs    pc, lr
    .ltorg
"#
);

/// Where the vectors resume after the next abort or undefined instruction, when not 0. The
/// faulting instruction is found from the banked LR, whose offset Xen 4.17 armhf does not set
/// as the architecture does for an injected data abort (LR_abt = the instruction + 4, not + 8):
/// a case that expects an abort names its resume point instead.
#[no_mangle]
pub static mut RESUME_AT: u32 = 0;

/// A 32-bit load from `addr` that may abort: the value, or 0 when it aborted (the abort is in
/// `crate::exceptions`).
///
/// # Safety
/// `addr` is mapped at stage 1; a stage-2 abort is recovered from.
pub unsafe fn read_u32_recoverable(addr: usize) -> u32 {
    let v: u32;
    // SAFETY: the load either completes or aborts; the vector then resumes at label 1.
    unsafe {
        core::arch::asm!(
            "adr {t}, 1f",
            "str {t}, [{slot}]",
            "mov {v}, #0",
            "ldr {v}, [{a}]",
            "1:",
            "mov {t}, #0",
            "str {t}, [{slot}]",
            t = out(reg) _, v = out(reg) v, a = in(reg) addr,
            slot = in(reg) core::ptr::addr_of_mut!(RESUME_AT),
            options(nostack),
        )
    };
    v
}
