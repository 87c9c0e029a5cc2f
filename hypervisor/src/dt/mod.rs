//! Device trees: parse the host's (untrusted input: every malformed blob or property gives a [`DtError`]
//! naming the node and property, never a panic), answer the boot path's questions about it
//! ([`HostDt::boot_info`], [`HostDt::device_regions`]) and build dom0's ([`dom0::build_dom0_dt`]).
//!
//! The FDT reader and writer are this crate's own (see [`fdt`]); fdt-rs and vm-fdt are not used here.

pub mod boot_info;
pub mod cmdline;
pub mod dom0;
pub mod fdt;
#[cfg(test)]
pub(crate) mod fixtures;
// Property tests (proptest), not built for the loom model checks.
#[cfg(all(test, not(loom)))]
mod tests;

use alloc::borrow::ToOwned;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

pub use boot_info::{
    BootInfo, BootModule, GicInfo, MemRegion, ModuleKind, PsciMethod, StdoutDevice, TimerInfo,
};
pub use fdt::{NodeId, Tree};

/// Why a device tree (or a value taken from it) was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DtError {
    /// The blob is shorter than the FDT header (or than a structure the header promises).
    Truncated { len: usize, needed: usize },
    /// The first word is not 0xd00dfeed.
    BadMagic(u32),
    /// The header's totalsize claims more bytes than the buffer holds.
    TotalSizeBeyondBlob { totalsize: u32, blob_len: usize },
    /// Some other inconsistent header field.
    BadHeader(&'static str),
    /// Only FDT versions 16 and 17 are read.
    UnsupportedVersion {
        version: u32,
        last_comp_version: u32,
    },
    /// The structure or strings block lies (partly) outside totalsize.
    BlockOutOfBounds {
        block: &'static str,
        offset: u32,
        size: u32,
        totalsize: u32,
    },
    /// The structure block's token stream is malformed at `offset` (from the start of the blob).
    BadStructure { offset: usize, reason: &'static str },
    /// A node the caller needs is absent.
    MissingNode(String),
    /// A property the caller needs is absent.
    MissingProperty { node: String, prop: String },
    /// A property is present but its value is malformed.
    BadProperty {
        node: String,
        prop: String,
        reason: String,
    },
    /// A phandle in `prop` of `node` refers to no node.
    DanglingPhandle {
        node: String,
        prop: String,
        phandle: u32,
    },
    /// An address of `node` cannot be translated to a CPU physical address.
    Untranslatable { node: String, reason: String },
    /// A hypervisor command-line option has a malformed value.
    BadCmdline { option: String, reason: String },
}

impl fmt::Display for DtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtError::Truncated { len, needed } => {
                write!(f, "device tree truncated: {len} bytes, at least {needed} needed")
            }
            DtError::BadMagic(m) => write!(f, "not a device tree: magic is {m:#010x}, expected 0xd00dfeed"),
            DtError::TotalSizeBeyondBlob { totalsize, blob_len } => write!(
                f,
                "device tree header: totalsize {totalsize} is beyond the {blob_len}-byte buffer"
            ),
            DtError::BadHeader(why) => write!(f, "device tree header: {why}"),
            DtError::UnsupportedVersion { version, last_comp_version } => write!(
                f,
                "device tree version {version} (last compatible {last_comp_version}) unsupported: need 16 or 17"
            ),
            DtError::BlockOutOfBounds { block, offset, size, totalsize } => write!(
                f,
                "device tree {block} block [{offset:#x}, +{size:#x}) is outside totalsize {totalsize:#x}"
            ),
            DtError::BadStructure { offset, reason } => {
                write!(f, "device tree structure block at offset {offset:#x}: {reason}")
            }
            DtError::MissingNode(p) => write!(f, "device tree: no node {p}"),
            DtError::MissingProperty { node, prop } => write!(f, "device tree node {node}: no `{prop}` property"),
            DtError::BadProperty { node, prop, reason } => {
                write!(f, "device tree node {node}: property `{prop}`: {reason}")
            }
            DtError::DanglingPhandle { node, prop, phandle } => write!(
                f,
                "device tree node {node}: property `{prop}` refers to phandle {phandle:#x}, which no node has"
            ),
            DtError::Untranslatable { node, reason } => {
                write!(f, "device tree node {node}: address not translatable: {reason}")
            }
            DtError::BadCmdline { option, reason } => write!(f, "command line option `{option}`: {reason}"),
        }
    }
}

/// A physical address range (CPU physical unless said otherwise).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Region {
    pub base: u64,
    pub size: u64,
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}+{:#x}", self.base, self.size)
    }
}

/// One interrupt specifier, with its controller resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IrqSpec {
    /// Path of the interrupt controller the cells are for.
    pub controller: String,
    /// Whether that controller is an Arm GIC (then the cells are <type number flags>).
    pub controller_is_gic: bool,
    pub cells: Vec<u32>,
}

impl IrqSpec {
    /// The GIC INTID (SPI n -> 32+n, PPI n -> 16+n), when the controller is a GIC.
    pub fn gic_intid(&self) -> Option<u32> {
        if !self.controller_is_gic || self.cells.len() < 2 {
            return None;
        }
        match self.cells[0] {
            0 => self.cells[1].checked_add(32),
            1 => self.cells[1].checked_add(16),
            _ => None,
        }
    }

    /// The trigger/cpu-mask flags cell of a GIC specifier.
    pub fn gic_flags(&self) -> Option<u32> {
        if self.controller_is_gic {
            self.cells.get(2).copied()
        } else {
            None
        }
    }
}

/// An MMIO region of a device node, for mapping into dom0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRegion {
    pub path: String,
    pub region: Region,
    pub kind: RegionKind,
}

/// Where a [`DeviceRegion`] comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    /// An entry of the node's `reg`.
    Reg,
    /// A PCI host bridge's outbound window (an entry of its `ranges`).
    PciWindow,
}

/// Compatible strings of the Arm GIC, which decide how interrupt specifiers are read.
pub const GIC_COMPATIBLES: &[&str] = &[
    "arm,gic-v3",
    "arm,gic-400",
    "arm,cortex-a15-gic",
    "arm,cortex-a9-gic",
    "arm,cortex-a7-gic",
    "arm,arm11mp-gic",
    "arm,gic-v2",
    "qcom,msm-qgic2",
];

/// The parsed host device tree and the lookups the hypervisor makes in it.
#[derive(Clone, Debug)]
pub struct HostDt {
    tree: Tree,
    phandles: BTreeMap<u32, NodeId>,
}

impl HostDt {
    /// The `totalsize` of the FDT whose header starts `header` (at least 40 bytes), after checking the
    /// magic: lets the boot path turn the DTB pointer it was given into a slice before calling [`parse`].
    ///
    /// [`parse`]: HostDt::parse
    pub fn totalsize_of(header: &[u8]) -> Result<usize, DtError> {
        if header.len() < 40 {
            return Err(DtError::Truncated {
                len: header.len(),
                needed: 40,
            });
        }
        let word =
            |i: usize| u32::from_be_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        if word(0) != fdt::FDT_MAGIC {
            return Err(DtError::BadMagic(word(0)));
        }
        Ok(word(4) as usize)
    }

    /// Validates and parses an FDT blob. The blob is copied; `HostDt` owns its data.
    pub fn parse(blob: &[u8]) -> Result<HostDt, DtError> {
        let tree = Tree::parse(blob)?;
        let mut phandles = BTreeMap::new();
        for (i, n) in tree.nodes.iter().enumerate() {
            for p in &n.props {
                if (p.name == "phandle" || p.name == "linux,phandle") && p.value.len() == 4 {
                    let v = u32::from_be_bytes([p.value[0], p.value[1], p.value[2], p.value[3]]);
                    if v != 0 && v != u32::MAX {
                        phandles.entry(v).or_insert(NodeId(i as u32));
                    }
                }
            }
        }
        Ok(HostDt { tree, phandles })
    }

    /// The owned tree (for builders that copy and edit it).
    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    pub fn root(&self) -> NodeId {
        self.tree.root()
    }

    /// Every node id, in document order.
    pub fn nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        (0..self.tree.nodes.len() as u32).map(NodeId)
    }

    /// A node's name with its unit address ("serial@12c30000").
    pub fn name(&self, id: NodeId) -> &str {
        &self.tree.node(id).name
    }

    pub fn parent(&self, id: NodeId) -> Option<NodeId> {
        self.tree.node(id).parent
    }

    pub fn children(&self, id: NodeId) -> &[NodeId] {
        &self.tree.node(id).children
    }

    /// Depth below the root (root = 0).
    pub fn depth(&self, id: NodeId) -> usize {
        let mut d = 0;
        let mut cur = id;
        while let Some(p) = self.parent(cur) {
            d += 1;
            cur = p;
        }
        d
    }

    /// The node's full path ("/soc/serial@12c30000"; "/" for the root).
    pub fn path(&self, id: NodeId) -> String {
        let mut parts = Vec::new();
        let mut cur = id;
        while let Some(p) = self.parent(cur) {
            parts.push(self.name(cur));
            cur = p;
        }
        if parts.is_empty() {
            return "/".to_owned();
        }
        let mut s = String::new();
        for p in parts.iter().rev() {
            s.push('/');
            s.push_str(p);
        }
        s
    }

    /// Resolves an absolute path or an alias (optionally followed by a path), as `of_find_node_by_path`:
    /// a component without a unit address also matches a node named `component@...`.
    pub fn find_path(&self, path: &str) -> Option<NodeId> {
        let (start, rest) = if let Some(rest) = path.strip_prefix('/') {
            (self.root(), rest)
        } else {
            let (alias, rest) = path.split_once('/').unwrap_or((path, ""));
            let target = self.alias(alias)?;
            if !target.starts_with('/') {
                return None; // no alias chains
            }
            (self.find_path(target)?, rest)
        };
        let mut cur = start;
        for comp in rest.split('/').filter(|c| !c.is_empty()) {
            let kids = self.children(cur);
            let exact = kids.iter().copied().find(|&k| self.name(k) == comp);
            cur = match exact {
                Some(k) => k,
                None if !comp.contains('@') => kids
                    .iter()
                    .copied()
                    .find(|&k| self.name(k).split('@').next() == Some(comp))?,
                None => return None,
            };
        }
        Some(cur)
    }

    /// The value of `/aliases/<name>`.
    pub fn alias(&self, name: &str) -> Option<&str> {
        let aliases = self
            .children(self.root())
            .iter()
            .copied()
            .find(|&k| self.name(k) == "aliases")?;
        self.prop_str(aliases, name).ok().flatten()
    }

    pub fn find_phandle(&self, phandle: u32) -> Option<NodeId> {
        self.phandles.get(&phandle).copied()
    }

    /// The node's phandle, if it has one.
    pub fn phandle(&self, id: NodeId) -> Option<u32> {
        self.prop_u32(id, "phandle")
            .ok()
            .flatten()
            .or_else(|| self.prop_u32(id, "linux,phandle").ok().flatten())
    }

    /// The largest phandle in use (0 if none), for allocating new ones.
    pub fn max_phandle(&self) -> u32 {
        self.phandles.keys().next_back().copied().unwrap_or(0)
    }

    /// All nodes (in document order) whose `compatible` list contains `compat`.
    pub fn find_compatible(&self, compat: &str) -> Vec<NodeId> {
        self.nodes()
            .filter(|&n| self.is_compatible(n, compat))
            .collect()
    }

    pub fn is_compatible(&self, id: NodeId, compat: &str) -> bool {
        self.compatible(id).contains(&compat)
    }

    /// The `compatible` list (empty when absent or malformed).
    pub fn compatible(&self, id: NodeId) -> Vec<&str> {
        self.prop_strings(id, "compatible")
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// `status` absent, "okay" or "ok".
    pub fn is_enabled(&self, id: NodeId) -> bool {
        match self.prop(id, "status") {
            None => true,
            Some(v) => {
                let s = v.split(|&b| b == 0).next().unwrap_or(&[]);
                s == b"okay" || s == b"ok"
            }
        }
    }

    /// The node and all its ancestors are enabled.
    pub fn is_available(&self, id: NodeId) -> bool {
        let mut cur = Some(id);
        while let Some(c) = cur {
            if !self.is_enabled(c) {
                return false;
            }
            cur = self.parent(c);
        }
        true
    }

    /// A property's raw value.
    pub fn prop(&self, id: NodeId, name: &str) -> Option<&[u8]> {
        self.tree
            .node(id)
            .props
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_slice())
    }

    pub fn has_prop(&self, id: NodeId, name: &str) -> bool {
        self.prop(id, name).is_some()
    }

    pub(crate) fn bad_prop(&self, id: NodeId, prop: &str, reason: impl Into<String>) -> DtError {
        DtError::BadProperty {
            node: self.path(id),
            prop: prop.to_owned(),
            reason: reason.into(),
        }
    }

    /// A property as big-endian u32 cells (error if its length is not a multiple of 4).
    pub fn prop_cells(&self, id: NodeId, name: &str) -> Result<Option<Vec<u32>>, DtError> {
        let Some(v) = self.prop(id, name) else {
            return Ok(None);
        };
        if v.len() % 4 != 0 {
            return Err(self.bad_prop(
                id,
                name,
                format!("length {} is not a multiple of 4", v.len()),
            ));
        }
        Ok(Some(
            v.chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect::<Vec<u32>>(),
        ))
    }

    /// A one-cell property.
    pub fn prop_u32(&self, id: NodeId, name: &str) -> Result<Option<u32>, DtError> {
        let Some(v) = self.prop(id, name) else {
            return Ok(None);
        };
        if v.len() != 4 {
            return Err(self.bad_prop(id, name, format!("length {} is not one cell", v.len())));
        }
        Ok(Some(u32::from_be_bytes([v[0], v[1], v[2], v[3]])))
    }

    /// A string property (the first string of a list).
    pub fn prop_str(&self, id: NodeId, name: &str) -> Result<Option<&str>, DtError> {
        Ok(self
            .prop_strings(id, name)?
            .map(|l| l.first().copied().unwrap_or("")))
    }

    /// A NUL-separated string list property.
    pub fn prop_strings(&self, id: NodeId, name: &str) -> Result<Option<Vec<&str>>, DtError> {
        let Some(v) = self.prop(id, name) else {
            return Ok(None);
        };
        if v.is_empty() {
            return Ok(Some(Vec::new()));
        }
        if v.last() != Some(&0) {
            return Err(self.bad_prop(id, name, "string not NUL-terminated"));
        }
        let mut out = Vec::new();
        for s in v[..v.len() - 1].split(|&b| b == 0) {
            out.push(
                core::str::from_utf8(s)
                    .map_err(|_| self.bad_prop(id, name, "string is not UTF-8"))?,
            );
        }
        Ok(Some(out))
    }

    /// `#address-cells`/`#size-cells` that apply to the children of `bus`. Like Linux and Xen, an absent
    /// value is inherited from the nearest ancestor that has one (defaults 2 and 1).
    pub fn cells_of_bus(&self, bus: NodeId) -> Result<(u32, u32), DtError> {
        let find = |name: &str, dflt: u32| -> Result<u32, DtError> {
            let mut cur = Some(bus);
            while let Some(c) = cur {
                if let Some(v) = self.prop_u32(c, name)? {
                    return Ok(v);
                }
                cur = self.parent(c);
            }
            Ok(dflt)
        };
        let a = find("#address-cells", 2)?;
        let s = find("#size-cells", 1)?;
        if a > 3 {
            return Err(self.bad_prop(
                bus,
                "#address-cells",
                format!("{a} cells unsupported (max 3)"),
            ));
        }
        if s > 2 {
            return Err(self.bad_prop(
                bus,
                "#size-cells",
                format!("{s} cells unsupported (max 2)"),
            ));
        }
        Ok((a, s))
    }

    /// The untranslated `reg` entries of `id` as (phys.hi cell for 3-cell buses, address, size).
    pub fn raw_reg(&self, id: NodeId) -> Result<Vec<(u32, u64, u64)>, DtError> {
        let Some(bus) = self.parent(id) else {
            return Err(self.bad_prop(id, "reg", "the root node has no reg"));
        };
        let (na, ns) = self.cells_of_bus(bus)?;
        let Some(cells) = self.prop_cells(id, "reg")? else {
            return Err(DtError::MissingProperty {
                node: self.path(id),
                prop: "reg".to_owned(),
            });
        };
        let stride = (na + ns) as usize;
        if na == 0 || stride == 0 || cells.len() % stride != 0 {
            return Err(self.bad_prop(
                id,
                "reg",
                format!(
                    "{} cells is not a multiple of #address-cells {na} + #size-cells {ns}",
                    cells.len()
                ),
            ));
        }
        Ok(cells
            .chunks_exact(stride)
            .map(|e| {
                let (hi, addr) = split_addr(&e[..na as usize]);
                (hi, addr, cells_to_u64(&e[na as usize..]))
            })
            .collect())
    }

    /// `reg` translated to CPU physical addresses through every ancestor's `ranges`.
    pub fn reg(&self, id: NodeId) -> Result<Vec<Region>, DtError> {
        self.raw_reg(id)?
            .into_iter()
            .map(|(hi, addr, size)| {
                Ok(Region {
                    base: self.translate(id, hi, addr)?,
                    size,
                })
            })
            .collect()
    }

    /// Translates an address in the address space of `id`'s parent bus to a CPU physical address.
    pub fn translate(&self, id: NodeId, mut hi: u32, mut addr: u64) -> Result<u64, DtError> {
        let mut bus = match self.parent(id) {
            Some(b) => b,
            None => return Ok(addr),
        };
        while let Some(up) = self.parent(bus) {
            let Some(ranges) = self.prop_cells(bus, "ranges")? else {
                return Err(DtError::Untranslatable {
                    node: self.path(id),
                    reason: format!("bus {} has no `ranges`", self.path(bus)),
                });
            };
            if !ranges.is_empty() {
                let (cna, cns) = self.cells_of_bus(bus)?;
                let (pna, _) = self.cells_of_bus(up)?;
                let stride = (cna + pna + cns) as usize;
                if stride == 0 || ranges.len() % stride != 0 {
                    return Err(self.bad_prop(
                        bus,
                        "ranges",
                        "length is not a multiple of its entry size",
                    ));
                }
                let mut found = None;
                for e in ranges.chunks_exact(stride) {
                    let (c_hi, c_addr) = split_addr(&e[..cna as usize]);
                    let (p_hi, p_addr) = split_addr(&e[cna as usize..(cna + pna) as usize]);
                    let size = cells_to_u64(&e[(cna + pna) as usize..]);
                    let same_space = cna < 3 || (c_hi & PCI_SPACE_MASK) == (hi & PCI_SPACE_MASK);
                    if same_space && addr >= c_addr && addr - c_addr < size {
                        found = Some((p_hi, p_addr.wrapping_add(addr - c_addr)));
                        break;
                    }
                }
                let Some((h, a)) = found else {
                    return Err(DtError::Untranslatable {
                        node: self.path(id),
                        reason: format!(
                            "address {addr:#x} is outside the `ranges` of {}",
                            self.path(bus)
                        ),
                    });
                };
                hi = h;
                addr = a;
            }
            bus = up;
        }
        Ok(addr)
    }

    /// The interrupt parent of `id`: its (or its nearest ancestor's) `interrupt-parent`.
    pub fn interrupt_parent(&self, id: NodeId) -> Result<Option<NodeId>, DtError> {
        let mut cur = Some(id);
        while let Some(c) = cur {
            if let Some(ph) = self.prop_u32(c, "interrupt-parent")? {
                return self
                    .find_phandle(ph)
                    .map(Some)
                    .ok_or_else(|| DtError::DanglingPhandle {
                        node: self.path(c),
                        prop: "interrupt-parent".to_owned(),
                        phandle: ph,
                    });
            }
            cur = self.parent(c);
        }
        Ok(None)
    }

    fn irq_spec(&self, ctrl: NodeId, cells: &[u32]) -> IrqSpec {
        IrqSpec {
            controller: self.path(ctrl),
            controller_is_gic: GIC_COMPATIBLES.iter().any(|c| self.is_compatible(ctrl, c)),
            cells: cells.to_vec(),
        }
    }

    /// The node's interrupts (`interrupts-extended`, else `interrupts` with its interrupt parent).
    pub fn interrupts(&self, id: NodeId) -> Result<Vec<IrqSpec>, DtError> {
        let mut out = Vec::new();
        if let Some(cells) = self.prop_cells(id, "interrupts-extended")? {
            let mut i = 0;
            while i < cells.len() {
                let ph = cells[i];
                let ctrl = self
                    .find_phandle(ph)
                    .ok_or_else(|| DtError::DanglingPhandle {
                        node: self.path(id),
                        prop: "interrupts-extended".to_owned(),
                        phandle: ph,
                    })?;
                let n = self.interrupt_cells(ctrl)? as usize;
                let spec = cells.get(i + 1..i + 1 + n).ok_or_else(|| {
                    self.bad_prop(id, "interrupts-extended", "truncated specifier")
                })?;
                out.push(self.irq_spec(ctrl, spec));
                i += 1 + n;
            }
            return Ok(out);
        }
        let Some(cells) = self.prop_cells(id, "interrupts")? else {
            return Ok(out);
        };
        let ctrl = self.interrupt_parent(id)?.ok_or_else(|| {
            self.bad_prop(
                id,
                "interrupts",
                "no interrupt-parent in the node or its ancestors",
            )
        })?;
        let n = self.interrupt_cells(ctrl)? as usize;
        if n == 0 || cells.len() % n != 0 {
            return Err(self.bad_prop(
                id,
                "interrupts",
                format!("not a multiple of #interrupt-cells {n}"),
            ));
        }
        for spec in cells.chunks_exact(n) {
            out.push(self.irq_spec(ctrl, spec));
        }
        Ok(out)
    }

    /// The highest GIC INTID any node names, SPIs included (at least 31: SGIs and PPIs always
    /// exist): in `interrupts`, `interrupts-extended`, and the parent side of `interrupt-map`
    /// entries (PCI INTx). Disabled nodes count too. An error when the tree can use SPIs it
    /// does not name (a GICv2m MSI frame hands them out at run time) or is malformed: then
    /// the caller cannot bound the SPIs a guest needs.
    pub fn highest_gic_intid(&self) -> Result<u32, DtError> {
        let mut highest = 31u32;
        for id in self.nodes() {
            if self.is_compatible(id, "arm,gic-v2m-frame") {
                return Err(self.bad_prop(id, "compatible", "a GICv2m MSI frame allocates SPIs the tree does not name"));
            }
            for spec in self.interrupts(id)? {
                if let Some(intid) = spec.gic_intid() {
                    highest = highest.max(intid);
                }
            }
            for spec in self.interrupt_map_parents(id)? {
                if let Some(intid) = spec.gic_intid() {
                    highest = highest.max(intid);
                }
            }
        }
        Ok(highest)
    }

    /// The parent interrupt specifiers of a node's `interrupt-map` (empty without one). Each
    /// entry is: child unit address (the node's `#address-cells`), child specifier (its
    /// `#interrupt-cells`), parent phandle, parent unit address (the parent's `#address-cells`,
    /// 0 if absent), parent specifier (the parent's `#interrupt-cells`).
    pub fn interrupt_map_parents(&self, id: NodeId) -> Result<Vec<IrqSpec>, DtError> {
        let Some(map) = self.prop_cells(id, "interrupt-map")? else {
            return Ok(Vec::new());
        };
        let child = self.prop_u32(id, "#address-cells")?.unwrap_or(2) as usize + self.interrupt_cells(id)? as usize;
        let mut out = Vec::new();
        let mut i = 0;
        while i < map.len() {
            let truncated = || self.bad_prop(id, "interrupt-map", "truncated entry");
            let ph = *map.get(i + child).ok_or_else(truncated)?;
            let parent = self.find_phandle(ph).ok_or_else(|| DtError::DanglingPhandle {
                node: self.path(id),
                prop: "interrupt-map".to_owned(),
                phandle: ph,
            })?;
            let paddr = self.prop_u32(parent, "#address-cells")?.unwrap_or(0) as usize;
            if paddr > 4 {
                return Err(self.bad_prop(parent, "#address-cells", "more than 4 cells in an interrupt-map parent"));
            }
            let start = i + child + 1 + paddr;
            let n = self.interrupt_cells(parent)? as usize;
            let spec = map.get(start..start + n).ok_or_else(truncated)?;
            out.push(self.irq_spec(parent, spec));
            i = start + n;
        }
        Ok(out)
    }

    fn interrupt_cells(&self, ctrl: NodeId) -> Result<u32, DtError> {
        match self.prop_u32(ctrl, "#interrupt-cells")? {
            Some(n) if (1..=8).contains(&n) => Ok(n),
            Some(n) => Err(self.bad_prop(ctrl, "#interrupt-cells", format!("{n} is not in 1..=8"))),
            None => Err(DtError::MissingProperty {
                node: self.path(ctrl),
                prop: "#interrupt-cells".to_owned(),
            }),
        }
    }

    /// Whether `id` is a PCI host bridge (device_type "pci" or an ECAM-generic compatible).
    pub fn is_pci_host_bridge(&self, id: NodeId) -> bool {
        self.prop_str(id, "device_type").ok().flatten() == Some("pci")
            || self.is_compatible(id, "pci-host-ecam-generic")
            || self.is_compatible(id, "pci-host-cam-generic")
    }

    /// A PCI host bridge's outbound windows (its `ranges`), translated to CPU physical addresses.
    pub fn pci_windows(&self, id: NodeId) -> Result<Vec<Region>, DtError> {
        let Some(ranges) = self.prop_cells(id, "ranges")? else {
            return Ok(Vec::new());
        };
        let (cna, cns) = self.cells_of_bus(id)?;
        let Some(parent) = self.parent(id) else {
            return Ok(Vec::new());
        };
        let (pna, _) = self.cells_of_bus(parent)?;
        let stride = (cna + pna + cns) as usize;
        if stride == 0 || ranges.len() % stride != 0 {
            return Err(self.bad_prop(id, "ranges", "length is not a multiple of its entry size"));
        }
        let mut out = Vec::new();
        for e in ranges.chunks_exact(stride) {
            let (p_hi, p_addr) = split_addr(&e[cna as usize..(cna + pna) as usize]);
            let size = cells_to_u64(&e[(cna + pna) as usize..]);
            // The parent-side address is in the bus of `parent`, i.e. the same space as `id`'s reg.
            out.push(Region {
                base: self.translate(id, p_hi, p_addr)?,
                size,
            });
        }
        Ok(out)
    }

    /// Every MMIO region a direct-mapped dom0 may need: the translated `reg` of every available device
    /// node (not /memory, /reserved-memory, /cpus, /chosen, nor nodes whose bus has no CPU mapping, such
    /// as I2C or SPI children), plus PCI host bridges' windows. The caller removes what the hypervisor keeps.
    pub fn device_regions(&self) -> Vec<DeviceRegion> {
        let mut out = Vec::new();
        for id in self.nodes() {
            if id == self.root() || !self.is_available(id) || self.in_non_device_subtree(id) {
                continue;
            }
            if self.prop(id, "reg").is_some() {
                if let Ok(regs) = self.reg(id) {
                    for r in regs.into_iter().filter(|r| r.size != 0) {
                        out.push(DeviceRegion {
                            path: self.path(id),
                            region: r,
                            kind: RegionKind::Reg,
                        });
                    }
                }
            }
            if self.is_pci_host_bridge(id) {
                if let Ok(wins) = self.pci_windows(id) {
                    for r in wins.into_iter().filter(|r| r.size != 0) {
                        out.push(DeviceRegion {
                            path: self.path(id),
                            region: r,
                            kind: RegionKind::PciWindow,
                        });
                    }
                }
            }
        }
        out
    }

    fn in_non_device_subtree(&self, id: NodeId) -> bool {
        let mut cur = id;
        loop {
            let Some(p) = self.parent(cur) else {
                return false;
            };
            if p == self.root() {
                let name = self.name(cur).split('@').next().unwrap_or("");
                return matches!(
                    name,
                    "memory" | "reserved-memory" | "cpus" | "chosen" | "aliases"
                ) || self.prop_str(cur, "device_type").ok().flatten() == Some("memory");
            }
            cur = p;
        }
    }
}

/// Bits 24..26 of a PCI phys.hi cell: the address space (config, I/O, 32-bit or 64-bit memory).
const PCI_SPACE_MASK: u32 = 0x0300_0000;

/// Splits a 1..=3-cell address into (phys.hi for 3-cell addresses, else 0; the low 64 bits).
fn split_addr(cells: &[u32]) -> (u32, u64) {
    if cells.len() >= 3 {
        (cells[0], cells_to_u64(&cells[cells.len() - 2..]))
    } else {
        (0, cells_to_u64(cells))
    }
}

/// Up to two cells as a u64 (more cells: the low 64 bits).
pub(crate) fn cells_to_u64(cells: &[u32]) -> u64 {
    cells.iter().fold(0u64, |acc, &c| (acc << 32) | c as u64)
}
