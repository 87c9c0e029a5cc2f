//! Host doubles for the mm tests: a Vec-backed [`PhysMem`] that checks break-before-make and
//! cache cleaning, a counting frame allocator over it, and a recording [`TlbOps`].

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::vec::Vec;

use platform::{MemError, PhysMem};

use super::{FrameAlloc, RegionAllocator, TlbOps, PAGE_SIZE};

/// One observable step, in program order across memory and TLB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// An 8-byte aligned descriptor write: old and new value.
    Write {
        pa: u64,
        old: u64,
        new: u64,
    },
    InvIpa {
        vmid: u16,
        ipa: u64,
    },
    InvVmid {
        vmid: u16,
    },
    Sync,
}

#[derive(Default)]
pub struct Shared {
    pub log: Vec<Event>,
    pub logging: bool,
    /// Slots that went valid -> invalid and have not yet been covered by an invalidate + sync.
    stale: BTreeSet<u64>,
    /// Slots in `stale` that saw an invalidation, waiting for a sync.
    invalidated: BTreeSet<u64>,
    /// Frames handed out but not yet linked into a table (not reachable by the walker).
    fresh: BTreeSet<u64>,
    /// 64-byte lines written but not cleaned.
    dirty: BTreeSet<u64>,
    /// Break-before-make or cache-clean violations seen.
    pub violations: Vec<std::string::String>,
}

/// Physical memory `[base, base + len)` backed by a Vec.
pub struct TestMem {
    pub base: u64,
    bytes: RefCell<Vec<u8>>,
    pub shared: Rc<RefCell<Shared>>,
}

impl TestMem {
    pub fn new(base: u64, len: usize) -> Self {
        // Fill with garbage so code that forgets to zero a table is caught.
        TestMem {
            base,
            bytes: RefCell::new(vec![0xa5; len]),
            shared: Rc::new(RefCell::new(Shared::default())),
        }
    }

    pub fn tlb(&self) -> RecTlb {
        RecTlb {
            shared: self.shared.clone(),
        }
    }

    fn range(&self, pa: u64, len: usize) -> Result<core::ops::Range<usize>, MemError> {
        let size = self.bytes.borrow().len() as u64;
        let off = pa
            .checked_sub(self.base)
            .ok_or(MemError::NotMemory { pa })?;
        let end = off
            .checked_add(len as u64)
            .ok_or(MemError::NotMemory { pa })?;
        if end > size {
            return Err(MemError::NotMemory { pa });
        }
        Ok(off as usize..end as usize)
    }

    /// Frames `[pa, pa + n pages)` are reachable by the walker (a root table).
    pub fn mark_live(&self, pa: u64, n: usize) {
        let mut s = self.shared.borrow_mut();
        for i in 0..n as u64 {
            s.fresh.remove(&(pa + i * PAGE_SIZE));
        }
    }

    /// Whether `[pa, pa + len)` holds no line written since its last clean (what the CPU
    /// wrote there is at the point of coherency).
    pub fn is_clean(&self, pa: u64, len: u64) -> bool {
        let s = self.shared.borrow();
        !s.dirty.iter().any(|&line| line + 64 > pa && line < pa + len)
    }

    pub fn set_logging(&self, on: bool) {
        let mut s = self.shared.borrow_mut();
        s.logging = on;
        s.log.clear();
    }

    pub fn take_log(&self) -> Vec<Event> {
        std::mem::take(&mut self.shared.borrow_mut().log)
    }

    /// Panics (test only) if break-before-make or cleaning was violated, or writes are
    /// still dirty / invalidations still pending at the end of an operation.
    pub fn check_quiescent(&self) {
        let s = self.shared.borrow();
        assert!(s.violations.is_empty(), "violations: {:?}", s.violations);
        assert!(s.dirty.is_empty(), "uncleaned lines: {:x?}", s.dirty);
        assert!(
            s.stale.is_empty(),
            "invalid entries not yet invalidated+synced: {:x?}",
            s.stale
        );
    }
}

impl PhysMem for TestMem {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let r = self.range(pa, buf.len())?;
        buf.copy_from_slice(&self.bytes.borrow()[r]);
        Ok(())
    }

    fn write(&self, pa: u64, data: &[u8]) -> Result<(), MemError> {
        let r = self.range(pa, data.len())?;
        let mut s = self.shared.borrow_mut();
        let mut bytes = self.bytes.borrow_mut();
        // Check every aligned 8-byte slot this write changes, as a descriptor write.
        let mut off = r.start & !7;
        while off < r.end {
            if off >= r.start && off + 8 <= r.end {
                let slot = self.base + off as u64;
                let old = u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap());
                let d = off - r.start;
                let new = u64::from_le_bytes(data[d..d + 8].try_into().unwrap());
                if old != new {
                    if old & 1 == 1 && new & 1 == 1 {
                        s.violations.push(format!(
                            "valid {old:#x} replaced by valid {new:#x} at {slot:#x} without break"
                        ));
                    }
                    if new & 1 == 1 && s.stale.contains(&slot) {
                        s.violations.push(format!(
                            "{slot:#x} made valid ({new:#x}) before the old entry was invalidated and synced"
                        ));
                    }
                    if old & 1 == 1 && new & 1 == 0 && !s.fresh.contains(&(slot & !0xfff)) {
                        s.stale.insert(slot);
                    }
                    // A table descriptor (type 0b11 and no attributes: page descriptors of
                    // the same type always carry AF, bit 10) links the frame it names.
                    if new & 3 == 3 && new & (1 << 10) == 0 {
                        s.fresh.remove(&(new & 0x0000_ffff_ffff_f000));
                    }
                    if s.logging {
                        s.log.push(Event::Write { pa: slot, old, new });
                    }
                }
            }
            off += 8;
        }
        bytes[r.clone()].copy_from_slice(data);
        let mut line = (self.base + r.start as u64) & !63;
        while line < self.base + r.end as u64 {
            s.dirty.insert(line);
            line += 64;
        }
        Ok(())
    }

    fn clean_dcache(&self, pa: u64, len: usize) {
        let mut s = self.shared.borrow_mut();
        let mut line = pa & !63;
        while line < pa + len as u64 {
            s.dirty.remove(&line);
            line += 64;
        }
    }
}

/// Records TLB maintenance into the memory's shared log and retires stale slots.
pub struct RecTlb {
    shared: Rc<RefCell<Shared>>,
}

impl RecTlb {
    fn invalidate(&mut self, ev: Event) {
        let mut s = self.shared.borrow_mut();
        if !s.dirty.is_empty() {
            let d = s.dirty.clone();
            s.violations
                .push(format!("TLB maintenance with uncleaned table lines {d:x?}"));
        }
        // The model does not know which IPA a slot maps, so any invalidation counts; the
        // unit tests check the IPAs exactly from the log.
        let stale: Vec<u64> = s.stale.iter().copied().collect();
        s.invalidated.extend(stale);
        if s.logging {
            s.log.push(ev);
        }
    }
}

impl TlbOps for RecTlb {
    fn invalidate_ipa(&mut self, vmid: u16, ipa: u64) {
        self.invalidate(Event::InvIpa { vmid, ipa });
    }
    fn invalidate_vmid(&mut self, vmid: u16) {
        self.invalidate(Event::InvVmid { vmid });
    }
    fn sync(&mut self) {
        let mut s = self.shared.borrow_mut();
        let done: Vec<u64> = s.invalidated.iter().copied().collect();
        for slot in done {
            s.stale.remove(&slot);
        }
        s.invalidated.clear();
        if s.logging {
            s.log.push(Event::Sync);
        }
    }
}

/// A frame allocator over a [`RegionAllocator`] that counts frames out and can be limited.
pub struct TestFrames {
    pub inner: RegionAllocator,
    pub outstanding: usize,
    /// When `Some(n)`, at most `n` more frames are handed out.
    pub budget: Option<usize>,
    /// When `Some(n)`, at most `n` frames are out at once (frames given back count again).
    pub limit: Option<usize>,
    shared: Rc<RefCell<Shared>>,
}

impl TestFrames {
    /// Frames from `[base, base + len)`, which must lie inside `mem`.
    pub fn new(mem: &TestMem, base: u64, len: u64) -> Self {
        let mut inner = RegionAllocator::new();
        inner.add(base, len).unwrap();
        TestFrames {
            inner,
            outstanding: 0,
            budget: None,
            limit: None,
            shared: mem.shared.clone(),
        }
    }

    /// A frame just handed out is unreachable by the walker: its old slots are not stale.
    fn fresh(&self, pa: u64, n: usize) {
        let mut s = self.shared.borrow_mut();
        let end = pa + n as u64 * PAGE_SIZE;
        let gone: Vec<u64> = s.stale.range(pa..end).copied().collect();
        for slot in gone {
            s.stale.remove(&slot);
            s.invalidated.remove(&slot);
        }
        for i in 0..n as u64 {
            s.fresh.insert(pa + i * PAGE_SIZE);
        }
    }

    fn take(&mut self, n: usize) -> bool {
        if self.limit.is_some_and(|l| self.outstanding + n > l) {
            return false;
        }
        match &mut self.budget {
            Some(b) if *b < n => false,
            Some(b) => {
                *b -= n;
                true
            }
            None => true,
        }
    }
}

impl FrameAlloc for TestFrames {
    fn alloc_frame(&mut self) -> Option<u64> {
        if !self.take(1) {
            return None;
        }
        let f = self.inner.alloc_frame()?;
        self.fresh(f, 1);
        self.outstanding += 1;
        Some(f)
    }
    fn free_frame(&mut self, pa: u64) {
        self.inner
            .free(pa, PAGE_SIZE)
            .expect("freeing a frame that is not allocated");
        self.outstanding -= 1;
    }
    fn alloc_frames(&mut self, count: usize) -> Option<u64> {
        if !self.take(count) {
            return None;
        }
        let f = self.inner.alloc_frames(count)?;
        self.fresh(f, count);
        self.outstanding += count;
        Some(f)
    }
}
