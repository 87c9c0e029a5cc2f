//! `sched_op`: yield and shutdown for now (one vCPU per physical CPU, no scheduler yet).

use super::{read_arg, GuestMemory};
use crate::domain::{Domain, ShutdownReason};
use guest_abi::errno::{ret, EINVAL, ENOSYS};
use guest_abi::sched::*;

pub fn sched_op(dom: &mut Domain, mem: &mut dyn GuestMemory, cmd: u64, arg: u64) -> i64 {
    match cmd as u32 {
        SCHEDOP_YIELD => 0,
        SCHEDOP_SHUTDOWN => {
            let s: SchedShutdown = match read_arg(mem, arg) {
                Ok(v) => v,
                Err(e) => return e,
            };
            match ShutdownReason::from_code(s.reason) {
                Some(r) => {
                    dom.shutdown = Some(r);
                    0
                }
                None => ret(EINVAL),
            }
        }
        _ => ret(ENOSYS),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testmem::*;
    use super::*;
    use guest_abi::errno::EFAULT;

    #[test]
    fn yield_and_unknown() {
        let mut d = dom0();
        let mut m = FlatMemory::new(0x1000, 0x1000);
        assert_eq!(sched_op(&mut d, &mut m, 0, 0), 0);
        assert_eq!(sched_op(&mut d, &mut m, 99, 0), ret(ENOSYS));
        assert_eq!(d.shutdown, None);
    }

    #[test]
    fn shutdown_records_the_reason_or_faults() {
        let mut d = dom0();
        let mut m = FlatMemory::new(0x1000, 0x1000);
        assert_eq!(sched_op(&mut d, &mut m, 2, 0x9999_0000), ret(EFAULT));
        assert_eq!(d.shutdown, None);
        m.bytes[0] = 1;
        assert_eq!(sched_op(&mut d, &mut m, 2, 0x1000), 0);
        assert_eq!(d.shutdown, Some(ShutdownReason::Reboot));
    }
}
