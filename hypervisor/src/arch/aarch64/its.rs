//! The physical GICv3 ITS on AArch64: found in the host DT, probed and given its tables from
//! the frame pool at boot, the LPI configuration and pending tables handed to the
//! redistributors (`gic`), and dom0's emulated ITS (`irq::its::virt`) registered on
//! its control frame. Decisions live in `irq::its`; this file finds things and wires them.

use crate::domain::registry::FRAMES;
use super::mem::DirectMem;
use crate::domain::mmio::{MmioAccess, MmioDevice, MmioResult};
use crate::domain::Domain;
use crate::dt::boot_info::BootInfo;
use crate::dt::HostDt;
use crate::irq::its::host::{HostIts, TableAlloc};
use crate::irq::its::lpi::{pend_table_size, prop_table_size, HostLpis, LpiTarget};
use super::gic::LpiTables;
use crate::irq::its::phys::PhysIts;
use crate::irq::its::virt::{GuestMem, Vits, VitsConfig, CONTROL_FRAME};
use crate::irq::vgic::regs::{SharedVgic, REGISTER_WRITES};
use crate::log;
use crate::sync::{Once, SpinMutex};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use platform::RawMmio;

/// Host LPI INTID width: 8192 host LPIs (INTIDs 8192..16383).
const HOST_ID_BITS: u8 = 14;
/// LPI INTID width dom0's vGIC offers (Linux sizes its tables from it).
const GUEST_ID_BITS: u8 = 16;
/// EventIDs all of dom0's devices' ITTs may hold together: 1024 devices with small ITTs (a
/// page each), or fewer with larger ones; a few MiB of hypervisor memory at most.
const EVENT_BUDGET: u64 = 1 << 18;

/// ITT memory from the frame pool.
pub struct FrameTables;

impl TableAlloc for FrameTables {
    fn alloc(&mut self, size: u64, align: u64) -> Option<u64> {
        FRAMES.lock().alloc(size.div_ceil(4096) * 4096, align.max(4096))
    }
    fn free(&mut self, pa: u64, size: u64) {
        let _ = FRAMES.lock().free(pa, size.div_ceil(4096) * 4096);
    }
}

type Host = HostIts<RawMmio, DirectMem, FrameTables>;

/// The physical ITS with its host LPIs (the lock serialises its command queue).
static HOST: Once<SpinMutex<Host>> = Once::new();
/// What each host LPI stands for (read by the IRQ path without the ITS lock).
static HOST_LPIS: Once<Arc<SpinMutex<HostLpis>>> = Once::new();
/// The ITS taken, once `init` took it.
static NODE: Once<ItsNode> = Once::new();
/// The ITS the hypervisor took, for dom0's DT and stage 2.
#[derive(Clone, Debug)]
pub struct ItsNode {
    pub path: String,
    pub base: u64,
    /// DeviceIDs of dom0's devices: (first, count).
    pub devices: Vec<(u32, u32)>,
}

fn zeroed(size: u64, align: u64) -> Option<u64> {
    let size = size.div_ceil(4096) * 4096;
    let pa = FRAMES.lock().alloc(size, align.max(4096))?;
    // SAFETY: fresh frames from the pool, identity-mapped as Normal memory at EL2.
    unsafe { core::ptr::write_bytes(pa as *mut u8, 0, size as usize) };
    Some(pa)
}

/// Take the host's ITS (exactly one `arm,gic-v3-its` node, and a GICv3 distributor that has
/// LPIs): probe it, map collection n to the CPU of dom0's vCPU n (`vcpus` of them), prepare
/// the LPI tables. `Err` says why dom0 gets no ITS (it then keeps the INTx fallback).
pub fn init(dt: &HostDt, info: &BootInfo, vcpus: usize) -> Result<ItsNode, String> {
    let nodes: Vec<_> = dt.find_compatible("arm,gic-v3-its").into_iter().filter(|&n| dt.is_enabled(n)).collect();
    let node = match nodes.as_slice() {
        [] => return Err("no ITS in the device tree".into()),
        [one] => *one,
        _ => return Err(alloc::format!("{} ITS nodes (one is supported)", nodes.len())),
    };
    let path = dt.path(node);
    let reg = dt.reg(node).map_err(|e| alloc::format!("{path}: {e}"))?;
    let base = reg.first().ok_or_else(|| alloc::format!("{path}: no reg"))?.base;
    let phandle = dt.phandle(node).ok_or_else(|| alloc::format!("{path}: no phandle"))?;
    let devices = crate::dt::dom0::msi_device_ids(dt, phandle);
    if info.gic.version != 3 {
        return Err("not a GICv3".into());
    }
    let gicd = info.gic.distributor.base;
    // SAFETY: GICD_TYPER of the distributor the DT names, in the EL2 Device map.
    let gicd_typer = unsafe { core::ptr::read_volatile((gicd + 4) as *const u32) };
    if gicd_typer & (1 << 17) == 0 {
        return Err("the distributor has no LPIs (GICD_TYPER.LPIS 0)".into());
    }
    let id_bits = (((gicd_typer >> 19) & 0x1f) as u8 + 1).min(HOST_ID_BITS);
    if prop_table_size(id_bits) == 0 {
        return Err(alloc::format!("{id_bits} INTID bits leave no LPIs"));
    }
    let prop = zeroed(prop_table_size(id_bits), 4096).ok_or("no memory for the LPI configuration table")?;
    let mut pend = Vec::new();
    for _ in 0..vcpus {
        pend.push(zeroed(pend_table_size(id_bits), 0x1_0000).ok_or("no memory for an LPI pending table")?);
    }
    // SAFETY: the ITS control frame the DT names, in the EL2 Device map; from here on only
    // this driver (under HOST's lock) drives it, and dom0's stage 2 leaves it out.
    let regs = unsafe { RawMmio::new(base as usize) };
    let its = PhysIts::probe(regs, base, &DirectMem, &mut |size, align| zeroed(size, align)).map_err(|e| alloc::format!("{path}: {e}"))?;
    let typer = its.typer();
    let tables = its.tables().len();
    let lpis = Arc::new(SpinMutex::new(HostLpis::new(id_bits)));
    let mut host = HostIts::new(its, DirectMem, FrameTables, lpis.clone(), prop);
    // Collection n: the redistributor of the CPU running vCPU n.
    let mut rdbases = Vec::new();
    for v in 0..vcpus {
        let mpidr = super::percpu::host_mpidr(v);
        let rd = super::gic::redistributor_in(&info.gic.redistributors, mpidr).ok_or_else(|| alloc::format!("no redistributor for MPIDR {mpidr:#x}"))?;
        // SAFETY: GICR_TYPER of a redistributor frame found in the DT's regions.
        let gicr_typer = unsafe { core::ptr::read_volatile((rd + 8) as *const u64) };
        rdbases.push(if typer.pta() { rd >> 16 } else { (gicr_typer >> 8) & 0xffff });
    }
    host.map_collections(&rdbases).map_err(|e| alloc::format!("{path}: MAPC: {e}"))?;
    super::gic::set_lpi_tables(LpiTables { prop, pend, id_bits: HOST_ID_BITS });
    HOST_LPIS.call_once(|| lpis);
    HOST.call_once(|| SpinMutex::new(host));
    log!(
        "{path}: GICv3 ITS at {base:#x} is the hypervisor's ({tables} tables, {}-bit DeviceIDs, {}-bit EventIDs, {} host LPIs); dom0 gets an emulated ITS for DeviceIDs {:#x?}",
        typer.device_bits(),
        typer.event_bits(),
        prop_table_size(id_bits),
        devices
    );
    Ok(NODE.call_once(|| ItsNode { path, base, devices }).clone())
}

/// The ITS `init` took, if it did.
pub fn node() -> Option<&'static ItsNode> {
    NODE.get()
}

/// What host LPI `intid` delivers, if it is mapped.
pub fn lpi_target(intid: u32) -> Option<LpiTarget> {
    HOST_LPIS.get()?.lock().target(intid)
}

/// dom0's own RAM by IPA (its stage 2, RAM it owns only: never a granted or foreign page).
struct Dom0Ram;

impl GuestMem for Dom0Ram {
    fn read(&self, ipa: u64, buf: &mut [u8]) -> bool {
        let Some(dom) = crate::domain::registry::DOMAINS.get(0) else { return false };
        let mut done = 0usize;
        while done < buf.len() {
            let at = ipa.wrapping_add(done as u64);
            let in_page = (4096 - (at & 0xfff)) as usize;
            let n = in_page.min(buf.len() - done);
            let Some(pa) = crate::hypercall::guest_phys::own_ram(dom, at >> 12, &DirectMem) else { return false };
            // SAFETY: a page of dom0's own RAM, identity-mapped as Normal memory at EL2.
            unsafe { core::ptr::copy_nonoverlapping((pa + (at & 0xfff)) as *const u8, buf[done..].as_mut_ptr(), n) };
            done += n;
        }
        true
    }
}

/// dom0's emulated ITS on the control frame.
struct VitsDevice {
    vits: Vits,
    vgic: SharedVgic,
}

impl MmioDevice for VitsDevice {
    fn name(&self) -> &str {
        "vITS"
    }
    fn access(&mut self, _vcpu: usize, a: MmioAccess) -> MmioResult {
        let (r, go) = self.vits.access(&a);
        if go {
            let Some(host) = HOST.get() else { return r };
            let mut host = host.lock();
            let kick = {
                let mut g = self.vgic.lock();
                self.vits.process(&mut g, &Dom0Ram, &mut *host)
            };
            drop(host);
            REGISTER_WRITES.fetch_add(1, Ordering::Release);
            super::vgic_glue::notify_mask(0, kick);
        }
        r
    }
}

/// Give `dom` (dom0) its emulated ITS at the physical ITS's address and LPIs in its vGIC.
/// The physical doorbell page is mapped into its stage 2 by the caller (devices behind the
/// SMMU write their MSIs there through dom0's stage 2, as on Xen).
pub fn attach(dom: &mut Domain, node: &ItsNode, vgic: &SharedVgic, vcpus: usize) -> Result<(), String> {
    let host = HOST.get().ok_or("no physical ITS")?;
    let (event_bits, device_bits) = {
        let h = host.lock();
        (h.its.typer().event_bits().min(16), h.its.typer().device_bits().min(16))
    };
    vgic.lock().enable_lpis(GUEST_ID_BITS);
    let cfg = VitsConfig { devices: node.devices.clone(), event_bits, device_bits, vcpus, event_budget: EVENT_BUDGET };
    let dev = VitsDevice { vits: Vits::new(cfg), vgic: vgic.clone() };
    if !dom.mmio.add(node.base, CONTROL_FRAME, alloc::boxed::Box::new(dev)) {
        return Err("vITS: its range overlaps another emulated device".into());
    }
    Ok(())
}

/// Physical address of the doorbell page (GITS_TRANSLATER's 4 KiB page).
pub fn doorbell_page(node: &ItsNode) -> u64 {
    (node.base + crate::irq::its::phys::gits::TRANSLATER) & !0xfff
}
