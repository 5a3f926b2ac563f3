//! Loading real plugins and calling them: by handle, by name, into a caller
//! buffer, zero-copy plugin memory, host functions, events and statistics.

mod common;

use std::sync::{Arc, Mutex};

use common::plugin;
use hotmod_core::{EventKind, LoadOptions, Runtime, Status};

fn rt_with(names: &[&str]) -> Runtime {
    let rt = Runtime::new();
    for n in names {
        rt.load(plugin(n), &LoadOptions::default()).unwrap();
    }
    rt
}

#[test]
fn calls_by_handle_by_name_and_into_a_buffer() {
    let rt = rt_with(&["checksum", "text"]);
    let crc = rt.method("checksum", "crc32").unwrap();
    assert_eq!(&*crc.call(b"123456789").unwrap(), &0xCBF4_3926u32.to_le_bytes());
    assert_eq!(&*rt.call("checksum", "crc32", b"123456789").unwrap(), &0xCBF4_3926u32.to_le_bytes());
    let mut buf = [0u8; 8];
    assert_eq!(crc.call_into(b"123456789", &mut buf).unwrap(), 4);
    assert_eq!(&buf[..4], &0xCBF4_3926u32.to_le_bytes());
    assert_eq!(rt.call_into("text", "upper", b"hot swap", &mut buf).unwrap(), 8);
    assert_eq!(&buf, b"HOT SWAP");
    assert_eq!(&*rt.call("text", "reverse", "añb".as_bytes()).unwrap(), "bña".as_bytes());
    assert_eq!(&*rt.call("text", "word_count", b" a bb  ccc ").unwrap(), &3u64.to_le_bytes());
}

#[test]
fn outputs_of_every_size_come_back_whole() {
    let rt = rt_with(&["text", "probe"]);
    // Inline (<= INLINE_OUTPUT), within the stack offer, above it (retry),
    // and plugin memory of each size.
    for n in [0, 1, hotmod_core::INLINE_OUTPUT, hotmod_core::INLINE_OUTPUT + 1, 255, 256, 257, 4096] {
        let input: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
        let out = rt.call("text", "upper", &input).unwrap();
        assert!(!out.is_plugin_memory());
        assert_eq!(out.to_vec(), input.to_ascii_uppercase(), "size {n}");
        let moved = out; // small results live inside the value: moving it must keep the bytes
        assert_eq!(moved.into_vec(), input.to_ascii_uppercase(), "size {n} after a move");
        let given = rt.call("probe", "give", &input).unwrap();
        assert!(given.is_plugin_memory());
        assert_eq!(&*given, &input[..], "plugin memory of size {n}");
    }
}

#[test]
fn outputs_larger_than_the_offer_are_retried_once_with_the_needed_size() {
    let rt = rt_with(&["text"]);
    let big = vec![b'a'; 10_000];
    let out = rt.call("text", "upper", &big).unwrap();
    assert_eq!(out.len(), 10_000);
    assert!(out.iter().all(|&b| b == b'A'));
    let mut small = [0u8; 4];
    let e = rt.call_into("text", "upper", &big, &mut small).unwrap_err();
    assert_eq!(e.status(), Status::OutputTooLarge);
    assert!(e.message().contains("needs 10000"), "{e}");
}

#[test]
fn plugin_memory_is_zero_copy_and_released_exactly_once() {
    let rt = rt_with(&["probe", "checksum"]);
    let counts = |rt: &Runtime| {
        let c = rt.call("probe", "counts", b"").unwrap();
        (u64::from_le_bytes(c[..8].try_into().unwrap()), u64::from_le_bytes(c[8..].try_into().unwrap()))
    };
    let out = rt.call("probe", "give", b"payload").unwrap();
    assert!(out.is_plugin_memory());
    assert_eq!(&*out, b"payload");
    assert_eq!(counts(&rt), (1, 0));
    drop(out);
    assert_eq!(counts(&rt), (1, 1));
    // The input is read in place: the plugin sees the caller's address.
    let input = vec![7u8; 64];
    let seen = rt.call("probe", "addr", &input).unwrap();
    assert_eq!(u64::from_le_bytes(seen[..8].try_into().unwrap()), input.as_ptr() as u64);
    // Static plugin memory (no release callback) is plugin memory too.
    let v = rt.call("checksum", "version", b"").unwrap();
    assert!(v.is_plugin_memory());
    assert_eq!(&*v, b"1.0.0");
    let hex = rt.call("checksum", "hex", &[0xde, 0xad]).unwrap();
    assert!(hex.is_plugin_memory());
    assert_eq!(hex.into_vec(), b"dead");
}

#[test]
fn an_output_keeps_its_version_alive_after_unload() {
    let rt = rt_with(&["probe"]);
    let out = rt.call("probe", "give", b"still here").unwrap();
    rt.unload("probe", false).unwrap();
    // The version is unpublished but not destroyed or unmapped: the bytes are readable.
    assert_eq!(&*out, b"still here");
    drop(out);
    assert_eq!(rt.call("probe", "counts", b"").unwrap_err().status(), Status::ModuleNotFound);
}

#[test]
fn errors_name_what_was_expected_found_and_where() {
    let rt = rt_with(&["probe", "lifecycle"]);
    let e = rt.call("probe", "fail", b"").unwrap_err();
    assert_eq!(e.status(), Status::PluginError);
    assert!(e.message().contains("probe: failure requested"), "{e}");
    assert!(e.message().contains("libprobe.so"), "{e}");
    assert_eq!(rt.call("probe", "bad_input", b"").unwrap_err().status(), Status::PluginError);
    let e = rt.call("lifecycle", "panic", b"").unwrap_err();
    assert_eq!(e.status(), Status::PluginPanicked);
    assert!(e.message().contains("panicked on purpose"), "{e}");
    let e = rt.call("probe", "nope", b"").unwrap_err();
    assert_eq!(e.status(), Status::MethodNotFound);
    assert!(e.message().contains("it has: addr, bad_input, counts"), "{e}");
    let e = rt.call("nope", "x", b"").unwrap_err();
    assert_eq!(e.status(), Status::ModuleNotFound);
    assert!(e.message().contains("loaded modules: lifecycle, probe"), "{e}");
    let stats = rt.stats();
    let fail = stats.iter().find(|s| s.module == "probe" && s.method == "fail").unwrap();
    assert_eq!((fail.counters.calls, fail.counters.errors), (1, 1));
    let panic = stats.iter().find(|s| s.module == "lifecycle" && s.method == "panic").unwrap();
    assert_eq!(panic.counters.panics, 1);
}

#[test]
fn load_errors_have_their_codes() {
    let rt = rt_with(&["checksum"]);
    let e = rt.load(plugin("checksum-v2"), &LoadOptions::default()).unwrap_err();
    assert_eq!(e.status(), Status::NameConflict);
    assert!(e.message().contains("already loaded (version 1.0.0"), "{e}");
    let e = rt.load(plugin("orphan"), &LoadOptions::default()).unwrap_err();
    assert_eq!(e.status(), Status::DependencyUnsatisfied);
    assert!(e.message().contains("needs module 'nowhere' ^1"), "{e}");
    let e = rt.load("/nonexistent/libx.so", &LoadOptions::default()).unwrap_err();
    assert_eq!(e.status(), Status::FileMissing);
    let mut opts = LoadOptions::default();
    opts.expect_sha256_hex(&"ab".repeat(32)).unwrap();
    assert_eq!(rt.load(plugin("text"), &opts).unwrap_err().status(), Status::HashMismatch);
    let m = rt.load(plugin("probe"), &LoadOptions::default()).unwrap();
    let mut opts = LoadOptions::default();
    opts.expect_sha256_hex(&m.info().sha256).unwrap();
    rt.unload("probe", false).unwrap();
    rt.load(plugin("probe"), &opts).unwrap();
    let e =
        rt.load(plugin("lifecycle"), &LoadOptions { config: b"fail-init".to_vec(), ..Default::default() }).unwrap_err();
    assert_eq!(e.status(), Status::InitFailed);
    assert!(e.message().contains("init refused by config"), "{e}");
    let e = rt
        .load(plugin("lifecycle"), &LoadOptions { config: b"panic-init".to_vec(), ..Default::default() })
        .unwrap_err();
    assert_eq!(e.status(), Status::InitFailed);
    assert!(e.message().contains("init panicked on purpose"), "{e}");
    assert!(rt.module("lifecycle").is_err(), "a failed load leaves nothing behind");
}

#[test]
fn introspection_describes_the_module() {
    let rt = rt_with(&["checksum"]);
    let m = rt.module("checksum").unwrap();
    let i = m.info();
    assert_eq!((i.name.as_str(), i.version.as_str()), ("checksum", "1.0.0"));
    assert!(i.path.is_absolute());
    assert_eq!(i.sha256.len(), 64);
    assert!(i.safe_to_unload);
    let crc = i.methods.iter().find(|m| m.name == "crc32").unwrap();
    assert_eq!(crc.signature, "bytes -> u32le");
    assert_eq!(crc.signature_hash, hotmod_core::signature_hash("crc32", "bytes -> u32le"));
    assert_eq!(rt.modules().len(), 1);
}

#[test]
fn host_functions_events_and_logs_reach_the_host() {
    let rt = Runtime::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    rt.set_event_handler(Some(Arc::new(move |e: &hotmod_core::Event| {
        ev.lock().unwrap().push((e.kind, e.message.clone()))
    })));
    rt.register_host_function(
        "greeting",
        Arc::new(|who: &[u8]| Ok(format!("Howdy ({} bytes)", who.len()).into_bytes())),
    )
    .unwrap();
    rt.load(plugin("text"), &LoadOptions { config: b"mode=demo".to_vec(), ..Default::default() }).unwrap();
    assert_eq!(&*rt.call("text", "greet", b"Ada").unwrap(), b"Howdy (3 bytes), Ada!");
    let kinds: Vec<EventKind> = events.lock().unwrap().iter().map(|e| e.0).collect();
    for k in [EventKind::Loaded, EventKind::Validated, EventKind::Activated, EventKind::Log] {
        assert!(kinds.contains(&k), "missing {k:?} in {kinds:?}");
    }
    assert!(events.lock().unwrap().iter().any(|e| e.0 == EventKind::Log && e.1.contains("mode=demo")));
    assert!(rt.unregister_host_function("greeting"));
    assert_eq!(&*rt.call("text", "greet", b"Ada").unwrap(), b"Hello, Ada!");
    rt.unload("text", false).unwrap();
    assert!(events.lock().unwrap().iter().any(|e| e.0 == EventKind::Unloaded));
}

#[test]
fn prometheus_text_has_every_family() {
    let rt = rt_with(&["checksum"]);
    for _ in 0..100 {
        rt.call("checksum", "crc32", b"x").unwrap();
    }
    let text = rt.stats_prometheus();
    assert!(text.contains("hotmod_method_calls_total{module=\"checksum\",method=\"crc32\"} 100"), "{text}");
    assert!(text.contains("# TYPE hotmod_method_latency_seconds histogram"));
    // Calls 0, N, 2N... of the method are sampled.
    let sampled = 100u64.div_ceil(hotmod_core::metrics::LATENCY_SAMPLE_EVERY);
    let count = format!("hotmod_method_latency_seconds_count{{module=\"checksum\",method=\"crc32\"}} {sampled}");
    assert!(text.contains(&count), "expected {count:?} in {text}");
    assert!(text.contains("hotmod_module_info{module=\"checksum\",version=\"1.0.0\"} 1"), "{text}");
}
