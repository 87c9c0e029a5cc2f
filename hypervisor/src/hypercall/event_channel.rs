//! `event_channel_op`: alloc_unbound, bind_interdomain, bind_virq, bind_ipi, close, send,
//! unmask, bind_vcpu, status, reset (which also returns a FIFO domain to 2-level, as Xen);
//! bind_pirq answered as Xen 4.17 on ARM; the FIFO ABI's init_control, expand_array and
//! set_priority. Delivery (2-level pending bits and selector, or FIFO event words and queues,
//! then evtchn_upcall_pending) is `domain::evtchn`; injecting the interrupt is the vGIC's,
//! driven by `Domain::evtchn.upcall_pending`.

use super::guest_phys as gp;
use super::{read_arg, write_arg, HypercallCtx};
use crate::domain::evtchn::{EventChannels, PortState, NR_PORTS};
use crate::domain::{DomId, Domain};
use guest_abi::errno::{ret, EEXIST, EINVAL, ENOENT, ENOMEM, ENOSPC, ENOSYS, EOPNOTSUPP, EPERM, ESRCH};
use guest_abi::event_channel::*;

/// How many vCPUs the calling domain has (ids at or above it are -ENOENT).
pub fn nr_vcpus(cx: &HypercallCtx<'_, '_>) -> u32 {
    cx.domains.get(cx.caller).map_or(0, |d| d.max_vcpus)
}

/// Virtual IRQs delivered per vCPU; the others are global (bound on vCPU 0 only).
fn virq_is_per_vcpu(virq: u32) -> bool {
    matches!(virq, VIRQ_TIMER | VIRQ_DEBUG | VIRQ_XENOPROF | VIRQ_XENPMU)
}

pub fn event_channel_op(cx: &mut HypercallCtx<'_, '_>, cmd: u64, arg: u64) -> i64 {
    let r = match cmd as u32 {
        EVTCHNOP_ALLOC_UNBOUND => alloc_unbound(cx, arg),
        EVTCHNOP_BIND_INTERDOMAIN => bind_interdomain(cx, arg),
        EVTCHNOP_BIND_VIRQ => bind_virq(cx, arg),
        EVTCHNOP_CLOSE => read_arg::<EvtchnClose>(cx.mem, arg).and_then(|c| close(cx, c.port)),
        EVTCHNOP_SEND => read_arg::<EvtchnSend>(cx.mem, arg).and_then(|s| send(cx, s.port)),
        EVTCHNOP_UNMASK => read_arg::<EvtchnUnmask>(cx.mem, arg).and_then(|u| unmask(cx, u.port)),
        EVTCHNOP_BIND_VCPU => bind_vcpu(cx, arg),
        EVTCHNOP_INIT_CONTROL => init_control(cx, arg),
        EVTCHNOP_EXPAND_ARRAY => expand_array(cx, arg),
        EVTCHNOP_STATUS => status(cx, arg),
        EVTCHNOP_BIND_IPI => bind_ipi(cx, arg),
        EVTCHNOP_BIND_PIRQ => bind_pirq(cx, arg),
        EVTCHNOP_SET_PRIORITY => set_priority(cx, arg),
        EVTCHNOP_RESET | EVTCHNOP_RESET_CONT => reset(cx, arg),
        _ => Err(ret(ENOSYS)),
    };
    r.err().unwrap_or(0)
}

fn alloc_unbound(cx: &mut HypercallCtx<'_, '_>, arg: u64) -> Result<(), i64> {
    let mut a: EvtchnAllocUnbound = read_arg(cx.mem, arg)?;
    let dom = gp::resolve(cx.caller, a.dom);
    let remote = gp::resolve(cx.caller, a.remote_dom);
    let privileged = cx.domains.get(cx.caller).is_some_and(|d| d.is_hardware);
    if cx.domains.get(dom).is_none() || cx.domains.get(remote).is_none() {
        return Err(ret(ESRCH));
    }
    if dom != cx.caller && !privileged {
        return Err(ret(EPERM));
    }
    let d = cx.domains.get(dom).ok_or(ret(ESRCH))?;
    let port = d.with_evtchn(|ev| ev.alloc(PortState::Unbound { remote })).ok_or(ret(ENOSPC))?;
    a.port = port;
    write_arg(cx.mem, arg, &a)
}

/// Run `f` on the event channels of `a` and `b` (two different domains), locked in domain-id
/// order; upcalls it raises are published as `Domain::with_evtchn` does.
fn with_two<R>(a: &Domain, b: &Domain, f: impl FnOnce(&mut EventChannels, &mut EventChannels) -> R) -> R {
    if a.id < b.id {
        a.with_evtchn(|ea| b.with_evtchn(|eb| f(ea, eb)))
    } else {
        b.with_evtchn(|eb| a.with_evtchn(|ea| f(ea, eb)))
    }
}

fn bind_interdomain(cx: &mut HypercallCtx<'_, '_>, arg: u64) -> Result<(), i64> {
    let mut b: EvtchnBindInterdomain = read_arg(cx.mem, arg)?;
    let caller = cx.caller;
    let remote = gp::resolve(caller, b.remote_dom);
    let rd = cx.domains.get(remote).ok_or(ret(ESRCH))?;
    let ld = cx.domains.get(caller).ok_or(ret(ESRCH))?;
    let rport = b.remote_port;
    let lport = if remote == caller {
        ld.with_evtchn(|ev| {
            if ev.state(rport) != (PortState::Unbound { remote: caller }) {
                return Err(ret(EINVAL));
            }
            let lport = ev.alloc(PortState::Interdomain { dom: remote, port: rport }).ok_or(ret(ENOSPC))?;
            ev.set(rport, PortState::Interdomain { dom: caller, port: lport });
            Ok(lport)
        })?
    } else {
        // Both ends change together: no other vCPU binds or closes either in between.
        with_two(ld, rd, |lev, rev| {
            // A domain being destroyed takes no new peers: its ports are closed under these
            // locks once it is marked dying, and a channel made after that would outlive it.
            if rd.dying() {
                return Err(ret(ESRCH));
            }
            if rev.state(rport) != (PortState::Unbound { remote: caller }) {
                return Err(ret(EINVAL));
            }
            let lport = lev.alloc(PortState::Interdomain { dom: remote, port: rport }).ok_or(ret(ENOSPC))?;
            rev.set(rport, PortState::Interdomain { dom: caller, port: lport });
            Ok(lport)
        })?
    };
    // Events sent to the unbound end may have been lost: signal the new port once (as Xen).
    raise(cx, caller, lport, None);
    b.local_port = lport;
    write_arg(cx.mem, arg, &b)
}

fn bind_virq(cx: &mut HypercallCtx<'_, '_>, arg: u64) -> Result<(), i64> {
    let mut b: EvtchnBindVirq = read_arg(cx.mem, arg)?;
    if b.virq >= NR_VIRQS || (!virq_is_per_vcpu(b.virq) && b.vcpu != 0) {
        return Err(ret(EINVAL));
    }
    if b.vcpu >= nr_vcpus(cx) {
        return Err(ret(ENOENT));
    }
    let d = cx.domains.get(cx.caller).ok_or(ret(ESRCH))?;
    b.port = d.with_evtchn(|ev| {
        if ev.virq_port_on(b.virq, b.vcpu).is_some() {
            return Err(ret(EEXIST));
        }
        ev.alloc_on(PortState::Virq(b.virq), b.vcpu).ok_or(ret(ENOSPC))
    })?;
    write_arg(cx.mem, arg, &b)
}

/// EVTCHNOP_close. An interdomain port and its other end change under both domains' locks
/// (in id order), so a send that already read the port can tell: it only raises the other
/// end while that end still names the sender's port (see [`send`]).
pub fn close(cx: &mut HypercallCtx<'_, '_>, port: u32) -> Result<(), i64> {
    let caller = cx.caller;
    let mem = cx.machine.mem;
    let d = cx.domains.get(caller).ok_or(ret(ESRCH))?;
    loop {
        match d.with_evtchn(|ev| ev.state(port)) {
            PortState::Free => return Err(ret(EINVAL)),
            PortState::Interdomain { dom, port: rport } if dom != caller => {
                let Some(rd) = cx.domains.get(dom) else {
                    d.with_evtchn(|ev| {
                        ev.free(port);
                        ev.clear_pending(port, mem);
                    });
                    return Ok(());
                };
                let done = with_two(d, rd, |ev, rev| {
                    // Another vCPU may have closed or rebound the port since it was read.
                    if ev.state(port) != (PortState::Interdomain { dom, port: rport }) {
                        return false;
                    }
                    ev.free(port);
                    ev.clear_pending(port, mem);
                    // The other end goes back to waiting for us.
                    if rev.state(rport) == (PortState::Interdomain { dom: caller, port }) {
                        rev.set(rport, PortState::Unbound { remote: caller });
                    }
                    true
                });
                if done {
                    return Ok(());
                }
            }
            state => {
                let freed = d.with_evtchn(|ev| {
                    if ev.state(port) != state {
                        return false;
                    }
                    if let PortState::Interdomain { port: rport, .. } = state {
                        // A loopback channel: its other end is ours too.
                        if ev.state(rport) == (PortState::Interdomain { dom: caller, port }) && rport != port {
                            ev.set(rport, PortState::Unbound { remote: caller });
                        }
                    }
                    ev.free(port);
                    ev.clear_pending(port, mem);
                    true
                });
                if freed {
                    return Ok(());
                }
            }
        }
    }
}

/// Close every port of `gone`, a domain being destroyed (already marked dying, so no new
/// channel reaches it): the other end of each interdomain channel goes back to waiting for
/// `gone`'s id, as after a close, and is not signalled.
pub fn close_all(domains: &crate::domain::registry::Domains, gone: &Domain, mem: &dyn platform::PhysMem) {
    let ports: alloc::vec::Vec<(u32, PortState)> = gone.with_evtchn(|ev| ev.live_ports().map(|p| (p, ev.state(p))).collect());
    for (port, state) in ports {
        let peer = match state {
            PortState::Interdomain { dom, port: rport } if dom != gone.id => domains.get(dom).map(|rd| (rd, rport)),
            _ => None,
        };
        match peer {
            Some((rd, rport)) => with_two(gone, rd, |ev, rev| {
                if rev.state(rport) == (PortState::Interdomain { dom: gone.id, port }) {
                    rev.set(rport, PortState::Unbound { remote: gone.id });
                }
                ev.free(port);
                ev.clear_pending(port, mem);
            }),
            None => gone.with_evtchn(|ev| {
                ev.free(port);
                ev.clear_pending(port, mem);
            }),
        }
    }
}

/// Mark `port` of `dom` pending (creating its shared_info page if it has none yet). With
/// `from = Some((sender, sender_port))`, only while the port is still the other end of that
/// channel: a close that finished before this took the lock leaves it unbound, and the event
/// is dropped as on a closed channel.
fn raise(cx: &mut HypercallCtx<'_, '_>, dom: DomId, port: u32, from: Option<(DomId, u32)>) {
    let Some(d) = cx.domains.get(dom) else { return };
    let machine = &mut *cx.machine;
    d.with_evtchn(|ev| {
        if let Some((sdom, sport)) = from {
            if ev.state(port) != (PortState::Interdomain { dom: sdom, port: sport }) {
                return;
            }
        }
        if gp::shared_info(ev, machine).is_ok() {
            ev.set_pending(port, machine.mem);
        }
    });
}

/// EVTCHNOP_send: the sender's port is read under its lock, the other end raised under the
/// other domain's (never both at once: a send takes one event-channel lock at a time).
pub fn send(cx: &mut HypercallCtx<'_, '_>, port: u32) -> Result<(), i64> {
    let d = cx.domains.get(cx.caller).ok_or(ret(ESRCH))?;
    match d.with_evtchn(|ev| ev.state(port)) {
        PortState::Interdomain { dom, port: rport } => {
            raise(cx, dom, rport, Some((cx.caller, port)));
            Ok(())
        }
        PortState::Unbound { .. } => Ok(()), // nobody listens yet: dropped
        PortState::Ipi => {
            raise(cx, cx.caller, port, None);
            Ok(())
        }
        _ => Err(ret(EINVAL)),
    }
}

/// EVTCHNOP_unmask: a port of an allocated bucket is accepted even while free (nothing to
/// deliver then).
fn unmask(cx: &mut HypercallCtx<'_, '_>, port: u32) -> Result<(), i64> {
    let d = cx.domains.get(cx.caller).ok_or(ret(ESRCH))?;
    let mem = cx.machine.mem;
    d.with_evtchn(|ev| {
        if !ev.is_valid(port) {
            return Err(ret(EINVAL));
        }
        if ev.is_live(port) {
            ev.unmask(port, mem);
        }
        Ok(())
    })
}

/// Raise virtual IRQ `virq` in `d` if it is bound (VIRQ_CONSOLE on input, VIRQ_TIMER, ...).
pub fn send_virq(d: &Domain, m: &mut crate::domain::registry::Machine<'_>, virq: u32) {
    d.with_evtchn(|ev| {
        if let Some(port) = ev.virq_port(virq) {
            if gp::shared_info(ev, m).is_ok() {
                ev.set_pending(port, m.mem);
            }
        }
    });
}

fn bind_vcpu(cx: &mut HypercallCtx<'_, '_>, arg: u64) -> Result<(), i64> {
    let b: EvtchnBindVcpu = read_arg(cx.mem, arg)?;
    if b.vcpu >= nr_vcpus(cx) {
        return Err(ret(ENOENT));
    }
    let d = cx.domains.get(cx.caller).ok_or(ret(ESRCH))?;
    d.with_evtchn(|ev| match ev.state(b.port) {
        PortState::Free | PortState::Ipi => Err(ret(EINVAL)),
        PortState::Virq(v) if virq_is_per_vcpu(v) => Err(ret(EINVAL)),
        _ => {
            // Later events on the port notify that vCPU (one already pending stays where it is).
            ev.bind_vcpu(b.port, b.vcpu);
            Ok(())
        }
    })
}

fn init_control(cx: &mut HypercallCtx<'_, '_>, arg: u64) -> Result<(), i64> {
    let c: EvtchnInitControl = read_arg(cx.mem, arg)?;
    // Xen's order: the vCPU, then the offset.
    if c.vcpu >= nr_vcpus(cx) {
        return Err(ret(ENOENT));
    }
    if !c.offset.is_multiple_of(8) || c.offset as usize > 4096 - EVTCHN_FIFO_CONTROL_BLOCK_SIZE {
        return Err(ret(EINVAL));
    }
    let d = cx.domains.get(cx.caller).ok_or(ret(ESRCH))?;
    // The block lives in the domain's own RAM (which stays its own whatever its p2m does).
    let page = gp::own_ram(d, c.control_gfn, cx.machine.mem).ok_or(ret(EINVAL))?;
    let mem = cx.machine.mem;
    d.with_evtchn(|ev| {
        ev.switch_to_fifo(mem);
        let f = ev.fifo.as_mut().ok_or(ret(EINVAL))?;
        f.map_control(c.vcpu, page + u64::from(c.offset)).map_err(|_| ret(EINVAL))
    })?;
    let out = EvtchnInitControl { link_bits: EVTCHN_FIFO_LINK_BITS, ..c };
    write_arg(cx.mem, arg, &out)
}

/// EVTCHNOP_expand_array: the next event-array page, from the domain's own RAM.
fn expand_array(cx: &mut HypercallCtx<'_, '_>, arg: u64) -> Result<(), i64> {
    let a: EvtchnExpandArray = read_arg(cx.mem, arg)?;
    let d = cx.domains.get(cx.caller).ok_or(ret(ESRCH))?;
    let mem = cx.machine.mem;
    // Xen's order: not FIFO, then no page left, then the frame.
    match d.with_evtchn(|ev| ev.fifo.as_ref().map(|f| f.is_full())) {
        None => return Err(ret(EOPNOTSUPP)),
        Some(true) => return Err(ret(ENOSPC)),
        Some(false) => {}
    }
    let page = gp::own_ram(d, a.array_gfn, mem).ok_or(ret(EINVAL))?;
    d.with_evtchn(|ev| {
        let f = ev.fifo.as_mut().ok_or(ret(EOPNOTSUPP))?;
        let range = f.add_page(page).map_err(|_| ret(ENOSPC))?;
        ev.raise_saved(range, mem);
        Ok(())
    })
}

/// The caller may look at or act on `dom`'s ports (its own; any, for the hardware domain).
fn may_target(cx: &HypercallCtx<'_, '_>, dom: DomId) -> bool {
    dom == cx.caller || cx.domains.get(cx.caller).is_some_and(|d| d.is_hardware)
}

/// EVTCHNOP_status: what a port of a domain the caller may inspect is bound to.
fn status(cx: &mut HypercallCtx<'_, '_>, arg: u64) -> Result<(), i64> {
    let mut s: EvtchnStatus = read_arg(cx.mem, arg)?;
    let dom = gp::resolve(cx.caller, s.dom);
    let d = cx.domains.get(dom).ok_or(ret(ESRCH))?;
    let (state, vcpu) = d.with_evtchn(|ev| ev.is_valid(s.port).then(|| (ev.state(s.port), ev.port_vcpu(s.port)))).ok_or(ret(EINVAL))?;
    if !may_target(cx, dom) {
        return Err(ret(EPERM));
    }
    (s.status, s.u) = match state {
        PortState::Free => (EVTCHNSTAT_CLOSED, s.u),
        // The domain ids are 16-bit fields: the bytes after them are left as they were.
        PortState::Unbound { remote } => (EVTCHNSTAT_UNBOUND, [u32::from(remote) | (s.u[0] & 0xffff_0000), s.u[1]]),
        PortState::Interdomain { dom, port } => (EVTCHNSTAT_INTERDOMAIN, [u32::from(dom) | (s.u[0] & 0xffff_0000), port]),
        PortState::Virq(v) => (EVTCHNSTAT_VIRQ, [v, s.u[1]]),
        PortState::Ipi => (EVTCHNSTAT_IPI, s.u),
    };
    s.vcpu = vcpu;
    write_arg(cx.mem, arg, &s)
}

/// EVTCHNOP_bind_ipi: a port that notifies `vcpu` of the caller's own sends.
fn bind_ipi(cx: &mut HypercallCtx<'_, '_>, arg: u64) -> Result<(), i64> {
    let mut b: EvtchnBindIpi = read_arg(cx.mem, arg)?;
    if b.vcpu >= nr_vcpus(cx) {
        return Err(ret(ENOENT));
    }
    let d = cx.domains.get(cx.caller).ok_or(ret(ESRCH))?;
    b.port = d.with_evtchn(|ev| ev.alloc_on(PortState::Ipi, b.vcpu)).ok_or(ret(ENOSPC))?;
    write_arg(cx.mem, arg, &b)
}

/// Physical IRQs a domain could name (Xen on ARM: 1024 for every domain).
const NR_PIRQS: u32 = 1024;

/// EVTCHNOP_bind_pirq: ARM keeps no per-domain physical-IRQ records to bind a port to, so a
/// valid IRQ number fails for want of one (Xen 4.17's -ENOMEM), after the free-port check.
fn bind_pirq(cx: &mut HypercallCtx<'_, '_>, arg: u64) -> Result<(), i64> {
    let b: EvtchnBindPirq = read_arg(cx.mem, arg)?;
    if b.pirq >= NR_PIRQS {
        return Err(ret(EINVAL));
    }
    let d = cx.domains.get(cx.caller).ok_or(ret(ESRCH))?;
    let full = d.with_evtchn(|ev| (1..NR_PORTS).all(|p| ev.is_live(p)));
    Err(ret(if full { ENOSPC } else { ENOMEM }))
}

/// EVTCHNOP_set_priority: priorities are a FIFO-ABI notion; a 2-level domain gets -ENOSYS for
/// any port that exists.
fn set_priority(cx: &mut HypercallCtx<'_, '_>, arg: u64) -> Result<(), i64> {
    let p: EvtchnSetPriority = read_arg(cx.mem, arg)?;
    let d = cx.domains.get(cx.caller).ok_or(ret(ESRCH))?;
    d.with_evtchn(|ev| {
        if !ev.is_valid(p.port) {
            return Err(ret(EINVAL));
        }
        let f = ev.fifo.as_mut().ok_or(ret(ENOSYS))?;
        if p.priority > EVTCHN_FIFO_PRIORITY_MIN {
            return Err(ret(EINVAL));
        }
        f.set_priority(p.port, p.priority as u8);
        Ok(())
    })
}

/// EVTCHNOP_reset: close every port of a domain. Only the domain itself can (another domain
/// would have to be paused by its controller, and nothing pauses domains here).
fn reset(cx: &mut HypercallCtx<'_, '_>, arg: u64) -> Result<(), i64> {
    let r: EvtchnReset = read_arg(cx.mem, arg)?;
    let dom = gp::resolve(cx.caller, r.dom);
    let d = cx.domains.get(dom).ok_or(ret(ESRCH))?;
    if !may_target(cx, dom) {
        return Err(ret(EPERM));
    }
    if dom != cx.caller {
        return Err(ret(EINVAL));
    }
    let ports: alloc::vec::Vec<u32> = d.with_evtchn(|ev| ev.live_ports().collect());
    for port in ports {
        // Each close takes the locks it needs; a port another vCPU closed meanwhile is -EINVAL.
        let _ = close(cx, port);
    }
    d.with_evtchn(|ev| ev.fifo = None);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::guest_phys::env::*;
    use super::*;
    use guest_abi::errno::EFAULT;
    use guest_abi::DOMID_SELF;
    use platform::PhysMem;

    fn op(e: &mut Env, caller: u16, cmd: u32) -> i64 {
        e.call(caller, |cx| super::super::dispatch(cx, 32, [u64::from(cmd), ARGS, 0, 0, 0]))
    }

    fn alloc(e: &mut Env, caller: u16, dom: u16, remote: u16) -> i64 {
        e.put(0, &EvtchnAllocUnbound { dom, remote_dom: remote, port: 0 });
        match op(e, caller, EVTCHNOP_ALLOC_UNBOUND) {
            0 => i64::from(e.get::<EvtchnAllocUnbound>(0).port),
            r => r,
        }
    }

    fn port_op(e: &mut Env, caller: u16, cmd: u32, port: u32) -> i64 {
        e.put(0, &EvtchnSend { port });
        op(e, caller, cmd)
    }

    fn pending(e: &Env, dom: u16, port: u32) -> bool {
        let sh = e.dom(dom).with_evtchn(|ev| ev.shared_info).unwrap();
        e.phys.read_u64(sh + 48 + u64::from(port / 64) * 8).unwrap() & (1 << (port % 64)) != 0
    }

    #[test]
    fn interdomain_channel_between_dom0_and_dom1() {
        let mut e = Env::new();
        assert_eq!(alloc(&mut e, 1, DOMID_SELF, 0), 1);
        e.put(0, &EvtchnBindInterdomain { remote_dom: 1, remote_port: 1, local_port: 0 });
        assert_eq!(op(&mut e, 0, EVTCHNOP_BIND_INTERDOMAIN), 0);
        let local = e.get::<EvtchnBindInterdomain>(0).local_port;
        assert_eq!(local, 1);
        assert!(pending(&e, 0, 1), "bind signals the new port once");
        assert_eq!(op(&mut e, 0, EVTCHNOP_BIND_INTERDOMAIN), ret(EINVAL), "already bound");
        assert_eq!(port_op(&mut e, 0, EVTCHNOP_SEND, local), 0);
        assert!(pending(&e, 1, 1));
        assert_ne!(e.dom(1).take_upcalls(), 0);
        assert_eq!(port_op(&mut e, 1, EVTCHNOP_CLOSE, 1), 0);
        assert_eq!(e.dom(0).with_evtchn(|ev| ev.state(1)), PortState::Unbound { remote: 1 });
        assert_eq!(port_op(&mut e, 0, EVTCHNOP_SEND, 1), 0, "unbound: dropped");
        assert_eq!(port_op(&mut e, 1, EVTCHNOP_CLOSE, 1), ret(EINVAL));
    }

    #[test]
    fn alloc_checks_domains() {
        let mut e = Env::new();
        assert_eq!(alloc(&mut e, 0, DOMID_SELF, 0x1234), ret(ESRCH));
        assert_eq!(alloc(&mut e, 0, 0x1234, DOMID_SELF), ret(ESRCH));
        assert_eq!(alloc(&mut e, 1, 0, 1), ret(EPERM));
        assert_eq!(alloc(&mut e, 0, 1, 0), 1, "dom0 may allocate in dom1");
        assert_eq!(e.call(0, |cx| super::super::dispatch(cx, 32, [6, 0xdead_0000, 0, 0, 0])), ret(EFAULT));
        assert_eq!(e.call(0, |cx| super::super::dispatch(cx, 32, [99, ARGS, 0, 0, 0])), ret(ENOSYS));
    }

    #[test]
    fn virqs() {
        let mut e = Env::new();
        let bind = |e: &mut Env, virq, vcpu| {
            e.put(0, &EvtchnBindVirq { virq, vcpu, port: 0 });
            match op(e, 0, EVTCHNOP_BIND_VIRQ) {
                0 => i64::from(e.get::<EvtchnBindVirq>(0).port),
                r => r,
            }
        };
        assert_eq!(bind(&mut e, VIRQ_CONSOLE, 0), 1);
        assert_eq!(bind(&mut e, VIRQ_CONSOLE, 0), ret(EEXIST));
        assert_eq!(bind(&mut e, VIRQ_TIMER, 0), 2);
        assert_eq!(bind(&mut e, NR_VIRQS, 0), ret(EINVAL));
        assert_eq!(bind(&mut e, VIRQ_CONSOLE, 1), ret(EINVAL));
        assert_eq!(bind(&mut e, VIRQ_DEBUG, 77), ret(ENOENT));
        e.call(0, |cx| {
            let d = cx.domains.get(0).unwrap();
            send_virq(d, cx.machine, VIRQ_CONSOLE);
        });
        assert!(pending(&e, 0, 1));
        assert_eq!(port_op(&mut e, 0, EVTCHNOP_SEND, 1), ret(EINVAL), "virq ports are not sent to");
        e.put(0, &EvtchnBindVcpu { port: 1, vcpu: 0 });
        assert_eq!(op(&mut e, 0, EVTCHNOP_BIND_VCPU), 0);
        e.put(0, &EvtchnBindVcpu { port: 1, vcpu: 77 });
        assert_eq!(op(&mut e, 0, EVTCHNOP_BIND_VCPU), ret(ENOENT));
        e.put(0, &EvtchnBindVcpu { port: 4000, vcpu: 0 });
        assert_eq!(op(&mut e, 0, EVTCHNOP_BIND_VCPU), ret(EINVAL));
        e.put(0, &EvtchnBindVcpu { port: 2, vcpu: 0 });
        assert_eq!(op(&mut e, 0, EVTCHNOP_BIND_VCPU), ret(EINVAL), "per-vCPU virq");
        assert_eq!(port_op(&mut e, 0, EVTCHNOP_CLOSE, 1), 0);
        assert_eq!(bind(&mut e, VIRQ_CONSOLE, 0), 1);
        assert_eq!(port_op(&mut e, 0, EVTCHNOP_UNMASK, 1), 0);
        assert_eq!(port_op(&mut e, 0, EVTCHNOP_UNMASK, 4000), ret(EINVAL));
        assert_eq!(port_op(&mut e, 0, EVTCHNOP_SEND, 0), ret(EINVAL));
    }

    #[test]
    fn status_ipi_pirq_priority_and_reset() {
        let mut e = Env::new();
        let st = |e: &mut Env, caller, dom, port| {
            e.put(0, &EvtchnStatus { dom, port, ..Default::default() });
            match op(e, caller, EVTCHNOP_STATUS) {
                0 => {
                    let s: EvtchnStatus = e.get(0);
                    (i64::from(s.status), s.vcpu, s.u)
                }
                r => (r, 0, [0; 2]),
            }
        };
        assert_eq!(alloc(&mut e, 0, DOMID_SELF, DOMID_SELF), 1);
        assert_eq!(st(&mut e, 0, DOMID_SELF, 1), (i64::from(EVTCHNSTAT_UNBOUND), 0, [0, 0]));
        e.put(0, &EvtchnBindInterdomain { remote_dom: DOMID_SELF, remote_port: 1, local_port: 0 });
        assert_eq!(op(&mut e, 0, EVTCHNOP_BIND_INTERDOMAIN), 0);
        assert_eq!(st(&mut e, 0, DOMID_SELF, 2), (i64::from(EVTCHNSTAT_INTERDOMAIN), 0, [0, 1]));
        assert_eq!(st(&mut e, 0, DOMID_SELF, 63).0, i64::from(EVTCHNSTAT_CLOSED), "free, in the first bucket");
        assert_eq!(st(&mut e, 0, DOMID_SELF, 0).0, i64::from(EVTCHNSTAT_CLOSED), "reserved");
        assert_eq!(st(&mut e, 0, DOMID_SELF, 64).0, ret(EINVAL));
        assert_eq!(st(&mut e, 0, 0x1234, 1).0, ret(ESRCH));
        assert_eq!(st(&mut e, 1, 0, 1).0, ret(EPERM));
        assert_eq!(st(&mut e, 0, 1, 5).0, i64::from(EVTCHNSTAT_CLOSED), "dom0 may look at dom1's ports");
        // an IPI port signals itself
        e.put(0, &EvtchnBindIpi { vcpu: 0, port: 0 });
        assert_eq!(op(&mut e, 0, EVTCHNOP_BIND_IPI), 0);
        let ipi = e.get::<EvtchnBindIpi>(0).port;
        assert_eq!(st(&mut e, 0, DOMID_SELF, ipi).0, i64::from(EVTCHNSTAT_IPI));
        e.put(0, &EvtchnBindIpi { vcpu: 9, port: 0 });
        assert_eq!(op(&mut e, 0, EVTCHNOP_BIND_IPI), ret(ENOENT));
        e.call(0, |cx| {
            let d = cx.domains.get(0).unwrap();
            d.with_evtchn(|ev| gp::shared_info(ev, cx.machine).map(|_| ()))
        })
        .unwrap();
        assert!(!pending(&e, 0, ipi));
        assert_eq!(port_op(&mut e, 0, EVTCHNOP_SEND, ipi), 0);
        assert!(pending(&e, 0, ipi));
        assert_eq!(port_op(&mut e, 0, EVTCHNOP_CLOSE, ipi), 0);
        assert!(!pending(&e, 0, ipi), "a freed port keeps no event");
        e.put(0, &EvtchnBindIpi { vcpu: 0, port: 0 });
        assert_eq!(op(&mut e, 0, EVTCHNOP_BIND_IPI), 0);
        assert_eq!(e.get::<EvtchnBindIpi>(0).port, ipi);
        e.put(0, &EvtchnBindVcpu { port: ipi, vcpu: 0 });
        assert_eq!(op(&mut e, 0, EVTCHNOP_BIND_VCPU), ret(EINVAL));
        // pirqs: none to bind on ARM
        for (pirq, r) in [(5u32, ret(ENOMEM)), (1024, ret(EINVAL))] {
            e.put(0, &EvtchnBindPirq { pirq, flags: 0, port: 0 });
            assert_eq!(op(&mut e, 0, EVTCHNOP_BIND_PIRQ), r);
        }
        // priorities are FIFO-only
        for (port, r) in [(1u32, ret(ENOSYS)), (63, ret(ENOSYS)), (4000, ret(EINVAL))] {
            e.put(0, &EvtchnSetPriority { port, priority: 7 });
            assert_eq!(op(&mut e, 0, EVTCHNOP_SET_PRIORITY), r);
        }
        // unmask of a free port of a bucket: accepted
        assert_eq!(port_op(&mut e, 0, EVTCHNOP_UNMASK, 63), 0);
        assert_eq!(port_op(&mut e, 0, EVTCHNOP_UNMASK, 64), ret(EINVAL));
        // reset: not someone else's, not unknown domains; its own: every port closed
        assert_eq!(alloc(&mut e, 1, DOMID_SELF, 0), 1);
        e.put(0, &EvtchnReset { dom: 1 });
        assert_eq!(op(&mut e, 0, EVTCHNOP_RESET), ret(EINVAL));
        e.put(0, &EvtchnReset { dom: 0 });
        assert_eq!(op(&mut e, 1, EVTCHNOP_RESET), ret(EPERM));
        e.put(0, &EvtchnReset { dom: 0x1234 });
        assert_eq!(op(&mut e, 0, EVTCHNOP_RESET), ret(ESRCH));
        e.put(0, &EvtchnReset { dom: DOMID_SELF });
        assert_eq!(op(&mut e, 0, EVTCHNOP_RESET), 0);
        assert_eq!(e.dom(0).with_evtchn(|ev| ev.live_ports().count()), 0);
        assert_eq!(alloc(&mut e, 0, DOMID_SELF, DOMID_SELF), 1, "the lowest port is free again");
        assert_eq!(e.dom(1).with_evtchn(|ev| ev.live_ports().count()), 1, "other domains keep theirs");
    }

    #[test]
    fn fifo_after_xens_checks() {
        let mut e = Env::new();
        let cb = RAM + 0x10000;
        e.phys.write(cb, &[0; 0x2000]).unwrap(); // the guest clears its control block and array
        let ic = |gfn, offset, vcpu| EvtchnInitControl { control_gfn: gfn, offset, vcpu, link_bits: 0, _pad: [0; 7] };
        e.put(0, &ic(cb >> 12, 4, 0));
        assert_eq!(op(&mut e, 0, EVTCHNOP_INIT_CONTROL), ret(EINVAL));
        e.put(0, &ic(cb >> 12, 4, 77));
        assert_eq!(op(&mut e, 0, EVTCHNOP_INIT_CONTROL), ret(ENOENT), "the vCPU is checked first");
        e.put(0, &ic(cb >> 12, 4096 - 64, 0));
        assert_eq!(op(&mut e, 0, EVTCHNOP_INIT_CONTROL), ret(EINVAL));
        e.put(0, &ic(cb >> 12, 0, 77));
        assert_eq!(op(&mut e, 0, EVTCHNOP_INIT_CONTROL), ret(ENOENT));
        // Not the domain's RAM: refused, and the domain stays 2-level.
        e.put(0, &ic(0x10, 0, 0));
        assert_eq!(op(&mut e, 0, EVTCHNOP_INIT_CONTROL), ret(EINVAL));
        e.put(0, &EvtchnExpandArray { array_gfn: (cb + 0x1000) >> 12 });
        assert_eq!(op(&mut e, 0, EVTCHNOP_EXPAND_ARRAY), ret(EOPNOTSUPP));
        e.put(0, &EvtchnSetPriority { port: 1, priority: 3 });
        assert_eq!(op(&mut e, 0, EVTCHNOP_SET_PRIORITY), ret(ENOSYS));

        // An IPI port pending before the switch is delivered once its word exists.
        e.call(0, |cx| {
            let d = cx.domains.get(0).unwrap();
            d.with_evtchn(|ev| gp::shared_info(ev, cx.machine).map(|_| ()))
        })
        .unwrap();
        e.put(0, &EvtchnBindIpi { vcpu: 0, port: 0 });
        assert_eq!(op(&mut e, 0, EVTCHNOP_BIND_IPI), 0);
        let ipi = e.get::<EvtchnBindIpi>(0).port;
        assert_eq!(port_op(&mut e, 0, EVTCHNOP_SEND, ipi), 0);

        e.put(0, &ic(cb >> 12, 8, 0));
        assert_eq!(op(&mut e, 0, EVTCHNOP_INIT_CONTROL), 0);
        assert_eq!(e.get::<EvtchnInitControl>(0).link_bits, 17);
        assert_eq!(op(&mut e, 0, EVTCHNOP_INIT_CONTROL), ret(EINVAL), "one control block per vCPU");
        e.put(0, &EvtchnExpandArray { array_gfn: 0x10 });
        assert_eq!(op(&mut e, 0, EVTCHNOP_EXPAND_ARRAY), ret(EINVAL));
        let array = cb + 0x1000;
        e.put(0, &EvtchnExpandArray { array_gfn: array >> 12 });
        assert_eq!(op(&mut e, 0, EVTCHNOP_EXPAND_ARRAY), 0);
        let word = |e: &Env, port: u32| e.phys.read_u32(array + 4 * u64::from(port)).unwrap();
        assert_eq!(word(&e, ipi), EVTCHN_FIFO_PENDING | EVTCHN_FIFO_LINKED);
        assert_eq!(e.phys.read_u32(cb + 8 + EVTCHN_FIFO_CONTROL_HEAD + 4 * 7).unwrap(), ipi, "head of the default queue");
        assert_eq!(e.phys.read_u32(cb + 8).unwrap(), 1 << 7, "ready");

        e.put(0, &EvtchnSetPriority { port: ipi, priority: 16 });
        assert_eq!(op(&mut e, 0, EVTCHNOP_SET_PRIORITY), ret(EINVAL));
        e.put(0, &EvtchnSetPriority { port: 64, priority: 1 });
        assert_eq!(op(&mut e, 0, EVTCHNOP_SET_PRIORITY), ret(EINVAL), "no such port");
        e.put(0, &EvtchnSetPriority { port: ipi, priority: 0 });
        assert_eq!(op(&mut e, 0, EVTCHNOP_SET_PRIORITY), 0);
        // The guest consumes the event; the next send goes to queue 0.
        e.phys.write_u32(array + 4 * u64::from(ipi), 0).unwrap();
        assert_eq!(port_op(&mut e, 0, EVTCHNOP_SEND, ipi), 0);
        assert_eq!(e.phys.read_u32(cb + 8 + EVTCHN_FIFO_CONTROL_HEAD).unwrap(), ipi);
        // Masked in its word: pending, not linked, until unmask.
        e.phys.write_u32(array + 4 * u64::from(ipi), EVTCHN_FIFO_MASKED).unwrap();
        e.phys.write_u32(cb + 8 + EVTCHN_FIFO_CONTROL_HEAD, 0).unwrap();
        assert_eq!(port_op(&mut e, 0, EVTCHNOP_SEND, ipi), 0);
        assert_eq!(word(&e, ipi), EVTCHN_FIFO_PENDING | EVTCHN_FIFO_MASKED);
        assert_eq!(port_op(&mut e, 0, EVTCHNOP_UNMASK, ipi), 0);
        assert_eq!(word(&e, ipi), EVTCHN_FIFO_PENDING | EVTCHN_FIFO_LINKED);

        // Reset closes every port and returns the domain to 2-level.
        e.put(0, &EvtchnReset { dom: DOMID_SELF });
        assert_eq!(op(&mut e, 0, EVTCHNOP_RESET), 0);
        assert_eq!(word(&e, ipi) & EVTCHN_FIFO_PENDING, 0, "a closed port keeps no event");
        e.put(0, &EvtchnExpandArray { array_gfn: array >> 12 });
        assert_eq!(op(&mut e, 0, EVTCHNOP_EXPAND_ARRAY), ret(EOPNOTSUPP));
    }
}
