//! What XEN_DOMCTL_destroydomain gives back, once the domain's vCPUs have left their CPUs, and
//! what it keeps while other domains still map the domain's frames, as Xen 4.17 does: a frame
//! a grant mapping (the mapper's maptrack entry) or a foreign mapping (the mapper's stage-2
//! entry) references stays allocated, the domain's other memory goes back at once, and the
//! domain stays in the table as a dying one (getdomaininfo: XEN_DOMINF_dying, its held pages as
//! tot_pages; its id not reused) until the last such mapping is undone. The mapper's
//! GNTTABOP_unmap_grant_ref then works as on a live granter, and [`reap`] frees the frame; when
//! none is left the domain leaves the table and dom0 hears VIRQ_DOM_EXC again (Xen sends it at
//! the kill and again when the domain is finally freed).
//!
//! No new reference can appear once the destroy has taken the domain's stage 2: grant and
//! foreign maps find its frames through it (under its grant-table lock, or its p2m's read
//! lock, which the destroy takes after them), and acquire_resource refuses a dying domain under
//! its grant-table lock. So the references found once, right after, are all there will be.

use super::HypercallCtx;
use crate::domain::registry::{Domains, Machine};
use crate::domain::remains::{Holder, Ref, Remains};
use crate::domain::{DomId, Domain};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

/// Bit n: domain n is dead and lingers (frames of it are still mapped elsewhere).
static LINGERING: AtomicU32 = AtomicU32::new(0);

/// One destroy's teardown at a time: a domain is torn down once however many CPUs ask.
static TEARING: crate::sync::SpinMutex<()> = crate::sync::SpinMutex::new(());

/// Whether any dead domain lingers (one load: the hooks after unmaps look at this first).
#[inline]
pub fn any_lingering() -> bool {
    LINGERING.load(Ordering::Acquire) != 0
}

/// Give back what `d` holds; its vCPUs are off their CPUs for good. Its vGIC's slot, event
/// channels (the peers' ends go back to unbound), its mappings of other domains' grants (the
/// granters' pins dropped), its stage-2 tables, and every frame of it that no other domain
/// maps; the rest is kept until unmapped. Returns whether the domain left the table now.
pub fn tear_down(cx: &mut HypercallCtx<'_, '_>, d: &Domain) -> bool {
    let _one = TEARING.lock();
    if d.dead() || !cx.domains.get(d.id).is_some_and(|x| core::ptr::eq(x, d)) {
        return false;
    }
    cx.arch.detach_vgic(d.id);
    crate::hypercall::event_channel::close_all(cx.domains, d, cx.machine.mem);
    let m = &mut *cx.machine;
    if let Some(p2m) = d.p2m.write().take() {
        if p2m.destroy(&mut *m.frames, m.mem, &mut *m.tlb).is_err() {
            crate::log!("d{}: destroyed, but its stage-2 tables could not all be given back", d.id);
        }
    }
    // A grant map of it that found its frame before the stage 2 went holds this lock until it
    // has its maptrack entry and stage-2 page: once it is free, every such map is visible.
    drop(d.grants.lock());
    release_own_mappings(cx.domains, d, m.mem);
    let refs = references(cx.domains, d, m.mem);
    let remains = Remains::new(refs);
    let held = remains.frames();
    for b in d.ram().as_slice() {
        free_except(m, b.pa, b.size / 4096, &held);
    }
    let n = held.len();
    if n == 0 {
        finish(cx.domains, d, m);
        return true;
    }
    *d.remains.lock() = Some(remains);
    d.set_dead(n as u64);
    LINGERING.fetch_or(1 << d.id, Ordering::AcqRel);
    crate::log!("d{}: dying: {n} page(s) of it still mapped by other domains, kept until they unmap them", d.id);
    if let Some(d0) = cx.domains.get(0) {
        crate::hypercall::event_channel::send_virq(d0, &mut *cx.machine, guest_abi::event_channel::VIRQ_DOM_EXC);
    }
    true
}

/// Free `pages` frames from `pa`, except those in `held` (sorted), in runs.
fn free_except(m: &mut Machine<'_>, pa: u64, pages: u64, held: &[u64]) {
    let mut run = pa;
    let end = pa + pages * 4096;
    for &h in held.iter().filter(|&&h| h >= pa && h < end) {
        if h > run {
            m.frames.free_frames(run, ((h - run) / 4096) as usize);
        }
        run = h + 4096;
    }
    if end > run {
        m.frames.free_frames(run, ((end - run) / 4096) as usize);
    }
}

/// Xen's gnttab_release_mappings: every grant `d` maps (its stage 2 is gone already) is
/// dropped from its maptrack and unpinned in the granter's table.
fn release_own_mappings(domains: &Domains, d: &Domain, mem: &dyn platform::PhysMem) {
    let mine: Vec<(u32, crate::domain::grant::GrantMapping)> = d.grants.lock().mappings().collect();
    for (h, gm) in mine {
        let Some(granter) = domains.get(gm.granter) else {
            d.grants.lock().remove_mapping(h);
            continue;
        };
        let (mut g, own) = crate::domain::registry::lock_pair(&granter.grants, granter.id, &d.grants, d.id);
        let granter_gt = &mut *g;
        super::grant_table::drop_pin(granter_gt, gm.gref, gm.readonly, mem);
        match own {
            Some(mut own) => own.remove_mapping(h),
            None => granter_gt.remove_mapping(h),
        };
    }
}

/// Every reference another domain holds on a frame of `gone`: its grant mappings of gone's
/// grants, and its stage-2 entries mapping gone's RAM or grant-table frames.
fn references(domains: &Domains, gone: &Domain, mem: &dyn platform::PhysMem) -> Vec<Ref> {
    let banks = *gone.ram();
    let table: Vec<u64> = gone.grants.lock().frame_pas().to_vec();
    let owned = |pa: u64| banks.contains_pa(pa, 4096) || table.contains(&pa);
    let mut refs = Vec::new();
    // Without RAM or grant-table frames nothing of it can be mapped (and no stage 2 need be
    // walked: dom0's is large).
    if banks.as_slice().is_empty() && table.is_empty() {
        return refs;
    }
    for o in domains.iter().filter(|o| o.id != gone.id) {
        refs.extend(o.grants.lock().mappings().filter(|(_, gm)| gm.granter == gone.id).map(|(handle, gm)| Ref { holder: Holder::Grant { mapper: o.id, handle }, pa: gm.pa }));
        let p2m = o.p2m.read();
        let Some(p2m) = p2m.as_ref() else { continue };
        for l in p2m.leaves(mem).filter_map(Result::ok) {
            let overlaps = l.size > 4096 && banks.as_slice().iter().any(|b| l.pa < b.pa + b.size && b.pa < l.pa + l.size);
            if l.size == 4096 && !owned(l.pa) && !overlaps {
                continue;
            }
            for k in 0..l.size / 4096 {
                let pa = l.pa + k * 4096;
                if owned(pa) {
                    refs.push(Ref { holder: Holder::Leaf { mapper: o.id, ipa: l.ipa + k * 4096 }, pa });
                }
            }
        }
    }
    refs
}

/// Whether `h` still references frame `pa` of `gone`.
fn still_holds(domains: &Domains, gone: DomId, h: &Holder, pa: u64, mem: &dyn platform::PhysMem) -> bool {
    match *h {
        Holder::Grant { mapper, handle } => domains.get(mapper).is_some_and(|o| o.grants.lock().mapping(handle).is_some_and(|gm| gm.granter == gone && gm.pa == pa)),
        Holder::Leaf { mapper, ipa } => domains.get(mapper).is_some_and(|o| o.p2m.read().as_ref().and_then(|p| p.lookup_pa(ipa, mem)).map(|x| x & !0xfff) == Some(pa)),
    }
}

/// Look again at every lingering domain: free the frames no mapping references any more, and
/// let a domain with none left go. Called with no lock held, after anything that may have
/// undone such a mapping (grant unmaps, physmap changes, a destroy, the toolstack's listing).
pub fn reap(domains: &Domains, m: &mut Machine<'_>) {
    let mut mask = LINGERING.load(Ordering::Acquire);
    while mask != 0 {
        let id = mask.trailing_zeros() as DomId;
        mask &= mask - 1;
        let Some(d) = domains.get(id) else { continue };
        let (freed, last) = {
            let mut r = d.remains.lock();
            let Some(rem) = r.as_mut() else { continue };
            let freed = rem.release(|h, pa| still_holds(domains, id, h, pa, m.mem));
            d.set_held_pages(rem.frames().len() as u64);
            let last = rem.is_empty();
            if last {
                *r = None;
            }
            (freed, last)
        };
        // Its grant-table frames go back when it goes (`finish`), once.
        let table: Vec<u64> = if freed.is_empty() { Vec::new() } else { d.grants.lock().frame_pas().to_vec() };
        for pa in freed.iter().filter(|pa| !table.contains(pa)) {
            m.frames.free_frame(*pa);
        }
        if last {
            crate::log!("d{id}: its last mapped page was unmapped");
            finish(domains, d, m);
        }
    }
}

/// The last of `d` goes: its grant-table frames and shared_info back to the pool, its slot
/// free, dom0 told (VIRQ_DOM_EXC).
fn finish(domains: &Domains, d: &Domain, m: &mut Machine<'_>) {
    let table = d.grants.lock().take_frames();
    for pa in table {
        m.frames.free_frame(pa);
    }
    if let Some(pa) = d.with_evtchn(|ev| ev.shared_info.take()) {
        m.frames.free_frame(pa);
    }
    LINGERING.fetch_and(!(1u32 << d.id), Ordering::AcqRel);
    domains.remove(d.id);
    crate::log!("d{}: gone ({} MiB of RAM given back in all)", d.id, d.ram().total() >> 20);
    if let Some(d0) = domains.get(0) {
        crate::hypercall::event_channel::send_virq(d0, m, guest_abi::event_channel::VIRQ_DOM_EXC);
    }
}

#[cfg(test)]
mod tests {
    use super::super::guest_phys::{self as gp, env::*};
    use guest_abi::errno::{ret, EEXIST, ESRCH};
    use guest_abi::grant_table::*;
    use guest_abi::hypercall as nr;
    use guest_abi::memory::*;
    use guest_abi::toolstack::*;
    use platform::PhysMem;

    const V: u32 = XEN_DOMCTL_INTERFACE_VERSION;

    fn domctl(e: &mut Env, caller: u16, cmd: u32, domain: u16, u: [u64; 16]) -> i64 {
        e.put(0, &XenDomctl { cmd, interface_version: V, domain, pad: [0; 3], u });
        e.call(caller, |cx| super::super::dispatch(cx, nr::HYPERVISOR_DOMCTL, [ARGS, 0, 0, 0, 0]))
    }

    fn with<T: Payload>(v: T) -> [u64; 16] {
        let mut u = [0; 16];
        set_payload(&mut u, &v);
        u
    }

    /// A domain made as the toolstack makes one, with `pages` pages of RAM from gfn 0x40000.
    fn new_domain(e: &mut Env, pages: u64) -> u16 {
        let c = CreateDomain { flags: cdf::HVM | cdf::HAP, max_vcpus: 1, max_grant_frames: -1, max_maptrack_frames: -1, grant_opts: 1, ..Default::default() };
        assert_eq!(domctl(e, 0, domctl::CREATEDOMAIN, 0, with(c)), 0);
        let id = e.get::<XenDomctl>(0).domain;
        assert_eq!(domctl(e, 0, domctl::MAX_VCPUS, id, with(MaxVcpus { max: 1 })), 0);
        assert_eq!(domctl(e, 0, domctl::MAX_MEM, id, with(MaxMem { max_memkb: pages * 4 })), 0);
        for i in 0..pages {
            e.put(0x800 + i * 8, &(0x40000 + i));
        }
        e.put(0x400, &XenMemoryReservation { extent_start: ARGS + 0x800, nr_extents: pages, extent_order: 0, mem_flags: 0, domid: id });
        assert_eq!(e.call(0, |cx| super::super::dispatch(cx, nr::HYPERVISOR_MEMORY_OP, [u64::from(XENMEM_POPULATE_PHYSMAP), ARGS + 0x400, 0, 0, 0])), pages as i64);
        id
    }

    /// `granter` grants its frame `gfn` to `grantee` at reference `gref`.
    fn offer(e: &mut Env, granter: u16, gref: u32, grantee: u16, gfn: u64) {
        e.call(granter, |cx| {
            let d = cx.domains.get(granter).unwrap();
            let mut gt = d.grants.lock();
            gt.grow(1, &mut *cx.machine.frames, cx.machine.mem).unwrap();
            let w = u64::from(GTF_PERMIT_ACCESS) | u64::from(grantee) << 16 | gfn << 32;
            cx.machine.mem.write(gt.entry_pa(gref).unwrap(), &w.to_le_bytes()).unwrap();
        });
    }

    fn map(e: &mut Env, mapper: u16, dom: u16, gref: u32, host_addr: u64) -> GnttabMapGrantRef {
        e.put(0, &GnttabMapGrantRef { host_addr, flags: GNTMAP_HOST_MAP, r#ref: gref, dom, status: 0x77, handle: 0x7777, dev_bus_addr: 0 });
        assert_eq!(e.call(mapper, |cx| super::super::dispatch(cx, nr::HYPERVISOR_GRANT_TABLE_OP, [u64::from(GNTTABOP_MAP_GRANT_REF), ARGS, 1, 0, 0])), 0);
        e.get(0)
    }

    fn unmap(e: &mut Env, handle: u32, host_addr: u64) -> i16 {
        e.put(0, &GnttabUnmapGrantRef { host_addr, dev_bus_addr: 0, handle, status: 0x77 });
        assert_eq!(e.call(0, |cx| super::super::dispatch(cx, nr::HYPERVISOR_GRANT_TABLE_OP, [u64::from(GNTTABOP_UNMAP_GRANT_REF), ARGS, 1, 0, 0])), 0);
        e.get::<GnttabUnmapGrantRef>(0).status
    }

    fn info(e: &mut Env, id: u16) -> Option<GetDomainInfo> {
        (domctl(e, 0, domctl::GETDOMAININFO, id, [0; 16]) == 0).then(|| payload::<GetDomainInfo>(&e.get::<XenDomctl>(0).u)).filter(|i| i.domain == id)
    }

    fn entry_flags(e: &Env, dom: u16, gref: u32) -> u16 {
        let pa = e.dom(dom).grants.lock().entry_pa(gref).unwrap();
        e.phys.read_u64(pa).unwrap() as u16
    }

    #[test]
    fn a_frame_dom0_maps_through_a_grant_outlives_the_destroy_until_dom0_unmaps_it() {
        let mut e = Env::new();
        let id = new_domain(&mut e, 16);
        offer(&mut e, id, 5, 0, 0x40002);
        let host = 0x8_0000_0000u64;
        let m = map(&mut e, 0, id, 5, host);
        assert_eq!(m.status, GNTST_OKAY);
        let pa = m.dev_bus_addr;
        e.phys.write(pa, b"ring").unwrap();
        let before = e.frames.total_free();
        let table = e.dom(id).grants.lock().frame(0).unwrap();
        assert_eq!(domctl(&mut e, 0, domctl::DESTROYDOMAIN, id, [0; 16]), 0);
        // Its other 15 pages are back (and its stage-2 tables); the granted one and its
        // grant-table frame are not.
        let after = e.frames.total_free();
        assert!(after >= before + 15 * 4096);
        assert!(!e.frames.is_free(pa, 4096) && !e.frames.is_free(table, 4096));
        assert!(e.frames.is_free(pa + 4096, 4096) && e.frames.is_free(pa - 4096, 4096));
        // It is a dying domain holding one page, its id taken.
        let i = info(&mut e, id).expect("still listed");
        assert_eq!((i.flags & dominf::DYING, i.tot_pages), (dominf::DYING, 1));
        let mut op = XenDomctl { cmd: domctl::CREATEDOMAIN, interface_version: V, domain: id, ..Default::default() };
        set_payload(&mut op.u, &CreateDomain { flags: cdf::HVM | cdf::HAP, max_vcpus: 1, max_grant_frames: -1, max_maptrack_frames: -1, grant_opts: 1, ..Default::default() });
        e.put(0, &op);
        assert_eq!(e.call(0, |cx| super::super::dispatch(cx, nr::HYPERVISOR_DOMCTL, [ARGS, 0, 0, 0, 0])), ret(EEXIST), "its id is not reused while it lingers");
        // dom0 still reads the page where it mapped it, and a second destroy succeeds.
        assert_eq!(gp::lookup(e.dom(0), host >> 12, &e.phys), Some(pa));
        let mut b = [0u8; 4];
        e.phys.read(pa, &mut b).unwrap();
        assert_eq!(&b, b"ring");
        assert_eq!(domctl(&mut e, 0, domctl::DESTROYDOMAIN, id, [0; 16]), 0);
        assert_eq!(e.frames.total_free(), after);
        // The grant is still pinned in its table; dom0's unmap succeeds and unpins it.
        assert_eq!(entry_flags(&e, id, 5) & (GTF_READING | GTF_WRITING), GTF_READING | GTF_WRITING);
        let gone = e.dom(id) as *const crate::domain::Domain;
        assert_eq!(unmap(&mut e, m.handle, host), GNTST_OKAY);
        assert_eq!(gp::lookup(e.dom(0), host >> 12, &e.phys), None);
        // Now it is gone: the page and the grant-table frame went back.
        assert!(e.domains.get(id).is_none());
        assert_eq!(info(&mut e, id).map(|i| i.domain), None);
        assert_eq!(domctl(&mut e, 0, domctl::DESTROYDOMAIN, id, [0; 16]), ret(ESRCH));
        assert_eq!(e.frames.total_free(), after + 2 * 4096);
        assert!(e.frames.is_free(pa, 4096) && e.frames.is_free(table, 4096));
        // SAFETY: the registry never frees a domain's record.
        assert!(unsafe { &*gone }.grants.lock().frame(0).is_none(), "its table gave its frames up");
    }

    #[test]
    fn a_foreign_map_holds_its_frame_until_dom0_removes_it() {
        let mut e = Env::new();
        let id = new_domain(&mut e, 8);
        e.put(0x100, &0x40003u64);
        e.put(0x108, &0x9_0000u64);
        e.put(0x110, &0x7777_7777u32);
        e.put(0, &XenAddToPhysmapBatch { domid: guest_abi::DOMID_SELF, space: XENMAPSPACE_GMFN_FOREIGN as u16, size: 1, foreign_domid: id, idxs: ARGS + 0x100, gpfns: ARGS + 0x108, errs: ARGS + 0x110 });
        assert_eq!(e.call(0, |cx| super::super::dispatch(cx, nr::HYPERVISOR_MEMORY_OP, [u64::from(XENMEM_ADD_TO_PHYSMAP_BATCH), ARGS, 0, 0, 0])), 0);
        assert_eq!(e.get::<i32>(0x110), 0);
        let pa = gp::lookup(e.dom(0), 0x9_0000, &e.phys).unwrap();
        let before = e.frames.total_free();
        assert_eq!(domctl(&mut e, 0, domctl::DESTROYDOMAIN, id, [0; 16]), 0);
        let after = e.frames.total_free();
        assert!(after >= before + 7 * 4096 && !e.frames.is_free(pa, 4096));
        assert_eq!(gp::lookup(e.dom(0), 0x9_0000, &e.phys), Some(pa), "dom0's map stays");
        assert_eq!(info(&mut e, id).map(|i| (i.flags & dominf::DYING, i.tot_pages)), Some((dominf::DYING, 1)));
        // A new foreign map of the dying domain is refused.
        e.put(0x100, &0x40004u64);
        e.put(0x108, &0x9_0001u64);
        e.put(0, &XenAddToPhysmapBatch { domid: guest_abi::DOMID_SELF, space: XENMAPSPACE_GMFN_FOREIGN as u16, size: 1, foreign_domid: id, idxs: ARGS + 0x100, gpfns: ARGS + 0x108, errs: ARGS + 0x110 });
        assert_eq!(e.call(0, |cx| super::super::dispatch(cx, nr::HYPERVISOR_MEMORY_OP, [u64::from(XENMEM_ADD_TO_PHYSMAP_BATCH), ARGS, 0, 0, 0])), 0);
        assert_ne!(e.get::<i32>(0x110), 0);
        e.put(0, &XenRemoveFromPhysmap { domid: guest_abi::DOMID_SELF, gpfn: 0x9_0000 });
        assert_eq!(e.call(0, |cx| super::super::dispatch(cx, nr::HYPERVISOR_MEMORY_OP, [u64::from(XENMEM_REMOVE_FROM_PHYSMAP), ARGS, 0, 0, 0])), 0);
        assert!(e.domains.get(id).is_none());
        assert_eq!(e.frames.total_free(), after + 4096);
        assert!(e.frames.is_free(pa, 4096));
    }

    #[test]
    fn a_destroyed_domain_with_nothing_mapped_goes_at_once_and_drops_the_pins_it_held() {
        let mut e = Env::new();
        let id = new_domain(&mut e, 4);
        // dom1 (built at boot) grants a page to the new domain, which maps it.
        let d1_gfn = (RAM + RAM_SIZE / 2) >> 12;
        offer(&mut e, 1, 7, id, d1_gfn);
        assert_eq!(map(&mut e, id, 1, 7, 0x5000_0000).status, GNTST_OKAY);
        assert_eq!(entry_flags(&e, 1, 7), GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING);
        assert_eq!(domctl(&mut e, 0, domctl::DESTROYDOMAIN, id, [0; 16]), 0);
        assert!(e.domains.get(id).is_none());
        assert_eq!(entry_flags(&e, 1, 7), GTF_PERMIT_ACCESS, "dom1 may end access again");
        assert!(!super::any_lingering());
    }

    #[test]
    fn a_dom0less_guest_is_destroyed_and_its_ram_goes_back_to_the_pool() {
        use crate::domain::{Domain, RamBank, RamBanks};
        let mut e = Env::new();
        // A guest as boot builds one: RAM from the frame pool, a stage 2 mapping it.
        let pa = e.frames.alloc(16 * 4096, 4096).unwrap();
        let mut ram = RamBanks::default();
        ram.push(RamBank { ipa: 0x4000_0000, pa, size: 16 * 4096 });
        let mut d = Domain::new(2, false, false, ram);
        let mut tlb = e.phys.tlb();
        let mut p2m = crate::mm::Stage2::new(3, crate::mm::Stage2Config::DOMAIN, &mut e.frames, &e.phys).unwrap();
        p2m.map(0x4000_0000, pa, 16 * 4096, crate::mm::S2Attr::RAM_RWX, &mut e.frames, &e.phys, &mut tlb).unwrap();
        *d.p2m.get_mut() = Some(p2m);
        assert!(e.domains.insert(d).is_ok());
        let before = e.frames.total_free();
        assert_eq!(domctl(&mut e, 0, domctl::DESTROYDOMAIN, 2, [0; 16]), 0);
        assert!(e.domains.get(2).is_none());
        assert!(e.frames.is_free(pa, 16 * 4096));
        assert!(e.frames.total_free() > before + 16 * 4096, "its stage-2 tables too");
    }

    #[test]
    fn an_acquired_grant_table_frame_holds_the_domain_and_goes_back_once() {
        let mut e = Env::new();
        let id = new_domain(&mut e, 4);
        // dom0 maps the domain's grant-table frame 0 (as the toolstack seeds it).
        e.put(0x100, &0x9_0000u64);
        e.put(0, &XenMemAcquireResource { domid: id, r#type: XENMEM_RESOURCE_GRANT_TABLE, id: XENMEM_RESOURCE_GRANT_TABLE_ID_SHARED, nr_frames: 1, pad: 0, frame: 0, frame_list: ARGS + 0x100 });
        assert_eq!(e.call(0, |cx| super::super::dispatch(cx, nr::HYPERVISOR_MEMORY_OP, [u64::from(XENMEM_ACQUIRE_RESOURCE), ARGS, 0, 0, 0])), 0);
        let table = e.dom(id).grants.lock().frame(0).unwrap();
        assert_eq!(gp::lookup(e.dom(0), 0x9_0000, &e.phys), Some(table));
        assert_eq!(domctl(&mut e, 0, domctl::DESTROYDOMAIN, id, [0; 16]), 0);
        assert_eq!(info(&mut e, id).map(|i| (i.flags & dominf::DYING, i.tot_pages)), Some((dominf::DYING, 1)));
        assert!(!e.frames.is_free(table, 4096));
        // A dying domain's resources are not acquired again.
        e.put(0x100, &0x9_0001u64);
        e.put(0, &XenMemAcquireResource { domid: id, r#type: XENMEM_RESOURCE_GRANT_TABLE, id: XENMEM_RESOURCE_GRANT_TABLE_ID_SHARED, nr_frames: 1, pad: 0, frame: 0, frame_list: ARGS + 0x100 });
        assert_eq!(e.call(0, |cx| super::super::dispatch(cx, nr::HYPERVISOR_MEMORY_OP, [u64::from(XENMEM_ACQUIRE_RESOURCE), ARGS, 0, 0, 0])), ret(ESRCH));
        let after = e.frames.total_free();
        e.put(0, &XenRemoveFromPhysmap { domid: guest_abi::DOMID_SELF, gpfn: 0x9_0000 });
        assert_eq!(e.call(0, |cx| super::super::dispatch(cx, nr::HYPERVISOR_MEMORY_OP, [u64::from(XENMEM_REMOVE_FROM_PHYSMAP), ARGS, 0, 0, 0])), 0);
        assert!(e.domains.get(id).is_none());
        assert!(e.frames.is_free(table, 4096));
        assert_eq!(e.frames.total_free(), after + 4096);
    }
}
