//! Preflight: a file whose constructor crashes, exits or hangs is refused
//! with PreflightFailed (1018), and the host survives. This test binary is
//! also the helper: started as `<exe> --preflight <fd>` it runs the child
//! side of the protocol (`hotmod_core::loader::preflight::child_main`).

mod common;

#[cfg(target_os = "linux")]
fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--preflight") {
        let fd: i32 = args.get(2).and_then(|a| a.parse().ok()).expect("--preflight <fd>");
        std::process::exit(hotmod_core::loader::preflight::child_main(fd));
    }
    let tests: [(&str, fn()); 4] = [
        ("constructor_faults_kill_the_child_not_the_host", constructor_faults_kill_the_child_not_the_host),
        ("a_good_plugin_passes_preflight_and_loads", a_good_plugin_passes_preflight_and_loads),
        ("a_missing_helper_is_reported_or_skipped", a_missing_helper_is_reported_or_skipped),
        ("watched_directories_preflight_by_default", watched_directories_preflight_by_default),
    ];
    let filter = args.iter().skip(1).find(|a| !a.starts_with('-')).cloned();
    let mut passed = 0;
    for (name, f) in tests {
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        println!("test {name} ...");
        f();
        println!("test {name} ... ok");
        passed += 1;
    }
    println!("\ntest result: ok. {passed} passed; 0 failed; 0 ignored");
}

#[cfg(not(target_os = "linux"))]
fn main() {}

#[cfg(target_os = "linux")]
use hotmod_core::{LoadOptions, Preflight, Runtime, Status};
#[cfg(target_os = "linux")]
use std::time::Duration;

#[cfg(target_os = "linux")]
fn with_preflight() -> LoadOptions {
    LoadOptions {
        preflight: Preflight::On,
        preflight_helper: Some(std::env::current_exe().unwrap()),
        preflight_timeout: Duration::from_millis(1500),
        ..Default::default()
    }
}

#[cfg(target_os = "linux")]
fn fault(name: &str) -> std::path::PathBuf {
    let p = common::plugin_dir().join("faults").join(format!("lib{name}.so"));
    assert!(p.is_file(), "expected the fault fixture {}, found none: run `make plugins`", p.display());
    p
}

#[cfg(target_os = "linux")]
fn constructor_faults_kill_the_child_not_the_host() {
    let rt = Runtime::new();
    let cases = [
        ("ctor_segv", "killed by signal 11 (SIGSEGV)"),
        ("ctor_exit", "exited with status 3"),
        ("ctor_hang", "did not finish within"),
    ];
    for (name, what) in cases {
        let path = fault(name);
        let e = rt.load(&path, &with_preflight()).unwrap_err();
        assert_eq!(e.status(), Status::PreflightFailed, "{name}: {e}");
        assert_eq!(e.status().code(), 1018);
        assert!(e.message().contains(what), "{name}: {e}");
        assert!(e.message().contains(&*path.display().to_string()), "{name}: {e}");
    }
    assert!(rt.modules().is_empty());
}

#[cfg(target_os = "linux")]
fn a_good_plugin_passes_preflight_and_loads() {
    let rt = Runtime::new();
    std::env::remove_var("HOTMOD_FIXTURE_CTOR_RAN");
    let m = rt.load(common::plugin("ctor"), &with_preflight()).unwrap();
    assert_eq!(m.name(), "ctor");
    // The constructor ran in the child first, then here.
    assert!(std::env::var_os("HOTMOD_FIXTURE_CTOR_RAN").is_some());
    let m = rt.load(common::plugin("checksum"), &with_preflight()).unwrap();
    assert_eq!(m.name(), "checksum");
}

#[cfg(target_os = "linux")]
fn a_missing_helper_is_reported_or_skipped() {
    let rt = Runtime::new();
    let missing = LoadOptions { preflight_helper: Some("/nonexistent/hotmod-worker".into()), ..with_preflight() };
    let e = rt.load(common::plugin("checksum"), &missing).unwrap_err();
    assert_eq!(e.status(), Status::WorkerUnavailable, "{e}");
    assert!(e.message().contains("/nonexistent/hotmod-worker"), "{e}");
    // IfAvailable with no helper anywhere loads without a preflight.
    std::env::remove_var("HOTMOD_WORKER");
    if hotmod_core::loader::helper_path(None).is_none() {
        let opts = LoadOptions { preflight: Preflight::IfAvailable, ..Default::default() };
        rt.load(common::plugin("checksum"), &opts).unwrap();
    }
}

#[cfg(target_os = "linux")]
fn watched_directories_preflight_by_default() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fault("ctor_segv"), dir.path().join("libctor_segv.so")).unwrap();
    // The helper is found through HOTMOD_WORKER, as a deployment would.
    std::env::set_var("HOTMOD_WORKER", std::env::current_exe().unwrap());
    let rt = std::sync::Arc::new(Runtime::new());
    let log: std::sync::Arc<std::sync::Mutex<Vec<hotmod_core::Event>>> = Default::default();
    let l2 = log.clone();
    rt.set_event_handler(Some(std::sync::Arc::new(move |e: &hotmod_core::Event| l2.lock().unwrap().push(e.clone()))));
    let w = hotmod_core::watch_dir(&rt, dir.path(), hotmod_core::WatchOptions::default()).unwrap();
    std::env::remove_var("HOTMOD_WORKER");
    let log = log.lock().unwrap();
    assert!(
        log.iter().any(|e| e.kind == hotmod_core::EventKind::UpgradeFailed && e.code == Status::PreflightFailed.code()),
        "{log:?}"
    );
    drop(w);
}
