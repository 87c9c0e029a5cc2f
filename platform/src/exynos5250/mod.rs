//! Samsung Exynos5250 (Chromebook Snow): board description and the SysMMU IO page-table format.

pub mod sysmmu_pt;
