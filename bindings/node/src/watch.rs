//! `Watcher`: a plugin directory followed by a thread of the core, where
//! dropping a build in loads or upgrades it (see `hotmod_core::watch`).
//!
//! The runtime keeps its watches running until `stop()`, `runtime.close()`
//! or the runtime itself is collected — never because the JavaScript
//! `Watcher` object was. Stopping joins the watch thread, which may be
//! waiting for a host function, so it runs while the JavaScript thread
//! answers host-function calls (`host::pump_while`), or, from a finalizer,
//! on a thread of its own.

use std::sync::{Arc, Mutex};

use hotmod_core as core;
use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::{errors, host};

/// Options for `runtime.watch()`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct WatchOptions {
    /// How long a file must stay unchanged before it is acted on
    /// (milliseconds, 0 to 2147483647, default 200; anything else throws a
    /// `TypeError` with `Status.InvalidArgument`), so a build still being
    /// copied is not loaded half-written.
    pub debounce_ms: Option<f64>,
    /// Unload a module when the file it was loaded from is removed
    /// (default false: it keeps running, and a new file of the same module
    /// upgrades it).
    pub unload_on_remove: Option<bool>,
    /// Configuration handed to the init hook of every plugin loaded.
    #[napi(ts_type = "ArrayBufferView | ArrayBuffer | string")]
    pub config: Option<String>,
    /// Accept files (or the directory) that anyone may write to.
    pub allow_world_writable: Option<bool>,
    /// As for `load`.
    pub max_file_size: Option<f64>,
    /// As for `load`, but the default here is `"if-available"`: files
    /// dropped into a directory are often someone else's.
    #[napi(ts_type = "'off' | 'if-available' | 'on'")]
    pub preflight: Option<String>,
    /// As for `load`.
    pub preflight_helper: Option<String>,
    /// As for `load`.
    pub preflight_timeout_ms: Option<f64>,
}

/// A running core watch, shared by the runtime (which keeps it running)
/// and the JavaScript `Watcher` object (which can stop it).
pub(crate) struct WatchSlot(Mutex<Option<core::Watcher>>);

impl WatchSlot {
    pub(crate) fn new(w: core::Watcher) -> Arc<WatchSlot> {
        Arc::new(WatchSlot(Mutex::new(Some(w))))
    }

    fn take(&self) -> Option<core::Watcher> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn is_running(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// Stops the watch, answering host-function calls meanwhile.
    ///
    /// # Safety
    /// Must run on the JavaScript thread of `env`.
    pub(crate) unsafe fn stop(&self, env: napi::sys::napi_env) {
        if let Some(w) = self.take() {
            // SAFETY: forwarded from the caller.
            let _ = unsafe {
                host::pump_while(env, move || {
                    drop(w);
                    Ok(())
                })
            };
        }
    }
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        if let Some(w) = self.take() {
            // Joining its thread here (a finalizer, on the JavaScript
            // thread) could wait for a host function that needs this thread.
            let _ = std::thread::Builder::new().name("hotmod-unwatch".into()).spawn(move || drop(w));
        }
    }
}

/// A watched plugin directory (from `runtime.watch()`).
///
/// Plugin files already in the directory were loaded (in dependency order)
/// when the watch started; then a new plugin file is loaded, a replaced one
/// upgrades its module while calls keep flowing (identical bytes change
/// nothing), and a removed one is unloaded only with `unloadOnRemove`.
/// Files are acted on once they have stayed unchanged for the debounce
/// time; write elsewhere and rename into place to publish a build. What
/// fails (a corrupt file, a refused upgrade) never stops the watch: it is an
/// `upgradeFailed` event, and the old version keeps serving; problems of
/// the watch itself are `watchError` events. The watch runs until `stop()`,
/// `runtime.close()` or the runtime is collected.
#[napi]
pub struct Watcher {
    pub(crate) slot: Arc<WatchSlot>,
    pub(crate) dir: String,
}

#[napi]
impl Watcher {
    /// The watched directory (absolute, symbolic links resolved).
    #[napi(getter)]
    pub fn dir(&self) -> String {
        self.dir.clone()
    }

    /// Whether the watch is running (false after `stop()` or
    /// `runtime.close()`).
    #[napi(getter)]
    pub fn running(&self) -> bool {
        self.slot.is_running()
    }

    /// Stops the watch and waits for a change being applied, if any, to
    /// finish; the modules it loaded stay loaded. Stopping twice does
    /// nothing.
    #[napi(catch_unwind)]
    pub fn stop(&self, env: &Env) -> Result<()> {
        let env = env.raw();
        // SAFETY: napi-rs calls this on the JavaScript thread of `env`.
        unsafe {
            if host::in_host_function() {
                return Err(errors::throw(
                    env,
                    core::Status::Busy.code(),
                    "Watcher.stop cannot run inside a host function; defer it, for example with setImmediate()",
                    false,
                ));
            }
            self.slot.stop(env);
        }
        Ok(())
    }
}
