//! The ICH_LR<n>_EL2 list-register format (GICv3): State[63:62], HW[61], Group[60],
//! Priority[55:48], pINTID[41:32], vINTID[31:0].

pub const PENDING: u64 = 1 << 62;
pub const ACTIVE: u64 = 1 << 63;
pub const HW: u64 = 1 << 61;
pub const GROUP1: u64 = 1 << 60;
/// (HW = 0) Raise the EOI maintenance interrupt when the guest deactivates this interrupt.
pub const EOI_MAINT: u64 = 1 << 41;
const PRIORITY_SHIFT: u32 = 48;

/// A list-register value for virtual interrupt `intid` (no HW link).
pub fn encode(intid: u32, priority: u8, group1: bool, pending: bool, active: bool) -> u64 {
    let mut v = u64::from(intid) | (u64::from(priority) << PRIORITY_SHIFT);
    if group1 {
        v |= GROUP1;
    }
    if pending {
        v |= PENDING;
    }
    if active {
        v |= ACTIVE;
    }
    v
}

/// `v` linked to physical INTID `pintid`: the guest's deactivation deactivates it.
pub fn with_hw(v: u64, pintid: u32) -> u64 {
    (v & !(0x3ff << 32)) | HW | (u64::from(pintid & 0x3ff) << 32)
}

pub fn intid(v: u64) -> u32 {
    v as u32
}

pub fn priority(v: u64) -> u8 {
    (v >> PRIORITY_SHIFT) as u8
}

pub fn is_pending(v: u64) -> bool {
    v & PENDING != 0
}

pub fn is_active(v: u64) -> bool {
    v & ACTIVE != 0
}

/// State "invalid": the LR holds nothing (the guest deactivated its interrupt).
pub fn is_free(v: u64) -> bool {
    v & (PENDING | ACTIVE) == 0
}
