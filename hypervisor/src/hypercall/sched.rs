//! `sched_op`: yield and shutdown for now (one vCPU per physical CPU, no scheduler yet).

use super::{read_arg, GuestMemory};
use crate::domain::{Domain, ShutdownReason};
use guest_abi::errno::{ret, EINVAL, ENOSYS, EPERM, ESRCH};
use guest_abi::sched::*;

/// `sched_op` with the whole context: poll and remote_shutdown look beyond the caller.
pub fn sched_op_cx(cx: &mut super::HypercallCtx<'_, '_>, cmd: u64, arg: u64) -> i64 {
    match cmd as u32 {
        SCHEDOP_POLL => match read_arg::<SchedPoll>(cx.mem, arg) {
            Ok(p) if p.nr_ports > SCHED_POLL_MAX_PORTS => ret(EINVAL),
            // One vCPU and nothing else to run: return at once (a poll may wake spuriously).
            Ok(_) => 0,
            Err(e) => e,
        },
        SCHEDOP_REMOTE_SHUTDOWN => {
            let r: SchedRemoteShutdown = match read_arg(cx.mem, arg) {
                Ok(r) => r,
                Err(e) => return e,
            };
            let privileged = cx.domains.get(cx.caller).is_some_and(|d| d.is_hardware);
            let Some(target) = cx.domains.get(r.domain_id) else { return ret(ESRCH) };
            if !privileged {
                return ret(EPERM);
            }
            match ShutdownReason::from_code(r.reason) {
                Some(reason) => {
                    target.set_shutdown(reason);
                    0
                }
                None => ret(EINVAL),
            }
        }
        _ => match cx.domains.get(cx.caller) {
            Some(dom) => sched_op(dom, cx.mem, cmd, arg),
            None => ret(ESRCH),
        },
    }
}

pub fn sched_op(dom: &Domain, mem: &mut dyn GuestMemory, cmd: u64, arg: u64) -> i64 {
    match cmd as u32 {
        SCHEDOP_YIELD => 0,
        SCHEDOP_SHUTDOWN => {
            let s: SchedShutdown = match read_arg(mem, arg) {
                Ok(v) => v,
                Err(e) => return e,
            };
            match ShutdownReason::from_code(s.reason) {
                Some(r) => {
                    dom.set_shutdown(r);
                    0
                }
                None => ret(EINVAL),
            }
        }
        _ => ret(ENOSYS),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testmem::*;
    use super::*;
    use guest_abi::errno::EFAULT;

    #[test]
    fn yield_and_unknown() {
        let mut d = dom0();
        let mut m = FlatMemory::new(0x1000, 0x1000);
        assert_eq!(sched_op(&mut d, &mut m, 0, 0), 0);
        assert_eq!(sched_op(&mut d, &mut m, 99, 0), ret(ENOSYS));
        assert_eq!(d.shutdown(), None);
    }

    #[test]
    fn shutdown_records_the_reason_or_faults() {
        let mut d = dom0();
        let mut m = FlatMemory::new(0x1000, 0x1000);
        assert_eq!(sched_op(&mut d, &mut m, 2, 0x9999_0000), ret(EFAULT));
        assert_eq!(d.shutdown(), None);
        m.bytes[0] = 1;
        assert_eq!(sched_op(&mut d, &mut m, 2, 0x1000), 0);
        assert_eq!(d.shutdown(), Some(ShutdownReason::Reboot));
    }

    #[test]
    fn poll_and_remote_shutdown() {
        use super::super::guest_phys::env::*;
        let mut e = Env::new();
        let call = |e: &mut Env, caller, cmd: u32| e.call(caller, |cx| sched_op_cx(cx, u64::from(cmd), ARGS));
        e.put(0, &SchedPoll { ports: 0, nr_ports: 129, timeout: 0 });
        assert_eq!(call(&mut e, 0, SCHEDOP_POLL), ret(EINVAL));
        e.put(0, &SchedPoll { ports: 0, nr_ports: 1, timeout: 0 });
        assert_eq!(call(&mut e, 0, SCHEDOP_POLL), 0);
        e.put(0, &SchedRemoteShutdown { domain_id: 0x1234, reason: 0 });
        assert_eq!(call(&mut e, 0, SCHEDOP_REMOTE_SHUTDOWN), ret(ESRCH));
        e.put(0, &SchedRemoteShutdown { domain_id: 0, reason: 0 });
        assert_eq!(call(&mut e, 1, SCHEDOP_REMOTE_SHUTDOWN), ret(EPERM));
        e.put(0, &SchedRemoteShutdown { domain_id: 1, reason: 3 });
        assert_eq!(call(&mut e, 0, SCHEDOP_REMOTE_SHUTDOWN), 0);
        assert_eq!(e.dom(1).shutdown(), Some(ShutdownReason::Crash));
        assert_eq!(call(&mut e, 0, SCHEDOP_YIELD), 0);
    }
}
