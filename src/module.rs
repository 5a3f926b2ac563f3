//! Module handles and introspection.

use std::ffi::{c_char, CString};

use hotmod_core::{Module, Status};

use crate::call::hotmod_method;
use crate::ffi::{cstring, nth, out_arg, path_cstring, str_arg, write_out, BoxHandle};

/// A loaded module. Calls through it reach the module's active version;
/// introspection describes the version that was active when the handle was
/// obtained (get a new handle after an upgrade to see the new version).
/// Strings returned from it stay valid until the handle is freed.
/// Thread-safe for concurrent reads. Free with `hotmod_module_free`.
pub struct hotmod_module {
    _private: [u8; 0],
}

/// A module plus the C strings handed out for it.
pub(crate) struct ModuleBox {
    pub module: Module,
    name: CString,
    version: CString,
    description: CString,
    path: CString,
    sha256: CString,
    methods: Vec<(CString, CString)>,
    dependencies: Vec<(CString, CString)>,
}

impl ModuleBox {
    pub fn new(module: Module) -> ModuleBox {
        let i = module.info();
        ModuleBox {
            name: cstring(&i.name),
            version: cstring(&i.version),
            description: cstring(&i.description),
            path: path_cstring(&i.path),
            sha256: cstring(&i.sha256),
            methods: i.methods.iter().map(|m| (cstring(&m.name), cstring(&m.signature))).collect(),
            dependencies: i.dependencies.iter().map(|d| (cstring(&d.name), cstring(&d.requirement))).collect(),
            module,
        }
    }
}

impl BoxHandle for hotmod_module {
    type Inner = ModuleBox;
}

/// Frees a module handle (the module stays loaded). NULL is a no-op.
///
/// # Safety
/// `m` must be NULL or a handle from this library, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn hotmod_module_free(m: *mut hotmod_module) {
    ffi_value!((), {
        // SAFETY: per the contract.
        unsafe { hotmod_module::free(m) }
    })
}

/// The body of the getters with one out-parameter: writes `pick` of the
/// module to `*out` (`out_what` names it in the NULL error).
fn module_value<T>(
    m: *const hotmod_module,
    out: *mut T,
    out_what: &str,
    pick: impl FnOnce(&ModuleBox) -> T,
) -> hotmod_core::Result<()> {
    // SAFETY: callers pass their contract on.
    let b = unsafe { hotmod_module::get(m, "m (hotmod_module *)")? };
    out_arg(out, out_what)?;
    // SAFETY: checked non-NULL; strings live as long as the handle.
    unsafe { write_out(out, pick(b)) };
    Ok(())
}

/// [`module_value`] for one of the module's strings.
fn module_string(
    m: *const hotmod_module,
    out: *mut *const c_char,
    pick: fn(&ModuleBox) -> &CString,
) -> hotmod_core::Result<()> {
    module_value(m, out, "out (const char **)", |b| pick(b).as_ptr())
}

/// The module's name (valid until the handle is freed).
///
/// # Safety
/// `m` a module handle; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn hotmod_module_name(m: *const hotmod_module, out: *mut *const c_char) -> Status {
    ffi_status!({ module_string(m, out, |b| &b.name) })
}

/// The module's semantic version (valid until the handle is freed).
///
/// # Safety
/// `m` a module handle; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn hotmod_module_version(m: *const hotmod_module, out: *mut *const c_char) -> Status {
    ffi_status!({ module_string(m, out, |b| &b.version) })
}

/// The module's description, possibly empty (valid until the handle is freed).
///
/// # Safety
/// `m` a module handle; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn hotmod_module_description(m: *const hotmod_module, out: *mut *const c_char) -> Status {
    ffi_status!({ module_string(m, out, |b| &b.description) })
}

/// Absolute path of the file the module was loaded from: its bytes as the
/// operating system gave them (on Unix not necessarily UTF-8).
///
/// # Safety
/// `m` a module handle; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn hotmod_module_path(m: *const hotmod_module, out: *mut *const c_char) -> Status {
    ffi_status!({ module_string(m, out, |b| &b.path) })
}

/// SHA-256 of the bytes that were loaded, as 64 lowercase hex digits.
///
/// # Safety
/// `m` a module handle; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn hotmod_module_sha256(m: *const hotmod_module, out: *mut *const c_char) -> Status {
    ffi_status!({ module_string(m, out, |b| &b.sha256) })
}

/// Number of methods the module declares.
///
/// # Safety
/// `m` a module handle; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn hotmod_module_method_count(m: *const hotmod_module, out: *mut usize) -> Status {
    ffi_status!({ module_value(m, out, "out (size_t *)", |b| b.methods.len()) })
}

/// Name and signature string of the `index`-th method, in declaration
/// order (valid until the handle is freed).
///
/// # Safety
/// `m` a module handle; `name` and `signature` writable.
#[no_mangle]
pub unsafe extern "C" fn hotmod_module_method_info(
    m: *const hotmod_module,
    index: usize,
    name: *mut *const c_char,
    signature: *mut *const c_char,
) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let b = unsafe { hotmod_module::get(m, "m (hotmod_module *)")? };
        out_arg(name, "name (const char **)")?;
        out_arg(signature, "signature (const char **)")?;
        let (n, s) = nth(&b.methods, index, "method")?;
        // SAFETY: checked non-NULL.
        unsafe {
            write_out(name, n.as_ptr());
            write_out(signature, s.as_ptr());
        }
        Ok(())
    })
}

/// Number of dependencies the module declares.
///
/// # Safety
/// `m` a module handle; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn hotmod_module_dependency_count(m: *const hotmod_module, out: *mut usize) -> Status {
    ffi_status!({ module_value(m, out, "out (size_t *)", |b| b.dependencies.len()) })
}

/// Name and semver range of the `index`-th dependency (valid until the
/// handle is freed).
///
/// # Safety
/// `m` a module handle; `name` and `requirement` writable.
#[no_mangle]
pub unsafe extern "C" fn hotmod_module_dependency_info(
    m: *const hotmod_module,
    index: usize,
    name: *mut *const c_char,
    requirement: *mut *const c_char,
) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let b = unsafe { hotmod_module::get(m, "m (hotmod_module *)")? };
        out_arg(name, "name (const char **)")?;
        out_arg(requirement, "requirement (const char **)")?;
        let (n, r) = nth(&b.dependencies, index, "dependency")?;
        // SAFETY: checked non-NULL.
        unsafe {
            write_out(name, n.as_ptr());
            write_out(requirement, r.as_ptr());
        }
        Ok(())
    })
}

/// Resolves method `name` (UTF-8) of the module's active version to a handle
/// (`*out` owns it). `HOTMOD_STATUS_METHOD_NOT_FOUND` if it has none.
///
/// # Safety
/// `m` a module handle; `name` NUL-terminated; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn hotmod_module_resolve(
    m: *const hotmod_module,
    name: *const c_char,
    out: *mut *mut hotmod_method,
) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let b = unsafe { hotmod_module::get(m, "m (hotmod_module *)")? };
        // SAFETY: per the contract.
        let name = unsafe { str_arg(name, "name")? };
        out_arg(out, "out (hotmod_method **)")?;
        let h = b.module.method(name)?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(out, hotmod_method::into_c(h)) };
        Ok(())
    })
}
