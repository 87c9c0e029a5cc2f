//! dom0's DMA layer.
#![cfg_attr(not(test), no_std)]
extern crate alloc;
