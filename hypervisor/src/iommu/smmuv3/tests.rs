//! Driver tests against the behavioural double in `model.rs`.

use alloc::format;
use alloc::vec::Vec;

use super::model::{qemu_stage2_idr, Bump, Model, Ram, TestClock};
use super::regs::off;
use super::*;

const RAM_BASE: u64 = 0x4000_0000;
const RAM_SIZE: usize = 8 << 20;

// 40-bit IPA, 4K granule, SL0 = 1, WB/WB/IS, PS = 40 bits (as the p2m would give).
const VTCR: u64 = 24 | (1 << 6) | (1 << 8) | (1 << 10) | (3 << 12) | (2 << 16);
const VTTBR_ROOT: u64 = 0x4080_0000;

type TestSmmu<'a> = Smmu<&'a Model<'a>, &'a Ram, &'a TestClock, Bump>;

struct Rig {
    ram: Ram,
    clock: TestClock,
}

impl Rig {
    fn new() -> Self {
        Rig {
            ram: Ram::new(RAM_BASE, RAM_SIZE),
            clock: TestClock::new(1000),
        }
    }
    fn model(&self, idr: [u32; 6]) -> Model<'_> {
        Model::new(&self.ram, idr)
    }
}

fn smmu<'a>(
    rig: &'a Rig,
    model: &'a Model<'a>,
    config: SmmuConfig,
) -> Result<TestSmmu<'a>, SmmuError> {
    Smmu::new(
        model,
        &rig.ram,
        &rig.clock,
        Bump::new(RAM_BASE, RAM_BASE + RAM_SIZE as u64),
        config,
    )
}

fn small_config() -> SmmuConfig {
    SmmuConfig {
        max_sid_bits: Some(8),
        ..SmmuConfig::default()
    }
}

fn without_ril(mut idr: [u32; 6]) -> [u32; 6] {
    idr[3] &= !(1 << 10);
    idr
}

fn syncs(model: &Model) -> usize {
    model
        .commands
        .borrow()
        .iter()
        .filter(|c| **c == Command::Sync)
        .count()
}

#[test]
fn probe_reports_features() {
    let rig = Rig::new();
    let model = rig.model(qemu_stage2_idr());
    let f = probe(&&model).unwrap();
    assert!(f.stage2 && !f.stage1 && f.coherent && f.vmid16 && f.two_level_strtab && f.range_inval);
    assert_eq!(
        (f.sid_bits, f.cmdq_log2, f.evtq_log2, f.oas_bits),
        (16, 19, 19, 44)
    );
    let line = format!("{f}");
    for part in [
        "S1P=no",
        "S2P=yes",
        "TTF=aa64",
        "COHACC=yes",
        "ST_LEVEL=2lvl",
        "SIDSIZE=16",
        "CMDQS=2^19",
        "EVTQS=2^19",
        "OAS=44-bit",
        "granules=4K+64K",
        "VMID16=yes",
    ] {
        assert!(line.contains(part), "{part} missing from {line}");
    }
}

#[test]
fn probe_without_stage2_refuses() {
    let rig = Rig::new();
    let mut idr = qemu_stage2_idr();
    idr[0] = (idr[0] & !1) | 2; // S1P only: QEMU 7.2, or QEMU 10 without stage=2
    let model = rig.model(idr);
    assert_eq!(probe(&&model), Err(SmmuError::NoStage2));
    let err = smmu(&rig, &model, small_config()).err().unwrap();
    assert_eq!(err, SmmuError::NoStage2);
    assert!(format!("{err}").contains("no stage-2 support"));
    assert!(model.commands.borrow().is_empty());
    assert_eq!(model.reg(off::CR0), 0, "nothing programmed");
}

#[test]
fn probe_refuses_aarch32_only_and_preset() {
    let rig = Rig::new();
    let mut idr = qemu_stage2_idr();
    idr[0] = (idr[0] & !(3 << 2)) | (1 << 2);
    assert_eq!(probe(&&rig.model(idr)), Err(SmmuError::NoAArch64Tables));
    let mut idr = qemu_stage2_idr();
    idr[1] |= 1 << 29;
    assert_eq!(probe(&&rig.model(idr)), Err(SmmuError::PresetStructures));
}

#[test]
fn enable_programs_and_invalidates() {
    let rig = Rig::new();
    let model = rig.model(qemu_stage2_idr());
    let mut s = smmu(&rig, &model, small_config()).unwrap();
    assert!(matches!(
        s.stream_table(),
        StreamTable::Linear { sid_bits: 8, .. }
    ));
    s.enable().unwrap();
    assert!(s.is_enabled());
    assert_eq!(model.reg(off::GBPA) & (1 << 20), 1 << 20, "GBPA.ABORT");
    assert_eq!(model.reg(off::CR0), 0b1101, "SMMUEN | EVENTQEN | CMDQEN");
    assert_eq!(model.reg(off::CR2), 0b110, "RECINVSID | PTM");
    assert_eq!(
        model.reg(off::CR1),
        0xd75,
        "WB, inner shareable tables and queues"
    );
    assert_eq!(model.reg(off::IRQ_CTRL), 0b101);
    assert_eq!(model.reg(off::STRTAB_BASE_CFG), 8, "linear, LOG2SIZE 8");
    assert_eq!(model.reg(off::CMDQ_BASE) & 0x1f, 8);
    assert_eq!(
        *model.commands.borrow(),
        [
            Command::CfgiAll,
            Command::TlbiNsnhAll,
            Command::TlbiEl2All,
            Command::Sync
        ]
    );
    // Unknown streams: invalid STE.
    assert_eq!(model.lookup_ste(3), Some(Ste::invalid()));
    s.disable().unwrap();
    assert_eq!(model.reg(off::CR0), 0);
    assert!(!s.is_enabled());
    // While disabled, streams can be configured without commands; enable invalidates all.
    model.commands.borrow_mut().clear();
    s.attach_stream(1, 1, VTTBR_ROOT, VTCR).unwrap();
    assert!(model.commands.borrow().is_empty());
    assert_eq!(
        model.lookup_ste(1).unwrap().config(),
        Some(SteConfig::Stage2)
    );
    assert_eq!(s.invalidate_vmid(1), Err(SmmuError::NotEnabled));
}

#[test]
fn enable_times_out_when_cr0ack_is_stuck() {
    let rig = Rig::new();
    let model = rig.model(qemu_stage2_idr());
    model.freeze_cr0ack.set(true);
    model.regs_cr0_preset();
    let mut s = smmu(&rig, &model, small_config()).unwrap();
    assert_eq!(s.enable(), Err(SmmuError::Timeout { what: "CR0ACK" }));
}

impl Model<'_> {
    /// Leave CR0 non-zero (as firmware might), so that a frozen CR0ACK never matches.
    fn regs_cr0_preset(&self) {
        (&self).write32(off::CR0, 1);
    }
}

#[test]
fn sync_times_out_when_the_queue_hangs() {
    let rig = Rig::new();
    let model = rig.model(qemu_stage2_idr());
    let mut s = smmu(&rig, &model, small_config()).unwrap();
    s.enable().unwrap();
    model.stall_cmdq.set(true);
    assert_eq!(
        s.invalidate_vmid(1),
        Err(SmmuError::Timeout { what: "CMD_SYNC" })
    );
}

#[test]
fn attach_installs_shared_stage2_and_invalidates() {
    let rig = Rig::new();
    let model = rig.model(qemu_stage2_idr());
    let mut s = smmu(&rig, &model, small_config()).unwrap();
    s.enable().unwrap();
    model.commands.borrow_mut().clear();

    s.attach_stream(0x10, 1, VTTBR_ROOT | (1 << 48), VTCR)
        .unwrap();
    let ste = model.lookup_ste(0x10).unwrap();
    assert_eq!(ste.config(), Some(SteConfig::Stage2));
    assert_eq!(ste.s2vmid(), 1);
    assert_eq!(
        ste.s2ttb(),
        VTTBR_ROOT,
        "S2TTB = the p2m root, VMID bits stripped"
    );
    assert_eq!(
        *model.commands.borrow(),
        [
            Command::CfgiSte {
                sid: 0x10,
                leaf: true
            },
            Command::Sync,
            Command::TlbiS12Vmall { vmid: 1 },
            Command::Sync,
        ]
    );

    // Re-attaching a live stream goes through an invalid STE first.
    model.commands.borrow_mut().clear();
    s.attach_stream(0x10, 2, VTTBR_ROOT + 0x1000, VTCR).unwrap();
    assert_eq!(
        model
            .commands
            .borrow()
            .iter()
            .filter(|c| matches!(c, Command::CfgiSte { .. }))
            .count(),
        2
    );
    assert_eq!(model.lookup_ste(0x10).unwrap().s2vmid(), 2);

    s.block_stream(0x10).unwrap();
    assert_eq!(model.lookup_ste(0x10), Some(Ste::abort()));
    s.bypass_stream(0x11).unwrap();
    assert_eq!(
        model.lookup_ste(0x11).unwrap().config(),
        Some(SteConfig::Bypass)
    );
    s.detach_stream(0x11).unwrap();
    assert!(!model.lookup_ste(0x11).unwrap().valid());
    assert_eq!(s.read_ste(0x10).unwrap(), Ste::abort());

    assert_eq!(
        s.attach_stream(0x100, 1, VTTBR_ROOT, VTCR),
        Err(SmmuError::StreamOutOfRange {
            sid: 0x100,
            sid_bits: 8
        })
    );
}

#[test]
fn nested_attach_uses_a_context_descriptor() {
    let rig = Rig::new();
    let mut idr = qemu_stage2_idr();
    idr[0] |= 2; // S1P as well (stage=nested)
    let model = rig.model(idr);
    let mut s = smmu(&rig, &model, small_config()).unwrap();
    s.enable().unwrap();
    let cd = Cd::new(&CdConfig {
        asid: 5,
        ttb0: 0x4100_0000,
        t0sz: 25,
        granule: Granule::K4,
        ips: 4,
        mair: 0xff,
    });
    let cd_pa = s.alloc_cd(&cd).unwrap();
    assert_eq!(cd_pa % 64, 0);
    s.attach_stream_nested(3, cd_pa, 1, VTTBR_ROOT, VTCR)
        .unwrap();
    let ste = model.lookup_ste(3).unwrap();
    assert_eq!(ste.config(), Some(SteConfig::Nested));
    assert_eq!(ste.0[0] & 0x00ff_ffff_ffff_ffc0, cd_pa);
    assert_eq!(
        (&rig.ram).read_u64(cd_pa + 8).unwrap(),
        0x4100_0000,
        "CD TTB0"
    );
}

#[test]
fn s2_config_is_validated() {
    let rig = Rig::new();
    let mut idr = qemu_stage2_idr();
    idr[0] &= !(1 << 18); // no VMID16
    let model = rig.model(idr);
    let s = smmu(&rig, &model, small_config()).unwrap();
    assert_eq!(
        s.s2_config(300, VTTBR_ROOT, VTCR),
        Err(SmmuError::VmidOutOfRange { vmid: 300 })
    );
    assert_eq!(
        s.s2_config(1, VTTBR_ROOT | 0x8, VTCR),
        Err(SmmuError::BadTtb {
            ttb: VTTBR_ROOT | 0x8
        })
    );
    assert_eq!(
        s.s2_config(1, 1 << 45, VTCR),
        Err(SmmuError::BadTtb { ttb: 1 << 45 }),
        "beyond 44-bit OAS"
    );
    let vtcr_16k = (VTCR & !(3 << 14)) | (2 << 14);
    assert!(matches!(
        s.s2_config(1, VTTBR_ROOT, vtcr_16k),
        Err(SmmuError::BadVtcr { .. })
    ));
    let vtcr_ps52 = (VTCR & !(7 << 16)) | (6 << 16);
    let capped = s.s2_config(1, VTTBR_ROOT, vtcr_ps52).unwrap();
    assert_eq!(capped.ps(), 4, "PS capped to the SMMU's OAS");
    assert_eq!(
        s.s2_config(1, VTTBR_ROOT | 1, VTCR).unwrap().ttb,
        VTTBR_ROOT,
        "CnP dropped"
    );
}

#[test]
fn two_level_stream_table_when_sids_are_wide() {
    let rig = Rig::new();
    let model = rig.model(qemu_stage2_idr());
    let mut s = smmu(&rig, &model, SmmuConfig::default()).unwrap();
    match s.stream_table() {
        StreamTable::TwoLevel {
            sid_bits,
            split,
            l2,
            ..
        } => {
            assert_eq!((*sid_bits, *split, l2.len()), (16, 8, 256));
            assert!(
                l2.iter().all(Option::is_none),
                "level-2 arrays allocated lazily"
            );
        }
        other => panic!("expected 2-level, got {other:?}"),
    }
    s.enable().unwrap();
    assert_eq!(model.reg(off::STRTAB_BASE_CFG), (1 << 16) | (8 << 6) | 16);
    model.commands.borrow_mut().clear();

    s.attach_stream(0x1234, 3, VTTBR_ROOT, VTCR).unwrap();
    s.bypass_stream(0x1201).unwrap();
    s.attach_stream(0x0008, 4, VTTBR_ROOT, VTCR).unwrap();
    assert_eq!(model.lookup_ste(0x1234).unwrap().s2vmid(), 3);
    assert_eq!(
        model.lookup_ste(0x1201).unwrap().config(),
        Some(SteConfig::Bypass)
    );
    assert_eq!(model.lookup_ste(0x0008).unwrap().s2vmid(), 4);
    assert_eq!(
        model.lookup_ste(0x1200),
        Some(Ste::invalid()),
        "same span, not configured"
    );
    assert_eq!(model.lookup_ste(0x5000), None, "span never populated");
    match s.stream_table() {
        StreamTable::TwoLevel { l2, .. } => {
            assert_eq!(l2.iter().filter(|x| x.is_some()).count(), 2)
        }
        _ => unreachable!(),
    }
    // Installing a level-2 array invalidates its whole span once.
    assert!(model.commands.borrow().contains(&Command::CfgiSteRange {
        sid: 0x1200,
        range: 7
    }));
    assert!(model.commands.borrow().contains(&Command::CfgiSteRange {
        sid: 0x0000,
        range: 7
    }));
}

#[test]
fn linear_when_2level_unsupported_and_refused_when_huge() {
    let rig = Rig::new();
    let mut idr = qemu_stage2_idr();
    idr[0] &= !(3 << 27);
    let model = rig.model(idr);
    let s = smmu(
        &rig,
        &model,
        SmmuConfig {
            max_sid_bits: Some(12),
            ..SmmuConfig::default()
        },
    )
    .unwrap();
    assert!(matches!(
        s.stream_table(),
        StreamTable::Linear { sid_bits: 12, .. }
    ));
    let s = smmu(&rig, &model, SmmuConfig::default()).unwrap();
    assert!(
        matches!(s.stream_table(), StreamTable::Linear { sid_bits: 16, .. }),
        "4 MiB, linear"
    );
    idr[1] = (idr[1] & !0x3f) | 20;
    let model = rig.model(idr);
    assert!(matches!(
        smmu(&rig, &model, SmmuConfig::default()),
        Err(SmmuError::StreamTableTooLarge { sid_bits: 20 })
    ));
}

#[test]
fn command_queue_wraps_around() {
    let rig = Rig::new();
    let model = rig.model(without_ril(qemu_stage2_idr()));
    let mut s = smmu(
        &rig,
        &model,
        SmmuConfig {
            cmdq_log2: 2,
            ..small_config()
        },
    )
    .unwrap();
    s.enable().unwrap();
    model.commands.borrow_mut().clear();
    for i in 0..10u64 {
        s.invalidate_ipa_range(1, 0x8000_0000 + i * 0x3000, 0x3000)
            .unwrap();
    }
    let cmds = model.commands.borrow();
    assert_eq!(
        cmds.len(),
        10 * 4,
        "3 TLBI + 1 SYNC per batch, all consumed"
    );
    let ipas: Vec<u64> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::TlbiS2Ipa { ipa, .. } => Some(*ipa),
            _ => None,
        })
        .collect();
    let want: Vec<u64> = (0..30).map(|p| 0x8000_0000 + p * 0x1000).collect();
    assert_eq!(ipas, want, "in order across many wraps of a 4-entry queue");
    // 4 (enable) + 40 entries: the queue pointer has wrapped 11 times.
    let cons = model.cmdq_cons();
    assert_eq!(cons & 0x3, (44 % 4) as u32);
    assert_eq!(cons & 0x4 != 0, (44 / 4) % 2 == 1, "wrap flag");
}

#[test]
fn batched_invalidation_has_one_sync_per_batch() {
    let rig = Rig::new();
    let model = rig.model(without_ril(qemu_stage2_idr()));
    let mut s = smmu(
        &rig,
        &model,
        SmmuConfig {
            cmdq_log2: 4,
            vmall_threshold_pages: 1000,
            ..small_config()
        },
    )
    .unwrap();
    s.enable().unwrap();
    s.attach_stream(1, 7, VTTBR_ROOT, VTCR).unwrap();
    model.commands.borrow_mut().clear();
    let before = s.stats();

    // 1000 pages through a 16-entry queue: the queue fills and drains many times.
    s.invalidate_ipa_range(7, 0x4000_0000, 1000 * 4096).unwrap();
    let after = s.stats();
    assert_eq!(after.tlbi_s2_ipa - before.tlbi_s2_ipa, 1000);
    assert_eq!(after.syncs - before.syncs, 1);
    assert_eq!(after.batches - before.batches, 1);
    assert_eq!(syncs(&model), 1);
    assert_eq!(model.commands.borrow().len(), 1001);

    // Above the threshold: one VMALL.
    model.commands.borrow_mut().clear();
    s.invalidate_ipa_range(7, 0, 1001 * 4096).unwrap();
    assert_eq!(
        *model.commands.borrow(),
        [Command::TlbiS12Vmall { vmid: 7 }, Command::Sync]
    );

    // Several ranges, one sync; unaligned edges round outwards.
    model.commands.borrow_mut().clear();
    s.invalidate_ipa_ranges(7, &[(0x1800, 0x1000), (0x10_0000, 1)], true)
        .unwrap();
    assert_eq!(
        *model.commands.borrow(),
        [
            Command::TlbiS2Ipa {
                vmid: 7,
                ipa: 0x1000,
                leaf: true,
                ttl: 0,
                range: None
            },
            Command::TlbiS2Ipa {
                vmid: 7,
                ipa: 0x2000,
                leaf: true,
                ttl: 0,
                range: None
            },
            Command::TlbiS2Ipa {
                vmid: 7,
                ipa: 0x10_0000,
                leaf: true,
                ttl: 0,
                range: None
            },
            Command::Sync,
        ]
    );
    // Empty range: nothing issued.
    model.commands.borrow_mut().clear();
    s.invalidate_ipa_range(7, 0x1000, 0).unwrap();
    assert!(model.commands.borrow().is_empty());
}

#[test]
fn range_invalidation_with_ril() {
    let rig = Rig::new();
    let model = rig.model(qemu_stage2_idr());
    let mut s = smmu(&rig, &model, small_config()).unwrap();
    s.enable().unwrap();
    model.commands.borrow_mut().clear();
    s.invalidate_ipa_range(2, 0x8000_0000, 1000 * 4096).unwrap();
    let cmds = model.commands.borrow();
    assert_eq!(syncs(&model), 1);
    assert!(cmds.len() <= 4, "{cmds:?}");
    let mut next = 0x8000_0000u64;
    for c in cmds.iter().filter(|c| **c != Command::Sync) {
        match c {
            Command::TlbiS2Ipa {
                vmid: 2,
                ipa,
                range: Some(r),
                ..
            } => {
                assert_eq!(*ipa, next);
                assert_eq!(r.tg, 1, "4K granule");
                next += ((u64::from(r.num) + 1) << r.scale) * 4096;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(next, 0x8000_0000 + 1000 * 4096, "covers exactly the range");
}

#[test]
fn rejected_command_is_reported_and_the_queue_resumes() {
    let rig = Rig::new();
    let model = rig.model(without_ril(qemu_stage2_idr()));
    let mut s = smmu(&rig, &model, small_config()).unwrap();
    s.enable().unwrap();
    model.reject_opcode.set(Some(cmd::opcode::TLBI_S2_IPA));
    assert_eq!(
        s.invalidate_ipa_range(1, 0x1000, 0x1000),
        Err(SmmuError::CommandError {
            cerror: 1,
            opcode: 0x2a
        })
    );
    assert_eq!(s.stats().errors, 1);
    model.reject_opcode.set(None);
    model.commands.borrow_mut().clear();
    s.invalidate_ipa_range(1, 0x1000, 0x1000).unwrap();
    assert_eq!(model.commands.borrow().len(), 2);
    let msg = format!(
        "{}",
        SmmuError::CommandError {
            cerror: 1,
            opcode: 0x2a
        }
    );
    assert_eq!(msg, "command TLBI_S2_IPA (0x2a) failed: CERROR_ILL");
}

#[test]
fn events_are_drained_and_decoded() {
    let rig = Rig::new();
    let model = rig.model(qemu_stage2_idr());
    let mut s = smmu(
        &rig,
        &model,
        SmmuConfig {
            evtq_log2: 2,
            ..small_config()
        },
    )
    .unwrap();
    s.enable().unwrap();
    let fault = |addr: u64| {
        [
            0x10 | (0x8u64 << 32),
            (1 << 39) | (2 << 40),
            addr,
            addr & !0xfff,
        ]
    };
    let mut lines = Vec::new();
    // Three rounds of three events through a 4-entry queue: wraps.
    for round in 0..3u64 {
        for i in 0..3u64 {
            model.inject_event(fault(0x9000_0000 + round * 0x10_0000 + i * 0x1000));
        }
        let d = s.drain_events(|e| lines.push(format!("{e}"))).unwrap();
        assert_eq!(
            d,
            EventDrain {
                count: 3,
                overflowed: false
            }
        );
    }
    assert_eq!(lines.len(), 9);
    assert_eq!(
        lines[8],
        "smmu: F_TRANSLATION (0x10) sid=0x8 write addr=0x90202000 stage=2 ipa=0x90202000 class=IN"
    );
    assert_eq!(s.drain_events(|_| {}).unwrap().count, 0);

    // Overflow: five events into four slots.
    for i in 0..5u64 {
        model.inject_event(fault(i << 12));
    }
    let d = s.drain_events(|_| {}).unwrap();
    assert_eq!(
        d,
        EventDrain {
            count: 4,
            overflowed: true
        }
    );
    assert_eq!(
        s.drain_events(|_| {}).unwrap(),
        EventDrain {
            count: 0,
            overflowed: false
        },
        "acked"
    );
}

#[test]
fn global_errors_are_acknowledged() {
    let rig = Rig::new();
    let model = rig.model(qemu_stage2_idr());
    let mut s = smmu(&rig, &model, small_config()).unwrap();
    s.enable().unwrap();
    assert!(s.handle_gerror().unwrap().is_empty());
    model.raise_gerror(1 << 8 | 1 << 2);
    let g = s.handle_gerror().unwrap();
    assert_eq!(format!("{g}"), "EVENTQ_ABT_ERR|SFM_ERR");
    assert!(s.handle_gerror().unwrap().is_empty(), "acknowledged");

    // The interrupt-time entry point does both.
    model.raise_gerror(1 << 8);
    model.inject_event([0x02 | (0x77u64 << 32), 0, 0, 0]);
    let mut seen = Vec::new();
    let (g, d) = s.service(|e| seen.push(e.kind)).unwrap();
    assert_eq!(g, GlobalErrors(1 << 8));
    assert_eq!(d.count, 1);
    assert_eq!(seen, [EventType::CBadStreamid]);
}

#[test]
fn out_of_memory_is_an_error() {
    let rig = Rig::new();
    let model = rig.model(qemu_stage2_idr());
    let r = Smmu::new(
        &model,
        &rig.ram,
        &rig.clock,
        Bump::new(RAM_BASE, RAM_BASE + 0x100),
        small_config(),
    );
    assert!(matches!(r, Err(SmmuError::NoMemory { .. })));
}
