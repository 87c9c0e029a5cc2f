//! The GICv3 ITS: the physical one is the hypervisor's (`phys`, `host`, host LPIs in `lpi`),
//! and a domain that needs MSIs (dom0) programs an emulated one (`virt`) whose commands are
//! checked and carried out on the physical ITS. Pure logic over `Mmio`/`PhysMem` and the vGIC:
//! host-tested against a model ITS (`tests`).

pub mod cmd;
pub mod host;
pub mod lpi;
pub mod phys;
pub mod virt;
#[cfg(all(test, not(loom)))]
mod tests;
