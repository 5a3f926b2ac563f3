//! Load-path benchmark: an upgrade of a plugin (start to publish, old
//! version drained and unmapped) against a bare `dlopen` + `dlclose` of the
//! same file, measured side by side in one run. Prints ratios; asserts
//! nothing. "publish" is start to publish (the `Activated` event), "total"
//! includes draining and unmapping the old version.
//!
//! ```text
//! cargo run --release -p hotmod-core --example load_bench [-- ROUNDS]
//! ```
//!
//! Plugins come from HOTMOD_PLUGIN_DIR (default build/plugins; `make plugins`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use std::sync::{Arc, Mutex};

use hotmod_core::{EventKind, LoadOptions, Runtime, UpgradeOptions};

fn plugin_dir() -> PathBuf {
    std::env::var_os("HOTMOD_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../build/plugins")))
}

/// Median of `rounds` timings of `f`.
fn median(rounds: usize, mut f: impl FnMut()) -> Duration {
    let mut t: Vec<Duration> = (0..rounds)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    t[t.len() / 2]
}

fn bare_dlopen(path: &PathBuf) {
    use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
    // SAFETY: the benchmark's own fixture plugins, whose constructors are benign.
    let lib = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }.expect("dlopen");
    lib.close().expect("dlclose");
}

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(300);
    let dir = plugin_dir();
    println!(
        "{:<24} {:>12} {:>12} {:>12} {:>10} {:>10}",
        "plugin (bytes)", "publish", "total", "dlopen+close", "publish×", "total×"
    );
    for (name, module) in [("libchecksum.so", "checksum"), ("libtext.so", "text")] {
        let path = dir.join(name);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let rt = Runtime::new();
        let published: Arc<Mutex<Option<Instant>>> = Arc::default();
        let p2 = published.clone();
        rt.set_event_handler(Some(Arc::new(move |e: &hotmod_core::Event| {
            if e.kind == EventKind::Activated {
                *p2.lock().unwrap() = Some(Instant::now());
            }
        })));
        rt.load(&path, &LoadOptions::default()).expect("load");
        let opts = UpgradeOptions::default();
        // Warm up both paths (page cache, allocator).
        for _ in 0..10 {
            rt.upgrade(module, &path, &opts).expect("upgrade");
            bare_dlopen(&path);
        }
        let mut publish = Vec::with_capacity(rounds);
        let total = median(rounds, || {
            let start = Instant::now();
            rt.upgrade(module, &path, &opts).expect("upgrade");
            publish.push(published.lock().unwrap().expect("published") - start);
        });
        publish.sort();
        let publish = publish[publish.len() / 2];
        let bare = median(rounds, || bare_dlopen(&path));
        // The pieces of the load path, on the same file.
        let checks = median(rounds, || {
            hotmod_core::loader::elf::check_file(&path).expect("checks");
        });
        let bytes = std::fs::read(&path).expect("read");
        let hash = median(rounds, || {
            use sha2::Digest;
            std::hint::black_box(sha2::Sha256::digest(&bytes));
        });
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "{:<24} {:>9.1} µs {:>9.1} µs {:>9.1} µs {:>9.2}× {:>9.2}×",
            format!("{name} ({size})"),
            us(publish),
            us(total),
            us(bare),
            us(publish) / us(bare),
            us(total) / us(bare)
        );
        println!(
            "{:<24} open+read+ELF checks {:.1} µs, SHA-256 of the file {:.1} µs ({:.0}% of publish)",
            "",
            us(checks),
            us(hash),
            100.0 * us(hash) / us(publish)
        );
    }
}
