//! Ownership policy: who drives each DMA master's IOMMU (the hypervisor, dom0, or nobody), decided once at
//! boot from the host DT, the platform's defaults and the command line, printed as a table, and turned into
//! the edits of dom0's DT. Pure logic, shared by the SMMUv3 and Exynos SysMMU drivers.
//!
//! Rule: masters and IOMMUs linked by `iommus`/`iommu-map` form groups (connected components); a group has
//! one owner, because an IOMMU cannot be driven by two parties. A group with a DT error is `Blocked`: its
//! IOMMUs are hidden from dom0 and its masters disabled in dom0's DT.

use alloc::borrow::ToOwned;
use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

pub use crate::dt::cmdline::{IommuOwner, OwnerOverride};
pub use crate::dt::dom0::Dom0DtEdits;
use crate::dt::{DeviceRegion, DtError, HostDt, IrqSpec, NodeId, Region, RegionKind};

/// The kind of an IOMMU instance, from its compatible.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IommuKind {
    /// "arm,smmu-v3"
    SmmuV3,
    /// "samsung,exynos-sysmmu"
    ExynosSysmmu,
    /// Anything else with `#iommu-cells` (its first compatible).
    Other(String),
}

impl fmt::Display for IommuKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IommuKind::SmmuV3 => f.write_str("SMMUv3"),
            IommuKind::ExynosSysmmu => f.write_str("Exynos SysMMU"),
            IommuKind::Other(c) => write!(f, "{c}"),
        }
    }
}

/// One IOMMU node of the host DT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IommuInstance {
    pub path: String,
    pub kind: IommuKind,
    pub regs: Vec<Region>,
    pub phandle: Option<u32>,
    pub iommu_cells: u32,
    pub interrupts: Vec<IrqSpec>,
    pub enabled: bool,
    /// Why the node cannot be used (no `reg`, bad `#iommu-cells`...): the group is then blocked.
    pub problem: Option<DtError>,
}

/// What kind of DMA master a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MasterKind {
    /// A platform device with `iommus`.
    Platform,
    /// A PCI host bridge (its devices' requester IDs map to stream IDs through `iommu-map`).
    PciHostBridge,
}

/// One `iommus` entry: an IOMMU (index into [`DmaTopology::iommus`]) and the specifier cells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IommuRef {
    pub iommu: usize,
    pub specifier: Vec<u32>,
}

/// One `iommu-map` entry: requester IDs `rid_base..rid_base+length` map to stream IDs from `sid_base`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IommuMapEntry {
    pub rid_base: u32,
    pub iommu: usize,
    pub sid_base: u32,
    pub length: u32,
}

/// A DMA master of the host DT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmaMaster {
    pub path: String,
    pub kind: MasterKind,
    pub iommus: Vec<IommuRef>,
    pub iommu_map: Vec<IommuMapEntry>,
    pub iommu_map_mask: Option<u32>,
    pub enabled: bool,
    /// Why its IOMMU links could not be read: the master is then blocked.
    pub problem: Option<DtError>,
}

impl DmaMaster {
    /// The IOMMUs this master is behind (indices, deduplicated, in DT order).
    pub fn iommu_indices(&self) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::new();
        for i in self
            .iommus
            .iter()
            .map(|r| r.iommu)
            .chain(self.iommu_map.iter().map(|e| e.iommu))
        {
            if !out.contains(&i) {
                out.push(i);
            }
        }
        out
    }

    /// A PCI requester ID's (IOMMU index, stream ID): `iommu-map-mask` applied, then `iommu-map`.
    /// `None` when no entry covers it (the device then has no translation: keep it blocked).
    pub fn pci_rid_to_stream(&self, rid: u32) -> Option<(usize, u32)> {
        let masked = rid & self.iommu_map_mask.unwrap_or(u32::MAX);
        self.iommu_map.iter().find_map(|e| {
            let off = masked.checked_sub(e.rid_base)?;
            (off < e.length).then(|| (e.iommu, e.sid_base.wrapping_add(off)))
        })
    }
}

/// The IOMMUs and DMA masters of the host DT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmaTopology {
    pub iommus: Vec<IommuInstance>,
    pub masters: Vec<DmaMaster>,
}

fn iommu_kind(dt: &HostDt, n: NodeId) -> IommuKind {
    if dt.is_compatible(n, "arm,smmu-v3") {
        IommuKind::SmmuV3
    } else if dt.is_compatible(n, "samsung,exynos-sysmmu") {
        IommuKind::ExynosSysmmu
    } else {
        IommuKind::Other(
            dt.compatible(n)
                .first()
                .map(|s| (*s).to_owned())
                .unwrap_or_default(),
        )
    }
}

impl DmaTopology {
    /// Finds IOMMUs (nodes with `#iommu-cells`, or an SMMUv3/SysMMU compatible) and masters (nodes with
    /// `iommus`, and PCI host bridges). Per-device problems are recorded in `problem`, not returned: the
    /// rest of the table stays usable. The `Err` is for a tree too broken to walk (not produced today).
    pub fn from_dt(dt: &HostDt) -> Result<DmaTopology, DtError> {
        let mut iommus = Vec::new();
        let mut by_node: Vec<(NodeId, usize)> = Vec::new();
        for n in dt.nodes() {
            let kind = iommu_kind(dt, n);
            if !dt.has_prop(n, "#iommu-cells") && matches!(kind, IommuKind::Other(_)) {
                continue;
            }
            let mut problem = None;
            let iommu_cells = match dt.prop_u32(n, "#iommu-cells") {
                Ok(Some(c)) if c <= 4 => c,
                Ok(Some(c)) => {
                    problem =
                        Some(dt.bad_prop(n, "#iommu-cells", format!("{c} cells is implausible")));
                    0
                }
                Ok(None) => {
                    problem = Some(DtError::MissingProperty {
                        node: dt.path(n),
                        prop: "#iommu-cells".to_owned(),
                    });
                    0
                }
                Err(e) => {
                    problem = Some(e);
                    0
                }
            };
            let regs = if !dt.has_prop(n, "reg") {
                problem.get_or_insert(DtError::MissingProperty {
                    node: dt.path(n),
                    prop: "reg".to_owned(),
                });
                Vec::new()
            } else {
                match dt.reg(n) {
                    Ok(r) if !r.is_empty() => r,
                    Ok(_) => {
                        problem.get_or_insert(dt.bad_prop(n, "reg", "empty"));
                        Vec::new()
                    }
                    Err(e) => {
                        problem.get_or_insert(e);
                        Vec::new()
                    }
                }
            };
            let interrupts = dt.interrupts(n).unwrap_or_default();
            by_node.push((n, iommus.len()));
            iommus.push(IommuInstance {
                path: dt.path(n),
                kind,
                regs,
                phandle: dt.phandle(n),
                iommu_cells,
                interrupts,
                enabled: dt.is_available(n),
                problem,
            });
        }
        let lookup = |ph: u32| -> Option<usize> {
            let node = dt.find_phandle(ph)?;
            by_node.iter().find(|(n, _)| *n == node).map(|&(_, i)| i)
        };

        let mut masters = Vec::new();
        for n in dt.nodes() {
            let pci = dt.is_pci_host_bridge(n);
            if !pci && !dt.has_prop(n, "iommus") {
                continue;
            }
            let mut m = DmaMaster {
                path: dt.path(n),
                kind: if pci {
                    MasterKind::PciHostBridge
                } else {
                    MasterKind::Platform
                },
                iommus: Vec::new(),
                iommu_map: Vec::new(),
                iommu_map_mask: None,
                enabled: dt.is_available(n),
                problem: None,
            };
            if let Err(e) = read_iommus(dt, n, &iommus, &lookup, &mut m) {
                m.problem = Some(e);
            }
            if pci {
                if let Err(e) = read_iommu_map(dt, n, &iommus, &lookup, &mut m) {
                    m.problem.get_or_insert(e);
                }
            }
            masters.push(m);
        }
        Ok(DmaTopology { iommus, masters })
    }

    /// The IOMMU instance at `path`.
    pub fn iommu_by_path(&self, path: &str) -> Option<usize> {
        self.iommus.iter().position(|i| i.path == path)
    }

    /// The master at `path`.
    pub fn master_by_path(&self, path: &str) -> Option<usize> {
        self.masters.iter().position(|m| m.path == path)
    }
}

fn read_iommus(
    dt: &HostDt,
    n: NodeId,
    iommus: &[IommuInstance],
    lookup: &dyn Fn(u32) -> Option<usize>,
    m: &mut DmaMaster,
) -> Result<(), DtError> {
    let Some(cells) = dt.prop_cells(n, "iommus")? else {
        return Ok(());
    };
    let mut i = 0;
    while i < cells.len() {
        let ph = cells[i];
        let Some(idx) = lookup(ph) else {
            if dt.find_phandle(ph).is_some() {
                return Err(dt.bad_prop(
                    n,
                    "iommus",
                    format!("phandle {ph:#x} is not an IOMMU (no #iommu-cells)"),
                ));
            }
            return Err(DtError::DanglingPhandle {
                node: dt.path(n),
                prop: "iommus".to_owned(),
                phandle: ph,
            });
        };
        let nc = iommus[idx].iommu_cells as usize;
        let spec = cells.get(i + 1..i + 1 + nc).ok_or_else(|| {
            dt.bad_prop(
                n,
                "iommus",
                format!("entry for {} needs {nc} specifier cells", iommus[idx].path),
            )
        })?;
        m.iommus.push(IommuRef {
            iommu: idx,
            specifier: spec.to_vec(),
        });
        i += 1 + nc;
    }
    Ok(())
}

fn read_iommu_map(
    dt: &HostDt,
    n: NodeId,
    iommus: &[IommuInstance],
    lookup: &dyn Fn(u32) -> Option<usize>,
    m: &mut DmaMaster,
) -> Result<(), DtError> {
    m.iommu_map_mask = dt.prop_u32(n, "iommu-map-mask")?;
    let Some(cells) = dt.prop_cells(n, "iommu-map")? else {
        return Ok(());
    };
    if cells.is_empty() {
        return Err(dt.bad_prop(n, "iommu-map", "empty"));
    }
    let mut i = 0;
    while i < cells.len() {
        let rest = &cells[i..];
        if rest.len() < 4 {
            return Err(dt.bad_prop(n, "iommu-map", format!("entry at cell {i} is truncated")));
        }
        let ph = rest[1];
        let Some(idx) = lookup(ph) else {
            return Err(DtError::DanglingPhandle {
                node: dt.path(n),
                prop: "iommu-map".to_owned(),
                phandle: ph,
            });
        };
        if iommus[idx].iommu_cells != 1 {
            return Err(dt.bad_prop(
                n,
                "iommu-map",
                format!(
                    "{} has #iommu-cells {}, a map needs 1",
                    iommus[idx].path, iommus[idx].iommu_cells
                ),
            ));
        }
        let e = IommuMapEntry {
            rid_base: rest[0],
            iommu: idx,
            sid_base: rest[2],
            length: rest[3],
        };
        if e.length == 0
            || e.rid_base.checked_add(e.length - 1).is_none()
            || e.sid_base.checked_add(e.length - 1).is_none()
        {
            return Err(dt.bad_prop(
                n,
                "iommu-map",
                format!("entry at cell {i} has a bad length {:#x}", e.length),
            ));
        }
        m.iommu_map.push(e);
        i += 4;
    }
    Ok(())
}

/// Why a row has its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnerReason {
    PlatformDefault,
    /// `iommu-owner=` on the command line.
    CommandLine,
    /// The hypervisor has no driver for this IOMMU kind.
    NoDriver,
    /// The master is behind no IOMMU.
    NoIommu,
    /// No master uses this IOMMU: the hypervisor keeps it hidden (and idle).
    NoMaster,
    /// The DT describing the group is invalid (the error's text).
    InvalidDt(String),
    /// Overrides asked for different owners inside one group sharing an IOMMU.
    SharedIommuConflict(String),
}

impl fmt::Display for OwnerReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OwnerReason::PlatformDefault => f.write_str("platform default"),
            OwnerReason::CommandLine => f.write_str("command-line override"),
            OwnerReason::NoDriver => f.write_str("no hypervisor driver"),
            OwnerReason::NoIommu => f.write_str("no IOMMU"),
            OwnerReason::NoMaster => f.write_str("no master: kept hidden"),
            OwnerReason::InvalidDt(e) => write!(f, "invalid DT: {e}"),
            OwnerReason::SharedIommuConflict(who) => {
                write!(f, "conflicting overrides in a shared group: {who}")
            }
        }
    }
}

/// A platform's default owners.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlatformDefaults {
    pub smmuv3: IommuOwner,
    pub exynos_sysmmu: IommuOwner,
    pub other: IommuOwner,
}

impl PlatformDefaults {
    /// QEMU virt: the SMMUv3 is the hypervisor's.
    pub const QEMU_VIRT: PlatformDefaults = PlatformDefaults {
        smmuv3: IommuOwner::Hypervisor,
        exynos_sysmmu: IommuOwner::Hypervisor,
        other: IommuOwner::Dom0,
    };
    /// Exynos5250: every SysMMU with a master is the hypervisor's (isolation).
    pub const EXYNOS5250: PlatformDefaults = PlatformDefaults {
        smmuv3: IommuOwner::Hypervisor,
        exynos_sysmmu: IommuOwner::Hypervisor,
        other: IommuOwner::Dom0,
    };
    /// Anything else: what the hypervisor has drivers for, it keeps.
    pub const GENERIC: PlatformDefaults = PlatformDefaults {
        smmuv3: IommuOwner::Hypervisor,
        exynos_sysmmu: IommuOwner::Hypervisor,
        other: IommuOwner::Dom0,
    };

    /// Picks the defaults from the root `compatible`.
    pub fn for_dt(dt: &HostDt) -> PlatformDefaults {
        let root = dt.root();
        if dt.is_compatible(root, "linux,dummy-virt") {
            PlatformDefaults::QEMU_VIRT
        } else if dt.is_compatible(root, "samsung,exynos5250") {
            PlatformDefaults::EXYNOS5250
        } else {
            PlatformDefaults::GENERIC
        }
    }

    fn for_kind(&self, k: &IommuKind) -> IommuOwner {
        match k {
            IommuKind::SmmuV3 => self.smmuv3,
            IommuKind::ExynosSysmmu => self.exynos_sysmmu,
            IommuKind::Other(_) => self.other,
        }
    }
}

/// One row of the table: a (master, IOMMU) pair, an IOMMU without master, or a master without IOMMU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnershipRow {
    /// Index into [`DmaTopology::masters`].
    pub master: Option<usize>,
    /// Index into [`DmaTopology::iommus`].
    pub iommu: Option<usize>,
    pub owner: IommuOwner,
    pub reason: OwnerReason,
}

/// The boot-time decision for every master and IOMMU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnershipTable {
    pub topology: DmaTopology,
    pub rows: Vec<OwnershipRow>,
}

/// A tiny union-find over masters (0..m) and IOMMUs (m..m+i).
fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

impl OwnershipTable {
    /// Decides an owner for every group of masters and IOMMUs (see the module comment). `drivers` lists the
    /// IOMMU kinds the hypervisor can drive. Without a driver, a default owner of `Hypervisor` becomes
    /// `Dom0` (what Xen does implicitly: dom0 is direct-mapped, so it works, but does not isolate), and an
    /// explicit `hypervisor` override becomes `Blocked`.
    pub fn decide(
        topo: &DmaTopology,
        defaults: PlatformDefaults,
        overrides: &[OwnerOverride],
        drivers: &[IommuKind],
    ) -> OwnershipTable {
        let nm = topo.masters.len();
        let mut parent: Vec<usize> = (0..nm + topo.iommus.len()).collect();
        for (mi, m) in topo.masters.iter().enumerate() {
            for ii in m.iommu_indices() {
                let (a, b) = (find(&mut parent, mi), find(&mut parent, nm + ii));
                parent[a] = b;
            }
        }
        // Group members by root, then decide per group.
        let roots: Vec<usize> = (0..parent.len()).map(|x| find(&mut parent, x)).collect();
        let mut members_of: Vec<Vec<usize>> = vec![Vec::new(); parent.len()];
        for (x, &r) in roots.iter().enumerate() {
            members_of[r].push(x);
        }
        let decisions: Vec<Option<(IommuOwner, OwnerReason)>> = members_of
            .iter()
            .map(|m| {
                (!m.is_empty())
                    .then(|| Self::decide_group(topo, nm, m, defaults, overrides, drivers))
            })
            .collect();
        let decision = |x: usize| {
            decisions[roots[x]]
                .clone()
                .unwrap_or((IommuOwner::Blocked, OwnerReason::NoIommu))
        };
        let mut users: Vec<Vec<usize>> = vec![Vec::new(); topo.iommus.len()];
        for (mi, m) in topo.masters.iter().enumerate() {
            for ii in m.iommu_indices() {
                users[ii].push(mi);
            }
        }
        let mut rows = Vec::new();
        for (ii, users) in users.iter().enumerate() {
            let (owner, reason) = decision(nm + ii);
            if users.is_empty() {
                rows.push(OwnershipRow {
                    master: None,
                    iommu: Some(ii),
                    owner,
                    reason: reason.clone(),
                });
            }
            for &mi in users {
                rows.push(OwnershipRow {
                    master: Some(mi),
                    iommu: Some(ii),
                    owner,
                    reason: reason.clone(),
                });
            }
        }
        for (mi, m) in topo.masters.iter().enumerate() {
            if m.iommu_indices().is_empty() {
                let (owner, reason) = decision(mi);
                rows.push(OwnershipRow {
                    master: Some(mi),
                    iommu: None,
                    owner,
                    reason,
                });
            }
        }
        OwnershipTable {
            topology: topo.clone(),
            rows,
        }
    }

    fn decide_group(
        topo: &DmaTopology,
        nm: usize,
        members: &[usize],
        defaults: PlatformDefaults,
        overrides: &[OwnerOverride],
        drivers: &[IommuKind],
    ) -> (IommuOwner, OwnerReason) {
        let masters: Vec<&DmaMaster> = members
            .iter()
            .filter(|&&x| x < nm)
            .map(|&x| &topo.masters[x])
            .collect();
        let iommus: Vec<&IommuInstance> = members
            .iter()
            .filter(|&&x| x >= nm)
            .map(|&x| &topo.iommus[x - nm])
            .collect();
        // Invalid DT anywhere in the group: blocked.
        let problem = masters
            .iter()
            .filter_map(|m| m.problem.as_ref())
            .chain(iommus.iter().filter_map(|i| i.problem.as_ref()))
            .next();
        if let Some(p) = problem {
            return (IommuOwner::Blocked, OwnerReason::InvalidDt(p.to_string()));
        }
        if iommus.is_empty() {
            return (IommuOwner::None, OwnerReason::NoIommu);
        }
        let paths: Vec<&str> = masters
            .iter()
            .map(|m| m.path.as_str())
            .chain(iommus.iter().map(|i| i.path.as_str()))
            .collect();
        let asked: BTreeSet<(u8, &str)> = overrides
            .iter()
            .filter(|o| paths.contains(&o.path.as_str()))
            .map(|o| (o.owner as u8, o.path.as_str()))
            .collect();
        let owners: Vec<IommuOwner> = overrides
            .iter()
            .filter(|o| paths.contains(&o.path.as_str()))
            .map(|o| o.owner)
            .fold(Vec::new(), |mut v, o| {
                if !v.contains(&o) {
                    v.push(o);
                }
                v
            });
        let has_driver = iommus.iter().all(|i| drivers.contains(&i.kind));
        let (owner, reason) = match owners.len() {
            0 if masters.is_empty() => return (IommuOwner::Hypervisor, OwnerReason::NoMaster),
            0 => (
                defaults.for_kind(&iommus[0].kind),
                OwnerReason::PlatformDefault,
            ),
            1 => (owners[0], OwnerReason::CommandLine),
            _ => {
                let who: Vec<&str> = asked.iter().map(|(_, p)| *p).collect();
                let safe = if has_driver {
                    IommuOwner::Hypervisor
                } else {
                    IommuOwner::Blocked
                };
                return (safe, OwnerReason::SharedIommuConflict(who.join(", ")));
            }
        };
        if matches!(owner, IommuOwner::Hypervisor | IommuOwner::Nested) && !has_driver {
            return match reason {
                OwnerReason::PlatformDefault => (IommuOwner::Dom0, OwnerReason::NoDriver),
                _ => (IommuOwner::Blocked, OwnerReason::NoDriver),
            };
        }
        (owner, reason)
    }

    /// The owner decided for an IOMMU (by path).
    pub fn owner_of_iommu(&self, path: &str) -> Option<IommuOwner> {
        let i = self.topology.iommu_by_path(path)?;
        self.rows
            .iter()
            .find(|r| r.iommu == Some(i))
            .map(|r| r.owner)
    }

    /// Whether the hypervisor drives the IOMMU at `path` (alone, or under dom0's nested stage 1).
    pub fn hypervisor_drives(&self, path: &str) -> bool {
        matches!(self.owner_of_iommu(path), Some(IommuOwner::Hypervisor | IommuOwner::Nested))
    }

    /// The owner decided for a master (by path).
    pub fn owner_of_master(&self, path: &str) -> Option<IommuOwner> {
        let m = self.topology.master_by_path(path)?;
        self.rows
            .iter()
            .find(|r| r.master == Some(m))
            .map(|r| r.owner)
    }

    /// The edits of dom0's DT that implement the table.
    pub fn dom0_dt_edits(&self) -> Dom0DtEdits {
        let mut e = Dom0DtEdits::default();
        let push = |v: &mut Vec<String>, s: &str| {
            if !v.iter().any(|x| x == s) {
                v.push(s.to_owned());
            }
        };
        for row in &self.rows {
            let iommu = row.iommu.map(|i| &self.topology.iommus[i]);
            let master = row.master.map(|m| &self.topology.masters[m]);
            match row.owner {
                IommuOwner::Dom0 => {
                    if let Some(i) = iommu {
                        for r in &i.regs {
                            let d = DeviceRegion {
                                path: i.path.clone(),
                                region: *r,
                                kind: RegionKind::Reg,
                            };
                            if !e.mmio_to_map.contains(&d) {
                                e.mmio_to_map.push(d);
                            }
                        }
                    }
                }
                IommuOwner::None if iommu.is_none() => {}
                // The node and the masters' links stay (they describe the emulated IOMMU); the
                // registers are the hypervisor's, trapped for the emulation.
                IommuOwner::Nested => {
                    if let Some(i) = iommu {
                        for r in &i.regs {
                            let d = DeviceRegion { path: i.path.clone(), region: *r, kind: RegionKind::Reg };
                            if !e.mmio_withheld.contains(&d) {
                                e.mmio_withheld.push(d);
                            }
                        }
                    }
                }
                IommuOwner::Hypervisor | IommuOwner::None | IommuOwner::Blocked => {
                    if let Some(i) = iommu {
                        push(&mut e.remove_nodes, &i.path);
                        for r in &i.regs {
                            let d = DeviceRegion {
                                path: i.path.clone(),
                                region: *r,
                                kind: RegionKind::Reg,
                            };
                            if !e.mmio_withheld.contains(&d) {
                                e.mmio_withheld.push(d);
                            }
                        }
                    }
                    if let Some(m) = master {
                        let props: &[&str] = match m.kind {
                            MasterKind::Platform => &["iommus"],
                            MasterKind::PciHostBridge => &["iommu-map", "iommu-map-mask"],
                        };
                        for p in props {
                            let pair = (m.path.clone(), (*p).to_owned());
                            if !e.strip_props.contains(&pair) {
                                e.strip_props.push(pair);
                            }
                        }
                        if row.owner == IommuOwner::Blocked {
                            push(&mut e.disable_nodes, &m.path);
                        }
                    }
                }
            }
        }
        e
    }
}

impl fmt::Display for OwnershipTable {
    /// The boot-time table: master, IOMMU, owner, reason.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cells: Vec<[String; 4]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.master
                        .map(|m| self.topology.masters[m].path.clone())
                        .unwrap_or_else(|| "-".to_owned()),
                    r.iommu
                        .map(|i| {
                            let i = &self.topology.iommus[i];
                            format!("{} ({})", i.path, i.kind)
                        })
                        .unwrap_or_else(|| "-".to_owned()),
                    r.owner.to_string(),
                    r.reason.to_string(),
                ]
            })
            .collect();
        let head = ["master", "IOMMU", "owner", "reason"];
        let mut w = head.map(|h| h.len());
        for c in &cells {
            for k in 0..3 {
                w[k] = w[k].max(c[k].len());
            }
        }
        writeln!(
            f,
            "{:<w0$}  {:<w1$}  {:<w2$}  {}",
            head[0],
            head[1],
            head[2],
            head[3],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2]
        )?;
        for c in &cells {
            writeln!(
                f,
                "{:<w0$}  {:<w1$}  {:<w2$}  {}",
                c[0],
                c[1],
                c[2],
                c[3],
                w0 = w[0],
                w1 = w[1],
                w2 = w[2]
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::dt::fdt::Tree;
    use crate::dt::fixtures::{self, QEMU_VIRT, SNOW};
    use std::println;

    fn load(name: &str) -> HostDt {
        HostDt::parse(&fixtures::load(name)).unwrap()
    }

    fn edited(dt: &HostDt, edit: impl FnOnce(&HostDt, &mut Tree)) -> HostDt {
        let mut t = dt.tree().clone();
        edit(dt, &mut t);
        HostDt::parse(&t.to_blob()).unwrap()
    }

    /// The 23 SysMMUs of the Snow (base, master) — exynos5250.md section 1.
    const SNOW_SYSMMUS: [(u64, Option<&str>); 23] = [
        (0x10a6_0000, Some("/soc/g2d@10850000")),
        (0x1120_0000, Some("/soc/codec@11000000")),
        (0x1121_0000, Some("/soc/codec@11000000")),
        (0x11d4_0000, Some("/soc/rotator@11c00000")),
        (0x11f2_0000, None),
        (0x1326_0000, None),
        (0x1327_0000, None),
        (0x132a_0000, None),
        (0x1328_0000, None),
        (0x1329_0000, None),
        (0x132b_0000, None),
        (0x132c_0000, None),
        (0x132d_0000, None),
        (0x132e_0000, None),
        (0x132f_0000, None),
        (0x13c4_0000, None),
        (0x13c5_0000, None),
        (0x13e8_0000, Some("/soc/gsc@13e00000")),
        (0x13e9_0000, Some("/soc/gsc@13e10000")),
        (0x13ea_0000, Some("/soc/gsc@13e20000")),
        (0x13eb_0000, Some("/soc/gsc@13e30000")),
        (0x1464_0000, Some("/soc/fimd@14400000")),
        (0x1465_0000, Some("/soc/mixer@14450000")),
    ];

    #[test]
    fn snow_default_ownership_table() {
        let dt = load(SNOW);
        let topo = DmaTopology::from_dt(&dt).unwrap();
        assert_eq!(topo.iommus.len(), 23);
        assert!(topo.iommus.iter().all(|i| i.kind == IommuKind::ExynosSysmmu
            && i.iommu_cells == 0
            && i.problem.is_none()));
        let codec = &topo.masters[topo.master_by_path("/soc/codec@11000000").unwrap()];
        assert_eq!(
            codec.iommus.len(),
            2,
            "the MFC codec has a left and a right SysMMU"
        );
        let table = OwnershipTable::decide(
            &topo,
            PlatformDefaults::for_dt(&dt),
            &[],
            &[IommuKind::ExynosSysmmu],
        );
        println!("Snow, default policy, SysMMU driver present:\n{table}");
        assert_eq!(table.rows.len(), 23);
        for (base, master) in SNOW_SYSMMUS {
            let path = alloc::format!("/soc/sysmmu@{base:x}");
            let i = topo
                .iommu_by_path(&path)
                .unwrap_or_else(|| panic!("{path} missing"));
            assert_eq!(topo.iommus[i].regs, [Region { base, size: 0x1000 }]);
            let row = table.rows.iter().find(|r| r.iommu == Some(i)).unwrap();
            assert_eq!(
                row.master.map(|m| topo.masters[m].path.as_str()),
                master,
                "{path}"
            );
            assert_eq!(row.owner, IommuOwner::Hypervisor, "{path}");
            let want = if master.is_some() {
                OwnerReason::PlatformDefault
            } else {
                OwnerReason::NoMaster
            };
            assert_eq!(row.reason, want, "{path}");
        }
        let text = table.to_string();
        assert!(text.starts_with("master"));
        assert_eq!(text.lines().count(), 24);
        assert!(text.contains("/soc/mixer@14450000"));

        // Without the SysMMU driver: masters' SysMMUs go to dom0 (Xen's behaviour), masterless stay hidden.
        let nodrv = OwnershipTable::decide(&topo, PlatformDefaults::for_dt(&dt), &[], &[]);
        println!("Snow, default policy, no SysMMU driver:\n{nodrv}");
        assert_eq!(
            nodrv.owner_of_master("/soc/mixer@14450000"),
            Some(IommuOwner::Dom0)
        );
        assert!(nodrv
            .rows
            .iter()
            .filter(|r| r.master.is_some())
            .all(|r| r.reason == OwnerReason::NoDriver));
        assert_eq!(
            nodrv.owner_of_iommu("/soc/sysmmu@11f20000"),
            Some(IommuOwner::Hypervisor)
        );
    }

    #[test]
    fn qemu_smmuv3_and_pci_iommu_map() {
        let dt = load(QEMU_VIRT);
        let topo = DmaTopology::from_dt(&dt).unwrap();
        assert_eq!(topo.iommus.len(), 1);
        let smmu = &topo.iommus[0];
        assert_eq!(smmu.path, "/smmuv3@9050000");
        assert_eq!(smmu.kind, IommuKind::SmmuV3);
        assert_eq!(
            smmu.regs,
            [Region {
                base: 0x0905_0000,
                size: 0x2_0000
            }]
        );
        assert_eq!(smmu.iommu_cells, 1);
        assert_eq!(
            smmu.interrupts
                .iter()
                .map(|i| i.gic_intid().unwrap())
                .collect::<Vec<_>>(),
            [106, 107, 108, 109]
        );
        assert!(smmu.phandle.is_some());
        assert_eq!(topo.masters.len(), 1);
        let pcie = &topo.masters[0];
        assert_eq!(pcie.path, "/pcie@10000000");
        assert_eq!(pcie.kind, MasterKind::PciHostBridge);
        assert_eq!(
            pcie.iommu_map,
            [IommuMapEntry {
                rid_base: 0,
                iommu: 0,
                sid_base: 0,
                length: 0x10000
            }]
        );
        assert_eq!(pcie.pci_rid_to_stream(0x0008), Some((0, 8)));
        assert_eq!(pcie.pci_rid_to_stream(0xffff), Some((0, 0xffff)));
        assert_eq!(pcie.pci_rid_to_stream(0x1_0000), None);

        let table = OwnershipTable::decide(
            &topo,
            PlatformDefaults::for_dt(&dt),
            &[],
            &[IommuKind::SmmuV3],
        );
        println!("QEMU virt:\n{table}");
        assert_eq!(table.rows.len(), 1);
        assert_eq!(
            (table.rows[0].owner, &table.rows[0].reason),
            (IommuOwner::Hypervisor, &OwnerReason::PlatformDefault)
        );
        let e = table.dom0_dt_edits();
        assert_eq!(e.remove_nodes, ["/smmuv3@9050000"]);
        assert_eq!(
            e.strip_props,
            [
                ("/pcie@10000000".to_owned(), "iommu-map".to_owned()),
                ("/pcie@10000000".to_owned(), "iommu-map-mask".to_owned())
            ]
        );
        // dom0 override: node kept, MMIO mapped.
        let o = [OwnerOverride {
            path: "/pcie@10000000".to_owned(),
            owner: IommuOwner::Dom0,
        }];
        let t2 =
            OwnershipTable::decide(&topo, PlatformDefaults::QEMU_VIRT, &o, &[IommuKind::SmmuV3]);
        assert_eq!(
            (t2.rows[0].owner, &t2.rows[0].reason),
            (IommuOwner::Dom0, &OwnerReason::CommandLine)
        );
        let e2 = t2.dom0_dt_edits();
        assert!(e2.remove_nodes.is_empty() && e2.strip_props.is_empty());
        assert_eq!(
            e2.mmio_to_map[0].region,
            Region {
                base: 0x0905_0000,
                size: 0x2_0000
            }
        );
        // Nested: the hypervisor drives the SMMU, dom0 keeps the node and the bridge's
        // iommu-map (they describe its emulated SMMU), the registers are not mapped.
        let o = [OwnerOverride { path: "/pcie@10000000".to_owned(), owner: IommuOwner::Nested }];
        let tn = OwnershipTable::decide(&topo, PlatformDefaults::QEMU_VIRT, &o, &[IommuKind::SmmuV3]);
        assert_eq!((tn.rows[0].owner, &tn.rows[0].reason), (IommuOwner::Nested, &OwnerReason::CommandLine));
        assert!(tn.hypervisor_drives("/smmuv3@9050000"));
        assert!(!t2.hypervisor_drives("/smmuv3@9050000") && table.hypervisor_drives("/smmuv3@9050000"));
        let en = tn.dom0_dt_edits();
        assert!(en.remove_nodes.is_empty() && en.strip_props.is_empty() && en.disable_nodes.is_empty());
        assert!(en.mmio_to_map.is_empty());
        assert_eq!(en.mmio_withheld[0].region, Region { base: 0x0905_0000, size: 0x2_0000 });
        assert!(tn.to_string().contains("nested"));
        // Nested without a driver for the SMMU: blocked, as an explicit hypervisor owner.
        let tb = OwnershipTable::decide(&topo, PlatformDefaults::QEMU_VIRT, &o, &[]);
        assert_eq!((tb.rows[0].owner, &tb.rows[0].reason), (IommuOwner::Blocked, &OwnerReason::NoDriver));
        // Explicit hypervisor ownership without a driver: blocked, the bridge disabled in dom0.
        let o = [OwnerOverride {
            path: "/smmuv3@9050000".to_owned(),
            owner: IommuOwner::Hypervisor,
        }];
        let t3 = OwnershipTable::decide(&topo, PlatformDefaults::QEMU_VIRT, &o, &[]);
        assert_eq!(
            (t3.rows[0].owner, &t3.rows[0].reason),
            (IommuOwner::Blocked, &OwnerReason::NoDriver)
        );
        assert_eq!(t3.dom0_dt_edits().disable_nodes, ["/pcie@10000000"]);
    }

    #[test]
    fn iommu_map_mask_is_applied_before_the_map() {
        let dt = edited(&load(QEMU_VIRT), |dt, t| {
            let pcie = dt.find_path("/pcie@10000000").unwrap();
            let ph = dt
                .phandle(dt.find_path("/smmuv3@9050000").unwrap())
                .unwrap();
            let map: Vec<u8> = [0x100u32, ph, 0x40, 0x100]
                .iter()
                .flat_map(|c| c.to_be_bytes())
                .collect();
            t.set_prop(pcie, "iommu-map", map);
            t.set_prop(pcie, "iommu-map-mask", 0xff00u32.to_be_bytes().to_vec());
        });
        let topo = DmaTopology::from_dt(&dt).unwrap();
        let m = &topo.masters[0];
        assert_eq!(m.iommu_map_mask, Some(0xff00));
        assert_eq!(
            m.pci_rid_to_stream(0x0108),
            Some((0, 0x40)),
            "function bits masked off"
        );
        assert_eq!(m.pci_rid_to_stream(0x0008), None);
    }

    #[test]
    fn qemu_without_iommu_has_a_no_iommu_row() {
        let dt = edited(&load(QEMU_VIRT), |dt, t| {
            t.node_mut(dt.find_path("/smmuv3@9050000").unwrap()).deleted = true;
            t.remove_prop(dt.find_path("/pcie@10000000").unwrap(), "iommu-map");
        });
        let topo = DmaTopology::from_dt(&dt).unwrap();
        let table = OwnershipTable::decide(
            &topo,
            PlatformDefaults::QEMU_VIRT,
            &[],
            &[IommuKind::SmmuV3],
        );
        assert_eq!(table.rows.len(), 1);
        assert_eq!(
            (table.rows[0].owner, &table.rows[0].reason),
            (IommuOwner::None, &OwnerReason::NoIommu)
        );
        assert_eq!(table.dom0_dt_edits(), Dom0DtEdits::default());
    }

    #[test]
    fn sysmmu_without_reg_blocks_its_master() {
        let dt = edited(&load(SNOW), |dt, t| {
            t.remove_prop(dt.find_path("/soc/sysmmu@14650000").unwrap(), "reg")
        });
        let topo = DmaTopology::from_dt(&dt).unwrap();
        let i = topo.iommu_by_path("/soc/sysmmu@14650000").unwrap();
        assert_eq!(
            topo.iommus[i].problem.as_ref().unwrap().to_string(),
            "device tree node /soc/sysmmu@14650000: no `reg` property"
        );
        let table = OwnershipTable::decide(
            &topo,
            PlatformDefaults::EXYNOS5250,
            &[],
            &[IommuKind::ExynosSysmmu],
        );
        assert_eq!(
            table.owner_of_master("/soc/mixer@14450000"),
            Some(IommuOwner::Blocked)
        );
        let row = table.rows.iter().find(|r| r.iommu == Some(i)).unwrap();
        assert!(matches!(&row.reason, OwnerReason::InvalidDt(e) if e.contains("sysmmu@14650000")));
        // The rest of the table is unaffected.
        assert_eq!(
            table.owner_of_master("/soc/fimd@14400000"),
            Some(IommuOwner::Hypervisor)
        );
        let e = table.dom0_dt_edits();
        assert_eq!(e.disable_nodes, ["/soc/mixer@14450000"]);
        assert!(e.remove_nodes.contains(&"/soc/sysmmu@14650000".to_owned()));
    }

    #[test]
    fn iommus_phandle_to_nothing_blocks_that_master_only() {
        let dt = edited(&load(SNOW), |dt, t| {
            t.set_prop(
                dt.find_path("/soc/g2d@10850000").unwrap(),
                "iommus",
                0xdeadu32.to_be_bytes().to_vec(),
            )
        });
        let topo = DmaTopology::from_dt(&dt).unwrap();
        let m = &topo.masters[topo.master_by_path("/soc/g2d@10850000").unwrap()];
        assert_eq!(
            m.problem,
            Some(DtError::DanglingPhandle {
                node: "/soc/g2d@10850000".to_owned(),
                prop: "iommus".to_owned(),
                phandle: 0xdead
            })
        );
        let table = OwnershipTable::decide(
            &topo,
            PlatformDefaults::EXYNOS5250,
            &[],
            &[IommuKind::ExynosSysmmu],
        );
        println!("{table}");
        assert_eq!(
            table.owner_of_master("/soc/g2d@10850000"),
            Some(IommuOwner::Blocked)
        );
        // Its SysMMU, now without a master, stays hidden.
        let row = table
            .rows
            .iter()
            .find(|r| r.iommu == topo.iommu_by_path("/soc/sysmmu@10a60000"))
            .unwrap();
        assert_eq!(
            (row.owner, &row.reason),
            (IommuOwner::Hypervisor, &OwnerReason::NoMaster)
        );
        let e = table.dom0_dt_edits();
        assert_eq!(e.disable_nodes, ["/soc/g2d@10850000"]);
        assert!(e
            .strip_props
            .contains(&("/soc/g2d@10850000".to_owned(), "iommus".to_owned())));
    }

    #[test]
    fn malformed_iommu_map_is_reported_on_the_bridge() {
        let dt = edited(&load(QEMU_VIRT), |dt, t| {
            let pcie = dt.find_path("/pcie@10000000").unwrap();
            let map: Vec<u8> = [0u32, 0x8005, 0]
                .iter()
                .flat_map(|c| c.to_be_bytes())
                .collect();
            t.set_prop(pcie, "iommu-map", map);
        });
        let topo = DmaTopology::from_dt(&dt).unwrap();
        let e = topo.masters[0].problem.clone().unwrap();
        assert_eq!(
            e.to_string(),
            "device tree node /pcie@10000000: property `iommu-map`: entry at cell 0 is truncated"
        );
        let table = OwnershipTable::decide(
            &topo,
            PlatformDefaults::QEMU_VIRT,
            &[],
            &[IommuKind::SmmuV3],
        );
        assert_eq!(
            table.owner_of_master("/pcie@10000000"),
            Some(IommuOwner::Blocked)
        );

        let dt = edited(&load(QEMU_VIRT), |dt, t| {
            let pcie = dt.find_path("/pcie@10000000").unwrap();
            let map: Vec<u8> = [0u32, 0x8005, 0, 0]
                .iter()
                .flat_map(|c| c.to_be_bytes())
                .collect();
            t.set_prop(pcie, "iommu-map", map);
        });
        let topo = DmaTopology::from_dt(&dt).unwrap();
        assert!(topo.masters[0]
            .problem
            .as_ref()
            .unwrap()
            .to_string()
            .contains("bad length 0x0"));
    }

    #[test]
    fn masters_sharing_an_iommu_cannot_be_split() {
        // Point the mixer at fimd's SysMMU: one group, two masters; ask for different owners.
        let dt = edited(&load(SNOW), |dt, t| {
            let fimd_mmu = dt
                .phandle(dt.find_path("/soc/sysmmu@14640000").unwrap())
                .unwrap();
            t.set_prop(
                dt.find_path("/soc/mixer@14450000").unwrap(),
                "iommus",
                fimd_mmu.to_be_bytes().to_vec(),
            );
        });
        let topo = DmaTopology::from_dt(&dt).unwrap();
        let o = [
            OwnerOverride {
                path: "/soc/mixer@14450000".to_owned(),
                owner: IommuOwner::Dom0,
            },
            OwnerOverride {
                path: "/soc/fimd@14400000".to_owned(),
                owner: IommuOwner::Hypervisor,
            },
        ];
        let table = OwnershipTable::decide(
            &topo,
            PlatformDefaults::EXYNOS5250,
            &o,
            &[IommuKind::ExynosSysmmu],
        );
        println!("{table}");
        let rows: Vec<_> = table
            .rows
            .iter()
            .filter(|r| r.iommu == topo.iommu_by_path("/soc/sysmmu@14640000"))
            .collect();
        assert_eq!(rows.len(), 2);
        for r in rows {
            assert_eq!(r.owner, IommuOwner::Hypervisor);
            assert!(
                matches!(&r.reason, OwnerReason::SharedIommuConflict(w) if w.contains("mixer") && w.contains("fimd"))
            );
        }
        // Agreeing overrides are fine.
        let o = [
            OwnerOverride {
                path: "/soc/mixer@14450000".to_owned(),
                owner: IommuOwner::Dom0,
            },
            OwnerOverride {
                path: "/soc/fimd@14400000".to_owned(),
                owner: IommuOwner::Dom0,
            },
        ];
        let table = OwnershipTable::decide(
            &topo,
            PlatformDefaults::EXYNOS5250,
            &o,
            &[IommuKind::ExynosSysmmu],
        );
        assert_eq!(
            table.owner_of_iommu("/soc/sysmmu@14640000"),
            Some(IommuOwner::Dom0)
        );
    }
}
