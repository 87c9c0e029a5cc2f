//! Calls into the firmware's PSCI (the host's conduit from `/psci/method`): power off, reset.

use crate::sync::Once;

/// How the hypervisor reaches firmware: `smc` (QEMU virt with virtualization=on) or `hvc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    Smc,
    Hvc,
}

static CONDUIT: Once<Conduit> = Once::new();

pub const SYSTEM_OFF: u64 = 0x8400_0008;
pub const SYSTEM_RESET: u64 = 0x8400_0009;

pub fn set_conduit(c: Conduit) {
    CONDUIT.call_once(|| c);
}

/// The conduit from the host DT, if it named one.
pub fn conduit() -> Option<Conduit> {
    CONDUIT.get().copied()
}

/// Issue an SMCCC call through the host conduit; returns x0.
pub fn call(fid: u64, a1: u64, a2: u64, a3: u64) -> Option<u64> {
    let conduit = *CONDUIT.get()?;
    let mut x0 = fid;
    // SAFETY: an SMCCC call to firmware; registers x0-x17 may be clobbered per SMCCC 1.0.
    unsafe {
        match conduit {
            Conduit::Smc => core::arch::asm!("smc #0", inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _,
                inout("x3") a3 => _, out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _,
                out("x9") _, out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _,
                out("x15") _, out("x16") _, out("x17") _),
            Conduit::Hvc => core::arch::asm!("hvc #0", inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _,
                inout("x3") a3 => _, out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _,
                out("x9") _, out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _,
                out("x15") _, out("x16") _, out("x17") _),
        }
    }
    Some(x0)
}

/// Power the machine off; parks the CPU if the firmware returns (or there is no PSCI).
pub fn system_off() -> ! {
    let _ = call(SYSTEM_OFF, 0, 0, 0);
    super::regs::halt()
}

/// Reset the machine; parks the CPU if the firmware returns.
pub fn system_reset() -> ! {
    let _ = call(SYSTEM_RESET, 0, 0, 0);
    super::regs::halt()
}
