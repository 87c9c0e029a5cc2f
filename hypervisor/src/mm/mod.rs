//! Memory: physical frame/region allocation and the stage-2 (p2m) page tables.
//!
//! Everything here is pure logic over [`PhysMem`](platform::PhysMem) (table memory),
//! [`FrameAlloc`] (where table frames come from) and [`TlbOps`] (TLB maintenance), so it is
//! unit-tested on the host against a Vec-backed memory and a recording TLB.

pub mod p2m;
pub mod region;
#[cfg(test)]
pub(crate) mod testmem;

pub use p2m::{P2mError, S2Attr, S2Leaf, S2MemType, S2Translation, Stage2, Stage2Config};
pub use region::{RegionAllocator, RegionError};

/// Size of a translation granule / frame: 4 KiB.
pub const PAGE_SIZE: u64 = 4096;
/// log2(PAGE_SIZE).
pub const PAGE_SHIFT: u32 = 12;

/// A source of 4 KiB physical frames for page tables.
///
/// **Zeroing:** frames are returned with *unspecified* contents. Whoever uses a frame as a
/// table (the p2m code) zeroes it through `PhysMem` before linking it, so an allocator never
/// needs to touch the memory it hands out (and a test allocator need not zero anything).
pub trait FrameAlloc {
    /// A free 4 KiB-aligned frame's physical address, or `None` when out of frames.
    fn alloc_frame(&mut self) -> Option<u64>;

    /// Give back a frame obtained from [`alloc_frame`](Self::alloc_frame) (or one frame of an
    /// [`alloc_frames`](Self::alloc_frames) block). Frames the allocator does not recognise are
    /// ignored: this must not panic.
    fn free_frame(&mut self, pa: u64);

    /// `count` physically contiguous frames, aligned to `count * 4 KiB` (`count` a power of
    /// two): used for concatenated stage-2 root tables. The default only serves `count == 1`.
    fn alloc_frames(&mut self, count: usize) -> Option<u64> {
        if count == 1 {
            self.alloc_frame()
        } else {
            None
        }
    }

    /// Give back a block from [`alloc_frames`](Self::alloc_frames). The default frees each frame.
    fn free_frames(&mut self, pa: u64, count: usize) {
        for i in 0..count as u64 {
            self.free_frame(pa + i * PAGE_SIZE);
        }
    }
}

/// Stage-2 TLB maintenance, implemented by the arch layer; tests use a recording double.
///
/// Contract for implementations (AArch64):
/// - Each call must first make prior table writes visible to the table walker
///   (`DSB ISHST`), then issue the invalidation, broadcast inner-shareable.
/// - [`invalidate_ipa`](Self::invalidate_ipa) removes every cached entry used to translate
///   `ipa` for `vmid` **at all levels** (leaf and walk-cache): `TLBI IPAS2E1IS` (not the
///   last-level-only `IPAS2LE1IS`, since table descriptors are removed too), and, because
///   combined stage-1+2 entries are not tagged by IPA, a following `TLBI VMALLE1IS` for
///   that VMID before the final sync. One call covers a whole block: callers pass any IPA
///   inside the replaced entry (they pass its base).
/// - [`invalidate_vmid`](Self::invalidate_vmid): everything for the VMID (`TLBI VMALLS12E1IS`).
/// - [`sync`](Self::sync): `DSB ISH` — wait until prior invalidations complete everywhere,
///   and order prior table writes before later ones (the p2m code also uses it as the
///   barrier between filling a new table and linking it).
///
/// The invalidating calls run with the target VMID in `VTTBR_EL2`, which the implementation
/// switches to (and back) if needed.
pub trait TlbOps {
    fn invalidate_ipa(&mut self, vmid: u16, ipa: u64);
    fn invalidate_vmid(&mut self, vmid: u16);
    fn sync(&mut self);
    /// `[ipa, ipa + size)` of `vmid`'s p2m changed: it now maps RAM at `now` = (PA, writable),
    /// or nothing a device may reach (unmapped, or not RAM). For IOMMUs that walk a shadow of
    /// the p2m rather than the p2m itself (the Exynos SysMMUs): called after the change and
    /// before the p2m call returns, so a page given back is out of the shadow before it is
    /// reused. Nothing to do for walkers that share the tables.
    fn p2m_changed(&mut self, _vmid: u16, _ipa: u64, _size: u64, _now: Option<(u64, bool)>) {}
}
