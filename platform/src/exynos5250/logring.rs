//! A log ring in RAM at a fixed physical address, for boards with no reachable UART (the Snow):
//! the hypervisor appends its log, and after a warm reboot (RAM keeps its contents) the next boot
//! finds the ring intact and can read the previous run's log back. Every write is cleaned to the
//! point of coherency, so what the CPU wrote is in RAM when the reset comes.
//!
//! Layout: a 32-byte header, then the data bytes.
//! `magic u32 | version u32 | capacity u32 | head u32 | wrapped u32 | boots u32 | check u32 | 0`
//! `head` is where the next byte goes; `wrapped` says the data area has been filled at least once;
//! `check` = magic ^ capacity ^ head ^ wrapped ^ boots ^ CHECK_SALT guards against random RAM.

use crate::hal::{MemError, PhysMem};

/// "XNLG", little-endian.
pub const RING_MAGIC: u32 = 0x474c_4e58;
pub const RING_VERSION: u32 = 1;
pub const HEADER_SIZE: u64 = 32;
const CHECK_SALT: u32 = 0x5a5a_a5a5;

/// Where the Snow keeps its ring: the last MiB of its 2 GiB of RAM (must be kept out of dom0).
pub const SNOW_RING_BASE: u64 = 0xBFF0_0000;
pub const SNOW_RING_SIZE: u64 = 0x10_0000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The area is too small for a header and one byte, or too big for a 32-bit header.
    BadSize { size: u64 },
    Memory(MemError),
}

impl From<MemError> for RingError {
    fn from(e: MemError) -> Self {
        RingError::Memory(e)
    }
}

impl core::fmt::Display for RingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RingError::BadSize { size } => write!(f, "log ring size {size:#x} unusable"),
            RingError::Memory(e) => write!(f, "log ring: {e}"),
        }
    }
}

/// The log ring over physical memory `P`.
pub struct RamLog<P: PhysMem> {
    mem: P,
    base: u64,
    capacity: u32,
    head: u32,
    wrapped: bool,
    boots: u32,
}

fn check(capacity: u32, head: u32, wrapped: u32, boots: u32) -> u32 {
    RING_MAGIC ^ capacity ^ head ^ wrapped ^ boots ^ CHECK_SALT
}

impl<P: PhysMem> RamLog<P> {
    /// Take the ring at `[base, base + size)`. A valid header from a previous boot is kept (its
    /// contents readable with [`RamLog::read_back`]) and the boot count goes up; anything else is
    /// reinitialised empty. Returns the ring and whether a previous log was found.
    pub fn attach(mem: P, base: u64, size: u64) -> Result<(Self, bool), RingError> {
        if size <= HEADER_SIZE || size - HEADER_SIZE > u64::from(u32::MAX) {
            return Err(RingError::BadSize { size });
        }
        let capacity = (size - HEADER_SIZE) as u32;
        let mut h = [0u8; HEADER_SIZE as usize];
        mem.read(base, &mut h)?;
        let w = |i: usize| u32::from_le_bytes([h[4 * i], h[4 * i + 1], h[4 * i + 2], h[4 * i + 3]]);
        let (magic, version, cap, head, wrapped, boots, chk) = (w(0), w(1), w(2), w(3), w(4), w(5), w(6));
        let valid = magic == RING_MAGIC
            && version == RING_VERSION
            && cap == capacity
            && head < capacity
            && wrapped <= 1
            && chk == check(cap, head, wrapped, boots);
        let mut ring = if valid {
            RamLog { mem, base, capacity, head, wrapped: wrapped == 1, boots: boots.wrapping_add(1) }
        } else {
            RamLog { mem, base, capacity, head: 0, wrapped: false, boots: 0 }
        };
        ring.store_header()?;
        Ok((ring, valid))
    }

    fn store_header(&mut self) -> Result<(), RingError> {
        let wrapped = u32::from(self.wrapped);
        let words = [
            RING_MAGIC,
            RING_VERSION,
            self.capacity,
            self.head,
            wrapped,
            self.boots,
            check(self.capacity, self.head, wrapped, self.boots),
            0,
        ];
        let mut h = [0u8; HEADER_SIZE as usize];
        for (i, v) in words.iter().enumerate() {
            h[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
        }
        self.mem.write(self.base, &h)?;
        self.mem.clean_dcache(self.base, h.len());
        Ok(())
    }

    /// How many boots have found this ring valid before (0 on a fresh ring).
    pub fn boots(&self) -> u32 {
        self.boots
    }

    /// Bytes held (at most the capacity).
    pub fn len(&self) -> usize {
        if self.wrapped {
            self.capacity as usize
        } else {
            self.head as usize
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Append `bytes`, overwriting the oldest once full.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), RingError> {
        // Only the last `capacity` bytes can survive.
        let bytes = &bytes[bytes.len().saturating_sub(self.capacity as usize)..];
        let mut rest = bytes;
        while !rest.is_empty() {
            let room = (self.capacity - self.head) as usize;
            let n = room.min(rest.len());
            let pa = self.base + HEADER_SIZE + u64::from(self.head);
            self.mem.write(pa, &rest[..n])?;
            self.mem.clean_dcache(pa, n);
            self.head += n as u32;
            if self.head == self.capacity {
                self.head = 0;
                self.wrapped = true;
            }
            rest = &rest[n..];
        }
        self.store_header()
    }

    /// Copy the ring's contents, oldest first, into `out`; returns how many bytes were copied
    /// (the newest ones are dropped if `out` is short).
    pub fn read_back(&self, out: &mut [u8]) -> Result<usize, RingError> {
        let data = self.base + HEADER_SIZE;
        let (first, second) = if self.wrapped {
            ((self.head, self.capacity - self.head), (0, self.head))
        } else {
            ((0, self.head), (0, 0))
        };
        let mut n = 0usize;
        for (off, len) in [first, second] {
            let take = (len as usize).min(out.len() - n);
            self.mem.read(data + u64::from(off), &mut out[n..n + take])?;
            n += take;
        }
        Ok(n)
    }

    /// Forget the contents (keeps the boot count).
    pub fn clear(&mut self) -> Result<(), RingError> {
        self.head = 0;
        self.wrapped = false;
        self.store_header()
    }
}

/// `core::fmt::Write` so `write!` can target the ring; memory errors drop the text.
impl<P: PhysMem> core::fmt::Write for RamLog<P> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let _ = self.write(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;
    use std::cell::RefCell;
    use std::vec::Vec;

    /// RAM that survives "reboots" (the test re-attaches) and records cleans.
    struct Ram {
        base: u64,
        bytes: RefCell<Vec<u8>>,
        cleaned: RefCell<Vec<(u64, usize)>>,
    }
    impl PhysMem for &Ram {
        fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError> {
            let off = pa.checked_sub(self.base).ok_or(MemError::NotMemory { pa })? as usize;
            let b = self.bytes.borrow();
            buf.copy_from_slice(b.get(off..off + buf.len()).ok_or(MemError::NotMemory { pa })?);
            Ok(())
        }
        fn write(&self, pa: u64, data: &[u8]) -> Result<(), MemError> {
            let off = pa.checked_sub(self.base).ok_or(MemError::NotMemory { pa })? as usize;
            let mut b = self.bytes.borrow_mut();
            b.get_mut(off..off + data.len()).ok_or(MemError::NotMemory { pa })?.copy_from_slice(data);
            Ok(())
        }
        fn clean_dcache(&self, pa: u64, len: usize) {
            self.cleaned.borrow_mut().push((pa, len));
        }
    }

    fn ram(size: usize) -> Ram {
        Ram { base: SNOW_RING_BASE, bytes: RefCell::new(std::vec![0xEE; size]), cleaned: RefCell::new(Vec::new()) }
    }

    fn contents<P: PhysMem>(r: &RamLog<P>) -> Vec<u8> {
        let mut out = std::vec![0u8; r.len()];
        let n = r.read_back(&mut out).unwrap();
        out.truncate(n);
        out
    }

    #[test]
    fn survives_a_warm_reboot() {
        let m = ram(4096);
        let (mut r, found) = RamLog::attach(&m, SNOW_RING_BASE, 4096).unwrap();
        assert!(!found && r.is_empty());
        writeln!(r, "boot {}", 1).unwrap();
        assert!(m.cleaned.borrow().iter().any(|&(pa, _)| pa == SNOW_RING_BASE + HEADER_SIZE));
        // "Reboot": attach again over the same RAM.
        let (r2, found) = RamLog::attach(&m, SNOW_RING_BASE, 4096).unwrap();
        assert!(found);
        assert_eq!(r2.boots(), 1);
        assert_eq!(contents(&r2), b"boot 1\n");
    }

    #[test]
    fn wraps_keeping_the_newest_bytes() {
        let m = ram(32 + 10);
        let (mut r, _) = RamLog::attach(&m, SNOW_RING_BASE, 42).unwrap();
        r.write(b"0123456").unwrap();
        r.write(b"789abc").unwrap();
        assert_eq!(contents(&r), b"3456789abc");
        r.write(b"this is much longer than ten").unwrap();
        assert_eq!(contents(&r), b"er than ten"[1..]);
        let (r2, found) = RamLog::attach(&m, SNOW_RING_BASE, 42).unwrap();
        assert!(found);
        assert_eq!(contents(&r2), contents(&r));
        let mut short = [0u8; 4];
        assert_eq!(r2.read_back(&mut short), Ok(4));
        assert_eq!(&short, b"r th");
    }

    #[test]
    fn garbage_or_mismatched_header_starts_fresh() {
        let m = ram(4096);
        let (mut r, _) = RamLog::attach(&m, SNOW_RING_BASE, 4096).unwrap();
        r.write(b"x").unwrap();
        // Another size: not the same ring.
        let (r2, found) = RamLog::attach(&m, SNOW_RING_BASE, 2048).unwrap();
        assert!(!found && r2.is_empty());
        // Corrupt the head field: the check fails.
        m.bytes.borrow_mut()[12] ^= 1;
        let (r3, found) = RamLog::attach(&m, SNOW_RING_BASE, 2048).unwrap();
        assert!(!found && r3.is_empty());
        assert_eq!(RamLog::attach(&m, SNOW_RING_BASE, 32).err(), Some(RingError::BadSize { size: 32 }));
        assert!(matches!(RamLog::attach(&m, 0x1000, 4096), Err(RingError::Memory(_))));
    }
}
