//! The boot plan: what the boot CPU decides from the host DT and the command line before it
//! writes anything, as plain data (ARCHITECTURE.md: plan -> decide -> build -> start). The
//! architecture code executes it: it probes hardware, copies modules, writes page tables and
//! enters the guests. Everything here runs on the host too, so the plans for QEMU virt's DTs and
//! the Snow's are host-tested.
//!
//! Two steps, because one decision needs the hardware in between: [`plan`] reads the DT and the
//! command line (console, reservations, free memory, dom0's layout, the DMA topology);
//! [`Plan::decide_on_hardware`] then probes the IOMMUs the topology names through the
//! architecture contract, and [`Plan::decide`] takes the drivers that answered and gives the
//! ownership table, dom0's device tree and its stage-2 device map. What needs the hardware (the
//! probes, taking an SMMU or the ITS over, reading PCI IDs, attaching streams) is asked of
//! [`Arch`]; what to do with the answers is decided here.

pub mod bundle;
pub mod exynos5250;
#[cfg(test)]
mod tests;

use crate::contract::{Arch, CpuStart};
use crate::domain::dom0::{self, Dom0Layout, DTB_ROOM};
use crate::domain::registry::Domains;
use crate::domain::vcpu::Cpus;
use crate::domain::{DomId, Domain, RamBank, RamBanks};
use crate::log;
use crate::dt::boot_info::{BootInfo, BootModule, GicInfo};
use crate::irq::vgic::domains::VgicConfig;
use crate::dt::cmdline::HypervisorCmdline;
use crate::dt::dom0::{build_dom0_dt, extended_regions, physical_masters, physical_masters_except, Dom0DtSpec};
use crate::dt::{HostDt, Region};
use crate::iommu::policy::{DmaTopology, IommuKind, IommuOwner, OwnershipTable, PlatformDefaults};
use crate::mm::{FrameAlloc, RegionAllocator, S2Attr, Stage2, Stage2Config, TlbOps};
use platform::PhysMem;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// Size of the grant-table region advertised to dom0 (64 frames, Xen's default maximum).
pub const GNTTAB_SIZE: u64 = 64 * 4096;
/// INTID of dom0's event-channel PPI (as Xen allocates it for dom0).
pub const DOM0_EVTCHN_PPI: u32 = 16;
/// dom0's guest physical address size (its stage 2's input range).
pub const DOM0_IPA_BITS: u8 = Stage2Config::DOMAIN.ipa_bits;
/// dom0's VMID (a domU's is its domain id plus this).
pub const DOM0_VMID: u16 = 1;
/// dom0's vCPU count when the command line does not say.
pub const DOM0_DEFAULT_VCPUS: usize = 1;
/// Options xenith acts on that [`HypervisorCmdline`] leaves among the unknown ones.
const OWN_UNPARSED: [&str; 2] = ["gnttab_max_frames=", "gnttab_max_maptrack_frames="];
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
    /// it from dom0; secondary CPUs are released through SYSRAM, reset goes through the PMU, the
    /// log is also kept in a RAM ring (the Snow has no reachable UART).
    Exynos5250(exynos5250::Blocks),
}

impl Board {
    /// The RAM log ring's place, on boards that keep one.
    pub fn log_ring(&self) -> Option<Region> {
        match self {
            Board::Exynos5250(b) => b.log_ring,
            Board::Generic => None,
        }
    }
}

/// The compatible of the RAM log ring's node under dom0's /reserved-memory.
pub const LOG_RING_COMPATIBLE: &str = "xenith,log-ring";

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

/// `r` (page-aligned) less the 4 KiB pages `pages`: the pieces left, in order.
pub fn without_pages(r: Region, pages: &[u64]) -> Vec<Region> {
    let mut out = Vec::new();
    let (mut at, end) = (r.base, r.base.saturating_add(r.size));
    let mut holes: Vec<u64> = pages.iter().copied().filter(|&p| p >= r.base && p < end).collect();
    holes.sort_unstable();
    for h in holes {
        if h > at {
            out.push(Region { base: at, size: h - at });
        }
        at = at.max(h + 0x1000);
    }
    if end > at {
        out.push(Region { base: at, size: end - at });
    }
    out
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

fn board(dt: &HostDt, info: &BootInfo) -> Result<Board, String> {
    if dt.is_compatible(dt.root(), "samsung,exynos5250") {
        Ok(Board::Exynos5250(exynos5250::Blocks::from_dt(dt, info)?))
    } else {
        Ok(Board::Generic)
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
    let (spectre_entry_all, dom0_max_vcpus, its_emulation) = (cmdline.spectre_entry_all, cmdline.dom0_max_vcpus, !cmdline.its_hide);

    let mut free = RegionAllocator::new();
    for r in &info.memory {
        free.add(r.base, r.size).map_err(|e| format!("memory bank {r}: {e}"))?;
    }
    let block = 2 * MIB;
    let hypervisor = Region { base: image.base & !(block - 1), size: (image.base + image.size - (image.base & !(block - 1))).div_ceil(block) * block };
    // A module inside xenith's memory (its image, BSS, stacks, static heap, and the rest of
    // their 2 MiB blocks, which hold the grant-table region) would be overwritten by xenith.
    for m in &info.modules {
        if m.region.size != 0 && m.region.base < hypervisor.base + hypervisor.size && hypervisor.base < m.region.base.saturating_add(m.region.size) {
            return Err(format!(
                "boot module {} at {} overlaps xenith's memory {hypervisor} (image, BSS, stacks, heap): the loader put it where xenith runs",
                m.path, m.region
            ));
        }
    }
    let host_dtb = page_round(dtb);
    let board = board(dt, info)?;
    let mut reservations = alloc::vec![("xenith", hypervisor), ("host DTB", host_dtb)];
    if let Some(ring) = board.log_ring() {
        reservations.push(("RAM log ring", ring));
    }
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
        board,
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
    /// (what, range) of hypervisor memory dom0's stage 2 maps read-only (the RAM log ring).
    pub dom0_readonly: Vec<(String, Region)>,
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
            reserved_memory: Vec::new(),
        };
        spec.add_edits(&ownership.dom0_dt_edits());
        let masters = match &self.emulated_its {
            Some(_) => physical_masters_except(dt, &["arm,gic-v3-its"]),
            None => physical_masters(dt),
        };
        spec.remove_nodes.extend(masters.kept.iter().map(|(p, _)| p.clone()));
        spec.strip_props.extend(masters.strip.iter().cloned());
        if let Some(ring) = self.board.log_ring() {
            // dom0 may read the log (/dev/mem); `no-map` keeps it out of its RAM.
            spec.reserved_memory.push((format!("xenith-log@{:x}", ring.base), LOG_RING_COMPATIBLE, ring));
        }
        if let Board::Exynos5250(_) = self.board {
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
        let trapped = match &self.board {
            Board::Exynos5250(b) => b.trapped_pages(),
            Board::Generic => Vec::new(),
        };
        let mut dom0_devices: Vec<(String, Region)> = dt
            .device_regions()
            .into_iter()
            .filter(|d| !hidden(&d.path) && Some(d.path.as_str()) != its_path)
            // An IOMMU dom0 drives nested keeps its node, but its registers are emulated.
            .filter(|d| ownership.owner_of_iommu(&d.path) != Some(IommuOwner::Nested))
            .map(|d| (d.path.clone(), page_round(d.region)))
            .filter(|(_, r)| r.size != 0 && !in_ram(info, *r))
            // dom0's accesses to the combiner and the power domains trap: the hypervisor keeps
            // its SysMMUs' fault inputs and follows their power.
            .flat_map(|(p, r)| without_pages(r, &trapped).into_iter().map(move |r| (p.clone(), r)))
            .collect();
        if let Some((path, doorbell)) = &self.emulated_its {
            dom0_devices.push((format!("{path} (doorbell page)"), Region { base: *doorbell, size: 4096 }));
        }
        let page_granular =
            ownership.topology.iommus.iter().any(|i| ownership.hypervisor_drives(&i.path));
        let dom0_readonly = self.board.log_ring().map(|r| ("RAM log ring".into(), r)).into_iter().collect();
        Ok(Decisions { ownership, kept_masters: masters.kept, dom0_dt: spec, dom0_dtb, dom0_devices, dom0_readonly, page_granular })
    }
}

/// The IOMMU kinds the hypervisor can drive here: every enabled SMMUv3 and Exynos SysMMU of
/// `topo` is probed through `arch` (read-only). An SMMUv3 it cannot drive (no stage 2, say) is
/// reported and left to dom0, as on Xen; one IOMMU of a kind that answers makes that kind's
/// driver available (a SysMMU that did not answer, its power domain off, say, is then left
/// blocked when it is brought up).
pub fn probe_iommus(arch: &dyn Arch, topo: &DmaTopology) -> Vec<IommuKind> {
    type Probe<'a> = &'a dyn Fn(u64) -> Result<String, String>;
    let probes: [(IommuKind, Probe<'_>, &str); 2] = [
        (IommuKind::SmmuV3, &|b| arch.probe_smmu(b), ": falling back: dom0 keeps this SMMU and its DMA is not isolated by xenith"),
        (IommuKind::ExynosSysmmu, &|b| arch.probe_sysmmu(b), ""),
    ];
    let mut kinds = Vec::new();
    for (kind, probe, fallback) in probes {
        let mut usable = false;
        for i in topo.iommus.iter().filter(|i| i.kind == kind && i.enabled) {
            let Some(reg) = i.regs.first() else { continue };
            match probe(reg.base) {
                Ok(f) => {
                    log!("{}: {f}", i.path);
                    usable = true;
                }
                Err(e) => log!("{}: {e}{fallback}", i.path),
            }
        }
        if usable {
            kinds.push(kind);
        }
    }
    kinds
}

/// An Exynos SysMMU's fault input on the interrupt combiner: its `interrupts` cells
/// <group bit> under a "samsung,exynos4210-combiner" parent.
fn combiner_input(dt: &HostDt, irqs: &[crate::dt::IrqSpec]) -> Option<(u32, u32)> {
    irqs.iter().find_map(|s| {
        let parent = dt.find_path(&s.controller)?;
        if !dt.is_compatible(parent, "samsung,exynos4210-combiner") {
            return None;
        }
        let (&g, &b) = (s.cells.first()?, s.cells.get(1)?);
        platform::exynos5250::combiner::CombinerIrq::new(g, b).ok().map(|i| (i.group, i.bit))
    })
}

/// The register base of the power domain an Exynos SysMMU's `power-domains` names, if it is one
/// of the board's `power_domains`.
fn sysmmu_power_domain(dt: &HostDt, path: &str, power_domains: &[Region]) -> Option<u64> {
    let node = dt.find_path(path)?;
    let phandle = *dt.prop_cells(node, "power-domains").ok()??.first()?;
    let pd = dt.find_phandle(phandle)?;
    let base = dt.reg(pd).ok()?.first()?.base;
    power_domains.iter().any(|r| r.base == base).then_some(base)
}

/// Bring up, through `arch`, every Exynos SysMMU `table` gives the hypervisor, over dom0's
/// memory (`ram`, and `readonly`): each is logged translating or left blocked (its master's DMA
/// stalls; it never bypasses; one whose power domain is off is attached when dom0 powers the
/// domain on). Returns the combiner inputs (group, bit) of all of them: dom0's view of the
/// combiner hides them.
pub fn start_sysmmus(arch: &dyn Arch, dt: &HostDt, table: &OwnershipTable, board: &Board, ram: Region, readonly: &[Region]) -> Vec<(u32, u32)> {
    let Board::Exynos5250(blocks) = board else { return Vec::new() };
    let specs: Vec<crate::contract::SysmmuStart> = table
        .topology
        .iommus
        .iter()
        .filter(|i| i.kind == IommuKind::ExynosSysmmu && table.hypervisor_drives(&i.path))
        .filter_map(|i| {
            let base = i.regs.first()?.base;
            let power_domain = sysmmu_power_domain(dt, &i.path, &blocks.power_domains);
            Some(crate::contract::SysmmuStart { path: i.path.clone(), base, irq: combiner_input(dt, &i.interrupts), power_domain })
        })
        .collect();
    let mut up = Vec::new();
    for (s, r) in specs.iter().zip(arch.start_sysmmus(blocks.combiner.base, &specs, ram, readonly)) {
        up.extend(s.irq);
        match r {
            Ok(v) => {
                let irq = s.irq.map(|(g, b)| format!("faults on combiner {g}/{b} (SPI {g})")).unwrap_or_else(|| "no fault interrupt".into());
                log!("{}: {v} translating through dom0's shadow table; {irq}", s.path);
            }
            Err(e) => {
                let later = if s.power_domain.is_some() { "; probed again when dom0 powers its domain on" } else { "" };
                log!("{}: left blocked (its master's DMA stalls): {e}{later}", s.path)
            }
        }
    }
    up
}

/// The StreamID bits an SMMU taken over must cover: the highest StreamID a master's
/// `iommu-map` names (`None` without one).
fn stream_id_bits(topo: &DmaTopology) -> Option<u8> {
    let max_sid = topo.masters.iter().flat_map(|m| m.iommu_map.iter()).map(|e| e.sid_base.saturating_add(e.length)).max();
    max_sid.map(|s| (32 - s.saturating_sub(1).leading_zeros()).max(1) as u8)
}

/// Take over, through `arch`, every SMMUv3 `table` gives the hypervisor (all streams blocked
/// until attached). False if one could not be taken: every one taken is then given back, and
/// the caller decides again without the driver.
pub fn take_iommus(arch: &dyn Arch, table: &OwnershipTable) -> bool {
    let topo = &table.topology;
    let bits = stream_id_bits(topo);
    let mut ok = true;
    for i in topo.iommus.iter().filter(|i| i.kind == IommuKind::SmmuV3) {
        if !table.hypervisor_drives(&i.path) {
            continue;
        }
        let Some(reg) = i.regs.first() else { continue };
        match arch.take_smmu(&i.path, reg.base, bits) {
            Ok(()) => log!("{}: enabled, unknown streams abort (GBPA.ABORT)", i.path),
            Err(e) => {
                log!("{}: cannot take over: {e}; dom0 keeps it", i.path);
                ok = false;
            }
        }
    }
    if !ok {
        arch.release_smmus();
    }
    ok
}

/// Attach, through `arch`, every stream of dom0's devices behind an SMMU the hypervisor drives
/// to dom0's stage 2 (`p2m`: VMID, VTTBR, VTCR). A PCI host bridge's requester IDs are those
/// of the functions found on its bus 0. Returns the streams of the SMMUs dom0 drives nested,
/// per SMMU path.
pub fn attach_dom0_streams(arch: &dyn Arch, dt: &HostDt, table: &OwnershipTable, p2m: (u16, u64, u64)) -> Vec<(String, Vec<u32>)> {
    let (vmid, vttbr, vtcr) = p2m;
    let mut nested: Vec<(String, Vec<u32>)> = Vec::new();
    let topo = &table.topology;
    for m in topo.masters.iter().filter(|m| m.enabled && m.problem.is_none()) {
        let mut sids: Vec<(usize, u32)> = Vec::new();
        for r in &m.iommus {
            if let Some(&sid) = r.specifier.first() {
                sids.push((r.iommu, sid));
            }
        }
        if !m.iommu_map.is_empty() {
            let ecam = dt.find_path(&m.path).and_then(|n| dt.reg(n).ok()).and_then(|r| r.first().copied());
            if let Some(ecam) = ecam {
                for (devfn, id) in arch.pci_bus0_functions(ecam.base) {
                    if let Some(s) = m.pci_rid_to_stream(devfn) {
                        log!("{}: PCI 00:{:02x}.{} ({:04x}:{:04x}) is stream {:#x}", m.path, devfn >> 3, devfn & 7, id & 0xffff, id >> 16, s.1);
                        sids.push(s);
                    }
                }
            }
        }
        for (idx, sid) in sids {
            let Some(iommu) = topo.iommus.get(idx) else { continue };
            if !table.hypervisor_drives(&iommu.path) {
                continue;
            }
            match arch.attach_stream(&iommu.path, sid, vmid, vttbr, vtcr) {
                Ok(()) => log!("{}: stream {sid:#x} ({}) translates through dom0's stage 2", iommu.path, m.path),
                Err(e) => {
                    log!("{}: stream {sid:#x} ({}) left blocked: {e}", iommu.path, m.path);
                    continue;
                }
            }
            if table.owner_of_iommu(&iommu.path) == Some(IommuOwner::Nested) {
                match nested.iter_mut().find(|(p, _)| *p == iommu.path) {
                    Some((_, v)) => v.push(sid),
                    None => nested.push((iommu.path.clone(), alloc::vec![sid])),
                }
            }
        }
    }
    nested
}

/// dom0's emulated SMMUs, through `arch`: one per SMMU it drives nested (`nested`, from
/// [`attach_dom0_streams`]), at the physical SMMU's address, for the streams found at boot;
/// the SPIs its node names for events and global errors are injected by the emulation.
pub fn attach_vsmmus(arch: &dyn Arch, dt: &HostDt, table: &OwnershipTable, dom: &mut Domain, nested: Vec<(String, Vec<u32>)>, p2m: (u16, u64, u64), ipa_bits: u8) {
    for (path, sids) in nested {
        let Some(i) = table.topology.iommus.iter().find(|i| i.path == path) else { continue };
        let Some(reg) = i.regs.first() else { continue };
        let names = dt.find_path(&path).and_then(|n| dt.prop_strings(n, "interrupt-names").ok().flatten()).unwrap_or_default();
        let spi = |name: &str| {
            let at = names.iter().position(|n| *n == name)?;
            i.interrupts.get(at)?.gic_intid()
        };
        let (event, gerror) = (spi("eventq"), spi("gerror"));
        let n = sids.len();
        match arch.attach_vsmmu(dom, &path, reg.base, sids, p2m, ipa_bits, event, gerror) {
            Ok(()) => log!(
                "{path}: dom0 gets an emulated SMMUv3 (stage 1, nested over its stage 2) at {:#x} for {n} stream(s){}",
                reg.base,
                match event {
                    Some(e) => format!(", event interrupt INTID {e}"),
                    None => ", no event interrupt".into(),
                }
            ),
            Err(e) => log!("{path}: no emulated SMMU for dom0: {e}; its streams translate through dom0's stage 2 alone"),
        }
    }
}

/// Whether a hypervisor-driven SMMUv3 walks the domains' stage-2 tables (what the toolstack's
/// physinfo reports as the IOMMU sharing the p2m).
pub fn iommu_shares_p2m(table: &OwnershipTable) -> bool {
    table.topology.iommus.iter().any(|i| i.kind == IommuKind::SmmuV3 && table.owner_of_iommu(&i.path) == Some(IommuOwner::Hypervisor))
}

/// dom0, the hardware domain: its RAM `ram` direct-mapped (IPA == PA), `vcpus` vCPUs, its
/// stage 2 `p2m`, and a grant table of at most the frames that fit in the region its DT names
/// for them (Xen on Arm caps dom0's table the same way).
pub fn dom0_domain(ram: Region, vcpus: usize, p2m: Stage2) -> Domain {
    let mut banks = RamBanks::default();
    banks.push(RamBank { ipa: ram.base, pa: ram.base, size: ram.size });
    let mut dom = Domain::new(0, true, true, banks);
    let (gnttab_frames, maptrack_frames) = crate::domain::grant::limits();
    *dom.grants.get_mut() = crate::domain::grant::GrantTable::with_limits(gnttab_frames.min((GNTTAB_SIZE / 4096) as u32), maptrack_frames);
    dom.max_vcpus = vcpus as u32;
    *dom.p2m.get_mut() = Some(p2m);
    dom
}

/// Where the machine's memory went once the guests are built, for the boot log: RAM is the
/// hypervisor's (image, heap, page tables, queues, the host DTB), the guests', firmware's
/// (`info.reserved`) or free.
pub struct MemoryUse {
    /// RAM in the guests' banks.
    pub guests: u64,
    /// RAM left in the frame pool.
    pub free: u64,
    /// The image's static heap, and how much of the whole heap is in use.
    pub static_heap: u64,
    pub heap_used: u64,
}

impl Plan {
    /// The boot log's memory line for `used`.
    pub fn memory_line(&self, info: &BootInfo, used: &MemoryUse) -> String {
        let firmware: u64 = info.reserved.iter().map(|r| page_round(r.region).size).sum();
        format!(
            "memory: xenith uses {} MiB of {} MiB (image {} MiB with a {} MiB static heap, {} MiB more heap, {} KiB of it in use; page tables, SMMU queues and the host DTB the rest); guests {} MiB, free {} MiB",
            self.ram_total.saturating_sub(used.free + used.guests + firmware) / MIB,
            self.ram_total / MIB,
            self.hypervisor.size / MIB,
            used.static_heap / MIB,
            self.extra_heap / MIB,
            used.heap_used / 1024,
            used.guests / MIB,
            used.free / MIB
        )
    }

    /// RAM at and above `limit` (a 32-bit hypervisor's addressing limit) is taken out of
    /// [`Plan::free`]: none of it becomes table frames, heap or dom0's RAM. Returns how much
    /// there was.
    pub fn set_aside_ram_above(&mut self, info: &BootInfo, limit: u64) -> Result<u64, String> {
        let high: u64 = info.memory.iter().map(|r| (r.base + r.size).saturating_sub(r.base.max(limit))).sum();
        if high != 0 {
            self.free.reserve(limit, (1u64 << 40).saturating_sub(limit)).map_err(|e| format!("cannot set RAM above {} GiB aside: {e}", limit >> 30))?;
        }
        Ok(high)
    }

    /// dom0's emulated GICv3 ITS: unless `its=hide`, the physical ITS is taken for the
    /// hypervisor through `arch` and dom0 gets an emulated one at its address
    /// ([`Plan::emulated_its`] is then set). One that cannot be used is reported and dom0 gets
    /// none; its PCI devices fall back to INTx, as with `its=hide`. Returns whether dom0 gets it.
    pub fn take_its(&mut self, arch: &dyn Arch, dt: &HostDt, info: &BootInfo, vcpus: usize) -> bool {
        self.emulated_its = None;
        if !self.its_emulation {
            return false;
        }
        match arch.take_its(dt, info, vcpus) {
            Ok(its) => self.emulated_its = Some(its),
            Err(e) => log!("ITS: {e}: no emulated ITS for dom0 (its devices fall back to INTx)"),
        }
        self.emulated_its.is_some()
    }

    /// [`Plan::decide`] on this machine: the hypervisor drives every SMMUv3 that `arch`'s
    /// probe finds usable for stage 2 and takes them over; if one cannot be taken over after
    /// all, dom0 gets every SMMU (decided again without the driver).
    pub fn decide_on_hardware(&self, arch: &dyn Arch, dt: &HostDt, info: &BootInfo, ram: Region, initrd: Option<Region>, vcpus: usize) -> Result<Decisions, String> {
        let drivers = probe_iommus(arch, &self.topology);
        let decisions = self.decide(dt, info, &drivers, ram, initrd, vcpus)?;
        if take_iommus(arch, &decisions.ownership) {
            return Ok(decisions);
        }
        self.decide(dt, info, &[], ram, initrd, vcpus)
    }
}

/// Boot-time domUs (Xen's dom0less `/chosen/domU*` nodes): each gets its RAM, its DT, its
/// vGICv3, an emulated UART if asked, and one of the CPUs dom0 does not use (from `cpus`),
/// where `arch` starts its vCPU 0; each goes into `domains`. One that cannot be built or has
/// no CPU is reported and skipped: dom0 boots anyway. Returns the ids started.
pub fn start_domus(arch: &dyn Arch, dt: &HostDt, domains: &Domains, cpus: &Cpus, host_it_lines: u32) -> Vec<DomId> {
    use crate::domain::domu::{build_domu, find_domus};
    use crate::domain::vuart::{Vpl011, GUEST_PL011_BASE, GUEST_PL011_SIZE};
    let mut started = Vec::new();
    let specs = match find_domus(dt) {
        Ok(s) => s,
        Err(e) => {
            log!("dom0less: {e}: no domU started");
            return started;
        }
    };
    // A CPU is used up only by a domU that starts on it.
    let mut spare = cpus.spare().into_iter().peekable();
    for (i, spec) in specs.iter().enumerate() {
        let id = (i + 1) as DomId;
        let vmid = crate::domain::registry::vmid_of(id);
        // Under sched=credit the scheduler gives its vCPU a home CPU it shares (and its other
        // vCPUs theirs at the guest's PSCI CPU_ON); under null it needs a CPU of its own.
        let shared = crate::sched::SCHED.policy() == crate::sched::SchedPolicy::Credit;
        if spec.vcpus != 1 && !shared {
            log!("{}: asks for {} vCPUs; under sched=null xenith runs dom0less guests with one (sched=credit runs more): not started", spec.name, spec.vcpus);
            continue;
        }
        if spec.vcpus as usize > crate::domain::vcpu::MAX_VCPUS {
            log!("{}: asks for {} vCPUs; a domain has at most {}: not started", spec.name, spec.vcpus, crate::domain::vcpu::MAX_VCPUS);
            continue;
        }
        let (cpu, mpidr) = if shared {
            match crate::sched::SCHED.add(crate::sched::VcpuRef::new(id, 0), None, u64::MAX) {
                Ok(c) => (c, cpus.host_mpidr(c)),
                Err(e) => {
                    log!("{}: the scheduler has no place for its vCPU ({e:?}): not started", spec.name);
                    continue;
                }
            }
        } else {
            let Some(&(cpu, mpidr)) = spare.peek() else {
                log!("{}: no CPU left (dom0 has {} of {}; xenith runs one vCPU per CPU): not started", spec.name, cpus.dom0_vcpus(), cpus.host_cpus());
                continue;
            };
            (cpu, mpidr)
        };
        let mut built = None;
        arch.with_machine(&mut |m| built = Some(build_domu(spec, id, vmid, &mut *m.frames, m.mem, &mut *m.tlb)));
        let (mut dom, boot) = match built {
            Some(Ok(b)) => b,
            Some(Err(e)) => {
                log!("{}: cannot build d{id}: {e}: not started", spec.name);
                continue;
            }
            None => continue,
        };
        for b in dom.ram().as_slice() {
            // The guest starts with its caches off: its kernel and DTB must be in memory.
            arch.clean_dcache_range(b.pa, b.size);
        }
        // Its own vGICv3 at Xen's guest addresses (virtual timer, event-channel PPI, the
        // vpl011's SPI), and the vpl011.
        let vgic = crate::irq::vgic::domains::domu_config(spec.vcpus, spec.vpl011, host_it_lines);
        if let Err(e) = arch.attach_vgic(&mut dom, &vgic) {
            log!("{}: {e}: d{id} not started", spec.name);
            continue;
        }
        let uart = Vpl011::new(id, |d, line| log!("DOM{d}: {line}"), arch.vpl011_irq());
        if spec.vpl011 && !dom.mmio.add(GUEST_PL011_BASE, GUEST_PL011_SIZE, alloc::boxed::Box::new(uart)) {
            log!("{}: vpl011 overlaps another device", spec.name);
        }
        let Some((vttbr, vtcr)) = dom.p2m.get_mut().as_ref().map(|p| (p.vttbr(), p.vtcr())) else { continue };
        let bank = dom.ram().as_slice().first().copied().unwrap_or_default();
        log!(
            "d{id} ({}): RAM {:#x}-{:#x} ({} MiB) at host {:#x}, kernel entry {:#x}, DTB at {:#x}, VMID {vmid}, {}vCPU 0 on CPU {cpu}",
            spec.name, bank.ipa, bank.ipa + bank.size, bank.size >> 20, bank.pa, boot.entry, boot.dtb,
            if spec.vpl011 { "vpl011, " } else { "" }
        );
        *dom.placement.get_mut() = crate::domain::Placement::new(cpu as u32);
        if domains.insert(dom).is_err() {
            log!("{}: domain {id} exists already: not started", spec.name);
            continue;
        }
        let start = CpuStart { cpu, mpidr, domain: id, vcpu: 0, vttbr, vtcr, entry: boot.entry, context: boot.dtb };
        if !shared {
            spare.next();
        }
        match arch.start_cpu(&start) {
            Ok(()) => started.push(id),
            Err(e) => log!("{}: {e}: d{id} not started", spec.name),
        }
    }
    started
}

/// dom0's stage 2 as `decisions` say: every device region the hypervisor does not keep (a
/// region that cannot be mapped is logged and left out), then its RAM (`ram`, IPA == PA).
/// Returns the tables and how many device regions they map.
pub fn build_dom0_stage2(decisions: &Decisions, ram: Region, frames: &mut dyn FrameAlloc, mem: &dyn PhysMem, tlb: &mut dyn TlbOps) -> Result<(Stage2, usize), String> {
    let mut p2m = Stage2::new(DOM0_VMID, Stage2Config::DOMAIN, frames, mem).map_err(|e| format!("dom0 stage 2: {e}"))?;
    let mut mapped = 0usize;
    for (path, r) in &decisions.dom0_devices {
        if let Err(e) = p2m.map(r.base, r.base, r.size, S2Attr::DEVICE_RW, frames, mem, tlb) {
            log!("dom0 stage 2: cannot map {path} {r}: {e}");
            continue;
        }
        mapped += 1;
    }
    for (what, r) in &decisions.dom0_readonly {
        match p2m.map(r.base, r.base, r.size, S2Attr::RAM_RO, frames, mem, tlb) {
            Ok(()) => mapped += 1,
            Err(e) => log!("dom0 stage 2: cannot map the {what} {r} read-only: {e}"),
        }
    }
    // RAM last: devices behind an SMMU the hypervisor keeps walk these same tables and cannot
    // retry a DMA that meets a break-before-make window, so dom0's RAM (and whatever is mapped
    // later) uses pages only, and a page ballooned out or granted away never invalidates its
    // neighbours (ARCHITECTURE.md, principle 8). Device windows above keep their blocks (the
    // PCIe windows alone would take a GiB of tables in pages).
    if decisions.page_granular {
        p2m.set_page_granular();
    }
    p2m.map(ram.base, ram.base, ram.size, S2Attr::RAM_RWX, frames, mem, tlb).map_err(|e| format!("dom0 stage 2: RAM: {e}"))?;
    Ok((p2m, mapped))
}

/// dom0's vGIC size: the SPIs its DT names (each implemented SPI costs its GIC driver trapped
/// writes at boot; devices the hypervisor keeps are not in it), all of the host's
/// (`host_lines`) when the DT cannot bound them.
pub fn dom0_vgic_lines(dom0_dtb: &[u8], host_lines: u32) -> u32 {
    let (lines, why) = dom0_it_lines(dom0_dtb, host_lines);
    if let Some(why) = why {
        log!("{why}");
    }
    lines
}

/// dom0's interrupt controller, of the host's GIC version at the host's addresses: every SPI is
/// dom0's (direct-mapped hardware domain), so its devices' interrupts pass through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dom0Vgic {
    /// GICv2: a distributor with banked registers, the GICV frame mapped as dom0's GICC.
    V2 { it_lines: u32, vcpus: usize },
    /// GICv3: the distributor and the host's first redistributor region.
    V3(VgicConfig),
}

/// Which vGIC dom0 gets on a host whose GIC is `gic`, with `it_lines` (see
/// [`dom0_vgic_lines`]) and `vcpus`.
pub fn dom0_vgic(gic: &GicInfo, it_lines: u32, vcpus: usize) -> Result<Dom0Vgic, String> {
    if gic.version == 2 {
        return Ok(Dom0Vgic::V2 { it_lines, vcpus });
    }
    let rdist = gic.redistributors.first().ok_or("GICv3 without a redistributor region")?;
    Ok(Dom0Vgic::V3(VgicConfig {
        gicd: gic.distributor.base,
        gicr: rdist.base,
        gicr_size: rdist.size,
        it_lines,
        vcpus,
        passthrough_spis: true,
    }))
}

/// Once the guests are built, the boot modules (their kernels and initrds, copied into them)
/// are only memory: it goes back to `frames`. A module overlapping something still kept
/// (`keep`, firmware reservations) stays reserved. Returns the bytes released.
pub fn release_boot_modules(info: &BootInfo, keep: &[Region], frames: &mut RegionAllocator) -> u64 {
    let overlaps = |a: Region, b: Region| a.base < b.base.saturating_add(b.size) && b.base < a.base.saturating_add(a.size);
    let mut released = 0u64;
    for m in &info.modules {
        let r = page_round(m.region);
        if keep.iter().chain(info.reserved.iter().map(|f| &f.region)).any(|&k| overlaps(r, k)) {
            log!("module {}: kept reserved (it overlaps memory still in use)", m.path);
            continue;
        }
        match frames.unreserve(r.base, r.size) {
            Ok(()) => released += r.size,
            Err(e) => log!("module {}: cannot release {r}: {e}", m.path),
        }
    }
    released
}

/// Act on the command line and the DT's memory facts (the host RAM hypercalls may touch,
/// `noreboot`, the grant-table limits, what xen_version reports) and log what the boot CPU
/// found: the options ignored, RAM banks, modules and reservations.
pub fn apply_options(plan: &Plan, info: &BootInfo) {
    let ram: Vec<(u64, u64)> = info.memory.iter().map(|r| (r.base, r.size)).collect();
    crate::hypercall::set_host_ram(&ram);
    crate::hypercall::version::set_command_line(info.hypervisor_cmdline.as_deref().unwrap_or_default());
    crate::domain::lifecycle::set_noreboot(plan.cmdline.noreboot);
    // gnttab_max_frames= and gnttab_max_maptrack_frames=: the grant-table limits (grant.rs).
    for bad in crate::domain::grant::apply_options(plan.cmdline.unknown.iter().map(String::as_str)) {
        log!("command line: {bad}: not a number up to 2^20, keeping the default");
    }
    let (gnttab_frames, maptrack_frames) = crate::domain::grant::limits();
    log!("grant tables: at most {gnttab_frames} frames and {maptrack_frames} maptrack frames per domain");
    if !plan.ignored_options.is_empty() {
        log!("command line: ignoring options xenith does not act on: {}", plan.ignored_options.join(" "));
    }
    for (i, r) in info.memory.iter().enumerate() {
        log!("RAM bank {i}: {:#x}-{:#x} ({} MiB)", r.base, r.base + r.size, r.size >> 20);
    }
    for m in &info.modules {
        log!("module {}: {:?} at {}{}", m.path, m.kind, m.region, m.bootargs.as_deref().map(|a| format!(" \"{a}\"")).unwrap_or_default());
    }
    for (what, r) in &plan.reservations {
        log!("reserved: {what} {:#x}-{:#x}", r.base, r.base + r.size);
    }
}
