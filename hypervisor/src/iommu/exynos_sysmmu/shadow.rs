//! The shadow IO page table of a hypervisor-owned SysMMU: the owning domain's p2m (AArch64 LPAE,
//! which the SysMMU cannot walk) mirrored into the SysMMU's short-descriptor format, IOVA = IPA.
//! Every p2m change calls [`ShadowTable::map`] or [`ShadowTable::unmap`]; this file decides what to
//! invalidate in each attached SysMMU after each edit. Also [`IovaLayout`], for IOVA regions the
//! hypervisor chooses itself, which follow the v3.x prefetch-gap rule.

use alloc::vec::Vec;
use core::fmt;

use platform::exynos5250::sysmmu_pt::{
    Flush, Lv2TableAllocator, Prot, PtError, PtFormat, SysmmuPageTable, IOVA_SPACE, SMALL_PAGE_SIZE,
};
use platform::{Mmio, PhysMem};

use super::driver::{prefetch_granule, Sysmmu, SysmmuError};
use super::regs::SysmmuVersion;

/// Why a shadow-table operation failed. The table is never left granting more than the p2m.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShadowError {
    /// IPA, PA or size not 4 KiB aligned, or size 0.
    Misaligned { ipa: u64, pa: u64, size: u64 },
    /// A SysMMU of another table format cannot share this table.
    FormatMismatch,
    /// The table edit failed (e.g. a PA above what the format holds: the page stays unmapped).
    Table(PtError),
    /// A SysMMU operation failed (it was left blocked).
    Sysmmu(SysmmuError),
}

impl From<PtError> for ShadowError {
    fn from(e: PtError) -> Self {
        ShadowError::Table(e)
    }
}

impl From<SysmmuError> for ShadowError {
    fn from(e: SysmmuError) -> Self {
        ShadowError::Sysmmu(e)
    }
}

impl fmt::Display for ShadowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShadowError::Misaligned { ipa, pa, size } => {
                write!(f, "shadow map {ipa:#x} -> {pa:#x} size {size:#x} is not page aligned")
            }
            ShadowError::FormatMismatch => write!(f, "SysMMU page-table format differs from the shadow table's"),
            ShadowError::Table(e) => write!(f, "shadow table: {e}"),
            ShadowError::Sysmmu(e) => write!(f, "shadow table: {e}"),
        }
    }
}

/// A domain's shadow table and the SysMMUs that walk it.
pub struct ShadowTable<P: PhysMem, A: Lv2TableAllocator, M: Mmio> {
    mem: P,
    alloc: A,
    pt: SysmmuPageTable,
    mmus: Vec<Sysmmu<M>>,
}

impl<P: PhysMem, A: Lv2TableAllocator, M: Mmio> ShadowTable<P, A, M> {
    /// An empty shadow table with its level-1 table at `pgd_pa` (16 KiB, 16 KiB aligned).
    pub fn new(mem: P, mut alloc: A, format: PtFormat, pgd_pa: u64) -> Result<Self, ShadowError> {
        let pt = SysmmuPageTable::new(&mem, &mut alloc, format, pgd_pa)?;
        Ok(ShadowTable { mem, alloc, pt, mmus: Vec::new() })
    }

    /// The table editor (read-only access, for lookups and tests).
    pub fn table(&self) -> &SysmmuPageTable {
        &self.pt
    }

    pub fn mem(&self) -> &P {
        &self.mem
    }

    pub fn sysmmus(&self) -> &[Sysmmu<M>] {
        &self.mmus
    }

    /// Point a SysMMU at this table and enable translation. On error the SysMMU is left blocked
    /// and handed back.
    pub fn attach(&mut self, mmu: Sysmmu<M>) -> Result<(), (ShadowError, Sysmmu<M>)> {
        if mmu.pt_format() != self.pt.format() {
            mmu.isolate();
            return Err((ShadowError::FormatMismatch, mmu));
        }
        if let Err(e) = mmu.enable(self.pt.pgd_pa()) {
            return Err((e.into(), mmu));
        }
        self.mmus.push(mmu);
        Ok(())
    }

    /// Stop and hand back the SysMMU at `index`, left blocked (its master stalls).
    pub fn detach(&mut self, index: usize) -> Option<Sysmmu<M>> {
        if index >= self.mmus.len() {
            return None;
        }
        let mmu = self.mmus.remove(index);
        mmu.isolate();
        Some(mmu)
    }

    /// Hand back the SysMMU at `index` without touching its registers: its power domain is
    /// going off (the registers are lost, and a powered-off block must not be accessed).
    pub fn forget(&mut self, index: usize) -> Option<Sysmmu<M>> {
        (index < self.mmus.len()).then(|| self.mmus.remove(index))
    }

    /// Reprogram every attached SysMMU after its power domain came back (registers are lost when
    /// the domain is off, and the SysMMU then bypasses): call before the master runs again.
    /// Each one that fails is left blocked; the first error is returned.
    pub fn resume(&self) -> Result<(), ShadowError> {
        let mut first_err = None;
        for mmu in &self.mmus {
            if let Err(e) = mmu.enable(self.pt.pgd_pa()) {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// The translation the SysMMUs would find for `ipa` (CPU view of the table).
    pub fn lookup(&self, ipa: u64) -> Option<(u64, bool)> {
        if ipa >= IOVA_SPACE {
            return None;
        }
        let (pa, prot) = self.pt.translate(&self.mem, ipa as u32).ok()?;
        Some((pa, prot.write))
    }

    /// Invalidate after an edit. An unmap (or a changed level-1 entry) needs the full flush; a map
    /// needs the TLB part only on v3.x, whose prefetch buffer may hold the old fault entries.
    fn flush(&self, flush: Flush, for_map: bool) -> Result<(), ShadowError> {
        let mut first_err = None;
        for mmu in &self.mmus {
            let r = if for_map && !mmu.has_prefetch_quirk() {
                mmu.apply_flpd(flush);
                Ok(())
            } else {
                mmu.apply(flush)
            };
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Mirror a p2m mapping: IOVA `ipa` -> `pa` for `size` bytes, read-write or read-only.
    /// Replaces whatever the range held. Parts at or above 4 GiB are not DMA-addressable and are
    /// skipped. On error the range is left unmapped (the device faults rather than reaching memory
    /// the p2m no longer grants).
    pub fn map(&mut self, ipa: u64, pa: u64, size: u64, writable: bool) -> Result<(), ShadowError> {
        if size == 0 || !(ipa | pa | size).is_multiple_of(SMALL_PAGE_SIZE) {
            return Err(ShadowError::Misaligned { ipa, pa, size });
        }
        if ipa >= IOVA_SPACE {
            return Ok(());
        }
        let size = size.min(IOVA_SPACE - ipa);
        self.unmap(ipa, size)?;
        let prot = if writable { Prot::RW } else { Prot::RO };
        let flush = self.pt.map(&self.mem, &mut self.alloc, ipa as u32, pa, size, prot)?;
        self.flush(flush, true)
    }

    /// Mirror a p2m unmap of `[ipa, ipa + size)`.
    pub fn unmap(&mut self, ipa: u64, size: u64) -> Result<(), ShadowError> {
        if size == 0 || !(ipa | size).is_multiple_of(SMALL_PAGE_SIZE) {
            return Err(ShadowError::Misaligned { ipa, pa: 0, size });
        }
        if ipa >= IOVA_SPACE {
            return Ok(());
        }
        let size = size.min(IOVA_SPACE - ipa);
        let flush = match self.pt.unmap(&self.mem, &mut self.alloc, ipa as u32, size) {
            Ok(f) => f,
            Err(e) => {
                // The table may be partly edited: drop every cached translation before reporting.
                for mmu in &self.mmus {
                    let _ = mmu.flush_all();
                }
                return Err(e.into());
            }
        };
        self.flush(flush, false)
    }
}

/// Lays out IOVA regions the hypervisor chooses itself so that a v3.x prefetch of one region's
/// level-2 block never reads a neighbour's entries: every region starts on a prefetch-granule
/// boundary and is followed by a hole of at least one granule.
#[derive(Clone, Debug)]
pub struct IovaLayout {
    next: u64,
    end: u64,
    granule: u64,
}

impl IovaLayout {
    /// Regions inside `[start, end)` for a SysMMU of `version`.
    pub fn new(version: SysmmuVersion, start: u64, end: u64) -> Self {
        let granule = prefetch_granule(version);
        IovaLayout { next: start.next_multiple_of(granule), end: end.min(IOVA_SPACE), granule }
    }

    pub fn granule(&self) -> u64 {
        self.granule
    }

    /// The IOVA of a new region of `len` bytes, or `None` when the window is full.
    pub fn place(&mut self, len: u64) -> Option<u32> {
        if len == 0 {
            return None;
        }
        let start = self.next;
        let end = start.checked_add(len)?;
        if end > self.end {
            return None;
        }
        self.next = end.next_multiple_of(self.granule) + self.granule;
        Some(start as u32)
    }
}
