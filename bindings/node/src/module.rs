//! `Module` (a loaded module and what it declares) and `Method` (a resolved
//! method handle, the fast path for repeated calls).

use hotmod_core as core;
use napi::bindgen_prelude::*;
use napi::sys;
use napi_derive::napi;

use std::sync::Arc;

use crate::async_call::{self, Target};
use crate::{errors, fast, input};

/// One method as a module declares it.
#[napi(object, object_from_js = false)]
pub struct MethodInfo {
    /// Method name.
    pub name: String,
    /// Declared signature, for example `"bytes -> u32le"`.
    pub signature: String,
    /// Hash of name and signature, 16 lowercase hex digits. A forced
    /// upgrade that changes it makes handles resolved before answer
    /// `Status.SignatureChanged`.
    pub signature_hash: String,
}

/// One dependency as a module declares it.
#[napi(object, object_from_js = false)]
pub struct DependencyInfo {
    /// Name of the module needed.
    pub name: String,
    /// Required version range (semver), for example `"^1.2"`.
    pub requirement: String,
    /// Whether the module works without it.
    pub optional: bool,
}

/// What the loader read from a plugin file's ELF headers before mapping it.
#[napi(object, object_from_js = false)]
pub struct ElfFacts {
    /// The machine the file is built for (`"x86_64"`, `"aarch64"`, ...;
    /// `""` for a file that is not ELF).
    pub machine: String,
    /// ELF class: 32 or 64 (0 if not ELF).
    #[napi(js_name = "class")]
    pub class: u32,
    /// `DF_1_NODELETE`: the dynamic loader never unmaps it.
    pub nodelete: bool,
    /// A `PT_TLS` segment: the library has thread-local variables.
    pub tls: bool,
    /// `DF_STATIC_TLS`: static-model thread-local storage, whose space
    /// cannot be given back once the library is loaded.
    pub static_tls: bool,
    /// Exported `STB_GNU_UNIQUE` symbols (the first few names).
    pub gnu_unique: Vec<String>,
    /// A Go runtime is linked in (Go cannot be unloaded).
    pub go_runtime: bool,
    /// Constructors run when the file is mapped (`DT_INIT` plus the
    /// `DT_INIT_ARRAY` entries).
    pub constructors: u32,
    /// Whether the entry symbol was checked in `.dynsym` before mapping.
    pub entry_checked: bool,
    /// Why the library can never really be unmapped (empty if nothing in
    /// the file prevents it).
    pub unmap_blockers: Vec<String>,
}

fn elf_of(e: &core::ElfFacts) -> ElfFacts {
    ElfFacts {
        machine: e.machine.clone(),
        class: u32::from(e.class),
        nodelete: e.nodelete,
        tls: e.tls,
        static_tls: e.static_tls,
        gnu_unique: e.gnu_unique.clone(),
        go_runtime: e.go_runtime,
        constructors: u32::try_from(e.constructors).unwrap_or(u32::MAX),
        entry_checked: e.entry_checked,
        unmap_blockers: e.unmap_blockers(),
    }
}

/// Everything a module version declares, as a plain object.
#[napi(object, object_from_js = false)]
pub struct ModuleInfo {
    /// Module name.
    pub name: String,
    /// Semantic version.
    pub version: String,
    /// Description.
    pub description: String,
    /// Absolute path of the file it was loaded from.
    pub path: String,
    /// SHA-256 of the bytes that were loaded, 64 lowercase hex digits.
    pub sha256: String,
    /// Whether the plugin declared its code safe to unmap on unload.
    pub safe_to_unload: bool,
    /// What the loader read from the file's ELF headers before mapping it.
    pub elf: ElfFacts,
    /// Whether this version stays mapped after it is replaced or unloaded:
    /// not declared safe to unload, or `elf.unmapBlockers` is not empty.
    pub stays_mapped: bool,
    /// Plugin ABI minor version it was built against.
    pub abi_minor: u32,
    /// Methods, in declaration order.
    pub methods: Vec<MethodInfo>,
    /// Declared dependencies.
    pub dependencies: Vec<DependencyInfo>,
}

pub(crate) fn hash_hex(h: u64) -> String {
    format!("{h:016x}")
}

fn methods_of(info: &core::ModuleInfo) -> Vec<MethodInfo> {
    info.methods
        .iter()
        .map(|m| MethodInfo {
            name: m.name.clone(),
            signature: m.signature.clone(),
            signature_hash: hash_hex(m.signature_hash),
        })
        .collect()
}

fn dependencies_of(info: &core::ModuleInfo) -> Vec<DependencyInfo> {
    info.dependencies
        .iter()
        .map(|d| DependencyInfo { name: d.name.clone(), requirement: d.requirement.clone(), optional: d.optional })
        .collect()
}

/// A loaded module.
///
/// Calls through it reach the module's active version, across upgrades. Its
/// descriptive properties (`version`, `methods`, …) describe the version that
/// was active when this object was obtained: after an upgrade, get a fresh
/// one from `runtime.module(name)`. Obtained from `runtime.load()`,
/// `runtime.upgrade()`, `runtime.module()` or `runtime.modules()`; it cannot
/// be constructed directly.
#[napi]
pub struct Module {
    pub(crate) inner: core::Module,
}

#[napi]
impl Module {
    /// Module name.
    #[napi(getter)]
    pub fn name(&self) -> String {
        self.inner.name().to_owned()
    }

    /// Semantic version.
    #[napi(getter)]
    pub fn version(&self) -> String {
        self.inner.info().version.clone()
    }

    /// Description.
    #[napi(getter)]
    pub fn description(&self) -> String {
        self.inner.info().description.clone()
    }

    /// Absolute path of the file it was loaded from.
    #[napi(getter)]
    pub fn path(&self) -> String {
        self.inner.info().path.display().to_string()
    }

    /// SHA-256 of the bytes that were loaded, 64 lowercase hex digits.
    #[napi(getter)]
    pub fn sha256(&self) -> String {
        self.inner.info().sha256.clone()
    }

    /// Whether the plugin declared its code safe to unmap on unload.
    #[napi(getter)]
    pub fn safe_to_unload(&self) -> bool {
        self.inner.info().safe_to_unload
    }

    /// Whether this version stays mapped after it is replaced or unloaded
    /// (not declared safe to unload, or its ELF facts forbid unmapping).
    #[napi(getter)]
    pub fn stays_mapped(&self) -> bool {
        self.inner.info().stays_mapped
    }

    /// What the loader read from the file's ELF headers before mapping it.
    #[napi(getter)]
    pub fn elf(&self) -> ElfFacts {
        elf_of(&self.inner.info().elf)
    }

    /// Methods, in declaration order.
    #[napi(getter)]
    pub fn methods(&self) -> Vec<MethodInfo> {
        methods_of(self.inner.info())
    }

    /// Declared dependencies.
    #[napi(getter)]
    pub fn dependencies(&self) -> Vec<DependencyInfo> {
        dependencies_of(self.inner.info())
    }

    /// Whether the module is still loaded (false after `runtime.unload`).
    #[napi(getter)]
    pub fn loaded(&self) -> bool {
        self.inner.is_loaded()
    }

    /// Everything the module declares, as a plain object (also what
    /// `JSON.stringify` and `console.log` show).
    #[napi]
    pub fn info(&self) -> ModuleInfo {
        module_info(self.inner.info())
    }

    /// What `index.js` passes to the fast path (internal).
    #[napi(getter, js_name = "__ref", skip_typescript)]
    pub fn external(&self, env: &Env) -> Result<sys::napi_value> {
        // SAFETY: napi-rs calls this on the JavaScript thread of `env`.
        unsafe { fast::external(env.raw(), self.inner.clone()) }
    }

    /// Same as `info()`, so `JSON.stringify(module)` is useful.
    #[napi(js_name = "toJSON")]
    pub fn to_json(&self) -> ModuleInfo {
        self.info()
    }

    /// Resolves a method to a handle (the fast path for repeated calls).
    ///
    /// Throws `Status.MethodNotFound` (the message lists the methods there
    /// are) or `Status.StaleHandle` if the module was unloaded.
    #[napi(catch_unwind, ts_args_type = "name: string")]
    pub fn method(&self, env: &Env, name: Unknown) -> Result<Method> {
        // SAFETY: napi-rs calls this on the JavaScript thread of `env`.
        unsafe {
            let name = input::string_arg(env.raw(), name.raw(), "Module.method", "the method name")?;
            match self.inner.method(&name) {
                Ok(handle) => Ok(Method::new(handle)),
                Err(e) => Err(errors::throw_core(env.raw(), &e)),
            }
        }
    }

    /// Calls a method by name on the JavaScript thread and returns its
    /// output. For short methods; use `call` for anything that may take a
    /// while. See `Method.callSync` for input and output.
    #[napi(
        catch_unwind,
        ts_args_type = "method: string, input?: ArrayBufferView | ArrayBuffer | string",
        ts_return_type = "Buffer"
    )]
    pub fn call_sync(&self, env: &Env, method: Unknown, input: Unknown) -> Result<sys::napi_value> {
        // SAFETY: napi-rs calls this on the JavaScript thread of `env`.
        unsafe { fast::call_module(env.raw(), &self.inner, method.raw(), input.raw()) }
    }

    /// Calls a method by name on a worker thread; the promise resolves to
    /// its output. See `Method.call` for input and output.
    #[napi(
        catch_unwind,
        ts_args_type = "method: string, input?: ArrayBufferView | ArrayBuffer | string",
        ts_return_type = "Promise<Buffer>"
    )]
    pub fn call(&self, env: &Env, method: Unknown, input: Unknown) -> Result<sys::napi_value> {
        let env = env.raw();
        // SAFETY: napi-rs calls this on the JavaScript thread of `env`.
        unsafe {
            let method = input::string_arg(env, method.raw(), "Module.call", "the method name")?;
            let bytes = input::read_async(env, input.raw(), "Module.call")?;
            async_call::start(env, Target::Module(self.inner.clone(), method), bytes, input.raw())
        }
    }
}

pub(crate) fn module_info(info: &core::ModuleInfo) -> ModuleInfo {
    ModuleInfo {
        name: info.name.clone(),
        version: info.version.clone(),
        description: info.description.clone(),
        path: info.path.display().to_string(),
        sha256: info.sha256.clone(),
        safe_to_unload: info.safe_to_unload,
        elf: elf_of(&info.elf),
        stays_mapped: info.stays_mapped,
        abi_minor: u32::from(info.abi_minor),
        methods: methods_of(info),
        dependencies: dependencies_of(info),
    }
}

/// A resolved method: the fast way to call it, again and again.
///
/// A handle follows upgrades of its module (it always reaches the active
/// version). After the module is unloaded its calls fail with
/// `Status.StaleHandle`; after a forced upgrade that changed the method's
/// signature, with `Status.SignatureChanged`. Obtained from
/// `runtime.method()` or `module.method()`; it cannot be constructed
/// directly.
#[napi]
pub struct Method {
    handle: Arc<core::MethodHandle>,
}

impl Method {
    pub(crate) fn new(handle: core::MethodHandle) -> Method {
        Method { handle: Arc::new(handle) }
    }
}

#[napi]
impl Method {
    /// Name of the module the method belongs to.
    #[napi(getter)]
    pub fn module(&self) -> String {
        self.handle.module_name().to_owned()
    }

    /// Method name.
    #[napi(getter)]
    pub fn name(&self) -> String {
        self.handle.method_name().to_owned()
    }

    /// The signature declared when the handle was resolved.
    #[napi(getter)]
    pub fn signature(&self) -> String {
        self.handle.signature().to_owned()
    }

    /// The signature hash the handle was resolved with (16 hex digits).
    #[napi(getter)]
    pub fn signature_hash(&self) -> String {
        hash_hex(self.handle.signature_hash())
    }

    /// Calls the method on the JavaScript thread and returns its output.
    ///
    /// The input — a `Buffer`, any `TypedArray` or `DataView`, an
    /// `ArrayBuffer`, a string (sent as UTF-8), or nothing (empty input) — is
    /// read in place, without a copy. The output is a `Buffer`: outputs
    /// larger than 1 KiB are external `Buffer`s over the memory the plugin
    /// returned (no copy; released through the plugin when the `Buffer` is
    /// garbage-collected), smaller ones are copies. Treat output as
    /// read-only: it may be the plugin's own memory.
    ///
    /// The event loop waits while the plugin runs: for methods that may take
    /// more than a few microseconds, use `call`. Errors are `Error`s whose
    /// `code` is a `Status`.
    #[napi(catch_unwind, ts_args_type = "input?: ArrayBufferView | ArrayBuffer | string", ts_return_type = "Buffer")]
    pub fn call_sync(&self, env: &Env, input: Unknown) -> Result<sys::napi_value> {
        // SAFETY: napi-rs calls this on the JavaScript thread of `env`.
        unsafe { fast::call_handle(env.raw(), &self.handle, input.raw()) }
    }

    /// Calls the method on one of hotmod's call threads and resolves to its
    /// output (see `callSync` for input and output), so a slow plugin never
    /// blocks the event loop. The input is copied when the call starts, so
    /// it may be modified, transferred or detached at once; a view over a
    /// `SharedArrayBuffer` (which cannot be detached) is read in place
    /// instead. Rejects with an `Error` whose `code` is a `Status`.
    #[napi(
        catch_unwind,
        ts_args_type = "input?: ArrayBufferView | ArrayBuffer | string",
        ts_return_type = "Promise<Buffer>"
    )]
    pub fn call(&self, env: &Env, input: Unknown) -> Result<sys::napi_value> {
        let env = env.raw();
        // SAFETY: napi-rs calls this on the JavaScript thread of `env`.
        unsafe {
            let bytes = input::read_async(env, input.raw(), "Method.call")?;
            async_call::start(env, Target::Handle(self.handle.clone()), bytes, input.raw())
        }
    }

    /// Calls the method on the JavaScript thread, writing its output into
    /// `target` (a `Buffer`, `TypedArray`, `DataView` or `ArrayBuffer`);
    /// returns the number of bytes written. The fastest path: nothing is
    /// allocated. Throws `Status.OutputTooLarge` if the output does not fit.
    #[napi(
        catch_unwind,
        ts_args_type = "input: ArrayBufferView | ArrayBuffer | string | undefined, target: ArrayBufferView | ArrayBuffer"
    )]
    pub fn call_sync_into(&self, env: &Env, input: Unknown, target: Unknown) -> Result<u32> {
        // SAFETY: napi-rs calls this on the JavaScript thread of `env`.
        unsafe { fast::call_handle_into(env.raw(), &self.handle, input.raw(), target.raw()) }
    }

    /// What `index.js` passes to the fast path (internal).
    #[napi(getter, js_name = "__ref", skip_typescript)]
    pub fn external(&self, env: &Env) -> Result<sys::napi_value> {
        // SAFETY: napi-rs calls this on the JavaScript thread of `env`.
        unsafe { fast::external(env.raw(), self.handle.clone()) }
    }

    /// `{ module, name, signature, signatureHash }`, for `JSON.stringify`.
    #[napi(
        js_name = "toJSON",
        ts_return_type = "{ module: string, name: string, signature: string, signatureHash: string }"
    )]
    pub fn to_json(&self) -> MethodJson {
        MethodJson {
            module: self.module(),
            name: self.name(),
            signature: self.handle.signature().to_owned(),
            signature_hash: self.signature_hash(),
        }
    }
}

/// What `Method.toJSON` returns.
#[napi(object, object_from_js = false)]
pub struct MethodJson {
    /// Module name.
    pub module: String,
    /// Method name.
    pub name: String,
    /// Declared signature.
    pub signature: String,
    /// Signature hash, 16 hex digits.
    pub signature_hash: String,
}
