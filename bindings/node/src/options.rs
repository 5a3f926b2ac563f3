//! Option objects (`{ cascade: true }`, …), read strictly: a misspelt or
//! mistyped option is an error naming it, never silently ignored.

use std::ptr;

use napi::sys;

use crate::errors;

/// A plain options object that was passed (or not).
pub(crate) struct Options {
    env: sys::napi_env,
    obj: Option<sys::napi_value>,
    ctx: &'static str,
}

impl Options {
    /// Reads `v` as an options object accepting only `allowed` keys;
    /// `undefined` means no options.
    ///
    /// # Safety
    /// Must run on the JavaScript thread of `env`.
    pub(crate) unsafe fn new(
        env: sys::napi_env,
        v: sys::napi_value,
        ctx: &'static str,
        allowed: &[&str],
    ) -> napi::Result<Options> {
        let mut t = 0;
        // SAFETY: env is live on this thread (caller contract).
        unsafe {
            sys::napi_typeof(env, v, &mut t);
            if t == sys::ValueType::napi_undefined {
                return Ok(Options { env, obj: None, ctx });
            }
            let mut is_array = false;
            sys::napi_is_array(env, v, &mut is_array);
            if t != sys::ValueType::napi_object || is_array {
                return Err(errors::throw_invalid(
                    env,
                    &format!("{ctx}: expected the options as an object, found {}", errors::describe_value(env, v)),
                ));
            }
            let mut keys = ptr::null_mut();
            if sys::napi_get_property_names(env, v, &mut keys) != sys::Status::napi_ok {
                return Err(errors::throw_internal(env, &format!("{ctx}: cannot list the options")));
            }
            let mut n = 0u32;
            sys::napi_get_array_length(env, keys, &mut n);
            for i in 0..n {
                let mut key = ptr::null_mut();
                sys::napi_get_element(env, keys, i, &mut key);
                let name = crate::input::string_value(env, key).unwrap_or_default();
                if !allowed.contains(&name.as_str()) {
                    return Err(errors::throw_invalid(
                        env,
                        &format!("{ctx}: unknown option '{name}'; expected one of: {}", allowed.join(", ")),
                    ));
                }
            }
        }
        Ok(Options { env, obj: Some(v), ctx })
    }

    /// The option's value, or None when it is absent or `undefined`.
    fn get(&self, key: &str) -> napi::Result<Option<sys::napi_value>> {
        let Some(obj) = self.obj else { return Ok(None) };
        let ckey = std::ffi::CString::new(key).expect("option names have no NUL");
        let mut v = ptr::null_mut();
        let mut t = 0;
        // SAFETY: on the JavaScript thread (constructor contract).
        unsafe {
            if sys::napi_get_named_property(self.env, obj, ckey.as_ptr(), &mut v) != sys::Status::napi_ok {
                // A getter threw: that exception stands.
                return Err(errors::throw_internal(self.env, &format!("{}: cannot read option '{key}'", self.ctx)));
            }
            sys::napi_typeof(self.env, v, &mut t);
        }
        Ok((t != sys::ValueType::napi_undefined).then_some(v))
    }

    fn wrong(&self, key: &str, expected: &str, v: sys::napi_value) -> napi::Error {
        // SAFETY: on the JavaScript thread (constructor contract).
        unsafe {
            errors::throw_invalid(
                self.env,
                &format!(
                    "{}: expected option '{key}' to be {expected}, found {}",
                    self.ctx,
                    errors::describe_value(self.env, v)
                ),
            )
        }
    }

    /// A boolean option.
    pub(crate) fn bool(&self, key: &str) -> napi::Result<Option<bool>> {
        let Some(v) = self.get(key)? else { return Ok(None) };
        let mut b = false;
        // SAFETY: on the JavaScript thread (constructor contract).
        if unsafe { sys::napi_get_value_bool(self.env, v, &mut b) } != sys::Status::napi_ok {
            return Err(self.wrong(key, "a boolean", v));
        }
        Ok(Some(b))
    }

    /// A string option.
    pub(crate) fn string(&self, key: &str) -> napi::Result<Option<String>> {
        let Some(v) = self.get(key)? else { return Ok(None) };
        // SAFETY: on the JavaScript thread (constructor contract).
        match unsafe { crate::input::string_value(self.env, v) } {
            Some(s) => Ok(Some(s)),
            None => Err(self.wrong(key, "a string", v)),
        }
    }

    /// A finite, non-negative number option.
    pub(crate) fn non_negative(&self, key: &str) -> napi::Result<Option<f64>> {
        let Some(v) = self.get(key)? else { return Ok(None) };
        let mut n = 0f64;
        // SAFETY: on the JavaScript thread (constructor contract).
        if unsafe { sys::napi_get_value_double(self.env, v, &mut n) } != sys::Status::napi_ok
            || !n.is_finite()
            || n < 0.0
        {
            return Err(self.wrong(key, "a finite number >= 0", v));
        }
        Ok(Some(n))
    }

    /// A bytes option (a binary view, `ArrayBuffer` or string), copied.
    pub(crate) fn bytes(&self, key: &str) -> napi::Result<Option<Vec<u8>>> {
        let Some(v) = self.get(key)? else { return Ok(None) };
        let mut t = 0;
        // SAFETY: on the JavaScript thread (constructor contract).
        unsafe {
            sys::napi_typeof(self.env, v, &mut t);
            if t != sys::ValueType::napi_string && t != sys::ValueType::napi_object {
                return Err(self.wrong(key, "a Buffer, TypedArray, DataView, ArrayBuffer or string", v));
            }
            crate::input::read(self.env, v, self.ctx).map(|i| Some(i.bytes().to_vec()))
        }
    }
}
