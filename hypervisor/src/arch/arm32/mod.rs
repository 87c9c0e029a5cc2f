//! ARMv7-A in HYP mode (Cortex-A15: virtualization and LPAE extensions): entry, HYP vectors,
//! the hypervisor's own LPAE map, CP15 registers, guest entry/exit, guest-memory access and
//! TLB maintenance. As on AArch64, everything in here is thin: decisions are made by the
//! arch-neutral modules it calls. Physical addresses are u64 (LPAE: 40 bits); the hypervisor
//! reaches the ones below 4 GiB through its identity map (`mmu::va_of`).

pub mod entry;
pub mod gic;
/// The GICv2 driver and dom0's vGICv2 attachment are the same as on AArch64 (GICv2 is all MMIO).
#[path = "../aarch64/gic_v2.rs"]
pub mod gic_v2;
pub mod guest;
/// The heap is the same buddy allocator over a static region as on AArch64.
#[path = "../aarch64/heap.rs"]
pub mod heap;
pub mod mmu;
pub mod monitor;
pub mod psci;
pub mod regs;
/// Data-cache maintenance by set/way, and the control-register writes that track the caches.
pub mod setway;
pub mod smp;
pub mod start;
pub mod trap;
/// The vGIC's per-CPU protocol, as on AArch64.
#[path = "../aarch64/vgic_glue.rs"]
pub mod vgic_glue;
/// Guest timers: the virtual timer is the guest's, the PL1 physical timer is trapped.
pub mod vtimer;

use regs::{dsb_ish, Vttbr};

/// Park this CPU for good (interrupts masked).
pub fn halt() -> ! {
    loop {
        // SAFETY: masks interrupts and waits; touches no memory.
        unsafe { core::arch::asm!("cpsid aif", "wfi") };
    }
}

/// A panic is a hypervisor bug (guest input never reaches one): say where, then stop the machine.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::log!("HYPERVISOR BUG: panic: {info}");
    psci::system_off()
}

/// Physical memory through the hypervisor's identity map (the hardware `PhysMem`). Memory
/// above 4 GiB has no HYP address: it is reported as not memory.
pub struct DirectMem;

/// Copy `n` bytes from `src` to `dst` (host addresses) word by word where both ends and the
/// length allow (guest structures are mostly small and aligned).
///
/// # Safety
/// As `core::ptr::copy_nonoverlapping(src, dst, n)`.
#[inline]
pub(crate) unsafe fn copy_bytes(src: *const u8, dst: *mut u8, n: usize) {
    let align = src as usize | dst as usize | n;
    if align.is_multiple_of(4) {
        for i in 0..n / 4 {
            // SAFETY: both ranges are valid for `n` bytes (the caller's contract), 4-aligned.
            unsafe { (dst as *mut u32).add(i).write_volatile((src as *const u32).add(i).read_volatile()) };
        }
    } else if n <= 64 {
        for i in 0..n {
            // SAFETY: both ranges are valid for `n` bytes (the caller's contract).
            unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
        }
    } else {
        // SAFETY: the caller's contract.
        unsafe { core::ptr::copy_nonoverlapping(src, dst, n) }
    }
}

impl DirectMem {
    fn va(pa: u64, len: usize) -> Result<usize, platform::MemError> {
        mmu::va_of(pa, len as u64).ok_or(platform::MemError::NotMemory { pa })
    }

    /// The 64-bit word at `pa` as an atomic (RAM mapped Normal, so exclusives work).
    fn atomic(pa: u64) -> Result<&'static core::sync::atomic::AtomicU64, platform::MemError> {
        if !pa.is_multiple_of(8) {
            return Err(platform::MemError::NotMemory { pa });
        }
        let va = Self::va(pa, 8)?;
        // SAFETY: callers pass RAM the boot map covers (as for `read`), 8-byte aligned.
        Ok(unsafe { &*(va as *const core::sync::atomic::AtomicU64) })
    }
}

impl platform::PhysMem for DirectMem {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), platform::MemError> {
        let va = Self::va(pa, buf.len())?;
        // SAFETY: callers (page-table code) only pass table frames they allocated from RAM,
        // which the boot map covers as Normal memory.
        unsafe { copy_bytes(va as *const u8, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }
    fn write(&self, pa: u64, data: &[u8]) -> Result<(), platform::MemError> {
        let va = Self::va(pa, data.len())?;
        // SAFETY: as for `read`.
        unsafe { copy_bytes(data.as_ptr(), va as *mut u8, data.len()) };
        Ok(())
    }
    fn read_u64(&self, pa: u64) -> Result<u64, platform::MemError> {
        let va = Self::va(pa, 8)?;
        let (lo, hi): (u32, u32);
        // SAFETY: as for `read`; LDRD of an 8-aligned word is single-copy atomic with LPAE,
        // so a descriptor another CPU writes is never seen torn.
        unsafe { core::arch::asm!("ldrd r2, r3, [{p}]", p = in(reg) va, out("r2") lo, out("r3") hi, options(nostack, readonly)) };
        Ok(u64::from(lo) | (u64::from(hi) << 32))
    }
    fn write_u64(&self, pa: u64, v: u64) -> Result<(), platform::MemError> {
        let va = Self::va(pa, 8)?;
        // SAFETY: as for `read`; a single STRD so the walker never sees a torn entry.
        unsafe { mmu::write_entry(va as *mut u64, v) };
        Ok(())
    }
    fn fetch_or_u64(&self, pa: u64, bits: u64) -> Result<u64, platform::MemError> {
        Ok(Self::atomic(pa)?.fetch_or(bits, core::sync::atomic::Ordering::SeqCst))
    }
    fn fetch_and_u64(&self, pa: u64, bits: u64) -> Result<u64, platform::MemError> {
        Ok(Self::atomic(pa)?.fetch_and(bits, core::sync::atomic::Ordering::SeqCst))
    }
    fn compare_exchange_u64(&self, pa: u64, current: u64, new: u64) -> Result<Result<u64, u64>, platform::MemError> {
        use core::sync::atomic::Ordering::SeqCst;
        Ok(Self::atomic(pa)?.compare_exchange(current, new, SeqCst, SeqCst))
    }
}

/// Stage-2 TLB maintenance for a VMID (the `mm::TlbOps` of the hardware).
pub struct HwTlb;

impl HwTlb {
    /// Run `f` with VTTBR holding `vmid`: the stage-2 TLB operations issued in HYP mode act on
    /// the VMID in VTTBR.
    fn with_vmid(vmid: u16, f: impl FnOnce()) {
        let saved = Vttbr::read();
        Vttbr::write(u64::from(vmid & 0xff) << 48);
        regs::isb();
        f();
        Vttbr::write(saved);
        regs::isb();
    }
}

impl crate::mm::TlbOps for HwTlb {
    /// ARMv7 has no invalidation by IPA (TLBIIPAS2 came with ARMv8): the VMID's whole
    /// non-HYP TLB goes (TLBIALLIS issued in HYP mode acts on the VMID in VTTBR), as Xen
    /// does on a Cortex-A15.
    fn invalidate_ipa(&mut self, vmid: u16, _ipa: u64) {
        self.invalidate_vmid(vmid);
    }
    fn invalidate_vmid(&mut self, vmid: u16) {
        Self::with_vmid(vmid, || {
            // SAFETY: TLB maintenance only (TLBIALLIS for the VMID in VTTBR).
            unsafe { core::arch::asm!("dsb ishst", "mcr p15, 0, {z}, c8, c3, 0", z = in(reg) 0u32) };
        });
    }
    fn sync(&mut self) {
        // SAFETY: barriers only.
        unsafe { core::arch::asm!("dsb ish", "isb") };
    }
}

/// Clean (write back) the data cache for `[pa, pa + len)` to the point of coherency, and
/// invalidate the instruction cache: for code and data a guest reads with its MMU off.
pub fn clean_dcache_range(pa: u64, len: u64) {
    let Some(va) = mmu::va_of(pa, len) else { return };
    let line = 4usize << ((regs::Ctr::read() >> 16) & 0xf);
    let mut a = va & !(line - 1);
    while a < va + len as usize {
        // SAFETY: cache maintenance by address on identity-mapped RAM (DCCMVAC).
        unsafe { core::arch::asm!("mcr p15, 0, {}, c7, c10, 1", in(reg) a) };
        a += line;
    }
    dsb_ish();
    // SAFETY: barrier and I-cache invalidation (ICIALLUIS, BPIALLIS).
    unsafe { core::arch::asm!("dsb sy", "mcr p15, 0, {z}, c7, c1, 0", "mcr p15, 0, {z}, c7, c1, 6", "dsb sy", "isb", z = in(reg) 0u32) };
}

/// The architecture contract ([`crate::contract::Arch`]) in HYP mode: one CPU, no interrupt
/// controller driver yet (no vGIC to attach, no secondary CPU to start).
pub struct Hw;

impl crate::contract::Arch for Hw {
    fn start_cpu(&self, s: &crate::contract::CpuStart) -> Result<(), alloc::string::String> {
        // A 32-bit guest's entry point, context and VTCR fit in 32 bits.
        smp::start_cpu(s.cpu, s.domain, s.vcpu, s.vttbr, s.vtcr as u32, s.entry as u32, s.context as u32)
    }
    fn with_machine(&self, f: &mut dyn FnMut(&mut crate::domain::registry::Machine<'_>)) {
        let mut frames = crate::domain::registry::PoolFrames;
        let mut tlb = HwTlb;
        f(&mut crate::domain::registry::Machine { mem: &DirectMem, frames: &mut frames, tlb: &mut tlb });
    }
    fn attach_vgic(&self, dom: &mut crate::domain::Domain, _cfg: &crate::irq::vgic::domains::VgicConfig) -> Result<(), alloc::string::String> {
        Err(alloc::format!("d{}: only dom0 gets a vGIC in HYP mode so far", dom.id))
    }
    fn vpl011_irq(&self) -> fn(crate::domain::DomId, bool) {
        |d, high| gic::set_irq_level(d, 0, crate::domain::vuart::GUEST_VPL011_SPI, high)
    }
    fn deliver_event_upcall(&self, dom: &crate::domain::Domain) {
        gic::deliver_event_upcall(dom)
    }
    fn clean_dcache_range(&self, pa: u64, len: u64) {
        clean_dcache_range(pa, len)
    }
    fn stop_machine(&self, action: crate::domain::lifecycle::MachineAction) {
        if let crate::domain::lifecycle::MachineAction::Restart { delay_ms } = action {
            regs::delay_ms(delay_ms);
            psci::system_reset()
        }
        psci::system_off()
    }
    fn shutdown_report(&self) -> alloc::vec::Vec<alloc::string::String> {
        use core::sync::atomic::Ordering;
        alloc::vec![alloc::format!(
            "traps from guests: {} ({} hypercalls); stage-2 faults resolved by a retry: {}",
            trap::TRAPS.load(Ordering::Relaxed),
            trap::HYPERCALLS.load(Ordering::Relaxed),
            trap::S2_FAULTS_RESOLVED.load(Ordering::Relaxed)
        )]
    }
}
