//! Console: log ring + UART output.
