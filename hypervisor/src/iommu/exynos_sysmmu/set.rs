//! The SysMMUs the hypervisor keeps on an Exynos5250, live: brought up over dom0's memory (one
//! shadow table, IOVA = IPA = PA since dom0 is direct-mapped) and their fault interrupts taken
//! through the interrupt combiner. [`SysmmuSet::bring_up`] is what the boot path runs once dom0's
//! stage 2 is built; [`SysmmuSet::handle_spi`] is what the interrupt path runs for a combiner SPI;
//! [`SysmmuSet::domain_off`] and [`SysmmuSet::domain_on`] are what dom0's power-domain writes run
//! (a SysMMU loses its registers while its power domain is off and comes back bypassing).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use platform::exynos5250::combiner::{Combiner, CombinerIrq};
use platform::exynos5250::sysmmu_pt::Lv2TableAllocator;
use platform::{Mmio, PhysMem};

use super::driver::Sysmmu;
use super::regs::{CTRL_BLOCK, MMU_CTRL};
use super::shadow::ShadowTable;
use crate::dt::Region;

/// One SysMMU to take: its DT path, its fault input on the combiner (from its `interrupts`
/// under the combiner), the register base of its power domain (from its `power-domains`), and
/// its registers.
pub struct SysmmuSpec<M> {
    pub path: String,
    pub irq: Option<CombinerIrq>,
    pub domain: Option<u64>,
    pub regs: M,
}

/// What bring-up (or a power-up of its domain) did with one SysMMU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Translating through dom0's shadow table; its fault input is enabled on the combiner.
    Translating { version: String },
    /// Probe or enable failed: the SysMMU is left blocked (its master's DMA stalls, it never
    /// bypasses). One whose power domain was off is probed again when the domain comes on.
    Blocked { why: String },
    /// After its domain came on, the SysMMU could be neither programmed nor blocked: its
    /// registers do not answer (CTRL does not read back BLOCK; its clocks gated, say), so it may
    /// bypass once they do. Its master must not run: the domain goes off again.
    Unresponsive { why: String },
}

/// A fault taken: which SysMMU, what the driver decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultReport {
    pub path: String,
    pub line: String,
}

/// Faults a SysMMU may take with its master resumed each time; the next one leaves the master
/// stopped (a device that keeps faulting, such as a display controller still scanning out a
/// buffer firmware left outside dom0's memory, would otherwise keep a CPU in the handler).
pub const FAULTS_BEFORE_STOP: u32 = 16;

/// A SysMMU translating through the shadow table.
struct Attached {
    path: String,
    irq: Option<CombinerIrq>,
    domain: Option<u64>,
    /// Faults taken since it was attached.
    faults: u32,
}

/// A SysMMU of the set that is not translating: left blocked, or its power domain is off.
struct Idle<M> {
    path: String,
    irq: Option<CombinerIrq>,
    domain: Option<u64>,
    regs: M,
}

/// The hypervisor's SysMMUs, their shared shadow of dom0's memory and the combiner.
pub struct SysmmuSet<P: PhysMem, A: Lv2TableAllocator, M: Mmio, C: Mmio> {
    shadow: Option<ShadowTable<P, A, M>>,
    /// The attached SysMMUs, in the shadow table's order.
    attached: Vec<Attached>,
    idle: Vec<Idle<M>>,
    combiner: Combiner<C>,
    faults: u64,
}

impl<P: PhysMem, A: Lv2TableAllocator, M: Mmio, C: Mmio> SysmmuSet<P, A, M, C> {
    /// Probe every SysMMU of `specs`, build one shadow table at `pgd_pa` mapping dom0's RAM
    /// `ram` (plus `readonly` ranges) IOVA = PA, then point each SysMMU at it and enable its
    /// fault input on the combiner. Memory is mapped before any SysMMU is enabled, so no master
    /// sees a half-built table. Returns the set and each SysMMU's outcome, in `specs`' order.
    pub fn bring_up(mem: P, alloc: A, pgd_pa: u64, combiner: C, specs: Vec<SysmmuSpec<M>>, ram: &[Region], readonly: &[Region]) -> (Self, Vec<(String, Outcome)>) {
        let n = specs.len();
        let mut slots: Vec<Option<(String, Outcome)>> = (0..n).map(|_| None).collect();
        let mut set = SysmmuSet { shadow: None, attached: Vec::new(), idle: Vec::new(), combiner: Combiner::new(combiner), faults: 0 };
        let mut probed = Vec::new();
        for (idx, s) in specs.into_iter().enumerate() {
            match Sysmmu::try_probe(s.regs) {
                Ok(m) => probed.push((idx, s.path, s.irq, s.domain, m)),
                Err((e, regs)) => {
                    slots[idx] = Some((s.path.clone(), Outcome::Blocked { why: format!("{e}") }));
                    set.idle.push(Idle { path: s.path, irq: s.irq, domain: s.domain, regs });
                }
            }
        }
        let finish = |slots: Vec<Option<(String, Outcome)>>| slots.into_iter().flatten().collect::<Vec<_>>();
        let Some(format) = probed.first().map(|(_, _, _, _, m)| m.pt_format()) else { return (set, finish(slots)) };
        let built = ShadowTable::new(mem, alloc, format, pgd_pa).map_err(|e| format!("no shadow table: {e}")).and_then(|mut shadow| {
            for (r, writable) in ram.iter().map(|r| (r, true)).chain(readonly.iter().map(|r| (r, false))) {
                shadow.map(r.base, r.base, r.size, writable).map_err(|e| format!("mapping {r}: {e}"))?;
            }
            Ok(shadow)
        });
        let mut shadow = match built {
            Ok(s) => s,
            Err(why) => {
                for (idx, path, irq, domain, m) in probed {
                    m.isolate();
                    slots[idx] = Some((path.clone(), Outcome::Blocked { why: why.clone() }));
                    set.idle.push(Idle { path, irq, domain, regs: m.into_regs() });
                }
                return (set, finish(slots));
            }
        };
        for (idx, path, irq, domain, m) in probed {
            let version = format!("{}", m.version());
            slots[idx] = Some(match shadow.attach(m) {
                Ok(()) => {
                    if let Some(irq) = irq {
                        set.combiner.enable(irq);
                    }
                    set.attached.push(Attached { path: path.clone(), irq, domain, faults: 0 });
                    (path, Outcome::Translating { version })
                }
                Err((e, m)) => {
                    m.isolate();
                    set.idle.push(Idle { path: path.clone(), irq, domain, regs: m.into_regs() });
                    (path, Outcome::Blocked { why: format!("{e}") })
                }
            });
        }
        set.shadow = Some(shadow);
        (set, finish(slots))
    }

    /// The SysMMUs translating, by path.
    pub fn attached(&self) -> impl Iterator<Item = &str> {
        self.attached.iter().map(|a| a.path.as_str())
    }

    /// The shadow table, once built.
    pub fn shadow(&self) -> Option<&ShadowTable<P, A, M>> {
        self.shadow.as_ref()
    }

    /// Bit g set: combiner group g (GIC SPI g) carries the fault input of a SysMMU translating.
    pub fn fault_spis(&self) -> u32 {
        self.attached.iter().filter_map(|a| a.irq).fold(0, |m, i| m | 1 << i.spi())
    }

    /// The power domain whose registers are at `domain` is going off: its SysMMUs lose their
    /// registers, so they leave the shadow table (no flush or fault handling reaches a block
    /// without power) and their fault inputs are disabled on the combiner (which keeps power).
    /// Their registers are not touched. Returns their paths.
    pub fn domain_off(&mut self, domain: u64) -> Vec<String> {
        let mut out = Vec::new();
        let Some(shadow) = self.shadow.as_mut() else { return out };
        for i in (0..self.attached.len()).rev() {
            if self.attached[i].domain != Some(domain) {
                continue;
            }
            let a = self.attached.remove(i);
            let Some(mmu) = shadow.forget(i) else { continue };
            if let Some(irq) = a.irq {
                self.combiner.disable(irq);
            }
            out.push(a.path.clone());
            self.idle.push(Idle { path: a.path, irq: a.irq, domain: a.domain, regs: mmu.into_regs() });
        }
        out.reverse();
        out
    }

    /// The power domain whose registers are at `domain` reports on: each of its SysMMUs came
    /// out of reset disabled, i.e. bypassing. Before its master can run, every one is probed,
    /// pointed at the shadow table and enabled, its fault input enabled on the combiner; one
    /// that cannot be is left blocked (probed again at the next power-up), and one that ends
    /// neither translating nor blocked is [`Outcome::Unresponsive`]. Those still attached (the
    /// domain did not go off: every power-off reaches [`SysmmuSet::domain_off`] first) kept
    /// their registers and are left as they are.
    pub fn domain_on(&mut self, domain: u64) -> Vec<(String, Outcome)> {
        // A SysMMU that was not programmed must at least read back blocked.
        let held = |regs: &M, why: String| {
            let ctrl = regs.read32(MMU_CTRL);
            if ctrl == CTRL_BLOCK {
                Outcome::Blocked { why }
            } else {
                Outcome::Unresponsive { why: format!("{why}; CTRL reads {ctrl:#x}, not BLOCK") }
            }
        };
        let mut out = Vec::new();
        let (waking, rest): (Vec<_>, Vec<_>) = core::mem::take(&mut self.idle).into_iter().partition(|i| i.domain == Some(domain));
        self.idle = rest;
        for Idle { path, irq, domain, regs } in waking {
            let m = match Sysmmu::try_probe(regs) {
                Ok(m) => m,
                Err((e, regs)) => {
                    out.push((path.clone(), held(&regs, format!("{e}"))));
                    self.idle.push(Idle { path, irq, domain, regs });
                    continue;
                }
            };
            let version = format!("{}", m.version());
            let Some(shadow) = self.shadow.as_mut() else {
                m.isolate();
                out.push((path.clone(), held(m.regs(), "no shadow table (no SysMMU could be driven at boot)".into())));
                self.idle.push(Idle { path, irq, domain, regs: m.into_regs() });
                continue;
            };
            match shadow.attach(m) {
                Ok(()) => {
                    if let Some(irq) = irq {
                        self.combiner.enable(irq);
                    }
                    out.push((path.clone(), Outcome::Translating { version }));
                    self.attached.push(Attached { path, irq, domain, faults: 0 });
                }
                Err((e, m)) => {
                    m.isolate();
                    out.push((path.clone(), held(m.regs(), format!("{e}"))));
                    self.idle.push(Idle { path, irq, domain, regs: m.into_regs() });
                }
            }
        }
        out
    }

    /// Follow a change of dom0's p2m (`TlbOps::p2m_changed`): `[ipa, ipa + size)` now maps RAM
    /// at `now` = (PA, writable), or nothing a device may reach. The shadow never grants more
    /// than the p2m: on an error the range is left unmapped.
    pub fn mirror(&mut self, ipa: u64, size: u64, now: Option<(u64, bool)>) -> Result<(), String> {
        let Some(shadow) = self.shadow.as_mut() else { return Ok(()) };
        let done = match now {
            Some((pa, writable)) => shadow.map(ipa, pa, size, writable),
            None => shadow.unmap(ipa, size),
        };
        done.map_err(|e| {
            let _ = shadow.unmap(ipa, size);
            format!("SysMMU shadow of {ipa:#x}+{size:#x}: {e}")
        })
    }

    /// Faults taken so far.
    pub fn faults(&self) -> u64 {
        self.faults
    }

    /// Whether `spi` (a GIC SPI number, INTID - 32) is a combiner group one of these SysMMUs
    /// reports faults on.
    pub fn owns_spi(&self, spi: u32) -> bool {
        self.attached.iter().any(|a| a.irq.is_some_and(|i| i.spi() == spi))
    }

    /// Take the faults behind combiner SPI `spi`: every pending input that is one of these
    /// SysMMUs is decoded, cleared and the master resumed (the faulting access was refused),
    /// up to [`FAULTS_BEFORE_STOP`] times per SysMMU; after that its master stays stopped. One
    /// report per fault. A pending input that is not a SysMMU of this set is left alone.
    pub fn handle_spi(&mut self, spi: u32) -> Vec<FaultReport> {
        let mut out = Vec::new();
        let Some(shadow) = &self.shadow else { return out };
        let pending: Vec<CombinerIrq> = self.combiner.pending_for_spi(spi).collect();
        for input in pending {
            let Some(i) = self.attached.iter().position(|a| a.irq == Some(input)) else { continue };
            let a = &mut self.attached[i];
            let resume = a.faults + 1 < FAULTS_BEFORE_STOP;
            let line = match shadow.sysmmus()[i].handle_fault(resume) {
                Ok(f) => {
                    self.faults += 1;
                    a.faults += 1;
                    if resume {
                        format!("{f}; the access was refused, the master resumed")
                    } else {
                        format!("{f}; the access was refused; {FAULTS_BEFORE_STOP} faults: the master stays stopped")
                    }
                }
                Err(e) => format!("{e}"),
            };
            out.push(FaultReport { path: a.path.clone(), line });
        }
        out
    }
}

/// Level-2 tables from a bump pool starting at the PA it holds (host tests).
#[cfg(all(test, not(loom)))]
pub(crate) struct Pool(pub u64);

#[cfg(all(test, not(loom)))]
impl Lv2TableAllocator for Pool {
    fn alloc_lv2(&mut self) -> Option<u64> {
        self.0 += platform::exynos5250::sysmmu_pt::LV2_TABLE_SIZE as u64;
        Some(self.0 - platform::exynos5250::sysmmu_pt::LV2_TABLE_SIZE as u64)
    }
    fn free_lv2(&mut self, _pa: u64) {}
}

#[cfg(all(test, not(loom)))]
#[allow(clippy::single_range_in_vec_init)] // SimMem takes a list of RAM ranges; one here
mod tests {
    extern crate std;
    use super::*;
    use platform::exynos5250::SYSMMUS;
    use std::rc::Rc;
    use std::vec;
    use sysmmu_model::soc::CombinerModel;
    use sysmmu_model::{DmaError, ModelConfig, SimMem, SysmmuModel};

    const PGD: u64 = 0x4000_0000;
    const DOM0_RAM: Region = Region { base: 0x4200_0000, size: 16 << 20 };
    const RING: Region = Region { base: 0x47f0_0000, size: 1 << 20 };

    use super::Pool;

    type Set<'m> = SysmmuSet<&'m SimMem, Pool, &'m SysmmuModel, &'m CombinerModel<'m>>;

    /// The combiner with `model`'s fault line on `input`.
    fn wired(model: &SysmmuModel, input: CombinerIrq) -> CombinerModel<'_> {
        let mut c = CombinerModel::new();
        c.connect(input.group, input.bit, || model.irq_pending());
        c
    }

    /// Run `f` with one v3.3 SysMMU (the board's `name`, at `path`) brought up over dom0's RAM:
    /// its model, the combiner its fault line is wired to, the set and its fault input.
    fn with_one(name: &str, path: &str, f: impl FnOnce(&SimMem, &SysmmuModel, &CombinerModel<'_>, &mut Set<'_>, CombinerIrq)) {
        let mem = Rc::new(SimMem::new(&[0x4000_0000..0x4800_0000]));
        let model = SysmmuModel::new(ModelConfig::v3(3), mem.clone());
        let input = irq(name);
        let combiner = wired(&model, input);
        let specs = vec![SysmmuSpec { path: path.into(), irq: Some(input), domain: None, regs: &model }];
        let (mut set, _) = SysmmuSet::bring_up(&*mem, Pool(0x4010_0000), PGD, &combiner, specs, &[DOM0_RAM], &[]);
        f(&mem, &model, &combiner, &mut set, input)
    }

    fn irq(name: &str) -> CombinerIrq {
        let s = SYSMMUS.iter().find(|s| s.name == name).unwrap();
        CombinerIrq::new(s.combiner.0, s.combiner.1).unwrap()
    }

    #[test]
    fn bring_up_maps_dom0_and_takes_faults_through_the_combiner() {
        let mem = Rc::new(SimMem::new(&[0x4000_0000..0x4800_0000]));
        let g2d = SysmmuModel::new(ModelConfig::v3(3), mem.clone());
        let tv = SysmmuModel::new(ModelConfig::v3(3), mem.clone());
        // The FIMD's power domain is off: VERSION reads 0.
        let fimd = SysmmuModel::new(ModelConfig { version_override: Some(0), ..ModelConfig::v3(3) }, mem.clone());
        let (g2d_irq, tv_irq, fimd_irq) = (irq("sysmmu_g2d"), irq("sysmmu_tv"), irq("sysmmu_fimd1"));
        let dom0_line = std::cell::Cell::new(false);
        let mut combiner = CombinerModel::new();
        combiner.connect(g2d_irq.group, g2d_irq.bit, || g2d.irq_pending());
        combiner.connect(tv_irq.group, tv_irq.bit, || tv.irq_pending());
        combiner.connect(fimd_irq.group, fimd_irq.bit, || fimd.irq_pending());
        // A dom0 device's input in the g2d SysMMU's group.
        combiner.connect(g2d_irq.group, 0, || dom0_line.get());
        let specs = vec![
            SysmmuSpec { path: "/soc/sysmmu@10a60000".into(), irq: Some(g2d_irq), domain: None, regs: &g2d },
            SysmmuSpec { path: "/soc/sysmmu@14650000".into(), irq: Some(tv_irq), domain: None, regs: &tv },
            SysmmuSpec { path: "/soc/sysmmu@14640000".into(), irq: Some(fimd_irq), domain: None, regs: &fimd },
        ];
        let (mut set, outcomes) = SysmmuSet::bring_up(&*mem, Pool(0x4010_0000), PGD, &combiner, specs, &[DOM0_RAM], &[RING]);
        assert_eq!(outcomes[0], ("/soc/sysmmu@10a60000".into(), Outcome::Translating { version: "v3.3".into() }));
        assert_eq!(outcomes[1].1, Outcome::Translating { version: "v3.3".into() });
        assert!(matches!(&outcomes[2].1, Outcome::Blocked { why } if why.contains("VERSION")), "{:?}", outcomes[2]);
        assert!(fimd.is_blocked(), "a SysMMU that cannot be driven stalls its master (never bypasses)");
        assert_eq!(set.attached().collect::<Vec<_>>(), ["/soc/sysmmu@10a60000", "/soc/sysmmu@14650000"]);
        assert!(set.owns_spi(g2d_irq.spi()) && set.owns_spi(tv_irq.spi()) && !set.owns_spi(fimd_irq.spi()));
        assert_eq!(mem.stale_device_reads(), 0, "every table write cleaned before a walker read it");

        // dom0's memory translates 1:1 for both masters; the ring is read-only.
        assert_eq!(g2d.translate(0x4200_1000, true), Ok(0x4200_1000));
        assert_eq!(tv.translate(0x42ff_f000, false), Ok(0x42ff_f000));
        assert_eq!(tv.translate(RING.base as u32 + 0x40, false), Ok(RING.base + 0x40));
        assert_eq!(mem.stale_device_reads(), 0);

        // Outside dom0's memory: a fault, on the g2d SysMMU's combiner SPI.
        assert!(matches!(g2d.translate(0x4400_0000, true), Err(DmaError::Fault { .. })));
        assert!(combiner.spi_level(g2d_irq.spi()));
        let r = set.handle_spi(g2d_irq.spi());
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].path, "/soc/sysmmu@10a60000");
        assert!(r[0].line.contains("0x44000000"), "{}", r[0].line);
        assert!(!combiner.spi_level(g2d_irq.spi()) && !g2d.is_blocked(), "cleared and resumed");
        assert_eq!(g2d.translate(0x4200_2000, false), Ok(0x4200_2000));

        // A write into the ring: an access-protection fault, reported for the mixer's SysMMU.
        assert!(matches!(tv.translate(RING.base as u32, true), Err(DmaError::Fault { .. })));
        let r = set.handle_spi(tv_irq.spi());
        assert_eq!((r.len(), r[0].path.as_str()), (1, "/soc/sysmmu@14650000"));
        assert!(r[0].line.contains("write"), "{}", r[0].line);
        assert_eq!(set.faults(), 2);

        // A dom0 device's input in the same group is not the hypervisor's to take.
        Combiner::new(&combiner).enable(CombinerIrq::new(g2d_irq.group, 0).unwrap());
        dom0_line.set(true);
        assert!(set.handle_spi(g2d_irq.spi()).is_empty());
        assert_eq!(set.faults(), 2);
    }

    #[test]
    fn a_master_that_keeps_faulting_is_stopped() {
        with_one("sysmmu_fimd1", "/soc/sysmmu@14640000", |_, fimd, combiner, set, input| {
            // Scanning out a buffer firmware left outside dom0's memory.
            for n in 1..=FAULTS_BEFORE_STOP {
                assert!(matches!(fimd.translate(0x5000_0000, false), Err(DmaError::Fault { .. })));
                let r = set.handle_spi(input.spi());
                assert_eq!(r.len(), 1);
                assert_eq!(r[0].line.contains("stays stopped"), n == FAULTS_BEFORE_STOP, "{n}: {}", r[0].line);
            }
            assert!(fimd.is_blocked() && !combiner.spi_level(input.spi()), "stopped, and no interrupt storm");
            assert_eq!(fimd.translate(0x4200_0000, false), Err(DmaError::Stalled));
            assert!(set.handle_spi(input.spi()).is_empty());
        });
    }

    #[test]
    fn dom0_p2m_changes_are_followed() {
        use crate::mm::{S2Attr, Stage2, Stage2Config, TlbOps};
        with_one("sysmmu_g2d", "/soc/sysmmu@10a60000", |mem, g2d, _, set, input| {
            /// dom0's TLB operations, reaching the set as the arm32 HwTlb does.
            struct Follow<'s, 'm> {
                set: &'s mut Set<'m>,
            }
            impl TlbOps for Follow<'_, '_> {
                fn invalidate_ipa(&mut self, _: u16, _: u64) {}
                fn invalidate_vmid(&mut self, _: u16) {}
                fn sync(&mut self) {}
                fn p2m_changed(&mut self, vmid: u16, ipa: u64, size: u64, now: Option<(u64, bool)>) {
                    assert_eq!(vmid, 1);
                    self.set.mirror(ipa, size, now).unwrap();
                }
            }
            let mut tlb = Follow { set };
            // dom0's stage 2 (its tables in a memory of their own), as at boot.
            let p2m_mem = SimMem::new(&[0x4400_0000..0x4500_0000]);
            let mut frames = crate::mm::RegionAllocator::new();
            frames.add(0x4400_0000, 0x100_0000).unwrap();
            let mut s2 = Stage2::new(1, Stage2Config::DOMAIN, &mut frames, &p2m_mem).unwrap();
            s2.map(DOM0_RAM.base, DOM0_RAM.base, DOM0_RAM.size, S2Attr::RAM_RWX, &mut frames, &p2m_mem, &mut tlb).unwrap();
            // A balloon batch gives three pages back: the master loses them before the pages are reused.
            let out = [0x4210_0000, 0x4210_1000, 0x4210_2000];
            assert_eq!(s2.unmap_pages_if(&out, |_| true, &mut frames, &p2m_mem, &mut tlb), Ok(3));
            for ipa in out {
                assert!(matches!(g2d.translate(ipa as u32, false), Err(DmaError::Fault { .. })), "{ipa:#x}");
                assert_eq!(tlb.set.handle_spi(input.spi()).len(), 1);
            }
            assert_eq!(g2d.translate(0x4210_3000, false), Ok(0x4210_3000));
            // One page back, at another frame; a device window: not for the master.
            s2.map(0x4210_1000, 0x4300_0000, 0x1000, S2Attr::RAM_RW, &mut frames, &p2m_mem, &mut tlb).unwrap();
            s2.map(0x4210_2000, 0x1000_0000, 0x1000, S2Attr::DEVICE_RW, &mut frames, &p2m_mem, &mut tlb).unwrap();
            assert_eq!(g2d.translate(0x4210_1000, true), Ok(0x4300_0000));
            assert!(matches!(g2d.translate(0x4210_2000, false), Err(DmaError::Fault { .. })));
            assert_eq!(tlb.set.handle_spi(input.spi()).len(), 1);
            assert_eq!(mem.stale_device_reads(), 0);
        });
    }

    #[test]
    fn nothing_answering_builds_nothing() {
        let mem = Rc::new(SimMem::new(&[0x4000_0000..0x4800_0000]));
        let off = SysmmuModel::new(ModelConfig { version_override: Some(0), ..ModelConfig::v3(3) }, mem.clone());
        let combiner = CombinerModel::new();
        let specs = vec![SysmmuSpec { path: "/soc/sysmmu@13e80000".into(), irq: Some(irq("sysmmu_gsc0")), domain: None, regs: &off }];
        let (mut set, outcomes) = SysmmuSet::bring_up(&*mem, Pool(0x4010_0000), PGD, &combiner, specs, &[DOM0_RAM], &[]);
        assert!(matches!(outcomes[0].1, Outcome::Blocked { .. }));
        assert!(set.shadow().is_none() && set.attached().next().is_none());
        assert!(set.handle_spi(2).is_empty());
    }

    #[test]
    fn dom0_ram_the_table_format_cannot_hold_leaves_every_sysmmu_blocked() {
        let mem = Rc::new(SimMem::new(&[0x4000_0000..0x4800_0000]));
        let g2d = SysmmuModel::new(ModelConfig::v3(3), mem.clone());
        let combiner = CombinerModel::new();
        let specs = vec![SysmmuSpec { path: "/soc/sysmmu@10a60000".into(), irq: Some(irq("sysmmu_g2d")), domain: None, regs: &g2d }];
        let odd = Region { base: 0x4200_0800, size: 0x1000 };
        let (set, outcomes) = SysmmuSet::bring_up(&*mem, Pool(0x4010_0000), PGD, &combiner, specs, &[odd], &[]);
        assert!(matches!(&outcomes[0].1, Outcome::Blocked { why } if why.contains("mapping")), "{:?}", outcomes[0]);
        assert!(g2d.is_blocked());
        assert!(set.attached().next().is_none());
    }
}
