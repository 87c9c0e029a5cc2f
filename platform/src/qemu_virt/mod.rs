//! QEMU `virt` (AArch64, and ARMv7 with highmem=off).
