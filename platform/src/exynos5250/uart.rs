//! Samsung UART (exynos4210-uart flavour) as a polled console: UART3 on the Snow, UART2 on the
//! Arndale. Clocked from SCLK_UART = 100 MHz (MPLL 800 MHz / 8, set by firmware or early init).

use crate::hal::{Mmio, Uart};
use tock_registers::register_bitfields;
use tock_registers::LocalRegisterCopy;

/// Register offsets (Exynos user manual names).
pub const ULCON: usize = 0x00;
pub const UCON: usize = 0x04;
pub const UFCON: usize = 0x08;
pub const UMCON: usize = 0x0C;
pub const UTRSTAT: usize = 0x10;
pub const UFSTAT: usize = 0x18;
pub const UTXH: usize = 0x20;
pub const URXH: usize = 0x24;
pub const UBRDIV: usize = 0x28;
pub const UFRACVAL: usize = 0x2C;
pub const UINTP: usize = 0x30;
pub const UINTS: usize = 0x34;
pub const UINTM: usize = 0x38;

register_bitfields![u32,
    pub UTRSTAT_BITS [
        /// Receive buffer holds data.
        RX_READY OFFSET(0) NUMBITS(1) [],
        /// Transmit buffer (holding register) empty.
        TX_BUF_EMPTY OFFSET(1) NUMBITS(1) [],
        /// Transmitter (buffer and shifter) empty.
        TX_EMPTY OFFSET(2) NUMBITS(1) []
    ]
];

/// ULCON: 8 data bits, 1 stop bit, no parity.
pub const ULCON_8N1: u32 = 0x3;
/// UCON: receive and transmit in polling/interrupt mode (mode 01 each).
pub const UCON_RX_TX_POLL: u32 = (1 << 0) | (1 << 2);
/// UINTM: mask all four UART interrupt sources.
pub const UINTM_ALL: u32 = 0xF;
/// The UART source clock on the Exynos5250 as xenith expects it set up.
pub const SCLK_UART_HZ: u32 = 100_000_000;

/// Polls of UTRSTAT before a byte is dropped (a wedged UART must not hang the hypervisor).
const TX_SPINS: u32 = 1_000_000;

/// UBRDIV and UFRACVAL for `baud` from a `clock_hz` source (16x oversampling).
/// `None` if the baud rate is 0 or too fast for the clock.
pub fn divisors(clock_hz: u32, baud: u32) -> Option<(u32, u32)> {
    if baud == 0 || clock_hz / baud < 16 {
        return None;
    }
    let div = clock_hz / baud;
    Some((div / 16 - 1, div % 16))
}

/// A Samsung UART driven by polling.
pub struct SamsungUart<M: Mmio> {
    regs: M,
}

impl<M: Mmio> SamsungUart<M> {
    /// Program the line for `baud` 8N1 from a `clock_hz` source, FIFOs off, interrupts masked.
    /// An impossible baud rate keeps whatever divisors firmware left.
    pub fn new(regs: M, clock_hz: u32, baud: u32) -> Self {
        regs.write32(UINTM, UINTM_ALL);
        regs.write32(UFCON, 0);
        regs.write32(UMCON, 0);
        regs.write32(ULCON, ULCON_8N1);
        if let Some((div, frac)) = divisors(clock_hz, baud) {
            regs.write32(UBRDIV, div);
            regs.write32(UFRACVAL, frac);
        }
        regs.write32(UCON, UCON_RX_TX_POLL);
        SamsungUart { regs }
    }

    /// Take a UART firmware already configured (U-Boot's console), touching nothing.
    pub fn from_firmware(regs: M) -> Self {
        SamsungUart { regs }
    }

    fn status(&self) -> LocalRegisterCopy<u32, UTRSTAT_BITS::Register> {
        LocalRegisterCopy::new(self.regs.read32(UTRSTAT))
    }

    /// Wait (bounded) until everything sent has left the shifter.
    pub fn flush(&self) {
        for _ in 0..TX_SPINS {
            if self.status().is_set(UTRSTAT_BITS::TX_EMPTY) {
                return;
            }
        }
    }
}

impl<M: Mmio + Send + Sync> Uart for SamsungUart<M> {
    fn put(&self, byte: u8) {
        for _ in 0..TX_SPINS {
            if self.status().is_set(UTRSTAT_BITS::TX_BUF_EMPTY) {
                self.regs.write32(UTXH, u32::from(byte));
                return;
            }
        }
    }

    fn get(&self) -> Option<u8> {
        if self.status().is_set(UTRSTAT_BITS::RX_READY) {
            Some(self.regs.read32(URXH) as u8)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exynos5250::testregs::Regs;

    #[test]
    fn baud_divisors_from_100mhz() {
        // 100e6 / 115200 = 868 -> UBRDIV 868/16 - 1 = 53, UFRACVAL 868 % 16 = 4.
        assert_eq!(divisors(SCLK_UART_HZ, 115_200), Some((53, 4)));
        assert_eq!(divisors(SCLK_UART_HZ, 9_600), Some((650, 0)));
        assert_eq!(divisors(SCLK_UART_HZ, 0), None);
        assert_eq!(divisors(1_000, 115_200), None);
    }

    #[test]
    fn init_sends_and_receives() {
        let regs = Regs::default();
        regs.set(UTRSTAT, 0b110);
        let u = SamsungUart::new(&regs, SCLK_UART_HZ, 115_200);
        assert_eq!(regs.get(ULCON), 3);
        assert_eq!(regs.get(UFCON), 0);
        assert_eq!(regs.get(UCON), 0x5);
        assert_eq!(regs.get(UBRDIV), 53);
        assert_eq!(regs.get(UFRACVAL), 4);
        assert_eq!(regs.get(UINTM), 0xF);
        u.put(b'x');
        assert_eq!(regs.writes_to(UTXH), std::vec![u32::from(b'x')]);
        assert_eq!(u.get(), None);
        regs.set(URXH, u32::from(b'k'));
        regs.set(UTRSTAT, 0b111);
        assert_eq!(u.get(), Some(b'k'));
    }

    #[test]
    fn wedged_uart_drops_bytes_instead_of_hanging() {
        let regs = Regs::default(); // UTRSTAT reads 0: never empty
        let u = SamsungUart::from_firmware(&regs);
        u.put(b'x');
        u.flush();
        assert!(regs.writes_to(UTXH).is_empty());
    }
}
