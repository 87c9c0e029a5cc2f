//! A small open-addressing hash table keyed by address, tuned for the map/unmap hot path:
//! multiplicative hashing, linear probing at most half full, and backward-shift deletion (no
//! tombstones, so a table cycling through insert/remove never degrades or rehashes).

use alloc::vec::Vec;

const EMPTY: u64 = u64::MAX;

#[derive(Clone)]
struct Slot<V> {
    key: u64,
    val: V,
}

/// Address -> `V`. The key `u64::MAX` is reserved.
#[derive(Clone)]
pub struct AddrTable<V: Copy + Default> {
    slots: Vec<Slot<V>>,
    shift: u32,
    len: usize,
}

impl<V: Copy + Default> Default for AddrTable<V> {
    fn default() -> Self {
        AddrTable::new()
    }
}

impl<V: Copy + Default> AddrTable<V> {
    /// An empty table.
    pub fn new() -> Self {
        Self::with_capacity_pow2(16)
    }

    fn with_capacity_pow2(cap: usize) -> Self {
        AddrTable {
            slots: alloc::vec![Slot { key: EMPTY, val: V::default() }; cap],
            shift: 64 - cap.trailing_zeros(),
            len: 0,
        }
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        ((key ^ (key >> 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    #[inline]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    #[inline]
    fn find(&self, key: u64) -> Option<usize> {
        let mut i = self.home(key);
        loop {
            let k = self.slots[i].key;
            if k == key {
                return Some(i);
            }
            if k == EMPTY {
                return None;
            }
            i = (i + 1) & self.mask();
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }
    /// No entries?
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value at `key`.
    #[inline]
    pub fn get(&self, key: u64) -> Option<&V> {
        self.find(key).map(|i| &self.slots[i].val)
    }

    /// The value at `key`, mutably.
    #[inline]
    pub fn get_mut(&mut self, key: u64) -> Option<&mut V> {
        self.find(key).map(move |i| &mut self.slots[i].val)
    }

    /// Insert or replace.
    #[inline]
    pub fn insert(&mut self, key: u64, val: V) {
        debug_assert!(key != EMPTY);
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let mut i = self.home(key);
        loop {
            let k = self.slots[i].key;
            if k == key {
                self.slots[i].val = val;
                return;
            }
            if k == EMPTY {
                self.slots[i] = Slot { key, val };
                self.len += 1;
                return;
            }
            i = (i + 1) & self.mask();
        }
    }

    /// Remove `key`, returning its value.
    #[inline]
    pub fn remove(&mut self, key: u64) -> Option<V> {
        let i = self.find(key)?;
        Some(self.remove_at(i))
    }

    /// The slot holding `key` (for a lookup followed by [`Self::remove_at`] without a second probe).
    #[inline]
    pub fn slot_of(&self, key: u64) -> Option<usize> {
        self.find(key)
    }

    /// The value in slot `i` (from [`Self::slot_of`]).
    #[inline]
    pub fn at_mut(&mut self, i: usize) -> &mut V {
        &mut self.slots[i].val
    }

    /// Remove the entry in slot `i` (from [`Self::slot_of`]).
    #[inline]
    pub fn remove_at(&mut self, i: usize) -> V {
        let mut hole = i;
        let val = self.slots[hole].val;
        self.len -= 1;
        // Backward-shift: pull later entries of the probe run into the hole.
        let mask = self.mask();
        let mut i = (hole + 1) & mask;
        loop {
            let k = self.slots[i].key;
            if k == EMPTY {
                break;
            }
            let h = self.home(k);
            // Move if the entry's home is not in (hole, i] cyclically.
            let dist_entry = i.wrapping_sub(h) & mask;
            let dist_hole = i.wrapping_sub(hole) & mask;
            if dist_entry >= dist_hole {
                self.slots[hole] = self.slots[i].clone();
                hole = i;
            }
            i = (i + 1) & mask;
        }
        self.slots[hole].key = EMPTY;
        val
    }

    /// Insert `val` at `key` if absent; otherwise hand the present value to `update`.
    #[inline]
    pub fn insert_or_update(&mut self, key: u64, val: V, update: impl FnOnce(&mut V)) {
        debug_assert!(key != EMPTY);
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let mut i = self.home(key);
        loop {
            let k = self.slots[i].key;
            if k == key {
                update(&mut self.slots[i].val);
                return;
            }
            if k == EMPTY {
                self.slots[i] = Slot { key, val };
                self.len += 1;
                return;
            }
            i = (i + 1) & self.mask();
        }
    }

    fn grow(&mut self) {
        let old = core::mem::take(&mut self.slots);
        *self = Self::with_capacity_pow2(old.len() * 2);
        for s in old {
            if s.key != EMPTY {
                self.insert(s.key, s.val);
            }
        }
    }

    /// Every entry.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &V)> + '_ {
        self.slots.iter().filter(|s| s.key != EMPTY).map(|s| (s.key, &s.val))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn behaves_like_a_map_under_churn() {
        let mut t = AddrTable::<u32>::new();
        let mut m = HashMap::new();
        let mut x = 0x1234_5678_9abc_def0u64;
        for i in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = (x % 512) << 12;
            if x & 1 == 0 {
                t.insert(k, i);
                m.insert(k, i);
            } else {
                assert_eq!(t.remove(k), m.remove(&k));
            }
            assert_eq!(t.len(), m.len());
        }
        for (k, v) in &m {
            assert_eq!(t.get(*k), Some(v));
        }
        assert_eq!(t.iter().count(), m.len());
    }
}
