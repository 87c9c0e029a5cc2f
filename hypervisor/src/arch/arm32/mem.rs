//! Physical memory through the hypervisor's identity map (the hardware `PhysMem`) and cleaning
//! a guest's memory to the point of coherency.

use super::mmu;
use super::regs::{self, dsb_ish};

/// Physical memory through the hypervisor's identity map (the hardware `PhysMem`). Memory
/// above 4 GiB has no HYP address: it is reported as not memory. `clean_dcache` cleans to the
/// point of coherency, for the observers that do not snoop the caches (the Exynos SysMMUs'
/// table walkers, a RAM log read after a reset, a guest with its MMU off).
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
    fn clean_dcache(&self, pa: u64, len: usize) {
        clean_dcache_to_poc(pa, len as u64)
    }
}

/// Clean `[pa, pa + len)` to the point of coherency (DCCMVAC), then DSB.
pub fn clean_dcache_to_poc(pa: u64, len: u64) {
    let Some(va) = mmu::va_of(pa, len) else { return };
    let line = 4usize << ((regs::Ctr::read() >> 16) & 0xf);
    let mut a = va & !(line - 1);
    while a < va + len as usize {
        // SAFETY: cache maintenance by address on identity-mapped RAM (DCCMVAC).
        unsafe { core::arch::asm!("mcr p15, 0, {}, c7, c10, 1", in(reg) a) };
        a += line;
    }
    dsb_ish();
}

/// Clean (write back) the data cache for `[pa, pa + len)` to the point of coherency, and
/// invalidate the instruction cache: for code and data a guest reads with its MMU off.
pub fn clean_dcache_range(pa: u64, len: u64) {
    if mmu::va_of(pa, len).is_none() {
        return;
    }
    clean_dcache_to_poc(pa, len);
    // SAFETY: barrier and I-cache invalidation (ICIALLUIS, BPIALLIS).
    unsafe { core::arch::asm!("dsb sy", "mcr p15, 0, {z}, c7, c1, 0", "mcr p15, 0, {z}, c7, c1, 6", "dsb sy", "isb", z = in(reg) 0u32) };
}
