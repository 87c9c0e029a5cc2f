//! `memory_op` (hypercall 12): reservations, physmap changes and their structs.

use crate::{DomId, GuestHandle, Pfn, XenUlong};

/// Allocate extents and hand their frame numbers back.
pub const XENMEM_INCREASE_RESERVATION: u32 = 0;
/// Release the listed extents; returns the number released.
pub const XENMEM_DECREASE_RESERVATION: u32 = 1;
/// Highest machine frame number in the system.
pub const XENMEM_MAXIMUM_RAM_PAGE: u32 = 2;
/// Pages currently allocated to a domain.
pub const XENMEM_CURRENT_RESERVATION: u32 = 3;
/// Page limit of a domain.
pub const XENMEM_MAXIMUM_RESERVATION: u32 = 4;
/// Populate the listed guest frames; returns the number populated.
pub const XENMEM_POPULATE_PHYSMAP: u32 = 6;
/// Map a special or foreign frame into the physmap ([`XenAddToPhysmap`]).
pub const XENMEM_ADD_TO_PHYSMAP: u32 = 7;
/// Exchange extents.
pub const XENMEM_EXCHANGE: u32 = 11;
/// Highest guest frame number of a domain.
pub const XENMEM_MAXIMUM_GPFN: u32 = 14;
/// Unmap a guest frame ([`XenRemoveFromPhysmap`]).
pub const XENMEM_REMOVE_FROM_PHYSMAP: u32 = 15;
/// Batched add_to_physmap ([`XenAddToPhysmapBatch`]).
pub const XENMEM_ADD_TO_PHYSMAP_BATCH: u32 = 23;
/// Map a resource (ioreq pages, grant frames) of another domain.
pub const XENMEM_ACQUIRE_RESOURCE: u32 = 28;
/// Memory sharing statistics (always 0 on ARM): pages freed by sharing.
pub const XENMEM_GET_SHARING_FREED_PAGES: u32 = 18;
/// Memory sharing statistics: pages shared.
pub const XENMEM_GET_SHARING_SHARED_PAGES: u32 = 19;
/// Set aside pages for a domain being built (control domain).
pub const XENMEM_CLAIM_PAGES: u32 = 24;

/// The low bits of `cmd` hold the sub-op.
pub const MEMOP_CMD_MASK: u64 = (1 << MEMOP_EXTENT_SHIFT) - 1;
/// A continuation's start extent sits in `cmd` above this shift.
pub const MEMOP_EXTENT_SHIFT: u32 = 6;

/// Map space: the shared_info page (`idx` must be 0).
pub const XENMAPSPACE_SHARED_INFO: u32 = 0;
/// Map space: grant-table frame `idx` (with [`XENMAPIDX_GRANT_TABLE_STATUS`] for v2 status frames).
pub const XENMAPSPACE_GRANT_TABLE: u32 = 1;
/// Map space: move the guest frame `idx`.
pub const XENMAPSPACE_GMFN: u32 = 2;
/// Map space: move `size` guest frames starting at `idx`.
pub const XENMAPSPACE_GMFN_RANGE: u32 = 3;
/// Map space: a frame of `foreign_domid` (batch only).
pub const XENMAPSPACE_GMFN_FOREIGN: u32 = 4;
/// Map space: device MMIO (hardware domain).
pub const XENMAPSPACE_DEV_MMIO: u32 = 5;
/// In a grant-table `idx`: select the status frame instead of the shared frame.
pub const XENMAPIDX_GRANT_TABLE_STATUS: u64 = 1 << 31;

/// Argument of increase/decrease_reservation and populate_physmap.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenMemoryReservation {
    /// Handle to an array of `nr_extents` frame numbers (in or out, per op).
    pub extent_start: GuestHandle,
    /// Number of extents.
    pub nr_extents: XenUlong,
    /// Each extent is 2^order pages.
    pub extent_order: u32,
    /// XENMEMF_* flags (address bits, NUMA node).
    pub mem_flags: u32,
    /// Target domain (usually [`crate::DOMID_SELF`]).
    pub domid: DomId,
}
crate::layout!(XenMemoryReservation, 32; extent_start @ 0, nr_extents @ 8, extent_order @ 16, mem_flags @ 20, domid @ 24);

/// Argument of `XENMEM_add_to_physmap`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenAddToPhysmap {
    /// Domain whose physmap changes.
    pub domid: DomId,
    /// Number of pages for [`XENMAPSPACE_GMFN_RANGE`].
    pub size: u16,
    /// XENMAPSPACE_* source space.
    pub space: u32,
    /// Index within the source space.
    pub idx: XenUlong,
    /// Guest frame where the source is mapped.
    pub gpfn: Pfn,
}
crate::layout!(XenAddToPhysmap, 24; domid @ 0, size @ 2, space @ 4, idx @ 8, gpfn @ 16);

/// Argument of `XENMEM_add_to_physmap_batch`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenAddToPhysmapBatch {
    /// Domain whose physmap changes.
    pub domid: DomId,
    /// XENMAPSPACE_* source space.
    pub space: u16,
    /// Number of entries in the three arrays.
    pub size: u16,
    /// Source domain for [`XENMAPSPACE_GMFN_FOREIGN`].
    pub foreign_domid: DomId,
    /// Handle to `size` source indices (`xen_ulong_t`).
    pub idxs: GuestHandle,
    /// Handle to `size` destination guest frames (`xen_pfn_t`).
    pub gpfns: GuestHandle,
    /// Handle to `size` per-entry results (`int`, 0 or -errno).
    pub errs: GuestHandle,
}
crate::layout!(XenAddToPhysmapBatch, 32; domid @ 0, space @ 2, size @ 4, foreign_domid @ 6, idxs @ 8, gpfns @ 16, errs @ 24);

/// Argument of `XENMEM_remove_from_physmap`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenRemoveFromPhysmap {
    /// Domain whose physmap changes.
    pub domid: DomId,
    /// Guest frame to unmap.
    pub gpfn: Pfn,
}
crate::layout!(XenRemoveFromPhysmap, 16; domid @ 0, gpfn @ 8);

/// Splits a `memory_op` command word into `(sub-op, continuation start extent)`.
pub const fn split_cmd(cmd: u64) -> (u32, u64) {
    ((cmd & MEMOP_CMD_MASK) as u32, cmd >> MEMOP_EXTENT_SHIFT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_split() {
        assert_eq!(split_cmd(7), (XENMEM_ADD_TO_PHYSMAP, 0));
        assert_eq!(split_cmd(1 | (5 << 6)), (XENMEM_DECREASE_RESERVATION, 5));
    }
}

/// Argument of XENMEM_current_reservation / maximum_reservation / maximum_gpfn.
pub type XenMemoryDomain = DomId;

/// Argument of `XENMEM_exchange`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenMemoryExchange {
    /// In: the extents given up.
    pub r#in: XenMemoryReservation,
    /// In/out: the extents wanted in exchange.
    pub out: XenMemoryReservation,
    /// In/out: progress (input extents done).
    pub nr_exchanged: XenUlong,
}
crate::layout!(XenMemoryExchange, 72; r#in @ 0, out @ 32, nr_exchanged @ 64);

/// XENMEM_get_vnumainfo: a domain's virtual NUMA layout.
pub const XENMEM_GET_VNUMAINFO: u32 = 26;

/// Argument of `XENMEM_get_vnumainfo`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenVnumaTopologyInfo {
    /// In: the domain asked about.
    pub domid: DomId,
    /// Must be 0.
    pub pad: u16,
    /// In/out: sizes of the three arrays.
    pub nr_vnodes: u32,
    /// In/out: entries of `vcpu_to_vnode`.
    pub nr_vcpus: u32,
    /// In/out: entries of `vmemrange`.
    pub nr_vmemranges: u32,
    /// Handles to the distance table, the vCPU-to-node map and the memory ranges.
    pub handles: [GuestHandle; 3],
}
crate::layout!(XenVnumaTopologyInfo, 40; domid @ 0, pad @ 2, nr_vnodes @ 4, nr_vcpus @ 8, nr_vmemranges @ 12, handles @ 16);

/// `XenMemAcquireResource::r#type`: a domain's grant table.
pub const XENMEM_RESOURCE_GRANT_TABLE: u16 = 1;
/// `XenMemAcquireResource::id` for the grant table: its shared (entry) frames.
pub const XENMEM_RESOURCE_GRANT_TABLE_ID_SHARED: u32 = 0;

/// Argument of `XENMEM_acquire_resource`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenMemAcquireResource {
    /// In: the domain whose resource is mapped.
    pub domid: DomId,
    /// In: XENMEM_resource_* type.
    pub r#type: u16,
    /// In: which resource of that type.
    pub id: u32,
    /// In: frames wanted; out (with a NULL list): the resource's size in frames.
    pub nr_frames: u32,
    /// Must be 0.
    pub pad: u32,
    /// In: first frame of the resource.
    pub frame: u64,
    /// In: handle to `nr_frames` guest frames to map the resource at (NULL: ask the size).
    pub frame_list: GuestHandle,
}
crate::layout!(XenMemAcquireResource, 32; domid @ 0, r#type @ 2, id @ 4, nr_frames @ 8, pad @ 12, frame @ 16, frame_list @ 24);
