//! `xen_version`: the version xenith answers as (Xen 4.17, the ABI it implements) and the
//! feature bits a domain sees.

use super::{read_arg, write_arg, GuestMemory};
use crate::domain::Domain;
use alloc::string::String;
use guest_abi::errno::{ret, EFAULT, EINVAL, ENOBUFS, ENOSYS, EPERM};
use crate::sync::Once;
use core::sync::atomic::{AtomicBool, Ordering};
use guest_abi::features::*;
use guest_abi::version::*;

/// The Xen interface version xenith implements.
pub const XEN_MAJOR: u32 = 4;
pub const XEN_MINOR: u32 = 17;

/// XENFEAT bits of submap 0 every ARM domain sees (Xen 4.17's set, measured by the test guest).
const COMMON_FEATURES: u32 = bit(XENFEAT_WRITABLE_PAGE_TABLES)
    | bit(XENFEAT_AUTO_TRANSLATED_PHYSMAP)
    | bit(XENFEAT_MEMORY_OP_VNODE_SUPPORTED)
    | bit(XENFEAT_ARM_SMCCC_SUPPORTED);

/// Submap 0 for a direct-mapped hardware domain: 0x26805, as Xen 4.17 reports to dom0.
pub const DOM0_FEATURES: u32 = COMMON_FEATURES | bit(XENFEAT_DOM0) | bit(XENFEAT_DIRECT_MAPPED);

/// dom0 drives an emulated IOMMU (nested over its stage 2) for its devices.
static DOM0_IOMMU_DMA: AtomicBool = AtomicBool::new(false);

/// Set at boot when dom0 gets an emulated IOMMU: dom0 is then told it is not direct-mapped.
/// Linux picks swiotlb-xen DMA ops for a dom0 that is (or that is told nothing), and those
/// ops bypass its IOMMU ones; with XENFEAT_not_direct_mapped it keeps the IOMMU's DMA ops for
/// devices behind the emulated SMMU and plain DMA for the rest. Every DMA master of such a
/// dom0 is behind the hypervisor's SMMU (stage 2 = dom0's p2m), so its IPAs are right as
/// device addresses even for pages granted to it.
pub fn set_dom0_iommu_dma(on: bool) {
    DOM0_IOMMU_DMA.store(on, Ordering::Relaxed);
}

/// Submap 0 for `dom`.
pub fn features(dom: &Domain) -> u32 {
    let mut f = COMMON_FEATURES;
    if dom.is_hardware {
        f |= bit(XENFEAT_DOM0);
    }
    let direct = dom.direct_mapped && !(dom.is_hardware && DOM0_IOMMU_DMA.load(Ordering::Relaxed));
    f |= if direct { bit(XENFEAT_DIRECT_MAPPED) } else { bit(XENFEAT_NOT_DIRECT_MAPPED) };
    f
}

/// Inline for the commands that only return a number (XENVER_version is the null hypercall
/// guests and benchmarks use); the others build buffers in [`xen_version_buffers`].
#[inline]
pub fn xen_version(dom: &Domain, mem: &mut dyn GuestMemory, cmd: u64, arg: u64) -> i64 {
    // `cmd` is a C int in Xen: the upper half of x0 is ignored.
    match cmd as u32 {
        XENVER_VERSION => i64::from((XEN_MAJOR << 16) | XEN_MINOR),
        XENVER_PAGESIZE if arg == 0 => 4096,
        _ => xen_version_buffers(dom, mem, cmd, arg),
    }
}

#[inline(never)]
fn xen_version_buffers(dom: &Domain, mem: &mut dyn GuestMemory, cmd: u64, arg: u64) -> i64 {
    let cmd = cmd as u32;
    match cmd {
        XENVER_VERSION => i64::from((XEN_MAJOR << 16) | XEN_MINOR),
        XENVER_GET_FEATURES => {
            let mut fi: XenFeatureInfo = match read_arg(mem, arg) {
                Ok(v) => v,
                Err(e) => return e,
            };
            if fi.submap_idx != 0 {
                return ret(EINVAL);
            }
            fi.submap = features(dom);
            match write_arg(mem, arg, &fi) {
                Ok(()) => 0,
                Err(e) => e,
            }
        }
        // The page size is asked for with a NULL argument; anything else is refused.
        XENVER_PAGESIZE => if arg == 0 { 4096 } else { ret(EINVAL) },
        XENVER_EXTRAVERSION => put(mem, arg, &fixed::<16>(EXTRAVERSION)),
        XENVER_COMPILE_INFO => {
            let mut b = [0u8; 144];
            b[..64].copy_from_slice(&fixed::<64>(concat!("rustc (", env!("CARGO_PKG_NAME"), ")")));
            b[64..80].copy_from_slice(&fixed::<16>("xenith"));
            b[80..112].copy_from_slice(&fixed::<32>("xenith"));
            b[112..].copy_from_slice(&fixed::<32>(""));
            put(mem, arg, &b)
        }
        XENVER_CAPABILITIES => put(mem, arg, &fixed::<1024>(CAPABILITIES)),
        XENVER_CHANGESET => put(mem, arg, &fixed::<64>(concat!("xenith ", env!("CARGO_PKG_VERSION")))),
        XENVER_PLATFORM_PARAMETERS => put(mem, arg, &HYPERVISOR_VIRT_START.to_le_bytes()),
        XENVER_GUEST_HANDLE => put(mem, arg, &[0u8; 16]),
        // A guest that may not see the command line gets the placeholder Xen gives it.
        XENVER_COMMANDLINE if !dom.is_hardware => put(mem, arg, DENIED),
        XENVER_COMMANDLINE => put(mem, arg, &fixed::<1024>(COMMAND_LINE.get().map(String::as_str).unwrap_or(""))),
        XENVER_BUILD_ID => build_id(dom, mem, arg),
        _ => ret(ENOSYS),
    }
}

/// XENVER_platform_parameters' virt_start: where Xen 4.17 on ARM starts its own virtual
/// address space (0x200000 on arm64 and arm32). A guest learns nothing of xenith's map from
/// it; it is the value guest tools expect.
pub const HYPERVISOR_VIRT_START: u64 = 0x20_0000;

/// What an unprivileged guest reads instead of the command line (NUL included).
const DENIED: &[u8] = b"<denied>\0";

/// The hypervisor's build id: 20 bytes (the size of a GNU build-id note, which is what guest
/// tools expect), derived from the crate's name and version at compile time.
pub const BUILD_ID: [u8; 20] = build_id_bytes();

const fn build_id_bytes() -> [u8; 20] {
    let seed = concat!(env!("CARGO_PKG_NAME"), " ", env!("CARGO_PKG_VERSION")).as_bytes();
    let mut out = [0u8; 20];
    let mut k = 0;
    while k < 3 {
        // FNV-1a, a different offset basis per 8-byte chunk.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ (k as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut i = 0;
        while i < seed.len() {
            h ^= seed[i] as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
            i += 1;
        }
        let b = h.to_le_bytes();
        let mut j = 0;
        while j < 8 && k * 8 + j < 20 {
            out[k * 8 + j] = b[j];
            j += 1;
        }
        k += 1;
    }
    out
}

/// XENVER_build_id: the hardware domain only. A NULL argument asks for the size; otherwise
/// the guest's `len` (the buffer after it) must hold the whole id.
fn build_id(dom: &Domain, mem: &mut dyn GuestMemory, arg: u64) -> i64 {
    if !dom.is_hardware {
        return ret(EPERM);
    }
    let size = BUILD_ID.len() as i64;
    if arg == 0 {
        return size;
    }
    let len: u32 = match read_arg(mem, arg) {
        Ok(l) => l,
        Err(e) => return e,
    };
    if len == 0 {
        return ret(EINVAL);
    }
    if (len as usize) < BUILD_ID.len() {
        return ret(ENOBUFS);
    }
    match put(mem, arg.wrapping_add(4), &BUILD_ID) {
        0 => size,
        e => e,
    }
}

/// What XENVER_extraversion reports after "4.17".
pub const EXTRAVERSION: &str = "-xenith";
/// The guest kinds a 64-bit ARM hypervisor runs (XENVER_capabilities).
pub const CAPABILITIES: &str = "xen-3.0-aarch64 xen-3.0-armv7l ";

/// The hypervisor's own command line, for XENVER_commandline.
static COMMAND_LINE: Once<String> = Once::new();

pub fn set_command_line(line: &str) {
    COMMAND_LINE.call_once(|| String::from(line));
}

/// `s` as a NUL-terminated, zero-filled C array (truncated to leave room for the NUL).
fn fixed<const N: usize>(s: &str) -> [u8; N] {
    let mut b = [0u8; N];
    let n = core::cmp::min(s.len(), N.saturating_sub(1));
    b[..n].copy_from_slice(&s.as_bytes()[..n]);
    b
}

fn put(mem: &mut dyn GuestMemory, gva: u64, bytes: &[u8]) -> i64 {
    match mem.copy_to_guest(gva, bytes) {
        Ok(()) => 0,
        Err(_) => ret(EFAULT),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testmem::*;
    use super::*;

    #[test]
    fn dom0_features_match_xen_4_17() {
        assert_eq!(DOM0_FEATURES, 0x26805);
    }

    #[test]
    fn strings_are_nul_terminated_and_zero_filled() {
        let mut d = dom0();
        let mut m = FlatMemory::new(0x1000, 0x2000);
        m.bytes.fill(0xaa);
        assert_eq!(xen_version(&mut d, &mut m, u64::from(XENVER_EXTRAVERSION), 0x1000), 0);
        assert_eq!(&m.bytes[..8], b"-xenith\0");
        assert!(m.bytes[8..16].iter().all(|&b| b == 0));
        assert_eq!(m.bytes[16], 0xaa, "nothing written past the 16-byte buffer");
        assert_eq!(xen_version(&mut d, &mut m, u64::from(XENVER_CAPABILITIES), 0x1000), 0);
        assert!(m.bytes.starts_with(b"xen-3.0-aarch64 "));
        assert_eq!(xen_version(&mut d, &mut m, u64::from(XENVER_EXTRAVERSION), 0x9000), ret(EFAULT));
        assert_eq!(xen_version(&mut d, &mut m, u64::from(XENVER_COMMANDLINE), 0x2f00), ret(EFAULT), "1024 bytes run off the end");
    }

    #[test]
    fn build_id_pagesize_and_denied_command_line() {
        let mut d = dom0();
        let mut m = FlatMemory::new(0x1000, 0x1000);
        assert_eq!(xen_version(&mut d, &mut m, u64::from(XENVER_PAGESIZE), 0), 4096);
        assert_eq!(xen_version(&mut d, &mut m, u64::from(XENVER_PAGESIZE), 0x1000), ret(EINVAL));
        assert_eq!(xen_version(&mut d, &mut m, u64::from(XENVER_BUILD_ID), 0), 20);
        for (len, r) in [(0u32, ret(EINVAL)), (4, ret(ENOBUFS)), (20, 20), (64, 20)] {
            m.bytes[..4].copy_from_slice(&len.to_le_bytes());
            assert_eq!(xen_version(&mut d, &mut m, u64::from(XENVER_BUILD_ID), 0x1000), r, "len {len}");
        }
        assert_eq!(&m.bytes[4..24], &BUILD_ID);
        assert_ne!(BUILD_ID, [0; 20]);
        assert_eq!(xen_version(&mut d, &mut m, u64::from(XENVER_BUILD_ID), 0x9000), ret(EFAULT));
        assert_eq!(xen_version(&mut d, &mut m, u64::from(XENVER_PLATFORM_PARAMETERS), 0x1000), 0);
        assert_eq!(u64::from_le_bytes(m.bytes[..8].try_into().unwrap()), 0x20_0000);
        let mut u = crate::domain::Domain::new(1, false, false, Default::default());
        assert_eq!(xen_version(&mut u, &mut m, u64::from(XENVER_BUILD_ID), 0), ret(EPERM));
        m.bytes.fill(0xaa);
        assert_eq!(xen_version(&mut u, &mut m, u64::from(XENVER_COMMANDLINE), 0x1000), 0);
        assert_eq!(&m.bytes[..10], b"<denied>\0\xaa");
    }

    #[test]
    fn version_is_4_17() {
        let mut d = dom0();
        let mut m = FlatMemory::new(0x1000, 0x1000);
        assert_eq!(xen_version(&mut d, &mut m, 0, 0), 0x40011);
    }

    #[test]
    fn features_submap0_for_dom0_and_errors() {
        let mut d = dom0();
        let mut m = FlatMemory::new(0x1000, 0x1000);
        assert_eq!(xen_version(&mut d, &mut m, 6, 0x1000), 0);
        assert_eq!(u32::from_le_bytes(m.bytes[4..8].try_into().unwrap()), DOM0_FEATURES);
        m.bytes[0] = 1;
        assert_eq!(xen_version(&mut d, &mut m, 6, 0x1000), ret(EINVAL));
        assert_eq!(xen_version(&mut d, &mut m, 6, 0x9000), ret(EFAULT));
        assert_eq!(xen_version(&mut d, &mut m, u64::MAX, 0), ret(ENOSYS));
        assert_eq!(xen_version(&mut d, &mut m, 0xffff_ffff, 0), ret(ENOSYS));
    }
}
