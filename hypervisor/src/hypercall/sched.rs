//! `sched_op`: yield, block, shutdown, shutdown_code, poll, remote_shutdown and pin_override (one
//! vCPU per physical CPU, no scheduler yet); watchdog ids are checked but no watchdog is armed.

use super::{read_arg, GuestMemory};
use crate::domain::{Domain, ShutdownReason};
use guest_abi::errno::{ret, EINVAL, ENOSYS, EPERM, ESRCH};
use guest_abi::sched::*;

/// `sched_op` with the whole context: poll and remote_shutdown look beyond the caller.
pub fn sched_op_cx(cx: &mut super::HypercallCtx<'_, '_>, cmd: u64, arg: u64) -> i64 {
    match cmd as u32 {
        SCHEDOP_POLL => match read_arg::<SchedPoll>(cx.mem, arg) {
            Ok(p) if p.nr_ports > SCHED_POLL_MAX_PORTS => ret(EINVAL),
            Ok(p) => poll(cx, &p),
            Err(e) => e,
        },
        SCHEDOP_PIN_OVERRIDE => pin_override(cx, arg),
        // Block until an event: event delivery is enabled (as Xen does), then the call returns
        // at once, a wake-up a blocking guest allows (it re-checks and blocks again). Each
        // vCPU has its CPU to itself: there is nothing else to run meanwhile.
        SCHEDOP_BLOCK => match cx.domains.get(cx.caller) {
            Some(d) => {
                let mem = cx.machine.mem;
                d.with_evtchn(|ev| ev.enable_upcalls(cx.vcpu, mem));
                0
            }
            None => ret(ESRCH),
        },
        // A scheduling point once the call returns: `after::after_hypercall` reports it to
        // the architecture, which carries it out.
        SCHEDOP_YIELD => match cx.domains.get(cx.caller) {
            Some(d) => {
                d.request_yield(cx.vcpu);
                0
            }
            None => ret(ESRCH),
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

/// SCHEDOP_poll: every port must be one of the caller's (in a bucket it has, bound to
/// something); a pending one ends the poll. Each vCPU has its CPU to itself and nothing else
/// runs there, so instead of blocking the call returns at once, which a poll may always do
/// (the guest re-checks its ports). An event already waiting for the vCPU ends it before the
/// ports are looked at.
fn poll(cx: &mut super::HypercallCtx<'_, '_>, p: &SchedPoll) -> i64 {
    let Some(d) = cx.domains.get(cx.caller) else { return ret(ESRCH) };
    let vcpu = cx.vcpu;
    let mem = cx.machine.mem;
    if d.with_evtchn(|ev| ev.upcall_pending(vcpu, mem)) {
        return 0;
    }
    for i in 0..u64::from(p.nr_ports) {
        let port: u32 = match read_arg(cx.mem, p.ports.wrapping_add(i * 4)) {
            Ok(v) => v,
            Err(e) => return e,
        };
        let (live, pending) = d.with_evtchn(|ev| (ev.is_valid(port) && ev.is_live(port), ev.is_pending(port, mem)));
        if !live {
            return ret(EINVAL);
        }
        if pending {
            return 0;
        }
    }
    0
}

/// Physical CPUs a pin may name (Xen's NR_CPUS on arm64).
const NR_CPUS: i32 = 256;

/// SCHEDOP_pin_override: the hardware domain may pin its vCPU to a CPU for a while (to call
/// firmware there). Each vCPU here runs on its own CPU and never moves: asking for that CPU
/// succeeds, anything else (another CPU, or ending an override that is not in force) fails.
fn pin_override(cx: &mut super::HypercallCtx<'_, '_>, arg: u64) -> i64 {
    if !cx.domains.get(cx.caller).is_some_and(|d| d.is_hardware) {
        return ret(EPERM);
    }
    let pcpu: i32 = match read_arg(cx.mem, arg) {
        Ok(v) => v,
        Err(e) => return e,
    };
    if !(0..NR_CPUS).contains(&pcpu) || pcpu as u32 != cx.vcpu {
        return ret(EINVAL);
    }
    0
}

/// Watchdog timers a domain may have.
const NR_WATCHDOGS: u32 = 2;

pub fn sched_op(dom: &Domain, mem: &mut dyn GuestMemory, cmd: u64, arg: u64) -> i64 {
    match cmd as u32 {
        SCHEDOP_YIELD => 0,
        SCHEDOP_SHUTDOWN_CODE => match read_arg::<SchedShutdown>(mem, arg) {
            // The code the toolstack sees (getdomaininfo), kept from the first call or shutdown.
            Ok(s) => {
                dom.set_shutdown_code(s.reason as u8);
                0
            }
            Err(e) => e,
        },
        SCHEDOP_WATCHDOG => match read_arg::<[u32; 2]>(mem, arg) {
            Ok([id, _]) if id > NR_WATCHDOGS => ret(EINVAL),
            // No watchdog timers are kept: arming one is refused.
            Ok(_) => ret(ENOSYS),
            Err(e) => e,
        },
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
        // ports the caller does not have, or an unreadable list, fail; its own live port is fine
        e.put(0x100, &63u32);
        e.put(0, &SchedPoll { ports: ARGS + 0x100, nr_ports: 1, timeout: 0 });
        assert_eq!(call(&mut e, 0, SCHEDOP_POLL), ret(EINVAL));
        e.put(0, &SchedPoll { ports: 0xdead_0000, nr_ports: 1, timeout: 0 });
        assert_eq!(call(&mut e, 0, SCHEDOP_POLL), ret(guest_abi::errno::EFAULT));
        let port = e.call(0, |cx| cx.domains.get(0).unwrap().with_evtchn(|ev| ev.alloc(crate::domain::evtchn::PortState::Ipi))).unwrap();
        e.put(0x100, &port);
        e.put(0, &SchedPoll { ports: ARGS + 0x100, nr_ports: 1, timeout: 0 });
        assert_eq!(call(&mut e, 0, SCHEDOP_POLL), 0);
        assert_eq!(call(&mut e, 1, SCHEDOP_POLL), ret(EINVAL), "dom1 has no such port");
        // pin_override: dom0 only, its own CPU only
        e.put(0, &-1i32);
        assert_eq!(call(&mut e, 0, SCHEDOP_PIN_OVERRIDE), ret(EINVAL));
        e.put(0, &0i32);
        assert_eq!(call(&mut e, 0, SCHEDOP_PIN_OVERRIDE), 0);
        assert_eq!(call(&mut e, 1, SCHEDOP_PIN_OVERRIDE), ret(EPERM));
        e.put(0, &[5u32, 0]);
        assert_eq!(call(&mut e, 0, SCHEDOP_WATCHDOG), ret(EINVAL));
        assert_eq!(call(&mut e, 0, SCHEDOP_SHUTDOWN_CODE), 0);
        // block: returns, with event delivery enabled
        use platform::PhysMem;
        let vi = e.call(0, |cx| {
            let d = cx.domains.get(0).unwrap();
            d.with_evtchn(|ev| crate::hypercall::guest_phys::shared_info(ev, cx.machine)).unwrap()
        });
        e.phys.write(vi + 1, &[1]).unwrap();
        assert_eq!(call(&mut e, 0, SCHEDOP_BLOCK), 0);
        let mut mask = [0xffu8];
        e.phys.read(vi + 1, &mut mask).unwrap();
        assert_eq!(mask[0], 0);
        assert_eq!(e.dom(0).shutdown(), None);
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
