//! Glue to the stage-2 code: the SMMU as a [`TlbOps`] (so every p2m change of a domain that
//! owns devices reaches the SMMU's TLB, batched: one CMD_SYNC per p2m `sync`), a [`TlbOps`]
//! that feeds two implementations (the CPU's and the SMMU's), and a [`DmaAlloc`] over the
//! frame allocator.

use platform::{Clock, Mmio, PhysMem};

use super::{DmaAlloc, Smmu, SmmuError};
use crate::mm::{FrameAlloc, TlbOps, PAGE_SIZE};

/// The SMMU side of stage-2 TLB maintenance. `invalidate_ipa` / `invalidate_vmid` queue
/// their command at once (no CMD_SYNC, nothing allocated); `sync` ends the batch with one
/// CMD_SYNC and waits for it. [`TlbOps`] cannot fail, so SMMU errors are counted and kept for
/// the caller to log.
pub struct SmmuTlb<'a, M: Mmio, P: PhysMem, C: Clock, A: DmaAlloc> {
    smmu: &'a mut Smmu<M, P, C, A>,
    pub errors: u32,
    pub last_error: Option<SmmuError>,
}

impl<'a, M: Mmio, P: PhysMem, C: Clock, A: DmaAlloc> SmmuTlb<'a, M, P, C, A> {
    pub fn new(smmu: &'a mut Smmu<M, P, C, A>) -> Self {
        SmmuTlb {
            smmu,
            errors: 0,
            last_error: None,
        }
    }

    fn record(&mut self, r: Result<(), SmmuError>) {
        if let Err(e) = r {
            self.errors += 1;
            self.last_error = Some(e);
        }
    }

    /// Complete what is queued: one CMD_SYNC (none if nothing was queued since the last).
    pub fn flush(&mut self) -> Result<(), SmmuError> {
        self.smmu.sync_queued()
    }
}

impl<M: Mmio, P: PhysMem, C: Clock, A: DmaAlloc> TlbOps for SmmuTlb<'_, M, P, C, A> {
    fn invalidate_ipa(&mut self, vmid: u16, ipa: u64) {
        // Non-leaf: the p2m may have removed table descriptors too.
        let r = self.smmu.queue_s2_ipa(vmid, ipa);
        self.record(r);
    }

    fn invalidate_vmid(&mut self, vmid: u16) {
        let r = self.smmu.queue_vmid(vmid);
        self.record(r);
    }

    fn sync(&mut self) {
        let r = self.flush();
        self.record(r);
    }
}

impl<M: Mmio, P: PhysMem, C: Clock, A: DmaAlloc> Drop for SmmuTlb<'_, M, P, C, A> {
    /// Nothing queued may be left incomplete: a p2m change without a final `sync` still gets
    /// its CMD_SYNC (errors are then only counted on the dropped value).
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Forward every call to two [`TlbOps`] (e.g. the CPU's `HwTlb` and an [`SmmuTlb`]), in
/// that order.
pub struct BothTlb<'a>(pub &'a mut dyn TlbOps, pub &'a mut dyn TlbOps);

impl TlbOps for BothTlb<'_> {
    fn invalidate_ipa(&mut self, vmid: u16, ipa: u64) {
        self.0.invalidate_ipa(vmid, ipa);
        self.1.invalidate_ipa(vmid, ipa);
    }
    fn invalidate_vmid(&mut self, vmid: u16) {
        self.0.invalidate_vmid(vmid);
        self.1.invalidate_vmid(vmid);
    }
    fn sync(&mut self) {
        self.0.sync();
        self.1.sync();
    }
}

/// SMMU structures from the frame allocator: whole frames, a power-of-two count aligned to
/// its size (so any alignment up to the block size holds).
pub struct FrameDma<F: FrameAlloc>(pub F);

impl<F: FrameAlloc> DmaAlloc for FrameDma<F> {
    fn alloc(&mut self, size: usize, align: usize) -> Option<u64> {
        let bytes = (size.max(align) as u64).max(PAGE_SIZE);
        let count = bytes.div_ceil(PAGE_SIZE).checked_next_power_of_two()?;
        let pa = self.0.alloc_frames(usize::try_from(count).ok()?)?;
        if pa % (align as u64).max(1) != 0 {
            self.0.free_frames(pa, count as usize);
            return None;
        }
        Some(pa)
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::{qemu_stage2_idr, Bump, Model, Ram, TestClock};
    use super::super::{Command, SmmuConfig};
    use super::*;

    #[derive(Default)]
    struct Recorder(Vec<&'static str>);
    impl TlbOps for Recorder {
        fn invalidate_ipa(&mut self, _: u16, _: u64) {
            self.0.push("ipa");
        }
        fn invalidate_vmid(&mut self, _: u16) {
            self.0.push("vmid");
        }
        fn sync(&mut self) {
            self.0.push("sync");
        }
    }

    #[test]
    fn p2m_changes_reach_the_smmu_batched() {
        let ram = Ram::new(0x4000_0000, 4 << 20);
        let clock = TestClock::new(1000);
        let model = Model::new(&ram, qemu_stage2_idr());
        let mut idr = qemu_stage2_idr();
        idr[3] = 0; // per-granule commands, to see them
        model.idr.set(idr);
        let cfg = SmmuConfig {
            max_sid_bits: Some(8),
            ..SmmuConfig::default()
        };
        let mut smmu = Smmu::new(
            &model,
            &ram,
            &clock,
            Bump::new(0x4000_0000, 0x4040_0000),
            cfg,
        )
        .unwrap();
        smmu.enable().unwrap();
        model.commands.borrow_mut().clear();

        let mut cpu = Recorder::default();
        {
            let mut stlb = SmmuTlb::new(&mut smmu);
            {
                let mut both = BothTlb(&mut cpu, &mut stlb);
                both.invalidate_ipa(1, 0x4000_0000);
                both.invalidate_ipa(1, 0x4020_0000);
                both.invalidate_ipa(2, 0x8000_0000);
                both.sync();
                both.sync(); // nothing pending: no SMMU command
                both.invalidate_vmid(3);
            }
            assert_eq!(stlb.errors, 0);
        }
        assert_eq!(cpu.0, ["ipa", "ipa", "ipa", "sync", "sync", "vmid"]);
        let ipa = |vmid, ipa| Command::TlbiS2Ipa {
            vmid,
            ipa,
            leaf: false,
            ttl: 0,
            range: None,
        };
        assert_eq!(
            *model.commands.borrow(),
            [
                ipa(1, 0x4000_0000),
                ipa(1, 0x4020_0000),
                ipa(2, 0x8000_0000),
                Command::Sync,
                Command::TlbiS12Vmall { vmid: 3 },
                Command::Sync,
            ]
        );

        // Dropped without a sync: still issued.
        model.commands.borrow_mut().clear();
        {
            let mut stlb = SmmuTlb::new(&mut smmu);
            stlb.invalidate_ipa(4, 0x1000);
        }
        assert_eq!(*model.commands.borrow(), [ipa(4, 0x1000), Command::Sync]);

        // Errors are kept, not panicked on.
        model.stall_cmdq.set(true);
        let mut stlb = SmmuTlb::new(&mut smmu);
        stlb.invalidate_ipa(1, 0);
        stlb.sync();
        assert_eq!(stlb.errors, 1);
        assert_eq!(
            stlb.last_error,
            Some(SmmuError::Timeout { what: "CMD_SYNC" })
        );
    }

    struct Frames {
        next: u64,
    }
    impl FrameAlloc for Frames {
        fn alloc_frame(&mut self) -> Option<u64> {
            self.alloc_frames(1)
        }
        fn free_frame(&mut self, _: u64) {}
        fn alloc_frames(&mut self, count: usize) -> Option<u64> {
            let size = count as u64 * PAGE_SIZE;
            let pa = self.next.div_ceil(size) * size;
            self.next = pa + size;
            Some(pa)
        }
    }

    /// The figure `cargo xtask bench` reports: SMMU commands for one p2m unmap of 1000 pages
    /// of a domain whose stage 2 the SMMU shares (target: one CMD_SYNC for the batch).
    #[test]
    fn bench_unmap_1000_pages_commands() {
        use crate::mm::{S2Attr, Stage2, Stage2Config};
        let ram = Ram::new(0x4000_0000, 16 << 20);
        let clock = TestClock::new(1000);
        let model = Model::new(&ram, qemu_stage2_idr());
        let cfg = SmmuConfig { max_sid_bits: Some(8), ..SmmuConfig::default() };
        let mut smmu = Smmu::new(&model, &ram, &clock, Bump::new(0x4000_0000, 0x4040_0000), cfg).unwrap();
        smmu.enable().unwrap();
        let mut frames = Frames { next: 0x4040_0000 };
        let mut cpu = Recorder::default();
        let mem = &ram;
        let mut p2m = Stage2::new(5, Stage2Config { ipa_bits: 40, pa_bits: 40 }, &mut frames, &mem).unwrap();
        smmu.attach_stream(1, 5, p2m.vttbr(), p2m.vtcr()).unwrap();
        for i in 0..1000u64 {
            // Every other frame, so nothing merges into a block.
            p2m.map(0x8000_0000 + i * PAGE_SIZE, 0x1_0000_0000 + 2 * i * PAGE_SIZE, PAGE_SIZE, S2Attr::RAM_RW, &mut frames, &mem, &mut cpu)
                .unwrap();
        }
        let before = smmu.stats();
        {
            let mut stlb = SmmuTlb::new(&mut smmu);
            let mut both = BothTlb(&mut cpu, &mut stlb);
            p2m.unmap(0x8000_0000, 1000 * PAGE_SIZE, &mut frames, &mem, &mut both).unwrap();
        }
        let after = smmu.stats();
        let (cmds, syncs) = (after.total - before.total, after.syncs - before.syncs);
        std::println!("bench smmu_unmap_1000_pages: commands {cmds} cmd_sync {syncs}");
        assert_eq!(syncs, 1, "one CMD_SYNC for the whole unmap");
        assert!(cmds <= 3, "{cmds} commands");
    }

    /// DMA isolation after a grant unmap: a one-page unmap from a stage 2 the SMMU shares
    /// leaves exactly one TLBI_S2_IPA for that page followed by one CMD_SYNC, completed before
    /// `unmap` returns; a one-page map into existing tables issues nothing.
    #[test]
    fn one_page_unmap_invalidates_the_smmu_before_returning() {
        use crate::mm::{S2Attr, Stage2, Stage2Config};
        let ram = Ram::new(0x4000_0000, 16 << 20);
        let clock = TestClock::new(1000);
        let model = Model::new(&ram, qemu_stage2_idr());
        let cfg = SmmuConfig { max_sid_bits: Some(8), ..SmmuConfig::default() };
        let mut smmu = Smmu::new(&model, &ram, &clock, Bump::new(0x4000_0000, 0x4040_0000), cfg).unwrap();
        smmu.enable().unwrap();
        let mut frames = Frames { next: 0x4040_0000 };
        let mem = &ram;
        let mut p2m = Stage2::new(5, Stage2Config { ipa_bits: 40, pa_bits: 40 }, &mut frames, &mem).unwrap();
        smmu.attach_stream(1, 5, p2m.vttbr(), p2m.vtcr()).unwrap();
        let page = 0x8010_0000;
        let mut cpu = Recorder::default();
        // A neighbour stays mapped (the table under the page never becomes empty).
        p2m.map(page + PAGE_SIZE, 0x1_0000_2000, PAGE_SIZE, S2Attr::RAM_RW, &mut frames, &mem, &mut cpu).unwrap();
        for round in 0..2 {
            model.commands.borrow_mut().clear();
            {
                let mut stlb = SmmuTlb::new(&mut smmu);
                let mut both = BothTlb(&mut cpu, &mut stlb);
                p2m.map(page, 0x1_0000_0000, PAGE_SIZE, S2Attr::RAM_RW, &mut frames, &mem, &mut both).unwrap();
            }
            assert!(model.commands.borrow().is_empty(), "round {round}: a map over nothing invalidates nothing");
            let synced = smmu.stats().syncs;
            {
                let mut stlb = SmmuTlb::new(&mut smmu);
                let mut both = BothTlb(&mut cpu, &mut stlb);
                p2m.unmap(page, PAGE_SIZE, &mut frames, &mem, &mut both).unwrap();
                assert_eq!(stlb.errors, 0);
            }
            let tlbi = Command::TlbiS2Ipa { vmid: 5, ipa: page, leaf: false, ttl: 0, range: None };
            assert_eq!(*model.commands.borrow(), [tlbi, Command::Sync], "round {round}");
            assert_eq!(smmu.stats().syncs, synced + 1);
            assert_eq!(p2m.lookup(page, &mem), None);
        }
    }

    #[test]
    fn frame_dma_rounds_to_aligned_blocks() {
        let mut d = FrameDma(Frames { next: 0x4000_1000 });
        assert_eq!(d.alloc(64, 64), Some(0x4000_1000));
        let l2 = d.alloc(16 << 10, 16 << 10).unwrap();
        assert_eq!(l2 % (16 << 10), 0);
        let big = d.alloc(4 << 20, 4 << 20).unwrap();
        assert_eq!(big % (4 << 20), 0);
    }
}
