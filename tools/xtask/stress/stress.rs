//! The SMP dom0 stress suite: a dom0 userspace program that loads every CPU with Xen's dom0
//! interfaces at once and checks what comes back. Built by xtask (linux.rs) with rustc alone
//! for aarch64-unknown-none as a static Linux ELF (raw syscalls, no libc), put in the
//! initramfs; /init runs it when dom0's command line has `xenith-stress=SECS`.
//!
//! Workloads (one process per CPU each, pinned with sched_setaffinity, unless said otherwise):
//! - grant: gntalloc a page for dom0, fill it; every grant process gntdev-maps every other
//!   process's page (so several mappers hold one grant at once), checks the granter's data,
//!   writes its own stamp, unmaps; the granter checks every stamp and deallocates.
//! - balloon (one process): target_kb 8 MiB down and back, about every 2 s.
//! - evtchn: a ring of loopback interdomain channels inside dom0; bursts of notifies, the
//!   receiver reads the pending port and unmasks it. A burst none of whose notifies arrives is
//!   lost; an event on a port nobody notifies is an error.
//! - privcmd: deterministic hypercalls through /dev/xen/privcmd, recorded once before the load
//!   (and twice, to make sure they are deterministic), then repeated at random: any different
//!   return value or output byte is an error.
//! - memory: anonymous mmap, pattern write, verify, munmap.
//! - dma: /dev/vda (virtio-blk) written and read back with O_DIRECT in chunks, each chunk's
//!   checksum checked; each process owns a slice of the disk.
//!
//! Output: `STRESS-START`, then after the load `STRESS-LOAD-END`, one `STRESS <workload>
//! ops=N errors=N integrity=ok|bad ...` line per workload and `STRESS-DONE`. Errors are
//! described on `STRESS-ERR` lines (a few per process). Options on the kernel command line:
//! `xenith-stress=SECS` (default 30), `xenith-stress-only=grant,evtchn,...` (a subset).
#![no_std]
#![no_main]

use core::arch::asm;

#[path = "../fuzz/gntdev.rs"]
mod gntdev;
use gntdev::{GntdevMap, IOCTL_GNTDEV_MAP_GRANT_REF};
#[path = "../fuzz/decimal.rs"]
mod decimal;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};

// ---------------------------------------------------------------- system calls (arm64 Linux)

const SYS_IOCTL: u64 = 29;
const SYS_OPENAT: u64 = 56;
const SYS_CLOSE: u64 = 57;
const SYS_LSEEK: u64 = 62;
const SYS_READ: u64 = 63;
const SYS_WRITE: u64 = 64;
const SYS_PREAD64: u64 = 67;
const SYS_PWRITE64: u64 = 68;
const SYS_PPOLL: u64 = 73;
const SYS_EXIT: u64 = 93;
const SYS_NANOSLEEP: u64 = 101;
const SYS_CLOCK_GETTIME: u64 = 113;
const SYS_SCHED_SETAFFINITY: u64 = 122;
const SYS_SCHED_GETAFFINITY: u64 = 123;
const SYS_SCHED_YIELD: u64 = 124;
const SYS_KILL: u64 = 129;
const SYS_MUNMAP: u64 = 215;
const SYS_CLONE: u64 = 220;
const SYS_MMAP: u64 = 222;
const SYS_WAIT4: u64 = 260;

const AT_FDCWD: u64 = -100i64 as u64;
const O_RDONLY: u64 = 0;
const O_WRONLY: u64 = 1;
const O_RDWR: u64 = 2;
const O_NONBLOCK: u64 = 0o4000;
/// arm64's value (asm-generic's 0o40000 is O_DIRECTORY here).
const O_DIRECT: u64 = 0o200000;
const PROT_RW: u64 = 3;
const MAP_SHARED: u64 = 1;
const MAP_PRIVATE: u64 = 2;
const MAP_ANONYMOUS: u64 = 0x20;
const SIGCHLD: u64 = 17;
const SIGKILL: u64 = 9;
const WNOHANG: u64 = 1;
const CLOCK_MONOTONIC: u64 = 1;
const POLLIN: i16 = 1;

/// One Linux system call.
///
/// # Safety
/// The arguments must be valid for call `n`: every pointer points to memory the kernel may
/// read or write as that call defines.
unsafe fn raw(n: u64, a: u64, b: u64, c: u64, d: u64, e: u64, f: u64) -> i64 {
    let ret: i64;
    // SAFETY: `svc #0` enters the kernel, which reads x8 and x0-x5 and returns in x0; it
    // touches memory only as call `n` defines (the caller's contract).
    unsafe {
        asm!("svc #0", in("x8") n, inlateout("x0") a as i64 => ret, in("x1") b, in("x2") c,
             in("x3") d, in("x4") e, in("x5") f, options(nostack));
    }
    ret
}

/// A call whose arguments are plain numbers (no pointer the kernel dereferences).
fn sys(n: u64, a: u64, b: u64, c: u64) -> i64 {
    // SAFETY: used only for calls that take no pointer (close, exit, kill, sched_yield, ...).
    unsafe { raw(n, a, b, c, 0, 0, 0) }
}

fn write_fd(fd: u64, s: &[u8]) -> i64 {
    // SAFETY: the kernel reads s.len() bytes from s.
    unsafe { raw(SYS_WRITE, fd, s.as_ptr() as u64, s.len() as u64, 0, 0, 0) }
}

fn read_fd(fd: u64, buf: &mut [u8]) -> i64 {
    // SAFETY: the kernel writes at most buf.len() bytes into buf.
    unsafe { raw(SYS_READ, fd, buf.as_mut_ptr() as u64, buf.len() as u64, 0, 0, 0) }
}

/// `path` must end with a NUL byte.
fn open(path: &[u8], flags: u64) -> i64 {
    if path.last() != Some(&0) {
        return -22;
    }
    // SAFETY: path is a NUL-terminated string the kernel only reads.
    unsafe { raw(SYS_OPENAT, AT_FDCWD, path.as_ptr() as u64, flags, 0, 0, 0) }
}

fn close(fd: i64) {
    sys(SYS_CLOSE, fd as u64, 0, 0);
}

/// An ioctl whose argument is one `T` the kernel reads and/or writes (its size is the one
/// encoded in `req`).
fn ioctl<T>(fd: i64, req: u64, arg: &mut T) -> i64 {
    // SAFETY: arg is a valid, exclusive T; every request used here moves exactly size_of::<T>() bytes.
    unsafe { raw(SYS_IOCTL, fd as u64, req, arg as *mut T as u64, 0, 0, 0) }
}

/// mmap; the address or a negative errno.
fn mmap(len: u64, flags: u64, fd: i64, off: u64) -> i64 {
    // SAFETY: a new mapping at an address the kernel picks: no existing memory is touched.
    unsafe { raw(SYS_MMAP, 0, len, PROT_RW, flags, fd as u64, off) }
}

fn is_err(r: i64) -> bool {
    (-4095..0).contains(&r)
}

/// A mapping this program made (anonymous, gntalloc or gntdev), seen as u64 words.
struct Map {
    addr: u64,
    len: u64,
}

impl Map {
    fn new(len: u64, flags: u64, fd: i64, off: u64) -> Result<Map, i64> {
        let a = mmap(len, flags, fd, off);
        if is_err(a) {
            Err(a)
        } else {
            Ok(Map { addr: a as u64, len })
        }
    }
    fn anon(len: u64) -> Result<Map, i64> {
        Self::new(len, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    }
    fn words(&mut self) -> &mut [u64] {
        // SAFETY: [addr, addr + len) is a readable and writable mapping owned by self until drop.
        unsafe { core::slice::from_raw_parts_mut(self.addr as *mut u64, (self.len / 8) as usize) }
    }
    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: as for words.
        unsafe { core::slice::from_raw_parts_mut(self.addr as *mut u8, self.len as usize) }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: the mapping is this Map's; no slice of it outlives self.
        unsafe { raw(SYS_MUNMAP, self.addr, self.len, 0, 0, 0, 0) };
    }
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

fn now_ns() -> u64 {
    let mut t = Timespec { sec: 0, nsec: 0 };
    // SAFETY: the kernel writes one timespec into t.
    unsafe { raw(SYS_CLOCK_GETTIME, CLOCK_MONOTONIC, &mut t as *mut Timespec as u64, 0, 0, 0, 0) };
    t.sec as u64 * 1_000_000_000 + t.nsec as u64
}

fn sleep_ms(ms: u64) {
    sleep_us(ms * 1000)
}

fn sleep_us(us: u64) {
    let t = Timespec { sec: (us / 1_000_000) as i64, nsec: ((us % 1_000_000) * 1000) as i64 };
    // SAFETY: the kernel reads one timespec; no remainder is asked for.
    unsafe { raw(SYS_NANOSLEEP, &t as *const Timespec as u64, 0, 0, 0, 0, 0) };
}

fn exit(code: u64) -> ! {
    sys(SYS_EXIT, code, 0, 0);
    loop {}
}

/// fork(): 0 in the child, the child's pid in the parent, or a negative errno.
fn fork() -> i64 {
    // SAFETY: clone without CLONE_VM or a new stack is fork: the child gets a copy of
    // everything, nothing is shared but MAP_SHARED mappings.
    unsafe { raw(SYS_CLONE, SIGCHLD, 0, 0, 0, 0, 0) }
}

fn pin_to_cpu(cpu: usize) -> i64 {
    let mask: u64 = 1 << cpu;
    // SAFETY: the kernel reads 8 bytes of CPU mask.
    unsafe { raw(SYS_SCHED_SETAFFINITY, 0, 8, &mask as *const u64 as u64, 0, 0, 0) }
}

/// The CPUs this process may run on (as many as `MAXCPU` at most).
fn cpus() -> usize {
    let mut mask: [u64; 16] = [0; 16];
    // SAFETY: the kernel writes at most 128 bytes of CPU mask.
    let r = unsafe { raw(SYS_SCHED_GETAFFINITY, 0, 128, mask.as_mut_ptr() as u64, 0, 0, 0) };
    if r <= 0 {
        return 1;
    }
    let n: u32 = mask.iter().map(|w| w.count_ones()).sum();
    (n as usize).clamp(1, MAXCPU)
}

/// struct rusage (arm64): user and system time, then 14 counters.
#[repr(C)]
struct Rusage {
    utime: Timeval,
    stime: Timeval,
    rest: [i64; 14],
}
#[repr(C)]
struct Timeval {
    sec: i64,
    usec: i64,
}
const _: () = assert!(core::mem::size_of::<Rusage>() == 144);

/// wait4(pid or -1, options): (pid, status, CPU time the child used in ms), pid 0 when nothing
/// changed under WNOHANG.
fn wait(pid: i64, options: u64) -> (i64, u32, u64) {
    let mut status: u32 = 0;
    let mut ru = Rusage { utime: Timeval { sec: 0, usec: 0 }, stime: Timeval { sec: 0, usec: 0 }, rest: [0; 14] };
    // SAFETY: the kernel writes one int of status and one struct rusage.
    let r = unsafe { raw(SYS_WAIT4, pid as u64, &mut status as *mut u32 as u64, options, &mut ru as *mut Rusage as u64, 0, 0) };
    let ms = |t: &Timeval| (t.sec.max(0) as u64) * 1000 + (t.usec.max(0) as u64) / 1000;
    (r, status, ms(&ru.utime) + ms(&ru.stime))
}

/// The first eight fields of /proc/stat's `cpu` line (USER_HZ = 100 ticks a second).
const CPU_FIELDS: [&str; 8] = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"];

fn cpu_times() -> Option<[u64; 8]> {
    let mut buf = [0u8; 256];
    let fd = open(b"/proc/stat\0", O_RDONLY);
    if fd < 0 {
        return None;
    }
    let n = read_fd(fd as u64, &mut buf).max(0) as usize;
    close(fd);
    let line = buf[..n].split(|&c| c == b'\n').next()?;
    let mut fields = line.split(|&c| c == b' ').filter(|f| !f.is_empty()).skip(1);
    let mut out = [0u64; 8];
    for v in out.iter_mut() {
        *v = parse_u64(fields.next()?)?;
    }
    Some(out)
}

// ---------------------------------------------------------------- output

/// One console line, written with a single write() so that processes do not interleave.
struct Line {
    buf: [u8; 1000],
    len: usize,
}

impl Line {
    fn new() -> Self {
        Line { buf: [0; 1000], len: 0 }
    }
    fn s(&mut self, s: &str) -> &mut Self {
        self.b(s.as_bytes())
    }
    fn b(&mut self, s: &[u8]) -> &mut Self {
        for &c in s {
            if self.len < self.buf.len() - 1 {
                self.buf[self.len] = c;
                self.len += 1;
            }
        }
        self
    }
    fn n(&mut self, v: u64) -> &mut Self {
        self.b(decimal::decimal(v, &mut [0u8; 20]))
    }
    fn i(&mut self, v: i64) -> &mut Self {
        if v < 0 {
            self.s("-").n(v.unsigned_abs())
        } else {
            self.n(v as u64)
        }
    }
    fn out(&mut self) {
        self.buf[self.len] = b'\n';
        write_fd(1, &self.buf[..self.len + 1]);
        self.len = 0;
    }
}

// ---------------------------------------------------------------- shared state

const MAXCPU: usize = 16;
const GRANT: usize = 0;
const BALLOON: usize = 1;
const EVTCHN: usize = 2;
const PRIVCMD: usize = 3;
const MEMORY: usize = 4;
const DMA: usize = 5;
const NAMES: [&str; 6] = ["grant", "balloon", "evtchn", "privcmd", "memory", "dma"];

/// One process's counters, updated as it goes (so a process that hangs still reports).
#[repr(C)]
struct Res {
    ops: AtomicU64,
    /// Operations that failed (an ioctl or syscall error, a timeout, a lost burst).
    errors: AtomicU64,
    /// Data that came back wrong (a pattern, stamp, checksum or hypercall result).
    corrupt: AtomicU64,
    /// Workload-specific extras (see `report`).
    a: AtomicU64,
    b: AtomicU64,
    /// Error lines this process printed (capped).
    printed: AtomicU64,
}

/// A grant process's offer: the grant it allocated this cycle, for every grant process to map.
#[repr(C)]
struct Slot {
    /// READY while mappers may map `gref` of `cycle`.
    state: AtomicU32,
    gref: AtomicU32,
    cycle: AtomicU32,
    /// Mappers between deciding to look at the slot and finishing with it.
    active: AtomicU32,
    /// Mappers that mapped, checked, stamped and unmapped this cycle.
    done: AtomicU32,
    /// Mappers holding the page mapped right now, and the most seen at once.
    mapped: AtomicU32,
    max_mapped: AtomicU32,
}

/// The event channel from evtchn process i to its successor (i + 1) % n.
#[repr(C)]
struct Chan {
    /// The successor's unbound port that process i binds to (0 until published).
    port: AtomicU32,
    /// The sender's current burst number, and the highest the receiver saw an event for.
    seq: AtomicU64,
    acked: AtomicU64,
}

#[repr(C)]
struct Shared {
    stop: AtomicU32,
    go: AtomicU32,
    ready: AtomicU32,
    res: [[Res; MAXCPU]; 6],
    slots: [Slot; MAXCPU],
    chans: [Chan; MAXCPU],
}

const READY: u32 = 1;
const IDLE: u32 = 0;

/// What every worker gets.
struct Ctx {
    sh: &'static Shared,
    /// This process's CPU, and how many processes its workload has.
    cpu: usize,
    n: usize,
    w: usize,
}

impl Ctx {
    fn res(&self) -> &Res {
        &self.sh.res[self.w][self.cpu]
    }
    fn stopping(&self) -> bool {
        self.sh.stop.load(Relaxed) != 0
    }
    fn ops(&self, k: u64) {
        self.res().ops.fetch_add(k, Relaxed);
    }
    /// Count an error (or corruption) and describe the first few.
    fn fail(&self, corrupt: bool, what: &str, v: i64) {
        self.fail_with(corrupt, what, "", v)
    }
    /// As `fail`, the description in two parts (e.g. a hypercall's name and what differed).
    fn fail_with(&self, corrupt: bool, what: &str, detail: &str, v: i64) {
        let r = self.res();
        if corrupt {
            r.corrupt.fetch_add(1, Relaxed);
        } else {
            r.errors.fetch_add(1, Relaxed);
        }
        if r.printed.fetch_add(1, Relaxed) < 4 {
            Line::new().s("STRESS-ERR ").s(NAMES[self.w]).s(" cpu=").n(self.cpu as u64).s(" ").s(what).s(detail).s(" ").i(v).out();
        }
    }
    /// Setup done: wait for the parent's start signal.
    fn ready(&self) {
        self.sh.ready.fetch_add(1, SeqCst);
        while self.sh.go.load(SeqCst) == 0 && !self.stopping() {
            sleep_ms(5);
        }
    }
}

// ---------------------------------------------------------------- helpers

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// splitmix64: the data patterns (any word tells where it belongs).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn checksum(words: &[u64]) -> u64 {
    words.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &w| (h ^ w).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(5))
}

fn parse_u64(s: &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    let mut any = false;
    for &c in s {
        if !c.is_ascii_digit() {
            break;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
        any = true;
    }
    any.then_some(v)
}

/// The value of `key` (e.g. b"xenith-stress=") on the kernel command line.
fn cmdline_value<'a>(cmdline: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    cmdline.split(|&c| c == b' ' || c == b'\n').find_map(|w| w.strip_prefix(key))
}

/// A small sysfs file as a number.
fn read_number(path: &[u8]) -> Option<u64> {
    let fd = open(path, O_RDONLY);
    if fd < 0 {
        return None;
    }
    let mut buf = [0u8; 32];
    let n = read_fd(fd as u64, &mut buf);
    close(fd);
    if n <= 0 {
        return None;
    }
    parse_u64(&buf[..n as usize])
}

fn write_number(path: &[u8], v: u64) -> i64 {
    let fd = open(path, O_WRONLY);
    if fd < 0 {
        return fd;
    }
    let mut l = Line::new();
    l.n(v);
    let r = write_fd(fd as u64, &l.buf[..l.len]);
    close(fd);
    r
}

// ---------------------------------------------------------------- grant

/// _IOC(_IOC_NONE, 'G', nr, size).
const fn ioc(ty: u8, nr: u64, size: u64) -> u64 {
    (size << 16) | ((ty as u64) << 8) | nr
}

#[repr(C)]
struct GntallocAlloc {
    domid: u16,
    flags: u16,
    count: u32,
    index: u64,
    gref: u32,
}
#[repr(C)]
struct GntallocDealloc {
    index: u64,
    count: u32,
}
#[repr(C)]
struct GntdevUnmap {
    index: u64,
    count: u32,
    pad: u32,
}
const IOCTL_GNTALLOC_ALLOC_GREF: u64 = ioc(b'G', 5, core::mem::size_of::<GntallocAlloc>() as u64);
const IOCTL_GNTALLOC_DEALLOC_GREF: u64 = ioc(b'G', 6, core::mem::size_of::<GntallocDealloc>() as u64);
const IOCTL_GNTDEV_UNMAP_GRANT_REF: u64 = ioc(b'G', 1, core::mem::size_of::<GntdevUnmap>() as u64);
const GNTALLOC_FLAG_WRITABLE: u16 = 1;
const _: () = assert!(IOCTL_GNTALLOC_ALLOC_GREF == 0x0018_4705 && IOCTL_GNTDEV_MAP_GRANT_REF == 0x0018_4700);
const _: () = assert!(IOCTL_GNTALLOC_DEALLOC_GREF == 0x0010_4706 && IOCTL_GNTDEV_UNMAP_GRANT_REF == 0x0010_4701);

/// Page layout: words 0..256 the granter's pattern, then 16 words of stamp per mapper.
const GRANTER_WORDS: usize = 256;
const STAMP_WORDS: usize = 16;

fn grant_word(owner: usize, cycle: u32, i: usize) -> u64 {
    mix(((owner as u64) << 56) ^ ((cycle as u64) << 24) ^ i as u64)
}
fn stamp_word(mapper: usize, owner: usize, cycle: u32, i: usize) -> u64 {
    mix(0x5a5a_0000_0000_0000 ^ ((mapper as u64) << 48) ^ ((owner as u64) << 40) ^ ((cycle as u64) << 8) ^ i as u64)
}

/// Guest time (ns) a grant process spends in each phase of its cycles, printed at the end:
/// where a cycle's time goes (the kernel's and the hypervisor's parts included).
#[derive(Default)]
struct Phases {
    alloc: u64,
    map_ioctl: u64,
    mmap: u64,
    touch: u64,
    munmap: u64,
    unmap_ioctl: u64,
    withdraw: u64,
    sleep: u64,
    dealloc: u64,
    sleeps: u64,
}

/// A grant this process offers: its gntalloc index and mapping.
struct Offer {
    index: u64,
    page: Map,
    cycle: u32,
    since: u64,
}

fn grant(c: &Ctx) {
    let ga = open(b"/dev/xen/gntalloc\0", O_RDWR);
    let gd = open(b"/dev/xen/gntdev\0", O_RDWR);
    if ga < 0 || gd < 0 {
        c.fail(false, "cannot open /dev/xen/gntalloc or gntdev", ga.min(gd));
        c.ready();
        return;
    }
    c.ready();
    let me = c.cpu;
    let mine = &c.sh.slots[me];
    let mut served = [u32::MAX; MAXCPU];
    let mut offer: Option<Offer> = None;
    let mut cycle: u32 = 0;
    let mut ph = Phases::default();
    while !c.stopping() {
        if offer.is_none() {
            let t0 = now_ns();
            let mut a = GntallocAlloc { domid: 0, flags: GNTALLOC_FLAG_WRITABLE, count: 1, index: 0, gref: 0 };
            let r = ioctl(ga, IOCTL_GNTALLOC_ALLOC_GREF, &mut a);
            if r < 0 {
                c.fail(false, "gntalloc alloc", r);
                sleep_ms(10);
                continue;
            }
            let mut page = match Map::new(4096, MAP_SHARED, ga, a.index) {
                Ok(m) => m,
                Err(e) => {
                    c.fail(false, "gntalloc mmap", e);
                    let mut d = GntallocDealloc { index: a.index, count: 1 };
                    ioctl(ga, IOCTL_GNTALLOC_DEALLOC_GREF, &mut d);
                    sleep_ms(10);
                    continue;
                }
            };
            let w = page.words();
            for (i, x) in w.iter_mut().enumerate() {
                *x = if i < GRANTER_WORDS { grant_word(me, cycle, i) } else { 0 };
            }
            mine.gref.store(a.gref, SeqCst);
            mine.cycle.store(cycle, SeqCst);
            mine.done.store(0, SeqCst);
            mine.state.store(READY, SeqCst);
            ph.alloc += now_ns() - t0;
            offer = Some(Offer { index: a.index, page, cycle, since: now_ns() });
        }
        // Serve every offer (this process's own too), starting after this one.
        let mut progress = false;
        for k in 1..=c.n {
            let s = (me + k) % c.n;
            let slot = &c.sh.slots[s];
            // Announce first, then look: an offer seen READY stays as it is (gref, cycle) until
            // this process is done with it, since the granter withdraws only once `active` is 0.
            slot.active.fetch_add(1, SeqCst);
            if slot.state.load(SeqCst) == READY {
                let cyc = slot.cycle.load(SeqCst);
                if served[s] != cyc {
                    served[s] = cyc;
                    map_and_check(c, gd, s, slot, cyc, &mut ph);
                    progress = true;
                }
            }
            slot.active.fetch_sub(1, SeqCst);
        }
        let (done, expired) = match &offer {
            Some(o) => (mine.done.load(SeqCst) as usize, now_ns() - o.since > 20_000_000_000),
            None => continue,
        };
        if done < c.n && !expired {
            if !progress {
                // Waiting for other processes: sleep briefly, so that they (which share their
                // CPUs with the CPU-bound workloads) get to run, as a blocked thread would.
                let t0 = now_ns();
                sleep_us(200);
                ph.sleep += now_ns() - t0;
                ph.sleeps += 1;
            }
            continue;
        }
        if done < c.n {
            c.fail(false, "grant cycle timed out, mappers done", done as i64);
        }
        let Some(mut o) = offer.take() else { continue };
        let t0 = now_ns();
        withdraw(mine);
        ph.withdraw += now_ns() - t0;
        if done == c.n {
            let w = o.page.words();
            let mut bad = 0;
            for m in 0..c.n {
                for i in 0..STAMP_WORDS {
                    if w[GRANTER_WORDS + m * STAMP_WORDS + i] != stamp_word(m, me, o.cycle, i) {
                        bad += 1;
                    }
                }
            }
            if bad > 0 {
                c.fail(true, "mapper stamps wrong in the granted page, words", bad);
            } else {
                c.ops(1);
            }
        }
        let t0 = now_ns();
        let index = o.index;
        drop(o);
        let mut d = GntallocDealloc { index, count: 1 };
        let r = ioctl(ga, IOCTL_GNTALLOC_DEALLOC_GREF, &mut d);
        if r < 0 {
            c.fail(false, "gntalloc dealloc", r);
        }
        ph.dealloc += now_ns() - t0;
        cycle = cycle.wrapping_add(1);
    }
    if let Some(o) = offer.take() {
        withdraw(mine);
        let index = o.index;
        drop(o);
        let mut d = GntallocDealloc { index, count: 1 };
        ioctl(ga, IOCTL_GNTALLOC_DEALLOC_GREF, &mut d);
    }
    let m: u64 = c.sh.slots[me].max_mapped.load(Relaxed) as u64;
    c.res().b.fetch_max(m, Relaxed);
    let ms = |v: u64| v / 1_000_000;
    Line::new().s("STRESS-INFO grant cpu").n(me as u64).s(" phase_ms alloc=").n(ms(ph.alloc)).s(" map_ioctl=").n(ms(ph.map_ioctl))
        .s(" mmap=").n(ms(ph.mmap)).s(" touch=").n(ms(ph.touch)).s(" munmap=").n(ms(ph.munmap)).s(" unmap_ioctl=").n(ms(ph.unmap_ioctl))
        .s(" withdraw=").n(ms(ph.withdraw)).s(" sleep=").n(ms(ph.sleep)).s(" sleeps=").n(ph.sleeps).s(" dealloc=").n(ms(ph.dealloc)).out();
}

/// Stop offering: no new mapper starts, and those that started are finished.
fn withdraw(slot: &Slot) {
    slot.state.store(IDLE, SeqCst);
    while slot.active.load(SeqCst) != 0 {
        sys(SYS_SCHED_YIELD, 0, 0, 0);
    }
}

/// Map grant process `s`'s offered page, check its pattern, stamp it, unmap.
fn map_and_check(c: &Ctx, gd: i64, s: usize, slot: &Slot, cyc: u32, ph: &mut Phases) {
    let mut m = GntdevMap { count: 1, pad: 0, index: 0, domid: 0, gref: slot.gref.load(SeqCst) };
    let t0 = now_ns();
    let r = ioctl(gd, IOCTL_GNTDEV_MAP_GRANT_REF, &mut m);
    let t1 = now_ns();
    ph.map_ioctl += t1 - t0;
    if r < 0 {
        c.fail(false, "gntdev map ioctl", r);
        return;
    }
    let mapped = Map::new(4096, MAP_SHARED, gd, m.index);
    let t2 = now_ns();
    ph.mmap += t2 - t1;
    match mapped {
        Ok(mut page) => {
            let now = slot.mapped.fetch_add(1, SeqCst) + 1;
            slot.max_mapped.fetch_max(now, Relaxed);
            let w = page.words();
            let bad = (0..GRANTER_WORDS).filter(|&i| w[i] != grant_word(s, cyc, i)).count();
            for i in 0..STAMP_WORDS {
                w[GRANTER_WORDS + c.cpu * STAMP_WORDS + i] = stamp_word(c.cpu, s, cyc, i);
            }
            slot.mapped.fetch_sub(1, SeqCst);
            let t3 = now_ns();
            ph.touch += t3 - t2;
            drop(page);
            ph.munmap += now_ns() - t3;
            if bad > 0 {
                c.fail(true, "granted page read through gntdev differs, words", bad as i64);
            }
            c.res().a.fetch_add(1, Relaxed);
        }
        Err(e) => c.fail(false, "gntdev mmap", e),
    }
    let mut u = GntdevUnmap { index: m.index, count: 1, pad: 0 };
    let t4 = now_ns();
    let r = ioctl(gd, IOCTL_GNTDEV_UNMAP_GRANT_REF, &mut u);
    ph.unmap_ioctl += now_ns() - t4;
    if r < 0 {
        c.fail(false, "gntdev unmap ioctl", r);
    }
    slot.done.fetch_add(1, SeqCst);
}

// ---------------------------------------------------------------- balloon

const TARGET_KB: &[u8] = b"/sys/devices/system/xen_memory/xen_memory0/target_kb\0";
const CURRENT_KB: &[u8] = b"/sys/devices/system/xen_memory/xen_memory0/info/current_kb\0";
const SCHEDULE_DELAY: &[u8] = b"/sys/devices/system/xen_memory/xen_memory0/schedule_delay\0";
const RETRY_COUNT: &[u8] = b"/sys/devices/system/xen_memory/xen_memory0/retry_count\0";
const BALLOON_STEP_KB: u64 = 8192;

/// One /proc/meminfo field in kB (-1 when unreadable).
fn meminfo(key: &[u8]) -> i64 {
    let mut buf = [0u8; 2048];
    let fd = open(b"/proc/meminfo\0", O_RDONLY);
    if fd < 0 {
        return -1;
    }
    let n = read_fd(fd as u64, &mut buf).max(0) as usize;
    close(fd);
    for line in buf[..n].split(|&c| c == b'\n') {
        if let Some(rest) = line.strip_prefix(key) {
            let digits = rest.iter().position(|c| c.is_ascii_digit()).map_or(&rest[..0], |at| &rest[at..]);
            return parse_u64(digits).map_or(-1, |v| v as i64);
        }
    }
    -1
}

/// Pages that dom0's own grant mappings hold out of its reservation at a given moment (gntdev
/// takes the pages it maps grants into from the balloon, and the balloon driver repopulates
/// them after the unmap): the most by which dom0 may stay short of a raised target.
const BALLOON_SLACK_KB: u64 = 1024;

/// Set the target and wait until dom0 holds it (within 20 s): down to at most `kb`, or back up
/// to `kb` less the slack. The phase's milliseconds, or None on an error or a stop.
fn balloon_to(c: &Ctx, kb: u64, down: bool) -> Option<u64> {
    let r = write_number(TARGET_KB, kb);
    if r < 0 {
        c.fail(false, "write target_kb", r);
        return None;
    }
    let t0 = now_ns();
    loop {
        let cur = read_number(CURRENT_KB);
        let reached = match cur {
            Some(cur) if down => cur <= kb,
            Some(cur) => cur + BALLOON_SLACK_KB >= kb,
            None => false,
        };
        if reached {
            return Some((now_ns() - t0) / 1_000_000);
        }
        if c.stopping() {
            // Not an error (the load ended first), but worth seeing when no cycle completed.
            let what = if down { "STRESS-INFO balloon down to target_kb " } else { "STRESS-INFO balloon up to target_kb " };
            Line::new().s(what).n(kb).s(" unfinished at the stop after ").n((now_ns() - t0) / 1_000_000).s(" ms; current_kb ").i(cur.map_or(-1, |v| v as i64)).out();
            return None;
        }
        if now_ns() - t0 > 20_000_000_000 {
            let what = if down { "balloon down: target_kb not reached in 20 s; current_kb" } else { "balloon up: target_kb not reached in 20 s; current_kb" };
            c.fail(false, what, cur.map_or(-1, |v| v as i64));
            return None;
        }
        sleep_ms(20);
    }
}

fn balloon(c: &Ctx) {
    let base = read_number(TARGET_KB);
    let current = read_number(CURRENT_KB);
    c.ready();
    let (Some(base), Some(current)) = (base, current) else {
        c.fail(false, "cannot read target_kb / info/current_kb", -2);
        return;
    };
    if base != current {
        c.fail(false, "dom0 is not at its balloon target before the load, current_kb", current as i64);
    }
    // A cycle: 8 MiB down, hold, back up, hold; about 2 s when the driver keeps up.
    let hold = |since: u64| {
        while now_ns() - since < 1_000_000_000 && !c.stopping() {
            sleep_ms(20);
        }
    };
    // Every completed step's time, printed at the end (what a slow cycle waited on).
    let mut steps = Line::new();
    steps.s("STRESS-INFO balloon steps_ms");
    while !c.stopping() {
        let t0 = now_ns();
        let (free, cma) = (meminfo(b"MemFree:"), meminfo(b"CmaFree:"));
        let Some(down_ms) = balloon_to(c, base - BALLOON_STEP_KB, true) else {
            hold(t0);
            continue;
        };
        steps.s(" down=").n(down_ms).s("(free_kb=").i(free).s(",cma_kb=").i(cma).s(")");
        hold(t0);
        let t1 = now_ns();
        let Some(up_ms) = balloon_to(c, base, false) else {
            hold(t1);
            continue;
        };
        steps.s(" up=").n(up_ms);
        c.ops(1);
        c.res().b.fetch_max(down_ms.max(up_ms), Relaxed);
        hold(t1);
    }
    // Linux's balloon back-off (seconds before it retries a step that found no pages).
    steps.s(" schedule_delay=").i(read_number(SCHEDULE_DELAY).map_or(-1, |v| v as i64));
    steps.s(" retry_count=").i(read_number(RETRY_COUNT).map_or(-1, |v| v as i64));
    steps.out();
    // Leave dom0 as it was (not waited for: the load is over).
    write_number(TARGET_KB, base);
}

// ---------------------------------------------------------------- evtchn

#[repr(C)]
struct EvtchnPort {
    port: u32,
}
#[repr(C)]
struct EvtchnInterdomain {
    remote_domain: u32,
    remote_port: u32,
}
const IOCTL_EVTCHN_BIND_INTERDOMAIN: u64 = ioc(b'E', 1, 8);
const IOCTL_EVTCHN_BIND_UNBOUND_PORT: u64 = ioc(b'E', 2, 4);
const IOCTL_EVTCHN_NOTIFY: u64 = ioc(b'E', 4, 4);

#[repr(C)]
struct PollFd {
    fd: i32,
    events: i16,
    revents: i16,
}

fn evtchn(c: &Ctx) {
    let fd = open(b"/dev/xen/evtchn\0", O_RDWR | O_NONBLOCK);
    if fd < 0 {
        c.fail(false, "cannot open /dev/xen/evtchn", fd);
        c.ready();
        return;
    }
    let me = c.cpu;
    let pred = (me + c.n - 1) % c.n;
    // The port the predecessor notifies, published for it to bind to; and one that nobody binds.
    let mut p = EvtchnPort { port: 0 };
    let recv = ioctl(fd, IOCTL_EVTCHN_BIND_UNBOUND_PORT, &mut p);
    let mut q = EvtchnPort { port: 0 };
    let idle = ioctl(fd, IOCTL_EVTCHN_BIND_UNBOUND_PORT, &mut q);
    if recv <= 0 || idle <= 0 {
        c.fail(false, "bind unbound port", recv.min(idle));
        c.ready();
        return;
    }
    c.sh.chans[pred].port.store(recv as u32, SeqCst);
    let t0 = now_ns();
    let target = loop {
        let t = c.sh.chans[me].port.load(SeqCst);
        if t != 0 {
            break t;
        }
        if now_ns() - t0 > 30_000_000_000 || c.stopping() {
            c.fail(false, "successor never published its port", 0);
            c.ready();
            return;
        }
        sleep_ms(2);
    };
    let mut b = EvtchnInterdomain { remote_domain: 0, remote_port: target };
    let send = ioctl(fd, IOCTL_EVTCHN_BIND_INTERDOMAIN, &mut b);
    c.ready();
    if send <= 0 {
        c.fail(false, "bind interdomain", send);
        return;
    }
    let out = &c.sh.chans[me];
    let inc = &c.sh.chans[pred];
    let mut rng = Rng(0x1234_5678 ^ ((me as u64 + 1) << 32));
    let mut seq: u64 = 0;
    let mut outstanding: Option<u64> = None;
    let (mut sent, mut received) = (0u64, 0u64);
    let mut ports = [0u32; 64];
    while !c.stopping() {
        if outstanding.is_none() {
            seq += 1;
            out.seq.store(seq, SeqCst);
            let burst = 1 + rng.next() % 8;
            for _ in 0..burst {
                let mut n = EvtchnPort { port: send as u32 };
                let r = ioctl(fd, IOCTL_EVTCHN_NOTIFY, &mut n);
                if r < 0 {
                    c.fail(false, "notify", r);
                } else {
                    sent += 1;
                }
            }
            outstanding = Some(now_ns());
        }
        let mut pfd = PollFd { fd: fd as i32, events: POLLIN, revents: 0 };
        let tmo = Timespec { sec: 0, nsec: 2_000_000 };
        // SAFETY: one pollfd the kernel reads and writes, a timeout it reads, no signal mask.
        unsafe { raw(SYS_PPOLL, &mut pfd as *mut PollFd as u64, 1, &tmo as *const Timespec as u64, 0, 8, 0) };
        // SAFETY: the kernel writes at most size_of_val(&ports) bytes of port numbers.
        let got = unsafe { raw(SYS_READ, fd as u64, ports.as_mut_ptr() as u64, core::mem::size_of_val(&ports) as u64, 0, 0, 0) };
        if got > 0 {
            let k = got as usize / 4;
            for &port in &ports[..k] {
                if port == recv as u32 {
                    received += 1;
                    inc.acked.fetch_max(inc.seq.load(SeqCst), SeqCst);
                } else if port == send as u32 {
                    // Binding an interdomain channel sets its local end pending once (in
                    // case the remote end was notified before the bind): expected, ignored.
                } else {
                    c.fail(false, "event on a port nobody notifies", port as i64);
                }
            }
            // Unmask what was read.
            // SAFETY: the kernel reads k port numbers.
            let r = unsafe { raw(SYS_WRITE, fd as u64, ports.as_ptr() as u64, (k * 4) as u64, 0, 0, 0) };
            if r < 0 {
                c.fail(false, "unmask (write)", r);
            }
        } else if got < 0 && got != -11 {
            c.fail(false, "read", got);
        }
        if let Some(since) = outstanding {
            if out.acked.load(SeqCst) >= seq {
                outstanding = None;
                c.ops(1);
            } else if now_ns() - since > 10_000_000_000 && !c.stopping() {
                c.fail(false, "burst lost (no event in 10 s), burst", seq as i64);
                outstanding = None;
            }
        }
        c.res().a.store(sent, Relaxed);
        c.res().b.store(received, Relaxed);
    }
    close(fd);
}

// ---------------------------------------------------------------- privcmd

#[repr(C)]
struct PrivcmdHypercall {
    op: u64,
    arg: [u64; 5],
}
const IOCTL_PRIVCMD_HYPERCALL: u64 = ioc(b'P', 0, 48);
const _: () = assert!(core::mem::size_of::<PrivcmdHypercall>() == 48);

const CALL_BUF: usize = 2048;
const DOMID_SELF: u64 = 0x7ff0;

/// A deterministic hypercall: number, first argument (the command), where the buffer goes, and
/// a byte range of the buffer whose value may legitimately change under the load (not compared).
#[derive(Clone, Copy)]
struct Call {
    name: &'static str,
    op: u64,
    cmd: u64,
    buf: Buf,
    skip: (usize, usize),
}

#[derive(Clone, Copy, PartialEq)]
enum Buf {
    None,
    /// (cmd, buf)
    Second,
    /// (cmd, buf, count): grant_table_op.
    SecondCount(u64),
    /// (buf, nr): multicall
    First(u64),
}

const CALLS: [Call; 17] = [
    Call { name: "xen_version(version)", op: 17, cmd: 0, buf: Buf::None, skip: (0, 0) },
    Call { name: "xen_version(extraversion)", op: 17, cmd: 1, buf: Buf::Second, skip: (0, 0) },
    Call { name: "xen_version(compile_info)", op: 17, cmd: 2, buf: Buf::Second, skip: (0, 0) },
    Call { name: "xen_version(capabilities)", op: 17, cmd: 3, buf: Buf::Second, skip: (0, 0) },
    Call { name: "xen_version(changeset)", op: 17, cmd: 4, buf: Buf::Second, skip: (0, 0) },
    Call { name: "xen_version(platform_parameters)", op: 17, cmd: 5, buf: Buf::Second, skip: (0, 0) },
    Call { name: "xen_version(get_features)", op: 17, cmd: 6, buf: Buf::Second, skip: (0, 0) },
    Call { name: "xen_version(pagesize)", op: 17, cmd: 7, buf: Buf::None, skip: (0, 0) },
    Call { name: "xen_version(guest_handle)", op: 17, cmd: 8, buf: Buf::Second, skip: (0, 0) },
    Call { name: "xen_version(commandline)", op: 17, cmd: 9, buf: Buf::Second, skip: (0, 0) },
    Call { name: "memory_op(maximum_ram_page)", op: 12, cmd: 2, buf: Buf::None, skip: (0, 0) },
    Call { name: "memory_op(maximum_reservation)", op: 12, cmd: 4, buf: Buf::Second, skip: (0, 0) },
    // nr_frames (bytes 4..8) grows when dom0's grant table grows under the grant load.
    Call { name: "grant_table_op(query_size)", op: 20, cmd: 6, buf: Buf::SecondCount(1), skip: (4, 8) },
    Call { name: "sched_op(yield)", op: 29, cmd: 0, buf: Buf::None, skip: (0, 0) },
    Call { name: "vcpu_op(is_up, 0)", op: 24, cmd: 3, buf: Buf::None, skip: (0, 0) },
    Call { name: "multicall(xen_version x2)", op: 13, cmd: 0, buf: Buf::First(2), skip: (0, 0) },
    Call { name: "hypercall 60 (unknown)", op: 60, cmd: 0, buf: Buf::None, skip: (0, 0) },
];

/// Calibrated results: return value and output buffer per call.
static mut CAL_RET: [i64; CALLS.len()] = [0; CALLS.len()];
static mut CAL_BUF: [[u8; CALL_BUF]; CALLS.len()] = [[0; CALL_BUF]; CALLS.len()];

/// Fill the buffer with the call's input (and a filler that shows which bytes the hypervisor
/// wrote), issue it, return the result.
fn issue(fd: i64, call: &Call, buf: &mut [u8; CALL_BUF]) -> i64 {
    buf.fill(0xa5);
    let p = buf.as_mut_ptr() as u64;
    let mut h = PrivcmdHypercall { op: call.op, arg: [call.cmd, 0, 0, 0, 0] };
    match call.buf {
        Buf::None => {}
        Buf::Second => h.arg[1] = p,
        Buf::SecondCount(n) => {
            h.arg[1] = p;
            h.arg[2] = n;
        }
        Buf::First(n) => {
            h.arg[0] = p;
            h.arg[1] = n;
        }
    }
    match (call.op, call.cmd) {
        // get_features: submap 0.
        (17, 6) => buf[..4].fill(0),
        // maximum_reservation: domid_t DOMID_SELF.
        (12, 4) => buf[..2].copy_from_slice(&(DOMID_SELF as u16).to_le_bytes()),
        // query_size: dom = DOMID_SELF, outputs after.
        (20, 6) => buf[..2].copy_from_slice(&(DOMID_SELF as u16).to_le_bytes()),
        // Two multicall entries {op, result, args[6]}: xen_version(version), xen_version(pagesize).
        (13, _) => {
            buf[..128].fill(0);
            buf[0..8].copy_from_slice(&17u64.to_le_bytes());
            buf[64..72].copy_from_slice(&17u64.to_le_bytes());
            buf[80..88].copy_from_slice(&7u64.to_le_bytes());
        }
        _ => {}
    }
    ioctl(fd, IOCTL_PRIVCMD_HYPERCALL, &mut h)
}

/// The parent's calibration pass (each call twice: they must agree); false if privcmd failed.
fn calibrate(errors: &mut u64) -> bool {
    let fd = open(b"/dev/xen/privcmd\0", O_RDWR);
    if fd < 0 {
        Line::new().s("STRESS-ERR privcmd calibration: cannot open /dev/xen/privcmd ").i(fd).out();
        *errors += 1;
        return false;
    }
    let mut again = [0u8; CALL_BUF];
    for (k, call) in CALLS.iter().enumerate() {
        // SAFETY: only the parent touches the calibration tables, before any fork.
        let (ret, buf) = unsafe { (&mut (*core::ptr::addr_of_mut!(CAL_RET))[k], &mut (*core::ptr::addr_of_mut!(CAL_BUF))[k]) };
        *ret = issue(fd, call, buf);
        let r2 = issue(fd, call, &mut again);
        if r2 != *ret || first_difference(call, buf, &again).is_some() {
            Line::new().s("STRESS-ERR privcmd calibration: ").s(call.name).s(" not deterministic: ").i(*ret).s(" then ").i(r2).out();
            *errors += 1;
        }
        let mut l = Line::new();
        l.s("STRESS-CAL ").s(call.name).s(" = ").i(*ret);
        if call.buf != Buf::None {
            l.s(" buf ");
            for &b in &buf[..16] {
                l.b(&[b"0123456789abcdef"[(b >> 4) as usize], b"0123456789abcdef"[(b & 15) as usize]]);
            }
        }
        l.out();
    }
    close(fd);
    true
}

/// The first byte at which two output buffers differ, outside the call's skipped range.
fn first_difference(call: &Call, a: &[u8; CALL_BUF], b: &[u8; CALL_BUF]) -> Option<usize> {
    a.iter().zip(b.iter()).enumerate().position(|(i, (x, y))| x != y && !(call.skip.0..call.skip.1).contains(&i))
}

fn privcmd(c: &Ctx) {
    let fd = open(b"/dev/xen/privcmd\0", O_RDWR);
    c.ready();
    if fd < 0 {
        c.fail(false, "cannot open /dev/xen/privcmd", fd);
        return;
    }
    let mut rng = Rng(0xfeed_0000_0001 ^ ((c.cpu as u64 + 1) << 40));
    let mut buf = [0u8; CALL_BUF];
    // SAFETY: the tables were written before the fork and are only read from here on.
    let (cal_ret, cal_buf) = unsafe { (&*core::ptr::addr_of!(CAL_RET), &*core::ptr::addr_of!(CAL_BUF)) };
    while !c.stopping() {
        let k = (rng.next() % CALLS.len() as u64) as usize;
        let call = &CALLS[k];
        let r = issue(fd, call, &mut buf);
        if r != cal_ret[k] {
            c.fail_with(true, call.name, " returned, unlike the calibration pass,", r);
        } else if let Some(at) = first_difference(call, &cal_buf[k], &buf) {
            c.fail_with(true, call.name, " wrote another output than the calibration pass, first at byte", at as i64);
        } else if call.op == 20 {
            // query_size: nr_frames (skipped above) never above max_nr_frames.
            let nr = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
            let max = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
            if nr == 0 || nr > max {
                c.fail(true, "grant_table_op(query_size) nr_frames", nr as i64);
            }
        }
        c.ops(1);
    }
    close(fd);
}

// ---------------------------------------------------------------- memory

const MEMORY_BYTES: u64 = 4 << 20;

fn memory(c: &Ctx) {
    c.ready();
    let mut cycle: u64 = 0;
    while !c.stopping() {
        let mut m = match Map::anon(MEMORY_BYTES) {
            Ok(m) => m,
            Err(e) => {
                c.fail(false, "mmap", e);
                sleep_ms(50);
                continue;
            }
        };
        let seed = ((c.cpu as u64) << 56) ^ (cycle << 28);
        let w = m.words();
        for (i, x) in w.iter_mut().enumerate() {
            *x = mix(seed ^ i as u64);
        }
        let bad = w.iter().enumerate().filter(|&(i, &x)| x != mix(seed ^ i as u64)).count();
        if bad > 0 {
            c.fail(true, "anonymous memory pattern differs, words", bad as i64);
        }
        drop(m);
        c.ops(1);
        cycle += 1;
    }
}

// ---------------------------------------------------------------- dma

const CHUNK: usize = 64 << 10;
const MAX_CHUNKS: usize = 4096;

fn dma(c: &Ctx) {
    let mut fd = open(b"/dev/vda\0", O_RDWR | O_DIRECT);
    let t0 = now_ns();
    while fd < 0 && now_ns() - t0 < 5_000_000_000 {
        sleep_ms(100);
        fd = open(b"/dev/vda\0", O_RDWR | O_DIRECT);
    }
    c.ready();
    if fd < 0 {
        c.fail(false, "cannot open /dev/vda (no virtio-blk disk?)", fd);
        return;
    }
    let size = sys(SYS_LSEEK, fd as u64, 0, 2);
    let chunks = ((size.max(0) as u64 / c.n as u64) / CHUNK as u64).min(MAX_CHUNKS as u64) as usize;
    if chunks == 0 {
        c.fail(false, "disk too small, bytes", size);
        return;
    }
    let base = c.cpu as u64 * chunks as u64 * CHUNK as u64;
    let (mut wbuf, mut rbuf) = match (Map::anon(CHUNK as u64), Map::anon(CHUNK as u64)) {
        (Ok(a), Ok(b)) => (a, b),
        _ => {
            c.fail(false, "mmap buffers", -12);
            return;
        }
    };
    let mut sums = [0u64; MAX_CHUNKS];
    let mut pass: u64 = 0;
    let mut bytes: u64 = 0;
    'load: while !c.stopping() {
        let mut written = 0;
        for (k, sum) in sums.iter_mut().enumerate().take(chunks) {
            if c.stopping() {
                break;
            }
            let seed = ((c.cpu as u64) << 56) ^ (pass << 32) ^ ((k as u64) << 16);
            let w = wbuf.words();
            for (i, x) in w.iter_mut().enumerate() {
                *x = mix(seed ^ i as u64);
            }
            *sum = checksum(w);
            let off = base + (k * CHUNK) as u64;
            // SAFETY: the kernel reads CHUNK bytes from the buffer mapping.
            let r = unsafe { raw(SYS_PWRITE64, fd as u64, wbuf.addr, CHUNK as u64, off, 0, 0) };
            if r != CHUNK as i64 {
                c.fail(false, "pwrite (O_DIRECT)", r);
                sleep_ms(50);
                continue 'load;
            }
            bytes += CHUNK as u64;
            written = k + 1;
        }
        for (k, &sum) in sums.iter().enumerate().take(written) {
            let off = base + (k * CHUNK) as u64;
            rbuf.bytes().fill(0);
            // SAFETY: the kernel writes CHUNK bytes into the buffer mapping.
            let r = unsafe { raw(SYS_PREAD64, fd as u64, rbuf.addr, CHUNK as u64, off, 0, 0) };
            if r != CHUNK as i64 {
                c.fail(false, "pread (O_DIRECT)", r);
                sleep_ms(50);
                continue 'load;
            }
            bytes += CHUNK as u64;
            if checksum(rbuf.words()) != sum {
                c.fail(true, "chunk read back with a wrong checksum, chunk", k as i64);
            } else {
                c.ops(1);
            }
            c.res().a.store(bytes, Relaxed);
        }
        pass += 1;
    }
    c.res().a.store(bytes, Relaxed);
    close(fd);
}

// ---------------------------------------------------------------- the parent

static mut CMDLINE: [u8; 4096] = [0; 4096];

struct Child {
    pid: i64,
    w: usize,
    cpu: usize,
    reaped: bool,
}

fn run_worker(w: usize, c: &Ctx) {
    match w {
        GRANT => grant(c),
        BALLOON => balloon(c),
        EVTCHN => evtchn(c),
        PRIVCMD => privcmd(c),
        MEMORY => memory(c),
        _ => dma(c),
    }
}

/// What a wait status says, for an error line: exit code or signal.
fn status_bad(status: u32) -> Option<i64> {
    let sig = status & 0x7f;
    let code = (status >> 8) & 0xff;
    if sig != 0 {
        Some(-(sig as i64))
    } else if code != 0 {
        Some(code as i64)
    } else {
        None
    }
}

#[no_mangle]
pub extern "C" fn _start() -> ! {
    // SAFETY: single-threaded here; the buffer is only used in this function.
    let cmdline = unsafe { &mut *core::ptr::addr_of_mut!(CMDLINE) };
    let fd = open(b"/proc/cmdline\0", O_RDONLY);
    let len = if fd >= 0 { read_fd(fd as u64, &mut cmdline[..]).max(0) as usize } else { 0 };
    close(fd);
    let cmdline = &cmdline[..len];
    let secs = cmdline_value(cmdline, b"xenith-stress=").and_then(parse_u64).unwrap_or(30).max(1);
    let mut enabled = [true; 6];
    if let Some(list) = cmdline_value(cmdline, b"xenith-stress-only=") {
        for (w, name) in NAMES.iter().enumerate() {
            enabled[w] = list.split(|&c| c == b',').any(|x| x == name.as_bytes());
        }
    }
    let ncpu = cpus();
    let size = (core::mem::size_of::<Shared>() as u64).div_ceil(4096) * 4096;
    let shared = match Map::new(size, MAP_SHARED | MAP_ANONYMOUS, -1, 0) {
        Ok(m) => m,
        Err(e) => {
            Line::new().s("STRESS-FAILED cannot map the shared page ").i(e).out();
            exit(1)
        }
    };
    // SAFETY: a zeroed MAP_SHARED mapping large enough for Shared (all atomics: zero is a valid
    // value), never unmapped (the Map is forgotten below), shared with the children by fork.
    let sh: &'static Shared = unsafe { &*(shared.addr as *const Shared) };
    core::mem::forget(shared);

    let mut setup_errors = [0u64; 6];
    if enabled[PRIVCMD] {
        calibrate(&mut setup_errors[PRIVCMD]);
    }
    Line::new().s("STRESS-START cpus=").n(ncpu as u64).s(" secs=").n(secs).out();

    let mut children: [Child; 6 * MAXCPU] = core::array::from_fn(|_| Child { pid: 0, w: 0, cpu: 0, reaped: true });
    let mut nchild = 0;
    for w in 0..6 {
        if !enabled[w] {
            continue;
        }
        let n = if w == BALLOON { 1 } else { ncpu };
        for cpu in 0..n {
            let pid = fork();
            if pid == 0 {
                let r = pin_to_cpu(cpu);
                let c = Ctx { sh, cpu, n, w };
                if r < 0 {
                    c.fail(false, "sched_setaffinity", r);
                }
                run_worker(w, &c);
                exit(0);
            }
            if pid < 0 {
                Line::new().s("STRESS-ERR ").s(NAMES[w]).s(" fork ").i(pid).out();
                setup_errors[w] += 1;
                continue;
            }
            children[nchild] = Child { pid, w, cpu, reaped: false };
            nchild += 1;
        }
    }
    let children = &mut children[..nchild];
    let mut died = [0u64; 6];
    let mut cpu_ms = [0u64; 6];
    fn reap(children: &mut [Child], died: &mut [u64; 6], cpu_ms: &mut [u64; 6], options: u64, during_load: bool) -> usize {
        let mut n = 0;
        loop {
            let (pid, status, ms) = wait(-1, options);
            if pid <= 0 {
                return n;
            }
            n += 1;
            if let Some(ch) = children.iter_mut().find(|c| c.pid == pid) {
                ch.reaped = true;
                cpu_ms[ch.w] += ms;
                let bad = status_bad(status);
                if bad.is_some() || during_load {
                    died[ch.w] += 1;
                    Line::new().s("STRESS-ERR ").s(NAMES[ch.w]).s(" cpu=").n(ch.cpu as u64).s(" process ended during the load (exit code, or -signal) ").i(bad.unwrap_or(0)).out();
                }
            }
        }
    }
    let t0 = now_ns();
    while sh.ready.load(SeqCst) < nchild as u32 && now_ns() - t0 < 60_000_000_000 {
        sleep_ms(10);
    }
    if sh.ready.load(SeqCst) < nchild as u32 {
        Line::new().s("STRESS-ERR setup: only ").n(sh.ready.load(SeqCst) as u64).s(" of ").n(nchild as u64).s(" processes ready in 60 s").out();
    }
    let before = cpu_times();
    let start = now_ns();
    sh.go.store(1, SeqCst);
    while now_ns() - start < secs * 1_000_000_000 {
        sleep_ms(100);
        // A process that ends before the stop is an error (setup failures stay counted by it).
        reap(children, &mut died, &mut cpu_ms, WNOHANG, true);
    }
    sh.stop.store(1, SeqCst);
    let stop = now_ns();
    let after = cpu_times();
    while children.iter().any(|c| !c.reaped) && now_ns() - stop < 60_000_000_000 {
        if reap(children, &mut died, &mut cpu_ms, WNOHANG, false) == 0 {
            sleep_ms(50);
        }
    }
    for ch in children.iter().filter(|c| !c.reaped) {
        Line::new().s("STRESS-ERR ").s(NAMES[ch.w]).s(" cpu=").n(ch.cpu as u64).s(" did not stop within 60 s: killed").out();
        died[ch.w] += 1;
        sys(SYS_KILL, ch.pid as u64, SIGKILL, 0);
    }
    reap(children, &mut died, &mut cpu_ms, 0, false);
    let load_ms = (stop - start) / 1_000_000;
    Line::new().s("STRESS-LOAD-END ms=").n(load_ms).out();
    for w in 0..6 {
        if !enabled[w] {
            continue;
        }
        let sum = |f: fn(&Res) -> &AtomicU64| sh.res[w].iter().map(|r| f(r).load(SeqCst)).sum::<u64>();
        let ops = sum(|r| &r.ops);
        let corrupt = sum(|r| &r.corrupt);
        let errors = sum(|r| &r.errors) + corrupt + setup_errors[w] + died[w];
        let mut l = Line::new();
        l.s("STRESS ").s(NAMES[w]).s(" ops=").n(ops).s(" errors=").n(errors).s(" integrity=").s(if corrupt == 0 { "ok" } else { "bad" });
        l.s(" procs=").n(if w == BALLOON { 1 } else { ncpu as u64 });
        match w {
            GRANT => {
                let max = sh.slots.iter().map(|s| s.max_mapped.load(SeqCst)).max().unwrap_or(0);
                l.s(" maps=").n(sum(|r| &r.a)).s(" max_mappers=").n(max as u64);
            }
            BALLOON => {
                l.s(" step_kb=").n(BALLOON_STEP_KB).s(" slowest_ms=").n(sh.res[w].iter().map(|r| r.b.load(SeqCst)).max().unwrap_or(0));
            }
            EVTCHN => {
                l.s(" sent=").n(sum(|r| &r.a)).s(" received=").n(sum(|r| &r.b));
            }
            DMA => {
                l.s(" mib=").n(sum(|r| &r.a) >> 20);
            }
            _ => {}
        }
        l.s(" cpu_ms=").n(cpu_ms[w]);
        l.s(" ms=").n(load_ms);
        l.out();
    }
    // Where the CPUs' time went during the load (all CPUs, /proc/stat's first line, in ms).
    if let (Some(b), Some(a)) = (before, after) {
        let mut l = Line::new();
        l.s("STRESS-CPU");
        for (i, name) in CPU_FIELDS.iter().enumerate() {
            l.s(" ").s(name).s("_ms=").n(a[i].saturating_sub(b[i]) * 10);
        }
        l.out();
    }
    Line::new().s("STRESS-DONE").out();
    exit(0)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    write_fd(1, b"STRESS-ERR panic in the stress program\n");
    exit(2);
}
