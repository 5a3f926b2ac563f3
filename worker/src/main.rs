//! `hotmod-worker`: the process an out-of-process plugin runs in, and the
//! helper of the loader's preflight.
//!
//! Started by the hotmod runtime (never by hand) with its control socket
//! and shared region as inherited descriptors; everything it does lives in
//! the core (`hotmod_core::isolation::serve`), so the worker maps and calls
//! plugins with the same loader, validation and call path as in-process
//! mode. Run as `hotmod-worker --preflight <fd>`, it maps the sealed copy
//! of a plugin inherited as descriptor `<fd>` and exits 0 if the dynamic
//! loader and the plugin's constructors survived it
//! (`hotmod_core::loader::preflight`).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--preflight") {
        let code = match args.get(1).and_then(|a| a.parse::<i32>().ok()) {
            Some(fd) if fd >= 0 => preflight(fd),
            _ => {
                eprintln!("hotmod-worker: expected `--preflight <descriptor number>`, found {:?}", &args[1..]);
                64 // EX_USAGE
            }
        };
        std::process::exit(code);
    }
    std::process::exit(hotmod_core::isolation::worker_main(&args));
}

#[cfg(unix)]
fn preflight(fd: i32) -> i32 {
    hotmod_core::loader::preflight::child_main(fd)
}

#[cfg(not(unix))]
fn preflight(_fd: i32) -> i32 {
    eprintln!("hotmod-worker: --preflight is not available on this platform");
    64
}
