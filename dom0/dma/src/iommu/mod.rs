//! IommuDma: DMA for devices whose IOMMU dom0 drives. Buffers get IOVAs from an
//! [`IovaAllocator`] and are mapped in an IO page table behind the [`IommuDomain`] trait
//! (SMMUv3 stage-1 LPAE in [`lpae`], Exynos SysMMU in [`sysmmu`]); IOTLB invalidations are
//! batched — one per unmap call (a whole scatter-gather list included), or one per
//! `batch` unmaps in deferred mode, where IOVAs are only reused after their invalidation.

pub mod lpae;
pub mod sysmmu;

use alloc::vec::Vec;

use crate::arch::ArchDmaOps;
use crate::iova::{IovaAllocator, IovaStats};
use crate::swiotlb::SharedP2m;
use crate::ops::{DmaKind, DmaOps, Mapping, RamMap, Tracker};
use crate::types::{
    align_up, CoherentBuf, Direction, DmaAddr, DmaAttrs, DmaError, IommuError, PhysAddr, SgEntry,
};

/// Access rights of an IO mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct IoProt {
    pub read: bool,
    pub write: bool,
    /// Device memory (MMIO), not normal memory.
    pub mmio: bool,
}

impl IoProt {
    /// Read-write normal memory.
    pub const RW: IoProt = IoProt { read: true, write: true, mmio: false };

    /// The rights a streaming mapping in `dir` needs (least privilege: to-device is read-only).
    pub fn for_dir(dir: Direction) -> IoProt {
        IoProt { read: dir.device_reads(), write: dir.device_writes(), mmio: false }
    }
}

/// The IOVA range an unmap touched, accumulated until one IOTLB invalidation covers it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IotlbGather {
    pub start: u64,
    pub end: u64,
    /// Bytes unmapped (sum, not span).
    pub bytes: u64,
}

impl IotlbGather {
    /// Add `[iova, iova+len)`.
    #[inline]
    pub fn add(&mut self, iova: u64, len: u64) {
        if self.bytes == 0 {
            self.start = iova;
            self.end = iova + len;
        } else {
            self.start = self.start.min(iova);
            self.end = self.end.max(iova + len);
        }
        self.bytes += len;
    }
    /// Nothing gathered?
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }
}

/// An IO page table (and the IOTLB in front of it) for one IOMMU domain.
pub trait IommuDomain {
    /// What this is, for logs ("smmuv3-s1", "exynos-sysmmu").
    fn name(&self) -> &'static str;
    /// Supported page sizes (bit n set = 2^n bytes).
    fn pgsize_bitmap(&self) -> u64;
    /// Input (IOVA) bits the table translates.
    fn ias(&self) -> u32;
    /// Map `[iova, iova+size)` to `[pa, pa+size)`; all granule-aligned; the range must be free.
    fn map(&mut self, iova: u64, pa: u64, size: u64, prot: IoProt) -> Result<(), IommuError>;
    /// Unmap `[iova, iova+size)` and add it to `gather`; the IOTLB is not yet invalidated.
    fn unmap(&mut self, iova: u64, size: u64, gather: &mut IotlbGather) -> Result<(), IommuError>;
    /// Walk the table: the output address and rights for `iova`, if mapped.
    fn iova_to_phys(&self, iova: u64) -> Option<(u64, IoProt)>;
    /// Invalidate the IOTLB for what `gather` holds (one batch: the hardware commands to issue
    /// are the implementation's choice — per page, a range, or all).
    fn iotlb_sync(&mut self, gather: &IotlbGather);
    /// Bytes currently mapped (cross-checks against the IOVA allocator).
    fn mapped_bytes(&self) -> u64;
    /// Low-level invalidation operations issued so far (commands or register writes).
    fn invalidation_ops(&self) -> u64;
    /// Constraints on where IOVA ranges may sit (hardware that prefetches neighbouring
    /// entries). None by default.
    fn iova_guard(&self) -> IovaGuard {
        IovaGuard::NONE
    }
}

/// IOVA placement constraints: every range starts `align`-aligned and is followed by `hole`
/// bytes that stay unmapped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IovaGuard {
    pub align: u64,
    pub hole: u64,
}

impl IovaGuard {
    /// No constraint.
    pub const NONE: IovaGuard = IovaGuard { align: 0, hole: 0 };
}

/// When IOTLB invalidations happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushMode {
    /// Every unmap call invalidates before returning (one invalidation per call).
    Strict,
    /// Unmaps are queued; one invalidation per `batch` unmaps (or on [`IommuDma::flush`]).
    /// IOVAs of queued unmaps are not reused until then.
    Deferred { batch: usize },
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IommuStats {
    /// IOTLB invalidation batches issued (calls to `iotlb_sync`).
    pub iotlb_syncs: u64,
    /// Unmap operations (pages, sg lists, resources) that needed invalidation.
    pub unmaps: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
struct IoMap {
    iova: u64,
    len: u64,
    pa: PhysAddr,
}

/// IOVA space start: IOVA 0 .. 1 MiB stays unmapped so a zero DMA address faults.
pub const IOVA_BASE: u64 = 1 << 20;

/// IOMMU DMA ops over the device's arch ops `A` and an IO page table `D`.
pub struct IommuDma<A: ArchDmaOps, D: IommuDomain> {
    arch: A,
    domain: D,
    iova: IovaAllocator,
    granule: u64,
    mask: u64,
    ram: RamMap,
    coherent_dev: bool,
    mode: FlushMode,
    guard: IovaGuard,
    foreign: Option<SharedP2m>,
    pending: Vec<(u64, u64)>,
    pending_gather: IotlbGather,
    maps: Tracker<IoMap>,
    sgs: Tracker<IoMap>,
    resources: Tracker<IoMap>,
    coherent: Tracker<IoMap>,
    stats: IommuStats,
}

impl<A: ArchDmaOps, D: IommuDomain> IommuDma<A, D> {
    /// IOMMU DMA for a device with mask `mask`, in `domain`, strict invalidation.
    pub fn new(arch: A, domain: D, mask: u64, ram: RamMap) -> Self {
        let granule = 1u64 << domain.pgsize_bitmap().trailing_zeros();
        let top = if domain.ias() >= 64 { u64::MAX } else { (1u64 << domain.ias()) - 1 };
        let size = top - IOVA_BASE + 1;
        let coherent_dev = arch.coherent();
        let guard = domain.iova_guard();
        IommuDma {
            arch,
            domain,
            iova: IovaAllocator::new(IOVA_BASE, size, granule.trailing_zeros()),
            granule,
            mask,
            ram,
            coherent_dev,
            mode: FlushMode::Strict,
            guard,
            foreign: None,
            pending: Vec::new(),
            pending_gather: IotlbGather::default(),
            maps: Tracker::new(),
            sgs: Tracker::new(),
            resources: Tracker::new(),
            coherent: Tracker::new(),
            stats: IommuStats::default(),
        }
    }

    /// Choose strict or deferred invalidation.
    pub fn with_flush_mode(mut self, mode: FlushMode) -> Self {
        self.mode = mode;
        self
    }
    /// Override the IOVA placement constraints the domain asked for (before any mapping).
    pub fn with_iova_guard(mut self, guard: IovaGuard) -> Self {
        self.guard = guard;
        self
    }
    /// The IOMMU outputs machine addresses (dom0 drives it and no hypervisor stage 2 sits
    /// behind it, as with the Exynos SysMMU on a direct-mapped dom0): map grant-mapped foreign
    /// frames to their machine frames from `p2m`, not to dom0's pfn.
    pub fn with_foreign_p2m(mut self, p2m: SharedP2m) -> Self {
        self.foreign = Some(p2m);
        self
    }

    /// The address the IO page table must hold for dom0 physical `pa`.
    #[inline]
    fn out_addr(&self, pa: PhysAddr) -> u64 {
        match &self.foreign {
            Some(p2m) => p2m.borrow().phys_to_bus(pa),
            None => pa,
        }
    }

    /// dom0 physical for an address the IO page table holds.
    #[inline]
    fn in_addr(&self, out: u64) -> PhysAddr {
        match &self.foreign {
            Some(p2m) => p2m.borrow().bus_to_phys(out),
            None => out,
        }
    }

    /// Map `[iova, iova+len)` to dom0's `[pa, pa+len)`, page by page where frames are foreign.
    fn map_out(&mut self, iova: u64, pa: PhysAddr, len: u64, prot: IoProt) -> Result<(), IommuError> {
        let any_foreign = match &self.foreign {
            Some(p2m) => {
                let p2m = p2m.borrow();
                !p2m.is_empty() && (0..len).step_by(self.granule as usize).any(|off| p2m.is_foreign((pa + off) >> 12))
            }
            None => false,
        };
        if !any_foreign {
            return self.domain.map(iova, pa, len, prot);
        }
        let mut done = 0;
        while done < len {
            let out = self.out_addr(pa + done);
            if let Err(e) = self.domain.map(iova + done, out, self.granule, prot) {
                if done > 0 {
                    let mut g = IotlbGather::default();
                    let _ = self.domain.unmap(iova, done, &mut g);
                }
                return Err(e);
            }
            done += self.granule;
        }
        Ok(())
    }

    /// The IOVA placement constraints in force.
    pub fn iova_guard(&self) -> IovaGuard {
        self.guard
    }

    /// IOVA space reserved for a mapping of `len` bytes (alignment padding and hole included;
    /// the allocator aligns power-of-two sizes to themselves).
    #[inline]
    fn reserve_len(&self, len: u64) -> u64 {
        if self.guard.align == 0 && self.guard.hole == 0 {
            return len;
        }
        align_up(len, self.guard.align.max(self.granule)) + self.guard.hole
    }

    /// The IO page table.
    pub fn domain(&self) -> &D {
        &self.domain
    }
    /// The IO page table, mutably (attach more SysMMU instances, read counters).
    pub fn domain_mut(&mut self) -> &mut D {
        &mut self.domain
    }
    /// Counters.
    pub fn stats(&self) -> IommuStats {
        self.stats
    }
    /// The IOVA allocator's accounting.
    pub fn iova_stats(&self) -> IovaStats {
        self.iova.stats()
    }
    /// Live streaming mappings (pages + sg lists).
    pub fn live_mappings(&self) -> usize {
        self.maps.len() + self.sgs.len()
    }
    /// Unmaps queued for invalidation (deferred mode).
    pub fn pending_unmaps(&self) -> usize {
        self.pending.len()
    }
    /// Errors reported.
    pub fn errors(&self) -> u64 {
        self.maps.errors() + self.sgs.errors() + self.resources.errors() + self.coherent.errors()
    }

    /// Issue the queued invalidation now and release the queued IOVAs.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.domain.iotlb_sync(&self.pending_gather);
        self.stats.iotlb_syncs += 1;
        self.pending_gather = IotlbGather::default();
        for (iova, len) in core::mem::take(&mut self.pending) {
            let r = self.reserve_len(len);
            self.iova.free(iova, r);
        }
    }

    fn alloc_iova(&mut self, len: u64) -> Result<u64, DmaError> {
        let r = self.reserve_len(len);
        match self.iova.alloc(r, self.mask) {
            Some(i) => Ok(i),
            None => {
                self.flush();
                self.iova.alloc(r, self.mask).ok_or(DmaError::IovaExhausted { size: len as usize })
            }
        }
    }

    fn map_range(&mut self, pa: PhysAddr, len: u64, prot: IoProt) -> Result<u64, DmaError> {
        let iova = self.alloc_iova(len)?;
        if let Err(e) = self.map_out(iova, pa, len, prot) {
            let r = self.reserve_len(len);
            self.iova.free(iova, r);
            return Err(e.into());
        }
        Ok(iova)
    }

    /// Unmap a range we mapped, then invalidate (strict) or queue (deferred).
    fn unmap_range(&mut self, m: IoMap) -> Result<(), DmaError> {
        let mut gather = IotlbGather::default();
        if let Err(e) = self.domain.unmap(m.iova, m.len, &mut gather) {
            // The table and our records disagree; keep the IOVA out of circulation.
            crate::dma_warn!("iommu-dma: unmap of iova {:#x}+{:#x} failed: {e}", m.iova, m.len);
            return Err(DmaError::Iommu(e));
        }
        self.stats.unmaps += 1;
        match self.mode {
            FlushMode::Strict => {
                self.domain.iotlb_sync(&gather);
                self.stats.iotlb_syncs += 1;
                let r = self.reserve_len(m.len);
                self.iova.free(m.iova, r);
            }
            FlushMode::Deferred { batch } => {
                self.pending.push((m.iova, m.len));
                if !gather.is_empty() {
                    self.pending_gather.add(gather.start, gather.end - gather.start);
                }
                if self.pending.len() >= batch.max(1) {
                    self.flush();
                }
            }
        }
        Ok(())
    }

    /// Cross-check the records against the IO page table (the debug check, callable any time).
    fn verify(&self, dma: DmaAddr, m: &IoMap) -> Result<(), DmaError> {
        match self.domain.iova_to_phys(m.iova) {
            Some((out, _)) if out == self.out_addr(m.pa) => Ok(()),
            _ => Err(DmaError::Inconsistent { dma, what: "IO page table does not map the tracked IOVA to the tracked address" }),
        }
    }

    /// Check every live mapping translates page by page to the address recorded for it, and
    /// the allocator's and the table's byte counts agree with the records.
    pub fn check_consistency(&self) -> Result<(), DmaError> {
        let mut mapped = 0u64;
        let mut ranges = 0u64;
        for t in [&self.maps, &self.resources, &self.coherent] {
            for (dma, m) in t.iter() {
                for off in (0..m.extra.len).step_by(self.granule as usize) {
                    match self.domain.iova_to_phys(m.extra.iova + off) {
                        Some((out, _)) if out == self.out_addr(m.extra.pa + off) => {}
                        _ => return Err(DmaError::Inconsistent { dma, what: "page not mapped to its buffer" }),
                    }
                }
                mapped += m.extra.len;
                ranges += 1;
            }
        }
        for (dma, m) in self.sgs.iter() {
            for off in (0..m.extra.len).step_by(self.granule as usize) {
                if self.domain.iova_to_phys(m.extra.iova + off).is_none() {
                    return Err(DmaError::Inconsistent { dma, what: "sg page not mapped" });
                }
            }
            mapped += m.extra.len;
            ranges += 1;
        }
        if mapped != self.domain.mapped_bytes() {
            return Err(DmaError::Inconsistent { dma: 0, what: "IO page table maps bytes no mapping accounts for" });
        }
        let s = self.iova.stats();
        if s.live_count != ranges + self.pending.len() as u64 {
            return Err(DmaError::Inconsistent { dma: 0, what: "IOVA allocator live ranges != live mappings" });
        }
        self.iova.check().map_err(|what| DmaError::Inconsistent { dma: 0, what })
    }

    fn sync_range(&mut self, dma: DmaAddr, size: usize, dir: Direction, for_device: bool) {
        if self.coherent_dev {
            return;
        }
        let mut done = 0usize;
        while done < size {
            let a = dma + done as u64;
            let n = core::cmp::min(size - done, (self.granule - (a & (self.granule - 1))) as usize);
            if let Some((out, _)) = self.domain.iova_to_phys(a) {
                // Cache maintenance by dom0's own address (a foreign frame is mapped there).
                let pa = self.in_addr(out);
                if for_device {
                    self.arch.sync_for_device(pa, n, dir);
                } else {
                    self.arch.sync_for_cpu(pa, n, dir);
                }
            }
            done += n;
        }
    }

    fn sg_span(&self, sg: &[SgEntry]) -> u64 {
        sg.iter()
            .map(|s| align_up((s.phys & (self.granule - 1)) + s.len as u64, self.granule))
            .sum()
    }
}

impl<A: ArchDmaOps, D: IommuDomain> DmaOps for IommuDma<A, D> {
    fn kind(&self) -> DmaKind {
        DmaKind::IommuDma
    }

    fn alloc_coherent(&mut self, size: usize) -> Result<CoherentBuf, DmaError> {
        if size == 0 {
            return Err(self.coherent.fail("alloc_coherent", DmaError::ZeroSize));
        }
        let len = align_up(size as u64, self.granule);
        let pa = self.arch.alloc_coherent(len as usize).ok_or(DmaError::OutOfMemory { size: len as usize })?;
        let iova = match self.map_range(pa, len, IoProt::RW) {
            Ok(i) => i,
            Err(e) => {
                self.arch.free_coherent(pa, len as usize);
                return Err(self.coherent.fail("alloc_coherent", e));
            }
        };
        self.coherent.insert(iova, Mapping { size: len as usize, dir: Direction::Bidirectional, extra: IoMap { iova, len, pa } });
        Ok(CoherentBuf { phys: pa, dma: iova, size: len as usize })
    }

    fn free_coherent(&mut self, buf: CoherentBuf) -> Result<(), DmaError> {
        let len = align_up(buf.size as u64, self.granule) as usize;
        let m = self.coherent.remove(buf.dma, len, "free_coherent")?;
        self.unmap_range(m.extra)?;
        self.arch.free_coherent(m.extra.pa, len);
        Ok(())
    }

    fn map_page(&mut self, phys: PhysAddr, size: usize, dir: Direction, attrs: DmaAttrs) -> Result<DmaAddr, DmaError> {
        if size == 0 {
            return Err(self.maps.fail("map_page", DmaError::ZeroSize));
        }
        let off = phys & (self.granule - 1);
        let pa = phys - off;
        let len = align_up(off + size as u64, self.granule);
        let iova = match self.map_range(pa, len, IoProt::for_dir(dir)) {
            Ok(i) => i,
            Err(e) => return Err(self.maps.fail("map_page", e)),
        };
        if !self.coherent_dev && !attrs.contains(DmaAttrs::SKIP_CPU_SYNC) {
            self.arch.sync_for_device(phys, size, dir);
        }
        self.maps.insert(iova + off, Mapping { size, dir, extra: IoMap { iova, len, pa } });
        Ok(iova + off)
    }

    fn unmap_page(&mut self, dma: DmaAddr, size: usize, dir: Direction, attrs: DmaAttrs) -> Result<(), DmaError> {
        if cfg!(debug_assertions) {
            if let Some(m) = self.maps.get(dma) {
                let extra = m.extra;
                if let Err(e) = self.verify(dma, &extra) {
                    return Err(self.maps.fail("unmap_page", e));
                }
            }
        }
        let m = self.maps.remove(dma, size, "unmap_page")?;
        if !self.coherent_dev && !attrs.contains(DmaAttrs::SKIP_CPU_SYNC) && dir.device_writes() {
            self.arch.sync_for_cpu(m.extra.pa + (dma & (self.granule - 1)), size, dir);
        }
        self.unmap_range(m.extra)
    }

    fn map_sg(&mut self, sg: &mut [SgEntry], dir: Direction, attrs: DmaAttrs) -> Result<usize, DmaError> {
        if sg.is_empty() || sg.iter().any(|s| s.len == 0) {
            return Err(self.sgs.fail("map_sg", DmaError::ZeroSize));
        }
        let span = self.sg_span(sg);
        let iova = match self.alloc_iova(span) {
            Ok(i) => i,
            Err(e) => return Err(self.sgs.fail("map_sg", e)),
        };
        let mut at = iova;
        for s in sg.iter_mut() {
            let off = s.phys & (self.granule - 1);
            let len = align_up(off + s.len as u64, self.granule);
            if let Err(e) = self.map_out(at, s.phys - off, len, IoProt::for_dir(dir)) {
                let mut g = IotlbGather::default();
                if at > iova {
                    let _ = self.domain.unmap(iova, at - iova, &mut g);
                    self.domain.iotlb_sync(&g);
                    self.stats.iotlb_syncs += 1;
                }
                let r = self.reserve_len(span);
                self.iova.free(iova, r);
                return Err(self.sgs.fail("map_sg", e.into()));
            }
            s.dma = at + off;
            s.dma_len = s.len;
            if !self.coherent_dev && !attrs.contains(DmaAttrs::SKIP_CPU_SYNC) {
                self.arch.sync_for_device(s.phys, s.len, dir);
            }
            at += len;
        }
        self.sgs.insert(iova, Mapping { size: span as usize, dir, extra: IoMap { iova, len: span, pa: sg[0].phys & !(self.granule - 1) } });
        Ok(sg.len())
    }

    fn unmap_sg(&mut self, sg: &[SgEntry], dir: Direction, attrs: DmaAttrs) -> Result<(), DmaError> {
        let Some(first) = sg.first() else {
            return Err(self.sgs.fail("unmap_sg", DmaError::ZeroSize));
        };
        let key = first.dma & !(self.granule - 1);
        let span = self.sg_span(sg);
        let m = self.sgs.remove(key, span as usize, "unmap_sg")?;
        if !self.coherent_dev && !attrs.contains(DmaAttrs::SKIP_CPU_SYNC) && dir.device_writes() {
            for s in sg {
                self.sync_range(s.dma, s.dma_len, dir, false);
            }
        }
        // One unmap of the whole span, one invalidation for the whole list.
        self.unmap_range(m.extra)
    }

    fn map_resource(&mut self, phys: PhysAddr, size: usize, dir: Direction, _attrs: DmaAttrs) -> Result<DmaAddr, DmaError> {
        if size == 0 {
            return Err(self.resources.fail("map_resource", DmaError::ZeroSize));
        }
        if self.ram.overlaps(phys, size) {
            return Err(self.resources.fail("map_resource", DmaError::ResourceIsRam { phys, size }));
        }
        let off = phys & (self.granule - 1);
        let pa = phys - off;
        let len = align_up(off + size as u64, self.granule);
        let prot = IoProt { read: dir.device_reads(), write: dir.device_writes(), mmio: true };
        let iova = match self.map_range(pa, len, prot) {
            Ok(i) => i,
            Err(e) => return Err(self.resources.fail("map_resource", e)),
        };
        self.resources.insert(iova + off, Mapping { size, dir, extra: IoMap { iova, len, pa } });
        Ok(iova + off)
    }

    fn unmap_resource(&mut self, dma: DmaAddr, size: usize, _dir: Direction, _attrs: DmaAttrs) -> Result<(), DmaError> {
        let m = self.resources.remove(dma, size, "unmap_resource")?;
        self.unmap_range(m.extra)
    }

    fn sync_for_cpu(&mut self, dma: DmaAddr, size: usize, dir: Direction) -> Result<(), DmaError> {
        if !self.maps.contains_range(dma, size) && !self.sgs.contains_range(dma, size) {
            return Err(self.maps.fail("sync_for_cpu", DmaError::NotMapped { dma }));
        }
        self.sync_range(dma, size, dir, false);
        Ok(())
    }

    fn sync_for_device(&mut self, dma: DmaAddr, size: usize, dir: Direction) -> Result<(), DmaError> {
        if !self.maps.contains_range(dma, size) && !self.sgs.contains_range(dma, size) {
            return Err(self.maps.fail("sync_for_device", DmaError::NotMapped { dma }));
        }
        self.sync_range(dma, size, dir, true);
        Ok(())
    }

    fn dma_mask(&self) -> u64 {
        self.mask
    }
    fn set_dma_mask(&mut self, mask: u64) -> Result<(), DmaError> {
        self.mask = mask;
        Ok(())
    }
    fn max_mapping_size(&self) -> usize {
        usize::MAX
    }
}
