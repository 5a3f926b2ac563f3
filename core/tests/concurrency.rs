//! Concurrency of the runtime as a whole: a call parked in a plugin holds
//! back nothing but its own version; administrative calls made re-entrantly
//! answer Busy; counts stay exact across threads that come and go; versions
//! are destroyed exactly once under many more threads than cores; a signal
//! handler may call into hotmod.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::plugin;
use hotmod_core::{EventKind, LoadOptions, Runtime, RuntimeOptions, Status, UpgradeOptions};

#[cfg(target_os = "linux")]
fn reclaim_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|c| c.trim() == "hotmod-reclaim")
        .count()
}

#[cfg(not(target_os = "linux"))]
fn reclaim_threads() -> usize {
    0
}

/// A gate the test opens: `park` blocks until `open`.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cv: std::sync::Condvar,
    waiting: AtomicUsize,
}

impl Gate {
    fn park(&self) {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut g = self.open.lock().unwrap();
        while !*g {
            g = self.cv.wait(g).unwrap();
        }
    }
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

fn cycles(rt: &Runtime, n: usize) -> Duration {
    let t0 = Instant::now();
    for _ in 0..n {
        rt.load(plugin("probe"), &LoadOptions::default()).unwrap();
        assert_eq!(&*rt.call("probe", "echo", b"x").unwrap(), b"x");
        rt.unload("probe", false).unwrap();
    }
    t0.elapsed()
}

#[test]
fn a_parked_call_holds_back_only_its_own_version() {
    let rt = Arc::new(Runtime::with_options(RuntimeOptions {
        drain_timeout: Duration::from_millis(200),
        ..Default::default()
    }));
    let gate = Arc::new(Gate::default());
    let g = gate.clone();
    rt.register_host_function(
        "blocker_park",
        Arc::new(move |_: &[u8]| {
            g.park();
            Ok(Vec::new())
        }),
    )
    .unwrap();
    let destroyed = common::counting_host_function(&rt, "blocker_destroyed");
    rt.load(plugin("blocker"), &LoadOptions::default()).unwrap();
    let baseline = cycles(&rt, 20);
    let before = reclaim_threads();

    let r = rt.clone();
    let parked = thread::spawn(move || r.call("blocker", "park", b"").map(|o| o.len()));
    assert!(common::wait_for(Duration::from_secs(10), || gate.waiting.load(Ordering::SeqCst) == 1));

    let t0 = Instant::now();
    let with_parked = cycles(&rt, 20);
    // The unload of the parked module returns after its drain timeout at
    // most, and does not hold up the admin work that follows it.
    rt.unload("blocker", false).unwrap();
    let after_unload = cycles(&rt, 5);
    assert!(t0.elapsed() < Duration::from_secs(10), "admin work stalled behind the parked call: {:?}", t0.elapsed());
    eprintln!(
        "20 load/unload cycles of an unrelated module: {baseline:?} alone, {with_parked:?} with a parked call \
         ({:.2}x); 5 more after unloading the parked module: {after_unload:?}",
        with_parked.as_secs_f64() / baseline.as_secs_f64()
    );
    assert!(reclaim_threads() <= before.max(1), "reclaim threads grew: {} -> {}", before, reclaim_threads());
    assert_eq!(destroyed.load(Ordering::SeqCst), 0, "the parked version was destroyed under its call");

    gate.open();
    assert_eq!(parked.join().unwrap().unwrap(), 0);
    assert!(
        common::wait_for(Duration::from_secs(10), || destroyed.load(Ordering::SeqCst) == 1),
        "the parked version was not destroyed after its call returned"
    );
    assert!(reclaim_threads() <= 1);
}

#[test]
fn admin_calls_from_inside_an_admin_operation_answer_busy() {
    let rt = Arc::new(Runtime::new());
    let seen: Arc<Mutex<Vec<(String, Status, String)>>> = Arc::default();
    // A host function that init calls (lifecycle asks "new_id") and that
    // tries to load, upgrade, unload and register while init runs.
    let (weak, s) = (Arc::downgrade(&rt), seen.clone());
    rt.register_host_function(
        "new_id",
        Arc::new(move |_: &[u8]| {
            let rt = weak.upgrade().unwrap();
            let mut s = s.lock().unwrap();
            let e = rt.load(plugin("probe"), &LoadOptions::default()).unwrap_err();
            s.push(("load".into(), e.status(), e.message().to_owned()));
            let e = rt.unload("checksum", false).unwrap_err();
            s.push(("unload".into(), e.status(), e.message().to_owned()));
            let e = rt.upgrade("checksum", plugin("checksum-v2"), &UpgradeOptions::default()).unwrap_err();
            s.push(("upgrade".into(), e.status(), e.message().to_owned()));
            let e = rt.register_host_function("x", Arc::new(|_: &[u8]| Ok(Vec::new()))).unwrap_err();
            s.push(("register_host_function".into(), e.status(), e.message().to_owned()));
            Ok(7u64.to_le_bytes().to_vec())
        }),
    )
    .unwrap();
    rt.load(plugin("checksum"), &LoadOptions::default()).unwrap();
    let t0 = Instant::now();
    rt.load(plugin("lifecycle"), &LoadOptions::default()).unwrap();
    assert!(t0.elapsed() < Duration::from_secs(10));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "{seen:?}");
    for (what, status, msg) in &seen {
        assert_eq!(*status, Status::Busy, "{what}: {msg}");
        assert!(msg.contains("would wait for itself"), "{what}: {msg}");
    }
    assert!(rt.module("probe").is_err(), "nothing was loaded re-entrantly");
    assert_eq!(rt.module("checksum").unwrap().info().version, "1.0.0");

    // An event handler that loads, run on the admin thread.
    let (weak, busy) = (Arc::downgrade(&rt), Arc::new(Mutex::new(Vec::new())));
    let b = busy.clone();
    rt.set_event_handler(Some(Arc::new(move |ev: &hotmod_core::Event| {
        if ev.kind == EventKind::Activated && ev.module == "probe" {
            let rt = weak.upgrade().unwrap();
            b.lock().unwrap().push(rt.load(plugin("checksum-v2"), &LoadOptions::default()).unwrap_err().status());
        }
    })));
    rt.load(plugin("probe"), &LoadOptions::default()).unwrap();
    rt.set_event_handler(None);
    assert_eq!(*busy.lock().unwrap(), vec![Status::Busy]);
    // And once the operation is over, the same calls work.
    rt.unload("probe", false).unwrap();
    rt.load(plugin("probe"), &LoadOptions::default()).unwrap();
}

#[test]
fn counts_are_exact_across_threads_that_start_and_exit() {
    let rt = Arc::new(Runtime::new());
    rt.load(plugin("probe"), &LoadOptions::default()).unwrap();
    let (n, m) = (8usize, 5_000u64);
    let stop = Arc::new(AtomicBool::new(false));
    let extra = Arc::new(AtomicU64::new(0));
    // Threads that start and exit while the counted ones run.
    let churn = {
        let (rt, stop, extra) = (rt.clone(), stop.clone(), extra.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let rt = rt.clone();
                thread::spawn(move || {
                    let h = rt.method("probe", "noop").unwrap();
                    for _ in 0..100 {
                        h.call_into(b"", &mut []).unwrap();
                    }
                })
                .join()
                .unwrap();
                extra.fetch_add(100, Ordering::Relaxed);
            }
        })
    };
    let (parked_tx, parked_rx) = mpsc::channel();
    let release = Arc::new(Gate::default());
    let workers: Vec<_> = (0..n)
        .map(|i| {
            let (rt, parked_tx, release) = (rt.clone(), parked_tx.clone(), release.clone());
            thread::spawn(move || {
                let h = rt.method("probe", "noop").unwrap();
                for k in 0..m {
                    if k % 2 == 0 {
                        h.call_into(b"", &mut []).unwrap();
                    } else {
                        rt.call("probe", "noop", b"").unwrap();
                    }
                }
                let _ = rt.call("probe", "fail", b"");
                // Half stay alive until after the sum, half exit before it.
                if i % 2 == 0 {
                    parked_tx.send(()).unwrap();
                    release.park();
                }
            })
        })
        .collect();
    for _ in 0..n / 2 {
        parked_rx.recv().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    churn.join().unwrap();
    let count = |method: &str| rt.stats().into_iter().find(|s| s.method == method).unwrap().counters;
    // Wait for the threads that exit on their own.
    while workers.iter().filter(|w| w.is_finished()).count() < n / 2 {
        thread::sleep(Duration::from_millis(5));
    }
    let noop = count("noop");
    assert_eq!(noop.calls, n as u64 * m + extra.load(Ordering::Relaxed), "calls lost or doubled");
    assert_eq!(noop.errors, 0);
    let fail = count("fail");
    assert_eq!((fail.calls, fail.errors), (n as u64, n as u64));
    release.open();
    workers.into_iter().for_each(|w| w.join().unwrap());
    assert_eq!(count("noop").calls, n as u64 * m + extra.load(Ordering::Relaxed), "folding at exit changed the sum");
}

/// Many more threads than cores, some of them short-lived, call a module
/// that is upgraded again and again; each version reports its destruction
/// (the drop-flag oracle) and any call still in flight when it is destroyed.
fn upgrade_stress(threads: usize, upgrades: usize) {
    let rt = Arc::new(Runtime::new());
    let common::LifecycleOracle { destroyed, violations, next_id } = common::lifecycle_oracle(&rt);
    rt.load(plugin("lifecycle"), &LoadOptions::default()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let callers: Vec<_> = (0..threads)
        .map(|i| {
            let (rt, stop, calls) = (rt.clone(), stop.clone(), calls.clone());
            thread::spawn(move || {
                let work = |n: usize| {
                    let h = rt.method("lifecycle", "work").unwrap();
                    for _ in 0..n {
                        let out = h.call(b"payload").expect("a call failed during upgrades");
                        assert_eq!(out.len(), 8);
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                };
                while !stop.load(Ordering::Relaxed) {
                    if i % 4 == 0 {
                        // Threads that start and exit during the upgrades.
                        thread::scope(|s| s.spawn(|| work(50)).join().unwrap());
                    } else {
                        work(200);
                    }
                }
            })
        })
        .collect();
    let opts = UpgradeOptions::default();
    let t0 = Instant::now();
    for _ in 0..upgrades {
        rt.upgrade("lifecycle", plugin("lifecycle"), &opts).unwrap();
    }
    eprintln!("{upgrades} upgrades under {threads} calling threads: {:?}", t0.elapsed());
    stop.store(true, Ordering::Relaxed);
    callers.into_iter().for_each(|c| c.join().unwrap());
    rt.unload("lifecycle", false).unwrap();
    let created = next_id.load(Ordering::SeqCst) - 1;
    assert!(
        common::wait_for(Duration::from_secs(30), || destroyed.lock().unwrap().len() as u64 == created),
        "expected all {created} instances destroyed, found {}",
        destroyed.lock().unwrap().len()
    );
    let d = destroyed.lock().unwrap();
    assert!(d.values().all(|&n| n == 1), "an instance was destroyed twice: {d:?}");
    assert_eq!(violations.load(Ordering::SeqCst), 0, "an instance was destroyed with a call in flight");
    assert!(calls.load(Ordering::Relaxed) > 0);
    assert!(reclaim_threads() <= 1);
}

#[test]
fn upgrades_under_8_threads_destroy_each_version_once_after_its_last_call() {
    upgrade_stress(8, 100);
}

#[test]
fn upgrades_under_32_threads_destroy_each_version_once_after_its_last_call() {
    upgrade_stress(32, 40);
}

/// A signal handler that calls a method while the interrupted thread is in
/// the middle of its own calls (entering or leaving its read section): the
/// one-word section state stays consistent, and grace periods still end.
#[cfg(target_os = "linux")]
#[test]
fn a_signal_handler_may_call_into_hotmod() {
    use std::sync::OnceLock;
    static HANDLE: OnceLock<hotmod_core::MethodHandle> = OnceLock::new();
    static IN_HANDLER: AtomicU64 = AtomicU64::new(0);
    extern "C" fn on_signal(_: libc::c_int) {
        if let Some(h) = HANDLE.get() {
            if h.call_into(b"", &mut []).is_ok() {
                IN_HANDLER.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let rt = Arc::new(Runtime::new());
    rt.load(plugin("probe"), &LoadOptions::default()).unwrap();
    let _ = HANDLE.set(rt.method("probe", "noop").unwrap());
    // SAFETY: installs a handler that only calls a no-op method through a
    // handle resolved beforehand (no allocation on that path).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = libc::SA_RESTART;
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (tid_tx, tid_rx) = mpsc::channel();
    let caller = {
        let (rt, stop) = (rt.clone(), stop.clone());
        thread::spawn(move || {
            let h = rt.method("probe", "noop").unwrap();
            // Once this thread's record and counter cells exist (taking
            // them is not signal-safe), let the signals come.
            h.call_into(b"", &mut []).unwrap();
            // SAFETY: pthread_self has no preconditions.
            tid_tx.send(unsafe { libc::pthread_self() }).unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                h.call_into(b"", &mut []).unwrap();
                n += 1;
            }
            n
        })
    };
    let tid = tid_rx.recv().unwrap();
    let t0 = Instant::now();
    let mut upgrades = 0;
    while IN_HANDLER.load(Ordering::Relaxed) < 2_000 && t0.elapsed() < Duration::from_secs(20) {
        for _ in 0..20 {
            // SAFETY: the thread is alive until `stop` is set.
            unsafe { libc::pthread_kill(tid, libc::SIGUSR1) };
        }
        // Grace periods keep ending while the handler interrupts sections.
        rt.load(plugin("checksum"), &LoadOptions::default()).unwrap();
        rt.unload("checksum", false).unwrap();
        upgrades += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let n = caller.join().unwrap();
    assert!(IN_HANDLER.load(Ordering::Relaxed) > 0, "no handler call ran");
    eprintln!(
        "{} handler calls, {n} interrupted-thread calls, {upgrades} load/unload cycles",
        IN_HANDLER.load(Ordering::Relaxed)
    );
    let calls = rt.stats().into_iter().find(|s| s.method == "noop").unwrap().counters.calls;
    assert!(calls >= n, "calls {calls} < {n}");
}
