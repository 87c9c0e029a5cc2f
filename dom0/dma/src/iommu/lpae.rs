//! dom0's own SMMUv3 stage-1 context: an AArch64 VMSA stage-1 translation table (4 KiB granule,
//! 48-bit input, four levels, 4 KiB pages and 2 MiB blocks), the context descriptor that points
//! the SMMU at it, and IOTLB invalidation by command-queue commands (TLBI by VA for small
//! batches, by ASID for large ones, then one CMD_SYNC).

use alloc::vec::Vec;

use crate::arch::ArchDmaOps;
use crate::iommu::{IoProt, IommuDomain, IotlbGather};
use crate::types::IommuError;

const GRANULE: u64 = 4096;
const BLOCK_2M: u64 = 2 << 20;
const IAS: u32 = 48;
const OAS_LIMIT: u64 = 1 << 48;
const ADDR_MASK: u64 = 0x0000_FFFF_FFFF_F000;

const VALID: u64 = 1 << 0;
const TABLE_OR_PAGE: u64 = 1 << 1;
const ATTR_SHIFT: u32 = 2;
const AP_UNPRIV: u64 = 1 << 6;
const AP_RDONLY: u64 = 1 << 7;
const SH_INNER: u64 = 3 << 8;
const AF: u64 = 1 << 10;
const NG: u64 = 1 << 11;
const PXN: u64 = 1 << 53;
const UXN: u64 = 1 << 54;

/// MAIR attribute indices used by this table.
pub const MAIR_IDX_NORMAL_WB: u64 = 0;
pub const MAIR_IDX_NORMAL_NC: u64 = 1;
pub const MAIR_IDX_DEVICE: u64 = 2;
/// MAIR value: idx0 Normal WB RA/WA (0xFF), idx1 Normal non-cacheable (0x44), idx2 Device-nGnRE (0x04).
pub const MAIR: u64 = 0xFF | (0x44 << 8) | (0x04 << 16);

/// SMMUv3 command opcodes used here.
pub mod cmd {
    pub const TLBI_NH_ASID: u64 = 0x11;
    pub const TLBI_NH_VA: u64 = 0x12;
    pub const CMD_SYNC: u64 = 0x46;
}

/// Where invalidation commands go: the SMMU's command queue (a model in tests).
pub trait CommandQueue {
    /// Enqueue one 16-byte command.
    fn submit(&mut self, cmd: [u64; 2]);
}

/// A command queue that records commands (host tests, benches).
#[derive(Clone, Debug, Default)]
pub struct RecordingCmdq {
    pub cmds: Vec<[u64; 2]>,
    /// Keep only the count (benches).
    pub count_only: bool,
    pub count: u64,
}

impl CommandQueue for RecordingCmdq {
    fn submit(&mut self, c: [u64; 2]) {
        self.count += 1;
        if !self.count_only {
            self.cmds.push(c);
        }
    }
}

/// One SMMUv3 stage-1 context (ASID + table).
pub struct Smmuv3S1Domain<M: ArchDmaOps, Q: CommandQueue> {
    mem: M,
    q: Q,
    root: u64,
    asid: u16,
    mapped: u64,
    tables: Vec<u64>,
    inv_ops: u64,
    /// Above this many pages one invalidation is by ASID instead of by VA.
    pub asid_threshold: u64,
}

#[inline]
fn index(level: u32, iova: u64) -> u64 {
    (iova >> (39 - 9 * level)) & 511
}

impl<M: ArchDmaOps, Q: CommandQueue> Smmuv3S1Domain<M, Q> {
    /// A context with ASID `asid`, tables allocated through `mem`, invalidations sent to `q`.
    pub fn new(mem: M, q: Q, asid: u16) -> Result<Self, IommuError> {
        let root = mem.alloc_pages(GRANULE as usize, GRANULE as usize).ok_or(IommuError::NoMemory)?;
        let mut d = Smmuv3S1Domain { mem, q, root, asid, mapped: 0, tables: Vec::new(), inv_ops: 0, asid_threshold: 64 };
        d.zero_table(root)?;
        d.tables.push(root);
        Ok(d)
    }

    /// The translation table base (TTB0).
    pub fn root(&self) -> u64 {
        self.root
    }
    /// The command queue (tests read what was sent).
    pub fn cmdq(&self) -> &Q {
        &self.q
    }

    /// The 64-byte context descriptor for this context (little-endian qwords): AArch64 table,
    /// T0SZ 16, 4 KiB granule, WB cacheable inner-shareable walks, TTB1 walks disabled,
    /// 48-bit IPS, faults recorded and aborted, the ASID, TTB0 and MAIR.
    pub fn context_descriptor(&self) -> [u64; 8] {
        let t0sz = u64::from(64 - IAS);
        // TG0 (bits 7:6) = 0: 4 KiB granule.
        let q0 = t0sz
            | (1 << 8)          // IR0 = WB RA/WA
            | (1 << 10)         // OR0 = WB RA/WA
            | (3 << 12)         // SH0 = inner shareable
            | (1 << 30)         // EPD1
            | (1 << 31)         // V
            | (5 << 32)         // IPS = 48 bits
            | (1 << 41)         // AA64
            | (1 << 45)         // R: record faults
            | (1 << 46)         // A: abort on fault
            | (u64::from(self.asid) << 48);
        let q1 = self.root & 0x000F_FFFF_FFFF_FFF0;
        [q0, q1, 0, MAIR, 0, 0, 0, 0]
    }

    fn zero_table(&self, pa: u64) -> Result<(), IommuError> {
        let z = [0u8; 512];
        for off in (0..GRANULE).step_by(512) {
            self.mem.write(pa + off, &z).map_err(|_| IommuError::Memory { pa })?;
        }
        self.mem.clean_dcache(pa, GRANULE as usize);
        Ok(())
    }

    #[inline]
    fn read(&self, pa: u64) -> Result<u64, IommuError> {
        self.mem.read_u64(pa).map_err(|_| IommuError::Memory { pa })
    }

    #[inline]
    fn write(&self, pa: u64, v: u64) -> Result<(), IommuError> {
        self.mem.write_u64(pa, v).map_err(|_| IommuError::Memory { pa })?;
        self.mem.clean_dcache(pa, 8);
        Ok(())
    }

    fn leaf_desc(pa: u64, prot: IoProt, level: u32) -> u64 {
        let attr = if prot.mmio { MAIR_IDX_DEVICE } else { MAIR_IDX_NORMAL_WB };
        let mut d = pa | VALID | AF | SH_INNER | AP_UNPRIV | NG | PXN | UXN | (attr << ATTR_SHIFT);
        if level == 3 {
            d |= TABLE_OR_PAGE;
        }
        // Stage 1 cannot express write-only: a device that only writes gets read-write.
        if !prot.write {
            d |= AP_RDONLY;
        }
        d
    }

    /// Install one leaf at `level` (2 = 2 MiB block, 3 = 4 KiB page).
    fn install(&mut self, iova: u64, desc: u64, level: u32) -> Result<(), IommuError> {
        let mut table = self.root;
        for l in 0..level {
            let slot = table + 8 * index(l, iova);
            let e = self.read(slot)?;
            if e & VALID == 0 {
                let t = self.mem.alloc_pages(GRANULE as usize, GRANULE as usize).ok_or(IommuError::NoMemory)?;
                self.zero_table(t)?;
                self.tables.push(t);
                self.write(slot, t | VALID | TABLE_OR_PAGE)?;
                table = t;
            } else if e & TABLE_OR_PAGE == 0 {
                return Err(IommuError::AlreadyMapped { iova });
            } else {
                table = e & ADDR_MASK;
            }
        }
        let slot = table + 8 * index(level, iova);
        if self.read(slot)? & VALID != 0 {
            return Err(IommuError::AlreadyMapped { iova });
        }
        self.write(slot, desc)
    }

    /// The leaf entry for `iova`: (entry address, entry, level).
    fn find_leaf(&self, iova: u64) -> Result<Option<(u64, u64, u32)>, IommuError> {
        let mut table = self.root;
        for l in 0..4 {
            let slot = table + 8 * index(l, iova);
            let e = self.read(slot)?;
            if e & VALID == 0 {
                return Ok(None);
            }
            if l == 3 || e & TABLE_OR_PAGE == 0 {
                return Ok(Some((slot, e, l)));
            }
            table = e & ADDR_MASK;
        }
        Ok(None)
    }

    fn level_size(level: u32) -> u64 {
        1u64 << (39 - 9 * level)
    }

    fn unmap_inner(&mut self, iova: u64, size: u64, gather: &mut IotlbGather) -> Result<(), IommuError> {
        let end = iova + size;
        let mut at = iova;
        while at < end {
            let (slot, _e, level) = self.find_leaf(at)?.ok_or(IommuError::NotMapped { iova: at })?;
            let sz = Self::level_size(level);
            if at & (sz - 1) != 0 || end - at < sz {
                return Err(IommuError::PartialBlock { iova: at });
            }
            self.write(slot, 0)?;
            self.mapped -= sz;
            gather.add(at, sz);
            at += sz;
        }
        Ok(())
    }

    /// Every leaf mapping `(iova, pa, size)`, in IOVA order (tests cross-check with this).
    pub fn leaves(&self) -> Vec<(u64, u64, u64)> {
        let mut out = Vec::new();
        self.walk(self.root, 0, 0, &mut out);
        out
    }

    fn walk(&self, table: u64, level: u32, base: u64, out: &mut Vec<(u64, u64, u64)>) {
        for i in 0..512u64 {
            let Ok(e) = self.read(table + 8 * i) else { return };
            if e & VALID == 0 {
                continue;
            }
            let va = base | (i << (39 - 9 * level));
            if level == 3 || e & TABLE_OR_PAGE == 0 {
                out.push((va, e & ADDR_MASK & !(Self::level_size(level) - 1), Self::level_size(level)));
            } else {
                self.walk(e & ADDR_MASK, level + 1, va, out);
            }
        }
    }
}

impl<M: ArchDmaOps, Q: CommandQueue> IommuDomain for Smmuv3S1Domain<M, Q> {
    fn name(&self) -> &'static str {
        "smmuv3-s1"
    }
    fn pgsize_bitmap(&self) -> u64 {
        GRANULE | BLOCK_2M
    }
    fn ias(&self) -> u32 {
        IAS
    }

    fn map(&mut self, iova: u64, pa: u64, size: u64, prot: IoProt) -> Result<(), IommuError> {
        if (iova | pa | size) & (GRANULE - 1) != 0 || size == 0 {
            return Err(IommuError::Misaligned { iova, pa, size: size as usize });
        }
        if iova.checked_add(size).is_none_or(|e| e > 1 << IAS) {
            return Err(IommuError::OutOfRange { addr: iova });
        }
        if pa.checked_add(size).is_none_or(|e| e > OAS_LIMIT) {
            return Err(IommuError::OutOfRange { addr: pa });
        }
        let mut done = 0;
        while done < size {
            let (va, p) = (iova + done, pa + done);
            let (level, sz) = if (va | p) & (BLOCK_2M - 1) == 0 && size - done >= BLOCK_2M { (2, BLOCK_2M) } else { (3, GRANULE) };
            if let Err(e) = self.install(va, Self::leaf_desc(p, prot, level), level) {
                if done > 0 {
                    // Roll back what this call mapped; nothing used it yet, so no invalidation.
                    let mut g = IotlbGather::default();
                    let _ = self.unmap_inner(iova, done, &mut g);
                }
                return Err(e);
            }
            self.mapped += sz;
            done += sz;
        }
        Ok(())
    }

    fn unmap(&mut self, iova: u64, size: u64, gather: &mut IotlbGather) -> Result<(), IommuError> {
        if (iova | size) & (GRANULE - 1) != 0 || size == 0 {
            return Err(IommuError::Misaligned { iova, pa: 0, size: size as usize });
        }
        self.unmap_inner(iova, size, gather)
    }

    fn iova_to_phys(&self, iova: u64) -> Option<(u64, IoProt)> {
        let (_, e, level) = self.find_leaf(iova).ok()??;
        let sz = Self::level_size(level);
        let pa = (e & ADDR_MASK & !(sz - 1)) | (iova & (sz - 1));
        let mmio = (e >> ATTR_SHIFT) & 7 == MAIR_IDX_DEVICE;
        Some((pa, IoProt { read: true, write: e & AP_RDONLY == 0, mmio }))
    }

    fn iotlb_sync(&mut self, gather: &IotlbGather) {
        if gather.is_empty() {
            return;
        }
        let asid = u64::from(self.asid) << 48;
        let pages = (gather.end - gather.start) / GRANULE;
        if pages > self.asid_threshold {
            self.q.submit([cmd::TLBI_NH_ASID | asid, 0]);
            self.inv_ops += 1;
        } else {
            let mut va = gather.start;
            while va < gather.end {
                self.q.submit([cmd::TLBI_NH_VA | asid, (va & !(GRANULE - 1)) | 1]);
                self.inv_ops += 1;
                va += GRANULE;
            }
        }
        self.q.submit([cmd::CMD_SYNC, 0]);
        self.inv_ops += 1;
    }

    fn mapped_bytes(&self) -> u64 {
        self.mapped
    }
    fn invalidation_ops(&self) -> u64 {
        self.inv_ops
    }
}

impl<M: ArchDmaOps, Q: CommandQueue> Drop for Smmuv3S1Domain<M, Q> {
    fn drop(&mut self) {
        for &t in &self.tables {
            self.mem.free_pages(t, GRANULE as usize);
        }
    }
}
