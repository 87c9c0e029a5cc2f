//! A minimal flattened-device-tree reader: just enough to find the guest's RAM (`/memory*` `reg`
//! under the root's `#address-cells`/`#size-cells`) and `/chosen/bootargs`. It only does aligned
//! loads, so it is safe to run with the MMU off.

const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// Most RAM banks remembered.
pub const MAX_BANKS: usize = 8;
/// Longest command line kept.
pub const MAX_BOOTARGS: usize = 256;

/// A RAM bank: `[base, base + size)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bank {
    /// Physical (guest-physical) base.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
}

/// A PCI host bridge (`pci-host-ecam-generic`): its config space and 32-bit MMIO window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PciHost {
    /// ECAM (`reg`).
    pub ecam: Bank,
    /// The first non-prefetchable 32-bit memory window of `ranges` (CPU address and size).
    pub mmio32: Bank,
}

/// What the guest takes from its DTB.
pub struct BootInfo {
    /// The `reg` of a root-level `smmuv3@...` node, if dom0's DT has one (the hypervisor
    /// removes the node of an SMMU it keeps).
    pub smmu: Option<Bank>,
    /// The first PCI host bridge at the root, if any.
    pub pci: Option<PciHost>,
    /// The `reg` of a root-level `sbsa-uart@...` node: the emulated UART (Xen's vpl011) a
    /// dom0less domU writes its console to.
    pub uart: Option<Bank>,
    /// RAM banks from `/memory*`.
    pub banks: [Bank; MAX_BANKS],
    /// Valid entries in `banks`.
    pub nr_banks: usize,
    /// `/chosen/bootargs` bytes (without the NUL).
    pub bootargs: [u8; MAX_BOOTARGS],
    /// Valid bytes in `bootargs`.
    pub bootargs_len: usize,
    /// The root-level `intc@...` node is a GICv2 (`arm,cortex-a15-gic` or `arm,gic-400`).
    pub gic_v2: bool,
}

/// Why the DTB could not be read.
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)] // the fields are read through Debug
pub enum FdtError {
    /// No DTB magic at the given address.
    BadMagic,
    /// A token or offset runs outside the blob.
    Truncated,
    /// An unknown structure token.
    BadToken(u32),
}

fn be32(b: &[u8], off: usize) -> Result<u32, FdtError> {
    let s = b.get(off..off + 4).ok_or(FdtError::Truncated)?;
    Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn cstr(b: &[u8], off: usize) -> Result<&[u8], FdtError> {
    let rest = b.get(off..).ok_or(FdtError::Truncated)?;
    let len = rest.iter().position(|&c| c == 0).ok_or(FdtError::Truncated)?;
    Ok(&rest[..len])
}

fn cells(b: &[u8], n: u32) -> u64 {
    b.chunks_exact(4).take(n as usize).fold(0u64, |acc, c| acc << 32 | u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as u64)
}

/// Reads the blob at `dtb`.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
///
/// # Safety
/// `dtb` must point at readable memory holding a DTB (its header gives the length).
pub unsafe fn read(dtb: usize) -> Result<BootInfo, FdtError> {
    // SAFETY: the caller guarantees the header is readable.
    let head = unsafe { core::slice::from_raw_parts(dtb as *const u8, 40) };
    if be32(head, 0)? != FDT_MAGIC {
        return Err(FdtError::BadMagic);
    }
    let total = be32(head, 4)? as usize;
    // SAFETY: the header says the blob is `total` bytes long.
    let blob = unsafe { core::slice::from_raw_parts(dtb as *const u8, total) };
    parse(blob)
}

/// Parses a DTB held in `blob`.
pub fn parse(blob: &[u8]) -> Result<BootInfo, FdtError> {
    let off_struct = be32(blob, 8)? as usize;
    let off_strings = be32(blob, 12)? as usize;
    let mut info = BootInfo { smmu: None, pci: None, uart: None, banks: [Bank::default(); MAX_BANKS], nr_banks: 0, bootargs: [0; MAX_BOOTARGS], bootargs_len: 0, gic_v2: false };
    let (mut addr_cells, mut size_cells) = (2u32, 1u32);
    let mut depth = 0usize;
    let mut top: &[u8] = b"";
    let mut pos = off_struct;
    loop {
        let token = be32(blob, pos)?;
        pos += 4;
        match token {
            FDT_BEGIN_NODE => {
                let name = cstr(blob, pos)?;
                pos += (name.len() + 4) & !3;
                depth += 1;
                if depth == 2 {
                    top = name;
                }
            }
            FDT_END_NODE => depth = depth.saturating_sub(1),
            FDT_PROP => {
                let len = be32(blob, pos)? as usize;
                let name = cstr(blob, off_strings + be32(blob, pos + 4)? as usize)?;
                pos += 8;
                let value = blob.get(pos..pos + len).ok_or(FdtError::Truncated)?;
                pos += (len + 3) & !3;
                match (depth, name) {
                    (1, b"#address-cells") => addr_cells = cells(value, 1) as u32,
                    (1, b"#size-cells") => size_cells = cells(value, 1) as u32,
                    (2, b"reg") if top == b"memory" || top.starts_with(b"memory@") => {
                        let stride = 4 * (addr_cells + size_cells) as usize;
                        for entry in value.chunks_exact(stride.max(4)) {
                            if info.nr_banks == MAX_BANKS {
                                break;
                            }
                            let (a, s) = entry.split_at(4 * addr_cells as usize);
                            let bank = Bank { base: cells(a, addr_cells), size: cells(s, size_cells) };
                            if bank.size != 0 {
                                info.banks[info.nr_banks] = bank;
                                info.nr_banks += 1;
                            }
                        }
                    }
                    (2, b"reg") if top.starts_with(b"smmuv3@") || top.starts_with(b"sbsa-uart@") => {
                        let stride = 4 * (addr_cells + size_cells) as usize;
                        if let Some(entry) = value.chunks_exact(stride.max(4)).next() {
                            let (a, s) = entry.split_at(4 * addr_cells as usize);
                            let bank = Some(Bank { base: cells(a, addr_cells), size: cells(s, size_cells) });
                            if top.starts_with(b"smmuv3@") {
                                info.smmu = bank;
                            } else {
                                info.uart = bank;
                            }
                        }
                    }
                    // QEMU virt's bridge: `#address-cells = 3`, `#size-cells = 2` below it.
                    (2, b"reg") if top.starts_with(b"pcie@") => {
                        let stride = 4 * (addr_cells + size_cells) as usize;
                        if let Some(entry) = value.chunks_exact(stride.max(4)).next() {
                            let (a, s) = entry.split_at(4 * addr_cells as usize);
                            let pci = info.pci.get_or_insert_with(PciHost::default);
                            pci.ecam = Bank { base: cells(a, addr_cells), size: cells(s, size_cells) };
                        }
                    }
                    (2, b"ranges") if top.starts_with(b"pcie@") => {
                        let stride = 4 * (3 + addr_cells + 2) as usize;
                        for entry in value.chunks_exact(stride) {
                            let space = (u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]) >> 24) & 3;
                            let cpu = cells(&entry[12..], addr_cells);
                            let size = cells(&entry[12 + 4 * addr_cells as usize..], 2);
                            let pci = info.pci.get_or_insert_with(PciHost::default);
                            if space == 2 && pci.mmio32.size == 0 && cpu + size <= 1 << 32 {
                                pci.mmio32 = Bank { base: cpu, size };
                            }
                        }
                    }
                    (2, b"compatible") if top.starts_with(b"intc@") => {
                        info.gic_v2 = value.split(|&c| c == 0).any(|c| c == b"arm,cortex-a15-gic" || c == b"arm,gic-400");
                    }
                    (2, b"bootargs") if top == b"chosen" => {
                        let v = value.split(|&c| c == 0).next().unwrap_or(b"");
                        let n = v.len().min(MAX_BOOTARGS);
                        info.bootargs[..n].copy_from_slice(&v[..n]);
                        info.bootargs_len = n;
                    }
                    _ => {}
                }
            }
            FDT_NOP => {}
            FDT_END => return Ok(info),
            t => return Err(FdtError::BadToken(t)),
        }
    }
}

impl BootInfo {
    /// The RAM banks.
    pub fn banks(&self) -> &[Bank] {
        &self.banks[..self.nr_banks]
    }
    /// The command line.
    pub fn bootargs(&self) -> &[u8] {
        &self.bootargs[..self.bootargs_len]
    }
    /// Whether `word` appears as a whole space-separated word of the command line.
    pub fn has_arg(&self, word: &[u8]) -> bool {
        self.bootargs().split(|&c| c == b' ').any(|w| w == word)
    }
    /// Whether `[addr, addr + len)` lies inside one RAM bank.
    pub fn in_ram(&self, addr: u64, len: u64) -> bool {
        self.banks().iter().any(|b| addr >= b.base && addr + len <= b.base + b.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a DTB: root cells, one /memory@ node with `reg`, /chosen with bootargs.
    fn blob(addr_cells: u32, size_cells: u32, reg: &[u32], bootargs: &str) -> Vec<u8> {
        let strings = b"#address-cells\0#size-cells\0reg\0bootargs\0device_type\0";
        let mut st: Vec<u8> = Vec::new();
        let u = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&x.to_be_bytes());
        let node = |v: &mut Vec<u8>, name: &str| {
            u(v, FDT_BEGIN_NODE);
            v.extend_from_slice(name.as_bytes());
            v.push(0);
            while v.len() % 4 != 0 {
                v.push(0);
            }
        };
        let prop = |v: &mut Vec<u8>, nameoff: u32, val: &[u8]| {
            u(v, FDT_PROP);
            u(v, val.len() as u32);
            u(v, nameoff);
            v.extend_from_slice(val);
            while v.len() % 4 != 0 {
                v.push(0);
            }
        };
        node(&mut st, "");
        prop(&mut st, 0, &addr_cells.to_be_bytes());
        prop(&mut st, 15, &size_cells.to_be_bytes());
        node(&mut st, "chosen");
        let mut ba = bootargs.as_bytes().to_vec();
        ba.push(0);
        prop(&mut st, 31, &ba);
        u(&mut st, FDT_NOP);
        u(&mut st, FDT_END_NODE);
        node(&mut st, "memory@60000000");
        prop(&mut st, 40, b"memory\0");
        let regb: Vec<u8> = reg.iter().flat_map(|x| x.to_be_bytes()).collect();
        prop(&mut st, 27, &regb);
        u(&mut st, FDT_END_NODE);
        u(&mut st, FDT_END_NODE);
        u(&mut st, FDT_END);
        let off_struct = 40u32;
        let off_strings = off_struct + st.len() as u32;
        let total = off_strings + strings.len() as u32;
        let mut b = Vec::new();
        for x in [FDT_MAGIC, total, off_struct, off_strings, 0, 17, 16, 0, strings.len() as u32, st.len() as u32] {
            u(&mut b, x);
        }
        b.extend_from_slice(&st);
        b.extend_from_slice(strings);
        b
    }

    #[test]
    fn memory_and_bootargs() {
        let b = blob(2, 2, &[0, 0x6000_0000, 0, 0x2000_0000, 0x1, 0, 0, 0x1000_0000], "console=hvc0 bench");
        let info = parse(&b).unwrap();
        assert_eq!(info.banks(), &[Bank { base: 0x6000_0000, size: 0x2000_0000 }, Bank { base: 0x1_0000_0000, size: 0x1000_0000 }]);
        assert_eq!(info.bootargs(), b"console=hvc0 bench");
        assert!(info.has_arg(b"bench") && !info.has_arg(b"ben"));
        assert!(info.in_ram(0x6008_0000, 0x1000) && !info.in_ram(0x0e00_0000, 4));
    }

    #[test]
    fn one_cell_layout_and_errors() {
        let b = blob(1, 1, &[0x4000_0000, 0x800_0000], "");
        let info = parse(&b).unwrap();
        assert_eq!(info.banks(), &[Bank { base: 0x4000_0000, size: 0x800_0000 }]);
        assert!(!info.has_arg(b"bench"));
        let mut bad = b.clone();
        bad.truncate(60);
        assert!(matches!(parse(&bad), Err(FdtError::Truncated)));
    }
}
