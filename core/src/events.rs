//! Lifecycle events and plugin log lines, delivered to one host callback.
//!
//! The handler runs synchronously on the thread that caused the event: the
//! thread calling load/upgrade/unload, the directory watcher's thread, or —
//! for the final `Unloaded` of a version that outlived its drain window —
//! the thread that released the last reference to it (or the runtime's
//! reclaimer thread). A handler that calls the runtime's load, upgrade,
//! unload or host-function registration while the operation that emitted
//! the event is still running on its thread gets [`Status::Busy`] (3003)
//! instead of a deadlock; do such work after that operation returns, or
//! from another thread.
//!
//! [`Status::Busy`]: crate::Status::Busy

use std::sync::Arc;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum EventKind {
    /// A plugin file was mapped and its entry symbol found.
    Loaded = 1,
    /// Its descriptor and dependencies were validated.
    Validated = 2,
    /// The version was initialised and now serves calls.
    Activated = 3,
    /// The version was replaced or removed; calls in flight finish on it.
    Draining = 4,
    /// The version ran its last call and was destroyed.
    Unloaded = 5,
    /// An upgrade (or load) was refused or failed; the previous state stands.
    UpgradeFailed = 6,
    /// The version was destroyed but its code stays mapped, because the
    /// plugin did not declare itself safe to unload.
    KeptMapped = 7,
    /// A log line written by a plugin through the host API.
    Log = 8,
    /// A watched directory or manifest reported a problem.
    WatchError = 9,
}

/// One event.
#[derive(Clone, Debug)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// Module name (empty if not known yet, for example for a corrupt file).
    pub module: String,
    /// Module version (empty if not known).
    pub version: String,
    /// Plugin file involved, if any.
    pub path: String,
    /// Human-readable details; for `UpgradeFailed` the reason, for `Log` the line.
    pub message: String,
    /// Status code for failures (0 otherwise), or the level for `Log`.
    pub code: i32,
}

/// The host's event handler.
pub type EventHandler = Arc<dyn Fn(&Event) + Send + Sync>;
