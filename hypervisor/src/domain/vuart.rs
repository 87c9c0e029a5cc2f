//! The emulated SBSA UART (Xen's "vpl011") a dom0less domU gets with the `vpl011` property:
//! at Xen's guest address, transmit only, always ready. What the guest writes is collected
//! per line and printed on the hypervisor console as `DOM<id>: <line>`, as Xen 4.17 prints
//! a domU's vpl011 output when the console is not focused on it. Its interrupt (SPI
//! [`GUEST_VPL011_SPI`], level) is high while an unmasked interrupt is raised: the transmit
//! interrupt, always raised since the FIFO never fills.

use super::mmio::{MmioAccess, MmioDevice, MmioResult};
use super::DomId;

/// Xen's arm64 guest layout: the vpl011 registers and their interrupt (SPI 0, INTID 32).
pub const GUEST_PL011_BASE: u64 = 0x2200_0000;
pub const GUEST_PL011_SIZE: u64 = 0x1000;
pub const GUEST_VPL011_SPI: u32 = 32;

/// Register offsets (SBSA generic UART, a subset of the PL011's).
const DR: u64 = 0x00;
const RSR: u64 = 0x04;
const FR: u64 = 0x18;
const IMSC: u64 = 0x38;
const RIS: u64 = 0x3c;
const MIS: u64 = 0x40;
const ICR: u64 = 0x44;

/// FR: transmit FIFO empty, receive FIFO empty (nothing is ever received).
const FR_TXFE: u64 = 1 << 7;
const FR_RXFE: u64 = 1 << 4;
/// RIS/MIS: transmit interrupt (always: the "FIFO" never fills).
const INT_TX: u64 = 1 << 5;

/// Longest line kept before it is printed anyway.
const LINE: usize = 256;

/// One domU's emulated UART.
pub struct Vpl011 {
    domain: DomId,
    imsc: u64,
    line: [u8; LINE],
    len: usize,
    /// Where complete lines go (the hypervisor console; a buffer in tests).
    out: fn(DomId, &str),
    /// Drives the domain's SPI [`GUEST_VPL011_SPI`] (its vGIC; a recorder in tests).
    irq: fn(DomId, bool),
    /// The level last driven.
    level: bool,
}

impl Vpl011 {
    pub fn new(domain: DomId, out: fn(DomId, &str), irq: fn(DomId, bool)) -> Self {
        Self { domain, imsc: 0, line: [0; LINE], len: 0, out, irq, level: false }
    }

    /// Drive the interrupt line from the masked interrupt status, when it changes.
    fn update_irq(&mut self) {
        let high = INT_TX & self.imsc != 0;
        if high != self.level {
            self.level = high;
            (self.irq)(self.domain, high);
        }
    }

    fn put(&mut self, b: u8) {
        if b == b'\n' || self.len == LINE {
            self.flush();
            if b == b'\n' {
                return;
            }
        }
        if b != b'\r' {
            self.line[self.len] = b;
            self.len += 1;
        }
    }

    fn flush(&mut self) {
        let text = core::str::from_utf8(&self.line[..self.len]).unwrap_or("(not UTF-8)");
        (self.out)(self.domain, text);
        self.len = 0;
    }
}

impl MmioDevice for Vpl011 {
    fn name(&self) -> &str {
        "vpl011"
    }

    fn access(&mut self, _vcpu: usize, a: MmioAccess) -> MmioResult {
        // Byte access is allowed to DR only; the others are 32-bit registers.
        let ok_size = a.size == 4 || (a.offset == DR && a.size == 1) || (a.offset == DR && a.size == 2);
        if !ok_size || !a.offset.is_multiple_of(4) {
            return MmioResult::Abort;
        }
        let v = match (a.offset, a.write) {
            (DR, true) => {
                self.put(a.value as u8);
                0
            }
            (DR, false) | (RSR, _) => 0,
            (FR, false) => FR_TXFE | FR_RXFE,
            (FR, true) => 0,
            (IMSC, true) => {
                self.imsc = a.value & 0x7ff;
                self.update_irq();
                0
            }
            (IMSC, false) => self.imsc,
            (RIS, false) => INT_TX,
            (MIS, false) => INT_TX & self.imsc,
            (RIS | MIS, true) | (ICR, true) => 0,
            (ICR, false) => 0,
            _ => return MmioResult::Abort,
        };
        MmioResult::Done(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::{String, ToString};
    use alloc::vec::Vec;
    use std::sync::Mutex;

    static OUT: Mutex<Vec<(DomId, String)>> = Mutex::new(Vec::new());
    fn sink(d: DomId, s: &str) {
        OUT.lock().unwrap().push((d, s.to_string()));
    }
    static LINE_LEVELS: Mutex<Vec<(DomId, bool)>> = Mutex::new(Vec::new());
    fn line(d: DomId, high: bool) {
        LINE_LEVELS.lock().unwrap().push((d, high));
    }

    fn w(u: &mut Vpl011, off: u64, size: u8, value: u64) -> MmioResult {
        u.access(0, MmioAccess { offset: off, size, write: true, value })
    }
    fn r(u: &mut Vpl011, off: u64) -> MmioResult {
        u.access(0, MmioAccess { offset: off, size: 4, write: false, value: 0 })
    }

    #[test]
    fn lines_reach_the_console_with_the_domain_and_the_uart_is_always_ready() {
        let mut u = Vpl011::new(7, sink, line);
        for b in b"case x: 1\r\nsecond" {
            assert_eq!(w(&mut u, DR, 1, u64::from(*b)), MmioResult::Done(0));
        }
        assert_eq!(OUT.lock().unwrap().iter().filter(|(d, _)| *d == 7).cloned().collect::<Vec<_>>(), [(7, "case x: 1".to_string())]);
        assert_eq!(r(&mut u, FR), MmioResult::Done(FR_TXFE | FR_RXFE));
        assert_eq!(r(&mut u, DR), MmioResult::Done(0));
        // a 32-bit write to DR sends its low byte
        assert_eq!(w(&mut u, DR, 4, 0x4100 | u64::from(b'\n')), MmioResult::Done(0));
        assert!(OUT.lock().unwrap().contains(&(7, "second".to_string())));
        assert_eq!(w(&mut u, IMSC, 4, INT_TX), MmioResult::Done(0));
        assert_eq!(r(&mut u, MIS), MmioResult::Done(INT_TX));
    }

    #[test]
    fn the_interrupt_line_follows_the_masked_status() {
        let mut u = Vpl011::new(9, sink, line);
        let levels = || LINE_LEVELS.lock().unwrap().iter().filter(|(d, _)| *d == 9).map(|&(_, h)| h).collect::<Vec<_>>();
        // Receive interrupts unmasked: nothing is ever received, the line stays low.
        w(&mut u, IMSC, 4, (1 << 4) | (1 << 6));
        assert_eq!(levels(), [] as [bool; 0]);
        // The transmit interrupt unmasked: raised at once (the FIFO never fills), and dropped
        // when masked again; writing the same mask twice drives nothing new.
        w(&mut u, IMSC, 4, INT_TX | (1 << 4));
        w(&mut u, IMSC, 4, INT_TX | (1 << 4));
        w(&mut u, IMSC, 4, 1 << 4);
        assert_eq!(levels(), [true, false]);
    }

    #[test]
    fn bad_accesses_abort_and_long_lines_are_split() {
        let mut u = Vpl011::new(8, sink, line);
        assert_eq!(w(&mut u, FR, 1, 0), MmioResult::Abort);
        assert_eq!(r(&mut u, 0x2), MmioResult::Abort);
        assert_eq!(r(&mut u, 0xffc), MmioResult::Abort);
        for _ in 0..LINE + 3 {
            w(&mut u, DR, 1, u64::from(b'a'));
        }
        w(&mut u, DR, 1, u64::from(b'\n'));
        let got: Vec<usize> = OUT.lock().unwrap().iter().filter(|(d, _)| *d == 8).map(|(_, s)| s.len()).collect();
        assert_eq!(got, [LINE, 3]);
    }
}
