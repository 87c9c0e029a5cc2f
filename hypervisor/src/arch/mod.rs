//! Architecture layers: the only place with assembly and system-register access. Each
//! implements the core's contract ([`crate::contract::Arch`]) and is named by no core module:
//! only the binary's entry and the layers themselves reach it.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod aarch64;
#[cfg(all(target_arch = "arm", target_os = "none"))]
pub mod arm32;
