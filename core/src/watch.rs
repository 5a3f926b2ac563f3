//! Watched plugin directories: drop a build in and it runs.
//!
//! [`watch_dir`] loads the plugin files already in a directory (in
//! dependency order), then follows it with the `notify` crate (inotify,
//! FSEvents, ReadDirectoryChangesW):
//! - a **new** plugin file is loaded;
//! - a **replaced** one (written in place, or written elsewhere and renamed
//!   over it) upgrades the module that was loaded from that path, while
//!   calls keep flowing ([`Runtime::upgrade`]); a file whose bytes did not
//!   change (touched, rewritten identically) changes nothing;
//! - a **removed** one unloads its module if
//!   [`WatchOptions::unload_on_remove`], and otherwise leaves it running
//!   (so `rm` then `cp` of a new build upgrades it, as does a new file that
//!   declares the module of a removed one).
//!
//! Plugin files are the regular files directly in the directory (not in
//! subdirectories) with the platform's library extension (`.so`, `.dylib`,
//! `.dll`) whose name does not start with `.`; anything else — notably
//! `libx.so.tmp` or `.libx.so.partial` being written before a rename — is
//! ignored.
//!
//! **When a file is complete.** A file is acted on as soon as a writer
//! closes it (`IN_CLOSE_WRITE`, notify's `Access(Close(Write))`) or it is
//! renamed into place (`IN_MOVED_TO`); otherwise (platforms or writers
//! that give neither) once its size and modification time have stayed the
//! same, with no new event for it, for [`WatchOptions::debounce`]. Whatever
//! the event, the file then goes through every check of a load: a file
//! still being written (set to its final size first, then filled) is
//! refused by the ELF validation, not crashed on, and tried again when it
//! changes. Writing elsewhere and renaming into place is still the safest
//! way to publish a build.
//!
//! **Preflight.** By default ([`WatchOptions::default`]) each file is first
//! mapped in a short-lived child process when a preflight helper is
//! installed ([`crate::loader::preflight`]), so a file whose constructors
//! crash or hang kills that child, not the host.
//!
//! **Failures never stop the watch, and the old version keeps serving.** A
//! file that cannot be loaded or upgraded (corrupt, truncated, init
//! failed, refused by a dependent, name already taken…) is reported as an
//! [`EventKind::UpgradeFailed`] event with its status code and message; the
//! same bytes are not tried again until the file changes. A file whose load
//! waits for a dependency is retried whenever another file of the directory
//! loads. Problems of the watch itself (the directory removed, the
//! notification queue overflowed, a module that could not be unloaded) are
//! [`EventKind::WatchError`] events. A truncated or corrupt ELF file is
//! refused before it is mapped, because the dynamic loader would map it
//! anyway and the process would die inside `ld.so` or of `SIGBUS` on the
//! first missing page. The directory itself gets the loader's path checks:
//! a watched directory inside one that anyone may write to is refused file
//! by file ([`Status::UnsafeFile`]) unless the load options allow it.
//!
//! **Threads.** Events caused by the initial scan are delivered on the
//! thread that called [`watch_dir`]; every later one on the watcher's own
//! thread, named `hotmod-watch`, which is also the thread that loads,
//! upgrades and unloads. The watcher holds only a weak reference to the
//! runtime, so it does not keep the runtime alive, and it stops once the
//! runtime is gone. (While it applies a change it holds a strong one: if
//! the host drops its last reference just then, the runtime is dropped on
//! the watcher's thread when the change is done.) Dropping the [`Watcher`]
//! stops the watch and joins its thread, waiting for a change being applied,
//! if any, to finish.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use notify::event::{AccessKind, AccessMode, EventKind as FsKind, ModifyKind, RenameMode};
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};

use crate::deps;
use crate::error::{Error, Result, Status};
use crate::events::EventKind;
use crate::loader::{self, sha256_hex, LoadOptions, Preflight};
use crate::manifest::identify;
use crate::runtime::{Runtime, UpgradeOptions};

/// How a directory is watched.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// How long a file must stay unchanged (size, modification time, no new
    /// event) before it is acted on. Default 200 ms.
    pub debounce: Duration,
    /// Unload a module when the file it was loaded from is removed. Default
    /// false: the module keeps running.
    pub unload_on_remove: bool,
    /// How every file is loaded and upgraded (`config` is handed to each
    /// plugin's init). An `expected_sha256` here would apply to every file,
    /// which is rarely what is meant: pin hashes with a manifest instead.
    pub load: LoadOptions,
}

impl Default for WatchOptions {
    /// Debounce 200 ms, modules kept when their file is removed, and files
    /// preflighted in a child process when a helper is installed
    /// ([`Preflight::IfAvailable`]): files dropped into a directory are
    /// often someone else's.
    fn default() -> Self {
        WatchOptions {
            debounce: Duration::from_millis(200),
            unload_on_remove: false,
            load: LoadOptions { preflight: Preflight::IfAvailable, ..LoadOptions::default() },
        }
    }
}

/// A running watch of a directory. Dropping it stops the watch and joins
/// its thread; the modules it loaded stay loaded.
pub struct Watcher {
    dir: PathBuf,
    _registration: Registration,
    fs: Option<RecommendedWatcher>,
    tx: Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").field("dir", &self.dir).finish()
    }
}

impl Watcher {
    /// The watched directory (absolute, symbolic links resolved).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the watch and joins its thread (the same as dropping it).
    pub fn stop(self) {}
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // Stop the notification source first, so nothing follows the Stop.
        drop(self.fs.take());
        let _ = self.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            // Dropped from the watcher's own thread (an event handler):
            // it ends after the current operation; joining would deadlock.
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

/// A directory's entry in its runtime's set of watched directories,
/// removed when the watch ends (or fails to start).
struct Registration {
    set: Arc<std::sync::Mutex<std::collections::HashSet<PathBuf>>>,
    dir: PathBuf,
}

impl Registration {
    fn new(runtime: &Runtime, dir: &Path) -> Result<Registration> {
        let set = runtime.inner().watched.clone();
        if !set.lock().unwrap_or_else(|e| e.into_inner()).insert(dir.to_path_buf()) {
            return Err(Error::new(
                Status::Busy,
                format!(
                    "cannot watch '{}': expected a directory this runtime does not watch yet, found it already watched; stop that watch first",
                    dir.display()
                ),
            ));
        }
        Ok(Registration { set, dir: dir.to_path_buf() })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.set.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.dir);
    }
}

enum Msg {
    Fs(notify::Result<notify::Event>),
    Stop,
}

/// Starts watching `dir` for `runtime`: loads the plugin files already
/// there (before returning; failures are events, not errors), then follows
/// the directory on a thread of its own until the returned [`Watcher`] is
/// dropped. See the [module documentation](self) for what each change does.
///
/// `runtime` is taken as an `Arc` because the watch thread must reach it
/// after this call returns; the watcher keeps only a `Weak` reference.
///
/// Errors: [`Status::FileMissing`] if `dir` does not exist,
/// [`Status::InvalidArgument`] if it is not a directory, [`Status::Busy`]
/// if this runtime already watches it (under any name), [`Status::Io`] if
/// it cannot be read or watched.
pub fn watch_dir(runtime: &Arc<Runtime>, dir: impl AsRef<Path>, opts: WatchOptions) -> Result<Watcher> {
    let given = dir.as_ref();
    let dir = std::fs::canonicalize(given).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::new(
            Status::FileMissing,
            format!("cannot watch '{}': expected a directory there, found nothing", given.display()),
        ),
        _ => Error::new(Status::Io, format!("cannot watch '{}': {e}", given.display())),
    })?;
    if !dir.is_dir() {
        return Err(Error::new(
            Status::InvalidArgument,
            format!("cannot watch '{}': expected a directory, found a file", dir.display()),
        ));
    }
    let registration = Registration::new(runtime, &dir)?;
    let (tx, rx) = mpsc::channel();
    let fs_tx = tx.clone();
    // Watch before scanning, so that nothing written meanwhile is missed.
    let mut fs = notify::recommended_watcher(move |res| {
        let _ = fs_tx.send(Msg::Fs(res));
    })
    .map_err(|e| Error::new(Status::Io, format!("cannot watch '{}': {e}", dir.display())))?;
    fs.watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| Error::new(Status::Io, format!("cannot watch '{}': {e}", dir.display())))?;

    let mut state = DirState {
        dir: dir.clone(),
        opts,
        runtime: Arc::downgrade(runtime),
        files: BTreeMap::new(),
        failed: HashMap::new(),
        waiting: BTreeSet::new(),
        pending: HashMap::new(),
    };
    let present = plugin_files(&dir)
        .map_err(|e| Error::new(Status::Io, format!("cannot list the watched directory '{}': {e}", dir.display())))?;
    state.load_new(runtime, present);

    let thread = std::thread::Builder::new()
        .name("hotmod-watch".into())
        .spawn(move || state.run(rx))
        .map_err(|e| Error::new(Status::Io, format!("cannot start the watcher thread for '{}': {e}", dir.display())))?;
    Ok(Watcher { dir, _registration: registration, fs: Some(fs), tx, thread: Some(thread) })
}

/// Whether `path` names a plugin file of this platform.
fn is_plugin_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return false };
    !name.starts_with('.')
        && path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case(std::env::consts::DLL_EXTENSION))
}

/// The plugin files in `dir`, sorted.
fn plugin_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if is_plugin_file(&path) && path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// SHA-256 of a file's current bytes, read with the loader's checks (so a
/// FIFO, a device or a huge file is refused, never waited on or read).
fn file_sha256(path: &Path, opts: &LoadOptions) -> Result<[u8; 32]> {
    loader::file_sha256(path, opts)
}

/// What a file looked like: `None` if it is missing.
type Stamp = Option<(u64, Option<SystemTime>)>;

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path).ok().filter(|m| m.is_file()).map(|m| (m.len(), m.modified().ok()))
}

/// A file that changed and is waiting to be stable.
struct Pending {
    seen: Stamp,
    since: Instant,
    /// Closed after writing, or renamed into place: complete, act now.
    ready: bool,
}

/// The watcher thread's state.
struct DirState {
    dir: PathBuf,
    opts: WatchOptions,
    runtime: Weak<Runtime>,
    /// Plugin file → the module loaded from it. Kept after the file is
    /// removed (unless the module was unloaded), so a build put back under
    /// the same name upgrades it.
    files: BTreeMap<PathBuf, String>,
    /// Bytes of a file that failed to load or upgrade: not tried again
    /// until they change.
    failed: HashMap<PathBuf, [u8; 32]>,
    /// Files whose load waits for a dependency.
    waiting: BTreeSet<PathBuf>,
    /// Files that changed, until they are stable.
    pending: HashMap<PathBuf, Pending>,
}

impl DirState {
    fn run(mut self, rx: Receiver<Msg>) {
        let tick = (self.opts.debounce / 4).clamp(Duration::from_millis(1), Duration::from_millis(50));
        loop {
            let msg = if self.pending.is_empty() {
                rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                rx.recv_timeout(tick)
            };
            match msg {
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(Msg::Fs(Ok(event))) => self.note(event),
                Ok(Msg::Fs(Err(e))) => self.report(
                    EventKind::WatchError,
                    "",
                    &self.dir,
                    format!("the watch reported an error: {e}"),
                    Status::Io,
                ),
                Err(RecvTimeoutError::Timeout) => {}
            }
            let settled = self.settled(Instant::now());
            if settled.is_empty() {
                continue;
            }
            let Some(rt) = self.runtime.upgrade() else { return };
            let r = catch_unwind(AssertUnwindSafe(|| self.settle(&rt, settled)));
            if r.is_err() {
                self.report(
                    EventKind::WatchError,
                    "",
                    &self.dir,
                    "internal error: a panic while applying a change (caught; the watch goes on)".into(),
                    Status::Internal,
                );
            }
        }
    }

    /// Emits an event through the runtime, if it is still there.
    fn report(&self, kind: EventKind, module: &str, path: &Path, message: String, status: Status) {
        if let Some(rt) = self.runtime.upgrade() {
            rt.inner().emit_for(kind, module, "", path, message, status.code());
        }
    }

    /// Records a notification.
    fn note(&mut self, event: notify::Event) {
        let now = Instant::now();
        if event.need_rescan() {
            // Events were lost: look again at everything.
            let mut all = plugin_files(&self.dir).unwrap_or_default();
            all.extend(self.files.keys().cloned());
            for p in all {
                self.pending.insert(p.clone(), Pending { seen: stamp(&p), since: now, ready: false });
            }
            return;
        }
        // A writer closed the file, or it was renamed into place: it is
        // complete now (the debounce stays for writers that do neither).
        let complete = match event.kind {
            FsKind::Access(AccessKind::Close(AccessMode::Write)) => true,
            FsKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both)) => true,
            FsKind::Create(_) => false,
            // Opening or reading a file (the loader itself does) changes nothing.
            FsKind::Access(_) => return,
            _ => false,
        };
        let last = event.paths.last().cloned();
        for p in event.paths {
            if p == self.dir {
                if matches!(event.kind, FsKind::Remove(_) | FsKind::Modify(ModifyKind::Name(_))) {
                    self.report(
                        EventKind::WatchError,
                        "",
                        &self.dir,
                        format!(
                            "the watched directory '{}' was removed or renamed; no further change in it will be seen",
                            self.dir.display()
                        ),
                        Status::FileMissing,
                    );
                }
                continue;
            }
            if p.parent() != Some(self.dir.as_path()) || !is_plugin_file(&p) {
                continue;
            }
            let renamed_to_here =
                matches!(event.kind, FsKind::Modify(ModifyKind::Name(RenameMode::Both))) && last.as_ref() != Some(&p);
            // The source of a rename (`a -> b` names both) is gone, not complete.
            let ready = complete && !renamed_to_here;
            self.pending.insert(p.clone(), Pending { seen: stamp(&p), since: now, ready });
        }
    }

    /// Removes and returns the pending files that have been stable for the
    /// debounce interval.
    fn settled(&mut self, now: Instant) -> Vec<PathBuf> {
        let debounce = self.opts.debounce;
        let mut out = Vec::new();
        self.pending.retain(|p, pending| {
            let current = stamp(p);
            if pending.ready {
                out.push(p.clone());
                false
            } else if current != pending.seen {
                pending.seen = current;
                pending.since = now;
                true
            } else if now.duration_since(pending.since) >= debounce {
                out.push(p.clone());
                false
            } else {
                true
            }
        });
        out.sort();
        out
    }

    /// Acts on stable files.
    fn settle(&mut self, rt: &Runtime, paths: Vec<PathBuf>) {
        let mut new = Vec::new();
        for p in paths {
            if !p.is_file() {
                self.removed(rt, &p);
            } else if let Some(name) = self.files.get(&p).cloned() {
                if rt.module(&name).is_ok() {
                    self.replaced(rt, &p, &name);
                } else {
                    // Unloaded by the host meanwhile: this is a new load.
                    self.files.remove(&p);
                    new.push(p);
                }
            } else {
                new.push(p);
            }
        }
        self.load_new(rt, new);
    }

    /// A file was removed (or renamed away).
    fn removed(&mut self, rt: &Runtime, path: &Path) {
        self.failed.remove(path);
        self.waiting.remove(path);
        if !self.opts.unload_on_remove {
            return;
        }
        let Some(name) = self.files.get(path).cloned() else { return };
        if rt.module(&name).is_err() {
            self.files.remove(path);
            return;
        }
        match rt.unload(&name, false) {
            Ok(()) => {
                self.files.remove(path);
            }
            Err(e) => self.report(
                EventKind::WatchError,
                &name,
                path,
                format!(
                    "'{}' was removed from the watched directory, but module '{name}' stays loaded: {e}",
                    path.display()
                ),
                e.status(),
            ),
        }
    }

    /// A file a module was loaded from has new content: upgrade the module.
    fn replaced(&mut self, rt: &Runtime, path: &Path, name: &str) {
        let sha = match file_sha256(path, &self.opts.load) {
            Ok(sha) => sha,
            Err(e) => {
                let msg = format!("cannot read '{}' to upgrade module '{name}': {}", path.display(), e.message());
                return self.report(EventKind::UpgradeFailed, name, path, msg, e.status());
            }
        };
        if self.failed.get(path) == Some(&sha) {
            return;
        }
        if rt.module(name).is_ok_and(|m| m.info().sha256 == sha256_hex(&sha)) {
            self.failed.remove(path);
            return;
        }
        let opts = UpgradeOptions { load: self.opts.load.clone(), force: false };
        // A failed upgrade has already been reported by the runtime.
        match rt.upgrade(name, path, &opts) {
            Ok(_) => {
                self.failed.remove(path);
            }
            Err(_) => {
                self.failed.insert(path.to_path_buf(), sha);
            }
        }
    }

    /// Loads files no module was loaded from yet, in dependency order.
    fn load_new(&mut self, rt: &Runtime, paths: Vec<PathBuf>) {
        let mut found = Vec::new();
        for p in paths {
            let sha = match file_sha256(&p, &self.opts.load) {
                Ok(sha) => sha,
                Err(e) if e.status() == Status::FileMissing => continue, // gone again: its removal is pending
                Err(e) => {
                    // Refused before anything is mapped (a FIFO, unsafe, too large): say so once.
                    let key = [0u8; 32];
                    if self.failed.insert(p.clone(), key) != Some(key) {
                        self.report(EventKind::UpgradeFailed, "", &p, e.message().to_owned(), e.status());
                    }
                    continue;
                }
            };
            if self.failed.get(&p) == Some(&sha) && !self.waiting.contains(&p) {
                continue;
            }
            match identify(&p, &self.opts.load) {
                Ok(id) => found.push((p, id)),
                Err(e) => {
                    self.report(EventKind::UpgradeFailed, "", &p, e.message().to_owned(), e.status());
                    self.failed.insert(p, sha);
                }
            }
        }
        // A new file that declares the module of a removed file takes its
        // place: the module is upgraded from it, not loaded twice.
        let mut fresh = Vec::new();
        for (p, id) in found {
            let gone = self.files.iter().find(|(f, n)| **n == id.name && !f.exists()).map(|(f, _)| f.clone());
            match gone {
                Some(old) if rt.module(&id.name).is_ok() => {
                    self.files.remove(&old);
                    self.files.insert(p.clone(), id.name.clone());
                    self.replaced(rt, &p, &id.name);
                }
                _ => fresh.push((p, id)),
            }
        }
        let nodes: Vec<(String, Vec<String>)> =
            fresh.iter().map(|(_, id)| (id.name.clone(), id.dependencies.clone())).collect();
        // In a cycle, each load fails on its missing dependency and says so.
        let order = deps::order_or_as_given(&nodes);
        let mut progress = false;
        for i in order {
            progress |= self.load_one(rt, &fresh[i].0, fresh[i].1.sha256);
        }
        // Loads that waited for a dependency may go through now.
        while progress {
            progress = false;
            for p in self.waiting.clone() {
                match file_sha256(&p, &self.opts.load) {
                    Ok(sha) => progress |= self.load_one(rt, &p, sha),
                    Err(_) => {
                        self.waiting.remove(&p);
                    }
                }
            }
        }
    }

    /// Loads one file; returns whether it loaded. A failure has already
    /// been reported by the runtime.
    fn load_one(&mut self, rt: &Runtime, path: &Path, sha: [u8; 32]) -> bool {
        match rt.load(path, &self.opts.load) {
            Ok(m) => {
                self.files.insert(path.to_path_buf(), m.name().to_owned());
                self.failed.remove(path);
                self.waiting.remove(path);
                true
            }
            Err(e) => {
                if e.status() == Status::DependencyUnsatisfied {
                    self.waiting.insert(path.to_path_buf());
                } else {
                    self.waiting.remove(path);
                }
                self.failed.insert(path.to_path_buf(), sha);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_files_are_recognised_by_extension() {
        let ext = std::env::consts::DLL_EXTENSION;
        assert!(is_plugin_file(Path::new(&format!("/d/libx.{ext}"))));
        assert!(!is_plugin_file(Path::new(&format!("/d/.libx.{ext}"))));
        assert!(!is_plugin_file(Path::new(&format!("/d/libx.{ext}.tmp"))));
        assert!(!is_plugin_file(Path::new("/d/notes.txt")));
        assert!(!is_plugin_file(Path::new("/d/noext")));
    }

    #[test]
    fn missing_or_plain_file_is_refused() {
        let rt = Arc::new(Runtime::new());
        let e = watch_dir(&rt, "/nonexistent/hotmod-dir", WatchOptions::default()).unwrap_err();
        assert_eq!(e.status(), Status::FileMissing);
        assert!(e.message().contains("/nonexistent/hotmod-dir"), "{e:?}");
        let f = tempfile::NamedTempFile::new().unwrap();
        let e = watch_dir(&rt, f.path(), WatchOptions::default()).unwrap_err();
        assert_eq!(e.status(), Status::InvalidArgument);
    }
}
