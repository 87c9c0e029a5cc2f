//! QEMU `virt` (AArch64, and ARMv7 with highmem=off): its console UART (PL011). Everything
//! else about the board comes from its device tree.
pub mod pl011;
