//! Done-when #1, the property: random map / unmap / sync / device-write sequences, in every
//! implementation (and a dom0-driven SysMMU over grant-mapped foreign frames), keep every live mapping translating to the right bytes (as the device sees
//! them: machine memory, through the IO page table, or through the backend's grant lookup),
//! report wrong-size unmaps without losing the mapping, and leak no IOVA, bounce slot or grant.
#![allow(clippy::single_range_in_vec_init)]

use dom0_dma::grant::GrantDma;
use dom0_dma::hv::XenFeatures;
use dom0_dma::iommu::lpae::{RecordingCmdq, Smmuv3S1Domain};
use dom0_dma::iommu::sysmmu::SysmmuDomain;
use dom0_dma::iommu::{FlushMode, IommuDma, IommuDomain};
use dom0_dma::sim::{SimArch, SimHypervisor, SimMachine};
use dom0_dma::swiotlb::{ForeignP2m, XenSwiotlb};
use dom0_dma::{ArchDmaOps, Direct, Direction, DmaAttrs, DmaError, DmaOps, PhysMem, RamMap};
use proptest::prelude::*;
use sysmmu_model::mem::SimMem;
use sysmmu_model::sysmmu::{ModelConfig, SysmmuModel};

const RAM: u64 = 0x4000_0000;
const RAM_SIZE: u64 = 32 << 20;
const FOREIGN: u64 = 0x3000_0000;
const BUFS: u64 = RAM + (16 << 20);
const BUF_STRIDE: u64 = 64 << 10;
const NBUF: usize = 8;
const BACKEND: u16 = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Direct,
    SwiotlbMaskForeign,
    SwiotlbForce,
    IommuLpaeDeferred,
    IommuSysmmu,
    IommuSysmmuForeign,
    Grant,
}

#[derive(Clone, Debug)]
enum Op {
    Map { buf: usize, off: u64, len: usize, dir: u8 },
    Unmap { slot: usize },
    SyncForDevice { slot: usize, seed: u8 },
    DeviceWrite { slot: usize, seed: u8, sync: bool },
    WrongSizeUnmap { slot: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..NBUF, 0u64..8192, 1usize..(3 * 4096 + 100), 0u8..3).prop_map(|(buf, off, len, dir)| Op::Map { buf, off, len, dir }),
        2 => (0usize..16).prop_map(|slot| Op::Unmap { slot }),
        2 => (0usize..16, any::<u8>()).prop_map(|(slot, seed)| Op::SyncForDevice { slot, seed }),
        2 => (0usize..16, any::<u8>(), any::<bool>()).prop_map(|(slot, seed, sync)| Op::DeviceWrite { slot, seed, sync }),
        1 => (0usize..16).prop_map(|slot| Op::WrongSizeUnmap { slot }),
    ]
}

type Lpae = Smmuv3S1Domain<SimArch, RecordingCmdq>;
type Sysmmu = SysmmuDomain<SimArch, &'static SysmmuModel>;

enum Dut {
    Direct(Direct<SimArch>),
    Sw(XenSwiotlb<SimArch, SimHypervisor>),
    Lpae(IommuDma<SimArch, Lpae>),
    Sysmmu(IommuDma<SimArch, Sysmmu>),
    Grant(GrantDma<SimArch, SimHypervisor>),
}

impl Dut {
    fn ops(&mut self) -> &mut dyn DmaOps {
        match self {
            Dut::Direct(d) => d,
            Dut::Sw(d) => d,
            Dut::Lpae(d) => d,
            Dut::Sysmmu(d) => d,
            Dut::Grant(d) => d,
        }
    }
}

struct World {
    m: SimMachine,
    h: SimHypervisor,
    dut: Dut,
}

fn regs() -> &'static SysmmuModel {
    thread_local! {
        static MODEL: &'static SysmmuModel = Box::leak(Box::new(SysmmuModel::new(
            ModelConfig::v3(3),
            std::rc::Rc::new(SimMem::new(&[(0..0x1000)])),
        )));
    }
    MODEL.with(|m| *m)
}

/// Buffer 7: two foreign frames that are not machine-contiguous; buffer 6: two that are.
/// Both below the swiotlb mode's mask; buffers 4.. themselves are above it.
fn foreign_buffers(h: &SimHypervisor) -> dom0_dma::swiotlb::SharedP2m {
    let p2m = ForeignP2m::shared();
    for (buf, page, mfn) in [(7u64, 0u64, 0x30000u64), (7, 1, 0x30002), (6, 0, 0x30010), (6, 1, 0x30011)] {
        let gref = (buf * 10 + page) as u32;
        h.offer_grant(1, gref, mfn, false);
        p2m.borrow_mut().map_grant(h, BUFS + buf * BUF_STRIDE + page * 4096, 1, gref, false).unwrap();
    }
    p2m
}

fn world(mode: Mode) -> World {
    let m = SimMachine::new(RAM, RAM_SIZE);
    m.add_foreign_memory(FOREIGN, 1 << 20);
    let h = SimHypervisor::new(&m, XenFeatures::XEN_DOM0_DIRECT.0);
    let ram = RamMap::new(&[(RAM, RAM_SIZE)]);
    let arch = SimArch::new(&m, false);
    let dut = match mode {
        Mode::Direct => Dut::Direct(Direct::new(arch, u64::MAX, ram)),
        Mode::SwiotlbMaskForeign => {
            let p2m = foreign_buffers(&h);
            let mask = BUFS + 4 * BUF_STRIDE - 1;
            Dut::Sw(XenSwiotlb::new(arch, h.clone(), p2m, mask, ram, 1 << 20).unwrap())
        }
        Mode::SwiotlbForce => {
            Dut::Sw(XenSwiotlb::new(arch, h.clone(), ForeignP2m::shared(), u64::MAX, ram, 1 << 20).unwrap().force_bounce(true))
        }
        Mode::IommuLpaeDeferred => {
            let dom = Smmuv3S1Domain::new(arch.clone(), RecordingCmdq { count_only: true, ..Default::default() }, 1).unwrap();
            Dut::Lpae(IommuDma::new(arch, dom, u64::MAX, ram).with_flush_mode(FlushMode::Deferred { batch: 4 }))
        }
        Mode::IommuSysmmu | Mode::IommuSysmmuForeign => {
            let tables = arch.alloc_pages(256 << 10, 16 << 10).unwrap();
            let mut dom = SysmmuDomain::new(arch.clone(), tables, 256 << 10).unwrap();
            dom.attach(regs());
            let io = IommuDma::new(arch, dom, 0xFFFF_FFFF, ram);
            if mode == Mode::IommuSysmmuForeign {
                // The SysMMU outputs machine addresses: grant-mapped frames need their mfn.
                Dut::Sysmmu(io.with_foreign_p2m(foreign_buffers(&h)))
            } else {
                Dut::Sysmmu(io)
            }
        }
        Mode::Grant => Dut::Grant(GrantDma::new(arch, h.clone(), BACKEND, 4096, ram)),
    };
    World { m, h, dut }
}

impl World {
    /// dma -> machine address of one byte, as the device's bus would resolve it.
    fn device_addr(&self, dma: u64) -> u64 {
        match &self.dut {
            Dut::Direct(_) => self.m.gpa_to_machine(dma),
            Dut::Sw(_) => dma,
            Dut::Lpae(io) => self.m.gpa_to_machine(io.domain().iova_to_phys(dma).expect("live IOVA translates").0),
            // No stage 2 behind a dom0-driven SysMMU: its output is the machine address.
            Dut::Sysmmu(io) => io.domain().iova_to_phys(dma).expect("live IOVA translates").0,
            Dut::Grant(_) => self.h.resolve_grant_addr(BACKEND, dma).expect("live grant resolves").0,
        }
    }

    fn chunks(dma: u64, len: usize) -> impl Iterator<Item = (u64, usize, usize)> {
        let mut done = 0usize;
        std::iter::from_fn(move || {
            if done >= len {
                return None;
            }
            let a = dma + done as u64;
            let n = (len - done).min((4096 - (a & 4095)) as usize);
            let r = (a, done, n);
            done += n;
            Some(r)
        })
    }

    fn device_read(&self, dma: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        for (a, at, n) in Self::chunks(dma, len) {
            self.m.machine_read(self.device_addr(a), &mut out[at..at + n]).unwrap();
        }
        out
    }

    fn device_write(&self, dma: u64, data: &[u8]) {
        for (a, at, n) in Self::chunks(dma, data.len()) {
            self.m.machine_write(self.device_addr(a), &data[at..at + n]).unwrap();
        }
    }

    fn cpu_read(&self, pa: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        self.m.read(pa, &mut out).unwrap();
        out
    }

    fn check_tables(&self) -> Result<(), TestCaseError> {
        match &self.dut {
            Dut::Lpae(io) => io.check_consistency().map_err(|e| TestCaseError::fail(e.to_string())),
            Dut::Sysmmu(io) => io.check_consistency().map_err(|e| TestCaseError::fail(e.to_string())),
            _ => Ok(()),
        }
    }

    fn check_no_leaks(&mut self) -> Result<(), TestCaseError> {
        match &mut self.dut {
            Dut::Direct(d) => prop_assert_eq!(d.live_mappings(), 0),
            Dut::Sw(d) => {
                prop_assert_eq!(d.live_mappings(), 0);
                let s = d.pool_stats();
                prop_assert_eq!(s.live, 0, "bounce slots leaked");
                prop_assert_eq!(s.live + s.cached + s.free + s.untouched, s.total);
            }
            Dut::Lpae(io) => {
                io.flush();
                prop_assert_eq!(io.iova_stats().live, 0, "IOVA leaked");
                prop_assert_eq!(io.domain().mapped_bytes(), 0);
                prop_assert!(io.domain().leaves().is_empty(), "IO page table still maps something");
                io.check_consistency().map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            Dut::Sysmmu(io) => {
                prop_assert_eq!(io.iova_stats().live, 0, "IOVA leaked");
                prop_assert_eq!(io.domain().mapped_bytes(), 0);
                prop_assert_eq!(io.domain().lv2_tables(), 0);
                io.check_consistency().map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            Dut::Grant(g) => {
                prop_assert_eq!(g.grefs_in_use(), 0, "grant references leaked");
                prop_assert_eq!(self.h.counts().live_front_grants, 0);
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
struct Live {
    buf: usize,
    pa: u64,
    dma: u64,
    len: usize,
    dir: Direction,
    /// Data the device wrote without a sync yet: the CPU must see it after unmap.
    unsynced: Option<Vec<u8>>,
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8).collect()
}

fn run(mode: Mode, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut w = world(mode);
    let mut live: Vec<Live> = Vec::new();
    for op in ops {
        match op {
            Op::Map { buf, off, len, dir } => {
                if live.iter().any(|l| l.buf == buf) {
                    continue; // one mapping per buffer: device writes must not alias
                }
                let dir = [Direction::ToDevice, Direction::FromDevice, Direction::Bidirectional][dir as usize];
                let pa = BUFS + buf as u64 * BUF_STRIDE + off;
                w.m.write(pa, &pattern(buf as u8, len)).unwrap();
                let dma = w.dut.ops().map_page(pa, len, dir, DmaAttrs::NONE).map_err(|e| TestCaseError::fail(e.to_string()))?;
                if dir.device_reads() {
                    prop_assert_eq!(w.device_read(dma, len), w.cpu_read(pa, len), "map: device sees the buffer");
                }
                live.push(Live { buf, pa, dma, len, dir, unsynced: None });
            }
            Op::Unmap { slot } if !live.is_empty() => {
                let l = live.remove(slot % live.len());
                w.dut.ops().unmap_page(l.dma, l.len, l.dir, DmaAttrs::NONE).map_err(|e| TestCaseError::fail(e.to_string()))?;
                if let Some(data) = l.unsynced {
                    prop_assert_eq!(w.cpu_read(l.pa, l.len), data, "unmap: CPU sees what the device wrote");
                }
            }
            Op::SyncForDevice { slot, seed } if !live.is_empty() => {
                let i = slot % live.len();
                let l = live[i].clone();
                if l.unsynced.is_some() {
                    continue; // the CPU would overwrite unsynced device data: a driver bug
                }
                let data = pattern(seed, l.len);
                w.m.write(l.pa, &data).unwrap();
                w.dut.ops().sync_for_device(l.dma, l.len, l.dir).map_err(|e| TestCaseError::fail(e.to_string()))?;
                if l.dir.device_reads() {
                    prop_assert_eq!(w.device_read(l.dma, l.len), data, "sync_for_device");
                }
            }
            Op::DeviceWrite { slot, seed, sync } if !live.is_empty() => {
                let i = slot % live.len();
                if !live[i].dir.device_writes() {
                    continue;
                }
                let l = live[i].clone();
                let data = pattern(seed ^ 0x5A, l.len);
                w.device_write(l.dma, &data);
                if sync {
                    w.dut.ops().sync_for_cpu(l.dma, l.len, l.dir).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!(w.cpu_read(l.pa, l.len), data, "sync_for_cpu");
                    live[i].unsynced = None;
                } else {
                    live[i].unsynced = Some(data);
                }
            }
            Op::WrongSizeUnmap { slot } if !live.is_empty() => {
                let l = live[slot % live.len()].clone();
                let r = w.dut.ops().unmap_page(l.dma, l.len + 1, l.dir, DmaAttrs::NONE);
                prop_assert_eq!(r, Err(DmaError::SizeMismatch { dma: l.dma, mapped: l.len, requested: l.len + 1 }));
                // Still mapped and still right.
                if l.dir.device_reads() && l.unsynced.is_none() {
                    prop_assert_eq!(w.device_read(l.dma, l.len), w.cpu_read(l.pa, l.len));
                }
            }
            _ => {}
        }
        w.check_tables()?;
    }
    for l in live.drain(..) {
        w.dut.ops().unmap_page(l.dma, l.len, l.dir, DmaAttrs::NONE).map_err(|e| TestCaseError::fail(e.to_string()))?;
        if let Some(data) = l.unsynced {
            prop_assert_eq!(w.cpu_read(l.pa, l.len), data);
        }
    }
    w.check_no_leaks()
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: 48, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]
    #[test]
    fn direct_sequences(ops in prop::collection::vec(op(), 1..40)) { run(Mode::Direct, ops)?; }
    #[test]
    fn swiotlb_mask_and_foreign_sequences(ops in prop::collection::vec(op(), 1..40)) { run(Mode::SwiotlbMaskForeign, ops)?; }
    #[test]
    fn swiotlb_forced_bounce_sequences(ops in prop::collection::vec(op(), 1..40)) { run(Mode::SwiotlbForce, ops)?; }
    #[test]
    fn iommu_lpae_deferred_sequences(ops in prop::collection::vec(op(), 1..40)) { run(Mode::IommuLpaeDeferred, ops)?; }
    #[test]
    fn iommu_sysmmu_sequences(ops in prop::collection::vec(op(), 1..40)) { run(Mode::IommuSysmmu, ops)?; }
    #[test]
    fn iommu_sysmmu_foreign_frames_sequences(ops in prop::collection::vec(op(), 1..40)) { run(Mode::IommuSysmmuForeign, ops)?; }
    #[test]
    fn grant_sequences(ops in prop::collection::vec(op(), 1..40)) { run(Mode::Grant, ops)?; }
}
