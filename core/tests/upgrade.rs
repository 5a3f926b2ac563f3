//! Hot upgrade under load, refusals and rollback, state hand-over, the
//! dependency graph, and plugins that must stay mapped.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use common::plugin;
use hotmod_core::{Event, EventKind, LoadOptions, Runtime, RuntimeOptions, Status, UpgradeOptions};

fn upgrade_opts() -> UpgradeOptions {
    UpgradeOptions::default()
}

fn events(rt: &Runtime) -> Arc<Mutex<Vec<Event>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    rt.set_event_handler(Some(Arc::new(move |e: &Event| l.lock().unwrap().push(e.clone()))));
    log
}

const CRC_123456789: [u8; 4] = 0xCBF4_3926u32.to_le_bytes();

#[test]
fn a_thousand_upgrades_under_load_fail_no_call() {
    let rt = Arc::new(Runtime::new());
    rt.load(plugin("checksum"), &LoadOptions::default()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (rt, stop) = (rt.clone(), stop.clone());
            thread::spawn(move || {
                let crc = rt.method("checksum", "crc32").unwrap();
                let version = rt.method("checksum", "version").unwrap();
                let (mut v1, mut v2) = (0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    assert_eq!(&*crc.call(b"123456789").expect("crc32 call failed during upgrade"), &CRC_123456789);
                    match &*version.call(b"").expect("version call failed during upgrade") {
                        b"1.0.0" => v1 += 1,
                        b"2.0.0" => v2 += 1,
                        other => panic!("expected version 1.0.0 or 2.0.0, found {other:?}"),
                    }
                }
                (v1, v2)
            })
        })
        .collect();
    for i in 0..1000 {
        let file = if i % 2 == 0 { "checksum-v2" } else { "checksum" };
        rt.upgrade("checksum", plugin(file), &upgrade_opts()).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let (mut v1, mut v2) = (0, 0);
    for c in callers {
        let (a, b) = c.join().expect("a caller saw a failed or wrong call");
        v1 += a;
        v2 += b;
    }
    assert!(v1 > 0 && v2 > 0, "both versions served calls: v1 {v1}, v2 {v2}");
    assert_eq!(rt.module("checksum").unwrap().info().version, "1.0.0");
}

#[test]
fn each_old_version_is_destroyed_exactly_once_after_its_last_call() {
    let rt = Arc::new(Runtime::new());
    let common::LifecycleOracle { destroyed, violations, next_id: _ } = common::lifecycle_oracle(&rt);
    rt.load(plugin("lifecycle"), &LoadOptions::default()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let callers: Vec<_> = (0..3)
        .map(|_| {
            let (rt, stop, seen) = (rt.clone(), stop.clone(), seen.clone());
            thread::spawn(move || {
                let work = rt.method("lifecycle", "work").unwrap();
                let mut ids = HashSet::new();
                while !stop.load(Ordering::Relaxed) {
                    let out = work.call(b"some input bytes").expect("work failed during upgrade");
                    ids.insert(u64::from_le_bytes(out[..8].try_into().unwrap()));
                }
                seen.lock().unwrap().extend(ids);
            })
        })
        .collect();
    const UPGRADES: u32 = 300;
    for _ in 0..UPGRADES {
        rt.upgrade("lifecycle", plugin("lifecycle"), &upgrade_opts()).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    callers.into_iter().for_each(|c| c.join().unwrap());
    let generation = rt.call("lifecycle", "generation", b"").unwrap();
    assert_eq!(
        u64::from_le_bytes(generation[..8].try_into().unwrap()),
        u64::from(UPGRADES) + 1,
        "state handed over each time"
    );
    rt.unload("lifecycle", false).unwrap();
    let destroyed = destroyed.lock().unwrap();
    assert_eq!(destroyed.len() as u32, UPGRADES + 1, "one destroy per version");
    assert!(destroyed.values().all(|&n| n == 1), "a version was destroyed twice: {destroyed:?}");
    assert_eq!(violations.load(Ordering::SeqCst), 0, "a version was destroyed while a call was in flight");
    let seen = seen.lock().unwrap();
    assert!(seen.iter().all(|id| destroyed.contains_key(id)), "every version that served a call was destroyed");
}

#[test]
fn refused_upgrades_leave_the_old_version_serving() {
    let rt = Runtime::new();
    let log = events(&rt);
    rt.load(plugin("lifecycle"), &LoadOptions::default()).unwrap();
    let work = rt.method("lifecycle", "work").unwrap();
    let before = work.call(b"").unwrap().to_vec();
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("libgarbage.so");
    std::fs::write(&garbage, b"\x7fELF but not really").unwrap();
    let not_elf = dir.path().join("libnotelf.so");
    std::fs::write(&not_elf, b"just text, no ELF header at all").unwrap();
    let with_config =
        |c: &str| UpgradeOptions { load: LoadOptions { config: c.into(), ..Default::default() }, force: false };
    let cases: Vec<(std::path::PathBuf, UpgradeOptions, Status, &str)> = vec![
        (garbage.clone(), upgrade_opts(), Status::NotALibrary, "truncated shared library"),
        (not_elf.clone(), upgrade_opts(), Status::NotALibrary, "not a loadable shared library"),
        (
            plugin("probe"),
            upgrade_opts(),
            Status::InvalidArgument,
            "expected a plugin named 'lifecycle', found 'probe'",
        ),
        (plugin("lifecycle"), with_config("fail-init"), Status::InitFailed, "init refused by config"),
        (plugin("lifecycle"), with_config("panic-init"), Status::InitFailed, "init panicked on purpose"),
        (plugin("lifecycle"), with_config("fail-import"), Status::InitFailed, "state import refused by config"),
    ];
    for (path, opts, status, needle) in cases {
        let e = rt.upgrade("lifecycle", &path, &opts).unwrap_err();
        assert_eq!(e.status(), status, "{e}");
        assert!(e.message().contains(needle), "{e} should mention {needle}");
        assert_eq!(work.call(b"").unwrap().to_vec(), before, "the old version keeps serving");
        let last = log.lock().unwrap().iter().rev().find(|e| e.kind == EventKind::UpgradeFailed).cloned().unwrap();
        assert_eq!(last.code, status.code());
        assert!(last.message.contains(needle));
    }
    let generation = rt.call("lifecycle", "generation", b"").unwrap();
    assert_eq!(&generation[..], &1u64.to_le_bytes(), "no failed upgrade touched the running state");
}

#[test]
fn signature_changes_are_refused_unless_forced() {
    let rt = Runtime::new();
    rt.load(plugin("checksum"), &LoadOptions::default()).unwrap();
    let crc = rt.method("checksum", "crc32").unwrap();
    let adler = rt.method("checksum", "adler32").unwrap();
    let e = rt.upgrade("checksum", plugin("checksum-breaking"), &upgrade_opts()).unwrap_err();
    assert_eq!(e.status(), Status::SignatureMismatch);
    assert!(e.message().contains("method 'crc32' has signature \"bytes -> u32le\""), "{e}");
    assert_eq!(&*crc.call(b"123456789").unwrap(), &CRC_123456789);
    drop(crc);
    let e = rt.upgrade("checksum", plugin("checksum-breaking"), &upgrade_opts()).unwrap_err();
    assert!(e.message().contains("removes method 'adler32'"), "{e}");
    let crc = rt.method("checksum", "crc32").unwrap();
    rt.upgrade("checksum", plugin("checksum-breaking"), &UpgradeOptions { force: true, ..Default::default() }).unwrap();
    assert_eq!(crc.call(b"x").unwrap_err().status(), Status::SignatureChanged);
    assert_eq!(adler.call(b"x").unwrap_err().status(), Status::StaleHandle);
    assert_eq!(
        &*rt.call("checksum", "crc32", b"xyz").unwrap(),
        &[3, 0, 0, 0, 0, 0, 0, 0],
        "by name reaches the new contract"
    );
    assert_eq!(&*rt.method("checksum", "crc32").unwrap().call(b"xy").unwrap(), &[2, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn handles_follow_upgrades_and_go_stale_after_unload() {
    let rt = Runtime::new();
    rt.load(plugin("checksum"), &LoadOptions::default()).unwrap();
    let version = rt.method("checksum", "version").unwrap();
    let calls = rt.method("checksum", "calls").unwrap();
    assert_eq!(&calls.call(b"").unwrap()[..], &1u64.to_le_bytes());
    rt.upgrade("checksum", plugin("checksum-v2"), &upgrade_opts()).unwrap();
    assert_eq!(&*version.call(b"").unwrap(), b"2.0.0");
    assert_eq!(&calls.call(b"").unwrap()[..], &3u64.to_le_bytes(), "the call counter crossed the upgrade");
    rt.unload("checksum", false).unwrap();
    let e = version.call(b"").unwrap_err();
    assert_eq!(e.status(), Status::StaleHandle);
    assert!(e.message().contains("'checksum' is no longer loaded") || e.message().contains("no longer loaded"), "{e}");
    rt.load(plugin("checksum"), &LoadOptions::default()).unwrap();
    assert_eq!(version.call(b"").unwrap_err().status(), Status::StaleHandle, "a reload is a new module");
}

#[test]
fn the_dependency_graph_is_enforced() {
    let rt = Runtime::new();
    let e = rt.load(plugin("dependent"), &LoadOptions::default()).unwrap_err();
    assert_eq!(e.status(), Status::DependencyUnsatisfied);
    assert!(e.message().contains("needs module 'checksum' ^1, found no such module"), "{e}");
    rt.load(plugin("checksum"), &LoadOptions::default()).unwrap();
    rt.load(plugin("dependent"), &LoadOptions::default()).unwrap();
    assert_eq!(&*rt.call("dependent", "crc32_via_dep", b"123456789").unwrap(), &CRC_123456789);
    // Calls through the host API follow upgrades within the range...
    rt.upgrade("checksum", plugin("checksum-v1.1"), &upgrade_opts()).unwrap();
    assert_eq!(&*rt.call("dependent", "checksum_version", b"").unwrap(), b"1.1.0");
    // ...and an upgrade outside a dependent's range is refused.
    let e = rt.upgrade("checksum", plugin("checksum-v2"), &upgrade_opts()).unwrap_err();
    assert_eq!(e.status(), Status::VersionConflict);
    assert!(e.message().contains("module 'dependent' 1.0.0 requires 'checksum' ^1"), "{e}");
    let e = rt.unload("checksum", false).unwrap_err();
    assert_eq!(e.status(), Status::ModuleInUse);
    assert!(e.message().contains("found dependent depending on it"), "{e}");
    rt.unload("checksum", true).unwrap();
    assert!(rt.modules().is_empty(), "cascade unloaded the dependent too");
}

#[test]
fn load_all_orders_by_dependency_and_names_cycles() {
    let rt = Runtime::new();
    let files = |names: &[&str]| names.iter().map(|n| (plugin(n), LoadOptions::default())).collect::<Vec<_>>();
    let loaded = rt.load_all(&files(&["dependent", "checksum"])).unwrap();
    let order: Vec<&str> = loaded.iter().map(|m| m.name()).collect();
    assert_eq!(order, ["checksum", "dependent"]);
    let e = rt.load_all(&files(&["cycle-a", "cycle-b"])).unwrap_err();
    assert_eq!(e.status(), Status::DependencyCycle);
    assert!(e.message().contains("cycle_a -> cycle_b -> cycle_a"), "{e}");
    assert!(rt.module("cycle_a").is_err() && rt.module("cycle_b").is_err());
}

#[test]
fn plugins_with_thread_local_destructors_stay_mapped() {
    let rt = Arc::new(Runtime::with_options(RuntimeOptions::default()));
    let log = events(&rt);
    rt.load(plugin("tls"), &LoadOptions::default()).unwrap();
    const ROUNDS: usize = 50;
    for _ in 0..ROUNDS {
        // Threads that touch the plugin's thread-locals, then exit after the
        // version they used has been replaced: their destructors run in it.
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let touch = rt.method("tls", "touch").unwrap();
                let (tx, rx) = std::sync::mpsc::channel::<()>();
                let t = thread::spawn(move || {
                    touch.call(b"abc").unwrap();
                    drop(touch);
                    rx.recv().unwrap();
                });
                (t, tx)
            })
            .collect();
        rt.upgrade("tls", plugin("tls"), &upgrade_opts()).unwrap();
        for (t, tx) in threads {
            tx.send(()).unwrap();
            t.join().unwrap();
        }
    }
    let kept = log.lock().unwrap().iter().filter(|e| e.kind == EventKind::KeptMapped).count();
    assert_eq!(kept, ROUNDS, "each replaced version reported that it stays mapped");
    assert!(log
        .lock()
        .unwrap()
        .iter()
        .any(|e| e.kind == EventKind::KeptMapped && e.message.contains("SAFE_TO_UNLOAD")));
}
