//! One type for "whichever implementation [`crate::select`] chose", so an embedder (the test
//! guest, a driver core) can hold a device's ops without boxing.

use crate::arch::ArchDmaOps;
use crate::direct::Direct;
use crate::grant::GrantDma;
use crate::hv::Hypervisor;
use crate::iommu::{IommuDma, IommuDomain};
use crate::ops::{DmaKind, DmaOps, Shared};
use crate::swiotlb::XenSwiotlb;
use crate::types::{CoherentBuf, Direction, DmaAddr, DmaAttrs, DmaError, PhysAddr, SgEntry};

/// The ops of one device. IOMMU domains are [`Shared`] because a group's devices share one.
// Variants differ in size (each tracker keeps a small ring of recent unmaps); one per device, not boxed.
#[allow(clippy::large_enum_variant)]
pub enum AnyDmaOps<A: ArchDmaOps, H: Hypervisor, D: IommuDomain> {
    Direct(Direct<A>),
    XenSwiotlb(XenSwiotlb<A, H>),
    IommuDma(Shared<IommuDma<A, D>>),
    GrantDma(GrantDma<A, H>),
}

macro_rules! each {
    ($self:ident, $o:ident => $e:expr) => {
        match $self {
            AnyDmaOps::Direct($o) => $e,
            AnyDmaOps::XenSwiotlb($o) => $e,
            AnyDmaOps::IommuDma($o) => $e,
            AnyDmaOps::GrantDma($o) => $e,
        }
    };
}

impl<A: ArchDmaOps, H: Hypervisor, D: IommuDomain> DmaOps for AnyDmaOps<A, H, D> {
    fn kind(&self) -> DmaKind {
        each!(self, o => o.kind())
    }
    fn alloc_coherent(&mut self, size: usize) -> Result<CoherentBuf, DmaError> {
        each!(self, o => o.alloc_coherent(size))
    }
    fn free_coherent(&mut self, buf: CoherentBuf) -> Result<(), DmaError> {
        each!(self, o => o.free_coherent(buf))
    }
    fn map_page(&mut self, p: PhysAddr, s: usize, d: Direction, a: DmaAttrs) -> Result<DmaAddr, DmaError> {
        each!(self, o => o.map_page(p, s, d, a))
    }
    fn unmap_page(&mut self, x: DmaAddr, s: usize, d: Direction, a: DmaAttrs) -> Result<(), DmaError> {
        each!(self, o => o.unmap_page(x, s, d, a))
    }
    fn map_sg(&mut self, sg: &mut [SgEntry], d: Direction, a: DmaAttrs) -> Result<usize, DmaError> {
        each!(self, o => o.map_sg(sg, d, a))
    }
    fn unmap_sg(&mut self, sg: &[SgEntry], d: Direction, a: DmaAttrs) -> Result<(), DmaError> {
        each!(self, o => o.unmap_sg(sg, d, a))
    }
    fn map_resource(&mut self, p: PhysAddr, s: usize, d: Direction, a: DmaAttrs) -> Result<DmaAddr, DmaError> {
        each!(self, o => o.map_resource(p, s, d, a))
    }
    fn unmap_resource(&mut self, x: DmaAddr, s: usize, d: Direction, a: DmaAttrs) -> Result<(), DmaError> {
        each!(self, o => o.unmap_resource(x, s, d, a))
    }
    fn sync_for_cpu(&mut self, x: DmaAddr, s: usize, d: Direction) -> Result<(), DmaError> {
        each!(self, o => o.sync_for_cpu(x, s, d))
    }
    fn sync_for_device(&mut self, x: DmaAddr, s: usize, d: Direction) -> Result<(), DmaError> {
        each!(self, o => o.sync_for_device(x, s, d))
    }
    fn dma_mask(&self) -> u64 {
        each!(self, o => o.dma_mask())
    }
    fn set_dma_mask(&mut self, m: u64) -> Result<(), DmaError> {
        each!(self, o => o.set_dma_mask(m))
    }
    fn max_mapping_size(&self) -> usize {
        each!(self, o => o.max_mapping_size())
    }
}
