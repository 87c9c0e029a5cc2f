//! What a stage-2 fault from a guest becomes when no emulated device covers the address.
//!
//! A translation, access-flag or permission fault on an IPA the domain's p2m maps with the
//! access allowed is not the guest's fault: another CPU changed the p2m around it (a block
//! broken before it is made again as pages, a page replaced), and the entry was invalid for a
//! moment. The guest is resumed and retries the access. The caller re-checks under the lock
//! that p2m changes hold, so the answer is the p2m as it is once the change is complete.
//! Anything else (an IPA the domain does not own, a ballooned-out page, a write to a
//! read-only mapping) gets Xen's answer: an abort injected into the guest.
//!
//! A retry that keeps faulting on the same page cannot be a window (the re-check waited for
//! the change in progress): after [`MAX_RETRIES`] in a row, each within a short time of the
//! last, the access is aborted, so a bug cannot hold a vCPU in a fault loop forever. Retries
//! far apart in time are separate windows (a busy page may meet many over a long run).

use crate::mm::Stage2;
use platform::PhysMem;

/// Consecutive retries on one page before the access gets its abort after all.
pub const MAX_RETRIES: u32 = 64;

/// The access that faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Fetch,
}

/// A stage-2 abort's syndrome, as far as the re-check needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage2Fault {
    pub ipa: u64,
    pub access: Access,
    /// ESR_ELx.ISS fault status code (DFSC/IFSC, bits [5:0]).
    pub fsc: u8,
    /// ESR_ELx.ISS.S1PTW: the fault hit the guest's own stage-1 table walk, a read.
    pub s1ptw: bool,
}

impl Stage2Fault {
    /// Decode a data or instruction abort's ISS.
    pub fn from_iss(ipa: u64, iss: u64, instruction: bool) -> Self {
        let access = if instruction {
            Access::Fetch
        } else if iss & (1 << 6) != 0 {
            Access::Write
        } else {
            Access::Read
        };
        Stage2Fault { ipa, access, fsc: (iss & 0x3f) as u8, s1ptw: iss & (1 << 7) != 0 }
    }

    /// Translation (0b0001xx), access flag (0b0010xx) or permission (0b0011xx) fault, any
    /// level: the kinds a p2m change in progress produces. Others (external aborts, TLB
    /// conflicts, alignment) are never retried.
    fn may_be_transient(self) -> bool {
        (0x04..=0x0f).contains(&self.fsc)
    }

    /// The access the p2m must allow for the retry to succeed.
    fn needed(self) -> Access {
        if self.s1ptw {
            Access::Read
        } else {
            self.access
        }
    }
}

/// What to do with the faulting access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The IPA is mapped and allows the access now: return to the guest at the same
    /// instruction.
    Retry,
    /// Inject an abort (the guest's own fault).
    Abort,
    /// Mapped and allowed, yet the same page faulted [`MAX_RETRIES`] times in a row: abort,
    /// and tell the console (it is a hypervisor problem, not the guest's).
    AbortStuck,
}

/// Per-vCPU memory of the last retried page, for the retry bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetryState {
    page: u64,
    count: u32,
    /// When the last retry was decided (counter ticks).
    at: u64,
}

impl RetryState {
    pub const fn new() -> Self {
        RetryState { page: 0, count: 0, at: 0 }
    }

    /// Forget the last retry (the vCPU made progress: another trap, another page).
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

/// Decide what a stage-2 fault becomes, given the domain's p2m (`None`: nothing is mapped).
/// Call it with the p2m locked against changes. `now` is a counter reading; a retry of the
/// same page less than `gap` ticks after the previous one counts as the same fault again.
pub fn resolve<M: PhysMem + ?Sized>(p2m: Option<&Stage2>, mem: &M, fault: Stage2Fault, retry: &mut RetryState, now: u64, gap: u64) -> Resolution {
    let allowed = fault.may_be_transient()
        && p2m.and_then(|p| p.lookup(fault.ipa, mem)).is_some_and(|t| match fault.needed() {
            Access::Read => t.attr.read,
            Access::Write => t.attr.write,
            Access::Fetch => t.attr.exec,
        });
    if !allowed {
        retry.clear();
        return Resolution::Abort;
    }
    let page = fault.ipa & !0xfff;
    if retry.page == page && retry.count > 0 && now.wrapping_sub(retry.at) < gap {
        retry.count += 1;
        retry.at = now;
    } else {
        *retry = RetryState { page, count: 1, at: now };
    }
    if retry.count > MAX_RETRIES {
        retry.clear();
        return Resolution::AbortStuck;
    }
    Resolution::Retry
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::testmem::{TestFrames, TestMem};
    use crate::mm::{S2Attr, Stage2Config};

    const BASE: u64 = 0x8000_0000;
    const RAM: u64 = 0x4000_0000;

    fn setup() -> (TestMem, TestFrames, Stage2) {
        let mem = TestMem::new(BASE, 1 << 20);
        let mut frames = TestFrames::new(&mem, BASE, 1 << 20);
        let mut tlb = mem.tlb();
        let mut s = Stage2::new(1, Stage2Config { ipa_bits: 40, pa_bits: 40 }, &mut frames, &mem).unwrap();
        s.map(RAM, RAM, 4 << 20, S2Attr::RAM_RWX, &mut frames, &mem, &mut tlb).unwrap();
        s.map(RAM + (4 << 20), RAM + (4 << 20), 0x1000, S2Attr::RAM_RO, &mut frames, &mem, &mut tlb).unwrap();
        (mem, frames, s)
    }

    fn fault(ipa: u64, access: Access, fsc: u8) -> Stage2Fault {
        Stage2Fault { ipa, access, fsc, s1ptw: false }
    }

    #[test]
    fn owned_page_resumes_and_unowned_aborts() {
        let (mem, _f, s) = setup();
        let mut r = RetryState::default();
        // A level-2 translation fault (a block in the middle of a split) on owned RAM.
        assert_eq!(resolve(Some(&s), &mem, fault(RAM + 0x12_3456, Access::Write, 0x06), &mut r, 0, 100), Resolution::Retry);
        assert_eq!(resolve(Some(&s), &mem, fault(RAM + 0x3f_f000, Access::Fetch, 0x07), &mut r, 0, 100), Resolution::Retry);
        // Not the domain's: Xen's abort.
        assert_eq!(resolve(Some(&s), &mem, fault(RAM + (5 << 20), Access::Read, 0x06), &mut r, 0, 100), Resolution::Abort);
        assert_eq!(resolve(Some(&s), &mem, fault(0x900_0000, Access::Read, 0x05), &mut r, 0, 100), Resolution::Abort);
        assert_eq!(resolve(None, &mem, fault(RAM, Access::Read, 0x07), &mut r, 0, 100), Resolution::Abort);
    }

    #[test]
    fn permissions_and_fault_kinds_are_checked() {
        let (mem, _f, s) = setup();
        let mut r = RetryState::default();
        let ro = RAM + (4 << 20);
        assert_eq!(resolve(Some(&s), &mem, fault(ro, Access::Read, 0x07), &mut r, 0, 100), Resolution::Retry);
        assert_eq!(resolve(Some(&s), &mem, fault(ro, Access::Write, 0x0f), &mut r, 0, 100), Resolution::Abort);
        assert_eq!(resolve(Some(&s), &mem, fault(ro, Access::Fetch, 0x0f), &mut r, 0, 100), Resolution::Abort);
        // A stage-1 walk reading a table in the read-only page is a read, whatever the access.
        let walk = Stage2Fault { ipa: ro, access: Access::Write, fsc: 0x07, s1ptw: true };
        assert_eq!(resolve(Some(&s), &mem, walk, &mut r, 0, 100), Resolution::Retry);
        // External abort, alignment, TLB conflict: never retried.
        for fsc in [0x10, 0x21, 0x30, 0x00] {
            assert_eq!(resolve(Some(&s), &mem, fault(RAM, Access::Read, fsc), &mut r, 0, 100), Resolution::Abort);
        }
    }

    #[test]
    fn a_fault_that_does_not_go_away_is_aborted() {
        let (mem, _f, s) = setup();
        let mut r = RetryState::default();
        for _ in 0..MAX_RETRIES {
            assert_eq!(resolve(Some(&s), &mem, fault(RAM + 8, Access::Read, 0x06), &mut r, 0, 100), Resolution::Retry);
        }
        assert_eq!(resolve(Some(&s), &mem, fault(RAM + 16, Access::Read, 0x06), &mut r, 0, 100), Resolution::AbortStuck);
        // Progress elsewhere resets the count.
        assert_eq!(resolve(Some(&s), &mem, fault(RAM + 8, Access::Read, 0x06), &mut r, 0, 100), Resolution::Retry);
        assert_eq!(resolve(Some(&s), &mem, fault(RAM + 0x2000, Access::Read, 0x06), &mut r, 0, 100), Resolution::Retry);
        for _ in 0..MAX_RETRIES - 1 {
            assert_eq!(resolve(Some(&s), &mem, fault(RAM + 0x2000, Access::Read, 0x06), &mut r, 0, 100), Resolution::Retry);
        }
        r.clear();
        assert_eq!(resolve(Some(&s), &mem, fault(RAM + 0x2000, Access::Read, 0x06), &mut r, 0, 100), Resolution::Retry);
        // Retries far apart are separate windows: never aborted however many.
        let mut r = RetryState::default();
        for i in 0..4 * u64::from(MAX_RETRIES) {
            assert_eq!(resolve(Some(&s), &mem, fault(RAM + 8, Access::Read, 0x06), &mut r, i * 1000, 100), Resolution::Retry);
        }
    }

    #[test]
    fn decodes_the_syndrome() {
        let f = Stage2Fault::from_iss(RAM, (1 << 24) | (1 << 6) | 0x06, false);
        assert_eq!((f.access, f.fsc, f.s1ptw), (Access::Write, 0x06, false));
        let f = Stage2Fault::from_iss(RAM, (1 << 7) | 0x07, false);
        assert_eq!((f.access, f.fsc, f.s1ptw), (Access::Read, 0x07, true));
        let f = Stage2Fault::from_iss(RAM, 0x05, true);
        assert_eq!(f.access, Access::Fetch);
    }
}
