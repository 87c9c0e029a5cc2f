//! The architecture contract: what the core asks of the architecture, and nothing else.
//!
//! [`Arch`] covers what only the architecture can do (start a physical CPU, cache maintenance,
//! stop the machine, the machine services a stage-2 change needs, a domain's interrupt
//! controller). `arch::aarch64` and `arch::arm32` implement it on hardware; [`fake`] implements
//! it on the host and records what it was asked, so the core's boot, lifecycle and PSCI
//! decisions run under `cargo test`. The contract lives in the core, so the core never names
//! `arch`: the architecture layers import the core, and only the binary's entry names them.
#[cfg(test)]
pub mod fake;

use crate::domain::lifecycle::MachineAction;
use crate::domain::registry::Machine;
use crate::domain::{DomId, Domain};
use crate::irq::vgic::domains::VgicConfig;
use alloc::string::String;
use alloc::vec::Vec;

/// A vCPU to start on a physical CPU of its own: EL1 (or the guest's kernel mode) entered at
/// `entry` with `context` in the first argument register, on stage 2 `vttbr`/`vtcr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuStart {
    /// The physical CPU's index and its MPIDR (from the host DT's /cpus).
    pub cpu: usize,
    pub mpidr: u64,
    pub domain: DomId,
    pub vcpu: u32,
    pub vttbr: u64,
    pub vtcr: u64,
    pub entry: u64,
    pub context: u64,
}

/// What the core asks of the architecture.
pub trait Arch {
    /// Power physical CPU `start.cpu` on (through the firmware) to run the vCPU it names.
    fn start_cpu(&self, start: &CpuStart) -> Result<(), String>;
    /// Make `[pa, pa + len)` visible to a guest that starts with its caches off (clean to the
    /// point of coherency, invalidate the instruction cache).
    fn clean_dcache_range(&self, pa: u64, len: u64);
    /// Power the machine off or restart it. On hardware this does not return.
    fn stop_machine(&self, action: MachineAction);
    /// Run `f` with the machine services a stage-2 change needs: physical memory, the frame
    /// pool, TLB maintenance (which reaches the IOMMUs sharing the tables).
    fn with_machine(&self, f: &mut dyn FnMut(&mut Machine<'_>));
    /// Give `dom` its emulated GICv3 as `cfg` says.
    fn attach_vgic(&self, dom: &mut Domain, cfg: &VgicConfig) -> Result<(), String>;
    /// What a domain's vpl011 calls to drive its interrupt line (`GUEST_VPL011_SPI`).
    fn vpl011_irq(&self) -> fn(DomId, bool);
    /// Raise `dom`'s event-channel upcall where its vCPU runs (nothing without a vGIC).
    fn deliver_event_upcall(&self, _dom: &Domain) {}
    /// Report IOMMU faults not reported yet (before a shutdown line, so they come in order).
    fn report_iommu_events(&self) {}
    /// The architecture's counters, printed when the hardware domain stops.
    fn shutdown_report(&self) -> Vec<String> {
        Vec::new()
    }
}
