use super::*;

/// A 1 GHz counter: one tick a nanosecond.
const HZ: u64 = 1_000_000_000;
const MS: u64 = HZ / 1000;

fn v(d: DomId, n: u32) -> VcpuRef {
    VcpuRef::new(d, n)
}

fn credit(cpus: usize) -> Scheduler {
    let s = Scheduler::new();
    s.configure(SchedPolicy::Credit, HZ, cpus, false);
    s
}

/// Two started vCPUs, `a` of domain `da` and `b` of domain `da + 1`, homed on CPU 0 of a
/// one-CPU credit scheduler; `a` runs.
fn two_on_one_cpu(da: DomId) -> (Scheduler, VcpuRef, VcpuRef) {
    let s = credit(1);
    let (a, b) = (v(da, 0), v(da + 1, 0));
    s.add(a, Some(0), 1).unwrap();
    s.add(b, Some(0), 1).unwrap();
    s.start(a, 0);
    s.start(b, 0);
    assert_eq!(s.schedule(0, 0).next, Some(a));
    (s, a, b)
}

/// Run CPU 0 of `s` for `ms` with a scheduling point every tick; the time each vCPU ran.
fn run_ticks(s: &Scheduler, vcpus: &[VcpuRef], from: u64, ms: u64) -> alloc::vec::Vec<u64> {
    let mut ran = alloc::vec![0u64; vcpus.len()];
    let mut now = from;
    let mut cur = s.schedule(0, now).next;
    while now < from + ms * MS {
        now += TICK_MS * MS;
        if let Some(c) = cur {
            ran[vcpus.iter().position(|&x| x == c).unwrap()] += TICK_MS * MS;
        }
        cur = s.schedule(0, now).next;
    }
    ran
}

#[test]
fn two_busy_vcpus_share_one_cpu_by_weight() {
    for (wa, wb) in [(256, 256), (512, 256), (256, 768)] {
        let s = credit(1);
        let (a, b) = (v(1, 0), v(2, 0));
        s.set_weight(1, wa).unwrap();
        s.set_weight(2, wb).unwrap();
        assert_eq!(s.add(a, None, u64::MAX), Ok(0));
        assert_eq!(s.add(b, None, u64::MAX), Ok(0));
        assert_eq!(s.start(a, 0), Some(0));
        assert_eq!(s.start(b, 0), Some(0));
        assert!(s.shares_cpu(0));
        let ran = run_ticks(&s, &[a, b], 0, 6000);
        let want = wa as f64 / wb as f64;
        let got = ran[0] as f64 / ran[1] as f64;
        assert!((got / want - 1.0).abs() < 0.1, "weights {wa}:{wb}: ran {ran:?} (ratio {got:.3}, want {want:.3})");
        assert_eq!(ran[0] + ran[1], 6000 * MS, "the CPU never idles while both are busy");
    }
}

#[test]
fn a_timeslice_is_30_ms_between_equals() {
    let (s, a, b) = two_on_one_cpu(1);
    // Ticks inside the slice keep it; at 30 ms b (same priority) takes over.
    assert_eq!(s.schedule(0, 10 * MS).next, Some(a));
    assert_eq!(s.schedule(0, 20 * MS).next, Some(a));
    let d = s.schedule(0, 30 * MS);
    assert_eq!((d.prev, d.next, d.switches()), (Some(a), Some(b), true));
    assert_eq!((s.state(a), s.state(b)), (Some(State::Runnable), Some(State::Running(0))));
    assert_eq!(s.next_event(0, 30 * MS), Some(40 * MS), "a tick while another vCPU waits");
    // a spent its 30 ms against a 15 ms share: OVER at the refill, b UNDER. b's yield lets
    // even the lower-priority a run; at the next scheduling point b, higher, takes over again.
    assert_eq!((s.priority(a), s.priority(b)), (Some(Priority::Over), Some(Priority::Under)));
    assert_eq!(s.yield_now(0, 35 * MS).next, Some(a));
    assert_eq!(s.schedule(0, 36 * MS).next, Some(b));
    // a ran that 1 ms too: still OVER after the refill at 60 ms, so b keeps the CPU past the
    // end of the slice it began at 36 ms, and a yield by b lets a run again.
    assert_eq!(s.schedule(0, 60 * MS).next, Some(b));
    assert_eq!((s.priority(a), s.priority(b)), (Some(Priority::Over), Some(Priority::Under)));
    assert_eq!(s.schedule(0, 66 * MS).next, Some(b));
    assert_eq!(s.yield_now(0, 67 * MS).next, Some(a));
}

#[test]
fn a_boost_ends_after_a_tick_of_running_however_often_it_traps() {
    let (s, a, b) = two_on_one_cpu(0);
    assert_eq!(s.block(0, 5 * MS, None).next, Some(b));
    assert_eq!(s.schedule(0, 100 * MS).next, Some(b));
    s.wake(a, 101 * MS);
    assert_eq!(s.schedule(0, 101 * MS).next, Some(a));
    // A scheduling point every millisecond (hypercalls, kicks): boosted for 10 ms of running.
    for t in 102..111 {
        assert_eq!(s.schedule(0, t * MS).next, Some(a));
        assert_eq!(s.priority(a), Some(Priority::Boost), "at {t} ms");
    }
    s.schedule(0, 111 * MS);
    assert_ne!(s.priority(a), Some(Priority::Boost));
}

#[test]
fn wfi_blocks_and_a_wakeup_resumes_with_a_boost() {
    let (s, a, b) = two_on_one_cpu(0);
    // a idles: b runs.
    let d = s.block(0, 5 * MS, None);
    assert_eq!((d.prev, d.next), (Some(a), Some(b)));
    assert_eq!(s.state(a), Some(State::Blocked));
    assert_eq!(s.next_event(0, 5 * MS), None, "b alone: no tick, no deadline");
    // b runs for a while and spends its credit; a's interrupt arrives.
    assert_eq!(s.schedule(0, 100 * MS).next, Some(b));
    assert_eq!(s.wake(a, 101 * MS), Some(0), "a's CPU is kicked");
    assert_eq!(s.priority(a), Some(Priority::Boost));
    // The kicked CPU preempts b at once for the boosted a, inside b's timeslice.
    let d = s.schedule(0, 101 * MS);
    assert_eq!((d.prev, d.next), (Some(b), Some(a)));
    // Both block: the CPU idles.
    let d = s.block(0, 102 * MS, None);
    assert_eq!(d.next, Some(b));
    let d = s.block(0, 103 * MS, None);
    assert_eq!((d.prev, d.next, d.switches()), (Some(b), None, true));
    assert_eq!(s.current(0), None);
    // An idle CPU takes a woken vCPU at its next scheduling point.
    assert_eq!(s.wake(b, 110 * MS), Some(0));
    assert_eq!(s.schedule(0, 110 * MS), Decision { prev: None, next: Some(b) });
    // A wakeup of an off or unknown vCPU does nothing.
    assert_eq!(s.wake(v(9, 0), 0), None);
}

#[test]
fn a_boosted_wakeup_waits_for_the_rate_limit_unless_the_running_vcpu_yields() {
    let us = MS / 1000;
    for ratelimit_us in [1000, 0] {
        let (s, a, b) = two_on_one_cpu(0);
        s.set_params(CreditParams { ratelimit_us, ..CreditParams::DEFAULT }).unwrap();
        // a blocks at 5 ms: b (UNDER, not boosted) runs from 5 ms.
        let d = s.block(0, 5 * MS, None);
        assert_eq!((d.prev, d.next), (Some(a), Some(b)));
        // a's event 300 us into b's run: a is boosted.
        assert_eq!(s.wake(a, 5 * MS + 300 * us), Some(0));
        assert_eq!((s.priority(a), s.priority(b)), (Some(Priority::Boost), Some(Priority::Under)));
        let d = s.schedule(0, 5 * MS + 300 * us);
        if ratelimit_us == 0 {
            assert_eq!(d.next, Some(a), "no rate limit: the boost preempts at once");
            continue;
        }
        // b keeps the CPU until it has run 1 ms; the CPU's next scheduling point is then.
        assert_eq!(d.next, Some(b));
        assert_eq!(s.next_event(0, 5 * MS + 300 * us), Some(6 * MS));
        let d = s.schedule(0, 6 * MS);
        assert_eq!((d.prev, d.next), (Some(b), Some(a)));
        // A yield is not held back: a, 10 us in, yields to b.
        assert_eq!(s.yield_now(0, 6 * MS + 10 * us).next, Some(b));
    }
}

#[test]
fn a_wakeup_racing_with_wfi_keeps_the_vcpu_running() {
    let (s, a, b) = two_on_one_cpu(0);
    // The interrupt lands after a's WFI trapped but before it blocks.
    assert_eq!(s.wake(a, MS), Some(0));
    let d = s.block(0, MS, None);
    assert_eq!((d.prev, d.next), (Some(a), Some(a)));
    assert_eq!(s.state(a), Some(State::Running(0)));
    // The next WFI with nothing new blocks.
    assert_eq!(s.block(0, 2 * MS, None).next, Some(b));
}

#[test]
fn a_blocked_vcpu_with_a_timer_deadline_is_handed_back_when_it_passes() {
    let (s, a, b) = two_on_one_cpu(0);
    assert_eq!(s.block(0, MS, Some(8 * MS)).next, Some(b));
    assert_eq!(s.next_event(0, MS), Some(8 * MS));
    assert_eq!(s.take_expired(0, 7 * MS), None);
    assert_eq!(s.take_expired(0, 8 * MS), Some(a));
    assert_eq!(s.take_expired(0, 9 * MS), None, "handed back once");
    // The caller raises a's timer interrupt: its wakeup.
    assert_eq!(s.wake(a, 8 * MS), Some(0));
    assert_eq!(s.schedule(0, 8 * MS).next, Some(a));
}

#[test]
fn a_vcpu_paused_while_blocked_stays_blocked_until_its_wakeup_or_deadline() {
    let (s, a, b) = two_on_one_cpu(0);
    assert_eq!(s.block(0, MS, Some(8 * MS)).next, Some(b));
    // The pause finds it blocked: off, still blocked until its deadline.
    assert_eq!(s.stop_unless_running(a), Ok(()));
    assert_eq!(s.state(a), Some(State::Off));
    assert!(s.blocked_while_off(a, 2 * MS));
    assert_eq!(s.stop_unless_running(a), Ok(()), "a pause's second look keeps it");
    assert!(s.blocked_while_off(a, 7 * MS));
    assert!(!s.blocked_while_off(a, 8 * MS), "its timer unblocked it");
    assert_eq!(s.next_event(0, 2 * MS), None, "an off vCPU's deadline wakes nothing");
    assert_eq!(s.take_expired(0, 9 * MS), None);
    // A wakeup while paused unblocks it; it stays off.
    let (s, a, b) = two_on_one_cpu(0);
    assert_eq!(s.block(0, MS, None).next, Some(b));
    s.stop_unless_running(a).unwrap();
    assert!(s.blocked_while_off(a, u64::MAX));
    assert_eq!(s.wake(a, 2 * MS), None);
    assert!(!s.blocked_while_off(a, 2 * MS));
    assert_eq!(s.state(a), Some(State::Off));
    // The unpause queues it; paused while runnable or running, it is not blocked.
    s.start(a, 3 * MS);
    assert!(!s.blocked_while_off(a, 3 * MS));
    s.stop_unless_running(a).unwrap();
    assert!(!s.blocked_while_off(a, 3 * MS));
    s.start(a, 4 * MS);
    let running = s.current(0).unwrap();
    s.stop(running);
    assert!(!s.blocked_while_off(running, 4 * MS));
}

#[test]
fn stopping_a_running_vcpu_frees_its_cpu() {
    let s = credit(2);
    let (a, b) = (v(0, 0), v(0, 1));
    assert_eq!(s.add(a, None, u64::MAX), Ok(0));
    assert_eq!(s.add(b, None, u64::MAX), Ok(1), "the emptier CPU");
    assert_eq!(s.add(a, None, u64::MAX), Err(PlaceError::Exists));
    assert_eq!(s.add(v(1, 0), Some(2), u64::MAX), Err(PlaceError::NoCpu), "no CPU 2");
    assert_eq!(s.add(v(1, 0), None, 0b100), Err(PlaceError::NoCpu), "affinity names no CPU there is");
    s.start(a, 0);
    s.start(b, 0);
    assert_eq!(s.schedule(0, 0).next, Some(a));
    assert_eq!(s.stop(a), Some(0));
    assert_eq!(s.state(a), Some(State::Off));
    assert_eq!(s.schedule(0, 1).next, None);
    assert_eq!(s.wake(a, 2), None, "an off vCPU stays off");
    assert_eq!(s.start(a, 3), Some(0));
    assert_eq!(s.schedule(0, 3).next, Some(a));
    assert_eq!(s.remove(a), Some(0));
    assert_eq!(s.state(a), None);
    assert!(s.set_weight(1, 0).is_err() && s.set_weight(1, 65536).is_err());
    assert!(s.set_weight(1, 65535).is_ok());
    assert_eq!((s.weight(1), s.weight(2)), (65535, DEFAULT_WEIGHT));
}

#[test]
fn null_keeps_one_vcpu_per_cpu() {
    let s = Scheduler::new();
    s.configure(SchedPolicy::Null, HZ, 3, true);
    assert_eq!(s.policy(), SchedPolicy::Null);
    // dom0's vCPU n on CPU n; a domU takes the free CPU; then no CPU is left.
    assert_eq!(s.add(v(0, 0), Some(0), u64::MAX), Ok(0));
    assert_eq!(s.add(v(0, 1), Some(1), u64::MAX), Ok(1));
    assert_eq!(s.add(v(1, 0), Some(1), u64::MAX), Err(PlaceError::NoCpu));
    assert_eq!(s.add(v(1, 0), None, u64::MAX), Ok(2));
    assert_eq!(s.add(v(2, 0), None, u64::MAX), Err(PlaceError::NoCpu));
    for (c, x) in [(0, v(0, 0)), (1, v(0, 1)), (2, v(1, 0))] {
        s.start(x, 0);
        assert_eq!(s.schedule(c, 0).next, Some(x));
        // WFI stays native: a block keeps the vCPU running, no tick, no WFI trap.
        assert_eq!(s.block(c, 5, Some(10)), Decision { prev: Some(x), next: Some(x) });
        assert_eq!(s.schedule(c, 100 * MS), Decision { prev: Some(x), next: Some(x) });
        assert_eq!(s.next_event(c, 0), None);
        assert!(!s.shares_cpu(c));
        assert_eq!(s.cpu_of(x), Some(c));
    }
}

/// Random operations on 3 CPUs and 7 vCPUs with balancing, caps set and removed now and then:
/// a vCPU runs on at most one CPU, each CPU's current vCPU is the one that says it runs there,
/// a running vCPU stays within its affinity and is never parked.
#[test]
fn a_vcpu_never_runs_on_two_cpus_at_once() {
    let s = Scheduler::new();
    s.configure(SchedPolicy::Credit, HZ, 3, true);
    let all: alloc::vec::Vec<VcpuRef> = (0..7).map(|i| v(i / 3, u32::from(i % 3))).collect();
    let affinity = |x: &VcpuRef| if x.domain == 2 { 0b110 } else { u64::MAX };
    for x in &all {
        s.add(*x, None, affinity(x)).unwrap();
        s.start(*x, 0);
    }
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut now = 0;
    for step in 0..20_000 {
        now += rnd(3 * MS);
        let cpu = rnd(3) as usize;
        let x = all[rnd(all.len() as u64) as usize];
        if step % 250 == 0 {
            s.set_cap(rnd(3) as DomId, [0, 10, 50, 150][rnd(4) as usize]).unwrap();
        }
        match rnd(7) {
            0 => drop(s.block(cpu, now, (rnd(2) == 0).then_some(now + rnd(20 * MS)))),
            1 => drop(s.wake(x, now)),
            2 => drop(s.stop(x)),
            3 => drop(s.start(x, now)),
            4 => drop(s.yield_now(cpu, now)),
            5 => {
                while let Some(e) = s.take_expired(cpu, now) {
                    s.wake(e, now);
                }
            }
            _ => drop(s.schedule(cpu, now)),
        }
        let running: alloc::vec::Vec<Option<VcpuRef>> = (0..3).map(|c| s.current(c)).collect();
        for c in 0..3 {
            if let Some(r) = running[c] {
                assert_eq!(s.state(r), Some(State::Running(c)), "step {step}: CPU {c}'s current");
                assert!(affinity(&r) & (1 << c) != 0, "step {step}: {r:?} outside its affinity");
                assert!(running.iter().enumerate().all(|(o, q)| o == c || *q != Some(r)), "step {step}: {r:?} on two CPUs");
                assert_eq!(s.parked(r), Some(false), "step {step}: {r:?} runs parked");
            }
        }
        for x in &all {
            if let Some(State::Running(c)) = s.state(*x) {
                assert_eq!(running[c], Some(*x), "step {step}: {x:?} says it runs on CPU {c}");
            }
        }
        // A CPU never idles while a vCPU it may run is runnable, after its scheduling point.
        if s.current(cpu).is_none() {
            let d = s.schedule(cpu, now);
            assert!(d.next.is_none() || d.prev.is_none());
        }
    }
}

#[test]
fn the_time_each_vcpu_ran_is_counted_and_two_removals_keep_one_off_its_cpu() {
    let (s, a, b) = two_on_one_cpu(10);
    let ran = run_ticks(&s, &[a, b], 0, 600);
    // Up to the last scheduling point: what run_ticks saw, less the slice still running.
    let (ta, tb) = (s.run_time(a).unwrap(), s.run_time(b).unwrap());
    assert!(ta + tb <= 600 * MS && ta + tb >= 600 * MS - TIMESLICE_MS * MS, "{ta} + {tb}");
    assert!(ta.abs_diff(ran[0]) <= TIMESLICE_MS * MS && tb.abs_diff(ran[1]) <= TIMESLICE_MS * MS);
    assert_eq!(s.run_time(v(99, 0)), None);
    // The one running is neither removed nor stopped by the "unless running" forms.
    let running = s.current(0).unwrap();
    let other = if running == a { b } else { a };
    assert_eq!(s.remove_unless_running(running), Err(0));
    assert_eq!(s.stop_unless_running(running), Err(0));
    assert_eq!(s.stop_unless_running(other), Ok(()));
    assert_eq!(s.state(other), Some(State::Off));
    assert_eq!(s.remove_unless_running(other), Ok(()));
    assert_eq!(s.state(other), None);
    assert_eq!(s.remove_unless_running(other), Ok(()), "gone already");
}

/// Run CPU `cpu` of `s` from `from` for `ms` with busy vCPUs (they never block), reaching a
/// scheduling point only where the scheduler asks for one (`next_event`, as the architecture
/// arms its timer, running or idle); the time each of `vcpus` ran.
fn run_events(s: &Scheduler, cpu: usize, vcpus: &[VcpuRef], from: u64, ms: u64) -> alloc::vec::Vec<u64> {
    let mut ran = alloc::vec![0u64; vcpus.len()];
    let end = from + ms * MS;
    let mut now = from;
    let mut cur = s.schedule(cpu, now).next;
    let mut points = 0;
    while now < end {
        let next = s.next_event(cpu, now).unwrap_or(end).min(end);
        assert!(next > now, "an event at {next} from {now}: no progress");
        if let Some(c) = cur {
            ran[vcpus.iter().position(|&x| x == c).unwrap()] += next - now;
        }
        now = next;
        cur = s.schedule(cpu, now).next;
        points += 1;
    }
    assert!(points <= ms, "{points} scheduling points in {ms} ms");
    ran
}

/// A one-CPU credit scheduler with vCPU 0 of domain 1, capped at `cap` and started.
fn capped_alone(cap: u16) -> (Scheduler, VcpuRef) {
    let s = credit(1);
    let a = v(1, 0);
    s.add(a, Some(0), 1).unwrap();
    s.set_cap(1, cap).unwrap();
    assert_eq!(s.cap(1), cap);
    s.start(a, 0);
    (s, a)
}

/// A two-CPU credit scheduler with domain 1's two vCPUs, one on each CPU, capped at `cap`
/// together and started.
fn capped_pair(cap: u16) -> (Scheduler, VcpuRef, VcpuRef) {
    let s = credit(2);
    let (a, b) = (v(1, 0), v(1, 1));
    s.add(a, Some(0), u64::MAX).unwrap();
    s.add(b, Some(1), u64::MAX).unwrap();
    s.set_cap(1, cap).unwrap();
    s.start(a, 0);
    s.start(b, 0);
    (s, a, b)
}

/// The share of `total` ms that `ran` is, in percent.
fn pct(ran: u64, total: u64) -> f64 {
    ran as f64 * 100.0 / (total * MS) as f64
}

#[test]
fn a_busy_capped_vcpu_alone_on_its_cpu_gets_its_cap() {
    for cap in [10u16, 25, 30, 50, 75] {
        let (s, a) = capped_alone(cap);
        assert!(s.shares_cpu(0), "a capped vCPU's WFI traps even alone");
        let ran = run_events(&s, 0, &[a], 0, 6000);
        let got = pct(ran[0], 6000);
        // With the cap ignored it would run all 6 s.
        assert!((got - f64::from(cap)).abs() < 2.0, "cap {cap}: ran {got:.2} %");
    }
}

#[test]
fn an_uncapped_vcpu_beside_a_capped_one_is_not_slowed() {
    // On the same CPU: the capped one gets its cap, the uncapped one all the rest (equal
    // weights would give each half), and the CPU never idles while the uncapped one is busy.
    let (s, a, b) = two_on_one_cpu(1);
    s.set_cap(1, 20).unwrap();
    let ran = run_events(&s, 0, &[a, b], 0, 6000);
    let (pa, pb) = (pct(ran[0], 6000), pct(ran[1], 6000));
    assert!((pa - 20.0).abs() < 3.0 && pb > 77.0, "capped {pa:.2} %, uncapped {pb:.2} %");
    assert_eq!(ran[0] + ran[1], 6000 * MS);
    // On another CPU: untouched.
    let s = credit(2);
    let (a, c) = (v(1, 0), v(2, 0));
    s.add(a, Some(0), u64::MAX).unwrap();
    s.add(c, Some(1), u64::MAX).unwrap();
    s.set_cap(1, 20).unwrap();
    s.start(a, 0);
    s.start(c, 0);
    assert!(!s.shares_cpu(1));
    assert_eq!(run_events(&s, 1, &[c], 0, 3000)[0], 3000 * MS);
}

#[test]
fn a_capped_domains_vcpus_share_its_cap() {
    // Cap 100 over 2 vCPUs on 2 CPUs: half a CPU each, one CPU in all.
    let (s, a, b) = capped_pair(100);
    for (cpu, x) in [(0, a), (1, b)] {
        let got = pct(run_events(&s, cpu, &[x], 0, 6000)[0], 6000);
        assert!((got - 50.0).abs() < 2.0, "{x:?}: {got:.2} %");
    }
}

#[test]
fn a_capped_domains_busy_vcpu_gets_the_whole_cap_while_its_other_vcpu_idles() {
    // Cap 60 over 2 vCPUs on 2 CPUs, one of them waiting in WFI all along: the busy one is the
    // domain's only active vCPU and gets all 60 %.
    let (s, a, b) = capped_pair(60);
    assert_eq!(s.schedule(1, 0).next, Some(b));
    assert_eq!(s.block(1, 0, None).next, None);
    let got = pct(run_events(&s, 0, &[a], 0, 6000)[0], 6000);
    assert!((got - 60.0).abs() < 2.0, "{got:.2} %");
}

#[test]
fn cap_zero_removes_the_limit() {
    let (s, a) = capped_alone(50);
    let ran = run_events(&s, 0, &[a], 0, 3000);
    assert!((pct(ran[0], 3000) - 50.0).abs() < 2.0);
    s.set_cap(1, NO_CAP).unwrap();
    // Unparked (if it is parked) by the next refills; then it runs all the time.
    let ran = run_events(&s, 0, &[a], 3000 * MS, 3000);
    assert!(pct(ran[0], 3000) > 97.0, "{:.2} %", pct(ran[0], 3000));
    assert!(!s.shares_cpu(0), "alone and uncapped: WFI native again");
    assert_eq!(s.next_event(0, 6000 * MS), None, "no refill to wait for");
}

#[test]
fn a_parked_vcpu_leaves_at_once_and_its_cpu_idles_until_the_refill_that_unparks_it() {
    let us = MS / 1000;
    let (s, a) = capped_alone(10);
    assert_eq!(s.schedule(0, 0).next, Some(a));
    assert_eq!(s.next_event(0, 0), Some(30 * MS), "the refill");
    // It runs 29.5 ms, waits in WFI, wakes (boosted: no refill has found it over yet) and is
    // back on the CPU 400 us before the refill.
    assert_eq!(s.block(0, 29_500 * us, None).next, None);
    s.wake(a, 29_600 * us);
    assert_eq!(s.priority(a), Some(Priority::Boost));
    assert_eq!(s.schedule(0, 29_600 * us).next, Some(a));
    // The refill parks it (-29.6 + 3 ms < -3 ms): it leaves though it ran less than the rate
    // limit, and the CPU idles until the next refill.
    let d = s.schedule(0, 30 * MS);
    assert_eq!((d.prev, d.next), (Some(a), None));
    assert_eq!((s.state(a), s.parked(a), s.priority(a)), (Some(State::Runnable), Some(true), Some(Priority::Over)));
    assert_eq!(s.next_event(0, 30 * MS), Some(60 * MS));
    // A wakeup, a yield, a stop and a start do not run it while parked.
    assert_eq!(s.wake(a, 31 * MS), Some(0));
    assert_eq!(s.yield_now(0, 31 * MS).next, None);
    s.stop(a);
    assert_eq!(s.next_event(0, 32 * MS), None, "off: nothing to wait for");
    assert_eq!(s.start(a, 32 * MS), Some(0));
    assert_eq!((s.schedule(0, 32 * MS).next, s.parked(a)), (None, Some(true)));
    // The refills bring its credit up 3 ms each: from -26.6 ms it is back at 0.4 ms at the
    // ninth, at 300 ms, and runs then, unboosted. Until then every scheduling point is a refill.
    let mut now = 32 * MS;
    loop {
        let next = s.next_event(0, now).unwrap();
        assert_eq!(next % (30 * MS), 0, "{next}: not a refill");
        now = next;
        if s.schedule(0, now).next == Some(a) {
            break;
        }
    }
    assert_eq!(now, 300 * MS);
    assert_eq!((s.parked(a), s.priority(a)), (Some(false), Some(Priority::Under)));
}

#[test]
fn a_parked_vcpu_blocks_and_wakes_parked_and_a_raced_wfi_does_not_keep_it_on() {
    let (s, a) = capped_alone(10);
    assert_eq!(s.schedule(0, 0).next, Some(a));
    // Its WFI at the refill that parks it, with a wakeup racing it: it leaves runnable.
    s.wake(a, 29 * MS);
    let d = s.block(0, 30 * MS, None);
    assert_eq!((d.prev, d.next), (Some(a), None));
    assert_eq!((s.state(a), s.parked(a)), (Some(State::Runnable), Some(true)));
    // Unparked later, it runs and blocks; a refill that finds it blocked over its cap parks it
    // blocked, and its wakeup leaves it parked and unboosted.
    let (s, a) = capped_alone(10);
    assert_eq!(s.schedule(0, 0).next, Some(a));
    assert_eq!(s.block(0, 29 * MS, Some(100 * MS)).next, None);
    assert_eq!(s.schedule(0, 30 * MS).next, None);
    assert_eq!((s.state(a), s.parked(a)), (Some(State::Blocked), Some(true)));
    assert_eq!(s.next_event(0, 30 * MS), Some(100 * MS), "only its timer: a blocked vCPU needs no refill");
    assert_eq!(s.take_expired(0, 100 * MS), Some(a));
    s.wake(a, 100 * MS);
    assert_eq!((s.state(a), s.parked(a), s.priority(a)), (Some(State::Runnable), Some(true), Some(Priority::Over)));
    assert_eq!(s.schedule(0, 100 * MS).next, None);
    assert_eq!(s.next_event(0, 100 * MS), Some(120 * MS));
}
