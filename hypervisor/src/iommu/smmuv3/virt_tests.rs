//! Host tests of dom0's emulated SMMUv3: what it offers, a bring-up in the order Linux's
//! arm-smmu-v3 driver does it, the physical STEs and invalidations it asks for, and SMMUv3's
//! error behaviour on bad commands, stream table entries and context descriptors.

use core::cell::RefCell;
use std::vec::Vec;

use super::event::EventType;
use super::features::{IdRegs, SmmuFeatures};
use super::model::qemu_stage2_idr;
use super::regs::off;
use super::virt::*;

const RAM: u64 = 0x4000_0000;
const RAM_SIZE: u64 = 0x10_0000;
const L1: u64 = RAM + 0x1000;
const L2: u64 = RAM + 0x4000;
const CMDQ: u64 = RAM + 0x8000;
const EVTQ: u64 = RAM + 0xc000;
const CD: u64 = RAM + 0xe000;
const PGD: u64 = RAM + 0x2_0000;
const SID: u32 = 0x10;

/// dom0's RAM: one bank at RAM.
struct Mem(RefCell<Vec<u8>>);

impl Mem {
    fn new() -> Self {
        Mem(RefCell::new(vec![0; RAM_SIZE as usize]))
    }
    fn put(&self, ipa: u64, words: &[u64]) {
        for (i, w) in words.iter().enumerate() {
            assert!(self.write(ipa + i as u64 * 8, &w.to_le_bytes()));
        }
    }
    fn get(&self, ipa: u64) -> u64 {
        let mut b = [0u8; 8];
        assert!(self.read(ipa, &mut b));
        u64::from_le_bytes(b)
    }
}

impl GuestMem for Mem {
    fn read(&self, ipa: u64, buf: &mut [u8]) -> bool {
        let Some(o) = ipa.checked_sub(RAM) else { return false };
        if o + buf.len() as u64 > RAM_SIZE {
            return false;
        }
        buf.copy_from_slice(&self.0.borrow()[o as usize..o as usize + buf.len()]);
        true
    }
    fn write(&self, ipa: u64, data: &[u8]) -> bool {
        let Some(o) = ipa.checked_sub(RAM) else { return false };
        if o + data.len() as u64 > RAM_SIZE {
            return false;
        }
        self.0.borrow_mut()[o as usize..o as usize + data.len()].copy_from_slice(data);
        true
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Op {
    Install(u32, PhysSte),
    Tlbi(PhysTlbi),
    Sync,
}

#[derive(Default)]
struct Backend(Vec<Op>);

impl VsmmuBackend for Backend {
    fn install(&mut self, sid: u32, ste: PhysSte) {
        self.0.push(Op::Install(sid, ste));
    }
    fn tlbi(&mut self, op: PhysTlbi) {
        self.0.push(Op::Tlbi(op));
    }
    fn sync(&mut self) {
        self.0.push(Op::Sync);
    }
}

/// QEMU 10's nested SMMUv3: stage 1 and 2.
fn phys() -> (SmmuFeatures, u32) {
    let mut idr = qemu_stage2_idr();
    idr[0] |= 1 << 1;
    (SmmuFeatures::decode(IdRegs(idr)), idr[0])
}

fn vsmmu() -> Vsmmu {
    let (phys, phys_idr0) = phys();
    Vsmmu::new(VsmmuConfig { phys, phys_idr0, sids: vec![SID, SID + 1], ram: vec![(RAM, RAM_SIZE)], ipa_bits: 40 })
}

struct Rig {
    v: Vsmmu,
    mem: Mem,
    be: Backend,
    prod: u32,
}

impl Rig {
    fn w32(&mut self, o: usize, v: u32) {
        self.v.write(o as u64, 4, u64::from(v), &self.mem, &mut self.be);
    }
    fn w64(&mut self, o: usize, v: u64) {
        self.v.write(o as u64, 8, v, &self.mem, &mut self.be);
    }
    fn r32(&self, o: usize) -> u32 {
        self.v.read(o as u64, 4) as u32
    }
    /// Put commands in dom0's queue and publish them.
    fn cmds(&mut self, cmds: &[[u64; 2]]) {
        for c in cmds {
            let idx = self.prod & 0xff;
            self.mem.put(CMDQ + u64::from(idx) * 16, c);
            self.prod = (self.prod + 1) & 0x1ff;
        }
        let p = self.prod;
        self.w32(off::CMDQ_PROD, p);
    }
    /// The STE for `sid` in the level-2 array.
    fn ste(&self, sid: u32, words: [u64; 8]) {
        self.mem.put(L2 + u64::from(sid & 0xff) * 64, &words);
    }
}

const SYNC: [u64; 2] = [0x46, 0];
fn cfgi_ste(sid: u32) -> [u64; 2] {
    [0x03 | (u64::from(sid) << 32), 1]
}

/// An S1 STE pointing at `cd`, as Linux writes one (S1DSS, cacheability, NS-EL1).
fn s1_ste(cd: u64) -> [u64; 8] {
    [1 | (0b101 << 1) | cd, (1 << 2) | (1 << 4) | (3 << 6), 0, 0, 0, 0, 0, 0]
}

/// A CD as Linux writes one: 48-bit VA, 4K, WBWA inner shareable, EPD1, IPS 40 bits, AA64, R,
/// A, ASET, ASID 5, TTB0 = `ttb`.
fn cd(ttb: u64) -> [u64; 8] {
    let w0 = 16 | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 30) | (1 << 31) | (2 << 32) | (1 << 41) | (1 << 45) | (1 << 46) | (1 << 47) | (5 << 48);
    [w0, ttb, 0, 0x0404_ff44, 0, 0, 0, 0]
}

/// Linux's bring-up: disabled, tables and queues programmed, command queue on, CFGI_ALL and
/// TLBI_NSNH_ALL with syncs, event queue on, interrupts, then SMMUEN.
fn brought_up() -> Rig {
    let mut r = Rig { v: vsmmu(), mem: Mem::new(), be: Backend::default(), prod: 0 };
    r.w32(off::CR0, 0);
    assert_eq!(r.r32(off::CR0ACK), 0);
    r.w32(off::CR1, 0x555);
    r.w32(off::CR2, 0x6);
    // 2-level, SPLIT 8, 16-bit StreamIDs: 256 level-1 descriptors.
    r.w64(off::STRTAB_BASE, (1 << 62) | L1);
    r.w32(off::STRTAB_BASE_CFG, (1 << 16) | (8 << 6) | 16);
    // Level-1 descriptor for StreamIDs 0..255: span 9 (256 STEs), every STE abort.
    r.mem.put(L1, &[L2 | 9]);
    for s in 0..256 {
        r.ste(s, [1, 0, 0, 0, 0, 0, 0, 0]);
    }
    r.w64(off::CMDQ_BASE, (1 << 62) | CMDQ | 8);
    r.w32(off::CMDQ_PROD, 0);
    r.w32(off::CMDQ_CONS, 0);
    r.w32(off::CR0, 1 << 3);
    assert_eq!(r.r32(off::CR0ACK), 1 << 3);
    r.cmds(&[[0x04, 31], SYNC, [0x30, 0], SYNC]);
    assert_eq!(r.r32(off::CMDQ_CONS), 4, "consumed, no error");
    r.w64(off::EVENTQ_BASE, (1 << 62) | EVTQ | 7);
    r.w32(off::EVENTQ_PROD, 0);
    r.w32(off::EVENTQ_CONS, 0);
    r.w32(off::CR0, (1 << 3) | (1 << 2));
    r.w32(off::IRQ_CTRL, 0);
    assert_eq!(r.r32(off::IRQ_CTRLACK), 0);
    r.w32(off::IRQ_CTRL, 0b101);
    assert_eq!(r.r32(off::IRQ_CTRLACK), 0b101);
    r.be.0.clear();
    r.w32(off::CR0, (1 << 3) | (1 << 2) | 1);
    assert_eq!(r.r32(off::CR0ACK), 0b1101);
    r
}

#[test]
fn offers_stage_1_only_with_what_linux_needs() {
    let v = vsmmu();
    let [i0, i1, i2, i3, i4, i5] = v.idr();
    assert_eq!(i0 & 0b11, 0b10, "S1P, no S2P");
    assert_eq!((i0 >> 2) & 3, 2, "AArch64 tables only");
    assert_eq!((i0 >> 27) & 3, 1, "2-level stream tables");
    assert_eq!((i0 >> 24) & 3, 1, "no stalls");
    assert_eq!((i0 >> 21) & 3, 2, "little-endian tables, as the physical SMMU");
    assert_eq!(i0 & (1 << 4), 1 << 4, "coherent, as the physical SMMU");
    for (bit, what) in [(5, "BTM"), (6, "HTTU"), (9, "HYP"), (10, "ATS"), (13, "MSI"), (14, "SEV"), (16, "PRI"), (18, "VMID16")] {
        assert_eq!(i0 & (1 << bit), 0, "{what} not offered");
    }
    assert_eq!(i1 & 0x3f, 16, "the physical StreamID width");
    assert_eq!((i1 >> 6) & 0x1f, 0, "one CD per stream");
    assert!((i1 >> 21) & 0x1f > 6, "Linux wants more than 64 command slots");
    assert_eq!(i1 & (7 << 29), 0, "nothing preset");
    assert_eq!((i2, i4), (0, 0));
    assert_eq!(i3 & (1 << 10), 1 << 10, "range invalidation, as the physical SMMU");
    assert_eq!(i5 & 7, 2, "40-bit output: dom0's IPA size, below the physical 44 bits");
    assert_eq!(i5 & 0x70, 0x50, "4K and 64K granules, as the physical SMMU");
    // Register reads of the ID registers, and RAZ elsewhere.
    assert_eq!(v.read(0, 4) as u32, i0);
    assert_eq!(v.read(0x14, 4) as u32, i5);
    assert_eq!(v.read(0x18, 2), 0);
    assert_eq!(v.read(0x1f00, 4), 0);
}

#[test]
fn linux_bring_up_then_a_stage_1_stream() {
    let mut r = brought_up();
    // Enabling installs every stream from dom0's (abort) STEs, then one sync.
    assert_eq!(r.be.0, vec![Op::Install(SID, PhysSte::Abort), Op::Install(SID + 1, PhysSte::Abort), Op::Sync]);
    r.be.0.clear();
    r.mem.put(CD, &cd(PGD));
    r.ste(SID, s1_ste(CD));
    r.cmds(&[cfgi_ste(SID), SYNC]);
    assert_eq!(r.be.0, vec![Op::Install(SID, PhysSte::Nested { cd: CD }), Op::Sync]);
    assert_eq!(r.v.installed(SID), Some(PhysSte::Nested { cd: CD }));
    // Bypass becomes dom0's stage 2 alone.
    r.ste(SID + 1, [1 | (0b100 << 1), 1 << 44, 0, 0, 0, 0, 0, 0]);
    r.cmds(&[cfgi_ste(SID + 1), SYNC]);
    assert_eq!(r.v.installed(SID + 1), Some(PhysSte::Stage2));
    // A StreamID dom0 has no device on is ignored (no physical STE touched).
    r.be.0.clear();
    r.cmds(&[cfgi_ste(0x33), SYNC]);
    assert_eq!(r.be.0, vec![Op::Sync]);
    assert_eq!(r.r32(off::GERROR), 0);
    // Disabling falls back to GBPA (bypass: stage 2), with ABORT set: abort.
    r.w32(off::CR0, 0b1100);
    assert_eq!(r.v.installed(SID), Some(PhysSte::Stage2));
    r.w32(off::GBPA, (1 << 31) | (1 << 20));
    assert_eq!(r.r32(off::GBPA), 1 << 20, "UPDATE completes at once");
    assert_eq!(r.v.installed(SID), Some(PhysSte::Abort));
}

#[test]
fn invalidations_become_physical_stage_1_invalidations() {
    let mut r = brought_up();
    r.be.0.clear();
    let va = [0x12 | (5 << 48) | (3 << 12) | (1 << 20), (1 << 10) | (3 << 8) | 1 | 0x7f_1234_5000];
    r.cmds(&[[0x11 | (5 << 48), 0], va, [0x10, 0], [0x13, 0x1000], SYNC]);
    assert_eq!(
        r.be.0,
        vec![
            Op::Tlbi(PhysTlbi::Asid { asid: 5 }),
            Op::Tlbi(PhysTlbi::Va {
                asid: 5,
                addr: 0x7f_1234_5000,
                leaf: true,
                ttl: 3,
                range: Some(super::cmd::TlbiRange { tg: 1, num: 3, scale: 1 })
            }),
            Op::Tlbi(PhysTlbi::All),
            Op::Tlbi(PhysTlbi::All),
            Op::Sync
        ]
    );
    // Prefetches are accepted and do nothing.
    r.be.0.clear();
    r.cmds(&[[0x01 | (u64::from(SID) << 32), 0], SYNC]);
    assert_eq!(r.be.0, vec![Op::Sync]);
}

#[test]
fn a_bad_command_stops_the_queue_until_acknowledged() {
    let mut r = brought_up();
    r.be.0.clear();
    // TLBI_S12_VMALL (stage 2 is not offered), then a sync behind it.
    r.cmds(&[SYNC, [0x28 | (1 << 32), 0], SYNC]);
    let cons = r.r32(off::CMDQ_CONS);
    assert_eq!(cons & 0xfffff, 5, "stopped at the bad command");
    assert_eq!((cons >> 24) & 0x7f, CERROR_ILL);
    assert_eq!(r.r32(off::GERROR) & 1, 1, "CMDQ_ERR active");
    assert_eq!(r.be.0, vec![Op::Sync]);
    // Nothing moves while the error is active, even with more commands.
    r.cmds(&[SYNC]);
    assert_eq!(r.r32(off::CMDQ_CONS) & 0xfffff, 5);
    // Software replaces the command (Linux writes a CMD_SYNC over it) and acknowledges.
    r.mem.put(CMDQ + 5 * 16, &SYNC);
    let g = r.r32(off::GERROR);
    r.w32(off::GERRORN, g);
    assert_eq!(r.r32(off::CMDQ_CONS), 8, "resumed to PROD, ERR cleared");
    // Every opcode that is not offered is CERROR_ILL; an unknown one too.
    for op in [0x20u64, 0x21, 0x22, 0x2a, 0x28, 0x40, 0x41, 0x44, 0x45, 0x7f, 0xff, 0x00] {
        r.cmds(&[[op, 0]]);
        assert_eq!((r.r32(off::CMDQ_CONS) >> 24) & 0x7f, CERROR_ILL, "opcode {op:#x}");
        let at = r.r32(off::CMDQ_CONS) & 0xff;
        r.mem.put(CMDQ + u64::from(at) * 16, &SYNC);
        let g = r.r32(off::GERROR);
        r.w32(off::GERRORN, g);
        assert_eq!((r.r32(off::CMDQ_CONS) >> 24) & 0x7f, CERROR_NONE);
    }
    // A CFGI_CD for a substream (SSIDSIZE is 0), a StreamID wider than SIDSIZE.
    r.cmds(&[[0x05 | (1 << 12) | (u64::from(SID) << 32), 0]]);
    assert_eq!((r.r32(off::CMDQ_CONS) >> 24) & 0x7f, CERROR_ILL);
}

#[test]
fn a_command_queue_outside_dom0_ram_aborts() {
    let mut r = brought_up();
    r.w32(off::CR0, 0);
    r.w64(off::CMDQ_BASE, 0x8000_0000 | 8);
    r.w32(off::CMDQ_CONS, 0);
    r.w32(off::CR0, 1 << 3);
    r.w32(off::CMDQ_PROD, 1);
    assert_eq!((r.r32(off::CMDQ_CONS) >> 24) & 0x7f, CERROR_ABT);
    assert_eq!(r.r32(off::GERROR) & 1, 1);
}

/// The event dom0 finds at the head of its event queue after the physical SMMU reports
/// C_BAD_STE for the stream.
fn reported(r: &mut Rig, sid: u32) -> u64 {
    let before = r.r32(off::EVENTQ_PROD);
    assert!(r.v.forward_event([0x04 | (u64::from(sid) << 32), 0, 0, 0], &r.mem));
    assert_eq!(r.r32(off::EVENTQ_PROD), before + 1);
    r.mem.get(EVTQ + u64::from(before) * 32)
}

#[test]
fn bad_stream_table_entries_and_descriptors_get_smmu_events() {
    let mut r = brought_up();
    // Invalid STE (V = 0).
    r.ste(SID, [0; 8]);
    r.cmds(&[cfgi_ste(SID), SYNC]);
    assert_eq!(r.v.installed(SID), Some(PhysSte::Invalid));
    assert_eq!(reported(&mut r, SID) & 0xff, 0x04, "C_BAD_STE");
    // Stage 2 asked for: not offered.
    for config in [0b110u64, 0b111, 0b001, 0b011] {
        r.ste(SID, [1 | (config << 1) | CD, 0, 0, 0, 0, 0, 0, 0]);
        r.cmds(&[cfgi_ste(SID)]);
        assert_eq!(r.v.bad_config(SID).map(|b| b.kind), Some(EventType::CBadSte), "config {config:#b}");
    }
    // Several CDs (S1CDMax) although SSIDSIZE is 0.
    r.mem.put(CD, &cd(PGD));
    let mut ste = s1_ste(CD);
    ste[0] |= 3 << 59;
    r.ste(SID, ste);
    r.cmds(&[cfgi_ste(SID)]);
    assert_eq!(r.v.bad_config(SID).map(|b| b.kind), Some(EventType::CBadSte));
    // A CD outside dom0's RAM: F_CD_FETCH with the address.
    r.ste(SID, s1_ste(0x8000_0000));
    r.cmds(&[cfgi_ste(SID)]);
    assert_eq!(r.v.installed(SID), Some(PhysSte::Invalid));
    let at = r.r32(off::EVENTQ_PROD);
    assert_eq!(reported(&mut r, SID) & 0xff, 0x09);
    assert_eq!(r.mem.get(EVTQ + u64::from(at) * 32 + 16), 0x8000_0000);
    // CDs xenith refuses: C_BAD_CD.
    let bad_cds: [(&str, fn(&mut [u64; 8])); 8] = [
        ("not valid", |c| c[0] &= !(1 << 31)),
        ("AArch32 tables", |c| c[0] &= !(1 << 41)),
        ("big-endian", |c| c[0] |= 1 << 15),
        ("stall", |c| c[0] |= 1 << 44),
        ("hardware access flag", |c| c[0] |= 1 << 43),
        ("TTB0 outside RAM", |c| c[1] = 0x9000_0000),
        ("T0SZ too small", |c| c[0] = (c[0] & !0x3f) | 8),
        ("16K granule the SMMU lacks", |c| c[0] |= 2 << 6),
    ];
    for (what, spoil) in bad_cds {
        let mut c = cd(PGD);
        spoil(&mut c);
        r.mem.put(CD, &c);
        r.ste(SID, s1_ste(CD));
        r.cmds(&[[0x05 | (u64::from(SID) << 32), 1], SYNC]);
        assert_eq!(r.v.installed(SID), Some(PhysSte::Invalid), "{what}");
        assert_eq!(reported(&mut r, SID) & 0xff, 0x0a, "{what}: C_BAD_CD");
    }
    // TTB1 on (EPD1 = 0) pointing outside RAM.
    let mut c = cd(PGD);
    c[0] &= !(1 << 30);
    c[0] |= 16 << 16 | 2 << 22;
    c[2] = 0xa000_0000;
    r.mem.put(CD, &c);
    r.cmds(&[[0x06 | (u64::from(SID) << 32), 0]]);
    assert_eq!(r.v.bad_config(SID).map(|b| b.kind), Some(EventType::CBadCd));
    // Fixed: the stream translates again and its bad-config record is gone.
    r.mem.put(CD, &cd(PGD));
    r.cmds(&[cfgi_ste(SID), SYNC]);
    assert_eq!(r.v.installed(SID), Some(PhysSte::Nested { cd: CD }));
    assert_eq!(r.v.bad_config(SID), None);
    // A level-1 descriptor with span 0: C_BAD_STREAMID; a level-2 array outside RAM:
    // F_STE_FETCH.
    r.mem.put(L1, &[0]);
    r.cmds(&[cfgi_ste(SID)]);
    assert_eq!(reported(&mut r, SID) & 0xff, 0x02);
    r.mem.put(L1, &[0x7000_0000 | 9]);
    r.cmds(&[cfgi_ste(SID)]);
    assert_eq!(r.v.bad_config(SID).map(|b| (b.kind, b.fetch_addr)), Some((EventType::FSteFetch, 0x7000_0000 + u64::from(SID) * 64)));
    assert_eq!(r.r32(off::GERROR), 0, "configuration errors are events, not global errors");
}

#[test]
fn stage_1_faults_go_to_dom0_stage_2_faults_do_not() {
    let mut r = brought_up();
    assert!(!r.v.take_irq());
    // F_TRANSLATION at stage 1 (S2 = 0): forwarded as is, with an interrupt.
    let s1 = [0x10 | (u64::from(SID) << 32), 1 << 35, 0xdead_0000, 0];
    assert!(r.v.forward_event(s1, &r.mem));
    assert_eq!(r.r32(off::EVENTQ_PROD), 1);
    assert_eq!(r.mem.get(EVTQ), s1[0]);
    assert_eq!(r.mem.get(EVTQ + 16), 0xdead_0000);
    assert!(r.v.take_irq());
    // The same at stage 2 (S2 = 1): the hypervisor's.
    let s2 = [0x10 | (u64::from(SID) << 32), (1 << 35) | (1 << 39), 0xdead_0000, 0x9000_0000];
    assert!(!r.v.forward_event(s2, &r.mem));
    // Another device's stream: not dom0's vSMMU's.
    assert!(!r.v.forward_event([0x10 | (0x99 << 32), 0, 0, 0], &r.mem));
    assert_eq!(r.r32(off::EVENTQ_PROD), 1);
    // Fill the queue (128 entries): the overflow flag toggles once, later events are lost.
    for _ in 0..127 {
        assert!(r.v.forward_event(s1, &r.mem));
    }
    assert_eq!(r.r32(off::EVENTQ_PROD), 1 << 7, "full: index 0, wrap set");
    r.v.forward_event(s1, &r.mem);
    r.v.forward_event(s1, &r.mem);
    assert_eq!(r.r32(off::EVENTQ_PROD), (1 << 31) | (1 << 7));
    // dom0 consumes and acknowledges the overflow.
    r.w32(off::EVENTQ_CONS, (1 << 31) | (1 << 7));
    r.v.forward_event(s1, &r.mem);
    assert_eq!(r.r32(off::EVENTQ_PROD), (1 << 31) | (1 << 7) | 1);
    // Event queue off: nothing recorded.
    r.w32(off::CR0, 0b1001);
    r.v.forward_event(s1, &r.mem);
    assert_eq!(r.r32(off::EVENTQ_PROD), (1 << 31) | (1 << 7) | 1);
}

#[test]
fn an_event_queue_outside_ram_is_a_global_error() {
    let mut r = brought_up();
    r.w32(off::CR0, 0b1001);
    r.w64(off::EVENTQ_BASE, 0x8000_0000 | 7);
    r.w32(off::CR0, 0b1101);
    r.v.forward_event([0x10 | (u64::from(SID) << 32), 0, 0, 0], &r.mem);
    assert_eq!(r.r32(off::GERROR) & (1 << 2), 1 << 2, "EVENTQ_ABT_ERR");
}

#[test]
fn sixty_four_bit_registers_take_halves() {
    let mut r = brought_up();
    r.w32(off::STRTAB_BASE, 0x1234_5678);
    r.w32(off::STRTAB_BASE + 4, 0x4000_0001);
    assert_eq!(r.v.read(off::STRTAB_BASE as u64, 8), 0x4000_0001_1234_5640, "RA kept, low 6 bits RES0");
    assert_eq!(r.v.read(off::STRTAB_BASE as u64 + 4, 4), 0x4000_0001);
    // Byte and halfword writes are ignored.
    r.v.write(off::CR0 as u64, 1, 0, &r.mem, &mut r.be);
    assert_eq!(r.r32(off::CR0), 0b1101);
}

#[test]
fn random_programming_never_panics() {
    // A fixed-seed xorshift drives register writes of every size and offset and random
    // queue and table contents; whatever dom0 does, the vSMMU answers.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut r = brought_up();
    for _ in 0..20_000 {
        let n = next();
        match n % 8 {
            0..=2 => {
                let at = RAM + (next() % RAM_SIZE) & !7;
                r.mem.put(at.min(RAM + RAM_SIZE - 8), &[next()]);
            }
            3 => {
                let idx = next() % 256;
                r.mem.put(CMDQ + idx * 16, &[next() & 0xffff_ffff_0000_00ff, next()]);
            }
            4 => {
                let off = [0x20u64, 0x44, 0x50, 0x64, 0x80, 0x88, 0x90, 0x98, 0x9c, 0xa0, 0x100a8, 0x100ac][(next() % 12) as usize];
                let size = [1u8, 2, 4, 8][(next() % 4) as usize];
                let v = if next() % 2 == 0 { next() } else { next() % 512 };
                r.v.write(off, size, v, &r.mem, &mut r.be);
            }
            5 => {
                let _ = r.v.read(next() % 0x2_0000, [1u8, 2, 4, 8][(next() % 4) as usize]);
            }
            6 => {
                let sid = if next() % 2 == 0 { SID } else { next() as u32 };
                let _ = r.v.forward_event([next() & !0xffff_ff00 | (u64::from(sid) << 32), next(), next(), next()], &r.mem);
            }
            _ => {
                let g = r.r32(off::GERROR);
                r.w32(off::GERRORN, g);
                let p = (next() % 1024) as u32;
                r.w32(off::CMDQ_PROD, p);
            }
        }
        // Whatever was installed is one of the four kinds, and only for dom0's streams.
        for op in &r.be.0 {
            if let Op::Install(sid, _) = op {
                assert!(*sid == SID || *sid == SID + 1);
            }
        }
        r.be.0.clear();
    }
}
