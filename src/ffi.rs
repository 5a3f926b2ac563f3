//! The conventions of the C API in one place: opaque handle types and how
//! each is owned, the panic boundary, the per-thread last error, and
//! argument checks.
//!
//! Every exported function body is one [`ffi_status!`] or [`ffi_value!`]
//! invocation and nothing else: the argument checks, the work, and the
//! error reporting (formatting the message, converting it for C, storing it
//! as the thread's last error) all run inside `catch_unwind`, so that no
//! unwind ever crosses into C. A caught panic is reported as
//! `HOTMOD_STATUS_INTERNAL` by [`panicked`], which is a boundary of its own.
//! A unit test checks that no export lacks the boundary or runs anything
//! outside it.
//!
//! C may call hotmod while its thread is being torn down: from a
//! `pthread_key` destructor, which glibc runs after the thread's Rust
//! thread-locals are destroyed. The last-error store is built for that
//! (see [`store`]): it never panics, never leaks, and when it cannot hold a
//! message `hotmod_last_error_message()` answers the static
//! [`UNAVAILABLE`] text; the status code still says what failed.

use std::borrow::Cow;
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use hotmod_core::{Error, Status};

/// What `hotmod_last_error_message()` answers when the calling thread's
/// last-error store cannot be reached (its thread-local storage is gone
/// because the thread is exiting, or none could be created).
pub(crate) const UNAVAILABLE: &CStr = c"hotmod: no error message is available: the calling thread's error store cannot be reached (the thread is exiting, or no thread-local storage was left); the returned status code says what failed";

/// Stored when reporting a panic panicked too.
const PANIC_IN_REPORT: &CStr = c"internal error: hotmod panicked, and formatting the panic message failed";

/// The body of every status-returning export: runs `body` and the reporting
/// of its failure behind the panic boundary.
#[inline(always)]
pub(crate) fn status_boundary(body: impl FnOnce() -> Result<(), Error>) -> Status {
    match catch_unwind(AssertUnwindSafe(|| match body() {
        Ok(()) => Status::Ok,
        Err(e) => failed(e),
    })) {
        Ok(s) => s,
        Err(p) => panicked(p),
    }
}

/// The body of every value-returning export: runs `body` behind the panic
/// boundary; a panic is recorded as the last error and gives `fallback`.
#[inline(always)]
pub(crate) fn value_boundary<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(v) => v,
        Err(p) => {
            panicked(p);
            fallback
        }
    }
}

/// Records a failed call's error as this thread's last error; returns its
/// status. Out of line, so that the exported functions' success path stays
/// small. Runs inside the caller's panic boundary.
#[cold]
#[inline(never)]
pub(crate) fn failed(e: Error) -> Status {
    #[cfg(test)]
    tests::maybe_panic_in_report();
    store_last_error(Cow::Owned(cstring(e.message())));
    e.status()
}

/// Records a panic caught at the boundary; returns `HOTMOD_STATUS_INTERNAL`.
///
/// A boundary of its own: formatting the message, storing it and dropping
/// the payload (whose destructor is foreign code) run inside
/// `catch_unwind`; if any of that panics, a static message is stored and the
/// second payload is leaked rather than dropped.
#[cold]
#[inline(never)]
pub(crate) fn panicked(p: Box<dyn std::any::Any + Send>) -> Status {
    let msg =
        catch_unwind(AssertUnwindSafe(|| cstring(&format!("internal error: hotmod panicked: {}", panic_message(&*p)))));
    forget_panic(catch_unwind(AssertUnwindSafe(move || drop(p))));
    let msg = match msg {
        Ok(m) => Cow::Owned(m),
        Err(p2) => {
            forget_panic(Err(p2));
            Cow::Borrowed(PANIC_IN_REPORT)
        }
    };
    store_last_error(msg);
    Status::Internal
}

/// Leaks the payload of a panic caught while reporting one: its destructor
/// could panic again, outside any boundary.
fn forget_panic(r: std::thread::Result<()>) {
    if let Err(p) = r {
        std::mem::forget(p);
    }
}

/// Stores this thread's last error; does nothing (and never panics) when
/// there is no store for it.
fn store_last_error(msg: Cow<'static, CStr>) {
    store::set(msg);
}

/// Pointer to this thread's last error message (valid until the next
/// failing hotmod call on this thread), or to [`UNAVAILABLE`] when the
/// store cannot be reached.
pub(crate) fn last_error_ptr() -> *const c_char {
    store::get().unwrap_or(UNAVAILABLE.as_ptr())
}

/// The per-thread last-error store.
///
/// On Unix it is a `pthread_key` whose destructor frees the message. A Rust
/// thread-local with a destructor cannot be used there: during thread
/// teardown (a host's key destructor calling hotmod after the thread-locals
/// were destroyed) a first use registers a destructor that glibc never runs,
/// leaking the message; a key's value set during the key-destructor rounds
/// is freed in the next round (glibc runs up to
/// PTHREAD_DESTRUCTOR_ITERATIONS of them). The key is deleted when the
/// library is unloaded, so no destructor of an unmapped library is left
/// registered.
///
/// Elsewhere it is a Rust thread-local reached only through `try_with`:
/// once it is destroyed, messages are dropped and [`UNAVAILABLE`] is
/// answered.
#[cfg(unix)]
mod store {
    use std::borrow::Cow;
    use std::ffi::{c_char, c_void, CStr, CString};
    use std::sync::OnceLock;

    /// The key, created on first use (None if the system refused one).
    static KEY: OnceLock<Option<libc::pthread_key_t>> = OnceLock::new();

    /// Destructor of the key's values, all from `CString::into_raw`.
    unsafe extern "C" fn free_message(p: *mut c_void) {
        if !p.is_null() {
            // SAFETY: every value stored under KEY comes from CString::into_raw.
            drop(unsafe { CString::from_raw(p as *mut c_char) });
        }
    }

    fn key() -> Option<libc::pthread_key_t> {
        *KEY.get_or_init(|| {
            let mut k: libc::pthread_key_t = 0;
            // SAFETY: k is a valid out-parameter; free_message has the destructor's type.
            (unsafe { libc::pthread_key_create(&mut k, Some(free_message)) } == 0).then_some(k)
        })
    }

    pub(super) fn set(msg: Cow<'static, CStr>) {
        let Some(k) = key() else { return };
        let new = msg.into_owned().into_raw();
        // SAFETY: k is a live key; the old value is ours (or NULL).
        unsafe {
            let old = libc::pthread_getspecific(k);
            if libc::pthread_setspecific(k, new as *const c_void) == 0 {
                free_message(old);
            } else {
                free_message(new as *mut c_void);
            }
        }
    }

    pub(super) fn get() -> Option<*const c_char> {
        let k = key()?;
        // SAFETY: k is a live key.
        let p = unsafe { libc::pthread_getspecific(k) };
        Some(if p.is_null() { c"".as_ptr() } else { p as *const c_char })
    }

    /// Deletes the key when the library is unloaded (the values still set
    /// are left to the process: no destructor may point into unmapped code).
    #[cfg(all(not(test), not(target_vendor = "apple")))]
    #[used]
    #[link_section = ".fini_array"]
    static DELETE_KEY_AT_UNLOAD: extern "C" fn() = delete_key;

    #[cfg(all(not(test), not(target_vendor = "apple")))]
    extern "C" fn delete_key() {
        if let Some(Some(k)) = KEY.get() {
            // SAFETY: a key we created; nothing uses it after unload.
            unsafe { libc::pthread_key_delete(*k) };
        }
    }
}

#[cfg(not(unix))]
mod store {
    use std::borrow::Cow;
    use std::cell::RefCell;
    use std::ffi::{c_char, CStr};

    thread_local! {
        // Const-initialised; a static message needs no allocation.
        static LAST_ERROR: RefCell<Cow<'static, CStr>> = const { RefCell::new(Cow::Borrowed(c"")) };
    }

    pub(super) fn set(msg: Cow<'static, CStr>) {
        let _ = LAST_ERROR.try_with(|l| {
            if let Ok(mut slot) = l.try_borrow_mut() {
                *slot = msg;
            }
        });
    }

    pub(super) fn get() -> Option<*const c_char> {
        LAST_ERROR.try_with(|l| l.try_borrow().ok().map(|m| m.as_ptr())).ok().flatten()
    }
}

pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

/// Runs a body returning `Result<(), Error>` behind the panic boundary and
/// turns it into a status code, recording the message of any failure (see
/// [`status_boundary`]). The whole body of a status-returning export.
macro_rules! ffi_status {
    ($body:block) => {
        $crate::ffi::status_boundary(|| -> ::hotmod_core::Result<()> { $body })
    };
}

/// Runs a body returning a plain value behind the panic boundary, with a
/// fallback value if it panics (see [`value_boundary`]). The whole body of
/// a value-returning export.
macro_rules! ffi_value {
    ($fallback:expr, $body:block) => {
        $crate::ffi::value_boundary($fallback, || $body)
    };
}

/// How a C handle type is owned: `Box<Self::Inner>`, created by `into_c` and
/// freed by `free`. The casts live here and nowhere else.
pub(crate) trait BoxHandle: Sized {
    type Inner;

    fn into_c(inner: Self::Inner) -> *mut Self {
        Box::into_raw(Box::new(inner)) as *mut Self
    }

    /// # Safety
    /// `p` must be NULL or a pointer from `into_c` not yet freed.
    unsafe fn get<'a>(p: *const Self, what: &str) -> Result<&'a Self::Inner, Error> {
        // SAFETY: per the contract, p came from into_c (a Box<Inner>).
        unsafe { (p as *const Self::Inner).as_ref() }.ok_or_else(|| null(what))
    }

    /// # Safety
    /// As for `get`; the caller has exclusive access.
    unsafe fn get_mut<'a>(p: *mut Self, what: &str) -> Result<&'a mut Self::Inner, Error> {
        // SAFETY: as in get.
        unsafe { (p as *mut Self::Inner).as_mut() }.ok_or_else(|| null(what))
    }

    /// # Safety
    /// `p` must be NULL or from `into_c`, and not used afterwards.
    unsafe fn free(p: *mut Self) {
        if !p.is_null() {
            // SAFETY: p came from Box::into_raw in into_c.
            drop(unsafe { Box::from_raw(p as *mut Self::Inner) });
        }
    }
}

#[cold]
#[inline(never)]
pub(crate) fn null(what: &str) -> Error {
    Error::new(Status::NullArgument, format!("expected a non-NULL {what}, found NULL"))
}

/// The `index`-th of `items`, or `HOTMOD_STATUS_INVALID_ARGUMENT` naming
/// the range (`what`: "module", "method", ...).
pub(crate) fn nth<'a, T>(items: &'a [T], index: usize, what: &str) -> Result<&'a T, Error> {
    items.get(index).ok_or_else(|| {
        Error::new(Status::InvalidArgument, format!("expected a {what} index below {}, found {index}", items.len()))
    })
}

/// Reads a NUL-terminated UTF-8 argument.
///
/// Names are short and almost always ASCII, so the by-name call path finds
/// the terminator and checks for ASCII in one pass over the bytes (cheaper
/// for them than `strlen` plus a second scan); anything else gets general
/// UTF-8 validation.
///
/// # Safety
/// `p` must be NULL or a NUL-terminated string valid for the call.
#[inline]
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(null(what));
    }
    let p = p as *const u8;
    let mut len = 0;
    let mut high = 0u8;
    loop {
        // SAFETY: per the contract, every byte up to the NUL is readable.
        let b = unsafe { *p.add(len) };
        if b == 0 {
            break;
        }
        high |= b;
        len += 1;
    }
    // SAFETY: `len` readable bytes precede the NUL.
    let bytes = unsafe { std::slice::from_raw_parts(p, len) };
    if high < 0x80 {
        // SAFETY: ASCII is valid UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes).map_err(|e| {
        Error::new(
            Status::InvalidArgument,
            format!("expected UTF-8 for {what}, found an invalid byte at offset {}", e.valid_up_to()),
        )
    })
}

/// Reads a NUL-terminated file-system path argument.
///
/// On Unix a path is bytes: any byte string without NUL is accepted
/// (non-UTF-8 names included), as the operating system and the Python
/// binding accept them. On other platforms the interface is UTF-8.
///
/// # Safety
/// `p` must be NULL or a NUL-terminated string valid for the call.
pub(crate) unsafe fn path_arg<'a>(p: *const c_char, what: &str) -> Result<&'a std::path::Path, Error> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        if p.is_null() {
            return Err(null(what));
        }
        // SAFETY: per the contract, a NUL-terminated string.
        let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
        Ok(std::path::Path::new(std::ffi::OsStr::from_bytes(bytes)))
    }
    #[cfg(not(unix))]
    {
        // SAFETY: per the contract.
        unsafe { str_arg(p, what) }.map(std::path::Path::new)
    }
}

/// A path for C: its bytes on Unix (whatever their encoding), UTF-8
/// elsewhere (lossy).
pub(crate) fn path_cstring(p: &std::path::Path) -> CString {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        // A path from the OS holds no NUL; escape one anyway rather than fail.
        CString::new(p.as_os_str().as_bytes()).unwrap_or_else(|_| cstring(&p.to_string_lossy()))
    }
    #[cfg(not(unix))]
    {
        cstring(&p.to_string_lossy())
    }
}

/// Reads an input buffer (`ptr` may be NULL only when `len` is 0).
///
/// # Safety
/// `ptr` must be valid for `len` bytes during the call.
pub(crate) unsafe fn bytes_arg<'a>(ptr: *const u8, len: usize, what: &str) -> Result<&'a [u8], Error> {
    if ptr.is_null() {
        if len == 0 {
            return Ok(&[]);
        }
        return Err(null(what));
    }
    // SAFETY: per the contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Reads an output buffer (`ptr` may be NULL only when `len` is 0).
/// Inlined: it is on the path of the `_call_into` exports, and a call
/// across modules costs them about 1.5 ns.
///
/// # Safety
/// `ptr` must be valid for `len` writable bytes during the call.
#[inline]
pub(crate) unsafe fn bytes_mut_arg<'a>(ptr: *mut u8, len: usize, what: &str) -> Result<&'a mut [u8], Error> {
    if ptr.is_null() {
        if len == 0 {
            return Ok(&mut []);
        }
        return Err(null(what));
    }
    // SAFETY: per the contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

/// Writes an out-parameter (only on success, by construction: callers write
/// last).
///
/// # Safety
/// `out` must be valid for writes if non-NULL.
pub(crate) unsafe fn write_out<T>(out: *mut T, value: T) {
    // SAFETY: checked non-NULL by the caller before any work was done.
    unsafe { out.write(value) };
}

/// Checks an out-parameter pointer before doing any work.
pub(crate) fn out_arg<T>(out: *mut T, what: &str) -> Result<(), Error> {
    if out.is_null() {
        Err(null(what))
    } else {
        Ok(())
    }
}

/// Host-supplied `user_data` with its destructor, freed exactly once on drop
/// (the `(fn, user_data, free_user_data)` callback convention).
pub(crate) struct ForeignData {
    pub user_data: *mut c_void,
    pub free: Option<unsafe extern "C" fn(*mut c_void)>,
}

// SAFETY: the C API documents that callbacks and free_user_data may run on
// any thread; the host promises user_data tolerates that.
unsafe impl Send for ForeignData {}
// SAFETY: as above.
unsafe impl Sync for ForeignData {}

impl Drop for ForeignData {
    fn drop(&mut self) {
        if let Some(free) = self.free {
            // SAFETY: the host's destructor for its own pointer, called once.
            unsafe { free(self.user_data) };
        }
    }
}

/// A string for C: interior NULs are escaped rather than truncating.
pub(crate) fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "\\0")).unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// Makes [`failed`] panic on this thread (as a failing allocation
        /// or formatting bug in the error report would).
        pub(crate) static PANIC_IN_REPORT_FOR_TEST: Cell<bool> = const { Cell::new(false) };
    }

    pub(crate) fn maybe_panic_in_report() {
        if PANIC_IN_REPORT_FOR_TEST.with(Cell::get) {
            panic!("error report panicked (test)");
        }
    }

    fn read(s: &CStr) -> Result<&str, Error> {
        // SAFETY: a valid NUL-terminated string.
        unsafe { str_arg(s.as_ptr(), "name") }
    }

    #[test]
    fn str_arg_reads_ascii_utf8_and_refuses_the_rest() {
        assert_eq!(read(c"checksum").unwrap(), "checksum");
        assert_eq!(read(c"").unwrap(), "");
        assert_eq!(read(c"h\xc3\xa9llo").unwrap(), "héllo");
        let e = read(c"ok\xff\xfe").unwrap_err();
        assert_eq!(e.status(), Status::InvalidArgument);
        assert!(e.message().contains("expected UTF-8 for name, found an invalid byte at offset 2"), "{}", e.message());
        // SAFETY: NULL is allowed.
        let e = unsafe { str_arg(std::ptr::null(), "module") }.unwrap_err();
        assert_eq!(e.status(), Status::NullArgument);
    }
}
