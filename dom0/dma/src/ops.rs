//! The interface every DMA implementation offers a driver (one per device), the bookkeeping of
//! live mappings that makes unmap/sync mistakes errors instead of corruption, and helpers
//! shared by the implementations.

use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::hash::{BuildHasherDefault, Hasher};

use crate::addr_table::AddrTable;
use crate::dma_warn;
use crate::types::{CoherentBuf, Direction, DmaAddr, DmaAttrs, DmaError, PhysAddr, SgEntry};

/// Which implementation a device uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DmaKind {
    /// dma == phys.
    Direct,
    /// swiotlb-xen: direct when possible, else bounce; foreign pages by machine address.
    XenSwiotlb,
    /// Through an IOMMU dom0 drives.
    IommuDma,
    /// Through grants to a backend domain ("xen,grant-dma").
    GrantDma,
}

impl core::fmt::Display for DmaKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            DmaKind::Direct => "Direct",
            DmaKind::XenSwiotlb => "XenSwiotlb",
            DmaKind::IommuDma => "IommuDma",
            DmaKind::GrantDma => "GrantDma",
        })
    }
}

/// The DMA operations of one device (or of a group sharing one domain).
///
/// `&mut self`: no locking inside; a no_std single-CPU embedder owns the ops, others wrap them
/// in their own lock. [`Shared`] lets several devices of a group share one instance.
pub trait DmaOps {
    /// Which implementation this is.
    fn kind(&self) -> DmaKind;

    /// Allocate a coherent buffer of `size` bytes (rounded up to pages).
    fn alloc_coherent(&mut self, size: usize) -> Result<CoherentBuf, DmaError>;
    /// Free a coherent buffer.
    fn free_coherent(&mut self, buf: CoherentBuf) -> Result<(), DmaError>;

    /// Map `[phys, phys+size)` of RAM for DMA.
    fn map_page(&mut self, phys: PhysAddr, size: usize, dir: Direction, attrs: DmaAttrs)
        -> Result<DmaAddr, DmaError>;
    /// Unmap a mapping from `map_page` (same size and direction).
    fn unmap_page(&mut self, dma: DmaAddr, size: usize, dir: Direction, attrs: DmaAttrs) -> Result<(), DmaError>;

    /// Map a scatter-gather list; fills each entry's `dma`/`dma_len`; returns the number of DMA
    /// segments. On error nothing stays mapped.
    fn map_sg(&mut self, sg: &mut [SgEntry], dir: Direction, attrs: DmaAttrs) -> Result<usize, DmaError> {
        for i in 0..sg.len() {
            match self.map_page(sg[i].phys, sg[i].len, dir, attrs) {
                Ok(d) => {
                    sg[i].dma = d;
                    sg[i].dma_len = sg[i].len;
                }
                Err(e) => {
                    for s in &sg[..i] {
                        let _ = self.unmap_page(s.dma, s.dma_len, dir, attrs | DmaAttrs::SKIP_CPU_SYNC);
                    }
                    return Err(e);
                }
            }
        }
        Ok(sg.len())
    }
    /// Unmap a list mapped by `map_sg`. Every entry is attempted; the first error is returned.
    fn unmap_sg(&mut self, sg: &[SgEntry], dir: Direction, attrs: DmaAttrs) -> Result<(), DmaError> {
        let mut first = Ok(());
        for s in sg {
            if let Err(e) = self.unmap_page(s.dma, s.dma_len, dir, attrs) {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }

    /// Map a device's MMIO (e.g. a peer's FIFO) for DMA. RAM is refused.
    fn map_resource(&mut self, phys: PhysAddr, size: usize, dir: Direction, attrs: DmaAttrs)
        -> Result<DmaAddr, DmaError>;
    /// Unmap a mapping from `map_resource`.
    fn unmap_resource(&mut self, dma: DmaAddr, size: usize, dir: Direction, attrs: DmaAttrs)
        -> Result<(), DmaError>;

    /// Hand `[dma, dma+size)` (inside a live mapping) back to the CPU after device writes.
    fn sync_for_cpu(&mut self, dma: DmaAddr, size: usize, dir: Direction) -> Result<(), DmaError>;
    /// Hand `[dma, dma+size)` (inside a live mapping) to the device after CPU writes.
    fn sync_for_device(&mut self, dma: DmaAddr, size: usize, dir: Direction) -> Result<(), DmaError>;

    /// The device's DMA mask.
    fn dma_mask(&self) -> u64;
    /// Change the device's DMA mask (affects later mappings).
    fn set_dma_mask(&mut self, mask: u64) -> Result<(), DmaError>;
    /// The largest single mapping this implementation makes.
    fn max_mapping_size(&self) -> usize;
}

/// One instance of DMA ops shared by several devices (a [`crate::select::DmaGroup`]).
pub struct Shared<T>(pub Rc<RefCell<T>>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<T> Shared<T> {
    /// Wrap `ops` for sharing.
    pub fn new(ops: T) -> Shared<T> {
        Shared(Rc::new(RefCell::new(ops)))
    }
    /// Do both handles share one instance (same ops, same IOMMU domain)?
    pub fn same_as(&self, other: &Shared<T>) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

impl<T: DmaOps> DmaOps for Shared<T> {
    fn kind(&self) -> DmaKind {
        self.0.borrow().kind()
    }
    fn alloc_coherent(&mut self, size: usize) -> Result<CoherentBuf, DmaError> {
        self.0.borrow_mut().alloc_coherent(size)
    }
    fn free_coherent(&mut self, buf: CoherentBuf) -> Result<(), DmaError> {
        self.0.borrow_mut().free_coherent(buf)
    }
    fn map_page(&mut self, p: PhysAddr, s: usize, d: Direction, a: DmaAttrs) -> Result<DmaAddr, DmaError> {
        self.0.borrow_mut().map_page(p, s, d, a)
    }
    fn unmap_page(&mut self, x: DmaAddr, s: usize, d: Direction, a: DmaAttrs) -> Result<(), DmaError> {
        self.0.borrow_mut().unmap_page(x, s, d, a)
    }
    fn map_sg(&mut self, sg: &mut [SgEntry], d: Direction, a: DmaAttrs) -> Result<usize, DmaError> {
        self.0.borrow_mut().map_sg(sg, d, a)
    }
    fn unmap_sg(&mut self, sg: &[SgEntry], d: Direction, a: DmaAttrs) -> Result<(), DmaError> {
        self.0.borrow_mut().unmap_sg(sg, d, a)
    }
    fn map_resource(&mut self, p: PhysAddr, s: usize, d: Direction, a: DmaAttrs) -> Result<DmaAddr, DmaError> {
        self.0.borrow_mut().map_resource(p, s, d, a)
    }
    fn unmap_resource(&mut self, x: DmaAddr, s: usize, d: Direction, a: DmaAttrs) -> Result<(), DmaError> {
        self.0.borrow_mut().unmap_resource(x, s, d, a)
    }
    fn sync_for_cpu(&mut self, x: DmaAddr, s: usize, d: Direction) -> Result<(), DmaError> {
        self.0.borrow_mut().sync_for_cpu(x, s, d)
    }
    fn sync_for_device(&mut self, x: DmaAddr, s: usize, d: Direction) -> Result<(), DmaError> {
        self.0.borrow_mut().sync_for_device(x, s, d)
    }
    fn dma_mask(&self) -> u64 {
        self.0.borrow().dma_mask()
    }
    fn set_dma_mask(&mut self, m: u64) -> Result<(), DmaError> {
        self.0.borrow_mut().set_dma_mask(m)
    }
    fn max_mapping_size(&self) -> usize {
        self.0.borrow().max_mapping_size()
    }
}

/// dom0's RAM banks (from its DT `/memory`): what map_resource refuses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RamMap {
    banks: Vec<(PhysAddr, u64)>,
}

impl RamMap {
    /// RAM made of these `(base, size)` banks.
    pub fn new(banks: &[(PhysAddr, u64)]) -> RamMap {
        RamMap { banks: banks.to_vec() }
    }
    /// Does `[pa, pa+size)` overlap RAM?
    pub fn overlaps(&self, pa: PhysAddr, size: usize) -> bool {
        let end = pa.saturating_add(size as u64);
        self.banks.iter().any(|&(b, s)| pa < b + s && b < end)
    }
    /// Is `[pa, pa+size)` entirely inside one bank?
    pub fn contains(&self, pa: PhysAddr, size: usize) -> bool {
        let Some(end) = pa.checked_add(size as u64) else { return false };
        self.banks.iter().any(|&(b, s)| pa >= b && end <= b + s)
    }
    /// One past the highest RAM address.
    pub fn top(&self) -> u64 {
        self.banks.iter().map(|&(b, s)| b + s).max().unwrap_or(0)
    }
}

/// A multiplicative hasher for page-aligned addresses (fast, no_std, well mixed in low bits).
#[derive(Clone, Copy, Default)]
pub struct AddrHasher(u64);

impl Hasher for AddrHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
}

/// A hash map keyed by address.
pub type AddrMap<V> = hashbrown::HashMap<u64, V, BuildHasherDefault<AddrHasher>>;

/// One live mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Mapping<X> {
    pub size: usize,
    pub dir: Direction,
    pub extra: X,
}

const RECENT: usize = 64;

/// The live mappings of one ops instance, keyed by DMA address, plus a short memory of
/// recent unmaps so a double unmap is told apart from an address that never was mapped.
pub struct Tracker<X: Copy + Default> {
    live: AddrTable<(Mapping<X>, u32)>,
    /// Further mappings at an address already live with a different size (Direct only).
    overflow: Vec<(DmaAddr, Mapping<X>)>,
    recent: [DmaAddr; RECENT],
    recent_pos: usize,
    errors: u64,
}

impl<X: Copy + Default> Default for Tracker<X> {
    fn default() -> Self {
        Tracker::new()
    }
}

impl<X: Copy + Default> Tracker<X> {
    /// An empty tracker.
    pub fn new() -> Tracker<X> {
        Tracker {
            live: AddrTable::new(),
            overflow: Vec::new(),
            recent: [u64::MAX; RECENT],
            recent_pos: 0,
            errors: 0,
        }
    }

    /// Record a mapping. The same address may be mapped more than once (Direct); each map
    /// needs its own unmap.
    #[inline]
    pub fn insert(&mut self, dma: DmaAddr, m: Mapping<X>) {
        let mut differs = false;
        self.live.insert_or_update(dma, (m, 1), |(prev, count)| {
            if prev.size == m.size {
                *count += 1;
            } else {
                differs = true;
            }
        });
        if differs {
            self.overflow.push((dma, m));
        }
    }

    /// The mapping live at `dma` (exact start).
    #[inline]
    pub fn get(&self, dma: DmaAddr) -> Option<&Mapping<X>> {
        self.live.get(dma).map(|(m, _)| m)
    }

    /// Remove the mapping at `dma` of `size` bytes; errors (logged) for unknown address,
    /// double unmap and wrong size — the mapping stays live on a size mismatch.
    #[inline]
    pub fn remove(&mut self, dma: DmaAddr, size: usize, op: &'static str) -> Result<Mapping<X>, DmaError> {
        if let Some(i) = self.live.slot_of(dma) {
            let (m, count) = self.live.at_mut(i);
            if m.size == size {
                let m = *m;
                if *count > 1 {
                    *count -= 1;
                } else {
                    self.live.remove_at(i);
                    self.remember(dma);
                }
                return Ok(m);
            }
            let mapped = m.size;
            if let Some(i) = self.overflow.iter().position(|&(d, o)| d == dma && o.size == size) {
                return Ok(self.overflow.swap_remove(i).1);
            }
            return Err(self.fail(op, DmaError::SizeMismatch { dma, mapped, requested: size }));
        }
        let e = if self.recent.contains(&dma) {
            DmaError::DoubleUnmap { dma }
        } else {
            DmaError::NotMapped { dma }
        };
        Err(self.fail(op, e))
    }

    /// The live mapping containing `[dma, dma+size)`, for sync: `(start, mapping)`.
    pub fn find_containing(&mut self, dma: DmaAddr, size: usize, op: &'static str)
        -> Result<(DmaAddr, Mapping<X>), DmaError> {
        if let Some((m, _)) = self.live.get(dma) {
            if size <= m.size {
                return Ok((dma, *m));
            }
            let mapped = m.size;
            return Err(self.fail(op, DmaError::SizeMismatch { dma, mapped, requested: size }));
        }
        // A sync of part of a mapping: find the mapping that contains it (rare; linear).
        let found = self
            .live
            .iter()
            .find(|&(s, (m, _))| dma > s && dma + size as u64 <= s + m.size as u64)
            .map(|(s, (m, _))| (s, *m));
        match found {
            Some(f) => Ok(f),
            None => Err(self.fail(op, DmaError::NotMapped { dma })),
        }
    }

    /// Is `[dma, dma+size)` inside one live mapping? (No logging.)
    pub fn contains_range(&self, dma: DmaAddr, size: usize) -> bool {
        if let Some((m, _)) = self.live.get(dma) {
            return size <= m.size;
        }
        self.live.iter().any(|(s, (m, _))| dma > s && dma + size as u64 <= s + m.size as u64)
    }

    #[inline]
    fn remember(&mut self, dma: DmaAddr) {
        self.recent[self.recent_pos] = dma;
        self.recent_pos = (self.recent_pos + 1) % RECENT;
    }

    /// Log and count an error; returns it.
    #[cold]
    #[inline(never)]
    pub fn fail(&mut self, op: &'static str, e: DmaError) -> DmaError {
        self.errors += 1;
        dma_warn!("dma {op}: {e}");
        e
    }

    /// Number of live mappings.
    pub fn len(&self) -> usize {
        self.live.iter().map(|(_, (_, c))| *c as usize).sum::<usize>() + self.overflow.len()
    }
    /// No live mappings?
    pub fn is_empty(&self) -> bool {
        self.live.is_empty() && self.overflow.is_empty()
    }
    /// Errors reported so far.
    pub fn errors(&self) -> u64 {
        self.errors
    }
    /// Every live mapping (start, mapping), once per map.
    pub fn iter(&self) -> impl Iterator<Item = (DmaAddr, Mapping<X>)> + '_ {
        self.live
            .iter()
            .flat_map(|(d, &(m, c))| core::iter::repeat_n((d, m), c as usize))
            .chain(self.overflow.iter().copied())
    }
}
