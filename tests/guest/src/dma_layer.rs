//! edu DMA through the dom0 DMA layer (`dom0/dma`), the way a dom0 driver would use it: facts
//! about the device and what the hypervisor reports go to `select`, which picks the ops; the
//! transfers then use the DMA addresses those ops hand out.
//!
//! - Direct: the hypervisor owns the SMMU and dom0's stage 2 is 1:1, so dma == phys.
//! - XenSwiotlb: the device declares a 32-bit DMA mask and the buffers lie above 4 GiB (boot
//!   with `-m 6G` and `dom0_mem=4G`), so every transfer bounces through a pool below 4 GiB.

use crate::edu::{check, pattern, Edu};
use crate::fdt::Bank;
use crate::println;
use alloc::format;
use dom0_dma::ops::DmaOps;
use dom0_dma::select::{select, DeviceFacts, DmaEnv, Override};
use dom0_dma::{baremetal::BareMetalArch, xen::XenHypervisor, DmaAttrs, DmaKind, Direction, ForeignP2m, RamMap, XenFeatures, XenSwiotlb};
use dom0_dma::direct::Direct;
use guest_abi::grant_table::GrantEntryV1;

const LEN: usize = 4096;
const FOUR_GIB: u64 = 1 << 32;

/// The grant table the XenHypervisor is handed; these checks make no grants.
static mut GRANTS: [GrantEntryV1; 8] = [GrantEntryV1 { flags: 0, domid: 0, frame: 0 }; 8];

fn xen() -> XenHypervisor {
    // SAFETY: a private table of 8 entries used by nothing else (no grant is made here).
    unsafe { XenHypervisor::new(core::ptr::addr_of_mut!(GRANTS) as *mut GrantEntryV1, 8) }
}

/// One round trip through `ops`: CPU buffer `a` -> device -> CPU buffer `b`, with the map /
/// unmap (and so the bounce copies and cache maintenance) done by the layer.
pub(crate) fn round_trip(edu: &Edu, ops: &mut dyn DmaOps, a: u64, b: u64) -> Result<(u64, u64), alloc::string::String> {
    let to = ops.map_page(a, LEN, Direction::ToDevice, DmaAttrs::NONE).map_err(|e| format!("map to-device: {e:?}"))?;
    let ok1 = edu.dma(to, LEN as u64, false);
    ops.unmap_page(to, LEN, Direction::ToDevice, DmaAttrs::NONE).map_err(|e| format!("unmap to-device: {e:?}"))?;
    let from = ops.map_page(b, LEN, Direction::FromDevice, DmaAttrs::NONE).map_err(|e| format!("map from-device: {e:?}"))?;
    let ok2 = edu.dma(from, LEN as u64, true);
    ops.unmap_page(from, LEN, Direction::FromDevice, DmaAttrs::NONE).map_err(|e| format!("unmap from-device: {e:?}"))?;
    if !(ok1 && ok2) {
        return Err("the device did not finish".into());
    }
    Ok((to, from))
}

pub(crate) fn same(a: u64, b: u64) -> bool {
    // SAFETY: both are identity-mapped RAM pages of the guest, LEN bytes.
    unsafe { core::slice::from_raw_parts(a as *const u8, LEN) == core::slice::from_raw_parts(b as *const u8, LEN) }
}

pub(crate) fn fill(pa: u64, seed: u8) {
    // SAFETY: an identity-mapped RAM page of the guest that nothing else uses.
    pattern(unsafe { core::slice::from_raw_parts_mut(pa as *mut u8, LEN) }, seed);
}

pub fn run(edu: &Edu, banks: &[Bank], passed: &mut u32, failed: &mut u32) {
    let ram: alloc::vec::Vec<(u64, u64)> = banks.iter().map(|b| (b.base, b.size)).collect();
    let map = RamMap::new(&ram);
    let features = guest_abi::guest::get_features(0).unwrap_or(0);
    let env = DmaEnv { features: XenFeatures(features), ram_top: map.top() };
    // SAFETY: the guest identity-maps all its RAM (mmu.rs); the heap lies in it.
    let arch = unsafe { BareMetalArch::new(map.clone(), true) };

    // Direct: behind the hypervisor-owned SMMU, full mask.
    let mut facts = DeviceFacts::new("edu");
    facts.hypervisor_iommu = true;
    facts.coherent = true;
    facts.dma_mask = u64::MAX;
    let choice = select(&facts, &env, Override::Auto);
    let kind = choice.as_ref().map(|c| c.kind);
    check("dma_layer.select.full_mask", kind == Ok(DmaKind::Direct), &format!("{kind:?}"), passed, failed);
    let (pa_a, pa_b) = crate::edu::pages();
    fill(pa_a, 11);
    fill(pa_b, 0);
    let mut direct = Direct::new(arch.clone(), u64::MAX, map.clone());
    let r = round_trip(edu, &mut direct, pa_a, pa_b);
    let ok = matches!(r, Ok((to, from)) if to == pa_a && from == pa_b) && same(pa_a, pa_b);
    check("dma_layer.direct.round_trip", ok, &format!("{r:?}, data {}", if same(pa_a, pa_b) { "intact" } else { "differs" }), passed, failed);

    // Bounce: 32-bit mask, buffers above 4 GiB.
    facts.dma_mask = FOUR_GIB - 1;
    let choice = select(&facts, &env, Override::Auto);
    let kind = choice.as_ref().map(|c| c.kind);
    let top = banks.iter().map(|b| b.base + b.size).max().unwrap_or(0);
    if top <= FOUR_GIB + 2 * LEN as u64 {
        check("dma_layer.bounce.round_trip", false, "no RAM above 4 GiB: boot with -m 6G and dom0_mem=4G", passed, failed);
        return;
    }
    check("dma_layer.select.mask_32", kind == Ok(DmaKind::XenSwiotlb), &format!("{kind:?}"), passed, failed);
    let (hi_a, hi_b) = (top - 0x10_0000, top - 0x10_0000 + LEN as u64);
    fill(hi_a, 23);
    fill(hi_b, 0);
    let sw = XenSwiotlb::new(arch, xen(), ForeignP2m::shared(), FOUR_GIB - 1, map, 256 << 10);
    match sw {
        Ok(mut sw) => {
            let r = round_trip(edu, &mut sw, hi_a, hi_b);
            let bounced = sw.stats().bounced;
            let below = matches!(r, Ok((to, from)) if to + LEN as u64 <= FOUR_GIB && from + LEN as u64 <= FOUR_GIB);
            let ok = below && bounced == 2 && same(hi_a, hi_b);
            check(
                "dma_layer.bounce.round_trip",
                ok,
                &format!("buffers at {hi_a:#x}/{hi_b:#x}, DMA at {r:?}, {bounced} bounced, data {}", if same(hi_a, hi_b) { "intact" } else { "differs" }),
                passed,
                failed,
            );
        }
        Err(e) => check("dma_layer.bounce.round_trip", false, &format!("no bounce pool: {e:?}"), passed, failed),
    }
    println!("test-guest: DMA layer checks done");
}
