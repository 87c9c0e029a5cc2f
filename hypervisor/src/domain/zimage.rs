//! The ARM32 zImage (Linux's 32-bit boot protocol, Documentation/arch/arm/booting.rst) as a
//! domain's kernel: the header a 32-bit dom0 is recognised by, and where its kernel, initrd and
//! device tree go in its direct-mapped RAM. The header is untrusted input.

use super::dom0::{BuildError, DEFAULT_DOM0_MEM, DTB_ROOM};
use crate::mm::RegionAllocator;
use core::fmt;

/// Bytes of the header read: the magic, start and end words end at 0x30, the endianness
/// word at 0x34.
pub const HEADER_LEN: usize = 0x34;
/// The zImage magic at offset 0x24.
pub const MAGIC: u32 = 0x016f_2818;
/// The little-endian marker at 0x30 (absent from old kernels: 0 is accepted too).
const ENDIAN_LE: u32 = 0x0403_0201;
/// A position-independent zImage is loaded at most this far above its RAM's start: the
/// decompressor finds the start of RAM by rounding its own address down to 128 MiB.
const LOW_WINDOW: u64 = 128 << 20;
const MIB: u64 = 1 << 20;

/// A parsed zImage header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZImage {
    /// The address the image must run at, or 0 when it runs anywhere (Linux's zImage).
    pub start: u32,
    /// `end - start`: the bytes the image occupies from its load address.
    pub len: u32,
}

/// Why the bytes are not a bootable zImage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZImageError {
    TooShort { len: usize },
    NotZImage { magic: u32 },
    BigEndian,
    /// end is not above start.
    BadRange { start: u32, end: u32 },
}

impl fmt::Display for ZImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ZImageError::TooShort { len } => write!(f, "not a zImage: {len} bytes, shorter than its header"),
            ZImageError::NotZImage { magic } => {
                write!(f, "not a zImage: the word at 0x24 is {magic:#010x}, not {MAGIC:#010x} (a 32-bit dom0 is booted as a zImage)")
            }
            ZImageError::BigEndian => write!(f, "a big-endian zImage: xenith runs little-endian guests"),
            ZImageError::BadRange { start, end } => write!(f, "zImage header: end {end:#x} is not above start {start:#x}"),
        }
    }
}

fn word(h: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]])
}

impl ZImage {
    pub fn parse(h: &[u8]) -> Result<ZImage, ZImageError> {
        if h.len() < HEADER_LEN {
            return Err(ZImageError::TooShort { len: h.len() });
        }
        let magic = word(h, 0x24);
        if magic != MAGIC {
            return Err(ZImageError::NotZImage { magic });
        }
        let endian = word(h, 0x30);
        if endian != ENDIAN_LE && endian != 0 {
            return Err(ZImageError::BigEndian);
        }
        let (start, end) = (word(h, 0x28), word(h, 0x2c));
        if end <= start {
            return Err(ZImageError::BadRange { start, end });
        }
        Ok(ZImage { start, len: end - start })
    }
}

/// Where everything of a 32-bit dom0 goes. All addresses are physical (== dom0 IPA).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZImageLayout {
    pub ram_base: u64,
    pub ram_size: u64,
    pub kernel: ZImage,
    /// Where the zImage is copied and entered (r0 = 0, r1 = ~0, r2 = the DTB).
    pub kernel_load: u64,
    pub initrd: Option<(u64, u64)>,
    pub dtb: u64,
}

/// Decide a 32-bit dom0's RAM (below 4 GiB, 2 MiB-aligned) and layout: the DTB at the top of
/// its RAM, the initrd below it, and the zImage as high as it may go below 128 MiB from the
/// RAM's start (a position-independent one), else at the address its header names, which must
/// be inside the RAM. `kernel_len` is the module's size (the header's length may be smaller:
/// it counts only what the image needs).
pub fn plan(
    free: &mut RegionAllocator,
    dom0_mem: Option<u64>,
    kernel_at: u64,
    header: &[u8],
    kernel_len: u64,
    initrd_len: Option<u64>,
) -> Result<ZImageLayout, alloc::string::String> {
    use alloc::format;
    use alloc::string::ToString;
    let kernel = ZImage::parse(header).map_err(|e| format!("dom0 kernel module at {kernel_at:#x}: {e}"))?;
    let requested = dom0_mem.unwrap_or(DEFAULT_DOM0_MEM);
    let size = requested.div_ceil(2 * MIB) * (2 * MIB);
    let image_len = u64::from(kernel.len).max(kernel_len);
    let initrd_room = initrd_len.map(|l| l.div_ceil(2 * MIB) * (2 * MIB)).unwrap_or(0);
    let needed = image_len.div_ceil(2 * MIB) * (2 * MIB) + initrd_room + DTB_ROOM;
    if size < needed {
        return Err(BuildError::Dom0MemTooSmall { requested, needed }.to_string());
    }
    // The lowest free range that fits (the allocator's order) is the one below 4 GiB if any is.
    let largest_free = free.free_ranges().map(|(_, s)| s).max().unwrap_or(0);
    let base = free.alloc(size, 2 * MIB).ok_or_else(|| BuildError::Dom0MemTooLarge { requested, largest_free }.to_string())?;
    let end = base + size;
    if end > 1 << 32 {
        let _ = free.free(base, size);
        return Err(format!("dom0's RAM {base:#x}-{end:#x} would end above 4 GiB: a 32-bit dom0 needs its RAM below"));
    }
    let dtb = end - DTB_ROOM;
    let initrd = initrd_len.map(|l| ((dtb - l) & !0xfff, l));
    let below = initrd.map_or(dtb, |(at, _)| at);
    let kernel_load = if kernel.start == 0 {
        let top = below.min(base + LOW_WINDOW);
        top.checked_sub(image_len).map(|a| a & !(2 * MIB - 1)).filter(|&a| a >= base)
    } else {
        let at = u64::from(kernel.start);
        (at >= base && at + image_len <= below).then_some(at)
    };
    let Some(kernel_load) = kernel_load else {
        let _ = free.free(base, size);
        return Err(format!(
            "dom0 zImage ({image_len} bytes, start {:#x}) does not fit dom0's RAM {base:#x}-{end:#x} below its initrd and DTB",
            kernel.start
        ));
    };
    Ok(ZImageLayout { ram_base: base, ram_size: size, kernel, kernel_load, initrd, dtb })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(start: u32, end: u32) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0x24..0x28].copy_from_slice(&MAGIC.to_le_bytes());
        h[0x28..0x2c].copy_from_slice(&start.to_le_bytes());
        h[0x2c..0x30].copy_from_slice(&end.to_le_bytes());
        h[0x30..0x34].copy_from_slice(&ENDIAN_LE.to_le_bytes());
        h
    }

    fn ram() -> RegionAllocator {
        let mut r = RegionAllocator::new();
        r.add(0x4000_0000, 0x8000_0000).unwrap();
        r.reserve(0x4000_0000, 0x20_0000).unwrap();
        r
    }

    #[test]
    fn header_fields_and_refusals() {
        assert_eq!(ZImage::parse(&header(0, 0x50_0000)), Ok(ZImage { start: 0, len: 0x50_0000 }));
        assert_eq!(ZImage::parse(&[0; 8]), Err(ZImageError::TooShort { len: 8 }));
        let mut arm64 = header(0, 1);
        arm64[0x24..0x28].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(ZImage::parse(&arm64), Err(ZImageError::NotZImage { magic: 0 }));
        let mut be = header(0, 1);
        be[0x30..0x34].copy_from_slice(&0x0102_0304u32.to_le_bytes());
        assert_eq!(ZImage::parse(&be), Err(ZImageError::BigEndian));
        assert_eq!(ZImage::parse(&header(0x100, 0x100)), Err(ZImageError::BadRange { start: 0x100, end: 0x100 }));
    }

    #[test]
    fn a_position_independent_zimage_goes_high_in_the_first_128_mib() {
        let mut free = ram();
        let l = plan(&mut free, Some(512 << 20), 0x4900_0000, &header(0, 0x50_0000), 0x50_0000, Some(0x30_0000)).unwrap();
        assert_eq!(l.ram_base, 0x4020_0000);
        assert_eq!(l.ram_size, 512 << 20);
        assert_eq!(l.dtb, 0x4020_0000 + (510 << 20));
        assert_eq!(l.initrd, Some(((l.dtb - 0x30_0000) & !0xfff, 0x30_0000)));
        // Below RAM base + 128 MiB, 2 MiB aligned, with room for the whole image.
        assert_eq!(l.kernel_load, (0x4020_0000 + LOW_WINDOW - 0x50_0000) & !(2 * MIB - 1));
        assert!(l.kernel_load + 0x50_0000 <= 0x4020_0000 + LOW_WINDOW);
        assert!(!free.is_free(l.ram_base, l.ram_size));
    }

    #[test]
    fn a_fixed_address_zimage_must_lie_in_dom0_ram() {
        let mut free = ram();
        let l = plan(&mut free, Some(64 << 20), 0x4900_0000, &header(0x4030_0000, 0x4040_0000), 0x10_0000, None).unwrap();
        assert_eq!(l.kernel_load, 0x4030_0000);
        let mut free = ram();
        let e = plan(&mut free, Some(64 << 20), 0x4900_0000, &header(0x9000_0000, 0x9010_0000), 0x10_0000, None).unwrap_err();
        assert!(e.contains("does not fit"), "{e}");
        assert_eq!(free.total_free(), 0x8000_0000 - 0x20_0000, "the RAM goes back to the pool");
    }

    #[test]
    fn dom0_ram_above_4_gib_is_refused() {
        let mut free = RegionAllocator::new();
        free.add(0x1_0000_0000, 1 << 30).unwrap();
        let e = plan(&mut free, Some(64 << 20), 0x1_0000_0000, &header(0, 0x1000), 0x1000, None).unwrap_err();
        assert!(e.contains("above 4 GiB"), "{e}");
    }

    #[test]
    fn too_small_dom0_mem_is_refused() {
        let mut free = ram();
        let e = plan(&mut free, Some(2 << 20), 0x4900_0000, &header(0, 0x50_0000), 0x50_0000, None).unwrap_err();
        assert!(e.contains("too small"), "{e}");
    }
}
