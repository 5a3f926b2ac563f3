//! Manifests and watched directories: `hotmod.ManifestReport` (what
//! `Runtime.apply_manifest` changed) and `hotmod.Watcher` (a running
//! `Runtime.watch`).
//!
//! A watch runs on the core's own thread, `hotmod-watch`, which loads and
//! upgrades plugins and hands their events to the Python event handler,
//! taking the GIL to do so. Stopping a watch joins that thread, so it must
//! never happen with the GIL held: a handler waiting for the GIL would wait
//! forever for the thread that waits for it. Every stop therefore goes
//! through [`stop_all`], which takes the core watchers out of their slots
//! under a short lock and drops them with the GIL released.
//!
//! Inside a callback from the core (an event handler, a host function) it
//! does not join at all: the thread may hold the core's administrative lock
//! (events of a load are delivered under it), which the watcher's thread
//! may be waiting for to apply its change. The join then happens on a
//! short-lived thread of its own.
//!
//! The runtime owns its watches (a `Watcher` object is a handle; dropping
//! it does not stop anything): they end with `Watcher.stop()`, the end of
//! the watcher's with-block, `Runtime.close()` (which stops them before it
//! unloads anything), or interpreter exit (an `atexit` hook stops every
//! watch still running while the interpreter is whole, so no watcher thread
//! tries to take the GIL of an interpreter being torn down).

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};

use hotmod_core as hm;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};

use crate::errors::guarded;
use crate::lock;

/// What an application of a manifest changed: module names, in the order
/// the changes were made.
#[pyclass(module = "hotmod", name = "ManifestReport", frozen, get_all, eq)]
#[derive(Clone, PartialEq, Eq)]
pub struct ManifestReport {
    /// Modules loaded (entries new to the runtime).
    pub loaded: Vec<String>,
    /// Modules upgraded in place (their file's content or their config changed).
    pub upgraded: Vec<String>,
    /// Modules unloaded (their entry was removed or disabled).
    pub unloaded: Vec<String>,
    /// Enabled entries already running with the same content and config.
    pub unchanged: Vec<String>,
}

impl From<hm::ManifestReport> for ManifestReport {
    fn from(r: hm::ManifestReport) -> Self {
        ManifestReport { loaded: r.loaded, upgraded: r.upgraded, unloaded: r.unloaded, unchanged: r.unchanged }
    }
}

#[pymethods]
impl ManifestReport {
    /// Whether the application loaded, upgraded or unloaded anything.
    #[getter]
    fn changed(&self) -> bool {
        !(self.loaded.is_empty() && self.upgraded.is_empty() && self.unloaded.is_empty())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        // The lists as Python shows them.
        let show = |names: &[String]| -> PyResult<String> { Ok(PyList::new(py, names)?.repr()?.to_string()) };
        Ok(format!(
            "<hotmod.ManifestReport loaded={} upgraded={} unloaded={} unchanged={}>",
            show(&self.loaded)?,
            show(&self.upgraded)?,
            show(&self.unloaded)?,
            show(&self.unchanged)?
        ))
    }
}

/// Where a watch is in its life.
enum SlotState {
    /// `Runtime.watch` is scanning the directory (the core watcher does not
    /// exist yet).
    Starting,
    Running(hm::Watcher),
    Stopped,
}

/// One watch of a runtime, shared by the runtime (which stops it on close)
/// and the `Watcher` object handed to Python.
pub struct WatchSlot {
    state: Mutex<SlotState>,
}

/// Every watch that may still run, for the `atexit` hook.
static LIVE: Mutex<Vec<Weak<WatchSlot>>> = Mutex::new(Vec::new());

impl WatchSlot {
    /// A slot in the `Starting` state, registered for the `atexit` hook.
    pub fn new() -> Arc<WatchSlot> {
        let slot = Arc::new(WatchSlot { state: Mutex::new(SlotState::Starting) });
        let mut live = lock(&LIVE);
        live.retain(|w| w.strong_count() > 0);
        live.push(Arc::downgrade(&slot));
        slot
    }

    /// Hands the started core watcher to the slot. Gives it back if the slot
    /// was stopped meanwhile (the runtime was closed during the scan); the
    /// caller then drops it with the GIL released.
    pub fn started(&self, w: hm::Watcher) -> Result<(), hm::Watcher> {
        let mut state = lock(&self.state);
        match *state {
            SlotState::Starting => {
                *state = SlotState::Running(w);
                Ok(())
            }
            _ => Err(w),
        }
    }

    /// Marks the slot stopped and takes its core watcher out, if it runs.
    /// The lock is held only for the swap: never while joining.
    fn take(&self) -> Option<hm::Watcher> {
        match std::mem::replace(&mut *lock(&self.state), SlotState::Stopped) {
            SlotState::Running(w) => Some(w),
            SlotState::Starting | SlotState::Stopped => None,
        }
    }

    /// Whether the watch has ended (or never started).
    pub fn is_stopped(&self) -> bool {
        matches!(*lock(&self.state), SlotState::Stopped)
    }
}

thread_local! {
    /// How many callbacks from the core (event handlers, host functions)
    /// this thread is running.
    static IN_CALLBACK: Cell<u32> = const { Cell::new(0) };
}

/// Runs `f`, a Python callback the core called, marked as such for
/// [`stop_all`].
pub fn callback<R>(f: impl FnOnce() -> R) -> R {
    struct Mark;
    impl Drop for Mark {
        fn drop(&mut self) {
            IN_CALLBACK.with(|c| c.set(c.get() - 1));
        }
    }
    IN_CALLBACK.with(|c| c.set(c.get() + 1));
    let _mark = Mark;
    f()
}

/// Stops the given watches: marks them stopped (no change after the one
/// being applied), then joins their threads with the GIL released (a
/// watcher thread may be waiting for the GIL to deliver an event).
pub fn stop_all<'a>(py: Python<'_>, slots: impl IntoIterator<Item = &'a Arc<WatchSlot>>) {
    let watchers: Vec<hm::Watcher> = slots.into_iter().filter_map(|s| s.take()).collect();
    if !watchers.is_empty() {
        drop_detached(py, watchers);
    }
}

/// Drops core watchers (joining their threads) with the GIL released; from
/// inside a callback of the core, on a thread of their own (see the module
/// documentation).
pub fn drop_detached(py: Python<'_>, watchers: Vec<hm::Watcher>) {
    let join = move || {
        let _ = guarded("Watcher.stop", move || {
            drop(watchers);
            Ok(())
        });
    };
    if IN_CALLBACK.with(Cell::get) > 0 {
        // Should the thread not start, the closure (and the watchers) are
        // dropped here after all: joining is then the only way left.
        let _ = py.detach(|| std::thread::Builder::new().name("hotmod-unwatch".into()).spawn(join));
    } else {
        py.detach(join);
    }
}

/// Stops every watch still running, in every runtime. Registered with
/// `atexit` by the package: it runs while the interpreter is still whole, so
/// no watcher thread tries to take the GIL during finalization.
#[pyfunction]
pub fn _stop_watchers(py: Python<'_>) {
    let slots: Vec<Arc<WatchSlot>> = lock(&LIVE).drain(..).filter_map(|w| w.upgrade()).collect();
    stop_all(py, &slots);
}

/// A running watch of a plugin directory, returned by `Runtime.watch`.
///
/// The runtime owns the watch: it runs until `stop()`, the end of a
/// with-block on this object, or the runtime's `close()`; dropping the
/// object does not stop it. Modules the watch loaded stay loaded after it
/// stops.
#[pyclass(module = "hotmod", name = "Watcher", frozen)]
pub struct Watcher {
    slot: Arc<WatchSlot>,
    /// The watched directory, as the core resolved it.
    dir: PathBuf,
    debounce: f64,
    unload_on_remove: bool,
}

impl Watcher {
    pub fn new(slot: Arc<WatchSlot>, dir: PathBuf, debounce: f64, unload_on_remove: bool) -> Watcher {
        Watcher { slot, dir, debounce, unload_on_remove }
    }
}

#[pymethods]
impl Watcher {
    /// The watched directory (absolute, symbolic links resolved).
    #[getter]
    fn dir(&self) -> String {
        self.dir.display().to_string()
    }

    /// Seconds a file must stay unchanged before it is acted on.
    #[getter]
    fn debounce(&self) -> f64 {
        self.debounce
    }

    /// Whether removing a plugin file unloads its module.
    #[getter]
    fn unload_on_remove(&self) -> bool {
        self.unload_on_remove
    }

    /// Whether the watch still runs (False after `stop()` or the runtime's
    /// `close()`).
    #[getter]
    fn running(&self) -> bool {
        !self.slot.is_stopped()
    }

    /// Stops the watch and waits for its thread to end (with the GIL
    /// released, so a change being applied, and the event handler calls it
    /// makes, can finish). Idempotent. The modules it loaded stay loaded.
    /// Called from an event handler or a host function, it does not wait:
    /// no change starts after it, and the thread ends in the background
    /// after the change it may be applying.
    fn stop(&self, py: Python<'_>) {
        stop_all(py, [&self.slot]);
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Stops the watch; exceptions propagate.
    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.stop(py);
        false
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let state = if self.slot.is_stopped() { "stopped" } else { "running" };
        let dir = PyString::new(py, &self.dir()).repr()?;
        Ok(format!("<hotmod.Watcher {dir} {state}>"))
    }
}
