//! Plugins written in Go (sdk/go) and C++ (include/hotmod_plugin.hpp),
//! loaded and called through the core like any other: calls, both output
//! paths, state hand-over on upgrade, and each way a method can fail —
//! a Go panic, a returned error, a C++ exception — becoming a status while
//! the host keeps running.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use common::{plugin, plugin_dir_with};
use hotmod_core::{Event, EventKind, LoadOptions, Runtime, Status, UpgradeOptions};

const GO: &[&str] = &["libgochecksum.so", "libgochecksum-v2.so", "libgofaults.so"];
const CPP: &[&str] = &["libcppchecksum.so", "libcppchecksum-v2.so", "libcppfaults.so"];
const CRC_123456789: [u8; 4] = 0xCBF4_3926u32.to_le_bytes();

fn events(rt: &Runtime) -> Arc<Mutex<Vec<Event>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    rt.set_event_handler(Some(Arc::new(move |e: &Event| l.lock().unwrap().push(e.clone()))));
    log
}

fn load(rt: &Runtime, name: &str) {
    rt.load(plugin(name), &LoadOptions::default()).unwrap_or_else(|e| panic!("loading {name}: {e}"));
}

fn u64le(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().unwrap_or_else(|_| panic!("expected 8 bytes, found {b:?}")))
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

fn counters(rt: &Runtime, module: &str, method: &str) -> hotmod_core::CounterSnapshot {
    rt.stats()
        .into_iter()
        .find(|s| s.module == module && s.method == method)
        .unwrap_or_else(|| panic!("expected stats for {module}.{method}"))
        .counters
}

// ---------------------------------------------------------------- Go

#[test]
fn go_plugin_loads_declares_itself_and_computes_what_c_does() {
    plugin_dir_with(GO);
    let rt = Runtime::new();
    let log = events(&rt);
    load(&rt, "gochecksum");
    load(&rt, "checksum");
    let info = rt.module("gochecksum").unwrap().info().clone();
    assert_eq!((info.name.as_str(), info.version.as_str()), ("gochecksum", "1.0.0"));
    assert!(!info.safe_to_unload, "a Go plugin must never claim it can be unmapped");
    let names: Vec<_> = info.methods.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["length", "fnv1a64", "crc32", "upper", "hex", "version", "calls"]);
    assert!(
        log.lock().unwrap().iter().any(|e| e.kind == EventKind::Log && e.message == "gochecksum 1.0.0 ready"),
        "Init's Host.Logf reached the host"
    );

    let input: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
    for (m, expect) in [("length", 1000u64), ("fnv1a64", fnv1a64(&input))] {
        assert_eq!(u64le(&rt.call("gochecksum", m, &input).unwrap()), expect, "gochecksum.{m}");
        assert_eq!(u64le(&rt.call("checksum", m, &input).unwrap()), expect, "checksum.{m}");
    }
    let crc = rt.method("gochecksum", "crc32").unwrap();
    assert_eq!(&*crc.call(b"123456789").unwrap(), &CRC_123456789);
    assert_eq!(&*rt.call("gochecksum", "hex", &[0xde, 0xad, 0xbe, 0xef]).unwrap(), b"deadbeef");
    // Empty input: the method sees an empty slice, not a crash.
    assert_eq!(u64le(&rt.call("gochecksum", "length", b"").unwrap()), 0);
}

#[test]
fn go_outputs_go_into_host_space_when_they_fit_and_cross_as_c_memory_otherwise() {
    plugin_dir_with(GO);
    let rt = Runtime::new();
    load(&rt, "gochecksum");
    let upper = rt.method("gochecksum", "upper").unwrap();
    for n in [0usize, 1, 64, 255, 256, 257, 10_000, 1 << 20] {
        let input: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
        let out = upper.call(&input).unwrap();
        assert_eq!(out.len(), n);
        assert!(out.iter().zip(&input).all(|(o, i)| *o == i.to_ascii_uppercase()), "size {n}");
        // Up to the default offer the bytes were written into the host's
        // space; past it the plugin handed over C memory (zero copy).
        assert_eq!(out.is_plugin_memory(), n > hotmod_core::DEFAULT_OUTPUT_OFFER, "size {n}");
    }
    // A large output is one call and no error: the SDK hands over memory
    // instead of asking for more space and running the method again.
    let c = counters(&rt, "gochecksum", "upper");
    assert_eq!((c.calls, c.errors), (8, 0));
    // Into a caller's buffer: written in place.
    let mut buf = [0u8; 16];
    assert_eq!(rt.call_into("gochecksum", "upper", b"hot swap", &mut buf).unwrap(), 8);
    assert_eq!(&buf[..8], b"HOT SWAP");
    // Static C memory: plugin memory with nothing to release.
    let v = rt.call("gochecksum", "version", b"").unwrap();
    assert!(v.is_plugin_memory());
    assert_eq!(&*v, b"1.0.0");
    // The []byte a Bytes method returns is copied once: into host space when
    // small, into C memory handed over when large.
    load(&rt, "gofaults");
    let small = rt.call("gofaults", "echo", b"payload").unwrap();
    assert!(!small.is_plugin_memory());
    assert_eq!(&*small, b"payload");
    let big = rt.call("gofaults", "big", &100_000u32.to_le_bytes()).unwrap();
    assert!(big.is_plugin_memory());
    assert_eq!(big.len(), 100_000);
    assert!(big.iter().all(|&b| b == b'x'));
    assert_eq!(counters(&rt, "gofaults", "big").errors, 0);
}

#[test]
fn go_state_is_handed_over_on_every_upgrade_and_every_replaced_version_stays_mapped() {
    plugin_dir_with(GO);
    let rt = Arc::new(Runtime::new());
    let log = events(&rt);
    load(&rt, "gochecksum");
    let calls = rt.method("gochecksum", "calls").unwrap();
    assert_eq!(u64le(&calls.call(b"").unwrap()), 1);
    // Quiet upgrades: the counter crosses each one exactly.
    const QUIET: usize = 4;
    for i in 0..QUIET {
        let (file, version) = if i % 2 == 0 { ("gochecksum-v2", "2.0.0") } else { ("gochecksum", "1.0.0") };
        rt.upgrade("gochecksum", plugin(file), &UpgradeOptions::default()).unwrap();
        assert_eq!(&*rt.call("gochecksum", "version", b"").unwrap(), version.as_bytes());
        assert_eq!(u64le(&calls.call(b"").unwrap()), 2 + 2 * i as u64 + 1, "after upgrade {i}");
    }
    // Upgrades under load: no call fails. (Calls that end on the old version
    // after it exported its state are not in the new version's count.)
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let (rt, stop) = (rt.clone(), stop.clone());
            thread::spawn(move || {
                let crc = rt.method("gochecksum", "crc32").unwrap();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    assert_eq!(&*crc.call(b"123456789").expect("crc32 failed during a Go upgrade"), &CRC_123456789);
                    n += 1;
                }
                n
            })
        })
        .collect();
    const LOADED: usize = 4;
    for i in 0..LOADED {
        let file = if i % 2 == 0 { "gochecksum-v2" } else { "gochecksum" };
        rt.upgrade("gochecksum", plugin(file), &UpgradeOptions::default()).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let served: u64 = callers.into_iter().map(|c| c.join().expect("a caller saw a failed call")).sum();
    assert!(served > 0);
    assert!(u64le(&calls.call(b"").unwrap()) > 2 * QUIET as u64 + 2);
    let kept = log.lock().unwrap().iter().filter(|e| e.kind == EventKind::KeptMapped).count();
    assert_eq!(kept, QUIET + LOADED, "every replaced Go version is reported as kept mapped");
}

#[test]
fn go_methods_serve_many_host_threads_at_once() {
    plugin_dir_with(GO);
    let rt = Arc::new(Runtime::new());
    load(&rt, "gochecksum");
    const THREADS: usize = 6;
    const CALLS: usize = 500;
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let rt = rt.clone();
            thread::spawn(move || {
                let upper = rt.method("gochecksum", "upper").unwrap();
                for i in 0..CALLS {
                    // Alternate host space and handed-over C memory.
                    let n = if i % 2 == 0 { 16 } else { 1000 + t };
                    let input = vec![b'a' + (t as u8); n];
                    let out = upper.call(&input).expect("a concurrent Go call failed");
                    assert_eq!(out.len(), n);
                    assert!(out.iter().all(|&b| b == b'A' + t as u8));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a calling thread failed");
    }
    // The plugin's atomic counter saw every call exactly once.
    assert_eq!(u64le(&rt.call("gochecksum", "calls", b"").unwrap()), (THREADS * CALLS + 1) as u64);
    let c = counters(&rt, "gochecksum", "upper");
    assert_eq!((c.calls, c.errors), ((THREADS * CALLS) as u64, 0));
}

#[test]
fn a_go_panic_is_plugin_panicked_with_its_text_and_the_host_carries_on() {
    plugin_dir_with(GO);
    let rt = Runtime::new();
    load(&rt, "gofaults");
    for (method, text) in [
        ("panic_text", "gofaults: panicked on purpose"),
        ("panic_error", "gofaults: an error value"),
        ("nil_deref", "invalid memory address or nil pointer dereference"),
        ("panic_alloc", "gofaults: panicked holding output memory"),
    ] {
        let e = rt.call("gofaults", method, b"").unwrap_err();
        assert_eq!(e.status(), Status::PluginPanicked, "{method}: {e}");
        assert_eq!(e.status().code(), 2004);
        assert!(e.message().contains(text), "{method}: {e}");
        assert!(e.message().contains(&format!("method '{method}' panicked")), "{method}: {e}");
        // Where it panicked: the function in the plugin, not the runtime.
        assert!(e.message().contains("(at main."), "{method}: {e}");
        // The same Go runtime keeps serving.
        assert_eq!(&*rt.call("gofaults", "echo", b"alive").unwrap(), b"alive");
    }
    let c = counters(&rt, "gofaults", "panic_text");
    assert_eq!((c.calls, c.errors, c.panics), (1, 1, 1));
}

#[test]
fn go_errors_are_plugin_errors_with_their_message() {
    plugin_dir_with(GO);
    let rt = Runtime::new();
    load(&rt, "gofaults");
    let e = rt.call("gofaults", "fail", b"").unwrap_err();
    assert_eq!(e.status(), Status::PluginError, "{e}");
    assert!(e.message().contains("gofaults: failure requested"), "{e}");
    assert!(e.message().contains("libgofaults.so"), "{e}");
    let e = rt.call("gofaults", "invalid", b"").unwrap_err();
    assert_eq!(e.status(), Status::PluginError, "{e}");
    assert!(e.message().contains("gofaults: expected nothing valid, found this"), "{e}");
    assert!(e.message().contains("invalid input"), "{e}");
    let e = rt.call("gofaults", "big", b"xy").unwrap_err();
    assert!(e.message().contains("big: expected 4 bytes (u32le), found 2"), "{e}");
    // Init: an error and a panic both refuse the load, with the text.
    for (config, text) in
        [("fail", "gofaults: init refused by config"), ("panic", "gofaults: init panicked on purpose")]
    {
        let rt = Runtime::new();
        let opts = LoadOptions { config: config.into(), ..Default::default() };
        let e = rt.load(plugin("gofaults"), &opts).unwrap_err();
        assert_eq!(e.status(), Status::InitFailed, "{e}");
        assert!(e.message().contains(text), "{e}");
    }
}

#[test]
fn go_plugins_reach_host_functions_dependencies_and_the_log() {
    plugin_dir_with(GO);
    let rt = Runtime::new();
    let log = events(&rt);
    rt.register_host_function("answer", Arc::new(|q: &[u8]| Ok([b"42 to ", q].concat()))).unwrap();
    load(&rt, "checksum");
    load(&rt, "gofaults");
    assert_eq!(&*rt.call("gofaults", "ask_host", b"why").unwrap(), b"42 to why");
    // A large host result: the host hands over memory, the SDK copies it.
    let long = vec![b'q'; 5000];
    assert_eq!(rt.call("gofaults", "ask_host", &long).unwrap().len(), 5006);
    assert_eq!(&*rt.call("gofaults", "crc_via_dep", b"123456789").unwrap(), &CRC_123456789);
    rt.call("gofaults", "log", b"hello from Go").unwrap();
    assert!(log.lock().unwrap().iter().any(|e| e.kind == EventKind::Log && e.message == "hello from Go"));
    // A failed host call becomes the method's error, with the status.
    assert!(rt.unregister_host_function("answer"));
    let e = rt.call("gofaults", "ask_host", b"why").unwrap_err();
    assert_eq!(e.status(), Status::PluginError, "{e}");
    assert!(e.message().contains("call_host \"answer\" failed with hotmod status 2001"), "{e}");
}

// ---------------------------------------------------------------- C++

#[test]
fn cpp_plugin_loads_and_computes_what_c_does() {
    plugin_dir_with(CPP);
    let rt = Runtime::new();
    let log = events(&rt);
    load(&rt, "cppchecksum");
    load(&rt, "checksum");
    let info = rt.module("cppchecksum").unwrap().info().clone();
    assert_eq!((info.name.as_str(), info.version.as_str()), ("cppchecksum", "1.0.0"));
    assert!(info.safe_to_unload);
    assert!(log.lock().unwrap().iter().any(|e| e.kind == EventKind::Log && e.message == "cppchecksum 1.0.0 ready"));
    let input: Vec<u8> = (0..1000u32).map(|i| (i * 13) as u8).collect();
    for m in ["length", "fnv1a64", "crc32"] {
        assert_eq!(
            rt.call("cppchecksum", m, &input).unwrap().to_vec(),
            rt.call("checksum", m, &input).unwrap().to_vec()
        );
    }
    assert_eq!(&*rt.call("cppchecksum", "crc32", b"123456789").unwrap(), &CRC_123456789);
    assert_eq!(&*rt.call("cppchecksum", "parse_u8", b"200").unwrap(), &[200]);
    let e = rt.call("cppchecksum", "parse_u8", b"300").unwrap_err();
    assert_eq!(e.status(), Status::PluginError, "{e}");
    assert!(e.message().contains("parse_u8: expected at most 255, found 300 (plugin status 2: invalid input)"), "{e}");
}

#[test]
fn cpp_outputs_use_host_space_owned_memory_and_static_memory() {
    plugin_dir_with(CPP);
    let rt = Runtime::new();
    load(&rt, "cppchecksum");
    for n in [0usize, 10, 256, 257, 70_000] {
        let input = vec![b'k'; n];
        let out = rt.call("cppchecksum", "upper", &input).unwrap();
        assert!(out.iter().all(|&b| b == b'K') && out.len() == n);
        assert_eq!(out.is_plugin_memory(), n > hotmod_core::DEFAULT_OUTPUT_OFFER, "size {n}");
    }
    assert_eq!(counters(&rt, "cppchecksum", "upper").errors, 0);
    let hex = rt.call("cppchecksum", "hex", &[0xca, 0xfe]).unwrap();
    assert!(hex.is_plugin_memory(), "a std::string handed over without a copy");
    assert_eq!(&*hex, b"cafe");
    let v = rt.call("cppchecksum", "version", b"").unwrap();
    assert!(v.is_plugin_memory());
    assert_eq!(&*v, b"1.0.0");
}

#[test]
fn cpp_exceptions_stop_at_the_method_boundary() {
    plugin_dir_with(CPP);
    let rt = Runtime::new();
    load(&rt, "cppfaults");
    for (method, text) in [
        ("throw_std", "cppfaults: thrown on purpose (plugin status 1: error)"),
        ("throw_int", "method threw a C++ exception of a type not derived from std::exception"),
        ("throw_alloc", "std::bad_alloc"),
        ("invalid", "cppfaults: expected nothing valid, found this (plugin status 2: invalid input)"),
    ] {
        let e = rt.call("cppfaults", method, b"").unwrap_err();
        assert_eq!(e.status(), Status::PluginError, "{method}: {e}");
        assert!(e.message().contains(text), "{method}: {e}");
        assert!(e.message().contains(&format!("method '{method}'")), "{method}: {e}");
        assert_eq!(u64le(&rt.call("cppfaults", "free_fn", b"still here").unwrap()), 10);
    }
    let fresh = Runtime::new();
    let e = fresh.load(plugin("cppfaults"), &LoadOptions { config: b"throw".to_vec(), ..Default::default() });
    let e = e.unwrap_err();
    assert_eq!(e.status(), Status::InitFailed, "{e}");
    assert!(e.message().contains("cppfaults: init refused by config"), "{e}");
}

#[test]
fn cpp_raii_output_releases_what_a_throwing_method_handed_over() {
    plugin_dir_with(CPP);
    let rt = Runtime::new();
    load(&rt, "cppfaults");
    let counts = |rt: &Runtime| {
        let c = rt.call("cppfaults", "counts", b"").unwrap();
        (u64le(&c[..8]), u64le(&c[8..]))
    };
    assert_eq!(counts(&rt), (0, 0));
    let e = rt.call("cppfaults", "give_throw", b"doomed").unwrap_err();
    assert!(e.message().contains("thrown after handing over a buffer"), "{e}");
    // Made and destroyed inside the call: the writer released it, the host
    // never saw it.
    assert_eq!(counts(&rt), (1, 1));
    let out = rt.call("cppfaults", "give", b"kept").unwrap();
    assert!(out.is_plugin_memory());
    assert_eq!(&*out, b"kept");
    assert_eq!(counts(&rt), (2, 1), "alive while the host holds it");
    drop(out);
    assert_eq!(counts(&rt), (2, 2), "released exactly once when the host drops it");
}

#[test]
fn cpp_views_host_calls_and_state_hand_over() {
    plugin_dir_with(CPP);
    let rt = Runtime::new();
    let log = events(&rt);
    load(&rt, "cppfaults");
    let input: Vec<u8> = (1..=100).collect();
    assert_eq!(u64le(&rt.call("cppfaults", "sum_span", &input).unwrap()), 5050);
    rt.register_host_function("answer", Arc::new(|q: &[u8]| Ok([b"C++ asks ", q].concat()))).unwrap();
    assert_eq!(&*rt.call("cppfaults", "ask_host", b"why").unwrap(), b"C++ asks why");
    assert!(rt.unregister_host_function("answer"));
    let e = rt.call("cppfaults", "ask_host", b"why").unwrap_err();
    assert!(e.message().contains("call_host \"answer\" failed with hotmod status 2001"), "{e}");

    load(&rt, "cppchecksum");
    for _ in 0..5 {
        rt.call("cppchecksum", "length", b"x").unwrap();
    }
    rt.upgrade("cppchecksum", plugin("cppchecksum-v2"), &UpgradeOptions::default()).unwrap();
    assert_eq!(&*rt.call("cppchecksum", "version", b"").unwrap(), b"2.0.0");
    assert_eq!(u64le(&rt.call("cppchecksum", "calls", b"").unwrap()), 7);
    // Built with -fno-gnu-unique and declared safe: the old version is unmapped.
    let log = log.lock().unwrap();
    assert!(!log.iter().any(|e| e.kind == EventKind::KeptMapped && e.module == "cppchecksum"), "{log:?}");
}

// ---------------------------------------------------------------- all four

#[test]
fn the_benchmarked_methods_agree_in_c_cpp_rust_and_go() {
    plugin_dir_with(&["libchecksum.so", "libcppchecksum.so", "librustchecksum.so", "libgochecksum.so", "libgobare.so"]);
    let rt = Runtime::new();
    let modules = ["checksum", "cppchecksum", "rustchecksum", "gochecksum", "gobare"];
    for m in modules {
        load(&rt, m);
    }
    for input in [&b""[..], &[0x5a; 16], b"hot-swappable native plugin modules"] {
        for m in modules {
            assert_eq!(u64le(&rt.call(m, "length", input).unwrap()), input.len() as u64, "{m}.length");
            assert_eq!(u64le(&rt.call(m, "fnv1a64", input).unwrap()), fnv1a64(input), "{m}.fnv1a64");
        }
    }
}
