//! Out-of-process call cost against the same method in process, as ratios
//! measured in one run (`make bench`, or
//! `cargo run --release -p hotmod-core --example oop_bench`).
//!
//! - round trip by handle at 16 B, 64 KiB and 1 MiB, input copied into the
//!   lane, and input built in a lane buffer (only the length crosses);
//! - 2 calling threads against 1 on one worker (throughput);
//! - time from a worker crash to the next successful call.
//!
//! The method is the checksum example's `length` (reads no payload byte),
//! so the figures are the transport's own cost. Needs `make plugins`.

#[cfg(target_os = "linux")]
fn main() {
    bench::run();
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("oop_bench: out-of-process mode is Linux only for now");
}

#[cfg(target_os = "linux")]
mod bench {
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use hotmod_core::isolation::{RestartPolicy, Worker, WorkerOptions};
    use hotmod_core::{LoadOptions, Runtime};

    fn plugin_dir() -> PathBuf {
        std::env::var_os("HOTMOD_PLUGIN_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../build/plugins")))
    }

    fn worker_path() -> Option<PathBuf> {
        if std::env::var_os("HOTMOD_WORKER").is_some() {
            return None;
        }
        Some(PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/hotmod-worker")))
    }

    /// Best single call seen by [`time`], in ns (the spin path's figure).
    static BEST: std::sync::Mutex<f64> = std::sync::Mutex::new(f64::MAX);

    /// Median of `rounds` timings of `iters` calls each, in ns per call;
    /// also records the fastest single call in [`BEST`].
    fn time(iters: u32, rounds: usize, mut f: impl FnMut()) -> f64 {
        *BEST.lock().unwrap() = f64::MAX;
        for _ in 0..iters / 10 + 1 {
            f();
        }
        let mut v: Vec<f64> = (0..rounds)
            .map(|_| {
                let t = Instant::now();
                let mut best = f64::MAX;
                for _ in 0..iters {
                    let c = Instant::now();
                    f();
                    best = best.min(c.elapsed().as_nanos() as f64);
                }
                let mut b = BEST.lock().unwrap();
                *b = b.min(best);
                t.elapsed().as_nanos() as f64 / iters as f64
            })
            .collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    }

    fn fmt_ns(ns: f64) -> String {
        if ns >= 1e6 {
            format!("{:.2} ms", ns / 1e6)
        } else if ns >= 1e3 {
            format!("{:.2} µs", ns / 1e3)
        } else {
            format!("{ns:.0} ns")
        }
    }

    pub fn run() {
        let dir = plugin_dir();
        let checksum = dir.join("libchecksum.so");
        assert!(checksum.exists(), "expected {} (run `make plugins`)", checksum.display());
        let rt = Runtime::new();
        rt.load(&checksum, &LoadOptions::default()).unwrap();
        let local = rt.method("checksum", "length").unwrap();
        // HOTMOD_BENCH_SPIN_US: how long a waiting side spins before it
        // sleeps (default: the runtime's).
        let mut opts = WorkerOptions { worker_path: worker_path(), lanes: 4, ..Default::default() };
        if let Some(us) = std::env::var("HOTMOD_BENCH_SPIN_US").ok().and_then(|v| v.parse().ok()) {
            opts.spin = Duration::from_micros(us);
        }
        println!("spin before sleeping: {} µs (host side)", opts.spin.as_micros());
        let worker = Arc::new(Worker::spawn(opts.clone()).unwrap());
        worker.load(&checksum, b"").unwrap();
        let m = worker.method_index("length").unwrap();

        println!("out-of-process call cost (checksum.length; median of 7 rounds)");
        println!(
            "{:<10} {:>12} {:>14} {:>10} {:>16} {:>10}",
            "input", "in process", "oop (copied)", "ratio", "oop (in buffer)", "ratio"
        );
        let mut dst = [0u8; 8];
        let mut first16 = 0.0;
        for &(label, size, iters) in
            &[("16 B", 16usize, 20_000u32), ("64 KiB", 64 << 10, 5_000), ("1 MiB", 1 << 20, 500)]
        {
            let input = vec![7u8; size];
            let t_in = time(iters * 10, 7, || {
                local.call_into(&input, &mut dst).unwrap();
            });
            let t_copy = time(iters, 7, || {
                worker.call_into(m, &input, &mut dst).unwrap();
            });
            let mut buf = worker.buffer().unwrap();
            buf.as_mut_slice()[..size].fill(7);
            buf.set_len(size);
            let t_buf = time(iters, 7, || {
                worker.call_into(m, buf.input(), &mut dst).unwrap();
            });
            let best_buf = *BEST.lock().unwrap();
            drop(buf);
            if size == 16 {
                first16 = t_buf;
            }
            println!(
                "{label:<10} {:>12} {:>14} {:>9.0}× {:>16} {:>9.0}×",
                fmt_ns(t_in),
                fmt_ns(t_copy),
                t_copy / t_in,
                fmt_ns(t_buf),
                t_buf / t_in
            );
            println!("  fastest single call from a buffer: {}", fmt_ns(best_buf));
            if size == 1 << 20 {
                println!("  1 MiB in a buffer / 16 B in a buffer: {:.2}×", t_buf / first16);
            }
        }

        // Throughput: 2 threads against 1, on one worker.
        let calls = 20_000u32;
        let run_threads = |n: u32| {
            let t = Instant::now();
            let ts: Vec<_> = (0..n)
                .map(|_| {
                    let w = worker.clone();
                    std::thread::spawn(move || {
                        let mut d = [0u8; 8];
                        for _ in 0..calls {
                            w.call_into(m, b"0123456789abcdef", &mut d).unwrap();
                        }
                    })
                })
                .collect();
            for t in ts {
                t.join().unwrap();
            }
            (n * calls) as f64 / t.elapsed().as_secs_f64()
        };
        let one = run_threads(1);
        let two = run_threads(2);
        println!("throughput at 16 B: 1 thread {one:.0} calls/s, 2 threads {two:.0} calls/s ({:.2}×)", two / one);

        // Crash to next successful call.
        let faults = dir.join("libfaults.so");
        if faults.exists() {
            let opts = WorkerOptions {
                // A window shorter than a restart: every crash is a first
                // crash, so the figure is detection + respawn + reload, not
                // the growing backoff.
                restart: RestartPolicy {
                    initial_backoff: Duration::from_millis(1),
                    max_crashes: 1000,
                    window: Duration::from_millis(1),
                    ..Default::default()
                },
                ..opts
            };
            let w = Worker::spawn(opts).unwrap();
            w.load(&faults, b"").unwrap();
            let (seg, echo) = (w.method_index("segfault").unwrap(), w.method_index("echo").unwrap());
            let mut times: Vec<f64> = (0..10)
                .map(|_| {
                    let t = Instant::now();
                    let _ = w.call(seg, b"");
                    while w.call(echo, b"x").is_err() {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            times.sort_by(|a, b| a.total_cmp(b));
            println!(
                "crash (SIGSEGV) to next successful call: median {:.1} ms, max {:.1} ms (10 crashes)",
                times[5], times[9]
            );
        }
    }
}
