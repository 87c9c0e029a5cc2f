//! Register-level models of the Exynos5250 blocks the board code touches to start and stop CPUs:
//! the PMU (software reset, per-core power), SYSRAM and a secondary Cortex-A15 waiting in the boot
//! ROM, and the interrupt combiner (samsung,exynos4210-combiner).
//!
//! Modelled behaviour:
//! - PMU SWRESET (0x400): writing a value with bit 0 set resets the SoC; other values do nothing.
//!   ARM_CORE<n>_CONFIGURATION (0x2000 + 0x80 n) bits [1:0] = 3 power the core on, 0 off; its
//!   STATUS (+0x4) follows `power_ticks` accesses later.
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
use std::cell::RefCell;
use std::collections::BTreeMap;

pub const PMU_SWRESET: usize = 0x400;
pub const fn pmu_core_config(core: usize) -> usize {
    0x2000 + 0x80 * core
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
    }
}

impl Default for PmuModel {
    fn default() -> Self {
        Self::new()
    }
}

impl Mmio for &PmuModel {
    fn read32(&self, off: usize) -> u32 {
        let mut st = self.st.borrow_mut();
        PmuModel::tick(&mut st);
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
