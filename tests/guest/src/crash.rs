//! A dom0less domU that crashes on purpose (`domu-crash=undef`, `=abort`, `=shutdown` on its
//! command line), for the system test that checks the hypervisor reports it and dom0 goes on:
//! an exception handler that takes an UNDEF the hypervisor injects at its first instruction
//! (an HVC with an immediate that is no hypercall), one whose first instruction stores to an
//! IPA nobody owns (a data abort the hypervisor injects), or SCHEDOP_shutdown(crash).

use core::arch::{asm, global_asm};

// Two vector tables (2 KiB aligned, 16 entries of 128 bytes) whose every entry faults at once
// in a way only the hypervisor sees: each fault is injected back into the same entry.
global_asm!(
    r#"
    .section .text
    .balign 2048
crash_undef_vectors:
    .rept 16
    hvc     #0x1234
    b       .
    .balign 128
    .endr
    .balign 2048
crash_abort_vectors:
    .rept 16
    str     w0, [x1]
    b       .
    .balign 128
    .endr
"#
);

/// The crash the command line asks for, if any.
pub fn kind(info: &crate::fdt::BootInfo) -> Option<&'static str> {
    ["undef", "abort", "shutdown"].into_iter().find(|k| {
        let mut arg = [0u8; 24];
        let w = b"domu-crash=";
        arg[..w.len()].copy_from_slice(w);
        arg[w.len()..w.len() + k.len()].copy_from_slice(k.as_bytes());
        info.has_arg(&arg[..w.len() + k.len()])
    })
}

/// Crash as `kind` says; never returns.
pub fn run(kind: &str) -> ! {
    crate::println!("domu-crash: {kind}");
    match kind {
        // SAFETY: points VBAR_EL1 at the table above and faults; nothing returns.
        "undef" => unsafe {
            asm!("adrp x0, crash_undef_vectors", "add x0, x0, :lo12:crash_undef_vectors", "msr vbar_el1, x0", "isb", "hvc #0x1234", "b .", options(noreturn))
        },
        // SAFETY: as above; x1 holds the hole's address in the handler too.
        "abort" => unsafe {
            asm!("adrp x0, crash_abort_vectors", "add x0, x0, :lo12:crash_abort_vectors", "msr vbar_el1, x0", "isb", "str w0, [x1]", "b .",
                 in("x1") crate::mmu::DEVICE_HOLE_IPA, options(noreturn))
        },
        _ => loop {
            guest_abi::guest::shutdown(guest_abi::sched::SHUTDOWN_CRASH);
            core::hint::spin_loop();
        },
    }
}
