//! [`ArchDmaOps`] for a bare-metal AArch64 EL1 guest (the test guest) whose memory is
//! identity-mapped (VA == PA): memory access by pointer, cache maintenance by VA to the point of
//! coherency (`dc cvac` / `dc civac`), and page allocation from the guest's global allocator.

use alloc::alloc::{alloc_zeroed, dealloc, Layout};
use core::arch::asm;

use crate::arch::{ArchDmaOps, MemError, PhysMem};
use crate::ops::RamMap;
use crate::types::{Direction, PhysAddr};

/// Arch ops for one device in an identity-mapped AArch64 guest.
#[derive(Clone)]
pub struct BareMetalArch {
    ram: RamMap,
    coherent: bool,
}

impl BareMetalArch {
    /// # Safety
    /// Every byte of `ram` must be mapped at VA == PA as Normal memory for as long as the value
    /// is used, and the global allocator must hand out memory inside `ram`.
    pub unsafe fn new(ram: RamMap, coherent: bool) -> BareMetalArch {
        BareMetalArch { ram, coherent }
    }

    fn check(&self, pa: u64, len: usize) -> Result<(), MemError> {
        if len == 0 || self.ram.contains(pa, len) {
            Ok(())
        } else {
            Err(MemError::NotMemory { pa })
        }
    }

    fn line_size() -> usize {
        let ctr: u64;
        // SAFETY: CTR_EL0 is readable at EL1 and has no side effects.
        unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags)) };
        4 << ((ctr >> 16) & 0xF)
    }

    fn maintain(pa: PhysAddr, size: usize, clean_only: bool) {
        if size == 0 {
            return;
        }
        let line = Self::line_size() as u64;
        let mut a = pa & !(line - 1);
        let end = pa + size as u64;
        while a < end {
            // SAFETY: `a` is mapped (identity map of RAM, checked by the caller's mapping); cache
            // maintenance by VA does not change memory contents as seen by this CPU.
            unsafe {
                if clean_only {
                    asm!("dc cvac, {}", in(reg) a, options(nostack, preserves_flags));
                } else {
                    asm!("dc civac, {}", in(reg) a, options(nostack, preserves_flags));
                }
            }
            a += line;
        }
        // SAFETY: a barrier only.
        unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
    }
}

impl PhysMem for BareMetalArch {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.check(pa, buf.len())?;
        // SAFETY: the range is RAM, identity-mapped (constructor contract).
        unsafe { core::ptr::copy(pa as usize as *const u8, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }
    fn write(&self, pa: u64, data: &[u8]) -> Result<(), MemError> {
        self.check(pa, data.len())?;
        // SAFETY: as in `read`.
        unsafe { core::ptr::copy(data.as_ptr(), pa as usize as *mut u8, data.len()) };
        Ok(())
    }
    fn clean_dcache(&self, pa: u64, len: usize) {
        if !self.coherent {
            Self::maintain(pa, len, true);
        }
    }
}

impl ArchDmaOps for BareMetalArch {
    fn coherent(&self) -> bool {
        self.coherent
    }
    fn sync_for_device(&self, pa: PhysAddr, size: usize, dir: Direction) {
        Self::maintain(pa, size, dir == Direction::ToDevice);
    }
    fn sync_for_cpu(&self, pa: PhysAddr, size: usize, dir: Direction) {
        if dir.device_writes() {
            Self::maintain(pa, size, false);
        }
    }
    fn alloc_coherent(&self, size: usize) -> Option<PhysAddr> {
        // Cacheable memory, kept coherent by maintenance on every sync (no non-cacheable alias).
        self.alloc_pages(size, 4096)
    }
    fn free_coherent(&self, pa: PhysAddr, size: usize) {
        self.free_pages(pa, size)
    }
    fn alloc_pages(&self, size: usize, align: usize) -> Option<PhysAddr> {
        let layout = Layout::from_size_align(size, align.max(4096)).ok()?;
        // SAFETY: non-zero size layout.
        let p = unsafe { alloc_zeroed(layout) };
        (!p.is_null()).then_some(p as usize as u64)
    }
    fn free_pages(&self, pa: PhysAddr, size: usize) {
        if let Ok(layout) = Layout::from_size_align(size, 4096) {
            // SAFETY: `pa` came from `alloc_pages` with this size (the layer frees what it
            // allocated with the same size; alignments above 4 KiB are only used for SysMMU
            // level-1 tables, which are never freed).
            unsafe { dealloc(pa as usize as *mut u8, layout) };
        }
    }
    fn copy_phys(&self, dst: PhysAddr, src: PhysAddr, len: usize) -> Result<(), MemError> {
        self.check(src, len)?;
        self.check(dst, len)?;
        // SAFETY: both ranges are RAM, identity-mapped; `copy` allows overlap.
        unsafe { core::ptr::copy(src as usize as *const u8, dst as usize as *mut u8, len) };
        Ok(())
    }
}
