//! /dev/xen/gntdev's map ioctl, for the dom0 programs built here that map other domains'
//! grants. Included with `#[path]` by each program's single source file.

/// `struct ioctl_gntdev_map_grant_ref` with one reference.
#[repr(C)]
pub struct GntdevMap {
    pub count: u32,
    pub pad: u32,
    /// Where to mmap the grant (the offset gntdev hands back).
    pub index: u64,
    pub domid: u32,
    pub gref: u32,
}

/// IOCTL_GNTDEV_MAP_GRANT_REF: _IOC(none, 'G', 0, sizeof(GntdevMap)).
pub const IOCTL_GNTDEV_MAP_GRANT_REF: u64 = ((core::mem::size_of::<GntdevMap>() as u64) << 16) | ((b'G' as u64) << 8);
const _: () = assert!(IOCTL_GNTDEV_MAP_GRANT_REF == 0x0018_4700);
