//! The GIL policy of plugin calls: hold the GIL, release it, or decide from
//! the method's measured latency.
//!
//! Releasing and retaking the GIL costs 30-40 ns on this machine when no
//! other thread wants it, and far more when one does (the releasing thread
//! then waits for its turn to run Python again): for a method that takes
//! 20 ns it is most of the cost of a call. Holding it for a long method
//! stops every other Python thread for that long. So the policy is a
//! choice, per runtime (`Runtime(gil=...)`) and per handle (`Method.gil`):
//!
//! * `"release"`: every call runs the plugin with the GIL released;
//! * `"hold"`: the GIL stays held; a host function written in Python runs on
//!   the calling thread, which already holds it, so it needs no hand-over;
//! * `"auto"` (the default): the handle times its calls (the first
//!   [`WARMUP`] calls, then one in [`SAMPLE_EVERY`], or every call while
//!   they are slow) and releases the GIL once the mean latency exceeds the
//!   threshold (`gil_threshold`, default [`DEFAULT_THRESHOLD_NS`]), holds it
//!   again once the mean falls under half the threshold. The first call is
//!   timed with the GIL released (a method never seen is assumed long).
//!
//! The state is read and written with relaxed loads and stores, never a
//! read-modify-write: the decision is taken with the GIL held, and a lost
//! update under contention only delays a sample.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::time::Instant;

use pyo3::prelude::*;

use crate::errors;

/// Default threshold of the automatic policy, in nanoseconds: 5 µs, where
/// a release costs under 1% of the call and holding the GIL keeps other
/// threads waiting for less than 1/1000 of CPython's switch interval.
pub const DEFAULT_THRESHOLD_NS: u64 = 5_000;
/// Calls timed one after another before sampling starts.
pub const WARMUP: u32 = 8;
/// Once warmed up, one fast call in this many is timed.
pub const SAMPLE_EVERY: u32 = 64;

/// A GIL policy.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Policy {
    /// Keep the GIL held while the plugin runs.
    Hold = 1,
    /// Release the GIL while the plugin runs.
    Release = 2,
    /// Decide from the measured latency.
    Auto = 3,
}

impl Policy {
    /// The policy named `name` ("auto", "release", "hold"), or
    /// `InvalidArgumentError` naming `what`.
    pub fn parse(py: Python<'_>, what: &str, name: &str) -> PyResult<Policy> {
        match name {
            "auto" => Ok(Policy::Auto),
            "release" => Ok(Policy::Release),
            "hold" => Ok(Policy::Hold),
            other => Err(errors::invalid_argument(
                py,
                format!("{what}: expected a GIL policy \"auto\", \"release\" or \"hold\", found {other:?}"),
            )),
        }
    }

    /// The policy's name.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Hold => "hold",
            Policy::Release => "release",
            Policy::Auto => "auto",
        }
    }

    fn from_u8(v: u8) -> Policy {
        match v {
            1 => Policy::Hold,
            2 => Policy::Release,
            _ => Policy::Auto,
        }
    }
}

/// A runtime's GIL settings: the policy of its handles unless they say
/// otherwise, and the threshold of the automatic policy.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Default policy.
    pub policy: Policy,
    /// Mean latency above which `auto` releases the GIL, in ns.
    pub threshold_ns: u64,
}

/// Something that runs a plugin call under a GIL policy.
pub trait Run {
    /// Runs `f` (the plugin call) with the GIL held or released.
    fn run<R: Send>(&self, py: Python<'_>, f: impl FnOnce() -> R + Send) -> R;
}

impl Run for Config {
    /// Runs `f` as a by-name call does: by name there is no handle to keep
    /// measurements in, so `auto` releases the GIL (the safe side for a
    /// method that may be long).
    #[inline(always)]
    fn run<R: Send>(&self, py: Python<'_>, f: impl FnOnce() -> R + Send) -> R {
        if self.policy == Policy::Hold {
            f()
        } else {
            py.detach(f)
        }
    }
}

/// The GIL state of one handle.
pub struct State {
    config: Config,
    policy: AtomicU8,
    release: AtomicBool,
    countdown: AtomicU32,
    samples: AtomicU32,
    mean_ns: AtomicU64,
}

impl State {
    /// A handle's state under `config`, with `policy` overriding its default.
    pub fn new(config: Config, policy: Option<Policy>) -> State {
        State {
            config,
            policy: AtomicU8::new(policy.unwrap_or(config.policy) as u8),
            release: AtomicBool::new(true),
            countdown: AtomicU32::new(0),
            samples: AtomicU32::new(0),
            mean_ns: AtomicU64::new(0),
        }
    }

    /// The handle's policy.
    pub fn policy(&self) -> Policy {
        Policy::from_u8(self.policy.load(Relaxed))
    }

    /// Sets the handle's policy (None: the runtime's). Measurements are kept.
    pub fn set_policy(&self, policy: Option<Policy>) {
        self.policy.store(policy.unwrap_or(self.config.policy) as u8, Relaxed);
    }

    /// Whether the next call releases the GIL.
    pub fn releases(&self) -> bool {
        match self.policy() {
            Policy::Hold => false,
            Policy::Release => true,
            Policy::Auto => self.release.load(Relaxed),
        }
    }

    /// The measured mean latency in ns, if any call was timed.
    pub fn mean_ns(&self) -> Option<u64> {
        (self.samples.load(Relaxed) > 0).then(|| self.mean_ns.load(Relaxed))
    }

    /// The threshold of the automatic policy, in ns.
    pub fn threshold_ns(&self) -> u64 {
        self.config.threshold_ns
    }

    /// Runs `f` timed, and records the time.
    #[inline(never)]
    fn timed<R: Send>(&self, py: Python<'_>, release: bool, f: impl FnOnce() -> R + Send) -> R {
        let run = || {
            let t0 = Instant::now();
            let r = f();
            (r, t0.elapsed())
        };
        let (r, elapsed) = if release { py.detach(run) } else { run() };
        self.record(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
        r
    }

    /// Takes one timed call of `ns` nanoseconds into the mean and decides.
    fn record(&self, ns: u64) {
        let n = self.samples.load(Relaxed);
        let old = self.mean_ns.load(Relaxed);
        // A plain mean over the warm-up, then an exponential moving average
        // (weight 1/8) so that the decision follows a method whose latency
        // changes (an upgrade, another input size).
        let mean = if n < WARMUP {
            ((u128::from(old) * u128::from(n) + u128::from(ns)) / (u128::from(n) + 1)) as u64
        } else {
            old - old / 8 + ns / 8
        };
        self.mean_ns.store(mean, Relaxed);
        self.samples.store(n.saturating_add(1), Relaxed);
        let threshold = self.config.threshold_ns;
        let release = if self.release.load(Relaxed) && n > 0 { mean > threshold / 2 } else { mean > threshold };
        self.release.store(release, Relaxed);
        // Timing a call costs ~20 ns: negligible beside a slow call, so slow
        // calls are all timed and a change of regime is seen at once.
        let every = if n + 1 < WARMUP || mean > threshold / 4 { 0 } else { SAMPLE_EVERY - 1 };
        self.countdown.store(every, Relaxed);
    }
}

impl Run for State {
    /// Runs `f` (the plugin call) under the handle's policy.
    #[inline(always)]
    fn run<R: Send>(&self, py: Python<'_>, f: impl FnOnce() -> R + Send) -> R {
        match self.policy.load(Relaxed) {
            1 => f(),
            2 => py.detach(f),
            _ => {
                let release = self.release.load(Relaxed);
                let countdown = self.countdown.load(Relaxed);
                if countdown != 0 {
                    self.countdown.store(countdown - 1, Relaxed);
                    if release {
                        py.detach(f)
                    } else {
                        f()
                    }
                } else {
                    self.timed(py, release, f)
                }
            }
        }
    }
}
