//! Secondary CPUs for an SMP dom0. dom0's vCPU n runs on the CPU of
//! the host DT's n-th /cpus entry, one vCPU per CPU (the placement and dom0's vCPU power states
//! are `domain::vcpu`'s). A guest's PSCI CPU_ON (`hypercall::smccc::psci_smp`) powers that CPU
//! on through the firmware here; it starts in HYP mode at `xenith_secondary_entry`, takes
//! the boot CPU's HYP translation settings, brings up its banked GIC state and enters the
//! guest where the guest asked. On the Exynos5250 (no PSCI) the board releases the CPU
//! through SYSRAM and an SGI instead. What each CPU runs is `percpu`'s.

use super::entry::{Stack, TrapFrame, STACK_SIZE};
use super::guest::{self, CPSR_SVC_MASKED};
use super::percpu::{assign, MAX_CPUS, NO_DOMAIN};
use super::regs::Hvbar;
use super::psci;
use crate::domain::DomId;
use crate::log;
use alloc::string::String;
use core::arch::global_asm;
use crate::domain::vcpu::CPUS;

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
    /// 1: the boot CPU arrived in Secure SVC mode and switched itself; a secondary that
    /// arrives in SVC mode does the same (`xenith_sysram_secondary_entry`).
    from_secure: u32,
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
    from_secure: 0,
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
    mov     r5, #0                  // not switched from Secure SVC
    .global xenith_secondary_entry_r5
xenith_secondary_entry_r5:
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
    mov     r1, r5
    bl      xenith_secondary_main
1:  wfe
    b       1b
"#
);

// Where a secondary released through SYSRAM (the Exynos5250: no PSCI) or a spin-table pen starts:
// the boot ROM, or a firmware's pen, jumps here with the MMU off and nothing in r0. It finds its StartBlock
// by MPIDR.Aff0 (the CPU's index on the Exynos5250). In HYP mode it goes the PSCI way from
// there; in SVC mode, when the boot CPU arrived in Secure SVC mode (the stock firmware leaves
// every core Secure), it makes itself non-secure HYP mode the same way first: MVBAR, NSACR and
// SCR are banked per CPU. A CPU with no block, or in another mode, parks.
global_asm!(
    r#"
    .syntax unified
    .arm
    .section .text, "ax"
    .balign 4
    .global xenith_sysram_secondary_entry
xenith_sysram_secondary_entry:
    cpsid   aif
    mrc     p15, 0, r1, c0, c0, 5   // MPIDR
    and     r1, r1, #0xff
    cmp     r1, #{max_cpus}
    bhs     2f
    movw    r0, #:lower16:{start}
    movt    r0, #:upper16:{start}
    mov     r2, #{block_size}
    mla     r6, r1, r2, r0          // this CPU's StartBlock (r6 survives xenith_secure_to_hyp)
    ldr     r2, [r6, #24]           // stack_top: 0 unless the boot CPU filled the block
    cmp     r2, #0
    beq     2f
    mov     r5, #0
    mrs     r1, cpsr
    and     r1, r1, #0x1f
    cmp     r1, #0x13               // SVC
    bne     3f
    ldr     r2, [r6, #{from_secure}]
    cmp     r2, #0
    beq     2f                      // the boot CPU was not Secure: this SVC is not ours to leave
    bl      xenith_secure_to_hyp
    mov     r5, r0                  // 1: now non-secure HYP mode
3:  mrs     r1, cpsr
    and     r1, r1, #0x1f
    cmp     r1, #0x1a
    bne     2f
    mov     r0, r6
    b       xenith_secondary_entry_r5
2:  wfe
    b       2b
"#,
    max_cpus = const MAX_CPUS,
    start = sym START,
    block_size = const core::mem::size_of::<StartBlock>(),
    from_secure = const core::mem::offset_of!(StartBlock, from_secure),
);

extern "C" {
    fn xenith_secondary_entry();
    fn xenith_sysram_secondary_entry();
}

/// Per CPU index, the `cpu-release-addr` of a CPU the DT says firmware holds in a pen
/// (`enable-method = "spin-table"`), or 0.
static RELEASE: [core::sync::atomic::AtomicU32; MAX_CPUS] = [const { core::sync::atomic::AtomicU32::new(0) }; MAX_CPUS];

/// Record the host DT's spin-table CPUs (CPU index = position in /cpus); their release
/// address must lie below 4 GiB.
pub fn set_release_addrs(cpus: &[crate::dt::boot_info::CpuInfo]) {
    for (i, c) in cpus.iter().enumerate().take(MAX_CPUS) {
        if let (Some("spin-table"), Some(addr)) = (c.enable_method.as_deref(), c.release_addr) {
            match u32::try_from(addr) {
                Ok(a) if a != 0 && a.is_multiple_of(8) => RELEASE[i].store(a, core::sync::atomic::Ordering::Relaxed),
                _ => log!("{}: cpu-release-addr {addr:#x} is unusable (zero, misaligned or above 4 GiB): the CPU cannot be started", c.path),
            }
        }
    }
}

/// Some CPU is started by releasing it from a firmware pen.
pub fn has_spin_table_cpus() -> bool {
    RELEASE.iter().any(|r| r.load(core::sync::atomic::Ordering::Relaxed) != 0)
}

/// Release a CPU held in a firmware pen: its entry point to the release address (cleaned to
/// the point of coherency: the pen reads with caches off), then an event.
fn spin_table_release(release: u32, entry: u32) -> Result<(), String> {
    let va = super::mmu::va_of(u64::from(release), 8).ok_or_else(|| alloc::format!("cpu-release-addr {release:#x} is not mapped"))?;
    // SAFETY: the DT names this RAM word as the pen's mailbox; identity-mapped, 8-aligned.
    unsafe { core::ptr::write_volatile(va as *mut u64, u64::from(entry)) };
    super::mem::clean_dcache_range(u64::from(release), 8);
    super::regs::dsb_sy();
    // SAFETY: SEV only signals an event to the other CPUs.
    unsafe { core::arch::asm!("sev", options(nomem, nostack)) };
    Ok(())
}

/// dom0 runs `n` vCPUs (the boot plan bounded it by the host's CPUs and [`MAX_CPUS`]), vCPU n
/// on the CPU of the host DT's n-th /cpus entry; vCPU 0 runs on this CPU. Returns the count.
pub fn setup_dom0(host_cpus: &[u64], n: usize) -> usize {
    CPUS.setup_dom0(host_cpus, n)
}

/// Power physical CPU `cpu` (MPIDR `mpidr`) on through the firmware to run vCPU `vcpu` of
/// `domain` with stage 2 `vttbr`/`vtcr`, entering PL1 (SVC) at `entry` with r0 = `context`.
#[allow(clippy::too_many_arguments)]
pub fn start_cpu(cpu: usize, mpidr: u32, domain: DomId, vcpu: u32, vttbr: u64, vtcr: u32, entry: u32, context: u32) -> Result<(), String> {
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
        from_secure: u32::from(super::monitor::owned()),
    };
    // SAFETY: START[cpu] is only written while CPU `cpu` is off (under the OFF -> ON_PENDING
    // compare-exchange, `Cpus::cpu_on`); CPU `cpu` reads it after it starts.
    let block = unsafe {
        let b = &mut (*core::ptr::addr_of_mut!(START))[cpu];
        *b = fill;
        b as *const StartBlock as u32
    };
    super::mem::clean_dcache_range(u64::from(block), core::mem::size_of::<StartBlock>() as u64);
    // A CPU the DT says firmware holds in a pen (spin-table): the pen releases it.
    let release = RELEASE[cpu].load(core::sync::atomic::Ordering::Relaxed);
    if release != 0 {
        return spin_table_release(release, xenith_sysram_secondary_entry as *const () as u32);
    }
    // No PSCI on the Exynos5250: the board releases the CPU through SYSRAM and an SGI.
    if let (false, Some(b)) = (psci::has_conduit(), super::board::get()) {
        return super::board::release_secondary(b, cpu, xenith_sysram_secondary_entry as *const () as u32);
    }
    match psci::call(psci::CPU_ON, mpidr, xenith_secondary_entry as *const () as u32, block) {
        Some(0) => Ok(()),
        other => Err(alloc::format!("firmware CPU_ON of CPU {mpidr:#x} failed ({other:?})")),
    }
}

#[no_mangle]
extern "C" fn xenith_secondary_main(block: &StartBlock, from_secure: u32) -> ! {
    let cpu = block.cpu as usize;
    let (domain, vcpu) = (block.domain as DomId, block.vcpu);
    let dom0_vcpu = (domain == 0).then_some(vcpu as usize);
    assign(cpu, NO_DOMAIN, vcpu);
    if from_secure != 0 {
        if let Err(e) = super::monitor::secondary_to_nonsecure() {
            log!("CPU {cpu}: entered in Secure SVC mode, now non-secure HYP mode, but {e}: parking it");
            if let Some(v) = dom0_vcpu {
                CPUS.failed(v);
            }
            super::regs::halt();
        }
        log!("CPU {cpu}: entered in Secure SVC mode: now non-secure HYP mode, xenith's monitor at its MVBAR");
    }
    if let Err(e) = super::gic::init_this_cpu() {
        log!("CPU {cpu}: GIC: {e}: parking it");
        if let Some(v) = dom0_vcpu {
            CPUS.failed(v);
        }
        super::regs::halt();
    }
    guest::configure(block.vttbr, block.vtcr, vcpu);
    assign(cpu, domain, vcpu);
    if let Some(v) = dom0_vcpu {
        CPUS.started(v);
    }
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
