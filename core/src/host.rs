//! The host side of the plugin ABI: the table of services every plugin gets
//! at `init` (log, error messages, host functions, calls to dependencies),
//! and host functions that the host program registers by name.
//!
//! These `extern "C"` functions are called by plugin code, so none of them
//! may unwind: each body runs under `catch_unwind` and reports a panic as
//! [`Status::Internal`].

use std::ffi::{c_char, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Weak};

use hotmod_abi as abi;

use crate::descriptor::PluginInfo;
use crate::error::Status;
use crate::events::EventKind;
use crate::registry::Version;
use crate::runtime::RuntimeInner;

/// A function the host program offers to plugins under a name.
///
/// Called on the plugin's calling thread, possibly from many threads at once.
pub trait HostFunction: Send + Sync {
    /// Handles one call: read `input`, write the result through `out`, or
    /// return an error message (the plugin sees status 2003, plugin error).
    fn call(&self, input: &[u8], out: &mut OutputWriter<'_>) -> Result<(), String>;
}

impl<F> HostFunction for F
where
    F: Fn(&[u8]) -> Result<Vec<u8>, String> + Send + Sync,
{
    fn call(&self, input: &[u8], out: &mut OutputWriter<'_>) -> Result<(), String> {
        out.give(self(input)?);
        Ok(())
    }
}

/// Writes a result into an output slot a plugin offered.
pub struct OutputWriter<'a> {
    slot: &'a mut abi::hotmod_output,
}

unsafe extern "C" fn release_vec(ctx: *mut c_void, _data: *const u8, _len: usize) {
    // SAFETY: ctx is the Box<Vec<u8>> that `give` leaked, released once.
    drop(unsafe { Box::from_raw(ctx as *mut Vec<u8>) });
}

impl<'a> OutputWriter<'a> {
    /// Wraps a raw slot.
    ///
    /// # Safety
    /// `slot` must be a valid output slot whose `buf` (if non-NULL) has
    /// `capacity` writable bytes.
    pub unsafe fn new(slot: &'a mut abi::hotmod_output) -> Self {
        OutputWriter { slot }
    }

    /// Copies `bytes` into the offered space if they fit, or hands over a
    /// copy the plugin releases.
    pub fn write(&mut self, bytes: &[u8]) {
        if bytes.len() <= self.slot.capacity && !self.slot.buf.is_null() {
            // SAFETY: buf has capacity writable bytes (constructor contract).
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.slot.buf, bytes.len()) };
            self.slot.data = self.slot.buf;
            self.slot.len = bytes.len();
        } else {
            self.give(bytes.to_vec());
        }
    }

    /// Hands `v` to the plugin without copying (it calls the release callback).
    pub fn give(&mut self, v: Vec<u8>) {
        if v.len() <= self.slot.capacity && !self.slot.buf.is_null() && v.len() <= 64 {
            // Small results: cheaper to copy than to box.
            return self.write(&v);
        }
        let boxed = Box::new(v);
        self.slot.data = boxed.as_ptr();
        self.slot.len = boxed.len();
        self.slot.release = Some(release_vec);
        self.slot.release_ctx = Box::into_raw(boxed) as *mut c_void;
    }

    /// The raw slot, for hosts that follow the output protocol themselves.
    pub fn raw(&mut self) -> *mut abi::hotmod_output {
        self.slot
    }
}

/// Per-version context behind the host table a plugin receives.
pub(crate) struct HostCtx {
    pub api: abi::hotmod_host_api,
    runtime: Weak<RuntimeInner>,
    module: String,
    version: String,
    dependencies: Vec<String>,
    /// Error messages this version's plugin set that no call took yet.
    pub pending: crate::call::PendingErrors,
}

impl HostCtx {
    pub fn new(runtime: Weak<RuntimeInner>, info: &PluginInfo) -> Box<HostCtx> {
        let mut ctx = Box::new(HostCtx {
            api: abi::hotmod_host_api {
                size: std::mem::size_of::<abi::hotmod_host_api>(),
                ctx: std::ptr::null_mut(),
                log: Some(host_log),
                set_error: Some(host_set_error),
                call_host: Some(host_call_host),
                call_module: Some(host_call_module),
            },
            runtime,
            module: info.name.clone(),
            version: info.version.to_string(),
            dependencies: info.dependencies.iter().map(|d| d.name.clone()).collect(),
            pending: Default::default(),
        });
        // The box never moves, so the plugin can keep this pointer until destroy.
        ctx.api.ctx = &*ctx as *const HostCtx as *mut c_void;
        ctx
    }
}

/// Reads bytes a plugin passed as (ptr, len).
///
/// # Safety
/// `ptr` must be NULL or valid for `len` bytes during the call.
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    // SAFETY: forwarded from the caller.
    unsafe { abi::hotmod_slice { ptr, len }.as_bytes() }
}

/// # Safety
/// `ctx` must be the pointer hotmod put in the plugin's host table.
unsafe fn ctx<'a>(ctx: *mut c_void) -> Option<&'a HostCtx> {
    // SAFETY: forwarded from the caller; the HostCtx outlives destroy.
    unsafe { (ctx as *const HostCtx).as_ref() }
}

fn guarded(f: impl FnOnce() -> i32) -> i32 {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(Status::Internal.code())
}

unsafe extern "C" fn host_log(c: *mut c_void, level: i32, msg: *const u8, len: usize) {
    guarded(|| {
        // SAFETY: the plugin passes its table's ctx and a valid (ptr, len).
        let (Some(c), text) = (unsafe { ctx(c) }, unsafe { bytes(msg, len) }) else { return 0 };
        if let Some(rt) = c.runtime.upgrade() {
            let line = String::from_utf8_lossy(text).into_owned();
            rt.emit_event(EventKind::Log, &c.module, &c.version, "", line, level);
        }
        0
    });
}

unsafe extern "C" fn host_set_error(c: *mut c_void, msg: *const u8, len: usize) {
    guarded(|| {
        // SAFETY: as in host_log.
        if let Some(c) = unsafe { ctx(c) } {
            // SAFETY: as in host_log.
            let text = unsafe { bytes(msg, len) };
            crate::call::set_plugin_error(&c.pending, String::from_utf8_lossy(text).into_owned());
        }
        0
    });
}

/// # Safety
/// `p` must be NULL or a NUL-terminated string.
unsafe fn name_arg<'a>(p: *const c_char) -> Result<&'a str, i32> {
    if p.is_null() {
        return Err(Status::NullArgument.code());
    }
    // SAFETY: forwarded from the caller.
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| Status::InvalidArgument.code())
}

unsafe extern "C" fn host_call_host(
    c: *mut c_void,
    name: *const c_char,
    input: abi::hotmod_slice,
    output: *mut abi::hotmod_output,
) -> i32 {
    guarded(|| {
        // SAFETY: the plugin passes its table's ctx.
        let Some(c) = (unsafe { ctx(c) }) else { return Status::NullArgument.code() };
        // SAFETY: name is a NUL-terminated string per the ABI.
        let name = match unsafe { name_arg(name) } {
            Ok(n) => n,
            Err(code) => return code,
        };
        // SAFETY: output is a valid slot or NULL per the ABI.
        let Some(slot) = (unsafe { output.as_mut() }) else { return Status::NullArgument.code() };
        let Some(rt) = c.runtime.upgrade() else { return Status::StaleHandle.code() };
        let Some(f) = rt.host_function(name) else {
            crate::call::set_plugin_error(
                &c.pending,
                format!("module '{}' called host function '{name}', which the host has not registered", c.module),
            );
            return Status::MethodNotFound.code();
        };
        // SAFETY: input is a borrowed view valid for the call.
        let input = unsafe { input.as_bytes() };
        // SAFETY: the slot follows the output protocol.
        let mut w = unsafe { OutputWriter::new(slot) };
        // Plugin calls the host function makes keep their messages to
        // themselves; the calling plugin's own message survives them.
        let scope = crate::call::ErrorScope::enter();
        let r = catch_unwind(AssertUnwindSafe(|| f.call(input, &mut w)));
        drop(scope);
        match r {
            Ok(Ok(())) => 0,
            Ok(Err(msg)) => {
                crate::call::set_plugin_error(&c.pending, format!("host function '{name}' failed: {msg}"));
                Status::PluginError.code()
            }
            Err(_) => {
                crate::call::set_plugin_error(&c.pending, format!("host function '{name}' panicked"));
                Status::Internal.code()
            }
        }
    })
}

/// Keeps a callee version alive until the calling plugin releases the
/// memory it returned.
struct Forwarded {
    release: abi::hotmod_release_fn,
    ctx: *mut c_void,
    _version: Arc<Version>,
}

unsafe extern "C" fn release_forwarded(ctx: *mut c_void, data: *const u8, len: usize) {
    // SAFETY: ctx is the Box<Forwarded> leaked in host_call_module, released once.
    let f = unsafe { Box::from_raw(ctx as *mut Forwarded) };
    if let Some(release) = f.release {
        // SAFETY: the callee's own release, with its own values, exactly once.
        unsafe { release(f.ctx, data, len) };
    }
}

unsafe extern "C" fn host_call_module(
    c: *mut c_void,
    module: *const c_char,
    method: *const c_char,
    input: abi::hotmod_slice,
    output: *mut abi::hotmod_output,
) -> i32 {
    guarded(|| {
        // SAFETY: the plugin passes its table's ctx.
        let Some(c) = (unsafe { ctx(c) }) else { return Status::NullArgument.code() };
        // SAFETY: NUL-terminated strings per the ABI.
        let (module, method) = match unsafe { (name_arg(module), name_arg(method)) } {
            (Ok(a), Ok(b)) => (a, b),
            (Err(code), _) | (_, Err(code)) => return code,
        };
        // SAFETY: output is a valid slot or NULL per the ABI.
        let Some(slot) = (unsafe { output.as_mut() }) else { return Status::NullArgument.code() };
        if !c.dependencies.iter().any(|d| d == module) {
            crate::call::set_plugin_error(
                &c.pending,
                format!(
                "module '{}' called '{module}.{method}', but '{module}' is not among its declared dependencies ({})",
                c.module,
                c.dependencies.join(", ")
            ),
            );
            return Status::InvalidArgument.code();
        }
        let Some(rt) = c.runtime.upgrade() else { return Status::StaleHandle.code() };
        // SAFETY: input is a borrowed view valid for the call.
        let input = unsafe { input.as_bytes() };
        // The callee's messages are its own; the caller's survives the call.
        let scope = crate::call::ErrorScope::enter();
        let r = rt.call_raw_by_name(module, method, input, slot);
        drop(scope);
        match r {
            Ok(Some(version)) => {
                let fwd = Box::new(Forwarded { release: slot.release, ctx: slot.release_ctx, _version: version });
                slot.release = Some(release_forwarded);
                slot.release_ctx = Box::into_raw(fwd) as *mut c_void;
                0
            }
            Ok(None) => 0,
            Err(e) => {
                let code = e.status().code();
                crate::call::set_plugin_error(&c.pending, e.message().to_owned());
                code
            }
        }
    })
}
