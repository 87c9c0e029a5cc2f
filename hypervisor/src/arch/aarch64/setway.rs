//! The hardware side of `crate::setway`: trapped DC ISW/CSW/CISW (HCR_EL2.TSW) and, while the
//! guest's caches are tracked, its writes to the virtual-memory control registers
//! (HCR_EL2.TVM), which are done here on its behalf. One vCPU runs on each CPU, so this CPU's
//! HCR_EL2 is the vCPU's.

use super::entry::TrapFrame;
use crate::cpufeature::SysregAccess;
use crate::domain::Domain;
use crate::setway::{self, Access, Action, VmReg};
use crate::sysreg;

/// HCR_EL2.TVM: trap EL1 writes to the virtual-memory control registers.
const HCR_TVM: u64 = 1 << 26;

/// Handle a trapped system instruction or register write if it is a set/way operation or a
/// TVM-trapped write; the caller steps over it. False for anything else.
pub fn emulate(dom: &Domain, frame: &mut TrapFrame, iss: u64) -> bool {
    let Some(access) = setway::classify(&SysregAccess::decode(iss)) else { return false };
    let hcr = sysreg!(read HCR_EL2);
    let tvm = hcr & HCR_TVM != 0;
    let action = match access {
        Access::SetWay => setway::on_set_way(tvm),
        Access::VmWrite { reg, rt } => {
            let v = if rt == 31 { 0 } else { frame.x[rt] };
            if reg == VmReg::Sctlr {
                let old = sysreg!(read SCTLR_EL1);
                sysreg!(write SCTLR_EL1, v);
                setway::on_sctlr_write(old, v)
            } else {
                write_vm_reg(reg, v);
                Action { flush: false, tvm }
            }
        }
    };
    if action.flush {
        clean_invalidate_ram(dom);
    }
    if action.tvm != tvm {
        sysreg!(write HCR_EL2, if action.tvm { hcr | HCR_TVM } else { hcr & !HCR_TVM });
    }
    super::regs::isb();
    true
}

fn write_vm_reg(reg: VmReg, v: u64) {
    match reg {
        VmReg::Sctlr => sysreg!(write SCTLR_EL1, v),
        VmReg::Ttbr0 => sysreg!(write TTBR0_EL1, v),
        VmReg::Ttbr1 => sysreg!(write TTBR1_EL1, v),
        VmReg::Tcr => sysreg!(write TCR_EL1, v),
        VmReg::Afsr0 => sysreg!(write AFSR0_EL1, v),
        VmReg::Afsr1 => sysreg!(write AFSR1_EL1, v),
        VmReg::Esr => sysreg!(write ESR_EL1, v),
        VmReg::Far => sysreg!(write FAR_EL1, v),
        VmReg::Mair => sysreg!(write MAIR_EL1, v),
        VmReg::Amair => sysreg!(write AMAIR_EL1, v),
        VmReg::Contextidr => sysreg!(write CONTEXTIDR_EL1, v),
    }
}

/// Clean and invalidate, by address, every line of the domain's RAM (the hypervisor's map
/// covers all RAM at its physical addresses), to the point of coherency.
fn clean_invalidate_ram(dom: &Domain) {
    let line = 4u64 << ((sysreg!(read CTR_EL0) >> 16) & 0xf);
    for bank in dom.ram().as_slice() {
        let mut a = bank.pa & !(line - 1);
        while a < bank.pa + bank.size {
            // SAFETY: cache maintenance by address on RAM the hypervisor maps; it changes no
            // data (dirty lines are written back before they are dropped).
            unsafe { core::arch::asm!("dc civac, {}", in(reg) a, options(nostack, preserves_flags)) };
            a += line;
        }
    }
    // SAFETY: barrier only.
    unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
}
