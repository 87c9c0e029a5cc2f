//! The boot CPU's path from the entry code to dom0: MMU, heap, console, the host DT, the boot
//! plan (`crate::boot`), dom0's layout, DT and stage 2, then guest entry. Any reason to stop is
//! printed, then the machine is powered off.

use super::entry::{enter_guest, TrapFrame};
use super::guest::{self, CPSR_SVC_MASKED};
use super::mem::DirectMem;
use super::tlb::HwTlb;
use super::{heap, mmu, monitor, psci, trap};
use crate::boot::{self, Board, Console, DOM0_VMID};
use crate::domain::zimage::{self, ZImageLayout};
use crate::dt::{HostDt, Region};
use crate::log;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use platform::exynos5250::uart::SamsungUart;
use platform::qemu_virt::pl011::Pl011;
use platform::RawMmio;
use crate::sync::Once;

/// Where to log before the DT names the console (QEMU virt's PL011), like Xen's early printk,
/// unless the DT is an Exynos5250's (nothing is at that address there): until a UART is known
/// the log is kept in the console's ring and replayed to it.
const EARLY_UART: u64 = 0x0900_0000;
/// Largest host DTB accepted.
const MAX_DTB: usize = 2 << 20;
/// The zImage protocol's r1: "no machine type, the DTB describes the machine".
const MACHINE_TYPE_DT: u32 = 0xffff_ffff;

static EARLY: Once<Pl011<RawMmio>> = Once::new();
static CONSOLE_UART: Once<Pl011<RawMmio>> = Once::new();
static SAMSUNG_UART: Once<SamsungUart<RawMmio>> = Once::new();
/// dom0's boot vCPU registers (kept off the boot stack, which guest entry reuses).
static mut DOM0_ENTRY: TrapFrame = TrapFrame::ZERO;

extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// What the entry code did with a module bundle at the BSS start (`boot::bundle`), and its
/// destination.
static mut BUNDLE: (u32, u32) = (0, 0);

#[no_mangle]
extern "C" fn xenith_boot_hyp(dtb_pa: u32, from_secure: u32, bundle: u32, bundle_dest: u32) -> ! {
    if from_secure != 0 {
        monitor::set_owned();
    }
    // SAFETY: the boot CPU alone, before anything reads it.
    unsafe { BUNDLE = (bundle, bundle_dest) };
    mmu::enable_boot_map();
    super::percpu::init_boot_cpu();
    heap::init();
    psci::set_conduit(psci::Conduit::Smc);
    log!("xenith {} — Xen {}.{} guest ABI — ARMv7-A HYP mode (MIDR {:#010x}), DTB at {dtb_pa:#x}", env!("CARGO_PKG_VERSION"),
        crate::hypercall::version::XEN_MAJOR, crate::hypercall::version::XEN_MINOR, super::regs::Midr::read());
    if monitor::owned() {
        log!("entered in Secure SVC mode: now non-secure HYP mode, xenith's monitor at MVBAR");
    }
    match boot(u64::from(dtb_pa)) {
        Err(why) => {
            if SAMSUNG_UART.get().is_none() {
                early_uart();
            }
            log!("{why}");
            log!("xenith: cannot continue: powering off");
            psci::system_off();
        }
    }
}

/// Set once the host DT is known to be an Exynos5250's (no PL011 at QEMU virt's address).
static NOT_QEMU_VIRT: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// A panic before any console: QEMU virt's PL011, unless the DT said the board has none there.
pub fn console_for_panic() {
    if !NOT_QEMU_VIRT.load(core::sync::atomic::Ordering::Relaxed) && SAMSUNG_UART.get().is_none() {
        early_uart();
    }
}

/// Attach QEMU virt's PL011 as the console (once).
fn early_uart() {
    if EARLY.get().is_some() {
        return;
    }
    // SAFETY: QEMU virt's PL011, identity-mapped as Device memory by the boot map.
    let early = EARLY.call_once(|| Pl011::new(unsafe { RawMmio::new(EARLY_UART as usize) }));
    crate::console::set_uart(early);
}

/// Read the host DTB at `pa`: checks the header before trusting `totalsize`.
fn host_dt(pa: u64) -> Result<HostDt, String> {
    let hint = "r2 must hold the DTB's address (the zImage boot protocol)";
    if pa == 0 || !pa.is_multiple_of(8) {
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

fn boot(dtb_pa: u64) -> Result<core::convert::Infallible, String> {
    let dt = host_dt(dtb_pa)?;
    if dt.is_compatible(dt.root(), "samsung,exynos5250") {
        NOT_QEMU_VIRT.store(true, core::sync::atomic::Ordering::Relaxed);
    } else {
        early_uart();
    }
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
    // CNTFRQ is writable only from Secure PL1: a firmware that left it 0 (some Exynos U-Boots)
    // is made good from the DT's clock-frequency through xenith's monitor, when it owns one.
    let hz = info.timer.as_ref().and_then(|t| t.clock_frequency);
    if let (0, Some(hz)) = (super::regs::Cntfrq::read(), hz) {
        if monitor::set_cntfrq(hz) {
            log!("CNTFRQ was 0: set to {hz} Hz (the DT's clock-frequency) through the monitor");
        }
    }
    let image_start = core::ptr::addr_of!(__image_start) as u64;
    let image = Region { base: image_start, size: core::ptr::addr_of!(__image_end) as u64 - image_start };
    let dtb = Region { base: dtb_pa, size: dt_size(dtb_pa) };
    log!("command line: \"{}\"", info.hypervisor_cmdline.as_deref().unwrap_or_default());
    let mut plan = boot::plan(&dt, &info, image, dtb)?;
    if let Board::Exynos5250(blocks) = &plan.board {
        exynos5250_early(blocks, &info, hz)?;
    }
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
        Console::SamsungUart { path, base } => {
            let Some(va) = mmu::va_of(*base, 0x100) else { return Err(format!("console {path} at {base:#x} is above 4 GiB")) };
            // SAFETY: the DT's console UART, in a Device-memory GiB of the boot map; only the
            // console drives it.
            let u = SAMSUNG_UART.call_once(|| boot::exynos5250::console_uart(unsafe { RawMmio::new(va) }, platform::exynos5250::CONSOLE_BAUD));
            crate::console::set_uart(u);
            log!("console: {path} (Samsung UART at {base:#x})");
        }
        Console::Unsupported { path: Some(path) } => {
            log!("console: {path} is not a UART xenith drives; staying on {}", if EARLY.get().is_some() { "QEMU virt's PL011" } else { "the RAM log" })
        }
        Console::Unsupported { path: None } => {}
    }
    let ram: Vec<(u64, u64)> = info.memory.iter().map(|r| (r.base, r.size)).collect();
    mmu::refine(&ram);
    if let Some(ring) = plan.board.log_ring() {
        ram_log(ring);
    }
    boot::apply_options(&plan, &info);

    // RAM above 4 GiB (LPAE machines may have some) has no HYP address: none of it becomes
    // table frames, heap or a 32-bit dom0's RAM.
    let high = plan.set_aside_ram_above(&info, 1 << 32)?;
    if high != 0 {
        log!("RAM above 4 GiB: {} MiB set aside (no HYP mapping on ARMv7)", mib(high));
    }

    // dom0's modules carried in the image: checked against the DTB before any is read.
    // SAFETY: written once by the boot CPU at entry.
    let (bundle_status, bundle_dest) = unsafe { BUNDLE };
    let image_end = image.base + image.size;
    let read = |len: u64| {
        // SAFETY: the entry code wrote the bundle there (RAM, identity-mapped); `len` bytes.
        mmu::va_of(u64::from(bundle_dest), len).map(|va| unsafe { core::slice::from_raw_parts(va as *const u8, len as usize) })
    };
    if let Some(line) = boot::bundle::check(bundle_status, u64::from(bundle_dest), read, &info.modules, dtb, image_end)? {
        log!("{line}");
    }

    // dom0's kernel (a zImage) and initrd: the plan checked the kernel lies in RAM.
    let kernel = boot::dom0_kernel(&info)?;
    let kva = mmu::va_of(kernel.region.base, kernel.region.size).ok_or_else(|| format!("dom0 kernel module at {} is above 4 GiB", kernel.region))?;
    // SAFETY: the module lies in RAM (checked), identity-mapped.
    let kernel_bytes = unsafe { core::slice::from_raw_parts(kva as *const u8, kernel.region.size as usize) };
    if let Err(e) = zimage::ZImage::parse(kernel_bytes) {
        return Err(boot::bundle::missing_kernel(bundle_status, kernel.region, &format!("{e}")));
    }
    let initrd = info.ramdisk().map(|i| i.region);
    if let Some(r) = initrd {
        if !info.memory.iter().any(|b| r.base >= b.base && r.base.saturating_add(r.size) <= b.base + b.size) || mmu::va_of(r.base, r.size).is_none() {
            return Err(format!("dom0 initrd module at {r} is not in RAM below 4 GiB"));
        }
    }
    let dom0_mem = plan.cmdline.dom0_mem.and_then(|m| m.target());
    let layout = zimage::plan(&mut plan.free, dom0_mem, kernel.region.base, kernel_bytes, kernel.region.size, initrd.map(|r| r.size))?;

    let extra_heap = plan.extra_heap;
    if extra_heap != 0 {
        match plan.free.alloc(extra_heap, 2 << 20).filter(|&b| mmu::va_of(b, extra_heap).is_some()) {
            // SAFETY: taken from the frame pool for good; the HYP map covers RAM as Normal.
            Some(base) => unsafe { heap::grow(base as usize, extra_heap as usize) },
            None => log!("heap: no {} MiB of RAM below 4 GiB to grow into; staying at the static heap", mib(extra_heap)),
        }
    }
    let dom0_ram = Region { base: layout.ram_base, size: layout.ram_size };
    let dom0_initrd = layout.initrd.map(|(b, s)| Region { base: b, size: s });
    // dom0's vCPU n runs on the host DT's n-th CPU (PSCI CPU_ON starts the others); no SMMU here.
    let mpidrs: Vec<u64> = info.cpus.iter().map(|c| c.mpidr).collect();
    super::smp::set_release_addrs(&info.cpus);
    let vcpus = super::smp::setup_dom0(&mpidrs, boot::dom0_vcpus(plan.dom0_max_vcpus, mpidrs.len(), super::percpu::MAX_CPUS));
    // The Exynos SysMMUs are the only IOMMUs the ARMv7 hypervisor drives.
    let drivers = match plan.board {
        Board::Exynos5250(_) => boot::probe_iommus(&super::Hw, &plan.topology),
        Board::Generic => Vec::new(),
    };
    let decisions = plan.decide(&dt, &info, &drivers, dom0_ram, dom0_initrd, vcpus)?;
    for (path, why) in &decisions.kept_masters {
        log!("{path}: kept from dom0 ({why})");
    }
    let dom0_dtb = &decisions.dom0_dtb;
    load_dom0(&layout, kernel_bytes, initrd, dom0_dtb)?;

    // dom0's stage 2: every device the hypervisor does not keep, then its RAM.
    let mem = DirectMem;
    let mut tlb = HwTlb;
    let free = &mut plan.free;
    let (p2m, mapped) = boot::build_dom0_stage2(&decisions, dom0_ram, free, &mem, &mut tlb)?;
    let vtcr = p2m.vtcr_armv7().ok_or("dom0 stage 2: a configuration ARMv7's VTCR cannot describe")?;
    // The SysMMUs the hypervisor keeps translate dom0's DMA through a shadow of its memory.
    let readonly: Vec<Region> = decisions.dom0_readonly.iter().map(|(_, r)| *r).collect();
    let kept_inputs = boot::start_sysmmus(&super::Hw, &dt, &decisions.ownership, &plan.board, dom0_ram, &readonly);
    log!(
        "dom0: RAM {:#x}-{:#x} ({} MiB), zImage at {:#x} (entry), initrd {}, DTB at {:#x} ({} bytes), VMID {DOM0_VMID}, VTCR {vtcr:#x}",
        layout.ram_base,
        layout.ram_base + layout.ram_size,
        mib(layout.ram_size),
        layout.kernel_load,
        layout.initrd.map(|(b, s)| format!("at {b:#x} ({s} bytes)")).unwrap_or_else(|| "none".into()),
        layout.dtb,
        dom0_dtb.len()
    );
    log!(
        "dom0: command line \"{}\"; stage 2 maps its RAM and {mapped} device regions with {} table frames",
        decisions.dom0_dt.bootargs.as_deref().unwrap_or(""),
        p2m.table_frames()
    );
    let (used, total) = heap::usage();
    log!("heap: {} KiB of {} KiB in use; {} MiB of RAM left free", used / 1024, total / 1024, mib(free.total_free()));

    guest::configure(p2m.vttbr(), vtcr, 0);
    let mut dom = boot::dom0_domain(dom0_ram, vcpus, p2m);
    if let Board::Exynos5250(blocks) = &plan.board {
        // dom0's combiner page is not in its stage 2: its accesses trap to the filter.
        let filter = super::board::combiner_filter(blocks, &kept_inputs)?;
        if !dom.mmio.add(blocks.combiner.base & !0xfff, 0x1000, alloc::boxed::Box::new(filter)) {
            return Err(format!("dom0: the combiner at {} overlaps another emulated device", blocks.combiner));
        }
        // Nor are the power domains' pages: powering a domain on re-attaches its SysMMUs.
        for (page, filter) in super::board::power_domain_filters(blocks)? {
            if !dom.mmio.add(page, 0x1000, alloc::boxed::Box::new(filter)) {
                return Err(format!("dom0: the power domains' page {page:#x} overlaps another emulated device"));
            }
        }
    }
    // Interrupts: the physical GICv2 for the hypervisor's PPIs, and dom0's emulated
    // distributor at the host's (left out of its stage 2, so every access traps) with the
    // GIC's virtual CPU interface where dom0 expects its CPU interface.
    if let Some(gicc) = info.gic.cpu_interface {
        monitor::gic_to_nonsecure(info.gic.distributor.base, gicc.base).map_err(|e| format!("GIC {}: {e}", info.gic.path))?;
    }
    let host_lines = super::gic::init(&info.gic)?;
    let how = if super::smp::has_spin_table_cpus() {
        "the others are released from the firmware's spin-table pen"
    } else if super::board::get().is_some() {
        "the others start through SYSRAM and an SGI"
    } else {
        "PSCI CPU_ON starts the others"
    };
    log!("dom0: {vcpus} vCPU(s), vCPU n on CPU n (dom0_max_vcpus=; {how})");
    let it_lines = boot::dom0_vgic_lines(dom0_dtb, host_lines);
    super::irq::attach_vgic_v2(&mut dom, &info.gic, it_lines, vcpus)?;
    trap::install(dom, core::mem::take(&mut plan.free))?;
    super::percpu::assign(super::percpu::this_cpu(), 0, 0);
    log!("starting dom0");
    // SAFETY: single boot CPU; nothing else references DOM0_ENTRY.
    let frame = unsafe {
        let f = &mut *core::ptr::addr_of_mut!(DOM0_ENTRY);
        f.r[0] = 0;
        f.r[1] = MACHINE_TYPE_DT;
        f.r[2] = layout.dtb as u32;
        f.elr = layout.kernel_load as u32;
        f.spsr = CPSR_SVC_MASKED;
        &*f
    };
    enter_guest(frame)
}

/// The Exynos5250's first steps, before anything uses the arch timer: take the board's blocks,
/// stop calling PSCI (there is none), start the MCT (the arch timer's counter) and report the
/// timer frequency (`dt_hz`: the DT's clock-frequency).
fn exynos5250_early(blocks: &boot::exynos5250::Blocks, info: &crate::dt::boot_info::BootInfo, dt_hz: Option<u32>) -> Result<(), String> {
    let b = super::board::init(blocks)?;
    if info.psci.is_none() {
        psci::clear_conduit();
    }
    let cntfrq = super::regs::Cntfrq::read();
    let (mct, hz) = b.start_timer(cntfrq, dt_hz);
    match mct {
        Ok(()) => log!("Exynos5250: MCT at {} running (the arch timer counts at {hz} Hz); secondary CPUs through SYSRAM {:#x}+{:#x}; reset through the PMU", blocks.mct, blocks.sysram.base, blocks.boot_addr_offset),
        Err(e) => log!("Exynos5250: MCT at {}: {e}", blocks.mct),
    }
    if cntfrq == 0 && super::regs::Cntfrq::read() == 0 {
        super::regs::set_counter_freq(hz);
        log!("CNTFRQ is 0 and xenith cannot set it (not entered from Secure SVC): xenith counts at {hz} Hz, dom0 takes the DT's clock-frequency");
    }
    Ok(())
}

/// Keep the log in the RAM ring at `ring` too (it survives a warm reset; dom0 reads it through
/// its /reserved-memory node).
fn ram_log(ring: Region) {
    use platform::exynos5250::logring::RamLog;
    match RamLog::attach(super::mem::DirectMem, ring.base, ring.size) {
        Ok((log, found)) => {
            let boots = log.boots();
            crate::console::set_ram_log(alloc::boxed::Box::leak(alloc::boxed::Box::new(log)));
            if found {
                log!("RAM log ring at {ring}: kept the log of the {boots} boot(s) before this one");
            } else {
                log!("RAM log ring at {ring}: started");
            }
        }
        Err(e) => log!("RAM log ring at {ring}: {e}"),
    }
}

/// Copy dom0's kernel, initrd and DTB into its RAM, then make them visible to a guest that
/// starts with caches off (clean to the point of coherency).
fn load_dom0(l: &ZImageLayout, kernel: &[u8], initrd: Option<Region>, dtb: &[u8]) -> Result<(), String> {
    let end = l.ram_base + l.ram_size;
    let kdst = mmu::va_of(l.kernel_load, kernel.len() as u64).filter(|_| end <= 1 << 32).ok_or("dom0's RAM is above 4 GiB")?;
    let ddst = mmu::va_of(l.dtb, dtb.len() as u64).ok_or("dom0's DTB is above 4 GiB")?;
    // SAFETY: every destination lies inside dom0's RAM (planned by `zimage::plan`, below
    // 4 GiB: checked), which no one else uses yet; sources are the modules (RAM, reserved,
    // checked below 4 GiB) and a heap buffer.
    unsafe {
        core::ptr::copy(kernel.as_ptr(), kdst as *mut u8, kernel.len());
        if let (Some(src), Some((dst, len))) = (initrd, l.initrd) {
            core::ptr::copy(src.base as usize as *const u8, dst as usize as *mut u8, len as usize);
        }
        core::ptr::copy_nonoverlapping(dtb.as_ptr(), ddst as *mut u8, dtb.len());
    }
    super::mem::clean_dcache_range(l.kernel_load, kernel.len() as u64);
    if let Some((dst, len)) = l.initrd {
        super::mem::clean_dcache_range(dst, len);
    }
    super::mem::clean_dcache_range(l.dtb, dtb.len() as u64);
    Ok(())
}

fn dt_size(pa: u64) -> u64 {
    let mut b = [0u8; 4];
    // SAFETY: the header was validated by `host_dt` before this runs (below 4 GiB).
    unsafe { core::ptr::copy_nonoverlapping((pa as usize + 4) as *const u8, b.as_mut_ptr(), 4) };
    u64::from(u32::from_be_bytes(b))
}
