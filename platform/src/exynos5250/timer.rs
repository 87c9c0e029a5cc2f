//! Timers: the arch timer on the Exynos5250 only counts once the MCT's global free-running counter
//! runs, and firmware may leave CNTFRQ at 0 (it is writable only in Secure PL1).

use crate::hal::Mmio;

/// MCT global timer control register and its start bit.
pub const MCT_G_TCON: usize = 0x240;
pub const MCT_G_TCON_START: u32 = 1 << 8;
/// The arch timer's frequency on the Exynos5250 (also the DT's `clock-frequency`).
pub const CNTFRQ_HZ: u32 = 24_000_000;

/// Start the MCT global counter (G_TCON |= START), leaving the other bits alone.
pub fn mct_start<M: Mmio>(mct: &M) {
    let v = mct.read32(MCT_G_TCON);
    if v & MCT_G_TCON_START == 0 {
        mct.write32(MCT_G_TCON, v | MCT_G_TCON_START);
    }
}

/// The arch timer frequency to use: the DT's `clock-frequency` if given, else CNTFRQ if firmware
/// set it, else the Exynos5250's 24 MHz.
pub fn timer_frequency(cntfrq: u32, dt_clock_frequency: Option<u32>) -> u32 {
    match dt_clock_frequency {
        Some(f) if f != 0 => f,
        _ if cntfrq != 0 => cntfrq,
        _ => CNTFRQ_HZ,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exynos5250::testregs::Regs;

    #[test]
    fn mct_start_sets_only_the_start_bit_once() {
        let regs = Regs::default();
        regs.set(MCT_G_TCON, 0x3);
        mct_start(&&regs);
        assert_eq!(regs.get(MCT_G_TCON), 0x103);
        mct_start(&&regs);
        assert_eq!(regs.writes_to(MCT_G_TCON).len(), 1);
    }

    #[test]
    fn frequency_fallbacks() {
        assert_eq!(timer_frequency(0, None), 24_000_000);
        assert_eq!(timer_frequency(0, Some(24_000_000)), 24_000_000);
        assert_eq!(timer_frequency(62_500_000, None), 62_500_000);
        assert_eq!(timer_frequency(1, Some(0)), 1);
    }
}
