//! Domains: Domain, Vcpu, the dom0 builder (direct map).
pub mod image;
