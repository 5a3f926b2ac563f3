//! Method handles, calls by handle and by name, and output buffers.

use std::ffi::c_char;

use hotmod_core::{MethodHandle, Output, Status};

use crate::ffi::{bytes_arg, bytes_mut_arg, out_arg, str_arg, write_out, BoxHandle};
use crate::runtime::hotmod_runtime;

/// A resolved method: the fast path for repeated calls. Follows upgrades of
/// its module; answers `HOTMOD_STATUS_STALE_HANDLE` once the module is
/// unloaded and `HOTMOD_STATUS_SIGNATURE_CHANGED` after a forced upgrade
/// changed its signature. Thread-safe: one handle may be called from many
/// threads at once. Free with `hotmod_method_free`.
pub struct hotmod_method {
    _private: [u8; 0],
}

impl BoxHandle for hotmod_method {
    type Inner = MethodHandle;
}

/// Bytes returned by a call. When the plugin returned memory of its own the
/// buffer is a zero-copy view of it, and keeps that plugin version alive
/// until freed. May be read from any thread and freed on any thread, once.
pub struct hotmod_buffer {
    _private: [u8; 0],
}

impl BoxHandle for hotmod_buffer {
    type Inner = Output;
}

/// Frees a method handle. NULL is a no-op.
///
/// # Safety
/// `m` must be NULL or a handle from this library, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn hotmod_method_free(m: *mut hotmod_method) {
    ffi_value!((), {
        // SAFETY: per the contract.
        unsafe { hotmod_method::free(m) }
    })
}

/// Resolves `module`.`method` (both UTF-8) to a handle (`*out` owns it).
///
/// # Safety
/// `rt` from `hotmod_runtime_new`; strings NUL-terminated; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn hotmod_runtime_resolve(
    rt: *const hotmod_runtime,
    module: *const c_char,
    method: *const c_char,
    out: *mut *mut hotmod_method,
) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let rt = unsafe { hotmod_runtime::get(rt, "rt (hotmod_runtime *)")? };
        // SAFETY: per the contract.
        let (module, method) = unsafe { (str_arg(module, "module")?, str_arg(method, "method")?) };
        out_arg(out, "out (hotmod_method **)")?;
        let h = rt.method(module, method)?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(out, hotmod_method::into_c(h)) };
        Ok(())
    })
}

/// Calls a method through its handle; `*out` owns a buffer with the result
/// (zero-copy when the plugin returned its own memory). `input` may be NULL
/// when `input_len` is 0. Errors: `HOTMOD_STATUS_PLUGIN_ERROR`,
/// `HOTMOD_STATUS_PLUGIN_PANICKED`, `HOTMOD_STATUS_STALE_HANDLE`,
/// `HOTMOD_STATUS_SIGNATURE_CHANGED`, `HOTMOD_STATUS_INVALID_OUTPUT`.
///
/// # Safety
/// `m` a method handle; `input` valid for `input_len` bytes; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn hotmod_method_call(
    m: *const hotmod_method,
    input: *const u8,
    input_len: usize,
    out: *mut *mut hotmod_buffer,
) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let h = unsafe { hotmod_method::get(m, "m (hotmod_method *)")? };
        // SAFETY: per the contract.
        let input = unsafe { bytes_arg(input, input_len, "input")? };
        out_arg(out, "out (hotmod_buffer **)")?;
        let o = h.call(input)?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(out, hotmod_buffer::into_c(o)) };
        Ok(())
    })
}

/// Calls a method through its handle, writing the result into `dst`
/// (`dst_cap` bytes); `*out_len` receives its length. The fastest path: no
/// allocation. `HOTMOD_STATUS_OUTPUT_TOO_LARGE` if the result does not fit
/// (the message gives the size needed).
///
/// # Safety
/// `m` a method handle; `input` valid for `input_len` bytes; `dst` valid
/// for `dst_cap` writable bytes (NULL if 0); `out_len` writable.
#[no_mangle]
pub unsafe extern "C" fn hotmod_method_call_into(
    m: *const hotmod_method,
    input: *const u8,
    input_len: usize,
    dst: *mut u8,
    dst_cap: usize,
    out_len: *mut usize,
) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let h = unsafe { hotmod_method::get(m, "m (hotmod_method *)")? };
        // SAFETY: per the contract.
        let input = unsafe { bytes_arg(input, input_len, "input")? };
        // SAFETY: per the contract.
        let dst = unsafe { bytes_mut_arg(dst, dst_cap, "dst")? };
        out_arg(out_len, "out_len (size_t *)")?;
        let n = h.call_into(input, dst)?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(out_len, n) };
        Ok(())
    })
}

/// Calls `module`.`method` by name (both UTF-8); `*out` owns a buffer with the result.
/// Convenient; for repeated calls resolve a handle once instead. Adds
/// `HOTMOD_STATUS_MODULE_NOT_FOUND` and `HOTMOD_STATUS_METHOD_NOT_FOUND` to
/// the errors of `hotmod_method_call`.
///
/// # Safety
/// `rt` from `hotmod_runtime_new`; strings NUL-terminated; `input` valid for
/// `input_len` bytes; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn hotmod_runtime_call(
    rt: *const hotmod_runtime,
    module: *const c_char,
    method: *const c_char,
    input: *const u8,
    input_len: usize,
    out: *mut *mut hotmod_buffer,
) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let rt = unsafe { hotmod_runtime::get(rt, "rt (hotmod_runtime *)")? };
        // SAFETY: per the contract.
        let (module, method) = unsafe { (str_arg(module, "module")?, str_arg(method, "method")?) };
        // SAFETY: per the contract.
        let input = unsafe { bytes_arg(input, input_len, "input")? };
        out_arg(out, "out (hotmod_buffer **)")?;
        let o = rt.call(module, method, input)?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(out, hotmod_buffer::into_c(o)) };
        Ok(())
    })
}

/// Calls `module`.`method` by name into `dst`, like `hotmod_method_call_into`.
///
/// # Safety
/// As for `hotmod_runtime_call` and `hotmod_method_call_into`.
#[no_mangle]
pub unsafe extern "C" fn hotmod_runtime_call_into(
    rt: *const hotmod_runtime,
    module: *const c_char,
    method: *const c_char,
    input: *const u8,
    input_len: usize,
    dst: *mut u8,
    dst_cap: usize,
    out_len: *mut usize,
) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let rt = unsafe { hotmod_runtime::get(rt, "rt (hotmod_runtime *)")? };
        // SAFETY: per the contract.
        let (module, method) = unsafe { (str_arg(module, "module")?, str_arg(method, "method")?) };
        // SAFETY: per the contract.
        let input = unsafe { bytes_arg(input, input_len, "input")? };
        // SAFETY: per the contract.
        let dst = unsafe { bytes_mut_arg(dst, dst_cap, "dst")? };
        out_arg(out_len, "out_len (size_t *)")?;
        let n = rt.call_into(module, method, input, dst)?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(out_len, n) };
        Ok(())
    })
}

/// The bytes of a buffer: `*data` (NULL only if `*len` is 0) and `*len`,
/// valid until the buffer is freed.
///
/// # Safety
/// `b` a buffer; `data` and `len` writable.
#[no_mangle]
pub unsafe extern "C" fn hotmod_buffer_data(b: *const hotmod_buffer, data: *mut *const u8, len: *mut usize) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let o = unsafe { hotmod_buffer::get(b, "b (hotmod_buffer *)")? };
        out_arg(data, "data (const uint8_t **)")?;
        out_arg(len, "len (size_t *)")?;
        // SAFETY: checked non-NULL.
        unsafe {
            write_out(data, o.as_ptr());
            write_out(len, o.len());
        }
        Ok(())
    })
}

/// Frees a buffer; plugin memory is released through the plugin's callback
/// exactly once. NULL is a no-op.
///
/// # Safety
/// `b` must be NULL or a buffer from this library, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn hotmod_buffer_free(b: *mut hotmod_buffer) {
    ffi_value!((), {
        // SAFETY: per the contract.
        unsafe { hotmod_buffer::free(b) }
    })
}
