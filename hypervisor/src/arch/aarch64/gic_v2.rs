//! A host with a GICv2: the physical driver (`irq::gicv2`) on the registers the host DT
//! names, and dom0's vGIC with the GICv2 front end. `gic.rs` calls in here when `get()` says
//! the host GIC is a GICv2 (this file imports no sibling but `percpu` and `mem`: what it
//! needs from above comes in as arguments); everything else about interrupts (the core's flush/sync, event
//! delivery, timers) is shared with GICv3.

use super::percpu::{this_cpu, MAX_CPUS};
use crate::domain::registry::PoolFrames as LazyFrames;
use super::mem::DirectMem;
use super::tlb::HwTlb;
use crate::domain::Domain;
use crate::dt::boot_info::GicInfo;
use crate::irq::gicv2::{self, GicV2};
use crate::irq::vgic::regs::SharedVgic;
use crate::irq::vgic::v2::{GicdV2Device, MAX_VCPUS};
use crate::irq::vgic::{Vgic, MAX_LRS, PRIVATE_IRQS};
use crate::log;
use crate::mm::S2Attr;
use crate::sync::{Once, SpinMutex as Mutex};
use alloc::string::String;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU8, Ordering};
use platform::RawMmio;

static GIC: Once<GicV2<RawMmio>> = Once::new();
/// Per CPU: its CPU-interface bit (what GICD_ITARGETSR and GICD_SGIR name it by).
static CPU_MASK: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];

/// The host's GICv2, once `init` found one.
#[inline]
pub fn get() -> Option<&'static GicV2<RawMmio>> {
    GIC.get()
}

/// Bring up the distributor and this CPU's interfaces, the hypervisor taking `ppis` (and its
/// SGIs) at `priority`. Returns ITLinesNumber.
pub fn init(info: &GicInfo, ppis: &[u32], priority: u8) -> Result<u32, String> {
    let (Some(gicc), Some(gich)) = (info.cpu_interface, info.hyp_interface) else {
        return Err(alloc::format!(
            "GICv2 at {}: no {} in its reg (the virtualization extensions are needed)",
            info.path,
            if info.cpu_interface.is_none() { "CPU interface (GICC)" } else { "virtual interface control (GICH)" }
        ));
    };
    if info.vcpu_interface.is_none() {
        return Err(alloc::format!("GICv2 at {}: no virtual CPU interface (GICV) in its reg", info.path));
    }
    // SAFETY: the three register blocks the host DT names for its GIC; the EL2 map covers
    // every non-RAM address as Device memory; only this driver touches them.
    let g = unsafe {
        GicV2::new(
            RawMmio::new(info.distributor.base as usize),
            RawMmio::new(gicc.base as usize),
            RawMmio::new(gich.base as usize),
        )
    };
    g.init_distributor();
    let it_lines = g.it_lines();
    let gic = GIC.call_once(|| g);
    init_this_cpu(ppis, priority)?;
    log!(
        "GICv2: distributor {:#x} ({} INTIDs), CPU interface {:#x}; virtual interface {:#x}: {} list registers",
        info.distributor.base,
        32 * (it_lines + 1),
        gicc.base,
        gich.base,
        gic.lr_count()
    );
    Ok(it_lines)
}

/// This CPU's banked registers (the hypervisor's `ppis` at `priority`), CPU interface and
/// virtual interface.
pub fn init_this_cpu(ppis: &[u32], priority: u8) -> Result<(), String> {
    let g = get().ok_or("GICv2 not initialised")?;
    let mask = g.init_cpu(ppis, priority);
    if let Some(m) = CPU_MASK.get(this_cpu()) {
        m.store(mask, Ordering::Relaxed);
    }
    Ok(())
}

/// The CPU-interface bit of the CPU running `vcpu` (0 before it came up).
pub fn cpu_mask(vcpu: usize) -> u8 {
    CPU_MASK.get(vcpu).map_or(0, |m| m.load(Ordering::Relaxed))
}

/// List registers the virtual interface has (as many as the core handles).
pub fn lr_count() -> u32 {
    get().map_or(0, |g| g.lr_count().min(MAX_LRS) as u32)
}

/// A list register in the core's (GICv3) format.
#[inline]
pub fn read_lr(index: usize) -> u64 {
    get().map_or(0, |g| gicv2::lr_to_v3(g.read_lr(index)))
}

/// Write a core-format value into a GICH list register.
#[inline]
pub fn write_lr(index: usize, value: u64) {
    if let Some(g) = get() {
        g.write_lr(index, gicv2::lr_from_v3(value, 0));
    }
}

/// Give dom0 (`vcpus` vCPUs, at most 8 on a GICv2) an emulated GICv2 distributor at the host's
/// and the GIC's virtual CPU interface (GICV) where its DT puts the CPU interface (GICC).
/// `notify` is what a GICD_SGIR write calls with the vCPUs it made look at their interrupts.
pub fn attach_vgic(dom: &mut Domain, info: &GicInfo, it_lines: u32, vcpus: usize, notify: fn(u64)) -> Result<SharedVgic, String> {
    if vcpus > MAX_VCPUS {
        return Err(alloc::format!("a GICv2 names at most {MAX_VCPUS} CPUs; dom0 has {vcpus} vCPUs"));
    }
    let (Some(gicc), Some(gicv)) = (info.cpu_interface, info.vcpu_interface) else {
        return Err("GICv2 without GICC or GICV".into());
    };
    let mut g = Vgic::new_v2(it_lines, vcpus);
    // Every SPI is dom0's (direct-mapped hardware domain), as with GICv3.
    for intid in PRIVATE_IRQS..g.nr_irqs() {
        let _ = g.set_hw(intid, true);
    }
    let intids = g.nr_irqs();
    let vgic: SharedVgic = Arc::new(Mutex::new(g));
    let dev = GicdV2Device { vgic: vgic.clone(), notify };
    if !dom.mmio.add(info.distributor.base, info.distributor.size, alloc::boxed::Box::new(dev)) {
        return Err("vGIC: its MMIO range overlaps another emulated device".into());
    }
    // GICV at the guest's GICC: the size both have (GICC_DIR is in the second 4 KiB page).
    let size = gicc.size.min(gicv.size) & !0xfff;
    let p2m = dom.p2m.get_mut().as_mut().ok_or("dom0 has no stage 2 yet")?;
    p2m.map(gicc.base, gicv.base, size, S2Attr::DEVICE_RW, &mut LazyFrames, &DirectMem, &mut HwTlb)
        .map_err(|e| alloc::format!("dom0 stage 2: GICV at {:#x}: {e}", gicc.base))?;
    log!(
        "d{}: vGICv2 distributor {:#x} ({} INTIDs, trapped and emulated), virtual CPU interface {:#x} mapped at {:#x}",
        dom.id,
        info.distributor.base,
        intids,
        gicv.base,
        gicc.base
    );
    Ok(vgic)
}

/// Carry out a passed-through SPI's physical work. SPIs are signalled to the CPU of vCPU 0
/// (see `gic::apply_hw_ops`).
pub fn apply_hw_op(op: crate::irq::vgic::HwOp, priority: u8) {
    use crate::irq::vgic::HwOp;
    let Some(g) = get() else { return };
    match op {
        HwOp::Enable(intid, true) => g.enable_spi(intid, cpu_mask(0), priority),
        HwOp::Enable(intid, false) => g.disable_spi(intid),
        HwOp::Configure(intid, edge) => g.configure(intid, edge),
        HwOp::Deactivate(intid) => g.deactivate(intid),
    }
}
