//! The architecture's counters: traps from guests per CPU and kind, hypercall times (with
//! `hypercall_stats`), stage-2 faults a retry resolved. Printed when dom0 stops.

use super::percpu;
use crate::trap_stats::{TrapKind, TrapStats};
use core::sync::atomic::AtomicU64;
use percpu::MAX_CPUS;

/// Exceptions taken from guests into EL2 (every lower-EL vector) per CPU and kind, printed
/// when dom0 stops.
pub static TRAPS: TrapStats<{ MAX_CPUS }> = TrapStats::new();
/// Whether hypercalls are timed (`hypercall_stats` on the command line: off by default, so the
/// hypercall path pays one load for it).
pub static HCALL_STATS: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
/// Time in the hypervisor per hypercall and sub-op, printed when dom0 stops.
pub static HCALL_TIME: crate::trap_stats::HypercallTime = crate::trap_stats::HypercallTime::new();

/// Count one trap of `kind` on this CPU.
#[inline]
pub fn count(kind: TrapKind) {
    TRAPS.count(percpu::this_cpu(), kind);
}
/// Stage-2 faults that were another CPU's p2m change in progress: the guest retried.
pub static S2_FAULTS_RESOLVED: AtomicU64 = AtomicU64::new(0);
