//! The guest's heap (the dom0 DMA layer allocates its bookkeeping and bounce pool from it): a
//! buddy allocator over a static region of the image, so it lies in the guest's first RAM.

use buddy_system_allocator::LockedHeap;

const HEAP_SIZE: usize = 2 << 20;

#[repr(C, align(4096))]
struct Space([u8; HEAP_SIZE]);

static mut SPACE: Space = Space([0; HEAP_SIZE]);

#[global_allocator]
static HEAP: LockedHeap<32> = LockedHeap::empty();

/// Hand the region to the allocator; once, before any allocation.
pub fn init() {
    // SAFETY: called once at boot; the region belongs to the allocator from now on.
    unsafe { HEAP.lock().init(core::ptr::addr_of_mut!(SPACE) as usize, HEAP_SIZE) };
}
