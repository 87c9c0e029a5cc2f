//! The boot CPU's path from the entry code to dom0: MMU, heap, console, the host DT, then
//! `crate::boot`'s steps (plan, decide, build, start), this CPU's hardware answering the
//! questions they ask through [`super::Hw`], then EL1 entry. Any reason to stop is printed,
//! then the machine is powered off.

use super::entry::{enter_guest, TrapFrame};
use super::guest;
use super::inject::SPSR_EL1H_MASKED;
use super::mem::DirectMem;
use super::tlb::HwTlb;
use super::{heap, mmu, psci};
use crate::domain::registry::{DOMAINS, FRAMES};
use crate::boot::{self, Console};
use crate::domain::dom0::Dom0Layout;
use crate::dt::{HostDt, Region};
use crate::log;
use crate::mm::Stage2Config;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use platform::qemu_virt::pl011::Pl011;
use platform::RawMmio;
use crate::sync::Once;

/// Where to log before the DT names the console (QEMU virt's PL011), like Xen's early printk.
const EARLY_UART: u64 = 0x0900_0000;
/// Largest host DTB accepted.
const MAX_DTB: usize = 2 << 20;
use crate::boot::DOM0_VMID;

static EARLY: Once<Pl011<RawMmio>> = Once::new();
static CONSOLE_UART: Once<Pl011<RawMmio>> = Once::new();
/// dom0's boot vCPU registers (kept off the boot stack, which guest entry reuses).
static mut DOM0_ENTRY: TrapFrame = TrapFrame::ZERO;

extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

#[no_mangle]
extern "C" fn xenith_boot_el2(dtb_pa: u64) -> ! {
    mmu::enable_boot_map();
    super::percpu::init_boot_cpu();
    heap::init();
    // SAFETY: QEMU virt's PL011, identity-mapped as Device memory by the boot map.
    let early = EARLY.call_once(|| Pl011::new(unsafe { RawMmio::new(EARLY_UART as usize) }));
    crate::console::set_uart(early);
    psci::set_conduit(psci::Conduit::Smc);
    log!("xenith {} — Xen {}.{} guest ABI — EL2, DTB at {dtb_pa:#x}", env!("CARGO_PKG_VERSION"),
        crate::hypercall::version::XEN_MAJOR, crate::hypercall::version::XEN_MINOR);
    match boot(dtb_pa) {
        Ok(()) => unreachable_guest_entry(),
        Err(why) => {
            log!("{why}");
            log!("xenith: cannot continue: powering off");
            psci::system_off();
        }
    }
}

fn unreachable_guest_entry() -> ! {
    log!("xenith: returned from guest entry: powering off");
    psci::system_off()
}

/// Read the host DTB at `pa`: checks the header before trusting `totalsize`.
fn host_dt(pa: u64) -> Result<HostDt, String> {
    let hint = "x0 must hold the DTB's address (an ELF given to QEMU's -kernel gets none: boot the raw Image)";
    if pa == 0 || !pa.is_multiple_of(8) {
        return Err(format!("no usable device tree at {pa:#x}: {hint}"));
    }
    let mut head = [0u8; 8];
    // SAFETY: reads 8 bytes of the identity-mapped physical address the loader gave in x0.
    unsafe { core::ptr::copy_nonoverlapping(pa as *const u8, head.as_mut_ptr(), 8) };
    let magic = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let size = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
    if magic != 0xd00d_feed {
        return Err(format!("no usable device tree at {pa:#x}: magic {magic:#010x}, not 0xd00dfeed; {hint}"));
    }
    if !(40..=MAX_DTB).contains(&size) {
        return Err(format!("no usable device tree at {pa:#x}: totalsize {size} is outside 40..={MAX_DTB}"));
    }
    // SAFETY: the header says the blob is `size` bytes (bounded above); it lies in RAM the
    // loader wrote, identity-mapped.
    let blob = unsafe { core::slice::from_raw_parts(pa as *const u8, size) };
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
    super::spectre::init();
    // Linker-script symbols: only their addresses are used.
    let image = Region { base: core::ptr::addr_of!(__image_start) as u64, size: core::ptr::addr_of!(__image_end) as u64 - core::ptr::addr_of!(__image_start) as u64 };
    let dtb = Region { base: dtb_pa, size: dt_size(dtb_pa) };
    log!("command line: \"{}\"", info.hypervisor_cmdline.as_deref().unwrap_or_default());
    let mut plan = boot::plan(&dt, &info, image, dtb)?;
    match &plan.console {
        Console::Pl011 { path, base } => {
            if *base != EARLY_UART {
                // SAFETY: the DT's console UART; its GiB is Device memory in the boot map.
                let u = CONSOLE_UART.call_once(|| Pl011::new(unsafe { RawMmio::new(*base as usize) }));
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
    super::stats::HCALL_STATS.store(plan.cmdline.hypercall_stats, core::sync::atomic::Ordering::Relaxed);
    if plan.spectre_entry_all {
        super::spectre::force_all_entry_barriers();
    }
    boot::apply_options(&plan, &info);
    let (hyp, host_dtb) = (plan.hypervisor, plan.host_dtb);

    // dom0's kernel: the plan checked it lies in RAM before its bytes are read.
    let kernel = boot::dom0_kernel(&info)?;
    // SAFETY: the module lies in RAM (checked), identity-mapped.
    let kernel_bytes = unsafe { core::slice::from_raw_parts(kernel.region.base as *const u8, kernel.region.size as usize) };
    let initrd = info.ramdisk();
    let layout = plan.dom0_layout(&info, kernel_bytes)?;

    let extra_heap = plan.extra_heap;
    if extra_heap != 0 {
        match plan.free.alloc(extra_heap, 2 << 20) {
            // SAFETY: taken from the frame pool for good; the EL2 map covers RAM as Normal.
            Some(base) => unsafe { heap::grow(base as usize, extra_heap as usize) },
            None => log!("heap: no {} MiB of RAM to grow into; staying at the static heap", mib(extra_heap)),
        }
    }
    *FRAMES.lock() = core::mem::take(&mut plan.free);

    let mpidrs: Vec<u64> = info.cpus.iter().map(|c| c.mpidr).collect();
    let vcpus = super::smp::setup_dom0(&mpidrs, boot::dom0_vcpus(plan.dom0_max_vcpus, mpidrs.len(), super::percpu::MAX_CPUS));
    let dom0_ram = Region { base: layout.ram_base, size: layout.ram_size };
    let dom0_initrd = layout.initrd.map(|(b, s)| Region { base: b, size: s });
    // The GICv3 ITS and the IOMMUs: `boot` decides from what the hardware answers.
    plan.take_its(&super::Hw, &dt, &info, vcpus);
    let decisions = plan.decide_on_hardware(&super::Hw, &dt, &info, dom0_ram, dom0_initrd, vcpus)?;
    let table = &decisions.ownership;
    for line in table.to_string().lines() {
        log!("{line}");
    }
    for (i, r) in decisions.dom0_dt.extended_regions.iter().enumerate() {
        log!("dom0: extended region {i}: {:#x}-{:#x} ({} MiB)", r.base, r.base + r.size, mib(r.size));
    }
    for (path, why) in &decisions.kept_masters {
        log!("{path}: kept from dom0 ({why})");
    }
    let dom0_dtb = &decisions.dom0_dtb;
    load_dom0(&layout, kernel_bytes, initrd.map(|i| i.region), dom0_dtb);

    // dom0's stage 2: every device the hypervisor does not keep, then its RAM.
    let mem = DirectMem;
    let mut tlb = HwTlb;
    let mut frames = FRAMES.lock();
    let free = &mut *frames;
    let (p2m, mapped) = boot::build_dom0_stage2(&decisions, Region { base: layout.ram_base, size: layout.ram_size }, free, &mem, &mut tlb)?;
    log!(
        "dom0: RAM {:#x}-{:#x} ({} MiB), kernel at {:#x} (entry), initrd {}, DTB at {:#x} ({} bytes), VMID {DOM0_VMID}",
        layout.ram_base,
        layout.ram_base + layout.ram_size,
        mib(layout.ram_size),
        layout.kernel_load,
        layout.initrd.map(|(b, s)| format!("at {b:#x} ({s} bytes)")).unwrap_or_else(|| "none".into()),
        layout.dtb,
        dom0_dtb.len()
    );
    log!(
        "dom0: command line \"{}\"; stage 2 maps its RAM and {mapped} device regions with {} table frames{}",
        decisions.dom0_dt.bootargs.as_deref().unwrap_or(""),
        p2m.table_frames(),
        if p2m.is_page_granular() { " (4 KiB pages only: shared with the SMMU)" } else { "" }
    );
    let (used, total) = heap::usage();
    log!("heap: {} KiB of {} KiB in use; {} MiB of RAM left free", used / 1024, total / 1024, mib(free.total_free()));

    drop(frames);
    let p2m_regs = (DOM0_VMID, p2m.vttbr(), p2m.vtcr());
    let nested = boot::attach_dom0_streams(&super::Hw, &dt, table, p2m_regs);
    // dom0 drives its own IOMMU translation: its DMA layer must use IOMMU DMA ops, not
    // swiotlb-xen (which Linux picks for a dom0 it is told is direct-mapped).
    crate::hypercall::version::set_dom0_iommu_dma(!nested.is_empty());
    guest::configure(p2m.vttbr(), p2m.vtcr(), 0);
    let mut dom = boot::dom0_domain(dom0_ram, vcpus, p2m);
    // Interrupts: the physical GIC for the hypervisor's PPIs, and dom0's emulated GICv3 at the
    // host GIC's addresses (left out of its stage 2 above, so every access traps).
    let host_lines = super::gic::init(&info.gic)?;
    // The scheduler (`sched=`): under credit, dom0's vCPU n has CPU n as its home and domUs
    // share the CPUs; under null (the default) every vCPU has a CPU of its own.
    let policy = super::vcpu_switch::init(plan.cmdline.sched, mpidrs.len().min(super::percpu::MAX_CPUS));
    if policy == crate::sched::SchedPolicy::Credit {
        let (params, warn) = crate::sched::CreditParams::from_cmdline(plan.cmdline.sched_credit_tslice_ms, plan.cmdline.sched_ratelimit_us);
        if let Some(w) = warn {
            log!("warning: {w}");
        }
        // from_cmdline's values are within Xen's bounds.
        let _ = crate::sched::SCHED.set_params(params);
        log!("credit: timeslice {} ms, rate limit {} us (sched_credit_tslice_ms=, sched_ratelimit_us=)", params.tslice_ms, params.ratelimit_us);
    }
    if policy == crate::sched::SchedPolicy::Credit {
        for v in 0..vcpus {
            if let Err(e) = crate::sched::SCHED.add(crate::sched::VcpuRef::new(0, v as u32), Some(v), u64::MAX) {
                return Err(alloc::format!("dom0 vCPU {v}: {e:?}"));
            }
        }
        // vCPU 0 runs on this CPU from the start, ahead of any domU started below.
        super::vcpu_switch::boot_vcpu_running();
    }
    log!("scheduler: {} (sched=)", policy.name());
    log!("dom0: {vcpus} vCPU(s), vCPU n on CPU n (dom0_max_vcpus=; PSCI CPU_ON starts the others)");
    let it_lines = boot::dom0_vgic_lines(dom0_dtb, host_lines);
    // The hypervisor's own devices (UART, a kept SMMU) are polled, never enabled in dom0's vGIC.
    match boot::dom0_vgic(&info.gic, it_lines, vcpus)? {
        boot::Dom0Vgic::V2 { it_lines, vcpus } => super::irq::attach_vgic_v2(&mut dom, &info.gic, it_lines, vcpus)?,
        boot::Dom0Vgic::V3(cfg) => super::irq::attach_vgic(&mut dom, &cfg)?,
    }
    if let (Some(node), Some(vgic)) = (super::its::node().filter(|_| plan.emulated_its.is_some()), super::vgic_glue::dom0_vgic()) {
        super::its::attach(&mut dom, node, vgic, vcpus)?;
    }
    boot::attach_vsmmus(&super::Hw, &dt, table, &mut dom, nested, p2m_regs, Stage2Config::DOMAIN.ipa_bits);
    if DOMAINS.insert(dom).is_err() {
        return Err("dom0: domain 0 exists already".into());
    }
    // What the toolstack's sysctls report of the machine.
    let iommu_shares_p2m = boot::iommu_shares_p2m(table);
    crate::hypercall::toolstack::set_host_info(crate::hypercall::toolstack::HostInfo {
        nr_cpus: mpidrs.len() as u32,
        cpu_khz: (super::regs::counter_freq() / 1000) as u32,
        total_pages: plan.ram_total >> 12,
        max_mfn: (crate::hypercall::host_ram_end() >> 12).saturating_sub(1),
        iommu_shares_p2m,
        ipa_bits: crate::mm::Stage2Config::DOMAIN.ipa_bits,
        gic_version: if super::gic_v2::get().is_some() { guest_abi::toolstack::XEN_DOMCTL_CONFIG_GIC_V2 } else { guest_abi::toolstack::XEN_DOMCTL_CONFIG_GIC_V3 },
        free_pages: || FRAMES.lock().total_free() >> 12,
        now_ns: || {
            let f = super::regs::counter_freq().max(1);
            (u128::from(super::regs::counter()) * 1_000_000_000 / u128::from(f)) as u64
        },
    });
    boot::start_domus(&super::Hw, &dt, &DOMAINS, &crate::domain::vcpu::CPUS, host_lines);
    release_boot_modules(&info, &[hyp, host_dtb]);
    let (heap_used, _) = heap::usage();
    let used = boot::MemoryUse {
        guests: DOMAINS.iter().map(|d| d.ram().total()).sum(),
        free: FRAMES.lock().total_free(),
        static_heap: heap::HEAP_SIZE as u64,
        heap_used: heap_used as u64,
    };
    log!("{}", plan.memory_line(&info, &used));
    log!("starting dom0");
    // SAFETY: single boot CPU; nothing else references DOM0_ENTRY.
    let frame = unsafe {
        let f = &mut *core::ptr::addr_of_mut!(DOM0_ENTRY);
        f.x[0] = layout.dtb;
        f.elr = layout.kernel_load;
        f.spsr = SPSR_EL1H_MASKED;
        &*f
    };
    enter_guest(frame)
}

/// Once the guests are built, the boot modules go back to the frame pool (`boot` decides which).
fn release_boot_modules(info: &crate::dt::boot_info::BootInfo, keep: &[Region]) {
    let released = boot::release_boot_modules(info, keep, &mut FRAMES.lock());
    log!("boot modules freed: {} MiB back to the free pool", mib(released));
}

fn dt_size(pa: u64) -> u64 {
    let mut b = [0u8; 4];
    // SAFETY: the header was validated by `host_dt` before this runs.
    unsafe { core::ptr::copy_nonoverlapping((pa + 4) as *const u8, b.as_mut_ptr(), 4) };
    u64::from(u32::from_be_bytes(b))
}

/// Copy dom0's kernel, initrd and DTB into its RAM, then make them visible to a guest that
/// starts with caches off (clean to the point of coherency).
fn load_dom0(l: &Dom0Layout, kernel: &[u8], initrd: Option<Region>, dtb: &[u8]) {
    // SAFETY: every destination lies inside dom0's RAM (planned by `dom0::plan`), which no
    // one else uses yet; sources are the modules (RAM, reserved) and a heap buffer.
    unsafe {
        core::ptr::copy(kernel.as_ptr(), l.kernel_load as *mut u8, kernel.len());
        if let (Some(src), Some((dst, len))) = (initrd, l.initrd) {
            core::ptr::copy(src.base as *const u8, dst as *mut u8, len as usize);
        }
        core::ptr::copy_nonoverlapping(dtb.as_ptr(), l.dtb as *mut u8, dtb.len());
    }
    // dom0 starts with its MMU and caches off: what the hypervisor wrote must be in memory.
    // Nothing else of dom0's RAM was written here (cleaning all of it cost 34 M instructions).
    super::mem::clean_dcache_range(l.kernel_load, kernel.len() as u64);
    if let Some((dst, len)) = l.initrd {
        super::mem::clean_dcache_range(dst, len);
    }
    super::mem::clean_dcache_range(l.dtb, dtb.len() as u64);
}
