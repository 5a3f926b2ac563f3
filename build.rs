//! Build script of the C API crate (`libhotmod.so`).
//!
//! Symbol versioning belongs to the cdylib build only, and that build asks
//! for it explicitly: with `HOTMOD_CAPI_BUILDMODE=cdylib` (this repository
//! sets it in `.cargo/config.toml`, so `cargo build -p hotmod` here makes the
//! real library) and on an ELF platform, it sets the SONAME, passes a linker
//! version script that defines the version nodes, and generates one
//! `.symver` directive per exported function from `src/symbols.txt`. (rustc
//! passes its own anonymous version script, so a `global: hotmod_*;`
//! pattern alone would leave the exports unversioned; binding each symbol
//! with `.symver` works with GNU ld and lld alike, but only in the object
//! that defines the symbol and only when the link defines the nodes.)
//!
//! Without it (`rlib`, or unset: the crate is a dependency of some other
//! workspace), nothing of that is emitted, so the crate builds and links
//! as an ordinary Rust library whatever the dependent's profile and linker
//! arguments. Nothing is written into the source tree.

use std::env;
use std::fs;
use std::path::PathBuf;

#[path = "src/symbol_list.rs"]
#[allow(dead_code)]
mod symbol_list;

/// Major version of the C ABI; the SONAME is `libhotmod.so.<this>`.
const C_ABI_MAJOR: u32 = 1;

fn main() {
    println!("cargo:rerun-if-changed=src/symbols.txt");
    println!("cargo:rerun-if-changed=src/symbol_list.rs");
    println!("cargo:rerun-if-env-changed=HOTMOD_CAPI_BUILDMODE");
    println!("cargo:rustc-check-cfg=cfg(hotmod_symver)");

    let list = fs::read_to_string("src/symbols.txt").expect("src/symbols.txt");
    let list = symbol_list::parse(&list).unwrap_or_else(|e| panic!("{e}"));

    let cdylib = match env::var("HOTMOD_CAPI_BUILDMODE").unwrap_or_default().as_str() {
        "cdylib" => true,
        "rlib" | "" => false,
        other => panic!("HOTMOD_CAPI_BUILDMODE: expected `cdylib`, `rlib` or unset, found `{other}`"),
    };
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let elf = !matches!(os.as_str(), "windows" | "macos" | "ios");
    if !(cdylib && elf) {
        return;
    }

    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    fs::write(out.join("symver.rs"), list.symver_source()).expect("write symver.rs");
    let map = out.join("hotmod.map");
    fs::write(&map, list.version_script()).expect("write hotmod.map");
    // The SONAME follows the C ABI line (version node HOTMOD_1.x), not the
    // crate version: it changes only when the ABI breaks.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libhotmod.so.{C_ABI_MAJOR}");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={}", map.display());
    println!("cargo:rustc-cfg=hotmod_symver");
}
