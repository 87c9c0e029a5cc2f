//! Timers: the arch timer on the Exynos5250 only counts once the MCT's global free-running counter
//! runs, and firmware may leave CNTFRQ at 0 (it is writable only in Secure PL1).
//!
//! MCT writes cross into the timer's clock domain: a write to G_TCON lands some timer cycles
//! later, and the MCT then sets G_TCON's bit in G_WSTAT, which software clears by writing it
//! back (as Linux's exynos_mct driver does for every such register).

use crate::hal::Mmio;

/// MCT global timer control register and its start bit.
pub const MCT_G_TCON: usize = 0x240;
pub const MCT_G_TCON_START: u32 = 1 << 8;
/// MCT global write-status register and G_TCON's bit in it (write 1 to clear).
pub const MCT_G_WSTAT: usize = 0x24C;
pub const MCT_G_WSTAT_TCON: u32 = 1 << 16;
/// The arch timer's frequency on the Exynos5250 (also the DT's `clock-frequency`).
pub const CNTFRQ_HZ: u32 = 24_000_000;

/// Polls of G_WSTAT before a write is declared lost (a dead MCT must not hang the boot).
const WSTAT_SPINS: u32 = 100_000;

/// The MCT never acknowledged the write to G_TCON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MctNotResponding;

impl core::fmt::Display for MctNotResponding {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "the MCT did not acknowledge the G_TCON write (G_WSTAT never set): the arch timer may not count")
    }
}

/// Start the MCT global counter (G_TCON |= START, the other bits left alone), wait until the
/// write has landed and clear its write status. Nothing is written when it runs already.
pub fn mct_start<M: Mmio>(mct: &M) -> Result<(), MctNotResponding> {
    let v = mct.read32(MCT_G_TCON);
    if v & MCT_G_TCON_START != 0 {
        return Ok(());
    }
    mct.write32(MCT_G_TCON, v | MCT_G_TCON_START);
    for _ in 0..WSTAT_SPINS {
        if mct.read32(MCT_G_WSTAT) & MCT_G_WSTAT_TCON != 0 {
            mct.write32(MCT_G_WSTAT, MCT_G_WSTAT_TCON);
            return Ok(());
        }
    }
    Err(MctNotResponding)
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

    #[test]
    fn frequency_fallbacks() {
        assert_eq!(timer_frequency(0, None), 24_000_000);
        assert_eq!(timer_frequency(0, Some(24_000_000)), 24_000_000);
        assert_eq!(timer_frequency(62_500_000, None), 62_500_000);
        assert_eq!(timer_frequency(1, Some(0)), 1);
    }
}
