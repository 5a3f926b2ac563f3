//! Reading Python buffers in place: the zero-copy input side.
//!
//! A call's input may be any object with the buffer protocol (bytes,
//! bytearray, memoryview, array.array, numpy arrays, mmap...). Its memory is
//! borrowed for the duration of the call, never copied: the plugin sees the
//! very address Python holds. The buffer must be C-contiguous; its item type
//! does not matter (a float64 array is read as its raw bytes).
//!
//! This talks to `PyObject_GetBuffer` directly rather than through
//! `pyo3::buffer::PyBuffer<u8>`: the typed `PyBuffer<u8>` refuses buffers
//! whose items are not bytes (numpy float arrays, `array('I')`), and both it
//! and `PyUntypedBuffer` heap-allocate their `Py_buffer` on every call, which
//! shows on a call path measured in tens of nanoseconds. Here the `Py_buffer`
//! lives on the stack of [`with_view`] and never moves while exported
//! (exporters may point `shape`/`strides` into it).

use std::ffi::c_char;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::errors;

/// A buffer exported by a Python object, released on drop (with the GIL
/// held: it is only ever dropped where the caller holds it).
struct View {
    raw: ffi::Py_buffer,
    held: bool,
}

impl Drop for View {
    fn drop(&mut self) {
        if self.held {
            // SAFETY: `raw` was filled by a successful PyObject_GetBuffer and
            // not released yet; the GIL is held (see the type's doc).
            unsafe { ffi::PyBuffer_Release(&mut self.raw) };
        }
    }
}

/// Exports `obj`'s buffer (writable if asked), checks that it is
/// C-contiguous, and runs `f` over its address and length.
#[inline(always)]
fn with_view<R>(
    obj: &Bound<'_, PyAny>,
    what: &str,
    writable: bool,
    f: impl FnOnce(*mut u8, usize) -> R,
) -> PyResult<R> {
    let mut view = View { raw: ffi::Py_buffer::new(), held: false };
    // PyBUF_STRIDES so that a non-contiguous exporter (a numpy slice) hands
    // its layout over and we can name the problem, instead of refusing with
    // its own message.
    let flags = if writable { ffi::PyBUF_STRIDES | ffi::PyBUF_WRITABLE } else { ffi::PyBUF_STRIDES };
    // SAFETY: obj is a live object (we hold a Bound, so the GIL too);
    // view.raw is a valid, writable Py_buffer that does not move until
    // released by View's Drop in this frame.
    if unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), &mut view.raw, flags) } != 0 {
        return Err(export_failed(obj, what, writable));
    }
    view.held = true;
    // SAFETY: view.raw was filled by PyObject_GetBuffer.
    if unsafe { ffi::PyBuffer_IsContiguous(&view.raw, b'C' as c_char) } == 0 {
        return Err(not_contiguous(obj, what, &view.raw));
    }
    let len = usize::try_from(view.raw.len).unwrap_or(0);
    Ok(f(view.raw.buf.cast::<u8>(), len))
}

/// Runs `f` over the bytes of `obj`, read in place.
///
/// The slice is valid for the duration of `f` only; `f` may release the GIL
/// (the export keeps the memory alive and stops resizable exporters such as
/// bytearray from resizing).
#[inline(always)]
pub fn with_bytes<R>(obj: &Bound<'_, PyAny>, what: &str, f: impl FnOnce(&[u8]) -> R) -> PyResult<R> {
    // `bytes`, the common input, without the buffer protocol (an export,
    // a contiguity check and a release: a few ns of a ~100 ns call). A bytes
    // object is immutable and `obj` keeps it alive for the call.
    // SAFETY: obj is a live object and the GIL is held (we hold a Bound).
    if unsafe { ffi::PyBytes_CheckExact(obj.as_ptr()) } != 0 {
        // SAFETY: obj is exactly a bytes object: its data pointer and size
        // stay valid and unchanged while it lives, and these cannot fail.
        let (ptr, len) = unsafe { (ffi::PyBytes_AsString(obj.as_ptr()), ffi::PyBytes_Size(obj.as_ptr())) };
        let len = usize::try_from(len).unwrap_or(0);
        let bytes = if ptr.is_null() || len == 0 {
            &[][..]
        } else {
            // SAFETY: as above; `len` bytes at `ptr`, valid during `f`.
            unsafe { std::slice::from_raw_parts(ptr.cast_const().cast::<u8>(), len) }
        };
        return Ok(f(bytes));
    }
    with_view(obj, what, false, |ptr, len| {
        let bytes = if len == 0 {
            &[][..]
        } else {
            // SAFETY: the exporter guarantees `len` readable, C-contiguous
            // bytes at `ptr` until the view is released (after `f`).
            unsafe { std::slice::from_raw_parts(ptr.cast_const(), len) }
        };
        f(bytes)
    })
}

/// Runs `f` over the writable bytes of `obj`, in place.
#[inline(always)]
pub fn with_bytes_mut<R>(obj: &Bound<'_, PyAny>, what: &str, f: impl FnOnce(&mut [u8]) -> R) -> PyResult<R> {
    with_view(obj, what, true, |ptr, len| {
        let bytes = if len == 0 {
            &mut [][..]
        } else {
            // SAFETY: as in with_bytes; the exporter granted a writable view.
            unsafe { std::slice::from_raw_parts_mut(ptr, len) }
        };
        f(bytes)
    })
}

/// A copy of `obj`'s bytes (for configuration, not for calls).
pub fn to_vec(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u8>> {
    with_bytes(obj, what, <[u8]>::to_vec)
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    let ty = obj.get_type();
    let name = ty.name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
    match ty.module() {
        Ok(m) if m != "builtins" => format!("{m}.{name}"),
        _ => name,
    }
}

#[cold]
fn export_failed(obj: &Bound<'_, PyAny>, what: &str, writable: bool) -> PyErr {
    let py = obj.py();
    let original = PyErr::take(py);
    // SAFETY: obj is live and the GIL is held.
    let has_buffer = unsafe { ffi::PyObject_CheckBuffer(obj.as_ptr()) } != 0;
    let e = if !has_buffer {
        PyTypeError::new_err(format!(
            "{what}: expected a bytes-like object (bytes, bytearray, memoryview, array.array, numpy array, mmap, ...), found {}",
            type_name(obj)
        ))
    } else if writable {
        PyTypeError::new_err(format!(
            "{what}: expected a writable bytes-like object (bytearray, numpy array, writable memoryview, ...), found a read-only {}",
            type_name(obj)
        ))
    } else {
        match original {
            Some(e) => return e,
            None => PyTypeError::new_err(format!("{what}: {} refused to export its buffer", type_name(obj))),
        }
    };
    e.set_cause(py, original);
    e
}

#[cold]
fn not_contiguous(obj: &Bound<'_, PyAny>, what: &str, raw: &ffi::Py_buffer) -> PyErr {
    let py = obj.py();
    let ndim = usize::try_from(raw.ndim).unwrap_or(0);
    let dims = |p: *const ffi::Py_ssize_t| -> String {
        if p.is_null() || ndim == 0 {
            return "?".into();
        }
        // SAFETY: the exporter filled `ndim` entries (PyBUF_STRIDES asked for both).
        let v = unsafe { std::slice::from_raw_parts(p, ndim) };
        PyTuple::new(py, v).map(|t| t.to_string()).unwrap_or_else(|_| "?".into())
    };
    errors::invalid_argument(
        py,
        format!(
            "{what}: expected a C-contiguous buffer, found a non-contiguous {} (ndim {ndim}, shape {}, strides {}); \
             pass a contiguous copy such as numpy.ascontiguousarray(x) or bytes(x)",
            type_name(obj),
            dims(raw.shape),
            dims(raw.strides)
        ),
    )
}
