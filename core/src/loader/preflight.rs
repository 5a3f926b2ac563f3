//! Preflight: map a plugin in a short-lived child process first, so that a
//! file that crashes the dynamic loader, or whose constructors crash, exit
//! or hang, kills the child and not the host.
//!
//! A threaded host cannot safely fork and run the dynamic loader in the
//! child (another thread may hold the loader's or the allocator's locks at
//! the fork), so the child is a fresh program, exec'd: the **helper**.
//!
//! # Protocol
//!
//! The helper is started as
//!
//! ```text
//! <helper> --preflight <fd>
//! ```
//!
//! with the sealed memfd holding the checked bytes inherited as descriptor
//! `<fd>` (a decimal number, 3 today), standard input and output on
//! `/dev/null`, and standard error on a private file whose first 4 KiB the
//! host quotes in its message. The helper maps `/proc/self/fd/<fd>` with
//! `dlopen(RTLD_NOW | RTLD_LOCAL)` (running the constructors), looks up
//! `hotmod_plugin_v1`, calls it, and exits with status **0** if all of that
//! worked. Any other exit status, a death by signal, or not exiting within
//! the timeout (the host then kills it) is a failure:
//! [`Status::PreflightFailed`] with the file, the helper and what happened.
//! [`child_main`] is that helper side, for an executable to call (the
//! out-of-process worker, `hotmod-worker`, implements `--preflight` with it).
//!
//! # Finding the helper
//!
//! [`helper_path`]: the explicit [`LoadOptions::preflight_helper`], else
//! the `HOTMOD_WORKER` environment variable, else `hotmod-worker` beside the
//! library or program this code is linked into, else in
//! `<prefix>/libexec/hotmod/` for the prefix above that library, then
//! `/usr/local/libexec/hotmod/` and `/usr/libexec/hotmod/`.
//!
//! # When
//!
//! [`LoadOptions::preflight`]: [`Preflight::Off`] for plain loads (the
//! default: a host loading a file it built pays nothing), and
//! [`Preflight::IfAvailable`] for watched directories (files dropped in by
//! someone else; skipped when no helper is installed). [`Preflight::On`]
//! refuses the load with [`Status::WorkerUnavailable`] when no helper can
//! be found or the platform has no memfd (preflight is Linux only).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Image, LoadOptions};
use crate::error::{Error, Result, Status};

/// Whether a file is mapped in a child process before the host maps it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Preflight {
    /// No preflight (the default for plain loads).
    #[default]
    Off,
    /// Preflight when a helper is found (the default for watched
    /// directories); load without it otherwise.
    IfAvailable,
    /// Preflight always; refuse the load if it cannot be done.
    On,
}

/// The default time a preflight child may take: 5 s.
pub const DEFAULT_PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(5);

/// The helper executable for preflight (see the [module docs](self)):
/// `explicit` if given, else `HOTMOD_WORKER`, else `hotmod-worker` beside
/// this library, else in a `libexec/hotmod` directory. `None` if none of
/// them is an executable file.
pub fn helper_path(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("HOTMOD_WORKER").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let mut candidates = Vec::new();
    if let Some(dir) = this_object_dir() {
        candidates.push(dir.join("hotmod-worker"));
        if let Some(prefix) = dir.parent() {
            candidates.push(prefix.join("libexec/hotmod/hotmod-worker"));
        }
    }
    candidates.push(PathBuf::from("/usr/local/libexec/hotmod/hotmod-worker"));
    candidates.push(PathBuf::from("/usr/libexec/hotmod/hotmod-worker"));
    candidates.into_iter().find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        p.is_file()
    }
}

/// The directory of the shared library (or program) this code is in.
fn this_object_dir() -> Option<PathBuf> {
    #[cfg(all(unix, not(target_os = "macos")))]
    {
        let mut info: libc::Dl_info = empty_dl_info();
        // SAFETY: dladdr only reads the address and fills `info`.
        let ok = unsafe { libc::dladdr(this_object_dir as fn() -> Option<PathBuf> as *const libc::c_void, &mut info) };
        if ok != 0 && !info.dli_fname.is_null() {
            // SAFETY: dli_fname is a NUL-terminated string owned by the loader.
            let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
            use std::os::unix::ffi::OsStrExt;
            let p = PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes()));
            let p = std::fs::canonicalize(&p).unwrap_or(p);
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                return Some(dir.to_path_buf());
            }
        }
    }
    std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf))
}

#[cfg(all(unix, not(target_os = "macos")))]
fn empty_dl_info() -> libc::Dl_info {
    libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    }
}

/// Runs the preflight `opts` asks for on `image`.
pub(crate) fn run(image: &Image, opts: &LoadOptions) -> Result<()> {
    if opts.preflight == Preflight::Off {
        return Ok(());
    }
    let required = opts.preflight == Preflight::On;
    let unavailable = |why: String| -> Result<()> {
        if required {
            Err(Error::new(Status::WorkerUnavailable, format!("cannot preflight '{}': {why}", image.path.display())))
        } else {
            Ok(())
        }
    };
    let Some(helper) = helper_path(opts.preflight_helper.as_deref()) else {
        return unavailable(
            "expected a helper (LoadOptions::preflight_helper, HOTMOD_WORKER, or hotmod-worker beside the library or in libexec/hotmod), found none".into(),
        );
    };
    #[cfg(target_os = "linux")]
    {
        let Some(memfd) = image.sealed.memfd() else {
            return unavailable("the bytes are not in a sealed memfd (memfd_create unavailable)".into());
        };
        spawn_and_wait(image, &helper, memfd, opts.preflight_timeout)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = helper;
        unavailable("preflight needs a sealed memfd, which this platform lacks".into())
    }
}

#[cfg(target_os = "linux")]
fn spawn_and_wait(image: &Image, helper: &Path, memfd: std::os::fd::BorrowedFd<'_>, timeout: Duration) -> Result<()> {
    use std::io::{Read, Seek};
    use std::os::fd::AsRawFd;
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::{Command, Stdio};

    const CHILD_FD: i32 = 3;
    let failed = |what: String| {
        Error::new(
            Status::PreflightFailed,
            format!(
                "preflight of '{}' failed: the helper '{}' mapping it in a child process {what}; nothing of it ran in this process",
                image.path.display(),
                helper.display()
            ),
        )
    };
    // The helper's standard error goes to a private in-memory file, which
    // never blocks the child and holds what it said for the message.
    let errfile = tempfile_memfd().map_err(|e| failed(format!("could not start ({e})")))?;
    // Descriptors 0-2 are replaced in the child before `pre_exec` runs:
    // keep the memfd above them.
    let owned_dup;
    let src = if memfd.as_raw_fd() <= 2 {
        owned_dup = memfd.try_clone_to_owned().map_err(|e| failed(format!("could not start ({e})")))?;
        owned_dup.as_raw_fd()
    } else {
        memfd.as_raw_fd()
    };
    let mut cmd = Command::new(helper);
    cmd.arg("--preflight")
        .arg(CHILD_FD.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(errfile.try_clone().map_err(|e| failed(format!("could not start ({e})")))?));
    // SAFETY: the closure runs in the child between fork and exec and only
    // makes async-signal-safe calls (dup2, fcntl) on descriptors it owns.
    unsafe {
        cmd.pre_exec(move || {
            if src == CHILD_FD {
                // dup2 onto itself keeps close-on-exec: clear it instead.
                if libc::fcntl(CHILD_FD, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(src, CHILD_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        Error::new(
            Status::WorkerUnavailable,
            format!("cannot preflight '{}': cannot start the helper '{}': {e}", image.path.display(), helper.display()),
        )
    })?;
    let start = Instant::now();
    let mut pause = Duration::from_micros(200);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(format!(
                    "did not finish within {timeout:?} and was killed (a constructor that hangs?)"
                )));
            }
            Ok(None) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(e) => return Err(failed(format!("could not be waited for ({e})"))),
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut said = String::new();
    let mut f = errfile;
    if f.rewind().is_ok() {
        let mut buf = Vec::new();
        let _ = f.take(4096).read_to_end(&mut buf);
        said = String::from_utf8_lossy(&buf).trim().replace(['\n', '\r'], " | ");
    }
    let said = if said.is_empty() { String::new() } else { format!("; it said: {said}") };
    let what = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig} ({})", signal_name(sig)),
        _ => format!("ended with {status}"),
    };
    Err(failed(format!("{what}{said}")))
}

#[cfg(target_os = "linux")]
fn tempfile_memfd() -> std::io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    // SAFETY: memfd_create with a static NUL-terminated name.
    let fd = unsafe { libc::memfd_create(c"hotmod-preflight-stderr".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor owned by nobody else.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

#[cfg(unix)]
fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGABRT => "SIGABRT",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGSYS => "SIGSYS",
        _ => "signal",
    }
}

/// The helper side of the protocol: maps the library held by descriptor
/// `fd` with `dlopen(RTLD_NOW | RTLD_LOCAL)`, looks up and calls its entry
/// symbol, and returns the exit status to end the process with (0: it
/// mapped; 2: `dlopen` failed; 3: no entry symbol; 4: the entry returned
/// NULL). A reason is printed on standard error. Crashes, exits and hangs
/// of the plugin's code happen in the calling process, which is the point:
/// call this only in a process started for it.
#[cfg(unix)]
pub fn child_main(fd: i32) -> i32 {
    use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
    let name = format!("/proc/self/fd/{fd}");
    // SAFETY: this process exists to run the plugin's constructors.
    let lib = match unsafe { Library::open(Some(&name), RTLD_NOW | RTLD_LOCAL) } {
        Ok(lib) => lib,
        Err(e) => {
            eprintln!("hotmod preflight: dlopen failed: {e}");
            return 2;
        }
    };
    let mut sym = hotmod_abi::HOTMOD_PLUGIN_ENTRY_SYMBOL.as_bytes().to_vec();
    sym.push(0);
    // SAFETY: the entry symbol's type per the ABI (checked to be a function
    // by the host before it started this process).
    let entry = match unsafe { lib.get::<hotmod_abi::hotmod_plugin_entry_fn>(&sym) } {
        Ok(e) => e,
        Err(e) => {
            eprintln!("hotmod preflight: no entry symbol: {e}");
            return 3;
        }
    };
    // SAFETY: calling the entry point, which takes no arguments.
    if unsafe { entry() }.is_null() {
        eprintln!("hotmod preflight: the entry symbol returned NULL");
        return 4;
    }
    0
}
