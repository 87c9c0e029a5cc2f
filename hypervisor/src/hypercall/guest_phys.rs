//! Guest-physical helpers shared by the memory, grant-table, event-channel and vcpu ops:
//! domain ids as guests write them, guest frames to host frames through the domain's stage 2,
//! and stage-2 changes with Xen's errno for what can go wrong.

use crate::domain::registry::Machine;
use crate::domain::evtchn::EventChannels;
use crate::domain::{DomId, Domain};
use crate::mm::{P2mError, S2Attr, Stage2};
use guest_abi::errno::{ret, EINVAL, ENOMEM};
use guest_abi::DOMID_SELF;
use platform::PhysMem;

pub const PAGE: u64 = 4096;

/// `DOMID_SELF` means the caller.
pub fn resolve(caller: DomId, domid: DomId) -> DomId {
    if domid == DOMID_SELF {
        caller
    } else {
        domid
    }
}

/// IPA of guest frame `gfn`, if it fits in 64 bits.
pub fn ipa_of(gfn: u64) -> Option<u64> {
    gfn.checked_mul(PAGE)
}

/// Host PA backing guest frame `gfn` (anything mapped: RAM, a grant, shared_info, ...), under
/// the p2m's read lock.
pub fn lookup(dom: &Domain, gfn: u64, mem: &dyn PhysMem) -> Option<u64> {
    lookup_in(dom, &dom.p2m.read(), gfn, mem)
}

/// As [`lookup`], in `dom`'s stage 2 `p2m` that the caller has locked.
pub fn lookup_in(dom: &Domain, p2m: &Option<Stage2>, gfn: u64, mem: &dyn PhysMem) -> Option<u64> {
    let ipa = ipa_of(gfn)?;
    match p2m {
        Some(p2m) => p2m.lookup_pa(ipa, mem).map(|pa| pa & !(PAGE - 1)),
        None if dom.direct_mapped => Some(ipa),
        None => None,
    }
}

/// Host PA of guest frame `gfn` when it is the domain's own RAM.
pub fn own_ram(dom: &Domain, gfn: u64, mem: &dyn PhysMem) -> Option<u64> {
    lookup(dom, gfn, mem).filter(|pa| dom.owns_ram(*pa, PAGE))
}

fn p2m_errno(e: P2mError) -> i64 {
    match e {
        P2mError::OutOfFrames { .. } => ret(ENOMEM),
        _ => ret(EINVAL),
    }
}

/// Map one page `gfn -> pa` in `dom`'s stage 2, replacing what was there (p2m write lock).
pub fn map(dom: &Domain, m: &mut Machine<'_>, gfn: u64, pa: u64, attr: S2Attr) -> Result<(), i64> {
    map_in(&mut dom.p2m.write(), m, gfn, pa, attr)
}

/// As [`map`], in a stage 2 the caller has write-locked.
pub fn map_in(p2m: &mut Option<Stage2>, m: &mut Machine<'_>, gfn: u64, pa: u64, attr: S2Attr) -> Result<(), i64> {
    let ipa = ipa_of(gfn).ok_or(ret(EINVAL))?;
    let p2m = p2m.as_mut().ok_or(ret(EINVAL))?;
    p2m.map(ipa, pa, PAGE, attr, &mut *m.frames, m.mem, &mut *m.tlb).map_err(p2m_errno)
}

/// Unmap one page of `dom`'s stage 2 (p2m write lock).
pub fn unmap(dom: &Domain, m: &mut Machine<'_>, gfn: u64) -> Result<(), i64> {
    unmap_in(&mut dom.p2m.write(), m, gfn)
}

/// As [`unmap`], in a stage 2 the caller has write-locked.
pub fn unmap_in(p2m: &mut Option<Stage2>, m: &mut Machine<'_>, gfn: u64) -> Result<(), i64> {
    let ipa = ipa_of(gfn).ok_or(ret(EINVAL))?;
    let p2m = p2m.as_mut().ok_or(ret(EINVAL))?;
    p2m.unmap(ipa, PAGE, &mut *m.frames, m.mem, &mut *m.tlb).map_err(p2m_errno)
}

/// Unmap guest frame `gfn` of a stage 2 the caller has write-locked if it maps a host frame
/// `want` accepts: Ok(true) if it did, Ok(false) (nothing changed) if not (no stage 2 maps
/// nothing). One walk.
pub fn unmap_in_if(p2m: &mut Option<Stage2>, m: &mut Machine<'_>, gfn: u64, want: impl FnOnce(u64) -> bool) -> Result<bool, i64> {
    let ipa = ipa_of(gfn).ok_or(ret(EINVAL))?;
    let Some(p2m) = p2m.as_mut() else { return Ok(false) };
    p2m.unmap_page_if(ipa, want, &mut *m.frames, m.mem, &mut *m.tlb).map_err(p2m_errno)
}

/// The domain's shared_info frame, allocated (zeroed) on first use (under the event-channel
/// lock, which `ev` is held with).
pub fn shared_info(ev: &mut EventChannels, m: &mut Machine<'_>) -> Result<u64, i64> {
    if let Some(pa) = ev.shared_info {
        return Ok(pa);
    }
    let pa = m.frames.alloc_frame().ok_or(ret(ENOMEM))?;
    if m.mem.zero(pa, PAGE).is_err() {
        m.frames.free_frame(pa);
        return Err(ret(ENOMEM));
    }
    ev.shared_info = Some(pa);
    Ok(pa)
}

/// A machine for host tests: RAM of a small direct-mapped dom0 and a frame pool in one
/// [`TestMem`](crate::mm::testmem::TestMem), and dom0 with a real stage 2.
#[cfg(test)]
pub mod env {
    use super::*;
    use crate::domain::registry::Domains;
    use crate::domain::{RamBank, RamBanks};
    use crate::hypercall::testmem::FlatMemory;
    use crate::hypercall::HypercallCtx;
    use crate::mm::testmem::TestMem;
    use crate::mm::{RegionAllocator, Stage2, Stage2Config};

    pub const RAM: u64 = 0x4000_0000;
    pub const RAM_SIZE: u64 = 0x40_0000;
    pub const POOL: u64 = RAM + RAM_SIZE;
    pub const POOL_SIZE: u64 = 0x10_0000;
    /// Guest VA of the argument buffer.
    pub const ARGS: u64 = 0x1000;

    pub struct Env {
        pub phys: TestMem,
        pub frames: RegionAllocator,
        pub domains: Domains,
        pub args: FlatMemory,
        /// The architecture the hypercalls see (what createdomain and unpause ask of it).
        pub arch: crate::contract::fake::FakeArch,
    }

    pub fn domain(id: DomId, ram_base: u64, frames: &mut RegionAllocator, phys: &TestMem) -> Domain {
        let mut ram = RamBanks::default();
        ram.push(RamBank { ipa: ram_base, pa: ram_base, size: RAM_SIZE / 2 });
        let mut d = Domain::new(id, id == 0, true, ram);
        let mut tlb = phys.tlb();
        let mut p2m = Stage2::new(id + 1, Stage2Config { ipa_bits: 40, pa_bits: 40 }, frames, phys).unwrap();
        p2m.map(ram_base, ram_base, RAM_SIZE / 2, S2Attr::RAM_RWX, frames, phys, &mut tlb).unwrap();
        *d.p2m.get_mut() = Some(p2m);
        d
    }

    impl Env {
        /// dom0 (RAM at [`RAM`], half of it) and dom1 (the other half).
        #[allow(clippy::new_without_default)]
        pub fn new() -> Self {
            let phys = TestMem::new(RAM, (RAM_SIZE + POOL_SIZE) as usize);
            crate::hypercall::set_host_ram(&[(RAM, RAM_SIZE + POOL_SIZE)]);
            let mut frames = RegionAllocator::new();
            let _ = frames.add(POOL, POOL_SIZE);
            let domains = Domains::new();
            let d0 = domain(0, RAM, &mut frames, &phys);
            let d1 = domain(1, RAM + RAM_SIZE / 2, &mut frames, &phys);
            let _ = domains.insert(d0);
            let _ = domains.insert(d1);
            Self { phys, frames, domains, args: FlatMemory::new(ARGS, 0x4000), arch: crate::contract::fake::FakeArch::new(0x9000_0000, 0x1000) }
        }

        /// Run `f` as domain `caller`.
        pub fn call<R>(&mut self, caller: DomId, f: impl FnOnce(&mut HypercallCtx<'_, '_>) -> R) -> R {
            let mut tlb = self.phys.tlb();
            let mut machine = Machine { mem: &self.phys, frames: &mut self.frames, tlb: &mut tlb };
            let mut cx = HypercallCtx { domains: &self.domains, caller, vcpu: 0, mem: &mut self.args, machine: &mut machine, arch: &self.arch };
            f(&mut cx)
        }

        /// Put a plain struct at guest VA `ARGS + off`.
        pub fn put<T: Copy>(&mut self, off: u64, v: &T) {
            crate::hypercall::write_arg(&mut self.args, ARGS + off, v).unwrap();
        }

        pub fn get<T: Copy + Default>(&mut self, off: u64) -> T {
            crate::hypercall::read_arg(&mut self.args, ARGS + off).unwrap()
        }

        pub fn dom(&self, id: DomId) -> &Domain {
            self.domains.get(id).unwrap()
        }
    }
}
