//! QEMU virt's GICv2 as the per-exit benches use it, on ARMv7 and on AArch64 with
//! `gic-version=2`: interrupts stay masked at PSTATE/CPSR and are taken by polling GICC_IAR
//! (the hypervisor's GICV frame behind it, not trapped).

use core::ptr::{read_volatile, write_volatile};

pub const GICD: usize = 0x0800_0000;
pub const GICC: usize = 0x0801_0000;
/// GICC_IAR's interrupt ID when nothing is pending.
pub const SPURIOUS: u32 = 1023;

pub fn r32(addr: usize) -> u32 {
    // SAFETY: a GIC register in the Device block mapped at boot.
    unsafe { read_volatile(addr as *const u32) }
}

pub fn w32(addr: usize, v: u32) {
    // SAFETY: a GIC register in the Device block mapped at boot.
    unsafe { write_volatile(addr as *mut u32, v) }
}

/// The distributor and CPU interface on (EOImode 0: an EOI also deactivates), SGI `sgi` (0-3)
/// and PPI `ppi` (24-27) at priority 0xa0 and enabled, every priority accepted, and whatever
/// boot left pending acknowledged.
pub fn init(sgi: u32, ppi: u32) {
    w32(GICD, 1); // GICD_CTLR: forward
    w32(GICD + 0x400, 0xa0a0_a0a0); // IPRIORITYR0 (SGIs 0-3)
    w32(GICD + 0x418, 0xa0a0_a0a0); // IPRIORITYR6 (PPIs 24-27)
    w32(GICD + 0x100, (1 << sgi) | (1 << ppi)); // ISENABLER0
    w32(GICC + 0x04, 0xff); // GICC_PMR
    w32(GICC + 0x08, 0); // GICC_BPR
    w32(GICC, 1); // GICC_CTLR: signal interrupts
    while r32(GICC + 0x0c) & 0x3ff != SPURIOUS {}
}
