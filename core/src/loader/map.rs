//! Holding the checked bytes, and mapping exactly those bytes.
//!
//! On Linux the file is copied, in the kernel (`copy_file_range`, else
//! `sendfile`), from the opened descriptor into a memfd, which is then
//! sealed (no write, grow or shrink) and mapped read-only: the ELF checks
//! and the hash read that mapping, so what was checked is byte for byte
//! what `dlopen` maps. No temporary directory or file is needed. Elsewhere
//! (or when memfds are unavailable) the bytes are read into memory and
//! written to a private file, used once.
//!
//! **Names.** The dynamic loader recognises an already loaded library by
//! the name it was opened with before it looks at the file, so a name must
//! never be reused while a library opened under it is still loaded (a
//! version kept mapped stays loaded for good). A memfd is opened as
//! `/proc/self/fd/<tokens>N`, where the tokens (`./` and `//`, which the
//! kernel reads as nothing) spell a process-wide load counter in binary:
//! each load gets a name of its own although descriptor numbers are reused,
//! and the memfd can be closed as soon as `dlopen` returns. The loader's
//! second test, by device and inode, cannot confuse two memfds either:
//! each has its own inode while any mapping of it lives.

use std::ffi::OsString;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use hotmod_abi as abi;

use super::elf::ElfFacts;
use super::open::{self, Checks, Opened};
use super::Image;
use crate::error::{Error, Result, Status};

/// Versions kept mapped in this process, by every runtime.
static KEPT_IN_PROCESS: AtomicUsize = AtomicUsize::new(0);

/// How many versions (of all runtimes of this process) are kept mapped
/// because they could not be unmapped.
pub fn kept_mapped_in_process() -> usize {
    KEPT_IN_PROCESS.load(Ordering::Relaxed)
}

/// The checked bytes of a file: a sealed memfd and a read-only mapping of
/// it, or (without memfds) the bytes in memory.
pub(crate) struct Sealed {
    #[cfg(target_os = "linux")]
    memfd: Option<std::os::fd::OwnedFd>,
    view: View,
}

enum View {
    #[cfg(target_os = "linux")]
    Mapped {
        ptr: *const u8,
        /// The bytes shown (the file may have been cut below the mapping).
        len: usize,
        /// The length mapped, for munmap.
        mapped: usize,
    },
    Owned(Vec<u8>),
}

// SAFETY: the mapping is read-only and of a sealed memfd: nobody can change
// the bytes, so sharing the view between threads is sharing immutable data.
unsafe impl Send for Sealed {}
// SAFETY: as above.
unsafe impl Sync for Sealed {}

impl Sealed {
    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        match &self.view {
            #[cfg(target_os = "linux")]
            // SAFETY: ptr/len describe a live read-only mapping of a sealed
            // memfd, unmapped only in Drop.
            View::Mapped { ptr, len, .. } => unsafe { std::slice::from_raw_parts(*ptr, *len) },
            View::Owned(v) => v,
        }
    }

    /// Cuts the copy to its first `keep` bytes (what the dynamic loader
    /// reads) and seals it against any change. Until then only this
    /// process holds the memfd, already sealed against writes and growth,
    /// and nothing has been mapped from it but the read-only view the
    /// checks read.
    pub fn finish(&mut self, keep: u64) -> std::io::Result<()> {
        #[cfg(target_os = "linux")]
        if let Some(memfd) = &self.memfd {
            use std::os::fd::AsRawFd;
            let fd = memfd.as_raw_fd();
            if let View::Mapped { len, .. } = &mut self.view {
                if keep < *len as u64 {
                    // SAFETY: ftruncate on our own memfd; the view is then
                    // only ever read up to the new length.
                    if unsafe { libc::ftruncate(fd, keep as libc::off_t) } != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    *len = keep as usize;
                }
            }
            let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
            // SAFETY: fcntl on a valid memfd.
            if unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, seals) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        let _ = keep;
        Ok(())
    }

    /// The sealed memfd, if the bytes are in one.
    #[cfg(target_os = "linux")]
    pub fn memfd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.memfd.as_ref().map(|f| f.as_fd())
    }
}

impl Drop for Sealed {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let View::Mapped { ptr, mapped, .. } = self.view {
            // SAFETY: unmapping the mapping made in `seal`, used by nobody now.
            unsafe { libc::munmap(ptr as *mut libc::c_void, mapped) };
        }
    }
}

/// Copies an opened, checked file into sealed storage, never more than the
/// cap even if the file grows meanwhile.
pub(crate) fn seal(opened: &mut Opened, checks: Checks) -> Result<Sealed> {
    #[cfg(target_os = "linux")]
    {
        if let Some(s) = seal_memfd(opened, checks)? {
            return Ok(s);
        }
    }
    Ok(Sealed {
        #[cfg(target_os = "linux")]
        memfd: None,
        view: View::Owned(open::read_capped(opened, checks)?),
    })
}

#[cfg(target_os = "linux")]
fn seal_memfd(opened: &mut Opened, checks: Checks) -> Result<Option<Sealed>> {
    use std::ffi::CString;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    let path = &opened.path;
    let base = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut name = format!("hotmod:{base}").replace('\0', "");
    name.truncate(200);
    while !name.is_char_boundary(name.len()) {
        name.pop();
    }
    let name = CString::new(name).expect("no NUL left");
    // SAFETY: memfd_create with a valid NUL-terminated name.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        if open::is_out_of_descriptors(&e) {
            return Err(open::out_of_descriptors("make an in-memory copy of", path, &e));
        }
        return Ok(None); // a kernel without memfds: read into memory instead
    }
    // SAFETY: fd was just returned by memfd_create and is owned by nobody else.
    let memfd = unsafe { OwnedFd::from_raw_fd(fd) };
    let copied = copy_in_kernel(&opened.file, &memfd, checks.max_size.saturating_add(1))
        .map_err(|e| Error::new(Status::Io, format!("cannot copy '{}' into memory: {e}", path.display())))?;
    if copied > checks.max_size {
        return Err(open::too_large(path, checks.kind, "more while it was being read".into(), checks.max_size));
    }
    // Writes and growth are sealed off now; shrinking is sealed by
    // `Sealed::finish`, once the checks know how much the loader reads.
    let seals = libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on a valid memfd.
    if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::new(Status::Io, format!("cannot seal the in-memory copy of '{}': {e}", path.display())));
    }
    let len = usize::try_from(copied)
        .map_err(|_| open::too_large(path, checks.kind, format!("{copied} bytes"), checks.max_size))?;
    let view = if len == 0 {
        View::Owned(Vec::new())
    } else {
        // SAFETY: a read-only shared mapping of the whole memfd, sealed
        // against writes; populated at once, since all of it is read.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                memfd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            let e = std::io::Error::last_os_error();
            return Err(Error::new(Status::Io, format!("cannot map the in-memory copy of '{}': {e}", path.display())));
        }
        View::Mapped { ptr: ptr as *const u8, len, mapped: len }
    };
    Ok(Some(Sealed { memfd: Some(memfd), view }))
}

/// Copies `src` (from its current offset to its end, at most `limit`
/// bytes) into `dst`, inside the kernel when it can; returns the number of
/// bytes copied.
#[cfg(target_os = "linux")]
fn copy_in_kernel(src: &File, dst: &std::os::fd::OwnedFd, limit: u64) -> std::io::Result<u64> {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    #[derive(PartialEq)]
    enum How {
        CopyFileRange,
        Sendfile,
        ReadWrite,
    }
    let mut how = How::CopyFileRange;
    let mut total = 0u64;
    let mut buf = Vec::new();
    while total < limit {
        let want = (limit - total).min(1 << 30) as usize;
        let n = match how {
            // SAFETY: both descriptors are open; NULL offsets use and advance
            // the files' own offsets.
            How::CopyFileRange => unsafe {
                libc::copy_file_range(
                    src.as_raw_fd(),
                    std::ptr::null_mut(),
                    dst.as_raw_fd(),
                    std::ptr::null_mut(),
                    want,
                    0,
                )
            },
            // SAFETY: as above; sendfile to a regular file is allowed since 2.6.33.
            How::Sendfile => unsafe { libc::sendfile(dst.as_raw_fd(), src.as_raw_fd(), std::ptr::null_mut(), want) },
            How::ReadWrite => {
                buf.resize(want.min(1 << 20), 0);
                let n = (&*src).read(&mut buf)?;
                let mut out = File::from(dst.try_clone()?);
                out.write_all(&buf[..n])?;
                n as isize
            }
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                // Across file systems, or not supported by one of them.
                Some(libc::EXDEV | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP | libc::EPERM)
                    if how == How::CopyFileRange =>
                {
                    how = How::Sendfile
                }
                Some(libc::EINVAL | libc::ENOSYS) if how == How::Sendfile => how = How::ReadWrite,
                _ => return Err(e),
            }
            continue;
        }
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    Ok(total)
}

/// A mapped plugin library.
pub(crate) struct Mapped {
    lib: Option<libloading::Library>,
    /// The name the dynamic loader knows it by (used once in the process).
    name: OsString,
    facts: ElfFacts,
    /// The runtime's count of versions kept mapped.
    kept: Option<Arc<AtomicUsize>>,
    /// The private file it was mapped from, where the platform cannot
    /// delete a file while it is mapped.
    _backing: Option<tempfile::TempPath>,
}

impl Mapped {
    /// What the loader read from the file's headers.
    pub fn facts(&self) -> &ElfFacts {
        &self.facts
    }

    /// Counts this version in `kept` if it is ever kept mapped.
    pub fn count_kept_in(&mut self, kept: Arc<AtomicUsize>) {
        self.kept = Some(kept);
    }

    /// Looks up the entry symbol and returns the descriptor pointer.
    pub fn descriptor(&self, path: &Path) -> Result<*const abi::hotmod_plugin_descriptor> {
        let lib = self.lib.as_ref().expect("library is mapped until unmap");
        let mut sym = abi::HOTMOD_PLUGIN_ENTRY_SYMBOL.as_bytes().to_vec();
        sym.push(0);
        // SAFETY: the symbol is looked up with the ABI's declared type; on
        // ELF platforms it was checked to be a defined function before the
        // file was mapped.
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

    /// Closes the library (runs its destructors). Returns whether the
    /// dynamic loader still has it mapped afterwards (it may keep a
    /// library whose thread-local destructors are still pending, for
    /// example).
    pub fn unmap(mut self) -> bool {
        if let Some(lib) = self.lib.take() {
            drop(lib.close());
        }
        still_loaded(&self.name)
    }

    /// Keeps the library mapped for the rest of the process, and counts it.
    pub fn keep_mapped(mut self) {
        std::mem::forget(self.lib.take());
        std::mem::forget(self._backing.take());
        KEPT_IN_PROCESS.fetch_add(1, Ordering::Relaxed);
        if let Some(k) = &self.kept {
            k.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Whether the dynamic loader lists a library opened under `name`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn still_loaded(name: &std::ffi::OsStr) -> bool {
    use std::ffi::{c_int, c_void, CStr};
    use std::os::unix::ffi::OsStrExt;
    unsafe extern "C" fn visit(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
        // SAFETY: data is the &[u8] passed below, info a valid record for
        // the duration of the callback.
        let (want, name) = unsafe { (&*(data as *const &[u8]), (*info).dlpi_name) };
        if name.is_null() {
            return 0;
        }
        // SAFETY: dlpi_name is a NUL-terminated string owned by the loader.
        c_int::from(unsafe { CStr::from_ptr(name) }.to_bytes() == *want)
    }
    let want: &[u8] = name.as_bytes();
    // SAFETY: the callback only reads `want`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), &want as *const &[u8] as *mut c_void) != 0 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn still_loaded(_name: &std::ffi::OsStr) -> bool {
    false
}

/// A process-wide count of loads, spelled into every name a library is
/// opened under.
static LOADS: AtomicU64 = AtomicU64::new(0);

/// Maps the checked bytes of `image`.
pub(crate) fn map(image: &Image) -> Result<Mapped> {
    #[cfg(target_os = "linux")]
    {
        if let Some(fd) = image.sealed.memfd() {
            use std::os::fd::AsRawFd;
            let name = OsString::from(unique_proc_name(fd.as_raw_fd(), LOADS.fetch_add(1, Ordering::Relaxed)));
            let lib = open_local(&name).map_err(|e| dl_error(image, &name, e))?;
            return Ok(Mapped { lib: Some(lib), name, facts: image.facts.clone(), kept: None, _backing: None });
        }
    }
    map_private_file(image)
}

/// `/proc/self/fd/<n in binary, "./" for 1 and "//" for 0>fd`: a name for
/// descriptor `fd` that no other load `n` of this process spells the same.
pub(crate) fn unique_proc_name(fd: i32, n: u64) -> String {
    let mut s = String::from("/proc/self/fd/");
    if n > 0 {
        for bit in (0..(64 - n.leading_zeros())).rev() {
            s.push_str(if n >> bit & 1 == 1 { "./" } else { "//" });
        }
    }
    s.push_str(&fd.to_string());
    s
}

fn dl_error(image: &Image, shown_as: &std::ffi::OsStr, e: libloading::Error) -> Error {
    let msg = e.to_string().replace(&*shown_as.to_string_lossy(), &image.path.display().to_string());
    let errno = std::io::Error::last_os_error();
    if open::is_out_of_descriptors(&errno) || msg.contains("Too many open files") {
        return open::out_of_descriptors("map", &image.path, &errno);
    }
    super::elf::not_a_library(&image.path, image.sealed.bytes().len(), msg)
}

#[cfg(unix)]
fn open_local(path: &std::ffi::OsStr) -> std::result::Result<libloading::Library, libloading::Error> {
    use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
    // SAFETY: opening a library runs its constructors; the caller has
    // checked the bytes (structure, mode, hash, preflight) as far as the
    // host asked.
    unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }.map(Into::into)
}

#[cfg(not(unix))]
fn open_local(path: &std::ffi::OsStr) -> std::result::Result<libloading::Library, libloading::Error> {
    // SAFETY: as above.
    unsafe { libloading::Library::new(path) }
}

fn map_private_file(image: &Image) -> Result<Mapped> {
    use std::io::Write;
    let tmp_dir = std::env::temp_dir();
    let io = |e: std::io::Error| {
        if open::is_out_of_descriptors(&e) {
            return open::out_of_descriptors("make a private copy of", &image.path, &e);
        }
        Error::new(
            Status::Io,
            format!(
                "cannot make a private copy of '{}' in the temporary directory '{}': {e}",
                image.path.display(),
                tmp_dir.display()
            ),
        )
    };
    let ext = image.path.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    // A name no other load of this process uses: the dynamic loader must
    // never mistake two builds for one library.
    let prefix = format!("hotmod-{}-{}-", std::process::id(), LOADS.fetch_add(1, Ordering::Relaxed));
    let mut tmp = tempfile::Builder::new().prefix(&prefix).suffix(&ext).tempfile_in(&tmp_dir).map_err(io)?;
    tmp.write_all(image.sealed.bytes()).map_err(io)?;
    tmp.flush().map_err(io)?;
    let path = tmp.into_temp_path();
    let name = path.as_os_str().to_owned();
    let lib = open_local(&name).map_err(|e| dl_error(image, &name, e))?;
    // Unix maps a file that is then deleted; Windows cannot delete it
    // while it is mapped.
    let backing = if cfg!(unix) {
        drop(path);
        None
    } else {
        Some(path)
    };
    Ok(Mapped { lib: Some(lib), name, facts: image.facts.clone(), kept: None, _backing: backing })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_names_are_unique_per_load() {
        let mut seen = std::collections::HashSet::new();
        for n in 0..5000u64 {
            assert!(seen.insert(unique_proc_name(7, n)), "load {n}");
        }
        assert_eq!(unique_proc_name(7, 0), "/proc/self/fd/7");
        assert_eq!(unique_proc_name(7, 5), "/proc/self/fd/.///./7");
        assert!(unique_proc_name(123, u64::MAX).len() < 200);
    }
}
