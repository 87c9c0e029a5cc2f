//! A hostile dom0 userspace program: 100 000 random hypercalls through /dev/xen/privcmd
//! (IOCTL_PRIVCMD_HYPERCALL), fixed seed. Built by xtask (linux.rs) with rustc alone for
//! aarch64-unknown-none as a static Linux ELF (raw syscalls, no libc), put in the initramfs
//! when dom0's command line has `xenith-fuzz`.
//!
//! Filtered (calls that legitimately stop or stall dom0, not hypervisor robustness):
//! sched_op shutdown / remote_shutdown / shutdown_code / watchdog / block / poll (block and
//! poll may wait for an event forever). PSCI is not reachable through privcmd (it is SMCCC,
//! not a Xen hypercall). Everything else, including unknown hypercall numbers, is issued.
#![no_std]
#![no_main]

use core::arch::asm;

#[path = "decimal.rs"]
mod decimal;

const CALLS: u64 = 100_000;
const SEED: u64 = 0x5eed_0007_dead_beef;
/// _IOC(_IOC_NONE, 'P', 0, sizeof(struct privcmd_hypercall) = 48).
const IOCTL_PRIVCMD_HYPERCALL: u64 = (48 << 16) | ((b'P' as u64) << 8);
const SCHED_OP: u64 = 29;
/// Hypercall numbers dom0 uses (weighted in) besides fully random ones.
const KNOWN: &[u64] = &[1, 12, 17, 18, 20, 21, 24, 29, 32, 33, 34, 35, 36, 37, 38, 40, 41];

#[repr(C)]
struct Hypercall {
    op: u64,
    arg: [u64; 5],
}

unsafe fn syscall(n: u64, a: u64, b: u64, c: u64, d: u64) -> i64 {
    let ret: i64;
    asm!("svc #0", in("x8") n, inlateout("x0") a as i64 => ret, in("x1") b, in("x2") c, in("x3") d, options(nostack));
    ret
}

fn write(s: &[u8]) {
    unsafe { syscall(64, 1, s.as_ptr() as u64, s.len() as u64, 0) };
}

fn write_num(n: u64) {
    write(decimal::decimal(n, &mut [0u8; 20]));
}

fn exit(code: u64) -> ! {
    unsafe { syscall(93, code, 0, 0, 0) };
    loop {}
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Argument buffers the pointer arguments point into (random bytes each call).
static mut BUF: [u64; 512] = [0; 512];

fn filtered(op: u64, cmd: u64) -> bool {
    op == SCHED_OP && matches!(cmd, 1..=6)
}

#[no_mangle]
pub extern "C" fn _start() -> ! {
    let path = b"/dev/xen/privcmd\0";
    let fd = unsafe { syscall(56, -100i64 as u64, path.as_ptr() as u64, 2, 0) };
    if fd < 0 {
        write(b"FUZZ-FAILED cannot open /dev/xen/privcmd\n");
        exit(1);
    }
    let mut rng = Rng(SEED);
    let (mut calls, mut ok, mut skipped) = (0u64, 0u64, 0u64);
    let buf = unsafe { &mut *core::ptr::addr_of_mut!(BUF) };
    while calls < CALLS {
        let r = rng.next();
        let op = match r % 4 {
            0 => r >> 8 & 0x3f,
            1 => rng.next(),
            _ => KNOWN[(r >> 8) as usize % KNOWN.len()],
        };
        let mut h = Hypercall { op, arg: [0; 5] };
        for (i, a) in h.arg.iter_mut().enumerate() {
            let r = rng.next();
            *a = match r % 5 {
                0 => r >> 8 & 0x3f,
                1 => rng.next(),
                2 if i == 0 => r >> 8 & 0xf,
                _ => buf.as_ptr() as u64 + ((r >> 8) % 448) * 8,
            };
        }
        if filtered(h.op, h.arg[0]) {
            skipped += 1;
            continue;
        }
        for w in buf.iter_mut() {
            let r = rng.next();
            *w = if r & 3 == 0 { r >> 58 } else { r };
        }
        let ret = unsafe { syscall(29, fd as u64, IOCTL_PRIVCMD_HYPERCALL, &h as *const Hypercall as u64, 0) };
        calls += 1;
        if ret >= 0 {
            ok += 1;
        }
    }
    write(b"FUZZ-DONE calls=");
    write_num(calls);
    write(b" ok=");
    write_num(ok);
    write(b" filtered=");
    write_num(skipped);
    write(b"\n");
    exit(0);
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    write(b"FUZZ-FAILED panic\n");
    exit(2);
}
