//! Hardware-access traits: registers ([`Mmio`]), physical memory ([`PhysMem`]), time ([`Clock`]).

/// A block of device registers. Offsets are in bytes from the block's base.
///
/// Methods take `&self`: registers are shared, side-effecting state, not Rust-owned memory.
pub trait Mmio {
    fn read32(&self, offset: usize) -> u32;
    fn write32(&self, offset: usize, value: u32);
    fn read64(&self, offset: usize) -> u64 {
        u64::from(self.read32(offset)) | (u64::from(self.read32(offset + 4)) << 32)
    }
    fn write64(&self, offset: usize, value: u64) {
        self.write32(offset, value as u32);
        self.write32(offset + 4, (value >> 32) as u32);
    }
}

/// Why a physical-memory access failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemError {
    /// No memory at this physical address (or the range runs past its end).
    NotMemory { pa: u64 },
}

impl core::fmt::Display for MemError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MemError::NotMemory { pa } => write!(f, "no memory at physical address {pa:#x}"),
        }
    }
}

/// Physical memory as the hypervisor (and a DMA-capable walker) sees it. Little-endian.
pub trait PhysMem {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError>;
    fn write(&self, pa: u64, data: &[u8]) -> Result<(), MemError>;

    /// Make CPU writes to `[pa, pa + len)` visible to a non-coherent observer (a table walker
    /// that does not snoop the CPU caches): clean to the point of coherency. A no-op on
    /// coherent systems; models use it to catch missing cleans.
    fn clean_dcache(&self, pa: u64, len: usize) {
        let _ = (pa, len);
    }

    /// Zero `[pa, pa + len)` (a page given to a domain, a fresh table), cleaned to the point
    /// of coherency: a page a domain is given reads as zeros even through a non-cacheable
    /// mapping or with its MMU off, never as what a previous owner left in RAM beneath the
    /// cache (Xen cleans every page it allocates). The default writes a zeroed buffer a chunk
    /// at a time, then cleans; the hardware implementation zeroes whole cache blocks per
    /// instruction.
    fn zero(&self, pa: u64, len: u64) -> Result<(), MemError> {
        const ZEROS: [u8; 512] = [0; 512];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(ZEROS.len() as u64);
            self.write(pa.checked_add(done).ok_or(MemError::NotMemory { pa })?, &ZEROS[..n as usize])?;
            done += n;
        }
        self.clean_dcache(pa, len as usize);
        Ok(())
    }

    fn read_u32(&self, pa: u64) -> Result<u32, MemError> {
        let mut b = [0u8; 4];
        self.read(pa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn write_u32(&self, pa: u64, v: u32) -> Result<(), MemError> {
        self.write(pa, &v.to_le_bytes())
    }
    fn read_u64(&self, pa: u64) -> Result<u64, MemError> {
        let mut b = [0u8; 8];
        self.read(pa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn write_u64(&self, pa: u64, v: u64) -> Result<(), MemError> {
        self.write(pa, &v.to_le_bytes())
    }
    /// Atomically OR `bits` into the 64-bit word at `pa` (8-byte aligned) and return its old
    /// value: for words another CPU updates concurrently (event-channel bitmaps a guest shares
    /// with the hypervisor). The default is a plain read-modify-write, enough for models.
    fn fetch_or_u64(&self, pa: u64, bits: u64) -> Result<u64, MemError> {
        let old = self.read_u64(pa)?;
        self.write_u64(pa, old | bits)?;
        Ok(old)
    }
    /// Atomically AND `bits` into the 64-bit word at `pa`; returns the old value.
    fn fetch_and_u64(&self, pa: u64, bits: u64) -> Result<u64, MemError> {
        let old = self.read_u64(pa)?;
        self.write_u64(pa, old & bits)?;
        Ok(old)
    }
    /// Atomically replace the 64-bit word at `pa` (8-byte aligned) with `new` if it holds
    /// `current`: `Ok(current)` when it did, `Err(actual)` with what it held otherwise.
    fn compare_exchange_u64(&self, pa: u64, current: u64, new: u64) -> Result<Result<u64, u64>, MemError> {
        let old = self.read_u64(pa)?;
        if old != current {
            return Ok(Err(old));
        }
        self.write_u64(pa, new)?;
        Ok(Ok(old))
    }
}

/// A monotonic clock, for bounded polling (timeouts) in drivers.
pub trait Clock {
    /// Nanoseconds since an arbitrary origin; never goes backwards.
    fn now_ns(&self) -> u64;
}

/// Registers reached through a raw physical (identity-mapped) address: the hardware
/// implementation of [`Mmio`].
#[derive(Clone, Copy, Debug)]
pub struct RawMmio {
    base: usize,
}

impl RawMmio {
    /// # Safety
    /// `base` must be the address of a device register block that is mapped as Device memory
    /// for as long as the returned value is used, and that nothing else drives concurrently.
    pub const unsafe fn new(base: usize) -> Self {
        Self { base }
    }
    pub fn base(&self) -> usize {
        self.base
    }
}

impl Mmio for RawMmio {
    fn read32(&self, offset: usize) -> u32 {
        // SAFETY: `new`'s contract: base..base+offset is a mapped register block.
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u32) }
    }
    fn write32(&self, offset: usize, value: u32) {
        // SAFETY: as for `read32`.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u32, value) }
    }
    fn read64(&self, offset: usize) -> u64 {
        // SAFETY: as for `read32`.
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u64) }
    }
    fn write64(&self, offset: usize, value: u64) {
        // SAFETY: as for `read32`.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u64, value) }
    }
}

/// A serial port the hypervisor logs to.
pub trait Uart: Send + Sync {
    /// Send one byte, waiting (bounded) for room.
    fn put(&self, byte: u8);
    /// A received byte, if one is waiting.
    fn get(&self) -> Option<u8>;
}
