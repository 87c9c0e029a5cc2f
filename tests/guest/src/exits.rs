//! Per-exit benchmarks (`bench` on the command line): what one exit of each kind costs the
//! guest, measured with the virtual counter under `-icount shift=0` (one instruction = 1 ns),
//! each kind repeated many times and the same loop without the exit subtracted:
//!
//! - a trapped read and write of the emulated distributor (GICD_ISENABLER1, GICD_IPRIORITYR8)
//!   and of the vCPU's redistributor (GICR_ISENABLER0, GICR_IPRIORITYR5 in the SGI frame);
//! - an SGI to itself: the trapped ICC_SGI1R_EL1 write (GICD_SGIR on a GICv2), the virtual interrupt it pends, its
//!   acknowledge and EOI;
//! - a virtual timer tick: CNTV_TVAL 0 and the timer enabled, so it fires at once; the physical
//!   PPI 27 exits to the hypervisor, which hands the guest virtual PPI 27, acknowledged and
//!   EOIed with the timer disabled again;
//! - an SPI: QEMU's `edu` PCI device raises its INTx line (a physical SPI passed through to
//!   dom0) on a write to its "raise" register; the guest acknowledges it, lowers the line and
//!   EOIs it (printed only when an edu device is on the bus).
//!
//! The guest keeps PSTATE.I masked and takes interrupts by polling ICC_IAR1_EL1 (its virtual
//! CPU interface, not trapped), so the guest's own exception entry is not part of the figure;
//! the exit from the guest to the hypervisor happens all the same (physical interrupts go to
//! EL2 whatever the guest masks).
//!
//! The GIC addresses are QEMU virt's (`gicv3`), which both Xen and xenith give dom0 unchanged.

use crate::bench::{counter, edge, frequency};
use crate::println;
use core::arch::asm;
use core::ptr::write_volatile;

use crate::gicv3::{is_v2, r32, w32, GICC, GICD, GICR0 as GICR};
/// The redistributor's SGI frame (vCPU 0's: the guest runs on vCPU 0).
const GICR_SGI: u64 = GICR + 0x1_0000;

/// Exits per timed window (fewer with `exits-short`, for an execution trace of the paths).
static N: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(20_000);

fn n() -> u64 {
    N.load(core::sync::atomic::Ordering::Relaxed)
}
/// The SGI the guest sends itself.
const SELF_SGI: u32 = 1;
const VTIMER_PPI: u32 = 27;
/// ICC_IAR1_EL1 when nothing is pending.
const SPURIOUS: u32 = 1023;

/// The CPU interface the loops acknowledge and end interrupts through, chosen once per loop
/// (each loop is compiled for one of them, so a GICv3 loop has no GICv2 test in it).
trait Cpuif {
    fn iar() -> u32;
    fn eoir(intid: u32);
}

/// ICC_IAR1_EL1 and ICC_EOIR1_EL1.
struct SysregIf;
/// GICC_IAR and GICC_EOIR (the hypervisor's GICV behind them).
struct MmioIf;

impl Cpuif for SysregIf {
    fn iar() -> u32 {
        iar1()
    }
    fn eoir(intid: u32) {
        eoir1(intid)
    }
}

impl Cpuif for MmioIf {
    fn iar() -> u32 {
        // INTID and an SGI's source CPU.
        r32(GICC + 0xc) & 0x1fff
    }
    fn eoir(intid: u32) {
        w32(GICC + 0x10, intid)
    }
}

fn iar1() -> u32 {
    let v: u64;
    // SAFETY: ICC_IAR1_EL1 (virtual CPU interface under a hypervisor).
    unsafe { asm!("mrs {}, S3_0_C12_C12_0", out(reg) v, options(nomem, nostack)) };
    v as u32
}

fn eoir1(intid: u32) {
    // SAFETY: ICC_EOIR1_EL1 with an INTID just acknowledged.
    unsafe { asm!("msr S3_0_C12_C12_1, {}", in(reg) u64::from(intid), options(nomem, nostack)) };
}

/// Poll the CPU interface until `intid` is acknowledged; false after many polls (it never came).
fn take<C: Cpuif>(intid: u32) -> bool {
    for _ in 0..100_000 {
        let got = C::iar();
        if got == intid {
            C::eoir(got);
            return true;
        }
        if got != SPURIOUS {
            // Something else: drop and deactivate it, keep waiting for ours.
            C::eoir(got);
        }
    }
    false
}

/// Turn the guest's GIC on: distributor groups, the redistributor awake, SGI 1 and PPI 27 in
/// group 1 and enabled, the CPU interface accepting every priority with IRQs masked at PSTATE.
fn gic_init() {
    if is_v2() {
        return crate::gicv2_poll::init(SELF_SGI, VTIMER_PPI);
    }
    w32(GICD, (1 << 4) | (1 << 1)); // GICD_CTLR: ARE_NS, EnableGrp1A
    w32(GICR + 0x14, 0); // GICR_WAKER: ProcessorSleep off
    for _ in 0..1000 {
        if r32(GICR + 0x14) & (1 << 2) == 0 {
            break;
        }
    }
    w32(GICR_SGI + 0x80, 0xffff_ffff); // IGROUPR0: group 1
    w32(GICR_SGI + 0x400, 0xa0a0_a0a0); // IPRIORITYR0 (SGIs 0-3)
    w32(GICR_SGI + 0x418, 0xa0a0_a0a0); // IPRIORITYR6 (PPIs 24-27)
    w32(GICR_SGI + 0x100, (1 << SELF_SGI) | (1 << VTIMER_PPI)); // ISENABLER0
    // SAFETY: the GIC CPU interface system registers at EL1; PSTATE.I stays masked.
    unsafe {
        asm!(
            "mrs {t}, S3_0_C12_C12_5",   // ICC_SRE_EL1
            "orr {t}, {t}, #1",
            "msr S3_0_C12_C12_5, {t}",
            "isb",
            "msr S3_0_C4_C6_0, {pmr}",   // ICC_PMR_EL1
            "msr S3_0_C12_C12_3, xzr",   // ICC_BPR1_EL1
            "msr S3_0_C12_C12_4, xzr",   // ICC_CTLR_EL1: EOImode 0 (EOI also deactivates)
            "msr S3_0_C12_C12_7, {one}", // ICC_IGRPEN1_EL1
            "isb",
            t = out(reg) _, pmr = in(reg) 0xffu64, one = in(reg) 1u64,
            options(nomem, nostack),
        );
    }
    // Nothing left over from boot.
    while iar1() != SPURIOUS {}
}

/// Guest counter ticks for `N` runs of `f`.
fn window(mut f: impl FnMut()) -> u64 {
    let start = edge();
    for _ in 0..n() {
        f();
    }
    counter() - start
}

/// Instructions (ns under -icount) per exit, tenths, from ticks with and without the exit.
fn per_exit(freq: u64, full: u64, empty: u64) -> u128 {
    if freq == 0 {
        return 0;
    }
    u128::from(full.saturating_sub(empty)) * 10_000_000_000 / (u128::from(freq) * u128::from(n()))
}

fn report(name: &str, freq: u64, full: u64, empty: u64) {
    let t = per_exit(freq, full, empty);
    println!("bench exit_{name}_ns: {}.{} ticks: {full} empty_ticks: {empty} exits: {}", t / 10, t % 10, n());
}

/// An empty loop body the compiler keeps (the baseline for the MMIO and timer loops).
fn nothing() {
    // SAFETY: an empty instruction sequence.
    unsafe { asm!("", options(nomem, nostack)) };
}

/// Runs every per-exit benchmark; `pci` is the host bridge, for the SPI bench's edu device.
pub fn run(pci: Option<crate::fdt::PciHost>, short: bool) {
    if short {
        N.store(200, core::sync::atomic::Ordering::Relaxed);
    }
    let freq = frequency();
    gic_init();
    let empty = window(nothing);

    let full = window(|| {
        r32(GICD + 0x104);
    });
    report("gicd_read", freq, full, empty);
    let full = window(|| w32(GICD + 0x420, 0xa0a0_a0a0));
    report("gicd_write", freq, full, empty);
    // A GICv2 has no redistributors.
    if !is_v2() {
        let full = window(|| {
            r32(GICR_SGI + 0x100);
        });
        report("gicr_read", freq, full, empty);
        let full = window(|| w32(GICR_SGI + 0x414, 0xa0a0_a0a0));
        report("gicr_write", freq, full, empty);
    }

    // SGI to self: target list bit 0 at affinity 0.0.0 (vCPU 0's vMPIDR on Xen and xenith).
    let sgi = (u64::from(SELF_SGI) << 24) | 1;
    let mut lost = 0u64;
    let full = if is_v2() {
        window(|| {
            // GICD_SGIR, TargetListFilter 2: this CPU (trapped by the hypervisor).
            w32(GICD + 0xf00, (2 << 24) | SELF_SGI);
            lost += u64::from(!take::<MmioIf>(SELF_SGI));
        })
    } else {
        window(|| {
            // SAFETY: ICC_SGI1R_EL1 (trapped by the hypervisor).
            unsafe { asm!("msr S3_0_C12_C11_5, {}", "isb", in(reg) sgi, options(nomem, nostack)) };
            lost += u64::from(!take::<SysregIf>(SELF_SGI));
        })
    };
    report("sgi_self", freq, full, empty);
    if lost != 0 {
        println!("bench exit_sgi_self: {lost} SGIs never arrived");
    }

    let full = if is_v2() { vtimer_ticks::<MmioIf>() } else { vtimer_ticks::<SysregIf>() };
    report("vtimer_tick", freq, full, empty);

    crate::edu::with_spi_source(pci, |p, edu| spi(freq, empty, p, edu));
}

/// `N` virtual timer ticks, each taken through `C`; the counter ticks they took.
fn vtimer_ticks<C: Cpuif>() -> u64 {
    let mut lost = 0u64;
    let full = window(|| {
        // SAFETY: the EL1 virtual timer: deadline now, enabled and unmasked; off again once taken.
        unsafe {
            asm!("msr cntv_tval_el0, xzr", "msr cntv_ctl_el0, {one}", "isb", one = in(reg) 1u64, options(nomem, nostack))
        };
        lost += u64::from(!take_then::<C>(VTIMER_PPI, || {
            // SAFETY: disabling the timer (its line drops before the EOI).
            unsafe { asm!("msr cntv_ctl_el0, xzr", "isb", options(nomem, nostack)) }
        }));
    });
    if lost != 0 {
        println!("bench exit_vtimer_tick: {lost} ticks never arrived");
    }
    full
}

/// Acknowledge `intid`, run `quiesce` (the device drops its line), then EOI.
fn take_then<C: Cpuif>(intid: u32, quiesce: impl FnOnce()) -> bool {
    for _ in 0..100_000 {
        let got = C::iar();
        if got == intid {
            quiesce();
            C::eoir(got);
            return true;
        }
        if got != SPURIOUS {
            C::eoir(got);
        }
    }
    false
}

/// The edu device's INTx (INTA) as a GIC SPI: QEMU virt swizzles slot and pin onto SPIs 3-6.
fn spi(freq: u64, empty: u64, pci: &crate::fdt::PciHost, edu: &crate::edu::Edu) {
    let Some(slot) = edu.slot(pci) else { return };
    let intid = 32 + 3 + (slot % 4);
    let (word, bit) = (u64::from(intid / 32) * 4, 1u32 << (intid % 32));
    let p = GICD + 0x400 + u64::from(intid & !3);
    let shift = 8 * (intid & 3);
    w32(p, (r32(p) & !(0xff << shift)) | (0xa0 << shift)); // IPRIORITYR
    if is_v2() {
        // ITARGETSR: CPU interface 0 (vCPU 0); group 0, which GICC_CTLR.Enable signals.
        let t = GICD + 0x800 + u64::from(intid & !3);
        w32(t, (r32(t) & !(0xff << shift)) | (1 << shift));
    } else {
        w32(GICD + 0x80 + word, r32(GICD + 0x80 + word) | bit); // IGROUPR: group 1
        // IROUTER: vCPU 0 (affinity 0.0.0.0).
        // SAFETY: a 64-bit distributor register, mapped Device.
        unsafe { write_volatile((GICD + 0x6000 + 8 * u64::from(intid)) as *mut u64, 0) };
    }
    w32(GICD + 0x100 + word, bit); // ISENABLER
    let disable = || w32(GICD + 0x180 + word, bit); // ICENABLER
    let (full, base) = if is_v2() {
        edu.spi_loops(|f| window(f), |q| take_then::<MmioIf>(intid, q), disable)
    } else {
        edu.spi_loops(|f| window(f), |q| take_then::<SysregIf>(intid, q), disable)
    };
    report("spi", freq, full, base.max(empty));
}
