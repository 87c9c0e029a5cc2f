//! ARMv7-A in HYP mode (Cortex-A15: virtualization and LPAE extensions): entry, HYP vectors,
//! the hypervisor's own LPAE map, CP15 registers, guest entry/exit, guest-memory access and
//! TLB maintenance. As on AArch64, everything in here is thin: decisions are made by the
//! arch-neutral modules it calls. Physical addresses are u64 (LPAE: 40 bits); the hypervisor
//! reaches the ones below 4 GiB through its identity map (`mmu::va_of`).

/// The Exynos5250's board code on the hardware (console, MCT, SYSRAM release, PMU reset, SysMMUs).
pub mod board;
pub mod entry;
pub mod gic;
/// The GICv2 driver and dom0's vGICv2 attachment are the same as on AArch64 (GICv2 is all MMIO).
#[path = "../aarch64/gic_v2.rs"]
pub mod gic_v2;
pub mod guest;
/// The heap is the same buddy allocator over a static region as on AArch64.
#[path = "../aarch64/heap.rs"]
pub mod heap;
/// Physical interrupts taken from guests and where they go; attaching dom0's vGIC.
pub mod irq;
/// Physical memory through the identity map, stage-2 TLB and cache maintenance.
pub mod mem;
pub mod mmu;
pub mod monitor;
/// Which domain and vCPU this physical CPU runs (HTPIDR).
pub mod percpu;
pub mod psci;
pub mod regs;
/// Data-cache maintenance by set/way, and the control-register writes that track the caches.
pub mod setway;
pub mod smp;
pub mod start;
/// Trap counters.
pub mod stats;
/// Stage-2 TLB maintenance (the hardware `mm::TlbOps`) and the SysMMU shadow's hook.
pub mod tlb;
pub mod trap;
/// The vGIC's per-CPU protocol, as on AArch64.
#[path = "../aarch64/vgic_glue.rs"]
pub mod vgic_glue;
/// Guest timers: the virtual timer is the guest's, the PL1 physical timer is trapped.
pub mod vtimer;

use mem::DirectMem;
use tlb::HwTlb;

/// A panic is a hypervisor bug (guest input never reaches one): say where, then stop the machine.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    start::console_for_panic();
    crate::log!("HYPERVISOR BUG: panic: {info}");
    psci::system_off()
}

/// The architecture contract ([`crate::contract::Arch`]) in HYP mode: one CPU, no interrupt
/// controller driver yet (no vGIC to attach, no secondary CPU to start).
pub struct Hw;

impl crate::contract::Arch for Hw {
    fn start_cpu(&self, s: &crate::contract::CpuStart) -> Result<(), alloc::string::String> {
        // A 32-bit guest's entry point, context and VTCR fit in 32 bits.
        smp::start_cpu(s.cpu, s.mpidr as u32, s.domain, s.vcpu, s.vttbr, s.vtcr as u32, s.entry as u32, s.context as u32)
    }
    fn with_machine(&self, f: &mut dyn FnMut(&mut crate::domain::registry::Machine<'_>)) {
        let mut frames = crate::domain::registry::PoolFrames;
        let mut tlb = HwTlb;
        f(&mut crate::domain::registry::Machine { mem: &DirectMem, frames: &mut frames, tlb: &mut tlb });
    }
    fn attach_vgic(&self, dom: &mut crate::domain::Domain, _cfg: &crate::irq::vgic::domains::VgicConfig) -> Result<(), alloc::string::String> {
        Err(alloc::format!("d{}: only dom0 gets a vGIC in HYP mode so far", dom.id))
    }
    fn vpl011_irq(&self) -> fn(crate::domain::DomId, bool) {
        |d, high| vgic_glue::set_irq_level(d, 0, crate::domain::vuart::GUEST_VPL011_SPI, high)
    }
    fn deliver_event_upcall(&self, dom: &crate::domain::Domain) {
        vgic_glue::deliver_event_upcall(dom)
    }
    fn clean_dcache_range(&self, pa: u64, len: u64) {
        mem::clean_dcache_range(pa, len)
    }
    fn stop_machine(&self, action: crate::domain::lifecycle::MachineAction) {
        if let crate::domain::lifecycle::MachineAction::Restart { delay_ms } = action {
            regs::delay_ms(delay_ms);
            if let Some(b) = board::get() {
                crate::log!("restarting through the PMU (SWRESET)");
                b.reset();
                regs::halt()
            }
            psci::system_reset()
        }
        psci::system_off()
    }
    fn probe_sysmmu(&self, base: u64) -> Result<alloc::string::String, alloc::string::String> {
        board::probe_sysmmu(base)
    }
    fn start_sysmmus(&self, combiner: u64, sysmmus: &[crate::contract::SysmmuStart], ram: crate::dt::Region, readonly: &[crate::dt::Region]) -> alloc::vec::Vec<Result<alloc::string::String, alloc::string::String>> {
        board::start_sysmmus(combiner, sysmmus, ram, readonly)
    }
    fn shutdown_report(&self) -> alloc::vec::Vec<alloc::string::String> {
        use core::sync::atomic::Ordering;
        alloc::vec![alloc::format!(
            "traps from guests: {} ({} hypercalls); stage-2 faults resolved by a retry: {}",
            stats::TRAPS.load(Ordering::Relaxed),
            stats::HYPERCALLS.load(Ordering::Relaxed),
            stats::S2_FAULTS_RESOLVED.load(Ordering::Relaxed)
        )]
    }
}
