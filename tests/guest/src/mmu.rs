//! The guest's EL1 stage-1 translation: an identity map of its RAM banks (Normal write-back,
//! inner shareable, 2 MiB blocks) plus one Device page block at [`DEVICE_HOLE_IPA`], and nothing
//! else, so [`UNMAPPED_VA`] faults. 4 KiB granule, 39-bit VA (TTBR0 only, walks start at level 1).

use crate::fdt::Bank;
use core::arch::asm;
use core::ptr::addr_of_mut;

/// An IPA in a hole of QEMU virt's map (below RAM, outside flash, GIC, UART, virtio, the platform
/// bus and the PCIe windows) that no hypervisor maps for dom0. Stage-1 maps it as Device memory so
/// that a store reaches stage 2 and the hypervisor has to decide what to do.
pub const DEVICE_HOLE_IPA: u64 = 0x0e00_0000;
/// A virtual address the guest never maps: hypercall buffers there must give -EFAULT.
pub const UNMAPPED_VA: u64 = 0x0000_0000_0010_0000;

const BLOCK_2M: u64 = 1 << 21;
const L2_TABLES: usize = 8;
const DESC_TABLE: u64 = 0b11;
const DESC_BLOCK: u64 = 0b01;
const AF: u64 = 1 << 10;
const SH_INNER: u64 = 3 << 8;
const ATTR_NORMAL: u64 = 0 << 2;
const ATTR_DEVICE: u64 = 1 << 2;
const XN: u64 = (1 << 54) | (1 << 53);

#[repr(C, align(4096))]
struct Table([u64; 512]);

static mut L1: Table = Table([0; 512]);
static mut L2: [Table; L2_TABLES] = [const { Table([0; 512]) }; L2_TABLES];
static mut L2_USED: usize = 0;

/// Why the map could not be built.
#[derive(Debug)]
#[allow(dead_code)] // the fields are read through Debug
pub enum MapError {
    /// An address is beyond the 39-bit VA space.
    TooHigh(u64),
    /// More 1 GiB regions than level-2 tables.
    OutOfTables,
}

/// Level-2 table for the GiB containing `va`, created on first use.
///
/// # Safety
/// Single-threaded, MMU-off (or not yet using these tables) boot code only.
unsafe fn l2_for(va: u64) -> Result<&'static mut [u64; 512], MapError> {
    let i1 = (va >> 30) as usize;
    if i1 >= 512 {
        return Err(MapError::TooHigh(va));
    }
    // SAFETY: see the function's contract: nobody else touches the tables now.
    unsafe {
        let l1 = &mut (*addr_of_mut!(L1)).0;
        if l1[i1] & DESC_TABLE == DESC_TABLE {
            let pa = l1[i1] & 0x0000_ffff_ffff_f000;
            return Ok(&mut *(pa as *mut [u64; 512]));
        }
        let used = &mut *addr_of_mut!(L2_USED);
        if *used == L2_TABLES {
            return Err(MapError::OutOfTables);
        }
        let t = &mut (*addr_of_mut!(L2))[*used].0;
        *used += 1;
        // Identity map: the table's VA is its PA.
        l1[i1] = t.as_ptr() as u64 | DESC_TABLE;
        Ok(t)
    }
}

/// Maps `[base, base + size)` rounded out to 2 MiB, identity, with `attrs`.
///
/// # Safety
/// As [`l2_for`].
unsafe fn map_blocks(base: u64, size: u64, attrs: u64) -> Result<(), MapError> {
    let mut pa = base & !(BLOCK_2M - 1);
    let end = (base + size + BLOCK_2M - 1) & !(BLOCK_2M - 1);
    while pa < end {
        // SAFETY: forwarded contract.
        let l2 = unsafe { l2_for(pa)? };
        l2[((pa >> 21) & 511) as usize] = pa | attrs | AF | DESC_BLOCK;
        pa += BLOCK_2M;
    }
    Ok(())
}

/// Device mappings requested before [`enable`] (PCI config space and BAR windows).
static mut EXTRA_DEVICE: [(u64, u64); 16] = [(0, 0); 16];

/// Also map `[base, base + size)` as Device memory when [`enable`] runs.
///
/// # Safety
/// Boot CPU, before [`enable`].
pub unsafe fn add_device(base: u64, size: u64) {
    // SAFETY: forwarded contract: nothing else touches the list.
    unsafe {
        let extra = &mut *addr_of_mut!(EXTRA_DEVICE);
        if let Some(slot) = extra.iter_mut().find(|e| e.1 == 0) {
            *slot = (base, size);
        }
    }
}

/// Builds the tables for `banks` (plus the image at `image` .. `image_end`, should a loader have
/// put it outside them) and turns the MMU and caches on.
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
    let ttbr = addr_of_mut!(L1) as u64;
    // MAIR: attr0 Normal WB RW-allocate, attr1 Device-nGnRnE.
    let mair: u64 = 0xff;
    let parange: u64;
    // SAFETY: reading an ID register.
    unsafe { asm!("mrs {}, id_aa64mmfr0_el1", out(reg) parange) };
    let ips = (parange & 0xf).min(5);
    // T0SZ=25, IRGN0=ORGN0=WB-WA, SH0=inner, TG0=4K, EPD1 (no TTBR1 walks), IPS.
    let tcr: u64 = 25 | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23) | (ips << 32);
    // SAFETY: the tables map the running code, its stack and data 1:1, so execution continues at
    // the same addresses once translation is on.
    unsafe {
        asm!(
            "dsb sy",
            "msr mair_el1, {mair}",
            "msr tcr_el1, {tcr}",
            "msr ttbr0_el1, {ttbr}",
            "isb",
            "tlbi vmalle1",
            "dsb nsh",
            "isb",
            "mrs {t}, sctlr_el1",
            "orr {t}, {t}, #(1 << 0)",   // M
            "orr {t}, {t}, #(1 << 2)",   // C
            "orr {t}, {t}, #(1 << 12)",  // I
            "bic {t}, {t}, #(1 << 1)",   // A: no alignment checks
            "bic {t}, {t}, #(1 << 19)",  // WXN
            "bic {t}, {t}, #(1 << 25)",  // EE: little-endian
            "msr sctlr_el1, {t}",
            "isb",
            mair = in(reg) mair, tcr = in(reg) tcr, ttbr = in(reg) ttbr, t = out(reg) _,
            options(nostack),
        );
    }
    Ok(())
}
