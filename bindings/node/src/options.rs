//! Option objects (`{ cascade: true }`, …), read strictly: a misspelt or
//! mistyped option is an error naming it, never silently ignored.

use std::ptr;
use std::time::Duration;

use napi::sys;

use crate::errors;

/// The largest number of milliseconds a duration option takes: 2^31 - 1
/// (24.8 days), the longest delay `setTimeout` accepts too.
pub(crate) const MAX_MS: f64 = 2_147_483_647.0;

/// `Number.MAX_SAFE_INTEGER`: 2^53 - 1.
pub(crate) const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// `v` as a number in `min..=max`, or None if it is not a number, is NaN,
/// or lies outside the range (infinities included).
///
/// # Safety
/// Must run on the JavaScript thread of `env`.
pub(crate) unsafe fn number_in(env: sys::napi_env, v: sys::napi_value, min: f64, max: f64) -> Option<f64> {
    let mut n = 0f64;
    // SAFETY: env is live on this thread (caller contract); napi refuses
    // anything but a number.
    if unsafe { sys::napi_get_value_double(env, v, &mut n) } != sys::Status::napi_ok {
        return None;
    }
    // NaN fails both comparisons.
    (n >= min && n <= max).then_some(n)
}

/// What a value that should have been a number is, for error messages:
/// the number itself (`1e+300`, `NaN`, `-1`), or its kind.
///
/// # Safety
/// Must run on the JavaScript thread of `env`.
pub(crate) unsafe fn describe_number(env: sys::napi_env, v: sys::napi_value) -> String {
    let mut n = 0f64;
    // SAFETY: as in `number_in`.
    if unsafe { sys::napi_get_value_double(env, v, &mut n) } == sys::Status::napi_ok {
        return js_number(n);
    }
    // SAFETY: as above.
    unsafe { errors::describe_value(env, v) }.to_owned()
}

/// A number as JavaScript prints it, near enough for messages.
fn js_number(n: f64) -> String {
    if n.is_nan() {
        "NaN".to_owned()
    } else if n.is_infinite() {
        if n > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
    } else if n == n.trunc() && n.abs() < 1e21 {
        format!("{n:.0}")
    } else if n.abs() >= 1e21 || n.abs() < 1e-6 {
        // JavaScript's exponent form: 1e+300, 5e-7.
        let s = format!("{n:e}");
        match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
            _ => s,
        }
    } else {
        format!("{n}")
    }
}

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

    /// The operation the options are for, as error messages name it.
    pub(crate) fn context(&self) -> &'static str {
        self.ctx
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

    /// A number of milliseconds from 0 to [`MAX_MS`] (fractions allowed),
    /// as a `Duration`; anything else (not a number, NaN, negative, infinite
    /// or over the maximum) is a `TypeError` (code 3002) naming the option,
    /// the range and the value found.
    pub(crate) fn millis(&self, key: &str) -> napi::Result<Option<Duration>> {
        let Some(v) = self.get(key)? else { return Ok(None) };
        // SAFETY: on the JavaScript thread (constructor contract).
        match unsafe { number_in(self.env, v, 0.0, MAX_MS) } {
            Some(ms) => Ok(Some(Duration::from_secs_f64(ms / 1000.0))),
            None => {
                // SAFETY: as above.
                let found = unsafe { describe_number(self.env, v) };
                // SAFETY: as above.
                Err(unsafe {
                    errors::throw_invalid(
                        self.env,
                        &format!(
                            "{}: expected option '{key}' to be a number of milliseconds from 0 to {MAX_MS}, found {found}",
                            self.ctx
                        ),
                    )
                })
            }
        }
    }

    /// A whole number from 0 to `max` (at most 2^53 - 1, the largest
    /// integer a JavaScript number holds exactly); anything else (not a
    /// number, a fraction, NaN, negative, infinite or over the maximum) is a
    /// `TypeError` (code 3002) naming the option, the range and the value
    /// found.
    pub(crate) fn whole(&self, key: &str, unit: &str, max: f64) -> napi::Result<Option<u64>> {
        let Some(v) = self.get(key)? else { return Ok(None) };
        let max = max.min(MAX_SAFE_INTEGER);
        // SAFETY: on the JavaScript thread (constructor contract).
        match unsafe { number_in(self.env, v, 0.0, max) }.filter(|n| n.fract() == 0.0) {
            // In 0..=2^53-1 and whole: exact as u64.
            Some(n) => Ok(Some(n as u64)),
            None => {
                // SAFETY: as above.
                let found = unsafe { describe_number(self.env, v) };
                // SAFETY: as above.
                Err(unsafe {
                    errors::throw_invalid(
                        self.env,
                        &format!(
                            "{}: expected option '{key}' to be a whole number of {unit} from 0 to {}, found {found}",
                            self.ctx,
                            js_number(max)
                        ),
                    )
                })
            }
        }
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
