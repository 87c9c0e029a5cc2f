//! `multicall`: a batch of hypercalls, each result written back into its entry. A multicall
//! inside a multicall is -EINVAL in that entry. Long batches continue in a new trap, and so
//! does an entry that is itself a long batch (its progress is kept in its own arguments).

use super::{dispatch_step, read_arg, write_arg, HypercallCtx, Outcome};
use guest_abi::errno::{ret, EINVAL};
use guest_abi::hypercall::HYPERVISOR_MULTICALL;
use guest_abi::multicall::MulticallEntry;

/// Entries run per trap before the batch continues.
pub const CALLS_PER_TRAP: u32 = 32;
const ENTRY: u64 = core::mem::size_of::<MulticallEntry>() as u64;

pub fn multicall(cx: &mut HypercallCtx<'_, '_>, list: u64, nr: u64) -> Outcome {
    let nr = nr as u32;
    let n = nr.min(CALLS_PER_TRAP);
    for i in 0..u64::from(n) {
        let at = list.wrapping_add(i * ENTRY);
        let e: MulticallEntry = match read_arg(cx.mem, at) {
            Ok(e) => e,
            Err(r) => return Outcome::Return(r),
        };
        let result = if e.op == HYPERVISOR_MULTICALL {
            ret(EINVAL)
        } else {
            match dispatch_step(cx, e.op, [e.args[0], e.args[1], e.args[2], e.args[3], e.args[4]]) {
                Outcome::Return(r) => r,
                // The entry itself is a long batch: store its progress in the entry's arguments
                // and continue the multicall from this entry (so no entry holds the CPU long).
                Outcome::Continue { x0, x1, x2 } => {
                    if let Err(r) = write_arg(cx.mem, at.wrapping_add(16), &[x0, x1, x2]) {
                        return Outcome::Return(r);
                    }
                    return Outcome::Continue { x0: at, x1: u64::from(nr) - i, x2: 0 };
                }
            }
        };
        if let Err(r) = write_arg(cx.mem, at.wrapping_add(8), &result) {
            return Outcome::Return(r);
        }
        // A call that stopped the domain ends the batch.
        if cx.domains.get(cx.caller).is_some_and(|d| d.shutdown().is_some()) {
            return Outcome::Return(0);
        }
    }
    if n < nr {
        return Outcome::Continue { x0: list.wrapping_add(u64::from(n) * ENTRY), x1: u64::from(nr - n), x2: 0 };
    }
    Outcome::Return(0)
}

#[cfg(test)]
mod tests {
    use super::super::guest_phys::env::*;
    use super::*;
    use super::super::dispatch;
    use alloc::vec::Vec;
    use guest_abi::errno::{EFAULT, ENOSYS};

    fn entry(op: u64, a0: u64) -> MulticallEntry {
        MulticallEntry { op, result: 0x7777, args: [a0, 0, 0, 0, 0, 0] }
    }

    #[test]
    fn results_land_in_the_entries() {
        let mut e = Env::new();
        e.put(0, &entry(29, 0)); // sched_op yield
        e.put(64, &entry(17, 0)); // xen_version
        e.put(128, &entry(100, 0));
        e.put(192, &entry(13, 0));
        assert_eq!(e.call(0, |cx| dispatch(cx, 13, [ARGS, 4, 0, 0, 0])), 0);
        let results: Vec<i64> = (0..4).map(|i| e.get::<MulticallEntry>(i * 64).result).collect();
        assert_eq!(results[0], 0);
        assert!(results[1] > 0x40000);
        assert_eq!(&results[2..], &[ret(ENOSYS), ret(EINVAL)]);
        assert_eq!(e.call(0, |cx| dispatch(cx, 13, [0xdead_0000, 1, 0, 0, 0])), ret(EFAULT));
        assert_eq!(e.call(0, |cx| dispatch(cx, 13, [0xdead_0000, 0, 0, 0, 0])), 0);
    }

    #[test]
    fn long_batches_continue() {
        let mut e = Env::new();
        let n = u64::from(CALLS_PER_TRAP) + 2;
        for i in 0..n {
            e.put(i * 64, &entry(29, 0));
        }
        let o = e.call(0, |cx| multicall(cx, ARGS, n));
        assert_eq!(o, Outcome::Continue { x0: ARGS + u64::from(CALLS_PER_TRAP) * 64, x1: 2, x2: 0 });
        assert_eq!(e.call(0, |cx| dispatch(cx, 13, [ARGS, n, 0, 0, 0])), 0);
        assert_eq!(e.get::<MulticallEntry>((n - 1) * 64).result, 0);
    }

    #[test]
    fn an_entry_that_is_a_long_batch_continues_the_multicall() {
        use guest_abi::grant_table::{GnttabCacheFlush, GNTTAB_CACHE_CLEAN};
        let mut e = Env::new();
        let per = u64::from(super::super::grant_table::OPS_PER_TRAP);
        let n = per + 5;
        for i in 0..n {
            e.put(0x400 + i * 16, &GnttabCacheFlush { a: RAM, offset: 0, length: 8, op: GNTTAB_CACHE_CLEAN });
        }
        e.put(0, &entry(29, 0));
        e.put(64, &MulticallEntry { op: 20, result: 0x7777, args: [12, ARGS + 0x400, n, 0, 0, 0] });
        let o = e.call(0, |cx| multicall(cx, ARGS, 2));
        assert_eq!(o, Outcome::Continue { x0: ARGS + 64, x1: 1, x2: 0 });
        assert_eq!(e.get::<MulticallEntry>(64).args[..3], [12, ARGS + 0x400 + per * 16, 5]);
        assert_eq!(e.call(0, |cx| dispatch(cx, 13, [ARGS + 64, 1, 0, 0, 0])), 0);
        assert_eq!(e.get::<MulticallEntry>(64).result, 0);
    }
}
