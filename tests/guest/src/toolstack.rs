//! The toolstack's hypercalls (sysctl, domctl) as `xl info`, `xl list`, `xl vcpu-list`,
//! xenstored and xenconsoled make them: the checks every call gets (interface version, an
//! unreadable struct, the domain named, privilege) and the commands themselves. Run last in the
//! table, by dom0 (which may) and by the domU (which gets -EPERM). Values that are the
//! machine's and not the hypervisor's choice (free memory, timestamps, frame numbers) are shown
//! as whether they are sane, so that both hypervisors print the same line. The state-changing
//! rows (pause, max_mem, affinity) act on domU2, whose only vCPU is off: nothing of it runs.
//! Expected values: real Xen 4.17 (recorded).

use crate::cases::{Case, Expect, Observed};
use crate::ops::{hc2, Page};
use core::ptr::addr_of_mut;
use guest_abi::errno;
use guest_abi::hypercall::*;
use guest_abi::toolstack::*;

/// Argument buffers: the struct at 0, bitmaps and arrays from 0x400.
static mut TS_PAGE: Page = Page([0; 4096]);

/// The domU whose only vCPU is off (the conformance run's domU2).
const DOMU2: u16 = 2;
/// A domain id no domain has.
const ABSENT: u16 = 0x1234;
const OUT: usize = 0x400;

fn base() -> u64 {
    addr_of_mut!(TS_PAGE) as u64
}

fn at<T: Copy>(off: usize) -> *mut T {
    // SAFETY: in bounds of the page at every call site.
    unsafe { (addr_of_mut!(TS_PAGE) as *mut u8).add(off) as *mut T }
}

fn put<T: Copy>(off: usize, v: T) -> u64 {
    // SAFETY: the guest's own page; callers keep `off + size_of::<T>()` within it.
    unsafe { at::<T>(off).write_unaligned(v) };
    base() + off as u64
}

fn get<T: Copy>(off: usize) -> T {
    // SAFETY: as in `put`.
    unsafe { at::<T>(off).read_unaligned() }
}

fn fill(byte: u8) {
    // SAFETY: the guest's own page.
    unsafe { core::ptr::write_bytes(addr_of_mut!(TS_PAGE) as *mut u8, byte, 4096) };
}

fn ret(r: i64) -> Observed {
    Observed::Ret(r)
}

fn hex(v: u64) -> Observed {
    Observed::Hex(v)
}

/// sysctl `cmd` with payload `u` (version `version`): its return; the struct stays at 0.
fn sysctl_v(cmd: u32, version: u32, u: [u64; 16]) -> i64 {
    let p = put(0, XenSysctl { cmd, interface_version: version, u });
    hc2(HYPERVISOR_SYSCTL, p, 0)
}

fn sysctl(cmd: u32, u: [u64; 16]) -> i64 {
    sysctl_v(cmd, XEN_SYSCTL_INTERFACE_VERSION, u)
}

fn domctl_v(cmd: u32, version: u32, domain: u16, u: [u64; 16]) -> i64 {
    let p = put(0, XenDomctl { cmd, interface_version: version, domain, pad: [0; 3], u });
    hc2(HYPERVISOR_DOMCTL, p, 0)
}

fn domctl(cmd: u32, domain: u16, u: [u64; 16]) -> i64 {
    domctl_v(cmd, XEN_DOMCTL_INTERFACE_VERSION, domain, u)
}

fn with<T: Payload>(v: T) -> [u64; 16] {
    let mut u = [0; 16];
    set_payload(&mut u, &v);
    u
}

fn sysctl_out<T: Payload>() -> T {
    payload(&get::<XenSysctl>(0).u)
}

fn domctl_out<T: Payload>() -> T {
    payload(&get::<XenDomctl>(0).u)
}

/// A bitmap of `bits` bits at `OUT + off`.
fn bitmap(off: usize, bits: u32) -> XenctlBitmap {
    XenctlBitmap { bitmap: base() + (OUT + off) as u64, nr_bits: bits, pad: 0 }
}

/// Run `f`; on success show `g()` instead of the return.
fn then(r: i64, g: impl FnOnce() -> Observed) -> Observed {
    if r != 0 {
        return ret(r);
    }
    g()
}

// ---- sysctl --------------------------------------------------------------------------------

fn physinfo(show: fn(&Physinfo) -> u64) -> Observed {
    fill(0xaa);
    let r = sysctl(sysctl::PHYSINFO, [0; 16]);
    then(r, || hex(show(&sysctl_out::<Physinfo>())))
}

fn topology(p: &Physinfo) -> u64 {
    u64::from(p.threads_per_core) << 40 | u64::from(p.cores_per_socket) << 32 | u64::from(p.nr_cpus) << 24 | u64::from(p.max_cpu_id) << 16 | u64::from(p.nr_nodes) << 8 | u64::from(p.max_node_id)
}

/// Free pages within the total, nothing to scrub or claimed, no x86 words.
fn memory_sane(p: &Physinfo) -> u64 {
    let free_ok = p.free_pages > 0 && p.free_pages < p.total_pages;
    let zeros = p.scrub_pages == 0 && p.outstanding_pages == 0 && p.arch_capabilities == 0 && p.hw_cap == [0; 8];
    u64::from(free_ok) << 4 | u64::from(zeros)
}

fn getdomaininfolist(first: u16, max: u32) -> Observed {
    fill(0);
    let r = sysctl(sysctl::GETDOMAININFOLIST, with(GetDomainInfoList { first_domain: first, max_domains: max, buffer: base() + OUT as u64, ..Default::default() }));
    then(r, || {
        let n = sysctl_out::<GetDomainInfoList>().num_domains;
        // The count, then the ids in order (4 bits each).
        let ids = (0..n.min(8) as usize).fold(0u64, |acc, i| acc << 4 | u64::from(get::<GetDomainInfo>(OUT + i * 120).domain & 0xf));
        hex(u64::from(n) << 32 | ids)
    })
}

fn cpupool(op: u32, id: u32) -> Observed {
    fill(0xee);
    let r = sysctl(sysctl::CPUPOOL_OP, with(CpupoolOp { op, cpupool_id: id, cpumap: bitmap(0, 16), ..Default::default() }));
    then(r, || {
        let p = sysctl_out::<CpupoolOp>();
        // id, scheduler, domains, then the two bitmap bytes.
        hex(u64::from(p.cpupool_id) << 48 | u64::from(p.sched_id) << 40 | u64::from(p.n_dom) << 32 | u64::from(get::<u16>(OUT)))
    })
}

fn numainfo(with_buffers: bool) -> Observed {
    fill(0);
    let (m, d) = if with_buffers { (base() + OUT as u64, base() + OUT as u64 + 0x100) } else { (0, 0) };
    let r = sysctl(sysctl::NUMAINFO, with(NumaInfo { num_nodes: 4, pad: 0, meminfo: m, distance: d }));
    then(r, || {
        let n = sysctl_out::<NumaInfo>().num_nodes;
        if !with_buffers {
            return hex(u64::from(n));
        }
        let mem = get::<MemInfo>(OUT);
        let sane = mem.memsize > 0 && mem.memfree > 0 && mem.memfree < mem.memsize;
        // Nodes, node 0's size in MiB, whether its free memory is sane, its distance to itself.
        hex(u64::from(n) << 48 | (mem.memsize >> 20) << 16 | u64::from(sane) << 8 | u64::from(get::<u32>(OUT + 0x100)))
    })
}

fn cputopoinfo(with_buffer: bool) -> Observed {
    fill(0);
    let b = if with_buffer { base() + OUT as u64 } else { 0 };
    let r = sysctl(sysctl::CPUTOPOINFO, with(CpuTopoInfo { num_cpus: 8, pad: 0, cputopo: b }));
    then(r, || {
        let n = sysctl_out::<CpuTopoInfo>().num_cpus;
        if !with_buffer {
            return hex(u64::from(n));
        }
        // core, socket, node of each CPU (4 bits each).
        let t = (0..n.min(4) as usize).fold(0u64, |acc, i| {
            let c = get::<CpuTopo>(OUT + i * 12);
            acc << 12 | u64::from(c.core & 0xf) << 8 | u64::from(c.socket & 0xf) << 4 | u64::from(c.node & 0xf)
        });
        hex(u64::from(n) << 48 | t)
    })
}

/// Read the console ring, then read again from where that stopped: the first read returns
/// bytes, the second none (nothing was logged in between).
fn readconsole() -> Observed {
    fill(0);
    let rc = |incremental, index, count| with(ReadConsole { clear: 0, incremental, pad: [0; 2], index, buffer: base() + OUT as u64, count, pad2: 0 });
    let r = sysctl(sysctl::READCONSOLE, rc(0, 0, 0x800));
    if r != 0 {
        return ret(r);
    }
    let first = sysctl_out::<ReadConsole>();
    let r = sysctl(sysctl::READCONSOLE, rc(1, first.index, 0x800));
    if r != 0 {
        return ret(r);
    }
    let second = sysctl_out::<ReadConsole>();
    hex(u64::from(first.count == 0x800) << 8 | u64::from(second.count))
}

// ---- domctl --------------------------------------------------------------------------------

fn info(domain: u16) -> Result<GetDomainInfo, i64> {
    fill(0x55);
    match domctl(domctl::GETDOMAININFO, domain, [0; 16]) {
        0 => Ok(domctl_out()),
        r => Err(r),
    }
}

/// Whether getdomaininfo shows `domain` shut down.
pub fn shut_down(domain: u16) -> bool {
    matches!(info(domain), Ok(i) if i.domain == domain && i.flags & dominf::SHUTDOWN != 0)
}

fn info_show(domain: u16, show: fn(&GetDomainInfo) -> u64) -> Observed {
    match info(domain) {
        Ok(i) => hex(show(&i)),
        Err(r) => ret(r),
    }
}

/// The id echoed in the header and the struct, then the online vCPUs and the highest id.
fn ids_and_vcpus(i: &GetDomainInfo) -> u64 {
    let echoed = get::<XenDomctl>(0).domain;
    u64::from(echoed) << 48 | u64::from(i.domain) << 32 | u64::from(i.nr_online_vcpus) << 16 | u64::from(i.max_vcpu_id & 0xffff)
}

/// cpupool, address bits, ssidref, the handle and arch_config all zero but for the first two.
fn pool_and_bits(i: &GetDomainInfo) -> u64 {
    let zeros = i.ssidref == 0 && i.handle == [0; 16] && i.arch_config == [0; 3] && i.outstanding_pages == 0 && i.shr_pages == 0 && i.paged_pages == 0;
    u64::from(i.cpupool) << 16 | u64::from(i.gpaddr_bits) << 8 | u64::from(zeros)
}

fn vcpuinfo(domain: u16, vcpu: u32) -> Observed {
    fill(0x55);
    let r = domctl(domctl::GETVCPUINFO, domain, with(GetVcpuInfo { vcpu, ..Default::default() }));
    then(r, || {
        let v = domctl_out::<GetVcpuInfo>();
        let timed = (v.cpu_time != 0) == (v.online != 0);
        hex(u64::from(v.online) << 24 | u64::from(v.blocked) << 16 | u64::from(v.running) << 8 | u64::from(timed) << 4 | u64::from(v.cpu))
    })
}

/// vCPU affinity: `cmd` with `flags`, bitmaps of `bits` bits prefilled with 0xff (hard) and
/// 0xee (soft) unless `set` gives the hard and soft bytes to set.
fn affinity(cmd: u32, domain: u16, flags: u32, bits: u32, set: Option<(u8, u8)>) -> Observed {
    fill(0);
    put(OUT, [0xffu8; 4]);
    put(OUT + 8, [0xeeu8; 4]);
    if let Some((h, s)) = set {
        put(OUT, h);
        put(OUT + 8, s);
    }
    let a = VcpuAffinity { vcpu: 0, flags, cpumap_hard: bitmap(0, bits), cpumap_soft: bitmap(8, bits) };
    let r = domctl(cmd, domain, with(a));
    then(r, || hex(u64::from(get::<u32>(OUT)) << 32 | u64::from(get::<u32>(OUT + 8))))
}

fn sched_op(domain: u16, sched_id: u32, cmd: u32) -> Observed {
    fill(0);
    ret(domctl(domctl::SCHEDULER_OP, domain, with(SchedulerOp { sched_id, cmd, u: [0; 2] })))
}

fn node_affinity(domain: u16) -> Observed {
    fill(0xff);
    let r = domctl(domctl::GETNODEAFFINITY, domain, with(NodeAffinity { nodemap: bitmap(0, 16) }));
    then(r, || hex(u64::from(get::<u16>(OUT))))
}

/// Pause domU2 twice, read its flags, unpause twice, read them again, then unpause once more
/// (-EINVAL): the returns and the paused bit each time.
fn pause_cycle() -> Observed {
    let paused = |d| info(d).map_or(0xf, |i| u64::from(i.flags & dominf::PAUSED != 0));
    let rets = [
        domctl(domctl::PAUSEDOMAIN, DOMU2, [0; 16]),
        domctl(domctl::PAUSEDOMAIN, DOMU2, [0; 16]),
    ];
    let during = paused(DOMU2);
    let rets2 = [
        domctl(domctl::UNPAUSEDOMAIN, DOMU2, [0; 16]),
        domctl(domctl::UNPAUSEDOMAIN, DOMU2, [0; 16]),
    ];
    let after = paused(DOMU2);
    let extra = domctl(domctl::UNPAUSEDOMAIN, DOMU2, [0; 16]);
    let ok = rets.iter().chain(rets2.iter()).all(|&r| r == 0);
    hex(u64::from(ok) << 12 | during << 8 | after << 4 | u64::from(extra == -(errno::EINVAL as i64)))
}

/// Set domU2's limit to what it has (its memory in KiB), and show max_pages after.
fn max_mem_same() -> Observed {
    let Ok(before) = info(DOMU2) else { return hex(0xdead) };
    let kib = before.max_pages * 4;
    let r = domctl(domctl::MAX_MEM, DOMU2, with(MaxMem { max_memkb: kib }));
    then(r, || info_show(DOMU2, |i| i.max_pages))
}

// ---- a dom0less domain with `xen,enhanced` as init-dom0less finds and sets it up -----------

/// The conformance run's domU1 has no `xen,enhanced`; domU2 has `"enabled"`.
const DOMU1: u16 = 1;
/// The second of Xen's magic pages on ARM (0x39000000), which init-dom0less populates as a
/// dom0less domain's xenstore page.
const XENSTORE_GFN: u64 = 0x39001;

/// hvm_op get_param `index` of `domid`: the return if it fails, else the value.
fn param(domid: u16, index: u32) -> Observed {
    use guest_abi::hvm::*;
    let p = put(0, XenHvmParam { domid, index, value: 0 });
    then(hc2(HYPERVISOR_HVM_OP, u64::from(HVMOP_GET_PARAM), p), || hex(get::<XenHvmParam>(0).value))
}

/// populate_physmap of one page of `domid` at `gfn`: the extents done.
fn populate(domid: u16, gfn: u64) -> i64 {
    use guest_abi::memory::*;
    let list = put(OUT, gfn);
    let r = put(0, XenMemoryReservation { extent_start: list, nr_extents: 1, extent_order: 0, mem_flags: 0, domid });
    hc2(HYPERVISOR_MEMORY_OP, u64::from(XENMEM_POPULATE_PHYSMAP), r)
}

/// init-dom0less's steps on domU2's memory: the xenstore page refused while the domain holds
/// all it may, then max_mem one page higher and the page populated, a second page refused;
/// shown as the two populates' counts, max_mem's return and the pages held and allowed after.
fn xenstore_page() -> Observed {
    let Ok(before) = info(DOMU2) else { return hex(0xdead) };
    let at_limit = populate(DOMU2, XENSTORE_GFN);
    let raised = domctl(domctl::MAX_MEM, DOMU2, with(MaxMem { max_memkb: (before.max_pages + 1) * 4 }));
    let page = populate(DOMU2, XENSTORE_GFN);
    let beyond = populate(DOMU2, XENSTORE_GFN + 1);
    let Ok(after) = info(DOMU2) else { return hex(0xbeef) };
    let grew = |a: u64, b: u64| (a - b) & 0xff;
    hex((at_limit as u64 & 0xf) << 28 | (raised as u64 & 0xff) << 20 | (page as u64 & 0xf) << 16 | (beyond as u64 & 0xf) << 12 | grew(after.tot_pages, before.tot_pages) << 4 | grew(after.max_pages, before.max_pages))
}

/// dom0 sets domU2's STORE_PFN to the xenstore page, as init-dom0less does once the page is
/// ready: the set's return, then the value read back.
fn set_store_pfn() -> Observed {
    use guest_abi::hvm::*;
    let p = put(0, XenHvmParam { domid: DOMU2, index: HVM_PARAM_STORE_PFN, value: XENSTORE_GFN });
    then(hc2(HYPERVISOR_HVM_OP, u64::from(HVMOP_SET_PARAM), p), || param(DOMU2, HVM_PARAM_STORE_PFN))
}

// ---- a domain's life as `xl create` / `xl destroy` begin and end it ---------------------------

/// The domain the lifecycle rows created (0: none yet).
static mut CREATED: u16 = 0;

fn created() -> u16 {
    // SAFETY: the guest's own static; cases run one at a time on one vCPU.
    match unsafe { CREATED } {
        0 => ABSENT,
        id => id,
    }
}

/// What libxl asks for on ARM: HVM with HAP, the native GIC, default grant limits, v1.
fn config(max_vcpus: u32) -> CreateDomain {
    CreateDomain { flags: cdf::HVM | cdf::HAP, max_vcpus, max_grant_frames: -1, max_maptrack_frames: -1, grant_opts: 1, handle: [0x5a; 16], ..Default::default() }
}

/// Create with `c` changed by `f`: the return (a domain that was created is destroyed again).
fn create_bad(f: fn(&mut CreateDomain)) -> Observed {
    let mut c = config(1);
    f(&mut c);
    fill(0);
    let r = domctl(domctl::CREATEDOMAIN, 0, with(c));
    if r == 0 {
        let id = get::<XenDomctl>(0).domain;
        domctl(domctl::DESTROYDOMAIN, id, [0; 16]);
    }
    ret(r)
}

/// Create a 2-vCPU domain: the return, whether the id is a fresh one, and the GIC version
/// filled in.
fn create() -> Observed {
    fill(0);
    let r = domctl(domctl::CREATEDOMAIN, 0, with(config(2)));
    if r != 0 {
        return ret(r);
    }
    let out = get::<XenDomctl>(0);
    // SAFETY: as in `created`.
    unsafe { CREATED = out.domain };
    let c: CreateDomain = payload(&out.u);
    hex(u64::from(out.domain > DOMU2 && out.domain < guest_abi::DOMID_FIRST_RESERVED) << 8 | u64::from(c.gic_version))
}

/// The created domain's flags, pages, vCPUs and handle as getdomaininfo reports them.
fn created_info() -> Observed {
    info_show(created(), |i| {
        u64::from(i.flags) << 32 | i.tot_pages << 24 | i.max_pages << 16 | u64::from(i.nr_online_vcpus) << 12 | u64::from(i.max_vcpu_id & 0xfff) | u64::from(i.handle == [0x5a; 16]) << 60
    })
}

fn created_call<T: Payload>(cmd: u32, v: T) -> Observed {
    ret(domctl(cmd, created(), with(v)))
}

/// get_paging_mempool_size: the size, or the return.
fn mempool_size() -> Observed {
    fill(0);
    let r = domctl(domctl::GET_PAGING_MEMPOOL_SIZE, created(), [0; 16]);
    then(r, || hex(domctl_out::<PagingMempool>().size))
}

/// The start state libxl gives vCPU 0 (kernel entry, EL1h with DAIF masked, x0 = DTB) with
/// `cpsr` as the mode, at 0x800.
fn start_state(cpsr: u64, flags: u32) -> u64 {
    let mut c = VcpuGuestContext { flags, pc: 0x4008_0000, cpsr, ..Default::default() };
    c.x[0] = 0x4800_0000;
    put(0x800, c)
}

fn set_context(vcpu: u32, ctxt: u64) -> Observed {
    ret(domctl(domctl::SETVCPUCONTEXT, created(), with(VcpuContext { vcpu, pad: 0, ctxt })))
}

/// getvcpucontext: the return, or the flags, the mode and whether pc and x0 came back.
fn get_context(vcpu: u32) -> Observed {
    put(0x800, VcpuGuestContext::default());
    let r = domctl(domctl::GETVCPUCONTEXT, created(), with(VcpuContext { vcpu, pad: 0, ctxt: base() + 0x800 }));
    then(r, || {
        let c: VcpuGuestContext = get(0x800);
        hex(u64::from(c.flags) << 32 | c.cpsr << 8 | u64::from(c.pc == 0x4008_0000 && c.x[0] == 0x4800_0000))
    })
}

/// destroydomain, then what getdomaininfo says of the id.
fn destroy() -> Observed {
    let r = domctl(domctl::DESTROYDOMAIN, created(), [0; 16]);
    if r != 0 {
        return ret(r);
    }
    let after = match info(created()) {
        Ok(i) if i.domain == created() => 0x100 | u64::from(i.flags & dominf::DYING),
        Ok(_) => 0x200,
        Err(e) => e.unsigned_abs() & 0xff,
    };
    hex(after)
}

// ---- a domain destroyed while dom0 maps a page it granted ------------------------------------

/// Where dom0 maps that domain's grant-table frame, then its granted page (free frames of the
/// block the grant rows use).
const HELD_TABLE_IPA: u64 = crate::ops::GRANT_MAP_IPA + 0x2_0000;
const HELD_PAGE_IPA: u64 = crate::ops::GRANT_MAP_IPA + 0x2_1000;
/// Xen's guest RAM base on ARM (GUEST_RAM0_BASE), as a frame: where the domain's page goes.
const GUEST_RAM0_GFN: u64 = 0x4_0000;

/// `xl destroy` of a domain whose page dom0 still maps through a grant (a backend holding a
/// frontend's ring): dom0 creates a domain, populates one page of it, writes grant 1 of it
/// through its acquired grant-table frame (as init-dom0less seeds xenstored's grant) and lets
/// that frame go, maps the grant, destroys the domain, then unmaps the grant. Shown:
/// destroydomain's return, whether getdomaininfo then shows the domain (bit 4) dying (bit 0)
/// and its pages, the unmap's status, and whether the domain is still there after the unmap. A
/// setup step that fails is shown instead (`0xf` and the step, its return), the domain
/// destroyed again.
fn destroy_while_granted() -> Observed {
    use guest_abi::grant_table::*;
    use guest_abi::memory::*;
    fill(0);
    let r = domctl(domctl::CREATEDOMAIN, 0, with(config(1)));
    if r != 0 {
        return ret(r);
    }
    let id = get::<XenDomctl>(0).domain;
    let failed = |step: u64, r: i64| {
        domctl(domctl::DESTROYDOMAIN, id, [0; 16]);
        hex(0xf << 60 | step << 32 | (r as u64 & 0xffff_ffff))
    };
    let r = domctl(domctl::MAX_VCPUS, id, with(MaxVcpus { max: 1 }));
    if r != 0 {
        return failed(1, r);
    }
    let r = domctl(domctl::MAX_MEM, id, with(MaxMem { max_memkb: 64 * 4 }));
    if r != 0 {
        return failed(2, r);
    }
    let r = populate(id, GUEST_RAM0_GFN);
    if r != 1 {
        return failed(3, r);
    }
    let list = put(OUT, HELD_TABLE_IPA >> 12);
    let p = put(0, XenMemAcquireResource { domid: id, r#type: XENMEM_RESOURCE_GRANT_TABLE, id: XENMEM_RESOURCE_GRANT_TABLE_ID_SHARED, nr_frames: 1, pad: 0, frame: 0, frame_list: list });
    let r = hc2(HYPERVISOR_MEMORY_OP, u64::from(XENMEM_ACQUIRE_RESOURCE), p);
    if r != 0 {
        return failed(4, r);
    }
    let entry = (HELD_TABLE_IPA + 8) as *mut GrantEntryV1;
    // SAFETY: HELD_TABLE_IPA's block is mapped at stage 1 (Device) and the domain's grant-table
    // frame 0 at stage 2 now; entry 1 is at byte 8 of it. The flags go last, as a granter
    // writes them.
    unsafe {
        core::ptr::write_volatile(core::ptr::addr_of_mut!((*entry).domid), 0);
        core::ptr::write_volatile(core::ptr::addr_of_mut!((*entry).frame), GUEST_RAM0_GFN as u32);
        core::arch::asm!("dmb ish");
        core::ptr::write_volatile(core::ptr::addr_of_mut!((*entry).flags), GTF_PERMIT_ACCESS);
    }
    let p = put(0, XenRemoveFromPhysmap { domid: guest_abi::DOMID_SELF, gpfn: HELD_TABLE_IPA >> 12 });
    let r = hc2(HYPERVISOR_MEMORY_OP, u64::from(XENMEM_REMOVE_FROM_PHYSMAP), p);
    if r != 0 {
        return failed(5, r);
    }
    let m = crate::ops::map(1, id, GNTMAP_HOST_MAP, HELD_PAGE_IPA);
    if m.status != 0 {
        return failed(6, i64::from(m.status));
    }
    let destroyed = domctl(domctl::DESTROYDOMAIN, id, [0; 16]);
    let shown = |i: Result<GetDomainInfo, i64>| match i {
        Ok(i) if i.domain == id => 0x10 | u64::from(i.flags & dominf::DYING != 0),
        _ => 0,
    };
    let dying = info(id);
    let pages = dying.as_ref().map_or(0xff, |i| i.tot_pages & 0xff);
    let dying = shown(dying);
    let unmapped = crate::ops::unmap(m.handle, HELD_PAGE_IPA);
    let after = shown(info(id));
    hex((destroyed as u64 & 0xff) << 40 | dying << 32 | pages << 16 | (unmapped as u64 & 0xff) << 8 | after)
}

pub static TOOLSTACK_CASES: &[Case] = &[
    // Every call: the struct, the interface version, privilege; unknown commands.
    Case { name: "toolstack.sysctl.bad_version", run: || ret(sysctl_v(sysctl::PHYSINFO, 0x14, [0; 16])), expect: Expect::Recorded },
    Case { name: "toolstack.sysctl.unmapped", run: || ret(hc2(HYPERVISOR_SYSCTL, crate::mmu::UNMAPPED_VA, 0)), expect: Expect::Err(errno::EFAULT) },
    Case { name: "toolstack.sysctl.unknown_cmd", run: || ret(sysctl(0x7fff, [0; 16])), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.bad_version", run: || ret(domctl_v(domctl::GETDOMAININFO, 0x16, 0, [0; 16])), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.unmapped", run: || ret(hc2(HYPERVISOR_DOMCTL, crate::mmu::UNMAPPED_VA, 0)), expect: Expect::Err(errno::EFAULT) },
    Case { name: "toolstack.domctl.unknown_cmd", run: || ret(domctl(999, 0, [0; 16])), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.absent_domain", run: || ret(domctl(domctl::MAX_MEM, ABSENT, [0; 16])), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.domid_self", run: || ret(domctl(domctl::GETVCPUINFO, guest_abi::DOMID_SELF, [0; 16])), expect: Expect::Recorded },
    // sysctl physinfo (`xl info`).
    Case { name: "toolstack.sysctl.physinfo.topology", run: || physinfo(topology), expect: Expect::Recorded },
    Case { name: "toolstack.sysctl.physinfo.cpu_khz", run: || physinfo(|p| u64::from(p.cpu_khz)), expect: Expect::Recorded },
    Case { name: "toolstack.sysctl.physinfo.capabilities", run: || physinfo(|p| u64::from(p.capabilities)), expect: Expect::Recorded },
    Case { name: "toolstack.sysctl.physinfo.total_mib", run: || physinfo(|p| p.total_pages >> 8), expect: Expect::Recorded },
    Case { name: "toolstack.sysctl.physinfo.max_mfn", run: || physinfo(|p| p.max_mfn), expect: Expect::Recorded },
    Case { name: "toolstack.sysctl.physinfo.memory_sane", run: || physinfo(memory_sane), expect: Expect::Recorded },
    Case { name: "toolstack.sysctl.sched_id", run: || then(sysctl(sysctl::SCHED_ID, [0; 16]), || hex(u64::from(sysctl_out::<SchedId>().sched_id))), expect: Expect::Recorded },
    // getdomaininfolist (`xl list`).
    Case { name: "toolstack.sysctl.getdomaininfolist.all", run: || getdomaininfolist(0, 16), expect: Expect::Recorded },
    Case { name: "toolstack.sysctl.getdomaininfolist.from_1_max_1", run: || getdomaininfolist(1, 1), expect: Expect::Recorded },
    Case { name: "toolstack.sysctl.getdomaininfolist.max_0", run: || getdomaininfolist(0, 0), expect: Expect::Recorded },
    Case { name: "toolstack.sysctl.getdomaininfolist.past_last", run: || getdomaininfolist(0x100, 4), expect: Expect::Recorded },
    Case {
        name: "toolstack.sysctl.getdomaininfolist.unmapped_buffer",
        run: || ret(sysctl(sysctl::GETDOMAININFOLIST, with(GetDomainInfoList { first_domain: 0, max_domains: 4, buffer: crate::mmu::UNMAPPED_VA, ..Default::default() }))),
        expect: Expect::Recorded,
    },
    // cpupools, NUMA and CPU topology (xen-init-dom0, `xl info -n`).
    Case { name: "toolstack.sysctl.cpupool.info_0", run: || cpupool(CPUPOOL_OP_INFO, 0), expect: Expect::Recorded },
    Case { name: "toolstack.sysctl.cpupool.info_1", run: || cpupool(CPUPOOL_OP_INFO, 1), expect: Expect::Recorded },
    Case { name: "toolstack.sysctl.cpupool.freeinfo", run: || cpupool(CPUPOOL_OP_FREEINFO, 0), expect: Expect::Recorded },
    Case { name: "toolstack.sysctl.cpupool.bad_op", run: || cpupool(99, 0), expect: Expect::Recorded },
    Case { name: "toolstack.sysctl.numainfo.count", run: || numainfo(false), expect: Expect::Recorded },
    Case { name: "toolstack.sysctl.numainfo.node0", run: || numainfo(true), expect: Expect::Recorded },
    Case { name: "toolstack.sysctl.cputopoinfo.count", run: || cputopoinfo(false), expect: Expect::Recorded },
    Case { name: "toolstack.sysctl.cputopoinfo.cpus", run: || cputopoinfo(true), expect: Expect::Recorded },
    Case { name: "toolstack.sysctl.readconsole", run: readconsole, expect: Expect::Recorded },
    // getdomaininfo (xenconsoled, libxl).
    Case { name: "toolstack.domctl.getdomaininfo.dom0.ids", run: || info_show(0, ids_and_vcpus), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.getdomaininfo.dom0.flags", run: || info_show(0, |i| u64::from(i.flags)), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.getdomaininfo.dom0.pages", run: || info_show(0, |i| i.tot_pages << 32 | i.max_pages), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.getdomaininfo.dom0.pool_and_bits", run: || info_show(0, pool_and_bits), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.getdomaininfo.dom0.time_and_shinfo", run: || info_show(0, |i| u64::from(i.cpu_time != 0) << 4 | u64::from(i.shared_info_frame != 0)), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.getdomaininfo.domu2.ids", run: || info_show(DOMU2, ids_and_vcpus), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.getdomaininfo.domu2.flags", run: || info_show(DOMU2, |i| u64::from(i.flags)), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.getdomaininfo.domu2.pages", run: || info_show(DOMU2, |i| i.tot_pages << 32 | i.max_pages), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.getdomaininfo.absent_next_up", run: || info_show(0x100, ids_and_vcpus), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.getdomaininfo.reserved_id", run: || info_show(guest_abi::DOMID_FIRST_RESERVED, ids_and_vcpus), expect: Expect::Recorded },
    // pause / unpause (`xl pause`, `xl unpause`, `xl destroy`).
    Case { name: "toolstack.domctl.pausedomain.self", run: || ret(domctl(domctl::PAUSEDOMAIN, 0, [0; 16])), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.pausedomain.absent", run: || ret(domctl(domctl::PAUSEDOMAIN, ABSENT, [0; 16])), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.unpausedomain.self_not_paused", run: || ret(domctl(domctl::UNPAUSEDOMAIN, 0, [0; 16])), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.pausedomain.domu2_cycle", run: pause_cycle, expect: Expect::Recorded },
    // max_mem (`xl mem-max`).
    Case { name: "toolstack.domctl.max_mem.domu2_same", run: max_mem_same, expect: Expect::Recorded },
    // A dom0less domain as init-dom0less sees it: domU2 (xen,enhanced) has a xenstore port
    // and a "late" store frame, domU1 (no xen,enhanced) neither; its xenstore page once
    // max_mem makes room; the store frame set.
    Case { name: "toolstack.dom0less.domu1.store_evtchn", run: || param(DOMU1, guest_abi::hvm::HVM_PARAM_STORE_EVTCHN), expect: Expect::Recorded },
    Case { name: "toolstack.dom0less.domu1.store_pfn", run: || param(DOMU1, guest_abi::hvm::HVM_PARAM_STORE_PFN), expect: Expect::Recorded },
    Case { name: "toolstack.dom0less.domu2.store_evtchn", run: || param(DOMU2, guest_abi::hvm::HVM_PARAM_STORE_EVTCHN), expect: Expect::Recorded },
    Case { name: "toolstack.dom0less.domu2.store_pfn_late", run: || param(DOMU2, guest_abi::hvm::HVM_PARAM_STORE_PFN), expect: Expect::Recorded },
    Case { name: "toolstack.dom0less.domu2.xenstore_page", run: xenstore_page, expect: Expect::Recorded },
    Case { name: "toolstack.dom0less.domu2.set_store_pfn", run: set_store_pfn, expect: Expect::Recorded },
    // vCPUs (`xl vcpu-list`, `xl vcpu-pin`).
    Case { name: "toolstack.domctl.getvcpuinfo.dom0_vcpu0", run: || vcpuinfo(0, 0), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.getvcpuinfo.dom0_vcpu1", run: || vcpuinfo(0, 1), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.getvcpuinfo.domu2_vcpu0", run: || vcpuinfo(DOMU2, 0), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.getvcpuaffinity.dom0.hard", run: || affinity(domctl::GETVCPUAFFINITY, 0, XEN_VCPUAFFINITY_HARD, 32, None), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.getvcpuaffinity.dom0.both", run: || affinity(domctl::GETVCPUAFFINITY, 0, XEN_VCPUAFFINITY_HARD | XEN_VCPUAFFINITY_SOFT, 5, None), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.getvcpuaffinity.no_flags", run: || affinity(domctl::GETVCPUAFFINITY, 0, 0, 8, None), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.getvcpuaffinity.vcpu_out_of_range", run: || ret(domctl(domctl::GETVCPUAFFINITY, 0, with(VcpuAffinity { vcpu: 7, flags: XEN_VCPUAFFINITY_HARD, cpumap_hard: bitmap(0, 8), ..Default::default() }))), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.setvcpuaffinity.domu2.absent_cpu", run: || affinity(domctl::SETVCPUAFFINITY, DOMU2, XEN_VCPUAFFINITY_HARD, 8, Some((0x80, 0))), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.setvcpuaffinity.domu2.all", run: || affinity(domctl::SETVCPUAFFINITY, DOMU2, XEN_VCPUAFFINITY_HARD | XEN_VCPUAFFINITY_SOFT, 8, Some((0xff, 0xff))), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.getvcpuaffinity.domu2.after", run: || affinity(domctl::GETVCPUAFFINITY, DOMU2, XEN_VCPUAFFINITY_HARD | XEN_VCPUAFFINITY_SOFT, 8, None), expect: Expect::Recorded },
    // Scheduler parameters (`xl sched-*`) and NUMA node affinity.
    Case { name: "toolstack.domctl.scheduler_op.getinfo", run: || sched_op(0, XEN_SCHEDULER_NULL, SCHEDOP_GETINFO), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.scheduler_op.other_scheduler", run: || sched_op(0, XEN_SCHEDULER_CREDIT2, SCHEDOP_GETINFO), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.scheduler_op.bad_cmd", run: || sched_op(0, XEN_SCHEDULER_NULL, 9), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.getnodeaffinity.dom0", run: || node_affinity(0), expect: Expect::Recorded },
    // createdomain's checks of the configuration (`xl create` with a bad one).
    Case { name: "toolstack.domctl.createdomain.unknown_flag", run: || create_bad(|c| c.flags |= 1 << 8), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.createdomain.pv", run: || create_bad(|c| c.flags = 0), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.createdomain.xs_domain", run: || create_bad(|c| c.flags |= cdf::XS_DOMAIN), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.createdomain.no_vcpus", run: || create_bad(|c| c.max_vcpus = 0), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.createdomain.iommu_opts_without_iommu", run: || create_bad(|c| c.iommu_opts = 1), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.createdomain.vmtrace", run: || create_bad(|c| c.vmtrace_size = 4096), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.createdomain.bad_gic_version", run: || create_bad(|c| c.gic_version = 7), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.createdomain.gicv2", run: || create_bad(|c| c.gic_version = XEN_DOMCTL_CONFIG_GIC_V2), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.createdomain.tee", run: || create_bad(|c| c.tee_type = 1), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.createdomain.too_many_spis", run: || create_bad(|c| c.nr_spis = 989), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.createdomain.grant_v0", run: || create_bad(|c| c.grant_opts = 0), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.createdomain.grant_v2", run: || create_bad(|c| c.grant_opts = 2), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.createdomain.grant_frames_0", run: || create_bad(|c| c.max_grant_frames = 0), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.createdomain.grant_frames_65", run: || create_bad(|c| c.max_grant_frames = 65), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.createdomain.maptrack_1025", run: || create_bad(|c| c.max_maptrack_frames = 1025), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.createdomain.absent_pool", run: || create_bad(|c| c.cpupool_id = 5), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.createdomain.taken_id", run: || ret(domctl(domctl::CREATEDOMAIN, 1, with(config(1)))), expect: Expect::Recorded },
    // A domain's life: created paused without vCPUs, its vCPUs made, set up, destroyed.
    Case { name: "toolstack.domctl.createdomain.two_vcpus", run: create, expect: Expect::Recorded },
    Case { name: "toolstack.domctl.createdomain.info", run: created_info, expect: Expect::Recorded },
    Case { name: "toolstack.domctl.getvcpuinfo.created_before_max_vcpus", run: || vcpuinfo(created(), 0), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.max_vcpus.other_count", run: || created_call(domctl::MAX_VCPUS, MaxVcpus { max: 1 }), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.max_vcpus.created", run: || created_call(domctl::MAX_VCPUS, MaxVcpus { max: 2 }), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.max_vcpus.self", run: || ret(domctl(domctl::MAX_VCPUS, 0, with(MaxVcpus { max: 2 }))), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.createdomain.info_after_max_vcpus", run: created_info, expect: Expect::Recorded },
    Case { name: "toolstack.domctl.getvcpuinfo.created_vcpu1", run: || vcpuinfo(created(), 1), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.setvcpucontext.el2h", run: || set_context(0, start_state(0x1c9, VGCF_ONLINE)), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.setvcpucontext.aarch32_mode", run: || set_context(0, start_state(0x1d3, VGCF_ONLINE)), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.setvcpucontext.bad_spsr_el1", run: || set_context(0, { let p = start_state(0x1c5, VGCF_ONLINE); let mut c: VcpuGuestContext = get(0x800); c.spsr_el1 = 0x1cd; put(0x800, c); p }), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.setvcpucontext.vcpu_out_of_range", run: || set_context(2, start_state(0x1c5, VGCF_ONLINE)), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.setvcpucontext.unmapped", run: || set_context(0, crate::mmu::UNMAPPED_VA), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.getvcpucontext.never_set", run: || get_context(0), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.setvcpucontext.vcpu0_online", run: || set_context(0, start_state(0x1c5, VGCF_ONLINE)), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.getvcpucontext.vcpu0", run: || get_context(0), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.setvcpucontext.vcpu1_offline", run: || set_context(1, start_state(0x3c4, 0)), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.getvcpucontext.vcpu1", run: || get_context(1), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.createdomain.info_with_vcpu0_up", run: created_info, expect: Expect::Recorded },
    Case { name: "toolstack.domctl.getvcpuinfo.created_vcpu0_up", run: || vcpuinfo(created(), 0), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.setvcpucontext.reset_vcpu1", run: || set_context(1, 0), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.getvcpucontext.vcpu1_after_reset", run: || get_context(1), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.set_address_size.48", run: || created_call(domctl::SET_ADDRESS_SIZE, AddressSize { size: 48 }), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.set_address_size.64", run: || created_call(domctl::SET_ADDRESS_SIZE, AddressSize { size: 64 }), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.setvcpucontext.el1h_when_64", run: || set_context(0, start_state(0x1c5, VGCF_ONLINE)), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.getvcpucontext.el1h_when_64", run: || get_context(0), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.setvcpucontext.aarch32_when_64", run: || set_context(1, start_state(0x1d3, VGCF_ONLINE)), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.get_address_size", run: || created_call(domctl::GET_ADDRESS_SIZE, AddressSize { size: 0 }), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.paging_mempool.initial", run: mempool_size, expect: Expect::Recorded },
    Case { name: "toolstack.domctl.paging_mempool.unaligned", run: || created_call(domctl::SET_PAGING_MEMPOOL_SIZE, PagingMempool { size: 0x1800 }), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.paging_mempool.set", run: || created_call(domctl::SET_PAGING_MEMPOOL_SIZE, PagingMempool { size: 1 << 20 }), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.paging_mempool.after_set", run: mempool_size, expect: Expect::Recorded },
    Case { name: "toolstack.domctl.cacheflush.too_many", run: || created_call(domctl::CACHEFLUSH, CacheFlush { start_pfn: 0x40000, nr_pfns: (1 << 18) + 1 }), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.cacheflush.wraps", run: || created_call(domctl::CACHEFLUSH, CacheFlush { start_pfn: u64::MAX, nr_pfns: 2 }), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.cacheflush.unpopulated", run: || created_call(domctl::CACHEFLUSH, CacheFlush { start_pfn: 0x40000, nr_pfns: 16 }), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.destroydomain.self", run: || ret(domctl(domctl::DESTROYDOMAIN, 0, [0; 16])), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.destroydomain.created", run: destroy, expect: Expect::Recorded },
    Case { name: "toolstack.domctl.destroydomain.again", run: || ret(domctl(domctl::DESTROYDOMAIN, created(), [0; 16])), expect: Expect::Recorded },
    Case { name: "toolstack.domctl.destroydomain.while_granted", run: destroy_while_granted, expect: Expect::Recorded },
];
