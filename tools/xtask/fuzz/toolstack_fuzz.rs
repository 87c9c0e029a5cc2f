//! A hostile dom0 userspace program aimed at the toolstack's hypercalls: 100 000 sysctl and
//! domctl calls through /dev/xen/privcmd (IOCTL_PRIVCMD_HYPERCALL), fixed seed, most of them
//! with the right interface version (0x15) so that they reach the commands: known command
//! numbers weighted in, domains 0, absent, reserved and random, payloads of random words and
//! of pointers into a buffer (guest handles, bitmaps, arrays) with small and huge counts.
//!
//! Domain 1 is the system test's dom0less domU, which must keep running (its heartbeats are
//! checked after the fuzzer): domctls aimed at it are limited to those that cannot stop it
//! ([`HARMLESS_ON_PROTECTED`]); the others go to domain 2 instead. Xen lets dom0 destroy,
//! pause or rewrite a domU, so those calls stopping it would be no fault of the hypervisor.
//!
//! The buffer is its own mapping with an unmapped page after it, so a hypervisor write that
//! runs past it faults there instead of landing on this program's stack or statics. Built by
//! xtask (linux.rs) like privcmd_fuzz.rs: rustc alone, aarch64-unknown-none, raw syscalls.
#![no_std]
#![no_main]

use core::arch::asm;

#[path = "decimal.rs"]
mod decimal;

const CALLS: u64 = 100_000;
const SEED: u64 = 0x5eed_0016_0000_0015;
/// _IOC(_IOC_NONE, 'P', 0, sizeof(struct privcmd_hypercall) = 48).
const IOCTL_PRIVCMD_HYPERCALL: u64 = (48 << 16) | ((b'P' as u64) << 8);
const SYSCTL: u64 = 35;
const DOMCTL: u64 = 36;
const VERSION: u64 = 0x15;
/// sysctl commands the toolstack uses, and a few more.
const SYSCTLS: &[u64] = &[1, 2, 3, 4, 6, 7, 8, 9, 16, 17, 18, 19, 22, 27];
/// domctl commands the toolstack uses, and a few more.
const DOMCTLS: &[u64] = &[1, 2, 3, 4, 5, 9, 11, 12, 13, 14, 15, 16, 17, 25, 35, 36, 68, 69, 71, 81, 85, 86];
/// Domain ids: dom0, absent ones, DOMID_SELF, DOMID_IO, DOMID_INVALID, the idle domain.
const DOMAINS: &[u64] = &[0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0x100, 0x7ff0, 0x7ff1, 0x7ff4, 0x7fff, 0xffff];
/// The running domU the system test checks afterwards.
const PROTECTED: u64 = 1;
/// The domctls sent to [`PROTECTED`] as drawn: reads, and changes that cannot stop a running
/// domain (createdomain of a taken id, unpause, handle, node affinity, cache flush, scheduler
/// parameters). Not: destroy, pause, setvcpucontext, setvcpuaffinity (the null scheduler may
/// leave it without a CPU), max_mem, max_vcpus, set_address_size, the paging pool's size, and
/// any other command.
const HARMLESS_ON_PROTECTED: &[u64] = &[1, 4, 5, 13, 14, 16, 17, 25, 36, 68, 69, 71, 85];
/// The buffer: 64 KiB, followed by an unmapped page.
const BUF_SIZE: u64 = 64 << 10;
const PAGE: u64 = 4096;

#[repr(C)]
struct Hypercall {
    op: u64,
    arg: [u64; 5],
}

unsafe fn syscall(n: u64, a: u64, b: u64, c: u64, d: u64, e: u64, f: u64) -> i64 {
    let ret: i64;
    asm!("svc #0", in("x8") n, inlateout("x0") a as i64 => ret, in("x1") b, in("x2") c, in("x3") d, in("x4") e, in("x5") f, options(nostack));
    ret
}

fn write(s: &[u8]) {
    unsafe { syscall(64, 1, s.as_ptr() as u64, s.len() as u64, 0, 0, 0) };
}

fn write_num(n: u64) {
    write(decimal::decimal(n, &mut [0u8; 20]));
}

fn exit(code: u64) -> ! {
    unsafe { syscall(93, code, 0, 0, 0, 0, 0) };
    loop {}
}

fn fail(why: &[u8]) -> ! {
    write(b"TSFUZZ-FAILED ");
    write(why);
    write(b"\n");
    exit(1);
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
    fn pick(&mut self, from: &[u64]) -> u64 {
        from[(self.next() >> 8) as usize % from.len()]
    }
}

/// One payload word: small numbers, huge ones, pointers into the buffer (as guest handles),
/// or a small count in the low half and a pointer-like high half.
fn word(rng: &mut Rng, buf: u64) -> u64 {
    let r = rng.next();
    match r % 6 {
        0 => r >> 60,
        1 => r >> 56,
        2 | 3 => buf + 0x1000 + ((r >> 8) % 0x1800) * 8,
        4 => (r >> 8) & 0xffff_ffff,
        _ => rng.next(),
    }
}

#[no_mangle]
pub extern "C" fn _start() -> ! {
    let path = b"/dev/xen/privcmd\0";
    let fd = unsafe { syscall(56, -100i64 as u64, path.as_ptr() as u64, 2, 0, 0, 0) };
    if fd < 0 {
        fail(b"cannot open /dev/xen/privcmd");
    }
    // mmap(NULL, BUF_SIZE + PAGE, RW, PRIVATE|ANONYMOUS), then unmap the last page.
    let buf = unsafe { syscall(222, 0, BUF_SIZE + PAGE, 3, 0x22, u64::MAX, 0) };
    if buf < 0 || unsafe { syscall(215, buf as u64 + BUF_SIZE, PAGE, 0, 0, 0, 0) } < 0 {
        fail(b"cannot map the buffer");
    }
    let buf = buf as u64;
    // Run again with one of these files present: pause, unpause or destroy the dom0less domU
    // (id 1), as Xen lets dom0 do, and say what the domctl returned.
    let once: [(&[u8], u64, &[u8]); 3] = [
        (b"/tmp/tsfuzz-pause\0", 3, b"tsfuzz-pause: d1 pausedomain "),
        (b"/tmp/tsfuzz-unpause\0", 4, b"tsfuzz-unpause: d1 unpausedomain "),
        (b"/tmp/tsfuzz-destroy\0", 2, b"tsfuzz-destroy: d1 destroydomain "),
    ];
    for (flag, cmd, say) in once {
        if unsafe { syscall(48, -100i64 as u64, flag.as_ptr() as u64, 0, 0, 0, 0) } != 0 {
            continue;
        }
        // SAFETY: the buffer mapped above.
        let w = unsafe { core::slice::from_raw_parts_mut(buf as *mut u64, 18) };
        w.fill(0);
        w[0] = cmd | VERSION << 32;
        w[1] = PROTECTED;
        let h = Hypercall { op: DOMCTL, arg: [buf, 0, 0, 0, 0] };
        let ret = unsafe { syscall(29, fd as u64, IOCTL_PRIVCMD_HYPERCALL, &h as *const Hypercall as u64, 0, 0, 0) };
        // One write for the line, so that the domU's console lines are not cut into it.
        let mut line = [0u8; 64];
        let mut n = 0;
        let mut num = [0u8; 20];
        let sign: &[u8] = if ret < 0 { b"-" } else { b"" };
        for part in [say, sign, decimal::decimal(ret.unsigned_abs(), &mut num), b"\n"] {
            line[n..n + part.len()].copy_from_slice(part);
            n += part.len();
        }
        write(&line[..n]);
        exit(0);
    }
    // SAFETY: the mapping just made, BUF_SIZE bytes, readable and writable.
    let words = unsafe { core::slice::from_raw_parts_mut(buf as *mut u64, (BUF_SIZE / 8) as usize) };
    let mut rng = Rng(SEED);
    let (mut calls, mut ok) = (0u64, 0u64);
    while calls < CALLS {
        // Fresh random bytes behind every handle.
        for w in words.iter_mut() {
            let r = rng.next();
            *w = if r & 3 == 0 { r >> 58 } else { r };
        }
        let r = rng.next();
        let op = if r & 1 == 0 { SYSCTL } else { DOMCTL };
        let cmd = match (r >> 1) % 4 {
            0 => rng.next() & 0xffff_ffff,
            1 => (r >> 8) & 0x7f,
            _ => rng.pick(if op == SYSCTL { SYSCTLS } else { DOMCTLS }),
        };
        let version = if (r >> 4) % 8 == 0 { rng.next() & 0xffff_ffff } else { VERSION };
        // The struct at the start of the buffer: header, then 16 payload words.
        words[0] = cmd | version << 32;
        let payload_at = if op == DOMCTL {
            let dom = if (r >> 7) % 4 == 0 { rng.next() & 0xffff } else { rng.pick(DOMAINS) };
            let dom = if dom == PROTECTED && !HARMLESS_ON_PROTECTED.contains(&cmd) { 2 } else { dom };
            words[1] = dom | (rng.next() & 0xffff_0000_0000_0000) * ((r >> 9) & 1);
            2
        } else {
            1
        };
        for i in 0..16 {
            words[payload_at + i] = word(&mut rng, buf);
        }
        // One createdomain in four gets a configuration Xen accepts (HVM|HAP, 1-4 vCPUs, grant
        // v1 with the default limits, the native GIC), so that domains really come and go and
        // the calls after it (ids 2-8) reach them.
        if op == DOMCTL && cmd == 1 && (r >> 20) % 4 == 0 {
            let vcpus = 1 + (r >> 22) % 4;
            // ssidref, handle[16], flags, iommu_opts, max_vcpus, max_evtchn_port,
            // max_grant_frames, max_maptrack_frames, grant_opts, vmtrace, cpupool, arch.
            let cfg: [u32; 17] = [0, 1, 2, 3, 4, 3, 0, vcpus as u32, 1023, u32::MAX, u32::MAX, 1, 0, 0, 0, 0, 0];
            for (i, pair) in cfg.chunks(2).enumerate() {
                words[payload_at + i] = u64::from(pair[0]) | pair.get(1).map_or(0, |&h| u64::from(h) << 32);
            }
        }
        // Mostly the buffer, sometimes a random or unmapped address.
        let arg = match (r >> 12) % 16 {
            0 => rng.next(),
            1 => buf + BUF_SIZE - 64,
            _ => buf,
        };
        let h = Hypercall { op, arg: [arg, rng.next(), rng.next(), 0, 0] };
        let ret = unsafe { syscall(29, fd as u64, IOCTL_PRIVCMD_HYPERCALL, &h as *const Hypercall as u64, 0, 0, 0) };
        calls += 1;
        if ret >= 0 {
            ok += 1;
        }
    }
    write(b"TSFUZZ-DONE calls=");
    write_num(calls);
    write(b" ok=");
    write_num(ok);
    write(b"\n");
    exit(0);
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    fail(b"panic");
}
