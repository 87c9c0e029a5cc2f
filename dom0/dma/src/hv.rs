//! The hypercalls the DMA layer needs, behind a trait: grant map/unmap (backend side, returning
//! the frame's bus address), granting access to a frame (frontend side, grant DMA),
//! GNTTABOP_cache_flush, memory_op and the feature query. The real implementation sits over
//! `guest-abi`; [`crate::sim::SimHypervisor`] implements it for host tests.

use crate::types::{DomId, GrantRef, PhysAddr};

/// XENFEAT bits this layer reads (submap 0).
pub mod xenfeat {
    /// XENFEAT_auto_translated_physmap.
    pub const AUTO_TRANSLATED_PHYSMAP: u32 = 2;
    /// XENFEAT_dom0.
    pub const DOM0: u32 = 11;
    /// XENFEAT_not_direct_mapped.
    pub const NOT_DIRECT_MAPPED: u32 = 16;
    /// XENFEAT_direct_mapped.
    pub const DIRECT_MAPPED: u32 = 17;
}

/// Feature submap 0 as returned by XENVER_get_features.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenFeatures(pub u32);

impl XenFeatures {
    /// Not running on Xen (no features at all).
    pub const NONE: XenFeatures = XenFeatures(0);
    /// What Xen gives a direct-mapped dom0 (bits 0, 2, 11, 13, 14, 17, 18).
    pub const XEN_DOM0_DIRECT: XenFeatures = XenFeatures(0x66805);

    /// Is feature `bit` set?
    pub fn has(self, bit: u32) -> bool {
        bit < 32 && self.0 & (1 << bit) != 0
    }
    /// The bitmap with `bit` set or cleared.
    pub fn with(self, bit: u32, on: bool) -> XenFeatures {
        if on {
            XenFeatures(self.0 | (1 << bit))
        } else {
            XenFeatures(self.0 & !(1 << bit))
        }
    }
    /// Is this domain dom0?
    pub fn dom0(self) -> bool {
        self.has(xenfeat::DOM0)
    }
    /// Is guest-physical == machine for this domain's RAM? Xen's rule: XENFEAT_direct_mapped,
    /// or dom0 without XENFEAT_not_direct_mapped.
    pub fn direct_mapped(self) -> bool {
        self.has(xenfeat::DIRECT_MAPPED) || (self.dom0() && !self.has(xenfeat::NOT_DIRECT_MAPPED))
    }
}

/// A grant mapping made by GNTTABOP_map_grant_ref.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantMapping {
    /// The handle for unmap.
    pub handle: u32,
    /// The frame's address as a device must use it (the machine address on ARM).
    pub dev_bus_addr: u64,
}

/// GNTTABOP_cache_flush operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheFlushOp {
    /// GNTTAB_CACHE_CLEAN (1).
    Clean = 1,
    /// GNTTAB_CACHE_INVAL (2).
    Invalidate = 2,
    /// Both.
    CleanInvalidate = 3,
}

/// The memory_op subcommands the layer issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryOp {
    /// XENMEM_populate_physmap for one extent of `1 << order` frames at `gpfn`.
    PopulatePhysmap { gpfn: u64, order: u32 },
    /// XENMEM_decrease_reservation for one extent of `1 << order` frames at `gpfn`.
    DecreaseReservation { gpfn: u64, order: u32 },
}

/// Why a hypercall failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HvError {
    /// The hypercall returned this negative errno.
    Errno(i32),
    /// The grant op's per-op status (GNTST_*, negative).
    Status(i16),
}

/// GNTST_* values this layer looks at.
pub mod gntst {
    pub const GENERAL_ERROR: i16 = -1;
    pub const BAD_DOMAIN: i16 = -2;
    pub const BAD_GNTREF: i16 = -3;
    pub const BAD_HANDLE: i16 = -4;
    pub const PERMISSION_DENIED: i16 = -8;
}

/// Xen errno values this layer looks at (Linux numbering, negated in returns).
pub mod errno {
    pub const EINVAL: i32 = 22;
    pub const ENOSYS: i32 = 38;
    pub const EBUSY: i32 = 16;
}

/// The hypercalls the DMA layer makes.
pub trait Hypervisor {
    /// XENVER_get_features submap `idx`.
    fn features(&self, idx: u32) -> Result<u32, HvError>;

    /// GNTTABOP_map_grant_ref with GNTMAP_host_map (| readonly): map `dom`'s grant `gref` at
    /// dom0 guest-physical `host_addr`.
    fn grant_map(&self, host_addr: PhysAddr, dom: DomId, gref: GrantRef, readonly: bool)
        -> Result<GrantMapping, HvError>;

    /// GNTTABOP_unmap_grant_ref.
    fn grant_unmap(&self, host_addr: PhysAddr, dev_bus_addr: u64, handle: u32) -> Result<(), HvError>;

    /// Frontend side: write grant entry `gref` giving `dom` access to dom0 frame `gfn`
    /// (read-only when `readonly`). The real implementation writes the shared grant table.
    fn grant_access(&self, gref: GrantRef, dom: DomId, gfn: u64, readonly: bool) -> Result<(), HvError>;

    /// Frontend side: revoke grant `gref`. Fails (`Status(GENERAL_ERROR)`) while the
    /// other domain still has it mapped.
    fn end_access(&self, gref: GrantRef) -> Result<(), HvError>;

    /// GNTTABOP_cache_flush of `[addr, addr+len)` within one 4 KiB frame, by machine address.
    fn cache_flush(&self, addr: u64, len: u16, op: CacheFlushOp) -> Result<(), HvError>;

    /// XENMEM_* memory_op; returns the hypercall's non-negative result.
    fn memory_op(&self, op: MemoryOp) -> Result<u64, HvError>;

    /// Is GNTTABOP_cache_flush available (Linux probes it: only -ENOSYS counts as absent)?
    fn has_cache_flush(&self) -> bool {
        !matches!(self.cache_flush(0, 0, CacheFlushOp::Clean), Err(HvError::Errno(e)) if e == -errno::ENOSYS)
    }
}
