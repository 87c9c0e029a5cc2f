//! The flattened device tree (FDT, DTSpec v0.4 chapter 5) as bytes: a strict reader that turns an untrusted
//! blob into an owned [`Tree`], and a writer that turns a (possibly edited) `Tree` back into a blob.
//!
//! Own reader/writer rather than fdt-rs/vm-fdt: the reader must check every offset of a hostile blob and
//! return a specific [`DtError`] (fdt-rs reports one opaque error kind and panics on some malformed
//! inputs), and dom0's tree is built by editing a copy of the host tree, which an owned tree makes trivial
//! (vm-fdt only appends, in order).

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use super::DtError;

/// `0xd00dfeed`, big-endian at offset 0.
pub const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;
const HEADER_LEN: usize = 40;
/// Deeper nesting than this is treated as malformed (real trees are < 10 deep).
pub const MAX_DEPTH: usize = 64;

/// Index of a node in its [`Tree`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u32);

impl NodeId {
    pub(crate) fn idx(self) -> usize {
        self.0 as usize
    }
}

/// One property: its name and raw (big-endian) value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Property {
    pub name: String,
    pub value: Vec<u8>,
}

/// One node. `deleted` nodes (and their subtrees) are skipped by the writer and by lookups.
#[derive(Clone, Debug)]
pub struct NodeData {
    pub name: String,
    pub parent: Option<NodeId>,
    pub children: Vec<NodeId>,
    pub props: Vec<Property>,
    pub deleted: bool,
}

/// An owned device tree: nodes (index 0 is the root), the memory reservation block and the boot CPU.
#[derive(Clone, Debug)]
pub struct Tree {
    pub nodes: Vec<NodeData>,
    pub mem_reserve: Vec<(u64, u64)>,
    pub boot_cpuid_phys: u32,
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn be64(b: &[u8], off: usize) -> Option<u64> {
    Some(((be32(b, off)? as u64) << 32) | be32(b, off + 4)? as u64)
}

fn align4(x: usize) -> Option<usize> {
    x.checked_add(3).map(|v| v & !3)
}

/// The header fields the reader uses.
#[derive(Clone, Copy, Debug)]
struct Header {
    totalsize: u32,
    off_dt_struct: u32,
    off_dt_strings: u32,
    off_mem_rsvmap: u32,
    version: u32,
    boot_cpuid_phys: u32,
    size_dt_strings: u32,
    size_dt_struct: u32,
}

fn block(
    name: &'static str,
    off: u32,
    size: u32,
    total: u32,
) -> Result<core::ops::Range<usize>, DtError> {
    let end = off as u64 + size as u64;
    if end > total as u64 {
        return Err(DtError::BlockOutOfBounds {
            block: name,
            offset: off,
            size,
            totalsize: total,
        });
    }
    Ok(off as usize..end as usize)
}

impl Tree {
    /// Parses and validates `blob` (see [`DtError`] for what is checked).
    pub fn parse(blob: &[u8]) -> Result<Tree, DtError> {
        if blob.len() < HEADER_LEN {
            return Err(DtError::Truncated {
                len: blob.len(),
                needed: HEADER_LEN,
            });
        }
        let rd = |i: usize| be32(blob, i * 4).unwrap_or(0);
        let magic = rd(0);
        if magic != FDT_MAGIC {
            return Err(DtError::BadMagic(magic));
        }
        let mut h = Header {
            totalsize: rd(1),
            off_dt_struct: rd(2),
            off_dt_strings: rd(3),
            off_mem_rsvmap: rd(4),
            version: rd(5),
            boot_cpuid_phys: rd(7),
            size_dt_strings: rd(8),
            size_dt_struct: rd(9),
        };
        let last_comp = rd(6);
        if (h.totalsize as usize) > blob.len() {
            return Err(DtError::TotalSizeBeyondBlob {
                totalsize: h.totalsize,
                blob_len: blob.len(),
            });
        }
        if (h.totalsize as usize) < HEADER_LEN {
            return Err(DtError::BadHeader("totalsize is smaller than the header"));
        }
        if h.version < 16 || last_comp > 17 {
            return Err(DtError::UnsupportedVersion {
                version: h.version,
                last_comp_version: last_comp,
            });
        }
        if h.version < 17 {
            // v16 has no size_dt_struct: the block may run to the end of the blob.
            h.size_dt_struct = h.totalsize.saturating_sub(h.off_dt_struct);
        }
        let blob = &blob[..h.totalsize as usize];
        let st = block("structure", h.off_dt_struct, h.size_dt_struct, h.totalsize)?;
        let strs = block("strings", h.off_dt_strings, h.size_dt_strings, h.totalsize)?;
        if !h.off_dt_struct.is_multiple_of(4) {
            return Err(DtError::BadHeader("structure block is not 4-byte aligned"));
        }
        if !h.off_mem_rsvmap.is_multiple_of(8) || h.off_mem_rsvmap as usize >= blob.len() {
            return Err(DtError::BadHeader(
                "memory reservation block misaligned or outside the blob",
            ));
        }
        let mut mem_reserve = Vec::new();
        let mut off = h.off_mem_rsvmap as usize;
        loop {
            let (Some(addr), Some(size)) = (be64(blob, off), be64(blob, off + 8)) else {
                return Err(DtError::BadHeader(
                    "memory reservation block not terminated inside the blob",
                ));
            };
            if addr == 0 && size == 0 {
                break;
            }
            mem_reserve.push((addr, size));
            off += 16;
        }
        let nodes = parse_struct(&blob[st.clone()], &blob[strs], st.start)?;
        Ok(Tree {
            nodes,
            mem_reserve,
            boot_cpuid_phys: h.boot_cpuid_phys,
        })
    }

    /// The root node.
    pub fn root(&self) -> NodeId {
        NodeId(0)
    }

    pub fn node(&self, id: NodeId) -> &NodeData {
        &self.nodes[id.idx()]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut NodeData {
        &mut self.nodes[id.idx()]
    }

    /// Adds an empty child node and returns it.
    pub fn add_node(&mut self, parent: NodeId, name: &str) -> NodeId {
        let id = NodeId(self.nodes.len() as u32);
        self.nodes.push(NodeData {
            name: String::from(name),
            parent: Some(parent),
            children: Vec::new(),
            props: Vec::new(),
            deleted: false,
        });
        self.nodes[parent.idx()].children.push(id);
        id
    }

    /// Sets (replaces or appends) a property.
    pub fn set_prop(&mut self, id: NodeId, name: &str, value: Vec<u8>) {
        let n = self.node_mut(id);
        if let Some(p) = n.props.iter_mut().find(|p| p.name == name) {
            p.value = value;
        } else {
            n.props.push(Property {
                name: String::from(name),
                value,
            });
        }
    }

    /// Removes a property if present.
    pub fn remove_prop(&mut self, id: NodeId, name: &str) {
        self.node_mut(id).props.retain(|p| p.name != name);
    }

    /// Serializes the live (non-deleted) nodes as an FDT v17 blob, strings deduplicated.
    pub fn to_blob(&self) -> Vec<u8> {
        let mut st: Vec<u8> = Vec::new();
        let mut strings: Vec<u8> = Vec::new();
        let mut string_offsets: BTreeMap<String, u32> = BTreeMap::new();
        let mut stack: Vec<(NodeId, bool)> = alloc::vec![(self.root(), false)];
        while let Some((id, closing)) = stack.pop() {
            if closing {
                st.extend_from_slice(&FDT_END_NODE.to_be_bytes());
                continue;
            }
            let n = self.node(id);
            if n.deleted {
                continue;
            }
            st.extend_from_slice(&FDT_BEGIN_NODE.to_be_bytes());
            st.extend_from_slice(n.name.as_bytes());
            st.push(0);
            while !st.len().is_multiple_of(4) {
                st.push(0);
            }
            for p in &n.props {
                let off = *string_offsets.entry(p.name.clone()).or_insert_with(|| {
                    let o = strings.len() as u32;
                    strings.extend_from_slice(p.name.as_bytes());
                    strings.push(0);
                    o
                });
                st.extend_from_slice(&FDT_PROP.to_be_bytes());
                st.extend_from_slice(&(p.value.len() as u32).to_be_bytes());
                st.extend_from_slice(&off.to_be_bytes());
                st.extend_from_slice(&p.value);
                while !st.len().is_multiple_of(4) {
                    st.push(0);
                }
            }
            stack.push((id, true));
            for &c in n.children.iter().rev() {
                stack.push((c, false));
            }
        }
        st.extend_from_slice(&FDT_END.to_be_bytes());

        let off_rsv = HEADER_LEN; // 40 is 8-aligned
        let rsv_len = (self.mem_reserve.len() + 1) * 16;
        let off_struct = off_rsv + rsv_len;
        let off_strings = off_struct + st.len();
        let total = off_strings + strings.len();
        let mut out = Vec::with_capacity(total);
        for v in [
            FDT_MAGIC,
            total as u32,
            off_struct as u32,
            off_strings as u32,
            off_rsv as u32,
            17,
            16,
            self.boot_cpuid_phys,
            strings.len() as u32,
            st.len() as u32,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        for &(a, s) in &self.mem_reserve {
            out.extend_from_slice(&a.to_be_bytes());
            out.extend_from_slice(&s.to_be_bytes());
        }
        out.extend_from_slice(&[0u8; 16]);
        out.extend_from_slice(&st);
        out.extend_from_slice(&strings);
        out
    }
}

/// Reads a NUL-terminated UTF-8 string at `off` of `b`.
fn cstr(b: &[u8], off: usize) -> Option<&str> {
    let rest = b.get(off..)?;
    let end = rest.iter().position(|&c| c == 0)?;
    core::str::from_utf8(&rest[..end]).ok()
}

/// Walks the structure block. `base` is the block's offset in the blob, for error messages.
fn parse_struct(st: &[u8], strs: &[u8], base: usize) -> Result<Vec<NodeData>, DtError> {
    let bad = |off: usize, reason: &'static str| DtError::BadStructure {
        offset: base + off,
        reason,
    };
    let mut nodes: Vec<NodeData> = Vec::new();
    let mut stack: Vec<NodeId> = Vec::new();
    let mut off = 0usize;
    let mut root_done = false;
    loop {
        let tok = be32(st, off).ok_or_else(|| bad(off, "structure block ends without FDT_END"))?;
        let tok_off = off;
        off += 4;
        match tok {
            FDT_BEGIN_NODE => {
                if root_done {
                    return Err(bad(tok_off, "a second root node"));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(bad(tok_off, "nodes nested too deep"));
                }
                let name = cstr(st, off)
                    .ok_or_else(|| bad(off, "node name not NUL-terminated or not UTF-8"))?;
                if stack.is_empty() && !name.is_empty() {
                    return Err(bad(off, "root node has a name"));
                }
                if !stack.is_empty() && name.is_empty() {
                    return Err(bad(off, "non-root node without a name"));
                }
                let id = NodeId(nodes.len() as u32);
                let parent = stack.last().copied();
                nodes.push(NodeData {
                    name: String::from(name),
                    parent,
                    children: Vec::new(),
                    props: Vec::new(),
                    deleted: false,
                });
                if let Some(p) = parent {
                    nodes[p.idx()].children.push(id);
                }
                stack.push(id);
                off = align4(off + name.len() + 1).ok_or_else(|| bad(off, "offset overflow"))?;
            }
            FDT_END_NODE => {
                if stack.pop().is_none() {
                    return Err(bad(tok_off, "FDT_END_NODE without an open node"));
                }
                if stack.is_empty() {
                    root_done = true;
                }
            }
            FDT_PROP => {
                let cur = *stack
                    .last()
                    .ok_or_else(|| bad(tok_off, "property outside any node"))?;
                let len =
                    be32(st, off).ok_or_else(|| bad(off, "truncated property header"))? as usize;
                let nameoff = be32(st, off + 4)
                    .ok_or_else(|| bad(off, "truncated property header"))?
                    as usize;
                off += 8;
                let value = st
                    .get(
                        off..off
                            .checked_add(len)
                            .ok_or_else(|| bad(off, "offset overflow"))?,
                    )
                    .ok_or_else(|| bad(off, "property value runs past the structure block"))?;
                let name = cstr(strs, nameoff).ok_or_else(|| {
                    bad(tok_off, "property name offset outside the strings block")
                })?;
                if name.is_empty() {
                    return Err(bad(tok_off, "property with an empty name"));
                }
                nodes[cur.idx()].props.push(Property {
                    name: String::from(name),
                    value: value.to_vec(),
                });
                off = align4(off + len).ok_or_else(|| bad(off, "offset overflow"))?;
            }
            FDT_NOP => {}
            FDT_END => {
                if !stack.is_empty() {
                    return Err(bad(tok_off, "FDT_END inside an open node"));
                }
                if !root_done {
                    return Err(bad(tok_off, "no root node"));
                }
                return Ok(nodes);
            }
            _ => return Err(bad(tok_off, "unknown token")),
        }
    }
}
