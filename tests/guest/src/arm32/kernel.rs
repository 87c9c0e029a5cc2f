//! The test guest's kernel on ARMv7-A: reads the DTB, maps its RAM, runs the part of the
//! conformance table that is the same on both architectures (the rows that need no AArch64
//! instruction or register), prints one line per case and powers the domain off. With `bench`
//! on its command line it runs the null-hypercall and per-exit benchmarks instead.

use crate::{cases, fdt, mmu, println};
use guest_abi::guest;
use guest_abi::sched::{SHUTDOWN_CRASH, SHUTDOWN_POWEROFF};

extern "C" {
    static _end: u8;
}

fn stop(reason: u32) -> ! {
    loop {
        guest::shutdown(reason);
        core::hint::spin_loop();
    }
}

/// Called by `arm32/boot.rs` with the MMU off, on the BSS stack.
#[no_mangle]
extern "C" fn rust_entry(dtb: usize, image: usize) -> ! {
    // SAFETY: the boot protocol hands us a DTB address in r2.
    let info = match unsafe { fdt::read(dtb) } {
        Ok(info) => info,
        Err(e) => {
            println!("test-guest: cannot read the DTB at {dtb:#x}: {e:?}");
            stop(SHUTDOWN_CRASH);
        }
    };
    let image_end = core::ptr::addr_of!(_end) as u64;
    let bench = info.has_arg(b"bench");
    crate::heap::init();
    if bench {
        // SAFETY: boot CPU, before `mmu::enable`.
        unsafe {
            mmu::add_device(crate::exits::GIC_BLOCK.0, crate::exits::GIC_BLOCK.1);
            // The SPI bench's edu device: bus 0's config space and its BAR0 (1 MiB at the
            // start of the 32-bit window).
            if let Some(p) = &info.pci {
                mmu::add_device(p.ecam.base, p.ecam.size.min(1 << 20));
                mmu::add_device(p.mmio32.base, 1 << 20);
            }
        }
    }
    // SAFETY: boot CPU, MMU off, first and only call.
    if let Err(e) = unsafe { mmu::enable(info.banks(), image as u64, image_end) } {
        println!("test-guest: cannot build the page tables: {e:?}");
        stop(SHUTDOWN_CRASH);
    }
    crate::exceptions::clear();
    println!("test-guest: ARMv7-A, image at {image:#x}..{image_end:#x}, DTB at {dtb:#x}");
    for b in info.banks() {
        println!("test-guest: RAM {:#x}..{:#x}", b.base, b.base + b.size);
    }
    let args = core::str::from_utf8(info.bootargs()).unwrap_or("?");
    println!("test-guest: bootargs \"{args}\"");
    if bench {
        crate::bench::run();
        crate::exits::run(info.pci);
        stop(SHUTDOWN_POWEROFF);
    }
    let (passed, failed) = cases::run_all();
    println!("{passed} passed, {failed} failed");
    stop(SHUTDOWN_POWEROFF);
}

#[panic_handler]
fn panic(p: &core::panic::PanicInfo) -> ! {
    println!("test-guest: panic: {p}");
    stop(SHUTDOWN_CRASH);
}
