//! The hypervisor heap: a buddy allocator over a static region in the image's BSS.

use crate::sync::SpinMutex;
use buddy_system_allocator::Heap;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

/// Heap size: DT copies, the dom0 DT, p2m bookkeeping, grant/event state.
pub const HEAP_SIZE: usize = 8 * 1024 * 1024;

#[repr(C, align(4096))]
struct HeapSpace([u8; HEAP_SIZE]);

static mut HEAP_SPACE: HeapSpace = HeapSpace([0; HEAP_SIZE]);

/// The buddy allocator behind the hypervisor's own lock (whose waiting yields: see `sync`).
struct LockedHeap(SpinMutex<Heap<32>>);

impl LockedHeap {
    fn lock(&self) -> crate::sync::SpinMutexGuard<'_, Heap<32>> {
        self.0.lock()
    }
}

// SAFETY: allocation and release go to the buddy allocator under its lock; it hands out
// blocks of at least `layout`'s size and alignment and takes back only what it gave.
unsafe impl GlobalAlloc for LockedHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0.lock().alloc(layout).map_or(core::ptr::null_mut(), NonNull::as_ptr)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: `ptr` came from `alloc` with this `layout` (GlobalAlloc's contract).
            unsafe { self.0.lock().dealloc(p, layout) }
        }
    }
}

#[global_allocator]
static HEAP: LockedHeap = LockedHeap(SpinMutex::new(Heap::empty()));

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
