//! Reading JavaScript arguments: call input (zero-copy for binary views) and
//! the plain strings and options the API takes.

use std::ptr;

use napi::sys;

use crate::errors;

/// Call input read from a JavaScript value.
///
/// Binary values (`Buffer`, any `TypedArray`, `DataView`, `ArrayBuffer`) are
/// borrowed in place: `ptr` points into the JavaScript object's memory, which
/// stays valid while the object is alive and not detached. Strings are
/// encoded to UTF-8 into `owned`.
pub(crate) struct Input {
    ptr: *const u8,
    len: usize,
    owned: Option<Vec<u8>>,
    /// Whether `ptr` borrows a JavaScript object (which an asynchronous call
    /// must keep alive with a reference until it completes).
    pub(crate) borrows_object: bool,
}

// SAFETY: the bytes are only read. An asynchronous call holds either a copy
// (`owned`) or memory of a SharedArrayBuffer, which cannot be detached and
// which the call keeps alive by a reference for as long as the Input exists
// (see `read_async`).
unsafe impl Send for Input {}

impl Input {
    fn empty() -> Input {
        Input { ptr: ptr::null(), len: 0, owned: None, borrows_object: false }
    }

    fn borrowed(data: *mut std::ffi::c_void, len: usize) -> Input {
        if data.is_null() || len == 0 {
            return Input { ptr: ptr::null(), len: 0, owned: None, borrows_object: true };
        }
        Input { ptr: data as *const u8, len, owned: None, borrows_object: true }
    }

    /// The input bytes.
    #[inline]
    pub(crate) fn bytes(&self) -> &[u8] {
        if let Some(v) = &self.owned {
            return v;
        }
        if self.len == 0 {
            return &[];
        }
        // SAFETY: ptr/len describe the live memory of a JavaScript binary
        // value (see the type's docs), non-null and non-empty here.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Input {
    /// The bytes, writable: the target of `callSyncInto`.
    ///
    /// # Safety
    /// The input must borrow a JavaScript object (`borrows_object`) that
    /// nothing else reads or writes while the returned slice is in use.
    pub(crate) unsafe fn bytes_mut(&mut self) -> &mut [u8] {
        if self.len == 0 || self.owned.is_some() {
            return &mut [];
        }
        // SAFETY: ptr/len describe the live memory of a JavaScript binary
        // value, non-null and non-empty here; exclusive per the contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr as *mut u8, self.len) }
    }

    /// Whether the two inputs' memory overlaps.
    pub(crate) fn overlaps(&self, other: &Input) -> bool {
        let (a, b) = (self.bytes().as_ptr_range(), other.bytes().as_ptr_range());
        !self.bytes().is_empty() && !other.bytes().is_empty() && a.start < b.end && b.start < a.end
    }

    /// An owned copy of the bytes.
    pub(crate) fn to_owned_input(&self) -> Input {
        let v = self.bytes().to_vec();
        Input { ptr: ptr::null(), len: v.len(), owned: Some(v), borrows_object: false }
    }
}

/// Reads the input of an asynchronous call, which runs while JavaScript
/// goes on: any memory an `ArrayBuffer` owns may be detached, transferred
/// to another thread or owner, and freed before the plugin reads it, and
/// no N-API call can pin it. So the bytes are copied here, at call time,
/// except for views over a `SharedArrayBuffer`: that memory can be neither
/// detached nor transferred, and lives as long as the view (which the call
/// keeps alive by a reference), so it is read in place.
///
/// # Safety
/// Must run on the JavaScript thread of `env` with `v` a live value.
pub(crate) unsafe fn read_async(env: sys::napi_env, v: sys::napi_value, ctx: &str) -> napi::Result<Input> {
    // SAFETY: forwarded from the caller.
    unsafe {
        let input = read(env, v, ctx)?;
        if !input.borrows_object {
            return Ok(input);
        }
        if input.bytes().is_empty() {
            return Ok(Input::empty());
        }
        if over_shared_memory(env, v) {
            return Ok(input);
        }
        Ok(input.to_owned_input())
    }
}

/// Whether `v` is a `TypedArray` (a `Buffer` included) or `DataView` over a
/// `SharedArrayBuffer`. N-API has no test for a `SharedArrayBuffer` in the
/// Node versions supported, but a view's buffer is an `ArrayBuffer` or a
/// `SharedArrayBuffer`, and `napi_is_arraybuffer` is false for the latter.
///
/// # Safety
/// Must run on the JavaScript thread of `env` with `v` a live value.
unsafe fn over_shared_memory(env: sys::napi_env, v: sys::napi_value) -> bool {
    let mut yes = false;
    let mut data = ptr::null_mut();
    let mut len = 0usize;
    let mut offset = 0usize;
    let mut ab = ptr::null_mut();
    // SAFETY: as in `read`.
    unsafe {
        if sys::napi_is_typedarray(env, v, &mut yes) == sys::Status::napi_ok && yes {
            let mut ty = 0;
            if sys::napi_get_typedarray_info(env, v, &mut ty, &mut len, &mut data, &mut ab, &mut offset)
                != sys::Status::napi_ok
            {
                return false;
            }
        } else if sys::napi_is_dataview(env, v, &mut yes) == sys::Status::napi_ok && yes {
            if sys::napi_get_dataview_info(env, v, &mut len, &mut data, &mut ab, &mut offset) != sys::Status::napi_ok {
                return false;
            }
        } else {
            return false;
        }
        let mut plain = true;
        !ab.is_null() && sys::napi_is_arraybuffer(env, ab, &mut plain) == sys::Status::napi_ok && !plain
    }
}

/// Reads call input. `undefined` (an omitted argument) is empty input.
///
/// # Safety
/// Must run on the JavaScript thread of `env` with `v` a live value.
#[inline]
pub(crate) unsafe fn read(env: sys::napi_env, v: sys::napi_value, ctx: &str) -> napi::Result<Input> {
    let mut data = ptr::null_mut();
    let mut len = 0usize;
    // SAFETY: env/v are live on this thread (caller contract). Node answers
    // for every ArrayBufferView here (Buffer, TypedArray, DataView), with the
    // view's own byte range; anything else is refused with napi_invalid_arg.
    unsafe {
        if sys::napi_get_buffer_info(env, v, &mut data, &mut len) == sys::Status::napi_ok {
            return Ok(Input::borrowed(data, len));
        }
        read_slow(env, v, ctx)
    }
}

/// The rest of [`read`]: `undefined`, strings, `ArrayBuffer`s and views
/// that `napi_get_buffer_info` refused.
///
/// # Safety
/// As for [`read`].
#[cold]
unsafe fn read_slow(env: sys::napi_env, v: sys::napi_value, ctx: &str) -> napi::Result<Input> {
    let mut data = ptr::null_mut();
    let mut len = 0usize;
    let mut t = 0;
    // SAFETY: as in `read`.
    unsafe {
        sys::napi_typeof(env, v, &mut t);
        match t {
            sys::ValueType::napi_undefined => return Ok(Input::empty()),
            sys::ValueType::napi_string => {
                let s = string_bytes(env, v).ok_or_else(|| errors::throw_internal(env, "cannot read a string"))?;
                return Ok(Input { ptr: ptr::null(), len: s.len(), owned: Some(s), borrows_object: false });
            }
            sys::ValueType::napi_object => {
                let mut yes = false;
                if sys::napi_is_arraybuffer(env, v, &mut yes) == sys::Status::napi_ok
                    && yes
                    && sys::napi_get_arraybuffer_info(env, v, &mut data, &mut len) == sys::Status::napi_ok
                {
                    return Ok(Input::borrowed(data, len));
                }
                if let Some(input) = view_fallback(env, v) {
                    return Ok(input);
                }
            }
            _ => {}
        }
        Err(errors::throw_invalid(
            env,
            &format!(
                "{ctx}: expected the input as a Buffer, TypedArray, DataView, ArrayBuffer or string, found {}",
                describe_input(env, v)
            ),
        ))
    }
}

/// Typed arrays and data views, for runtimes whose `napi_get_buffer_info`
/// accepts only Node `Buffer`s.
///
/// # Safety
/// As for [`read`].
unsafe fn view_fallback(env: sys::napi_env, v: sys::napi_value) -> Option<Input> {
    let mut yes = false;
    let mut data = ptr::null_mut();
    let mut len = 0usize;
    let mut offset = 0usize;
    let mut ab = ptr::null_mut();
    // SAFETY: as in `read`.
    unsafe {
        if sys::napi_is_typedarray(env, v, &mut yes) == sys::Status::napi_ok && yes {
            let mut ty = 0;
            if sys::napi_get_typedarray_info(env, v, &mut ty, &mut len, &mut data, &mut ab, &mut offset)
                == sys::Status::napi_ok
            {
                return Some(Input::borrowed(data, len * typed_array_element_size(ty)));
            }
        }
        if sys::napi_is_dataview(env, v, &mut yes) == sys::Status::napi_ok
            && yes
            && sys::napi_get_dataview_info(env, v, &mut len, &mut data, &mut ab, &mut offset) == sys::Status::napi_ok
        {
            return Some(Input::borrowed(data, len));
        }
    }
    None
}

fn typed_array_element_size(ty: sys::napi_typedarray_type) -> usize {
    use sys::TypedarrayType as T;
    match ty {
        T::int8_array | T::uint8_array | T::uint8_clamped_array => 1,
        T::int16_array | T::uint16_array => 2,
        T::int32_array | T::uint32_array | T::float32_array => 4,
        _ => 8,
    }
}

/// What a refused input is, for the error message.
///
/// # Safety
/// Must run on the JavaScript thread of `env`.
unsafe fn describe_input(env: sys::napi_env, v: sys::napi_value) -> &'static str {
    let mut yes = false;
    // SAFETY: as in `read`.
    unsafe {
        if sys::napi_is_arraybuffer(env, v, &mut yes) == sys::Status::napi_ok && yes {
            return "an ArrayBuffer";
        }
        // SharedArrayBuffer and other objects.
        errors::describe_value(env, v)
    }
}

/// The UTF-8 bytes of a JavaScript string, or None if `v` is not a string.
///
/// # Safety
/// Must run on the JavaScript thread of `env`.
pub(crate) unsafe fn string_bytes(env: sys::napi_env, v: sys::napi_value) -> Option<Vec<u8>> {
    let mut len = 0usize;
    // SAFETY: a NULL buffer asks only for the length; then a buffer of
    // len + 1 bytes (room for the NUL napi writes) receives the bytes.
    unsafe {
        if sys::napi_get_value_string_utf8(env, v, ptr::null_mut(), 0, &mut len) != sys::Status::napi_ok {
            return None;
        }
        let mut buf: Vec<u8> = Vec::with_capacity(len + 1);
        let mut written = 0usize;
        if sys::napi_get_value_string_utf8(env, v, buf.as_mut_ptr().cast(), len + 1, &mut written)
            != sys::Status::napi_ok
        {
            return None;
        }
        buf.set_len(written);
        Some(buf)
    }
}

/// A JavaScript string as a Rust `String`, or None if `v` is not a string.
///
/// # Safety
/// Must run on the JavaScript thread of `env`.
pub(crate) unsafe fn string_value(env: sys::napi_env, v: sys::napi_value) -> Option<String> {
    // SAFETY: forwarded from the caller.
    let bytes = unsafe { string_bytes(env, v)? };
    // napi produces valid UTF-8 (lone surrogates become U+FFFD).
    Some(String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// A required string argument, or a `TypeError` (code 3002) naming it.
///
/// # Safety
/// Must run on the JavaScript thread of `env`.
pub(crate) unsafe fn string_arg(env: sys::napi_env, v: sys::napi_value, ctx: &str, what: &str) -> napi::Result<String> {
    // SAFETY: forwarded from the caller.
    unsafe {
        match string_value(env, v) {
            Some(s) => Ok(s),
            None => Err(errors::throw_invalid(
                env,
                &format!("{ctx}: expected {what} as a string, found {}", errors::describe_value(env, v)),
            )),
        }
    }
}

/// Runs `f` with a string argument, read into a stack buffer when it is
/// short (the names of modules and methods are), or a `TypeError` (code
/// 3002) naming it.
///
/// # Safety
/// Must run on the JavaScript thread of `env`.
#[inline]
pub(crate) unsafe fn with_str<R>(
    env: sys::napi_env,
    v: sys::napi_value,
    ctx: &str,
    what: &str,
    f: impl FnOnce(&str) -> napi::Result<R>,
) -> napi::Result<R> {
    let mut buf = [0u8; 128];
    let mut len = 0usize;
    // SAFETY: the buffer has room for its length (napi writes a NUL into the
    // last byte); a string that fills it may be truncated, so it is read
    // again in full.
    unsafe {
        if sys::napi_get_value_string_utf8(env, v, buf.as_mut_ptr().cast(), buf.len(), &mut len) != sys::Status::napi_ok
        {
            return Err(errors::throw_invalid(
                env,
                &format!("{ctx}: expected {what} as a string, found {}", errors::describe_value(env, v)),
            ));
        }
        if len < buf.len() - 1 {
            if let Ok(s) = std::str::from_utf8(&buf[..len]) {
                return f(s);
            }
        }
        let s = string_arg(env, v, ctx, what)?;
        f(&s)
    }
}
