//! A domain's grant table (Xen's v1 format): the hypervisor-owned frames that hold its
//! `grant_entry_v1`s, the pins other domains hold on its grants, and the mappings it holds on
//! other domains' grants (the maptrack, indexed by the handle the mapper was given). State and
//! bookkeeping only; `hypercall::grant_table` applies Xen's rules.
//!
//! Every operation a map or unmap makes here is O(1): handles come from a free list threaded
//! through the unused maptrack slots, pins live in an array indexed by reference, and the
//! frames a domain maps are counted in a small open-addressing hash table. Memory grows with
//! use, in Xen's units (one maptrack "frame" of [`MAPTRACK_PER_FRAME`] handles, one pin block
//! per grant frame), up to the limits Xen's command-line options set.

use super::DomId;
use crate::mm::FrameAlloc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use platform::PhysMem;

/// Grant-table frames a domain may have unless `gnttab_max_frames=` says otherwise (Xen's
/// default).
pub const MAX_GRANT_FRAMES: u32 = 64;
/// Maptrack frames a domain may have unless `gnttab_max_maptrack_frames=` says otherwise
/// (Xen's default).
pub const MAX_MAPTRACK_FRAMES: u32 = 1024;
/// Handles per maptrack frame: Xen's 4 KiB frame of 16-byte entries.
pub const MAPTRACK_PER_FRAME: u32 = 256;
/// v1 entries per 4 KiB frame.
pub const ENTRIES_PER_FRAME: u32 = 512;
/// A pin counter at this value refuses another pin of its kind (Xen's 8-bit counters stop
/// before their top bit).
pub const PIN_LIMIT: u8 = 0x80;
/// Largest value either option takes: keeps entry and handle numbers within 32 bits.
const OPTION_MAX: u32 = 1 << 20;

static OPT_GRANT_FRAMES: AtomicU32 = AtomicU32::new(MAX_GRANT_FRAMES);
static OPT_MAPTRACK_FRAMES: AtomicU32 = AtomicU32::new(MAX_MAPTRACK_FRAMES);

/// Apply Xen's `gnttab_max_frames=N` and `gnttab_max_maptrack_frames=N` among the command-line
/// options (the last of each wins; N in C's notation: decimal, 0x hex or 0 octal) to the tables
/// created from now on. Returns the options it could not use.
pub fn apply_options<'a>(options: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut bad = Vec::new();
    for o in options {
        let (opt, v) = if let Some(v) = o.strip_prefix("gnttab_max_frames=") {
            (&OPT_GRANT_FRAMES, v)
        } else if let Some(v) = o.strip_prefix("gnttab_max_maptrack_frames=") {
            (&OPT_MAPTRACK_FRAMES, v)
        } else {
            continue;
        };
        match parse_c_uint(v) {
            Some(n) if n <= OPTION_MAX => opt.store(n, Ordering::Relaxed),
            _ => bad.push(o),
        }
    }
    bad
}

/// The limits tables get now: (grant frames, maptrack frames).
pub fn limits() -> (u32, u32) {
    (OPT_GRANT_FRAMES.load(Ordering::Relaxed), OPT_MAPTRACK_FRAMES.load(Ordering::Relaxed))
}

fn parse_c_uint(s: &str) -> Option<u32> {
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    u32::from_str_radix(digits, radix).ok()
}

/// One mapping of a foreign (or own) grant, held by the mapper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantMapping {
    pub granter: DomId,
    pub gref: u32,
    /// Where it is mapped in the mapper's stage 2.
    pub host_gfn: u64,
    /// Host PA of the granted frame.
    pub pa: u64,
    pub readonly: bool,
}

/// Pins on one of this domain's grants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pin {
    pub readers: u32,
    pub writers: u32,
}

/// Why frames could not be provided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrowError {
    /// Beyond the table's frame limit.
    TooMany,
    /// The frame allocator is empty (or the frame could not be zeroed), or the heap is.
    NoMemory,
}

/// Why a mapping could not be recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaptrackFull {
    /// Every handle up to the maptrack limit is in use.
    Limit,
    /// A new maptrack frame could not be allocated.
    NoMemory,
}

/// A maptrack slot: a mapping, or (free) the next free handle in `gref`.
#[derive(Clone, Copy, Debug)]
struct Slot {
    host_gfn: u64,
    pa: u64,
    gref: u32,
    granter: DomId,
    state: u8,
}

const FREE: u8 = 0;
const USED: u8 = 1;
const READONLY: u8 = 2;
/// The mapping's frame is counted in [`FrameCounts`].
const COUNTED: u8 = 4;
/// End of the free list.
const NO_HANDLE: u32 = u32::MAX;

impl Slot {
    const EMPTY: Slot = Slot { host_gfn: 0, pa: 0, gref: NO_HANDLE, granter: 0, state: FREE };

    fn mapping(&self) -> Option<GrantMapping> {
        (self.state & USED != 0).then_some(GrantMapping {
            granter: self.granter,
            gref: self.gref,
            host_gfn: self.host_gfn,
            pa: self.pa,
            readonly: self.state & READONLY != 0,
        })
    }
}

/// Pin counters of one grant (Xen's host-read and host-write counts).
#[derive(Clone, Copy, Debug, Default)]
struct PinCount {
    readers: u8,
    writers: u8,
}

/// How many mappings name each frame: an open-addressing hash table (linear probing,
/// backward-shift deletion) keyed by frame number, at most half full. O(1) expected per
/// operation; its size follows the number of distinct frames mapped.
#[derive(Debug, Default)]
struct FrameCounts {
    /// `(frame number, count)`; [`FrameCounts::VACANT`] frame numbers mark empty slots.
    slots: Vec<(u64, u32)>,
    len: usize,
}

impl FrameCounts {
    const VACANT: u64 = u64::MAX;

    fn home(&self, key: u64) -> usize {
        // Fibonacci hashing: the top bits of the product, as many as the table needs.
        let bits = self.slots.len().trailing_zeros();
        (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - bits)) as usize
    }

    fn find(&self, key: u64) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        loop {
            match self.slots[i].0 {
                k if k == key => return Some(i),
                Self::VACANT => return None,
                _ => i = (i + 1) & mask,
            }
        }
    }

    fn get(&self, key: u64) -> u32 {
        self.find(key).map_or(0, |i| self.slots[i].1)
    }

    /// Count one more mapping of `key`; false if the table could not grow.
    fn inc(&mut self, key: u64) -> bool {
        if let Some(i) = self.find(key) {
            self.slots[i].1 += 1;
            return true;
        }
        if (self.len + 1) * 2 > self.slots.len() && !self.grow() {
            return false;
        }
        self.place(key, 1);
        self.len += 1;
        true
    }

    fn place(&mut self, key: u64, count: u32) {
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        while self.slots[i].0 != Self::VACANT {
            i = (i + 1) & mask;
        }
        self.slots[i] = (key, count);
    }

    fn grow(&mut self) -> bool {
        let n = (self.slots.len() * 2).max(16);
        let mut new = Vec::new();
        if new.try_reserve_exact(n).is_err() {
            return false;
        }
        new.resize(n, (Self::VACANT, 0));
        let old = core::mem::replace(&mut self.slots, new);
        for (k, c) in old {
            if k != Self::VACANT {
                self.place(k, c);
            }
        }
        true
    }

    /// Count one mapping of `key` less.
    fn dec(&mut self, key: u64) {
        let Some(mut i) = self.find(key) else { return };
        if self.slots[i].1 > 1 {
            self.slots[i].1 -= 1;
            return;
        }
        // Remove, then pull back later entries of the probe run whose home is not in the gap
        // (so every key stays reachable from its home without tombstones).
        let mask = self.slots.len() - 1;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let k = self.slots[j].0;
            if k == Self::VACANT {
                break;
            }
            let h = self.home(k);
            // `h` lies cyclically in (i, j]: the entry may not move to `i`.
            let stays = if i <= j { i < h && h <= j } else { i < h || h <= j };
            if !stays {
                self.slots[i] = self.slots[j];
                i = j;
            }
        }
        self.slots[i] = (Self::VACANT, 0);
        self.len -= 1;
    }
}

#[derive(Debug)]
pub struct GrantTable {
    /// Host PAs of the table's frames.
    frames: Vec<u64>,
    /// Where each frame is mapped in the owner's stage 2.
    frame_gfn: Vec<Option<u64>>,
    /// Pins on this domain's grants: one block of [`ENTRIES_PER_FRAME`] per frame.
    pins: Vec<Vec<PinCount>>,
    /// This domain's mappings of grants, by handle: blocks of [`MAPTRACK_PER_FRAME`] slots.
    maptrack: Vec<Vec<Slot>>,
    /// First free handle (its slot names the next), or [`NO_HANDLE`].
    free_head: u32,
    /// Mappings held.
    live: u32,
    /// Mappings held per frame, of the frames counted (see [`GrantTable::add_mapping`]).
    frame_maps: FrameCounts,
    max_frames: u32,
    max_maptrack_frames: u32,
}

impl Default for GrantTable {
    /// An empty table with the limits the command line set.
    fn default() -> Self {
        let (frames, maptrack) = limits();
        Self::with_limits(frames, maptrack)
    }
}

impl GrantTable {
    pub fn with_limits(max_frames: u32, max_maptrack_frames: u32) -> Self {
        GrantTable {
            frames: Vec::new(),
            frame_gfn: Vec::new(),
            pins: Vec::new(),
            maptrack: Vec::new(),
            free_head: NO_HANDLE,
            live: 0,
            frame_maps: FrameCounts::default(),
            max_frames: max_frames.clamp(1, OPTION_MAX),
            max_maptrack_frames: max_maptrack_frames.min(OPTION_MAX),
        }
    }

    /// Frames in use as Xen counts them: at least one (Xen creates the first with the domain).
    pub fn nr_frames(&self) -> u32 {
        (self.frames.len() as u32).max(1)
    }

    /// Frames this table may grow to (`max_nr_frames` of query_size).
    pub fn max_frames(&self) -> u32 {
        self.max_frames
    }

    /// Entries addressable now.
    pub fn nr_entries(&self) -> u32 {
        self.nr_frames() * ENTRIES_PER_FRAME
    }

    /// Make frames `0..n` exist, allocating and zeroing new ones.
    pub fn grow(&mut self, n: u32, frames: &mut dyn FrameAlloc, mem: &dyn PhysMem) -> Result<(), GrowError> {
        if n > self.max_frames {
            return Err(GrowError::TooMany);
        }
        while (self.frames.len() as u32) < n {
            let mut pins = Vec::new();
            if pins.try_reserve_exact(ENTRIES_PER_FRAME as usize).is_err()
                || self.frames.try_reserve(1).is_err()
                || self.frame_gfn.try_reserve(1).is_err()
                || self.pins.try_reserve(1).is_err()
            {
                return Err(GrowError::NoMemory);
            }
            pins.resize(ENTRIES_PER_FRAME as usize, PinCount::default());
            let pa = frames.alloc_frame().ok_or(GrowError::NoMemory)?;
            if mem.zero(pa, 4096).is_err() {
                frames.free_frame(pa);
                return Err(GrowError::NoMemory);
            }
            self.frames.push(pa);
            self.frame_gfn.push(None);
            self.pins.push(pins);
        }
        Ok(())
    }

    /// Host PA of frame `idx`, if it exists.
    pub fn frame(&self, idx: u32) -> Option<u64> {
        self.frames.get(idx as usize).copied()
    }

    pub fn frame_gfn(&self, idx: u32) -> Option<u64> {
        self.frame_gfn.get(idx as usize).copied().flatten()
    }

    pub fn set_frame_gfn(&mut self, idx: u32, gfn: Option<u64>) {
        if let Some(g) = self.frame_gfn.get_mut(idx as usize) {
            *g = gfn;
        }
    }

    /// The frame mapped at `gfn`, if one is.
    pub fn frame_at_gfn(&self, gfn: u64) -> Option<u32> {
        self.frame_gfn.iter().position(|g| *g == Some(gfn)).map(|i| i as u32)
    }

    /// Host PA of entry `gref`, if its frame exists.
    pub fn entry_pa(&self, gref: u32) -> Option<u64> {
        let pa = self.frame(gref / ENTRIES_PER_FRAME)?;
        Some(pa + u64::from(gref % ENTRIES_PER_FRAME) * 8)
    }

    fn pin_count(&mut self, gref: u32) -> Option<&mut PinCount> {
        self.pins.get_mut((gref / ENTRIES_PER_FRAME) as usize)?.get_mut((gref % ENTRIES_PER_FRAME) as usize)
    }

    /// Add a pin on `gref`; the pins after the change, or `None` when the counter of that kind
    /// is at [`PIN_LIMIT`] (or the reference's frame does not exist): nothing changes then.
    pub fn pin(&mut self, gref: u32, readonly: bool) -> Option<Pin> {
        let p = self.pin_count(gref)?;
        let c = if readonly { &mut p.readers } else { &mut p.writers };
        if *c >= PIN_LIMIT {
            return None;
        }
        *c += 1;
        Some(Pin { readers: p.readers.into(), writers: p.writers.into() })
    }

    /// Drop a pin on `gref`; returns what is left.
    pub fn unpin(&mut self, gref: u32, readonly: bool) -> Pin {
        let Some(p) = self.pin_count(gref) else { return Pin::default() };
        let c = if readonly { &mut p.readers } else { &mut p.writers };
        *c = c.saturating_sub(1);
        Pin { readers: p.readers.into(), writers: p.writers.into() }
    }

    /// Current pins on `gref`.
    pub fn pins(&self, gref: u32) -> Pin {
        let p = self.pins.get((gref / ENTRIES_PER_FRAME) as usize).and_then(|b| b.get((gref % ENTRIES_PER_FRAME) as usize));
        p.map_or(Pin::default(), |p| Pin { readers: p.readers.into(), writers: p.writers.into() })
    }

    /// Record a mapping and return its handle: the most recently freed one, or the first of
    /// a new maptrack frame. `count_frame` also counts the mapping for
    /// [`maps_frame`](Self::maps_frame) (needed only for frames that question is asked about).
    pub fn add_mapping(&mut self, m: GrantMapping, count_frame: bool) -> Result<u32, MaptrackFull> {
        self.reserve_handle()?;
        if count_frame && !self.frame_maps.inc(m.pa >> 12) {
            return Err(MaptrackFull::NoMemory);
        }
        let h = self.free_head;
        let s = &mut self.maptrack[(h / MAPTRACK_PER_FRAME) as usize][(h % MAPTRACK_PER_FRAME) as usize];
        self.free_head = s.gref;
        let state = USED | if m.readonly { READONLY } else { 0 } | if count_frame { COUNTED } else { 0 };
        *s = Slot { host_gfn: m.host_gfn, pa: m.pa, gref: m.gref, granter: m.granter, state };
        self.live += 1;
        Ok(h)
    }

    /// Make sure a handle is free for the next [`add_mapping`](Self::add_mapping), adding a
    /// maptrack frame if none is.
    pub fn reserve_handle(&mut self) -> Result<(), MaptrackFull> {
        if self.free_head == NO_HANDLE {
            self.add_maptrack_frame()?;
        }
        Ok(())
    }

    /// One more maptrack frame, its handles put on the free list in order.
    fn add_maptrack_frame(&mut self) -> Result<(), MaptrackFull> {
        let n = self.maptrack.len() as u32;
        if n >= self.max_maptrack_frames {
            return Err(MaptrackFull::Limit);
        }
        let mut block = Vec::new();
        if block.try_reserve_exact(MAPTRACK_PER_FRAME as usize).is_err() || self.maptrack.try_reserve(1).is_err() {
            return Err(MaptrackFull::NoMemory);
        }
        let base = n * MAPTRACK_PER_FRAME;
        block.extend((1..=MAPTRACK_PER_FRAME).map(|i| Slot { gref: if i == MAPTRACK_PER_FRAME { self.free_head } else { base + i }, ..Slot::EMPTY }));
        self.maptrack.push(block);
        self.free_head = base;
        Ok(())
    }

    fn slot(&self, handle: u32) -> Option<&Slot> {
        self.maptrack.get((handle / MAPTRACK_PER_FRAME) as usize)?.get((handle % MAPTRACK_PER_FRAME) as usize)
    }

    pub fn mapping(&self, handle: u32) -> Option<GrantMapping> {
        self.slot(handle)?.mapping()
    }

    pub fn remove_mapping(&mut self, handle: u32) -> Option<GrantMapping> {
        let head = self.free_head;
        let s = self.maptrack.get_mut((handle / MAPTRACK_PER_FRAME) as usize)?.get_mut((handle % MAPTRACK_PER_FRAME) as usize)?;
        let m = s.mapping()?;
        let counted = s.state & COUNTED != 0;
        *s = Slot { gref: head, ..Slot::EMPTY };
        self.free_head = handle;
        self.live -= 1;
        if counted {
            self.frame_maps.dec(m.pa >> 12);
        }
        Some(m)
    }

    /// Whether this domain holds a mapping of host frame `pa`, of those added with
    /// `count_frame`.
    pub fn maps_frame(&self, pa: u64) -> bool {
        self.frame_maps.get(pa >> 12) != 0
    }

    /// Mappings held.
    pub fn mappings_held(&self) -> u32 {
        self.live
    }

    /// Maptrack frames allocated so far.
    pub fn maptrack_frames(&self) -> u32 {
        self.maptrack.len() as u32
    }

    /// Every mapping held, with its handle.
    pub fn mappings(&self) -> impl Iterator<Item = (u32, GrantMapping)> + '_ {
        self.maptrack.iter().flatten().enumerate().filter_map(|(h, s)| s.mapping().map(|m| (h as u32, m)))
    }

    /// Host PAs of the table's frames.
    pub fn frame_pas(&self) -> &[u64] {
        &self.frames
    }

    /// A dead domain's table gives its frames up (the caller frees them): no entry is
    /// addressable after this, so a late unpin finds nothing to write.
    pub fn take_frames(&mut self) -> Vec<u64> {
        self.frame_gfn.clear();
        self.pins.clear();
        core::mem::take(&mut self.frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::testmem::TestMem;
    use crate::mm::RegionAllocator;

    fn mapping(gref: u32, pa: u64) -> GrantMapping {
        GrantMapping { granter: 1, gref, host_gfn: 0x100 + u64::from(gref), pa, readonly: false }
    }

    #[test]
    fn frames_grow_to_the_limit_zeroed() {
        let mem = TestMem::new(0x8000_0000, 0x3000);
        let mut fa = RegionAllocator::new();
        let _ = fa.add(0x8000_0000, 0x3000);
        let mut g = GrantTable::with_limits(MAX_GRANT_FRAMES, MAX_MAPTRACK_FRAMES);
        assert_eq!(g.nr_frames(), 1);
        assert_eq!(g.entry_pa(0), None);
        g.grow(2, &mut fa, &mem).unwrap();
        assert_eq!(g.nr_frames(), 2);
        let pa = g.entry_pa(513).unwrap();
        assert_eq!(pa, g.frame(1).unwrap() + 8);
        assert_eq!(mem.read_u64(pa).unwrap(), 0);
        assert_eq!(g.grow(MAX_GRANT_FRAMES + 1, &mut fa, &mem), Err(GrowError::TooMany));
        assert_eq!(g.grow(4, &mut fa, &mem), Err(GrowError::NoMemory));
        assert_eq!(g.nr_frames(), 3);
        let mut small = GrantTable::with_limits(2, 1);
        assert_eq!(small.max_frames(), 2);
        assert_eq!(small.grow(3, &mut fa, &mem), Err(GrowError::TooMany));
    }

    #[test]
    fn pins_count_per_reference_up_to_the_limit() {
        let mem = TestMem::new(0x8000_0000, 0x2000);
        let mut fa = RegionAllocator::new();
        let _ = fa.add(0x8000_0000, 0x2000);
        let mut g = GrantTable::with_limits(MAX_GRANT_FRAMES, MAX_MAPTRACK_FRAMES);
        assert_eq!(g.pin(5, false), None, "no frame yet");
        g.grow(2, &mut fa, &mem).unwrap();
        assert_eq!(g.pin(5, false), Some(Pin { readers: 0, writers: 1 }));
        assert_eq!(g.pin(5, true), Some(Pin { readers: 1, writers: 1 }));
        assert_eq!(g.pins(517), Pin::default(), "another reference, same slot in the next frame");
        assert_eq!(g.unpin(5, false), Pin { readers: 1, writers: 0 });
        assert_eq!(g.unpin(5, true), Pin::default());
        assert_eq!(g.unpin(5, true), Pin::default());
        for i in 1..=u32::from(PIN_LIMIT) {
            assert_eq!(g.pin(1023, false).map(|p| p.writers), Some(i));
        }
        assert_eq!(g.pin(1023, false), None, "the write counter is full");
        assert_eq!(g.pins(1023).writers, u32::from(PIN_LIMIT));
        assert_eq!(g.pin(1023, true), Some(Pin { readers: 1, writers: u32::from(PIN_LIMIT) }), "readers count apart");
        assert_eq!(g.pins(1024), Pin::default());
        assert_eq!(g.pin(1024, true), None, "beyond the frames");
    }

    #[test]
    fn handles_come_back_last_freed_first() {
        let mut g = GrantTable::with_limits(MAX_GRANT_FRAMES, MAX_MAPTRACK_FRAMES);
        let m = mapping(5, 0x4000_0000);
        assert_eq!(g.add_mapping(m, true), Ok(0));
        assert_eq!(g.add_mapping(m, true), Ok(1));
        assert_eq!(g.add_mapping(m, false), Ok(2));
        assert_eq!(g.maptrack_frames(), 1);
        assert!(g.maps_frame(0x4000_0000));
        assert_eq!(g.remove_mapping(0), Some(m));
        assert_eq!(g.remove_mapping(0), None);
        assert_eq!(g.remove_mapping(1), Some(m));
        assert!(!g.maps_frame(0x4000_0000), "the uncounted mapping is not asked about");
        assert_eq!(g.add_mapping(m, true), Ok(1));
        assert_eq!(g.add_mapping(m, true), Ok(0));
        assert_eq!(g.add_mapping(m, true), Ok(3));
        assert_eq!(g.mappings_held(), 4);
        assert_eq!(g.mapping(u32::MAX), None);
        assert_eq!(g.mapping(4), None, "a free handle");
        assert_eq!(g.mapping(MAPTRACK_PER_FRAME), None, "beyond the frames");
        let ro = GrantMapping { readonly: true, ..m };
        let h = g.add_mapping(ro, false).unwrap();
        assert_eq!(g.mapping(h), Some(ro));
    }

    #[test]
    fn maptrack_grows_by_frames_to_the_limit() {
        let mut g = GrantTable::with_limits(MAX_GRANT_FRAMES, 3);
        let cap = 3 * MAPTRACK_PER_FRAME;
        for h in 0..cap {
            assert_eq!(g.add_mapping(mapping(h, 0x4000_0000 + u64::from(h) * 4096), true), Ok(h));
            assert_eq!(g.maptrack_frames(), h / MAPTRACK_PER_FRAME + 1, "frames added only when needed");
        }
        assert_eq!(g.add_mapping(mapping(0, 0x4000_0000), true), Err(MaptrackFull::Limit));
        assert_eq!(g.mappings_held(), cap);
        assert_eq!(g.remove_mapping(700).map(|m| m.gref), Some(700));
        assert!(!g.maps_frame(0x4000_0000 + 700 * 4096));
        assert!(g.maps_frame(0x4000_0000 + 699 * 4096));
        assert_eq!(g.add_mapping(mapping(7, 0x5000_0000), true), Ok(700));
        assert_eq!(g.add_mapping(mapping(7, 0x5000_0000), true), Err(MaptrackFull::Limit));
        for h in 0..cap {
            assert!(g.remove_mapping(h).is_some());
        }
        assert_eq!(g.mappings_held(), 0);
        assert_eq!(g.frame_maps.len, 0);
        assert!(g.frame_maps.slots.iter().all(|s| s.0 == FrameCounts::VACANT));
        assert_eq!(g.maptrack_frames(), 3, "frames stay for reuse");
    }

    #[test]
    fn frame_counts_match_a_model() {
        use std::collections::HashMap;
        let mut c = FrameCounts::default();
        let mut model: HashMap<u64, u32> = HashMap::new();
        // A deterministic mix of inserts and removes over keys that collide in small tables.
        let mut x = 12345u64;
        for step in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = (x % 97) * 64;
            if x & 3 != 0 || step < 50 {
                assert!(c.inc(key));
                *model.entry(key).or_default() += 1;
            } else if let Some(n) = model.get_mut(&key) {
                c.dec(key);
                *n -= 1;
                if *n == 0 {
                    model.remove(&key);
                }
            }
            if step % 97 == 0 {
                for k in 0..97 {
                    assert_eq!(c.get(k * 64), model.get(&(k * 64)).copied().unwrap_or(0), "key {k} at step {step}");
                }
                assert_eq!(c.len, model.len());
                assert!(c.len * 2 <= c.slots.len());
            }
        }
    }

    #[test]
    fn options_as_xen_parses_them() {
        // Parsing only: the global limits are left as they are for the other tests.
        assert_eq!(parse_c_uint("64"), Some(64));
        assert_eq!(parse_c_uint("0x40"), Some(64));
        assert_eq!(parse_c_uint("0100"), Some(64));
        assert_eq!(parse_c_uint("0"), Some(0));
        assert_eq!(parse_c_uint("64k"), None);
        assert_eq!(parse_c_uint(""), None);
        assert_eq!(apply_options(["console=x", "gnttab_max_frames=abc", "gnttab_max_maptrack_frames=0x200000"]), ["gnttab_max_frames=abc", "gnttab_max_maptrack_frames=0x200000"]);
        assert_eq!(limits(), (MAX_GRANT_FRAMES, MAX_MAPTRACK_FRAMES));
    }
}
