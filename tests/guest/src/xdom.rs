//! Two domains at once: the test guest as a dom0less domU (`domu` on its command line) and,
//! beside it, as dom0 (`domu-peer`). The domU grants a page to dom0; dom0 maps it, reads the
//! domU's data, tells the domU it saw it (through the page), unmaps; the domU watches its grant
//! entry's busy bits come and go, ends access and shuts down, which dom0 learns through
//! VIRQ_DOM_EXC. Each side prints its own `case` lines (the domU on its emulated UART), so the
//! conformance runner compares both domains' view with real Xen's.
//!
//! Then an interdomain event channel: dom0 binds the port the domU left unbound for it and
//! sends; the domU sees the event and answers on the same channel.
//!
//! The two run on different CPUs without interrupts: every wait polls, bounded by the generic
//! timer ([`WAIT_SECONDS`]), and each hand-over is acknowledged so no step depends on timing.

use crate::cases::{Case, Expect, Observed};
use crate::fdt::Bank;
use crate::ops::{self, Page, GRANT_MAP_IPA};
use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};
use guest_abi::event_channel::VIRQ_DOM_EXC;
use guest_abi::grant_table::*;
use guest_abi::hypercall::*;
use guest_abi::memory::*;
use guest_abi::platform::XENPF_INTERFACE_VERSION;
use guest_abi::version::XENVER_VERSION;
use guest_abi::DOMID_SELF;

/// The domU (dom0less guests are numbered from 1).
const DOMU: u16 = 1;
/// The domU's grant reference for its page (above the reserved 0..8).
const XGREF: u32 = 10;
/// Where dom0 maps the domU's page: next to the self-grant's address (stage-1 Device, no RAM).
const XMAP_IPA: u64 = GRANT_MAP_IPA + 0x1000;
/// Words of the shared page: the domU's data, dom0's acknowledgement, the domU's "seen".
const SLOT_DATA: usize = 0;
const SLOT_ACK: usize = 1;
const SLOT_SEEN: usize = 2;
const DOMU_DATA: u64 = 0x646f_6d55_6772_6e74; // "domUgrnt"
const DOM0_ACK: u64 = 0x6430_2061_636b_2121; // "d0 ack!!"
const DOMU_SEEN: u64 = 0x7365_656e_206d_6170; // "seen map"
/// Longest wait for the other domain, in seconds of the generic timer.
const WAIT_SECONDS: u64 = 30;

/// The domU's granted page.
static mut XPAGE: Page = Page([0; 4096]);

fn counter() -> (u64, u64) {
    let (now, freq): (u64, u64);
    // SAFETY: reads the virtual counter and its frequency; no side effects.
    unsafe {
        core::arch::asm!("isb", "mrs {0}, cntvct_el0", "mrs {1}, cntfrq_el0", out(reg) now, out(reg) freq, options(nostack));
    }
    (now, freq)
}

/// Poll `ready` until it returns true or [`WAIT_SECONDS`] pass; whether it did.
fn wait_for(mut ready: impl FnMut() -> bool) -> bool {
    let (start, freq) = counter();
    loop {
        if ready() {
            return true;
        }
        if counter().0.wrapping_sub(start) > WAIT_SECONDS * freq.max(1) {
            return false;
        }
        // Let the hypervisor run something else if it wants (both have a CPU each here).
        let _ = ops::hc2(HYPERVISOR_SCHED_OP, guest_abi::sched::SCHEDOP_YIELD as u64, 0);
    }
}

fn hex(b: bool) -> Observed {
    Observed::Hex(b as u64)
}

// ---- the domU side --------------------------------------------------------------------------

fn xpage_word(i: usize) -> *mut u64 {
    // SAFETY: in bounds of the page (i < 512 at every call site).
    unsafe { (addr_of_mut!(XPAGE) as *mut u64).add(i) }
}

fn xgrant_flags() -> &'static AtomicU16 {
    // SAFETY: the grant-table frame is mapped over GNTTAB_PAGE (an earlier row); the entry's
    // flags are an aligned u16 the hypervisor also updates atomically.
    unsafe { AtomicU16::from_ptr(addr_of_mut!((*ops::gnttab_entries().add(XGREF as usize)).flags)) }
}

/// Fill the page and grant it to dom0, read/write.
fn offer() -> Observed {
    // SAFETY: our own page and the grant entry in our mapped grant-table frame.
    unsafe {
        core::ptr::write_volatile(xpage_word(SLOT_DATA), DOMU_DATA);
        core::ptr::write_volatile(xpage_word(SLOT_ACK), 0);
        core::ptr::write_volatile(xpage_word(SLOT_SEEN), 0);
        let e = ops::gnttab_entries().add(XGREF as usize);
        core::ptr::write_volatile(addr_of_mut!((*e).domid), 0);
        core::ptr::write_volatile(addr_of_mut!((*e).frame), ops::pfn(addr_of!(XPAGE)) as u32);
        core::arch::asm!("dmb ish");
    }
    xgrant_flags().store(GTF_PERMIT_ACCESS, Ordering::Release);
    Observed::Hex(u64::from(xgrant_flags().load(Ordering::Acquire)))
}

/// Wait for dom0's mapping (the hypervisor sets the entry's busy bits), then say so.
fn seen_mapped() -> Observed {
    let busy = GTF_READING | GTF_WRITING;
    if !wait_for(|| xgrant_flags().load(Ordering::Acquire) & busy != 0) {
        return Observed::Hex(0xdead);
    }
    let flags = xgrant_flags().load(Ordering::Acquire);
    // SAFETY: our own page.
    unsafe { core::ptr::write_volatile(xpage_word(SLOT_SEEN), DOMU_SEEN) };
    Observed::Hex(u64::from(flags))
}

/// Wait for dom0's unmap (busy bits cleared).
fn seen_unmapped() -> Observed {
    let busy = GTF_READING | GTF_WRITING;
    if !wait_for(|| xgrant_flags().load(Ordering::Acquire) & busy == 0) {
        return Observed::Hex(0xdead);
    }
    Observed::Hex(u64::from(xgrant_flags().load(Ordering::Acquire)))
}

fn dom0_ack() -> Observed {
    // SAFETY: our own page.
    hex(unsafe { core::ptr::read_volatile(xpage_word(SLOT_ACK)) } == DOM0_ACK)
}

/// End access as Linux's gnttab_end_foreign_access_ref does for v1: clear the entry only if no
/// mapping holds it. The flags found (0x1: nobody was using it).
fn end_access() -> Observed {
    let f = xgrant_flags();
    let mut flags = f.load(Ordering::Acquire);
    loop {
        if flags & (GTF_READING | GTF_WRITING) != 0 {
            return Observed::Hex(u64::from(flags));
        }
        match f.compare_exchange(flags, 0, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Observed::Hex(u64::from(flags)),
            Err(now) => flags = now,
        }
    }
}

fn console_io_write() -> Observed {
    let msg = b"console_io write from the domU\n";
    // SAFETY: `msg` is live.
    Observed::Ret(unsafe { guest_abi::guest::hypercall3(HYPERVISOR_CONSOLE_IO as usize, guest_abi::console::CONSOLEIO_WRITE as usize, msg.len(), msg.as_ptr() as usize) })
}

/// The unbound port the domU allocated for dom0 (its first: 1, a case checks it).
const DOMU_PORT: u32 = 1;

/// Wait for dom0's event on the channel, acknowledge it, answer on the same channel.
fn event_from_dom0() -> Observed {
    if !wait_for(|| ops::pending_bit(DOMU_PORT) == 1) {
        return Observed::Hex(0xdead);
    }
    ops::clear_pending(DOMU_PORT);
    Observed::Hex(1)
}

/// The domU's rows: what a non-privileged guest sees, then its half of the grant exchange.
static DOMU_CASES: &[Case] = &[
    Case { name: "domu.xen_version.version", run: || Observed::Hex(ops::hc2(HYPERVISOR_XEN_VERSION, XENVER_VERSION as u64, 0) as u64), expect: Expect::Eq(0x40011) },
    // Without XENFEAT_dom0 (bit 11) and with XENFEAT_not_direct_mapped (bit 16): Xen 4.17.
    Case { name: "domu.xen_version.get_features.0", run: || crate::cases::features(0), expect: Expect::Eq(0x16005) },
    Case { name: "domu.console_io.write", run: console_io_write, expect: Expect::OneOf(&[0, -1, -13, 31]) },
    Case { name: "domu.platform_op.settime64", run: || ops::settime64(XENPF_INTERFACE_VERSION), expect: Expect::Err(guest_abi::errno::EPERM) },
    Case { name: "domu.grant_table_op.query_size.self", run: || ops::query_size(DOMID_SELF), expect: Expect::OneOf(&[0x1_0000_0040, 0x1_0000_0020]) },
    Case { name: "domu.grant_table_op.query_size.dom0", run: || ops::query_size(0), expect: Expect::OneOf(&[-8, -1, -2]) },
    Case { name: "domu.memory_op.add_to_physmap.dom0", run: || ops::add_to_physmap(0, XENMAPSPACE_SHARED_INFO, 0, ops::pfn(addr_of!(ops::SHINFO_PAGE))), expect: Expect::OneOf(&[-1, -3, -13]) },
    Case { name: "domu.memory_op.add_to_physmap.shared_info", run: || ops::add_to_physmap(DOMID_SELF, XENMAPSPACE_SHARED_INFO, 0, ops::pfn(addr_of!(ops::SHINFO_PAGE))), expect: Expect::Eq(0) },
    Case { name: "domu.memory_op.add_to_physmap.grant_table", run: || ops::add_to_physmap(DOMID_SELF, XENMAPSPACE_GRANT_TABLE, 0, ops::pfn(addr_of!(ops::GNTTAB_PAGE))), expect: Expect::Eq(0) },
    Case { name: "domu.event_channel_op.alloc_unbound.dom0", run: || Observed::Ret(ops::alloc_unbound(DOMID_SELF, 0)), expect: Expect::Eq(1) },
    Case { name: "domu.grant.offer_to_dom0", run: offer, expect: Expect::Eq(GTF_PERMIT_ACCESS as i64) },
    Case { name: "domu.grant.mapped_by_dom0.flags", run: seen_mapped, expect: Expect::Eq((GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING) as i64) },
    Case { name: "domu.grant.unmapped_by_dom0.flags", run: seen_unmapped, expect: Expect::Eq(GTF_PERMIT_ACCESS as i64) },
    Case { name: "domu.grant.dom0_wrote_ack", run: dom0_ack, expect: Expect::Eq(1) },
    Case { name: "domu.grant.end_access", run: end_access, expect: Expect::Eq(GTF_PERMIT_ACCESS as i64) },
    Case { name: "domu.evtchn.event_from_dom0", run: event_from_dom0, expect: Expect::Eq(1) },
    Case { name: "domu.evtchn.send_to_dom0", run: || ops::port_op(guest_abi::event_channel::EVTCHNOP_SEND, DOMU_PORT), expect: Expect::Eq(0) },
];

/// The domU's part: its rows and its tally (`domu: N passed, M failed`), then the whole dom0
/// table as a domU (`domu.table.*`: only the diff with Xen judges those), then it shuts down.
pub fn run_domu() {
    let (passed, failed) = crate::cases::run_table("", DOMU_CASES.iter());
    crate::println!("domu: {passed} passed, {failed} failed");
    let (p, f) = crate::cases::run_all_as("domu.table.");
    crate::println!("domu table (dom0's expectations): {p} matched, {f} did not");
    crate::hostile::run();
}

// ---- the dom0 side --------------------------------------------------------------------------

static OWN_RAM: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
static HANDLE: AtomicU32 = AtomicU32::new(u32::MAX);
static DEV_BUS: AtomicU64 = AtomicU64::new(0);
static VIRQ_PORT: AtomicU32 = AtomicU32::new(0);
static XPORT: AtomicU32 = AtomicU32::new(0);

/// Bind to the domU's unbound port. Xen signals a freshly bound port once (events sent to the
/// unbound end may be lost): seen and cleared here. The port number depends on what the
/// fuzz row left open, so only its validity and that signal are the observed value.
fn bind_domu_port() -> Observed {
    let p = ops::bind_interdomain(DOMU, DOMU_PORT);
    if p <= 0 {
        return Observed::Ret(p);
    }
    XPORT.store(p as u32, Ordering::Relaxed);
    let signalled = ops::pending_bit(p as u32);
    ops::clear_pending(p as u32);
    Observed::Hex(0x10 | signalled)
}

/// The domU answers on the channel.
fn domu_replied() -> Observed {
    let p = XPORT.load(Ordering::Relaxed);
    hex(p != 0 && wait_for(|| ops::pending_bit(p) == 1))
}

fn mapped_word(i: usize) -> *mut u64 {
    (XMAP_IPA + 8 * i as u64) as *mut u64
}

/// Map the domU's grant once it is offered (the domU boots beside us: poll).
fn map_domu_grant() -> Observed {
    let mut status = 0;
    let ok = wait_for(|| {
        let m = ops::map(XGREF, DOMU, GNTMAP_HOST_MAP, XMAP_IPA);
        status = m.status;
        if m.status == 0 {
            HANDLE.store(m.handle, Ordering::Relaxed);
            DEV_BUS.store(m.dev_bus_addr, Ordering::Relaxed);
        }
        m.status == 0
    });
    Observed::Int(if ok { 0 } else { i64::from(status) })
}

/// dev_bus_addr is the frame's host address: page aligned, not 0, not dom0's own RAM (the
/// frame is the domU's), not the IPA it was mapped at.
fn dev_bus_addr_is_host_frame() -> Observed {
    let a = DEV_BUS.load(Ordering::Relaxed);
    let (base, size) = (OWN_RAM[0].load(Ordering::Relaxed), OWN_RAM[1].load(Ordering::Relaxed));
    hex(a != 0 && a & 0xfff == 0 && !(a >= base && a < base + size) && a != XMAP_IPA)
}

fn read_mapped(i: usize) -> Option<u64> {
    crate::exceptions::clear();
    // SAFETY: XMAP_IPA is mapped at stage 1 (Device); at stage 2 it is the domU's page, or
    // nothing (the vector records the abort and resumes).
    let v = unsafe { core::ptr::read_volatile(mapped_word(i)) };
    match crate::exceptions::last() {
        (_, Some(_)) => None,
        _ => Some(v),
    }
}

fn read_domu_data() -> Observed {
    match read_mapped(SLOT_DATA) {
        Some(v) => hex(v == DOMU_DATA),
        None => Observed::Hex(0xdead),
    }
}

/// Wait until the domU has seen our mapping, then acknowledge through the page.
fn ack_through_mapping() -> Observed {
    if !wait_for(|| read_mapped(SLOT_SEEN) == Some(DOMU_SEEN)) {
        return Observed::Hex(0xdead);
    }
    // SAFETY: the mapping is live (the domU just wrote through its side of it).
    unsafe { core::ptr::write_volatile(mapped_word(SLOT_ACK), DOM0_ACK) };
    hex(read_mapped(SLOT_ACK) == Some(DOM0_ACK))
}

fn unmap_domu_grant() -> Observed {
    Observed::Int(ops::unmap(HANDLE.load(Ordering::Relaxed), XMAP_IPA))
}

fn read_after_unmap() -> Observed {
    match read_mapped(SLOT_DATA) {
        Some(v) => Observed::Hex(v),
        None => Observed::Hex(0xdead),
    }
}

/// The domU shuts down when it is done: dom0 hears of it through VIRQ_DOM_EXC, and
/// getdomaininfo then shows it shut down (the VIRQ alone may be an earlier domain's: the
/// toolstack rows destroy one, and Xen raises VIRQ_DOM_EXC when that completes).
fn domu_shutdown_seen() -> Observed {
    let port = VIRQ_PORT.load(Ordering::Relaxed);
    hex(port != 0 && wait_for(|| ops::pending_bit(port) == 1 && crate::toolstack::shut_down(DOMU)))
}

/// Map's status (a mapping that succeeds is undone at once).
fn map_status(gref: u32, dom: u16, flags: u32) -> Observed {
    let m = ops::map(gref, dom, flags, XMAP_IPA);
    if m.status == 0 {
        ops::unmap(m.handle, XMAP_IPA);
    }
    Observed::Int(i64::from(m.status))
}

/// dom0's rows, after its own table (shared_info is mapped by then).
static DOM0_CASES: &[Case] = &[
    Case {
        name: "xdom.event_channel_op.bind_virq.dom_exc",
        run: || {
            // The port number depends on what the fuzz row left open: only its validity is
            // compared.
            let p = ops::bind_virq(VIRQ_DOM_EXC, 0);
            VIRQ_PORT.store(p.max(0) as u32, Ordering::Relaxed);
            if p > 0 { Observed::Hex(1) } else { Observed::Ret(p) }
        },
        expect: Expect::Eq(1),
    },
    Case { name: "xdom.grant.map_domu_ref_out_of_range", run: || map_status(100_000, DOMU, GNTMAP_HOST_MAP), expect: Expect::Eq(GNTST_BAD_GNTREF as i64) },
    Case { name: "xdom.grant.map_no_such_domain", run: || map_status(XGREF, 7, GNTMAP_HOST_MAP), expect: Expect::Eq(GNTST_BAD_DOMAIN as i64) },
    Case { name: "xdom.grant.map_domu_grant", run: map_domu_grant, expect: Expect::Eq(0) },
    Case { name: "xdom.grant.dev_bus_addr_is_host_frame", run: dev_bus_addr_is_host_frame, expect: Expect::Eq(1) },
    Case { name: "xdom.grant.read_domu_data", run: read_domu_data, expect: Expect::Eq(1) },
    Case { name: "xdom.grant.write_ack_after_domu_saw_map", run: ack_through_mapping, expect: Expect::Eq(1) },
    // cache_flush by dev_bus_addr: a foreign frame only while the caller maps it.
    Case { name: "xdom.grant.cache_flush_mapped_frame", run: || ops::cache_flush(DEV_BUS.load(Ordering::Relaxed), 0, 64, GNTTAB_CACHE_CLEAN), expect: Expect::Eq(0) },
    Case { name: "xdom.grant.unmap", run: unmap_domu_grant, expect: Expect::Eq(0) },
    Case { name: "xdom.grant.unmap_again", run: unmap_domu_grant, expect: Expect::Eq(GNTST_BAD_HANDLE as i64) },
    Case { name: "xdom.grant.read_after_unmap", run: read_after_unmap, expect: Expect::Eq(0xdead) },
    Case { name: "xdom.grant.cache_flush_after_unmap", run: || ops::cache_flush(DEV_BUS.load(Ordering::Relaxed), 0, 64, GNTTAB_CACHE_CLEAN), expect: Expect::Err(guest_abi::errno::EINVAL) },
    Case { name: "xdom.evtchn.bind_interdomain_to_domu", run: bind_domu_port, expect: Expect::Eq(0x11) },
    Case { name: "xdom.evtchn.send_to_domu", run: || ops::port_op(guest_abi::event_channel::EVTCHNOP_SEND, XPORT.load(Ordering::Relaxed)), expect: Expect::Eq(0) },
    Case { name: "xdom.evtchn.domu_replied", run: domu_replied, expect: Expect::Eq(1) },
    Case { name: "xdom.domu_shutdown.virq_dom_exc", run: domu_shutdown_seen, expect: Expect::Eq(1) },
    Case { name: "xdom.grant.map_after_end_access", run: || map_status(XGREF, DOMU, GNTMAP_HOST_MAP), expect: Expect::Eq(GNTST_GENERAL_ERROR as i64) },
];

/// dom0's part, run after its own table when a domU runs beside it.
pub fn run_dom0_side(own_ram: &[Bank], passed: &mut u32, failed: &mut u32) {
    if let Some(b) = own_ram.first() {
        OWN_RAM[0].store(b.base, Ordering::Relaxed);
        OWN_RAM[1].store(b.size, Ordering::Relaxed);
    }
    let (p, f) = crate::cases::run_table("", DOM0_CASES.iter());
    *passed += p;
    *failed += f;
}
