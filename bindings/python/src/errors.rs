//! Status codes to Python exceptions, and the panic boundary.
//!
//! The exception classes live in `hotmod/_errors.py` (so they are ordinary,
//! documented, picklable Python classes); this file only asks that module for
//! the instance that fits a code. Every call into the core runs through
//! [`detached`], which releases the GIL and turns a Rust panic into
//! `hotmod.InternalError` instead of letting it unwind into the interpreter.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use hotmod_core::{Error, Status};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

static MAKE_ERROR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The `hotmod` exception for `code`, carrying `message`. `class` names a
/// binding-specific subclass (for example `RuntimeClosedError`) to use
/// instead of the one the code maps to.
#[cold]
pub fn error_from(py: Python<'_>, code: i32, message: &str, class: Option<&str>) -> PyErr {
    let made =
        MAKE_ERROR.import(py, "hotmod._errors", "_make_error").and_then(|make| make.call1((code, message, class)));
    match made {
        Ok(exc) => PyErr::from_value(exc),
        // Only reachable if the Python half of the package is broken; say so
        // rather than hide the original error.
        Err(import_failed) => {
            let e = pyo3::exceptions::PyRuntimeError::new_err(format!("hotmod error {code}: {message}"));
            e.set_cause(py, Some(import_failed));
            e
        }
    }
}

/// Converts a core error.
#[cold]
pub fn to_py(py: Python<'_>, e: Error) -> PyErr {
    error_from(py, e.status().code(), e.message(), None)
}

/// `hotmod.InvalidArgumentError` (3002) with `message`.
#[cold]
pub fn invalid_argument(py: Python<'_>, message: String) -> PyErr {
    error_from(py, Status::InvalidArgument.code(), &message, None)
}

/// `hotmod.RuntimeClosedError`: an operation on a closed runtime.
#[cold]
pub fn closed(py: Python<'_>, operation: &str) -> PyErr {
    let msg = format!(
        "Runtime.{operation}: expected an open Runtime, found one already closed (by close() or the end of its with-block)"
    );
    error_from(py, Status::InvalidArgument.code(), &msg, Some("RuntimeClosedError"))
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}

/// Runs `f` with a panic boundary: a panic becomes [`Status::Internal`].
#[inline(always)]
pub fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => Err(panicked(what, &*payload)),
    }
}

#[cold]
fn panicked(what: &str, payload: &(dyn Any + Send)) -> Error {
    Error::new(
        Status::Internal,
        format!("internal error: hotmod panicked in {what} ({}); this is a bug in hotmod", panic_message(payload)),
    )
}

/// Runs `f` with the GIL released and a panic boundary, and converts its
/// error. For administrative operations (they may wait for calls in flight,
/// and those may need the GIL for a host function or an event handler).
pub fn detached<T: Send>(py: Python<'_>, what: &str, f: impl FnOnce() -> Result<T, Error> + Send) -> PyResult<T> {
    py.detach(|| guarded(what, f)).map_err(|e| to_py(py, e))
}
