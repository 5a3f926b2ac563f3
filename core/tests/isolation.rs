//! Out-of-process mode, end to end: a real `hotmod-worker` serving real
//! plugins (the checksum example and the libfaults.so fault fixture).
//!
//! Needs `make plugins` (fixtures, and the worker next to the test binaries
//! in target/release). Tests that count child processes hold one lock, so
//! the children seen are this test's own.
#![cfg(target_os = "linux")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use hotmod_core::abi;
use hotmod_core::isolation::{
    proxy_call, proxy_status, HostServices, RestartPolicy, SandboxSpec, Worker, WorkerEvent, WorkerEventKind,
    WorkerOptions, WorkerState,
};
use hotmod_core::{LoadOptions, Runtime, Status};

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn worker_built() {
    let exe = std::env::current_exe().unwrap();
    let w = exe.parent().unwrap().parent().unwrap().join("hotmod-worker");
    assert!(
        w.is_file() || std::env::var_os("HOTMOD_WORKER").is_some(),
        "expected the worker at {}, found none: run `make plugins` (or cargo build --release -p hotmod-worker)",
        w.display()
    );
}

/// Events, recorded.
#[derive(Default)]
struct Events(Mutex<Vec<WorkerEvent>>);

impl Events {
    fn kinds(&self) -> Vec<WorkerEventKind> {
        self.0.lock().unwrap().iter().map(|e| e.kind).collect()
    }
    fn last_crash(&self) -> WorkerEvent {
        self.0
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|e| e.kind == WorkerEventKind::Crashed)
            .cloned()
            .expect("a crash event")
    }
}

/// Host services: log lines recorded; host function "upper" upper-cases,
/// and "echo_via_worker" calls the worker's `echo` again (re-entrancy).
#[derive(Default)]
struct Services {
    logs: Mutex<Vec<String>>,
    /// Weak: the worker's options hold these services.
    worker: OnceLock<Weak<Worker>>,
}

impl HostServices for Services {
    fn log(&self, level: i32, line: &str) {
        self.logs.lock().unwrap().push(format!("{level}:{line}"));
    }
    fn call_host(&self, name: &str, input: &[u8]) -> Result<Vec<u8>, (i32, String)> {
        match name {
            "upper" => {
                let w = self.worker.get().and_then(Weak::upgrade).ok_or((2001, "no worker".to_string()))?;
                // A nested call into the same worker on another lane, made
                // from inside the host function the plugin is waiting for.
                let echoed = w.call(0, input).map_err(|e| (e.status().code(), e.message().to_owned()))?;
                Ok(echoed.to_ascii_uppercase())
            }
            _ => Err((2001, format!("no host function '{name}'"))),
        }
    }
}

struct Setup {
    worker: Arc<Worker>,
    events: Arc<Events>,
    services: Arc<Services>,
}

fn options(events: &Arc<Events>, services: &Arc<Services>) -> WorkerOptions {
    let ev = events.clone();
    WorkerOptions {
        lanes: 6,
        payload_capacity: 4 << 20,
        call_timeout: Some(Duration::from_secs(20)),
        restart: RestartPolicy { initial_backoff: Duration::from_millis(1), ..Default::default() },
        host_functions: vec!["upper".into()],
        services: services.clone(),
        on_event: Some(Arc::new(move |e: &WorkerEvent| ev.0.lock().unwrap().push(e.clone()))),
        ..Default::default()
    }
}

fn start(plugin: &str, tweak: impl FnOnce(&mut WorkerOptions)) -> Setup {
    worker_built();
    let events = Arc::new(Events::default());
    let services = Arc::new(Services::default());
    let mut opts = options(&events, &services);
    tweak(&mut opts);
    let worker = Arc::new(Worker::spawn(opts).unwrap());
    worker.load(common::plugin(plugin), b"").unwrap();
    let _ = services.worker.set(Arc::downgrade(&worker));
    Setup { worker, events, services }
}

fn method(w: &Worker, name: &str) -> u32 {
    w.method_index(name).unwrap_or_else(|| panic!("method {name}"))
}

/// Pids of this process's children, with their state letter.
fn children() -> Vec<(u32, char)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let list = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        for pid in list.split_whitespace().filter_map(|p| p.parse::<u32>().ok()) {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit(')').next().and_then(|s| s.trim().chars().next()).unwrap_or('?');
            out.push((pid, state));
        }
    }
    out
}

fn wait_running(w: &Worker) {
    assert!(
        common::wait_for(Duration::from_secs(10), || w.state() == WorkerState::Running && w.pid().is_some()),
        "expected the worker to be restarted, found state {:?}",
        w.state()
    );
}

/// The crashed worker `gone` was reaped, and no child is a zombie.
fn assert_children_clean(gone: u32) {
    let ok = common::wait_for(Duration::from_secs(5), || {
        let c = children();
        c.iter().all(|&(p, s)| s != 'Z' && p != gone)
    });
    assert!(ok, "expected worker {gone} reaped and no zombie, found {:?}", children());
}

#[test]
fn checksum_gives_the_same_results_as_in_process() {
    let _g = serial();
    let s = start("checksum", |_| {});
    let w = &s.worker;
    let desc = w.plugin().unwrap();
    assert_eq!(desc.name, "checksum");
    let rt = Runtime::new();
    rt.load(common::plugin("checksum"), &LoadOptions::default()).unwrap();
    let big: Vec<u8> = (0..(1u32 << 20)).map(|i| (i * 7 + 3) as u8).collect();
    for name in ["crc32", "adler32", "fnv1a64", "length", "hex", "version"] {
        for input in [&b""[..], b"hello", &big[..100_000], &big[..]] {
            if name == "hex" && input.len() > 1_000_000 {
                continue; // 2 MiB of hex: more than the payload area holds with the input
            }
            let local = rt.call("checksum", name, input).unwrap();
            let remote = w.call(method(w, name), input).unwrap();
            assert_eq!(remote, &*local, "{name} on {} bytes", input.len());
        }
    }
    let mut dst = [0u8; 4];
    assert_eq!(w.call_into(method(w, "crc32"), b"abc", &mut dst).unwrap(), 4);
    let e = w.call(99, b"").unwrap_err();
    assert_eq!(e.status(), Status::MethodNotFound, "{e:?}");
}

#[test]
fn many_threads_call_one_worker() {
    let _g = serial();
    let s = start("checksum", |_| {});
    let crc = method(&s.worker, "crc32");
    let want = s.worker.call(crc, b"thread").unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let ts: Vec<_> = (0..10)
        .map(|_| {
            let (w, want, done) = (s.worker.clone(), want.clone(), done.clone());
            std::thread::spawn(move || {
                for _ in 0..300 {
                    assert_eq!(w.call(crc, b"thread").unwrap(), want);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in ts {
        t.join().unwrap();
    }
    assert_eq!(done.load(Ordering::Relaxed), 3000);
}

#[test]
fn log_and_host_functions_cross_the_boundary_reentrantly() {
    let _g = serial();
    let s = start("faults", |_| {});
    let out = s.worker.call(method(&s.worker, "host"), b"shout").unwrap();
    assert_eq!(out, b"SHOUT");
    assert_eq!(*s.services.logs.lock().unwrap(), vec!["3:faults.host: calling upper".to_string()]);
}

#[test]
fn the_proxy_entry_behaves_like_a_method() {
    let _g = serial();
    let s = start("faults", |_| {});
    let w = &s.worker;
    // The proxy has exactly the plugin method type (`hotmod_method_fn`).
    type MethodFn = unsafe extern "C" fn(*mut std::ffi::c_void, abi::hotmod_slice, *mut abi::hotmod_output) -> i32;
    let _same_type: abi::hotmod_method_fn = Some(proxy_call);
    let f: MethodFn = proxy_call;
    let echo = w.proxy(method(w, "echo"));
    let mut buf = [0u8; 16];
    let mut out = abi::hotmod_output::offering(buf.as_mut_ptr(), buf.len());
    let ctx = &*echo as *const _ as *mut std::ffi::c_void;
    // SAFETY: ctx is a live ProxyMethod, input and output are valid.
    let rc = unsafe { f(ctx, abi::hotmod_slice::from_bytes(b"hi"), &mut out) };
    assert_eq!((rc, out.len), (0, 2));
    assert_eq!(&buf[..2], b"hi");
    let seg = w.proxy(method(w, "segfault"));
    let mut out = abi::hotmod_output::offering(buf.as_mut_ptr(), buf.len());
    let ctx = &*seg as *const _ as *mut std::ffi::c_void;
    // SAFETY: as above.
    let rc = unsafe { f(ctx, abi::hotmod_slice::from_bytes(b""), &mut out) };
    assert_eq!(proxy_status(rc), Some(Status::PluginCrashed), "rc {rc}");
    wait_running(w);
}

#[test]
fn an_input_built_in_shared_memory_crosses_without_a_copy() {
    let _g = serial();
    let s = start("checksum", |_| {});
    let w = &s.worker;
    let mut b = w.buffer().unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    b.as_mut_slice()[..data.len()].copy_from_slice(&data);
    b.set_len(data.len());
    let crc = method(w, "crc32");
    assert_eq!(w.call(crc, b.input()).unwrap(), w.call(crc, &data).unwrap());
    let len = w.call(method(w, "length"), b.input()).unwrap();
    assert_eq!(u64::from_le_bytes(len.try_into().unwrap()), data.len() as u64);
}

/// One fault: its status, an event naming what happened, the worker
/// restarted, the next call succeeding, no zombie or stray child.
fn fault(name: &str, input: &[u8], want: Status, tweak: impl FnOnce(&mut WorkerOptions)) -> (Setup, String) {
    let s = start("faults", tweak);
    let w = &s.worker;
    let first = w.pid().unwrap();
    let e = w.call(method(w, name), input).unwrap_err();
    assert_eq!(e.status(), want, "{name}: {e:?}");
    wait_running(w);
    assert_ne!(w.pid().unwrap(), first, "{name}: a new worker serves");
    assert_eq!(w.call(method(w, "echo"), b"after").unwrap(), b"after", "{name}: next call");
    assert_children_clean(first);
    assert!(s.events.kinds().contains(&WorkerEventKind::Restarted), "{:?}", s.events.kinds());
    (s, e.message().to_owned())
}

#[test]
fn segfault_abort_and_exit_become_plugin_crashed() {
    let _g = serial();
    let (s, msg) = fault("segfault", b"", Status::PluginCrashed, |_| {});
    assert!(msg.contains("signal 11 (SIGSEGV)"), "{msg}");
    assert_eq!(s.events.last_crash().signal, Some(11));
    let (s, msg) = fault("abort", b"", Status::PluginCrashed, |_| {});
    assert!(msg.contains("SIGABRT"), "{msg}");
    assert_eq!(s.events.last_crash().signal, Some(6));
    let (s, msg) = fault("exit3", b"", Status::PluginCrashed, |_| {});
    assert!(msg.contains("exited with code 3"), "{msg}");
    assert_eq!(s.events.last_crash().exit_code, Some(3));
}

#[test]
fn hangs_and_slow_calls_time_out_and_the_worker_is_killed() {
    let _g = serial();
    let short = |o: &mut WorkerOptions| o.call_timeout = Some(Duration::from_millis(300));
    let (s, msg) = fault("hang", b"", Status::Timeout, short);
    assert!(msg.contains("300 ms"), "{msg}");
    let crash = s.events.last_crash();
    assert_eq!(crash.signal, Some(9));
    assert!(crash.message.contains("timed out"), "{}", crash.message);
    fault("sleep_ms", &5000u32.to_le_bytes(), Status::Timeout, short);
    // A call shorter than its deadline is not cut short.
    let s = start("faults", short);
    s.worker.call(method(&s.worker, "sleep_ms"), &50u32.to_le_bytes()).unwrap();
    assert_eq!(s.worker.crashes(), 0);
}

#[test]
fn garbage_in_the_shared_region_becomes_plugin_crashed() {
    let _g = serial();
    let (_s, msg) = fault("scribble", b"", Status::PluginCrashed, |_| {});
    assert!(msg.contains("overwritten") || msg.contains("garbage"), "{msg}");
}

#[test]
fn a_worker_that_closes_its_descriptors_is_replaced() {
    let _g = serial();
    let s = start("faults", |_| {});
    let w = &s.worker;
    let first = w.pid().unwrap();
    // The call itself may still be answered through the lane; losing the
    // control socket then ends the worker.
    match w.call(method(w, "close_fds"), b"") {
        Ok(_) => {}
        Err(e) => assert_eq!(e.status(), Status::PluginCrashed, "{e:?}"),
    }
    assert!(
        common::wait_for(Duration::from_secs(10), || w.pid().is_some_and(|p| p != first)),
        "expected a new worker, found {:?} in state {:?}; events {:?}",
        w.pid(),
        w.state(),
        s.events.0.lock().unwrap()
    );
    wait_running(w);
    assert_eq!(w.call(method(w, "echo"), b"x").unwrap(), b"x");
    assert_children_clean(first);
}

#[test]
fn every_call_in_flight_gets_plugin_crashed() {
    let _g = serial();
    let s = start("faults", |_| {});
    let w = s.worker.clone();
    let sleep = method(&w, "sleep_ms");
    let ts: Vec<_> = (0..4)
        .map(|_| {
            let w = w.clone();
            std::thread::spawn(move || w.call(sleep, &3000u32.to_le_bytes()))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(w.call(method(&w, "segfault"), b"").unwrap_err().status(), Status::PluginCrashed);
    for t in ts {
        let e = t.join().unwrap().unwrap_err();
        assert_eq!(e.status(), Status::PluginCrashed, "{e:?}");
    }
    wait_running(&w);
}

#[test]
fn a_worker_that_keeps_crashing_is_marked_failed() {
    let _g = serial();
    let s = start("faults", |o| {
        o.restart = RestartPolicy { initial_backoff: Duration::from_millis(1), max_crashes: 2, ..Default::default() }
    });
    let w = &s.worker;
    let seg = method(w, "segfault");
    assert_eq!(w.call(seg, b"").unwrap_err().status(), Status::PluginCrashed);
    wait_running(w);
    assert_eq!(w.call(seg, b"").unwrap_err().status(), Status::PluginCrashed);
    assert!(common::wait_for(Duration::from_secs(5), || w.state() == WorkerState::Failed));
    let e = w.call(method(w, "echo"), b"x").unwrap_err();
    assert_eq!(e.status(), Status::PluginCrashed);
    assert!(e.message().contains("marked failed"), "{e:?}");
    assert_eq!(s.events.kinds().last(), Some(&WorkerEventKind::Failed));
    assert!(common::wait_for(Duration::from_secs(5), || children().is_empty()), "{:?}", children());
}

#[test]
fn dropping_the_worker_reaps_it() {
    let _g = serial();
    let s = start("checksum", |_| {});
    let pid = s.worker.pid().unwrap();
    drop(s);
    assert!(common::wait_for(Duration::from_secs(5), || !children().iter().any(|&(p, _)| p == pid)));
}

/// Child mode of `killing_the_host_leaves_no_worker`: be a host, print the
/// worker's pid, wait to be killed.
#[test]
fn host_child_mode() {
    if std::env::var_os("HOTMOD_TEST_HOST_CHILD").is_none() {
        return;
    }
    let s = start("checksum", |_| {});
    println!("WORKER_PID={}", s.worker.pid().unwrap());
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn killing_the_host_leaves_no_worker() {
    use std::io::BufRead;
    let _g = serial();
    worker_built();
    let mut host = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "host_child_mode", "--nocapture", "--test-threads=1"])
        .env("HOTMOD_TEST_HOST_CHILD", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = host.stdout.take().unwrap();
    let mut pid = None;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(p) = line.split("WORKER_PID=").nth(1) {
            pid = p.trim().parse::<u32>().ok();
            break;
        }
    }
    let pid = pid.expect("the child host printed its worker's pid");
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    host.kill().unwrap(); // SIGKILL
    host.wait().unwrap();
    let gone = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.is_empty() || stat.rsplit(')').next().is_some_and(|s| s.trim().starts_with('Z'))
    };
    assert!(common::wait_for(Duration::from_secs(10), gone), "worker {pid} still runs after its host was killed");
}

fn sandbox() -> SandboxSpec {
    SandboxSpec { seccomp: true, landlock: true, address_space: 2 << 30, ..Default::default() }
}

/// Starts `faults` in a sandbox; None (with the reason printed) where this
/// kernel cannot enforce it — the load must then say SANDBOX_UNAVAILABLE.
fn start_sandboxed() -> Option<Setup> {
    worker_built();
    let events = Arc::new(Events::default());
    let services = Arc::new(Services::default());
    let mut opts = options(&events, &services);
    opts.sandbox = Some(sandbox());
    let worker = Arc::new(Worker::spawn(opts).unwrap());
    match worker.load(common::plugin("faults"), b"") {
        Ok(_) => Some(Setup { worker, events, services }),
        Err(e) => {
            assert_eq!(e.status(), Status::SandboxUnavailable, "{e:?}");
            eprintln!("sandbox not available here: {e}");
            None
        }
    }
}

#[test]
fn unsandboxed_the_fixtures_can_do_what_the_sandbox_refuses() {
    let _g = serial();
    let s = start("faults", |_| {});
    let w = &s.worker;
    assert!(!w.call(method(w, "passwd"), b"").unwrap().is_empty());
    w.call(method(w, "socket"), b"").unwrap();
    w.call(method(w, "fork"), b"").unwrap();
    assert_eq!(w.call(method(w, "ctor_socket"), b"").unwrap(), [1]);
}

#[test]
fn the_sandbox_refuses_files_sockets_and_fork() {
    let _g = serial();
    let Some(s) = start_sandboxed() else { return };
    let w = &s.worker;
    let e = w.call(method(w, "passwd"), b"").unwrap_err();
    assert_eq!(e.status(), Status::PluginError, "{e:?}");
    assert!(e.message().contains("open /etc/passwd: Permission denied"), "{e:?}");
    let e = w.call(method(w, "socket"), b"").unwrap_err();
    assert!(e.message().contains("Operation not permitted"), "{e:?}");
    let e = w.call(method(w, "fork"), b"").unwrap_err();
    assert!(e.message().contains("fork: Operation not permitted"), "{e:?}");
    // The constructor ran under the sandbox already.
    assert_eq!(w.call(method(w, "ctor_socket"), b"").unwrap(), [0]);
    // Threads still work (the lanes are threads), and so do calls.
    assert_eq!(w.call(method(w, "echo"), b"ok").unwrap(), b"ok");
    assert_eq!(w.crashes(), 0);
}

#[test]
fn memory_past_the_limit_stops_the_worker() {
    let _g = serial();
    let Some(s) = start_sandboxed() else { return };
    let w = &s.worker;
    let e = w.call(method(w, "leak"), b"").unwrap_err();
    assert_eq!(e.status(), Status::PluginCrashed, "{e:?}");
    assert!(e.message().contains("SIGABRT"), "{e:?}");
    wait_running(w);
    assert_eq!(w.call(method(w, "echo"), b"x").unwrap(), b"x");
}

#[test]
fn a_crash_leaves_other_workers_alone() {
    let _g = serial();
    let a = start("faults", |_| {});
    let b = start("checksum", |_| {});
    let crc = method(&b.worker, "crc32");
    let before = b.worker.call(crc, b"x").unwrap();
    let b_pid = b.worker.pid();
    assert_eq!(a.worker.call(method(&a.worker, "segfault"), b"").unwrap_err().status(), Status::PluginCrashed);
    assert_eq!(b.worker.call(crc, b"x").unwrap(), before);
    assert_eq!((b.worker.pid(), b.worker.crashes()), (b_pid, 0));
    wait_running(&a.worker);
}

#[test]
fn a_deadline_can_be_set_per_call() {
    let _g = serial();
    let s = start("faults", |_| {});
    let w = &s.worker;
    let mut out = abi::hotmod_output::offering(std::ptr::null_mut(), 0);
    let e = w
        .call_raw(method(w, "sleep_ms"), &10_000u32.to_le_bytes(), &mut out, Some(Duration::from_millis(100)))
        .unwrap_err();
    assert_eq!(e.status(), Status::Timeout, "{e:?}");
    wait_running(w);
    assert_eq!(w.call(method(w, "echo"), b"y").unwrap(), b"y");
}

/// The worker is also the loader's preflight helper: a constructor that
/// crashes kills only the worker's preflight child, a good plugin passes.
#[test]
fn the_worker_is_the_preflight_helper() {
    worker_built();
    let exe = std::env::current_exe().unwrap();
    let worker = exe.parent().unwrap().parent().unwrap().join("hotmod-worker");
    let dir = common::plugin_dir();
    let opts = LoadOptions {
        preflight: hotmod_core::loader::Preflight::On,
        preflight_helper: Some(worker.clone()),
        ..LoadOptions::default()
    };
    let rt = Runtime::new();
    let e = rt.load(dir.join("faults/libctor_segv.so"), &opts).unwrap_err();
    assert_eq!(e.status(), Status::PreflightFailed, "{e:?}");
    assert!(e.message().contains("signal 11") && e.message().contains("libctor_segv.so"), "{e:?}");
    rt.load(dir.join("libchecksum.so"), &opts).expect("a good plugin passes the preflight");
    assert_eq!(&*rt.call("checksum", "length", b"abc").unwrap(), &3u64.to_le_bytes());
}
