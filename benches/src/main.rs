//! hotmod call-path benchmark.
//!
//! Measures, in one run and on the same plugin method:
//! - a raw function-pointer call into the plugin (the floor),
//! - `dlsym` on every call (look the entry symbol up, then call),
//! - a hotmod call through a resolved handle (core API and C API),
//! - a hotmod call by name (core API and C API),
//!
//! then call latency and throughput in steady state versus during
//! continuous upgrades, how long an upgrade takes to publish, and how the
//! call path scales: throughput of 1, 2 and 8 threads calling one method
//! through one handle (nothing shared may be written on the call path, so
//! 2 threads should get about twice the calls of 1 on a machine with 2
//! cores or more, and 8 no fewer than 2). `hotmod-bench scaling` runs only
//! the scaling part, `hotmod-bench calls` only the single-thread call costs.
//!
//! and prints nanoseconds per call with ratios against the baselines; the
//! table is also written as JSON to `build/bench-call-path.json`. Timing is
//! the median of several rounds. Plugins come from `HOTMOD_PLUGIN_DIR`
//! (default `build/plugins`), the C library from `HOTMOD_LIB_DIR`.

use std::ffi::{c_char, c_void, CStr};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hotmod_abi as abi;
use hotmod_core::{Event, EventKind, LoadOptions, Runtime, UpgradeOptions};

const ROUNDS: usize = 7;

/// Median nanoseconds per call of `f` over `ROUNDS` rounds of `iters` calls.
fn measure(iters: u64, mut f: impl FnMut()) -> f64 {
    for _ in 0..iters / 10 {
        f();
    }
    let mut samples: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[ROUNDS / 2]
}

type CStatus = i32;
type MethodCallInto = unsafe extern "C" fn(*const c_void, *const u8, usize, *mut u8, usize, *mut usize) -> CStatus;
type RuntimeCallInto = unsafe extern "C" fn(
    *const c_void,
    *const c_char,
    *const c_char,
    *const u8,
    usize,
    *mut u8,
    usize,
    *mut usize,
) -> CStatus;

struct CApi {
    _lib: libloading::Library,
    rt: *mut c_void,
    method: *mut c_void,
    method_call_into: MethodCallInto,
    runtime_call_into: RuntimeCallInto,
}

fn c_api(lib_dir: &std::path::Path, plugin: &std::path::Path, module: &CStr, method: &CStr) -> CApi {
    // SAFETY: loading hotmod's own C library and calling its documented API.
    unsafe {
        let lib = libloading::Library::new(lib_dir.join("libhotmod.so")).expect("load libhotmod.so (run make lib)");
        let new: libloading::Symbol<unsafe extern "C" fn(*mut *mut c_void) -> CStatus> =
            lib.get(b"hotmod_runtime_new\0").unwrap();
        let load: libloading::Symbol<
            unsafe extern "C" fn(*const c_void, *const c_char, *const c_void, *mut *mut c_void) -> CStatus,
        > = lib.get(b"hotmod_runtime_load\0").unwrap();
        let resolve: libloading::Symbol<
            unsafe extern "C" fn(*const c_void, *const c_char, *const c_char, *mut *mut c_void) -> CStatus,
        > = lib.get(b"hotmod_runtime_resolve\0").unwrap();
        let mut rt = std::ptr::null_mut();
        assert_eq!(new(&mut rt), 0);
        let path = std::ffi::CString::new(plugin.to_str().unwrap()).unwrap();
        assert_eq!(load(rt, path.as_ptr(), std::ptr::null(), std::ptr::null_mut()), 0);
        let mut m = std::ptr::null_mut();
        assert_eq!(resolve(rt, module.as_ptr(), method.as_ptr(), &mut m), 0);
        let method_call_into = *lib.get::<MethodCallInto>(b"hotmod_method_call_into\0").unwrap();
        let runtime_call_into = *lib.get::<RuntimeCallInto>(b"hotmod_runtime_call_into\0").unwrap();
        CApi { _lib: lib, rt, method: m, method_call_into, runtime_call_into }
    }
}

struct Row {
    name: String,
    ns: f64,
    ratio_raw: f64,
}

fn bench_method(
    plugins: &std::path::Path,
    lib_dir: &std::path::Path,
    file: &str,
    module: &CStr,
    method: &CStr,
    input: &[u8],
) -> Vec<Row> {
    let path = plugins.join(file);
    let iters = 2_000_000;

    // Raw: map the plugin ourselves and call the method's function pointer.
    // SAFETY: the plugin is a hotmod plugin; we follow its ABI.
    let raw_lib = unsafe { libloading::Library::new(&path) }.expect("load plugin");
    // SAFETY: entry symbol of the ABI.
    let entry = unsafe { *raw_lib.get::<abi::hotmod_plugin_entry_fn>(b"hotmod_plugin_v1\0").unwrap() };
    // SAFETY: entry returns a static descriptor.
    let desc = unsafe { &*entry() };
    let mut instance: *mut c_void = std::ptr::null_mut();
    let host = abi::hotmod_host_api {
        size: std::mem::size_of::<abi::hotmod_host_api>(),
        ctx: std::ptr::null_mut(),
        log: None,
        set_error: None,
        call_host: None,
        call_module: None,
    };
    if let Some(init) = desc.init {
        // SAFETY: init with an empty host table and config.
        assert_eq!(unsafe { init(&host, abi::hotmod_slice::from_bytes(b""), &mut instance) }, 0);
    }
    // SAFETY: methods has method_count entries.
    let methods = unsafe { std::slice::from_raw_parts(desc.methods, desc.method_count) };
    let idx = methods.iter().position(|m| unsafe { CStr::from_ptr(m.name) } == method).expect("method");
    let func = methods[idx].func.unwrap();
    let mut buf = [0u8; 64];
    let raw = measure(iters, || {
        let mut out = abi::hotmod_output::offering(buf.as_mut_ptr(), buf.len());
        // SAFETY: calling the validated method with a valid slot.
        let rc = unsafe { func(instance, abi::hotmod_slice::from_bytes(black_box(input)), &mut out) };
        black_box((rc, out.len));
    });

    // dlsym on every call: look the entry symbol up, then call the method.
    let dl = measure(iters / 4, || {
        // SAFETY: as above, looked up again each call.
        let entry = unsafe { *raw_lib.get::<abi::hotmod_plugin_entry_fn>(black_box(b"hotmod_plugin_v1\0")).unwrap() };
        // SAFETY: as above.
        let d = unsafe { &*entry() };
        // SAFETY: as above.
        let f = unsafe { (*d.methods.add(idx)).func.unwrap() };
        let mut out = abi::hotmod_output::offering(buf.as_mut_ptr(), buf.len());
        // SAFETY: as above.
        let rc = unsafe { f(instance, abi::hotmod_slice::from_bytes(black_box(input)), &mut out) };
        black_box((rc, out.len));
    });

    let rt = Runtime::new();
    rt.load(&path, &LoadOptions::default()).unwrap();
    let (m_s, f_s) = (module.to_str().unwrap(), method.to_str().unwrap());
    let handle = rt.method(m_s, f_s).unwrap();
    let by_handle = measure(iters, || {
        black_box(handle.call_into(black_box(input), &mut buf).unwrap());
    });
    let by_handle_owned = measure(iters, || {
        black_box(handle.call(black_box(input)).unwrap());
    });
    let by_name = measure(iters, || {
        black_box(rt.call_into(black_box(m_s), black_box(f_s), black_box(input), &mut buf).unwrap());
    });

    let c = c_api(lib_dir, &path, module, method);
    let mut n = 0usize;
    let c_handle = measure(iters, || {
        // SAFETY: documented C API with valid arguments.
        let st =
            unsafe { (c.method_call_into)(c.method, input.as_ptr(), input.len(), buf.as_mut_ptr(), buf.len(), &mut n) };
        black_box(st);
    });
    let c_name = measure(iters, || {
        // SAFETY: as above.
        let st = unsafe {
            (c.runtime_call_into)(
                c.rt,
                module.as_ptr(),
                method.as_ptr(),
                input.as_ptr(),
                input.len(),
                buf.as_mut_ptr(),
                buf.len(),
                &mut n,
            )
        };
        black_box(st);
    });
    if let Some(destroy) = desc.destroy {
        // SAFETY: the raw instance is ours to destroy, once.
        unsafe { destroy(instance) };
    }

    let label = format!("{}.{} ({} B in)", m_s, f_s, input.len());
    let row = |what: &str, ns: f64| Row { name: format!("{label:<28} {what}"), ns, ratio_raw: ns / raw };
    let rows = vec![
        row("raw function pointer", raw),
        row("dlsym every call", dl),
        row("hotmod handle (core)", by_handle),
        row("hotmod handle (C API)", c_handle),
        row("hotmod handle, owned out", by_handle_owned),
        row("hotmod by name (core)", by_name),
        row("hotmod by name (C API)", c_name),
    ];
    println!("\n{label}");
    println!("  {:<26} {:>9} {:>10}", "path", "ns/call", "vs raw");
    for r in &rows {
        println!("  {:<26} {:>9.2} {:>9.2}x", &r.name[label.len() + 1..], r.ns, r.ratio_raw);
    }
    println!(
        "  => handle / raw: {:.2}x (C API {:.2}x)   by name / dlsym: {:.2}x (C API {:.2}x)",
        by_handle / raw,
        c_handle / raw,
        by_name / dl,
        c_name / dl
    );
    rows
}

/// Calls per second and mean latency of `callers` threads calling
/// checksum.crc32 by handle for `secs`, optionally while the main thread
/// upgrades the module back and forth; also the upgrades' start-to-publish
/// and start-to-return times.
fn upgrade_phase(rt: &Arc<Runtime>, plugins: &std::path::Path, callers: usize, secs: f64, upgrading: bool) -> Phase {
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..callers)
        .map(|_| {
            let (rt, stop) = (rt.clone(), stop.clone());
            std::thread::spawn(move || {
                let crc = rt.method("checksum", "crc32").unwrap();
                let mut buf = [0u8; 8];
                let (mut calls, mut failed, mut worst) = (0u64, 0u64, 0u128);
                let start = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    if crc.call_into(black_box(b"123456789"), &mut buf).is_err() {
                        failed += 1;
                    }
                    worst = worst.max(t.elapsed().as_nanos());
                    calls += 1;
                }
                (calls, failed, worst, start.elapsed())
            })
        })
        .collect();
    let published: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let p = published.clone();
    rt.set_event_handler(Some(Arc::new(move |e: &Event| {
        if e.kind == EventKind::Activated {
            p.lock().unwrap().push(Instant::now());
        }
    })));
    let (mut starts, mut totals) = (Vec::new(), Vec::new());
    let end = Instant::now() + std::time::Duration::from_secs_f64(secs);
    let mut i = 0;
    while Instant::now() < end {
        if upgrading {
            let file = if i % 2 == 0 { "libchecksum-v2.so" } else { "libchecksum.so" };
            let t = Instant::now();
            rt.upgrade("checksum", plugins.join(file), &UpgradeOptions::default()).unwrap();
            totals.push(t.elapsed());
            starts.push(t);
            i += 1;
        } else {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (mut calls, mut failed, mut worst, mut busy) = (0, 0, 0, 0.0);
    for t in threads {
        let (c, f, w, d) = t.join().unwrap();
        calls += c;
        failed += f;
        worst = worst.max(w);
        busy += d.as_secs_f64();
    }
    rt.set_event_handler(None);
    let published = published.lock().unwrap();
    let mut to_publish: Vec<f64> =
        starts.iter().zip(published.iter()).map(|(s, p)| p.duration_since(*s).as_secs_f64() * 1e6).collect();
    let mut total: Vec<f64> = totals.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    to_publish.sort_by(|a, b| a.partial_cmp(b).unwrap());
    total.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = |v: &[f64]| if v.is_empty() { 0.0 } else { v[v.len() / 2] };
    Phase {
        calls,
        failed,
        mean_ns: busy * 1e9 / calls as f64,
        worst_us: worst as f64 / 1e3,
        per_sec: calls as f64 / secs,
        upgrades: starts.len(),
        publish_us: median(&to_publish),
        upgrade_us: median(&total),
    }
}

struct Phase {
    calls: u64,
    failed: u64,
    mean_ns: f64,
    worst_us: f64,
    per_sec: f64,
    upgrades: usize,
    publish_us: f64,
    upgrade_us: f64,
}

fn bench_upgrades(plugins: &std::path::Path) {
    let rt = Arc::new(Runtime::new());
    rt.load(plugins.join("libchecksum.so"), &LoadOptions::default()).unwrap();
    let callers = 2;
    let steady = upgrade_phase(&rt, plugins, callers, 2.0, false);
    let during = upgrade_phase(&rt, plugins, callers, 2.0, true);
    println!(
        "
checksum.crc32 by handle, {callers} calling threads, 2 s each (one upgrading thread in the second phase)"
    );
    println!("  {:<26} {:>12} {:>10} {:>12} {:>8}", "phase", "calls/s", "mean ns", "worst us", "failed");
    for (name, p) in [("steady state", &steady), ("continuous upgrades", &during)] {
        println!("  {:<26} {:>12.0} {:>10.1} {:>12.1} {:>8}", name, p.per_sec, p.mean_ns, p.worst_us, p.failed);
    }
    println!(
        "  => latency during upgrades / steady: {:.2}x; throughput {:.2}x; {} upgrades, {} failed calls of {}",
        during.mean_ns / steady.mean_ns,
        during.per_sec / steady.per_sec,
        during.upgrades,
        during.failed + steady.failed,
        during.calls + steady.calls
    );
    println!(
        "  => upgrade start to publish: median {:.1} us; start to return (incl. drain and destroy): median {:.1} us",
        during.publish_us, during.upgrade_us
    );
}

/// Calls per second of `threads` threads calling `module.method` through
/// one shared handle for `secs` (the median of three runs).
fn throughput(rt: &Arc<Runtime>, module: &str, method: &str, input: &[u8], threads: usize, secs: f64) -> f64 {
    let handle = Arc::new(rt.method(module, method).unwrap());
    let mut runs: Vec<f64> = (0..3)
        .map(|_| {
            let stop = Arc::new(AtomicBool::new(false));
            let start = Arc::new(std::sync::Barrier::new(threads + 1));
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    let (h, stop, start, input) = (handle.clone(), stop.clone(), start.clone(), input.to_vec());
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 64];
                        let mut n = 0u64;
                        start.wait();
                        while !stop.load(Ordering::Relaxed) {
                            for _ in 0..256 {
                                black_box(h.call_into(black_box(&input), &mut buf).unwrap());
                            }
                            n += 256;
                        }
                        n
                    })
                })
                .collect();
            start.wait();
            let t = Instant::now();
            std::thread::sleep(std::time::Duration::from_secs_f64(secs));
            stop.store(true, Ordering::Relaxed);
            let calls: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
            calls as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    runs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    runs[1]
}

fn bench_scaling(plugins: &std::path::Path) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "
scaling: calls/s through one handle shared by N threads ({cores} cores; median of 3 runs of 0.5 s)"
    );
    println!("  {:<28} {:>12} {:>12} {:>12} {:>8} {:>8}", "method", "1 thread", "2 threads", "8 threads", "2/1", "8/2");
    let rt = Arc::new(Runtime::new());
    rt.load(plugins.join("libprobe.so"), &LoadOptions::default()).unwrap();
    rt.load(plugins.join("libchecksum.so"), &LoadOptions::default()).unwrap();
    for (module, method, input) in [("probe", "noop", &[][..]), ("checksum", "length", &[0u8; 16][..])] {
        let t: Vec<f64> = [1, 2, 8].iter().map(|&n| throughput(&rt, module, method, input, n, 0.5)).collect();
        println!(
            "  {:<28} {:>12.3e} {:>12.3e} {:>12.3e} {:>7.2}x {:>7.2}x",
            format!("{module}.{method}"),
            t[0],
            t[1],
            t[2],
            t[1] / t[0],
            t[2] / t[1]
        );
    }
    println!("  targets: 2/1 >= 1.8x (with 2 or more cores), 8/2 >= 1.0x");
}

fn main() {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let plugins =
        std::env::var_os("HOTMOD_PLUGIN_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("build/plugins"));
    let lib_dir = std::env::var_os("HOTMOD_LIB_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target/release"));
    if std::env::args().nth(1).as_deref() == Some("scaling") {
        bench_scaling(&plugins);
        return;
    }
    println!("hotmod call-path benchmark (median of {ROUNDS} rounds; counters and latency sampling on)");
    let mut rows = Vec::new();
    rows.extend(bench_method(&plugins, &lib_dir, "libprobe.so", c"probe", c"noop", &[]));
    if std::env::args().nth(1).as_deref() == Some("calls") {
        rows.extend(bench_method(&plugins, &lib_dir, "libchecksum.so", c"checksum", c"length", &[0u8; 16]));
        return;
    }
    rows.extend(bench_method(&plugins, &lib_dir, "libchecksum.so", c"checksum", c"length", &[0u8; 16]));
    rows.extend(bench_method(&plugins, &lib_dir, "libchecksum.so", c"checksum", c"crc32", &[7u8; 64]));
    bench_upgrades(&plugins);
    bench_scaling(&plugins);
    let json: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "  {{\"case\": \"{}\", \"ns_per_call\": {:.3}, \"vs_raw\": {:.3}}}",
                r.name.split_whitespace().collect::<Vec<_>>().join(" "),
                r.ns,
                r.ratio_raw
            )
        })
        .collect();
    let out = root.join("build/bench-call-path.json");
    if std::fs::write(&out, format!("[\n{}\n]\n", json.join(",\n"))).is_ok() {
        println!("\nwrote {}", out.display());
    }
}
