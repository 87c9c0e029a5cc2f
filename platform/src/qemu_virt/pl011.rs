//! Arm PrimeCell UART (PL011), polled, as the hypervisor console. QEMU's PL011 needs no baud
//! setup; on hardware firmware has configured it (as Xen assumes too).

use crate::hal::{Mmio, Uart};
use tock_registers::register_bitfields;
use tock_registers::LocalRegisterCopy;

/// Register offsets (PL011 TRM names).
pub const UARTDR: usize = 0x000;
pub const UARTFR: usize = 0x018;
pub const UARTCR: usize = 0x030;
pub const UARTIMSC: usize = 0x038;

register_bitfields![u32,
    pub FR [
        RXFE OFFSET(4) NUMBITS(1) [],
        TXFF OFFSET(5) NUMBITS(1) [],
        BUSY OFFSET(3) NUMBITS(1) []
    ],
    pub CR [
        UARTEN OFFSET(0) NUMBITS(1) [],
        TXE OFFSET(8) NUMBITS(1) [],
        RXE OFFSET(9) NUMBITS(1) []
    ]
];

/// Polls allowed while the transmit FIFO is full before a byte is dropped (a wedged UART
/// must not hang the hypervisor).
const TX_SPINS: u32 = 1_000_000;

pub struct Pl011<M: Mmio> {
    regs: M,
}

impl<M: Mmio> Pl011<M> {
    /// Take over the UART: enable it with TX and RX, interrupts masked.
    pub fn new(regs: M) -> Self {
        regs.write32(UARTIMSC, 0);
        let cr = regs.read32(UARTCR) | (1 << 0) | (1 << 8) | (1 << 9);
        regs.write32(UARTCR, cr);
        Self { regs }
    }

    fn flags(&self) -> LocalRegisterCopy<u32, FR::Register> {
        LocalRegisterCopy::new(self.regs.read32(UARTFR))
    }
}

impl<M: Mmio + Send + Sync> Uart for Pl011<M> {
    fn put(&self, byte: u8) {
        for _ in 0..TX_SPINS {
            if !self.flags().is_set(FR::TXFF) {
                self.regs.write32(UARTDR, u32::from(byte));
                return;
            }
        }
    }

    fn get(&self) -> Option<u8> {
        if self.flags().is_set(FR::RXFE) {
            None
        } else {
            Some(self.regs.read32(UARTDR) as u8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::RefCell;
    use std::vec::Vec;

    /// A PL011 register double: a TX log, an RX queue, FR derived from them.
    #[derive(Default)]
    struct Regs {
        tx: RefCell<Vec<u8>>,
        rx: RefCell<Vec<u8>>,
        cr: RefCell<u32>,
        full_for: RefCell<u32>,
    }
    // SAFETY: test-only double used from one thread.
    unsafe impl Sync for Regs {}
    unsafe impl Send for Regs {}
    impl Mmio for &Regs {
        fn read32(&self, off: usize) -> u32 {
            match off {
                UARTFR => {
                    let mut f = 0;
                    if self.rx.borrow().is_empty() {
                        f |= 1 << 4;
                    }
                    let mut full = self.full_for.borrow_mut();
                    if *full > 0 {
                        *full -= 1;
                        f |= 1 << 5;
                    }
                    f
                }
                UARTDR => u32::from(self.rx.borrow_mut().remove(0)),
                UARTCR => *self.cr.borrow(),
                _ => 0,
            }
        }
        fn write32(&self, off: usize, v: u32) {
            match off {
                UARTDR => self.tx.borrow_mut().push(v as u8),
                UARTCR => *self.cr.borrow_mut() = v,
                _ => {}
            }
        }
    }

    #[test]
    fn enables_tx_rx_and_waits_for_fifo_room() {
        let regs = Regs::default();
        *regs.full_for.borrow_mut() = 3;
        let uart = Pl011::new(&regs);
        assert_eq!(*regs.cr.borrow() & 0x301, 0x301);
        uart.put(b'x');
        assert_eq!(&*regs.tx.borrow(), b"x");
    }

    #[test]
    fn wedged_uart_drops_bytes_instead_of_hanging() {
        let regs = Regs::default();
        *regs.full_for.borrow_mut() = u32::MAX;
        let uart = Pl011::new(&regs);
        uart.put(b'x');
        assert!(regs.tx.borrow().is_empty());
    }

    #[test]
    fn reads_only_when_data_waits() {
        let regs = Regs::default();
        let uart = Pl011::new(&regs);
        assert_eq!(uart.get(), None);
        regs.rx.borrow_mut().push(b'q');
        assert_eq!(uart.get(), Some(b'q'));
    }
}
