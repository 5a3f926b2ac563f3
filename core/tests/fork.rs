//! fork(): a child keeps only the forking thread's reader record, so an
//! unload in the child destroys the version at once, even though other
//! threads of the parent were inside calls (or registering, holding the
//! record list's lock) when it forked. Its own test binary, so that the
//! only other threads at fork time are the ones this test starts.

mod common;

#[cfg(target_os = "linux")]
#[test]
fn a_forked_child_reclaims_without_the_parents_threads() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use common::plugin;
    use hotmod_core::{LoadOptions, Runtime};

    let rt = Arc::new(Runtime::new());
    let destroyed = common::counting_host_function(&rt, "blocker_destroyed");
    // A call parked in the parent for the whole test: the child must not
    // wait for it.
    let parked = Arc::new(AtomicBool::new(true));
    let p = parked.clone();
    rt.register_host_function(
        "blocker_park",
        Arc::new(move |_: &[u8]| {
            while p.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(Vec::new())
        }),
    )
    .unwrap();
    rt.load(plugin("blocker"), &LoadOptions::default()).unwrap();
    rt.load(plugin("probe"), &LoadOptions::default()).unwrap();
    let r = rt.clone();
    let parker = std::thread::spawn(move || r.call("blocker", "park", b"").map(|_| ()));
    // Threads that come and go (each registers and unregisters its record
    // under the list's lock) and threads that call in a loop.
    let stop = Arc::new(AtomicBool::new(false));
    let churn: Vec<_> = (0..3)
        .map(|i| {
            let (rt, stop) = (rt.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if i == 0 {
                        rt.call("probe", "noop", b"").unwrap();
                    } else {
                        let rt = rt.clone();
                        std::thread::spawn(move || rt.call("probe", "noop", b"").unwrap()).join().unwrap();
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    for round in 0..20 {
        // SAFETY: the child only uses the runtime (whose locks are reset or
        // held across the fork by its atfork handlers) and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = (|| {
                if rt.call("probe", "noop", b"").is_err() {
                    return 10;
                }
                let before = destroyed.load(Ordering::SeqCst);
                // The parked call lives in the parent only: in the child the
                // version goes at once.
                if rt.unload("blocker", false).is_err() {
                    return 11;
                }
                if destroyed.load(Ordering::SeqCst) != before + 1 {
                    return 12;
                }
                if rt.unload("probe", false).is_err() {
                    return 13;
                }
                0
            })();
            // SAFETY: ends the child without running the parent's atexit
            // handlers or destructors.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            // SAFETY: waits for our own child without blocking.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                break;
            }
            if Instant::now() > end {
                // SAFETY: our own child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                panic!("round {round}: the forked child hung (deadlock after fork?)");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(libc::WIFEXITED(status), "round {round}: child died: status {status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), 0, "round {round}: child failed its checks");
    }
    stop.store(true, Ordering::Relaxed);
    churn.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(destroyed.load(Ordering::SeqCst), 0, "the parent's version is untouched");
    parked.store(false, Ordering::SeqCst);
    parker.join().unwrap().unwrap();
}
