//! Running the vCPUs of a domain the toolstack made (XEN_DOMCTL_createdomain). Its first
//! unpause starts every vCPU the toolstack gave an online state (libxl gives vCPU 0 one: the
//! kernel's entry in the PC, its device tree's address in x0); PSCI CPU_ON from the guest
//! starts the others. A pause of it, or of a dom0less domain built at boot, takes its vCPUs off
//! their CPUs (the CPUs running them are kicked, and the pause returns once each has left at
//! its next scheduling point) and the unpause puts them back; its destroy stops every one of
//! them before anything it holds is given back.
//!
//! Its vCPUs share the CPUs with dom0's under `sched=credit`: the scheduler places each (the
//! CPU its hard affinity allows that holds the fewest vCPUs). Under `null` every CPU belongs
//! to one vCPU already (dom0's, a dom0less guest's), so the domain does not run there: the
//! start is refused with a line in the log, and the unpause itself still succeeds, as Xen's
//! does for a domain whose vCPUs have nowhere to run.

use crate::domain::Domain;
use crate::contract::{Arch, CpuStart};
use crate::domain::vcpu::Cpus;
use crate::sched::{SchedPolicy, Scheduler, State, VcpuRef};
use alloc::format;
use alloc::string::String;

/// Start vCPU `vcpu` of `d` at `entry` with `x0` in its first argument register (the rest
/// of its registers as the architecture resets them: EL1h, interrupts masked, MMU off, which
/// is the state libxl gives a Linux kernel): placed by `sched`, started by `arch`. Returns the
/// CPU it is homed on.
pub fn start_vcpu(sched: &Scheduler, cpus: &Cpus, arch: &dyn Arch, d: &Domain, vcpu: u32, entry: u64, x0: u64) -> Result<usize, String> {
    if sched.policy() != SchedPolicy::Credit {
        return Err(format!("d{}: vCPU {vcpu} not started: every CPU runs a vCPU of its own under sched=null (a domain the toolstack makes runs under sched=credit)", d.id));
    }
    if vcpu >= d.max_vcpus || vcpu as usize >= crate::domain::vcpu::MAX_VCPUS {
        return Err(format!("d{}: no vCPU {vcpu}", d.id));
    }
    if d.dying() {
        return Err(format!("d{}: being destroyed", d.id));
    }
    let Some((vttbr, vtcr)) = d.p2m.read().as_ref().map(|p| (p.vttbr(), p.vtcr())) else {
        return Err(format!("d{}: no stage 2", d.id));
    };
    let hard = d.placement.lock().hard[vcpu as usize];
    let v = VcpuRef::new(d.id, vcpu);
    let (cpu, added) = match (sched.state(v), sched.cpu_of(v)) {
        // Turned off before (PSCI CPU_OFF): it keeps its home.
        (Some(State::Off), Some(c)) => (c, false),
        (Some(_), _) => return Err(format!("d{}: vCPU {vcpu} runs already", d.id)),
        (None, _) => (sched.add(v, None, hard).map_err(|e| format!("d{}: vCPU {vcpu}: the scheduler has no place for it ({e:?})", d.id))?, true),
    };
    let start = CpuStart { cpu, mpidr: cpus.host_mpidr(cpu), domain: d.id, vcpu, vttbr, vtcr, entry, context: x0 };
    if let Err(e) = arch.start_cpu(&start) {
        if added {
            let _ = sched.remove_unless_running(v);
        }
        return Err(format!("d{}: vCPU {vcpu}: {e}", d.id));
    }
    d.placement.lock().cpu[vcpu as usize] = cpu as u32;
    Ok(cpu)
}

/// The unpause that leaves `d` running for the first time: start the vCPUs the toolstack gave
/// an online state. A vCPU that cannot start stays down (its reason logged). Returns how many
/// started; 0 when they had been started before.
pub fn start_domain(sched: &Scheduler, cpus: &Cpus, arch: &dyn Arch, d: &Domain) -> usize {
    if !d.by_toolstack || !d.mark_started() {
        return 0;
    }
    let states = d.start_context.lock().clone();
    let mut started = 0;
    for (v, c) in states.iter().enumerate() {
        let (Some(c), v) = (c, v as u32) else { continue };
        if d.vcpu_off(v) {
            continue;
        }
        match start_vcpu(sched, cpus, arch, d, v, c.pc, c.x[0]) {
            Ok(cpu) => {
                crate::log!("d{}: vCPU {v} starts at {:#x} (x0 {:#x}), home CPU {cpu}", d.id, c.pc, c.x[0]);
                started += 1;
            }
            Err(e) => {
                crate::log!("{e}");
                d.set_vcpu_down(v, true);
            }
        }
    }
    started
}

/// A pause of a running domain, synchronous as Xen's (`vcpu_sleep_sync`). Under `credit` its
/// vCPUs waiting for a CPU (runnable or blocked; their registers are saved) are taken off the
/// run queues now; the CPUs running the others are kicked, so that each reaches a scheduling
/// point and the vCPU leaves (the architecture's switch path sees the pause). A vCPU with a CPU
/// of its own (a dom0less guest under `null`, in `cpus`) leaves the guest at the kick's
/// interrupt and waits paused in the hypervisor on that CPU, as Xen's null scheduler runs the
/// idle vCPU there. This waits for every vCPU, trying `tries` times (`relax` between tries).
/// The wait ends early when the domain is unpaused or destroyed meanwhile (its vCPUs may then
/// run on or are stopped by the destroy). `Err` names a vCPU still running when the tries ran
/// out: it leaves at its CPU's next interrupt.
pub fn pause_domain(sched: &Scheduler, cpus: &Cpus, arch: &dyn Arch, d: &Domain, tries: u32, mut relax: impl FnMut()) -> Result<(), StillRunning> {
    let n = d.max_vcpus.min(crate::domain::vcpu::MAX_VCPUS as u32);
    let mut kicked = [None; crate::domain::vcpu::MAX_VCPUS];
    let mut left = tries;
    loop {
        if !d.paused() || d.dying() {
            return Ok(());
        }
        let mut running = None;
        for v in 0..n {
            let on = match cpus.cpu_of(d.id, v as usize) {
                Some(cpu) if !d.waits_paused(v) && !d.vcpu_off(v) && d.shutdown().is_none() => Err(cpu),
                Some(_) => Ok(()),
                None => sched.stop_unless_running(VcpuRef::new(d.id, v)),
            };
            if let Err(cpu) = on {
                if kicked[v as usize] != Some(cpu) {
                    arch.kick_cpu(cpu);
                    kicked[v as usize] = Some(cpu);
                }
                running.get_or_insert(StillRunning { vcpu: v, cpu });
            }
        }
        let Some(e) = running else { return Ok(()) };
        if left == 0 {
            return Err(e);
        }
        left -= 1;
        relax();
    }
}

/// The unpause of a domain whose vCPUs a pause took off their CPUs: each that is up goes back
/// in its home CPU's run queue (that CPU is kicked).
pub fn resume_domain(sched: &Scheduler, arch: &dyn Arch, d: &Domain, now: u64) {
    for v in 0..d.max_vcpus.min(crate::domain::vcpu::MAX_VCPUS as u32) {
        let r = VcpuRef::new(d.id, v);
        if d.vcpu_off(v) || sched.state(r) != Some(State::Off) {
            continue;
        }
        if let Some(cpu) = sched.start(r, now) {
            arch.kick_cpu(cpu);
        }
    }
}

/// Why [`stop_domain`] gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StillRunning {
    pub vcpu: u32,
    pub cpu: usize,
}

/// Before `d` is destroyed: mark it dying and take every vCPU of it out of the scheduler. One
/// that is on a CPU leaves at that CPU's next scheduling point (it is kicked, and the switch
/// path stops a dying domain's vCPU); one that has a CPU of its own (a dom0less guest under
/// `sched=null`, in `cpus`) leaves when the kick's interrupt finds its domain dying, and the
/// CPU is released. This waits for them, trying `tries` times per vCPU (`relax` between
/// tries). `Err` names a vCPU still running when the tries ran out: nothing may be given back
/// then.
pub fn stop_domain(sched: &Scheduler, cpus: &Cpus, arch: &dyn Arch, d: &Domain, tries: u32, mut relax: impl FnMut()) -> Result<(), StillRunning> {
    d.set_dying();
    for v in 0..d.max_vcpus.min(crate::domain::vcpu::MAX_VCPUS as u32) {
        let mut kicked = false;
        let mut left = tries;
        while let Some(cpu) = cpus.cpu_of(d.id, v as usize) {
            if !kicked {
                arch.kick_cpu(cpu);
                kicked = true;
            }
            if left == 0 {
                return Err(StillRunning { vcpu: v, cpu });
            }
            left -= 1;
            relax();
        }
    }
    for v in 0..d.max_vcpus.min(crate::domain::vcpu::MAX_VCPUS as u32) {
        let r = VcpuRef::new(d.id, v);
        let mut kicked = None;
        let mut left = tries;
        loop {
            let ran = sched.run_time(r).unwrap_or(0);
            match sched.remove_unless_running(r) {
                Ok(()) => {
                    d.note_ran(ran);
                    break;
                }
                Err(cpu) => {
                    if kicked != Some(cpu) {
                        arch.kick_cpu(cpu);
                        kicked = Some(cpu);
                    }
                    if left == 0 {
                        return Err(StillRunning { vcpu: v, cpu });
                    }
                    left -= 1;
                    relax();
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::fake::{Call, FakeArch};
    use guest_abi::toolstack::VcpuGuestContext;

    const HZ: u64 = 1_000_000;

    fn machine(policy: SchedPolicy) -> (Scheduler, Cpus, FakeArch) {
        let sched = Scheduler::new();
        sched.configure(policy, HZ, 2, false);
        // dom0's two vCPUs, homed on CPUs 0 and 1 and running there.
        for v in 0..2 {
            sched.add(VcpuRef::new(0, v), Some(v as usize), u64::MAX).unwrap();
            sched.start(VcpuRef::new(0, v), 0);
            sched.schedule(v as usize, 0);
        }
        let cpus = Cpus::new();
        cpus.setup_dom0(&[0x8000_0000, 0x8000_0001], 2);
        (sched, cpus, FakeArch::new(0x8000_0000, 1 << 20))
    }

    /// A domain as createdomain, max_vcpus and setvcpucontext leave it: `vcpus` vCPUs, vCPU 0
    /// given an online state, a stage 2.
    fn domain(arch: &FakeArch, id: u16, vcpus: u32) -> Domain {
        let mut d = Domain::new_by_toolstack(id, vcpus, [0; 16]);
        arch.with_machine(&mut |m| {
            *d.p2m.get_mut() = Some(crate::mm::Stage2::new(crate::domain::registry::vmid_of(id), crate::mm::Stage2Config::DOMAIN, &mut *m.frames, m.mem).unwrap());
        });
        d.make_vcpus();
        let mut c = VcpuGuestContext { pc: 0x4020_0000, flags: guest_abi::toolstack::VGCF_ONLINE, ..Default::default() };
        c.x[0] = 0x4800_0000;
        d.start_context.lock()[0] = Some(c);
        d.set_vcpu_down(0, false);
        d
    }

    #[test]
    fn the_first_unpause_starts_the_online_vcpus_where_the_scheduler_places_them() {
        let (sched, cpus, arch) = machine(SchedPolicy::Credit);
        let d = domain(&arch, 1, 2);
        assert_eq!(start_domain(&sched, &cpus, &arch, &d), 1, "vCPU 1 was given no state: it waits for CPU_ON");
        let s = arch.started();
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].domain, s[0].vcpu, s[0].entry, s[0].context), (1, 0, 0x4020_0000, 0x4800_0000));
        assert_eq!(s[0].mpidr, cpus.host_mpidr(s[0].cpu));
        assert_eq!(sched.cpu_of(VcpuRef::new(1, 0)), Some(s[0].cpu));
        assert!(d.started());
        // A second unpause starts nothing again.
        assert_eq!(start_domain(&sched, &cpus, &arch, &d), 0);
        // CPU_ON of vCPU 1: the other CPU (the fewest vCPUs).
        assert!(d.claim_vcpu_on(1));
        assert!(!d.claim_vcpu_on(1), "one claim only");
        let cpu1 = start_vcpu(&sched, &cpus, &arch, &d, 1, 0x4020_1000, 7).unwrap();
        assert_ne!(cpu1, s[0].cpu);
        assert_eq!(d.placement.lock().cpu[1], cpu1 as u32);
        assert!(start_vcpu(&sched, &cpus, &arch, &d, 2, 0, 0).is_err(), "no vCPU 2");
    }

    #[test]
    fn a_hard_affinity_is_kept_and_a_firmware_failure_leaves_no_trace() {
        let (sched, cpus, mut arch) = machine(SchedPolicy::Credit);
        let d = domain(&arch, 1, 1);
        d.placement.lock().hard[0] = 0b10;
        assert_eq!(start_vcpu(&sched, &cpus, &arch, &d, 0, 0x4000_0000, 0), Ok(1));
        let e = domain(&arch, 2, 1);
        e.placement.lock().hard[0] = 0b100;
        assert!(start_vcpu(&sched, &cpus, &arch, &e, 0, 0x4000_0000, 0).is_err(), "no CPU 2 on this machine");
        assert_eq!(sched.state(VcpuRef::new(2, 0)), None);
        arch.broken_cpus = alloc::vec![0, 1];
        let f = domain(&arch, 3, 1);
        assert!(start_vcpu(&sched, &cpus, &arch, &f, 0, 0x4000_0000, 0).is_err());
        assert_eq!(sched.state(VcpuRef::new(3, 0)), None, "taken out again");
    }

    #[test]
    fn under_null_a_toolstack_domain_does_not_start_and_its_vcpus_stay_down() {
        let (sched, cpus, arch) = machine(SchedPolicy::Null);
        let d = domain(&arch, 1, 1);
        assert_eq!(start_domain(&sched, &cpus, &arch, &d), 0);
        assert!(arch.started().is_empty());
        assert!(d.vcpu_off(0));
    }

    #[test]
    fn destroy_stops_every_vcpu_waiting_for_one_on_a_cpu() {
        let (sched, cpus, arch) = machine(SchedPolicy::Credit);
        let d = domain(&arch, 1, 2);
        start_domain(&sched, &cpus, &arch, &d);
        d.claim_vcpu_on(1);
        start_vcpu(&sched, &cpus, &arch, &d, 1, 0x4000_0000, 0).unwrap();
        // The fake does not run the scheduler: start them, and vCPU 0 runs on its CPU.
        let home0 = sched.cpu_of(VcpuRef::new(1, 0)).unwrap();
        sched.start(VcpuRef::new(1, 0), 0);
        sched.start(VcpuRef::new(1, 1), 0);
        // dom0's vCPU on that CPU blocks: the domU's vCPU 0 runs.
        sched.block(home0, 1, None);
        assert_eq!(sched.state(VcpuRef::new(1, 0)), Some(State::Running(home0)));
        // It runs a while (the tick accounts it).
        sched.schedule(home0, 1001);
        let ran = sched.run_time(VcpuRef::new(1, 0)).unwrap();
        assert!(ran > 0);
        // Its CPU does not get to a scheduling point within the tries: refused, nothing removed.
        assert_eq!(stop_domain(&sched, &cpus, &arch, &d, 3, || {}), Err(StillRunning { vcpu: 0, cpu: home0 }));
        assert!(d.dying());
        assert!(arch.calls().contains(&Call::Kick(home0)));
        assert_eq!(arch.calls().iter().filter(|c| **c == Call::Kick(home0)).count(), 1, "kicked once while it stays there");
        // The CPU stops it (as the switch path does for a dying domain): the destroy goes on.
        let mut relaxed = 0;
        let r = stop_domain(&sched, &cpus, &arch, &d, 10, || {
            relaxed += 1;
            sched.stop(VcpuRef::new(1, 0));
        });
        assert_eq!(r, Ok(()));
        assert_eq!(relaxed, 1);
        assert_eq!(d.ran_ticks(), ran, "its vCPUs' time, kept for getdomaininfo");
        for v in 0..2 {
            assert_eq!(sched.state(VcpuRef::new(1, v)), None);
        }
        // A dying domain's vCPU does not start again.
        assert!(start_vcpu(&sched, &cpus, &arch, &d, 1, 0x4000_0000, 0).is_err());
    }

    #[test]
    fn a_pause_kicks_the_cpus_running_it_and_the_unpause_queues_them_again() {
        let (sched, cpus, arch) = machine(SchedPolicy::Credit);
        let d = domain(&arch, 1, 1);
        start_domain(&sched, &cpus, &arch, &d);
        let r = VcpuRef::new(1, 0);
        let home = sched.cpu_of(r).unwrap();
        sched.start(r, 0);
        sched.block(home, 1, None);
        assert_eq!(sched.state(r), Some(State::Running(home)));
        d.controller_pause().unwrap();
        // The pause returns once its CPU took it off (the switch path for a paused domain,
        // which the kick brings about).
        pause_taken_off_at(&sched, &cpus, &arch, &d, r, 3);
        assert_eq!(arch.calls().iter().filter(|c| **c == Call::Kick(home)).count(), 1, "kicked once");
        d.controller_unpause().unwrap();
        resume_domain(&sched, &arch, &d, 2);
        assert_eq!(sched.state(r), Some(State::Runnable));
        // A vCPU that is down stays off.
        let e = domain(&arch, 2, 1);
        e.set_vcpu_down(0, true);
        sched.add(VcpuRef::new(2, 0), None, u64::MAX).unwrap();
        resume_domain(&sched, &arch, &e, 3);
        assert_eq!(sched.state(VcpuRef::new(2, 0)), Some(State::Off));
    }

    #[test]
    fn a_pause_waits_bounded_and_stops_waiting_when_unpaused() {
        let (sched, cpus, arch) = machine(SchedPolicy::Credit);
        let d = domain(&arch, 1, 2);
        // The toolstack's unpause that starts it.
        d.controller_unpause().unwrap();
        start_domain(&sched, &cpus, &arch, &d);
        d.claim_vcpu_on(1);
        start_vcpu(&sched, &cpus, &arch, &d, 1, 0x4000_0000, 0).unwrap();
        let (r0, r1) = (VcpuRef::new(1, 0), VcpuRef::new(1, 1));
        sched.start(r0, 0);
        sched.start(r1, 0);
        let home0 = sched.cpu_of(r0).unwrap();
        sched.block(home0, 1, None);
        assert_eq!(sched.state(r0), Some(State::Running(home0)));
        // Its CPU never gets to a scheduling point: the pause gives up after its tries, the
        // vCPU that waited for a CPU is off already.
        d.controller_pause().unwrap();
        assert_eq!(pause_domain(&sched, &cpus, &arch, &d, 4, || {}), Err(StillRunning { vcpu: 0, cpu: home0 }));
        assert_eq!(sched.state(r1), Some(State::Off));
        // An unpause on another CPU while the pause waits ends the wait: the vCPU runs on.
        let mut n = 0;
        assert_eq!(pause_domain(&sched, &cpus, &arch, &d, 1000, || {
            n += 1;
            if n == 2 {
                d.controller_unpause().unwrap();
            }
        }), Ok(()));
        assert_eq!(n, 2);
        assert_eq!(sched.state(r0), Some(State::Running(home0)));
    }

    /// A pause of `d` whose running vCPU `r` its CPU takes off at the wait's `at`-th try: it
    /// returns then, with `r` off.
    fn pause_taken_off_at(sched: &Scheduler, cpus: &Cpus, arch: &FakeArch, d: &Domain, r: VcpuRef, at: u32) {
        let mut relaxed = 0;
        assert_eq!(pause_domain(sched, cpus, arch, d, 10, || {
            relaxed += 1;
            if relaxed == at {
                sched.stop(r);
            }
        }), Ok(()));
        assert_eq!(relaxed, at);
        assert_eq!(sched.state(r), Some(State::Off));
    }

    /// A dom0less domain as boot builds it under `credit`: one vCPU, placed by the scheduler,
    /// started from boot.
    fn dom0less_under_credit(sched: &Scheduler, id: u16) -> Domain {
        let d = Domain::new(id, false, false, crate::domain::RamBanks::default());
        sched.add(VcpuRef::new(id, 0), None, u64::MAX).unwrap();
        sched.start(VcpuRef::new(id, 0), 0);
        d
    }

    #[test]
    fn a_dom0less_guest_sharing_a_cpu_is_paused_and_unpaused_like_a_toolstack_domain() {
        let (sched, cpus, arch) = machine(SchedPolicy::Credit);
        let d = dom0less_under_credit(&sched, 1);
        let r = VcpuRef::new(1, 0);
        let home = sched.cpu_of(r).unwrap();
        // dom0's vCPU there blocks: the domU's runs.
        sched.block(home, 1, None);
        assert_eq!(sched.state(r), Some(State::Running(home)));
        assert!(d.started(), "built at boot: it runs from the start");
        d.controller_pause().unwrap();
        // Its CPU's scheduling point (the kick's interrupt) takes it off.
        pause_taken_off_at(&sched, &cpus, &arch, &d, r, 2);
        assert_eq!(arch.calls().iter().filter(|c| **c == Call::Kick(home)).count(), 1);
        // Off, an interrupt does not wake it.
        assert_eq!(sched.wake(r, 2), None);
        d.controller_unpause().unwrap();
        resume_domain(&sched, &arch, &d, 3);
        assert_eq!(sched.state(r), Some(State::Runnable));
        assert_eq!(arch.calls().iter().filter(|c| **c == Call::Kick(home)).count(), 2, "its CPU kicked to run it");
        // A pause finds it waiting for its CPU: off at once, no kick, no wait.
        d.controller_pause().unwrap();
        assert_eq!(pause_domain(&sched, &cpus, &arch, &d, 0, || panic!("no wait")), Ok(()));
        assert_eq!(sched.state(r), Some(State::Off));
        assert_eq!(arch.calls().iter().filter(|c| **c == Call::Kick(home)).count(), 2);
    }

    #[test]
    fn a_pause_of_a_guest_with_a_cpu_of_its_own_waits_until_it_waits_paused_there() {
        let (sched, cpus, arch) = machine(SchedPolicy::Null);
        let d = Domain::new(1, false, false, crate::domain::RamBanks::default());
        cpus.give_to_domu(3, 1, 0);
        d.controller_pause().unwrap();
        // Its CPU never takes the kick within the tries: reported, kicked once.
        assert_eq!(pause_domain(&sched, &cpus, &arch, &d, 3, || {}), Err(StillRunning { vcpu: 0, cpu: 3 }));
        assert_eq!(arch.calls().iter().filter(|c| **c == Call::Kick(3)).count(), 1);
        // The kick's interrupt leaves the guest and waits paused on the CPU (`after::domu_stop`).
        let mut n = 0;
        assert_eq!(pause_domain(&sched, &cpus, &arch, &d, 10, || {
            n += 1;
            if n == 2 {
                d.set_waits_paused(0, true);
            }
        }), Ok(()));
        assert_eq!(n, 2);
        assert_eq!(cpus.cpu_of(1, 0), Some(3), "the CPU stays the guest's");
        // An unpause ends a wait that has not finished; a destroy too.
        d.set_waits_paused(0, false);
        let mut n = 0;
        assert_eq!(pause_domain(&sched, &cpus, &arch, &d, 100, || {
            n += 1;
            d.controller_unpause().unwrap();
        }), Ok(()));
        assert_eq!(n, 1);
        d.controller_pause().unwrap();
        assert_eq!(pause_domain(&sched, &cpus, &arch, &d, 100, || d.set_dying()), Ok(()));
        // A guest that shut down (its CPU parks) is not waited for.
        let e = Domain::new(2, false, false, crate::domain::RamBanks::default());
        cpus.give_to_domu(2, 2, 0);
        e.set_shutdown(crate::domain::ShutdownReason::PowerOff);
        e.controller_pause().unwrap();
        assert_eq!(pause_domain(&sched, &cpus, &arch, &e, 0, || panic!("no wait")), Ok(()));
    }

    #[test]
    fn destroy_of_a_guest_with_a_cpu_of_its_own_waits_until_that_cpu_is_released() {
        let (sched, cpus, arch) = machine(SchedPolicy::Null);
        // A dom0less guest built at boot, its vCPU on CPU 3 (not in the scheduler).
        let d = Domain::new(1, false, false, crate::domain::RamBanks::default());
        cpus.give_to_domu(3, 1, 0);
        assert_eq!(stop_domain(&sched, &cpus, &arch, &d, 2, || {}), Err(StillRunning { vcpu: 0, cpu: 3 }));
        assert!(d.dying());
        assert_eq!(arch.calls().iter().filter(|c| **c == Call::Kick(3)).count(), 1);
        // The kick's interrupt finds the domain dying and parks the CPU, releasing it.
        let mut n = 0;
        assert_eq!(stop_domain(&sched, &cpus, &arch, &d, 10, || {
            n += 1;
            cpus.release(3);
        }), Ok(()));
        assert_eq!((n, cpus.cpu_of(1, 0)), (1, None));
    }
}
