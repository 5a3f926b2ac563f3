//! Per-method metrics kept on the call path without a shared lock.
//!
//! Each method slot owns one cache-line-aligned [`MethodCounters`]: relaxed
//! atomic counters, no mutex. Latency is measured on a sample of calls (one
//! in [`LATENCY_SAMPLE_EVERY`], chosen from the call counter the call path
//! already increments): reading the clock twice costs more than all the
//! rest of a call's overhead (about 60 ns against 3 to 4 on the machines
//! measured), so the sample is kept small.
//! Sampled latencies go into a log2 histogram from which quantiles are read.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// One call in this many has its latency measured.
pub const LATENCY_SAMPLE_EVERY: u64 = 128;
/// Number of log2 histogram buckets: bucket `i` holds latencies in
/// `[2^i, 2^(i+1))` nanoseconds; the last bucket holds everything above.
pub const LATENCY_BUCKETS: usize = 40;

/// Live counters of one method (shared by every version of the module).
#[repr(align(64))]
#[derive(Debug)]
pub struct MethodCounters {
    calls: AtomicU64,
    errors: AtomicU64,
    panics: AtomicU64,
    sampled: AtomicU64,
    sampled_ns: AtomicU64,
    buckets: [AtomicU64; LATENCY_BUCKETS],
}

impl Default for MethodCounters {
    fn default() -> Self {
        MethodCounters {
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            panics: AtomicU64::new(0),
            sampled: AtomicU64::new(0),
            sampled_ns: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl MethodCounters {
    /// Counts a call; returns true when this call's latency should be sampled.
    #[inline(always)]
    pub fn begin(&self) -> bool {
        self.calls.fetch_add(1, Relaxed).is_multiple_of(LATENCY_SAMPLE_EVERY)
    }

    /// Counts a failed call.
    #[cold]
    pub fn error(&self, panicked: bool) {
        self.errors.fetch_add(1, Relaxed);
        if panicked {
            self.panics.fetch_add(1, Relaxed);
        }
    }

    /// Records one sampled latency.
    #[cold]
    pub fn record_latency(&self, ns: u64) {
        self.sampled.fetch_add(1, Relaxed);
        self.sampled_ns.fetch_add(ns, Relaxed);
        let bucket = (63 - ns.max(1).leading_zeros() as usize).min(LATENCY_BUCKETS - 1);
        self.buckets[bucket].fetch_add(1, Relaxed);
    }

    /// A consistent-enough copy of the counters (each read is atomic; the set
    /// is not a single atomic snapshot, which monitoring does not need).
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            calls: self.calls.load(Relaxed),
            errors: self.errors.load(Relaxed),
            panics: self.panics.load(Relaxed),
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
        let sampled = (0..n).filter(|_| c.begin()).count();
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
    fn counters_are_exact_under_contention() {
        let c = std::sync::Arc::new(MethodCounters::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        c.begin();
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(c.snapshot().calls, 80_000);
    }
}
