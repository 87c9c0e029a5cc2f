//! Where the layer's warnings go. The layer never panics on a consistency problem: it returns
//! an error and reports it here. The embedder installs a sink (a UART, the kernel log); by
//! default warnings are counted and dropped.

use core::fmt;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

/// A warning sink: receives one formatted warning.
pub type LogSink = fn(&fmt::Arguments<'_>);

static SINK: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());
static WARNINGS: AtomicU64 = AtomicU64::new(0);

/// Install the warning sink (replacing any previous one).
pub fn set_sink(sink: LogSink) {
    SINK.store(sink as *mut (), Ordering::Release);
}

/// How many warnings have been issued in this process (all instances).
pub fn warning_count() -> u64 {
    WARNINGS.load(Ordering::Relaxed)
}

/// Report one warning.
pub fn warn(args: fmt::Arguments<'_>) {
    WARNINGS.fetch_add(1, Ordering::Relaxed);
    let p = SINK.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: the only non-null value ever stored is a `LogSink` cast in `set_sink`.
        let sink: LogSink = unsafe { core::mem::transmute::<*mut (), LogSink>(p) };
        sink(&args);
    }
}

/// `dma_warn!("fmt", args..)`: report a warning through the installed sink.
#[macro_export]
macro_rules! dma_warn {
    ($($arg:tt)*) => { $crate::log::warn(format_args!($($arg)*)) };
}
