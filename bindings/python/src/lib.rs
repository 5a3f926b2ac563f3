//! `hotmod._native`: the Python binding of the hotmod runtime.
//!
//! A thin layer over the `hotmod_core` crate (not over the C ABI), wrapped by
//! the small pure-Python package `hotmod` (python/hotmod), which adds the
//! exception classes and the `Status`/`EventKind` enums. One file per concern:
//! `runtime` (load, upgrade, unload, host functions, events, manifests,
//! watches, stats), `watch` (manifest reports and directory watchers), `module`
//! (modules and method handles), `gil` (the GIL policy), `output` (the
//! zero-copy output buffer), `buffer` (reading Python buffers in place),
//! `info` (plain records) and `errors` (status codes to exceptions, the panic
//! boundary).
//!
//! Every administrative operation runs with the GIL released, every plugin
//! call under the GIL policy of its handle or runtime (`gil`: hold, release,
//! or decide from the measured latency), and all of them inside
//! `catch_unwind`, so no Rust panic reaches the interpreter. `module` also
//! gives method handles their vectorcall entry point.

use std::sync::{Mutex, MutexGuard};

use pyo3::prelude::*;

mod buffer;
mod errors;
mod gil;
mod info;
mod module;
mod output;
mod runtime;
mod watch;

/// Locks `m`, ignoring poisoning: a poisoned lock only means a panic
/// elsewhere; the data is still sound.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `(code, name, description)` of every hotmod status, in numeric order.
///
/// The Python `hotmod.Status` enum is written out by hand (so editors and type
/// checkers see it); a test compares it with this table.
#[pyfunction]
fn _status_table() -> Vec<(i32, String, &'static str)> {
    hotmod_core::Status::all().iter().map(|s| (s.code(), format!("{s:?}"), s.describe())).collect()
}

/// Benchmark floor: a pyo3 function that takes one argument and does nothing.
#[pyfunction]
fn _bench_noop(data: &Bound<'_, PyAny>) {
    let _ = data;
}

/// Benchmark step: acquires and releases `data`'s buffer, as a call does.
#[pyfunction]
fn _bench_buffer(data: &Bound<'_, PyAny>) -> PyResult<usize> {
    buffer::with_bytes(data, "data", |b| b.len())
}

/// Benchmark step: acquires the buffer and releases and retakes the GIL
/// around nothing, as a call does around the plugin.
#[pyfunction]
fn _bench_detach(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<usize> {
    buffer::with_bytes(data, "data", |b| py.detach(|| b.len()))
}

/// Benchmark step: a whole call through `method`'s handle (buffer, GIL
/// release, plugin), with the output dropped in Rust instead of becoming a
/// Python object. Returns the output's length.
#[pyfunction]
fn _bench_call_no_output(
    py: Python<'_>,
    method: &Bound<'_, module::Method>,
    data: &Bound<'_, PyAny>,
) -> PyResult<usize> {
    let handle = method.get().handle();
    let r = buffer::with_bytes(data, "data", |b| py.detach(|| errors::guarded("bench", || handle.call(b))))?;
    r.map(|out| out.len()).map_err(|e| errors::to_py(py, e))
}

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<runtime::Runtime>()?;
    m.add_class::<module::Module>()?;
    m.add_class::<module::Method>()?;
    m.add("Method", module::method_type(m.py())?)?;
    m.add_class::<output::Output>()?;
    m.add_class::<info::MethodInfo>()?;
    m.add_class::<info::DependencyInfo>()?;
    m.add_class::<info::ElfFacts>()?;
    m.add_class::<info::MethodStats>()?;
    m.add_class::<info::Event>()?;
    m.add_class::<watch::Watcher>()?;
    m.add_class::<watch::ManifestReport>()?;
    m.add_function(wrap_pyfunction!(_status_table, m)?)?;
    m.add_function(wrap_pyfunction!(watch::_stop_watchers, m)?)?;
    m.add_function(wrap_pyfunction!(_bench_noop, m)?)?;
    m.add_function(wrap_pyfunction!(_bench_buffer, m)?)?;
    m.add_function(wrap_pyfunction!(_bench_detach, m)?)?;
    m.add_function(wrap_pyfunction!(_bench_call_no_output, m)?)?;
    Ok(())
}
