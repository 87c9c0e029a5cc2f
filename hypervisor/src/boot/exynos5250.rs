//! The Exynos5250 (Chromebook Snow, Arndale) board code the hypervisor runs when the host DT's root
//! is "samsung,exynos5250": which blocks it drives, read from the DT ([`Blocks::from_dt`]), and
//! what it does with them ([`Exynos5250`]): the console UART, the MCT start the arch timer needs,
//! secondary-CPU release through SYSRAM and an SGI (the board has no PSCI), reset through the PMU.
//! The RAM log ring's place is decided here too. Everything is generic over `Mmio`, so host tests
//! run this same code against the register-level models of these blocks (tests/models).

use crate::dt::{HostDt, Region};
use crate::dt::boot_info::BootInfo;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use platform::exynos5250::smp::{self, SmpError};
use platform::exynos5250::timer::{self, MctNotResponding};
use platform::exynos5250::uart::{SamsungUart, SCLK_UART_HZ, UCON};
use platform::exynos5250::logring::SNOW_RING_SIZE;
use platform::Mmio;

/// The blocks of an Exynos5250 the hypervisor drives, from the host DT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocks {
    /// The multi-core timer: started at boot, kept from dom0.
    pub mct: Region,
    /// The PMU (software reset, per-core power).
    pub pmu: Region,
    /// The SYSRAM page whose word at `boot_addr_offset` the boot ROM polls for a secondary's
    /// entry point: the secure page at offset 0 or, with secure firmware, the non-secure page
    /// at 0x1c.
    pub sysram: Region,
    pub boot_addr_offset: usize,
    pub secure_firmware: bool,
    /// The interrupt combiner the SysMMU fault lines go through.
    pub combiner: Region,
    /// The power domains (`samsung,exynos4210-pd`: CONFIGURATION, STATUS), in DT order. dom0
    /// keeps power management, but its accesses to their pages trap: a SysMMU the hypervisor
    /// keeps loses its registers while its domain is off.
    pub power_domains: Vec<Region>,
    /// Where the RAM log ring lives: the last MiB of the highest RAM bank below 4 GiB (survives
    /// a warm reset; reserved from the frame pool and described to dom0 as reserved memory).
    pub log_ring: Option<Region>,
}

/// The first enabled node compatible with `compat` and its first `reg` range.
fn block(dt: &HostDt, compat: &str, why: &str) -> Result<Region, String> {
    let n = dt
        .find_compatible(compat)
        .into_iter()
        .find(|&n| dt.is_enabled(n))
        .ok_or_else(|| format!("Exynos5250 device tree has no enabled \"{compat}\" node ({why})"))?;
    let reg = dt.reg(n).map_err(|e| format!("{}: {e}", dt.path(n)))?;
    reg.first().copied().filter(|r| r.size != 0).ok_or_else(|| format!("{}: no usable reg ({why})", dt.path(n)))
}

impl Blocks {
    /// Read the board's blocks from the host DT; a missing or unusable one is a clear error.
    pub fn from_dt(dt: &HostDt, info: &BootInfo) -> Result<Self, String> {
        let mct = block(dt, "samsung,exynos4210-mct", "its global counter drives the arch timer")?;
        let pmu = block(dt, "samsung,exynos5250-pmu", "software reset and CPU power")?;
        let combiner = block(dt, "samsung,exynos4210-combiner", "SysMMU fault interrupts")?;
        let secure_firmware = dt.find_compatible("samsung,secure-firmware").into_iter().any(|n| dt.is_enabled(n));
        let (compat, boot_addr_offset) = if secure_firmware {
            ("samsung,exynos4210-sysram-ns", smp::SYSRAM_NS_BOOT_ADDR)
        } else {
            ("samsung,exynos4210-sysram", smp::SYSRAM_BOOT_ADDR)
        };
        let sysram = block(dt, compat, "secondary CPUs find their entry point there")?;
        if (sysram.size as usize) < boot_addr_offset + 4 {
            return Err(format!("SYSRAM page {sysram} too small for the boot address at {boot_addr_offset:#x}"));
        }
        let power_domains = dt
            .find_compatible("samsung,exynos4210-pd")
            .into_iter()
            .filter(|&n| dt.is_enabled(n))
            .filter_map(|n| dt.reg(n).ok()?.first().copied())
            .filter(|r| r.size != 0)
            .collect();
        Ok(Blocks { mct, pmu, sysram, boot_addr_offset, secure_firmware, combiner, power_domains, log_ring: log_ring_place(info) })
    }

    /// The 4 KiB pages holding the power domains' registers, each once.
    pub fn power_domain_pages(&self) -> Vec<u64> {
        let mut pages: Vec<u64> = self.power_domains.iter().map(|r| r.base & !0xfff).collect();
        pages.dedup();
        pages
    }

    /// The pages of dom0's devices whose accesses trap to a filter: the combiner's and the
    /// power domains'.
    pub fn trapped_pages(&self) -> Vec<u64> {
        let mut pages = self.power_domain_pages();
        pages.push(self.combiner.base & !0xfff);
        pages.sort_unstable();
        pages.dedup();
        pages
    }
}

/// The last [`SNOW_RING_SIZE`] bytes of the highest-ending RAM bank that lies below 4 GiB (the
/// ARMv7 hypervisor's reach), if one is big enough to spare it.
pub fn log_ring_place(info: &BootInfo) -> Option<Region> {
    let bank = info
        .memory
        .iter()
        .filter(|b| b.base.saturating_add(b.size) <= 1 << 32 && b.size >= 16 * SNOW_RING_SIZE)
        .max_by_key(|b| b.base + b.size)?;
    Some(Region { base: bank.base + bank.size - SNOW_RING_SIZE, size: SNOW_RING_SIZE })
}

/// Why a secondary CPU could not be released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseError {
    Smp(SmpError),
    /// The PMU never reported the core powered on.
    CoreStaysOff { cpu: u32 },
}

impl core::fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ReleaseError::Smp(e) => write!(f, "{e}"),
            ReleaseError::CoreStaysOff { cpu } => write!(f, "the PMU did not power CPU {cpu} on (ARM_CORE{cpu}_STATUS stays off)"),
        }
    }
}

/// PMU per-core power configuration and status (ARM_CORE<n>_CONFIGURATION, _STATUS).
pub const fn pmu_core_config(cpu: u32) -> usize {
    0x2000 + 0x80 * cpu as usize
}
const PMU_CORE_ON: u32 = 0x3;
/// Polls of a core's power status before giving up.
const POWER_SPINS: u32 = 100_000;

/// The board's blocks behind their register handles (`sysram` is the page of [`Blocks::sysram`]).
pub struct Exynos5250<T: Mmio, P: Mmio, S: Mmio> {
    pub mct: T,
    pub pmu: P,
    pub sysram: S,
    pub boot_addr_offset: usize,
}

impl<T: Mmio, P: Mmio, S: Mmio> Exynos5250<T, P, S> {
    /// Start the MCT's global counter (the arch timer stands still until it runs) and pick the
    /// timer frequency: the DT's `clock-frequency`, else CNTFRQ as firmware left it, else the
    /// Exynos5250's 24 MHz. A dead MCT is reported, not waited for.
    pub fn start_timer(&self, cntfrq: u32, dt_clock_frequency: Option<u32>) -> (Result<(), MctNotResponding>, u32) {
        (timer::mct_start(&self.mct), timer::timer_frequency(cntfrq, dt_clock_frequency))
    }

    /// Release secondary `cpu` to `entry_pa`: power the core on through the PMU if it is off,
    /// write the entry into SYSRAM, then wake it with `send_sgi(cpu)` (the boot ROM reads SYSRAM
    /// on the event, so the write comes first).
    pub fn release_secondary(&self, cpu: u32, entry_pa: u64, send_sgi: &mut dyn FnMut(u32)) -> Result<(), ReleaseError> {
        if cpu == 0 || cpu >= smp::NR_CPUS {
            return Err(ReleaseError::Smp(SmpError::NoSuchCpu { cpu }));
        }
        let cfg = pmu_core_config(cpu);
        if self.pmu.read32(cfg + 4) & 0x3 != PMU_CORE_ON {
            self.pmu.write32(cfg, PMU_CORE_ON);
            if !(0..POWER_SPINS).any(|_| self.pmu.read32(cfg + 4) & 0x3 == PMU_CORE_ON) {
                return Err(ReleaseError::CoreStaysOff { cpu });
            }
        }
        let secure_firmware = self.boot_addr_offset == smp::SYSRAM_NS_BOOT_ADDR;
        smp::boot_secondary(&self.sysram, secure_firmware, cpu, entry_pa, send_sgi).map_err(ReleaseError::Smp)
    }

    /// Reset the SoC through the PMU's SWRESET.
    pub fn reset(&self) {
        smp::reset(&self.pmu)
    }
}

/// The console UART: one firmware set up (transmit enabled in UCON) is taken as it is; otherwise
/// it is programmed for `baud` 8N1 from the 100 MHz SCLK_UART xenith expects.
pub fn console_uart<M: Mmio>(regs: M, baud: u32) -> SamsungUart<M> {
    if regs.read32(UCON) & 0b1100 != 0 {
        SamsungUart::from_firmware(regs)
    } else {
        SamsungUart::new(regs, SCLK_UART_HZ, baud)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;
    use super::*;
    use platform::exynos5250::{CONSOLE_BAUD, UARTS, SNOW_CONSOLE_UART};
    use platform::Uart;
    use std::vec;
    use std::vec::Vec;
    use sysmmu_model::mct::MctModel;
    use sysmmu_model::soc::{CoreState, PmuModel, SecondaryCore, SramModel};
    use sysmmu_model::uart::UartModel;

    fn say<U: Uart>(u: &U, text: &[u8]) {
        for &b in text {
            u.put(b);
        }
    }

    #[test]
    fn a_console_firmware_left_off_is_programmed_for_115200() {
        assert_eq!(UARTS[SNOW_CONSOLE_UART].base, 0x12c3_0000);
        let m = UartModel::new(SCLK_UART_HZ, CONSOLE_BAUD);
        let u = console_uart(&m, CONSOLE_BAUD);
        say(&u, b"(xenith) on the Snow\n");
        u.flush();
        assert_eq!(m.text().as_deref(), Some(&b"(xenith) on the Snow\n"[..]));
        assert_eq!(m.overruns(), 0);
    }

    #[test]
    fn a_console_firmware_set_up_is_kept_as_it_is() {
        // U-Boot's console from a 24 MHz clock: reprogramming it for 100 MHz would garble it.
        let m = UartModel::configured(24_000_000, CONSOLE_BAUD, true);
        let u = console_uart(&m, CONSOLE_BAUD);
        say(&u, b"kept");
        u.flush();
        assert_eq!(m.text().as_deref(), Some(&b"kept"[..]));
    }

    fn board<'a>(mct: &'a MctModel, pmu: &'a PmuModel, sysram: &'a SramModel, off: usize) -> Exynos5250<&'a MctModel, &'a PmuModel, &'a SramModel> {
        Exynos5250 { mct, pmu, sysram, boot_addr_offset: off }
    }

    #[test]
    fn the_timer_starts_the_mct_and_takes_the_dts_frequency() {
        let (mct, pmu, sram) = (MctModel::new(), PmuModel::new(), SramModel::default());
        let b = board(&mct, &pmu, &sram, smp::SYSRAM_BOOT_ADDR);
        mct.advance(10);
        assert_eq!(mct.arch_counter(), 0);
        assert_eq!(b.start_timer(0, Some(24_000_000)), (Ok(()), 24_000_000));
        let t0 = mct.arch_counter();
        mct.advance(10);
        assert_eq!(mct.arch_counter(), t0 + 10, "the arch timer counts once the MCT runs");
        assert_eq!(mct.wstat(), 0);
        // Firmware left CNTFRQ 0 and the DT says nothing: the Exynos5250's 24 MHz.
        assert_eq!(b.start_timer(0, None).1, 24_000_000);
        let dead = MctModel::unresponsive();
        let b = board(&dead, &pmu, &sram, smp::SYSRAM_BOOT_ADDR);
        assert_eq!(b.start_timer(24_000_000, None), (Err(MctNotResponding), 24_000_000));
    }

    #[test]
    fn a_secondary_is_released_through_sysram_then_the_sgi() {
        let (mct, pmu, sram) = (MctModel::new(), PmuModel::new(), SramModel::default());
        let core1 = SecondaryCore::new(1, &sram, smp::SYSRAM_BOOT_ADDR, &pmu);
        let b = board(&mct, &pmu, &sram, smp::SYSRAM_BOOT_ADDR);
        let mut sgis = Vec::new();
        b.release_secondary(1, 0x5100_8000, &mut |c| {
            sgis.push(c);
            core1.event()
        })
        .unwrap();
        assert_eq!((core1.state(), sgis), (CoreState::Jumped(0x5100_8000), vec![1]));
    }

    #[test]
    fn with_secure_firmware_the_entry_goes_to_the_non_secure_page() {
        let (mct, pmu, sram_ns) = (MctModel::new(), PmuModel::new(), SramModel::default());
        let core1 = SecondaryCore::new(1, &sram_ns, smp::SYSRAM_NS_BOOT_ADDR, &pmu);
        let b = board(&mct, &pmu, &sram_ns, smp::SYSRAM_NS_BOOT_ADDR);
        b.release_secondary(1, 0x5100_9000, &mut |_| core1.event()).unwrap();
        assert_eq!(core1.state(), CoreState::Jumped(0x5100_9000));
    }

    #[test]
    fn a_powered_off_core_is_powered_on_before_its_release() {
        let (mct, sram) = (MctModel::new(), SramModel::default());
        let pmu = PmuModel::new().with_core_off(1);
        let core1 = SecondaryCore::new(1, &sram, smp::SYSRAM_BOOT_ADDR, &pmu);
        core1.event();
        assert_eq!(core1.wakeups(), 0, "an unpowered core ignores events");
        let b = board(&mct, &pmu, &sram, smp::SYSRAM_BOOT_ADDR);
        b.release_secondary(1, 0x5100_8000, &mut |_| core1.event()).unwrap();
        assert!(pmu.core_powered(1));
        assert_eq!(core1.state(), CoreState::Jumped(0x5100_8000));
    }

    #[test]
    fn bad_releases_are_refused_and_leave_the_core_in_the_rom() {
        let (mct, pmu, sram) = (MctModel::new(), PmuModel::new(), SramModel::default());
        let core1 = SecondaryCore::new(1, &sram, smp::SYSRAM_BOOT_ADDR, &pmu);
        let b = board(&mct, &pmu, &sram, smp::SYSRAM_BOOT_ADDR);
        assert_eq!(b.release_secondary(0, 0x5100_8000, &mut |_| core1.event()), Err(ReleaseError::Smp(SmpError::NoSuchCpu { cpu: 0 })));
        assert_eq!(b.release_secondary(2, 0x5100_8000, &mut |_| core1.event()), Err(ReleaseError::Smp(SmpError::NoSuchCpu { cpu: 2 })));
        assert!(b.release_secondary(1, 0x5100_8002, &mut |_| core1.event()).is_err());
        assert_eq!(core1.state(), CoreState::InBootRom);
    }

    #[test]
    fn reset_goes_through_the_pmu() {
        let (mct, pmu, sram) = (MctModel::new(), PmuModel::new(), SramModel::default());
        board(&mct, &pmu, &sram, 0).reset();
        assert_eq!(pmu.resets(), 1);
    }

    #[test]
    fn the_log_ring_takes_the_last_mib_below_4_gib() {
        let dt = crate::dt::HostDt::parse(&crate::dt::fixtures::load(crate::dt::fixtures::SNOW)).unwrap();
        let mut info = dt.boot_info().unwrap();
        assert_eq!(log_ring_place(&info), Some(Region { base: 0xbff0_0000, size: 0x10_0000 }));
        info.memory.push(Region { base: 0x1_0000_0000, size: 1 << 30 });
        assert_eq!(log_ring_place(&info), Some(Region { base: 0xbff0_0000, size: 0x10_0000 }), "RAM above 4 GiB has no HYP address");
        info.memory = vec![Region { base: 0x4000_0000, size: 0x10_0000 }];
        assert_eq!(log_ring_place(&info), None, "too little RAM to spare a MiB");
    }
}
