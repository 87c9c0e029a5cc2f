//! The physical ITS as the emulated ITS uses it: every event mapping a guest asks for becomes
//! a physical mapping of the same DeviceID and EventID to a host LPI, in an ITT the hypervisor
//! allocates, delivered to the collection of the CPU that runs the target vCPU. Host LPIs are
//! enabled in the hypervisor's configuration table while mapped; whether the guest's LPI is
//! enabled is the vGIC's business.

use super::cmd::Command;
use super::lpi::{prop_byte, HostLpis, LpiTarget, LPI_BASE};
use super::phys::PhysIts;
use crate::sync::SpinMutex;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use platform::{Mmio, PhysMem};

/// Priority of host LPIs at the physical GIC (below the hypervisor's own PPIs).
pub const HOST_LPI_PRIORITY: u8 = 0xa0;

/// Memory for ITTs (hypervisor memory, given back when a device is unmapped).
pub trait TableAlloc: Send {
    fn alloc(&mut self, size: u64, align: u64) -> Option<u64>;
    fn free(&mut self, pa: u64, size: u64);
}

/// What the emulated ITS asks of the host side. Each call either completes at the physical
/// ITS or leaves nothing behind.
pub trait HostItsOps {
    /// EventID width the physical ITS takes.
    fn event_bits(&self) -> u8;
    /// Give `device` an ITT for `bits`-bit EventIDs at the physical ITS (replacing any it had).
    fn map_device(&mut self, device: u32, bits: u8) -> bool;
    /// Unmap `device` at the physical ITS and free its ITT.
    fn unmap_device(&mut self, device: u32);
    /// A host LPI for `target`, and (`device`, `event`) mapped to it at the physical ITS.
    fn map_event(&mut self, device: u32, event: u32, target: LpiTarget) -> Option<u32>;
    /// Undo [`map_event`](Self::map_event).
    fn unmap_event(&mut self, device: u32, event: u32, host_lpi: u32);
    /// Deliver the event's host LPI to the CPU of `vcpu` from now on.
    fn move_event(&mut self, device: u32, event: u32, host_lpi: u32, vcpu: u16) -> bool;
}

/// [`HostItsOps`] over a [`PhysIts`].
pub struct HostIts<R: Mmio, M: PhysMem, A: TableAlloc> {
    pub its: PhysIts<R>,
    mem: M,
    alloc: A,
    lpis: Arc<SpinMutex<HostLpis>>,
    /// The hypervisor's LPI configuration table (one byte per host LPI).
    prop_table: u64,
    /// DeviceID -> (ITT address, size).
    itts: BTreeMap<u32, (u64, u64)>,
    /// Physical ITS errors seen (commands failed or timed out).
    pub errors: u64,
}

impl<R: Mmio, M: PhysMem, A: TableAlloc> HostIts<R, M, A> {
    pub fn new(its: PhysIts<R>, mem: M, alloc: A, lpis: Arc<SpinMutex<HostLpis>>, prop_table: u64) -> Self {
        Self { its, mem, alloc, lpis, prop_table, itts: BTreeMap::new(), errors: 0 }
    }

    /// The physical collection of the CPU running `vcpu`: the domain with the vITS (dom0)
    /// runs vCPU n on CPU n, and collection n is CPU n.
    fn icid(vcpu: u16) -> u16 {
        vcpu
    }

    fn send(&mut self, cmds: &[Command]) -> bool {
        match self.its.send(cmds, &self.mem) {
            Ok(()) => true,
            Err(e) => {
                self.errors += 1;
                if self.errors <= 8 {
                    crate::log!("ITS: {e} (commands {cmds:?})");
                }
                false
            }
        }
    }

    fn set_prop(&self, lpi: u32, byte: u8) {
        let pa = self.prop_table + u64::from(lpi - LPI_BASE);
        let _ = self.mem.write(pa, &[byte]);
        self.mem.clean_dcache(pa, 1);
    }

    /// Map physical collection n to the redistributor of CPU n (`rdbases[n]`: its processor
    /// number, or its address >> 16 when GITS_TYPER.PTA is set).
    pub fn map_collections(&mut self, rdbases: &[u64]) -> Result<(), super::phys::ItsError> {
        let mut cmds = alloc::vec::Vec::new();
        for (n, &rdbase) in rdbases.iter().enumerate() {
            cmds.push(Command::Mapc { icid: n as u16, rdbase, valid: true });
            cmds.push(Command::Sync { rdbase });
        }
        self.its.send(&cmds, &self.mem)
    }

    pub fn mapped_devices(&self) -> usize {
        self.itts.len()
    }
}

impl<R: Mmio, M: PhysMem, A: TableAlloc> HostItsOps for HostIts<R, M, A> {
    fn event_bits(&self) -> u8 {
        self.its.typer().event_bits()
    }

    fn map_device(&mut self, device: u32, bits: u8) -> bool {
        if bits == 0 || bits > self.event_bits() {
            return false;
        }
        self.unmap_device(device);
        let size = self.its.itt_size(bits);
        let Some(itt) = self.alloc.alloc(size, 256) else { return false };
        let zeros = [0u8; 256];
        for off in (0..size).step_by(256) {
            let _ = self.mem.write(itt + off, &zeros[..(size - off).min(256) as usize]);
        }
        self.mem.clean_dcache(itt, size as usize);
        if !self.send(&[Command::Mapd { device, bits, itt, valid: true }]) {
            self.alloc.free(itt, size);
            return false;
        }
        self.itts.insert(device, (itt, size));
        true
    }

    fn unmap_device(&mut self, device: u32) {
        if let Some((itt, size)) = self.itts.remove(&device) {
            // The ITT is only given back once the ITS no longer uses it.
            if self.send(&[Command::Mapd { device, bits: 1, itt: 0, valid: false }]) {
                self.alloc.free(itt, size);
            }
        }
    }

    fn map_event(&mut self, device: u32, event: u32, target: LpiTarget) -> Option<u32> {
        if !self.itts.contains_key(&device) {
            return None;
        }
        let lpi = self.lpis.lock().alloc(target)?;
        self.set_prop(lpi, prop_byte(HOST_LPI_PRIORITY, true));
        let icid = Self::icid(target.vcpu);
        if self.send(&[Command::Mapti { device, event, intid: lpi, icid }, Command::Inv { device, event }]) {
            Some(lpi)
        } else {
            self.set_prop(lpi, prop_byte(HOST_LPI_PRIORITY, false));
            self.lpis.lock().free(lpi);
            None
        }
    }

    fn unmap_event(&mut self, device: u32, event: u32, host_lpi: u32) {
        let ok = self.send(&[Command::Discard { device, event }]);
        self.set_prop(host_lpi, prop_byte(HOST_LPI_PRIORITY, false));
        if ok {
            self.lpis.lock().free(host_lpi);
        }
    }

    fn move_event(&mut self, device: u32, event: u32, host_lpi: u32, vcpu: u16) -> bool {
        if !self.lpis.lock().retarget(host_lpi, vcpu) {
            return false;
        }
        self.send(&[Command::Movi { device, event, icid: Self::icid(vcpu) }])
    }
}
