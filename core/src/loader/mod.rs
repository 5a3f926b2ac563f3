//! Loading a plugin file: open it once, check what was opened, copy exactly
//! those bytes into sealed storage, check them, and map them.
//!
//! One concern per file:
//! - `open`: the path is opened once, without blocking; the descriptor is
//!   checked (`fstat`: a regular file, its mode, its size against a cap) and
//!   every directory on the path it resolved to; the bytes are read from it;
//! - `map`: the bytes go into a sealed memfd (in the kernel, no temporary
//!   directory) or, without memfds, a private file; the library is mapped
//!   from there under a name used once, `RTLD_NOW | RTLD_LOCAL` (plugins
//!   cannot interpose on each other), and the memfd is closed at once;
//! - [`elf`]: the ELF structure is validated before `dlopen` and the
//!   [`ElfFacts`] that decide whether the library can ever be unmapped are
//!   read;
//! - [`preflight`]: optionally, the file is mapped in a short-lived child
//!   process first.
//!
//! Order of the checks, all before any code of the plugin runs: file type,
//! mode, directories, size; then the copy (capped again, in case the file
//! grows); then the ELF structure, the SHA-256 of the whole file (against
//! the expected one if the host gave one); then the copy is cut to what the
//! dynamic loader reads (the segments: debug information and section
//! headers are never mapped, and a version kept mapped should not pin them)
//! and sealed; then the preflight. So `dlopen` constructors never
//! run before the checks, a file replaced on disk never changes what runs,
//! and the same path can be loaded again beside an older build during an
//! upgrade.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result, Status};

pub mod elf;
mod map;
mod open;
pub mod preflight;

pub use elf::ElfFacts;
pub use map::kept_mapped_in_process;
pub(crate) use map::{map, Mapped};
#[allow(unused_imports)]
pub(crate) use open::too_large;
pub(crate) use open::{open_checked, read_capped, Checks, Kind};
pub use preflight::{helper_path, Preflight, DEFAULT_PREFLIGHT_TIMEOUT};

/// The default cap on a plugin file's size: 1 GiB. Real plugins are a few
/// MiB (a Rust plugin with the standard library is about 4 MiB); the cap is
/// there so that a sparse or endless file is refused from its `fstat` size
/// at once instead of being copied.
pub const DEFAULT_MAX_PLUGIN_SIZE: u64 = 1 << 30;

/// Options for loading a plugin.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Refuse the file unless its SHA-256 is this, checked before any plugin
    /// code runs.
    pub expected_sha256: Option<[u8; 32]>,
    /// Configuration bytes handed to the plugin's `init` hook.
    pub config: Vec<u8>,
    /// Accept files, and directories on their path, that anyone may write to.
    pub allow_world_writable: bool,
    /// The largest plugin file accepted, in bytes (default
    /// [`DEFAULT_MAX_PLUGIN_SIZE`]). A larger file is refused with
    /// [`Status::FileTooLarge`] before it is read, and no more than this is
    /// ever read from a file that grows.
    pub max_file_size: u64,
    /// Whether to map the file in a child process first (default
    /// [`Preflight::Off`]; watched directories default to
    /// [`Preflight::IfAvailable`]). See [`preflight`].
    pub preflight: Preflight,
    /// The preflight helper executable; `None` finds it as
    /// [`helper_path`] says.
    pub preflight_helper: Option<PathBuf>,
    /// How long a preflight child may take before it is killed and the
    /// file refused (default [`DEFAULT_PREFLIGHT_TIMEOUT`]).
    pub preflight_timeout: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            expected_sha256: None,
            config: Vec::new(),
            allow_world_writable: false,
            max_file_size: DEFAULT_MAX_PLUGIN_SIZE,
            preflight: Preflight::Off,
            preflight_helper: None,
            preflight_timeout: DEFAULT_PREFLIGHT_TIMEOUT,
        }
    }
}

impl LoadOptions {
    /// Sets the expected SHA-256 from 64 hexadecimal digits.
    pub fn expect_sha256_hex(&mut self, hex: &str) -> Result<()> {
        self.expected_sha256 = Some(parse_sha256_hex(hex)?);
        Ok(())
    }

    pub(crate) fn checks(&self) -> Checks {
        Checks { kind: Kind::Plugin, allow_world_writable: self.allow_world_writable, max_size: self.max_file_size }
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

/// The checked bytes of a plugin file, in the storage they are mapped from.
pub(crate) struct Image {
    pub path: PathBuf,
    pub sha256: [u8; 32],
    pub facts: ElfFacts,
    pub(crate) sealed: map::Sealed,
}

impl Image {
    /// The bytes that were checked (and will be mapped).
    #[allow(dead_code)]
    pub fn bytes(&self) -> &[u8] {
        self.sealed.bytes()
    }
}

/// Makes `path` absolute (against the current directory), so every message
/// and every later comparison names one file unambiguously.
pub(crate) fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| {
        Error::new(Status::InvalidArgument, format!("expected a plugin path, found '{}': {e}", path.display()))
    })
}

/// Opens, copies and checks a plugin file (structure, hash, preflight).
pub(crate) fn read_image(path: &Path, opts: &LoadOptions) -> Result<Image> {
    let checks = opts.checks();
    let mut opened = open_checked(path, checks)?;
    let mut sealed = map::seal(&mut opened, checks)?;
    let path = opened.path;
    let bytes = sealed.bytes();
    let facts = elf::validate(&path, bytes)?;
    let sha256: [u8; 32] = Sha256::digest(bytes).into();
    let keep = elf::loaded_len(bytes).unwrap_or(bytes.len() as u64);
    sealed
        .finish(keep)
        .map_err(|e| Error::new(Status::Io, format!("cannot seal the in-memory copy of '{}': {e}", path.display())))?;
    if let Some(expected) = opts.expected_sha256 {
        if expected != sha256 {
            return Err(Error::new(
                Status::HashMismatch,
                format!(
                    "SHA-256 mismatch for '{}': expected {}, found {}; no code from it was run",
                    path.display(),
                    sha256_hex(&expected),
                    sha256_hex(&sha256)
                ),
            ));
        }
    }
    let image = Image { path, sha256, facts, sealed };
    preflight::run(&image, opts)?;
    Ok(image)
}

/// The SHA-256 of a plugin file's current bytes, read with the same checks
/// as a load (regular file, mode, directories, size cap).
pub(crate) fn file_sha256(path: &Path, opts: &LoadOptions) -> Result<[u8; 32]> {
    let checks = opts.checks();
    let mut opened = open_checked(path, checks)?;
    let sealed = map::seal(&mut opened, checks)?;
    Ok(Sha256::digest(sealed.bytes()).into())
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
        // Past the mode checks, the bytes are not a library.
        assert_eq!(read_image(&p, &opts).err().unwrap().status(), Status::NotALibrary);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn hash_mismatch_is_refused_before_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.so");
        std::fs::copy(std::env::current_exe().unwrap(), &p).unwrap();
        let e = std::fs::read(&p).map(|_| ()).err();
        assert!(e.is_none());
        // The test executable is ELF but not ET_DYN-with-entry: pick the
        // message order by checking the hash on a file that passes the
        // structure checks, or report the structure first.
        let opts = LoadOptions { expected_sha256: Some([0; 32]), ..Default::default() };
        let e = read_image(&p, &opts).err().unwrap();
        assert!(matches!(e.status(), Status::HashMismatch | Status::EntrySymbolMissing), "{e:?}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn truncated_elf_files_are_refused_before_mapping() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let p = Path::new("/x/libp.so");
        for cut in [0, 5, 40, 100] {
            let e = elf::validate(p, &exe[..cut]).unwrap_err();
            assert_eq!(e.status(), Status::NotALibrary);
            assert!(e.message().contains("/x/libp.so") && e.message().contains(&format!("({cut} bytes)")), "{e:?}");
        }
        let e = elf::validate(p, &exe[..exe.len() / 3]).unwrap_err();
        assert!(e.message().contains("truncated"), "{e:?}");
        assert_eq!(elf::validate(p, b"not ELF at all").unwrap_err().status(), Status::NotALibrary);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_private_copy_keeps_only_what_the_loader_reads() {
        // The test executable carries debug information after its segments.
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let keep = elf::loaded_len(&exe).unwrap();
        assert!(keep > 4096 && keep < exe.len() as u64, "{keep} of {}", exe.len());
        assert_eq!(elf::loaded_len(b"not ELF"), None);
    }

    #[test]
    fn garbage_is_not_a_library() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.so");
        std::fs::write(&p, b"definitely not ELF").unwrap();
        let e = read_image(&p, &LoadOptions::default()).err().unwrap();
        assert_eq!(e.status(), Status::NotALibrary);
        assert!(e.message().contains(&*p.display().to_string()), "{e:?}");
        assert!(e.message().contains("not a loadable shared library") && e.message().contains("18 bytes"), "{e:?}");
        assert!(!e.message().contains("/proc/self/fd"), "{e:?}");
    }
}
