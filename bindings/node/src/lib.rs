//! hotmod for Node.js: `require('hotmod')`.
//!
//! A napi-rs layer over the core crate (not over the C ABI), like the
//! Python binding. It owns no runtime logic: it converts arguments, errors
//! and outputs, and bridges threads. Files, one concern each:
//!
//! - [`runtime`]: the `Runtime` class (load, upgrade, unload, calls by name,
//!   host functions, events, stats);
//! - [`module`]: the `Module` and `Method` classes;
//! - [`watch`]: the `Watcher` class (a watched plugin directory);
//! - `input` / `output`: zero-copy input from binary views, external
//!   `Buffer`s over plugin memory for output;
//! - `async_call`: calls on hotmod's call threads returning promises;
//! - `host`: JavaScript host functions, called from any thread;
//! - `events`: lifecycle events to a JavaScript callback;
//! - `fast`: the synchronous call path, also as raw N-API callbacks;
//! - `errors`: `Error`s with a numeric `code`;
//! - [`status`]: the `Status` codes.

mod async_call;
mod errors;
mod events;
mod fast;
mod host;
mod input;
pub mod module;
mod options;
mod output;
pub mod runtime;
pub mod status;
mod tsfn;
pub mod watch;

use napi::bindgen_prelude::*;
use napi_derive::napi;

/// The version of this binding (and of the hotmod core it embeds).
#[napi]
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Outputs up to this many bytes are returned as copies; larger ones as
/// external `Buffer`s over the plugin's memory (zero-copy).
#[napi]
pub const COPY_THRESHOLD: u32 = output::COPY_MAX as u32;

/// The address of the first byte of `view` as a call's input would see it
/// (a debugging aid: compare it with what a plugin saw to check that input
/// crosses without a copy). `0n` for empty input.
#[napi(catch_unwind, ts_args_type = "view: ArrayBufferView | ArrayBuffer", ts_return_type = "bigint")]
pub fn buffer_address(env: &Env, view: Unknown) -> Result<BigInt> {
    // SAFETY: napi-rs calls this on the JavaScript thread of `env`.
    let input = unsafe { input::read(env.raw(), view.raw(), "bufferAddress")? };
    if !input.borrows_object {
        // A string or nothing: there is no caller memory to point at.
        // SAFETY: as above.
        return Err(unsafe {
            errors::throw_invalid(
                env.raw(),
                "bufferAddress: expected a Buffer, TypedArray, DataView or ArrayBuffer, found a string or undefined",
            )
        });
    }
    let bytes = input.bytes();
    let addr = if bytes.is_empty() { 0 } else { bytes.as_ptr() as u64 };
    Ok(BigInt::from(addr))
}

/// The per-thread scratch `Buffer` that synchronous calls copy small
/// outputs into (internal: `index.js` takes it once; see `output.rs`).
#[napi(js_name = "__outputScratch", skip_typescript)]
pub fn output_scratch(env: &Env) -> Result<napi::sys::napi_value> {
    // SAFETY: napi-rs calls this on the JavaScript thread of `env`.
    unsafe { output::scratch(env.raw()) }
}

/// Does nothing: the cost of calling a napi-rs function with one argument,
/// the floor of the benchmark (internal).
#[napi(js_name = "__noop", skip_typescript)]
pub fn noop(_input: Unknown) {}

/// Adds the raw fast-path callbacks (see `fast.rs`) to the exports.
#[napi(module_exports)]
pub fn exports(exports: Object, env: Env) -> Result<()> {
    // SAFETY: napi-rs calls this on the JavaScript thread at registration.
    unsafe { fast::register(env.raw(), exports.raw()) }
}
