//! System-register access: `sysreg!(read NAME)` / `sysreg!(write NAME, value)`.

/// Read or write a system register by name, e.g. `sysreg!(read ESR_EL2)`.
#[macro_export]
macro_rules! sysreg {
    (read $name:ident) => {{
        let v: u64;
        // SAFETY: reading a system register has no memory effects.
        unsafe { core::arch::asm!(concat!("mrs {}, ", stringify!($name)), out(reg) v, options(nomem, nostack, preserves_flags)) };
        v
    }};
    (write $name:ident, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: the caller writes a value valid for this register at this point of execution.
        unsafe { core::arch::asm!(concat!("msr ", stringify!($name), ", {}"), in(reg) v, options(nostack, preserves_flags)) };
    }};
}

#[inline(always)]
pub fn isb() {
    // SAFETY: barrier only.
    unsafe { core::arch::asm!("isb", options(nostack, preserves_flags)) };
}

#[inline(always)]
pub fn dsb_ish() {
    // SAFETY: barrier only.
    unsafe { core::arch::asm!("dsb ish", options(nostack, preserves_flags)) };
}

#[inline(always)]
pub fn dsb_sy() {
    // SAFETY: barrier only.
    unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// Counter value and frequency (CNTPCT_EL0, CNTFRQ_EL0).
pub fn counter() -> u64 {
    isb();
    sysreg!(read CNTPCT_EL0)
}
pub fn counter_freq() -> u64 {
    sysreg!(read CNTFRQ_EL0)
}

/// Busy-wait `ms` milliseconds on the generic counter.
pub fn delay_ms(ms: u32) {
    let ticks = counter_freq().saturating_mul(u64::from(ms)) / 1000;
    let start = counter();
    while counter().wrapping_sub(start) < ticks {
        core::hint::spin_loop();
    }
}

/// Park this CPU for good (interrupts masked).
pub fn halt() -> ! {
    loop {
        // SAFETY: masks interrupts and waits; touches no memory.
        unsafe { core::arch::asm!("msr daifset, #0xf", "wfi") };
    }
}
