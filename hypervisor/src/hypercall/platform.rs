//! `platform_op` (the hardware domain's platform control; only settime exists on ARM) and
//! `vm_assist` (the one assist ARM has: the runstate update flag).

use super::{read_arg, HypercallCtx};
use guest_abi::errno::{ret, EACCES, EINVAL, ENOSYS, EPERM};
use guest_abi::hypercall::{VMASST_CMD_DISABLE, VMASST_CMD_ENABLE, VMASST_TYPE_RUNSTATE_UPDATE_FLAG};
use guest_abi::platform::*;

/// Assists a guest may enable on ARM.
const VALID_ASSISTS: u64 = 1 << VMASST_TYPE_RUNSTATE_UPDATE_FLAG;

/// shared_info wallclock fields (arm64 offsets).
const WC_VERSION: u64 = 1072;

pub fn platform_op(cx: &mut HypercallCtx<'_, '_>, arg: u64) -> i64 {
    // Xen's order: copy the argument, check its interface version, then the privilege.
    let head: [u32; 2] = match read_arg(cx.mem, arg) {
        Ok(h) => h,
        Err(e) => return e,
    };
    let (cmd, version) = (head[0], head[1]);
    if version != XENPF_INTERFACE_VERSION {
        return ret(EACCES);
    }
    if !cx.domains.get(cx.caller).is_some_and(|d| d.is_hardware) {
        return ret(EPERM);
    }
    let (secs, nsecs) = match cmd {
        XENPF_SETTIME64 => match read_arg::<XenpfSettime64>(cx.mem, arg.wrapping_add(8)) {
            Ok(t) if t.mbz != 0 => return ret(EINVAL),
            Ok(t) => (t.secs, t.nsecs),
            Err(e) => return e,
        },
        XENPF_SETTIME32 => match read_arg::<XenpfSettime32>(cx.mem, arg.wrapping_add(8)) {
            Ok(t) => (u64::from(t.secs), t.nsecs),
            Err(e) => return e,
        },
        _ => return ret(ENOSYS),
    };
    set_wallclock(cx, secs, nsecs);
    0
}

/// Publish the wallclock in every domain's shared_info (version odd while it changes).
fn set_wallclock(cx: &mut HypercallCtx<'_, '_>, secs: u64, nsecs: u32) {
    let mem = cx.machine.mem;
    for d in cx.domains.iter() {
        let Some(sh) = d.with_evtchn(|ev| ev.shared_info) else { continue };
        let v = mem.read_u32(sh + WC_VERSION).unwrap_or(0);
        let _ = mem.write_u32(sh + WC_VERSION, v.wrapping_add(1) | 1);
        let _ = mem.write_u32(sh + WC_VERSION + 4, secs as u32);
        let _ = mem.write_u32(sh + WC_VERSION + 8, nsecs);
        let _ = mem.write_u32(sh + WC_VERSION + 12, (secs >> 32) as u32);
        let _ = mem.write_u32(sh + WC_VERSION, (v.wrapping_add(1) | 1).wrapping_add(1));
    }
}

pub fn vm_assist(cx: &mut HypercallCtx<'_, '_>, cmd: u64, kind: u64) -> i64 {
    let (cmd, kind) = (cmd as u32, kind as u32);
    if kind >= 64 || VALID_ASSISTS & (1 << kind) == 0 {
        return ret(EINVAL);
    }
    let Some(d) = cx.domains.get(cx.caller) else { return ret(EINVAL) };
    match cmd {
        VMASST_CMD_ENABLE => d.set_vm_assist(kind, true),
        VMASST_CMD_DISABLE => d.set_vm_assist(kind, false),
        _ => return ret(ENOSYS),
    }
    0
}

#[cfg(test)]
mod tests {
    use super::super::guest_phys::env::*;
    use super::*;
    use guest_abi::errno::EFAULT;
    use platform::PhysMem;

    fn settime(e: &mut Env, caller: u16, version: u32, mbz: u32) -> i64 {
        e.put(0, &[XENPF_SETTIME64, version]);
        e.put(8, &XenpfSettime64 { secs: 0x1_2345_6789, nsecs: 5, mbz, system_time: 0 });
        e.call(caller, |cx| super::super::dispatch(cx, 7, [ARGS, 0, 0, 0, 0]))
    }

    #[test]
    fn settime_for_dom0_only() {
        let mut e = Env::new();
        e.call(0, |cx| cx.domains.get(0).unwrap().with_evtchn(|ev| super::super::guest_phys::shared_info(ev, cx.machine).unwrap()));
        assert_eq!(settime(&mut e, 0, XENPF_INTERFACE_VERSION, 0), 0);
        let sh = e.dom(0).with_evtchn(|ev| ev.shared_info).unwrap();
        assert_eq!(e.phys.read_u32(sh + WC_VERSION + 4).unwrap(), 0x2345_6789);
        assert_eq!(e.phys.read_u32(sh + WC_VERSION + 12).unwrap(), 1);
        assert_eq!(e.phys.read_u32(sh + WC_VERSION).unwrap() % 2, 0);
        assert_eq!(settime(&mut e, 0, 1, 0), ret(EACCES));
        assert_eq!(settime(&mut e, 0, XENPF_INTERFACE_VERSION, 1), ret(EINVAL));
        assert_eq!(settime(&mut e, 1, XENPF_INTERFACE_VERSION, 0), ret(EPERM));
        assert_eq!(e.call(0, |cx| platform_op(cx, 0xdead_0000)), ret(EFAULT));
        e.put(0, &[99u32, XENPF_INTERFACE_VERSION]);
        assert_eq!(e.call(0, |cx| platform_op(cx, ARGS)), ret(ENOSYS));
    }

    #[test]
    fn vm_assist_knows_one_type() {
        let mut e = Env::new();
        assert_eq!(e.call(0, |cx| vm_assist(cx, 0, 5)), 0);
        assert_eq!(e.dom(0).vm_assist(), 1 << 5);
        assert_eq!(e.call(0, |cx| vm_assist(cx, 1, 5)), 0);
        assert_eq!(e.call(0, |cx| vm_assist(cx, 0, 31)), ret(EINVAL));
        assert_eq!(e.call(0, |cx| vm_assist(cx, 0, u64::MAX)), ret(EINVAL));
        assert_eq!(e.call(0, |cx| vm_assist(cx, 7, 5)), ret(ENOSYS));
    }
}
