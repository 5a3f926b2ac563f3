//! Finding the `hotmod-worker` executable and starting it.
//!
//! The worker is found, in this order:
//!
//! 1. the path the host gave explicitly ([`super::WorkerOptions::worker_path`]);
//! 2. the environment variable `HOTMOD_WORKER`;
//! 3. beside the file that contains this core (`libhotmod.so`, a Python or
//!    Node extension, or a program linking the core statically), found with
//!    `dladdr` on one of the core's functions — and, for a program in a
//!    Cargo `deps/` directory (tests, benches), the directory above it;
//! 4. the install prefix's `libexec/hotmod/` (`<libdir>/../libexec/hotmod/`,
//!    and the directory `HOTMOD_LIBEXEC_DIR` named at build time).
//!
//! The worker is started with `exec` from one long-lived spawner thread,
//! never forked bare from a threaded host: between fork and exec the child
//! only makes async-signal-safe calls (`prctl(PR_SET_PDEATHSIG)`, `getppid`,
//! `fcntl`, `dup2`, `close_range`). `PR_SET_PDEATHSIG` fires when the
//! *thread* that forked the worker exits, which is why that thread lives as
//! long as the process: a host thread that spawned a worker and then ended
//! would otherwise take the worker with it.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use crate::error::{Error, Result, Status};

/// Name of the worker executable.
pub const WORKER_NAME: &str = "hotmod-worker";
/// Descriptor number of the control socket in the worker.
pub const WORKER_SOCKET_FD: i32 = 3;
/// Descriptor number of the shared region in the worker.
pub const WORKER_REGION_FD: i32 = 4;

/// The file (shared library or executable) that contains this code.
fn containing_file() -> Option<PathBuf> {
    // SAFETY: dladdr only reads the loader's tables; info is plain data.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: as above; any address inside a mapped object is valid input.
    let found = unsafe { libc::dladdr(containing_file as *const libc::c_void, &mut info) } != 0;
    if !found || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dladdr returns a NUL-terminated name owned by the loader.
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) }.to_string_lossy().into_owned();
    let exe = std::fs::read_link("/proc/self/exe").ok();
    let p = PathBuf::from(&name);
    // The main program's name may be relative or bare (argv[0]).
    if name.is_empty() || !p.is_absolute() {
        return exe;
    }
    Some(std::fs::canonicalize(&p).unwrap_or(p))
}

/// The places searched, in order (explicit and environment first).
pub fn candidates(explicit: Option<&Path>) -> Vec<PathBuf> {
    let mut c = Vec::new();
    if let Some(p) = explicit {
        c.push(p.to_path_buf());
        return c;
    }
    if let Some(p) = std::env::var_os("HOTMOD_WORKER") {
        c.push(PathBuf::from(p));
        return c;
    }
    if let Some(dir) = containing_file().as_deref().and_then(Path::parent) {
        c.push(dir.join(WORKER_NAME));
        if dir.file_name().is_some_and(|n| n == "deps") {
            if let Some(up) = dir.parent() {
                c.push(up.join(WORKER_NAME));
            }
        }
        if let Some(prefix) = dir.parent() {
            c.push(prefix.join("libexec/hotmod").join(WORKER_NAME));
        }
    }
    if let Some(d) = option_env!("HOTMOD_LIBEXEC_DIR") {
        c.push(Path::new(d).join(WORKER_NAME));
    }
    c
}

/// Finds the worker executable in the documented order.
pub fn find_worker(explicit: Option<&Path>) -> Result<PathBuf> {
    let c = candidates(explicit);
    if let Some(p) = c.iter().find(|p| is_executable(p)) {
        return Ok(p.clone());
    }
    let looked: Vec<String> = c.iter().map(|p| p.display().to_string()).collect();
    Err(Error::new(
        Status::WorkerUnavailable,
        format!(
            "expected the {WORKER_NAME} executable for out-of-process mode, found none; looked at: {} \
             (set HOTMOD_WORKER or the worker path option)",
            if looked.is_empty() { "nothing".to_string() } else { looked.join(", ") }
        ),
    ))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A started worker process.
pub struct Child {
    /// Its process id.
    pub pid: u32,
    /// A pidfd for it: readable once it exited; signals sent through it
    /// can never reach a recycled pid.
    pub pidfd: OwnedFd,
    /// The host's end of the control socket.
    pub sock: OwnedFd,
}

type Job = Box<dyn FnOnce() + Send>;

/// The spawner thread's queue (the thread runs for the life of the process).
fn spawner() -> Result<mpsc::Sender<Job>> {
    static TX: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let tx = TX.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let started = std::thread::Builder::new().name("hotmod-spawner".into()).spawn(move || {
            for job in rx {
                job();
            }
        });
        if started.is_err() {
            // The receiver is dropped with the closure: every send fails and
            // spawn reports WorkerUnavailable.
        }
        Mutex::new(tx)
    });
    Ok(tx.lock().unwrap_or_else(|e| e.into_inner()).clone())
}

fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscall; the pid is our unreaped child, so it cannot
    // have been recycled.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Starts the worker at `path`, handing it the control socket as fd 3 and
/// the shared region as fd 4; every other descriptor is closed on exec.
pub fn spawn(path: &Path, region: BorrowedFd<'_>) -> Result<Child> {
    let (host_end, worker_end) = super::wire::socketpair()?;
    let region_raw = region.as_raw_fd();
    let sock_raw = worker_end.as_raw_fd();
    let path = path.to_path_buf();
    let (tx, rx) = mpsc::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(start(&path, sock_raw, region_raw));
    });
    let unavailable =
        |detail: &str| Error::new(Status::WorkerUnavailable, format!("cannot start the worker: {detail}"));
    spawner()?.send(job).map_err(|_| unavailable("the spawner thread is not running"))?;
    let started = rx.recv().map_err(|_| unavailable("the spawner thread stopped"))?;
    // The worker has its copies now (or never will).
    drop(worker_end);
    let pid = started?;
    let pidfd = match pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) => {
            // SAFETY: plain syscalls on our own unreaped child.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
                libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
            }
            return Err(unavailable(&format!("pidfd_open failed ({e}); Linux 5.3 or later is needed")));
        }
    };
    Ok(Child { pid, pidfd, sock: host_end })
}

/// Runs on the spawner thread.
fn start(path: &Path, sock: i32, region: i32) -> Result<u32> {
    // SAFETY: plain syscall.
    let parent = unsafe { libc::getpid() };
    let mut cmd = Command::new(path);
    cmd.arg("--socket-fd")
        .arg(WORKER_SOCKET_FD.to_string())
        .arg("--region-fd")
        .arg(WORKER_REGION_FD.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    // SAFETY: the closure runs between fork and exec and makes only
    // async-signal-safe calls (prctl, getppid, fcntl, dup2, close_range,
    // close), touching no lock and allocating nothing.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
            // The host may have died before the prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(127);
            }
            // Move both descriptors above the target numbers first, so that
            // one cannot overwrite the other.
            let s = libc::fcntl(sock, libc::F_DUPFD_CLOEXEC, 16);
            let r = libc::fcntl(region, libc::F_DUPFD_CLOEXEC, 16);
            if s < 0 || r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // dup2 clears close-on-exec on the new numbers.
            if libc::dup2(s, WORKER_SOCKET_FD) < 0 || libc::dup2(r, WORKER_REGION_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(s);
            libc::close(r);
            // Anything else the host left inheritable (another thread's
            // descriptor opened without O_CLOEXEC) stays out of the worker.
            // CLOSE_RANGE_CLOEXEC rather than closing, so std's own exec
            // error pipe keeps working; ignored on kernels before 5.11.
            libc::syscall(libc::SYS_close_range, 5u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
            Ok(())
        });
    }
    match cmd.spawn() {
        // The Child value is dropped without waiting: the supervisor reaps
        // the process through its pidfd.
        Ok(child) => Ok(child.id()),
        Err(e) => {
            Err(Error::new(Status::WorkerUnavailable, format!("cannot start the worker '{}': {e}", path.display())))
        }
    }
}

/// Sends SIGKILL through a pidfd (harmless if the process already exited).
pub fn kill(pidfd: BorrowedFd<'_>) {
    // SAFETY: plain syscall; a pidfd can never reach a recycled pid.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
}

/// How a worker ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Exit::Code(c) => write!(f, "exited with code {c}"),
            Exit::Signal(s) => write!(f, "was killed by signal {s} ({})", signal_name(s)),
        }
    }
}

/// The usual name of a signal.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGSYS => "SIGSYS",
        libc::SIGPIPE => "SIGPIPE",
        _ => "signal",
    }
}

/// Reaps an exited worker through its pidfd (no zombie is left). Blocks
/// until it has exited.
pub fn reap(pidfd: BorrowedFd<'_>) -> Option<Exit> {
    // SAFETY: zeroed siginfo filled by waitid.
    let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: P_PIDFD (3) waits for exactly the process behind the pidfd.
        let r = unsafe { libc::waitid(3 as libc::idtype_t, pidfd.as_raw_fd() as libc::id_t, &mut si, libc::WEXITED) };
        if r == 0 {
            break;
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return None;
        }
    }
    // SAFETY: waitid filled a SIGCHLD siginfo.
    let status = unsafe { si.si_status() };
    Some(if si.si_code == libc::CLD_EXITED { Exit::Code(status) } else { Exit::Signal(status) })
}

/// A sealed memfd holding a copy of `path`'s bytes, for hosts that have
/// no checked image yet. The file is opened and read with the loader's own
/// checks (one open, a regular file only, mode and directories, the size
/// cap), so a FIFO, a device or a world-writable file is refused here as it
/// is for an in-process load. (The loader's checked, sealed memfd replaces
/// this once out-of-process loads go through the runtime.)
pub fn sealed_copy(path: &Path) -> Result<OwnedFd> {
    let checks = crate::loader::LoadOptions::default().checks();
    let mut opened = crate::loader::open_checked(path, checks)?;
    let bytes = crate::loader::read_capped(&mut opened, checks)?;
    sealed_memfd(&bytes, "hotmod-plugin")
}

/// A memfd holding `bytes`, sealed against any change.
pub fn sealed_memfd(bytes: &[u8], name: &str) -> Result<OwnedFd> {
    let cname = std::ffi::CString::new(name).unwrap_or_default();
    // SAFETY: plain syscall with a NUL-terminated name.
    let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(Error::new(Status::Io, format!("memfd_create: {}", std::io::Error::last_os_error())));
    }
    // SAFETY: a new descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut file = std::fs::File::from(fd);
    std::io::Write::write_all(&mut file, bytes).map_err(|e| Error::new(Status::Io, format!("writing a memfd: {e}")))?;
    let fd = OwnedFd::from(file);
    let seals = libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: plain syscall on our descriptor.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(Error::new(Status::Io, format!("sealing a memfd: {}", std::io::Error::last_os_error())));
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_and_environment_come_first() {
        let c = candidates(Some(Path::new("/x/hotmod-worker")));
        assert_eq!(c, vec![PathBuf::from("/x/hotmod-worker")]);
        let e = find_worker(Some(Path::new("/nonexistent/hotmod-worker"))).unwrap_err();
        assert_eq!(e.status(), Status::WorkerUnavailable);
        assert!(e.message().contains("/nonexistent/hotmod-worker"), "{e:?}");
    }

    #[test]
    fn beside_the_containing_file_then_libexec() {
        if std::env::var_os("HOTMOD_WORKER").is_some() {
            return;
        }
        let c = candidates(None);
        let me = containing_file().unwrap();
        assert_eq!(c[0], me.parent().unwrap().join(WORKER_NAME));
        assert!(c.iter().any(|p| p.ends_with("libexec/hotmod/hotmod-worker")), "{c:?}");
    }

    #[test]
    fn sealed_copies_cannot_change() {
        let fd = sealed_memfd(b"abc", "t").unwrap();
        let f = std::fs::File::from(fd);
        assert!(std::io::Write::write_all(&mut &f, b"x").is_err());
        assert_eq!(f.metadata().unwrap().len(), 3);
    }
}
