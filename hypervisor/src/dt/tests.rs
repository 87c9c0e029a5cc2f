//! Tests of the DT reader, boot info, command line and dom0 builder against real device trees.

extern crate std;

use alloc::string::ToString;
use alloc::vec::Vec;
use std::println;

use super::fixtures::{self, QEMU_VIRT, QEMU_VIRT_DOM0, SNOW};
use super::*;

#[test]
fn smoke_print() {
    for f in [QEMU_VIRT, QEMU_VIRT_DOM0, SNOW] {
        let dt = HostDt::parse(&fixtures::load(f)).unwrap();
        println!("{f}: {:#?}", dt.boot_info());
    }
}
