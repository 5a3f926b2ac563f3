//! hotmod plugin SDK for Rust.
//!
//! Write a type that implements [`Plugin`], methods as plain functions, and
//! declare the plugin with [`plugin!`]. The macro builds the static ABI v1
//! descriptor and the `hotmod_plugin_v1` entry symbol, and wraps every hook
//! and method in `catch_unwind`, so a panic becomes
//! `HOTMOD_PLUGIN_PANICKED` (status 2004 in the host) instead of unwinding
//! into the host.
//!
//! ```
//! use hotmod_sdk::{plugin, Host, Output, Plugin, PluginError};
//!
//! struct Text;
//! impl Plugin for Text {
//!     fn init(_host: Host, _config: &[u8]) -> Result<Self, String> { Ok(Text) }
//! }
//! fn upper(_: &Text, input: &[u8], out: &mut Output) -> Result<(), PluginError> {
//!     out.write(&input.to_ascii_uppercase())
//! }
//! plugin! {
//!     name: "text", version: "1.0.0", description: "Text tools",
//!     safe_to_unload: true,
//!     plugin: Text,
//!     methods: [ "upper" ("bytes -> bytes") => upper ],
//! }
//! ```
//!
//! Build the crate as a `cdylib`. Plugins never link against the runtime.
#![warn(missing_docs)]

use std::ffi::{c_void, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

pub use hotmod_abi as abi;

/// The lifecycle of a plugin instance. `Drop` is the `destroy` hook.
pub trait Plugin: Sized + Send + Sync + 'static {
    /// Creates the instance from the host table and configuration bytes.
    fn init(host: Host, config: &[u8]) -> Result<Self, String>;

    /// The version is about to serve calls.
    fn activate(&self) -> Result<(), String> {
        Ok(())
    }

    /// The version has served its last call.
    fn deactivate(&self) {}

    /// State to hand to the next version during an upgrade (None: nothing).
    fn export_state(&self) -> Option<Vec<u8>> {
        None
    }

    /// Receives the previous version's exported state before activation.
    fn import_state(&mut self, _state: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

/// An error a method returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginError {
    /// The method failed (status `HOTMOD_PLUGIN_ERROR`).
    Failed(String),
    /// The input is not acceptable (status `HOTMOD_PLUGIN_INVALID_INPUT`).
    InvalidInput(String),
    /// The host-offered space is too small; the method needs this many bytes.
    OutputTooSmall(usize),
}

impl From<String> for PluginError {
    fn from(s: String) -> Self {
        PluginError::Failed(s)
    }
}

impl From<&str> for PluginError {
    fn from(s: &str) -> Self {
        PluginError::Failed(s.to_owned())
    }
}

/// The host's services, as received at `init`. Copyable and usable from any
/// thread until the instance is dropped.
#[derive(Clone, Copy)]
pub struct Host {
    api: *const abi::hotmod_host_api,
}

// SAFETY: the host table is immutable and its functions are thread-safe per
// the ABI.
unsafe impl Send for Host {}
// SAFETY: as above.
unsafe impl Sync for Host {}

impl Host {
    fn api(&self) -> Option<&abi::hotmod_host_api> {
        // SAFETY: the runtime keeps the table alive until destroy.
        unsafe { self.api.as_ref() }
    }

    /// Writes a log line at `level` (`abi::HOTMOD_LOG_*`).
    pub fn log(&self, level: i32, msg: &str) {
        if let Some(api) = self.api() {
            if let Some(log) = api.log {
                // SAFETY: ctx from the table; msg valid for the call.
                unsafe { log(api.ctx, level, msg.as_ptr(), msg.len()) };
            }
        }
    }

    /// Sets the error message of the call in progress on this thread.
    pub fn set_error(&self, msg: &str) {
        if let Some(api) = self.api() {
            if let Some(set_error) = api.set_error {
                // SAFETY: ctx from the table; msg valid for the call.
                unsafe { set_error(api.ctx, msg.as_ptr(), msg.len()) };
            }
        }
    }

    /// Calls a host function registered under `name`. Errors are hotmod
    /// status codes. A result larger than 256 bytes is fetched with a second
    /// call of the size the host asks for, up to [`MAX_RESULT_SIZE`].
    pub fn call_host(&self, name: &str, input: &[u8]) -> Result<Vec<u8>, i32> {
        let api = self.api().ok_or(3001)?;
        let f = api.call_host.ok_or(2001)?;
        let name = CString::new(name).map_err(|_| 3002)?;
        // SAFETY: valid ctx, NUL-terminated name, live input view, fresh slot.
        call_with_slot(|out| unsafe { f(api.ctx, name.as_ptr(), abi::hotmod_slice::from_bytes(input), out) })
    }

    /// Calls `method` of a declared dependency `module`, reaching its active
    /// version. Errors are hotmod status codes. Results of any size up to
    /// [`MAX_RESULT_SIZE`] come back whole (the runtime hands large ones
    /// over; a host that answers 2009 with the size needed is asked again
    /// with that much).
    pub fn call_module(&self, module: &str, method: &str, input: &[u8]) -> Result<Vec<u8>, i32> {
        let api = self.api().ok_or(3001)?;
        let f = api.call_module.ok_or(2001)?;
        let module = CString::new(module).map_err(|_| 3002)?;
        let method = CString::new(method).map_err(|_| 3002)?;
        // SAFETY: as in call_host.
        call_with_slot(|out| unsafe {
            f(api.ctx, module.as_ptr(), method.as_ptr(), abi::hotmod_slice::from_bytes(input), out)
        })
    }
}

/// The largest result [`Host::call_host`] and [`Host::call_module`] accept:
/// 64 MiB, the runtime's default `max_output_size`. A callee that asks for
/// more is answered with status 2009 (output too large) without allocating.
pub const MAX_RESULT_SIZE: usize = 64 << 20;

/// hotmod status "output too large": what a host answers when the result
/// did not fit the space offered (with the size needed in `len`).
const STATUS_OUTPUT_TOO_LARGE: i32 = 2009;
/// hotmod status "invalid output": the callee broke the output protocol.
const STATUS_INVALID_OUTPUT: i32 = 2011;

/// Calls `f` with 256 bytes of stack space; if the callee answers 2009 with
/// the size it needs (up to `max`), once more with that much.
fn call_with_slot(f: impl FnMut(*mut abi::hotmod_output) -> i32) -> Result<Vec<u8>, i32> {
    call_with_slot_max(f, MAX_RESULT_SIZE)
}

fn call_with_slot_max(mut f: impl FnMut(*mut abi::hotmod_output) -> i32, max: usize) -> Result<Vec<u8>, i32> {
    let mut buf = [0u8; 256];
    let mut out = abi::hotmod_output::offering(buf.as_mut_ptr(), buf.len());
    let rc = f(&mut out);
    if rc == STATUS_OUTPUT_TOO_LARGE && out.len > buf.len() {
        let need = out.len;
        release(&mut out);
        if need > max {
            return Err(STATUS_OUTPUT_TOO_LARGE);
        }
        let mut v: Vec<u8> = Vec::new();
        v.try_reserve_exact(need).map_err(|_| STATUS_OUTPUT_TOO_LARGE)?;
        let mut out = abi::hotmod_output::offering(v.as_mut_ptr(), v.capacity());
        let rc = f(&mut out);
        if rc != 0 {
            release(&mut out);
            return Err(rc);
        }
        return take(&mut out);
    }
    if rc != 0 {
        release(&mut out);
        return Err(rc);
    }
    take(&mut out)
}

/// Calls a slot's release callback once, if it has one.
fn release(out: &mut abi::hotmod_output) {
    if let Some(release) = out.release.take() {
        // SAFETY: exactly once (taken), with the callee's values.
        unsafe { release(out.release_ctx, out.data, out.len) };
    }
}

/// Copies a filled slot's bytes out, range-checked against the space
/// offered: inside it they must end inside it; outside it they are the
/// callee's memory; straddling it is invalid output (2011).
fn take(out: &mut abi::hotmod_output) -> Result<Vec<u8>, i32> {
    let cap = if out.buf.is_null() { 0 } else { out.capacity };
    let off = (out.data as usize).wrapping_sub(out.buf as usize);
    let valid = if off <= cap {
        out.len <= cap - off
    } else {
        let data = out.data as usize;
        let buf = out.buf as usize;
        out.len == 0
            || (data != 0 && data.checked_add(out.len).is_some_and(|end| cap == 0 || end <= buf || data >= buf + cap))
    };
    if !valid {
        release(out);
        return Err(STATUS_INVALID_OUTPUT);
    }
    // SAFETY: inside the offered space (checked), or the callee's memory,
    // readable for `len` bytes per the protocol.
    let bytes = unsafe { abi::hotmod_slice { ptr: out.data, len: out.len }.as_bytes() }.to_vec();
    release(out);
    Ok(bytes)
}

/// The output slot of a method call.
pub struct Output<'a> {
    slot: &'a mut abi::hotmod_output,
}

unsafe extern "C" fn release_boxed_slice(ctx: *mut c_void, _data: *const u8, _len: usize) {
    // SAFETY: ctx is the Box<[u8]> leaked by `give`, released exactly once.
    drop(unsafe { Box::from_raw(ctx as *mut Box<[u8]>) });
}

impl Output<'_> {
    /// Space the host offered.
    pub fn capacity(&self) -> usize {
        if self.slot.buf.is_null() {
            0
        } else {
            self.slot.capacity
        }
    }

    /// Copies `bytes` into the host's space, or fails with
    /// [`PluginError::OutputTooSmall`] so the host can offer more.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), PluginError> {
        let dst = self.buffer(bytes.len())?;
        dst.copy_from_slice(bytes);
        self.commit(bytes.len());
        Ok(())
    }

    /// The host's space, at least `len` bytes of it; call [`commit`](Self::commit)
    /// with the number of bytes written.
    pub fn buffer(&mut self, len: usize) -> Result<&mut [u8], PluginError> {
        if len > self.capacity() {
            return Err(PluginError::OutputTooSmall(len));
        }
        // SAFETY: buf has capacity writable bytes, len <= capacity.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.slot.buf, len) })
    }

    /// Marks `len` bytes of the host's space as the result.
    pub fn commit(&mut self, len: usize) {
        self.slot.data = self.slot.buf;
        self.slot.len = len.min(self.capacity());
    }

    /// Hands `bytes` to the host without copying; the host releases them
    /// (from any thread) when done.
    pub fn give(&mut self, bytes: Vec<u8>) {
        let boxed: Box<Box<[u8]>> = Box::new(bytes.into_boxed_slice());
        self.slot.data = boxed.as_ptr();
        self.slot.len = boxed.len();
        self.slot.release = Some(release_boxed_slice);
        self.slot.release_ctx = Box::into_raw(boxed) as *mut c_void;
    }

    /// Points the result at static bytes (nothing to release).
    pub fn give_static(&mut self, bytes: &'static [u8]) {
        self.slot.data = bytes.as_ptr();
        self.slot.len = bytes.len();
    }
}

/// What the macro stores as the instance pointer.
#[doc(hidden)]
pub struct Instance<P> {
    pub host: Host,
    pub plugin: P,
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

/// # Safety
/// Called only by the trampolines the macro generates, with the arguments
/// the runtime passed.
#[doc(hidden)]
pub unsafe fn __call_method<P: Plugin>(
    instance: *mut c_void,
    input: abi::hotmod_slice,
    output: *mut abi::hotmod_output,
    method: &str,
    f: fn(&P, &[u8], &mut Output<'_>) -> Result<(), PluginError>,
) -> i32 {
    // SAFETY: instance is the Box<Instance<P>> created by __init.
    let Some(inst) = (unsafe { (instance as *const Instance<P>).as_ref() }) else {
        return abi::HOTMOD_PLUGIN_ERROR;
    };
    // SAFETY: the runtime passes a valid slot.
    let Some(slot) = (unsafe { output.as_mut() }) else { return abi::HOTMOD_PLUGIN_ERROR };
    // SAFETY: the input view is valid for the call.
    let input = unsafe { input.as_bytes() };
    let mut out = Output { slot };
    match catch_unwind(AssertUnwindSafe(|| f(&inst.plugin, input, &mut out))) {
        Ok(Ok(())) => abi::HOTMOD_PLUGIN_OK,
        Ok(Err(PluginError::Failed(m))) => {
            inst.host.set_error(&m);
            abi::HOTMOD_PLUGIN_ERROR
        }
        Ok(Err(PluginError::InvalidInput(m))) => {
            inst.host.set_error(&m);
            abi::HOTMOD_PLUGIN_INVALID_INPUT
        }
        Ok(Err(PluginError::OutputTooSmall(n))) => {
            out.slot.len = n;
            abi::HOTMOD_PLUGIN_OUTPUT_TOO_SMALL
        }
        Err(p) => {
            inst.host.set_error(&format!("method '{method}' panicked: {}", panic_message(&*p)));
            abi::HOTMOD_PLUGIN_PANICKED
        }
    }
}

/// # Safety
/// Called only as the descriptor's init hook.
#[doc(hidden)]
pub unsafe extern "C" fn __init<P: Plugin>(
    host: *const abi::hotmod_host_api,
    config: abi::hotmod_slice,
    instance: *mut *mut c_void,
) -> i32 {
    let h = Host { api: host };
    // SAFETY: the config view is valid for the call.
    let config = unsafe { config.as_bytes() };
    match run_hook(h, "init", || P::init(h, config)) {
        Ok(p) => {
            let boxed = Box::new(Instance { host: h, plugin: p });
            // SAFETY: the runtime passes a valid out-pointer.
            unsafe { *instance = Box::into_raw(boxed) as *mut c_void };
            abi::HOTMOD_PLUGIN_OK
        }
        Err(rc) => rc,
    }
}

/// Runs a lifecycle hook behind the panic boundary: its value, or the
/// status to return after its error or panic was reported to the host.
fn run_hook<T>(host: Host, hook: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, i32> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(m)) => {
            host.set_error(&m);
            Err(abi::HOTMOD_PLUGIN_ERROR)
        }
        Err(p) => {
            host.set_error(&format!("{hook} panicked: {}", panic_message(&*p)));
            Err(abi::HOTMOD_PLUGIN_PANICKED)
        }
    }
}

/// # Safety
/// Called only as the descriptor's activate hook.
#[doc(hidden)]
pub unsafe extern "C" fn __activate<P: Plugin>(instance: *mut c_void) -> i32 {
    // SAFETY: instance is the Box<Instance<P>> from __init.
    let Some(inst) = (unsafe { (instance as *const Instance<P>).as_ref() }) else { return abi::HOTMOD_PLUGIN_ERROR };
    run_hook(inst.host, "activate", || inst.plugin.activate()).err().unwrap_or(abi::HOTMOD_PLUGIN_OK)
}

/// # Safety
/// Called only as the descriptor's deactivate hook.
#[doc(hidden)]
pub unsafe extern "C" fn __deactivate<P: Plugin>(instance: *mut c_void) {
    // SAFETY: instance is the Box<Instance<P>> from __init.
    if let Some(inst) = unsafe { (instance as *const Instance<P>).as_ref() } {
        let _ = catch_unwind(AssertUnwindSafe(|| inst.plugin.deactivate()));
    }
}

/// # Safety
/// Called only as the descriptor's destroy hook, exactly once.
#[doc(hidden)]
pub unsafe extern "C" fn __destroy<P: Plugin>(instance: *mut c_void) {
    if !instance.is_null() {
        // SAFETY: instance is the Box<Instance<P>> from __init, dropped once.
        let boxed = unsafe { Box::from_raw(instance as *mut Instance<P>) };
        let _ = catch_unwind(AssertUnwindSafe(move || drop(boxed)));
    }
}

/// # Safety
/// Called only as the descriptor's export_state hook.
#[doc(hidden)]
pub unsafe extern "C" fn __export_state<P: Plugin>(instance: *mut c_void, output: *mut abi::hotmod_output) -> i32 {
    // SAFETY: instance is the Box<Instance<P>> from __init.
    let Some(inst) = (unsafe { (instance as *const Instance<P>).as_ref() }) else { return abi::HOTMOD_PLUGIN_ERROR };
    // SAFETY: the runtime passes a valid slot.
    let Some(slot) = (unsafe { output.as_mut() }) else { return abi::HOTMOD_PLUGIN_ERROR };
    match catch_unwind(AssertUnwindSafe(|| inst.plugin.export_state())) {
        Ok(Some(state)) => {
            Output { slot }.give(state);
            abi::HOTMOD_PLUGIN_OK
        }
        Ok(None) => abi::HOTMOD_PLUGIN_OK,
        Err(p) => {
            inst.host.set_error(&format!("export_state panicked: {}", panic_message(&*p)));
            abi::HOTMOD_PLUGIN_PANICKED
        }
    }
}

/// # Safety
/// Called only as the descriptor's import_state hook, before activation.
#[doc(hidden)]
pub unsafe extern "C" fn __import_state<P: Plugin>(instance: *mut c_void, state: abi::hotmod_slice) -> i32 {
    // SAFETY: instance is the Box<Instance<P>> from __init; the runtime calls
    // import_state before the version is published, so no call shares it.
    let Some(inst) = (unsafe { (instance as *mut Instance<P>).as_mut() }) else { return abi::HOTMOD_PLUGIN_ERROR };
    // SAFETY: the state view is valid for the call.
    let state = unsafe { state.as_bytes() };
    run_hook(inst.host, "import_state", || inst.plugin.import_state(state)).err().unwrap_or(abi::HOTMOD_PLUGIN_OK)
}

/// A NUL-terminated string literal as a C pointer.
#[doc(hidden)]
#[macro_export]
macro_rules! __cstr {
    ($s:expr) => {
        concat!($s, "\0").as_ptr() as *const ::std::ffi::c_char
    };
}

/// Declares a plugin: builds its ABI v1 descriptor and exports
/// `hotmod_plugin_v1`. See the crate docs for an example.
///
/// Fields, in this order: `name`, `version`, `description`,
/// `safe_to_unload` (bool: may the runtime unmap the library after destroy;
/// say `false` if the plugin uses thread-locals with destructors),
/// `plugin` (the [`Plugin`] type), optional `dependencies: [("name", "range"), …]`,
/// and `methods: ["name" ("signature") => function, …]` where each function
/// is `fn(&P, &[u8], &mut Output) -> Result<(), PluginError>`.
#[macro_export]
macro_rules! plugin {
    (
        name: $name:literal,
        version: $version:literal,
        description: $desc:literal,
        safe_to_unload: $safe:literal,
        plugin: $ty:ty,
        $(dependencies: [ $( ($dname:literal, $dreq:literal) ),* $(,)? ],)?
        methods: [ $( $mname:literal ($msig:literal) => $mfn:path ),* $(,)? ] $(,)?
    ) => {
        const _: () = {
            use $crate::abi;
            static METHODS: &[abi::hotmod_method_def] = &[
                $(
                    abi::hotmod_method_def {
                        name: $crate::__cstr!($mname),
                        signature: $crate::__cstr!($msig),
                        func: Some({
                            unsafe extern "C" fn trampoline(
                                instance: *mut ::std::ffi::c_void,
                                input: abi::hotmod_slice,
                                output: *mut abi::hotmod_output,
                            ) -> i32 {
                                // SAFETY: called by the runtime with the
                                // instance from init and a valid slot.
                                unsafe { $crate::__call_method::<$ty>(instance, input, output, $mname, $mfn) }
                            }
                            trampoline
                        }),
                    },
                )*
            ];
            static DEPENDENCIES: &[abi::hotmod_dependency_def] = &[
                $($(
                    abi::hotmod_dependency_def {
                        name: $crate::__cstr!($dname),
                        version_req: $crate::__cstr!($dreq),
                        flags: 0,
                    },
                )*)?
            ];
            static DESCRIPTOR: abi::hotmod_plugin_descriptor = abi::hotmod_plugin_descriptor {
                magic: abi::HOTMOD_PLUGIN_MAGIC,
                abi_major: abi::HOTMOD_ABI_MAJOR,
                abi_minor: abi::HOTMOD_ABI_MINOR,
                descriptor_size: ::std::mem::size_of::<abi::hotmod_plugin_descriptor>() as u32,
                flags: if $safe { abi::HOTMOD_PLUGIN_FLAG_SAFE_TO_UNLOAD } else { 0 },
                name: $crate::__cstr!($name),
                version: $crate::__cstr!($version),
                description: $crate::__cstr!($desc),
                dependencies: DEPENDENCIES.as_ptr(),
                dependency_count: DEPENDENCIES.len(),
                methods: METHODS.as_ptr(),
                method_count: METHODS.len(),
                init: Some($crate::__init::<$ty>),
                activate: Some($crate::__activate::<$ty>),
                deactivate: Some($crate::__deactivate::<$ty>),
                destroy: Some($crate::__destroy::<$ty>),
                export_state: Some($crate::__export_state::<$ty>),
                import_state: Some($crate::__import_state::<$ty>),
            };
            /// The hotmod plugin entry symbol.
            #[no_mangle]
            pub extern "C" fn hotmod_plugin_v1() -> *const abi::hotmod_plugin_descriptor {
                &DESCRIPTOR
            }
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A callee that needs `n` bytes: answers 2009 with the size when
    /// offered less, fills the space otherwise; counts its runs.
    fn sized(n: usize, runs: &mut u32) -> impl FnMut(*mut abi::hotmod_output) -> i32 + '_ {
        move |out| {
            *runs += 1;
            // SAFETY: call_with_slot passes a valid slot.
            let out = unsafe { &mut *out };
            if out.capacity < n {
                out.len = n;
                return STATUS_OUTPUT_TOO_LARGE;
            }
            // SAFETY: buf has capacity >= n bytes.
            unsafe { std::ptr::write_bytes(out.buf, b'r', n) };
            out.data = out.buf;
            out.len = n;
            0
        }
    }

    #[test]
    fn results_over_the_stack_offer_are_fetched_with_the_size_asked() {
        let mut runs = 0;
        let v = call_with_slot(sized(10_000, &mut runs)).unwrap();
        assert_eq!(v.len(), 10_000);
        assert!(v.iter().all(|&b| b == b'r'));
        assert_eq!(runs, 2);
        let mut runs = 0;
        assert_eq!(call_with_slot(sized(100, &mut runs)).unwrap().len(), 100);
        assert_eq!(runs, 1);
    }

    #[test]
    fn requests_over_the_cap_are_refused_without_allocating() {
        for n in [1usize << 50, usize::MAX, MAX_RESULT_SIZE + 1] {
            let mut runs = 0;
            assert_eq!(call_with_slot(sized(n, &mut runs)), Err(STATUS_OUTPUT_TOO_LARGE));
            assert_eq!(runs, 1, "no second call for {n}");
        }
        let mut runs = 0;
        assert_eq!(call_with_slot_max(sized(1000, &mut runs), 999), Err(STATUS_OUTPUT_TOO_LARGE));
    }

    #[test]
    fn results_straddling_or_past_the_offered_space_are_invalid() {
        let cases: [fn(&mut abi::hotmod_output); 3] = [
            |o| {
                o.data = o.buf;
                o.len = o.capacity + 1;
            },
            |o| {
                // SAFETY: only the address is computed.
                o.data = unsafe { o.buf.add(10) };
                o.len = o.capacity - 9;
            },
            |o| {
                o.data = (o.buf as usize - 1) as *const u8;
                o.len = 2;
            },
        ];
        for c in cases {
            let r = call_with_slot(|out| {
                // SAFETY: a valid slot.
                c(unsafe { &mut *out });
                0
            });
            assert_eq!(r, Err(STATUS_INVALID_OUTPUT));
        }
        // Bytes at an offset inside the space are fine.
        let r = call_with_slot(|out| {
            // SAFETY: a valid slot with 256 bytes.
            let o = unsafe { &mut *out };
            // SAFETY: inside the offered space.
            unsafe { std::ptr::copy_nonoverlapping(b"abc".as_ptr(), o.buf.add(7), 3) };
            // SAFETY: as above.
            o.data = unsafe { o.buf.add(7) };
            o.len = 3;
            0
        });
        assert_eq!(r.unwrap(), b"abc");
    }
}
