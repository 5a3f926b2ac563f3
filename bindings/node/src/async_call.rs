//! Asynchronous calls: the plugin runs on one of hotmod's call threads and
//! the caller gets a `Promise`, so a slow plugin never blocks the event loop.
//!
//! The calls do not run on the libuv pool: `process.exit()` joins the libuv
//! threads (`uv_library_shutdown`), so one call blocked in a plugin would
//! keep the process from ever exiting. hotmod's call threads are never
//! joined; the result comes back to the JavaScript thread through a
//! threadsafe function, which keeps the event loop alive while calls are in
//! flight (as libuv work does) but does not hold up an exit.
//!
//! Threads are started on demand, one per call in flight up to
//! [`MAX_THREADS`] (more calls queue), and one idle for [`IDLE_EXIT`] exits.
//!
//! The input is a copy taken when the call starts, or a view over a
//! `SharedArrayBuffer` kept alive by a reference (see `input::read_async`):
//! whatever JavaScript does to the caller's buffer meanwhile, the plugin
//! reads memory that stays valid and unchanged by it.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use hotmod_core::{MethodHandle, Module, Output, Runtime, Status};
use napi::sys;

use crate::errors;
use crate::input::Input;
use crate::tsfn::Tsfn;

/// The most call threads running at once (in all JavaScript threads of the
/// process together); further calls wait for one to be free.
pub(crate) const MAX_THREADS: usize = 64;

/// How long a call thread waits for work before it exits.
const IDLE_EXIT: Duration = Duration::from_secs(10);

/// What an asynchronous call calls.
pub(crate) enum Target {
    /// A resolved method.
    Handle(Arc<MethodHandle>),
    /// A method of a module object, by name.
    Module(Module, String),
    /// `module.method` by name.
    Name(Arc<Runtime>, String, String),
}

impl Target {
    fn call(&self, input: &[u8]) -> hotmod_core::Result<Output> {
        match self {
            Target::Handle(h) => h.call_with_offer(input, crate::output::COPY_MAX),
            Target::Module(m, method) => m.call(method, input),
            Target::Name(rt, module, method) => rt.call(module, method, input),
        }
    }
}

struct Work {
    target: Target,
    input: Input,
    /// Keeps the input's JavaScript object alive (NULL if nothing borrowed).
    keep: sys::napi_ref,
    deferred: sys::napi_deferred,
    /// Where the result goes back to the JavaScript thread.
    done: Arc<Tsfn>,
    result: Option<hotmod_core::Result<Output>>,
}

// SAFETY: `keep` and `deferred` are only used on the JavaScript thread (in
// `start`, `complete` and `release`); a call thread only runs the target on
// the input (see `Input`'s Send) and stores the result. If the environment
// is gone when the work comes back, they are dropped unused.
unsafe impl Send for Work {}

thread_local! {
    /// The threadsafe function this JavaScript thread's results come back
    /// through, made on first use.
    static DONE: RefCell<Option<Arc<Tsfn>>> = const { RefCell::new(None) };
    /// Calls of this JavaScript thread in flight (the threadsafe function
    /// keeps the event loop alive while there are any).
    static IN_FLIGHT: Cell<usize> = const { Cell::new(0) };
}

/// The call threads and their queue.
struct Pool {
    state: Mutex<PoolState>,
    ready: Condvar,
}

struct PoolState {
    queue: VecDeque<Box<Work>>,
    /// Threads waiting for work.
    idle: usize,
    /// Threads running (idle or not).
    threads: usize,
}

static POOL: Pool =
    Pool { state: Mutex::new(PoolState { queue: VecDeque::new(), idle: 0, threads: 0 }), ready: Condvar::new() };

impl Pool {
    /// Queues `work`, starting a thread if every running one is taken.
    /// Gives the work back if no thread runs and none can be started.
    fn submit(&'static self, work: Box<Work>) -> Result<(), Box<Work>> {
        let start = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.queue.push_back(work);
            let start = s.queue.len() > s.idle && s.threads < MAX_THREADS;
            if start {
                s.threads += 1;
            }
            start
        };
        self.ready.notify_one();
        if start && std::thread::Builder::new().name("hotmod-call".into()).spawn(move || self.run()).is_err() {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.threads -= 1;
            if s.threads == 0 {
                // Nothing will ever take it.
                return Err(s.queue.pop_back().expect("the work just queued"));
            }
        }
        Ok(())
    }

    /// A call thread: runs queued work until idle for too long.
    fn run(&self) {
        loop {
            let work = {
                let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    if let Some(w) = s.queue.pop_front() {
                        break w;
                    }
                    s.idle += 1;
                    let (g, timeout) = self.ready.wait_timeout(s, IDLE_EXIT).unwrap_or_else(|e| e.into_inner());
                    s = g;
                    s.idle -= 1;
                    if timeout.timed_out() && s.queue.is_empty() {
                        s.threads -= 1;
                        return;
                    }
                }
            };
            execute(work);
        }
    }
}

/// Runs the call and sends the result back to its JavaScript thread.
fn execute(mut work: Box<Work>) {
    let r = catch_unwind(AssertUnwindSafe(|| work.target.call(work.input.bytes()))).unwrap_or_else(|_| {
        Err(hotmod_core::Error::new(Status::Internal, "internal error: the call panicked inside hotmod"))
    });
    work.result = Some(r);
    let done = work.done.clone();
    // Refused only when the environment is gone: then nobody waits for
    // the result, and it is dropped here (plugin memory released).
    drop(done.call(work));
}

/// This JavaScript thread's threadsafe function for results.
///
/// # Safety
/// Must run on the JavaScript thread of `env`.
unsafe fn done_channel(env: sys::napi_env) -> Option<Arc<Tsfn>> {
    DONE.with(|d| {
        let mut d = d.borrow_mut();
        if let Some(t) = d.as_ref().filter(|t| !t.is_closed()) {
            return Some(t.clone());
        }
        // SAFETY: on the JavaScript thread (caller contract); no function:
        // `complete` does the work.
        let t = Arc::new(unsafe { Tsfn::new(env, ptr::null_mut(), "hotmod call", complete)? });
        IN_FLIGHT.with(|n| n.set(0));
        *d = Some(t.clone());
        Some(t)
    })
}

/// Queues `target(input)` on the call threads and returns its promise.
///
/// # Safety
/// Must run on the JavaScript thread of `env`; `input_value` must be the
/// value `input` was read from (by `input::read_async`).
pub(crate) unsafe fn start(
    env: sys::napi_env,
    target: Target,
    input: Input,
    input_value: sys::napi_value,
) -> napi::Result<sys::napi_value> {
    let mut promise = ptr::null_mut();
    let mut deferred = ptr::null_mut();
    let mut keep = ptr::null_mut();
    // SAFETY: env is live on this thread (caller contract). The Work box
    // comes back exactly once: to `complete` through the threadsafe
    // function, or here if it cannot be queued.
    unsafe {
        let Some(done) = done_channel(env) else {
            return Err(errors::throw_internal(env, "cannot create the channel for asynchronous results"));
        };
        if input.borrows_object && sys::napi_create_reference(env, input_value, 1, &mut keep) != sys::Status::napi_ok {
            return Err(errors::throw_internal(env, "cannot keep a reference to the call input"));
        }
        if sys::napi_create_promise(env, &mut deferred, &mut promise) != sys::Status::napi_ok {
            if !keep.is_null() {
                sys::napi_delete_reference(env, keep);
            }
            return Err(errors::throw_internal(env, "cannot create a promise"));
        }
        let work = Box::new(Work { target, input, keep, deferred, done: done.clone(), result: None });
        if IN_FLIGHT.with(|n| n.get()) == 0 {
            done.keep_loop_alive(env, true);
        }
        IN_FLIGHT.with(|n| n.set(n.get() + 1));
        if let Err(work) = POOL.submit(work) {
            finish(env, &done);
            settle_error(env, &work, Status::Io.code(), "cannot start a thread for the asynchronous call");
            release(env, *work);
        }
    }
    Ok(promise)
}

/// One call fewer in flight on this JavaScript thread.
///
/// # Safety
/// Must run on the JavaScript thread of `env`.
unsafe fn finish(env: sys::napi_env, done: &Tsfn) {
    let left = IN_FLIGHT.with(|n| {
        let left = n.get().saturating_sub(1);
        n.set(left);
        left
    });
    if left == 0 {
        // SAFETY: forwarded from the caller.
        unsafe { done.keep_loop_alive(env, false) };
    }
}

/// Settles a call's promise, on the JavaScript thread (the threadsafe
/// function's callback; a NULL `env` means the environment is going away
/// and the work is only dropped).
unsafe extern "C" fn complete(env: sys::napi_env, _func: sys::napi_value, _ctx: *mut c_void, data: *mut c_void) {
    // SAFETY: data is a Box<Work> queued by `execute`, delivered once.
    let mut work = unsafe { Box::from_raw(data as *mut Work) };
    if env.is_null() {
        return;
    }
    // SAFETY: on the JavaScript thread with a live env, inside the handle
    // scope Node opens for the callback.
    unsafe {
        finish(env, &work.done);
        match work.result.take() {
            Some(Ok(output)) => match crate::output::to_buffer(env, output) {
                Ok(buf) => {
                    sys::napi_resolve_deferred(env, work.deferred, buf);
                }
                Err(_) => {
                    let mut exc = ptr::null_mut();
                    sys::napi_get_and_clear_last_exception(env, &mut exc);
                    sys::napi_reject_deferred(env, work.deferred, exc);
                }
            },
            Some(Err(e)) => settle_error(env, &work, e.status().code(), e.message()),
            None => settle_error(env, &work, Status::Internal.code(), "the asynchronous call did not run"),
        }
        release(env, *work);
    }
}

/// Rejects the call's promise with an error carrying `code`.
///
/// # Safety
/// Must run on the JavaScript thread of `env`, with `work.deferred` not yet settled.
unsafe fn settle_error(env: sys::napi_env, work: &Work, code: i32, message: &str) {
    // SAFETY: on the JavaScript thread (callers).
    unsafe {
        let err = errors::create(env, code, message, false);
        if !err.is_null() {
            sys::napi_reject_deferred(env, work.deferred, err);
        }
    }
}

/// Drops the keep-alive reference (the input may be collected after this).
///
/// # Safety
/// Must run on the JavaScript thread of `env`.
unsafe fn release(env: sys::napi_env, work: Work) {
    if !work.keep.is_null() {
        // SAFETY: on the JavaScript thread (callers); created in `start`.
        unsafe { sys::napi_delete_reference(env, work.keep) };
    }
    drop(work);
}
