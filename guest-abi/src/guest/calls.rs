//! Typed wrappers over the raw hypercalls for the operations guests use most.

use super::hvc::*;
use crate::console::CONSOLEIO_WRITE;
use crate::errno::{check, check_zero, Errno};
use crate::event_channel::*;
use crate::grant_table::*;
use crate::hypercall::*;
use crate::memory::*;
use crate::platform::XenPlatformOp;
use crate::sched::*;
use crate::smccc::{PSCI_FEATURES, PSCI_VERSION, SMCCC_VERSION};
use crate::vcpu::*;
use crate::version::*;

/// `xen_version(cmd, arg)` with a raw argument address.
///
/// # Safety
/// `arg` must be valid for the sub-op's struct, or deliberately invalid.
pub unsafe fn xen_version(cmd: u32, arg: usize) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { hypercall2(HYPERVISOR_XEN_VERSION as usize, cmd as usize, arg) }
}

/// `XENVER_version`: `(major, minor)`.
pub fn version() -> Result<(u16, u16), Errno> {
    // SAFETY: XENVER_version takes no buffer.
    let raw = unsafe { xen_version(XENVER_VERSION, 0) };
    check(raw).map(split_version)
}

/// `XENVER_get_features` for submap `idx`.
pub fn get_features(idx: u32) -> Result<u32, Errno> {
    let mut fi = XenFeatureInfo { submap_idx: idx, submap: 0 };
    // SAFETY: `fi` is a live, correctly laid out XenFeatureInfo.
    let raw = unsafe { xen_version(XENVER_GET_FEATURES, &mut fi as *mut _ as usize) };
    check_zero(raw).map(|()| fi.submap)
}

/// `console_io(cmd, count, buf)` with a raw buffer address.
///
/// # Safety
/// `buf` must be valid for `count` bytes (read for write, written for read), or deliberately invalid.
pub unsafe fn console_io(cmd: u32, count: usize, buf: usize) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { hypercall3(HYPERVISOR_CONSOLE_IO as usize, cmd as usize, count, buf) }
}

/// Writes `bytes` to the hypervisor console.
pub fn console_write(bytes: &[u8]) -> Result<(), Errno> {
    // SAFETY: the hypervisor only reads `bytes`.
    check_zero(unsafe { console_io(CONSOLEIO_WRITE, bytes.len(), bytes.as_ptr() as usize) })
}

/// `sched_op(cmd, arg)` with a raw argument address.
///
/// # Safety
/// `arg` must be valid for the sub-op, or deliberately invalid.
pub unsafe fn sched_op(cmd: u32, arg: usize) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { hypercall2(HYPERVISOR_SCHED_OP as usize, cmd as usize, arg) }
}

/// `SCHEDOP_yield`.
pub fn sched_yield() -> Result<(), Errno> {
    // SAFETY: no buffer.
    check_zero(unsafe { sched_op(SCHEDOP_YIELD, 0) })
}

/// `SCHEDOP_shutdown(reason)`; returns only if the hypervisor refuses.
pub fn shutdown(reason: u32) -> Errno {
    let arg = SchedShutdown { reason };
    // SAFETY: `arg` is a live SchedShutdown.
    let raw = unsafe { sched_op(SCHEDOP_SHUTDOWN, &arg as *const _ as usize) };
    match check(raw) {
        Err(e) => e,
        Ok(_) => Errno(0),
    }
}

/// `memory_op(cmd, arg)` with a raw argument address.
///
/// # Safety
/// `arg` and every guest handle inside it must be valid for the sub-op.
pub unsafe fn memory_op(cmd: u32, arg: usize) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { hypercall2(HYPERVISOR_MEMORY_OP as usize, cmd as usize, arg) }
}

/// `XENMEM_add_to_physmap`.
///
/// # Safety
/// Maps a page at `xatp.gpfn`, replacing what the guest had there.
pub unsafe fn add_to_physmap(xatp: &XenAddToPhysmap) -> Result<(), Errno> {
    // SAFETY: forwarded contract; `xatp` is live.
    check_zero(unsafe { memory_op(XENMEM_ADD_TO_PHYSMAP, xatp as *const _ as usize) })
}

/// `grant_table_op(cmd, uop, count)` with a raw array address.
///
/// # Safety
/// `uop` must point at `count` structs of the op's type.
pub unsafe fn grant_table_op(cmd: u32, uop: usize, count: u32) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { hypercall3(HYPERVISOR_GRANT_TABLE_OP as usize, cmd as usize, uop, count as usize) }
}

/// `GNTTABOP_query_size` for `dom`.
pub fn gnttab_query_size(dom: crate::DomId) -> Result<GnttabQuerySize, Errno> {
    let mut q = GnttabQuerySize { dom, ..Default::default() };
    // SAFETY: `q` is one live GnttabQuerySize.
    check_zero(unsafe { grant_table_op(GNTTABOP_QUERY_SIZE, &mut q as *mut _ as usize, 1) }).map(|()| q)
}

/// `GNTTABOP_set_version`; returns the version in force.
pub fn gnttab_set_version(version: u32) -> Result<u32, Errno> {
    let mut v = GnttabSetVersion { version };
    // SAFETY: `v` is one live GnttabSetVersion.
    check_zero(unsafe { grant_table_op(GNTTABOP_SET_VERSION, &mut v as *mut _ as usize, 1) }).map(|()| v.version)
}

/// `event_channel_op(cmd, arg)` with a raw argument address.
///
/// # Safety
/// `arg` must be valid for the sub-op's struct.
pub unsafe fn event_channel_op(cmd: u32, arg: usize) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { hypercall2(HYPERVISOR_EVENT_CHANNEL_OP as usize, cmd as usize, arg) }
}

/// `EVTCHNOP_alloc_unbound`: a new port of `dom` that `remote_dom` may bind.
pub fn evtchn_alloc_unbound(dom: crate::DomId, remote_dom: crate::DomId) -> Result<EvtchnPort, Errno> {
    let mut a = EvtchnAllocUnbound { dom, remote_dom, port: 0 };
    // SAFETY: `a` is a live EvtchnAllocUnbound.
    check_zero(unsafe { event_channel_op(EVTCHNOP_ALLOC_UNBOUND, &mut a as *mut _ as usize) }).map(|()| a.port)
}

/// `EVTCHNOP_bind_virq`.
pub fn evtchn_bind_virq(virq: u32, vcpu: u32) -> Result<EvtchnPort, Errno> {
    let mut b = EvtchnBindVirq { virq, vcpu, port: 0 };
    // SAFETY: `b` is a live EvtchnBindVirq.
    check_zero(unsafe { event_channel_op(EVTCHNOP_BIND_VIRQ, &mut b as *mut _ as usize) }).map(|()| b.port)
}

/// `EVTCHNOP_send`.
pub fn evtchn_send(port: EvtchnPort) -> Result<(), Errno> {
    let s = EvtchnSend { port };
    // SAFETY: `s` is a live EvtchnSend.
    check_zero(unsafe { event_channel_op(EVTCHNOP_SEND, &s as *const _ as usize) })
}

/// `EVTCHNOP_close`.
pub fn evtchn_close(port: EvtchnPort) -> Result<(), Errno> {
    let c = EvtchnClose { port };
    // SAFETY: `c` is a live EvtchnClose.
    check_zero(unsafe { event_channel_op(EVTCHNOP_CLOSE, &c as *const _ as usize) })
}

/// `EVTCHNOP_unmask`.
pub fn evtchn_unmask(port: EvtchnPort) -> Result<(), Errno> {
    let u = EvtchnUnmask { port };
    // SAFETY: `u` is a live EvtchnUnmask.
    check_zero(unsafe { event_channel_op(EVTCHNOP_UNMASK, &u as *const _ as usize) })
}

/// `vcpu_op(cmd, vcpu, arg)` with a raw argument address.
///
/// # Safety
/// `arg` must be valid for the sub-op; registration ops make the hypervisor write there later.
pub unsafe fn vcpu_op(cmd: u32, vcpu: u32, arg: usize) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { hypercall3(HYPERVISOR_VCPU_OP as usize, cmd as usize, vcpu as usize, arg) }
}

/// `VCPUOP_register_vcpu_info`.
///
/// # Safety
/// The hypervisor writes the vCPU's vcpu_info at that frame and offset from now on.
pub unsafe fn register_vcpu_info(vcpu: u32, info: &VcpuRegisterVcpuInfo) -> Result<(), Errno> {
    // SAFETY: forwarded contract.
    check_zero(unsafe { vcpu_op(VCPUOP_REGISTER_VCPU_INFO, vcpu, info as *const _ as usize) })
}

/// `hvm_op(cmd, arg)` with a raw argument address.
///
/// # Safety
/// `arg` must point at a live [`crate::hvm::XenHvmParam`].
pub unsafe fn hvm_op(cmd: u32, arg: usize) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { hypercall2(HYPERVISOR_HVM_OP as usize, cmd as usize, arg) }
}

/// `vm_assist(cmd, type)`.
pub fn vm_assist(cmd: u32, kind: u32) -> Result<(), Errno> {
    // SAFETY: no buffer.
    check_zero(unsafe { hypercall2(HYPERVISOR_VM_ASSIST as usize, cmd as usize, kind as usize) })
}

/// `platform_op(op)`.
pub fn platform_op(op: &mut XenPlatformOp) -> Result<(), Errno> {
    // SAFETY: `op` is a live XenPlatformOp; settime ops carry no guest handles.
    check_zero(unsafe { hypercall1(HYPERVISOR_PLATFORM_OP as usize, op as *mut _ as usize) })
}

/// `multicall(entries)`.
///
/// # Safety
/// Each entry's arguments must be valid for its hypercall.
pub unsafe fn multicall(entries: &mut [crate::multicall::MulticallEntry]) -> Result<(), Errno> {
    // SAFETY: forwarded contract.
    check_zero(unsafe {
        hypercall2(HYPERVISOR_MULTICALL as usize, entries.as_mut_ptr() as usize, entries.len())
    })
}

/// PSCI_VERSION through `hvc #0`.
pub fn psci_version() -> u32 {
    // SAFETY: PSCI_VERSION has no side effects.
    unsafe { smccc_call(PSCI_VERSION, [0; 7])[0] as u32 }
}

/// PSCI_FEATURES(fid) through `hvc #0`: 0 (or feature flags) if implemented, negative otherwise.
pub fn psci_features(fid: u32) -> i32 {
    // SAFETY: PSCI_FEATURES has no side effects.
    unsafe { smccc_call(PSCI_FEATURES, [fid as usize, 0, 0, 0, 0, 0, 0])[0] as i32 }
}

/// SMCCC_VERSION through `hvc #0`.
pub fn smccc_version() -> i32 {
    // SAFETY: SMCCC_VERSION has no side effects.
    unsafe { smccc_call(SMCCC_VERSION, [0; 7])[0] as i32 }
}
