//! Output through `console_io(CONSOLEIO_write)`, one hypercall per line (dom0 has no UART).

use core::fmt;

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
        // Nothing to do with an error here: the console is the only way out.
        let _ = guest_abi::guest::console_write(&self.buf[..self.len]);
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
