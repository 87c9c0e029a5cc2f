//! Architecture layers: the only place with assembly and system-register access.
pub mod aarch64;
