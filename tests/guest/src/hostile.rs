//! The domU reaching for what is not its own, and the ordinary details a domU depends on. Run
//! by the dom0less domU after its copy of the table (`domu.hostile.*`): other domains' grants,
//! frames, event channels and power; privileged hypercalls; host devices and memory at IPAs
//! it has no RAM or device at; SGIs to vCPUs it does not have; giving a page back and taking
//! it again. Last, PSCI SYSTEM_OFF: only the domU stops (dom0 sees VIRQ_DOM_EXC and goes on).
//! Expected values: real Xen 4.17.

use crate::cases::{Case, Expect, Observed};
use crate::exceptions::{self, EC_DABT_CUR};
use crate::ops::{self, hc2, hc3, Page};
use core::ptr::{addr_of, addr_of_mut};
use guest_abi::errno;
use guest_abi::event_channel::*;
use guest_abi::grant_table::*;
use guest_abi::hvm::*;
use guest_abi::hypercall::*;
use guest_abi::memory::*;
use guest_abi::sched::*;
use guest_abi::smccc::*;
use guest_abi::DOMID_SELF;

/// The page the domU gives back and takes again.
static mut BALLOON_PAGE: Page = Page([0; 4096]);
/// Argument buffers.
static mut HOSTILE_PAGE: Page = Page([0; 4096]);

const DOM0: u16 = 0;

/// Host devices and memory of QEMU virt that no domU owns, as IPAs the domU probes: the
/// host's GIC distributor, UART, SMMU, virtio-mmio, PCIe MMIO and high ECAM windows, and
/// IPAs above the domU's 128 MiB of RAM (where dom0's RAM and the hypervisor are in the
/// host's physical map).
const PROBES: [(&str, u64); 9] = [
    ("gicd", 0x0800_0000),
    ("uart", 0x0900_0000),
    ("smmu", 0x0905_0000),
    ("virtio_mmio", 0x0a00_0000),
    ("pcie_mmio", 0x1000_0000),
    ("ecam_high", 0x40_1000_0000),
    ("above_ram", 0x4800_0000),
    ("dom0_ram", 0x6000_0000),
    ("top_of_host_ram", 0xbff0_0000),
];

/// Map every probe at stage 1 (Device). Called before the MMU is on.
///
/// # Safety
/// Boot CPU, MMU off, before `mmu::enable`.
pub unsafe fn map_probes() {
    for (_, a) in PROBES {
        // The host GIC's 2 MiB are mapped for everyone already.
        if a != crate::gicv3::GICD {
            // SAFETY: as the caller promises.
            unsafe { crate::mmu::add_device(a, 0x1000) };
        }
    }
}

fn buf() -> u64 {
    addr_of_mut!(HOSTILE_PAGE) as u64
}

fn put<T: Copy>(off: usize, v: T) -> u64 {
    // SAFETY: the guest's own page; callers keep the value within it.
    unsafe { ((addr_of_mut!(HOSTILE_PAGE) as *mut u8).add(off) as *mut T).write_unaligned(v) };
    buf() + off as u64
}

fn get<T: Copy>(off: usize) -> T {
    // SAFETY: as in `put`.
    unsafe { ((addr_of!(HOSTILE_PAGE) as *const u8).add(off) as *const T).read_unaligned() }
}

fn ret(r: i64) -> Observed {
    Observed::Ret(r)
}

/// A 32-bit load from `ipa`: the ESR of the abort it took (bit 63 set if FAR was not the
/// address), or the value read.
fn probe(ipa: u64) -> Observed {
    exceptions::clear();
    // SAFETY: mapped as Device memory at stage 1 (`map_probes`); the load faults (the vector
    // resumes past it) or reads whatever is there.
    let v = unsafe { core::ptr::read_volatile(ipa as *const u32) };
    match exceptions::last() {
        (_, Some(e)) if e.ec() == EC_DABT_CUR && e.far == ipa => Observed::Hex(e.esr),
        (_, Some(e)) => Observed::Hex(e.esr | 1 << 63),
        (_, None) => Observed::NoException(i64::from(v)),
    }
}

fn probe_named(name: &str) -> Observed {
    PROBES.iter().find(|(n, _)| *n == name).map_or(Observed::Hex(0xbad), |(_, a)| probe(*a))
}

// ---- memory: a page given back and taken again ----------------------------------------------

fn balloon_gfn() -> u64 {
    ops::pfn(addr_of!(BALLOON_PAGE))
}

fn reservation(cmd: u32, gfn: u64, domid: u16) -> Observed {
    let list = put(1024, gfn);
    let p = put(0, XenMemoryReservation { extent_start: list, nr_extents: 1, extent_order: 0, mem_flags: 0, domid });
    ret(hc2(HYPERVISOR_MEMORY_OP, u64::from(cmd), p))
}

fn current_reservation() -> Observed {
    let p = put(0, DOMID_SELF);
    ret(hc2(HYPERVISOR_MEMORY_OP, u64::from(XENMEM_CURRENT_RESERVATION), p))
}

/// Read the ballooned page: an abort (0xdead) while it is out, else the first word.
fn read_balloon() -> Observed {
    exceptions::clear();
    // SAFETY: our own page (its IPA may be unmapped at stage 2: the vector resumes).
    let v = unsafe { core::ptr::read_volatile(addr_of!(BALLOON_PAGE) as *const u64) };
    match exceptions::last() {
        (_, Some(_)) => Observed::Hex(0xdead),
        _ => Observed::Hex(u64::from(v != 0x0bad_cafe)),
    }
}

/// Write and read back the page taken again.
fn write_read_balloon() -> Observed {
    exceptions::clear();
    // SAFETY: our own page, populated again.
    unsafe { core::ptr::write_volatile(addr_of_mut!(BALLOON_PAGE) as *mut u64, 0x600d_f00d) };
    // SAFETY: as above.
    let v = unsafe { core::ptr::read_volatile(addr_of!(BALLOON_PAGE) as *const u64) };
    match exceptions::last() {
        (_, Some(_)) => Observed::Hex(0xdead),
        _ => Observed::Hex(u64::from(v == 0x600d_f00d)),
    }
}

fn give_back() -> Observed {
    // SAFETY: our own page, marked before it goes.
    unsafe { core::ptr::write_volatile(addr_of_mut!(BALLOON_PAGE) as *mut u64, 0x0bad_cafe) };
    // SAFETY: clean the line to memory and drop it, so a later read cannot hit a stale line.
    unsafe { core::arch::asm!("dc civac, {}", "dsb sy", in(reg) addr_of!(BALLOON_PAGE) as u64, options(nostack)) };
    reservation(XENMEM_DECREASE_RESERVATION, balloon_gfn(), DOMID_SELF)
}

// ---- grants of another domain ---------------------------------------------------------------

/// Map dom0's grant `gref` (guessed: dom0 granted nothing to this domain): the status.
fn map_dom0(gref: u32) -> Observed {
    let m = ops::map(gref, DOM0, GNTMAP_HOST_MAP, ops::GRANT_MAP_IPA + 0x4000);
    if m.status == 0 {
        ops::unmap(m.handle, ops::GRANT_MAP_IPA + 0x4000);
    }
    Observed::Int(i64::from(m.status))
}

/// Statuses of maps of dom0's refs 0, 8, 9, 511, 512 and 100 000, one nibble each.
fn map_dom0_guesses() -> Observed {
    let mut packed = 0u64;
    for gref in [0u32, 8, 9, 511, 512, 100_000] {
        let s = match map_dom0(gref) {
            Observed::Int(v) => v as u64 & 0xf,
            _ => 0xf,
        };
        packed = packed << 4 | s;
    }
    Observed::Hex(packed)
}

fn copy(source: GnttabCopyPtr, dest: GnttabCopyPtr, flags: u16) -> Observed {
    let p = put(0, GnttabCopy { source, dest, len: 8, flags, status: 0x77 });
    let r = hc3(HYPERVISOR_GRANT_TABLE_OP, u64::from(GNTTABOP_COPY), p, 1);
    if r != 0 {
        return ret(r);
    }
    Observed::Int(i64::from(get::<GnttabCopy>(0).status))
}

fn own_frame() -> GnttabCopyPtr {
    GnttabCopyPtr { u: ops::pfn(addr_of!(HOSTILE_PAGE)), domid: DOMID_SELF, offset: 2048 }
}

fn setup_table_dom0() -> Observed {
    let p = put(0, GnttabSetupTable { dom: DOM0, nr_frames: 1, status: 0x77, frame_list: buf() + 512 });
    let r = hc3(HYPERVISOR_GRANT_TABLE_OP, u64::from(GNTTABOP_SETUP_TABLE), p, 1);
    if r != 0 {
        return ret(r);
    }
    Observed::Int(i64::from(get::<GnttabSetupTable>(0).status))
}

// ---- another domain's frames ----------------------------------------------------------------

/// add_to_physmap_batch of dom0's frame `gfn` (gmfn_foreign): the call's return if negative,
/// else the entry's error.
fn foreign_map(gfn: u64) -> Observed {
    let idxs = put(512, gfn);
    let gpfns = put(520, (ops::GRANT_MAP_IPA >> 12) + 8);
    let errs = put(528, 0x7777_7777u32);
    let p = put(0, XenAddToPhysmapBatch { domid: DOMID_SELF, space: XENMAPSPACE_GMFN_FOREIGN as u16, size: 1, foreign_domid: DOM0, idxs, gpfns, errs });
    let r = hc2(HYPERVISOR_MEMORY_OP, u64::from(XENMEM_ADD_TO_PHYSMAP_BATCH), p);
    if r < 0 {
        return ret(r);
    }
    ret(i64::from(get::<i32>(528)))
}

fn remove_dom0(gfn: u64) -> Observed {
    let p = put(0, XenRemoveFromPhysmap { domid: DOM0, gpfn: gfn });
    ret(hc2(HYPERVISOR_MEMORY_OP, u64::from(XENMEM_REMOVE_FROM_PHYSMAP), p))
}

// ---- event channels of another domain -------------------------------------------------------

fn evt<T: Copy>(cmd: u32, arg: T) -> Observed {
    let p = put(0, arg);
    ret(hc2(HYPERVISOR_EVENT_CHANNEL_OP, u64::from(cmd), p))
}

/// Bind to each of dom0's ports 1..=8: how many succeeded (none is left unbound for us).
fn bind_dom0_ports() -> Observed {
    let mut bound = 0;
    for port in 1..=8u32 {
        let p = ops::bind_interdomain(DOM0, port);
        if p > 0 {
            bound += 1;
            let _ = ops::port_op(EVTCHNOP_CLOSE, p as u32);
        }
    }
    Observed::Int(bound)
}

/// SCHEDOP_poll on a port this domain does not have (another domain's port numbers mean
/// nothing here): -EINVAL.
fn poll_not_own() -> Observed {
    ops::clear_upcall_pending();
    let ports = put(512, 60u32);
    let p = put(0, SchedPoll { ports, nr_ports: 1, timeout: 0 });
    ret(hc2(HYPERVISOR_SCHED_OP, u64::from(SCHEDOP_POLL), p))
}

// ---- privileged hypercalls ------------------------------------------------------------------

/// domctl / sysctl with the toolstack's interface version (0x15): `cmd` on `domain`.
fn ctl(nr: u64, cmd: u32, domain: u16) -> Observed {
    // SAFETY: our own page, zeroed for the whole struct.
    unsafe { core::ptr::write_bytes(addr_of_mut!(HOSTILE_PAGE) as *mut u8, 0, 1024) };
    put(0, cmd);
    put(4, 0x15u32);
    put(8, domain);
    ret(hc2(nr, buf(), 0))
}

fn hvm_param(op: u32, domid: u16, index: u32) -> Observed {
    let p = put(0, XenHvmParam { domid, index, value: 0 });
    ret(hc2(HYPERVISOR_HVM_OP, u64::from(op), p))
}

// ---- SGIs -----------------------------------------------------------------------------------

/// ICC_SGI1R_EL1 write (after turning the system-register interface on): the exception it
/// took, or none. `v` names the targets.
fn sgi(v: u64) -> Observed {
    exceptions::clear();
    let at: u64;
    // SAFETY: ICC_SRE_EL1.SRE and an SGI; either may trap (the vector resumes after it).
    unsafe {
        core::arch::asm!(
            "mrs {t}, icc_sre_el1", "orr {t}, {t}, #1", "msr icc_sre_el1, {t}", "isb",
            "adr {at}, 1f", "1: msr icc_sgi1r_el1, {v}", "isb",
            t = out(reg) _, at = out(reg) at, v = in(reg) v, options(nostack)
        );
    }
    match exceptions::last() {
        (_, Some(e)) => Observed::Exception { e, at },
        (_, None) => Observed::NoException(0),
    }
}

fn psci(fid: u32, a1: usize) -> Observed {
    // CPU_ON's entry point (never used: the targets do not exist); else the affinity level.
    let a2 = if fid == PSCI_CPU_ON_64 { 0x4000_0000 } else { 0 };
    // SAFETY: the calls made here either fail or affect only this domain.
    Observed::Int(unsafe { guest_abi::guest::smccc_call(fid, [a1, a2, 0, 0, 0, 0, 0])[0] as i32 as i64 })
}

static HOSTILE_CASES: &[Case] = &[
    // Events: a port the domain does not have.
    Case { name: "domu.hostile.sched_op.poll.not_own_port", run: poll_not_own, expect: Expect::Err(errno::EINVAL) },
    Case { name: "domu.hostile.evtchn.send.not_own_port", run: || ops::port_op(EVTCHNOP_SEND, 60), expect: Expect::Err(errno::EINVAL) },
    // A free port of the domain's first bucket of 64: unmasking it is accepted (nothing to
    // deliver), as on Xen; it reaches no other domain.
    Case { name: "domu.hostile.evtchn.unmask.not_own_port", run: || ops::port_op(EVTCHNOP_UNMASK, 60), expect: Expect::Eq(0) },
    Case { name: "domu.hostile.evtchn.close.not_own_port", run: || ops::port_op(EVTCHNOP_CLOSE, 60), expect: Expect::Err(errno::EINVAL) },
    Case { name: "domu.hostile.evtchn.bind_vcpu.not_own_port", run: || evt(EVTCHNOP_BIND_VCPU, EvtchnBindVcpu { port: 60, vcpu: 0 }), expect: Expect::Err(errno::EINVAL) },
    // Only a port dom0 left unbound for this domain binds: the one that was connected to this
    // domain's own port 1 until the table's EVTCHNOP_reset closed that end.
    Case { name: "domu.hostile.evtchn.bind_interdomain.dom0_ports", run: bind_dom0_ports, expect: Expect::Eq(1) },
    Case { name: "domu.hostile.evtchn.alloc_unbound.in_dom0", run: || ret(ops::alloc_unbound(DOM0, DOMID_SELF)), expect: Expect::Recorded },
    Case { name: "domu.hostile.evtchn.status.dom0", run: || evt(EVTCHNOP_STATUS, EvtchnStatus { dom: DOM0, port: 1, ..Default::default() }), expect: Expect::Recorded },
    Case { name: "domu.hostile.evtchn.reset.dom0", run: || evt(EVTCHNOP_RESET, EvtchnReset { dom: DOM0 }), expect: Expect::Recorded },
    // Grants: dom0's table, refs guessed.
    Case { name: "domu.hostile.grant.map_dom0_guessed_refs", run: map_dom0_guesses, expect: Expect::Recorded },
    Case { name: "domu.hostile.grant.copy_from_dom0_ref_8", run: || copy(GnttabCopyPtr { u: 8, domid: DOM0, offset: 0 }, own_frame(), GNTCOPY_SOURCE_GREF), expect: Expect::Recorded },
    Case { name: "domu.hostile.grant.copy_to_dom0_ref_8", run: || copy(own_frame(), GnttabCopyPtr { u: 8, domid: DOM0, offset: 0 }, GNTCOPY_DEST_GREF), expect: Expect::Recorded },
    Case { name: "domu.hostile.grant.copy_from_dom0_frame", run: || copy(GnttabCopyPtr { u: 0x4800_0, domid: DOM0, offset: 0 }, own_frame(), 0), expect: Expect::Recorded },
    Case { name: "domu.hostile.grant.setup_table_dom0", run: setup_table_dom0, expect: Expect::Recorded },
    // Frames: another domain's, through the physmap.
    Case { name: "domu.hostile.memory.foreign_map_dom0", run: || foreign_map(0x4800_0), expect: Expect::Recorded },
    Case { name: "domu.hostile.memory.remove_from_dom0", run: || remove_dom0(0x4800_0), expect: Expect::Recorded },
    Case { name: "domu.hostile.memory.decrease_dom0", run: || reservation(XENMEM_DECREASE_RESERVATION, 0x4800_0, DOM0), expect: Expect::Eq(0) },
    Case { name: "domu.hostile.memory.populate_dom0", run: || reservation(XENMEM_POPULATE_PHYSMAP, 0x4800_0, DOM0), expect: Expect::Eq(0) },
    // A page given back and taken again.
    Case { name: "domu.hostile.balloon.decrease", run: give_back, expect: Expect::Eq(1) },
    Case { name: "domu.hostile.balloon.current_after_decrease", run: current_reservation, expect: Expect::Recorded },
    Case { name: "domu.hostile.balloon.read_while_out", run: read_balloon, expect: Expect::Eq(0xdead) },
    Case { name: "domu.hostile.balloon.populate", run: || reservation(XENMEM_POPULATE_PHYSMAP, balloon_gfn(), DOMID_SELF), expect: Expect::Eq(1) },
    Case { name: "domu.hostile.balloon.write_read", run: write_read_balloon, expect: Expect::Eq(1) },
    Case { name: "domu.hostile.balloon.current_after_populate", run: current_reservation, expect: Expect::Recorded },
    Case { name: "domu.hostile.balloon.populate_beyond_allocation", run: || reservation(XENMEM_POPULATE_PHYSMAP, 0x5000_0, DOMID_SELF), expect: Expect::Eq(0) },
    // Privileged hypercalls.
    Case { name: "domu.hostile.domctl.getdomaininfo_dom0", run: || ctl(HYPERVISOR_DOMCTL, 5, DOM0), expect: Expect::Recorded },
    Case { name: "domu.hostile.domctl.pausedomain_dom0", run: || ctl(HYPERVISOR_DOMCTL, 3, DOM0), expect: Expect::Recorded },
    Case { name: "domu.hostile.domctl.bad_version", run: || { let r = ctl(HYPERVISOR_DOMCTL, 5, DOM0); let _ = r; put(4, 0x1u32); ret(hc2(HYPERVISOR_DOMCTL, buf(), 0)) }, expect: Expect::Recorded },
    Case { name: "domu.hostile.sysctl.physinfo", run: || ctl(HYPERVISOR_SYSCTL, 3, 0), expect: Expect::Recorded },
    Case { name: "domu.hostile.sysctl.getdomaininfolist", run: || ctl(HYPERVISOR_SYSCTL, 6, 0), expect: Expect::Recorded },
    Case { name: "domu.hostile.hvm_op.set_param_dom0", run: || hvm_param(HVMOP_SET_PARAM, DOM0, HVM_PARAM_CALLBACK_IRQ), expect: Expect::Recorded },
    Case { name: "domu.hostile.hvm_op.get_param_dom0", run: || hvm_param(HVMOP_GET_PARAM, DOM0, HVM_PARAM_STORE_PFN), expect: Expect::Recorded },
    Case { name: "domu.hostile.sched_op.remote_shutdown_dom0", run: || { let p = put(0, SchedRemoteShutdown { domain_id: DOM0, reason: SHUTDOWN_POWEROFF }); ret(hc2(HYPERVISOR_SCHED_OP, u64::from(SCHEDOP_REMOTE_SHUTDOWN), p)) }, expect: Expect::Err(errno::EPERM) },
    Case { name: "domu.hostile.dm_op.dom0", run: || ret(hc3(HYPERVISOR_DM_OP, 0, 0, 0)), expect: Expect::Recorded },
    Case { name: "domu.hostile.physdev_op.pci_device_add", run: || ret(hc2(HYPERVISOR_PHYSDEV_OP, 25, buf())), expect: Expect::Recorded },
    // Host devices and memory.
    Case { name: "domu.hostile.mmio.gicd", run: || probe_named("gicd"), expect: Expect::Recorded },
    Case { name: "domu.hostile.mmio.uart", run: || probe_named("uart"), expect: Expect::Recorded },
    Case { name: "domu.hostile.mmio.smmu", run: || probe_named("smmu"), expect: Expect::Recorded },
    Case { name: "domu.hostile.mmio.virtio_mmio", run: || probe_named("virtio_mmio"), expect: Expect::Recorded },
    Case { name: "domu.hostile.mmio.pcie_mmio", run: || probe_named("pcie_mmio"), expect: Expect::Recorded },
    Case { name: "domu.hostile.mmio.ecam_high", run: || probe_named("ecam_high"), expect: Expect::Recorded },
    Case { name: "domu.hostile.ram.above_own", run: || probe_named("above_ram"), expect: Expect::Recorded },
    Case { name: "domu.hostile.ram.dom0_range", run: || probe_named("dom0_ram"), expect: Expect::Recorded },
    Case { name: "domu.hostile.ram.top_of_host", run: || probe_named("top_of_host_ram"), expect: Expect::Recorded },
    // SGIs to vCPUs it does not have: Aff0 1 (target list bit 1), and all but itself (IRM).
    Case { name: "domu.hostile.sgi.to_vcpu_1", run: || sgi((1 << 24) | 0b10), expect: Expect::Recorded },
    Case { name: "domu.hostile.sgi.to_all_others", run: || sgi((1 << 40) | (1 << 24)), expect: Expect::Recorded },
    Case { name: "domu.hostile.sgi.to_aff1_1", run: || sgi((1 << 16) | (1 << 24) | 1), expect: Expect::Recorded },
    // Power: CPUs it does not have.
    Case { name: "domu.hostile.psci.cpu_on_vcpu_1", run: || psci(PSCI_CPU_ON_64, 1), expect: Expect::Recorded },
    Case { name: "domu.hostile.psci.affinity_info_vcpu_1", run: || psci(PSCI_AFFINITY_INFO_64, 1), expect: Expect::Recorded },
];

/// The hostile rows, then PSCI SYSTEM_OFF, which must stop only this domain (nothing after it
/// prints on either hypervisor; dom0 checks that it learns of the shutdown and goes on).
pub fn run() {
    let (p, f) = crate::cases::run_table("", HOSTILE_CASES.iter());
    crate::println!("domu hostile: {p} passed, {f} failed");
    let r = psci(PSCI_SYSTEM_OFF, 0);
    crate::println!("case domu.hostile.psci.system_off.returned: {r}");
}

/// domU2 of the conformance run: PSCI CPU_OFF of its only vCPU. The vCPU stops for good (the
/// domain is not shut down: nobody is told); a line after the call shows only if it returned.
pub fn cpu_off_last_vcpu() {
    crate::println!("case domu2.psci.cpu_off.calling: 1");
    let r = psci(PSCI_CPU_OFF, 0);
    crate::println!("case domu2.psci.cpu_off.returned: {r}");
}
