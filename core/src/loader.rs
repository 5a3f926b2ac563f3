//! Loading a plugin file: read the bytes once, check them, map exactly those
//! bytes, and find the entry symbol.
//!
//! The file is read into memory, its mode and SHA-256 are checked, and only
//! then is code mapped — and it is mapped from a private, sealed copy of the
//! bytes that were checked (a memfd on Linux, a private temporary file
//! elsewhere). So `dlopen` constructors never run before the checks, a file
//! replaced on disk never changes what runs, and the same path can be loaded
//! again beside an older build during an upgrade. Libraries are opened
//! `RTLD_NOW | RTLD_LOCAL`, so plugins cannot interpose on each other.

use std::fmt::Write as _;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use hotmod_abi as abi;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result, Status};

/// Options for loading a plugin.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Refuse the file unless its SHA-256 is this, checked before any plugin
    /// code runs.
    pub expected_sha256: Option<[u8; 32]>,
    /// Configuration bytes handed to the plugin's `init` hook.
    pub config: Vec<u8>,
    /// Accept files (or directories) that anyone may write to.
    pub allow_world_writable: bool,
}

impl LoadOptions {
    /// Sets the expected SHA-256 from 64 hexadecimal digits.
    pub fn expect_sha256_hex(&mut self, hex: &str) -> Result<()> {
        self.expected_sha256 = Some(parse_sha256_hex(hex)?);
        Ok(())
    }
}

/// The path that names a file or directory however it is spelled: its
/// canonical form (symlinks and `..` resolved) when it exists, else the
/// absolute path, else the path as given. Keys per-file state (manifests,
/// watched directories) so that two spellings of one path share it.
pub fn identity_path(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).or_else(|_| std::path::absolute(path)).unwrap_or_else(|_| path.into())
}

/// Parses 64 hexadecimal digits into a SHA-256 digest.
pub fn parse_sha256_hex(hex: &str) -> Result<[u8; 32]> {
    let hex = hex.trim();
    let bad = || {
        Error::new(
            Status::InvalidArgument,
            format!("expected a SHA-256 as 64 hexadecimal digits, found \"{hex}\" ({} characters)", hex.len()),
        )
    };
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// Formats a digest as lowercase hexadecimal.
pub fn sha256_hex(d: &[u8; 32]) -> String {
    let mut s = String::with_capacity(64);
    for b in d {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The checked bytes of a plugin file.
pub(crate) struct Image {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub sha256: [u8; 32],
}

/// Makes `path` absolute (against the current directory), so every message
/// and every later comparison names one file unambiguously.
pub(crate) fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| {
        Error::new(Status::InvalidArgument, format!("expected a plugin path, found '{}': {e}", path.display()))
    })
}

/// Reads and checks a plugin file.
pub(crate) fn read_image(path: &Path, opts: &LoadOptions) -> Result<Image> {
    let path = absolute(path)?;
    let shown = path.display();
    let meta = std::fs::metadata(&path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => Error::new(
            Status::FileMissing,
            format!("plugin file not found: expected a file at '{shown}', found nothing there"),
        ),
        ErrorKind::PermissionDenied => {
            Error::new(Status::PermissionDenied, format!("permission denied: cannot look up '{shown}' ({e})"))
        }
        _ => Error::new(Status::Io, format!("cannot stat '{shown}': {e}")),
    })?;
    if !meta.is_file() {
        return Err(Error::new(
            Status::NotALibrary,
            format!("expected a regular file at '{shown}', found a directory or special file"),
        ));
    }
    check_mode(&path, &meta, opts)?;
    let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
        ErrorKind::PermissionDenied => {
            Error::new(Status::PermissionDenied, format!("permission denied: cannot read '{shown}' ({e})"))
        }
        ErrorKind::NotFound => {
            Error::new(Status::FileMissing, format!("plugin file not found: '{shown}' disappeared while being read"))
        }
        _ => Error::new(Status::Io, format!("cannot read '{shown}': {e}")),
    })?;
    check_complete(&path, &bytes)?;
    let sha256: [u8; 32] = Sha256::digest(&bytes).into();
    if let Some(expected) = opts.expected_sha256 {
        if expected != sha256 {
            return Err(Error::new(
                Status::HashMismatch,
                format!(
                    "SHA-256 mismatch for '{shown}': expected {}, found {}; no code from it was run",
                    sha256_hex(&expected),
                    sha256_hex(&sha256)
                ),
            ));
        }
    }
    Ok(Image { path, bytes, sha256 })
}

/// Refuses an ELF file whose program headers reach past its end — a build
/// truncated, or still being written. The dynamic loader maps such a file
/// anyway and the process dies of `SIGBUS` when it touches the missing
/// pages, so this must be checked before anything is mapped. Files of
/// other formats pass (their loaders check sizes themselves).
pub(crate) fn check_complete(path: &Path, bytes: &[u8]) -> Result<()> {
    if !bytes.starts_with(b"\x7fELF") {
        return Ok(());
    }
    let wide = bytes.get(4) == Some(&2);
    let big = bytes.get(5) == Some(&2);
    let field = |at: usize, size: usize| -> Option<u64> {
        let b = bytes.get(at..at.checked_add(size)?)?;
        let mut v = 0u64;
        for i in 0..size {
            let byte = if big { b[i] } else { b[size - 1 - i] };
            v = (v << 8) | u64::from(byte);
        }
        Some(v)
    };
    let len = bytes.len() as u64;
    let truncated = |needed: u64| {
        Error::new(
            Status::NotALibrary,
            format!(
                "'{}' is a truncated shared library: its headers need {needed} bytes, found {len}; is it still being written?",
                path.display()
            ),
        )
    };
    // (e_phoff, e_phentsize, e_phnum) and, per program header, (p_offset, p_filesz).
    let (table, entry_size, count, offset_at, filesz_at, word) =
        if wide { (0x20, 0x36, 0x38, 8, 32, 8) } else { (0x1c, 0x2a, 0x2c, 4, 16, 4) };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (field(table, word), field(entry_size, 2), field(count, 2))
    else {
        return Err(truncated(count as u64 + 2));
    };
    let table_end = phoff.saturating_add(phentsize.saturating_mul(phnum));
    if table_end > len {
        return Err(truncated(table_end));
    }
    for i in 0..phnum {
        let at = (phoff + i * phentsize) as usize;
        let (Some(offset), Some(filesz)) = (field(at + offset_at, word), field(at + filesz_at, word)) else {
            return Err(truncated(table_end));
        };
        let end = offset.saturating_add(filesz);
        if filesz > 0 && end > len {
            return Err(truncated(end));
        }
    }
    Ok(())
}

#[cfg(unix)]
fn check_mode(path: &Path, meta: &std::fs::Metadata, opts: &LoadOptions) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode();
    // Checked from the mode bits as well as by open(2), so that a file nobody
    // may read is refused even for a privileged host (root bypasses open's check).
    if mode & 0o444 == 0 {
        return Err(Error::new(
            Status::PermissionDenied,
            format!(
                "permission denied: expected a readable plugin file, found '{}' with mode {:03o} (no read permission)",
                path.display(),
                mode & 0o777
            ),
        ));
    }
    if opts.allow_world_writable {
        return Ok(());
    }
    if mode & 0o002 != 0 {
        return Err(Error::new(
            Status::UnsafeFile,
            format!(
                "refusing '{}': it is writable by anyone (mode {:03o}); fix its mode or allow world-writable files",
                path.display(),
                mode & 0o777
            ),
        ));
    }
    if let Some(dir) = path.parent() {
        if let Ok(dm) = std::fs::metadata(dir) {
            let dmode = dm.permissions().mode();
            // A world-writable directory without the sticky bit lets anyone
            // swap the file under us.
            if dmode & 0o002 != 0 && dmode & 0o1000 == 0 {
                return Err(Error::new(
                    Status::UnsafeFile,
                    format!(
                        "refusing '{}': its directory '{}' is writable by anyone (mode {:03o})",
                        path.display(),
                        dir.display(),
                        dmode & 0o777
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(path: &Path, meta: &std::fs::Metadata, _opts: &LoadOptions) -> Result<()> {
    let _ = (path, meta);
    Ok(())
}

/// A mapped plugin library and what keeps its private copy alive.
pub(crate) struct Mapped {
    lib: Option<libloading::Library>,
    /// The memfd (or private file) the library was mapped from. Kept open as
    /// long as the library is mapped so its `/proc/self/fd/N` name can never
    /// be reused for another plugin while this one is loaded (the dynamic
    /// loader would hand back this library for that name).
    _backing: Backing,
}

/// Held only for its `Drop` (closing the memfd, deleting the private file).
#[allow(dead_code)]
enum Backing {
    #[cfg(target_os = "linux")]
    Memfd(std::os::fd::OwnedFd),
    File(tempfile::TempPath),
}

impl Mapped {
    /// Looks up the entry symbol and returns the descriptor pointer.
    pub fn descriptor(&self, path: &Path) -> Result<*const abi::hotmod_plugin_descriptor> {
        let lib = self.lib.as_ref().expect("library is mapped until unmap");
        let mut sym = abi::HOTMOD_PLUGIN_ENTRY_SYMBOL.as_bytes().to_vec();
        sym.push(0);
        // SAFETY: the symbol is looked up with the ABI's declared type; a
        // plugin exporting it promises that type.
        let entry = unsafe { lib.get::<abi::hotmod_plugin_entry_fn>(&sym) }.map_err(|_| {
            Error::new(
                Status::EntrySymbolMissing,
                format!(
                    "'{}' is a shared library but not a hotmod plugin: expected it to export '{}', found no such symbol",
                    path.display(),
                    abi::HOTMOD_PLUGIN_ENTRY_SYMBOL
                ),
            )
        })?;
        // SAFETY: calling the plugin's entry point, which takes no arguments
        // and returns a pointer to static data.
        Ok(unsafe { entry() })
    }

    /// Unmaps the library (runs its destructors).
    pub fn unmap(mut self) {
        if let Some(lib) = self.lib.take() {
            drop(lib.close());
        }
    }

    /// Keeps the library mapped for the rest of the process: its code may
    /// still be referenced by thread-local destructors or unique symbols.
    pub fn keep_mapped(self) {
        std::mem::forget(self);
    }
}

/// Maps the checked bytes of `image`.
pub(crate) fn map(image: &Image) -> Result<Mapped> {
    #[cfg(target_os = "linux")]
    {
        if let Some(m) = map_memfd(image)? {
            return Ok(m);
        }
    }
    map_private_file(image)
}

fn dl_error(image: &Image, shown_as: &str, e: libloading::Error) -> Error {
    let msg = e.to_string().replace(shown_as, &image.path.display().to_string());
    Error::new(
        Status::NotALibrary,
        format!(
            "'{}' is not a loadable shared library for this platform ({} bytes): {msg}",
            image.path.display(),
            image.bytes.len()
        ),
    )
}

#[cfg(unix)]
fn open_local(path: &str) -> std::result::Result<libloading::Library, libloading::Error> {
    use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
    // SAFETY: opening a library runs its constructors; the caller has
    // checked the bytes (hash, mode) as far as the host asked.
    unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }.map(Into::into)
}

#[cfg(not(unix))]
fn open_local(path: &str) -> std::result::Result<libloading::Library, libloading::Error> {
    // SAFETY: as above.
    unsafe { libloading::Library::new(path) }
}

#[cfg(target_os = "linux")]
fn map_memfd(image: &Image) -> Result<Option<Mapped>> {
    use std::ffi::CString;
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    let base = image.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let name = CString::new(format!("hotmod:{base}").replace('\0', "")).expect("no NUL left");
    // SAFETY: memfd_create with a valid NUL-terminated name.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Ok(None); // kernel without memfd: fall back to a private file
    }
    // SAFETY: fd was just returned by memfd_create and is owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut file = std::fs::File::from(owned);
    file.write_all(&image.bytes)
        .map_err(|e| Error::new(Status::Io, format!("cannot copy '{}' into memory: {e}", image.path.display())))?;
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on a valid memfd.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Ok(None);
    }
    let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
    if !Path::new(&proc_path).exists() {
        return Ok(None); // no /proc: fall back to a private file
    }
    // The dynamic loader recognises libraries by the name they were opened
    // with. `/proc/self/fd/N` names are reused as descriptors are, and a
    // library may stay resident after dlclose (for example while a thread
    // still holds one of its TLS destructors), so a reused name could hand
    // back an old library. Open through a symlink with a name used once.
    let dir = tempfile::Builder::new()
        .prefix("hotmod-load-")
        .tempdir()
        .map_err(|e| Error::new(Status::Io, format!("cannot create a private load directory: {e}")))?;
    static LOADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = LOADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let link = dir.path().join(format!("{}-{n}-{base}", std::process::id()));
    std::os::unix::fs::symlink(&proc_path, &link)
        .map_err(|e| Error::new(Status::Io, format!("cannot link '{}' for loading: {e}", image.path.display())))?;
    let shown = link.to_string_lossy().into_owned();
    let lib = open_local(&shown).map_err(|e| dl_error(image, &shown, e))?;
    Ok(Some(Mapped { lib: Some(lib), _backing: Backing::Memfd(OwnedFd::from(file)) }))
}

fn map_private_file(image: &Image) -> Result<Mapped> {
    use std::io::Write;
    let io = |e: std::io::Error| {
        Error::new(Status::Io, format!("cannot make a private copy of '{}': {e}", image.path.display()))
    };
    let ext = image.path.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    // A unique name per load: the dynamic loader must never mistake two
    // builds for one library.
    let mut tmp = tempfile::Builder::new().prefix("hotmod-").suffix(&ext).tempfile().map_err(io)?;
    tmp.write_all(&image.bytes).map_err(io)?;
    tmp.flush().map_err(io)?;
    let path = tmp.into_temp_path();
    let shown = path.to_string_lossy().into_owned();
    let lib = open_local(&shown).map_err(|e| dl_error(image, &shown, e))?;
    Ok(Mapped { lib: Some(lib), _backing: Backing::File(path) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_round_trips() {
        let d: [u8; 32] = Sha256::digest(b"hotmod").into();
        assert_eq!(parse_sha256_hex(&sha256_hex(&d)).unwrap(), d);
        assert_eq!(parse_sha256_hex("abc").unwrap_err().status(), Status::InvalidArgument);
        assert_eq!(parse_sha256_hex(&"zz".repeat(32)).unwrap_err().status(), Status::InvalidArgument);
    }

    #[test]
    fn missing_file_is_1001_and_named() {
        let e = read_image(Path::new("/nonexistent/p.so"), &LoadOptions::default()).err().unwrap();
        assert_eq!(e.status(), Status::FileMissing);
        assert!(e.message().contains("/nonexistent/p.so"));
    }

    #[cfg(unix)]
    #[test]
    fn unreadable_and_world_writable_files_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.so");
        std::fs::write(&p, b"x").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
        assert_eq!(read_image(&p, &LoadOptions::default()).err().unwrap().status(), Status::PermissionDenied);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(read_image(&p, &LoadOptions::default()).err().unwrap().status(), Status::UnsafeFile);
        let opts = LoadOptions { allow_world_writable: true, ..Default::default() };
        assert!(read_image(&p, &opts).is_ok());
    }

    #[test]
    fn hash_mismatch_is_refused_before_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.so");
        std::fs::write(&p, b"not a library").unwrap();
        let opts = LoadOptions { expected_sha256: Some([0; 32]), ..Default::default() };
        let e = read_image(&p, &opts).err().unwrap();
        assert_eq!(e.status(), Status::HashMismatch);
        assert!(e.message().contains("expected 0000"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn truncated_elf_files_are_refused_before_mapping() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let p = Path::new("/x/libp.so");
        assert!(check_complete(p, &exe).is_ok());
        for cut in [5, 40, 100] {
            let e = check_complete(p, &exe[..cut]).unwrap_err();
            assert_eq!(e.status(), Status::NotALibrary);
            assert!(e.message().contains("/x/libp.so") && e.message().contains("truncated"), "{e:?}");
        }
        // The shortest prefix accepted holds every segment, and not a byte
        // less is accepted (what follows the segments, such as debug
        // information and section headers, is never mapped).
        let (mut lo, mut hi) = (0, exe.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if check_complete(p, &exe[..mid]).is_ok() {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        assert!(lo > 4096, "the segments hold the code: {lo}");
        let e = check_complete(p, &exe[..lo - 1]).unwrap_err();
        assert!(e.message().contains(&format!("need {lo} bytes")), "{e:?}");
        assert!(check_complete(p, b"not ELF at all").is_ok(), "left to the dynamic loader");
    }

    #[test]
    fn garbage_is_not_a_library() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.so");
        std::fs::write(&p, b"definitely not ELF").unwrap();
        let img = read_image(&p, &LoadOptions::default()).unwrap();
        let e = map(&img).err().unwrap();
        assert_eq!(e.status(), Status::NotALibrary);
        assert!(e.message().contains(&*p.display().to_string()), "{e:?}");
        assert!(!e.message().contains("/proc/self/fd"), "{e:?}");
    }
}
