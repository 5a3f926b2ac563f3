//! Test fixture plugin `sdkcalls` (depends on the C fixture `badout`).
//!
//! - `call_big`: calls `badout.big` (1024 bytes, over the SDK's 256-byte
//!   stack offer) through `Host::call_module` and returns its length
//!   (u64le) and first byte;
//! - `call_huge`: calls `badout.huge` (which asks for 2^50 bytes) and
//!   returns the status the host answered (i32le);
//! - `ask_huge` / `ask_max`: ask the host for 2^50 / `usize::MAX` bytes of
//!   output themselves.

use hotmod_sdk::{plugin, Host, Output, Plugin, PluginError};

/// The instance.
pub struct SdkCalls {
    host: Host,
}

impl Plugin for SdkCalls {
    fn init(host: Host, _config: &[u8]) -> Result<Self, String> {
        Ok(SdkCalls { host })
    }
}

fn call_big(p: &SdkCalls, _input: &[u8], out: &mut Output) -> Result<(), PluginError> {
    let r = p.host.call_module("badout", "big", b"").map_err(|c| format!("badout.big failed with status {c}"))?;
    let mut v = (r.len() as u64).to_le_bytes().to_vec();
    v.push(r.first().copied().unwrap_or(0));
    out.write(&v)
}

fn call_huge(p: &SdkCalls, _input: &[u8], out: &mut Output) -> Result<(), PluginError> {
    let code = match p.host.call_module("badout", "huge", b"") {
        Ok(_) => 0i32,
        Err(c) => c,
    };
    out.write(&code.to_le_bytes())
}

fn ask_huge(_: &SdkCalls, _input: &[u8], out: &mut Output) -> Result<(), PluginError> {
    out.buffer(1 << 50)?;
    Ok(())
}

fn ask_max(_: &SdkCalls, _input: &[u8], out: &mut Output) -> Result<(), PluginError> {
    out.buffer(usize::MAX)?;
    Ok(())
}

plugin! {
    name: "sdkcalls", version: "1.0.0", description: "SDK host-call fixture",
    safe_to_unload: true,
    plugin: SdkCalls,
    dependencies: [("badout", "^1")],
    methods: [
        "call_big" ("() -> u64le, u8") => call_big,
        "call_huge" ("() -> i32le") => call_huge,
        "ask_huge" ("() -> bytes") => ask_huge,
        "ask_max" ("() -> bytes") => ask_max,
    ],
}
