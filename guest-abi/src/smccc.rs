//! Arm SMC Calling Convention and PSCI, as a guest reaches them through `HVC #0`
//! (function ID in w0, arguments in x1..x7, results in x0..x3).

/// SMCCC_VERSION: returns `(major << 16) | minor`.
pub const SMCCC_VERSION: u32 = 0x8000_0000;
/// SMCCC_ARCH_FEATURES(fid): 0 if implemented, NOT_SUPPORTED otherwise.
pub const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;
/// SMCCC_ARCH_SOC_ID.
pub const SMCCC_ARCH_SOC_ID: u32 = 0x8000_0002;
/// Spectre-v2 branch-predictor hardening call.
pub const SMCCC_ARCH_WORKAROUND_1: u32 = 0x8000_8000;
/// Spectre-v4 (SSBD) mitigation control.
pub const SMCCC_ARCH_WORKAROUND_2: u32 = 0x8000_7FFF;
/// Spectre-BHB mitigation.
pub const SMCCC_ARCH_WORKAROUND_3: u32 = 0x8000_3FFF;
/// Hypervisor service: call count.
pub const SMCCC_HYP_CALL_COUNT: u32 = 0x8600_FF00;
/// Hypervisor service: UID (four words in x0..x3).
pub const SMCCC_HYP_UID: u32 = 0x8600_FF01;
/// Hypervisor service: revision.
pub const SMCCC_HYP_REVISION: u32 = 0x8600_FF03;

/// SMCCC return: success.
pub const SMCCC_RET_SUCCESS: i64 = 0;
/// SMCCC return: unknown function.
pub const SMCCC_RET_NOT_SUPPORTED: i64 = -1;
/// SMCCC return: the workaround is not needed on this CPU.
pub const SMCCC_RET_NOT_REQUIRED: i64 = -2;

/// PSCI_VERSION: returns `(major << 16) | minor`.
pub const PSCI_VERSION: u32 = 0x8400_0000;
/// CPU_SUSPEND, SMC32 form.
pub const PSCI_CPU_SUSPEND_32: u32 = 0x8400_0001;
/// CPU_SUSPEND, SMC64 form.
pub const PSCI_CPU_SUSPEND_64: u32 = 0xC400_0001;
/// CPU_OFF.
pub const PSCI_CPU_OFF: u32 = 0x8400_0002;
/// CPU_ON, SMC32 form.
pub const PSCI_CPU_ON_32: u32 = 0x8400_0003;
/// CPU_ON, SMC64 form.
pub const PSCI_CPU_ON_64: u32 = 0xC400_0003;
/// AFFINITY_INFO, SMC32 form.
pub const PSCI_AFFINITY_INFO_32: u32 = 0x8400_0004;
/// AFFINITY_INFO, SMC64 form.
pub const PSCI_AFFINITY_INFO_64: u32 = 0xC400_0004;
/// MIGRATE, SMC32 form.
pub const PSCI_MIGRATE_32: u32 = 0x8400_0005;
/// MIGRATE, SMC64 form.
pub const PSCI_MIGRATE_64: u32 = 0xC400_0005;
/// MIGRATE_INFO_TYPE.
pub const PSCI_MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
/// MIGRATE_INFO_UP_CPU, SMC32 form.
pub const PSCI_MIGRATE_INFO_UP_CPU_32: u32 = 0x8400_0007;
/// MIGRATE_INFO_UP_CPU, SMC64 form.
pub const PSCI_MIGRATE_INFO_UP_CPU_64: u32 = 0xC400_0007;
/// SYSTEM_OFF.
pub const PSCI_SYSTEM_OFF: u32 = 0x8400_0008;
/// SYSTEM_RESET.
pub const PSCI_SYSTEM_RESET: u32 = 0x8400_0009;
/// PSCI_FEATURES(fid).
pub const PSCI_FEATURES: u32 = 0x8400_000A;

/// PSCI return: success.
pub const PSCI_RET_SUCCESS: i64 = 0;
/// PSCI return: not supported.
pub const PSCI_RET_NOT_SUPPORTED: i64 = -1;
/// PSCI return: invalid parameters (e.g. bad target CPU).
pub const PSCI_RET_INVALID_PARAMETERS: i64 = -2;
/// PSCI return: denied.
pub const PSCI_RET_DENIED: i64 = -3;
/// PSCI return: the CPU is already on.
pub const PSCI_RET_ALREADY_ON: i64 = -4;
/// PSCI return: a CPU_ON is pending.
pub const PSCI_RET_ON_PENDING: i64 = -5;
/// PSCI return: internal failure.
pub const PSCI_RET_INTERNAL_FAILURE: i64 = -6;
/// PSCI return: not present.
pub const PSCI_RET_NOT_PRESENT: i64 = -7;
/// PSCI return: disabled.
pub const PSCI_RET_DISABLED: i64 = -8;
/// PSCI return: invalid address.
pub const PSCI_RET_INVALID_ADDRESS: i64 = -9;

/// Service owner of an SMCCC function ID (bits 29:24).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// 0: Arm architecture calls (SMCCC_VERSION, workarounds).
    Arch,
    /// 1: CPU service.
    Cpu,
    /// 2: SiP service.
    Sip,
    /// 3: OEM service.
    Oem,
    /// 4: standard secure service (PSCI).
    StandardSecure,
    /// 5: standard hypervisor service.
    StandardHypervisor,
    /// 6: vendor-specific hypervisor service.
    VendorHypervisor,
    /// 48..=49 trusted applications, 50..=63 trusted OS, anything else reserved.
    Other(u8),
}

/// An SMCCC function ID, split into its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionId(pub u32);

impl FunctionId {
    /// Fast call (bit 31); yielding calls are not used by PSCI or Xen.
    pub const fn is_fast(self) -> bool {
        self.0 & (1 << 31) != 0
    }
    /// SMC64/HVC64 calling convention (bit 30).
    pub const fn is_64(self) -> bool {
        self.0 & (1 << 30) != 0
    }
    /// Function number within the owner's range (bits 15:0).
    pub const fn number(self) -> u16 {
        self.0 as u16
    }
    /// Service owner (bits 29:24).
    pub const fn owner(self) -> Owner {
        match (self.0 >> 24) & 0x3F {
            0 => Owner::Arch,
            1 => Owner::Cpu,
            2 => Owner::Sip,
            3 => Owner::Oem,
            4 => Owner::StandardSecure,
            5 => Owner::StandardHypervisor,
            6 => Owner::VendorHypervisor,
            n => Owner::Other(n as u8),
        }
    }
    /// Bits 23:16 must be zero in a fast call.
    pub const fn reserved_ok(self) -> bool {
        !self.is_fast() || (self.0 >> 16) & 0xFF == 0
    }
}

/// `(major << 16) | minor`, the encoding of PSCI_VERSION and SMCCC_VERSION.
pub const fn version(major: u16, minor: u16) -> u32 {
    (major as u32) << 16 | minor as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_id_fields() {
        let on = FunctionId(PSCI_CPU_ON_64);
        assert!(on.is_fast() && on.is_64() && on.reserved_ok());
        assert_eq!((on.owner(), on.number()), (Owner::StandardSecure, 3));
        let off = FunctionId(PSCI_CPU_OFF);
        assert!(!off.is_64());
        assert_eq!(FunctionId(SMCCC_ARCH_WORKAROUND_1).owner(), Owner::Arch);
        assert_eq!(FunctionId(SMCCC_HYP_UID).owner(), Owner::VendorHypervisor);
        assert!(!FunctionId(0x8412_0000).reserved_ok());
    }

    #[test]
    fn versions() {
        assert_eq!(version(1, 1), 0x10001);
        assert_eq!(version(1, 2), 0x10002);
    }
}
