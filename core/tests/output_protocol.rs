//! The output protocol at the plugin boundary, probed with the badout
//! fixture: data at an offset into the offered space, data straddling it,
//! size requests far beyond any sane output, retries that must not count as
//! errors or run a method twice, memory handed over by failing calls, and
//! error messages that must stay with the call that set them.

mod common;

use common::plugin;
use hotmod_core::{LoadOptions, Runtime, RuntimeOptions, Status};

fn rt_with_opts(opts: RuntimeOptions, names: &[&str]) -> Runtime {
    let rt = Runtime::with_options(opts);
    for n in names {
        rt.load(plugin(n), &LoadOptions::default()).unwrap();
    }
    rt
}

fn rt_with(names: &[&str]) -> Runtime {
    rt_with_opts(RuntimeOptions::default(), names)
}

fn u64s(b: &[u8]) -> Vec<u64> {
    b.chunks(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect()
}

fn stats(rt: &Runtime, module: &str, method: &str) -> hotmod_core::CounterSnapshot {
    rt.stats().into_iter().find(|s| s.module == module && s.method == method).unwrap().counters
}

#[test]
fn data_at_an_offset_into_the_offered_space_is_host_space() {
    let rt = rt_with(&["badout"]);
    // Stack offer, heap offer, and a caller buffer (moved to its start).
    let out = rt.call("badout", "offset", b"").unwrap();
    assert!(!out.is_plugin_memory());
    assert_eq!(&*out, b"hello");
    let h = rt.method("badout", "offset").unwrap();
    let out = h.call_with_offer(b"", 4096).unwrap();
    assert!(!out.is_plugin_memory());
    assert_eq!(&*out, b"hello");
    let mut dst = [0u8; 16];
    assert_eq!(h.call_into(b"", &mut dst).unwrap(), 5);
    assert_eq!(&dst[..5], b"hello");
    assert_eq!(stats(&rt, "badout", "offset").errors, 0);
}

#[test]
fn data_past_or_straddling_the_offered_space_is_invalid_output() {
    let rt = rt_with(&["badout"]);
    for m in ["offset_over", "below", "overflow", "nulldata"] {
        let e = rt.call("badout", m, b"").unwrap_err();
        assert_eq!(e.status(), Status::InvalidOutput, "{m}: {e}");
        assert!(e.message().contains(&format!("method '{m}'")), "{e}");
        let h = rt.method("badout", m).unwrap();
        assert_eq!(h.call_with_offer(b"", 1000).unwrap_err().status(), Status::InvalidOutput, "{m}");
        let mut dst = [0u8; 32];
        assert_eq!(h.call_into(b"", &mut dst).unwrap_err().status(), Status::InvalidOutput, "{m}");
        let c = stats(&rt, "badout", m);
        assert_eq!((c.calls, c.errors), (3, 3), "{m}");
    }
}

#[test]
fn huge_size_requests_are_refused_with_output_too_large_and_nothing_allocated() {
    let rt = rt_with(&["badout"]);
    let cap = hotmod_core::DEFAULT_MAX_OUTPUT_SIZE;
    for (m, asked) in [("huge", 1usize << 50), ("sizemax", usize::MAX)] {
        let e = rt.call("badout", m, b"").unwrap_err();
        assert_eq!(e.status(), Status::OutputTooLarge, "{e}");
        for needle in [format!("method '{m}'"), asked.to_string(), cap.to_string()] {
            assert!(e.message().contains(&needle), "{e} should name {needle}");
        }
        let mut dst = [0u8; 8];
        let e = rt.call_into("badout", m, b"", &mut dst).unwrap_err();
        assert_eq!(e.status(), Status::OutputTooLarge, "{e}");
        let c = stats(&rt, "badout", m);
        assert_eq!((c.calls, c.errors), (2, 2), "{m}: one call and one error each");
    }
    // A request under the cap, with a cap set lower than it.
    let rt = rt_with_opts(RuntimeOptions { max_output_size: 1000, ..Default::default() }, &["badout"]);
    let e = rt.call("badout", "big", b"").unwrap_err();
    assert_eq!(e.status(), Status::OutputTooLarge);
    assert!(e.message().contains("1024") && e.message().contains("1000"), "{e}");
}

#[test]
fn an_output_over_the_default_offer_is_one_call_no_error_and_runs_once() {
    let rt = rt_with(&["badout"]);
    let h = rt.method("badout", "big").unwrap();
    for _ in 0..100 {
        let out = h.call(b"").unwrap();
        assert_eq!(out.len(), 1024);
        assert!(out.iter().all(|&b| b == b'b'));
    }
    let c = stats(&rt, "badout", "big");
    assert_eq!((c.calls, c.errors), (100, 0));
    let runs = u64s(&rt.call("badout", "big_runs", b"").unwrap())[0];
    assert!(runs <= 101, "the method ran {runs} times for 100 calls");
    // By name too: the size is remembered per method, not per handle.
    rt.call("badout", "big", b"").unwrap();
    assert_eq!(u64s(&rt.call("badout", "big_runs", b"").unwrap())[0], runs + 1);
}

#[test]
fn memory_handed_over_by_a_failing_call_is_released_exactly_once() {
    let rt = rt_with(&["badout"]);
    let mut dst = [0u8; 64];
    for (m, status) in [
        ("give_fail", Status::PluginError),
        ("give_small", Status::OutputTooLarge),
        ("give_invalid", Status::InvalidOutput),
    ] {
        assert_eq!(rt.call("badout", m, b"").unwrap_err().status(), status, "{m}");
        assert_eq!(rt.call_into("badout", m, b"", &mut dst).unwrap_err().status(), status, "{m}");
    }
    let r = u64s(&rt.call("badout", "releases", b"").unwrap());
    assert_eq!(r, vec![6, 6], "handed over / released");
}

#[test]
fn a_message_set_by_one_call_never_reaches_another_modules_failure() {
    let rt = rt_with(&["badout", "badout-twin"]);
    // A message set during a successful call of module A...
    rt.call("badout", "say_ok", b"").unwrap();
    // ...is not the message of module B's later failure.
    let e = rt.call("badout-twin", "weird", b"").unwrap_err();
    assert!(e.message().contains("without a message"), "{e}");
    // Nor is the message of a failed host call that A ignored.
    rt.call("badout", "host_ignored", b"").unwrap();
    let e = rt.call("badout-twin", "weird", b"").unwrap_err();
    assert!(e.message().contains("without a message"), "{e}");
    // Through call_into and a handle as well.
    let mut dst = [0u8; 8];
    rt.call_into("badout", "say_ok", b"", &mut dst).unwrap();
    let e = rt.method("badout-twin", "weird").unwrap().call_into(b"", &mut dst).unwrap_err();
    assert!(e.message().contains("without a message"), "{e}");
    // Nor is it the message of the same module's next failure.
    rt.call("badout", "say_ok", b"").unwrap();
    let e = rt.call("badout", "weird", b"").unwrap_err();
    assert!(e.message().contains("without a message"), "{e}");
    // A nested call's message does not replace the caller's own.
    let e = rt.call("badout-twin", "nested_say", b"").unwrap_err();
    assert!(e.message().contains("nested_say: its own message"), "{e}");
    assert!(!e.message().contains("successful call"), "{e}");
    // Nothing is left for a failure on another thread either.
    let rt2 = &rt;
    std::thread::scope(|s| {
        s.spawn(|| {
            let e = rt2.call("badout", "weird", b"").unwrap_err();
            assert!(e.message().contains("without a message"), "{e}");
        });
    });
}

#[test]
fn a_rust_sdk_plugin_gets_large_dependency_results_and_absurd_requests_are_refused() {
    let rt = rt_with(&["badout", "sdkcalls"]);
    // 1024 bytes from a dependency, over the SDK's 256-byte stack offer.
    let r = rt.call("sdkcalls", "call_big", b"").unwrap();
    assert_eq!(u64::from_le_bytes(r[..8].try_into().unwrap()), 1024);
    assert_eq!(r[8], b'b');
    let c = stats(&rt, "badout", "big");
    assert_eq!((c.calls, c.errors), (1, 0));
    // A dependency asking for 2^50 bytes: the calling plugin gets 2009.
    let r = rt.call("sdkcalls", "call_huge", b"").unwrap();
    assert_eq!(i32::from_le_bytes(r[..4].try_into().unwrap()), Status::OutputTooLarge.code());
    // The SDK plugin itself asking for 2^50 or SIZE_MAX bytes.
    for (m, asked) in [("ask_huge", 1usize << 50), ("ask_max", usize::MAX)] {
        let e = rt.call("sdkcalls", m, b"").unwrap_err();
        assert_eq!(e.status(), Status::OutputTooLarge, "{e}");
        assert!(e.message().contains(&asked.to_string()) && e.message().contains(&format!("'{m}'")), "{e}");
    }
}
