//! IOMMUs: the ownership policy (pure logic) and the drivers for Arm SMMUv3 and the Exynos SysMMU.
pub mod exynos_sysmmu;
pub mod policy;
pub mod smmuv3;
