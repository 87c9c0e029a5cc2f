//! Register-level models of the Exynos5250 blocks the board code touches to start and stop CPUs:
//! the PMU (software reset, per-core power), SYSRAM and a secondary Cortex-A15 waiting in the boot
//! ROM, and the interrupt combiner (samsung,exynos4210-combiner).
//!
//! Modelled behaviour:
//! - PMU SWRESET (0x400): writing a value with bit 0 set resets the SoC; other values do nothing.
//!   ARM_CORE<n>_CONFIGURATION (0x2000 + 0x80 n) bits [1:0] = 3 power the core on, 0 off; its
//!   STATUS (+0x4) follows `power_ticks` accesses later.
//! - Power domains (samsung,exynos4210-pd, 0x20 each at PMU + 0x4000 + n * 0x20 on the Exynos5250):
//!   CONFIGURATION (+0x0) bits [2:0] = 7 power the domain on, 0 off; STATUS (+0x4) takes the
//!   configured field `power_ticks` accesses later (never, for a domain made stuck). The domain is
//!   on while STATUS reads 7. Blocks inside it see the domain through a [`PowerLine`]: a SysMMU
//!   model in a domain that is off reads as zero and ignores writes, its master does no DMA, and
//!   when the domain comes on again every register is back at its reset value (the SysMMU
//!   bypasses until it is programmed again).
//! - A secondary core in the boot ROM sleeps in WFE. On a wake-up event (an SGI to it, or SEV) it
//!   reads its boot address from SYSRAM (offset 0x0, or 0x1c in the non-secure SYSRAM page when
//!   secure firmware runs): 0 sends it back to sleep, anything else is where it jumps. A core that
//!   is powered off ignores events. What the core read is whatever SYSRAM held at the moment of
//!   the event, so a boot address written after the SGI is missed.
//! - Combiner: 32 groups of 8 inputs, four groups per 16-byte word: ENABLE_SET (+0x0, write 1s to
//!   enable; reads the enable mask), ENABLE_CLEAR (+0x4, write 1s to disable; reads the enable
//!   mask), RAW status (+0x8) and masked status (+0xC), bit (g % 4) * 8 + input. Group g drives
//!   GIC SPI g, high while any of its enabled inputs is high. Inputs are level lines read live
//!   from whatever the test connects (e.g. a SysMMU model's fault line).

use platform::Mmio;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

pub const PMU_SWRESET: usize = 0x400;
pub const fn pmu_core_config(core: usize) -> usize {
    0x2000 + 0x80 * core
}

/// The Exynos5250's power-domain registers start here in the PMU (the DT's
/// `samsung,exynos4210-pd` nodes: 0x10044000 = PMU 0x10040000 + 0x4000).
pub const PMU_POWER_DOMAINS: usize = 0x4000;
/// A power domain's LOCAL_PWR_CFG / STATUS field: all three bits set is on.
pub const PD_ON: u32 = 0x7;

/// What the blocks inside one power domain see of it: whether it is on, and how many times it
/// came on (a block whose registers were lost compares this with what it last saw).
#[derive(Debug, Default)]
pub struct PowerLine {
    on: Cell<bool>,
    power_ups: Cell<u64>,
}

impl PowerLine {
    /// A domain that is on (and was never cycled), for a block that is powered throughout.
    pub fn always_on() -> Rc<Self> {
        Rc::new(PowerLine { on: Cell::new(true), power_ups: Cell::new(0) })
    }
    pub fn is_on(&self) -> bool {
        self.on.get()
    }
    /// Times the domain went from off to on.
    pub fn power_ups(&self) -> u64 {
        self.power_ups.get()
    }
}

struct Domain {
    cfg: u32,
    status: u32,
    countdown: u32,
    stuck: bool,
    line: Rc<PowerLine>,
}

pub struct PmuModel {
    power_ticks: u32,
    st: RefCell<PmuState>,
}

#[derive(Default)]
struct PmuState {
    resets: u32,
    /// Per core: configured power (bits [1:0]), status, and accesses until the status follows.
    cores: [(u32, u32, u32); 2],
    /// Power domains by the offset of their CONFIGURATION register in the PMU.
    domains: BTreeMap<usize, Domain>,
    other: BTreeMap<usize, u32>,
}

impl PmuModel {
    /// Out of reset (or as the Snow's firmware leaves it): both cores powered on.
    pub fn new() -> Self {
        let m = PmuModel { power_ticks: 2, st: RefCell::new(PmuState::default()) };
        m.st.borrow_mut().cores = [(3, 3, 0), (3, 3, 0)];
        m
    }

    /// Core `n` is powered off (e.g. after a hot-unplug).
    pub fn with_core_off(self, n: usize) -> Self {
        self.st.borrow_mut().cores[n] = (0, 0, 0);
        self
    }

    /// A power domain whose registers are at PMU offset `off`, on or off.
    pub fn with_domain(self, off: usize, on: bool) -> Self {
        let v = if on { PD_ON } else { 0 };
        let line = Rc::new(PowerLine { on: Cell::new(on), power_ups: Cell::new(0) });
        self.st.borrow_mut().domains.insert(off, Domain { cfg: v, status: v, countdown: 0, stuck: false, line });
        self
    }

    /// The domain at `off` never reports a new state (its STATUS stays where it is).
    pub fn with_stuck_domain(self, off: usize) -> Self {
        if let Some(d) = self.st.borrow_mut().domains.get_mut(&off) {
            d.stuck = true;
        }
        self
    }

    /// What the blocks inside the domain at `off` see of it.
    pub fn domain_line(&self, off: usize) -> Rc<PowerLine> {
        self.st.borrow().domains.get(&off).map(|d| d.line.clone()).expect("no such power domain in the model")
    }

    /// The domain at `off` is on (its STATUS reads 7).
    pub fn domain_on(&self, off: usize) -> bool {
        self.st.borrow().domains.get(&off).is_some_and(|d| d.status & PD_ON == PD_ON)
    }

    /// A register window of the PMU starting at `base` (e.g. the power-domain page), as a
    /// driver that maps only that page sees it.
    pub fn window(&self, base: usize) -> PmuWindow<'_> {
        PmuWindow { pmu: self, base }
    }

    /// How many times software reset the SoC.
    pub fn resets(&self) -> u32 {
        self.st.borrow().resets
    }

    pub fn core_powered(&self, n: usize) -> bool {
        self.st.borrow().cores.get(n).is_some_and(|c| c.1 & 3 == 3)
    }

    fn tick(st: &mut PmuState) {
        for c in st.cores.iter_mut() {
            if c.2 > 0 {
                c.2 -= 1;
                if c.2 == 0 {
                    c.1 = c.0;
                }
            }
        }
        for d in st.domains.values_mut() {
            if d.countdown > 0 && !d.stuck {
                d.countdown -= 1;
                if d.countdown == 0 {
                    d.status = d.cfg & PD_ON;
                    let on = d.status == PD_ON;
                    if on && !d.line.on.get() {
                        d.line.power_ups.set(d.line.power_ups.get() + 1);
                    }
                    d.line.on.set(on);
                }
            }
        }
    }
}

/// A window of the PMU's registers (see [`PmuModel::window`]).
#[derive(Clone, Copy)]
pub struct PmuWindow<'a> {
    pmu: &'a PmuModel,
    base: usize,
}

impl Mmio for PmuWindow<'_> {
    fn read32(&self, off: usize) -> u32 {
        self.pmu.read32(self.base + off)
    }
    fn write32(&self, off: usize, v: u32) {
        self.pmu.write32(self.base + off, v)
    }
}

impl Default for PmuModel {
    fn default() -> Self {
        Self::new()
    }
}

impl Mmio for &PmuModel {
    fn read32(&self, off: usize) -> u32 {
        (**self).read32(off)
    }
    fn write32(&self, off: usize, v: u32) {
        (**self).write32(off, v)
    }
}

impl Mmio for PmuModel {
    fn read32(&self, off: usize) -> u32 {
        let mut st = self.st.borrow_mut();
        PmuModel::tick(&mut st);
        if let Some(d) = st.domains.get(&(off & !0x1f)) {
            match off & 0x1f {
                0 => return d.cfg,
                4 => return d.status,
                _ => {}
            }
        }
        for n in 0..2 {
            if off == pmu_core_config(n) {
                return st.cores[n].0;
            }
            if off == pmu_core_config(n) + 4 {
                return st.cores[n].1;
            }
        }
        st.other.get(&off).copied().unwrap_or(0)
    }

    fn write32(&self, off: usize, v: u32) {
        let mut st = self.st.borrow_mut();
        PmuModel::tick(&mut st);
        if off == PMU_SWRESET {
            if v & 1 != 0 {
                st.resets += 1;
            }
            return;
        }
        if let Some(d) = st.domains.get_mut(&off) {
            d.cfg = v;
            d.countdown = self.power_ticks;
            return;
        }
        for n in 0..2 {
            if off == pmu_core_config(n) {
                st.cores[n].0 = v & 3;
                st.cores[n].2 = self.power_ticks;
                return;
            }
        }
        st.other.insert(off, v);
    }
}

/// A block of SRAM (words, little-endian, zero at power-on).
#[derive(Default)]
pub struct SramModel {
    words: RefCell<BTreeMap<usize, u32>>,
}

impl SramModel {
    pub fn word(&self, off: usize) -> u32 {
        self.words.borrow().get(&off).copied().unwrap_or(0)
    }
}

impl Mmio for &SramModel {
    fn read32(&self, off: usize) -> u32 {
        self.word(off)
    }
    fn write32(&self, off: usize, v: u32) {
        self.words.borrow_mut().insert(off, v);
    }
}

/// Where a secondary core is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoreState {
    /// In the boot ROM, waiting for an event.
    InBootRom,
    /// Left the ROM for this address.
    Jumped(u32),
}

/// Secondary core `n` waiting in the boot ROM, reading its boot address from `sysram` at
/// `boot_addr_offset` (0x0 without secure firmware, 0x1c in the non-secure page with it).
pub struct SecondaryCore<'a> {
    pub n: usize,
    sysram: &'a SramModel,
    boot_addr_offset: usize,
    pmu: &'a PmuModel,
    state: RefCell<CoreState>,
    wakeups: RefCell<u32>,
}

impl<'a> SecondaryCore<'a> {
    pub fn new(n: usize, sysram: &'a SramModel, boot_addr_offset: usize, pmu: &'a PmuModel) -> Self {
        SecondaryCore { n, sysram, boot_addr_offset, pmu, state: RefCell::new(CoreState::InBootRom), wakeups: RefCell::new(0) }
    }

    /// An SGI (or SEV) reaches the core.
    pub fn event(&self) {
        if !self.pmu.core_powered(self.n) || *self.state.borrow() != CoreState::InBootRom {
            return;
        }
        *self.wakeups.borrow_mut() += 1;
        let addr = self.sysram.word(self.boot_addr_offset);
        if addr != 0 {
            *self.state.borrow_mut() = CoreState::Jumped(addr);
        }
    }

    pub fn state(&self) -> CoreState {
        *self.state.borrow()
    }

    /// Events the core woke up for (powered and still in the ROM).
    pub fn wakeups(&self) -> u32 {
        *self.wakeups.borrow()
    }
}

pub const COMBINER_ENABLE_SET: usize = 0x0;
pub const COMBINER_ENABLE_CLEAR: usize = 0x4;
pub const COMBINER_RAW_STATUS: usize = 0x8;
pub const COMBINER_STATUS: usize = 0xC;

type Line<'a> = Box<dyn Fn() -> bool + 'a>;

/// The interrupt combiner with its inputs.
pub struct CombinerModel<'a> {
    enable: RefCell<[u32; 8]>,
    inputs: BTreeMap<(u32, u32), Line<'a>>,
}

impl<'a> CombinerModel<'a> {
    /// Every input disabled and unconnected (low).
    pub fn new() -> Self {
        CombinerModel { enable: RefCell::new([0; 8]), inputs: BTreeMap::new() }
    }

    /// Connect input `bit` of `group` to a level line.
    pub fn connect(&mut self, group: u32, bit: u32, line: impl Fn() -> bool + 'a) {
        assert!(group < 32 && bit < 8, "the combiner has 32 groups of 8 inputs");
        self.inputs.insert((group, bit), Box::new(line));
    }

    fn raw_word(&self, word: usize) -> u32 {
        let mut v = 0;
        for (&(g, b), line) in &self.inputs {
            if g as usize / 4 == word && line() {
                v |= 1 << ((g % 4) * 8 + b);
            }
        }
        v
    }

    /// The level of GIC SPI `group` (the combiner's output for that group).
    pub fn spi_level(&self, group: u32) -> bool {
        let w = group as usize / 4;
        let masked = self.raw_word(w) & self.enable.borrow()[w];
        (masked >> ((group % 4) * 8)) & 0xff != 0
    }
}

impl Default for CombinerModel<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl Mmio for &CombinerModel<'_> {
    fn read32(&self, off: usize) -> u32 {
        let w = off / 0x10;
        if w >= 8 {
            return 0;
        }
        match off % 0x10 {
            COMBINER_ENABLE_SET | COMBINER_ENABLE_CLEAR => self.enable.borrow()[w],
            COMBINER_RAW_STATUS => self.raw_word(w),
            _ => self.raw_word(w) & self.enable.borrow()[w],
        }
    }

    fn write32(&self, off: usize, v: u32) {
        let w = off / 0x10;
        if w >= 8 {
            return;
        }
        match off % 0x10 {
            COMBINER_ENABLE_SET => self.enable.borrow_mut()[w] |= v,
            COMBINER_ENABLE_CLEAR => self.enable.borrow_mut()[w] &= !v,
            _ => {}
        }
    }
}
