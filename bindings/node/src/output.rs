//! Call output to JavaScript: an external `Buffer` over the bytes the call
//! produced (the plugin's own memory on the zero-copy path), whose finalizer
//! drops the [`Output`] — which calls the plugin's release callback exactly
//! once. Outputs up to [`COPY_MAX`] bytes are copied instead, and the
//! `Output` dropped at once: for them a copy costs far less than an external
//! buffer and its finalizer.
//!
//! Synchronous calls copy small outputs into a per-thread scratch `Buffer`
//! and return only the length; `index.js` then copies the bytes into a
//! `Buffer` allocated in JavaScript (from Node's pool). Creating a `Buffer`
//! through N-API costs about 0.6 µs, several times a whole call, while a
//! pooled JavaScript allocation costs tens of nanoseconds.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::ffi::c_void;
use std::ptr;

use hotmod_core::Output;
use napi::sys;

use crate::errors;

/// Outputs up to this many bytes are copied into a fresh `Buffer` (and the
/// `Output` is dropped at once, releasing any plugin memory immediately).
pub(crate) const COPY_MAX: usize = 1024;

thread_local! {
    /// The scratch buffer of this JavaScript thread (NULL until
    /// `__outputScratch` made it), and the reference keeping it alive.
    static SCRATCH: Cell<(*mut u8, sys::napi_ref)> = const { Cell::new((ptr::null_mut(), ptr::null_mut())) };
    /// Data pointers of the external buffers alive on this JavaScript thread.
    /// Some V8 versions abort the process when two live ArrayBuffers share
    /// their memory (nodejs/node#32463; Node 20 does not), which a plugin
    /// may legitimately cause by returning the same static table from every
    /// call; such an output is copied instead.
    static LIVE_EXTERNAL: RefCell<HashSet<usize>> = RefCell::new(HashSet::new());
}

/// What an external buffer's finalizer owns.
struct Held {
    output: Output,
}

unsafe extern "C" fn finalize_output(env: sys::napi_env, data: *mut c_void, hint: *mut c_void) {
    // SAFETY: hint is the Box<Held> leaked in `to_buffer`; V8 calls the
    // finalizer exactly once, on the JavaScript thread.
    let held = unsafe { Box::from_raw(hint as *mut Held) };
    let _ = env;
    LIVE_EXTERNAL.with(|s| s.borrow_mut().remove(&(data as usize)));
    // Dropping the Output releases plugin memory (exactly once) and may
    // drop the last reference to a drained plugin version.
    drop(held);
}

/// Turns a call's output into a `Buffer`.
///
/// # Safety
/// Must run on the JavaScript thread of `env`.
pub(crate) unsafe fn to_buffer(env: sys::napi_env, output: Output) -> napi::Result<sys::napi_value> {
    let mut result = ptr::null_mut();
    let len = output.len();
    // SAFETY: env is live on this thread (caller contract); the copied bytes
    // are valid for `len` bytes (owned by `output`).
    unsafe {
        if len <= COPY_MAX || !claim(output.as_ptr()) {
            return copy(env, output.as_bytes());
        }
        let data = output.as_ptr() as *mut c_void;
        let held = Box::into_raw(Box::new(Held { output }));
        let status = sys::napi_create_external_buffer(env, len, data, Some(finalize_output), held.cast(), &mut result);
        if status != sys::Status::napi_ok {
            // Not created: the finalizer will never run, so take the Output
            // back, and fall back to a copy (for runtimes that refuse
            // external buffers).
            LIVE_EXTERNAL.with(|s| s.borrow_mut().remove(&(data as usize)));
            let held = Box::from_raw(held);
            return copy(env, held.output.as_bytes());
        }
    }
    // V8 counts the external memory itself (as it does for every
    // ArrayBuffer), so large outputs still pressure the garbage collector.
    Ok(result)
}

/// The scratch `Buffer` of this JavaScript thread, made on first use.
///
/// # Safety
/// Must run on the JavaScript thread of `env`.
pub(crate) unsafe fn scratch(env: sys::napi_env) -> napi::Result<sys::napi_value> {
    let (data, reference) = SCRATCH.with(|s| s.get());
    let mut value = ptr::null_mut();
    // SAFETY: env is live on this thread (caller contract); the reference
    // is strong, so the buffer (and its memory) lives as long as the env.
    unsafe {
        if !data.is_null() && sys::napi_get_reference_value(env, reference, &mut value) == sys::Status::napi_ok {
            return Ok(value);
        }
        let mut data = ptr::null_mut();
        let mut reference = ptr::null_mut();
        if sys::napi_create_buffer(env, COPY_MAX, &mut data, &mut value) != sys::Status::napi_ok
            || sys::napi_create_reference(env, value, 1, &mut reference) != sys::Status::napi_ok
        {
            return Err(errors::throw_internal(env, "cannot allocate the output scratch buffer"));
        }
        SCRATCH.with(|s| s.set((data as *mut u8, reference)));
    }
    Ok(value)
}

/// The result of a synchronous call: for an output of at most [`COPY_MAX`]
/// bytes (once `index.js` has asked for the scratch buffer), the bytes are
/// copied into the scratch buffer and the result is their count, a number,
/// which `index.js` turns into a `Buffer`; otherwise a `Buffer`.
///
/// # Safety
/// Must run on the JavaScript thread of `env`.
#[inline]
pub(crate) unsafe fn to_sync_result(env: sys::napi_env, output: Output) -> napi::Result<sys::napi_value> {
    let len = output.len();
    let (data, _) = SCRATCH.with(|s| s.get());
    if len > COPY_MAX || data.is_null() {
        // SAFETY: forwarded from the caller.
        return unsafe { to_buffer(env, output) };
    }
    let mut result = ptr::null_mut();
    // SAFETY: the scratch buffer holds COPY_MAX >= len bytes and is only
    // touched on this thread; the JavaScript side copies it out before any
    // other call can run. The plugin wrote into the Output's own memory,
    // so a nested call (from a host function) cannot clobber this.
    unsafe {
        if len > 0 {
            ptr::copy_nonoverlapping(output.as_ptr(), data, len);
        }
        drop(output);
        if sys::napi_create_uint32(env, len as u32, &mut result) != sys::Status::napi_ok {
            return Err(errors::throw_internal(env, "cannot create a number"));
        }
    }
    Ok(result)
}

/// Records `data` as the memory of a live external buffer; false if one
/// over the same memory is alive already.
fn claim(data: *const u8) -> bool {
    LIVE_EXTERNAL.with(|s| s.borrow_mut().insert(data as usize))
}

/// A `Buffer` holding a copy of `bytes`.
///
/// # Safety
/// Must run on the JavaScript thread of `env`.
pub(crate) unsafe fn copy(env: sys::napi_env, bytes: &[u8]) -> napi::Result<sys::napi_value> {
    let mut result = ptr::null_mut();
    let mut ignored = ptr::null_mut();
    // SAFETY: bytes is valid for its length; env is live (caller contract).
    let status = unsafe {
        if bytes.is_empty() {
            sys::napi_create_buffer(env, 0, &mut ignored, &mut result)
        } else {
            sys::napi_create_buffer_copy(env, bytes.len(), bytes.as_ptr().cast(), &mut ignored, &mut result)
        }
    };
    if status != sys::Status::napi_ok {
        // SAFETY: as above.
        return Err(unsafe {
            errors::throw_internal(env, &format!("cannot allocate a Buffer of {} bytes for the output", bytes.len()))
        });
    }
    Ok(result)
}
