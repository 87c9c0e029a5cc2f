//! Register-level model of the Samsung UART (exynos4210-uart flavour, as on the Exynos5250), for
//! the console driver's host tests. What a terminal on the other end would see is kept in
//! [`UartModel::line`].
//!
//! Modelled behaviour:
//! - UCON[3:2] is the transmit mode: 00 = transmit disabled (a byte written to UTXH is lost),
//!   01 interrupt/polling, 10 DMA. ULCON[1:0] is the word length (5 + n bits): a byte is cut to it.
//! - FIFOs off (UFCON bit 0 clear): one holding register. A UTXH write while it is still full
//!   overwrites it, and the byte that was there is lost (counted as an overrun). FIFOs on: a
//!   transmit FIFO of `fifo_depth` bytes; a write to a full FIFO is lost. UFSTAT reports the TX
//!   count in bits [23:16] (bit 24 = full) and the RX count in bits [7:0].
//! - UTRSTAT bit 0: receive data ready; bit 1: transmit buffer (holding register or FIFO) empty;
//!   bit 2: transmitter empty (buffer and shift register).
//! - Time passes with bus accesses: every register access is one tick; a character leaves the
//!   shift register `char_ticks` ticks after it entered it.
//! - The line rate is SCLK / (16 * (UBRDIV + 1) + UFRACVAL); a terminal at `terminal_baud` reads
//!   a character correctly only if the rates differ by at most 2 %, else it records garbage.

use platform::Mmio;
use std::sync::Mutex;

// Register offsets from the Exynos user manual, written here independently of the driver's own
// (platform::exynos5250::uart): a wrong offset on either side then shows up in the tests.
use std::collections::VecDeque;

pub const ULCON: usize = 0x00;
pub const UCON: usize = 0x04;
pub const UFCON: usize = 0x08;
pub const UMCON: usize = 0x0C;
pub const UTRSTAT: usize = 0x10;
pub const UERSTAT: usize = 0x14;
pub const UFSTAT: usize = 0x18;
pub const UTXH: usize = 0x20;
pub const URXH: usize = 0x24;
pub const UBRDIV: usize = 0x28;
pub const UFRACVAL: usize = 0x2C;
pub const UINTP: usize = 0x30;
pub const UINTS: usize = 0x34;
pub const UINTM: usize = 0x38;

/// What the terminal received for one character.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineChar {
    Byte(u8),
    /// Sent at a rate the terminal cannot read.
    Garbled,
}

#[derive(Default)]
struct State {
    regs: [u32; 16],
    holding: Option<u8>,
    tx_fifo: VecDeque<u8>,
    /// Character in the shift register and the ticks it still needs.
    shifter: Option<(u8, u32)>,
    rx: VecDeque<u8>,
    line: Vec<LineChar>,
    overruns: u64,
    lost_disabled: u64,
}

/// The model; it implements [`Mmio`] on `&UartModel`.
pub struct UartModel {
    sclk_hz: u32,
    terminal_baud: u32,
    fifo_depth: usize,
    char_ticks: u32,
    st: Mutex<State>,
}

impl UartModel {
    /// A UART clocked at `sclk_hz` talking to a terminal at `terminal_baud`, with the Exynos5250
    /// UART2/3 transmit FIFO of 16 bytes and a character time of 4 ticks. At reset every
    /// register is 0 (transmit disabled).
    pub fn new(sclk_hz: u32, terminal_baud: u32) -> Self {
        UartModel { sclk_hz, terminal_baud, fifo_depth: 16, char_ticks: 4, st: Mutex::new(State::default()) }
    }

    /// As firmware (U-Boot's console) leaves it: 8N1 at `baud` for `sclk_hz`, FIFOs `fifo`, transmit on.
    pub fn configured(sclk_hz: u32, baud: u32, fifo: bool) -> Self {
        let m = Self::new(sclk_hz, baud);
        {
            let mut st = m.lock();
            let div = sclk_hz / baud;
            st.regs[ULCON / 4] = 3;
            st.regs[UCON / 4] = 0x5;
            st.regs[UFCON / 4] = u32::from(fifo);
            st.regs[UBRDIV / 4] = div / 16 - 1;
            st.regs[UFRACVAL / 4] = div % 16;
        }
        m
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Everything the terminal received so far.
    pub fn line(&self) -> Vec<LineChar> {
        self.lock().line.clone()
    }

    /// The received bytes, if none was garbled.
    pub fn text(&self) -> Option<Vec<u8>> {
        self.lock().line.iter().map(|c| if let LineChar::Byte(b) = c { Some(*b) } else { None }).collect()
    }

    /// Bytes lost because software wrote into a full holding register or FIFO.
    pub fn overruns(&self) -> u64 {
        self.lock().overruns
    }

    /// Bytes lost because transmit was disabled in UCON.
    pub fn lost_while_disabled(&self) -> u64 {
        self.lock().lost_disabled
    }

    /// The terminal types `b`.
    pub fn receive(&self, b: u8) {
        self.lock().rx.push_back(b);
    }

    /// Let the transmitter run until it is idle (or `max_ticks` pass).
    pub fn drain(&self, max_ticks: u32) {
        for _ in 0..max_ticks {
            let mut st = self.lock();
            if st.shifter.is_none() && st.holding.is_none() && st.tx_fifo.is_empty() {
                return;
            }
            self.tick(&mut st);
        }
    }

    fn fifo_on(st: &State) -> bool {
        st.regs[UFCON / 4] & 1 != 0
    }

    fn line_baud(&self, st: &State) -> u64 {
        let div = 16 * (u64::from(st.regs[UBRDIV / 4] & 0xffff) + 1) + u64::from(st.regs[UFRACVAL / 4] & 0xf);
        u64::from(self.sclk_hz) / div
    }

    fn tick(&self, st: &mut State) {
        if let Some((b, left)) = st.shifter {
            if left > 1 {
                st.shifter = Some((b, left - 1));
                return;
            }
            st.shifter = None;
            let (rate, want) = (self.line_baud(st), u64::from(self.terminal_baud));
            let c = if rate.abs_diff(want) * 50 <= want { LineChar::Byte(b) } else { LineChar::Garbled };
            st.line.push(c);
        }
        let next = if Self::fifo_on(st) { st.tx_fifo.pop_front() } else { st.holding.take() };
        if let Some(b) = next {
            st.shifter = Some((b, self.char_ticks));
        }
    }

    fn buffer_empty(st: &State) -> bool {
        if Self::fifo_on(st) {
            st.tx_fifo.is_empty()
        } else {
            st.holding.is_none()
        }
    }
}

impl Mmio for &UartModel {
    fn read32(&self, off: usize) -> u32 {
        let mut st = self.lock();
        self.tick(&mut st);
        match off {
            UTRSTAT => {
                let rx = u32::from(!st.rx.is_empty());
                let buf = UartModel::buffer_empty(&st);
                rx | (u32::from(buf) << 1) | (u32::from(buf && st.shifter.is_none()) << 2)
            }
            UFSTAT => {
                let tx = st.tx_fifo.len() as u32;
                let full = u32::from(st.tx_fifo.len() >= self.fifo_depth);
                (st.rx.len() as u32 & 0xff) | (tx << 16) | (full << 24)
            }
            URXH => u32::from(st.rx.pop_front().unwrap_or(0)),
            UTXH | UERSTAT => 0,
            o if o < 0x40 && o % 4 == 0 => st.regs[o / 4],
            _ => 0,
        }
    }

    fn write32(&self, off: usize, v: u32) {
        let mut st = self.lock();
        self.tick(&mut st);
        match off {
            UTXH => {
                if (st.regs[UCON / 4] >> 2) & 3 == 0 {
                    st.lost_disabled += 1;
                    return;
                }
                let bits = 5 + (st.regs[ULCON / 4] & 3);
                let b = (v & ((1 << bits) - 1)) as u8;
                if UartModel::fifo_on(&st) {
                    if st.tx_fifo.len() >= self.fifo_depth {
                        st.overruns += 1;
                    } else {
                        st.tx_fifo.push_back(b);
                    }
                } else if st.holding.replace(b).is_some() {
                    st.overruns += 1;
                }
            }
            UFCON => {
                // Bits 1 and 2 reset the RX/TX FIFOs and read back as 0.
                if v & 4 != 0 {
                    st.tx_fifo.clear();
                }
                if v & 2 != 0 {
                    st.rx.clear();
                }
                st.regs[UFCON / 4] = v & !6;
            }
            UTRSTAT | UFSTAT | URXH | UERSTAT => {}
            o if o < 0x40 && o % 4 == 0 => st.regs[o / 4] = v,
            _ => {}
        }
    }
}
