//! The hypervisor heap: a buddy allocator over a static region in the image's BSS.

use buddy_system_allocator::LockedHeap;

/// Heap size: DT copies, the dom0 DT, p2m bookkeeping, grant/event state.
pub const HEAP_SIZE: usize = 8 * 1024 * 1024;

#[repr(C, align(4096))]
struct HeapSpace([u8; HEAP_SIZE]);

static mut HEAP_SPACE: HeapSpace = HeapSpace([0; HEAP_SIZE]);

#[global_allocator]
static HEAP: LockedHeap<32> = LockedHeap::empty();

pub fn init() {
    // SAFETY: called once on the boot CPU before any allocation; the region is ours alone.
    unsafe {
        let start = (&raw mut HEAP_SPACE) as usize;
        HEAP.lock().init(start, HEAP_SIZE);
    }
}

/// Add `[start, start + size)` to the heap.
///
/// # Safety
/// The range is RAM that nothing else uses, now or later (taken from the frame pool for good),
/// mapped Normal at EL2.
pub unsafe fn grow(start: usize, size: usize) {
    // SAFETY: forwarded contract.
    unsafe { HEAP.lock().add_to_heap(start, start + size) };
}

/// Bytes allocated / total, for the boot log.
pub fn usage() -> (usize, usize) {
    let h = HEAP.lock();
    (h.stats_alloc_actual(), h.stats_total_bytes())
}
