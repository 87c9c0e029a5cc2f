//! SMCCC calls a guest makes with `HVC #0` / `SMC #0`: the SMCCC architecture calls, Xen's
//! hypervisor-service calls and PSCI 1.1 (one vCPU per domain for now). The function ID is a
//! 32-bit value in w0; results go back in x0..x3.

use crate::domain::{Domain, ShutdownReason};
use core::sync::atomic::{AtomicBool, Ordering};
use guest_abi::smccc::*;

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

/// Whether the host firmware implements SMCCC_ARCH_WORKAROUND_1 (branch-predictor
/// invalidation); set once at boot from the firmware's own SMCCC_ARCH_FEATURES answer.
static HOST_WORKAROUND_1: AtomicBool = AtomicBool::new(false);

pub fn set_host_workaround_1(available: bool) {
    HOST_WORKAROUND_1.store(available, Ordering::Relaxed);
}

/// A guest's SMCCC_ARCH_WORKAROUND_1 call must be forwarded to the firmware.
pub fn forwards_workaround_1(x0: u64) -> bool {
    x0 as u32 == SMCCC_ARCH_WORKAROUND_1 && HOST_WORKAROUND_1.load(Ordering::Relaxed)
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
            let target = args[0] & 0xff_00ff_ffff;
            let r = if target == 0 && args[1] == 0 { 0 } else { PSCI_RET_INVALID_PARAMETERS };
            one(neg(r))
        }
        PSCI_CPU_OFF => one(neg(PSCI_RET_DENIED)),
        // A standby request: returning at once is a valid wake-up (nothing to wait for yet).
        PSCI_CPU_SUSPEND_32 | PSCI_CPU_SUSPEND_64 => one(0),
        SMCCC_ARCH_WORKAROUND_1 if HOST_WORKAROUND_1.load(Ordering::Relaxed) => one(0),
        _ => one(neg(SMCCC_RET_NOT_SUPPORTED)),
    }
}

/// SMCCC_ARCH_FEATURES: what is implemented. WORKAROUND_1 is offered exactly when the host
/// firmware implements it (the guest's call is forwarded); the others are not implemented and
/// reported NOT_SUPPORTED — never "not required".
fn arch_features(fid: u32) -> i64 {
    match fid {
        SMCCC_VERSION | SMCCC_ARCH_FEATURES => SMCCC_RET_SUCCESS,
        SMCCC_ARCH_WORKAROUND_1 if HOST_WORKAROUND_1.load(Ordering::Relaxed) => SMCCC_RET_SUCCESS,
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

    #[test]
    fn cpu_on_with_one_vcpu() {
        let mut d = dom0();
        assert_eq!(handle(&mut d, u64::from(PSCI_CPU_ON_64), [0, 0x4008_0000, 0, 0, 0, 0, 0])[0] as i64, -4);
        assert_eq!(handle(&mut d, u64::from(PSCI_CPU_ON_64), [1, 0x4008_0000, 0, 0, 0, 0, 0])[0] as i64, -2);
    }
}
