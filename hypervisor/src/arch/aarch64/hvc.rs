//! The Xen hypercall path: `HVC #0xEA1` from a guest. The vector (entry.rs) recognises the
//! syndrome before saving anything else and saves only the registers the Rust code below may
//! clobber (AAPCS64: x0-x18 and x30; x19-x29 are preserved by every Rust function), so a
//! hypercall does not pay for the full `TrapFrame`. A hypercall only reads x0-x4 and x16 and
//! writes x0 (x0-x2 and the return address for a continuation).

use super::guest::CurrentGuestMemory;
use super::stats;
use crate::domain::registry::{PoolFrames, DOMAINS};
use crate::hypercall::after::{self, After};
use super::mem::DirectMem;
use super::{iommu, irq, percpu};
use crate::domain::registry::Machine;
use crate::domain::DomId;
use crate::hypercall::{self, HypercallCtx, Outcome};
use crate::sysreg;

/// The caller-saved registers as the hypercall vector stores them: x0-x18, then x30.
#[repr(C)]
pub struct HvcRegs {
    pub x: [u64; 19],
    pub lr: u64,
}

const _: () = assert!(core::mem::size_of::<HvcRegs>() == 20 * 8);
const _: () = assert!(core::mem::size_of::<HvcRegs>() <= super::entry::FRAME_SIZE);

#[no_mangle]
extern "C" fn xenith_hypercall(regs: &mut HvcRegs) {
    stats::count(crate::trap_stats::TrapKind::Hypercall);
    let ssbd = super::spectre::guest_exit();
    // vGIC: the list registers are read back and refilled only when something changed (irq.rs).
    irq::guest_exit();
    let args = [regs.x[0], regs.x[1], regs.x[2], regs.x[3], regs.x[4]];
    let outcome = if stats::HCALL_STATS.load(core::sync::atomic::Ordering::Relaxed) {
        let t0 = super::regs::counter();
        let o = hypercall(regs.x[16], args);
        stats::HCALL_TIME.add(regs.x[16], args[0], super::regs::counter().wrapping_sub(t0));
        o
    } else {
        hypercall(regs.x[16], args)
    };
    match outcome {
        Outcome::Return(r) => regs.x[0] = r as u64,
        Outcome::Continue { x0, x1, x2 } => {
            (regs.x[0], regs.x[1], regs.x[2]) = (x0, x1, x2);
            // Re-issue the HVC: ELR_EL2 still holds the return address (nothing on this path
            // takes an exception to EL2).
            sysreg!(write ELR_EL2, sysreg!(read ELR_EL2).wrapping_sub(4));
        }
    }
    irq::guest_entry();
    super::spectre::guest_entry(ssbd);
}

/// Hypercall `nr` with x0..x4 = `args` from the vCPU on this CPU: one step, which may ask to be
/// continued (hypercall continuations: a long batch comes back unfinished so the
/// guest re-issues it and can take interrupts in between, as on Xen).
#[inline(always)]
pub fn hypercall(nr: u64, args: [u64; 5]) -> Outcome {
    if nr == guest_abi::hypercall::HYPERVISOR_CONSOLE_IO {
        // Until the SMMU's event interrupt reaches the GIC, faults are reported before the
        // guest's next console output (so they appear in order with it).
        iommu::report_events();
    }
    let current: DomId = percpu::current_domain();
    let mut mem = CurrentGuestMemory;
    let mut frames = PoolFrames;
    // p2m changes reach the SMMUs sharing the tables.
    let mut tlb = iommu::SystemTlb::default();
    let mut machine = Machine { mem: &DirectMem, frames: &mut frames, tlb: &mut tlb };
    // No lock here: the domain table is read without one, and each handler takes the locks of
    // what it changes (xen_version takes none).
    let mut cx = HypercallCtx { domains: &DOMAINS, caller: current, vcpu: percpu::current_vcpu(), mem: &mut mem, machine: &mut machine, arch: &super::Hw };
    let outcome = hypercall::dispatch_step(&mut cx, nr, args);
    drop(tlb);
    // Upcalls the hypercall raised (vgic_glue.rs delivers them), then a stop or a yield the
    // caller asked for.
    match after::after_hypercall(&super::Hw, &DOMAINS, current, percpu::current_vcpu()) {
        After::Resume => {}
        After::Yield => super::vcpu_switch::request_yield(),
        After::Park => super::vcpu_switch::park_this_cpu(),
    }
    outcome
}
