//! What each physical CPU runs, in its own TPIDR_EL2 (nothing else uses it): bits 0-7 the
//! CPU's index, 8-15 the vCPU, 16-31 the domain, bit 32 a kick not yet acted on. Every
//! hypercall asks: one register read. The placement itself (which vCPU goes where) is
//! `domain::vcpu`'s.

use crate::domain::vcpu::CPUS;
pub use crate::domain::vcpu::MAX_CPUS;
use crate::domain::DomId;
use crate::sysreg;
use core::sync::atomic::{AtomicBool, Ordering};

/// The domain of a CPU that runs no guest.
pub const NO_DOMAIN: DomId = DomId::MAX;

fn percpu() -> u64 {
    sysreg!(read TPIDR_EL2)
}

/// This physical CPU's index (MPIDR Aff0: QEMU virt and the boards here number CPUs so).
#[inline]
pub fn this_cpu() -> usize {
    (percpu() & 0xff) as usize
}

/// Set on each CPU by itself before anything asks (boot, secondary entry, parking, a vCPU
/// switch).
pub fn assign(cpu: usize, domain: DomId, vcpu: u32) {
    let v = (cpu as u64 & 0xff) | (u64::from(vcpu) & 0xff) << 8 | u64::from(domain) << 16;
    sysreg!(write TPIDR_EL2, v);
}

/// TPIDR_EL2's bit for a kick taken on this CPU that the next IRQ exit has to act on.
const KICK_SEEN: u64 = 1 << 32;

/// A kick was taken on this CPU (see [`take_kick`]).
pub fn note_kick() {
    sysreg!(write TPIDR_EL2, percpu() | KICK_SEEN);
}

/// Whether a kick was noted on this CPU since the last call (the note is taken): a register
/// read while there is none.
#[inline]
pub fn take_kick() -> bool {
    let p = percpu();
    if p & KICK_SEEN == 0 {
        return false;
    }
    sysreg!(write TPIDR_EL2, p & !KICK_SEEN);
    true
}

/// The boot CPU, before any domain runs.
pub fn init_boot_cpu() {
    assign((sysreg!(read MPIDR_EL1) & 0xff) as usize, NO_DOMAIN, 0);
}

/// The domain whose vCPU runs on this CPU (`NO_DOMAIN` if none).
#[inline]
pub fn current_domain() -> DomId {
    (percpu() >> 16) as DomId
}

/// Which of its domain's vCPUs runs on this CPU.
#[inline]
pub fn current_vcpu() -> u32 {
    ((percpu() >> 8) & 0xff) as u32
}

/// The physical CPU that runs vCPU `vcpu` of `domain`: dom0's vCPU n on CPU n, a domU's on
/// the CPU it was given at boot. `None` if it runs nowhere.
#[inline]
pub fn cpu_of(domain: DomId, vcpu: usize) -> Option<usize> {
    CPUS.cpu_of(domain, vcpu)
}

/// Number of dom0 vCPUs.
pub fn vcpus() -> usize {
    CPUS.dom0_vcpus()
}

/// The physical MPIDR of CPU `cpu`.
pub fn host_mpidr(cpu: usize) -> u64 {
    CPUS.host_mpidr(cpu)
}

/// vCPUs share CPUs (`sched=credit`, `vcpu_switch`): set once at boot.
static SHARES_CPUS: AtomicBool = AtomicBool::new(false);

/// Whether vCPUs share CPUs (`sched=credit`): a CPU may run several vCPUs in turn.
#[inline]
pub fn shares_cpus() -> bool {
    SHARES_CPUS.load(Ordering::Relaxed)
}

/// At boot, before any other CPU runs: vCPUs share CPUs from now on.
pub fn set_shares_cpus() {
    SHARES_CPUS.store(true, Ordering::Relaxed);
}
