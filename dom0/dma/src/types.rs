//! The vocabulary shared by every DMA implementation: addresses, directions, attributes and
//! the errors a mapping call can return.

use core::fmt;

/// A physical address as dom0 sees it (a guest-physical address; equal to the machine
/// address for dom0's own RAM when dom0 is direct-mapped).
pub type PhysAddr = u64;
/// An address as the device puts it on the bus (phys, machine address, IOVA or grant address).
pub type DmaAddr = u64;
/// A Xen domain id.
pub type DomId = u16;
/// A grant reference.
pub type GrantRef = u32;

/// Xen's page size: grants, cache_flush and the p2m all work in 4 KiB frames.
pub const XEN_PAGE_SHIFT: u32 = 12;
/// Xen's page size in bytes.
pub const XEN_PAGE_SIZE: u64 = 1 << XEN_PAGE_SHIFT;

/// Which way the data moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// The device reads and writes.
    #[default]
    Bidirectional,
    /// The device reads (CPU -> device).
    ToDevice,
    /// The device writes (device -> CPU).
    FromDevice,
}

impl Direction {
    /// Does the device read the buffer (so CPU data must reach it before DMA)?
    pub fn device_reads(self) -> bool {
        matches!(self, Direction::Bidirectional | Direction::ToDevice)
    }
    /// Does the device write the buffer (so the CPU must see device data after DMA)?
    pub fn device_writes(self) -> bool {
        matches!(self, Direction::Bidirectional | Direction::FromDevice)
    }
}

/// Mapping attributes (a bit set).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DmaAttrs(pub u32);

impl DmaAttrs {
    /// No attributes.
    pub const NONE: DmaAttrs = DmaAttrs(0);
    /// The caller does the CPU/device syncs itself: map and unmap skip them.
    pub const SKIP_CPU_SYNC: DmaAttrs = DmaAttrs(1 << 0);

    /// Is every bit of `other` set?
    pub fn contains(self, other: DmaAttrs) -> bool {
        self.0 & other.0 == other.0
    }
}

impl core::ops::BitOr for DmaAttrs {
    type Output = DmaAttrs;
    fn bitor(self, rhs: DmaAttrs) -> DmaAttrs {
        DmaAttrs(self.0 | rhs.0)
    }
}

/// A coherent allocation: CPU-side physical address, device-side DMA address and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoherentBuf {
    pub phys: PhysAddr,
    pub dma: DmaAddr,
    pub size: usize,
}

/// One scatter-gather entry: the caller fills `phys` and `len`; `map_sg` fills `dma` and `dma_len`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SgEntry {
    pub phys: PhysAddr,
    pub len: usize,
    pub dma: DmaAddr,
    pub dma_len: usize,
}

impl SgEntry {
    /// An unmapped entry for `len` bytes at `phys`.
    pub fn new(phys: PhysAddr, len: usize) -> SgEntry {
        SgEntry { phys, len, dma: 0, dma_len: 0 }
    }
}

/// Why a DMA operation failed. Every consistency problem is one of these, never a panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaError {
    /// A zero-length mapping or allocation.
    ZeroSize,
    /// Unmap or sync of an address that is not mapped (and was not recently unmapped).
    NotMapped { dma: DmaAddr },
    /// Unmap of an address that was mapped and has already been unmapped.
    DoubleUnmap { dma: DmaAddr },
    /// Unmap or sync with a size that is not the mapping's size.
    SizeMismatch { dma: DmaAddr, mapped: usize, requested: usize },
    /// The device cannot address `[addr, addr + size)` with its DMA mask.
    MaskExceeded { addr: DmaAddr, size: usize, mask: u64 },
    /// map_resource was asked to map RAM; it is for MMIO only.
    ResourceIsRam { phys: PhysAddr, size: usize },
    /// The mapping is larger than this implementation can map at once.
    TooLarge { size: usize, max: usize },
    /// The swiotlb bounce pool has no room for `size` bytes.
    BounceFull { size: usize },
    /// No IOVA (or grant reference) range of `size` bytes is free below the device's mask.
    IovaExhausted { size: usize },
    /// Memory for a coherent buffer or a page table could not be allocated.
    OutOfMemory { size: usize },
    /// The IO page table refused the operation.
    Iommu(IommuError),
    /// A hypercall failed with this Xen errno (negative).
    Hypercall { op: &'static str, errno: i32 },
    /// A grant operation returned this GNTST_* status (negative).
    Grant { op: &'static str, status: i16 },
    /// The IOVA allocator and the IO page table disagree (a bug this layer caught).
    Inconsistent { dma: DmaAddr, what: &'static str },
    /// A physical-memory access failed (bounce copy to or from memory that is not there).
    Memory { pa: PhysAddr },
    /// This implementation cannot do this for this device.
    Unsupported { what: &'static str },
}

impl fmt::Display for DmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DmaError::ZeroSize => write!(f, "zero-length DMA request"),
            DmaError::NotMapped { dma } => write!(f, "DMA address {dma:#x} is not mapped"),
            DmaError::DoubleUnmap { dma } => write!(f, "DMA address {dma:#x} was already unmapped"),
            DmaError::SizeMismatch { dma, mapped, requested } => write!(
                f,
                "DMA address {dma:#x} was mapped with size {mapped:#x}, unmapped/synced with size {requested:#x}"
            ),
            DmaError::MaskExceeded { addr, size, mask } => write!(
                f,
                "[{addr:#x}, +{size:#x}) is beyond the device's DMA mask {mask:#x}"
            ),
            DmaError::ResourceIsRam { phys, size } => write!(
                f,
                "map_resource of [{phys:#x}, +{size:#x}) refused: it is RAM; map_resource is for MMIO only (use map_page)"
            ),
            DmaError::TooLarge { size, max } => write!(f, "mapping of {size:#x} bytes exceeds the maximum {max:#x}"),
            DmaError::BounceFull { size } => write!(f, "swiotlb bounce pool has no room for {size:#x} bytes"),
            DmaError::IovaExhausted { size } => write!(f, "no free IOVA range of {size:#x} bytes below the DMA mask"),
            DmaError::OutOfMemory { size } => write!(f, "out of memory allocating {size:#x} bytes"),
            DmaError::Iommu(e) => write!(f, "IO page table: {e}"),
            DmaError::Hypercall { op, errno } => write!(f, "hypercall {op} failed: errno {errno}"),
            DmaError::Grant { op, status } => write!(f, "grant op {op} failed: status {status}"),
            DmaError::Inconsistent { dma, what } => write!(f, "internal inconsistency at {dma:#x}: {what}"),
            DmaError::Memory { pa } => write!(f, "no memory at physical address {pa:#x}"),
            DmaError::Unsupported { what } => write!(f, "unsupported: {what}"),
        }
    }
}

/// Why an IO page-table operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IommuError {
    /// The address or size is not aligned to the smallest page size.
    Misaligned { iova: u64, pa: u64, size: usize },
    /// The IOVA is beyond the table's input range, or the PA beyond its output range.
    OutOfRange { addr: u64 },
    /// Part of the range is already mapped.
    AlreadyMapped { iova: u64 },
    /// Part of the range is not mapped.
    NotMapped { iova: u64 },
    /// The unmap would split a larger block mapping.
    PartialBlock { iova: u64 },
    /// A table could not be allocated.
    NoMemory,
    /// The table memory could not be read or written.
    Memory { pa: u64 },
}

impl fmt::Display for IommuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IommuError::Misaligned { iova, pa, size } => {
                write!(f, "misaligned mapping iova {iova:#x} pa {pa:#x} size {size:#x}")
            }
            IommuError::OutOfRange { addr } => write!(f, "address {addr:#x} out of the table's range"),
            IommuError::AlreadyMapped { iova } => write!(f, "iova {iova:#x} already mapped"),
            IommuError::NotMapped { iova } => write!(f, "iova {iova:#x} not mapped"),
            IommuError::PartialBlock { iova } => write!(f, "unmap at {iova:#x} would split a block mapping"),
            IommuError::NoMemory => write!(f, "out of memory for page tables"),
            IommuError::Memory { pa } => write!(f, "page-table memory at {pa:#x} inaccessible"),
        }
    }
}

impl From<IommuError> for DmaError {
    fn from(e: IommuError) -> DmaError {
        DmaError::Iommu(e)
    }
}

/// Round `x` up to a multiple of the power of two `a`.
#[inline]
pub(crate) fn align_up(x: u64, a: u64) -> u64 {
    (x + a - 1) & !(a - 1)
}

/// Is `[addr, addr + size)` addressable under `mask` (inclusive limit)?
#[inline]
pub fn dma_capable(addr: DmaAddr, size: usize, mask: u64) -> bool {
    size != 0 && addr <= mask && (size as u64 - 1) <= mask - addr
}
