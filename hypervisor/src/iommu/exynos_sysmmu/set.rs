//! The SysMMUs the hypervisor keeps on an Exynos5250, live: brought up over dom0's memory (one
//! shadow table, IOVA = IPA = PA since dom0 is direct-mapped) and their fault interrupts taken
//! through the interrupt combiner. [`SysmmuSet::bring_up`] is what the boot path runs once dom0's
//! stage 2 is built; [`SysmmuSet::handle_spi`] is what the interrupt path runs for a combiner SPI.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use platform::exynos5250::combiner::{Combiner, CombinerIrq};
use platform::exynos5250::sysmmu_pt::Lv2TableAllocator;
use platform::{Mmio, PhysMem};

use super::driver::Sysmmu;
use super::shadow::ShadowTable;
use crate::dt::Region;

/// One SysMMU to take: its DT path, its fault input on the combiner (from its `interrupts`
/// under the combiner), and its registers.
pub struct SysmmuSpec<M> {
    pub path: String,
    pub irq: Option<CombinerIrq>,
    pub regs: M,
}

/// What bring-up did with one SysMMU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Translating through dom0's shadow table; its fault input is enabled on the combiner.
    Translating { version: String },
    /// Probe or enable failed: the SysMMU is left blocked (its master's DMA stalls, it never
    /// bypasses).
    Blocked { why: String },
}

/// A fault taken: which SysMMU, what the driver decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultReport {
    pub path: String,
    pub line: String,
}

/// The hypervisor's SysMMUs, their shared shadow of dom0's memory and the combiner.
pub struct SysmmuSet<P: PhysMem, A: Lv2TableAllocator, M: Mmio, C: Mmio> {
    shadow: Option<ShadowTable<P, A, M>>,
    /// (path, fault input) of each attached SysMMU, in the shadow table's order.
    attached: Vec<(String, Option<CombinerIrq>)>,
    combiner: Combiner<C>,
    faults: u64,
}

impl<P: PhysMem, A: Lv2TableAllocator, M: Mmio, C: Mmio> SysmmuSet<P, A, M, C> {
    /// Probe every SysMMU of `specs`, build one shadow table at `pgd_pa` mapping dom0's RAM
    /// `ram` (plus `readonly` ranges) IOVA = PA, then point each SysMMU at it and enable its
    /// fault input on the combiner. Memory is mapped before any SysMMU is enabled, so no master
    /// sees a half-built table. Returns the set and each SysMMU's outcome, in `specs`' order.
    pub fn bring_up(mem: P, alloc: A, pgd_pa: u64, combiner: C, specs: Vec<SysmmuSpec<M>>, ram: &[Region], readonly: &[Region]) -> (Self, Vec<(String, Outcome)>) {
        let mut outcomes = Vec::new();
        let mut probed = Vec::new();
        for s in specs {
            match Sysmmu::probe(s.regs) {
                Ok(m) => probed.push((s.path, s.irq, m)),
                Err(e) => outcomes.push((s.path, Outcome::Blocked { why: format!("{e}") })),
            }
        }
        let mut set = SysmmuSet { shadow: None, attached: Vec::new(), combiner: Combiner::new(combiner), faults: 0 };
        let Some(format) = probed.first().map(|(_, _, m)| m.pt_format()) else { return (set, outcomes) };
        let mut shadow = match ShadowTable::new(mem, alloc, format, pgd_pa) {
            Ok(s) => s,
            Err(e) => {
                for (path, _, m) in probed {
                    m.isolate();
                    outcomes.push((path, Outcome::Blocked { why: format!("no shadow table: {e}") }));
                }
                return (set, outcomes);
            }
        };
        let mut mapped = Ok(());
        for (r, writable) in ram.iter().map(|r| (r, true)).chain(readonly.iter().map(|r| (r, false))) {
            mapped = mapped.and_then(|()| shadow.map(r.base, r.base, r.size, writable).map_err(|e| format!("mapping {r}: {e}")));
        }
        if let Err(why) = mapped {
            for (path, _, m) in probed {
                m.isolate();
                outcomes.push((path, Outcome::Blocked { why: why.clone() }));
            }
            return (set, outcomes);
        }
        for (path, irq, m) in probed {
            let version = format!("{}", m.version());
            match shadow.attach(m) {
                Ok(()) => {
                    if let Some(irq) = irq {
                        set.combiner.enable(irq);
                    }
                    set.attached.push((path.clone(), irq));
                    outcomes.push((path, Outcome::Translating { version }));
                }
                Err((e, m)) => {
                    m.isolate();
                    outcomes.push((path, Outcome::Blocked { why: format!("{e}") }));
                }
            }
        }
        set.shadow = Some(shadow);
        (set, outcomes)
    }

    /// The SysMMUs translating, by path.
    pub fn attached(&self) -> impl Iterator<Item = &str> {
        self.attached.iter().map(|(p, _)| p.as_str())
    }

    /// The shadow table, once built.
    pub fn shadow(&self) -> Option<&ShadowTable<P, A, M>> {
        self.shadow.as_ref()
    }

    /// Faults taken so far.
    pub fn faults(&self) -> u64 {
        self.faults
    }

    /// Whether `spi` (a GIC SPI number, INTID - 32) is a combiner group one of these SysMMUs
    /// reports faults on.
    pub fn owns_spi(&self, spi: u32) -> bool {
        self.attached.iter().any(|(_, irq)| irq.is_some_and(|i| i.spi() == spi))
    }

    /// Take the faults behind combiner SPI `spi`: every pending input that is one of these
    /// SysMMUs is decoded, cleared and the master resumed (the faulting access was refused);
    /// one report per fault. A pending input that is not a SysMMU of this set is left alone.
    pub fn handle_spi(&mut self, spi: u32) -> Vec<FaultReport> {
        let mut out = Vec::new();
        let Some(shadow) = &self.shadow else { return out };
        let pending: Vec<CombinerIrq> = self.combiner.pending_for_spi(spi).collect();
        for input in pending {
            let Some(i) = self.attached.iter().position(|(_, irq)| *irq == Some(input)) else { continue };
            let path = self.attached[i].0.clone();
            let line = match shadow.sysmmus()[i].handle_fault(true) {
                Ok(f) => {
                    self.faults += 1;
                    format!("{f}; the access was refused, the master resumed")
                }
                Err(e) => format!("{e}"),
            };
            out.push(FaultReport { path, line });
        }
        out
    }
}
