//! Output through `console_io(CONSOLEIO_write)`, one hypercall per line (dom0 has no UART),
//! or, for a dom0less domU (whose console_io writes a release-built Xen drops), through the
//! emulated SBSA UART its DT names (Xen's vpl011; xenith emulates the same).

use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Base of the UART to write to instead of console_io (0: use console_io).
static UART: AtomicUsize = AtomicUsize::new(0);
/// SBSA UART data and flag registers; FR bit 5 is "transmit FIFO full".
const UART_DR: usize = 0x00;
const UART_FR: usize = 0x18;
const FR_TXFF: u32 = 1 << 5;

/// Send the console to the UART at `base` (mapped as Device memory by the caller).
pub fn use_uart(base: usize) {
    UART.store(base, Ordering::Relaxed);
}

fn uart_write(base: usize, bytes: &[u8]) {
    for &b in bytes {
        // SAFETY: `base` is the UART's register block, mapped Device (see `use_uart`).
        unsafe {
            while core::ptr::read_volatile((base + UART_FR) as *const u32) & FR_TXFF != 0 {
                core::hint::spin_loop();
            }
            core::ptr::write_volatile((base + UART_DR) as *mut u32, u32::from(b));
        }
    }
}

/// Longest line; longer output is split.
const LINE: usize = 200;

/// Collects one line, then writes it with a single hypercall.
pub struct Line {
    buf: [u8; LINE],
    len: usize,
}

impl Line {
    /// An empty line.
    pub const fn new() -> Self {
        Line { buf: [0; LINE], len: 0 }
    }

    /// Writes what was collected plus a newline.
    pub fn finish(mut self) {
        if self.len == LINE {
            self.flush();
        }
        self.buf[self.len] = b'\n';
        self.len += 1;
        self.flush();
    }

    fn flush(&mut self) {
        match UART.load(Ordering::Relaxed) {
            0 => {
                // Nothing to do with an error here: the console is the only way out.
                let _ = guest_abi::guest::console_write(&self.buf[..self.len]);
            }
            base => uart_write(base, &self.buf[..self.len]),
        }
        self.len = 0;
    }
}

impl fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == LINE {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

/// Prints one formatted line on the hypervisor console.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {{
        let mut line = $crate::console::Line::new();
        let _ = core::fmt::Write::write_fmt(&mut line, format_args!($($arg)*));
        line.finish();
    }};
}
