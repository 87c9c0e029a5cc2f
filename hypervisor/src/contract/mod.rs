//! The architecture contract: what the core asks of the architecture, and nothing else.
//!
//! [`Arch`] covers what only the architecture can do (start a physical CPU, cache maintenance,
//! stop the machine, the machine services a stage-2 change needs, a domain's interrupt
//! controller, and the hardware questions boot asks: probe or take over an SMMU or the ITS,
//! the PCI functions on a bridge, attaching a stream). `arch::aarch64` and `arch::arm32` implement it on hardware; [`fake`] implements
//! it on the host and records what it was asked, so the core's boot, lifecycle and PSCI
//! decisions run under `cargo test`. The contract lives in the core, so the core never names
//! `arch`: the architecture layers import the core, and only the binary's entry names them.
#[cfg(test)]
pub mod fake;

use crate::domain::lifecycle::MachineAction;
use crate::domain::registry::Machine;
use crate::domain::{DomId, Domain};
use crate::dt::boot_info::BootInfo;
use crate::dt::{HostDt, Region};
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

/// An Exynos SysMMU for [`Arch::start_sysmmus`]: its DT path, registers, fault input on the
/// interrupt combiner (group, bit) and power domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysmmuStart {
    pub path: String,
    pub base: u64,
    pub irq: Option<(u32, u32)>,
    /// The register base of its power domain (its `power-domains`), if it is in one.
    pub power_domain: Option<u64>,
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
    /// Take domain `dom`'s vGIC out of the machine's table (the domain is gone; its id may be
    /// a new domain's next).
    fn detach_vgic(&self, _dom: DomId) {}
    /// Make CPU `cpu` reach a scheduling point soon (it runs a vCPU that must stop).
    fn kick_cpu(&self, _cpu: usize) {}
    /// What a domain's vpl011 calls to drive its interrupt line (`GUEST_VPL011_SPI`).
    fn vpl011_irq(&self) -> fn(DomId, bool);
    /// Raise `dom`'s event-channel upcall where its vCPU runs (nothing without a vGIC).
    fn deliver_event_upcall(&self, _dom: &Domain) {}
    /// Report IOMMU faults not reported yet (before a shutdown line, so they come in order).
    fn report_iommu_events(&self) {}
    /// Read the SMMUv3 whose registers are at `base` without changing it: its features in a
    /// line, or why the hypervisor cannot drive it (no stage 2, say).
    fn probe_smmu(&self, _base: u64) -> Result<String, String> {
        Err("no SMMUv3 driver on this architecture".into())
    }
    /// Take the SMMUv3 `path` (registers at `base`) over for StreamIDs of `sid_bits` bits:
    /// every stream blocked until it is attached.
    fn take_smmu(&self, _path: &str, _base: u64, _sid_bits: Option<u8>) -> Result<(), String> {
        Err("no SMMUv3 driver on this architecture".into())
    }
    /// Disable and forget every SMMU taken over (one could not be: dom0 gets them all).
    fn release_smmus(&self) {}
    /// Read the Exynos SysMMU whose registers are at `base` without changing it: its version, or
    /// why the hypervisor cannot drive it (an unknown version, its power domain off).
    fn probe_sysmmu(&self, _base: u64) -> Result<String, String> {
        Err("no Exynos SysMMU driver on this architecture".into())
    }
    /// Bring the Exynos SysMMUs `sysmmus` (what, register base) up over dom0's memory: one shadow
    /// table mapping `ram` read-write and `readonly` read-only, IOVA = PA (dom0 is direct-mapped),
    /// each SysMMU's fault input enabled on the combiner at `combiner`. Per SysMMU, its version
    /// once translating, or why it was left blocked.
    fn start_sysmmus(&self, _combiner: u64, sysmmus: &[SysmmuStart], _ram: Region, _readonly: &[Region]) -> Vec<Result<String, String>> {
        sysmmus.iter().map(|_| Err("no Exynos SysMMU driver on this architecture".into())).collect()
    }
    /// The functions present on bus 0 of the PCI host bridge whose ECAM is at `ecam`: (devfn,
    /// vendor and device ID).
    fn pci_bus0_functions(&self, _ecam: u64) -> Vec<(u32, u32)> {
        Vec::new()
    }
    /// Attach stream `sid` of the SMMU `path` taken over to the stage 2 `vttbr`/`vtcr` of VMID
    /// `vmid`.
    fn attach_stream(&self, _path: &str, _sid: u32, _vmid: u16, _vttbr: u64, _vtcr: u64) -> Result<(), String> {
        Err("no SMMUv3 driver on this architecture".into())
    }
    /// Give `dom` an emulated SMMUv3 at `base` (the physical SMMU `path`'s address) for
    /// `sids`, nested over its stage 2 (`p2m`: VMID, VTTBR, VTCR; `ipa_bits`), injecting its
    /// `event` and `gerror` SPIs.
    #[allow(clippy::too_many_arguments)]
    fn attach_vsmmu(&self, _dom: &mut Domain, _path: &str, _base: u64, _sids: Vec<u32>, _p2m: (u16, u64, u64), _ipa_bits: u8, _event: Option<u32>, _gerror: Option<u32>) -> Result<(), String> {
        Err("no SMMUv3 driver on this architecture".into())
    }
    /// Take the GICv3 ITS for the hypervisor, to give dom0 (`vcpus` vCPUs) an emulated one:
    /// the ITS node's path and its doorbell page.
    fn take_its(&self, _dt: &HostDt, _info: &BootInfo, _vcpus: usize) -> Result<(String, u64), String> {
        Err("no GICv3 ITS driver on this architecture".into())
    }
    /// The architecture's counters, printed when the hardware domain stops.
    fn shutdown_report(&self) -> Vec<String> {
        Vec::new()
    }
}
