//! The pages the hypervisor shares with a guest: shared_info, vcpu_info (with its time record) and
//! the runstate area.

use crate::XenUlong;

/// vCPUs whose vcpu_info lives inside shared_info (on ARM only vCPU 0 is guaranteed to fit).
pub const XEN_LEGACY_MAX_VCPUS: usize = 1;
/// Bits per `xen_ulong_t` word of the 2-level event bitmaps.
pub const BITS_PER_XEN_ULONG: usize = 64;
/// Ports of the 2-level event ABI (64 x 64).
pub const EVTCHN_2L_NR_CHANNELS: usize = BITS_PER_XEN_ULONG * BITS_PER_XEN_ULONG;

/// Per-vCPU time record; valid when `version` is even and unchanged across the read.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuTimeInfo {
    /// Odd while the hypervisor updates this record.
    pub version: u32,
    /// Padding.
    pub pad0: u32,
    /// Counter value at `system_time`.
    pub tsc_timestamp: u64,
    /// System time (ns since boot) at `tsc_timestamp`.
    pub system_time: u64,
    /// Counter-to-ns multiplier (32.32 fixed point after the shift).
    pub tsc_to_system_mul: u32,
    /// Counter shift applied before the multiply.
    pub tsc_shift: i8,
    /// XEN_PVCLOCK_* flags.
    pub flags: u8,
    /// Padding.
    pub pad1: [u8; 2],
}
crate::layout!(VcpuTimeInfo, 32; version @ 0, pad0 @ 4, tsc_timestamp @ 8, system_time @ 16, tsc_to_system_mul @ 24, tsc_shift @ 28, flags @ 29, pad1 @ 30);

/// The ARM part of vcpu_info: empty (size 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchVcpuInfo {}
crate::layout!(ArchVcpuInfo, 0);

/// Per-vCPU event and time state.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuInfo {
    /// Set by the hypervisor when an event is pending for this vCPU; the guest clears it.
    pub evtchn_upcall_pending: u8,
    /// Unused on ARM (the event PPI is masked at the GIC instead).
    pub evtchn_upcall_mask: u8,
    /// 2-level ABI: bit n set when word n of `evtchn_pending` may have bits set.
    pub evtchn_pending_sel: XenUlong,
    /// Architecture part (empty on ARM).
    pub arch: ArchVcpuInfo,
    /// Time record.
    pub time: VcpuTimeInfo,
}
crate::layout!(VcpuInfo, 48; evtchn_upcall_pending @ 0, evtchn_upcall_mask @ 1, evtchn_pending_sel @ 8, arch @ 16, time @ 16);

/// The ARM part of shared_info: empty (size 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchSharedInfo {}
crate::layout!(ArchSharedInfo, 0);

/// The shared_info page (mapped with `XENMAPSPACE_shared_info`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedInfo {
    /// vcpu_info of the first vCPUs (until they register their own).
    pub vcpu_info: [VcpuInfo; XEN_LEGACY_MAX_VCPUS],
    /// 2-level ABI: pending bit per port.
    pub evtchn_pending: [XenUlong; BITS_PER_XEN_ULONG],
    /// 2-level ABI: mask bit per port.
    pub evtchn_mask: [XenUlong; BITS_PER_XEN_ULONG],
    /// Wallclock version; odd while updating.
    pub wc_version: u32,
    /// Wallclock seconds at system time 0 (low 32 bits).
    pub wc_sec: u32,
    /// Wallclock nanoseconds at system time 0.
    pub wc_nsec: u32,
    /// Wallclock seconds, high 32 bits.
    pub wc_sec_hi: u32,
    /// Architecture part (empty on ARM).
    pub arch: ArchSharedInfo,
}
crate::layout!(SharedInfo, 1088; vcpu_info @ 0, evtchn_pending @ 48, evtchn_mask @ 560, wc_version @ 1072, wc_sec @ 1076, wc_nsec @ 1080, wc_sec_hi @ 1084, arch @ 1088);

/// Runstate: running on a physical CPU.
pub const RUNSTATE_RUNNING: i32 = 0;
/// Runstate: runnable, waiting for a CPU.
pub const RUNSTATE_RUNNABLE: i32 = 1;
/// Runstate: blocked.
pub const RUNSTATE_BLOCKED: i32 = 2;
/// Runstate: offline.
pub const RUNSTATE_OFFLINE: i32 = 3;
/// Set in `state_entry_time` while the hypervisor updates the area (with the vm_assist flag).
pub const XEN_RUNSTATE_UPDATE: u64 = 1 << 63;

/// Per-vCPU accounting, kept by the hypervisor at the registered address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRunstateInfo {
    /// RUNSTATE_* current state.
    pub state: i32,
    /// System time (ns) when `state` was entered.
    pub state_entry_time: u64,
    /// Total ns spent in each RUNSTATE_*.
    pub time: [u64; 4],
}
crate::layout!(VcpuRunstateInfo, 48; state @ 0, state_entry_time @ 8, time @ 16);
