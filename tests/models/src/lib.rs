//! A model of the Exynos SysMMU for host tests: simulated non-coherent physical memory
//! ([`SimMem`]) and a register-level SysMMU ([`SysmmuModel`]) the driver runs against through the
//! same `Mmio`/`PhysMem` traits it uses on hardware. It stands in for hardware QEMU lacks.

pub mod mem;
pub mod sysmmu;

pub use mem::SimMem;
pub use sysmmu::{DmaError, ModelConfig, ModelFault, ModelStats, SysmmuModel};
