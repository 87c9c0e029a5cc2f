//! Cost of keeping an Exynos SysMMU shadow table in sync with the p2m: map + unmap of one 4 KiB
//! page and of one 1 MiB section, through `ShadowTable` (table edits, cache cleans, and the flushes
//! a v3.3 SysMMU needs, written to a register double that answers at once), and through the bare
//! table editor for comparison. Run: `cargo bench -p xenith-hypervisor --bench sysmmu`.

use std::cell::{Cell, RefCell};
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use platform::exynos5250::sysmmu_pt::{Lv2TableAllocator, Prot, PtFormat, SysmmuPageTable, LV2_TABLE_SIZE};
use platform::{MemError, Mmio, PhysMem};
use xenith::iommu::exynos_sysmmu::{Sysmmu, ShadowTable};

const BASE: u64 = 0x4000_0000;
const PGD: u64 = BASE;
const POOL: u64 = BASE + 0x10_0000;

/// 16 MiB of flat RAM; cleans are no-ops but counted.
struct Ram {
    bytes: RefCell<Vec<u8>>,
    cleans: Cell<u64>,
}

impl PhysMem for &Ram {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let off = pa.checked_sub(BASE).ok_or(MemError::NotMemory { pa })? as usize;
        let b = self.bytes.borrow();
        buf.copy_from_slice(b.get(off..off + buf.len()).ok_or(MemError::NotMemory { pa })?);
        Ok(())
    }
    fn write(&self, pa: u64, data: &[u8]) -> Result<(), MemError> {
        let off = pa.checked_sub(BASE).ok_or(MemError::NotMemory { pa })? as usize;
        let mut b = self.bytes.borrow_mut();
        b.get_mut(off..off + data.len()).ok_or(MemError::NotMemory { pa })?.copy_from_slice(data);
        Ok(())
    }
    fn clean_dcache(&self, _pa: u64, _len: usize) {
        self.cleans.set(self.cleans.get() + 1);
    }
}

/// A SysMMU v3.3 register block that blocks at once and counts accesses.
struct Regs {
    accesses: Cell<u64>,
}

impl Mmio for &Regs {
    fn read32(&self, offset: usize) -> u32 {
        self.accesses.set(self.accesses.get() + 1);
        match offset {
            0x034 => (3 << 28) | (3 << 21),
            0x008 => 1,
            _ => 0,
        }
    }
    fn write32(&self, _offset: usize, _value: u32) {
        self.accesses.set(self.accesses.get() + 1);
    }
}

struct Pool {
    next: u64,
    free: Vec<u64>,
}

impl Lv2TableAllocator for Pool {
    fn alloc_lv2(&mut self) -> Option<u64> {
        self.free.pop().or_else(|| {
            let p = self.next;
            self.next += LV2_TABLE_SIZE as u64;
            Some(p)
        })
    }
    fn free_lv2(&mut self, pa: u64) {
        self.free.push(pa);
    }
}

fn ram() -> Ram {
    Ram { bytes: RefCell::new(vec![0; 16 << 20]), cleans: Cell::new(0) }
}

fn bench(c: &mut Criterion) {
    let mem = ram();
    let regs = Regs { accesses: Cell::new(0) };
    let mut sh = ShadowTable::new(&mem, Pool { next: POOL, free: Vec::new() }, PtFormat::V1, PGD).unwrap();
    sh.attach(Sysmmu::probe(&regs).unwrap()).map_err(|(e, _)| e).unwrap();
    // Keep one page mapped in the 4 KiB case's MiB so its level-2 table stays (steady state).
    sh.map(0x1000_0000, 0x5000_0000, 0x1000, true).unwrap();

    // Counts per operation, for the report.
    for (name, ipa, size) in [("4 KiB", 0x1000_1000u64, 0x1000u64), ("4 KiB, new level-2 table", 0x2000_0000, 0x1000), ("1 MiB", 0x3000_0000, 1 << 20)] {
        let (a0, c0) = (regs.accesses.get(), mem.cleans.get());
        sh.map(ipa, 0x6000_0000, size, true).unwrap();
        sh.unmap(ipa, size).unwrap();
        println!(
            "shadow map+unmap {name}: {} SysMMU register accesses, {} cache cleans",
            regs.accesses.get() - a0,
            mem.cleans.get() - c0
        );
    }

    let mut g = c.benchmark_group("sysmmu_shadow");
    g.bench_function("map+unmap 4KiB", |b| {
        b.iter(|| {
            sh.map(black_box(0x1000_1000), 0x6000_0000, 0x1000, true).unwrap();
            sh.unmap(black_box(0x1000_1000), 0x1000).unwrap();
        })
    });
    g.bench_function("map+unmap 4KiB new lv2 table", |b| {
        b.iter(|| {
            sh.map(black_box(0x2000_0000), 0x6000_0000, 0x1000, true).unwrap();
            sh.unmap(black_box(0x2000_0000), 0x1000).unwrap();
        })
    });
    g.bench_function("map+unmap 1MiB section", |b| {
        b.iter(|| {
            sh.map(black_box(0x3000_0000), 0x6000_0000, 1 << 20, true).unwrap();
            sh.unmap(black_box(0x3000_0000), 1 << 20).unwrap();
        })
    });
    g.bench_function("map+unmap 1MiB as 256 x 4KiB", |b| {
        b.iter(|| {
            sh.map(black_box(0x3000_0000), 0x6000_1000, 1 << 20, true).unwrap();
            sh.unmap(black_box(0x3000_0000), 1 << 20).unwrap();
        })
    });
    g.finish();

    let mem2 = ram();
    let mut pool = Pool { next: POOL, free: Vec::new() };
    let mut pt = SysmmuPageTable::new(&&mem2, &mut pool, PtFormat::V1, PGD).unwrap();
    pt.map(&&mem2, &mut pool, 0x1000_0000, 0x5000_0000, 0x1000, Prot::RW).unwrap();
    let mut g = c.benchmark_group("sysmmu_table_only");
    g.bench_function("map+unmap 4KiB", |b| {
        b.iter(|| {
            pt.map(&&mem2, &mut pool, black_box(0x1000_1000), 0x6000_0000, 0x1000, Prot::RW).unwrap();
            pt.unmap(&&mem2, &mut pool, black_box(0x1000_1000), 0x1000).unwrap();
        })
    });
    g.bench_function("map+unmap 1MiB section", |b| {
        b.iter(|| {
            pt.map(&&mem2, &mut pool, black_box(0x3000_0000), 0x6000_0000, 1 << 20, Prot::RW).unwrap();
            pt.unmap(&&mem2, &mut pool, black_box(0x3000_0000), 1 << 20).unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
