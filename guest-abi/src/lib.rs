//! Xen's public guest ABI as Linux uses it on ARM.
#![no_std]
