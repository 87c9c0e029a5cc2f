//! Ownership policy: who drives each DMA master's IOMMU.
