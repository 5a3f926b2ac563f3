//! Example hotmod plugin written with the Rust SDK: module `text`.
//!
//! Methods:
//! - `upper`: ASCII upper-case, written into the host's buffer;
//! - `reverse`: reverses the UTF-8 characters (invalid UTF-8 is refused);
//! - `word_count`: number of whitespace-separated words, as u64 little-endian;
//! - `repeat`: first byte N, then a payload; returns the payload N times in
//!   memory of the plugin's own (the zero-copy path);
//! - `greet`: asks the host function `greeting` for a salutation (falls back
//!   to "Hello") and greets the input;
//! - `calls`: how many calls this module served, carried across upgrades
//!   through `export_state`/`import_state`.

use std::sync::atomic::{AtomicU64, Ordering};

use hotmod_sdk::{abi, plugin, Host, Output, Plugin, PluginError};

/// The plugin instance.
pub struct Text {
    host: Host,
    calls: AtomicU64,
}

impl Plugin for Text {
    fn init(host: Host, config: &[u8]) -> Result<Self, String> {
        if !config.is_empty() {
            host.log(abi::HOTMOD_LOG_INFO, &format!("text: config {}", String::from_utf8_lossy(config)));
        }
        Ok(Text { host, calls: AtomicU64::new(0) })
    }

    fn export_state(&self) -> Option<Vec<u8>> {
        Some(self.calls.load(Ordering::Relaxed).to_le_bytes().to_vec())
    }

    fn import_state(&mut self, state: &[u8]) -> Result<(), String> {
        let n: [u8; 8] = state.try_into().map_err(|_| format!("expected 8 bytes of state, found {}", state.len()))?;
        self.calls = AtomicU64::new(u64::from_le_bytes(n));
        Ok(())
    }
}

impl Text {
    fn count(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
}

fn upper(t: &Text, input: &[u8], out: &mut Output) -> Result<(), PluginError> {
    t.count();
    let buf = out.buffer(input.len())?;
    for (d, s) in buf.iter_mut().zip(input) {
        *d = s.to_ascii_uppercase();
    }
    out.commit(input.len());
    Ok(())
}

fn reverse(t: &Text, input: &[u8], out: &mut Output) -> Result<(), PluginError> {
    t.count();
    let s = std::str::from_utf8(input).map_err(|e| {
        PluginError::InvalidInput(format!("expected UTF-8, found an invalid byte at offset {}", e.valid_up_to()))
    })?;
    let r: String = s.chars().rev().collect();
    out.write(r.as_bytes())
}

fn word_count(t: &Text, input: &[u8], out: &mut Output) -> Result<(), PluginError> {
    t.count();
    let n = input.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty()).count() as u64;
    out.write(&n.to_le_bytes())
}

fn repeat(t: &Text, input: &[u8], out: &mut Output) -> Result<(), PluginError> {
    t.count();
    let Some((&n, payload)) = input.split_first() else {
        return Err(PluginError::InvalidInput("expected a count byte followed by a payload, found no bytes".into()));
    };
    out.give(payload.repeat(n as usize));
    Ok(())
}

fn greet(t: &Text, input: &[u8], out: &mut Output) -> Result<(), PluginError> {
    t.count();
    let hello = t.host.call_host("greeting", input).unwrap_or_else(|_| b"Hello".to_vec());
    let mut s = hello;
    s.extend_from_slice(b", ");
    s.extend_from_slice(input);
    s.push(b'!');
    out.write(&s)
}

fn calls(t: &Text, _input: &[u8], out: &mut Output) -> Result<(), PluginError> {
    t.count();
    out.write(&t.calls.load(Ordering::Relaxed).to_le_bytes())
}

plugin! {
    name: "text",
    version: "1.0.0",
    description: "Text transforms (Rust SDK example)",
    safe_to_unload: true,
    plugin: Text,
    methods: [
        "upper" ("bytes -> bytes") => upper,
        "reverse" ("utf8 -> utf8") => reverse,
        "word_count" ("utf8 -> u64le") => word_count,
        "repeat" ("u8 count, bytes -> bytes (plugin memory)") => repeat,
        "greet" ("utf8 -> utf8") => greet,
        "calls" ("() -> u64le") => calls,
    ],
}
