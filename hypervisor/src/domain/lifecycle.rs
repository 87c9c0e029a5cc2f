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

#[cfg(test)]
mod tests {
    use super::*;

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
