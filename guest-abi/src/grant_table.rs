//! `grant_table_op` (hypercall 20): grant entries, flags, status codes and op structs (v1 grants).

use crate::{DomId, GuestHandle};

/// A grant reference: an index into the granting domain's table.
pub type GrantRef = u32;
/// A handle naming one grant mapping, returned by map and consumed by unmap.
pub type GrantHandle = u32;

/// Op: map foreign grants ([`GnttabMapGrantRef`] array).
pub const GNTTABOP_MAP_GRANT_REF: u32 = 0;
/// Op: unmap ([`GnttabUnmapGrantRef`] array).
pub const GNTTABOP_UNMAP_GRANT_REF: u32 = 1;
/// Op: list the frames of a table ([`GnttabSetupTable`]).
pub const GNTTABOP_SETUP_TABLE: u32 = 2;
/// Op: dump a table to the hypervisor console.
pub const GNTTABOP_DUMP_TABLE: u32 = 3;
/// Op: page transfer (not on ARM).
pub const GNTTABOP_TRANSFER: u32 = 4;
/// Op: copy between grants and frames ([`GnttabCopy`] array).
pub const GNTTABOP_COPY: u32 = 5;
/// Op: current and maximum table size ([`GnttabQuerySize`]).
pub const GNTTABOP_QUERY_SIZE: u32 = 6;
/// Op: unmap and replace (x86 PV).
pub const GNTTABOP_UNMAP_AND_REPLACE: u32 = 7;
/// Op: choose the table format ([`GnttabSetVersion`]).
pub const GNTTABOP_SET_VERSION: u32 = 8;
/// Op: v2 status frames.
pub const GNTTABOP_GET_STATUS_FRAMES: u32 = 9;
/// Op: read the table format.
pub const GNTTABOP_GET_VERSION: u32 = 10;
/// Op: swap two grant entries.
pub const GNTTABOP_SWAP_GRANT_REF: u32 = 11;
/// Op: cache maintenance on granted or local frames ([`GnttabCacheFlush`] array).
pub const GNTTABOP_CACHE_FLUSH: u32 = 12;
/// A continuation's opaque state sits in `cmd` above this shift.
pub const GNTTABOP_CONTINUATION_ARG_SHIFT: u32 = 12;
/// Mask of the op number in `cmd`.
pub const GNTTABOP_CMD_MASK: u64 = (1 << GNTTABOP_CONTINUATION_ARG_SHIFT) - 1;

/// Status: success.
pub const GNTST_OKAY: i16 = 0;
/// Status: unspecified error.
pub const GNTST_GENERAL_ERROR: i16 = -1;
/// Status: unknown or unusable domain.
pub const GNTST_BAD_DOMAIN: i16 = -2;
/// Status: reference out of range or not granted.
pub const GNTST_BAD_GNTREF: i16 = -3;
/// Status: unknown mapping handle.
pub const GNTST_BAD_HANDLE: i16 = -4;
/// Status: bad host virtual address.
pub const GNTST_BAD_VIRT_ADDR: i16 = -5;
/// Status: bad device address.
pub const GNTST_BAD_DEV_ADDR: i16 = -6;
/// Status: no space for a device mapping.
pub const GNTST_NO_DEVICE_SPACE: i16 = -7;
/// Status: the grant does not allow this access.
pub const GNTST_PERMISSION_DENIED: i16 = -8;
/// Status: bad page.
pub const GNTST_BAD_PAGE: i16 = -9;
/// Status: copy arguments out of range (crossing a page).
pub const GNTST_BAD_COPY_ARG: i16 = -10;
/// Status: address too large for the device.
pub const GNTST_ADDRESS_TOO_BIG: i16 = -11;
/// Status: retry later.
pub const GNTST_EAGAIN: i16 = -12;
/// Status: out of space (maptrack).
pub const GNTST_NO_SPACE: i16 = -13;

/// Entry type mask in `GrantEntryV1::flags`.
pub const GTF_TYPE_MASK: u16 = 3;
/// Entry type: unused.
pub const GTF_INVALID: u16 = 0;
/// Entry type: `domid` may map or access `frame`.
pub const GTF_PERMIT_ACCESS: u16 = 1;
/// Entry type: `domid` may transfer a page into this entry.
pub const GTF_ACCEPT_TRANSFER: u16 = 2;
/// Entry type: transitive grant (v2 only).
pub const GTF_TRANSITIVE: u16 = 3;
/// Access is read-only.
pub const GTF_READONLY: u16 = 1 << 2;
/// Set by the hypervisor while the grant is mapped or copied for reading.
pub const GTF_READING: u16 = 1 << 3;
/// Set by the hypervisor while the grant is mapped or copied for writing.
pub const GTF_WRITING: u16 = 1 << 4;
/// Cacheability hint: write-through.
pub const GTF_PWT: u16 = 1 << 5;
/// Cacheability hint: cache disabled.
pub const GTF_PCD: u16 = 1 << 6;
/// Cacheability hint: PAT.
pub const GTF_PAT: u16 = 1 << 7;
/// Sub-page grant (v2 only).
pub const GTF_SUB_PAGE: u16 = 1 << 8;
/// Transfer entry: transfer committed.
pub const GTF_TRANSFER_COMMITTED: u16 = 1 << 2;
/// Transfer entry: transfer complete.
pub const GTF_TRANSFER_COMPLETED: u16 = 1 << 3;

/// Map flag: map for device access (not on ARM: GNTST_general_error).
pub const GNTMAP_DEVICE_MAP: u32 = 1 << 0;
/// Map flag: map into the host's physmap at `host_addr`.
pub const GNTMAP_HOST_MAP: u32 = 1 << 1;
/// Map flag: read-only mapping.
pub const GNTMAP_READONLY: u32 = 1 << 2;
/// Map flag: application (user) mapping (x86 PV).
pub const GNTMAP_APPLICATION_MAP: u32 = 1 << 3;
/// Map flag: `host_addr` names a PTE (x86 PV).
pub const GNTMAP_CONTAINS_PTE: u32 = 1 << 4;

/// Copy flag: `source.u` is a grant reference (else a local frame).
pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
/// Copy flag: `dest.u` is a grant reference (else a local frame).
pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;

/// Cache flush op: clean.
pub const GNTTAB_CACHE_CLEAN: u32 = 1 << 0;
/// Cache flush op: invalidate.
pub const GNTTAB_CACHE_INVAL: u32 = 1 << 1;
/// Cache flush op: `a` is a grant reference (else a bus address).
pub const GNTTAB_CACHE_SOURCE_GREF: u32 = 1 << 31;

/// A version-1 grant entry, as laid out in the shared grant-table frames.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrantEntryV1 {
    /// GTF_* type and flags; the granter writes type/access, the hypervisor the busy bits.
    pub flags: u16,
    /// The domain allowed to use this grant.
    pub domid: DomId,
    /// The granted guest frame.
    pub frame: u32,
}
crate::layout!(GrantEntryV1, 8; flags @ 0, domid @ 2, frame @ 4);

/// Number of v1 entries in one 4 KiB grant frame.
pub const GRANT_ENTRIES_V1_PER_FRAME: usize = crate::XEN_PAGE_SIZE / core::mem::size_of::<GrantEntryV1>();

/// Argument of `GNTTABOP_map_grant_ref` (one entry of the array).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabMapGrantRef {
    /// In: guest physical address to map at (GNTMAP_host_map on ARM).
    pub host_addr: u64,
    /// In: GNTMAP_* flags.
    pub flags: u32,
    /// In: the grant reference.
    pub r#ref: GrantRef,
    /// In: the granting domain.
    pub dom: DomId,
    /// Out: GNTST_* status.
    pub status: i16,
    /// Out: handle for unmap.
    pub handle: GrantHandle,
    /// Out: bus (machine) address of the frame.
    pub dev_bus_addr: u64,
}
crate::layout!(GnttabMapGrantRef, 32; host_addr @ 0, flags @ 8, r#ref @ 12, dom @ 16, status @ 18, handle @ 20, dev_bus_addr @ 24);

/// Argument of `GNTTABOP_unmap_grant_ref` (one entry of the array).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabUnmapGrantRef {
    /// In: the address given to map.
    pub host_addr: u64,
    /// In: the bus address returned by map (or 0).
    pub dev_bus_addr: u64,
    /// In: the handle returned by map.
    pub handle: GrantHandle,
    /// Out: GNTST_* status.
    pub status: i16,
}
crate::layout!(GnttabUnmapGrantRef, 24; host_addr @ 0, dev_bus_addr @ 8, handle @ 16, status @ 20);

/// Argument of `GNTTABOP_setup_table`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabSetupTable {
    /// In: domain whose table is described.
    pub dom: DomId,
    /// In: number of frames wanted.
    pub nr_frames: u32,
    /// Out: GNTST_* status.
    pub status: i16,
    /// In: handle to an array of `nr_frames` `xen_pfn_t`, filled with the table's frames.
    pub frame_list: GuestHandle,
}
crate::layout!(GnttabSetupTable, 24; dom @ 0, nr_frames @ 4, status @ 8, frame_list @ 16);

/// Argument of `GNTTABOP_query_size`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabQuerySize {
    /// In: domain to query.
    pub dom: DomId,
    /// Out: frames in use.
    pub nr_frames: u32,
    /// Out: maximum frames.
    pub max_nr_frames: u32,
    /// Out: GNTST_* status.
    pub status: i16,
}
crate::layout!(GnttabQuerySize, 16; dom @ 0, nr_frames @ 4, max_nr_frames @ 8, status @ 12);

/// Argument of `GNTTABOP_set_version`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabSetVersion {
    /// In: wanted version (1 on ARM); out: version in force.
    pub version: u32,
}
crate::layout!(GnttabSetVersion, 4; version @ 0);

/// One side of a [`GnttabCopy`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabCopyPtr {
    /// A grant reference (with GNTCOPY_*_gref) or a local guest frame number.
    pub u: u64,
    /// Domain owning the grant or frame.
    pub domid: DomId,
    /// Byte offset within the page.
    pub offset: u16,
}
crate::layout!(GnttabCopyPtr, 16; u @ 0, domid @ 8, offset @ 10);

/// Argument of `GNTTABOP_copy` (one entry of the array).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabCopy {
    /// In: where to copy from.
    pub source: GnttabCopyPtr,
    /// In: where to copy to.
    pub dest: GnttabCopyPtr,
    /// In: bytes to copy (must stay within both pages).
    pub len: u16,
    /// In: GNTCOPY_* flags.
    pub flags: u16,
    /// Out: GNTST_* status.
    pub status: i16,
}
crate::layout!(GnttabCopy, 40; source @ 0, dest @ 16, len @ 32, flags @ 34, status @ 36);

/// Argument of `GNTTABOP_cache_flush` (one entry of the array).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabCacheFlush {
    /// A bus address, or a grant reference with [`GNTTAB_CACHE_SOURCE_GREF`].
    pub a: u64,
    /// Byte offset within the page.
    pub offset: u16,
    /// Length in bytes (offset + length within one page).
    pub length: u16,
    /// GNTTAB_CACHE_* operation bits.
    pub op: u32,
}
crate::layout!(GnttabCacheFlush, 16; a @ 0, offset @ 8, length @ 10, op @ 12);

/// Splits a `grant_table_op` command word into `(op, continuation state)`.
pub const fn split_cmd(cmd: u64) -> (u32, u64) {
    ((cmd & GNTTABOP_CMD_MASK) as u32, cmd >> GNTTABOP_CONTINUATION_ARG_SHIFT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_per_frame_and_split() {
        assert_eq!(GRANT_ENTRIES_V1_PER_FRAME, 512);
        assert_eq!(split_cmd(GNTTABOP_CACHE_FLUSH as u64 | (3 << 12)), (GNTTABOP_CACHE_FLUSH, 3));
    }
}

/// Argument of `GNTTABOP_get_version`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabGetVersion {
    /// In: the domain asked about.
    pub dom: DomId,
    /// Padding.
    pub pad: u16,
    /// Out: its grant-table version.
    pub version: u32,
}
crate::layout!(GnttabGetVersion, 8; dom @ 0, pad @ 2, version @ 4);

/// Argument of `GNTTABOP_get_status_frames` (v2 status frames).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabGetStatusFrames {
    /// In: number of frames wanted.
    pub nr_frames: u32,
    /// In: the domain asked about.
    pub dom: DomId,
    /// Out: GNTST_* status.
    pub status: i16,
    /// In: handle to an array of `nr_frames` u64, filled with the status frames' guest frames.
    pub frame_list: GuestHandle,
}
crate::layout!(GnttabGetStatusFrames, 16; nr_frames @ 0, dom @ 4, status @ 6, frame_list @ 8);

/// Argument of `GNTTABOP_swap_grant_ref` (one entry of the array).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabSwapGrantRef {
    /// In: one entry of the caller's table.
    pub ref_a: GrantRef,
    /// In: the entry it is exchanged with.
    pub ref_b: GrantRef,
    /// Out: GNTST_* status.
    pub status: i16,
}
crate::layout!(GnttabSwapGrantRef, 12; ref_a @ 0, ref_b @ 4, status @ 8);

/// Argument of `GNTTABOP_unmap_and_replace` (one entry of the array).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabUnmapAndReplace {
    /// In: the address given to map.
    pub host_addr: u64,
    /// In: an address whose mapping should take the unmapped one's place (0: none).
    pub new_addr: u64,
    /// In: the handle returned by map.
    pub handle: GrantHandle,
    /// Out: GNTST_* status.
    pub status: i16,
}
crate::layout!(GnttabUnmapAndReplace, 24; host_addr @ 0, new_addr @ 8, handle @ 16, status @ 20);

/// Argument of `GNTTABOP_transfer` (one entry of the array).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabTransfer {
    /// In: the caller's frame to give away.
    pub mfn: u64,
    /// In: the receiving domain.
    pub domid: DomId,
    /// In: the receiver's grant reference.
    pub r#ref: GrantRef,
    /// Out: GNTST_* status.
    pub status: i16,
}
crate::layout!(GnttabTransfer, 24; mfn @ 0, domid @ 8, r#ref @ 12, status @ 16);
