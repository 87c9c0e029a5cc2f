//! The architecture's counters, printed when dom0 stops.

use core::sync::atomic::AtomicU64;

/// Traps from guests, and how many of them were Xen hypercalls (printed when dom0 stops).
pub static TRAPS: AtomicU64 = AtomicU64::new(0);
pub static HYPERCALLS: AtomicU64 = AtomicU64::new(0);
/// Stage-2 faults that were another CPU's p2m change in progress: the guest retried.
pub static S2_FAULTS_RESOLVED: AtomicU64 = AtomicU64::new(0);
