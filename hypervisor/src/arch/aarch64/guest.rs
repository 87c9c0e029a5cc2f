//! Running a guest at EL1: EL2 configuration for a domain, guest-virtual address translation
//! with the CPU's AT instructions, and exception injection.

use super::mem::copy_bytes;
use super::percpu;
use super::regs::isb;
use crate::domain::registry::DOMAINS;
use crate::hypercall::{GuestFault, GuestMemory};
use crate::sysreg;

/// HCR_EL2 while a guest runs: stage 2 on, SMC trapped, physical interrupts to EL2, set/way
/// cache ops upgraded, implementation-defined and auxiliary control registers trapped, the
/// feature ID registers trapped (TID3: guests see `crate::cpufeature`'s view), broadcast of
/// TLB/cache maintenance inner shareable, EL1 is AArch64. `cpufeat::hcr_bits` adds what the
/// CPU's features call for (pointer authentication, RAS).
///
/// WFI and WFE are trapped (TWI, TWE), as Xen 4.17 traps them by default: the hypervisor
/// decides what a vCPU's wait does (`domain::vcpu::on_wait`; trap.rs carries it out). With one
/// vCPU per physical CPU (smp.rs) a WFE goes on at once and a WFI with no interrupt waiting for
/// the vCPU becomes a WFI of its CPU at EL2, woken by any physical interrupt (its timers, the
/// GIC maintenance interrupt, the kick SGI another CPU sends after changing this vCPU's
/// interrupts), after which `irq::guest_entry` fills the list registers.
pub const HCR_GUEST: u64 = (1 << 0)  // VM
    | (1 << 1)                        // SWIO
    | (1 << 2)                        // PTW
    | (1 << 3) | (1 << 4) | (1 << 5)  // FMO, IMO, AMO
    | (1 << 9)                        // FB
    | (0b01 << 10)                    // BSU: inner shareable
    | (1 << 13)                       // TWI
    | (1 << 14)                       // TWE
    | (1 << 18)                       // TID3
    | (1 << 19)                       // TSC
    | (1 << 20)                       // TIDCP
    | (1 << 21)                       // TACR
    | (1 << 22)                       // TSW
    | (1 << 31);                      // RW

/// SCTLR_EL1 at vCPU reset: MMU and caches off, RES1 bits set.
pub const SCTLR_EL1_RESET: u64 = 0x30d0_0800;

/// Program the EL2 and EL1 registers for running vCPU `vcpu_id` of a domain whose stage 2 is
/// described by `vttbr`/`vtcr`.
pub fn configure(vttbr: u64, vtcr: u64, vcpu_id: u64) {
    sysreg!(write VTCR_EL2, vtcr);
    sysreg!(write VTTBR_EL2, vttbr);
    let midr = sysreg!(read MIDR_EL1);
    sysreg!(write VPIDR_EL2, midr);
    sysreg!(write VMPIDR_EL2, (1 << 31) | vcpu_id);
    sysreg!(write SCTLR_EL1, SCTLR_EL1_RESET);
    // Timers: physical counter readable, physical timer trapped and emulated (vtimer.rs).
    super::vtimer::configure_vcpu(vcpu_id);
    // FP/SIMD, debug and PMU are the guest's; SVE, SME, trace, AMU, SPE are trapped
    // (cpufeature.rs decides), and the vCPU's pointer-authentication keys start reset.
    super::cpufeat::configure_vcpu();
    sysreg!(write HSTR_EL2, 0);
    sysreg!(write HCR_EL2, HCR_GUEST | super::cpufeat::hcr_bits());
    isb();
    // SAFETY: invalidate any stage-1+2 TLB entries for this VMID left from before.
    unsafe { core::arch::asm!("dsb ishst", "tlbi vmalls12e1is", "dsb ish", "isb") };
}

/// Translate a guest virtual address of the running vCPU to a physical address with the
/// guest's current stage 1 and its stage 2 (`AT S12E1R`/`S12E1W`). `None` if either stage
/// faults. PAR_EL1 is the guest's register: it is preserved.
pub fn gva_to_pa(gva: u64, write: bool) -> Option<u64> {
    let saved = sysreg!(read PAR_EL1);
    // SAFETY: address translation instruction; result lands in PAR_EL1 only.
    unsafe {
        if write {
            core::arch::asm!("at s12e1w, {}", in(reg) gva, options(nostack, preserves_flags));
        } else {
            core::arch::asm!("at s12e1r, {}", in(reg) gva, options(nostack, preserves_flags));
        }
    }
    isb();
    let par = sysreg!(read PAR_EL1);
    sysreg!(write PAR_EL1, saved);
    if par & 1 != 0 {
        None
    } else {
        Some((par & 0x0000_ffff_ffff_f000) | (gva & 0xfff))
    }
}

/// The calling vCPU's memory through its own stage 1 and stage 2, limited to its RAM.
pub struct CurrentGuestMemory;

impl CurrentGuestMemory {
    /// Whether `[pa, pa + len)` is RAM of the domain whose vCPU runs on this CPU: what a
    /// hypercall may read or write through that vCPU's own stage 1 and stage 2. The domain
    /// table and a domain's RAM banks never change once it runs: no lock, nothing copied.
    fn owns(&self, pa: u64, len: u64) -> bool {
        DOMAINS.get(percpu::current_domain()).is_some_and(|d| d.ram().contains_pa(pa, len))
    }
}

impl CurrentGuestMemory {
    /// Walk `[gva, gva + len)` page by page, handing each piece's host address to `f`.
    fn for_each_page(&self, gva: u64, len: usize, write: bool, mut f: impl FnMut(usize, usize, usize)) -> Result<(), GuestFault> {
        let mut done = 0usize;
        while done < len {
            let va = gva.checked_add(done as u64).ok_or(GuestFault { gva })?;
            let chunk = core::cmp::min(len - done, (0x1000 - (va & 0xfff)) as usize);
            let pa = match gva_to_pa(va, write) {
                Some(pa) => pa,
                None => retranslate(va, write).ok_or(GuestFault { gva: va })?,
            };
            if !self.owns(pa, chunk as u64) {
                return Err(GuestFault { gva: va });
            }
            f(pa as usize, done, chunk);
            done += chunk;
        }
        Ok(())
    }
}

/// A translation that failed once, again under the p2m's read lock: an address in a block
/// another CPU is splitting or merging (break-before-make) does not translate for a moment,
/// and once the read lock is ours no such change is under way. Hypercall handlers copy to and
/// from the guest with none of its domain's p2m locks held.
#[inline(never)]
fn retranslate(va: u64, write: bool) -> Option<u64> {
    let dom = DOMAINS.get(percpu::current_domain())?;
    let _p2m = dom.p2m.read();
    gva_to_pa(va, write)
}

impl GuestMemory for CurrentGuestMemory {
    fn copy_from_guest(&mut self, gva: u64, buf: &mut [u8]) -> Result<(), GuestFault> {
        let dst = buf.as_mut_ptr();
        self.for_each_page(gva, buf.len(), false, |pa, off, n| {
            // SAFETY: `pa..pa+n` is RAM of this domain (checked), identity-mapped at EL2, and
            // `off..off+n` lies inside `buf`.
            unsafe { copy_bytes(pa as *const u8, dst.add(off), n) }
        })
    }

    fn copy_to_guest(&mut self, gva: u64, data: &[u8]) -> Result<(), GuestFault> {
        let src = data.as_ptr();
        self.for_each_page(gva, data.len(), true, |pa, off, n| {
            // SAFETY: as in `copy_from_guest`, in the other direction.
            unsafe { copy_bytes(src.add(off), pa as *mut u8, n) }
        })
    }
}
