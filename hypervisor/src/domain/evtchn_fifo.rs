//! Xen's FIFO event-channel ABI for one domain: per-vCPU control blocks (a `ready` bitmap and
//! the head of one queue per priority) and event-array pages (one 32-bit event word per port:
//! PENDING, MASKED, LINKED, BUSY and the LINK to the next port) in the guest's own RAM.
//!
//! The hypervisor appends a pending, unmasked event to the tail of its vCPU's queue of its
//! priority; the guest consumes from the head and unlinks. The guest may change a LINKED word
//! concurrently (set or clear MASKED, clear PENDING, clear LINKED and LINK), so LINK is set
//! with a compare-and-swap that only succeeds while the tail is still LINKED, with BUSY set
//! after the first failure so that the guest does not unmask meanwhile (Xen's rules). Queue
//! tails are the hypervisor's own state, under the domain's event-channel lock.

use super::vcpu::MAX_VCPUS;
use alloc::vec::Vec;
use guest_abi::event_channel::*;
use platform::PhysMem;

/// Event-array pages a domain may add (enough words for 2^17 ports, as Xen).
pub const MAX_ARRAY_PAGES: usize = (1 << EVTCHN_FIFO_LINK_BITS) / EVTCHN_FIFO_WORDS_PER_PAGE as usize;

/// Queues per vCPU.
const QUEUES: usize = EVTCHN_FIFO_MAX_QUEUES;

/// What the hypervisor keeps per port.
#[derive(Clone, Copy, Debug)]
struct PortFifo {
    priority: u8,
    /// The queue (vCPU, priority) the port was last linked on: a port that moved leaves that
    /// queue's tail when it is linked on the new one.
    last_vcpu: u8,
    last_priority: u8,
    /// Made pending while its event word did not exist yet: raised when its page is added.
    pending: bool,
}

impl Default for PortFifo {
    fn default() -> Self {
        Self { priority: EVTCHN_FIFO_PRIORITY_DEFAULT, last_vcpu: 0, last_priority: 0, pending: false }
    }
}

/// A domain's FIFO event-channel state (present once it called EVTCHNOP_init_control).
#[derive(Debug, Default)]
pub struct Fifo {
    /// Host PA of each vCPU's control block.
    control: [Option<u64>; MAX_VCPUS],
    /// Per vCPU and priority, the port last linked on that queue (0: none).
    tail: [[u32; QUEUES]; MAX_VCPUS],
    /// Host PA of each event-array page, in port order.
    array: Vec<u64>,
    ports: Vec<PortFifo>,
}

/// Why a FIFO call failed (the hypercall layer turns it into Xen's errno).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FifoError {
    /// The vCPU already has a control block (-EINVAL).
    AlreadyMapped,
    /// Every event-array page is in use (-ENOSPC).
    ArrayFull,
}

impl Fifo {
    /// Host PA of `port`'s event word, if its page was added.
    pub fn word_pa(&self, port: u32) -> Option<u64> {
        let page = self.array.get((port / EVTCHN_FIFO_WORDS_PER_PAGE) as usize)?;
        Some(page + u64::from(port % EVTCHN_FIFO_WORDS_PER_PAGE) * 4)
    }

    /// Ports that have an event word.
    pub fn nr_words(&self) -> u32 {
        self.array.len() as u32 * EVTCHN_FIFO_WORDS_PER_PAGE
    }

    /// Host PA of `vcpu`'s control block.
    pub fn control_block(&self, vcpu: u32) -> Option<u64> {
        self.control.get(vcpu as usize).copied().flatten()
    }

    /// Give `vcpu` its control block at host PA `pa` (once: a second one is refused).
    pub fn map_control(&mut self, vcpu: u32, pa: u64) -> Result<(), FifoError> {
        let slot = self.control.get_mut(vcpu as usize).ok_or(FifoError::AlreadyMapped)?;
        if slot.is_some() {
            return Err(FifoError::AlreadyMapped);
        }
        *slot = Some(pa);
        Ok(())
    }

    /// Whether every event-array page is in use.
    pub fn is_full(&self) -> bool {
        self.array.len() >= MAX_ARRAY_PAGES
    }

    /// Add the event-array page at host PA `pa`; returns the ports it gives words to.
    pub fn add_page(&mut self, pa: u64) -> Result<core::ops::Range<u32>, FifoError> {
        if self.is_full() {
            return Err(FifoError::ArrayFull);
        }
        let first = self.nr_words();
        self.array.push(pa);
        Ok(first..self.nr_words())
    }

    fn port_mut(&mut self, port: u32) -> &mut PortFifo {
        let i = port as usize;
        if self.ports.len() <= i {
            self.ports.resize(i + 1, PortFifo::default());
        }
        &mut self.ports[i]
    }

    fn port(&self, port: u32) -> PortFifo {
        self.ports.get(port as usize).copied().unwrap_or_default()
    }

    /// A port was allocated: it starts at the default priority (where it was last linked is kept).
    pub fn init_port(&mut self, port: u32) {
        let p = self.port_mut(port);
        p.priority = EVTCHN_FIFO_PRIORITY_DEFAULT;
        p.pending = false;
    }

    /// EVTCHNOP_set_priority (the caller checked `priority` <= EVTCHN_FIFO_PRIORITY_MIN):
    /// later events use the new queue; one already linked stays where it is.
    pub fn set_priority(&mut self, port: u32, priority: u8) {
        self.port_mut(port).priority = priority;
    }

    /// Remember that `port` was pending before the switch to FIFO (its word may not exist yet).
    pub fn save_pending(&mut self, port: u32) {
        self.port_mut(port).pending = true;
    }

    /// Whether `port` was made pending while it had no event word (and forget it).
    pub fn take_saved_pending(&mut self, port: u32) -> bool {
        core::mem::take(&mut self.port_mut(port).pending)
    }

    /// Mark `port` pending and link it on `vcpu`'s queue of its priority when it is unmasked
    /// and not linked yet. Returns true when the queue was empty and its `ready` bit newly set:
    /// the vCPU must be told (evtchn_upcall_pending).
    pub fn set_pending(&mut self, port: u32, vcpu: u32, mem: &dyn PhysMem) -> bool {
        let Some(word) = self.word_pa(port) else {
            self.port_mut(port).pending = true;
            return false;
        };
        let v = (vcpu as usize).min(MAX_VCPUS - 1);
        let pf = self.port(port);
        let p = usize::from(pf.priority).min(QUEUES - 1);
        let (ov, op) = (usize::from(pf.last_vcpu).min(MAX_VCPUS - 1), usize::from(pf.last_priority).min(QUEUES - 1));
        if word_or(mem, word, EVTCHN_FIFO_PENDING).is_none() {
            return false;
        }
        // No control block: the guest must not unmask before it has one, so nothing to link.
        let Some(cb) = self.control[v] else { return false };
        let mut linked = true;
        let unmasked = mem.read_u32(word).is_ok_and(|w| w & EVTCHN_FIFO_MASKED == 0);
        if unmasked && word_or(mem, word, EVTCHN_FIFO_LINKED).is_some_and(|old| old & EVTCHN_FIFO_LINKED == 0) {
            // The old queue's tail must not stay this port once it is linked elsewhere.
            if self.tail[ov][op] == port {
                self.tail[ov][op] = 0;
            }
            if (ov, op) != (v, p) {
                let pm = self.port_mut(port);
                (pm.last_vcpu, pm.last_priority) = (v as u8, p as u8);
            }
            // Link after the tail while the tail is still linked; else the queue is empty and
            // this port becomes its head.
            linked = false;
            let tail = self.tail[v][p];
            if tail != 0 {
                if let Some(tail_word) = self.word_pa(tail) {
                    linked = set_link(mem, tail_word, port);
                }
            }
            if !linked {
                let _ = mem.write_u32(cb + EVTCHN_FIFO_CONTROL_HEAD + 4 * p as u64, port);
            }
            self.tail[v][p] = port;
        }
        !linked && word_or(mem, cb, 1 << p).is_some_and(|old| old & (1 << p) == 0)
    }

    /// Clear PENDING (the guest unlinks and skips events that are not pending).
    pub fn clear_pending(&self, port: u32, mem: &dyn PhysMem) {
        if let Some(word) = self.word_pa(port) {
            word_and(mem, word, !EVTCHN_FIFO_PENDING);
        }
    }

    /// EVTCHNOP_unmask: clear MASKED and, when pending, link it (as [`Fifo::set_pending`]).
    pub fn unmask(&mut self, port: u32, vcpu: u32, mem: &dyn PhysMem) -> bool {
        let Some(word) = self.word_pa(port) else { return false };
        word_and(mem, word, !EVTCHN_FIFO_MASKED);
        if mem.read_u32(word).is_ok_and(|w| w & EVTCHN_FIFO_PENDING != 0) {
            return self.set_pending(port, vcpu, mem);
        }
        false
    }

    /// Whether `port`'s word says PENDING (false without a word).
    pub fn is_pending(&self, port: u32, mem: &dyn PhysMem) -> bool {
        self.word_pa(port).is_some_and(|w| mem.read_u32(w).is_ok_and(|v| v & EVTCHN_FIFO_PENDING != 0))
    }
}

/// The 8-byte-aligned word holding the 32-bit word at `pa`, and the shift of the latter in it.
fn container(pa: u64) -> (u64, u32) {
    (pa & !7, ((pa & 4) * 8) as u32)
}

/// Atomically OR `bits` into the 32-bit guest word at `pa`; its old value.
fn word_or(mem: &dyn PhysMem, pa: u64, bits: u32) -> Option<u32> {
    let (w, sh) = container(pa);
    mem.fetch_or_u64(w, u64::from(bits) << sh).ok().map(|old| (old >> sh) as u32)
}

/// Atomically AND `bits` into the 32-bit guest word at `pa`; its old value.
fn word_and(mem: &dyn PhysMem, pa: u64, bits: u32) -> Option<u32> {
    let (w, sh) = container(pa);
    mem.fetch_and_u64(w, !(u64::from(!bits) << sh)).ok().map(|old| (old >> sh) as u32)
}

/// Atomically replace the 32-bit guest word at `pa` by `new` if it holds `current`:
/// `Ok(current)`, or `Err(actual)`. A change only to the other half of the 64-bit container
/// is retried a bounded number of times (the guest owns the neighbouring word). A word that
/// cannot be read reads as 0 (not linked).
fn word_cmpxchg(mem: &dyn PhysMem, pa: u64, current: u32, new: u32) -> Result<u32, u32> {
    let (w, sh) = container(pa);
    let half = |full: u64| (full >> sh) as u32;
    for _ in 0..64 {
        let Ok(full) = mem.read_u64(w) else { return Err(0) };
        if half(full) != current {
            return Err(half(full));
        }
        let replaced = (full & !(0xffff_ffffu64 << sh)) | (u64::from(new) << sh);
        match mem.compare_exchange_u64(w, full, replaced) {
            Ok(Ok(_)) => return Ok(current),
            Ok(Err(actual)) if half(actual) != current => return Err(half(actual)),
            Ok(Err(_)) => continue,
            Err(_) => return Err(0),
        }
    }
    Err(current)
}

/// One attempt to set the tail word's LINK to `port` while it is LINKED: `Some(false)` when it
/// is not linked (the queue emptied), `Some(true)` when set, `None` when the word changed
/// meanwhile (`w` then holds its new value).
fn try_set_link(mem: &dyn PhysMem, tail: u64, w: &mut u32, port: u32) -> Option<bool> {
    if *w & EVTCHN_FIFO_LINKED == 0 {
        return Some(false);
    }
    let new = (*w & !(EVTCHN_FIFO_BUSY | EVTCHN_FIFO_LINK_MASK)) | port;
    match word_cmpxchg(mem, tail, *w, new) {
        Ok(_) => Some(true),
        Err(actual) => {
            *w = actual;
            None
        }
    }
}

/// Link `port` after the tail word at `tail` iff the tail is still LINKED. After a first
/// failed attempt the tail is marked BUSY, which keeps the guest from unmasking it, so the
/// guest can change it only a few more times (clear PENDING, set MASKED, unlink); after four
/// more failures the event is treated as linked, as Xen does.
fn set_link(mem: &dyn PhysMem, tail: u64, port: u32) -> bool {
    let Ok(mut w) = mem.read_u32(tail) else { return false };
    if let Some(r) = try_set_link(mem, tail, &mut w, port) {
        return r;
    }
    word_or(mem, tail, EVTCHN_FIFO_BUSY);
    let Ok(mut w) = mem.read_u32(tail) else { return false };
    for _ in 0..4 {
        if let Some(r) = try_set_link(mem, tail, &mut w, port) {
            if !r {
                word_and(mem, tail, !EVTCHN_FIFO_BUSY);
            }
            return r;
        }
    }
    word_and(mem, tail, !EVTCHN_FIFO_BUSY);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::testmem::TestMem;

    const CB: u64 = 0x8000_0000;
    const ARRAY: u64 = 0x8000_1000;

    fn setup() -> (Fifo, TestMem) {
        let mem = TestMem::new(CB, 0x3000);
        mem.write(CB, &[0; 0x3000]).unwrap();
        let mut f = Fifo::default();
        f.map_control(0, CB).unwrap();
        assert_eq!(f.add_page(ARRAY), Ok(0..1024));
        (f, mem)
    }

    fn word(mem: &TestMem, port: u32) -> u32 {
        mem.read_u32(ARRAY + 4 * u64::from(port)).unwrap()
    }

    fn head(mem: &TestMem, prio: u64) -> u32 {
        mem.read_u32(CB + EVTCHN_FIFO_CONTROL_HEAD + 4 * prio).unwrap()
    }

    /// What the guest does with a queue (Linux's consume loop): take the head, clear LINKED
    /// and LINK, move the head on; returns the pending ports in order.
    fn consume(mem: &TestMem, prio: u64) -> Vec<u32> {
        let mut out = Vec::new();
        let mut port = head(mem, prio);
        while port != 0 {
            let w = word(mem, port);
            let next = w & EVTCHN_FIFO_LINK_MASK;
            mem.write_u32(ARRAY + 4 * u64::from(port), w & !(EVTCHN_FIFO_LINKED | EVTCHN_FIFO_LINK_MASK | EVTCHN_FIFO_PENDING)).unwrap();
            if w & EVTCHN_FIFO_PENDING != 0 {
                out.push(port);
            }
            port = next;
        }
        mem.write_u32(CB + EVTCHN_FIFO_CONTROL_HEAD + 4 * prio, 0).unwrap();
        let ready = mem.read_u32(CB).unwrap();
        mem.write_u32(CB, ready & !(1 << prio)).unwrap();
        out
    }

    #[test]
    fn events_queue_in_order_and_ready_is_raised_once() {
        let (mut f, mem) = setup();
        assert!(f.set_pending(5, 0, &mem), "empty queue: the vCPU is told");
        assert!(!f.set_pending(9, 0, &mem), "linked after the tail");
        assert!(!f.set_pending(3, 0, &mem));
        assert!(!f.set_pending(9, 0, &mem), "already linked: nothing moves");
        assert_eq!(head(&mem, 7), 5);
        assert_eq!(mem.read_u32(CB).unwrap(), 1 << 7);
        assert_eq!(word(&mem, 5) & EVTCHN_FIFO_LINK_MASK, 9);
        assert_eq!(word(&mem, 9) & EVTCHN_FIFO_LINK_MASK, 3);
        assert_eq!(consume(&mem, 7), [5, 9, 3]);
        // The guest emptied the queue: the next event is a new head and tells the vCPU again.
        assert!(f.set_pending(9, 0, &mem));
        assert_eq!(head(&mem, 7), 9);
        assert_eq!(consume(&mem, 7), [9]);
    }

    #[test]
    fn a_masked_event_waits_for_unmask() {
        let (mut f, mem) = setup();
        mem.write_u32(ARRAY + 4 * 6, EVTCHN_FIFO_MASKED).unwrap();
        assert!(!f.set_pending(6, 0, &mem));
        assert_eq!(word(&mem, 6), EVTCHN_FIFO_MASKED | EVTCHN_FIFO_PENDING);
        assert_eq!(head(&mem, 7), 0);
        assert!(f.unmask(6, 0, &mem));
        assert_eq!(word(&mem, 6), EVTCHN_FIFO_PENDING | EVTCHN_FIFO_LINKED);
        assert_eq!(consume(&mem, 7), [6]);
        assert!(!f.unmask(6, 0, &mem), "not pending: nothing to link");
        f.set_pending(6, 0, &mem);
        f.clear_pending(6, &mem);
        assert!(!f.is_pending(6, &mem));
    }

    #[test]
    fn priorities_have_their_own_queues_and_ready_bits() {
        let (mut f, mem) = setup();
        f.set_priority(4, 1);
        assert!(f.set_pending(4, 0, &mem));
        assert!(f.set_pending(8, 0, &mem));
        assert_eq!(mem.read_u32(CB).unwrap(), (1 << 1) | (1 << 7));
        assert_eq!((head(&mem, 1), head(&mem, 7)), (4, 8));
        // A port that moved queue leaves the old tail: linking on the old queue starts afresh.
        consume(&mem, 1);
        f.set_priority(4, 7);
        assert!(!f.set_pending(4, 0, &mem), "behind 8 on queue 7");
        f.set_priority(12, 1);
        assert!(f.set_pending(12, 0, &mem), "queue 1 is empty again");
        assert_eq!(head(&mem, 1), 12);
    }

    #[test]
    fn no_control_block_or_no_word_links_nothing() {
        let (mut f, mem) = setup();
        assert!(!f.set_pending(7, 1, &mem), "vCPU 1 has no control block");
        assert_eq!(word(&mem, 7), EVTCHN_FIFO_PENDING);
        assert!(!f.set_pending(1500, 0, &mem), "no event word yet");
        assert!(f.take_saved_pending(1500));
        assert!(!f.take_saved_pending(1500));
        assert_eq!(f.map_control(0, CB), Err(FifoError::AlreadyMapped));
        assert_eq!(f.map_control(MAX_VCPUS as u32, CB), Err(FifoError::AlreadyMapped));
    }

    #[test]
    fn a_tail_the_guest_unlinks_meanwhile_makes_a_new_head() {
        let (mut f, mem) = setup();
        f.set_pending(2, 0, &mem);
        // The guest consumed port 2 (unlinked it) without the hypervisor knowing.
        consume(&mem, 7);
        assert!(f.set_pending(3, 0, &mem));
        assert_eq!(head(&mem, 7), 3);
        assert_eq!(word(&mem, 2) & (EVTCHN_FIFO_BUSY | EVTCHN_FIFO_LINK_MASK), 0, "no stale LINK or BUSY");
    }

    #[test]
    fn the_array_is_bounded() {
        let mut f = Fifo::default();
        for i in 0..MAX_ARRAY_PAGES as u64 {
            f.add_page(0x1000 * i).unwrap();
        }
        assert_eq!(f.add_page(0), Err(FifoError::ArrayFull));
        assert_eq!(f.nr_words(), 1 << 17);
    }

    #[test]
    fn word_cmpxchg_ignores_the_neighbouring_word() {
        let (_, mem) = setup();
        mem.write_u32(ARRAY + 4, 0xdead).unwrap();
        assert_eq!(word_cmpxchg(&mem, ARRAY, 0, 5), Ok(0));
        assert_eq!(word_cmpxchg(&mem, ARRAY, 0, 6), Err(5));
        assert_eq!(mem.read_u32(ARRAY + 4).unwrap(), 0xdead);
        assert_eq!(word_or(&mem, ARRAY + 4, 0x10000), Some(0xdead));
        assert_eq!(word_and(&mem, ARRAY + 4, !0xd), Some(0x1dead));
        assert_eq!(mem.read_u32(ARRAY + 4).unwrap(), 0x1dea0);
        assert_eq!(mem.read_u32(ARRAY).unwrap(), 5);
    }
}
