//! `hotmod-worker`: the process an out-of-process plugin runs in.
//!
//! Started by the hotmod runtime (never by hand) with its control socket
//! and shared region as inherited descriptors; everything it does lives in
//! the core (`hotmod_core::isolation::serve`), so the worker maps and calls
//! plugins with the same loader, validation and call path as in-process
//! mode.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(hotmod_core::isolation::worker_main(&args));
}
