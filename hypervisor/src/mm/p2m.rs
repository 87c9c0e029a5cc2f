//! AArch64 stage-2 translation tables (a domain's p2m: IPA -> PA), 4 KiB granule,
//! VMSAv8-64 descriptors, host-testable over [`PhysMem`].
//!
//! - [`Stage2::map`] *replaces* whatever was mapped in the range (Xen's `add_to_physmap`
//!   semantics); [`Stage2::map_new`] refuses (and changes nothing) if any page of the range is
//!   already mapped.
//! - 1 GiB / 2 MiB blocks are used where the IPA, the PA and the remaining size allow; blocks
//!   are split when part of one is unmapped or remapped, and a table that a map of more than
//!   one page leaves mapping 512 contiguous, aligned, same-attribute entries is merged back
//!   into a block (its frame freed). A one-page map never merges (hysteresis): a page given
//!   back and taken again (a balloon) would otherwise merge the block on every populate and
//!   split it on every decrease. Such a table stays until a larger map covers it.
//! - A table an unmap empties stays linked, as on Xen: mapping there again needs no frame and
//!   an unmap never scans a table for emptiness (a grant map + unmap round trip allocates,
//!   zeroes and frees nothing). [`Stage2::reclaim_empty_tables`] frees empty tables; `map` and
//!   `unmap` call it themselves before reporting [`P2mError::OutOfFrames`], so kept tables never
//!   cost a failed operation.
//! - A one-page map or unmap whose level-3 table exists (a grant, a shared page, a populated
//!   page) skips the general count/reserve/apply walk: a map into an empty slot is one
//!   descriptor write and a barrier, an unmap one write, its invalidation by IPA and a sync.
//!   Anything else (a block to split, a live entry to replace) takes the general path.
//! - Break-before-make: a valid entry is never overwritten by a different valid entry; it is
//!   first written invalid, the TLB is invalidated for it ([`TlbOps`]) and synced, then the new
//!   entry is written. Invalidations for plain unmaps are batched to the end of the operation
//!   (and table frames unlinked by it are freed only after that invalidation has completed).
//! - Frames: before changing anything, `map`/`unmap` walk the range to count the table
//!   frames they will need and take them all from the [`FrameAlloc`]; if it cannot supply them
//!   the call returns [`P2mError::OutOfFrames`] with every translation untouched (only empty
//!   tables may have been reclaimed on the way). So no half-done
//!   mapping is ever visible. (The only mid-operation failure is [`P2mError::Mem`], a
//!   `PhysMem` error on table memory, i.e. a hypervisor bug: the tables then hold a mix of old
//!   and new entries, each one a complete descriptor, with TLBs already invalidated.)
//! - Every table write is cleaned to the point of coherency (`PhysMem::clean_dcache`) at once,
//!   so non-coherent walkers (SMMUs sharing these tables) see it.

use alloc::vec::Vec;
use core::fmt;

use platform::{MemError, PhysMem};

use super::{FrameAlloc, TlbOps, PAGE_SIZE};

/// Pages cleared in place and not yet invalidated: one is invalidated by IPA, several by
/// VMID, then one sync.
#[derive(Default)]
struct Cleared {
    last: Option<u64>,
    several: bool,
}

impl Cleared {
    fn note(&mut self, ipa: u64) {
        self.several |= self.last.is_some();
        self.last = Some(ipa);
    }

    fn flush<T: TlbOps + ?Sized>(&mut self, vmid: u16, tlb: &mut T) {
        match (self.last.take(), self.several) {
            (None, _) => return,
            (Some(ipa), false) => tlb.invalidate_ipa(vmid, ipa),
            (Some(_), true) => tlb.invalidate_vmid(vmid),
        }
        self.several = false;
        tlb.sync();
    }
}

/// Entries in a (non-concatenated) table.
const ENTRIES: usize = 512;

// Descriptor bits (VMSAv8-64, stage 2, 4 KiB granule).
const DESC_VALID: u64 = 1 << 0;
/// Bits [1:0] = 0b11: table at levels 0-2, page at level 3. 0b01: block at levels 1-2.
const DESC_TYPE_MASK: u64 = 0b11;
const DESC_TABLE_OR_PAGE: u64 = 0b11;
const DESC_BLOCK: u64 = 0b01;
/// Output address / next-level table address, bits [47:12].
const ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;
const MEMATTR_SHIFT: u32 = 2;
const MEMATTR_MASK: u64 = 0xf << MEMATTR_SHIFT;
const MEMATTR_NORMAL_WB: u64 = 0b1111;
const MEMATTR_DEVICE_NGNRE: u64 = 0b0001;
/// S2AP[7:6]: bit 6 = readable, bit 7 = writable.
const S2AP_READ: u64 = 1 << 6;
const S2AP_WRITE: u64 = 1 << 7;
const SH_SHIFT: u32 = 8;
const SH_OUTER: u64 = 0b10;
const SH_INNER: u64 = 0b11;
/// Access flag: always set (no access-flag faults for the p2m).
const DESC_AF: u64 = 1 << 10;
/// Execute-never (XN[1] in FEAT_XNX terms; alone it means "never executable at EL1/EL0").
const DESC_XN: u64 = 1 << 54;
/// The attribute part of a leaf: everything but the address and the type bits.
const LEAF_ATTR_MASK: u64 = !(ADDR_MASK | DESC_TYPE_MASK);

/// Most single-IPA invalidations batched before falling back to a whole-VMID invalidation.
const MAX_PENDING_IPAS: usize = 16;

/// VTCR_EL2 fields.
const VTCR_RES1: u64 = 1 << 31;
const VTCR_SL0_SHIFT: u32 = 6;
const VTCR_IRGN0_WBWA: u64 = 0b01 << 8;
const VTCR_ORGN0_WBWA: u64 = 0b01 << 10;
const VTCR_SH0_INNER: u64 = 0b11 << 12;
const VTCR_TG0_4K: u64 = 0b00 << 14;
const VTCR_PS_SHIFT: u32 = 16;
/// VTCR_EL2.VS: 16-bit VMIDs. Not set by [`Stage2::vtcr`]; the arch layer ORs it in when the
/// CPU has 16-bit VMIDs (ID_AA64MMFR1_EL1.VMIDBits) and VMIDs above 255 are in use.
pub const VTCR_VS: u64 = 1 << 19;

fn shift(level: u8) -> u32 {
    12 + 9 * (3 - u32::from(level))
}

fn entry_size(level: u8) -> u64 {
    1 << shift(level)
}

fn is_valid(d: u64) -> bool {
    d & DESC_VALID != 0
}

fn is_table(d: u64, level: u8) -> bool {
    level < 3 && d & DESC_TYPE_MASK == DESC_TABLE_OR_PAGE
}

fn is_leaf(d: u64, level: u8) -> bool {
    match level {
        1 | 2 => d & DESC_TYPE_MASK == DESC_BLOCK,
        3 => d & DESC_TYPE_MASK == DESC_TABLE_OR_PAGE,
        _ => false,
    }
}

/// Can an entry at `level` be a leaf (block or page)? Not level 0 with a 4 KiB granule.
fn leaf_allowed(level: u8) -> bool {
    (1..=3).contains(&level)
}

fn leaf_desc(level: u8, pa: u64, attr_bits: u64) -> u64 {
    let ty = if level == 3 {
        DESC_TABLE_OR_PAGE
    } else {
        DESC_BLOCK
    };
    (pa & ADDR_MASK) | attr_bits | ty
}

fn table_desc(pa: u64) -> u64 {
    (pa & ADDR_MASK) | DESC_TABLE_OR_PAGE
}

/// First and last entry index of a table at `level` (covering IPAs from `tbase`) that
/// `[start, end)` touches. `tbase <= start < end`.
fn index_span(level: u8, tbase: u64, start: u64, end: u64) -> (usize, usize) {
    let sh = shift(level);
    (
        ((start - tbase) >> sh) as usize,
        ((end - 1 - tbase) >> sh) as usize,
    )
}

/// Stage-2 memory type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum S2MemType {
    /// Normal, inner and outer write-back cacheable (MemAttr 0b1111), inner shareable.
    NormalWb,
    /// Device-nGnRE (MemAttr 0b0001).
    Device,
}

/// Attributes of a stage-2 mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct S2Attr {
    pub mem: S2MemType,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

impl S2Attr {
    /// Guest RAM: normal WB, read/write/execute.
    pub const RAM_RWX: S2Attr = S2Attr {
        mem: S2MemType::NormalWb,
        read: true,
        write: true,
        exec: true,
    };
    /// Normal WB, read/write, not executable (e.g. grant-mapped data).
    pub const RAM_RW: S2Attr = S2Attr {
        mem: S2MemType::NormalWb,
        read: true,
        write: true,
        exec: false,
    };
    /// Normal WB, read-only, not executable.
    pub const RAM_RO: S2Attr = S2Attr {
        mem: S2MemType::NormalWb,
        read: true,
        write: false,
        exec: false,
    };
    /// Device MMIO passed through: Device-nGnRE, read/write, never executable.
    pub const DEVICE_RW: S2Attr = S2Attr {
        mem: S2MemType::Device,
        read: true,
        write: true,
        exec: false,
    };

    /// The descriptor's attribute bits (everything but the address and type bits).
    pub fn desc_bits(self) -> u64 {
        let (memattr, sh) = match self.mem {
            S2MemType::NormalWb => (MEMATTR_NORMAL_WB, SH_INNER),
            // Device memory is always treated as outer shareable; say so.
            S2MemType::Device => (MEMATTR_DEVICE_NGNRE, SH_OUTER),
        };
        let mut d = (memattr << MEMATTR_SHIFT) | (sh << SH_SHIFT) | DESC_AF;
        if self.read {
            d |= S2AP_READ;
        }
        if self.write {
            d |= S2AP_WRITE;
        }
        if !self.exec {
            d |= DESC_XN;
        }
        d
    }

    /// Decode a leaf descriptor's attributes (any MemAttr other than Normal WB reads as Device).
    pub fn from_desc(d: u64) -> S2Attr {
        let mem = if (d & MEMATTR_MASK) >> MEMATTR_SHIFT == MEMATTR_NORMAL_WB {
            S2MemType::NormalWb
        } else {
            S2MemType::Device
        };
        S2Attr {
            mem,
            read: d & S2AP_READ != 0,
            write: d & S2AP_WRITE != 0,
            exec: d & DESC_XN == 0,
        }
    }
}

/// What an IPA translates to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct S2Translation {
    /// The PA of the looked-up IPA (not of the leaf's base).
    pub pa: u64,
    pub attr: S2Attr,
    /// Size of the leaf holding it: 4 KiB, 2 MiB or 1 GiB.
    pub size_of_leaf: u64,
}

/// One leaf mapping (a page or a block), as yielded by [`Stage2::leaves`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct S2Leaf {
    pub ipa: u64,
    pub pa: u64,
    pub size: u64,
    pub attr: S2Attr,
}

/// Address sizes of a stage-2 configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage2Config {
    /// IPA bits, 32..=48. 32..=39 start the walk at level 1 with one root table; 40..=42 at
    /// level 1 with 2/4/8 concatenated root tables (root aligned to its size); 43..=48 at
    /// level 0.
    pub ipa_bits: u8,
    /// PA bits, 32..=48 (VTCR_EL2.PS is the smallest encoding that covers them); must be at
    /// least `ipa_bits` rounded to a PS encoding.
    pub pa_bits: u8,
}

impl Stage2Config {
    /// What every domain's stage 2 uses: 40-bit IPAs and PAs. Guests are told the same
    /// physical address range (`crate::cpufeature`).
    pub const DOMAIN: Stage2Config = Stage2Config { ipa_bits: 40, pa_bits: 40 };

    /// VTCR_EL2.PS encoding and the number of bits it stands for.
    fn ps(self) -> Option<(u64, u8)> {
        match self.pa_bits {
            32 => Some((0b000, 32)),
            33..=36 => Some((0b001, 36)),
            37..=40 => Some((0b010, 40)),
            41..=42 => Some((0b011, 42)),
            43..=44 => Some((0b100, 44)),
            45..=48 => Some((0b101, 48)),
            _ => None,
        }
    }

    /// (start level, number of concatenated root tables).
    fn root_shape(self) -> Option<(u8, usize)> {
        match self.ipa_bits {
            32..=39 => Some((1, 1)),
            40..=42 => Some((1, 1 << (self.ipa_bits - 39))),
            43..=48 => Some((0, 1)),
            _ => None,
        }
    }

    fn validate(self) -> Result<(u8, usize), P2mError> {
        let bad = P2mError::UnsupportedConfig {
            ipa_bits: self.ipa_bits,
            pa_bits: self.pa_bits,
        };
        let (_, ps_bits) = self.ps().ok_or(bad)?;
        if self.ipa_bits > ps_bits {
            return Err(bad);
        }
        self.root_shape().ok_or(bad)
    }
}

/// Why a p2m operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum P2mError {
    /// The IPA is not 4 KiB aligned.
    MisalignedIpa(u64),
    /// The PA is not 4 KiB aligned.
    MisalignedPa(u64),
    /// The size is not a multiple of 4 KiB.
    MisalignedSize(u64),
    /// `[ipa, ipa + size)` runs past the configured IPA size.
    IpaOutOfRange { ipa: u64, size: u64 },
    /// `[pa, pa + size)` runs past the configured PA size.
    PaOutOfRange { pa: u64, size: u64 },
    /// The frame allocator could not supply the `needed` table frames; nothing was changed.
    OutOfFrames { needed: usize },
    /// `map_new`: the range already has a mapping at `ipa`; nothing was changed.
    AlreadyMapped { ipa: u64 },
    /// IPA/PA sizes this implementation (or the architecture) does not support.
    UnsupportedConfig { ipa_bits: u8, pa_bits: u8 },
    /// The frame allocator returned a frame that is misaligned or beyond the PA size.
    BadFrame { pa: u64 },
    /// Table memory could not be accessed (a hypervisor bug, see the module docs).
    Mem(MemError),
}

impl From<MemError> for P2mError {
    fn from(e: MemError) -> Self {
        P2mError::Mem(e)
    }
}

impl fmt::Display for P2mError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            P2mError::MisalignedIpa(a) => write!(f, "IPA {a:#x} is not 4 KiB aligned"),
            P2mError::MisalignedPa(a) => write!(f, "PA {a:#x} is not 4 KiB aligned"),
            P2mError::MisalignedSize(s) => write!(f, "size {s:#x} is not a multiple of 4 KiB"),
            P2mError::IpaOutOfRange { ipa, size } => {
                write!(f, "IPA range {ipa:#x}+{size:#x} exceeds the IPA size")
            }
            P2mError::PaOutOfRange { pa, size } => {
                write!(f, "PA range {pa:#x}+{size:#x} exceeds the PA size")
            }
            P2mError::OutOfFrames { needed } => {
                write!(f, "out of page-table frames ({needed} needed)")
            }
            P2mError::AlreadyMapped { ipa } => write!(f, "IPA {ipa:#x} is already mapped"),
            P2mError::UnsupportedConfig { ipa_bits, pa_bits } => {
                write!(
                    f,
                    "unsupported stage-2 config: {ipa_bits}-bit IPA, {pa_bits}-bit PA"
                )
            }
            P2mError::BadFrame { pa } => write!(f, "frame allocator returned bad frame {pa:#x}"),
            P2mError::Mem(e) => write!(f, "page-table memory: {e}"),
        }
    }
}

/// A domain's stage-2 translation tables. Owns its table frames (give them back with
/// [`destroy`](Self::destroy)); memory, frames and TLB are passed to each call.
///
/// Not internally locked: callers serialise `map`/`unmap` per domain (`&mut self`). CPUs and
/// SMMUs may walk the tables concurrently; every individual update is a single 64-bit store,
/// so walkers see either the old or the new descriptor. Hardware access-flag / dirty-state
/// updates (VTCR_EL2.HA/HD) must stay off: the code compares descriptors with what it wrote.
#[derive(Debug)]
pub struct Stage2 {
    vmid: u16,
    cfg: Stage2Config,
    root: u64,
    start_level: u8,
    root_pages: usize,
    /// Non-root table frames currently in use.
    tables: usize,
    /// The lowest level at which a leaf may be written: 1 (1 GiB blocks and below) by default,
    /// 3 for tables devices walk too ([`set_page_granular`](Self::set_page_granular)).
    min_leaf_level: u8,
}

#[derive(Clone, Copy)]
enum Op {
    /// Map `[ipa, ..)` to `[pa, ..)` with the given leaf attribute bits.
    Map {
        ipa: u64,
        pa: u64,
        attr: u64,
    },
    Unmap,
}

impl Op {
    /// Would the entry at `level` covering `[ebase, ebase + size)` (entirely inside the
    /// operation's range) be written as one leaf / cleared as a whole?
    fn whole_entry(self, level: u8, ebase: u64, min_leaf_level: u8) -> bool {
        match self {
            Op::Unmap => true,
            Op::Map { ipa, pa, .. } => {
                leaf_allowed(level)
                    && level >= min_leaf_level
                    && (pa + (ebase - ipa)).is_multiple_of(entry_size(level))
            }
        }
    }

    /// Does the existing leaf `d` at `ebase` already translate `s` (inside both) the way
    /// this map would? Then nothing under it needs to change.
    fn same_leaf(self, d: u64, ebase: u64, s: u64) -> bool {
        match self {
            Op::Unmap => false,
            Op::Map { ipa, pa, attr } => {
                d & LEAF_ATTR_MASK == attr && (d & ADDR_MASK) + (s - ebase) == pa + (s - ipa)
            }
        }
    }
}

/// One table edit in progress: the borrowed environment plus batched TLB work.
struct Editor<'a, F: FrameAlloc + ?Sized, M: PhysMem + ?Sized, T: TlbOps + ?Sized> {
    vmid: u16,
    min_leaf_level: u8,
    pa_limit: u64,
    frames: &'a mut F,
    mem: &'a M,
    tlb: &'a mut T,
    /// Frames taken up front for the tables this operation creates.
    pool: Vec<u64>,
    pending_ipas: [u64; MAX_PENDING_IPAS],
    n_pending: usize,
    pending_all: bool,
    /// Unlinked table frames, freed after the next invalidate + sync.
    deferred: Vec<u64>,
    tables_delta: isize,
    /// Whether a map may merge the tables it fills into blocks (not for one page).
    merge: bool,
}

impl<'a, F: FrameAlloc + ?Sized, M: PhysMem + ?Sized, T: TlbOps + ?Sized> Editor<'a, F, M, T> {
    fn new(s2: &Stage2, frames: &'a mut F, mem: &'a M, tlb: &'a mut T) -> Self {
        Editor {
            vmid: s2.vmid,
            min_leaf_level: s2.min_leaf_level,
            pa_limit: 1u64 << s2.cfg.pa_bits,
            frames,
            mem,
            tlb,
            pool: Vec::new(),
            pending_ipas: [0; MAX_PENDING_IPAS],
            n_pending: 0,
            pending_all: false,
            deferred: Vec::new(),
            tables_delta: 0,
            merge: true,
        }
    }

    fn read(&self, slot: u64) -> Result<u64, P2mError> {
        Ok(self.mem.read_u64(slot)?)
    }

    /// Write a descriptor and clean it to the point of coherency.
    fn write(&self, slot: u64, v: u64) -> Result<(), P2mError> {
        self.mem.write_u64(slot, v)?;
        self.mem.clean_dcache(slot, 8);
        Ok(())
    }

    fn zero_frame(&self, pa: u64) -> Result<(), P2mError> {
        // Zeroed to the point of coherency (a walker that does not snoop reads it).
        self.mem.zero(pa, PAGE_SIZE)?;
        Ok(())
    }

    fn check_frame(&self, pa: u64, pages: usize) -> Result<(), P2mError> {
        let bytes = pages as u64 * PAGE_SIZE;
        if !pa.is_multiple_of(bytes) || pa.checked_add(bytes).is_none_or(|e| e > self.pa_limit) {
            return Err(P2mError::BadFrame { pa });
        }
        Ok(())
    }

    /// Take `n` frames into the pool, or none at all.
    fn reserve(&mut self, n: usize) -> Result<(), P2mError> {
        let mut bad = None;
        for _ in 0..n {
            match self.frames.alloc_frame() {
                Some(pa) => match self.check_frame(pa, 1) {
                    Ok(()) => self.pool.push(pa),
                    Err(e) => {
                        // Unusable as a table, but still the allocator's: give it back.
                        self.frames.free_frame(pa);
                        bad = Some(e);
                        break;
                    }
                },
                None => {
                    bad = Some(P2mError::OutOfFrames { needed: n });
                    break;
                }
            }
        }
        if let Some(e) = bad {
            for pa in self.pool.drain(..) {
                self.frames.free_frame(pa);
            }
            return Err(e);
        }
        Ok(())
    }

    /// A zeroed table frame, from the pool.
    fn new_table(&mut self) -> Result<u64, P2mError> {
        let pa = match self.pool.pop() {
            Some(pa) => pa,
            // The count should make this unreachable; stay correct if it is not.
            None => {
                let pa = self
                    .frames
                    .alloc_frame()
                    .ok_or(P2mError::OutOfFrames { needed: 1 })?;
                if let Err(e) = self.check_frame(pa, 1) {
                    self.frames.free_frame(pa);
                    return Err(e);
                }
                pa
            }
        };
        if let Err(e) = self.zero_frame(pa) {
            self.frames.free_frame(pa);
            return Err(e);
        }
        self.tables_delta += 1;
        Ok(pa)
    }

    /// Fill a new table at `level` with the 512 pieces of the block `block`.
    fn fill_split(&self, table: u64, block: u64, level: u8) -> Result<(), P2mError> {
        let attr = block & LEAF_ATTR_MASK;
        let base = block & ADDR_MASK;
        let step = entry_size(level);
        let mut buf = [0u8; 512];
        for chunk in 0..(ENTRIES / 64) {
            for (i, b) in buf.chunks_exact_mut(8).enumerate() {
                let n = (chunk * 64 + i) as u64;
                b.copy_from_slice(&leaf_desc(level, base + n * step, attr).to_le_bytes());
            }
            self.mem.write(table + chunk as u64 * 512, &buf)?;
        }
        self.mem.clean_dcache(table, PAGE_SIZE as usize);
        Ok(())
    }

    fn queue_ipa(&mut self, ipa: u64) {
        if self.pending_all {
            return;
        }
        if self.n_pending == MAX_PENDING_IPAS {
            self.pending_all = true;
            return;
        }
        self.pending_ipas[self.n_pending] = ipa;
        self.n_pending += 1;
    }

    /// Issue the queued invalidations, wait for them, then free the deferred frames.
    fn flush(&mut self) {
        if self.n_pending == 0 && !self.pending_all && self.deferred.is_empty() {
            return;
        }
        if self.pending_all {
            self.tlb.invalidate_vmid(self.vmid);
        } else {
            for &ipa in &self.pending_ipas[..self.n_pending] {
                self.tlb.invalidate_ipa(self.vmid, ipa);
            }
        }
        self.tlb.sync();
        self.n_pending = 0;
        self.pending_all = false;
        for pa in self.deferred.drain(..) {
            self.frames.free_frame(pa);
        }
    }

    /// Write `new` over an invalid entry, after any pending invalidation has completed (so a
    /// slot cleared earlier in this operation is never revalidated too early).
    fn write_valid(&mut self, slot: u64, new: u64) -> Result<(), P2mError> {
        if self.n_pending != 0 || self.pending_all {
            self.flush();
        }
        self.write(slot, new)
    }

    /// Replace `old` (the current value of `slot`, an entry at `level` for IPAs from
    /// `ebase`) by `new`, with break-before-make. `live_below`: if `old` is a table, might
    /// it still hold valid leaves (then the whole VMID is invalidated, not one IPA)?
    /// Clearing (`new` invalid) leaves the invalidation queued.
    fn replace(
        &mut self,
        slot: u64,
        old: u64,
        new: u64,
        level: u8,
        ebase: u64,
        live_below: bool,
    ) -> Result<(), P2mError> {
        if old == new {
            return Ok(());
        }
        if !is_valid(old) {
            return self.write_valid(slot, new);
        }
        self.write(slot, 0)?;
        if is_table(old, level) && live_below {
            self.pending_all = true;
        } else {
            self.queue_ipa(ebase);
        }
        if is_valid(new) {
            self.flush();
            self.write(slot, new)?;
        }
        Ok(())
    }

    /// Queue every table frame of the (unlinked) subtree at `table` for freeing.
    fn defer_subtree(&mut self, table: u64, level: u8) -> Result<(), P2mError> {
        if level < 3 {
            for i in 0..ENTRIES as u64 {
                let d = self.read(table + i * 8)?;
                if is_table(d, level) {
                    self.defer_subtree(d & ADDR_MASK, level + 1)?;
                }
            }
        }
        self.deferred.push(table);
        self.tables_delta -= 1;
        Ok(())
    }

    /// How many new table frames applying `op` to `[start, end)` under the table at `level`
    /// will need. `table == None`: a table that does not exist yet (created empty, or split
    /// from a block that this op does not leave unchanged) — any partial entry in it needs
    /// one more table.
    fn count(
        &self,
        level: u8,
        table: Option<u64>,
        tbase: u64,
        start: u64,
        end: u64,
        op: Op,
    ) -> Result<usize, P2mError> {
        if level == 3 && table.is_none() {
            // A new level-3 table holds pages, never more tables (inputs are page aligned).
            return Ok(0);
        }
        let size = entry_size(level);
        let (first, last) = index_span(level, tbase, start, end);
        let mut n = 0usize;
        for idx in first..=last {
            let ebase = tbase + idx as u64 * size;
            let s = start.max(ebase);
            let e = end.min(ebase + size);
            if s == ebase && e == ebase + size && op.whole_entry(level, ebase, self.min_leaf_level) {
                continue;
            }
            if level >= 3 {
                // Unreachable with 4 KiB aligned inputs; refuse rather than recurse.
                return Err(P2mError::MisalignedIpa(s));
            }
            let below = match table {
                None => 1 + self.count(level + 1, None, ebase, s, e, op)?,
                Some(t) => {
                    let d = self.read(t + idx as u64 * 8)?;
                    if is_table(d, level) {
                        self.count(level + 1, Some(d & ADDR_MASK), ebase, s, e, op)?
                    } else if is_leaf(d, level) {
                        if op.same_leaf(d, ebase, s) {
                            0
                        } else {
                            1 + self.count(level + 1, None, ebase, s, e, op)?
                        }
                    } else if let Op::Unmap = op {
                        0
                    } else {
                        1 + self.count(level + 1, None, ebase, s, e, op)?
                    }
                }
            };
            n = n.saturating_add(below);
        }
        Ok(n)
    }

    /// Apply `op` to `[start, end)` under the table at `level` (covering IPAs from `tbase`).
    fn apply(
        &mut self,
        level: u8,
        table: u64,
        tbase: u64,
        start: u64,
        end: u64,
        op: Op,
    ) -> Result<(), P2mError> {
        let size = entry_size(level);
        let (first, last) = index_span(level, tbase, start, end);
        for idx in first..=last {
            let slot = table + idx as u64 * 8;
            let ebase = tbase + idx as u64 * size;
            let s = start.max(ebase);
            let e = end.min(ebase + size);
            let old = self.read(slot)?;

            if s == ebase && e == ebase + size && op.whole_entry(level, ebase, self.min_leaf_level) {
                let new = match op {
                    Op::Map { ipa, pa, attr } => leaf_desc(level, pa + (ebase - ipa), attr),
                    Op::Unmap if is_valid(old) => 0,
                    Op::Unmap => continue,
                };
                self.replace(slot, old, new, level, ebase, true)?;
                if old != new && is_table(old, level) {
                    self.defer_subtree(old & ADDR_MASK, level + 1)?;
                }
                continue;
            }
            if level >= 3 {
                return Err(P2mError::MisalignedIpa(s));
            }

            // Descend, creating or splitting the next-level table if needed.
            let (child, cur) = if is_table(old, level) {
                (old & ADDR_MASK, old)
            } else if is_leaf(old, level) {
                if op.same_leaf(old, ebase, s) {
                    continue;
                }
                let t = self.new_table()?;
                self.fill_split(t, old, level + 1)?;
                // The flush inside replace() orders the fill before the link.
                self.replace(slot, old, table_desc(t), level, ebase, false)?;
                (t, table_desc(t))
            } else {
                let Op::Map { ipa, pa, attr } = op else { continue };
                let t = self.new_table()?;
                if level == 2 && s == ebase && e == ebase + size {
                    // A whole block's worth of pages into an empty slot (page-granular tables):
                    // the table is written in one go before it is linked, not page by page.
                    self.fill_split(t, leaf_desc(2, pa + (ebase - ipa), attr), 3)?;
                    self.tlb.sync();
                    self.write_valid(slot, table_desc(t))?;
                    continue;
                }
                // Order the zeroing before the link.
                self.tlb.sync();
                self.write_valid(slot, table_desc(t))?;
                (t, table_desc(t))
            };
            self.apply(level + 1, child, ebase, s, e, op)?;

            // A table the unmap emptied stays linked (as on Xen): the next map there needs no
            // frame, and an unmap does not scan 512 entries. `reclaim` gives such tables back.
            if let Op::Map { .. } = op {
                if self.merge && leaf_allowed(level) && level >= self.min_leaf_level && self.may_merge(child, level, ebase, s)? {
                    if let Some(block) = self.mergeable(child, level)? {
                        self.replace(slot, cur, block, level, ebase, true)?;
                        self.deferred.push(child);
                        self.tables_delta -= 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// Unlink and queue for freeing every table under `table` (at `level`, covering IPAs from
    /// `tbase`; `entries` of them) that maps nothing. Returns whether `table` itself maps
    /// nothing now. Break-before-make does not arise: only empty tables are unlinked, and
    /// each unlinked entry is invalidated (walk caches) before its frame is freed (`flush`).
    fn reclaim(&mut self, level: u8, table: u64, tbase: u64, entries: usize) -> Result<bool, P2mError> {
        let size = entry_size(level);
        let mut empty = true;
        for idx in 0..entries as u64 {
            let slot = table + idx * 8;
            let d = self.read(slot)?;
            if is_table(d, level) {
                let ebase = tbase + idx * size;
                if self.reclaim(level + 1, d & ADDR_MASK, ebase, ENTRIES)? {
                    self.write(slot, 0)?;
                    self.queue_ipa(ebase);
                    self.deferred.push(d & ADDR_MASK);
                    self.tables_delta -= 1;
                } else {
                    empty = false;
                }
            } else if is_valid(d) {
                empty = false;
            }
        }
        Ok(empty)
    }

    /// Cheap test before [`mergeable`](Self::mergeable)'s scan of 512 entries: the first, the
    /// last and the just-written entry (IPA `written`, in the table covering `tbase`) must
    /// already be the pieces of one block. Almost every map into a populated table (a grant
    /// mapped into dom0's RAM, say) fails this in three reads.
    fn may_merge(&self, table: u64, level: u8, tbase: u64, written: u64) -> Result<bool, P2mError> {
        let child = level + 1;
        let step = entry_size(child);
        let d0 = self.read(table)?;
        if !is_leaf(d0, child) {
            return Ok(false);
        }
        let pa0 = d0 & ADDR_MASK;
        let attr = d0 & LEAF_ATTR_MASK;
        let fits = |d: u64, i: u64| is_leaf(d, child) && d & LEAF_ATTR_MASK == attr && d & ADDR_MASK == pa0 + i * step;
        let i = (written - tbase) / step;
        let last = ENTRIES as u64 - 1;
        Ok(fits(self.read(table + i * 8)?, i) && fits(self.read(table + last * 8)?, last))
    }

    /// If the table under an entry at `level` maps 512 contiguous same-attribute leaves
    /// starting at a `level`-block-aligned PA, the block descriptor that replaces it.
    fn mergeable(&self, table: u64, level: u8) -> Result<Option<u64>, P2mError> {
        let child = level + 1;
        let d0 = self.read(table)?;
        if !is_leaf(d0, child) {
            return Ok(None);
        }
        let pa0 = d0 & ADDR_MASK;
        let attr = d0 & LEAF_ATTR_MASK;
        if !pa0.is_multiple_of(entry_size(level)) {
            return Ok(None);
        }
        let step = entry_size(child);
        for i in 1..ENTRIES as u64 {
            let d = self.read(table + i * 8)?;
            if !is_leaf(d, child) || d & LEAF_ATTR_MASK != attr || d & ADDR_MASK != pa0 + i * step {
                return Ok(None);
            }
        }
        Ok(Some(leaf_desc(level, pa0, attr)))
    }

    /// End of an operation: finish TLB work, give back unused frames.
    fn finish(&mut self) {
        self.flush();
        for pa in self.pool.drain(..) {
            self.frames.free_frame(pa);
        }
    }
}

impl Stage2 {
    /// Empty stage-2 tables for `vmid`: allocates and zeroes the root (two or more
    /// concatenated, size-aligned frames for IPA sizes above 39 bits).
    pub fn new<F, M>(
        vmid: u16,
        cfg: Stage2Config,
        frames: &mut F,
        mem: &M,
    ) -> Result<Self, P2mError>
    where
        F: FrameAlloc + ?Sized,
        M: PhysMem + ?Sized,
    {
        let (start_level, root_pages) = cfg.validate()?;
        let root = frames
            .alloc_frames(root_pages)
            .ok_or(P2mError::OutOfFrames { needed: root_pages })?;
        let bytes = root_pages as u64 * PAGE_SIZE;
        if !root.is_multiple_of(bytes)
            || root
                .checked_add(bytes)
                .is_none_or(|e| e > 1u64 << cfg.pa_bits)
        {
            frames.free_frames(root, root_pages);
            return Err(P2mError::BadFrame { pa: root });
        }
        const ZEROS: [u8; 512] = [0; 512];
        for off in (0..bytes).step_by(ZEROS.len()) {
            if let Err(e) = mem.write(root + off, &ZEROS) {
                frames.free_frames(root, root_pages);
                return Err(e.into());
            }
        }
        mem.clean_dcache(root, bytes as usize);
        Ok(Stage2 {
            vmid,
            cfg,
            root,
            start_level,
            root_pages,
            tables: 0,
            min_leaf_level: 1,
        })
    }

    /// Map with pages only, from now on: no block is written, so none is ever split or merged.
    /// For tables that devices walk too (an SMMU sharing this stage 2): changing a block's size
    /// needs break-before-make, and a device cannot retry a DMA that meets the invalid entry
    /// the way a CPU retries a faulting access. With pages only, changing one page's mapping
    /// leaves every other page's entry untouched. Call it before mapping anything that is to
    /// stay page-granular (existing blocks are not split).
    pub fn set_page_granular(&mut self) {
        self.min_leaf_level = 3;
    }

    /// Whether leaves are pages only ([`set_page_granular`](Self::set_page_granular)).
    pub fn is_page_granular(&self) -> bool {
        self.min_leaf_level == 3
    }

    pub fn vmid(&self) -> u16 {
        self.vmid
    }

    pub fn config(&self) -> Stage2Config {
        self.cfg
    }

    /// Physical address of the root table (first of the concatenated frames).
    pub fn root_pa(&self) -> u64 {
        self.root
    }

    /// Frames in the root table (1, or 2/4/8 when concatenated).
    pub fn root_frames(&self) -> usize {
        self.root_pages
    }

    /// Non-root table frames in use.
    pub fn table_frames(&self) -> usize {
        self.tables
    }

    /// Level the walk starts at (1 or 0).
    pub fn start_level(&self) -> u8 {
        self.start_level
    }

    /// VTTBR_EL2: VMID in bits [63:48], root table address (CnP = 0).
    pub fn vttbr(&self) -> u64 {
        (u64::from(self.vmid) << 48) | self.root
    }

    /// VTCR_EL2 for this configuration: T0SZ = 64 - ipa_bits, SL0 for the start level,
    /// table walks inner/outer write-back write-allocate and inner shareable, 4 KiB granule,
    /// PS from `pa_bits`, RES1 bit 31. VS (16-bit VMIDs) is left to the caller ([`VTCR_VS`]).
    pub fn vtcr(&self) -> u64 {
        let t0sz = 64 - u64::from(self.cfg.ipa_bits);
        // 4 KiB granule: SL0 = 0b01 starts at level 1, 0b10 at level 0.
        let sl0: u64 = if self.start_level == 0 { 0b10 } else { 0b01 };
        let ps = self.cfg.ps().map_or(0, |(enc, _)| enc);
        VTCR_RES1
            | t0sz
            | (sl0 << VTCR_SL0_SHIFT)
            | VTCR_IRGN0_WBWA
            | VTCR_ORGN0_WBWA
            | VTCR_SH0_INNER
            | VTCR_TG0_4K
            | (ps << VTCR_PS_SHIFT)
    }

    /// The ARMv7-A (LPAE) VTCR for the same tables, where that architecture can walk them: a
    /// walk starting at level 1 over at most 40 IPA bits (T0SZ is a signed 4-bit field, 32 -
    /// ipa_bits, its sign repeated in S), the same walk cacheability and shareability, RES1
    /// bit 31, and an 8-bit VMID (ARMv7's VTTBR has no more; `vttbr` then has the same layout).
    /// `None` for a configuration ARMv7 cannot use.
    pub fn vtcr_armv7(&self) -> Option<u32> {
        let bits = self.cfg.ipa_bits;
        if self.start_level != 1 || !(32..=40).contains(&bits) || self.vmid > 0xff {
            return None;
        }
        let t0sz = (32i32 - i32::from(bits)) as u32 & 0xf;
        let s = (t0sz >> 3) & 1;
        Some(
            VTCR_RES1 as u32
                | t0sz
                | (s << 4)
                | (0b01 << VTCR_SL0_SHIFT)
                | VTCR_IRGN0_WBWA as u32
                | VTCR_ORGN0_WBWA as u32
                | VTCR_SH0_INNER as u32,
        )
    }

    fn ipa_limit(&self) -> u64 {
        1u64 << self.cfg.ipa_bits
    }

    fn check_ipa_range(&self, ipa: u64, size: u64) -> Result<(), P2mError> {
        if !ipa.is_multiple_of(PAGE_SIZE) {
            return Err(P2mError::MisalignedIpa(ipa));
        }
        if !size.is_multiple_of(PAGE_SIZE) {
            return Err(P2mError::MisalignedSize(size));
        }
        match ipa.checked_add(size) {
            Some(end) if end <= self.ipa_limit() => Ok(()),
            _ => Err(P2mError::IpaOutOfRange { ipa, size }),
        }
    }

    fn check_map_args(&self, ipa: u64, pa: u64, size: u64) -> Result<(), P2mError> {
        self.check_ipa_range(ipa, size)?;
        if !pa.is_multiple_of(PAGE_SIZE) {
            return Err(P2mError::MisalignedPa(pa));
        }
        match pa.checked_add(size) {
            Some(end) if end <= 1u64 << self.cfg.pa_bits => Ok(()),
            _ => Err(P2mError::PaOutOfRange { pa, size }),
        }
    }

    /// Map `[ipa, ipa + size)` to `[pa, pa + size)` with `attr`, **replacing** any existing
    /// mappings in the range (break-before-make where a valid entry changes). Uses blocks
    /// where IPA, PA and size allow. `size == 0` does nothing. On error nothing changed
    /// (except [`P2mError::Mem`], see the module docs).
    #[allow(clippy::too_many_arguments)]
    pub fn map<F, M, T>(
        &mut self,
        ipa: u64,
        pa: u64,
        size: u64,
        attr: S2Attr,
        frames: &mut F,
        mem: &M,
        tlb: &mut T,
    ) -> Result<(), P2mError>
    where
        F: FrameAlloc + ?Sized,
        M: PhysMem + ?Sized,
        T: TlbOps + ?Sized,
    {
        self.check_map_args(ipa, pa, size)?;
        if size == 0 {
            return Ok(());
        }
        let done = match size == PAGE_SIZE && self.map_page_in_place(ipa, pa, attr.desc_bits(), mem, tlb)? {
            true => Ok(()),
            false => self.update(Op::Map { ipa, pa, attr: attr.desc_bits() }, ipa, ipa + size, frames, mem, tlb),
        };
        let ram = attr.mem == S2MemType::NormalWb && attr.read && done.is_ok();
        tlb.p2m_changed(self.vmid, ipa, size, ram.then_some((pa, attr.write)));
        done
    }

    /// Like [`map`](Self::map), but fails with [`P2mError::AlreadyMapped`] (changing
    /// nothing) if any page of `[ipa, ipa + size)` is already mapped.
    #[allow(clippy::too_many_arguments)]
    pub fn map_new<F, M, T>(
        &mut self,
        ipa: u64,
        pa: u64,
        size: u64,
        attr: S2Attr,
        frames: &mut F,
        mem: &M,
        tlb: &mut T,
    ) -> Result<(), P2mError>
    where
        F: FrameAlloc + ?Sized,
        M: PhysMem + ?Sized,
        T: TlbOps + ?Sized,
    {
        self.check_map_args(ipa, pa, size)?;
        if let Some(first) = self.leaves_in(ipa, ipa.saturating_add(size), mem).next() {
            let leaf = first?;
            return Err(P2mError::AlreadyMapped {
                ipa: leaf.ipa.max(ipa),
            });
        }
        self.map(ipa, pa, size, attr, frames, mem, tlb)
    }

    /// Unmap `[ipa, ipa + size)`; unmapped pages in the range are fine. Splits blocks that
    /// are only partly unmapped (which can need frames: [`P2mError::OutOfFrames`], with
    /// nothing changed). Tables it empties stay linked ([`reclaim_empty_tables`](Self::reclaim_empty_tables));
    /// tables under entries it clears whole are freed.
    pub fn unmap<F, M, T>(
        &mut self,
        ipa: u64,
        size: u64,
        frames: &mut F,
        mem: &M,
        tlb: &mut T,
    ) -> Result<(), P2mError>
    where
        F: FrameAlloc + ?Sized,
        M: PhysMem + ?Sized,
        T: TlbOps + ?Sized,
    {
        self.check_ipa_range(ipa, size)?;
        if size == 0 {
            return Ok(());
        }
        let done = match size == PAGE_SIZE && self.unmap_page_in_place(ipa, mem, tlb)? {
            true => Ok(()),
            false => self.update(Op::Unmap, ipa, ipa + size, frames, mem, tlb),
        };
        tlb.p2m_changed(self.vmid, ipa, size, None);
        done
    }

    /// Unmap the page at `ipa` if it is mapped and `want` accepts the (page-aligned) PA it maps
    /// to, in one walk when a level-3 entry maps it. Ok(true) if it was unmapped; Ok(false),
    /// nothing changed, if it was not mapped or `want` said no. A page inside a block takes
    /// [`unmap`](Self::unmap)'s split.
    pub fn unmap_page_if<F, M, T>(
        &mut self,
        ipa: u64,
        want: impl FnOnce(u64) -> bool,
        frames: &mut F,
        mem: &M,
        tlb: &mut T,
    ) -> Result<bool, P2mError>
    where
        F: FrameAlloc + ?Sized,
        M: PhysMem + ?Sized,
        T: TlbOps + ?Sized,
    {
        self.check_ipa_range(ipa, PAGE_SIZE)?;
        if !ipa.is_multiple_of(PAGE_SIZE) {
            return Err(P2mError::MisalignedIpa(ipa));
        }
        if let Some(slot) = self.page_slot(ipa, mem)? {
            let old = mem.read_u64(slot)?;
            if !is_leaf(old, 3) || !want(old & ADDR_MASK) {
                return Ok(false);
            }
            mem.write_u64(slot, 0)?;
            mem.clean_dcache(slot, 8);
            tlb.invalidate_ipa(self.vmid, ipa);
            tlb.sync();
            tlb.p2m_changed(self.vmid, ipa, PAGE_SIZE, None);
            return Ok(true);
        }
        match self.lookup_pa(ipa, mem) {
            Some(pa) if want(pa & !(PAGE_SIZE - 1)) => self.unmap(ipa, PAGE_SIZE, frames, mem, tlb).map(|()| true),
            _ => Ok(false),
        }
    }

    /// Unmap the pages at `ipas`, in order, each if it is mapped and `want` accepts the PA it
    /// maps to; stop at the first that is not (a hole, an unwanted frame, a bad address).
    /// Returns how many were unmapped. Pages that level-3 entries map are cleared in place and
    /// invalidated together at the end: one `invalidate_ipa` for a single page, one
    /// `invalidate_vmid` for several, then one `sync` — so a balloon batch costs the TLBs one
    /// broadcast, not one per page. A page inside a block first flushes what is pending, then
    /// takes [`unmap_page_if`](Self::unmap_page_if)'s split. Every cleared page is invalidated
    /// and synced before this returns, error or not.
    pub fn unmap_pages_if<F, M, T>(
        &mut self,
        ipas: &[u64],
        mut want: impl FnMut(u64) -> bool,
        frames: &mut F,
        mem: &M,
        tlb: &mut T,
    ) -> Result<usize, P2mError>
    where
        F: FrameAlloc + ?Sized,
        M: PhysMem + ?Sized,
        T: TlbOps + ?Sized,
    {
        let mut pending = Cleared::default();
        let mut done = 0;
        for &ipa in ipas {
            let step = self.clear_page_if(ipa, &mut want, mem);
            match step {
                Ok(Some(true)) => {
                    pending.note(ipa);
                    tlb.p2m_changed(self.vmid, ipa, PAGE_SIZE, None);
                }
                Ok(Some(false)) => break,
                Ok(None) => {
                    pending.flush(self.vmid, tlb);
                    let mut unmapped = Ok(false);
                    if let Some(pa) = self.lookup_pa(ipa, mem) {
                        if want(pa & !(PAGE_SIZE - 1)) {
                            unmapped = self.unmap(ipa, PAGE_SIZE, frames, mem, tlb).map(|()| true);
                        }
                    }
                    match unmapped {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => {
                    pending.flush(self.vmid, tlb);
                    if done == 0 {
                        return Err(e);
                    }
                    break;
                }
            }
            done += 1;
        }
        pending.flush(self.vmid, tlb);
        Ok(done)
    }

    /// Like [`unmap_pages_if`](Self::unmap_pages_if), but every page of `ipas` is tried and
    /// none stops the others (`want` gets the page's index in `ipas` and the PA it maps): the
    /// result says for each page whether it was unmapped, Ok(false) for a hole or a frame
    /// `want` refused, or why not. Level-3 pages of the whole list are cleared in place and
    /// invalidated together (one invalidation, one sync; a page inside a block first flushes
    /// what is pending, then is split), and every cleared page is invalidated and synced
    /// before this returns.
    pub fn unmap_each_page_if<F, M, T>(
        &mut self,
        ipas: &[u64],
        mut want: impl FnMut(usize, u64) -> bool,
        frames: &mut F,
        mem: &M,
        tlb: &mut T,
    ) -> Vec<Result<bool, P2mError>>
    where
        F: FrameAlloc + ?Sized,
        M: PhysMem + ?Sized,
        T: TlbOps + ?Sized,
    {
        let mut pending = Cleared::default();
        let mut out = Vec::with_capacity(ipas.len());
        for (i, &ipa) in ipas.iter().enumerate() {
            let step = self.clear_page_if(ipa, |pa| want(i, pa), mem);
            out.push(match step {
                Ok(Some(true)) => {
                    pending.note(ipa);
                    tlb.p2m_changed(self.vmid, ipa, PAGE_SIZE, None);
                    Ok(true)
                }
                Ok(Some(false)) => Ok(false),
                Ok(None) => {
                    pending.flush(self.vmid, tlb);
                    match self.lookup_pa(ipa, mem) {
                        Some(pa) if want(i, pa & !(PAGE_SIZE - 1)) => self.unmap(ipa, PAGE_SIZE, frames, mem, tlb).map(|()| true),
                        _ => Ok(false),
                    }
                }
                Err(e) => Err(e),
            });
        }
        pending.flush(self.vmid, tlb);
        out
    }

    /// Clear the level-3 entry for `ipa` if it maps a page and `want` accepts its PA, leaving
    /// the invalidation to the caller: Ok(Some(true)) cleared, Ok(Some(false)) a hole or
    /// refused, Ok(None) when no level-3 table leads to `ipa` (a block, or nothing mapped).
    fn clear_page_if<M: PhysMem + ?Sized>(&self, ipa: u64, want: impl FnOnce(u64) -> bool, mem: &M) -> Result<Option<bool>, P2mError> {
        self.check_ipa_range(ipa, PAGE_SIZE)?;
        if !ipa.is_multiple_of(PAGE_SIZE) {
            return Err(P2mError::MisalignedIpa(ipa));
        }
        let Some(slot) = self.page_slot(ipa, mem)? else { return Ok(None) };
        let old = mem.read_u64(slot)?;
        if !is_leaf(old, 3) || !want(old & ADDR_MASK) {
            return Ok(Some(false));
        }
        mem.write_u64(slot, 0)?;
        mem.clean_dcache(slot, 8);
        Ok(Some(true))
    }

    /// The level-3 slot that translates `ipa`, if tables lead down to it (no block or hole
    /// on the way).
    fn page_slot<M: PhysMem + ?Sized>(&self, ipa: u64, mem: &M) -> Result<Option<u64>, P2mError> {
        let mut level = self.start_level;
        let mut table = self.root;
        let mut idx = ipa >> shift(level);
        while level < 3 {
            let d = mem.read_u64(table + idx * 8)?;
            if !is_table(d, level) {
                return Ok(None);
            }
            table = d & ADDR_MASK;
            level += 1;
            idx = (ipa >> shift(level)) & (ENTRIES as u64 - 1);
        }
        Ok(Some(table + idx * 8))
    }

    /// The usual one-page map (a grant, a shared page, a populated page) done without the
    /// general machinery: the tables exist down to level 3 and the slot is empty, so the page
    /// is one descriptor write (no frame, no break-before-make, and no merge: one page never
    /// merges). Returns false, having changed nothing, when that is not the case: the general
    /// path ([`Stage2::update`]) then does it.
    fn map_page_in_place<M, T>(&mut self, ipa: u64, pa: u64, attr: u64, mem: &M, tlb: &mut T) -> Result<bool, P2mError>
    where
        M: PhysMem + ?Sized,
        T: TlbOps + ?Sized,
    {
        let Some(slot) = self.page_slot(ipa, mem)? else { return Ok(false) };
        let new = leaf_desc(3, pa, attr);
        let old = mem.read_u64(slot)?;
        if old == new {
            return Ok(true);
        }
        if is_valid(old) {
            return Ok(false);
        }
        mem.write_u64(slot, new)?;
        mem.clean_dcache(slot, 8);
        // The descriptor is visible to the walkers before the guest runs again.
        tlb.sync();
        Ok(true)
    }

    /// The usual one-page unmap without the general machinery: the page is a level-3 entry,
    /// cleared, invalidated by IPA (CPU and SMMUs) and synced. Returns false, having changed
    /// nothing, when the page is not mapped by a level-3 entry (a block to split, or nothing
    /// mapped): [`Stage2::update`] handles those.
    fn unmap_page_in_place<M, T>(&mut self, ipa: u64, mem: &M, tlb: &mut T) -> Result<bool, P2mError>
    where
        M: PhysMem + ?Sized,
        T: TlbOps + ?Sized,
    {
        let Some(slot) = self.page_slot(ipa, mem)? else { return Ok(false) };
        let old = mem.read_u64(slot)?;
        if !is_valid(old) {
            return Ok(true);
        }
        mem.write_u64(slot, 0)?;
        mem.clean_dcache(slot, 8);
        tlb.invalidate_ipa(self.vmid, ipa);
        tlb.sync();
        Ok(true)
    }

    fn update<F, M, T>(
        &mut self,
        op: Op,
        start: u64,
        end: u64,
        frames: &mut F,
        mem: &M,
        tlb: &mut T,
    ) -> Result<(), P2mError>
    where
        F: FrameAlloc + ?Sized,
        M: PhysMem + ?Sized,
        T: TlbOps + ?Sized,
    {
        let mut ed = Editor::new(self, frames, mem, tlb);
        ed.merge = end - start > PAGE_SIZE;
        let mut needed = ed.count(self.start_level, Some(self.root), 0, start, end, op)?;
        match ed.reserve(needed) {
            Ok(()) => {}
            Err(P2mError::OutOfFrames { .. }) => {
                // Give back the tables earlier unmaps left empty, then try once more (a freed
                // table may be one this operation counted on: count again).
                let reclaimed = ed.reclaim(self.start_level, self.root, 0, self.root_pages * ENTRIES);
                ed.flush();
                self.tables = self.tables.saturating_add_signed(core::mem::take(&mut ed.tables_delta));
                reclaimed?;
                needed = ed.count(self.start_level, Some(self.root), 0, start, end, op)?;
                ed.reserve(needed)?;
            }
            Err(e) => return Err(e),
        }
        let result = ed.apply(self.start_level, self.root, 0, start, end, op);
        ed.finish();
        self.tables = self.tables.saturating_add_signed(ed.tables_delta);
        result
    }

    /// Free the tables that map nothing (unmaps leave them linked, see the module docs), after
    /// invalidating their walk-cache entries. Also done by `map`/`unmap` when the frame
    /// allocator runs dry. Returns how many table frames were freed.
    pub fn reclaim_empty_tables<F, M, T>(&mut self, frames: &mut F, mem: &M, tlb: &mut T) -> Result<usize, P2mError>
    where
        F: FrameAlloc + ?Sized,
        M: PhysMem + ?Sized,
        T: TlbOps + ?Sized,
    {
        let mut ed = Editor::new(self, frames, mem, tlb);
        let result = ed.reclaim(self.start_level, self.root, 0, self.root_pages * ENTRIES);
        ed.finish();
        let freed = ed.tables_delta.unsigned_abs();
        self.tables = self.tables.saturating_add_signed(ed.tables_delta);
        result.map(|_| freed)
    }

    /// Translate one IPA. `None` if unmapped, beyond the IPA size, or unreadable.
    pub fn lookup<M: PhysMem + ?Sized>(&self, ipa: u64, mem: &M) -> Option<S2Translation> {
        if ipa >= self.ipa_limit() {
            return None;
        }
        let mut level = self.start_level;
        let mut table = self.root;
        let mut idx = ipa >> shift(level);
        loop {
            let d = mem.read_u64(table + idx * 8).ok()?;
            if is_leaf(d, level) {
                let size = entry_size(level);
                return Some(S2Translation {
                    pa: (d & ADDR_MASK) + (ipa & (size - 1)),
                    attr: S2Attr::from_desc(d),
                    size_of_leaf: size,
                });
            }
            if !is_table(d, level) {
                return None;
            }
            table = d & ADDR_MASK;
            level += 1;
            idx = (ipa >> shift(level)) & (ENTRIES as u64 - 1);
        }
    }

    /// The PA `ipa` translates to, without decoding attributes (the grant and memory ops ask
    /// this on every call). `None` as for [`lookup`](Self::lookup).
    pub fn lookup_pa<M: PhysMem + ?Sized>(&self, ipa: u64, mem: &M) -> Option<u64> {
        if ipa >= self.ipa_limit() {
            return None;
        }
        let mut level = self.start_level;
        let mut table = self.root;
        let mut idx = ipa >> shift(level);
        loop {
            let d = mem.read_u64(table + idx * 8).ok()?;
            if is_leaf(d, level) {
                return Some((d & ADDR_MASK) + (ipa & (entry_size(level) - 1)));
            }
            if !is_table(d, level) {
                return None;
            }
            table = d & ADDR_MASK;
            level += 1;
            idx = (ipa >> shift(level)) & (ENTRIES as u64 - 1);
        }
    }

    /// Every leaf mapping, in IPA order.
    pub fn leaves<'m, M: PhysMem + ?Sized>(&self, mem: &'m M) -> Leaves<'m, M> {
        self.leaves_in(0, self.ipa_limit(), mem)
    }

    /// The leaf mappings that overlap `[start, end)`, in IPA order (whole leaves, which may
    /// extend beyond the range).
    pub fn leaves_in<'m, M: PhysMem + ?Sized>(
        &self,
        start: u64,
        end: u64,
        mem: &'m M,
    ) -> Leaves<'m, M> {
        let end = end.min(self.ipa_limit());
        let mut it = Leaves {
            mem,
            end,
            stack: [WalkFrame::default(); 4],
            depth: 0,
            start,
        };
        if start < end {
            let (first, last) = index_span(self.start_level, 0, start, end);
            it.stack[0] = WalkFrame {
                level: self.start_level,
                table: self.root,
                tbase: 0,
                idx: first,
                last,
            };
            it.depth = 1;
        }
        it
    }

    /// Free every table frame (root included) after invalidating the VMID's TLB entries.
    /// The VMID must no longer be live on any CPU. On a memory error the unreadable
    /// subtrees are leaked and the error returned.
    pub fn destroy<F, M, T>(self, frames: &mut F, mem: &M, tlb: &mut T) -> Result<(), P2mError>
    where
        F: FrameAlloc + ?Sized,
        M: PhysMem + ?Sized,
        T: TlbOps + ?Sized,
    {
        tlb.invalidate_vmid(self.vmid);
        tlb.sync();
        let mut ed = Editor::new(&self, frames, mem, tlb);
        let mut result = Ok(());
        let root_entries = self.root_pages * ENTRIES;
        for i in 0..root_entries as u64 {
            match ed.read(self.root + i * 8) {
                Ok(d) if is_table(d, self.start_level) => {
                    if let Err(e) = ed.defer_subtree(d & ADDR_MASK, self.start_level + 1) {
                        result = Err(e);
                    }
                }
                Ok(_) => {}
                Err(e) => result = Err(e),
            }
        }
        for pa in ed.deferred.drain(..) {
            ed.frames.free_frame(pa);
        }
        frames.free_frames(self.root, self.root_pages);
        result
    }
}

#[derive(Clone, Copy, Default)]
struct WalkFrame {
    level: u8,
    table: u64,
    tbase: u64,
    idx: usize,
    last: usize,
}

/// Iterator over leaf mappings ([`Stage2::leaves`]). Yields `Err` once and stops if table
/// memory cannot be read. Do not change the tables while iterating.
pub struct Leaves<'m, M: PhysMem + ?Sized> {
    mem: &'m M,
    start: u64,
    end: u64,
    stack: [WalkFrame; 4],
    depth: usize,
}

impl<M: PhysMem + ?Sized> Iterator for Leaves<'_, M> {
    type Item = Result<S2Leaf, P2mError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let f = self.stack.get_mut(self.depth.checked_sub(1)?)?;
            if f.idx > f.last {
                self.depth -= 1;
                continue;
            }
            let WalkFrame {
                level,
                table,
                tbase,
                idx,
                ..
            } = *f;
            f.idx += 1;
            let size = entry_size(level);
            let ebase = tbase + idx as u64 * size;
            let d = match self.mem.read_u64(table + idx as u64 * 8) {
                Ok(d) => d,
                Err(e) => {
                    self.depth = 0;
                    return Some(Err(e.into()));
                }
            };
            if is_leaf(d, level) {
                return Some(Ok(S2Leaf {
                    ipa: ebase,
                    pa: d & ADDR_MASK,
                    size,
                    attr: S2Attr::from_desc(d),
                }));
            }
            if is_table(d, level) && self.depth < self.stack.len() {
                let s = self.start.max(ebase);
                let e = self.end.min(ebase + size);
                let (first, last) = index_span(level + 1, ebase, s, e);
                self.stack[self.depth] = WalkFrame {
                    level: level + 1,
                    table: d & ADDR_MASK,
                    tbase: ebase,
                    idx: first,
                    last,
                };
                self.depth += 1;
            }
        }
    }
}

// Property tests (proptest), not built for the loom model checks.
#[cfg(all(test, not(loom)))]
mod tests;
