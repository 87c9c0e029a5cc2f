//! Secondary-CPU bring-up and reset on the Exynos5250. There is no PSCI: a secondary core spins in
//! the boot ROM until it finds its entry point in SYSRAM (0x02020000 on the 5250, without secure
//! firmware) and is woken by an SGI. Reset is the PMU's SWRESET.

use crate::hal::Mmio;

/// Offset in the SYSRAM block (at [`super::SYSRAM_BASE`]) of the secondary entry address.
pub const SYSRAM_BOOT_ADDR: usize = 0x0;
/// With secure firmware the address goes to the non-secure SYSRAM at this offset instead.
pub const SYSRAM_NS_BOOT_ADDR: usize = 0x1c;
/// PMU software reset register; writing 1 resets the SoC.
pub const PMU_SWRESET: usize = 0x400;
/// CPUs on the Exynos5250 (two Cortex-A15).
pub const NR_CPUS: u32 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmpError {
    /// Not a secondary CPU of this SoC.
    NoSuchCpu { cpu: u32 },
    /// The entry point is 0 (the boot ROM's "keep waiting") or not word aligned, or above 4 GiB.
    BadEntry { entry_pa: u64 },
}

impl core::fmt::Display for SmpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SmpError::NoSuchCpu { cpu } => write!(f, "CPU {cpu} is not a secondary CPU of the Exynos5250"),
            SmpError::BadEntry { entry_pa } => write!(f, "secondary entry point {entry_pa:#x} is unusable"),
        }
    }
}

/// Release secondary `cpu` to `entry_pa`: write the entry into SYSRAM, then wake it with an SGI
/// through `send_sgi(cpu)` (which, on hardware, issues a DSB before writing GICD_SGIR).
pub fn boot_secondary<M: Mmio>(
    sysram: &M,
    secure_firmware: bool,
    cpu: u32,
    entry_pa: u64,
    send_sgi: &mut dyn FnMut(u32),
) -> Result<(), SmpError> {
    if cpu == 0 || cpu >= NR_CPUS {
        return Err(SmpError::NoSuchCpu { cpu });
    }
    if entry_pa == 0 || !entry_pa.is_multiple_of(4) || entry_pa >= 1 << 32 {
        return Err(SmpError::BadEntry { entry_pa });
    }
    let off = if secure_firmware { SYSRAM_NS_BOOT_ADDR } else { SYSRAM_BOOT_ADDR };
    sysram.write32(off, entry_pa as u32);
    send_sgi(cpu);
    Ok(())
}

/// Reset the SoC through the PMU.
pub fn reset<M: Mmio>(pmu: &M) {
    pmu.write32(PMU_SWRESET, 1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exynos5250::testregs::Regs;

    #[test]
    fn entry_written_before_the_sgi() {
        let sysram = Regs::default();
        let mut sent = std::vec::Vec::new();
        boot_secondary(&&sysram, false, 1, 0x4000_8000, &mut |c| {
            assert_eq!(sysram.get(SYSRAM_BOOT_ADDR), 0x4000_8000, "entry visible before the SGI");
            sent.push(c)
        })
        .unwrap();
        assert_eq!(sent, std::vec![1]);
        boot_secondary(&&sysram, true, 1, 0x4000_9000, &mut |_| {}).unwrap();
        assert_eq!(sysram.get(SYSRAM_NS_BOOT_ADDR), 0x4000_9000);
    }

    #[test]
    fn bad_requests_send_nothing() {
        let sysram = Regs::default();
        let mut sgi = |_| panic!("no SGI");
        assert_eq!(boot_secondary(&&sysram, false, 0, 0x4000_0000, &mut sgi), Err(SmpError::NoSuchCpu { cpu: 0 }));
        assert_eq!(boot_secondary(&&sysram, false, 2, 0x4000_0000, &mut sgi), Err(SmpError::NoSuchCpu { cpu: 2 }));
        assert!(boot_secondary(&&sysram, false, 1, 0, &mut sgi).is_err());
        assert!(boot_secondary(&&sysram, false, 1, 0x4000_0002, &mut sgi).is_err());
        assert!(boot_secondary(&&sysram, false, 1, 1 << 32, &mut sgi).is_err());
        assert!(sysram.log().is_empty());
    }

    #[test]
    fn reset_writes_swreset() {
        let pmu = Regs::default();
        reset(&&pmu);
        assert_eq!(pmu.log(), std::vec![(0x400, 1)]);
    }
}
