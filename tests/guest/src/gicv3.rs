//! Just enough of a GICv3 driver for dom0 to send itself an SGI and take it by polling: its
//! redistributor's SGI enabled in group 1, the CPU interface's group 1 enabled, interrupts
//! left masked at PSTATE (the guest has no IRQ handler; ICC_IAR1_EL1 is read instead). The
//! addresses are QEMU virt's GICv3, which a direct-mapped dom0 sees at the host's addresses.
//! On a GICv2 (QEMU virt with `gic-version=2`) the same is done through the memory-mapped CPU
//! interface (GICC, the hypervisor's GICV behind it) and GICD_SGIR.

use core::sync::atomic::{AtomicBool, Ordering};

/// The DT names a GICv2.
static V2: AtomicBool = AtomicBool::new(false);
/// QEMU virt's GICv2 CPU interface.
pub const GICC: u64 = 0x0801_0000;

/// Record whether the guest's GIC is a GICv2 (from its DT).
pub fn set_v2(v2: bool) {
    V2.store(v2, Ordering::Relaxed);
}

pub fn is_v2() -> bool {
    V2.load(Ordering::Relaxed)
}

/// QEMU virt's distributor and the first redistributor (RD frame; the SGI frame follows).
pub const GICD: u64 = 0x0800_0000;
pub const GICR0: u64 = 0x080a_0000;
const GICR_SGI: u64 = GICR0 + 0x1_0000;
/// The SGI the case sends.
const SGI: u32 = 5;

pub fn w32(addr: u64, v: u32) {
    // SAFETY: a GIC register, mapped as Device memory by main.rs before the MMU is on.
    unsafe { core::ptr::write_volatile(addr as *mut u32, v) };
}

pub fn r32(addr: u64) -> u32 {
    // SAFETY: as in `w32`.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

/// System-register interface on, SGI `SGI` enabled and routed to group 1: false if the
/// system-register interface stays off.
pub fn enable_for_sgis() -> bool {
    if is_v2() {
        // Distributor on; the SGI (banked) at priority 0x80 and enabled; CPU interface on with
        // every priority unmasked.
        w32(GICD, 1);
        let prio = GICD + 0x400 + u64::from(SGI & !3);
        w32(prio, (r32(prio) & !(0xff << (8 * (SGI % 4)))) | (0x80 << (8 * (SGI % 4))));
        w32(GICD + 0x100, 1 << SGI);
        w32(GICC + 0x4, 0xff);
        w32(GICC, 1);
        return true;
    }
    let sre: u64;
    // SAFETY: enables the GIC CPU interface's system registers at EL1 (ICC_SRE_EL1.SRE).
    unsafe { core::arch::asm!("mrs {t}, icc_sre_el1", "orr {t}, {t}, #1", "msr icc_sre_el1, {t}", "isb", "mrs {t}, icc_sre_el1", t = out(reg) sre, options(nostack)) };
    if sre & 1 == 0 {
        return false;
    }
    // Distributor: affinity routing, group 1 (non-secure) enabled.
    w32(GICD, r32(GICD) | (1 << 4) | (1 << 1));
    // Redistributor awake, the SGI in group 1, priority 0x80, enabled.
    w32(GICR0 + 0x14, r32(GICR0 + 0x14) & !(1 << 1));
    w32(GICR_SGI + 0x80, r32(GICR_SGI + 0x80) | (1 << SGI));
    let prio = GICR_SGI + 0x400 + u64::from(SGI & !3);
    w32(prio, (r32(prio) & !(0xff << (8 * (SGI % 4)))) | (0x80 << (8 * (SGI % 4))));
    w32(GICR_SGI + 0x100, 1 << SGI);
    // SAFETY: CPU interface: every priority unmasked, group 1 on.
    unsafe { core::arch::asm!("msr icc_pmr_el1, {p}", "msr icc_bpr1_el1, xzr", "msr icc_igrpen1_el1, {one}", "isb", p = in(reg) 0xffu64, one = in(reg) 1u64, options(nostack)) };
    true
}

/// Send the SGI to this CPU through GICD_SGIR (TargetListFilter 2: the requesting CPU only).
pub fn send_sgi_to_self_v2() {
    w32(GICD + 0xf00, (2 << 24) | SGI);
}

/// Poll ICC_IAR1_EL1 (GICC_IAR on a GICv2) up to `tries` times for an interrupt; acknowledge and end the first
/// one found and return its ID (1023: none came). Then switch the SGI and group 1 off.
pub fn wait_acknowledge(tries: u32) -> u64 {
    let mut id = 1023u64;
    if is_v2() {
        for _ in 0..tries {
            let v = r32(GICC + 0xc); // GICC_IAR
            if v & 0x3ff < 1020 {
                w32(GICC + 0x10, v); // GICC_EOIR
                id = u64::from(v & 0x3ff);
                break;
            }
            core::hint::spin_loop();
        }
        w32(GICD + 0x180, 1 << SGI);
        w32(GICC, 0);
        return id;
    }
    for _ in 0..tries {
        let v: u64;
        // SAFETY: acknowledges the highest-priority pending group-1 interrupt, if any.
        unsafe { core::arch::asm!("mrs {}, icc_iar1_el1", out(reg) v, options(nostack)) };
        let v = v & 0xff_ffff;
        if v < 1020 {
            // SAFETY: ends the interrupt just acknowledged (EOImode 0: priority drop and
            // deactivation).
            unsafe { core::arch::asm!("msr icc_eoir1_el1, {}", "isb", in(reg) v, options(nostack)) };
            id = v;
            break;
        }
        core::hint::spin_loop();
    }
    w32(GICR_SGI + 0x180, 1 << SGI);
    // SAFETY: group 1 off again at the CPU interface.
    unsafe { core::arch::asm!("msr icc_igrpen1_el1, xzr", "isb", options(nostack)) };
    id
}
