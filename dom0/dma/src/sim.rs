//! A simulated machine for host tests and benches: machine memory (dom0's RAM plus other
//! domains'), dom0's p2m overlay for grant-mapped foreign frames, a page allocator, cache
//! maintenance counters ([`SimArch`]), and a hypervisor with grant tables ([`SimHypervisor`]).
//! Single-threaded (`Rc<RefCell<_>>`), like the bare-metal guest.

use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use crate::arch::{ArchDmaOps, MemError, PhysMem};
use crate::hv::{errno, gntst, CacheFlushOp, GrantMapping, HvError, Hypervisor, MemoryOp};
use crate::iova::IovaAllocator;
use crate::ops::AddrMap;
use crate::types::{Direction, DomId, GrantRef, PhysAddr, XEN_PAGE_SHIFT, XEN_PAGE_SIZE};

struct Region {
    base: u64,
    data: Vec<u8>,
}

struct MachineInner {
    regions: Vec<Region>,
    /// dom0 gpfn -> mfn for grant-mapped foreign frames.
    overlay: AddrMap<u64>,
    pages: IovaAllocator,
}

/// Counters of what the layer asked the caches to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheCounts {
    pub for_device: u64,
    pub for_cpu: u64,
}

/// Machine memory and dom0's view of it. Cheap to clone (a handle).
#[derive(Clone)]
pub struct SimMachine {
    inner: Rc<RefCell<MachineInner>>,
    cache: Rc<Cell<CacheCounts>>,
}

impl SimMachine {
    /// A machine whose dom0 RAM is `[ram_base, ram_base + ram_size)` (direct-mapped: gpa == ma).
    pub fn new(ram_base: u64, ram_size: u64) -> SimMachine {
        SimMachine {
            inner: Rc::new(RefCell::new(MachineInner {
                regions: vec![Region { base: ram_base, data: vec![0; ram_size as usize] }],
                overlay: AddrMap::default(),
                pages: IovaAllocator::new(ram_base, ram_size, XEN_PAGE_SHIFT),
            })),
            cache: Rc::new(Cell::new(CacheCounts::default())),
        }
    }

    /// Add machine memory that dom0 does not own (another domain's RAM).
    pub fn add_foreign_memory(&self, base: u64, size: u64) {
        self.inner.borrow_mut().regions.push(Region { base, data: vec![0; size as usize] });
    }

    /// dom0 guest-physical -> machine address (through the foreign overlay).
    pub fn gpa_to_machine(&self, gpa: u64) -> u64 {
        let inner = self.inner.borrow();
        match inner.overlay.get(&(gpa >> XEN_PAGE_SHIFT)) {
            Some(&mfn) => (mfn << XEN_PAGE_SHIFT) | (gpa & (XEN_PAGE_SIZE - 1)),
            None => gpa,
        }
    }

    /// Make dom0 frame `gpfn` show machine frame `mfn` (what a grant map does to the p2m).
    pub fn map_foreign(&self, gpfn: u64, mfn: u64) {
        self.inner.borrow_mut().overlay.insert(gpfn, mfn);
    }
    /// Undo `map_foreign`.
    pub fn unmap_foreign(&self, gpfn: u64) -> Option<u64> {
        self.inner.borrow_mut().overlay.remove(&gpfn)
    }

    fn locate(regions: &[Region], ma: u64, len: usize) -> Result<(usize, usize), MemError> {
        for (i, r) in regions.iter().enumerate() {
            if ma >= r.base && ma - r.base + len as u64 <= r.data.len() as u64 {
                return Ok((i, (ma - r.base) as usize));
            }
        }
        Err(MemError::NotMemory { pa: ma })
    }

    /// Read machine memory (what a device without an IOMMU sees).
    pub fn machine_read(&self, ma: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let inner = self.inner.borrow();
        let (i, off) = Self::locate(&inner.regions, ma, buf.len())?;
        buf.copy_from_slice(&inner.regions[i].data[off..off + buf.len()]);
        Ok(())
    }

    /// Write machine memory (a device writing).
    pub fn machine_write(&self, ma: u64, data: &[u8]) -> Result<(), MemError> {
        let mut inner = self.inner.borrow_mut();
        let (i, off) = Self::locate(&inner.regions, ma, data.len())?;
        inner.regions[i].data[off..off + data.len()].copy_from_slice(data);
        Ok(())
    }

    /// Allocate zeroed dom0 pages.
    pub fn alloc(&self, size: usize, align: usize) -> Option<PhysAddr> {
        let mut inner = self.inner.borrow_mut();
        let size = (size as u64).max(align as u64);
        let pa = inner.pages.alloc(size, u64::MAX)?;
        let len = inner.pages.alloc_len(size) as usize;
        if pa % align as u64 != 0 {
            inner.pages.free(pa, size);
            return None;
        }
        let (i, off) = Self::locate(&inner.regions, pa, len).ok()?;
        inner.regions[i].data[off..off + len].fill(0);
        Some(pa)
    }

    /// Free pages from `alloc` (pass the same size and align).
    pub fn free(&self, pa: PhysAddr, size: usize, align: usize) {
        self.inner.borrow_mut().pages.free(pa, (size as u64).max(align as u64));
    }

    /// Bytes of dom0 RAM handed out by `alloc` and not freed.
    pub fn allocated_bytes(&self) -> u64 {
        self.inner.borrow().pages.stats().live
    }

    /// Cache maintenance done so far.
    pub fn cache_counts(&self) -> CacheCounts {
        self.cache.get()
    }

    fn for_each_page<F: FnMut(u64, usize, usize) -> Result<(), MemError>>(&self, gpa: u64, len: usize, mut f: F)
        -> Result<(), MemError> {
        let mut done = 0usize;
        while done < len {
            let a = gpa + done as u64;
            let n = core::cmp::min(len - done, (XEN_PAGE_SIZE - (a & (XEN_PAGE_SIZE - 1))) as usize);
            f(self.gpa_to_machine(a), done, n)?;
            done += n;
        }
        Ok(())
    }
}

impl PhysMem for SimMachine {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        if self.inner.borrow().overlay.is_empty() {
            return self.machine_read(pa, buf);
        }
        self.for_each_page(pa, buf.len(), |ma, at, n| self.machine_read(ma, &mut buf[at..at + n]))
    }
    fn write(&self, pa: u64, data: &[u8]) -> Result<(), MemError> {
        if self.inner.borrow().overlay.is_empty() {
            return self.machine_write(pa, data);
        }
        self.for_each_page(pa, data.len(), |ma, at, n| self.machine_write(ma, &data[at..at + n]))
    }
}

/// The arch ops of one simulated device: coherent or not, counting cache maintenance.
#[derive(Clone)]
pub struct SimArch {
    pub machine: SimMachine,
    pub coherent: bool,
}

impl SimArch {
    /// Arch ops for a device on `machine`.
    pub fn new(machine: &SimMachine, coherent: bool) -> SimArch {
        SimArch { machine: machine.clone(), coherent }
    }
}

impl PhysMem for SimArch {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.machine.read(pa, buf)
    }
    fn write(&self, pa: u64, data: &[u8]) -> Result<(), MemError> {
        self.machine.write(pa, data)
    }
}

impl ArchDmaOps for SimArch {
    fn coherent(&self) -> bool {
        self.coherent
    }
    fn sync_for_device(&self, _pa: PhysAddr, _size: usize, _dir: Direction) {
        let mut c = self.machine.cache.get();
        c.for_device += 1;
        self.machine.cache.set(c);
    }
    fn sync_for_cpu(&self, _pa: PhysAddr, _size: usize, _dir: Direction) {
        let mut c = self.machine.cache.get();
        c.for_cpu += 1;
        self.machine.cache.set(c);
    }
    fn alloc_coherent(&self, size: usize) -> Option<PhysAddr> {
        self.machine.alloc(size, XEN_PAGE_SIZE as usize)
    }
    fn free_coherent(&self, pa: PhysAddr, size: usize) {
        self.machine.free(pa, size, XEN_PAGE_SIZE as usize)
    }
    fn alloc_pages(&self, size: usize, align: usize) -> Option<PhysAddr> {
        self.machine.alloc(size, align)
    }
    fn free_pages(&self, pa: PhysAddr, size: usize) {
        self.machine.free(pa, size, XEN_PAGE_SIZE as usize)
    }
    fn copy_phys(&self, dst: PhysAddr, src: PhysAddr, len: usize) -> Result<(), MemError> {
        let m = &self.machine;
        let mut inner = m.inner.borrow_mut();
        if inner.overlay.is_empty() {
            let (si, so) = SimMachine::locate(&inner.regions, src, len)?;
            let (di, d_o) = SimMachine::locate(&inner.regions, dst, len)?;
            if si == di {
                inner.regions[si].data.copy_within(so..so + len, d_o);
            } else {
                let (a, b) = if si < di {
                    let (l, r) = inner.regions.split_at_mut(di);
                    (&l[si], &mut r[0])
                } else {
                    let (l, r) = inner.regions.split_at_mut(si);
                    (&r[0], &mut l[di])
                };
                b.data[d_o..d_o + len].copy_from_slice(&a.data[so..so + len]);
            }
            return Ok(());
        }
        drop(inner);
        let mut buf = vec![0u8; len];
        m.read(src, &mut buf)?;
        m.write(dst, &buf)
    }
}

#[derive(Clone, Copy, Debug)]
struct Offer {
    mfn: u64,
    readonly: bool,
}

#[derive(Clone, Copy, Debug)]
struct FrontGrant {
    dom: DomId,
    gfn: u64,
    readonly: bool,
    mapped: u32,
}

#[derive(Default)]
struct HvInner {
    offers: hashbrown::HashMap<(DomId, GrantRef), Offer, core::hash::BuildHasherDefault<crate::ops::AddrHasher>>,
    maps: AddrMap<(u64, u64)>,
    next_handle: u32,
    front: AddrMap<FrontGrant>,
    cache_flushes: u64,
    memory_ops: Vec<MemoryOp>,
}

/// What the simulated hypervisor has been asked to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HvCounts {
    pub cache_flushes: u64,
    pub live_grant_maps: usize,
    pub live_front_grants: usize,
}

/// A hypervisor with grant tables over a [`SimMachine`].
#[derive(Clone)]
pub struct SimHypervisor {
    machine: SimMachine,
    features: u32,
    cache_flush: bool,
    inner: Rc<RefCell<HvInner>>,
}

impl SimHypervisor {
    /// A hypervisor reporting feature submap 0 = `features`.
    pub fn new(machine: &SimMachine, features: u32) -> SimHypervisor {
        SimHypervisor { machine: machine.clone(), features, cache_flush: true, inner: Default::default() }
    }
    /// Make GNTTABOP_cache_flush return -ENOSYS (an old hypervisor).
    pub fn without_cache_flush(mut self) -> SimHypervisor {
        self.cache_flush = false;
        self
    }
    /// Domain `dom` offers grant `gref` on its machine frame `mfn`.
    pub fn offer_grant(&self, dom: DomId, gref: GrantRef, mfn: u64, readonly: bool) {
        self.inner.borrow_mut().offers.insert((dom, gref), Offer { mfn, readonly });
    }
    /// Counters.
    pub fn counts(&self) -> HvCounts {
        let i = self.inner.borrow();
        HvCounts {
            cache_flushes: i.cache_flushes,
            live_grant_maps: i.maps.len(),
            live_front_grants: i.front.len(),
        }
    }
    /// The backend domain `dom` maps frontend grant `gref` (so end_access must fail) and
    /// returns the granted frame's machine address and whether it is read-only.
    pub fn backend_map(&self, dom: DomId, gref: GrantRef) -> Result<(u64, bool), HvError> {
        let mut i = self.inner.borrow_mut();
        let g = i.front.get_mut(&u64::from(gref)).ok_or(HvError::Status(gntst::BAD_GNTREF))?;
        if g.dom != dom {
            return Err(HvError::Status(gntst::PERMISSION_DENIED));
        }
        g.mapped += 1;
        Ok((self.machine.gpa_to_machine(g.gfn << XEN_PAGE_SHIFT), g.readonly))
    }
    /// The backend unmaps a frontend grant.
    pub fn backend_unmap(&self, gref: GrantRef) {
        if let Some(g) = self.inner.borrow_mut().front.get_mut(&u64::from(gref)) {
            g.mapped = g.mapped.saturating_sub(1);
        }
    }
    /// Resolve a grant-DMA bus address `1<<63 | gref<<12 | offset` as the backend would,
    /// without keeping it mapped: `(machine address, read-only)`.
    pub fn resolve_grant_addr(&self, dom: DomId, dma: u64) -> Result<(u64, bool), HvError> {
        let gref = ((dma & !(1u64 << 63)) >> XEN_PAGE_SHIFT) as GrantRef;
        let (ma, ro) = self.backend_map(dom, gref)?;
        self.backend_unmap(gref);
        Ok((ma | (dma & (XEN_PAGE_SIZE - 1)), ro))
    }
    /// memory_op calls seen.
    pub fn memory_ops(&self) -> Vec<MemoryOp> {
        self.inner.borrow().memory_ops.clone()
    }
}

impl Hypervisor for SimHypervisor {
    fn features(&self, idx: u32) -> Result<u32, HvError> {
        if idx == 0 {
            Ok(self.features)
        } else {
            Err(HvError::Errno(-errno::EINVAL))
        }
    }

    fn grant_map(&self, host_addr: PhysAddr, dom: DomId, gref: GrantRef, readonly: bool) -> Result<GrantMapping, HvError> {
        let mut i = self.inner.borrow_mut();
        let offer = *i.offers.get(&(dom, gref)).ok_or(HvError::Status(gntst::BAD_GNTREF))?;
        if offer.readonly && !readonly {
            return Err(HvError::Status(gntst::GENERAL_ERROR));
        }
        let handle = i.next_handle;
        i.next_handle += 1;
        i.maps.insert(u64::from(handle), (host_addr, offer.mfn));
        self.machine.map_foreign(host_addr >> XEN_PAGE_SHIFT, offer.mfn);
        Ok(GrantMapping { handle, dev_bus_addr: offer.mfn << XEN_PAGE_SHIFT })
    }

    fn grant_unmap(&self, host_addr: PhysAddr, _dev_bus_addr: u64, handle: u32) -> Result<(), HvError> {
        let mut i = self.inner.borrow_mut();
        match i.maps.get(&u64::from(handle)) {
            Some(&(h, _)) if h == host_addr => {
                i.maps.remove(&u64::from(handle));
                self.machine.unmap_foreign(host_addr >> XEN_PAGE_SHIFT);
                Ok(())
            }
            _ => Err(HvError::Status(gntst::BAD_HANDLE)),
        }
    }

    fn grant_access(&self, gref: GrantRef, dom: DomId, gfn: u64, readonly: bool) -> Result<(), HvError> {
        let mut i = self.inner.borrow_mut();
        if i.front.contains_key(&u64::from(gref)) {
            return Err(HvError::Status(gntst::GENERAL_ERROR));
        }
        i.front.insert(u64::from(gref), FrontGrant { dom, gfn, readonly, mapped: 0 });
        Ok(())
    }

    fn end_access(&self, gref: GrantRef) -> Result<(), HvError> {
        let mut i = self.inner.borrow_mut();
        match i.front.get(&u64::from(gref)) {
            None => Err(HvError::Status(gntst::BAD_GNTREF)),
            Some(g) if g.mapped > 0 => Err(HvError::Status(gntst::GENERAL_ERROR)),
            Some(_) => {
                i.front.remove(&u64::from(gref));
                Ok(())
            }
        }
    }

    fn cache_flush(&self, addr: u64, len: u16, _op: CacheFlushOp) -> Result<(), HvError> {
        if !self.cache_flush {
            return Err(HvError::Errno(-errno::ENOSYS));
        }
        if (addr & (XEN_PAGE_SIZE - 1)) + u64::from(len) > XEN_PAGE_SIZE {
            return Err(HvError::Errno(-errno::EINVAL));
        }
        if len > 0 {
            self.inner.borrow_mut().cache_flushes += 1;
        }
        Ok(())
    }

    fn memory_op(&self, op: MemoryOp) -> Result<u64, HvError> {
        self.inner.borrow_mut().memory_ops.push(op);
        Ok(1)
    }
}
