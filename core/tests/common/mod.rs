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
