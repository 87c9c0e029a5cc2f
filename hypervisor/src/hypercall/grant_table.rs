//! `grant_table_op`, v1 only (as Xen on ARM): query_size, set_version, setup_table,
//! map_grant_ref with GNTMAP_host_map (the frame goes into the mapper's stage 2 at host_addr,
//! dev_bus_addr is its host PA), unmap_grant_ref, copy and cache_flush. Per-op failures are
//! `GNTST_*` statuses written back into the op; the hypercall itself fails only for unreadable
//! arguments and bad counts. Batches longer than [`OPS_PER_TRAP`] continue in a new trap with
//! the array pointer advanced and the count reduced.

use super::guest_phys::{self as gp, PAGE};
use super::{read_arg, write_arg, HypercallCtx, Outcome};
use crate::domain::grant::{GrantMapping, GrantTable};
use crate::domain::registry::lock_pair;
use crate::domain::{DomId, Domain};
use crate::sync::MutexGuard;
use crate::mm::S2Attr;
use guest_abi::errno::{ret, EINVAL, ENOSYS, EOPNOTSUPP, EPERM, ESRCH};
use guest_abi::grant_table::*;
use platform::PhysMem;

/// Map/unmap/copy/flush ops handled per trap before the call continues.
pub const OPS_PER_TRAP: u32 = 64;

/// One op of a batch: its guest address in, `Err(rc)` to end the whole call.
type BatchOp = fn(&mut HypercallCtx<'_, '_>, u64) -> Result<(), i64>;

/// Whether grant-table op `cmd` can drop a mapping (the last reference to a dead domain's frame).
pub fn unmaps(cmd: u64) -> bool {
    matches!(split_cmd(cmd).0, GNTTABOP_UNMAP_GRANT_REF | GNTTABOP_UNMAP_AND_REPLACE)
}

pub fn grant_table_op(cx: &mut HypercallCtx<'_, '_>, cmd: u64, uop: u64, count: u64) -> Outcome {
    let (op, opaque) = split_cmd(cmd);
    let count = count as u32; // `unsigned int` in Xen's prototype
    if (opaque != 0 && op != GNTTABOP_CACHE_FLUSH) || (count as i32) < 0 {
        return Outcome::Return(ret(EINVAL));
    }
    let (size, one): (u64, BatchOp) = match op {
        GNTTABOP_QUERY_SIZE | GNTTABOP_SETUP_TABLE => {
            if count != 1 {
                return Outcome::Return(ret(EINVAL));
            }
            let r = match op {
                GNTTABOP_QUERY_SIZE => query_size(cx, uop),
                _ => setup_table(cx, uop),
            };
            return Outcome::Return(r);
        }
        // The version calls take one struct whatever the count.
        GNTTABOP_SET_VERSION => return Outcome::Return(set_version(cx, uop)),
        GNTTABOP_GET_VERSION => return Outcome::Return(get_version(cx, uop)),
        GNTTABOP_GET_STATUS_FRAMES => {
            return Outcome::Return(if count != 1 { ret(EINVAL) } else { get_status_frames(cx, uop) });
        }
        // Page transfer is not offered (as Xen 4.17 on ARM): refused before the ops are read.
        GNTTABOP_TRANSFER => return Outcome::Return(ret(EOPNOTSUPP)),
        GNTTABOP_SWAP_GRANT_REF => (12, swap_op),
        GNTTABOP_UNMAP_AND_REPLACE => (24, unmap_and_replace_op),
        GNTTABOP_MAP_GRANT_REF => (32, map_op),
        // One op alone takes the short path; a batch is invalidated once.
        GNTTABOP_UNMAP_GRANT_REF if count > 1 => return unmap_batch(cx, cmd, uop, count),
        GNTTABOP_UNMAP_GRANT_REF => (24, unmap_op),
        GNTTABOP_COPY => (40, copy_op),
        GNTTABOP_CACHE_FLUSH => (16, cache_flush_op),
        _ => return Outcome::Return(ret(ENOSYS)),
    };
    let n = count.min(OPS_PER_TRAP);
    for i in 0..u64::from(n) {
        if let Err(e) = one(cx, uop.wrapping_add(i * size)) {
            return Outcome::Return(e);
        }
    }
    if n < count {
        return Outcome::Continue { x0: cmd, x1: uop.wrapping_add(u64::from(n) * size), x2: u64::from(count - n) };
    }
    Outcome::Return(0)
}

fn query_size(cx: &mut HypercallCtx<'_, '_>, uop: u64) -> i64 {
    let mut q: GnttabQuerySize = match read_arg(cx.mem, uop) {
        Ok(q) => q,
        Err(e) => return e,
    };
    let dom = gp::resolve(cx.caller, q.dom);
    match cx.domains.get(dom) {
        None => q.status = GNTST_BAD_DOMAIN,
        Some(_) if !may_inspect(cx, dom) => q.status = GNTST_PERMISSION_DENIED,
        Some(d) => {
            let gt = d.grants.lock();
            q.nr_frames = gt.nr_frames();
            q.max_nr_frames = gt.max_frames();
            q.status = GNTST_OKAY;
        }
    }
    write_arg(cx.mem, uop, &q).err().unwrap_or(0)
}

fn may_inspect(cx: &HypercallCtx<'_, '_>, dom: DomId) -> bool {
    dom == cx.caller || cx.domains.get(cx.caller).is_some_and(|d| d.is_hardware)
}

/// GNTTABOP_set_version: only v1 exists (v2 is -ENOSYS, as on Xen for ARM; anything else
/// -EINVAL). Whatever the answer, the version in force is written back.
fn set_version(cx: &mut HypercallCtx<'_, '_>, uop: u64) -> i64 {
    let mut v: GnttabSetVersion = match read_arg(cx.mem, uop) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let r = match v.version {
        1 => 0,
        2 => ret(ENOSYS),
        _ => ret(EINVAL),
    };
    v.version = 1;
    write_arg(cx.mem, uop, &v).err().unwrap_or(r)
}

/// GNTTABOP_get_version: the version of a domain the caller may inspect (always 1).
fn get_version(cx: &mut HypercallCtx<'_, '_>, uop: u64) -> i64 {
    let g: GnttabGetVersion = match read_arg(cx.mem, uop) {
        Ok(g) => g,
        Err(e) => return e,
    };
    let dom = gp::resolve(cx.caller, g.dom);
    if cx.domains.get(dom).is_none() {
        return ret(ESRCH);
    }
    if !may_inspect(cx, dom) {
        return ret(EPERM);
    }
    // Only the version field is written.
    write_arg(cx.mem, uop.wrapping_add(4), &1u32).err().unwrap_or(0)
}

/// GNTTABOP_get_status_frames: status frames exist only in v2, so a v1 table has none; the
/// call succeeds with a status (the only field written back).
fn get_status_frames(cx: &mut HypercallCtx<'_, '_>, uop: u64) -> i64 {
    let g: GnttabGetStatusFrames = match read_arg(cx.mem, uop) {
        Ok(g) => g,
        Err(e) => return e,
    };
    let dom = gp::resolve(cx.caller, g.dom);
    let status = if cx.domains.get(dom).is_none() {
        GNTST_BAD_DOMAIN
    } else if !may_inspect(cx, dom) {
        GNTST_PERMISSION_DENIED
    } else if g.nr_frames > 0 {
        GNTST_GENERAL_ERROR
    } else {
        GNTST_OKAY
    };
    write_arg(cx.mem, uop.wrapping_add(6), &status).err().unwrap_or(0)
}

fn setup_table(cx: &mut HypercallCtx<'_, '_>, uop: u64) -> i64 {
    let mut s: GnttabSetupTable = match read_arg(cx.mem, uop) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let dom = gp::resolve(cx.caller, s.dom);
    s.status = if cx.domains.get(dom).is_none() {
        GNTST_BAD_DOMAIN
    } else if !may_inspect(cx, dom) {
        GNTST_PERMISSION_DENIED
    } else {
        setup_frames(cx, dom, s.nr_frames, s.frame_list)
    };
    write_arg(cx.mem, uop, &s).err().unwrap_or(0)
}

/// Grow `dom`'s table to `n` frames and list where each is mapped (Xen on ARM lists guest
/// frames; an unmapped frame reads as all ones, INVALID_GFN).
fn setup_frames(cx: &mut HypercallCtx<'_, '_>, dom: DomId, n: u32, list: u64) -> i16 {
    let Some(d) = cx.domains.get(dom) else { return GNTST_BAD_DOMAIN };
    if d.grants.lock().grow(n, &mut *cx.machine.frames, cx.machine.mem).is_err() {
        return GNTST_GENERAL_ERROR;
    }
    // The list is read under the lock, written to the guest after it (guest copies take no
    // lock of this domain's grant table while it is held), a batch at a time.
    const BATCH: u32 = 64;
    let mut gfns = [u64::MAX; BATCH as usize];
    for first in (0..n).step_by(BATCH as usize) {
        let k = (n - first).min(BATCH);
        {
            let gt = d.grants.lock();
            for (i, g) in gfns.iter_mut().enumerate().take(k as usize) {
                *g = gt.frame_gfn(first + i as u32).unwrap_or(u64::MAX);
            }
        }
        for (i, gfn) in gfns.iter().enumerate().take(k as usize) {
            let i = u64::from(first) + i as u64;
            if write_arg(cx.mem, list.wrapping_add(i * 8), gfn).is_err() {
                return GNTST_BAD_VIRT_ADDR;
            }
        }
    }
    GNTST_OKAY
}

/// A v1 grant entry as read from the granter's table.
#[derive(Clone, Copy, Debug)]
struct Entry {
    flags: u16,
    domid: u16,
    frame: u32,
}

impl Entry {
    /// The entry's 8-aligned little-endian word: flags, domid, frame.
    fn of(w: u64) -> Self {
        Entry { flags: w as u16, domid: (w >> 16) as u16, frame: (w >> 32) as u32 }
    }

    /// Whether it lets `grantee` use the frame (for writing too, if `write`).
    fn permits(&self, grantee: DomId, write: bool) -> bool {
        self.flags & GTF_TYPE_MASK == GTF_PERMIT_ACCESS && self.domid == grantee && !(write && self.flags & GTF_READONLY != 0)
    }
}

/// Host PA of entry `gref` of the table `gt`, or why the reference is bad.
fn entry_pa(gt: &GrantTable, gref: u32) -> Result<u64, i16> {
    if gref >= gt.nr_entries() {
        return Err(GNTST_BAD_GNTREF);
    }
    gt.entry_pa(gref).ok_or(GNTST_GENERAL_ERROR)
}

/// The host frame `grantee` may use through `gref` of `granter` (grant table `gt`, locked),
/// checking the entry's type, grantee and (for `write`) that it is not read-only. Nothing is
/// pinned: for a copy.
fn granted_frame(granter: &Domain, gt: &GrantTable, gref: u32, grantee: DomId, write: bool, mem: &dyn PhysMem) -> Result<u64, i16> {
    let entry_pa = entry_pa(gt, gref)?;
    // One 8-byte load: the entry is 8-aligned.
    let e = Entry::of(mem.read_u64(entry_pa).map_err(|_| GNTST_GENERAL_ERROR)?);
    if !e.permits(grantee, write) {
        return Err(GNTST_GENERAL_ERROR);
    }
    gp::own_ram(granter, u64::from(e.frame), mem).ok_or(GNTST_GENERAL_ERROR)
}

/// Pin `gref` of `granter` (grant table `gt`, locked) for `grantee` and return the entry's
/// address and the granted host frame. The pin shows in the entry at once: GTF_reading (and
/// GTF_writing) are ORed in with one atomic operation, and the entry is checked as that
/// operation found it. The granter ends access with a compare-exchange that fails while either
/// flag is set, so either it ended access before the OR (the old value says so and the pin is
/// undone), or it cannot end access until the pin is dropped.
fn pin_grant(granter: &Domain, gt: &mut GrantTable, gref: u32, grantee: DomId, readonly: bool, mem: &dyn PhysMem) -> Result<(u64, u64), i16> {
    let entry_pa = entry_pa(gt, gref)?;
    let want = if readonly { GTF_READING } else { GTF_READING | GTF_WRITING };
    // A full pin counter refuses the map before the entry is touched (Xen's overflow check).
    gt.pin(gref, readonly).ok_or(GNTST_GENERAL_ERROR)?;
    let old = match mem.fetch_or_u64(entry_pa, u64::from(want)) {
        Ok(old) => old,
        Err(_) => {
            gt.unpin(gref, readonly);
            return Err(GNTST_GENERAL_ERROR);
        }
    };
    let e = Entry::of(old);
    let frame = if e.permits(grantee, !readonly) { gp::own_ram(granter, u64::from(e.frame), mem) } else { None };
    match frame {
        Some(pa) => Ok((entry_pa, pa)),
        None => {
            unpin_grant(gt, gref, readonly, entry_pa, mem);
            Err(GNTST_GENERAL_ERROR)
        }
    }
}

/// Drop a pin taken by [`pin_grant`]: GTF_reading / GTF_writing follow the pins left, with
/// atomic ANDs on the entry's word (the granter may write the entry at any time: its other
/// bits stay as the guest has them).
fn unpin_grant(gt: &mut GrantTable, gref: u32, readonly: bool, entry_pa: u64, mem: &dyn PhysMem) {
    let p = gt.unpin(gref, readonly);
    let mut keep = 0u16;
    if p.readers + p.writers > 0 {
        keep |= GTF_READING;
    }
    if p.writers > 0 {
        keep |= GTF_WRITING;
    }
    let clear = (GTF_READING | GTF_WRITING) & !keep;
    if clear != 0 {
        let _ = mem.fetch_and_u64(entry_pa, !u64::from(clear));
    }
}

/// Drop a pin on `gref` of the table `gt` (locked), if its entry still exists: for a mapping
/// released without an unmap call (its mapper is being destroyed).
pub(super) fn drop_pin(gt: &mut GrantTable, gref: u32, readonly: bool, mem: &dyn PhysMem) {
    if let Ok(entry_pa) = entry_pa(gt, gref) {
        unpin_grant(gt, gref, readonly, entry_pa, mem);
    }
}

fn map_op(cx: &mut HypercallCtx<'_, '_>, uop: u64) -> Result<(), i64> {
    let mut m: GnttabMapGrantRef = read_arg(cx.mem, uop)?;
    match map_one(cx, &m) {
        Ok((handle, bus)) => {
            m.status = GNTST_OKAY;
            m.handle = handle;
            m.dev_bus_addr = bus;
        }
        Err(st) => m.status = st,
    }
    write_arg(cx.mem, uop, &m)
}

/// The granter's and the mapper's grant tables, locked in domain-id order (one lock when a
/// domain maps its own grant).
struct TwoTables<'a> {
    granter: MutexGuard<'a, GrantTable>,
    mapper: Option<MutexGuard<'a, GrantTable>>,
}

impl<'a> TwoTables<'a> {
    fn lock(granter: &'a Domain, mapper: &'a Domain) -> Self {
        let (g, m) = lock_pair(&granter.grants, granter.id, &mapper.grants, mapper.id);
        Self { granter: g, mapper: m }
    }
    fn granter(&mut self) -> &mut GrantTable {
        &mut self.granter
    }
    fn mapper(&mut self) -> &mut GrantTable {
        match self.mapper.as_deref_mut() {
            Some(m) => m,
            None => &mut self.granter,
        }
    }
}

fn map_one(cx: &mut HypercallCtx<'_, '_>, m: &GnttabMapGrantRef) -> Result<(u32, u64), i16> {
    if m.flags & (GNTMAP_HOST_MAP | GNTMAP_DEVICE_MAP) == 0 {
        return Err(GNTST_BAD_GNTREF);
    }
    if m.flags & GNTMAP_DEVICE_MAP != 0 {
        return Err(GNTST_GENERAL_ERROR); // device mappings do not exist on ARM
    }
    let readonly = m.flags & GNTMAP_READONLY != 0;
    let caller = cx.caller;
    let granter_id = gp::resolve(caller, m.dom);
    let mem = cx.machine.mem;
    let granter = cx.domains.get(granter_id).ok_or(GNTST_BAD_DOMAIN)?;
    let mapper = cx.domains.get(caller).ok_or(GNTST_GENERAL_ERROR)?;
    let mut t = TwoTables::lock(granter, mapper);
    // A full maptrack wins over a bad reference, as in Xen (which takes the handle first).
    t.mapper().reserve_handle().map_err(|_| GNTST_NO_SPACE)?;
    let host_gfn = m.host_addr >> 12;
    if m.r#ref >= t.granter().nr_entries() {
        return Err(GNTST_BAD_GNTREF);
    }
    gp::ipa_of(host_gfn).ok_or(GNTST_GENERAL_ERROR)?;
    let (entry_pa, pa) = pin_grant(granter, t.granter(), m.r#ref, caller, readonly, mem)?;
    let mapping = GrantMapping { granter: granter_id, gref: m.r#ref, host_gfn, pa, readonly };
    let attr = if readonly { S2Attr::RAM_RO } else { S2Attr::RAM_RW };
    // Only frames the mapper does not own are ever asked about (`maps_frame`): count those.
    let foreign = !mapper.owns_ram(pa, PAGE);
    let handle = t.mapper().add_mapping(mapping, foreign);
    let mapped = handle.map(|h| (h, gp::map(mapper, cx.machine, host_gfn, pa, attr)));
    match mapped {
        Ok((h, Ok(()))) => {
            if foreign {
                map_bus_alias(mapper, cx.machine, pa, attr);
            }
            Ok((h, pa))
        }
        failed => {
            if let Ok((h, _)) = failed {
                t.mapper().remove_mapping(h);
            }
            unpin_grant(t.granter(), m.r#ref, readonly, entry_pa, mem);
            Err(if failed.is_err() { GNTST_NO_SPACE } else { GNTST_GENERAL_ERROR })
        }
    }
}

/// A direct-mapped mapper (dom0) hands dev_bus_addr, the frame's host address, to devices. When
/// its devices translate through its stage 2 (an SMMU sharing the tables) that address must
/// work too, so a foreign frame is also mapped 1:1 (IPA == PA), as Xen does for such a dom0.
/// Only where that IPA is free (it is never the mapper's own RAM: the frame is foreign).
fn map_bus_alias(mapper: &Domain, m: &mut crate::domain::registry::Machine<'_>, pa: u64, attr: S2Attr) {
    let gfn = pa >> 12;
    if !mapper.direct_mapped || mapper.owns_ram(pa, PAGE) {
        return;
    }
    let mut p2m = mapper.p2m.write();
    if gp::lookup_in(mapper, &p2m, gfn, m.mem).is_none() {
        let _ = gp::map_in(&mut p2m, m, gfn, pa, attr);
    }
}

/// Undo [`map_bus_alias`] once the mapper holds no other mapping of the frame (`maptrack`, the
/// mapper's grant table, is locked).
fn unmap_bus_alias(mapper: &Domain, maptrack: &GrantTable, m: &mut crate::domain::registry::Machine<'_>, pa: u64) {
    let gfn = pa >> 12;
    if !mapper.direct_mapped || mapper.owns_ram(pa, PAGE) || maptrack.maps_frame(pa) {
        return;
    }
    let mut p2m = mapper.p2m.write();
    if gp::lookup_in(mapper, &p2m, gfn, m.mem) == Some(pa) {
        let _ = gp::unmap_in(&mut p2m, m, gfn);
    }
}

fn unmap_op(cx: &mut HypercallCtx<'_, '_>, uop: u64) -> Result<(), i64> {
    let mut u: GnttabUnmapGrantRef = read_arg(cx.mem, uop)?;
    u.status = match unmap_one(cx, &u) {
        Ok(()) => GNTST_OKAY,
        Err(st) => st,
    };
    write_arg(cx.mem, uop, &u)
}

fn unmap_one(cx: &mut HypercallCtx<'_, '_>, u: &GnttabUnmapGrantRef) -> Result<(), i16> {
    let mapper = cx.domains.get(cx.caller).ok_or(GNTST_GENERAL_ERROR)?;
    // 1. Under the mapper's grant table lock: the handle is checked and taken off the
    //    maptrack, so this call alone goes on to unmap it (a racing unmap of the same handle
    //    gets GNTST_bad_handle). The grant stays pinned: the granter cannot take its frame
    //    back while any CPU may still translate to it.
    let m = {
        let mut own = mapper.grants.lock();
        let m = own.mapping(u.handle).ok_or(GNTST_BAD_HANDLE)?;
        if u.host_addr != 0 && u.host_addr >> 12 != m.host_gfn {
            return Err(GNTST_GENERAL_ERROR);
        }
        own.remove_mapping(u.handle);
        m
    };
    // 2. Take the frame out of the mapper's stage 2 if it is still there, and wait for every
    //    TLB (CPUs and SMMUs) to drop it, holding only the p2m lock: the broadcast
    //    invalidation does not hold up other vCPUs' grant operations. A failure here (a
    //    stage-2 walk that cannot happen for a mapped page) leaves the grant pinned for good:
    //    the frame may still be mapped, so it must never go back to the granter.
    if gp::unmap_in_if(&mut mapper.p2m.write(), cx.machine, m.host_gfn, |pa| pa == m.pa).is_err() {
        return Err(GNTST_GENERAL_ERROR);
    }
    // 3. The frame is unreachable through this mapping: drop the bus alias if no other
    //    mapping of the frame needs it, and unpin (granter's table locked first when its id is
    //    lower, as everywhere).
    let mem = cx.machine.mem;
    let Some(granter) = cx.domains.get(m.granter) else { return Ok(()) };
    let mut t = if m.granter == cx.caller { TwoTables { granter: mapper.grants.lock(), mapper: None } } else { TwoTables::lock(granter, mapper) };
    unmap_bus_alias(mapper, t.mapper(), cx.machine, m.pa);
    if let Ok(entry_pa) = entry_pa(t.granter(), m.gref) {
        unpin_grant(t.granter(), m.gref, m.readonly, entry_pa, mem);
    }
    Ok(())
}

/// GNTTABOP_unmap_grant_ref with several ops (up to [`OPS_PER_TRAP`] per trap), each with the
/// outcome [`unmap_one`] would give it, but with one stage-2 invalidation for the batch instead
/// of one per op:
/// 1. Every op is read and its handle taken off the maptrack (mapper's grant table locked).
/// 2. The taken mappings leave the stage 2 under one p2m write lock, cleared first and
///    invalidated (CPUs and SMMUs) once at the end ([`Stage2::unmap_each_page_if`]).
/// 3. Only then are the grants unpinned (the granter may take a frame back only once no TLB
///    can still reach it) and the statuses written.
///
/// An op that cannot be read ends the call with its error, after the ops before it are
/// finished (as Xen finishes a batch's completed ops before it returns -EFAULT).
fn unmap_batch(cx: &mut HypercallCtx<'_, '_>, cmd: u64, uop: u64, count: u32) -> Outcome {
    const SIZE: u64 = 24;
    let n = count.min(OPS_PER_TRAP);
    let Some(mapper) = cx.domains.get(cx.caller) else { return Outcome::Return(ret(ESRCH)) };
    // 1.
    let mut ops: alloc::vec::Vec<(GnttabUnmapGrantRef, Result<GrantMapping, i16>)> = alloc::vec::Vec::with_capacity(n as usize);
    let mut fault = None;
    {
        let mut own = mapper.grants.lock();
        for i in 0..u64::from(n) {
            let u: GnttabUnmapGrantRef = match read_arg(cx.mem, uop.wrapping_add(i * SIZE)) {
                Ok(u) => u,
                Err(e) => {
                    fault = Some(e);
                    break;
                }
            };
            let taken = match own.mapping(u.handle) {
                None => Err(GNTST_BAD_HANDLE),
                Some(m) if u.host_addr != 0 && u.host_addr >> 12 != m.host_gfn => Err(GNTST_GENERAL_ERROR),
                Some(m) => {
                    own.remove_mapping(u.handle);
                    Ok(m)
                }
            };
            ops.push((u, taken));
        }
    }
    // 2. An op whose page cannot be unmapped (a stage-2 walk that cannot fail for a mapped
    //    page) keeps its grant pinned for good, as in `unmap_one`.
    let ipas: alloc::vec::Vec<u64> = ops.iter().filter_map(|(_, t)| t.as_ref().ok()).map(|m| m.host_gfn << 12).collect();
    let pas: alloc::vec::Vec<u64> = ops.iter().filter_map(|(_, t)| t.as_ref().ok()).map(|m| m.pa).collect();
    if !ipas.is_empty() {
        let results = {
            let mut p2m = mapper.p2m.write();
            match p2m.as_mut() {
                Some(s2) => s2.unmap_each_page_if(&ipas, |i, pa| pa == pas[i], &mut *cx.machine.frames, cx.machine.mem, &mut *cx.machine.tlb),
                None => alloc::vec![Ok(false); ipas.len()],
            }
        };
        let mut r = results.into_iter();
        for (_, taken) in ops.iter_mut() {
            if taken.is_ok() && r.next().is_some_and(|x| x.is_err()) {
                *taken = Err(GNTST_GENERAL_ERROR);
            }
        }
    }
    // 3.
    let mem = cx.machine.mem;
    let mut rc = None;
    for (i, (mut u, taken)) in ops.into_iter().enumerate() {
        u.status = match taken {
            Ok(m) => {
                if let Some(granter) = cx.domains.get(m.granter) {
                    let mut t = if m.granter == cx.caller { TwoTables { granter: mapper.grants.lock(), mapper: None } } else { TwoTables::lock(granter, mapper) };
                    unmap_bus_alias(mapper, t.mapper(), cx.machine, m.pa);
                    if let Ok(entry_pa) = entry_pa(t.granter(), m.gref) {
                        unpin_grant(t.granter(), m.gref, m.readonly, entry_pa, mem);
                    }
                }
                GNTST_OKAY
            }
            Err(st) => st,
        };
        if let Err(e) = write_arg(cx.mem, uop.wrapping_add(i as u64 * SIZE), &u) {
            rc.get_or_insert(e);
        }
    }
    if let Some(e) = fault.or(rc) {
        return Outcome::Return(e);
    }
    if n < count {
        return Outcome::Continue { x0: cmd, x1: uop.wrapping_add(u64::from(n) * SIZE), x2: u64::from(count - n) };
    }
    Outcome::Return(0)
}

/// One end of a copy, resolved to a host address.
fn copy_end(cx: &HypercallCtx<'_, '_>, p: &GnttabCopyPtr, is_gref: bool, write: bool) -> Result<u64, i16> {
    let mem = cx.machine.mem;
    let id = gp::resolve(cx.caller, p.domid);
    if is_gref {
        let g = cx.domains.get(id).ok_or(GNTST_BAD_DOMAIN)?;
        let gref = u32::try_from(p.u).map_err(|_| GNTST_BAD_GNTREF)?;
        granted_frame(g, &g.grants.lock(), gref, cx.caller, write, mem)
    } else {
        let d = cx.domains.get(id).ok_or(GNTST_BAD_DOMAIN)?;
        if id != cx.caller && !cx.domains.get(cx.caller).is_some_and(|c| c.is_hardware) {
            return Err(GNTST_PERMISSION_DENIED);
        }
        gp::own_ram(d, p.u, mem).ok_or(GNTST_BAD_PAGE)
    }
}

fn copy_op(cx: &mut HypercallCtx<'_, '_>, uop: u64) -> Result<(), i64> {
    let mut c: GnttabCopy = read_arg(cx.mem, uop)?;
    c.status = match copy_one(cx, &c) {
        Ok(()) => GNTST_OKAY,
        Err(st) => st,
    };
    write_arg(cx.mem, uop, &c)
}

fn copy_one(cx: &mut HypercallCtx<'_, '_>, c: &GnttabCopy) -> Result<(), i16> {
    let len = u64::from(c.len);
    // Both ends are resolved (domain, grant, frame) before the offsets are checked, as Xen
    // orders it: a bad grant wins over a bad length.
    let src = copy_end(cx, &c.source, c.flags & GNTCOPY_SOURCE_GREF != 0, false)? + u64::from(c.source.offset);
    let dst = copy_end(cx, &c.dest, c.flags & GNTCOPY_DEST_GREF != 0, true)? + u64::from(c.dest.offset);
    if u64::from(c.source.offset) + len > PAGE || u64::from(c.dest.offset) + len > PAGE {
        return Err(GNTST_BAD_COPY_ARG);
    }
    let mem = cx.machine.mem;
    let mut buf = [0u8; 256];
    let mut done = 0u64;
    while done < len {
        let n = core::cmp::min(buf.len() as u64, len - done) as usize;
        mem.read(src + done, &mut buf[..n]).map_err(|_| GNTST_GENERAL_ERROR)?;
        mem.write(dst + done, &buf[..n]).map_err(|_| GNTST_GENERAL_ERROR)?;
        done += n as u64;
    }
    Ok(())
}

fn swap_op(cx: &mut HypercallCtx<'_, '_>, uop: u64) -> Result<(), i64> {
    let w: GnttabSwapGrantRef = read_arg(cx.mem, uop)?;
    let status = swap_entries(cx, w.ref_a, w.ref_b);
    write_arg(cx.mem, uop.wrapping_add(8), &status)
}

/// Exchange two entries of the caller's own table (the whole 8-byte v1 entries), unless
/// either is in use by a mapping (GNTST_eagain).
fn swap_entries(cx: &mut HypercallCtx<'_, '_>, a: u32, b: u32) -> i16 {
    let mem = cx.machine.mem;
    let Some(d) = cx.domains.get(cx.caller) else { return GNTST_GENERAL_ERROR };
    let gt = d.grants.lock();
    let (Ok(pa_a), Ok(pa_b)) = (entry_pa(&gt, a), entry_pa(&gt, b)) else { return GNTST_BAD_GNTREF };
    if a == b {
        return GNTST_OKAY;
    }
    let idle = crate::domain::grant::Pin::default();
    if gt.pins(a) != idle || gt.pins(b) != idle {
        return GNTST_EAGAIN;
    }
    let (Ok(va), Ok(vb)) = (mem.read_u64(pa_a), mem.read_u64(pa_b)) else { return GNTST_GENERAL_ERROR };
    let mut ok = true;
    for (pa, v) in [(pa_a, vb), (pa_b, va)] {
        ok &= mem.write(pa, &v.to_le_bytes()).is_ok();
    }
    if ok { GNTST_OKAY } else { GNTST_GENERAL_ERROR }
}

fn unmap_and_replace_op(cx: &mut HypercallCtx<'_, '_>, uop: u64) -> Result<(), i64> {
    let r: GnttabUnmapAndReplace = read_arg(cx.mem, uop)?;
    let status = unmap_and_replace(cx, &r);
    write_arg(cx.mem, uop.wrapping_add(20), &status)
}

/// GNTTABOP_unmap_and_replace as Xen does it on ARM: another mapping cannot take the
/// unmapped one's place, so a non-zero `new_addr` fails (the mapping stays); without one it
/// is an unmap. The handle is checked first either way.
fn unmap_and_replace(cx: &mut HypercallCtx<'_, '_>, r: &GnttabUnmapAndReplace) -> i16 {
    let Some(mapper) = cx.domains.get(cx.caller) else { return GNTST_GENERAL_ERROR };
    if mapper.grants.lock().mapping(r.handle).is_none() {
        return GNTST_BAD_HANDLE;
    }
    if r.new_addr != 0 {
        // With host_addr 0 nothing is asked of the host mapping: it stays, and that is success.
        return if r.host_addr != 0 { GNTST_GENERAL_ERROR } else { GNTST_OKAY };
    }
    match unmap_one(cx, &GnttabUnmapGrantRef { host_addr: r.host_addr, dev_bus_addr: 0, handle: r.handle, status: 0 }) {
        Ok(()) => GNTST_OKAY,
        Err(st) => st,
    }
}

fn cache_flush_op(cx: &mut HypercallCtx<'_, '_>, uop: u64) -> Result<(), i64> {
    let c: GnttabCacheFlush = read_arg(cx.mem, uop)?;
    let (offset, length) = (u64::from(c.offset), u64::from(c.length));
    if offset >= PAGE || length > PAGE || offset + length > PAGE || c.op & !(GNTTAB_CACHE_INVAL | GNTTAB_CACHE_CLEAN) != 0 {
        return Err(ret(EINVAL));
    }
    if length == 0 || c.op == 0 {
        return Ok(());
    }
    // `a` is a host address (dev_bus_addr), as on Xen: not RAM -EINVAL; RAM no domain owns
    // (the hypervisor's, free memory) -EPERM; another domain's frame only if the caller maps it
    // (else -EINVAL, as Xen's search of the owner's grants ends).
    let pa = c.a & !(PAGE - 1);
    let caller = cx.domains.get(cx.caller).ok_or(ret(EINVAL))?;
    if !caller.owns_ram(pa, PAGE) && !caller.grants.lock().maps_frame(pa) {
        if !super::is_host_ram(pa) {
            return Err(ret(EINVAL));
        }
        let someones = cx.domains.iter().any(|d| d.owns_ram(pa, PAGE));
        return Err(ret(if someones { EINVAL } else { EPERM }));
    }
    // Clean (and, for INVAL, the clean is a safe superset: no dirty line is dropped).
    cx.machine.mem.clean_dcache(pa + offset, length as usize);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::guest_phys::env::*;
    use super::*;
    use guest_abi::errno::EFAULT;
    use guest_abi::DOMID_SELF;

    fn gnt(e: &mut Env, caller: u16, op: u32, count: u64) -> i64 {
        e.call(caller, |cx| super::super::dispatch(cx, 20, [u64::from(op), ARGS, count, 0, 0]))
    }

    /// dom1 grants its first RAM page to dom0 (`readonly` as asked) at ref `gref`.
    fn grant_from_dom1(e: &mut Env, gref: u32, readonly: bool) -> u64 {
        let frame = (RAM + RAM_SIZE / 2) >> 12;
        e.call(1, |cx| {
            let d = cx.domains.get(1).unwrap();
            let mut gt = d.grants.lock();
            gt.grow(1, &mut *cx.machine.frames, cx.machine.mem).unwrap();
            let pa = gt.entry_pa(gref).unwrap();
            let flags = GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 };
            let mut b = [0u8; 8];
            b[0..2].copy_from_slice(&flags.to_le_bytes());
            b[2..4].copy_from_slice(&0u16.to_le_bytes());
            b[4..8].copy_from_slice(&(frame as u32).to_le_bytes());
            cx.machine.mem.write(pa, &b).unwrap();
        });
        e.phys.write(frame << 12, b"domU data").unwrap();
        frame << 12
    }

    fn map(e: &mut Env, gref: u32, dom: u16, flags: u32, host_addr: u64) -> GnttabMapGrantRef {
        e.put(0, &GnttabMapGrantRef { host_addr, flags, r#ref: gref, dom, status: 0x77, handle: 0x7777, dev_bus_addr: 0 });
        assert_eq!(gnt(e, 0, GNTTABOP_MAP_GRANT_REF, 1), 0);
        e.get(0)
    }

    fn unmap(e: &mut Env, handle: u32, host_addr: u64) -> i16 {
        e.put(0, &GnttabUnmapGrantRef { host_addr, dev_bus_addr: 0, handle, status: 0x77 });
        assert_eq!(gnt(e, 0, GNTTABOP_UNMAP_GRANT_REF, 1), 0);
        e.get::<GnttabUnmapGrantRef>(0).status
    }

    fn entry_flags(e: &Env, dom: u16, gref: u32) -> u16 {
        let pa = e.dom(dom).grants.lock().entry_pa(gref).unwrap();
        let mut b = [0u8; 2];
        e.phys.read(pa, &mut b).unwrap();
        u16::from_le_bytes(b)
    }

    #[test]
    fn cross_domain_map_read_unmap() {
        let mut e = Env::new();
        let pa = grant_from_dom1(&mut e, 3, false);
        let host = 0x8_0000_0000u64;
        let entry = |e: &Env| e.phys.read_u64(e.dom(1).grants.lock().entry_pa(3).unwrap()).unwrap();
        let granted = entry(&e);
        let m = map(&mut e, 3, 1, GNTMAP_HOST_MAP, host);
        assert_eq!(m.status, GNTST_OKAY);
        assert_eq!(m.dev_bus_addr, pa);
        assert_eq!(gp::lookup(e.dom(0), host >> 12, &e.phys), Some(pa));
        assert_eq!(entry_flags(&e, 1, 3), GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING);
        assert_eq!(gp::lookup(e.dom(0), pa >> 12, &e.phys), Some(pa), "1:1 alias for devices");
        let m2 = map(&mut e, 3, 1, GNTMAP_HOST_MAP, host + PAGE);
        assert_eq!(m2.status, GNTST_OKAY);
        assert_eq!(unmap(&mut e, m2.handle, host + PAGE), GNTST_OKAY);
        assert_eq!(gp::lookup(e.dom(0), pa >> 12, &e.phys), Some(pa), "still mapped once");
        assert_eq!(unmap(&mut e, m.handle, host), GNTST_OKAY);
        assert_eq!(gp::lookup(e.dom(0), host >> 12, &e.phys), None);
        assert_eq!(gp::lookup(e.dom(0), pa >> 12, &e.phys), None, "alias gone with the last mapping");
        assert_eq!(e.dom(1).grants.lock().pins(3), crate::domain::grant::Pin::default());
        assert_eq!(entry_flags(&e, 1, 3), GTF_PERMIT_ACCESS);
        assert_eq!(entry(&e), granted, "only the two status bits ever change; domid and frame stay");
        assert_eq!(unmap(&mut e, m.handle, host), GNTST_BAD_HANDLE);
        assert_eq!(unmap(&mut e, 0xffff, host), GNTST_BAD_HANDLE);
    }

    #[test]
    fn map_error_statuses() {
        let mut e = Env::new();
        grant_from_dom1(&mut e, 3, true);
        let host = 0x8_0000_0000u64;
        assert_eq!(map(&mut e, 3, 1, 0, host).status, GNTST_BAD_GNTREF);
        assert_eq!(map(&mut e, 3, 1, GNTMAP_HOST_MAP | GNTMAP_DEVICE_MAP, host).status, GNTST_GENERAL_ERROR);
        assert_eq!(map(&mut e, 3, 0x1234, GNTMAP_HOST_MAP, host).status, GNTST_BAD_DOMAIN);
        assert_eq!(map(&mut e, 0xff_ffff, 1, GNTMAP_HOST_MAP, host).status, GNTST_BAD_GNTREF);
        assert_eq!(map(&mut e, 4, 1, GNTMAP_HOST_MAP, host).status, GNTST_GENERAL_ERROR, "unused entry");
        assert_eq!(map(&mut e, 3, 1, GNTMAP_HOST_MAP, host).status, GNTST_GENERAL_ERROR, "rw of a r/o grant");
        assert_eq!(map(&mut e, 3, 1, GNTMAP_HOST_MAP, u64::MAX).status, GNTST_GENERAL_ERROR, "host_addr beyond the IPA space");
        let m = map(&mut e, 3, 1, GNTMAP_HOST_MAP | GNTMAP_READONLY, host);
        assert_eq!(m.status, GNTST_OKAY);
        assert_eq!(entry_flags(&e, 1, 3), GTF_PERMIT_ACCESS | GTF_READONLY | GTF_READING);
        // only dom0 is the grantee: dom1 mapping its own grant to dom0 is refused
        e.put(0, &GnttabMapGrantRef { host_addr: host, flags: GNTMAP_HOST_MAP | GNTMAP_READONLY, r#ref: 3, dom: DOMID_SELF, status: 0, handle: 0, dev_bus_addr: 0 });
        assert_eq!(gnt(&mut e, 1, GNTTABOP_MAP_GRANT_REF, 1), 0);
        assert_eq!(e.get::<GnttabMapGrantRef>(0).status, GNTST_GENERAL_ERROR);
        assert_eq!(gnt(&mut e, 0, GNTTABOP_MAP_GRANT_REF, 0), 0);
        assert_eq!(e.call(0, |cx| super::super::dispatch(cx, 20, [0, 0xdead_0000, 1, 0, 0])), ret(EFAULT));
    }

    #[test]
    fn pin_and_maptrack_limits() {
        let mut e = Env::new();
        grant_from_dom1(&mut e, 3, false);
        let host = 0x8_0000_0000u64;
        *e.dom(0).grants.lock() = GrantTable::with_limits(64, 1);
        let per_frame = crate::domain::grant::MAPTRACK_PER_FRAME;
        let limit = u32::from(crate::domain::grant::PIN_LIMIT);
        let mut handles = alloc::vec::Vec::new();
        for i in 0..limit {
            let m = map(&mut e, 3, 1, GNTMAP_HOST_MAP, host + u64::from(i) * PAGE);
            assert_eq!(m.status, GNTST_OKAY, "map {i}");
            handles.push(m.handle);
        }
        let over = host + u64::from(limit) * PAGE;
        assert_eq!(map(&mut e, 3, 1, GNTMAP_HOST_MAP, over).status, GNTST_GENERAL_ERROR, "write pins full");
        assert_eq!(gp::lookup(e.dom(0), over >> 12, &e.phys), None);
        assert_eq!(e.dom(1).grants.lock().pins(3).writers, limit);
        // Read-only pins count apart: they fill the rest of the one maptrack frame.
        grant_from_dom1(&mut e, 4, false);
        for i in limit..per_frame {
            let m = map(&mut e, 4, 1, GNTMAP_HOST_MAP | GNTMAP_READONLY, host + u64::from(i) * PAGE);
            assert_eq!(m.status, GNTST_OKAY, "map {i}");
        }
        let m = map(&mut e, 4, 1, GNTMAP_HOST_MAP | GNTMAP_READONLY, host + u64::from(per_frame) * PAGE);
        assert_eq!(m.status, GNTST_NO_SPACE, "maptrack full");
        assert_eq!(e.dom(1).grants.lock().pins(4).readers, per_frame - limit, "the refused map left no pin");
        assert_eq!(unmap(&mut e, handles[5], host + 5 * PAGE), GNTST_OKAY);
        let m = map(&mut e, 3, 1, GNTMAP_HOST_MAP, host + 5 * PAGE);
        assert_eq!((m.status, m.handle), (GNTST_OKAY, handles[5]), "the freed handle is reused");
    }

    #[test]
    fn query_setup_version_and_bad_calls() {
        let mut e = Env::new();
        e.put(0, &GnttabQuerySize { dom: DOMID_SELF, ..Default::default() });
        assert_eq!(gnt(&mut e, 0, GNTTABOP_QUERY_SIZE, 1), 0);
        let q: GnttabQuerySize = e.get(0);
        assert_eq!((q.nr_frames, q.max_nr_frames, q.status), (1, 64, 0));
        e.put(0, &GnttabQuerySize { dom: 0x1234, ..Default::default() });
        assert_eq!(gnt(&mut e, 0, GNTTABOP_QUERY_SIZE, 1), 0);
        assert_eq!(e.get::<GnttabQuerySize>(0).status, GNTST_BAD_DOMAIN);
        e.put(0, &GnttabQuerySize { dom: 0, ..Default::default() });
        assert_eq!(gnt(&mut e, 1, GNTTABOP_QUERY_SIZE, 1), 0);
        assert_eq!(e.get::<GnttabQuerySize>(0).status, GNTST_PERMISSION_DENIED);
        assert_eq!(gnt(&mut e, 0, GNTTABOP_QUERY_SIZE, 2), ret(EINVAL));
        assert_eq!(gnt(&mut e, 0, GNTTABOP_QUERY_SIZE | (1 << 12), 1), ret(EINVAL));
        assert_eq!(gnt(&mut e, 0, GNTTABOP_MAP_GRANT_REF, 0x8000_0000), ret(EINVAL));
        assert_eq!(gnt(&mut e, 0, 13, 1), ret(ENOSYS));
        for (v, r) in [(1u32, 0i64), (2, ret(ENOSYS)), (3, ret(EINVAL))] {
            e.put(0, &GnttabSetVersion { version: v });
            assert_eq!(gnt(&mut e, 0, GNTTABOP_SET_VERSION, 1), r);
        }
        e.put(0, &GnttabSetupTable { dom: DOMID_SELF, nr_frames: 2, status: 0, frame_list: ARGS + 0x100 });
        assert_eq!(gnt(&mut e, 0, GNTTABOP_SETUP_TABLE, 1), 0);
        assert_eq!(e.get::<GnttabSetupTable>(0).status, 0);
        assert_eq!(e.get::<u64>(0x100), u64::MAX);
        assert_eq!(e.dom(0).grants.lock().nr_frames(), 2);
        e.put(0, &GnttabSetupTable { dom: DOMID_SELF, nr_frames: 0x10000, status: 0, frame_list: ARGS + 0x100 });
        assert_eq!(gnt(&mut e, 0, GNTTABOP_SETUP_TABLE, 1), 0);
        assert_eq!(e.get::<GnttabSetupTable>(0).status, GNTST_GENERAL_ERROR);
    }

    #[test]
    fn copy_between_grant_and_own_frame() {
        let mut e = Env::new();
        let pa = grant_from_dom1(&mut e, 3, true);
        let own = RAM >> 12;
        let src = GnttabCopyPtr { u: 3, domid: 1, offset: 0 };
        let dst = GnttabCopyPtr { u: own, domid: DOMID_SELF, offset: 8 };
        let mut c = GnttabCopy { source: src, dest: dst, len: 9, flags: GNTCOPY_SOURCE_GREF, status: 0x77 };
        e.put(0, &c);
        assert_eq!(gnt(&mut e, 0, GNTTABOP_COPY, 1), 0);
        assert_eq!(e.get::<GnttabCopy>(0).status, 0);
        let mut b = [0u8; 9];
        e.phys.read(RAM + 8, &mut b).unwrap();
        assert_eq!(&b, b"domU data");
        let _ = pa;
        for (src, dst, len, flags, st) in [
            (GnttabCopyPtr { offset: 4090, ..src }, dst, 16, GNTCOPY_SOURCE_GREF, GNTST_BAD_COPY_ARG),
            (GnttabCopyPtr { domid: 0x1234, ..src }, dst, 8, GNTCOPY_SOURCE_GREF, GNTST_BAD_DOMAIN),
            (dst, src, 8, GNTCOPY_DEST_GREF, GNTST_GENERAL_ERROR),
            (src, GnttabCopyPtr { u: 1, ..dst }, 8, GNTCOPY_SOURCE_GREF, GNTST_BAD_PAGE),
        ] {
            c = GnttabCopy { source: src, dest: dst, len, flags, status: 0x77 };
            e.put(0, &c);
            assert_eq!(gnt(&mut e, 0, GNTTABOP_COPY, 1), 0);
            assert_eq!(e.get::<GnttabCopy>(0).status, st);
        }
    }

    #[test]
    fn cache_flush_checks_ranges_and_ownership() {
        let mut e = Env::new();
        let other = RAM + RAM_SIZE / 2;
        for (a, off, len, op, r) in [
            (0, 0, 0, 0, 0),
            (RAM, 0, 64, GNTTAB_CACHE_CLEAN, 0),
            (RAM, 4096, 1, GNTTAB_CACHE_CLEAN, ret(EINVAL)),
            (RAM, 0, 4097, GNTTAB_CACHE_CLEAN, ret(EINVAL)),
            (RAM, 4000, 200, GNTTAB_CACHE_CLEAN, ret(EINVAL)),
            (RAM, 0, 1, GNTTAB_CACHE_SOURCE_GREF, ret(EINVAL)),
            (other, 0, 1, GNTTAB_CACHE_INVAL, ret(EINVAL)),
            (0x1000, 0, 1, GNTTAB_CACHE_INVAL, ret(EINVAL)),
            (POOL, 0, 1, GNTTAB_CACHE_INVAL, ret(EPERM)),
        ] {
            e.put(0, &GnttabCacheFlush { a, offset: off, length: len, op });
            assert_eq!(gnt(&mut e, 0, GNTTABOP_CACHE_FLUSH, 1), r, "{a:#x} {off} {len} {op}");
        }
    }

    #[test]
    fn version_status_frames_transfer_and_swap() {
        let mut e = Env::new();
        for (v, count, r) in [(1u32, 0u64, 0i64), (2, 1, ret(ENOSYS)), (3, 1, ret(EINVAL))] {
            e.put(0, &GnttabSetVersion { version: v });
            assert_eq!(gnt(&mut e, 0, GNTTABOP_SET_VERSION, count), r);
            assert_eq!(e.get::<GnttabSetVersion>(0).version, 1, "the version in force is written back");
        }
        let get = |e: &mut Env, caller, dom| {
            e.put(0, &GnttabGetVersion { dom, pad: 0, version: 0x77 });
            match gnt(e, caller, GNTTABOP_GET_VERSION, 0) {
                0 => i64::from(e.get::<GnttabGetVersion>(0).version),
                r => r,
            }
        };
        assert_eq!(get(&mut e, 0, DOMID_SELF), 1);
        assert_eq!(get(&mut e, 0, 1), 1);
        assert_eq!(get(&mut e, 1, 0), ret(EPERM));
        assert_eq!(get(&mut e, 0, 0x1234), ret(ESRCH));
        let frames = |e: &mut Env, caller, dom, nr_frames, count| {
            e.put(0, &GnttabGetStatusFrames { nr_frames, dom, status: 0x77, frame_list: ARGS + 0x100 });
            match gnt(e, caller, GNTTABOP_GET_STATUS_FRAMES, count) {
                0 => i64::from(e.get::<GnttabGetStatusFrames>(0).status),
                r => r,
            }
        };
        assert_eq!(frames(&mut e, 0, DOMID_SELF, 0, 1), 0);
        assert_eq!(frames(&mut e, 0, DOMID_SELF, 1, 1), i64::from(GNTST_GENERAL_ERROR));
        assert_eq!(frames(&mut e, 0, 0x1234, 1, 1), i64::from(GNTST_BAD_DOMAIN));
        assert_eq!(frames(&mut e, 1, 0, 0, 1), i64::from(GNTST_PERMISSION_DENIED));
        assert_eq!(frames(&mut e, 0, DOMID_SELF, 0, 2), ret(EINVAL));
        assert_eq!(gnt(&mut e, 0, GNTTABOP_TRANSFER, 1), ret(EOPNOTSUPP));
        // swap: dom1's entries 3 (granted) and 4 (empty) change places; 5 with itself is a no-op
        grant_from_dom1(&mut e, 3, false);
        let word = |e: &Env, gref| e.phys.read_u64(e.dom(1).grants.lock().entry_pa(gref).unwrap()).unwrap();
        let (w3, w4) = (word(&e, 3), word(&e, 4));
        let swap = |e: &mut Env, caller, ref_a, ref_b| {
            e.put(0, &GnttabSwapGrantRef { ref_a, ref_b, status: 0x77 });
            assert_eq!(gnt(e, caller, GNTTABOP_SWAP_GRANT_REF, 1), 0);
            e.get::<GnttabSwapGrantRef>(0).status
        };
        assert_eq!(swap(&mut e, 1, 3, 4), GNTST_OKAY);
        assert_eq!((word(&e, 3), word(&e, 4)), (w4, w3));
        assert_eq!(swap(&mut e, 1, 5, 5), GNTST_OKAY);
        assert_eq!(swap(&mut e, 1, 5, 0xff_ffff), GNTST_BAD_GNTREF);
        // a mapped entry stays where it is
        let m = map(&mut e, 4, 1, GNTMAP_HOST_MAP, 0x8_0000_0000);
        assert_eq!(m.status, GNTST_OKAY);
        assert_eq!(swap(&mut e, 1, 4, 3), GNTST_EAGAIN);
        // unmap_and_replace: another address is refused and the mapping stays; without one it unmaps
        let uar = |e: &mut Env, new_addr, handle| {
            e.put(0, &GnttabUnmapAndReplace { host_addr: 0x8_0000_0000, new_addr, handle, status: 0x77 });
            assert_eq!(gnt(e, 0, GNTTABOP_UNMAP_AND_REPLACE, 1), 0);
            e.get::<GnttabUnmapAndReplace>(0).status
        };
        assert_eq!(uar(&mut e, 0, 0xffff), GNTST_BAD_HANDLE);
        assert_eq!(uar(&mut e, 0x8_0000_2000, m.handle), GNTST_GENERAL_ERROR);
        assert!(gp::lookup(e.dom(0), 0x8_0000_0000 >> 12, &e.phys).is_some());
        assert_eq!(uar(&mut e, 0, m.handle), GNTST_OKAY);
        assert_eq!(gp::lookup(e.dom(0), 0x8_0000_0000 >> 12, &e.phys), None);
        assert_eq!(uar(&mut e, 0, m.handle), GNTST_BAD_HANDLE);
    }

    #[test]
    fn unmap_batch_invalidates_once_then_unpins() {
        use crate::mm::testmem::Event;
        let mut e = Env::new();
        let pa = grant_from_dom1(&mut e, 3, false);
        grant_from_dom1(&mut e, 4, false);
        let host = 0x8_0000_0000u64;
        let handles: alloc::vec::Vec<u32> = (0..3u64)
            .map(|k| {
                let m = map(&mut e, 3 + (k % 2) as u32, 1, GNTMAP_HOST_MAP, host + k * PAGE);
                assert_eq!(m.status, GNTST_OKAY);
                m.handle
            })
            .collect();
        // The three mappings, a bad handle between them, one with the wrong host_addr, and
        // the first again (taken already by then).
        let ops = [
            (handles[0], host),
            (0x999, host),
            (handles[1], host + PAGE),
            (handles[2], host + 5 * PAGE),
            (handles[2], host + 2 * PAGE),
            (handles[0], host),
        ];
        for (i, &(handle, host_addr)) in ops.iter().enumerate() {
            e.put(i as u64 * 24, &GnttabUnmapGrantRef { host_addr, dev_bus_addr: 0, handle, status: 0x77 });
        }
        e.phys.set_logging(true);
        assert_eq!(gnt(&mut e, 0, GNTTABOP_UNMAP_GRANT_REF, ops.len() as u64), 0);
        let log = e.phys.take_log();
        let status: alloc::vec::Vec<i16> = (0..ops.len()).map(|i| e.get::<GnttabUnmapGrantRef>(i as u64 * 24).status).collect();
        assert_eq!(status, [GNTST_OKAY, GNTST_BAD_HANDLE, GNTST_OKAY, GNTST_GENERAL_ERROR, GNTST_OKAY, GNTST_BAD_HANDLE]);
        for k in 0..3 {
            assert_eq!(gp::lookup(e.dom(0), (host >> 12) + k, &e.phys), None);
        }
        assert_eq!(gp::lookup(e.dom(0), pa >> 12, &e.phys), None, "bus alias gone with the last mapping");
        for gref in [3, 4] {
            assert_eq!(e.dom(1).grants.lock().pins(gref), crate::domain::grant::Pin::default());
            assert_eq!(entry_flags(&e, 1, gref), GTF_PERMIT_ACCESS);
        }
        // The host_addr mappings leave with one invalidation; both entries are unpinned
        // only after it completed.
        let vmid0 = 1;
        let first_inv = log.iter().position(|ev| matches!(ev, Event::InvIpa { vmid, .. } | Event::InvVmid { vmid } if *vmid == vmid0)).unwrap();
        assert_eq!(log[first_inv], Event::InvVmid { vmid: vmid0 }, "{log:#x?}");
        let sync = first_inv + log[first_inv..].iter().position(|ev| *ev == Event::Sync).unwrap();
        let host_clears = log[..first_inv].iter().filter(|ev| matches!(ev, Event::Write { new: 0, .. })).count();
        assert_eq!(host_clears, 3, "the three mappings are cleared first: {log:#x?}");
        for gref in [3u32, 4] {
            let entry = e.dom(1).grants.lock().entry_pa(gref).unwrap();
            let unpin = log.iter().position(|ev| matches!(ev, Event::Write { pa, .. } if *pa == entry)).unwrap();
            assert!(unpin > sync, "gref {gref} unpinned before the invalidation completed: {log:#x?}");
        }
    }

    #[test]
    fn long_batches_continue() {
        let mut e = Env::new();
        let n = OPS_PER_TRAP as u64 + 3;
        for i in 0..n {
            e.put(i * 16, &GnttabCacheFlush { a: RAM, offset: 0, length: 8, op: GNTTAB_CACHE_CLEAN });
        }
        let o = e.call(0, |cx| grant_table_op(cx, u64::from(GNTTABOP_CACHE_FLUSH), ARGS, n));
        assert_eq!(o, Outcome::Continue { x0: u64::from(GNTTABOP_CACHE_FLUSH), x1: ARGS + u64::from(OPS_PER_TRAP) * 16, x2: 3 });
        assert_eq!(gnt(&mut e, 0, GNTTABOP_CACHE_FLUSH, n), 0);
    }
}
