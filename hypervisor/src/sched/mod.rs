//! Which vCPU runs on which physical CPU, and when: the scheduler's state machine, as pure
//! logic over counter times (the architecture reads the counter, programs its timer and
//! switches register state; it never decides).
//!
//! Every vCPU has a home CPU (its run queue) and a state: running on a CPU, runnable (queued
//! on its home), blocked (it executed WFI with nothing pending, or waits for an event) or off
//! (not started, powered off, paused). Two policies, chosen with Xen's `sched=`:
//!
//! - `null` (the default): one vCPU per CPU. A vCPU is placed on a CPU nobody else has and
//!   never leaves it; WFI stays native (not trapped) and nothing here runs on the trap path.
//! - `credit`: Xen's credit policy. vCPUs may share a CPU. Each vCPU earns credit at every
//!   accounting period (one timeslice, 30 ms by default) in proportion to its domain's weight
//!   (256 by default; a domain's weight is split among its vCPUs) and spends it while running:
//!   with credit left at the last refill it is UNDER, without it OVER, and a vCPU that wakes
//!   from blocking while UNDER is BOOSTed until it next runs a tick. A CPU runs its
//!   highest-priority runnable vCPU, first-come first-served within a priority; a running vCPU
//!   is preempted at the end of its timeslice (checked on the tick, a third of the timeslice)
//!   by a vCPU of at least its priority, and by one of higher priority as soon as it has run
//!   the rate limit (1 ms by default; Xen's `sched_ratelimit_us`, so a vCPU that wakes often,
//!   such as dom0's console daemon, does not switch the CPU on every event). Credit is capped
//!   at one period's worth, so an idle vCPU does not hoard it. Credit is accounted per CPU: the
//!   CPU time of one CPU is shared among the vCPUs homed on it. With `balance`, a CPU with
//!   nothing of its own to run takes a runnable vCPU from another CPU's queue that its affinity
//!   allows (Xen's credit does so too).
//! - Caps (Xen credit's `cap`, percent of one CPU, 0 = none): a capped domain earns at most
//!   its cap's share of a period in all, split among its active vCPUs (those that run or want
//!   to, or ran since the last refill, as Xen's active list); what its weight would have
//!   given it beyond that goes to the uncapped vCPUs of the CPU. A vCPU of a capped domain
//!   whose credit is below minus its per-vCPU cap at a refill is parked: it does not run, even
//!   on an idle CPU, until a refill brings its credit back to zero or above (then it is
//!   unparked, without a boost). Parking is orthogonal to the state: a parked vCPU may block,
//!   wake, be stopped and started, and runs only once unparked; a running vCPU that is parked
//!   leaves its CPU at once, whatever the rate limit. A CPU with such a vCPU has a scheduling
//!   point at every refill and traps WFI, so idling is not charged as running.
//!
//! Wakeups: an interrupt or event for a vCPU calls [`Scheduler::wake`]: a blocked vCPU becomes
//! runnable and its CPU is told to look (the caller kicks it); a running one is marked so that
//! a WFI racing with the wakeup does not block. A blocked vCPU may carry a deadline (its
//! virtual timer's, saved when it was switched out): [`Scheduler::take_expired`] hands the
//! vCPUs whose deadline passed to the caller, which raises their timer interrupt and so wakes
//! them.
//!
//! One lock guards the whole state. It is taken only at scheduling points (the tick, a WFI, a
//! wakeup, a vCPU started or stopped) under `credit`; `null` never needs it on a trap path.

use crate::domain::vcpu::MAX_CPUS;
use crate::domain::DomId;
use crate::sync::SpinMutex;

pub use crate::dt::cmdline::SchedPolicy;

/// Most vCPUs the scheduler holds (all domains together).
pub const MAX_SCHED_VCPUS: usize = 4 * MAX_CPUS;
/// Xen's default domain weight.
pub const DEFAULT_WEIGHT: u32 = 256;
/// A cap of none (`xl sched-credit -c 0`).
pub const NO_CAP: u16 = 0;
/// Xen's weight bounds (`xl sched-credit -w`).
pub const MIN_WEIGHT: u32 = 1;
pub const MAX_WEIGHT: u32 = 65535;
/// Xen credit's default timeslice, and the ticks per timeslice.
pub const TIMESLICE_MS: u64 = 30;
pub const TICKS_PER_TSLICE: u64 = 3;
/// Xen's default tick (a third of the default timeslice), in milliseconds.
pub const TICK_MS: u64 = TIMESLICE_MS / TICKS_PER_TSLICE;
/// Xen's default rate limit (`sched_ratelimit_us`), in microseconds.
pub const RATELIMIT_US: u32 = 1000;
/// Xen's bounds on credit's timeslice (ms), the rate limit (us; 0 is none as well) and the
/// migration delay (us) (`XEN_SYSCTL_CSCHED_TSLICE_*`, `XEN_SYSCTL_SCHED_RATELIMIT_*`,
/// `XEN_SYSCTL_CSCHED_MGR_DLY_MAX_US`).
pub const TSLICE_MS_MIN: u32 = 1;
pub const TSLICE_MS_MAX: u32 = 1000;
pub const RATELIMIT_US_MIN: u32 = 100;
pub const RATELIMIT_US_MAX: u32 = 500_000;
pub const MIGR_DELAY_US_MAX: u32 = 100_000;

/// Credit's pool-wide parameters, as `XEN_SYSCTL_SCHEDOP_{get,put}info` carry them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreditParams {
    pub tslice_ms: u32,
    pub ratelimit_us: u32,
    /// Accepted and reported as Xen does; vCPUs here keep their home CPU, so nothing migrates.
    pub migr_delay_us: u32,
}

impl CreditParams {
    pub const DEFAULT: Self = Self { tslice_ms: TIMESLICE_MS as u32, ratelimit_us: RATELIMIT_US, migr_delay_us: 0 };

    /// Xen's check of a `putinfo`: every value within its bounds, the rate limit no longer
    /// than the timeslice.
    pub fn valid(&self) -> bool {
        (TSLICE_MS_MIN..=TSLICE_MS_MAX).contains(&self.tslice_ms)
            && (self.ratelimit_us == 0 || (RATELIMIT_US_MIN..=RATELIMIT_US_MAX).contains(&self.ratelimit_us))
            && u64::from(self.ratelimit_us) <= u64::from(self.tslice_ms) * 1000
            && self.migr_delay_us <= MIGR_DELAY_US_MAX
    }

    /// The boot command line's values as Xen takes them: a timeslice or rate limit out of
    /// bounds is the default, a rate limit longer than the timeslice is the timeslice.
    /// Returns what was changed, for a warning.
    pub fn from_cmdline(tslice_ms: Option<u32>, ratelimit_us: Option<u32>) -> (Self, Option<&'static str>) {
        let mut p = Self::DEFAULT;
        let mut warn = None;
        if let Some(t) = tslice_ms {
            if (TSLICE_MS_MIN..=TSLICE_MS_MAX).contains(&t) {
                p.tslice_ms = t;
            } else {
                warn = Some("sched_credit_tslice_ms out of range [1,1000]: the default 30 ms");
            }
        }
        if let Some(r) = ratelimit_us {
            if r == 0 || (RATELIMIT_US_MIN..=RATELIMIT_US_MAX).contains(&r) {
                p.ratelimit_us = r;
            } else {
                warn = Some("sched_ratelimit_us out of range [100,500000]: the default 1000 us");
            }
        }
        if u64::from(p.ratelimit_us) > u64::from(p.tslice_ms) * 1000 {
            p.ratelimit_us = p.tslice_ms * 1000;
            warn = Some("sched_ratelimit_us longer than the timeslice: the timeslice");
        }
        (p, warn)
    }
}

/// A vCPU: its domain and index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuRef {
    pub domain: DomId,
    pub vcpu: u32,
}

impl VcpuRef {
    pub const fn new(domain: DomId, vcpu: u32) -> Self {
        Self { domain, vcpu }
    }
}

/// A vCPU's scheduling state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Running on this CPU.
    Running(usize),
    /// Waiting in its home CPU's run queue.
    Runnable,
    /// Waiting for an interrupt (WFI) or an event.
    Blocked,
    /// Not started, powered off or paused.
    Off,
}

/// Credit priorities, higher first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Over,
    Under,
    Boost,
}

/// Why a vCPU could not be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaceError {
    /// Every CPU its affinity allows runs another vCPU (`null`), or it names no CPU there is.
    NoCpu,
    /// The scheduler holds [`MAX_SCHED_VCPUS`] already.
    Full,
    /// It is there already.
    Exists,
}

/// Credit parameters Xen's `putinfo` refuses (see [`CreditParams::valid`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadParams;

/// A weight outside Xen's bounds ([`MIN_WEIGHT`]..=[`MAX_WEIGHT`]), or a domain id beyond
/// the weight table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadWeight;

/// A domain id beyond the scheduler's per-domain table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadDomain;

/// What a CPU runs after a scheduling point: `prev` was running, `next` runs now (`None`:
/// nothing, the CPU waits for an interrupt). A switch when they differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub prev: Option<VcpuRef>,
    pub next: Option<VcpuRef>,
}

impl Decision {
    pub fn switches(&self) -> bool {
        self.prev != self.next
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    id: VcpuRef,
    state: State,
    home: usize,
    /// CPUs it may run on (bit n: CPU n).
    affinity: u64,
    /// Credit in counter ticks (may go negative).
    credit: i64,
    boost: bool,
    /// Counter ticks it ran since its boost began (the boost ends after one tick's worth, as
    /// Xen's credit ends it at the first tick that finds the vCPU running).
    boost_ran: u64,
    /// Out of credit at the last refill (OVER); priorities change only at refills, wakeups
    /// and ticks, as Xen's credit recomputes them at its accounting.
    over: bool,
    /// Over its domain's cap at a refill: not run until a refill brings its credit back.
    parked: bool,
    /// A wakeup came while it ran: its next WFI returns at once instead of blocking.
    woken: bool,
    /// Run-queue order within a priority (smaller first).
    seq: u64,
    /// Counter time it was switched in (or last accounted).
    since: u64,
    /// While blocked: when to wake it (its timer's deadline), if ever. Kept while it is off
    /// after [`Scheduler::stop_unless_running`] found it blocked.
    deadline: Option<u64>,
    /// Off (paused) while blocked, and no wakeup since: Xen's vCPU keeps its blocked flag
    /// while paused, until an event or its timer unblocks it.
    blocked_off: bool,
    /// Counter ticks it ran, up to its CPU's last scheduling point.
    ran: u64,
    /// `ran` at its CPU's last refill: it ran since then if they differ.
    ran_at_refill: u64,
}

#[derive(Clone, Copy, Debug)]
struct Cpu {
    current: Option<usize>,
    /// When the current vCPU's timeslice began.
    slice_start: u64,
    /// When this CPU's next credit refill is due.
    next_acct: u64,
}

struct Inner {
    policy: SchedPolicy,
    balance: bool,
    /// Counter ticks per millisecond.
    per_ms: u64,
    /// Credit's timeslice and rate limit, in counter ticks, and the values as set.
    tslice: u64,
    ratelimit: u64,
    params: CreditParams,
    cpus: usize,
    slots: [Option<Entry>; MAX_SCHED_VCPUS],
    cpu: [Cpu; MAX_CPUS],
    /// Domain weights (by domain id, 0 = default); ids beyond the table use the default.
    weights: [u16; 64],
    /// Domain caps (by domain id; percent of one CPU, [`NO_CAP`] = none).
    caps: [u16; 64],
    seq: u64,
}

/// The machine's scheduler (the one the architecture layers drive; tests make their own).
pub static SCHED: Scheduler = Scheduler::new();

/// One scheduler for the machine.
pub struct Scheduler {
    inner: SpinMutex<Inner>,
}

impl Default for Scheduler {
    fn default() -> Self {
        Self::new()
    }
}

impl Scheduler {
    pub const fn new() -> Self {
        Self {
            inner: SpinMutex::new(Inner {
                policy: SchedPolicy::Null,
                balance: false,
                per_ms: 1,
                tslice: TIMESLICE_MS,
                ratelimit: 1,
                params: CreditParams::DEFAULT,
                cpus: 1,
                slots: [None; MAX_SCHED_VCPUS],
                cpu: [Cpu { current: None, slice_start: 0, next_acct: 0 }; MAX_CPUS],
                weights: [0; 64],
                caps: [NO_CAP; 64],
                seq: 0,
            }),
        }
    }

    /// At boot, before any vCPU is added: the policy, the counter's frequency (Hz), the
    /// number of CPUs, and whether an idle CPU may take another CPU's runnable vCPU.
    pub fn configure(&self, policy: SchedPolicy, counter_hz: u64, cpus: usize, balance: bool) {
        let mut s = self.inner.lock();
        s.policy = policy;
        s.per_ms = (counter_hz / 1000).max(1);
        let p = s.params;
        s.set_params(p);
        s.cpus = cpus.clamp(1, MAX_CPUS);
        s.balance = balance && policy == SchedPolicy::Credit;
    }

    pub fn policy(&self) -> SchedPolicy {
        self.inner.lock().policy
    }

    /// Counter ticks of one timeslice and of one tick.
    pub fn timeslice(&self) -> u64 {
        self.inner.lock().tslice
    }
    pub fn tick_period(&self) -> u64 {
        self.inner.lock().tick()
    }

    /// Credit's timeslice, rate limit and migration delay.
    pub fn params(&self) -> CreditParams {
        self.inner.lock().params
    }

    /// Set credit's parameters (`putinfo`, the boot command line); refused as Xen refuses
    /// them, changing nothing.
    pub fn set_params(&self, p: CreditParams) -> Result<(), BadParams> {
        if !p.valid() {
            return Err(BadParams);
        }
        self.inner.lock().set_params(p);
        Ok(())
    }

    /// Add vCPU `v` (off) with home `cpu` if given, else the CPU its `affinity` allows that
    /// holds the fewest vCPUs (`null`: one holding none). Returns its home.
    pub fn add(&self, v: VcpuRef, cpu: Option<usize>, affinity: u64) -> Result<usize, PlaceError> {
        let mut s = self.inner.lock();
        if s.find(v).is_some() {
            return Err(PlaceError::Exists);
        }
        let free = s.slots.iter().position(Option::is_none).ok_or(PlaceError::Full)?;
        let load = |s: &Inner, c: usize| s.slots.iter().flatten().filter(|e| e.home == c).count();
        let allowed = |c: usize| c < s.cpus && affinity & (1 << c) != 0;
        let home = match cpu {
            Some(c) if !allowed(c) => return Err(PlaceError::NoCpu),
            Some(c) if s.policy == SchedPolicy::Null && load(&s, c) > 0 => return Err(PlaceError::NoCpu),
            Some(c) => c,
            None => {
                let best = (0..s.cpus).filter(|&c| allowed(c)).min_by_key(|&c| load(&s, c)).ok_or(PlaceError::NoCpu)?;
                if s.policy == SchedPolicy::Null && load(&s, best) > 0 {
                    return Err(PlaceError::NoCpu);
                }
                best
            }
        };
        s.slots[free] = Some(Entry {
            id: v,
            state: State::Off,
            home,
            affinity,
            credit: 0,
            boost: false,
            boost_ran: 0,
            over: false,
            parked: false,
            woken: false,
            seq: 0,
            since: 0,
            deadline: None,
            blocked_off: false,
            ran: 0,
            ran_at_refill: 0,
        });
        Ok(home)
    }

    /// Remove vCPU `v` (its domain is gone). Returns the CPU that ran it, which must switch.
    pub fn remove(&self, v: VcpuRef) -> Option<usize> {
        let mut s = self.inner.lock();
        let i = s.find(v)?;
        let ran = s.unrun(i);
        s.slots[i] = None;
        ran
    }

    /// Remove vCPU `v` unless it is on a CPU now: `Ok` once it is not here (its registers are
    /// nowhere in use), `Err(cpu)` while `cpu` runs it (that CPU must reach a scheduling point
    /// and stop it first).
    pub fn remove_unless_running(&self, v: VcpuRef) -> Result<(), usize> {
        let mut s = self.inner.lock();
        let Some(i) = s.find(v) else { return Ok(()) };
        if let Some(State::Running(c)) = s.slots[i].map(|e| e.state) {
            return Err(c);
        }
        s.slots[i] = None;
        Ok(())
    }

    /// Turn vCPU `v` off unless it is on a CPU now (its registers are saved then): `Err(cpu)`
    /// while `cpu` runs it. One that was blocked is still reported blocked while off
    /// ([`Scheduler::blocked_while_off`]).
    pub fn stop_unless_running(&self, v: VcpuRef) -> Result<(), usize> {
        let mut s = self.inner.lock();
        let Some(i) = s.find(v) else { return Ok(()) };
        let Some(e) = s.slots[i] else { return Ok(()) };
        match e.state {
            State::Running(c) => return Err(c),
            State::Off => return Ok(()),
            _ => {}
        }
        s.unrun(i);
        if let Some(off) = s.slots[i].as_mut().filter(|_| e.state == State::Blocked) {
            off.blocked_off = true;
            off.deadline = e.deadline;
        }
        Ok(())
    }

    /// Whether vCPU `v`, off, was blocked when it was turned off and nothing has woken it
    /// since: no wakeup, and its deadline (if any) is after `now`.
    pub fn blocked_while_off(&self, v: VcpuRef, now: u64) -> bool {
        let s = self.inner.lock();
        s.find(v).and_then(|i| s.slots[i]).is_some_and(|e| e.state == State::Off && e.blocked_off && e.deadline.is_none_or(|d| d > now))
    }

    /// The slot vCPU `v` holds (`0..MAX_SCHED_VCPUS`, stable while it is here): where the
    /// architecture keeps its saved registers.
    pub fn slot(&self, v: VcpuRef) -> Option<usize> {
        self.inner.lock().find(v)
    }

    /// The state of vCPU `v` (`None`: not here).
    pub fn state(&self, v: VcpuRef) -> Option<State> {
        let s = self.inner.lock();
        s.find(v).and_then(|i| s.slots[i]).map(|e| e.state)
    }

    /// The CPU to kick about `v`: where it runs, else its home.
    pub fn cpu_of(&self, v: VcpuRef) -> Option<usize> {
        let s = self.inner.lock();
        s.find(v).and_then(|i| s.slots[i]).map(|e| if let State::Running(c) = e.state { c } else { e.home })
    }

    /// What CPU `cpu` runs.
    pub fn current(&self, cpu: usize) -> Option<VcpuRef> {
        let s = self.inner.lock();
        s.cpu.get(cpu)?.current.and_then(|i| s.slots[i]).map(|e| e.id)
    }

    /// Whether CPU `cpu` has more than one vCPU that is not off homed on it, or one that is
    /// capped or parked (so its vCPUs' WFI must trap: a vCPU waiting in WFI on its CPU would
    /// be charged as running). Always false under `null`.
    pub fn shares_cpu(&self, cpu: usize) -> bool {
        let s = self.inner.lock();
        let mut homed = s.slots.iter().flatten().filter(|e| e.home == cpu && e.state != State::Off);
        s.policy == SchedPolicy::Credit && (s.balance || homed.clone().count() > 1 || homed.any(|e| e.parked || s.cap(e.id.domain) != NO_CAP))
    }

    /// Set domain `d`'s weight (Xen's bounds).
    pub fn set_weight(&self, d: DomId, weight: u32) -> Result<(), BadWeight> {
        if !(MIN_WEIGHT..=MAX_WEIGHT).contains(&weight) {
            return Err(BadWeight);
        }
        let mut s = self.inner.lock();
        let slot = s.weights.get_mut(usize::from(d)).ok_or(BadWeight)?;
        *slot = weight as u16;
        Ok(())
    }

    pub fn weight(&self, d: DomId) -> u32 {
        self.inner.lock().weight(d)
    }

    /// Set domain `d`'s cap: percent of one CPU its vCPUs may use together, [`NO_CAP`] for
    /// none. Any value is taken, as Xen's credit takes it (a cap above the domain's vCPUs'
    /// worth limits nothing). Its vCPUs' CPUs see it at their next scheduling point.
    pub fn set_cap(&self, d: DomId, cap: u16) -> Result<(), BadDomain> {
        let mut s = self.inner.lock();
        *s.caps.get_mut(usize::from(d)).ok_or(BadDomain)? = cap;
        Ok(())
    }

    pub fn cap(&self, d: DomId) -> u16 {
        self.inner.lock().cap(d)
    }

    /// A new domain `d` (its id may be a destroyed domain's): Xen's defaults, weight 256 and
    /// no cap.
    pub fn new_domain(&self, d: DomId) {
        let mut s = self.inner.lock();
        if let Some(w) = s.weights.get_mut(usize::from(d)) {
            *w = 0;
        }
        if let Some(c) = s.caps.get_mut(usize::from(d)) {
            *c = NO_CAP;
        }
    }

    /// Whether vCPU `v` is parked over its domain's cap (`None`: not here).
    pub fn parked(&self, v: VcpuRef) -> Option<bool> {
        let s = self.inner.lock();
        s.find(v).and_then(|i| s.slots[i]).map(|e| e.parked)
    }

    /// vCPU `v` is started (powered on, unpaused): off -> runnable. Returns the CPU that must
    /// look at its run queue.
    pub fn start(&self, v: VcpuRef, now: u64) -> Option<usize> {
        let mut s = self.inner.lock();
        let i = s.find(v)?;
        let e = s.slots[i].as_mut()?;
        if e.state != State::Off {
            return None;
        }
        e.state = State::Runnable;
        e.since = now;
        (e.blocked_off, e.deadline) = (false, None);
        let home = e.home;
        s.enqueue(i);
        Some(home)
    }

    /// vCPU `v` stops (powered off, paused): it is off; returns the CPU running it, which
    /// must switch away.
    pub fn stop(&self, v: VcpuRef) -> Option<usize> {
        let mut s = self.inner.lock();
        let i = s.find(v)?;
        s.unrun(i)
    }

    /// An interrupt or event for `v`: a blocked vCPU becomes runnable (BOOSTed under credit
    /// if it has credit left). Returns the CPU to kick (where it runs, or its home), `None` for
    /// a vCPU that is off or unknown.
    pub fn wake(&self, v: VcpuRef, now: u64) -> Option<usize> {
        let mut s = self.inner.lock();
        let i = s.find(v)?;
        let credit = s.policy == SchedPolicy::Credit;
        let e = s.slots[i].as_mut()?;
        match e.state {
            State::Off => {
                // Paused while blocked: the wakeup unblocks it (it stays off).
                e.blocked_off = false;
                None
            }
            State::Running(c) => {
                e.woken = true;
                Some(c)
            }
            State::Runnable => Some(e.home),
            State::Blocked => {
                e.state = State::Runnable;
                e.deadline = None;
                // A parked vCPU wakes unboosted (it runs once unparked), as in Xen's credit.
                e.boost = credit && !e.over && !e.parked;
                e.boost_ran = 0;
                e.since = now;
                let home = e.home;
                s.enqueue(i);
                Some(home)
            }
        }
    }

    /// The vCPU running on `cpu` executed WFI with nothing pending (its timer, if armed, due
    /// at `deadline`): it blocks, unless a wakeup raced with it (then it runs on), and the CPU
    /// picks what runs next. Under `null` the vCPU keeps its CPU (its WFI is native there).
    pub fn block(&self, cpu: usize, now: u64, deadline: Option<u64>) -> Decision {
        let mut s = self.inner.lock();
        let Some(i) = s.cpu.get(cpu).and_then(|c| c.current) else { return s.schedule(cpu, now, false) };
        if s.policy == SchedPolicy::Credit {
            s.account(cpu, now);
            if let Some(e) = s.slots[i].as_mut() {
                // A wakeup raced the WFI: it runs on, unless the refill just parked it (then
                // it is runnable, and leaves the CPU below).
                if core::mem::take(&mut e.woken) {
                    let id = Some(e.id);
                    if !e.parked {
                        return Decision { prev: id, next: id };
                    }
                    return s.schedule(cpu, now, false);
                }
                e.state = State::Blocked;
                e.boost = false;
                e.deadline = deadline;
            }
        }
        s.schedule(cpu, now, false)
    }

    /// A scheduling point on `cpu` at `now` (its tick, a kick, its first run): account the
    /// running vCPU's time, refill credit when a period ended, and switch if the timeslice
    /// ended and another vCPU waits, or one of higher priority does.
    pub fn schedule(&self, cpu: usize, now: u64) -> Decision {
        self.inner.lock().schedule(cpu, now, false)
    }

    /// The running vCPU yields (SCHEDOP_yield, a trapped WFE): the best other runnable vCPU
    /// runs first, whatever its priority.
    pub fn yield_now(&self, cpu: usize, now: u64) -> Decision {
        self.inner.lock().schedule(cpu, now, true)
    }

    /// When `cpu` needs its next scheduling point: the next tick while vCPUs compete for it,
    /// the next refill while a capped or parked vCPU homed on it is runnable or running (the
    /// refill parks and unparks it; a CPU whose only runnable vCPU is parked idles until then),
    /// and the earliest deadline of the blocked vCPUs homed on it. `None`: nothing to wait for.
    pub fn next_event(&self, cpu: usize, now: u64) -> Option<u64> {
        let s = self.inner.lock();
        if s.policy == SchedPolicy::Null {
            return None;
        }
        let homed = |e: &&Entry| e.home == cpu;
        let deadline = s.slots.iter().flatten().filter(homed).filter(|e| e.state == State::Blocked).filter_map(|e| e.deadline).min();
        let Some(c) = s.cpu.get(cpu) else { return deadline };
        let running = c.current.and_then(|i| s.slots[i]);
        let waiting = s.slots.iter().flatten().filter(homed).filter(|e| e.state == State::Runnable && !e.parked).map(|e| e.priority()).max();
        let capped = s.slots.iter().flatten().filter(homed).any(|e| matches!(e.state, State::Running(_) | State::Runnable) && (e.parked || s.cap(e.id.domain) != NO_CAP));
        let refill = capped.then_some(c.next_acct.max(now));
        let tick = match (running, waiting) {
            // One of higher priority waits for the rate limit to pass.
            (Some(r), Some(w)) if w > r.priority() => Some((c.slice_start + s.ratelimit).max(now).min(now + s.tick())),
            (Some(_), Some(_)) => Some(now + s.tick()),
            _ => None,
        };
        [tick, refill, deadline].into_iter().flatten().min()
    }

    /// A blocked vCPU homed on `cpu` whose deadline is at or before `now` (its deadline is
    /// cleared; the caller raises its timer interrupt, whose wakeup makes it runnable).
    pub fn take_expired(&self, cpu: usize, now: u64) -> Option<VcpuRef> {
        let mut s = self.inner.lock();
        let e = s.slots.iter_mut().flatten().find(|e| e.home == cpu && e.state == State::Blocked && e.deadline.is_some_and(|d| d <= now))?;
        e.deadline = None;
        Some(e.id)
    }

    /// Counter ticks vCPU `v` ran (up to its CPU's last scheduling point; `None`: not here).
    pub fn run_time(&self, v: VcpuRef) -> Option<u64> {
        let s = self.inner.lock();
        s.find(v).and_then(|i| s.slots[i]).map(|e| e.ran)
    }

    /// vCPU `v`'s credit priority (tests and the toolstack's view).
    pub fn priority(&self, v: VcpuRef) -> Option<Priority> {
        let s = self.inner.lock();
        s.find(v).and_then(|i| s.slots[i]).map(|e| e.priority())
    }
}

impl Entry {
    fn priority(&self) -> Priority {
        if self.boost {
            Priority::Boost
        } else if self.over {
            Priority::Over
        } else {
            Priority::Under
        }
    }
}

impl Inner {
    fn find(&self, v: VcpuRef) -> Option<usize> {
        self.slots.iter().position(|e| e.is_some_and(|e| e.id == v))
    }

    fn tick(&self) -> u64 {
        (self.tslice / TICKS_PER_TSLICE).max(1)
    }

    fn set_params(&mut self, p: CreditParams) {
        self.params = p;
        self.tslice = self.per_ms * u64::from(p.tslice_ms);
        self.ratelimit = (self.per_ms * u64::from(p.ratelimit_us) / 1000).min(self.tslice);
    }

    fn weight(&self, d: DomId) -> u32 {
        match self.weights.get(usize::from(d)) {
            Some(&w) if w != 0 => u32::from(w),
            _ => DEFAULT_WEIGHT,
        }
    }

    fn cap(&self, d: DomId) -> u16 {
        self.caps.get(usize::from(d)).copied().unwrap_or(NO_CAP)
    }

    fn enqueue(&mut self, i: usize) {
        self.seq += 1;
        if let Some(e) = self.slots[i].as_mut() {
            e.seq = self.seq;
        }
    }

    /// Take slot `i` off whatever CPU runs it and turn it off; the CPU that ran it.
    fn unrun(&mut self, i: usize) -> Option<usize> {
        let e = self.slots[i].as_mut()?;
        let ran = if let State::Running(c) = e.state { Some(c) } else { None };
        e.state = State::Off;
        e.deadline = None;
        e.blocked_off = false;
        e.boost = false;
        e.woken = false;
        if let Some(c) = ran {
            if let Some(cpu) = self.cpu.get_mut(c) {
                if cpu.current == Some(i) {
                    cpu.current = None;
                }
            }
        }
        ran
    }

    /// Charge the running vCPU of `cpu` for its time up to `now`, and refill the credit of the
    /// vCPUs homed on `cpu` for every accounting period that ended.
    fn account(&mut self, cpu: usize, now: u64) {
        let tick = self.tick();
        if let Some(i) = self.cpu[cpu].current {
            if let Some(e) = self.slots[i].as_mut() {
                let ran = now.saturating_sub(e.since);
                e.credit = e.credit.saturating_sub(ran as i64);
                e.ran = e.ran.saturating_add(ran);
                e.since = now;
                // A boost lasts until the vCPU has run a tick in all (scheduling points
                // more often than the tick must not keep it boosted).
                e.boost_ran = e.boost_ran.saturating_add(ran);
                if e.boost_ran >= tick {
                    e.boost = false;
                }
            }
        }
        let period = self.tslice;
        if self.cpu[cpu].next_acct == 0 {
            self.cpu[cpu].next_acct = now + period;
            return;
        }
        while now >= self.cpu[cpu].next_acct {
            self.cpu[cpu].next_acct += period;
            self.refill(cpu, period);
        }
    }

    /// One period of CPU `cpu`'s time shared among the vCPUs homed on it that are not off, in
    /// proportion to their weight (a domain's weight split among its vCPUs that are not off),
    /// each capped at one period's credit. A capped domain's vCPU earns at most its share of
    /// the cap (Xen's: the cap's credit rounded up, split rounded up among the domain's active
    /// vCPUs: those running or runnable, or that ran since their CPU's last refill, as Xen's
    /// credit drops a vCPU that only earns from its active list), and what that keeps from it
    /// goes to the uncapped vCPUs by weight. Then Xen's parking: a capped vCPU below minus its
    /// share of the cap is parked, a parked one back at zero or above unparked.
    fn refill(&mut self, cpu: usize, period: u64) {
        let vcpus = |s: &Inner, d: DomId| s.slots.iter().flatten().filter(|o| o.id.domain == d && o.state != State::Off).count().max(1) as u64;
        let active = |s: &Inner, d: DomId| {
            let busy = |o: &&Entry| matches!(o.state, State::Running(_) | State::Runnable) || o.ran != o.ran_at_refill;
            s.slots.iter().flatten().filter(|o| o.id.domain == d && o.state != State::Off).filter(busy).count().max(1) as u64
        };
        let share = |s: &Inner, e: &Entry| u64::from(s.weight(e.id.domain)) * 1024 / vcpus(s, e.id.domain);
        let cap = |s: &Inner, e: &Entry| match s.cap(e.id.domain) {
            NO_CAP => None,
            c => Some((u64::from(c) * period).div_ceil(100).div_ceil(active(s, e.id.domain))),
        };
        let homed = |e: &Entry| e.home == cpu && e.state != State::Off;
        let total: u64 = self.slots.iter().flatten().filter(|e| homed(e)).map(|e| share(self, e)).sum();
        if total == 0 {
            return;
        }
        let fair = |s: &Inner, e: &Entry| (u128::from(period) * u128::from(share(s, e)) / u128::from(total)) as u64;
        // What the caps keep from the capped vCPUs, and the weight of those the caps do not limit.
        let (mut kept, mut free) = (0u64, 0u64);
        for e in self.slots.iter().flatten().filter(|e| homed(e)) {
            match cap(self, e) {
                Some(c) if c < fair(self, e) => kept += fair(self, e) - c,
                _ => free += share(self, e),
            }
        }
        for i in 0..self.slots.len() {
            let Some(e) = self.slots[i] else { continue };
            if !homed(&e) {
                continue;
            }
            let limit = cap(self, &e);
            let earn = match limit {
                Some(c) if c < fair(self, &e) => c,
                _ => fair(self, &e) + (u128::from(kept) * u128::from(share(self, &e)) / u128::from(free.max(1))) as u64,
            } as i64;
            let Some(e) = self.slots[i].as_mut() else { continue };
            e.credit += earn;
            e.over = e.credit < 0;
            if e.credit >= 0 {
                e.parked = false;
            } else if limit.is_some_and(|c| e.credit < -(c as i64)) {
                e.parked = true;
                e.boost = false;
            }
            e.credit = e.credit.clamp(-(4 * period as i64), period as i64);
        }
        for e in self.slots.iter_mut().flatten().filter(|e| homed(e)) {
            e.ran_at_refill = e.ran;
        }
    }

    /// The best runnable vCPU `cpu` may run: its own queue first, then (balancing, when it
    /// has none) another CPU's whose affinity allows `cpu`.
    fn best_runnable(&self, cpu: usize) -> Option<usize> {
        let runnable = |e: &Entry| e.state == State::Runnable && !e.parked;
        let key = |i: usize| self.slots[i].map(|e| (e.priority(), core::cmp::Reverse(e.seq)));
        let own = (0..self.slots.len()).filter(|&i| self.slots[i].is_some_and(|e| runnable(&e) && e.home == cpu)).max_by_key(|&i| key(i));
        if own.is_some() || !self.balance {
            return own;
        }
        (0..self.slots.len())
            .filter(|&i| self.slots[i].is_some_and(|e| runnable(&e) && e.affinity & (1 << cpu) != 0))
            .max_by_key(|&i| key(i))
    }

    fn schedule(&mut self, cpu: usize, now: u64, yielding: bool) -> Decision {
        if cpu >= self.cpus {
            return Decision { prev: None, next: None };
        }
        let cur = self.cpu[cpu].current;
        let prev = cur.and_then(|i| self.slots[i]).map(|e| e.id);
        if self.policy == SchedPolicy::Credit {
            self.account(cpu, now);
        }
        // A running vCPU the refill parked leaves at once (the rate limit keeps only a vCPU
        // that could go on running); it waits runnable for its unpark.
        if let Some(i) = cur.filter(|&i| self.slots[i].is_some_and(|e| e.state == State::Running(cpu) && e.parked)) {
            if let Some(e) = self.slots[i].as_mut() {
                e.state = State::Runnable;
            }
            self.enqueue(i);
        }
        let still = cur.filter(|&i| self.slots[i].is_some_and(|e| e.state == State::Running(cpu)));
        let best = self.best_runnable(cpu);
        let next = match (still, best) {
            (Some(c), Some(b)) => {
                let (pc, pb) = (self.slots[c].map(|e| e.priority()), self.slots[b].map(|e| e.priority()));
                let ran = now.saturating_sub(self.cpu[cpu].slice_start);
                let expired = ran >= self.tslice;
                // A vCPU that has run less than the rate limit keeps the CPU, unless it yields.
                let limited = ran < self.ratelimit;
                // A yielding vCPU goes behind the best runnable one even of a lower priority
                // (Xen's credit queues it behind one lower-priority vCPU): a guest that
                // yields in a loop waits for another vCPU of this CPU to make progress.
                let switch = self.policy == SchedPolicy::Credit && (yielding || (!limited && (pb > pc || (expired && pb >= pc))));
                if switch {
                    if let Some(e) = self.slots[c].as_mut() {
                        e.state = State::Runnable;
                    }
                    self.enqueue(c);
                    Some(b)
                } else {
                    Some(c)
                }
            }
            (Some(c), None) => Some(c),
            (None, b) => b,
        };
        if next != still {
            self.cpu[cpu].slice_start = now;
            if let Some(e) = next.and_then(|n| self.slots[n].as_mut()) {
                e.state = State::Running(cpu);
                e.since = now;
                e.woken = false;
                if self.balance {
                    e.home = cpu;
                }
            }
        }
        self.cpu[cpu].current = next;
        Decision { prev, next: next.and_then(|i| self.slots[i]).map(|e| e.id) }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
