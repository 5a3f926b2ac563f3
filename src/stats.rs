//! Statistics snapshots and Prometheus text.

use std::ffi::{c_char, CString};

use hotmod_core::{MethodStats, Output, Status};

use crate::call::hotmod_buffer;
use crate::ffi::{cstring, nth, out_arg, write_out, BoxHandle};
use crate::runtime::hotmod_runtime;

/// A snapshot of every method's counters, taken by `hotmod_runtime_stats`.
/// Immutable; strings in it stay valid until it is freed.
pub struct hotmod_stats {
    _private: [u8; 0],
}

/// Each method's statistics with its module, version and method names
/// as C strings.
pub(crate) struct StatsBox(Vec<(MethodStats, [CString; 3])>);

impl BoxHandle for hotmod_stats {
    type Inner = StatsBox;
}

/// One method's statistics. Strings are owned by the `hotmod_stats`.
#[repr(C)]
pub struct hotmod_method_stats {
    /// Module name.
    pub module: *const c_char,
    /// The module's active version.
    pub version: *const c_char,
    /// Method name.
    pub method: *const c_char,
    /// Calls started (over every version of the module).
    pub calls: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Calls in which the plugin panicked.
    pub panics: u64,
    /// Method handles callers hold.
    pub handles: u64,
    /// Calls whose latency was sampled (one call in 128 of each method).
    pub latency_samples: u64,
    /// Mean sampled latency, nanoseconds.
    pub latency_mean_ns: u64,
    /// Median sampled latency (upper bound of its log2 bucket), nanoseconds.
    pub latency_p50_ns: u64,
    /// 99th percentile sampled latency (bucket upper bound), nanoseconds.
    pub latency_p99_ns: u64,
}

/// Takes a snapshot of every method's counters; `*out` owns it.
///
/// # Safety
/// `rt` from `hotmod_runtime_new`; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn hotmod_runtime_stats(rt: *const hotmod_runtime, out: *mut *mut hotmod_stats) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let rt = unsafe { hotmod_runtime::get(rt, "rt (hotmod_runtime *)")? };
        out_arg(out, "out (hotmod_stats **)")?;
        let items = rt
            .stats()
            .into_iter()
            .map(|s| {
                let names = [cstring(&s.module), cstring(&s.version), cstring(&s.method)];
                (s, names)
            })
            .collect();
        // SAFETY: checked non-NULL.
        unsafe { write_out(out, hotmod_stats::into_c(StatsBox(items))) };
        Ok(())
    })
}

/// Number of entries in a snapshot.
///
/// # Safety
/// `s` a snapshot; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn hotmod_stats_count(s: *const hotmod_stats, out: *mut usize) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let s = unsafe { hotmod_stats::get(s, "s (hotmod_stats *)")? };
        out_arg(out, "out (size_t *)")?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(out, s.0.len()) };
        Ok(())
    })
}

/// Copies entry `index` of a snapshot into `*out`.
///
/// # Safety
/// `s` a snapshot; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn hotmod_stats_get(
    s: *const hotmod_stats,
    index: usize,
    out: *mut hotmod_method_stats,
) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let s = unsafe { hotmod_stats::get(s, "s (hotmod_stats *)")? };
        out_arg(out, "out (hotmod_method_stats *)")?;
        let (m, [module, version, method]) = nth(&s.0, index, "stats")?;
        let c = &m.counters;
        let v = hotmod_method_stats {
            module: module.as_ptr(),
            version: version.as_ptr(),
            method: method.as_ptr(),
            calls: c.calls,
            errors: c.errors,
            panics: c.panics,
            handles: m.handles as u64,
            latency_samples: c.latency_samples,
            latency_mean_ns: c.mean_ns(),
            latency_p50_ns: c.quantile_ns(0.5),
            latency_p99_ns: c.quantile_ns(0.99),
        };
        // SAFETY: checked non-NULL.
        unsafe { write_out(out, v) };
        Ok(())
    })
}

/// Frees a snapshot. NULL is a no-op.
///
/// # Safety
/// `s` must be NULL or a snapshot from this library, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn hotmod_stats_free(s: *mut hotmod_stats) {
    ffi_value!((), {
        // SAFETY: per the contract.
        unsafe { hotmod_stats::free(s) }
    })
}

/// The statistics in Prometheus text exposition format, as a buffer
/// (`*out` owns it; not NUL-terminated: use its length).
///
/// # Safety
/// `rt` from `hotmod_runtime_new`; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn hotmod_runtime_stats_prometheus(
    rt: *const hotmod_runtime,
    out: *mut *mut hotmod_buffer,
) -> Status {
    ffi_status!({
        // SAFETY: per the contract.
        let rt = unsafe { hotmod_runtime::get(rt, "rt (hotmod_runtime *)")? };
        out_arg(out, "out (hotmod_buffer **)")?;
        let text = rt.stats_prometheus().into_bytes();
        // SAFETY: checked non-NULL.
        unsafe { write_out(out, hotmod_buffer::into_c(Output::from_vec(text))) };
        Ok(())
    })
}
