//! Which vCPU runs on which physical CPU, and dom0's vCPU power states (PSCI).
//!
//! One vCPU per physical CPU: dom0's vCPU n on the CPU of the host DT's n-th /cpus entry
//! (vCPU 0 on the boot CPU), a dom0less domU's vCPU 0 on a CPU dom0 does not use. dom0's
//! vCPUs other than 0 start OFF; PSCI CPU_ON moves one OFF -> ON_PENDING (here) and the
//! architecture powers its CPU on; the CPU marks it ON once it enters the guest, or OFF again
//! if it cannot. The numbers are PSCI AFFINITY_INFO's (ON 0, OFF 1, ON_PENDING 2).

use super::DomId;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use guest_abi::smccc::{PSCI_RET_ALREADY_ON, PSCI_RET_INTERNAL_FAILURE, PSCI_RET_INVALID_PARAMETERS, PSCI_RET_ON_PENDING};

/// Most physical CPUs (and so vCPUs) used.
pub const MAX_CPUS: usize = 4;

/// Most vCPUs a domain has: each runs on a physical CPU of its own.
pub const MAX_VCPUS: usize = MAX_CPUS;

/// A vCPU's power state, numbered as PSCI AFFINITY_INFO reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Power {
    On = 0,
    Off = 1,
    OnPending = 2,
}

/// The CPU placement and dom0's vCPU power states (one table for the machine: [`CPUS`]).
pub struct Cpus {
    /// Physical MPIDR of each CPU, from the host DT's /cpus: written once at boot, read by
    /// every kick (no lock: a kick on one CPU does not wait for one on another).
    host_mpidr: [AtomicU64; MAX_CPUS],
    host_cpus: AtomicUsize,
    dom0_vcpus: AtomicUsize,
    /// dom0's vCPU n's power state ([`Power`]).
    power: [AtomicU8; MAX_CPUS],
    /// Per CPU beyond dom0's: the domU vCPU it was given, as `domain << 8 | vcpu`, plus 1
    /// (0: none). Written before that CPU starts; read to find where to send a kick.
    domu_on_cpu: [AtomicU32; MAX_CPUS],
}

/// The machine's CPUs.
pub static CPUS: Cpus = Cpus::new();

impl Default for Cpus {
    fn default() -> Self {
        Self::new()
    }
}

impl Cpus {
    pub const fn new() -> Self {
        Self {
            host_mpidr: [const { AtomicU64::new(0) }; MAX_CPUS],
            host_cpus: AtomicUsize::new(0),
            dom0_vcpus: AtomicUsize::new(1),
            power: [const { AtomicU8::new(Power::Off as u8) }; MAX_CPUS],
            domu_on_cpu: [const { AtomicU32::new(0) }; MAX_CPUS],
        }
    }

    /// At boot: the host's CPUs (their MPIDRs, host DT order) and dom0's vCPU count, bounded
    /// by the host's CPUs and [`MAX_CPUS`]. vCPU 0 runs (on the boot CPU). Returns the count.
    pub fn setup_dom0(&self, host_cpus: &[u64], n: usize) -> usize {
        let n = n.min(host_cpus.len()).clamp(1, MAX_CPUS);
        for (slot, &mpidr) in self.host_mpidr.iter().zip(host_cpus.iter()) {
            slot.store(mpidr, Ordering::Relaxed);
        }
        self.host_cpus.store(host_cpus.len(), Ordering::Relaxed);
        self.dom0_vcpus.store(n, Ordering::Relaxed);
        self.power[0].store(Power::On as u8, Ordering::Relaxed);
        n
    }

    /// The host's CPUs (the host DT's /cpus entries, used or not).
    pub fn host_cpus(&self) -> usize {
        self.host_cpus.load(Ordering::Relaxed)
    }

    /// dom0's vCPU count.
    pub fn dom0_vcpus(&self) -> usize {
        self.dom0_vcpus.load(Ordering::Relaxed)
    }

    /// The physical MPIDR of CPU `cpu` (0 if the host has no such CPU).
    pub fn host_mpidr(&self, cpu: usize) -> u64 {
        self.host_mpidr.get(cpu).map_or(0, |m| m.load(Ordering::Relaxed))
    }

    /// (index, MPIDR) of the host CPUs dom0 leaves free, for domUs.
    pub fn spare(&self) -> Vec<(usize, u64)> {
        (self.dom0_vcpus()..self.host_cpus().min(MAX_CPUS)).map(|c| (c, self.host_mpidr(c))).collect()
    }

    /// CPU `cpu` runs vCPU `vcpu` of domU `domain` (before the CPU starts).
    pub fn give_to_domu(&self, cpu: usize, domain: DomId, vcpu: u32) {
        if let Some(slot) = self.domu_on_cpu.get(cpu) {
            slot.store((u32::from(domain) << 8 | (vcpu & 0xff)).wrapping_add(1), Ordering::Release);
        }
    }

    /// CPU `cpu` stopped: it runs no domU's vCPU any more.
    pub fn release(&self, cpu: usize) {
        if let Some(slot) = self.domu_on_cpu.get(cpu) {
            slot.store(0, Ordering::Release);
        }
    }

    /// The physical CPU that runs vCPU `vcpu` of `domain`: dom0's vCPU n on CPU n, a domU's
    /// on the CPU it was given. `None` if it runs nowhere.
    pub fn cpu_of(&self, domain: DomId, vcpu: usize) -> Option<usize> {
        if domain == 0 {
            return (vcpu < self.dom0_vcpus()).then_some(vcpu);
        }
        let want = (u32::from(domain) << 8 | vcpu as u32).wrapping_add(1);
        self.domu_on_cpu.iter().position(|c| c.load(Ordering::Acquire) == want)
    }

    /// dom0's vCPU `v`'s power state.
    pub fn power(&self, v: usize) -> Power {
        match self.power.get(v).map(|p| p.load(Ordering::Acquire)) {
            Some(0) => Power::On,
            Some(2) => Power::OnPending,
            _ => Power::Off,
        }
    }

    /// dom0's vCPU `v` entered the guest on its CPU.
    pub fn started(&self, v: usize) {
        if let Some(p) = self.power.get(v) {
            p.store(Power::On as u8, Ordering::Release);
        }
    }

    /// dom0's vCPU `v` could not be started (its CPU could not come up): OFF again.
    pub fn failed(&self, v: usize) {
        if let Some(p) = self.power.get(v) {
            p.store(Power::Off as u8, Ordering::Release);
        }
    }

    /// dom0's vCPU with virtual MPIDR `mpidr` (vCPU n has Aff0 = n; bit 31 is RES1 and not
    /// an affinity field).
    pub fn vcpu_of(&self, mpidr: u64) -> Option<usize> {
        let aff = mpidr & 0xff_00ff_ffff;
        let v = (aff & 0xff) as usize;
        (aff >> 8 == 0 && v < self.dom0_vcpus()).then_some(v)
    }

    /// PSCI CPU_ON of dom0's vCPU with MPIDR `target`: claims it (OFF -> ON_PENDING) and calls
    /// `start(vcpu)` to power its CPU on; PSCI's answer. A vCPU dom0 does not have is
    /// INVALID_PARAMETERS, one running ALREADY_ON, one starting ON_PENDING; a CPU that cannot
    /// be started leaves it OFF with INTERNAL_FAILURE.
    pub fn cpu_on(&self, target: u64, start: impl FnOnce(usize) -> Result<(), String>) -> Result<usize, (i64, Option<String>)> {
        let Some(v) = self.vcpu_of(target) else { return Err((PSCI_RET_INVALID_PARAMETERS, None)) };
        let Some(state) = self.power.get(v) else { return Err((PSCI_RET_INVALID_PARAMETERS, None)) };
        if let Err(s) = state.compare_exchange(Power::Off as u8, Power::OnPending as u8, Ordering::AcqRel, Ordering::Acquire) {
            return Err((if s == Power::On as u8 { PSCI_RET_ALREADY_ON } else { PSCI_RET_ON_PENDING }, None));
        }
        match start(v) {
            Ok(()) => Ok(v),
            Err(e) => {
                self.failed(v);
                Err((PSCI_RET_INTERNAL_FAILURE, Some(e)))
            }
        }
    }
}

/// The longest a vCPU runs before its CPU takes a scheduling decision: Xen 4.17's credit2
/// scheduler's longest slice (CSCHED2_MAX_TIMER, 10 ms), so a running vCPU leaves for the
/// hypervisor at least that often on both. With one vCPU per CPU the decision is to run it on;
/// the slice's end is where a vCPU scheduler switches.
pub const SLICE_US: u64 = 10_000;

/// The end of a slice that starts at counter value `now` (counter frequency `freq` Hz).
pub fn slice_end(now: u64, freq: u64) -> u64 {
    now.saturating_add(freq.saturating_mul(SLICE_US) / 1_000_000)
}

/// When the CPU's hypervisor timer must fire: at `slice_end`, or at the deadline of the
/// emulated EL1 physical timer (`ptimer`, when armed and not yet expired) if that is sooner.
pub fn hyp_timer_deadline(slice_end: u64, ptimer: Option<u64>) -> u64 {
    ptimer.map_or(slice_end, |p| p.min(slice_end))
}

/// A vCPU's trapped wait instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// WFI (or WFIT): wait for an interrupt.
    Interrupt,
    /// WFE (or WFET): wait for an event; a spinning lock's waiting loop.
    Event,
}

/// What the vCPU's CPU does about a trapped wait instruction (it steps over it either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitAction {
    /// Back to the guest at once.
    Resume,
    /// Wait on the physical CPU until an interrupt reaches it, then back to the guest.
    WaitForInterrupt,
}

/// Xen's answer to a trapped WFI/WFE with one vCPU per physical CPU. WFE yields the vCPU, and
/// with nothing else to run on its CPU it goes on at once. WFI blocks the vCPU unless an
/// interrupt is already waiting for it (`deliverable`: pending in the vGIC, an event upcall
/// included); blocked, its CPU idles until an interrupt arrives (a kick from a CPU that
/// changed this vCPU's interrupts, its timer, a device's), which wakes the vCPU. A wait whose
/// terms the hypervisor does not keep (`unheld`: WFIT's timeout, an AArch32 instruction's
/// condition) completes at once, which a wait instruction may always do.
pub fn on_wait(wait: Wait, deliverable: bool, unheld: bool) -> WaitAction {
    match wait {
        Wait::Interrupt if !deliverable && !unheld => WaitAction::WaitForInterrupt,
        Wait::Interrupt | Wait::Event => WaitAction::Resume,
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const HOST: [u64; 4] = [0x8000_0000, 0x8000_0001, 0x8000_0002, 0x8000_0003];

    #[test]
    fn dom0_takes_the_first_cpus_and_domus_the_rest() {
        let c = Cpus::new();
        assert_eq!(c.setup_dom0(&HOST, 2), 2);
        assert_eq!(c.spare(), [(2, HOST[2]), (3, HOST[3])]);
        assert_eq!((c.cpu_of(0, 1), c.cpu_of(0, 2)), (Some(1), None));
        c.give_to_domu(3, 5, 0);
        assert_eq!((c.cpu_of(5, 0), c.cpu_of(5, 1), c.cpu_of(1, 0)), (Some(3), None, None));
        c.release(3);
        assert_eq!(c.cpu_of(5, 0), None);
        // At least one vCPU, at most one per host CPU and MAX_CPUS.
        assert_eq!(Cpus::new().setup_dom0(&HOST[..1], 4), 1);
        assert_eq!(Cpus::new().setup_dom0(&HOST, 0), 1);
        assert_eq!(Cpus::new().setup_dom0(&[1, 2, 3, 4, 5, 6], 8), MAX_CPUS);
        assert_eq!(c.host_mpidr(9), 0);
    }

    #[test]
    fn the_hypervisor_timer_ends_each_slice_or_fires_sooner_for_the_guest() {
        // 62.5 MHz (QEMU virt): 10 ms is 625 000 ticks.
        assert_eq!(slice_end(1_000, 62_500_000), 626_000);
        assert_eq!(slice_end(u64::MAX - 5, 62_500_000), u64::MAX);
        assert_eq!(hyp_timer_deadline(626_000, None), 626_000);
        assert_eq!(hyp_timer_deadline(626_000, Some(5_000)), 5_000);
        assert_eq!(hyp_timer_deadline(626_000, Some(900_000)), 626_000);
    }

    #[test]
    fn wfi_waits_only_with_nothing_deliverable_and_wfe_never_waits() {
        assert_eq!(on_wait(Wait::Interrupt, false, false), WaitAction::WaitForInterrupt);
        assert_eq!(on_wait(Wait::Interrupt, true, false), WaitAction::Resume);
        assert_eq!(on_wait(Wait::Interrupt, false, true), WaitAction::Resume);
        for (d, c) in [(false, false), (true, false), (false, true)] {
            assert_eq!(on_wait(Wait::Event, d, c), WaitAction::Resume);
        }
    }

    #[test]
    fn cpu_on_moves_off_to_on_pending_and_refuses_what_psci_refuses() {
        let c = Cpus::new();
        c.setup_dom0(&HOST, 3);
        assert_eq!(c.power(0), Power::On);
        assert_eq!(c.power(1), Power::Off);
        assert_eq!(c.cpu_on(0x1, |_| Ok(())), Ok(1));
        assert_eq!(c.power(1), Power::OnPending);
        // Starting, then running.
        assert_eq!(c.cpu_on(0x1, |_| panic!("not started twice")), Err((PSCI_RET_ON_PENDING, None)));
        c.started(1);
        assert_eq!(c.cpu_on(0x8000_0001, |_| panic!("not started twice")), Err((PSCI_RET_ALREADY_ON, None)));
        assert_eq!(c.cpu_on(0x0, |_| panic!("vCPU 0 runs")), Err((PSCI_RET_ALREADY_ON, None)));
        // vCPUs dom0 does not have, and affinities beyond Aff0.
        for bad in [0x3, 0x4, 0x100, 0x1_0000, 0x1_0000_0000] {
            assert_eq!(c.cpu_on(bad, |_| panic!("no such vCPU")), Err((PSCI_RET_INVALID_PARAMETERS, None)), "{bad:#x}");
        }
        // A CPU the firmware cannot start: the vCPU is OFF again and may be tried again.
        let e = c.cpu_on(0x2, |v| Err(alloc::format!("CPU {v} did not come up")));
        assert_eq!(e, Err((PSCI_RET_INTERNAL_FAILURE, Some("CPU 2 did not come up".into()))));
        assert_eq!(c.power(2), Power::Off);
        assert_eq!(c.cpu_on(0x2, |_| Ok(())), Ok(2));
    }
}
