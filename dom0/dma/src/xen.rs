//! The real [`Hypervisor`]: hypercalls through `guest-abi`'s `hvc #0xEA1` wrappers, and the
//! frontend half of grants written straight into the shared v1 grant table. Built with the
//! `xen` feature on ARM targets only.
//!
//! Pointers handed to the hypervisor are the caller's virtual addresses (Xen walks the vCPU's
//! stage 1), so stack-allocated argument structs are fine.

use core::sync::atomic::{fence, AtomicU16, Ordering};

use guest_abi::grant_table::{
    GnttabCacheFlush, GnttabMapGrantRef, GnttabUnmapGrantRef, GrantEntryV1, GNTMAP_HOST_MAP, GNTMAP_READONLY,
    GNTST_OKAY, GNTTABOP_CACHE_FLUSH, GNTTABOP_MAP_GRANT_REF, GNTTABOP_UNMAP_GRANT_REF, GNTTAB_CACHE_CLEAN,
    GNTTAB_CACHE_INVAL, GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY, GTF_WRITING,
};
use guest_abi::guest::{get_features, grant_table_op, memory_op};
use guest_abi::memory::{XenMemoryReservation, XENMEM_DECREASE_RESERVATION, XENMEM_POPULATE_PHYSMAP};

use crate::hv::{gntst, CacheFlushOp, GrantMapping, HvError, Hypervisor, MemoryOp};
use crate::types::{DomId, GrantRef, PhysAddr, XEN_PAGE_SIZE};

/// Xen through hypercalls, with dom0's grant table mapped at `table`.
pub struct XenHypervisor {
    table: *mut GrantEntryV1,
    nr_entries: u32,
}

fn errno(raw: i64) -> Result<i64, HvError> {
    guest_abi::errno::check(raw).map_err(|e| HvError::Errno(-e.0))
}

impl XenHypervisor {
    /// # Safety
    /// `table` must point to this domain's grant-table frames (mapped with
    /// XENMEM_add_to_physmap, Normal WB Inner Shareable) holding `nr_entries` v1 entries,
    /// valid and used by nothing else for the lifetime of the returned value.
    pub unsafe fn new(table: *mut GrantEntryV1, nr_entries: u32) -> XenHypervisor {
        XenHypervisor { table, nr_entries }
    }

    fn entry(&self, gref: GrantRef) -> Result<*mut GrantEntryV1, HvError> {
        if gref >= self.nr_entries {
            return Err(HvError::Status(gntst::BAD_GNTREF));
        }
        // SAFETY: in bounds of the table `new`'s caller vouched for.
        Ok(unsafe { self.table.add(gref as usize) })
    }

    fn flags(&self, e: *mut GrantEntryV1) -> &AtomicU16 {
        // SAFETY: `flags` is the entry's first, 2-byte-aligned u16, shared with the hypervisor,
        // which updates it atomically; all our accesses to it go through this atomic.
        unsafe { AtomicU16::from_ptr(core::ptr::addr_of_mut!((*e).flags)) }
    }
}

impl Hypervisor for XenHypervisor {
    fn features(&self, idx: u32) -> Result<u32, HvError> {
        get_features(idx).map_err(|e| HvError::Errno(-e.0))
    }

    fn grant_map(&self, host_addr: PhysAddr, dom: DomId, gref: GrantRef, readonly: bool) -> Result<GrantMapping, HvError> {
        let mut op = GnttabMapGrantRef {
            host_addr,
            flags: GNTMAP_HOST_MAP | if readonly { GNTMAP_READONLY } else { 0 },
            r#ref: gref,
            dom,
            ..Default::default()
        };
        // SAFETY: one live, correctly laid out map op.
        errno(unsafe { grant_table_op(GNTTABOP_MAP_GRANT_REF, &mut op as *mut _ as usize, 1) })?;
        if op.status != GNTST_OKAY {
            return Err(HvError::Status(op.status));
        }
        Ok(GrantMapping { handle: op.handle, dev_bus_addr: op.dev_bus_addr })
    }

    fn grant_unmap(&self, host_addr: PhysAddr, dev_bus_addr: u64, handle: u32) -> Result<(), HvError> {
        let mut op = GnttabUnmapGrantRef { host_addr, dev_bus_addr, handle, status: 0 };
        // SAFETY: one live, correctly laid out unmap op.
        errno(unsafe { grant_table_op(GNTTABOP_UNMAP_GRANT_REF, &mut op as *mut _ as usize, 1) })?;
        if op.status != GNTST_OKAY {
            return Err(HvError::Status(op.status));
        }
        Ok(())
    }

    fn grant_access(&self, gref: GrantRef, dom: DomId, gfn: u64, readonly: bool) -> Result<(), HvError> {
        let e = self.entry(gref)?;
        if self.flags(e).load(Ordering::Acquire) != 0 {
            return Err(HvError::Status(gntst::GENERAL_ERROR));
        }
        let frame = u32::try_from(gfn).map_err(|_| HvError::Status(gntst::GENERAL_ERROR))?;
        // SAFETY: the entry is ours (flags 0: not granted); the hypervisor reads domid and frame
        // only after seeing the type in flags, which is published after them (Release below).
        unsafe {
            core::ptr::addr_of_mut!((*e).domid).write_volatile(dom);
            core::ptr::addr_of_mut!((*e).frame).write_volatile(frame);
        }
        fence(Ordering::Release);
        self.flags(e).store(GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 }, Ordering::Release);
        Ok(())
    }

    fn end_access(&self, gref: GrantRef) -> Result<(), HvError> {
        let flags = self.flags(self.entry(gref)?);
        let mut cur = flags.load(Ordering::Acquire);
        loop {
            if cur & (GTF_READING | GTF_WRITING) != 0 {
                return Err(HvError::Status(gntst::GENERAL_ERROR));
            }
            match flags.compare_exchange(cur, 0, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(now) => cur = now,
            }
        }
    }

    fn cache_flush(&self, addr: u64, len: u16, op: CacheFlushOp) -> Result<(), HvError> {
        let mut f = GnttabCacheFlush {
            a: addr & !(XEN_PAGE_SIZE - 1),
            offset: (addr & (XEN_PAGE_SIZE - 1)) as u16,
            length: len,
            op: match op {
                CacheFlushOp::Clean => GNTTAB_CACHE_CLEAN,
                CacheFlushOp::Invalidate => GNTTAB_CACHE_INVAL,
                CacheFlushOp::CleanInvalidate => GNTTAB_CACHE_CLEAN | GNTTAB_CACHE_INVAL,
            },
        };
        // SAFETY: one live, correctly laid out cache_flush op.
        errno(unsafe { grant_table_op(GNTTABOP_CACHE_FLUSH, &mut f as *mut _ as usize, 1) }).map(|_| ())
    }

    fn memory_op(&self, op: MemoryOp) -> Result<u64, HvError> {
        let (cmd, mut gpfn, order) = match op {
            MemoryOp::PopulatePhysmap { gpfn, order } => (XENMEM_POPULATE_PHYSMAP, gpfn, order),
            MemoryOp::DecreaseReservation { gpfn, order } => (XENMEM_DECREASE_RESERVATION, gpfn, order),
        };
        let r = XenMemoryReservation {
            extent_start: &mut gpfn as *mut u64 as u64,
            nr_extents: 1,
            extent_order: order,
            mem_flags: 0,
            domid: guest_abi::DOMID_SELF,
        };
        // SAFETY: `r` and the one-extent array it points to are live for the call.
        errno(unsafe { memory_op(cmd, &r as *const _ as usize) }).map(|n| n as u64)
    }
}
