//! The rest of the sub-ops a guest can call: every xen_version command, the grant-table,
//! event-channel, memory, sched and vcpu sub-ops beyond what `ops` covers, and the answers
//! for the ones Xen 4.17 on ARM refuses. They run after `ops`'s rows (shared_info and a
//! grant-table frame are mapped, vcpu_info is registered) and before its last two
//! (FIFO init and the fuzz row). Expected values: real Xen 4.17.

use crate::cases::{Case, Expect, Observed, SetWayOp};
use crate::ops::{self, hc2, hc3, Page, GRANT_MAP_IPA};
use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{AtomicU32, Ordering};
use guest_abi::errno;
use guest_abi::event_channel::*;
use guest_abi::grant_table::*;
use guest_abi::hypercall::*;
use guest_abi::memory::*;
use guest_abi::sched::*;
use guest_abi::smccc::*;
use guest_abi::vcpu::*;
use guest_abi::version::*;
use guest_abi::DOMID_SELF;

/// Argument buffers for this file's rows.
static mut ABI_PAGE: Page = Page([0; 4096]);
/// A page the set/way rows write before cleaning the cache by set/way.
static mut SW_PAGE: Page = Page([0; 4096]);

const DOMID_BAD: u16 = 0x1234;

fn buf() -> u64 {
    addr_of_mut!(ABI_PAGE) as u64
}

fn fill(byte: u8) {
    // SAFETY: the guest's own scratch page.
    unsafe { core::ptr::write_bytes(addr_of_mut!(ABI_PAGE) as *mut u8, byte, 4096) };
}

fn at<T: Copy>(off: usize) -> *mut T {
    // SAFETY: in bounds of the page at every call site.
    unsafe { (addr_of_mut!(ABI_PAGE) as *mut u8).add(off) as *mut T }
}

fn put<T: Copy>(off: usize, v: T) -> u64 {
    // SAFETY: the guest's own page; callers keep `off + size_of::<T>()` within it.
    unsafe { at::<T>(off).write_unaligned(v) };
    buf() + off as u64
}

fn get<T: Copy>(off: usize) -> T {
    // SAFETY: as in `put`.
    unsafe { at::<T>(off).read_unaligned() }
}

fn ret(r: i64) -> Observed {
    Observed::Ret(r)
}

/// The other domain of the conformance run: dom0 asks about the domU (1), the domU about dom0.
fn other_domain() -> u16 {
    if crate::cases::features(0).value().unwrap_or(0) & (1 << guest_abi::features::XENFEAT_DOM0) != 0 { 1 } else { 0 }
}

// ---- xen_version ---------------------------------------------------------------------------

fn xv(cmd: u32, arg: u64) -> i64 {
    hc2(HYPERVISOR_XEN_VERSION, u64::from(cmd), arg)
}

/// XENVER_build_id with a buffer of `len` bytes: the return (the id's length on success).
fn build_id(len: u32) -> Observed {
    fill(0);
    let p = put(0, len);
    ret(xv(XENVER_BUILD_ID, p))
}

/// A string command into a 0xAA-filled buffer: its return, and whether it wrote a string.
fn string_cmd(cmd: u32) -> Observed {
    fill(0xaa);
    let r = xv(cmd, buf());
    if r != 0 {
        return ret(r);
    }
    Observed::Hex(u64::from(get::<u8>(0) != 0xaa))
}

/// XENVER_commandline: 1 if the buffer reads "<denied>" (what Xen gives an unprivileged guest).
fn commandline_denied() -> Observed {
    fill(0xaa);
    let r = xv(XENVER_COMMANDLINE, buf());
    if r != 0 {
        return ret(r);
    }
    // SAFETY: our page.
    let s = unsafe { core::slice::from_raw_parts(at::<u8>(0), 9) };
    Observed::Hex(u64::from(s == b"<denied>\0"))
}

/// XENVER_guest_handle: how many of the 16 bytes are not zero.
fn guest_handle() -> Observed {
    fill(0xaa);
    let r = xv(XENVER_GUEST_HANDLE, buf());
    if r != 0 {
        return ret(r);
    }
    // SAFETY: our page.
    let s = unsafe { core::slice::from_raw_parts(at::<u8>(0), 16) };
    Observed::Int(s.iter().filter(|&&b| b != 0).count() as i64)
}

fn platform_parameters() -> Observed {
    fill(0xaa);
    let r = xv(XENVER_PLATFORM_PARAMETERS, buf());
    if r != 0 {
        return ret(r);
    }
    Observed::Hex(get::<u64>(0))
}

/// XENVER_capabilities starts with the 64-bit ARM guest kind.
fn capabilities() -> Observed {
    fill(0);
    let r = xv(XENVER_CAPABILITIES, buf());
    if r != 0 {
        return ret(r);
    }
    // SAFETY: our page.
    let s = unsafe { core::slice::from_raw_parts(at::<u8>(0), 16) };
    Observed::Hex(u64::from(s == b"xen-3.0-aarch64 "))
}

// ---- grant_table_op ------------------------------------------------------------------------

fn gnt(op: u32, arg: u64, count: u64) -> i64 {
    hc3(HYPERVISOR_GRANT_TABLE_OP, u64::from(op), arg, count)
}

fn get_version(dom: u16, count: u64) -> Observed {
    let p = put(0, GnttabGetVersion { dom, pad: 0, version: 0x77 });
    let r = gnt(GNTTABOP_GET_VERSION, p, count);
    if r != 0 {
        return ret(r);
    }
    ret(i64::from(get::<GnttabGetVersion>(0).version))
}

/// set_version: the return (negated) in bits 32.., the version field as written back below.
fn set_version_written_back(v: u32, count: u64) -> Observed {
    let p = put(0, GnttabSetVersion { version: v });
    let r = gnt(GNTTABOP_SET_VERSION, p, count);
    Observed::Hex(((r.unsigned_abs()) << 32) | u64::from(get::<GnttabSetVersion>(0).version))
}

fn get_status_frames(dom: u16, nr_frames: u32, count: u64) -> Observed {
    let p = put(0, GnttabGetStatusFrames { nr_frames, dom, status: 0x77, frame_list: buf() + 256 });
    let r = gnt(GNTTABOP_GET_STATUS_FRAMES, p, count);
    if r != 0 {
        return ret(r);
    }
    Observed::Int(i64::from(get::<GnttabGetStatusFrames>(0).status))
}

fn transfer() -> Observed {
    let p = put(0, GnttabTransfer { mfn: ops::pfn(addr_of!(SW_PAGE)), domid: 0, r#ref: 30, status: 0x77 });
    let r = gnt(GNTTABOP_TRANSFER, p, 1);
    if r != 0 {
        return ret(r);
    }
    Observed::Int(i64::from(get::<GnttabTransfer>(0).status))
}

fn swap(a: u32, b: u32) -> Observed {
    let p = put(0, GnttabSwapGrantRef { ref_a: a, ref_b: b, status: 0x77 });
    let r = gnt(GNTTABOP_SWAP_GRANT_REF, p, 1);
    if r != 0 {
        return ret(r);
    }
    Observed::Int(i64::from(get::<GnttabSwapGrantRef>(0).status))
}

fn entry(gref: u32) -> *mut u64 {
    // SAFETY: the grant-table frame is mapped over GNTTAB_PAGE (an ops row); gref < 512.
    unsafe { ops::gnttab_entries().add(gref as usize) as *mut u64 }
}

/// Two inactive entries with different contents (no access permitted: nothing can map them)
/// are exchanged: 1 if each now holds the other's.
fn swap_exchanges() -> Observed {
    let (a, b) = (0x0000_1111_0000_0000u64, 0x0000_2222_0000_0000u64);
    // SAFETY: entries 20 and 21 of our own table.
    unsafe {
        entry(20).write_volatile(a);
        entry(21).write_volatile(b);
    }
    match swap(20, 21) {
        Observed::Int(0) => {}
        o => return o,
    }
    // SAFETY: as above.
    let (na, nb) = unsafe { (entry(20).read_volatile(), entry(21).read_volatile()) };
    Observed::Hex(u64::from(na == b && nb == a))
}

/// The self-grant mapped (when the domain may map it): swapping it is refused while it is
/// in use. The swap's status, or the map's when the map failed.
fn swap_pinned() -> Observed {
    let m = self_map();
    if m.status != 0 {
        return Observed::Int(i64::from(m.status) - 100);
    }
    let o = swap(ops::GREF_RW, 21);
    ops::unmap(m.handle, GRANT_MAP_IPA);
    o
}

fn self_map() -> GnttabMapGrantRef {
    ops::write_grant(ops::GREF_RW, false);
    ops::map(ops::GREF_RW, 0, GNTMAP_HOST_MAP, GRANT_MAP_IPA)
}

fn unmap_and_replace(host_addr: u64, new_addr: u64, handle: u32) -> i64 {
    let p = put(0, GnttabUnmapAndReplace { host_addr, new_addr, handle, status: 0x77 });
    let r = gnt(GNTTABOP_UNMAP_AND_REPLACE, p, 1);
    if r != 0 { r } else { i64::from(get::<GnttabUnmapAndReplace>(0).status) }
}

/// Map the self-grant, replace it with another address (refused on ARM: the mapping stays,
/// readable), then without one (an unmap): the two statuses and whether the page read
/// through the mapping after each, packed in nibbles.
fn unmap_and_replace_sequence() -> Observed {
    let m = self_map();
    if m.status != 0 {
        return Observed::Int(i64::from(m.status) - 100);
    }
    let first = unmap_and_replace(GRANT_MAP_IPA, GRANT_MAP_IPA + 0x2000, m.handle);
    let readable1 = ops::read_through_mapping();
    let second = unmap_and_replace(GRANT_MAP_IPA, 0, m.handle);
    let readable2 = ops::read_through_mapping();
    if second != 0 {
        ops::unmap(m.handle, GRANT_MAP_IPA);
    }
    let nib = |v: i64| (v as u64) & 0xf;
    let rd = |o: Observed| match o {
        Observed::Hex(1) => 1u64,
        Observed::Hex(0xdead) => 0xd,
        _ => 0,
    };
    Observed::Hex(nib(first) << 12 | rd(readable1) << 8 | nib(second) << 4 | rd(readable2))
}

// ---- event_channel_op ----------------------------------------------------------------------

fn evt<T: Copy>(cmd: u32, arg: T) -> (i64, T) {
    let p = put(0, arg);
    let r = hc2(HYPERVISOR_EVENT_CHANNEL_OP, u64::from(cmd), p);
    (r, get::<T>(0))
}

/// EVTCHNOP_status packed: status, vcpu, then the union's two words.
fn status(dom: u16, port: u32) -> Observed {
    let (r, s) = evt(EVTCHNOP_STATUS, EvtchnStatus { dom, port, status: 0x77, vcpu: 0x77, u: [0x7777_7777; 2] });
    if r != 0 {
        return ret(r);
    }
    let u0 = match s.status {
        EVTCHNSTAT_UNBOUND | EVTCHNSTAT_INTERDOMAIN => u64::from(s.u[0] & 0xffff),
        EVTCHNSTAT_PIRQ | EVTCHNSTAT_VIRQ => u64::from(s.u[0]),
        _ => 0,
    };
    let u1 = if s.status == EVTCHNSTAT_INTERDOMAIN { u64::from(s.u[1]) } else { 0 };
    Observed::Hex(u64::from(s.status) << 40 | u64::from(s.vcpu & 0xff) << 32 | u0 << 16 | u1)
}

static PORT_A: AtomicU32 = AtomicU32::new(0);
static PORT_B: AtomicU32 = AtomicU32::new(0);
static PORT_IPI: AtomicU32 = AtomicU32::new(0);
static PORT_PIRQ: AtomicU32 = AtomicU32::new(0);

fn keep(slot: &AtomicU32, r: i64) -> i64 {
    if r > 0 {
        slot.store(r as u32, Ordering::Relaxed);
    }
    r
}

fn status_unbound() -> Observed {
    let p = keep(&PORT_A, ops::alloc_unbound(DOMID_SELF, DOMID_SELF));
    if p <= 0 {
        return ret(p);
    }
    status(DOMID_SELF, p as u32)
}

fn status_interdomain() -> Observed {
    let q = keep(&PORT_B, ops::bind_interdomain(DOMID_SELF, PORT_A.load(Ordering::Relaxed)));
    if q <= 0 {
        return ret(q);
    }
    status(DOMID_SELF, q as u32)
}

fn status_virq() -> Observed {
    let p = ops::bind_virq(VIRQ_ENOMEM, 0);
    if p <= 0 {
        return ret(p);
    }
    let o = status(DOMID_SELF, p as u32);
    let _ = ops::port_op(EVTCHNOP_CLOSE, p as u32);
    o
}

fn bind_ipi(vcpu: u32) -> i64 {
    let (r, b) = evt(EVTCHNOP_BIND_IPI, EvtchnBindIpi { vcpu, port: 0 });
    if r != 0 { r } else { i64::from(b.port) }
}

/// An IPI port: its status, and a send to it marks it pending (low nibble).
fn ipi_status_and_send() -> Observed {
    let p = keep(&PORT_IPI, bind_ipi(0));
    if p <= 0 {
        return ret(p);
    }
    let port = p as u32;
    ops::clear_pending(port);
    let o = status(DOMID_SELF, port);
    let sent = ops::port_op(EVTCHNOP_SEND, port);
    let pend = ops::pending_bit(port);
    ops::clear_pending(port);
    match (o, sent) {
        (Observed::Hex(v), Observed::Ret(0)) => Observed::Hex(v << 4 | pend),
        (Observed::Hex(_), s) => s,
        (o, _) => o,
    }
}

fn bind_pirq(pirq: u32) -> i64 {
    let (r, b) = evt(EVTCHNOP_BIND_PIRQ, EvtchnBindPirq { pirq, flags: 0, port: 0 });
    if r != 0 { r } else { i64::from(b.port) }
}

fn pirq_status() -> Observed {
    let p = PORT_PIRQ.load(Ordering::Relaxed);
    if p == 0 {
        return ret(-1);
    }
    status(DOMID_SELF, p)
}

fn set_priority(port: u32, priority: u32) -> Observed {
    ret(evt(EVTCHNOP_SET_PRIORITY, EvtchnSetPriority { port, priority }).0)
}

fn reset(dom: u16) -> Observed {
    ret(evt(EVTCHNOP_RESET, EvtchnReset { dom }).0)
}

/// Reset its own ports: the return, then the port a new allocation gets (1: all were freed).
fn reset_self() -> Observed {
    let r = evt(EVTCHNOP_RESET, EvtchnReset { dom: DOMID_SELF }).0;
    if r != 0 {
        return ret(r);
    }
    let p = ops::alloc_unbound(DOMID_SELF, DOMID_SELF);
    let live = ops::port_op(EVTCHNOP_SEND, PORT_IPI.load(Ordering::Relaxed));
    let closed_ipi = matches!(live, Observed::Ret(r) if r == errno::ret(errno::EINVAL));
    if p > 0 {
        let _ = ops::port_op(EVTCHNOP_CLOSE, p as u32);
    }
    Observed::Hex((p as u64) << 4 | u64::from(closed_ipi))
}

fn init_control(offset: u32, vcpu: u32) -> Observed {
    ret(evt(EVTCHNOP_INIT_CONTROL, EvtchnInitControl { control_gfn: ops::pfn(addr_of!(SW_PAGE)), offset, vcpu, link_bits: 0, _pad: [0; 7] }).0)
}

// ---- sched_op ------------------------------------------------------------------------------

/// SCHEDOP_poll on one port, with the vCPU's pending-event flag cleared first (a pending
/// upcall would end the poll before the port is looked at).
fn poll(port: u32) -> Observed {
    ops::clear_upcall_pending();
    let ports = put(512, port);
    let p = put(0, SchedPoll { ports, nr_ports: 1, timeout: 0 });
    ret(hc2(HYPERVISOR_SCHED_OP, u64::from(SCHEDOP_POLL), p))
}

/// Poll a port that is pending: returns at once.
fn poll_pending() -> Observed {
    let p = bind_ipi(0);
    if p <= 0 {
        return ret(p);
    }
    let port = p as u32;
    let _ = ops::port_op(EVTCHNOP_SEND, port);
    let o = poll(port);
    ops::clear_pending(port);
    let _ = ops::port_op(EVTCHNOP_CLOSE, port);
    o
}

fn sched<T: Copy>(cmd: u32, arg: T) -> Observed {
    let p = put(0, arg);
    ret(hc2(HYPERVISOR_SCHED_OP, u64::from(cmd), p))
}

// ---- memory_op -----------------------------------------------------------------------------

fn mem(cmd: u64, arg: u64) -> i64 {
    hc2(HYPERVISOR_MEMORY_OP, cmd, arg)
}

fn domain_stat(cmd: u32, domid: u16) -> Observed {
    let p = put(0, domid);
    ret(mem(u64::from(cmd), p))
}

/// The memory_op commands that exist only on x86 (or nowhere): a mask of those answered
/// -ENOSYS, bit n for command n.
const X86_ONLY_MEMOPS: [u32; 11] = [5, 8, 9, 10, 12, 13, 16, 17, 20, 22, 25];

fn x86_only_memops() -> Observed {
    let mut mask = 0u64;
    for cmd in X86_ONLY_MEMOPS {
        fill(0);
        if mem(u64::from(cmd), buf()) == errno::ret(errno::ENOSYS) {
            mask |= 1 << cmd;
        }
    }
    Observed::Hex(mask)
}

fn claim(extent_start: u64, order: u32, domid: u16) -> Observed {
    let p = put(0, XenMemoryReservation { extent_start, nr_extents: 0, extent_order: order, mem_flags: 0, domid });
    ret(mem(u64::from(XENMEM_CLAIM_PAGES), p))
}

/// XENMEM_exchange with `in` and `out` as given (no extents): the return.
fn exchange(in_order: u32, in_dom: u16, out_dom: u16) -> Observed {
    fill(0);
    let r_in = XenMemoryReservation { extent_start: buf() + 1024, nr_extents: 1, extent_order: in_order, mem_flags: 0, domid: in_dom };
    let r_out = XenMemoryReservation { extent_start: buf() + 2048, nr_extents: 1, extent_order: in_order, mem_flags: 0, domid: out_dom };
    put(0, r_in);
    put(32, r_out);
    put(64, 0u64);
    ret(mem(u64::from(XENMEM_EXCHANGE), buf()))
}

fn vnuma(domid: u16, pad: u16) -> Observed {
    let p = put(0, XenVnumaTopologyInfo { domid, pad, ..Default::default() });
    ret(mem(u64::from(XENMEM_GET_VNUMAINFO), p))
}

/// XENMEM_acquire_resource with a NULL frame list: the return, or the size it reports.
fn resource_size(domid: u16, r#type: u16, id: u32) -> Observed {
    let p = put(0, XenMemAcquireResource { domid, r#type, id, ..Default::default() });
    let r = mem(u64::from(XENMEM_ACQUIRE_RESOURCE), p);
    if r != 0 {
        return ret(r);
    }
    Observed::Hex(u64::from(get::<XenMemAcquireResource>(0).nr_frames))
}

fn resource_raw(x: XenMemAcquireResource) -> Observed {
    let p = put(0, x);
    ret(mem(u64::from(XENMEM_ACQUIRE_RESOURCE), p))
}

/// The other domain's grant-table frame 0 mapped at one of our free guest frames, read
/// through, and taken out again: 1 if all three worked, else the first failure.
fn map_other_grant_frame() -> Observed {
    let gfn = (GRANT_MAP_IPA >> 12) + 16;
    let list = put(512, gfn);
    let p = put(0, XenMemAcquireResource { domid: other_domain(), r#type: XENMEM_RESOURCE_GRANT_TABLE, id: XENMEM_RESOURCE_GRANT_TABLE_ID_SHARED, nr_frames: 1, pad: 0, frame: 0, frame_list: list });
    let r = mem(u64::from(XENMEM_ACQUIRE_RESOURCE), p);
    if r != 0 {
        return ret(r);
    }
    crate::exceptions::clear();
    // SAFETY: GRANT_MAP_IPA's block is mapped at stage 1 (Device); at stage 2 the frame is
    // there now, or the vector records the abort and resumes.
    let _ = unsafe { core::ptr::read_volatile((gfn << 12) as *const u64) };
    let read_ok = crate::exceptions::last().0 == 0;
    let p = put(0, XenRemoveFromPhysmap { domid: DOMID_SELF, gpfn: gfn });
    let removed = mem(u64::from(XENMEM_REMOVE_FROM_PHYSMAP), p);
    if removed != 0 {
        return ret(removed);
    }
    Observed::Hex(u64::from(read_ok))
}

fn own_id() -> u16 {
    1 - other_domain()
}

// ---- PSCI and caches -----------------------------------------------------------------------

fn smccc(fid: u32, a1: usize, a2: usize) -> i64 {
    // SAFETY: queries only (AFFINITY_INFO).
    unsafe { guest_abi::guest::smccc_call(fid, [a1, a2, 0, 0, 0, 0, 0])[0] as i32 as i64 }
}

/// Write a pattern, clean and invalidate the data cache by set/way (as ARMv7 Linux does when
/// it turns caches off), read the pattern back: the exception the instruction took, or 1 if
/// it completed and the data survived. Every set and way of level 1 is walked (the line
/// geometry is the CPU's, read from CCSIDR_EL1).
fn dc_set_way(op: SetWayOp) -> Observed {
    // SAFETY: our own page.
    unsafe { core::ptr::write_volatile(addr_of_mut!(SW_PAGE) as *mut u64, 0x5e7_3a11) };
    let walk = |v: u64| {
        let at: u64;
        // SAFETY: cache maintenance by set/way on level 1 (bits 3:1 = 0): no memory is
        // changed architecturally; a trap resumes after the instruction.
        unsafe {
            match op {
                SetWayOp::Isw => core::arch::asm!("adr {at}, 1f", "1: dc isw, {v}", "nop", at = out(reg) at, v = in(reg) v, options(nostack)),
                SetWayOp::Csw => core::arch::asm!("adr {at}, 1f", "1: dc csw, {v}", "nop", at = out(reg) at, v = in(reg) v, options(nostack)),
                SetWayOp::Cisw => core::arch::asm!("adr {at}, 1f", "1: dc cisw, {v}", "nop", at = out(reg) at, v = in(reg) v, options(nostack)),
            }
        }
        at
    };
    // SAFETY: our own page.
    let intact = || unsafe { core::ptr::read_volatile(addr_of!(SW_PAGE) as *const u64) } == 0x5e7_3a11;
    crate::cases::set_way_walk(l1_geometry(), walk, intact)
}


/// Level-1 data cache: (sets, ways, log2 line bytes), from CCSIDR_EL1 (CSSELR_EL1 = 0).
fn l1_geometry() -> (u32, u32, u32) {
    let ccsidr: u64;
    // SAFETY: selects the L1 data cache and reads its geometry.
    unsafe { core::arch::asm!("msr csselr_el1, xzr", "isb", "mrs {}, ccsidr_el1", out(reg) ccsidr, options(nostack)) };
    let line_shift = (ccsidr & 7) as u32 + 4;
    let ways = ((ccsidr >> 3) & 0x3ff) as u32 + 1;
    let sets = ((ccsidr >> 13) & 0x7fff) as u32 + 1;
    (sets, ways, line_shift)
}

/// dom0's own rows (its vGIC is at the host's GIC addresses; a domU's is elsewhere).
pub static DOM0_ONLY_CASES: &[Case] = &[
    // An SGI to itself, with one vCPU.
    Case { name: "gic.sgi_to_self", run: sgi_to_self, expect: Expect::Eq(5) },
];

/// An SGI to itself (ICC_SGI1R_EL1 with the target list naming this CPU) while interrupts are
/// masked at PSTATE: the SGI becomes pending at the CPU interface, seen as the interrupt ID
/// ICC_IAR1_EL1 hands out (acknowledged and ended here). With one vCPU, the only CPU.
fn sgi_to_self() -> Observed {
    if !crate::gicv3::enable_for_sgis() {
        return Observed::Hex(0xdead);
    }
    if crate::gicv3::is_v2() {
        crate::gicv3::send_sgi_to_self_v2();
        return Observed::Hex(crate::gicv3::wait_acknowledge(1_000_000));
    }
    let sgi = 5u64;
    // Aff3.Aff2.Aff1 = 0, target list bit 0 (Aff0 0), INTID 5.
    let v = (sgi << 24) | 1;
    // SAFETY: sends an SGI to this CPU; IRQs stay masked at PSTATE, so it stays pending until
    // acknowledged below.
    unsafe { core::arch::asm!("msr icc_sgi1r_el1, {}", "isb", in(reg) v, options(nostack)) };
    let id = crate::gicv3::wait_acknowledge(1_000_000);
    Observed::Hex(id)
}

/// The rows. `ops` runs them after its own table rows (see the module comment).
pub static ABI_CASES: &[Case] = &[
    // xen_version
    Case { name: "xen_version.pagesize.non_null_arg", run: || ret(xv(XENVER_PAGESIZE, buf())), expect: Expect::Err(errno::EINVAL) },
    Case { name: "xen_version.build_id.size", run: || ret(xv(XENVER_BUILD_ID, 0)), expect: Expect::Recorded },
    Case { name: "xen_version.build_id.len_0", run: || build_id(0), expect: Expect::Recorded },
    Case { name: "xen_version.build_id.len_4", run: || build_id(4), expect: Expect::Recorded },
    Case { name: "xen_version.build_id.len_64", run: || build_id(64), expect: Expect::Recorded },
    Case { name: "xen_version.build_id.unmapped_va", run: || ret(xv(XENVER_BUILD_ID, crate::mmu::UNMAPPED_VA)), expect: Expect::Recorded },
    Case { name: "xen_version.platform_parameters", run: platform_parameters, expect: Expect::Eq(0x20_0000) },
    Case { name: "xen_version.platform_parameters.unmapped_va", run: || ret(xv(XENVER_PLATFORM_PARAMETERS, crate::mmu::UNMAPPED_VA)), expect: Expect::Err(errno::EFAULT) },
    Case { name: "xen_version.compile_info", run: || string_cmd(XENVER_COMPILE_INFO), expect: Expect::Eq(1) },
    Case { name: "xen_version.changeset", run: || string_cmd(XENVER_CHANGESET), expect: Expect::Eq(1) },
    Case { name: "xen_version.capabilities", run: capabilities, expect: Expect::Eq(1) },
    Case { name: "xen_version.guest_handle", run: guest_handle, expect: Expect::Recorded },
    Case { name: "xen_version.commandline", run: || string_cmd(XENVER_COMMANDLINE), expect: Expect::Eq(1) },
    Case { name: "xen_version.commandline.denied", run: commandline_denied, expect: Expect::Recorded },
    Case { name: "xen_version.cmd_11", run: || ret(xv(11, buf())), expect: Expect::Err(errno::ENOSYS) },
    // grant_table_op
    Case { name: "grant_table_op.get_version.self", run: || get_version(DOMID_SELF, 1), expect: Expect::Eq(1) },
    Case { name: "grant_table_op.get_version.count_0", run: || get_version(DOMID_SELF, 0), expect: Expect::Eq(1) },
    Case { name: "grant_table_op.get_version.bad_dom", run: || get_version(DOMID_BAD, 1), expect: Expect::Err(errno::ESRCH) },
    Case { name: "grant_table_op.get_version.other_domain", run: || get_version(other_domain(), 1), expect: Expect::Recorded },
    Case { name: "grant_table_op.get_version.unmapped_va", run: || ret(gnt(GNTTABOP_GET_VERSION, crate::mmu::UNMAPPED_VA, 1)), expect: Expect::Err(errno::EFAULT) },
    Case { name: "grant_table_op.set_version.count_0", run: || set_version_written_back(1, 0), expect: Expect::Eq(1) },
    Case { name: "grant_table_op.set_version.2.written_back", run: || set_version_written_back(2, 1), expect: Expect::Recorded },
    Case { name: "grant_table_op.set_version.3.written_back", run: || set_version_written_back(3, 1), expect: Expect::Recorded },
    Case { name: "grant_table_op.get_status_frames.nr_0", run: || get_status_frames(DOMID_SELF, 0, 1), expect: Expect::Recorded },
    Case { name: "grant_table_op.get_status_frames.nr_1", run: || get_status_frames(DOMID_SELF, 1, 1), expect: Expect::Recorded },
    Case { name: "grant_table_op.get_status_frames.bad_dom", run: || get_status_frames(DOMID_BAD, 1, 1), expect: Expect::Eq(GNTST_BAD_DOMAIN as i64) },
    Case { name: "grant_table_op.get_status_frames.other_domain", run: || get_status_frames(other_domain(), 0, 1), expect: Expect::Recorded },
    Case { name: "grant_table_op.get_status_frames.count_2", run: || get_status_frames(DOMID_SELF, 0, 2), expect: Expect::Err(errno::EINVAL) },
    Case { name: "grant_table_op.transfer", run: transfer, expect: Expect::Recorded },
    Case { name: "grant_table_op.transfer.unmapped_va", run: || ret(gnt(GNTTABOP_TRANSFER, crate::mmu::UNMAPPED_VA, 1)), expect: Expect::Recorded },
    Case { name: "grant_table_op.swap_grant_ref.same", run: || swap(20, 20), expect: Expect::Eq(0) },
    Case { name: "grant_table_op.swap_grant_ref.bad_ref", run: || swap(20, 0xff_ffff), expect: Expect::Eq(GNTST_BAD_GNTREF as i64) },
    Case { name: "grant_table_op.swap_grant_ref.exchanges", run: swap_exchanges, expect: Expect::Eq(1) },
    Case { name: "grant_table_op.swap_grant_ref.mapped", run: swap_pinned, expect: Expect::Recorded },
    Case { name: "grant_table_op.swap_grant_ref.unmapped_va", run: || ret(gnt(GNTTABOP_SWAP_GRANT_REF, crate::mmu::UNMAPPED_VA, 1)), expect: Expect::Err(errno::EFAULT) },
    Case { name: "grant_table_op.unmap_and_replace.bad_handle", run: || Observed::Int(unmap_and_replace(GRANT_MAP_IPA, 0, 0xffff)), expect: Expect::Eq(GNTST_BAD_HANDLE as i64) },
    Case { name: "grant_table_op.unmap_and_replace.sequence", run: unmap_and_replace_sequence, expect: Expect::Recorded },
    Case { name: "grant_table_op.unmap_and_replace.unmapped_va", run: || ret(gnt(GNTTABOP_UNMAP_AND_REPLACE, crate::mmu::UNMAPPED_VA, 1)), expect: Expect::Err(errno::EFAULT) },
    // event_channel_op
    Case { name: "event_channel_op.status.unbound", run: status_unbound, expect: Expect::Recorded },
    Case { name: "event_channel_op.status.interdomain", run: status_interdomain, expect: Expect::Recorded },
    Case { name: "event_channel_op.status.virq", run: status_virq, expect: Expect::Recorded },
    Case { name: "event_channel_op.status.port_0", run: || status(DOMID_SELF, 0), expect: Expect::Recorded },
    Case { name: "event_channel_op.status.free_port_63", run: || status(DOMID_SELF, 63), expect: Expect::Recorded },
    Case { name: "event_channel_op.status.port_4000", run: || status(DOMID_SELF, 4000), expect: Expect::Err(errno::EINVAL) },
    Case { name: "event_channel_op.status.bad_dom", run: || status(DOMID_BAD, 1), expect: Expect::Err(errno::ESRCH) },
    Case { name: "event_channel_op.status.other_domain", run: || status(other_domain(), 1), expect: Expect::Recorded },
    Case { name: "event_channel_op.status.unmapped_va", run: || ret(hc2(HYPERVISOR_EVENT_CHANNEL_OP, u64::from(EVTCHNOP_STATUS), crate::mmu::UNMAPPED_VA)), expect: Expect::Err(errno::EFAULT) },
    Case { name: "event_channel_op.bind_ipi", run: ipi_status_and_send, expect: Expect::Recorded },
    Case { name: "event_channel_op.bind_ipi.bad_vcpu", run: || ret(bind_ipi(77)), expect: Expect::Err(errno::ENOENT) },
    Case { name: "event_channel_op.bind_pirq.5", run: || ret(keep(&PORT_PIRQ, bind_pirq(5))), expect: Expect::Recorded },
    Case { name: "event_channel_op.bind_pirq.5.twice", run: || ret(bind_pirq(5)), expect: Expect::Recorded },
    Case { name: "event_channel_op.bind_pirq.status", run: pirq_status, expect: Expect::Recorded },
    Case { name: "event_channel_op.bind_pirq.close", run: || ops::port_op(EVTCHNOP_CLOSE, PORT_PIRQ.load(Ordering::Relaxed)), expect: Expect::Recorded },
    Case { name: "event_channel_op.bind_pirq.1024", run: || ret(bind_pirq(1024)), expect: Expect::Err(errno::EINVAL) },
    Case { name: "event_channel_op.set_priority.live_port", run: || set_priority(PORT_A.load(Ordering::Relaxed), 7), expect: Expect::Recorded },
    Case { name: "event_channel_op.set_priority.free_port_63", run: || set_priority(63, 7), expect: Expect::Recorded },
    Case { name: "event_channel_op.set_priority.port_4000", run: || set_priority(4000, 7), expect: Expect::Err(errno::EINVAL) },
    Case { name: "event_channel_op.init_control.bad_vcpu_and_offset", run: || init_control(4, 77), expect: Expect::Recorded },
    Case { name: "event_channel_op.expand_array.unmapped_va", run: || ret(hc2(HYPERVISOR_EVENT_CHANNEL_OP, u64::from(EVTCHNOP_EXPAND_ARRAY), crate::mmu::UNMAPPED_VA)), expect: Expect::Err(errno::EFAULT) },
    Case { name: "event_channel_op.reset.bad_dom", run: || reset(DOMID_BAD), expect: Expect::Err(errno::ESRCH) },
    Case { name: "event_channel_op.reset.other_domain", run: || reset(other_domain()), expect: Expect::Recorded },
    // sched_op
    Case { name: "sched_op.poll.free_port_63", run: || poll(63), expect: Expect::Err(errno::EINVAL) },
    Case { name: "sched_op.poll.port_4000", run: || poll(4000), expect: Expect::Err(errno::EINVAL) },
    Case { name: "sched_op.poll.pending_port", run: poll_pending, expect: Expect::Eq(0) },
    Case { name: "sched_op.poll.unmapped_ports", run: || { ops::clear_upcall_pending(); let p = put(0, SchedPoll { ports: crate::mmu::UNMAPPED_VA, nr_ports: 1, timeout: 0 }); ret(hc2(HYPERVISOR_SCHED_OP, u64::from(SCHEDOP_POLL), p)) }, expect: Expect::Err(errno::EFAULT) },
    Case { name: "sched_op.shutdown_code", run: || sched(SCHEDOP_SHUTDOWN_CODE, SchedShutdown { reason: SHUTDOWN_POWEROFF }), expect: Expect::Eq(0) },
    Case { name: "sched_op.shutdown_code.unmapped_va", run: || ret(hc2(HYPERVISOR_SCHED_OP, u64::from(SCHEDOP_SHUTDOWN_CODE), crate::mmu::UNMAPPED_VA)), expect: Expect::Err(errno::EFAULT) },
    Case { name: "sched_op.pin_override.minus_1", run: || sched(SCHEDOP_PIN_OVERRIDE, -1i32), expect: Expect::Recorded },
    Case { name: "sched_op.pin_override.cpu_4096", run: || sched(SCHEDOP_PIN_OVERRIDE, 4096i32), expect: Expect::Recorded },
    Case { name: "sched_op.watchdog.id_5", run: || sched(SCHEDOP_WATCHDOG, [5u32, 0]), expect: Expect::Recorded },
    // vcpu_op (everything but the two register calls is -EINVAL on ARM)
    Case { name: "vcpu_op.is_up", run: || ret(hc3(HYPERVISOR_VCPU_OP, u64::from(VCPUOP_IS_UP), 0, 0)), expect: Expect::Err(errno::EINVAL) },
    Case { name: "vcpu_op.get_runstate_info", run: || ret(hc3(HYPERVISOR_VCPU_OP, 4, 0, buf())), expect: Expect::Err(errno::EINVAL) },
    Case { name: "vcpu_op.set_periodic_timer", run: || ret(hc3(HYPERVISOR_VCPU_OP, 6, 0, buf())), expect: Expect::Err(errno::EINVAL) },
    // memory_op
    Case { name: "memory_op.maximum_ram_page", run: || ret(mem(u64::from(XENMEM_MAXIMUM_RAM_PAGE), 0)), expect: Expect::Recorded },
    Case { name: "memory_op.maximum_ram_page.continuation_bits", run: || ret(mem(u64::from(XENMEM_MAXIMUM_RAM_PAGE) | 1 << MEMOP_EXTENT_SHIFT, 0)), expect: Expect::Err(errno::EINVAL) },
    Case { name: "memory_op.current_reservation.self", run: || domain_stat(XENMEM_CURRENT_RESERVATION, DOMID_SELF), expect: Expect::Recorded },
    Case { name: "memory_op.maximum_reservation.self", run: || domain_stat(XENMEM_MAXIMUM_RESERVATION, DOMID_SELF), expect: Expect::Recorded },
    Case { name: "memory_op.maximum_gpfn.self", run: || domain_stat(XENMEM_MAXIMUM_GPFN, DOMID_SELF), expect: Expect::Recorded },
    Case { name: "memory_op.current_reservation.other_domain", run: || domain_stat(XENMEM_CURRENT_RESERVATION, other_domain()), expect: Expect::Recorded },
    Case { name: "memory_op.maximum_reservation.other_domain", run: || domain_stat(XENMEM_MAXIMUM_RESERVATION, other_domain()), expect: Expect::Recorded },
    Case { name: "memory_op.current_reservation.bad_domid", run: || domain_stat(XENMEM_CURRENT_RESERVATION, DOMID_BAD), expect: Expect::Err(errno::ESRCH) },
    Case { name: "memory_op.current_reservation.unmapped_va", run: || ret(mem(u64::from(XENMEM_CURRENT_RESERVATION), crate::mmu::UNMAPPED_VA)), expect: Expect::Err(errno::EFAULT) },
    Case { name: "memory_op.current_reservation.continuation_bits", run: || { let p = put(0, DOMID_SELF); ret(mem(u64::from(XENMEM_CURRENT_RESERVATION) | 1 << MEMOP_EXTENT_SHIFT, p)) }, expect: Expect::Err(errno::EINVAL) },
    Case { name: "memory_op.get_sharing_freed_pages", run: || ret(mem(18, 0)), expect: Expect::Eq(0) },
    Case { name: "memory_op.get_sharing_shared_pages", run: || ret(mem(19, 0)), expect: Expect::Eq(0) },
    Case { name: "memory_op.x86_only", run: x86_only_memops, expect: Expect::Recorded },
    Case { name: "memory_op.claim_pages.domid_self", run: || claim(0, 0, DOMID_SELF), expect: Expect::Recorded },
    Case { name: "memory_op.claim_pages.extent_start", run: || claim(buf(), 0, 0), expect: Expect::Recorded },
    Case { name: "memory_op.claim_pages.order_1", run: || claim(0, 1, 0), expect: Expect::Recorded },
    Case { name: "memory_op.claim_pages.other_domain", run: || claim(0, 0, other_domain()), expect: Expect::Recorded },
    Case { name: "memory_op.exchange.domid_mismatch", run: || exchange(0, DOMID_SELF, 0x1234), expect: Expect::Recorded },
    Case { name: "memory_op.exchange.order_20", run: || exchange(20, DOMID_SELF, DOMID_SELF), expect: Expect::Recorded },
    Case { name: "memory_op.exchange.unmapped_va", run: || ret(mem(u64::from(XENMEM_EXCHANGE), crate::mmu::UNMAPPED_VA)), expect: Expect::Err(errno::EFAULT) },
    Case { name: "memory_op.exchange.continuation_bits", run: || ret(mem(u64::from(XENMEM_EXCHANGE) | 1 << MEMOP_EXTENT_SHIFT, buf())), expect: Expect::Err(errno::EINVAL) },
    Case { name: "memory_op.get_vnumainfo.self", run: || vnuma(DOMID_SELF, 0), expect: Expect::Err(errno::EOPNOTSUPP) },
    Case { name: "memory_op.get_vnumainfo.pad", run: || vnuma(DOMID_SELF, 1), expect: Expect::Err(errno::EINVAL) },
    Case { name: "memory_op.get_vnumainfo.bad_dom", run: || vnuma(DOMID_BAD, 0), expect: Expect::Err(errno::ESRCH) },
    Case { name: "memory_op.get_vnumainfo.other_domain", run: || vnuma(other_domain(), 0), expect: Expect::Recorded },
    Case { name: "memory_op.get_vnumainfo.continuation_bits", run: || { let p = put(0, XenVnumaTopologyInfo { domid: DOMID_SELF, ..Default::default() }); ret(mem(u64::from(XENMEM_GET_VNUMAINFO) | 1 << MEMOP_EXTENT_SHIFT, p)) }, expect: Expect::Err(errno::EINVAL) },
    Case { name: "memory_op.acquire_resource.grant_table_size.other_domain", run: || resource_size(other_domain(), XENMEM_RESOURCE_GRANT_TABLE, XENMEM_RESOURCE_GRANT_TABLE_ID_SHARED), expect: Expect::Recorded },
    Case { name: "memory_op.acquire_resource.grant_table_size.own_id", run: || resource_size(own_id(), XENMEM_RESOURCE_GRANT_TABLE, XENMEM_RESOURCE_GRANT_TABLE_ID_SHARED), expect: Expect::Err(errno::EPERM) },
    Case { name: "memory_op.acquire_resource.grant_table_size.domid_self", run: || resource_size(DOMID_SELF, XENMEM_RESOURCE_GRANT_TABLE, XENMEM_RESOURCE_GRANT_TABLE_ID_SHARED), expect: Expect::Err(errno::ESRCH) },
    Case { name: "memory_op.acquire_resource.status_frames.other_domain", run: || resource_size(other_domain(), XENMEM_RESOURCE_GRANT_TABLE, 1), expect: Expect::Recorded },
    Case { name: "memory_op.acquire_resource.ioreq_server.other_domain", run: || resource_size(other_domain(), 0, 0), expect: Expect::Recorded },
    Case { name: "memory_op.acquire_resource.type_7.other_domain", run: || resource_size(other_domain(), 7, 0), expect: Expect::Recorded },
    Case { name: "memory_op.acquire_resource.pad", run: || resource_raw(XenMemAcquireResource { domid: other_domain(), r#type: XENMEM_RESOURCE_GRANT_TABLE, pad: 1, ..Default::default() }), expect: Expect::Err(errno::EINVAL) },
    Case { name: "memory_op.acquire_resource.frame_above_4g", run: || resource_raw(XenMemAcquireResource { domid: other_domain(), r#type: XENMEM_RESOURCE_GRANT_TABLE, frame: 1 << 32, ..Default::default() }), expect: Expect::Err(errno::EINVAL) },
    Case { name: "memory_op.acquire_resource.unmapped_va", run: || ret(mem(u64::from(XENMEM_ACQUIRE_RESOURCE), crate::mmu::UNMAPPED_VA)), expect: Expect::Err(errno::EFAULT) },
    Case { name: "memory_op.acquire_resource.map_grant_frame_0.other_domain", run: map_other_grant_frame, expect: Expect::Recorded },
    // PSCI: the vCPUs a domain has
    Case { name: "psci.affinity_info_64.no_such_vcpu", run: || Observed::Int(smccc(PSCI_AFFINITY_INFO_64, 0x7, 0)), expect: Expect::Recorded },
    Case { name: "psci.affinity_info_64.level_4", run: || Observed::Int(smccc(PSCI_AFFINITY_INFO_64, 0, 4)), expect: Expect::Recorded },
    Case { name: "psci.affinity_info_64.self_level_1", run: || Observed::Int(smccc(PSCI_AFFINITY_INFO_64, 0, 1)), expect: Expect::Recorded },
    // Data cache maintenance by set/way: emulated, not UNDEF.
    Case { name: "cache.dc_isw", run: || dc_set_way(SetWayOp::Isw), expect: Expect::Recorded },
    Case { name: "cache.dc_csw", run: || dc_set_way(SetWayOp::Csw), expect: Expect::Recorded },
    Case { name: "cache.dc_cisw", run: || dc_set_way(SetWayOp::Cisw), expect: Expect::Recorded },
    // Last of these: its own ports all closed.
    Case { name: "event_channel_op.reset.self", run: reset_self, expect: Expect::Recorded },
];
