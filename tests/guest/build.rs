//! Links the bare-metal test guest as a position-independent executable with its linker script.
fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../linker/test-guest-aarch64.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    if target.starts_with("aarch64") && target.contains("none") {
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
        // Relocatable at load time: the entry code applies the R_AARCH64_RELATIVE entries.
        println!("cargo:rustc-link-arg-bins=--pie");
        println!("cargo:rustc-link-arg-bins=-znotext");
        println!("cargo:rustc-link-arg-bins=--no-dynamic-linker");
    }
    // ARMv7-A: linked at 0 with its static relocations kept (--emit-relocs): the precompiled
    // core library uses absolute MOVW/MOVT pairs, which no dynamic relocation can express.
    // `cargo xtask` turns the kept relocations into the table the entry code applies
    // (tools/xtask/src/arm32.rs).
    if target.starts_with("armv7a") && target.contains("none") {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../linker/test-guest-arm32.ld");
        println!("cargo:rerun-if-changed={}", script.display());
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
        println!("cargo:rustc-link-arg-bins=--emit-relocs");
    }
}
