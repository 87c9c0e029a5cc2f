//! dom0's modules carried in xenith's own image (`platform::bundle`): what the ARMv7 entry
//! code did with a bundle it found at the BSS start, checked against the DTB's module nodes
//! before anything reads a module.

use crate::dt::boot_info::{BootModule, ModuleKind};
use crate::dt::Region;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use platform::bundle::{Header, Kind};

/// The entry code's report (its r2 to `xenith_boot_hyp`): no bundle header at the BSS start.
pub const NONE: u32 = 0;
/// Header and modules moved to the header's destination.
pub const MOVED: u32 = 1;
/// Not moved: the destination is not a 2 MiB boundary at or past the image's end, or the
/// length is not a multiple of 32 between the header's and 256 MiB.
pub const REFUSED_LAYOUT: u32 = 2;
/// Not moved: the DTB the loader passed lies where the modules would go.
pub const REFUSED_DTB: u32 = 3;

fn module_kind(k: Kind) -> ModuleKind {
    match k {
        Kind::Kernel => ModuleKind::Kernel,
        Kind::Ramdisk => ModuleKind::Ramdisk,
    }
}

/// Check what the entry code reported. `bundle(len)` reads `len` bytes at `dest` (`None`
/// when they cannot be read), `modules` the DTB's boot
/// modules, `dtb` where the loader put the DTB, `image_end` the end of xenith's memory.
/// Returns the line to log when a bundle was moved and matches the DTB, `None` without a
/// bundle, or why dom0 cannot be started.
pub fn check<'a>(
    status: u32,
    dest: u64,
    bundle: impl Fn(u64) -> Option<&'a [u8]>,
    modules: &[BootModule],
    dtb: Region,
    image_end: u64,
) -> Result<Option<String>, String> {
    match status {
        NONE => return Ok(None),
        MOVED => {}
        REFUSED_LAYOUT => {
            return Err(format!(
                "the module bundle at xenith's BSS start was not moved: its destination {dest:#x} is not a 2 MiB boundary at or past xenith's end ({image_end:#x}), or its length is out of range: the image was built for another xenith (`cargo xtask snow` builds both together)"
            ))
        }
        REFUSED_DTB => {
            return Err(format!(
                "the module bundle was not moved to {dest:#x}: the loader put the DTB at {dtb}, where dom0's modules go; the modules were lost when xenith cleared its BSS"
            ))
        }
        other => return Err(format!("the entry code reported module bundle status {other}, which this xenith does not know")),
    }
    let head = bundle(platform::bundle::HEADER_LEN as u64).ok_or_else(|| format!("the module bundle at {dest:#x} cannot be read (above 4 GiB?)"))?;
    let header = Header::parse(head).map_err(|e| format!("the module bundle moved to {dest:#x}: {e}"))?;
    if u64::from(header.dest) != dest {
        return Err(format!("the module bundle moved to {dest:#x} says its destination is {:#x}", header.dest));
    }
    let all = bundle(u64::from(header.total_len)).ok_or_else(|| format!("the module bundle at {dest:#x} ({} bytes) cannot be read", header.total_len))?;
    header.verify(all).map_err(|e| format!("{e}: the image was damaged on its way (the card, the loader's copy)"))?;
    let dom0: Vec<&BootModule> = modules.iter().filter(|m| !m.for_domu).collect();
    let mut parts = Vec::new();
    for (m, at) in header.placed() {
        let want = Region { base: at, size: u64::from(m.size) };
        match dom0.iter().find(|b| b.kind == module_kind(m.kind)) {
            Some(b) if b.region == want => parts.push(format!("{} {} bytes at {at:#x}", m.kind.name(), m.size)),
            Some(b) => {
                return Err(format!(
                    "the DTB's {} ({}) is at {}, the module bundle holds it at {want}: the DTB and the image were not built together",
                    b.path,
                    m.kind.name(),
                    b.region
                ))
            }
            None => return Err(format!("the module bundle holds the {} at {want}, but the DTB names no such module under /chosen", m.kind.name())),
        }
    }
    Ok(Some(format!("module bundle: moved past xenith's memory to {dest:#x}, CRC-32 checked: {}", parts.join(", "))))
}

/// Why dom0's kernel module holds no zImage, in the words a Snow owner needs: with no bundle,
/// the loader was to copy the module there and did not.
pub fn missing_kernel(status: u32, module: Region, why: &str) -> String {
    if status == MOVED {
        format!("dom0's kernel module at {module} (from the module bundle): {why}")
    } else {
        format!(
            "dom0's kernel module at {module}: {why}: nothing was loaded there. A loader that ignores FIT `loadables` (the Snow's stock firmware) needs the image's module bundle (`cargo xtask snow` builds it)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use platform::bundle::{crc32, Layout, Module};

    fn bundle(kernel: &[u8], ramdisk: &[u8]) -> (Layout, Vec<u8>) {
        let l = Layout::new(0x4001_0000, 0x4008_b000, 0x408d_1000, kernel.len() as u64, ramdisk.len() as u64).unwrap();
        let mut b = vec![0u8; l.total_len as usize];
        let mut mods = Vec::new();
        for (&(kind, off, size), data) in l.modules.iter().zip([kernel, ramdisk]) {
            b[off as usize..(off + size) as usize].copy_from_slice(data);
            mods.push(Module { kind, offset: off as u32, size: size as u32, crc: crc32(data) });
        }
        b[..64].copy_from_slice(&Header::encode(l.dest as u32, l.total_len as u32, &mods));
        (l, b)
    }

    fn module(kind: ModuleKind, base: u64, size: u64) -> BootModule {
        BootModule { path: format!("/chosen/module@{base:x}"), kind, region: Region { base, size }, bootargs: None, for_domu: false }
    }

    const DTB: Region = Region { base: 0xbf00_0000, size: 0xc000 };
    const END: u64 = 0x408d_1000;

    #[test]
    fn a_moved_bundle_matching_the_dtb_is_reported() {
        let (l, b) = bundle(&[1u8; 3000], &[2u8; 700]);
        let mods = [module(ModuleKind::Kernel, l.module_addr(Kind::Kernel), 3000), module(ModuleKind::Ramdisk, l.module_addr(Kind::Ramdisk), 700)];
        let line = check(MOVED, l.dest, |_| Some(&b[..]), &mods, DTB, END).unwrap().unwrap();
        assert!(line.contains("moved past xenith's memory to 0x40a00000") && line.contains("dom0 kernel 3000 bytes at 0x40a01000"), "{line}");
        assert_eq!(check(NONE, 0, |_| None, &mods, DTB, END), Ok(None));
    }

    #[test]
    fn a_corrupt_module_a_mismatched_dtb_or_a_refused_move_is_a_clear_error() {
        let (l, mut b) = bundle(&[1u8; 3000], &[2u8; 700]);
        let k = l.module_addr(Kind::Kernel);
        let mods = [module(ModuleKind::Kernel, k, 3000), module(ModuleKind::Ramdisk, l.module_addr(Kind::Ramdisk), 700)];
        // The DTB names the kernel elsewhere, or not at all.
        let moved = [module(ModuleKind::Kernel, 0x4900_0000, 3000), mods[1].clone()];
        let e = check(MOVED, l.dest, |_| Some(&b[..]), &moved, DTB, END).unwrap_err();
        assert!(e.contains("is at 0x49000000+0xbb8, the module bundle holds it at 0x40a01000+0xbb8"), "{e}");
        let e = check(MOVED, l.dest, |_| Some(&b[..]), &mods[1..], DTB, END).unwrap_err();
        assert!(e.contains("the DTB names no such module"), "{e}");
        // A flipped bit in the kernel.
        b[l.modules[0].1 as usize + 10] ^= 4;
        let e = check(MOVED, l.dest, |_| Some(&b[..]), &mods, DTB, END).unwrap_err();
        assert!(e.contains("dom0 kernel in the module bundle at 0x40a01000 (3000 bytes) is corrupt"), "{e}");
        // Truncated, unreadable, refused.
        let (_, b) = bundle(&[1u8; 3000], &[2u8; 700]);
        let e = check(MOVED, l.dest, |_| Some(&b[..100]), &mods, DTB, END).unwrap_err();
        assert!(e.contains("module bundle: 100 bytes present"), "{e}");
        assert!(check(MOVED, l.dest, |_| None, &mods, DTB, END).unwrap_err().contains("cannot be read"));
        assert!(check(MOVED, l.dest + 0x20_0000, |_| Some(&b[..]), &mods, DTB, END).unwrap_err().contains("says its destination is 0x40a00000"));
        assert!(check(MOVED, l.dest, |_| Some(&[0u8; 64][..]), &mods, DTB, END).unwrap_err().contains("no module bundle header"));
        assert!(check(REFUSED_LAYOUT, 0x4080_0000, |_| None, &mods, DTB, END).unwrap_err().contains("destination 0x40800000 is not a 2 MiB boundary at or past xenith's end (0x408d1000)"));
        assert!(check(REFUSED_DTB, l.dest, |_| None, &mods, Region { base: 0x40b0_0000, size: 0x1_0000 }, END).unwrap_err().contains("the loader put the DTB at 0x40b00000+0x10000"));
        assert!(check(7, 0, |_| None, &mods, DTB, END).is_err());
        let m = missing_kernel(NONE, Region { base: 0x4900_0000, size: 0x10 }, "not a zImage: the word at 0x24 is 0");
        assert!(m.contains("ignores FIT `loadables`") && m.contains("0x49000000+0x10"), "{m}");
        assert!(missing_kernel(MOVED, Region { base: 1, size: 1 }, "x").contains("from the module bundle"));
    }
}
