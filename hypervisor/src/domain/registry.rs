//! Every domain the hypervisor runs, by id, and the machine services (physical memory, table
//! frames, TLB maintenance) that operations on them need.
//!
//! The table is read-mostly and lock-free: a lookup is one load, and the `&Domain` it gives
//! stays valid for as long as the machine runs, because a domain's record is never freed: boot
//! puts dom0 and the dom0less domUs in their slots, the toolstack's createdomain adds domains
//! at run time and its destroydomain takes one out of its slot ([`Domains::remove`]) after
//! giving back everything it held (RAM, table frames, grant and event-channel state; a frame
//! another domain still maps keeps the domain in its slot, dying, until it is unmapped:
//! `hypercall::teardown`). The
//! record itself (a few hundred bytes of locks and counters) stays allocated, so that a CPU
//! that looked the domain up just before it left finds it intact; the slot takes a new domain.
//! The work happens under the domain's own locks.
//!
//! Lock order: a CPU holding a lock takes only locks further down this list; two locks of one
//! kind belong to two domains and are taken in domain-id order ([`lock_pair`]).
//!
//! 0. `Domain::remains` (a dead domain's frames still mapped elsewhere): taken with no other
//!    lock held; under it, one other domain's grant table or p2m (read) at a time.
//! 1. `Domain::evtchn` (`with_evtchn`): ports, shared_info, vcpu_info. Both domains' for
//!    EVTCHNOP_bind_interdomain and close; a send takes one at a time (it reads its port, lets
//!    go, then raises the other end only if that end still names the sender's port).
//! 2. `Domain::grants`: pins, maptrack, table frames. Granter's and mapper's for grant
//!    map/unmap; the entry's GTF_reading/writing change with atomic OR/AND under the granter's.
//! 3. `Domain::p2m`, read or write: two domains' only for a foreign map (the foreign p2m read,
//!    the mapper's written, taken in domain-id order). Writers: populate, decrease, add/remove
//!    physmap, grant and foreign maps. Readers: lookups, the stage-2 fault re-check, a guest
//!    copy whose translation failed once.
//! 4. Leaves, which take nothing else: the frame pool, the SMMU queues, per-CPU retry state,
//!    the console, the heap.
//!
//! Apart: an emulated device's lock, then the vGIC's (MMIO emulation, event upcalls after a
//! hypercall), with no domain lock held.
//!
//! Without any lock: the domain lookup, xen_version, the checks every hypercall exit makes
//! (pending upcalls, shutdown: atomics), shutdown and vm_assist requests, fault-log counting.

use super::{DomId, Domain};
use crate::mm::{FrameAlloc, RegionAllocator, TlbOps};
use crate::sync::{Mutex, MutexGuard, SpinMutex};
use alloc::boxed::Box;
use core::sync::atomic::{AtomicPtr, Ordering};
use platform::PhysMem;

/// Domain ids a slot exists for (0..MAX_DOMAINS).
pub const MAX_DOMAINS: usize = 32;

/// The stage-2 VMID of domain `id` (dom0's is 1; 0 is left unused).
pub const fn vmid_of(id: DomId) -> u16 {
    1 + id
}

/// Every domain the machine runs (which one runs on each CPU is the architecture's to say).
pub static DOMAINS: Domains = Domains::new();
/// Table frames for stage-2 changes after boot (what the boot plan did not give a guest).
pub static FRAMES: SpinMutex<RegionAllocator> = SpinMutex::new(RegionAllocator::new());

/// The frame pool ([`FRAMES`]), locked for each allocation or release only (most hypercalls
/// take no frame; its lock is a leaf: never held while a domain's lock is taken).
#[derive(Default)]
pub struct PoolFrames;

impl FrameAlloc for PoolFrames {
    fn alloc_frame(&mut self) -> Option<u64> {
        FRAMES.lock().alloc_frame()
    }
    fn free_frame(&mut self, pa: u64) {
        FRAMES.lock().free_frame(pa)
    }
    fn alloc_frames(&mut self, count: usize) -> Option<u64> {
        FRAMES.lock().alloc_frames(count)
    }
    fn free_frames(&mut self, pa: u64, count: usize) {
        FRAMES.lock().free_frames(pa, count)
    }
}

/// One record per domain id, published by a pointer swap and never freed while the table is
/// shared: a lookup is one load, and the reference it gives stays valid for as long as the
/// machine runs (a record taken out stays allocated: a CPU may hold what it looked up just
/// before; see the module documentation).
pub struct Slots<T> {
    /// A published record: a leaked `Box<T>`.
    slots: [AtomicPtr<T>; MAX_DOMAINS],
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Drop for Slots<T> {
    fn drop(&mut self) {
        for slot in &mut self.slots {
            let p = core::mem::replace(slot.get_mut(), core::ptr::null_mut());
            if !p.is_null() {
                // SAFETY: `p` came from `Box::into_raw` in `insert` and is still published, so
                // nothing freed it; `&mut self` means no lookup can hold a reference to it.
                drop(unsafe { Box::from_raw(p) });
            }
        }
    }
}

impl<T> Slots<T> {
    pub const fn new() -> Self {
        Self { slots: [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_DOMAINS] }
    }

    /// Whether id `id` has a slot.
    pub fn has_slot(&self, id: DomId) -> bool {
        usize::from(id) < MAX_DOMAINS
    }

    /// Publish `v` as id `id`'s; refused (given back) if the slot is taken or does not exist.
    pub fn insert(&self, id: DomId, v: T) -> Result<&T, T> {
        let Some(slot) = self.slots.get(usize::from(id)) else { return Err(v) };
        let p = Box::into_raw(Box::new(v));
        match slot.compare_exchange(core::ptr::null_mut(), p, Ordering::AcqRel, Ordering::Acquire) {
            // SAFETY: `p` is the box just published; records are never freed while shared.
            Ok(_) => Ok(unsafe { &*p }),
            // SAFETY: `p` was not published: this is its only owner.
            Err(_) => Err(*unsafe { Box::from_raw(p) }),
        }
    }

    /// Id `id`'s record (one load: no lock).
    #[inline]
    pub fn get(&self, id: DomId) -> Option<&T> {
        let p = self.slots.get(usize::from(id))?.load(Ordering::Acquire);
        // SAFETY: a non-null slot holds a record from `insert`, which is never freed while
        // `self` is shared (a record taken out is left allocated).
        (!p.is_null()).then(|| unsafe { &*p })
    }

    /// Exclusive access, before the table is shared (building it, host tests).
    pub fn get_mut(&mut self, id: DomId) -> Option<&mut T> {
        let p = *self.slots.get_mut(usize::from(id))?.get_mut();
        // SAFETY: as in `get`, and `&mut self` excludes every other reference to the record.
        (!p.is_null()).then(|| unsafe { &mut *p })
    }

    /// Take id `id`'s record out: lookups stop finding it and the slot is free again. The
    /// record stays allocated.
    pub fn take(&self, id: DomId) -> Option<&T> {
        let p = self.slots.get(usize::from(id))?.swap(core::ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: as in `get`: the record is never freed while `self` is shared.
        (!p.is_null()).then(|| unsafe { &*p })
    }
}

/// The live domains, each in the slot of its id.
pub struct Domains {
    slots: Slots<Domain>,
    /// The id the last createdomain chose (Xen's rover: the next one looks above it first).
    rover: SpinMutex<DomId>,
}

impl core::fmt::Debug for Domains {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.iter().map(|d| d.id)).finish()
    }
}

impl Default for Domains {
    fn default() -> Self {
        Self::new()
    }
}

impl Domains {
    pub const fn new() -> Self {
        Self { slots: Slots::new(), rover: SpinMutex::new(0) }
    }

    /// Add a domain; refused (returned back) if its id is taken or has no slot.
    pub fn insert(&self, d: Domain) -> Result<&Domain, Domain> {
        self.slots.insert(d.id, d)
    }

    /// Domain `id` (one load: no lock).
    #[inline]
    pub fn get(&self, id: DomId) -> Option<&Domain> {
        self.slots.get(id)
    }

    /// Exclusive access, before the domains are shared (building them, host tests).
    pub fn get_mut(&mut self, id: DomId) -> Option<&mut Domain> {
        self.slots.get_mut(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Domain> {
        (0..MAX_DOMAINS).filter_map(|i| self.get(i as DomId))
    }

    /// Take domain `id` out of the table: lookups stop finding it and its id is free again.
    /// The record stays allocated (a CPU may still hold the `&Domain` it looked up).
    pub fn remove(&self, id: DomId) -> Option<&Domain> {
        self.slots.take(id)
    }

    /// A free id for a new domain: `wanted` if one is asked for (and free), else the first
    /// free one above the last id chosen this way, wrapping past the last slot to 1 and never
    /// coming back to the last one chosen (Xen's rover). `Err(true)`: `wanted` is taken;
    /// `Err(false)`: no id is free (or `wanted` has no slot).
    pub fn choose_id(&self, wanted: Option<DomId>) -> Result<DomId, bool> {
        if let Some(id) = wanted {
            return match self.slots.has_slot(id) {
                false => Err(false),
                true if self.get(id).is_some() => Err(true),
                true => Ok(id),
            };
        }
        let mut rover = self.rover.lock();
        let n = MAX_DOMAINS as DomId;
        for step in 1..n - 1 {
            let id = (*rover + step - 1) % (n - 1) + 1;
            if self.get(id).is_none() {
                *rover = id;
                return Ok(id);
            }
        }
        Err(false)
    }
}

/// Lock `a` (of domain `a_id`) and `b` (of domain `b_id`), two locks of one kind, in
/// domain-id order; `b`'s guard is `None` when both are the same domain's (one lock).
pub fn lock_pair<'a, T>(a: &'a Mutex<T>, a_id: DomId, b: &'a Mutex<T>, b_id: DomId) -> (MutexGuard<'a, T>, Option<MutexGuard<'a, T>>) {
    if a_id == b_id {
        (a.lock(), None)
    } else if a_id < b_id {
        let ga = a.lock();
        (ga, Some(b.lock()))
    } else {
        let gb = b.lock();
        (a.lock(), Some(gb))
    }
}

/// Machine services for changing a domain's stage 2 (add_to_physmap, grant mapping, ...).
pub struct Machine<'a> {
    pub mem: &'a dyn PhysMem,
    pub frames: &'a mut dyn FrameAlloc,
    pub tlb: &'a mut dyn TlbOps,
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::domain::RamBanks;

    #[test]
    fn ids_are_unique_and_bounded() {
        let ds = Domains::new();
        assert!(ds.insert(Domain::new(0, true, true, RamBanks::default())).is_ok());
        assert!(ds.insert(Domain::new(1, false, false, RamBanks::default())).is_ok());
        assert!(ds.insert(Domain::new(1, false, false, RamBanks::default())).is_err());
        assert!(ds.insert(Domain::new(MAX_DOMAINS as DomId, false, false, RamBanks::default())).is_err());
        assert_eq!(ds.get(1).map(|d| d.is_hardware), Some(false));
        assert!(ds.get(7).is_none() && ds.get(DomId::MAX).is_none());
        assert_eq!(ds.iter().map(|d| d.id).collect::<alloc::vec::Vec<_>>(), [0, 1]);
    }

    #[test]
    fn a_removed_domain_frees_its_id_and_stays_readable() {
        let ds = Domains::new();
        let d1 = ds.insert(Domain::new(1, false, false, RamBanks::default())).ok().unwrap();
        let gone = ds.remove(1).unwrap();
        assert!(core::ptr::eq(d1, gone) && gone.id == 1);
        assert!(ds.get(1).is_none() && ds.remove(1).is_none());
        assert!(ds.insert(Domain::new(1, false, false, RamBanks::default())).is_ok());
        assert_eq!(d1.id, 1, "the old record is still there for whoever looked it up");
    }

    #[test]
    fn ids_are_chosen_like_xens_rover() {
        let ds = Domains::new();
        let _ = ds.insert(Domain::new(0, true, true, RamBanks::default()));
        let _ = ds.insert(Domain::new(1, false, false, RamBanks::default()));
        assert_eq!(ds.choose_id(None), Ok(2));
        let _ = ds.insert(Domain::new(2, false, false, RamBanks::default()));
        ds.remove(2);
        // The rover moves on: id 2 is free again but the next choice is above it.
        assert_eq!(ds.choose_id(None), Ok(3));
        assert_eq!(ds.choose_id(Some(1)), Err(true));
        assert_eq!(ds.choose_id(Some(5)), Ok(5));
        assert_eq!(ds.choose_id(Some(MAX_DOMAINS as DomId)), Err(false));
        for id in 3..MAX_DOMAINS as DomId {
            let _ = ds.insert(Domain::new(id, false, false, RamBanks::default()));
        }
        // Only 2 is free; the rover wraps to it.
        assert_eq!(ds.choose_id(None), Ok(2));
        let _ = ds.insert(Domain::new(2, false, false, RamBanks::default()));
        assert_eq!(ds.choose_id(None), Err(false));
    }
}
