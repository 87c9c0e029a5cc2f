//! The Exynos5250 board code (platform::exynos5250) driven against the register-level models of
//! the blocks it programs: the console UART, the MCT that makes the arch timer count, secondary
//! CPU release through SYSRAM and an SGI, reset through the PMU, and the interrupt combiner.

use platform::exynos5250::combiner::{Combiner, CombinerIrq};
use platform::exynos5250::smp::{boot_secondary, reset, SYSRAM_BOOT_ADDR, SYSRAM_NS_BOOT_ADDR};
use platform::exynos5250::timer::{mct_start, MctNotResponding};
use platform::exynos5250::uart::{SamsungUart, SCLK_UART_HZ};
use platform::exynos5250::{CONSOLE_BAUD, SYSMMUS};
use platform::Uart;
use sysmmu_model::mct::{self, MctModel};
use sysmmu_model::soc::{CombinerModel, CoreState, PmuModel, SecondaryCore, SramModel};
use sysmmu_model::uart::{LineChar, UartModel};
use std::cell::Cell;

#[test]
fn console_reaches_the_terminal_at_115200_from_reset() {
    let m = UartModel::new(SCLK_UART_HZ, CONSOLE_BAUD);
    let u = SamsungUart::new(&m, SCLK_UART_HZ, CONSOLE_BAUD);
    for &b in b"xenith on the Snow\n" {
        u.put(b);
    }
    u.flush();
    assert_eq!(m.text().as_deref(), Some(&b"xenith on the Snow\n"[..]));
    assert_eq!(m.overruns(), 0, "the driver waited for room before every byte");
}

#[test]
fn a_wrong_source_clock_garbles_the_line() {
    // The driver believes SCLK is 100 MHz; firmware left it at 24 MHz.
    let m = UartModel::new(24_000_000, CONSOLE_BAUD);
    let u = SamsungUart::new(&m, SCLK_UART_HZ, CONSOLE_BAUD);
    u.put(b'x');
    u.flush();
    assert_eq!(m.line(), vec![LineChar::Garbled]);
}

#[test]
fn firmware_console_with_fifo_loses_nothing() {
    let m = UartModel::configured(SCLK_UART_HZ, CONSOLE_BAUD, true);
    let u = SamsungUart::from_firmware(&m);
    let text: Vec<u8> = (0..200u32).map(|i| b'a' + (i % 26) as u8).collect();
    for &b in &text {
        u.put(b);
    }
    u.flush();
    assert_eq!(m.text(), Some(text));
    assert_eq!(m.overruns(), 0);
}

#[test]
fn input_from_the_terminal() {
    let m = UartModel::new(SCLK_UART_HZ, CONSOLE_BAUD);
    let u = SamsungUart::new(&m, SCLK_UART_HZ, CONSOLE_BAUD);
    assert_eq!(u.get(), None);
    m.receive(b'k');
    assert_eq!(u.get(), Some(b'k'));
    assert_eq!(u.get(), None);
}

#[test]
fn a_uart_with_transmit_disabled_does_not_hang_the_hypervisor() {
    let m = UartModel::new(SCLK_UART_HZ, CONSOLE_BAUD); // UCON 0: transmit off
    let u = SamsungUart::from_firmware(&m);
    u.put(b'x');
    u.flush();
    assert!(m.line().is_empty());
    assert_eq!(m.lost_while_disabled(), 1);
}

#[test]
fn mct_start_makes_the_arch_timer_count_and_clears_the_write_status() {
    let m = MctModel::new();
    m.advance(100);
    assert_eq!(m.arch_counter(), 0, "the arch timer stands still until the MCT runs");
    mct_start(&&m).unwrap();
    assert!(m.running());
    assert_eq!(m.wstat(), 0, "G_TCON's write status acknowledged");
    let t0 = m.arch_counter();
    m.advance(50);
    assert_eq!(m.arch_counter(), t0 + 50);
    // A second start writes nothing.
    let before = m.accesses();
    mct_start(&&m).unwrap();
    assert_eq!(m.accesses(), before + 1, "one read of G_TCON");
}

#[test]
fn mct_start_keeps_the_other_control_bits() {
    let m = MctModel::new();
    {
        use platform::Mmio;
        (&m).write32(mct::G_TCON, 0x3);
        m.advance(5);
        (&m).write32(mct::G_WSTAT, 1 << 16);
    }
    mct_start(&&m).unwrap();
    use platform::Mmio;
    assert_eq!((&m).read32(mct::G_TCON), 0x3 | mct::G_TCON_START);
}

#[test]
fn a_dead_mct_is_reported_not_waited_for_forever() {
    let m = MctModel::unresponsive();
    assert_eq!(mct_start(&&m), Err(MctNotResponding));
    assert!(!m.running());
}

#[test]
fn secondary_cpu_released_through_sysram_and_an_sgi() {
    let sysram = SramModel::default();
    let pmu = PmuModel::new();
    let core1 = SecondaryCore::new(1, &sysram, SYSRAM_BOOT_ADDR, &pmu);
    boot_secondary(&&sysram, false, 1, 0x4000_8000, &mut |cpu| {
        assert_eq!(cpu, 1);
        core1.event()
    })
    .unwrap();
    assert_eq!(core1.state(), CoreState::Jumped(0x4000_8000));
}

#[test]
fn with_secure_firmware_the_address_goes_to_the_non_secure_page() {
    let sysram_ns = SramModel::default();
    let pmu = PmuModel::new();
    let core1 = SecondaryCore::new(1, &sysram_ns, SYSRAM_NS_BOOT_ADDR, &pmu);
    boot_secondary(&&sysram_ns, true, 1, 0x4000_9000, &mut |_| core1.event()).unwrap();
    assert_eq!(core1.state(), CoreState::Jumped(0x4000_9000));
}

#[test]
fn a_refused_release_leaves_the_core_in_the_rom() {
    let sysram = SramModel::default();
    let pmu = PmuModel::new();
    let core1 = SecondaryCore::new(1, &sysram, SYSRAM_BOOT_ADDR, &pmu);
    assert!(boot_secondary(&&sysram, false, 1, 0x4000_0002, &mut |_| core1.event()).is_err());
    core1.event(); // a stray SEV: address still 0, back to sleep
    assert_eq!(core1.state(), CoreState::InBootRom);
    assert_eq!(core1.wakeups(), 1);
}

#[test]
fn reset_goes_through_the_pmu() {
    let pmu = PmuModel::new();
    reset(&&pmu);
    assert_eq!(pmu.resets(), 1);
}

#[test]
fn combiner_routes_a_sysmmu_fault_line_to_its_spi() {
    let g2d = SYSMMUS.iter().find(|s| s.name == "sysmmu_g2d").unwrap();
    let (group, bit) = g2d.combiner;
    let fault = Cell::new(false);
    let mut model = CombinerModel::new();
    model.connect(group, bit, || fault.get());
    let c = Combiner::new(&model);
    c.disable_all();
    fault.set(true);
    assert!(!model.spi_level(group), "masked inputs do not reach the GIC");
    let irq = CombinerIrq::new(group, bit).unwrap();
    c.enable(irq);
    assert!(model.spi_level(irq.spi()));
    assert_eq!(c.pending_for_spi(irq.spi()).collect::<Vec<_>>(), vec![irq]);
    assert!(!model.spi_level(group + 1));
    fault.set(false); // the handler cleared the SysMMU's interrupt
    assert!(!model.spi_level(group));
    assert_eq!(c.pending_for_spi(group).count(), 0);
    c.disable(irq);
    fault.set(true);
    assert!(!model.spi_level(group));
}

#[test]
#[allow(clippy::single_range_in_vec_init)] // SimMem takes a list of RAM ranges; one here
fn a_power_domain_cycle_resets_the_sysmmus_inside_it() {
    use platform::Mmio;
    use std::rc::Rc;
    use sysmmu_model::soc::{PD_ON, PMU_POWER_DOMAINS};
    use sysmmu_model::{DmaError, ModelConfig, SimMem, SysmmuModel};
    // DISP1 (0x100440a0 = PMU + 0x40a0) holds the mixer's SysMMU.
    let disp1 = PMU_POWER_DOMAINS + 0xa0;
    let pmu = PmuModel::new().with_domain(disp1, true);
    let mem = Rc::new(SimMem::new(&[0x4000_0000..0x4100_0000]));
    let tv = SysmmuModel::in_domain(ModelConfig::v3(3), mem.clone(), pmu.domain_line(disp1));
    let outside = SysmmuModel::new(ModelConfig::v3(3), mem);
    for m in [&tv, &outside] {
        m.write32(sysmmu_model::sysmmu::CTRL, 0x7); // blocked: the master stalls
        assert_eq!(m.translate(0x4000_0000, false), Err(DmaError::Stalled));
    }
    let pm = pmu.window(PMU_POWER_DOMAINS);
    pm.write32(0xa0, 0);
    assert!(pmu.domain_on(disp1), "STATUS follows a few accesses later");
    while pm.read32(0xa4) & PD_ON != 0 {}
    assert_eq!(tv.translate(0x4000_0000, false), Err(DmaError::PoweredOff));
    assert_eq!(tv.read32(sysmmu_model::sysmmu::VERSION), 0, "an unpowered block reads as zero");
    tv.write32(sysmmu_model::sysmmu::CTRL, 0x7);
    assert_eq!(tv.stats().accesses_while_off, 2);
    pm.write32(0xa0, PD_ON);
    while pm.read32(0xa4) & PD_ON != PD_ON {}
    assert_eq!(pmu.domain_line(disp1).power_ups(), 1);
    // Back out of reset: disabled, i.e. bypass; the write made while it was off is lost.
    assert_eq!(tv.ctrl(), 0);
    assert_eq!(tv.translate(0x4000_0000, false), Ok(0x4000_0000));
    assert_eq!(tv.read32(sysmmu_model::sysmmu::VERSION), 0x3060_0000);
    // A SysMMU outside the domain kept its state.
    assert_eq!(outside.translate(0x4000_0000, false), Err(DmaError::Stalled));
}
