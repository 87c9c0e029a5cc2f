//! What each physical CPU runs, in its own HTPIDR (nothing else uses it): bits 0-7 the CPU's
//! index, 8-15 the vCPU, 16-31 the domain. The placement itself is `domain::vcpu`'s.

use super::regs::{Htpidr, Mpidr};
use crate::domain::vcpu::CPUS;
pub use crate::domain::vcpu::MAX_CPUS;
use crate::domain::DomId;

/// The domain of a CPU that runs no guest.
pub const NO_DOMAIN: DomId = DomId::MAX;

fn percpu() -> u32 {
    Htpidr::read()
}

/// This physical CPU's index (MPIDR Aff0: QEMU virt and the Exynos5250 number CPUs so).
#[inline]
pub fn this_cpu() -> usize {
    (percpu() & 0xff) as usize
}

/// Set on each CPU by itself before anything asks (boot, secondary entry, parking).
pub fn assign(cpu: usize, domain: DomId, vcpu: u32) {
    Htpidr::write((cpu as u32 & 0xff) | (vcpu & 0xff) << 8 | u32::from(domain) << 16);
}

/// The boot CPU, before any domain runs.
pub fn init_boot_cpu() {
    assign((Mpidr::read() & 0xff) as usize, NO_DOMAIN, 0);
}

/// The domain whose vCPU runs on this CPU (`NO_DOMAIN` if none).
#[inline]
pub fn current_domain() -> DomId {
    (percpu() >> 16) as DomId
}

/// Which of its domain's vCPUs runs on this CPU.
#[inline]
pub fn current_vcpu() -> u32 {
    (percpu() >> 8) & 0xff
}

/// Number of dom0 vCPUs.
pub fn vcpus() -> usize {
    CPUS.dom0_vcpus()
}

/// The physical CPU that runs vCPU `vcpu` of `domain` (dom0's vCPU n on CPU n).
#[inline]
pub fn cpu_of(domain: DomId, vcpu: usize) -> Option<usize> {
    CPUS.cpu_of(domain, vcpu)
}

/// The physical MPIDR of CPU `cpu`.
pub fn host_mpidr(cpu: usize) -> u64 {
    CPUS.host_mpidr(cpu)
}
