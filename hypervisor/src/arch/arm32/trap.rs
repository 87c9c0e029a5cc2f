//! Traps from guests (and, as bugs, from HYP mode itself): decode HSR and hand the work to the
//! arch-neutral handlers. Guest input never stops the hypervisor: what it cannot handle is
//! answered with an injected exception, or the domain is killed with a log line.

use super::entry::TrapFrame;
use super::guest::{self, Exception};
use super::regs::{Hdfar, Hifar, Hpfar, Hsr, Ttbcr};
use super::percpu::{self, MAX_CPUS};
use super::mem::DirectMem;
use super::tlb::HwTlb;
use super::psci;
use crate::domain::fault::{self, Resolution, RetryState, Stage2Fault};
use crate::domain::mmio::{MmioAccess, MmioResult};
use crate::domain::registry::{Machine, PoolFrames, DOMAINS, FRAMES};
use crate::hypercall::after::{self, After};
use crate::domain::{DomId, Domain};
use crate::hypercall::{self, GuestFault, GuestMemory, HypercallCtx, Outcome};
use crate::log;
use crate::mm::RegionAllocator;
use crate::sync::SpinMutex as Mutex;
use super::stats::{HYPERCALLS, S2_FAULTS_RESOLVED, TRAPS};
use core::sync::atomic::Ordering;

/// Per CPU, the last retried stage-2 fault (`fault::resolve`'s bound).
static S2_RETRY: [Mutex<RetryState>; MAX_CPUS] = [const { Mutex::new(RetryState::new()) }; MAX_CPUS];

/// HSR exception classes handled here (ARMv7 HYP syndrome).
mod ec {
    pub const WFX: u32 = 0x01;
    pub const CP15_32: u32 = 0x03;
    pub const CP15_64: u32 = 0x04;
    pub const HVC: u32 = 0x12;
    pub const SMC: u32 = 0x13;
    pub const IABT_LOW: u32 = 0x20;
    pub const DABT_LOW: u32 = 0x24;
}

/// HSR.IL: the trapped instruction is 32 bits (else a 16-bit Thumb one).
const HSR_IL: u32 = 1 << 25;

/// The calling vCPU's memory through its own stage 1 and stage 2, limited to its RAM.
pub(super) struct CurrentGuestMemory;

impl CurrentGuestMemory {
    /// Walk `[gva, gva + len)` page by page, handing each piece's HYP address to `f`.
    fn for_each_page(&self, gva: u64, len: usize, write: bool, mut f: impl FnMut(usize, usize, usize)) -> Result<(), GuestFault> {
        let dom = DOMAINS.get(percpu::current_domain()).ok_or(GuestFault { gva })?;
        let mut done = 0usize;
        while done < len {
            let va = gva.checked_add(done as u64).ok_or(GuestFault { gva })?;
            let chunk = core::cmp::min(len - done, (0x1000 - (va & 0xfff)) as usize);
            let pa = match guest::gva_to_pa(va, write) {
                Some(pa) => pa,
                // Another CPU may be changing the p2m (break-before-make): once its read lock
                // is ours, no change is under way.
                None => {
                    let _p2m = dom.p2m.read();
                    guest::gva_to_pa(va, write).ok_or(GuestFault { gva: va })?
                }
            };
            if !dom.ram().contains_pa(pa, chunk as u64) {
                return Err(GuestFault { gva: va });
            }
            let host = super::mmu::va_of(pa, chunk as u64).ok_or(GuestFault { gva: va })?;
            f(host, done, chunk);
            done += chunk;
        }
        Ok(())
    }
}

impl GuestMemory for CurrentGuestMemory {
    fn copy_from_guest(&mut self, gva: u64, buf: &mut [u8]) -> Result<(), GuestFault> {
        let dst = buf.as_mut_ptr();
        self.for_each_page(gva, buf.len(), false, |va, off, n| {
            // SAFETY: `va..va+n` is RAM of this domain (checked), identity-mapped in HYP mode,
            // and `off..off+n` lies inside `buf`.
            unsafe { super::mem::copy_bytes(va as *const u8, dst.add(off), n) }
        })
    }

    fn copy_to_guest(&mut self, gva: u64, data: &[u8]) -> Result<(), GuestFault> {
        let src = data.as_ptr();
        self.for_each_page(gva, data.len(), true, |va, off, n| {
            // SAFETY: as in `copy_from_guest`, in the other direction.
            unsafe { super::mem::copy_bytes(src.add(off), va as *mut u8, n) }
        })
    }
}

#[no_mangle]
extern "C" fn xenith_trap_guest(frame: &mut TrapFrame) {
    TRAPS.fetch_add(1, Ordering::Relaxed);
    let hsr = Hsr::read();
    // vGIC: read the list registers back before anything looks at interrupt state, and
    // refill them on the way out (irq.rs).
    super::irq::guest_exit();
    if handle(frame, hsr) == After::Park {
        park_this_cpu();
    }
    super::irq::guest_entry();
}

/// Whether a trapped conditional instruction passed its condition (HSR.CV and COND against
/// the guest's NZCV): one that failed is skipped without effect.
fn condition_passed(hsr: u32, spsr: u32) -> bool {
    if hsr & (1 << 24) == 0 {
        return true;
    }
    let (n, z, c, v) = (spsr >> 31 & 1 == 1, spsr >> 30 & 1 == 1, spsr >> 29 & 1 == 1, spsr >> 28 & 1 == 1);
    let cond = (hsr >> 20) & 0xf;
    let base = match cond >> 1 {
        0 => z,
        1 => c,
        2 => n,
        3 => v,
        4 => c && !z,
        5 => n == v,
        6 => !z && n == v,
        _ => true,
    };
    if cond & 1 == 1 && cond != 0xf { !base } else { base }
}

/// Bytes of the trapped instruction (HSR.IL).
fn insn_len(hsr: u32) -> u32 {
    if hsr & HSR_IL != 0 { 4 } else { 2 }
}

fn handle(frame: &mut TrapFrame, hsr: u32) -> After {
    let class = hsr >> 26;
    let iss = hsr & 0x1ff_ffff;
    let current: DomId = percpu::current_domain();
    if class == ec::HVC && iss & 0xffff == guest_abi::hypercall::XEN_HYPERCALL_TAG as u32 {
        return hypercall_trap(frame, current);
    }
    let Some(dom) = DOMAINS.get(current) else {
        log!("trap from unknown domain {current} (HSR {hsr:#x}): halting this CPU");
        super::regs::halt();
    };
    match class {
        ec::HVC if iss & 0xffff == 0 => smccc(dom, frame),
        ec::SMC => {
            // A trapped SMC returns to the SMC itself: step over it (4 bytes in A32 and T32).
            let at = frame.elr;
            frame.elr = at.wrapping_add(4);
            // A conditional SMC that failed its condition completes without effect.
            if condition_passed(hsr, frame.spsr) {
                smccc(dom, frame);
            }
        }
        ec::HVC => {
            if dom.should_log_fault() {
                log!("d{}: HVC #{:#x} at {:#x}: not a hypercall, UNDEF injected", dom.id, iss & 0xffff, frame.elr.wrapping_sub(4));
            }
            // The return address is the instruction after the HVC (ELR_hyp already).
            let ret = frame.elr;
            inject_undef(frame, ret);
        }
        ec::DABT_LOW | ec::IABT_LOW => guest_abort(dom, frame, class, iss, insn_len(hsr)),
        ec::CP15_32 | ec::CP15_64 if !condition_passed(hsr, frame.spsr) => frame.elr = frame.elr.wrapping_add(insn_len(hsr)),
        ec::CP15_32 | ec::CP15_64 if super::vtimer::emulate_cp15(frame, iss, class == ec::CP15_64) => {
            frame.elr = frame.elr.wrapping_add(insn_len(hsr))
        }
        // Cache maintenance by set/way, and the register writes that track the caches.
        ec::CP15_32 | ec::CP15_64 if super::setway::emulate(dom, frame, iss, class == ec::CP15_64) => {
            frame.elr = frame.elr.wrapping_add(insn_len(hsr))
        }
        // ACTLR (HCR.TAC) from PL1: reads see the CPU's own value, writes are ignored.
        ec::CP15_32 if is_actlr(iss) && !guest::from_user(frame) => {
            if iss & 1 != 0 {
                let rt = ((iss >> 5) & 0xf) as usize;
                if let Some(r) = frame.r.get_mut(rt) {
                    *r = super::regs::Actlr::read();
                } else {
                    let _ = guest::write_banked(frame, rt, super::regs::Actlr::read());
                }
            }
            frame.elr = frame.elr.wrapping_add(insn_len(hsr))
        }
        // Not trapped (guest.rs); should one be, it completes at once, as WFI/WFE may.
        ec::WFX => frame.elr = frame.elr.wrapping_add(insn_len(hsr)),
        // Anything else (EC 0: an unknown reason, untrapped CP15 registers, ...): UNDEFINED.
        _ => {
            if dom.should_log_fault() {
                log!("d{}: trapped instruction (HSR EC {class:#x}, ISS {iss:#x}) at {:#x}: UNDEF injected", dom.id, frame.elr);
            }
            let ret = frame.elr.wrapping_add(insn_len(hsr));
            inject_undef(frame, ret);
        }
    }
    after_guest_work(dom, current)
}

/// Whether a trapped MCR/MRC (`iss` of EC 0x03) names ACTLR: p15, 0, c1, c0, 1.
fn is_actlr(iss: u32) -> bool {
    let (opc2, opc1, crn, crm) = ((iss >> 17) & 7, (iss >> 14) & 7, (iss >> 10) & 0xf, (iss >> 1) & 0xf);
    (opc1, crn, crm, opc2) == (0, 1, 0, 1)
}

/// Once a trap is handled: act on a shutdown the domain asked for.
fn after_guest_work(dom: &Domain, _current: DomId) -> After {
    after::after_trap(&super::Hw, &DOMAINS, dom, percpu::current_vcpu())
}

/// A Xen hypercall (`HVC #0xEA1` from A32 or T32): number in r12, arguments r0-r4, result in
/// r0. A continuation re-issues the HVC (4 bytes in both instruction sets).
fn hypercall_trap(frame: &mut TrapFrame, current: DomId) -> After {
    HYPERCALLS.fetch_add(1, Ordering::Relaxed);
    let r = &frame.r;
    let args = [r[0], r[1], r[2], r[3], r[4]].map(u64::from);
    let nr = u64::from(r[12]);
    let mut mem = CurrentGuestMemory;
    let mut frames = PoolFrames;
    let mut tlb = HwTlb;
    let mut machine = Machine { mem: &DirectMem, frames: &mut frames, tlb: &mut tlb };
    let mut cx = HypercallCtx { domains: &DOMAINS, caller: current, vcpu: percpu::current_vcpu(), mem: &mut mem, machine: &mut machine, arch: &super::Hw };
    match hypercall::dispatch_step(&mut cx, nr, args) {
        Outcome::Return(v) => frame.r[0] = v as u32,
        Outcome::Continue { x0, x1, x2 } => {
            (frame.r[0], frame.r[1], frame.r[2]) = (x0 as u32, x1 as u32, x2 as u32);
            frame.elr = frame.elr.wrapping_sub(4);
        }
    }
    // An event the hypercall raised reaches its domain as that domain's event-channel PPI,
    // whichever domain raised it.
    let mut with_upcalls = crate::domain::take_domains_with_upcalls();
    while with_upcalls != 0 {
        let id = with_upcalls.trailing_zeros() as DomId;
        with_upcalls &= with_upcalls - 1;
        if let Some(d) = DOMAINS.get(id) {
            super::vgic_glue::deliver_event_upcall(d);
        }
    }
    match DOMAINS.get(current) {
        Some(dom) => after_guest_work(dom, current),
        None => After::Resume,
    }
}

/// SMCCC / PSCI from a 32-bit guest (`HVC #0` or a trapped `SMC #0`): function ID in r0,
/// arguments r1-r7, results r0-r3. Only SMC32 calls exist for it; an SMC64 ID is unknown.
fn smccc(dom: &Domain, frame: &mut TrapFrame) {
    let fid = frame.r[0];
    // PSCI CPU_ON / AFFINITY_INFO for dom0 with several vCPUs (SMC32: CPU_ON starts its vCPU on
    // dom0's stage 2, this CPU handling a trap from one of dom0's vCPUs).
    if fid & 0x4000_0000 == 0 {
        let x = [frame.r[0], frame.r[1], frame.r[2], frame.r[3]].map(u64::from);
        let stage2 = || (super::regs::Vttbr::read(), u64::from(super::regs::Vtcr::read()));
        if let Some(r0) = hypercall::smccc::psci_smp(&crate::domain::vcpu::CPUS, &super::Hw, dom.id, x, stage2) {
            frame.r[0] = r0 as u32;
            return;
        }
    }
    let ret = if fid & 0x4000_0000 != 0 {
        [u64::from(guest_abi::smccc::SMCCC_RET_NOT_SUPPORTED as u32), 0, 0, 0]
    } else {
        let a = |i: usize| u64::from(frame.r[i]);
        hypercall::smccc::handle(dom, u64::from(fid), [a(1), a(2), a(3), a(4), a(5), a(6), a(7)])
    };
    for (r, v) in frame.r.iter_mut().zip(ret) {
        *r = v as u32;
    }
}

fn inject_undef(frame: &mut TrapFrame, lr: u32) {
    guest::inject(frame, Exception::Undef, lr);
}

/// A stage-2 fault: emulate the access if a device of the domain covers the IPA, retry if the
/// page is mapped after all (another CPU's p2m change), else inject an abort.
fn guest_abort(dom: &Domain, frame: &mut TrapFrame, class: u32, iss: u32, len: u32) {
    let is_data = class == ec::DABT_LOW;
    let far = if is_data { Hdfar::read() } else { Hifar::read() };
    let ipa = (u64::from(Hpfar::read() & 0xffff_fff0) << 8) | u64::from(far & 0xfff);
    let write = iss & (1 << 6) != 0;
    if is_data && emulate_mmio(dom, frame, ipa, iss, len) {
        return;
    }
    let fault = Stage2Fault::from_iss(ipa, u64::from(iss), !is_data);
    let now = super::regs::counter();
    let gap = super::regs::counter_freq() / 1000;
    let resolution = match S2_RETRY.get(percpu::this_cpu()) {
        Some(slot) => fault::resolve(dom.p2m.read().as_ref(), &DirectMem, fault, &mut slot.lock(), now, gap),
        None => Resolution::Abort,
    };
    match resolution {
        Resolution::Retry => {
            S2_FAULTS_RESOLVED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Resolution::AbortStuck => {
            log!("d{}: stage-2 fault on IPA {ipa:#x} (PC {:#x}) repeats although the page is mapped: abort injected", dom.id, frame.elr)
        }
        Resolution::Abort => {}
    }
    if dom.should_log_fault() {
        log!(
            "d{}: {} {} IPA {ipa:#x} (VA {far:#x}, PC {:#x}): not owned, abort injected",
            dom.id,
            if is_data { "data abort" } else { "prefetch abort" },
            if !is_data { "fetching" } else if write { "writing" } else { "reading" },
            frame.elr
        );
    }
    let long = Ttbcr::read() & (1 << 31) != 0;
    let fsr = guest::abort_fsr(long, is_data && write);
    let at = frame.elr;
    // SAFETY: the guest's own fault status and address registers, set as the abort defines them.
    unsafe {
        if is_data {
            core::arch::asm!("mcr p15, 0, {f}, c5, c0, 0", "mcr p15, 0, {a}, c6, c0, 0", f = in(reg) fsr, a = in(reg) far);
        } else {
            core::arch::asm!("mcr p15, 0, {f}, c5, c0, 1", "mcr p15, 0, {a}, c6, c0, 2", f = in(reg) fsr, a = in(reg) far);
        }
    }
    if is_data {
        guest::inject(frame, Exception::DataAbort, at.wrapping_add(8));
    } else {
        guest::inject(frame, Exception::PrefetchAbort, at.wrapping_add(4));
    }
}

/// Emulate a trapped load/store on an emulated device. False when no device covers `ipa`
/// or the access cannot be emulated (no valid syndrome, a banked register): the caller
/// injects an abort. `len` is the trapped instruction's size (HSR.IL), skipped once done.
fn emulate_mmio(dom: &Domain, frame: &mut TrapFrame, ipa: u64, iss: u32, len: u32) -> bool {
    let Some((mut dev, offset)) = dom.mmio.find(ipa) else { return false };
    let isv = iss & (1 << 24) != 0;
    if !isv || iss & (1 << 7) != 0 {
        return false;
    }
    let size = 1u8 << ((iss >> 22) & 3);
    let sign_extend = iss & (1 << 21) != 0;
    let reg = ((iss >> 16) & 0xf) as usize;
    let write = iss & (1 << 6) != 0;
    // r0-r12 are in the frame (r8-r12 only outside FIQ mode, which banks its own); r13/r14
    // are the guest mode's banked ones; the PC is not a transfer register here.
    let fiq = frame.spsr & 0x1f == guest::mode::FIQ;
    let current = match reg {
        0..=7 => frame.r[reg],
        8..=12 if !fiq => frame.r[reg],
        13 | 14 => match guest::read_banked(frame, reg) {
            Some(v) => v,
            None => return false,
        },
        _ => return false,
    };
    let value = u64::from(current) & if size == 4 { 0xffff_ffff } else { (1u64 << (size * 8)) - 1 };
    match dev.access(percpu::current_vcpu() as usize, MmioAccess { offset, size, write, value }) {
        MmioResult::Done(v) => {
            if !write {
                let bits = u32::from(size) * 8;
                let mut v = (v as u32) & if bits == 32 { u32::MAX } else { (1u32 << bits) - 1 };
                if sign_extend && bits < 32 && v & (1 << (bits - 1)) != 0 {
                    v |= !((1u32 << bits) - 1);
                }
                if reg <= 12 {
                    frame.r[reg] = v;
                } else {
                    guest::write_banked(frame, reg, v);
                }
            }
            frame.elr = frame.elr.wrapping_add(len);
            true
        }
        MmioResult::Abort => false,
    }
}

/// Stop this CPU for good (its domain shut down): PSCI CPU_OFF, or wait forever.
fn park_this_cpu() -> ! {
    percpu::assign(percpu::this_cpu(), percpu::NO_DOMAIN, 0);
    let _ = psci::call(psci::CPU_OFF, 0, 0, 0);
    super::regs::halt()
}

/// A physical IRQ or FIQ taken while a guest ran: the hypervisor's PPIs, a kick, or a
/// passed-through SPI (irq.rs).
#[no_mangle]
extern "C" fn xenith_trap_guest_irq(frame: &mut TrapFrame) {
    TRAPS.fetch_add(1, Ordering::Relaxed);
    super::irq::irq_from_guest(frame);
}

/// An exception taken in HYP mode itself: a hypervisor bug. Report everything and stop.
#[no_mangle]
extern "C" fn xenith_trap_hyp(frame: &mut TrapFrame, kind: u32) -> ! {
    let kinds = ["reset", "undefined instruction", "HVC in HYP mode", "prefetch abort", "data abort"];
    log!(
        "HYPERVISOR BUG: {} in HYP mode: HSR {:#x} ELR {:#x} SPSR {:#x} HDFAR {:#x} HIFAR {:#x}",
        kinds.get(kind as usize).copied().unwrap_or("?"),
        Hsr::read(),
        frame.elr,
        frame.spsr,
        Hdfar::read(),
        Hifar::read()
    );
    for (i, pair) in frame.r.chunks(2).enumerate() {
        match pair {
            [a, b] => log!("  r{:<2} {a:#010x}  r{:<2} {b:#010x}", 2 * i, 2 * i + 1),
            [a] => log!("  r{:<2} {a:#010x}  lr  {:#010x}", 2 * i, frame.lr_usr),
            _ => {}
        }
    }
    psci::system_off();
}

/// Install the domain table's first entry and the frame pool (start.rs).
pub(super) fn install(dom: Domain, frames: RegionAllocator) -> Result<(), alloc::string::String> {
    *FRAMES.lock() = frames;
    DOMAINS.insert(dom).map(|_| ()).map_err(|d| alloc::format!("domain {} exists already", d.id))
}
