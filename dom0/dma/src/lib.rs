//! dom0's DMA layer: for every device, the right way to turn a CPU buffer into an address the
//! device can use — Direct, XenSwiotlb (bounce / machine addresses), IommuDma (an IOMMU dom0
//! drives) or GrantDma (grants to a backend domain) — chosen per device by [`select`] from what
//! the hypervisor and dom0's device tree say, never by a global switch.
//!
//! `no_std` + `alloc`, no threads, no global allocator assumptions beyond `alloc`: the same code
//! runs in the bare-metal test guest and in host tests against [`sim`].
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
extern crate alloc;

pub mod addr_table;
pub mod any;
pub mod arch;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod baremetal;
pub mod direct;
pub mod grant;
pub mod hv;
pub mod iommu;
pub mod iova;
pub mod log;
pub mod ops;
pub mod select;
pub mod sim;
pub mod swiotlb;
pub mod types;
#[cfg(all(feature = "xen", any(target_arch = "aarch64", target_arch = "arm")))]
pub mod xen;

pub use any::AnyDmaOps;
pub use arch::{ArchDmaOps, PhysMem};
pub use direct::Direct;
pub use grant::GrantDma;
pub use hv::{Hypervisor, XenFeatures};
pub use iommu::{IommuDma, IommuDomain};
pub use iova::IovaAllocator;
pub use select::{select, select_group, DeviceFacts, DmaEnv, DmaGroup, Override};
pub use swiotlb::{ForeignP2m, XenSwiotlb};
pub use ops::{DmaKind, DmaOps, RamMap, Shared};
pub use types::*;
