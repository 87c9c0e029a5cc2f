//! The AArch64 architecture layer.
