//! `hotmod.Module` (a loaded module and what it declares) and
//! `hotmod.Method` (a resolved method handle: the fast call path).
//!
//! Calls read the input buffer in place, release the GIL for the plugin's
//! run, and return a zero-copy [`Output`].

use hotmod_core::MethodHandle;
use pyo3::prelude::*;

use crate::buffer;
use crate::errors::{self, guarded};
use crate::info::{DependencyInfo, MethodInfo};
use crate::output::Output;

/// Runs `call` over `data` read in place, with the GIL released and a panic
/// boundary; the output becomes an [`Output`]. The call path of
/// `Method.__call__`/`call`, `Module.call` and `Runtime.call`.
#[inline(always)]
pub fn call_to_output(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    what: &str,
    call: impl FnOnce(&[u8]) -> Result<hotmod_core::Output, hotmod_core::Error> + Send,
) -> PyResult<Output> {
    let r = buffer::with_bytes(data, "input", |input| py.detach(|| guarded(what, || call(input))))?;
    r.map(Output::new).map_err(|e| errors::to_py(py, e))
}

/// Calls `handle` with `data` read in place, the GIL released.
#[inline(always)]
fn call_handle(
    py: Python<'_>,
    handle: &MethodHandle,
    data: &Bound<'_, PyAny>,
    offer: Option<usize>,
    what: &str,
) -> PyResult<Output> {
    call_to_output(py, data, what, |input| match offer {
        None => handle.call(input),
        Some(n) => handle.call_with_offer(input, n),
    })
}

/// Calls with the output written into `out` (a writable buffer), in place.
pub fn call_into_buffer(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
    what: &str,
    call: impl FnOnce(&[u8], &mut [u8]) -> Result<usize, hotmod_core::Error> + Send,
) -> PyResult<usize> {
    let r = buffer::with_bytes(data, "input", |input| {
        buffer::with_bytes_mut(out, "out", |dst| {
            let (a, b) = (input.as_ptr_range(), dst.as_ptr_range());
            if !input.is_empty() && !dst.is_empty() && a.start < b.end && b.start < a.end {
                return Err(errors::invalid_argument(
                    py,
                    format!(
                        "{what}: expected separate input and output buffers, found them overlapping \
                         (input {} bytes at {:p}, out {} bytes at {:p})",
                        input.len(),
                        a.start,
                        dst.len(),
                        b.start
                    ),
                ));
            }
            py.detach(|| guarded(what, || call(input, dst))).map_err(|e| errors::to_py(py, e))
        })
    })??;
    r
}

/// A loaded module.
///
/// Its attributes describe the version that was active when this object
/// was obtained (`Runtime.module(name)` after an upgrade shows the new one);
/// `call` and `method` always reach the active version.
#[pyclass(module = "hotmod", name = "Module", frozen)]
pub struct Module {
    inner: hotmod_core::Module,
}

impl Module {
    /// Wraps a core module.
    pub fn new(inner: hotmod_core::Module) -> Module {
        Module { inner }
    }
}

#[pymethods]
impl Module {
    /// Module name.
    #[getter]
    fn name(&self) -> &str {
        &self.inner.info().name
    }

    /// Semantic version, e.g. "1.0.0".
    #[getter]
    fn version(&self) -> &str {
        &self.inner.info().version
    }

    /// The plugin's description of itself.
    #[getter]
    fn description(&self) -> &str {
        &self.inner.info().description
    }

    /// Absolute path of the file it was loaded from.
    #[getter]
    fn path(&self) -> String {
        self.inner.info().path.display().to_string()
    }

    /// SHA-256 of the bytes that were loaded, 64 lowercase hex digits.
    #[getter]
    fn sha256(&self) -> &str {
        &self.inner.info().sha256
    }

    /// Whether the plugin declared itself safe to unmap when unloaded.
    #[getter]
    fn safe_to_unload(&self) -> bool {
        self.inner.info().safe_to_unload
    }

    /// Plugin ABI minor version it was built against.
    #[getter]
    fn abi_minor(&self) -> u16 {
        self.inner.info().abi_minor
    }

    /// Declared methods, in declaration order.
    #[getter]
    fn methods(&self) -> Vec<MethodInfo> {
        self.inner.info().methods.iter().map(MethodInfo::from).collect()
    }

    /// Declared dependencies.
    #[getter]
    fn dependencies(&self) -> Vec<DependencyInfo> {
        self.inner.info().dependencies.iter().map(DependencyInfo::from).collect()
    }

    /// Whether the module is still loaded.
    #[getter]
    fn is_loaded(&self) -> bool {
        self.inner.is_loaded()
    }

    /// Resolves a method of the active version to a handle (the fast path
    /// for repeated calls).
    fn method(&self, py: Python<'_>, name: &str) -> PyResult<Method> {
        let inner = &self.inner;
        errors::detached(py, "Module.method", || inner.method(name)).map(Method::new)
    }

    /// Calls method `name` of the active version with `data` (any C-contiguous
    /// bytes-like object, read in place); returns its `Output`.
    fn call(&self, py: Python<'_>, name: &str, data: &Bound<'_, PyAny>) -> PyResult<Output> {
        let inner = &self.inner;
        call_to_output(py, data, "Module.call", |input| inner.call(name, input))
    }

    fn __repr__(&self) -> String {
        let i = self.inner.info();
        let state = if self.inner.is_loaded() { "" } else { " (unloaded)" };
        format!("<hotmod.Module {} {} from {:?}{state}>", i.name, i.version, i.path.display().to_string())
    }
}

/// A resolved method: call it again and again at function-pointer speed.
///
/// A handle follows upgrades of its module (it always reaches the active
/// version). After the module is unloaded, calls raise `StaleHandleError`;
/// after a forced upgrade that changed its signature, `SignatureChangedError`.
/// Handles may be shared between threads.
#[pyclass(module = "hotmod", name = "Method", frozen)]
pub struct Method {
    handle: MethodHandle,
}

impl Method {
    /// Wraps a core handle.
    pub fn new(handle: MethodHandle) -> Method {
        Method { handle }
    }

    /// The core handle.
    pub fn handle(&self) -> &MethodHandle {
        &self.handle
    }
}

#[pymethods]
impl Method {
    /// Name of the module the method belongs to.
    #[getter]
    fn module(&self) -> &str {
        self.handle.module_name()
    }

    /// Method name.
    #[getter]
    fn name(&self) -> &str {
        self.handle.method_name()
    }

    /// Signature hash this handle was resolved with.
    #[getter]
    fn signature_hash(&self) -> u64 {
        self.handle.signature_hash()
    }

    /// Calls the method with `data` (any C-contiguous bytes-like object,
    /// read in place, never copied); returns its `Output`. The GIL is
    /// released while the plugin runs.
    fn __call__(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Output> {
        call_handle(py, &self.handle, data, None, "Method.__call__")
    }

    /// Same as calling the handle; `offer` sets how many bytes of output
    /// space the runtime offers the plugin first (default 256; a method
    /// needing more asks for it and is called again).
    #[pyo3(signature = (data, *, offer = None))]
    fn call(&self, py: Python<'_>, data: &Bound<'_, PyAny>, offer: Option<i64>) -> PyResult<Output> {
        let offer = match offer.map(usize::try_from) {
            None => None,
            Some(Ok(n)) => Some(n),
            Some(Err(_)) => {
                let msg =
                    format!("Method.call(offer=...): expected a number of bytes >= 0, found {}", offer.unwrap_or(0));
                return Err(errors::invalid_argument(py, msg));
            }
        };
        call_handle(py, &self.handle, data, offer, "Method.call")
    }

    /// Calls the method with its output written into `out` (a writable,
    /// C-contiguous bytes-like object such as a bytearray or numpy array);
    /// returns the number of bytes written. Raises `OutputTooLargeError` if
    /// the output does not fit.
    fn call_into(&self, py: Python<'_>, data: &Bound<'_, PyAny>, out: &Bound<'_, PyAny>) -> PyResult<usize> {
        let handle = &self.handle;
        call_into_buffer(py, data, out, "Method.call_into", |input, dst| handle.call_into(input, dst))
    }

    fn __repr__(&self) -> String {
        format!("<hotmod.Method {}.{}>", self.handle.module_name(), self.handle.method_name())
    }
}
