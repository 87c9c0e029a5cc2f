//! `sched_op` (hypercall 29): yield, block, shutdown, poll.

use crate::{DomId, GuestHandle};

/// Yield the CPU; returns 0.
pub const SCHEDOP_YIELD: u32 = 0;
/// Block until an event is pending.
pub const SCHEDOP_BLOCK: u32 = 1;
/// Shut the caller down ([`SchedShutdown`]).
pub const SCHEDOP_SHUTDOWN: u32 = 2;
/// Block until one of a set of ports is pending ([`SchedPoll`]).
pub const SCHEDOP_POLL: u32 = 3;
/// Shut another domain down.
pub const SCHEDOP_REMOTE_SHUTDOWN: u32 = 4;
/// Record a shutdown reason without shutting down.
pub const SCHEDOP_SHUTDOWN_CODE: u32 = 5;
/// Watchdog control.
pub const SCHEDOP_WATCHDOG: u32 = 6;
/// Override vCPU pinning.
pub const SCHEDOP_PIN_OVERRIDE: u32 = 7;

/// Shutdown reason: power off.
pub const SHUTDOWN_POWEROFF: u32 = 0;
/// Shutdown reason: reboot.
pub const SHUTDOWN_REBOOT: u32 = 1;
/// Shutdown reason: suspend.
pub const SHUTDOWN_SUSPEND: u32 = 2;
/// Shutdown reason: crash.
pub const SHUTDOWN_CRASH: u32 = 3;
/// Shutdown reason: watchdog expiry.
pub const SHUTDOWN_WATCHDOG: u32 = 4;
/// Shutdown reason: soft reset.
pub const SHUTDOWN_SOFT_RESET: u32 = 5;

/// Largest `nr_ports` a poll accepts; more is -EINVAL.
pub const SCHED_POLL_MAX_PORTS: u32 = 128;

/// Argument of `SCHEDOP_shutdown`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedShutdown {
    /// SHUTDOWN_* reason.
    pub reason: u32,
}
crate::layout!(SchedShutdown, 4; reason @ 0);

/// Argument of `SCHEDOP_poll`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedPoll {
    /// Handle to an array of `nr_ports` event-channel ports.
    pub ports: GuestHandle,
    /// Number of ports.
    pub nr_ports: u32,
    /// Absolute system time (ns) to give up at; 0 for none.
    pub timeout: u64,
}
crate::layout!(SchedPoll, 24; ports @ 0, nr_ports @ 8, timeout @ 16);

/// Argument of `SCHEDOP_remote_shutdown`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedRemoteShutdown {
    /// Domain to shut down.
    pub domain_id: DomId,
    /// SHUTDOWN_* reason.
    pub reason: u32,
}
crate::layout!(SchedRemoteShutdown, 8; domain_id @ 0, reason @ 4);
