//! The boot CPU's path from the entry code to dom0: MMU, heap, console, the host DT, the boot
//! plan (`crate::boot`), dom0's layout, DT and stage 2, then guest entry. Any reason to stop is
//! printed, then the machine is powered off.

use super::{heap, mmu, psci};
use crate::boot::{self, Console};
use crate::dt::{HostDt, Region};
use crate::log;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use platform::qemu_virt::pl011::Pl011;
use platform::RawMmio;
use crate::sync::Once;

/// Where to log before the DT names the console (QEMU virt's PL011), like Xen's early printk.
const EARLY_UART: u64 = 0x0900_0000;
/// Largest host DTB accepted.
const MAX_DTB: usize = 2 << 20;

static EARLY: Once<Pl011<RawMmio>> = Once::new();
static CONSOLE_UART: Once<Pl011<RawMmio>> = Once::new();

extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

#[no_mangle]
extern "C" fn xenith_boot_hyp(dtb_pa: u32) -> ! {
    mmu::enable_boot_map();
    super::smp::init_boot_cpu();
    heap::init();
    // SAFETY: QEMU virt's PL011, identity-mapped as Device memory by the boot map.
    let early = EARLY.call_once(|| Pl011::new(unsafe { RawMmio::new(EARLY_UART as usize) }));
    crate::console::set_uart(early);
    psci::set_conduit(psci::Conduit::Smc);
    log!("xenith {} — Xen {}.{} guest ABI — ARMv7-A HYP mode (MIDR {:#010x}), DTB at {dtb_pa:#x}", env!("CARGO_PKG_VERSION"),
        crate::hypercall::version::XEN_MAJOR, crate::hypercall::version::XEN_MINOR, super::regs::Midr::read());
    match boot(u64::from(dtb_pa)) {
        Ok(()) => {
            log!("xenith: returned from guest entry: powering off");
            psci::system_off()
        }
        Err(why) => {
            log!("{why}");
            log!("xenith: cannot continue: powering off");
            psci::system_off();
        }
    }
}

/// Read the host DTB at `pa`: checks the header before trusting `totalsize`.
fn host_dt(pa: u64) -> Result<HostDt, String> {
    let hint = "r2 must hold the DTB's address (the zImage boot protocol)";
    if pa == 0 || pa % 8 != 0 {
        return Err(format!("no usable device tree at {pa:#x}: {hint}"));
    }
    let Some(va) = mmu::va_of(pa, 8) else { return Err(format!("no usable device tree at {pa:#x}: above 4 GiB")) };
    let mut head = [0u8; 8];
    // SAFETY: reads 8 bytes of the identity-mapped physical address the loader gave in r2.
    unsafe { core::ptr::copy_nonoverlapping(va as *const u8, head.as_mut_ptr(), 8) };
    let magic = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let size = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
    if magic != 0xd00d_feed {
        return Err(format!("no usable device tree at {pa:#x}: magic {magic:#010x}, not 0xd00dfeed; {hint}"));
    }
    if !(40..=MAX_DTB).contains(&size) || mmu::va_of(pa, size as u64).is_none() {
        return Err(format!("no usable device tree at {pa:#x}: totalsize {size} is outside 40..={MAX_DTB}"));
    }
    // SAFETY: the header says the blob is `size` bytes (bounded above); it lies in RAM the
    // loader wrote, identity-mapped.
    let blob = unsafe { core::slice::from_raw_parts(va as *const u8, size) };
    HostDt::parse(blob).map_err(|e| format!("no usable device tree at {pa:#x}: {e}"))
}

fn mib(b: u64) -> u64 {
    b >> 20
}

fn boot(dtb_pa: u64) -> Result<(), String> {
    let dt = host_dt(dtb_pa)?;
    let info = dt.boot_info().map_err(|e| format!("device tree at {dtb_pa:#x}: {e}"))?;
    for w in &info.warnings {
        log!("device tree warning: {w}");
    }
    if let Some(m) = info.psci {
        psci::set_conduit(match m {
            crate::dt::boot_info::PsciMethod::Smc => psci::Conduit::Smc,
            crate::dt::boot_info::PsciMethod::Hvc => psci::Conduit::Hvc,
        });
    }
    let image_start = core::ptr::addr_of!(__image_start) as u64;
    let image = Region { base: image_start, size: core::ptr::addr_of!(__image_end) as u64 - image_start };
    let dtb = Region { base: dtb_pa, size: dt_size(dtb_pa) };
    let cmdline_text = info.hypervisor_cmdline.clone().unwrap_or_default();
    log!("command line: \"{cmdline_text}\"");
    let plan = boot::plan(&dt, &info, image, dtb)?;
    match &plan.console {
        Console::Pl011 { path, base } => {
            if *base != EARLY_UART {
                let Some(va) = mmu::va_of(*base, 0x1000) else { return Err(format!("console {path} at {base:#x} is above 4 GiB")) };
                // SAFETY: the DT's console UART; its GiB is Device memory in the boot map.
                let u = CONSOLE_UART.call_once(|| Pl011::new(unsafe { RawMmio::new(va) }));
                crate::console::set_uart(u);
            }
            log!("console: {path} (PL011 at {base:#x})");
        }
        Console::SamsungUart { path, .. } | Console::Unsupported { path: Some(path) } => {
            log!("console: {path} is not a PL011 xenith drives here; staying on {EARLY_UART:#x}")
        }
        Console::Unsupported { path: None } => {}
    }
    let ram: Vec<(u64, u64)> = info.memory.iter().map(|r| (r.base, r.size)).collect();
    mmu::refine(&ram);
    for (i, r) in info.memory.iter().enumerate() {
        log!("RAM bank {i}: {:#x}-{:#x} ({} MiB)", r.base, r.base + r.size, mib(r.size));
    }
    for m in &info.modules {
        log!("module {}: {:?} at {}{}", m.path, m.kind, m.region, m.bootargs.as_deref().map(|a| format!(" \"{a}\"")).unwrap_or_default());
    }
    for (what, r) in &plan.reservations {
        log!("reserved: {what} {:#x}-{:#x}", r.base, r.base + r.size);
    }
    Err("dom0: not started (no guest entry on arm32 yet)".into())
}

fn dt_size(pa: u64) -> u64 {
    let mut b = [0u8; 4];
    // SAFETY: the header was validated by `host_dt` before this runs (below 4 GiB).
    unsafe { core::ptr::copy_nonoverlapping((pa as usize + 4) as *const u8, b.as_mut_ptr(), 4) };
    u64::from(u32::from_be_bytes(b))
}
