//! `xen_version` (hypercall 17): sub-op numbers and their argument structs.

/// Returns `(major << 16) | minor` directly in x0; no argument.
pub const XENVER_VERSION: u32 = 0;
/// Fills an [`XenExtraversion`].
pub const XENVER_EXTRAVERSION: u32 = 1;
/// Fills an [`XenCompileInfo`].
pub const XENVER_COMPILE_INFO: u32 = 2;
/// Fills an [`XenCapabilitiesInfo`].
pub const XENVER_CAPABILITIES: u32 = 3;
/// Fills an [`XenChangesetInfo`].
pub const XENVER_CHANGESET: u32 = 4;
/// Fills an [`XenPlatformParameters`].
pub const XENVER_PLATFORM_PARAMETERS: u32 = 5;
/// Fills the `submap` of an [`XenFeatureInfo`] selected by its `submap_idx`.
pub const XENVER_GET_FEATURES: u32 = 6;
/// Returns the hypervisor's page size directly in x0.
pub const XENVER_PAGESIZE: u32 = 7;
/// Fills a 16-byte domain handle (UUID).
pub const XENVER_GUEST_HANDLE: u32 = 8;
/// Fills an [`XenCommandline`] (privileged).
pub const XENVER_COMMANDLINE: u32 = 9;
/// Fills a build-id buffer: `u32 len` then bytes (privileged).
pub const XENVER_BUILD_ID: u32 = 10;

/// Argument of `XENVER_get_features`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenFeatureInfo {
    /// In: which 32-bit submap to read (only 0 exists).
    pub submap_idx: u32,
    /// Out: the feature bits (see [`crate::features`]).
    pub submap: u32,
}
crate::layout!(XenFeatureInfo, 8; submap_idx @ 0, submap @ 4);

/// Argument of `XENVER_extraversion`: NUL-terminated, zero-filled after the NUL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenExtraversion {
    /// The version suffix, e.g. `".5-pre"`.
    pub extraversion: [u8; 16],
}
crate::layout!(XenExtraversion, 16; extraversion @ 0);

/// Argument of `XENVER_compile_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenCompileInfo {
    /// Compiler identification string.
    pub compiler: [u8; 64],
    /// User who built the hypervisor.
    pub compile_by: [u8; 16],
    /// Build host's domain.
    pub compile_domain: [u8; 32],
    /// Build date.
    pub compile_date: [u8; 32],
}
crate::layout!(XenCompileInfo, 144; compiler @ 0, compile_by @ 64, compile_domain @ 80, compile_date @ 112);

/// Argument of `XENVER_capabilities`: space-separated guest kinds, e.g. `"xen-3.0-aarch64 "`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenCapabilitiesInfo {
    /// NUL-terminated capability string.
    pub info: [u8; 1024],
}
crate::layout!(XenCapabilitiesInfo, 1024; info @ 0);

/// Argument of `XENVER_changeset`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenChangesetInfo {
    /// NUL-terminated source revision string.
    pub info: [u8; 64],
}
crate::layout!(XenChangesetInfo, 64; info @ 0);

/// Argument of `XENVER_platform_parameters`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenPlatformParameters {
    /// Lowest virtual address the hypervisor reserves in PV guests (0 on ARM).
    pub virt_start: u64,
}
crate::layout!(XenPlatformParameters, 8; virt_start @ 0);

/// Argument of `XENVER_commandline`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenCommandline {
    /// NUL-terminated hypervisor command line.
    pub line: [u8; 1024],
}
crate::layout!(XenCommandline, 1024; line @ 0);

/// Splits a `XENVER_version` result into `(major, minor)`.
pub const fn split_version(v: i64) -> (u16, u16) {
    ((v as u64 >> 16) as u16, v as u16)
}

#[cfg(test)]
mod tests {
    #[test]
    fn split_version() {
        assert_eq!(super::split_version(0x40011), (4, 17));
    }
}
