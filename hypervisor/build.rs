//! Links the bare-metal binary with the per-architecture linker script from `linker/`.
fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../linker");
    if target.starts_with("aarch64") && target.contains("none") {
        let script = dir.join("hypervisor-aarch64.ld");
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
        println!("cargo:rerun-if-changed={}", script.display());
    }
    if target.starts_with("armv7a") && target.contains("none") {
        let script = dir.join("hypervisor-arm32.ld");
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
        println!("cargo:rerun-if-changed={}", script.display());
    }
}
