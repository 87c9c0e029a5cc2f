//! Xen's public guest ABI for arm64 and arm32 guests, written for xenith from the published interface facts:
//! hypercall numbers, errno values, status codes, feature bits and `#[repr(C)]` argument structs with
//! compile-time layout checks. The hypervisor uses the plain types; guests enable the `guest` feature for
//! the `hvc #0xEA1` wrappers.
//!
//! Layout rules shared by every struct here (both guest architectures, little-endian, AAPCS64 sizes):
//! `xen_ulong_t` and `xen_pfn_t` are 64 bits, and a guest handle inside a struct is a 64-bit guest
//! virtual address, 8-byte aligned (an arm32 guest zeroes the upper half).
#![no_std]
#![deny(missing_docs)]

pub mod console;
pub mod errno;
pub mod event_channel;
pub mod features;
pub mod grant_table;
pub mod hvm;
pub mod hypercall;
pub mod memory;
pub mod multicall;
pub mod platform;
pub mod sched;
pub mod shared_info;
pub mod smccc;
pub mod toolstack;
pub mod vcpu;
pub mod version;

#[cfg(feature = "guest")]
pub mod guest;

pub use errno::Errno;

/// A domain identifier (`domid_t`).
pub type DomId = u16;
/// A guest physical frame number (`xen_pfn_t`, 64 bits on both ARM guest kinds).
pub type Pfn = u64;
/// Xen's unsigned machine word in structs (`xen_ulong_t`, 64 bits on both ARM guest kinds).
pub type XenUlong = u64;
/// A guest handle inside a struct: the guest virtual address of the buffer, 0 for none.
pub type GuestHandle = u64;

/// "The calling domain" in any `domid` field.
pub const DOMID_SELF: DomId = 0x7FF0;
/// The first reserved domain id; real domains are below it.
pub const DOMID_FIRST_RESERVED: DomId = 0x7FF0;
/// Pseudo-domain that owns I/O memory.
pub const DOMID_IO: DomId = 0x7FF1;
/// Pseudo-domain for the hypervisor's own pages.
pub const DOMID_XEN: DomId = 0x7FF2;
/// Pseudo-domain for copy-on-write shared pages.
pub const DOMID_COW: DomId = 0x7FF3;
/// "No domain".
pub const DOMID_INVALID: DomId = 0x7FF4;
/// The idle domain.
pub const DOMID_IDLE: DomId = 0x7FFF;

/// Size of a Xen page on ARM (the ABI's unit for frames, whatever the guest's own page size).
pub const XEN_PAGE_SIZE: usize = 4096;
/// log2 of [`XEN_PAGE_SIZE`].
pub const XEN_PAGE_SHIFT: u32 = 12;

/// Compile-time layout check: `layout!(Type, size; field @ offset, ...)`.
macro_rules! layout {
    ($t:ty, $size:expr $(; $($f:ident @ $off:expr),* $(,)?)?) => {
        const _: () = assert!(core::mem::size_of::<$t>() == $size);
        $($(const _: () = assert!(core::mem::offset_of!($t, $f) == $off);)*)?
    };
}
pub(crate) use layout;
