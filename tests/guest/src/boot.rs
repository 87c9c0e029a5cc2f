//! Entry: the arm64 Image header, self-relocation, BSS, stack, FP enable and the EL1 exception
//! vectors. Everything here runs with the MMU off, before any Rust code.
//!
//! Boot contract (Linux arm64 booting protocol, as Xen and QEMU implement it): EL1 (or EL2, which
//! this guest does not support), MMU and D-cache off, x0 = physical address of the DTB, loaded at
//! any 2 MiB-aligned RAM base + text_offset (0x80000).

use core::arch::global_asm;

global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    b       1f                      // code0: branch to the real entry
    .word   0                       // code1
    .quad   0x80000                 // text_offset
    .quad   __image_size            // image_size: file + BSS, from the linker script
    .quad   0xa                     // flags: little-endian, 4 KiB pages, placed anywhere
    .quad   0                       // res2
    .quad   0                       // res3
    .quad   0                       // res4
    .ascii  "ARM\x64"               // magic
    .word   0                       // res5 (no PE header)

1:  msr     daifset, #0xf
    mov     x19, x0                 // DTB physical address
    adr     x20, _start             // where we were loaded (linked at 0, so also the slide)

    // Apply R_AARCH64_RELATIVE (1027): *(slide + offset) = slide + addend.
    adrp    x1, __rela_start
    add     x1, x1, :lo12:__rela_start
    adrp    x2, __rela_end
    add     x2, x2, :lo12:__rela_end
2:  cmp     x1, x2
    b.hs    4f
    ldp     x3, x4, [x1], #16       // r_offset, r_info
    ldr     x5, [x1], #8            // r_addend
    cmp     w4, #1027
    b.ne    3f
    add     x5, x5, x20
    str     x5, [x20, x3]
    b       2b
3:  mov     x21, x4                 // an unsupported relocation: park with its info in x21
    b       .
4:
    // Zero the BSS (stack and page tables included).
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
5:  cmp     x1, x2
    b.hs    6f
    stp     xzr, xzr, [x1], #16
    b       5b
6:
    // The stores above went to memory with the MMU off; drop any stale cache lines for the whole
    // image so the first cacheable reads see them.
    mrs     x3, ctr_el0
    ubfx    x3, x3, #16, #4         // DminLine: log2(words)
    mov     x4, #4
    lsl     x4, x4, x3              // line size in bytes
    mov     x1, x20
    adrp    x2, _end
    add     x2, x2, :lo12:_end
7:  dc      ivac, x1
    add     x1, x1, x4
    cmp     x1, x2
    b.lo    7b
    dsb     sy

    adrp    x1, __stack_top
    add     x1, x1, :lo12:__stack_top
    mov     sp, x1

    mov     x1, #(3 << 20)          // CPACR_EL1.FPEN: no FP/SIMD traps at EL1
    msr     cpacr_el1, x1
    adrp    x1, exception_vectors
    add     x1, x1, :lo12:exception_vectors
    msr     vbar_el1, x1
    isb

    mov     x0, x19
    mov     x1, x20
    bl      rust_entry
8:  wfe
    b       8b

    // The stack lives in the BSS.
    .section .bss.stack, "aw", @nobits
    .balign 16
    .space  0x10000
__stack_top:

    // EL1 vectors. Every entry saves x0..x3, records (vector, ESR, FAR, ELR) in EXCEPTION_RECORD,
    // and returns; synchronous exceptions resume at ELR + 4, past the faulting instruction.
    .section .text.vectors, "ax"
    .balign 0x800
exception_vectors:
    .irp    vec, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    .balign 0x80
    sub     sp, sp, #32
    stp     x0, x1, [sp]
    stp     x2, x3, [sp, #16]
    mov     x2, #\vec
    b       exception_common
    .endr

exception_common:
    adrp    x0, {record}
    add     x0, x0, :lo12:{record}
    ldr     x1, [x0]                // count
    add     x1, x1, #1
    str     x1, [x0]
    str     x2, [x0, #8]            // vector index
    mrs     x1, esr_el1
    str     x1, [x0, #16]
    mrs     x1, far_el1
    str     x1, [x0, #24]
    mrs     x1, elr_el1
    str     x1, [x0, #32]
    and     x3, x2, #3              // 0 = synchronous within each group of four
    cbnz    x3, 9f
    add     x1, x1, #4
    msr     elr_el1, x1
9:  ldp     x2, x3, [sp, #16]
    ldp     x0, x1, [sp]
    add     sp, sp, #32
    eret
"#,
    record = sym crate::exceptions::EXCEPTION_RECORD,
);
