//! Every domain the hypervisor runs, by id, and the machine services (physical memory, table
//! frames, TLB maintenance) that operations on them need.
//!
//! The table is read-mostly and lock-free: a domain is put in its slot once, at boot, and stays
//! there until the machine stops (no domain is ever destroyed), so a lookup is one load and
//! the `&Domain` it gives stays valid. The work happens under the domain's own locks.
//!
//! Lock order: a CPU holding a lock takes only locks further down this list; two locks of one
//! kind belong to two domains and are taken in domain-id order ([`lock_pair`]).
//!
//! 1. `Domain::evtchn` (`with_evtchn`): ports, shared_info, vcpu_info. Both domains' for
//!    EVTCHNOP_bind_interdomain and close; a send takes one at a time (it reads its port, lets
//!    go, then raises the other end only if that end still names the sender's port).
//! 2. `Domain::grants`: pins, maptrack, table frames. Granter's and mapper's for grant
//!    map/unmap; the entry's GTF_reading/writing change with atomic OR/AND under the granter's.
//! 3. `Domain::p2m`, read or write: never two domains' at once (a foreign map reads the
//!    foreign p2m, lets go, then writes its own). Writers: populate, decrease, add/remove
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
use crate::sync::{Mutex, MutexGuard, Once, SpinMutex};
use platform::PhysMem;

/// Domain ids a slot exists for (0..MAX_DOMAINS).
pub const MAX_DOMAINS: usize = 8;

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

/// The live domains, each in the slot of its id.
pub struct Domains {
    slots: [Once<Domain>; MAX_DOMAINS],
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
        Self { slots: [const { Once::new() }; MAX_DOMAINS] }
    }

    /// Add a domain; refused (returned back) if its id is taken or has no slot.
    pub fn insert(&self, d: Domain) -> Result<&Domain, Domain> {
        let Some(slot) = self.slots.get(usize::from(d.id)) else { return Err(d) };
        let mut d = Some(d);
        let stored = slot.call_once(|| d.take().expect("taken once"));
        match d {
            None => Ok(stored),
            Some(d) => Err(d),
        }
    }

    /// Domain `id` (one load: no lock).
    #[inline]
    pub fn get(&self, id: DomId) -> Option<&Domain> {
        self.slots.get(usize::from(id))?.get()
    }

    /// Exclusive access, before the domains are shared (building them, host tests).
    pub fn get_mut(&mut self, id: DomId) -> Option<&mut Domain> {
        self.slots.get_mut(usize::from(id))?.get_mut()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Domain> {
        self.slots.iter().filter_map(Once::get)
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
}
