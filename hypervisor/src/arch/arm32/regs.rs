//! CP15 system registers the HYP-mode code uses, by name: `Hsctlr::read()`, `Httbr::write(v)`.
//! 32-bit registers go through MRC/MCR, 64-bit ones (LPAE) through MRRC/MCRR.

/// A 32-bit CP15 register: `cp15_32!(Name, op1, CRn, CRm, op2)`.
macro_rules! cp15_32 {
    ($(#[$m:meta])* $name:ident, $op1:literal, $crn:literal, $crm:literal, $op2:literal) => {
        $(#[$m])*
        pub struct $name;
        #[allow(dead_code)]
        impl $name {
            #[inline(always)]
            pub fn read() -> u32 {
                let v: u32;
                // SAFETY: reading a system register has no memory effects.
                unsafe {
                    core::arch::asm!(
                        concat!("mrc p15, ", $op1, ", {}, c", $crn, ", c", $crm, ", ", $op2),
                        out(reg) v, options(nomem, nostack, preserves_flags))
                };
                v
            }
            #[inline(always)]
            pub fn write(v: u32) {
                // SAFETY: callers write values valid for this register at this point.
                unsafe {
                    core::arch::asm!(
                        concat!("mcr p15, ", $op1, ", {}, c", $crn, ", c", $crm, ", ", $op2),
                        in(reg) v, options(nostack, preserves_flags))
                };
            }
        }
    };
}

/// A 64-bit CP15 register: `cp15_64!(Name, op1, CRm)`.
macro_rules! cp15_64 {
    ($(#[$m:meta])* $name:ident, $op1:literal, $crm:literal) => {
        $(#[$m])*
        pub struct $name;
        #[allow(dead_code)]
        impl $name {
            #[inline(always)]
            pub fn read() -> u64 {
                let (lo, hi): (u32, u32);
                // SAFETY: reading a system register has no memory effects.
                unsafe {
                    core::arch::asm!(concat!("mrrc p15, ", $op1, ", {}, {}, c", $crm),
                        out(reg) lo, out(reg) hi, options(nomem, nostack, preserves_flags))
                };
                u64::from(lo) | (u64::from(hi) << 32)
            }
            #[inline(always)]
            pub fn write(v: u64) {
                // SAFETY: callers write values valid for this register at this point.
                unsafe {
                    core::arch::asm!(concat!("mcrr p15, ", $op1, ", {}, {}, c", $crm),
                        in(reg) v as u32, in(reg) (v >> 32) as u32, options(nostack, preserves_flags))
                };
            }
        }
    };
}

cp15_32!(/// Main ID register.
    Midr, 0, 0, 0, 0);
cp15_32!(/// Multiprocessor affinity.
    Mpidr, 0, 0, 0, 5);
cp15_32!(/// Cache type register.
    Ctr, 0, 0, 0, 1);
cp15_32!(/// HYP system control (MMU, caches, exception state).
    Hsctlr, 4, 1, 0, 0);
cp15_32!(/// HYP configuration: what a guest traps to HYP.
    Hcr, 4, 1, 1, 0);
cp15_32!(/// HYP coprocessor trap register.
    Hcptr, 4, 1, 1, 2);
cp15_32!(/// HYP system trap register (CP15 primary registers trapped).
    Hstr, 4, 1, 1, 3);
cp15_32!(/// HYP debug configuration.
    Hdcr, 4, 1, 1, 1);
cp15_32!(/// HYP translation control (the hypervisor's own stage 1).
    Htcr, 4, 2, 0, 2);
cp15_32!(/// Virtualization translation control (stage 2).
    Vtcr, 4, 2, 1, 2);
cp15_32!(/// HYP memory attribute indirection 0.
    Hmair0, 4, 10, 2, 0);
cp15_32!(/// HYP memory attribute indirection 1.
    Hmair1, 4, 10, 2, 1);
cp15_32!(/// HYP vector base.
    Hvbar, 4, 12, 0, 0);
cp15_32!(/// HYP syndrome: why the last trap was taken.
    Hsr, 4, 5, 2, 0);
cp15_32!(/// HYP data fault address (the guest's VA).
    Hdfar, 4, 6, 0, 0);
cp15_32!(/// HYP instruction fault address.
    Hifar, 4, 6, 0, 2);
cp15_32!(/// HYP IPA fault address: IPA[39:12] in bits [31:4].
    Hpfar, 4, 6, 0, 4);
cp15_32!(/// Virtualization processor ID (the guest's MIDR).
    Vpidr, 4, 0, 0, 0);
cp15_32!(/// Virtualization multiprocessor ID (the guest's MPIDR).
    Vmpidr, 4, 0, 0, 5);
cp15_32!(/// HYP software thread ID: this CPU's index, vCPU and domain (percpu.rs).
    Htpidr, 4, 13, 0, 2);
cp15_32!(/// PL1 system control (the guest's).
    Sctlr, 0, 1, 0, 0);
cp15_32!(/// Auxiliary control (the CPU's; a guest's accesses trap with HCR.TAC).
    Actlr, 0, 1, 0, 1);
cp15_32!(/// PL1 vector base (the guest's).
    Vbar, 0, 12, 0, 0);
cp15_32!(/// PL1 data fault status (the guest's).
    Dfsr, 0, 5, 0, 0);
cp15_32!(/// PL1 instruction fault status (the guest's).
    Ifsr, 0, 5, 0, 1);
cp15_32!(/// PL1 data fault address (the guest's).
    Dfar, 0, 6, 0, 0);
cp15_32!(/// PL1 instruction fault address (the guest's).
    Ifar, 0, 6, 0, 2);
cp15_32!(/// PL1 translation table base control (the guest's; EAE says which PAR format it sees).
    Ttbcr, 0, 2, 0, 2);
cp15_32!(/// Counter frequency.
    Cntfrq, 0, 14, 0, 0);
cp15_32!(/// HYP timer control: PL1 access to the physical counter and timer.
    Cnthctl, 4, 14, 1, 0);
cp15_32!(/// PL1 virtual timer control (the guest's).
    CntvCtl, 0, 14, 3, 1);
cp15_32!(/// HYP physical timer control.
    CnthpCtl, 4, 14, 2, 1);

cp15_64!(/// HYP translation table base.
    Httbr, 4, 2);
cp15_64!(/// Stage-2 translation table base and VMID.
    Vttbr, 6, 2);
cp15_64!(/// Physical address register (result of an ATS* translation).
    Par, 0, 7);
cp15_64!(/// Physical counter.
    Cntpct, 0, 14);
cp15_64!(/// Virtual counter offset.
    Cntvoff, 4, 14);
cp15_64!(/// PL1 virtual timer compare value (the guest's).
    CntvCval, 3, 14);
cp15_64!(/// HYP physical timer compare value.
    CnthpCval, 6, 14);

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

/// Counter value and frequency.
pub fn counter() -> u64 {
    isb();
    Cntpct::read()
}
/// The counter's frequency: CNTFRQ, or what the board code found (the DT's `clock-frequency`)
/// when firmware left CNTFRQ 0 and xenith could not set it (only Secure PL1 can).
pub fn counter_freq() -> u64 {
    match Cntfrq::read() {
        0 => u64::from(COUNTER_HZ.load(core::sync::atomic::Ordering::Relaxed)),
        f => u64::from(f),
    }
}

static COUNTER_HZ: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// The frequency to use while CNTFRQ reads 0.
pub fn set_counter_freq(hz: u32) {
    COUNTER_HZ.store(hz, core::sync::atomic::Ordering::Relaxed);
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
        unsafe { core::arch::asm!("cpsid aif", "wfi") };
    }
}
