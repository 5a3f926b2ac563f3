//! Test fixture plugin `lifecycle`.
//!
//! Each instance has an id (from the host function `new_id` if registered). `work` counts itself in flight while it runs;
//! dropping the instance (the destroy hook) reports `destroyed(id)` to the
//! host, and `violation(id)` first if a call was still in flight — so tests
//! can prove that destroy runs exactly once, after the last call. The
//! instance's `generation` is carried across upgrades (+1 each time).
//! Config `fail-init` makes init fail; `panic-init` makes it panic;
//! `fail-import` makes the state import fail.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use hotmod_sdk::{plugin, Host, Output, Plugin, PluginError};

static NEXT: AtomicU64 = AtomicU64::new(1);

/// The instance.
pub struct Lifecycle {
    host: Host,
    id: u64,
    generation: u64,
    in_flight: AtomicUsize,
    fail_import: bool,
}

impl Plugin for Lifecycle {
    fn init(host: Host, config: &[u8]) -> Result<Self, String> {
        match config {
            b"fail-init" => return Err("init refused by config".into()),
            b"panic-init" => panic!("init panicked on purpose"),
            _ => {}
        }
        // Ids come from the host (host function "new_id") when it offers
        // one: statics are per copy of this library, and a new copy may be
        // mapped where an unloaded one was, so only the host can number
        // instances uniquely across upgrades.
        let id = match host.call_host("new_id", b"") {
            Ok(b) if b.len() == 8 => u64::from_le_bytes(b.try_into().expect("8 bytes")),
            _ => NEXT.fetch_add(1, Ordering::Relaxed),
        };
        Ok(Lifecycle { host, id, generation: 1, in_flight: AtomicUsize::new(0), fail_import: config == b"fail-import" })
    }

    fn export_state(&self) -> Option<Vec<u8>> {
        Some(self.generation.to_le_bytes().to_vec())
    }

    fn import_state(&mut self, state: &[u8]) -> Result<(), String> {
        if self.fail_import {
            return Err("state import refused by config".into());
        }
        let g: [u8; 8] = state.try_into().map_err(|_| format!("expected 8 bytes of state, found {}", state.len()))?;
        self.generation = u64::from_le_bytes(g) + 1;
        Ok(())
    }
}

impl Drop for Lifecycle {
    fn drop(&mut self) {
        if self.in_flight.load(Ordering::SeqCst) != 0 {
            let _ = self.host.call_host("violation", &self.id.to_le_bytes());
        }
        let _ = self.host.call_host("destroyed", &self.id.to_le_bytes());
    }
}

fn work(l: &Lifecycle, input: &[u8], out: &mut Output) -> Result<(), PluginError> {
    l.in_flight.fetch_add(1, Ordering::SeqCst);
    // A little work so calls overlap with upgrades.
    let mut h = l.id;
    for b in input {
        h = h.rotate_left(5) ^ u64::from(*b);
    }
    std::hint::black_box(h);
    let r = out.write(&l.id.to_le_bytes());
    l.in_flight.fetch_sub(1, Ordering::SeqCst);
    r
}

fn generation(l: &Lifecycle, _input: &[u8], out: &mut Output) -> Result<(), PluginError> {
    out.write(&l.generation.to_le_bytes())
}

fn panic(_: &Lifecycle, _input: &[u8], _out: &mut Output) -> Result<(), PluginError> {
    panic!("method panicked on purpose")
}

plugin! {
    name: "lifecycle",
    version: "1.0.0",
    description: "Lifecycle reporting test fixture",
    safe_to_unload: true,
    plugin: Lifecycle,
    methods: [
        "work" ("bytes -> u64le id") => work,
        "generation" ("() -> u64le") => generation,
        "panic" ("() -> never") => panic,
    ],
}
