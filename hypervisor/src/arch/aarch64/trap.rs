//! Traps from guests (and, as bugs, from EL2 itself): decode ESR_EL2 and hand the work to the
//! arch-neutral handlers. Guest input never stops the hypervisor: what it cannot handle is
//! answered with an injected exception, or the domain is killed with a log line.

use super::entry::TrapFrame;
use super::inject::{self, esr};
use super::psci;
use crate::domain::mmio::{MmioAccess, MmioResult};
use crate::domain::registry::DOMAINS;
use super::mem::DirectMem;
use crate::domain::{DomId, Domain, ShutdownReason};
use crate::hypercall::after::{self, After};
use crate::hypercall;
use crate::{log, sysreg};
use super::percpu::{self, MAX_CPUS};
use super::stats::{count, S2_FAULTS_RESOLVED};
use crate::trap_stats::TrapKind;
use crate::sync::SpinMutex as Mutex;
use crate::domain::fault::{self, Resolution, RetryState, Stage2Fault};
use crate::domain::lifecycle::FaultLoop;
use core::sync::atomic::Ordering;

/// Per CPU, the last retried stage-2 fault (`fault::resolve`'s bound).
static S2_RETRY: [Mutex<RetryState>; MAX_CPUS] = [const { Mutex::new(RETRY_INIT) }; MAX_CPUS];
const RETRY_INIT: RetryState = RetryState::new();
/// Per CPU, the exceptions injected into its vCPU (`FaultLoop`: a handler that faults at once).
static FAULT_LOOP: [Mutex<FaultLoop>; MAX_CPUS] = [const { Mutex::new(FaultLoop::new()) }; MAX_CPUS];

/// Exception classes (ESR_EL2.EC) handled here.
mod ec {
    pub const UNKNOWN: u64 = 0x00;
    pub const WFX: u64 = 0x01;
    pub const HVC64: u64 = 0x16;
    pub const SMC64: u64 = 0x17;
    pub const SYSREG: u64 = 0x18;
    pub const IABT_LOW: u64 = 0x20;
    pub const DABT_LOW: u64 = 0x24;
}

#[no_mangle]
extern "C" fn xenith_trap_lower_sync(frame: &mut TrapFrame) {
    // vGIC: read the list registers back before anything looks at interrupt state, and
    // refill them on the way out (irq.rs).
    let esr_el2 = sysreg!(read ESR_EL2);
    let ssbd = super::spectre::guest_exit();
    super::irq::guest_exit();
    if handle_lower_sync(frame, esr_el2) == After::Park {
        super::vcpu_switch::park_this_cpu();
    }
    super::irq::guest_entry();
    super::spectre::guest_entry(ssbd);
}

fn handle_lower_sync(frame: &mut TrapFrame, esr_el2: u64) -> After {
    let class = esr_el2 >> 26;
    let iss = esr_el2 & 0x1ff_ffff;
    let current: DomId = percpu::current_domain();
    if class == ec::HVC64 && iss == u64::from(guest_abi::hypercall::XEN_HYPERCALL_TAG) {
        // The vector sends these to hvc.rs directly; should one arrive here, same handling.
        count(TrapKind::Hypercall); // before the call (it may power the machine off)
        let args = [frame.x[0], frame.x[1], frame.x[2], frame.x[3], frame.x[4]];
        match super::hvc::hypercall(frame.x[16], args) {
            hypercall::Outcome::Return(r) => frame.x[0] = r as u64,
            hypercall::Outcome::Continue { x0, x1, x2 } => {
                (frame.x[0], frame.x[1], frame.x[2]) = (x0, x1, x2);
                frame.elr -= 4;
            }
        }
        return After::Resume;
    }
    // Counted now, except a stage-2 fault: that is counted once the device it hit is known.
    let kind = TrapKind::of_sync(esr_el2);
    if kind != TrapKind::Abort {
        count(kind);
    }
    let Some(dom) = DOMAINS.get(current) else {
        log!("trap from unknown domain {current} (ESR {esr_el2:#x}): halting this CPU");
        super::regs::halt();
    };
    match class {
        ec::HVC64 if iss == 0 => smccc(dom, frame),
        ec::SMC64 => {
            // A trapped SMC returns to the SMC itself: step over it.
            frame.elr += 4;
            if iss == 0 {
                smccc(dom, frame);
            } else {
                inject_undef(dom, frame, frame.elr - 4);
            }
        }
        ec::HVC64 => {
            if log_fault(dom, frame.elr) {
                log!("d{}: HVC #{:#x} at {:#x}: not a hypercall, UNDEF injected", dom.id, iss & 0xffff, frame.elr - 4);
            }
            // Xen reports the exception with the return address after the HVC.
            let ret = frame.elr;
            inject_undef(dom, frame, ret);
        }
        ec::DABT_LOW | ec::IABT_LOW => count(guest_abort(dom, frame, class, iss)),
        // Feature ID registers (HCR_EL2.TID3): the guest's view (cpufeat.rs).
        ec::SYSREG if super::cpufeat::emulate_sysreg(frame, iss) => {}
        // Timer and GIC system registers the guest may not touch directly are emulated.
        ec::SYSREG if super::vtimer::emulate_sysreg(frame, iss) || super::irq::emulate_sysreg(frame, iss) => frame.elr += 4,
        // Cache maintenance by set/way, and the register writes that track the caches.
        ec::SYSREG if super::setway::emulate(dom, frame, iss) => frame.elr += 4,
        ec::SYSREG | ec::UNKNOWN => {
            if log_fault(dom, frame.elr) {
                log!("d{}: trapped instruction (EC {class:#x}, ISS {iss:#x}) at {:#x}: UNDEF injected", dom.id, frame.elr);
            }
            let ret = frame.elr;
            inject_undef(dom, frame, ret);
        }
        // HCR_EL2.TWI/TWE (guest.rs; while vCPUs share the CPU, vcpu_switch.rs): with vCPUs
        // sharing the CPU, WFI waits in the scheduler and WFE yields to another vCPU; else
        // the vCPU's own CPU waits for it (`wait`).
        ec::WFX => {
            if super::vcpu_switch::enabled() {
                // ESR_EL2.IL: a 16-bit T32 wait instruction from AArch32 EL0 is 2 bytes.
                frame.elr += if esr_el2 & (1 << 25) != 0 { 4 } else { 2 };
                let why = if iss & 1 == 0 { super::vcpu_switch::Why::Wfi } else { super::vcpu_switch::Why::Wfe };
                super::vcpu_switch::reschedule(frame, why);
                // The frame may be another vCPU's now: nothing below is about the trapping one.
                return After::Resume;
            }
            wait(frame, esr_el2);
        }
        // Anything else a guest instruction can raise at EL2 is a trapped use of a feature
        // the guest is not offered (SVE 0x19, SME 0x1d, pointer authentication 0x09 when
        // hidden, ...): UNDEFINED as on a CPU without it.
        _ => {
            if log_fault(dom, frame.elr) {
                log!("d{}: trapped instruction (EC {class:#x}, ISS {iss:#x}) at {:#x}: feature not offered, UNDEF injected", dom.id, frame.elr);
            }
            let ret = frame.elr;
            inject_undef(dom, frame, ret);
        }
    }
    after::after_trap(&super::Hw, &DOMAINS, dom, percpu::current_vcpu())
}

/// A trapped WFI or WFE: the core decides (`vcpu::on_wait`) from what is waiting for the vCPU
/// in its vGIC (the list registers were read back on exit); waiting is a WFI on this CPU.
/// Physical interrupts stay masked at EL2 meanwhile: one that is pending ends the WFI, and it
/// is taken (and any virtual interrupt it brings delivered) before the guest resumes
/// (`gic::guest_entry`), in the same exit. A blocked vCPU has no slice (`vtimer::block`).
fn wait(frame: &mut TrapFrame, esr_el2: u64) {
    use crate::domain::vcpu::{on_wait, Wait, WaitAction};
    let iss = esr_el2 & 0x1ff_ffff;
    // TI: bit 0 tells WFE (and WFET) from WFI (and WFIT), bit 1 the timed forms.
    let kind = if iss & 1 == 0 { Wait::Interrupt } else { Wait::Event };
    // WFIT's timeout is not kept here, nor an AArch32 EL0 instruction's condition (CV set,
    // COND not "always") evaluated: such a wait completes at once.
    let unheld = iss & 2 != 0 || (iss & (1 << 24) != 0 && (iss >> 20) & 0xf != 0xe);
    let deliverable = kind == Wait::Interrupt
        && !unheld
        && super::vgic_glue::current_vgic().is_some_and(|v| v.lock().has_deliverable(percpu::current_vcpu() as usize));
    if on_wait(kind, deliverable, unheld) == WaitAction::WaitForInterrupt {
        super::vtimer::block();
        // SAFETY: waits for an interrupt with PSTATE.I set at EL2 (exception entry); no memory
        // or register is touched.
        unsafe { core::arch::asm!("dsb sy", "wfi", options(nostack, preserves_flags)) };
        super::vtimer::wake();
    }
    // ESR_EL2.IL: a 16-bit T32 wait instruction from AArch32 EL0 is 2 bytes.
    frame.elr += if esr_el2 & (1 << 25) != 0 { 4 } else { 2 };
}

fn smccc(dom: &Domain, frame: &mut TrapFrame) {
    // PSCI CPU_ON / AFFINITY_INFO for dom0 with several vCPUs (CPU_ON starts its vCPU on
    // dom0's stage 2: this CPU is handling a trap from one of dom0's vCPUs).
    let x = [frame.x[0], frame.x[1], frame.x[2], frame.x[3]];
    let stage2 = || (sysreg!(read VTTBR_EL2), sysreg!(read VTCR_EL2));
    if let Some(x0) = hypercall::smccc::psci_smp(&crate::domain::vcpu::CPUS, &super::Hw, dom.id, x, stage2) {
        frame.x[0] = x0;
        return;
    }
    if let Some(x0) = hypercall::smccc::psci_domu(&crate::sched::SCHED, &crate::domain::vcpu::CPUS, &super::Hw, dom, percpu::current_vcpu(), x) {
        frame.x[0] = x0;
        return;
    }
    if let Some((fid, arg)) = hypercall::smccc::firmware_forward(frame.x[0], frame.x[1]) {
        super::spectre::forward(fid, arg);
    }
    let args = [frame.x[1], frame.x[2], frame.x[3], frame.x[4], frame.x[5], frame.x[6], frame.x[7]];
    let ret = hypercall::smccc::handle(dom, frame.x[0], args);
    frame.x[..4].copy_from_slice(&ret);
}

fn inject_undef(dom: &Domain, frame: &mut TrapFrame, return_to: u64) {
    let pc = frame.elr;
    inject::inject_sync(frame, esr::undef(), None, return_to);
    note_injection(dom, pc, frame.elr, "UNDEF");
}

/// Whether to log a fault at `pc` that gets an exception injected: not when it is one more turn
/// of a handler faulting in its own vector entry (the loop is reported once, as a crash).
fn log_fault(dom: &Domain, pc: u64) -> bool {
    let nested = FAULT_LOOP.get(percpu::this_cpu()).is_some_and(|l| l.lock().would_nest(pc));
    !nested && dom.should_log_fault()
}

/// An exception was injected for a fault at `pc`, sending the vCPU to `vector`: a vCPU whose
/// handler keeps faulting inside its vector entry cannot run any more, and its domain crashes
/// (acted on as the trap returns: a domU's CPU stops, dom0 takes the machine with it).
fn note_injection(dom: &Domain, pc: u64, vector: u64, what: &str) {
    let Some(slot) = FAULT_LOOP.get(percpu::this_cpu()) else { return };
    let mut l = slot.lock();
    if l.injected(pc, vector) {
        let n = l.nested();
        drop(l);
        log!("d{}v{}: {what} loop: its exception handler at {vector:#x} faulted at once {n} times running: domain crashed", dom.id, percpu::current_vcpu());
        dom.set_shutdown(ShutdownReason::Crash);
    }
}

/// A stage-2 fault: emulate the access if a device of the domain covers the IPA, else the
/// guest touched an IPA it does not own and gets an abort. Returns the trap's kind.
fn guest_abort(dom: &Domain, frame: &mut TrapFrame, class: u64, iss: u64) -> TrapKind {
    let far = sysreg!(read FAR_EL2);
    let hpfar = sysreg!(read HPFAR_EL2);
    let ipa = ((hpfar & 0x0000_0fff_ffff_fff0) << 8) | (far & 0xfff);
    let el0 = inject::from_el0(frame);
    let write = iss & (1 << 6) != 0;
    let is_data = class == ec::DABT_LOW;
    if is_data {
        if let Some(kind) = emulate_mmio(dom, frame, ipa, iss) {
            return kind;
        }
    }
    // Another CPU's p2m change (a block split to take a page out, say) can leave the entry
    // invalid for a moment; p2m changes hold the p2m's write lock, so under its read lock the
    // p2m is whole.
    let fault = Stage2Fault::from_iss(ipa, iss, !is_data);
    let now = super::regs::counter();
    // Retries more than ~1 ms apart (at the counter's frequency) are separate windows.
    let gap = super::regs::counter_freq() / 1000;
    let resolution = match S2_RETRY.get(percpu::this_cpu()) {
        Some(slot) => fault::resolve(dom.p2m.read().as_ref(), &DirectMem, fault, &mut slot.lock(), now, gap),
        None => Resolution::Abort,
    };
    match resolution {
        Resolution::Retry => {
            S2_FAULTS_RESOLVED.fetch_add(1, Ordering::Relaxed);
            return TrapKind::Abort;
        }
        Resolution::AbortStuck => log!(
            "d{}: stage-2 fault on IPA {ipa:#x} (PC {:#x}) repeats although the page is mapped: abort injected",
            dom.id,
            frame.elr
        ),
        Resolution::Abort => {}
    }
    if log_fault(dom, frame.elr) {
        log!(
            "d{}: {} {} IPA {ipa:#x} (VA {far:#x}, PC {:#x}): not owned, abort injected",
            dom.id,
            if is_data { "data abort" } else { "instruction abort" },
            if !is_data { "fetching" } else if write { "writing" } else { "reading" },
            frame.elr
        );
    }
    let esr = if is_data { esr::data_abort(el0) } else { esr::prefetch_abort(el0) };
    let ret = frame.elr;
    inject::inject_sync(frame, esr, Some(far), ret);
    note_injection(dom, ret, frame.elr, if is_data { "data abort" } else { "instruction abort" });
    TrapKind::Abort
}

/// Emulate a trapped load/store on an emulated device. Returns `None` when no device covers
/// `ipa` (the caller injects an abort), else the trap's kind (which device). The syndrome must
/// be valid (ISV): instructions without one (e.g. load/store pair) on device registers get an
/// abort, as on Xen.
fn emulate_mmio(dom: &Domain, frame: &mut TrapFrame, ipa: u64, iss: u64) -> Option<TrapKind> {
    let (mut dev, offset) = dom.mmio.find(ipa)?;
    let isv = iss & (1 << 24) != 0;
    if !isv || iss & (1 << 7) != 0 {
        return None; // no syndrome, or a fault on a stage-1 walk: not a device access
    }
    let kind = super::gic::mmio_kind(ipa);
    let size = 1u8 << ((iss >> 22) & 3);
    let sign_extend = iss & (1 << 21) != 0;
    let reg = ((iss >> 16) & 0x1f) as usize;
    let sixty_four = iss & (1 << 15) != 0;
    let write = iss & (1 << 6) != 0;
    let value = if reg == 31 { 0 } else { frame.x[reg] };
    let value = if size == 8 { value } else { value & ((1u64 << (size * 8)) - 1) };
    let access = MmioAccess { offset, size, write, value };
    // Banked registers are the accessing vCPU's.
    match dev.access(percpu::current_vcpu() as usize, access) {
        MmioResult::Done(v) => {
            if !write && reg != 31 {
                let bits = u32::from(size) * 8;
                let mut v = if bits == 64 { v } else { v & ((1u64 << bits) - 1) };
                if sign_extend && bits < 64 && v & (1 << (bits - 1)) != 0 {
                    v |= !((1u64 << bits) - 1);
                }
                if !sixty_four {
                    v &= 0xffff_ffff;
                }
                frame.x[reg] = v;
            }
            // `iss` is ESR_EL2[24:0], so it never holds IL (bit 25); AArch64 instructions are 4 bytes.
            frame.elr += 4;
            Some(kind)
        }
        MmioResult::Abort => None,
    }
}

#[no_mangle]
extern "C" fn xenith_trap_lower_irq(frame: &mut TrapFrame) {
    // Physical interrupts the hypervisor owns (timers, GIC maintenance): see irq.rs.
    let ssbd = super::spectre::guest_exit();
    let kind = super::irq::irq_from_guest(frame, |f| super::vcpu_switch::reschedule(f, super::vcpu_switch::Why::Interrupt), super::vcpu_switch::kicked);
    count(kind);
    super::spectre::guest_entry(ssbd);
}

#[no_mangle]
extern "C" fn xenith_trap_lower_serror(frame: &mut TrapFrame) {
    let why = alloc::format!("SError (ESR {:#x}) at {:#x}", sysreg!(read ESR_EL2), frame.elr);
    kill_current(&why);
}

/// The running domain did something it cannot continue from: it crashes (dom0 takes the
/// machine with it; a domU's CPU stops).
fn kill_current(why: &str) {
    count(TrapKind::OtherSync);
    let current: DomId = percpu::current_domain();
    if let Some(dom) = DOMAINS.get(current) {
        log!("d{}: {why}: domain killed", dom.id);
        dom.set_shutdown(ShutdownReason::Crash);
        if after::after_trap(&super::Hw, &DOMAINS, dom, percpu::current_vcpu()) == After::Park {
            super::vcpu_switch::park_this_cpu();
        }
    }
}

/// An exception taken at EL2 itself: a hypervisor bug. Report everything and stop.
#[no_mangle]
extern "C" fn xenith_trap_hyp(frame: &mut TrapFrame, kind: u64) -> ! {
    let kinds = ["SP0", "sync", "IRQ", "FIQ", "SError"];
    log!(
        "HYPERVISOR BUG: {} exception at EL2: ESR {:#x} ELR {:#x} FAR {:#x} SPSR {:#x}",
        kinds.get(kind as usize).copied().unwrap_or("?"),
        sysreg!(read ESR_EL2),
        frame.elr,
        sysreg!(read FAR_EL2),
        frame.spsr
    );
    for (i, pair) in frame.x.chunks(2).enumerate() {
        match pair {
            [a, b] => log!("  x{:<2} {a:#018x}  x{:<2} {b:#018x}", 2 * i, 2 * i + 1),
            [a] => log!("  x{:<2} {a:#018x}", 2 * i),
            _ => {}
        }
    }
    psci::system_off();
}
