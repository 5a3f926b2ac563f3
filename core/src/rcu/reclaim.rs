//! The reclaimer: one thread per process (named `hotmod-reclaim`, like
//! liburcu's `call_rcu` worker) that frees the values writers could not wait
//! for, and the sleeping wait that writers and it share.
//!
//! Nothing polls. A waiter flags the readers in its way and sleeps on
//! [`WAKE`]; a reader that leaves a section while flagged bumps the wake
//! epoch (see the module docs of [`super`] for why the flag is never missed),
//! as does every new deferred value and every thread exit. The reclaimer
//! then re-checks each pending value's own grace period: a call parked on
//! one version holds back that version only.

use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use super::GracePeriod;

struct Deferred {
    /// Dropped once the grace period is over (it is an `Arc` of the value).
    _value: Box<dyn Send>,
    grace: GracePeriod,
}

pub(crate) struct Queue {
    items: Vec<Deferred>,
    /// Conditions to report (delivered on the reclaimer thread).
    reports: Vec<String>,
    running: bool,
}

static QUEUE: Mutex<Queue> = Mutex::new(Queue { items: Vec::new(), reports: Vec::new(), running: false });
/// Bumped by every event a waiter may be waiting for.
static WAKE: Mutex<u64> = Mutex::new(0);
static WAKE_CV: Condvar = Condvar::new();
type Reporter = Box<dyn Fn(&str) + Send + Sync>;
static REPORTER: OnceLock<Reporter> = OnceLock::new();

fn queue() -> MutexGuard<'static, Queue> {
    QUEUE.lock().unwrap_or_else(|e| e.into_inner())
}

fn wake_lock() -> MutexGuard<'static, u64> {
    WAKE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sets where reports go (once per process; later calls are ignored).
pub(crate) fn set_reporter(f: impl Fn(&str) + Send + Sync + 'static) {
    let _ = REPORTER.set(Box::new(f));
    let running = {
        let mut q = queue();
        ensure_running(&mut q);
        q.running
    };
    if running {
        wake();
    }
}

/// Wakes every waiter, which re-checks what it waits for.
#[cold]
pub(crate) fn wake() {
    let mut e = wake_lock();
    *e = e.wrapping_add(1);
    WAKE_CV.notify_all();
}

/// Queues a report for the reclaimer to deliver.
pub(crate) fn report(msg: String) {
    queue().reports.push(msg);
    wake();
}

/// Waits until `done` holds, or `deadline` passes. `ready` is `done` that,
/// when false, has made sure the readers in the way will wake us (see
/// `GracePeriod::ready_or_armed`). Returns whether it held.
pub(crate) fn wait_until(done: impl Fn() -> bool, ready: impl Fn() -> bool, deadline: Option<Instant>) -> bool {
    // Sections are short: look again a few times, letting the readers run
    // (there may be more of them than cores), before sleeping.
    for i in 0..32 {
        if done() {
            return true;
        }
        if i < 8 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
    }
    loop {
        let epoch = *wake_lock();
        if ready() {
            return true;
        }
        let mut g = wake_lock();
        while *g == epoch {
            match deadline {
                None => g = WAKE_CV.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        drop(g);
                        return ready();
                    }
                    g = WAKE_CV.wait_timeout(g, d - now).unwrap_or_else(|e| e.into_inner()).0;
                }
            }
        }
    }
}

/// Hands a value to the reclaimer, to be dropped when `grace` ends.
pub(crate) fn defer(value: Box<dyn Send>, grace: GracePeriod) {
    {
        let mut q = queue();
        q.items.push(Deferred { _value: value, grace });
        ensure_running(&mut q);
    }
    wake();
}

/// Starts the reclaimer if it is not running. If no thread can be started
/// the values stay queued (never freed under a reader) and the next defer
/// tries again.
fn ensure_running(q: &mut Queue) {
    if q.running {
        return;
    }
    q.running = std::thread::Builder::new().name("hotmod-reclaim".into()).spawn(run).is_ok();
}

fn run() {
    loop {
        let epoch = *wake_lock();
        let (items, reports) = {
            let mut q = queue();
            (std::mem::take(&mut q.items), std::mem::take(&mut q.reports))
        };
        if let Some(r) = REPORTER.get() {
            for m in &reports {
                // A panicking reporter must not stop reclamation.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r(m)));
            }
        } else if !reports.is_empty() {
            queue().reports.splice(0..0, reports);
        }
        // Values are dropped here, outside every lock: dropping a version
        // runs its plugin's deactivate and destroy hooks and emits events.
        let pending: Vec<Deferred> = items.into_iter().filter(|d| !d.grace.ready_or_armed()).collect();
        if !pending.is_empty() {
            queue().items.extend(pending);
        }
        let mut g = wake_lock();
        while *g == epoch {
            g = WAKE_CV.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The reclaimer's locks, held across `fork()`.
pub(crate) type ForkGuards = (MutexGuard<'static, Queue>, MutexGuard<'static, u64>);

pub(crate) fn lock_for_fork() -> ForkGuards {
    (queue(), wake_lock())
}

/// In a forked child: the reclaimer thread does not exist there; the next
/// deferred value starts a new one.
pub(crate) fn after_fork_in_child(mut g: ForkGuards) {
    g.0.running = false;
}
