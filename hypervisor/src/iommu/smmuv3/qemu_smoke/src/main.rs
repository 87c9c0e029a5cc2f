//! Bare-metal smoke test of xenith's SMMUv3 driver on QEMU virt (`iommu=smmuv3`), with the
//! `edu` PCI device doing DMA and xenith's own p2m code (`mm::Stage2`) building the stage-2
//! tables the SMMU walks: the shared-table setup the hypervisor uses. Runs at EL1 with the
//! MMU off (identity, uncached), one "check ... -> PASS|FAIL" line per property, then PSCI
//! SYSTEM_OFF.
#![no_std]
#![no_main]
extern crate alloc;

#[allow(dead_code, unused_imports)]
#[path = "../../../../mm/mod.rs"]
mod mm;
#[allow(dead_code, unused_imports)]
#[path = "../../mod.rs"]
mod smmuv3;

use core::cell::UnsafeCell;
use core::fmt::Write;
use core::ptr::{read_volatile, write_volatile};

use aarch64_cpu::registers::{Readable, CNTFRQ_EL0, CNTPCT_EL0};
use mm::{FrameAlloc, S2Attr, Stage2, Stage2Config, TlbOps};
use platform::{Clock, MemError, Mmio, PhysMem};
use smmuv3::{FrameDma, Smmu, SmmuConfig, SmmuTlb};

core::arch::global_asm!(
    ".section .text.boot",
    ".global _start",
    "_start:",
    "  ldr x1, =__stack_top",
    "  mov sp, x1",
    "  bl rust_main",
    "1: wfe",
    "  b 1b",
);

const UART: usize = 0x0900_0000;
const SMMU: usize = 0x0905_0000;
const ECAM: usize = 0x40_1000_0000;
const BAR0: usize = 0x1000_0000;

struct Uart;
impl Write for Uart {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            // SAFETY: QEMU virt's PL011 data register; MMU off, so device memory.
            unsafe { write_volatile(UART as *mut u32, u32::from(b)) };
        }
        Ok(())
    }
}
macro_rules! println { ($($t:tt)*) => {{ let _ = writeln!(Uart, $($t)*); }} }

struct Heap {
    next: UnsafeCell<usize>,
    mem: UnsafeCell<[u8; 1 << 20]>,
}
// SAFETY: single core, no interrupts.
unsafe impl Sync for Heap {}
// SAFETY: bump allocation inside `mem`, never handing out overlapping blocks.
unsafe impl core::alloc::GlobalAlloc for Heap {
    unsafe fn alloc(&self, l: core::alloc::Layout) -> *mut u8 {
        let base = self.mem.get() as usize;
        let next = &mut *self.next.get();
        let start = (base + *next + l.align() - 1) & !(l.align() - 1);
        if start + l.size() > base + (1 << 20) {
            return core::ptr::null_mut();
        }
        *next = start + l.size() - base;
        start as *mut u8
    }
    unsafe fn dealloc(&self, _: *mut u8, _: core::alloc::Layout) {}
}
#[global_allocator]
static HEAP: Heap = Heap {
    next: UnsafeCell::new(0),
    mem: UnsafeCell::new([0; 1 << 20]),
};

#[panic_handler]
fn panic(i: &core::panic::PanicInfo) -> ! {
    println!("PANIC {i}");
    off()
}

fn off() -> ! {
    // SAFETY: PSCI SYSTEM_OFF through HVC (QEMU virt without EL2/EL3 firmware).
    unsafe { core::arch::asm!("hvc #0", in("x0") 0x8400_0008u64) };
    loop {}
}

struct Regs(usize);
impl Mmio for Regs {
    fn read32(&self, o: usize) -> u32 {
        // SAFETY: the SMMU's register window.
        unsafe { read_volatile((self.0 + o) as *const u32) }
    }
    fn write32(&self, o: usize, v: u32) {
        // SAFETY: as above.
        unsafe { write_volatile((self.0 + o) as *mut u32, v) }
    }
}

/// RAM, identity-mapped (MMU off).
struct Phys;
impl PhysMem for Phys {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: RAM.
            *b = unsafe { read_volatile((pa as usize + i) as *const u8) };
        }
        Ok(())
    }
    fn write(&self, pa: u64, data: &[u8]) -> Result<(), MemError> {
        for (i, b) in data.iter().enumerate() {
            // SAFETY: RAM.
            unsafe { write_volatile((pa as usize + i) as *mut u8, *b) };
        }
        Ok(())
    }
    fn read_u64(&self, pa: u64) -> Result<u64, MemError> {
        // SAFETY: RAM, 8-byte aligned by the callers.
        Ok(unsafe { read_volatile(pa as *const u64) })
    }
    fn write_u64(&self, pa: u64, v: u64) -> Result<(), MemError> {
        // SAFETY: as above.
        unsafe { write_volatile(pa as *mut u64, v) };
        Ok(())
    }
}

struct Timer;
impl Clock for Timer {
    fn now_ns(&self) -> u64 {
        let f = u128::from(CNTFRQ_EL0.get().max(1));
        (u128::from(CNTPCT_EL0.get()) * 1_000_000_000 / f) as u64
    }
}

/// Frames for the p2m and the SMMU from one region.
struct Frames {
    next: u64,
    end: u64,
}
impl FrameAlloc for Frames {
    fn alloc_frame(&mut self) -> Option<u64> {
        self.alloc_frames(1)
    }
    fn free_frame(&mut self, _: u64) {}
    fn alloc_frames(&mut self, count: usize) -> Option<u64> {
        let size = count as u64 * 4096;
        let pa = self.next.div_ceil(size) * size;
        if pa + size > self.end {
            return None;
        }
        self.next = pa + size;
        Some(pa)
    }
}
impl FrameAlloc for &mut Frames {
    fn alloc_frame(&mut self) -> Option<u64> {
        (**self).alloc_frame()
    }
    fn free_frame(&mut self, pa: u64) {
        (**self).free_frame(pa)
    }
    fn alloc_frames(&mut self, count: usize) -> Option<u64> {
        (**self).alloc_frames(count)
    }
}

/// The CPU side of TLB maintenance is irrelevant here (the CPU does not use these tables).
struct NoCpuTlb;
impl TlbOps for NoCpuTlb {
    fn invalidate_ipa(&mut self, _: u16, _: u64) {}
    fn invalidate_vmid(&mut self, _: u16) {}
    fn sync(&mut self) {}
}

fn edu_dma(src: u64, dst: u64, cnt: u64, to_ram: bool) -> bool {
    // SAFETY: edu BAR0 registers (DMA source, destination, count, command).
    unsafe {
        write_volatile((BAR0 + 0x80) as *mut u64, src);
        write_volatile((BAR0 + 0x88) as *mut u64, dst);
        write_volatile((BAR0 + 0x90) as *mut u64, cnt);
        write_volatile((BAR0 + 0x98) as *mut u64, if to_ram { 3 } else { 1 });
    }
    let deadline = Timer.now_ns() + 2_000_000_000;
    // SAFETY: as above.
    while unsafe { read_volatile((BAR0 + 0x98) as *const u64) } & 1 != 0 {
        if Timer.now_ns() > deadline {
            return false;
        }
    }
    true
}

const EDU_BUF: u64 = 0x40000;
type Driver = Smmu<Regs, Phys, Timer, FrameDma<Frames>>;

fn drain(s: &mut Driver, quiet: bool) -> usize {
    let mut shown = 0;
    match s.drain_events(|e| {
        if !quiet && shown < 2 {
            println!("  {e}");
            shown += 1;
        }
    }) {
        Ok(d) => d.count,
        Err(e) => {
            println!("  drain failed: {e}");
            0
        }
    }
}

fn check(name: &str, ok: bool, detail: core::fmt::Arguments, fails: &mut u32) {
    println!(
        "check {name}: {detail} -> {}",
        if ok { "PASS" } else { "FAIL" }
    );
    if !ok {
        *fails += 1;
    }
}

fn fill(pa: u64, words: u64, tag: u64) {
    for i in 0..words {
        let _ = Phys.write_u64(pa + i * 8, tag | i);
    }
}

fn same(pa: u64, words: u64, tag: u64) -> bool {
    (0..words).all(|i| Phys.read_u64(pa + i * 8).ok() == Some(tag | i))
}

#[no_mangle]
extern "C" fn rust_main() -> ! {
    // SAFETY: PL011 control register: UART, TX, RX enable.
    unsafe { write_volatile((UART + 0x30) as *mut u32, 0x301) };
    println!("smmuv3-qemu-smoke");
    let mut fails = 0;

    // edu (1234:11e8) on bus 0: BAR0, memory decoding and bus mastering.
    let Some(dev) = (0..32usize).find(|d| {
        // SAFETY: ECAM config space of bus 0.
        unsafe { read_volatile((ECAM + (d << 15)) as *const u32) == 0x11e8_1234 }
    }) else {
        println!("RESULT fail: no edu device");
        off()
    };
    let cfg = ECAM + (dev << 15);
    // SAFETY: the edu function's config space.
    unsafe {
        write_volatile((cfg + 0x10) as *mut u32, BAR0 as u32);
        write_volatile((cfg + 0x04) as *mut u16, 0x6);
    }
    let sid = (dev as u32) << 3; // bus 0, function 0: RID = SID on QEMU virt
    println!("edu at 00:{dev:02x}.0, stream {sid:#x}");

    match smmuv3::probe(&Regs(SMMU)) {
        Ok(f) => println!("smmu: {f}"),
        Err(e) => {
            println!("smmu: {e}");
            println!("RESULT fallback");
            off()
        }
    }
    let mut frames = Frames {
        next: 0x4400_0000,
        end: 0x4800_0000,
    };
    let dma_frames = Frames {
        next: 0x4800_0000,
        end: 0x4c00_0000,
    };
    let config = SmmuConfig {
        max_sid_bits: Some(16),
        ..SmmuConfig::default()
    };
    let mut s = match Smmu::new(Regs(SMMU), Phys, Timer, FrameDma(dma_frames), config) {
        Ok(s) => s,
        Err(e) => {
            println!("RESULT fail: {e}");
            off()
        }
    };
    println!("stream table: 2-level={}", s.stream_table().is_two_level());
    if let Err(e) = s.enable() {
        println!("RESULT fail: enable: {e}");
        off()
    }

    let src = 0x4600_0000u64;
    let dst = 0x4600_1000u64;
    fill(src, 64, 0x1111 << 48);

    // Unattached stream: blocked and logged.
    edu_dma(src, EDU_BUF, 64, false);
    let n = drain(&mut s, false);
    check(
        "unattached-blocked",
        n >= 1,
        format_args!("{n} events"),
        &mut fails,
    );

    // Two p2m shapes: 40-bit IPA (level 1, two concatenated roots), 44-bit (level 0 start).
    for (vmid, ipa_bits) in [(1u16, 40u8), (2, 44)] {
        let Ok(mut p2m) = Stage2::new(
            vmid,
            Stage2Config {
                ipa_bits,
                pa_bits: 44,
            },
            &mut frames,
            &Phys,
        ) else {
            println!("RESULT fail: p2m");
            off()
        };
        let mut cpu = NoCpuTlb;
        let r = p2m.map(
            0x4000_0000,
            0x4000_0000,
            1 << 30,
            S2Attr::RAM_RW,
            &mut &mut frames,
            &Phys,
            &mut cpu,
        );
        let a = s.attach_stream(sid, vmid, p2m.vttbr(), p2m.vtcr());
        check(
            "attach",
            r.is_ok() && a.is_ok(),
            format_args!(
                "{ipa_bits}-bit IPA vtcr={:#x} map={r:?} attach={a:?}",
                p2m.vtcr()
            ),
            &mut fails,
        );

        // DMA in and out through the shared stage 2.
        let _ = Phys.write(dst, &[0u8; 512]);
        let ok = edu_dma(src, EDU_BUF, 512, false) && edu_dma(EDU_BUF, dst, 512, true);
        let n = drain(&mut s, false);
        check(
            "dma-through-p2m",
            ok && same(dst, 64, 0x1111 << 48) && n == 0,
            format_args!("{n} events"),
            &mut fails,
        );

        // An alias mapping, used, then unmapped through the p2m with the SMMU as its TlbOps:
        // the invalidation must reach the SMMU's TLB.
        let alias = 0xC000_0000u64;
        let target = 0x4600_2000u64;
        let r = p2m.map(
            alias,
            target & !0x1f_ffff,
            2 << 20,
            S2Attr::RAM_RW,
            &mut &mut frames,
            &Phys,
            &mut cpu,
        );
        let _ = Phys.write_u64(target, 0);
        edu_dma(EDU_BUF, alias + (target & 0x1f_ffff), 8, true);
        let before_ok = Phys.read_u64(target).ok() == Some(0x1111 << 48);
        let stats0 = s.stats();
        let u = {
            let mut stlb = SmmuTlb::new(&mut s);
            p2m.unmap(alias, 2 << 20, &mut &mut frames, &Phys, &mut stlb)
        };
        let stats1 = s.stats();
        let _ = Phys.write_u64(target, 0);
        edu_dma(EDU_BUF, alias + (target & 0x1f_ffff), 8, true);
        let after = Phys.read_u64(target).unwrap_or(1);
        let n = drain(&mut s, false);
        check(
            "unmap-reaches-smmu",
            r.is_ok()
                && u.is_ok()
                && before_ok
                && after == 0
                && n >= 1
                && stats1.syncs - stats0.syncs == 1,
            format_args!(
                "before={before_ok} after={after:#x} cmds={} syncs={} events={n}",
                stats1.total - stats0.total,
                stats1.syncs - stats0.syncs
            ),
            &mut fails,
        );

        // DMA to an IPA the domain does not own.
        edu_dma(EDU_BUF, 0x9000_0000, 8, true);
        let n = drain(&mut s, false);
        check(
            "unowned-blocked",
            n >= 1,
            format_args!("{n} events"),
            &mut fails,
        );
    }

    // Batched invalidation of 1000 pages: one CMD_SYNC.
    let st0 = s.stats();
    let r = s.invalidate_ipa_range(2, 0x4000_0000, 1000 * 4096);
    let st1 = s.stats();
    check(
        "batch-1000-pages",
        r.is_ok() && st1.syncs - st0.syncs == 1,
        format_args!(
            "{} commands, {} CMD_SYNC",
            st1.total - st0.total,
            st1.syncs - st0.syncs
        ),
        &mut fails,
    );

    // Blocked stream: silent abort; then bypass works untranslated.
    let _ = s.block_stream(sid);
    let _ = Phys.write_u64(dst, 0);
    edu_dma(EDU_BUF, dst, 8, true);
    let blocked = Phys.read_u64(dst).ok() == Some(0);
    let n = drain(&mut s, true);
    check(
        "block",
        blocked && n == 0,
        format_args!("{n} events"),
        &mut fails,
    );
    let _ = s.bypass_stream(sid);
    edu_dma(EDU_BUF, dst, 8, true);
    let through = Phys.read_u64(dst).ok() == Some(0x1111 << 48);
    check("bypass", through, format_args!(""), &mut fails);

    let g = s.handle_gerror();
    check(
        "no-global-errors",
        matches!(g, Ok(ref e) if e.is_empty()),
        format_args!("{g:?}"),
        &mut fails,
    );
    let d = s.disable();
    check("disable", d.is_ok(), format_args!("{d:?}"), &mut fails);
    println!("stats: {:?}", s.stats());
    if fails == 0 {
        println!("RESULT all-pass");
    } else {
        println!("RESULT {fails} failed");
    }
    off()
}
