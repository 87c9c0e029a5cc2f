//! Prints the virtual counter (CNTVCT_EL0) and its frequency as the first thing dom0's /init
//! does: `CNTVCT <ticks> <hz>`. Under `-icount shift=0` the counter follows executed
//! instructions, so the value says how long the machine took to reach dom0's userspace (the
//! boot-overhead bench; under Xen the domain's counter offset is added from Xen's log). Built
//! like privcmd_fuzz.rs (static, raw syscalls, no libc).
#![no_std]
#![no_main]

use core::arch::asm;

#[path = "decimal.rs"]
mod decimal;

fn write(s: &[u8]) {
    // SAFETY: the write syscall on stdout with a live buffer.
    unsafe { asm!("svc #0", in("x8") 64u64, inlateout("x0") 1u64 => _, in("x1") s.as_ptr(), in("x2") s.len(), options(nostack)) };
}

fn write_num(n: u64) {
    write(decimal::decimal(n, &mut [0u8; 20]));
}

#[no_mangle]
pub extern "C" fn _start() -> ! {
    let (ticks, hz): (u64, u64);
    // SAFETY: Linux lets EL0 read the virtual counter and its frequency.
    unsafe { asm!("isb", "mrs {t}, cntvct_el0", "mrs {f}, cntfrq_el0", t = out(reg) ticks, f = out(reg) hz, options(nostack)) };
    write(b"CNTVCT ");
    write_num(ticks);
    write(b" ");
    write_num(hz);
    write(b"\n");
    // SAFETY: exit(0).
    unsafe { asm!("svc #0", in("x8") 93u64, in("x0") 0u64, options(nostack, noreturn)) };
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
