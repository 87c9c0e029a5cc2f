//! `vcpu_op` as Xen answers it on ARM: only register_vcpu_info and
//! register_runstate_memory_area exist (everything else is -EINVAL), after the vCPU id check
//! (-ENOENT: at or above the domain's vCPU count). Each vCPU registers its own vcpu_info and
//! runstate area.

use super::event_channel::nr_vcpus;
use super::guest_phys as gp;
use super::{read_arg, HypercallCtx};
use guest_abi::errno::{ret, EINVAL, ENXIO, ESRCH};
use guest_abi::shared_info::{VcpuRunstateInfo, RUNSTATE_RUNNING};
use guest_abi::vcpu::*;

/// sizeof(struct vcpu_info) on arm64.
const VCPU_INFO_SIZE: u64 = 48;

pub fn vcpu_op(cx: &mut HypercallCtx<'_, '_>, cmd: u64, vcpu: u64, arg: u64) -> i64 {
    if vcpu >= u64::from(nr_vcpus(cx)) {
        return ret(guest_abi::errno::ENOENT);
    }
    let vcpu = vcpu as u32;
    let r = match cmd as u32 {
        VCPUOP_REGISTER_VCPU_INFO => register_vcpu_info(cx, vcpu, arg),
        VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA => register_runstate(cx, vcpu, arg),
        _ => Err(ret(EINVAL)),
    };
    r.err().unwrap_or(0)
}

fn register_vcpu_info(cx: &mut HypercallCtx<'_, '_>, vcpu: u32, arg: u64) -> Result<(), i64> {
    let info: VcpuRegisterVcpuInfo = read_arg(cx.mem, arg)?;
    if u64::from(info.offset) > 4096 - VCPU_INFO_SIZE {
        return Err(ret(ENXIO));
    }
    let d = cx.domains.get(cx.caller).ok_or(ret(ESRCH))?;
    // The page is the domain's own RAM for good (its p2m may change, its RAM does not): looked
    // up before the event-channel lock is taken.
    let page = gp::own_ram(d, info.mfn, cx.machine.mem);
    let m = &mut *cx.machine;
    d.with_evtchn(|ev| {
        let Some(slot) = ev.vcpu_info.get(vcpu as usize) else { return Err(ret(EINVAL)) };
        if slot.is_some() {
            return Err(ret(EINVAL)); // Xen 4.17: once registered, always registered
        }
        let new = page.ok_or(ret(EINVAL))? + u64::from(info.offset);
        // Carry the current state over (vCPU 0's lives in shared_info until then; the others
        // have none), then mark everything pending so nothing is lost (as Xen).
        let shinfo = gp::shared_info(ev, m)?;
        let mut cur = [0u8; VCPU_INFO_SIZE as usize];
        if vcpu == 0 {
            m.mem.read(shinfo, &mut cur).map_err(|_| ret(EINVAL))?;
        }
        cur[0] |= 1; // evtchn_upcall_pending: bit 0 set (Xen's test_and_set_bit), the rest kept
        cur[8..16].copy_from_slice(&u64::MAX.to_le_bytes()); // evtchn_pending_sel
        m.mem.write(new, &cur).map_err(|_| ret(EINVAL))?;
        ev.set_vcpu_info(vcpu, new);
        Ok(())
    })
}

fn register_runstate(cx: &mut HypercallCtx<'_, '_>, vcpu: u32, arg: u64) -> Result<(), i64> {
    let area: VcpuRegisterRunstateMemoryArea = read_arg(cx.mem, arg)?;
    let d = cx.domains.get(cx.caller).ok_or(ret(ESRCH))?;
    d.with_evtchn(|ev| match ev.runstate_gva.get_mut(vcpu as usize) {
        Some(slot) => {
            *slot = (area.addr != 0).then_some(area.addr);
            Ok(())
        }
        None => Err(ret(EINVAL)),
    })?;
    if area.addr != 0 {
        // Every vCPU that is up is running (one per physical CPU; vCPUs not started yet are
        // written as running too, which is what they are once up); a guest that gave a bad
        // address just gets nothing. The caller's page tables map the area (kernel VA).
        let rs = VcpuRunstateInfo { state: RUNSTATE_RUNNING, ..Default::default() };
        let _ = super::write_arg(cx.mem, area.addr, &rs);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::guest_phys::env::*;
    use super::*;
    use guest_abi::errno::{EFAULT, ENOENT};
    use platform::PhysMem;

    fn op(e: &mut Env, cmd: u32, vcpu: u64, arg: u64) -> i64 {
        e.call(0, |cx| super::super::dispatch(cx, 24, [u64::from(cmd), vcpu, arg, 0, 0]))
    }

    #[test]
    fn register_vcpu_info_once_within_a_page() {
        let mut e = Env::new();
        let gfn = (RAM >> 12) + 3;
        e.put(0, &VcpuRegisterVcpuInfo { mfn: gfn, offset: 4090, rsvd: 0 });
        assert_eq!(op(&mut e, VCPUOP_REGISTER_VCPU_INFO, 0, ARGS), ret(ENXIO));
        assert_eq!(op(&mut e, VCPUOP_REGISTER_VCPU_INFO, 7, ARGS), ret(ENOENT));
        assert_eq!(op(&mut e, VCPUOP_REGISTER_VCPU_INFO, 0, 0xdead_0000), ret(EFAULT));
        e.put(0, &VcpuRegisterVcpuInfo { mfn: 0x10, offset: 64, rsvd: 0 });
        assert_eq!(op(&mut e, VCPUOP_REGISTER_VCPU_INFO, 0, ARGS), ret(EINVAL), "not RAM");
        e.put(0, &VcpuRegisterVcpuInfo { mfn: gfn, offset: 64, rsvd: 0 });
        assert_eq!(op(&mut e, VCPUOP_REGISTER_VCPU_INFO, 0, ARGS), 0);
        let pa = (gfn << 12) + 64;
        assert_eq!(e.dom(0).with_evtchn(|ev| ev.vcpu_info[0]), Some(pa));
        assert_eq!(e.phys.read_u64(pa + 8).unwrap(), u64::MAX);
        assert_eq!(op(&mut e, VCPUOP_REGISTER_VCPU_INFO, 0, ARGS), ret(EINVAL));
    }

    #[test]
    fn each_vcpu_registers_its_own_vcpu_info_and_runstate() {
        let mut e = Env::new();
        let gfn = (RAM >> 12) + 3;
        e.put(0, &VcpuRegisterVcpuInfo { mfn: gfn, offset: 128, rsvd: 0 });
        assert_eq!(op(&mut e, VCPUOP_REGISTER_VCPU_INFO, 1, ARGS), ret(ENOENT), "one vCPU");
        e.domains.get_mut(0).unwrap().max_vcpus = 2;
        assert_eq!(op(&mut e, VCPUOP_REGISTER_VCPU_INFO, 2, ARGS), ret(ENOENT));
        assert_eq!(op(&mut e, VCPUOP_REGISTER_VCPU_INFO, 1, ARGS), 0);
        assert_eq!(op(&mut e, VCPUOP_REGISTER_VCPU_INFO, 1, ARGS), ret(EINVAL), "once");
        let pa = (gfn << 12) + 128;
        assert_eq!(e.dom(0).with_evtchn(|ev| ev.vcpu_info), [None, Some(pa), None, None]);
        assert_eq!(e.dom(0).take_upcalls(), 1 << 1);
        e.put(0, &VcpuRegisterVcpuInfo { mfn: gfn, offset: 64, rsvd: 0 });
        assert_eq!(op(&mut e, VCPUOP_REGISTER_VCPU_INFO, 0, ARGS), 0, "vCPU 0 still may");
        e.put(0, &VcpuRegisterRunstateMemoryArea { addr: ARGS + 0x100 });
        assert_eq!(op(&mut e, VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, 1, ARGS), 0);
        assert_eq!(e.dom(0).with_evtchn(|ev| ev.runstate_gva), [None, Some(ARGS + 0x100), None, None]);
    }

    #[test]
    fn runstate_and_other_commands() {
        let mut e = Env::new();
        e.put(0, &VcpuRegisterRunstateMemoryArea { addr: ARGS + 0x100 });
        e.put(0x100, &VcpuRunstateInfo { state: 7, ..Default::default() });
        assert_eq!(op(&mut e, VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, 0, ARGS), 0);
        assert_eq!(e.get::<VcpuRunstateInfo>(0x100).state, RUNSTATE_RUNNING);
        e.put(0, &VcpuRegisterRunstateMemoryArea { addr: 0xdead_0000 });
        assert_eq!(op(&mut e, VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, 0, ARGS), 0);
        assert_eq!(op(&mut e, VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, 77, ARGS), ret(ENOENT));
        for cmd in [VCPUOP_UP, VCPUOP_INITIALISE, 99] {
            assert_eq!(op(&mut e, cmd, 0, 0), ret(EINVAL));
        }
    }
}
