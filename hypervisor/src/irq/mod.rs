//! Interrupts: the virtual GIC that guests see (`vgic`), as pure logic over a small
//! `ListRegisters` trait so it is tested on the host. The physical GIC and the ICH_* system
//! registers are driven by the architecture layer (`arch::aarch64::gic`).

pub mod gicv2;
pub mod guest_timer;
pub mod its;
pub mod vgic;
