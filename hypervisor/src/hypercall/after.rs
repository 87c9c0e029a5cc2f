//! What a vCPU's CPU does once a hypercall or trap from it is handled: raise the event
//! upcalls the call caused, and act on a domain that asked to stop (the decisions are
//! `domain::lifecycle`'s; the architecture carries them out through [`Arch`]).

use crate::contract::Arch;
use crate::domain::lifecycle::{self, DomUAfter};
use crate::domain::registry::Domains;
use crate::domain::{DomId, Domain};
use crate::log;

/// What the CPU does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// Return to the guest.
    Resume,
    /// Its domain (a domU) stopped or its vCPU turned itself off: the CPU stops.
    Park,
    /// Return to the guest, with a scheduling point first (SCHEDOP_yield): where vCPUs
    /// share the CPU another runnable one may run before it.
    Yield,
}

/// dom0 stopping takes the machine with it (as on Xen): power off, or restart for reboot and
/// crash. Nothing happens while `dom` is not a hardware domain that asked to stop.
pub fn hardware_domain_stop(arch: &dyn Arch, dom: &Domain) {
    let Some(reason) = dom.shutdown().filter(|_| dom.is_hardware) else { return };
    arch.report_iommu_events();
    log!("d{}: shutdown ({reason:?})", dom.id);
    for line in arch.shutdown_report() {
        log!("{line}");
    }
    let (action, line) = lifecycle::hardware_domain_stopped(reason);
    log!("{line}");
    arch.stop_machine(action);
}

/// A domU that asked to stop (SCHEDOP_shutdown, PSCI SYSTEM_OFF, a crash) stays as it is
/// until the toolstack destroys it (a dom0less guest: for good), dom0 hears of it through
/// VIRQ_DOM_EXC as on Xen, and the vCPU leaves its CPU; so does one that turned itself off
/// (`vcpu`, the trapping one) and any vCPU of a domain being destroyed. One paused by the
/// toolstack (XEN_DOMCTL_pausedomain) waits here, on its own CPU, until unpaused or stopped;
/// where vCPUs share CPUs (`shared`) it runs on instead and leaves its CPU at the next
/// scheduling point (the pause kicked it), so the CPU's other vCPUs are not held up.
pub fn domu_stop(arch: &dyn Arch, domains: &Domains, id: DomId, vcpu: u32, shared: bool) -> After {
    let Some(d) = domains.get(id).filter(|d| !d.is_hardware) else { return After::Resume };
    let held = || d.paused() && d.shutdown().is_none() && !d.dying();
    // The pause waits for the mark (Xen's pause returns once the vCPU is descheduled); a pause
    // that saw the mark just before an unpause let it go is caught by the check after it.
    while !shared && held() {
        d.set_waits_paused(vcpu, true);
        while held() {
            <crate::sync::Relax as spin::RelaxStrategy>::relax();
        }
        d.set_waits_paused(vcpu, false);
    }
    if d.dying() {
        return After::Park;
    }
    let (after, line) = lifecycle::domu_after_trap(id, d.shutdown(), d.vcpu_off(vcpu).then_some(vcpu));
    if after == DomUAfter::Runs {
        return After::Resume;
    }
    if matches!(after, DomUAfter::Stopped(_)) {
        arch.report_iommu_events();
    }
    if let Some(line) = line {
        log!("{line}");
    }
    if let (DomUAfter::Stopped(_), Some(d0)) = (after, domains.get(0)) {
        arch.with_machine(&mut |m| crate::hypercall::event_channel::send_virq(d0, m, guest_abi::event_channel::VIRQ_DOM_EXC));
        arch.deliver_event_upcall(d0);
    }
    After::Park
}

/// Whether vCPUs share CPUs (`sched=credit`): asked only on the way to stopping a vCPU.
fn shared_cpus() -> bool {
    crate::sched::SCHED.policy() == crate::sched::SchedPolicy::Credit
}

/// Once a trap from `dom`'s vCPU `vcpu` is handled: a few loads while the domain runs on; the
/// rest only once it asked to stop, a domU turned the vCPU off (PSCI CPU_OFF), was paused or
/// is being destroyed.
#[inline]
pub fn after_trap(arch: &dyn Arch, domains: &Domains, dom: &Domain, vcpu: u32) -> After {
    if dom.shutdown().is_none() && (dom.is_hardware || (!dom.vcpu_off(vcpu) && !dom.paused() && !dom.dying())) {
        return After::Resume;
    }
    hardware_domain_stop(arch, dom);
    domu_stop(arch, domains, dom.id, vcpu, shared_cpus())
}

/// Once a hypercall from vCPU `vcpu` of domain `caller` is handled: an event it raised
/// reaches its domain as that domain's event-channel upcall, whichever domain raised it (an
/// interdomain send, a domU's shutdown); then a stop is acted on. Inlined: on the hypercall
/// path, with nothing raised and the caller running on, it is a few loads.
#[inline(always)]
pub fn after_hypercall(arch: &dyn Arch, domains: &Domains, caller: DomId, vcpu: u32) -> After {
    let mut with_upcalls = crate::domain::take_domains_with_upcalls();
    while with_upcalls != 0 {
        let id = with_upcalls.trailing_zeros() as DomId;
        with_upcalls &= with_upcalls - 1;
        if let Some(d) = domains.get(id) {
            arch.deliver_event_upcall(d);
        }
    }
    let yielded = |d: &Domain| if d.take_yield(vcpu) { After::Yield } else { After::Resume };
    if caller == 0 {
        let Some(d0) = domains.get(0) else { return After::Resume };
        if d0.shutdown().is_some() {
            hardware_domain_stop(arch, d0);
        }
        return yielded(d0);
    }
    match domains.get(caller) {
        Some(d) if after_trap(arch, domains, d, vcpu) == After::Park => After::Park,
        Some(d) => yielded(d),
        None => After::Resume,
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::contract::fake::{Call, FakeArch};
    use crate::domain::lifecycle::MachineAction;
    use crate::domain::{RamBanks, ShutdownReason};

    fn machine() -> (FakeArch, Domains) {
        let domains = Domains::new();
        let _ = domains.insert(crate::hypercall::testmem::dom0());
        let _ = domains.insert(Domain::new(1, false, false, RamBanks::default()));
        (FakeArch::new(0x8000_0000, 1 << 20), domains)
    }

    #[test]
    fn a_running_domain_resumes_and_nothing_is_asked_of_the_machine() {
        let (arch, domains) = machine();
        for id in [0, 1] {
            assert_eq!(after_trap(&arch, &domains, domains.get(id).unwrap(), 0), After::Resume);
        }
        assert_eq!(domu_stop(&arch, &domains, 1, 0, false), After::Resume);
        assert!(arch.calls().is_empty(), "{:?}", arch.calls());
    }

    #[test]
    fn dom0_stopping_stops_the_machine_as_xen_does() {
        for (reason, want) in [
            (ShutdownReason::PowerOff, MachineAction::PowerOff),
            (ShutdownReason::Reboot, MachineAction::Restart { delay_ms: 0 }),
            (ShutdownReason::Crash, MachineAction::Restart { delay_ms: lifecycle::CRASH_RESTART_DELAY_MS }),
        ] {
            let (arch, domains) = machine();
            let d0 = domains.get(0).unwrap();
            d0.set_shutdown(reason);
            // On hardware the machine stops inside; the fake returns and the CPU would resume.
            assert_eq!(after_trap(&arch, &domains, d0, 0), After::Resume);
            assert_eq!(arch.stops(), [want], "{reason:?}");
            assert_eq!(arch.calls().first(), Some(&Call::IommuEvents), "IOMMU faults are reported before the shutdown line");
            // The same from the hypercall path.
            let (arch, domains) = machine();
            domains.get(0).unwrap().set_shutdown(reason);
            assert_eq!(after_hypercall(&arch, &domains, 0, 0), After::Resume);
            assert_eq!(arch.stops(), [want]);
        }
    }

    #[test]
    fn a_domu_that_stops_parks_its_cpu_tells_dom0_and_leaves_the_machine_running() {
        for reason in [ShutdownReason::PowerOff, ShutdownReason::Reboot, ShutdownReason::Crash] {
            let (arch, domains) = machine();
            let d1 = domains.get(1).unwrap();
            d1.set_shutdown(reason);
            assert_eq!(after_trap(&arch, &domains, d1, 0), After::Park, "{reason:?}");
            assert!(arch.stops().is_empty(), "a domU never stops the machine");
            assert_eq!(arch.calls(), [Call::IommuEvents, Call::Upcall(0)]);
            let (arch, domains) = machine();
            domains.get(1).unwrap().set_shutdown(reason);
            assert_eq!(after_hypercall(&arch, &domains, 1, 0), After::Park);
            assert!(arch.stops().is_empty() && arch.calls().contains(&Call::Upcall(0)));
        }
    }

    #[test]
    fn a_domu_vcpu_turned_off_parks_without_telling_dom0() {
        let (arch, domains) = machine();
        let d1 = domains.get(1).unwrap();
        d1.set_vcpu_off(0, 1);
        assert_eq!(after_trap(&arch, &domains, d1, 0), After::Park);
        assert!(arch.calls().is_empty(), "{:?}", arch.calls());
        // dom0's vCPUs cannot turn themselves off this way (PSCI CPU_OFF is denied to it).
        let d0 = domains.get(0).unwrap();
        d0.set_vcpu_off(0, 1);
        assert_eq!(after_trap(&arch, &domains, d0, 0), After::Resume);
    }

    #[test]
    fn a_paused_domu_with_a_cpu_of_its_own_waits_marked_until_unpaused_or_destroyed() {
        let (arch, domains) = machine();
        let d = domains.get(1).unwrap();
        d.controller_pause().unwrap();
        // The vCPU waits in the trap (sched=null here): the pause sees the mark, the unpause
        // lets it go back into the guest with the mark cleared.
        std::thread::scope(|s| {
            s.spawn(|| {
                while !d.waits_paused(0) {
                    std::thread::yield_now();
                }
                d.controller_unpause().unwrap();
            });
            assert_eq!(after_trap(&arch, &domains, d, 0), After::Resume);
        });
        assert!(!d.waits_paused(0));
        // A destroy while it waits: the CPU stops.
        d.controller_pause().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                while !d.waits_paused(0) {
                    std::thread::yield_now();
                }
                d.set_dying();
            });
            assert_eq!(after_trap(&arch, &domains, d, 0), After::Park);
        });
        assert!(!d.waits_paused(0));
    }

    #[test]
    fn a_yield_from_the_sched_op_is_reported_once_and_a_stop_wins_over_it() {
        use crate::hypercall::guest_phys::env::Env;
        let mut e = Env::new();
        // SCHEDOP_yield from dom0's vCPU 0 and dom1's vCPU 0, through the dispatcher.
        for caller in [0, 1] {
            let r = e.call(caller, |cx| crate::hypercall::dispatch(cx, guest_abi::hypercall::HYPERVISOR_SCHED_OP, [u64::from(guest_abi::sched::SCHEDOP_YIELD), 0, 0, 0, 0]));
            assert_eq!(r, 0);
            assert_eq!(after_hypercall(&e.arch, &e.domains, caller, 1), After::Resume, "another vCPU's request is not this one's");
            assert_eq!(after_hypercall(&e.arch, &e.domains, caller, 0), After::Yield);
            assert_eq!(after_hypercall(&e.arch, &e.domains, caller, 0), After::Resume, "taken once");
        }
        // Other sched_ops ask for no yield.
        let r = e.call(1, |cx| crate::hypercall::dispatch(cx, guest_abi::hypercall::HYPERVISOR_SCHED_OP, [99, 0, 0, 0, 0]));
        assert!(r < 0);
        assert_eq!(after_hypercall(&e.arch, &e.domains, 1, 0), After::Resume);
        // A domU that yields and stops in one go (a multicall) parks.
        let (arch, domains) = machine();
        let d1 = domains.get(1).unwrap();
        d1.request_yield(0);
        d1.set_shutdown(ShutdownReason::PowerOff);
        assert_eq!(after_hypercall(&arch, &domains, 1, 0), After::Park);
    }
}
