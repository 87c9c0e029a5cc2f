//! Grant DMA: for a frontend whose backend is another domain (Xen's "xen,grant-dma" binding,
//! e.g. virtio devices served by a backend domain). Each page of a buffer is granted to the
//! backend; the DMA address is `1<<63 | first_gref<<12 | offset`, with the grant references of
//! a buffer consecutive so the backend sees a contiguous range. To-device mappings are granted
//! read-only.

use crate::arch::ArchDmaOps;
use crate::hv::Hypervisor;
use crate::iova::IovaAllocator;
use crate::ops::{DmaKind, DmaOps, Mapping, RamMap, Tracker};
use crate::swiotlb::hv_err;
use crate::types::{
    align_up, CoherentBuf, Direction, DmaAddr, DmaAttrs, DmaError, DomId, GrantRef, PhysAddr, XEN_PAGE_SHIFT,
    XEN_PAGE_SIZE,
};

/// Bit 63 marks a grant DMA address.
pub const GRANT_DMA_FLAG: u64 = 1 << 63;
/// Grant references below this are reserved (toolstack, xenstore, console).
pub const FIRST_FREE_GREF: u64 = 8;

/// The DMA address for a buffer at `offset` in the page granted as `gref`.
#[inline]
pub fn grant_dma_addr(gref: GrantRef, offset: u64) -> DmaAddr {
    GRANT_DMA_FLAG | (u64::from(gref) << XEN_PAGE_SHIFT) | (offset & (XEN_PAGE_SIZE - 1))
}

/// Split a grant DMA address into (gref, offset); `None` without the flag.
#[inline]
pub fn split_grant_dma_addr(dma: DmaAddr) -> Option<(GrantRef, u64)> {
    if dma & GRANT_DMA_FLAG == 0 {
        return None;
    }
    Some((((dma & !GRANT_DMA_FLAG) >> XEN_PAGE_SHIFT) as GrantRef, dma & (XEN_PAGE_SIZE - 1)))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
struct GrantMap {
    first: u64,
    pages: u64,
    pa: PhysAddr,
}

/// Grant DMA ops for one frontend device whose backend is `backend`.
pub struct GrantDma<A: ArchDmaOps, H: Hypervisor> {
    arch: A,
    hv: H,
    backend: DomId,
    grefs: IovaAllocator,
    coherent_dev: bool,
    mask: u64,
    maps: Tracker<GrantMap>,
    coherent: Tracker<GrantMap>,
    leaked_grefs: u64,
    _ram: RamMap,
}

impl<A: ArchDmaOps, H: Hypervisor> GrantDma<A, H> {
    /// Grant DMA to `backend`, using grant references `[FIRST_FREE_GREF, nr_grefs)`.
    pub fn new(arch: A, hv: H, backend: DomId, nr_grefs: u32, ram: RamMap) -> Self {
        let coherent_dev = arch.coherent();
        GrantDma {
            arch,
            hv,
            backend,
            grefs: IovaAllocator::new(FIRST_FREE_GREF, u64::from(nr_grefs).saturating_sub(FIRST_FREE_GREF), 0)
                .without_alignment(),
            coherent_dev,
            mask: u64::MAX,
            maps: Tracker::new(),
            coherent: Tracker::new(),
            leaked_grefs: 0,
            _ram: ram,
        }
    }

    /// The backend domain.
    pub fn backend(&self) -> DomId {
        self.backend
    }
    /// Grant references in use (mapped or leaked).
    pub fn grefs_in_use(&self) -> u64 {
        self.grefs.stats().live
    }
    /// Grant references that could not be revoked (backend still had them mapped).
    pub fn leaked_grefs(&self) -> u64 {
        self.leaked_grefs
    }
    /// Live streaming mappings.
    pub fn live_mappings(&self) -> usize {
        self.maps.len()
    }
    /// Errors reported.
    pub fn errors(&self) -> u64 {
        self.maps.errors() + self.coherent.errors()
    }

    fn grant(&mut self, pa: PhysAddr, size: usize, readonly: bool) -> Result<GrantMap, DmaError> {
        let first_pfn = pa >> XEN_PAGE_SHIFT;
        let pages = ((pa + size as u64 - 1) >> XEN_PAGE_SHIFT) - first_pfn + 1;
        let first = self.grefs.alloc(pages, u64::from(u32::MAX)).ok_or(DmaError::IovaExhausted { size })?;
        for i in 0..pages {
            if let Err(e) = self.hv.grant_access((first + i) as GrantRef, self.backend, first_pfn + i, readonly) {
                for j in 0..i {
                    let _ = self.hv.end_access((first + j) as GrantRef);
                }
                self.grefs.free(first, pages);
                return Err(hv_err("grant_access", e));
            }
        }
        Ok(GrantMap { first, pages, pa })
    }

    fn revoke(&mut self, g: GrantMap) -> Result<(), DmaError> {
        let mut busy = 0;
        for i in 0..g.pages {
            if self.hv.end_access((g.first + i) as GrantRef).is_err() {
                busy += 1;
            }
        }
        if busy > 0 {
            // The backend still maps some of these: never reuse the references.
            self.leaked_grefs += g.pages;
            crate::dma_warn!(
                "grant-dma: backend {} still maps {busy} of grants {}..{}; leaking them",
                self.backend,
                g.first,
                g.first + g.pages
            );
            return Err(DmaError::Grant { op: "end_foreign_access", status: crate::hv::gntst::GENERAL_ERROR });
        }
        self.grefs.free(g.first, g.pages);
        Ok(())
    }
}

impl<A: ArchDmaOps, H: Hypervisor> DmaOps for GrantDma<A, H> {
    fn kind(&self) -> DmaKind {
        DmaKind::GrantDma
    }

    fn alloc_coherent(&mut self, size: usize) -> Result<CoherentBuf, DmaError> {
        if size == 0 {
            return Err(self.coherent.fail("alloc_coherent", DmaError::ZeroSize));
        }
        let len = align_up(size as u64, XEN_PAGE_SIZE) as usize;
        let pa = self.arch.alloc_coherent(len).ok_or(DmaError::OutOfMemory { size: len })?;
        let g = match self.grant(pa, len, false) {
            Ok(g) => g,
            Err(e) => {
                self.arch.free_coherent(pa, len);
                return Err(self.coherent.fail("alloc_coherent", e));
            }
        };
        let dma = grant_dma_addr(g.first as GrantRef, 0);
        self.coherent.insert(dma, Mapping { size: len, dir: Direction::Bidirectional, extra: g });
        Ok(CoherentBuf { phys: pa, dma, size: len })
    }

    fn free_coherent(&mut self, buf: CoherentBuf) -> Result<(), DmaError> {
        let len = align_up(buf.size as u64, XEN_PAGE_SIZE) as usize;
        let m = self.coherent.remove(buf.dma, len, "free_coherent")?;
        self.revoke(m.extra)?;
        self.arch.free_coherent(m.extra.pa, len);
        Ok(())
    }

    fn map_page(&mut self, phys: PhysAddr, size: usize, dir: Direction, attrs: DmaAttrs) -> Result<DmaAddr, DmaError> {
        if size == 0 {
            return Err(self.maps.fail("map_page", DmaError::ZeroSize));
        }
        let g = match self.grant(phys, size, dir == Direction::ToDevice) {
            Ok(g) => g,
            Err(e) => return Err(self.maps.fail("map_page", e)),
        };
        if !self.coherent_dev && !attrs.contains(DmaAttrs::SKIP_CPU_SYNC) {
            self.arch.sync_for_device(phys, size, dir);
        }
        let dma = grant_dma_addr(g.first as GrantRef, phys);
        self.maps.insert(dma, Mapping { size, dir, extra: g });
        Ok(dma)
    }

    fn unmap_page(&mut self, dma: DmaAddr, size: usize, dir: Direction, attrs: DmaAttrs) -> Result<(), DmaError> {
        let m = self.maps.remove(dma, size, "unmap_page")?;
        if !self.coherent_dev && !attrs.contains(DmaAttrs::SKIP_CPU_SYNC) && dir.device_writes() {
            self.arch.sync_for_cpu(m.extra.pa, size, dir);
        }
        self.revoke(m.extra)
    }

    fn map_resource(&mut self, _phys: PhysAddr, _size: usize, _dir: Direction, _attrs: DmaAttrs) -> Result<DmaAddr, DmaError> {
        Err(self.maps.fail("map_resource", DmaError::Unsupported { what: "MMIO cannot be granted to a backend domain" }))
    }

    fn unmap_resource(&mut self, dma: DmaAddr, _size: usize, _dir: Direction, _attrs: DmaAttrs) -> Result<(), DmaError> {
        Err(self.maps.fail("unmap_resource", DmaError::NotMapped { dma }))
    }

    fn sync_for_cpu(&mut self, dma: DmaAddr, size: usize, dir: Direction) -> Result<(), DmaError> {
        let (start, m) = self.maps.find_containing(dma, size, "sync_for_cpu")?;
        if !self.coherent_dev {
            self.arch.sync_for_cpu(m.extra.pa + (dma - start), size, dir);
        }
        Ok(())
    }

    fn sync_for_device(&mut self, dma: DmaAddr, size: usize, dir: Direction) -> Result<(), DmaError> {
        let (start, m) = self.maps.find_containing(dma, size, "sync_for_device")?;
        if !self.coherent_dev {
            self.arch.sync_for_device(m.extra.pa + (dma - start), size, dir);
        }
        Ok(())
    }

    fn dma_mask(&self) -> u64 {
        self.mask
    }
    fn set_dma_mask(&mut self, mask: u64) -> Result<(), DmaError> {
        // Grant addresses use bit 63: the device must take 64-bit addresses.
        if mask != u64::MAX {
            return Err(DmaError::MaskExceeded { addr: GRANT_DMA_FLAG, size: 0, mask });
        }
        self.mask = mask;
        Ok(())
    }
    fn max_mapping_size(&self) -> usize {
        usize::MAX
    }
}
