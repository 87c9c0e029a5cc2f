//! The device's own architecture DMA ops, which every Xen-aware implementation keeps underneath
//! and delegates to (wrapping, not replacing): cache maintenance for non-coherent devices and
//! allocation of coherent memory. Memory contents are reached through [`platform::PhysMem`].

use crate::types::{Direction, PhysAddr};
pub use platform::{MemError, PhysMem};

/// What the architecture (and this device's coherency) provides.
///
/// Methods take `&self`: the ops of several devices share one machine. A bare-metal embedder
/// implements this with cache-maintenance instructions by VA on an identity map; the host tests
/// use [`crate::sim::SimArch`].
pub trait ArchDmaOps: PhysMem {
    /// Does the device snoop the CPU caches? When true the sync calls are not made.
    fn coherent(&self) -> bool;

    /// Make `[pa, pa+size)` ready for the device (clean for to-device, clean+invalidate otherwise).
    fn sync_for_device(&self, pa: PhysAddr, size: usize, dir: Direction);

    /// Make `[pa, pa+size)` ready for the CPU after the device wrote it (invalidate).
    fn sync_for_cpu(&self, pa: PhysAddr, size: usize, dir: Direction);

    /// Allocate `size` bytes (page multiple) of zeroed memory suitable for coherent DMA
    /// (non-cacheable or coherent), page-aligned. `None` when out of memory.
    fn alloc_coherent(&self, size: usize) -> Option<PhysAddr>;

    /// Free memory from `alloc_coherent`.
    fn free_coherent(&self, pa: PhysAddr, size: usize);

    /// Allocate `size` bytes of zeroed, `align`-aligned normal memory (page tables, bounce pools).
    fn alloc_pages(&self, size: usize, align: usize) -> Option<PhysAddr>;

    /// Free memory from `alloc_pages`.
    fn free_pages(&self, pa: PhysAddr, size: usize);

    /// Copy `len` bytes between two physical ranges (bounce copies). The default goes through
    /// a stack buffer; an identity-mapped embedder overrides it with one `memcpy`.
    fn copy_phys(&self, dst: PhysAddr, src: PhysAddr, len: usize) -> Result<(), MemError> {
        let mut buf = [0u8; 256];
        let mut done = 0usize;
        while done < len {
            let n = core::cmp::min(buf.len(), len - done);
            self.read(src + done as u64, &mut buf[..n])?;
            self.write(dst + done as u64, &buf[..n])?;
            done += n;
        }
        Ok(())
    }
}

/// What to do with the cache for a sync in the given direction (for implementations that
/// map sync onto clean/invalidate instructions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOp {
    Clean,
    Invalidate,
    CleanInvalidate,
}

impl CacheOp {
    /// Cache op before the device accesses memory.
    pub fn for_device(dir: Direction) -> CacheOp {
        match dir {
            Direction::ToDevice => CacheOp::Clean,
            // Clean too, so dirty lines cannot be evicted over the device's data later.
            Direction::FromDevice | Direction::Bidirectional => CacheOp::CleanInvalidate,
        }
    }
    /// Cache op after the device accessed memory, before the CPU reads (None for to-device).
    pub fn for_cpu(dir: Direction) -> Option<CacheOp> {
        match dir {
            Direction::ToDevice => None,
            Direction::FromDevice | Direction::Bidirectional => Some(CacheOp::Invalidate),
        }
    }
}
