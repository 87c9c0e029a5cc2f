//! The hardware side of `crate::setway` on ARMv7: trapped DCISW/DCCSW/DCCISW (HCR.TSW) and,
//! while the guest's caches are tracked, its writes to the virtual-memory control registers
//! (HCR.TVM), done here on its behalf. The policy is the shared one (Xen 4.17's): the first
//! set/way operation cleans and invalidates the guest's RAM by address and starts tracking;
//! the next flush comes when the guest turns its caches on or off. One vCPU runs on each
//! CPU, so this CPU's HCR is the vCPU's.

use super::entry::TrapFrame;
use super::regs::{isb, Hcr, Sctlr};
use crate::domain::Domain;
use crate::setway::{self, Action};

/// HCR.TSW: trap data-cache maintenance by set/way.
pub const HCR_TSW: u32 = 1 << 22;
/// HCR.TVM: trap PL1 writes to the virtual-memory control registers.
const HCR_TVM: u32 = 1 << 26;

/// Handle a trapped MCR (EC 0x03, `iss`) or MCRR (EC 0x04, `double`) if it is a set/way
/// operation or a TVM-trapped write; the caller steps over it. False for anything else.
pub fn emulate(dom: &Domain, frame: &TrapFrame, iss: u32, double: bool) -> bool {
    if iss & 1 != 0 {
        return false; // a read: TVM traps writes only
    }
    let hcr = Hcr::read();
    let tvm = hcr & HCR_TVM != 0;
    let rt = ((iss >> 5) & 0xf) as usize;
    let crm = (iss >> 1) & 0xf;
    let action = if double {
        // MCRR p15, Opc1, Rt, Rt2, c2: the 64-bit TTBR0 (Opc1 0) and TTBR1 (Opc1 1).
        let (opc1, rt2) = ((iss >> 16) & 0xf, ((iss >> 10) & 0xf) as usize);
        if !tvm || crm != 2 || opc1 > 1 || rt > 12 || rt2 > 12 {
            return false;
        }
        let (lo, hi) = (frame.r[rt], frame.r[rt2]);
        // SAFETY: the guest's own translation table base, written as it asked.
        unsafe {
            if opc1 == 0 {
                core::arch::asm!("mcrr p15, 0, {}, {}, c2", in(reg) lo, in(reg) hi, options(nostack));
            } else {
                core::arch::asm!("mcrr p15, 1, {}, {}, c2", in(reg) lo, in(reg) hi, options(nostack));
            }
        }
        Action { flush: false, tvm }
    } else {
        let (opc2, opc1, crn) = ((iss >> 17) & 7, (iss >> 14) & 7, (iss >> 10) & 0xf);
        if rt > 12 {
            return false;
        }
        let v = frame.r[rt];
        match (opc1, crn, crm, opc2) {
            (0, 7, 6 | 10 | 14, 2) => setway::on_set_way(tvm),
            (0, 1, 0, 0) if tvm => {
                let old = Sctlr::read();
                Sctlr::write(v);
                setway::on_sctlr_write(u64::from(old), u64::from(v))
            }
            _ if tvm && write_vm_reg(opc1, crn, crm, opc2, v) => Action { flush: false, tvm },
            _ => return false,
        }
    };
    if action.flush {
        clean_invalidate_ram(dom);
    }
    if action.tvm != tvm {
        Hcr::write(if action.tvm { hcr | HCR_TVM } else { hcr & !HCR_TVM });
    }
    isb();
    true
}

/// Write `v` to the PL1 virtual-memory control register MCR p15, `opc1`, `crn`, `crm`, `opc2`
/// names (one TVM traps). False for any other register.
fn write_vm_reg(opc1: u32, crn: u32, crm: u32, opc2: u32, v: u32) -> bool {
    macro_rules! mcr {
        ($crn:literal, $crm:literal, $op2:literal) => {
            // SAFETY: a register of the guest's own PL1 state, written as it asked.
            unsafe { core::arch::asm!(concat!("mcr p15, 0, {}, c", $crn, ", c", $crm, ", ", $op2), in(reg) v, options(nostack)) }
        };
    }
    match (opc1, crn, crm, opc2) {
        (0, 2, 0, 0) => mcr!(2, 0, 0),   // TTBR0 (32-bit)
        (0, 2, 0, 1) => mcr!(2, 0, 1),   // TTBR1 (32-bit)
        (0, 2, 0, 2) => mcr!(2, 0, 2),   // TTBCR
        (0, 3, 0, 0) => mcr!(3, 0, 0),   // DACR
        (0, 5, 0, 0) => mcr!(5, 0, 0),   // DFSR
        (0, 5, 0, 1) => mcr!(5, 0, 1),   // IFSR
        (0, 5, 1, 0) => mcr!(5, 1, 0),   // ADFSR
        (0, 5, 1, 1) => mcr!(5, 1, 1),   // AIFSR
        (0, 6, 0, 0) => mcr!(6, 0, 0),   // DFAR
        (0, 6, 0, 2) => mcr!(6, 0, 2),   // IFAR
        (0, 10, 2, 0) => mcr!(10, 2, 0), // PRRR / MAIR0
        (0, 10, 2, 1) => mcr!(10, 2, 1), // NMRR / MAIR1
        (0, 10, 3, 0) => mcr!(10, 3, 0), // AMAIR0
        (0, 10, 3, 1) => mcr!(10, 3, 1), // AMAIR1
        (0, 13, 0, 1) => mcr!(13, 0, 1), // CONTEXTIDR
        _ => return false,
    }
    true
}

/// Clean and invalidate, by address, every line of the domain's RAM to the point of
/// coherency (the HYP map covers RAM below 4 GiB at its physical addresses).
fn clean_invalidate_ram(dom: &Domain) {
    let line = 4usize << ((super::regs::Ctr::read() >> 16) & 0xf);
    for bank in dom.ram().as_slice() {
        let Some(va) = super::mmu::va_of(bank.pa, bank.size) else { continue };
        let mut a = va & !(line - 1);
        while a < va + bank.size as usize {
            // SAFETY: cache maintenance by address (DCCIMVAC) on identity-mapped RAM; it
            // changes no data (dirty lines are written back before they are dropped).
            unsafe { core::arch::asm!("mcr p15, 0, {}, c7, c14, 1", in(reg) a, options(nostack, preserves_flags)) };
            a += line;
        }
    }
    super::regs::dsb_sy();
}
