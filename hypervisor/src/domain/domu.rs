//! Boot-time domUs from Xen's "dom0less" bindings: `/chosen` children compatible with
//! "xen,domain" (`memory` in KiB as two cells, `cpus`, and `multiboot,kernel` /
//! `multiboot,ramdisk` module children with `reg` and `bootargs`). [`find_domus`] reads them;
//! [`build_domu`] lays one out the way Xen lays out a guest (RAM at 0x4000_0000, the kernel at
//! its text_offset, the DTB and ramdisk at the top of RAM), gives it its own stage 2 and a
//! device tree, and returns the Domain plus where its vCPU 0 starts. Registering the vGIC for
//! it and running its vCPU are the caller's (boot code) job.

use super::image::Arm64Image;
use super::{DomId, Domain, RamBank, RamBanks};
use crate::dt::fdt::{NodeData, Tree};
use crate::dt::HostDt;
use crate::mm::{FrameAlloc, S2Attr, Stage2, Stage2Config, TlbOps};
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use platform::PhysMem;

/// Xen's guest memory map (arm64), which dom0less guests expect.
pub const GUEST_RAM0_BASE: u64 = 0x4000_0000;
pub const GUEST_GNTTAB_BASE: u64 = 0x3800_0000;
pub const GUEST_GNTTAB_SIZE: u64 = 0x0100_0000;
pub const GUEST_GICV3_GICD_BASE: u64 = 0x0300_1000;
pub const GUEST_GICV3_GICD_SIZE: u64 = 0x0001_0000;
pub const GUEST_GICV3_GICR0_BASE: u64 = 0x0302_0000;
/// Redistributor frames (RD + SGI) per vCPU.
pub const GUEST_GICV3_GICR_STRIDE: u64 = 0x0002_0000;
/// The event-channel PPI Xen gives dom0less guests.
pub const GUEST_EVTCHN_PPI: u32 = 31;
/// Largest RAM a domU gets here (the first guest RAM bank of Xen's layout is 3 GiB).
pub const MAX_DOMU_RAM: u64 = 3 << 30;

/// One domU as the boot DT describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomUSpec {
    /// The `/chosen` child's name (e.g. "domU1").
    pub name: String,
    /// RAM in bytes.
    pub memory: u64,
    pub vcpus: u32,
    /// Host physical range of the kernel module.
    pub kernel: (u64, u64),
    pub ramdisk: Option<(u64, u64)>,
    pub bootargs: Option<String>,
    /// `vpl011`: an emulated SBSA UART at Xen's guest address (`vuart::GUEST_PL011_BASE`).
    pub vpl011: bool,
    /// `xen,enhanced`: which of Xen's PV interfaces the guest is told about.
    pub enhanced: Enhanced,
}

/// Xen's `xen,enhanced` property of a dom0less domain (docs/misc/arm/device-tree/booting.txt).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enhanced {
    /// No property, or a value other than the two below: the guest's DT has no /hypervisor
    /// node and no xenstore is prepared (its hypercalls work all the same).
    Disabled,
    /// `"no-xenstore"`: the /hypervisor node (grant table, event-channel PPI), no xenstore.
    NoXenstore,
    /// `"enabled"` or no value: the /hypervisor node, and a xenstore event channel (unbound,
    /// for dom0) with `HVM_PARAM_STORE_PFN` reading [`STORE_PFN_LATE_INIT`] until dom0's
    /// init-dom0less gives the domain its xenstore page.
    Enabled,
}

impl Enhanced {
    /// The property's value as Xen 4.17 reads it: absent is disabled; present with no value,
    /// or without a terminating NUL, is enabled; otherwise the string up to its first NUL.
    pub fn from_prop(value: Option<&[u8]>) -> Self {
        let Some(v) = value else { return Self::Disabled };
        let Some(end) = v.iter().position(|&c| c == 0) else { return Self::Enabled };
        match &v[..end] {
            b"enabled" => Self::Enabled,
            b"no-xenstore" => Self::NoXenstore,
            _ => Self::Disabled,
        }
    }

    /// The guest's DT gets the /hypervisor node.
    pub fn hypervisor_node(self) -> bool {
        self != Self::Disabled
    }

    /// The domain gets a xenstore event channel and its magic pages.
    pub fn xenstore(self) -> bool {
        self == Self::Enabled
    }
}

/// What `HVM_PARAM_STORE_PFN` of an enhanced domU reads until its xenstore page exists (all
/// ones: Xen's "initialised late" value, which a guest takes as "wait for xenstore").
pub const STORE_PFN_LATE_INIT: u64 = u64::MAX;
/// Xen's guest address of the "magic" pages on ARM (console and xenstore rings; libxl
/// populates 4 there, init-dom0less the xenstore one at the second).
pub const GUEST_MAGIC_BASE: u64 = 0x3900_0000;
/// Pages of the magic region a domain may have populated there.
pub const MAGIC_PAGES: u64 = 4;

/// Why a domU cannot be read or built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DomUError {
    /// A property is missing or malformed.
    BadNode { node: String, what: &'static str },
    /// `memory` is zero, not a multiple of 4 KiB, or beyond [`MAX_DOMU_RAM`].
    BadMemory { node: String, bytes: u64 },
    /// The kernel module is not an arm64 Image.
    BadKernel,
    /// Kernel, ramdisk and DTB do not fit in the domain's RAM.
    TooSmall { needed: u64, have: u64 },
    /// No host memory left for its RAM or its tables.
    OutOfMemory,
    /// Host memory could not be read or written.
    Mem,
}

impl core::fmt::Display for DomUError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadNode { node, what } => write!(f, "/chosen/{node}: missing or malformed {what}"),
            Self::BadMemory { node, bytes } => write!(f, "/chosen/{node}: memory of {bytes} bytes (want a multiple of 4 KiB, at most {} MiB)", MAX_DOMU_RAM >> 20),
            Self::BadKernel => write!(f, "its kernel module is not an arm64 Image"),
            Self::TooSmall { needed, have } => write!(f, "kernel, ramdisk and DTB need {needed} bytes of its {have}"),
            Self::OutOfMemory => write!(f, "not enough free host memory for its RAM and tables"),
            Self::Mem => write!(f, "host memory could not be read or written"),
        }
    }
}

fn be32(b: &[u8], i: usize) -> Option<u32> {
    let start = i.checked_mul(4)?;
    let s = b.get(start..start.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// A number of `cells` big-endian 32-bit cells starting at cell `i`.
fn cells(b: &[u8], i: usize, n: u32) -> Option<u64> {
    match n {
        1 => be32(b, i).map(u64::from),
        2 => Some((u64::from(be32(b, i)?) << 32) | u64::from(be32(b, i.checked_add(1)?)?)),
        _ => None,
    }
}

fn str_prop(dt: &HostDt, id: crate::dt::fdt::NodeId, name: &str) -> Option<String> {
    let v = dt.prop(id, name)?;
    let end = v.iter().position(|&c| c == 0).unwrap_or(v.len());
    core::str::from_utf8(&v[..end]).ok().map(|s| s.to_string())
}

/// Every `xen,domain` child of `/chosen`.
pub fn find_domus(dt: &HostDt) -> Result<Vec<DomUSpec>, DomUError> {
    let Some(chosen) = dt.find_path("/chosen") else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for &node in dt.children(chosen) {
        if !dt.compatible(node).contains(&"xen,domain") {
            continue;
        }
        let name = dt.name(node).to_string();
        let bad = |what| DomUError::BadNode { node: name.clone(), what };
        let kib = dt.prop(node, "memory").and_then(|m| cells(m, 0, 2)).ok_or(bad("memory"))?;
        let memory = kib.checked_mul(1024).ok_or(bad("memory"))?;
        if memory == 0 || memory % 4096 != 0 || memory > MAX_DOMU_RAM {
            return Err(DomUError::BadMemory { node: name, bytes: memory });
        }
        let vcpus = dt.prop(node, "cpus").and_then(|c| be32(c, 0)).unwrap_or(1);
        if vcpus == 0 {
            return Err(bad("cpus"));
        }
        let ac = dt.prop(node, "#address-cells").and_then(|c| be32(c, 0)).unwrap_or(2);
        let sc = dt.prop(node, "#size-cells").and_then(|c| be32(c, 0)).unwrap_or(1);
        let (mut kernel, mut ramdisk, mut bootargs) = (None, None, None);
        for &m in dt.children(node) {
            let compat = dt.compatible(m);
            let reg = dt.prop(m, "reg").and_then(|r| Some((cells(r, 0, ac)?, cells(r, ac as usize, sc)?)));
            if compat.contains(&"multiboot,kernel") {
                kernel = Some(reg.ok_or(bad("kernel reg"))?);
                bootargs = str_prop(dt, m, "bootargs");
            } else if compat.contains(&"multiboot,ramdisk") {
                ramdisk = Some(reg.ok_or(bad("ramdisk reg"))?);
            }
        }
        let kernel = kernel.ok_or(bad("multiboot,kernel module"))?;
        let vpl011 = dt.prop(node, "vpl011").is_some();
        let enhanced = Enhanced::from_prop(dt.prop(node, "xen,enhanced"));
        out.push(DomUSpec { name, memory, vcpus, kernel, ramdisk, bootargs, vpl011, enhanced });
    }
    Ok(out)
}

/// Where a built domU starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomUBoot {
    /// vCPU 0's PC (IPA of the kernel's first instruction), EL1h, MMU off.
    pub entry: u64,
    /// IPA of its DTB (goes in x0).
    pub dtb: u64,
    /// IPA range of its ramdisk, if any.
    pub ramdisk: Option<(u64, u64)>,
}

fn copy(mem: &dyn PhysMem, from: u64, to: u64, len: u64) -> Result<(), DomUError> {
    let mut buf = [0u8; 512];
    let mut done = 0;
    while done < len {
        let n = core::cmp::min(buf.len() as u64, len - done) as usize;
        mem.read(from + done, &mut buf[..n]).map_err(|_| DomUError::Mem)?;
        mem.write(to + done, &buf[..n]).map_err(|_| DomUError::Mem)?;
        done += n as u64;
    }
    Ok(())
}

/// Zero `[pa, pa + len)` to the point of coherency (the domU starts with its caches off).
fn zero(mem: &dyn PhysMem, pa: u64, len: u64) -> Result<(), DomUError> {
    mem.zero(pa, len).map_err(|_| DomUError::Mem)
}

fn align_down(x: u64, a: u64) -> u64 {
    x & !(a - 1)
}

/// Build domU `id` (stage-2 VMID `vmid`) from `spec`: allocate and zero its RAM, load its kernel
/// (and ramdisk), write its DTB, create its stage 2. On error everything allocated is given back.
#[allow(clippy::too_many_arguments)]
pub fn build_domu(spec: &DomUSpec, id: DomId, vmid: u16, frames: &mut dyn FrameAlloc, mem: &dyn PhysMem, tlb: &mut dyn TlbOps) -> Result<(Domain, DomUBoot), DomUError> {
    // RAM: one naturally aligned power-of-two allocation (so stage 2 can use blocks); the
    // part beyond `memory` goes back at once.
    let pages = spec.memory / 4096;
    let alloc_pages = pages.checked_next_power_of_two().ok_or(DomUError::OutOfMemory)?;
    let pa = frames.alloc_frames(alloc_pages as usize).ok_or(DomUError::OutOfMemory)?;
    if alloc_pages > pages {
        frames.free_frames(pa + spec.memory, (alloc_pages - pages) as usize);
    }
    let undo = |frames: &mut dyn FrameAlloc| frames.free_frames(pa, pages as usize);
    let r = (|| {
        zero(mem, pa, spec.memory)?;
        let boot = load(spec, pa, mem)?;
        let mut p2m = Stage2::new(vmid, Stage2Config::DOMAIN, frames, mem).map_err(|_| DomUError::OutOfMemory)?;
        if p2m.map(GUEST_RAM0_BASE, pa, spec.memory, S2Attr::RAM_RWX, frames, mem, tlb).is_err() {
            let _ = p2m.destroy(frames, mem, tlb);
            return Err(DomUError::OutOfMemory);
        }
        Ok((p2m, boot))
    })();
    let (p2m, boot) = match r {
        Ok(v) => v,
        Err(e) => {
            undo(frames);
            return Err(e);
        }
    };
    let mut ram = RamBanks::default();
    ram.push(RamBank { ipa: GUEST_RAM0_BASE, pa, size: spec.memory });
    // An enhanced domain's magic pages: frames set aside now (so that populating them later
    // cannot fail for want of host memory), counted as not held and left unmapped until dom0
    // populates them, within the limit it sets with max_mem (Xen allocates them at that
    // populate from its heap).
    let magic = if spec.enhanced.xenstore() {
        match frames.alloc_frames(MAGIC_PAGES as usize) {
            Some(m) => Some(m),
            None => {
                let _ = p2m.destroy(frames, mem, tlb);
                undo(frames);
                return Err(DomUError::OutOfMemory);
            }
        }
    } else {
        None
    };
    if let Some(m) = magic {
        ram.push(RamBank { ipa: GUEST_MAGIC_BASE, pa: m, size: MAGIC_PAGES * 4096 });
    }
    let mut d = Domain::new(id, false, false, ram);
    *d.p2m.get_mut() = Some(p2m);
    d.callback_ppi = GUEST_EVTCHN_PPI;
    // vCPU 0 starts at the kernel's entry; the others wait for the guest's PSCI CPU_ON.
    d.max_vcpus = spec.vcpus;
    for v in 1..spec.vcpus {
        d.set_vcpu_down(v, true);
    }
    // As Xen's: the domain may hold its RAM and no more until the toolstack raises the limit.
    d.set_max_pages(pages);
    if magic.is_some() {
        d.note_reservation(MAGIC_PAGES, true);
        // Xen's xenstore event channel of a dom0less domain: the lowest free port, unbound
        // for dom0 (whose xenstored binds it at the introduction), and the store frame
        // "late": the guest learns it from the parameter once init-dom0less sets it.
        d.with_evtchn(|ev| {
            if let Some(port) = ev.alloc(super::evtchn::PortState::Unbound { remote: 0 }) {
                ev.hvm_params[guest_abi::hvm::HVM_PARAM_STORE_EVTCHN as usize] = u64::from(port);
            }
            ev.hvm_params[guest_abi::hvm::HVM_PARAM_STORE_PFN as usize] = STORE_PFN_LATE_INIT;
        });
    }
    Ok((d, boot))
}

/// Copy kernel, ramdisk and DTB into the domain's RAM (host PA `pa`); where they landed.
fn load(spec: &DomUSpec, pa: u64, mem: &dyn PhysMem) -> Result<DomUBoot, DomUError> {
    let (kpa, klen) = spec.kernel;
    let mut head = [0u8; 64];
    mem.read(kpa, &mut head).map_err(|_| DomUError::BadKernel)?;
    let image = Arm64Image::parse(&head).map_err(|_| DomUError::BadKernel)?;
    let kernel_off = image.load_offset();
    let kernel_end = kernel_off + image.memory_needed().max(klen);
    // The DTB names the ramdisk's place, which depends on the DTB's size: that size does not
    // depend on the values written (two 64-bit cells), so it is measured first.
    let rd = spec.ramdisk.map(|(_, len)| len).unwrap_or(0);
    let dtb_len = domu_dt(spec, spec.ramdisk.map(|(_, len)| (0, len))).len() as u64;
    // DTB in the last 2 MiB (at most 2 MiB, 8-byte aligned), ramdisk below it.
    let top = spec.memory;
    let dtb_off = align_down(top.saturating_sub(dtb_len), 8);
    let rd_off = align_down(dtb_off.saturating_sub(rd), 4096);
    let needed = kernel_end + rd + dtb_len;
    if dtb_len > 2 << 20 || kernel_end > rd_off || needed > top {
        return Err(DomUError::TooSmall { needed, have: top });
    }
    let ramdisk = spec.ramdisk.map(|(_, len)| (GUEST_RAM0_BASE + rd_off, len));
    let dtb_blob = domu_dt(spec, ramdisk);
    if dtb_blob.len() as u64 != dtb_len {
        return Err(DomUError::TooSmall { needed: dtb_blob.len() as u64, have: dtb_len });
    }
    copy(mem, kpa, pa + kernel_off, klen)?;
    if let Some((rpa, rlen)) = spec.ramdisk {
        copy(mem, rpa, pa + rd_off, rlen)?;
    }
    mem.write(pa + dtb_off, &dtb_blob).map_err(|_| DomUError::Mem)?;
    Ok(DomUBoot {
        entry: GUEST_RAM0_BASE + kernel_off,
        dtb: GUEST_RAM0_BASE + dtb_off,
        ramdisk,
    })
}

fn u32s(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_be_bytes()).collect()
}
fn u64s(v: &[u64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_be_bytes()).collect()
}
fn strs(v: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in v {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }
    out
}

/// The domU's device tree, as Xen writes one for a dom0less guest: memory, chosen (bootargs,
/// and the ramdisk's IPA range `initrd` when it has one), cpus (PSCI), a GICv3 at Xen's guest
/// addresses, the architected timer, /psci and, when `xen,enhanced` asks for it, /hypervisor
/// (grant-table region, event-channel PPI 31).
pub fn domu_dt(spec: &DomUSpec, initrd: Option<(u64, u64)>) -> Vec<u8> {
    let mut t = Tree { nodes: vec![NodeData { name: String::new(), parent: None, children: Vec::new(), props: Vec::new(), deleted: false }], mem_reserve: Vec::new(), boot_cpuid_phys: 0 };
    const GIC_PHANDLE: u32 = 0xfde8;
    let root = t.root();
    t.set_prop(root, "compatible", strs(&["xen,xenvm-4.17", "xen,xenvm"]));
    t.set_prop(root, "#address-cells", u32s(&[2]));
    t.set_prop(root, "#size-cells", u32s(&[2]));
    t.set_prop(root, "interrupt-parent", u32s(&[GIC_PHANDLE]));
    let mem = t.add_node(root, "memory@40000000");
    t.set_prop(mem, "device_type", strs(&["memory"]));
    t.set_prop(mem, "reg", u64s(&[GUEST_RAM0_BASE, spec.memory]));
    let chosen = t.add_node(root, "chosen");
    if let Some(args) = &spec.bootargs {
        t.set_prop(chosen, "bootargs", strs(&[args]));
    }
    if let Some((start, len)) = initrd {
        t.set_prop(chosen, "linux,initrd-start", u64s(&[start]));
        t.set_prop(chosen, "linux,initrd-end", u64s(&[start.saturating_add(len)]));
    }
    let cpus = t.add_node(root, "cpus");
    t.set_prop(cpus, "#address-cells", u32s(&[1]));
    t.set_prop(cpus, "#size-cells", u32s(&[0]));
    for i in 0..spec.vcpus {
        let c = t.add_node(cpus, &alloc::format!("cpu@{i}"));
        t.set_prop(c, "device_type", strs(&["cpu"]));
        t.set_prop(c, "compatible", strs(&["arm,armv8"]));
        t.set_prop(c, "enable-method", strs(&["psci"]));
        t.set_prop(c, "reg", u32s(&[i]));
    }
    let psci = t.add_node(root, "psci");
    t.set_prop(psci, "compatible", strs(&["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]));
    t.set_prop(psci, "method", strs(&["hvc"]));
    let gic = t.add_node(root, &alloc::format!("interrupt-controller@{GUEST_GICV3_GICD_BASE:x}"));
    t.set_prop(gic, "compatible", strs(&["arm,gic-v3"]));
    t.set_prop(gic, "#interrupt-cells", u32s(&[3]));
    t.set_prop(gic, "#address-cells", u32s(&[2]));
    t.set_prop(gic, "#size-cells", u32s(&[2]));
    t.set_prop(gic, "interrupt-controller", Vec::new());
    t.set_prop(gic, "redistributor-stride", u32s(&[GUEST_GICV3_GICR_STRIDE as u32]));
    t.set_prop(gic, "#redistributor-regions", u32s(&[1]));
    t.set_prop(gic, "reg", u64s(&[GUEST_GICV3_GICD_BASE, GUEST_GICV3_GICD_SIZE, GUEST_GICV3_GICR0_BASE, GUEST_GICV3_GICR_STRIDE * u64::from(spec.vcpus)]));
    t.set_prop(gic, "phandle", u32s(&[GIC_PHANDLE]));
    let timer = t.add_node(root, "timer");
    t.set_prop(timer, "compatible", strs(&["arm,armv8-timer"]));
    // Secure, non-secure physical, virtual and hypervisor PPIs (INTIDs 29, 30, 27, 26), level low.
    t.set_prop(timer, "interrupts", u32s(&[1, 13, 0xf08, 1, 14, 0xf08, 1, 11, 0xf08, 1, 10, 0xf08]));
    if spec.vpl011 {
        use super::vuart::{GUEST_PL011_BASE, GUEST_PL011_SIZE, GUEST_VPL011_SPI};
        let uart = t.add_node(root, &alloc::format!("sbsa-uart@{GUEST_PL011_BASE:x}"));
        t.set_prop(uart, "compatible", strs(&["arm,sbsa-uart"]));
        t.set_prop(uart, "reg", u64s(&[GUEST_PL011_BASE, GUEST_PL011_SIZE]));
        // SPI, level high.
        t.set_prop(uart, "interrupts", u32s(&[0, GUEST_VPL011_SPI - 32, 4]));
        t.set_prop(uart, "interrupt-parent", u32s(&[GIC_PHANDLE]));
        t.set_prop(uart, "current-speed", u32s(&[115_200]));
    }
    if spec.enhanced.hypervisor_node() {
        let hyp = t.add_node(root, "hypervisor");
        t.set_prop(hyp, "compatible", strs(&["xen,xen-4.17", "xen,xen"]));
        t.set_prop(hyp, "reg", u64s(&[GUEST_GNTTAB_BASE, GUEST_GNTTAB_SIZE]));
        t.set_prop(hyp, "interrupts", u32s(&[1, GUEST_EVTCHN_PPI - 16, 0xf08]));
    }
    t.to_blob()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypercall::guest_phys::lookup;
    use crate::mm::testmem::TestMem;
    use crate::mm::RegionAllocator;

    const MIB: u64 = 1 << 20;

    /// A host DT with /chosen/domU1 (and a non-domain child) as U-Boot or QEMU would write it.
    fn host_dt(memory_kib: u64, kernel: (u64, u64)) -> HostDt {
        let mut t = Tree { nodes: vec![NodeData { name: String::new(), parent: None, children: Vec::new(), props: Vec::new(), deleted: false }], mem_reserve: Vec::new(), boot_cpuid_phys: 0 };
        let root = t.root();
        t.set_prop(root, "#address-cells", u32s(&[2]));
        t.set_prop(root, "#size-cells", u32s(&[2]));
        let chosen = t.add_node(root, "chosen");
        let other = t.add_node(chosen, "module@49000000");
        t.set_prop(other, "compatible", strs(&["multiboot,kernel", "multiboot,module"]));
        let d = t.add_node(chosen, "domU1");
        t.set_prop(d, "compatible", strs(&["xen,domain"]));
        t.set_prop(d, "#address-cells", u32s(&[1]));
        t.set_prop(d, "#size-cells", u32s(&[1]));
        t.set_prop(d, "memory", u32s(&[(memory_kib >> 32) as u32, memory_kib as u32]));
        t.set_prop(d, "cpus", u32s(&[1]));
        t.set_prop(d, "vpl011", Vec::new());
        let k = t.add_node(d, "module@4a000000");
        t.set_prop(k, "compatible", strs(&["multiboot,kernel", "multiboot,module"]));
        t.set_prop(k, "reg", u32s(&[kernel.0 as u32, kernel.1 as u32]));
        t.set_prop(k, "bootargs", strs(&["console=hvc0 domu"]));
        HostDt::parse(&t.to_blob()).unwrap()
    }

    fn image(len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        b[8..16].copy_from_slice(&0x8_0000u64.to_le_bytes()); // text_offset
        b[16..24].copy_from_slice(&(len as u64).to_le_bytes()); // image_size
        b[24..32].copy_from_slice(&0xau64.to_le_bytes()); // LE, 4K, anywhere
        b[0x38..0x3c].copy_from_slice(&0x644d_5241u32.to_le_bytes());
        b[64..70].copy_from_slice(b"KERNEL");
        b
    }

    #[test]
    fn reads_domu_nodes() {
        let dt = host_dt(4096, (0x4a00_0000, 0x1000));
        let specs = find_domus(&dt).unwrap();
        assert_eq!(specs, vec![DomUSpec { name: "domU1".into(), memory: 4 * MIB, vcpus: 1, kernel: (0x4a00_0000, 0x1000), ramdisk: None, bootargs: Some("console=hvc0 domu".into()), vpl011: true, enhanced: Enhanced::Disabled }]);
        assert!(matches!(find_domus(&host_dt(0, (0, 1))), Err(DomUError::BadMemory { .. })));
        assert!(matches!(find_domus(&host_dt(u64::MAX, (0, 1))), Err(DomUError::BadNode { .. })));
    }

    #[test]
    fn builds_a_domain_xen_style() {
        // Host memory: kernel module at 0x8000_0000, then an 8 MiB pool for RAM and tables.
        let phys = TestMem::new(0x8000_0000, (12 * MIB) as usize);
        let kernel = image(0x2000);
        phys.write(0x8000_0000, &kernel).unwrap();
        let mut frames = RegionAllocator::new();
        let _ = frames.add(0x8040_0000, 11 * MIB);
        let mut tlb = phys.tlb();
        let spec = DomUSpec { name: "domU1".into(), memory: 3 * MIB, vcpus: 1, kernel: (0x8000_0000, 0x2000), ramdisk: None, bootargs: Some("console=hvc0".into()), vpl011: true, enhanced: Enhanced::Enabled };
        let (d, boot) = build_domu(&spec, 1, 2, &mut frames, &phys, &mut tlb).unwrap();
        assert_eq!(boot.entry, GUEST_RAM0_BASE + 0x8_0000);
        assert!(!d.direct_mapped && !d.is_hardware);
        assert_eq!(d.callback_ppi, 31);
        let pa = lookup(&d, boot.entry >> 12, &phys).unwrap();
        let mut b = [0u8; 6];
        phys.read(pa + 64, &mut b).unwrap();
        assert_eq!(&b, b"KERNEL");
        assert!(d.owns_ram(pa, 4096));
        // the DTB is where it says and describes the domain
        let dpa = lookup(&d, boot.dtb >> 12, &phys).unwrap() + (boot.dtb & 0xfff);
        let mut hdr = [0u8; 8];
        phys.read(dpa, &mut hdr).unwrap();
        let len = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as usize;
        let mut blob = vec![0u8; len];
        phys.read(dpa, &mut blob).unwrap();
        let dt = HostDt::parse(&blob).unwrap();
        let hyp = dt.find_path("/hypervisor").unwrap();
        assert!(dt.compatible(hyp).contains(&"xen,xen"));
        assert_eq!(dt.prop(dt.find_path("/memory@40000000").unwrap(), "reg").unwrap(), &u64s(&[GUEST_RAM0_BASE, 3 * MIB])[..]);
        assert_eq!(str_prop(&dt, dt.find_path("/chosen").unwrap(), "bootargs").as_deref(), Some("console=hvc0"));
        assert!(dt.prop(dt.find_path("/chosen").unwrap(), "linux,initrd-start").is_none());
        let uart = dt.find_path("/sbsa-uart@22000000").unwrap();
        assert!(dt.compatible(uart).contains(&"arm,sbsa-uart"));
        // the power-of-two remainder went back: only RAM and a few table frames are gone
        assert!(frames.total_free() >= 11 * MIB - 3 * MIB - 16 * 4096);
    }

    #[test]
    fn xen_enhanced_is_read_as_xen_reads_it() {
        assert_eq!(Enhanced::from_prop(None), Enhanced::Disabled);
        assert_eq!(Enhanced::from_prop(Some(b"")), Enhanced::Enabled);
        assert_eq!(Enhanced::from_prop(Some(b"enabled\0")), Enhanced::Enabled);
        // Not NUL-terminated: Xen's -EILSEQ, taken as enabled.
        assert_eq!(Enhanced::from_prop(Some(b"enab")), Enhanced::Enabled);
        assert_eq!(Enhanced::from_prop(Some(b"no-xenstore\0")), Enhanced::NoXenstore);
        assert_eq!(Enhanced::from_prop(Some(b"disabled\0")), Enhanced::Disabled);
        assert_eq!(Enhanced::from_prop(Some(b"Enabled\0")), Enhanced::Disabled);
        // Only the string up to the first NUL counts.
        assert_eq!(Enhanced::from_prop(Some(b"enabled\0x\0")), Enhanced::Enabled);
    }

    /// 12 MiB of host memory: an arm64 Image at its start (0x8000_0000), then an 11 MiB pool
    /// of frames from 0x8040_0000.
    fn machine() -> (TestMem, RegionAllocator) {
        let phys = TestMem::new(0x8000_0000, (12 * MIB) as usize);
        phys.write(0x8000_0000, &image(0x2000)).unwrap();
        let mut frames = RegionAllocator::new();
        let _ = frames.add(0x8040_0000, 11 * MIB);
        (phys, frames)
    }

    /// The guest's DT as `build_domu` wrote it.
    fn built_dt(d: &Domain, boot: &DomUBoot, phys: &TestMem) -> HostDt {
        let dpa = lookup(d, boot.dtb >> 12, phys).unwrap() + (boot.dtb & 0xfff);
        let mut hdr = [0u8; 8];
        phys.read(dpa, &mut hdr).unwrap();
        let mut blob = vec![0u8; u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as usize];
        phys.read(dpa, &mut blob).unwrap();
        HostDt::parse(&blob).unwrap()
    }

    #[test]
    fn an_enhanced_domain_gets_xenstores_port_and_magic_pages_and_the_others_do_not() {
        use crate::domain::evtchn::PortState;
        use guest_abi::hvm::{HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN};
        for enhanced in [Enhanced::Disabled, Enhanced::NoXenstore, Enhanced::Enabled] {
            let (phys, mut frames) = machine();
            let free = frames.total_free();
            let mut tlb = phys.tlb();
            let spec = DomUSpec { name: "domU1".into(), memory: 2 * MIB, vcpus: 1, kernel: (0x8000_0000, 0x2000), ramdisk: None, bootargs: None, vpl011: false, enhanced };
            let (d, boot) = build_domu(&spec, 1, 2, &mut frames, &phys, &mut tlb).unwrap();
            let dt = built_dt(&d, &boot, &phys);
            assert_eq!(dt.find_path("/hypervisor").is_some(), enhanced != Enhanced::Disabled, "{enhanced:?}");
            // Whatever it has set aside, the domain holds its RAM and may hold no more.
            assert_eq!((d.tot_pages(), d.max_pages()), (512, 512), "{enhanced:?}");
            let (state, store_evtchn, store_pfn) = d.with_evtchn(|ev| (ev.state(1), ev.hvm_params[HVM_PARAM_STORE_EVTCHN as usize], ev.hvm_params[HVM_PARAM_STORE_PFN as usize]));
            let magic_gfn = GUEST_MAGIC_BASE >> 12;
            if enhanced == Enhanced::Enabled {
                assert_eq!((state, store_evtchn, store_pfn), (PortState::Unbound { remote: 0 }, 1, STORE_PFN_LATE_INIT));
                // The magic pages are the domain's, not yet mapped nor counted.
                assert_eq!(d.given_back(), MAGIC_PAGES);
                assert!(d.ram().as_slice().iter().any(|b| b.ipa == GUEST_MAGIC_BASE && b.size == MAGIC_PAGES * 4096));
                assert!(frames.total_free() <= free - 2 * MIB - MAGIC_PAGES * 4096);
            } else {
                assert_eq!((state, store_evtchn, store_pfn), (PortState::Free, 0, 0));
                assert_eq!(d.given_back(), 0);
                assert_eq!(d.ram().as_slice().len(), 1);
            }
            assert_eq!(lookup(&d, magic_gfn + 1, &phys), None);
        }
    }

    #[test]
    fn a_domain_of_several_vcpus_starts_with_vcpu_0_only() {
        let (phys, mut frames) = machine();
        let mut tlb = phys.tlb();
        let spec = DomUSpec { name: "domU1".into(), memory: 2 * MIB, vcpus: 3, kernel: (0x8000_0000, 0x2000), ramdisk: None, bootargs: None, vpl011: false, enhanced: Enhanced::Disabled };
        let (d, boot) = build_domu(&spec, 1, 2, &mut frames, &phys, &mut tlb).unwrap();
        assert_eq!(d.max_vcpus, 3);
        assert!(!d.vcpu_off(0) && d.vcpu_off(1) && d.vcpu_off(2));
        let dt = built_dt(&d, &boot, &phys);
        assert!(dt.find_path("/cpus/cpu@2").is_some() && dt.find_path("/cpus/cpu@3").is_none());
        let gic = dt.find_path("/interrupt-controller@3001000").unwrap();
        assert_eq!(dt.prop(gic, "reg").unwrap(), &u64s(&[GUEST_GICV3_GICD_BASE, GUEST_GICV3_GICD_SIZE, GUEST_GICV3_GICR0_BASE, 3 * GUEST_GICV3_GICR_STRIDE])[..]);
    }

    #[test]
    fn the_ramdisk_is_loaded_where_the_dtb_says() {
        let phys = TestMem::new(0x8000_0000, (12 * MIB) as usize);
        phys.write(0x8000_0000, &image(0x2000)).unwrap();
        phys.write(0x8001_0000, b"RAMDISK!").unwrap();
        let mut frames = RegionAllocator::new();
        let _ = frames.add(0x8040_0000, 11 * MIB);
        let mut tlb = phys.tlb();
        let spec = DomUSpec { name: "domU1".into(), memory: 4 * MIB, vcpus: 1, kernel: (0x8000_0000, 0x2000), ramdisk: Some((0x8001_0000, 0x1234)), bootargs: None, vpl011: false, enhanced: Enhanced::Disabled };
        let (d, boot) = build_domu(&spec, 1, 2, &mut frames, &phys, &mut tlb).unwrap();
        let (rd, len) = boot.ramdisk.unwrap();
        assert_eq!(len, 0x1234);
        let dpa = lookup(&d, boot.dtb >> 12, &phys).unwrap() + (boot.dtb & 0xfff);
        let mut blob = vec![0u8; 4096];
        phys.read(dpa, &mut blob[..(4 * MIB - (boot.dtb - GUEST_RAM0_BASE)).min(4096) as usize]).unwrap();
        let dt = HostDt::parse(&blob).unwrap();
        let chosen = dt.find_path("/chosen").unwrap();
        assert_eq!(dt.prop(chosen, "linux,initrd-start").unwrap(), &u64s(&[rd])[..]);
        assert_eq!(dt.prop(chosen, "linux,initrd-end").unwrap(), &u64s(&[rd + len])[..]);
        let rpa = lookup(&d, rd >> 12, &phys).unwrap() + (rd & 0xfff);
        let mut b = [0u8; 8];
        phys.read(rpa, &mut b).unwrap();
        assert_eq!(&b, b"RAMDISK!");
        // Below the DTB, above the kernel.
        assert!(rd + len <= boot.dtb && rd >= boot.entry + 0x2000);
    }

    #[test]
    fn refuses_what_does_not_fit_and_gives_memory_back() {
        let phys = TestMem::new(0x8000_0000, (4 * MIB) as usize);
        phys.write(0x8000_0000, &image(0x2000)).unwrap();
        let mut frames = RegionAllocator::new();
        let _ = frames.add(0x8020_0000, 2 * MIB);
        let mut tlb = phys.tlb();
        let free = frames.total_free();
        let tiny = DomUSpec { name: "d".into(), memory: 0x8_0000, vcpus: 1, kernel: (0x8000_0000, 0x2000), ramdisk: None, bootargs: None, vpl011: false, enhanced: Enhanced::Enabled };
        assert!(matches!(build_domu(&tiny, 1, 2, &mut frames, &phys, &mut tlb), Err(DomUError::TooSmall { .. })));
        assert_eq!(frames.total_free(), free);
        let huge = DomUSpec { memory: 64 * MIB, ..tiny.clone() };
        assert_eq!(build_domu(&huge, 1, 2, &mut frames, &phys, &mut tlb).err(), Some(DomUError::OutOfMemory));
        let not_image = DomUSpec { kernel: (0x8000_1000, 0x100), memory: MIB, ..tiny };
        assert_eq!(build_domu(&not_image, 1, 2, &mut frames, &phys, &mut tlb).err(), Some(DomUError::BadKernel));
        assert_eq!(frames.total_free(), free);
    }
}
