//! `hvm_op` on ARM: get_param and set_param. HVM_PARAM_CALLBACK_IRQ reports the domain's
//! event-channel PPI in Xen's encoding (type 2 = PPI in bits 63:56, flags in 15:8, PPI in 7:0).

use super::guest_phys as gp;
use super::{read_arg, write_arg, HypercallCtx};
use crate::domain::evtchn::HVM_NR_PARAMS;
use guest_abi::errno::{ret, EINVAL, ENOSYS, EPERM, ESRCH};
use guest_abi::hvm::*;

/// Flags Xen 4.17 reports with it: level triggered, active high.
const CALLBACK_PPI_FLAGS: u64 = 0x2;

pub fn callback_irq_value(ppi: u32) -> u64 {
    (HVM_PARAM_CALLBACK_TYPE_PPI << HVM_PARAM_CALLBACK_TYPE_SHIFT) | (CALLBACK_PPI_FLAGS << 8) | u64::from(ppi & 0xff)
}

pub fn hvm_op(cx: &mut HypercallCtx<'_, '_>, op: u64, arg: u64) -> i64 {
    let set = match op {
        0 => true, // HVMOP_set_param
        1 => false, // HVMOP_get_param
        _ => return ret(ENOSYS),
    };
    let mut p: XenHvmParam = match read_arg(cx.mem, arg) {
        Ok(p) => p,
        Err(e) => return e,
    };
    if p.index as usize >= HVM_NR_PARAMS {
        return ret(EINVAL);
    }
    let target = gp::resolve(cx.caller, p.domid);
    let privileged = cx.domains.get(cx.caller).is_some_and(|d| d.is_hardware);
    let Some(d) = cx.domains.get(target) else { return ret(ESRCH) };
    if target != cx.caller && !privileged {
        return ret(EPERM);
    }
    // Xen's lists: the toolstack's parameters are set by another (privileged) domain only;
    // the guest reads the ones that tell it where xenstore and its console are; nothing else.
    let own = target == cx.caller;
    if set {
        return match p.index {
            HVM_PARAM_CALLBACK_IRQ | HVM_PARAM_STORE_PFN | HVM_PARAM_STORE_EVTCHN | HVM_PARAM_CONSOLE_PFN | HVM_PARAM_CONSOLE_EVTCHN | HVM_PARAM_MONITOR_RING_PFN if own => ret(EPERM),
            HVM_PARAM_CALLBACK_IRQ | HVM_PARAM_STORE_PFN | HVM_PARAM_STORE_EVTCHN | HVM_PARAM_CONSOLE_PFN | HVM_PARAM_CONSOLE_EVTCHN | HVM_PARAM_MONITOR_RING_PFN => {
                d.with_evtchn(|ev| ev.hvm_params[p.index as usize] = p.value);
                0
            }
            _ => ret(EINVAL),
        };
    }
    match p.index {
        HVM_PARAM_CALLBACK_IRQ | HVM_PARAM_STORE_PFN | HVM_PARAM_STORE_EVTCHN | HVM_PARAM_CONSOLE_PFN | HVM_PARAM_CONSOLE_EVTCHN => {}
        HVM_PARAM_MONITOR_RING_PFN if own => return ret(EPERM),
        HVM_PARAM_MONITOR_RING_PFN => {}
        _ => return ret(EINVAL),
    }
    p.value = match p.index {
        // dom0's is set by the domain builder (as Xen's); a dom0less domU's is whatever was set
        // (Xen 4.17 leaves it 0: the PPI is in the guest's DT).
        HVM_PARAM_CALLBACK_IRQ if d.is_hardware => callback_irq_value(d.callback_ppi),
        i => d.with_evtchn(|ev| ev.hvm_params[i as usize]),
    };
    write_arg(cx.mem, arg, &p).err().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::super::guest_phys::env::*;
    use super::*;
    use guest_abi::errno::EFAULT;

    fn op(e: &mut Env, caller: u16, cmd: u64, domid: u16, index: u32, value: u64) -> (i64, u64) {
        e.put(0, &XenHvmParam { domid, index, value });
        let r = e.call(caller, |cx| super::super::dispatch(cx, 34, [cmd, ARGS, 0, 0, 0]));
        (r, e.get::<XenHvmParam>(0).value)
    }

    #[test]
    fn params() {
        let mut e = Env::new();
        assert_eq!(op(&mut e, 0, 1, 0x7ff0, HVM_PARAM_CALLBACK_IRQ, 0), (0, 0x0200_0000_0000_0210));
        assert_eq!(op(&mut e, 0, 1, 0x7ff0, 1000, 0).0, ret(EINVAL));
        assert_eq!(op(&mut e, 0, 1, 0x1234, 0, 0).0, ret(ESRCH));
        assert_eq!(op(&mut e, 0, 0, 1, HVM_PARAM_STORE_PFN, 0x1234).0, 0);
        assert_eq!(op(&mut e, 1, 1, 0x7ff0, HVM_PARAM_STORE_PFN, 0), (0, 0x1234));
        assert_eq!(op(&mut e, 1, 1, 0, HVM_PARAM_STORE_PFN, 0).0, ret(EPERM));
        // A domain sets none of its own; the toolstack sets another's (its event-channel PPI
        // as libxl does), and only the toolstack's parameters.
        assert_eq!(op(&mut e, 0, 0, 0x7ff0, HVM_PARAM_CALLBACK_IRQ, 5).0, ret(EPERM));
        assert_eq!(op(&mut e, 0, 0, 1, HVM_PARAM_CALLBACK_IRQ, 0x0200_0000_0000_031f).0, 0);
        assert_eq!(op(&mut e, 1, 1, 0x7ff0, HVM_PARAM_CALLBACK_IRQ, 0), (0, 0x0200_0000_0000_031f));
        assert_eq!(op(&mut e, 0, 0, 1, 3, 1).0, ret(EINVAL));
        assert_eq!(op(&mut e, 0, 1, 1, 3, 0).0, ret(EINVAL));
        assert_eq!(op(&mut e, 1, 1, 0x7ff0, HVM_PARAM_MONITOR_RING_PFN, 0).0, ret(EPERM));
        assert_eq!(op(&mut e, 0, 99, 0, 0, 0).0, ret(ENOSYS));
        assert_eq!(e.call(0, |cx| hvm_op(cx, 1, 0xdead_0000)), ret(EFAULT));
    }
}
