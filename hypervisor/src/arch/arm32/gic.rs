//! The physical GICv2 in HYP mode and dom0's vGICv2: the hypervisor takes its own PPIs
//! (maintenance 25, HYP timer 26, virtual timer 27) and the kick SGI, passes every SPI through
//! to dom0, and carries the vGIC core's list registers to the GICH list registers. The GICv2
//! driver and the vGIC front end are the same code as on AArch64 (`gic_v2.rs`, shared by
//! path); this file is the ARMv7 side of the guest exit/entry protocol.

use super::entry::TrapFrame;
use super::smp::{self, this_cpu, MAX_CPUS};
use crate::domain::{DomId, Domain};
use crate::dt::boot_info::GicInfo;
use crate::irq::vgic::domains::VGICS;
use crate::irq::vgic::regs::{SharedVgic, REGISTER_WRITES};
use crate::irq::vgic::{ListRegisters, HYP_TIMER_PPI, MAINTENANCE_PPI, PRIVATE_IRQS, VTIMER_PPI};
use crate::log;
use alloc::string::String;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Priority the hypervisor gives its PPIs.
pub(super) const HYP_PRIORITY: u8 = 0x80;
/// The SGI one CPU sends another to make it look at its vCPU's interrupts again.
const KICK_SGI: u32 = 0;
/// The private interrupts the hypervisor takes on every CPU.
pub(super) const HYP_PPIS: [u32; 4] = [KICK_SGI, MAINTENANCE_PPI, HYP_TIMER_PPI, VTIMER_PPI];
/// Priority of passed-through SPIs at the physical GIC (below the hypervisor's own PPIs).
const GUEST_SPI_PRIORITY: u8 = 0xa0;

/// Physical IRQs taken that nobody claims (logged a few times only).
static STRAY: AtomicU32 = AtomicU32::new(0);
// Per physical CPU (each runs one vCPU):
/// its vCPU's list registers hold something (guest exit must read them back);
static LRS_LIVE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// its vCPU's interrupt state changed since the last flush (set before any kick);
static WORK: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// the vGIC register-write count its last flush saw.
static SEEN_WRITES: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Bring up the host's GICv2 on the boot CPU. Returns its ITLinesNumber.
pub fn init(info: &GicInfo) -> Result<u32, String> {
    if info.version != 2 {
        return Err(alloc::format!("GICv{} at {}: ARMv7 hosts have a GICv2", info.version, info.path));
    }
    super::gic_v2::init(info)
}

/// This CPU's banked GIC state, CPU interface and virtual interface (secondary CPUs).
pub fn init_this_cpu() -> Result<(), String> {
    super::gic_v2::init_this_cpu()
}

/// Note that vCPU `vcpu` of `dom` has new interrupt state and make its CPU look.
fn notify(dom: DomId, vcpu: usize) {
    let Some(cpu) = smp::cpu_of(dom, vcpu) else { return };
    if let Some(w) = WORK.get(cpu) {
        w.store(true, Ordering::Release);
    }
    kick(cpu);
}

/// Make physical CPU `cpu` re-examine its vCPU's interrupts: a physical SGI, unless it is
/// this CPU (which looks on its way back to the guest).
pub fn kick(cpu: usize) {
    if cpu == this_cpu() {
        return;
    }
    if let Some(g) = super::gic_v2::get() {
        super::regs::dsb_ish();
        g.send_sgi(KICK_SGI, super::gic_v2::cpu_mask(cpu));
    }
}

/// The vCPUs in `mask` of the domain running here look at their interrupts (GICD_SGIR).
pub(super) fn notify_mask_here(mask: u64) {
    notify_mask(smp::current_domain(), mask)
}

fn notify_mask(dom: DomId, mut mask: u64) {
    while mask != 0 {
        let v = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        notify(dom, v);
    }
}

/// Give dom0 its vGICv2 (the GICV frame mapped at its GICC) and register it.
pub fn attach_vgic_v2(dom: &mut Domain, info: &GicInfo, it_lines: u32, vcpus: usize) -> Result<(), String> {
    let vgic = super::gic_v2::attach_vgic(dom, info, it_lines, vcpus)?;
    VGICS.insert(dom.id, vgic)?;
    Ok(())
}

fn current_vgic() -> Option<&'static SharedVgic> {
    VGICS.get(smp::current_domain())
}

/// The GICH list registers behind the vGIC core's trait.
struct HwLrs {
    count: usize,
}

impl HwLrs {
    fn new() -> Self {
        Self { count: super::gic_v2::lr_count() as usize }
    }
}

impl ListRegisters for HwLrs {
    fn count(&self) -> usize {
        self.count
    }
    fn read(&self, index: usize) -> u64 {
        super::gic_v2::read_lr(index)
    }
    fn write(&mut self, index: usize, v: u64) {
        super::gic_v2::write_lr(index, v)
    }
    fn set_underflow_irq(&mut self, on: bool) {
        if let Some(g) = super::gic_v2::get() {
            g.set_underflow_irq(on);
        }
    }
}

/// The vCPU left the guest: read the list registers back into the vGIC.
#[inline]
pub fn guest_exit() {
    let me = this_cpu();
    if !LRS_LIVE.get(me).is_some_and(|l| l.load(Ordering::Relaxed)) {
        return;
    }
    if let Some(v) = current_vgic() {
        v.lock().sync(smp::current_vcpu() as usize, &mut HwLrs::new());
        if let Some(w) = WORK.get(me) {
            w.store(true, Ordering::Relaxed);
        }
    }
}

/// ISR (CP15 c12, c1, 0): bit 7, a physical IRQ is pending.
fn irq_pending() -> bool {
    let isr: u32;
    // SAFETY: reads a status register; no memory effects.
    unsafe { core::arch::asm!("mrc p15, 0, {}, c12, c1, 0", out(reg) isr, options(nomem, nostack, preserves_flags)) };
    isr & (1 << 7) != 0
}

/// The vCPU is about to re-enter the guest: take the physical interrupts that arrived while
/// the hypervisor ran, then refill the list registers if its interrupt state changed.
#[inline]
pub fn guest_entry() {
    if irq_pending() {
        let _ = take_physical_irqs();
    }
    let me = this_cpu();
    let (Some(work), Some(seen)) = (WORK.get(me), SEEN_WRITES.get(me)) else { return };
    let writes = REGISTER_WRITES.load(Ordering::Acquire);
    if !work.load(Ordering::Acquire) && seen.load(Ordering::Relaxed) == writes {
        return;
    }
    let Some(v) = current_vgic() else { return };
    work.store(false, Ordering::Relaxed);
    seen.store(writes, Ordering::Relaxed);
    let vcpu = smp::current_vcpu() as usize;
    let mut g = v.lock();
    g.flush(vcpu, &mut HwLrs::new());
    if let Some(l) = LRS_LIVE.get(me) {
        l.store(g.lrs_in_use(vcpu), Ordering::Relaxed);
    }
    let ops = g.take_hw_ops();
    drop(g);
    for op in ops {
        super::gic_v2::apply_hw_op(op, GUEST_SPI_PRIORITY);
    }
}

/// Acknowledge and handle every pending physical interrupt. Returns the first INTID taken.
pub fn take_physical_irqs() -> Option<u32> {
    let g = super::gic_v2::get()?;
    let mut first = None;
    for _ in 0..64 {
        let iar = g.acknowledge();
        let intid = iar & 0x3ff;
        if intid >= crate::irq::gicv2::SPURIOUS {
            return first;
        }
        first = first.or(Some(intid));
        g.end_of_interrupt(iar);
        if intid >= PRIVATE_IRQS {
            // A passed-through SPI: the guest deactivates it through a HW list register.
            let target = VGICS.get(0).and_then(|v| {
                let mut vg = v.lock();
                vg.inject_hw(intid).ok().map(|()| vg.spi_target(intid))
            });
            match target {
                Some(Some(t)) => notify(0, t),
                Some(None) => {}
                None => {
                    g.deactivate(iar);
                    if STRAY.fetch_add(1, Ordering::Relaxed) < 8 {
                        log!("physical SPI {intid} is not passed through to a guest: ignored");
                    }
                }
            }
            continue;
        }
        match intid {
            VTIMER_PPI => super::vtimer::on_virtual_timer(),
            HYP_TIMER_PPI => super::vtimer::on_hyp_timer(),
            // Underflow: `guest_entry` refills the list registers. A kick: another CPU
            // changed this vCPU's interrupts; `guest_entry` looks at them.
            MAINTENANCE_PPI | KICK_SGI => {}
            other => {
                if STRAY.fetch_add(1, Ordering::Relaxed) < 8 {
                    log!("physical IRQ {other} has no handler: ignored");
                }
            }
        }
        g.deactivate(iar);
    }
    first
}

/// An IRQ taken to HYP mode while a guest ran.
pub fn irq_from_guest(_frame: &mut TrapFrame) {
    guest_exit();
    let _ = take_physical_irqs();
    guest_entry();
}

/// Pend each upcall an event set in `dom` as the domain's callback PPI on that vCPU.
pub fn deliver_event_upcall(dom: &Domain) {
    let mut pending = dom.take_upcalls();
    while pending != 0 {
        let vcpu = pending.trailing_zeros() as usize;
        pending &= pending - 1;
        inject_edge(dom.id, vcpu, dom.callback_ppi);
    }
}

/// Latch an edge interrupt `intid` for `vcpu` of `dom` (an upcall, a virtual timer expiry).
pub fn inject_edge(dom: DomId, vcpu: usize, intid: u32) {
    if let Some(v) = VGICS.get(dom) {
        if let Err(e) = v.lock().inject_edge(vcpu, intid) {
            log!("d{dom}: vGIC: cannot inject: {e}");
            return;
        }
        notify(dom, vcpu);
    }
}

/// Drive the line of a level-sensitive `intid` for `vcpu` of `dom` (the emulated physical
/// timer's PPI).
pub fn set_irq_level(dom: DomId, vcpu: usize, intid: u32, high: bool) {
    if let Some(v) = VGICS.get(dom) {
        if let Err(e) = v.lock().set_level(vcpu, intid, high) {
            log!("d{dom}: vGIC: cannot set level: {e}");
            return;
        }
        notify(dom, vcpu);
    }
}
