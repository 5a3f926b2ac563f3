//! Lifecycle events delivered to a JavaScript callback.
//!
//! The core emits events synchronously on whichever thread caused them (the
//! JavaScript thread during `load`/`upgrade`/`unload`, a call thread when an
//! asynchronous call releases the last reference to a drained version, a
//! plugin's own thread for its log lines). Every event is queued through a
//! threadsafe function and delivered on the JavaScript thread, in order, on a
//! later turn of the event loop — so the callback may freely call back into
//! the runtime. An exception the callback throws is reported as an uncaught
//! exception, like one thrown by an `EventEmitter` listener.

use std::ffi::c_void;
use std::ptr;
use std::sync::Arc;

use hotmod_core::{Event, EventHandler, EventKind};
use napi::sys;

use crate::errors;
use crate::tsfn::Tsfn;

/// The JavaScript name of an event kind (`LifecycleEvent.kind`).
pub(crate) fn kind_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Loaded => "loaded",
        EventKind::Validated => "validated",
        EventKind::Activated => "activated",
        EventKind::Draining => "draining",
        EventKind::Unloaded => "unloaded",
        EventKind::UpgradeFailed => "upgradeFailed",
        EventKind::KeptMapped => "keptMapped",
        EventKind::Log => "log",
        EventKind::WatchError => "watchError",
    }
}

/// Makes a core event handler that forwards every event to `func`.
///
/// # Safety
/// Must run on the JavaScript thread of `env`; `func` must be a function.
pub(crate) unsafe fn handler(env: sys::napi_env, func: sys::napi_value) -> napi::Result<EventHandler> {
    // SAFETY: forwarded from the caller.
    let Some(tsfn) = (unsafe { Tsfn::new(env, func, "hotmod event handler", call_js) }) else {
        // SAFETY: as above.
        return Err(unsafe {
            errors::throw_internal(env, "cannot create a threadsafe function for the event handler")
        });
    };
    let tsfn = Arc::new(tsfn);
    Ok(Arc::new(move |ev: &Event| {
        // Dropped (not delivered) only when the environment is going away.
        let _ = tsfn.call(Box::new(ev.clone()));
    }))
}

unsafe extern "C" fn call_js(env: sys::napi_env, func: sys::napi_value, _ctx: *mut c_void, data: *mut c_void) {
    // SAFETY: data is a Box<Event> queued by `handler`, delivered once.
    let ev = unsafe { Box::from_raw(data as *mut Event) };
    if env.is_null() || func.is_null() {
        return;
    }
    // SAFETY: called by Node on the JavaScript thread with a live env and
    // an open handle scope.
    unsafe {
        let Some(obj) = event_object(env, &ev) else { return };
        let mut undefined = ptr::null_mut();
        sys::napi_get_undefined(env, &mut undefined);
        let mut ignored = ptr::null_mut();
        if sys::napi_call_function(env, undefined, func, 1, &obj, &mut ignored) != sys::Status::napi_ok {
            let mut exc = ptr::null_mut();
            if sys::napi_get_and_clear_last_exception(env, &mut exc) == sys::Status::napi_ok && !exc.is_null() {
                sys::napi_fatal_exception(env, exc);
            }
        }
    }
}

/// The JavaScript object for an event.
///
/// # Safety
/// Must run on the JavaScript thread of `env`, inside a handle scope.
unsafe fn event_object(env: sys::napi_env, ev: &Event) -> Option<sys::napi_value> {
    let mut obj = ptr::null_mut();
    // SAFETY: as in `call_js`.
    unsafe {
        if sys::napi_create_object(env, &mut obj) != sys::Status::napi_ok {
            return None;
        }
        set_str(env, obj, c"kind", kind_name(ev.kind));
        set_str(env, obj, c"module", &ev.module);
        set_str(env, obj, c"version", &ev.version);
        set_str(env, obj, c"path", &ev.path);
        set_str(env, obj, c"message", &ev.message);
        let mut code = ptr::null_mut();
        sys::napi_create_int32(env, ev.code, &mut code);
        sys::napi_set_named_property(env, obj, c"code".as_ptr(), code);
    }
    Some(obj)
}

/// Sets a string property.
///
/// # Safety
/// Must run on the JavaScript thread of `env`, inside a handle scope; `obj` must be an object.
unsafe fn set_str(env: sys::napi_env, obj: sys::napi_value, key: &std::ffi::CStr, value: &str) {
    let mut v = ptr::null_mut();
    // SAFETY: as in `call_js`.
    unsafe {
        sys::napi_create_string_utf8(env, value.as_ptr().cast(), value.len() as isize, &mut v);
        sys::napi_set_named_property(env, obj, key.as_ptr(), v);
    }
}
