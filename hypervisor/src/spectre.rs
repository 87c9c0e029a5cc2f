//! Speculative-execution mitigations (Spectre v2, Spectre-BHB, Speculative Store Bypass),
//! decided in one place from what the CPU and the firmware have.
//!
//! [`decide`] takes the host's ID registers and MIDR and the firmware's SMCCC answers, and
//! returns a [`Plan`]: what the hypervisor does on every exception taken from a guest (its
//! own protection), what a guest's SMCCC_ARCH_FEATURES query for WORKAROUND_1/2/3 is told,
//! and what happens to a guest's WORKAROUND call. Every answer a guest gets is backed by a
//! mitigation in force: the CPU's (CSV2, CSV2_3, ECBHB), the firmware's (its workaround,
//! forwarded or run on entry) or the hypervisor's (the branch-history loop or CLRBHB it runs
//! on entry from the guest, before any indirect branch). A mitigation nothing provides is
//! answered NOT_SUPPORTED, so the guest reports itself vulnerable rather than protected.
//!
//! The rules follow the architecture's and the firmware interface's (SMCCC 1.1+, Arm's
//! firmware-interfaces note for the workarounds):
//! - Spectre v2 matters where CSV2 is 0 and the core is not one known to be immune. Only the
//!   firmware can invalidate the branch predictor there (WORKAROUND_1); when it can, the
//!   hypervisor calls it on every entry from a guest, and a guest's own WORKAROUND_1 call is
//!   then already done when it arrives.
//! - Spectre-BHB matters where CSV2_3 is absent and the core is affected (it has CLRBHB, is
//!   one of the cores that need the history loop or the firmware's WORKAROUND_3). It is only
//!   worth mitigating when Spectre v2 is (a poisoned predictor needs no history). ECBHB
//!   cores clear the history on an exception level change; on A57 and early A72 the
//!   firmware's WORKAROUND_1 clears it too; otherwise CLRBHB, the loop, or WORKAROUND_3 run
//!   on entry, in that order of preference.
//! - Speculative Store Bypass: a CPU with SSBS lets the guest control it through PSTATE,
//!   which the hypervisor saves and restores with the guest's SPSR; nothing else to do. The
//!   firmware's dynamic WORKAROUND_2 is offered when the firmware has it: the guest's calls
//!   are forwarded and each vCPU's state is kept (vCPUs are pinned, so a CPU's firmware state
//!   is its vCPU's); the hypervisor turns the mitigation on for itself at boot and while it
//!   handles a trap from a vCPU that turned it off, then back off before returning.

/// An SMCCC_ARCH_FEATURES answer for a workaround.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 0: implemented; the guest should call it.
    Success,
    /// 1: this PE does not need it (SMCCC's "not required on this PE" for the workarounds).
    Unaffected,
    /// -2: not required: the mitigation is permanently in force (WORKAROUND_2 only).
    NotRequired,
    /// -1: not implemented: nothing mitigates it.
    NotSupported,
}

impl Answer {
    pub const fn value(self) -> i64 {
        match self {
            Answer::Success => 0,
            Answer::Unaffected => 1,
            Answer::NotRequired => -2,
            Answer::NotSupported => -1,
        }
    }
}

/// What a guest's WORKAROUND_1 or _3 call does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallAction {
    /// Nothing is offered: the call is an unknown function (NOT_SUPPORTED).
    Refuse,
    /// The mitigation already ran when the call trapped (on entry to the hypervisor): return.
    DoneOnEntry,
    /// Forward the call to the firmware.
    Forward,
}

/// The Spectre-BHB mitigation the hypervisor runs on every exception from a guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BhbEntry {
    /// Not needed (unaffected, cleared by the CPU or by WORKAROUND_1), or pointless (v2 is
    /// not mitigated).
    None,
    /// The CLRBHB instruction.
    ClearInsn,
    /// The branch loop, this many iterations.
    Loop(u8),
    /// The firmware's WORKAROUND_3 (which covers Spectre v2 as well).
    FirmwareWa3,
}

/// Everything decided at boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Call the firmware's WORKAROUND_1 on every exception from a guest (branch predictor
    /// invalidation; not set when `bhb` is `FirmwareWa3`, which does both).
    pub entry_wa1: bool,
    pub bhb: BhbEntry,
    pub wa1: Answer,
    pub wa1_call: CallAction,
    pub wa2: Answer,
    /// The firmware's WORKAROUND_2 is dynamic: guests' calls are forwarded, per-vCPU state kept.
    pub wa2_dynamic: bool,
    pub wa3: Answer,
    pub wa3_call: CallAction,
}

impl Plan {
    /// Nothing known, nothing offered (no firmware conduit, before boot has probed).
    pub const NOTHING: Plan = Plan {
        entry_wa1: false,
        bhb: BhbEntry::None,
        wa1: Answer::NotSupported,
        wa1_call: CallAction::Refuse,
        wa2: Answer::NotSupported,
        wa2_dynamic: false,
        wa3: Answer::NotSupported,
        wa3_call: CallAction::Refuse,
    };
}

/// The firmware's answers to SMCCC_ARCH_FEATURES for the workarounds (the low 32 bits of x0,
/// sign-extended), or None where it was not asked (no conduit, SMCCC older than 1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Firmware {
    pub wa1: Option<i32>,
    pub wa2: Option<i32>,
    pub wa3: Option<i32>,
    /// The hypervisor can call the firmware from its exception entry (the conduit is SMC).
    pub smc: bool,
}

/// The host CPU's identification: MIDR_EL1 and the ID registers the decision reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HostCpu {
    pub midr: u64,
    pub pfr0: u64,
    pub pfr1: u64,
    pub mmfr1: u64,
    pub isar2: u64,
}

fn field(v: u64, shift: u32) -> u64 {
    (v >> shift) & 0xf
}

/// Arm's part numbers (MIDR_EL1 implementer 0x41) the rules name.
mod part {
    pub const A35: u64 = 0xd04;
    pub const A53: u64 = 0xd03;
    pub const A55: u64 = 0xd05;
    pub const A57: u64 = 0xd07;
    pub const A72: u64 = 0xd08;
    pub const A73: u64 = 0xd09;
    pub const A75: u64 = 0xd0a;
    pub const A76: u64 = 0xd0b;
    pub const A77: u64 = 0xd0d;
    pub const N1: u64 = 0xd0c;
    pub const A78: u64 = 0xd41;
    pub const A78AE: u64 = 0xd42;
    pub const A78C: u64 = 0xd4b;
    pub const X1: u64 = 0xd44;
    pub const A710: u64 = 0xd47;
    pub const X2: u64 = 0xd48;
    pub const N2: u64 = 0xd49;
    pub const V1: u64 = 0xd40;
}

impl HostCpu {
    fn arm_part(&self) -> Option<u64> {
        ((self.midr >> 24) & 0xff == 0x41).then_some((self.midr >> 4) & 0xfff)
    }
    /// MIDR variant (rN) and revision (pN) as one number, 0xN0M for rNpM.
    fn rev(&self) -> u64 {
        ((self.midr >> 16) & 0xf) << 4 | (self.midr & 0xf)
    }
    pub fn csv2(&self) -> u64 {
        field(self.pfr0, 56)
    }
    pub fn csv3(&self) -> u64 {
        field(self.pfr0, 60)
    }
    pub fn ssbs(&self) -> bool {
        field(self.pfr1, 4) != 0
    }
    pub fn ecbhb(&self) -> bool {
        field(self.mmfr1, 60) != 0
    }
    pub fn clearbhb(&self) -> bool {
        field(self.isar2, 28) != 0
    }
    /// Cores whose branch predictor cannot be steered across contexts.
    fn v2_immune(&self) -> bool {
        matches!(self.arm_part(), Some(part::A35 | part::A53 | part::A55))
    }
    fn v2_affected(&self) -> bool {
        self.csv2() == 0 && !self.v2_immune()
    }
    /// Iterations of the history loop this core needs (0: the loop does not apply).
    fn bhb_loop(&self) -> u8 {
        match self.arm_part() {
            Some(part::A78 | part::A78AE | part::A78C | part::X1 | part::A710 | part::X2 | part::N2 | part::V1) => 32,
            Some(part::A76 | part::A77 | part::N1) => 24,
            Some(part::A57 | part::A72) => 8,
            _ => 0,
        }
    }
    /// Cores whose history only the firmware can clear (WORKAROUND_3).
    fn bhb_needs_firmware(&self) -> bool {
        matches!(self.arm_part(), Some(part::A73 | part::A75))
    }
    /// Cores on which the firmware's WORKAROUND_1 also clears the branch history.
    fn wa1_clears_history(&self) -> bool {
        match self.arm_part() {
            Some(part::A57) => true,
            Some(part::A72) => self.rev() <= 0x10,
            _ => false,
        }
    }
}

/// The whole decision. Pure: host-tested with any CPU and firmware.
pub fn decide(cpu: &HostCpu, fw: &Firmware) -> Plan {
    let fw_wa1 = fw.wa1 == Some(0);
    let fw_wa3 = fw.wa3 == Some(0);
    let mut plan = Plan::NOTHING;

    // Spectre v2: the firmware's branch-predictor invalidation, on entry for the hypervisor.
    let v2_mitigated = if !cpu.v2_affected() || fw.wa1 == Some(1) {
        plan.wa1 = Answer::Unaffected;
        true
    } else if fw_wa1 {
        plan.entry_wa1 = fw.smc;
        plan.wa1 = Answer::Success;
        plan.wa1_call = if fw.smc { CallAction::DoneOnEntry } else { CallAction::Forward };
        true
    } else {
        false
    };

    // Spectre-BHB, for the hypervisor's own entry and for guests that ask (WORKAROUND_3).
    let csv2_3 = cpu.csv2() >= 3;
    let affected = !csv2_3 && (cpu.clearbhb() || cpu.bhb_loop() != 0 || cpu.bhb_needs_firmware() || fw_wa3);
    if !affected || fw.wa3 == Some(1) {
        plan.wa3 = Answer::Unaffected;
    } else if cpu.ecbhb() {
        // The CPU clears the history on the guest's exception into the hypervisor, which
        // is also all a WORKAROUND_3 call needs.
        plan.wa3 = Answer::Success;
        plan.wa3_call = CallAction::DoneOnEntry;
    } else if v2_mitigated && !(plan.entry_wa1 && cpu.wa1_clears_history()) {
        plan.bhb = if cpu.clearbhb() {
            BhbEntry::ClearInsn
        } else if cpu.bhb_loop() != 0 {
            BhbEntry::Loop(cpu.bhb_loop())
        } else if fw_wa3 && fw.smc {
            BhbEntry::FirmwareWa3
        } else {
            BhbEntry::None
        };
        if plan.bhb != BhbEntry::None {
            plan.wa3 = Answer::Success;
            plan.wa3_call = CallAction::DoneOnEntry;
        }
        if plan.bhb == BhbEntry::FirmwareWa3 {
            // WORKAROUND_3 invalidates the predictor as well: it replaces WORKAROUND_1.
            plan.entry_wa1 = false;
        }
    }
    // Where v2 is unmitigated (nothing can invalidate the predictor), the history is left
    // alone, as a guest does: WORKAROUND_3 stays NOT_SUPPORTED.
    if !v2_mitigated && fw_wa3 && fw.smc && cpu.bhb_needs_firmware() && !csv2_3 {
        // A73/A75 without WORKAROUND_1 but with WORKAROUND_3: that call covers both.
        plan.bhb = BhbEntry::FirmwareWa3;
        plan.wa1 = Answer::Success;
        plan.wa1_call = CallAction::DoneOnEntry;
        plan.wa3 = Answer::Success;
        plan.wa3_call = CallAction::DoneOnEntry;
    }

    // Speculative Store Bypass: the firmware's answer, the only software control there is.
    match fw.wa2 {
        Some(0) => {
            plan.wa2 = Answer::Success;
            plan.wa2_dynamic = true;
        }
        Some(1) => plan.wa2 = Answer::Unaffected,
        Some(-2) => plan.wa2 = Answer::NotRequired,
        _ => {}
    }
    plan
}

/// Per-vCPU WORKAROUND_2 state (the mitigation on), indexed by physical CPU: vCPUs are
/// pinned, one per CPU. A vCPU starts with the mitigation on.
pub struct SsbdState<const N: usize> {
    on: [core::sync::atomic::AtomicBool; N],
}

impl<const N: usize> SsbdState<N> {
    pub const fn new() -> Self {
        Self { on: [const { core::sync::atomic::AtomicBool::new(true) }; N] }
    }
    /// Record a vCPU's request; false for a CPU out of range (nothing recorded).
    pub fn set(&self, cpu: usize, on: bool) -> bool {
        self.on.get(cpu).map(|s| s.store(on, core::sync::atomic::Ordering::Relaxed)).is_some()
    }
    pub fn get(&self, cpu: usize) -> bool {
        self.on.get(cpu).is_none_or(|s| s.load(core::sync::atomic::Ordering::Relaxed))
    }
}

impl<const N: usize> Default for SsbdState<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// One line for the boot log.
pub fn describe(plan: &Plan) -> alloc::string::String {
    let entry = match (plan.entry_wa1, plan.bhb) {
        (false, BhbEntry::None) => "nothing".into(),
        (wa1, bhb) => {
            let mut parts = alloc::vec::Vec::new();
            if wa1 {
                parts.push(alloc::string::String::from("firmware WORKAROUND_1"));
            }
            match bhb {
                BhbEntry::None => {}
                BhbEntry::ClearInsn => parts.push("CLRBHB".into()),
                BhbEntry::Loop(k) => parts.push(alloc::format!("history loop x{k}")),
                BhbEntry::FirmwareWa3 => parts.push("firmware WORKAROUND_3".into()),
            }
            parts.join(" + ")
        }
    };
    alloc::format!(
        "on entry from guests: {entry}; guests are offered WORKAROUND_1 {}, WORKAROUND_2 {}{}, WORKAROUND_3 {}",
        plan.wa1.value(),
        plan.wa2.value(),
        if plan.wa2_dynamic { " (forwarded, per vCPU)" } else { "" },
        plan.wa3.value()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MIDR of an Arm core, rNpM.
    fn midr(part: u64, var: u64, rev: u64) -> u64 {
        0x41 << 24 | var << 20 | 0xf << 16 | part << 4 | rev
    }

    const A57: HostCpu = HostCpu { midr: 0x411f_d070, pfr0: 0x1122, pfr1: 0, mmfr1: 0, isar2: 0 };
    /// QEMU's `max`: CSV2 (2), CSV3, SSBS, ECBHB, CLRBHB.
    const MAX: HostCpu = HostCpu { midr: 0x000f_0510, pfr0: 0x1201_1111_2222_1122, pfr1: 0x20, mmfr1: 0x1000_0000_0000_0000, isar2: 0x1000_0000 };
    const QEMU_FW: Firmware = Firmware { wa1: Some(-1), wa2: Some(-1), wa3: Some(-1), smc: true };

    #[test]
    fn a57_on_qemu_offers_nothing_and_does_nothing() {
        // QEMU's firmware has none of the workarounds: v2 cannot be mitigated on an A57, so
        // the history is not worth clearing, and nothing is claimed.
        let p = decide(&A57, &QEMU_FW);
        assert_eq!(p, Plan::NOTHING);
        // The same with no conduit (or SMCCC 1.0): nothing asked, nothing offered.
        assert_eq!(decide(&A57, &Firmware::default()), Plan::NOTHING);
    }

    #[test]
    fn a57_with_firmware_workarounds() {
        let fw = Firmware { wa1: Some(0), wa2: Some(0), wa3: Some(-1), smc: true };
        let p = decide(&A57, &fw);
        // WORKAROUND_1 runs on every entry; on an A57 it clears the history too.
        assert!(p.entry_wa1);
        assert_eq!(p.bhb, BhbEntry::None);
        assert_eq!((p.wa1, p.wa1_call), (Answer::Success, CallAction::DoneOnEntry));
        assert_eq!((p.wa2, p.wa2_dynamic), (Answer::Success, true));
        assert_eq!(p.wa3, Answer::NotSupported);
        // Over an HVC conduit the hypervisor cannot call it from its entry: forwarded.
        let p = decide(&A57, &Firmware { smc: false, ..fw });
        assert!(!p.entry_wa1);
        assert_eq!((p.wa1, p.wa1_call), (Answer::Success, CallAction::Forward));
        assert_eq!(p.bhb, BhbEntry::Loop(8));
    }

    #[test]
    fn a72_r1p1_gets_the_loop_after_the_firmware_call() {
        let cpu = HostCpu { midr: midr(part::A72, 1, 1), ..A57 };
        let p = decide(&cpu, &Firmware { wa1: Some(0), wa2: Some(1), wa3: Some(-1), smc: true });
        assert!(p.entry_wa1);
        assert_eq!(p.bhb, BhbEntry::Loop(8));
        assert_eq!((p.wa3, p.wa3_call), (Answer::Success, CallAction::DoneOnEntry));
        assert_eq!(p.wa2, Answer::Unaffected);
        assert!(!p.wa2_dynamic);
    }

    #[test]
    fn a76_has_csv2_and_needs_the_24_loop() {
        let cpu = HostCpu { midr: midr(part::A76, 4, 1), pfr0: 1 << 56, ..A57 };
        let p = decide(&cpu, &QEMU_FW);
        assert!(!p.entry_wa1);
        assert_eq!(p.wa1, Answer::Unaffected);
        assert_eq!(p.bhb, BhbEntry::Loop(24));
        assert_eq!(p.wa3, Answer::Success);
        assert_eq!(p.wa2, Answer::NotSupported);
    }

    #[test]
    fn a73_uses_firmware_wa3_for_both() {
        let cpu = HostCpu { midr: midr(part::A73, 0, 2), ..A57 };
        let p = decide(&cpu, &Firmware { wa1: Some(0), wa2: Some(-2), wa3: Some(0), smc: true });
        assert!(!p.entry_wa1, "WORKAROUND_3 replaces WORKAROUND_1 on entry");
        assert_eq!(p.bhb, BhbEntry::FirmwareWa3);
        assert_eq!((p.wa1, p.wa3), (Answer::Success, Answer::Success));
        assert_eq!(p.wa2, Answer::NotRequired);
        // Firmware with only WORKAROUND_3.
        let p = decide(&cpu, &Firmware { wa1: Some(-1), wa2: Some(-1), wa3: Some(0), smc: true });
        assert_eq!(p.bhb, BhbEntry::FirmwareWa3);
        assert_eq!((p.wa1, p.wa1_call), (Answer::Success, CallAction::DoneOnEntry));
        // Firmware with neither: nothing claimed.
        assert_eq!(decide(&cpu, &QEMU_FW), Plan::NOTHING);
    }

    #[test]
    fn clearbhb_preferred_over_the_loop() {
        let cpu = HostCpu { midr: midr(part::A78, 1, 0), pfr0: 1 << 56, isar2: 1 << 28, ..A57 };
        assert_eq!(decide(&cpu, &QEMU_FW).bhb, BhbEntry::ClearInsn);
    }

    #[test]
    fn qemu_max_needs_nothing_on_entry() {
        // CSV2 2: v2 unaffected; ECBHB: the exception itself clears the history.
        let p = decide(&MAX, &QEMU_FW);
        assert!(!p.entry_wa1);
        assert_eq!(p.bhb, BhbEntry::None);
        assert_eq!(p.wa1, Answer::Unaffected);
        assert_eq!((p.wa3, p.wa3_call), (Answer::Success, CallAction::DoneOnEntry));
        // SSBS is the guest's through PSTATE; the firmware has no WORKAROUND_2 to offer.
        assert!(MAX.ssbs());
        assert_eq!(p.wa2, Answer::NotSupported);
        // CSV2_3: unaffected by BHB.
        let p = decide(&HostCpu { pfr0: 3 << 56, ..MAX }, &QEMU_FW);
        assert_eq!(p.wa3, Answer::Unaffected);
    }

    #[test]
    fn immune_cores_are_unaffected() {
        let cpu = HostCpu { midr: midr(part::A53, 0, 4), ..A57 };
        let p = decide(&cpu, &QEMU_FW);
        assert_eq!((p.wa1, p.wa3), (Answer::Unaffected, Answer::Unaffected));
        assert!(!p.entry_wa1);
    }

    #[test]
    fn firmware_says_not_affected() {
        let p = decide(&A57, &Firmware { wa1: Some(1), wa2: Some(1), wa3: Some(1), smc: true });
        assert_eq!((p.wa1, p.wa2, p.wa3), (Answer::Unaffected, Answer::Unaffected, Answer::Unaffected));
        assert!(!p.entry_wa1 && p.bhb == BhbEntry::None);
    }

    #[test]
    fn ssbd_state_per_vcpu() {
        let s: SsbdState<2> = SsbdState::new();
        assert!(s.get(0) && s.get(1));
        assert!(s.set(1, false));
        assert!(s.get(0) && !s.get(1));
        assert!(!s.set(7, false));
        assert!(s.get(7));
    }

    #[test]
    fn log_line() {
        let p = decide(&A57, &Firmware { wa1: Some(0), wa2: Some(0), wa3: Some(-1), smc: true });
        let d = describe(&p);
        assert!(d.contains("firmware WORKAROUND_1") && d.contains("WORKAROUND_2 0 (forwarded, per vCPU)"), "{d}");
        assert!(describe(&Plan::NOTHING).starts_with("on entry from guests: nothing"));
    }
}
