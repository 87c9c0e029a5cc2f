//! The Exynos SysMMU IO page-table format (ARMv7 short-descriptor flavour the SysMMU walks): entry
//! encode/decode for v1-v3 and v5, a walker ([`translate`]) and a small table editor
//! ([`SysmmuPageTable`]) that cleans every table write to the point of coherency.
//!
//! Layout: level 1 is 4096 x u32 (16 KiB, 16 KiB aligned) indexed by iova[31:20]; level 2 is 256 x u32
//! (1 KiB, 1 KiB aligned) indexed by iova[19:12]. Level-1 entries: [1:0] = 00/11 fault, 01 level-2
//! link, 10 1 MiB section. Level-2 entries: [1:0] = 00 fault, 01 64 KiB large page (replicated in 16
//! consecutive entries), 1x 4 KiB small page. v1-v3 store 32-bit PAs as is; v5 stores PA >> 4 (36-bit
//! PA) and has its own permission bits.
//!
//! The editor uses the zero-LV2-link scheme needed by SysMMU v3.3 (and harmless elsewhere): every
//! level-1 entry that maps nothing holds [`SysmmuPageTable::zero_lv2link`], a link to one shared
//! all-fault level-2 table, never a raw fault value; unmapping a section writes that link back.

use crate::hal::{MemError, PhysMem};

/// Bytes mapped by one level-1 section.
pub const SECTION_SIZE: u64 = 1 << 20;
/// Bytes mapped by one level-2 large page.
pub const LARGE_PAGE_SIZE: u64 = 1 << 16;
/// Bytes mapped by one level-2 small page.
pub const SMALL_PAGE_SIZE: u64 = 1 << 12;
/// Entries in the level-1 table.
pub const NUM_LV1_ENTRIES: usize = 4096;
/// Entries in a level-2 table.
pub const NUM_LV2_ENTRIES: usize = 256;
/// Size (and required alignment) of the level-1 table in bytes.
pub const LV1_TABLE_SIZE: usize = NUM_LV1_ENTRIES * 4;
/// Size (and required alignment) of a level-2 table in bytes.
pub const LV2_TABLE_SIZE: usize = NUM_LV2_ENTRIES * 4;
/// How many consecutive level-2 entries hold one large page.
pub const LARGE_PAGE_REPLICAS: usize = 16;
/// Size of the IOVA space (32-bit).
pub const IOVA_SPACE: u64 = 1 << 32;
/// Page sizes the SysMMU supports, as a bitmap (1 MiB | 64 KiB | 4 KiB).
pub const PGSIZE_BITMAP: u64 = SECTION_SIZE | LARGE_PAGE_SIZE | SMALL_PAGE_SIZE;

/// Level-1 entry type bits [1:0].
pub const LV1_TYPE_MASK: u32 = 0b11;
pub const LV1_TYPE_LINK: u32 = 0b01;
pub const LV1_TYPE_SECTION: u32 = 0b10;
/// Level-2 entry type bits [1:0] (bit 1 set means small page).
pub const LV2_TYPE_MASK: u32 = 0b11;
pub const LV2_TYPE_LARGE: u32 = 0b01;
pub const LV2_TYPE_SMALL: u32 = 0b10;

/// v1-v3 section permission bits: bit 10 = access allowed, bit 15 = read-only.
pub const V1_SECT_AP: u32 = 1 << 10;
pub const V1_SECT_RO: u32 = 1 << 15;
/// v1-v3 page permission bits: bit 4 = access allowed, bit 9 = read-only.
pub const V1_PAGE_AP: u32 = 1 << 4;
pub const V1_PAGE_RO: u32 = 1 << 9;
/// v5 permission field shift in level-1 (bits [5:4]) and level-2 (bits [3:2]) entries: 1 R, 2 W, 3 RW.
pub const V5_LV1_PROT_SHIFT: u32 = 4;
pub const V5_LV2_PROT_SHIFT: u32 = 2;
/// v5 entries hold PA >> 4.
pub const V5_PA_SHIFT: u32 = 4;

/// Level-1 index of an IOVA (iova[31:20]).
pub const fn lv1_index(iova: u32) -> usize {
    (iova >> 20) as usize
}

/// Level-2 index of an IOVA (iova[19:12]).
pub const fn lv2_index(iova: u32) -> usize {
    ((iova >> 12) & 0xff) as usize
}

/// Physical address of the level-1 entry for `iova` in the table at `pgd_pa`.
pub const fn lv1_entry_pa(pgd_pa: u64, iova: u32) -> u64 {
    pgd_pa + 4 * lv1_index(iova) as u64
}

/// Physical address of the level-2 entry for `iova` in the level-2 table at `table_pa`.
pub const fn lv2_entry_pa(table_pa: u64, iova: u32) -> u64 {
    table_pa + 4 * lv2_index(iova) as u64
}

/// Which entry encoding a SysMMU uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PtFormat {
    /// SysMMU v1, v2 and v3 (the Exynos5250 has v3.x): 32-bit PA stored as is.
    V1,
    /// SysMMU v5 (and v7): PA >> 4 stored, 36-bit PA, different permission bits.
    V5,
}

impl PtFormat {
    /// Largest physical address (exclusive) an entry can hold.
    pub const fn pa_limit(self) -> u64 {
        match self {
            PtFormat::V1 => 1 << 32,
            PtFormat::V5 => 1 << 36,
        }
    }
}

/// Access permissions of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Prot {
    pub read: bool,
    pub write: bool,
}

impl Prot {
    pub const NONE: Prot = Prot { read: false, write: false };
    pub const RO: Prot = Prot { read: true, write: false };
    pub const WO: Prot = Prot { read: false, write: true };
    pub const RW: Prot = Prot { read: true, write: true };

    /// Whether an access of this kind is allowed.
    pub const fn allows(self, write: bool) -> bool {
        if write {
            self.write
        } else {
            self.read
        }
    }
}

/// The page sizes the SysMMU maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PageSize {
    Small4K,
    Large64K,
    Section1M,
}

impl PageSize {
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Small4K => SMALL_PAGE_SIZE,
            PageSize::Large64K => LARGE_PAGE_SIZE,
            PageSize::Section1M => SECTION_SIZE,
        }
    }
}

/// A decoded level-1 entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lv1Entry {
    Fault,
    Lv2Link { table_pa: u64 },
    Section { pa: u64, prot: Prot },
}

/// A decoded level-2 entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lv2Entry {
    Fault,
    LargePage { pa: u64, prot: Prot },
    SmallPage { pa: u64, prot: Prot },
}

/// Why an entry could not be encoded or a table edit was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PtError {
    /// An address is not aligned to what the entry or page size requires.
    Misaligned { addr: u64, align: u64 },
    /// The physical address does not fit the format (32-bit for v1-v3, 36-bit for v5).
    PaOutOfRange { pa: u64 },
    /// The IOVA range runs past 4 GiB or has zero length.
    BadRange { iova: u64, len: u64 },
    /// Part of the range is already mapped.
    AlreadyMapped { iova: u32 },
    /// The table allocator has no level-2 table left.
    OutOfTables,
    /// A table access failed.
    Memory(MemError),
}

impl From<MemError> for PtError {
    fn from(e: MemError) -> Self {
        PtError::Memory(e)
    }
}

impl core::fmt::Display for PtError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PtError::Misaligned { addr, align } => {
                write!(f, "address {addr:#x} is not aligned to {align:#x}")
            }
            PtError::PaOutOfRange { pa } => {
                write!(f, "physical address {pa:#x} does not fit a SysMMU entry")
            }
            PtError::BadRange { iova, len } => {
                write!(f, "IOVA range {iova:#x}+{len:#x} is empty or runs past 4 GiB")
            }
            PtError::AlreadyMapped { iova } => write!(f, "IOVA {iova:#x} is already mapped"),
            PtError::OutOfTables => write!(f, "no level-2 table left"),
            PtError::Memory(e) => write!(f, "page-table memory: {e}"),
        }
    }
}

fn check_pa(format: PtFormat, pa: u64, align: u64) -> Result<(), PtError> {
    if !pa.is_multiple_of(align) {
        return Err(PtError::Misaligned { addr: pa, align });
    }
    if pa >= format.pa_limit() {
        return Err(PtError::PaOutOfRange { pa });
    }
    Ok(())
}

fn store_pa(format: PtFormat, pa: u64) -> u32 {
    match format {
        PtFormat::V1 => pa as u32,
        PtFormat::V5 => (pa >> V5_PA_SHIFT) as u32,
    }
}

fn load_pa(format: PtFormat, raw: u32) -> u64 {
    match format {
        PtFormat::V1 => u64::from(raw),
        PtFormat::V5 => u64::from(raw) << V5_PA_SHIFT,
    }
}

fn v5_prot_bits(prot: Prot) -> u32 {
    u32::from(prot.read) | (u32::from(prot.write) << 1)
}

fn v5_prot(field: u32) -> Prot {
    Prot { read: field & 1 != 0, write: field & 2 != 0 }
}

/// Encode a level-1 entry. v1-v3 cannot express write-only: it becomes read-write.
pub fn encode_lv1(format: PtFormat, entry: Lv1Entry) -> Result<u32, PtError> {
    match entry {
        Lv1Entry::Fault => Ok(0),
        Lv1Entry::Lv2Link { table_pa } => {
            check_pa(format, table_pa, LV2_TABLE_SIZE as u64)?;
            Ok(store_pa(format, table_pa) | LV1_TYPE_LINK)
        }
        Lv1Entry::Section { pa, prot } => {
            check_pa(format, pa, SECTION_SIZE)?;
            let bits = match format {
                PtFormat::V1 => match (prot.read, prot.write) {
                    (false, false) => 0,
                    (true, false) => V1_SECT_AP | V1_SECT_RO,
                    _ => V1_SECT_AP,
                },
                PtFormat::V5 => v5_prot_bits(prot) << V5_LV1_PROT_SHIFT,
            };
            Ok(store_pa(format, pa) | bits | LV1_TYPE_SECTION)
        }
    }
}

/// Decode a level-1 entry.
pub fn decode_lv1(format: PtFormat, raw: u32) -> Lv1Entry {
    match raw & LV1_TYPE_MASK {
        LV1_TYPE_LINK => {
            let table_pa = match format {
                PtFormat::V1 => u64::from(raw & !(LV2_TABLE_SIZE as u32 - 1)),
                PtFormat::V5 => load_pa(format, raw & !0x3f),
            };
            Lv1Entry::Lv2Link { table_pa }
        }
        LV1_TYPE_SECTION => {
            let pa = load_pa(format, raw) & !(SECTION_SIZE - 1);
            let prot = match format {
                PtFormat::V1 => {
                    if raw & V1_SECT_AP == 0 {
                        Prot::NONE
                    } else if raw & V1_SECT_RO != 0 {
                        Prot::RO
                    } else {
                        Prot::RW
                    }
                }
                PtFormat::V5 => v5_prot((raw >> V5_LV1_PROT_SHIFT) & 3),
            };
            Lv1Entry::Section { pa, prot }
        }
        _ => Lv1Entry::Fault,
    }
}

fn page_prot_bits(format: PtFormat, prot: Prot) -> u32 {
    match format {
        PtFormat::V1 => match (prot.read, prot.write) {
            (false, false) => 0,
            (true, false) => V1_PAGE_AP | V1_PAGE_RO,
            _ => V1_PAGE_AP,
        },
        PtFormat::V5 => v5_prot_bits(prot) << V5_LV2_PROT_SHIFT,
    }
}

/// Encode a level-2 entry (one of the 16 replicas, for a large page).
pub fn encode_lv2(format: PtFormat, entry: Lv2Entry) -> Result<u32, PtError> {
    match entry {
        Lv2Entry::Fault => Ok(0),
        Lv2Entry::LargePage { pa, prot } => {
            check_pa(format, pa, LARGE_PAGE_SIZE)?;
            Ok(store_pa(format, pa) | page_prot_bits(format, prot) | LV2_TYPE_LARGE)
        }
        Lv2Entry::SmallPage { pa, prot } => {
            check_pa(format, pa, SMALL_PAGE_SIZE)?;
            Ok(store_pa(format, pa) | page_prot_bits(format, prot) | LV2_TYPE_SMALL)
        }
    }
}

/// Decode a level-2 entry.
pub fn decode_lv2(format: PtFormat, raw: u32) -> Lv2Entry {
    let prot = match format {
        PtFormat::V1 => {
            if raw & V1_PAGE_AP == 0 {
                Prot::NONE
            } else if raw & V1_PAGE_RO != 0 {
                Prot::RO
            } else {
                Prot::RW
            }
        }
        PtFormat::V5 => v5_prot((raw >> V5_LV2_PROT_SHIFT) & 3),
    };
    if raw & LV2_TYPE_SMALL != 0 {
        Lv2Entry::SmallPage { pa: load_pa(format, raw) & !(SMALL_PAGE_SIZE - 1), prot }
    } else if raw & LV2_TYPE_MASK == LV2_TYPE_LARGE {
        Lv2Entry::LargePage { pa: load_pa(format, raw) & !(LARGE_PAGE_SIZE - 1), prot }
    } else {
        Lv2Entry::Fault
    }
}

/// The level-1 value of the zero-LV2 link: a link to the shared all-fault level-2 table.
pub fn zero_lv2link(format: PtFormat, zero_lv2_pa: u64) -> Result<u32, PtError> {
    encode_lv1(format, Lv1Entry::Lv2Link { table_pa: zero_lv2_pa })
}

/// Why a walk found no translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The level-1 entry is a fault entry.
    Lv1 { iova: u32 },
    /// The level-2 entry is a fault entry (this includes the zero-LV2 link).
    Lv2 { iova: u32 },
    /// A table read failed (a link points outside memory).
    Memory { iova: u32, err: MemError },
}

impl core::fmt::Display for Fault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Fault::Lv1 { iova } => write!(f, "IOVA {iova:#x}: level-1 fault entry"),
            Fault::Lv2 { iova } => write!(f, "IOVA {iova:#x}: level-2 fault entry"),
            Fault::Memory { iova, err } => write!(f, "IOVA {iova:#x}: table read failed: {err}"),
        }
    }
}

/// Walk a v1-v3 table (the Exynos5250's format) and return the PA and permissions of `iova`.
pub fn translate(mem: &dyn PhysMem, pgd_pa: u64, iova: u32) -> Result<(u64, Prot), Fault> {
    translate_with(mem, PtFormat::V1, pgd_pa, iova)
}

/// Walk a table of the given format and return the PA and permissions of `iova`.
pub fn translate_with(
    mem: &dyn PhysMem,
    format: PtFormat,
    pgd_pa: u64,
    iova: u32,
) -> Result<(u64, Prot), Fault> {
    let memfault = |err| Fault::Memory { iova, err };
    let raw = mem.read_u32(lv1_entry_pa(pgd_pa, iova)).map_err(memfault)?;
    match decode_lv1(format, raw) {
        Lv1Entry::Fault => Err(Fault::Lv1 { iova }),
        Lv1Entry::Section { pa, prot } => Ok((pa | (u64::from(iova) % SECTION_SIZE), prot)),
        Lv1Entry::Lv2Link { table_pa } => {
            let raw = mem.read_u32(lv2_entry_pa(table_pa, iova)).map_err(memfault)?;
            match decode_lv2(format, raw) {
                Lv2Entry::Fault => Err(Fault::Lv2 { iova }),
                Lv2Entry::LargePage { pa, prot } => {
                    Ok((pa | (u64::from(iova) % LARGE_PAGE_SIZE), prot))
                }
                Lv2Entry::SmallPage { pa, prot } => {
                    Ok((pa | (u64::from(iova) % SMALL_PAGE_SIZE), prot))
                }
            }
        }
    }
}

/// Where the editor gets level-2 tables (1 KiB, 1 KiB aligned) from. Contents need not be zeroed.
pub trait Lv2TableAllocator {
    /// A free 1 KiB-aligned, 1 KiB physical block, or `None` when exhausted.
    fn alloc_lv2(&mut self) -> Option<u64>;
    /// Give a block back. Called only once the table is no longer linked.
    fn free_lv2(&mut self, pa: u64);
}

/// What the caller must invalidate in the SysMMU after an edit: the TLB/prefetch entries of every
/// 4 KiB page in `[iova, iova + len)` and, when `flpd`, the FLPD-cache entry of every 1 MiB in it.
/// `len == 0` means nothing to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Flush {
    pub iova: u64,
    pub len: u64,
    /// A level-1 entry in the range changed (zero link <-> section or link).
    pub flpd: bool,
}

impl Flush {
    /// Nothing to invalidate.
    pub const NONE: Flush = Flush { iova: 0, len: 0, flpd: false };

    /// The smallest flush covering both.
    pub fn merge(self, other: Flush) -> Flush {
        if self.len == 0 {
            return other;
        }
        if other.len == 0 {
            return self;
        }
        let start = self.iova.min(other.iova);
        let end = (self.iova + self.len).max(other.iova + other.len);
        Flush { iova: start, len: end - start, flpd: self.flpd || other.flpd }
    }
}

/// An editor for one SysMMU page table in physical memory. It keeps no copy of the table: the
/// table itself (read through the CPU's view of `PhysMem`) is the state. Every write is followed by a
/// cache clean of the written bytes, because the SysMMU walker does not snoop the CPU caches.
#[derive(Debug)]
pub struct SysmmuPageTable {
    format: PtFormat,
    pgd_pa: u64,
    zero_lv2_pa: u64,
    zero_link: u32,
}

fn check_range(iova: u64, len: u64, align: u64) -> Result<(), PtError> {
    if len == 0 || iova.checked_add(len).is_none_or(|end| end > IOVA_SPACE) {
        return Err(PtError::BadRange { iova, len });
    }
    if !iova.is_multiple_of(align) {
        return Err(PtError::Misaligned { addr: iova, align });
    }
    if !len.is_multiple_of(align) {
        return Err(PtError::Misaligned { addr: len, align });
    }
    Ok(())
}

impl SysmmuPageTable {
    /// Set up an empty table at `pgd_pa` (16 KiB, 16 KiB aligned): allocate the shared zero
    /// level-2 table, zero it, and fill every level-1 entry with the zero-LV2 link.
    pub fn new(
        mem: &dyn PhysMem,
        alloc: &mut dyn Lv2TableAllocator,
        format: PtFormat,
        pgd_pa: u64,
    ) -> Result<Self, PtError> {
        check_pa(format, pgd_pa, LV1_TABLE_SIZE as u64)?;
        let zero_lv2_pa = alloc.alloc_lv2().ok_or(PtError::OutOfTables)?;
        let zero_link = match zero_lv2link(format, zero_lv2_pa) {
            Ok(v) => v,
            Err(e) => {
                alloc.free_lv2(zero_lv2_pa);
                return Err(e);
            }
        };
        let init = || -> Result<(), PtError> {
            mem.write(zero_lv2_pa, &[0u8; LV2_TABLE_SIZE])?;
            mem.clean_dcache(zero_lv2_pa, LV2_TABLE_SIZE);
            let mut chunk = [0u8; 256];
            for e in chunk.chunks_exact_mut(4) {
                e.copy_from_slice(&zero_link.to_le_bytes());
            }
            for off in (0..LV1_TABLE_SIZE).step_by(chunk.len()) {
                mem.write(pgd_pa + off as u64, &chunk)?;
            }
            mem.clean_dcache(pgd_pa, LV1_TABLE_SIZE);
            Ok(())
        };
        if let Err(e) = init() {
            alloc.free_lv2(zero_lv2_pa);
            return Err(e);
        }
        Ok(SysmmuPageTable { format, pgd_pa, zero_lv2_pa, zero_link })
    }

    pub fn format(&self) -> PtFormat {
        self.format
    }

    /// Physical address of the level-1 table (what goes into PT_BASE).
    pub fn pgd_pa(&self) -> u64 {
        self.pgd_pa
    }

    /// Physical address of the shared all-fault level-2 table.
    pub fn zero_lv2_pa(&self) -> u64 {
        self.zero_lv2_pa
    }

    /// The level-1 value meaning "nothing mapped here".
    pub fn zero_lv2link(&self) -> u32 {
        self.zero_link
    }

    /// Translate `iova` through this table (CPU view).
    pub fn translate(&self, mem: &dyn PhysMem, iova: u32) -> Result<(u64, Prot), Fault> {
        translate_with(mem, self.format, self.pgd_pa, iova)
    }

    fn write_entry(&self, mem: &dyn PhysMem, pa: u64, value: u32) -> Result<(), PtError> {
        mem.write_u32(pa, value)?;
        mem.clean_dcache(pa, 4);
        Ok(())
    }

    fn write_entries(&self, mem: &dyn PhysMem, pa: u64, value: u32, n: usize) -> Result<(), PtError> {
        let mut buf = [0u8; 4 * LARGE_PAGE_REPLICAS];
        let n = n.min(LARGE_PAGE_REPLICAS);
        for e in buf[..4 * n].chunks_exact_mut(4) {
            e.copy_from_slice(&value.to_le_bytes());
        }
        mem.write(pa, &buf[..4 * n])?;
        mem.clean_dcache(pa, 4 * n);
        Ok(())
    }

    /// The decoded level-1 entry for `iova`, with the zero link reported as `Fault`.
    pub fn lv1_entry(&self, mem: &dyn PhysMem, iova: u32) -> Result<Lv1Entry, PtError> {
        let raw = mem.read_u32(lv1_entry_pa(self.pgd_pa, iova))?;
        if raw == self.zero_link {
            return Ok(Lv1Entry::Fault);
        }
        Ok(decode_lv1(self.format, raw))
    }

    fn lv2_raw(&self, mem: &dyn PhysMem, table_pa: u64, iova: u32) -> Result<u32, PtError> {
        Ok(mem.read_u32(lv2_entry_pa(table_pa, iova))?)
    }

    fn lv2_table_empty(&self, mem: &dyn PhysMem, table_pa: u64) -> Result<bool, PtError> {
        let mut buf = [0u8; LV2_TABLE_SIZE];
        mem.read(table_pa, &mut buf)?;
        Ok(buf
            .chunks_exact(4)
            .all(|c| decode_lv2(self.format, u32::from_le_bytes([c[0], c[1], c[2], c[3]])) == Lv2Entry::Fault))
    }

    /// Whether any page in `[iova, iova + len)` is mapped (4 KiB aligned range).
    fn any_mapped(&self, mem: &dyn PhysMem, iova: u64, len: u64) -> Result<Option<u32>, PtError> {
        let end = iova + len;
        let mut at = iova;
        while at < end {
            let va = at as u32;
            let next_sect = (at | (SECTION_SIZE - 1)) + 1;
            match self.lv1_entry(mem, va)? {
                Lv1Entry::Fault => at = next_sect,
                Lv1Entry::Section { .. } => return Ok(Some(va)),
                Lv1Entry::Lv2Link { table_pa } => {
                    let stop = next_sect.min(end);
                    while at < stop {
                        let raw = self.lv2_raw(mem, table_pa, at as u32)?;
                        if decode_lv2(self.format, raw) != Lv2Entry::Fault {
                            return Ok(Some(at as u32));
                        }
                        at += SMALL_PAGE_SIZE;
                    }
                }
            }
        }
        Ok(None)
    }

    /// The level-2 table for `iova`, allocating and linking one if the level-1 entry is empty.
    /// Returns the table and whether the level-1 entry changed. `None` if a section is there.
    fn lv2_table_for(
        &self,
        mem: &dyn PhysMem,
        alloc: &mut dyn Lv2TableAllocator,
        iova: u32,
    ) -> Result<(u64, bool), PtError> {
        match self.lv1_entry(mem, iova)? {
            Lv1Entry::Lv2Link { table_pa } => Ok((table_pa, false)),
            Lv1Entry::Section { .. } => Err(PtError::AlreadyMapped { iova }),
            Lv1Entry::Fault => {
                let table_pa = alloc.alloc_lv2().ok_or(PtError::OutOfTables)?;
                let link = match encode_lv1(self.format, Lv1Entry::Lv2Link { table_pa }) {
                    Ok(v) => v,
                    Err(e) => {
                        alloc.free_lv2(table_pa);
                        return Err(e);
                    }
                };
                let linked = mem
                    .write(table_pa, &[0u8; LV2_TABLE_SIZE])
                    .map_err(PtError::from)
                    .and_then(|()| {
                        mem.clean_dcache(table_pa, LV2_TABLE_SIZE);
                        self.write_entry(mem, lv1_entry_pa(self.pgd_pa, iova), link)
                    });
                if let Err(e) = linked {
                    alloc.free_lv2(table_pa);
                    return Err(e);
                }
                Ok((table_pa, true))
            }
        }
    }

    /// Map one page of `size` at `iova` -> `pa`. The page must be free.
    pub fn map_page(
        &mut self,
        mem: &dyn PhysMem,
        alloc: &mut dyn Lv2TableAllocator,
        iova: u32,
        pa: u64,
        size: PageSize,
        prot: Prot,
    ) -> Result<Flush, PtError> {
        let bytes = size.bytes();
        check_range(u64::from(iova), bytes, bytes)?;
        check_pa(self.format, pa, bytes)?;
        if let Some(at) = self.any_mapped(mem, u64::from(iova), bytes)? {
            return Err(PtError::AlreadyMapped { iova: at });
        }
        let flush_of = |flpd| Flush { iova: u64::from(iova), len: bytes, flpd };
        match size {
            PageSize::Section1M => {
                let value = encode_lv1(self.format, Lv1Entry::Section { pa, prot })?;
                // The range is unmapped, so a linked level-2 table here is empty: unlink and free it.
                let old = self.lv1_entry(mem, iova)?;
                self.write_entry(mem, lv1_entry_pa(self.pgd_pa, iova), value)?;
                if let Lv1Entry::Lv2Link { table_pa } = old {
                    alloc.free_lv2(table_pa);
                }
                Ok(flush_of(true))
            }
            PageSize::Large64K | PageSize::Small4K => {
                let entry = if size == PageSize::Small4K {
                    Lv2Entry::SmallPage { pa, prot }
                } else {
                    Lv2Entry::LargePage { pa, prot }
                };
                let value = encode_lv2(self.format, entry)?;
                let (table_pa, linked) = self.lv2_table_for(mem, alloc, iova)?;
                let n = (bytes / SMALL_PAGE_SIZE) as usize;
                self.write_entries(mem, lv2_entry_pa(table_pa, iova), value, n)?;
                Ok(flush_of(linked))
            }
        }
    }

    /// Map `[iova, iova + len)` -> `[pa, pa + len)` with the largest pages alignment allows. The
    /// whole range must be unmapped; on failure nothing stays mapped.
    pub fn map(
        &mut self,
        mem: &dyn PhysMem,
        alloc: &mut dyn Lv2TableAllocator,
        iova: u32,
        pa: u64,
        len: u64,
        prot: Prot,
    ) -> Result<Flush, PtError> {
        check_range(u64::from(iova), len, SMALL_PAGE_SIZE)?;
        check_pa(self.format, pa, SMALL_PAGE_SIZE)?;
        match pa.checked_add(len) {
            Some(end) if end <= self.format.pa_limit() => {}
            _ => return Err(PtError::PaOutOfRange { pa }),
        }
        if let Some(at) = self.any_mapped(mem, u64::from(iova), len)? {
            return Err(PtError::AlreadyMapped { iova: at });
        }
        let mut flush = Flush::NONE;
        let mut done = 0u64;
        while done < len {
            let va = u64::from(iova) + done;
            let p = pa + done;
            let left = len - done;
            let size = [PageSize::Section1M, PageSize::Large64K, PageSize::Small4K]
                .into_iter()
                .find(|s| {
                    let b = s.bytes();
                    va.is_multiple_of(b) && p.is_multiple_of(b) && left >= b
                })
                .unwrap_or(PageSize::Small4K);
            match self.map_page(mem, alloc, va as u32, p, size, prot) {
                Ok(f) => flush = flush.merge(f),
                Err(e) => {
                    if done > 0 {
                        // Best effort: the pages just written are ours to remove.
                        let _ = self.unmap(mem, alloc, iova, done);
                    }
                    return Err(e);
                }
            }
            done += size.bytes();
        }
        Ok(flush)
    }

    /// Unmap `[iova, iova + len)` (4 KiB aligned), whatever page sizes it holds. Pages that are
    /// only partly covered (a section or a large page straddling an end) are split first, which
    /// needs a level-2 table; unmapped parts of the range are skipped. Emptied level-2 tables are
    /// unlinked (zero-LV2 link written back) and freed.
    pub fn unmap(
        &mut self,
        mem: &dyn PhysMem,
        alloc: &mut dyn Lv2TableAllocator,
        iova: u32,
        len: u64,
    ) -> Result<Flush, PtError> {
        check_range(u64::from(iova), len, SMALL_PAGE_SIZE)?;
        let end = u64::from(iova) + len;
        let mut flush = Flush::NONE;
        let mut at = u64::from(iova);
        while at < end {
            let va = at as u32;
            let sect_start = at & !(SECTION_SIZE - 1);
            let sect_end = sect_start + SECTION_SIZE;
            let stop = sect_end.min(end);
            match self.lv1_entry(mem, va)? {
                Lv1Entry::Fault => {}
                Lv1Entry::Section { pa, prot } => {
                    if at == sect_start && stop == sect_end {
                        self.write_entry(mem, lv1_entry_pa(self.pgd_pa, va), self.zero_link)?;
                        flush = flush.merge(Flush { iova: sect_start, len: SECTION_SIZE, flpd: true });
                    } else {
                        flush = flush.merge(self.split_section(mem, alloc, va, pa, prot)?);
                        continue; // same section again, now as level-2 pages
                    }
                }
                Lv1Entry::Lv2Link { table_pa } => {
                    let mut p = at;
                    while p < stop {
                        let pva = p as u32;
                        let raw = self.lv2_raw(mem, table_pa, pva)?;
                        match decode_lv2(self.format, raw) {
                            Lv2Entry::Fault => p += SMALL_PAGE_SIZE,
                            Lv2Entry::SmallPage { .. } => {
                                self.write_entry(mem, lv2_entry_pa(table_pa, pva), 0)?;
                                flush = flush.merge(Flush { iova: p, len: SMALL_PAGE_SIZE, flpd: false });
                                p += SMALL_PAGE_SIZE;
                            }
                            Lv2Entry::LargePage { pa, prot } => {
                                let lstart = p & !(LARGE_PAGE_SIZE - 1);
                                if p == lstart && stop >= lstart + LARGE_PAGE_SIZE {
                                    let first = lv2_entry_pa(table_pa, lstart as u32);
                                    self.write_entries(mem, first, 0, LARGE_PAGE_REPLICAS)?;
                                    flush = flush.merge(Flush { iova: lstart, len: LARGE_PAGE_SIZE, flpd: false });
                                    p = lstart + LARGE_PAGE_SIZE;
                                } else {
                                    // Split into 16 small pages in place, then revisit.
                                    let first = lv2_entry_pa(table_pa, lstart as u32);
                                    let mut buf = [0u8; 4 * LARGE_PAGE_REPLICAS];
                                    for (i, e) in buf.chunks_exact_mut(4).enumerate() {
                                        let small = Lv2Entry::SmallPage { pa: pa + i as u64 * SMALL_PAGE_SIZE, prot };
                                        e.copy_from_slice(&encode_lv2(self.format, small)?.to_le_bytes());
                                    }
                                    mem.write(first, &buf)?;
                                    mem.clean_dcache(first, buf.len());
                                    flush = flush.merge(Flush { iova: lstart, len: LARGE_PAGE_SIZE, flpd: false });
                                }
                            }
                        }
                    }
                    if self.lv2_table_empty(mem, table_pa)? {
                        self.write_entry(mem, lv1_entry_pa(self.pgd_pa, va), self.zero_link)?;
                        alloc.free_lv2(table_pa);
                        // The rest of the table held only fault entries, which no TLB caches:
                        // the FLPD entry of this MiB and the pages just unmapped are enough.
                        flush = flush.merge(Flush { iova: at, len: stop - at, flpd: true });
                    }
                }
            }
            at = stop;
        }
        Ok(flush)
    }

    /// Replace the section at `iova` by a level-2 table of large pages mapping the same memory.
    fn split_section(
        &mut self,
        mem: &dyn PhysMem,
        alloc: &mut dyn Lv2TableAllocator,
        iova: u32,
        pa: u64,
        prot: Prot,
    ) -> Result<Flush, PtError> {
        let sect = iova & !(SECTION_SIZE as u32 - 1);
        let table_pa = alloc.alloc_lv2().ok_or(PtError::OutOfTables)?;
        let fill = || -> Result<u32, PtError> {
            let mut buf = [0u8; LV2_TABLE_SIZE];
            for (i, e) in buf.chunks_exact_mut(4).enumerate() {
                let large = pa + (i / LARGE_PAGE_REPLICAS) as u64 * LARGE_PAGE_SIZE;
                let v = encode_lv2(self.format, Lv2Entry::LargePage { pa: large, prot })?;
                e.copy_from_slice(&v.to_le_bytes());
            }
            mem.write(table_pa, &buf)?;
            mem.clean_dcache(table_pa, LV2_TABLE_SIZE);
            encode_lv1(self.format, Lv1Entry::Lv2Link { table_pa })
        };
        let link = match fill() {
            Ok(v) => v,
            Err(e) => {
                alloc.free_lv2(table_pa);
                return Err(e);
            }
        };
        self.write_entry(mem, lv1_entry_pa(self.pgd_pa, sect), link)?;
        Ok(Flush { iova: u64::from(sect), len: SECTION_SIZE, flpd: true })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::vec::Vec;

    /// Flat memory at PA 0x4000_0000, no cache model.
    struct Ram(RefCell<Vec<u8>>);
    const BASE: u64 = 0x4000_0000;
    impl PhysMem for Ram {
        fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError> {
            let m = self.0.borrow();
            let off = pa.checked_sub(BASE).ok_or(MemError::NotMemory { pa })? as usize;
            let src = m.get(off..off + buf.len()).ok_or(MemError::NotMemory { pa })?;
            buf.copy_from_slice(src);
            Ok(())
        }
        fn write(&self, pa: u64, data: &[u8]) -> Result<(), MemError> {
            let mut m = self.0.borrow_mut();
            let off = pa.checked_sub(BASE).ok_or(MemError::NotMemory { pa })? as usize;
            let dst = m.get_mut(off..off + data.len()).ok_or(MemError::NotMemory { pa })?;
            dst.copy_from_slice(data);
            Ok(())
        }
    }
    struct Bump {
        next: u64,
        free: Vec<u64>,
        live: usize,
    }
    impl Lv2TableAllocator for Bump {
        fn alloc_lv2(&mut self) -> Option<u64> {
            self.live += 1;
            self.free.pop().or_else(|| {
                let p = self.next;
                self.next += LV2_TABLE_SIZE as u64;
                Some(p)
            })
        }
        fn free_lv2(&mut self, pa: u64) {
            self.live -= 1;
            self.free.push(pa);
        }
    }

    fn setup() -> (Ram, Bump, SysmmuPageTable) {
        let ram = Ram(RefCell::new(std::vec![0xAAu8; 1 << 20]));
        let mut a = Bump { next: BASE + 0x8000, free: Vec::new(), live: 0 };
        let t = SysmmuPageTable::new(&ram, &mut a, PtFormat::V1, BASE).unwrap();
        (ram, a, t)
    }

    #[test]
    fn entry_roundtrip_v1_and_v5() {
        for f in [PtFormat::V1, PtFormat::V5] {
            for prot in [Prot::NONE, Prot::RO, Prot::RW] {
                let s = Lv1Entry::Section { pa: 0x4010_0000, prot };
                assert_eq!(decode_lv1(f, encode_lv1(f, s).unwrap()), s);
                let l = Lv2Entry::LargePage { pa: 0x4001_0000, prot };
                assert_eq!(decode_lv2(f, encode_lv2(f, l).unwrap()), l);
                let p = Lv2Entry::SmallPage { pa: 0x4000_3000, prot };
                assert_eq!(decode_lv2(f, encode_lv2(f, p).unwrap()), p);
            }
            let k = Lv1Entry::Lv2Link { table_pa: 0x4000_0400 };
            assert_eq!(decode_lv1(f, encode_lv1(f, k).unwrap()), k);
        }
        // Exact v1-v3 bits from the datasheet facts.
        let ro = encode_lv1(PtFormat::V1, Lv1Entry::Section { pa: 0x4000_0000, prot: Prot::RO });
        assert_eq!(ro, Ok(0x4000_0000 | (1 << 15) | (1 << 10) | 2));
        let wo = encode_lv2(PtFormat::V1, Lv2Entry::SmallPage { pa: 0x1000, prot: Prot::WO });
        assert_eq!(wo, Ok(0x1000 | (1 << 4) | 2));
        // v5: PA >> 4, 36-bit PA.
        let v5 = encode_lv1(PtFormat::V5, Lv1Entry::Section { pa: 0x8_4000_0000, prot: Prot::RW });
        assert_eq!(v5, Ok((0x8_4000_0000u64 >> 4) as u32 | (3 << 4) | 2));
        assert_eq!(decode_lv1(PtFormat::V1, 3), Lv1Entry::Fault);
        assert_eq!(
            encode_lv1(PtFormat::V1, Lv1Entry::Section { pa: 1 << 32, prot: Prot::RW }),
            Err(PtError::PaOutOfRange { pa: 1 << 32 })
        );
        assert!(matches!(
            encode_lv2(PtFormat::V1, Lv2Entry::LargePage { pa: 0x1000, prot: Prot::RW }),
            Err(PtError::Misaligned { .. })
        ));
    }

    #[test]
    fn map_unmap_all_sizes_across_tables() {
        let (ram, mut a, mut t) = setup();
        assert_eq!(a.live, 1); // the zero table
        // A range straddling a 1 MiB boundary with 4K, 64K and 1M pages.
        let iova = 0x1000_0000 - 0x11000;
        let pa = 0x6000_0000 - 0x11000;
        let f = t.map(&ram, &mut a, iova, pa, 0x11000 + SECTION_SIZE + 0x13000, Prot::RW).unwrap();
        assert!(f.flpd);
        for off in (0..0x11000 + SECTION_SIZE + 0x13000).step_by(0x1000) {
            let (p, prot) = t.translate(&ram, iova + off as u32).unwrap();
            assert_eq!(p, pa + off);
            assert_eq!(prot, Prot::RW);
        }
        assert!(matches!(t.lv1_entry(&ram, 0x1000_0000), Ok(Lv1Entry::Section { .. })));
        assert_eq!(
            t.map(&ram, &mut a, iova, pa, 0x1000, Prot::RW),
            Err(PtError::AlreadyMapped { iova })
        );
        // Unmap the middle of the section: it is split.
        t.unmap(&ram, &mut a, 0x1000_4000, 0x1000).unwrap();
        assert_eq!(t.translate(&ram, 0x1000_4000), Err(Fault::Lv2 { iova: 0x1000_4000 }));
        assert_eq!(t.translate(&ram, 0x1000_5000).unwrap().0, 0x6000_5000);
        t.unmap(&ram, &mut a, iova, 0x11000 + SECTION_SIZE + 0x13000).unwrap();
        assert_eq!(a.live, 1, "all level-2 tables freed");
        for i in 0..NUM_LV1_ENTRIES {
            assert_eq!(ram.read_u32(BASE + 4 * i as u64).unwrap(), t.zero_lv2link());
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        let (ram, mut a, mut t) = setup();
        assert!(t.map(&ram, &mut a, 0xFFFF_F000, 0x4000_0000, 0x2000, Prot::RW).is_err());
        assert!(t.map(&ram, &mut a, 0x123, 0x4000_0000, 0x1000, Prot::RW).is_err());
        assert!(t.map(&ram, &mut a, 0x1000, 0xFFFF_F000, 0x2000, Prot::RW).is_err());
        assert!(t.unmap(&ram, &mut a, 0, 0).is_err());
        struct Empty;
        impl Lv2TableAllocator for Empty {
            fn alloc_lv2(&mut self) -> Option<u64> {
                None
            }
            fn free_lv2(&mut self, _: u64) {}
        }
        assert_eq!(t.map(&ram, &mut Empty, 0x1000, 0x4000_0000, 0x1000, Prot::RW), Err(PtError::OutOfTables));
        assert_eq!(t.translate(&ram, 0x1000), Err(Fault::Lv2 { iova: 0x1000 }));
    }
}
