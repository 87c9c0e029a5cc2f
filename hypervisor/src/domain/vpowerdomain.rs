//! dom0's view of the Exynos PMU's power-domain page (the DT's `samsung,exynos4210-pd` nodes,
//! 0x20 bytes each) when the hypervisor keeps SysMMUs inside those domains. A SysMMU loses its
//! registers while its domain is off and comes back out of reset disabled, i.e. bypassing: its
//! master could reach any memory. dom0 still owns power management, so its accesses trap here and
//! reach the real PMU as before, but around them the hypervisor follows each domain: before a
//! write powers a domain off, its SysMMUs leave the shadow table (their registers untouched);
//! once a write powers it on, the hypervisor waits (bounded) for STATUS to report on and
//! re-attaches them before dom0's access returns, so no master of the domain runs before its
//! SysMMU translates again. A domain that does not come on in time, or whose SysMMU answers
//! neither programmed nor blocked (its clocks gated, say), is turned off again; a power-off write
//! returns once STATUS reports off (bounded), so the next power-on starts from off.

use crate::domain::mmio::{MmioAccess, MmioDevice, MmioResult};
use crate::iommu::exynos_sysmmu::set::{Outcome, SysmmuSet};
use alloc::vec::Vec;
use platform::exynos5250::sysmmu_pt::Lv2TableAllocator;
use platform::{Mmio, PhysMem};

/// A domain's registers, from its base: CONFIGURATION (LOCAL_PWR_CFG in bits [2:0]) and STATUS.
pub const PD_CONFIGURATION: u64 = 0x0;
pub const PD_STATUS: u64 = 0x4;
/// The bytes of one domain (the DT's `reg` size).
pub const PD_SIZE: u64 = 0x20;
/// LOCAL_PWR_CFG / STATUS field of an exynos4210-pd: all three bits set is on, clear is off.
pub const PD_ON: u32 = 0x7;
/// STATUS reads the hypervisor waits for a domain to report on (Linux waits about 1 ms).
pub const POWER_ON_POLLS: u32 = 100_000;

/// Why a domain is going off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerOff {
    /// dom0 wrote it off (or it went off other than through this page).
    Dom0,
    /// Asked on, it did not report on within [`POWER_ON_POLLS`] reads: turned off again.
    NotOnInTime,
    /// It came on, but a SysMMU inside it answered neither programmed nor blocked: turned off
    /// again before its master could run.
    SysmmuUnresponsive,
}

/// What the hypervisor does when a domain changes power (the SysMMUs inside it).
pub trait DomainPower {
    /// The domain whose registers are at `domain` (PA) reports on. False: a SysMMU inside it
    /// cannot be kept from bypassing, and the domain must go off again.
    fn powered_on(&mut self, domain: u64) -> bool;
    /// The domain at `domain` is going off.
    fn powering_off(&mut self, domain: u64, why: PowerOff);
}

impl<P: PhysMem, A: Lv2TableAllocator, M: Mmio, C: Mmio> DomainPower for SysmmuSet<P, A, M, C> {
    fn powered_on(&mut self, domain: u64) -> bool {
        !self.domain_on(domain).iter().any(|(_, o)| matches!(o, Outcome::Unresponsive { .. }))
    }
    fn powering_off(&mut self, domain: u64, _why: PowerOff) {
        self.domain_off(domain);
    }
}

/// One domain in the page: its offset and whether the hypervisor last saw it on.
struct Tracked {
    offset: u64,
    on: bool,
}

/// The power-domain page as dom0 sees it.
pub struct PowerDomainFilter<M: Mmio, H: DomainPower> {
    regs: M,
    page: u64,
    domains: Vec<Tracked>,
    hook: H,
    refused: u32,
}

impl<M: Mmio, H: DomainPower> PowerDomainFilter<M, H> {
    /// dom0's view of the 4 KiB page at `page` (PA, registers `regs`) holding the domains whose
    /// registers are at `domains` (PAs; ones outside the page are not this filter's).
    pub fn new(regs: M, page: u64, domains: impl IntoIterator<Item = u64>, hook: H) -> Self {
        let mut f = PowerDomainFilter { regs, page, domains: Vec::new(), hook, refused: 0 };
        for pa in domains {
            let Some(offset) = pa.checked_sub(page).filter(|&o| o + PD_SIZE <= 0x1000 && o.is_multiple_of(PD_SIZE)) else { continue };
            if f.domains.iter().all(|d| d.offset != offset) {
                let on = f.hardware_on(offset);
                f.domains.push(Tracked { offset, on });
            }
        }
        f
    }

    /// What the hypervisor does on power changes.
    pub fn hook(&self) -> &H {
        &self.hook
    }

    pub fn hook_mut(&mut self) -> &mut H {
        &mut self.hook
    }

    /// Power-ups undone: the domain did not report on in time, or a SysMMU inside it did not
    /// answer (each turned off again).
    pub fn refused(&self) -> u32 {
        self.refused
    }

    /// Read the domain's STATUS until its field is `want` (at most [`POWER_ON_POLLS`] reads).
    fn wait_status(&self, offset: u64, want: u32) -> bool {
        let status = (offset + PD_STATUS) as usize;
        (0..POWER_ON_POLLS).any(|_| self.regs.read32(status) & PD_ON == want)
    }

    /// The domain at `offset` came on (by dom0's write, or seen on): its SysMMUs are attached,
    /// or, if one cannot be kept from bypassing, the domain is turned off again before dom0's
    /// access returns.
    fn came_on(&mut self, i: usize, at_config: usize, config: u32) {
        let domain = self.page + self.domains[i].offset;
        if self.hook.powered_on(domain) {
            self.domains[i].on = true;
            return;
        }
        self.refuse(i, at_config, config, PowerOff::SysmmuUnresponsive);
    }

    /// Turn the domain off again (CONFIGURATION `config` without LOCAL_PWR_CFG), its SysMMUs out
    /// of the table first, and wait for it to report off.
    fn refuse(&mut self, i: usize, at_config: usize, config: u32, why: PowerOff) {
        let offset = self.domains[i].offset;
        self.refused += 1;
        self.hook.powering_off(self.page + offset, why);
        self.domains[i].on = false;
        self.regs.write32(at_config, config & !PD_ON);
        let _ = self.wait_status(offset, 0);
    }

    /// The domain at `offset` is configured on and reports on.
    fn hardware_on(&self, offset: u64) -> bool {
        let cfg = self.regs.read32((offset + PD_CONFIGURATION) as usize);
        let status = self.regs.read32((offset + PD_STATUS) as usize);
        cfg & PD_ON == PD_ON && status & PD_ON == PD_ON
    }

    /// One trapped access of dom0's. Accesses must be aligned 32-bit ones inside the page;
    /// a write to a domain's CONFIGURATION must ask for on (7) or off (0) in LOCAL_PWR_CFG.
    pub fn filter(&mut self, a: MmioAccess) -> MmioResult {
        if a.size != 4 || !a.offset.is_multiple_of(4) || a.offset >= 0x1000 {
            return MmioResult::Abort;
        }
        let at = a.offset as usize;
        let Some(i) = self.domains.iter().position(|d| (d.offset..d.offset + PD_SIZE).contains(&a.offset)) else {
            // Other PMU registers of the page: as the hardware.
            return self.forward(at, a);
        };
        let (offset, reg) = (self.domains[i].offset, a.offset - self.domains[i].offset);
        let domain = self.page + offset;
        let at_config = (offset + PD_CONFIGURATION) as usize;
        if !a.write || reg != PD_CONFIGURATION {
            let r = self.forward(at, a);
            // A domain that came on (or went off) other than through this page is followed too.
            let on = self.hardware_on(offset);
            if on != self.domains[i].on {
                if on {
                    let config = self.regs.read32(at_config);
                    self.came_on(i, at_config, config);
                    // dom0 reads what the domain now is.
                    if !self.domains[i].on && !a.write {
                        return MmioResult::Done(u64::from(self.regs.read32(at)));
                    }
                } else {
                    self.domains[i].on = false;
                    self.hook.powering_off(domain, PowerOff::Dom0);
                }
            }
            return r;
        }
        let value = a.value as u32;
        match value & PD_ON {
            0 => {
                // The SysMMUs leave the table before their registers go.
                self.hook.powering_off(domain, PowerOff::Dom0);
                self.domains[i].on = false;
                self.regs.write32(at, value);
                // Returning once STATUS reports off (bounded) means a power-on that follows starts
                // from a domain that is off: its SysMMUs are reprogrammed after their reset, never
                // before a power-down still under way.
                let _ = self.wait_status(offset, 0);
            }
            PD_ON => {
                self.regs.write32(at, value);
                if self.wait_status(offset, PD_ON) {
                    self.came_on(i, at_config, value);
                } else {
                    // Its SysMMUs could come up bypassing after dom0's access returned.
                    self.refuse(i, at_config, value, PowerOff::NotOnInTime);
                }
            }
            _ => return MmioResult::Abort,
        }
        MmioResult::Done(0)
    }

    fn forward(&self, at: usize, a: MmioAccess) -> MmioResult {
        if a.write {
            self.regs.write32(at, a.value as u32);
            MmioResult::Done(0)
        } else {
            MmioResult::Done(u64::from(self.regs.read32(at)))
        }
    }
}

impl<M: Mmio + Send, H: DomainPower + Send> MmioDevice for PowerDomainFilter<M, H> {
    fn name(&self) -> &str {
        "PMU power domains (dom0's, SysMMUs followed)"
    }

    fn access(&mut self, _vcpu: usize, a: MmioAccess) -> MmioResult {
        self.filter(a)
    }
}

#[cfg(all(test, not(loom)))]
#[allow(clippy::single_range_in_vec_init)] // SimMem takes a list of RAM ranges; one here
mod tests {
    extern crate std;
    use super::*;
    use crate::dt::Region;
    use crate::iommu::exynos_sysmmu::set::{Outcome, Pool, SysmmuSpec};
    use platform::exynos5250::combiner::CombinerIrq;
    use platform::exynos5250::{PowerDomain, SYSMMUS};
    use proptest::prelude::*;
    use std::rc::Rc;
    use std::vec;
    use sysmmu_model::soc::{CombinerModel, PmuModel, PMU_POWER_DOMAINS};
    use sysmmu_model::{DmaError, ModelConfig, SimMem, SysmmuModel};

    const PAGE: u64 = 0x1004_4000;
    const PGD: u64 = 0x4000_0000;
    const DOM0_RAM: Region = Region { base: 0x4200_0000, size: 16 << 20 };
    /// Outside dom0's RAM, but memory: a bypassing master reaches it.
    const NOT_DOM0S: u32 = 0x4500_0000;

    type Set<'m> = SysmmuSet<&'m SimMem, Pool, &'m SysmmuModel, &'m CombinerModel<'m>>;
    type Filter<'m> = PowerDomainFilter<sysmmu_model::soc::PmuWindow<'m>, Set<'m>>;

    /// A domain's offset in the PMU model (its DT address less the PMU's).
    fn pmu_off(pd: PowerDomain) -> usize {
        (pd.region().base - 0x1004_0000) as usize
    }

    fn irq(name: &str) -> CombinerIrq {
        let s = SYSMMUS.iter().find(|s| s.name == name).unwrap();
        CombinerIrq::new(s.combiner.0, s.combiner.1).unwrap()
    }

    /// The mixer's SysMMU (DISP1, on at boot), GScaler 0's (GSC, off at boot) and the G2D's (no
    /// domain), as the boot brings them up; dom0's accesses to the power-domain page go through
    /// the filter.
    struct Rig {
        mem: Rc<SimMem>,
        pmu: PmuModel,
        tv: SysmmuModel,
        gsc0: SysmmuModel,
        g2d: SysmmuModel,
    }

    fn rig(gsc_on: bool) -> Rig {
        let mem = Rc::new(SimMem::new(&[0x4000_0000..0x4800_0000]));
        let pmu = PmuModel::new().with_domain(pmu_off(PowerDomain::Disp1), true).with_domain(pmu_off(PowerDomain::Gsc), gsc_on);
        let tv = SysmmuModel::in_domain(ModelConfig::v3(3), mem.clone(), pmu.domain_line(pmu_off(PowerDomain::Disp1)));
        let gsc0 = SysmmuModel::in_domain(ModelConfig::v3(3), mem.clone(), pmu.domain_line(pmu_off(PowerDomain::Gsc)));
        let g2d = SysmmuModel::new(ModelConfig::v3(3), mem.clone());
        Rig { mem, pmu, tv, gsc0, g2d }
    }

    impl Rig {
        fn combiner(&self) -> CombinerModel<'_> {
            let mut c = CombinerModel::new();
            for (name, m) in [("sysmmu_tv", &self.tv), ("sysmmu_gsc0", &self.gsc0), ("sysmmu_g2d", &self.g2d)] {
                let i = irq(name);
                c.connect(i.group, i.bit, move || m.irq_pending());
            }
            c
        }

        fn bring_up<'m>(&'m self, combiner: &'m CombinerModel<'m>) -> (Filter<'m>, Vec<(std::string::String, Outcome)>) {
            let spec = |path: &str, name: &str, domain: Option<PowerDomain>, regs| SysmmuSpec { path: path.into(), irq: Some(irq(name)), domain: domain.map(|d| d.region().base), regs };
            let specs = vec![
                spec("/soc/sysmmu@14650000", "sysmmu_tv", Some(PowerDomain::Disp1), &self.tv),
                spec("/soc/sysmmu@13e80000", "sysmmu_gsc0", Some(PowerDomain::Gsc), &self.gsc0),
                spec("/soc/sysmmu@10a60000", "sysmmu_g2d", None, &self.g2d),
            ];
            let (set, outcomes) = SysmmuSet::bring_up(&*self.mem, Pool(0x4010_0000), PGD, combiner, specs, &[DOM0_RAM], &[]);
            let domains = [PowerDomain::Gsc, PowerDomain::Mfc, PowerDomain::G3d, PowerDomain::Disp1, PowerDomain::Mau].map(|d| d.region().base);
            (PowerDomainFilter::new(self.pmu.window(PMU_POWER_DOMAINS), PAGE, domains, set), outcomes)
        }
    }

    fn access(f: &mut Filter<'_>, offset: u64, write: bool, value: u32) -> MmioResult {
        f.filter(MmioAccess { offset, size: 4, write, value: u64::from(value) })
    }

    /// Linux's exynos pm_domains: CONFIGURATION <- 0x7 or 0, then STATUS polled (at most 10
    /// reads) until its field matches. Whether it did.
    fn linux_power(f: &mut Filter<'_>, pd: PowerDomain, on: bool) -> bool {
        let off = pd.region().base - PAGE;
        let want = if on { PD_ON } else { 0 };
        assert_eq!(access(f, off, true, want), MmioResult::Done(0));
        (0..10).any(|_| matches!(access(f, off + PD_STATUS, false, 0), MmioResult::Done(v) if v as u32 & PD_ON == want))
    }

    #[test]
    fn without_the_filter_a_power_cycle_leaves_the_master_bypassing() {
        // What the hole is: the same cycle written straight to the PMU.
        let r = rig(true);
        let c = r.combiner();
        let (f, _) = r.bring_up(&c);
        assert!(matches!(r.tv.translate(NOT_DOM0S, true), Err(DmaError::Fault { .. })));
        drop(f);
        let at = pmu_off(PowerDomain::Disp1);
        for v in [0, PD_ON] {
            r.pmu.write32(at, v);
            while r.pmu.read32(at + 4) & PD_ON != v {}
        }
        assert_eq!(r.tv.translate(NOT_DOM0S, true), Ok(u64::from(NOT_DOM0S)), "bypass: the master reaches memory that is not dom0's");
    }

    #[test]
    fn after_dom0s_off_and_on_the_master_translates_through_dom0s_shadow_again() {
        let r = rig(true);
        let c = r.combiner();
        let (mut f, outcomes) = r.bring_up(&c);
        assert!(outcomes.iter().all(|(_, o)| matches!(o, Outcome::Translating { .. })), "{outcomes:?}");
        assert_eq!(r.tv.translate(0x4200_1000, true), Ok(0x4200_1000));

        assert!(linux_power(&mut f, PowerDomain::Disp1, false));
        assert_eq!(r.tv.translate(0x4200_1000, true), Err(DmaError::PoweredOff));
        assert_eq!(r.pmu.domain_line(pmu_off(PowerDomain::Disp1)).power_ups(), 0);
        assert_eq!(f.hook().attached().collect::<Vec<_>>(), ["/soc/sysmmu@13e80000", "/soc/sysmmu@10a60000"]);
        // dom0's p2m changes while the domain is off reach the table, not the unpowered SysMMU.
        f.hook_mut().mirror(0x4210_0000, 0x1000, None).unwrap();
        assert_eq!(r.tv.stats().accesses_while_off, 0, "no register of a powered-off SysMMU was touched");
        assert!(!c.spi_level(irq("sysmmu_tv").spi()));

        assert!(linux_power(&mut f, PowerDomain::Disp1, true));
        // Before dom0 saw the domain on, the SysMMU was back on dom0's shadow table.
        assert!(r.tv.is_enabled() && !r.tv.is_blocked(), "translating, not bypassing");
        assert_eq!(r.tv.pt_base(), PGD);
        assert_eq!(r.tv.translate(0x4200_1000, true), Ok(0x4200_1000));
        assert!(matches!(r.tv.translate(0x4210_0000, false), Err(DmaError::Fault { .. })), "the page unmapped while it was off");
        let spi = irq("sysmmu_tv").spi();
        assert!(c.spi_level(spi), "its fault input is enabled again");
        let reports = f.hook_mut().handle_spi(spi);
        assert_eq!((reports.len(), reports[0].path.as_str()), (1, "/soc/sysmmu@14650000"));
        assert!(matches!(r.tv.translate(NOT_DOM0S, true), Err(DmaError::Fault { .. })), "outside dom0's RAM: a fault, not memory");
        assert_eq!(f.hook_mut().handle_spi(spi).len(), 1);
        assert_eq!(r.tv.stats().accesses_while_off, 0);
        assert_eq!(r.mem.stale_device_reads(), 0);
        // The other domains' SysMMUs never noticed.
        assert_eq!(r.g2d.translate(0x4200_2000, false), Ok(0x4200_2000));
        assert_eq!(f.refused(), 0);
    }

    #[test]
    fn a_sysmmu_whose_domain_was_off_at_boot_is_attached_on_its_first_power_up() {
        let r = rig(false);
        let c = r.combiner();
        let (mut f, outcomes) = r.bring_up(&c);
        assert!(matches!(&outcomes[1], (p, Outcome::Blocked { .. }) if p == "/soc/sysmmu@13e80000"), "{outcomes:?}");
        assert_eq!(r.gsc0.translate(0x4200_0000, false), Err(DmaError::PoweredOff));
        assert!(linux_power(&mut f, PowerDomain::Gsc, true));
        assert!(f.hook().attached().any(|p| p == "/soc/sysmmu@13e80000"));
        assert_eq!(r.gsc0.translate(0x4200_3000, true), Ok(0x4200_3000));
        assert!(matches!(r.gsc0.translate(NOT_DOM0S, false), Err(DmaError::Fault { .. })));
        let spi = irq("sysmmu_gsc0").spi();
        assert_eq!(f.hook().fault_spis() & (1 << spi), 1 << spi);
        assert_eq!(f.hook_mut().handle_spi(spi).len(), 1);
        // Linux at boot reads STATUS first: nothing changes for a domain already followed.
        assert_eq!(access(&mut f, PowerDomain::Gsc.region().base - PAGE + PD_STATUS, false, 0), MmioResult::Done(7));
        assert_eq!(r.gsc0.translate(0x4200_3000, false), Ok(0x4200_3000));
    }

    #[test]
    fn a_domain_that_does_not_come_on_in_time_is_turned_off_again() {
        let mem = Rc::new(SimMem::new(&[0x4000_0000..0x4800_0000]));
        let at = pmu_off(PowerDomain::Gsc);
        let pmu = PmuModel::new().with_domain(at, false).with_stuck_domain(at);
        let gsc0 = SysmmuModel::in_domain(ModelConfig::v3(3), mem.clone(), pmu.domain_line(at));
        let c = CombinerModel::new();
        let specs = vec![SysmmuSpec { path: "/soc/sysmmu@13e80000".into(), irq: Some(irq("sysmmu_gsc0")), domain: Some(PowerDomain::Gsc.region().base), regs: &gsc0 }];
        let (set, _) = SysmmuSet::bring_up(&*mem, Pool(0x4010_0000), PGD, &c, specs, &[DOM0_RAM], &[]);
        let mut f = PowerDomainFilter::new(pmu.window(PMU_POWER_DOMAINS), PAGE, [PowerDomain::Gsc.region().base], set);
        assert_eq!(access(&mut f, 0, true, PD_ON), MmioResult::Done(0));
        assert_eq!(f.refused(), 1);
        assert_eq!(pmu.read32(at) & PD_ON, 0, "CONFIGURATION written back to off");
        assert!(f.hook().attached().next().is_none());
    }

    #[test]
    fn a_domain_whose_sysmmu_does_not_answer_is_turned_off_again() {
        // The mixer's clock (the SysMMU's "master" clock) gated when DISP1 comes on: its
        // registers neither take the program nor the block, and it would bypass once clocked.
        let r = rig(true);
        let c = r.combiner();
        let (mut f, _) = r.bring_up(&c);
        assert!(linux_power(&mut f, PowerDomain::Disp1, false));
        r.tv.set_clock(false);
        assert!(!linux_power(&mut f, PowerDomain::Disp1, true), "dom0 sees the power-on fail");
        assert_eq!(f.refused(), 1);
        assert!(!r.pmu.domain_on(pmu_off(PowerDomain::Disp1)));
        r.tv.set_clock(true);
        assert_eq!(r.tv.translate(NOT_DOM0S, true), Err(DmaError::PoweredOff), "the master never runs unconfined");
        assert!(!f.hook().attached().any(|p| p == "/soc/sysmmu@14650000"));
        // Clocked, the next power-up attaches it.
        assert!(linux_power(&mut f, PowerDomain::Disp1, true));
        assert_eq!(r.tv.translate(0x4200_1000, false), Ok(0x4200_1000));
        assert!(matches!(r.tv.translate(NOT_DOM0S, true), Err(DmaError::Fault { .. })));
    }

    #[test]
    fn bad_accesses_abort_and_other_registers_reach_the_pmu() {
        let r = rig(true);
        let c = r.combiner();
        let (mut f, _) = r.bring_up(&c);
        let disp1 = PowerDomain::Disp1.region().base - PAGE;
        for (offset, size) in [(disp1, 1), (disp1, 2), (disp1, 8), (disp1 + 2, 4), (0x1000, 4), (u64::MAX - 3, 4)] {
            for write in [false, true] {
                assert_eq!(f.filter(MmioAccess { offset, size, write, value: 0 }), MmioResult::Abort, "{offset:#x}/{size}/{write}");
            }
        }
        // LOCAL_PWR_CFG is all or nothing.
        assert_eq!(access(&mut f, disp1, true, 0x3), MmioResult::Abort);
        assert_eq!(r.pmu.read32(pmu_off(PowerDomain::Disp1)), PD_ON, "the refused write did not reach the PMU");
        assert_eq!(r.tv.translate(0x4200_0000, false), Ok(0x4200_0000));
        // A domain's other registers, and the page's other PMU registers, as before.
        assert_eq!(access(&mut f, disp1 + 0x8, true, 0x1), MmioResult::Done(0));
        assert_eq!(access(&mut f, disp1 + 0x8, false, 0), MmioResult::Done(1));
        assert_eq!(access(&mut f, 0x800, true, 0xabc), MmioResult::Done(0));
        assert_eq!(r.pmu.read32(PMU_POWER_DOMAINS + 0x800), 0xabc);
        // A power-off returns once the domain is off: a power-on right after it starts from off.
        assert_eq!(access(&mut f, disp1, true, 0), MmioResult::Done(0));
        assert!(!r.pmu.domain_on(pmu_off(PowerDomain::Disp1)));
        assert_eq!(access(&mut f, disp1, true, PD_ON), MmioResult::Done(0));
        assert_eq!(r.pmu.domain_line(pmu_off(PowerDomain::Disp1)).power_ups(), 1);
        assert_eq!(r.tv.translate(0x4200_0000, false), Ok(0x4200_0000));
        // Bits above LOCAL_PWR_CFG are passed on.
        assert!(linux_power(&mut f, PowerDomain::Disp1, false));
        assert_eq!(access(&mut f, disp1, true, 0x100 | PD_ON), MmioResult::Done(0));
        assert_eq!(r.tv.translate(0x4200_0000, false), Ok(0x4200_0000));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Access { offset: u64, size: u8, write: bool, value: u32 },
        Dma { mmu: u8, iova: u32, write: bool },
        Fault { mmu: u8 },
        /// The mixer's clock gated or not (its driver's runtime PM).
        Clock { on: bool },
    }

    fn op() -> impl Strategy<Value = Op> {
        let domain_reg = (0usize..5, prop::sample::select(vec![0u64, 4, 8, 0x1c]))
            .prop_map(|(d, r)| [0x0u64, 0x40, 0x60, 0xa0, 0xc0][d] + r);
        let offset = prop_oneof![4 => domain_reg, 1 => 0u64..0x1100];
        let value = prop_oneof![2 => Just(0u32), 3 => Just(PD_ON), 1 => any::<u32>()];
        prop_oneof![
            4 => (offset, prop::sample::select(vec![4u8, 4, 4, 1, 2, 8]), any::<bool>(), value).prop_map(|(offset, size, write, value)| Op::Access { offset, size, write, value }),
            2 => (0u8..3, prop_oneof![Just(0x4200_1000u32), Just(NOT_DOM0S), any::<u32>()], any::<bool>()).prop_map(|(mmu, iova, write)| Op::Dma { mmu, iova, write }),
            1 => (0u8..3).prop_map(|mmu| Op::Fault { mmu }),
            1 => any::<bool>().prop_map(|on| Op::Clock { on }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Whatever dom0 writes or reads, in whatever order, with the mixer's clock coming and
        /// going, no powered SysMMU of the set ever bypasses, none is touched while its domain is
        /// off, and nothing panics.
        #[test]
        fn no_sequence_of_dom0_accesses_opens_a_bypass(gsc_on in any::<bool>(), ops in proptest::collection::vec(op(), 1..40)) {
            let r = rig(gsc_on);
            let c = r.combiner();
            let (mut f, _) = r.bring_up(&c);
            let mmus = [(&r.tv, "sysmmu_tv"), (&r.gsc0, "sysmmu_gsc0"), (&r.g2d, "sysmmu_g2d")];
            // The boot's probe of a SysMMU whose domain is off is where the set learns it (VERSION
            // reads 0): counted from here.
            let at_boot = mmus.map(|(m, _)| m.stats().accesses_while_off);
            for op in ops {
                match op {
                    Op::Access { offset, size, write, value } => {
                        let _ = f.filter(MmioAccess { offset, size, write, value: u64::from(value) });
                    }
                    Op::Dma { mmu, iova, write } => {
                        let (m, _) = mmus[mmu as usize];
                        if let Ok(pa) = m.translate(iova, write) {
                            prop_assert!((DOM0_RAM.base..DOM0_RAM.base + DOM0_RAM.size).contains(&pa), "DMA reached {pa:#x}");
                        }
                    }
                    Op::Fault { mmu } => {
                        let _ = f.hook_mut().handle_spi(irq(mmus[mmu as usize].1).spi());
                    }
                    Op::Clock { on } => r.tv.set_clock(on),
                }
                for ((m, name), boot) in mmus.iter().zip(at_boot) {
                    if m.powered() {
                        prop_assert!(m.is_isolated(), "{name} bypasses");
                    }
                    prop_assert_eq!(m.stats().accesses_while_off, boot, "{} touched while off", name);
                }
            }
        }
    }
}
