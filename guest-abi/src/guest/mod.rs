//! Guest-side calls into the hypervisor: raw `hvc #0xEA1` hypercalls with 0..5 arguments, an SMCCC
//! call through `hvc #0`, and typed wrappers for the common operations.
//!
//! Arguments travel in x0..x4 (r0..r4 on arm32) with the hypercall number in x16 (r12); the result
//! comes back in x0 (r0), sign-extended here to `i64`. Xen may clobber the number register and the
//! argument registers, so every one of them is declared as clobbered.
//!
//! On other architectures (a host build of a crate that enables `guest`) the module is empty.

#[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
mod calls;
mod hvc;

#[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
pub use calls::*;
#[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
pub use hvc::*;
