//! A raw N-API threadsafe function whose handle is safe to use from any
//! thread at any time: once the environment has finalized it (on release or
//! at teardown), calls and releases become no-ops instead of touching freed
//! memory.

use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, RwLock};

use napi::sys;

/// The owner of a threadsafe function: dropping it releases the function
/// (from any thread). Not `Clone`: share it behind an `Arc`.
pub(crate) struct Tsfn {
    shared: Arc<Shared>,
}

/// A threadsafe function and whether the environment has finalized it,
/// shared between its owner and its finalizer.
struct Shared {
    raw: AtomicPtr<sys::napi_threadsafe_function__>,
    /// True once the threadsafe function has been finalized. Held for
    /// reading around every call so that finalization (which takes it for
    /// writing) cannot happen in the middle of one.
    closed: RwLock<bool>,
}

/// The data each queued call carries, handed back to `call_js`.
pub(crate) type CallJs = unsafe extern "C" fn(sys::napi_env, sys::napi_value, *mut c_void, *mut c_void);

unsafe extern "C" fn finalized(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    // SAFETY: data is the Arc<Shared> leaked by `Tsfn::new`, finalized once.
    let shared = unsafe { Arc::from_raw(data as *const Shared) };
    *shared.closed.write().unwrap_or_else(|e| e.into_inner()) = true;
}

impl Tsfn {
    /// Wraps `func` (a JavaScript function, or NULL when `call_js` needs
    /// none) in a threadsafe function whose queued items are handed to
    /// `call_js` on the JavaScript thread (with a
    /// NULL env when the environment is tearing down and the item must only
    /// be dropped). It does not keep the event loop alive.
    ///
    /// # Safety
    /// Must run on the JavaScript thread of `env`; `func` must be a function
    /// or NULL.
    pub(crate) unsafe fn new(env: sys::napi_env, func: sys::napi_value, what: &str, call_js: CallJs) -> Option<Tsfn> {
        let shared = Arc::new(Shared { raw: AtomicPtr::new(ptr::null_mut()), closed: RwLock::new(false) });
        let finalize_data = Arc::into_raw(shared.clone());
        let mut name = ptr::null_mut();
        let mut raw = ptr::null_mut();
        // SAFETY: env is live on this thread (caller contract); the
        // finalizer takes back exactly the Arc leaked for it.
        unsafe {
            sys::napi_create_string_utf8(env, what.as_ptr().cast(), what.len() as isize, &mut name);
            let status = sys::napi_create_threadsafe_function(
                env,
                func,
                ptr::null_mut(),
                name,
                0,
                1,
                finalize_data as *mut c_void,
                Some(finalized),
                ptr::null_mut(),
                Some(call_js),
                &mut raw,
            );
            if status != sys::Status::napi_ok {
                drop(Arc::from_raw(finalize_data));
                return None;
            }
            sys::napi_unref_threadsafe_function(env, raw);
        }
        shared.raw.store(raw, Ordering::Release);
        Some(Tsfn { shared })
    }

    /// Queues `item` for the JavaScript thread. Returns it back if the
    /// threadsafe function is closed (the environment is going away).
    pub(crate) fn call<T>(&self, item: Box<T>) -> Result<(), Box<T>> {
        let closed = self.shared.closed.read().unwrap_or_else(|e| e.into_inner());
        if *closed {
            return Err(item);
        }
        let raw = Box::into_raw(item);
        // SAFETY: not finalized (checked under the read lock, which
        // finalization waits for); the queue is unbounded, so this never
        // blocks while holding the lock.
        let status = unsafe {
            sys::napi_call_threadsafe_function(
                self.shared.raw.load(Ordering::Acquire),
                raw.cast(),
                sys::ThreadsafeFunctionCallMode::nonblocking,
            )
        };
        if status != sys::Status::napi_ok {
            // SAFETY: not queued, so still ours.
            return Err(unsafe { Box::from_raw(raw) });
        }
        Ok(())
    }
}

impl Drop for Tsfn {
    fn drop(&mut self) {
        let closed = self.shared.closed.read().unwrap_or_else(|e| e.into_inner());
        if !*closed {
            // SAFETY: not finalized (checked under the lock). Items already
            // queued are still delivered before finalization.
            unsafe {
                sys::napi_release_threadsafe_function(
                    self.shared.raw.load(Ordering::Acquire),
                    sys::ThreadsafeFunctionReleaseMode::release,
                )
            };
        }
    }
}

impl Tsfn {
    /// Whether the environment has finalized the function (it is going away).
    pub(crate) fn is_closed(&self) -> bool {
        *self.shared.closed.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl Tsfn {
    /// Whether the function keeps the event loop alive (it does not when
    /// made). Ignored once the environment has finalized it.
    ///
    /// # Safety
    /// Must run on the JavaScript thread of `env`, the one it was made on.
    pub(crate) unsafe fn keep_loop_alive(&self, env: sys::napi_env, keep: bool) {
        let closed = self.shared.closed.read().unwrap_or_else(|e| e.into_inner());
        if *closed {
            return;
        }
        let raw = self.shared.raw.load(Ordering::Acquire);
        // SAFETY: not finalized (checked under the lock); on the JavaScript
        // thread of `env` (caller contract).
        unsafe {
            if keep {
                sys::napi_ref_threadsafe_function(env, raw);
            } else {
                sys::napi_unref_threadsafe_function(env, raw);
            }
        }
    }
}
