//! `console_io`: a domain writes to and reads from the hypervisor console. As in Xen, the
//! command and count are C `unsigned int`s: the upper halves of x0/x1 are ignored.

use super::GuestMemory;
use crate::console;
use crate::domain::Domain;
use guest_abi::console::{CONSOLEIO_READ, CONSOLEIO_WRITE};
use guest_abi::errno::{ret, E2BIG, EFAULT, ENOSYS};

/// Bytes copied from the guest per step; each step reaches the console in one piece (other
/// vCPUs print in between, never inside a step).
const CHUNK: usize = 512;

pub fn console_io(dom: &Domain, mem: &mut dyn GuestMemory, cmd: u64, count: u64, buf: u64) -> i64 {
    // A dom0less domU uses the console as dom0 does (Xen 4.17 answers it the same way; built
    // for release it logs a domU's writes at a level it does not print: xenith prints them,
    // prefixed with the domain).
    let count = count as u32;
    match cmd as u32 {
        CONSOLEIO_WRITE => {

            let mut kbuf = [0u8; CHUNK];
            let mut done = 0u64;
            while done < u64::from(count) {
                let n = core::cmp::min(CHUNK as u64, u64::from(count) - done) as usize;
                if mem.copy_from_guest(buf.wrapping_add(done), &mut kbuf[..n]).is_err() {
                    return ret(EFAULT);
                }
                // A domU's output is tagged once something is there to print (a bad buffer
                // prints nothing).
                let tag = (done == 0 && !dom.is_hardware).then_some(dom.id);
                console::write_guest(tag, &kbuf[..n], dom.is_hardware);
                done += n as u64;
            }
            0
        }
        CONSOLEIO_READ => {
            if (count as i32) < 0 {
                return ret(E2BIG);
            }
            let mut n = 0u32;
            while n < count {
                let Some(b) = console::read_byte() else { break };
                if mem.copy_to_guest(buf.wrapping_add(u64::from(n)), &[b]).is_err() {
                    return ret(EFAULT);
                }
                n += 1;
            }
            i64::from(n)
        }
        _ => ret(ENOSYS),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testmem::*;
    use super::*;

    #[test]
    fn write_returns_zero_and_faults_on_bad_buffers() {
        let mut d = dom0();
        let mut m = FlatMemory::new(0x1000, 0x1000);
        m.bytes[..5].copy_from_slice(b"hello");
        assert_eq!(console_io(&mut d, &mut m, 0, 5, 0x1000), 0);
        assert_eq!(console_io(&mut d, &mut m, 0, 0, 0xdead_0000), 0, "zero bytes touch nothing");
        assert_eq!(console_io(&mut d, &mut m, 0, 5, 0xdead_0000), ret(EFAULT));
        assert_eq!(console_io(&mut d, &mut m, 0, 0x2000, 0x1000), ret(EFAULT), "runs off the end");
        assert_eq!(console_io(&mut d, &mut m, 1 << 32, 5, 0x1000), 0, "upper half of cmd ignored");
    }

    #[test]
    fn read_with_nothing_typed_and_unknown_cmds() {
        let mut d = dom0();
        let mut m = FlatMemory::new(0x1000, 0x1000);
        assert_eq!(console_io(&mut d, &mut m, 1, 16, 0x1000), 0);
        assert_eq!(console_io(&mut d, &mut m, 1, 0x8000_0000, 0x1000), ret(E2BIG));
        assert_eq!(console_io(&mut d, &mut m, 2, 0, 0), ret(ENOSYS));
    }

    #[test]
    fn domus_get_the_same_answers_as_dom0() {
        let mut d = dom0();
        d.is_hardware = false;
        let mut m = FlatMemory::new(0x1000, 0x1000);
        assert_eq!(console_io(&mut d, &mut m, 0, 1, 0x1000), 0, "as Xen 4.17: accepted");
        assert_eq!(console_io(&mut d, &mut m, 0, 5, 0xdead_0000), ret(EFAULT));
        assert_eq!(console_io(&mut d, &mut m, 1, 16, 0x1000), 0);
        assert_eq!(console_io(&mut d, &mut m, 2, 0, 0), ret(ENOSYS));
    }
}
