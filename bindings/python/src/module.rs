//! `hotmod.Module` (a loaded module and what it declares) and
//! `hotmod.Method` (a resolved method handle: the fast call path).
//!
//! Calls read the input buffer in place, run the plugin under the GIL
//! policy (`gil`), and return a zero-copy [`Output`]. Calling a handle,
//! `handle(data)`, takes the vectorcall protocol (see [`vectorcall`]).

use std::cell::RefCell;
use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use hotmod_core::MethodHandle;
use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple, PyType};

use crate::buffer;
use crate::errors::{self, guarded};
use crate::gil::{self, Policy, Run};
use crate::info::{DependencyInfo, ElfFacts, MethodInfo};
use crate::output::Output;

/// Runs `call` over `data` read in place, under the GIL policy `gil` and a
/// panic boundary; the output becomes an [`Output`]. The call path of
/// `Method.__call__`/`call`, `Module.call` and `Runtime.call`.
#[inline(always)]
pub fn call_to_output(
    py: Python<'_>,
    gil: &impl Run,
    data: &Bound<'_, PyAny>,
    what: &str,
    call: impl FnOnce(&[u8]) -> Result<hotmod_core::Output, hotmod_core::Error> + Send,
) -> PyResult<Output> {
    let r = buffer::with_bytes(data, "input", |input| gil.run(py, || guarded(what, || call(input))))?;
    r.map(Output::new).map_err(|e| errors::to_py(py, e))
}

/// Calls `handle` with `data` read in place, under the GIL policy `gil`.
#[inline(always)]
fn call_handle(
    py: Python<'_>,
    gil: &gil::State,
    handle: &MethodHandle,
    data: &Bound<'_, PyAny>,
    offer: Option<usize>,
    what: &str,
) -> PyResult<Output> {
    call_to_output(py, gil, data, what, |input| match offer {
        None => handle.call(input),
        Some(n) => handle.call_with_offer(input, n),
    })
}

/// Calls with the output written into `out` (a writable buffer), in place.
pub fn call_into_buffer(
    py: Python<'_>,
    gil: &impl Run,
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
            gil.run(py, || guarded(what, || call(input, dst))).map_err(|e| errors::to_py(py, e))
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
    gil: gil::Config,
}

impl Module {
    /// Wraps a core module of a runtime with the GIL settings `gil`.
    pub fn new(inner: hotmod_core::Module, gil: gil::Config) -> Module {
        Module { inner, gil }
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

    /// What the loader read from the file's ELF headers before mapping it
    /// (machine, class, NODELETE, TLS, unique symbols, Go runtime,
    /// constructors).
    #[getter]
    fn elf(&self) -> ElfFacts {
        ElfFacts::from(&self.inner.info().elf)
    }

    /// Whether this version stays mapped after it is replaced or unloaded:
    /// it did not declare itself safe to unload, or its ELF facts say it
    /// cannot really be unmapped (`elf.unmap_blockers`).
    #[getter]
    fn stays_mapped(&self) -> bool {
        self.inner.info().stays_mapped
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
    /// for repeated calls). `gil` ("auto", "release", "hold") overrides the
    /// runtime's GIL policy for this handle.
    #[pyo3(signature = (name, *, gil = None))]
    fn method<'py>(&self, py: Python<'py>, name: &str, gil: Option<&str>) -> PyResult<Bound<'py, PyAny>> {
        let policy = gil.map(|g| Policy::parse(py, "Module.method(gil=...)", g)).transpose()?;
        let inner = &self.inner;
        let handle = errors::detached(py, "Module.method", || inner.method(name))?;
        new_method(py, Method::new(handle, gil::State::new(self.gil, policy)))
    }

    /// Calls method `name` of the active version with `data` (any C-contiguous
    /// bytes-like object, read in place); returns its `Output`. The GIL is
    /// held under the runtime's "hold" policy, released otherwise.
    fn call(&self, py: Python<'_>, name: &str, data: &Bound<'_, PyAny>) -> PyResult<Output> {
        let inner = &self.inner;
        call_to_output(py, &self.gil, data, "Module.call", |input| inner.call(name, input))
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
/// Handles may be shared between threads. `gil` is the handle's GIL policy
/// ("auto", "release" or "hold"; see `Runtime`).
///
/// (This class holds the handle; the objects Python sees are of its
/// subclass `hotmod.Method`, which adds the vectorcall entry point.)
#[pyclass(module = "hotmod", name = "_MethodBase", frozen, subclass)]
pub struct Method {
    handle: MethodHandle,
    gil: gil::State,
}

thread_local! {
    /// The `Method` that [`new_method`] hands to `Method.__new__`.
    static PENDING: RefCell<Option<Method>> = const { RefCell::new(None) };
}

impl Method {
    /// Wraps a core handle.
    pub fn new(handle: MethodHandle, gil: gil::State) -> Method {
        Method { handle, gil }
    }

    /// The core handle.
    pub fn handle(&self) -> &MethodHandle {
        &self.handle
    }
}

#[pymethods]
impl Method {
    /// Only [`new_method`] creates handles (through this, so that pyo3 lays
    /// out the subclass's instance); from Python it raises `TypeError`.
    #[new]
    fn py_new() -> PyResult<Method> {
        PENDING.with(|p| p.borrow_mut().take()).ok_or_else(|| {
            PyTypeError::new_err(
                "hotmod.Method: expected a handle resolved by Runtime.method(module, name) or Module.method(name), \
                 found a direct construction",
            )
        })
    }

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

    /// The handle's GIL policy: "auto", "release" or "hold". Assign one to
    /// change it, or None to go back to the runtime's.
    #[getter]
    fn get_gil(&self) -> &'static str {
        self.gil.policy().name()
    }

    #[setter]
    fn set_gil(&self, py: Python<'_>, value: Option<&str>) -> PyResult<()> {
        let policy = value.map(|v| Policy::parse(py, "Method.gil", v)).transpose()?;
        self.gil.set_policy(policy);
        Ok(())
    }

    /// Whether the next call releases the GIL (under "auto": whether the
    /// mean latency measured so far is over the runtime's threshold).
    #[getter]
    fn releases_gil(&self) -> bool {
        self.gil.releases()
    }

    /// Mean latency of the calls this handle timed, in seconds (None before
    /// any); only "auto" handles time their calls.
    #[getter]
    fn mean_latency(&self) -> Option<f64> {
        self.gil.mean_ns().map(|ns| ns as f64 * 1e-9)
    }

    /// Calls the method with `data` (any C-contiguous bytes-like object,
    /// read in place, never copied); returns its `Output`. The GIL is held
    /// or released as the handle's policy says.
    fn __call__(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Output> {
        call_handle(py, &self.gil, &self.handle, data, None, "Method.__call__")
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
        call_handle(py, &self.gil, &self.handle, data, offer, "Method.call")
    }

    /// Calls the method with its output written into `out` (a writable,
    /// C-contiguous bytes-like object such as a bytearray or numpy array);
    /// returns the number of bytes written. Raises `OutputTooLargeError` if
    /// the output does not fit.
    fn call_into(&self, py: Python<'_>, data: &Bound<'_, PyAny>, out: &Bound<'_, PyAny>) -> PyResult<usize> {
        let handle = &self.handle;
        call_into_buffer(py, &self.gil, data, out, "Method.call_into", |input, dst| handle.call_into(input, dst))
    }

    fn __repr__(&self) -> String {
        format!("<hotmod.Method {}.{}>", self.handle.module_name(), self.handle.method_name())
    }
}

/// `Py_TPFLAGS_HAVE_VECTORCALL` (in the limited API from 3.12; the flag and
/// its meaning are the same since 3.8).
const HAVE_VECTORCALL: std::ffi::c_ulong = 1 << 11;
/// `Py_TPFLAGS_IMMUTABLETYPE` (3.10).
const IMMUTABLETYPE: std::ffi::c_ulong = 1 << 8;
/// `Py_TPFLAGS_DISALLOW_INSTANTIATION` (3.10).
const DISALLOW_INSTANTIATION: std::ffi::c_ulong = 1 << 7;
/// `PY_VECTORCALL_ARGUMENTS_OFFSET`: a flag in `nargsf`, not a count.
const ARGUMENTS_OFFSET: usize = 1 << (usize::BITS - 1);

/// The subclass `hotmod.Method` and where its instances keep their
/// vectorcall function.
struct MethodType {
    ty: Py<PyType>,
    /// Offset of the `vectorcallfunc` slot in an instance.
    offset: usize,
    /// The base class's `tp_new` (pyo3's, which calls [`Method::py_new`]).
    base_new: ffi::newfunc,
    /// The base class's `tp_call` (pyo3's `__call__`), for calls with
    /// keywords or a wrong number of arguments.
    base_call: ffi::ternaryfunc,
}

static METHOD_TYPE: OnceLock<MethodType> = OnceLock::new();

/// Creates `hotmod.Method`: a heap subclass of the pyo3 class [`Method`]
/// with one more pointer per instance, the vectorcall function, so that
/// `handle(data)` is a vectorcall (no argument tuple, no keyword parsing)
/// like `handle.call(data)` already is. pyo3 offers no vectorcall slot for
/// its classes; `PyType_FromSpecWithBases` with `__vectorcalloffset__` is
/// the stable-ABI way to have one. Called once, from the module's init.
pub fn method_type(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
    if let Some(t) = METHOD_TYPE.get() {
        return Ok(t.ty.bind(py).clone());
    }
    let base = py.get_type::<Method>();
    let base_size: usize = base.getattr("__basicsize__")?.extract()?;
    let align = std::mem::align_of::<ffi::vectorcallfunc>();
    let offset = base_size.div_ceil(align) * align;
    let basicsize = offset + std::mem::size_of::<ffi::vectorcallfunc>();
    let base_ptr = base.as_type_ptr();
    // SAFETY: base is a live type object; the slots asked for are set on
    // every pyo3 class with #[new] and __call__.
    let (new_slot, call_slot) =
        unsafe { (ffi::PyType_GetSlot(base_ptr, ffi::Py_tp_new), ffi::PyType_GetSlot(base_ptr, ffi::Py_tp_call)) };
    if new_slot.is_null() || call_slot.is_null() {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(
            "hotmod: expected the method base class to have tp_new and tp_call, found one missing",
        ));
    }
    // SAFETY: the slots hold functions of these types (CPython's contract).
    let (base_new, base_call) = unsafe {
        (
            std::mem::transmute::<*mut c_void, ffi::newfunc>(new_slot),
            std::mem::transmute::<*mut c_void, ffi::ternaryfunc>(call_slot),
        )
    };
    // CPython keeps pointers into these (the members and the doc are copied
    // at creation, but a leak of a few bytes once per process is simplest).
    let members: &'static mut [ffi::PyMemberDef] = Box::leak(Box::new([
        ffi::PyMemberDef {
            name: c"__vectorcalloffset__".as_ptr(),
            type_code: ffi::Py_T_PYSSIZET,
            offset: offset as ffi::Py_ssize_t,
            flags: ffi::Py_READONLY,
            doc: std::ptr::null(),
        },
        // SAFETY: an all-zero PyMemberDef is the terminator.
        unsafe { std::mem::zeroed() },
    ]));
    let slots: &'static mut [ffi::PyType_Slot] = Box::leak(Box::new([
        ffi::PyType_Slot { slot: ffi::Py_tp_members, pfunc: members.as_mut_ptr().cast() },
        ffi::PyType_Slot { slot: ffi::Py_tp_call, pfunc: call_slot },
        ffi::PyType_Slot {
            slot: ffi::Py_tp_doc,
            pfunc: c"A resolved method handle: call it with a bytes-like object to call the method (vectorcall); \
                     follows upgrades of its module; raises StaleHandleError after the module is unloaded."
                .as_ptr()
                .cast_mut()
                .cast(),
        },
        ffi::PyType_Slot { slot: 0, pfunc: std::ptr::null_mut() },
    ]));
    let spec: &'static mut ffi::PyType_Spec = Box::leak(Box::new(ffi::PyType_Spec {
        name: c"hotmod.Method".as_ptr(),
        basicsize: c_int::try_from(basicsize).map_err(|_| PyTypeError::new_err("hotmod: Method too large"))?,
        itemsize: 0,
        flags: (ffi::Py_TPFLAGS_DEFAULT | HAVE_VECTORCALL | IMMUTABLETYPE | DISALLOW_INSTANTIATION) as _,
        slots: slots.as_mut_ptr(),
    }));
    let bases = PyTuple::new(py, [base.as_any()])?;
    // SAFETY: spec, slots and members are valid and 'static; bases is a
    // tuple of one type.
    let ty = unsafe { ffi::PyType_FromSpecWithBases(spec, bases.as_ptr()) };
    if ty.is_null() {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: a new reference to a type object.
    let ty = unsafe { Bound::from_owned_ptr(py, ty) }.cast_into::<PyType>()?;
    let _ = METHOD_TYPE.set(MethodType { ty: ty.clone().unbind(), offset, base_new, base_call });
    Ok(ty)
}

/// A new `hotmod.Method` instance holding `m`.
pub fn new_method(py: Python<'_>, m: Method) -> PyResult<Bound<'_, PyAny>> {
    let t = METHOD_TYPE.get().ok_or_else(|| PyTypeError::new_err("hotmod: the Method type is not initialised"))?;
    PENDING.with(|p| *p.borrow_mut() = Some(m));
    let args = PyTuple::empty(py);
    // SAFETY: base_new is pyo3's tp_new of the base class, called with a
    // subtype of it and an empty argument tuple, as CPython would.
    let obj = unsafe { (t.base_new)(t.ty.bind(py).as_type_ptr(), args.as_ptr(), std::ptr::null_mut()) };
    PENDING.with(|p| p.borrow_mut().take());
    if obj.is_null() {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: obj is a new instance of the subclass, whose basicsize leaves
    // room for the function pointer at `offset`.
    unsafe {
        obj.cast::<u8>().add(t.offset).cast::<Option<ffi::vectorcallfunc>>().write(Some(vectorcall));
        Ok(Bound::from_owned_ptr(py, obj))
    }
}

/// `handle(data)`: the vectorcall entry point of `hotmod.Method`.
///
/// One positional argument takes the fast path; a call with keywords goes
/// to the pyo3 `__call__`, which parses them; another count is a TypeError.
///
/// # Safety
/// Called by CPython, with the GIL held, for an instance of
/// `hotmod.Method`, `args` holding `nargsf`'s count of arguments followed by
/// `kwnames`'s values.
unsafe extern "C" fn vectorcall(
    callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls with the thread attached.
    let py = unsafe { Python::assume_attached() };
    let nargs = nargsf & !ARGUMENTS_OFFSET;
    let r = catch_unwind(AssertUnwindSafe(|| -> PyResult<*mut ffi::PyObject> {
        if nargs != 1 || !kwnames.is_null() {
            // SAFETY: as for this function.
            return unsafe { slow_call(py, callable, args, nargs, kwnames) };
        }
        // SAFETY: callable is a live instance of a subclass of Method (only
        // that class has this function in its vectorcall slot); args[0] is
        // a live object borrowed for the call.
        let (this, data) = unsafe {
            (pyo3::Borrowed::from_ptr(py, callable).cast_unchecked::<Method>(), pyo3::Borrowed::from_ptr(py, *args))
        };
        let m = this.get();
        let out = call_handle(py, &m.gil, &m.handle, &data, None, "Method.__call__")?;
        Ok(Bound::new(py, out)?.into_ptr())
    }));
    match r {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            e.restore(py);
            std::ptr::null_mut()
        }
        Err(payload) => {
            let msg = format!("hotmod panicked in Method.__call__: {}", errors::panic_message(&*payload));
            pyo3::panic::PanicException::new_err(msg).restore(py);
            std::ptr::null_mut()
        }
    }
}

/// A call with keywords (through `tp_call`), or a count other than one.
///
/// # Safety
/// As for [`vectorcall`].
#[cold]
unsafe fn slow_call(
    py: Python<'_>,
    callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: usize,
    kwnames: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    let t = METHOD_TYPE.get().ok_or_else(|| PyTypeError::new_err("hotmod: the Method type is not initialised"))?;
    let kw = if kwnames.is_null() {
        // SAFETY: callable is a live object (CPython's contract).
        let this = unsafe { pyo3::Borrowed::from_ptr(py, callable) }.cast::<Method>()?;
        let h = &this.get().handle;
        return Err(PyTypeError::new_err(format!(
            "hotmod.Method {}.{}: expected one argument (the input, a bytes-like object), found {nargs}",
            h.module_name(),
            h.method_name()
        )));
    } else {
        // SAFETY: kwnames is a live tuple (CPython's contract).
        Some(unsafe { pyo3::Borrowed::from_ptr(py, kwnames) }.cast::<PyTuple>()?.to_owned())
    };
    let nkw = kw.as_ref().map_or(0, |k| k.len());
    // SAFETY: args holds nargs + nkw live objects.
    let all = unsafe { std::slice::from_raw_parts(args, nargs + nkw) };
    // SAFETY: each is a live object borrowed for the call.
    let borrowed = |p: &*mut ffi::PyObject| unsafe { pyo3::Borrowed::from_ptr(py, *p) }.to_owned();
    let tuple = PyTuple::new(py, all[..nargs].iter().map(borrowed))?;
    let dict = PyDict::new(py);
    if let Some(k) = &kw {
        for (name, value) in k.iter().zip(all[nargs..].iter().map(borrowed)) {
            dict.set_item(name, value)?;
        }
    }
    let dict_ptr = if nkw == 0 { std::ptr::null_mut() } else { dict.as_ptr() };
    // SAFETY: base_call is pyo3's tp_call of the base class; callable is an
    // instance of it.
    let r = unsafe { (t.base_call)(callable, tuple.as_ptr(), dict_ptr) };
    if r.is_null() {
        Err(PyErr::fetch(py))
    } else {
        Ok(r)
    }
}
