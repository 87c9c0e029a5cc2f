//! Xen hypercalls: dispatch by number (x16) to one module per op family. Every argument is
//! untrusted: handlers return Xen's errno (as a negative value) and never panic. Guest buffers
//! are guest *virtual* addresses, reached through [`GuestMemory`].

pub mod after;
pub mod console_io;
pub mod domain_run;
pub mod event_channel;
pub mod grant_table;
pub mod guest_phys;
pub mod hvm;
pub mod memory;
pub mod multicall;
pub mod platform;
pub mod sched;
pub mod smccc;
pub mod teardown;
pub mod toolstack;
pub mod vcpu;
pub mod version;

use crate::domain::registry::{Domains, Machine};
use crate::domain::DomId;
use guest_abi::errno::{ret, EFAULT, ENOSYS, ESRCH};
use guest_abi::hypercall as nr;

/// A guest virtual address that could not be read or written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestFault {
    pub gva: u64,
}

/// The calling vCPU's memory as its guest virtual addresses see it.
pub trait GuestMemory {
    fn copy_from_guest(&mut self, gva: u64, buf: &mut [u8]) -> Result<(), GuestFault>;
    fn copy_to_guest(&mut self, gva: u64, data: &[u8]) -> Result<(), GuestFault>;
}

/// Read a plain-old-data argument struct from the guest. `T` must be valid for any bytes
/// (the guest-abi structs are `#[repr(C)]` integers only).
/// The host's RAM banks (from the DT at boot), for the answers that depend on whether a host
/// address is RAM at all (grant cache_flush). Unset means "no RAM known".
static HOST_RAM: crate::sync::Once<alloc::vec::Vec<(u64, u64)>> = crate::sync::Once::new();

/// Record the host RAM banks (once, at boot).
pub fn set_host_ram(banks: &[(u64, u64)]) {
    HOST_RAM.call_once(|| banks.to_vec());
}

/// One past the host's highest RAM byte (0 when no RAM is known).
pub fn host_ram_end() -> u64 {
    HOST_RAM.get().map_or(0, |b| b.iter().map(|&(base, size)| base + size).max().unwrap_or(0))
}

/// Whether the page at host address `pa` is RAM.
pub fn is_host_ram(pa: u64) -> bool {
    HOST_RAM.get().is_some_and(|b| b.iter().any(|&(base, size)| pa >= base && pa - base < size))
}

pub fn read_arg<T: Copy + Default>(mem: &mut dyn GuestMemory, gva: u64) -> Result<T, i64> {
    let mut v = T::default();
    // SAFETY: `T` is a plain integer struct (callers use guest-abi types): any byte pattern is
    // a valid value, and the slice covers exactly `v`.
    let bytes = unsafe { core::slice::from_raw_parts_mut(&mut v as *mut T as *mut u8, core::mem::size_of::<T>()) };
    mem.copy_from_guest(gva, bytes).map_err(|_| ret(EFAULT))?;
    Ok(v)
}

/// Write a plain-old-data struct back to the guest.
pub fn write_arg<T: Copy>(mem: &mut dyn GuestMemory, gva: u64, v: &T) -> Result<(), i64> {
    // SAFETY: reading the bytes of a `#[repr(C)]` integer struct.
    let bytes = unsafe { core::slice::from_raw_parts(v as *const T as *const u8, core::mem::size_of::<T>()) };
    mem.copy_to_guest(gva, bytes).map_err(|_| ret(EFAULT))
}

/// Everything a hypercall handler may touch: every domain (each behind its own locks), which
/// one is calling and on which of its vCPUs, the caller's guest-virtual memory, and the
/// machine services for stage-2 changes.
pub struct HypercallCtx<'a, 'm> {
    pub domains: &'a Domains,
    pub caller: DomId,
    pub vcpu: u32,
    pub mem: &'a mut dyn GuestMemory,
    pub machine: &'a mut Machine<'m>,
    /// The architecture, for what only it does: a new domain's vGIC, starting and stopping
    /// the vCPUs of a domain the toolstack made.
    pub arch: &'a dyn crate::contract::Arch,
}

/// What a hypercall handler decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done: this goes back to the guest in x0.
    Return(i64),
    /// Not done yet (a long batch): re-enter the same hypercall with x0..x2 rewritten, as Xen's
    /// continuations do. The trap layer rewinds ELR_EL2 by 4 so the guest re-issues the HVC
    /// with these arguments (and can take interrupts in between).
    Continue { x0: u64, x1: u64, x2: u64 },
}

/// Handle hypercall `number` with arguments x0..x4 from `cx.caller`: one step, which may ask
/// to be continued (see [`Outcome::Continue`]).
pub fn dispatch_step(cx: &mut HypercallCtx<'_, '_>, number: u64, args: [u64; 5]) -> Outcome {
    if number == nr::HYPERVISOR_XEN_VERSION {
        // The null hypercall: first, with one domain lookup and no lock.
        return Outcome::Return(match cx.domains.get(cx.caller) {
            Some(dom) => version::xen_version(dom, cx.mem, args[0], args[1]),
            None => ret(ESRCH),
        });
    }
    if cx.domains.get(cx.caller).is_none() {
        return Outcome::Return(ret(ESRCH));
    }
    match number {
        nr::HYPERVISOR_MEMORY_OP => return memory::memory_op(cx, args[0], args[1]),
        nr::HYPERVISOR_GRANT_TABLE_OP => {
            let out = grant_table::grant_table_op(cx, args[0], args[1], args[2]);
            // An unmap may have dropped the last reference to a dead domain's frame.
            if grant_table::unmaps(args[0]) && teardown::any_lingering() {
                teardown::reap(cx.domains, cx.machine);
            }
            return out;
        }
        nr::HYPERVISOR_MULTICALL => return multicall::multicall(cx, args[0], args[1]),
        nr::HYPERVISOR_EVENT_CHANNEL_OP => return Outcome::Return(event_channel::event_channel_op(cx, args[0], args[1])),
        nr::HYPERVISOR_VCPU_OP => return Outcome::Return(vcpu::vcpu_op(cx, args[0], args[1], args[2])),
        nr::HYPERVISOR_HVM_OP => return Outcome::Return(hvm::hvm_op(cx, args[0], args[1])),
        nr::HYPERVISOR_PLATFORM_OP => return Outcome::Return(platform::platform_op(cx, args[0])),
        nr::HYPERVISOR_VM_ASSIST => return Outcome::Return(platform::vm_assist(cx, args[0], args[1])),
        nr::HYPERVISOR_SCHED_OP => return Outcome::Return(sched::sched_op_cx(cx, args[0], args[1])),
        _ => {}
    }
    let Some(dom) = cx.domains.get(cx.caller) else { return Outcome::Return(ret(ESRCH)) };
    let mem = &mut *cx.mem;
    Outcome::Return(match number {
        nr::HYPERVISOR_CONSOLE_IO => console_io::console_io(dom, mem, args[0], args[1], args[2]),
        nr::HYPERVISOR_DOMCTL => {
            // A destroy still waiting for a vCPU to leave its CPU goes on as a continuation
            // with the same argument (Xen's -ERESTART never reaches the guest).
            let r = toolstack::domctl(cx, args[0]);
            if r == ret(guest_abi::errno::ERESTART) {
                return Outcome::Continue { x0: args[0], x1: args[1], x2: args[2] };
            }
            r
        }
        nr::HYPERVISOR_SYSCTL => toolstack::sysctl(cx, args[0]),
        _ => ret(ENOSYS),
    })
}

/// Handle hypercall `number` to completion (continuations run back to back here) and return
/// x0. The trap layer may instead call [`dispatch_step`] and honour [`Outcome::Continue`].
pub fn dispatch(cx: &mut HypercallCtx<'_, '_>, number: u64, mut args: [u64; 5]) -> i64 {
    loop {
        match dispatch_step(cx, number, args) {
            Outcome::Return(r) => return r,
            Outcome::Continue { x0, x1, x2 } => {
                args[0] = x0;
                args[1] = x1;
                args[2] = x2;
            }
        }
    }
}

/// A guest memory double for host tests: a flat byte array at guest VA `base`.
#[cfg(test)]
pub mod testmem {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    pub struct FlatMemory {
        pub base: u64,
        pub bytes: Vec<u8>,
    }

    impl FlatMemory {
        pub fn new(base: u64, size: usize) -> Self {
            Self { base, bytes: vec![0; size] }
        }
        fn range(&self, gva: u64, len: usize) -> Result<core::ops::Range<usize>, GuestFault> {
            let off = gva.checked_sub(self.base).ok_or(GuestFault { gva })? as usize;
            let end = off.checked_add(len).ok_or(GuestFault { gva })?;
            if end > self.bytes.len() {
                return Err(GuestFault { gva });
            }
            Ok(off..end)
        }
    }

    impl GuestMemory for FlatMemory {
        fn copy_from_guest(&mut self, gva: u64, buf: &mut [u8]) -> Result<(), GuestFault> {
            let r = self.range(gva, buf.len())?;
            buf.copy_from_slice(&self.bytes[r]);
            Ok(())
        }
        fn copy_to_guest(&mut self, gva: u64, data: &[u8]) -> Result<(), GuestFault> {
            let r = self.range(gva, data.len())?;
            self.bytes[r].copy_from_slice(data);
            Ok(())
        }
    }

    pub fn dom0() -> crate::domain::Domain {
        let mut ram = crate::domain::RamBanks::default();
        ram.push(crate::domain::RamBank { ipa: 0x4000_0000, pa: 0x4000_0000, size: 0x1000_0000 });
        crate::domain::Domain::new(0, true, true, ram)
    }

    /// Run `f` with a context whose caller is dom0 (`dom0()`), the given guest memory, and a
    /// machine over a small test physical memory.
    pub fn with_dom0<R>(mem: &mut FlatMemory, f: impl FnOnce(&mut HypercallCtx<'_, '_>) -> R) -> R {
        let domains = Domains::new();
        let _ = domains.insert(dom0());
        let phys = crate::mm::testmem::TestMem::new(0x8000_0000, 1 << 20);
        let mut frames = crate::mm::RegionAllocator::new();
        let _ = frames.add(0x8000_0000, 1 << 20);
        let mut tlb = phys.tlb();
        let mut machine = Machine { mem: &phys, frames: &mut frames, tlb: &mut tlb };
        let arch = crate::contract::fake::FakeArch::new(0x9000_0000, 0x1000);
        let mut cx = HypercallCtx { domains: &domains, caller: 0, vcpu: 0, mem, machine: &mut machine, arch: &arch };
        f(&mut cx)
    }
}

#[cfg(test)]
mod tests {
    use super::testmem::*;
    use super::*;

    #[test]
    fn unknown_and_deprecated_numbers_are_enosys() {
        let mut m = FlatMemory::new(0x1000, 0x1000);
        with_dom0(&mut m, |cx| {
            for n in [6, 16, 19, 63, 64, 100, u64::MAX] {
                assert_eq!(dispatch(cx, n, [0; 5]), ret(ENOSYS), "hypercall {n}");
            }
        });
    }
}
