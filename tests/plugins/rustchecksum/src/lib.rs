//! Fixture librustchecksum.so, module "rustchecksum": the `length` and
//! `fnv1a64` methods of the C example (examples/c-checksum), written with
//! the Rust SDK, so the per-language call benchmark
//! (core/examples/lang_bench.rs) calls the same method in C, C++, Rust and Go.
//!
//!   length   bytes -> u64le   the input's length (reads no payload byte)
//!   fnv1a64  bytes -> u64le   FNV-1a 64-bit

use hotmod_sdk::{plugin, Host, Output, Plugin, PluginError};

struct RustChecksum;

impl Plugin for RustChecksum {
    fn init(_host: Host, _config: &[u8]) -> Result<Self, String> {
        Ok(RustChecksum)
    }
}

fn length(_: &RustChecksum, input: &[u8], out: &mut Output) -> Result<(), PluginError> {
    out.write(&(input.len() as u64).to_le_bytes())
}

fn fnv1a64(_: &RustChecksum, input: &[u8], out: &mut Output) -> Result<(), PluginError> {
    let h = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
    out.write(&h.to_le_bytes())
}

plugin! {
    name: "rustchecksum",
    version: "1.0.0",
    description: "length and fnv1a64 in Rust (benchmark fixture)",
    safe_to_unload: true,
    plugin: RustChecksum,
    methods: [
        "length" ("bytes -> u64le") => length,
        "fnv1a64" ("bytes -> u64le") => fnv1a64,
    ],
}
