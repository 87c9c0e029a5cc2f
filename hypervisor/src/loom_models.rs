//! Model checks of the locking protocols with `loom` (every interleaving of the models' lock
//! and atomic operations, within a preemption bound):
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p xenith-hypervisor --lib loom --release`
//!
//! The models run the real code (the domain table, `Stage2`, the grant-table and event-channel
//! hypercalls through `dispatch`) on the real locks of `crate::sync`, which are `loom`'s here.
//! Physical memory is a sparse byte store that `loom` does not see, except for the words a
//! model registers: those are `loom` atomics, so that a concurrent observer outside every lock
//! (the hardware's table walker, a guest's compare-exchange on its grant entry) interleaves
//! with each access to them.

use crate::domain::fault::{self, Access, Resolution, RetryState, Stage2Fault};
use crate::domain::registry::{Domains, Machine};
use crate::domain::{DomId, Domain, RamBank, RamBanks};
use crate::hypercall::testmem::FlatMemory;
use crate::hypercall::{dispatch, HypercallCtx};
use crate::mm::{FrameAlloc, RegionAllocator, S2Attr, Stage2, Stage2Config, TlbOps};
use crate::sync::Mutex;
use loom::sync::atomic::{AtomicU64, Ordering::SeqCst};
use loom::sync::Arc;
use platform::{MemError, PhysMem};
use std::collections::HashMap;
use std::vec::Vec;

const PAGE: u64 = 4096;
const BLOCK: u64 = 2 << 20;
/// dom0's RAM (direct-mapped), dom1's, and the pool of table and hypervisor frames.
const RAM0: u64 = 0x4000_0000;
const RAM1: u64 = RAM0 + BLOCK;
const POOL: u64 = RAM1 + BLOCK;
const POOL_SIZE: u64 = 64 * PAGE;
/// Guest VA of each vCPU's hypercall arguments.
const ARGS: u64 = 0x1000;

/// Sparse physical memory: pages appear (zeroed) on first touch; registered words are `loom`
/// atomics.
#[derive(Default)]
struct ModelMem {
    pages: std::sync::Mutex<HashMap<u64, Box<[u8; PAGE as usize]>>>,
    words: HashMap<u64, AtomicU64>,
}

impl ModelMem {
    /// Make the word at `pa` (8-aligned) visible to `loom`, with its current value.
    fn register(&mut self, pa: u64) {
        let v = self.plain_u64(pa);
        self.words.insert(pa, AtomicU64::new(v));
    }

    fn plain(&self, pa: u64, buf: &mut [u8]) {
        let mut pages = self.pages.lock().unwrap();
        for (i, b) in buf.iter_mut().enumerate() {
            let a = pa + i as u64;
            *b = pages.entry(a & !(PAGE - 1)).or_insert_with(|| Box::new([0; PAGE as usize]))[(a % PAGE) as usize];
        }
    }

    fn plain_write(&self, pa: u64, data: &[u8]) {
        let mut pages = self.pages.lock().unwrap();
        for (i, b) in data.iter().enumerate() {
            let a = pa + i as u64;
            pages.entry(a & !(PAGE - 1)).or_insert_with(|| Box::new([0; PAGE as usize]))[(a % PAGE) as usize] = *b;
        }
    }

    fn plain_u64(&self, pa: u64) -> u64 {
        let mut b = [0u8; 8];
        self.plain(pa, &mut b);
        u64::from_le_bytes(b)
    }

    /// The registered words overlapping `[pa, pa + len)`.
    fn shared_in(&self, pa: u64, len: usize) -> Vec<(u64, &AtomicU64)> {
        let end = pa + len as u64;
        self.words.iter().filter(|(&w, _)| w < end && w + 8 > pa).map(|(&w, a)| (w, a)).collect()
    }
}

impl PhysMem for ModelMem {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.plain(pa, buf);
        for (w, a) in self.shared_in(pa, buf.len()) {
            let v = a.load(SeqCst).to_le_bytes();
            for (i, b) in v.iter().enumerate() {
                let at = w + i as u64;
                if at >= pa && at < pa + buf.len() as u64 {
                    buf[(at - pa) as usize] = *b;
                }
            }
        }
        Ok(())
    }

    fn write(&self, pa: u64, data: &[u8]) -> Result<(), MemError> {
        self.plain_write(pa, data);
        for (w, a) in self.shared_in(pa, data.len()) {
            let mut v = a.load(SeqCst).to_le_bytes();
            for (i, b) in v.iter_mut().enumerate() {
                let at = w + i as u64;
                if at >= pa && at < pa + data.len() as u64 {
                    *b = data[(at - pa) as usize];
                }
            }
            a.store(u64::from_le_bytes(v), SeqCst);
        }
        Ok(())
    }

    fn fetch_or_u64(&self, pa: u64, bits: u64) -> Result<u64, MemError> {
        match self.words.get(&pa) {
            Some(a) => Ok(a.fetch_or(bits, SeqCst)),
            None => {
                let old = self.plain_u64(pa);
                self.plain_write(pa, &(old | bits).to_le_bytes());
                Ok(old)
            }
        }
    }

    fn fetch_and_u64(&self, pa: u64, bits: u64) -> Result<u64, MemError> {
        match self.words.get(&pa) {
            Some(a) => Ok(a.fetch_and(bits, SeqCst)),
            None => {
                let old = self.plain_u64(pa);
                self.plain_write(pa, &(old & bits).to_le_bytes());
                Ok(old)
            }
        }
    }
}

/// TLB maintenance has nothing to model here (no TLB: the walker reads the tables).
struct NoTlb;

impl TlbOps for NoTlb {
    fn invalidate_ipa(&mut self, _vmid: u16, _ipa: u64) {}
    fn invalidate_vmid(&mut self, _vmid: u16) {}
    fn sync(&mut self) {}
}

/// The frame pool as the hypervisor shares it: one lock, taken per allocation.
struct SharedFrames<'a>(&'a Mutex<RegionAllocator>);

impl FrameAlloc for SharedFrames<'_> {
    fn alloc_frame(&mut self) -> Option<u64> {
        self.0.lock().alloc_frame()
    }
    fn free_frame(&mut self, pa: u64) {
        self.0.lock().free_frame(pa)
    }
    fn alloc_frames(&mut self, count: usize) -> Option<u64> {
        self.0.lock().alloc_frames(count)
    }
    fn free_frames(&mut self, pa: u64, count: usize) {
        self.0.lock().free_frames(pa, count)
    }
}

/// A direct-mapped domain with one 2 MiB block of RAM at `base`, mapped as a block.
fn domain(id: DomId, base: u64, frames: &mut RegionAllocator, mem: &ModelMem) -> Domain {
    let mut ram = RamBanks::default();
    ram.push(RamBank { ipa: base, pa: base, size: BLOCK });
    let mut d = Domain::new(id, id == 0, true, ram);
    let mut p2m = Stage2::new(id + 1, Stage2Config { ipa_bits: 40, pa_bits: 40 }, frames, mem).unwrap();
    p2m.map(base, base, BLOCK, S2Attr::RAM_RWX, frames, mem, &mut NoTlb).unwrap();
    *d.p2m.get_mut() = Some(p2m);
    d
}

/// Where the level-2 descriptor covering `ipa` lives (the block entry of a 2 MiB block).
fn l2_slot(p2m: &Stage2, ipa: u64, mem: &ModelMem) -> u64 {
    assert_eq!(p2m.start_level(), 1, "a 40-bit IPA space starts at level 1");
    let l1 = p2m.root_pa() + (ipa >> 30) * 8;
    let table = mem.plain_u64(l1) & 0x0000_ffff_ffff_f000;
    table + ((ipa >> 21) & 511) * 8
}

/// Two domains, their memory and the frame pool, shared by the model's threads.
struct World {
    mem: ModelMem,
    frames: Mutex<RegionAllocator>,
    domains: Domains,
}

impl World {
    fn new(register: impl FnOnce(&mut ModelMem, &Domains, &mut RegionAllocator)) -> Arc<Self> {
        let mut mem = ModelMem::default();
        let mut frames = RegionAllocator::new();
        frames.add(POOL, POOL_SIZE).unwrap();
        let domains = Domains::new();
        let _ = domains.insert(domain(0, RAM0, &mut frames, &mem));
        let _ = domains.insert(domain(1, RAM1, &mut frames, &mem));
        register(&mut mem, &domains, &mut frames);
        Arc::new(World { mem, frames: Mutex::new(frames), domains })
    }

    /// Hypercall `nr` from `caller` with x0 = `x0`, x1 = [`ARGS`] (where `arg` is put), x2 =
    /// `x2`; `more` are further u64s to put at guest VAs.
    fn call<T: Copy>(&self, caller: DomId, nr: u64, x0: u64, arg: &T, x2: u64, more: &[(u64, u64)]) -> (i64, FlatMemory) {
        let mut gm = FlatMemory::new(ARGS, 0x1000);
        crate::hypercall::write_arg(&mut gm, ARGS, arg).unwrap();
        for (va, v) in more {
            crate::hypercall::write_arg(&mut gm, *va, v).unwrap();
        }
        let mut frames = SharedFrames(&self.frames);
        let mut machine = Machine { mem: &self.mem, frames: &mut frames, tlb: &mut NoTlb };
        let arch = crate::contract::fake::FakeArch::new(0x9000_0000, 0x1000);
        let mut cx = HypercallCtx { domains: &self.domains, caller, vcpu: 0, mem: &mut gm, machine: &mut machine, arch: &arch };
        let r = dispatch(&mut cx, nr, [x0, ARGS, x2, 0, 0]);
        (r, gm)
    }
}

/// Check `f` (which runs on a thread of its own: the domain table and the stage-2 code need
/// more stack than `loom` gives the model's first thread).
fn model(f: impl Fn() + Sync + Send + 'static) {
    let f = std::sync::Arc::new(f);
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let r = runs.clone();
    b.check(move || {
        r.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let f = f.clone();
        spawn(move || f()).join().unwrap();
    });
    eprintln!("{} interleavings", runs.load(std::sync::atomic::Ordering::Relaxed));
}

/// A model thread with room for the hypervisor's code.
fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> loom::thread::JoinHandle<T> {
    loom::thread::Builder::new().stack_size(4 << 20).spawn(f).unwrap()
}

/// The stage-2 fault re-check of a vCPU against a block split and merge on another CPU: the
/// writer holds the p2m's write lock while the block entry is invalid (break-before-make); a
/// vCPU touching another page of the block in that window faults, and the re-check under the
/// read lock finds the page mapped (it is the domain's own: never reported unowned).
fn split_merge_against_recheck(recheck_locks: bool) {
    model(move || {
        let page_a = RAM0 + 5 * PAGE;
        let page_b = RAM0 + 9 * PAGE;
        let slot = std::sync::Mutex::new(0);
        let w = World::new(|mem, ds, _| {
            let d0 = ds.get(0).unwrap();
            let s = l2_slot(d0.p2m.read().as_ref().unwrap(), RAM0, mem);
            mem.register(s);
            *slot.lock().unwrap() = s;
        });
        let slot = *slot.lock().unwrap();
        // The vCPU's access to page A: the walker reads the level-2 entry without any lock.
        let w2 = w.clone();
        let vcpu = spawn(move || {
            let entry = w2.mem.words[&slot].load(SeqCst);
            if entry & 1 == 0 {
                // A translation fault: the re-check.
                let d0 = w2.domains.get(0).unwrap();
                let found = if recheck_locks {
                    // The trap path's re-check (`domain::fault::resolve`) under the read lock.
                    let fault = Stage2Fault { ipa: page_a, access: Access::Write, fsc: 0x06, s1ptw: false };
                    let p2m = d0.p2m.read();
                    let r = fault::resolve(p2m.as_ref(), &w2.mem, fault, &mut RetryState::new(), 0, 1);
                    (r == Resolution::Retry).then_some(page_a)
                } else {
                    // The broken protocol: walk again without the lock, which finds the
                    // level-2 entry as the writer has it now.
                    let v = w2.mem.words[&slot].load(SeqCst);
                    (v & 1 != 0).then_some(page_a)
                };
                assert_eq!(found, Some(page_a), "an owned page was reported unowned");
            }
        });
        // Another CPU: decrease_reservation of page B (splits the block), then populate (maps
        // it back into the split table), each under the p2m's write lock.
        let d0 = w.domains.get(0).unwrap();
        let mut frames = SharedFrames(&w.frames);
        {
            let mut p2m = d0.p2m.write();
            p2m.as_mut().unwrap().unmap(page_b, PAGE, &mut frames, &w.mem, &mut NoTlb).unwrap();
        }
        {
            let mut p2m = d0.p2m.write();
            p2m.as_mut().unwrap().map(page_b, page_b, PAGE, S2Attr::RAM_RWX, &mut frames, &w.mem, &mut NoTlb).unwrap();
        }
        vcpu.join().unwrap();
        let p2m = d0.p2m.read();
        assert_eq!(p2m.as_ref().unwrap().lookup_pa(page_b, &w.mem), Some(page_b));
    });
}

#[test]
fn loom_p2m_split_merge_vs_fault_recheck() {
    split_merge_against_recheck(true);
}

/// The same without the read lock: the re-check can land in the window. Shows that the model
/// sees the window at all.
#[test]
#[should_panic(expected = "reported unowned")]
fn loom_p2m_recheck_without_the_lock_misses() {
    split_merge_against_recheck(false);
}

/// The grant entry dom1 gives dom0 (`gref` 0 of its table), and the frame it grants.
const GRANTED: u64 = RAM1 + 7 * PAGE;
const HOST_ADDR: u64 = 0x8_0000_0000;

/// Linux's end of foreign access: clear the entry unless the hypervisor shows it in use.
fn end_access(entry: &AtomicU64) -> bool {
    let mut cur = entry.load(SeqCst);
    loop {
        let flags = cur as u16;
        if flags & (guest_abi::grant_table::GTF_READING | guest_abi::grant_table::GTF_WRITING) != 0 {
            return false;
        }
        match entry.compare_exchange(cur, cur & !0xffff, SeqCst, SeqCst) {
            Ok(_) => return true,
            Err(now) => cur = now,
        }
    }
}

/// dom0 maps dom1's grant and unmaps it on one vCPU; dom1 ends access and balloons the frame
/// out (decrease_reservation) on another. When dom1's end of access succeeds, dom0 has no
/// mapping of the frame and never gets one; at the end, pins, entry flags and mappings agree.
#[test]
fn loom_grant_map_unmap_vs_end_access_and_decrease() {
    use guest_abi::grant_table::*;
    use guest_abi::memory::{XenMemoryReservation, XENMEM_DECREASE_RESERVATION};
    model(|| {
        let entry_pa = std::sync::Mutex::new(0);
        let w = World::new(|mem, ds, frames| {
            let d1 = ds.get(1).unwrap();
            let mut gt = d1.grants.lock();
            gt.grow(1, frames, &*mem).unwrap();
            let pa = gt.entry_pa(0).unwrap();
            let e = u64::from(GTF_PERMIT_ACCESS) | (GRANTED / PAGE) << 32; // domid 0
            mem.write_u64(pa, e).unwrap();
            mem.register(pa);
            *entry_pa.lock().unwrap() = pa;
        });
        let entry_pa = *entry_pa.lock().unwrap();
        let w2 = w.clone();
        let dom0_vcpu = spawn(move || {
            let op = GnttabMapGrantRef { host_addr: HOST_ADDR, flags: GNTMAP_HOST_MAP, r#ref: 0, dom: 1, status: 0, handle: 0, dev_bus_addr: 0 };
            let (r, mut gm) = w2.call(0, 20, u64::from(GNTTABOP_MAP_GRANT_REF), &op, 1, &[]);
            assert_eq!(r, 0);
            let m: GnttabMapGrantRef = crate::hypercall::read_arg(&mut gm, ARGS).unwrap();
            if m.status == GNTST_OKAY {
                assert_eq!(m.dev_bus_addr, GRANTED);
                let u = GnttabUnmapGrantRef { host_addr: HOST_ADDR, dev_bus_addr: 0, handle: m.handle, status: 0 };
                let (r, mut gm) = w2.call(0, 20, u64::from(GNTTABOP_UNMAP_GRANT_REF), &u, 1, &[]);
                assert_eq!(r, 0);
                let u: GnttabUnmapGrantRef = crate::hypercall::read_arg(&mut gm, ARGS).unwrap();
                assert_eq!(u.status, GNTST_OKAY);
            }
        });
        // dom1's vCPU.
        let d0 = w.domains.get(0).unwrap();
        let ended = end_access(&w.mem.words[&entry_pa]);
        if ended {
            let p2m = d0.p2m.read();
            assert_ne!(p2m.as_ref().unwrap().lookup_pa(HOST_ADDR, &w.mem), Some(GRANTED), "mapped after end of access");
        }
        // decrease_reservation of the granted frame, as the balloon driver does next.
        let list = ARGS + 0x100;
        let res = XenMemoryReservation { extent_start: list, nr_extents: 1, extent_order: 0, mem_flags: 0, domid: guest_abi::DOMID_SELF };
        let (done, _) = w.call(1, 12, u64::from(XENMEM_DECREASE_RESERVATION), &res, 0, &[(list, GRANTED / PAGE)]);
        assert_eq!(done, 1);
        dom0_vcpu.join().unwrap();
        let d1 = w.domains.get(1).unwrap();
        assert_eq!(d1.grants.lock().pins(0), crate::domain::grant::Pin::default());
        let flags = w.mem.words[&entry_pa].load(SeqCst) as u16;
        assert_eq!(flags & (GTF_READING | GTF_WRITING), 0, "no pin, no flag");
        assert_eq!(d0.p2m.read().as_ref().unwrap().lookup_pa(HOST_ADDR, &w.mem), None);
        assert_eq!(d0.p2m.read().as_ref().unwrap().lookup_pa(GRANTED, &w.mem), None, "the 1:1 alias went with the mapping");
        assert!(!d0.grants.lock().maps_frame(GRANTED));
        assert_eq!(d1.p2m.read().as_ref().unwrap().lookup_pa(GRANTED, &w.mem), None, "ballooned out");
    });
}

/// dom0 sends on its end of an interdomain channel on one vCPU and closes it on another. Once
/// the close has returned, nothing more becomes pending on dom1's end.
#[test]
fn loom_event_send_vs_close() {
    use guest_abi::event_channel::*;
    model(|| {
        let w = World::new(|_, _, _| {});
        // dom1 offers port 1 to dom0; dom0 binds it (its port 1) and dom1 consumes the event
        // the bind raises.
        let (r, _) = w.call(1, 32, u64::from(EVTCHNOP_ALLOC_UNBOUND), &EvtchnAllocUnbound { dom: guest_abi::DOMID_SELF, remote_dom: 0, port: 0 }, 0, &[]);
        assert_eq!(r, 0);
        let (r, _) = w.call(0, 32, u64::from(EVTCHNOP_BIND_INTERDOMAIN), &EvtchnBindInterdomain { remote_dom: 1, remote_port: 1, local_port: 0 }, 0, &[]);
        assert_eq!(r, 0);
        let d1 = w.domains.get(1).unwrap();
        // dom1's port 1: bit 1 of the first evtchn_pending word.
        let pending = |w: &World| d1.with_evtchn(|ev| ev.shared_info.map(|sh| w.mem.plain_u64(sh + 48) & 2 != 0));
        let w2 = w.clone();
        let sender = spawn(move || {
            let (r, _) = w2.call(0, 32, u64::from(EVTCHNOP_SEND), &EvtchnSend { port: 1 }, 0, &[]);
            // -EINVAL: the port was already closed when the send looked at it.
            assert!(r == 0 || r == guest_abi::errno::ret(guest_abi::errno::EINVAL), "send: {r}");
        });
        let (r, _) = w.call(0, 32, u64::from(EVTCHNOP_CLOSE), &EvtchnClose { port: 1 }, 0, &[]);
        assert_eq!(r, 0);
        let after_close = pending(&w);
        sender.join().unwrap();
        assert_eq!(pending(&w), after_close, "an event reached a channel after it was closed");
        assert_eq!(d1.with_evtchn(|ev| ev.state(1)), crate::domain::evtchn::PortState::Unbound { remote: 0 });
    });
}

/// dom0 maps a frame of a guest (a foreign map, as the toolstack does) on one vCPU and
/// destroys that guest on another, while an earlier foreign map of the guest's other page keeps
/// it in the table. Either the new map fails (the guest's stage 2 was gone) and its frame goes
/// back to the pool, or the destroy finds the map and the frame stays the lingering guest's
/// until dom0 removes it: never does dom0 map a frame that went back to the pool.
#[test]
fn loom_foreign_map_vs_destroy() {
    use guest_abi::memory::{XenAddToPhysmapBatch, XenRemoveFromPhysmap, XENMAPSPACE_GMFN_FOREIGN, XENMEM_ADD_TO_PHYSMAP_BATCH, XENMEM_REMOVE_FROM_PHYSMAP};
    use guest_abi::toolstack::{domctl, XenDomctl, XEN_DOMCTL_INTERFACE_VERSION};
    const GUEST: u64 = 0x4000_0000;
    const EARLIER: u64 = HOST_ADDR + PAGE;
    model(|| {
        let w = World::new(|mem, ds, frames| {
            // dom2: two pages of RAM from the pool at GUEST (not direct-mapped); dom0 maps the
            // second at EARLIER.
            let pa = frames.alloc_frames(2).unwrap();
            let mut ram = RamBanks::default();
            ram.push(RamBank { ipa: GUEST, pa, size: 2 * PAGE });
            let mut d = Domain::new(2, false, false, ram);
            let mut p2m = Stage2::new(3, Stage2Config { ipa_bits: 40, pa_bits: 40 }, frames, mem).unwrap();
            p2m.map(GUEST, pa, 2 * PAGE, S2Attr::RAM_RW, frames, mem, &mut NoTlb).unwrap();
            *d.p2m.get_mut() = Some(p2m);
            assert!(ds.insert(d).is_ok());
            ds.get(0).unwrap().p2m.write().as_mut().unwrap().map(EARLIER, pa + PAGE, PAGE, S2Attr::RAM_RW, frames, mem, &mut NoTlb).unwrap();
        });
        let pa = w.domains.get(2).unwrap().ram().as_slice()[0].pa;
        let w2 = w.clone();
        let mapper = spawn(move || {
            let b = XenAddToPhysmapBatch { domid: guest_abi::DOMID_SELF, space: XENMAPSPACE_GMFN_FOREIGN as u16, size: 1, foreign_domid: 2, idxs: ARGS + 0x100, gpfns: ARGS + 0x108, errs: ARGS + 0x110 };
            let (r, mut gm) = w2.call(0, 12, u64::from(XENMEM_ADD_TO_PHYSMAP_BATCH), &b, 0, &[(ARGS + 0x100, GUEST / PAGE), (ARGS + 0x108, HOST_ADDR / PAGE), (ARGS + 0x110, u64::MAX)]);
            assert_eq!(r, 0, "the guest lingers: it is still found");
            crate::hypercall::read_arg::<i32>(&mut gm, ARGS + 0x110).unwrap()
        });
        let op = XenDomctl { cmd: domctl::DESTROYDOMAIN, interface_version: XEN_DOMCTL_INTERFACE_VERSION, domain: 2, pad: [0; 3], u: [0; 16] };
        let (r, _) = w.call(0, guest_abi::hypercall::HYPERVISOR_DOMCTL, ARGS, &op, 0, &[]);
        assert_eq!(r, 0);
        let err = mapper.join().unwrap();
        let d0 = w.domains.get(0).unwrap();
        let seen = d0.p2m.read().as_ref().unwrap().lookup_pa(HOST_ADDR, &w.mem);
        let d2 = w.domains.get(2).expect("the guest lingers while dom0 maps its frames");
        assert!(d2.dead());
        if err == 0 {
            assert_eq!(seen, Some(pa));
            assert!(d2.remains.lock().as_ref().is_some_and(|r| r.holds(pa)));
            assert!(!w.frames.lock().is_free(pa, PAGE), "a frame dom0 maps went back to the pool");
        } else {
            assert_eq!(seen, None);
            assert!(w.frames.lock().is_free(pa, PAGE));
        }
        // dom0 removes its maps: the frames and the guest go.
        for gpfn in [HOST_ADDR / PAGE, EARLIER / PAGE] {
            let (r, _) = w.call(0, 12, u64::from(XENMEM_REMOVE_FROM_PHYSMAP), &XenRemoveFromPhysmap { domid: guest_abi::DOMID_SELF, gpfn }, 0, &[]);
            assert!(r == 0 || (err != 0 && gpfn == HOST_ADDR / PAGE), "remove_from_physmap {gpfn:#x}: {r}");
        }
        assert!(w.domains.get(2).is_none());
        assert!(w.frames.lock().is_free(pa, 2 * PAGE));
        assert!(!crate::hypercall::teardown::any_lingering());
    });
}
