//! `sysctl` and `domctl`: what Xen's toolstack (`xl`, libxl, xenstored, xenconsoled) asks of
//! the hypervisor, at Xen 4.17's interface version. One handler shape for both: the whole
//! struct is read, its interface version checked (-EACCES), the domain a domctl names looked up
//! (-ESRCH), the caller's privilege checked as Xen's default (dummy XSM) policy does (only the
//! control domain, here dom0: -EPERM), then the command runs and, where Xen copies the struct
//! back, the struct is written back (-EFAULT if it cannot be). Commands not listed get -ENOSYS.
//!
//! The machine is fixed: one CPU pool (0) with every CPU, reported with the scheduler `sched=`
//! chose (null, or credit with its per-domain weight), one NUMA node. Affinities and node affinity are kept and reported as Xen keeps them; a hard
//! affinity bounds where a toolstack-made domain's vCPU is placed when it starts (under
//! `sched=credit`, `hypercall::domain_run`), and nothing moves a vCPU once placed.

use super::{read_arg, write_arg, HypercallCtx};
use crate::domain::vcpu::MAX_VCPUS;
use crate::domain::Domain;
use crate::sync::Once;
use guest_abi::errno::{ret, EACCES, EEXIST, EFAULT, EINVAL, ENODEV, ENOENT, ENOMEM, ENOSYS, EOVERFLOW, EPERM, ERESTART, ESRCH};
use guest_abi::toolstack::*;
use guest_abi::DOMID_FIRST_RESERVED;

/// What the hypervisor knows of the machine, for physinfo and friends (set once at boot).
#[derive(Clone, Copy, Debug)]
pub struct HostInfo {
    /// CPUs online (and possible: CPUs are neither added nor removed).
    pub nr_cpus: u32,
    /// System counter frequency in kHz (Xen on ARM reports it as `cpu_khz`).
    pub cpu_khz: u32,
    /// Pages of host RAM.
    pub total_pages: u64,
    /// The highest RAM frame number.
    pub max_mfn: u64,
    /// The hypervisor drives an IOMMU that shares the domains' stage 2.
    pub iommu_shares_p2m: bool,
    /// Guest physical address bits of a domain's stage 2.
    pub ipa_bits: u8,
    /// The host's GIC as createdomain names it (`XEN_DOMCTL_CONFIG_GIC_V2` or `_V3`).
    pub gic_version: u8,
    /// Pages of host RAM free now.
    pub free_pages: fn() -> u64,
    /// Nanoseconds since boot.
    pub now_ns: fn() -> u64,
}

fn zero() -> u64 {
    0
}

/// The host before [`set_host_info`] (host tests): one CPU, no RAM.
const UNSET: HostInfo = HostInfo { nr_cpus: 1, cpu_khz: 0, total_pages: 0, max_mfn: 0, iommu_shares_p2m: false, ipa_bits: 40, gic_version: XEN_DOMCTL_CONFIG_GIC_V3, free_pages: zero, now_ns: zero };

static HOST: Once<HostInfo> = Once::new();

/// Record the machine's facts (once, at boot).
pub fn set_host_info(info: HostInfo) {
    HOST.call_once(|| info);
}

fn host() -> HostInfo {
    HOST.get().copied().unwrap_or(UNSET)
}

/// Nanoseconds since boot (0 before the clock is known).
pub fn now_ns() -> u64 {
    (host().now_ns)()
}

/// The system counter now (its ticks are the scheduler's time).
fn now_ticks() -> u64 {
    (u128::from(now_ns()) * u128::from(host().cpu_khz) / 1_000_000) as u64
}

/// CPU pool 0, the only one.
const CPUPOOL0: u32 = 0;
/// Nodes: one (node 0).
const NR_NODES: u32 = 1;
/// The CPU mask of every host CPU.
fn all_cpus() -> u64 {
    let n = host().nr_cpus.min(64);
    if n == 64 { u64::MAX } else { (1u64 << n) - 1 }
}

/// The caller may use the toolstack's interface (Xen's dummy XSM policy: the control domain).
fn privileged(cx: &HypercallCtx<'_, '_>) -> bool {
    cx.domains.get(cx.caller).is_some_and(|d| d.is_hardware)
}

/// `sysctl(arg)`.
pub fn sysctl(cx: &mut HypercallCtx<'_, '_>, arg: u64) -> i64 {
    let mut op: XenSysctl = match read_arg(cx.mem, arg) {
        Ok(op) => op,
        Err(e) => return e,
    };
    if op.interface_version != XEN_SYSCTL_INTERFACE_VERSION {
        return ret(EACCES);
    }
    if !privileged(cx) {
        return ret(EPERM);
    }
    let r = match op.cmd {
        sysctl::READCONSOLE => readconsole(cx, &mut op.u),
        sysctl::PHYSINFO => {
            set_payload(&mut op.u, &physinfo());
            Ok(())
        }
        sysctl::SCHED_ID => {
            set_payload(&mut op.u, &SchedId { sched_id: sched_id() });
            Ok(())
        }
        sysctl::GETDOMAININFOLIST => getdomaininfolist(cx, &mut op.u),
        sysctl::AVAILHEAP => {
            // min_bitwidth u32, max_bitwidth u32, node i32, avail_bytes u64 @ 16: every free
            // page is node 0's and below any width the hypervisor's frames can have.
            op.u[2] = (host().free_pages)() << 12;
            Ok(())
        }
        sysctl::CPUTOPOINFO => cputopoinfo(cx, &mut op.u),
        sysctl::NUMAINFO => numainfo(cx, &mut op.u),
        sysctl::CPUPOOL_OP => cpupool_op(cx, &mut op.u),
        sysctl::SCHEDULER_OP => scheduler_op_global(&crate::sched::SCHED, &mut op.u, sched_id()),
        _ => return ret(ENOSYS),
    };
    match r {
        Ok(()) => write_arg(cx.mem, arg, &op).map_or_else(|e| e, |()| 0),
        Err(e) => e,
    }
}

fn physinfo() -> Physinfo {
    let h = host();
    // Each guest owns the PMU of the CPU its vCPU is pinned to (cpufeature.rs): a vPMU.
    let mut caps = physcap::HVM | physcap::HAP | physcap::VPMU | physcap::GNTTAB_V1;
    if h.iommu_shares_p2m {
        caps |= physcap::DIRECTIO | physcap::IOMMU_HAP_PT_SHARE;
    }
    Physinfo {
        threads_per_core: 1,
        cores_per_socket: 1,
        nr_cpus: h.nr_cpus,
        max_cpu_id: h.nr_cpus.saturating_sub(1),
        nr_nodes: NR_NODES,
        max_node_id: NR_NODES - 1,
        cpu_khz: h.cpu_khz,
        capabilities: caps,
        total_pages: h.total_pages,
        free_pages: (h.free_pages)(),
        max_mfn: h.max_mfn,
        ..Default::default()
    }
}

/// XEN_SYSCTL_readconsole: the hypervisor's console ring, from the oldest byte not cleared (or
/// `index` when `incremental` names a position still in the ring), at most `count` bytes.
fn readconsole(cx: &mut HypercallCtx<'_, '_>, u: &mut [u64; 16]) -> Result<(), i64> {
    let mut rc: ReadConsole = payload(u);
    let start = (rc.incremental != 0).then_some(rc.index);
    let (bytes, end) = crate::console::read_ring(start, rc.count as usize, rc.clear != 0);
    cx.mem.copy_to_guest(rc.buffer, &bytes).map_err(|_| ret(EFAULT))?;
    rc.count = bytes.len() as u32;
    rc.index = end;
    set_payload(u, &rc);
    Ok(())
}

fn getdomaininfolist(cx: &mut HypercallCtx<'_, '_>, u: &mut [u64; 16]) -> Result<(), i64> {
    if super::teardown::any_lingering() {
        super::teardown::reap(cx.domains, cx.machine);
    }
    let mut l: GetDomainInfoList = payload(u);
    let mut n = 0u32;
    for d in cx.domains.iter().filter(|d| d.id >= l.first_domain) {
        if n == l.max_domains {
            break;
        }
        let info = domain_info(d);
        let at = (n as u64).checked_mul(core::mem::size_of::<GetDomainInfo>() as u64).and_then(|o| l.buffer.checked_add(o)).ok_or(ret(EFAULT))?;
        write_arg(cx.mem, at, &info)?;
        n += 1;
    }
    l.num_domains = n;
    set_payload(u, &l);
    Ok(())
}

fn cputopoinfo(cx: &mut HypercallCtx<'_, '_>, u: &mut [u64; 16]) -> Result<(), i64> {
    let mut t: CpuTopoInfo = payload(u);
    let mut n = host().nr_cpus;
    if t.cputopo != 0 {
        n = n.min(t.num_cpus);
        for i in 0..n {
            // Core, socket and node 0 for every CPU: Xen 4.17 on ARM reports no topology.
            let _ = i;
            let topo = CpuTopo { core: 0, socket: 0, node: 0 };
            write_arg(cx.mem, t.cputopo + u64::from(i) * 12, &topo)?;
        }
    }
    t.num_cpus = n;
    set_payload(u, &t);
    Ok(())
}

fn numainfo(cx: &mut HypercallCtx<'_, '_>, u: &mut [u64; 16]) -> Result<(), i64> {
    let mut ni: NumaInfo = payload(u);
    let mut n = NR_NODES;
    if ni.meminfo != 0 || ni.distance != 0 {
        n = n.min(ni.num_nodes);
        for i in 0..n {
            if ni.meminfo != 0 {
                let h = host();
                let m = MemInfo { memsize: h.total_pages << 12, memfree: (h.free_pages)() << 12 };
                write_arg(cx.mem, ni.meminfo + u64::from(i) * 16, &m)?;
            }
            if ni.distance != 0 {
                // One node: its distance to itself as Xen 4.17 on ARM reports it (20).
                write_arg(cx.mem, ni.distance + u64::from(i * n) * 4, &20u32)?;
            }
        }
    }
    ni.num_nodes = n;
    set_payload(u, &ni);
    Ok(())
}

/// Write `mask` (bit n: CPU or node n, `nbits` of them) into the guest's bitmap as Xen does:
/// as many bytes as both sides have, the guest's further bytes zeroed.
fn put_bitmap(cx: &mut HypercallCtx<'_, '_>, map: &XenctlBitmap, mask: u64, nbits: u32) -> Result<(), i64> {
    let guest_bytes = map.nr_bits.div_ceil(8) as u64;
    let ours = u64::from(nbits.div_ceil(8));
    let mut mask = mask;
    if nbits < 64 {
        mask &= (1u64 << nbits) - 1;
    }
    let ours = ours.min(guest_bytes).min(8);
    let bytes = mask.to_le_bytes();
    if ours != 0 {
        cx.mem.copy_to_guest(map.bitmap, &bytes[..ours as usize]).map_err(|_| ret(EFAULT))?;
    }
    // The rest of the guest's bytes, zeroed a chunk at a time (up to the first fault).
    let zeros = [0u8; 256];
    let mut i = ours;
    while i < guest_bytes {
        let n = (guest_bytes - i).min(zeros.len() as u64);
        let at = map.bitmap.checked_add(i).ok_or(ret(EFAULT))?;
        cx.mem.copy_to_guest(at, &zeros[..n as usize]).map_err(|_| ret(EFAULT))?;
        i += n;
    }
    Ok(())
}

/// Read the guest's bitmap (as many bytes as both sides have, the last partial byte masked).
fn get_bitmap(cx: &mut HypercallCtx<'_, '_>, map: &XenctlBitmap, nbits: u32) -> Result<u64, i64> {
    let guest_bytes = map.nr_bits.div_ceil(8);
    let ours = nbits.div_ceil(8).min(8);
    let copy = guest_bytes.min(ours);
    let mut bytes = [0u8; 8];
    if copy != 0 {
        cx.mem.copy_from_guest(map.bitmap, &mut bytes[..copy as usize]).map_err(|_| ret(EFAULT))?;
        if map.nr_bits % 8 != 0 && guest_bytes == copy {
            bytes[copy as usize - 1] &= !(0xffu8 << (map.nr_bits % 8));
        }
    }
    let mut mask = u64::from_le_bytes(bytes);
    if nbits < 64 {
        mask &= (1u64 << nbits) - 1;
    }
    Ok(mask)
}

fn cpupool_op(cx: &mut HypercallCtx<'_, '_>, u: &mut [u64; 16]) -> Result<(), i64> {
    let mut p: CpupoolOp = payload(u);
    match p.op {
        // The pool with this id or the next one up: only pool 0 exists.
        CPUPOOL_OP_INFO => {
            if p.cpupool_id > CPUPOOL0 {
                return Err(ret(ENOENT));
            }
            p.cpupool_id = CPUPOOL0;
            p.sched_id = sched_id();
            p.n_dom = cx.domains.iter().count() as u32;
            put_bitmap(cx, &p.cpumap, all_cpus(), host().nr_cpus)?;
        }
        // Every CPU is in pool 0: none is free.
        CPUPOOL_OP_FREEINFO => put_bitmap(cx, &p.cpumap, 0, host().nr_cpus)?,
        // Pools are not created, changed or destroyed here: the CPUs stay in pool 0.
        CPUPOOL_OP_CREATE | CPUPOOL_OP_DESTROY | CPUPOOL_OP_ADDCPU | CPUPOOL_OP_RMCPU | CPUPOOL_OP_MOVEDOMAIN => return Err(ret(guest_abi::errno::EOPNOTSUPP)),
        _ => return Err(ret(ENOSYS)),
    }
    set_payload(u, &p);
    Ok(())
}

/// The scheduler pool 0 runs, as Xen names it: `sched=credit`'s, else null.
fn sched_id() -> u32 {
    if crate::sched::SCHED.policy() == crate::sched::SchedPolicy::Credit {
        XEN_SCHEDULER_CREDIT
    } else {
        XEN_SCHEDULER_NULL
    }
}

/// XEN_SYSCTL_scheduler_op (pool-wide parameters): the null scheduler has none to get or set;
/// credit's (`xen_sysctl_credit_schedule`: tslice_ms u32 @16, ratelimit_us u32 @20,
/// vcpu_migr_delay_us u32 @24) are read, and set as Xen checks them (-EINVAL for values out of
/// its bounds or a rate limit longer than the timeslice, changing nothing); a put reads back
/// what it set.
fn scheduler_op_global(sched: &crate::sched::Scheduler, u: &mut [u64; 16], running: u32) -> Result<(), i64> {
    // cpupool_id u32 @0, sched_id u32 @4, cmd u32 @8, the scheduler's union @16.
    let (pool, sched_id, cmd) = (u[0] as u32, (u[0] >> 32) as u32, u[1] as u32);
    if cmd != SCHEDOP_PUTINFO && cmd != SCHEDOP_GETINFO {
        return Err(ret(EINVAL));
    }
    if pool != CPUPOOL0 {
        return Err(ret(ESRCH));
    }
    if sched_id != running {
        return Err(ret(EINVAL));
    }
    if running != XEN_SCHEDULER_CREDIT {
        return Ok(());
    }
    if cmd == SCHEDOP_PUTINFO {
        let p = crate::sched::CreditParams { tslice_ms: u[2] as u32, ratelimit_us: (u[2] >> 32) as u32, migr_delay_us: u[3] as u32 };
        sched.set_params(p).map_err(|_| ret(EINVAL))?;
    }
    let p = sched.params();
    u[2] = u64::from(p.tslice_ms) | u64::from(p.ratelimit_us) << 32;
    u[3] = (u[3] & !0xffff_ffff) | u64::from(p.migr_delay_us);
    Ok(())
}

/// XEN_DOMCTL_scheduler_op of domain `d` under scheduler `running`. Credit
/// (`xen_domctl_sched_credit`: weight u16 @0, cap u16 @2): getinfo reads the domain's weight
/// and cap (percent of one CPU, 0: none), putinfo sets a weight that is not 0 and a cap that
/// is not 0xffff (any other value, as Xen's credit takes it); its per-vCPU commands are
/// -EINVAL, as in Xen's credit. Null: nothing to get or set.
fn scheduler_op_domain(sched: &crate::sched::Scheduler, d: &Domain, s: &mut SchedulerOp, running: u32) -> Result<(), i64> {
    if s.sched_id != running || s.cmd > SCHEDOP_GETVCPUINFO {
        return Err(ret(EINVAL));
    }
    if running != XEN_SCHEDULER_CREDIT {
        return Ok(());
    }
    let (weight, cap) = (s.u[0] as u16, (s.u[0] >> 16) as u16);
    match s.cmd {
        SCHEDOP_GETINFO => {
            s.u[0] = (s.u[0] & !0xffff_ffff) | u64::from(sched.weight(d.id) as u16) | u64::from(sched.cap(d.id)) << 16;
            Ok(())
        }
        SCHEDOP_PUTINFO => {
            if weight != 0 {
                sched.set_weight(d.id, u32::from(weight)).map_err(|_| ret(EINVAL))?;
            }
            if cap != u16::MAX {
                sched.set_cap(d.id, cap).map_err(|_| ret(EINVAL))?;
            }
            Ok(())
        }
        _ => Err(ret(EINVAL)),
    }
}

/// What getdomaininfo reports of `d`. A vCPU that is online runs: it has its CPU to itself.
pub fn domain_info(d: &Domain) -> GetDomainInfo {
    let n = d.max_vcpus.clamp(1, MAX_VCPUS as u32);
    let up: alloc::vec::Vec<(bool, bool)> = (0..n).filter(|&v| !d.vcpu_off(v)).map(|v| run_state(d, v)).collect();
    let online = up.len() as u32;
    // The shutdown code field holds Xen's int code: all ones until one is given.
    let mut flags = dominf::HAP | dominf::HVM_GUEST | d.shutdown_code() << dominf::SHUTDOWN_SHIFT;
    // As Xen: running if a vCPU that is up is on a CPU, blocked if every one waits.
    if up.iter().any(|&(running, _)| running) {
        flags |= dominf::RUNNING;
    }
    if online != 0 && up.iter().all(|&(_, blocked)| blocked) {
        flags |= dominf::BLOCKED;
    }
    if d.shutdown().is_some() {
        flags |= dominf::SHUTDOWN;
    }
    if d.paused() {
        flags |= dominf::PAUSED;
    }
    if d.dead() {
        flags |= dominf::DYING;
    }
    let placement = *d.placement.lock();
    let shared_info = d.with_evtchn(|ev| ev.shared_info);
    GetDomainInfo {
        domain: d.id,
        flags,
        tot_pages: d.tot_pages(),
        max_pages: d.max_pages(),
        shared_info_frame: shared_info.map_or(0, |pa| pa >> 12),
        // A dead domain's vCPUs left the scheduler, which counted their time until then.
        cpu_time: if d.dead() { ticks_to_ns(d.ran_ticks()) } else { (0..n).map(|v| vcpu_time(d, v)).sum() },
        nr_online_vcpus: online,
        // A domain whose vCPUs are not made yet reports Xen's XEN_INVALID_MAX_VCPU_ID.
        max_vcpu_id: if d.vcpus_made() { n - 1 } else { u32::MAX },
        handle: placement.handle,
        cpupool: CPUPOOL0,
        gpaddr_bits: host().ipa_bits,
        ..Default::default()
    }
}

/// Whether vCPU `v` of `d` (which is up) is on a CPU now, and whether it waits for an event
/// (WFI): as the scheduler says for a vCPU it places (a toolstack-made domain's once started,
/// and under `credit` dom0's and the dom0less domUs'); a vCPU with a CPU of its own since boot
/// (`null`) is on it unless it waits there paused.
fn run_state(d: &Domain, v: u32) -> (bool, bool) {
    if !d.started() {
        return (false, false);
    }
    match crate::sched::SCHED.state(crate::sched::VcpuRef::new(d.id, v)) {
        Some(crate::sched::State::Running(_)) => (true, false),
        Some(crate::sched::State::Blocked) => (false, true),
        // Paused while blocked: still blocked until a wakeup, as Xen reports it.
        Some(crate::sched::State::Off) => (false, crate::sched::SCHED.blocked_while_off(crate::sched::VcpuRef::new(d.id, v), now_ticks())),
        Some(_) => (false, false),
        None => (!d.by_toolstack && !d.waits_paused(v), false),
    }
}

/// Nanoseconds vCPU `v` ran: as long as the scheduler counted for a vCPU it places; one with
/// a CPU of its own since boot ran from boot until it turned itself off.
fn vcpu_time(d: &Domain, v: u32) -> u64 {
    let counted = crate::sched::SCHED.run_time(crate::sched::VcpuRef::new(d.id, v));
    if d.by_toolstack {
        ticks_to_ns(counted.unwrap_or(0))
    } else if d.vcpu_off(v) {
        d.vcpu_off_at(v).unwrap_or(0)
    } else if let Some(ticks) = counted {
        ticks_to_ns(ticks)
    } else {
        now_ns()
    }
}

/// Nanoseconds of `ticks` of the system counter.
fn ticks_to_ns(ticks: u64) -> u64 {
    (u128::from(ticks) * 1_000_000 / u128::from(host().cpu_khz.max(1))) as u64
}

/// `domctl(arg)`.
pub fn domctl(cx: &mut HypercallCtx<'_, '_>, arg: u64) -> i64 {
    let mut op: XenDomctl = match read_arg(cx.mem, arg) {
        Ok(op) => op,
        Err(e) => return e,
    };
    if op.interface_version != XEN_DOMCTL_INTERFACE_VERSION {
        return ret(EACCES);
    }
    // The domain named: createdomain names none; getdomaininfo takes the next one up.
    let target = cx.domains.get(op.domain);
    let named = !matches!(op.cmd, domctl::CREATEDOMAIN | domctl::GETDOMAININFO);
    if named && target.is_none() {
        return ret(ESRCH);
    }
    if !privileged(cx) {
        // Xen 4.17 checks getdomaininfo's privilege against the domain named, and lets a call
        // naming none go on: a reserved id gets -EINVAL and an id with no domain at or above
        // it -ESRCH, whoever asks. Where Xen would then report the next domain up to anyone,
        // an unprivileged caller gets -EPERM here.
        let unnamed_info = op.cmd == domctl::GETDOMAININFO && target.is_none();
        if unnamed_info && op.domain >= DOMID_FIRST_RESERVED {
            return ret(EINVAL);
        }
        if unnamed_info && !cx.domains.iter().any(|d| d.id >= op.domain) {
            return ret(ESRCH);
        }
        return ret(EPERM);
    }
    let domains = cx.domains;
    let is_caller = op.domain == cx.caller;
    let r: Result<bool, i64> = match (op.cmd, target) {
        (domctl::GETDOMAININFO, _) => {
            if super::teardown::any_lingering() {
                super::teardown::reap(cx.domains, cx.machine);
            }
            if op.domain >= DOMID_FIRST_RESERVED {
                Err(ret(EINVAL))
            } else {
                match domains.iter().find(|d| d.id >= op.domain) {
                    Some(d) => {
                        let info = domain_info(d);
                        op.domain = info.domain;
                        set_payload(&mut op.u, &info);
                        Ok(true)
                    }
                    None => Err(ret(ESRCH)),
                }
            }
        }
        (domctl::PAUSEDOMAIN, Some(d)) => {
            if is_caller {
                Err(ret(EINVAL))
            } else {
                pausedomain(cx, d).map(|()| false)
            }
        }
        (domctl::UNPAUSEDOMAIN, Some(d)) => unpausedomain(cx, d).map(|()| false),
        (domctl::MAX_MEM, Some(d)) => {
            let m: MaxMem = payload(&op.u);
            d.set_max_pages(m.max_memkb >> 2);
            Ok(false)
        }
        (domctl::GETVCPUINFO, Some(d)) => {
            let mut v: GetVcpuInfo = payload(&op.u);
            if v.vcpu >= d.max_vcpus || v.vcpu as usize >= MAX_VCPUS {
                Err(ret(EINVAL))
            } else if !d.vcpus_made() {
                Err(ret(ESRCH))
            } else {
                let online = !d.vcpu_off(v.vcpu);
                let (running, blocked) = if online { run_state(d, v.vcpu) } else { (false, false) };
                v.online = online as u8;
                v.blocked = blocked as u8;
                v.running = running as u8;
                v.cpu_time = vcpu_time(d, v.vcpu);
                v.cpu = d.placement.lock().cpu[v.vcpu as usize];
                set_payload(&mut op.u, &v);
                Ok(true)
            }
        }
        (domctl::SETVCPUAFFINITY | domctl::GETVCPUAFFINITY, Some(d)) => vcpu_affinity(cx, d, op.cmd, &op.u).map(|()| false),
        (domctl::SCHEDULER_OP, Some(d)) => {
            let mut s: SchedulerOp = payload(&op.u);
            let r = scheduler_op_domain(&crate::sched::SCHED, d, &mut s, sched_id());
            if r.is_ok() && s.cmd == SCHEDOP_PUTINFO && s.sched_id == XEN_SCHEDULER_CREDIT {
                // A new cap is enforced from its vCPUs' CPUs' next scheduling point: make one.
                for v in 0..d.max_vcpus.min(MAX_VCPUS as u32) {
                    if let Some(cpu) = crate::sched::SCHED.cpu_of(crate::sched::VcpuRef::new(d.id, v)) {
                        cx.arch.kick_cpu(cpu);
                    }
                }
            }
            set_payload(&mut op.u, &s);
            // Xen copies the struct back whatever the outcome.
            match write_arg(cx.mem, arg, &op) {
                Err(e) => Err(e),
                Ok(()) => r.map(|()| false),
            }
        }
        (domctl::SETDOMAINHANDLE, Some(d)) => {
            let mut h = [0u8; 16];
            for (i, w) in op.u[..2].iter().enumerate() {
                h[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
            }
            d.placement.lock().handle = h;
            Ok(false)
        }
        (domctl::SETNODEAFFINITY, Some(d)) => {
            let m: NodeAffinity = payload(&op.u);
            match get_bitmap(cx, &m.nodemap, NR_NODES) {
                Ok(0) => Err(ret(EINVAL)),
                Ok(nodes) => {
                    d.placement.lock().nodes = nodes;
                    Ok(false)
                }
                Err(e) => Err(e),
            }
        }
        (domctl::CREATEDOMAIN, _) => createdomain(cx, &mut op).map(|()| true),
        (domctl::MAX_VCPUS, Some(d)) => {
            let m: MaxVcpus = payload(&op.u);
            if is_caller || m.max != d.max_vcpus {
                Err(ret(EINVAL))
            } else {
                d.make_vcpus();
                Ok(false)
            }
        }
        (domctl::SETVCPUCONTEXT, Some(d)) => setvcpucontext(cx, d, is_caller, &payload(&op.u)).map(|()| false),
        (domctl::GETVCPUCONTEXT, Some(d)) => {
            let v: VcpuContext = payload(&op.u);
            getvcpucontext(cx, d, &v).map(|()| true)
        }
        (domctl::DESTROYDOMAIN, Some(d)) => destroydomain(cx, d, is_caller).map(|()| false),
        (domctl::SET_ADDRESS_SIZE, Some(d)) => {
            let a: AddressSize = payload(&op.u);
            match a.size {
                // Only before the domain holds memory, as on Xen.
                64 if d.tot_pages() != 0 => Err(ret(guest_abi::errno::EBUSY)),
                64 => {
                    d.set_address_size(64);
                    Ok(false)
                }
                // xenith runs AArch64 guests only on AArch64 (Xen takes 32 where the CPU has
                // AArch32 at EL1), and no other size.
                _ => Err(ret(EINVAL)),
            }
        }
        (domctl::CACHEFLUSH, Some(d)) => {
            let c: CacheFlush = payload(&op.u);
            cacheflush(cx, d, c.start_pfn, c.nr_pfns).map(|()| false)
        }
        (domctl::GET_PAGING_MEMPOOL_SIZE, Some(d)) => {
            set_payload(&mut op.u, &PagingMempool { size: d.paging_pool() });
            Ok(true)
        }
        (domctl::SET_PAGING_MEMPOOL_SIZE, Some(d)) => {
            let m: PagingMempool = payload(&op.u);
            if m.size & 0xfff != 0 {
                Err(ret(EINVAL))
            } else {
                d.set_paging_pool(m.size);
                Ok(false)
            }
        }
        (domctl::GETNODEAFFINITY, Some(d)) => {
            let m: NodeAffinity = payload(&op.u);
            let nodes = d.placement.lock().nodes;
            put_bitmap(cx, &m.nodemap, nodes, NR_NODES).map(|()| false)
        }
        _ => Err(ret(ENOSYS)),
    };
    match r {
        Ok(true) => write_arg(cx.mem, arg, &op).map_or_else(|e| e, |()| 0),
        Ok(false) => 0,
        Err(e) => e,
    }
}

/// XEN_DOMCTL_pausedomain: counted; the vCPUs of a running domU (one the toolstack made or a
/// dom0less one built at boot) leave their CPUs (their CPUs are kicked) before it returns, as
/// Xen's pause waits for them, within a bound (a CPU that never reaches a scheduling point is
/// logged; its vCPU leaves when it does). One pause or unpause at a time (Xen's domctl lock),
/// so a pause's wait cannot stop vCPUs an unpause has just queued again.
fn pausedomain(cx: &mut HypercallCtx<'_, '_>, d: &Domain) -> Result<(), i64> {
    let _one = RUNSTATE.lock();
    d.controller_pause().map_err(|()| ret(EOVERFLOW))?;
    if d.started() {
        const TRIES: u32 = 1 << 24;
        let relax = <crate::sync::Relax as spin::RelaxStrategy>::relax;
        if let Err(e) = crate::hypercall::domain_run::pause_domain(&crate::sched::SCHED, &crate::domain::vcpu::CPUS, cx.arch, d, TRIES, relax) {
            crate::log!("d{}: paused, but vCPU {} still runs on CPU {}", d.id, e.vcpu, e.cpu);
        }
    }
    Ok(())
}

/// XEN_DOMCTL_unpausedomain: the last unpause of a toolstack-made domain starts its vCPUs
/// (the first time); of a domain that ran, it puts the vCPUs the pause took off their CPUs
/// back in their run queues (a vCPU with a CPU of its own, waiting paused there, sees the
/// unpause itself).
fn unpausedomain(cx: &mut HypercallCtx<'_, '_>, d: &Domain) -> Result<(), i64> {
    let _one = RUNSTATE.lock();
    d.controller_unpause().map_err(|()| ret(EINVAL))?;
    // A domain that shut down stays stopped (its vCPUs left their CPUs for good).
    if !d.paused() && !d.dying() && d.shutdown().is_none() {
        let sched = &crate::sched::SCHED;
        if d.started() {
            crate::hypercall::domain_run::resume_domain(sched, cx.arch, d, now_ticks());
        } else {
            crate::hypercall::domain_run::start_domain(sched, &crate::domain::vcpu::CPUS, cx.arch, d);
        }
    }
    Ok(())
}

/// pausedomain's and unpausedomain's critical section (see there).
static RUNSTATE: crate::sync::SpinMutex<()> = crate::sync::SpinMutex::new(());

/// Most vCPUs a guest's vGIC of each version addresses (Xen: 8 for GICv2; GICv3's
/// redistributors are bounded by its 128 vCPUs per domain), and xenith's own bound.
fn max_vcpus_for(gic_version: u8) -> u32 {
    let by_gic = match gic_version {
        XEN_DOMCTL_CONFIG_GIC_V2 => 8,
        XEN_DOMCTL_CONFIG_GIC_V3 => 128,
        _ => 0,
    };
    by_gic.min(MAX_VCPUS as u32)
}

/// Xen's checks of a new domain's configuration, in its order (common ones, ARM's, then
/// those of the vGIC, the grant table and the CPU pool). Fills in the native GIC version;
/// returns the grant-table limits (frames, maptrack frames) the domain gets.
fn check_config(c: &mut CreateDomain) -> Result<(u32, u32), i64> {
    let flags = c.flags;
    let inval = Err(ret(EINVAL));
    if flags & !cdf::ALL != 0 || c.grant_opts & !XEN_DOMCTL_GRANT_VERSION_MASK != 0 || c.max_vcpus < 1 {
        return inval;
    }
    if flags & cdf::HAP != 0 && flags & cdf::HVM == 0 {
        return inval;
    }
    if flags & cdf::IOMMU != 0 {
        // A domain may use the IOMMU when the hypervisor drives one that shares its tables.
        if c.iommu_opts & !XEN_DOMCTL_IOMMU_NO_SHAREPT != 0 || !host().iommu_shares_p2m {
            return inval;
        }
    } else if c.iommu_opts != 0 {
        return inval;
    }
    if c.vmtrace_size != 0 {
        return inval;
    }
    // ARM: HVM with HAP, nothing else but the IOMMU and the vPMU; the stage 2 always shared.
    if flags & !(cdf::IOMMU | cdf::VPMU) != cdf::HVM | cdf::HAP || c.iommu_opts & XEN_DOMCTL_IOMMU_NO_SHAREPT != 0 {
        return inval;
    }
    if c.gic_version == XEN_DOMCTL_CONFIG_GIC_NATIVE {
        c.gic_version = host().gic_version;
    }
    let max = max_vcpus_for(c.gic_version);
    if max == 0 || c.max_vcpus > max || c.tee_type != XEN_DOMCTL_CONFIG_TEE_NONE {
        return inval;
    }
    // The vGIC: only the host's version is emulated; SPIs in whole ranks of 32, at most 988.
    if c.gic_version != host().gic_version {
        return Err(ret(ENODEV));
    }
    if c.nr_spis.div_ceil(32).saturating_mul(32) > 1020 - 32 {
        return inval;
    }
    let (opt_frames, opt_maptrack) = crate::domain::grant::limits();
    let version = c.grant_opts & XEN_DOMCTL_GRANT_VERSION_MASK;
    // ARM has grant tables v1 only.
    if version != 1 {
        return inval;
    }
    let frames = if c.max_grant_frames < 0 { opt_frames } else { c.max_grant_frames as u32 };
    let maptrack = if c.max_maptrack_frames < 0 { opt_maptrack } else { c.max_maptrack_frames as u32 };
    if frames < 1 || frames > opt_frames || maptrack > opt_maptrack {
        return inval;
    }
    if c.cpupool_id != CPUPOOL0 {
        return Err(ret(ESRCH));
    }
    Ok((frames, maptrack))
}

/// XEN_DOMCTL_createdomain: a new domain, paused, with no RAM and its vCPUs not made yet;
/// its id goes back in the header and its configuration (native GIC resolved) in the payload.
fn createdomain(cx: &mut HypercallCtx<'_, '_>, op: &mut XenDomctl) -> Result<(), i64> {
    // One createdomain at a time: the id chosen stays free until the domain is in its slot,
    // and the vGIC table's slot of that id is this domain's to fill.
    let _one = CREATING.lock();
    let wanted = (op.domain > 0 && op.domain < DOMID_FIRST_RESERVED).then_some(op.domain);
    let id = cx.domains.choose_id(wanted).map_err(|taken| ret(if taken { EEXIST } else { ENOMEM }))?;
    let mut c: CreateDomain = payload(&op.u);
    let (frames, maptrack) = check_config(&mut c)?;
    let mut d = Domain::new_by_toolstack(id, c.max_vcpus, c.handle);
    *d.grants.get_mut() = crate::domain::grant::GrantTable::with_limits(frames, maptrack);
    // Its vGIC where Xen puts a guest's (the addresses libxl's device tree for it names): a
    // redistributor per vCPU, the SPIs it asked for (virtual only). A vGIC left in the id's
    // slot would be a destroyed domain's: the id is free.
    cx.arch.detach_vgic(id);
    if c.gic_version == XEN_DOMCTL_CONFIG_GIC_V3 {
        if let Err(e) = cx.arch.attach_vgic(&mut d, &guest_vgic(c.max_vcpus, c.nr_spis)) {
            crate::log!("d{id}: {e}: not created");
            cx.arch.detach_vgic(id);
            return Err(ret(ENOMEM));
        }
    }
    let m = &mut *cx.machine;
    let p2m = match crate::mm::Stage2::new(crate::domain::registry::vmid_of(id), crate::mm::Stage2Config::DOMAIN, &mut *m.frames, m.mem) {
        Ok(p) => p,
        Err(_) => {
            cx.arch.detach_vgic(id);
            return Err(ret(ENOMEM));
        }
    };
    *d.p2m.get_mut() = Some(p2m);
    match cx.domains.insert(d) {
        // Xen's defaults for a new domain, whatever a destroyed one of this id had.
        Ok(_) => crate::sched::SCHED.new_domain(id),
        Err(mut d) => {
            // The id is taken after all (a domain built some other way).
            if let Some(p2m) = d.p2m.get_mut().take() {
                let _ = p2m.destroy(&mut *m.frames, m.mem, &mut *m.tlb);
            }
            cx.arch.detach_vgic(id);
            return Err(ret(EEXIST));
        }
    }
    crate::log!("d{id}: created by d{} ({} vCPU(s), GICv{}, {} grant frames)", cx.caller, c.max_vcpus, if c.gic_version == XEN_DOMCTL_CONFIG_GIC_V2 { 2 } else { 3 }, frames);
    op.domain = id;
    set_payload(&mut op.u, &c);
    Ok(())
}

/// createdomain's critical section (see there).
static CREATING: crate::sync::SpinMutex<()> = crate::sync::SpinMutex::new(());

/// The vGICv3 of a domain the toolstack makes with `vcpus` vCPUs and `nr_spis` SPIs (Xen's
/// guest layout: GUEST_GICV3_GICD_BASE, redistributors from GUEST_GICV3_GICR0_BASE).
pub fn guest_vgic(vcpus: u32, nr_spis: u32) -> crate::irq::vgic::domains::VgicConfig {
    use crate::domain::domu::{GUEST_GICV3_GICD_BASE, GUEST_GICV3_GICR0_BASE, GUEST_GICV3_GICR_STRIDE};
    crate::irq::vgic::domains::VgicConfig {
        gicd: GUEST_GICV3_GICD_BASE,
        gicr: GUEST_GICV3_GICR0_BASE,
        gicr_size: GUEST_GICV3_GICR_STRIDE * u64::from(vcpus),
        // GICD_TYPER.ITLinesNumber N: 32 (N + 1) INTIDs, the 32 private ones and the SPIs.
        it_lines: nr_spis.min(988).div_ceil(32),
        vcpus: vcpus as usize,
        passthrough_spis: false,
    }
}

/// Whether `psr` is a mode an AArch64 vCPU may start in (EL1h, EL1t or EL0t; Xen's check).
fn is_guest_psr64(psr: u64) -> bool {
    psr & 0x10 == 0 && matches!(psr & 0x1f, 0x5 | 0x4 | 0x0)
}

/// Whether `psr` is an AArch32 mode a guest may be in (not Monitor or Hyp; Xen's check).
fn is_guest_psr32(psr: u32) -> bool {
    matches!(psr & 0x1f, 0x10 | 0x11 | 0x12 | 0x13 | 0x17 | 0x1b | 0x1f)
}

/// Xen's checks of a start state's modes for a domain of `address_size` bits (a new domain is
/// 32-bit until the toolstack sets 64): the mode it starts in and every saved mode given.
fn start_modes_ok(address_size: u8, c: &VcpuGuestContext) -> bool {
    if address_size == 32 {
        let saved = [c.spsr_el1 as u32, c.spsr_banked[0], c.spsr_banked[1], c.spsr_banked[2], c.spsr_banked[3]];
        is_guest_psr32(c.cpsr as u32) && saved.iter().all(|&p| p == 0 || is_guest_psr32(p))
    } else {
        is_guest_psr64(c.cpsr) && (c.spsr_el1 == 0 || is_guest_psr64(c.spsr_el1))
    }
}

/// XEN_DOMCTL_setvcpucontext: the register state a vCPU of a domain the toolstack made starts
/// with (kept until it starts), online or not; a null handle resets the vCPU (down, no state).
/// A vCPU that runs already (or one of a domain built at boot) is not given a new state.
fn setvcpucontext(cx: &mut HypercallCtx<'_, '_>, d: &Domain, is_caller: bool, v: &VcpuContext) -> Result<(), i64> {
    if is_caller || v.vcpu >= d.max_vcpus || !d.vcpus_made() {
        return Err(ret(EINVAL));
    }
    let mut slots = d.start_context.lock();
    let Some(slot) = slots.get_mut(v.vcpu as usize) else { return Err(ret(guest_abi::errno::EBUSY)) };
    if v.ctxt == 0 {
        *slot = None;
        d.set_vcpu_down(v.vcpu, true);
        return Ok(());
    }
    let c: VcpuGuestContext = read_arg(cx.mem, v.ctxt)?;
    if !start_modes_ok(d.address_size(), &c) {
        return Err(ret(EINVAL));
    }
    *slot = Some(c);
    d.set_vcpu_down(v.vcpu, c.flags & VGCF_ONLINE == 0);
    Ok(())
}

/// XEN_DOMCTL_getvcpucontext: the state setvcpucontext gave a vCPU that has not run yet
/// (VGCF_online if it is up). Not the caller's own vCPU; -ENODATA for one never given a state.
fn getvcpucontext(cx: &mut HypercallCtx<'_, '_>, d: &Domain, v: &VcpuContext) -> Result<(), i64> {
    if v.vcpu >= d.max_vcpus || !d.vcpus_made() || (d.id == cx.caller && v.vcpu == cx.vcpu) {
        return Err(ret(EINVAL));
    }
    // A vCPU that runs (on a CPU of its own) keeps its registers there: not read from here.
    let Some(slot) = d.start_context.lock().get(v.vcpu as usize).copied() else { return Err(ret(guest_abi::errno::EBUSY)) };
    let Some(mut c) = slot else { return Err(ret(guest_abi::errno::ENODATA)) };
    c.flags = if d.vcpu_off(v.vcpu) { 0 } else { VGCF_ONLINE };
    write_arg(cx.mem, v.ctxt, &c)
}

/// XEN_DOMCTL_destroydomain: stop the domain's vCPUs (each leaves its CPU first; -ERESTART,
/// which the dispatcher turns into a continuation, while one has not yet), then give back
/// what it holds (`teardown`): what other domains still map stays, the domain with it,
/// dying, until they unmap it (a destroy of such a domain succeeds again, as on Xen). A
/// domain the toolstack made or one built at boot (dom0less), as on Xen; not dom0 nor the
/// caller.
fn destroydomain(cx: &mut HypercallCtx<'_, '_>, d: &Domain, is_caller: bool) -> Result<(), i64> {
    if is_caller || d.is_hardware {
        return Err(ret(EINVAL));
    }
    if d.dead() {
        super::teardown::reap(cx.domains, cx.machine);
        return Ok(());
    }
    // A vCPU on another CPU leaves it at that CPU's next interrupt (it is kicked). One that
    // has not left within this many tries keeps the destroy going as a continuation (Xen's
    // -ERESTART): the caller's vCPU takes its interrupts, re-issues the call, and the next
    // step kicks that CPU again; nothing is given back until every vCPU left.
    const TRIES: u32 = 1 << 16;
    let relax = <crate::sync::Relax as spin::RelaxStrategy>::relax;
    if crate::hypercall::domain_run::stop_domain(&crate::sched::SCHED, &crate::domain::vcpu::CPUS, cx.arch, d, TRIES, relax).is_err() {
        return Err(ret(ERESTART));
    }
    if super::teardown::tear_down(cx, d) {
        crate::log!("d{}: destroyed by d{}", d.id, cx.caller);
    }
    // A domain that lingered on frames this one mapped may go now.
    super::teardown::reap(cx.domains, cx.machine);
    Ok(())
}

/// XEN_DOMCTL_cacheflush: clean and invalidate the mapped frames of `start..start + n` (at most
/// 2^18 frames, Xen's largest order) to the point of coherency; holes are skipped.
fn cacheflush(cx: &mut HypercallCtx<'_, '_>, d: &Domain, start: u64, n: u64) -> Result<(), i64> {
    if n > 1 << 18 || start.checked_add(n).is_none() {
        return Err(ret(EINVAL));
    }
    let p2m = d.p2m.read();
    let Some(p2m) = p2m.as_ref() else { return Ok(()) };
    // Machine-contiguous runs of mapped frames, each cleaned (and every CPU's I-cache
    // invalidated) at once: the toolstack flushes a kernel it wrote before the domain runs
    // it with its MMU off.
    let mut run: Option<(u64, u64)> = None;
    for gfn in start..start + n {
        let Some(ipa) = gfn.checked_mul(4096) else { break };
        let Some(pa) = p2m.lookup_pa(ipa, cx.machine.mem).map(|pa| pa & !0xfff) else { continue };
        run = match run {
            Some((base, len)) if base + len == pa => Some((base, len + 4096)),
            Some((base, len)) => {
                cx.arch.clean_dcache_range(base, len);
                Some((pa, 4096))
            }
            None => Some((pa, 4096)),
        };
    }
    if let Some((base, len)) = run {
        cx.arch.clean_dcache_range(base, len);
    }
    Ok(())
}

/// XEN_DOMCTL_setvcpuaffinity / getvcpuaffinity, with Xen's checks and bitmap copies; a set
/// reports back the affinity in effect (the hard one within the host's CPUs, the soft one
/// within that).
fn vcpu_affinity(cx: &mut HypercallCtx<'_, '_>, d: &Domain, cmd: u32, u: &[u64; 16]) -> Result<(), i64> {
    let a: VcpuAffinity = payload(u);
    if a.vcpu >= d.max_vcpus || a.vcpu as usize >= MAX_VCPUS {
        return Err(ret(EINVAL));
    }
    let hard = a.flags & XEN_VCPUAFFINITY_HARD != 0;
    let soft = a.flags & XEN_VCPUAFFINITY_SOFT != 0;
    if a.flags == 0 || (hard && a.cpumap_hard.bitmap == 0) || (soft && a.cpumap_soft.bitmap == 0) {
        return Err(ret(EINVAL));
    }
    let v = a.vcpu as usize;
    let nbits = host().nr_cpus;
    let online = all_cpus();
    if cmd == domctl::GETVCPUAFFINITY {
        let p = *d.placement.lock();
        if hard {
            put_bitmap(cx, &a.cpumap_hard, p.hard[v], nbits)?;
        }
        if soft {
            put_bitmap(cx, &a.cpumap_soft, p.soft[v], nbits)?;
        }
        return Ok(());
    }
    if hard {
        let m = get_bitmap(cx, &a.cpumap_hard, nbits)?;
        if m & online == 0 {
            return Err(ret(EINVAL));
        }
        d.placement.lock().hard[v] = m;
        put_bitmap(cx, &a.cpumap_hard, m & online, nbits)?;
    }
    if soft {
        let m = get_bitmap(cx, &a.cpumap_soft, nbits)?;
        let h = {
            let mut p = d.placement.lock();
            p.soft[v] = m;
            p.hard[v]
        };
        put_bitmap(cx, &a.cpumap_soft, m & online & h, nbits)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::guest_phys::env::*;
    use super::*;
    use guest_abi::hypercall as nr;

    fn domctl_call(e: &mut Env, caller: u16, cmd: u32, version: u32, domain: u16, u: [u64; 16]) -> i64 {
        e.put(0, &XenDomctl { cmd, interface_version: version, domain, pad: [0; 3], u });
        e.call(caller, |cx| super::super::dispatch(cx, nr::HYPERVISOR_DOMCTL, [ARGS, 0, 0, 0, 0]))
    }

    fn sysctl_call(e: &mut Env, caller: u16, cmd: u32, u: [u64; 16]) -> i64 {
        e.put(0, &XenSysctl { cmd, interface_version: XEN_SYSCTL_INTERFACE_VERSION, u });
        e.call(caller, |cx| super::super::dispatch(cx, nr::HYPERVISOR_SYSCTL, [ARGS, 0, 0, 0, 0]))
    }

    fn with<T: Payload>(v: T) -> [u64; 16] {
        let mut u = [0; 16];
        set_payload(&mut u, &v);
        u
    }

    fn config(max_vcpus: u32) -> CreateDomain {
        CreateDomain { flags: cdf::HVM | cdf::HAP, max_vcpus, max_grant_frames: -1, max_maptrack_frames: -1, grant_opts: 1, handle: [7; 16], ..Default::default() }
    }

    #[test]
    fn createdomain_checks_the_configuration_as_xen_does() {
        let mut e = Env::new();
        let v = XEN_DOMCTL_INTERFACE_VERSION;
        let bad: [fn(&mut CreateDomain); 12] = [
            |c| c.flags |= 1 << 8,
            |c| c.grant_opts = 0x11,
            |c| c.max_vcpus = 0,
            |c| c.flags = cdf::HAP,
            |c| c.iommu_opts = 1,
            |c| c.vmtrace_size = 4096,
            |c| c.flags |= cdf::XS_DOMAIN,
            |c| c.gic_version = 9,
            |c| c.max_vcpus = 1000,
            |c| c.tee_type = 1,
            |c| c.nr_spis = 989,
            |c| c.grant_opts = 2,
        ];
        for (i, f) in bad.iter().enumerate() {
            let mut c = config(1);
            f(&mut c);
            assert_eq!(domctl_call(&mut e, 0, domctl::CREATEDOMAIN, v, 0, with(c)), ret(EINVAL), "case {i}");
        }
        let mut c = config(1);
        c.gic_version = XEN_DOMCTL_CONFIG_GIC_V2;
        assert_eq!(domctl_call(&mut e, 0, domctl::CREATEDOMAIN, v, 0, with(c)), ret(ENODEV));
        let mut c = config(1);
        c.cpupool_id = 3;
        assert_eq!(domctl_call(&mut e, 0, domctl::CREATEDOMAIN, v, 0, with(c)), ret(ESRCH));
        // Only the control domain creates.
        assert_eq!(domctl_call(&mut e, 1, domctl::CREATEDOMAIN, v, 0, with(config(1))), ret(EPERM));
        assert_eq!(domctl_call(&mut e, 0, domctl::CREATEDOMAIN, v, 1, with(config(1))), ret(EEXIST));
    }

    #[test]
    fn a_created_domain_is_paused_without_vcpus_until_max_vcpus_and_destroy_gives_it_back() {
        let mut e = Env::new();
        let v = XEN_DOMCTL_INTERFACE_VERSION;
        let free_before = e.frames.total_free();
        assert_eq!(domctl_call(&mut e, 0, domctl::CREATEDOMAIN, v, 0, with(config(2))), 0);
        let out: XenDomctl = e.get(0);
        let id = out.domain;
        assert!(id >= 2, "a free id above the existing domains: {id}");
        assert_eq!(payload::<CreateDomain>(&out.u).gic_version, XEN_DOMCTL_CONFIG_GIC_V3, "native resolved");
        assert_eq!(domctl_call(&mut e, 0, domctl::GETDOMAININFO, v, id, [0; 16]), 0);
        let info: GetDomainInfo = payload(&e.get::<XenDomctl>(0).u);
        assert_eq!((info.domain, info.flags & 0xffff, info.tot_pages, info.nr_online_vcpus, info.max_vcpu_id), (id, dominf::HAP | dominf::HVM_GUEST | dominf::PAUSED, 0, 0, u32::MAX));
        assert_eq!(info.handle, [7; 16]);
        assert_eq!(domctl_call(&mut e, 0, domctl::GETVCPUINFO, v, id, [0; 16]), ret(ESRCH));
        assert_eq!(domctl_call(&mut e, 0, domctl::MAX_VCPUS, v, id, with(MaxVcpus { max: 1 })), ret(EINVAL));
        assert_eq!(domctl_call(&mut e, 0, domctl::MAX_VCPUS, v, id, with(MaxVcpus { max: 2 })), 0);
        assert_eq!(domctl_call(&mut e, 0, domctl::GETDOMAININFO, v, id, [0; 16]), 0);
        let info: GetDomainInfo = payload(&e.get::<XenDomctl>(0).u);
        assert_eq!((info.nr_online_vcpus, info.max_vcpu_id), (0, 1));
        // A new domain is 32-bit until the toolstack says 64 (Xen's default).
        assert_eq!(domctl_call(&mut e, 0, domctl::SET_ADDRESS_SIZE, v, id, with(AddressSize { size: 64 })), 0);
        // vCPU 1's start state: a bad mode is refused, a good one kept and read back.
        let mut ctx = VcpuGuestContext { flags: VGCF_ONLINE, pc: 0x4008_0000, cpsr: 0x1c9, ..Default::default() };
        ctx.x[0] = 0x4800_0000;
        e.put(0x800, &ctx);
        let vc = |vcpu| with(VcpuContext { vcpu, pad: 0, ctxt: ARGS + 0x800 });
        assert_eq!(domctl_call(&mut e, 0, domctl::SETVCPUCONTEXT, v, id, vc(1)), ret(EINVAL), "EL2h");
        assert_eq!(domctl_call(&mut e, 0, domctl::GETVCPUCONTEXT, v, id, vc(1)), ret(guest_abi::errno::ENODATA));
        ctx.cpsr = 0x1c5;
        e.put(0x800, &ctx);
        assert_eq!(domctl_call(&mut e, 0, domctl::SETVCPUCONTEXT, v, id, vc(2)), ret(EINVAL));
        assert_eq!(domctl_call(&mut e, 0, domctl::SETVCPUCONTEXT, v, id, vc(1)), 0);
        e.put(0x800, &VcpuGuestContext::default());
        assert_eq!(domctl_call(&mut e, 0, domctl::GETVCPUCONTEXT, v, id, vc(1)), 0);
        assert_eq!(e.get::<VcpuGuestContext>(0x800), ctx);
        assert_eq!(domctl_call(&mut e, 0, domctl::GETDOMAININFO, v, id, [0; 16]), 0);
        let info: GetDomainInfo = payload(&e.get::<XenDomctl>(0).u);
        assert_eq!((info.nr_online_vcpus, info.flags & (dominf::RUNNING | dominf::BLOCKED)), (1, 0), "up, paused, not running");
        assert_eq!(domctl_call(&mut e, 0, domctl::SETVCPUCONTEXT, v, id, with(VcpuContext { vcpu: 1, pad: 0, ctxt: 0 })), 0);
        assert_eq!(domctl_call(&mut e, 0, domctl::GETVCPUCONTEXT, v, id, vc(1)), ret(guest_abi::errno::ENODATA));
        assert_eq!(domctl_call(&mut e, 0, domctl::SET_ADDRESS_SIZE, v, id, with(AddressSize { size: 48 })), ret(EINVAL));
        assert_eq!(domctl_call(&mut e, 0, domctl::SET_ADDRESS_SIZE, v, id, with(AddressSize { size: 64 })), 0);
        assert_eq!(domctl_call(&mut e, 0, domctl::SET_PAGING_MEMPOOL_SIZE, v, id, with(PagingMempool { size: 0x1001 })), ret(EINVAL));
        assert_eq!(domctl_call(&mut e, 0, domctl::SET_PAGING_MEMPOOL_SIZE, v, id, with(PagingMempool { size: 2 << 20 })), 0);
        assert_eq!(domctl_call(&mut e, 0, domctl::GET_PAGING_MEMPOOL_SIZE, v, id, [0; 16]), 0);
        assert_eq!(payload::<PagingMempool>(&e.get::<XenDomctl>(0).u).size, 2 << 20);
        assert_eq!(domctl_call(&mut e, 0, domctl::CACHEFLUSH, v, id, with(CacheFlush { start_pfn: 0x40000, nr_pfns: (1 << 18) + 1 })), ret(EINVAL));
        assert_eq!(domctl_call(&mut e, 0, domctl::CACHEFLUSH, v, id, with(CacheFlush { start_pfn: 0x40000, nr_pfns: 16 })), 0);
        // A domain does not destroy itself; the toolstack's destroy takes it away for good.
        assert_eq!(domctl_call(&mut e, id, domctl::DESTROYDOMAIN, v, id, [0; 16]), ret(EPERM));
        assert_eq!(domctl_call(&mut e, 0, domctl::DESTROYDOMAIN, v, id, [0; 16]), 0);
        assert_eq!(domctl_call(&mut e, 0, domctl::GETDOMAININFO, v, id, [0; 16]), ret(ESRCH));
        assert_eq!(domctl_call(&mut e, 0, domctl::DESTROYDOMAIN, v, id, [0; 16]), ret(ESRCH));
        assert_eq!(e.frames.total_free(), free_before, "its stage-2 tables went back");
        // dom0 is not destroyed that way.
        assert_eq!(domctl_call(&mut e, 0, domctl::DESTROYDOMAIN, v, 0, [0; 16]), ret(EINVAL));
        // A dom0less guest is destroyed too (as on Xen).
        assert_eq!(domctl_call(&mut e, 0, domctl::DESTROYDOMAIN, v, 1, [0; 16]), 0);
        assert!(e.domains.get(1).is_none());
    }

    #[test]
    fn destroy_closes_the_domains_event_channels_and_leaves_dom0s_ends_unbound() {
        use crate::domain::evtchn::PortState;
        use guest_abi::event_channel::{EvtchnAllocUnbound, EvtchnBindInterdomain, EVTCHNOP_ALLOC_UNBOUND, EVTCHNOP_BIND_INTERDOMAIN};
        let mut e = Env::new();
        let v = XEN_DOMCTL_INTERFACE_VERSION;
        assert_eq!(domctl_call(&mut e, 0, domctl::CREATEDOMAIN, v, 0, with(config(1))), 0);
        let id = e.get::<XenDomctl>(0).domain;
        assert_eq!(domctl_call(&mut e, 0, domctl::MAX_VCPUS, v, id, with(MaxVcpus { max: 1 })), 0);
        let evtchn = |e: &mut Env, caller: u16, cmd: u32| e.call(caller, |cx| super::super::dispatch(cx, nr::HYPERVISOR_EVENT_CHANNEL_OP, [u64::from(cmd), ARGS, 0, 0, 0]));
        // dom0 offers a port to the new domain (as xenstored and the backends do), which binds it.
        e.put(0, &EvtchnAllocUnbound { dom: guest_abi::DOMID_SELF, remote_dom: id, port: 0 });
        assert_eq!(evtchn(&mut e, 0, EVTCHNOP_ALLOC_UNBOUND), 0);
        let dom0_port = e.get::<EvtchnAllocUnbound>(0).port;
        e.put(0, &EvtchnBindInterdomain { remote_dom: 0, remote_port: dom0_port, local_port: 0 });
        assert_eq!(evtchn(&mut e, id, EVTCHNOP_BIND_INTERDOMAIN), 0);
        let its_port = e.get::<EvtchnBindInterdomain>(0).local_port;
        assert_eq!(e.dom(0).with_evtchn(|ev| ev.state(dom0_port)), PortState::Interdomain { dom: id, port: its_port });
        let gone = e.dom(id) as *const crate::domain::Domain;
        assert_eq!(domctl_call(&mut e, 0, domctl::DESTROYDOMAIN, v, id, [0; 16]), 0);
        assert_eq!(e.dom(0).with_evtchn(|ev| ev.state(dom0_port)), PortState::Unbound { remote: id }, "dom0's end waits again, as after a close");
        // SAFETY: the registry never frees a domain's record, so the destroyed one is still there.
        assert_eq!(unsafe { &*gone }.with_evtchn(|ev| ev.live_ports().count()), 0, "none of its ports is left open");
    }

    #[test]
    fn a_created_domain_has_a_vgic_at_xens_guest_layout_until_destroyed_and_starts_only_where_it_can() {
        use crate::contract::fake::Call;
        use crate::domain::domu::{GUEST_GICV3_GICD_BASE, GUEST_GICV3_GICR0_BASE, GUEST_GICV3_GICR_STRIDE};
        let mut e = Env::new();
        let v = XEN_DOMCTL_INTERFACE_VERSION;
        let mut c = config(2);
        c.nr_spis = 33;
        assert_eq!(domctl_call(&mut e, 0, domctl::CREATEDOMAIN, v, 0, with(c)), 0);
        let id = e.get::<XenDomctl>(0).domain;
        let vgic = e.arch.vgics.get(id).expect("a vGIC").clone();
        // 32 private INTIDs and 33 SPIs: ITLinesNumber 2 (96 INTIDs); a redistributor each.
        assert_eq!(vgic.lock().nr_irqs(), 96);
        for ipa in [GUEST_GICV3_GICD_BASE, GUEST_GICV3_GICR0_BASE, GUEST_GICV3_GICR0_BASE + GUEST_GICV3_GICR_STRIDE] {
            assert!(e.dom(id).mmio.find(ipa).is_some(), "{ipa:#x}");
        }
        assert!(e.dom(id).mmio.find(GUEST_GICV3_GICR0_BASE + 2 * GUEST_GICV3_GICR_STRIDE).is_none());
        // vCPU 0 online at the kernel's entry; the unpause starts it where the scheduler can
        // place it: under the null scheduler (the host tests' machine) nowhere, and it stays
        // down. The unpause itself succeeds, as Xen's does.
        assert_eq!(domctl_call(&mut e, 0, domctl::MAX_VCPUS, v, id, with(MaxVcpus { max: 2 })), 0);
        assert_eq!(domctl_call(&mut e, 0, domctl::SET_ADDRESS_SIZE, v, id, with(AddressSize { size: 64 })), 0);
        e.put(0x800, &VcpuGuestContext { flags: VGCF_ONLINE, pc: 0x4008_0000, cpsr: 0x3c5, ..Default::default() });
        assert_eq!(domctl_call(&mut e, 0, domctl::SETVCPUCONTEXT, v, id, with(VcpuContext { vcpu: 0, pad: 0, ctxt: ARGS + 0x800 })), 0);
        assert_eq!(domctl_call(&mut e, 0, domctl::UNPAUSEDOMAIN, v, id, [0; 16]), 0);
        assert!(e.arch.started().is_empty());
        assert!(e.dom(id).started() && e.dom(id).vcpu_off(0));
        assert_eq!(domctl_call(&mut e, 0, domctl::UNPAUSEDOMAIN, v, id, [0; 16]), ret(EINVAL), "not paused");
        assert_eq!(domctl_call(&mut e, 0, domctl::PAUSEDOMAIN, v, id, [0; 16]), 0);
        assert_eq!(domctl_call(&mut e, 0, domctl::UNPAUSEDOMAIN, v, id, [0; 16]), 0);
        // Destroyed: its vGIC leaves the table, and a new domain with the id gets one again.
        assert_eq!(domctl_call(&mut e, 0, domctl::DESTROYDOMAIN, v, id, [0; 16]), 0);
        assert!(e.arch.vgics.get(id).is_none());
        assert!(e.arch.calls().contains(&Call::DetachVgic(id)));
        let mut op = XenDomctl { cmd: domctl::CREATEDOMAIN, interface_version: v, domain: id, ..Default::default() };
        set_payload(&mut op.u, &config(1));
        e.put(0, &op);
        assert_eq!(e.call(0, |cx| super::super::dispatch(cx, nr::HYPERVISOR_DOMCTL, [ARGS, 0, 0, 0, 0])), 0);
        assert_eq!(e.get::<XenDomctl>(0).domain, id);
        assert!(e.arch.vgics.get(id).is_some_and(|g| !alloc::sync::Arc::ptr_eq(g, &vgic)), "a vGIC of its own");
    }

    #[test]
    fn a_created_domain_gets_ram_when_populated_and_destroy_takes_it_back() {
        use guest_abi::memory::*;
        let mut e = Env::new();
        let v = XEN_DOMCTL_INTERFACE_VERSION;
        let free_before = e.frames.total_free();
        assert_eq!(domctl_call(&mut e, 0, domctl::CREATEDOMAIN, v, 0, with(config(1))), 0);
        let id = e.get::<XenDomctl>(0).domain;
        assert_eq!(domctl_call(&mut e, 0, domctl::MAX_MEM, v, id, with(MaxMem { max_memkb: 256 + 16 })), 0);
        let populate = |e: &mut Env, base: u64, n: u64| {
            for i in 0..n {
                e.put(0x800 + i * 8, &(base + i));
            }
            e.put(0x400, &XenMemoryReservation { extent_start: ARGS + 0x800, nr_extents: n, extent_order: 0, mem_flags: 0, domid: id });
            e.call(0, |cx| super::super::dispatch(cx, nr::HYPERVISOR_MEMORY_OP, [u64::from(XENMEM_POPULATE_PHYSMAP), ARGS + 0x400, 0, 0, 0]))
        };
        assert_eq!(populate(&mut e, 0x40000, 64), 64);
        assert_eq!(populate(&mut e, crate::hypercall::memory::GUEST_MAGIC_BASE >> 12, 4), 4);
        // Each page it was given is zeroed at the point of coherency (what a previous owner
        // left in RAM is not readable through a non-cacheable mapping).
        for gfn in 0x40000..0x40040 {
            let pa = super::super::guest_phys::lookup(e.dom(id), gfn, &e.phys).expect("populated");
            assert!(e.phys.is_clean(pa, 4096), "gfn {gfn:#x} at {pa:#x} left dirty in the cache");
        }
        // XEN_DOMCTL_cacheflush over the populated pages and a hole beyond them: every mapped
        // frame cleaned (with the I-cache), the hole skipped.
        let before = e.arch.calls().len();
        assert_eq!(domctl_call(&mut e, 0, domctl::CACHEFLUSH, v, id, with(CacheFlush { start_pfn: 0x40000, nr_pfns: 0x50 })), 0);
        let mut cleaned: Vec<(u64, u64)> = e.arch.calls()[before..].iter().filter_map(|c| if let crate::contract::fake::Call::Clean { pa, len } = c { Some((*pa, *len)) } else { None }).collect();
        cleaned.sort();
        let mut want: Vec<u64> = (0x40000..0x40040).filter_map(|g| super::super::guest_phys::lookup(e.dom(id), g, &e.phys)).collect();
        want.sort();
        let got: Vec<u64> = cleaned.iter().flat_map(|&(pa, len)| (0..len / 4096).map(move |i| pa + i * 4096)).collect();
        assert_eq!(got, want, "each mapped frame once, nothing else");
        // Its limit (68 pages) is reached: no more.
        assert_eq!(populate(&mut e, 0x40040, 1), 0);
        assert_eq!(e.dom(id).tot_pages(), 68);
        assert!(e.frames.total_free() < free_before);
        assert_eq!(domctl_call(&mut e, 0, domctl::DESTROYDOMAIN, v, id, [0; 16]), 0);
        assert!(e.domains.get(id).is_none());
        // dom0's own RAM is untouched.
        assert!(super::super::guest_phys::lookup(e.dom(0), RAM >> 12, &e.phys).is_some());
        // Every frame is back (its RAM, its stage-2 tables).
        assert_eq!(e.frames.total_free(), free_before);
    }

    /// dom0 and, as domain 1, a dom0less domU built from a DT node with `xen,enhanced` (1 MiB).
    fn env_with_enhanced_domu() -> Env {
        use crate::domain::domu::{build_domu, DomUSpec, Enhanced};
        use crate::mm::testmem::TestMem;
        const POOL_BYTES: u64 = 8 << 20;
        let phys = TestMem::new(RAM, (RAM_SIZE + POOL_BYTES) as usize);
        crate::hypercall::set_host_ram(&[(RAM, RAM_SIZE + POOL_BYTES)]);
        let mut frames = crate::mm::RegionAllocator::new();
        let _ = frames.add(POOL, POOL_BYTES);
        let d0 = domain(0, RAM, &mut frames, &phys);
        // Its kernel module, an arm64 Image header, in host memory no domain owns.
        let kernel = RAM + RAM_SIZE / 2;
        let mut image = [0u8; 0x2000];
        image[8..16].copy_from_slice(&0x8_0000u64.to_le_bytes());
        image[16..24].copy_from_slice(&0x2000u64.to_le_bytes());
        image[24..32].copy_from_slice(&0xau64.to_le_bytes());
        image[0x38..0x3c].copy_from_slice(&0x644d_5241u32.to_le_bytes());
        platform::PhysMem::write(&phys, kernel, &image).unwrap();
        let spec = DomUSpec { name: "domU1".into(), memory: 1 << 20, vcpus: 1, kernel: (kernel, 0x2000), ramdisk: None, bootargs: None, vpl011: false, enhanced: Enhanced::Enabled };
        let mut tlb = phys.tlb();
        let (d1, _) = build_domu(&spec, 1, 2, &mut frames, &phys, &mut tlb).unwrap();
        let domains = crate::domain::registry::Domains::new();
        let _ = domains.insert(d0);
        let _ = domains.insert(d1);
        Env { phys, frames, domains, args: crate::hypercall::testmem::FlatMemory::new(ARGS, 0x4000), arch: crate::contract::fake::FakeArch::new(0x9000_0000, 0x1000) }
    }

    /// What Debian's init-dom0less asks of the hypervisor for a dom0less domU with
    /// `xen,enhanced`, in its order: the store event channel is there; the domain holds its
    /// RAM up to its limit, so its xenstore page can be populated only once max_mem made room
    /// for it; dom0 maps that page; the store frame is set for the guest to read; xenstored
    /// binds the port.
    #[test]
    fn init_dom0less_gives_an_enhanced_domu_its_xenstore_page() {
        use guest_abi::event_channel::*;
        use guest_abi::hvm::*;
        use guest_abi::memory::*;
        let mut e = env_with_enhanced_domu();
        let v = XEN_DOMCTL_INTERFACE_VERSION;
        let param = |e: &mut Env, caller: u16, cmd: u64, index: u32, value: u64| {
            e.put(0, &XenHvmParam { domid: if caller == 0 { 1 } else { guest_abi::DOMID_SELF }, index, value });
            let r = e.call(caller, |cx| super::super::dispatch(cx, nr::HYPERVISOR_HVM_OP, [cmd, ARGS, 0, 0, 0]));
            (r, e.get::<XenHvmParam>(0).value)
        };
        assert_eq!(param(&mut e, 0, 1, HVM_PARAM_STORE_EVTCHN, 0), (0, 1));
        assert_eq!(param(&mut e, 1, 1, HVM_PARAM_STORE_PFN, 0), (0, u64::MAX), "late: no xenstore page yet");
        assert_eq!(domctl_call(&mut e, 0, domctl::GETDOMAININFO, v, 1, [0; 16]), 0);
        let info: GetDomainInfo = payload(&e.get::<XenDomctl>(0).u);
        assert_eq!((info.domain, info.tot_pages, info.max_pages, info.nr_online_vcpus), (1, 256, 256, 1));
        let store_gfn = (crate::hypercall::memory::GUEST_MAGIC_BASE >> 12) + 1;
        let populate = |e: &mut Env, gfn: u64| {
            e.put(0x800, &gfn);
            e.put(0x400, &XenMemoryReservation { extent_start: ARGS + 0x800, nr_extents: 1, extent_order: 0, mem_flags: 0, domid: 1 });
            e.call(0, |cx| super::super::dispatch(cx, nr::HYPERVISOR_MEMORY_OP, [u64::from(XENMEM_POPULATE_PHYSMAP), ARGS + 0x400, 0, 0, 0]))
        };
        assert_eq!(populate(&mut e, store_gfn), 0, "at its limit");
        assert_eq!(domctl_call(&mut e, 0, domctl::MAX_MEM, v, 1, with(MaxMem { max_memkb: info.max_pages * 4 + 4 })), 0);
        assert_eq!(populate(&mut e, store_gfn), 1);
        assert_eq!(populate(&mut e, store_gfn + 1), 0, "one page was allowed");
        assert_eq!((e.dom(1).tot_pages(), e.dom(1).max_pages()), (257, 257));
        // dom0 maps it (to clear it and mark the connection) and sees zeroes.
        e.put(0x100, &store_gfn);
        e.put(0x108, &0x9_0000u64);
        e.put(0x110, &0x7777_7777u32);
        e.put(0, &XenAddToPhysmapBatch { domid: guest_abi::DOMID_SELF, space: XENMAPSPACE_GMFN_FOREIGN as u16, size: 1, foreign_domid: 1, idxs: ARGS + 0x100, gpfns: ARGS + 0x108, errs: ARGS + 0x110 });
        assert_eq!(e.call(0, |cx| super::super::dispatch(cx, nr::HYPERVISOR_MEMORY_OP, [u64::from(XENMEM_ADD_TO_PHYSMAP_BATCH), ARGS, 0, 0, 0])), 0);
        assert_eq!(e.get::<i32>(0x110), 0);
        let pa = super::super::guest_phys::lookup(e.dom(1), store_gfn, &e.phys).unwrap();
        assert!(e.dom(1).owns_ram(pa, 4096));
        assert_eq!(super::super::guest_phys::lookup(e.dom(0), 0x9_0000, &e.phys), Some(pa));
        let mut page = [0xffu8; 4096];
        platform::PhysMem::read(&e.phys, pa, &mut page).unwrap();
        assert!(page.iter().all(|&b| b == 0));
        // The store frame, set by dom0 and read by the guest.
        assert_eq!(param(&mut e, 0, 0, HVM_PARAM_STORE_PFN, store_gfn).0, 0);
        assert_eq!(param(&mut e, 1, 1, HVM_PARAM_STORE_PFN, 0), (0, store_gfn));
        // xenstored binds the guest's store port.
        e.put(0, &EvtchnBindInterdomain { remote_dom: 1, remote_port: 1, local_port: 0 });
        assert_eq!(e.call(0, |cx| super::super::dispatch(cx, nr::HYPERVISOR_EVENT_CHANNEL_OP, [u64::from(EVTCHNOP_BIND_INTERDOMAIN), ARGS, 0, 0, 0])), 0);
        let local = e.get::<EvtchnBindInterdomain>(0).local_port;
        assert_eq!(e.dom(1).with_evtchn(|ev| ev.state(1)), crate::domain::evtchn::PortState::Interdomain { dom: 0, port: local });
    }

    #[test]
    fn checks_come_in_xens_order() {
        let mut e = Env::new();
        let v = XEN_DOMCTL_INTERFACE_VERSION;
        // A domU: the version first, then the domain, then its privilege.
        assert_eq!(domctl_call(&mut e, 1, domctl::GETDOMAININFO, 0x14, 0, [0; 16]), ret(EACCES));
        assert_eq!(domctl_call(&mut e, 1, domctl::PAUSEDOMAIN, v, 0x1234, [0; 16]), ret(ESRCH));
        // getdomaininfo naming no domain: Xen's answers when nothing is to be reported, -EPERM
        // where Xen would report the next domain up.
        assert_eq!(domctl_call(&mut e, 1, domctl::GETDOMAININFO, v, 0x1234, [0; 16]), ret(ESRCH));
        assert_eq!(domctl_call(&mut e, 1, domctl::GETDOMAININFO, v, DOMID_FIRST_RESERVED, [0; 16]), ret(EINVAL));
        assert_eq!(domctl_call(&mut e, 1, domctl::GETDOMAININFO, v, 0, [0; 16]), ret(EPERM));
        assert_eq!(domctl_call(&mut e, 1, domctl::PAUSEDOMAIN, v, 0, [0; 16]), ret(EPERM));
        assert_eq!(sysctl_call(&mut e, 1, sysctl::PHYSINFO, [0; 16]), ret(EPERM));
        // DOMID_SELF is no domain to a domctl.
        assert_eq!(domctl_call(&mut e, 0, domctl::MAX_MEM, v, guest_abi::DOMID_SELF, [0; 16]), ret(ESRCH));
        // Unknown commands, for dom0.
        assert_eq!(domctl_call(&mut e, 0, 1000, v, 0, [0; 16]), ret(ENOSYS));
        assert_eq!(sysctl_call(&mut e, 0, 99, [0; 16]), ret(ENOSYS));
        assert_eq!(e.call(0, |cx| super::super::dispatch(cx, nr::HYPERVISOR_DOMCTL, [0xdead_0000, 0, 0, 0, 0])), ret(EFAULT));
        assert_eq!(e.call(0, |cx| super::super::dispatch(cx, nr::HYPERVISOR_SYSCTL, [0xdead_0000, 0, 0, 0, 0])), ret(EFAULT));
    }

    #[test]
    fn getdomaininfo_takes_the_next_domain_up_and_reports_it() {
        let mut e = Env::new();
        let v = XEN_DOMCTL_INTERFACE_VERSION;
        assert_eq!(domctl_call(&mut e, 0, domctl::GETDOMAININFO, v, 1, [0; 16]), 0);
        let op: XenDomctl = e.get(0);
        let info: GetDomainInfo = payload(&op.u);
        assert_eq!((op.domain, info.domain, info.nr_online_vcpus, info.max_vcpu_id), (1, 1, 1, 0));
        assert_eq!(info.tot_pages, RAM_SIZE / 2 / 4096);
        assert_eq!(info.flags, dominf::HAP | dominf::HVM_GUEST | dominf::RUNNING | 0xffff_0000, "no shutdown code yet");
        e.dom(1).set_shutdown_code(3);
        e.dom(1).set_shutdown_code(4);
        assert_eq!(domain_info(e.dom(1)).flags >> dominf::SHUTDOWN_SHIFT, 3, "the first code stays");
        // Past the last domain: -ESRCH; a reserved id: -EINVAL.
        assert_eq!(domctl_call(&mut e, 0, domctl::GETDOMAININFO, v, 2, [0; 16]), ret(ESRCH));
        assert_eq!(domctl_call(&mut e, 0, domctl::GETDOMAININFO, v, DOMID_FIRST_RESERVED, [0; 16]), ret(EINVAL));
    }

    #[test]
    fn pause_counts_and_is_reported() {
        let mut e = Env::new();
        let v = XEN_DOMCTL_INTERFACE_VERSION;
        assert_eq!(domctl_call(&mut e, 0, domctl::PAUSEDOMAIN, v, 0, [0; 16]), ret(EINVAL), "not itself");
        assert_eq!(domctl_call(&mut e, 0, domctl::UNPAUSEDOMAIN, v, 1, [0; 16]), ret(EINVAL), "not paused");
        assert_eq!(domctl_call(&mut e, 0, domctl::PAUSEDOMAIN, v, 1, [0; 16]), 0);
        assert_eq!(domctl_call(&mut e, 0, domctl::PAUSEDOMAIN, v, 1, [0; 16]), 0);
        assert!(e.dom(1).paused());
        assert_eq!(domain_info(e.dom(1)).flags & dominf::PAUSED, dominf::PAUSED);
        assert_eq!(domctl_call(&mut e, 0, domctl::UNPAUSEDOMAIN, v, 1, [0; 16]), 0);
        assert!(e.dom(1).paused());
        assert_eq!(domctl_call(&mut e, 0, domctl::UNPAUSEDOMAIN, v, 1, [0; 16]), 0);
        assert!(!e.dom(1).paused());
        for _ in 0..255 {
            assert_eq!(domctl_call(&mut e, 0, domctl::PAUSEDOMAIN, v, 1, [0; 16]), 0);
        }
        assert_eq!(domctl_call(&mut e, 0, domctl::PAUSEDOMAIN, v, 1, [0; 16]), ret(EOVERFLOW));
    }

    #[test]
    fn a_destroy_waiting_for_a_cpu_of_its_own_continues_until_that_cpu_lets_go() {
        let mut e = Env::new();
        let v = XEN_DOMCTL_INTERFACE_VERSION;
        // A dom0less guest on a CPU of its own (sched=null); an id no other test uses, as the
        // CPU table is the machine's.
        let id = 29;
        let _ = e.domains.insert(Domain::new(id, false, false, crate::domain::RamBanks::default()));
        crate::domain::vcpu::CPUS.give_to_domu(3, id, 0);
        e.put(0, &XenDomctl { cmd: domctl::DESTROYDOMAIN, interface_version: v, domain: id, pad: [0; 3], u: [0; 16] });
        let step = |e: &mut Env| e.call(0, |cx| super::super::dispatch_step(cx, nr::HYPERVISOR_DOMCTL, [ARGS, 0, 0, 0, 0]));
        // Its CPU has not taken the kick: the call goes on as a continuation with the same
        // argument, nothing given back yet; each step kicks that CPU again.
        for kicks in 1..=2 {
            assert_eq!(step(&mut e), super::super::Outcome::Continue { x0: ARGS, x1: 0, x2: 0 });
            assert!(e.dom(id).dying() && !e.dom(id).dead());
            assert_eq!(e.arch.calls().iter().filter(|c| **c == crate::contract::fake::Call::Kick(3)).count(), kicks);
        }
        // The kick's interrupt parks the CPU (releasing it): the destroy completes.
        crate::domain::vcpu::CPUS.release(3);
        assert_eq!(step(&mut e), super::super::Outcome::Return(0));
        assert!(e.domains.get(id).is_none());
    }

    #[test]
    fn a_paused_guest_waiting_on_a_cpu_of_its_own_is_reported_paused_and_not_running() {
        let mut e = Env::new();
        let v = XEN_DOMCTL_INTERFACE_VERSION;
        assert_eq!(domain_info(e.dom(1)).flags & (dominf::RUNNING | dominf::PAUSED), dominf::RUNNING);
        assert_eq!(domctl_call(&mut e, 0, domctl::PAUSEDOMAIN, v, 1, [0; 16]), 0);
        e.dom(1).set_waits_paused(0, true);
        assert_eq!(domain_info(e.dom(1)).flags & (dominf::RUNNING | dominf::BLOCKED | dominf::PAUSED), dominf::PAUSED);
        let u = with(GetVcpuInfo { vcpu: 0, ..Default::default() });
        assert_eq!(domctl_call(&mut e, 0, domctl::GETVCPUINFO, v, 1, u), 0);
        let info: GetVcpuInfo = payload(&e.get::<XenDomctl>(0).u);
        assert_eq!((info.online, info.running, info.blocked), (1, 0, 0));
    }

    #[test]
    fn max_mem_sets_the_reservation_limit() {
        let mut e = Env::new();
        let u = with(MaxMem { max_memkb: 1024 });
        assert_eq!(domctl_call(&mut e, 0, domctl::MAX_MEM, XEN_DOMCTL_INTERFACE_VERSION, 1, u), 0);
        assert_eq!(e.dom(1).max_pages(), 256);
        assert_eq!(e.dom(1).tot_pages(), RAM_SIZE / 2 / 4096, "holding more than the limit is allowed");
    }

    #[test]
    fn vcpu_info_and_affinity() {
        let mut e = Env::new();
        let v = XEN_DOMCTL_INTERFACE_VERSION;
        assert_eq!(domctl_call(&mut e, 0, domctl::GETVCPUINFO, v, 1, with(GetVcpuInfo { vcpu: 1, ..Default::default() })), ret(EINVAL));
        assert_eq!(domctl_call(&mut e, 0, domctl::GETVCPUINFO, v, 1, with(GetVcpuInfo::default())), 0);
        let op: XenDomctl = e.get(0);
        let vi: GetVcpuInfo = payload(&op.u);
        assert_eq!((vi.online, vi.running, vi.blocked), (1, 1, 0));
        // No flags, or a flag without its buffer: -EINVAL.
        let map = |at: u64, bits: u32| XenctlBitmap { bitmap: ARGS + at, nr_bits: bits, pad: 0 };
        let aff = |flags, hard, soft| with(VcpuAffinity { vcpu: 0, flags, cpumap_hard: hard, cpumap_soft: soft });
        assert_eq!(domctl_call(&mut e, 0, domctl::GETVCPUAFFINITY, v, 1, aff(0, map(0x800, 8), map(0x808, 8))), ret(EINVAL));
        assert_eq!(domctl_call(&mut e, 0, domctl::GETVCPUAFFINITY, v, 1, aff(XEN_VCPUAFFINITY_SOFT, map(0x800, 8), XenctlBitmap::default())), ret(EINVAL));
        // Default: every CPU (one CPU on the test host); further guest bytes zeroed.
        e.put(0x800, &[0xffu8; 16]);
        assert_eq!(domctl_call(&mut e, 0, domctl::GETVCPUAFFINITY, v, 1, aff(XEN_VCPUAFFINITY_HARD, map(0x800, 16), XenctlBitmap::default())), 0);
        assert_eq!(e.get::<[u8; 4]>(0x800), [1, 0, 0xff, 0xff]);
        // A hard affinity naming no host CPU: -EINVAL; one naming CPU 0: kept.
        e.put(0x800, &[2u8]);
        assert_eq!(domctl_call(&mut e, 0, domctl::SETVCPUAFFINITY, v, 1, aff(XEN_VCPUAFFINITY_HARD, map(0x800, 8), XenctlBitmap::default())), ret(EINVAL));
        e.put(0x800, &[3u8]);
        assert_eq!(domctl_call(&mut e, 0, domctl::SETVCPUAFFINITY, v, 1, aff(XEN_VCPUAFFINITY_HARD, map(0x800, 8), XenctlBitmap::default())), 0);
        assert_eq!(e.get::<u8>(0x800), 1, "reported within the host's CPUs");
        assert_eq!(e.dom(1).placement.lock().hard[0], 1);
        // A bitmap the caller cannot read: -EFAULT.
        let bad = XenctlBitmap { bitmap: 0xdead_0000, nr_bits: 8, pad: 0 };
        assert_eq!(domctl_call(&mut e, 0, domctl::SETVCPUAFFINITY, v, 1, aff(XEN_VCPUAFFINITY_HARD, bad, XenctlBitmap::default())), ret(EFAULT));
    }

    #[test]
    fn scheduler_is_null_in_pool_0() {
        let mut e = Env::new();
        assert_eq!(sysctl_call(&mut e, 0, sysctl::SCHED_ID, [0; 16]), 0);
        let op: XenSysctl = e.get(0);
        assert_eq!(payload::<SchedId>(&op.u).sched_id, XEN_SCHEDULER_NULL);
        let v = XEN_DOMCTL_INTERFACE_VERSION;
        let s = |id, cmd| with(SchedulerOp { sched_id: id, cmd, u: [0; 2] });
        assert_eq!(domctl_call(&mut e, 0, domctl::SCHEDULER_OP, v, 1, s(XEN_SCHEDULER_CREDIT2, SCHEDOP_GETINFO)), ret(EINVAL));
        assert_eq!(domctl_call(&mut e, 0, domctl::SCHEDULER_OP, v, 1, s(XEN_SCHEDULER_NULL, 4)), ret(EINVAL));
        assert_eq!(domctl_call(&mut e, 0, domctl::SCHEDULER_OP, v, 1, s(XEN_SCHEDULER_NULL, SCHEDOP_GETINFO)), 0);
        // cpupool info: pool 0 and then no more.
        let pool = |id| with(CpupoolOp { op: CPUPOOL_OP_INFO, cpupool_id: id, cpumap: XenctlBitmap { bitmap: ARGS + 0x800, nr_bits: 8, pad: 0 }, ..Default::default() });
        assert_eq!(sysctl_call(&mut e, 0, sysctl::CPUPOOL_OP, pool(0)), 0);
        let op: XenSysctl = e.get(0);
        let p: CpupoolOp = payload(&op.u);
        assert_eq!((p.cpupool_id, p.sched_id, p.n_dom), (0, XEN_SCHEDULER_NULL, 2));
        assert_eq!(sysctl_call(&mut e, 0, sysctl::CPUPOOL_OP, pool(1)), ret(ENOENT));
        assert_eq!(sysctl_call(&mut e, 0, sysctl::CPUPOOL_OP, with(CpupoolOp { op: 99, ..Default::default() })), ret(ENOSYS));
    }

    #[test]
    fn credit_scheduler_op_reads_and_sets_the_weight_and_the_pool_parameters() {
        use crate::sched::{SchedPolicy, Scheduler};
        let sched = Scheduler::new();
        sched.configure(SchedPolicy::Credit, 1_000_000, 2, false);
        let d = Domain::new_by_toolstack(3, 1, [0; 16]);
        let op = |cmd, weight: u16, cap: u16| SchedulerOp { sched_id: XEN_SCHEDULER_CREDIT, cmd, u: [u64::from(weight) | u64::from(cap) << 16 | 0xdead << 32, 0] };
        let mut s = op(SCHEDOP_GETINFO, 0, 0xffff);
        assert_eq!(scheduler_op_domain(&sched, &d, &mut s, XEN_SCHEDULER_CREDIT), Ok(()));
        assert_eq!(s.u[0], 256 | 0xdead << 32, "weight 256, no cap, the rest untouched");
        // libxl's create: read, then put back what it read.
        assert_eq!(scheduler_op_domain(&sched, &d, &mut op(SCHEDOP_PUTINFO, 256, 0), XEN_SCHEDULER_CREDIT), Ok(()));
        assert_eq!(scheduler_op_domain(&sched, &d, &mut op(SCHEDOP_PUTINFO, 512, 0xffff), XEN_SCHEDULER_CREDIT), Ok(()));
        assert_eq!(sched.weight(3), 512);
        assert_eq!(scheduler_op_domain(&sched, &d, &mut op(SCHEDOP_PUTINFO, 0, 0), XEN_SCHEDULER_CREDIT), Ok(()), "weight 0 leaves it");
        assert_eq!(sched.weight(3), 512);
        // `xl sched-credit -d 3 -c 50`: libxl puts the weight it read and the cap.
        let mut s = op(SCHEDOP_PUTINFO, 512, 50);
        assert_eq!(scheduler_op_domain(&sched, &d, &mut s, XEN_SCHEDULER_CREDIT), Ok(()));
        assert_eq!(s.u[0], 512 | 50 << 16 | 0xdead << 32, "a put leaves the struct as it came");
        let mut s = op(SCHEDOP_GETINFO, 0, 0);
        assert_eq!(scheduler_op_domain(&sched, &d, &mut s, XEN_SCHEDULER_CREDIT), Ok(()));
        assert_eq!(s.u[0], 512 | 50 << 16 | 0xdead << 32, "weight 512, cap 50");
        // 0xffff keeps the cap; any other value is taken as Xen's credit takes it (over 100%
        // too: libxl, not Xen, bounds it by the vCPUs), 0 removes it.
        assert_eq!(scheduler_op_domain(&sched, &d, &mut op(SCHEDOP_PUTINFO, 0, 0xffff), XEN_SCHEDULER_CREDIT), Ok(()));
        assert_eq!((sched.weight(3), sched.cap(3)), (512, 50));
        assert_eq!(scheduler_op_domain(&sched, &d, &mut op(SCHEDOP_PUTINFO, 0, 0xfffe), XEN_SCHEDULER_CREDIT), Ok(()));
        assert_eq!(sched.cap(3), 0xfffe);
        assert_eq!(scheduler_op_domain(&sched, &d, &mut op(SCHEDOP_PUTINFO, 0, 0), XEN_SCHEDULER_CREDIT), Ok(()));
        let mut s = op(SCHEDOP_GETINFO, 7, 7);
        assert_eq!(scheduler_op_domain(&sched, &d, &mut s, XEN_SCHEDULER_CREDIT), Ok(()));
        assert_eq!(s.u[0], 512 | 0xdead << 32, "no cap");
        // A new domain of a destroyed one's id starts at Xen's defaults.
        sched.set_cap(3, 20).unwrap();
        sched.new_domain(3);
        assert_eq!((sched.weight(3), sched.cap(3)), (256, 0));
        sched.set_weight(3, 512).unwrap();
        assert_eq!(scheduler_op_domain(&sched, &d, &mut op(SCHEDOP_GETVCPUINFO, 0, 0), XEN_SCHEDULER_CREDIT), Err(ret(EINVAL)));
        assert_eq!(scheduler_op_domain(&sched, &d, &mut op(SCHEDOP_GETINFO, 0, 0), XEN_SCHEDULER_NULL), Err(ret(EINVAL)), "not the running scheduler");
        // The pool's parameters: pool 0 @0, the scheduler @4, the command @8, the union @16.
        let mut u = [0u64; 16];
        u[0] = u64::from(XEN_SCHEDULER_CREDIT) << 32;
        u[1] = u64::from(SCHEDOP_GETINFO);
        assert_eq!(scheduler_op_global(&sched, &mut u, XEN_SCHEDULER_CREDIT), Ok(()));
        assert_eq!((u[2] as u32, (u[2] >> 32) as u32, u[3] as u32), (30, 1000, 0), "Xen's defaults");
        // `xl sched-credit -s -t 10 -r 500`.
        u[1] = u64::from(SCHEDOP_PUTINFO);
        u[2] = 10 | 500 << 32;
        assert_eq!(scheduler_op_global(&sched, &mut u, XEN_SCHEDULER_CREDIT), Ok(()));
        assert_eq!((u[2] as u32, (u[2] >> 32) as u32), (10, 500));
        assert_eq!((sched.timeslice(), sched.tick_period()), (10 * 1000, 10 * 1000 / 3));
        // Refused as Xen refuses them, changing nothing: a rate limit longer than the
        // timeslice, out of bounds, a timeslice of 0 or over 1 s, too long a migration delay.
        for (t, r, m) in [(10u64, 20_000u64, 0u64), (10, 50, 0), (0, 0, 0), (1001, 0, 0), (10, 0, 100_001)] {
            u[2] = t | r << 32;
            u[3] = m;
            assert_eq!(scheduler_op_global(&sched, &mut u, XEN_SCHEDULER_CREDIT), Err(ret(EINVAL)), "{t} ms {r} us {m} us");
        }
        assert_eq!(sched.params(), crate::sched::CreditParams { tslice_ms: 10, ratelimit_us: 500, migr_delay_us: 0 });
        // No rate limit at all is allowed.
        u[2] = 30;
        u[3] = 0;
        assert_eq!(scheduler_op_global(&sched, &mut u, XEN_SCHEDULER_CREDIT), Ok(()));
        assert_eq!(sched.params().ratelimit_us, 0);
        u[0] |= 1;
        assert_eq!(scheduler_op_global(&sched, &mut u, XEN_SCHEDULER_CREDIT), Err(ret(ESRCH)), "no pool 1");
        u[0] = u64::from(XEN_SCHEDULER_NULL) << 32;
        assert_eq!(scheduler_op_global(&sched, &mut u, XEN_SCHEDULER_CREDIT), Err(ret(EINVAL)));
        assert_eq!(scheduler_op_global(&sched, &mut u, XEN_SCHEDULER_NULL), Ok(()));
    }

    #[test]
    fn getdomaininfolist_fills_from_first_domain() {
        let mut e = Env::new();
        let list = |first, max| with(GetDomainInfoList { first_domain: first, max_domains: max, buffer: ARGS + 0x400, ..Default::default() });
        assert_eq!(sysctl_call(&mut e, 0, sysctl::GETDOMAININFOLIST, list(0, 8)), 0);
        let op: XenSysctl = e.get(0);
        assert_eq!(payload::<GetDomainInfoList>(&op.u).num_domains, 2);
        assert_eq!(e.get::<GetDomainInfo>(0x400 + 120).domain, 1);
        assert_eq!(sysctl_call(&mut e, 0, sysctl::GETDOMAININFOLIST, list(1, 1)), 0);
        let op: XenSysctl = e.get(0);
        assert_eq!(payload::<GetDomainInfoList>(&op.u).num_domains, 1);
        assert_eq!(e.get::<GetDomainInfo>(0x400).domain, 1);
        let bad = with(GetDomainInfoList { first_domain: 0, max_domains: 2, buffer: 0xdead_0000, ..Default::default() });
        assert_eq!(sysctl_call(&mut e, 0, sysctl::GETDOMAININFOLIST, bad), ret(EFAULT));
    }

    #[test]
    fn physinfo_and_readconsole() {
        let mut e = Env::new();
        assert_eq!(sysctl_call(&mut e, 0, sysctl::PHYSINFO, [0; 16]), 0);
        let op: XenSysctl = e.get(0);
        let p: Physinfo = payload(&op.u);
        assert_eq!((p.threads_per_core, p.cores_per_socket, p.nr_nodes, p.max_node_id), (1, 1, 1, 0));
        assert_eq!(p.capabilities & (physcap::HVM | physcap::HAP | physcap::GNTTAB_V1), physcap::HVM | physcap::HAP | physcap::GNTTAB_V1);
        crate::log!("readconsole test line");
        let rc = |clear, incremental, index, count| with(ReadConsole { clear, incremental, index, buffer: ARGS + 0x800, count, ..Default::default() });
        assert_eq!(sysctl_call(&mut e, 0, sysctl::READCONSOLE, rc(0, 0, 0, 0x2000)), 0);
        let op: XenSysctl = e.get(0);
        let r: ReadConsole = payload(&op.u);
        assert!(r.count > 0);
        // From the position reached, nothing new unless something was logged since.
        let end = r.index;
        assert_eq!(sysctl_call(&mut e, 0, sysctl::READCONSOLE, rc(0, 1, end, 0x100)), 0);
        let r: ReadConsole = payload(&e.get::<XenSysctl>(0).u);
        assert!(r.index.wrapping_sub(end) == r.count);
    }
}
