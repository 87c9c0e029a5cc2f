//! Direct DMA: the device uses dom0's physical address. Right for a direct-mapped dom0 whose
//! device sees machine addresses, and for a device behind a hypervisor-owned IOMMU (its stage 2
//! is dom0's p2m, so guest-physical is what the device must use). Cache maintenance is
//! delegated to the device's arch ops.

use crate::arch::ArchDmaOps;
use crate::ops::{DmaKind, DmaOps, Mapping, RamMap, Tracker};
use crate::types::{
    align_up, dma_capable, CoherentBuf, Direction, DmaAddr, DmaAttrs, DmaError, PhysAddr, XEN_PAGE_SIZE,
};

/// Direct DMA ops over the device's arch ops `A`.
pub struct Direct<A: ArchDmaOps> {
    arch: A,
    mask: u64,
    ram: RamMap,
    coherent_dev: bool,
    maps: Tracker<()>,
    coherent: Tracker<()>,
    resources: Tracker<()>,
}

/// map_resource for the implementations that map MMIO 1:1 (Direct, swiotlb-xen): refuse RAM,
/// check the mask, record the mapping; the DMA address is `phys`.
pub(crate) fn map_resource_1to1(
    ram: &RamMap,
    tracker: &mut Tracker<()>,
    phys: PhysAddr,
    size: usize,
    dir: Direction,
    mask: u64,
) -> Result<DmaAddr, DmaError> {
    if size == 0 {
        return Err(tracker.fail("map_resource", DmaError::ZeroSize));
    }
    if ram.overlaps(phys, size) {
        return Err(tracker.fail("map_resource", DmaError::ResourceIsRam { phys, size }));
    }
    if !dma_capable(phys, size, mask) {
        return Err(tracker.fail("map_resource", DmaError::MaskExceeded { addr: phys, size, mask }));
    }
    tracker.insert(phys, Mapping { size, dir, extra: () });
    Ok(phys)
}

impl<A: ArchDmaOps> Direct<A> {
    /// Direct ops for a device with DMA mask `mask` in a dom0 whose RAM is `ram`.
    pub fn new(arch: A, mask: u64, ram: RamMap) -> Direct<A> {
        let coherent_dev = arch.coherent();
        Direct {
            arch,
            mask,
            ram,
            coherent_dev,
            maps: Tracker::new(),
            coherent: Tracker::new(),
            resources: Tracker::new(),
        }
    }
    /// The arch ops underneath.
    pub fn arch(&self) -> &A {
        &self.arch
    }
    /// Live streaming mappings.
    pub fn live_mappings(&self) -> usize {
        self.maps.len()
    }
    /// Errors reported (all kinds of mapping).
    pub fn errors(&self) -> u64 {
        self.maps.errors() + self.coherent.errors() + self.resources.errors()
    }
}

impl<A: ArchDmaOps> DmaOps for Direct<A> {
    fn kind(&self) -> DmaKind {
        DmaKind::Direct
    }

    fn alloc_coherent(&mut self, size: usize) -> Result<CoherentBuf, DmaError> {
        crate::direct::alloc_coherent_1to1(&self.arch, self.mask, &mut self.coherent, size)
    }

    fn free_coherent(&mut self, buf: CoherentBuf) -> Result<(), DmaError> {
        crate::direct::free_coherent_1to1(&self.arch, &mut self.coherent, buf)
    }

    #[inline]
    fn map_page(&mut self, phys: PhysAddr, size: usize, dir: Direction, attrs: DmaAttrs) -> Result<DmaAddr, DmaError> {
        if !dma_capable(phys, size, self.mask) {
            let e = if size == 0 { DmaError::ZeroSize } else { DmaError::MaskExceeded { addr: phys, size, mask: self.mask } };
            return Err(self.maps.fail("map_page", e));
        }
        if !self.coherent_dev && !attrs.contains(DmaAttrs::SKIP_CPU_SYNC) {
            self.arch.sync_for_device(phys, size, dir);
        }
        self.maps.insert(phys, Mapping { size, dir, extra: () });
        Ok(phys)
    }

    #[inline]
    fn unmap_page(&mut self, dma: DmaAddr, size: usize, dir: Direction, attrs: DmaAttrs) -> Result<(), DmaError> {
        self.maps.remove(dma, size, "unmap_page")?;
        if !self.coherent_dev && !attrs.contains(DmaAttrs::SKIP_CPU_SYNC) {
            self.arch.sync_for_cpu(dma, size, dir);
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
        self.maps.find_containing(dma, size, "sync_for_cpu")?;
        if !self.coherent_dev {
            self.arch.sync_for_cpu(dma, size, dir);
        }
        Ok(())
    }

    fn sync_for_device(&mut self, dma: DmaAddr, size: usize, dir: Direction) -> Result<(), DmaError> {
        self.maps.find_containing(dma, size, "sync_for_device")?;
        if !self.coherent_dev {
            self.arch.sync_for_device(dma, size, dir);
        }
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

/// Coherent memory whose DMA address is its physical address (direct-mapped dom0): from the
/// device's arch ops, refused if the device's mask does not reach it, tracked for `free`.
/// Shared by [`Direct`] and [`crate::XenSwiotlb`] (which never bounces coherent memory).
pub(crate) fn alloc_coherent_1to1<A: ArchDmaOps>(arch: &A, mask: u64, coherent: &mut Tracker<()>, size: usize) -> Result<CoherentBuf, DmaError> {
    if size == 0 {
        return Err(coherent.fail("alloc_coherent", DmaError::ZeroSize));
    }
    let len = align_up(size as u64, XEN_PAGE_SIZE) as usize;
    let pa = arch.alloc_coherent(len).ok_or(DmaError::OutOfMemory { size: len })?;
    if !dma_capable(pa, len, mask) {
        arch.free_coherent(pa, len);
        return Err(coherent.fail("alloc_coherent", DmaError::MaskExceeded { addr: pa, size: len, mask }));
    }
    coherent.insert(pa, Mapping { size: len, dir: Direction::Bidirectional, extra: () });
    Ok(CoherentBuf { phys: pa, dma: pa, size: len })
}

/// Free what [`alloc_coherent_1to1`] gave (size and address must match the allocation).
pub(crate) fn free_coherent_1to1<A: ArchDmaOps>(arch: &A, coherent: &mut Tracker<()>, buf: CoherentBuf) -> Result<(), DmaError> {
    let len = align_up(buf.size as u64, XEN_PAGE_SIZE) as usize;
    coherent.remove(buf.dma, len, "free_coherent")?;
    arch.free_coherent(buf.phys, len);
    Ok(())
}
