//! Out-of-process isolation: the same plugin file in a worker process.
//!
//! Files, one concern each: [`channel`] (the shared-memory lanes calls
//! travel through), [`wire`] (control messages over the socket).
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

#[cfg(target_os = "linux")]
pub mod channel;
#[cfg(target_os = "linux")]
pub mod wire;
