//! The hardware side of `crate::spectre`: reads the CPU's identification, asks the firmware
//! which workarounds it has, installs the decided plan (the flags the exception vectors read
//! on every exception from a guest, entry.rs; the guest's answers, smccc.rs), and keeps
//! each vCPU's WORKAROUND_2 state, turning the mitigation back on for the hypervisor while it
//! handles a trap from a vCPU that turned it off.

use super::{percpu, psci};
use crate::log;
use crate::spectre::{self, BhbEntry, Firmware, HostCpu, SsbdState};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use guest_abi::smccc::{SMCCC_ARCH_FEATURES, SMCCC_ARCH_WORKAROUND_1, SMCCC_ARCH_WORKAROUND_2, SMCCC_ARCH_WORKAROUND_3, SMCCC_VERSION};

/// What the exception vectors run on entry from a guest, before any indirect branch: bit 0
/// the firmware's WORKAROUND_1, bit 1 its WORKAROUND_3, bit 2 CLRBHB, bits 8-15 the number of
/// history-loop iterations (0: none). Written once at boot, before any guest runs.
#[no_mangle]
pub static XENITH_SPECTRE_ENTRY: AtomicU32 = AtomicU32::new(0);

pub const ENTRY_FW_WA1: u32 = 1 << 0;
pub const ENTRY_FW_WA3: u32 = 1 << 1;
pub const ENTRY_CLRBHB: u32 = 1 << 2;
pub const ENTRY_LOOP_SHIFT: u32 = 8;

/// The firmware's WORKAROUND_2 is dynamic (the guest hooks below have work to do).
static SSBD_DYNAMIC: AtomicBool = AtomicBool::new(false);
/// Each vCPU's WORKAROUND_2 request, by the CPU it is pinned to.
static SSBD: SsbdState<{ percpu::MAX_CPUS }> = SsbdState::new();

macro_rules! read_sysreg {
    ($name:literal) => {{
        let v: u64;
        // SAFETY: reading an identification register has no side effects.
        unsafe { core::arch::asm!(concat!("mrs {}, ", $name), out(reg) v, options(nomem, nostack, preserves_flags)) };
        v
    }};
}

fn host_cpu() -> HostCpu {
    HostCpu {
        midr: read_sysreg!("midr_el1"),
        pfr0: read_sysreg!("id_aa64pfr0_el1"),
        pfr1: read_sysreg!("id_aa64pfr1_el1"),
        mmfr1: read_sysreg!("id_aa64mmfr1_el1"),
        isar2: read_sysreg!("s3_0_c0_c6_2"),
    }
}

fn firmware() -> (Firmware, Option<u32>) {
    let Some(version) = psci::call(u64::from(SMCCC_VERSION), 0, 0, 0) else { return (Firmware::default(), None) };
    let version = version as u32;
    // SMCCC_VERSION is 1.1 or later exactly when it does not fail (a negative w0).
    if (version as i32) < 0x1_0001 {
        return (Firmware { smc: psci::conduit() == Some(psci::Conduit::Smc), ..Firmware::default() }, Some(version));
    }
    let ask = |fid: u32| psci::call(u64::from(SMCCC_ARCH_FEATURES), u64::from(fid), 0, 0).map(|r| r as u32 as i32);
    let fw = Firmware {
        wa1: ask(SMCCC_ARCH_WORKAROUND_1),
        wa2: ask(SMCCC_ARCH_WORKAROUND_2),
        wa3: ask(SMCCC_ARCH_WORKAROUND_3),
        smc: psci::conduit() == Some(psci::Conduit::Smc),
    };
    (fw, Some(version))
}

/// At boot, on the boot CPU, before any guest runs: probe, decide, install, log.
pub fn init() {
    let cpu = host_cpu();
    let (fw, version) = firmware();
    let plan = spectre::decide(&cpu, &fw);
    let ver = match version {
        None => "no conduit".into(),
        Some(v) if (v as i32) < 0 => alloc::string::String::from("SMCCC 1.0"),
        Some(v) => alloc::format!("SMCCC {}.{}", v >> 16, v & 0xffff),
    };
    log!(
        "firmware: {ver}, ARCH_WORKAROUND_1/2/3 answer {:?}/{:?}/{:?}; CPU MIDR {:#x}: CSV2 {}, CSV3 {}, SSBS {}, ECBHB {}, CLRBHB {}",
        fw.wa1,
        fw.wa2,
        fw.wa3,
        cpu.midr,
        cpu.csv2(),
        cpu.csv3(),
        u8::from(cpu.ssbs()),
        u8::from(cpu.ecbhb()),
        u8::from(cpu.clearbhb())
    );
    log!("spectre: {}", spectre::describe(&plan));
    let mut flags = if plan.entry_wa1 { ENTRY_FW_WA1 } else { 0 };
    match plan.bhb {
        BhbEntry::None => {}
        BhbEntry::ClearInsn => flags |= ENTRY_CLRBHB,
        BhbEntry::Loop(k) => flags |= u32::from(k) << ENTRY_LOOP_SHIFT,
        BhbEntry::FirmwareWa3 => flags |= ENTRY_FW_WA3,
    }
    XENITH_SPECTRE_ENTRY.store(flags, Ordering::Release);
    SSBD_DYNAMIC.store(plan.wa2_dynamic, Ordering::Release);
    crate::hypercall::smccc::set_plan(plan);
    cpu_init();
}

/// `spectre_entry=all` on the command line: run every entry barrier on every exception from a
/// guest (the firmware calls only over an SMC conduit; CLRBHB is a NOP hint where the CPU
/// lacks it), so the vectors' paths are exercised on any CPU. Guests' answers do not change.
pub fn force_all_entry_barriers() {
    let fw = if psci::conduit() == Some(psci::Conduit::Smc) { ENTRY_FW_WA1 | ENTRY_FW_WA3 } else { 0 };
    XENITH_SPECTRE_ENTRY.store(fw | ENTRY_CLRBHB | 32 << ENTRY_LOOP_SHIFT, Ordering::Release);
    log!("spectre: spectre_entry=all: every entry barrier runs on every exception from a guest");
}

/// On every CPU before it first enters a guest: the hypervisor, and every vCPU until it asks
/// otherwise, run with the firmware's SSBD mitigation on.
pub fn cpu_init() {
    if SSBD_DYNAMIC.load(Ordering::Acquire) {
        let _ = psci::call(u64::from(SMCCC_ARCH_WORKAROUND_2), 1, 0, 0);
    }
}

/// A guest's workaround call that smccc.rs says goes to the firmware (`fid`, `arg`).
/// WORKAROUND_2 is recorded for the calling vCPU and applied when it re-enters the guest
/// (`guest_entry`); the others are made now.
pub fn forward(fid: u64, arg: u64) {
    if fid as u32 == SMCCC_ARCH_WORKAROUND_2 {
        SSBD.set(percpu::this_cpu(), arg != 0);
    } else {
        let _ = psci::call(fid, arg, 0, 0);
    }
}

/// The CPU left the guest. Where the vCPU turned the SSBD mitigation off, the hypervisor
/// turns it on for itself; returns whether it did (pass it to `guest_entry`). Inline:
/// without a dynamic firmware mitigation this is one load.
#[inline]
pub fn guest_exit() -> bool {
    SSBD_DYNAMIC.load(Ordering::Relaxed) && ssbd_switch(true)
}

/// The CPU is about to re-enter the guest: the vCPU's own SSBD state goes back in if
/// `guest_exit` changed it.
#[inline]
pub fn guest_entry(switched: bool) {
    if switched {
        ssbd_switch(false);
    }
}

/// Set the firmware's SSBD mitigation to `on` if this CPU's vCPU has it off; whether it did.
#[inline(never)]
fn ssbd_switch(on: bool) -> bool {
    let off = !SSBD.get(percpu::this_cpu());
    if off {
        let _ = psci::call(u64::from(SMCCC_ARCH_WORKAROUND_2), u64::from(on), 0, 0);
    }
    off
}
