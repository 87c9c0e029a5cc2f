//! `console_io` (hypercall 18): the hypervisor console. Arguments are in registers:
//! `(cmd, count, buffer VA)`.

/// Write `count` bytes from the buffer; returns 0 on success (not a byte count).
pub const CONSOLEIO_WRITE: u32 = 0;
/// Read up to `count` bytes of console input into the buffer; returns the count read.
pub const CONSOLEIO_READ: u32 = 1;
