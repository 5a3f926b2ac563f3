//! The C API of hotmod: `libhotmod.so`, a thin layer over `hotmod-core`.
//!
//! Conventions (see `include/hotmod.h` for the per-function contract):
//! - opaque handles (`hotmod_runtime`, `hotmod_module`, `hotmod_method`,
//!   `hotmod_buffer`, `hotmod_stats`, `hotmod_load_options`,
//!   `hotmod_runtime_options`), each with a `_free` that accepts NULL;
//! - every fallible function returns a `hotmod_status`; results go through
//!   out-parameters written only on success; a NULL where a pointer is
//!   required gives `HOTMOD_STATUS_NULL_ARGUMENT`; the message of the last
//!   failure on the calling thread is `hotmod_last_error_message()`;
//! - every body runs behind a panic boundary ([`ffi`]), error reporting
//!   included;
//! - file-system paths are bytes on Unix (any encoding), UTF-8 on Windows;
//!   names of modules, methods and host functions are UTF-8;
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
#[cfg(test)]
mod symbol_list;

// One `.symver name, name@@NODE` per export, generated from src/symbols.txt;
// only in the cdylib build (see build.rs).
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
    //! export is listed in src/symbols.txt, and every export body is one
    //! panic-boundary invocation with nothing outside it; and the boundary
    //! holds when error reporting panics or runs during thread teardown.

    use std::ffi::CStr;

    const SOURCES: &[(&str, &str)] = &[
        ("lib.rs", include_str!("lib.rs")),
        ("runtime.rs", include_str!("runtime.rs")),
        ("module.rs", include_str!("module.rs")),
        ("call.rs", include_str!("call.rs")),
        ("stats.rs", include_str!("stats.rs")),
    ];

    /// Byte offset just past the bracket that closes the one at `open`,
    /// skipping string literals and comments.
    fn matching(src: &[u8], open: usize) -> usize {
        let (o, c) = (src[open], if src[open] == b'{' { b'}' } else { b')' });
        let mut depth = 0;
        let mut i = open;
        while i < src.len() {
            match src[i] {
                b'"' => {
                    i += 1;
                    while src[i] != b'"' {
                        i += if src[i] == b'\\' { 2 } else { 1 };
                    }
                }
                b'/' if src[i + 1] == b'/' => {
                    while src[i] != b'\n' {
                        i += 1;
                    }
                }
                b if b == o => depth += 1,
                b if b == c => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        panic!("unbalanced brackets");
    }

    /// (file, export name, whole body between its braces).
    fn exports() -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for (file, src) in SOURCES {
            let bytes = src.as_bytes();
            // Attribute lines only (not this test's own mentions of it).
            for (at, _) in src.match_indices("\n#[no_mangle]\n") {
                let at = at + 1;
                let sig_start = at + "#[no_mangle]".len();
                let fn_at = sig_start + src[sig_start..].find("fn ").unwrap();
                let name = src[fn_at + 3..].split('(').next().unwrap().trim().to_string();
                // The parameter list, then the body's opening brace.
                let params = fn_at + src[fn_at..].find('(').unwrap();
                let after = matching(bytes, params);
                let open = after + src[after..].find('{').unwrap();
                let close = matching(bytes, open);
                out.push((file.to_string(), name, src[open + 1..close - 1].to_string()));
            }
        }
        out
    }

    /// The body without comment lines.
    fn code(body: &str) -> String {
        body.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n").trim().to_string()
    }

    #[test]
    fn every_export_body_is_one_panic_boundary_with_nothing_outside() {
        let ex = exports();
        assert!(ex.len() > 30, "found only {} exports", ex.len());
        for (file, name, body) in ex {
            let body = code(&body);
            let Some(mac) = ["ffi_status!(", "ffi_value!("].into_iter().find(|m| body.starts_with(m)) else {
                panic!("{file}: {name} must start with ffi_status!( or ffi_value!(, found `{body}`");
            };
            let end = matching(body.as_bytes(), mac.len() - 1);
            assert_eq!(
                body[end..].trim(),
                "",
                "{file}: {name}: nothing may run after its {mac}...) boundary, found `{}`",
                &body[end..]
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

    fn last_error() -> String {
        // SAFETY: the export returns a NUL-terminated string, never NULL.
        unsafe { CStr::from_ptr(super::hotmod_last_error_message()) }.to_string_lossy().into_owned()
    }

    #[test]
    fn a_panic_while_reporting_an_error_is_caught() {
        std::thread::spawn(|| {
            crate::ffi::tests::PANIC_IN_REPORT_FOR_TEST.with(|f| f.set(true));
            // SAFETY: NULL is a documented argument (NULL_ARGUMENT).
            let st = unsafe { crate::runtime::hotmod_runtime_new(std::ptr::null_mut()) };
            assert_eq!(st, hotmod_core::Status::Internal);
            assert!(last_error().contains("error report panicked (test)"), "{}", last_error());
        })
        .join()
        .unwrap();
    }

    /// Calls made from a thread-local destructor that runs after the
    /// last-error store was destroyed (thread-local destructors run last
    /// registered, first run).
    #[test]
    fn calls_during_thread_teardown_report_through_the_status() {
        use std::sync::Mutex;
        static SEEN: Mutex<Vec<(hotmod_core::Status, String)>> = Mutex::new(Vec::new());

        struct CallsHotmodOnDrop;
        impl Drop for CallsHotmodOnDrop {
            fn drop(&mut self) {
                // SAFETY: NULL is a documented argument (NULL_ARGUMENT).
                let st = unsafe { crate::runtime::hotmod_runtime_new(std::ptr::null_mut()) };
                let mut rt = std::ptr::null_mut();
                // SAFETY: a valid out-parameter; the runtime is freed below.
                let ok = unsafe { crate::runtime::hotmod_runtime_new(&mut rt) };
                // SAFETY: rt from hotmod_runtime_new; a NUL-terminated path.
                let missing = unsafe {
                    crate::runtime::hotmod_runtime_load(
                        rt,
                        c"/nonexistent/x.so".as_ptr(),
                        std::ptr::null(),
                        std::ptr::null_mut(),
                    )
                };
                let msg = last_error();
                // SAFETY: from hotmod_runtime_new, freed once.
                unsafe { crate::runtime::hotmod_runtime_free(rt) };
                let mut seen = SEEN.lock().unwrap();
                seen.push((st, String::new()));
                seen.push((ok, String::new()));
                seen.push((missing, msg));
            }
        }
        thread_local! {
            static GUARD: CallsHotmodOnDrop = const { CallsHotmodOnDrop };
        }

        std::thread::spawn(|| {
            GUARD.with(|_| {});
            // Registered after GUARD, so destroyed before it runs.
            // SAFETY: NULL is a documented argument.
            unsafe { crate::runtime::hotmod_runtime_new(std::ptr::null_mut()) };
            assert!(last_error().contains("expected a non-NULL out"), "{}", last_error());
        })
        .join()
        .unwrap();
        let seen = SEEN.lock().unwrap();
        assert_eq!(seen.len(), 3, "the destructor did not run");
        assert_eq!(seen[0].0, hotmod_core::Status::NullArgument);
        assert_eq!(seen[1].0, hotmod_core::Status::Ok);
        assert_eq!(seen[2].0, hotmod_core::Status::FileMissing);
        // On Unix the store (a pthread key) outlives the thread-locals; elsewhere
        // it is gone by now and the static message stands in.
        if cfg!(unix) {
            assert!(seen[2].1.contains("/nonexistent/x.so"), "{}", seen[2].1);
        } else {
            assert_eq!(seen[2].1.as_bytes(), crate::ffi::UNAVAILABLE.to_bytes(), "{}", seen[2].1);
        }
    }
}
