//! The Exynos5250's board code on the hardware: `crate::boot::exynos5250` and the SysMMU set
//! (`crate::iommu::exynos_sysmmu::set`) over the real register blocks. Only the register handles,
//! the heap-backed SysMMU tables, the interrupt hook and the power-domain hook (dom0's writes to
//! the PMU's power domains reaching the SysMMU set, `crate::domain::vpowerdomain`) are here; what
//! is done with them is the host-tested code.

use super::mem::DirectMem;
use super::mmu;
use crate::boot::exynos5250::{Blocks, Exynos5250};
use crate::contract::SysmmuStart;
use crate::domain::vpowerdomain::{DomainPower, PowerDomainFilter, PowerOff, POWER_ON_POLLS};
use crate::dt::Region;
use crate::iommu::exynos_sysmmu::set::{Outcome, SysmmuSet, SysmmuSpec};
use crate::iommu::exynos_sysmmu::{classify, regs::MMU_VERSION};
use crate::log;
use crate::sync::{Once, SpinMutex};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::alloc::Layout;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use platform::exynos5250::combiner::CombinerIrq;
use platform::exynos5250::sysmmu_pt::{Lv2TableAllocator, LV1_TABLE_SIZE, LV2_TABLE_SIZE};
use platform::{Mmio, RawMmio};

type Board = Exynos5250<RawMmio, RawMmio, RawMmio>;
type Sysmmus = SysmmuSet<DirectMem, HeapTables, RawMmio, RawMmio>;

static BOARD: Once<Board> = Once::new();
static SYSMMUS: SpinMutex<Option<Sysmmus>> = SpinMutex::new(None);
/// Bit g set: combiner group g (GIC SPI g) carries a fault input of a SysMMU the hypervisor drives.
static SYSMMU_SPIS: AtomicU32 = AtomicU32::new(0);
/// The SysMMU set exists (dom0's p2m changes then reach its shadow table).
static SYSMMUS_UP: AtomicBool = AtomicBool::new(false);

/// A register block of `r`, which must have a HYP address (the boot map keeps every GiB without
/// RAM as Device memory, and the Exynos5250's blocks lie below its RAM).
fn regs(what: &str, r: Region) -> Result<RawMmio, String> {
    let va = mmu::va_of(r.base, r.size).ok_or_else(|| format!("{what} at {r} is above 4 GiB"))?;
    // SAFETY: a register block the DT names, in a Device-memory GiB of the identity map; the
    // hypervisor is its only driver (dom0's DT no longer has the MCT; the PMU and SYSRAM words
    // touched are the reset and secondary-boot ones, which dom0 does not use under xenith), or
    // dom0's accesses to it trap and reach it only through the hypervisor (the combiner, the
    // power-domain page).
    Ok(unsafe { RawMmio::new(va) })
}

/// Take the board's blocks. Once, on the boot CPU.
pub fn init(blocks: &Blocks) -> Result<&'static Board, String> {
    let b = Exynos5250 {
        mct: regs("MCT", blocks.mct)?,
        pmu: regs("PMU", blocks.pmu)?,
        sysram: regs("SYSRAM", blocks.sysram)?,
        boot_addr_offset: blocks.boot_addr_offset,
    };
    Ok(BOARD.call_once(|| b))
}

pub fn get() -> Option<&'static Board> {
    BOARD.get()
}

/// Release secondary `cpu` to `entry_pa` through SYSRAM, woken by an SGI (CPU interface n is
/// CPU n on the Exynos5250 until that CPU reports its own).
pub fn release_secondary(b: &Board, cpu: usize, entry_pa: u32) -> Result<(), String> {
    let gic = super::gic_v2::get().ok_or("no GIC to send the wake-up SGI")?;
    b.release_secondary(cpu as u32, u64::from(entry_pa), &mut |c| {
        let mask = match super::gic_v2::cpu_mask(c as usize) {
            0 => 1u8 << c,
            m => m,
        };
        super::regs::dsb_ish();
        gic.send_sgi(super::gic::KICK_SGI, mask);
    })
    .map_err(|e| format!("{e}"))
}

/// Level-2 tables (1 KiB) and the level-1 table (16 KiB) of the SysMMUs' shadow table come from
/// the heap: the image and its heap are identity-mapped RAM, so an address is its PA.
pub struct HeapTables;

impl Lv2TableAllocator for HeapTables {
    fn alloc_lv2(&mut self) -> Option<u64> {
        let layout = Layout::from_size_align(LV2_TABLE_SIZE, LV2_TABLE_SIZE).ok()?;
        // SAFETY: a non-zero-sized layout.
        let p = unsafe { alloc::alloc::alloc_zeroed(layout) };
        (!p.is_null()).then_some(p as u64)
    }
    fn free_lv2(&mut self, pa: u64) {
        if let Ok(layout) = Layout::from_size_align(LV2_TABLE_SIZE, LV2_TABLE_SIZE) {
            // SAFETY: `pa` came from `alloc_lv2` (identity map: the pointer it returned).
            unsafe { alloc::alloc::dealloc(pa as usize as *mut u8, layout) };
        }
    }
}

/// Read a SysMMU's VERSION without changing it.
pub fn probe_sysmmu(base: u64) -> Result<String, String> {
    let r = regs("SysMMU", Region { base, size: 0x1000 })?;
    let raw = r.read32(MMU_VERSION);
    classify(raw).map(|(v, _)| format!("Exynos SysMMU {v}")).map_err(|e| format!("{e}"))
}

/// Bring the SysMMUs up over dom0's memory (see [`SysmmuSet::bring_up`]).
pub fn start_sysmmus(combiner: u64, sysmmus: &[SysmmuStart], ram: Region, readonly: &[Region]) -> Vec<Result<String, String>> {
    let fail = |why: String| sysmmus.iter().map(|_| Err(why.clone())).collect();
    let combiner = match regs("combiner", Region { base: combiner, size: 0x1000 }) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let mut specs = Vec::new();
    for s in sysmmus {
        match regs(&s.path, Region { base: s.base, size: 0x1000 }) {
            Ok(r) => specs.push(SysmmuSpec { path: s.path.clone(), irq: s.irq.and_then(|(g, b)| CombinerIrq::new(g, b).ok()), domain: s.power_domain, regs: r }),
            Err(e) => return fail(e),
        }
    }
    let Ok(layout) = Layout::from_size_align(LV1_TABLE_SIZE, LV1_TABLE_SIZE) else { return fail("level-1 table layout".into()) };
    // SAFETY: a non-zero-sized layout; the table lives as long as the SysMMUs walk it (for good).
    let pgd = unsafe { alloc::alloc::alloc_zeroed(layout) };
    if pgd.is_null() {
        return fail("no heap for the SysMMUs' level-1 table".into());
    }
    let (set, outcomes) = SysmmuSet::bring_up(DirectMem, HeapTables, pgd as u64, combiner, specs, &[ram], readonly);
    let spis = set.fault_spis();
    *SYSMMUS.lock() = Some(set);
    SYSMMUS_UP.store(true, Ordering::Release);
    SYSMMU_SPIS.store(spis, Ordering::Release);
    outcomes
        .into_iter()
        .map(|(_, o)| match o {
            Outcome::Translating { version } => Ok(format!("Exynos SysMMU {version}")),
            Outcome::Blocked { why } | Outcome::Unresponsive { why } => Err(why),
        })
        .collect()
}

/// dom0's view of the combiner at `blocks.combiner`, without the inputs `kept` (group, bit).
pub fn combiner_filter(blocks: &Blocks, kept: &[(u32, u32)]) -> Result<crate::domain::vcombiner::CombinerFilter<RawMmio>, String> {
    let r = regs("combiner", blocks.combiner)?;
    Ok(crate::domain::vcombiner::CombinerFilter::new(r, kept.iter().filter_map(|&(g, b)| CombinerIrq::new(g, b).ok())))
}

/// The hypervisor's SysMMUs, followed through dom0's power-domain writes.
pub struct LiveSysmmus;

impl DomainPower for LiveSysmmus {
    fn powered_on(&mut self, domain: u64) -> bool {
        let outcomes = match SYSMMUS.lock().as_mut() {
            Some(set) => {
                let o = set.domain_on(domain);
                SYSMMU_SPIS.store(set.fault_spis(), Ordering::Release);
                o
            }
            None => return true,
        };
        let mut safe = true;
        for (path, o) in outcomes {
            match o {
                Outcome::Translating { .. } => {}
                Outcome::Blocked { why } => log!("{path}: power domain {domain:#x} on, SysMMU left blocked (its master's DMA stalls): {why}"),
                Outcome::Unresponsive { why } => {
                    safe = false;
                    log!("{path}: power domain {domain:#x} on, SysMMU does not answer: {why}");
                }
            }
        }
        safe
    }

    fn powering_off(&mut self, domain: u64, why: PowerOff) {
        match why {
            PowerOff::Dom0 => {}
            PowerOff::NotOnInTime => log!("power domain {domain:#x}: asked on, STATUS not on after {POWER_ON_POLLS} reads; turned off again (its SysMMUs could come up bypassing)"),
            PowerOff::SysmmuUnresponsive => log!("power domain {domain:#x}: turned off again (a SysMMU in it could bypass)"),
        }
        if let Some(set) = SYSMMUS.lock().as_mut() {
            set.domain_off(domain);
            SYSMMU_SPIS.store(set.fault_spis(), Ordering::Release);
        }
    }
}

/// dom0's views of the power-domain pages of `blocks`: (page, filter) for each.
pub fn power_domain_filters(blocks: &Blocks) -> Result<Vec<(u64, PowerDomainFilter<RawMmio, LiveSysmmus>)>, String> {
    let domains: Vec<u64> = blocks.power_domains.iter().map(|r| r.base).collect();
    let mut out = Vec::new();
    for page in blocks.power_domain_pages() {
        let r = regs("power domains", Region { base: page, size: 0x1000 })?;
        out.push((page, PowerDomainFilter::new(r, page, domains.iter().copied(), LiveSysmmus)));
    }
    Ok(out)
}

/// Follow a change of dom0's p2m in the SysMMUs' shadow table (nothing before they are up).
pub fn mirror(ipa: u64, size: u64, now: Option<(u64, bool)>) {
    if !SYSMMUS_UP.load(Ordering::Acquire) {
        return;
    }
    let failed = SYSMMUS.lock().as_mut().and_then(|set| set.mirror(ipa, size, now).err());
    if let Some(e) = failed {
        log!("{e}: left unmapped for the SysMMUs");
    }
}

/// A physical interrupt: a combiner SPI of the hypervisor's SysMMUs has its faults taken and
/// logged here (dom0 still gets the SPI for its own inputs of that group).
#[inline]
pub fn on_irq(intid: u32) {
    let Some(spi) = intid.checked_sub(32).filter(|&s| s < 32) else { return };
    if SYSMMU_SPIS.load(Ordering::Acquire) & (1 << spi) == 0 {
        return;
    }
    let reports = match SYSMMUS.lock().as_mut() {
        Some(set) => set.handle_spi(spi),
        None => return,
    };
    for r in reports {
        log!("{}: {}", r.path, r.line);
    }
}
