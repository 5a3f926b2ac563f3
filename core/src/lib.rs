//! hotmod core: the runtime for hot-swappable native plugin modules.
//!
//! This crate holds all of hotmod's logic and exports no C symbols; the C
//! API (`libhotmod.so`), the Python binding and the Node binding are thin
//! layers over it. Start with [`Runtime`]:
//!
//! ```no_run
//! use hotmod_core::{LoadOptions, Runtime};
//! let rt = Runtime::new();
//! rt.load("plugins/libtext.so", &LoadOptions::default())?;
//! let upper = rt.method("text", "upper")?; // resolve once…
//! let out = upper.call(b"hello")?;           // …call at function-pointer speed
//! assert_eq!(&*out, b"HELLO");
//! # Ok::<(), hotmod_core::Error>(())
//! ```
//!
//! Files, one concern each: [`loader`] (open, check, map; one folder), `descriptor`
//! (validate the plugin's declaration), `registry` (modules, versions,
//! method slots), [`runtime`] (load, upgrade, unload), `call` (the call
//! path), `host` (services offered to plugins), [`metrics`], [`events`],
//! [`deps`] (dependency graph), [`manifest`] (a TOML file of plugins),
//! [`watch`] (a watched plugin directory).
#![warn(missing_docs)]

pub use hotmod_abi as abi;

mod call;
pub mod deps;
mod descriptor;
pub mod error;
pub mod events;
mod host;
pub mod isolation;
pub mod loader;
pub mod manifest;
pub mod metrics;
mod rcu;
mod registry;
pub mod runtime;
pub mod watch;

pub use call::{MethodHandle, Output, DEFAULT_OUTPUT_OFFER, INLINE_OUTPUT};
pub use descriptor::{signature_hash, DependencyDecl, MethodDecl, PluginInfo};
pub use error::{Error, Result, Status};
pub use events::{Event, EventHandler, EventKind};
pub use host::{HostFunction, OutputWriter};
pub use loader::{parse_sha256_hex, sha256_hex, ElfFacts, LoadOptions, Preflight};
pub use manifest::{load_manifest, Isolation, Manifest, ManifestEntry, ManifestReport, ManifestState};
pub use metrics::CounterSnapshot;
pub use registry::State;
pub use runtime::{
    DependencyInfo, MethodInfo, MethodStats, Module, ModuleInfo, Runtime, RuntimeOptions, UpgradeOptions,
    DEFAULT_MAX_KEPT_MAPPED, DEFAULT_MAX_OUTPUT_SIZE,
};
pub use watch::{watch_dir, WatchOptions, Watcher};
