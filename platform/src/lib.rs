//! Boards xenith runs on, and the traits every driver touches hardware through.
//!
//! Drivers in `hypervisor/` never dereference a device address themselves: they take an
//! [`Mmio`] for registers and a [`PhysMem`] for memory a device walks (page tables, queues).
//! On hardware those are thin `unsafe` wrappers; on the host they are models, so the same
//! driver code is unit-tested against a model of the hardware.
#![cfg_attr(not(test), no_std)]

pub mod bundle;
pub mod exynos5250;
pub mod hal;
pub mod qemu_virt;

pub use hal::{Clock, MemError, Mmio, PhysMem, RawMmio, Uart};
