//! Per-language call benchmark: the same methods (`length`, `fnv1a64`) in
//! plugins written in C, C++, Rust and Go (with the SDK, and as bare cgo
//! exports behind a hand-written descriptor), called in one run.
//!
//! For each plugin and method it prints the cost of a raw function-pointer
//! call into the plugin (mapped by this program, no hotmod in between), of
//! a hotmod call through a resolved handle, and the handle call's ratio to
//! the C plugin's. It then measures what a Go plugin costs the host process
//! in process: threads, resident memory and mapped copies of the library
//! after one load and after N upgrades (a Go library is never unmapped),
//! against the same for the C plugin.
//!
//! Timing is the median of several rounds. Plugins come from
//! `HOTMOD_PLUGIN_DIR` (default `build/plugins`, built by `make plugins`).
//!
//!     cargo run --release -p hotmod-core --example lang_bench [UPGRADES]
//!     lang_bench --calls FILE MODULE METHOD N    (calls only, for a profiler)

use std::ffi::{c_void, CStr};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use hotmod_abi as abi;
use hotmod_core::{LoadOptions, Runtime, UpgradeOptions};

const ROUNDS: usize = 7;
/// Target duration of one timing round.
const ROUND_NS: f64 = 40e6;

/// CPU time this process has used, all threads (the Go runtime's own
/// threads included), in nanoseconds.
fn process_cpu_ns() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
}

/// Per-call cost of `f`: (wall-clock ns, process CPU ns), each the median
/// of ROUNDS rounds sized to about ROUND_NS. On a busy machine the wall
/// clock includes time the caller was not running; CPU time does not, and
/// counts work the call caused on other threads of the process.
fn measure(mut f: impl FnMut()) -> (f64, f64) {
    let t = Instant::now();
    for _ in 0..2000 {
        f();
    }
    let per = t.elapsed().as_nanos() as f64 / 2000.0;
    let iters = ((ROUND_NS / per.max(0.5)) as u64).clamp(1000, 50_000_000);
    let (mut wall, mut cpu): (Vec<f64>, Vec<f64>) = (0..ROUNDS)
        .map(|_| {
            let (t, c) = (Instant::now(), process_cpu_ns());
            for _ in 0..iters {
                f();
            }
            (t.elapsed().as_nanos() as f64 / iters as f64, (process_cpu_ns() - c) / iters as f64)
        })
        .unzip();
    wall.sort_by(|a, b| a.total_cmp(b));
    cpu.sort_by(|a, b| a.total_cmp(b));
    (wall[ROUNDS / 2], cpu[ROUNDS / 2])
}

struct Lang {
    label: &'static str,
    file: &'static str,
    module: &'static str,
}

const LANGS: [Lang; 5] = [
    Lang { label: "C", file: "libchecksum.so", module: "checksum" },
    Lang { label: "C++", file: "libcppchecksum.so", module: "cppchecksum" },
    Lang { label: "Rust", file: "librustchecksum.so", module: "rustchecksum" },
    Lang { label: "Go", file: "libgochecksum.so", module: "gochecksum" },
    // The same Go code behind a hand-written descriptor and bare cgo
    // exports: what the SDK adds to the cgo transition.
    Lang { label: "Go-bare", file: "libgobare.so", module: "gobare" },
];

/// A plugin mapped by this program and initialised once with an empty
/// host table, for raw calls through its methods' function pointers.
struct Raw {
    _lib: libloading::Library,
    desc: &'static abi::hotmod_plugin_descriptor,
    instance: *mut c_void,
}

type MethodFn = unsafe extern "C" fn(*mut c_void, abi::hotmod_slice, *mut abi::hotmod_output) -> i32;

impl Raw {
    fn load(path: &Path) -> Raw {
        // SAFETY: a hotmod plugin built by `make plugins`; we follow its ABI.
        let lib = unsafe { libloading::Library::new(path) }.unwrap_or_else(|e| panic!("load {}: {e}", path.display()));
        // SAFETY: the ABI's entry symbol.
        let entry = unsafe { *lib.get::<abi::hotmod_plugin_entry_fn>(b"hotmod_plugin_v1\0").unwrap() };
        // SAFETY: the entry returns a static descriptor, valid while `lib` is mapped.
        let desc = unsafe { &*entry() };
        let host = Box::leak(Box::new(abi::hotmod_host_api {
            size: std::mem::size_of::<abi::hotmod_host_api>(),
            ctx: std::ptr::null_mut(),
            log: None,
            set_error: None,
            call_host: None,
            call_module: None,
        }));
        let mut instance = std::ptr::null_mut();
        if let Some(init) = desc.init {
            // SAFETY: init with a valid (empty) host table and empty config.
            assert_eq!(unsafe { init(host, abi::hotmod_slice::from_bytes(b""), &mut instance) }, 0);
        }
        Raw { _lib: lib, desc, instance }
    }

    fn method(&self, name: &str) -> MethodFn {
        // SAFETY: `methods` has `method_count` entries.
        let methods = unsafe { std::slice::from_raw_parts(self.desc.methods, self.desc.method_count) };
        // SAFETY: method names are NUL-terminated strings.
        let def = methods.iter().find(|m| unsafe { CStr::from_ptr(m.name) }.to_bytes() == name.as_bytes()).unwrap();
        def.func.unwrap()
    }
}

/// (threads, resident KiB) of this process.
fn footprint() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Threads:"), field("VmRSS:"))
}

/// Distinct private copies of `file` mapped in this process.
fn mapped_copies(file: &str) -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut inodes: Vec<&str> = maps
        .lines()
        .filter(|l| l.contains(&format!("hotmod:{file}")))
        .filter_map(|l| l.split_whitespace().nth(4))
        .collect();
    inodes.sort_unstable();
    inodes.dedup();
    inodes.len()
}

/// Loads `v1`, calls it, upgrades it `n` times alternating with `v2`, and
/// returns the footprint before, after the load and after the upgrades,
/// with the mapped copies at the end.
fn upgrades(dir: &Path, module: &str, v1: &str, v2: &str, n: usize) -> [(u64, u64, usize); 3] {
    let rt = Runtime::new();
    let before = footprint();
    rt.load(dir.join(v1), &LoadOptions::default()).unwrap();
    rt.call(module, "length", b"warm").unwrap();
    let loaded = footprint();
    let copies_loaded = mapped_copies(v1);
    for i in 0..n {
        let file = if i % 2 == 0 { v2 } else { v1 };
        rt.upgrade(module, dir.join(file), &UpgradeOptions::default()).unwrap();
        rt.call(module, "length", b"warm").unwrap();
    }
    // Let each version's threads settle (Go starts GC workers lazily).
    std::thread::sleep(std::time::Duration::from_millis(200));
    let after = footprint();
    let copies = mapped_copies(v1) + mapped_copies(v2);
    drop(rt);
    [(before.0, before.1, 0), (loaded.0, loaded.1, copies_loaded), (after.0, after.1, copies)]
}

/// Runs `upgrades` for one plugin in a child process (so the parent's own
/// Go runtimes do not count, and the child's do not slow the parent's calls).
fn footprint_in_child(plugin: &str, n: usize) -> [(u64, u64, usize); 3] {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--footprint", plugin, &n.to_string()])
        .output()
        .expect("run the footprint child");
    assert!(out.status.success(), "footprint child failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: Vec<u64> =
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(|w| w.parse().expect("numbers")).collect();
    assert_eq!(v.len(), 9, "expected 9 numbers from the footprint child");
    [(v[0], v[1], v[2] as usize), (v[3], v[4], v[5] as usize), (v[6], v[7], v[8] as usize)]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::env::var_os("HOTMOD_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../build/plugins")));
    if args.get(1).map(String::as_str) == Some("--footprint") {
        let n: usize = args[3].parse().unwrap();
        let f = match args[2].as_str() {
            "go" => upgrades(&dir, "gochecksum", "libgochecksum.so", "libgochecksum-v2.so", n),
            _ => upgrades(&dir, "checksum", "libchecksum.so", "libchecksum-v2.so", n),
        };
        for (t, r, m) in f {
            print!("{t} {r} {m} ");
        }
        return;
    }
    if args.get(1).map(String::as_str) == Some("--calls") {
        // `--calls FILE MODULE METHOD N`: only calls, for profilers (perf, strace -c).
        let rt = Runtime::new();
        rt.load(dir.join(&args[2]), &LoadOptions::default()).unwrap();
        let h = rt.method(&args[3], &args[4]).unwrap();
        let mut buf = [0u8; 64];
        for _ in 0..args[5].parse::<u64>().unwrap() {
            black_box(h.call_into(black_box(&[0x5au8; 16]), &mut buf).unwrap());
        }
        return;
    }
    let n_upgrades: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(50);
    for l in &LANGS {
        assert!(dir.join(l.file).is_file(), "expected {} in {}: run `make plugins`", l.file, dir.display());
    }

    let rt = Runtime::new();
    for l in &LANGS {
        rt.load(dir.join(l.file), &LoadOptions::default()).unwrap();
    }
    let raws: Vec<Raw> = LANGS.iter().map(|l| Raw::load(&dir.join(l.file))).collect();
    let input = [0x5au8; 16];
    println!("per-call cost, 16-byte input, median of {ROUNDS} rounds: wall-clock ns (process CPU ns)\n");
    println!(
        "{:<8} {:<7} {:>20} {:>20} {:>15} {:>13}",
        "method", "lang", "raw fn ptr", "hotmod handle", "handle/C", "handle - raw"
    );
    let mut json = Vec::new();
    for method in ["length", "fnv1a64"] {
        let mut c_handle = (0.0, 0.0);
        for (l, r) in LANGS.iter().zip(&raws) {
            let func = r.method(method);
            let mut buf = [0u8; 64];
            let raw_ns = measure(|| {
                let mut out = abi::hotmod_output::offering(buf.as_mut_ptr(), buf.len());
                // SAFETY: the method of a validated plugin with a valid slot.
                let rc = unsafe { func(r.instance, abi::hotmod_slice::from_bytes(black_box(&input)), &mut out) };
                black_box((rc, out.len));
            });
            let h = rt.method(l.module, method).unwrap();
            let handle_ns = measure(|| {
                black_box(h.call_into(black_box(&input), &mut buf).unwrap());
            });
            if l.label == "C" {
                c_handle = handle_ns;
            }
            let pair = |(w, c): (f64, f64)| format!("{w:.1} ({c:.1})");
            let ratio = (handle_ns.0 / c_handle.0, handle_ns.1 / c_handle.1);
            println!(
                "{:<8} {:<7} {:>20} {:>20} {:>15} {:>13}",
                method,
                l.label,
                pair(raw_ns),
                pair(handle_ns),
                format!("{:.1}x ({:.1}x)", ratio.0, ratio.1),
                format!("{:.1}", handle_ns.1 - raw_ns.1)
            );
            json.push(format!(
                "{{\"method\":\"{method}\",\"plugin\":\"{}\",\"raw_ns\":{:.1},\"raw_cpu_ns\":{:.1},\"handle_ns\":{:.1},\"handle_cpu_ns\":{:.1},\"ratio_to_c\":{:.3},\"cpu_ratio_to_c\":{:.3}}}",
                l.label, raw_ns.0, raw_ns.1, handle_ns.0, handle_ns.1, ratio.0, ratio.1
            ));
        }
    }
    println!("(handle - raw: process CPU ns)");
    drop(raws);
    drop(rt);

    let go = footprint_in_child("go", n_upgrades);
    let c = footprint_in_child("c", n_upgrades);
    println!("\nin-process footprint: load once, then {n_upgrades} upgrades (v1 <-> v2), one call per version\n");
    println!(
        "{:<6} {:>22} {:>22} {:>28}",
        "plugin", "before (threads, RSS)", "1 load (threads, RSS)", "after upgrades (threads, RSS)"
    );
    for (label, f) in [("Go", &go), ("C", &c)] {
        println!(
            "{:<6} {:>10} {:>8} MiB {:>10} {:>8} MiB {:>14} {:>8} MiB   {} copies mapped",
            label,
            f[0].0,
            f[0].1 / 1024,
            f[1].0,
            f[1].1 / 1024,
            f[2].0,
            f[2].1 / 1024,
            f[2].2
        );
    }
    let per = |f: &[(u64, u64, usize); 3]| {
        let n = n_upgrades.max(1) as f64;
        ((f[2].0 as f64 - f[1].0 as f64) / n, (f[2].1 as f64 - f[1].1 as f64) / 1024.0 / n)
    };
    let (gt, gm) = per(&go);
    let (ct, cm) = per(&c);
    println!("\nper upgrade: Go +{gt:.1} threads, +{gm:.2} MiB RSS; C +{ct:.1} threads, +{cm:.2} MiB RSS");
    println!(
        "first Go load: +{} threads, +{:.1} MiB RSS",
        go[1].0 as i64 - go[0].0 as i64,
        (go[1].1 as f64 - go[0].1 as f64) / 1024.0
    );

    let out = dir.join("../bench-languages.json");
    let steps = |f: &[(u64, u64, usize); 3]| {
        let step = |(t, r, m): (u64, u64, usize)| format!("{{\"threads\":{t},\"rss_kib\":{r},\"copies_mapped\":{m}}}");
        format!("{{\"before\":{},\"loaded\":{},\"upgraded\":{}}}", step(f[0]), step(f[1]), step(f[2]))
    };
    let body = format!(
        "{{\"calls\":[{}],\"footprint\":{{\"upgrades\":{n_upgrades},\"go\":{},\"c\":{}}}}}\n",
        json.join(","),
        steps(&go),
        steps(&c)
    );
    if std::fs::write(&out, body).is_ok() {
        println!("\nwritten to {}", out.display());
    }
}
