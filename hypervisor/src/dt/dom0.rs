//! dom0's device tree: the one place that decides what dom0 sees (the counterpart of Xen's domain_build.c).
//! It copies the host tree and edits it: dom0's RAM banks, its /chosen, a /hypervisor node, a PSCI node
//! that calls the hypervisor, and the removals the IOMMU ownership table and the hypervisor's own devices
//! require.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::fdt::{NodeId, Tree};
use super::{DtError, HostDt, Region};
use super::DeviceRegion;

/// What dom0's DT must change to match the table (feeds [`Dom0DtSpec`]; the IOMMU ownership table produces it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dom0DtEdits {
    /// IOMMU nodes dom0 must not see.
    pub remove_nodes: Vec<String>,
    /// (node path, property) pairs to delete: `iommus`, `iommu-map`, `iommu-map-mask` of masters behind them.
    pub strip_props: Vec<(String, String)>,
    /// Masters to mark `status = "disabled"` (their DMA cannot be contained).
    pub disable_nodes: Vec<String>,
    /// IOMMU MMIO dom0 drives: map it 1:1 into dom0.
    pub mmio_to_map: Vec<DeviceRegion>,
    /// IOMMU MMIO the hypervisor keeps: never map it into dom0.
    pub mmio_withheld: Vec<DeviceRegion>,
}

/// The `compatible` of the /hypervisor node: the Xen version whose ABI xenith speaks.
pub const XEN_COMPATIBLE: &[&str] = &["xen,xen-4.17", "xen,xen"];
/// The /psci compatibles given to dom0.
pub const PSCI_COMPATIBLE: &[&str] = &["arm,psci-1.0", "arm,psci-0.2", "arm,psci"];

/// What the dom0 builder decided; everything else is copied from the host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dom0DtSpec {
    /// dom0's RAM banks (one /memory node holds them all).
    pub memory: Vec<Region>,
    /// dom0's command line (`/chosen/bootargs`); `None` leaves none.
    pub bootargs: Option<String>,
    /// Where dom0's initrd was placed (`linux,initrd-start/end`).
    pub initrd: Option<Region>,
    /// The grant-table region (/hypervisor reg[0]).
    pub grant_table: Region,
    /// Extended regions (/hypervisor reg[1..]), for 64-bit dom0.
    pub extended_regions: Vec<Region>,
    /// INTID of the event-channel upcall PPI (16..=31).
    pub evtchn_ppi: u32,
    /// Nodes dom0 must not see (the hypervisor's UART, IOMMUs it keeps...), by path.
    pub remove_nodes: Vec<String>,
    /// (node path, property) pairs to delete.
    pub strip_props: Vec<(String, String)>,
    /// Nodes to mark `status = "disabled"`.
    pub disable_nodes: Vec<String>,
    /// dom0's vCPU count: /cpus keeps that many cpu nodes (the first ones), renumbered to
    /// dom0's vMPIDRs (vCPU n has Aff0 n), and loses its cpu-map. `None` copies the host's.
    pub vcpus: Option<u32>,
    /// (node name, compatible, range) added under /reserved-memory with `no-map`: memory of the
    /// hypervisor's dom0 may read but must not take as RAM (the RAM log ring).
    pub reserved_memory: Vec<(String, &'static str, Region)>,
}

impl Dom0DtSpec {
    /// Adds the IOMMU ownership table's edits.
    pub fn add_edits(&mut self, e: &Dom0DtEdits) {
        for p in &e.remove_nodes {
            if !self.remove_nodes.contains(p) {
                self.remove_nodes.push(p.clone());
            }
        }
        for p in &e.strip_props {
            if !self.strip_props.contains(p) {
                self.strip_props.push(p.clone());
            }
        }
        for p in &e.disable_nodes {
            if !self.disable_nodes.contains(p) {
                self.disable_nodes.push(p.clone());
            }
        }
    }
}

fn strings_value(list: &[&str]) -> Vec<u8> {
    let mut v = Vec::new();
    for s in list {
        v.extend_from_slice(s.as_bytes());
        v.push(0);
    }
    v
}

fn cells_value(cells: &[u32]) -> Vec<u8> {
    cells.iter().flat_map(|c| c.to_be_bytes()).collect()
}

/// Encodes (base, size) pairs with the given cell counts; error if a value does not fit.
fn reg_value(node: &str, regions: &[Region], na: u32, ns: u32) -> Result<Vec<u8>, DtError> {
    let mut cells = Vec::new();
    for r in regions {
        for (v, n) in [(r.base, na), (r.size, ns)] {
            if n == 1 && v > u32::MAX as u64 || n == 0 {
                return Err(DtError::BadProperty {
                    node: node.to_owned(),
                    prop: "reg".to_owned(),
                    reason: format!("{v:#x} does not fit in {n} cell(s) of the root bus"),
                });
            }
            if n >= 3 {
                cells.extend(core::iter::repeat_n(0, n as usize - 2));
            }
            if n >= 2 {
                cells.push((v >> 32) as u32);
            }
            cells.push(v as u32);
        }
    }
    Ok(cells_value(&cells))
}

/// Whether a node is a CPU PMU (`arm,*-pmu`/`arm,*-pmuv3`; not e.g. Samsung's power-management unit).
fn is_cpu_pmu(host: &HostDt, n: NodeId) -> bool {
    host.compatible(n)
        .iter()
        .any(|c| c.starts_with("arm,") && (c.ends_with("-pmu") || c.ends_with("-pmuv3")))
}

/// /cpus for `vcpus` vCPUs: the host's first `vcpus` cpu nodes, `reg` = the vCPU's index (its
/// vMPIDR affinity), the rest and /cpus/cpu-map (which names host CPUs) deleted.
fn dom0_cpus(host: &HostDt, t: &mut Tree, vcpus: u32) -> Result<(), DtError> {
    let bad = |reason: String| DtError::BadProperty { node: "/cpus".to_owned(), prop: "(node)".to_owned(), reason };
    let cpus = host.find_path("/cpus").ok_or_else(|| DtError::MissingNode("/cpus".to_owned()))?;
    let na = host.prop_u32(cpus, "#address-cells")?.unwrap_or(2);
    let cpu_nodes: Vec<NodeId> = host
        .children(cpus)
        .iter()
        .copied()
        .filter(|&c| {
            host.prop_str(c, "device_type").ok().flatten() == Some("cpu")
                || host.name(c).split('@').next() == Some("cpu")
        })
        .collect();
    if vcpus == 0 || vcpus as usize > cpu_nodes.len() {
        return Err(bad(format!("dom0 has {vcpus} vCPUs but the host DT lists {} CPUs", cpu_nodes.len())));
    }
    for (i, &c) in cpu_nodes.iter().enumerate() {
        if i < vcpus as usize {
            let reg = match na {
                1 => (i as u32).to_be_bytes().to_vec(),
                2 => (i as u64).to_be_bytes().to_vec(),
                _ => return Err(bad(format!("#address-cells = {na}"))),
            };
            t.set_prop(c, "reg", reg);
        } else {
            t.node_mut(c).deleted = true;
        }
    }
    for &c in host.children(cpus) {
        if host.name(c) == "cpu-map" {
            t.node_mut(c).deleted = true;
        }
    }
    Ok(())
}

/// Whether a node and all its ancestors are still in the tree being built.
fn is_live(t: &Tree, mut n: NodeId) -> bool {
    loop {
        let d = t.node(n);
        if d.deleted {
            return false;
        }
        match d.parent {
            Some(p) => n = p,
            None => return true,
        }
    }
}

/// Builds dom0's DT from the host's. See the module comment and [`Dom0DtSpec`].
/// Devices dom0 must not program because they read and write memory by physical address,
/// outside any SMMU stream the hypervisor controls: through them dom0 could reach the
/// hypervisor's memory or another domain's. Their nodes are removed from dom0's DT and their
/// registers left unmapped; references to them are stripped (PCI MSIs then fall back to INTx).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PhysicalMasters {
    /// (node path, why) of each device kept from dom0.
    pub kept: Vec<(String, &'static str)>,
    /// (node path, property) that refer to a kept device.
    pub strip: Vec<(String, String)>,
}

/// Compatibles of devices that master memory by physical address, and why.
const PHYSICAL_MASTERS: &[(&str, &str)] = &[
    ("arm,gic-v3-its", "GICv3 ITS: reads its command queue and tables by physical address"),
    ("qemu,fw-cfg-mmio", "QEMU fw_cfg: its DMA interface reads and writes by physical address"),
];

/// Find the devices of [`PhysicalMasters`] in the host DT.
pub fn physical_masters(host: &HostDt) -> PhysicalMasters {
    physical_masters_except(host, &[])
}

/// As [`physical_masters`], leaving out the devices with a compatible in `emulated` (dom0 gets
/// an emulated one at the same address: the node and references to it stay).
pub fn physical_masters_except(host: &HostDt, emulated: &[&str]) -> PhysicalMasters {
    let mut out = PhysicalMasters::default();
    let mut phandles = Vec::new();
    for &(compat, why) in PHYSICAL_MASTERS {
        if emulated.contains(&compat) {
            continue;
        }
        for n in host.find_compatible(compat) {
            if !host.is_enabled(n) {
                continue;
            }
            out.kept.push((host.path(n), why));
            if let Some(ph) = host.phandle(n) {
                phandles.push(ph);
            }
        }
    }
    // `msi-parent = <phandle ...>` names its controller first; `msi-map` entries are
    // <rid-base controller msi-base length> (the controller's #msi-cells is 1 for the ITS,
    // the only MSI controller kept here).
    for n in host.nodes() {
        let refers = |prop: &str, first: usize, stride: usize| {
            host.prop_cells(n, prop).ok().flatten().is_some_and(|c| c.iter().skip(first).step_by(stride).any(|ph| phandles.contains(ph)))
        };
        if refers("msi-parent", 0, usize::MAX) {
            out.strip.push((host.path(n), "msi-parent".to_owned()));
        }
        if refers("msi-map", 1, 4) {
            out.strip.push((host.path(n), "msi-map".to_owned()));
        }
    }
    out
}

/// The DeviceIDs devices present to the MSI controller with phandle `controller`: the output
/// ranges of every `msi-map` entry (<rid-base controller msi-base length>) that names it, and
/// the specifier of every `msi-parent = <controller id>`. Sorted (first, count) pairs.
pub fn msi_device_ids(host: &HostDt, controller: u32) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for n in host.nodes() {
        if let Ok(Some(cells)) = host.prop_cells(n, "msi-map") {
            for e in cells.chunks_exact(4) {
                if e[1] == controller && e[3] != 0 {
                    out.push((e[2], e[3]));
                }
            }
        }
        if let Ok(Some(cells)) = host.prop_cells(n, "msi-parent") {
            if let [ph, id] = cells.as_slice() {
                if *ph == controller {
                    out.push((*id, 1));
                }
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Smallest extended region offered (Xen's minimum).
pub const EXT_REGION_MIN: u64 = 64 << 20;
/// Most extended regions offered.
pub const EXT_REGIONS_MAX: usize = 128;

/// dom0's extended regions, as Xen 4.17 finds them for a dom0 behind an IOMMU: the guest
/// physical space below `2^ipa_bits` that no `reg` of the host DT (RAM, devices, reserved
/// memory) and no PCI window uses, nor any of `also_used` (the grant-table region), cut to
/// 2 MiB boundaries, each at least [`EXT_REGION_MIN`]. dom0 maps grants and foreign pages
/// there instead of ballooning its RAM out.
pub fn extended_regions(host: &HostDt, ipa_bits: u8, also_used: &[Region]) -> Vec<Region> {
    const MIB2: u64 = 2 << 20;
    let limit = 1u64 << ipa_bits.min(63);
    let mut used: Vec<(u64, u64)> = Vec::new();
    let mut add = |r: Region| {
        let start = r.base & !0xfff;
        let end = r.base.saturating_add(r.size).saturating_add(0xfff) & !0xfff;
        if end > start {
            used.push((start, end));
        }
    };
    for d in host.device_regions() {
        add(d.region);
    }
    // RAM and reserved memory (device_regions leaves those out).
    for id in host.nodes() {
        if host.prop(id, "reg").is_none() || id == host.root() {
            continue;
        }
        let under_memory = {
            let mut cur = id;
            let mut hit = false;
            while let Some(p) = host.parent(cur) {
                if p == host.root() {
                    let name = host.name(cur).split('@').next().unwrap_or("");
                    hit = name == "memory" || name == "reserved-memory" || host.prop_str(cur, "device_type").ok().flatten() == Some("memory");
                    break;
                }
                cur = p;
            }
            hit
        };
        if under_memory {
            for r in host.reg(id).unwrap_or_default() {
                add(r);
            }
        }
    }
    for &r in also_used {
        add(r);
    }
    used.sort_unstable();
    let mut out = Vec::new();
    let mut cursor = 0u64;
    let offer = |s: u64, e: u64, out: &mut Vec<Region>| {
        let s = s.saturating_add(MIB2 - 1) & !(MIB2 - 1);
        let e = e & !(MIB2 - 1);
        if e > s && e - s >= EXT_REGION_MIN && out.len() < EXT_REGIONS_MAX {
            out.push(Region { base: s, size: e - s });
        }
    };
    for (s, e) in used {
        if s >= limit {
            break;
        }
        if s > cursor {
            offer(cursor, s, &mut out);
        }
        cursor = cursor.max(e);
    }
    if cursor < limit {
        offer(cursor, limit, &mut out);
    }
    out
}

pub fn build_dom0_dt(host: &HostDt, spec: &Dom0DtSpec) -> Result<Vec<u8>, DtError> {
    let mut t: Tree = host.tree().clone();
    let root = host.root();
    let (na, ns) = host.cells_of_bus(root)?;
    t.mem_reserve.clear();
    let find = |p: &str| {
        host.find_path(p)
            .ok_or_else(|| DtError::MissingNode(p.to_owned()))
    };

    // Nodes removed wholesale.
    for n in host.nodes() {
        let top_level = host.parent(n) == Some(root);
        let is_memory = top_level
            && (host.name(n).split('@').next() == Some("memory")
                || host.prop_str(n, "device_type").ok().flatten() == Some("memory"));
        let is_host_hypervisor = top_level && host.is_compatible(n, "xen,xen");
        let is_timer_mem = host.is_compatible(n, "arm,armv7-timer-mem");
        if is_memory
            || is_host_hypervisor
            || is_timer_mem
            || is_cpu_pmu(host, n)
            || host.is_boot_module(n)
            || host.is_compatible(n, "xen,domain")
        {
            t.node_mut(n).deleted = true;
        }
        if top_level && host.name(n).split('@').next() == Some("psci") {
            t.node_mut(n).deleted = true;
        }
    }
    for p in &spec.remove_nodes {
        let n = find(p)?;
        if n == root {
            return Err(DtError::BadProperty {
                node: "/".to_owned(),
                prop: "(node)".to_owned(),
                reason: "the root cannot be removed".to_owned(),
            });
        }
        t.node_mut(n).deleted = true;
    }
    for (p, prop) in &spec.strip_props {
        let n = find(p)?;
        t.remove_prop(n, prop);
    }
    for p in &spec.disable_nodes {
        let n = find(p)?;
        t.set_prop(n, "status", strings_value(&["disabled"]));
    }

    if let Some(n) = spec.vcpus {
        dom0_cpus(host, &mut t, n)?;
    }

    // Devices marked for passthrough belong to other domains.
    for n in host.nodes() {
        if host.has_prop(n, "xen,passthrough") {
            t.set_prop(n, "status", strings_value(&["disabled"]));
        }
    }
    // Aliases to removed nodes go too (the hypervisor's UART is usually one).
    if let Some(aliases) = host.find_path("/aliases") {
        for p in &host.tree().node(aliases).props {
            if let Some(target) = host.find_path(
                p.value
                    .split(|&b| b == 0)
                    .next()
                    .and_then(|v| core::str::from_utf8(v).ok())
                    .unwrap_or(""),
            ) {
                if !is_live(&t, target) {
                    t.remove_prop(aliases, &p.name);
                }
            }
        }
    }
    // No surviving reference may point into a removed subtree.
    for n in host.nodes() {
        if !is_live(&t, n) {
            continue;
        }
        for (prop, cell) in [
            ("iommus", 0usize),
            ("iommu-map", 1),
            ("interrupt-parent", 0),
            ("msi-parent", 0),
            ("msi-map", 1),
        ] {
            let Some(v) = t
                .node(n)
                .props
                .iter()
                .find(|p| p.name == prop)
                .map(|p| &p.value)
            else {
                continue;
            };
            let Some(c) = v.get(cell * 4..cell * 4 + 4) else {
                continue;
            };
            let ph = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
            if let Some(target) = host.find_phandle(ph) {
                if !is_live(&t, target) {
                    return Err(DtError::BadProperty {
                        node: host.path(n),
                        prop: prop.to_owned(),
                        reason: format!(
                            "refers to {}, which dom0's DT no longer has",
                            host.path(target)
                        ),
                    });
                }
            }
        }
    }

    // RAM.
    let mem_name = format!(
        "memory@{:x}",
        spec.memory.first().map(|r| r.base).unwrap_or(0)
    );
    if spec.memory.is_empty() {
        return Err(DtError::BadProperty {
            node: "/memory".to_owned(),
            prop: "reg".to_owned(),
            reason: "dom0 has no RAM bank".to_owned(),
        });
    }
    let mem = t.add_node(root, &mem_name);
    t.set_prop(mem, "device_type", strings_value(&["memory"]));
    t.set_prop(mem, "reg", reg_value("/memory", &spec.memory, na, ns)?);

    // Hypervisor memory dom0 may read, never as RAM.
    if !spec.reserved_memory.is_empty() {
        let (rm, rna, rns) = match host.find_path("/reserved-memory") {
            Some(rm) => {
                let (a, s) = host.cells_of_bus(rm)?;
                (rm, a, s)
            }
            None => {
                let rm = t.add_node(root, "reserved-memory");
                t.set_prop(rm, "#address-cells", cells_value(&[na]));
                t.set_prop(rm, "#size-cells", cells_value(&[ns]));
                t.set_prop(rm, "ranges", Vec::new());
                (rm, na, ns)
            }
        };
        for (name, compatible, r) in &spec.reserved_memory {
            let path = format!("/reserved-memory/{name}");
            let n = t.add_node(rm, name);
            t.set_prop(n, "compatible", strings_value(&[compatible]));
            t.set_prop(n, "reg", reg_value(&path, core::slice::from_ref(r), rna, rns)?);
            t.set_prop(n, "no-map", Vec::new());
        }
    }

    // /chosen.
    let chosen = match host.find_path("/chosen") {
        Some(c) => c,
        None => t.add_node(root, "chosen"),
    };
    for p in [
        "xen,xen-bootargs",
        "xen,dom0-bootargs",
        "stdout-path",
        "linux,stdout-path",
        "bootargs",
        "linux,initrd-start",
        "linux,initrd-end",
        "xen,static-heap",
    ] {
        t.remove_prop(chosen, p);
    }
    if let Some(a) = &spec.bootargs {
        t.set_prop(chosen, "bootargs", strings_value(&[a.as_str()]));
    }
    if let Some(rd) = spec.initrd {
        let end = rd
            .base
            .checked_add(rd.size)
            .ok_or_else(|| DtError::BadProperty {
                node: "/chosen".to_owned(),
                prop: "linux,initrd-end".to_owned(),
                reason: "initrd end overflows".to_owned(),
            })?;
        t.set_prop(chosen, "linux,initrd-start", rd.base.to_be_bytes().to_vec());
        t.set_prop(chosen, "linux,initrd-end", end.to_be_bytes().to_vec());
    }

    // The GIC: dom0 sees the distributor and the CPU interface (v2) or redistributors (v3), not GICH/GICV.
    let gic = host
        .gic_node()
        .ok_or_else(|| DtError::MissingNode("interrupt controller (Arm GIC)".to_owned()))?;
    if let Some(parent) = host.parent(gic) {
        let (gna, gns) = host.cells_of_bus(parent)?;
        let keep = if host.is_compatible(gic, "arm,gic-v3") {
            1 + host.prop_u32(gic, "#redistributor-regions")?.unwrap_or(1) as usize
        } else {
            // A GICv2: the maintenance interrupt is the hypervisor's (Xen's dom0 node has none).
            t.remove_prop(gic, "interrupts");
            2
        };
        if let Some(reg) = host.prop(gic, "reg") {
            let bytes = keep * (gna + gns) as usize * 4;
            if reg.len() > bytes {
                t.set_prop(gic, "reg", reg[..bytes].to_vec());
            }
        }
    }
    let gic_phandle = match host.phandle(gic) {
        Some(p) => p,
        None => {
            let p = host
                .max_phandle()
                .checked_add(1)
                .ok_or_else(|| DtError::BadProperty {
                    node: host.path(gic),
                    prop: "phandle".to_owned(),
                    reason: "no phandle left to give the GIC".to_owned(),
                })?;
            t.set_prop(gic, "phandle", p.to_be_bytes().to_vec());
            p
        }
    };

    // /hypervisor.
    if !(16..32).contains(&spec.evtchn_ppi) {
        return Err(DtError::BadProperty {
            node: "/hypervisor".to_owned(),
            prop: "interrupts".to_owned(),
            reason: format!(
                "event-channel INTID {} is not a PPI (16..=31)",
                spec.evtchn_ppi
            ),
        });
    }
    let hyp = t.add_node(root, "hypervisor");
    t.set_prop(hyp, "compatible", strings_value(XEN_COMPATIBLE));
    let mut regions = Vec::with_capacity(1 + spec.extended_regions.len());
    regions.push(spec.grant_table);
    regions.extend_from_slice(&spec.extended_regions);
    t.set_prop(hyp, "reg", reg_value("/hypervisor", &regions, na, ns)?);
    t.set_prop(
        hyp,
        "interrupts",
        cells_value(&[1, spec.evtchn_ppi - 16, 0xf08]),
    );
    t.set_prop(hyp, "interrupt-parent", gic_phandle.to_be_bytes().to_vec());

    // /psci: calls go to the hypervisor.
    let psci = t.add_node(root, "psci");
    t.set_prop(psci, "compatible", strings_value(PSCI_COMPATIBLE));
    t.set_prop(psci, "method", strings_value(&["hvc"]));

    let blob = t.to_blob();
    // The writer's output must read back; anything else is a bug here, reported rather than handed on.
    Tree::parse(&blob)?;
    Ok(blob)
}
