//! Secondary CPUs: one vCPU per physical CPU (the placement and dom0's vCPU power states are
//! `domain::vcpu`'s). A guest's PSCI CPU_ON (`hypercall::smccc::psci_smp`) powers a physical
//! CPU on through the firmware here; it starts in
//! `xenith_secondary_entry` with the boot CPU's EL2 translation settings, brings up its GIC
//! redistributor and CPU interface, and enters the guest where the guest asked.

use super::entry::{Stack, TrapFrame, STACK_SIZE};
use super::guest;
use super::inject::SPSR_EL1H_MASKED;
use super::psci;
use crate::{log, sysreg};
use alloc::string::String;
use core::arch::global_asm;
use super::percpu::{assign, this_cpu, MAX_CPUS, NO_DOMAIN};
use crate::domain::vcpu::CPUS;
use crate::domain::DomId;

/// What a secondary CPU needs before its MMU is on (read with caches off: cleaned to PoC).
#[repr(C)]
struct StartBlock {
    ttbr0: u64,
    tcr: u64,
    mair: u64,
    sctlr: u64,
    vbar: u64,
    stack_top: u64,
    vttbr: u64,
    vtcr: u64,
    entry: u64,
    context: u64,
    cpu: u64,
    /// The domain and vCPU this CPU runs.
    domain: u64,
    vcpu: u64,
}

const START_ZERO: StartBlock =
    StartBlock { ttbr0: 0, tcr: 0, mair: 0, sctlr: 0, vbar: 0, stack_top: 0, vttbr: 0, vtcr: 0, entry: 0, context: 0, cpu: 0, domain: 0, vcpu: 0 };
static mut START: [StartBlock; MAX_CPUS] = [START_ZERO; MAX_CPUS];
/// Each secondary vCPU's first register state.
static mut ENTRY: [TrapFrame; MAX_CPUS] = [TrapFrame::ZERO; MAX_CPUS];
/// What a secondary CPU runs once it is up, when vCPUs share CPUs (the scheduler, which sits
/// above this file, registers it: `set_scheduled_entry`); without it the CPU enters the vCPU
/// its start block names.
static SCHEDULED_ENTRY: crate::sync::Once<fn(usize) -> !> = crate::sync::Once::new();

/// Register the scheduler's entry for secondary CPUs (once, at boot, before any is started).
pub fn set_scheduled_entry(run: fn(usize) -> !) {
    SCHEDULED_ENTRY.call_once(|| run);
}

/// EL2 stacks of CPUs 1.. (CPU 0 uses the boot stack).
static mut STACKS: [Stack; MAX_CPUS - 1] = [const { Stack([0; STACK_SIZE]) }; MAX_CPUS - 1];

global_asm!(
    r#"
    .section .text, "ax"
    .balign 4
    .global xenith_secondary_entry
xenith_secondary_entry:
    // From firmware (PSCI CPU_ON): EL2, MMU and caches off, x0 = this CPU's StartBlock.
    msr     daifset, #0xf
    mov     x19, x0
    ldr     x1, [x19, #0]
    msr     ttbr0_el2, x1
    ldr     x1, [x19, #8]
    msr     tcr_el2, x1
    ldr     x1, [x19, #16]
    msr     mair_el2, x1
    isb
    tlbi    alle2
    dsb     sy
    isb
    ldr     x1, [x19, #32]
    msr     vbar_el2, x1
    ldr     x1, [x19, #40]
    mov     sp, x1
    ldr     x1, [x19, #24]
    msr     sctlr_el2, x1
    isb
    mov     x0, x19
    bl      xenith_secondary_main
1:  wfe
    b       1b
"#
);

extern "C" {
    fn xenith_secondary_entry();
    fn xenith_enter_guest(frame: *const TrapFrame, stack_top: u64) -> !;
}

/// dom0 runs `n` vCPUs (the boot plan bounded it by the host's CPUs and [`MAX_CPUS`]), vCPU n
/// on the CPU of the host DT's n-th /cpus entry; vCPU 0 runs already. Returns the count.
pub fn setup_dom0(host_cpus: &[u64], n: usize) -> usize {
    let n = CPUS.setup_dom0(host_cpus, n);
    assign(this_cpu(), 0, 0);
    n
}

/// Power physical CPU `cpu` (MPIDR `mpidr`) on through the firmware to run vCPU `vcpu` of
/// `domain` with stage 2 `vttbr`/`vtcr`, entering EL1 at `entry` with x0 = `context`.
#[allow(clippy::too_many_arguments)]
pub fn start_cpu(cpu: usize, mpidr: u64, domain: DomId, vcpu: u32, vttbr: u64, vtcr: u64, entry: u64, context: u64) -> Result<(), String> {
    if cpu >= MAX_CPUS {
        return Err(alloc::format!("CPU {cpu} cannot be started (CPUs 1..{MAX_CPUS} can)"));
    }
    let start = crate::contract::CpuStart { cpu, mpidr, domain, vcpu, vttbr, vtcr, entry, context };
    if cpu == 0 {
        return Err(alloc::format!("CPU {cpu} cannot be started (CPUs 1..{MAX_CPUS} can)"));
    }
    if domain != 0 {
        CPUS.give_to_domu(cpu, domain, vcpu);
    }
    power_on(cpu, &start)
}

/// Power physical CPU `s.cpu` on through the firmware; it enters `s`'s vCPU (under
/// `sched=null`) or what the scheduler picks.
pub(super) fn power_on(cpu: usize, s: &crate::contract::CpuStart) -> Result<(), String> {
    if cpu == 0 || cpu >= MAX_CPUS {
        return Err(alloc::format!("CPU {cpu} cannot be started (CPUs 1..{MAX_CPUS} can)"));
    }
    let (mpidr, domain, vcpu, vttbr, vtcr, entry, context) = (s.mpidr, s.domain, s.vcpu, s.vttbr, s.vtcr, s.entry, s.context);
    let stacks = core::ptr::addr_of!(STACKS) as u64;
    let fill = StartBlock {
        ttbr0: sysreg!(read TTBR0_EL2),
        tcr: sysreg!(read TCR_EL2),
        mair: sysreg!(read MAIR_EL2),
        sctlr: sysreg!(read SCTLR_EL2),
        vbar: sysreg!(read VBAR_EL2),
        stack_top: stacks + (cpu as u64) * STACK_SIZE as u64, // top of STACKS[cpu - 1]
        vttbr,
        vtcr,
        entry,
        context,
        cpu: cpu as u64,
        domain: u64::from(domain),
        vcpu: u64::from(vcpu),
    };
    // SAFETY: START[cpu] is only written while CPU `cpu` is off: for dom0 vCPUs under the
    // OFF -> ON_PENDING compare-exchange (`Cpus::cpu_on`), for a domU once at boot, under
    // `sched=credit` under the CPU's off -> starting compare-exchange; CPU `cpu` reads it after
    // it starts.
    let block = unsafe {
        let b = &mut (*core::ptr::addr_of_mut!(START))[cpu];
        *b = fill;
        b as *const StartBlock as u64
    };
    super::mem::clean_dcache_range(block, core::mem::size_of::<StartBlock>() as u64);
    match psci::call(0xc400_0003, mpidr, xenith_secondary_entry as *const () as u64, block) {
        Some(0) => Ok(()),
        other => Err(alloc::format!("firmware CPU_ON of CPU {mpidr:#x} failed ({other:?})")),
    }
}

/// Stop this CPU for good (its domain shut down, or under `sched=credit` the scheduler has
/// nothing more for it): PSCI CPU_OFF, or wait forever.
pub fn park_this_cpu() -> ! {
    super::vtimer::stop();
    CPUS.release(this_cpu());
    assign(this_cpu(), NO_DOMAIN, 0);
    let _ = psci::call(0x8400_0002, 0, 0, 0);
    super::regs::halt()
}

/// Enter the guest with `frame` on this CPU's EL2 stack (abandoning what is on it).
pub(super) fn enter_guest_here(frame: &TrapFrame) -> ! {
    let cpu = this_cpu();
    let top = if cpu == 0 {
        core::ptr::addr_of!(super::entry::BOOT_STACK) as u64 + STACK_SIZE as u64
    } else {
        core::ptr::addr_of!(STACKS) as u64 + (cpu as u64) * STACK_SIZE as u64
    };
    // SAFETY: the frame is copied to the top of this CPU's own EL2 stack, which nothing on it
    // is needed any more; the vCPU's EL1/EL2 registers were restored by the caller.
    unsafe { xenith_enter_guest(frame, top) }
}

#[no_mangle]
extern "C" fn xenith_secondary_main(block: &StartBlock) -> ! {
    let cpu = block.cpu as usize;
    let (domain, vcpu) = (block.domain as DomId, block.vcpu as u32);
    let dom0_vcpu = (domain == 0).then_some(vcpu as usize);
    assign(cpu, NO_DOMAIN, vcpu);
    if let Err(e) = super::gic::init_this_cpu() {
        log!("CPU {cpu}: GIC: {e}: parking it");
        if let Some(v) = dom0_vcpu {
            CPUS.failed(v);
        }
        super::regs::halt();
    }
    guest::configure(block.vttbr, block.vtcr, u64::from(vcpu));
    super::spectre::cpu_init();
    if let Some(run) = SCHEDULED_ENTRY.get() {
        run(cpu);
    }
    assign(cpu, domain, vcpu);
    if let Some(v) = dom0_vcpu {
        CPUS.started(v);
    }
    log!("d{domain}: vCPU {vcpu} up on CPU {cpu}, entering at {:#x}", block.entry);
    // SAFETY: ENTRY[cpu] belongs to this CPU (kept off its stack, which guest entry reuses);
    // EL1/EL2 state was programmed above.
    unsafe {
        let f = &mut (*core::ptr::addr_of_mut!(ENTRY))[cpu];
        *f = TrapFrame::ZERO;
        f.x[0] = block.context;
        f.elr = block.entry;
        f.spsr = SPSR_EL1H_MASKED;
        xenith_enter_guest(f, block.stack_top)
    }
}
