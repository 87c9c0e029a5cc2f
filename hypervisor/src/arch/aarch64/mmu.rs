//! The hypervisor's own EL2 stage-1 translation: an identity map of the first 1 TiB of physical
//! address space in 1 GiB blocks. A GiB that holds RAM (per the DT) is Normal write-back; every
//! other GiB is Device-nGnRE. Before the DT is read, the boot map assumes QEMU virt's layout
//! (devices below 1 GiB, RAM from 1 GiB up to 256 GiB); `refine` fixes it from the real banks.

use crate::sysreg;
use super::regs::{dsb_ish, isb};

const ENTRIES: usize = 512;
const GIB: u64 = 1 << 30;
/// Physical address bits covered (1 TiB).
const VA_BITS: u64 = 40;

#[repr(C, align(4096))]
struct Table([u64; ENTRIES]);

static mut L0: Table = Table([0; ENTRIES]);
static mut L1: [Table; 2] = [Table([0; ENTRIES]), Table([0; ENTRIES])];

/// MAIR_EL2 attribute indices.
const ATTR_DEVICE: u64 = 0; // Device-nGnRE
const ATTR_NORMAL: u64 = 1; // Normal, inner/outer write-back RW-allocate
const MAIR: u64 = 0x04 | (0xff << 8);

fn block(pa: u64, normal: bool) -> u64 {
    let valid_block = 0b01;
    let af = 1 << 10;
    if normal {
        let sh_inner = 0b11 << 8;
        pa | valid_block | (ATTR_NORMAL << 2) | sh_inner | af
    } else {
        let xn = 1 << 54; // never execute from device memory
        pa | valid_block | (ATTR_DEVICE << 2) | af | xn
    }
}

/// Build the boot map and turn the MMU and caches on. Runs once, on the boot CPU, MMU off.
pub fn enable_boot_map() {
    // SAFETY: single CPU, MMU off, nothing else uses the tables yet; aligned u64 stores only.
    unsafe {
        let l0 = &raw mut L0;
        let l1 = &raw mut L1;
        for (i, t) in (*l1).iter().enumerate() {
            (*l0).0[i] = (t as *const Table as u64) | 0b11;
        }
        for gib in 0..(2 * ENTRIES as u64) {
            let normal = (1..256).contains(&gib);
            (*l1)[(gib as usize) / ENTRIES].0[(gib as usize) % ENTRIES] = block(gib * GIB, normal);
        }
    }
    dsb_ish();
    let tcr = (64 - VA_BITS)        // T0SZ
        | (0b01 << 8)               // IRGN0: WB RA WA
        | (0b01 << 10)              // ORGN0
        | (0b11 << 12)              // SH0: inner shareable
        | (0b00 << 14)              // TG0: 4 KiB
        | (0b010 << 16)             // PS: 40 bits
        | (1 << 23) | (1 << 31);    // RES1
    sysreg!(write MAIR_EL2, MAIR);
    sysreg!(write TCR_EL2, tcr);
    sysreg!(write TTBR0_EL2, (&raw const L0) as u64);
    isb();
    // SAFETY: invalidate stale EL2 TLB entries and the instruction cache before enabling.
    unsafe { core::arch::asm!("tlbi alle2", "dsb ish", "ic iallu", "dsb ish", "isb") };
    let sctlr = (1 << 0)            // M
        | (1 << 2)                  // C
        | (1 << 12)                 // I
        | (1 << 3)                  // SA: stack alignment check
        | (1 << 4) | (1 << 5) | (1 << 11) | (1 << 16) | (1 << 18) | (1 << 22) | (1 << 23)
        | (1 << 28) | (1 << 29);    // RES1
    sysreg!(write SCTLR_EL2, sctlr);
    isb();
}

/// Re-derive every GiB's memory type from the DT's RAM banks (`(base, size)` pairs).
pub fn refine(ram: &[(u64, u64)]) {
    for gib in 0..(2 * ENTRIES as u64) {
        let lo = gib * GIB;
        let hi = lo + GIB;
        let normal = ram.iter().any(|&(b, s)| b < hi && b.saturating_add(s) > lo);
        // SAFETY: single CPU during boot; changing only the memory type of blocks that are
        // not RAM-backed in one direction or the other. Break-before-make is not needed for a
        // pure attribute change on memory we are not using at this moment (the hypervisor's
        // own image lives in a RAM GiB that stays Normal).
        unsafe {
            let l1 = &raw mut L1;
            let e = &mut (*l1)[(gib as usize) / ENTRIES].0[(gib as usize) % ENTRIES];
            let new = block(lo, normal);
            if *e != new {
                core::ptr::write_volatile(e, 0);
                dsb_ish();
                core::arch::asm!("tlbi alle2", "dsb ish", "isb");
                core::ptr::write_volatile(e, new);
            }
        }
    }
    dsb_ish();
    // SAFETY: TLB maintenance only.
    unsafe { core::arch::asm!("tlbi alle2", "dsb ish", "isb") };
}
