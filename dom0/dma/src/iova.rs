//! A range allocator for IOVA space (also used for swiotlb bounce slots and grant-reference
//! ranges): per-size-class caches make the common sizes O(1) — a free pushes onto the class's
//! stack and the next allocation of that class pops it — and a coalescing free-range map plus a
//! bump frontier serve the rest. Cost does not grow with the number of live allocations.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// Size classes cached: 1, 2, 4, .., 128 units.
const CLASSES: usize = 8;
/// Largest cached class, in units.
const MAX_CLASS_UNITS: u64 = 1 << (CLASSES - 1);
/// Entries a class cache holds before frees go to the range map.
const CACHE_CAP: usize = 4096;

/// Accounting of an allocator's space; `live + cached + free + untouched == total` always.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IovaStats {
    pub total: u64,
    pub live: u64,
    pub live_count: u64,
    pub cached: u64,
    pub free: u64,
    pub untouched: u64,
}

/// Allocates `[base, base+size)` in units of `1 << shift` bytes.
#[derive(Clone, Debug)]
pub struct IovaAllocator {
    base: u64,
    end: u64,
    shift: u32,
    natural_align: bool,
    frontier: u64,
    caches: [Vec<u64>; CLASSES],
    free: BTreeMap<u64, u64>,
    live_bytes: u64,
    live_count: u64,
    cached_bytes: u64,
    free_bytes: u64,
}

#[inline]
fn class_of(units: u64) -> usize {
    if units <= 1 {
        0
    } else {
        (64 - (units - 1).leading_zeros()) as usize
    }
}

impl IovaAllocator {
    /// An allocator over `[base, base + size)` (both multiples of the unit) handing out
    /// ranges of whole units, cached sizes aligned to their own size.
    pub fn new(base: u64, size: u64, shift: u32) -> IovaAllocator {
        let unit = 1u64 << shift;
        let base = (base + unit - 1) & !(unit - 1);
        let end = (base + size) & !(unit - 1);
        IovaAllocator {
            base,
            end,
            shift,
            natural_align: true,
            frontier: base,
            caches: Default::default(),
            free: BTreeMap::new(),
            live_bytes: 0,
            live_count: 0,
            cached_bytes: 0,
            free_bytes: 0,
        }
    }

    /// Do not align allocations to their size (grant references need no alignment).
    pub fn without_alignment(mut self) -> IovaAllocator {
        self.natural_align = false;
        self
    }

    /// First address of the space.
    pub fn base(&self) -> u64 {
        self.base
    }
    /// One past the last address of the space.
    pub fn end(&self) -> u64 {
        self.end
    }
    /// The unit shift.
    pub fn shift(&self) -> u32 {
        self.shift
    }

    /// The length actually reserved for a request of `size` bytes.
    #[inline]
    pub fn alloc_len(&self, size: u64) -> u64 {
        let units = (size + (1 << self.shift) - 1) >> self.shift;
        let units = units.max(1);
        if units <= MAX_CLASS_UNITS {
            (1u64 << class_of(units)) << self.shift
        } else {
            units << self.shift
        }
    }

    #[inline]
    fn align_for(&self, len: u64) -> u64 {
        let unit = 1u64 << self.shift;
        if !self.natural_align {
            return unit;
        }
        let cap = MAX_CLASS_UNITS << self.shift;
        if len <= cap {
            len.next_power_of_two()
        } else {
            cap
        }
    }

    /// Allocate a range for `size` bytes whose last byte is at or below `limit`. Returns its
    /// start; the range is `alloc_len(size)` long.
    #[inline]
    pub fn alloc(&mut self, size: u64, limit: u64) -> Option<u64> {
        if size == 0 {
            return None;
        }
        let len = self.alloc_len(size);
        let units = len >> self.shift;
        if units <= MAX_CLASS_UNITS {
            let c = class_of(units);
            if let Some(a) = self.caches[c].pop() {
                if a + len - 1 <= limit {
                    self.cached_bytes -= len;
                    self.live_bytes += len;
                    self.live_count += 1;
                    return Some(a);
                }
                self.caches[c].push(a);
            }
        }
        self.alloc_slow(len, limit)
    }

    #[cold]
    fn alloc_slow(&mut self, len: u64, limit: u64) -> Option<u64> {
        let align = self.align_for(len);
        let got = self.take_free(len, align, limit).or_else(|| self.take_frontier(len, align, limit));
        let got = match got {
            Some(a) => Some(a),
            None if self.cached_bytes > 0 => {
                self.drain_caches();
                self.take_free(len, align, limit).or_else(|| self.take_frontier(len, align, limit))
            }
            None => None,
        };
        if got.is_some() {
            self.live_bytes += len;
            self.live_count += 1;
        }
        got
    }

    fn take_free(&mut self, len: u64, align: u64, limit: u64) -> Option<u64> {
        let mut found = None;
        for (&s, &l) in self.free.iter() {
            if s > limit {
                break;
            }
            let a = (s + align - 1) & !(align - 1);
            if a + len <= s + l && a + len - 1 <= limit {
                found = Some((s, l, a));
                break;
            }
        }
        let (s, l, a) = found?;
        self.free.remove(&s);
        self.free_bytes -= l;
        if a > s {
            self.free.insert(s, a - s);
            self.free_bytes += a - s;
        }
        let tail = s + l - (a + len);
        if tail > 0 {
            self.free.insert(a + len, tail);
            self.free_bytes += tail;
        }
        Some(a)
    }

    fn take_frontier(&mut self, len: u64, align: u64, limit: u64) -> Option<u64> {
        let a = (self.frontier + align - 1) & !(align - 1);
        if a < self.frontier || a.checked_add(len)? > self.end || a + len - 1 > limit {
            return None;
        }
        let gap_start = self.frontier;
        self.frontier = a + len;
        if a > gap_start {
            self.insert_free(gap_start, a - gap_start);
        }
        Some(a)
    }

    /// Return a range from `alloc` (same `size`). The caller (the DMA layer) has already
    /// checked that the range is live: the allocator trusts it.
    #[inline]
    pub fn free(&mut self, addr: u64, size: u64) {
        let len = self.alloc_len(size);
        self.live_bytes -= len;
        self.live_count -= 1;
        let units = len >> self.shift;
        if units <= MAX_CLASS_UNITS {
            let c = class_of(units);
            if self.caches[c].len() < CACHE_CAP {
                self.caches[c].push(addr);
                self.cached_bytes += len;
                return;
            }
        }
        self.insert_free(addr, len);
    }

    fn insert_free(&mut self, addr: u64, len: u64) {
        let mut start = addr;
        let mut len = len;
        if let Some((&ps, &pl)) = self.free.range(..addr).next_back() {
            if ps + pl == addr {
                self.free.remove(&ps);
                self.free_bytes -= pl;
                start = ps;
                len += pl;
            }
        }
        if let Some(nl) = self.free.remove(&(start + len)) {
            self.free_bytes -= nl;
            len += nl;
        }
        if start + len == self.frontier {
            self.frontier = start;
        } else {
            self.free.insert(start, len);
            self.free_bytes += len;
        }
    }

    /// Move every cached range to the coalescing range map (done automatically when an
    /// allocation would otherwise fail).
    pub fn drain_caches(&mut self) {
        for c in 0..CLASSES {
            let len = (1u64 << c) << self.shift;
            let cached = core::mem::take(&mut self.caches[c]);
            for a in cached {
                self.cached_bytes -= len;
                self.insert_free(a, len);
            }
        }
    }

    /// The space's accounting.
    pub fn stats(&self) -> IovaStats {
        IovaStats {
            total: self.end - self.base,
            live: self.live_bytes,
            live_count: self.live_count,
            cached: self.cached_bytes,
            free: self.free_bytes,
            untouched: self.end - self.frontier,
        }
    }

    /// Check the accounting adds up; `Err` names what does not.
    pub fn check(&self) -> Result<(), &'static str> {
        let s = self.stats();
        if s.live + s.cached + s.free + s.untouched != s.total {
            return Err("live + cached + free + untouched != total");
        }
        let cached: u64 = (0..CLASSES).map(|c| self.caches[c].len() as u64 * ((1u64 << c) << self.shift)).sum();
        if cached != s.cached {
            return Err("class caches do not add up");
        }
        let free: u64 = self.free.values().sum();
        if free != s.free {
            return Err("free ranges do not add up");
        }
        if self.free.iter().any(|(&a, &l)| a + l > self.frontier) {
            return Err("free range beyond the frontier");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_sizes_come_back_from_the_cache() {
        let mut a = IovaAllocator::new(0x1000_0000, 1 << 30, 12);
        let x = a.alloc(4096, u64::MAX).unwrap();
        a.free(x, 4096);
        assert_eq!(a.alloc(100, u64::MAX), Some(x));
        assert_eq!(a.stats().live, 4096);
        a.check().unwrap();
    }

    #[test]
    fn sizes_round_to_classes_and_align() {
        let mut a = IovaAllocator::new(0, 1 << 30, 12);
        let _ = a.alloc(4096, u64::MAX).unwrap();
        let b = a.alloc(3 * 4096, u64::MAX).unwrap();
        assert_eq!(a.alloc_len(3 * 4096), 4 * 4096);
        assert_eq!(b % (4 * 4096), 0);
        a.check().unwrap();
    }

    #[test]
    fn limit_is_respected_and_exhaustion_reported() {
        let mut a = IovaAllocator::new(0, 16 * 4096, 12);
        let mut got = Vec::new();
        while let Some(x) = a.alloc(4096, 8 * 4096 - 1) {
            got.push(x);
        }
        assert_eq!(got.len(), 8);
        assert!(got.iter().all(|&x| x + 4095 < 8 * 4096));
        for x in got {
            a.free(x, 4096);
        }
        a.check().unwrap();
        // A large request needs the cached singles coalesced back.
        let big = a.alloc(16 * 4096, u64::MAX).unwrap();
        assert_eq!(big, 0);
        a.free(big, 16 * 4096);
        let s = a.stats();
        assert_eq!(s.live, 0);
        a.check().unwrap();
    }

    #[test]
    fn large_ranges_coalesce() {
        let mut a = IovaAllocator::new(0, 1 << 24, 12);
        let x = a.alloc(1 << 20, u64::MAX).unwrap();
        let y = a.alloc(1 << 20, u64::MAX).unwrap();
        let z = a.alloc(1 << 20, u64::MAX).unwrap();
        a.free(x, 1 << 20);
        a.free(z, 1 << 20);
        a.free(y, 1 << 20);
        let s = a.stats();
        assert_eq!((s.live, s.free, s.untouched), (0, 0, 1 << 24));
        a.check().unwrap();
    }
}
