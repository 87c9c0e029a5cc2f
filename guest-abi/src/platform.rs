//! `platform_op` (hypercall 7): privileged platform control. Only settime is used by Linux on ARM.

/// The only accepted `interface_version`.
pub const XENPF_INTERFACE_VERSION: u32 = 0x0300_0001;
/// Set the wallclock (32-bit seconds) ([`XenpfSettime32`]).
pub const XENPF_SETTIME32: u32 = 17;
/// Set the wallclock ([`XenpfSettime64`]).
pub const XENPF_SETTIME64: u32 = 62;

/// Payload of `XENPF_settime32`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenpfSettime32 {
    /// Wallclock seconds.
    pub secs: u32,
    /// Wallclock nanoseconds.
    pub nsecs: u32,
    /// System time the wallclock value applies to.
    pub system_time: u64,
}
crate::layout!(XenpfSettime32, 16; secs @ 0, nsecs @ 4, system_time @ 8);

/// Payload of `XENPF_settime64`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenpfSettime64 {
    /// Wallclock seconds.
    pub secs: u64,
    /// Wallclock nanoseconds.
    pub nsecs: u32,
    /// Must be zero.
    pub mbz: u32,
    /// System time the wallclock value applies to.
    pub system_time: u64,
}
crate::layout!(XenpfSettime64, 24; secs @ 0, nsecs @ 8, mbz @ 12, system_time @ 16);

/// The op-specific part of [`XenPlatformOp`], padded to 128 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub union XenPlatformOpU {
    /// `XENPF_settime32`.
    pub settime32: XenpfSettime32,
    /// `XENPF_settime64`.
    pub settime64: XenpfSettime64,
    /// Padding that fixes the union's size.
    pub pad: [u8; 128],
}
crate::layout!(XenPlatformOpU, 128);

/// Argument of `platform_op`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct XenPlatformOp {
    /// XENPF_* command.
    pub cmd: u32,
    /// Must equal [`XENPF_INTERFACE_VERSION`].
    pub interface_version: u32,
    /// Command payload.
    pub u: XenPlatformOpU,
}
crate::layout!(XenPlatformOp, 136; cmd @ 0, interface_version @ 4, u @ 8);
