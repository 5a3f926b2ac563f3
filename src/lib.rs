//! The C API of hotmod: `libhotmod.so`, a thin layer over `hotmod-core`.
//!
//! Conventions (see `include/hotmod.h` for the per-function contract):
//! - opaque handles (`hotmod_runtime`, `hotmod_module`, `hotmod_method`,
//!   `hotmod_buffer`, `hotmod_stats`, `hotmod_load_options`), each with a
//!   `_free` that accepts NULL;
//! - every fallible function returns a `hotmod_status`; results go through
//!   out-parameters written only on success; a NULL where a pointer is
//!   required gives `HOTMOD_STATUS_NULL_ARGUMENT`; the message of the last
//!   failure on the calling thread is `hotmod_last_error_message()`;
//! - every body runs behind a panic boundary ([`ffi`]);
//! - callbacks are `(fn, user_data, free_user_data)`.
//!
//! This is the only crate of the runtime with `#[no_mangle]` exports. Their
//! names and version nodes are listed once, in `src/symbols.txt`.
#![warn(missing_docs)]
#![allow(non_camel_case_types)]

use std::ffi::c_char;

pub use hotmod_core;

#[macro_use]
mod ffi;
mod call;
mod module;
mod runtime;
mod stats;

// One `.symver name, name@@NODE` per export, generated from src/symbols.txt.
#[cfg(all(hotmod_symver, not(test)))]
include!(concat!(env!("OUT_DIR"), "/symver.rs"));

/// The library's version, `"MAJOR.MINOR.PATCH"` (static storage; equal to
/// the header's `HOTMOD_VERSION_STRING` for a matching header).
#[no_mangle]
pub extern "C" fn hotmod_version_string() -> *const c_char {
    ffi_value!(c"?".as_ptr(), { concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char })
}

/// A static, human-readable description of a status code (never NULL; an
/// unknown code gives "unknown status").
#[no_mangle]
pub extern "C" fn hotmod_status_str(code: i32) -> *const c_char {
    ffi_value!(c"unknown status".as_ptr(), {
        match hotmod_core::Status::from_code(code) {
            Some(s) => status_cstr(s),
            None => c"unknown status".as_ptr(),
        }
    })
}

fn status_cstr(s: hotmod_core::Status) -> *const c_char {
    use std::sync::OnceLock;
    static TABLE: OnceLock<Vec<(i32, std::ffi::CString)>> = OnceLock::new();
    let table = TABLE
        .get_or_init(|| hotmod_core::Status::all().iter().map(|s| (s.code(), ffi::cstring(s.describe()))).collect());
    table.iter().find(|(c, _)| *c == s.code()).map(|(_, m)| m.as_ptr()).unwrap_or(c"unknown status".as_ptr())
}

/// The message of the last failed hotmod call on this thread: what was
/// expected, what was found, and where. Never NULL (empty if no call failed).
/// Valid until the next failing hotmod call on the same thread.
#[no_mangle]
pub extern "C" fn hotmod_last_error_message() -> *const c_char {
    ffi_value!(c"".as_ptr(), { ffi::last_error_ptr() })
}

#[cfg(test)]
mod tests {
    //! Checks of the export surface that need no built library: every
    //! export is listed in src/symbols.txt, and every export body runs
    //! behind the panic boundary.

    const SOURCES: &[(&str, &str)] = &[
        ("lib.rs", include_str!("lib.rs")),
        ("runtime.rs", include_str!("runtime.rs")),
        ("module.rs", include_str!("module.rs")),
        ("call.rs", include_str!("call.rs")),
        ("stats.rs", include_str!("stats.rs")),
    ];

    fn exports() -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for (file, src) in SOURCES {
            let lines: Vec<&str> = src.lines().collect();
            for (i, l) in lines.iter().enumerate() {
                if l.trim() != "#[no_mangle]" {
                    continue;
                }
                // The signature may span lines; the body starts after the `{`.
                let mut j = i + 1;
                let mut sig = String::new();
                while !lines[j].trim_end().ends_with('{') {
                    sig.push_str(lines[j]);
                    j += 1;
                }
                sig.push_str(lines[j]);
                let name = sig.split("fn ").nth(1).unwrap().split('(').next().unwrap().trim().to_string();
                let body = lines[j + 1..].iter().find(|l| !l.trim().is_empty() && !l.trim().starts_with("//")).unwrap();
                out.push((file.to_string(), name, body.trim().to_string()));
            }
        }
        out
    }

    #[test]
    fn every_export_is_behind_the_panic_boundary() {
        let ex = exports();
        assert!(ex.len() > 30, "found only {} exports", ex.len());
        for (file, name, body) in ex {
            assert!(
                body.starts_with("ffi_status!") || body.starts_with("ffi_value!"),
                "{file}: {name} must start with ffi_status! or ffi_value!, found `{body}`"
            );
        }
    }

    #[test]
    fn every_export_is_listed_once_in_symbols_txt() {
        let listed: Vec<String> = include_str!("symbols.txt")
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .collect();
        let mut names: Vec<String> = exports().into_iter().map(|(_, n, _)| n).collect();
        names.sort();
        let mut sorted = listed.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), listed.len(), "duplicate entries in symbols.txt");
        assert_eq!(names, sorted, "src/symbols.txt and the #[no_mangle] functions differ");
    }
}
