//! Architecture layers: the only place with assembly and system-register access.
#[cfg(target_arch = "aarch64")]
pub mod aarch64;
#[cfg(target_arch = "arm")]
pub mod arm32;
