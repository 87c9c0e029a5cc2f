//! xenith's hypervisor, as a library: everything that is pure logic (page tables, DT handling,
//! hypercall semantics, IOMMU ownership and table formats) builds and is unit-tested on the host;
//! the architecture layers (`arch::aarch64`, `arch::arm32`) only build for the bare-metal
//! target; the contract they implement (`contract::Arch`) and its host implementation
//! (`contract::fake`) are part of the core and build everywhere.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod arch;
pub mod boot;
pub mod console;
pub mod contract;
pub mod cpufeature;
pub mod domain;
pub mod dt;
pub mod hypercall;
pub mod iommu;
pub mod irq;
pub mod mm;
pub mod sched;
pub mod setway;
pub mod spectre;
pub mod sync;
#[cfg(all(test, loom))]
mod loom_models;
pub mod trap_stats;
