//! Kernel image formats a domain can be built from (arm64 Image).
