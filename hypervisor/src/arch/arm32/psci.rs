//! Calls into the firmware's PSCI from HYP mode (the host's conduit from `/psci/method`; QEMU
//! virt with virtualization=on answers SMC): CPU_ON, power off, reset.

use core::sync::atomic::{AtomicU8, Ordering};

/// How the hypervisor reaches firmware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    Smc,
    Hvc,
}

/// 0: no PSCI; 1: SMC; 2: HVC.
static CONDUIT: AtomicU8 = AtomicU8::new(0);

pub const SYSTEM_OFF: u32 = 0x8400_0008;
pub const SYSTEM_RESET: u32 = 0x8400_0009;
/// CPU_ON, SMC32 form (the only one a 32-bit caller has).
pub const CPU_ON: u32 = 0x8400_0003;
pub const CPU_OFF: u32 = 0x8400_0002;

pub fn set_conduit(c: Conduit) {
    CONDUIT.store(match c { Conduit::Smc => 1, Conduit::Hvc => 2 }, Ordering::Relaxed);
}

/// The board has no PSCI firmware (the Exynos5250): no call is made from now on.
pub fn clear_conduit() {
    CONDUIT.store(0, Ordering::Relaxed);
}

pub fn has_conduit() -> bool {
    CONDUIT.load(Ordering::Relaxed) != 0
}

/// Issue an SMC32 call through the host conduit; returns r0.
pub fn call(fid: u32, a1: u32, a2: u32, a3: u32) -> Option<u32> {
    let conduit = match CONDUIT.load(Ordering::Relaxed) {
        1 => Conduit::Smc,
        2 => Conduit::Hvc,
        _ => return None,
    };
    let mut r0 = fid;
    // SAFETY: an SMCCC call to firmware; r0-r3 carry results and r12 may be clobbered
    // (SMCCC 1.0 for 32-bit callers preserves r4-r11 and the stack).
    unsafe {
        match conduit {
            Conduit::Smc => core::arch::asm!(".arch_extension sec", "smc #0", inout("r0") r0, inout("r1") a1 => _,
                inout("r2") a2 => _, inout("r3") a3 => _, out("r12") _, options(nostack)),
            Conduit::Hvc => core::arch::asm!(".arch_extension virt", "hvc #0", inout("r0") r0, inout("r1") a1 => _,
                inout("r2") a2 => _, inout("r3") a3 => _, out("r12") _, options(nostack)),
        }
    }
    Some(r0)
}

/// Power the machine off; parks the CPU if the firmware returns (or there is no PSCI).
pub fn system_off() -> ! {
    if let Some(r) = call(SYSTEM_OFF, 0, 0, 0) {
        crate::log!("firmware did not power off (PSCI SYSTEM_OFF returned {r:#x}): parking the CPU");
    }
    super::regs::halt()
}

/// Reset the machine; parks the CPU if the firmware returns.
pub fn system_reset() -> ! {
    let _ = call(SYSTEM_RESET, 0, 0, 0);
    super::regs::halt()
}
