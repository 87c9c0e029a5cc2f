//! `memory_op`: the guest's physical map. add_to_physmap puts the hypervisor's shared_info page
//! or grant-table frames at a guest frame; remove_from_physmap takes a page out; the reservation
//! ops (populate_physmap, decrease_reservation) map and unmap a direct-mapped domain's own RAM.
//! Reservation ops answer with the number of extents done (Xen's rule, even for errors), and
//! long batches continue in a new trap (`cmd = op | done << 6`).

use super::guest_phys::{self as gp, PAGE};
use super::{read_arg, write_arg, HypercallCtx, Outcome};
use crate::domain::grant::GrowError;
use crate::domain::{DomId, Domain};
use crate::mm::S2Attr;
use guest_abi::errno::{ret, EBUSY, EDOM, EFAULT, EINVAL, EIO, ENOENT, ENOMEM, ENOSYS, EOPNOTSUPP, EPERM, ESRCH};
use guest_abi::memory::*;

/// Order-0 extents handled per trap before the call continues (fewer for larger orders:
/// [`PAGES_PER_TRAP`] bounds the pages).
pub const EXTENTS_PER_TRAP: u64 = 256;
/// Pages mapped or unmapped per trap by the reservation ops.
pub const PAGES_PER_TRAP: u64 = 4096;
/// add_to_physmap_batch entries per trap.
pub const BATCH_PER_TRAP: u64 = 256;
/// Largest extent order accepted (2 MiB with 4 KiB pages).
const MAX_ORDER: u32 = 9;

pub fn memory_op(cx: &mut HypercallCtx<'_, '_>, cmd: u64, arg: u64) -> Outcome {
    let out = ops(cx, cmd, arg);
    // A stage-2 entry replaced or removed may have been the last reference to a dead
    // domain's frame.
    if matches!(split_cmd(cmd).0, XENMEM_ADD_TO_PHYSMAP | XENMEM_ADD_TO_PHYSMAP_BATCH | XENMEM_REMOVE_FROM_PHYSMAP | XENMEM_POPULATE_PHYSMAP) && super::teardown::any_lingering() {
        super::teardown::reap(cx.domains, cx.machine);
    }
    out
}

fn ops(cx: &mut HypercallCtx<'_, '_>, cmd: u64, arg: u64) -> Outcome {
    let (op, start) = split_cmd(cmd);
    let r = match op {
        XENMEM_INCREASE_RESERVATION | XENMEM_DECREASE_RESERVATION | XENMEM_POPULATE_PHYSMAP => {
            return reservation(cx, op, start, arg);
        }
        XENMEM_ADD_TO_PHYSMAP => add_to_physmap(cx, start, arg),
        XENMEM_ADD_TO_PHYSMAP_BATCH => return add_to_physmap_batch(cx, start, arg),
        XENMEM_REMOVE_FROM_PHYSMAP => remove_from_physmap(cx, arg),
        // The sub-ops below take no continuation: progress bits are refused.
        _ if start != 0 && STATELESS_OPS.contains(&op) => ret(EINVAL),
        XENMEM_MAXIMUM_RAM_PAGE => max_ram_page(),
        XENMEM_CURRENT_RESERVATION | XENMEM_MAXIMUM_RESERVATION | XENMEM_MAXIMUM_GPFN => domain_stat(cx, op, arg),
        XENMEM_GET_SHARING_FREED_PAGES | XENMEM_GET_SHARING_SHARED_PAGES => 0, // no sharing on ARM
        XENMEM_CLAIM_PAGES => claim_pages(cx, arg),
        XENMEM_EXCHANGE => exchange(cx, arg),
        XENMEM_GET_VNUMAINFO => vnuma_info(cx, arg),
        XENMEM_ACQUIRE_RESOURCE => return acquire_resource(cx, start, arg),
        _ => ret(ENOSYS),
    };
    Outcome::Return(r)
}

/// Sub-ops that refuse a continuation field.
const STATELESS_OPS: [u32; 7] = [XENMEM_MAXIMUM_RAM_PAGE, XENMEM_CURRENT_RESERVATION, XENMEM_MAXIMUM_RESERVATION, XENMEM_MAXIMUM_GPFN, XENMEM_CLAIM_PAGES, XENMEM_EXCHANGE, XENMEM_GET_VNUMAINFO];

/// XENMEM_maximum_ram_page: one past the host's highest RAM frame.
fn max_ram_page() -> i64 {
    (super::host_ram_end() >> 12) as i64
}

/// XENMEM_current_reservation / maximum_reservation / maximum_gpfn of a domain the caller
/// may look at (itself; any, for the hardware domain).
fn domain_stat(cx: &mut HypercallCtx<'_, '_>, op: u32, arg: u64) -> i64 {
    let domid: u16 = match read_arg(cx.mem, arg) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let target = gp::resolve(cx.caller, domid);
    let Some(dom) = cx.domains.get(target) else { return ret(ESRCH) };
    if !may_control(cx, target) {
        return ret(EPERM);
    }
    match op {
        XENMEM_CURRENT_RESERVATION => dom.tot_pages() as i64,
        XENMEM_MAXIMUM_RESERVATION => dom.max_pages() as i64,
        _ => max_mapped_gfn(dom, cx.machine.mem) as i64,
    }
}

/// The highest guest frame `dom`'s stage 2 maps (0 if none).
fn max_mapped_gfn(dom: &Domain, mem: &dyn platform::PhysMem) -> u64 {
    let p2m = dom.p2m.read();
    let Some(p2m) = p2m.as_ref() else { return 0 };
    p2m.leaves(mem).filter_map(Result::ok).map(|l| (l.ipa + l.size - 1) >> 12).max().unwrap_or(0)
}

/// XENMEM_claim_pages: set pages aside for a domain being built. Only a control domain may,
/// and nothing here is built at run time: a claim of any size is accepted and changes
/// nothing (pages are never allocated to a domain after it is built).
fn claim_pages(cx: &mut HypercallCtx<'_, '_>, arg: u64) -> i64 {
    let r: XenMemoryReservation = match read_arg(cx.mem, arg) {
        Ok(r) => r,
        Err(_) => return ret(EFAULT),
    };
    if r.extent_start != 0 || r.extent_order != 0 || r.mem_flags != 0 {
        return ret(EINVAL);
    }
    // By id only: DOMID_SELF names no domain here.
    if cx.domains.get(r.domid).is_none() {
        return ret(EINVAL);
    }
    if !cx.domains.get(cx.caller).is_some_and(|d| d.is_hardware) {
        return ret(EPERM);
    }
    0
}

/// Largest extent order a domain may name (Xen's default for a domU; xenith has no larger
/// extents for anyone).
const EXCHANGE_MAX_ORDER: u32 = 9;

/// XENMEM_exchange: the argument checks Xen makes before it trades pages. A domain's RAM here
/// is fixed at build time, so a well-formed exchange (which would hand out other frames) is
/// refused as Xen refuses one whose output pages cannot be allocated (-ENOMEM).
fn exchange(cx: &mut HypercallCtx<'_, '_>, arg: u64) -> i64 {
    let x: XenMemoryExchange = match read_arg(cx.mem, arg) {
        Ok(x) => x,
        Err(e) => return e,
    };
    let (i, o) = (x.r#in, x.out);
    if i.extent_order.max(o.extent_order) > EXCHANGE_MAX_ORDER {
        return ret(EPERM);
    }
    let fits = |r: &XenMemoryReservation| r.nr_extents <= u64::MAX >> r.extent_order;
    if x.nr_exchanged > i.nr_extents
        || i.domid != o.domid
        || !fits(&i)
        || !fits(&o)
        || i.nr_extents << i.extent_order != o.nr_extents << o.extent_order
    {
        return ret(EINVAL);
    }
    if x.nr_exchanged == i.nr_extents {
        return 0;
    }
    ret(ENOMEM)
}

/// XENMEM_get_vnumainfo: no domain here has a virtual NUMA layout.
fn vnuma_info(cx: &mut HypercallCtx<'_, '_>, arg: u64) -> i64 {
    let t: XenVnumaTopologyInfo = match read_arg(cx.mem, arg) {
        Ok(t) => t,
        Err(e) => return e,
    };
    if t.pad != 0 {
        return ret(EINVAL);
    }
    let target = gp::resolve(cx.caller, t.domid);
    if cx.domains.get(target).is_none() {
        return ret(ESRCH);
    }
    if !may_control(cx, target) {
        return ret(EPERM);
    }
    ret(EOPNOTSUPP)
}

/// Grant-table frames mapped per trap by XENMEM_acquire_resource.
const ACQUIRE_PER_TRAP: u64 = 32;

/// XENMEM_acquire_resource: the hardware domain maps another domain's resource into its own
/// guest frames (the toolstack seeds a new domain's grant table this way). Only grant-table
/// entry frames exist here (status frames are v2; there are no ioreq servers or trace
/// buffers); with a NULL list the call tells the resource's size. An unknown type reads as a
/// huge size and fails when mapped, as Xen's does.
fn acquire_resource(cx: &mut HypercallCtx<'_, '_>, start: u64, arg: u64) -> Outcome {
    let r = |v: i64| Outcome::Return(v);
    let x: XenMemAcquireResource = match read_arg(cx.mem, arg) {
        Ok(x) => x,
        Err(e) => return r(e),
    };
    if x.pad != 0 || x.frame >> 32 != 0 || (x.frame + u64::from(x.nr_frames)) >> 32 != 0 {
        return r(ret(EINVAL));
    }
    // A remote domain, by id (DOMID_SELF names none).
    let Some(target) = cx.domains.get(x.domid) else { return r(ret(ESRCH)) };
    if x.domid == cx.caller || !cx.domains.get(cx.caller).is_some_and(|d| d.is_hardware) {
        return r(ret(EPERM));
    }
    let max_frames: u32 = match (x.r#type, x.id) {
        (XENMEM_RESOURCE_GRANT_TABLE, XENMEM_RESOURCE_GRANT_TABLE_ID_SHARED) => target.grants.lock().max_frames(),
        (0..=2, _) => 0,
        _ => ret(EOPNOTSUPP) as u32,
    };
    if max_frames == 0 {
        return r(ret(EINVAL));
    }
    if x.frame_list == 0 {
        if x.nr_frames != 0 || start != 0 {
            return r(ret(EINVAL));
        }
        return r(write_arg(cx.mem, arg.wrapping_add(8), &max_frames).err().unwrap_or(0));
    }
    if start >= u64::from(x.nr_frames) || u64::from(x.nr_frames) > u64::from(u32::MAX >> MEMOP_EXTENT_SHIFT) {
        return r(ret(EINVAL));
    }
    if x.r#type != XENMEM_RESOURCE_GRANT_TABLE {
        return r(ret(EOPNOTSUPP));
    }
    let first = x.frame + start;
    let todo = (u64::from(x.nr_frames) - start).min(ACQUIRE_PER_TRAP);
    let last = first + todo - 1;
    if last >= u64::from(max_frames) {
        return r(ret(EINVAL));
    }
    let Some(caller) = cx.domains.get(cx.caller) else { return r(ret(ESRCH)) };
    let mut gfns = [0u64; ACQUIRE_PER_TRAP as usize];
    for (k, g) in gfns.iter_mut().enumerate().take(todo as usize) {
        match read_arg::<u64>(cx.mem, x.frame_list.wrapping_add((start + k as u64) * 8)) {
            Ok(v) => *g = v,
            Err(e) => return r(e),
        }
    }
    {
        // The frames are mapped under the table's lock, which a destroy takes once the domain
        // is dying: it finds these maps, or this finds it dying.
        let mut gt = target.grants.lock();
        if target.dying() {
            return r(ret(ESRCH));
        }
        if gt.grow(last as u32 + 1, &mut *cx.machine.frames, cx.machine.mem).is_err() {
            return r(ret(ENOMEM));
        }
        for (k, gfn) in gfns.iter().enumerate().take(todo as usize) {
            let Some(pa) = gt.frame((first + k as u64) as u32) else { return r(ret(EINVAL)) };
            if let Err(e) = gp::map(caller, cx.machine, *gfn, pa, S2Attr::RAM_RW) {
                // Only the first failure is the map's own error; a later one leaves a partial map.
                return r(if k == 0 { e } else { ret(EIO) });
            }
        }
    }
    let done = start + todo;
    if done < u64::from(x.nr_frames) {
        return Outcome::Continue { x0: u64::from(XENMEM_ACQUIRE_RESOURCE) | (done << MEMOP_EXTENT_SHIFT), x1: arg, x2: 0 };
    }
    r(0)
}

/// The caller may act on `target` (itself, or anyone if it is the hardware domain).
fn may_control(cx: &HypercallCtx<'_, '_>, target: u16) -> bool {
    target == cx.caller || cx.domains.get(cx.caller).is_some_and(|d| d.is_hardware)
}

fn add_to_physmap(cx: &mut HypercallCtx<'_, '_>, start: u64, arg: u64) -> i64 {
    // The continuation field carries progress through a gmfn_range, a u16.
    if start > u64::from(u16::MAX) {
        return ret(EDOM);
    }
    let a: XenAddToPhysmap = match read_arg(cx.mem, arg) {
        Ok(a) => a,
        Err(e) => return e,
    };
    if a.space == XENMAPSPACE_GMFN_FOREIGN {
        return ret(ENOSYS); // only through add_to_physmap_batch
    }
    let target = gp::resolve(cx.caller, a.domid);
    if cx.domains.get(target).is_none() {
        return ret(ESRCH);
    }
    if !may_control(cx, target) {
        return ret(EPERM);
    }
    let Some(dom) = cx.domains.get(target) else { return ret(ESRCH) };
    match add_one(dom, cx.machine, a.space, a.idx, a.gpfn) {
        Ok(()) => 0,
        Err(e) => e,
    }
}

/// Map one page of `space` at `gpfn` in `dom`: under the lock of the page's owner (event
/// channels for shared_info, the grant table for its frames), then the p2m's.
fn add_one(dom: &Domain, m: &mut crate::domain::registry::Machine<'_>, space: u32, idx: u64, gpfn: u64) -> Result<(), i64> {
    gp::ipa_of(gpfn).ok_or(ret(EINVAL))?;
    match space {
        XENMAPSPACE_SHARED_INFO => {
            if idx != 0 {
                return Err(ret(EINVAL));
            }
            dom.with_evtchn(|ev| {
                // As Xen 4.17: a page the hypervisor owns is mapped at one place at a time.
                if ev.shared_info_gfn.is_some() {
                    return Err(ret(EBUSY));
                }
                let pa = gp::shared_info(ev, m)?;
                gp::map(dom, m, gpfn, pa, S2Attr::RAM_RW)?;
                ev.shared_info_gfn = Some(gpfn);
                Ok(())
            })
        }
        XENMAPSPACE_GRANT_TABLE => {
            if idx & XENMAPIDX_GRANT_TABLE_STATUS != 0 {
                return Err(ret(EINVAL)); // status frames are v2 only
            }
            // Beyond the table's limit (`grow` says TooMany) is -EINVAL too.
            let n = u32::try_from(idx).ok().and_then(|i| i.checked_add(1)).ok_or(ret(EINVAL))?;
            let idx = n - 1;
            let mut gt = dom.grants.lock();
            match gt.grow(n, &mut *m.frames, m.mem) {
                Ok(()) => {}
                Err(GrowError::TooMany) => return Err(ret(EINVAL)),
                Err(GrowError::NoMemory) => return Err(ret(ENOMEM)),
            }
            if gt.frame_gfn(idx).is_some() {
                return Err(ret(EBUSY));
            }
            let pa = gt.frame(idx).ok_or(ret(EINVAL))?;
            gp::map(dom, m, gpfn, pa, S2Attr::RAM_RW)?;
            gt.set_frame_gfn(idx, Some(gpfn));
            Ok(())
        }
        _ => Err(ret(ENOSYS)),
    }
}

/// Forget that a hypervisor page was mapped at `gfn` (it was just unmapped).
fn forget_mapping_at(dom: &Domain, gfn: u64) {
    dom.with_evtchn(|ev| {
        if ev.shared_info_gfn == Some(gfn) {
            ev.shared_info_gfn = None;
        }
    });
    let mut gt = dom.grants.lock();
    if let Some(i) = gt.frame_at_gfn(gfn) {
        gt.set_frame_gfn(i, None);
    }
}

fn add_to_physmap_batch(cx: &mut HypercallCtx<'_, '_>, start: u64, arg: u64) -> Outcome {
    let r = |v: i64| Outcome::Return(v);
    let b: XenAddToPhysmapBatch = match read_arg(cx.mem, arg) {
        Ok(b) => b,
        Err(e) => return r(e),
    };
    if start > u64::from(b.size) {
        return r(ret(EINVAL));
    }
    let target = gp::resolve(cx.caller, b.domid);
    if cx.domains.get(target).is_none() {
        return r(ret(ESRCH));
    }
    if !may_control(cx, target) {
        return r(ret(EPERM));
    }
    let space = u32::from(b.space);
    let foreign = gp::resolve(cx.caller, b.foreign_domid);
    if space == XENMAPSPACE_GMFN_FOREIGN {
        if cx.domains.get(foreign).is_none() {
            return r(ret(ESRCH));
        }
        if foreign == target || !cx.domains.get(cx.caller).is_some_and(|d| d.is_hardware) {
            return r(ret(EPERM));
        }
    }
    let end = u64::from(b.size).min(start.saturating_add(BATCH_PER_TRAP));
    for i in start..end {
        let (Ok(idx), Ok(gpfn)) = (read_arg::<u64>(cx.mem, b.idxs.wrapping_add(i * 8)), read_arg::<u64>(cx.mem, b.gpfns.wrapping_add(i * 8))) else {
            return r(ret(EFAULT));
        };
        let res = if space == XENMAPSPACE_GMFN_FOREIGN {
            map_foreign(cx, target, foreign, idx, gpfn)
        } else {
            match cx.domains.get(target) {
                Some(dom) => add_one(dom, cx.machine, space, idx, gpfn),
                None => Err(ret(ESRCH)),
            }
        };
        let err = match res {
            Ok(()) => 0i32,
            Err(e) => e as i32,
        };
        if write_arg(cx.mem, b.errs.wrapping_add(i * 4), &err).is_err() {
            return Outcome::Return(ret(EFAULT));
        }
    }
    if end < u64::from(b.size) {
        return Outcome::Continue { x0: u64::from(XENMEM_ADD_TO_PHYSMAP_BATCH) | (end << MEMOP_EXTENT_SHIFT), x1: arg, x2: 0 };
    }
    Outcome::Return(0)
}

/// The hardware domain maps frame `gfn` of `foreign` at its own `gpfn`, holding the foreign
/// p2m's read lock until the frame is mapped (the two p2m locks in domain-id order): a destroy
/// of `foreign`, which takes that p2m as writer, then finds the new entry when it looks for
/// the frames other domains map.
fn map_foreign(cx: &mut HypercallCtx<'_, '_>, target: u16, foreign: u16, gfn: u64, gpfn: u64) -> Result<(), i64> {
    let (Some(dom), Some(fdom)) = (cx.domains.get(target), cx.domains.get(foreign)) else { return Err(ret(ESRCH)) };
    if target == foreign {
        return Err(ret(ESRCH));
    }
    let m = &mut *cx.machine;
    let map = |fp2m: &Option<crate::mm::Stage2>, own: &mut Option<crate::mm::Stage2>, m: &mut crate::domain::registry::Machine<'_>| {
        let pa = gp::lookup_in(fdom, fp2m, gfn, m.mem).filter(|pa| fdom.owns_ram(*pa, PAGE)).ok_or(ret(EINVAL))?;
        gp::map_in(own, m, gpfn, pa, S2Attr::RAM_RW)
    };
    if target < foreign {
        let mut own = dom.p2m.write();
        let fp2m = fdom.p2m.read();
        map(&fp2m, &mut own, m)
    } else {
        let fp2m = fdom.p2m.read();
        let mut own = dom.p2m.write();
        map(&fp2m, &mut own, m)
    }
}

fn remove_from_physmap(cx: &mut HypercallCtx<'_, '_>, arg: u64) -> i64 {
    let r: XenRemoveFromPhysmap = match read_arg(cx.mem, arg) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let target = gp::resolve(cx.caller, r.domid);
    if cx.domains.get(target).is_none() {
        return ret(ESRCH);
    }
    if !may_control(cx, target) {
        return ret(EPERM);
    }
    let Some(dom) = cx.domains.get(target) else { return ret(ESRCH) };
    let unmapped = {
        let mut p2m = dom.p2m.write();
        if gp::lookup_in(dom, &p2m, r.gpfn, cx.machine.mem).is_none() || p2m.is_none() {
            return ret(ENOENT);
        }
        gp::unmap_in(&mut p2m, cx.machine, r.gpfn)
    };
    match unmapped {
        Ok(()) => {
            forget_mapping_at(dom, r.gpfn);
            0
        }
        Err(e) => e,
    }
}

/// increase_reservation / decrease_reservation / populate_physmap.
fn reservation(cx: &mut HypercallCtx<'_, '_>, op: u32, start: u64, arg: u64) -> Outcome {
    let done = |n: u64| Outcome::Return(n as i64);
    let Ok(r) = read_arg::<XenMemoryReservation>(cx.mem, arg) else { return done(start) };
    if r.nr_extents > u64::from(u32::MAX >> MEMOP_EXTENT_SHIFT) || start >= r.nr_extents || r.extent_order > MAX_ORDER {
        return done(start);
    }
    let target = gp::resolve(cx.caller, r.domid);
    if cx.domains.get(target).is_none() || !may_control(cx, target) {
        return done(start);
    }
    let pages = 1u64 << r.extent_order;
    let per_trap = EXTENTS_PER_TRAP.min((PAGES_PER_TRAP / pages).max(1));
    let end = core::cmp::min(r.nr_extents, start.saturating_add(per_trap));
    if op == XENMEM_DECREASE_RESERVATION && pages == 1 {
        return decrease_pages(cx, &r, op, arg, start, end, target);
    }
    let mut i = start;
    while i < end {
        let Ok(gpfn) = read_arg::<u64>(cx.mem, r.extent_start.wrapping_add(i.wrapping_mul(8))) else { return done(i) };
        let Some(dom) = cx.domains.get(target) else { return done(i) };
        let ok = match op {
            XENMEM_POPULATE_PHYSMAP if dom.by_toolstack && dom.ram().as_slice().is_empty() && !provide_ram(dom, cx.machine) => false,
            XENMEM_POPULATE_PHYSMAP if !dom.direct_mapped => populate_given_back(dom, cx.machine, gpfn, pages),
            XENMEM_POPULATE_PHYSMAP => populate(dom, cx.machine, gpfn, pages),
            XENMEM_DECREASE_RESERVATION => decrease(dom, cx.machine, gpfn, pages),
            // A direct-mapped domain cannot be given new frames (their addresses would not be
            // its guest addresses); nothing else exists yet.
            _ => false,
        };
        if !ok {
            return done(i);
        }
        match op {
            XENMEM_DECREASE_RESERVATION => dom.note_reservation(pages, true),
            XENMEM_POPULATE_PHYSMAP => dom.note_reservation(pages, false),
            _ => {}
        }
        i += 1;
    }
    if i < r.nr_extents {
        return Outcome::Continue { x0: u64::from(op) | (i << MEMOP_EXTENT_SHIFT), x1: arg, x2: 0 };
    }
    done(i)
}

/// decrease_reservation of single pages (the balloon's): this step's extents are read first,
/// then unmapped under one p2m write lock with one TLB invalidation for them all
/// (`Stage2::unmap_pages_if`), instead of one lock and one broadcast invalidation per page.
/// The result is the same as extent by extent: it stops at the first extent that cannot be
/// read or is not the domain's own mapped RAM, with the ones before it done.
fn decrease_pages(cx: &mut HypercallCtx<'_, '_>, r: &XenMemoryReservation, op: u32, arg: u64, start: u64, end: u64, target: DomId) -> Outcome {
    let mut ipas = [0u64; EXTENTS_PER_TRAP as usize];
    let mut n = 0;
    for i in start..end {
        let Ok(gpfn) = read_arg::<u64>(cx.mem, r.extent_start.wrapping_add(i.wrapping_mul(8))) else { break };
        let Some(ipa) = gpfn.checked_add(1).and_then(gp::ipa_of).and(gp::ipa_of(gpfn)) else { break };
        ipas[n] = ipa;
        n += 1;
    }
    let Some(dom) = cx.domains.get(target) else { return Outcome::Return(start as i64) };
    let m = &mut *cx.machine;
    let done = {
        let mut p2m = dom.p2m.write();
        match p2m.as_mut() {
            Some(p2m) => p2m.unmap_pages_if(&ipas[..n], |pa| dom.owns_ram(pa, PAGE), &mut *m.frames, m.mem, &mut *m.tlb).unwrap_or(0),
            None => 0,
        }
    };
    dom.note_reservation(done as u64, true);
    let i = start + done as u64;
    if done == n && i == end && i < r.nr_extents {
        return Outcome::Continue { x0: u64::from(op) | (i << MEMOP_EXTENT_SHIFT), x1: arg, x2: 0 };
    }
    Outcome::Return(i as i64)
}

/// Direct-mapped domain: map its own RAM back at gpfn == pfn.
fn populate(dom: &Domain, m: &mut crate::domain::registry::Machine<'_>, gpfn: u64, pages: u64) -> bool {
    if !dom.direct_mapped || !gpfn.is_multiple_of(pages) {
        return false;
    }
    let Some(pa) = gpfn.checked_mul(PAGE) else { return false };
    if !dom.owns_ram(pa, pages * PAGE) {
        return false;
    }
    // One stage-2 change for the whole extent (a block where it can be one).
    let mut p2m = dom.p2m.write();
    let Some(p2m) = p2m.as_mut() else { return false };
    p2m.map(pa, pa, pages * PAGE, S2Attr::RAM_RWX, &mut *m.frames, m.mem, &mut *m.tlb).is_ok()
}

pub use crate::domain::domu::{GUEST_MAGIC_BASE, MAGIC_PAGES};
/// Xen's first guest RAM bank on ARM: base and largest size.
const GUEST_RAM0_SIZE: u64 = 0xc000_0000;

/// One naturally aligned block of `bytes` (rounded up to a power of two; the tail given back).
fn alloc_block(m: &mut crate::domain::registry::Machine<'_>, bytes: u64) -> Option<u64> {
    let pages = bytes / PAGE;
    let block = pages.checked_next_power_of_two()?;
    let pa = m.frames.alloc_frames(usize::try_from(block).ok()?)?;
    if block > pages {
        m.frames.free_frames(pa + bytes, (block - pages) as usize);
    }
    Some(pa)
}

/// A domain the toolstack made gets its RAM when the toolstack first populates it: one bank at
/// Xen's guest RAM base as large as its memory limit (at most Xen's first bank; naturally
/// aligned, so stage 2 can use blocks) and the magic pages at Xen's magic base, all counted as
/// not held until populated. Host frames are taken here, so the toolstack sees free memory
/// fall when it builds a domain.
fn provide_ram(dom: &Domain, m: &mut crate::domain::registry::Machine<'_>) -> bool {
    let bytes = dom.max_pages().saturating_mul(PAGE);
    if bytes == 0 || bytes > GUEST_RAM0_SIZE {
        return false;
    }
    let Some(ram) = alloc_block(m, bytes) else { return false };
    let magic_bytes = MAGIC_PAGES * PAGE;
    let Some(magic) = alloc_block(m, magic_bytes) else {
        m.frames.free_frames(ram, (bytes / PAGE) as usize);
        return false;
    };
    let mut banks = crate::domain::RamBanks::new();
    banks.push(crate::domain::RamBank { ipa: crate::domain::domu::GUEST_RAM0_BASE, pa: ram, size: bytes });
    banks.push(crate::domain::RamBank { ipa: GUEST_MAGIC_BASE, pa: magic, size: magic_bytes });
    if let Err(banks) = dom.set_ram(banks) {
        // Another vCPU gave it RAM first.
        for b in banks.as_slice() {
            m.frames.free_frames(b.pa, (b.size / PAGE) as usize);
        }
    }
    true
}

/// A domain whose guest addresses are not its host addresses takes back pages it gave back
/// (only its own RAM frames: a domain is never given frames beyond those it was built with),
/// zeroed as a fresh page would be, at the guest frames they had. Pages it never gave back,
/// or more than it gave back, are refused (its reservation is full).
fn populate_given_back(dom: &Domain, m: &mut crate::domain::registry::Machine<'_>, gpfn: u64, pages: u64) -> bool {
    // Never beyond the limit the toolstack set (Xen refuses an allocation past max_pages).
    if !gpfn.is_multiple_of(pages) || dom.given_back() < pages || dom.tot_pages() + pages > dom.max_pages() {
        return false;
    }
    let Some(ipa) = gpfn.checked_mul(PAGE) else { return false };
    let Some(bank) = dom.ram().as_slice().iter().find(|b| ipa >= b.ipa && ipa - b.ipa + pages * PAGE <= b.size).copied() else { return false };
    let pa = bank.pa + (ipa - bank.ipa);
    let bytes = pages * PAGE;
    let mut p2m = dom.p2m.write();
    let Some(p2m) = p2m.as_mut() else { return false };
    // No page of the extent may be mapped (one walk over the range; an unreadable table
    // refuses too): a mapped page is the guest's, and zeroing it would destroy its contents.
    if p2m.leaves_in(ipa, ipa + bytes, m.mem).next().is_some() {
        return false;
    }
    // Zeroed to the point of coherency: the guest may map it non-cacheable.
    if m.mem.zero(pa, bytes).is_err() {
        return false;
    }
    p2m.map(ipa, pa, bytes, S2Attr::RAM_RWX, &mut *m.frames, m.mem, &mut *m.tlb).is_ok()
}

/// Take pages out of the domain's map (the RAM stays the domain's; populate brings it back).
fn decrease(dom: &Domain, m: &mut crate::domain::registry::Machine<'_>, gpfn: u64, pages: u64) -> bool {
    if !gpfn.is_multiple_of(pages) || gpfn.checked_add(pages).and_then(gp::ipa_of).is_none() {
        return false;
    }
    // Checked and unmapped under one write lock: no other vCPU changes the range in between.
    let mut p2m = dom.p2m.write();
    if pages == 1 {
        // The usual balloon step: checked and unmapped in one walk.
        return gp::unmap_in_if(&mut p2m, m, gpfn, |pa| dom.owns_ram(pa, PAGE)) == Ok(true);
    }
    for k in 0..pages {
        if gp::lookup_in(dom, &p2m, gpfn + k, m.mem).filter(|pa| dom.owns_ram(*pa, PAGE)).is_none() {
            return false;
        }
    }
    let Some(p2m) = p2m.as_mut() else { return false };
    p2m.unmap(gpfn * PAGE, pages * PAGE, &mut *m.frames, m.mem, &mut *m.tlb).is_ok()
}

#[cfg(test)]
mod tests {
    use super::super::guest_phys::env::*;
    use super::*;
    use guest_abi::DOMID_SELF;
    use platform::PhysMem;

    fn call(e: &mut Env, caller: u16, cmd: u64) -> i64 {
        e.call(caller, |cx| super::super::dispatch(cx, 12, [cmd, ARGS, 0, 0, 0]))
    }

    fn atp(e: &mut Env, domid: u16, space: u32, idx: u64, gpfn: u64) -> i64 {
        e.put(0, &XenAddToPhysmap { domid, size: 0, space, idx, gpfn });
        call(e, 0, u64::from(XENMEM_ADD_TO_PHYSMAP))
    }

    #[test]
    fn shared_info_is_mapped_once_and_can_move() {
        let mut e = Env::new();
        let gpfn = (RAM >> 12) + 5;
        assert_eq!(atp(&mut e, DOMID_SELF, XENMAPSPACE_SHARED_INFO, 1, gpfn), ret(EINVAL));
        assert_eq!(atp(&mut e, 0x1234, XENMAPSPACE_SHARED_INFO, 0, gpfn), ret(ESRCH));
        assert_eq!(atp(&mut e, DOMID_SELF, 99, 0, gpfn), ret(ENOSYS));
        assert_eq!(atp(&mut e, DOMID_SELF, XENMAPSPACE_GMFN_FOREIGN, 0, gpfn), ret(ENOSYS));
        assert_eq!(atp(&mut e, DOMID_SELF, XENMAPSPACE_SHARED_INFO, 0, u64::MAX), ret(EINVAL));
        assert_eq!(atp(&mut e, DOMID_SELF, XENMAPSPACE_SHARED_INFO, 0, gpfn), 0);
        let shinfo = e.dom(0).with_evtchn(|ev| ev.shared_info).unwrap();
        assert_eq!(gp::lookup(e.dom(0), gpfn, &e.phys), Some(shinfo));
        assert_eq!(atp(&mut e, DOMID_SELF, XENMAPSPACE_SHARED_INFO, 0, gpfn + 1), ret(EBUSY));
        e.put(0, &XenRemoveFromPhysmap { domid: DOMID_SELF, gpfn });
        assert_eq!(call(&mut e, 0, u64::from(XENMEM_REMOVE_FROM_PHYSMAP)), 0);
        assert_eq!(call(&mut e, 0, u64::from(XENMEM_REMOVE_FROM_PHYSMAP)), ret(ENOENT));
        assert_eq!(atp(&mut e, DOMID_SELF, XENMAPSPACE_SHARED_INFO, 0, gpfn + 1), 0);
        assert_eq!(e.dom(0).with_evtchn(|ev| ev.shared_info), Some(shinfo), "the same page moves");
    }

    #[test]
    fn grant_frames_grow_on_demand() {
        let mut e = Env::new();
        assert_eq!(atp(&mut e, DOMID_SELF, XENMAPSPACE_GRANT_TABLE, 64, 0x9000), ret(EINVAL));
        assert_eq!(atp(&mut e, DOMID_SELF, XENMAPSPACE_GRANT_TABLE, 1 << 31, 0x9000), ret(EINVAL));
        assert_eq!(atp(&mut e, DOMID_SELF, XENMAPSPACE_GRANT_TABLE, 3, 0x9003), 0);
        assert_eq!(e.dom(0).grants.lock().nr_frames(), 4);
        assert_eq!(gp::lookup(e.dom(0), 0x9003, &e.phys), e.dom(0).grants.lock().frame(3));
        assert_eq!(atp(&mut e, DOMID_SELF, XENMAPSPACE_GRANT_TABLE, 3, 0x9004), ret(EBUSY));
    }

    #[test]
    fn unreadable_arguments_and_bad_commands() {
        let mut e = Env::new();
        assert_eq!(e.call(0, |cx| super::super::dispatch(cx, 12, [7, 0xdead_0000, 0, 0, 0])), ret(EFAULT));
        assert_eq!(e.call(0, |cx| super::super::dispatch(cx, 12, [1, 0xdead_0000, 0, 0, 0])), 0);
        assert_eq!(call(&mut e, 0, 63), ret(ENOSYS));
        e.put(0, &XenAddToPhysmap { domid: DOMID_SELF, size: 0, space: 0, idx: 0, gpfn: 0x9000 });
        assert_eq!(call(&mut e, 0, 7 | (0x10000 << 6)), ret(EDOM));
        // a domU may not change dom0's map
        e.put(0, &XenRemoveFromPhysmap { domid: 0, gpfn: RAM >> 12 });
        assert_eq!(call(&mut e, 1, u64::from(XENMEM_REMOVE_FROM_PHYSMAP)), ret(EPERM));
    }

    #[test]
    fn decrease_then_populate_a_direct_mapped_domain() {
        let mut e = Env::new();
        let base = RAM >> 12;
        let n = 300u64; // more than one trap's worth
        for i in 0..n {
            e.put(0x100 + i * 8, &(base + i));
        }
        e.put(0, &XenMemoryReservation { extent_start: ARGS + 0x100, nr_extents: n, extent_order: 0, mem_flags: 0, domid: DOMID_SELF });
        let first = e.call(0, |cx| memory_op(cx, u64::from(XENMEM_DECREASE_RESERVATION), ARGS));
        assert_eq!(first, Outcome::Continue { x0: 1 | (EXTENTS_PER_TRAP << 6), x1: ARGS, x2: 0 });
        assert_eq!(call(&mut e, 0, 1 | (EXTENTS_PER_TRAP << 6)), n as i64, "the continuation finishes it");
        assert_eq!(gp::lookup(e.dom(0), base + 7, &e.phys), None);
        // again: nothing is mapped, the first extent fails
        assert_eq!(call(&mut e, 0, 1), 0);
        assert_eq!(call(&mut e, 0, u64::from(XENMEM_POPULATE_PHYSMAP)), n as i64);
        assert_eq!(gp::lookup(e.dom(0), base + 7, &e.phys), Some(RAM + 7 * PAGE));
        // frames of another domain, unaligned orders, bad extents
        e.put(0x100, &((RAM >> 12) + (RAM_SIZE >> 13)));
        e.put(0, &XenMemoryReservation { extent_start: ARGS + 0x100, nr_extents: 1, extent_order: 0, mem_flags: 0, domid: DOMID_SELF });
        assert_eq!(call(&mut e, 0, u64::from(XENMEM_POPULATE_PHYSMAP)), 0);
        e.put(0x100, &(base + 1));
        e.put(0, &XenMemoryReservation { extent_start: ARGS + 0x100, nr_extents: 1, extent_order: 1, mem_flags: 0, domid: DOMID_SELF });
        assert_eq!(call(&mut e, 0, u64::from(XENMEM_DECREASE_RESERVATION)), 0);
        e.put(0, &XenMemoryReservation { extent_start: 0xdead_0000, nr_extents: 1, extent_order: 0, mem_flags: 0, domid: 0x1234 });
        assert_eq!(call(&mut e, 0, u64::from(XENMEM_POPULATE_PHYSMAP)), 0);
        assert_eq!(call(&mut e, 0, 0), 0, "increase_reservation: nothing to give a direct-mapped domain");
    }

    #[test]
    fn reservation_figures_and_refused_sub_ops() {
        let mut e = Env::new();
        let stat = |e: &mut Env, caller, op: u32, domid: u16| {
            e.put(0, &domid);
            call(e, caller, u64::from(op))
        };
        let half = (RAM_SIZE / 2) >> 12;
        assert_eq!(call(&mut e, 0, u64::from(XENMEM_MAXIMUM_RAM_PAGE)), ((POOL + POOL_SIZE) >> 12) as i64);
        assert_eq!(call(&mut e, 0, u64::from(XENMEM_MAXIMUM_RAM_PAGE) | 1 << 6), ret(EINVAL));
        assert_eq!(stat(&mut e, 0, XENMEM_CURRENT_RESERVATION, DOMID_SELF), half as i64);
        assert_eq!(stat(&mut e, 0, XENMEM_MAXIMUM_RESERVATION, 1), half as i64);
        assert_eq!(stat(&mut e, 1, XENMEM_MAXIMUM_RESERVATION, 0), ret(EPERM));
        assert_eq!(stat(&mut e, 0, XENMEM_CURRENT_RESERVATION, 0x1234), ret(ESRCH));
        assert_eq!(stat(&mut e, 1, XENMEM_MAXIMUM_GPFN, DOMID_SELF), ((RAM + RAM_SIZE) >> 12) as i64 - 1);
        assert_eq!(e.call(0, |cx| super::super::dispatch(cx, 12, [3, 0xdead_0000, 0, 0, 0])), ret(EFAULT));
        // giving a page back lowers the reservation; taking it again restores it
        let gfn = (RAM >> 12) + 9;
        e.put(0x100, &gfn);
        e.put(0, &XenMemoryReservation { extent_start: ARGS + 0x100, nr_extents: 1, extent_order: 0, mem_flags: 0, domid: DOMID_SELF });
        assert_eq!(call(&mut e, 0, u64::from(XENMEM_DECREASE_RESERVATION)), 1);
        assert_eq!(stat(&mut e, 0, XENMEM_CURRENT_RESERVATION, DOMID_SELF), half as i64 - 1);
        e.put(0, &XenMemoryReservation { extent_start: ARGS + 0x100, nr_extents: 1, extent_order: 0, mem_flags: 0, domid: DOMID_SELF });
        assert_eq!(call(&mut e, 0, u64::from(XENMEM_POPULATE_PHYSMAP)), 1);
        assert_eq!(stat(&mut e, 0, XENMEM_CURRENT_RESERVATION, DOMID_SELF), half as i64);
        for op in [XENMEM_GET_SHARING_FREED_PAGES, XENMEM_GET_SHARING_SHARED_PAGES] {
            assert_eq!(call(&mut e, 1, u64::from(op)), 0);
        }
        for op in [5u64, 9, 10, 12, 13, 16, 17, 20, 22, 25] {
            assert_eq!(call(&mut e, 0, op), ret(ENOSYS), "x86-only sub-op {op}");
        }
        let claim = |e: &mut Env, caller, extent_start, order, domid| {
            e.put(0, &XenMemoryReservation { extent_start, nr_extents: 4, extent_order: order, mem_flags: 0, domid });
            call(e, caller, u64::from(XENMEM_CLAIM_PAGES))
        };
        assert_eq!(claim(&mut e, 0, 0, 0, 1), 0);
        assert_eq!(claim(&mut e, 1, 0, 0, 0), ret(EPERM));
        assert_eq!(claim(&mut e, 0, 0, 0, DOMID_SELF), ret(EINVAL));
        assert_eq!(claim(&mut e, 0, ARGS, 0, 1), ret(EINVAL));
        assert_eq!(claim(&mut e, 0, 0, 1, 1), ret(EINVAL));
        let exchange = |e: &mut Env, in_order, out_order, out_dom, nr_exchanged| {
            let r = |order: u32, domid| XenMemoryReservation { extent_start: ARGS + 0x200, nr_extents: 2u64 >> order, extent_order: order, mem_flags: 0, domid };
            e.put(0, &XenMemoryExchange { r#in: r(in_order, DOMID_SELF), out: r(out_order, out_dom), nr_exchanged });
            call(e, 1, u64::from(XENMEM_EXCHANGE))
        };
        assert_eq!(exchange(&mut e, 0, 1, DOMID_SELF, 0), ret(ENOMEM), "well formed: no frames to give");
        assert_eq!(exchange(&mut e, 0, 0, 0x1234, 0), ret(EINVAL));
        assert_eq!(exchange(&mut e, 20, 0, DOMID_SELF, 0), ret(EPERM));
        assert_eq!(exchange(&mut e, 0, 0, DOMID_SELF, 2), 0, "nothing left to exchange");
        assert_eq!(exchange(&mut e, 0, 0, DOMID_SELF, 3), ret(EINVAL));
    }

    #[test]
    fn vnuma_and_acquire_resource() {
        let mut e = Env::new();
        let vnuma = |e: &mut Env, caller, domid, pad| {
            e.put(0, &XenVnumaTopologyInfo { domid, pad, ..Default::default() });
            call(e, caller, u64::from(XENMEM_GET_VNUMAINFO))
        };
        assert_eq!(vnuma(&mut e, 0, DOMID_SELF, 0), ret(EOPNOTSUPP));
        assert_eq!(vnuma(&mut e, 0, DOMID_SELF, 1), ret(EINVAL));
        assert_eq!(vnuma(&mut e, 0, 0x1234, 0), ret(ESRCH));
        assert_eq!(vnuma(&mut e, 1, 0, 0), ret(EPERM));
        let acq = |e: &mut Env, caller, x: XenMemAcquireResource| {
            e.put(0, &x);
            call(e, caller, u64::from(XENMEM_ACQUIRE_RESOURCE))
        };
        let gt = XenMemAcquireResource { domid: 1, r#type: XENMEM_RESOURCE_GRANT_TABLE, ..Default::default() };
        assert_eq!(acq(&mut e, 0, gt), 0);
        assert_eq!(e.get::<XenMemAcquireResource>(0).nr_frames, 64, "the size, asked with a NULL list");
        assert_eq!(acq(&mut e, 0, XenMemAcquireResource { id: 1, ..gt }), ret(EINVAL), "no status frames in v1");
        assert_eq!(acq(&mut e, 0, XenMemAcquireResource { r#type: 0, ..gt }), ret(EINVAL));
        assert_eq!(acq(&mut e, 0, XenMemAcquireResource { pad: 1, ..gt }), ret(EINVAL));
        assert_eq!(acq(&mut e, 0, XenMemAcquireResource { frame: 1 << 32, ..gt }), ret(EINVAL));
        assert_eq!(acq(&mut e, 0, XenMemAcquireResource { domid: 0, ..gt }), ret(EPERM), "not its own");
        assert_eq!(acq(&mut e, 0, XenMemAcquireResource { domid: DOMID_SELF, ..gt }), ret(ESRCH));
        assert_eq!(acq(&mut e, 1, XenMemAcquireResource { domid: 0, ..gt }), ret(EPERM));
        assert_eq!(acq(&mut e, 0, XenMemAcquireResource { r#type: 9, ..gt }), 0);
        assert_eq!(e.get::<XenMemAcquireResource>(0).nr_frames, ret(EOPNOTSUPP) as u32);
        // map dom1's frames 1 and 2 at dom0's 0x9_0000 and 0x9_0001
        e.put(0x100, &0x9_0000u64);
        e.put(0x108, &0x9_0001u64);
        assert_eq!(acq(&mut e, 0, XenMemAcquireResource { nr_frames: 2, frame: 1, frame_list: ARGS + 0x100, ..gt }), 0);
        let f2 = e.dom(1).grants.lock().frame(2).unwrap();
        assert_eq!(gp::lookup(e.dom(0), 0x9_0001, &e.phys), Some(f2));
        assert_eq!(acq(&mut e, 0, XenMemAcquireResource { nr_frames: 1, frame: 64, frame_list: ARGS + 0x100, ..gt }), ret(EINVAL));
        // more than one trap's worth continues
        for i in 0..40u64 {
            e.put(0x200 + i * 8, &(0xa_0000 + i));
        }
        e.put(0, &XenMemAcquireResource { nr_frames: 40, frame_list: ARGS + 0x200, ..gt });
        let first = e.call(0, |cx| memory_op(cx, u64::from(XENMEM_ACQUIRE_RESOURCE), ARGS));
        assert_eq!(first, Outcome::Continue { x0: u64::from(XENMEM_ACQUIRE_RESOURCE) | (32 << 6), x1: ARGS, x2: 0 });
        assert_eq!(call(&mut e, 0, u64::from(XENMEM_ACQUIRE_RESOURCE) | (32 << 6)), 0);
        let f39 = e.dom(1).grants.lock().frame(39).unwrap();
        assert_eq!(gp::lookup(e.dom(0), 0xa_0000 + 39, &e.phys), Some(f39));
    }

    /// dom2, whose guest addresses are unlike its host ones (dom1's half of the test RAM, all
    /// mapped): its RAM's guest and host base.
    fn remapped_domain(e: &mut Env) -> (u64, u64) {
        use crate::domain::{Domain, RamBank, RamBanks};
        let (ipa, pa) = (0x8000_0000u64, RAM + RAM_SIZE / 2);
        let mut ram = RamBanks::default();
        ram.push(RamBank { ipa, pa, size: RAM_SIZE / 2 });
        let mut d = Domain::new(2, false, false, ram);
        let mut tlb = e.phys.tlb();
        let mut p2m = crate::mm::Stage2::new(3, crate::mm::Stage2Config { ipa_bits: 40, pa_bits: 40 }, &mut e.frames, &e.phys).unwrap();
        p2m.map(ipa, pa, RAM_SIZE / 2, S2Attr::RAM_RWX, &mut e.frames, &e.phys, &mut tlb).unwrap();
        *d.p2m.get_mut() = Some(p2m);
        let _ = e.domains.insert(d);
        (ipa, pa)
    }

    /// dom2's reservation op `op` of one extent of `order` at `gfn`.
    fn res_order(e: &mut Env, op: u32, gfn: u64, order: u32) -> i64 {
        e.put(0x100, &gfn);
        e.put(0, &XenMemoryReservation { extent_start: ARGS + 0x100, nr_extents: 1, extent_order: order, mem_flags: 0, domid: DOMID_SELF });
        call(e, 2, u64::from(op))
    }

    #[test]
    fn a_domu_takes_back_only_what_it_gave_back() {
        let mut e = Env::new();
        let (ipa, pa) = remapped_domain(&mut e);
        let gfn = (ipa >> 12) + 3;
        let res = |e: &mut Env, op: u32, gfn: u64| res_order(e, op, gfn, 0);
        assert_eq!(res(&mut e, XENMEM_POPULATE_PHYSMAP, gfn), 0, "nothing given back yet");
        e.phys.write(pa + 3 * PAGE, b"old data").unwrap();
        assert_eq!(res(&mut e, XENMEM_DECREASE_RESERVATION, gfn), 1);
        assert_eq!(gp::lookup(e.dom(2), gfn, &e.phys), None);
        assert_eq!(res(&mut e, XENMEM_POPULATE_PHYSMAP, (ipa >> 12) + 0x10_0000), 0, "outside its RAM");
        assert_eq!(res(&mut e, XENMEM_POPULATE_PHYSMAP, gfn), 1);
        assert_eq!(gp::lookup(e.dom(2), gfn, &e.phys), Some(pa + 3 * PAGE));
        assert_eq!(e.phys.read_u64(pa + 3 * PAGE).unwrap(), 0, "handed back zeroed");
        assert_eq!(res(&mut e, XENMEM_POPULATE_PHYSMAP, gfn), 0, "its reservation is full again");
    }

    #[test]
    fn an_extent_comes_back_whole_and_zeroed_or_not_at_all() {
        let mut e = Env::new();
        let (ipa, pa) = remapped_domain(&mut e);
        let gfn = (ipa >> 12) + 8; // an order-3 extent: pages 8..16
        for k in 0..8 {
            e.phys.write(pa + (8 + k) * PAGE + 0xff8, b"old data").unwrap();
        }
        // Enough pages given back for the extent (pages 32..40 elsewhere, pages 8..15 of it),
        // but page 15 still mapped: the extent is refused, page 15 kept.
        for k in 0..8 {
            assert_eq!(res_order(&mut e, XENMEM_DECREASE_RESERVATION, gfn + 24 + k, 0), 1);
        }
        for k in 0..7 {
            assert_eq!(res_order(&mut e, XENMEM_DECREASE_RESERVATION, gfn + k, 0), 1);
        }
        assert_eq!(res_order(&mut e, XENMEM_POPULATE_PHYSMAP, gfn, 3), 0, "page 15 is still mapped");
        assert_eq!(gp::lookup(e.dom(2), gfn, &e.phys), None);
        assert_eq!(e.phys.read_u64(pa + 15 * PAGE + 0xff8).unwrap(), u64::from_le_bytes(*b"old data"), "a mapped page is not zeroed");
        assert_eq!(res_order(&mut e, XENMEM_DECREASE_RESERVATION, gfn + 7, 0), 1);
        assert_eq!(res_order(&mut e, XENMEM_POPULATE_PHYSMAP, gfn + 4, 3), 0, "not aligned to its order");
        assert_eq!(res_order(&mut e, XENMEM_POPULATE_PHYSMAP, gfn, 3), 1);
        for k in 0..8 {
            assert_eq!(gp::lookup(e.dom(2), gfn + k, &e.phys), Some(pa + (8 + k) * PAGE));
            let mut page = [0xa5u8; PAGE as usize];
            e.phys.read(pa + (8 + k) * PAGE, &mut page).unwrap();
            assert!(page.iter().all(|&b| b == 0), "page {k} of the extent handed back zeroed");
        }
        assert_eq!(gp::lookup(e.dom(2), gfn + 8, &e.phys), Some(pa + 16 * PAGE), "the next page untouched");
    }

    #[test]
    fn batch_maps_foreign_frames_for_dom0_only() {
        let mut e = Env::new();
        let d1_gfn = (RAM + RAM_SIZE / 2) >> 12;
        e.put(0x100, &d1_gfn);
        e.put(0x108, &0x9_0000u64);
        e.put(0x110, &0x7777_7777u32);
        let b = |foreign| XenAddToPhysmapBatch { domid: DOMID_SELF, space: XENMAPSPACE_GMFN_FOREIGN as u16, size: 1, foreign_domid: foreign, idxs: ARGS + 0x100, gpfns: ARGS + 0x108, errs: ARGS + 0x110 };
        e.put(0, &b(0x1234));
        assert_eq!(call(&mut e, 0, u64::from(XENMEM_ADD_TO_PHYSMAP_BATCH)), ret(ESRCH));
        e.put(0, &b(1));
        assert_eq!(call(&mut e, 0, u64::from(XENMEM_ADD_TO_PHYSMAP_BATCH)), 0);
        assert_eq!(e.get::<i32>(0x110), 0);
        assert_eq!(gp::lookup(e.dom(0), 0x9_0000, &e.phys), Some(d1_gfn << 12));
        e.put(0x100, &0x1u64); // not domU RAM
        assert_eq!(call(&mut e, 0, u64::from(XENMEM_ADD_TO_PHYSMAP_BATCH)), 0);
        assert_eq!(e.get::<i32>(0x110), ret(EINVAL) as i32);
        e.put(0, &b(0));
        assert_eq!(call(&mut e, 1, u64::from(XENMEM_ADD_TO_PHYSMAP_BATCH)), ret(EPERM));
        // a long batch continues; every entry gets its own result
        let n = BATCH_PER_TRAP + 44;
        for i in 0..n {
            e.put(0x200 + i * 8, &(d1_gfn + i));
            e.put(0x200 + n * 8 + i * 8, &(0x9_1000 + i));
            e.put(0x200 + 2 * n * 8 + i * 4, &0x7777_7777u32);
        }
        let long = XenAddToPhysmapBatch { domid: DOMID_SELF, space: XENMAPSPACE_GMFN_FOREIGN as u16, size: n as u16, foreign_domid: 1, idxs: ARGS + 0x200, gpfns: ARGS + 0x200 + n * 8, errs: ARGS + 0x200 + 2 * n * 8 };
        e.put(0, &long);
        let first = e.call(0, |cx| memory_op(cx, u64::from(XENMEM_ADD_TO_PHYSMAP_BATCH), ARGS));
        assert_eq!(first, Outcome::Continue { x0: u64::from(XENMEM_ADD_TO_PHYSMAP_BATCH) | (BATCH_PER_TRAP << 6), x1: ARGS, x2: 0 });
        assert_eq!(call(&mut e, 0, u64::from(XENMEM_ADD_TO_PHYSMAP_BATCH)), 0);
        assert!((0..n).all(|i| e.get::<i32>(0x200 + 2 * n * 8 + i * 4) == 0));
        assert_eq!(gp::lookup(e.dom(0), 0x9_1000 + n - 1, &e.phys), Some((d1_gfn + n - 1) << 12));
        let _ = e.phys.read_u64(RAM);
    }
}
