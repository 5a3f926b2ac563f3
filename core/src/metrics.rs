//! Per-method metrics kept on the call path without a shared write.
//!
//! Calls, errors and panics are counted per thread (see
//! `crate::rcu::counters`): the call path adds one to a cell in its own
//! thread's record with a plain load and store, and [`MethodCounters::snapshot`]
//! sums the cells of every thread, plus the totals of threads that exited.
//! Latency is measured on a sample of calls (one in [`LATENCY_SAMPLE_EVERY`]
//! per thread, chosen by a per-thread countdown): reading the clock twice
//! costs more than all the rest of a call's overhead (about 60 ns against 3
//! to 4 on the machines measured), so the sample is kept small. Samples go
//! into shared relaxed atomics (one call in 128 writes them), a log2
//! histogram from which quantiles are read.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::rcu::counters::{self, Totals};
use crate::rcu::Reader;

/// One call in this many has its latency measured (per thread).
pub const LATENCY_SAMPLE_EVERY: u64 = 128;
/// Number of log2 histogram buckets: bucket `i` holds latencies in
/// `[2^i, 2^(i+1))` nanoseconds; the last bucket holds everything above.
pub const LATENCY_BUCKETS: usize = 40;

/// Live counters of one method (shared by every version of the module).
#[repr(align(64))]
#[derive(Debug)]
pub struct MethodCounters {
    /// Index of this method's cells in every thread's record.
    id: u32,
    /// Counts of threads that exited.
    totals: Arc<Totals>,
    sampled: AtomicU64,
    sampled_ns: AtomicU64,
    buckets: [AtomicU64; LATENCY_BUCKETS],
}

impl Default for MethodCounters {
    fn default() -> Self {
        let (id, totals) = counters::register();
        MethodCounters {
            id,
            totals,
            sampled: AtomicU64::new(0),
            sampled_ns: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Drop for MethodCounters {
    fn drop(&mut self) {
        counters::unregister(self.id);
    }
}

impl MethodCounters {
    /// Counts a call in thread record `thread` (the one the call's read
    /// section already holds: no second thread-local access); returns true
    /// when this call's latency should be sampled.
    #[inline(always)]
    pub(crate) fn begin_on(&self, thread: Option<&Reader>) -> bool {
        counters::count_call(thread, self.id, &self.totals, LATENCY_SAMPLE_EVERY as u32)
    }

    /// Counts a call on the calling thread (looks its record up: prefer
    /// [`begin_on`](Self::begin_on) inside a read section).
    #[allow(dead_code)]
    #[inline]
    pub(crate) fn begin(&self) -> bool {
        let g = crate::rcu::read();
        self.begin_on(g.thread())
    }

    /// Counts a failed call.
    #[cold]
    pub(crate) fn error(&self, panicked: bool) {
        counters::count_error(self.id, &self.totals, panicked);
    }

    /// Records one sampled latency.
    #[cold]
    pub(crate) fn record_latency(&self, ns: u64) {
        self.sampled.fetch_add(1, Relaxed);
        self.sampled_ns.fetch_add(ns, Relaxed);
        let bucket = (63 - ns.max(1).leading_zeros() as usize).min(LATENCY_BUCKETS - 1);
        self.buckets[bucket].fetch_add(1, Relaxed);
    }

    /// A consistent-enough copy of the counters (each count is exact for
    /// the calls that finished before it was read; the set is not a single
    /// atomic snapshot, which monitoring does not need).
    pub fn snapshot(&self) -> CounterSnapshot {
        let [calls, errors, panics] = counters::sum(self.id, &self.totals);
        CounterSnapshot {
            calls,
            errors,
            panics,
            latency_samples: self.sampled.load(Relaxed),
            latency_total_ns: self.sampled_ns.load(Relaxed),
            buckets: std::array::from_fn(|i| self.buckets[i].load(Relaxed)),
        }
    }
}

/// A copy of one method's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Calls started.
    pub calls: u64,
    /// Calls that failed (any status other than success).
    pub errors: u64,
    /// Calls in which the plugin panicked.
    pub panics: u64,
    /// Number of calls whose latency was sampled.
    pub latency_samples: u64,
    /// Sum of the sampled latencies, in nanoseconds.
    pub latency_total_ns: u64,
    /// Log2 latency histogram of the samples (see [`LATENCY_BUCKETS`]).
    pub buckets: [u64; LATENCY_BUCKETS],
}

impl CounterSnapshot {
    /// Mean sampled latency in nanoseconds (0 without samples).
    pub fn mean_ns(&self) -> u64 {
        self.latency_total_ns.checked_div(self.latency_samples).unwrap_or(0)
    }

    /// Upper bound of the bucket holding quantile `q` (0..=1), in nanoseconds
    /// (0 without samples). Accurate to a factor of two, like any log2 histogram.
    pub fn quantile_ns(&self, q: f64) -> u64 {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return (1u64 << (i + 1)) - 1;
            }
        }
        u64::MAX
    }
}

/// Renders method statistics in the Prometheus text exposition format.
pub fn prometheus(stats: &[crate::runtime::MethodStats]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let esc = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    let families = [
        ("hotmod_method_calls_total", "counter", "Calls started, over every version of the module."),
        ("hotmod_method_errors_total", "counter", "Calls that returned an error."),
        ("hotmod_method_panics_total", "counter", "Calls in which the plugin panicked."),
        ("hotmod_method_handles", "gauge", "Method handles held by callers."),
    ];
    for (name, kind, help) in families {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for m in stats {
            let v = match name {
                "hotmod_method_calls_total" => m.counters.calls,
                "hotmod_method_errors_total" => m.counters.errors,
                "hotmod_method_panics_total" => m.counters.panics,
                _ => m.handles as u64,
            };
            let _ = writeln!(
                s,
                "{name}{{module=\"{}\",version=\"{}\",method=\"{}\"}} {v}",
                esc(&m.module),
                esc(&m.version),
                esc(&m.method)
            );
        }
    }
    let name = "hotmod_method_latency_seconds";
    let _ = writeln!(
        s,
        "# HELP {name} Sampled call latency (one call in {LATENCY_SAMPLE_EVERY}).\n# TYPE {name} histogram"
    );
    for m in stats {
        let labels =
            format!("module=\"{}\",version=\"{}\",method=\"{}\"", esc(&m.module), esc(&m.version), esc(&m.method));
        let mut cumulative = 0;
        for (i, n) in m.counters.buckets.iter().enumerate().take(LATENCY_BUCKETS - 1) {
            cumulative += n;
            let le = (1u64 << (i + 1)) as f64 / 1e9;
            let _ = writeln!(s, "{name}_bucket{{{labels},le=\"{le:e}\"}} {cumulative}");
        }
        let _ = writeln!(s, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", m.counters.latency_samples);
        let _ = writeln!(s, "{name}_sum{{{labels}}} {:e}", m.counters.latency_total_ns as f64 / 1e9);
        let _ = writeln!(s, "{name}_count{{{labels}}} {}", m.counters.latency_samples);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_samples() {
        let c = MethodCounters::default();
        let n = 4 * LATENCY_SAMPLE_EVERY;
        let g = crate::rcu::read();
        let sampled = (0..n).filter(|_| c.begin_on(g.thread())).count();
        drop(g);
        assert_eq!(sampled as u64, n / LATENCY_SAMPLE_EVERY);
        c.error(false);
        c.error(true);
        c.record_latency(100);
        c.record_latency(1000);
        let s = c.snapshot();
        assert_eq!((s.calls, s.errors, s.panics), (n, 2, 1));
        assert_eq!(s.mean_ns(), 550);
        assert_eq!(s.quantile_ns(0.5), 127);
        assert_eq!(s.quantile_ns(1.0), 1023);
    }

    #[test]
    fn counters_are_exact_under_contention_including_exited_threads() {
        let c = std::sync::Arc::new(MethodCounters::default());
        // Threads that are still alive (parked) when the sum is taken, and
        // threads that exited before it.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let go_rx = std::sync::Arc::new(std::sync::Mutex::new(go_rx));
        let live: Vec<_> = (0..4)
            .map(|_| {
                let (c, done_tx, go_rx) = (c.clone(), done_tx.clone(), go_rx.clone());
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        c.begin();
                    }
                    c.error(true);
                    done_tx.send(()).unwrap();
                    let _ = go_rx.lock().unwrap().recv();
                })
            })
            .collect();
        let exited: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        c.begin();
                    }
                    c.error(false);
                })
            })
            .collect();
        exited.into_iter().for_each(|t| t.join().unwrap());
        for _ in 0..4 {
            done_rx.recv().unwrap();
        }
        let s = c.snapshot();
        assert_eq!((s.calls, s.errors, s.panics), (80_000, 8, 4));
        for _ in 0..4 {
            go_tx.send(()).unwrap();
        }
        live.into_iter().for_each(|t| t.join().unwrap());
        let s = c.snapshot();
        assert_eq!((s.calls, s.errors, s.panics), (80_000, 8, 4), "folded at thread exit, not lost or doubled");
    }

    #[test]
    fn a_recycled_counter_id_starts_from_zero() {
        let a = MethodCounters::default();
        for _ in 0..5 {
            a.begin();
        }
        drop(a);
        let b = MethodCounters::default();
        assert_eq!(b.snapshot().calls, 0);
    }
}
