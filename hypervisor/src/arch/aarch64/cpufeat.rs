//! The hardware side of `crate::cpufeature`: reads the host's ID registers, keeps the guest's
//! view of them, answers trapped ID-register reads, programs the feature traps (HCR_EL2,
//! CPTR_EL2, MDCR_EL2) for a vCPU, and holds the pointer-authentication keys of a vCPU.

use super::entry::TrapFrame;
use crate::cpufeature::{self, IdAnswer, IdReg, SysregAccess, ID_SPACE};
use crate::{log, sysreg};
use spin::Once;

/// Read the ID-space register at op0 3, op1 0, CRn 0, CRm `$crm`, op2 `$op2`. Unallocated
/// encodings of this space read as zero at EL2 (they are reserved RAZ), so every one can be read.
macro_rules! read_id {
    ($crm:literal, $op2:literal) => {{
        let v: u64;
        // SAFETY: reading an ID register has no side effects.
        unsafe { core::arch::asm!(concat!("mrs {}, s3_0_c0_c", $crm, "_", $op2), out(reg) v, options(nomem, nostack, preserves_flags)) };
        v
    }};
}

macro_rules! read_row {
    ($crm:literal) => {
        [read_id!($crm, 0), read_id!($crm, 1), read_id!($crm, 2), read_id!($crm, 3), read_id!($crm, 4), read_id!($crm, 5), read_id!($crm, 6), read_id!($crm, 7)]
    };
}

/// This CPU's ID registers, the whole trapped space in `IdReg::index` order.
fn read_host() -> [u64; ID_SPACE] {
    let rows: [[u64; 8]; 7] = [read_row!(1), read_row!(2), read_row!(3), read_row!(4), read_row!(5), read_row!(6), read_row!(7)];
    core::array::from_fn(|i| rows[i / 8][i % 8])
}

/// The host values the view was made from, and the view every guest gets.
struct View {
    host: [u64; ID_SPACE],
    guest: [u64; ID_SPACE],
}

/// Made on the first CPU that configures a vCPU (the boot CPU), before any guest runs.
static VIEW: Once<View> = Once::new();

fn view() -> &'static View {
    VIEW.call_once(|| {
        let host = read_host();
        let guest = cpufeature::guest_view(&host);
        for i in 0..ID_SPACE {
            if host[i] != guest[i] {
                log!("cpu features: {} host {:#x}, guests see {:#x}", IdReg::at(i).name(), host[i], guest[i]);
            }
        }
        View { host, guest }
    })
}

fn host(reg: IdReg) -> u64 {
    reg.index().map_or(0, |i| view().host[i])
}

/// The HCR_EL2 bits the CPU's features add to the hypervisor's base set.
pub fn hcr_bits() -> u64 {
    cpufeature::hcr_bits(host(IdReg::AA64PFR0), host(IdReg::AA64ISAR1), host(IdReg::AA64ISAR2))
}

/// Program this CPU's feature traps for a vCPU about to start, and reset its
/// pointer-authentication keys. A CPU whose ID registers differ from the boot CPU's is
/// reported: guests keep the boot CPU's view.
pub fn configure_vcpu() {
    let v = view();
    let mine = read_host();
    for i in 0..ID_SPACE {
        if mine[i] != v.host[i] && cpufeature::sanitise(IdReg::at(i), mine[i]) != v.guest[i] {
            log!("cpu features: this CPU's {} is {:#x}, the boot CPU's {:#x}: guests see the boot CPU's", IdReg::at(i).name(), mine[i], v.host[i]);
        }
    }
    sysreg!(write CPTR_EL2, cpufeature::cptr_el2());
    let pmcr_n = (sysreg!(read PMCR_EL0) >> 11) & 0x1f;
    sysreg!(write MDCR_EL2, cpufeature::mdcr_el2(host(IdReg::AA64DFR0), pmcr_n));
    if hcr_bits() & (1 << 41) != 0 {
        PauthKeys::default().restore();
    }
}

/// Answer a trapped system-register access if it is in the ID space (HCR_EL2.TID3): a read
/// gets the guest's view and the MRS is stepped over; a write (read-only registers) gets
/// UNDEF. Returns false for any other register.
pub fn emulate_sysreg(frame: &mut TrapFrame, iss: u64) -> bool {
    let access = SysregAccess::decode(iss);
    match cpufeature::answer(&access, &view().guest) {
        Some(IdAnswer::Read { rt, value }) => {
            if rt != 31 {
                frame.x[rt] = value;
            }
            frame.elr += 4;
            true
        }
        Some(IdAnswer::Undef) => {
            let ret = frame.elr;
            super::inject::inject_sync(frame, super::inject::esr::undef(), None, ret);
            true
        }
        None => false,
    }
}

/// A vCPU's pointer-authentication keys (APIA, APIB, APDA, APDB, APGA; low then high).
/// While HCR_EL2.APK is set they live in the CPU's registers, the guest's own; a CPU that
/// changes vCPUs saves the outgoing vCPU's and restores the incoming one's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PauthKeys(pub [u64; 10]);

impl PauthKeys {
    /// The keys in this CPU's registers.
    pub fn save() -> Self {
        Self([
            sysreg!(read S3_0_C2_C1_0), // APIAKeyLo_EL1
            sysreg!(read S3_0_C2_C1_1), // APIAKeyHi_EL1
            sysreg!(read S3_0_C2_C1_2), // APIBKeyLo_EL1
            sysreg!(read S3_0_C2_C1_3), // APIBKeyHi_EL1
            sysreg!(read S3_0_C2_C2_0), // APDAKeyLo_EL1
            sysreg!(read S3_0_C2_C2_1), // APDAKeyHi_EL1
            sysreg!(read S3_0_C2_C2_2), // APDBKeyLo_EL1
            sysreg!(read S3_0_C2_C2_3), // APDBKeyHi_EL1
            sysreg!(read S3_0_C2_C3_0), // APGAKeyLo_EL1
            sysreg!(read S3_0_C2_C3_1), // APGAKeyHi_EL1
        ])
    }

    /// Load these keys into this CPU's registers (only on a CPU with pointer authentication).
    pub fn restore(&self) {
        let k = &self.0;
        sysreg!(write S3_0_C2_C1_0, k[0]);
        sysreg!(write S3_0_C2_C1_1, k[1]);
        sysreg!(write S3_0_C2_C1_2, k[2]);
        sysreg!(write S3_0_C2_C1_3, k[3]);
        sysreg!(write S3_0_C2_C2_0, k[4]);
        sysreg!(write S3_0_C2_C2_1, k[5]);
        sysreg!(write S3_0_C2_C2_2, k[6]);
        sysreg!(write S3_0_C2_C2_3, k[7]);
        sysreg!(write S3_0_C2_C3_0, k[8]);
        sysreg!(write S3_0_C2_C3_1, k[9]);
        super::regs::isb();
    }
}
