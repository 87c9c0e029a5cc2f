//! Samsung Exynos5250 (Chromebook Snow): the board description (memory, GIC-400, the interrupt
//! combiner, the SysMMU instances, the console UART, timers, SMP, reset, the RAM log ring) and the
//! SysMMU IO page-table format. Addresses come from the Snow's device tree (Debian 6.1 DTB);
//! xenith still parses the DT at boot, these constants are the board's known shape and defaults.

pub mod combiner;
pub mod logring;
pub mod smp;
pub mod sysmmu_pt;
pub mod timer;
pub mod uart;

#[cfg(test)]
mod testregs;

/// A physical MMIO or memory region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub base: u64,
    pub size: u64,
}

impl Region {
    pub const fn new(base: u64, size: u64) -> Self {
        Region { base, size }
    }
    pub const fn end(&self) -> u64 {
        self.base + self.size
    }
    pub const fn contains(&self, pa: u64) -> bool {
        self.base <= pa && pa < self.base + self.size
    }
}

/// RAM: 2 GiB at 1 GiB (no reserved-memory, no /memreserve/ in the DT).
pub const RAM: Region = Region::new(0x4000_0000, 0x8000_0000);

/// GIC-400 ("arm,gic-400", "arm,cortex-a15-gic"), GICv2 with virtualisation extensions.
pub const GICD: Region = Region::new(0x1048_1000, 0x1000);
pub const GICC: Region = Region::new(0x1048_2000, 0x2000);
pub const GICH: Region = Region::new(0x1048_4000, 0x2000);
pub const GICV: Region = Region::new(0x1048_6000, 0x2000);
/// The GIC maintenance interrupt (PPI).
pub const GIC_MAINTENANCE_PPI: u32 = 9;
/// Arch timer PPIs: secure phys, non-secure phys, virt, hyp.
pub const ARCH_TIMER_PPIS: [u32; 4] = [13, 14, 11, 10];

/// The interrupt combiner (32 groups -> GIC SPI 0..31).
pub const COMBINER: Region = Region::new(0x1044_0000, 0x1000);
/// Multi-core timer; its global counter must run for the arch timer to count.
pub const MCT: Region = Region::new(0x101c_0000, 0x800);
/// PMU / system controller (SWRESET, core power).
pub const PMU: Region = Region::new(0x1004_0000, 0x5000);
/// Clock controller.
pub const CMU: Region = Region::new(0x1001_0000, 0x30000);
pub const CHIPID: Region = Region::new(0x1000_0000, 0x1000);
pub const SYSREG: Region = Region::new(0x1005_0000, 0x1000);
/// On-chip SRAM; the secure-side boot flags at its base, the non-secure part at 0x0204F000.
pub const SYSRAM: Region = Region::new(0x0202_0000, 0x30000);
pub const SYSRAM_NS: Region = Region::new(0x0204_F000, 0x1000);
/// The PWM timer block Xen maps to dom0.
pub const PWM_TIMER: Region = Region::new(0x12dd_0000, 0x2000);

/// UART0..3 (samsung,exynos4210-uart) and their GIC SPIs.
pub const UARTS: [Region; 4] = [
    Region::new(0x12c0_0000, 0x100),
    Region::new(0x12c1_0000, 0x100),
    Region::new(0x12c2_0000, 0x100),
    Region::new(0x12c3_0000, 0x100),
];
pub const UART_SPIS: [u32; 4] = [51, 52, 53, 54];
/// The Snow's console (`stdout-path = "serial3:115200n8"`); the Arndale uses UART2.
pub const SNOW_CONSOLE_UART: usize = 3;
pub const CONSOLE_BAUD: u32 = 115_200;

/// Power domains a SysMMU can sit in (its registers are lost when the domain is off).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerDomain {
    Gsc,
    Mfc,
    G3d,
    Disp1,
    Mau,
}

impl PowerDomain {
    /// The domain's control block.
    pub const fn region(self) -> Region {
        let base = match self {
            PowerDomain::Gsc => 0x1004_4000,
            PowerDomain::Mfc => 0x1004_4040,
            PowerDomain::G3d => 0x1004_4060,
            PowerDomain::Disp1 => 0x1004_40a0,
            PowerDomain::Mau => 0x1004_40c0,
        };
        Region::new(base, 0x20)
    }
}

/// One SysMMU instance of the Exynos5250 (all "samsung,exynos-sysmmu", 4 KiB of registers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysmmuInstance {
    /// The DT label.
    pub name: &'static str,
    pub base: u64,
    /// Combiner group/bit of its fault interrupt (group g = GIC SPI g).
    pub combiner: (u32, u32),
    pub power_domain: Option<PowerDomain>,
    /// The DT node of the master that uses it, when the DT names one.
    pub master: Option<&'static str>,
}

impl SysmmuInstance {
    pub const fn regs(&self) -> Region {
        Region::new(self.base, 0x1000)
    }
}

const fn smmu(
    name: &'static str,
    base: u64,
    combiner: (u32, u32),
    power_domain: Option<PowerDomain>,
    master: Option<&'static str>,
) -> SysmmuInstance {
    SysmmuInstance { name, base, combiner, power_domain, master }
}

use PowerDomain::{Disp1, Gsc, Mfc};

/// The 23 SysMMUs of the Snow's DT.
pub const SYSMMUS: [SysmmuInstance; 23] = [
    smmu("sysmmu_g2d", 0x10a6_0000, (24, 5), None, Some("g2d@10850000")),
    smmu("sysmmu_mfc_r", 0x1120_0000, (6, 2), Some(Mfc), Some("codec@11000000")),
    smmu("sysmmu_mfc_l", 0x1121_0000, (8, 5), Some(Mfc), Some("codec@11000000")),
    smmu("sysmmu_rotator", 0x11d4_0000, (4, 0), None, Some("rotator@11c00000")),
    smmu("sysmmu_jpeg", 0x11f2_0000, (4, 2), Some(Gsc), None),
    smmu("sysmmu_fimc_isp", 0x1326_0000, (10, 6), None, None),
    smmu("sysmmu_fimc_drc", 0x1327_0000, (11, 6), None, None),
    smmu("sysmmu_fimc_fd", 0x132a_0000, (5, 0), None, None),
    smmu("sysmmu_fimc_scc", 0x1328_0000, (5, 2), None, None),
    smmu("sysmmu_fimc_scp", 0x1329_0000, (3, 6), None, None),
    smmu("sysmmu_fimc_mcuctl", 0x132b_0000, (5, 4), None, None),
    smmu("sysmmu_fimc_odc", 0x132c_0000, (11, 0), None, None),
    smmu("sysmmu_fimc_dis0", 0x132d_0000, (10, 4), None, None),
    smmu("sysmmu_fimc_dis1", 0x132e_0000, (9, 4), None, None),
    smmu("sysmmu_fimc_3dnr", 0x132f_0000, (5, 6), None, None),
    smmu("sysmmu_fimc_lite0", 0x13c4_0000, (3, 4), Some(Gsc), None),
    smmu("sysmmu_fimc_lite1", 0x13c5_0000, (24, 1), Some(Gsc), None),
    smmu("sysmmu_gsc0", 0x13e8_0000, (2, 0), Some(Gsc), Some("gsc@13e00000")),
    smmu("sysmmu_gsc1", 0x13e9_0000, (2, 2), Some(Gsc), Some("gsc@13e10000")),
    smmu("sysmmu_gsc2", 0x13ea_0000, (2, 4), Some(Gsc), Some("gsc@13e20000")),
    smmu("sysmmu_gsc3", 0x13eb_0000, (2, 6), Some(Gsc), Some("gsc@13e30000")),
    smmu("sysmmu_fimd1", 0x1464_0000, (3, 2), Some(Disp1), Some("fimd@14400000")),
    smmu("sysmmu_tv", 0x1465_0000, (7, 4), Some(Disp1), Some("mixer@14450000")),
];

/// The SysMMU whose registers start at `base`.
pub fn sysmmu_at(base: u64) -> Option<&'static SysmmuInstance> {
    SYSMMUS.iter().find(|s| s.base == base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn board_shape() {
        assert_eq!(RAM.end(), 0xC000_0000);
        assert!(RAM.contains(logring::SNOW_RING_BASE + logring::SNOW_RING_SIZE - 1));
        assert_eq!(UARTS[SNOW_CONSOLE_UART].base, 0x12c3_0000);
        assert_eq!(UART_SPIS[SNOW_CONSOLE_UART], 54);
        assert_eq!(SYSRAM.base, 0x0202_0000);
    }

    #[test]
    fn sysmmu_table_is_consistent() {
        for (i, s) in SYSMMUS.iter().enumerate() {
            assert!(combiner::CombinerIrq::new(s.combiner.0, s.combiner.1).is_ok(), "{}", s.name);
            assert_eq!(s.base % 0x1_0000, 0);
            assert!(SYSMMUS[i + 1..].iter().all(|o| o.base != s.base && o.name != s.name));
            assert_eq!(sysmmu_at(s.base), Some(s));
        }
        assert_eq!(SYSMMUS.iter().filter(|s| s.master.is_some()).count(), 10);
        let tv = sysmmu_at(0x1465_0000).unwrap();
        assert_eq!((tv.name, tv.power_domain, tv.master), ("sysmmu_tv", Some(PowerDomain::Disp1), Some("mixer@14450000")));
        assert_eq!(combiner::CombinerIrq::new(tv.combiner.0, tv.combiner.1).unwrap().spi(), 7);
    }
}
