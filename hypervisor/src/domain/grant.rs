//! A domain's grant table (Xen's v1 format): the hypervisor-owned frames that hold its
//! `grant_entry_v1`s, the pins other domains hold on its grants, and the mappings it holds on
//! other domains' grants (the maptrack, indexed by the handle the mapper was given). State and
//! bookkeeping only; `hypercall::grant_table` applies Xen's rules.

use super::DomId;
use crate::mm::FrameAlloc;
use alloc::vec::Vec;
use platform::PhysMem;

/// Grant-table frames a domain may have (Xen's default `gnttab_max_frames`).
pub const MAX_GRANT_FRAMES: u32 = 64;
/// v1 entries per 4 KiB frame.
pub const ENTRIES_PER_FRAME: u32 = 512;
/// Mappings one domain may hold at once.
pub const MAX_MAPTRACK: usize = 4096;

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
    /// Beyond [`MAX_GRANT_FRAMES`].
    TooMany,
    /// The frame allocator is empty (or the frame could not be zeroed).
    NoMemory,
}

#[derive(Debug, Default)]
pub struct GrantTable {
    /// Host PAs of the table's frames.
    frames: Vec<u64>,
    /// Where each frame is mapped in the owner's stage 2.
    frame_gfn: Vec<Option<u64>>,
    /// Pins on this domain's grants, by reference.
    pins: Vec<(u32, Pin)>,
    /// This domain's mappings of grants, by handle.
    maptrack: Vec<Option<GrantMapping>>,
}

impl GrantTable {
    /// Frames in use as Xen counts them: at least one (Xen creates the first with the domain).
    pub fn nr_frames(&self) -> u32 {
        (self.frames.len() as u32).max(1)
    }

    /// Entries addressable now.
    pub fn nr_entries(&self) -> u32 {
        self.nr_frames() * ENTRIES_PER_FRAME
    }

    /// Make frames `0..n` exist, allocating and zeroing new ones.
    pub fn grow(&mut self, n: u32, frames: &mut dyn FrameAlloc, mem: &dyn PhysMem) -> Result<(), GrowError> {
        if n > MAX_GRANT_FRAMES {
            return Err(GrowError::TooMany);
        }
        while (self.frames.len() as u32) < n {
            let pa = frames.alloc_frame().ok_or(GrowError::NoMemory)?;
            if mem.write(pa, &[0u8; 4096]).is_err() {
                frames.free_frame(pa);
                return Err(GrowError::NoMemory);
            }
            self.frames.push(pa);
            self.frame_gfn.push(None);
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

    /// Add a pin on `gref`; returns the pin after the change.
    pub fn pin(&mut self, gref: u32, readonly: bool) -> Pin {
        let i = match self.pins.iter().position(|(r, _)| *r == gref) {
            Some(i) => i,
            None => {
                self.pins.push((gref, Pin::default()));
                self.pins.len() - 1
            }
        };
        let p = &mut self.pins[i].1;
        if readonly {
            p.readers = p.readers.saturating_add(1);
        } else {
            p.writers = p.writers.saturating_add(1);
        }
        *p
    }

    /// Drop a pin on `gref`; returns what is left.
    pub fn unpin(&mut self, gref: u32, readonly: bool) -> Pin {
        let Some(i) = self.pins.iter().position(|(r, _)| *r == gref) else { return Pin::default() };
        let p = &mut self.pins[i].1;
        if readonly {
            p.readers = p.readers.saturating_sub(1);
        } else {
            p.writers = p.writers.saturating_sub(1);
        }
        let left = *p;
        if left == Pin::default() {
            self.pins.swap_remove(i);
        }
        left
    }

    /// Current pins on `gref`.
    pub fn pins(&self, gref: u32) -> Pin {
        self.pins.iter().find(|(r, _)| *r == gref).map(|(_, p)| *p).unwrap_or_default()
    }

    /// Record a mapping; its handle, or `None` when the maptrack is full.
    pub fn add_mapping(&mut self, m: GrantMapping) -> Option<u32> {
        if let Some(i) = self.maptrack.iter().position(Option::is_none) {
            self.maptrack[i] = Some(m);
            return Some(i as u32);
        }
        if self.maptrack.len() >= MAX_MAPTRACK {
            return None;
        }
        self.maptrack.push(Some(m));
        Some(self.maptrack.len() as u32 - 1)
    }

    pub fn mapping(&self, handle: u32) -> Option<GrantMapping> {
        self.maptrack.get(handle as usize).copied().flatten()
    }

    pub fn remove_mapping(&mut self, handle: u32) -> Option<GrantMapping> {
        self.maptrack.get_mut(handle as usize).and_then(Option::take)
    }

    /// Whether this domain holds a mapping of host frame `pa`.
    pub fn maps_frame(&self, pa: u64) -> bool {
        self.maptrack.iter().flatten().any(|m| m.pa == pa)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::testmem::TestMem;
    use crate::mm::RegionAllocator;

    #[test]
    fn frames_grow_to_the_limit_zeroed() {
        let mem = TestMem::new(0x8000_0000, 0x3000);
        let mut fa = RegionAllocator::new();
        let _ = fa.add(0x8000_0000, 0x3000);
        let mut g = GrantTable::default();
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
    }

    #[test]
    fn pins_and_handles() {
        let mut g = GrantTable::default();
        assert_eq!(g.pin(5, false), Pin { readers: 0, writers: 1 });
        assert_eq!(g.pin(5, true), Pin { readers: 1, writers: 1 });
        assert_eq!(g.unpin(5, false), Pin { readers: 1, writers: 0 });
        assert_eq!(g.unpin(5, true), Pin::default());
        assert_eq!(g.unpin(5, true), Pin::default());
        let m = GrantMapping { granter: 1, gref: 5, host_gfn: 0x100, pa: 0x4000_0000, readonly: false };
        assert_eq!(g.add_mapping(m), Some(0));
        assert_eq!(g.add_mapping(m), Some(1));
        assert!(g.maps_frame(0x4000_0000));
        assert_eq!(g.remove_mapping(0), Some(m));
        assert_eq!(g.remove_mapping(0), None);
        assert_eq!(g.add_mapping(m), Some(0));
        assert_eq!(g.mapping(u32::MAX), None);
    }
}
