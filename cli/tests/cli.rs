//! The `hotmod` command, run as a user runs it, against the example and
//! fault plugins built by `make plugins` (HOTMOD_PLUGIN_DIR).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use sha2::Digest;

fn plugins() -> PathBuf {
    let dir = std::env::var_os("HOTMOD_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../build/plugins")));
    assert!(dir.join("libchecksum.so").exists(), "expected the plugins in {}: run `make plugins`", dir.display());
    dir
}

fn plugin(name: &str) -> String {
    plugins().join(name).display().to_string()
}

fn hotmod(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hotmod")).args(args).stdin(Stdio::null()).output().expect("run hotmod")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("expected JSON, found {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn inspect_shows_the_declaration_with_hashes() {
    let out = hotmod(&["--json", "inspect", &plugin("libchecksum.so")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["name"], "checksum");
    assert_eq!(v["version"], "1.0.0");
    assert_eq!(v["abi"], "1.0");
    let sha = v["sha256"].as_str().unwrap();
    let bytes = std::fs::read(plugin("libchecksum.so")).unwrap();
    let digest: [u8; 32] = sha2::Sha256::digest(&bytes).into();
    assert_eq!(sha, hotmod_core::sha256_hex(&digest));
    let crc = v["methods"].as_array().unwrap().iter().find(|m| m["name"] == "crc32").unwrap();
    assert_eq!(crc["signature"], "bytes -> u32le");
    let expected = format!("{:016x}", hotmod_core::signature_hash("crc32", "bytes -> u32le"));
    assert_eq!(crc["signature_hash"], expected.as_str());

    assert_eq!(v["elf"]["machine"], "x86_64");
    assert_eq!(v["elf"]["class"], 64);
    assert_eq!(v["stays_mapped"], false);
    let nodelete = json(&hotmod(&["--json", "inspect", &plugin("libfacts_nodelete.so")]));
    assert_eq!(nodelete["elf"]["nodelete"], true, "{nodelete}");
    assert_eq!(nodelete["stays_mapped"], true, "{nodelete}");
    let text = stdout(&hotmod(&["inspect", &plugin("libfacts_nodelete.so")]));
    assert!(text.contains("but stays mapped") && text.contains("nodelete"), "{text}");

    let human = hotmod(&["inspect", &plugin("libdependent.so")]);
    assert!(human.status.success(), "{}", stderr(&human));
    let text = stdout(&human);
    assert!(text.contains("dependencies (") && text.contains("checksum"), "{text}");
}

#[test]
fn verify_exit_status_names_the_failed_check() {
    let ok = hotmod(&["verify", &plugin("libchecksum.so")]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).starts_with("ok: checksum 1.0.0"), "{}", stdout(&ok));

    let cases = [
        (plugin("libbad_magic.so"), None, 1006),
        (plugin("libabi_v2.so"), None, 1007),
        (plugin("libnoentry.so"), None, 1004),
        (plugin("libnull_fn.so"), None, 1008),
        ("/nonexistent/libx.so".to_string(), None, 1001),
        (plugin("libchecksum.so"), Some("00".repeat(32)), 1009),
    ];
    for (file, sha, code) in cases {
        let mut args = vec!["--json", "verify", &file];
        if let Some(s) = &sha {
            args.extend(["--sha256", s]);
        }
        let out = hotmod(&args);
        let expected_exit = match code / 1000 {
            1 => 10 + code % 1000,
            _ => unreachable!(),
        };
        assert_eq!(out.status.code(), Some(expected_exit), "{file}: {}", stdout(&out));
        let v = json(&out);
        assert_eq!(v["error"]["code"], code, "{file}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(file.trim_start_matches('/')), "{v}");
    }
}

#[test]
fn call_takes_input_from_an_argument_a_file_stdin_or_hex() {
    let crc = |extra: &[&str]| {
        let mut args = vec!["call", &*Box::leak(plugin("libchecksum.so").into_boxed_str()), "checksum.crc32"];
        args.extend_from_slice(extra);
        hotmod(&args)
    };
    // CRC-32 of "hello" is 0x3610a686.
    let want = format!("{}\n", 0x3610a686u32);
    assert_eq!(stdout(&crc(&["hello"])), want);
    assert_eq!(stdout(&crc(&["--hex", "68 65 6c 6c 6f"])), want);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("in");
    std::fs::write(&f, b"hello").unwrap();
    assert_eq!(stdout(&crc(&["--input-file", f.to_str().unwrap()])), want);
    let mut child = Command::new(env!("CARGO_BIN_EXE_hotmod"))
        .args(["call", &plugin("libchecksum.so"), "checksum.crc32", "--stdin", "--output", "hex"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "86a61036\n");

    let text = hotmod(&["call", &plugin("libtext.so"), "text.upper", "shout"]);
    assert_eq!(stdout(&text), "SHOUT\n", "{}", stderr(&text));
    let raw = hotmod(&["call", &plugin("libtext.so"), "text.upper", "--output", "raw", "raw"]);
    assert_eq!(raw.stdout, b"RAW");

    let missing = hotmod(&["call", &plugin("libchecksum.so"), "checksum.nope"]);
    assert_eq!(missing.status.code(), Some(41), "method not found is 2001 -> 41");
    assert!(stderr(&missing).contains("crc32"), "the error lists the methods: {}", stderr(&missing));
    let bad = hotmod(&["call", &plugin("libchecksum.so"), "crc32"]);
    assert_eq!(bad.status.code(), Some(62), "invalid argument is 3002 -> 62: {}", stderr(&bad));
}

#[test]
fn call_through_a_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("plugins.toml");
    std::fs::write(&m, format!("[[plugin]]\npath = \"{}\"\n", plugin("libchecksum.so"))).unwrap();
    let out = hotmod(&["--json", "call", m.to_str().unwrap(), "checksum.length", "four"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let v = json(&out);
    assert_eq!(v["output"], "4");
    assert_eq!(v["output_hex"], "0400000000000000");

    let check = hotmod(&["--json", "manifest", "check", m.to_str().unwrap()]);
    assert!(check.status.success(), "{}", stdout(&check));
    assert_eq!(json(&check)["plugins"][0]["module"], "checksum");
    std::fs::write(&m, "[[plugin]]\npath = 42\n").unwrap();
    let bad = hotmod(&["manifest", "check", m.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(24), "bad manifest is 1014 -> 24: {}", stderr(&bad));
    assert!(stderr(&bad).contains("plugins.toml"), "{}", stderr(&bad));
}

#[test]
fn bench_compares_with_the_raw_pointer_in_the_same_run() {
    let out = hotmod(&["--json", "bench", &plugin("libchecksum.so"), "checksum.length", "abc", "--iterations", "2000"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    for k in ["raw", "handle", "by_name"] {
        assert!(v["ns_per_call"][k].as_f64().unwrap() > 0.0, "{k}: {v}");
    }
    assert!(v["vs_raw"]["handle"].as_f64().unwrap() > 0.0, "{v}");
    let human = hotmod(&["bench", &plugin("libchecksum.so"), "checksum.length", "--iterations", "2000"]);
    assert!(human.status.success());
    assert!(stdout(&human).contains("raw function pointer"), "{}", stdout(&human));
    assert!(stderr(&human).contains("measuring"), "a progress line: {}", stderr(&human));
}

#[test]
fn watch_prints_events_as_they_happen() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(plugin("libchecksum.so"), dir.path().join("libchecksum.so")).unwrap();
    let out = hotmod(&["--json", "watch", dir.path().to_str().unwrap(), "--seconds", "0.5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let kinds: Vec<String> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["kind"].as_str().unwrap().to_owned())
        .collect();
    assert!(kinds.contains(&"Loaded".to_string()) && kinds.contains(&"Activated".to_string()), "{kinds:?}");
}

#[test]
fn exit_codes_are_listed() {
    let out = hotmod(&["--json", "exit-codes"]);
    let v = json(&out);
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), hotmod_core::Status::all().len());
    assert!(rows.iter().any(|r| r["code"] == 2003 && r["exit"] == 43));
}

#[test]
fn inspect_survives_a_constructor_that_crashes() {
    let file = plugins().join("faults/libctor_segv.so");
    let out = hotmod(&["--json", "inspect", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(28), "preflight failed is 1018 -> 28: {}", stdout(&out));
    let v = json(&out);
    assert_eq!(v["error"]["code"], 1018);
    assert!(v["error"]["message"].as_str().unwrap().contains("signal 11"), "{v}");
}
