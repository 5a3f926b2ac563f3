//! Errors as JavaScript `Error` objects carrying the numeric hotmod status in
//! `code`, so `err.code === Status.PLUGIN_ERROR` works the same for errors
//! from the core, from argument checks, and from rejected promises.

use std::ptr;

use hotmod_core::Status;
use napi::sys;

/// Builds `new Error(message)` (a `TypeError` when `type_error`) with a
/// numeric `code` property. Returns NULL only when the environment cannot
/// create values any more (it is tearing down).
///
/// # Safety
/// Must run on the JavaScript thread of `env`, inside a handle scope.
pub(crate) unsafe fn create(env: sys::napi_env, code: i32, message: &str, type_error: bool) -> sys::napi_value {
    let mut msg = ptr::null_mut();
    let mut err = ptr::null_mut();
    let mut code_value = ptr::null_mut();
    // SAFETY: env is live on this thread (caller contract); the string is
    // passed with its exact byte length.
    unsafe {
        if sys::napi_create_string_utf8(env, message.as_ptr().cast(), message.len() as isize, &mut msg)
            != sys::Status::napi_ok
        {
            return ptr::null_mut();
        }
        let made = if type_error {
            sys::napi_create_type_error(env, ptr::null_mut(), msg, &mut err)
        } else {
            sys::napi_create_error(env, ptr::null_mut(), msg, &mut err)
        };
        if made != sys::Status::napi_ok {
            return ptr::null_mut();
        }
        if sys::napi_create_int32(env, code, &mut code_value) == sys::Status::napi_ok {
            sys::napi_set_named_property(env, err, c"code".as_ptr(), code_value);
        }
    }
    err
}

/// Throws an error built by [`create`] and returns the marker error that
/// tells napi-rs an exception is already pending (so it throws nothing else).
///
/// # Safety
/// As for [`create`].
pub(crate) unsafe fn throw(env: sys::napi_env, code: i32, message: &str, type_error: bool) -> napi::Error {
    // SAFETY: forwarded from the caller.
    unsafe {
        let mut pending = false;
        sys::napi_is_exception_pending(env, &mut pending);
        if !pending {
            let err = create(env, code, message, type_error);
            if !err.is_null() {
                sys::napi_throw(env, err);
            }
        }
    }
    napi::Error::new(napi::Status::PendingException, message.to_owned())
}

/// Throws a core error (its status becomes `code`).
///
/// # Safety
/// As for [`create`].
pub(crate) unsafe fn throw_core(env: sys::napi_env, e: &hotmod_core::Error) -> napi::Error {
    // SAFETY: forwarded from the caller.
    unsafe { throw(env, e.status().code(), e.message(), false) }
}

/// Throws a `TypeError` with code 3002 (invalid argument).
///
/// # Safety
/// As for [`create`].
pub(crate) unsafe fn throw_invalid(env: sys::napi_env, message: &str) -> napi::Error {
    // SAFETY: forwarded from the caller.
    unsafe { throw(env, Status::InvalidArgument.code(), message, true) }
}

/// Throws an internal error (code 9002): a bug in the binding, reported
/// instead of aborting the process.
///
/// # Safety
/// As for [`create`].
pub(crate) unsafe fn throw_internal(env: sys::napi_env, message: &str) -> napi::Error {
    // SAFETY: forwarded from the caller.
    unsafe { throw(env, Status::Internal.code(), message, false) }
}

/// The message of a pending JavaScript exception, which is cleared (used
/// when JavaScript code called by a plugin threw: the plugin gets the
/// message as an error, and the exception goes no further).
///
/// # Safety
/// Must run on the JavaScript thread of `env`, inside a handle scope.
pub(crate) unsafe fn take_exception_message(env: sys::napi_env) -> String {
    let mut exc = ptr::null_mut();
    // SAFETY: env is live on this thread (caller contract).
    unsafe {
        if sys::napi_get_and_clear_last_exception(env, &mut exc) != sys::Status::napi_ok || exc.is_null() {
            return "an exception was thrown".to_owned();
        }
        let mut text = ptr::null_mut();
        if sys::napi_coerce_to_string(env, exc, &mut text) != sys::Status::napi_ok {
            // Coercion itself threw (for example a Symbol): drop that too.
            let mut ignored = ptr::null_mut();
            sys::napi_get_and_clear_last_exception(env, &mut ignored);
            return "an exception that cannot be converted to a string was thrown".to_owned();
        }
        crate::input::string_value(env, text).unwrap_or_else(|| "an exception was thrown".to_owned())
    }
}

/// The `typeof`-style name of a value, for error messages ("found number").
///
/// # Safety
/// Must run on the JavaScript thread of `env`.
pub(crate) unsafe fn describe_value(env: sys::napi_env, v: sys::napi_value) -> &'static str {
    let mut t = 0;
    // SAFETY: env is live on this thread (caller contract).
    if unsafe { sys::napi_typeof(env, v, &mut t) } != sys::Status::napi_ok {
        return "an unknown value";
    }
    match t {
        sys::ValueType::napi_undefined => "undefined",
        sys::ValueType::napi_null => "null",
        sys::ValueType::napi_boolean => "a boolean",
        sys::ValueType::napi_number => "a number",
        sys::ValueType::napi_string => "a string",
        sys::ValueType::napi_symbol => "a symbol",
        sys::ValueType::napi_function => "a function",
        sys::ValueType::napi_bigint => "a bigint",
        sys::ValueType::napi_external => "an external",
        _ => {
            let mut is_array = false;
            // SAFETY: as above.
            unsafe { sys::napi_is_array(env, v, &mut is_array) };
            if is_array {
                "an array"
            } else {
                "an object"
            }
        }
    }
}
