//! Xen hypercalls: dispatch by number (x16) to one module per op family. Every argument is
//! untrusted: handlers return Xen's errno (as a negative value) and never panic. Guest buffers
//! are guest *virtual* addresses, reached through [`GuestMemory`].

pub mod console_io;
pub mod sched;
pub mod smccc;
pub mod version;

use crate::domain::Domain;
use guest_abi::errno::{ret, EFAULT, ENOSYS};
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

/// Handle hypercall `nr` with arguments x0..x4; the result goes back in x0.
pub fn dispatch(dom: &mut Domain, mem: &mut dyn GuestMemory, number: u64, args: [u64; 5]) -> i64 {
    match number {
        nr::HYPERVISOR_XEN_VERSION => version::xen_version(dom, mem, args[0], args[1]),
        nr::HYPERVISOR_CONSOLE_IO => console_io::console_io(dom, mem, args[0], args[1], args[2]),
        nr::HYPERVISOR_SCHED_OP => sched::sched_op(dom, mem, args[0], args[1]),
        _ => ret(ENOSYS),
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

    pub fn dom0() -> Domain {
        let mut ram = crate::domain::RamBanks::default();
        ram.push(crate::domain::RamBank { ipa: 0x4000_0000, pa: 0x4000_0000, size: 0x1000_0000 });
        Domain::new(0, true, true, ram)
    }
}

#[cfg(test)]
mod tests {
    use super::testmem::*;
    use super::*;

    #[test]
    fn unknown_and_deprecated_numbers_are_enosys() {
        let mut d = dom0();
        let mut m = FlatMemory::new(0x1000, 0x1000);
        for n in [6, 16, 19, 63, 64, 100, u64::MAX] {
            assert_eq!(dispatch(&mut d, &mut m, n, [0; 5]), ret(ENOSYS), "hypercall {n}");
        }
    }
}
