//! The boot plan: what the boot CPU decides from the host DT and the command line before it
//! writes anything, as plain data (ARCHITECTURE.md: plan -> decide -> build -> start). The
//! architecture code executes it: it probes hardware, copies modules, writes page tables and
//! enters the guests. Everything here runs on the host too, so the plans for QEMU virt's DTs and
//! the Snow's are host-tested.
//!
//! Two steps, because one decision needs the hardware in between: [`plan`] reads the DT and the
//! command line (console, reservations, free memory, dom0's layout, the DMA topology); the
//! architecture then probes the IOMMUs the topology names, and [`Plan::decide`] takes the drivers
//! that answered and gives the ownership table, dom0's device tree and its stage-2 device map.

#[cfg(test)]
mod tests;

use crate::domain::dom0::{self, Dom0Layout, DTB_ROOM};
use crate::dt::boot_info::{BootInfo, BootModule};
use crate::dt::cmdline::HypervisorCmdline;
use crate::dt::dom0::{build_dom0_dt, extended_regions, physical_masters, physical_masters_except, Dom0DtSpec};
use crate::dt::{HostDt, Region};
use crate::iommu::policy::{DmaTopology, IommuKind, IommuOwner, OwnershipTable, PlatformDefaults};
use crate::mm::{RegionAllocator, Stage2Config};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// Size of the grant-table region advertised to dom0 (64 frames, Xen's default maximum).
pub const GNTTAB_SIZE: u64 = 64 * 4096;
/// INTID of dom0's event-channel PPI (as Xen allocates it for dom0).
pub const DOM0_EVTCHN_PPI: u32 = 16;
/// dom0's guest physical address size (its stage 2's input range).
pub const DOM0_IPA_BITS: u8 = Stage2Config::DOMAIN.ipa_bits;
/// dom0's vCPU count when the command line does not say.
pub const DOM0_DEFAULT_VCPUS: usize = 1;
/// Options xenith acts on that [`HypervisorCmdline`] leaves among the unknown ones.
const OWN_UNPARSED: [&str; 5] = ["dom0_max_vcpus=", "spectre_entry=all", "its=", "gnttab_max_frames=", "gnttab_max_maptrack_frames="];
const MIB: u64 = 1 << 20;

/// The console the hypervisor writes to, from `/chosen/stdout-path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Console {
    /// An ARM PL011 (QEMU virt) at this base.
    Pl011 { path: String, base: u64 },
    /// A Samsung exynos4210-style UART (the Snow's UART3) at this base.
    SamsungUart { path: String, base: u64 },
    /// `stdout-path` names a device xenith has no driver for, or none: stay on the early UART.
    Unsupported { path: Option<String> },
}

impl Console {
    /// The DT node the hypervisor keeps for itself (not shown to dom0).
    pub fn kept_node(&self) -> Option<&str> {
        match self {
            Console::Pl011 { path, .. } | Console::SamsungUart { path, .. } => Some(path),
            Console::Unsupported { .. } => None,
        }
    }
}

/// The board, from the root `compatible`: what the platform code must do beyond the generic path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Board {
    /// QEMU's `virt` machine (or any board with nothing board-specific to do).
    Generic,
    /// Samsung Exynos5250 (the Snow, Arndale): start the MCT (the arch timer's counter) and keep
    /// it from dom0; secondary CPUs are released through SYSRAM.
    Exynos5250 { mct: Option<Region> },
}

/// What [`plan`] read and decided.
pub struct Plan {
    pub cmdline: HypervisorCmdline,
    /// Options given that xenith does not act on (logged).
    pub ignored_options: Vec<String>,
    /// `spectre_entry=all`: every entry barrier runs whatever the CPU needs.
    pub spectre_entry_all: bool,
    /// Xen's `dom0_max_vcpus=N` (or `=MIN-MAX`: the maximum).
    pub dom0_max_vcpus: Option<usize>,
    pub console: Console,
    pub board: Board,
    /// The 2 MiB-aligned range the hypervisor's image occupies (the grant-table region is carved
    /// from its start: a GPA range that is never dom0 RAM).
    pub hypervisor: Region,
    pub host_dtb: Region,
    /// (what, range) taken out of RAM before anything is allocated.
    pub reservations: Vec<(&'static str, Region)>,
    /// RAM minus the reservations, then minus what dom0's layout took.
    pub free: RegionAllocator,
    pub ram_total: u64,
    /// Heap added on top of the image's static heap: 1/256 of RAM, at most 64 MiB, whole 2 MiB.
    pub extra_heap: u64,
    pub topology: DmaTopology,
    /// dom0 gets an emulated GICv3 ITS (unless `its=hide`: then the ITS is kept from it and its
    /// PCI devices use INTx).
    pub its_emulation: bool,
    /// Set by the architecture once it took the ITS for emulation: the ITS node's path and its
    /// doorbell page (GITS_TRANSLATER's). [`Plan::decide`] then keeps the node and msi-map in
    /// dom0's DT, leaves the control frame out of dom0's stage 2 (it traps to the emulation)
    /// and maps the doorbell page 1:1 (devices behind the SMMU send their MSIs there).
    pub emulated_its: Option<(String, u64)>,
}

/// The page-rounded range of `r`.
pub fn page_round(r: Region) -> Region {
    let base = r.base & !0xfff;
    let end = r.base.saturating_add(r.size).div_ceil(4096).saturating_mul(4096);
    Region { base, size: end - base }
}

fn dom0_max_vcpus(options: &[String]) -> Option<usize> {
    let v = options.iter().rev().find_map(|o| o.strip_prefix("dom0_max_vcpus="))?;
    v.rsplit('-').next()?.parse().ok()
}

/// dom0's vCPU count: what the command line asks (default [`DOM0_DEFAULT_VCPUS`]), at most one
/// per host CPU and `max_cpus`, at least one.
pub fn dom0_vcpus(requested: Option<usize>, host_cpus: usize, max_cpus: usize) -> usize {
    requested.unwrap_or(DOM0_DEFAULT_VCPUS).min(host_cpus).clamp(1, max_cpus.max(1))
}

fn console(info: &BootInfo) -> Console {
    let Some(out) = &info.stdout else { return Console::Unsupported { path: None } };
    let has = |c: &str| out.compatible.iter().any(|x| x == c);
    match out.mmio {
        Some(r) if has("arm,pl011") => Console::Pl011 { path: out.path.clone(), base: r.base },
        Some(r) if has("samsung,exynos4210-uart") => Console::SamsungUart { path: out.path.clone(), base: r.base },
        _ => Console::Unsupported { path: Some(out.path.clone()) },
    }
}

/// ITLinesNumber of dom0's vGIC: enough for the SPIs its DT (`dom0_dtb`) names, since each
/// implemented SPI costs its GIC driver trapped writes at boot and devices the hypervisor
/// keeps are not in it; all of the host's (`host_lines`) when the DT cannot bound them, with
/// the reason to log.
pub fn dom0_it_lines(dom0_dtb: &[u8], host_lines: u32) -> (u32, Option<String>) {
    match HostDt::parse(dom0_dtb).and_then(|d| d.highest_gic_intid()) {
        Ok(highest) => (crate::irq::vgic::it_lines_for(highest, host_lines), None),
        Err(e) => (host_lines, Some(format!("dom0: vGIC with every host INTID: {e}"))),
    }
}

fn board(dt: &HostDt) -> Board {
    if dt.is_compatible(dt.root(), "samsung,exynos5250") {
        let mct = dt
            .find_compatible("samsung,exynos4210-mct")
            .into_iter()
            .find(|&n| dt.is_enabled(n))
            .and_then(|n| dt.reg(n).ok())
            .and_then(|r| r.first().copied());
        Board::Exynos5250 { mct }
    } else {
        Board::Generic
    }
}

/// Read the host DT (`info` is its `/chosen` and platform summary) and the command line: the
/// console, the memory the hypervisor may use (RAM minus its `image`, the `dtb`, the boot
/// modules and firmware reservations), the heap growth and the DMA topology.
pub fn plan(dt: &HostDt, info: &BootInfo, image: Region, dtb: Region) -> Result<Plan, String> {
    let text = info.hypervisor_cmdline.clone().unwrap_or_default();
    let cmdline = HypervisorCmdline::parse(&text).map_err(|e| format!("command line: {e}"))?;
    let ignored_options =
        cmdline.unknown.iter().filter(|o| !OWN_UNPARSED.iter().any(|own| o.starts_with(own))).cloned().collect();
    let spectre_entry_all = cmdline.unknown.iter().any(|o| o == "spectre_entry=all");
    let dom0_max_vcpus = dom0_max_vcpus(&cmdline.unknown);
    let its_emulation = cmdline.unknown.iter().rev().find_map(|o| o.strip_prefix("its=")) != Some("hide");

    let mut free = RegionAllocator::new();
    for r in &info.memory {
        free.add(r.base, r.size).map_err(|e| format!("memory bank {r}: {e}"))?;
    }
    let block = 2 * MIB;
    let hypervisor = Region { base: image.base & !(block - 1), size: (image.base + image.size - (image.base & !(block - 1))).div_ceil(block) * block };
    let host_dtb = page_round(dtb);
    let mut reservations = alloc::vec![("xenith", hypervisor), ("host DTB", host_dtb)];
    reservations.extend(info.modules.iter().map(|m| ("module", page_round(m.region))));
    reservations.extend(info.reserved.iter().map(|r| ("firmware", page_round(r.region))));
    for (_, r) in &reservations {
        // Reservations outside RAM (firmware regions, modules in flash) reserve nothing.
        let _ = free.reserve(r.base, r.size);
    }
    let ram_total: u64 = info.memory.iter().map(|r| r.size).sum();
    let extra_heap = (ram_total / 256).min(64 * MIB) & !(block - 1);
    let topology = DmaTopology::from_dt(dt).map_err(|e| format!("DMA topology: {e}"))?;
    Ok(Plan {
        cmdline,
        ignored_options,
        spectre_entry_all,
        dom0_max_vcpus,
        console: console(info),
        board: board(dt),
        hypervisor,
        host_dtb,
        reservations,
        free,
        ram_total,
        extra_heap,
        topology,
        its_emulation,
        emulated_its: None,
    })
}

/// `r` lies wholly inside one of the DT's RAM banks.
fn in_ram(info: &BootInfo, r: Region) -> bool {
    info.memory.iter().any(|b| r.base >= b.base && r.base.saturating_add(r.size) <= b.base + b.size)
}

/// dom0's kernel module, checked to lie in RAM (its bytes may be read).
pub fn dom0_kernel(info: &BootInfo) -> Result<&BootModule, String> {
    let k = info.kernel().ok_or_else(|| dom0::BuildError::NoKernel.to_string())?;
    if !in_ram(info, k.region) {
        return Err(format!("dom0 kernel module {} at {} is not in RAM", k.path, k.region));
    }
    Ok(k)
}

/// What [`Plan::decide`] gives: who owns each IOMMU, dom0's device tree, what dom0's stage 2
/// maps besides its RAM.
pub struct Decisions {
    pub ownership: OwnershipTable,
    pub dom0_dt: Dom0DtSpec,
    /// (why, path) of devices that master memory by physical address, kept from dom0.
    pub kept_masters: Vec<(String, &'static str)>,
    pub dom0_dtb: Vec<u8>,
    /// (node path, page-rounded range) of every device region dom0's stage 2 maps.
    pub dom0_devices: Vec<(String, Region)>,
    /// dom0's RAM is mapped with pages only: a hypervisor-owned IOMMU walks the same tables.
    pub page_granular: bool,
}

impl Plan {
    /// dom0's RAM and where its kernel, initrd and DTB go. `kernel` is the kernel module's
    /// bytes (its header decides the load offset); the RAM comes out of [`Plan::free`].
    pub fn dom0_layout(&mut self, info: &BootInfo, kernel: &[u8]) -> Result<Dom0Layout, String> {
        let k = dom0_kernel(info)?;
        if let Some(i) = info.ramdisk() {
            if !in_ram(info, i.region) {
                return Err(format!("dom0 initrd module {} at {} is not in RAM", i.path, i.region));
            }
        }
        let dom0_mem = self.cmdline.dom0_mem.and_then(|m| m.target());
        dom0::plan(&mut self.free, dom0_mem, k.region.base, kernel, k.region.size, info.ramdisk().map(|i| i.region.size))
            .map_err(|e| e.to_string())
    }

    /// Who owns each IOMMU given the kinds the hypervisor has a working driver for, dom0's DT
    /// for its `ram` (and `initrd`, where it was placed) with `vcpus` vCPUs, and the device
    /// regions dom0's stage 2 maps.
    pub fn decide(&self, dt: &HostDt, info: &BootInfo, drivers: &[IommuKind], ram: Region, initrd: Option<Region>, vcpus: usize) -> Result<Decisions, String> {
        let ownership = OwnershipTable::decide(&self.topology, PlatformDefaults::for_dt(dt), &self.cmdline.iommu_owner, drivers);
        let grant_table = Region { base: self.hypervisor.base, size: GNTTAB_SIZE };
        // Xen 4.17 lists extended regions for 64-bit dom0s only; a board whose root bus has one
        // address cell (the 32-bit ones, e.g. the Snow) could not express them in /hypervisor's
        // reg either.
        let wide_root = dt.prop_u32(dt.root(), "#address-cells").ok().flatten().unwrap_or(2) >= 2;
        let ext = if wide_root { extended_regions(dt, DOM0_IPA_BITS, &[grant_table]) } else { Vec::new() };
        let mut spec = Dom0DtSpec {
            memory: alloc::vec![ram],
            bootargs: info.dom0_cmdline().map(String::from),
            initrd,
            grant_table,
            extended_regions: ext,
            evtchn_ppi: DOM0_EVTCHN_PPI,
            remove_nodes: self.console.kept_node().map(String::from).into_iter().collect(),
            strip_props: Vec::new(),
            disable_nodes: Vec::new(),
            vcpus: Some(vcpus as u32),
        };
        spec.add_edits(&ownership.dom0_dt_edits());
        let masters = match &self.emulated_its {
            Some(_) => physical_masters_except(dt, &["arm,gic-v3-its"]),
            None => physical_masters(dt),
        };
        spec.remove_nodes.extend(masters.kept.iter().map(|(p, _)| p.clone()));
        spec.strip_props.extend(masters.strip.iter().cloned());
        if let Board::Exynos5250 { .. } = self.board {
            // The MCT drives the arch timer's counter: dom0 must not stop or reprogram it.
            for n in dt.find_compatible("samsung,exynos4210-mct") {
                let p = dt.path(n);
                if !spec.remove_nodes.contains(&p) {
                    spec.remove_nodes.push(p);
                }
            }
        }
        let dom0_dtb = build_dom0_dt(dt, &spec).map_err(|e| format!("dom0 device tree: {e}"))?;
        if dom0_dtb.len() as u64 > DTB_ROOM {
            return Err(dom0::BuildError::DtbTooLarge { size: dom0_dtb.len() as u64 }.to_string());
        }
        let hidden = |path: &str| {
            path == info.gic.path || spec.remove_nodes.iter().any(|r| path == r || path.starts_with(&format!("{r}/")))
        };
        let its_path = self.emulated_its.as_ref().map(|(p, _)| p.as_str());
        let mut dom0_devices: Vec<(String, Region)> = dt
            .device_regions()
            .into_iter()
            .filter(|d| !hidden(&d.path) && Some(d.path.as_str()) != its_path)
            // An IOMMU dom0 drives nested keeps its node, but its registers are emulated.
            .filter(|d| ownership.owner_of_iommu(&d.path) != Some(IommuOwner::Nested))
            .map(|d| (d.path.clone(), page_round(d.region)))
            .filter(|(_, r)| r.size != 0 && !in_ram(info, *r))
            .collect();
        if let Some((path, doorbell)) = &self.emulated_its {
            dom0_devices.push((format!("{path} (doorbell page)"), Region { base: *doorbell, size: 4096 }));
        }
        let page_granular =
            ownership.topology.iommus.iter().any(|i| ownership.hypervisor_drives(&i.path));
        Ok(Decisions { ownership, kept_masters: masters.kept, dom0_dt: spec, dom0_dtb, dom0_devices, page_granular })
    }
}
