//! The hypervisor's own HYP-mode stage-1 translation (LPAE, HTTBR/HTCR/HMAIR): an identity map
//! of the 32-bit address space in four 1 GiB blocks. A GiB that holds RAM (per the DT) is
//! Normal write-back; every other GiB is Device-nGnRE, execute-never. Before the DT is read the
//! boot map assumes QEMU virt's layout (devices below 1 GiB, RAM from 1 GiB to 3 GiB); `refine`
//! fixes it from the real banks. Physical memory above 4 GiB (LPAE's 40-bit PAs) has no HYP
//! virtual address: `va_of` says so and callers refuse it.

use super::regs::{dsb_ish, isb, Hmair0, Hmair1, Hsctlr, Htcr, Httbr};

const GIB: u64 = 1 << 30;

/// The first-level table: 4 entries of 1 GiB (HTCR.T0SZ = 0 starts the walk at level 1).
#[repr(C, align(32))]
struct Table([u64; 4]);

static mut L1: Table = Table([0; 4]);

/// HMAIR0 attribute indices.
const ATTR_DEVICE: u64 = 0; // Device-nGnRE
const ATTR_NORMAL: u64 = 1; // Normal, inner/outer write-back RW-allocate
const HMAIR0: u32 = 0x04 | (0xff << 8);

fn block(pa: u64, normal: bool) -> u64 {
    let valid_block = 0b01;
    // AP[1] is RES1 in HYP's translation regime; AP[2] = 0: read/write.
    let ap = 1 << 6;
    let af = 1 << 10;
    if normal {
        let sh_inner = 0b11 << 8;
        pa | valid_block | (ATTR_NORMAL << 2) | ap | sh_inner | af
    } else {
        let xn = 1 << 54; // never execute from device memory
        pa | valid_block | (ATTR_DEVICE << 2) | ap | af | xn
    }
}

/// The HYP virtual address of physical address `pa` (the identity map), if it has one.
#[inline]
pub fn va_of(pa: u64, len: u64) -> Option<usize> {
    let end = pa.checked_add(len)?;
    (end <= 1 << 32).then_some(pa as usize)
}

/// Build the boot map and turn the MMU and caches on. Runs once, on the boot CPU, MMU off.
pub fn enable_boot_map() {
    // SAFETY: single CPU, MMU off, nothing else uses the table yet.
    unsafe {
        let l1 = &raw mut L1;
        for gib in 0..4u64 {
            (*l1).0[gib as usize] = block(gib * GIB, (1..3).contains(&gib));
        }
    }
    dsb_ish();
    let htcr = (0b01 << 8)  // IRGN0: WB RA WA
        | (0b01 << 10)      // ORGN0
        | (0b11 << 12)      // SH0: inner shareable
        | (1 << 23) | (1 << 31); // RES1
    Hmair0::write(HMAIR0);
    Hmair1::write(0);
    Htcr::write(htcr);
    Httbr::write((&raw const L1) as u64);
    isb();
    // SAFETY: invalidate stale HYP TLB entries, the instruction cache and the branch
    // predictor before enabling (TLBIALLH, ICIALLU, BPIALL).
    unsafe {
        core::arch::asm!(
            "mcr p15, 4, {z}, c8, c7, 0",
            "mcr p15, 0, {z}, c7, c5, 0",
            "mcr p15, 0, {z}, c7, c5, 6",
            "dsb ish",
            "isb",
            z = in(reg) 0u32,
        )
    };
    let hsctlr = Hsctlr::read()
        | (1 << 0)      // M
        | (1 << 2)      // C
        | (1 << 12);    // I
    // TE (bit 30) stays 0: exceptions to HYP are taken in A32 state, as the vectors are written;
    // EE (bit 25) 0: little-endian; A (bit 1) 0: the compiler's accesses are aligned anyway.
    Hsctlr::write(hsctlr & !((1 << 30) | (1 << 25) | (1 << 1)));
    isb();
}

/// The settings a secondary CPU copies before turning its MMU on: (HTTBR, HTCR, HMAIR0, HSCTLR).
pub fn boot_cpu_settings() -> (u64, u32, u32, u32) {
    (Httbr::read(), Htcr::read(), Hmair0::read(), Hsctlr::read())
}

/// Re-derive every GiB's memory type from the DT's RAM banks (`(base, size)` pairs).
pub fn refine(ram: &[(u64, u64)]) {
    for gib in 0..4u64 {
        let lo = gib * GIB;
        let hi = lo + GIB;
        let normal = ram.iter().any(|&(b, s)| b < hi && b.saturating_add(s) > lo);
        // SAFETY: single CPU during boot; only the memory type of a GiB changes, with
        // break-before-make, and never that of the GiB the image runs from (RAM stays Normal).
        unsafe {
            let l1 = &raw mut L1;
            let e = &mut (*l1).0[gib as usize];
            let new = block(lo, normal);
            if *e != new {
                write_entry(e, 0);
                tlb_flush_hyp();
                write_entry(e, new);
            }
        }
    }
    tlb_flush_hyp();
}

/// A single 64-bit store (STRD to an 8-aligned address is single-copy atomic with LPAE), so
/// the walker never sees a torn descriptor.
///
/// # Safety
/// `e` is a valid, 8-aligned table entry.
pub(super) unsafe fn write_entry(e: *mut u64, v: u64) {
    // SAFETY: the caller's contract.
    unsafe {
        core::arch::asm!("strd r2, r3, [{p}]", in("r2") v as u32, in("r3") (v >> 32) as u32, p = in(reg) e, options(nostack))
    };
}

fn tlb_flush_hyp() {
    dsb_ish();
    // SAFETY: TLB maintenance only (TLBIALLH).
    unsafe { core::arch::asm!("mcr p15, 4, {z}, c8, c7, 0", "dsb ish", "isb", z = in(reg) 0u32) };
}
