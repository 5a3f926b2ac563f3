//! Per-method metrics kept on the call path without a shared write.
//!
//! Calls, errors and panics are counted per thread (see
//! `crate::rcu::counters`): the call path adds one to a cell in its own
//! thread's record with a plain load and store, and [`MethodCounters::snapshot`]
//! sums the cells of every thread, plus the totals of threads that exited.
//! Latency is measured on a sample of calls (one in [`LATENCY_SAMPLE_EVERY`]
//! per method and thread, chosen from the thread's own call count of the method): reading the clock twice
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

    /// Counts a call on the calling thread (looks its record up; the call
    /// path uses [`begin_on`](Self::begin_on) inside its read section).
    #[cfg(test)]
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

/// Upper bounds (inclusive, in nanoseconds) of the latency histogram's
/// buckets in the Prometheus exposition: powers of two from 128 ns to about
/// 1 s, a few per decade, so a method costs ten bucket series, not forty.
/// Each is the upper bound of one of the log2 buckets kept internally, so
/// the exposition loses no sample to rounding.
pub const PROMETHEUS_BUCKETS_NS: [u64; 9] =
    [1 << 7, 1 << 10, 1 << 12, 1 << 14, 1 << 17, 1 << 20, 1 << 24, 1 << 27, 1 << 30];

/// Renders method statistics in the Prometheus text exposition format.
///
/// The metric list (also in the README):
/// - `hotmod_method_calls_total{module,method}` counter: calls started;
/// - `hotmod_method_errors_total{module,method}` counter: calls that failed;
/// - `hotmod_method_panics_total{module,method}` counter: calls in which
///   the plugin panicked;
/// - `hotmod_method_handles{module,method}` gauge: handles callers hold;
/// - `hotmod_method_latency_seconds{module,method}` histogram: sampled call
///   latency (one call in [`LATENCY_SAMPLE_EVERY`]), buckets
///   [`PROMETHEUS_BUCKETS_NS`]; only for methods with samples;
/// - `hotmod_module_info{module,version}` gauge, always 1: which version of
///   each module is active.
///
/// Method series carry no version label: counters are summed over every
/// version of a module, so an upgrade continues a series instead of
/// starting a new one at zero; join with `hotmod_module_info` for the version.
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
            let _ = writeln!(s, "{name}{{module=\"{}\",method=\"{}\"}} {v}", esc(&m.module), esc(&m.method));
        }
    }
    let name = "hotmod_method_latency_seconds";
    let _ = writeln!(
        s,
        "# HELP {name} Sampled call latency (one call in {LATENCY_SAMPLE_EVERY}).\n# TYPE {name} histogram"
    );
    for m in stats.iter().filter(|m| m.counters.latency_samples > 0) {
        let labels = format!("module=\"{}\",method=\"{}\"", esc(&m.module), esc(&m.method));
        for le in PROMETHEUS_BUCKETS_NS {
            // Internal bucket i holds [2^i, 2^(i+1)): all of it is below le
            // exactly when 2^(i+1) <= le (a sample of exactly le ns is
            // counted from the next bound on).
            let upto = le.trailing_zeros() as usize;
            let cumulative: u64 = m.counters.buckets.iter().take(upto.min(LATENCY_BUCKETS)).sum();
            let _ = writeln!(s, "{name}_bucket{{{labels},le=\"{:e}\"}} {cumulative}", le as f64 / 1e9);
        }
        let _ = writeln!(s, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", m.counters.latency_samples);
        let _ = writeln!(s, "{name}_sum{{{labels}}} {:e}", m.counters.latency_total_ns as f64 / 1e9);
        let _ = writeln!(s, "{name}_count{{{labels}}} {}", m.counters.latency_samples);
    }
    let name = "hotmod_module_info";
    let _ = writeln!(s, "# HELP {name} The active version of each loaded module (always 1).\n# TYPE {name} gauge");
    let mut seen = std::collections::BTreeSet::new();
    for m in stats {
        if seen.insert((m.module.as_str(), m.version.as_str())) {
            let _ = writeln!(s, "{name}{{module=\"{}\",version=\"{}\"}} 1", esc(&m.module), esc(&m.version));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_method_is_sampled_on_its_first_call_on_a_thread() {
        let (a, b) = (MethodCounters::default(), MethodCounters::default());
        let g = crate::rcu::read();
        let a_sampled = (0..5).filter(|_| a.begin_on(g.thread())).count();
        // The thread's calls of another method do not shift b's phase.
        let b_sampled = (0..3).filter(|_| b.begin_on(g.thread())).count();
        drop(g);
        assert_eq!((a_sampled, b_sampled), (1, 1));
    }

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

    fn stats_of(module: &str, version: &str, method: &str, latencies: &[u64]) -> crate::runtime::MethodStats {
        let mut buckets = [0u64; LATENCY_BUCKETS];
        for &ns in latencies {
            buckets[(63 - ns.max(1).leading_zeros() as usize).min(LATENCY_BUCKETS - 1)] += 1;
        }
        crate::runtime::MethodStats {
            module: module.into(),
            version: version.into(),
            method: method.into(),
            present: true,
            handles: 0,
            counters: CounterSnapshot {
                calls: 7,
                errors: 1,
                panics: 0,
                latency_samples: latencies.len() as u64,
                latency_total_ns: latencies.iter().sum(),
                buckets,
            },
        }
    }

    #[test]
    fn exposition_is_continuous_across_versions_and_cheap_for_idle_methods() {
        let text = prometheus(&[
            stats_of("m", "2.0.0", "busy", &[100, 128, 129, 5_000, 2_000_000_000]),
            stats_of("m", "2.0.0", "idle", &[]),
        ]);
        // No version label on method series; the version is its own gauge.
        assert!(text.contains("hotmod_method_calls_total{module=\"m\",method=\"busy\"} 7\n"), "{text}");
        assert!(!text.contains("hotmod_method_calls_total{module=\"m\",version"), "{text}");
        assert_eq!(text.matches("hotmod_module_info{module=\"m\",version=\"2.0.0\"} 1").count(), 1, "{text}");
        // Ten bucket series for a method with samples, none for an idle one.
        assert_eq!(text.matches("hotmod_method_latency_seconds_bucket{module=\"m\",method=\"busy\"").count(), 10);
        assert!(!text.contains("method=\"idle\",le="), "{text}");
        // Cumulative. Internal buckets are [2^i, 2^(i+1)), so a sample of
        // exactly 128 ns counts from the next bound on: only 100 ns is in
        // le=128ns; 128, 129 ns and 5 us are in le=16.4us; 2 s only in +Inf.
        let bucket = |le: &str| {
            let key = format!("hotmod_method_latency_seconds_bucket{{module=\"m\",method=\"busy\",le=\"{le}\"}} ");
            let at = text.find(&key).unwrap_or_else(|| panic!("{key} in {text}")) + key.len();
            text[at..].split('\n').next().unwrap().parse::<u64>().unwrap()
        };
        assert_eq!(bucket("1.28e-7"), 1);
        assert_eq!(bucket("1.6384e-5"), 4);
        assert_eq!(bucket("1.073741824e0"), 4);
        assert_eq!(bucket("+Inf"), 5);
        // Label values are escaped.
        let odd = prometheus(&[stats_of("a\"b\\c", "1.0.0", "x\ny", &[])]);
        assert!(odd.contains("module=\"a\\\"b\\\\c\",method=\"x\\ny\""), "{odd}");
    }
}
