//! Host tests for the stage-2 tables: exact descriptors and register values, block use,
//! split/merge with break-before-make checked from the event log, error paths, and a
//! property test against an interval model.

use std::collections::BTreeMap;
use std::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::mm::testmem::{Event, RecTlb, TestFrames, TestMem};

const KIB4: u64 = 0x1000;
const MIB2: u64 = 0x20_0000;
const GIB: u64 = 0x4000_0000;
/// Table memory lives here; data PAs used in mappings are just numbers.
const MEM_BASE: u64 = 0x8000_0000;
const MEM_LEN: u64 = 8 << 20;

struct Env {
    mem: TestMem,
    frames: TestFrames,
    tlb: RecTlb,
}

fn env() -> Env {
    let mem = TestMem::new(MEM_BASE, MEM_LEN as usize);
    let frames = TestFrames::new(&mem, MEM_BASE, MEM_LEN);
    let tlb = mem.tlb();
    Env { mem, frames, tlb }
}

fn stage2(e: &mut Env, ipa_bits: u8, pa_bits: u8) -> Stage2 {
    let s = Stage2::new(7, Stage2Config { ipa_bits, pa_bits }, &mut e.frames, &e.mem).unwrap();
    e.mem.mark_live(s.root_pa(), s.root_frames());
    s
}

impl Env {
    fn map(
        &mut self,
        s: &mut Stage2,
        ipa: u64,
        pa: u64,
        size: u64,
        attr: S2Attr,
    ) -> Result<(), P2mError> {
        let r = s.map(
            ipa,
            pa,
            size,
            attr,
            &mut self.frames,
            &self.mem,
            &mut self.tlb,
        );
        self.mem.check_quiescent();
        r
    }
    fn map_new(
        &mut self,
        s: &mut Stage2,
        ipa: u64,
        pa: u64,
        size: u64,
        attr: S2Attr,
    ) -> Result<(), P2mError> {
        let r = s.map_new(
            ipa,
            pa,
            size,
            attr,
            &mut self.frames,
            &self.mem,
            &mut self.tlb,
        );
        self.mem.check_quiescent();
        r
    }
    fn unmap(&mut self, s: &mut Stage2, ipa: u64, size: u64) -> Result<(), P2mError> {
        let r = s.unmap(ipa, size, &mut self.frames, &self.mem, &mut self.tlb);
        self.mem.check_quiescent();
        r
    }
    /// The raw descriptor that maps `ipa` and its level.
    fn leaf_desc(&self, s: &Stage2, ipa: u64) -> (u64, u8) {
        let mut level = s.start_level();
        let mut table = s.root_pa();
        let mut idx = ipa >> shift(level);
        loop {
            let d = self.mem.read_u64(table + idx * 8).unwrap();
            if !is_table(d, level) {
                return (d, level);
            }
            table = d & ADDR_MASK;
            level += 1;
            idx = (ipa >> shift(level)) & 511;
        }
    }
    fn leaves(&self, s: &Stage2) -> Vec<S2Leaf> {
        s.leaves(&self.mem).collect::<Result<Vec<_>, _>>().unwrap()
    }
}

fn tr(pa: u64, attr: S2Attr, size_of_leaf: u64) -> Option<S2Translation> {
    Some(S2Translation {
        pa,
        attr,
        size_of_leaf,
    })
}

// ---- registers ------------------------------------------------------------------------

#[test]
fn vtcr_and_vttbr_39_bit() {
    let mut e = env();
    let s = stage2(&mut e, 39, 40);
    // T0SZ 25, SL0 01 (level 1), IRGN0/ORGN0 WBWA, SH0 inner, TG0 4K, PS 010 (40 bits), RES1.
    assert_eq!(s.vtcr(), 0x8002_3559);
    assert_eq!(s.start_level(), 1);
    assert_eq!(s.root_frames(), 1);
    assert_eq!(s.vttbr(), (7u64 << 48) | s.root_pa());
    assert_eq!(s.root_pa() & 0xfff, 0);
}

#[test]
fn vtcr_and_vttbr_40_bit_concatenated_root() {
    let mut e = env();
    // Make the next free frame odd so an 8 KiB aligned root must skip it.
    let _skip = e.frames.alloc_frame().unwrap();
    let s = stage2(&mut e, 40, 40);
    assert_eq!(s.vtcr(), 0x8002_3558); // T0SZ 24, otherwise as above
    assert_eq!(s.root_frames(), 2);
    assert_eq!(s.root_pa() % 0x2000, 0);
    assert_eq!(s.vttbr(), (7u64 << 48) | s.root_pa());
    assert_eq!(e.frames.outstanding, 3);
}

#[test]
fn armv7_vtcr_for_the_same_tables() {
    let mut e = env();
    // 40 bits: T0SZ -8 (0b1000), S 1, SL0 01, IRGN0/ORGN0 WBWA, SH0 inner, RES1 (what Xen 4.17
    // armhf programs on a Cortex-A15: 0x80003558).
    assert_eq!(stage2(&mut e, 40, 40).vtcr_armv7(), Some(0x8000_3558));
    // 32 bits: T0SZ 0, S 0.
    assert_eq!(stage2(&mut e, 32, 32).vtcr_armv7(), Some(0x8000_3540));
    // 39 bits: T0SZ -7 (0b1001).
    assert_eq!(stage2(&mut e, 39, 40).vtcr_armv7().map(|v| v & 0x1f), Some(0b1_1001));
    // A level-0 walk or a 16-bit VMID is AArch64's only.
    assert_eq!(stage2(&mut e, 44, 44).vtcr_armv7(), None);
    let wide = Stage2::new(300, Stage2Config { ipa_bits: 40, pa_bits: 40 }, &mut e.frames, &e.mem).unwrap();
    assert_eq!(wide.vtcr_armv7(), None);
}

#[test]
fn vtcr_level0_start_and_pa_sizes() {
    let mut e = env();
    let s = stage2(&mut e, 44, 44);
    // T0SZ 20, SL0 10 (level 0), PS 100 (44 bits).
    assert_eq!(s.vtcr(), 0x8004_3594);
    assert_eq!(s.start_level(), 0);
    let s = stage2(&mut e, 32, 32);
    assert_eq!(s.vtcr() & 0x7_0000, 0);
    assert_eq!(s.vtcr() & 0x3f, 32);
    let s = stage2(&mut e, 36, 48);
    assert_eq!((s.vtcr() >> 16) & 7, 0b101);
}

#[test]
fn unsupported_configs_are_errors() {
    let mut e = env();
    for (ipa_bits, pa_bits) in [(31, 40), (49, 48), (40, 36), (39, 52), (39, 0), (64, 64)] {
        let r = Stage2::new(1, Stage2Config { ipa_bits, pa_bits }, &mut e.frames, &e.mem);
        assert_eq!(
            r.unwrap_err(),
            P2mError::UnsupportedConfig { ipa_bits, pa_bits }
        );
    }
    assert_eq!(e.frames.outstanding, 0);
    e.frames.budget = Some(1);
    let r = Stage2::new(
        1,
        Stage2Config {
            ipa_bits: 40,
            pa_bits: 40,
        },
        &mut e.frames,
        &e.mem,
    );
    assert_eq!(r.unwrap_err(), P2mError::OutOfFrames { needed: 2 });
}

// ---- descriptors and levels -----------------------------------------------------------

#[test]
fn page_descriptor_bits() {
    let mut e = env();
    let mut s = stage2(&mut e, 39, 40);
    e.map(&mut s, 0x1000, 0x4_0000_3000, KIB4, S2Attr::RAM_RWX)
        .unwrap();
    let (d, level) = e.leaf_desc(&s, 0x1000);
    assert_eq!(level, 3);
    // MemAttr 1111, S2AP 11, SH 11, AF, page.
    assert_eq!(d, 0x4_0000_3000 | 0x7ff);
    e.map(&mut s, 0x2000, 0x900_0000, KIB4, S2Attr::DEVICE_RW)
        .unwrap();
    let (d, _) = e.leaf_desc(&s, 0x2000);
    // MemAttr 0001, S2AP 11, SH 10, AF, XN, page.
    assert_eq!(d, 0x900_0000 | (1 << 54) | 0x400 | 0x200 | 0xc0 | 0x4 | 0x3);
    e.map(&mut s, 0x3000, 0x5000, KIB4, S2Attr::RAM_RO).unwrap();
    let (d, _) = e.leaf_desc(&s, 0x3000);
    assert_eq!(d, 0x5000 | (1 << 54) | 0x400 | 0x300 | 0x40 | 0x3c | 0x3);
    assert_eq!(
        s.lookup(0x1234, &e.mem),
        tr(0x4_0000_3234, S2Attr::RAM_RWX, KIB4)
    );
    assert_eq!(
        s.lookup(0x2008, &e.mem),
        tr(0x900_0008, S2Attr::DEVICE_RW, KIB4)
    );
    assert_eq!(s.lookup(0x4000, &e.mem), None);
    assert_eq!(s.lookup_pa(0x4000, &e.mem), None);
    assert_eq!(s.lookup_pa(0x2008, &e.mem), Some(0x900_0008));
    assert_eq!(s.lookup_pa(u64::MAX, &e.mem), None);
    assert_eq!(s.table_frames(), 2);
}

#[test]
fn attr_roundtrip() {
    for mem in [S2MemType::NormalWb, S2MemType::Device] {
        for bits in 0..8u8 {
            let a = S2Attr {
                mem,
                read: bits & 1 != 0,
                write: bits & 2 != 0,
                exec: bits & 4 != 0,
            };
            assert_eq!(S2Attr::from_desc(a.desc_bits()), a);
            assert_ne!(a.desc_bits() & DESC_AF, 0);
        }
    }
}

#[test]
fn blocks_at_each_level() {
    let mut e = env();
    let mut s = stage2(&mut e, 39, 40);
    // 1 GiB block: no tables below the root.
    e.map(&mut s, GIB, 2 * GIB, GIB, S2Attr::RAM_RWX).unwrap();
    assert_eq!(s.table_frames(), 0);
    let (d, level) = e.leaf_desc(&s, GIB);
    assert_eq!((level, d & 3), (1, 1));
    assert_eq!(
        s.lookup(GIB + 0x1234_5678, &e.mem),
        tr(2 * GIB + 0x1234_5678, S2Attr::RAM_RWX, GIB)
    );
    // 2 MiB blocks: one level-2 table.
    e.map(&mut s, 4 * GIB, 0x1_0020_0000, 2 * MIB2, S2Attr::RAM_RW)
        .unwrap();
    assert_eq!(s.table_frames(), 1);
    assert_eq!(
        s.lookup(4 * GIB + MIB2 + 8, &e.mem),
        tr(0x1_0040_0008, S2Attr::RAM_RW, MIB2)
    );
    // IPA and size block aligned but PA only page aligned: pages.
    e.map(&mut s, 8 * GIB, 0x1_0000_1000, MIB2, S2Attr::RAM_RW)
        .unwrap();
    assert_eq!(s.table_frames(), 3);
    assert_eq!(
        s.lookup(8 * GIB + 0x1f_f000, &e.mem),
        tr(0x1_0020_0000, S2Attr::RAM_RW, KIB4)
    );
    // A range that starts and ends on pages but spans a 2 MiB aligned block in the middle.
    e.map(
        &mut s,
        12 * GIB - KIB4,
        0x2_0000_0000 - KIB4,
        MIB2 + 2 * KIB4,
        S2Attr::RAM_RW,
    )
    .unwrap();
    assert_eq!(
        s.lookup(12 * GIB, &e.mem),
        tr(0x2_0000_0000, S2Attr::RAM_RW, MIB2)
    );
    assert_eq!(
        s.lookup(12 * GIB - KIB4, &e.mem).unwrap().size_of_leaf,
        KIB4
    );
    assert_eq!(
        s.lookup(12 * GIB + MIB2, &e.mem).unwrap().size_of_leaf,
        KIB4
    );
    let leaves = e.leaves(&s);
    let sizes: Vec<u64> = leaves.iter().map(|l| l.size).collect();
    assert_eq!(&sizes[..3], &[GIB, MIB2, MIB2]);
    assert_eq!(leaves.len(), 3 + 512 + 3);
    assert!(leaves.windows(2).all(|w| w[0].ipa + w[0].size <= w[1].ipa));
}

#[test]
fn ipa_40_bits_uses_second_root_table() {
    let mut e = env();
    let mut s = stage2(&mut e, 40, 40);
    let high = (1u64 << 40) - GIB;
    e.map(&mut s, high, GIB, GIB, S2Attr::RAM_RWX).unwrap();
    // Entry 1023 of the concatenated root = entry 511 of its second page.
    let d = e.mem.read_u64(s.root_pa() + 0x1000 + 511 * 8).unwrap();
    assert_eq!(d & 3, 1);
    assert_eq!(
        s.lookup(high + 5, &e.mem),
        tr(GIB + 5, S2Attr::RAM_RWX, GIB)
    );
    assert_eq!(
        e.map(&mut s, 1 << 40, 0, KIB4, S2Attr::RAM_RWX),
        Err(P2mError::IpaOutOfRange {
            ipa: 1 << 40,
            size: KIB4
        })
    );
    assert_eq!(s.lookup(1 << 40, &e.mem), None);
    e.map(&mut s, (1 << 39) - KIB4, 0x1000, 2 * KIB4, S2Attr::RAM_RW)
        .unwrap();
    let l: Vec<S2Leaf> = e.leaves(&s);
    assert_eq!(l.len(), 3);
    assert_eq!(l[1].ipa, 1 << 39);
}

#[test]
fn ipa_44_bits_starts_at_level_0() {
    let mut e = env();
    let mut s = stage2(&mut e, 44, 44);
    let high = (1u64 << 43) + 3 * GIB;
    e.map(&mut s, high, 5 * GIB, GIB, S2Attr::RAM_RWX).unwrap();
    e.map(&mut s, high + GIB + KIB4, 0x1000, KIB4, S2Attr::RAM_RO)
        .unwrap();
    assert_eq!(s.table_frames(), 3); // level 1 under the root entry, then level 2 and 3
    let (_, level) = e.leaf_desc(&s, high);
    assert_eq!(level, 1);
    assert_eq!(
        s.lookup(high + 77, &e.mem),
        tr(5 * GIB + 77, S2Attr::RAM_RWX, GIB)
    );
    assert_eq!(
        s.lookup(high + GIB + KIB4, &e.mem),
        tr(0x1000, S2Attr::RAM_RO, KIB4)
    );
    e.unmap(&mut s, 0, 1 << 44).unwrap();
    assert_eq!(s.table_frames(), 0);
    assert_eq!(e.frames.outstanding, 1);
}

#[test]
fn test_memory_flags_missing_break_before_make() {
    // The harness itself: a valid entry overwritten by another valid one is a violation.
    let e = env();
    e.mem.write_u64(MEM_BASE, 0x1000 | 0x7ff).unwrap();
    e.mem.write_u64(MEM_BASE, 0x2000 | 0x7ff).unwrap();
    e.mem.clean_dcache(MEM_BASE, 8);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| e.mem.check_quiescent()));
    assert!(r.is_err());
}

// ---- split / merge / break-before-make --------------------------------------------------

/// Index of the first event matching `f`.
fn pos(log: &[Event], f: impl Fn(&Event) -> bool) -> usize {
    log.iter()
        .position(f)
        .unwrap_or_else(|| panic!("event not found in {log:#x?}"))
}

#[test]
fn partial_unmap_splits_1g_block_with_bbm() {
    let mut e = env();
    let mut s = stage2(&mut e, 39, 40);
    e.map(&mut s, GIB, 0, GIB, S2Attr::RAM_RWX).unwrap();
    let slot = s.root_pa() + 8;
    let block = e.mem.read_u64(slot).unwrap();
    e.mem.set_logging(true);
    e.unmap(&mut s, GIB + 3 * MIB2 + 5 * KIB4, KIB4).unwrap();
    let log = e.mem.take_log();
    // The block is broken, invalidated, synced, and only then replaced by the table.
    let broke = pos(&log, |ev| {
        *ev == Event::Write {
            pa: slot,
            old: block,
            new: 0,
        }
    });
    let inv = pos(&log, |ev| *ev == Event::InvIpa { vmid: 7, ipa: GIB });
    let sync = broke + pos(&log[broke..], |ev| *ev == Event::Sync);
    let made = pos(
        &log,
        |ev| matches!(ev, Event::Write { pa, old: 0, new } if *pa == slot && new & 3 == 3),
    );
    assert!(broke < inv && inv < sync && sync < made, "{log:#x?}");
    // The unmapped page was invalidated by IPA, after its entry was cleared.
    let page_ipa = GIB + 3 * MIB2 + 5 * KIB4;
    let inv_page = pos(&log, |ev| {
        *ev == Event::InvIpa {
            vmid: 7,
            ipa: page_ipa,
        }
    });
    let cleared = pos(
        &log,
        |ev| matches!(ev, Event::Write { new: 0, old, .. } if old & 0xfff == 0x7ff && old & ADDR_MASK == page_ipa - GIB),
    );
    assert!(cleared < inv_page);
    assert_eq!(*log.last().unwrap(), Event::Sync);

    assert_eq!(s.table_frames(), 2);
    assert_eq!(s.lookup(page_ipa, &e.mem), None);
    assert_eq!(
        s.lookup(page_ipa - KIB4, &e.mem),
        tr(page_ipa - KIB4 - GIB, S2Attr::RAM_RWX, KIB4)
    );
    assert_eq!(
        s.lookup(page_ipa + KIB4, &e.mem),
        tr(page_ipa + KIB4 - GIB, S2Attr::RAM_RWX, KIB4)
    );
    assert_eq!(s.lookup(GIB, &e.mem), tr(0, S2Attr::RAM_RWX, MIB2));
    assert_eq!(
        s.lookup(2 * GIB - 1, &e.mem),
        tr(GIB - 1, S2Attr::RAM_RWX, MIB2)
    );
    assert_eq!(e.leaves(&s).len(), 511 + 511);

    // Mapping the page back alone merges nothing (one page never does: hysteresis)...
    e.map(&mut s, page_ipa, page_ipa - GIB, KIB4, S2Attr::RAM_RWX)
        .unwrap();
    assert_eq!(s.table_frames(), 2);
    assert_eq!(s.lookup(page_ipa, &e.mem), tr(page_ipa - GIB, S2Attr::RAM_RWX, KIB4));
    // ...a map of a larger range over it merges all the way up to the 1 GiB block again.
    e.mem.set_logging(true);
    e.map(&mut s, page_ipa, page_ipa - GIB, 2 * KIB4, S2Attr::RAM_RWX)
        .unwrap();
    let log = e.mem.take_log();
    assert_eq!(s.table_frames(), 0);
    assert_eq!(e.mem.read_u64(slot).unwrap(), block);
    assert_eq!(e.frames.outstanding, 1);
    // Merges break the table entry and invalidate the whole VMID before the block goes in.
    let broke = pos(
        &log,
        |ev| matches!(ev, Event::Write { pa, old, new: 0 } if *pa == slot && old & 3 == 3),
    );
    let inv = broke + pos(&log[broke..], |ev| *ev == Event::InvVmid { vmid: 7 });
    let sync = inv + pos(&log[inv..], |ev| *ev == Event::Sync);
    let made = pos(&log, |ev| {
        *ev == Event::Write {
            pa: slot,
            old: 0,
            new: block,
        }
    });
    assert!(broke < inv && inv < sync && sync < made, "{log:#x?}");
}

#[test]
fn pages_merge_into_2m_block_and_frame_is_freed() {
    let mut e = env();
    let mut s = stage2(&mut e, 39, 40);
    let base_ipa = 3 * GIB + 5 * MIB2;
    let base_pa = 0x7_0000_0000 + 9 * MIB2;
    // Map in a scrambled order, one page at a time.
    for i in 0..512u64 {
        let p = (i * 97) % 512;
        e.map(
            &mut s,
            base_ipa + p * KIB4,
            base_pa + p * KIB4,
            KIB4,
            S2Attr::RAM_RW,
        )
        .unwrap();
        assert_eq!(s.table_frames(), 2, "one-page maps never merge");
    }
    // The next map of more than one page over the full table merges it.
    e.map(&mut s, base_ipa + 17 * KIB4, base_pa + 17 * KIB4, 2 * KIB4, S2Attr::RAM_RW)
        .unwrap();
    assert_eq!(s.table_frames(), 1);
    assert_eq!(e.frames.outstanding, 2);
    assert_eq!(
        s.lookup(base_ipa + 0x1234, &e.mem),
        tr(base_pa + 0x1234, S2Attr::RAM_RW, MIB2)
    );
    // Different attributes on one page stop a merge (and split a block).
    let other = 5 * GIB;
    e.map(&mut s, other, 0x40_0000, MIB2, S2Attr::RAM_RW)
        .unwrap();
    e.map(
        &mut s,
        other + MIB2 - KIB4,
        0x40_0000 + MIB2 - KIB4,
        KIB4,
        S2Attr::RAM_RO,
    )
    .unwrap();
    assert_eq!(s.lookup(other, &e.mem), tr(0x40_0000, S2Attr::RAM_RW, KIB4));
    assert_eq!(
        s.lookup(other + MIB2 - 1, &e.mem),
        tr(0x60_0000 - 1, S2Attr::RAM_RO, KIB4)
    );
    // Its attributes back (with its neighbour: a one-page map would not merge).
    e.map(
        &mut s,
        other + MIB2 - 2 * KIB4,
        0x40_0000 + MIB2 - 2 * KIB4,
        2 * KIB4,
        S2Attr::RAM_RW,
    )
    .unwrap();
    assert_eq!(s.lookup(other, &e.mem), tr(0x40_0000, S2Attr::RAM_RW, MIB2));
    // A contiguous run whose PA is not 2 MiB aligned stays pages.
    let misaligned = 7 * GIB;
    e.map(&mut s, misaligned, 0x10_0000, MIB2 - 2 * KIB4, S2Attr::RAM_RW)
        .unwrap();
    e.map(
        &mut s,
        misaligned + MIB2 - 2 * KIB4,
        0x10_0000 + MIB2 - 2 * KIB4,
        2 * KIB4,
        S2Attr::RAM_RW,
    )
    .unwrap();
    assert_eq!(
        s.lookup(misaligned, &e.mem).unwrap().size_of_leaf,
        KIB4,
        "PA 1 MiB aligned: no block"
    );
    let again = 6 * GIB;
    e.map(&mut s, again, 0x20_0000, MIB2 - 2 * KIB4, S2Attr::RAM_RW)
        .unwrap();
    e.map(
        &mut s,
        again + MIB2 - 2 * KIB4,
        0x20_0000 + MIB2 - 2 * KIB4,
        2 * KIB4,
        S2Attr::RAM_RW,
    )
    .unwrap();
    assert_eq!(s.lookup(again, &e.mem).unwrap().size_of_leaf, MIB2);
}

#[test]
fn attribute_change_is_break_before_make() {
    let mut e = env();
    let mut s = stage2(&mut e, 39, 40);
    e.map(&mut s, 0x10_0000, 0x20_0000, 4 * KIB4, S2Attr::RAM_RWX)
        .unwrap();
    e.mem.set_logging(true);
    e.map(&mut s, 0x10_1000, 0x20_1000, KIB4, S2Attr::RAM_RO)
        .unwrap();
    let log = e.mem.take_log();
    let writes: Vec<&Event> = log
        .iter()
        .filter(|ev| matches!(ev, Event::Write { .. }))
        .collect();
    assert_eq!(writes.len(), 2, "{log:#x?}");
    let Event::Write {
        pa: slot,
        old,
        new: 0,
    } = *writes[0]
    else {
        panic!("{log:#x?}")
    };
    assert_eq!(old & ADDR_MASK, 0x20_1000);
    let inv = pos(&log, |ev| {
        *ev == Event::InvIpa {
            vmid: 7,
            ipa: 0x10_1000,
        }
    });
    let sync = pos(&log, |ev| *ev == Event::Sync);
    let made = pos(
        &log,
        |ev| matches!(ev, Event::Write { pa, old: 0, .. } if *pa == slot),
    );
    assert!(inv < sync && sync < made);
    assert_eq!(
        s.lookup(0x10_1000, &e.mem),
        tr(0x20_1000, S2Attr::RAM_RO, KIB4)
    );
    // Re-mapping an identical translation writes nothing and invalidates nothing.
    e.mem.set_logging(true);
    e.map(&mut s, 0x10_0000, 0x20_0000, KIB4, S2Attr::RAM_RWX)
        .unwrap();
    assert_eq!(e.mem.take_log(), vec![]);
    // Nor does mapping a sub-range of a block with the block's own translation.
    e.map(&mut s, GIB, 0, GIB, S2Attr::RAM_RWX).unwrap();
    e.mem.set_logging(true);
    e.map(
        &mut s,
        GIB + MIB2 + KIB4,
        MIB2 + KIB4,
        KIB4,
        S2Attr::RAM_RWX,
    )
    .unwrap();
    assert_eq!(e.mem.take_log(), vec![]);
}

#[test]
fn map_over_table_with_a_block_frees_the_subtree() {
    let mut e = env();
    let mut s = stage2(&mut e, 39, 40);
    for i in 0..8u64 {
        e.map(
            &mut s,
            GIB + i * MIB2 + KIB4,
            0x1000 * i,
            KIB4,
            S2Attr::RAM_RW,
        )
        .unwrap();
    }
    assert_eq!(s.table_frames(), 9);
    e.mem.set_logging(true);
    e.map(&mut s, GIB, 4 * GIB, GIB, S2Attr::RAM_RWX).unwrap();
    let log = e.mem.take_log();
    assert!(log.contains(&Event::InvVmid { vmid: 7 }));
    assert_eq!(s.table_frames(), 0);
    assert_eq!(e.frames.outstanding, 1);
    assert_eq!(
        s.lookup(GIB + KIB4, &e.mem),
        tr(4 * GIB + KIB4, S2Attr::RAM_RWX, GIB)
    );
}

#[test]
fn unmap_everything_frees_all_tables_and_destroy_frees_root() {
    let mut e = env();
    let mut s = stage2(&mut e, 40, 40);
    e.map(&mut s, 0, 0, 3 * GIB + 5 * MIB2 + 7 * KIB4, S2Attr::RAM_RWX)
        .unwrap();
    e.map(
        &mut s,
        (1 << 39) + KIB4,
        0x1234_5000,
        40 * KIB4,
        S2Attr::DEVICE_RW,
    )
    .unwrap();
    assert!(s.table_frames() > 0);
    // Unmapping a large range clears whole entries and invalidates the VMID once.
    e.mem.set_logging(true);
    e.unmap(&mut s, 0, 1 << 40).unwrap();
    let log = e.mem.take_log();
    assert_eq!(
        log.iter()
            .filter(|ev| matches!(ev, Event::InvVmid { .. }))
            .count(),
        1
    );
    assert_eq!(log.iter().filter(|ev| **ev == Event::Sync).count(), 1);
    assert_eq!(s.table_frames(), 0);
    assert_eq!(e.frames.outstanding, 2);
    assert!(e.leaves(&s).is_empty());
    // Unmapping nothing is fine.
    e.unmap(&mut s, 0, 1 << 40).unwrap();
    e.map(&mut s, 5 * MIB2, 0, KIB4, S2Attr::RAM_RW).unwrap();
    s.destroy(&mut e.frames, &e.mem, &mut e.tlb).unwrap();
    assert_eq!(e.frames.outstanding, 0);
}

#[test]
fn small_unmap_invalidates_by_ipa_and_keeps_the_emptied_tables() {
    let mut e = env();
    let mut s = stage2(&mut e, 39, 40);
    e.map(&mut s, 0x40_0000, 0x80_0000, 3 * KIB4, S2Attr::RAM_RW)
        .unwrap();
    let outstanding = e.frames.outstanding;
    e.mem.set_logging(true);
    e.unmap(&mut s, 0x40_0000, 3 * KIB4).unwrap();
    let log = e.mem.take_log();
    let invs: Vec<Event> = log
        .iter()
        .copied()
        .filter(|ev| !matches!(ev, Event::Write { .. }))
        .collect();
    // Three pages, one sync; the emptied level-3 and level-2 tables stay linked.
    let inv = |ipa| Event::InvIpa { vmid: 7, ipa };
    assert_eq!(invs, vec![inv(0x40_0000), inv(0x40_1000), inv(0x40_2000), Event::Sync]);
    assert_eq!(log.iter().filter(|ev| matches!(ev, Event::Write { .. })).count(), 3);
    assert_eq!(s.table_frames(), 2);
    assert_eq!(e.frames.outstanding, outstanding);
    assert!(e.leaves(&s).is_empty());

    // Mapping there again reuses them: no frame taken, one write, no invalidation.
    e.mem.set_logging(true);
    e.map(&mut s, 0x40_1000, 0x90_0000, KIB4, S2Attr::RAM_RW).unwrap();
    let log = e.mem.take_log();
    assert_eq!(log.iter().filter(|ev| matches!(ev, Event::Write { .. })).count(), 1, "{log:#x?}");
    assert!(!log.iter().any(|ev| matches!(ev, Event::InvIpa { .. } | Event::InvVmid { .. })));
    assert_eq!(e.frames.outstanding, outstanding);
    assert_eq!(s.lookup(0x40_1000, &e.mem), tr(0x90_0000, S2Attr::RAM_RW, KIB4));
    e.unmap(&mut s, 0x40_1000, KIB4).unwrap();

    // Reclaiming unlinks both, invalidates their walk-cache entries, syncs, then frees them.
    e.mem.set_logging(true);
    assert_eq!(s.reclaim_empty_tables(&mut e.frames, &e.mem, &mut e.tlb), Ok(2));
    e.mem.check_quiescent();
    let log = e.mem.take_log();
    let invs: Vec<Event> = log
        .iter()
        .copied()
        .filter(|ev| !matches!(ev, Event::Write { .. }))
        .collect();
    assert_eq!(invs, vec![inv(0x40_0000), inv(0), Event::Sync]);
    assert_eq!(s.table_frames(), 0);
    assert_eq!(e.frames.outstanding, 1);
    // Nothing left to reclaim.
    assert_eq!(s.reclaim_empty_tables(&mut e.frames, &e.mem, &mut e.tlb), Ok(0));
}

#[test]
fn one_page_in_existing_tables_is_one_descriptor_write() {
    let mut e = env();
    let mut s = stage2(&mut e, 40, 40);
    let page = (1 << 39) + 5 * MIB2 + 7 * KIB4;
    e.map(&mut s, page + KIB4, 0x3000, KIB4, S2Attr::RAM_RW).unwrap();
    let outstanding = e.frames.outstanding;
    let slot = |e: &Env, s: &Stage2| {
        let (_, level) = e.leaf_desc(s, page + KIB4);
        assert_eq!(level, 3);
        s.page_slot(page, &e.mem).unwrap().unwrap()
    };
    let at = slot(&e, &s);
    // Map: the descriptor, then a barrier (sync) so walkers see it; no frame, no invalidation.
    e.mem.set_logging(true);
    e.map(&mut s, page, 0x2000, KIB4, S2Attr::RAM_RO).unwrap();
    let new = e.mem.read_u64(at).unwrap();
    assert_eq!(e.mem.take_log(), vec![Event::Write { pa: at, old: 0, new }, Event::Sync]);
    assert_eq!(e.frames.outstanding, outstanding);
    assert_eq!(s.lookup(page, &e.mem), tr(0x2000, S2Attr::RAM_RO, KIB4));
    // The same translation again: nothing at all.
    e.mem.set_logging(true);
    e.map(&mut s, page, 0x2000, KIB4, S2Attr::RAM_RO).unwrap();
    assert_eq!(e.mem.take_log(), vec![]);
    // Unmap: cleared, then invalidated by IPA, then synced.
    e.mem.set_logging(true);
    e.unmap(&mut s, page, KIB4).unwrap();
    assert_eq!(
        e.mem.take_log(),
        vec![Event::Write { pa: at, old: new, new: 0 }, Event::InvIpa { vmid: 7, ipa: page }, Event::Sync]
    );
    // Unmapping a hole in the same table: nothing.
    e.mem.set_logging(true);
    e.unmap(&mut s, page, KIB4).unwrap();
    assert_eq!(e.mem.take_log(), vec![]);
    // Remapping a live page elsewhere is break-before-make (the general path).
    e.mem.set_logging(true);
    e.map(&mut s, page + KIB4, 0x9000, KIB4, S2Attr::RAM_RW).unwrap();
    let log = e.mem.take_log();
    let cleared = pos(&log, |ev| matches!(ev, Event::Write { new: 0, .. }));
    let inv = pos(&log, |ev| *ev == Event::InvIpa { vmid: 7, ipa: page + KIB4 });
    let made = pos(&log, |ev| matches!(ev, Event::Write { old: 0, .. }));
    assert!(cleared < inv && inv < made, "{log:#x?}");
    assert_eq!(s.lookup(page + KIB4, &e.mem), tr(0x9000, S2Attr::RAM_RW, KIB4));
}

#[test]
fn reclaim_keeps_tables_that_still_map_something() {
    let mut e = env();
    let mut s = stage2(&mut e, 39, 40);
    e.map(&mut s, 0x40_0000, 0x80_0000, KIB4, S2Attr::RAM_RW).unwrap();
    e.map(&mut s, 0x60_0000, 0x90_0000, KIB4, S2Attr::RAM_RW).unwrap();
    e.map(&mut s, GIB + KIB4, 0xa0_0000, KIB4, S2Attr::RAM_RW).unwrap();
    assert_eq!(s.table_frames(), 5);
    e.unmap(&mut s, 0x60_0000, KIB4).unwrap();
    e.unmap(&mut s, GIB + KIB4, KIB4).unwrap();
    assert_eq!(s.table_frames(), 5);
    // The level-3 table under 0x60_0000 and the whole subtree under GIB go; the rest stays.
    assert_eq!(s.reclaim_empty_tables(&mut e.frames, &e.mem, &mut e.tlb), Ok(3));
    assert_eq!(s.table_frames(), 2);
    assert_eq!(e.frames.outstanding, 3);
    assert_eq!(s.lookup(0x40_0000, &e.mem), tr(0x80_0000, S2Attr::RAM_RW, KIB4));
}

#[test]
fn out_of_frames_reclaims_empty_tables_first() {
    let mut e = env();
    let mut s = stage2(&mut e, 39, 40);
    e.map(&mut s, 0x40_0000, 0x80_0000, KIB4, S2Attr::RAM_RW).unwrap();
    e.unmap(&mut s, 0x40_0000, KIB4).unwrap();
    assert_eq!(s.table_frames(), 2);
    // A page in another 1 GiB region needs two tables; the allocator has none left, but the two
    // empty ones are given back first.
    e.frames.limit = Some(e.frames.outstanding);
    e.map(&mut s, 3 * GIB, 0x70_0000, KIB4, S2Attr::RAM_RW).unwrap();
    assert_eq!(s.table_frames(), 2);
    assert_eq!(s.lookup(3 * GIB, &e.mem), tr(0x70_0000, S2Attr::RAM_RW, KIB4));
    // Still nothing to spare: a third region fails cleanly, its translations untouched.
    assert_eq!(
        e.map(&mut s, 4 * GIB, 0x70_0000, KIB4, S2Attr::RAM_RW),
        Err(P2mError::OutOfFrames { needed: 2 })
    );
    assert_eq!(e.leaves(&s).len(), 1);
}

// ---- errors -----------------------------------------------------------------------------

#[test]
fn argument_errors() {
    let mut e = env();
    let mut s = stage2(&mut e, 39, 40);
    let a = S2Attr::RAM_RW;
    assert_eq!(
        e.map(&mut s, 0x1001, 0, KIB4, a),
        Err(P2mError::MisalignedIpa(0x1001))
    );
    assert_eq!(
        e.map(&mut s, 0x1000, 0x10, KIB4, a),
        Err(P2mError::MisalignedPa(0x10))
    );
    assert_eq!(
        e.map(&mut s, 0x1000, 0, 0x800, a),
        Err(P2mError::MisalignedSize(0x800))
    );
    assert_eq!(
        e.map(&mut s, (1 << 39) - KIB4, 0, 2 * KIB4, a),
        Err(P2mError::IpaOutOfRange {
            ipa: (1 << 39) - KIB4,
            size: 2 * KIB4
        })
    );
    assert_eq!(
        e.map(&mut s, 0xffff_ffff_ffff_f000, 0, 2 * KIB4, a),
        Err(P2mError::IpaOutOfRange {
            ipa: 0xffff_ffff_ffff_f000,
            size: 2 * KIB4
        })
    );
    assert_eq!(
        e.map(&mut s, 0, (1 << 40) - KIB4, 2 * KIB4, a),
        Err(P2mError::PaOutOfRange {
            pa: (1 << 40) - KIB4,
            size: 2 * KIB4
        })
    );
    assert_eq!(
        e.unmap(&mut s, 0x1001, KIB4),
        Err(P2mError::MisalignedIpa(0x1001))
    );
    assert_eq!(
        e.unmap(&mut s, 0, 1 << 40),
        Err(P2mError::IpaOutOfRange {
            ipa: 0,
            size: 1 << 40
        })
    );
    assert_eq!(e.map(&mut s, 0, 0, 0, a), Ok(()));
    assert_eq!(s.lookup(u64::MAX, &e.mem), None);
    assert_eq!(e.frames.outstanding, 1);
    // Every error has a message.
    let msg = std::format!("{}", P2mError::OutOfFrames { needed: 3 });
    assert!(msg.contains('3'));
}

#[test]
fn map_new_refuses_overlap_and_changes_nothing() {
    let mut e = env();
    let mut s = stage2(&mut e, 39, 40);
    e.map_new(&mut s, 0x20_0000, 0x40_0000, MIB2, S2Attr::RAM_RW)
        .unwrap();
    let before = e.leaves(&s);
    assert_eq!(
        e.map_new(&mut s, 0x1f_f000, 0, 2 * KIB4, S2Attr::RAM_RW),
        Err(P2mError::AlreadyMapped { ipa: 0x20_0000 })
    );
    assert_eq!(
        e.map_new(&mut s, 0x30_0000, 0, KIB4, S2Attr::RAM_RW),
        Err(P2mError::AlreadyMapped { ipa: 0x30_0000 })
    );
    assert_eq!(e.leaves(&s), before);
    e.map_new(&mut s, 0x1f_f000, 0, KIB4, S2Attr::RAM_RW)
        .unwrap();
    // map() replaces instead.
    e.map(&mut s, 0x1f_f000, 0x9000, 2 * KIB4, S2Attr::RAM_RO)
        .unwrap();
    assert_eq!(
        s.lookup(0x20_0000, &e.mem),
        tr(0xa000, S2Attr::RAM_RO, KIB4)
    );
}

#[test]
fn out_of_frames_changes_nothing() {
    let mut e = env();
    let mut s = stage2(&mut e, 39, 40);
    e.map(&mut s, GIB, 0, GIB, S2Attr::RAM_RWX).unwrap();
    e.map(&mut s, 0, 0, KIB4, S2Attr::RAM_RWX).unwrap();
    let before = e.leaves(&s);
    let outstanding = e.frames.outstanding;
    // A page in a fresh 1 GiB region needs two tables; allow one.
    e.frames.budget = Some(1);
    e.mem.set_logging(true);
    assert_eq!(
        e.map(&mut s, 2 * GIB + 3 * KIB4, 0, KIB4, S2Attr::RAM_RW),
        Err(P2mError::OutOfFrames { needed: 2 })
    );
    // Splitting a 1 GiB block down to a page also needs two.
    assert_eq!(
        e.unmap(&mut s, GIB + KIB4, KIB4),
        Err(P2mError::OutOfFrames { needed: 2 })
    );
    assert_eq!(
        e.map(&mut s, GIB + KIB4, 0x5000, KIB4, S2Attr::RAM_RW),
        Err(P2mError::OutOfFrames { needed: 2 })
    );
    assert!(e.mem.take_log().is_empty(), "nothing may be written");
    assert_eq!(e.leaves(&s), before);
    assert_eq!(e.frames.outstanding, outstanding);
    // One frame is enough for a 2 MiB split of the block, and for a page next to an existing one.
    e.frames.budget = Some(1);
    e.unmap(&mut s, GIB + MIB2, MIB2).unwrap();
    e.map(&mut s, KIB4, 0x1000, KIB4, S2Attr::RAM_RWX).unwrap();
    assert_eq!(e.frames.budget, Some(0));
    assert_eq!(s.lookup(GIB + MIB2, &e.mem), None);
    assert_eq!(
        s.lookup(GIB + 2 * MIB2, &e.mem),
        tr(2 * MIB2, S2Attr::RAM_RWX, MIB2)
    );
    // With no frames, unmapping whole entries and remapping pages in place still work.
    e.unmap(&mut s, GIB, MIB2).unwrap();
    e.map(&mut s, 0, 0x8000, KIB4, S2Attr::RAM_RO).unwrap();
}

#[test]
fn leaves_in_range() {
    let mut e = env();
    let mut s = stage2(&mut e, 39, 40);
    e.map(&mut s, 0, 0, 4 * KIB4, S2Attr::RAM_RW).unwrap();
    e.map(&mut s, GIB, GIB, GIB, S2Attr::RAM_RW).unwrap();
    let got: Vec<u64> = s
        .leaves_in(KIB4, 3 * KIB4, &e.mem)
        .map(|l| l.unwrap().ipa)
        .collect();
    assert_eq!(got, vec![KIB4, 2 * KIB4]);
    let got: Vec<S2Leaf> = s
        .leaves_in(GIB + 5 * MIB2, GIB + 6 * MIB2, &e.mem)
        .map(|l| l.unwrap())
        .collect();
    assert_eq!(
        got,
        vec![S2Leaf {
            ipa: GIB,
            pa: GIB,
            size: GIB,
            attr: S2Attr::RAM_RW
        }]
    );
    assert_eq!(s.leaves_in(2 * GIB, 2 * GIB, &e.mem).count(), 0);
    assert_eq!(s.leaves_in(5 << 39, 6 << 39, &e.mem).count(), 0);
}

// ---- property test against a model ------------------------------------------------------

/// The model: IPA run start -> (length, PA, attributes); runs are disjoint.
#[derive(Default, Clone)]
struct Model(BTreeMap<u64, (u64, u64, S2Attr)>);

impl Model {
    fn unmap(&mut self, start: u64, end: u64) {
        let hit: Vec<(u64, (u64, u64, S2Attr))> = self
            .0
            .iter()
            .filter(|(&ipa, &(len, _, _))| ipa < end && start < ipa + len)
            .map(|(&k, &v)| (k, v))
            .collect();
        for (ipa, (len, pa, attr)) in hit {
            self.0.remove(&ipa);
            if ipa < start {
                self.0.insert(ipa, (start - ipa, pa, attr));
            }
            if ipa + len > end {
                self.0
                    .insert(end, (ipa + len - end, pa + (end - ipa), attr));
            }
        }
    }
    fn map(&mut self, ipa: u64, pa: u64, size: u64, attr: S2Attr) {
        self.unmap(ipa, ipa + size);
        self.0.insert(ipa, (size, pa, attr));
    }
    fn runs(&self) -> Vec<(u64, u64, u64, S2Attr)> {
        coalesce(
            self.0
                .iter()
                .map(|(&ipa, &(len, pa, attr))| (ipa, len, pa, attr)),
        )
    }
}

/// Maximal runs of (ipa, len, pa, attr), merging neighbours that continue each other.
fn coalesce(it: impl Iterator<Item = (u64, u64, u64, S2Attr)>) -> Vec<(u64, u64, u64, S2Attr)> {
    let mut out: Vec<(u64, u64, u64, S2Attr)> = Vec::new();
    for (ipa, len, pa, attr) in it {
        if let Some(last) = out.last_mut() {
            if last.0 + last.1 == ipa && last.2 + last.1 == pa && last.3 == attr {
                last.1 += len;
                continue;
            }
        }
        out.push((ipa, len, pa, attr));
    }
    out
}

#[derive(Clone, Debug)]
enum P2mOp {
    Map {
        ipa: u64,
        pa: u64,
        size: u64,
        attr: u8,
        budget: Option<usize>,
    },
    Unmap {
        ipa: u64,
        size: u64,
        budget: Option<usize>,
    },
    /// Re-map what is mapped in the range to the same PAs with other attributes.
    Reattr {
        ipa: u64,
        size: u64,
        attr: u8,
        budget: Option<usize>,
    },
}

impl P2mOp {
    /// The same op on at most `max` bytes.
    fn clamped(self, max: u64) -> Self {
        match self {
            P2mOp::Map { ipa, pa, size, attr, budget } => P2mOp::Map { ipa, pa, size: size.min(max), attr, budget },
            P2mOp::Reattr { ipa, size, attr, budget } => P2mOp::Reattr { ipa, size: size.min(max), attr, budget },
            P2mOp::Unmap { ipa, size, budget } => P2mOp::Unmap { ipa, size: size.min(max), budget },
        }
    }
}

const ATTRS: [S2Attr; 3] = [S2Attr::RAM_RWX, S2Attr::RAM_RO, S2Attr::DEVICE_RW];
/// IPA window the test works in: 4 GiB (so 1 GiB blocks occur).
const WINDOW_PAGES: u64 = 1 << 20;

fn p2m_op() -> impl Strategy<Value = P2mOp> {
    // Granule in pages: 4 KiB, 2 MiB or 1 GiB; regions of 1-3 granules, sometimes with a few
    // extra pages; PAs aligned like the IPA or deliberately not (page / 2 MiB offset).
    let granule = prop_oneof![3 => Just(1u64), 3 => Just(512u64), 1 => Just(512 * 512u64)];
    let budget = prop_oneof![6 => Just(None), 1 => (0usize..3).prop_map(Some)];
    (
        granule,
        0u64..WINDOW_PAGES,
        1u64..4,
        0u64..3,
        0u64..(1 << 16),
        0u8..3,
        any::<bool>(),
        budget,
        0u8..3,
    )
        .prop_map(|(g, at, n, extra, pa_at, attr, map, budget, skew)| {
            let ipa_page = (at / g) * g;
            let pages = (n * g + if g > 1 { extra } else { 0 }).min(WINDOW_PAGES - ipa_page);
            let skew_pages = match (skew, g) {
                (0, _) => 0,
                (_, 1) => 0,
                (_, 512) => 1,
                _ => 512,
            };
            let pa_page = (pa_at / g.min(512)) * g + skew_pages;
            let (ipa, size) = (ipa_page * KIB4, pages * KIB4);
            match (map, skew) {
                (true, _) => P2mOp::Map {
                    ipa,
                    pa: pa_page * KIB4,
                    size,
                    attr,
                    budget,
                },
                (false, 2) => P2mOp::Reattr {
                    ipa,
                    size,
                    attr,
                    budget,
                },
                (false, _) => P2mOp::Unmap { ipa, size, budget },
            }
        })
}

fn check_against_model(e: &Env, s: &Stage2, model: &Model, base: u64) -> Result<(), TestCaseError> {
    let leaves = e.leaves(s);
    let got = coalesce(leaves.iter().map(|l| (l.ipa - base, l.size, l.pa, l.attr)));
    prop_assert_eq!(&got, &model.runs());
    // Spot-check lookup at the edges of every run and just outside them.
    for (&ipa, &(len, pa, attr)) in model.0.iter().take(64) {
        for off in [0, (len / 2) & !0xfff, len - KIB4] {
            let t = s.lookup(base + ipa + off + 8, &e.mem);
            prop_assert_eq!(t.map(|t| (t.pa, t.attr)), Some((pa + off + 8, attr)));
            prop_assert_eq!(s.lookup_pa(base + ipa + off + 8, &e.mem), Some(pa + off + 8));
        }
    }
    // Every table is reachable and counted: frames out = root + tables.
    prop_assert_eq!(e.frames.outstanding, s.root_frames() + s.table_frames());
    Ok(())
}

proptest! {
    // 96 cases by default (a few seconds); PROPTEST_CASES=N for a deeper run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(96),
        ..ProptestConfig::default()
    })]

    /// Random map/unmap sequences translate every page exactly like the model, never break
    /// BBM or leave writes uncleaned (TestMem checks each write), fail cleanly when out of
    /// frames (after reclaiming empty tables), and leak no table frame once everything is
    /// unmapped.
    #[test]
    fn stage2_matches_model(
        forty in any::<bool>(),
        granular in any::<bool>(),
        ops in proptest::collection::vec(p2m_op(), 1..24),
        tight in proptest::collection::vec(any::<bool>(), 24),
        undo in proptest::collection::vec(any::<bool>(), 24),
    ) {
        let mut e = env();
        let (bits, base) = if forty { (40, (1u64 << 39) - 2 * GIB) } else { (39, 0) };
        let mut s = stage2(&mut e, bits, 40);
        if granular {
            s.set_page_granular();
        }
        let mut model = Model::default();
        let mut last_map = None;
        for (i, op) in ops.into_iter().enumerate() {
            // Sometimes an unmap undoes the last map exactly (which empties the tables it made).
            let op = match (op, last_map) {
                (P2mOp::Unmap { budget, .. }, Some((ipa, size))) if undo[i] => P2mOp::Unmap { ipa, size, budget },
                (op, _) => op,
            };
            // Page-granular tables need a frame per 2 MiB mapped: keep ops to what the test
            // memory holds.
            let op = if granular { op.clamped(4 * MIB2) } else { op };
            if let P2mOp::Map { ipa, size, .. } = op {
                last_map = Some((ipa, size));
            }
            // Sometimes at most one more frame may be out: the op must reclaim the tables
            // earlier unmaps left empty, or fail with nothing changed.
            let limited = tight[i];
            if limited {
                e.frames.limit = Some(e.frames.outstanding + 1);
            }
            let (budget, result) = match op {
                P2mOp::Map { ipa, pa, size, attr, budget } => {
                    e.frames.budget = budget;
                    let r = e.map(&mut s, base + ipa, pa, size, ATTRS[attr as usize]);
                    if r.is_ok() {
                        model.map(ipa, pa, size, ATTRS[attr as usize]);
                    }
                    (budget, r)
                }
                P2mOp::Reattr { ipa, size, attr, budget } => {
                    let attr = ATTRS[attr as usize];
                    let runs: Vec<(u64, u64, u64)> = model.0.iter()
                        .filter(|(&at, &(len, _, _))| at < ipa + size && ipa < at + len)
                        .map(|(&at, &(len, pa, _))| {
                            let s0 = at.max(ipa);
                            let e0 = (at + len).min(ipa + size);
                            (s0, e0 - s0, pa + (s0 - at))
                        })
                        .collect();
                    let mut r = Ok(());
                    for (at, len, pa) in runs {
                        e.frames.budget = budget;
                        r = e.map(&mut s, base + at, pa, len, attr);
                        if r.is_err() {
                            break;
                        }
                        model.map(at, pa, len, attr);
                    }
                    (budget, r)
                }
                P2mOp::Unmap { ipa, size, budget } => {
                    e.frames.budget = budget;
                    let r = e.unmap(&mut s, base + ipa, size);
                    if r.is_ok() {
                        model.unmap(ipa, ipa + size);
                    }
                    (budget, r)
                }
            };
            match result {
                Ok(()) => {}
                Err(P2mError::OutOfFrames { needed }) => prop_assert!(limited || budget.is_some_and(|b| b < needed)),
                Err(err) => prop_assert!(false, "unexpected {}", err),
            }
            e.frames.budget = None;
            e.frames.limit = None;
            check_against_model(&e, &s, &model, base)?;
            if granular {
                prop_assert!(e.leaves(&s).iter().all(|l| l.size == KIB4));
            }
        }
        e.unmap(&mut s, base, WINDOW_PAGES * KIB4).unwrap();
        prop_assert_eq!(s.table_frames(), 0);
        prop_assert_eq!(e.frames.outstanding, s.root_frames());
        prop_assert!(e.leaves(&s).is_empty());
        s.destroy(&mut e.frames, &e.mem, &mut e.tlb).unwrap();
        prop_assert_eq!(e.frames.outstanding, 0);
    }
}

// ---- page-granular tables (shared with a device) -----------------------------------------

/// Valid descriptors some write made invalid, other than those at `allowed` IPAs' slots.
fn broken_entries(log: &[Event]) -> Vec<(u64, u64)> {
    log.iter()
        .filter_map(|ev| match *ev {
            Event::Write { pa, old, new } if old & 1 == 1 && new & 1 == 0 => Some((pa, old)),
            _ => None,
        })
        .collect()
}

#[test]
fn page_granular_maps_pages_only_and_never_merges() {
    let mut e = env();
    let mut s = stage2(&mut e, 39, 40);
    s.set_page_granular();
    assert!(s.is_page_granular());
    let base = GIB;
    e.map(&mut s, base, base, 4 * MIB2, S2Attr::RAM_RWX).unwrap();
    let leaves = e.leaves(&s);
    assert_eq!(leaves.len(), 4 * 512);
    assert!(leaves.iter().all(|l| l.size == KIB4));
    // A page given away and taken back: its table does not merge into a block.
    let page = base + MIB2 + 7 * KIB4;
    e.unmap(&mut s, page, KIB4).unwrap();
    e.map(&mut s, page, page, KIB4, S2Attr::RAM_RWX).unwrap();
    assert_eq!(s.lookup(page + 8, &e.mem), tr(page + 8, S2Attr::RAM_RWX, KIB4));
    assert_eq!(e.leaves(&s).len(), 4 * 512);
}

#[test]
fn page_granular_changes_leave_every_other_entry_valid() {
    // What a device walking the tables needs: while pages come and go, no other page's
    // descriptor is ever invalid, not even for a moment. The default (blocks) does break
    // a whole block to take one page out of it.
    for granular in [true, false] {
        let mut e = env();
        let mut s = stage2(&mut e, 39, 40);
        if granular {
            s.set_page_granular();
        }
        let base = GIB;
        e.map(&mut s, base, base, 4 * MIB2, S2Attr::RAM_RWX).unwrap();
        e.mem.set_logging(true);
        let pages: Vec<u64> = (0..64u64).map(|i| base + ((i * 131) % 2048) * KIB4).collect();
        for &p in &pages {
            e.unmap(&mut s, p, KIB4).unwrap();
        }
        // A run of several pages, then everything back (the default merges blocks again).
        e.unmap(&mut s, base + 3 * MIB2 + 16 * KIB4, 32 * KIB4).unwrap();
        e.map(&mut s, base + 3 * MIB2 + 16 * KIB4, base + 3 * MIB2 + 16 * KIB4, 32 * KIB4, S2Attr::RAM_RWX).unwrap();
        for &p in &pages {
            e.map(&mut s, p, p, KIB4, S2Attr::RAM_RWX).unwrap();
        }
        let log = e.mem.take_log();
        let broken = broken_entries(&log);
        if granular {
            // Only the unmapped pages' own descriptors went invalid, each once.
            let run = base + 3 * MIB2 + 16 * KIB4..base + 3 * MIB2 + 48 * KIB4;
            let expected = pages.iter().filter(|p| !run.contains(p)).count() + 32;
            assert_eq!(broken.len(), expected, "{broken:#x?}");
            assert!(broken.iter().all(|&(_, old)| old & 0b11 == 0b11 && old & ADDR_MASK != 0));
            for &(_, old) in &broken {
                let pa = old & ADDR_MASK;
                assert!(pages.contains(&pa) || run.contains(&pa), "{pa:#x}");
            }
        } else {
            assert!(broken.iter().any(|&(_, old)| old & 0b11 == 0b01), "blocks are broken before make");
        }
        assert_eq!(e.leaves(&s).iter().map(|l| l.size).sum::<u64>(), 4 * MIB2);
    }
}

#[test]
fn balloon_cycle_splits_once_and_never_merges() {
    // A page given back and taken again, over and over (decrease_reservation then
    // populate_physmap): the block is split by the first decrease only; after that each step
    // is one descriptor write, with no frame taken or freed and no whole-VMID invalidation.
    let mut e = env();
    let mut s = stage2(&mut e, 39, 40);
    let base = GIB + 4 * MIB2;
    e.map(&mut s, base, base, MIB2, S2Attr::RAM_RWX).unwrap();
    assert_eq!(s.table_frames(), 1);
    let page = base + 37 * KIB4;
    e.unmap(&mut s, page, KIB4).unwrap();
    assert_eq!(s.table_frames(), 2);
    let outstanding = e.frames.outstanding;
    e.mem.set_logging(true);
    for _ in 0..3 {
        e.map(&mut s, page, page, KIB4, S2Attr::RAM_RWX).unwrap();
        assert_eq!(s.lookup(page, &e.mem), tr(page, S2Attr::RAM_RWX, KIB4));
        e.unmap(&mut s, page, KIB4).unwrap();
        assert_eq!(s.lookup(page, &e.mem), None);
    }
    let log = e.mem.take_log();
    assert_eq!(s.table_frames(), 2);
    assert_eq!(e.frames.outstanding, outstanding);
    assert!(!log.iter().any(|ev| matches!(ev, Event::InvVmid { .. })), "{log:#x?}");
    let writes = log.iter().filter(|ev| matches!(ev, Event::Write { .. })).count();
    assert_eq!(writes, 6, "one descriptor write per step: {log:#x?}");
    // Taken back for good: a map of the whole range merges the block again.
    e.map(&mut s, base, base, MIB2, S2Attr::RAM_RWX).unwrap();
    assert_eq!(s.table_frames(), 1);
    assert_eq!(s.lookup(page, &e.mem), tr(page, S2Attr::RAM_RWX, MIB2));
}

#[test]
fn unmap_page_if_checks_the_frame_first() {
    let mut e = env();
    let mut s = stage2(&mut e, 39, 40);
    let base = GIB + 4 * MIB2;
    e.map(&mut s, base, base, MIB2, S2Attr::RAM_RWX).unwrap();
    let page = base + 5 * KIB4;
    let unmap_if = |e: &mut Env, s: &mut Stage2, ipa: u64, want: u64| {
        s.unmap_page_if(ipa, |pa| pa == want, &mut e.frames, &e.mem, &mut e.tlb)
    };
    // Inside a block: checked, then split.
    assert_eq!(unmap_if(&mut e, &mut s, page, page + KIB4), Ok(false));
    assert_eq!(s.table_frames(), 1, "a refusal changes nothing");
    assert_eq!(unmap_if(&mut e, &mut s, page, page), Ok(true));
    assert_eq!(s.lookup(page, &e.mem), None);
    assert_eq!(s.table_frames(), 2);
    // A level-3 entry: one walk.
    let next = page + KIB4;
    assert_eq!(unmap_if(&mut e, &mut s, next, 0), Ok(false));
    assert_eq!(s.lookup(next, &e.mem), tr(next, S2Attr::RAM_RWX, KIB4));
    assert_eq!(unmap_if(&mut e, &mut s, next, next), Ok(true));
    assert_eq!(s.lookup(next, &e.mem), None);
    // Nothing mapped, and bad addresses.
    assert_eq!(unmap_if(&mut e, &mut s, next, next), Ok(false));
    assert_eq!(unmap_if(&mut e, &mut s, 0x10_0000, 0x10_0000), Ok(false));
    assert!(unmap_if(&mut e, &mut s, next + 8, next).is_err());
    assert!(unmap_if(&mut e, &mut s, 1 << 45, 0).is_err());
}

#[test]
fn unmap_pages_if_invalidates_a_batch_once() {
    let mut e = env();
    let mut s = stage2(&mut e, 39, 40);
    let base = GIB + 4 * MIB2;
    e.map(&mut s, base, base, MIB2, S2Attr::RAM_RWX).unwrap();
    // Make the first 8 pages level-3 entries (a split), then a batch of 6 of them.
    assert_eq!(s.unmap_page_if(base, |_| true, &mut e.frames, &e.mem, &mut e.tlb), Ok(true));
    let ipas: Vec<u64> = (1..7).map(|k| base + k * KIB4).collect();
    e.mem.set_logging(true);
    let n = s.unmap_pages_if(&ipas, |_| true, &mut e.frames, &e.mem, &mut e.tlb);
    let log = e.mem.take_log();
    assert_eq!(n, Ok(6));
    for &ipa in &ipas {
        assert_eq!(s.lookup(ipa, &e.mem), None);
    }
    assert_eq!(s.lookup(base + 7 * KIB4, &e.mem), tr(base + 7 * KIB4, S2Attr::RAM_RWX, KIB4));
    let invs: Vec<&Event> = log.iter().filter(|ev| matches!(ev, Event::InvIpa { .. } | Event::InvVmid { .. })).collect();
    assert_eq!(invs, [&Event::InvVmid { vmid: 7 }], "one invalidation for the batch: {log:#x?}");
    assert_eq!(log.iter().filter(|ev| **ev == Event::Sync).count(), 1);
    let inv = log.iter().position(|ev| matches!(ev, Event::InvVmid { .. })).unwrap();
    let last_clear = log.iter().rposition(|ev| matches!(ev, Event::Write { new: 0, .. })).unwrap();
    assert!(last_clear < inv, "every entry is cleared before the invalidation");
    assert_eq!(*log.last().unwrap(), Event::Sync);
    e.mem.check_quiescent();

    // One page: invalidated by IPA. A refused frame stops the batch; what came before it is
    // unmapped and invalidated.
    e.mem.set_logging(true);
    let seven = base + 7 * KIB4;
    assert_eq!(s.unmap_pages_if(&[seven], |_| true, &mut e.frames, &e.mem, &mut e.tlb), Ok(1));
    let log = e.mem.take_log();
    assert!(log.contains(&Event::InvIpa { vmid: 7, ipa: seven }), "{log:#x?}");
    let (p8, p9, p10) = (base + 8 * KIB4, base + 9 * KIB4, base + 10 * KIB4);
    assert_eq!(s.unmap_pages_if(&[p8, p9, p10], |pa| pa != p9, &mut e.frames, &e.mem, &mut e.tlb), Ok(1));
    assert_eq!(s.lookup(p8, &e.mem), None);
    assert_eq!(s.lookup(p9, &e.mem), tr(p9, S2Attr::RAM_RWX, KIB4));
    // A hole stops it too; a bad address first is an error, later it ends the batch.
    assert_eq!(s.unmap_pages_if(&[p10, p8, p9], |_| true, &mut e.frames, &e.mem, &mut e.tlb), Ok(1));
    assert!(s.unmap_pages_if(&[p9 + 8], |_| true, &mut e.frames, &e.mem, &mut e.tlb).is_err());
    assert_eq!(s.unmap_pages_if(&[p9, 1 << 45], |_| true, &mut e.frames, &e.mem, &mut e.tlb), Ok(1));
    e.mem.check_quiescent();

    // A page inside a block: the pending ones are flushed, then the block is split.
    let other = base + MIB2;
    e.map(&mut s, other, other, MIB2, S2Attr::RAM_RWX).unwrap();
    let a = base + 11 * KIB4;
    assert_eq!(s.unmap_pages_if(&[a, other + KIB4], |_| true, &mut e.frames, &e.mem, &mut e.tlb), Ok(2));
    assert_eq!(s.lookup(a, &e.mem), None);
    assert_eq!(s.lookup(other + KIB4, &e.mem), None);
    assert_eq!(s.lookup(other, &e.mem), tr(other, S2Attr::RAM_RWX, KIB4));
    e.mem.check_quiescent();
}

#[test]
fn unmap_each_page_if_goes_past_refusals_and_invalidates_once() {
    let mut e = env();
    let mut s = stage2(&mut e, 39, 40);
    let base = GIB + 4 * MIB2;
    e.map(&mut s, base, base, MIB2, S2Attr::RAM_RWX).unwrap();
    assert_eq!(s.unmap_page_if(base, |_| true, &mut e.frames, &e.mem, &mut e.tlb), Ok(true));
    let p = |k: u64| base + k * KIB4;
    // A refused frame, a hole and a bad address between pages that go: each gets its own
    // answer, and the level-3 pages that go share one invalidation.
    e.mem.set_logging(true);
    let r = s.unmap_each_page_if(&[p(1), p(2), base, p(3) + 8, p(4)], |i, pa| i != 1 && pa != 0, &mut e.frames, &e.mem, &mut e.tlb);
    let log = e.mem.take_log();
    assert_eq!(r[0], Ok(true));
    assert_eq!(r[1], Ok(false), "refused");
    assert_eq!(r[2], Ok(false), "a hole");
    assert!(r[3].is_err(), "misaligned");
    assert_eq!(r[4], Ok(true));
    assert_eq!(s.lookup(p(1), &e.mem), None);
    assert_eq!(s.lookup(p(4), &e.mem), None);
    assert_eq!(s.lookup(p(2), &e.mem), tr(p(2), S2Attr::RAM_RWX, KIB4));
    let invs: Vec<&Event> = log.iter().filter(|ev| matches!(ev, Event::InvIpa { .. } | Event::InvVmid { .. })).collect();
    assert_eq!(invs, [&Event::InvVmid { vmid: 7 }], "{log:#x?}");
    assert_eq!(*log.last().unwrap(), Event::Sync);
    e.mem.check_quiescent();

    // One page: by IPA. A page inside a block flushes what is pending, then is split.
    let other = base + MIB2;
    e.map(&mut s, other, other, MIB2, S2Attr::RAM_RWX).unwrap();
    e.mem.set_logging(true);
    let r = s.unmap_each_page_if(&[p(5), other + KIB4], |_, _| true, &mut e.frames, &e.mem, &mut e.tlb);
    let log = e.mem.take_log();
    assert_eq!(r, [Ok(true), Ok(true)]);
    assert!(log.contains(&Event::InvIpa { vmid: 7, ipa: p(5) }), "{log:#x?}");
    assert_eq!(s.lookup(other + KIB4, &e.mem), None);
    assert_eq!(s.lookup(other, &e.mem), tr(other, S2Attr::RAM_RWX, KIB4));
    e.mem.check_quiescent();
    assert!(s.unmap_each_page_if(&[], |_, _| true, &mut e.frames, &e.mem, &mut e.tlb).is_empty());
}
