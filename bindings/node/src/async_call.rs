//! Asynchronous calls: the plugin runs on a libuv worker thread and the
//! caller gets a `Promise`, so a slow plugin never blocks the event loop.
//!
//! The input is read in place, like a synchronous call: the JavaScript
//! object is kept alive by a reference until the call completes, and must
//! not be modified, transferred or detached before the promise settles.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::Arc;

use hotmod_core::{MethodHandle, Module, Output, Runtime, Status};
use napi::sys;

use crate::errors;
use crate::input::Input;

/// What an asynchronous call calls.
pub(crate) enum Target {
    /// A resolved method.
    Handle(Arc<MethodHandle>),
    /// A method of a module object, by name.
    Module(Module, String),
    /// `module.method` by name.
    Name(Arc<Runtime>, String, String),
}

impl Target {
    fn call(&self, input: &[u8]) -> hotmod_core::Result<Output> {
        match self {
            Target::Handle(h) => h.call_with_offer(input, crate::output::COPY_MAX),
            Target::Module(m, method) => m.call(method, input),
            Target::Name(rt, module, method) => rt.call(module, method, input),
        }
    }
}

struct Work {
    target: Target,
    input: Input,
    /// Keeps the input's JavaScript object alive (NULL if nothing borrowed).
    keep: sys::napi_ref,
    deferred: sys::napi_deferred,
    work: sys::napi_async_work,
    result: Option<hotmod_core::Result<Output>>,
}

/// Queues `target(input)` on the libuv pool and returns its promise.
///
/// # Safety
/// Must run on the JavaScript thread of `env`; `input_value` must be the
/// value `input` was read from.
pub(crate) unsafe fn start(
    env: sys::napi_env,
    target: Target,
    input: Input,
    input_value: sys::napi_value,
) -> napi::Result<sys::napi_value> {
    let mut promise = ptr::null_mut();
    let mut deferred = ptr::null_mut();
    let mut keep = ptr::null_mut();
    let mut name = ptr::null_mut();
    // SAFETY: env is live on this thread (caller contract). The Work box is
    // handed to Node, which gives it back exactly once to `complete`.
    unsafe {
        if input.borrows_object && sys::napi_create_reference(env, input_value, 1, &mut keep) != sys::Status::napi_ok {
            return Err(errors::throw_internal(env, "cannot keep a reference to the call input"));
        }
        if sys::napi_create_promise(env, &mut deferred, &mut promise) != sys::Status::napi_ok {
            if !keep.is_null() {
                sys::napi_delete_reference(env, keep);
            }
            return Err(errors::throw_internal(env, "cannot create a promise"));
        }
        let what = "hotmod call";
        sys::napi_create_string_utf8(env, what.as_ptr().cast(), what.len() as isize, &mut name);
        let data = Box::into_raw(Box::new(Work { target, input, keep, deferred, work: ptr::null_mut(), result: None }));
        let mut work = ptr::null_mut();
        let created = sys::napi_create_async_work(
            env,
            ptr::null_mut(),
            name,
            Some(execute),
            Some(complete),
            data.cast(),
            &mut work,
        );
        if created != sys::Status::napi_ok {
            let data = Box::from_raw(data);
            settle_error(env, &data, Status::Internal.code(), "cannot create the asynchronous work");
            release(env, *data);
            return Ok(promise);
        }
        (*data).work = work;
        if sys::napi_queue_async_work(env, work) != sys::Status::napi_ok {
            sys::napi_delete_async_work(env, work);
            let data = Box::from_raw(data);
            settle_error(env, &data, Status::Internal.code(), "cannot queue the asynchronous work");
            release(env, *data);
        }
    }
    Ok(promise)
}

unsafe extern "C" fn execute(_env: sys::napi_env, data: *mut c_void) {
    // SAFETY: data is the Work box; only this worker touches it until
    // `complete` runs on the JavaScript thread.
    let work = unsafe { &mut *(data as *mut Work) };
    let r = catch_unwind(AssertUnwindSafe(|| work.target.call(work.input.bytes()))).unwrap_or_else(|_| {
        Err(hotmod_core::Error::new(Status::Internal, "internal error: the call panicked inside hotmod"))
    });
    work.result = Some(r);
}

unsafe extern "C" fn complete(env: sys::napi_env, status: sys::napi_status, data: *mut c_void) {
    // SAFETY: data is the Work box leaked by `start`, handed back once.
    let mut work = unsafe { Box::from_raw(data as *mut Work) };
    // SAFETY: on the JavaScript thread with a live env (Node calls
    // `complete` inside a handle scope).
    unsafe {
        sys::napi_delete_async_work(env, work.work);
        match (status, work.result.take()) {
            (sys::Status::napi_ok, Some(Ok(output))) => match crate::output::to_buffer(env, output) {
                Ok(buf) => {
                    sys::napi_resolve_deferred(env, work.deferred, buf);
                }
                Err(_) => {
                    let mut exc = ptr::null_mut();
                    sys::napi_get_and_clear_last_exception(env, &mut exc);
                    sys::napi_reject_deferred(env, work.deferred, exc);
                }
            },
            (sys::Status::napi_ok, Some(Err(e))) => settle_error(env, &work, e.status().code(), e.message()),
            (sys::Status::napi_cancelled, _) => {
                settle_error(env, &work, Status::Internal.code(), "the call was cancelled before it ran")
            }
            _ => settle_error(env, &work, Status::Internal.code(), "the asynchronous call did not run"),
        }
        release(env, *work);
    }
}

/// Rejects the call's promise with an error carrying `code`.
///
/// # Safety
/// Must run on the JavaScript thread of `env`, with `work.deferred` not yet settled.
unsafe fn settle_error(env: sys::napi_env, work: &Work, code: i32, message: &str) {
    // SAFETY: on the JavaScript thread (callers).
    unsafe {
        let err = errors::create(env, code, message, false);
        if !err.is_null() {
            sys::napi_reject_deferred(env, work.deferred, err);
        }
    }
}

/// Drops the keep-alive reference (the input may be collected after this).
///
/// # Safety
/// Must run on the JavaScript thread of `env`.
unsafe fn release(env: sys::napi_env, work: Work) {
    if !work.keep.is_null() {
        // SAFETY: on the JavaScript thread (callers); created in `start`.
        unsafe { sys::napi_delete_reference(env, work.keep) };
    }
    drop(work);
}
