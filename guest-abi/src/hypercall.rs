//! Hypercall numbers (the value in x16 / r12) and the HVC immediate that marks a Xen hypercall.

/// The immediate of the `HVC` instruction that carries a Xen hypercall (the ESR ISS must equal it).
pub const XEN_HYPERCALL_TAG: u16 = 0xEA1;
/// Highest number Xen's ARM table has room for; numbers at or above it return -ENOSYS.
pub const NR_HYPERCALLS: u64 = 64;

/// Superseded `sched_op` (x86 PV only; -ENOSYS on ARM).
pub const HYPERVISOR_SCHED_OP_COMPAT: u64 = 6;
/// `platform_op`: privileged platform control (settime).
pub const HYPERVISOR_PLATFORM_OP: u64 = 7;
/// `memory_op`: reservations and physmap changes.
pub const HYPERVISOR_MEMORY_OP: u64 = 12;
/// `multicall`: a batch of hypercalls.
pub const HYPERVISOR_MULTICALL: u64 = 13;
/// `xen_version`: version, features and build strings.
pub const HYPERVISOR_XEN_VERSION: u64 = 17;
/// `console_io`: the hypervisor console.
pub const HYPERVISOR_CONSOLE_IO: u64 = 18;
/// Superseded `physdev_op` (-ENOSYS on ARM).
pub const HYPERVISOR_PHYSDEV_OP_COMPAT: u64 = 19;
/// Superseded `event_channel_op` (-ENOSYS on ARM).
pub const HYPERVISOR_EVENT_CHANNEL_OP_COMPAT: u64 = 16;
/// `grant_table_op`: grant tables.
pub const HYPERVISOR_GRANT_TABLE_OP: u64 = 20;
/// `vm_assist`: optional guest-assist modes.
pub const HYPERVISOR_VM_ASSIST: u64 = 21;
/// `vcpu_op`: per-vCPU registration and control.
pub const HYPERVISOR_VCPU_OP: u64 = 24;
/// `xsm_op`: security module operations.
pub const HYPERVISOR_XSM_OP: u64 = 27;
/// `sched_op`: yield, block, shutdown, poll.
pub const HYPERVISOR_SCHED_OP: u64 = 29;
/// `event_channel_op`: event channels.
pub const HYPERVISOR_EVENT_CHANNEL_OP: u64 = 32;
/// `physdev_op`: physical device notifications.
pub const HYPERVISOR_PHYSDEV_OP: u64 = 33;
/// `hvm_op`: HVM parameters.
pub const HYPERVISOR_HVM_OP: u64 = 34;
/// `sysctl`: toolstack system control.
pub const HYPERVISOR_SYSCTL: u64 = 35;
/// `domctl`: toolstack domain control.
pub const HYPERVISOR_DOMCTL: u64 = 36;
/// `argo_op`: Argo inter-domain messaging.
pub const HYPERVISOR_ARGO_OP: u64 = 39;
/// `dm_op`: device-model operations.
pub const HYPERVISOR_DM_OP: u64 = 41;
/// `hypfs_op`: hypervisor filesystem.
pub const HYPERVISOR_HYPFS_OP: u64 = 42;

/// `vm_assist` command: enable an assist type.
pub const VMASST_CMD_ENABLE: u32 = 0;
/// `vm_assist` command: disable an assist type.
pub const VMASST_CMD_DISABLE: u32 = 1;
/// `vm_assist` type: the hypervisor sets `XEN_RUNSTATE_UPDATE` while it rewrites the runstate area.
pub const VMASST_TYPE_RUNSTATE_UPDATE_FLAG: u32 = 5;

/// `physdev_op` command Linux uses to report a PCI device (-ENOSYS is tolerated).
pub const PHYSDEVOP_PCI_DEVICE_ADD: u32 = 25;
