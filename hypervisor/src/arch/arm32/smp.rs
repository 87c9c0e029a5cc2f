//! SMP dom0 and which domain and vCPU each physical CPU runs. dom0's vCPU n runs on the CPU of
//! the host DT's n-th /cpus entry, one vCPU per CPU. A guest's PSCI CPU_ON for vCPU n powers
//! that CPU on through the firmware; it starts in HYP mode at `xenith_secondary_entry`, takes
//! the boot CPU's HYP translation settings, brings up its banked GIC state and enters the
//! guest where the guest asked.
//!
//! Each CPU keeps its own assignment in HTPIDR (nothing else uses it): bits 0-7 the CPU's
//! index, 8-15 the vCPU, 16-31 the domain.

use super::entry::{Stack, TrapFrame, STACK_SIZE};
use super::guest::{self, CPSR_SVC_MASKED};
use super::regs::{Htpidr, Hvbar, Mpidr};
use super::psci;
use crate::domain::DomId;
use crate::log;
use guest_abi::smccc::{PSCI_AFFINITY_INFO_32, PSCI_RET_ALREADY_ON, PSCI_RET_INTERNAL_FAILURE, PSCI_RET_INVALID_PARAMETERS, PSCI_RET_ON_PENDING};
use alloc::string::String;
use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// Most vCPUs (and physical CPUs) used.
pub const MAX_CPUS: usize = 4;
/// The domain of a CPU that runs no guest.
pub const NO_DOMAIN: DomId = DomId::MAX;

/// vCPU power states: running, off, powering on.
const ON: u8 = 0;
const OFF: u8 = 1;
const ON_PENDING: u8 = 2;

static STATE: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(OFF) }; MAX_CPUS];
static VCPUS: AtomicUsize = AtomicUsize::new(1);
/// Physical MPIDR of each CPU, from the host DT's /cpus (written once at boot).
static HOST_MPIDR: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// What a secondary CPU needs before its MMU is on (read with caches off: cleaned to PoC).
/// The entry code reads the first seven words; the offsets are fixed by `repr(C)`.
#[repr(C)]
struct StartBlock {
    httbr_lo: u32,
    httbr_hi: u32,
    htcr: u32,
    hmair0: u32,
    hsctlr: u32,
    hvbar: u32,
    stack_top: u32,
    cpu: u32,
    vttbr: u64,
    vtcr: u32,
    entry: u32,
    context: u32,
    domain: u32,
    vcpu: u32,
}

const START_ZERO: StartBlock = StartBlock {
    httbr_lo: 0,
    httbr_hi: 0,
    htcr: 0,
    hmair0: 0,
    hsctlr: 0,
    hvbar: 0,
    stack_top: 0,
    cpu: 0,
    vttbr: 0,
    vtcr: 0,
    entry: 0,
    context: 0,
    domain: 0,
    vcpu: 0,
};
static mut START: [StartBlock; MAX_CPUS] = [START_ZERO; MAX_CPUS];
/// Each secondary vCPU's first register state (kept off its stack, which guest entry reuses).
static mut ENTRY: [TrapFrame; MAX_CPUS] = [TrapFrame::ZERO; MAX_CPUS];
/// HYP stacks of CPUs 1.. (CPU 0 uses the boot stack).
static mut STACKS: [Stack; MAX_CPUS - 1] = [const { Stack([0; STACK_SIZE]) }; MAX_CPUS - 1];

global_asm!(
    r#"
    .syntax unified
    .arch_extension virt
    .arm
    .section .text, "ax"
    .balign 4
    .global xenith_secondary_entry
xenith_secondary_entry:
    // From firmware (PSCI CPU_ON): HYP mode, MMU and caches off, r0 = this CPU's StartBlock.
    cpsid   aif
    mov     r4, r0
    ldr     r1, [r4, #12]
    mcr     p15, 4, r1, c10, c2, 0  // HMAIR0
    mov     r1, #0
    mcr     p15, 4, r1, c10, c2, 1  // HMAIR1
    ldr     r1, [r4, #8]
    mcr     p15, 4, r1, c2, c0, 2   // HTCR
    ldr     r2, [r4, #0]
    ldr     r3, [r4, #4]
    mcrr    p15, 4, r2, r3, c2      // HTTBR
    isb
    mov     r1, #0
    mcr     p15, 4, r1, c8, c7, 0   // TLBIALLH
    mcr     p15, 0, r1, c7, c5, 0   // ICIALLU
    mcr     p15, 0, r1, c7, c5, 6   // BPIALL
    dsb     ish
    isb
    ldr     r1, [r4, #20]
    mcr     p15, 4, r1, c12, c0, 0  // HVBAR
    ldr     sp, [r4, #24]
    ldr     r1, [r4, #16]
    mcr     p15, 4, r1, c1, c0, 0   // HSCTLR
    isb
    mov     r0, r4
    bl      xenith_secondary_main
1:  wfe
    b       1b
"#
);

extern "C" {
    fn xenith_secondary_entry();
}

fn percpu() -> u32 {
    Htpidr::read()
}

/// This physical CPU's index (MPIDR Aff0: QEMU virt and the Exynos5250 number CPUs so).
#[inline]
pub fn this_cpu() -> usize {
    (percpu() & 0xff) as usize
}

/// Set on each CPU by itself before anything asks (boot, secondary entry, parking).
pub fn assign(cpu: usize, domain: DomId, vcpu: u32) {
    Htpidr::write((cpu as u32 & 0xff) | (vcpu & 0xff) << 8 | u32::from(domain) << 16);
}

/// The boot CPU, before any domain runs.
pub fn init_boot_cpu() {
    assign((Mpidr::read() & 0xff) as usize, NO_DOMAIN, 0);
}

/// The domain whose vCPU runs on this CPU (`NO_DOMAIN` if none).
#[inline]
pub fn current_domain() -> DomId {
    (percpu() >> 16) as DomId
}

/// Which of its domain's vCPUs runs on this CPU.
#[inline]
pub fn current_vcpu() -> u32 {
    (percpu() >> 8) & 0xff
}

/// dom0 runs `n` vCPUs (bounded by the host's CPUs and [`MAX_CPUS`]); vCPU 0 runs on this
/// CPU. Returns the count.
pub fn setup_dom0(host_cpus: &[u64], n: usize) -> usize {
    let n = n.min(host_cpus.len()).clamp(1, MAX_CPUS);
    for (slot, &mpidr) in HOST_MPIDR.iter().zip(host_cpus.iter()) {
        slot.store(mpidr, Ordering::Relaxed);
    }
    VCPUS.store(n, Ordering::Relaxed);
    STATE[0].store(ON, Ordering::Relaxed);
    n
}

/// Number of dom0 vCPUs.
pub fn vcpus() -> usize {
    VCPUS.load(Ordering::Relaxed)
}

/// The physical CPU that runs vCPU `vcpu` of `domain` (dom0's vCPU n on CPU n).
pub fn cpu_of(domain: DomId, vcpu: usize) -> Option<usize> {
    (domain == 0 && vcpu < vcpus()).then_some(vcpu)
}

/// An interrupt for vCPU `vcpu` of `domain`: the CPU to kick (each vCPU has its own CPU here).
pub fn wake(domain: DomId, vcpu: usize) -> Option<usize> {
    cpu_of(domain, vcpu)
}

/// PSCI calls that concern other vCPUs (CPU_ON, AFFINITY_INFO, SMC32 only from a 32-bit
/// guest) when dom0 has more than one; false leaves the call to the single-vCPU handler.
pub fn psci(frame: &mut TrapFrame) -> bool {
    if vcpus() <= 1 || current_domain() != 0 {
        return false;
    }
    let ret = match frame.r[0] {
        psci::CPU_ON => cpu_on(frame.r[1], frame.r[2], frame.r[3]),
        PSCI_AFFINITY_INFO_32 => {
            let on = |v: u32| STATE.get(v as usize).is_some_and(|s| s.load(Ordering::Acquire) != OFF);
            crate::hypercall::smccc::affinity_info(u64::from(frame.r[1]), frame.r[2], vcpus() as u32, on)
        }
        _ => return false,
    };
    frame.r[0] = ret as u32;
    true
}

fn cpu_on(target: u32, entry: u32, context: u32) -> i64 {
    // vMPIDR of vCPU n is Aff0 = n (bits 31:30 are not affinity).
    let aff = target & 0x00ff_ffff;
    let v = (aff & 0xff) as usize;
    if aff >> 8 != 0 || v >= vcpus() {
        return PSCI_RET_INVALID_PARAMETERS;
    }
    if let Err(state) = STATE[v].compare_exchange(OFF, ON_PENDING, Ordering::AcqRel, Ordering::Acquire) {
        return if state == ON { PSCI_RET_ALREADY_ON } else { PSCI_RET_ON_PENDING };
    }
    // dom0's stage 2: this CPU is handling a trap from one of dom0's vCPUs.
    let (vttbr, vtcr) = (super::regs::Vttbr::read(), super::regs::Vtcr::read());
    match start_cpu(v, 0, v as u32, vttbr, vtcr, entry, context) {
        Ok(()) => 0,
        Err(e) => {
            log!("d0: vCPU {v}: {e}");
            STATE[v].store(OFF, Ordering::Release);
            PSCI_RET_INTERNAL_FAILURE
        }
    }
}

/// Power physical CPU `cpu` on through the firmware to run vCPU `vcpu` of `domain` with stage
/// 2 `vttbr`/`vtcr`, entering PL1 (SVC) at `entry` with r0 = `context`.
pub fn start_cpu(cpu: usize, domain: DomId, vcpu: u32, vttbr: u64, vtcr: u32, entry: u32, context: u32) -> Result<(), String> {
    if cpu == 0 || cpu >= MAX_CPUS {
        return Err(alloc::format!("CPU {cpu} cannot be started (CPUs 1..{MAX_CPUS} can)"));
    }
    let (httbr, htcr, hmair0, hsctlr) = super::mmu::boot_cpu_settings();
    let stacks = core::ptr::addr_of!(STACKS) as u32;
    let fill = StartBlock {
        httbr_lo: httbr as u32,
        httbr_hi: (httbr >> 32) as u32,
        htcr,
        hmair0,
        hsctlr,
        hvbar: Hvbar::read(),
        stack_top: stacks + (cpu as u32) * STACK_SIZE as u32, // top of STACKS[cpu - 1]
        cpu: cpu as u32,
        vttbr,
        vtcr,
        entry,
        context,
        domain: u32::from(domain),
        vcpu,
    };
    // SAFETY: START[cpu] is only written while CPU `cpu` is off (under the OFF -> ON_PENDING
    // compare-exchange); CPU `cpu` reads it after it starts.
    let block = unsafe {
        let b = &mut (*core::ptr::addr_of_mut!(START))[cpu];
        *b = fill;
        b as *const StartBlock as u32
    };
    super::clean_dcache_range(u64::from(block), core::mem::size_of::<StartBlock>() as u64);
    let mpidr = HOST_MPIDR[cpu].load(Ordering::Relaxed) as u32;
    match psci::call(psci::CPU_ON, mpidr, xenith_secondary_entry as *const () as u32, block) {
        Some(0) => Ok(()),
        other => Err(alloc::format!("firmware CPU_ON of CPU {mpidr:#x} failed ({other:?})")),
    }
}

#[no_mangle]
extern "C" fn xenith_secondary_main(block: &StartBlock) -> ! {
    let cpu = block.cpu as usize;
    let (domain, vcpu) = (block.domain as DomId, block.vcpu);
    assign(cpu, NO_DOMAIN, vcpu);
    if let Err(e) = super::gic::init_this_cpu() {
        log!("CPU {cpu}: GIC: {e}: parking it");
        STATE[vcpu as usize % MAX_CPUS].store(OFF, Ordering::Release);
        super::halt();
    }
    guest::configure(block.vttbr, block.vtcr, vcpu);
    assign(cpu, domain, vcpu);
    STATE[vcpu as usize % MAX_CPUS].store(ON, Ordering::Release);
    log!("d{domain}: vCPU {vcpu} up on CPU {cpu}, entering at {:#x}", block.entry);
    // SAFETY: ENTRY[cpu] belongs to this CPU; PL1 and HYP state were programmed above; the
    // stack is this CPU's own, which nothing uses after the switch.
    unsafe {
        let f = &mut (*core::ptr::addr_of_mut!(ENTRY))[cpu];
        *f = TrapFrame::ZERO;
        f.r[0] = block.context;
        // An entry point with bit 0 set is Thumb code.
        f.elr = block.entry & !1;
        f.spsr = CPSR_SVC_MASKED | if block.entry & 1 != 0 { 1 << 5 } else { 0 };
        super::entry::enter_guest_on(f, block.stack_top)
    }
}
