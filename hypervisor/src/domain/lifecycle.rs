//! What happens to the machine when the hardware domain stops, the way Xen 4.17 handles its
//! hardware domain: power off halts the machine; reboot, watchdog and soft reset restart it at
//! once; a crash (and any reason Xen does not expect of dom0, e.g. suspend) restarts it after
//! five seconds, or halts it when the hypervisor was booted with `noreboot`. The arch layer
//! carries the decision out; this module decides and says why.

use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicBool, Ordering};

use super::ShutdownReason;

/// How long a crashed hardware domain's machine waits before it restarts (Xen's delay: time to
/// read the console).
pub const CRASH_RESTART_DELAY_MS: u32 = 5000;

/// What the machine does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MachineAction {
    /// Power off (PSCI SYSTEM_OFF): what halting the machine means on Arm.
    PowerOff,
    /// Restart (PSCI SYSTEM_RESET) after `delay_ms`.
    Restart { delay_ms: u32 },
}

/// `noreboot` on the hypervisor's command line: a crashed hardware domain halts the machine
/// instead of restarting it (to keep the console on screen).
static NOREBOOT: AtomicBool = AtomicBool::new(false);

/// Record `noreboot` (at boot).
pub fn set_noreboot(on: bool) {
    NOREBOOT.store(on, Ordering::Relaxed);
}

/// What the machine does when the hardware domain stops for `reason`, and the console line
/// that says so.
pub fn hardware_domain_stopped(reason: ShutdownReason) -> (MachineAction, String) {
    decide(reason, NOREBOOT.load(Ordering::Relaxed))
}

fn decide(reason: ShutdownReason, noreboot: bool) -> (MachineAction, String) {
    let later = |what: &str| {
        if noreboot {
            (MachineAction::PowerOff, format!("hardware domain {what}: noreboot given, halting the machine"))
        } else {
            let secs = CRASH_RESTART_DELAY_MS / 1000;
            (MachineAction::Restart { delay_ms: CRASH_RESTART_DELAY_MS }, format!("hardware domain {what}: restarting the machine in {secs} seconds"))
        }
    };
    let now = |what: &str| (MachineAction::Restart { delay_ms: 0 }, format!("hardware domain {what}: restarting the machine"));
    match reason {
        ShutdownReason::PowerOff => (MachineAction::PowerOff, format!("hardware domain powered off: powering off the machine")),
        ShutdownReason::Reboot => now("asked for a reboot"),
        ShutdownReason::Watchdog => now("was stopped by its watchdog"),
        ShutdownReason::SoftReset => now("asked for a soft reset, which a hardware domain cannot have"),
        ShutdownReason::Crash => later("crashed"),
        ShutdownReason::Suspend => later("asked to suspend, which a hardware domain cannot"),
    }
}

/// What becomes of a domU's vCPU once a trap from it is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomUAfter {
    /// It goes on running.
    Runs,
    /// The vCPU turned itself off (PSCI CPU_OFF): it leaves its CPU, nobody is told; the
    /// domain is not shut down by that, even when it was its last vCPU (as on Xen).
    VcpuOff,
    /// The domain stopped (SCHEDOP_shutdown, PSCI SYSTEM_OFF/RESET, a crash): its CPU stops,
    /// nothing reclaims it (a dom0less guest), dom0 hears of it through VIRQ_DOM_EXC.
    Stopped(ShutdownReason),
}

/// What becomes of domU `id`'s vCPU given its domain's shutdown state and whether the vCPU
/// (`off`: its id) turned itself off, and the console line that says so (none while it runs).
pub fn domu_after_trap(id: super::DomId, shutdown: Option<ShutdownReason>, off: Option<u32>) -> (DomUAfter, Option<String>) {
    match (shutdown, off) {
        (Some(reason), _) => (DomUAfter::Stopped(reason), Some(format!("d{id}: shutdown ({reason:?}): its CPU stops; dom0 gets VIRQ_DOM_EXC"))),
        (None, Some(v)) => (DomUAfter::VcpuOff, Some(format!("d{id}: vCPU {v} off (PSCI CPU_OFF): its CPU stops"))),
        (None, None) => (DomUAfter::Runs, None),
    }
}

/// Nested faults in a row after which a vCPU's domain counts as crashed.
pub const FAULT_LOOP_LIMIT: u32 = 16;
/// Bytes of one AArch64 exception vector entry (32 instructions).
const VECTOR_ENTRY: u64 = 0x80;

/// Watches the exceptions the hypervisor injects into one vCPU for a guest that can no longer
/// run: its exception handler faults inside its own vector entry (an undefined instruction
/// there, a vector table in memory it does not own, a stack it cannot write), so every
/// injection leads straight to the next one and each overwrites the state (ELR/SPSR/ESR) the
/// previous one saved. Such a vCPU never gets out again; a domain whose vCPU does has crashed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultLoop {
    /// The vector entry the last injection sent the vCPU to.
    vector: Option<u64>,
    /// Injections in a row whose fault lay inside the previous one's vector entry.
    nested: u32,
}

impl FaultLoop {
    pub const fn new() -> Self {
        Self { vector: None, nested: 0 }
    }

    /// An exception is injected for a fault at `pc`, sending the vCPU to its vector entry at
    /// `vector`. True once [`FAULT_LOOP_LIMIT`] injections in a row were for faults inside the
    /// vector entry the one before sent it to.
    pub fn injected(&mut self, pc: u64, vector: u64) -> bool {
        self.nested = if self.would_nest(pc) { self.nested.saturating_add(1) } else { 0 };
        self.vector = Some(vector);
        self.nested >= FAULT_LOOP_LIMIT
    }

    /// Whether a fault at `pc` lies inside the vector entry the last injection sent the vCPU
    /// to (one more turn of a loop: worth no log line of its own).
    pub fn would_nest(&self, pc: u64) -> bool {
        self.vector.is_some_and(|v| pc.wrapping_sub(v) < VECTOR_ENTRY)
    }

    /// How many nested faults in a row were seen.
    pub fn nested(&self) -> u32 {
        self.nested
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_domu_that_stops_stops_its_cpu_and_only_a_shutdown_is_reported_to_dom0() {
        assert_eq!(domu_after_trap(1, None, None), (DomUAfter::Runs, None));
        let (after, line) = domu_after_trap(2, None, Some(0));
        assert_eq!(after, DomUAfter::VcpuOff);
        assert!(line.unwrap().starts_with("d2: vCPU 0 off"));
        for reason in [ShutdownReason::Crash, ShutdownReason::PowerOff, ShutdownReason::Reboot] {
            // A shutdown wins over a vCPU that also turned itself off.
            for off in [None, Some(1)] {
                let (after, line) = domu_after_trap(3, Some(reason), off);
                assert_eq!(after, DomUAfter::Stopped(reason));
                let line = line.unwrap();
                assert!(line.starts_with(&format!("d3: shutdown ({reason:?})")) && line.contains("VIRQ_DOM_EXC"), "{line}");
            }
        }
    }

    #[test]
    fn a_handler_faulting_in_its_own_vector_entry_is_a_crash() {
        let mut l = FaultLoop::new();
        // An UNDEF at 0x1000 from EL1h; the handler (VBAR 0x8000, entry 0x8200) faults at its
        // first instruction, over and over.
        assert!(!l.injected(0x1000, 0x8200));
        for i in 1..FAULT_LOOP_LIMIT {
            assert!(!l.injected(0x8200, 0x8200), "nested fault {i}");
        }
        assert!(l.would_nest(0x8200) && !l.would_nest(0x1000));
        assert!(l.injected(0x8200, 0x8200));
        assert_eq!(l.nested(), FAULT_LOOP_LIMIT);
        // A few instructions in (a store to a bad stack) counts too.
        let mut l = FaultLoop::new();
        assert!(!l.injected(0x1000, 0x8200));
        assert!((0..FAULT_LOOP_LIMIT).map(|_| l.injected(0x8204, 0x8200)).last().unwrap_or(false));
    }

    #[test]
    fn faults_the_guest_handles_are_not_a_crash() {
        let mut l = FaultLoop::new();
        // The guest handles each fault and goes on: faults elsewhere, however many, reset.
        for i in 0..10 * FAULT_LOOP_LIMIT as u64 {
            assert!(!l.injected(0x1000 + 4 * (i % 3), 0x8200));
        }
        // A handler that faults beyond its vector entry (in code it branched to) is running
        // guest code: not counted.
        let mut l = FaultLoop::new();
        for _ in 0..2 * FAULT_LOOP_LIMIT {
            assert!(!l.injected(0x8280, 0x8200));
        }
        // Nested faults broken by one elsewhere start counting again.
        let mut l = FaultLoop::new();
        l.injected(0x1000, 0x8200);
        for _ in 1..FAULT_LOOP_LIMIT {
            l.injected(0x8200, 0x8200);
        }
        assert!(!l.injected(0x2000, 0x8200));
        assert_eq!(l.nested(), 0);
    }

    #[test]
    fn as_xen_handles_its_hardware_domain() {
        use MachineAction::Restart;
        use ShutdownReason::{Crash, Reboot, SoftReset, Suspend, Watchdog};
        const OFF: ShutdownReason = ShutdownReason::PowerOff;
        let cases = [
            (OFF, false, MachineAction::PowerOff),
            (Reboot, false, Restart { delay_ms: 0 }),
            (Watchdog, false, Restart { delay_ms: 0 }),
            (SoftReset, false, Restart { delay_ms: 0 }),
            (Crash, false, Restart { delay_ms: 5000 }),
            (Suspend, false, Restart { delay_ms: 5000 }),
            // noreboot halts only where Xen would wait and restart.
            (Crash, true, MachineAction::PowerOff),
            (Suspend, true, MachineAction::PowerOff),
            (Reboot, true, Restart { delay_ms: 0 }),
            (OFF, true, MachineAction::PowerOff),
        ];
        for (reason, noreboot, want) in cases {
            let (got, line) = decide(reason, noreboot);
            assert_eq!(got, want, "{reason:?} noreboot={noreboot}: {line}");
            assert!(line.starts_with("hardware domain "), "{line}");
        }
        assert!(decide(Crash, false).1.contains("crashed"));
        assert!(decide(Crash, false).1.contains("in 5 seconds"));
        assert!(decide(Crash, true).1.contains("noreboot"));
    }
}
