//! The hypervisor console: every log line goes to a RAM ring (kept for boards with no reachable
//! serial port, e.g. the Snow) and, once one is known, to the UART named by the DT's
//! `/chosen/stdout-path`. Guests' console_io output is written here too, prefixed by domain.

use core::fmt::{self, Write};
use platform::Uart;
use crate::sync::SpinMutex as Mutex;

/// Bytes kept in the RAM log ring.
pub const RING_SIZE: usize = 16 * 1024;

/// A byte ring that keeps the newest `N` bytes written.
pub struct LogRing<const N: usize> {
    buf: [u8; N],
    /// Total bytes ever written (the write position is `written % N`).
    written: usize,
}

impl<const N: usize> LogRing<N> {
    pub const fn new() -> Self {
        Self { buf: [0; N], written: 0 }
    }
    pub fn push(&mut self, b: u8) {
        self.buf[self.written % N] = b;
        self.written = self.written.wrapping_add(1);
    }
    /// Total bytes ever written.
    pub fn written(&self) -> usize {
        self.written
    }

    /// Up to `max` retained bytes from position `from` (bytes ever written before it; clamped to
    /// what the ring still holds), and the position after them.
    pub fn read_from(&self, from: usize, max: usize) -> (alloc::vec::Vec<u8>, usize) {
        let from = from.clamp(self.written.saturating_sub(N), self.written);
        let len = (self.written - from).min(max);
        let bytes = (from..from + len).map(|p| self.buf[p % N]).collect();
        (bytes, from + len)
    }

    /// The retained bytes, oldest first, as two slices.
    pub fn contents(&self) -> (&[u8], &[u8]) {
        if self.written <= N {
            (&self.buf[..self.written], &[])
        } else {
            let at = self.written % N;
            (&self.buf[at..], &self.buf[..at])
        }
    }
}

impl<const N: usize> Default for LogRing<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Where the console also keeps its bytes on boards with no reachable serial port: the RAM log
/// ring at a fixed address, which survives a warm reset (`platform::exynos5250::logring`).
pub trait RamSink: Send {
    fn put_bytes(&mut self, bytes: &[u8]);
}

impl<P: platform::PhysMem + Send> RamSink for platform::exynos5250::logring::RamLog<P> {
    fn put_bytes(&mut self, bytes: &[u8]) {
        // A memory error drops the text: the console must never stop the hypervisor.
        let _ = self.write(bytes);
    }
}

struct Console {
    uart: Option<&'static dyn Uart>,
    ram: Option<&'static mut dyn RamSink>,
    ring: LogRing<RING_SIZE>,
    /// Ring position up to which a reader cleared the ring (XEN_SYSCTL_readconsole `clear`).
    cleared: usize,
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}

impl Console {
    fn write_bytes(&mut self, bytes: &[u8]) {
        if let Some(r) = self.ram.as_mut() {
            r.put_bytes(bytes);
        }
        for &b in bytes {
            self.ring.push(b);
            if let Some(u) = self.uart {
                if b == b'\n' {
                    u.put(b'\r');
                }
                u.put(b);
            }
        }
    }
}

static CONSOLE: Mutex<Console> = Mutex::new(Console { uart: None, ram: None, ring: LogRing::new(), cleared: 0 });

/// Keep the log in `sink` from now on too; what was logged before is copied into it first.
pub fn set_ram_log(sink: &'static mut dyn RamSink) {
    let mut c = CONSOLE.lock();
    let (a, b) = c.ring.contents();
    sink.put_bytes(a);
    sink.put_bytes(b);
    c.ram = Some(sink);
}

/// Attach the UART; what was logged before is replayed to it.
pub fn set_uart(uart: &'static dyn Uart) {
    let mut c = CONSOLE.lock();
    c.uart = Some(uart);
    let (a, b) = c.ring.contents();
    for &byte in a.iter().chain(b.iter()) {
        if byte == b'\n' {
            uart.put(b'\r');
        }
        uart.put(byte);
    }
}

/// Write formatted text (used by the `log!` macro).
pub fn write_fmt(args: fmt::Arguments<'_>) {
    let _ = CONSOLE.lock().write_fmt(args);
}

/// Write bytes from a guest, as Xen does: the hardware domain's pass through unchanged (its
/// console is interactive: carriage returns, escape sequences); another domain's lose every
/// byte that is not printable, a newline or a tab, so that it cannot drive the operator's
/// terminal. With `from`, the bytes start with the domain's tag `(dN) `, written under the same
/// lock hold (so that another CPU's output cannot land between the tag and the text).
pub fn write_guest_bytes(bytes: &[u8], hardware_domain: bool) {
    write_guest(None, bytes, hardware_domain)
}

/// [`write_guest_bytes`], tagged with domain `from` when given.
pub fn write_guest(from: Option<u16>, bytes: &[u8], hardware_domain: bool) {
    let mut c = CONSOLE.lock();
    if let Some(id) = from {
        let _ = write!(c, "(d{id}) ");
    }
    if hardware_domain {
        c.write_bytes(bytes);
        return;
    }
    for &b in bytes {
        if printable_from_domu(b) {
            c.write_bytes(&[b]);
        }
    }
}

/// A byte a domU's console output keeps.
fn printable_from_domu(b: u8) -> bool {
    b == b'\n' || b == b'\t' || (0x20..0x7f).contains(&b)
}

/// The console ring as XEN_SYSCTL_readconsole reads it: up to `max` bytes from the oldest one
/// not cleared, or from `start` (a position, as returned before) when it is past that and not
/// beyond the newest byte; with `clear`, what was read is cleared. Returns the bytes and the
/// position after them. Positions count bytes ever written, modulo 2^32.
pub fn read_ring(start: Option<u32>, max: usize, clear: bool) -> (alloc::vec::Vec<u8>, u32) {
    let mut c = CONSOLE.lock();
    let produced = c.ring.written();
    let mut from = c.cleared.max(produced.saturating_sub(RING_SIZE));
    if let Some(s) = start {
        // The ring holds at most RING_SIZE bytes: `s` is behind the newest by less than that.
        let behind = (produced as u32).wrapping_sub(s) as usize;
        let at = produced.wrapping_sub(behind);
        if behind < produced - from {
            from = at;
        }
    }
    let (bytes, end) = c.ring.read_from(from, max);
    if clear {
        c.cleared = end;
    }
    (bytes, end as u32)
}

/// A byte typed on the console, if any (for CONSOLEIO_read).
pub fn read_byte() -> Option<u8> {
    let c = CONSOLE.lock();
    c.uart.and_then(|u| u.get())
}

/// Log a line on the hypervisor console: `log!("dom0: {}", x)`.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::console::write_fmt(format_args!("(xenith) {}\n", format_args!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_newest_bytes_in_order() {
        let mut r = LogRing::<4>::new();
        for b in b"abcdef" {
            r.push(*b);
        }
        let (a, b) = r.contents();
        assert_eq!([a, b].concat(), b"cdef");
    }

    #[test]
    fn domu_output_loses_control_bytes() {
        let kept: Vec<u8> = b"a\rb\x1b[2Jc\td\n\x7f\x80".iter().copied().filter(|&b| printable_from_domu(b)).collect();
        assert_eq!(kept, b"ab[2Jc\td\n");
    }

    #[test]
    fn the_ram_log_gets_what_was_logged_before_and_after_it_was_attached() {
        extern crate std;
        use platform::exynos5250::logring::RamLog;
        use platform::{MemError, PhysMem};
        use std::sync::Mutex;
        const BASE: u64 = 0xbff0_0000;
        /// RAM that outlives a "reboot".
        #[derive(Clone, Copy)]
        struct Ram(&'static Mutex<Vec<u8>>);
        impl PhysMem for Ram {
            fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError> {
                let at = pa.checked_sub(BASE).ok_or(MemError::NotMemory { pa })? as usize;
                buf.copy_from_slice(self.0.lock().unwrap().get(at..at + buf.len()).ok_or(MemError::NotMemory { pa })?);
                Ok(())
            }
            fn write(&self, pa: u64, data: &[u8]) -> Result<(), MemError> {
                let at = pa.checked_sub(BASE).ok_or(MemError::NotMemory { pa })? as usize;
                self.0.lock().unwrap().get_mut(at..at + data.len()).ok_or(MemError::NotMemory { pa })?.copy_from_slice(data);
                Ok(())
            }
        }
        crate::log!("before the RAM log: 0f1e2d");
        let mem = Ram(alloc::boxed::Box::leak(alloc::boxed::Box::new(Mutex::new(alloc::vec![0u8; 1 << 20]))));
        let (ring, found) = RamLog::attach(mem, 0xbff0_0000, 1 << 20).unwrap();
        assert!(!found);
        set_ram_log(alloc::boxed::Box::leak(alloc::boxed::Box::new(ring)));
        crate::log!("after the RAM log: 3c4b5a");
        // A warm reset later, the next boot finds both lines in the ring.
        let (again, found) = RamLog::attach(mem, 0xbff0_0000, 1 << 20).unwrap();
        assert!(found);
        let mut out = alloc::vec![0u8; again.len()];
        let n = again.read_back(&mut out).unwrap();
        let text = alloc::string::String::from_utf8_lossy(&out[..n]).into_owned();
        assert!(text.contains("(xenith) before the RAM log: 0f1e2d\n"), "{text}");
        assert!(text.contains("(xenith) after the RAM log: 3c4b5a\n"), "{text}");
    }

    #[test]
    fn ring_before_wrap() {
        let mut r = LogRing::<8>::new();
        r.push(b'x');
        assert_eq!(r.contents(), (&b"x"[..], &b""[..]));
    }
}
