//! Out-of-process isolation: the same plugin file in a worker process.
//!
//! A [`Worker`] is a `hotmod-worker` process serving one plugin. The host
//! talks to it through two channels: control messages over a Unix socket
//! ([`wire`]) and calls through lanes of a shared-memory region
//! ([`channel`]), so a payload is written once and never pushed through the
//! socket. A method of a plugin in a worker is `(proxy_call, ProxyMethod)`,
//! an entry of the same shape as an in-process method, so the call path
//! needs no branch for it.
//!
//! Files, one concern each: [`channel`] (the shared-memory lanes),
//! [`wire`] (control messages), [`spawn`] (finding and starting the
//! worker), [`supervisor`] (calls, crash detection, restart, events),
//! [`sandbox`] (what the worker applies to itself before mapping the
//! plugin), [`serve`] (the worker's side).
//!
//! Linux only for now; elsewhere [`Worker::spawn`] answers
//! `WORKER_UNAVAILABLE` and the worker binary exits at once.

#[cfg(target_os = "linux")]
pub mod channel;
#[cfg(target_os = "linux")]
pub mod sandbox;
#[cfg(target_os = "linux")]
pub mod serve;
#[cfg(target_os = "linux")]
pub mod spawn;
#[cfg(target_os = "linux")]
pub mod supervisor;
#[cfg(target_os = "linux")]
pub mod wire;

#[cfg(target_os = "linux")]
pub use channel::{HostServices, NoServices};
#[cfg(target_os = "linux")]
pub use serve::worker_main;
#[cfg(target_os = "linux")]
pub use supervisor::{
    proxy_call, proxy_status, LaneBuffer, PluginDescription, ProxyMethod, RestartPolicy, Worker, WorkerEvent,
    WorkerEventHandler, WorkerEventKind, WorkerOptions, WorkerState, DEFAULT_CALL_TIMEOUT,
};
#[cfg(target_os = "linux")]
pub use wire::SandboxSpec;

#[cfg(not(target_os = "linux"))]
mod unsupported {
    use crate::error::{Error, Result, Status};

    /// Options for [`Worker::spawn`] (out-of-process mode is Linux only for now).
    #[derive(Clone, Debug, Default)]
    pub struct WorkerOptions {}

    /// A worker process (unavailable on this platform).
    pub struct Worker {
        _private: (),
    }

    impl Worker {
        /// Always `WORKER_UNAVAILABLE` on this platform.
        pub fn spawn(_opts: WorkerOptions) -> Result<Worker> {
            Err(Error::new(
                Status::WorkerUnavailable,
                "out-of-process mode needs Linux (memfd, futex, pidfd); this platform has no worker yet",
            ))
        }
    }

    /// The worker's entry point: exits at once on this platform.
    pub fn worker_main(_args: &[String]) -> i32 {
        eprintln!("hotmod-worker: out-of-process mode is not available on this platform yet");
        1
    }
}
#[cfg(not(target_os = "linux"))]
pub use unsupported::{worker_main, Worker, WorkerOptions};
