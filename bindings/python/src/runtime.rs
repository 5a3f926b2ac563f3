//! `hotmod.Runtime`: load, upgrade and unload modules; resolve and call
//! methods; host functions and lifecycle events as Python callables;
//! manifests and watched directories; statistics.
//!
//! The core runtime sits behind an `ArcSwapOption` so that `close()` can
//! drop it (unloading every module) while `Module` and `Method` objects
//! still exist: they hold no reference to the runtime and answer
//! `StaleHandleError` afterwards. Administrative operations run with the GIL
//! released, because they may wait for calls in flight, and those may need
//! the GIL to run a host function or an event handler. For the same reason
//! no lock that such an operation holds while it runs (the manifest states)
//! is ever taken with the GIL held.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use hotmod_core::{self as hm, LoadOptions, UpgradeOptions, WatchOptions};
use pyo3::exceptions::PyTypeError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use pyo3::PyTraverseError;

use crate::errors::{self, guarded};
use crate::gil::{self, Policy};
use crate::info::{Event, MethodStats};
use crate::module::{call_into_buffer, call_to_output, new_method, Method, Module};
use crate::output::Output;
use crate::watch::{self, ManifestReport, WatchSlot, Watcher};
use crate::{buffer, lock};

/// The Python callables a runtime holds: its event handler and its host
/// functions. Kept here, and not only inside the closures handed to the
/// core, so that the garbage collector can see (and break) reference cycles
/// through them, e.g. a handler that refers to its runtime.
#[derive(Default)]
struct Callbacks {
    events: Mutex<Option<Py<PyAny>>>,
    host: Mutex<HashMap<String, Py<PyAny>>>,
}

/// A host function backed by a Python callable.
struct PyHostFunction {
    name: String,
    callbacks: Arc<Callbacks>,
}

impl hm::HostFunction for PyHostFunction {
    fn call(&self, input: &[u8], out: &mut hm::OutputWriter<'_>) -> Result<(), String> {
        Python::try_attach(|py| watch::callback(|| self.call_python(py, input, out))).unwrap_or_else(|| {
            Err(format!("host function '{}' cannot run: the Python interpreter is not available", self.name))
        })
    }
}

impl PyHostFunction {
    /// Calls the Python function (the GIL is held).
    fn call_python(&self, py: Python<'_>, input: &[u8], out: &mut hm::OutputWriter<'_>) -> Result<(), String> {
        let f = lock(&self.callbacks.host).get(&self.name).map(|f| f.clone_ref(py));
        let Some(f) = f else {
            return Err(format!("host function '{}' is no longer registered with a live Runtime", self.name));
        };
        let result = f.bind(py).call1((PyBytes::new(py, input),)).map_err(|e| {
            let ty = e.get_type(py).name().map(|n| n.to_string()).unwrap_or_else(|_| "exception".into());
            format!("host function '{}' raised {ty}: {}", self.name, e.value(py))
        })?;
        write_host_result(&self.name, &result, out)
    }
}

/// Writes what a Python host function returned: bytes-like, str or None.
fn write_host_result(name: &str, result: &Bound<'_, PyAny>, out: &mut hm::OutputWriter<'_>) -> Result<(), String> {
    if result.is_none() {
        return Ok(());
    }
    if let Ok(s) = result.cast::<PyString>() {
        let s = s.to_str().map_err(|e| format!("host function '{name}' returned a str that is not UTF-8: {e}"))?;
        out.write(s.as_bytes());
        return Ok(());
    }
    buffer::with_bytes(result, "host function result", |b| out.write(b)).map_err(|_| {
        let ty = result.get_type().name().map(|n| n.to_string()).unwrap_or_default();
        format!("host function '{name}' returned {ty}: expected bytes, a bytes-like object, str or None")
    })
}

/// The keyword arguments every way of loading a file takes (`load`,
/// `load_all`, `upgrade`, `watch`), as Python gave them.
struct LoadArgs<'a, 'py> {
    config: Option<&'a Bound<'py, PyAny>>,
    sha256: Option<&'a str>,
    allow_world_writable: bool,
    max_file_size: Option<i128>,
    preflight: Option<&'a str>,
    preflight_helper: Option<PathBuf>,
    preflight_timeout: Option<f64>,
}

impl LoadArgs<'_, '_> {
    /// The load options: `base` with what was given applied. `what` names
    /// the operation in error messages.
    fn options(self, py: Python<'_>, what: &str, base: LoadOptions) -> PyResult<LoadOptions> {
        let mut opts = LoadOptions { allow_world_writable: self.allow_world_writable, ..base };
        if let Some(c) = self.config {
            opts.config = if let Ok(s) = c.cast::<PyString>() {
                s.to_str()?.as_bytes().to_vec()
            } else {
                buffer::to_vec(c, "config")?
            };
        }
        if let Some(hex) = self.sha256 {
            opts.expect_sha256_hex(hex).map_err(|e| errors::to_py(py, e))?;
        }
        if let Some(n) = self.max_file_size {
            opts.max_file_size = count(py, &format!("{what}(max_file_size=...)"), n, "bytes")?;
        }
        if let Some(p) = self.preflight {
            opts.preflight = preflight(py, &format!("{what}(preflight=...)"), p)?;
        }
        if let Some(helper) = self.preflight_helper {
            opts.preflight_helper = Some(helper);
        }
        if let Some(t) = self.preflight_timeout {
            opts.preflight_timeout = seconds(py, &format!("{what}(preflight_timeout=...)"), t)?;
        }
        Ok(opts)
    }
}

/// A preflight mode: "off", "if-available" or "on".
fn preflight(py: Python<'_>, what: &str, value: &str) -> PyResult<hm::Preflight> {
    match value {
        "off" => Ok(hm::Preflight::Off),
        "if-available" => Ok(hm::Preflight::IfAvailable),
        "on" => Ok(hm::Preflight::On),
        other => Err(errors::invalid_argument(
            py,
            format!("{what}: expected \"off\", \"if-available\" or \"on\", found {other:?}"),
        )),
    }
}

/// A size or count argument that must fit the target type and be >= 0, or
/// `InvalidArgumentError` naming it.
fn count<T: TryFrom<i128>>(py: Python<'_>, what: &str, value: i128, unit: &str) -> PyResult<T> {
    T::try_from(value).map_err(|_| {
        errors::invalid_argument(
            py,
            format!("{what}: expected a whole number of {unit} from 0 to the platform's limit, found {value}"),
        )
    })
}

/// A duration argument in seconds, or `InvalidArgumentError` naming it.
fn seconds(py: Python<'_>, what: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        errors::invalid_argument(py, format!("{what}: expected a finite number of seconds >= 0, found {value}"))
    })
}

/// A hotmod runtime: a set of loaded plugin modules and the services the
/// host offers them.
///
/// Use it as a context manager (or call `close()`): closing unloads every
/// module, dependents first. All methods may be called from many threads;
/// plugin calls and administrative operations release the GIL.
#[pyclass(module = "hotmod", name = "Runtime", frozen, weakref)]
pub struct Runtime {
    rt: ArcSwapOption<hm::Runtime>,
    callbacks: Arc<Callbacks>,
    /// The watches started by `watch`, stopped by `close` before anything
    /// is unloaded. Locked only briefly, never across a join.
    watches: Mutex<Vec<Arc<WatchSlot>>>,
    /// The GIL policy of its handles and by-name calls.
    gil: gil::Config,
}

impl Runtime {
    /// The core runtime, or `RuntimeClosedError`.
    #[inline]
    fn open(&self, py: Python<'_>, operation: &str) -> PyResult<Arc<hm::Runtime>> {
        self.rt.load_full().ok_or_else(|| errors::closed(py, operation))
    }

    /// `watch` for the open runtime `rt`.
    fn start_watch(
        &self,
        py: Python<'_>,
        rt: &Arc<hm::Runtime>,
        dir: PathBuf,
        debounce: f64,
        unload_on_remove: bool,
        load: LoadOptions,
    ) -> PyResult<Watcher> {
        let interval = seconds(py, "Runtime.watch(debounce=...)", debounce)?;
        let slot = WatchSlot::new();
        {
            let mut watches = lock(&self.watches);
            if self.rt.load().is_none() {
                // close() ran since `open`, and has taken the list.
                return Err(errors::closed(py, "watch"));
            }
            watches.retain(|s| !s.is_stopped());
            watches.push(slot.clone());
        }
        let forget = || {
            watch::stop_all(py, [&slot]);
            lock(&self.watches).retain(|s| !Arc::ptr_eq(s, &slot));
        };
        let opts = WatchOptions { debounce: interval, unload_on_remove, load };
        let w = match errors::detached(py, "Runtime.watch", || hm::watch_dir(rt, &dir, opts)) {
            Ok(w) => w,
            Err(e) => {
                forget();
                return Err(e);
            }
        };
        let resolved = w.dir().to_path_buf();
        if let Err(w) = slot.started(w) {
            // close() ran during the scan and could not stop a watch that
            // had not started yet: stop it here.
            watch::drop_detached(py, vec![w]);
            forget();
            return Err(errors::closed(py, "watch"));
        }
        Ok(Watcher::new(slot, resolved, debounce, unload_on_remove))
    }
}

#[pymethods]
impl Runtime {
    /// Creates a runtime. `drain_timeout` (seconds) is how long an upgrade
    /// or unload waits for calls in flight on the old version before
    /// returning (calls are never cut short).
    ///
    /// `gil` is the GIL policy of plugin calls: "release" (other Python
    /// threads run while a plugin does), "hold" (no release and retake,
    /// 30-40 ns saved per call; nothing else runs Python meanwhile), or
    /// "auto" (each handle times its calls and releases the GIL once their
    /// mean latency exceeds `gil_threshold` seconds, default 5e-6). A
    /// handle's own policy can be set with `method(..., gil=...)` or
    /// `Method.gil`. By-name calls hold the GIL only under "hold".
    ///
    /// `max_output_size` (bytes, default 64 MiB) caps the output a plugin
    /// may ask the host to allocate (`OutputTooLargeError` beyond it);
    /// `max_kept_mapped` (default 1024) is how many versions that cannot be
    /// unmapped the runtime may keep before refusing another such file
    /// (`KeptMappedLimitError`).
    #[new]
    #[pyo3(signature = (
        *, drain_timeout = 0.2, gil = "auto", gil_threshold = None, max_output_size = None, max_kept_mapped = None
    ))]
    fn new(
        py: Python<'_>,
        drain_timeout: f64,
        gil: &str,
        gil_threshold: Option<f64>,
        max_output_size: Option<i128>,
        max_kept_mapped: Option<i128>,
    ) -> PyResult<Self> {
        let drain_timeout = seconds(py, "Runtime(drain_timeout=...)", drain_timeout)?;
        let defaults = hm::RuntimeOptions::default();
        let max_output_size = match max_output_size {
            None => defaults.max_output_size,
            Some(n) => count(py, "Runtime(max_output_size=...)", n, "bytes")?,
        };
        let max_kept_mapped = match max_kept_mapped {
            None => defaults.max_kept_mapped,
            Some(n) => count(py, "Runtime(max_kept_mapped=...)", n, "versions")?,
        };
        let policy = Policy::parse(py, "Runtime(gil=...)", gil)?;
        let threshold_ns = match gil_threshold {
            None => gil::DEFAULT_THRESHOLD_NS,
            Some(t) => {
                let t = seconds(py, "Runtime(gil_threshold=...)", t)?;
                u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)
            }
        };
        let rt = hm::Runtime::with_options(hm::RuntimeOptions { drain_timeout, max_output_size, max_kept_mapped });
        Ok(Runtime {
            rt: ArcSwapOption::from_pointee(rt),
            callbacks: Arc::default(),
            watches: Mutex::default(),
            gil: gil::Config { policy, threshold_ns },
        })
    }

    /// The runtime's GIL policy: "auto", "release" or "hold".
    #[getter]
    fn gil(&self) -> &'static str {
        self.gil.policy.name()
    }

    /// Mean call latency, in seconds, above which "auto" handles release
    /// the GIL (they hold it again under half of it).
    #[getter]
    fn gil_threshold(&self) -> f64 {
        self.gil.threshold_ns as f64 * 1e-9
    }

    /// Loads the plugin file at `path` and activates it; returns the `Module`.
    ///
    /// `config` (bytes-like or str) is handed to the plugin's init hook;
    /// `sha256` (64 hex digits) refuses the file unless its bytes match,
    /// checked before any plugin code runs; `allow_world_writable` accepts
    /// files or directories anyone may write to. `max_file_size` (bytes)
    /// refuses a larger file (`FileTooLargeError`) before it is read;
    /// `preflight` ("off", the default, "if-available" or "on") maps the file
    /// in a child process first, run from `preflight_helper` (default: the
    /// `HOTMOD_WORKER` variable, or `hotmod-worker` installed beside the
    /// library) and killed after `preflight_timeout` seconds (default 5): a
    /// file whose constructors crash or hang is refused with
    /// `PreflightFailedError` instead of taking the host down.
    #[pyo3(signature = (
        path, *, config = None, sha256 = None, allow_world_writable = false, max_file_size = None, preflight = None, preflight_helper = None, preflight_timeout = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn load(
        &self,
        py: Python<'_>,
        path: PathBuf,
        config: Option<&Bound<'_, PyAny>>,
        sha256: Option<&str>,
        allow_world_writable: bool,
        max_file_size: Option<i128>,
        preflight: Option<&str>,
        preflight_helper: Option<PathBuf>,
        preflight_timeout: Option<f64>,
    ) -> PyResult<Module> {
        let rt = self.open(py, "load")?;
        let args = LoadArgs {
            config,
            sha256,
            allow_world_writable,
            max_file_size,
            preflight,
            preflight_helper,
            preflight_timeout,
        };
        let opts = args.options(py, "Runtime.load", LoadOptions::default())?;
        errors::detached(py, "Runtime.load", || rt.load(&path, &opts)).map(|m| Module::new(m, self.gil))
    }

    /// Loads several plugin files in dependency order; nothing is loaded
    /// unless every file validates (a dependency cycle among them raises
    /// `DependencyCycleError`). The options apply to every file.
    #[pyo3(signature = (
        paths, *, config = None, sha256 = None, allow_world_writable = false, max_file_size = None, preflight = None, preflight_helper = None, preflight_timeout = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn load_all(
        &self,
        py: Python<'_>,
        paths: Vec<PathBuf>,
        config: Option<&Bound<'_, PyAny>>,
        sha256: Option<&str>,
        allow_world_writable: bool,
        max_file_size: Option<i128>,
        preflight: Option<&str>,
        preflight_helper: Option<PathBuf>,
        preflight_timeout: Option<f64>,
    ) -> PyResult<Vec<Module>> {
        let rt = self.open(py, "load_all")?;
        let args = LoadArgs {
            config,
            sha256,
            allow_world_writable,
            max_file_size,
            preflight,
            preflight_helper,
            preflight_timeout,
        };
        let opts = args.options(py, "Runtime.load_all", LoadOptions::default())?;
        let files: Vec<(PathBuf, LoadOptions)> = paths.into_iter().map(|p| (p, opts.clone())).collect();
        let loaded = errors::detached(py, "Runtime.load_all", || rt.load_all(&files))?;
        Ok(loaded.into_iter().map(|m| Module::new(m, self.gil)).collect())
    }

    /// Replaces the running version of module `name` with the plugin at
    /// `path` while calls keep flowing; returns the new `Module`.
    ///
    /// Refused (the old version keeps serving) if the new build has another
    /// name, unsatisfied dependencies, a version a dependent does not accept,
    /// or removes or changes methods that callers hold handles to — unless
    /// `force`, after which such handles raise `SignatureChangedError` or
    /// `StaleHandleError`. Other options as for `load`.
    #[pyo3(signature = (
        name, path, *, force = false, config = None, sha256 = None, allow_world_writable = false, max_file_size = None, preflight = None, preflight_helper = None, preflight_timeout = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn upgrade(
        &self,
        py: Python<'_>,
        name: &str,
        path: PathBuf,
        force: bool,
        config: Option<&Bound<'_, PyAny>>,
        sha256: Option<&str>,
        allow_world_writable: bool,
        max_file_size: Option<i128>,
        preflight: Option<&str>,
        preflight_helper: Option<PathBuf>,
        preflight_timeout: Option<f64>,
    ) -> PyResult<Module> {
        let rt = self.open(py, "upgrade")?;
        let args = LoadArgs {
            config,
            sha256,
            allow_world_writable,
            max_file_size,
            preflight,
            preflight_helper,
            preflight_timeout,
        };
        let opts = UpgradeOptions { load: args.options(py, "Runtime.upgrade", LoadOptions::default())?, force };
        errors::detached(py, "Runtime.upgrade", || rt.upgrade(name, &path, &opts)).map(|m| Module::new(m, self.gil))
    }

    /// Unloads module `name`: it stops taking calls at once, calls in flight
    /// finish, then it is destroyed. Raises `ModuleInUseError` while other
    /// modules depend on it, unless `cascade`, which unloads them first.
    #[pyo3(signature = (name, *, cascade = false))]
    fn unload(&self, py: Python<'_>, name: &str, cascade: bool) -> PyResult<()> {
        let rt = self.open(py, "unload")?;
        errors::detached(py, "Runtime.unload", || rt.unload(name, cascade))
    }

    /// Brings the runtime to the state the TOML manifest at `path`
    /// describes; returns a `ManifestReport` of what changed.
    ///
    /// Each `[[plugin]]` entry has a `path` (relative to the manifest's
    /// directory) and optionally `enabled` (default true), `sha256` (64 hex
    /// digits, checked before any plugin code runs), `config` (handed to
    /// init) and `isolation = "in-process"`. The runtime remembers, per
    /// manifest file, which modules it loaded: applying the edited file
    /// again upgrades the entries whose file content or config changed
    /// (calls keep flowing), loads new ones and unloads those removed or
    /// disabled; modules loaded by other means are never touched. Everything
    /// checkable is checked before anything changes.
    ///
    /// Raises `BadManifestError` for a file that cannot be read or is
    /// invalid (an unknown key, say; the message names file and line), or
    /// the error of the entry at fault (`HashMismatchError`,
    /// `FileMissingError`, ...; its line in the message), the old versions
    /// still serving. The GIL is released while it runs.
    fn apply_manifest(&self, py: Python<'_>, path: PathBuf) -> PyResult<ManifestReport> {
        let rt = self.open(py, "apply_manifest")?;
        // The core keeps one state per manifest file; its lock is taken
        // here with the GIL released (applying delivers events to Python).
        let report = errors::detached(py, "Runtime.apply_manifest", move || {
            let r = rt.apply_manifest(&path);
            // Should close() have run meanwhile, the runtime goes here,
            // with the GIL released.
            drop(rt);
            r
        })?;
        Ok(ManifestReport::from(report))
    }

    /// Watches the plugin directory `dir`; returns the `Watcher`.
    ///
    /// The plugin files already there are loaded before this returns (in
    /// dependency order; failures are events, not exceptions). Then, on a
    /// thread of the runtime's named `hotmod-watch`, a new plugin file is
    /// loaded, a replaced one upgrades its module while calls keep flowing
    /// (publish a build by writing it under another name, e.g. `x.so.tmp`,
    /// then `os.replace` it over the old one), and a removed one unloads its
    /// module if `unload_on_remove` (by default it keeps running). A file is
    /// acted on once it has been unchanged for `debounce` seconds. A file
    /// that cannot be loaded or upgraded becomes an `UPGRADE_FAILED` event
    /// (the old version keeps serving, and the same bytes are not retried);
    /// problems of the watch itself, `WATCH_ERROR` events. Events of later
    /// changes reach the event handler on the `hotmod-watch` thread.
    ///
    /// The watch runs until `Watcher.stop()`, the end of a with-block on
    /// the watcher, or `close()`. Raises `FileMissingError` if `dir` does
    /// not exist, `InvalidArgumentError` if it is not a directory, `BusyError`
    /// if this runtime already watches it.
    ///
    /// `allow_world_writable`, `max_file_size`, `preflight`,
    /// `preflight_helper` and `preflight_timeout` apply to every file, as
    /// for `load`, except that `preflight` defaults to "if-available" here:
    /// files dropped into a directory are often someone else's.
    #[pyo3(signature = (
        dir, *, debounce = 0.2, unload_on_remove = false, allow_world_writable = false,
        max_file_size = None, preflight = None, preflight_helper = None, preflight_timeout = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn watch(
        &self,
        py: Python<'_>,
        dir: PathBuf,
        debounce: f64,
        unload_on_remove: bool,
        allow_world_writable: bool,
        max_file_size: Option<i128>,
        preflight: Option<&str>,
        preflight_helper: Option<PathBuf>,
        preflight_timeout: Option<f64>,
    ) -> PyResult<Watcher> {
        let rt = self.open(py, "watch")?;
        let args = LoadArgs {
            config: None,
            sha256: None,
            allow_world_writable,
            max_file_size,
            preflight,
            preflight_helper,
            preflight_timeout,
        };
        let load = match args.options(py, "Runtime.watch", WatchOptions::default().load) {
            Ok(l) => l,
            Err(e) => {
                py.detach(move || drop(rt));
                return Err(e);
            }
        };
        let r = self.start_watch(py, &rt, dir, debounce, unload_on_remove, load);
        // Should close() have run meanwhile, this is the last reference: the
        // runtime goes here, with the GIL released.
        py.detach(move || drop(rt));
        r
    }

    /// The loaded module named `name` (`ModuleNotLoadedError` if none).
    fn module(&self, py: Python<'_>, name: &str) -> PyResult<Module> {
        let rt = self.open(py, "module")?;
        errors::detached(py, "Runtime.module", || rt.module(name)).map(|m| Module::new(m, self.gil))
    }

    /// Every loaded module, sorted by name.
    fn modules(&self, py: Python<'_>) -> PyResult<Vec<Module>> {
        let rt = self.open(py, "modules")?;
        let all = errors::detached(py, "Runtime.modules", || Ok(rt.modules()))?;
        Ok(all.into_iter().map(|m| Module::new(m, self.gil)).collect())
    }

    /// Whether a module named `name` is loaded.
    fn __contains__(&self, py: Python<'_>, name: &str) -> PyResult<bool> {
        let rt = self.open(py, "__contains__")?;
        Ok(rt.module(name).is_ok())
    }

    /// Lifecycle state of module `name`'s active version ("active" while it
    /// serves calls).
    fn state(&self, py: Python<'_>, name: &str) -> PyResult<&'static str> {
        let rt = self.open(py, "state")?;
        Ok(errors::detached(py, "Runtime.state", || rt.state(name))?.name())
    }

    /// Resolves `module.method` to a handle (the fast path for repeated
    /// calls). `gil` ("auto", "release", "hold") overrides the runtime's GIL
    /// policy for this handle.
    #[pyo3(signature = (module, method, *, gil = None))]
    fn method<'py>(
        &self,
        py: Python<'py>,
        module: &str,
        method: &str,
        gil: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let policy = gil.map(|g| Policy::parse(py, "Runtime.method(gil=...)", g)).transpose()?;
        let rt = self.open(py, "method")?;
        let handle = errors::detached(py, "Runtime.method", || rt.method(module, method))?;
        new_method(py, Method::new(handle, gil::State::new(self.gil, policy)))
    }

    /// Calls `module.method` by name with `data` (any C-contiguous bytes-like
    /// object, read in place); returns its `Output`. The GIL is held under
    /// the runtime's "hold" policy, released otherwise.
    fn call(&self, py: Python<'_>, module: &str, method: &str, data: &Bound<'_, PyAny>) -> PyResult<Output> {
        // A guard, not a counted reference: the hot path skips two atomic
        // read-modify-writes on a shared cache line.
        let guard = self.rt.load();
        let Some(rt) = guard.as_deref() else { return Err(errors::closed(py, "call")) };
        call_to_output(py, &self.gil, data, "Runtime.call", |input| rt.call(module, method, input))
    }

    /// Calls `module.method` by name with its output written into `out` (a
    /// writable, C-contiguous bytes-like object); returns the number of bytes
    /// written (`OutputTooLargeError` if it does not fit).
    fn call_into(
        &self,
        py: Python<'_>,
        module: &str,
        method: &str,
        data: &Bound<'_, PyAny>,
        out: &Bound<'_, PyAny>,
    ) -> PyResult<usize> {
        let rt = self.open(py, "call_into")?;
        call_into_buffer(py, &self.gil, data, out, "Runtime.call_into", |input, dst| {
            rt.call_into(module, method, input, dst)
        })
    }

    /// Registers (or replaces) a host function that plugins can call by
    /// `name`. `function(data: bytes)` returns bytes, a bytes-like object,
    /// str or None; an exception becomes a plugin error in the calling
    /// plugin. It runs on the plugin's calling thread, with the GIL taken
    /// only while it runs. Returns `function`.
    fn register_host_function(&self, py: Python<'_>, name: &str, function: Py<PyAny>) -> PyResult<Py<PyAny>> {
        let rt = self.open(py, "register_host_function")?;
        if !function.bind(py).is_callable() {
            let ty = function.bind(py).get_type().name().map(|n| n.to_string()).unwrap_or_default();
            return Err(PyTypeError::new_err(format!(
                "register_host_function('{name}', ...): expected a callable taking bytes, found {ty}"
            )));
        }
        let previous = lock(&self.callbacks.host).insert(name.to_owned(), function.clone_ref(py));
        let f = Arc::new(PyHostFunction { name: name.to_owned(), callbacks: self.callbacks.clone() });
        let r = errors::detached(py, "Runtime.register_host_function", || rt.register_host_function(name, f));
        if r.is_err() {
            let mut host = lock(&self.callbacks.host);
            match previous {
                Some(p) => host.insert(name.to_owned(), p),
                None => host.remove(name),
            };
        }
        r.map(|()| function)
    }

    /// Removes a host function; returns whether one was registered.
    fn unregister_host_function(&self, py: Python<'_>, name: &str) -> PyResult<bool> {
        let rt = self.open(py, "unregister_host_function")?;
        let existed =
            errors::detached(py, "Runtime.unregister_host_function", || Ok(rt.unregister_host_function(name)))?;
        lock(&self.callbacks.host).remove(name);
        Ok(existed)
    }

    /// Sets (or, with None, clears) the lifecycle event handler:
    /// `handler(event: hotmod.Event)`. It runs synchronously on the thread
    /// that caused the event (the one calling load/upgrade/unload/close or
    /// apply_manifest, the one dropping the last reference to a drained
    /// version, or the `hotmod-watch` thread of a watch for the changes it
    /// applies) and must not call load/upgrade/unload/close/apply_manifest
    /// itself (`Watcher.stop()` is fine: it does not wait there). An
    /// exception it raises is reported through `sys.unraisablehook`.
    fn set_event_handler(&self, py: Python<'_>, handler: Option<Py<PyAny>>) -> PyResult<()> {
        let rt = self.open(py, "set_event_handler")?;
        if let Some(h) = &handler {
            if !h.bind(py).is_callable() {
                let ty = h.bind(py).get_type().name().map(|n| n.to_string()).unwrap_or_default();
                return Err(PyTypeError::new_err(format!(
                    "set_event_handler: expected a callable taking a hotmod.Event, or None, found {ty}"
                )));
            }
        }
        let installed = handler.is_some();
        *lock(&self.callbacks.events) = handler;
        let core_handler: Option<hm::EventHandler> = installed.then(|| {
            let callbacks = self.callbacks.clone();
            Arc::new(move |ev: &hm::Event| deliver_event(&callbacks, ev)) as hm::EventHandler
        });
        errors::detached(py, "Runtime.set_event_handler", || {
            rt.set_event_handler(core_handler);
            Ok(())
        })
    }

    /// Statistics of every method of every loaded module (counters persist
    /// across upgrades), sorted by module.
    fn stats(&self, py: Python<'_>) -> PyResult<Vec<MethodStats>> {
        let rt = self.open(py, "stats")?;
        let all = errors::detached(py, "Runtime.stats", || Ok(rt.stats()))?;
        Ok(all.iter().map(MethodStats::from).collect())
    }

    /// The statistics in the Prometheus text exposition format.
    fn stats_prometheus(&self, py: Python<'_>) -> PyResult<String> {
        let rt = self.open(py, "stats_prometheus")?;
        errors::detached(py, "Runtime.stats_prometheus", || Ok(rt.stats_prometheus()))
    }

    /// Stops the runtime's watches (waiting for a change being applied),
    /// then unloads every module (dependents first) and releases the
    /// runtime. Idempotent. `Module` and `Method` objects outlive it and
    /// raise `StaleHandleError` when called; outputs already returned stay
    /// valid.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        // Closed first, so that no watch starts after the list is taken
        // (`watch` checks under the same lock).
        let rt = self.rt.swap(None);
        let watches = std::mem::take(&mut *lock(&self.watches));
        watch::stop_all(py, &watches);
        // A call in flight on another thread may hold the last reference;
        // the modules (and the manifest states) then go when it returns.
        errors::detached(py, "Runtime.close", move || {
            drop(rt);
            Ok(())
        })?;
        lock(&self.callbacks.host).clear();
        *lock(&self.callbacks.events) = None;
        Ok(())
    }

    /// How many replaced or unloaded versions this runtime keeps mapped
    /// because they could not be unmapped (bounded by `max_kept_mapped`).
    #[getter]
    fn kept_mapped(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.open(py, "kept_mapped")?.kept_mapped())
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.rt.load().is_none()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Closes the runtime; exceptions propagate.
    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        match self.rt.load_full() {
            None => "<hotmod.Runtime closed>".to_owned(),
            Some(rt) => {
                let mods: Vec<String> =
                    rt.modules().iter().map(|m| format!("{}@{}", m.name(), m.info().version)).collect();
                format!("<hotmod.Runtime modules=[{}]>", mods.join(", "))
            }
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // try_lock: the GC must not block; the locks are only ever held
        // briefly by a thread that also holds the GIL.
        if let Ok(ev) = self.callbacks.events.try_lock() {
            visit.call(ev.as_ref())?;
        }
        if let Ok(host) = self.callbacks.host.try_lock() {
            for f in host.values() {
                visit.call(f)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        lock(&self.callbacks.events).take();
        lock(&self.callbacks.host).clear();
    }
}

/// Hands one core event to the Python handler, if any.
fn deliver_event(callbacks: &Callbacks, ev: &hm::Event) {
    Python::try_attach(|py| {
        let Some(handler) = lock(&callbacks.events).as_ref().map(|h| h.clone_ref(py)) else { return };
        let handler = handler.bind(py);
        if let Err(e) = watch::callback(|| Event::new(py, ev).and_then(|event| handler.call1((event,)))) {
            e.write_unraisable(py, Some(handler));
        }
    });
}

impl Drop for Runtime {
    /// Closing without `close()`: stop the watches, then unload, with the
    /// GIL released, as `close` does, when the interpreter is still there
    /// to release it.
    fn drop(&mut self) {
        let watches = std::mem::take(&mut *lock(&self.watches));
        let rt = self.rt.swap(None);
        if rt.is_none() && watches.is_empty() {
            return;
        }
        let mut rt = Some(rt);
        let mut watches = Some(watches);
        Python::try_attach(|py| {
            watch::stop_all(py, watches.take().iter().flatten());
            let rt = rt.take();
            py.detach(move || {
                let _ = guarded("Runtime.__del__", move || {
                    drop(rt);
                    Ok(())
                });
            })
        });
    }
}
