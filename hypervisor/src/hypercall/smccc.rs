//! SMCCC calls a guest makes with `HVC #0` / `SMC #0`: the SMCCC architecture calls, Xen's
//! hypervisor-service calls and PSCI 1.1 (one vCPU per domain for now). The function ID is a
//! 32-bit value in w0; results go back in x0..x3.

use crate::contract::{Arch, CpuStart};
use crate::domain::vcpu::{Cpus, Power};
use crate::domain::{DomId, Domain, ShutdownReason};
use crate::spectre::{CallAction, Plan};
use guest_abi::smccc::*;
use spin::Once;

/// Xen's hypervisor-service UID (a71812dc-c698-4369-9acf-79d18ddee667), as Xen returns it in
/// w0..w3: each register holds four UUID bytes, first byte in the low bits.
const XEN_UID_REGS: [u64; 4] = [0xdc12_18a7, 0x6943_98c6, 0xd179_cf9a, 0x67e6_de8d];
/// Number of Xen hypervisor-service calls, and their revision (0.1).
const XEN_HYP_CALL_COUNT: u64 = 3;

/// PSCI 1.1.
const PSCI_VERSION_1_1: u64 = 0x1_0001;
/// SMCCC 1.1 (what Xen 4.17 reports).
const SMCCC_VERSION_1_1: u64 = 0x1_0001;
/// MIGRATE_INFO_TYPE: "Trusted OS not present or does not require migration".
const MIGRATE_NOT_REQUIRED: u64 = 2;

/// The speculative-execution plan decided at boot (`crate::spectre::decide`): what a guest's
/// ARCH_FEATURES query for the workarounds is told and what its workaround calls do. Until
/// boot has decided, nothing is offered.
static PLAN: Once<Plan> = Once::new();

pub fn set_plan(plan: Plan) {
    PLAN.call_once(|| plan);
}

fn plan() -> &'static Plan {
    PLAN.get().unwrap_or(&Plan::NOTHING)
}

/// A guest's workaround call that must reach the firmware, as (function ID, argument): a
/// WORKAROUND_1/3 the plan forwards, or a WORKAROUND_2 (x1: mitigation on if non-zero) when
/// the firmware's is dynamic (per-vCPU state, kept by the caller).
pub fn firmware_forward(x0: u64, x1: u64) -> Option<(u64, u64)> {
    forward_in(plan(), x0, x1)
}

fn forward_in(p: &Plan, x0: u64, x1: u64) -> Option<(u64, u64)> {
    match x0 as u32 {
        SMCCC_ARCH_WORKAROUND_1 if p.wa1_call == CallAction::Forward => Some((u64::from(SMCCC_ARCH_WORKAROUND_1), 0)),
        SMCCC_ARCH_WORKAROUND_3 if p.wa3_call == CallAction::Forward => Some((u64::from(SMCCC_ARCH_WORKAROUND_3), 0)),
        SMCCC_ARCH_WORKAROUND_2 if p.wa2_dynamic => Some((u64::from(SMCCC_ARCH_WORKAROUND_2), u64::from(x1 as u32 != 0))),
        _ => None,
    }
}

fn neg(v: i64) -> u64 {
    v as u64
}

/// Handle one SMCCC call; `args` are x1..x7. Returns x0..x3.
pub fn handle(dom: &Domain, x0: u64, args: [u64; 7]) -> [u64; 4] {
    let fid = x0 as u32;
    let one = |v: u64| [v, args[0], args[1], args[2]];
    match fid {
        SMCCC_VERSION => one(SMCCC_VERSION_1_1),
        SMCCC_ARCH_FEATURES => one(neg(arch_features(args[0] as u32))),
        SMCCC_HYP_CALL_COUNT => one(XEN_HYP_CALL_COUNT),
        SMCCC_HYP_UID => XEN_UID_REGS,
        SMCCC_HYP_REVISION => [0, 1, args[1], args[2]],
        PSCI_VERSION => one(PSCI_VERSION_1_1),
        PSCI_FEATURES => one(neg(psci_features(args[0] as u32))),
        PSCI_MIGRATE_INFO_TYPE => one(MIGRATE_NOT_REQUIRED),
        PSCI_SYSTEM_OFF => {
            dom.set_shutdown(ShutdownReason::PowerOff);
            one(0)
        }
        PSCI_SYSTEM_RESET => {
            dom.set_shutdown(ShutdownReason::Reboot);
            one(0)
        }
        PSCI_CPU_ON_32 | PSCI_CPU_ON_64 => {
            // vCPU 0 is the only one, and it is running.
            let target = args[0] & 0xff_00ff_ffff;
            let r = if target == 0 { PSCI_RET_ALREADY_ON } else { PSCI_RET_INVALID_PARAMETERS };
            one(neg(r))
        }
        PSCI_AFFINITY_INFO_32 | PSCI_AFFINITY_INFO_64 => {
            // Only vCPU 0 runs on this path (one vCPU, or a domU).
            let target = if fid == PSCI_AFFINITY_INFO_32 { args[0] & 0xffff_ffff } else { args[0] };
            one(neg(affinity_info(target, args[1] as u32, dom.max_vcpus, |v| v == 0)))
        }
        // A domU's vCPU turns itself off: it does not run again (the trap layer stops its
        // CPU), and the domain lives on without it, as on Xen. dom0's vCPUs are refused.
        PSCI_CPU_OFF if !dom.is_hardware => {
            dom.set_vcpu_off(0, super::toolstack::now_ns());
            one(0)
        }
        PSCI_CPU_OFF => one(neg(PSCI_RET_DENIED)),
        // A standby request: returning at once is a valid wake-up (nothing to wait for yet).
        PSCI_CPU_SUSPEND_32 | PSCI_CPU_SUSPEND_64 => one(0),
        // Offered workaround calls: done on the way in (the hypervisor's entry ran the
        // mitigation), or forwarded by the caller (`firmware_forward`) before this runs.
        SMCCC_ARCH_WORKAROUND_1 if plan().wa1_call != CallAction::Refuse => one(0),
        SMCCC_ARCH_WORKAROUND_3 if plan().wa3_call != CallAction::Refuse => one(0),
        SMCCC_ARCH_WORKAROUND_2 if plan().wa2_dynamic => one(0),
        _ => one(neg(SMCCC_RET_NOT_SUPPORTED)),
    }
}

/// A PSCI call's function number with the SMC64 bit cleared, and its x0..x3 (of an SMC32
/// call, the low 32 bits of each).
fn psci_call(x: [u64; 4]) -> (u32, impl Fn(usize) -> u64) {
    let fid = x[0] as u32;
    let mask = if fid & 0x4000_0000 == 0 { 0xffff_ffff } else { u64::MAX };
    (fid & !0x4000_0000, move |i: usize| x[i] & mask)
}

/// PSCI calls that concern dom0's other vCPUs (CPU_ON, AFFINITY_INFO) when it has more than
/// one, from `caller` with x0..x3 = `x`: x0's answer, or `None` to leave the call to [`handle`].
/// CPU_ON claims the vCPU in `cpus` and has `arch` power its CPU on with dom0's stage 2
/// (`stage2()`: VTTBR, VTCR) to enter at the guest's address.
pub fn psci_smp(cpus: &Cpus, arch: &dyn Arch, caller: DomId, x: [u64; 4], stage2: impl FnOnce() -> (u64, u64)) -> Option<u64> {
    if cpus.dom0_vcpus() <= 1 || caller != 0 {
        return None;
    }
    let (function, arg) = psci_call(x);
    let ret = match function {
        PSCI_CPU_ON_32 => {
            let (entry, context) = (arg(2), arg(3));
            let started = cpus.cpu_on(arg(1), |v| {
                let (vttbr, vtcr) = stage2();
                arch.start_cpu(&CpuStart { cpu: v, mpidr: cpus.host_mpidr(v), domain: 0, vcpu: v as u32, vttbr, vtcr, entry, context })
            });
            match started {
                Ok(_) => PSCI_RET_SUCCESS,
                Err((r, why)) => {
                    if let Some(why) = why {
                        crate::log!("d0: vCPU {}: {why}", arg(1) & 0xff);
                    }
                    r
                }
            }
        }
        PSCI_AFFINITY_INFO_32 => affinity_info(arg(1), arg(2) as u32, cpus.dom0_vcpus() as u32, |v| cpus.power(v as usize) != Power::Off),
        _ => return None,
    };
    Some(neg(ret))
}

/// PSCI calls from vCPU `vcpu` of a domU that may have several vCPUs (one the toolstack made,
/// or a dom0less one with more than one) (x0..x3 = `x`): CPU_ON starts vCPU n (MPIDR Aff0 = n, the other fields 0) at the entry
/// given, placed by `sched` (see `hypercall::domain_run`); AFFINITY_INFO reports which vCPUs are up;
/// CPU_OFF turns the calling vCPU off (the trap layer takes it off its CPU). `None` leaves the
/// call to [`handle`] (every other domain and call).
pub fn psci_domu(sched: &crate::sched::Scheduler, cpus: &Cpus, arch: &dyn Arch, dom: &Domain, vcpu: u32, x: [u64; 4]) -> Option<u64> {
    if dom.is_hardware || (!dom.by_toolstack && dom.max_vcpus <= 1) {
        return None;
    }
    let (function, arg) = psci_call(x);
    let ret = match function {
        PSCI_CPU_ON_32 => {
            let (target, entry, context) = (arg(1), arg(2), arg(3));
            let v = target & 0xff;
            if target & !0xff != 0 || v >= u64::from(dom.max_vcpus) {
                PSCI_RET_INVALID_PARAMETERS
            } else if !dom.claim_vcpu_on(v as u32) {
                PSCI_RET_ALREADY_ON
            } else {
                match crate::hypercall::domain_run::start_vcpu(sched, cpus, arch, dom, v as u32, entry, context) {
                    Ok(_) => PSCI_RET_SUCCESS,
                    Err(e) => {
                        crate::log!("{e}");
                        dom.set_vcpu_down(v as u32, true);
                        PSCI_RET_INTERNAL_FAILURE
                    }
                }
            }
        }
        PSCI_AFFINITY_INFO_32 => affinity_info(arg(1), arg(2) as u32, dom.max_vcpus, |v| !dom.vcpu_off(v)),
        // 0x8400_0002 (CPU_OFF) has no 64-bit form: only the exact number.
        _ if x[0] as u32 == PSCI_CPU_OFF => {
            dom.set_vcpu_off(vcpu, super::toolstack::now_ns());
            PSCI_RET_SUCCESS
        }
        _ => return None,
    };
    Some(neg(ret))
}

/// MPIDR fields AFFINITY_INFO compares at each lowest affinity level (0..=3).
const AFFINITY_MASKS: [u64; 4] = [0xff_00ff_ffff, 0xff_00ff_ff00, 0xff_00ff_0000, 0xff_0000_0000];
/// AFFINITY_INFO answers.
const AFFINITY_ON: i64 = 0;
const AFFINITY_OFF: i64 = 1;

/// PSCI AFFINITY_INFO for a domain of `vcpus` vCPUs (vCPU n has Aff0 = n), `is_on` telling
/// which run: ON if any vCPU matching `target` at `lowest_level` runs, else OFF (a vCPU the
/// domain does not have is simply off, as Xen answers); an unknown level is an invalid
/// parameter.
pub fn affinity_info(target: u64, lowest_level: u32, vcpus: u32, is_on: impl Fn(u32) -> bool) -> i64 {
    let Some(&mask) = AFFINITY_MASKS.get(lowest_level as usize) else { return PSCI_RET_INVALID_PARAMETERS };
    let t = target & mask;
    if (0..vcpus).any(|v| u64::from(v) & mask == t && is_on(v)) { AFFINITY_ON } else { AFFINITY_OFF }
}

/// SMCCC_ARCH_FEATURES: what is implemented. The workarounds are answered from the plan, in
/// which every answer is backed by a mitigation in force (the CPU's, the firmware's or the
/// hypervisor's own); one nothing provides is NOT_SUPPORTED, never "not required".
fn arch_features(fid: u32) -> i64 {
    arch_features_in(plan(), fid)
}

fn arch_features_in(p: &Plan, fid: u32) -> i64 {
    match fid {
        SMCCC_VERSION | SMCCC_ARCH_FEATURES => SMCCC_RET_SUCCESS,
        SMCCC_ARCH_WORKAROUND_1 => p.wa1.value(),
        SMCCC_ARCH_WORKAROUND_2 => p.wa2.value(),
        SMCCC_ARCH_WORKAROUND_3 => p.wa3.value(),
        _ => SMCCC_RET_NOT_SUPPORTED,
    }
}

fn psci_features(fid: u32) -> i64 {
    match fid {
        SMCCC_VERSION | PSCI_VERSION | PSCI_FEATURES | PSCI_CPU_OFF | PSCI_CPU_SUSPEND_32 | PSCI_CPU_SUSPEND_64 | PSCI_CPU_ON_32 | PSCI_CPU_ON_64
        | PSCI_AFFINITY_INFO_32 | PSCI_AFFINITY_INFO_64 | PSCI_MIGRATE_INFO_TYPE
        | PSCI_SYSTEM_OFF | PSCI_SYSTEM_RESET => PSCI_RET_SUCCESS,
        _ => PSCI_RET_NOT_SUPPORTED,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testmem::dom0;
    use super::*;

    #[test]
    fn dom0_cpu_on_and_affinity_info_through_the_arch() {
        use crate::contract::fake::FakeArch;
        let arch = FakeArch { broken_cpus: alloc::vec![3], ..FakeArch::new(0x8000_0000, 1 << 20) };
        let cpus = Cpus::new();
        cpus.setup_dom0(&[0x8000_0000, 0x8000_0001, 0x8000_0002, 0x8000_0003], 4);
        let stage2 = || (1 << 48 | 0x4100_0000, 0x8002_3558);
        let call = |x: [u64; 4]| psci_smp(&cpus, &arch, 0, x, stage2);
        let r = |v: i64| Some(v as u64);
        let on = |target: u64, entry: u64| [u64::from(PSCI_CPU_ON_64), target, entry, 0xc0de];
        let info = |target: u64| [u64::from(PSCI_AFFINITY_INFO_64), target, 0, 0];
        assert_eq!(call(info(1)), r(1), "vCPU 1 starts OFF");
        assert_eq!(call(on(1, 0x4020_0000)), r(PSCI_RET_SUCCESS));
        assert_eq!(
            arch.started(),
            [CpuStart { cpu: 1, mpidr: 0x8000_0001, domain: 0, vcpu: 1, vttbr: 1 << 48 | 0x4100_0000, vtcr: 0x8002_3558, entry: 0x4020_0000, context: 0xc0de }]
        );
        // ON_PENDING until its CPU enters the guest; AFFINITY_INFO counts it as on.
        assert_eq!(call(on(1, 0x4020_0000)), r(PSCI_RET_ON_PENDING));
        assert_eq!(call(info(1)), r(0));
        cpus.started(1);
        assert_eq!(call(on(1, 0x4020_0000)), r(PSCI_RET_ALREADY_ON));
        // SMC32: the upper halves of the arguments are ignored.
        let on32 = [u64::from(PSCI_CPU_ON_32), 0xffff_ffff_0000_0002, 0xdead_0000_4030_0000, 7];
        assert_eq!(call(on32), r(PSCI_RET_SUCCESS));
        assert_eq!(arch.started()[1].entry, 0x4030_0000);
        assert_eq!((arch.started()[1].cpu, arch.started()[1].context), (2, 7));
        // Not a vCPU of dom0's, or beyond Aff0.
        for t in [4, 0x100, 0x1_0000] {
            assert_eq!(call(on(t, 0x4020_0000)), r(PSCI_RET_INVALID_PARAMETERS), "{t:#x}");
        }
        // The firmware cannot start CPU 3: INTERNAL_FAILURE and the vCPU stays OFF.
        assert_eq!(call(on(3, 0x4020_0000)), r(PSCI_RET_INTERNAL_FAILURE));
        assert_eq!(cpus.power(3), Power::Off);
        assert_eq!(call(info(3)), r(1));
        // Affinity level 1 covers all four vCPUs (Aff1 = 0): on; an unknown level is invalid.
        assert_eq!(call([u64::from(PSCI_AFFINITY_INFO_64), 3, 1, 0]), r(0));
        assert_eq!(call([u64::from(PSCI_AFFINITY_INFO_64), 0, 4, 0]), r(PSCI_RET_INVALID_PARAMETERS));
        // Everything else, and other domains' calls, go to `handle`.
        assert_eq!(call([u64::from(PSCI_VERSION), 0, 0, 0]), None);
        assert_eq!(psci_smp(&cpus, &arch, 1, on(1, 0), stage2), None);
        assert_eq!(arch.started().len(), 2);
        // dom0 with one vCPU: `handle` answers (only vCPU 0, which runs).
        let one = Cpus::new();
        one.setup_dom0(&[0x8000_0000, 0x8000_0001], 1);
        assert_eq!(psci_smp(&one, &arch, 0, on(1, 0), stage2), None);
    }

    #[test]
    fn affinity_info_answers_on_off_or_invalid() {
        let on = |v| v != 2;
        assert_eq!(affinity_info(0, 0, 4, on), AFFINITY_ON);
        assert_eq!(affinity_info(2, 0, 4, on), AFFINITY_OFF, "a vCPU that is off");
        assert_eq!(affinity_info(7, 0, 4, on), AFFINITY_OFF, "a vCPU the domain does not have");
        assert_eq!(affinity_info(0x8000_0003, 0, 4, on), AFFINITY_ON, "bit 31 is not an affinity field");
        assert_eq!(affinity_info(0x5, 1, 4, on), AFFINITY_ON, "level 1 ignores Aff0");
        assert_eq!(affinity_info(0x100, 1, 4, on), AFFINITY_OFF, "no vCPU in cluster 1");
        assert_eq!(affinity_info(0, 4, 4, on), PSCI_RET_INVALID_PARAMETERS);
        let d = dom0();
        assert_eq!(handle(&d, u64::from(PSCI_AFFINITY_INFO_64), [1, 0, 0, 0, 0, 0, 0])[0] as i64, AFFINITY_OFF);
        assert_eq!(handle(&d, u64::from(PSCI_AFFINITY_INFO_64), [0, 1, 0, 0, 0, 0, 0])[0] as i64, AFFINITY_ON);
    }

    #[test]
    fn power_calls_of_a_domu_stop_only_that_domu() {
        let d0 = dom0();
        let u = Domain::new(1, false, false, Default::default());
        assert_eq!(handle(&u, u64::from(PSCI_CPU_OFF), [0; 7])[0], 0);
        assert!(u.vcpu_off(0));
        assert_eq!(u.shutdown(), None, "CPU_OFF of the last vCPU is not a shutdown");
        assert_eq!(handle(&u, u64::from(PSCI_SYSTEM_RESET), [0; 7])[0], 0);
        assert_eq!(u.shutdown(), Some(ShutdownReason::Reboot));
        assert_eq!(handle(&u, u64::from(PSCI_CPU_ON_64), [1, 0x4000_0000, 0, 0, 0, 0, 0])[0] as i64, PSCI_RET_INVALID_PARAMETERS);
        assert_eq!((d0.shutdown(), d0.vcpu_off(0)), (None, false), "dom0 untouched");
        assert_eq!(handle(&d0, u64::from(PSCI_CPU_OFF), [0; 7])[0] as i64, PSCI_RET_DENIED);
    }

    #[test]
    fn versions_and_unknown() {
        let mut d = dom0();
        assert_eq!(handle(&mut d, u64::from(PSCI_VERSION), [0; 7])[0], 0x10001);
        assert_eq!(handle(&mut d, u64::from(SMCCC_VERSION), [0; 7])[0], 0x10001);
        assert_eq!(handle(&mut d, 0x8200_0000, [0; 7])[0] as i64, -1);
        // The function ID is w0: upper bits of x0 are ignored.
        assert_eq!(handle(&mut d, (1 << 40) | u64::from(PSCI_VERSION), [0; 7])[0], 0x10001);
    }

    #[test]
    fn features_and_power() {
        let mut d = dom0();
        let f = |d: &mut Domain, id: u32| handle(d, u64::from(PSCI_FEATURES), [u64::from(id), 0, 0, 0, 0, 0, 0])[0] as i64;
        assert_eq!(f(&mut d, PSCI_SYSTEM_OFF), 0);
        assert_eq!(f(&mut d, PSCI_CPU_SUSPEND_64), 0);
        assert_eq!(f(&mut d, PSCI_MIGRATE_64), -1);
        assert_eq!(f(&mut d, 0x1234), -1);
        let wa = handle(&mut d, u64::from(SMCCC_ARCH_FEATURES), [u64::from(SMCCC_ARCH_WORKAROUND_1), 0, 0, 0, 0, 0, 0]);
        assert_eq!(wa[0] as i64, -1, "a workaround not in force is never reported as not required");
        assert_eq!(d.shutdown(), None);
        handle(&mut d, u64::from(PSCI_SYSTEM_OFF), [0; 7]);
        assert_eq!(d.shutdown(), Some(ShutdownReason::PowerOff));
    }

    /// A firmware that implements the workarounds (emulated): what guests are told and what
    /// reaches the firmware follow the plan.
    #[test]
    fn workarounds_follow_the_plan() {
        use crate::spectre::{decide, Firmware, HostCpu};
        let a57 = HostCpu { midr: 0x411f_d070, pfr0: 0x1122, ..HostCpu::default() };
        let fw = Firmware { wa1: Some(0), wa2: Some(0), wa3: Some(-1), smc: false };
        let p = decide(&a57, &fw);
        assert_eq!(arch_features_in(&p, SMCCC_ARCH_WORKAROUND_1), 0);
        assert_eq!(arch_features_in(&p, SMCCC_ARCH_WORKAROUND_2), 0);
        // Over an HVC conduit the hypervisor cannot run the firmware's call on entry, so the
        // guest's is forwarded; the loop it runs instead backs WORKAROUND_3.
        assert_eq!(forward_in(&p, u64::from(SMCCC_ARCH_WORKAROUND_1), 7), Some((u64::from(SMCCC_ARCH_WORKAROUND_1), 0)));
        assert_eq!(arch_features_in(&p, SMCCC_ARCH_WORKAROUND_3), 0);
        assert_eq!(forward_in(&p, u64::from(SMCCC_ARCH_WORKAROUND_3), 0), None, "done on entry");
        // WORKAROUND_2's argument is a flag in w1.
        assert_eq!(forward_in(&p, u64::from(SMCCC_ARCH_WORKAROUND_2), 1 << 32), Some((u64::from(SMCCC_ARCH_WORKAROUND_2), 0)));
        assert_eq!(forward_in(&p, u64::from(SMCCC_ARCH_WORKAROUND_2), 5), Some((u64::from(SMCCC_ARCH_WORKAROUND_2), 1)));
        // With an SMC conduit, WORKAROUND_1 runs on every entry: the guest's call is done.
        let p = decide(&a57, &Firmware { smc: true, ..fw });
        assert_eq!(forward_in(&p, u64::from(SMCCC_ARCH_WORKAROUND_1), 0), None);
        assert_eq!(arch_features_in(&p, SMCCC_ARCH_WORKAROUND_1), 0);
        // QEMU's firmware: nothing to forward, nothing offered.
        let p = decide(&a57, &Firmware { wa1: Some(-1), wa2: Some(-1), wa3: Some(-1), smc: true });
        for wa in [SMCCC_ARCH_WORKAROUND_1, SMCCC_ARCH_WORKAROUND_2, SMCCC_ARCH_WORKAROUND_3] {
            assert_eq!(arch_features_in(&p, wa), -1);
            assert_eq!(forward_in(&p, u64::from(wa), 1), None);
        }
    }

    #[test]
    fn cpu_on_with_one_vcpu() {
        let mut d = dom0();
        assert_eq!(handle(&mut d, u64::from(PSCI_CPU_ON_64), [0, 0x4008_0000, 0, 0, 0, 0, 0])[0] as i64, -4);
        assert_eq!(handle(&mut d, u64::from(PSCI_CPU_ON_64), [1, 0x4008_0000, 0, 0, 0, 0, 0])[0] as i64, -2);
    }

    #[test]
    fn a_toolstack_domains_vcpus_come_up_with_cpu_on_and_go_down_with_cpu_off() {
        use crate::sched::VcpuRef;
        let (arch, sched, cpus) = credit_machine();
        let mut d = Domain::new_by_toolstack(3, 2, [0; 16]);
        arch.with_machine(&mut |m| *d.p2m.get_mut() = Some(crate::mm::Stage2::new(4, crate::mm::Stage2Config::DOMAIN, &mut *m.frames, m.mem).unwrap()));
        d.make_vcpus();
        d.set_vcpu_down(0, false);
        let call = |d: &Domain, vcpu: u32, x: [u64; 4]| psci_domu(&sched, &cpus, &arch, d, vcpu, x).map(|r| r as i64);
        let on = |target: u64| [u64::from(PSCI_CPU_ON_64), target, 0x4020_0000, 0xc0de];
        let info = |target: u64| [u64::from(PSCI_AFFINITY_INFO_64), target, 0, 0];
        assert_eq!(call(&d, 0, info(1)), Some(1), "vCPU 1 starts OFF");
        assert_eq!(call(&d, 0, on(2)), Some(PSCI_RET_INVALID_PARAMETERS), "no vCPU 2");
        assert_eq!(call(&d, 0, on(0x100)), Some(PSCI_RET_INVALID_PARAMETERS), "Aff1 is 0");
        assert_eq!(call(&d, 0, on(0)), Some(PSCI_RET_ALREADY_ON));
        assert_eq!(call(&d, 0, on(1)), Some(PSCI_RET_SUCCESS));
        let s = arch.started();
        assert_eq!((s[0].domain, s[0].vcpu, s[0].entry, s[0].context), (3, 1, 0x4020_0000, 0xc0de));
        assert_eq!(call(&d, 0, on(1)), Some(PSCI_RET_ALREADY_ON));
        assert_eq!(call(&d, 0, info(1)), Some(0));
        // SMC32: the arguments' upper halves are not the call's.
        assert_eq!(call(&d, 0, [u64::from(PSCI_AFFINITY_INFO_32), 0xffff_ffff_0000_0001, 0, 0]), Some(0));
        // vCPU 1 turns itself off; the scheduler keeps its place for the next CPU_ON.
        assert_eq!(call(&d, 1, [u64::from(PSCI_CPU_OFF), 0, 0, 0]), Some(PSCI_RET_SUCCESS));
        assert!(d.vcpu_off(1) && !d.vcpu_off(0));
        assert!(sched.slot(VcpuRef::new(3, 1)).is_some());
        // Other calls, and every domain not made by the toolstack, are left to `handle`.
        assert_eq!(call(&d, 0, [u64::from(PSCI_VERSION), 0, 0, 0]), None);
        let d0 = dom0();
        assert_eq!(psci_domu(&sched, &cpus, &arch, &d0, 0, on(1)), None);
    }

    /// Two CPUs under `sched=credit`, dom0's 2 vCPUs on them.
    fn credit_machine() -> (crate::contract::fake::FakeArch, crate::sched::Scheduler, Cpus) {
        let arch = crate::contract::fake::FakeArch::new(0x8000_0000, 1 << 20);
        let sched = crate::sched::Scheduler::new();
        sched.configure(crate::sched::SchedPolicy::Credit, 1_000_000, 2, false);
        let cpus = Cpus::new();
        cpus.setup_dom0(&[0x8000_0000, 0x8000_0001], 2);
        (arch, sched, cpus)
    }

    /// A dom0less domU with `cpus = <2>` (as `domain::domu::build_domu` leaves it: vCPU 0
    /// running, vCPU 1 down) starts its second vCPU with CPU_ON; one with a single vCPU is
    /// left to `handle`.
    #[test]
    fn a_dom0less_domu_starts_its_other_vcpus_with_cpu_on() {
        let (arch, sched, cpus) = credit_machine();
        let mut d = Domain::new(1, false, false, crate::domain::RamBanks::default());
        arch.with_machine(&mut |m| *d.p2m.get_mut() = Some(crate::mm::Stage2::new(2, crate::mm::Stage2Config::DOMAIN, &mut *m.frames, m.mem).unwrap()));
        let on = |target: u64| [u64::from(PSCI_CPU_ON_64), target, 0x4020_0000, 0xc0de];
        assert_eq!(psci_domu(&sched, &cpus, &arch, &d, 0, on(1)), None, "one vCPU: the usual answers");
        d.max_vcpus = 2;
        d.set_vcpu_down(1, true);
        let call = |d: &Domain, x: [u64; 4]| psci_domu(&sched, &cpus, &arch, d, 0, x).map(|r| r as i64);
        assert_eq!(call(&d, [u64::from(PSCI_AFFINITY_INFO_64), 1, 0, 0]), Some(1));
        assert_eq!(call(&d, on(0)), Some(PSCI_RET_ALREADY_ON));
        assert_eq!(call(&d, on(1)), Some(PSCI_RET_SUCCESS));
        let s = arch.started();
        assert_eq!((s[0].domain, s[0].vcpu, s[0].entry, s[0].context), (1, 1, 0x4020_0000, 0xc0de));
        assert_eq!(call(&d, [u64::from(PSCI_AFFINITY_INFO_64), 1, 0, 0]), Some(0));
        assert_eq!(call(&d, on(1)), Some(PSCI_RET_ALREADY_ON));
    }
}
