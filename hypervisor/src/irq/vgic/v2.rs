//! The GICv2 front end of the vGIC: the distributor (GICD) a guest with a GICv2 sees. The
//! interrupt state, injection and list-register logic are the shared core's (`Vgic`); this
//! file maps GICv2's register file onto it:
//!
//! - SGIs and PPIs (INTIDs 0-31) are banked: the accessing vCPU's copy is read and written.
//! - SPIs are routed by GICD_ITARGETSR (a CPU-interface bit mask per SPI). A vCPU's interface
//!   bit is `1 << vcpu`. An SPI is delivered to the lowest-numbered vCPU its mask names (as
//!   Xen does); the mask itself is kept for reads in the core's route word, above the affinity
//!   bits the core compares.
//! - GICD_SGIR sends SGIs (target list, all but self, or self); the caller is told which vCPUs
//!   to make look at their interrupts. The core keeps one pending bit per SGI and vCPU, so an
//!   SGI sent by two vCPUs at once is taken once, and GICV_IAR reports source CPU 0.
//! - Every interrupt is Group 0 (IGROUPR reads as zero, writes are ignored) and GICD_CTLR has
//!   only its Enable bit, as for a guest of a GIC without security extensions.
//!
//! The CPU interface is not emulated: the hypervisor maps the GIC's virtual CPU interface
//! (GICV) where the guest expects its GICC, and the core's list-register values are carried to
//! the GICH list registers in the GICv2 format (`irq::gicv2::lr_from_v3`).

use super::regs::{raz_wi, word_only, BitReg, ID_CIDR, ID_PIDR2, IIDR, REGISTER_WRITES};
use super::{Vgic, PRIVATE_IRQS};
use crate::domain::mmio::{MmioAccess, MmioDevice, MmioResult};
use super::regs::SharedVgic;
use core::sync::atomic::Ordering;

/// Most vCPUs a GICv2 can name (8 CPU interfaces).
pub const MAX_VCPUS: usize = 8;
/// The distributor's size (a 4 KiB register file).
pub const GICD_V2_SIZE: u64 = 0x1000;
/// PIDR2: ArchRev 2 (GICv2) in bits 7:4.
pub const PIDR2_V2: u32 = 0x2b;

mod gicd {
    pub const CTLR: u64 = 0x000;
    pub const TYPER: u64 = 0x004;
    pub const IIDR: u64 = 0x008;
    pub const IGROUPR: u64 = 0x080;
    pub const IPRIORITYR: u64 = 0x400;
    pub const ITARGETSR: u64 = 0x800;
    pub const ICFGR: u64 = 0xc00;
    pub const SGIR: u64 = 0xf00;
}

/// The core's route word for an ITARGETSR mask: the mask in bits 55:48 (the core's affinity
/// compare ignores them) and, as the affinity, the lowest vCPU named. No vCPU has affinity
/// 0xff_ffff, so an empty mask routes nowhere.
pub fn route_for_targets(mask: u8) -> u64 {
    let first = if mask == 0 { 0xff_ffff } else { u64::from(mask.trailing_zeros()) };
    (u64::from(mask) << 48) | first
}

/// The ITARGETSR mask a route word holds.
pub fn targets_of_route(route: u64) -> u8 {
    (route >> 48) as u8
}

/// A decoded GICD_SGIR write: which vCPUs get SGI `intid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgirRequest {
    pub intid: u32,
    /// vCPU bit mask.
    pub targets: u8,
}

impl SgirRequest {
    /// The SGIR value `value` written by `sender` in a domain of `vcpus` vCPUs (filter 3 is
    /// reserved: no target).
    pub fn decode(value: u32, sender: usize, vcpus: usize) -> Self {
        let present = if vcpus >= MAX_VCPUS { 0xff } else { ((1u16 << vcpus) - 1) as u8 };
        let me = if sender < MAX_VCPUS { 1u8 << sender } else { 0 };
        let list = (value >> 16) as u8;
        let targets = match (value >> 24) & 3 {
            0 => list,
            1 => !me,
            2 => me,
            _ => 0,
        };
        Self { intid: value & 0xf, targets: targets & present }
    }
}

impl Vgic {
    /// A vGIC with the GICv2 front end for `vcpus` vCPUs (at most 8) and the host's
    /// ITLinesNumber (`it_lines`): every SPI targets vCPU 0 until the guest says otherwise.
    pub fn new_v2(it_lines: u32, vcpus: usize) -> Self {
        let ids: alloc::vec::Vec<u64> = (0..vcpus.min(MAX_VCPUS) as u64).collect();
        let mut g = Vgic::new(it_lines, &ids);
        for v in &mut g.vcpus {
            // No redistributor to wake: private interrupts are live from the start.
            v.asleep = false;
        }
        for irq in &mut g.spis {
            irq.route = route_for_targets(1);
        }
        g
    }

    /// GICD_TYPER: ITLinesNumber and CPUNumber (vCPUs - 1), no security extensions.
    pub fn gicd_v2_typer(&self) -> u32 {
        self.it_lines | ((self.vcpus.len().max(1) as u32 - 1) << 5)
    }

    /// ITARGETSR bytes for INTIDs from `first` (byte or word access). For SGIs and PPIs they
    /// read as the accessing vCPU's own bit and ignore writes.
    fn targets_access(&mut self, vcpu: usize, first: u32, a: &MmioAccess) -> MmioResult {
        if !(a.size == 1 || (a.size == 4 && a.offset % 4 == 0)) {
            return MmioResult::Abort;
        }
        let mut out = 0u64;
        let mut changed = false;
        for b in 0..u32::from(a.size) {
            let intid = first + b;
            let byte = if intid < PRIVATE_IRQS {
                if vcpu < MAX_VCPUS { 1u8 << vcpu } else { 0 }
            } else {
                let present = self.vcpus.len();
                let Some(irq) = self.irq_mut(vcpu, intid) else { continue };
                if a.write {
                    let mask = ((a.value >> (8 * b)) as u8) & if present >= MAX_VCPUS { 0xff } else { ((1u16 << present) - 1) as u8 };
                    let route = route_for_targets(mask);
                    changed |= irq.route != route;
                    irq.route = route;
                    self.candidate(vcpu, intid);
                }
                self.irq(vcpu, intid).map(|i| targets_of_route(i.route)).unwrap_or(0)
            };
            out |= u64::from(byte) << (8 * b);
        }
        if changed {
            self.mark_all_dirty();
        }
        MmioResult::Done(out)
    }

    /// A GICD_SGIR write by `sender`: latch the SGI on its targets. Returns them (vCPU mask).
    pub fn write_sgir(&mut self, sender: usize, value: u32) -> u64 {
        let req = SgirRequest::decode(value, sender, self.vcpus.len());
        let mut left = req.targets;
        while left != 0 {
            let t = left.trailing_zeros() as usize;
            left &= left - 1;
            let _ = self.inject_edge(t, req.intid);
        }
        u64::from(req.targets)
    }

    /// An access to the GICv2 distributor by `vcpu`. Returns the result and the vCPUs an SGI
    /// was sent to (to be told), as a mask.
    pub fn gicd_v2_access(&mut self, vcpu: usize, a: MmioAccess) -> (MmioResult, u64) {
        if !matches!(a.size, 1 | 2 | 4) {
            return (MmioResult::Abort, 0);
        }
        let off = a.offset;
        let r = match off {
            gicd::CTLR => {
                if !word_only(&a) {
                    return (MmioResult::Abort, 0);
                }
                if a.write {
                    self.ctlr = a.value as u32 & super::regs::CTLR_ENABLE_GRP0;
                    self.all_candidates();
                    self.mark_all_dirty();
                }
                MmioResult::Done(u64::from(self.ctlr))
            }
            gicd::TYPER => if word_only(&a) { MmioResult::Done(u64::from(self.gicd_v2_typer())) } else { MmioResult::Abort },
            gicd::IIDR => if word_only(&a) { MmioResult::Done(u64::from(IIDR)) } else { MmioResult::Abort },
            // Every interrupt is Group 0.
            _ if (gicd::IGROUPR..gicd::IGROUPR + 0x80).contains(&off) => raz_wi(&a),
            _ if BitReg::at(off, 0x80).is_some() => {
                let Some((reg, inner)) = BitReg::at(off, 0x80) else { return (MmioResult::Abort, 0) };
                let first = (inner / 4) as u32 * 32;
                self.bits_access(vcpu, reg, first, &a)
            }
            _ if (gicd::IPRIORITYR..gicd::IPRIORITYR + 0x400).contains(&off) => {
                let first = (off - gicd::IPRIORITYR) as u32 & !(u32::from(a.size) - 1);
                self.priority_access(vcpu, first, &a)
            }
            _ if (gicd::ITARGETSR..gicd::ITARGETSR + 0x400).contains(&off) => {
                let first = (off - gicd::ITARGETSR) as u32 & !(u32::from(a.size) - 1);
                self.targets_access(vcpu, first, &a)
            }
            _ if (gicd::ICFGR..gicd::ICFGR + 0x100).contains(&off) => {
                // SGIs stay edge-triggered (the core keeps them read-only).
                let first = ((off - gicd::ICFGR) / 4) as u32 * 16;
                self.config_access(vcpu, first, &a)
            }
            gicd::SGIR => {
                if !word_only(&a) {
                    return (MmioResult::Abort, 0);
                }
                if a.write {
                    let targets = self.write_sgir(vcpu, a.value as u32);
                    return (MmioResult::Done(0), targets);
                }
                MmioResult::Done(0)
            }
            ID_PIDR2 => if word_only(&a) { MmioResult::Done(u64::from(PIDR2_V2)) } else { MmioResult::Abort },
            _ => {
                if let Some(&(_, v)) = ID_CIDR.iter().find(|(o, _)| *o == off) {
                    return (if word_only(&a) { MmioResult::Done(u64::from(v)) } else { MmioResult::Abort }, 0);
                }
                // NSACR, CPENDSGIR/SPENDSGIR and reserved space: read as zero, writes ignored.
                raz_wi(&a)
            }
        };
        (r, 0)
    }

    /// The ITARGETSR mask of SPI `intid` (tests and diagnostics).
    pub fn spi_targets_v2(&self, intid: u32) -> Option<u8> {
        if intid < PRIVATE_IRQS {
            return None;
        }
        self.irq(0, intid).map(|i| targets_of_route(i.route))
    }
}

/// The emulated GICv2 distributor as an MMIO device. `notify` makes the vCPUs in a mask look
/// at their interrupts (the arch layer's kick), for SGIs sent through GICD_SGIR.
pub struct GicdV2Device {
    pub vgic: SharedVgic,
    pub notify: fn(u64),
}

impl MmioDevice for GicdV2Device {
    fn name(&self) -> &str {
        "vGICv2 distributor"
    }
    fn access(&mut self, vcpu: usize, access: MmioAccess) -> MmioResult {
        let (r, targets) = self.vgic.lock().gicd_v2_access(vcpu, access);
        if access.write {
            REGISTER_WRITES.fetch_add(1, Ordering::Release);
        }
        if targets != 0 {
            (self.notify)(targets);
        }
        r
    }
}

#[cfg(all(test, not(loom)))]
#[path = "v2_tests.rs"]
mod tests;
