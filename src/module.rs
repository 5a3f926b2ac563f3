//! Module handles and introspection.

use std::ffi::{c_char, CString};
use std::mem::{offset_of, size_of};
use std::ptr::{addr_of, addr_of_mut};

use hotmod_core::{Error, Module, Status};

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
    elf: hotmod_elf_info,
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
            elf: hotmod_elf_info::of(i),
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

/// `hotmod_elf_info.flags`: the library is marked `DF_1_NODELETE` (the
/// dynamic loader never unmaps it).
pub const HOTMOD_ELF_NODELETE: u32 = 1;
/// `hotmod_elf_info.flags`: it has a `PT_TLS` segment (thread-local
/// variables).
pub const HOTMOD_ELF_TLS: u32 = 1 << 1;
/// `hotmod_elf_info.flags`: its thread-local storage uses the static model
/// (`DF_STATIC_TLS`), whose space cannot be given back once it is loaded.
pub const HOTMOD_ELF_STATIC_TLS: u32 = 1 << 2;
/// `hotmod_elf_info.flags`: it exports `STB_GNU_UNIQUE` symbols (the
/// dynamic loader then keeps it loaded for the process).
pub const HOTMOD_ELF_GNU_UNIQUE: u32 = 1 << 3;
/// `hotmod_elf_info.flags`: a Go runtime is linked in, which cannot be
/// unloaded.
pub const HOTMOD_ELF_GO_RUNTIME: u32 = 1 << 4;
/// `hotmod_elf_info.flags`: this version will stay mapped after it is
/// replaced or unloaded, because it did not declare itself safe to unload
/// or because of one of the facts above (it then counts towards
/// `hotmod_runtime_kept_mapped`).
pub const HOTMOD_ELF_STAYS_MAPPED: u32 = 1 << 5;

/// What the loader read from a module's ELF headers before mapping it, for
/// `hotmod_module_elf_info` (since 1.1).
///
/// The struct may grow at its end in later versions: set `size` to
/// `sizeof(hotmod_elf_info)` before the call. The library fills only the
/// fields that fit entirely in `size` bytes and sets `size` to the number
/// of bytes it filled, so a caller built against a later header sees which
/// fields an older library left alone.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct hotmod_elf_info {
    /// In: `sizeof(hotmod_elf_info)` as the caller knows it. Out: the bytes
    /// filled.
    pub size: usize,
    /// The ELF header's `e_machine` (62 for x86-64, 183 for AArch64); 0 for
    /// a library that is not ELF (macOS, Windows).
    pub machine: u16,
    /// ELF class: 32 or 64 (0 if not ELF).
    pub elf_class: u8,
    /// `HOTMOD_ELF_*` bits.
    pub flags: u32,
    /// Constructors `dlopen` runs: `DT_INIT` plus the `DT_INIT_ARRAY`
    /// entries.
    pub constructors: usize,
}

impl hotmod_elf_info {
    fn of(i: &hotmod_core::ModuleInfo) -> hotmod_elf_info {
        let e = &i.elf;
        let mut flags = 0;
        for (set, bit) in [
            (e.nodelete, HOTMOD_ELF_NODELETE),
            (e.tls, HOTMOD_ELF_TLS),
            (e.static_tls, HOTMOD_ELF_STATIC_TLS),
            (!e.gnu_unique.is_empty(), HOTMOD_ELF_GNU_UNIQUE),
            (e.go_runtime, HOTMOD_ELF_GO_RUNTIME),
            (i.stays_mapped, HOTMOD_ELF_STAYS_MAPPED),
        ] {
            if set {
                flags |= bit;
            }
        }
        hotmod_elf_info {
            size: size_of::<hotmod_elf_info>(),
            machine: e.e_machine,
            elf_class: e.class,
            flags,
            constructors: e.constructors,
        }
    }
}

/// The module's ELF facts (see `hotmod_elf_info`): `out->size` must be set
/// by the caller, to at least `sizeof(size_t)`
/// (`HOTMOD_STATUS_INVALID_ARGUMENT` otherwise); the fields that fit in it
/// are filled and `out->size` is set to the bytes filled. Describes the
/// version the handle was obtained for. Since 1.1.
///
/// # Safety
/// `m` a module handle; `out` NULL or valid for reading `size_t` and
/// writing `out->size` bytes.
#[no_mangle]
pub unsafe extern "C" fn hotmod_module_elf_info(m: *const hotmod_module, out: *mut hotmod_elf_info) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let b = unsafe { hotmod_module::get(m, "m (hotmod_module *)")? };
        out_arg(out, "out (hotmod_elf_info *)")?;
        // SAFETY: non-NULL; the caller's `size` field is readable.
        let size = unsafe { addr_of!((*out).size).read() };
        let head = size_of::<usize>();
        if size < head {
            return Err(Error::new(
                Status::InvalidArgument,
                format!(
                    "hotmod_module_elf_info: expected out->size set to sizeof(hotmod_elf_info) ({}), found {size}",
                    size_of::<hotmod_elf_info>()
                ),
            ));
        }
        let info = b.elf;
        let mut filled = head;
        // Whether the field at `off` of `len` bytes lies within `size`;
        // fields are in order, so the last that fits ends the filled part.
        let mut fits = |off: usize, len: usize| {
            let ok = off + len <= size;
            if ok {
                filled = off + len;
            }
            ok
        };
        let machine = fits(offset_of!(hotmod_elf_info, machine), size_of::<u16>());
        let class = fits(offset_of!(hotmod_elf_info, elf_class), size_of::<u8>());
        let flags = fits(offset_of!(hotmod_elf_info, flags), size_of::<u32>());
        let constructors = fits(offset_of!(hotmod_elf_info, constructors), size_of::<usize>());
        // SAFETY: out is non-NULL, aligned as the struct, and valid for
        // `size` bytes per the contract; each field written lies within them.
        unsafe {
            if machine {
                addr_of_mut!((*out).machine).write(info.machine);
            }
            if class {
                addr_of_mut!((*out).elf_class).write(info.elf_class);
            }
            if flags {
                addr_of_mut!((*out).flags).write(info.flags);
            }
            if constructors {
                addr_of_mut!((*out).constructors).write(info.constructors);
            }
            addr_of_mut!((*out).size).write(filled);
        }
        Ok(())
    })
}
