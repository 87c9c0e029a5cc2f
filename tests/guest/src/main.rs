//! The xenith test guest: a tiny AArch64 EL1 kernel that boots as dom0 (on xenith or on real Xen),
//! runs the conformance table in `cases`, prints one line per case on the hypervisor console and
//! powers the domain off. With `bench` on its command line it runs the null-hypercall benchmark
//! instead.
//!
//! Boot contract: a raw arm64 Image, position independent (self-relocating), entered at EL1 with the
//! MMU off and x0 = DTB. It reads `/memory*` (its RAM banks) and `/chosen/bootargs` from the DTB,
//! identity-maps its RAM, and talks to the hypervisor only through hypercalls.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]
// The ARMv7-A build runs the shared part of the table: what only AArch64 uses is left unused.
#![cfg_attr(target_arch = "arm", allow(dead_code))]

#[cfg(all(target_os = "none", target_arch = "aarch64"))]
mod boot;
#[cfg(all(target_os = "none", target_arch = "aarch64"))]
mod abi;
#[cfg(all(target_os = "none", target_arch = "aarch64"))]
mod bench;
#[cfg(target_os = "none")]
mod cases;
#[cfg(target_os = "none")]
mod console;
#[cfg(all(target_os = "none", target_arch = "aarch64"))]
mod crash;
#[cfg(all(target_os = "none", target_arch = "aarch64"))]
mod cpu;
#[cfg(all(target_os = "none", target_arch = "aarch64"))]
mod dma_layer;
#[cfg(target_os = "none")]
mod edu;
#[cfg(target_os = "none")]
mod gicv2_poll;
#[cfg(all(target_os = "none", target_arch = "aarch64"))]
mod gicv3;
#[cfg(target_os = "none")]
mod heap;
#[cfg(all(target_os = "none", target_arch = "aarch64"))]
mod hostile;
#[cfg(target_os = "none")]
extern crate alloc;
#[cfg(target_os = "none")]
mod exceptions;
#[cfg(all(target_os = "none", target_arch = "aarch64"))]
mod exits;
mod fdt;
#[cfg(all(target_os = "none", target_arch = "aarch64"))]
mod mmu;
#[cfg(all(target_os = "none", target_arch = "aarch64"))]
mod noise;
#[cfg(all(target_os = "none", target_arch = "aarch64"))]
mod heartbeat;
#[cfg(target_os = "none")]
mod ops;
#[cfg(all(target_os = "none", target_arch = "aarch64"))]
mod toolstack;
#[cfg(all(target_os = "none", target_arch = "aarch64"))]
mod xdom;
#[cfg(all(target_os = "none", target_arch = "aarch64"))]
mod vsmmu;
#[cfg(target_os = "none")]
mod window;

// ARMv7-A: its own entry, stage 1 and kernel; the conformance rows shared with AArch64.
#[cfg(all(target_os = "none", target_arch = "arm"))]
#[path = "arm32/boot.rs"]
mod boot;
#[cfg(all(target_os = "none", target_arch = "arm"))]
#[path = "arm32/mmu.rs"]
mod mmu;
#[cfg(all(target_os = "none", target_arch = "arm"))]
#[path = "arm32/kernel.rs"]
mod kernel;
#[cfg(all(target_os = "none", target_arch = "arm"))]
#[path = "arm32/bench.rs"]
mod bench;
#[cfg(all(target_os = "none", target_arch = "arm"))]
#[path = "arm32/exits.rs"]
mod exits;
#[cfg(all(target_os = "none", target_arch = "arm"))]
#[path = "arm32/cases.rs"]
mod arm32_cases;

/// On the host only the pure parts (the DTB reader) are built, for their unit tests.
#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(all(target_os = "none", target_arch = "aarch64"))]
mod kernel {
    use crate::{bench, cases, exceptions, fdt, mmu, println};
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

    /// Called by `boot.rs` with the MMU off, on the BSS stack.
    #[no_mangle]
    extern "C" fn rust_entry(dtb: usize, image: usize) -> ! {
        // SAFETY: the boot protocol hands us a DTB address in x0.
        let info = match unsafe { fdt::read(dtb) } {
            Ok(info) => info,
            Err(e) => {
                println!("test-guest: cannot read the DTB at {dtb:#x}: {e:?}");
                stop(SHUTDOWN_CRASH);
            }
        };
        let image_end = core::ptr::addr_of!(_end) as u64;
        crate::heap::init();
        crate::gicv3::set_v2(info.gic_v2);
        // A dom0less domU writes its console to the emulated UART its DT names.
        let cpu_off = info.has_arg(b"domu-cpu-off");
        let domu = info.has_arg(b"domu") || cpu_off;
        let uart = info.uart.filter(|_| domu);
        if let Some(u) = uart {
            // SAFETY: boot CPU, before the MMU is enabled.
            unsafe { mmu::add_device(u.base, u.size.max(0x1000)) };
        }
        // The physical ITS (QEMU virt): an isolation case aims its command queue at the
        // hypervisor, which must not work.
        // SAFETY: boot CPU, before the MMU is enabled.
        unsafe { mmu::add_device(crate::cases::QEMU_VIRT_ITS, 0x1_0000) };
        // The host's GIC (dom0's own vGIC, at the host's addresses) and the other host
        // devices a domU probes (none of them its own).
        // SAFETY: boot CPU, before the MMU is enabled.
        unsafe {
            mmu::add_device(crate::gicv3::GICD, 0x20_0000);
            if domu && !cpu_off {
                crate::hostile::map_probes();
            }
        }
        // The per-exit benches raise edu's INTx when QEMU has one.
        let bench_mode = info.has_arg(b"bench") || info.has_arg(b"bench-exits") || info.has_arg(b"exits-short");
        let edu_mode = bench_mode || info.has_arg(b"edu") || info.has_arg(b"edu=unisolated") || info.has_arg(b"edu-bench") || info.has_arg(b"edu-dma") || info.has_arg(b"edu-nested");
        if let (true, Some(pci)) = (edu_mode, info.pci) {
            // SAFETY: boot CPU, before the MMU is enabled.
            unsafe {
                mmu::add_device(pci.ecam.base, 1 << 20);
                mmu::add_device(pci.mmio32.base, 1 << 20);
                // Both register pages (the event queue's indexes are in page 1).
                mmu::add_device(crate::edu::QEMU_VIRT_SMMU, 2 << 16);
            }
        }
        // SAFETY: boot CPU, MMU off, first and only call.
        if let Err(e) = unsafe { mmu::enable(info.banks(), image as u64, image_end) } {
            println!("test-guest: cannot build the page tables: {e:?}");
            stop(SHUTDOWN_CRASH);
        }
        exceptions::clear();
        if let Some(u) = uart {
            crate::console::use_uart(u.base as usize);
        }
        println!("test-guest: image at {image:#x}..{image_end:#x}, DTB at {dtb:#x}");
        for b in info.banks() {
            println!("test-guest: RAM {:#x}..{:#x}", b.base, b.base + b.size);
        }
        if info.in_ram(mmu::DEVICE_HOLE_IPA, 4) {
            println!("test-guest: warning: the stage-2 hole {:#x} is inside RAM", mmu::DEVICE_HOLE_IPA);
        }
        let args = core::str::from_utf8(info.bootargs()).unwrap_or("?");
        println!("test-guest: bootargs \"{args}\"");

        let crash = crate::crash::kind(&info).filter(|_| domu);
        if cpu_off {
            crate::hostile::cpu_off_last_vcpu();
        } else if let Some(kind) = crash {
            crate::crash::run(kind);
        } else if domu && info.has_arg(b"heartbeat") {
            crate::heartbeat::domu(crate::heartbeat::PERIOD_MS);
        } else if domu && info.has_arg(b"heartbeat-slow") {
            crate::heartbeat::domu(crate::heartbeat::SLOW_PERIOD_MS);
        } else if domu && (info.has_arg(b"noise-busy") || info.has_arg(b"noise-idle")) {
            crate::noise::domu(info.has_arg(b"noise-busy"));
        } else if domu {
            crate::xdom::run_domu();
        } else if info.has_arg(b"edu-bench") {
            crate::edu::bench(info.pci);
        } else if info.has_arg(b"bench-noise") {
            crate::noise::run();
        } else if info.has_arg(b"exits-short") {
            crate::exits::run(info.pci, true);
        } else if info.has_arg(b"bench-exits") {
            // The quick subset: the null hypercall and one exit of each kind.
            bench::null_hypercall();
            crate::exits::run(info.pci, false);
        } else if info.has_arg(b"bench") {
            bench::run();
            crate::exits::run(info.pci, false);
        } else if info.has_arg(b"edu-nested") {
            // dom0 with an emulated SMMU is told it is not direct-mapped (a deliberate
            // difference from Xen's dom0 answers): only the nested-translation checks.
            let (mut passed, mut failed) = (0, 0);
            crate::vsmmu::run(info.pci, info.banks(), &mut passed, &mut failed);
            println!("{passed} passed, {failed} failed");
        } else if info.has_arg(b"cpu-cases") {
            // Only what the CPU looks like (the conformance run on other CPU models).
            let (passed, failed) = cases::run_table("", crate::cpu::CPU_CASES.iter());
            println!("{passed} passed, {failed} failed");
        } else {
            let (mut passed, mut failed) = cases::run_all();
            let (p, f) = cases::run_table("", crate::abi::DOM0_ONLY_CASES.iter());
            passed += p;
            failed += f;
            if info.has_arg(b"domu-peer") {
                crate::xdom::run_dom0_side(info.banks(), &mut passed, &mut failed);
            }
            if info.has_arg(b"edu-dma") {
                match info.pci.and_then(|p| crate::edu::Edu::find(&p)) {
                    Some(edu) => crate::dma_layer::run(&edu, info.banks(), &mut passed, &mut failed),
                    None => {
                        println!("fail dma_layer: no edu device");
                        failed += 1;
                    }
                }
            }
            if info.has_arg(b"edu") || info.has_arg(b"edu=unisolated") {
                let isolated = !info.has_arg(b"edu=unisolated");
                crate::edu::run(info.pci, isolated, &mut passed, &mut failed);
                crate::edu::smmu_visibility(info.smmu, isolated, &mut passed, &mut failed);
            }
            println!("{passed} passed, {failed} failed");
        }
        stop(SHUTDOWN_POWEROFF);
    }

    #[panic_handler]
    fn panic(p: &core::panic::PanicInfo) -> ! {
        println!("test-guest: panic: {p}");
        stop(SHUTDOWN_CRASH);
    }
}
