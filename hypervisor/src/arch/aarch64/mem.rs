//! Physical memory through the hypervisor's identity map (the hardware `PhysMem`) and cleaning
//! a guest's memory to the point of coherency.

use crate::sysreg;

/// Physical memory through the hypervisor's identity map (the hardware `PhysMem`).
pub struct DirectMem;

/// Copy `n` bytes from `src` to `dst` (host addresses) with the widest accesses both ends
/// and the length allow: hypercall arguments and guest structures are mostly small and
/// aligned (an event port is 4 bytes), where a general `memcpy` spends more on choosing its
/// strategy than on copying.
///
/// # Safety
/// As `core::ptr::copy_nonoverlapping(src, dst, n)`.
#[inline]
pub(crate) unsafe fn copy_bytes(src: *const u8, dst: *mut u8, n: usize) {
    let align = src as usize | dst as usize | n;
    // Volatile: the loops stay word loops (not turned back into a `memcpy` call), and guest
    // memory another vCPU may write is read once.
    if align.is_multiple_of(8) {
        for i in 0..n / 8 {
            // SAFETY: both ranges are valid for `n` bytes (the caller's contract), 8-aligned.
            unsafe { (dst as *mut u64).add(i).write_volatile((src as *const u64).add(i).read_volatile()) };
        }
    } else if align.is_multiple_of(4) {
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

impl platform::PhysMem for DirectMem {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), platform::MemError> {
        // SAFETY: callers (page-table code) only pass table frames they allocated from RAM,
        // which the boot map covers as Normal memory.
        unsafe { copy_bytes(pa as *const u8, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }
    fn write(&self, pa: u64, data: &[u8]) -> Result<(), platform::MemError> {
        // SAFETY: as for `read`.
        unsafe { copy_bytes(data.as_ptr(), pa as *mut u8, data.len()) };
        Ok(())
    }
    fn zero(&self, pa: u64, len: u64) -> Result<(), platform::MemError> {
        let end = pa.checked_add(len).ok_or(platform::MemError::NotMemory { pa })?;
        // SAFETY: as for `write`: callers pass RAM the boot map covers as Normal memory.
        unsafe { zero_range(pa, end) };
        clean_dcache_to_poc(pa, len);
        Ok(())
    }
    fn clean_dcache(&self, pa: u64, len: usize) {
        clean_dcache_to_poc(pa, len as u64)
    }
    fn read_u64(&self, pa: u64) -> Result<u64, platform::MemError> {
        // SAFETY: as for `read`; table entries are 8-byte aligned.
        Ok(unsafe { core::ptr::read_volatile(pa as *const u64) })
    }
    fn write_u64(&self, pa: u64, v: u64) -> Result<(), platform::MemError> {
        // SAFETY: as for `read`; a single 64-bit store so the walker never sees a torn entry.
        unsafe { core::ptr::write_volatile(pa as *mut u64, v) };
        Ok(())
    }
    fn fetch_or_u64(&self, pa: u64, bits: u64) -> Result<u64, platform::MemError> {
        // SAFETY: as for `read`; the word is 8-byte aligned (checked), so it is a valid AtomicU64.
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

/// The block `DC ZVA` zeroes, in bytes, or `None` where it is prohibited (DCZID_EL0.DZP).
fn zva_block() -> Option<u64> {
    let d = sysreg!(read DCZID_EL0);
    (d & (1 << 4) == 0).then(|| 4u64 << (d & 0xf))
}

/// Zero `[pa, end)`: whole `DC ZVA` blocks one instruction each (a 4 KiB page is 64 of them
/// with 64-byte blocks, against 512 loads and stores copying zeros), stores for a head or tail
/// outside the blocks. The zeros are ordered before any later store (a stage-2 descriptor that
/// maps the memory) by a DSB.
///
/// # Safety
/// `[pa, end)` is RAM the identity map covers as Normal memory, that nothing else owns.
unsafe fn zero_range(pa: u64, end: u64) {
    let mut a = pa;
    if let Some(block) = zva_block() {
        let (first, last) = (pa.next_multiple_of(block), end & !(block - 1));
        if first < last {
            // SAFETY: the caller's contract; `[pa, first)` is inside the range.
            unsafe { core::ptr::write_bytes(pa as *mut u8, 0, (first - pa) as usize) };
            a = first;
            while a < last {
                // SAFETY: the block `[a, a + block)` is inside the range (the caller's contract).
                unsafe { core::arch::asm!("dc zva, {}", in(reg) a, options(nostack, preserves_flags)) };
                a += block;
            }
        }
    }
    // SAFETY: the caller's contract; `[a, end)` is inside the range.
    unsafe { core::ptr::write_bytes(a as *mut u8, 0, (end - a) as usize) };
    super::regs::dsb_ish();
}

impl DirectMem {
    /// The 64-bit word at `pa` as an atomic (RAM mapped Normal, so exclusives work).
    fn atomic(pa: u64) -> Result<&'static core::sync::atomic::AtomicU64, platform::MemError> {
        if !pa.is_multiple_of(8) {
            return Err(platform::MemError::NotMemory { pa });
        }
        // SAFETY: callers pass RAM the boot map covers (as for `read`), 8-byte aligned.
        Ok(unsafe { &*(pa as *const core::sync::atomic::AtomicU64) })
    }
}

/// Clean (write back) the data cache for `[pa, pa + len)` to the point of coherency (DC CVAC
/// by line), then DSB: a table walker that does not snoop, or a guest reading through a
/// non-cacheable mapping, sees what the CPU wrote.
pub fn clean_dcache_to_poc(pa: u64, len: u64) {
    let line = 4u64 << ((sysreg!(read CTR_EL0) >> 16) & 0xf);
    let end = pa.saturating_add(len);
    let mut a = pa & !(line - 1);
    while a < end {
        // SAFETY: cache maintenance by address on identity-mapped RAM.
        unsafe { core::arch::asm!("dc cvac, {}", in(reg) a, options(nostack, preserves_flags)) };
        a += line;
    }
    // SAFETY: a barrier.
    unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// Clean the data cache for `[pa, pa + len)` to the point of coherency and invalidate every
/// CPU's instruction cache (IC IALLUIS): for code and data a guest reads with its MMU off,
/// on whichever CPU it runs.
pub fn clean_dcache_range(pa: u64, len: u64) {
    clean_dcache_to_poc(pa, len);
    // SAFETY: I-cache invalidation and barriers.
    unsafe { core::arch::asm!("ic ialluis", "dsb ish", "isb", options(nostack, preserves_flags)) };
}
