//! Shared helpers of the core's integration tests: where the built plugins
//! are, private copies of them, and a polling wait for asynchronous effects.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Directory of the plugins built by `make plugins` (HOTMOD_PLUGIN_DIR, or
/// build/plugins beside the workspace).
pub fn plugin_dir() -> PathBuf {
    let dir = std::env::var_os("HOTMOD_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../build/plugins")));
    assert!(
        dir.join("libchecksum.so").exists(),
        "expected the test plugins in {}, found none: run `make plugins` first",
        dir.display()
    );
    dir
}

/// [`plugin_dir`], after checking that each of the named plugin files was
/// built.
pub fn plugin_dir_with(names: &[&str]) -> PathBuf {
    let dir = plugin_dir();
    for p in names {
        assert!(
            dir.join(p).is_file(),
            "expected the test plugin {p} in '{}', found none: run `make plugins` first (or set HOTMOD_PLUGIN_DIR)",
            dir.display()
        );
    }
    dir
}

/// A private directory (mode 0700) with copies of the named plugin files
/// of `src`.
pub fn plugins_copied(src: &Path, names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for n in names {
        std::fs::copy(src.join(n), dir.path().join(n)).unwrap();
    }
    dir
}

/// Path of one built plugin, e.g. `plugin("checksum-v2")`.
pub fn plugin(name: &str) -> PathBuf {
    plugin_dir().join(format!("lib{name}.so"))
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// Registers host function `name` (which plugins call to report an event,
/// such as a destroy hook or a violation) as a counter of its calls, and
/// returns the count.
pub fn counting_host_function(rt: &hotmod_core::Runtime, name: &str) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let c = count.clone();
    rt.register_host_function(
        name,
        std::sync::Arc::new(move |_: &[u8]| {
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(Vec::new())
        }),
    )
    .unwrap();
    count
}

/// What the lifecycle fixture reports through the host functions it calls:
/// the destroy hook of each version (by id), calls that found their version
/// already destroyed, and the ids handed out to versions' init.
pub struct LifecycleOracle {
    /// Destroy-hook calls, by version id.
    pub destroyed: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<u64, u32>>>,
    /// Calls that ran on a destroyed version (must stay 0).
    pub violations: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The next id `new_id` hands out (ids start at 1).
    pub next_id: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Registers the host functions the lifecycle fixture calls (`new_id`,
/// `destroyed`, `violation`) and returns what they record.
pub fn lifecycle_oracle(rt: &hotmod_core::Runtime) -> LifecycleOracle {
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    use std::sync::Arc;
    let mut o = LifecycleOracle {
        destroyed: Arc::default(),
        violations: Arc::new(AtomicU64::new(0)),
        next_id: Arc::new(AtomicU64::new(1)),
    };
    let d = o.destroyed.clone();
    rt.register_host_function(
        "destroyed",
        Arc::new(move |id: &[u8]| {
            *d.lock().unwrap().entry(u64::from_le_bytes(id.try_into().unwrap())).or_default() += 1;
            Ok(Vec::new())
        }),
    )
    .unwrap();
    let ids = o.next_id.clone();
    rt.register_host_function("new_id", Arc::new(move |_: &[u8]| Ok(ids.fetch_add(1, SeqCst).to_le_bytes().to_vec())))
        .unwrap();
    o.violations = counting_host_function(rt, "violation");
    o
}
