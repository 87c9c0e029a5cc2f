//! `vcpu_op` (hypercall 24): sub-ops and their structs (vcpu_info and runstate registration).

use crate::GuestHandle;

/// Initialise a vCPU's context (-EINVAL on ARM: PSCI CPU_ON is used instead).
pub const VCPUOP_INITIALISE: u32 = 0;
/// Bring a vCPU up (-EINVAL on ARM).
pub const VCPUOP_UP: u32 = 1;
/// Take a vCPU down.
pub const VCPUOP_DOWN: u32 = 2;
/// Is the vCPU up?
pub const VCPUOP_IS_UP: u32 = 3;
/// Copy the vCPU's runstate.
pub const VCPUOP_GET_RUNSTATE_INFO: u32 = 4;
/// Register a guest VA where the hypervisor keeps the runstate ([`VcpuRegisterRunstateMemoryArea`]).
pub const VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA: u32 = 5;
/// Periodic timer.
pub const VCPUOP_SET_PERIODIC_TIMER: u32 = 6;
/// Stop the periodic timer.
pub const VCPUOP_STOP_PERIODIC_TIMER: u32 = 7;
/// Single-shot timer.
pub const VCPUOP_SET_SINGLESHOT_TIMER: u32 = 8;
/// Stop the single-shot timer.
pub const VCPUOP_STOP_SINGLESHOT_TIMER: u32 = 9;
/// Move the vCPU's vcpu_info into a guest frame ([`VcpuRegisterVcpuInfo`]).
pub const VCPUOP_REGISTER_VCPU_INFO: u32 = 10;
/// Send an NMI (x86).
pub const VCPUOP_SEND_NMI: u32 = 11;
/// Physical CPU id (x86).
pub const VCPUOP_GET_PHYSID: u32 = 12;
/// Register a guest VA for a vcpu_time_info copy.
pub const VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA: u32 = 13;
/// Register a guest-physical runstate area.
pub const VCPUOP_REGISTER_RUNSTATE_PHYS_AREA: u32 = 14;
/// Register a guest-physical vcpu_time area.
pub const VCPUOP_REGISTER_VCPU_TIME_PHYS_AREA: u32 = 15;

/// Argument of `VCPUOP_register_vcpu_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRegisterVcpuInfo {
    /// Guest frame holding the vcpu_info.
    pub mfn: u64,
    /// Byte offset of the vcpu_info in that frame (it must not cross the page).
    pub offset: u32,
    /// Reserved; zero.
    pub rsvd: u32,
}
crate::layout!(VcpuRegisterVcpuInfo, 16; mfn @ 0, offset @ 8, rsvd @ 12);

/// Argument of `VCPUOP_register_runstate_memory_area`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRegisterRunstateMemoryArea {
    /// Guest virtual address of a [`crate::shared_info::VcpuRunstateInfo`].
    pub addr: GuestHandle,
}
crate::layout!(VcpuRegisterRunstateMemoryArea, 8; addr @ 0);
