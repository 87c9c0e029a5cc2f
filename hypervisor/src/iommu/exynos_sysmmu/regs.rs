//! Exynos SysMMU register map, field values and VERSION decoding (datasheet names, byte offsets).

use core::fmt;

/// Registers at the same offset in every version.
pub const MMU_CTRL: usize = 0x000;
pub const MMU_CFG: usize = 0x004;
pub const MMU_STATUS: usize = 0x008;
pub const MMU_VERSION: usize = 0x034;

/// v1-v3 register layout (the Exynos5250 has v3.x).
pub mod v1 {
    pub const MMU_FLUSH: usize = 0x00C;
    pub const MMU_FLUSH_ENTRY: usize = 0x010;
    pub const MMU_PT_BASE: usize = 0x014;
    pub const MMU_INT_STATUS: usize = 0x018;
    pub const MMU_INT_CLEAR: usize = 0x01C;
    pub const MMU_PAGE_FAULT_ADDR: usize = 0x024;
    pub const MMU_AW_FAULT_ADDR: usize = 0x028;
    pub const MMU_AR_FAULT_ADDR: usize = 0x02C;
    pub const MMU_DEFAULT_SLAVE_ADDR: usize = 0x030;
}

/// v5 register layout (v7 without the VM register set uses it too).
pub mod v5 {
    /// Written as pgd >> 12.
    pub const MMU_PT_BASE: usize = 0x00C;
    pub const MMU_FLUSH_ALL: usize = 0x010;
    pub const MMU_FLUSH_ENTRY: usize = 0x014;
    pub const MMU_FLUSH_RANGE: usize = 0x018;
    pub const MMU_FLUSH_START: usize = 0x020;
    pub const MMU_FLUSH_END: usize = 0x024;
    pub const MMU_INT_STATUS: usize = 0x060;
    pub const MMU_INT_CLEAR: usize = 0x064;
    pub const MMU_FAULT_AR_VA: usize = 0x070;
    pub const MMU_FAULT_AW_VA: usize = 0x080;
}

/// MMU_CTRL values.
pub const CTRL_ENABLE: u32 = 0x5;
pub const CTRL_BLOCK: u32 = 0x7;
pub const CTRL_DISABLE: u32 = 0x0;
/// MMU_STATUS bit 0: the SysMMU is blocked.
pub const STATUS_BLOCKED: u32 = 1 << 0;

/// MMU_CFG fields.
pub const CFG_LRU: u32 = 1 << 0;
pub const CFG_EAP: u32 = 1 << 2;
pub const fn cfg_qos(n: u32) -> u32 {
    (n & 0xf) << 7
}
pub const CFG_FLPDCACHE: u32 = 1 << 20;
pub const CFG_SYSSEL: u32 = 1 << 22;
pub const CFG_ACGEN: u32 = 1 << 24;

/// Flush registers: bit 0 starts the operation.
pub const FLUSH_GO: u32 = 1;

/// A VERSION value that the v1 SysMMU reports instead of the major/minor encoding.
pub const VERSION_V1_0_RAW: u32 = 0x8000_0001;

/// Major and minor version of a SysMMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SysmmuVersion {
    pub major: u8,
    pub minor: u8,
}

impl SysmmuVersion {
    pub const fn new(major: u8, minor: u8) -> Self {
        SysmmuVersion { major, minor }
    }

    /// Decode MMU_VERSION: bits [31:28] major, [27:21] minor; 0x80000001 means 1.0.
    pub const fn from_reg(raw: u32) -> Self {
        if raw == VERSION_V1_0_RAW {
            return SysmmuVersion { major: 1, minor: 0 };
        }
        let v = raw >> 21;
        SysmmuVersion { major: (v >> 7) as u8, minor: (v & 0x7f) as u8 }
    }
}

impl fmt::Display for SysmmuVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}", self.major, self.minor)
    }
}

/// Which register layout a version uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegLayout {
    /// v1, v2, v3.0-v3.3.
    V1,
    /// v5, v6 (and v7 without VM registers, not supported here).
    V5,
}
