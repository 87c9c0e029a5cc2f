//! The EL2 binary: see `arch::aarch64::boot` for the entry point.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
extern crate xenith;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("xenith is a bare-metal binary: build it with `cargo xtask build`");
}
