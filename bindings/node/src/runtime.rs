//! `Runtime`: load, upgrade and unload modules; resolve and call methods;
//! host functions, lifecycle events and statistics.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use hotmod_core as core;
use napi::bindgen_prelude::*;
use napi::sys;
use napi_derive::napi;

use crate::async_call::{self, Target};
use crate::host::{self, JsHostFunction};
use crate::module::{Method, Module};
use crate::options::Options;
use crate::watch::{WatchSlot, Watcher};
use crate::{errors, events, fast, input};

/// Options for `new Runtime()`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct RuntimeOptions {
    /// How long `upgrade` and `unload` wait for calls in flight on the old
    /// version before returning (milliseconds, 0 to 2147483647, default
    /// 200; anything else throws a `TypeError` with
    /// `Status.InvalidArgument`). Calls are never cut short: a version still in use after this is destroyed when
    /// its last call (or output `Buffer`) is done with it.
    pub drain_timeout_ms: Option<f64>,
    /// The most output, in bytes, a plugin may ask the host to allocate
    /// (default 64 MiB); a larger request fails with
    /// `Status.OutputTooLarge`. Memory a plugin hands over itself (the
    /// zero-copy path) is not bounded by it.
    pub max_output_size: Option<f64>,
    /// How many replaced or unloaded versions that cannot be unmapped this
    /// runtime may keep mapped (default 1024); then loading another such
    /// file fails with `Status.KeptMappedLimit`.
    pub max_kept_mapped: Option<f64>,
}

/// Options for `runtime.load()`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct LoadOptions {
    /// Refuse the file unless its SHA-256 is this (64 hex digits); checked
    /// before any plugin code runs.
    pub sha256: Option<String>,
    /// Configuration handed to the plugin's `init` hook (a string is sent
    /// as UTF-8).
    #[napi(ts_type = "ArrayBufferView | ArrayBuffer | string")]
    pub config: Option<String>,
    /// Accept a file (or directory) that anyone may write to.
    pub allow_world_writable: Option<bool>,
    /// The largest plugin file accepted, in bytes (default 1 GiB); a
    /// larger file is refused with `Status.FileTooLarge` before it is read.
    pub max_file_size: Option<f64>,
    /// Map the file in a child process first, so that a constructor that
    /// crashes or hangs is refused with `Status.PreflightFailed` instead of
    /// taking the process down: `"off"` (the default of `load`),
    /// `"if-available"` (when a helper is found; the default of `watch`) or
    /// `"on"` (refuse the load if it cannot be done).
    #[napi(ts_type = "'off' | 'if-available' | 'on'")]
    pub preflight: Option<String>,
    /// The preflight helper executable (`hotmod-worker`); default
    /// `$HOTMOD_WORKER`, else one installed beside the library.
    pub preflight_helper: Option<String>,
    /// How long the preflight child may take before it is killed and the
    /// file refused (milliseconds, 0 to 2147483647, default 5000).
    pub preflight_timeout_ms: Option<f64>,
}

/// One file for `runtime.loadAll()`: its path and the options of `load`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct LoadEntry {
    /// The plugin file.
    pub path: String,
    /// As for `load`.
    pub sha256: Option<String>,
    /// As for `load`.
    #[napi(ts_type = "ArrayBufferView | ArrayBuffer | string")]
    pub config: Option<String>,
    /// As for `load`.
    pub allow_world_writable: Option<bool>,
    /// As for `load`.
    pub max_file_size: Option<f64>,
    /// As for `load`.
    #[napi(ts_type = "'off' | 'if-available' | 'on'")]
    pub preflight: Option<String>,
    /// As for `load`.
    pub preflight_helper: Option<String>,
    /// As for `load`.
    pub preflight_timeout_ms: Option<f64>,
}

/// Options for `runtime.upgrade()`: those of `load`, and `force`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct UpgradeOptions {
    /// Publish even if methods that callers hold handles to were removed or
    /// changed signature; those handles then fail with
    /// `Status.StaleHandle` or `Status.SignatureChanged`.
    pub force: Option<bool>,
    /// As for `load`.
    pub sha256: Option<String>,
    /// As for `load`.
    #[napi(ts_type = "ArrayBufferView | ArrayBuffer | string")]
    pub config: Option<String>,
    /// As for `load`.
    pub allow_world_writable: Option<bool>,
    /// As for `load`.
    pub max_file_size: Option<f64>,
    /// As for `load`.
    #[napi(ts_type = "'off' | 'if-available' | 'on'")]
    pub preflight: Option<String>,
    /// As for `load`.
    pub preflight_helper: Option<String>,
    /// As for `load`.
    pub preflight_timeout_ms: Option<f64>,
}

/// Options for `runtime.unload()`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct UnloadOptions {
    /// Unload the modules that depend on this one first, instead of
    /// refusing with `Status.ModuleInUse`.
    pub cascade: Option<bool>,
}

/// A lifecycle event, as passed to the handler of `setEventHandler`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct LifecycleEvent {
    /// What happened.
    #[napi(
        ts_type = "'loaded' | 'validated' | 'activated' | 'draining' | 'unloaded' | 'upgradeFailed' | 'keptMapped' | 'log' | 'watchError'"
    )]
    pub kind: String,
    /// Module name ("" when not known yet, for example for a corrupt file).
    pub module: String,
    /// Module version ("" when not known).
    pub version: String,
    /// Plugin file involved ("" if none).
    pub path: String,
    /// Details: for `upgradeFailed` the reason, for `log` the line.
    pub message: String,
    /// The `Status` for failures (0 otherwise); the level for `log`.
    pub code: i32,
}

/// Statistics of one method (counters persist across upgrades).
#[napi(object, object_from_js = false)]
pub struct MethodStats {
    /// Module name.
    pub module: String,
    /// Active version of the module.
    pub version: String,
    /// Method name.
    pub method: String,
    /// Whether the active version has this method (a forced upgrade may
    /// have removed it while its counters remain).
    pub present: bool,
    /// Method handles that callers hold.
    pub handles: u32,
    /// Calls started.
    pub calls: f64,
    /// Calls that failed.
    pub errors: f64,
    /// Calls in which the plugin panicked.
    pub panics: f64,
    /// Calls whose latency was sampled (one call in 128 of each method).
    pub latency_samples: f64,
    /// Mean sampled latency, nanoseconds (0 without samples).
    pub mean_ns: f64,
    /// Median sampled latency (upper bound of its log2 bucket), nanoseconds.
    pub p50_ns: f64,
    /// 99th percentile sampled latency (upper bound of its bucket), nanoseconds.
    pub p99_ns: f64,
}

/// What an application of a manifest changed: module names, in the order
/// the changes were made.
#[napi(object, object_from_js = false)]
pub struct ManifestReport {
    /// Modules loaded.
    pub loaded: Vec<String>,
    /// Modules upgraded in place.
    pub upgraded: Vec<String>,
    /// Modules unloaded (their entry removed or disabled).
    pub unloaded: Vec<String>,
    /// Enabled entries already running with the same content and config.
    pub unchanged: Vec<String>,
}

/// A hotmod runtime: a set of loaded plugin modules and the services the
/// host offers them.
///
/// ```js
/// const { Runtime } = require('hotmod')
/// const rt = new Runtime()
/// rt.load('/opt/plugins/libchecksum.so')
/// const crc32 = rt.method('checksum', 'crc32')
/// crc32.callSync(Buffer.from('hello'))        // Buffer <86 a6 10 36>
/// await crc32.call(bigBuffer)                 // runs on a worker thread
/// ```
///
/// Every method throws (or rejects with) an `Error` whose `code` is a
/// `Status`. Modules stay loaded until unloaded, `close()`d, or the runtime
/// is garbage-collected. The runtime holds its host functions and event
/// handler until `close()`; one that refers to the runtime keeps it alive,
/// so call `close()` when done with it.
#[napi]
pub struct Runtime {
    core: Arc<core::Runtime>,
    /// Names of the host functions registered through this object.
    host_names: Mutex<BTreeSet<String>>,
    /// The directories watched for this runtime (running until stopped).
    watches: Mutex<Vec<Arc<WatchSlot>>>,
}

/// Refuses an administrative operation from inside a JavaScript host
/// function: the runtime may be in the middle of a load, upgrade or unload
/// on this very thread, holding the lock the operation needs.
///
/// # Safety
/// Must run on the JavaScript thread of `env`.
unsafe fn refuse_reentry(env: sys::napi_env, what: &str) -> Result<()> {
    if host::in_host_function() {
        // SAFETY: on the JavaScript thread (callers).
        return Err(unsafe {
            errors::throw(
                env,
                core::Status::Busy.code(),
                &format!(
                    "Runtime.{what} cannot run inside a host function (a plugin is running on this thread, possibly during a load, upgrade or unload); defer it, for example with setImmediate()"
                ),
                false,
            )
        });
    }
    Ok(())
}

/// The options every way of loading a file takes.
const LOAD_KEYS: [&str; 7] =
    ["sha256", "config", "allowWorldWritable", "maxFileSize", "preflight", "preflightHelper", "preflightTimeoutMs"];

/// [`LOAD_KEYS`] and `extra`.
fn load_keys(extra: &[&'static str]) -> Vec<&'static str> {
    extra.iter().copied().chain(LOAD_KEYS).collect()
}

/// The core's load options: `base` with the [`LOAD_KEYS`] given applied.
///
/// # Safety
/// Must run on the JavaScript thread of `env` (the one `opts` was read on).
unsafe fn load_options(opts: &Options, env: sys::napi_env, base: core::LoadOptions) -> Result<core::LoadOptions> {
    let mut load = base;
    if let Some(hex) = opts.string("sha256")? {
        if let Err(e) = load.expect_sha256_hex(&hex) {
            // SAFETY: on the JavaScript thread (callers).
            return Err(unsafe { errors::throw_core(env, &e) });
        }
    }
    if let Some(config) = opts.bytes("config")? {
        load.config = config;
    }
    load.allow_world_writable = opts.bool("allowWorldWritable")?.unwrap_or(false);
    if let Some(n) = opts.whole("maxFileSize", "bytes", u64::MAX as f64)? {
        load.max_file_size = n;
    }
    if let Some(p) = opts.string("preflight")? {
        load.preflight = match p.as_str() {
            "off" => core::Preflight::Off,
            "if-available" => core::Preflight::IfAvailable,
            "on" => core::Preflight::On,
            other => {
                // SAFETY: on the JavaScript thread (callers).
                return Err(unsafe {
                    errors::throw_invalid(
                        env,
                        &format!(
                            "{}: expected option 'preflight' to be 'off', 'if-available' or 'on', found {other:?}",
                            opts.context()
                        ),
                    )
                });
            }
        };
    }
    if let Some(helper) = opts.string("preflightHelper")? {
        load.preflight_helper = Some(helper.into());
    }
    if let Some(t) = opts.millis("preflightTimeoutMs")? {
        load.preflight_timeout = t;
    }
    Ok(load)
}

#[napi]
impl Runtime {
    /// A new runtime with no modules.
    #[napi(constructor, catch_unwind, ts_args_type = "options?: RuntimeOptions")]
    pub fn new(env: &Env, options: Unknown) -> Result<Self> {
        let env = env.raw();
        host::set_js_thread(env);
        // SAFETY: napi-rs calls this on the JavaScript thread of `env`.
        let opts = unsafe {
            Options::new(env, options.raw(), "new Runtime", &["drainTimeoutMs", "maxOutputSize", "maxKeptMapped"])?
        };
        let mut ro = core::RuntimeOptions::default();
        if let Some(d) = opts.millis("drainTimeoutMs")? {
            ro.drain_timeout = d;
        }
        if let Some(n) = opts.whole("maxOutputSize", "bytes", usize::MAX as f64)? {
            ro.max_output_size = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = opts.whole("maxKeptMapped", "versions", usize::MAX as f64)? {
            ro.max_kept_mapped = usize::try_from(n).unwrap_or(usize::MAX);
        }
        Ok(Runtime {
            core: Arc::new(core::Runtime::with_options(ro)),
            host_names: Mutex::new(BTreeSet::new()),
            watches: Mutex::new(Vec::new()),
        })
    }

    /// How many replaced or unloaded versions this runtime keeps mapped
    /// because they could not be unmapped (at most `maxKeptMapped`).
    #[napi(getter)]
    pub fn kept_mapped(&self) -> u32 {
        u32::try_from(self.core.kept_mapped()).unwrap_or(u32::MAX)
    }

    /// Loads a plugin file and activates it; returns the module.
    ///
    /// The file is read once, checked (its mode, and `options.sha256` if
    /// given), mapped from a private copy, validated, initialised with
    /// `options.config` and published. Throws, for example,
    /// `Status.FileMissing`, `Status.NotALibrary`, `Status.NameConflict`,
    /// `Status.DependencyUnsatisfied` or `Status.InitFailed`.
    #[napi(catch_unwind, ts_args_type = "path: string, options?: LoadOptions")]
    pub fn load(&self, env: &Env, path: Unknown, options: Unknown) -> Result<Module> {
        let env = env.raw();
        // SAFETY: napi-rs calls this on the JavaScript thread of `env`.
        unsafe {
            refuse_reentry(env, "load")?;
            let path = input::string_arg(env, path.raw(), "Runtime.load", "the plugin path")?;
            let opts = Options::new(env, options.raw(), "Runtime.load", &load_keys(&[]))?;
            let load = load_options(&opts, env, core::LoadOptions::default())?;
            match host::pump_while(env, || self.core.load(&path, &load)) {
                Ok(inner) => Ok(Module { inner }),
                Err(e) => Err(errors::throw_core(env, &e)),
            }
        }
    }

    /// Loads several plugin files in dependency order (each a path, or a
    /// `{ path, ...loadOptions }` object); returns the modules in the order
    /// they were loaded. Nothing is loaded unless every file validates: a
    /// dependency cycle among them is refused with `Status.DependencyCycle`
    /// (the message names it), and if one fails to start the ones this call
    /// already started are unloaded again.
    #[napi(catch_unwind, ts_args_type = "files: Array<string | LoadEntry>")]
    pub fn load_all(&self, env: &Env, files: Unknown) -> Result<Vec<Module>> {
        const CTX: &str = "Runtime.loadAll";
        let env = env.raw();
        // SAFETY: napi-rs calls this on the JavaScript thread of `env`.
        unsafe {
            refuse_reentry(env, "loadAll")?;
            let mut is_array = false;
            sys::napi_is_array(env, files.raw(), &mut is_array);
            if !is_array {
                return Err(errors::throw_invalid(
                    env,
                    &format!(
                        "{CTX}: expected an array of paths or {{ path, ...options }} objects, found {}",
                        errors::describe_value(env, files.raw())
                    ),
                ));
            }
            let mut n = 0u32;
            sys::napi_get_array_length(env, files.raw(), &mut n);
            let mut list = Vec::with_capacity(n as usize);
            for i in 0..n {
                let mut item = std::ptr::null_mut();
                sys::napi_get_element(env, files.raw(), i, &mut item);
                if let Some(path) = input::string_value(env, item) {
                    list.push((std::path::PathBuf::from(path), core::LoadOptions::default()));
                    continue;
                }
                let opts = Options::new(env, item, CTX, &load_keys(&["path"]))?;
                let Some(path) = opts.string("path")? else {
                    return Err(errors::throw_invalid(env, &format!("{CTX}: entry {i} has no 'path'")));
                };
                list.push((std::path::PathBuf::from(path), load_options(&opts, env, core::LoadOptions::default())?));
            }
            match host::pump_while(env, || self.core.load_all(&list)) {
                Ok(modules) => Ok(modules.into_iter().map(|inner| Module { inner }).collect()),
                Err(e) => Err(errors::throw_core(env, &e)),
            }
        }
    }

    /// Replaces the running version of module `name` with the plugin at
    /// `path` while calls keep flowing; returns the new module.
    ///
    /// Calls that started before the switch finish on the old version;
    /// every later call reaches the new one; no call fails. On any failure
    /// (the new file is invalid, named differently, refused by a dependent,
    /// changes a method callers hold handles to without `force`, or fails to
    /// start) the old version keeps serving and the error says why.
    /// Blocks up to the drain timeout while calls in flight finish.
    #[napi(catch_unwind, ts_args_type = "name: string, path: string, options?: UpgradeOptions")]
    pub fn upgrade(&self, env: &Env, name: Unknown, path: Unknown, options: Unknown) -> Result<Module> {
        let env = env.raw();
        // SAFETY: napi-rs calls this on the JavaScript thread of `env`.
        unsafe {
            refuse_reentry(env, "upgrade")?;
            let name = input::string_arg(env, name.raw(), "Runtime.upgrade", "the module name")?;
            let path = input::string_arg(env, path.raw(), "Runtime.upgrade", "the plugin path")?;
            let opts = Options::new(env, options.raw(), "Runtime.upgrade", &load_keys(&["force"]))?;
            let upgrade = core::UpgradeOptions {
                load: load_options(&opts, env, core::LoadOptions::default())?,
                force: opts.bool("force")?.unwrap_or(false),
            };
            match host::pump_while(env, || self.core.upgrade(&name, &path, &upgrade)) {
                Ok(inner) => Ok(Module { inner }),
                Err(e) => Err(errors::throw_core(env, &e)),
            }
        }
    }

    /// Brings the runtime to the state a TOML manifest describes, and
    /// returns what changed. The first application loads every enabled
    /// entry (in dependency order, all or none); applying the same file
    /// again after editing it upgrades the modules whose file or config
    /// changed (no call fails), loads new entries, and unloads the modules it
    /// loaded whose entry was removed or disabled. Modules loaded by other
    /// means are never touched. Throws `Status.BadManifest` (naming the file,
    /// line and column) for an invalid manifest, otherwise the code of the
    /// step that failed, the manifest's file and line prefixed to the
    /// message; the steps before it stand.
    ///
    /// ```toml
    /// [[plugin]]
    /// path = "libchecksum.so"   # relative to the manifest's directory
    /// sha256 = "9f86d081…"      # optional pin, checked before any plugin code runs
    /// config = "level=3"        # optional, handed to the plugin's init
    /// enabled = true            # optional; false unloads it
    /// ```
    #[napi(catch_unwind, ts_args_type = "path: string")]
    pub fn apply_manifest(&self, env: &Env, path: Unknown) -> Result<ManifestReport> {
        let env = env.raw();
        // SAFETY: napi-rs calls this on the JavaScript thread of `env`.
        unsafe {
            refuse_reentry(env, "applyManifest")?;
            let path = input::string_arg(env, path.raw(), "Runtime.applyManifest", "the manifest path")?;
            // The core keeps one state per manifest file, however it is named.
            match host::pump_while(env, || self.core.apply_manifest(&path)) {
                Ok(r) => Ok(ManifestReport {
                    loaded: r.loaded,
                    upgraded: r.upgraded,
                    unloaded: r.unloaded,
                    unchanged: r.unchanged,
                }),
                Err(e) => Err(errors::throw_core(env, &e)),
            }
        }
    }

    /// Watches a plugin directory: loads the plugin files already there (in
    /// dependency order; a file that fails is an `upgradeFailed` event, not
    /// an error), then loads new files and upgrades modules whose file is
    /// replaced, from a thread of its own, until `watcher.stop()` or
    /// `close()`. Events report what it does. Throws `Status.FileMissing` if
    /// `dir` does not exist, `Status.InvalidArgument` if it is not a
    /// directory, `Status.Busy` if this runtime already watches it, `Status.Io`
    /// if it cannot be watched.
    #[napi(catch_unwind, ts_args_type = "dir: string, options?: WatchOptions")]
    pub fn watch(&self, env: &Env, dir: Unknown, options: Unknown) -> Result<Watcher> {
        const CTX: &str = "Runtime.watch";
        let env = env.raw();
        // SAFETY: napi-rs calls this on the JavaScript thread of `env`.
        unsafe {
            refuse_reentry(env, "watch")?;
            let dir = input::string_arg(env, dir.raw(), CTX, "the directory")?;
            let keys: Vec<&str> = ["debounceMs", "unloadOnRemove"]
                .into_iter()
                .chain(LOAD_KEYS.into_iter().filter(|k| *k != "sha256"))
                .collect();
            let opts = Options::new(env, options.raw(), CTX, &keys)?;
            let mut wo = core::WatchOptions::default();
            if let Some(d) = opts.millis("debounceMs")? {
                wo.debounce = d;
            }
            wo.unload_on_remove = opts.bool("unloadOnRemove")?.unwrap_or(false);
            wo.load = load_options(&opts, env, wo.load)?;
            match host::pump_while(env, || core::watch_dir(&self.core, &dir, wo)) {
                Ok(w) => {
                    let dir = w.dir().display().to_string();
                    let slot = WatchSlot::new(w);
                    self.watches.lock().unwrap_or_else(|e| e.into_inner()).push(slot.clone());
                    Ok(Watcher { slot, dir })
                }
                Err(e) => Err(errors::throw_core(env, &e)),
            }
        }
    }

    /// Unloads module `name`: it takes no new calls, calls in flight finish,
    /// then it is destroyed. Refused with `Status.ModuleInUse` while other
    /// modules depend on it, unless `{ cascade: true }`, which unloads those
    /// first. Handles to its methods then fail with `Status.StaleHandle`.
    #[napi(catch_unwind, ts_args_type = "name: string, options?: UnloadOptions")]
    pub fn unload(&self, env: &Env, name: Unknown, options: Unknown) -> Result<()> {
        let env = env.raw();
        // SAFETY: napi-rs calls this on the JavaScript thread of `env`.
        unsafe {
            refuse_reentry(env, "unload")?;
            let name = input::string_arg(env, name.raw(), "Runtime.unload", "the module name")?;
            let opts = Options::new(env, options.raw(), "Runtime.unload", &["cascade"])?;
            let cascade = opts.bool("cascade")?.unwrap_or(false);
            host::pump_while(env, || self.core.unload(&name, cascade)).map_err(|e| errors::throw_core(env, &e))
        }
    }

    /// Stops the watches, unloads every module (dependents first), forgets
    /// the manifests applied, and drops the host functions and the event handler
    /// registered through this object, releasing the JavaScript functions
    /// they hold. The runtime stays usable.
    #[napi(catch_unwind)]
    pub fn close(&self, env: &Env) -> Result<()> {
        let env = env.raw();
        // SAFETY: napi-rs calls this on the JavaScript thread of `env`.
        unsafe {
            refuse_reentry(env, "close")?;
            let watches = std::mem::take(&mut *self.watches.lock().unwrap_or_else(|e| e.into_inner()));
            for w in watches {
                w.stop(env);
            }
            let names = std::mem::take(&mut *self.host_names.lock().unwrap_or_else(|e| e.into_inner()));
            let _ = host::pump_while(env, || {
                for m in self.core.modules() {
                    // A module may already be gone, unloaded with a dependency.
                    let _ = self.core.unload(m.name(), true);
                }
                for name in &names {
                    self.core.unregister_host_function(name);
                }
                Ok(())
            });
        }
        self.core.set_event_handler(None);
        Ok(())
    }

    /// The loaded module named `name`; throws `Status.ModuleNotFound`.
    #[napi(catch_unwind, ts_args_type = "name: string")]
    pub fn module(&self, env: &Env, name: Unknown) -> Result<Module> {
        let env = env.raw();
        // SAFETY: napi-rs calls this on the JavaScript thread of `env`.
        unsafe {
            let name = input::string_arg(env, name.raw(), "Runtime.module", "the module name")?;
            match self.core.module(&name) {
                Ok(inner) => Ok(Module { inner }),
                Err(e) => Err(errors::throw_core(env, &e)),
            }
        }
    }

    /// All loaded modules, sorted by name.
    #[napi]
    pub fn modules(&self) -> Vec<Module> {
        self.core.modules().into_iter().map(|inner| Module { inner }).collect()
    }

    /// The lifecycle state of module `name`'s active version: `'active'`
    /// while it serves calls. Throws `Status.ModuleNotFound`.
    #[napi(
        catch_unwind,
        ts_args_type = "name: string",
        ts_return_type = "'loaded' | 'validated' | 'active' | 'draining' | 'unloaded'"
    )]
    pub fn state(&self, env: &Env, name: Unknown) -> Result<String> {
        let env = env.raw();
        // SAFETY: napi-rs calls this on the JavaScript thread of `env`.
        unsafe {
            let name = input::string_arg(env, name.raw(), "Runtime.state", "the module name")?;
            match self.core.state(&name) {
                Ok(s) => Ok(s.name().to_owned()),
                Err(e) => Err(errors::throw_core(env, &e)),
            }
        }
    }

    /// Resolves `module.method` to a handle: the fast path for repeated
    /// calls. Throws `Status.ModuleNotFound` or `Status.MethodNotFound`.
    #[napi(catch_unwind, ts_args_type = "module: string, method: string")]
    pub fn method(&self, env: &Env, module: Unknown, method: Unknown) -> Result<Method> {
        let env = env.raw();
        // SAFETY: napi-rs calls this on the JavaScript thread of `env`.
        unsafe {
            let module = input::string_arg(env, module.raw(), "Runtime.method", "the module name")?;
            let method = input::string_arg(env, method.raw(), "Runtime.method", "the method name")?;
            match self.core.method(&module, &method) {
                Ok(handle) => Ok(Method::new(handle)),
                Err(e) => Err(errors::throw_core(env, &e)),
            }
        }
    }

    /// Calls `module.method` by name on the JavaScript thread and returns
    /// its output (see `Method.callSync` for input and output).
    #[napi(
        catch_unwind,
        ts_args_type = "module: string, method: string, input?: ArrayBufferView | ArrayBuffer | string",
        ts_return_type = "Buffer"
    )]
    pub fn call_sync(&self, env: &Env, module: Unknown, method: Unknown, input: Unknown) -> Result<sys::napi_value> {
        // SAFETY: napi-rs calls this on the JavaScript thread of `env`.
        unsafe { fast::call_name(env.raw(), &self.core, module.raw(), method.raw(), input.raw()) }
    }

    /// Calls `module.method` by name on a call thread; resolves to
    /// its output (see `Method.call`).
    #[napi(
        catch_unwind,
        ts_args_type = "module: string, method: string, input?: ArrayBufferView | ArrayBuffer | string",
        ts_return_type = "Promise<Buffer>"
    )]
    pub fn call(&self, env: &Env, module: Unknown, method: Unknown, input: Unknown) -> Result<sys::napi_value> {
        let env = env.raw();
        // SAFETY: napi-rs calls this on the JavaScript thread of `env`.
        unsafe {
            let module = input::string_arg(env, module.raw(), "Runtime.call", "the module name")?;
            let method = input::string_arg(env, method.raw(), "Runtime.call", "the method name")?;
            let bytes = input::read_async(env, input.raw(), "Runtime.call")?;
            async_call::start(env, Target::Name(self.core.clone(), module, method), bytes, input.raw())
        }
    }

    /// Registers (or replaces) a host function: a JavaScript function that
    /// plugins call by `name`. It receives the plugin's input as a `Buffer`
    /// (a copy) and returns a `Buffer`, `TypedArray`, `DataView`,
    /// `ArrayBuffer`, string or nothing; it must return synchronously. What
    /// it throws becomes the plugin's error.
    ///
    /// It always runs on the JavaScript thread: called directly during a
    /// synchronous call; during an asynchronous call the plugin's worker
    /// thread waits while the call hops to the JavaScript thread. It cannot
    /// load, upgrade or unload modules, watch, or (un)register host
    /// functions (that throws `Status.Busy`); it may call methods.
    #[napi(
        catch_unwind,
        ts_args_type = "name: string, fn: (input: Buffer) => ArrayBufferView | ArrayBuffer | string | void"
    )]
    pub fn register_host_function(&self, env: &Env, name: Unknown, func: Unknown) -> Result<()> {
        let env = env.raw();
        // SAFETY: napi-rs calls this on the JavaScript thread of `env`.
        let name = unsafe {
            let name = input::string_arg(env, name.raw(), "Runtime.registerHostFunction", "the host function name")?;
            expect_function(env, func.raw(), "Runtime.registerHostFunction", "the host function")?;
            host::set_js_thread(env);
            refuse_reentry(env, "registerHostFunction")?;
            let f: Arc<dyn core::HostFunction> = Arc::new(JsHostFunction::new(env, &name, func.raw())?);
            // The core takes its admin lock, which a watch may hold while it
            // waits for a host function: answer those meanwhile.
            host::pump_while(env, || self.core.register_host_function(&name, f))
                .map_err(|e| errors::throw_core(env, &e))?;
            name
        };
        self.host_names.lock().unwrap_or_else(|e| e.into_inner()).insert(name);
        Ok(())
    }

    /// Removes a host function; returns whether it was registered. Plugins
    /// calling it afterwards get an error (`Status.MethodNotFound`).
    #[napi(catch_unwind, ts_args_type = "name: string")]
    pub fn unregister_host_function(&self, env: &Env, name: Unknown) -> Result<bool> {
        let env = env.raw();
        // SAFETY: napi-rs calls this on the JavaScript thread of `env`.
        unsafe {
            refuse_reentry(env, "unregisterHostFunction")?;
            let name = input::string_arg(env, name.raw(), "Runtime.unregisterHostFunction", "the name")?;
            self.host_names.lock().unwrap_or_else(|e| e.into_inner()).remove(&name);
            // As in registerHostFunction.
            host::pump_while(env, || Ok(self.core.unregister_host_function(&name)))
                .map_err(|e| errors::throw_core(env, &e))
        }
    }

    /// Sets (or, with `null`, clears) the function that receives lifecycle
    /// events: modules loaded, validated, activated, draining, unloaded,
    /// upgrades that failed, plugin log lines. Events are delivered on the
    /// JavaScript thread, in order, on a later turn of the event loop (never
    /// in the middle of the operation that caused them). An exception the
    /// handler throws is reported as an uncaught exception.
    #[napi(catch_unwind, ts_args_type = "handler: ((event: LifecycleEvent) => void) | null")]
    pub fn set_event_handler(&self, env: &Env, handler: Unknown) -> Result<()> {
        let env = env.raw();
        // SAFETY: napi-rs calls this on the JavaScript thread of `env`.
        unsafe {
            let mut t = 0;
            sys::napi_typeof(env, handler.raw(), &mut t);
            if t == sys::ValueType::napi_null || t == sys::ValueType::napi_undefined {
                self.core.set_event_handler(None);
                return Ok(());
            }
            expect_function(env, handler.raw(), "Runtime.setEventHandler", "the handler (or null)")?;
            let h = events::handler(env, handler.raw())?;
            self.core.set_event_handler(Some(h));
        }
        Ok(())
    }

    /// What `index.js` passes to the fast path (internal).
    #[napi(getter, js_name = "__ref", skip_typescript)]
    pub fn external(&self, env: &Env) -> Result<sys::napi_value> {
        // SAFETY: napi-rs calls this on the JavaScript thread of `env`.
        unsafe { fast::external(env.raw(), self.core.clone()) }
    }

    /// Statistics of every method of every loaded module, sorted by module
    /// then declaration order. Counters persist across upgrades.
    #[napi]
    pub fn stats(&self) -> Vec<MethodStats> {
        self.core
            .stats()
            .into_iter()
            .map(|s| MethodStats {
                module: s.module,
                version: s.version,
                method: s.method,
                present: s.present,
                handles: u32::try_from(s.handles).unwrap_or(u32::MAX),
                calls: s.counters.calls as f64,
                errors: s.counters.errors as f64,
                panics: s.counters.panics as f64,
                latency_samples: s.counters.latency_samples as f64,
                mean_ns: s.counters.mean_ns() as f64,
                p50_ns: s.counters.quantile_ns(0.5) as f64,
                p99_ns: s.counters.quantile_ns(0.99) as f64,
            })
            .collect()
    }

    /// The statistics in Prometheus text exposition format.
    #[napi]
    pub fn stats_prometheus(&self) -> String {
        self.core.stats_prometheus()
    }
}

/// A `TypeError` (code 3002) unless `v` is a function.
///
/// # Safety
/// Must run on the JavaScript thread of `env`.
unsafe fn expect_function(env: sys::napi_env, v: sys::napi_value, ctx: &str, what: &str) -> Result<()> {
    let mut t = 0;
    // SAFETY: on the JavaScript thread (callers).
    unsafe {
        sys::napi_typeof(env, v, &mut t);
        if t != sys::ValueType::napi_function {
            return Err(errors::throw_invalid(
                env,
                &format!("{ctx}: expected {what} as a function, found {}", errors::describe_value(env, v)),
            ));
        }
    }
    Ok(())
}
