//! Host functions written in JavaScript, which plugins call by name.
//!
//! A plugin calls a host function on the thread that is running the plugin:
//!
//! - on the JavaScript thread (a `callSync`, or a plugin's hooks during
//!   `load`/`upgrade`/`unload`), the JavaScript function is called directly;
//! - on any other thread (an asynchronous `call` running on a call thread,
//!   a directory watcher's thread, or a thread the plugin made), the call is
//!   queued for the JavaScript thread, which a threadsafe function wakes,
//!   and the calling thread blocks until the JavaScript function has
//!   answered.
//!
//! The JavaScript thread never blocks where such a call could be waiting
//! for it: loads, upgrades and unloads run on a helper thread while the
//! JavaScript thread answers queued host-function calls ([`pump_while`]) —
//! a plugin's init or destroy hook, or a watcher holding the runtime's
//! admin lock, may be calling one. The one wait left is a plugin's own: a
//! plugin must not, inside a synchronous call, wait for a thread of its own
//! that calls a host function.
//!
//! The JavaScript function receives the input as a `Buffer` (a copy: the
//! plugin's memory is only borrowed for the call) and returns a `Buffer`,
//! `TypedArray`, `DataView`, `ArrayBuffer`, string, or nothing. What it
//! throws becomes the plugin's error message; it never reaches the caller
//! unless the plugin passes it on.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Duration;

use hotmod_core::{HostFunction, OutputWriter};
use napi::sys;

use crate::errors;
use crate::tsfn::Tsfn;

thread_local! {
    /// The environment whose JavaScript thread this is (NULL elsewhere).
    static JS_ENV: Cell<sys::napi_env> = const { Cell::new(ptr::null_mut()) };
    /// How many JavaScript host functions are running on this thread.
    static HOST_DEPTH: Cell<u32> = const { Cell::new(0) };
    /// The queue of host-function calls for this JavaScript thread.
    static BRIDGE: RefCell<Option<Arc<Bridge>>> = const { RefCell::new(None) };
}

/// Host-function calls from other threads, waiting for the JavaScript
/// thread of one environment.
pub(crate) struct Bridge {
    queue: Mutex<VecDeque<Request>>,
    ready: Condvar,
}

/// One queued call.
struct Request {
    func: SendRef,
    input: Vec<u8>,
    reply: mpsc::SyncSender<Result<Vec<u8>, String>>,
}

/// The bridge of this JavaScript thread, made on first use.
fn bridge() -> Arc<Bridge> {
    BRIDGE.with(|b| {
        b.borrow_mut()
            .get_or_insert_with(|| Arc::new(Bridge { queue: Mutex::new(VecDeque::new()), ready: Condvar::new() }))
            .clone()
    })
}

impl Bridge {
    fn push(&self, r: Request) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).push_back(r);
        self.ready.notify_all();
    }

    fn take(&self) -> Vec<Request> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect()
    }

    /// Answers every queued call.
    ///
    /// # Safety
    /// Must run on the JavaScript thread of `env`, the one this bridge is for.
    unsafe fn answer_all(&self, env: sys::napi_env) {
        for r in self.take() {
            // SAFETY: on the JavaScript thread (caller contract); the
            // reference is alive while its caller waits for the reply.
            let result = unsafe {
                let mut func = ptr::null_mut();
                if sys::napi_get_reference_value(env, r.func.0, &mut func) != sys::Status::napi_ok || func.is_null() {
                    Err("the JavaScript function is gone".to_owned())
                } else {
                    invoke(env, func, &r.input)
                }
            };
            let _ = r.reply.send(result);
        }
    }
}

/// Runs `f` (a load, upgrade or unload) on a helper thread while this
/// JavaScript thread answers the host-function calls it, or anything
/// holding the runtime's admin lock meanwhile, makes; returns what `f`
/// returned. A panic in `f` becomes an internal error.
///
/// # Safety
/// Must run on the JavaScript thread of `env`.
pub(crate) unsafe fn pump_while<R: Send>(
    env: sys::napi_env,
    f: impl FnOnce() -> hotmod_core::Result<R> + Send,
) -> hotmod_core::Result<R> {
    set_js_thread(env);
    let bridge = bridge();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let worker = std::thread::Builder::new().name("hotmod-admin".into()).spawn_scoped(s, || {
            let r = f();
            done.store(true, Ordering::Release);
            // Under the lock, so the wake-up cannot fall between the
            // pump's check and its wait.
            let _q = bridge.queue.lock().unwrap_or_else(|e| e.into_inner());
            bridge.ready.notify_all();
            r
        });
        let worker = match worker {
            Ok(w) => w,
            Err(e) => {
                return Err(hotmod_core::Error::new(
                    hotmod_core::Status::Io,
                    format!("cannot start a thread for the operation: {e}"),
                ))
            }
        };
        loop {
            {
                let mut q = bridge.queue.lock().unwrap_or_else(|e| e.into_inner());
                while q.is_empty() && !done.load(Ordering::Acquire) {
                    q = bridge.ready.wait_timeout(q, Duration::from_millis(50)).unwrap_or_else(|e| e.into_inner()).0;
                }
            }
            // SAFETY: on the JavaScript thread (caller contract).
            unsafe { bridge.answer_all(env) };
            if done.load(Ordering::Acquire) {
                break;
            }
        }
        worker.join().unwrap_or_else(|_| {
            Err(hotmod_core::Error::new(hotmod_core::Status::Internal, "internal error: the operation panicked"))
        })
    })
}

/// Marks the current thread as the JavaScript thread of `env`.
pub(crate) fn set_js_thread(env: sys::napi_env) {
    JS_ENV.with(|e| e.set(env));
}

/// Whether the current thread is the JavaScript thread of `env`.
pub(crate) fn on_js_thread(env: sys::napi_env) -> bool {
    JS_ENV.with(|e| e.get()) == env
}

/// Whether a JavaScript host function is running on this thread (so the
/// runtime may be in the middle of a load, upgrade or unload right here).
pub(crate) fn in_host_function() -> bool {
    HOST_DEPTH.with(|d| d.get()) > 0
}

/// What crosses to the JavaScript thread through the threadsafe function.
enum Message {
    /// Answer the queued calls.
    Wake,
    /// Delete the reference to the function (its owner was dropped on
    /// another thread).
    DeleteRef(SendRef),
}

struct SendRef(sys::napi_ref);
// SAFETY: the reference is only used (deleted) on the JavaScript thread.
unsafe impl Send for SendRef {}

/// A JavaScript function registered as a host function.
pub(crate) struct JsHostFunction {
    name: String,
    env: sys::napi_env,
    func: sys::napi_ref,
    bridge: Arc<Bridge>,
    tsfn: Tsfn,
}

// SAFETY: `env` and `func` are only used on the JavaScript thread (checked
// with `on_js_thread`); other threads go through the threadsafe function.
unsafe impl Send for JsHostFunction {}
// SAFETY: as above.
unsafe impl Sync for JsHostFunction {}

impl JsHostFunction {
    /// Wraps `func`, a JavaScript function.
    ///
    /// # Safety
    /// Must run on the JavaScript thread of `env`; `func` must be a function.
    pub(crate) unsafe fn new(env: sys::napi_env, name: &str, func: sys::napi_value) -> napi::Result<JsHostFunction> {
        let mut reference = ptr::null_mut();
        // SAFETY: env is live on this thread (caller contract).
        unsafe {
            if sys::napi_create_reference(env, func, 1, &mut reference) != sys::Status::napi_ok {
                return Err(errors::throw_internal(env, "cannot keep a reference to the host function"));
            }
            set_js_thread(env);
            let Some(tsfn) = Tsfn::new(env, func, "hotmod host function", call_js) else {
                sys::napi_delete_reference(env, reference);
                return Err(errors::throw_internal(env, "cannot create a threadsafe function for the host function"));
            };
            Ok(JsHostFunction { name: name.to_owned(), env, func: reference, bridge: bridge(), tsfn })
        }
    }

    /// Calls the function from a thread other than the JavaScript thread:
    /// queues the call, wakes the JavaScript thread, and waits.
    fn call_from_other_thread(&self, input: &[u8]) -> Result<Vec<u8>, String> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.bridge.push(Request { func: SendRef(self.func), input: input.to_vec(), reply });
        // A failed wake-up means the environment is going away; a pump may
        // still answer, so only the wait below decides.
        let _ = self.tsfn.call(Box::new(Message::Wake));
        loop {
            match answer.recv_timeout(Duration::from_millis(100)) {
                Ok(r) => return r,
                Err(mpsc::RecvTimeoutError::Timeout) if !self.tsfn.is_closed() => continue,
                Err(_) => {
                    return Err(format!(
                        "host function '{}' was not called: the JavaScript environment shut down",
                        self.name
                    ))
                }
            }
        }
    }
}

impl HostFunction for JsHostFunction {
    fn call(&self, input: &[u8], out: &mut OutputWriter<'_>) -> Result<(), String> {
        let bytes = if on_js_thread(self.env) {
            // SAFETY: on the JavaScript thread of `env`, which outlives the
            // reference (deleted in Drop, or invalidated with the env).
            unsafe {
                let mut func = ptr::null_mut();
                if sys::napi_get_reference_value(self.env, self.func, &mut func) != sys::Status::napi_ok
                    || func.is_null()
                {
                    Err("the JavaScript function is gone".to_owned())
                } else {
                    invoke(self.env, func, input)
                }
            }
        } else {
            self.call_from_other_thread(input)
        };
        match bytes {
            Ok(b) => {
                out.give(b);
                Ok(())
            }
            Err(msg) => Err(format!("host function '{}': {msg}", self.name)),
        }
    }
}

impl Drop for JsHostFunction {
    fn drop(&mut self) {
        if self.tsfn.is_closed() {
            // The environment is gone, and the reference with it.
            return;
        }
        if on_js_thread(self.env) {
            // SAFETY: on the JavaScript thread, environment alive.
            unsafe { sys::napi_delete_reference(self.env, self.func) };
        } else {
            // If the environment is going away the reference goes with it.
            let _ = self.tsfn.call(Box::new(Message::DeleteRef(SendRef(self.func))));
        }
    }
}

unsafe extern "C" fn call_js(env: sys::napi_env, func: sys::napi_value, _ctx: *mut c_void, data: *mut c_void) {
    // SAFETY: data is a Box<Message> queued by this module, delivered once.
    let msg = unsafe { Box::from_raw(data as *mut Message) };
    if env.is_null() {
        // Teardown: dropping the reply sender wakes the waiting thread.
        return;
    }
    let _ = func;
    match *msg {
        Message::Wake => {
            // SAFETY: called by Node on the JavaScript thread with a live env.
            unsafe { bridge().answer_all(env) };
        }
        Message::DeleteRef(r) => {
            // SAFETY: as above.
            unsafe { sys::napi_delete_reference(env, r.0) };
        }
    }
}

/// Calls `func(Buffer)` and reads what it returns. While it runs, the
/// runtime refuses loads, upgrades and unloads from this thread: the host
/// function may have been called from inside one (a plugin's init or
/// destroy hook), which holds the lock they need.
///
/// # Safety
/// Must run on the JavaScript thread of `env`.
unsafe fn invoke(env: sys::napi_env, func: sys::napi_value, input: &[u8]) -> Result<Vec<u8>, String> {
    HOST_DEPTH.with(|d| d.set(d.get() + 1));
    // SAFETY: forwarded from the caller.
    let r = unsafe { invoke_scoped(env, func, input) };
    HOST_DEPTH.with(|d| d.set(d.get() - 1));
    r
}

/// [`invoke`] inside a handle scope of its own.
///
/// # Safety
/// Must run on the JavaScript thread of `env`.
unsafe fn invoke_scoped(env: sys::napi_env, func: sys::napi_value, input: &[u8]) -> Result<Vec<u8>, String> {
    let mut scope = ptr::null_mut();
    // SAFETY: env is live on this thread (caller contract); every value
    // created here lives in the handle scope closed below.
    unsafe {
        if sys::napi_open_handle_scope(env, &mut scope) != sys::Status::napi_ok {
            return Err("the JavaScript environment cannot run code now".to_owned());
        }
        let r = invoke_in_scope(env, func, input);
        sys::napi_close_handle_scope(env, scope);
        r
    }
}

/// The call itself; its values live in the caller's handle scope.
///
/// # Safety
/// Must run on the JavaScript thread of `env`, inside a handle scope.
unsafe fn invoke_in_scope(env: sys::napi_env, func: sys::napi_value, input: &[u8]) -> Result<Vec<u8>, String> {
    // SAFETY: as in `invoke`.
    unsafe {
        let arg = match crate::output::copy(env, input) {
            Ok(v) => v,
            Err(_) => return Err(errors::take_exception_message(env)),
        };
        let mut undefined = ptr::null_mut();
        sys::napi_get_undefined(env, &mut undefined);
        let mut result = ptr::null_mut();
        let status = sys::napi_call_function(env, undefined, func, 1, &arg, &mut result);
        if status != sys::Status::napi_ok {
            let mut pending = false;
            sys::napi_is_exception_pending(env, &mut pending);
            if pending {
                return Err(format!("threw: {}", errors::take_exception_message(env)));
            }
            return Err("the JavaScript environment cannot run code now".to_owned());
        }
        let mut t = 0;
        sys::napi_typeof(env, result, &mut t);
        if t == sys::ValueType::napi_undefined || t == sys::ValueType::napi_null {
            return Ok(Vec::new());
        }
        let mut is_promise = false;
        sys::napi_is_promise(env, result, &mut is_promise);
        if is_promise {
            return Err(
                "returned a Promise; expected a Buffer, TypedArray, DataView, ArrayBuffer, string or nothing, returned synchronously (host functions cannot be async)"
                    .to_owned(),
            );
        }
        match crate::input::read(env, result, "host function result") {
            Ok(input) => Ok(input.bytes().to_vec()),
            Err(_) => {
                let _ = errors::take_exception_message(env);
                Err(format!(
                    "returned {}; expected a Buffer, TypedArray, DataView, ArrayBuffer, string or nothing",
                    errors::describe_value(env, result)
                ))
            }
        }
    }
}
