//! Register-level model of one Exynos SysMMU (v1-v3 register layout as on the Exynos5250, and v5),
//! built from the facts in shared/facts/exynos5250.md. It owns its register file and caches (TLB,
//! FLPD cache, the v3.x prefetch buffer) and walks page tables in a [`SimMem`] through the device's
//! view of memory, so only cleaned table writes are seen.
//!
//! Modelled behaviour, quirks included:
//! - CTRL: bit 0 enable, bit 1 block (ENABLE 0x5, BLOCK 0x7, DISABLE 0x0). Disabled = bypass
//!   (IOVA used as PA: the device is wide open). STATUS bit 0 sets a configurable number of STATUS
//!   reads after BLOCK is written (or never).
//! - A fault sets INT_STATUS, latches the faulting IOVA in that fault type's address register and
//!   blocks the SysMMU (STATUS.0 = 1, DMA stalls) until the fault bit is cleared through INT_CLEAR
//!   *and* CTRL is written with ENABLE (in that order: an ENABLE while a fault bit is set does not
//!   unblock).
//! - TLB: 64 sets x 8 ways, indexed by iova[17:12]. FLUSH invalidates everything. FLUSH_ENTRY on v1/v3
//!   invalidates the entries covering that page; on v2 it invalidates the whole set (so 64 entry
//!   flushes cover any range). v5 has FLUSH_RANGE over [FLUSH_START, FLUSH_END] (page granular).
//! - v3.x prefetch buffer: a level-2 miss fetches the aligned block of level-2 entries holding the
//!   walked one and the block after it (a block is 32 entries = 128 KiB of IOVA on v3.0/v3.1, 64 =
//!   256 KiB on v3.2+; never past the end of the level-2 table) and keeps the last two such
//!   windows, fault entries included. Hence the rule for IOVA layouts: regions aligned to a block
//!   and separated by at least one block are never prefetched from a neighbour's walk. A later walk in the block uses the cached entries, so a
//!   page mapped after its neighbour was walked keeps faulting until FLUSH_ENTRY of that page (or
//!   FLUSH) drops the block.
//! - FLPD cache (v3.2+, v5; when CFG.FLPDCACHE is set): caches level-1 entries. v3.3 also fills it
//!   speculatively with the 7 neighbouring level-1 entries of a walk, and a cached level-1 *fault*
//!   entry is not dropped by FLUSH_ENTRY, only by FLUSH (the model's reading of why Linux points every
//!   empty level-1 entry at a shared zero level-2 table on v3.3 and writes that link back on unmap,
//!   then flushes the FLPD entry when it replaces the link).
//! - CFG.EAP (bit 2) enables the permission check; without it every mapped page is read-write.
//! - Physical addresses in configured secure ranges give SECURITY faults; a walk or a transfer to
//!   an address that is not RAM gives a BUS ERROR (v1-v3; v5 reports a page-table-walk fault).
//! - Power (a SysMMU placed in a PMU model's power domain, [`SysmmuModel::in_domain`]): while the
//!   domain is off, registers read as zero, writes are lost and the master does no DMA; when the
//!   domain comes on again every register and cache is at its reset value (disabled: bypass).
//! - Clocks ([`SysmmuModel::set_clock`]): with its (or its master's) clock gated, the registers
//!   read as zero and writes are lost (the state is kept) and the master does no DMA.

use crate::mem::SimMem;
use crate::soc::PowerLine;
use platform::Mmio;
use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::rc::Rc;

/// Register offsets common to every version.
pub const CTRL: usize = 0x000;
pub const CFG: usize = 0x004;
pub const STATUS: usize = 0x008;
pub const VERSION: usize = 0x034;
/// v1-v3 layout.
pub const V1_FLUSH: usize = 0x00C;
pub const V1_FLUSH_ENTRY: usize = 0x010;
pub const V1_PT_BASE: usize = 0x014;
pub const V1_INT_STATUS: usize = 0x018;
pub const V1_INT_CLEAR: usize = 0x01C;
pub const V1_PAGE_FAULT_ADDR: usize = 0x024;
pub const V1_AW_FAULT_ADDR: usize = 0x028;
pub const V1_AR_FAULT_ADDR: usize = 0x02C;
pub const V1_DEFAULT_SLAVE_ADDR: usize = 0x030;
pub const V1_PB0_SADDR: usize = 0x04C;
pub const V1_PB0_EADDR: usize = 0x050;
pub const V1_PB1_SADDR: usize = 0x054;
pub const V1_PB1_EADDR: usize = 0x058;
/// v5 layout.
pub const V5_PT_BASE: usize = 0x00C;
pub const V5_FLUSH_ALL: usize = 0x010;
pub const V5_FLUSH_ENTRY: usize = 0x014;
pub const V5_FLUSH_RANGE: usize = 0x018;
pub const V5_FLUSH_START: usize = 0x020;
pub const V5_FLUSH_END: usize = 0x024;
pub const V5_INT_STATUS: usize = 0x060;
pub const V5_INT_CLEAR: usize = 0x064;
pub const V5_FAULT_AR_VA: usize = 0x070;
pub const V5_FAULT_AW_VA: usize = 0x080;

const CFG_EAP: u32 = 1 << 2;
const CFG_FLPDCACHE: u32 = 1 << 20;
const TLB_SETS: usize = 64;
const TLB_WAYS: usize = 8;
const PREFETCH_BLOCKS: usize = 2;
const FLPD_ENTRIES: usize = 16;
const PAGE: u64 = 4096;

/// What kind of SysMMU the model is.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub major: u8,
    pub minor: u8,
    /// Read back from VERSION instead of the value built from major/minor (for unknown versions).
    pub version_override: Option<u32>,
    /// STATUS reads after a BLOCK write before STATUS.0 sets; `None` = never (a wedged master).
    pub block_latency: Option<u32>,
    /// Physical ranges behind the TrustZone filter: accesses give SECURITY faults.
    pub secure_ranges: Vec<Range<u64>>,
}

impl ModelConfig {
    /// SysMMU v3.`minor`, as on the Exynos5250.
    pub fn v3(minor: u8) -> Self {
        ModelConfig { major: 3, minor, version_override: None, block_latency: Some(3), secure_ranges: Vec::new() }
    }
    pub fn v2() -> Self {
        ModelConfig { major: 2, ..Self::v3(0) }
    }
    pub fn v5() -> Self {
        ModelConfig { major: 5, ..Self::v3(0) }
    }
    fn is_v5_layout(&self) -> bool {
        self.major >= 5
    }
    /// Level-2 entries per prefetch block (0 = no prefetch buffer).
    pub fn prefetch_entries(&self) -> usize {
        match (self.major, self.minor) {
            (3, 0..=1) => 32,
            (3, _) => 64,
            _ => 0,
        }
    }
    fn has_flpd_cache(&self) -> bool {
        (self.major == 3 && self.minor >= 2) || self.major >= 5
    }
    fn flpd_quirk(&self) -> bool {
        self.major == 3 && self.minor >= 3
    }
}

/// A fault the model reports, by the v1-v3 INT_STATUS bit numbering (v5 uses its own bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelFault {
    Page { write: bool },
    MultiHit { write: bool },
    BusError { write: bool },
    Security { write: bool },
    AccessProt { write: bool },
    /// v5 only: the page-table walk itself failed.
    PageTableWalk { write: bool },
}

/// Why a DMA did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaError {
    /// The SysMMU is blocked (by CTRL or by an unhandled fault): the master stalls.
    Stalled,
    /// The access faulted: reported in INT_STATUS, the SysMMU is now blocked.
    Fault { fault: ModelFault, iova: u32 },
    /// Bypass (SysMMU disabled) to an address that is not RAM.
    BypassNotMemory { pa: u64 },
    /// The power domain is off: neither the master nor its SysMMU runs.
    PoweredOff,
    /// The clock is gated: neither the master nor its SysMMU runs.
    NoClock,
}

#[derive(Clone, Copy, Debug)]
struct TlbEntry {
    va: u64,
    size: u64,
    pa: u64,
    read: bool,
    write: bool,
}

impl TlbEntry {
    fn covers(&self, iova: u64) -> bool {
        self.va <= iova && iova < self.va + self.size
    }
}

#[derive(Clone, Debug)]
struct PrefetchBlock {
    /// First IOVA of the block; the block maps `entries.len()` small pages from there.
    va: u64,
    entries: Vec<u32>,
}

#[derive(Default)]
struct State {
    ctrl: u32,
    cfg: u32,
    pt_base: u64,
    int_status: u32,
    page_fault_addr: u32,
    aw_fault_addr: u32,
    ar_fault_addr: u32,
    default_slave_addr: u32,
    pb: [u32; 4],
    flush_start: u32,
    flush_end: u32,
    /// Remaining STATUS reads before a requested block completes.
    block_countdown: Option<u32>,
    fault_blocked: bool,
    tlb: Vec<Vec<TlbEntry>>,
    prefetch: Vec<PrefetchBlock>,
    flpd: Vec<(u32, u32)>,
    stats: ModelStats,
}

/// Counters a test can assert on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModelStats {
    pub flush_all: u64,
    pub flush_entry: u64,
    pub flush_range: u64,
    /// TLB flushes (FLUSH, FLUSH_ENTRY) written while the SysMMU was not blocked.
    pub flush_while_unblocked: u64,
    pub walks: u64,
    pub tlb_hits: u64,
    pub prefetch_hits: u64,
    pub flpd_hits: u64,
    pub status_reads: u64,
    /// Register reads and writes while the power domain was off (lost on hardware).
    pub accesses_while_off: u64,
    /// Register reads and writes while the clock was gated (lost).
    pub accesses_without_clock: u64,
}

/// One SysMMU and the master device behind it.
pub struct SysmmuModel {
    cfg: ModelConfig,
    mem: Rc<SimMem>,
    st: RefCell<State>,
    /// The power domain, and how many power-ups of it this SysMMU has taken (reset) so far.
    power: Option<(Rc<PowerLine>, Cell<u64>)>,
    clock_gated: Cell<bool>,
}

impl SysmmuModel {
    /// A SysMMU out of reset (disabled: bypass) in front of `mem`.
    pub fn new(cfg: ModelConfig, mem: Rc<SimMem>) -> Self {
        let st = State { tlb: vec![Vec::new(); TLB_SETS], ..State::default() };
        SysmmuModel { cfg, mem, st: RefCell::new(st), power: None, clock_gated: Cell::new(false) }
    }

    /// A SysMMU inside the power domain `line` (a PMU model's [`crate::soc::PmuModel::domain_line`]).
    pub fn in_domain(cfg: ModelConfig, mem: Rc<SimMem>, line: Rc<PowerLine>) -> Self {
        let seen = Cell::new(line.power_ups());
        SysmmuModel { power: Some((line, seen)), ..Self::new(cfg, mem) }
    }

    /// Gate (false) or ungate the clock the registers and the master need.
    pub fn set_clock(&self, on: bool) {
        self.clock_gated.set(!on);
    }

    /// Registers answer: powered and clocked (counting an access that is lost otherwise).
    fn answers(&self) -> bool {
        if !self.powered() {
            self.st.borrow_mut().stats.accesses_while_off += 1;
            return false;
        }
        if self.clock_gated.get() {
            self.st.borrow_mut().stats.accesses_without_clock += 1;
            return false;
        }
        true
    }

    /// Whether the SysMMU has power; a power-up since the last look resets it first.
    pub fn powered(&self) -> bool {
        let Some((line, seen)) = &self.power else { return true };
        if !line.is_on() {
            return false;
        }
        if seen.get() != line.power_ups() {
            seen.set(line.power_ups());
            self.power_cycle();
        }
        true
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    pub fn stats(&self) -> ModelStats {
        self.st.borrow().stats
    }

    /// The VERSION register value.
    pub fn version_reg(&self) -> u32 {
        self.cfg
            .version_override
            .unwrap_or((u32::from(self.cfg.major) << 28) | (u32::from(self.cfg.minor & 0x7f) << 21))
    }

    /// CTRL as last written.
    pub fn ctrl(&self) -> u32 {
        self.powered();
        self.st.borrow().ctrl
    }

    /// CFG as last written.
    pub fn cfg_reg(&self) -> u32 {
        self.powered();
        self.st.borrow().cfg
    }

    /// The level-1 table base the SysMMU walks.
    pub fn pt_base(&self) -> u64 {
        self.powered();
        self.st.borrow().pt_base
    }

    /// Translation is on (not bypassing).
    pub fn is_enabled(&self) -> bool {
        self.powered();
        self.st.borrow().ctrl & 1 != 0
    }

    /// The master stalls (blocked by CTRL or by a fault).
    pub fn is_blocked(&self) -> bool {
        self.powered();
        let st = self.st.borrow();
        st.fault_blocked || (st.ctrl & 2 != 0)
    }

    /// Blocked or translating: the master cannot reach memory the table does not grant.
    pub fn is_isolated(&self) -> bool {
        self.is_blocked() || self.is_enabled()
    }

    /// The fault interrupt line (low while the domain is off).
    pub fn irq_pending(&self) -> bool {
        self.powered() && self.st.borrow().int_status != 0
    }

    pub fn int_status(&self) -> u32 {
        self.powered();
        self.st.borrow().int_status
    }

    /// The power domain went off and on: every register and cache is back at its reset value,
    /// so the SysMMU bypasses again until software reprograms it.
    pub fn power_cycle(&self) {
        let mut st = self.st.borrow_mut();
        let stats = st.stats;
        *st = State { tlb: vec![Vec::new(); TLB_SETS], stats, ..State::default() };
    }

    /// Raise a fault the model cannot produce from a walk (e.g. a TLB multi-hit), as the hardware
    /// would report it.
    pub fn inject_fault(&self, fault: ModelFault, iova: u32) {
        let mut st = self.st.borrow_mut();
        self.raise(&mut st, fault, iova);
    }

    fn fault_bit_and_reg(&self, fault: ModelFault) -> (u32, usize) {
        use ModelFault::*;
        if self.cfg.is_v5_layout() {
            let (bit, write) = match fault {
                PageTableWalk { write } | BusError { write } => (0, write),
                Page { write } => (1, write),
                MultiHit { write } => (2, write),
                AccessProt { write } => (3, write),
                Security { write } => (4, write),
            };
            if write {
                (bit + 16, V5_FAULT_AW_VA)
            } else {
                (bit, V5_FAULT_AR_VA)
            }
        } else {
            match fault {
                Page { .. } | PageTableWalk { .. } => (0, V1_PAGE_FAULT_ADDR),
                MultiHit { write: false } => (1, V1_AR_FAULT_ADDR),
                MultiHit { write: true } => (2, V1_AW_FAULT_ADDR),
                BusError { .. } => (3, V1_DEFAULT_SLAVE_ADDR),
                Security { write: false } => (4, V1_AR_FAULT_ADDR),
                AccessProt { write: false } => (5, V1_AR_FAULT_ADDR),
                Security { write: true } => (6, V1_AW_FAULT_ADDR),
                AccessProt { write: true } => (7, V1_AW_FAULT_ADDR),
            }
        }
    }

    fn raise(&self, st: &mut State, fault: ModelFault, iova: u32) -> DmaError {
        let (bit, reg) = self.fault_bit_and_reg(fault);
        st.int_status |= 1 << bit;
        match reg {
            V1_PAGE_FAULT_ADDR if !self.cfg.is_v5_layout() => st.page_fault_addr = iova,
            V1_AW_FAULT_ADDR if !self.cfg.is_v5_layout() => st.aw_fault_addr = iova,
            V1_AR_FAULT_ADDR if !self.cfg.is_v5_layout() => st.ar_fault_addr = iova,
            V1_DEFAULT_SLAVE_ADDR if !self.cfg.is_v5_layout() => st.default_slave_addr = iova,
            V5_FAULT_AR_VA => st.ar_fault_addr = iova,
            _ => st.aw_fault_addr = iova,
        }
        st.fault_blocked = true;
        DmaError::Fault { fault, iova }
    }

    fn format_v5(&self) -> bool {
        self.cfg.is_v5_layout()
    }

    fn lv1_fetch(&self, st: &mut State, iova: u32, write: bool) -> Result<u32, DmaError> {
        let idx = iova >> 20;
        let flpd_on = self.cfg.has_flpd_cache() && st.cfg & CFG_FLPDCACHE != 0;
        if flpd_on {
            if let Some(&(_, raw)) = st.flpd.iter().find(|(i, _)| *i == idx) {
                st.stats.flpd_hits += 1;
                return Ok(raw);
            }
        }
        let pa = st.pt_base + 4 * u64::from(idx);
        let raw = match self.mem.device_read_u32(pa) {
            Ok(v) => v,
            Err(_) => return Err(self.raise(st, self.walk_bus_error(write), iova)),
        };
        if flpd_on {
            let mut fill = vec![(idx, raw)];
            if self.cfg.flpd_quirk() {
                // Speculative fill: the aligned group of 8 level-1 entries around the walked one.
                let group = idx & !7;
                for i in group..group + 8 {
                    if i != idx {
                        if let Ok(v) = self.mem.device_read_u32(st.pt_base + 4 * u64::from(i)) {
                            fill.push((i, v));
                        }
                    }
                }
            }
            for (i, v) in fill {
                st.flpd.retain(|(j, _)| *j != i);
                if st.flpd.len() >= FLPD_ENTRIES {
                    st.flpd.remove(0);
                }
                st.flpd.push((i, v));
            }
        }
        Ok(raw)
    }

    fn walk_bus_error(&self, write: bool) -> ModelFault {
        if self.format_v5() {
            ModelFault::PageTableWalk { write }
        } else {
            ModelFault::BusError { write }
        }
    }

    fn lv2_fetch(&self, st: &mut State, table_pa: u64, iova: u32, write: bool) -> Result<u32, DmaError> {
        let n = self.cfg.prefetch_entries();
        let index = u64::from((iova >> 12) & 0xff);
        if n == 0 {
            return self
                .mem
                .device_read_u32(table_pa + 4 * index)
                .map_err(|_| self.raise(st, self.walk_bus_error(write), iova));
        }
        let iova64 = u64::from(iova);
        if let Some(b) = st.prefetch.iter().find(|b| b.va <= iova64 && iova64 < b.va + b.entries.len() as u64 * PAGE) {
            st.stats.prefetch_hits += 1;
            return Ok(b.entries[((iova64 - b.va) / PAGE) as usize]);
        }
        // The aligned block holding the walked entry and the block after it (within this table).
        let first = index & !(n as u64 - 1);
        let last = (first + 2 * n as u64).min(256);
        let mut entries = Vec::with_capacity(2 * n);
        for i in first..last {
            match self.mem.device_read_u32(table_pa + 4 * i) {
                Ok(v) => entries.push(v),
                Err(_) => return Err(self.raise(st, self.walk_bus_error(write), iova)),
            }
        }
        let raw = entries[(index - first) as usize];
        let va = iova64 & !(n as u64 * PAGE - 1);
        if st.prefetch.len() >= PREFETCH_BLOCKS {
            st.prefetch.remove(0);
        }
        st.prefetch.push(PrefetchBlock { va, entries });
        Ok(raw)
    }

    fn decode_pa(&self, raw: u32) -> u64 {
        if self.format_v5() {
            u64::from(raw) << 4
        } else {
            u64::from(raw)
        }
    }

    /// Page walk for `iova`; returns a TLB entry or raises the fault.
    fn walk(&self, st: &mut State, iova: u32, write: bool) -> Result<TlbEntry, DmaError> {
        st.stats.walks += 1;
        let v5 = self.format_v5();
        let lv1 = self.lv1_fetch(st, iova, write)?;
        let iova64 = u64::from(iova);
        match lv1 & 3 {
            2 => {
                let pa = self.decode_pa(lv1) & !0xF_FFFF;
                let (read, wr) = if v5 {
                    let f = (lv1 >> 4) & 3;
                    (f & 1 != 0, f & 2 != 0)
                } else {
                    let ap = lv1 & (1 << 10) != 0;
                    (ap, ap && lv1 & (1 << 15) == 0)
                };
                Ok(TlbEntry { va: iova64 & !0xF_FFFF, size: 1 << 20, pa, read, write: wr })
            }
            1 => {
                let table_pa = if v5 { u64::from(lv1 & !0x3f) << 4 } else { u64::from(lv1 & !0x3ff) };
                let lv2 = self.lv2_fetch(st, table_pa, iova, write)?;
                let (read, wr) = if v5 {
                    let f = (lv2 >> 2) & 3;
                    (f & 1 != 0, f & 2 != 0)
                } else {
                    let ap = lv2 & (1 << 4) != 0;
                    (ap, ap && lv2 & (1 << 9) == 0)
                };
                if lv2 & 2 != 0 {
                    let pa = self.decode_pa(lv2) & !0xFFF;
                    Ok(TlbEntry { va: iova64 & !0xFFF, size: 1 << 12, pa, read, write: wr })
                } else if lv2 & 3 == 1 {
                    let pa = self.decode_pa(lv2) & !0xFFFF;
                    Ok(TlbEntry { va: iova64 & !0xFFFF, size: 1 << 16, pa, read, write: wr })
                } else {
                    Err(self.raise(st, ModelFault::Page { write }, iova))
                }
            }
            _ => Err(self.raise(st, ModelFault::Page { write }, iova)),
        }
    }

    /// Translate one access of the master at `iova`, as the hardware would (TLB, caches, walk,
    /// permission and security checks, fault reporting). Returns the physical address.
    pub fn translate(&self, iova: u32, write: bool) -> Result<u64, DmaError> {
        if !self.powered() {
            return Err(DmaError::PoweredOff);
        }
        if self.clock_gated.get() {
            return Err(DmaError::NoClock);
        }
        let mut st = self.st.borrow_mut();
        if st.fault_blocked || st.ctrl & 2 != 0 {
            return Err(DmaError::Stalled);
        }
        if st.ctrl & 1 == 0 {
            // Disabled: bypass. The device reaches any physical address.
            let pa = u64::from(iova);
            return if self.mem.contains(pa, 1) { Ok(pa) } else { Err(DmaError::BypassNotMemory { pa }) };
        }
        let iova64 = u64::from(iova);
        let set = ((iova >> 12) as usize) % TLB_SETS;
        let hits: Vec<TlbEntry> = st.tlb[set].iter().filter(|e| e.covers(iova64)).copied().collect();
        let entry = match hits.len() {
            0 => {
                let e = self.walk(&mut st, iova, write)?;
                let ways = &mut st.tlb[set];
                if ways.len() >= TLB_WAYS {
                    ways.remove(0);
                }
                ways.push(e);
                e
            }
            1 => {
                st.stats.tlb_hits += 1;
                hits[0]
            }
            _ => return Err(self.raise(&mut st, ModelFault::MultiHit { write }, iova)),
        };
        let allowed = st.cfg & CFG_EAP == 0 || if write { entry.write } else { entry.read };
        if !allowed {
            return Err(self.raise(&mut st, ModelFault::AccessProt { write }, iova));
        }
        let pa = entry.pa + (iova64 - entry.va);
        if self.cfg.secure_ranges.iter().any(|r| r.contains(&pa)) {
            return Err(self.raise(&mut st, ModelFault::Security { write }, iova));
        }
        if !self.mem.contains(pa, 1) && !self.format_v5() {
            return Err(self.raise(&mut st, ModelFault::BusError { write }, iova));
        }
        Ok(pa)
    }

    /// The master device performs a DMA of `len` bytes at `iova` (no data moved). Returns the
    /// physical address of each page-sized piece, in order.
    pub fn dma(&self, iova: u32, len: u32, write: bool) -> Result<Vec<u64>, DmaError> {
        let mut out = Vec::new();
        let end = u64::from(iova) + u64::from(len.max(1));
        let mut at = u64::from(iova);
        while at < end && at < 1 << 32 {
            out.push(self.translate(at as u32, write)?);
            at = (at & !(PAGE - 1)) + PAGE;
        }
        Ok(out)
    }

    /// DMA that moves data from memory into `buf`.
    pub fn dma_read(&self, iova: u32, buf: &mut [u8]) -> Result<(), DmaError> {
        for (i, b) in buf.iter_mut().enumerate() {
            let pa = self.translate(iova.wrapping_add(i as u32), false)?;
            let mut one = [0u8];
            self.mem.device_read(pa, &mut one).map_err(|_| DmaError::BypassNotMemory { pa })?;
            *b = one[0];
        }
        Ok(())
    }

    /// DMA that moves `data` into memory.
    pub fn dma_write(&self, iova: u32, data: &[u8]) -> Result<(), DmaError> {
        for (i, b) in data.iter().enumerate() {
            let pa = self.translate(iova.wrapping_add(i as u32), true)?;
            self.mem.device_write(pa, &[*b]).map_err(|_| DmaError::BypassNotMemory { pa })?;
        }
        Ok(())
    }

    fn flush_all(st: &mut State) {
        for s in st.tlb.iter_mut() {
            s.clear();
        }
        st.prefetch.clear();
        st.flpd.clear();
    }

    fn flush_page(&self, st: &mut State, iova: u32) {
        let iova64 = u64::from(iova & !0xFFF);
        let set = ((iova >> 12) as usize) % TLB_SETS;
        if self.cfg.major == 2 {
            st.tlb[set].clear();
        } else {
            st.tlb[set].retain(|e| !e.covers(iova64));
        }
        st.prefetch.retain(|b| !(b.va <= iova64 && iova64 < b.va + b.entries.len() as u64 * PAGE));
        let idx = iova >> 20;
        let quirk = self.cfg.flpd_quirk();
        st.flpd.retain(|(i, raw)| *i != idx || (quirk && matches!(raw & 3, 0 | 3)));
    }

    fn flush_range(&self, st: &mut State, start: u32, end: u32) {
        let (s, e) = (u64::from(start & !0xFFF), u64::from(end & !0xFFF) + PAGE);
        for set in st.tlb.iter_mut() {
            set.retain(|t| t.va + t.size <= s || t.va >= e);
        }
        st.prefetch.clear();
        st.flpd.retain(|(i, _)| {
            let va = u64::from(*i) << 20;
            va + (1 << 20) <= s || va >= e
        });
    }
}

impl Mmio for SysmmuModel {
    fn read32(&self, offset: usize) -> u32 {
        if !self.answers() {
            return 0;
        }
        let mut st = self.st.borrow_mut();
        let v5 = self.cfg.is_v5_layout();
        match offset {
            CTRL => st.ctrl,
            CFG => st.cfg,
            STATUS => {
                st.stats.status_reads += 1;
                let by_ctrl = st.ctrl & 2 != 0
                    && match st.block_countdown {
                        Some(0) => true,
                        Some(n) => {
                            st.block_countdown = Some(n - 1);
                            false
                        }
                        None => false,
                    };
                u32::from(by_ctrl || st.fault_blocked)
            }
            VERSION => self.version_reg(),
            V1_INT_STATUS if !v5 => st.int_status,
            V1_PT_BASE if !v5 => st.pt_base as u32,
            V1_PAGE_FAULT_ADDR if !v5 => st.page_fault_addr,
            V1_AW_FAULT_ADDR if !v5 => st.aw_fault_addr,
            V1_AR_FAULT_ADDR if !v5 => st.ar_fault_addr,
            V1_DEFAULT_SLAVE_ADDR if !v5 => st.default_slave_addr,
            V1_PB0_SADDR if !v5 => st.pb[0],
            V1_PB0_EADDR if !v5 => st.pb[1],
            V1_PB1_SADDR if !v5 => st.pb[2],
            V1_PB1_EADDR if !v5 => st.pb[3],
            V5_PT_BASE if v5 => (st.pt_base >> 12) as u32,
            V5_FLUSH_START if v5 => st.flush_start,
            V5_FLUSH_END if v5 => st.flush_end,
            V5_INT_STATUS if v5 => st.int_status,
            V5_FAULT_AR_VA if v5 => st.ar_fault_addr,
            V5_FAULT_AW_VA if v5 => st.aw_fault_addr,
            _ => 0,
        }
    }

    // One arm per register, as in the datasheet's register table.
    #[allow(clippy::collapsible_match)]
    fn write32(&self, offset: usize, value: u32) {
        if !self.answers() {
            return;
        }
        let mut st = self.st.borrow_mut();
        let v5 = self.cfg.is_v5_layout();
        let blocked = st.fault_blocked || st.ctrl & 2 != 0;
        match offset {
            CTRL => {
                st.ctrl = value;
                if value & 2 != 0 {
                    st.block_countdown = self.cfg.block_latency;
                } else if value & 1 != 0 {
                    if st.int_status == 0 {
                        st.fault_blocked = false;
                    }
                } else {
                    // Disabled: bypass; a pending fault no longer blocks the master.
                    st.fault_blocked = false;
                }
            }
            CFG => st.cfg = value,
            V1_FLUSH if !v5 => {
                if value & 1 != 0 {
                    st.stats.flush_all += 1;
                    if !blocked {
                        st.stats.flush_while_unblocked += 1;
                    }
                    Self::flush_all(&mut st);
                }
            }
            V1_FLUSH_ENTRY if !v5 => {
                if value & 1 != 0 {
                    st.stats.flush_entry += 1;
                    if !blocked {
                        st.stats.flush_while_unblocked += 1;
                    }
                    self.flush_page(&mut st, value & !0xFFF);
                }
            }
            V1_PT_BASE if !v5 => st.pt_base = u64::from(value),
            V1_INT_CLEAR if !v5 => st.int_status &= !value,
            V1_PB0_SADDR if !v5 => st.pb[0] = value,
            V1_PB0_EADDR if !v5 => st.pb[1] = value,
            V1_PB1_SADDR if !v5 => st.pb[2] = value,
            V1_PB1_EADDR if !v5 => st.pb[3] = value,
            V5_PT_BASE if v5 => st.pt_base = u64::from(value) << 12,
            V5_FLUSH_ALL if v5 => {
                if value & 1 != 0 {
                    st.stats.flush_all += 1;
                    Self::flush_all(&mut st);
                }
            }
            V5_FLUSH_ENTRY if v5 => {
                if value & 1 != 0 {
                    st.stats.flush_entry += 1;
                    self.flush_page(&mut st, value & !0xFFF);
                }
            }
            V5_FLUSH_START if v5 => st.flush_start = value,
            V5_FLUSH_END if v5 => st.flush_end = value,
            V5_FLUSH_RANGE if v5 => {
                if value & 1 != 0 {
                    st.stats.flush_range += 1;
                    let (s, e) = (st.flush_start, st.flush_end);
                    self.flush_range(&mut st, s, e);
                }
            }
            V5_INT_CLEAR if v5 => st.int_status &= !value,
            _ => {}
        }
    }
}

/// The model through a shared reference, for drivers that own their `Mmio`.
impl Mmio for &SysmmuModel {
    fn read32(&self, offset: usize) -> u32 {
        (**self).read32(offset)
    }
    fn write32(&self, offset: usize, value: u32) {
        (**self).write32(offset, value)
    }
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    //! The model's own behaviour, driven register by register (no driver).
    use super::*;
    use platform::exynos5250::sysmmu_pt::{Lv2TableAllocator, Prot, PtFormat, SysmmuPageTable};
    use platform::PhysMem;

    const PGD: u64 = 0x4000_0000;

    struct Bump(u64);
    impl Lv2TableAllocator for Bump {
        fn alloc_lv2(&mut self) -> Option<u64> {
            self.0 += 0x400;
            Some(self.0)
        }
        fn free_lv2(&mut self, _: u64) {}
    }

    fn setup(cfg: ModelConfig) -> (Rc<SimMem>, SysmmuModel, SysmmuPageTable, Bump) {
        let mem = Rc::new(SimMem::new(&[0x4000_0000..0x6000_0000]));
        let model = SysmmuModel::new(cfg.clone(), mem.clone());
        let mut pool = Bump(0x4010_0000);
        let format = if cfg.major >= 5 { PtFormat::V5 } else { PtFormat::V1 };
        let pt = SysmmuPageTable::new(&*mem, &mut pool, format, PGD).unwrap();
        let (base_reg, base) = if cfg.major >= 5 { (V5_PT_BASE, (PGD >> 12) as u32) } else { (V1_PT_BASE, PGD as u32) };
        model.write32(CTRL, 0x7);
        model.write32(CFG, CFG_EAP | CFG_FLPDCACHE);
        model.write32(base_reg, base);
        model.write32(CTRL, 0x5);
        (mem, model, pt, pool)
    }

    #[test]
    fn out_of_reset_it_bypasses_and_block_takes_reads() {
        let mem = Rc::new(SimMem::new(&[0x4000_0000..0x4010_0000]));
        let model = SysmmuModel::new(ModelConfig { block_latency: Some(2), ..ModelConfig::v3(1) }, mem);
        assert_eq!(model.version_reg(), 0x3020_0000);
        assert_eq!(model.translate(0x4000_1000, true), Ok(0x4000_1000));
        assert_eq!(model.translate(0x1000, true), Err(DmaError::BypassNotMemory { pa: 0x1000 }));
        model.write32(CTRL, 0x7);
        assert_eq!(model.translate(0x4000_1000, true), Err(DmaError::Stalled));
        assert_eq!([model.read32(STATUS), model.read32(STATUS), model.read32(STATUS)], [0, 0, 1]);
        let wedged = SysmmuModel::new(ModelConfig { block_latency: None, ..ModelConfig::v3(1) }, Rc::new(SimMem::new(&[])));
        wedged.write32(CTRL, 0x7);
        assert!((0..1000).all(|_| wedged.read32(STATUS) == 0));
    }

    #[test]
    fn fault_blocks_until_int_clear_and_enable() {
        let (_mem, model, _pt, _) = setup(ModelConfig::v3(3));
        assert!(matches!(model.translate(0x0123_4567, true), Err(DmaError::Fault { .. })));
        assert_eq!(model.read32(STATUS), 1);
        assert_eq!(model.read32(V1_INT_STATUS), 1);
        assert_eq!(model.read32(V1_PAGE_FAULT_ADDR), 0x0123_4567);
        model.write32(CTRL, 0x5);
        assert_eq!(model.translate(0, false), Err(DmaError::Stalled), "ENABLE before INT_CLEAR");
        model.write32(V1_INT_CLEAR, 1);
        assert_eq!(model.translate(0, false), Err(DmaError::Stalled), "INT_CLEAR alone");
        model.write32(CTRL, 0x5);
        assert!(matches!(model.translate(0, false), Err(DmaError::Fault { .. })));
    }

    #[test]
    fn prefetch_window_caches_fault_entries_until_flushed() {
        let (mem, model, mut pt, mut pool) = setup(ModelConfig::v3(1));
        pt.map(&*mem, &mut pool, 0x0010_0000, 0x5000_0000, 0x1000, Prot::RW).unwrap();
        assert_eq!(model.translate(0x0010_0000, false), Ok(0x5000_0000));
        // The window is the 128 KiB block and the next one: 0x0010_0000..0x0014_0000.
        for (iova, cached) in [(0x0014_0000u32, false), (0x0011_f000, true), (0x0013_f000, true)] {
            pt.map(&*mem, &mut pool, iova, 0x5000_0000 + u64::from(iova), 0x1000, Prot::RW).unwrap();
            let r = model.translate(iova, false);
            assert_eq!(r.is_err(), cached, "iova {iova:#x}");
            if cached {
                model.write32(V1_INT_CLEAR, 0xff);
                model.write32(CTRL, 0x5);
                model.write32(V1_FLUSH_ENTRY, iova | 1);
                assert!(model.translate(iova, false).is_ok());
            }
        }
    }

    #[test]
    fn v2_entry_flush_drops_the_whole_set_and_v3_only_the_page() {
        for (cfg, survives) in [(ModelConfig::v2(), false), (ModelConfig::v3(1), true)] {
            let (mem, model, mut pt, mut pool) = setup(cfg);
            pt.map(&*mem, &mut pool, 0x0010_0000, 0x5000_0000, 0x1000, Prot::RW).unwrap();
            pt.map(&*mem, &mut pool, 0x0014_0000, 0x5004_0000, 0x1000, Prot::RW).unwrap(); // same set
            model.translate(0x0010_0000, false).unwrap();
            model.translate(0x0014_0000, false).unwrap();
            // Unmap 0x0014_0000 in memory, flush the *other* page of the set.
            pt.unmap(&*mem, &mut pool, 0x0014_0000, 0x1000).unwrap();
            model.write32(V1_FLUSH_ENTRY, 0x0010_0000 | 1);
            assert_eq!(model.translate(0x0014_0000, false).is_ok(), survives);
        }
    }

    #[test]
    fn walker_ignores_uncleaned_writes_and_checks_permissions() {
        let (mem, model, mut pt, mut pool) = setup(ModelConfig::v3(3));
        pt.map(&*mem, &mut pool, 0x0020_0000, 0x5000_0000, 0x1000, Prot::RO).unwrap();
        assert_eq!(model.translate(0x0020_0010, false), Ok(0x5000_0010));
        assert_eq!(
            model.translate(0x0020_0000, true),
            Err(DmaError::Fault { fault: ModelFault::AccessProt { write: true }, iova: 0x0020_0000 })
        );
        assert_eq!(model.read32(V1_INT_STATUS), 1 << 7);
        assert_eq!(model.read32(V1_AW_FAULT_ADDR), 0x0020_0000);
        model.write32(V1_INT_CLEAR, 1 << 7);
        model.write32(CTRL, 0x5);
        // A section written without a clean is not seen.
        mem.write_u32(PGD + 4 * 0x30, 0x5030_0000 | (1 << 10) | 2).unwrap();
        model.write32(V1_FLUSH, 1);
        assert!(model.translate(0x0300_0000, false).is_err());
        assert!(mem.stale_device_reads() > 0);
    }

    #[test]
    fn v5_layout_and_range_flush() {
        let (mem, model, mut pt, mut pool) = setup(ModelConfig::v5());
        assert_eq!(model.read32(V5_PT_BASE), (PGD >> 12) as u32);
        assert_eq!(model.pt_base(), PGD);
        pt.map(&*mem, &mut pool, 0x0010_0000, 0x5000_0000, 0x3000, Prot::RW).unwrap();
        for p in 0..3u32 {
            model.translate(0x0010_0000 + p * 0x1000, false).unwrap();
        }
        pt.unmap(&*mem, &mut pool, 0x0010_0000, 0x3000).unwrap();
        model.write32(V5_FLUSH_START, 0x0010_0000);
        model.write32(V5_FLUSH_END, 0x0010_1000);
        model.write32(V5_FLUSH_RANGE, 1);
        assert!(model.translate(0x0010_1000, false).is_err()); // flushed: walks, faults
        assert_eq!(model.read32(V5_INT_STATUS), 1 << 1);
        assert_eq!(model.read32(V5_FAULT_AR_VA), 0x0010_1000);
        model.write32(V5_INT_CLEAR, 1 << 1);
        model.write32(CTRL, 0x5);
        assert_eq!(model.translate(0x0010_2000, false), Ok(0x5000_2000), "outside the range: stale TLB hit");
    }
}
