//! Link settings for the static binary the image ships.
//!
//! A static PIE relocates itself at start, and its relocation table is mapped with the binary:
//! with one 24-byte `RELA` entry per pointer in its read-only data, that table is ~0.45 MB,
//! resident in every process. `-z pack-relative-relocs` stores the same relocations as a `RELR`
//! bitmap of a few KiB instead; the binary stays position independent (ASLR unchanged). glibc
//! applies `RELR` in a static PIE from 2.36 and GNU ld writes it from 2.38 (Debian bookworm, the
//! image's build stage, has both). Only the `+crt-static` build gets the flag: a dynamic build
//! (tests, `cargo run`) links against whatever glibc the host has.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" && features.split(',').any(|f| f == "crt-static") {
        println!("cargo:rustc-link-arg-bin=kube-reloader=-Wl,-z,pack-relative-relocs");
    }
}
