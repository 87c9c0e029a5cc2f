//! Emulated MMIO: devices the hypervisor emulates for a domain (the vGIC distributor and
//! redistributors first). A stage-2 data abort on an IPA inside a registered range is decoded
//! by the arch layer (access size, register, direction) and handed to the device here.

use crate::sync::{SpinMutex, SpinMutexGuard};
use alloc::boxed::Box;
use alloc::vec::Vec;

/// One trapped access, already decoded from the syndrome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    /// Offset from the start of the device's range.
    pub offset: u64,
    /// 1, 2, 4 or 8 bytes.
    pub size: u8,
    pub write: bool,
    /// The value written (zero-extended), for writes.
    pub value: u64,
}

/// What the device made of an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioResult {
    /// A read's value (for writes, ignored).
    Done(u64),
    /// The access is not valid for this device (bad size/alignment/offset): the guest gets
    /// an abort, as hardware would give it.
    Abort,
}

/// A device emulated in the hypervisor for one domain.
pub trait MmioDevice: Send {
    fn name(&self) -> &str;
    fn access(&mut self, vcpu: usize, access: MmioAccess) -> MmioResult;
}

/// The emulated devices of a domain, by IPA range: the set is fixed before the domain runs,
/// each device has its own lock (two vCPUs reach two devices at once).
#[derive(Default)]
pub struct MmioBus {
    devices: Vec<(u64, u64, SpinMutex<Box<dyn MmioDevice>>)>,
}

impl core::fmt::Debug for MmioBus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut l = f.debug_list();
        for (b, s, _) in &self.devices {
            l.entry(&(b, s));
        }
        l.finish()
    }
}

impl MmioBus {
    /// Register `dev` at `[base, base + size)`; refused (false) if it overlaps another device.
    pub fn add(&mut self, base: u64, size: u64, dev: Box<dyn MmioDevice>) -> bool {
        let end = base.saturating_add(size);
        if self.devices.iter().any(|(b, s, _)| base < b + s && *b < end) {
            return false;
        }
        self.devices.push((base, size, SpinMutex::new(dev)));
        true
    }

    /// The device covering `ipa`, locked, and the offset into it.
    pub fn find(&self, ipa: u64) -> Option<(SpinMutexGuard<'_, Box<dyn MmioDevice>>, u64)> {
        self.devices.iter().find(|(b, s, _)| ipa >= *b && ipa - *b < *s).map(|(b, _, d)| (d.lock(), ipa - *b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::boxed::Box;

    struct Reg(u64);
    impl MmioDevice for Reg {
        fn name(&self) -> &str {
            "reg"
        }
        fn access(&mut self, _vcpu: usize, a: MmioAccess) -> MmioResult {
            if a.offset != 0 {
                return MmioResult::Abort;
            }
            if a.write {
                self.0 = a.value;
            }
            MmioResult::Done(self.0)
        }
    }

    #[test]
    fn routes_by_range_and_refuses_overlap() {
        let mut bus = MmioBus::default();
        assert!(bus.add(0x1000, 0x1000, Box::new(Reg(7))));
        assert!(!bus.add(0x1800, 0x1000, Box::new(Reg(0))));
        let (mut dev, off) = bus.find(0x1000).unwrap();
        assert_eq!(off, 0);
        assert_eq!(dev.access(0, MmioAccess { offset: off, size: 4, write: false, value: 0 }), MmioResult::Done(7));
        drop(dev); // the device's lock
        assert!(bus.find(0x2000).is_none());
        let (mut dev, off) = bus.find(0x1004).unwrap();
        assert_eq!(dev.access(0, MmioAccess { offset: off, size: 4, write: false, value: 0 }), MmioResult::Abort);
    }
}
