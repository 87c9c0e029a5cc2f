//! Per-exit benchmarks on ARMv7-A with a GICv2 (part of `bench`): what one exit of each kind
//! costs the guest under `-icount shift=0` (one instruction = 1 ns), each kind repeated [`N`]
//! times and the same loop without the exit subtracted, with the AArch64 guest's keys:
//!
//! - a trapped read and write of the emulated distributor (GICD_ISENABLER1, GICD_IPRIORITYR8);
//! - an SGI to itself: the trapped GICD_SGIR write (target filter "this CPU"), the virtual
//!   interrupt it pends, its acknowledge and EOI;
//! - a virtual timer tick: CNTV_TVAL 0 and the timer enabled, so it fires at once; the physical
//!   PPI 27 exits to the hypervisor, which hands the guest virtual PPI 27, acknowledged and
//!   EOIed with the timer disabled again;
//! - an SPI: QEMU's `edu` PCI device raises its INTx line (a physical SPI passed through to
//!   dom0) on a write to its "raise" register; the guest acknowledges it, lowers the line and
//!   EOIs it (printed only when an edu device is on the bus).
//!
//! The guest keeps CPSR.I masked and takes interrupts by polling GICC_IAR (the virtual CPU
//! interface the hypervisor maps at the CPU interface's address, not trapped), so its own
//! exception entry is not part of the figure; the exit to HYP mode happens all the same.
//!
//! The GIC addresses are QEMU virt's GICv2 ones, which both Xen and xenith give dom0 unchanged.

use crate::bench::{counter, frequency};
use crate::println;
use core::arch::asm;
use core::ptr::{read_volatile, write_volatile};

/// QEMU virt's GICv2 distributor and CPU interface.
const GICD: usize = 0x0800_0000;
const GICC: usize = 0x0801_0000;
/// The 2 MiB block the guest maps as Device memory for both.
pub const GIC_BLOCK: (u64, u64) = (GICD as u64, 0x20_0000);

/// Exits per timed window.
const N: u64 = 20_000;
/// The SGI the guest sends itself.
const SELF_SGI: u32 = 1;
const VTIMER_PPI: u32 = 27;
/// GICC_IAR's interrupt ID when nothing is pending.
const SPURIOUS: u32 = 1023;

fn r32(addr: usize) -> u32 {
    // SAFETY: a GIC register in the Device block mapped at boot.
    unsafe { read_volatile(addr as *const u32) }
}

fn w32(addr: usize, v: u32) {
    // SAFETY: a GIC register in the Device block mapped at boot.
    unsafe { write_volatile(addr as *mut u32, v) }
}

/// Acknowledge `intid`, run `quiesce` (its source drops the line), then EOI; false after many
/// polls (it never came). Anything else acknowledged on the way is EOIed and dropped.
fn take_then(intid: u32, quiesce: impl FnOnce()) -> bool {
    for _ in 0..100_000 {
        let iar = r32(GICC + 0x0c);
        let id = iar & 0x3ff;
        if id == intid {
            quiesce();
            w32(GICC + 0x10, iar);
            return true;
        }
        if id != SPURIOUS {
            w32(GICC + 0x10, iar);
        }
    }
    false
}

/// The distributor and CPU interface on, SGI 1 and PPI 27 enabled, every priority accepted;
/// CPSR.I stays masked.
fn gic_init() {
    crate::gicv2_poll::init(SELF_SGI, VTIMER_PPI);
}

/// Guest counter ticks for `N` runs of `f`.
fn window(mut f: impl FnMut()) -> u64 {
    let start = crate::window::edge(counter);
    for _ in 0..N {
        f();
    }
    counter() - start
}

fn report(name: &str, freq: u64, full: u64, empty: u64) {
    let t = if freq == 0 { 0 } else { u128::from(full.saturating_sub(empty)) * 10_000_000_000 / (u128::from(freq) * u128::from(N)) };
    println!("bench exit_{name}_ns: {}.{} ticks: {full} empty_ticks: {empty} exits: {N}", t / 10, t % 10);
}

fn vtimer(ctl: u32, tval: u32) {
    // SAFETY: CNTV_TVAL and CNTV_CTL, the PL1 virtual timer.
    unsafe { asm!("mcr p15, 0, {t}, c14, c3, 0", "mcr p15, 0, {c}, c14, c3, 1", "isb", t = in(reg) tval, c = in(reg) ctl, options(nomem, nostack)) };
}

/// Runs every per-exit benchmark; `pci` is the host bridge, for the SPI bench's edu device.
pub fn run(pci: Option<crate::fdt::PciHost>) {
    let freq = frequency();
    gic_init();
    let empty = window(|| {
        // SAFETY: an empty instruction sequence the compiler keeps.
        unsafe { asm!("", options(nomem, nostack)) }
    });
    let full = window(|| {
        r32(GICD + 0x104);
    });
    report("gicd_read", freq, full, empty);
    let full = window(|| w32(GICD + 0x420, 0xa0a0_a0a0));
    report("gicd_write", freq, full, empty);

    let mut lost = 0u64;
    let full = window(|| {
        w32(GICD + 0xf00, (2 << 24) | SELF_SGI); // GICD_SGIR: to this CPU
        lost += u64::from(!take_then(SELF_SGI, || ()));
    });
    report("sgi_self", freq, full, empty);
    if lost != 0 {
        println!("bench exit_sgi_self: {lost} SGIs never arrived");
    }

    let mut lost = 0u64;
    let full = window(|| {
        vtimer(1, 0);
        lost += u64::from(!take_then(VTIMER_PPI, || vtimer(0, 0)));
    });
    report("vtimer_tick", freq, full, empty);
    if lost != 0 {
        println!("bench exit_vtimer_tick: {lost} ticks never arrived");
    }

    crate::edu::with_spi_source(pci, |p, edu| spi(freq, empty, p, edu));
}

/// The edu device's INTx (INTA) as a GIC SPI: QEMU virt swizzles slot and pin onto SPIs 3-6.
fn spi(freq: u64, empty: u64, pci: &crate::fdt::PciHost, edu: &crate::edu::Edu) {
    let Some(slot) = edu.slot(pci) else { return };
    let intid = 32 + 3 + (slot % 4);
    let (word, bit) = (4 * (intid / 32) as usize, 1u32 << (intid % 32));
    let (byte, shift) = ((intid & !3) as usize, 8 * (intid & 3));
    let p = GICD + 0x400 + byte;
    w32(p, (r32(p) & !(0xff << shift)) | (0xa0 << shift)); // IPRIORITYR
    let t = GICD + 0x800 + byte;
    w32(t, (r32(t) & !(0xff << shift)) | (1 << shift)); // ITARGETSR: CPU interface 0
    w32(GICD + 0x100 + word, bit); // ISENABLER
    let disable = || w32(GICD + 0x180 + word, bit); // ICENABLER
    let (full, base) = edu.spi_loops(|f| window(f), |q| take_then(intid, q), disable);
    report("spi", freq, full, base.max(empty));
}
