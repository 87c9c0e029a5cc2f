//! The conformance cases: one table row per check, each a name, a function that performs the
//! operation and returns what it observed, and the expected result (real Xen 4.17's behaviour unless
//! a row says otherwise). `run_all` prints `case <name>: <observed>` for every row, a `fail ...`
//! line under each mismatch, and the `N passed, N failed` tally.

#[cfg(target_arch = "aarch64")]
use crate::exceptions::{self, EC_UNKNOWN, ESR_IL};
use crate::exceptions::{Exception, EC_DABT_CUR};
use crate::mmu::{DEVICE_HOLE_IPA, UNMAPPED_VA};
use crate::println;
#[cfg(target_arch = "aarch64")]
use core::arch::{asm, global_asm};
use core::fmt;
use guest_abi::console::*;
use guest_abi::errno::{self, Errno};
use guest_abi::features::*;
use guest_abi::guest::*;
use guest_abi::hypercall::*;
use guest_abi::sched::*;
use guest_abi::smccc::*;
use guest_abi::version::*;

/// What a case saw.
#[derive(Clone, Copy)]
pub enum Observed {
    /// A return value, shown in decimal (with the errno name when negative).
    Ret(i64),
    /// A value best shown in hex (versions, bit masks, FIDs).
    Hex(u64),
    /// A plain signed value with no errno meaning (SMCCC and PSCI results).
    Int(i64),
    /// The guest's vector took this exception; `at` is the address of the instruction that trapped.
    Exception { e: Exception, at: u64 },
    /// The instruction completed without an exception; the value it left.
    NoException(i64),
}

/// What a case expects.
#[derive(Clone, Copy)]
pub enum Expect {
    /// Exactly this value (`Ret` or `Hex`).
    Eq(i64),
    /// A negative errno.
    Err(i32),
    /// All these bits set (`Hex`).
    BitsSet(u64),
    /// Any of these values: answers the SMCCC spec leaves to the hypervisor and platform. The
    /// conformance runner still compares the exact value with Xen's (and the deviation list).
    OneOf(&'static [i64]),
    /// Whatever the CPU model gives (ID register values): judged only by the conformance
    /// diff with Xen 4.17 on the same CPU.
    Recorded,
    /// A synchronous exception with exactly this ESR_EL1, taken with ELR_EL1 = the trapping
    /// instruction + `elr_offset`; for data aborts FAR_EL1 must be the accessed address.
    Exception { esr: u64, elr_offset: i64 },
}

/// One row of the table.
pub struct Case {
    /// Stable, dotted name, used by `cargo xtask conformance` to line results up.
    pub name: &'static str,
    /// Performs the operation.
    pub run: fn() -> Observed,
    /// The expected outcome.
    pub expect: Expect,
}

impl Observed {
    pub(crate) fn value(&self) -> Option<i64> {
        match *self {
            Observed::Ret(v) | Observed::Int(v) | Observed::NoException(v) => Some(v),
            Observed::Hex(v) => Some(v as i64),
            Observed::Exception { .. } => None,
        }
    }
}

impl Expect {
    fn matches(&self, o: &Observed) -> bool {
        match (*self, o) {
            (Expect::Eq(x), Observed::Ret(_) | Observed::Hex(_) | Observed::Int(_)) => o.value() == Some(x),
            (Expect::Err(e), Observed::Ret(v)) => *v == errno::ret(e),
            (Expect::BitsSet(m), Observed::Hex(v)) => v & m == m,
            (Expect::Recorded, _) => true,
            (Expect::OneOf(set), Observed::Ret(_) | Observed::Hex(_) | Observed::Int(_)) => o.value().is_some_and(|v| set.contains(&v)),
            (Expect::Exception { esr, elr_offset }, Observed::Exception { e, at }) => {
                e.esr == esr
                    && e.elr.wrapping_sub(*at) as i64 == elr_offset
                    && (e.ec() != EC_DABT_CUR || e.far == DEVICE_HOLE_IPA)
            }
            _ => false,
        }
    }
}

fn fmt_ret(f: &mut fmt::Formatter<'_>, v: i64) -> fmt::Result {
    match errno::check(v) {
        Err(e) if e.name().is_some() => write!(f, "{v} ({e})"),
        _ => write!(f, "{v}"),
    }
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Observed::Ret(v) => fmt_ret(f, v),
            Observed::Hex(v) => write!(f, "{v:#x}"),
            Observed::Int(v) => write!(f, "{v}"),
            Observed::Exception { e, at } => {
                write!(f, "exception esr={:#x} ec={:#x} elr={:+}", e.esr, e.ec(), e.elr.wrapping_sub(at) as i64)?;
                if e.ec() == EC_DABT_CUR {
                    write!(f, " far={:#x}", e.far)?;
                }
                Ok(())
            }
            Observed::NoException(v) => {
                write!(f, "no exception, x0=")?;
                fmt_ret(f, v)
            }
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Expect::Eq(v) => write!(f, "{v} ({v:#x})"),
            Expect::Err(e) => write!(f, "{}", Errno(e)),
            Expect::BitsSet(m) => write!(f, "bits {m:#x} set"),
            Expect::OneOf(set) => write!(f, "one of {set:?}"),
            Expect::Recorded => write!(f, "anything (compared with Xen's)"),
            Expect::Exception { esr, elr_offset } => write!(f, "exception esr={esr:#x} elr={elr_offset:+}"),
        }
    }
}

/// Runs a raw hypercall and reports its return.
fn raw(nr: u64, a0: usize, a1: usize, a2: usize) -> Observed {
    // SAFETY: the rows below pass either no pointer, a live buffer, or an address that is
    // deliberately unmapped (the hypervisor must refuse it).
    Observed::Ret(unsafe { hypercall3(nr as usize, a0, a1, a2) })
}

pub(crate) fn features(idx: u32) -> Observed {
    let mut fi = XenFeatureInfo { submap_idx: idx, submap: 0 };
    // SAFETY: `fi` is live.
    let r = unsafe { xen_version(XENVER_GET_FEATURES, &mut fi as *mut _ as usize) };
    if r == 0 { Observed::Hex(fi.submap as u64) } else { Observed::Ret(r) }
}

fn smccc(fid: u32, a1: usize) -> i64 {
    // SAFETY: only queries, and CPU_ON for targets that are already on or do not exist.
    unsafe { smccc_call(fid, [a1, 0, 0, 0, 0, 0, 0])[0] as i32 as i64 }
}

#[cfg(target_arch = "aarch64")]
/// `hvc #0x1234`, an immediate that is neither a Xen hypercall nor SMCCC.
fn hvc_bad_immediate() -> Observed {
    exceptions::clear();
    let at: u64;
    let x0: i64;
    // SAFETY: a trap instruction; the vector resumes after it (the nop absorbs either ELR choice).
    unsafe {
        asm!("adr {at}, 1f", "1: hvc #0x1234", "nop", at = out(reg) at, inlateout("x0") 0i64 => x0,
             out("x1") _, out("x2") _, out("x3") _, out("x16") _, options(nostack));
    }
    match exceptions::last() {
        (_, Some(e)) => Observed::Exception { e, at },
        (_, None) => Observed::NoException(x0),
    }
}

#[cfg(target_arch = "aarch64")]
/// QEMU virt's GICv3 ITS (its control frame), mapped at the guest's stage 1 by main.rs.
pub const QEMU_VIRT_ITS: u64 = 0x0808_0000;
#[cfg(target_arch = "aarch64")]
/// GITS_CBASER: the ITS command queue's base.
const GITS_CBASER: u64 = 0x80;
#[cfg(target_arch = "aarch64")]
const GITS_CTLR: u64 = 0x0;
#[cfg(target_arch = "aarch64")]
const GITS_CWRITER: u64 = 0x88;
#[cfg(target_arch = "aarch64")]
const GITS_CREADR: u64 = 0x90;
#[cfg(target_arch = "aarch64")]
/// GITS_CREADR with Stalled set at offset 0: the queue was not read.
const CREADR_STALLED_AT_0: u64 = 1;

#[cfg(target_arch = "aarch64")]
/// Aim the ITS's command queue at the hypervisor's own memory (QEMU virt loads it at
/// 0x4008_0000), Valid set, then enable the ITS and queue one command: this must reach
/// nothing outside the guest. Where the ITS is kept from the guest, the store aborts: the
/// observed value is that abort's ESR_EL1 (FAR must be the register). Where the guest has an
/// emulated ITS, the register takes the value as a guest address and the queue, not the
/// guest's RAM, stalls before its first command: the observed value is GITS_CREADR (Stalled,
/// offset 0); a read-back that differs from what was written is shown with bit 63 set.
fn its_cbaser_write() -> Observed {
    let reg = |off: u64| QEMU_VIRT_ITS + off;
    let wanted = (1u64 << 63) | 0x4008_0000 | 0xff;
    exceptions::clear();
    // SAFETY: mapped as Device memory at stage 1; the store either faults (the vector resumes
    // past it) or reaches whatever the hypervisor put there.
    unsafe { core::ptr::write_volatile(reg(GITS_CBASER) as *mut u64, wanted) };
    match exceptions::last() {
        (_, Some(e)) if e.ec() == EC_DABT_CUR && e.far == reg(GITS_CBASER) => return Observed::Hex(e.esr),
        (_, Some(e)) => return Observed::Hex(e.esr | 1 << 63),
        (_, None) => {}
    }
    // SAFETY: as above; the store went through, so these accesses do too.
    unsafe {
        let back = core::ptr::read_volatile(reg(GITS_CBASER) as *const u64);
        if back != wanted {
            return Observed::Hex(back | 1 << 63);
        }
        core::ptr::write_volatile(reg(GITS_CTLR) as *mut u32, 1);
        core::ptr::write_volatile(reg(GITS_CWRITER) as *mut u64, 0x20);
        let creadr = core::ptr::read_volatile(reg(GITS_CREADR) as *const u64);
        // Leave the ITS as it was: disabled, no queue.
        core::ptr::write_volatile(reg(GITS_CTLR) as *mut u32, 0);
        core::ptr::write_volatile(reg(GITS_CBASER) as *mut u64, 0);
        Observed::Hex(creadr)
    }
}

#[cfg(target_arch = "aarch64")]
/// A 32-bit store to [`DEVICE_HOLE_IPA`], mapped at stage 1 but owned by nobody at stage 2.
fn store_to_hole() -> Observed {
    exceptions::clear();
    let at: u64;
    // SAFETY: the address is mapped as Device memory at stage 1; the store either faults (the
    // vector resumes past it) or goes nowhere.
    unsafe {
        asm!("adr {at}, 1f", "1: str {v:w}, [{p}]", "nop", at = out(reg) at, v = in(reg) 0x5au32,
             p = in(reg) DEVICE_HOLE_IPA, options(nostack));
    }
    match exceptions::last() {
        (_, Some(e)) => Observed::Exception { e, at },
        (_, None) => Observed::NoException(0),
    }
}

#[cfg(target_arch = "aarch64")]
global_asm!(
    r#"
    .section .text.probe_preserved_regs, "ax"
    .global probe_preserved_regs
    // u64 probe_preserved_regs(u64 nr): loads a pattern into x5..x15 and x17..x30, makes
    // hypercall `nr` with x0 = x1 = 0, and returns a mask of the registers that changed.
probe_preserved_regs:
    stp     x29, x30, [sp, #-96]!
    stp     x19, x20, [sp, #16]
    stp     x21, x22, [sp, #32]
    stp     x23, x24, [sp, #48]
    stp     x25, x26, [sp, #64]
    stp     x27, x28, [sp, #80]
    mov     x16, x0
    mov     x0, #0
    mov     x1, #0
    .irp    n, 5,6,7,8,9,10,11,12,13,14,15,17,18,19,20,21,22,23,24,25,26,27,28,29,30
    movz    x\n, #(0x1100 + \n)
    movk    x\n, #0x5a5a, lsl #48
    .endr
    hvc     #0xEA1
    mov     x1, #0
    .irp    n, 5,6,7,8,9,10,11,12,13,14,15,17,18,19,20,21,22,23,24,25,26,27,28,29,30
    movz    x2, #(0x1100 + \n)
    movk    x2, #0x5a5a, lsl #48
    cmp     x\n, x2
    cset    x3, ne
    lsl     x3, x3, #\n
    orr     x1, x1, x3
    .endr
    mov     x0, x1
    ldp     x19, x20, [sp, #16]
    ldp     x21, x22, [sp, #32]
    ldp     x23, x24, [sp, #48]
    ldp     x25, x26, [sp, #64]
    ldp     x27, x28, [sp, #80]
    ldp     x29, x30, [sp], #96
    ret
"#
);

#[cfg(target_arch = "aarch64")]
extern "C" {
    fn probe_preserved_regs(nr: u64) -> u64;
}

static HELLO: &[u8] = b"console_io write from the xenith test guest\n";

#[cfg(target_arch = "aarch64")]
/// ESR_EL1 of an injected UNDEF: EC 0 (unknown), IL set (0x0200_0000).
const ESR_UNDEF: u64 = (EC_UNKNOWN as u64) << 26 | ESR_IL;
#[cfg(target_arch = "aarch64")]
/// ESR_EL1 of the data abort Xen 4.17 injects for an access to an unmapped IPA: EC 0x25, IL set,
/// ISS 0 (no instruction syndrome, DFSC 0) (0x9600_0000).
const ESR_DABT_HOLE: u64 = (EC_DABT_CUR as u64) << 26 | ESR_IL;

/// `XENVER_extraversion` into a buffer pre-filled with 0xAA: the number of bytes after the first NUL
/// that are not zero (Xen zero-fills the whole buffer), or the error.
fn extraversion_tail() -> Observed {
    let mut ev = XenExtraversion { extraversion: [0xaa; 16] };
    // SAFETY: `ev` is live.
    let r = unsafe { xen_version(XENVER_EXTRAVERSION, &mut ev as *mut _ as usize) };
    if r != 0 {
        return Observed::Ret(r);
    }
    let s = &ev.extraversion;
    let nul = s.iter().position(|&c| c == 0).unwrap_or(s.len());
    Observed::Ret(s[nul..].iter().filter(|&&c| c != 0).count() as i64)
}

/// Feature bits every Xen dom0 on ARM has: auto-translated physmap and dom0.
const DOM0_FEATURES: u64 = (1 << XENFEAT_AUTO_TRANSLATED_PHYSMAP) | (1 << XENFEAT_DOM0);

/// Xen 4.17's whole submap 0 for dom0 on ARM: writable_page_tables, auto_translated_physmap, dom0,
/// memory_op_vnode_supported, ARM_SMCCC_supported, direct_mapped.
const XEN_4_17_DOM0_FEATURES: i64 = 0x26805;

/// The table. Expected values: real Xen 4.17 (Debian 4.17.5) as dom0 under QEMU virt.
pub static CASES: &[Case] = &[
    Case { name: "xen_version.version", run: || Observed::Hex(raw(HYPERVISOR_XEN_VERSION, XENVER_VERSION as usize, 0, 0).value().unwrap_or(0) as u64), expect: Expect::Eq(0x40011) },
    // Xen 4.17 dom0 on QEMU virt: 0x26805 (bits 0, 2, 11, 13, 14, 17; not 18 as xen-abi.md said).
    Case { name: "xen_version.get_features.0", run: || features(0), expect: Expect::BitsSet(DOM0_FEATURES) },
    Case { name: "xen_version.get_features.0.exact", run: || features(0), expect: Expect::Eq(XEN_4_17_DOM0_FEATURES) },
    Case { name: "xen_version.get_features.1", run: || features(1), expect: Expect::Err(errno::EINVAL) },
    Case { name: "xen_version.get_features.unmapped_va", run: || raw(HYPERVISOR_XEN_VERSION, XENVER_GET_FEATURES as usize, UNMAPPED_VA as usize, 0), expect: Expect::Err(errno::EFAULT) },
    Case { name: "xen_version.extraversion.unmapped_va", run: || raw(HYPERVISOR_XEN_VERSION, XENVER_EXTRAVERSION as usize, UNMAPPED_VA as usize, 0), expect: Expect::Err(errno::EFAULT) },
    Case { name: "xen_version.get_features.0.mapping_bits", run: || match features(0) { Observed::Hex(v) => Observed::Hex(v & 0x3_0000), o => o }, expect: Expect::Eq(1 << XENFEAT_DIRECT_MAPPED) },
    Case { name: "xen_version.pagesize", run: || raw(HYPERVISOR_XEN_VERSION, XENVER_PAGESIZE as usize, 0, 0), expect: Expect::Eq(4096) },
    Case { name: "xen_version.extraversion.nonzero_after_nul", run: extraversion_tail, expect: Expect::Eq(0) },
    Case { name: "xen_version.cmd_minus_1", run: || raw(HYPERVISOR_XEN_VERSION, usize::MAX, 0, 0), expect: Expect::Err(errno::ENOSYS) },
    Case { name: "console_io.write", run: || raw(HYPERVISOR_CONSOLE_IO, CONSOLEIO_WRITE as usize, HELLO.len(), HELLO.as_ptr() as usize), expect: Expect::Eq(0) },
    Case { name: "console_io.write.unmapped_va", run: || raw(HYPERVISOR_CONSOLE_IO, CONSOLEIO_WRITE as usize, 16, UNMAPPED_VA as usize), expect: Expect::Err(errno::EFAULT) },
    Case { name: "console_io.write.zero_len", run: || raw(HYPERVISOR_CONSOLE_IO, CONSOLEIO_WRITE as usize, 0, HELLO.as_ptr() as usize), expect: Expect::Eq(0) },
    Case { name: "console_io.cmd_2", run: || raw(HYPERVISOR_CONSOLE_IO, 2, 0, 0), expect: Expect::Err(errno::ENOSYS) },
    Case { name: "sched_op.yield", run: || raw(HYPERVISOR_SCHED_OP, SCHEDOP_YIELD as usize, 0, 0), expect: Expect::Eq(0) },
    Case { name: "sched_op.cmd_100", run: || raw(HYPERVISOR_SCHED_OP, 100, 0, 0), expect: Expect::Err(errno::ENOSYS) },
    Case { name: "sched_op.shutdown.unmapped_va", run: || raw(HYPERVISOR_SCHED_OP, SCHEDOP_SHUTDOWN as usize, UNMAPPED_VA as usize, 0), expect: Expect::Err(errno::EFAULT) },
    Case { name: "hypercall.nr_64", run: || raw(NR_HYPERCALLS, 0, 0, 0), expect: Expect::Err(errno::ENOSYS) },
    Case { name: "hypercall.nr_u64_max", run: || raw(u64::MAX, 0, 0, 0), expect: Expect::Err(errno::ENOSYS) },
    Case { name: "hypercall.nr_100", run: || raw(100, 0, 0, 0), expect: Expect::Err(errno::ENOSYS) },
    Case { name: "hypercall.nr_6", run: || raw(HYPERVISOR_SCHED_OP_COMPAT, 0, 0, 0), expect: Expect::Err(errno::ENOSYS) },
    Case { name: "hypercall.nr_16", run: || raw(HYPERVISOR_EVENT_CHANNEL_OP_COMPAT, 0, 0, 0), expect: Expect::Err(errno::ENOSYS) },
    Case { name: "hypercall.nr_19", run: || raw(HYPERVISOR_PHYSDEV_OP_COMPAT, 0, 0, 0), expect: Expect::Err(errno::ENOSYS) },
    #[cfg(target_arch = "aarch64")]
    Case { name: "hypercall.preserved_regs_mask", run: || Observed::Hex(unsafe { probe_preserved_regs(HYPERVISOR_XEN_VERSION) }), expect: Expect::Eq(0) },
    #[cfg(target_arch = "aarch64")]
    // Xen injects UNDEF with ELR_EL1 pointing after the HVC (it does not rewind the PC).
    Case { name: "hvc.imm_0x1234", run: hvc_bad_immediate, expect: Expect::Exception { esr: ESR_UNDEF, elr_offset: 4 } },
    // Xen 4.17 reports SMCCC 1.1 (xen-abi.md said 1.2; measured wins).
    Case { name: "smccc.version", run: || Observed::Hex(smccc(SMCCC_VERSION, 0) as u64), expect: Expect::Eq(0x10001) },
    Case { name: "smccc.unknown_fid", run: || Observed::Int(smccc(0xC300_0123, 0)), expect: Expect::Eq(SMCCC_RET_NOT_SUPPORTED) },
    // Implemented (0) or not (-1): Xen 4.17 answers 0 on QEMU even with no firmware support;
    // xenith answers -1 unless the host firmware implements it (a listed deviation).
    Case { name: "smccc.arch_features.workaround_1", run: || Observed::Int(smccc(SMCCC_ARCH_FEATURES, SMCCC_ARCH_WORKAROUND_1 as usize)), expect: Expect::OneOf(&[0, SMCCC_RET_NOT_SUPPORTED]) },
    Case { name: "smccc.arch_features.workaround_2", run: || Observed::Int(smccc(SMCCC_ARCH_FEATURES, SMCCC_ARCH_WORKAROUND_2 as usize)), expect: Expect::OneOf(&[0, SMCCC_RET_NOT_SUPPORTED]) },
    // The workaround answers depend on the CPU Xen runs on; these are QEMU's cortex-a57.
    Case { name: "smccc.arch_features.workaround_3", run: || Observed::Int(smccc(SMCCC_ARCH_FEATURES, SMCCC_ARCH_WORKAROUND_3 as usize)), expect: Expect::Eq(SMCCC_RET_NOT_SUPPORTED) },
    Case { name: "smccc.arch_features.unknown", run: || Observed::Int(smccc(SMCCC_ARCH_FEATURES, 0x8000_0123)), expect: Expect::Eq(SMCCC_RET_NOT_SUPPORTED) },
    Case { name: "psci.version", run: || Observed::Hex(smccc(PSCI_VERSION, 0) as u64), expect: Expect::Eq(0x10001) },
    Case { name: "psci.features.psci_version", run: || Observed::Int(smccc(PSCI_FEATURES, PSCI_VERSION as usize)), expect: Expect::Eq(0) },
    Case { name: "psci.features.cpu_on_64", run: || Observed::Int(smccc(PSCI_FEATURES, PSCI_CPU_ON_64 as usize)), expect: Expect::Eq(0) },
    Case { name: "psci.features.system_off", run: || Observed::Int(smccc(PSCI_FEATURES, PSCI_SYSTEM_OFF as usize)), expect: Expect::Eq(0) },
    Case { name: "psci.features.smccc_version", run: || Observed::Int(smccc(PSCI_FEATURES, SMCCC_VERSION as usize)), expect: Expect::Eq(0) },
    Case { name: "psci.features.cpu_off", run: || Observed::Int(smccc(PSCI_FEATURES, PSCI_CPU_OFF as usize)), expect: Expect::Eq(0) },
    Case { name: "psci.features.cpu_suspend_64", run: || Observed::Int(smccc(PSCI_FEATURES, PSCI_CPU_SUSPEND_64 as usize)), expect: Expect::Eq(0) },
    Case { name: "psci.features.affinity_info_64", run: || Observed::Int(smccc(PSCI_FEATURES, PSCI_AFFINITY_INFO_64 as usize)), expect: Expect::Eq(0) },
    Case { name: "psci.features.migrate_info_type", run: || Observed::Int(smccc(PSCI_FEATURES, PSCI_MIGRATE_INFO_TYPE as usize)), expect: Expect::Eq(0) },
    Case { name: "psci.features.system_reset", run: || Observed::Int(smccc(PSCI_FEATURES, PSCI_SYSTEM_RESET as usize)), expect: Expect::Eq(0) },
    Case { name: "psci.migrate_info_type", run: || Observed::Int(smccc(PSCI_MIGRATE_INFO_TYPE, 0)), expect: Expect::Eq(2) },
    Case { name: "psci.affinity_info_64.self", run: || Observed::Int(smccc(PSCI_AFFINITY_INFO_64, 0)), expect: Expect::Eq(0) },
    Case { name: "psci.cpu_on_64.self_already_on", run: || Observed::Int(smccc(PSCI_CPU_ON_64, 0)), expect: Expect::Eq(PSCI_RET_ALREADY_ON) },
    Case { name: "psci.cpu_on_64.no_such_cpu", run: || Observed::Int(smccc(PSCI_CPU_ON_64, 0xff00)), expect: Expect::Eq(PSCI_RET_INVALID_PARAMETERS) },
    Case { name: "psci.features.unknown", run: || Observed::Int(smccc(PSCI_FEATURES, 0x8400_00FF)), expect: Expect::Eq(PSCI_RET_NOT_SUPPORTED) },
    #[cfg(target_arch = "aarch64")]
    Case { name: "stage2.store_to_hole", run: store_to_hole, expect: Expect::Exception { esr: ESR_DABT_HOLE, elr_offset: 0 } },
    #[cfg(target_arch = "aarch64")]
    Case {
        name: "isolation.its.cbaser_write",
        run: its_cbaser_write,
        expect: Expect::OneOf(&[ESR_DABT_HOLE as i64, CREADR_STALLED_AT_0 as i64]),
    },
];

/// The whole table in order.
#[cfg(target_arch = "aarch64")]
fn table() -> impl Iterator<Item = &'static Case> {
    CASES.iter().chain(crate::ops::OPS_CASES).chain(crate::abi::ABI_CASES).chain(crate::ops::OPS_TAIL).chain(crate::cpu::CPU_CASES).chain(crate::toolstack::TOOLSTACK_CASES)
}

/// ARMv7-A: the rows both architectures share (the AArch64 instruction, register and GICv3
/// rows are left out), then ARMv7's own CP15 rows.
#[cfg(target_arch = "arm")]
fn table() -> impl Iterator<Item = &'static Case> {
    CASES.iter().chain(crate::ops::OPS_CASES).chain(crate::arm32_cases::ARM32_CASES).chain(crate::ops::OPS_TAIL)
}

/// A data-cache maintenance operation by set/way.
#[derive(Clone, Copy)]
pub enum SetWayOp {
    /// Invalidate (DC ISW, DCISW).
    Isw,
    /// Clean (DC CSW, DCCSW).
    Csw,
    /// Clean and invalidate (DC CISW, DCCISW).
    Cisw,
}

/// Walk every set and way of a level-1 data cache of `(sets, ways, log2 line bytes)` with
/// `op`, which issues the operation on one set/way operand and returns the instruction's
/// address; stop at the first exception. Observed: that exception (at the first operation's
/// address), or 1 if every operation completed and `intact` says the data survived, else 0.
pub fn set_way_walk(geometry: (u32, u32, u32), mut op: impl FnMut(u64) -> u64, intact: impl FnOnce() -> bool) -> Observed {
    let (sets, ways, line_shift) = geometry;
    let way_shift = 32 - (ways.max(2) - 1).ilog2() - 1;
    crate::exceptions::clear();
    let mut first_at = 0u64;
    'outer: for way in 0..ways {
        for set in 0..sets {
            let at = op((u64::from(way) << way_shift) | (u64::from(set) << line_shift));
            if first_at == 0 {
                first_at = at;
            }
            if crate::exceptions::last().0 != 0 {
                break 'outer;
            }
        }
    }
    if let (_, Some(e)) = crate::exceptions::last() {
        return Observed::Exception { e, at: first_at };
    }
    Observed::NoException(i64::from(intact()))
}

/// Runs every case; returns (passed, failed).
pub fn run_all() -> (u32, u32) {
    run_table("", table())
}

/// Runs every case with `prefix` before each name (the domU runs the table too; its
/// expectations are dom0's, so only the conformance diff with Xen judges it); returns
/// (passed, failed) against the table's own expectations.
#[cfg(target_arch = "aarch64")]
pub fn run_all_as(prefix: &str) -> (u32, u32) {
    run_table(prefix, table())
}

/// Runs `cases` in order, printing each (`prefix` before its name); returns (passed, failed).
pub fn run_table<'a>(prefix: &str, cases: impl Iterator<Item = &'a Case>) -> (u32, u32) {
    let (mut passed, mut failed) = (0, 0);
    for case in cases {
        let observed = (case.run)();
        println!("case {prefix}{}: {}", case.name, observed);
        if case.expect.matches(&observed) {
            passed += 1;
        } else {
            failed += 1;
            println!("fail {prefix}{}: expected {}", case.name, case.expect);
        }
    }
    (passed, failed)
}
