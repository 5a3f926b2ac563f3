//! Watched directories against real plugins: files present at start, new
//! files, replaced files (renamed over, or written slowly in place),
//! corrupt files, removed files. Asynchronous effects are awaited by
//! polling with a timeout, never by a fixed sleep.
//!
//! Needs the plugins built by `make plugins` (HOTMOD_PLUGIN_DIR, or
//! build/plugins beside the workspace).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hotmod_core::{watch_dir, Event, EventKind, Runtime, Status, WatchOptions};

const TIMEOUT: Duration = Duration::from_secs(10);

fn plugin_dir() -> PathBuf {
    common::plugin_dir_with(&["libchecksum.so", "libchecksum-v2.so", "libtext.so", "libprobe.so", "libdependent.so"])
}

fn built(name: &str) -> Vec<u8> {
    std::fs::read(plugin_dir().join(name)).unwrap()
}

/// A private directory (mode 0700) with copies of the named plugins.
fn plugins_copied(names: &[&str]) -> tempfile::TempDir {
    common::plugins_copied(&plugin_dir(), names)
}

/// Publishes `bytes` as `dir/name` the safe way: written beside it under a
/// name the watcher ignores, then renamed over it.
fn publish(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

/// A runtime (in an `Arc`, as `watch_dir` wants) whose events are recorded.
fn recorded_runtime() -> (Arc<Runtime>, Arc<Mutex<Vec<Event>>>) {
    let rt = Arc::new(Runtime::new());
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    rt.set_event_handler(Some(Arc::new(move |e: &Event| sink.lock().unwrap().push(e.clone()))));
    (rt, events)
}

fn fast() -> WatchOptions {
    WatchOptions { debounce: Duration::from_millis(50), ..WatchOptions::default() }
}

/// Polls `f` until it holds, for up to [`TIMEOUT`].
fn wait_for(what: &str, f: impl FnMut() -> bool) {
    assert!(common::wait_for(TIMEOUT, f), "timed out after {TIMEOUT:?} waiting for: {what}");
}

fn version(rt: &Runtime) -> Option<String> {
    rt.call("checksum", "version", b"").ok().map(|o| String::from_utf8(o.to_vec()).unwrap())
}

fn failures(events: &Mutex<Vec<Event>>) -> Vec<Event> {
    events.lock().unwrap().iter().filter(|e| e.kind == EventKind::UpgradeFailed).cloned().collect()
}

#[test]
fn files_present_at_start_load_and_new_files_load() {
    let dir = plugins_copied(&["libchecksum.so", "libtext.so"]);
    std::fs::write(dir.path().join("README.txt"), b"not a plugin").unwrap();
    let (rt, events) = recorded_runtime();
    let watcher = watch_dir(&rt, dir.path(), fast()).unwrap();
    // The files already there are loaded before watch_dir returns.
    assert_eq!(version(&rt).as_deref(), Some("1.0.0"));
    assert!(rt.module("text").is_ok());
    assert_eq!(watcher.dir(), std::fs::canonicalize(dir.path()).unwrap());
    // The watcher does not keep the runtime alive.
    assert_eq!(Arc::strong_count(&rt), 1);

    std::fs::copy(plugin_dir().join("libprobe.so"), dir.path().join("libprobe.so")).unwrap();
    wait_for("probe loaded from the new file", || rt.module("probe").is_ok());
    assert_eq!(rt.module("probe").unwrap().info().path, std::fs::canonicalize(dir.path()).unwrap().join("libprobe.so"));
    assert!(failures(&events).is_empty(), "{:?}", failures(&events));
    drop(watcher);
}

#[test]
fn a_build_renamed_over_the_file_upgrades_its_module() {
    let dir = plugins_copied(&["libchecksum.so"]);
    let (rt, events) = recorded_runtime();
    let _watcher = watch_dir(&rt, dir.path(), fast()).unwrap();
    let handle = rt.method("checksum", "version").unwrap();
    assert_eq!(&*handle.call(b"").unwrap(), b"1.0.0");

    publish(dir.path(), "libchecksum.so", &built("libchecksum-v2.so"));
    wait_for("checksum 2.0.0", || version(&rt).as_deref() == Some("2.0.0"));
    assert_eq!(&*handle.call(b"").unwrap(), b"2.0.0", "handles follow the upgrade");
    assert_eq!(rt.call("checksum", "crc32", b"123456789").unwrap()[..4], 0xCBF43926u32.to_le_bytes());
    // Events of later changes come from the watcher's thread.
    let activated: Vec<Event> = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.kind == EventKind::Activated && e.version == "2.0.0")
        .cloned()
        .collect();
    assert_eq!(activated.len(), 1, "{activated:?}");
    assert!(failures(&events).is_empty(), "{:?}", failures(&events));

    // And back, which also shows the watch goes on after an upgrade.
    publish(dir.path(), "libchecksum.so", &built("libchecksum.so"));
    wait_for("checksum 1.0.0 again", || version(&rt).as_deref() == Some("1.0.0"));
}

#[test]
fn a_file_written_slowly_in_place_is_loaded_only_once_complete() {
    let dir = plugins_copied(&["libchecksum.so"]);
    let (rt, events) = recorded_runtime();
    let threads = Arc::new(Mutex::new(Vec::new()));
    let seen = threads.clone();
    let sink = events.clone();
    rt.set_event_handler(Some(Arc::new(move |e: &Event| {
        seen.lock().unwrap().push(std::thread::current().name().map(str::to_owned));
        sink.lock().unwrap().push(e.clone());
    })));
    // The pause between the two chunks is well inside the debounce interval.
    let opts = WatchOptions { debounce: Duration::from_millis(600), ..WatchOptions::default() };
    let _watcher = watch_dir(&rt, dir.path(), opts).unwrap();
    threads.lock().unwrap().clear();

    let v2 = built("libchecksum-v2.so");
    let (first, second) = v2.split_at(v2.len() / 2);
    let mut f = std::fs::File::create(dir.path().join("libchecksum.so")).unwrap();
    f.write_all(first).unwrap();
    f.flush().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    f.write_all(second).unwrap();
    drop(f);

    wait_for("checksum 2.0.0", || version(&rt).as_deref() == Some("2.0.0"));
    assert!(failures(&events).is_empty(), "the half-written file was tried: {:?}", failures(&events));
    let names = threads.lock().unwrap().clone();
    assert!(!names.is_empty() && names.iter().all(|n| n.as_deref() == Some("hotmod-watch")), "{names:?}");
}

#[test]
fn corrupt_files_are_reported_and_the_old_version_keeps_serving() {
    let dir = plugins_copied(&["libchecksum.so"]);
    let (rt, events) = recorded_runtime();
    let _watcher = watch_dir(&rt, dir.path(), fast()).unwrap();
    let shown = std::fs::canonicalize(dir.path()).unwrap();

    // Garbage over the running file: the upgrade fails, v1 keeps serving.
    publish(dir.path(), "libchecksum.so", b"definitely not a shared library");
    wait_for("an UpgradeFailed event for libchecksum.so", || !failures(&events).is_empty());
    let f = failures(&events).remove(0);
    assert_eq!(f.code, Status::NotALibrary.code(), "{f:?}");
    assert_eq!(f.module, "checksum");
    assert_eq!(f.path, shown.join("libchecksum.so").display().to_string());
    assert_eq!(version(&rt).as_deref(), Some("1.0.0"));

    // A truncated build as a new file: refused before it is mapped (the
    // dynamic loader would fault on it), the watch goes on.
    let v2 = built("libchecksum-v2.so");
    std::fs::write(dir.path().join("libhalf.so"), &v2[..v2.len() / 3]).unwrap();
    wait_for("an UpgradeFailed event for libhalf.so", || {
        failures(&events).iter().any(|e| e.path.ends_with("libhalf.so"))
    });
    let f = failures(&events).into_iter().find(|e| e.path.ends_with("libhalf.so")).unwrap();
    assert_eq!(f.code, Status::NotALibrary.code(), "{f:?}");
    assert!(f.message.contains("truncated"), "{f:?}");
    assert_eq!(version(&rt).as_deref(), Some("1.0.0"));

    // A good build afterwards still upgrades.
    publish(dir.path(), "libchecksum.so", &v2);
    wait_for("checksum 2.0.0", || version(&rt).as_deref() == Some("2.0.0"));
}

#[test]
fn a_removed_file_unloads_its_module_when_asked_to() {
    let dir = plugins_copied(&["libchecksum.so", "libtext.so"]);
    let (rt, _events) = recorded_runtime();
    let opts = WatchOptions { unload_on_remove: true, ..fast() };
    let _watcher = watch_dir(&rt, dir.path(), opts).unwrap();
    assert!(rt.module("text").is_ok());
    std::fs::remove_file(dir.path().join("libtext.so")).unwrap();
    wait_for("text unloaded", || rt.module("text").is_err());
    assert_eq!(version(&rt).as_deref(), Some("1.0.0"));
}

#[test]
fn by_default_a_removed_file_leaves_its_module_running_and_a_new_build_takes_over() {
    let dir = plugins_copied(&["libchecksum.so", "libtext.so"]);
    let (rt, events) = recorded_runtime();
    let _watcher = watch_dir(&rt, dir.path(), fast()).unwrap();
    std::fs::remove_file(dir.path().join("libtext.so")).unwrap();
    std::fs::remove_file(dir.path().join("libchecksum.so")).unwrap();
    // Changes are applied in the order they settle; the removals happened
    // first, so once probe is in, they have been handled.
    std::fs::copy(plugin_dir().join("libprobe.so"), dir.path().join("libprobe.so")).unwrap();
    wait_for("probe loaded", || rt.module("probe").is_ok());
    assert!(rt.module("text").is_ok(), "text kept running");
    assert_eq!(version(&rt).as_deref(), Some("1.0.0"));

    // A new file declaring the module of the removed file upgrades it.
    publish(dir.path(), "libchecksum-v2.so", &built("libchecksum-v2.so"));
    wait_for("checksum 2.0.0", || version(&rt).as_deref() == Some("2.0.0"));
    assert!(rt.module("checksum").unwrap().info().path.ends_with("libchecksum-v2.so"));
    assert!(failures(&events).is_empty(), "{:?}", failures(&events));
}

#[test]
fn dropping_the_watcher_stops_it() {
    let dir = plugins_copied(&["libchecksum.so"]);
    let (rt, _events) = recorded_runtime();
    let watcher = watch_dir(&rt, dir.path(), fast()).unwrap();
    let started = Instant::now();
    drop(watcher);
    assert!(started.elapsed() < TIMEOUT, "drop joined the thread promptly");
    // Modules it loaded stay loaded; the runtime is still ours alone.
    assert_eq!(version(&rt).as_deref(), Some("1.0.0"));
    assert_eq!(Arc::strong_count(&rt), 1);
    // A second watch of the same directory starts from the files there.
    drop(rt);
    let (rt, _events) = recorded_runtime();
    let _watcher = watch_dir(&rt, dir.path(), fast()).unwrap();
    assert_eq!(version(&rt).as_deref(), Some("1.0.0"));
}

#[test]
fn files_present_at_start_load_in_dependency_order() {
    // "dependent" needs "checksum" ^1; its file sorts first.
    let dir = plugins_copied(&["libchecksum.so"]);
    std::fs::write(dir.path().join("libaaa.so"), built("libdependent.so")).unwrap();
    let (rt, events) = recorded_runtime();
    let _watcher = watch_dir(&rt, dir.path(), fast()).unwrap();
    assert!(failures(&events).is_empty(), "{:?}", failures(&events));
    assert_eq!(&*rt.call("dependent", "checksum_version", b"").unwrap(), b"1.0.0");
}

#[test]
fn a_file_waiting_for_its_dependency_loads_when_the_dependency_arrives() {
    let dir = plugins_copied(&[]);
    let (rt, events) = recorded_runtime();
    let _watcher = watch_dir(&rt, dir.path(), fast()).unwrap();
    publish(dir.path(), "libdependent.so", &built("libdependent.so"));
    wait_for("dependent refused for its missing dependency", || {
        failures(&events).iter().any(|e| e.code == Status::DependencyUnsatisfied.code())
    });
    assert!(rt.module("dependent").is_err());
    publish(dir.path(), "libchecksum.so", &built("libchecksum.so"));
    wait_for("dependent loaded", || rt.module("dependent").is_ok());
    assert_eq!(&*rt.call("dependent", "checksum_version", b"").unwrap(), b"1.0.0");
}

#[test]
fn refused_upgrades_and_unloads_are_events_and_change_nothing() {
    let dir = plugins_copied(&["libchecksum.so", "libdependent.so"]);
    let (rt, events) = recorded_runtime();
    let opts = WatchOptions { unload_on_remove: true, ..fast() };
    let _watcher = watch_dir(&rt, dir.path(), opts).unwrap();
    assert!(rt.module("dependent").is_ok());

    // dependent needs checksum ^1: an upgrade to 2.0.0 is refused.
    publish(dir.path(), "libchecksum.so", &built("libchecksum-v2.so"));
    wait_for("the refused upgrade reported", || !failures(&events).is_empty());
    let f = failures(&events).remove(0);
    assert_eq!(f.code, Status::VersionConflict.code(), "{f:?}");
    assert_eq!(version(&rt).as_deref(), Some("1.0.0"));

    // checksum is needed by dependent: its removal cannot unload it.
    std::fs::remove_file(dir.path().join("libchecksum.so")).unwrap();
    let watch_errors = || -> Vec<Event> {
        events.lock().unwrap().iter().filter(|e| e.kind == EventKind::WatchError).cloned().collect()
    };
    wait_for("a WatchError for the refused unload", || !watch_errors().is_empty());
    let w = watch_errors().remove(0);
    assert_eq!(w.code, Status::ModuleInUse.code(), "{w:?}");
    assert_eq!(w.module, "checksum");
    assert!(w.message.contains("dependent"), "{w:?}");
    assert_eq!(version(&rt).as_deref(), Some("1.0.0"));

    // dependent's removal unloads it.
    std::fs::remove_file(dir.path().join("libdependent.so")).unwrap();
    wait_for("dependent unloaded", || rt.module("dependent").is_err());
}

#[test]
fn a_runtime_watches_a_directory_once_under_any_name() {
    let dir = plugins_copied(&["libchecksum.so"]);
    let (rt, _events) = recorded_runtime();
    let opts = || WatchOptions { debounce: Duration::from_millis(50), ..Default::default() };
    let w = watch_dir(&rt, dir.path(), opts()).unwrap();
    let again = dir.path().join("..").join(dir.path().file_name().unwrap());
    let e = watch_dir(&rt, &again, opts()).unwrap_err();
    assert_eq!(e.status(), Status::Busy);
    assert!(e.message().contains("already watched"), "{e}");
    // Another runtime may watch it; and once stopped, this one may again.
    let other = Arc::new(Runtime::new());
    drop(watch_dir(&other, dir.path(), opts()).unwrap());
    w.stop();
    watch_dir(&rt, &again, opts()).unwrap().stop();
}
