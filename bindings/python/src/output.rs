//! `hotmod.Output`: the bytes a call returned, exposed through the buffer
//! protocol without a copy.
//!
//! The object owns a core [`hotmod_core::Output`]. When the plugin handed
//! back memory of its own, that memory (and the plugin version that owns
//! it) stays alive as long as the `Output` does; buffer views taken from it
//! (`memoryview(out)`, `numpy.frombuffer(out)`) hold a reference to it, so
//! the plugin's release callback runs exactly once, when the last of them
//! goes.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::buffer;

/// Where a zero-length output's buffer points (a NULL `buf` upsets some
/// consumers even for zero bytes).
static EMPTY: [u8; 1] = [0];

/// How many bytes `repr()` shows.
const REPR_PREVIEW: usize = 32;

/// The read-only bytes a plugin call returned, shared without a copy.
///
/// Supports the buffer protocol: `memoryview(out)`, `numpy.frombuffer(out,
/// dtype)`, `bytes(out)`, `int.from_bytes(out, "little")` all read the
/// plugin's memory in place. When the plugin returned memory of its own,
/// the plugin's release callback runs once the `Output` and every view of
/// it are gone.
#[pyclass(module = "hotmod", name = "Output", frozen)]
pub struct Output {
    out: hotmod_core::Output,
    exports: AtomicUsize,
}

impl Output {
    /// Wraps a core output.
    #[inline]
    pub fn new(out: hotmod_core::Output) -> Output {
        Output { out, exports: AtomicUsize::new(0) }
    }
}

#[pymethods]
impl Output {
    /// Exports the bytes as a read-only, one-dimensional buffer of unsigned
    /// bytes (format "B").
    ///
    /// # Safety
    /// Called by CPython with a valid `view` to fill.
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
        if flags & ffi::PyBUF_WRITABLE != 0 {
            return Err(PyBufferError::new_err(
                "hotmod.Output is read-only: expected a read-only buffer request, found one for a writable buffer; \
                 copy it first, e.g. bytearray(out)",
            ));
        }
        let this = slf.get();
        let ptr = if this.out.is_empty() { EMPTY.as_ptr() } else { this.out.as_ptr() };
        // The length of an allocation never exceeds isize::MAX.
        let len = this.out.len() as ffi::Py_ssize_t;
        // SAFETY: `view` is valid (CPython's contract); the bytes stay valid
        // and unchanged while `slf` lives, and FillInfo makes the view hold a
        // new reference to `slf`.
        if unsafe { ffi::PyBuffer_FillInfo(view, slf.as_ptr(), ptr.cast_mut().cast::<c_void>(), len, 1, flags) } != 0 {
            return Err(PyErr::fetch(slf.py()));
        }
        this.exports.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Forgets one exported view (the view's reference to this object keeps
    /// the memory alive; nothing else to free).
    ///
    /// # Safety
    /// Called by CPython with a view this object exported.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.exports.fetch_sub(1, Ordering::Relaxed);
    }

    /// Number of bytes.
    fn __len__(&self) -> usize {
        self.out.len()
    }

    /// A copy of the bytes, as `bytes`.
    fn __bytes__<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.out)
    }

    /// A copy of the bytes, as `bytes` (like `memoryview.tobytes()`).
    fn tobytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.out)
    }

    /// The bytes decoded as text (UTF-8 unless told otherwise).
    #[pyo3(signature = (encoding = "utf-8", errors = "strict"))]
    fn decode<'py>(&self, py: Python<'py>, encoding: &str, errors: &str) -> PyResult<Bound<'py, PyAny>> {
        if encoding.eq_ignore_ascii_case("utf-8") && errors == "strict" {
            if let Ok(s) = std::str::from_utf8(&self.out) {
                return Ok(PyString::new(py, s).into_any());
            }
        }
        PyBytes::new(py, &self.out).call_method1("decode", (encoding, errors))
    }

    /// Address of the first byte (the plugin's own memory when
    /// `is_plugin_memory`); stable for the object's lifetime.
    #[getter]
    fn address(&self) -> usize {
        self.out.as_ptr() as usize
    }

    /// Whether the bytes are memory the plugin handed over (the zero-copy
    /// path, released through the plugin's callback) rather than a buffer
    /// the runtime offered.
    #[getter]
    fn is_plugin_memory(&self) -> bool {
        self.out.is_plugin_memory()
    }

    /// Number of buffer views (memoryview, numpy arrays...) currently
    /// exported from this object.
    #[getter]
    fn exports(&self) -> usize {
        self.exports.load(Ordering::Relaxed)
    }

    /// Compares the bytes with any bytes-like object.
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        buffer::with_bytes(other, "other", |b| b == &*self.out).unwrap_or(false)
    }

    /// The hash of the bytes (equal to `hash(bytes(out))`).
    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        PyBytes::new(py, &self.out).hash()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let n = self.out.len();
        let shown = &self.out[..n.min(REPR_PREVIEW)];
        let preview = PyBytes::new(py, shown).repr().map(|r| r.to_string()).unwrap_or_default();
        let more = if n > REPR_PREVIEW { "..." } else { "" };
        let owner = if self.out.is_plugin_memory() { "plugin memory" } else { "host memory" };
        format!("<hotmod.Output {n} bytes ({owner}) {preview}{more}>")
    }
}
