//! The dom0 builder's decisions, as pure logic: how much RAM dom0 gets and where (direct-mapped:
//! IPA == PA), where its kernel, initrd and device tree go inside that RAM (the arm64 Image boot
//! protocol), and the reasons it can refuse to boot. The arch layer carries the plan out.

use super::image::{Arm64Image, ImageError};
use crate::mm::RegionAllocator;
use core::fmt;

/// dom0's RAM when the command line has no `dom0_mem=`.
pub const DEFAULT_DOM0_MEM: u64 = 512 << 20;
/// Room kept at the top of dom0's RAM for its device tree (Linux: at most 2 MiB, 8-byte aligned,
/// not sharing a 2 MiB block that must be mapped differently).
pub const DTB_ROOM: u64 = 2 << 20;
const MIB: u64 = 1 << 20;

/// Why dom0 cannot be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// No kernel module in /chosen.
    NoKernel,
    /// The kernel module is not a bootable arm64 Image.
    BadKernel { at: u64, error: ImageError },
    /// `dom0_mem=` asks for more than there is.
    Dom0MemTooLarge { requested: u64, largest_free: u64 },
    /// `dom0_mem=` too small for the kernel, initrd and DTB.
    Dom0MemTooSmall { requested: u64, needed: u64 },
    /// The device tree built for dom0 is larger than the room kept for it.
    DtbTooLarge { size: u64 },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::NoKernel => write!(
                f,
                "no dom0 kernel: /chosen has no multiboot,module node (QEMU: -device guest-loader,addr=...,kernel=...; U-Boot: a /chosen/module@ADDR node)"
            ),
            BuildError::BadKernel { at, error } => write!(f, "dom0 kernel module at {at:#x}: {error}"),
            BuildError::Dom0MemTooLarge { requested, largest_free } => write!(
                f,
                "dom0_mem={} is more than the largest free RAM range ({} MiB)",
                size_name(*requested),
                largest_free / MIB
            ),
            BuildError::Dom0MemTooSmall { requested, needed } => write!(
                f,
                "dom0_mem={} is too small: the kernel, initrd and device tree need {} MiB",
                size_name(*requested),
                needed.div_ceil(MIB)
            ),
            BuildError::DtbTooLarge { size } => {
                write!(f, "dom0's device tree is {size} bytes, more than the {DTB_ROOM} bytes kept for it")
            }
        }
    }
}

/// `4G`, `512M`, `1536K`: the way a user wrote it on the command line.
pub fn size_name(bytes: u64) -> alloc::string::String {
    use alloc::format;
    if bytes % (1 << 30) == 0 {
        format!("{}G", bytes >> 30)
    } else if bytes % MIB == 0 {
        format!("{}M", bytes >> 20)
    } else {
        format!("{}K", bytes >> 10)
    }
}

/// Where everything of dom0 goes. All addresses are physical (== dom0 IPA).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dom0Layout {
    pub ram_base: u64,
    pub ram_size: u64,
    pub kernel: Arm64Image,
    /// Where the kernel image is copied and entered.
    pub kernel_load: u64,
    /// Where the initrd is copied, and its size.
    pub initrd: Option<(u64, u64)>,
    /// Where dom0's DTB goes (room: [`DTB_ROOM`]).
    pub dtb: u64,
}

/// Decide dom0's RAM and layout. `kernel_header` is the kernel module's first bytes (64 are
/// enough); `kernel_len` and `initrd_len` are the modules' sizes. On success the RAM is taken
/// from `free` (so nothing else is given it).
pub fn plan(
    free: &mut RegionAllocator,
    dom0_mem: Option<u64>,
    kernel_at: u64,
    kernel_header: &[u8],
    kernel_len: u64,
    initrd_len: Option<u64>,
) -> Result<Dom0Layout, BuildError> {
    let kernel = Arm64Image::parse(kernel_header).map_err(|error| BuildError::BadKernel { at: kernel_at, error })?;
    let requested = dom0_mem.unwrap_or(DEFAULT_DOM0_MEM);
    let size = requested.div_ceil(2 * MIB) * (2 * MIB);
    let kernel_end = kernel.load_offset() + kernel.memory_needed().max(kernel_len);
    let initrd_room = initrd_len.map(|l| l.div_ceil(2 * MIB) * (2 * MIB)).unwrap_or(0);
    let needed = kernel_end.div_ceil(2 * MIB) * (2 * MIB) + initrd_room + DTB_ROOM;
    if size < needed {
        return Err(BuildError::Dom0MemTooSmall { requested, needed });
    }
    let largest_free = free.free_ranges().map(|(_, s)| s).max().unwrap_or(0);
    // Prefer 1 GiB alignment (stage 2 then maps it with 1 GiB blocks), else 2 MiB (Image protocol).
    let base = free
        .alloc(size, 1 << 30)
        .or_else(|| free.alloc(size, 2 * MIB))
        .ok_or(BuildError::Dom0MemTooLarge { requested, largest_free })?;
    let end = base + size;
    let dtb = end - DTB_ROOM;
    let initrd = initrd_len.map(|l| ((dtb - l) & !0xfff, l));
    Ok(Dom0Layout { ram_base: base, ram_size: size, kernel, kernel_load: base + kernel.load_offset(), initrd, dtb })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn image_header(text_offset: u64, image_size: u64) -> [u8; 64] {
        let mut h = [0u8; 64];
        h[8..16].copy_from_slice(&text_offset.to_le_bytes());
        h[16..24].copy_from_slice(&image_size.to_le_bytes());
        h[24..32].copy_from_slice(&2u64.to_le_bytes());
        h[0x38..0x3c].copy_from_slice(b"ARM\x64");
        h
    }

    fn qemu_free() -> RegionAllocator {
        let mut r = RegionAllocator::new();
        r.add(0x4000_0000, 2 << 30).unwrap();
        r.reserve(0x4000_0000, 16 << 20).unwrap(); // hypervisor
        r.reserve(0x4800_0000, 1 << 20).unwrap(); // host DTB
        r.reserve(0x4900_0000, 4 << 20).unwrap(); // modules
        r
    }

    #[test]
    fn lays_out_kernel_initrd_and_dtb_inside_dom0_ram() {
        let mut free = qemu_free();
        let l = plan(&mut free, Some(512 << 20), 0x4900_0000, &image_header(0x80000, 30 << 20), 20 << 20, Some(10 << 20)).unwrap();
        assert_eq!(l.ram_base % (2 << 20), 0);
        assert_eq!(l.ram_size, 512 << 20);
        assert_eq!(l.kernel_load, l.ram_base + 0x80000);
        let (initrd, len) = l.initrd.unwrap();
        assert!(initrd >= l.kernel_load + (30 << 20) && initrd + len <= l.dtb);
        assert_eq!(l.dtb, l.ram_base + l.ram_size - DTB_ROOM);
        assert!(!free.is_free(l.ram_base, l.ram_size), "dom0's RAM is taken");
        for (b, s) in [(0x4000_0000u64, 16u64 << 20), (0x4800_0000, 1 << 20), (0x4900_0000, 4 << 20)] {
            assert!(b + s <= l.ram_base || b >= l.ram_base + l.ram_size, "dom0 RAM overlaps a reserved range");
        }
    }

    #[test]
    fn refuses_clearly() {
        let mut free = qemu_free();
        let e = plan(&mut free, Some(4 << 30), 0x4900_0000, &image_header(0x80000, 1 << 20), 1 << 20, None).unwrap_err();
        assert!(e.to_string().starts_with("dom0_mem=4G is more than the largest free RAM range"), "{e}");
        let e = plan(&mut free, Some(2 << 20), 0x4900_0000, &image_header(0x80000, 1 << 20), 1 << 20, None).unwrap_err();
        assert!(matches!(e, BuildError::Dom0MemTooSmall { .. }), "{e}");
        let e = plan(&mut free, None, 0x4900_0000, b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0", 16, None).unwrap_err();
        assert!(e.to_string().contains("not an arm64 Image"), "{e}");
        assert_eq!(free.total_free(), qemu_free().total_free(), "a refused plan takes no RAM");
    }
}
