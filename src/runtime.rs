//! Runtime, load options, load/upgrade/unload, host functions and events.

use std::ffi::{c_char, c_void};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hotmod_core::abi::hotmod_output;
use hotmod_core::watch::{self, WatchOptions, Watcher};
use hotmod_core::{
    Error, Event, HostFunction, LoadOptions, OutputWriter, Preflight, Runtime, RuntimeOptions, Status, UpgradeOptions,
};

use crate::ffi::{self, out_arg, path_arg, str_arg, write_out, BoxHandle, ForeignData};
use crate::module::{hotmod_module, ModuleBox};

/// A hotmod runtime: the set of loaded modules and the host's services.
///
/// Thread-safe: every function taking a `const hotmod_runtime *` may be
/// called from many threads at once. Create with `hotmod_runtime_new`, free
/// with `hotmod_runtime_free` (which unloads every module).
pub struct hotmod_runtime {
    _private: [u8; 0],
}

/// What a `hotmod_runtime` owns: the runtime and its directory watchers
/// (dropped first, so no watcher outlives the runtime it feeds).
pub(crate) struct RuntimeBox {
    watchers: Mutex<Vec<Watcher>>,
    rt: Arc<Runtime>,
}

impl std::ops::Deref for RuntimeBox {
    type Target = Runtime;
    fn deref(&self) -> &Runtime {
        &self.rt
    }
}

impl BoxHandle for hotmod_runtime {
    type Inner = RuntimeBox;
}

/// Options for `hotmod_runtime_load` and `hotmod_runtime_upgrade`: expected
/// SHA-256, configuration bytes for the plugin's init, whether
/// world-writable files are accepted, the largest file accepted, and the
/// preflight (since 1.1). Not thread-safe; owned by the caller.
pub struct hotmod_load_options {
    _private: [u8; 0],
}

impl BoxHandle for hotmod_load_options {
    type Inner = LoadOptions;
}

/// `hotmod_runtime_upgrade` flag: publish even if methods that callers hold
/// handles to are removed or change signature (those handles then answer
/// `HOTMOD_STATUS_SIGNATURE_CHANGED` or `HOTMOD_STATUS_STALE_HANDLE`).
pub const HOTMOD_UPGRADE_FORCE: u32 = 1;
/// `hotmod_runtime_unload` flag: also unload the modules that depend on it.
pub const HOTMOD_UNLOAD_CASCADE: u32 = 1;

/// An event, valid only during the callback it is passed to. Strings are
/// never NULL (empty when not applicable).
#[repr(C)]
pub struct hotmod_event {
    /// A `HOTMOD_EVENT_KIND_*` value.
    pub kind: i32,
    /// Status code for failures, log level for `HOTMOD_EVENT_KIND_LOG`, else 0.
    pub code: i32,
    /// Module name.
    pub module: *const c_char,
    /// Module version.
    pub version: *const c_char,
    /// Plugin file.
    pub path: *const c_char,
    /// Details.
    pub message: *const c_char,
}

/// Receives lifecycle events and plugin log lines. Runs on the thread that
/// caused the event (the caller of load/upgrade/unload, or the thread that
/// released the last reference to a drained version). Must not call
/// load/upgrade/unload/set_event_callback on the same runtime.
pub type hotmod_event_fn = Option<unsafe extern "C" fn(user_data: *mut c_void, event: *const hotmod_event)>;

/// A host function plugins call by name through `host->call_host`. Reads
/// `input_len` bytes at `input` and fills `output` per the `hotmod_output`
/// protocol (copy into `output->buf` if it fits, or hand over memory with a
/// `release` callback). Returns 0 on success; any other value is reported to
/// the plugin as `HOTMOD_STATUS_PLUGIN_ERROR`. Called on the plugin's calling
/// thread, possibly from many threads at once.
pub type hotmod_host_fn = Option<
    unsafe extern "C" fn(user_data: *mut c_void, input: *const u8, input_len: usize, output: *mut hotmod_output) -> i32,
>;

/// A free function for `user_data`; called exactly once, on any thread.
pub type hotmod_free_fn = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

/// Creates a runtime. On success `*out` owns it.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn hotmod_runtime_new(out: *mut *mut hotmod_runtime) -> Status {
    ffi_status!({
        out_arg(out, "out (hotmod_runtime **)")?;
        let rt = RuntimeBox { watchers: Mutex::default(), rt: Arc::new(Runtime::new()) };
        // SAFETY: checked non-NULL.
        unsafe { write_out(out, hotmod_runtime::into_c(rt)) };
        Ok(())
    })
}

/// Unloads every module (dependents first) and frees the runtime. NULL is a
/// no-op. Handles obtained from it stay valid to free; calls through them
/// answer `HOTMOD_STATUS_STALE_HANDLE`. No call on this runtime may be in
/// progress on another thread.
///
/// # Safety
/// `rt` must be NULL or from `hotmod_runtime_new`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn hotmod_runtime_free(rt: *mut hotmod_runtime) {
    ffi_value!((), {
        // SAFETY: per the contract.
        unsafe { hotmod_runtime::free(rt) }
    })
}

/// Creates load options with defaults (no hash check, empty config,
/// world-writable files refused, files up to 1 GiB, no preflight).
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn hotmod_load_options_new(out: *mut *mut hotmod_load_options) -> Status {
    ffi_status!({
        out_arg(out, "out (hotmod_load_options **)")?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(out, hotmod_load_options::into_c(LoadOptions::default())) };
        Ok(())
    })
}

/// Frees load options. NULL is a no-op.
///
/// # Safety
/// `opts` must be NULL or from `hotmod_load_options_new`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn hotmod_load_options_free(opts: *mut hotmod_load_options) {
    ffi_value!((), {
        // SAFETY: per the contract.
        unsafe { hotmod_load_options::free(opts) }
    })
}

/// Requires the plugin file's SHA-256 to be `sha256_hex` (64 hex digits).
/// The check happens before any plugin code runs.
///
/// # Safety
/// `opts` from `hotmod_load_options_new`; `sha256_hex` NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn hotmod_load_options_set_sha256(
    opts: *mut hotmod_load_options,
    sha256_hex: *const c_char,
) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let o = unsafe { hotmod_load_options::get_mut(opts, "opts (hotmod_load_options *)")? };
        // SAFETY: per the contract.
        let hex = unsafe { str_arg(sha256_hex, "sha256_hex")? };
        o.expect_sha256_hex(hex)
    })
}

/// Sets the configuration bytes handed to the plugin's init hook (copied).
///
/// # Safety
/// `opts` from `hotmod_load_options_new`; `config` valid for `len` bytes
/// (may be NULL when `len` is 0).
#[no_mangle]
pub unsafe extern "C" fn hotmod_load_options_set_config(
    opts: *mut hotmod_load_options,
    config: *const u8,
    len: usize,
) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let o = unsafe { hotmod_load_options::get_mut(opts, "opts (hotmod_load_options *)")? };
        // SAFETY: per the contract.
        o.config = unsafe { ffi::bytes_arg(config, len, "config")? }.to_vec();
        Ok(())
    })
}

/// Accepts (non-zero) or refuses (0, the default) plugin files and
/// directories that anyone may write to.
///
/// # Safety
/// `opts` from `hotmod_load_options_new`.
#[no_mangle]
pub unsafe extern "C" fn hotmod_load_options_set_allow_world_writable(
    opts: *mut hotmod_load_options,
    allow: i32,
) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let o = unsafe { hotmod_load_options::get_mut(opts, "opts (hotmod_load_options *)")? };
        o.allow_world_writable = allow != 0;
        Ok(())
    })
}

fn options_or_default(opts: *const hotmod_load_options) -> Result<LoadOptions, Error> {
    if opts.is_null() {
        return Ok(LoadOptions::default());
    }
    // SAFETY: non-NULL options come from hotmod_load_options_new.
    Ok(unsafe { hotmod_load_options::get(opts, "opts")? }.clone())
}

/// Loads the plugin at `path` (relative paths are resolved against the
/// current directory) and activates it.
///
/// `path`, like every file-system path of this API, is a NUL-terminated
/// byte string: on Unix any bytes are accepted (non-UTF-8 names included),
/// on Windows it must be UTF-8. Names (of modules, methods, host functions)
/// must be UTF-8 everywhere (`HOTMOD_STATUS_INVALID_ARGUMENT` otherwise).
///
/// `opts` is optional (NULL: defaults). `out` is optional: NULL if you do
/// not need a module handle; otherwise `*out` owns a new `hotmod_module` on
/// success. Errors: `HOTMOD_STATUS_FILE_MISSING`,
/// `HOTMOD_STATUS_PERMISSION_DENIED`, `HOTMOD_STATUS_NOT_A_LIBRARY`,
/// `HOTMOD_STATUS_ENTRY_SYMBOL_MISSING`, `HOTMOD_STATUS_NOT_A_PLUGIN`,
/// `HOTMOD_STATUS_ABI_UNSUPPORTED`, `HOTMOD_STATUS_INVALID_DESCRIPTOR`,
/// `HOTMOD_STATUS_HASH_MISMATCH`, `HOTMOD_STATUS_NAME_CONFLICT`,
/// `HOTMOD_STATUS_DEPENDENCY_UNSATISFIED`, `HOTMOD_STATUS_INIT_FAILED`,
/// `HOTMOD_STATUS_UNSAFE_FILE`, `HOTMOD_STATUS_FILE_TOO_LARGE`,
/// `HOTMOD_STATUS_PREFLIGHT_FAILED`, `HOTMOD_STATUS_WORKER_UNAVAILABLE`,
/// `HOTMOD_STATUS_KEPT_MAPPED_LIMIT`; the message names the file.
///
/// # Safety
/// `rt` from `hotmod_runtime_new`; `path` NUL-terminated; `opts` NULL or
/// from `hotmod_load_options_new`; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn hotmod_runtime_load(
    rt: *const hotmod_runtime,
    path: *const c_char,
    opts: *const hotmod_load_options,
    out: *mut *mut hotmod_module,
) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let rt = unsafe { hotmod_runtime::get(rt, "rt (hotmod_runtime *)")? };
        // SAFETY: per the contract.
        let path = unsafe { path_arg(path, "path")? };
        let m = rt.load(path, &options_or_default(opts)?)?;
        if !out.is_null() {
            // SAFETY: non-NULL out is writable per the contract.
            unsafe { write_out(out, hotmod_module::into_c(ModuleBox::new(m))) };
        }
        Ok(())
    })
}

/// Upgrades module `name` to the plugin at `path` while calls keep flowing:
/// the new build is validated, initialised, handed the old version's state
/// and published atomically; calls in flight finish on the old version,
/// which is then destroyed (and unmapped if safe). On failure the old
/// version keeps serving and the status says why
/// (`HOTMOD_STATUS_SIGNATURE_MISMATCH`, `HOTMOD_STATUS_VERSION_CONFLICT`,
/// `HOTMOD_STATUS_DEPENDENCY_CYCLE`, `HOTMOD_STATUS_INIT_FAILED`, or any load
/// error). `flags`: `HOTMOD_UPGRADE_FORCE`. `opts` and `out` are optional.
/// `name` is UTF-8; `path` is bytes on Unix (see `hotmod_runtime_load`).
///
/// # Safety
/// As for `hotmod_runtime_load`; `name` NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn hotmod_runtime_upgrade(
    rt: *const hotmod_runtime,
    name: *const c_char,
    path: *const c_char,
    opts: *const hotmod_load_options,
    flags: u32,
    out: *mut *mut hotmod_module,
) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let rt = unsafe { hotmod_runtime::get(rt, "rt (hotmod_runtime *)")? };
        // SAFETY: per the contract.
        let name = unsafe { str_arg(name, "name")? };
        // SAFETY: per the contract.
        let path = unsafe { path_arg(path, "path")? };
        let opts = UpgradeOptions { load: options_or_default(opts)?, force: flags & HOTMOD_UPGRADE_FORCE != 0 };
        let m = rt.upgrade(name, path, &opts)?;
        if !out.is_null() {
            // SAFETY: non-NULL out is writable per the contract.
            unsafe { write_out(out, hotmod_module::into_c(ModuleBox::new(m))) };
        }
        Ok(())
    })
}

/// Unloads module `name` (UTF-8): new calls are refused at once, calls in flight
/// finish, then it is destroyed. Refused with `HOTMOD_STATUS_MODULE_IN_USE`
/// while other modules depend on it, unless `flags` has
/// `HOTMOD_UNLOAD_CASCADE`.
///
/// # Safety
/// `rt` from `hotmod_runtime_new`; `name` NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn hotmod_runtime_unload(rt: *const hotmod_runtime, name: *const c_char, flags: u32) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let rt = unsafe { hotmod_runtime::get(rt, "rt (hotmod_runtime *)")? };
        // SAFETY: per the contract.
        let name = unsafe { str_arg(name, "name")? };
        rt.unload(name, flags & HOTMOD_UNLOAD_CASCADE != 0)
    })
}

struct CHostFunction {
    f: unsafe extern "C" fn(*mut c_void, *const u8, usize, *mut hotmod_output) -> i32,
    data: ForeignData,
}

impl HostFunction for CHostFunction {
    fn call(&self, input: &[u8], out: &mut OutputWriter<'_>) -> Result<(), String> {
        // SAFETY: the host registered f for exactly this use.
        let rc = unsafe { (self.f)(self.data.user_data, input.as_ptr(), input.len(), out.raw()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(format!("returned {rc}"))
        }
    }
}

/// Registers (or replaces) the host function `name` (UTF-8) for plugins to call.
///
/// The library takes ownership of `user_data` whatever the outcome:
/// `free_user_data` (optional) runs exactly once — when the function is
/// replaced or the runtime is freed, or before this call returns if it
/// fails. Never free `user_data` yourself after passing it here.
///
/// # Safety
/// `rt` from `hotmod_runtime_new`; `name` NUL-terminated; `func` callable
/// from any thread with `user_data`.
#[no_mangle]
pub unsafe extern "C" fn hotmod_runtime_register_host_function(
    rt: *const hotmod_runtime,
    name: *const c_char,
    func: hotmod_host_fn,
    user_data: *mut c_void,
    free_user_data: hotmod_free_fn,
) -> Status {
    ffi_status!({
        let data = ForeignData { user_data, free: free_user_data };
        // SAFETY: per the contract.
        let rt = unsafe { hotmod_runtime::get(rt, "rt (hotmod_runtime *)")? };
        // SAFETY: per the contract.
        let name = unsafe { str_arg(name, "name")? };
        let f = func.ok_or_else(|| ffi::null("func (hotmod_host_fn)"))?;
        rt.register_host_function(name, Arc::new(CHostFunction { f, data }))
    })
}

/// Sets the event callback (or clears it when `callback` is NULL). See
/// `hotmod_event_fn` for the calling thread.
///
/// The library takes ownership of `user_data` whatever the outcome:
/// `free_user_data` (optional) runs exactly once — when the callback is
/// replaced or cleared and can no longer be called, when the runtime is
/// freed, or before this call returns if it fails (including when
/// `callback` is NULL).
///
/// # Safety
/// `rt` from `hotmod_runtime_new`; `callback` callable from any thread.
#[no_mangle]
pub unsafe extern "C" fn hotmod_runtime_set_event_callback(
    rt: *const hotmod_runtime,
    callback: hotmod_event_fn,
    user_data: *mut c_void,
    free_user_data: hotmod_free_fn,
) -> Status {
    ffi_status!({
        let data = ForeignData { user_data, free: free_user_data };
        // SAFETY: per the contract.
        let rt = unsafe { hotmod_runtime::get(rt, "rt (hotmod_runtime *)")? };
        let Some(cb) = callback else {
            rt.set_event_handler(None);
            return Ok(());
        };
        rt.set_event_handler(Some(Arc::new(move |e: &Event| {
            let data = &data; // capture the whole ForeignData (Send + Sync), not its raw field
            let (module, version, path, message) =
                (ffi::cstring(&e.module), ffi::cstring(&e.version), ffi::cstring(&e.path), ffi::cstring(&e.message));
            let ev = hotmod_event {
                kind: e.kind as i32,
                code: e.code,
                module: module.as_ptr(),
                version: version.as_ptr(),
                path: path.as_ptr(),
                message: message.as_ptr(),
            };
            // SAFETY: the host registered cb for this use; ev lives for the call.
            unsafe { cb(data.user_data, &ev) };
        })));
        Ok(())
    })
}

/// Looks up a loaded module by name (UTF-8); `*out` owns a new handle on success.
/// `HOTMOD_STATUS_MODULE_NOT_FOUND` if none.
///
/// # Safety
/// `rt` from `hotmod_runtime_new`; `name` NUL-terminated; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn hotmod_runtime_module(
    rt: *const hotmod_runtime,
    name: *const c_char,
    out: *mut *mut hotmod_module,
) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let rt = unsafe { hotmod_runtime::get(rt, "rt (hotmod_runtime *)")? };
        // SAFETY: per the contract.
        let name = unsafe { str_arg(name, "name")? };
        out_arg(out, "out (hotmod_module **)")?;
        let m = rt.module(name)?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(out, hotmod_module::into_c(ModuleBox::new(m))) };
        Ok(())
    })
}

/// Number of loaded modules.
///
/// # Safety
/// `rt` from `hotmod_runtime_new`; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn hotmod_runtime_module_count(rt: *const hotmod_runtime, out: *mut usize) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let rt = unsafe { hotmod_runtime::get(rt, "rt (hotmod_runtime *)")? };
        out_arg(out, "out (size_t *)")?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(out, rt.modules().len()) };
        Ok(())
    })
}

/// The `index`-th loaded module in name order; `*out` owns a new handle.
/// `HOTMOD_STATUS_INVALID_ARGUMENT` if `index` is out of range (the set may
/// change between calls when other threads load or unload).
///
/// # Safety
/// `rt` from `hotmod_runtime_new`; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn hotmod_runtime_module_at(
    rt: *const hotmod_runtime,
    index: usize,
    out: *mut *mut hotmod_module,
) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let rt = unsafe { hotmod_runtime::get(rt, "rt (hotmod_runtime *)")? };
        out_arg(out, "out (hotmod_module **)")?;
        let m = ffi::nth(&rt.modules(), index, "module")?.clone();
        // SAFETY: checked non-NULL.
        unsafe { write_out(out, hotmod_module::into_c(ModuleBox::new(m))) };
        Ok(())
    })
}

/// `hotmod_runtime_watch_dir` flag: unload a module when its file is removed
/// from the directory (by default it keeps running).
pub const HOTMOD_WATCH_UNLOAD_ON_REMOVE: u32 = 1;

/// Brings the runtime to the state a TOML manifest describes:
///
/// ```toml
/// [[plugin]]
/// path = "libchecksum.so"   # relative to the manifest's directory
/// enabled = true            # optional, default true
/// sha256 = "<64 hex>"       # optional; checked before any plugin code runs
/// config = "key=value"      # optional; handed to the plugin's init
/// ```
///
/// The first call loads the enabled entries (in dependency order). Calling
/// it again with the edited file upgrades entries whose file or config
/// changed, loads new ones and unloads entries that were removed or
/// disabled; modules loaded outside this manifest are left alone. Every
/// entry is checked before anything changes. `path` is bytes on Unix (see
/// `hotmod_runtime_load`). Errors:
/// `HOTMOD_STATUS_BAD_MANIFEST` (with file and line), or the load error of
/// the entry at fault (its line added to the message).
///
/// # Safety
/// `rt` from `hotmod_runtime_new`; `path` NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn hotmod_runtime_apply_manifest(rt: *const hotmod_runtime, path: *const c_char) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let b = unsafe { hotmod_runtime::get(rt, "rt (hotmod_runtime *)")? };
        // SAFETY: per the contract.
        let path = unsafe { path_arg(path, "path")? };
        b.apply_manifest(path).map(|_| ())
    })
}

/// Watches directory `dir` (bytes on Unix, see `hotmod_runtime_load`): plugin files already there are loaded now (in
/// dependency order); afterwards a new file is loaded, a replaced file
/// upgrades its module, and (with `HOTMOD_WATCH_UNLOAD_ON_REMOVE`) a removed
/// file unloads it. A file is acted on once its size and modification time
/// have been stable for `debounce_ms` milliseconds (0: 200 ms), so files
/// still being written are not loaded half-written. Failures become events
/// (`HOTMOD_EVENT_KIND_UPGRADE_FAILED`, `HOTMOD_EVENT_KIND_WATCH_ERROR`) on a
/// thread named `hotmod-watch`; the old version keeps serving.
///
/// The watcher lives until `hotmod_runtime_unwatch_dir` or
/// `hotmod_runtime_free`. `HOTMOD_STATUS_BUSY` if `dir` is already watched.
///
/// # Safety
/// `rt` from `hotmod_runtime_new`; `dir` NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn hotmod_runtime_watch_dir(
    rt: *const hotmod_runtime,
    dir: *const c_char,
    debounce_ms: u32,
    flags: u32,
) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let b = unsafe { hotmod_runtime::get(rt, "rt (hotmod_runtime *)")? };
        // SAFETY: per the contract.
        let dir = unsafe { path_arg(dir, "dir")? };
        let mut opts =
            WatchOptions { unload_on_remove: flags & HOTMOD_WATCH_UNLOAD_ON_REMOVE != 0, ..Default::default() };
        if debounce_ms > 0 {
            opts.debounce = Duration::from_millis(u64::from(debounce_ms));
        }
        let w = watch::watch_dir(&b.rt, dir, opts)?;
        b.watchers.lock().unwrap_or_else(|e| e.into_inner()).push(w);
        Ok(())
    })
}

/// Stops watching `dir` (the modules it loaded stay loaded).
/// `HOTMOD_STATUS_INVALID_ARGUMENT` if it is not watched.
///
/// # Safety
/// `rt` from `hotmod_runtime_new`; `dir` NUL-terminated. Must not be called
/// from an event callback running on the watcher's own thread.
#[no_mangle]
pub unsafe extern "C" fn hotmod_runtime_unwatch_dir(rt: *const hotmod_runtime, dir: *const c_char) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let b = unsafe { hotmod_runtime::get(rt, "rt (hotmod_runtime *)")? };
        // SAFETY: per the contract.
        let dir = unsafe { path_arg(dir, "dir")? };
        // Watchers store their directory canonical: every spelling names one.
        let abs = hotmod_core::loader::identity_path(dir);
        let watcher = {
            let mut watchers = b.watchers.lock().unwrap_or_else(|e| e.into_inner());
            let Some(i) = watchers.iter().position(|w| w.dir() == abs) else {
                return Err(Error::new(
                    Status::InvalidArgument,
                    format!("expected a watched directory, found '{}' not watched", abs.display()),
                ));
            };
            watchers.remove(i)
        };
        watcher.stop();
        Ok(())
    })
}

/// Runtime-wide settings for `hotmod_runtime_new_with_options` (since 1.1):
/// how long upgrades wait for calls in flight, the largest output a plugin
/// may ask the host to allocate, and how many versions that cannot be
/// unmapped may be kept. Not thread-safe; owned by the caller, who may free
/// it as soon as the runtime is created (the runtime keeps a copy).
pub struct hotmod_runtime_options {
    _private: [u8; 0],
}

impl BoxHandle for hotmod_runtime_options {
    type Inner = RuntimeOptions;
}

/// Whether a plugin file is first mapped in a child process (the preflight
/// helper, `hotmod-worker`), so that a constructor that crashes, exits or
/// hangs there refuses the load (`HOTMOD_STATUS_PREFLIGHT_FAILED`) instead
/// of taking the host down. Pass one of these to
/// `hotmod_load_options_set_preflight` (since 1.1).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum hotmod_preflight {
    /// No preflight (the default of load options).
    Off = 0,
    /// Preflight when a helper is found; load without it otherwise.
    IfAvailable = 1,
    /// Preflight always; refuse the load with
    /// `HOTMOD_STATUS_WORKER_UNAVAILABLE` if it cannot be done.
    On = 2,
}

impl hotmod_preflight {
    /// The core setting for a value from C (any `int32_t`: C does not keep
    /// an enum argument in range).
    fn from_c(mode: i32) -> Result<Preflight, Error> {
        Ok(match mode {
            m if m == hotmod_preflight::Off as i32 => Preflight::Off,
            m if m == hotmod_preflight::IfAvailable as i32 => Preflight::IfAvailable,
            m if m == hotmod_preflight::On as i32 => Preflight::On,
            other => {
                return Err(Error::new(
                    Status::InvalidArgument,
                    format!(
                        "hotmod_load_options_set_preflight: expected a hotmod_preflight value \
                         (HOTMOD_PREFLIGHT_OFF 0, HOTMOD_PREFLIGHT_IF_AVAILABLE 1, HOTMOD_PREFLIGHT_ON 2), found {other}"
                    ),
                ))
            }
        })
    }
}

/// The largest plugin file accepted, in bytes (default 1 GiB). A larger
/// file is refused with `HOTMOD_STATUS_FILE_TOO_LARGE` before it is read,
/// and no more than this is read from a file that grows while it is loaded.
/// Since 1.1.
///
/// # Safety
/// `opts` from `hotmod_load_options_new`.
#[no_mangle]
pub unsafe extern "C" fn hotmod_load_options_set_max_file_size(
    opts: *mut hotmod_load_options,
    max_bytes: u64,
) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let o = unsafe { hotmod_load_options::get_mut(opts, "opts (hotmod_load_options *)")? };
        o.max_file_size = max_bytes;
        Ok(())
    })
}

/// Whether to map the file in a child process first: `mode` is a
/// `hotmod_preflight` value (`HOTMOD_PREFLIGHT_OFF`, the default,
/// `HOTMOD_PREFLIGHT_IF_AVAILABLE` or `HOTMOD_PREFLIGHT_ON`); any other
/// value gives `HOTMOD_STATUS_INVALID_ARGUMENT`. The child is the helper
/// executable set by `hotmod_load_options_set_preflight_helper`, else the
/// one named by the environment variable `HOTMOD_WORKER`, else
/// `hotmod-worker` beside libhotmod or in a `libexec/hotmod` directory.
/// A load it refuses answers `HOTMOD_STATUS_PREFLIGHT_FAILED` (the message
/// says how the child ended: signal, exit status or timeout); with
/// `HOTMOD_PREFLIGHT_ON` and no usable helper,
/// `HOTMOD_STATUS_WORKER_UNAVAILABLE`. Linux only: elsewhere `ON` refuses
/// every load and `IF_AVAILABLE` loads without a preflight. Since 1.1.
///
/// # Safety
/// `opts` from `hotmod_load_options_new`.
#[no_mangle]
pub unsafe extern "C" fn hotmod_load_options_set_preflight(opts: *mut hotmod_load_options, mode: i32) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let o = unsafe { hotmod_load_options::get_mut(opts, "opts (hotmod_load_options *)")? };
        o.preflight = hotmod_preflight::from_c(mode)?;
        Ok(())
    })
}

/// The preflight helper executable (copied): a path, bytes on Unix (see
/// `hotmod_runtime_load`), relative paths resolved against the current
/// directory when a load runs. It is started as `<path> --preflight <fd>`;
/// the project's `hotmod-worker` is such a helper. An empty path gives
/// `HOTMOD_STATUS_INVALID_ARGUMENT`. Since 1.1.
///
/// # Safety
/// `opts` from `hotmod_load_options_new`; `path` NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn hotmod_load_options_set_preflight_helper(
    opts: *mut hotmod_load_options,
    path: *const c_char,
) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let o = unsafe { hotmod_load_options::get_mut(opts, "opts (hotmod_load_options *)")? };
        // SAFETY: per the contract.
        let path = unsafe { path_arg(path, "path")? };
        if path.as_os_str().is_empty() {
            return Err(Error::new(
                Status::InvalidArgument,
                "hotmod_load_options_set_preflight_helper: expected the path of an executable, found \"\"",
            ));
        }
        o.preflight_helper = Some(path.to_path_buf());
        Ok(())
    })
}

/// How long, in milliseconds, the preflight child may take before it is
/// killed and the load refused with `HOTMOD_STATUS_PREFLIGHT_FAILED`
/// (default 5000). 0 gives `HOTMOD_STATUS_INVALID_ARGUMENT`. Since 1.1.
///
/// # Safety
/// `opts` from `hotmod_load_options_new`.
#[no_mangle]
pub unsafe extern "C" fn hotmod_load_options_set_preflight_timeout_ms(
    opts: *mut hotmod_load_options,
    timeout_ms: u32,
) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let o = unsafe { hotmod_load_options::get_mut(opts, "opts (hotmod_load_options *)")? };
        if timeout_ms == 0 {
            return Err(Error::new(
                Status::InvalidArgument,
                "hotmod_load_options_set_preflight_timeout_ms: expected a timeout of at least 1 ms, found 0",
            ));
        }
        o.preflight_timeout = Duration::from_millis(u64::from(timeout_ms));
        Ok(())
    })
}

/// Creates runtime options with defaults (drain timeout 200 ms, largest
/// output 64 MiB, at most 1024 versions kept mapped). On success `*out`
/// owns them. Since 1.1.
///
/// # Safety
/// `out` must be NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn hotmod_runtime_options_new(out: *mut *mut hotmod_runtime_options) -> Status {
    ffi_status!({
        out_arg(out, "out (hotmod_runtime_options **)")?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(out, hotmod_runtime_options::into_c(RuntimeOptions::default())) };
        Ok(())
    })
}

/// Frees runtime options. NULL is a no-op. Runtimes created with them are
/// not affected. Since 1.1.
///
/// # Safety
/// `opts` must be NULL or from `hotmod_runtime_options_new`, not used
/// afterwards.
#[no_mangle]
pub unsafe extern "C" fn hotmod_runtime_options_free(opts: *mut hotmod_runtime_options) {
    ffi_value!((), {
        // SAFETY: per the contract.
        unsafe { hotmod_runtime_options::free(opts) }
    })
}

/// How long, in milliseconds, an upgrade or unload waits for calls in
/// flight on the old version before it returns (default 200; 0: do not
/// wait). Calls are never cut short: a version still in use after this is
/// destroyed by whichever thread releases it last. Since 1.1.
///
/// # Safety
/// `opts` from `hotmod_runtime_options_new`.
#[no_mangle]
pub unsafe extern "C" fn hotmod_runtime_options_set_drain_timeout_ms(
    opts: *mut hotmod_runtime_options,
    timeout_ms: u32,
) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let o = unsafe { hotmod_runtime_options::get_mut(opts, "opts (hotmod_runtime_options *)")? };
        o.drain_timeout = Duration::from_millis(u64::from(timeout_ms));
        Ok(())
    })
}

/// The most output, in bytes, a plugin may ask the host to allocate (a
/// method answering `HOTMOD_PLUGIN_OUTPUT_TOO_SMALL` with a size, or the
/// result of a dependency call); default 64 MiB. A larger request fails
/// with `HOTMOD_STATUS_OUTPUT_TOO_LARGE` naming the method, the size and
/// this cap, and nothing is allocated. Memory a plugin hands over itself
/// (`hotmod_output_give`) is not bounded by it. Since 1.1.
///
/// # Safety
/// `opts` from `hotmod_runtime_options_new`.
#[no_mangle]
pub unsafe extern "C" fn hotmod_runtime_options_set_max_output_size(
    opts: *mut hotmod_runtime_options,
    max_bytes: usize,
) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let o = unsafe { hotmod_runtime_options::get_mut(opts, "opts (hotmod_runtime_options *)")? };
        o.max_output_size = max_bytes;
        Ok(())
    })
}

/// How many replaced or unloaded versions the runtime may keep mapped
/// because they cannot be unmapped (not declared safe to unload, or
/// NODELETE, static TLS, unique symbols, a Go runtime: see
/// `hotmod_module_elf_info`); default 1024. Once this many are kept,
/// loading or upgrading to another file that could not be unmapped either
/// is refused with `HOTMOD_STATUS_KEPT_MAPPED_LIMIT`. Since 1.1.
///
/// # Safety
/// `opts` from `hotmod_runtime_options_new`.
#[no_mangle]
pub unsafe extern "C" fn hotmod_runtime_options_set_max_kept_mapped(
    opts: *mut hotmod_runtime_options,
    max_versions: usize,
) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let o = unsafe { hotmod_runtime_options::get_mut(opts, "opts (hotmod_runtime_options *)")? };
        o.max_kept_mapped = max_versions;
        Ok(())
    })
}

/// Creates a runtime with `opts` (optional: NULL gives the defaults, as
/// `hotmod_runtime_new`). The runtime keeps a copy: `opts` may be changed
/// or freed afterwards without effect on it. On success `*out` owns the
/// runtime (free it with `hotmod_runtime_free`). Since 1.1.
///
/// # Safety
/// `opts` NULL or from `hotmod_runtime_options_new`; `out` must be NULL or
/// valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn hotmod_runtime_new_with_options(
    opts: *const hotmod_runtime_options,
    out: *mut *mut hotmod_runtime,
) -> Status {
    ffi_status!({
        let options = if opts.is_null() {
            RuntimeOptions::default()
        } else {
            // SAFETY: non-NULL options come from hotmod_runtime_options_new.
            unsafe { hotmod_runtime_options::get(opts, "opts (hotmod_runtime_options *)")? }.clone()
        };
        out_arg(out, "out (hotmod_runtime **)")?;
        let rt = RuntimeBox { watchers: Mutex::default(), rt: Arc::new(Runtime::with_options(options)) };
        // SAFETY: checked non-NULL.
        unsafe { write_out(out, hotmod_runtime::into_c(rt)) };
        Ok(())
    })
}

/// How many replaced or unloaded versions this runtime keeps mapped
/// because they could not be unmapped (each keeps its code and data in
/// memory for the rest of the process). Compare with the cap set by
/// `hotmod_runtime_options_set_max_kept_mapped`. Since 1.1.
///
/// # Safety
/// `rt` from `hotmod_runtime_new`; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn hotmod_runtime_kept_mapped(rt: *const hotmod_runtime, out: *mut usize) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let rt = unsafe { hotmod_runtime::get(rt, "rt (hotmod_runtime *)")? };
        out_arg(out, "out (size_t *)")?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(out, rt.kept_mapped()) };
        Ok(())
    })
}
