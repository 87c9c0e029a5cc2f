//! dom0 waits for VIRQ_DOM_EXC (another domain stopped) through /dev/xen/evtchn and says so:
//! the dom0less system tests run it in the background of dom0's /init, so dom0 stays up until
//! its domU has stopped and shows that it heard of it. Built like privcmd_fuzz.rs (static, raw
//! syscalls, no libc).
#![no_std]
#![no_main]

use core::arch::asm;

#[path = "decimal.rs"]
mod decimal;

/// Xen's VIRQ_DOM_EXC.
const VIRQ_DOM_EXC: u32 = 3;
/// IOCTL_EVTCHN_BIND_VIRQ: _IOC(none, 'E', 0, 4 bytes).
const IOCTL_EVTCHN_BIND_VIRQ: u64 = (4 << 16) | ((b'E' as u64) << 8);

fn syscall3(nr: u64, a: u64, b: u64, c: u64) -> i64 {
    let ret: i64;
    // SAFETY: a Linux syscall with three arguments; the caller passes live buffers.
    unsafe { asm!("svc #0", in("x8") nr, inlateout("x0") a as i64 => ret, in("x1") b, in("x2") c, options(nostack)) };
    ret
}

fn write(s: &[u8]) {
    syscall3(64, 1, s.as_ptr() as u64, s.len() as u64);
}

fn write_num(n: i64) {
    if n < 0 {
        write(b"-");
    }
    write(decimal::decimal(n.unsigned_abs(), &mut [0u8; 20]));
}

fn exit(code: u64) -> ! {
    // SAFETY: exit(code).
    unsafe { asm!("svc #0", in("x8") 93u64, in("x0") code, options(nostack, noreturn)) };
}

#[no_mangle]
pub extern "C" fn _start() -> ! {
    let path = b"/dev/xen/evtchn\0";
    // openat(AT_FDCWD, path, O_RDWR)
    let fd = syscall3(56, (-100i64) as u64, path.as_ptr() as u64, 2);
    if fd < 0 {
        write(b"domexc: cannot open /dev/xen/evtchn: ");
        write_num(fd);
        write(b"\n");
        exit(1);
    }
    let virq = VIRQ_DOM_EXC;
    let port = syscall3(29, fd as u64, IOCTL_EVTCHN_BIND_VIRQ, &virq as *const u32 as u64);
    if port < 0 {
        write(b"domexc: cannot bind VIRQ_DOM_EXC: ");
        write_num(port);
        write(b"\n");
        exit(1);
    }
    write(b"domexc: VIRQ_DOM_EXC bound to port ");
    write_num(port);
    write(b"\n");
    let mut fired = [0u32; 4];
    let n = syscall3(63, fd as u64, fired.as_mut_ptr() as u64, 16);
    if n < 4 {
        write(b"domexc: read failed: ");
        write_num(n);
        write(b"\n");
        exit(1);
    }
    write(b"domexc: VIRQ_DOM_EXC received on port ");
    write_num(i64::from(fired[0]));
    write(b"\n");
    exit(0);
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
