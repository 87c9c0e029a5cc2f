//! The guest's PL1 stage-1 translation on ARMv7-A (LPAE, TTBCR.EAE = 1): an identity map of its
//! RAM banks (Normal write-back, inner shareable, 2 MiB blocks) plus one Device block at
//! [`DEVICE_HOLE_IPA`], and nothing else, so [`UNMAPPED_VA`] faults. 32-bit VA through TTBR0
//! (walks start at level 1: four 1 GiB entries).

use crate::fdt::Bank;
use core::arch::asm;
use core::ptr::addr_of_mut;

/// An IPA in a hole of QEMU virt's map that no hypervisor maps for dom0 (as on AArch64).
pub const DEVICE_HOLE_IPA: u64 = 0x0e00_0000;
/// A virtual address the guest never maps: hypercall buffers there must give -EFAULT.
pub const UNMAPPED_VA: u64 = 0x0010_0000;

const BLOCK_2M: u64 = 1 << 21;
const DESC_TABLE: u64 = 0b11;
const DESC_BLOCK: u64 = 0b01;
const AF: u64 = 1 << 10;
const SH_INNER: u64 = 3 << 8;
const ATTR_NORMAL: u64 = 0 << 2;
const ATTR_DEVICE: u64 = 1 << 2;
/// Execute-never (device memory).
const XN: u64 = 1 << 54;

#[repr(C, align(4096))]
struct Table([u64; 512]);

#[repr(C, align(32))]
struct Level1([u64; 4]);

static mut L1: Level1 = Level1([0; 4]);
static mut L2: [Table; 4] = [const { Table([0; 512]) }; 4];

/// Why the map could not be built.
#[derive(Debug)]
#[allow(dead_code)] // the fields are read through Debug
pub enum MapError {
    /// An address is beyond the 32-bit VA space.
    TooHigh(u64),
}

/// Maps `[base, base + size)` rounded out to 2 MiB, identity, with `attrs`.
///
/// # Safety
/// Single-threaded, MMU-off boot code only.
unsafe fn map_blocks(base: u64, size: u64, attrs: u64) -> Result<(), MapError> {
    let mut pa = base & !(BLOCK_2M - 1);
    let end = (base + size + BLOCK_2M - 1) & !(BLOCK_2M - 1);
    if end > 1 << 32 {
        return Err(MapError::TooHigh(end));
    }
    while pa < end {
        let i1 = (pa >> 30) as usize;
        // SAFETY: see the function's contract: nobody else touches the tables now.
        unsafe {
            let l2 = &mut (*addr_of_mut!(L2))[i1].0;
            (*addr_of_mut!(L1)).0[i1] = l2.as_ptr() as u64 | DESC_TABLE;
            l2[((pa >> 21) & 511) as usize] = pa | attrs | AF | DESC_BLOCK;
        }
        pa += BLOCK_2M;
    }
    Ok(())
}

/// Device mappings requested before [`enable`].
static mut EXTRA_DEVICE: [(u64, u64); 16] = [(0, 0); 16];

/// Also map `[base, base + size)` as Device memory when [`enable`] runs.
///
/// # Safety
/// Boot CPU, before [`enable`].
#[allow(dead_code)]
pub unsafe fn add_device(base: u64, size: u64) {
    // SAFETY: forwarded contract: nothing else touches the list.
    unsafe {
        let extra = &mut *addr_of_mut!(EXTRA_DEVICE);
        if let Some(slot) = extra.iter_mut().find(|e| e.1 == 0) {
            *slot = (base, size);
        }
    }
}

/// Builds the tables for `banks` (plus the image) and turns the MMU and caches on.
///
/// # Safety
/// Boot CPU, MMU off, called once.
pub unsafe fn enable(banks: &[Bank], image: u64, image_end: u64) -> Result<(), MapError> {
    let normal = ATTR_NORMAL | SH_INNER;
    // SAFETY: forwarded contract.
    unsafe {
        for b in banks {
            map_blocks(b.base, b.size, normal)?;
        }
        map_blocks(image, image_end - image, normal)?;
        map_blocks(DEVICE_HOLE_IPA, BLOCK_2M, ATTR_DEVICE | XN)?;
        for &(base, size) in (*addr_of_mut!(EXTRA_DEVICE)).iter().filter(|e| e.1 != 0) {
            map_blocks(base, size, ATTR_DEVICE | XN)?;
        }
    }
    let ttbr0 = addr_of_mut!(L1) as u32;
    // MAIR0: attr0 Normal WB RW-allocate, attr1 Device-nGnRE.
    let mair0: u32 = 0xff | (0x04 << 8);
    // TTBCR: EAE, T0SZ 0, IRGN0/ORGN0 WB-WA, SH0 inner, EPD1 (no TTBR1 walks).
    let ttbcr: u32 = (1 << 31) | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23);
    // SAFETY: the tables map the running code, its stacks and data 1:1, so execution continues
    // at the same addresses once translation is on.
    unsafe {
        asm!(
            "dsb sy",
            "mcr p15, 0, {mair}, c10, c2, 0",   // MAIR0
            "mcr p15, 0, {z}, c10, c2, 1",      // MAIR1
            "mcr p15, 0, {ttbcr}, c2, c0, 2",   // TTBCR
            "mcrr p15, 0, {ttbr}, {z}, c2",     // TTBR0 (64-bit with EAE)
            "isb",
            "mcr p15, 0, {z}, c8, c7, 0",       // TLBIALL
            "mcr p15, 0, {z}, c7, c5, 0",       // ICIALLU
            "dsb nsh",
            "isb",
            "mrc p15, 0, {t}, c1, c0, 0",
            "orr {t}, {t}, #(1 << 0)",          // M
            "orr {t}, {t}, #(1 << 2)",          // C
            "orr {t}, {t}, #(1 << 12)",         // I
            "bic {t}, {t}, #(1 << 1)",          // A: no alignment checks
            "bic {t}, {t}, #(1 << 19)",         // WXN
            "bic {t}, {t}, #(1 << 25)",         // EE: little-endian
            "mcr p15, 0, {t}, c1, c0, 0",
            "isb",
            mair = in(reg) mair0, ttbcr = in(reg) ttbcr, ttbr = in(reg) ttbr0, z = in(reg) 0u32, t = out(reg) _,
            options(nostack),
        );
    }
    Ok(())
}
