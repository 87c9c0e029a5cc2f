//! `hvm_op` (hypercall 34): HVM parameters, which ARM guests use for the xenstore and console rings.

use crate::DomId;

/// Set a parameter ([`XenHvmParam`]).
pub const HVMOP_SET_PARAM: u32 = 0;
/// Read a parameter ([`XenHvmParam`]).
pub const HVMOP_GET_PARAM: u32 = 1;

/// Parameter: event-delivery callback (on ARM: type PPI in bits 63:56, PPI number in bits 7:0).
pub const HVM_PARAM_CALLBACK_IRQ: u32 = 0;
/// Parameter: xenstore ring frame.
pub const HVM_PARAM_STORE_PFN: u32 = 1;
/// Parameter: xenstore event channel.
pub const HVM_PARAM_STORE_EVTCHN: u32 = 2;
/// Parameter: PV console ring frame.
pub const HVM_PARAM_CONSOLE_PFN: u32 = 17;
/// Parameter: PV console event channel.
pub const HVM_PARAM_CONSOLE_EVTCHN: u32 = 18;
/// The VM event monitor ring's frame (toolstack only).
pub const HVM_PARAM_MONITOR_RING_PFN: u32 = 28;
/// Callback type in bits 63:56 of `HVM_PARAM_CALLBACK_IRQ`: a PPI (2 on ARM, as Xen 4.17
/// reports dom0's: 0x0200000000000210).
pub const HVM_PARAM_CALLBACK_TYPE_PPI: u64 = 2;
/// Shift of the callback type field.
pub const HVM_PARAM_CALLBACK_TYPE_SHIFT: u32 = 56;

/// Argument of `HVMOP_set_param` / `HVMOP_get_param`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenHvmParam {
    /// Domain (usually [`crate::DOMID_SELF`]).
    pub domid: DomId,
    /// HVM_PARAM_* index.
    pub index: u32,
    /// Value (in for set, out for get).
    pub value: u64,
}
crate::layout!(XenHvmParam, 16; domid @ 0, index @ 4, value @ 8);
