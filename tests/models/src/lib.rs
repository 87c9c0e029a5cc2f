//! Models of the Exynos5250 hardware QEMU lacks, for host tests: simulated non-coherent physical
//! memory ([`SimMem`]), a register-level SysMMU ([`SysmmuModel`]), and the board blocks the
//! platform code drives (UART, MCT, PMU, SYSRAM with a secondary core in its boot ROM, the
//! interrupt combiner). The drivers run against them through the same `Mmio`/`PhysMem` traits they
//! use on hardware.

pub mod mct;
pub mod mem;
pub mod soc;
pub mod sysmmu;
pub mod uart;

pub use mem::SimMem;
pub use sysmmu::{DmaError, ModelConfig, ModelFault, ModelStats, SysmmuModel};
