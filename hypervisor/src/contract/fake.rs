//! The architecture contract on the host: a machine that records what the core asked of it
//! (CPUs started, caches cleaned, the machine stopped, upcalls raised) and gives it real frame
//! pools, test physical memory and vGICs, so boot, lifecycle and PSCI decisions are tested
//! through the same calls the hardware layers answer.

extern crate std;

use super::{Arch, CpuStart, SysmmuStart};
use crate::dt::Region;
use crate::domain::lifecycle::MachineAction;
use crate::domain::registry::Machine;
use crate::domain::{DomId, Domain};
use crate::irq::vgic::domains::{VgicConfig, VgicTable};
use crate::mm::testmem::TestMem;
use crate::mm::RegionAllocator;
use alloc::string::String;
use alloc::vec::Vec;
use std::sync::Mutex;

/// What the fake was asked to do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    StartCpu(CpuStart),
    Clean { pa: u64, len: u64 },
    StopMachine(MachineAction),
    Upcall(DomId),
    DetachVgic(DomId),
    Kick(usize),
    IommuEvents,
    TakeSmmu { path: String, sid_bits: Option<u8> },
    ReleaseSmmus,
    AttachStream { path: String, sid: u32, vmid: u16 },
    AttachVsmmu { dom: DomId, path: String, sids: Vec<u32>, event: Option<u32>, gerror: Option<u32> },
    StartSysmmus { combiner: u64, sysmmus: Vec<SysmmuStart>, ram: Region, readonly: Vec<Region> },
}

/// A host machine: `phys` is its memory, `frames` the pool stage-2 tables come from.
pub struct FakeArch {
    pub phys: TestMem,
    pub frames: Mutex<RegionAllocator>,
    pub vgics: VgicTable,
    pub calls: Mutex<Vec<Call>>,
    /// CPUs whose firmware CPU_ON fails.
    pub broken_cpus: Vec<usize>,
    /// SMMUs (by register base) whose probe finds no usable stage 2.
    pub smmus_without_stage2: Vec<u64>,
    /// SMMUs (by path) that cannot be taken over.
    pub smmus_refusing: Vec<String>,
    /// PCI functions present: (ECAM base, devfn, IDs).
    pub pci_functions: Vec<(u64, u32, u32)>,
    /// The ITS the hypervisor can take (path, doorbell page); none: it cannot.
    pub its: Option<(String, u64)>,
    /// Exynos SysMMUs (by register base) whose VERSION reads 0 (power domain off).
    pub sysmmus_off: Vec<u64>,
}

impl FakeArch {
    /// A machine with `len` bytes of memory at `base`, all of it in the frame pool.
    pub fn new(base: u64, len: usize) -> Self {
        let phys = TestMem::new(base, len);
        let mut frames = RegionAllocator::new();
        frames.add(base, len as u64).expect("a fresh pool takes any range");
        Self { phys, frames: Mutex::new(frames), vgics: VgicTable::new(), calls: Mutex::new(Vec::new()),
            broken_cpus: Vec::new(),
            smmus_without_stage2: Vec::new(),
            smmus_refusing: Vec::new(),
            pci_functions: Vec::new(),
            its: None,
            sysmmus_off: Vec::new(),
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn record(&self, c: Call) {
        self.calls.lock().unwrap().push(c);
    }

    /// The CPUs started, in order.
    pub fn started(&self) -> Vec<CpuStart> {
        self.calls().into_iter().filter_map(|c| if let Call::StartCpu(s) = c { Some(s) } else { None }).collect()
    }

    /// The machine stops asked for, in order.
    pub fn stops(&self) -> Vec<MachineAction> {
        self.calls().into_iter().filter_map(|c| if let Call::StopMachine(a) = c { Some(a) } else { None }).collect()
    }
}

impl Arch for FakeArch {
    fn start_cpu(&self, start: &CpuStart) -> Result<(), String> {
        if self.broken_cpus.contains(&start.cpu) {
            return Err(alloc::format!("firmware CPU_ON of CPU {:#x} failed (Some(18446744073709551610))", start.mpidr));
        }
        self.record(Call::StartCpu(*start));
        Ok(())
    }
    fn clean_dcache_range(&self, pa: u64, len: u64) {
        self.record(Call::Clean { pa, len });
    }
    fn stop_machine(&self, action: MachineAction) {
        self.record(Call::StopMachine(action));
    }
    fn with_machine(&self, f: &mut dyn FnMut(&mut Machine<'_>)) {
        let mut frames = self.frames.lock().unwrap();
        let mut tlb = self.phys.tlb();
        f(&mut Machine { mem: &self.phys, frames: &mut *frames, tlb: &mut tlb });
    }
    fn attach_vgic(&self, dom: &mut Domain, cfg: &VgicConfig) -> Result<(), String> {
        crate::irq::vgic::domains::attach(&self.vgics, dom, cfg).map(|_| ())
    }
    fn detach_vgic(&self, dom: DomId) {
        self.vgics.remove(dom);
        self.record(Call::DetachVgic(dom));
    }
    fn kick_cpu(&self, cpu: usize) {
        self.record(Call::Kick(cpu));
    }
    fn vpl011_irq(&self) -> fn(DomId, bool) {
        |_, _| {}
    }
    fn deliver_event_upcall(&self, dom: &Domain) {
        self.record(Call::Upcall(dom.id));
    }
    fn report_iommu_events(&self) {
        self.record(Call::IommuEvents);
    }
    fn probe_smmu(&self, base: u64) -> Result<String, String> {
        if self.smmus_without_stage2.contains(&base) {
            return Err("no stage 2 (IDR0.S2P = 0)".into());
        }
        Ok("SMMUv3 with stage 2".into())
    }
    fn take_smmu(&self, path: &str, _base: u64, sid_bits: Option<u8>) -> Result<(), String> {
        if self.smmus_refusing.iter().any(|p| p == path) {
            return Err("the SMMU did not acknowledge CR0".into());
        }
        self.record(Call::TakeSmmu { path: path.into(), sid_bits });
        Ok(())
    }
    fn release_smmus(&self) {
        self.record(Call::ReleaseSmmus);
    }
    fn probe_sysmmu(&self, base: u64) -> Result<String, String> {
        if self.sysmmus_off.contains(&base) {
            return Err("unknown SysMMU VERSION 0x00000000 (0.0); device left blocked".into());
        }
        Ok("Exynos SysMMU 3.3".into())
    }
    fn start_sysmmus(&self, combiner: u64, sysmmus: &[SysmmuStart], ram: Region, readonly: &[Region]) -> Vec<Result<String, String>> {
        self.record(Call::StartSysmmus { combiner, sysmmus: sysmmus.to_vec(), ram, readonly: readonly.to_vec() });
        sysmmus.iter().map(|s| if self.sysmmus_off.contains(&s.base) { Err("unknown SysMMU VERSION 0x00000000 (0.0); device left blocked".into()) } else { Ok("Exynos SysMMU 3.3".into()) }).collect()
    }
    fn pci_bus0_functions(&self, ecam: u64) -> Vec<(u32, u32)> {
        self.pci_functions.iter().filter(|f| f.0 == ecam).map(|f| (f.1, f.2)).collect()
    }
    fn attach_stream(&self, path: &str, sid: u32, vmid: u16, _vttbr: u64, _vtcr: u64) -> Result<(), String> {
        self.record(Call::AttachStream { path: path.into(), sid, vmid });
        Ok(())
    }
    fn attach_vsmmu(&self, dom: &mut Domain, path: &str, _base: u64, sids: Vec<u32>, _p2m: (u16, u64, u64), _ipa_bits: u8, event: Option<u32>, gerror: Option<u32>) -> Result<(), String> {
        self.record(Call::AttachVsmmu { dom: dom.id, path: path.into(), sids, event, gerror });
        Ok(())
    }
    fn take_its(&self, _dt: &crate::dt::HostDt, _info: &crate::dt::boot_info::BootInfo, _vcpus: usize) -> Result<(String, u64), String> {
        self.its.clone().ok_or_else(|| "GITS_TYPER reads as zero".into())
    }
    fn shutdown_report(&self) -> Vec<String> {
        alloc::vec!["traps from guests: 0".into()]
    }
}
