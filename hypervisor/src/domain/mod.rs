//! Domains: what the hypervisor knows about each guest (its memory, its state), and the dom0
//! builder (`dom0`) that lays out and loads a direct-mapped dom0.
pub mod dom0;
pub mod domu;
pub mod evtchn;
pub mod evtchn_fifo;
pub mod fault;
pub mod grant;
pub mod image;
pub mod lifecycle;
pub mod mmio;
pub mod registry;
pub mod remains;
pub mod vcpu;
pub mod vcombiner;
pub mod vpowerdomain;
pub mod vuart;
pub mod zimage;

use crate::sync::{Mutex, RwLock};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use mmio::MmioBus;

/// A domain identifier (Xen's `domid_t`).
pub type DomId = u16;

/// Bit n: domain n (below 32) had an upcall raised that the vGIC has not delivered yet. One
/// load tells a hypercall exit whether any domain's upcalls need delivering (an event a
/// domain sends may be for another one).
static WITH_UPCALLS: AtomicU32 = AtomicU32::new(0);

/// The domains (bit n: domain n) with upcalls raised since the last call; theirs to deliver.
#[inline]
pub fn take_domains_with_upcalls() -> u32 {
    if WITH_UPCALLS.load(Ordering::Relaxed) == 0 {
        return 0;
    }
    WITH_UPCALLS.swap(0, Ordering::Acquire)
}

/// Why a domain stopped (Xen's `SHUTDOWN_*` reasons).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ShutdownReason {
    PowerOff,
    Reboot,
    Suspend,
    Crash,
    Watchdog,
    SoftReset,
}

impl ShutdownReason {
    /// Xen's reason code, if it is one.
    pub fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            0 => Self::PowerOff,
            1 => Self::Reboot,
            2 => Self::Suspend,
            3 => Self::Crash,
            4 => Self::Watchdog,
            5 => Self::SoftReset,
            _ => return None,
        })
    }
}

/// A range of guest RAM: `ipa..ipa + size` backed by `pa..pa + size`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RamBank {
    pub ipa: u64,
    pub pa: u64,
    pub size: u64,
}

/// Most RAM banks a domain has (Xen gives dom0 at most 4 on ARM).
pub const MAX_RAM_BANKS: usize = 4;

/// A domain's RAM banks: a small fixed set, cheap to copy into a hypercall's memory view.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RamBanks {
    banks: [RamBank; MAX_RAM_BANKS],
    len: usize,
}

impl RamBanks {
    pub const fn new() -> Self {
        Self { banks: [RamBank { ipa: 0, pa: 0, size: 0 }; MAX_RAM_BANKS], len: 0 }
    }

    /// Add a bank; `false` (and nothing added) when the set is full.
    pub fn push(&mut self, bank: RamBank) -> bool {
        if self.len == MAX_RAM_BANKS {
            return false;
        }
        self.banks[self.len] = bank;
        self.len += 1;
        true
    }
    pub fn as_slice(&self) -> &[RamBank] {
        &self.banks[..self.len]
    }
    /// Host physical range `[pa, pa + len)` lies entirely inside one bank.
    pub fn contains_pa(&self, pa: u64, len: u64) -> bool {
        let Some(end) = pa.checked_add(len) else { return false };
        self.as_slice().iter().any(|b| pa >= b.pa && end <= b.pa + b.size)
    }
    /// Total bytes.
    pub fn total(&self) -> u64 {
        self.as_slice().iter().map(|b| b.size).sum()
    }
}

/// One guest. What never changes once the domain runs (id, kind, RAM banks, vCPU count, the
/// emulated devices' ranges) is plain data; everything else has its own lock or is atomic, so
/// that vCPUs of one domain, and different domains, work side by side (lock order: `sync`'s
/// users follow ARCHITECTURE.md principle 8 and [`registry`]'s module documentation).
#[derive(Debug)]
pub struct Domain {
    /// Devices emulated for this domain (trapped MMIO), each behind its own lock.
    pub mmio: MmioBus,
    pub id: DomId,
    /// dom0: the hardware domain, direct-mapped, owner of the devices the hypervisor does not keep.
    pub is_hardware: bool,
    /// Guest physical == host physical for RAM.
    pub direct_mapped: bool,
    /// Its RAM: given at construction for a domain built at boot, set once later for one the
    /// toolstack made (when its memory is first populated).
    ram: crate::sync::Once<RamBanks>,
    /// vCPUs the domain has (vCPU ids 0..max_vcpus; the builder sets it, default 1).
    pub max_vcpus: u32,
    /// The event-channel PPI as `hvm_op` reports it (HVM_PARAM_CALLBACK_IRQ); the domain
    /// builder sets it (dom0: 16, as Xen 4.17 on QEMU virt).
    pub callback_ppi: u32,
    /// The domain's stage-2 translation (absent only in host tests that do not need one).
    /// Writers: every change of the map (populate, decrease, grant and foreign maps,
    /// add/remove_from_physmap); readers: lookups, the stage-2 fault re-check.
    pub p2m: RwLock<Option<crate::mm::Stage2>>,
    /// Grant table (its frames, pins on its grants, its mappings of others' grants).
    pub grants: Mutex<grant::GrantTable>,
    /// Event channels, shared_info and vcpu_info: reached through [`Domain::with_evtchn`].
    evtchn: Mutex<evtchn::EventChannels>,
    /// Bit n: an event made vCPU n's `evtchn_upcall_pending` 1 and the vGIC has not injected
    /// the upcall yet. Outside the event-channel lock: every hypercall exit looks at it.
    upcalls: AtomicU32,
    /// 0, or 1 + Xen's `SHUTDOWN_*` code: set by SCHEDOP_shutdown / PSCI SYSTEM_OFF; the
    /// trap layer acts on it.
    shutdown: AtomicU8,
    /// Guest aborts logged so far (a hostile guest must not flood the console).
    faults_logged: AtomicU32,
    /// VMASST_TYPE_* bits enabled with `vm_assist`.
    vm_assist: AtomicU64,
    /// Pages of its RAM the domain has given back (decrease_reservation) and not taken again
    /// (populate_physmap): its current reservation is its RAM less these.
    given_back: AtomicU64,
    /// Bit n: vCPU n turned itself off (PSCI CPU_OFF) and does not run again.
    vcpus_off: AtomicU32,
    /// The shutdown code the toolstack sees (SCHEDOP_shutdown_code or the first shutdown's
    /// reason; `u32::MAX` until one is given).
    shutdown_code: AtomicU32,
    /// When each vCPU turned itself off (ns since boot; 0 while it runs).
    vcpu_off_ns: [AtomicU64; vcpu::MAX_VCPUS],
    /// Pauses by the toolstack (XEN_DOMCTL_pausedomain) not undone yet: while non-zero, the
    /// domain's vCPUs wait in the hypervisor at their next exit.
    controller_pauses: AtomicU32,
    /// Bit n: vCPU n, which has a CPU of its own (`sched=null`), waits paused in the
    /// hypervisor on that CPU (the pause's wait ends when it is set).
    waits_paused: AtomicU32,
    /// Pages the domain may hold (XEN_DOMCTL_max_mem; its RAM until the toolstack sets it).
    max_pages: AtomicU64,
    /// Where its vCPUs run and may run: read and written by the toolstack's domctls.
    pub placement: Mutex<Placement>,
    /// Made by the toolstack (createdomain) rather than at boot: its vCPUs exist once
    /// XEN_DOMCTL_max_vcpus made them, and stay down until the toolstack gives them a context.
    pub by_toolstack: bool,
    /// XEN_DOMCTL_max_vcpus made its vCPUs (always true for a domain built at boot).
    vcpus_made: AtomicBool,
    /// Register width the toolstack set (XEN_DOMCTL_set_address_size): 32 or 64.
    address_size: AtomicU8,
    /// The register state the toolstack gave each vCPU to start with (setvcpucontext), kept
    /// until the vCPU starts. Empty for a domain built at boot.
    pub start_context: Mutex<alloc::vec::Vec<Option<guest_abi::toolstack::VcpuGuestContext>>>,
    /// Bytes of stage-2 table pool the toolstack asked for (XEN_DOMCTL_set_paging_mempool_size;
    /// reported back, the tables themselves come from the frame pool).
    paging_pool: AtomicU64,
    /// A toolstack-made domain's vCPUs were started (the first unpause that left it running).
    started: AtomicBool,
    /// The toolstack destroys it: its vCPUs leave their CPUs at their next exit and do not run
    /// again.
    dying: AtomicBool,
    /// Bit n: vCPU n asked to yield (SCHEDOP_yield) in the hypercall being handled; the
    /// hypercall's exit takes it.
    yields: AtomicU32,
    /// Its destroy is done (Xen's DOMDYING_dead): nothing of it runs or is held but the frames
    /// other domains still map, listed in [`Domain::remains`]; it stays in the table (its id
    /// taken) until they are unmapped.
    dead: AtomicBool,
    /// Scheduler ticks its vCPUs ran, counted as the destroy took them out of the scheduler
    /// (what getdomaininfo reports of a dead domain).
    ran_ticks: AtomicU64,
    /// Frames [`Domain::remains`] holds (what getdomaininfo reports of a dead domain).
    held_pages: AtomicU64,
    /// A dead domain's frames still mapped by other domains, and by whom. Taken with no other
    /// lock held; under it, another domain's grant table or p2m (read), one at a time.
    pub remains: Mutex<Option<remains::Remains>>,
}

/// Each vCPU's physical CPU and affinities, the domain's NUMA node affinity and handle, as the
/// toolstack sets and reads them. Every vCPU runs on a CPU of its own and never moves: the
/// affinities are kept and reported, as Xen keeps them, but do not move a vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The physical CPU each vCPU runs on.
    pub cpu: [u32; vcpu::MAX_VCPUS],
    /// Hard affinity per vCPU (bit n: CPU n).
    pub hard: [u64; vcpu::MAX_VCPUS],
    /// Soft affinity per vCPU.
    pub soft: [u64; vcpu::MAX_VCPUS],
    /// NUMA node affinity (bit n: node n).
    pub nodes: u64,
    /// The domain's handle (a UUID the toolstack chooses).
    pub handle: [u8; 16],
}

impl Placement {
    /// vCPU n on CPU `first_cpu + n`, every affinity "all".
    pub const fn new(first_cpu: u32) -> Self {
        let mut cpu = [0; vcpu::MAX_VCPUS];
        let mut i = 0;
        while i < vcpu::MAX_VCPUS {
            cpu[i] = first_cpu + i as u32;
            i += 1;
        }
        Self { cpu, hard: [u64::MAX; vcpu::MAX_VCPUS], soft: [u64::MAX; vcpu::MAX_VCPUS], nodes: u64::MAX, handle: [0; 16] }
    }
}

/// Set or clear bit `vcpu` of a per-vCPU bit set (vCPUs beyond 31 have no bit).
fn set_vcpu_bit(bits: &AtomicU32, vcpu: u32, on: bool) {
    if vcpu < 32 {
        if on {
            bits.fetch_or(1 << vcpu, Ordering::AcqRel);
        } else {
            bits.fetch_and(!(1 << vcpu), Ordering::AcqRel);
        }
    }
}

/// Bit `vcpu` of a per-vCPU bit set.
fn vcpu_bit(bits: &AtomicU32, vcpu: u32) -> bool {
    vcpu < 32 && bits.load(Ordering::Acquire) & (1 << vcpu) != 0
}

impl Domain {
    pub fn new(id: DomId, is_hardware: bool, direct_mapped: bool, ram: RamBanks) -> Self {
        let ram_total = ram.total();
        Self {
            mmio: MmioBus::default(),
            id,
            is_hardware,
            direct_mapped,
            ram: if ram.as_slice().is_empty() { crate::sync::Once::new() } else { crate::sync::Once::initialized(ram) },
            max_vcpus: 1,
            callback_ppi: 16,
            p2m: RwLock::new(None),
            grants: Mutex::new(Default::default()),
            evtchn: Mutex::new(Default::default()),
            upcalls: AtomicU32::new(0),
            shutdown: AtomicU8::new(0),
            faults_logged: AtomicU32::new(0),
            vm_assist: AtomicU64::new(0),
            given_back: AtomicU64::new(0),
            vcpus_off: AtomicU32::new(0),
            shutdown_code: AtomicU32::new(u32::MAX),
            vcpu_off_ns: [const { AtomicU64::new(0) }; vcpu::MAX_VCPUS],
            controller_pauses: AtomicU32::new(0),
            waits_paused: AtomicU32::new(0),
            max_pages: AtomicU64::new(ram_total >> 12),
            placement: Mutex::new(Placement::new(0)),
            by_toolstack: false,
            vcpus_made: AtomicBool::new(true),
            address_size: AtomicU8::new(64),
            paging_pool: AtomicU64::new(0),
            start_context: Mutex::new(alloc::vec::Vec::new()),
            started: AtomicBool::new(false),
            dying: AtomicBool::new(false),
            yields: AtomicU32::new(0),
            dead: AtomicBool::new(false),
            held_pages: AtomicU64::new(0),
            ran_ticks: AtomicU64::new(0),
            remains: Mutex::new(None),
        }
    }

    /// A domain as the toolstack's createdomain makes it: no RAM, `max_vcpus` vCPUs not made
    /// yet (and down once made), paused by the controller until it unpauses it.
    pub fn new_by_toolstack(id: DomId, max_vcpus: u32, handle: [u8; 16]) -> Self {
        let mut d = Self::new(id, false, false, RamBanks::default());
        d.max_vcpus = max_vcpus;
        d.by_toolstack = true;
        d.vcpus_made = AtomicBool::new(false);
        // 32-bit until the toolstack sets the address size (Xen's default for a new domain).
        d.address_size = AtomicU8::new(32);
        d.vcpus_off = AtomicU32::new(u32::MAX);
        d.controller_pauses = AtomicU32::new(1);
        d.callback_ppi = domu::GUEST_EVTCHN_PPI;
        d.placement.get_mut().handle = handle;
        *d.start_context.get_mut() = alloc::vec![None; max_vcpus.min(vcpu::MAX_VCPUS as u32) as usize];
        // Xen starts a new domain's p2m pool with 16 pages; xenith's stage-2 tables come from
        // the hypervisor's frame pool, and the figure is the toolstack's to read and set.
        d.paging_pool = AtomicU64::new(16 * 4096);
        d
    }

    /// Whether its vCPUs run or ran: always for a domain built at boot; for one the toolstack
    /// made, once its first unpause started them.
    pub fn started(&self) -> bool {
        !self.by_toolstack || self.started.load(Ordering::Acquire)
    }

    /// Mark a toolstack-made domain's vCPUs started; `false` if they were already.
    pub fn mark_started(&self) -> bool {
        !self.started.swap(true, Ordering::AcqRel)
    }

    /// Whether the toolstack is destroying it (its vCPUs must leave their CPUs).
    #[inline]
    pub fn dying(&self) -> bool {
        self.dying.load(Ordering::Acquire)
    }

    pub fn set_dying(&self) {
        self.dying.store(true, Ordering::Release);
    }

    /// vCPU `vcpu` yields (SCHEDOP_yield): its CPU's next scheduling point comes once the
    /// hypercall returns.
    pub fn request_yield(&self, vcpu: u32) {
        if vcpu < 32 {
            self.yields.fetch_or(1 << vcpu, Ordering::Relaxed);
        }
    }

    /// Whether vCPU `vcpu` asked to yield since the last call (the request is taken). One
    /// load while no vCPU of the domain asked.
    #[inline(always)]
    pub fn take_yield(&self, vcpu: u32) -> bool {
        self.yields.load(Ordering::Relaxed) != 0 && self.take_yield_slow(vcpu)
    }

    #[cold]
    #[inline(never)]
    fn take_yield_slow(&self, vcpu: u32) -> bool {
        let bit = 1u32.checked_shl(vcpu).unwrap_or(0);
        self.yields.fetch_and(!bit, Ordering::Relaxed) & bit != 0
    }

    /// Whether its destroy is done and only frames other domains map are left of it.
    #[inline]
    pub fn dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    /// Its destroy is done; `held` frames are still mapped elsewhere.
    pub fn set_dead(&self, held: u64) {
        self.held_pages.store(held, Ordering::Relaxed);
        self.dead.store(true, Ordering::Release);
    }

    /// A vCPU that ran `ticks` leaves the scheduler for good (the domain is destroyed).
    pub fn note_ran(&self, ticks: u64) {
        self.ran_ticks.fetch_add(ticks, Ordering::Relaxed);
    }

    /// Ticks its vCPUs ran, as [`Domain::note_ran`] counted them.
    pub fn ran_ticks(&self) -> u64 {
        self.ran_ticks.load(Ordering::Relaxed)
    }

    /// Frames of a dead domain still mapped elsewhere.
    pub fn set_held_pages(&self, held: u64) {
        self.held_pages.store(held, Ordering::Relaxed);
    }

    /// PSCI CPU_ON's claim on vCPU `vcpu`, which is off: it is up from now on. `false` when it
    /// is up already (or does not exist), so that of two CPU_ONs racing one starts it.
    pub fn claim_vcpu_on(&self, vcpu: u32) -> bool {
        vcpu < 32 && vcpu < self.max_vcpus && self.vcpus_off.fetch_and(!(1 << vcpu), Ordering::AcqRel) & (1 << vcpu) != 0
    }

    /// Whether its vCPUs exist (XEN_DOMCTL_max_vcpus made them, or it was built at boot).
    pub fn vcpus_made(&self) -> bool {
        self.vcpus_made.load(Ordering::Acquire)
    }

    /// XEN_DOMCTL_max_vcpus: make the vCPUs (they stay down).
    pub fn make_vcpus(&self) {
        self.vcpus_made.store(true, Ordering::Release);
    }

    /// The register width the toolstack chose (64 unless it said 32).
    pub fn address_size(&self) -> u8 {
        self.address_size.load(Ordering::Relaxed)
    }

    pub fn set_address_size(&self, bits: u8) {
        self.address_size.store(bits, Ordering::Relaxed);
    }

    /// Bytes of stage-2 table pool the toolstack asked for.
    pub fn paging_pool(&self) -> u64 {
        self.paging_pool.load(Ordering::Relaxed)
    }

    pub fn set_paging_pool(&self, bytes: u64) {
        self.paging_pool.store(bytes, Ordering::Relaxed);
    }

    /// Pause the domain for the toolstack: counted, at most 255 deep (Xen's limit).
    pub fn controller_pause(&self) -> Result<(), ()> {
        self.controller_pauses.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < 255).then_some(n + 1)).map(|_| ()).map_err(|_| ())
    }

    /// Undo one [`Domain::controller_pause`]; `Err` when none is in force.
    pub fn controller_unpause(&self) -> Result<(), ()> {
        self.controller_pauses.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).map(|_| ()).map_err(|_| ())
    }

    /// Whether the toolstack has the domain paused.
    #[inline]
    pub fn paused(&self) -> bool {
        self.controller_pauses.load(Ordering::Acquire) != 0
    }

    /// vCPU `vcpu` (on a CPU of its own) waits paused on its CPU (`true`) or left that wait.
    pub fn set_waits_paused(&self, vcpu: u32, waits: bool) {
        set_vcpu_bit(&self.waits_paused, vcpu, waits);
    }

    /// Whether vCPU `vcpu` waits paused on a CPU of its own (see [`Domain::set_waits_paused`]).
    pub fn waits_paused(&self, vcpu: u32) -> bool {
        vcpu_bit(&self.waits_paused, vcpu)
    }

    /// Set the pages the domain may hold (XEN_DOMCTL_max_mem).
    pub fn set_max_pages(&self, pages: u64) {
        self.max_pages.store(pages, Ordering::Relaxed);
    }

    /// Its RAM banks (none yet for a toolstack-made domain whose memory was never populated).
    #[inline]
    pub fn ram(&self) -> &RamBanks {
        static NONE: RamBanks = RamBanks::new();
        self.ram.get().unwrap_or(&NONE)
    }

    /// Give a toolstack-made domain its RAM banks, all of it given back (not held) until
    /// populated. `Err(banks)` when it has RAM already.
    pub fn set_ram(&self, banks: RamBanks) -> Result<(), RamBanks> {
        let mut banks = Some(banks);
        self.ram.call_once(|| {
            let b = banks.take().unwrap_or_default();
            // Counted as given back before the banks are seen, so that no populate finds RAM
            // it could take that the count does not show.
            self.given_back.fetch_add(b.total() >> 12, Ordering::Relaxed);
            b
        });
        banks.map_or(Ok(()), Err)
    }

    /// Pages of RAM the domain was built with.
    pub fn ram_pages(&self) -> u64 {
        self.ram().total() >> 12
    }

    /// vCPU `vcpu` turned itself off (PSCI CPU_OFF) at `now_ns` (ns since boot): its CPU
    /// stops running it. The domain is not shut down by that, even when it was its last vCPU
    /// (as on Xen).
    pub fn set_vcpu_off(&self, vcpu: u32, now_ns: u64) {
        if let Some(t) = self.vcpu_off_ns.get(vcpu as usize) {
            let _ = t.compare_exchange(0, now_ns.max(1), Ordering::Relaxed, Ordering::Relaxed);
        }
        if vcpu < 32 {
            self.vcpus_off.fetch_or(1 << vcpu, Ordering::AcqRel);
        }
    }

    /// When vCPU `vcpu` turned itself off (ns since boot), if it did.
    pub fn vcpu_off_at(&self, vcpu: u32) -> Option<u64> {
        self.vcpu_off_ns.get(vcpu as usize).map(|t| t.load(Ordering::Relaxed)).filter(|&t| t != 0)
    }

    /// Record the shutdown code the toolstack sees, unless one was given before.
    pub fn set_shutdown_code(&self, code: u8) {
        let _ = self.shutdown_code.compare_exchange(u32::MAX, u32::from(code), Ordering::AcqRel, Ordering::Acquire);
    }

    /// The shutdown code (`u32::MAX`: none given).
    pub fn shutdown_code(&self) -> u32 {
        self.shutdown_code.load(Ordering::Acquire)
    }

    /// Mark vCPU `vcpu` up (it comes up when the domain runs) or down, as the toolstack's
    /// setvcpucontext says (VGCF_online) for a vCPU that has not run.
    pub fn set_vcpu_down(&self, vcpu: u32, down: bool) {
        set_vcpu_bit(&self.vcpus_off, vcpu, down);
    }

    /// Whether vCPU `vcpu` turned itself off.
    pub fn vcpu_off(&self, vcpu: u32) -> bool {
        vcpu_bit(&self.vcpus_off, vcpu)
    }

    /// Pages the domain may hold (XENMEM_maximum_reservation): its RAM, unless the toolstack
    /// set another limit.
    pub fn max_pages(&self) -> u64 {
        self.max_pages.load(Ordering::Relaxed)
    }

    /// Pages the domain holds now (XENMEM_current_reservation).
    pub fn tot_pages(&self) -> u64 {
        if self.dead() {
            return self.held_pages.load(Ordering::Relaxed);
        }
        self.ram_pages().saturating_sub(self.given_back.load(Ordering::Relaxed))
    }

    /// `pages` of its RAM were given back (`true`) or taken again (`false`).
    pub fn note_reservation(&self, pages: u64, given_back: bool) {
        if given_back {
            self.given_back.fetch_add(pages, Ordering::Relaxed);
        } else {
            let _ = self.given_back.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(pages)));
        }
    }

    /// Pages given back and not taken again.
    pub fn given_back(&self) -> u64 {
        self.given_back.load(Ordering::Relaxed)
    }

    /// Host physical range `[pa, pa + len)` lies entirely inside one of this domain's RAM banks.
    pub fn owns_ram(&self, pa: u64, len: u64) -> bool {
        self.ram().contains_pa(pa, len)
    }

    /// Whether to log one more guest fault (the first 64, then every 1024th).
    pub fn should_log_fault(&self) -> bool {
        let n = self.faults_logged.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        n <= 64 || n % 1024 == 0
    }

    /// Work on the event channels under their lock; the upcalls the work raised (bits of
    /// `EventChannels::upcall_pending`) are handed to the vGIC's [`Domain::take_upcalls`].
    pub fn with_evtchn<R>(&self, f: impl FnOnce(&mut evtchn::EventChannels) -> R) -> R {
        let mut e = self.evtchn.lock();
        let r = f(&mut e);
        let raised = core::mem::take(&mut e.upcall_pending);
        drop(e);
        if raised != 0 {
            self.upcalls.fetch_or(raised, Ordering::Release);
            if self.id < 32 {
                WITH_UPCALLS.fetch_or(1 << self.id, Ordering::Release);
            }
        }
        r
    }

    /// Whether some vCPU has an upcall waiting (one load: every hypercall exit asks).
    #[inline]
    pub fn has_upcalls(&self) -> bool {
        self.upcalls.load(Ordering::Relaxed) != 0
    }

    /// The vCPUs (bit n) with an upcall to inject; they are the caller's from now on.
    pub fn take_upcalls(&self) -> u32 {
        self.upcalls.swap(0, Ordering::Acquire)
    }

    /// Why the domain stopped, if it did.
    #[inline]
    pub fn shutdown(&self) -> Option<ShutdownReason> {
        match self.shutdown.load(Ordering::Acquire) {
            0 => None,
            c => ShutdownReason::from_code(u32::from(c) - 1),
        }
    }

    /// Record that the domain stops (the first reason stays, as Xen keeps it).
    pub fn set_shutdown(&self, reason: ShutdownReason) {
        self.set_shutdown_code(reason as u8);
        let _ = self.shutdown.compare_exchange(0, reason as u8 + 1, Ordering::AcqRel, Ordering::Acquire);
    }

    pub fn vm_assist(&self) -> u64 {
        self.vm_assist.load(Ordering::Relaxed)
    }

    pub fn set_vm_assist(&self, bit: u32, on: bool) {
        if on {
            self.vm_assist.fetch_or(1 << bit, Ordering::Relaxed);
        } else {
            self.vm_assist.fetch_and(!(1 << bit), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owns_ram_is_exact_and_overflow_safe() {
        let mut ram = RamBanks::default();
        assert!(ram.push(RamBank { ipa: 0x4000_0000, pa: 0x4000_0000, size: 0x1000_0000 }));
        let d = Domain::new(0, true, true, ram);
        assert!(d.owns_ram(0x4000_0000, 0x1000));
        assert!(d.owns_ram(0x4fff_f000, 0x1000));
        assert!(!d.owns_ram(0x4fff_f000, 0x1001));
        assert!(!d.owns_ram(0x3fff_ffff, 2));
        assert!(!d.owns_ram(u64::MAX, 2));
    }
}

#[cfg(test)]
mod bank_tests {
    use super::*;
    #[test]
    fn bank_set_is_bounded() {
        let mut r = RamBanks::default();
        for i in 0..MAX_RAM_BANKS as u64 {
            assert!(r.push(RamBank { ipa: i << 30, pa: i << 30, size: 1 << 20 }));
        }
        assert!(!r.push(RamBank::default()));
        assert_eq!(r.total(), (MAX_RAM_BANKS as u64) << 20);
    }
}
