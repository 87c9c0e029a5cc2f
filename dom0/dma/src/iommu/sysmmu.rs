//! The Exynos SysMMU (v1-v3 register layout; the Exynos5250 has v3.x) as an IOMMU domain dom0
//! drives: the short-descriptor table format comes from `platform::exynos5250::sysmmu_pt`
//! (shared with the hypervisor's shadow tables); this file adds the level-2 table arena, the
//! register programming that attaches SysMMU instances to the table, and batched TLB flushes
//! (per-entry FLUSH_ENTRY for small batches, FLUSH for large ones, each while blocked).
//! Several instances (FIMD's and the mixer's SysMMU) can share one domain.

use alloc::vec::Vec;

use platform::exynos5250::sysmmu_pt::{
    Lv2TableAllocator, Prot, PtError, PtFormat, SysmmuPageTable, IOVA_SPACE, LV1_TABLE_SIZE, LV2_TABLE_SIZE, PGSIZE_BITMAP,
};
use platform::{Mmio, PhysMem};

use crate::iommu::{IoProt, IommuDomain, IotlbGather, IovaGuard};
use crate::types::IommuError;

/// v1-v3 register offsets.
pub mod reg {
    pub const CTRL: usize = 0x000;
    pub const CFG: usize = 0x004;
    pub const STATUS: usize = 0x008;
    pub const FLUSH: usize = 0x00C;
    pub const FLUSH_ENTRY: usize = 0x010;
    pub const PT_BASE: usize = 0x014;
    pub const VERSION: usize = 0x034;
    pub const CTRL_ENABLE: u32 = 0x5;
    pub const CTRL_BLOCK: u32 = 0x7;
}

/// Above this many pages a flush is FLUSH (all) rather than per-entry.
pub const ENTRY_FLUSH_LIMIT: u64 = 64;
/// STATUS reads while waiting for the block handshake.
const BLOCK_POLLS: u32 = 120;

/// A fixed region carved into 1 KiB level-2 tables (and the 16 KiB level-1 table).
pub struct TableArena {
    next: u64,
    end: u64,
    free: Vec<u64>,
    pub live: usize,
}

impl TableArena {
    /// An arena over `[base, base+size)` (1 KiB aligned).
    pub fn new(base: u64, size: u64) -> TableArena {
        TableArena { next: base, end: base + size, free: Vec::new(), live: 0 }
    }
}

impl Lv2TableAllocator for TableArena {
    fn alloc_lv2(&mut self) -> Option<u64> {
        let t = match self.free.pop() {
            Some(t) => t,
            None if self.next + LV2_TABLE_SIZE as u64 <= self.end => {
                self.next += LV2_TABLE_SIZE as u64;
                self.next - LV2_TABLE_SIZE as u64
            }
            None => return None,
        };
        self.live += 1;
        Some(t)
    }
    fn free_lv2(&mut self, pa: u64) {
        self.live -= 1;
        self.free.push(pa);
    }
}

/// The SysMMU CFG value for a v3.`minor` (and earlier) instance.
pub fn cfg_for_version(major: u32, minor: u32) -> u32 {
    const LRU: u32 = 1 << 0;
    const EAP: u32 = 1 << 2;
    const QOS15: u32 = 15 << 7;
    const FLPDCACHE: u32 = 1 << 20;
    const SYSSEL: u32 = 1 << 22;
    const ACGEN: u32 = 1 << 24;
    let cfg = if major < 3 || (major == 3 && minor <= 1) {
        LRU | QOS15
    } else if major == 3 && minor == 2 {
        LRU | QOS15 | FLPDCACHE | SYSSEL
    } else {
        QOS15 | FLPDCACHE | ACGEN
    };
    cfg | EAP
}

/// IOVA placement a SysMMU of this version needs: v3.x prefetches neighbouring level-2
/// entries (fault entries included), so ranges are kept 128 KiB aligned with a 128 KiB hole
/// (v3.1 and earlier v3) or 256 KiB (v3.2 and later v3).
pub fn prefetch_guard(major: u32, minor: u32) -> IovaGuard {
    match (major, minor) {
        (3, 0..=1) => IovaGuard { align: 128 << 10, hole: 128 << 10 },
        (3, _) => IovaGuard { align: 256 << 10, hole: 256 << 10 },
        _ => IovaGuard::NONE,
    }
}

fn pt_err(e: PtError, iova: u64) -> IommuError {
    match e {
        PtError::Misaligned { addr, .. } => IommuError::Misaligned { iova, pa: addr, size: 0 },
        PtError::PaOutOfRange { pa } => IommuError::OutOfRange { addr: pa },
        PtError::BadRange { iova, .. } => IommuError::OutOfRange { addr: iova },
        PtError::AlreadyMapped { iova } => IommuError::AlreadyMapped { iova: u64::from(iova) },
        PtError::OutOfTables => IommuError::NoMemory,
        PtError::Memory(platform::MemError::NotMemory { pa }) => IommuError::Memory { pa },
    }
}

/// One SysMMU domain: a table in memory `P` and the register blocks `R` of its instances.
pub struct SysmmuDomain<P: PhysMem, R: Mmio> {
    mem: P,
    arena: TableArena,
    pt: SysmmuPageTable,
    instances: Vec<R>,
    mapped: u64,
    inv_ops: u64,
    block_timeouts: u64,
    guard: IovaGuard,
}

impl<P: PhysMem, R: Mmio> SysmmuDomain<P, R> {
    /// A domain whose tables live in `[table_base, table_base + table_size)` of `mem`: the
    /// first 16 KiB (16 KiB aligned) hold level 1, the rest level-2 tables.
    pub fn new(mem: P, table_base: u64, table_size: u64) -> Result<Self, IommuError> {
        if !table_base.is_multiple_of(LV1_TABLE_SIZE as u64) || table_size < (LV1_TABLE_SIZE + 2 * LV2_TABLE_SIZE) as u64 {
            return Err(IommuError::Misaligned { iova: 0, pa: table_base, size: table_size as usize });
        }
        let mut arena = TableArena::new(table_base + LV1_TABLE_SIZE as u64, table_size - LV1_TABLE_SIZE as u64);
        let pt = SysmmuPageTable::new(&mem, &mut arena, PtFormat::V1, table_base).map_err(|e| pt_err(e, 0))?;
        Ok(SysmmuDomain { mem, arena, pt, instances: Vec::new(), mapped: 0, inv_ops: 0, block_timeouts: 0, guard: IovaGuard::NONE })
    }

    /// The level-1 table's address (PT_BASE).
    pub fn pgd(&self) -> u64 {
        self.pt.pgd_pa()
    }
    /// Level-2 tables in use (besides the shared zero table).
    pub fn lv2_tables(&self) -> usize {
        self.arena.live - 1
    }
    /// The attached instances.
    pub fn instances(&self) -> &[R] {
        &self.instances
    }
    /// Block handshakes that timed out.
    pub fn block_timeouts(&self) -> u64 {
        self.block_timeouts
    }

    /// Attach a SysMMU instance: block, CFG for its version, PT_BASE, flush all, enable.
    /// The master's and the SysMMU's clocks must be on (the caller's driver does that).
    pub fn attach(&mut self, regs: R) {
        let v = regs.read32(reg::VERSION);
        let (major, minor) = (v >> 28, (v >> 21) & 0x7F);
        let g = prefetch_guard(major, minor);
        self.guard = IovaGuard { align: self.guard.align.max(g.align), hole: self.guard.hole.max(g.hole) };
        self.block(&regs);
        regs.write32(reg::CFG, cfg_for_version(major, minor));
        regs.write32(reg::PT_BASE, self.pt.pgd_pa() as u32);
        regs.write32(reg::FLUSH, 1);
        regs.write32(reg::CTRL, reg::CTRL_ENABLE);
        self.instances.push(regs);
    }

    fn block(&mut self, regs: &R) -> bool {
        regs.write32(reg::CTRL, reg::CTRL_BLOCK);
        for _ in 0..BLOCK_POLLS {
            if regs.read32(reg::STATUS) & 1 != 0 {
                return true;
            }
        }
        self.block_timeouts += 1;
        crate::dma_warn!("sysmmu: block handshake timed out");
        false
    }

    fn flush_entries(&mut self, iova: u64, end: u64, all: bool) {
        for i in 0..self.instances.len() {
            let blocked = {
                let regs = &self.instances[i];
                regs.write32(reg::CTRL, reg::CTRL_BLOCK);
                (0..BLOCK_POLLS).any(|_| regs.read32(reg::STATUS) & 1 != 0)
            };
            if !blocked {
                self.block_timeouts += 1;
            }
            let regs = &self.instances[i];
            if all || !blocked {
                regs.write32(reg::FLUSH, 1);
                self.inv_ops += 1;
            } else {
                let mut va = iova & !0xFFF;
                while va < end {
                    regs.write32(reg::FLUSH_ENTRY, (va as u32) | 1);
                    self.inv_ops += 1;
                    va += 0x1000;
                }
            }
            regs.write32(reg::CTRL, reg::CTRL_ENABLE);
        }
    }
}

impl<P: PhysMem, R: Mmio> IommuDomain for SysmmuDomain<P, R> {
    fn name(&self) -> &'static str {
        "exynos-sysmmu"
    }
    fn pgsize_bitmap(&self) -> u64 {
        PGSIZE_BITMAP
    }
    fn ias(&self) -> u32 {
        32
    }

    fn map(&mut self, iova: u64, pa: u64, size: u64, prot: IoProt) -> Result<(), IommuError> {
        if iova.checked_add(size).is_none_or(|e| e > IOVA_SPACE) {
            return Err(IommuError::OutOfRange { addr: iova });
        }
        let p = Prot { read: prot.read, write: prot.write };
        let f = self.pt.map(&self.mem, &mut self.arena, iova as u32, pa, size, p).map_err(|e| pt_err(e, iova))?;
        self.mapped += size;
        if f.flpd {
            // A zero link became a real table or section: drop the cached level-1 entry
            // (FLUSH_ENTRY for that IOVA; the v3.x FLPD cache would otherwise keep the fault).
            self.flush_entries(f.iova, f.iova + 1, false);
        }
        Ok(())
    }

    fn unmap(&mut self, iova: u64, size: u64, gather: &mut IotlbGather) -> Result<(), IommuError> {
        // The table skips holes; refuse to unmap what is not fully mapped so records stay exact.
        let mut at = iova;
        while at < iova + size {
            if self.pt.translate(&self.mem, at as u32).is_err() {
                return Err(IommuError::NotMapped { iova: at });
            }
            at += 0x1000;
        }
        let f = self.pt.unmap(&self.mem, &mut self.arena, iova as u32, size).map_err(|e| pt_err(e, iova))?;
        self.mapped -= size;
        if f.len > 0 {
            gather.add(f.iova, f.len);
        }
        Ok(())
    }

    fn iova_to_phys(&self, iova: u64) -> Option<(u64, IoProt)> {
        if iova >= IOVA_SPACE {
            return None;
        }
        let (pa, p) = self.pt.translate(&self.mem, iova as u32).ok()?;
        Some((pa, IoProt { read: p.read, write: p.write, mmio: false }))
    }

    fn iotlb_sync(&mut self, gather: &IotlbGather) {
        if gather.is_empty() {
            return;
        }
        let pages = (gather.end - gather.start).div_ceil(0x1000);
        self.flush_entries(gather.start, gather.end, pages > ENTRY_FLUSH_LIMIT);
    }

    fn mapped_bytes(&self) -> u64 {
        self.mapped
    }
    fn invalidation_ops(&self) -> u64 {
        self.inv_ops
    }
    fn iova_guard(&self) -> IovaGuard {
        self.guard
    }
}
