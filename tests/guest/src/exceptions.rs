//! What the EL1 vectors saw: the assembly in `boot.rs` fills [`EXCEPTION_RECORD`]; tests clear it,
//! run an instruction that should (or should not) trap, and read it back.

use core::ptr::{addr_of, addr_of_mut};

/// Filled by the vectors: count, vector index (0..16), ESR_EL1, FAR_EL1, ELR_EL1.
#[no_mangle]
pub static mut EXCEPTION_RECORD: [u64; 5] = [0; 5];

/// ESR_EL1.EC: unknown reason (what an injected UNDEF shows).
pub const EC_UNKNOWN: u32 = 0x00;
/// ESR_EL1.EC: data abort taken without a change in exception level.
pub const EC_DABT_CUR: u32 = 0x25;

/// ESR_EL1.IL: a 32-bit instruction trapped.
pub const ESR_IL: u64 = 1 << 25;

/// One recorded exception.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exception {
    /// Vector index: 4 = synchronous from the current EL with SP_ELx.
    pub vector: u64,
    /// ESR_EL1.
    pub esr: u64,
    /// FAR_EL1 (meaningful for aborts only).
    pub far: u64,
    /// ELR_EL1 as taken (before the handler's + 4).
    pub elr: u64,
}

impl Exception {
    /// Exception class.
    pub fn ec(&self) -> u32 {
        ((self.esr >> 26) & 0x3f) as u32
    }
}

/// Forgets earlier exceptions.
pub fn clear() {
    // SAFETY: single CPU; the vectors only write while a test instruction traps.
    unsafe { addr_of_mut!(EXCEPTION_RECORD).write_volatile([0; 5]) };
}

/// The number of exceptions since [`clear`] and the last one.
pub fn last() -> (u64, Option<Exception>) {
    // SAFETY: as in `clear`.
    let r = unsafe { addr_of!(EXCEPTION_RECORD).read_volatile() };
    let e = (r[0] != 0).then_some(Exception { vector: r[1], esr: r[2], far: r[3], elr: r[4] });
    (r[0], e)
}
