//! The ITS driver, host LPIs and the emulated ITS against a model ITS: commands the
//! hypervisor sends, what a device's MSI then raises, and hostile command queues.

use super::cmd::{Command, CMD_SIZE};
use super::host::{HostIts, TableAlloc, HOST_LPI_PRIORITY};
use super::lpi::{prop_byte, HostLpis, LpiTarget, LPI_BASE};
use super::phys::{gits, ItsError, PhysIts, BASER_VALID};
use super::virt::{CmdError, GuestMem, Vits, VitsConfig};
use crate::domain::mmio::{MmioAccess, MmioResult};
use crate::irq::vgic::{lr, ListRegisters, Vgic};
use crate::sync::SpinMutex;
use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use platform::{MemError, Mmio, PhysMem};
use proptest::prelude::*;

/// Hypervisor memory: 4 MiB at 0x8000_0000.
const HYP_BASE: u64 = 0x8000_0000;
const HYP_SIZE: usize = 4 << 20;
/// The guest's RAM: 1 MiB at 0x4000_0000 (guest-physical).
const GUEST_BASE: u64 = 0x4000_0000;
const GUEST_SIZE: usize = 1 << 20;
const ITS_BASE: u64 = 0x0808_0000;

struct Ram {
    base: u64,
    bytes: RefCell<Vec<u8>>,
}

impl Ram {
    fn new(base: u64, size: usize) -> Rc<Ram> {
        Rc::new(Ram { base, bytes: RefCell::new(vec![0; size]) })
    }
    fn range(&self, pa: u64, len: usize) -> Option<core::ops::Range<usize>> {
        let off = pa.checked_sub(self.base)? as usize;
        let end = off.checked_add(len)?;
        (end <= self.bytes.borrow().len()).then_some(off..end)
    }
}

#[derive(Clone)]
struct Mem(Rc<Ram>);

impl PhysMem for Mem {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let r = self.0.range(pa, buf.len()).ok_or(MemError::NotMemory { pa })?;
        buf.copy_from_slice(&self.0.bytes.borrow()[r]);
        Ok(())
    }
    fn write(&self, pa: u64, data: &[u8]) -> Result<(), MemError> {
        let r = self.0.range(pa, data.len()).ok_or(MemError::NotMemory { pa })?;
        self.0.bytes.borrow_mut()[r].copy_from_slice(data);
        Ok(())
    }
}

impl GuestMem for Mem {
    fn read(&self, ipa: u64, buf: &mut [u8]) -> bool {
        PhysMem::read(self, ipa, buf).is_ok()
    }
}

/// A bump allocator over the hypervisor memory, recording what is given back.
struct Bump {
    next: u64,
    end: u64,
    freed: Rc<RefCell<Vec<(u64, u64)>>>,
}

impl TableAlloc for Bump {
    fn alloc(&mut self, size: u64, align: u64) -> Option<u64> {
        let pa = self.next.div_ceil(align) * align;
        if pa + size > self.end {
            return None;
        }
        self.next = pa + size;
        Some(pa)
    }
    fn free(&mut self, pa: u64, size: u64) {
        self.freed.borrow_mut().push((pa, size));
    }
}

// SAFETY: the tests run on one thread; `Bump` holds an Rc only for the test's own view.
unsafe impl Send for Bump {}

/// A model of the physical ITS: its registers, and on a GITS_CWRITER write it runs the
/// queued commands from memory (MAPD/MAPC/MAPTI/MOVI/DISCARD kept as translation state).
struct ModelState {
    typer: u64,
    ctlr: u32,
    baser: [u64; 8],
    cbaser: u64,
    cwriter: u64,
    creadr: u64,
    mem: Mem,
    log: Vec<Command>,
    /// DeviceID -> (EventID bits, ITT address).
    devices: BTreeMap<u32, (u8, u64)>,
    /// (DeviceID, EventID) -> (LPI, ICID).
    ites: BTreeMap<(u32, u32), (u32, u16)>,
    collections: BTreeMap<u16, u64>,
    /// Stall on this command number.
    stall_on: Option<u8>,
}

#[derive(Clone)]
struct Model(Rc<RefCell<ModelState>>);

impl Model {
    fn new(mem: Mem) -> Model {
        // 16-bit DeviceIDs and EventIDs, 8-byte ITT entries, PTA 0, Physical.
        let typer = 1 | (7 << 4) | (15 << 8) | (15 << 13);
        let mut baser = [0u64; 8];
        baser[0] = (1 << 56) | (7 << 48);
        baser[1] = (4 << 56) | (7 << 48);
        Model(Rc::new(RefCell::new(ModelState {
            typer,
            ctlr: 1 << 31,
            baser,
            cbaser: 0,
            cwriter: 0,
            creadr: 0,
            mem,
            log: Vec::new(),
            devices: BTreeMap::new(),
            ites: BTreeMap::new(),
            collections: BTreeMap::new(),
            stall_on: None,
        })))
    }

    /// What a device's write of `event` to GITS_TRANSLATER raises: (LPI, collection).
    fn translate(&self, device: u32, event: u32) -> Option<(u32, u16)> {
        let s = self.0.borrow();
        let (bits, _) = s.devices.get(&device)?;
        if u64::from(event) >= 1 << bits {
            return None;
        }
        s.ites.get(&(device, event)).copied().filter(|(_, icid)| s.collections.contains_key(icid))
    }

    fn take_log(&self) -> Vec<Command> {
        core::mem::take(&mut self.0.borrow_mut().log)
    }

    fn run(s: &mut ModelState) {
        let size = ((s.cbaser & 0xff) + 1) * 4096;
        let base = s.cbaser & super::phys::PA_MASK;
        while s.creadr != s.cwriter {
            let mut b = [0u8; 32];
            PhysMem::read(&s.mem, base + s.creadr, &mut b).expect("command queue in memory");
            let c = Command::from_bytes(&b);
            if let Command::Unknown(op) = c {
                if Some(op) == s.stall_on {
                    s.creadr |= 1;
                    return;
                }
            }
            if let (Some(op), Command::Mapti { .. }) = (s.stall_on, c) {
                if op == super::cmd::MAPTI {
                    s.creadr |= 1;
                    return;
                }
            }
            match c {
                Command::Mapd { device, bits, itt, valid } => {
                    if valid {
                        s.devices.insert(device, (bits, itt));
                    } else {
                        s.devices.remove(&device);
                        s.ites.retain(|(d, _), _| *d != device);
                    }
                }
                Command::Mapc { icid, rdbase, valid } => {
                    if valid {
                        s.collections.insert(icid, rdbase);
                    } else {
                        s.collections.remove(&icid);
                    }
                }
                Command::Mapti { device, event, intid, icid } => {
                    s.ites.insert((device, event), (intid, icid));
                }
                Command::Movi { device, event, icid } => {
                    if let Some(e) = s.ites.get_mut(&(device, event)) {
                        e.1 = icid;
                    }
                }
                Command::Discard { device, event } => {
                    s.ites.remove(&(device, event));
                }
                _ => {}
            }
            s.log.push(c);
            s.creadr = (s.creadr + 32) % size;
        }
    }
}

impl Mmio for Model {
    fn read32(&self, off: usize) -> u32 {
        let s = self.0.borrow();
        match off {
            gits::CTLR => s.ctlr,
            gits::PIDR2 => 0x3b,
            _ => (self.read64(off & !7) >> (8 * (off & 4))) as u32,
        }
    }
    fn write32(&self, off: usize, v: u32) {
        if off == gits::CTLR {
            let mut s = self.0.borrow_mut();
            s.ctlr = if v & 1 != 0 { 1 } else { 1 << 31 };
        }
    }
    fn read64(&self, off: usize) -> u64 {
        let s = self.0.borrow();
        match off {
            gits::TYPER => s.typer,
            gits::CBASER => s.cbaser,
            gits::CWRITER => s.cwriter,
            gits::CREADR => s.creadr,
            o if (gits::BASER..gits::BASER + 64).contains(&o) => s.baser[(o - gits::BASER) / 8],
            _ => 0,
        }
    }
    fn write64(&self, off: usize, v: u64) {
        let mut s = self.0.borrow_mut();
        match off {
            gits::CBASER => {
                s.cbaser = v;
                s.creadr = 0;
            }
            gits::CWRITER => {
                s.cwriter = v;
                Model::run(&mut s);
            }
            o if (gits::BASER..gits::BASER + 64).contains(&o) => {
                let n = (o - gits::BASER) / 8;
                let fixed = s.baser[n] & ((7 << 56) | (0x1f << 48));
                s.baser[n] = fixed | (v & !((7 << 56) | (0x1f << 48)));
            }
            _ => {}
        }
    }
}

struct Setup {
    model: Model,
    hyp: Mem,
    guest: Mem,
    host: HostIts<Model, Mem, Bump>,
    lpis: Arc<SpinMutex<HostLpis>>,
    prop_table: u64,
    freed: Rc<RefCell<Vec<(u64, u64)>>>,
}

/// Host LPI INTID width used by the tests: 8192 host LPIs.
const HOST_ID_BITS: u8 = 14;

fn setup() -> Setup {
    let hyp = Mem(Ram::new(HYP_BASE, HYP_SIZE));
    let guest = Mem(Ram::new(GUEST_BASE, GUEST_SIZE));
    let model = Model::new(hyp.clone());
    let freed = Rc::new(RefCell::new(Vec::new()));
    let mut bump = Bump { next: HYP_BASE, end: HYP_BASE + HYP_SIZE as u64, freed: freed.clone() };
    let its = PhysIts::probe(model.clone(), ITS_BASE, &hyp, &mut |s, a| bump.alloc(s, a)).expect("probe");
    let prop_table = bump.alloc(super::lpi::prop_table_size(HOST_ID_BITS), 4096).unwrap();
    let lpis = Arc::new(SpinMutex::new(HostLpis::new(HOST_ID_BITS)));
    let mut host = HostIts::new(its, hyp.clone(), bump, lpis.clone(), prop_table);
    host.map_collections(&[0, 1]).expect("collections");
    Setup { model, hyp, guest, host, lpis, prop_table, freed }
}

#[test]
fn commands_round_trip() {
    let all = [
        Command::Movi { device: 7, event: 3, icid: 2 },
        Command::Int { device: u32::MAX, event: u32::MAX },
        Command::Clear { device: 1, event: 2 },
        Command::Sync { rdbase: 3 },
        Command::Mapd { device: 0x10, bits: 5, itt: 0x4567_8900, valid: true },
        Command::Mapd { device: 0x10, bits: 32, itt: 0, valid: false },
        Command::Mapc { icid: 0xffff, rdbase: 0x7_ffff_ffff, valid: true },
        Command::Mapti { device: 8, event: 9, intid: 8192, icid: 1 },
        Command::Mapi { device: 8, event: 9, icid: 1 },
        Command::Inv { device: 8, event: 9 },
        Command::Invall { icid: 4 },
        Command::Movall { from: 1, to: 2 },
        Command::Discard { device: 8, event: 9 },
        Command::Unknown(0x2a),
    ];
    for c in all {
        assert_eq!(Command::decode(c.encode()), c);
        assert_eq!(Command::from_bytes(&c.to_bytes()), c);
    }
    // Field positions from the architecture: MAPTI's pINTID in DW1[63:32], MAPC's RDbase at
    // DW2[51:16] with Valid at bit 63.
    assert_eq!(Command::Mapti { device: 2, event: 3, intid: 8200, icid: 1 }.encode(), [0x2_0000_000a, (8200 << 32) | 3, 1, 0]);
    assert_eq!(Command::Mapc { icid: 5, rdbase: 1, valid: true }.encode(), [0x09, 0, (1 << 63) | (1 << 16) | 5, 0]);
}

#[test]
fn probe_gives_the_its_tables_and_a_queue_in_hypervisor_memory() {
    let s = setup();
    let m = s.model.0.borrow();
    assert_eq!(m.ctlr & 1, 1, "enabled");
    // Device table: 8-byte entries for 2^16 DeviceIDs = 512 KiB (4 KiB pages: 128).
    let dev = m.baser[0];
    assert_ne!(dev & BASER_VALID, 0);
    assert_eq!((dev >> 8) & 3, 0);
    assert_eq!(dev & 0xff, 127);
    let col = m.baser[1];
    assert_ne!(col & BASER_VALID, 0);
    for b in [dev, col, m.cbaser] {
        let pa = b & super::phys::PA_MASK;
        assert!((HYP_BASE..HYP_BASE + HYP_SIZE as u64).contains(&pa), "{pa:#x} in hypervisor memory");
    }
    assert_eq!(m.baser[2], 0, "unused tables stay invalid");
    assert_eq!(s.host.its.tables().len(), 2);
    assert_eq!(s.host.its.doorbell(), ITS_BASE + 0x1_0040);
}

#[test]
fn probe_refuses_what_is_not_an_its() {
    struct NotIts;
    impl Mmio for NotIts {
        fn read32(&self, _: usize) -> u32 {
            0
        }
        fn write32(&self, _: usize, _: u32) {}
    }
    let hyp = Mem(Ram::new(HYP_BASE, 4096));
    let r = PhysIts::probe(NotIts, ITS_BASE, &hyp, &mut |_, _| None);
    assert!(matches!(r, Err(ItsError::NotAnIts { pidr2: 0 })));
}

#[test]
fn host_lpis_allocate_free_and_run_out() {
    let mut l = HostLpis::new(14);
    assert_eq!(l.capacity(), 8192);
    let t = LpiTarget { vcpu: 1, vlpi: 9000 };
    let a = l.alloc(t).unwrap();
    assert_eq!(a, LPI_BASE);
    assert_eq!(l.target(a), Some(t));
    assert!(l.retarget(a, 0));
    assert_eq!(l.target(a).unwrap().vcpu, 0);
    l.free(a);
    l.free(a);
    assert_eq!(l.used(), 0);
    assert_eq!(l.target(a), None);
    assert!(!l.retarget(a, 1));
    for _ in 0..8192 {
        assert!(l.alloc(t).is_some());
    }
    assert_eq!(l.alloc(t), None);
    // Out of range: never a panic.
    assert_eq!(l.target(0), None);
    assert_eq!(l.target(u32::MAX), None);
    l.free(5);
}

#[test]
fn phys_its_reports_a_stalled_queue() {
    let mut s = setup();
    s.model.0.borrow_mut().stall_on = Some(0x3f);
    let r = s.host.its.send(&[Command::Unknown(0x3f)], &s.hyp);
    assert!(matches!(r, Err(ItsError::Stalled { .. })));
}

/// List registers in memory.
struct Lrs([u64; 4]);

impl ListRegisters for Lrs {
    fn count(&self) -> usize {
        4
    }
    fn read(&self, i: usize) -> u64 {
        self.0[i]
    }
    fn write(&mut self, i: usize, v: u64) {
        self.0[i] = v;
    }
    fn set_underflow_irq(&mut self, _: bool) {}
}

/// dom0-like guest: two vCPUs, LPIs on, property table at GUEST_BASE + 0x1_0000, command
/// queue (one page) at GUEST_BASE.
struct Guest {
    vgic: Vgic,
    vits: Vits,
    wptr: u64,
}

const QUEUE: u64 = GUEST_BASE;
const PROP: u64 = GUEST_BASE + 0x1_0000;
const OWNED: (u32, u32) = (0, 0x100);

fn w(offset: u64, size: u8, value: u64) -> MmioAccess {
    MmioAccess { offset, size, write: true, value }
}

fn r(offset: u64, size: u8) -> MmioAccess {
    MmioAccess { offset, size, write: false, value: 0 }
}

fn guest(s: &Setup) -> Guest {
    let mut vgic = Vgic::new(2, &[0x8000_0000, 0x8000_0001]);
    vgic.enable_lpis(16);
    // GICD_CTLR: both groups on; each redistributor: the property table (IDbits 15), LPIs on.
    let _ = vgic.gicd_access(0, w(0, 4, 0b11));
    for v in 0..2u64 {
        let rd = v * 0x2_0000;
        let _ = vgic.gicr_access(0, w(rd + 0x70, 8, PROP | 15));
        let _ = vgic.gicr_access(0, w(rd + 0x14, 4, 0));
        let _ = vgic.gicr_access(0, w(rd, 4, 1));
    }
    let cfg = VitsConfig { devices: vec![OWNED], event_bits: 16, device_bits: 16, vcpus: 2, event_budget: 4096 };
    let mut vits = Vits::new(cfg);
    let _ = vits.access(&w(0x80, 8, (1 << 63) | QUEUE));
    let _ = vits.access(&w(0, 4, 1));
    let _ = s;
    Guest { vgic, vits, wptr: 0 }
}

impl Guest {
    /// Queue `cmds` in the guest's command queue and write GITS_CWRITER.
    fn run(&mut self, s: &mut Setup, cmds: &[Command]) -> u64 {
        for c in cmds {
            PhysMem::write(&s.guest, QUEUE + self.wptr, &c.to_bytes()).unwrap();
            self.wptr = (self.wptr + CMD_SIZE) % 4096;
        }
        let (res, go) = self.vits.access(&w(0x88, 8, self.wptr));
        assert_eq!(res, MmioResult::Done(0));
        assert!(go);
        self.vits.process(&mut self.vgic, &s.guest, &mut s.host)
    }

    fn set_prop(&self, s: &Setup, vlpi: u32, byte: u8) {
        PhysMem::write(&s.guest, PROP + u64::from(vlpi - LPI_BASE), &[byte]).unwrap();
    }
}

/// What Linux does for one MSI-X vector of PCI device 00:02.0 (DeviceID 0x10).
fn linux_like_setup(s: &mut Setup, g: &mut Guest) {
    g.set_prop(s, 8192, prop_byte(0xa0, true));
    g.run(
        s,
        &[
            Command::Mapc { icid: 0, rdbase: 0, valid: true },
            Command::Sync { rdbase: 0 },
            Command::Mapc { icid: 1, rdbase: 1, valid: true },
            Command::Sync { rdbase: 1 },
            Command::Invall { icid: 0 },
            Command::Mapd { device: 0x10, bits: 2, itt: GUEST_BASE + 0x8000, valid: true },
            Command::Mapti { device: 0x10, event: 0, intid: 8192, icid: 1 },
            Command::Inv { device: 0x10, event: 0 },
            Command::Sync { rdbase: 1 },
        ],
    );
}

#[test]
fn a_guest_mapping_becomes_a_physical_one_and_its_msi_reaches_the_vcpu() {
    let mut s = setup();
    let mut g = guest(&s);
    s.model.take_log();
    linux_like_setup(&mut s, &mut g);
    assert_eq!(g.vits.refused, 0, "{:?}", g.vits.last_error);
    // Physically: the device with an ITT in hypervisor memory, the event on a host LPI of
    // collection 1 (CPU 1 runs vCPU 1), enabled at the host's priority.
    let log = s.model.take_log();
    let Some(Command::Mapd { device: 0x10, bits: 2, itt, valid: true }) = log.first().copied() else { panic!("{log:?}") };
    assert!((HYP_BASE..HYP_BASE + HYP_SIZE as u64).contains(&itt), "ITT {itt:#x} is the hypervisor's, not the guest's");
    let (hlpi, icid) = s.model.translate(0x10, 0).expect("device write translates");
    assert_eq!(icid, 1);
    assert!(hlpi >= LPI_BASE);
    let mut b = [0u8];
    PhysMem::read(&s.hyp, s.prop_table + u64::from(hlpi - LPI_BASE), &mut b).unwrap();
    assert_eq!(b[0], prop_byte(HOST_LPI_PRIORITY, true));
    assert_eq!(s.lpis.lock().target(hlpi), Some(LpiTarget { vcpu: 1, vlpi: 8192 }));
    // The host LPI fires: the vLPI goes into vCPU 1's list registers, no HW bit.
    assert_eq!(Vits::deliver(&mut g.vgic, 8192), Some(1));
    let mut lrs = Lrs([0; 4]);
    g.vgic.flush(0, &mut lrs);
    assert!(lrs.0.iter().all(|&v| v == 0), "not for vCPU 0");
    g.vgic.flush(1, &mut lrs);
    assert_eq!(lr::intid(lrs.0[0]), 8192);
    assert!(lr::is_pending(lrs.0[0]));
    assert_eq!(lrs.0[0] & lr::HW, 0);
    assert_eq!(lr::priority(lrs.0[0]), 0xa0);
    // The guest acknowledges and EOIs: the LR is free again.
    lrs.0[0] = 0;
    g.vgic.sync(1, &mut lrs);
    assert!(!g.vgic.has_deliverable(1));
}

#[test]
fn masked_lpis_wait_until_the_guest_enables_them_and_invalidates() {
    let mut s = setup();
    let mut g = guest(&s);
    linux_like_setup(&mut s, &mut g);
    g.set_prop(&s, 8192, prop_byte(0xa0, false));
    g.run(&mut s, &[Command::Inv { device: 0x10, event: 0 }]);
    Vits::deliver(&mut g.vgic, 8192);
    assert!(!g.vgic.has_deliverable(1));
    g.set_prop(&s, 8192, prop_byte(0x80, true));
    g.run(&mut s, &[Command::Invall { icid: 1 }]);
    assert!(g.vgic.has_deliverable(1));
    let mut lrs = Lrs([0; 4]);
    g.vgic.flush(1, &mut lrs);
    assert_eq!(lr::priority(lrs.0[0]), 0x80);
}

#[test]
fn movi_and_discard_follow_through_to_the_physical_its() {
    let mut s = setup();
    let mut g = guest(&s);
    linux_like_setup(&mut s, &mut g);
    let (hlpi, _) = s.model.translate(0x10, 0).unwrap();
    g.run(&mut s, &[Command::Movi { device: 0x10, event: 0, icid: 0 }]);
    assert_eq!(s.model.translate(0x10, 0), Some((hlpi, 0)));
    assert_eq!(g.vgic.lpi_target(8192), Some(0));
    assert_eq!(s.lpis.lock().target(hlpi).unwrap().vcpu, 0);
    g.run(&mut s, &[Command::Discard { device: 0x10, event: 0 }]);
    assert_eq!(s.model.translate(0x10, 0), None);
    assert_eq!(s.lpis.lock().used(), 0);
    assert_eq!(g.vgic.lpi_target(8192), None);
    assert_eq!(Vits::deliver(&mut g.vgic, 8192), None);
    // Unmapping the device gives its ITT back.
    g.run(&mut s, &[Command::Mapd { device: 0x10, bits: 1, itt: 0, valid: false }]);
    assert_eq!(s.freed.borrow().len(), 1);
    assert_eq!(s.host.mapped_devices(), 0);
}

#[test]
fn int_and_clear_act_on_the_virtual_lpi_only() {
    let mut s = setup();
    let mut g = guest(&s);
    linux_like_setup(&mut s, &mut g);
    s.model.take_log();
    let kick = g.run(&mut s, &[Command::Int { device: 0x10, event: 0 }]);
    assert_eq!(kick, 1 << 1);
    assert!(g.vgic.has_deliverable(1));
    g.run(&mut s, &[Command::Clear { device: 0x10, event: 0 }]);
    assert!(!g.vgic.has_deliverable(1));
    assert!(s.model.take_log().is_empty());
}

#[test]
fn hostile_commands_are_ignored_and_reach_nothing_physical() {
    let mut s = setup();
    let mut g = guest(&s);
    linux_like_setup(&mut s, &mut g);
    s.model.take_log();
    let before = g.vits.refused;
    let cases: [(Command, CmdError); 12] = [
        // A DeviceID no device of the domain uses.
        (Command::Mapd { device: 0x100, bits: 2, itt: 0, valid: true }, CmdError::DeviceNotOwned(0x100)),
        (Command::Mapd { device: u32::MAX, bits: 2, itt: 0, valid: false }, CmdError::DeviceNotOwned(u32::MAX)),
        // An ITT beyond the EventID width or the budget.
        (Command::Mapd { device: 0x11, bits: 17, itt: 0, valid: true }, CmdError::IttTooLarge { device: 0x11, bits: 17 }),
        (Command::Mapd { device: 0x11, bits: 13, itt: 0, valid: true }, CmdError::IttTooLarge { device: 0x11, bits: 13 }),
        // EventIDs beyond the declared ITT, LPIs outside the range, unmapped collections.
        (Command::Mapti { device: 0x10, event: 4, intid: 8200, icid: 0 }, CmdError::EventOutOfRange { device: 0x10, event: 4 }),
        (Command::Mapti { device: 0x10, event: 1, intid: 8191, icid: 0 }, CmdError::BadLpi(8191)),
        (Command::Mapti { device: 0x10, event: 1, intid: 1 << 16, icid: 0 }, CmdError::BadLpi(1 << 16)),
        (Command::Mapti { device: 0x10, event: 1, intid: 8192, icid: 0 }, CmdError::LpiInUse(8192)),
        (Command::Mapti { device: 0x10, event: 1, intid: 8300, icid: 9 }, CmdError::CollectionUnmapped(9)),
        (Command::Mapc { icid: 2, rdbase: 2, valid: true }, CmdError::BadTarget(2)),
        (Command::Movi { device: 0x12, event: 0, icid: 0 }, CmdError::DeviceUnmapped(0x12)),
        (Command::Unknown(0x29), CmdError::Unknown(0x29)),
    ];
    for (i, (c, e)) in cases.iter().enumerate() {
        g.run(&mut s, &[*c]);
        assert_eq!(g.vits.last_error, Some(*e), "case {i}: {c:?}");
        assert_eq!(g.vits.refused, before + i as u64 + 1);
    }
    assert!(s.model.take_log().is_empty(), "no physical command for a refused one");
    assert!(!g.vits.is_stalled(), "parameter errors do not stall the queue");
    // The mapping made before is intact.
    assert!(s.model.translate(0x10, 0).is_some());
}

#[test]
fn many_small_devices_run_into_the_budget() {
    let mut s = setup();
    let mut g = guest(&s);
    // Budget 4096 events, each device charged at least 256: 16 devices, the 17th refused.
    let cmds: Vec<Command> = (0..17).map(|d| Command::Mapd { device: d, bits: 1, itt: 0, valid: true }).collect();
    g.run(&mut s, &cmds);
    assert_eq!(s.host.mapped_devices(), 16);
    assert_eq!(g.vits.last_error, Some(CmdError::IttTooLarge { device: 16, bits: 1 }));
    // Unmapping one gives its share back.
    g.run(&mut s, &[Command::Mapd { device: 0, bits: 1, itt: 0, valid: false }, Command::Mapd { device: 16, bits: 1, itt: 0, valid: true }]);
    assert_eq!(s.host.mapped_devices(), 16);
}

#[test]
fn a_queue_outside_the_guests_ram_stalls_and_hypervisor_memory_is_untouched() {
    let mut s = setup();
    let mut g = guest(&s);
    s.model.take_log();
    let snapshot = s.hyp.0.bytes.borrow().clone();
    // Disable, aim the queue at hypervisor memory (Valid), enable, kick.
    let _ = g.vits.access(&w(0, 4, 0));
    let _ = g.vits.access(&w(0x80, 8, (1 << 63) | HYP_BASE | 0xff));
    assert_eq!(g.vits.access(&r(0x80, 8)).0, MmioResult::Done((1 << 63) | HYP_BASE | 0xff), "the register takes a guest address");
    let _ = g.vits.access(&w(0, 4, 1));
    let _ = g.vits.access(&w(0x88, 8, 0x40));
    g.vits.process(&mut g.vgic, &s.guest, &mut s.host);
    assert!(g.vits.is_stalled());
    assert_eq!(g.vits.access(&r(0x90, 8)).0, MmioResult::Done(1), "GITS_CREADR.Stalled, offset 0");
    assert_eq!(*s.hyp.0.bytes.borrow(), snapshot, "hypervisor memory untouched");
    assert!(s.model.take_log().is_empty());
    // A GITS_CWRITER beyond the queue stalls too; Retry does not help until it is fixed.
    let _ = g.vits.access(&w(0, 4, 0));
    let _ = g.vits.access(&w(0x80, 8, (1 << 63) | QUEUE));
    let _ = g.vits.access(&w(0, 4, 1));
    let _ = g.vits.access(&w(0x88, 8, 0x2000));
    g.vits.process(&mut g.vgic, &s.guest, &mut s.host);
    assert!(g.vits.is_stalled());
    let _ = g.vits.access(&w(0x88, 8, 0x20 | 1));
    PhysMem::write(&s.guest, QUEUE, &Command::Mapc { icid: 0, rdbase: 0, valid: true }.to_bytes()).unwrap();
    g.vits.process(&mut g.vgic, &s.guest, &mut s.host);
    assert!(!g.vits.is_stalled());
    assert_eq!(g.vits.access(&r(0x90, 8)).0, MmioResult::Done(0x20));
}

#[test]
fn registers_follow_the_architecture() {
    let s = setup();
    let mut g = guest(&s);
    let rd = |g: &mut Guest, off: u64, size: u8| match g.vits.access(&r(off, size)).0 {
        MmioResult::Done(v) => v,
        MmioResult::Abort => panic!("abort at {off:#x}"),
    };
    assert_eq!(rd(&mut g, 0, 4), 1, "enabled, not quiescent");
    let typer = rd(&mut g, 0x8, 8);
    assert_eq!(typer & 1, 1);
    assert_eq!((typer >> 8) & 0x1f, 15);
    assert_eq!(typer & (1 << 19), 0, "PTA 0");
    assert_eq!(rd(&mut g, 0xc, 4), typer >> 32);
    assert_eq!((rd(&mut g, 0xffe8, 4) >> 4) & 0xf, 3);
    // GITS_BASER0: Type Device, entry size fixed; the guest's address taken while disabled.
    let _ = g.vits.access(&w(0, 4, 0));
    assert_eq!(rd(&mut g, 0, 4), 1 << 31);
    let _ = g.vits.access(&w(0x100, 8, (1 << 63) | (1 << 62) | (3 << 56) | 0x4004_0000 | 3));
    let b0 = rd(&mut g, 0x100, 8);
    assert_eq!(b0, (1 << 63) | (1 << 56) | (7 << 48) | 0x4004_0000 | 3, "Type and entry size read-only, Indirect RAZ");
    assert_eq!(rd(&mut g, 0x110, 8), 0, "no third table");
    let _ = g.vits.access(&w(0x110, 8, u64::MAX));
    assert_eq!(rd(&mut g, 0x110, 8), 0);
    // Bad sizes abort.
    assert_eq!(g.vits.access(&r(0x0, 8)).0, MmioResult::Abort);
    assert_eq!(g.vits.access(&r(0x80, 2)).0, MmioResult::Abort);
    assert_eq!(g.vits.access(&r(0x84, 8)).0, MmioResult::Abort);
}

#[test]
fn vgic_advertises_lpis_only_when_offered() {
    let mut v = Vgic::new(2, &[0x8000_0000]);
    assert_eq!(v.gicd_typer() & (1 << 17), 0);
    assert_eq!(v.gicr_access(0, r(0x70, 8)), MmioResult::Done(0));
    let _ = v.gicr_access(0, w(0x70, 8, PROP | 15));
    assert_eq!(v.gicr_access(0, r(0x70, 8)), MmioResult::Done(0), "RAZ/WI without LPIs");
    v.enable_lpis(16);
    assert_eq!(v.gicd_typer() & (1 << 17), 1 << 17);
    assert_eq!((v.gicd_typer() >> 19) & 0x1f, 15);
    assert_eq!(v.gicr_access(0, r(0x8, 8)), MmioResult::Done(v.gicr_typer(0)));
    assert_eq!(v.gicr_typer(0) & 1, 1);
    let _ = v.gicr_access(0, w(0x70, 8, PROP | 15 | (1 << 62)));
    assert_eq!(v.gicr_access(0, r(0x70, 8)), MmioResult::Done(PROP | 15));
    let _ = v.gicr_access(0, w(0x78, 8, 0x4002_0000 | (1 << 62)));
    assert_eq!(v.gicr_access(0, r(0x78, 8)), MmioResult::Done(0x4002_0000), "PTZ reads 0");
    let _ = v.gicr_access(0, w(0, 4, 1));
    assert_eq!(v.gicr_access(0, r(0, 4)), MmioResult::Done(1));
    // Frozen while LPIs are enabled.
    let _ = v.gicr_access(0, w(0x70, 8, 0));
    assert_eq!(v.gicr_access(0, r(0x70, 8)), MmioResult::Done(PROP | 15));
    assert_eq!(v.lpi_prop_addr(0, 8192), Some(PROP));
    assert_eq!(v.lpi_prop_addr(0, 8191), None);
    assert_eq!(v.lpi_prop_addr(0, 1 << 16), None);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any sequence of commands — random bytes, or well-formed commands with random fields —
    /// leaves the emulation consistent: every physical mapping belongs to an owned device,
    /// host LPIs in use equal the events mapped, and nothing panics.
    #[test]
    fn random_command_queues_keep_the_books_straight(
        cmds in proptest::collection::vec(
            prop_oneof![
                any::<[u64; 4]>().prop_map(Command::decode),
                (0u32..0x120, 0u8..20, any::<bool>()).prop_map(|(device, bits, valid)| Command::Mapd { device, bits: bits.max(1), itt: 0, valid }),
                (0u16..4, 0u64..3, any::<bool>()).prop_map(|(icid, rdbase, valid)| Command::Mapc { icid, rdbase, valid }),
                (0u32..0x120, 0u32..8, 8180u32..8300, 0u16..4).prop_map(|(device, event, intid, icid)| Command::Mapti { device, event, intid, icid }),
                (0u32..0x120, 0u32..8, 0u16..4).prop_map(|(device, event, icid)| Command::Movi { device, event, icid }),
                (0u32..0x120, 0u32..8).prop_map(|(device, event)| Command::Discard { device, event }),
                (0u32..0x120, 0u32..8).prop_map(|(device, event)| Command::Int { device, event }),
            ],
            1..60,
        )
    ) {
        let mut s = setup();
        let mut g = guest(&s);
        for chunk in cmds.chunks(7) {
            g.run(&mut s, chunk);
        }
        let m = s.model.0.borrow();
        for d in m.devices.keys() {
            prop_assert!(*d >= OWNED.0 && *d < OWNED.0 + OWNED.1, "device {d:#x}");
        }
        prop_assert_eq!(s.lpis.lock().used(), g.vits.mapped_events());
        prop_assert_eq!(m.ites.len(), g.vits.mapped_events());
        prop_assert!(!g.vits.is_stalled());
    }
}
