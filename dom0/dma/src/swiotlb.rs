//! swiotlb-xen: DMA for a direct-mapped dom0 whose device has no IOMMU between it and machine
//! memory. A buffer is mapped directly (by its machine address) when the device's mask reaches
//! it, it does not straddle frames that are not machine-contiguous, and — for a foreign
//! (grant-mapped) frame on a non-coherent device — the hypervisor can do the cache maintenance;
//! otherwise it is bounced through a pool. Foreign frames are found through a pfn -> machine
//! frame map built from GNTTABOP_map_grant_ref's dev_bus_addr.

use alloc::rc::Rc;
use core::cell::RefCell;

use crate::arch::ArchDmaOps;
use crate::direct::map_resource_1to1;
use crate::hv::{CacheFlushOp, GrantMapping, HvError, Hypervisor};
use crate::iova::{IovaAllocator, IovaStats};
use crate::ops::{AddrMap, DmaKind, DmaOps, Mapping, RamMap, Tracker};
use crate::types::{
    align_up, dma_capable, CoherentBuf, Direction, DmaAddr, DmaAttrs, DmaError, DomId, GrantRef, PhysAddr,
    XEN_PAGE_SHIFT, XEN_PAGE_SIZE,
};

/// Bounce slot size (2 KiB), as swiotlb.
pub const SLOT_SHIFT: u32 = 11;
/// Largest bounce: 128 slots.
pub const MAX_BOUNCE: usize = 128 << SLOT_SHIFT;

/// dom0's foreign frames: pfn -> machine frame, from grant maps' dev_bus_addr.
#[derive(Default)]
pub struct ForeignP2m {
    map: AddrMap<u64>,
    /// mfn -> pfn, for turning an IO page table's machine output back into dom0's address.
    rev: AddrMap<u64>,
}

/// A foreign p2m shared by the backends that grant-map and the devices that DMA.
pub type SharedP2m = Rc<RefCell<ForeignP2m>>;

impl ForeignP2m {
    /// An empty map, shared.
    pub fn shared() -> SharedP2m {
        Rc::new(RefCell::new(ForeignP2m::default()))
    }
    /// Record that dom0 frame `pfn` is machine frame `mfn`.
    pub fn insert(&mut self, pfn: u64, mfn: u64) {
        if let Some(old) = self.map.insert(pfn, mfn) {
            self.rev.remove(&old);
        }
        self.rev.insert(mfn, pfn);
    }
    /// Forget `pfn`.
    pub fn remove(&mut self, pfn: u64) -> Option<u64> {
        let mfn = self.map.remove(&pfn)?;
        self.rev.remove(&mfn);
        Some(mfn)
    }
    /// Bus (machine) address -> dom0 physical: the inverse of [`Self::phys_to_bus`].
    #[inline]
    pub fn bus_to_phys(&self, bus: u64) -> PhysAddr {
        if self.rev.is_empty() {
            return bus;
        }
        match self.rev.get(&(bus >> XEN_PAGE_SHIFT)) {
            Some(&pfn) => (pfn << XEN_PAGE_SHIFT) | (bus & (XEN_PAGE_SIZE - 1)),
            None => bus,
        }
    }
    /// Is `pfn` a foreign frame?
    #[inline]
    pub fn is_foreign(&self, pfn: u64) -> bool {
        !self.map.is_empty() && self.map.contains_key(&pfn)
    }
    /// dom0 physical -> bus (machine) address: identity for local frames (direct-mapped dom0).
    #[inline]
    pub fn phys_to_bus(&self, phys: PhysAddr) -> u64 {
        if self.map.is_empty() {
            return phys;
        }
        match self.map.get(&(phys >> XEN_PAGE_SHIFT)) {
            Some(&mfn) => (mfn << XEN_PAGE_SHIFT) | (phys & (XEN_PAGE_SIZE - 1)),
            None => phys,
        }
    }
    /// Number of foreign frames.
    pub fn len(&self) -> usize {
        self.map.len()
    }
    /// No foreign frames?
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Backend side: grant-map `dom`'s `gref` at dom0 frame `host_addr` and record its machine
    /// frame, so later DMA to that frame uses the right bus address.
    pub fn map_grant<H: Hypervisor>(&mut self, hv: &H, host_addr: PhysAddr, dom: DomId, gref: GrantRef, readonly: bool)
        -> Result<GrantMapping, DmaError> {
        let m = hv.grant_map(host_addr, dom, gref, readonly).map_err(|e| hv_err("map_grant_ref", e))?;
        self.insert(host_addr >> XEN_PAGE_SHIFT, m.dev_bus_addr >> XEN_PAGE_SHIFT);
        Ok(m)
    }

    /// Backend side: undo `map_grant`.
    pub fn unmap_grant<H: Hypervisor>(&mut self, hv: &H, host_addr: PhysAddr, m: GrantMapping) -> Result<(), DmaError> {
        hv.grant_unmap(host_addr, m.dev_bus_addr, m.handle).map_err(|e| hv_err("unmap_grant_ref", e))?;
        self.remove(host_addr >> XEN_PAGE_SHIFT);
        Ok(())
    }
}

pub(crate) fn hv_err(op: &'static str, e: HvError) -> DmaError {
    match e {
        HvError::Errno(errno) => DmaError::Hypercall { op, errno },
        HvError::Status(status) => DmaError::Grant { op, status },
    }
}

/// A bounce pool: a range of dom0's own RAM carved into 2 KiB slots. One pool can serve many
/// devices ([`SharedPool`]), as swiotlb's single pool does.
pub struct BouncePool {
    base: PhysAddr,
    size: usize,
    slots: IovaAllocator,
}

/// A bounce pool shared by several devices' swiotlb-xen ops.
pub type SharedPool = Rc<RefCell<BouncePool>>;

impl BouncePool {
    /// A pool over `[base, base + size)` of local RAM (already allocated by the caller).
    pub fn new(base: PhysAddr, size: usize) -> BouncePool {
        BouncePool { base, size, slots: IovaAllocator::new(base, size as u64, SLOT_SHIFT) }
    }
    /// A pool of `size` bytes allocated through `arch`, shared.
    pub fn allocate<A: ArchDmaOps>(arch: &A, size: usize) -> Result<SharedPool, DmaError> {
        let size = align_up(size as u64, XEN_PAGE_SIZE) as usize;
        let base = arch.alloc_pages(size, XEN_PAGE_SIZE as usize).ok_or(DmaError::OutOfMemory { size })?;
        Ok(Rc::new(RefCell::new(BouncePool::new(base, size))))
    }
    /// The pool's range.
    pub fn range(&self) -> (PhysAddr, usize) {
        (self.base, self.size)
    }
    /// Slot accounting (leak checks).
    pub fn stats(&self) -> IovaStats {
        self.slots.stats()
    }
}

/// Why a mapping bounces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BounceReason {
    /// The device (or a test) asked for every mapping to bounce.
    Forced,
    /// The bus address is beyond the device's DMA mask.
    BeyondMask,
    /// The range crosses a Xen page boundary onto a frame that is not machine-contiguous.
    StraddlesNonContiguous,
    /// A foreign frame on a non-coherent device, and the hypervisor has no cache_flush.
    ForeignNeedsCacheFlush,
}

/// swiotlb-xen's choice for one mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwiotlbDecision {
    /// Map directly at this bus address; `foreign` when any frame is grant-mapped.
    Direct { bus: u64, foreign: bool },
    /// Bounce through the pool.
    Bounce(BounceReason),
}

/// The pure swiotlb-xen decision for `[phys, phys+size)`.
pub fn decide(
    p2m: &ForeignP2m,
    phys: PhysAddr,
    size: usize,
    mask: u64,
    coherent: bool,
    has_cache_flush: bool,
    force: bool,
) -> SwiotlbDecision {
    if force {
        return SwiotlbDecision::Bounce(BounceReason::Forced);
    }
    let bus = p2m.phys_to_bus(phys);
    if !dma_capable(bus, size, mask) {
        return SwiotlbDecision::Bounce(BounceReason::BeyondMask);
    }
    let mut foreign = p2m.is_foreign(phys >> XEN_PAGE_SHIFT);
    let first = phys >> XEN_PAGE_SHIFT;
    let last = (phys + size as u64 - 1) >> XEN_PAGE_SHIFT;
    let bus_first = bus >> XEN_PAGE_SHIFT;
    for pfn in first + 1..=last {
        if p2m.phys_to_bus(pfn << XEN_PAGE_SHIFT) >> XEN_PAGE_SHIFT != bus_first + (pfn - first) {
            return SwiotlbDecision::Bounce(BounceReason::StraddlesNonContiguous);
        }
        foreign |= p2m.is_foreign(pfn);
    }
    if foreign && !coherent && !has_cache_flush {
        return SwiotlbDecision::Bounce(BounceReason::ForeignNeedsCacheFlush);
    }
    SwiotlbDecision::Direct { bus, foreign }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
struct SwMap {
    orig: PhysAddr,
    bounce: bool,
    foreign: bool,
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwiotlbStats {
    pub direct: u64,
    pub bounced: u64,
    pub hv_cache_flushes: u64,
}

/// swiotlb-xen ops over the device's arch ops `A` and the hypervisor `H`.
pub struct XenSwiotlb<A: ArchDmaOps, H: Hypervisor> {
    arch: A,
    hv: H,
    p2m: SharedP2m,
    mask: u64,
    ram: RamMap,
    coherent_dev: bool,
    has_cache_flush: bool,
    force_bounce: bool,
    pool: SharedPool,
    own_pool: bool,
    maps: Tracker<SwMap>,
    coherent: Tracker<()>,
    resources: Tracker<()>,
    stats: SwiotlbStats,
}

impl<A: ArchDmaOps, H: Hypervisor> XenSwiotlb<A, H> {
    /// swiotlb-xen for a device with mask `mask`, with its own bounce pool of `pool_size` bytes
    /// allocated from the arch ops (so in dom0's own, local RAM).
    pub fn new(arch: A, hv: H, p2m: SharedP2m, mask: u64, ram: RamMap, pool_size: usize) -> Result<Self, DmaError> {
        let pool = BouncePool::allocate(&arch, pool_size)?;
        let mut sw = Self::with_pool(arch, hv, p2m, mask, ram, pool);
        sw.own_pool = true;
        Ok(sw)
    }

    /// swiotlb-xen bouncing through a pool shared with other devices.
    pub fn with_pool(arch: A, hv: H, p2m: SharedP2m, mask: u64, ram: RamMap, pool: SharedPool) -> Self {
        let coherent_dev = arch.coherent();
        let has_cache_flush = hv.has_cache_flush();
        XenSwiotlb {
            arch,
            hv,
            p2m,
            mask,
            ram,
            coherent_dev,
            has_cache_flush,
            force_bounce: false,
            pool,
            own_pool: false,
            maps: Tracker::new(),
            coherent: Tracker::new(),
            resources: Tracker::new(),
            stats: SwiotlbStats::default(),
        }
    }

    /// Bounce every streaming mapping (swiotlb=force).
    pub fn force_bounce(mut self, on: bool) -> Self {
        self.force_bounce = on;
        self
    }
    /// The bounce pool's range.
    pub fn pool_range(&self) -> (PhysAddr, usize) {
        self.pool.borrow().range()
    }
    /// The bounce pool's accounting (leak checks).
    pub fn pool_stats(&self) -> IovaStats {
        self.pool.borrow().stats()
    }
    /// Counters.
    pub fn stats(&self) -> SwiotlbStats {
        self.stats
    }
    /// Live streaming mappings.
    pub fn live_mappings(&self) -> usize {
        self.maps.len()
    }
    /// Errors reported.
    pub fn errors(&self) -> u64 {
        self.maps.errors() + self.coherent.errors() + self.resources.errors()
    }
    /// The decision this instance would take for a buffer (for tests and diagnostics).
    pub fn decide(&self, phys: PhysAddr, size: usize) -> SwiotlbDecision {
        decide(&self.p2m.borrow(), phys, size, self.mask, self.coherent_dev, self.has_cache_flush, self.force_bounce)
    }
    /// Release the bounce pool if this instance owns it (all mappings must be gone).
    pub fn destroy(self) -> Result<(), DmaError> {
        let (base, size) = self.pool_range();
        if !self.maps.is_empty() {
            return Err(DmaError::Inconsistent { dma: base, what: "destroying swiotlb with live mappings" });
        }
        if self.own_pool {
            self.arch.free_pages(base, size);
        }
        Ok(())
    }

    /// Cache maintenance of a directly mapped range: arch ops for local frames,
    /// GNTTABOP_cache_flush (per frame, by machine address) for foreign ones.
    fn maint(&mut self, phys: PhysAddr, size: usize, dir: Direction, for_device: bool) {
        if self.coherent_dev {
            return;
        }
        if !for_device && !dir.device_writes() {
            return;
        }
        let p2m = self.p2m.borrow();
        let mut done = 0usize;
        while done < size {
            let a = phys + done as u64;
            let n = core::cmp::min(size - done, (XEN_PAGE_SIZE - (a & (XEN_PAGE_SIZE - 1))) as usize);
            if p2m.is_foreign(a >> XEN_PAGE_SHIFT) {
                let op = match (for_device, dir) {
                    (true, Direction::ToDevice) => CacheFlushOp::Clean,
                    (true, _) => CacheFlushOp::CleanInvalidate,
                    (false, _) => CacheFlushOp::Invalidate,
                };
                let r = self.hv.cache_flush(p2m.phys_to_bus(a), n as u16, op);
                self.stats.hv_cache_flushes += 1;
                if let Err(e) = r {
                    crate::dma_warn!("swiotlb-xen: cache_flush of {a:#x} failed: {e:?}");
                }
            } else if for_device {
                self.arch.sync_for_device(a, n, dir);
            } else {
                self.arch.sync_for_cpu(a, n, dir);
            }
            done += n;
        }
    }

    fn bounce_to_device(&mut self, orig: PhysAddr, slot: u64, size: usize, dir: Direction) -> Result<(), DmaError> {
        if dir.device_reads() {
            self.arch.copy_phys(slot, orig, size).map_err(|_| DmaError::Memory { pa: orig })?;
        }
        if !self.coherent_dev {
            self.arch.sync_for_device(slot, size, dir);
        }
        Ok(())
    }

    fn bounce_to_cpu(&mut self, orig: PhysAddr, slot: u64, size: usize, dir: Direction) -> Result<(), DmaError> {
        if !dir.device_writes() {
            return Ok(());
        }
        if !self.coherent_dev {
            self.arch.sync_for_cpu(slot, size, dir);
        }
        self.arch.copy_phys(orig, slot, size).map_err(|_| DmaError::Memory { pa: orig })
    }
}

impl<A: ArchDmaOps, H: Hypervisor> DmaOps for XenSwiotlb<A, H> {
    fn kind(&self) -> DmaKind {
        DmaKind::XenSwiotlb
    }

    fn alloc_coherent(&mut self, size: usize) -> Result<CoherentBuf, DmaError> {
        crate::direct::alloc_coherent_1to1(&self.arch, self.mask, &mut self.coherent, size)
    }

    fn free_coherent(&mut self, buf: CoherentBuf) -> Result<(), DmaError> {
        crate::direct::free_coherent_1to1(&self.arch, &mut self.coherent, buf)
    }

    fn map_page(&mut self, phys: PhysAddr, size: usize, dir: Direction, attrs: DmaAttrs) -> Result<DmaAddr, DmaError> {
        if size == 0 {
            return Err(self.maps.fail("map_page", DmaError::ZeroSize));
        }
        let sync = !attrs.contains(DmaAttrs::SKIP_CPU_SYNC);
        match self.decide(phys, size) {
            SwiotlbDecision::Direct { bus, foreign } => {
                if sync {
                    self.maint(phys, size, dir, true);
                }
                self.maps.insert(bus, Mapping { size, dir, extra: SwMap { orig: phys, bounce: false, foreign } });
                self.stats.direct += 1;
                Ok(bus)
            }
            SwiotlbDecision::Bounce(_) => {
                if size > MAX_BOUNCE {
                    return Err(self.maps.fail("map_page", DmaError::TooLarge { size, max: MAX_BOUNCE }));
                }
                let got = self.pool.borrow_mut().slots.alloc(size as u64, self.mask);
                let slot = match got {
                    Some(s) => s,
                    None => {
                        let base = self.pool.borrow().base;
                        let e = if base > self.mask {
                            DmaError::MaskExceeded { addr: base, size, mask: self.mask }
                        } else {
                            DmaError::BounceFull { size }
                        };
                        return Err(self.maps.fail("map_page", e));
                    }
                };
                if sync {
                    if let Err(e) = self.bounce_to_device(phys, slot, size, dir) {
                        self.pool.borrow_mut().slots.free(slot, size as u64);
                        return Err(self.maps.fail("map_page", e));
                    }
                }
                self.maps.insert(slot, Mapping { size, dir, extra: SwMap { orig: phys, bounce: true, foreign: false } });
                self.stats.bounced += 1;
                Ok(slot)
            }
        }
    }

    fn unmap_page(&mut self, dma: DmaAddr, size: usize, dir: Direction, attrs: DmaAttrs) -> Result<(), DmaError> {
        let m = self.maps.remove(dma, size, "unmap_page")?;
        let sync = !attrs.contains(DmaAttrs::SKIP_CPU_SYNC);
        if m.extra.bounce {
            let r = if sync { self.bounce_to_cpu(m.extra.orig, dma, size, m.dir) } else { Ok(()) };
            self.pool.borrow_mut().slots.free(dma, size as u64);
            return r;
        }
        if sync {
            self.maint(m.extra.orig, size, dir, false);
        }
        Ok(())
    }

    fn map_resource(&mut self, phys: PhysAddr, size: usize, dir: Direction, _attrs: DmaAttrs) -> Result<DmaAddr, DmaError> {
        map_resource_1to1(&self.ram, &mut self.resources, phys, size, dir, self.mask)
    }

    fn unmap_resource(&mut self, dma: DmaAddr, size: usize, _dir: Direction, _attrs: DmaAttrs) -> Result<(), DmaError> {
        self.resources.remove(dma, size, "unmap_resource").map(|_| ())
    }

    fn sync_for_cpu(&mut self, dma: DmaAddr, size: usize, dir: Direction) -> Result<(), DmaError> {
        let (start, m) = self.maps.find_containing(dma, size, "sync_for_cpu")?;
        let off = dma - start;
        if m.extra.bounce {
            self.bounce_to_cpu(m.extra.orig + off, dma, size, dir)
        } else {
            self.maint(m.extra.orig + off, size, dir, false);
            Ok(())
        }
    }

    fn sync_for_device(&mut self, dma: DmaAddr, size: usize, dir: Direction) -> Result<(), DmaError> {
        let (start, m) = self.maps.find_containing(dma, size, "sync_for_device")?;
        let off = dma - start;
        if m.extra.bounce {
            self.bounce_to_device(m.extra.orig + off, dma, size, dir)
        } else {
            self.maint(m.extra.orig + off, size, dir, true);
            Ok(())
        }
    }

    fn dma_mask(&self) -> u64 {
        self.mask
    }
    fn set_dma_mask(&mut self, mask: u64) -> Result<(), DmaError> {
        self.mask = mask;
        Ok(())
    }
    fn max_mapping_size(&self) -> usize {
        MAX_BOUNCE
    }
}
