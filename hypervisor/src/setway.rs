//! Data-cache maintenance by set/way from a guest (DC ISW, CSW, CISW; HCR_EL2.TSW traps
//! them). Set/way operations act on one CPU's caches only and say nothing about which
//! addresses they mean, so a hypervisor cannot pass them through: a guest uses them to empty
//! the caches when it turns them off or on (ARMv7 Linux does at boot). The policy is Xen
//! 4.17's: the first set/way operation cleans and invalidates the whole of the guest's RAM by
//! address and starts trapping the virtual-memory control registers (HCR_EL2.TVM); further
//! set/way operations then cost nothing until the guest turns its caches on or off (a write
//! to SCTLR_EL1 that changes M or C), which cleans and invalidates again; once the caches
//! are on, the control registers are the guest's again.

use crate::cpufeature::SysregAccess;

/// A trapped access this module handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// DC ISW / CSW / CISW (the register operand is ignored: the whole RAM is done).
    SetWay,
    /// A write the TVM trap caught: the register and the guest register holding the value.
    VmWrite { reg: VmReg, rt: usize },
}

/// The EL1 virtual-memory control registers HCR_EL2.TVM traps writes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmReg {
    Sctlr,
    Ttbr0,
    Ttbr1,
    Tcr,
    Afsr0,
    Afsr1,
    Esr,
    Far,
    Mair,
    Amair,
    Contextidr,
}

/// Decode a trapped system instruction or register write (ESR_EL2.EC 0x18).
pub fn classify(a: &SysregAccess) -> Option<Access> {
    if a.read {
        return None;
    }
    match (a.op0, a.op1, a.crn, a.crm, a.op2) {
        (1, 0, 7, 6 | 10 | 14, 2) => Some(Access::SetWay),
        (3, 0, crn, crm, op2) => {
            let reg = match (crn, crm, op2) {
                (1, 0, 0) => VmReg::Sctlr,
                (2, 0, 0) => VmReg::Ttbr0,
                (2, 0, 1) => VmReg::Ttbr1,
                (2, 0, 2) => VmReg::Tcr,
                (5, 1, 0) => VmReg::Afsr0,
                (5, 1, 1) => VmReg::Afsr1,
                (5, 2, 0) => VmReg::Esr,
                (6, 0, 0) => VmReg::Far,
                (10, 2, 0) => VmReg::Mair,
                (10, 3, 0) => VmReg::Amair,
                (13, 0, 1) => VmReg::Contextidr,
                _ => return None,
            };
            Some(Access::VmWrite { reg, rt: a.rt })
        }
        _ => None,
    }
}

/// What the trap handler does about an access.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Action {
    /// Clean and invalidate the guest's RAM by address.
    pub flush: bool,
    /// The new state of HCR_EL2.TVM.
    pub tvm: bool,
}

/// SCTLR_EL1 bits that turn the caches on: the MMU (M) and the data cache (C).
const SCTLR_M: u64 = 1 << 0;
const SCTLR_C: u64 = 1 << 2;

fn caches_on(sctlr: u64) -> bool {
    sctlr & (SCTLR_M | SCTLR_C) == SCTLR_M | SCTLR_C
}

/// A set/way operation with TVM currently `tvm`: flush once, then track the control registers.
pub fn on_set_way(tvm: bool) -> Action {
    Action { flush: !tvm, tvm: true }
}

/// A trapped SCTLR_EL1 write from `old` to `new` (only reachable with TVM set): flush when the
/// caches go on or off; stop trapping once they are on.
pub fn on_sctlr_write(old: u64, new: u64) -> Action {
    Action { flush: caches_on(old) != caches_on(new), tvm: !caches_on(new) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8, read: bool) -> SysregAccess {
        SysregAccess { op0, op1, crn, crm, op2, rt: 3, read }
    }

    #[test]
    fn set_way_instructions_and_tvm_writes_are_recognised() {
        for crm in [6, 10, 14] {
            assert_eq!(classify(&access(1, 0, 7, crm, 2, false)), Some(Access::SetWay));
        }
        // DC IVAC / CIVAC (by address) are not trapped by TSW and not handled here
        assert_eq!(classify(&access(1, 0, 7, 6, 1, false)), None);
        assert_eq!(classify(&access(1, 3, 7, 14, 1, false)), None);
        assert_eq!(classify(&access(3, 0, 1, 0, 0, false)), Some(Access::VmWrite { reg: VmReg::Sctlr, rt: 3 }));
        assert_eq!(classify(&access(3, 0, 13, 0, 1, false)), Some(Access::VmWrite { reg: VmReg::Contextidr, rt: 3 }));
        assert_eq!(classify(&access(3, 0, 1, 0, 0, true)), None, "reads are not trapped by TVM");
        assert_eq!(classify(&access(3, 0, 0, 1, 0, false)), None, "ID space");
    }

    #[test]
    fn one_flush_per_cache_toggle() {
        // first set/way op flushes and starts tracking; the rest of the loop is free
        let a = on_set_way(false);
        assert_eq!(a, Action { flush: true, tvm: true });
        assert_eq!(on_set_way(a.tvm), Action { flush: false, tvm: true });
        // caches off -> off (another field changed): nothing
        assert_eq!(on_sctlr_write(0, 1 << 12), Action { flush: false, tvm: true });
        // caches turned on: flush, stop tracking
        assert_eq!(on_sctlr_write(1 << 12, SCTLR_M | SCTLR_C), Action { flush: true, tvm: false });
        // turned off while tracked: flush, keep tracking
        assert_eq!(on_sctlr_write(SCTLR_M | SCTLR_C, SCTLR_M), Action { flush: true, tvm: true });
    }
}
