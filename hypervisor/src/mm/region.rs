//! Physical memory regions: which page-granular ranges of RAM are free, carved up at boot
//! (hypervisor image, modules, DTB) and handed out as contiguous, aligned runs (dom0's RAM
//! banks, 2 MiB aligned) or single frames (page tables, via [`FrameAlloc`]).
//!
//! Fixed capacity, no heap: it runs before the heap exists. All state lives in three sorted,
//! coalesced range sets (RAM that was added, reservations, free), every operation either
//! fully happens or returns an error and changes nothing.

use core::fmt;

use super::{FrameAlloc, PAGE_SIZE};

/// Most disjoint free ranges tracked (fragmentation limit).
pub const MAX_FREE_RANGES: usize = 128;
/// Most disjoint RAM banks.
pub const MAX_RAM_RANGES: usize = 16;
/// Most disjoint reservations.
pub const MAX_RESERVED_RANGES: usize = 32;

/// Why a region operation was refused. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionError {
    /// `base + size` overflows, or `size` is zero.
    BadRange { base: u64, size: u64 },
    /// `base` is not 4 KiB aligned (`alloc_at`, `free`).
    Misaligned { base: u64 },
    /// `add`: the range overlaps RAM that was already added.
    OverlapsRam { base: u64, size: u64 },
    /// `alloc_at`: some of the range is not free.
    NotFree { base: u64, size: u64 },
    /// `free`: some of the range is not RAM, is reserved, or is already free.
    NotAllocated { base: u64, size: u64 },
    /// A fixed-size table of ranges is full.
    TooManyRanges,
}

impl fmt::Display for RegionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RegionError::BadRange { base, size } => {
                write!(f, "bad range base {base:#x} size {size:#x}")
            }
            RegionError::Misaligned { base } => write!(f, "{base:#x} is not 4 KiB aligned"),
            RegionError::OverlapsRam { base, size } => {
                write!(f, "range {base:#x}+{size:#x} overlaps RAM already added")
            }
            RegionError::NotFree { base, size } => {
                write!(f, "range {base:#x}+{size:#x} is not entirely free")
            }
            RegionError::NotAllocated { base, size } => {
                write!(
                    f,
                    "range {base:#x}+{size:#x} is not allocated RAM (double free?)"
                )
            }
            RegionError::TooManyRanges => write!(f, "too many disjoint ranges"),
        }
    }
}

/// A half-open physical range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
struct Span {
    start: u64,
    end: u64,
}

/// A sorted set of disjoint, non-adjacent spans with a fixed capacity.
#[derive(Clone, Debug)]
struct SpanSet<const N: usize> {
    spans: [Span; N],
    len: usize,
}

impl<const N: usize> SpanSet<N> {
    const fn new() -> Self {
        SpanSet {
            spans: [Span { start: 0, end: 0 }; N],
            len: 0,
        }
    }

    fn iter(&self) -> impl Iterator<Item = Span> + '_ {
        self.spans[..self.len].iter().copied()
    }

    fn overlaps(&self, s: Span) -> bool {
        self.iter().any(|x| x.start < s.end && s.start < x.end)
    }

    fn contains(&self, s: Span) -> bool {
        self.iter().any(|x| x.start <= s.start && s.end <= x.end)
    }

    fn insert_at(&mut self, i: usize, s: Span) -> Result<(), RegionError> {
        if self.len == N {
            return Err(RegionError::TooManyRanges);
        }
        self.spans.copy_within(i..self.len, i + 1);
        self.spans[i] = s;
        self.len += 1;
        Ok(())
    }

    fn remove_at(&mut self, i: usize) {
        self.spans.copy_within(i + 1..self.len, i);
        self.len -= 1;
    }

    /// Add `s`, merging with neighbours it overlaps or touches.
    fn union(&mut self, s: Span) -> Result<(), RegionError> {
        if s.start >= s.end {
            return Ok(());
        }
        // First span that ends at or after s.start (could merge), and last that starts at or
        // before s.end.
        let first = self.spans[..self.len].partition_point(|x| x.end < s.start);
        let mut last = first;
        while last < self.len && self.spans[last].start <= s.end {
            last += 1;
        }
        if first == last {
            return self.insert_at(first, s);
        }
        let merged = Span {
            start: s.start.min(self.spans[first].start),
            end: s.end.max(self.spans[last - 1].end),
        };
        self.spans[first] = merged;
        for _ in first + 1..last {
            self.remove_at(first + 1);
        }
        Ok(())
    }

    /// Remove `s` from the set (the parts of it that are present).
    fn subtract(&mut self, s: Span) -> Result<(), RegionError> {
        if s.start >= s.end {
            return Ok(());
        }
        let mut i = self.spans[..self.len].partition_point(|x| x.end <= s.start);
        while i < self.len && self.spans[i].start < s.end {
            let x = self.spans[i];
            let left = Span {
                start: x.start,
                end: s.start,
            };
            let right = Span {
                start: s.end,
                end: x.end,
            };
            match (left.start < left.end, right.start < right.end) {
                (true, true) => {
                    self.spans[i] = left;
                    self.insert_at(i + 1, right)?;
                    return Ok(());
                }
                (true, false) => {
                    self.spans[i] = left;
                    i += 1;
                }
                (false, true) => {
                    self.spans[i] = right;
                    return Ok(());
                }
                (false, false) => self.remove_at(i),
            }
        }
        Ok(())
    }
}

fn align_up(x: u64, align: u64) -> Option<u64> {
    Some(x.checked_add(align - 1)? & !(align - 1))
}

fn align_down(x: u64, align: u64) -> u64 {
    x & !(align - 1)
}

/// Checked `[base, base + size)` with `size > 0`.
fn span(base: u64, size: u64) -> Result<Span, RegionError> {
    match base.checked_add(size) {
        Some(end) if size > 0 => Ok(Span { start: base, end }),
        _ => Err(RegionError::BadRange { base, size }),
    }
}

/// Free physical memory, page granular (4 KiB).
///
/// `add` rounds RAM inward to whole pages, `reserve` rounds outward; sizes passed to
/// `alloc`/`alloc_at`/`free` are rounded up to whole pages.
#[derive(Clone, Debug)]
pub struct RegionAllocator {
    ram: SpanSet<MAX_RAM_RANGES>,
    reserved: SpanSet<MAX_RESERVED_RANGES>,
    free: SpanSet<MAX_FREE_RANGES>,
}

impl Default for RegionAllocator {
    fn default() -> Self {
        Self::new()
    }
}

/// `[base, base + size)` rounded outward to whole pages.
fn page_span_outward(base: u64, size: u64) -> Result<Span, RegionError> {
    let s = span(base, size)?;
    let start = align_down(s.start, PAGE_SIZE);
    let end = align_up(s.end, PAGE_SIZE).ok_or(RegionError::BadRange { base, size })?;
    Ok(Span { start, end })
}

impl RegionAllocator {
    /// An allocator with no memory.
    pub const fn new() -> Self {
        RegionAllocator {
            ram: SpanSet::new(),
            reserved: SpanSet::new(),
            free: SpanSet::new(),
        }
    }

    /// Add a bank of RAM. Parts already reserved stay unavailable. Fails if it overlaps RAM
    /// already added. A bank smaller than a page after rounding inward adds nothing.
    pub fn add(&mut self, base: u64, size: u64) -> Result<(), RegionError> {
        let s = span(base, size)?;
        let start = align_up(s.start, PAGE_SIZE).ok_or(RegionError::BadRange { base, size })?;
        let end = align_down(s.end, PAGE_SIZE);
        if start >= end {
            return Ok(());
        }
        let s = Span { start, end };
        if self.ram.overlaps(s) {
            return Err(RegionError::OverlapsRam { base, size });
        }
        let mut ram = self.ram.clone();
        let mut free = self.free.clone();
        ram.union(s)?;
        free.union(s)?;
        for r in self.reserved.iter() {
            free.subtract(r)?;
        }
        self.ram = ram;
        self.free = free;
        Ok(())
    }

    /// Carve `[base, base + size)` (rounded outward to pages) out of the free memory, now and
    /// for RAM added later. Reserving memory that is not RAM, or is already reserved or
    /// allocated, is allowed (the overlap is simply not free).
    pub fn reserve(&mut self, base: u64, size: u64) -> Result<(), RegionError> {
        let s = page_span_outward(base, size)?;
        let mut reserved = self.reserved.clone();
        let mut free = self.free.clone();
        reserved.union(s)?;
        free.subtract(s)?;
        self.reserved = reserved;
        self.free = free;
        Ok(())
    }

    /// Give back a reservation: `[base, base + size)` (rounded outward to pages) is no longer
    /// reserved, and the RAM in it becomes free. For memory that was only needed during boot
    /// (the boot modules once the guests are built). The caller must not release a range
    /// another reservation overlaps (reservations are kept as one set).
    pub fn unreserve(&mut self, base: u64, size: u64) -> Result<(), RegionError> {
        let s = page_span_outward(base, size)?;
        let mut reserved = self.reserved.clone();
        let mut free = self.free.clone();
        reserved.subtract(s)?;
        for r in self.ram.iter() {
            let part = Span { start: r.start.max(s.start), end: r.end.min(s.end) };
            if part.start < part.end {
                free.union(part)?;
            }
        }
        self.reserved = reserved;
        self.free = free;
        Ok(())
    }

    /// Allocate `size` bytes (rounded up to pages) aligned to `align` (a power of two; at
    /// least 4 KiB is used) from the lowest free address that fits.
    pub fn alloc(&mut self, size: u64, align: u64) -> Option<u64> {
        if size == 0 || !align.is_power_of_two() {
            return None;
        }
        let size = align_up(size, PAGE_SIZE)?;
        let align = align.max(PAGE_SIZE);
        let found = self.free.iter().find_map(|r| {
            let start = align_up(r.start, align)?;
            let end = start.checked_add(size)?;
            (end <= r.end).then_some(Span { start, end })
        })?;
        self.free.subtract(found).ok()?;
        Some(found.start)
    }

    /// Allocate exactly `[base, base + size)` (size rounded up to pages). `base` must be page
    /// aligned and the whole range free.
    pub fn alloc_at(&mut self, base: u64, size: u64) -> Result<(), RegionError> {
        if !base.is_multiple_of(PAGE_SIZE) {
            return Err(RegionError::Misaligned { base });
        }
        let s = span(base, size)?;
        let end = align_up(s.end, PAGE_SIZE).ok_or(RegionError::BadRange { base, size })?;
        let s = Span { start: base, end };
        if !self.free.contains(s) {
            return Err(RegionError::NotFree { base, size });
        }
        self.free.subtract(s)
    }

    /// Return `[base, base + size)` (size rounded up to pages), coalescing with free
    /// neighbours. It must be RAM, unreserved and entirely allocated (catches double frees).
    pub fn free(&mut self, base: u64, size: u64) -> Result<(), RegionError> {
        if !base.is_multiple_of(PAGE_SIZE) {
            return Err(RegionError::Misaligned { base });
        }
        let s = span(base, size)?;
        let end = align_up(s.end, PAGE_SIZE).ok_or(RegionError::BadRange { base, size })?;
        let s = Span { start: base, end };
        if !self.ram.contains(s) || self.reserved.overlaps(s) || self.free.overlaps(s) {
            return Err(RegionError::NotAllocated { base, size });
        }
        self.free.union(s)
    }

    /// The free ranges as `(base, size)`, lowest first, coalesced.
    pub fn free_ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.free.iter().map(|s| (s.start, s.end - s.start))
    }

    /// Total free bytes.
    pub fn total_free(&self) -> u64 {
        self.free.iter().map(|s| s.end - s.start).sum()
    }

    /// Is every byte of `[base, base + size)` free?
    pub fn is_free(&self, base: u64, size: u64) -> bool {
        span(base, size)
            .map(|s| self.free.contains(s))
            .unwrap_or(false)
    }
}

impl FrameAlloc for RegionAllocator {
    fn alloc_frame(&mut self) -> Option<u64> {
        self.alloc(PAGE_SIZE, PAGE_SIZE)
    }

    fn free_frame(&mut self, pa: u64) {
        // The trait cannot report errors; a bogus free is ignored rather than corrupting state.
        let _ = self.free(pa, PAGE_SIZE);
    }

    fn alloc_frames(&mut self, count: usize) -> Option<u64> {
        let bytes = (count as u64).checked_mul(PAGE_SIZE)?;
        if !count.is_power_of_two() {
            return None;
        }
        self.alloc(bytes, bytes)
    }

    fn free_frames(&mut self, pa: u64, count: usize) {
        if let Some(bytes) = (count as u64).checked_mul(PAGE_SIZE) {
            let _ = self.free(pa, bytes);
        }
    }
}

// Property tests (proptest), not built for the loom model checks.
#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    const MIB: u64 = 1 << 20;

    fn ranges(a: &RegionAllocator) -> Vec<(u64, u64)> {
        a.free_ranges().collect()
    }

    #[test]
    fn unreserve_frees_the_ram_of_a_released_reservation() {
        let mut a = RegionAllocator::new();
        a.add(0x4000_0000, 0x100_0000).unwrap();
        a.reserve(0x4080_0000, 0x20_0000).unwrap();
        a.reserve(0x4ff_f000, 0x2000).unwrap(); // not RAM: stays out of the free set
        let before = a.total_free();
        assert!(!a.is_free(0x4080_0000, 0x1000));
        a.unreserve(0x4080_0000, 0x20_0000).unwrap();
        assert_eq!(a.total_free(), before + 0x20_0000);
        assert!(a.is_free(0x4080_0000, 0x20_0000));
        // RAM added later is no longer carved there either; non-RAM never becomes free.
        a.unreserve(0x4ff_f000, 0x2000).unwrap();
        assert!(!a.is_free(0x4ff_f000, 0x1000));
        assert_eq!(a.alloc(0x20_0000, 0x20_0000), Some(0x4000_0000));
    }

    #[test]
    fn add_reserve_alloc_free_roundtrip() {
        let mut a = RegionAllocator::new();
        a.add(0x4000_0000, 64 * MIB).unwrap();
        a.reserve(0x4020_0000, 0x1234).unwrap(); // rounds out to 2 pages
        assert_eq!(
            ranges(&a),
            vec![
                (0x4000_0000, 0x20_0000),
                (0x4020_2000, 64 * MIB - 0x20_2000)
            ]
        );
        assert_eq!(a.total_free(), 64 * MIB - 0x2000);
        // Lowest fit with 2 MiB alignment skips the hole's partial 2 MiB.
        let x = a.alloc(2 * MIB, 2 * MIB).unwrap();
        assert_eq!(x, 0x4000_0000);
        let y = a.alloc(2 * MIB, 2 * MIB).unwrap();
        assert_eq!(y, 0x4040_0000);
        a.free(x, 2 * MIB).unwrap();
        a.free(y, 2 * MIB).unwrap();
        assert_eq!(a.total_free(), 64 * MIB - 0x2000);
        assert_eq!(ranges(&a).len(), 2);
    }

    #[test]
    fn errors_not_panics() {
        let mut a = RegionAllocator::new();
        assert_eq!(
            a.add(u64::MAX - 10, 100),
            Err(RegionError::BadRange {
                base: u64::MAX - 10,
                size: 100
            })
        );
        assert!(matches!(a.add(0, 0), Err(RegionError::BadRange { .. })));
        a.add(0x1000_0000, 16 * MIB).unwrap();
        assert!(matches!(
            a.add(0x1080_0000, 16 * MIB),
            Err(RegionError::OverlapsRam { .. })
        ));
        assert_eq!(a.alloc(0, 4096), None);
        assert_eq!(a.alloc(4096, 3), None);
        assert_eq!(a.alloc(32 * MIB, 4096), None);
        assert!(matches!(
            a.free(0x1000_0000, 4096),
            Err(RegionError::NotAllocated { .. })
        ));
        assert!(matches!(
            a.free(0x1000_0001, 4096),
            Err(RegionError::Misaligned { .. })
        ));
        assert!(matches!(
            a.free(0x9000_0000, 4096),
            Err(RegionError::NotAllocated { .. })
        ));
        a.alloc_at(0x1010_0000, 4096).unwrap();
        assert!(matches!(
            a.alloc_at(0x1010_0000, 4096),
            Err(RegionError::NotFree { .. })
        ));
        assert!(matches!(
            a.alloc_at(0x10ff_f000, 0x2000),
            Err(RegionError::NotFree { .. })
        ));
        a.free(0x1010_0000, 4096).unwrap();
        assert!(matches!(
            a.free(0x1010_0000, 4096),
            Err(RegionError::NotAllocated { .. })
        ));
        assert_eq!(a.total_free(), 16 * MIB);
        assert_eq!(a.alloc(usize::MAX as u64, 1 << 63), None);
    }

    #[test]
    fn reserve_before_add_and_reserved_cannot_be_freed() {
        let mut a = RegionAllocator::new();
        a.reserve(0x2000, 0x1000).unwrap();
        a.add(0, 0x10000).unwrap();
        assert_eq!(ranges(&a), vec![(0, 0x2000), (0x3000, 0xd000)]);
        assert!(matches!(
            a.free(0x2000, 0x1000),
            Err(RegionError::NotAllocated { .. })
        ));
        // Unaligned RAM rounds inward.
        a.add(0x10_0800, 0x2000).unwrap();
        assert!(a.is_free(0x10_1000, 0x1000));
        assert!(!a.is_free(0x10_0000, 0x1000));
    }

    #[test]
    fn frame_alloc_contiguous_aligned() {
        let mut a = RegionAllocator::new();
        a.add(0x1000, 0x10000).unwrap();
        let f = a.alloc_frame().unwrap();
        assert_eq!(f, 0x1000);
        let two = a.alloc_frames(2).unwrap();
        assert_eq!(two % 0x2000, 0);
        assert_eq!(a.alloc_frames(3), None);
        a.free_frames(two, 2);
        a.free_frame(f);
        a.free_frame(f); // ignored
        assert_eq!(a.total_free(), 0x10000);
    }

    #[test]
    fn too_many_ranges_is_an_error_and_changes_nothing() {
        let mut a = RegionAllocator::new();
        a.add(0, 1 << 30).unwrap();
        // Reserve every other page until the free table is full.
        let mut i = 0u64;
        let mut err = None;
        while i < 1000 {
            if let Err(e) = a.reserve(i * 0x2000 + 0x1000, 0x1000) {
                err = Some(e);
                break;
            }
            i += 1;
        }
        assert!(matches!(err, Some(RegionError::TooManyRanges)) || i == 1000);
        let before = ranges(&a);
        let _ = a.alloc_at(0x100_0000, 0x1000);
        let _ = a.reserve(0x200_0000, 0x1000);
        let after = ranges(&a);
        assert!(after.len() <= MAX_FREE_RANGES);
        assert!(before.len() <= MAX_FREE_RANGES);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Alloc(u64, u32),
        Free(usize),
        AllocAt(u64, u64),
        Reserve(u64, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1u64..64, 12u32..18).prop_map(|(p, a)| Op::Alloc(p * 4096, a)),
            (0usize..64).prop_map(Op::Free),
            (0u64..256, 1u64..16).prop_map(|(p, n)| Op::AllocAt(p * 4096, n * 4096)),
            (0u64..0x10_0000, 1u64..0x3000).prop_map(|(b, s)| Op::Reserve(b, s)),
        ]
    }

    proptest! {
        /// Against a page bitmap model: allocations never overlap each other, reservations or
        /// non-RAM; free ranges stay sorted and coalesced; the byte count matches.
        #[test]
        fn matches_page_model(ops in proptest::collection::vec(op(), 1..80)) {
            const PAGES: usize = 256; // RAM = [0x1000, 0x101000) minus the first page
            let mut a = RegionAllocator::new();
            a.add(0x1000, (PAGES as u64 - 1) * 4096).unwrap();
            let mut model = vec![false; PAGES]; // true = free
            for m in model.iter_mut().skip(1) { *m = true; }
            let mut live: Vec<(u64, u64)> = Vec::new();
            for op in ops {
                match op {
                    Op::Alloc(size, align_log) => {
                        let align = 1u64 << align_log;
                        let got = a.alloc(size, align);
                        let n = (size / 4096) as usize;
                        let want = (0..PAGES).step_by((align / 4096) as usize)
                            .find(|&p| p + n <= PAGES && model[p..p + n].iter().all(|&f| f));
                        prop_assert_eq!(got, want.map(|p| p as u64 * 4096));
                        if let Some(p) = want {
                            for m in &mut model[p..p + n] { *m = false; }
                            live.push((p as u64 * 4096, size));
                        }
                    }
                    Op::Free(i) => {
                        if live.is_empty() { continue; }
                        let (b, s) = live.remove(i % live.len());
                        prop_assert_eq!(a.free(b, s), Ok(()));
                        for m in &mut model[(b / 4096) as usize..((b + s) / 4096) as usize] { *m = true; }
                    }
                    Op::AllocAt(b, s) => {
                        let p = (b / 4096) as usize;
                        let n = (s / 4096) as usize;
                        let ok = p + n <= PAGES && model[p..p + n].iter().all(|&f| f);
                        prop_assert_eq!(a.alloc_at(b, s).is_ok(), ok);
                        if ok {
                            for m in &mut model[p..p + n] { *m = false; }
                            live.push((b, s));
                        }
                    }
                    Op::Reserve(b, s) => {
                        a.reserve(b, s).unwrap();
                        let p0 = (b / 4096) as usize;
                        let p1 = (b + s).div_ceil(4096) as usize;
                        for m in model.iter_mut().take(p1.min(PAGES)).skip(p0) { *m = false; }
                        // Live allocations overlapping a reservation can no longer be freed.
                        live.retain(|&(lb, ls)| lb + ls <= p0 as u64 * 4096 || lb >= p1 as u64 * 4096);
                    }
                }
                let free: u64 = model.iter().filter(|&&f| f).count() as u64 * 4096;
                prop_assert_eq!(a.total_free(), free);
                let r = ranges(&a);
                for w in r.windows(2) {
                    prop_assert!(w[0].0 + w[0].1 < w[1].0, "not sorted/coalesced: {:?}", r);
                }
                for &(b, s) in &r {
                    for p in (b / 4096)..((b + s) / 4096) {
                        prop_assert!(model[p as usize]);
                    }
                }
            }
        }
    }
}
