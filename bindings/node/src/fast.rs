//! The synchronous call path, shared by the classes' methods and by raw
//! N-API callbacks that `index.js` uses instead of them.
//!
//! napi-rs's generated glue for a class method (receiver unwrapping, type
//! tags, borrow tracking) costs several times a whole plugin call, so the
//! hot calls also exist as plain N-API callbacks taking an `External` that
//! holds what the class object holds (`__callHandle(handle, input)`, …).
//! `index.js` installs them as the classes' `callSync`/`callSyncInto`; both
//! paths run the same functions below, so they behave identically.

use std::cell::Cell;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::Arc;

use hotmod_core as core;
use napi::sys;

use crate::{errors, input, output};

/// Calls a resolved method (see `Method.callSync`).
///
/// # Safety
/// Must run on the JavaScript thread of `env`.
#[inline]
pub(crate) unsafe fn call_handle(
    env: sys::napi_env,
    h: &core::MethodHandle,
    input: sys::napi_value,
) -> napi::Result<sys::napi_value> {
    // SAFETY: forwarded from the caller.
    unsafe {
        let input = input::read(env, input, "Method.callSync")?;
        // The core's default offer lives on its stack, and an output of up
        // to INLINE_OUTPUT bytes is returned inline: no allocation at all
        // for small results (a larger offer is a heap allocation per call).
        match h.call_with_offer(input.bytes(), core::DEFAULT_OUTPUT_OFFER) {
            Ok(out) => output::to_sync_result(env, out),
            Err(e) => Err(errors::throw_core(env, &e)),
        }
    }
}

/// Calls a resolved method into `target` (see `Method.callSyncInto`).
///
/// # Safety
/// Must run on the JavaScript thread of `env`.
pub(crate) unsafe fn call_handle_into(
    env: sys::napi_env,
    h: &core::MethodHandle,
    input: sys::napi_value,
    target: sys::napi_value,
) -> napi::Result<u32> {
    // SAFETY: forwarded from the caller. The target's memory is the
    // JavaScript object's, alive for the call.
    unsafe {
        let mut input = input::read(env, input, "Method.callSyncInto")?;
        let mut dst = input::read(env, target, "Method.callSyncInto (target)")?;
        if !dst.borrows_object {
            return Err(errors::throw_invalid(
                env,
                "Method.callSyncInto: expected the target as a Buffer, TypedArray, DataView or ArrayBuffer, found a string or undefined",
            ));
        }
        if input.overlaps(&dst) {
            // The plugin may write the output while still reading the input.
            input = input.to_owned_input();
        }
        match h.call_into(input.bytes(), dst.bytes_mut()) {
            Ok(n) => Ok(n as u32),
            Err(e) => Err(errors::throw_core(env, &e)),
        }
    }
}

/// Calls a method of a module by name (see `Module.callSync`).
///
/// # Safety
/// Must run on the JavaScript thread of `env`.
pub(crate) unsafe fn call_module(
    env: sys::napi_env,
    m: &core::Module,
    method: sys::napi_value,
    input: sys::napi_value,
) -> napi::Result<sys::napi_value> {
    // SAFETY: forwarded from the caller.
    unsafe {
        let input = input::read(env, input, "Module.callSync")?;
        input::with_str(env, method, "Module.callSync", "the method name", |method| {
            match m.call(method, input.bytes()) {
                Ok(out) => output::to_sync_result(env, out),
                Err(e) => Err(errors::throw_core(env, &e)),
            }
        })
    }
}

/// Calls `module.method` by name (see `Runtime.callSync`).
///
/// # Safety
/// Must run on the JavaScript thread of `env`.
pub(crate) unsafe fn call_name(
    env: sys::napi_env,
    rt: &core::Runtime,
    module: sys::napi_value,
    method: sys::napi_value,
    input: sys::napi_value,
) -> napi::Result<sys::napi_value> {
    const CTX: &str = "Runtime.callSync";
    // SAFETY: forwarded from the caller.
    unsafe {
        let input = input::read(env, input, CTX)?;
        input::with_str(env, module, CTX, "the module name", |module| {
            input::with_str(env, method, CTX, "the method name", |method| {
                match rt.call(module, method, input.bytes()) {
                    Ok(out) => output::to_sync_result(env, out),
                    Err(e) => Err(errors::throw_core(env, &e)),
                }
            })
        })
    }
}

/// Type tags of the `External`s handed to `index.js`, so a forged or
/// foreign `External` is refused instead of misread.
const HANDLE_TAG: sys::napi_type_tag =
    sys::napi_type_tag { lower: 0x686f_746d_6f64_0001, upper: 0x9e37_79b9_7f4a_7c15 };
const MODULE_TAG: sys::napi_type_tag =
    sys::napi_type_tag { lower: 0x686f_746d_6f64_0002, upper: 0x9e37_79b9_7f4a_7c15 };
const RUNTIME_TAG: sys::napi_type_tag =
    sys::napi_type_tag { lower: 0x686f_746d_6f64_0003, upper: 0x9e37_79b9_7f4a_7c15 };

/// What an `External` may hold.
pub(crate) trait Tagged: Sized + 'static {
    /// Its type tag.
    const TAG: sys::napi_type_tag;
    /// The last `External` data pointer of this type whose tag was checked
    /// on this thread (cleared when that box is freed).
    fn verified() -> &'static std::thread::LocalKey<Cell<*mut c_void>>;
}

thread_local! {
    static VERIFIED_HANDLE: Cell<*mut c_void> = const { Cell::new(ptr::null_mut()) };
    static VERIFIED_MODULE: Cell<*mut c_void> = const { Cell::new(ptr::null_mut()) };
    static VERIFIED_RUNTIME: Cell<*mut c_void> = const { Cell::new(ptr::null_mut()) };
}

impl Tagged for Arc<core::MethodHandle> {
    const TAG: sys::napi_type_tag = HANDLE_TAG;
    fn verified() -> &'static std::thread::LocalKey<Cell<*mut c_void>> {
        &VERIFIED_HANDLE
    }
}
impl Tagged for core::Module {
    const TAG: sys::napi_type_tag = MODULE_TAG;
    fn verified() -> &'static std::thread::LocalKey<Cell<*mut c_void>> {
        &VERIFIED_MODULE
    }
}
impl Tagged for Arc<core::Runtime> {
    const TAG: sys::napi_type_tag = RUNTIME_TAG;
    fn verified() -> &'static std::thread::LocalKey<Cell<*mut c_void>> {
        &VERIFIED_RUNTIME
    }
}

unsafe extern "C" fn drop_boxed<T: Tagged>(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    // The address may be reused for a box of another type: forget it.
    let _ = T::verified().try_with(|v| {
        if v.get() == data {
            v.set(ptr::null_mut());
        }
    });
    // SAFETY: data is the Box<T> leaked by `external`, finalized once.
    drop(unsafe { Box::from_raw(data as *mut T) });
}

/// A type-tagged `External` owning `value`.
///
/// # Safety
/// Must run on the JavaScript thread of `env`.
pub(crate) unsafe fn external<T: Tagged>(env: sys::napi_env, value: T) -> napi::Result<sys::napi_value> {
    let data = Box::into_raw(Box::new(value));
    let mut result = ptr::null_mut();
    // SAFETY: env is live on this thread (caller contract); on success the
    // finalizer owns the box.
    unsafe {
        if sys::napi_create_external(env, data.cast(), Some(drop_boxed::<T>), ptr::null_mut(), &mut result)
            != sys::Status::napi_ok
        {
            drop(Box::from_raw(data));
            return Err(errors::throw_internal(env, "cannot create an external"));
        }
        sys::napi_type_tag_object(env, result, &T::TAG);
    }
    Ok(result)
}

/// The value of an `External` made by [`external`] with the same type.
///
/// The type tag check costs more than the rest of the unwrapping, so the
/// data pointer of the last `External` that passed it is remembered: an
/// `External` with that pointer holds that live box (boxes are forgotten
/// when freed, before their address can be reused), so it needs no check.
///
/// # Safety
/// Must run on the JavaScript thread of `env`.
#[inline]
unsafe fn unwrap<'a, T: Tagged>(env: sys::napi_env, v: sys::napi_value, ctx: &str) -> napi::Result<&'a T> {
    let mut ok = false;
    let mut data = ptr::null_mut();
    let mut t = 0;
    // SAFETY: env is live on this thread; napi refuses anything but an
    // External (without throwing). A remembered pointer is a live Box<T>
    // (see above), alive while `v` is (an argument of the current call).
    unsafe {
        if sys::napi_get_value_external(env, v, &mut data) == sys::Status::napi_ok
            && !data.is_null()
            && T::verified().with(|c| c.get()) == data
        {
            return Ok(&*(data as *const T));
        }
    }
    // SAFETY: env is live on this thread; the tag proves the External holds
    // a T, alive while `v` is (it is an argument of the current call).
    unsafe {
        if sys::napi_typeof(env, v, &mut t) != sys::Status::napi_ok
            || t != sys::ValueType::napi_external
            || sys::napi_check_object_type_tag(env, v, &T::TAG, &mut ok) != sys::Status::napi_ok
            || !ok
            || sys::napi_get_value_external(env, v, &mut data) != sys::Status::napi_ok
            || data.is_null()
        {
            return Err(errors::throw_invalid(env, &format!("{ctx}: expected the object's internal handle")));
        }
        T::verified().with(|c| c.set(data));
        Ok(&*(data as *const T))
    }
}

/// Runs a raw callback body: reads up to N arguments, turns an error (its
/// exception already thrown) into NULL, and a panic into a thrown error.
///
/// # Safety
/// Must be called from an N-API callback, with the `env` and `info` it was given.
#[inline]
unsafe fn raw<const N: usize>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
    f: impl FnOnce([sys::napi_value; N]) -> napi::Result<sys::napi_value>,
) -> sys::napi_value {
    let mut argc = N;
    let mut argv = [ptr::null_mut(); N];
    // SAFETY: N-API calls the callback on the JavaScript thread with a live
    // env; missing arguments are filled with `undefined`.
    unsafe {
        if sys::napi_get_cb_info(env, info, &mut argc, argv.as_mut_ptr(), ptr::null_mut(), ptr::null_mut())
            != sys::Status::napi_ok
        {
            return ptr::null_mut();
        }
        match catch_unwind(AssertUnwindSafe(|| f(argv))) {
            Ok(Ok(v)) => v,
            Ok(Err(_)) => ptr::null_mut(),
            Err(_) => {
                errors::throw_internal(env, "internal error: a panic in the hotmod binding");
                ptr::null_mut()
            }
        }
    }
}

unsafe extern "C" fn cb_call_handle(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: called by N-API on the JavaScript thread.
    unsafe {
        raw::<2>(env, info, |[h, input]| {
            let h = unwrap::<Arc<core::MethodHandle>>(env, h, "Method.callSync")?;
            call_handle(env, h, input)
        })
    }
}

unsafe extern "C" fn cb_call_handle_into(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: called by N-API on the JavaScript thread.
    unsafe {
        raw::<3>(env, info, |[h, input, target]| {
            let h = unwrap::<Arc<core::MethodHandle>>(env, h, "Method.callSyncInto")?;
            let n = call_handle_into(env, h, input, target)?;
            let mut result = ptr::null_mut();
            sys::napi_create_uint32(env, n, &mut result);
            Ok(result)
        })
    }
}

unsafe extern "C" fn cb_call_module(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: called by N-API on the JavaScript thread.
    unsafe {
        raw::<3>(env, info, |[m, method, input]| {
            let m = unwrap::<core::Module>(env, m, "Module.callSync")?;
            call_module(env, m, method, input)
        })
    }
}

unsafe extern "C" fn cb_call_name(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: called by N-API on the JavaScript thread.
    unsafe {
        raw::<4>(env, info, |[rt, module, method, input]| {
            let rt = unwrap::<Arc<core::Runtime>>(env, rt, "Runtime.callSync")?;
            call_name(env, rt, module, method, input)
        })
    }
}

/// Adds the raw callbacks to the module's exports.
///
/// # Safety
/// Must run on the JavaScript thread of `env`, at module registration.
pub(crate) unsafe fn register(env: sys::napi_env, exports: sys::napi_value) -> napi::Result<()> {
    let fns: [(&std::ffi::CStr, sys::napi_callback); 4] = [
        (c"__callHandle", Some(cb_call_handle)),
        (c"__callHandleInto", Some(cb_call_handle_into)),
        (c"__callModule", Some(cb_call_module)),
        (c"__callName", Some(cb_call_name)),
    ];
    for (name, cb) in fns {
        let mut f = ptr::null_mut();
        // SAFETY: as the function's contract.
        unsafe {
            if sys::napi_create_function(env, name.as_ptr(), -1, cb, ptr::null_mut(), &mut f) != sys::Status::napi_ok
                || sys::napi_set_named_property(env, exports, name.as_ptr(), f) != sys::Status::napi_ok
            {
                return Err(napi::Error::from_reason(format!("cannot export {}", name.to_string_lossy())));
            }
        }
    }
    Ok(())
}
