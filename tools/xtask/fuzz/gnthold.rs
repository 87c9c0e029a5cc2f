//! dom0 maps a grant of another domain through /dev/xen/gntdev and holds the mapping until it
//! is killed (the kernel then unmaps it, GNTTABOP_unmap_grant_ref): the toolstack system test
//! destroys the domain meanwhile, to see what the hypervisor keeps of a domain whose frame
//! dom0 still maps. The domain's id is read from /tmp/gnthold.domid (a decimal number); the
//! grant is reference 1, the xenstore page the toolstack grants dom0 when it builds a domain
//! (GNTTAB_RESERVED_XENSTORE). Built like privcmd_fuzz.rs (static, raw syscalls, no libc).
#![no_std]
#![no_main]

use core::arch::asm;

#[path = "decimal.rs"]
mod decimal;
#[path = "gntdev.rs"]
mod gntdev;
use gntdev::{GntdevMap, IOCTL_GNTDEV_MAP_GRANT_REF};

/// The reference mapped: GNTTAB_RESERVED_XENSTORE.
const GREF: u32 = 1;

fn syscall6(nr: u64, a: u64, b: u64, c: u64, d: u64, e: u64, f: u64) -> i64 {
    let ret: i64;
    // SAFETY: a Linux syscall; the caller passes live buffers.
    unsafe { asm!("svc #0", in("x8") nr, inlateout("x0") a as i64 => ret, in("x1") b, in("x2") c, in("x3") d, in("x4") e, in("x5") f, options(nostack)) };
    ret
}

fn write(s: &[u8]) {
    syscall6(64, 1, s.as_ptr() as u64, s.len() as u64, 0, 0, 0);
}

fn write_num(n: i64) {
    if n < 0 {
        write(b"-");
    }
    write(decimal::decimal(n.unsigned_abs(), &mut [0u8; 20]));
}

fn fail(what: &[u8], rc: i64) -> ! {
    write(b"gnthold: ");
    write(what);
    write(b": ");
    write_num(rc);
    write(b"\n");
    exit(1);
}

fn exit(code: u64) -> ! {
    // SAFETY: exit(code).
    unsafe { asm!("svc #0", in("x8") 93u64, in("x0") code, options(nostack, noreturn)) };
}

fn open(path: &[u8], flags: u64) -> i64 {
    // openat(AT_FDCWD, path, flags)
    syscall6(56, (-100i64) as u64, path.as_ptr() as u64, flags, 0, 0, 0)
}

/// The domain id in /tmp/gnthold.domid.
fn domid() -> u32 {
    let fd = open(b"/tmp/gnthold.domid\0", 0);
    if fd < 0 {
        fail(b"cannot open /tmp/gnthold.domid", fd);
    }
    let mut buf = [0u8; 16];
    let n = syscall6(63, fd as u64, buf.as_mut_ptr() as u64, buf.len() as u64, 0, 0, 0);
    if n <= 0 {
        fail(b"cannot read /tmp/gnthold.domid", n);
    }
    let mut v = 0u32;
    for &b in buf.iter().take(n as usize).take_while(|b| b.is_ascii_digit()) {
        v = v.saturating_mul(10).saturating_add(u32::from(b - b'0'));
    }
    v
}

#[no_mangle]
pub extern "C" fn _start() -> ! {
    let dom = domid();
    let fd = open(b"/dev/xen/gntdev\0", 2);
    if fd < 0 {
        fail(b"cannot open /dev/xen/gntdev", fd);
    }
    let mut m = GntdevMap { count: 1, pad: 0, index: 0, domid: dom, gref: GREF };
    let r = syscall6(29, fd as u64, IOCTL_GNTDEV_MAP_GRANT_REF, &mut m as *mut GntdevMap as u64, 0, 0, 0);
    if r < 0 {
        fail(b"map ioctl", r);
    }
    // mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, index): the grant is mapped here.
    let va = syscall6(222, 0, 4096, 3, 1, fd as u64, m.index);
    if va < 0 {
        fail(b"mmap", va);
    }
    // SAFETY: `va` is the start of the page gntdev just mapped for this process.
    let first = unsafe { core::ptr::read_volatile(va as *const u8) };
    write(b"gnthold: mapped d");
    write_num(i64::from(dom));
    write(b" ref 1, first byte ");
    write_num(i64::from(first));
    write(b"\n");
    // Hold it until killed.
    let ts = [3600u64, 0];
    loop {
        syscall6(101, ts.as_ptr() as u64, 0, 0, 0, 0, 0);
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
