//! `hotmod bench`: nanoseconds per call of one method through a resolved
//! handle and by name, against a raw function-pointer call into the same
//! method measured in the same run.
//!
//! The baseline maps the file a second time with the platform's loader,
//! calls the plugin's `init` with an empty host table (no host services)
//! and calls the method's function pointer directly. A plugin whose init
//! needs host services, or fails without a config, has no baseline: the
//! table says so rather than comparing against nothing.

use std::ffi::{c_void, CStr};
use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use hotmod_core::abi;
use hotmod_core::{Error, LoadOptions, Runtime, Status};
use serde_json::{json, Value};

const ROUNDS: usize = 5;

/// Median ns per call of `f` over [`ROUNDS`] rounds, each of `iters` calls
/// (after a warm-up of a tenth of that), printing a progress line.
fn measure(what: &str, iters: u64, progress: bool, mut f: impl FnMut() -> bool) -> Result<f64, String> {
    for _ in 0..iters / 10 {
        if !f() {
            return Err(format!("{what}: the call failed during warm-up"));
        }
    }
    let mut samples = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        if progress {
            eprint!("\r  measuring {what:<22} round {}/{ROUNDS} ", round + 1);
            let _ = std::io::stderr().flush();
        }
        let t = Instant::now();
        for _ in 0..iters {
            black_box(f());
        }
        samples.push(t.elapsed().as_nanos() as f64 / iters as f64);
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    Ok(samples[ROUNDS / 2])
}

/// The raw baseline: the method's function pointer and its instance.
struct Raw {
    lib: libloading::Library,
    func: unsafe extern "C" fn(*mut c_void, abi::hotmod_slice, *mut abi::hotmod_output) -> i32,
    instance: *mut c_void,
    destroy: abi::hotmod_destroy_fn,
}

impl Drop for Raw {
    fn drop(&mut self) {
        if let Some(destroy) = self.destroy {
            // SAFETY: the instance came from this library's init, destroyed once.
            unsafe { destroy(self.instance) };
        }
        let _ = &self.lib;
    }
}

fn raw(path: &Path, method: &str, config: &[u8]) -> Result<Raw, String> {
    // SAFETY: the same file hotmod loaded and validated in this process
    // already; mapping it again runs its constructors again.
    let lib = unsafe { libloading::Library::new(path) }.map_err(|e| format!("cannot map it a second time: {e}"))?;
    // SAFETY: the entry symbol has the ABI's type (hotmod checked the descriptor).
    let entry = unsafe { lib.get::<abi::hotmod_plugin_entry_fn>(b"hotmod_plugin_v1\0") }
        .map_err(|e| format!("no entry symbol: {e}"))?;
    // SAFETY: the entry returns the static descriptor hotmod validated.
    let desc = unsafe { &*entry() };
    // SAFETY: validated by hotmod: method_count entries with NUL-terminated names.
    let methods = unsafe { std::slice::from_raw_parts(desc.methods, desc.method_count) };
    let def = methods
        // SAFETY: as above.
        .iter()
        .find(|m| unsafe { CStr::from_ptr(m.name) }.to_bytes() == method.as_bytes())
        .ok_or("method not in the descriptor")?;
    let func = def.func.ok_or("NULL method")?;
    let mut instance = std::ptr::null_mut();
    if let Some(init) = desc.init {
        let host = abi::hotmod_host_api {
            size: std::mem::size_of::<abi::hotmod_host_api>(),
            ctx: std::ptr::null_mut(),
            log: None,
            set_error: None,
            call_host: None,
            call_module: None,
        };
        // SAFETY: init with a host table offering no services, as documented
        // by the ABI (every service pointer may be NULL).
        let rc = unsafe { init(&host, abi::hotmod_slice::from_bytes(config), &mut instance) };
        if rc != abi::HOTMOD_PLUGIN_OK {
            return Err(format!("its init hook failed ({rc}) without host services"));
        }
    }
    Ok(Raw { lib, func, instance, destroy: desc.destroy })
}

/// Options of one benchmark run.
pub struct Request<'a> {
    /// Plugin file.
    pub file: &'a Path,
    /// Module and method names.
    pub module: &'a str,
    /// Method name.
    pub method: &'a str,
    /// Input bytes.
    pub input: &'a [u8],
    /// Calls per round (default: about 100 ms worth).
    pub iterations: Option<u64>,
    /// Bytes for the plugin's init.
    pub config: &'a [u8],
    /// Show a progress line on standard error.
    pub progress: bool,
}

/// Runs the benchmark; returns the table as JSON.
pub fn run(req: &Request<'_>) -> Result<Value, Error> {
    let rt = Runtime::new();
    let opts = LoadOptions { config: req.config.to_vec(), ..LoadOptions::default() };
    let module = rt.load(req.file, &opts)?;
    if module.name() != req.module {
        return Err(Error::new(
            Status::ModuleNotFound,
            format!(
                "expected '{}' to declare module '{}', found module '{}'",
                req.file.display(),
                req.module,
                module.name()
            ),
        ));
    }
    let handle = rt.method(req.module, req.method)?;
    let mut buf = vec![0u8; 1 << 16];
    // One call first, so that a method that fails is reported as its error.
    handle.call_into(req.input, &mut buf)?;
    let iterations = req.iterations.unwrap_or_else(|| {
        let t = Instant::now();
        for _ in 0..1_000 {
            let _ = black_box(handle.call_into(req.input, &mut buf));
        }
        iterations_for(t.elapsed() / 1_000, Duration::from_millis(100))
    });
    let bench_err = |e: String| Error::new(Status::PluginError, e);
    let by_handle = measure("by handle", iterations, req.progress, || handle.call_into(req.input, &mut buf).is_ok())
        .map_err(bench_err)?;
    let by_name = measure("by name", iterations, req.progress, || {
        rt.call_into(req.module, req.method, req.input, &mut buf).is_ok()
    })
    .map_err(bench_err)?;
    let raw_ns = match raw(req.file, req.method, req.config) {
        Ok(r) => {
            let mut out_buf = vec![0u8; 1 << 16];
            let ns = measure("raw function pointer", iterations, req.progress, || {
                let mut out = abi::hotmod_output::offering(out_buf.as_mut_ptr(), out_buf.len());
                // SAFETY: the method's validated function pointer, its
                // instance, a valid input view and output slot.
                let rc = unsafe { (r.func)(r.instance, abi::hotmod_slice::from_bytes(black_box(req.input)), &mut out) };
                if let Some(release) = out.release {
                    // SAFETY: the plugin handed over memory; released once.
                    unsafe { release(out.release_ctx, out.data, out.len) };
                }
                rc == abi::HOTMOD_PLUGIN_OK
            })
            .map_err(bench_err)?;
            Ok(ns)
        }
        Err(why) => Err(why),
    };
    if req.progress {
        eprint!("\r{:60}\r", "");
    }
    let ratio = |ns: f64| raw_ns.as_ref().ok().map(|r| ns / r);
    Ok(json!({
        "module": req.module,
        "method": req.method,
        "input_bytes": req.input.len(),
        "iterations_per_round": iterations,
        "rounds": ROUNDS,
        "ns_per_call": {
            "raw": raw_ns.as_ref().ok(),
            "handle": by_handle,
            "by_name": by_name,
        },
        "vs_raw": { "handle": ratio(by_handle), "by_name": ratio(by_name) },
        "overhead_ns": { "handle": raw_ns.as_ref().ok().map(|r| by_handle - r), "by_name": raw_ns.as_ref().ok().map(|r| by_name - r) },
        "raw_unavailable": raw_ns.as_ref().err(),
    }))
}

/// Prints the table for humans.
pub fn print(v: &Value) {
    let f = |p: &str| v.pointer(p).and_then(Value::as_f64);
    println!(
        "{}.{} ({} B in, median of {} rounds of {} calls)",
        v["module"].as_str().unwrap_or(""),
        v["method"].as_str().unwrap_or(""),
        v["input_bytes"],
        v["rounds"],
        v["iterations_per_round"]
    );
    println!("  {:<22} {:>10} {:>9} {:>12}", "path", "ns/call", "vs raw", "overhead ns");
    for (label, key) in [("raw function pointer", "raw"), ("by handle", "handle"), ("by name", "by_name")] {
        let ns = f(&format!("/ns_per_call/{key}"));
        let ratio = if key == "raw" { Some(1.0) } else { f(&format!("/vs_raw/{key}")) };
        let over = if key == "raw" { Some(0.0) } else { f(&format!("/overhead_ns/{key}")) };
        let show = |x: Option<f64>, d: usize| x.map_or("n/a".to_string(), |x| format!("{x:.d$}"));
        println!("  {:<22} {:>10} {:>8}x {:>12}", label, show(ns, 2), show(ratio, 2), show(over, 2));
    }
    if let Some(why) = v["raw_unavailable"].as_str() {
        println!("  (no raw baseline: {why})");
    }
}

/// Bounds a benchmark so a slow method does not run for minutes: the
/// number of calls per round that takes about `budget` at `ns` per call.
pub fn iterations_for(ns: Duration, budget: Duration) -> u64 {
    (budget.as_nanos() / ns.as_nanos().max(1)).clamp(1_000, 5_000_000) as u64
}
