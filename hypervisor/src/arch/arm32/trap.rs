//! Traps from guests (and, as bugs, from HYP mode itself): decode HSR and hand the work to the
//! arch-neutral handlers.

use super::entry::TrapFrame;
use super::regs::{Hdfar, Hifar, Hsr};
use super::psci;
use crate::log;

#[no_mangle]
extern "C" fn xenith_trap_guest(frame: &mut TrapFrame) {
    log!("trap from a guest (HSR {:#x}) at {:#x}: no guest runs yet", Hsr::read(), frame.elr);
    psci::system_off();
}

#[no_mangle]
extern "C" fn xenith_trap_guest_irq(_frame: &mut TrapFrame) {}

/// An exception taken in HYP mode itself: a hypervisor bug. Report everything and stop.
#[no_mangle]
extern "C" fn xenith_trap_hyp(frame: &mut TrapFrame, kind: u32) -> ! {
    let kinds = ["reset", "undefined instruction", "HVC in HYP mode", "prefetch abort", "data abort"];
    log!(
        "HYPERVISOR BUG: {} in HYP mode: HSR {:#x} ELR {:#x} SPSR {:#x} HDFAR {:#x} HIFAR {:#x}",
        kinds.get(kind as usize).copied().unwrap_or("?"),
        Hsr::read(),
        frame.elr,
        frame.spsr,
        Hdfar::read(),
        Hifar::read()
    );
    for (i, pair) in frame.r.chunks(2).enumerate() {
        match pair {
            [a, b] => log!("  r{:<2} {a:#010x}  r{:<2} {b:#010x}", 2 * i, 2 * i + 1),
            [a] => log!("  r{:<2} {a:#010x}  lr  {:#010x}", 2 * i, frame.lr_usr),
            _ => {}
        }
    }
    psci::system_off();
}
