//! Opening a file to read it: once, without blocking, and checked on the
//! descriptor that is then read.
//!
//! A path is looked up exactly once, by `open(2)` with
//! `O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY`: a FIFO or a device opens
//! without waiting for a writer or a terminal, and is then refused from
//! `fstat` of that descriptor, as is anything but a regular file. The mode
//! checks (readable, not world-writable) and the size cap read the same
//! `fstat` result, and the bytes are read from the same descriptor, so a
//! symbolic link flipped between two files, or a file swapped for a FIFO,
//! can never get a different file checked than the one read.
//!
//! The directories are checked along the path the kernel actually resolved
//! for that descriptor (`/proc/self/fd/N` on Linux, the canonical path
//! elsewhere), as well as along the path as given: every one of them must
//! not be writable by anyone unless it has the sticky bit (like `/tmp`), as
//! OpenSSH and sudo require of their configuration files. A directory
//! anyone may write to lets anyone swap the file after the check.
//! [`LoadOptions::allow_world_writable`](super::LoadOptions) opts out of
//! both the file and the directory checks.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, Status};

/// What kind of file is opened: it decides the words and the status codes
/// of the messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A plugin library.
    Plugin,
    /// A manifest.
    Manifest,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Plugin => "plugin file",
            Kind::Manifest => "manifest",
        }
    }

    fn cap_option(self) -> &'static str {
        match self {
            Kind::Plugin => "LoadOptions::max_file_size",
            Kind::Manifest => "manifest::MAX_MANIFEST_SIZE",
        }
    }

    /// The status of a failure of kind `plugin_status`: manifests report
    /// everything but unsafe modes and sizes as a bad manifest.
    fn status(self, plugin_status: Status) -> Status {
        match (self, plugin_status) {
            (Kind::Manifest, Status::UnsafeFile | Status::FileTooLarge | Status::Io) => plugin_status,
            (Kind::Manifest, _) => Status::BadManifest,
            (Kind::Plugin, s) => s,
        }
    }
}

/// A file opened and checked, ready to be read.
#[derive(Debug)]
pub(crate) struct Opened {
    /// The open descriptor: every check was made on it.
    pub file: File,
    /// The absolute path, as given (for messages).
    pub path: PathBuf,
    /// The size `fstat` reported.
    pub size: u64,
}

/// How to check a file.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Checks {
    /// What the file is.
    pub kind: Kind,
    /// Accept world-writable files and directories.
    pub allow_world_writable: bool,
    /// The largest size accepted, in bytes.
    pub max_size: u64,
}

/// Whether an I/O error means the process ran out of file descriptors.
pub(crate) fn is_out_of_descriptors(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

/// The error for running out of descriptors while doing `what` with `path`.
pub(crate) fn out_of_descriptors(what: &str, path: &Path, e: &std::io::Error) -> Error {
    Error::new(
        Status::Io,
        format!(
            "out of file descriptors: cannot {what} '{}' ({e}); close descriptors or raise the limit (ulimit -n)",
            path.display()
        ),
    )
}

/// Opens `path` once and checks the descriptor: a regular file, readable,
/// not writable by anyone (nor any directory on its resolved path), no
/// larger than the cap.
pub(crate) fn open_checked(path: &Path, checks: Checks) -> Result<Opened> {
    let kind = checks.kind;
    let path = super::absolute(path).map_err(|e| Error::new(kind.status(e.status()), e.message()))?;
    let shown = path.display();
    let noun = kind.noun();
    let file = open_nonblocking(&path).map_err(|e| {
        if is_out_of_descriptors(&e) {
            return out_of_descriptors("open", &path, &e);
        }
        let (status, msg) = match e.kind() {
            ErrorKind::NotFound => {
                (Status::FileMissing, format!("{noun} not found: expected a file at '{shown}', found nothing there"))
            }
            ErrorKind::PermissionDenied => {
                (Status::PermissionDenied, format!("permission denied: cannot open {noun} '{shown}' ({e})"))
            }
            _ if is_no_device(&e) => (
                Status::NotALibrary,
                format!("expected a regular file at '{shown}', found a socket or a device without a driver ({e})"),
            ),
            _ => (Status::Io, format!("cannot open {noun} '{shown}': {e}")),
        };
        Error::new(kind.status(status), msg)
    })?;
    let meta = file
        .metadata()
        .map_err(|e| Error::new(kind.status(Status::Io), format!("cannot fstat {noun} '{shown}': {e}")))?;
    if !meta.is_file() {
        return Err(Error::new(
            kind.status(Status::NotALibrary),
            format!("expected a regular file at '{shown}', found {}", file_type_name(&meta)),
        ));
    }
    check_mode(&path, &meta, checks)?;
    if !checks.allow_world_writable {
        check_directories(&path, &file, kind)?;
    }
    let size = meta.len();
    if size > checks.max_size {
        return Err(too_large(&path, kind, format!("{size} bytes"), checks.max_size));
    }
    Ok(Opened { file, path, size })
}

/// The error for a file over its cap.
pub(crate) fn too_large(path: &Path, kind: Kind, found: String, cap: u64) -> Error {
    Error::new(
        Status::FileTooLarge,
        format!(
            "{} '{}' is too large: expected at most {cap} bytes ({}), found {found}",
            kind.noun(),
            path.display(),
            kind.cap_option()
        ),
    )
}

/// Reads the whole of an opened file, never more than `max_size` bytes
/// even if the file grows while it is read.
pub(crate) fn read_capped(opened: &mut Opened, checks: Checks) -> Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(opened.size.min(checks.max_size) as usize);
    let limit = checks.max_size.saturating_add(1);
    (&mut opened.file).take(limit).read_to_end(&mut bytes).map_err(|e| {
        Error::new(
            checks.kind.status(Status::Io),
            format!("cannot read {} '{}': {e}", checks.kind.noun(), opened.path.display()),
        )
    })?;
    if bytes.len() as u64 > checks.max_size {
        return Err(too_large(&opened.path, checks.kind, "more while it was being read".into(), checks.max_size));
    }
    Ok(bytes)
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // std adds O_CLOEXEC. O_NONBLOCK: opening a FIFO must not wait for a
    // writer (it is refused right after, from fstat).
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    File::open(path)
}

fn is_no_device(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(e.raw_os_error(), Some(libc::ENXIO) | Some(libc::ENODEV) | Some(libc::EOPNOTSUPP))
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

fn file_type_name(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "a special file"
}

#[cfg(unix)]
fn check_mode(path: &Path, meta: &std::fs::Metadata, checks: Checks) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode();
    let noun = checks.kind.noun();
    // Checked from the mode bits as well as by open(2), so that a file nobody
    // may read is refused even for a privileged host (root bypasses open's check).
    if mode & 0o444 == 0 {
        return Err(Error::new(
            checks.kind.status(Status::PermissionDenied),
            format!(
                "permission denied: expected a readable {noun}, found '{}' with mode {:03o} (no read permission)",
                path.display(),
                mode & 0o777
            ),
        ));
    }
    if !checks.allow_world_writable && mode & 0o002 != 0 {
        return Err(Error::new(
            Status::UnsafeFile,
            format!(
                "refusing '{}': it is writable by anyone (mode {:03o}); fix its mode or allow world-writable files",
                path.display(),
                mode & 0o777
            ),
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_path: &Path, _meta: &std::fs::Metadata, _checks: Checks) -> Result<()> {
    Ok(())
}

/// The path the kernel resolved for an open descriptor.
#[cfg(target_os = "linux")]
fn resolved_path(file: &File, given: &Path) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    let p = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
    // A file removed since it was opened: its directories are those it had.
    let bytes = p.as_os_str().as_encoded_bytes();
    let p = match bytes.strip_suffix(b" (deleted)") {
        // SAFETY: a prefix of an OsStr's bytes ending just before ASCII text
        // is itself valid OsStr bytes.
        Some(head) => PathBuf::from(unsafe { std::ffi::OsStr::from_encoded_bytes_unchecked(head) }),
        None => p,
    };
    if p.is_absolute() {
        Some(p)
    } else {
        std::fs::canonicalize(given).ok()
    }
}

#[cfg(not(target_os = "linux"))]
fn resolved_path(_file: &File, given: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(given).ok()
}

/// Refuses a file when a directory on its resolved path, or on the path as
/// given, is writable by anyone and not sticky.
#[cfg(unix)]
fn check_directories(path: &Path, file: &File, kind: Kind) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let resolved = resolved_path(file, path);
    let mut seen = std::collections::HashSet::new();
    let chains = resolved.iter().map(PathBuf::as_path).chain(std::iter::once(path));
    for p in chains {
        for dir in p.ancestors().skip(1) {
            if dir.as_os_str().is_empty() || !seen.insert(dir.to_path_buf()) {
                continue;
            }
            // A directory we may not stat is one we cannot judge; open(2)
            // already went through it.
            let Ok(meta) = std::fs::metadata(dir) else { continue };
            let mode = meta.permissions().mode();
            if mode & 0o002 != 0 && mode & 0o1000 == 0 {
                let via = match &resolved {
                    Some(r) if r != path => format!(" (resolved to '{}')", r.display()),
                    _ => String::new(),
                };
                return Err(Error::new(
                    Status::UnsafeFile,
                    format!(
                        "refusing {} '{}'{via}: its directory '{}' is writable by anyone (mode {:03o}) without the sticky bit; fix its mode or allow world-writable files",
                        kind.noun(),
                        path.display(),
                        dir.display(),
                        mode & 0o777
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_directories(_path: &Path, _file: &File, _kind: Kind) -> Result<()> {
    Ok(())
}
