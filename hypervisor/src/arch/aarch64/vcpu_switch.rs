//! Sharing physical CPUs among vCPUs (`sched=credit`): a vCPU's whole state saved and
//! restored when its CPU switches vCPU (its GIC virtual interface: ICH_* system registers on a
//! GICv3 host, the GICH block on a GICv2 one), the CPU idling at EL2 when nothing is runnable, WFI and
//! WFE trapped while a CPU has more than one vCPU, and the hypervisor timer (CNTHP, PPI 26) as
//! the scheduler's tick and the deadline of blocked vCPUs' timers. What runs where is
//! `crate::sched`'s decision; this file carries it out.
//!
//! Switches happen only on the paths that saved the whole trap frame (an IRQ exit, a trapped
//! WFI/WFE) or that abandon the running vCPU (it stopped): the frame on the EL2 stack is the
//! outgoing vCPU's, saved into its context, and the incoming vCPU's is loaded in its place, so
//! the usual return path enters it. Under `sched=null` none of this runs: every vCPU has its
//! own CPU and its state stays in the registers.

use super::entry::TrapFrame;
use super::regs::{counter, counter_freq, isb};
use super::percpu::{self, this_cpu, MAX_CPUS, NO_DOMAIN};
use super::smp;
use crate::contract::CpuStart;
use crate::irq::gicv2::VirtState;
use crate::irq::vgic::ListRegisters;
use crate::sched::{Decision, SchedPolicy, VcpuRef, MAX_SCHED_VCPUS, SCHED};
use crate::sync::SpinMutex;
use crate::sysreg;
use alloc::string::String;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

/// HCR_EL2.TWI and TWE: trap WFI and WFE.
const HCR_TWX: u64 = (1 << 13) | (1 << 14);

/// vCPU switches (a CPU going idle counts as one), printed when dom0 stops.
static SWITCHES: AtomicU64 = AtomicU64::new(0);
/// Per CPU: 0 off, 1 being powered on, 2 up (scheduling).
static CPU_UP: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];

/// Per CPU: its vCPU asked to yield (SCHEDOP_yield); the scheduling point the hypervisor
/// timer brings once the hypercall returns is a yield.
static YIELD: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// FP/SIMD registers: V0-V31, FPSR, FPCR.
#[repr(C, align(16))]
#[derive(Clone, Copy)]
struct FpRegs {
    v: [u128; 32],
    fpsr: u64,
    fpcr: u64,
}

/// A vCPU's state while it is not on a CPU.
#[derive(Clone, Copy)]
struct Context {
    frame: TrapFrame,
    fp: FpRegs,
    /// EL1 system registers, in the order `save_el1`/`restore_el1` use.
    el1: [u64; EL1_REGS],
    vmpidr: u64,
    vttbr: u64,
    vtcr: u64,
    /// HCR_EL2 without TWI/TWE (those follow the CPU's sharing).
    hcr: u64,
    cntvoff: u64,
    cntv_ctl: u64,
    cntv_cval: u64,
    ptimer_ctl: u64,
    ptimer_cval: u64,
    /// GICv3 hosts: ICH_LR<n>_EL2, ICH_HCR_EL2, ICH_VMCR_EL2, ICH_AP{0,1}R<n>_EL2.
    lrs: [u64; crate::irq::vgic::MAX_LRS],
    ich_hcr: u64,
    ich_vmcr: u64,
    ap0r: [u64; 4],
    ap1r: [u64; 4],
    /// GICv2 hosts: the GICH virtual interface.
    gich: VirtState,
    lrs_live: bool,
    seen_writes: u64,
    pauth: super::cpufeat::PauthKeys,
}

const EL1_REGS: usize = 24;

const CONTEXT_ZERO: Context = Context {
    frame: TrapFrame::ZERO,
    fp: FpRegs { v: [0; 32], fpsr: 0, fpcr: 0 },
    el1: [0; EL1_REGS],
    vmpidr: 0,
    vttbr: 0,
    vtcr: 0,
    hcr: 0,
    cntvoff: 0,
    cntv_ctl: 0,
    cntv_cval: 0,
    ptimer_ctl: 0,
    ptimer_cval: 0,
    lrs: [0; crate::irq::vgic::MAX_LRS],
    ich_hcr: 0,
    ich_vmcr: 0,
    ap0r: [0; 4],
    ap1r: [0; 4],
    gich: VirtState::FRESH,
    lrs_live: false,
    seen_writes: 0,
    pauth: super::cpufeat::PauthKeys([0; 10]),
};

/// Each scheduler slot's saved context (`Scheduler::slot`).
static CONTEXTS: [SpinMutex<Context>; MAX_SCHED_VCPUS] = [const { SpinMutex::new(CONTEXT_ZERO) }; MAX_SCHED_VCPUS];

/// The shutdown report's line (`sched=credit` only).
pub fn report() -> Option<String> {
    enabled().then(|| alloc::format!("vCPU switches (sched=credit): {}", SWITCHES.load(Ordering::Relaxed)))
}

/// Whether vCPUs share CPUs (`sched=credit`).
#[inline]
pub fn enabled() -> bool {
    percpu::shares_cpus()
}

/// At boot, on the boot CPU: the scheduler's policy for `cpus` CPUs. Returns the policy in
/// force.
pub fn init(policy: SchedPolicy, cpus: usize) -> SchedPolicy {
    SCHED.configure(policy, counter_freq(), cpus, false);
    if policy == SchedPolicy::Credit {
        percpu::set_shares_cpus();
        // The layers below reach the scheduler through these.
        super::vgic_glue::set_wake(|dom, vcpu| wake(VcpuRef::new(dom, vcpu as u32)));
        smp::set_scheduled_entry(cpu_up);
    }
    CPU_UP[0].store(2, Ordering::Relaxed);
    policy
}

/// dom0's vCPU 0 runs on the boot CPU (its registers were set up for the first entry): tell
/// the scheduler, and set this CPU's WFI traps and tick.
pub fn boot_vcpu_running() {
    let now = counter();
    SCHED.start(VcpuRef::new(0, 0), now);
    SCHED.schedule(0, now);
    after_point(this_cpu());
}

/// Start vCPU `s.vcpu` of `s.domain` (placed on `s.cpu` by the scheduler): its first
/// registers, runnable, and its CPU powered on if it is off, else kicked.
#[cold]
#[inline(never)]
pub fn start_vcpu(s: &CpuStart) -> Result<(), String> {
    let v = VcpuRef::new(s.domain, s.vcpu);
    let slot = SCHED.slot(v).ok_or_else(|| alloc::format!("d{}v{}: not placed on a CPU", s.domain, s.vcpu))?;
    {
        let mut c = CONTEXTS[slot].lock();
        *c = CONTEXT_ZERO;
        c.frame.x[0] = s.context;
        c.frame.elr = s.entry;
        c.frame.spsr = super::inject::SPSR_EL1H_MASKED;
        c.el1[0] = super::guest::SCTLR_EL1_RESET;
        c.vmpidr = (1 << 31) | u64::from(s.vcpu);
        c.vttbr = s.vttbr;
        c.vtcr = s.vtcr;
        c.hcr = super::guest::HCR_GUEST | super::cpufeat::hcr_bits();
        c.ich_hcr = 1; // En
        c.gich = VirtState::FRESH;
    }
    let cpu = SCHED.start(v, counter()).ok_or_else(|| alloc::format!("d{}v{}: already started", s.domain, s.vcpu))?;
    if s.domain == 0 {
        crate::domain::vcpu::CPUS.started(s.vcpu as usize);
    }
    match CPU_UP.get(cpu).map(|u| u.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)) {
        Some(Ok(_)) => {
            if let Err(e) = smp::power_on(cpu, s) {
                CPU_UP[cpu].store(0, Ordering::Release);
                SCHED.stop(v);
                return Err(e);
            }
        }
        _ => kick(cpu),
    }
    Ok(())
}

/// Make CPU `cpu` reach a scheduling point: the kick SGI, or on this CPU the hypervisor
/// timer due at once.
pub fn kick(cpu: usize) {
    if cpu == this_cpu() {
        super::vtimer::set_sched_event(Some(0));
    } else {
        super::gic::kick(cpu);
    }
}

/// The running vCPU yields (SCHEDOP_yield): a scheduling point once the hypercall returns
/// (the hypercall path does not save the registers a switch needs), at which another
/// runnable vCPU of this CPU runs first. Nothing under `null`.
pub fn request_yield() {
    if enabled() {
        YIELD[this_cpu() % MAX_CPUS].store(true, Ordering::Relaxed);
        super::vtimer::set_sched_event(Some(0));
    }
}

/// An interrupt for `v`: wake it if it waits; the CPU to kick (where it runs or waits).
#[cold]
#[inline(never)]
pub fn wake(v: VcpuRef) -> Option<usize> {
    let cpu = SCHED.wake(v, counter())?;
    if cpu == this_cpu() && SCHED.current(cpu) != Some(v) {
        // It waits on this CPU: a scheduling point once this trap returns.
        super::vtimer::set_sched_event(Some(0));
    }
    Some(cpu)
}

/// A secondary CPU powered on for the scheduler: from now on it runs what the scheduler picks.
pub fn cpu_up(cpu: usize) -> ! {
    if let Some(u) = CPU_UP.get(cpu) {
        u.store(2, Ordering::Release);
    }
    run_next(cpu)
}

/// Why a scheduling point is reached.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// An interrupt (the tick, a kick, a timer deadline).
    Interrupt,
    /// The vCPU executed WFI.
    Wfi,
    /// The vCPU executed WFE.
    Wfe,
}

/// A scheduling point on this CPU with the running vCPU's registers in `frame` (a trap path
/// that saved them all): wake the vCPUs whose timers came due, let the scheduler decide, and
/// switch `frame` to the vCPU that runs next (idling here until there is one).
#[cold]
#[inline(never)]
pub fn reschedule(frame: &mut TrapFrame, why: Why) {
    let cpu = this_cpu();
    // A vCPU of a domain being destroyed, or of a domain that shut down (another of its
    // vCPUs asked), leaves for good; one of a domU the toolstack paused (made by it or built
    // at boot) leaves until the unpause queues it again (its registers saved).
    let (dom, vcpu) = (percpu::current_domain(), percpu::current_vcpu());
    if let Some(d) = crate::domain::registry::DOMAINS.get(dom).filter(|d| !d.is_hardware) {
        if d.dying() || d.shutdown().is_some() {
            stop_current();
        }
        if d.paused() {
            return pause_current(cpu, frame, d, VcpuRef::new(dom, vcpu));
        }
    }
    let now = counter();
    expire(cpu, now);
    let d = match why {
        Why::Interrupt if YIELD[cpu % MAX_CPUS].swap(false, Ordering::Relaxed) => SCHED.yield_now(cpu, now),
        Why::Interrupt => SCHED.schedule(cpu, now),
        Why::Wfe => SCHED.yield_now(cpu, now),
        Why::Wfi => {
            // An interrupt the vCPU could take: WFI completes at once.
            let vcpu = percpu::current_vcpu() as usize;
            if super::vgic_glue::current_vgic().is_some_and(|g| g.lock().has_deliverable(vcpu)) {
                return;
            }
            SCHED.block(cpu, now, own_deadline())
        }
    };
    carry_out(cpu, frame, d);
}

/// The running vCPU `v` of domU `d`, which the toolstack paused, leaves `cpu` with its registers
/// saved (from `frame`); the CPU runs what the scheduler picks next. Should the unpause have
/// come in between, the vCPU goes straight back in its run queue.
fn pause_current(cpu: usize, frame: &mut TrapFrame, d: &crate::domain::Domain, v: VcpuRef) {
    if let Some(slot) = SCHED.slot(v) {
        save(slot, frame);
    }
    SCHED.stop(v);
    let now = counter();
    if !d.paused() && !d.dying() {
        SCHED.start(v, now);
    }
    SWITCHES.fetch_add(1, Ordering::Relaxed);
    expire(cpu, now);
    let next = match SCHED.schedule(cpu, now).next {
        Some(n) => n,
        None => idle(cpu),
    };
    if let Some(slot) = SCHED.slot(next) {
        restore(slot, next, frame);
    }
    after_point(cpu);
}

/// The running vCPU's timers' deadline (physical counter), from the registers.
fn own_deadline() -> Option<u64> {
    let (pctl, pcval) = super::vtimer::peek_ptimer();
    let (ctl, cval, offset) = (sysreg!(read CNTV_CTL_EL0), sysreg!(read CNTV_CVAL_EL0), sysreg!(read CNTVOFF_EL2));
    super::vtimer::SavedTimers { ctl, cval, offset, pctl, pcval }.deadline()
}

/// Raise the timer interrupts of the vCPUs blocked on `cpu` whose deadline passed (their
/// wakeups make them runnable).
fn expire(cpu: usize, now: u64) {
    while let Some(v) = SCHED.take_expired(cpu, now) {
        let Some(slot) = SCHED.slot(v) else { continue };
        let c = *CONTEXTS[slot].lock();
        let mut t = super::vtimer::SavedTimers { ctl: c.cntv_ctl, cval: c.cntv_cval, offset: c.cntvoff, pctl: c.ptimer_ctl, pcval: c.ptimer_cval };
        // Raised with no lock held (the injection takes the vGIC's and the scheduler's).
        t.expire(v.domain, v.vcpu as usize, now);
        // Its saved virtual timer masked if it came due (it is blocked: nothing else wrote it).
        CONTEXTS[slot].lock().cntv_ctl = t.ctl;
        // A deadline that passed without a timer due (the guest changed it): wake it anyway.
        SCHED.wake(v, now);
    }
}

fn carry_out(cpu: usize, frame: &mut TrapFrame, d: Decision) {
    if d.switches() {
        SWITCHES.fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = d.prev.and_then(|p| SCHED.slot(p)) {
            save(slot, frame);
        }
        let next = match d.next {
            Some(n) => n,
            None => idle(cpu),
        };
        if let Some(slot) = SCHED.slot(next) {
            restore(slot, next, frame);
        }
    }
    after_point(cpu);
}

/// After a scheduling point: WFI/WFE trapped while the CPU is shared, and the next tick or
/// deadline armed.
fn after_point(cpu: usize) {
    let hcr = sysreg!(read HCR_EL2) & !HCR_TWX;
    let twx = if SCHED.shares_cpu(cpu) { HCR_TWX } else { 0 };
    sysreg!(write HCR_EL2, hcr | twx);
    isb();
    super::vtimer::set_sched_event(SCHED.next_event(cpu, counter()));
}

/// Nothing is runnable on `cpu`: wait at EL2 (interrupts masked; WFI wakes on a pending one)
/// and take interrupts until the scheduler has a vCPU for it.
fn idle(cpu: usize) -> VcpuRef {
    percpu::assign(cpu, NO_DOMAIN, 0);
    loop {
        let now = counter();
        expire(cpu, now);
        if let Some(n) = SCHED.schedule(cpu, now).next {
            return n;
        }
        super::vtimer::set_sched_event(SCHED.next_event(cpu, now));
        // SAFETY: waits for an interrupt; no memory or register effects.
        unsafe { core::arch::asm!("dsb sy", "wfi", options(nostack, preserves_flags)) };
        let _ = super::irq::take_physical_irqs();
    }
}

/// Run what the scheduler picks on `cpu`, abandoning the current EL2 stack (a CPU just up, or
/// whose vCPU stopped).
pub fn run_next(cpu: usize) -> ! {
    let now = counter();
    let d = SCHED.schedule(cpu, now);
    let next = match d.next {
        Some(n) => n,
        None => idle(cpu),
    };
    // SAFETY: NEXT_FRAME[cpu] belongs to this CPU; it is kept off the stack that guest entry
    // reuses.
    let frame = unsafe { &mut (*core::ptr::addr_of_mut!(NEXT_FRAME))[cpu % MAX_CPUS] };
    *frame = TrapFrame::ZERO;
    if let Some(slot) = SCHED.slot(next) {
        restore(slot, next, frame);
    }
    after_point(cpu);
    super::vgic_glue::flush_if_changed();
    smp::enter_guest_here(frame)
}

/// Per CPU, the registers `run_next` enters a vCPU with.
static mut NEXT_FRAME: [TrapFrame; MAX_CPUS] = [TrapFrame::ZERO; MAX_CPUS];

/// This CPU's vCPU stops for good (its domain shut down): under `sched=credit` the CPU runs
/// another vCPU, else it is parked.
pub fn park_this_cpu() -> ! {
    if enabled() {
        stop_current();
    }
    smp::park_this_cpu()
}

/// The running vCPU stops for good (its domain stopped, or it turned itself off): the CPU
/// runs something else.
#[cold]
#[inline(never)]
pub fn stop_current() -> ! {
    let cpu = this_cpu();
    let v = VcpuRef::new(percpu::current_domain(), percpu::current_vcpu());
    // Its list registers and timers are left behind: clear them for the next vCPU.
    let _ = super::vgic_glue::take_cpu_state();
    match super::gic_v2::get() {
        Some(g) => {
            let mut dropped = VirtState::FRESH;
            g.save_virtual(&mut dropped);
        }
        None => {
            let mut lrs = super::gic::HwLrs::new();
            for i in 0..lrs.count() {
                lrs.write(i, 0);
            }
        }
    }
    super::vtimer::save();
    super::vtimer::take_ptimer();
    SCHED.stop(v);
    run_next(cpu)
}

fn save(slot: usize, frame: &TrapFrame) {
    let mut c = CONTEXTS[slot].lock();
    c.frame = *frame;
    save_el1(&mut c.el1);
    // SAFETY: `c.fp` is a valid, 16-aligned FpRegs; the hypervisor itself never uses FP/SIMD
    // (softfloat), so the registers hold the guest's.
    unsafe { save_fp(&mut c.fp) };
    c.vmpidr = sysreg!(read VMPIDR_EL2);
    c.vttbr = sysreg!(read VTTBR_EL2);
    c.vtcr = sysreg!(read VTCR_EL2);
    c.hcr = sysreg!(read HCR_EL2) & !HCR_TWX;
    let t = super::vtimer::save();
    (c.cntv_ctl, c.cntv_cval, c.cntvoff) = (t.ctl, t.cval, t.offset);
    (c.ptimer_ctl, c.ptimer_cval) = super::vtimer::take_ptimer();
    match super::gic_v2::get() {
        Some(g) => g.save_virtual(&mut c.gich),
        None => save_ich(&mut c),
    }
    (c.lrs_live, c.seen_writes) = super::vgic_glue::take_cpu_state();
    if c.hcr & (1 << 41) != 0 {
        c.pauth = super::cpufeat::PauthKeys::save();
    }
    isb();
}

fn restore(slot: usize, v: VcpuRef, frame: &mut TrapFrame) {
    let c = *CONTEXTS[slot].lock();
    percpu::assign(this_cpu(), v.domain, v.vcpu);
    sysreg!(write VTCR_EL2, c.vtcr);
    sysreg!(write VTTBR_EL2, c.vttbr);
    sysreg!(write VMPIDR_EL2, c.vmpidr);
    sysreg!(write HCR_EL2, c.hcr);
    restore_el1(&c.el1);
    // SAFETY: as in `save`.
    unsafe { restore_fp(&c.fp) };
    if c.hcr & (1 << 41) != 0 {
        c.pauth.restore();
    }
    super::vtimer::restore(&super::vtimer::VtimerState { ctl: c.cntv_ctl, cval: c.cntv_cval, offset: c.cntvoff });
    super::vtimer::put_ptimer(c.ptimer_ctl, c.ptimer_cval);
    match super::gic_v2::get() {
        Some(g) => g.restore_virtual(&c.gich),
        None => restore_ich(&c),
    }
    super::vgic_glue::put_cpu_state(c.lrs_live, c.seen_writes);
    isb();
    *frame = c.frame;
}

/// Save the GICv3 virtual interface (ICH_*) into `c` and leave it empty and enabled.
fn save_ich(c: &mut Context) {
    let mut lrs = super::gic::HwLrs::new();
    for i in 0..lrs.count() {
        c.lrs[i] = lrs.read(i);
        lrs.write(i, 0);
    }
    c.ich_hcr = sysreg!(read S3_4_C12_C11_0);
    c.ich_vmcr = sysreg!(read S3_4_C12_C11_7);
    let n = aprs();
    (c.ap0r, c.ap1r) = read_aprs(n);
    write_aprs(n, &[0; 4], &[0; 4]);
    sysreg!(write S3_4_C12_C11_0, 1);
}

/// Load the GICv3 virtual interface `save_ich` saved.
fn restore_ich(c: &Context) {
    let mut lrs = super::gic::HwLrs::new();
    for i in 0..lrs.count() {
        lrs.write(i, c.lrs[i]);
    }
    write_aprs(aprs(), &c.ap0r, &c.ap1r);
    sysreg!(write S3_4_C12_C11_7, c.ich_vmcr);
    sysreg!(write S3_4_C12_C11_0, c.ich_hcr);
}

/// How many ICH_AP{0,1}R<n>_EL2 the virtual interface has (from ICH_VTR_EL2.PRIbits).
fn aprs() -> usize {
    let pri_bits = ((sysreg!(read S3_4_C12_C11_1) >> 29) & 7) + 1;
    match pri_bits {
        7 => 4,
        6 => 2,
        _ => 1,
    }
}

fn read_aprs(n: usize) -> ([u64; 4], [u64; 4]) {
    let mut a0 = [0; 4];
    let mut a1 = [0; 4];
    a0[0] = sysreg!(read S3_4_C12_C8_0);
    a1[0] = sysreg!(read S3_4_C12_C9_0);
    if n >= 2 {
        a0[1] = sysreg!(read S3_4_C12_C8_1);
        a1[1] = sysreg!(read S3_4_C12_C9_1);
    }
    if n >= 4 {
        a0[2] = sysreg!(read S3_4_C12_C8_2);
        a1[2] = sysreg!(read S3_4_C12_C9_2);
        a0[3] = sysreg!(read S3_4_C12_C8_3);
        a1[3] = sysreg!(read S3_4_C12_C9_3);
    }
    (a0, a1)
}

fn write_aprs(n: usize, a0: &[u64; 4], a1: &[u64; 4]) {
    sysreg!(write S3_4_C12_C8_0, a0[0]);
    sysreg!(write S3_4_C12_C9_0, a1[0]);
    if n >= 2 {
        sysreg!(write S3_4_C12_C8_1, a0[1]);
        sysreg!(write S3_4_C12_C9_1, a1[1]);
    }
    if n >= 4 {
        sysreg!(write S3_4_C12_C8_2, a0[2]);
        sysreg!(write S3_4_C12_C9_2, a1[2]);
        sysreg!(write S3_4_C12_C8_3, a0[3]);
        sysreg!(write S3_4_C12_C9_3, a1[3]);
    }
}

/// The EL1 (and EL0) registers a guest owns, saved and restored in this order.
macro_rules! el1_regs {
    ($m:ident) => {
        $m!(
            SCTLR_EL1, TTBR0_EL1, TTBR1_EL1, TCR_EL1, MAIR_EL1, AMAIR_EL1, VBAR_EL1, CONTEXTIDR_EL1, TPIDR_EL0, TPIDRRO_EL0,
            TPIDR_EL1, SP_EL0, SP_EL1, ELR_EL1, SPSR_EL1, ESR_EL1, FAR_EL1, AFSR0_EL1, AFSR1_EL1, CPACR_EL1, CNTKCTL_EL1,
            PAR_EL1, MDSCR_EL1, CSSELR_EL1
        )
    };
}

fn save_el1(out: &mut [u64; EL1_REGS]) {
    macro_rules! read_all {
        ($($r:ident),*) => {{
            let mut i = 0;
            $( out[i] = sysreg!(read $r); i += 1; )*
            debug_assert_eq!(i, EL1_REGS);
        }};
    }
    el1_regs!(read_all);
}

fn restore_el1(v: &[u64; EL1_REGS]) {
    macro_rules! write_all {
        ($($r:ident),*) => {{
            let mut i = 0;
            $( sysreg!(write $r, v[i]); i += 1; )*
            debug_assert_eq!(i, EL1_REGS);
        }};
    }
    el1_regs!(write_all);
}

/// The 32 Q registers as pairs at `[{p}, #32n]`, with load/store-pair instruction `$op`.
macro_rules! q_pairs {
    ($op:literal) => {
        concat!(
            $op, " q0, q1, [{p}, #0]\n", $op, " q2, q3, [{p}, #32]\n", $op, " q4, q5, [{p}, #64]\n",
            $op, " q6, q7, [{p}, #96]\n", $op, " q8, q9, [{p}, #128]\n", $op, " q10, q11, [{p}, #160]\n",
            $op, " q12, q13, [{p}, #192]\n", $op, " q14, q15, [{p}, #224]\n", $op, " q16, q17, [{p}, #256]\n",
            $op, " q18, q19, [{p}, #288]\n", $op, " q20, q21, [{p}, #320]\n", $op, " q22, q23, [{p}, #352]\n",
            $op, " q24, q25, [{p}, #384]\n", $op, " q26, q27, [{p}, #416]\n", $op, " q28, q29, [{p}, #448]\n",
            $op, " q30, q31, [{p}, #480]\n",
        )
    };
}

/// # Safety
/// `f` is valid for writes and 16-aligned.
unsafe fn save_fp(f: *mut FpRegs) {
    // SAFETY: the caller's contract; FP/SIMD is enabled at EL2 (CPTR_EL2.TFP clear).
    unsafe { core::arch::asm!(".arch_extension fp", ".arch_extension simd", q_pairs!("stp"), p = in(reg) f, options(nostack, preserves_flags)) };
    let (fpsr, fpcr) = (sysreg!(read S3_3_C4_C4_1), sysreg!(read S3_3_C4_C4_0)); // FPSR, FPCR
    // SAFETY: as above.
    unsafe {
        (*f).fpsr = fpsr;
        (*f).fpcr = fpcr;
    }
}

/// # Safety
/// `f` is valid for reads and 16-aligned.
unsafe fn restore_fp(f: *const FpRegs) {
    // SAFETY: the caller's contract; FP/SIMD is enabled at EL2 (CPTR_EL2.TFP clear).
    unsafe { core::arch::asm!(".arch_extension fp", ".arch_extension simd", q_pairs!("ldp"), p = in(reg) f, options(nostack, preserves_flags)) };
    // SAFETY: as above.
    let (fpsr, fpcr) = unsafe { ((*f).fpsr, (*f).fpcr) };
    sysreg!(write S3_3_C4_C4_1, fpsr); // FPSR
    sysreg!(write S3_3_C4_C4_0, fpcr); // FPCR
}

const _: () = assert!(core::mem::offset_of!(FpRegs, fpsr) == 512 && core::mem::offset_of!(FpRegs, fpcr) == 520);

/// A kick on a CPU a guest has to itself (sched=null): when it is the guest's destroy, its
/// CPU stops (and is released) here; when it is its pause, the vCPU waits here until the
/// unpause (`after::domu_stop`). Where vCPUs share CPUs the reschedule does both.
#[cold]
#[inline(never)]
pub(super) fn kicked() {
    let stops = |d: &&crate::domain::Domain| !d.is_hardware && (d.dying() || d.paused());
    if let Some(dom) = crate::domain::registry::DOMAINS.get(percpu::current_domain()).filter(stops) {
        if crate::hypercall::after::after_trap(&super::Hw, &crate::domain::registry::DOMAINS, dom, percpu::current_vcpu()) == crate::hypercall::after::After::Park {
            park_this_cpu();
        }
    }
}
