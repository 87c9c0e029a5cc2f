//! Each domain's vGIC, by domain id, and how a domain gets one: its distributor and
//! redistributor frames become emulated devices of the domain at the addresses its device tree
//! names. The arch layer finds the vGIC of the vCPU it runs here (by the running domain's id)
//! and never holds a vGIC of its own.

use super::regs::{GicdDevice, GicrDevice, SharedVgic, GICD_SIZE, GICR_STRIDE};
use super::{Vgic, PRIVATE_IRQS};
use crate::domain::registry::{Slots, MAX_DOMAINS};
use crate::domain::{DomId, Domain};
use crate::sync::SpinMutex;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

/// The vGICs of all domains, each in the slot of its domain's id: set before the domain runs,
/// taken out when the toolstack destroys it. A lookup is one load (`registry::Slots`); a vGIC
/// taken out is never freed (the domain's record, which is not either, holds it in its
/// emulated devices anyway).
#[derive(Default)]
pub struct VgicTable {
    slots: Slots<SharedVgic>,
}

impl VgicTable {
    pub const fn new() -> Self {
        Self { slots: Slots::new() }
    }

    /// Domain `id`'s vGIC (one load: no lock).
    #[inline]
    pub fn get(&self, id: DomId) -> Option<&SharedVgic> {
        self.slots.get(id)
    }

    /// Record `vgic` as domain `id`'s; refused when the slot is taken or does not exist.
    /// (`attach` does this for a vGICv3; a front end that builds its devices itself calls it.)
    pub fn insert(&self, id: DomId, vgic: SharedVgic) -> Result<&SharedVgic, String> {
        if !self.slots.has_slot(id) {
            return Err(format!("d{id}: no vGIC slot (domain ids stop at {MAX_DOMAINS})"));
        }
        self.slots.insert(id, vgic).map_err(|_| format!("d{id} has a vGIC already"))
    }

    /// Take domain `id`'s vGIC out (its domain is gone; the id may be a new domain's next).
    pub fn remove(&self, id: DomId) -> bool {
        self.slots.take(id).is_some()
    }
}

/// The machine's vGICs.
pub static VGICS: VgicTable = VgicTable::new();

/// What a domain's vGIC looks like to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VgicConfig {
    /// Guest-physical base of the distributor (64 KiB).
    pub gicd: u64,
    /// Guest-physical base and size of the redistributor region (one RD + SGI frame pair per
    /// vCPU, in vCPU order).
    pub gicr: u64,
    pub gicr_size: u64,
    /// GICD_TYPER.ITLinesNumber.
    pub it_lines: u32,
    /// vCPUs; vCPU n has vMPIDR 0x8000_0000 | n (what `VMPIDR_EL2` gives it).
    pub vcpus: usize,
    /// Every SPI is backed by the physical SPI of the same INTID (the hardware domain's
    /// devices pass through); otherwise SPIs are virtual only (emulated devices).
    pub passthrough_spis: bool,
}

/// The vMPIDR the vGIC gives vCPU `vcpu` (Aff0 = vCPU id, bit 31 RES1).
pub fn vmpidr(vcpu: usize) -> u64 {
    (1 << 31) | vcpu as u64
}

/// A dom0less domU's vGIC, where Xen puts a guest's GICv3 (the addresses its DT names):
/// one redistributor per vCPU, SPIs for its emulated devices only (the vpl011's, when it has
/// one), nothing passed through; never more INTIDs than the host has.
pub fn domu_config(vcpus: u32, vpl011: bool, host_it_lines: u32) -> VgicConfig {
    use crate::domain::domu::{GUEST_GICV3_GICD_BASE, GUEST_GICV3_GICR0_BASE, GUEST_GICV3_GICR_STRIDE};
    let highest = if vpl011 { crate::domain::vuart::GUEST_VPL011_SPI } else { PRIVATE_IRQS - 1 };
    VgicConfig {
        gicd: GUEST_GICV3_GICD_BASE,
        gicr: GUEST_GICV3_GICR0_BASE,
        gicr_size: GUEST_GICV3_GICR_STRIDE * u64::from(vcpus),
        it_lines: super::it_lines_for(highest, host_it_lines),
        vcpus: vcpus as usize,
        passthrough_spis: false,
    }
}

/// Give `dom` a vGICv3 as `cfg` describes, record it in `table` and return it.
pub fn attach<'t>(table: &'t VgicTable, dom: &mut Domain, cfg: &VgicConfig) -> Result<&'t SharedVgic, String> {
    if cfg.vcpus == 0 || (cfg.vcpus as u64).saturating_mul(GICR_STRIDE) > cfg.gicr_size {
        return Err(format!("vGIC: {} vCPU(s) need {:#x} bytes of redistributors, the region has {:#x}", cfg.vcpus, (cfg.vcpus as u64).saturating_mul(GICR_STRIDE), cfg.gicr_size));
    }
    let mpidrs: Vec<u64> = (0..cfg.vcpus).map(vmpidr).collect();
    let mut g = Vgic::new(cfg.it_lines, &mpidrs);
    if cfg.passthrough_spis {
        for intid in PRIVATE_IRQS..g.nr_irqs() {
            let _ = g.set_hw(intid, true);
        }
    }
    let vgic: SharedVgic = Arc::new(SpinMutex::new(g));
    if !dom.mmio.add(cfg.gicd, GICD_SIZE, alloc::boxed::Box::new(GicdDevice(vgic.clone())))
        || !dom.mmio.add(cfg.gicr, cfg.gicr_size, alloc::boxed::Box::new(GicrDevice(vgic.clone())))
    {
        return Err("vGIC: its MMIO ranges overlap another emulated device".into());
    }
    table.insert(dom.id, vgic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::mmio::{MmioAccess, MmioResult};
    use crate::domain::RamBanks;

    fn read(dom: &Domain, vcpu: usize, ipa: u64) -> MmioResult {
        let (mut dev, offset) = dom.mmio.find(ipa).expect("a device");
        dev.access(vcpu, MmioAccess { offset, size: 4, write: false, value: 0 })
    }

    fn cfg(vcpus: usize, passthrough: bool) -> VgicConfig {
        VgicConfig { gicd: 0x0300_1000, gicr: 0x0302_0000, gicr_size: 2 * GICR_STRIDE, it_lines: 1, vcpus, passthrough_spis: passthrough }
    }

    #[test]
    fn each_domain_has_its_own_vgic() {
        let table = VgicTable::new();
        let mut d0 = Domain::new(0, true, true, RamBanks::default());
        let mut d1 = Domain::new(1, false, false, RamBanks::default());
        let v0 = attach(&table, &mut d0, &cfg(2, true)).unwrap().clone();
        let v1 = attach(&table, &mut d1, &cfg(1, false)).unwrap().clone();
        assert!(!Arc::ptr_eq(&v0, &v1));
        assert!(Arc::ptr_eq(table.get(0).unwrap(), &v0) && Arc::ptr_eq(table.get(1).unwrap(), &v1));
        assert!(table.get(2).is_none() && table.get(DomId::MAX).is_none());
        // An interrupt pending in one domain's vGIC is not the other's.
        v1.lock().inject_edge(0, 27).unwrap();
        assert!(v1.lock().irq(0, 27).unwrap().pending);
        assert!(!v0.lock().irq(0, 27).unwrap().pending);
        // Passed-through SPIs only where asked.
        assert!(v0.lock().irq(0, 32).unwrap().hw);
        assert!(!v1.lock().irq(0, 32).unwrap().hw);
        // A second vGIC for a domain is refused.
        let mut again = Domain::new(1, false, false, RamBanks::default());
        assert!(attach(&table, &mut again, &cfg(1, false)).is_err());
    }

    #[test]
    fn a_domu_gets_xens_guest_layout_and_an_spi_only_for_its_vpl011() {
        use crate::domain::domu::{GUEST_GICV3_GICD_BASE, GUEST_GICV3_GICR0_BASE};
        let c = domu_config(1, true, 8);
        assert_eq!((c.gicd, c.gicr, c.gicr_size, c.vcpus, c.passthrough_spis), (GUEST_GICV3_GICD_BASE, GUEST_GICV3_GICR0_BASE, GICR_STRIDE, 1, false));
        // INTID 32 (the vpl011's SPI) needs one block of SPIs; no vpl011, none.
        assert_eq!(c.it_lines, 1);
        assert_eq!(domu_config(1, false, 8).it_lines, 0);
        assert_eq!(domu_config(2, true, 0).it_lines, 0);
        assert_eq!(domu_config(2, true, 8).gicr_size, 2 * GICR_STRIDE);
        let table = VgicTable::new();
        let mut d = Domain::new(1, false, false, RamBanks::default());
        let v = attach(&table, &mut d, &c).unwrap();
        assert_eq!(v.lock().nr_irqs(), 64);
        // The vpl011's line reaches its SPI.
        v.lock().set_level(0, crate::domain::vuart::GUEST_VPL011_SPI, true).unwrap();
        assert!(v.lock().irq(0, 32).unwrap().level);
    }

    #[test]
    fn registers_appear_where_the_config_says_with_one_redistributor_per_vcpu() {
        let table = VgicTable::new();
        let mut d = Domain::new(3, false, false, RamBanks::default());
        attach(&table, &mut d, &cfg(2, false)).unwrap();
        // GICD_TYPER: ITLinesNumber 1 (64 INTIDs).
        assert!(matches!(read(&d, 0, 0x0300_1004), MmioResult::Done(t) if t & 0x1f == 1));
        // GICR_TYPER of each frame: Processor_Number = vCPU, Last on the second; whichever
        // vCPU reads it.
        let typer = |frame: u64, reader: usize| match read(&d, reader, 0x0302_0008 + frame * GICR_STRIDE) {
            MmioResult::Done(v) => v,
            MmioResult::Abort => u64::MAX,
        };
        assert_eq!((typer(0, 1) >> 8) & 0xffff, 0);
        assert_eq!((typer(1, 0) >> 8) & 0xffff, 1);
        assert_eq!(typer(1, 0) & (1 << 4), 1 << 4);
        assert_eq!(typer(0, 0) & (1 << 4), 0);
        // A region too small for the vCPUs is refused.
        let mut e = Domain::new(4, false, false, RamBanks::default());
        assert!(attach(&table, &mut e, &VgicConfig { gicr_size: GICR_STRIDE, ..cfg(2, false) }).is_err());
        assert!(table.get(4).is_none());
    }
}
