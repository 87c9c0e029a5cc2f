//! Simulated physical memory with a non-coherent observer: the CPU sees its own writes at once, a
//! device (the SysMMU's table walker, a DMA master) sees only what was cleaned to the point of
//! coherency with [`PhysMem::clean_dcache`]. A forgotten clean therefore shows up as a stale walk.

use platform::{MemError, PhysMem};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

/// Cache-line size of the Cortex-A15 (bytes).
pub const CACHE_LINE: u64 = 64;
const PAGE: u64 = 4096;

#[derive(Default)]
struct Inner {
    /// The CPU's view (includes dirty lines not yet cleaned).
    cpu: BTreeMap<u64, Box<[u8; PAGE as usize]>>,
    /// Memory as a non-coherent device sees it.
    dev: BTreeMap<u64, Box<[u8; PAGE as usize]>>,
    /// Lines written by the CPU and not cleaned since.
    dirty: BTreeSet<u64>,
    cleaned_lines: u64,
    stale_device_reads: u64,
}

/// Sparse simulated RAM over a set of physical ranges (pages appear zeroed on first touch).
pub struct SimMem {
    ranges: Vec<Range<u64>>,
    inner: RefCell<Inner>,
}

fn page_get(map: &BTreeMap<u64, Box<[u8; PAGE as usize]>>, pa: u64) -> u8 {
    map.get(&(pa / PAGE)).map_or(0, |p| p[(pa % PAGE) as usize])
}

fn page_set(map: &mut BTreeMap<u64, Box<[u8; PAGE as usize]>>, pa: u64, v: u8) {
    map.entry(pa / PAGE).or_insert_with(|| Box::new([0; PAGE as usize]))[(pa % PAGE) as usize] = v;
}

impl SimMem {
    /// RAM covering `ranges` (physical addresses).
    pub fn new(ranges: &[Range<u64>]) -> Self {
        SimMem { ranges: ranges.to_vec(), inner: RefCell::new(Inner::default()) }
    }

    /// Whether `[pa, pa + len)` is entirely RAM.
    pub fn contains(&self, pa: u64, len: u64) -> bool {
        let Some(end) = pa.checked_add(len) else { return false };
        self.ranges.iter().any(|r| r.start <= pa && end <= r.end)
    }

    fn check(&self, pa: u64, len: usize) -> Result<(), MemError> {
        if self.contains(pa, len as u64) {
            Ok(())
        } else {
            Err(MemError::NotMemory { pa })
        }
    }

    /// Read as a non-coherent device does: cleaned data only. Counts reads of dirty lines.
    pub fn device_read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.check(pa, buf.len())?;
        let mut inner = self.inner.borrow_mut();
        let stale = (pa / CACHE_LINE..=(pa + buf.len().max(1) as u64 - 1) / CACHE_LINE)
            .any(|l| inner.dirty.contains(&l));
        if stale {
            inner.stale_device_reads += 1;
        }
        for (i, b) in buf.iter_mut().enumerate() {
            *b = page_get(&inner.dev, pa + i as u64);
        }
        Ok(())
    }

    pub fn device_read_u32(&self, pa: u64) -> Result<u32, MemError> {
        let mut b = [0u8; 4];
        self.device_read(pa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// A DMA write by a device: lands in memory; the CPU's view is updated too (the model assumes
    /// the CPU invalidates before it reads DMA'd data).
    pub fn device_write(&self, pa: u64, data: &[u8]) -> Result<(), MemError> {
        self.check(pa, data.len())?;
        let mut inner = self.inner.borrow_mut();
        for (i, &b) in data.iter().enumerate() {
            page_set(&mut inner.dev, pa + i as u64, b);
            page_set(&mut inner.cpu, pa + i as u64, b);
        }
        Ok(())
    }

    /// Whether the line holding `pa` has CPU writes the device cannot see yet.
    pub fn is_dirty(&self, pa: u64) -> bool {
        self.inner.borrow().dirty.contains(&(pa / CACHE_LINE))
    }

    /// How many dirty lines exist now (writes not yet cleaned).
    pub fn dirty_lines(&self) -> usize {
        self.inner.borrow().dirty.len()
    }

    /// How many lines `clean_dcache` has written back so far.
    pub fn cleaned_lines(&self) -> u64 {
        self.inner.borrow().cleaned_lines
    }

    /// How many device reads touched a dirty line (each one saw stale data).
    pub fn stale_device_reads(&self) -> u64 {
        self.inner.borrow().stale_device_reads
    }
}

impl PhysMem for SimMem {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.check(pa, buf.len())?;
        let inner = self.inner.borrow();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = page_get(&inner.cpu, pa + i as u64);
        }
        Ok(())
    }

    fn write(&self, pa: u64, data: &[u8]) -> Result<(), MemError> {
        self.check(pa, data.len())?;
        let mut inner = self.inner.borrow_mut();
        for (i, &b) in data.iter().enumerate() {
            page_set(&mut inner.cpu, pa + i as u64, b);
        }
        if !data.is_empty() {
            for l in pa / CACHE_LINE..=(pa + data.len() as u64 - 1) / CACHE_LINE {
                inner.dirty.insert(l);
            }
        }
        Ok(())
    }

    fn clean_dcache(&self, pa: u64, len: usize) {
        if len == 0 {
            return;
        }
        let mut inner = self.inner.borrow_mut();
        let lines: Vec<u64> =
            inner.dirty.range(pa / CACHE_LINE..=(pa + len as u64 - 1) / CACHE_LINE).copied().collect();
        for l in lines {
            inner.dirty.remove(&l);
            inner.cleaned_lines += 1;
            for a in l * CACHE_LINE..(l + 1) * CACHE_LINE {
                let v = page_get(&inner.cpu, a);
                page_set(&mut inner.dev, a, v);
            }
        }
    }
}

/// The same memory through a shared reference (drivers that own their `PhysMem` take `&SimMem`).
impl PhysMem for &SimMem {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        (**self).read(pa, buf)
    }
    fn write(&self, pa: u64, data: &[u8]) -> Result<(), MemError> {
        (**self).write(pa, data)
    }
    fn clean_dcache(&self, pa: u64, len: usize) {
        (**self).clean_dcache(pa, len)
    }
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    #[test]
    fn device_sees_only_cleaned_lines() {
        let m = SimMem::new(&[0x4000_0000..0x4010_0000]);
        m.write_u32(0x4000_0040, 7).unwrap();
        assert_eq!(m.read_u32(0x4000_0040), Ok(7));
        assert_eq!(m.device_read_u32(0x4000_0040), Ok(0));
        assert_eq!(m.stale_device_reads(), 1);
        m.clean_dcache(0x4000_0040, 4);
        assert_eq!(m.device_read_u32(0x4000_0040), Ok(7));
        assert_eq!(m.cleaned_lines(), 1);
        assert!(m.read_u32(0x3fff_fffe).is_err());
        assert!(m.device_read_u32(0x4010_0000).is_err());
    }
}
