//! `multicall` (hypercall 13): a batch of hypercalls, one entry each.

use crate::XenUlong;

/// One call of a batch.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MulticallEntry {
    /// Hypercall number.
    pub op: XenUlong,
    /// Out: the call's return value.
    pub result: i64,
    /// The call's arguments.
    pub args: [XenUlong; 6],
}
crate::layout!(MulticallEntry, 64; op @ 0, result @ 8, args @ 16);
