//! AArch64 at EL2: entry, exception vectors, the hypervisor's own stage-1 MMU, system
//! registers, guest entry/exit, guest-memory access and TLB maintenance. Everything in here
//! is thin: decisions are made by the arch-neutral modules it calls.

/// The host's feature ID registers, the guest's view of them, and the feature traps.
pub mod cpufeat;
pub mod entry;
/// Physical GICv3 and the ICH_* virtual interface (vGIC glue).
pub mod gic;
/// Physical GICv2 and the GICH virtual interface (vGIC glue for GICv2 hosts).
pub mod gic_v2;
pub mod guest;
pub mod heap;
/// Exceptions injected into a guest.
pub mod inject;
/// The Xen hypercall path (HVC #0xEA1): short register save, straight to the dispatcher.
pub mod hvc;
pub mod iommu;
/// Physical interrupts taken from guests and where they go; attaching a domain's vGIC.
pub mod irq;
pub mod its;
/// Physical memory through the identity map, stage-2 TLB and cache maintenance.
pub mod mem;
pub mod mmu;
/// Which domain and vCPU this physical CPU runs (TPIDR_EL2).
pub mod percpu;
pub mod psci;
pub mod regs;
/// Guest cache maintenance by set/way (HCR_EL2.TSW) and the TVM register writes it tracks.
pub mod setway;
/// SMP dom0: vCPU n pinned to physical CPU n, PSCI CPU_ON through the firmware.
pub mod smp;
/// Trap counters and hypercall times.
pub mod stats;
/// Stage-2 TLB maintenance (the hardware `mm::TlbOps`).
pub mod tlb;
/// Spectre v2 / BHB / SSBD: firmware and CPU probed at boot, entry flags, guests' calls.
pub mod spectre;
pub mod start;
pub mod trap;
/// Guest virtual timer injection and the trapped EL1 physical timer.
pub mod vtimer;
/// vCPUs sharing CPUs (`sched=credit`): context switch, idle, WFI/WFE traps, the tick.
pub mod vcpu_switch;
/// The vGIC's per-CPU protocol (shared with ARMv7).
pub mod vgic_glue;

use mem::DirectMem;

/// A panic is a hypervisor bug (guest input never reaches one): say where, then stop the machine.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::log!("HYPERVISOR BUG: panic: {info}");
    psci::system_off()
}

/// The architecture contract ([`crate::contract::Arch`]) on this CPU.
pub struct Hw;

impl crate::contract::Arch for Hw {
    fn start_cpu(&self, s: &crate::contract::CpuStart) -> Result<(), alloc::string::String> {
        if vcpu_switch::enabled() {
            // The scheduler placed it; its CPU is powered on if it is off.
            return vcpu_switch::start_vcpu(s);
        }
        smp::start_cpu(s.cpu, s.mpidr, s.domain, s.vcpu, s.vttbr, s.vtcr, s.entry, s.context)
    }
    fn clean_dcache_range(&self, pa: u64, len: u64) {
        mem::clean_dcache_range(pa, len)
    }
    fn stop_machine(&self, action: crate::domain::lifecycle::MachineAction) {
        match action {
            crate::domain::lifecycle::MachineAction::PowerOff => psci::system_off(),
            crate::domain::lifecycle::MachineAction::Restart { delay_ms } => {
                regs::delay_ms(delay_ms);
                psci::system_reset()
            }
        }
    }
    fn with_machine(&self, f: &mut dyn FnMut(&mut crate::domain::registry::Machine<'_>)) {
        let mut frames = crate::domain::registry::PoolFrames;
        let mut tlb = iommu::SystemTlb::default();
        f(&mut crate::domain::registry::Machine { mem: &DirectMem, frames: &mut frames, tlb: &mut tlb });
    }
    fn attach_vgic(&self, dom: &mut crate::domain::Domain, cfg: &crate::irq::vgic::domains::VgicConfig) -> Result<(), alloc::string::String> {
        irq::attach_vgic(dom, cfg)
    }
    fn detach_vgic(&self, dom: crate::domain::DomId) {
        crate::irq::vgic::domains::VGICS.remove(dom);
    }
    fn kick_cpu(&self, cpu: usize) {
        vcpu_switch::kick(cpu);
    }
    fn vpl011_irq(&self) -> fn(crate::domain::DomId, bool) {
        |d, high| vgic_glue::set_irq_level(d, 0, crate::domain::vuart::GUEST_VPL011_SPI, high)
    }
    fn deliver_event_upcall(&self, dom: &crate::domain::Domain) {
        vgic_glue::deliver_event_upcall(dom)
    }
    fn report_iommu_events(&self) {
        iommu::report_events()
    }
    fn probe_smmu(&self, base: u64) -> Result<alloc::string::String, alloc::string::String> {
        iommu::probe(base).map(|f| alloc::format!("{f}")).map_err(|e| alloc::format!("{e}"))
    }
    fn take_smmu(&self, path: &str, base: u64, sid_bits: Option<u8>) -> Result<(), alloc::string::String> {
        iommu::take(path, base, sid_bits).map_err(|e| alloc::format!("{e}"))
    }
    fn release_smmus(&self) {
        let mut smmus = iommu::SMMUS.lock();
        for inst in smmus.iter_mut() {
            let _ = inst.smmu.disable();
        }
        smmus.clear();
    }
    fn pci_bus0_functions(&self, ecam: u64) -> alloc::vec::Vec<(u32, u32)> {
        (0..256u32)
            .filter_map(|devfn| {
                // SAFETY: bus 0's config space in the bridge's ECAM window (Device memory); a
                // read of an absent function returns all ones.
                let id = unsafe { core::ptr::read_volatile((ecam + (u64::from(devfn) << 12)) as *const u32) };
                (id != 0xffff_ffff).then_some((devfn, id))
            })
            .collect()
    }
    fn attach_stream(&self, path: &str, sid: u32, vmid: u16, vttbr: u64, vtcr: u64) -> Result<(), alloc::string::String> {
        iommu::attach(path, sid, vmid, vttbr, vtcr).map_err(|e| alloc::format!("{e}"))
    }
    fn attach_vsmmu(&self, dom: &mut crate::domain::Domain, path: &str, base: u64, sids: alloc::vec::Vec<u32>, p2m: (u16, u64, u64), ipa_bits: u8, event: Option<u32>, gerror: Option<u32>) -> Result<(), alloc::string::String> {
        iommu::attach_vsmmu(dom, path, base, sids, p2m, ipa_bits, event, gerror)
    }
    fn take_its(&self, dt: &crate::dt::HostDt, info: &crate::dt::boot_info::BootInfo, vcpus: usize) -> Result<(alloc::string::String, u64), alloc::string::String> {
        its::init(dt, info, vcpus).map(|n| (n.path.clone(), its::doorbell_page(&n)))
    }
    fn shutdown_report(&self) -> alloc::vec::Vec<alloc::string::String> {
        use core::sync::atomic::Ordering;
        let counts = stats::TRAPS.snapshot();
        let mut out = alloc::vec![
            alloc::format!("traps from guests: {}", counts.iter().flatten().map(|&n| u64::from(n)).sum::<u64>()),
            alloc::format!("stage-2 faults resolved by a retry (a p2m change in progress): {}", stats::S2_FAULTS_RESOLVED.load(Ordering::Relaxed)),
        ];
        out.extend(crate::trap_stats::breakdown(&counts, percpu::vcpus(), 100));
        out.extend(vcpu_switch::report());
        if stats::HCALL_STATS.load(Ordering::Relaxed) {
            out.extend(stats::HCALL_TIME.lines(100));
        }
        out
    }
}
