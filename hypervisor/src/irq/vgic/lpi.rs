//! LPIs in the virtual GICv3: the redistributor's LPI registers (GICR_CTLR.EnableLPIs,
//! GICR_PROPBASER, GICR_PENDBASER) and the state of each virtual LPI an emulated ITS mapped
//! (its vCPU, enable and priority from the guest's configuration table, pending). LPIs are
//! message-signalled: edge-like, group 1, never linked to a physical interrupt in a list
//! register (the physical LPI is the hypervisor's and was already dropped).
//!
//! The guest's configuration and pending tables are guest memory and stay so: the emulated
//! ITS reads a configuration byte when it maps an LPI and on INV/INVALL (as the architecture
//! lets a redistributor cache them) and hands it here; the pending table is not used.

use super::regs::{read64, word_or_dword, write64};
use super::{IrqState, Vgic, VgicError};
use crate::domain::mmio::{MmioAccess, MmioResult};
use crate::irq::its::lpi::{PROP_ENABLE, PROP_PRIORITY_MASK};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

pub use crate::irq::its::lpi::LPI_BASE;

/// GICR_CTLR.EnableLPIs.
pub const GICR_CTLR_ENABLE_LPIS: u32 = 1 << 0;
/// Virtual LPIs mapped at once, at most (each costs a host LPI as well).
pub const MAX_MAPPED: usize = 1 << 16;

const GICR_PROPBASER: u64 = 0x0070;
const GICR_PENDBASER: u64 = 0x0078;
/// GICR_PROPBASER fields kept: IDbits 4:0, InnerCache 9:7, Shareability 11:10, PA 51:12,
/// OuterCache 58:56.
const PROPBASER_MASK: u64 = 0x1f | (0x7 << 7) | (0x3 << 10) | (((1 << 52) - 1) & !0xfff) | (0x7 << 56);
/// GICR_PENDBASER fields kept: InnerCache, Shareability, PA 51:16, OuterCache (PTZ reads 0).
const PENDBASER_MASK: u64 = (0x7 << 7) | (0x3 << 10) | (((1 << 52) - 1) & !0xffff) | (0x7 << 56);

/// One redistributor's LPI registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RdLpi {
    pub enabled: bool,
    pub propbaser: u64,
    pub pendbaser: u64,
}

/// A mapped virtual LPI.
#[derive(Clone, Copy, Debug)]
pub struct Lpi {
    pub irq: IrqState,
    pub vcpu: usize,
}

/// The LPI side of a vGIC.
#[derive(Clone, Debug, Default)]
pub struct Lpis {
    /// INTID width the guest is told (GICD_TYPER.IDbits + 1); 0 when the vGIC has no LPIs.
    pub id_bits: u8,
    pub map: BTreeMap<u32, Lpi>,
    pub rd: Vec<RdLpi>,
}

impl Lpis {
    pub fn new(vcpus: usize) -> Self {
        Self { id_bits: 0, map: BTreeMap::new(), rd: alloc::vec![RdLpi::default(); vcpus] }
    }
}

impl Vgic {
    /// Offer LPIs with INTIDs of `id_bits` bits (14..=16): GICD_TYPER.LPIS, GICR_TYPER.PLPIS
    /// and the redistributors' LPI registers appear.
    pub fn enable_lpis(&mut self, id_bits: u8) {
        self.lpis.id_bits = id_bits.clamp(14, 16);
    }

    pub fn lpi_id_bits(&self) -> u8 {
        self.lpis.id_bits
    }

    /// Whether `vlpi` is an LPI INTID this vGIC offers.
    pub fn lpi_in_range(&self, vlpi: u32) -> bool {
        self.lpis.id_bits != 0 && vlpi >= LPI_BASE && u64::from(vlpi) < (1u64 << self.lpis.id_bits)
    }

    /// The guest-physical address of the configuration byte of `vlpi` in the table `vcpu`'s
    /// redistributor was given (GICR_PROPBASER), if the table covers it.
    pub fn lpi_prop_addr(&self, vcpu: usize, vlpi: u32) -> Option<u64> {
        let rd = self.lpis.rd.get(vcpu)?;
        let bits = ((rd.propbaser & 0x1f) as u8 + 1).min(self.lpis.id_bits);
        if !self.lpi_in_range(vlpi) || u64::from(vlpi) >= (1u64 << bits) || rd.propbaser & PROPBASER_MASK == 0 {
            return None;
        }
        Some((rd.propbaser & (((1 << 52) - 1) & !0xfff)) + u64::from(vlpi - LPI_BASE))
    }

    /// Map `vlpi` to `vcpu` with configuration byte `prop` (not pending); a mapping it had is
    /// replaced.
    pub fn lpi_map(&mut self, vlpi: u32, vcpu: usize, prop: u8) -> Result<(), VgicError> {
        if vcpu >= self.vcpus.len() {
            return Err(VgicError::BadVcpu(vcpu));
        }
        if !self.lpi_in_range(vlpi) || (self.lpis.map.len() >= MAX_MAPPED && !self.lpis.map.contains_key(&vlpi)) {
            return Err(VgicError::BadIntid(vlpi));
        }
        let mut irq = IrqState::RESET;
        irq.edge = true;
        irq.group1 = true;
        if let Some(old) = self.lpis.map.get(&vlpi) {
            // Still in a list register: keep the link so `sync` finds it.
            irq.lr = old.irq.lr;
        }
        self.lpis.map.insert(vlpi, Lpi { irq, vcpu });
        self.lpi_configure(vlpi, prop);
        Ok(())
    }

    /// Forget `vlpi` (its pending state goes with it).
    pub fn lpi_unmap(&mut self, vlpi: u32) {
        if let Some(l) = self.lpis.map.remove(&vlpi) {
            if let Some(v) = self.vcpus.get_mut(l.vcpu) {
                v.dirty = true;
            }
        }
    }

    /// The vCPU `vlpi` is delivered to, if mapped.
    pub fn lpi_target(&self, vlpi: u32) -> Option<usize> {
        self.lpis.map.get(&vlpi).map(|l| l.vcpu)
    }

    /// Deliver `vlpi` to `vcpu` from now on (a pending state moves with it).
    pub fn lpi_move(&mut self, vlpi: u32, vcpu: usize) -> Result<(), VgicError> {
        if vcpu >= self.vcpus.len() {
            return Err(VgicError::BadVcpu(vcpu));
        }
        let l = self.lpis.map.get_mut(&vlpi).ok_or(VgicError::BadIntid(vlpi))?;
        if l.irq.lr.is_some() {
            // In a list register of the old vCPU: that copy finishes there; a new one goes
            // to the new vCPU.
            let pending = l.irq.pending;
            let mut irq = IrqState::RESET;
            irq.edge = true;
            irq.group1 = true;
            irq.enabled = l.irq.enabled;
            irq.priority = l.irq.priority;
            irq.pending = pending;
            *l = Lpi { irq, vcpu };
        } else {
            l.vcpu = vcpu;
        }
        self.vcpus[vcpu].dirty = true;
        Ok(())
    }

    /// Apply a configuration byte (enable bit, priority) to `vlpi`.
    pub fn lpi_configure(&mut self, vlpi: u32, prop: u8) {
        if let Some(l) = self.lpis.map.get_mut(&vlpi) {
            l.irq.enabled = prop & PROP_ENABLE != 0;
            l.irq.priority = prop & PROP_PRIORITY_MASK & super::PRIORITY_MASK;
            let vcpu = l.vcpu;
            if let Some(v) = self.vcpus.get_mut(vcpu) {
                v.dirty = true;
            }
        }
    }

    /// Set or clear the pending state of a mapped `vlpi`; returns the vCPU it targets (to be
    /// kicked), `None` if it is not mapped.
    pub fn lpi_set_pending(&mut self, vlpi: u32, pending: bool) -> Option<usize> {
        let l = self.lpis.map.get_mut(&vlpi)?;
        l.irq.pending = pending;
        let vcpu = l.vcpu;
        if let Some(v) = self.vcpus.get_mut(vcpu) {
            v.dirty = true;
        }
        Some(vcpu)
    }

    /// The mapped LPIs that target `vcpu`.
    pub fn lpis_of(&self, vcpu: usize) -> Vec<u32> {
        self.lpis.map.iter().filter(|(_, l)| l.vcpu == vcpu).map(|(&i, _)| i).collect()
    }

    /// Visit the LPIs `vcpu` could take now: `(priority, intid)`.
    pub(super) fn for_each_lpi_candidate(&self, vcpu: usize, f: &mut dyn FnMut(u8, u32)) {
        if !self.lpis.rd.get(vcpu).is_some_and(|r| r.enabled) {
            return;
        }
        for (&intid, l) in &self.lpis.map {
            if l.vcpu == vcpu && self.deliverable(&l.irq) {
                f(l.irq.priority, intid);
            }
        }
    }

    /// GICR_CTLR of `vcpu`: EnableLPIs (when LPIs are offered); RWP and the rest read 0.
    pub(super) fn gicr_ctlr_access(&mut self, vcpu: usize, a: &MmioAccess) -> MmioResult {
        if !(a.size == 4 && a.offset % 4 == 0) {
            return MmioResult::Abort;
        }
        let offered = self.lpis.id_bits != 0;
        let Some(rd) = self.lpis.rd.get_mut(vcpu) else { return MmioResult::Done(0) };
        if a.write && offered {
            rd.enabled = a.value as u32 & GICR_CTLR_ENABLE_LPIS != 0;
            if let Some(v) = self.vcpus.get_mut(vcpu) {
                v.dirty = true;
            }
        }
        MmioResult::Done(if rd.enabled { u64::from(GICR_CTLR_ENABLE_LPIS) } else { 0 })
    }

    /// GICR_PROPBASER / GICR_PENDBASER of `vcpu` (64-bit or 32-bit halves); `None` for other
    /// offsets or when LPIs are not offered. Writes while EnableLPIs is set are ignored, as
    /// the architecture allows.
    pub(super) fn gicr_lpi_access(&mut self, vcpu: usize, a: &MmioAccess) -> Option<MmioResult> {
        let reg = a.offset & !7;
        if self.lpis.id_bits == 0 || (reg != GICR_PROPBASER && reg != GICR_PENDBASER) {
            return None;
        }
        if !word_or_dword(a) {
            return Some(MmioResult::Abort);
        }
        let rd = self.lpis.rd.get_mut(vcpu)?;
        let (val, mask) = if reg == GICR_PROPBASER { (&mut rd.propbaser, PROPBASER_MASK) } else { (&mut rd.pendbaser, PENDBASER_MASK) };
        if a.write && !rd.enabled {
            *val = write64(a, reg, *val) & mask;
        }
        let now = if reg == GICR_PROPBASER { rd.propbaser } else { rd.pendbaser };
        Some(MmioResult::Done(read64(a, reg, now)))
    }
}
