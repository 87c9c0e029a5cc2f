//! Samsung Exynos SysMMU: the register driver (`driver`, `regs`: version detection, block
//! handshake, flushes, faults; no policy) and the shadow of a domain's p2m in the SysMMU's page-table
//! format (`shadow`: what is mapped and what to flush). The table format itself lives in
//! `platform::exynos5250::sysmmu_pt`, shared with the dom0 DMA layer.

pub mod driver;
pub mod regs;
pub mod set;
pub mod shadow;

// Property tests (proptest), not built for the loom model checks.
#[cfg(all(test, not(loom)))]
mod tests;

pub use driver::{
    cfg_for, classify, prefetch_granule, FaultAccess, FaultKind, Sysmmu, SysmmuError, SysmmuFault,
};
pub use regs::{RegLayout, SysmmuVersion};
pub use shadow::{IovaLayout, ShadowError, ShadowTable};
