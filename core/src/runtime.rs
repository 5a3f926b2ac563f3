//! The runtime: load, upgrade and unload modules; resolve and call methods;
//! host functions, events and statistics. This is the API the C, Python and
//! Node layers wrap.
//!
//! Administrative operations (load, upgrade, unload, host function
//! registration) are serialised by one admin lock; the call path never takes
//! it, and no operation holds it while it waits for calls to drain. Every
//! operation either completes or leaves the runtime exactly as it was: a
//! module is only published once it has been mapped, validated, initialised,
//! given its predecessor's state and activated.
//!
//! Re-entrancy: plugin code (init, activate, state hooks), host functions
//! and event handlers may run on the thread that holds the admin lock. An
//! administrative call made from there would wait for itself; it is refused
//! with [`Status::Busy`] instead, in the core, so C, Python and Node behave
//! alike.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;

use hotmod_abi as abi;
use rustc_hash::FxHashMap;

use crate::call::{self, MethodHandle, Output};
use crate::deps;
use crate::descriptor::{self, PluginInfo};
use crate::error::{Error, Result, Status};
use crate::events::{Event, EventHandler, EventKind};
use crate::host::HostFunction;
use crate::loader::{self, ElfFacts, LoadOptions, Mapped};
use crate::metrics::CounterSnapshot;
use crate::rcu::{self, RcuCell, Retired};
use crate::registry::{ModuleSlot, Registry, State, Version};

/// Default of [`RuntimeOptions::max_output_size`]: 64 MiB.
pub const DEFAULT_MAX_OUTPUT_SIZE: usize = 64 << 20;

/// Runtime-wide settings.
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    /// How long an upgrade or unload waits for calls in flight on the old
    /// version before it returns. Calls are never cut short: a version still
    /// in use after this is destroyed by whichever thread releases it last.
    pub drain_timeout: Duration,
    /// The most output, in bytes, a plugin may ask the host to allocate
    /// (a method or `export_state` answering `HOTMOD_PLUGIN_OUTPUT_TOO_SMALL`,
    /// or the result of a dependency call): a larger request fails with
    /// [`Status::OutputTooLarge`] naming the method, the size and this cap,
    /// and nothing is allocated. Memory a plugin hands over itself (the
    /// zero-copy path) is not bounded by it. Default
    /// [`DEFAULT_MAX_OUTPUT_SIZE`] (64 MiB).
    pub max_output_size: usize,
    /// How many replaced or unloaded versions this runtime may keep mapped
    /// because they cannot be unmapped (not declared safe to unload, or
    /// NODELETE, static TLS, unique symbols, a Go runtime: see
    /// [`ElfFacts`]). Each keeps its code and data in memory for the rest of
    /// the process (no descriptor: the private copy is closed once mapped).
    /// Once this many are kept, loading another file that could not be
    /// unmapped either is refused with [`Status::KeptMappedLimit`], well
    /// before the process's memory or mapping limits. Default 1024.
    pub max_kept_mapped: usize,
}

/// The default [`RuntimeOptions::max_kept_mapped`].
pub const DEFAULT_MAX_KEPT_MAPPED: usize = 1024;

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            drain_timeout: Duration::from_millis(200),
            max_output_size: DEFAULT_MAX_OUTPUT_SIZE,
            max_kept_mapped: DEFAULT_MAX_KEPT_MAPPED,
        }
    }
}

/// Options for [`Runtime::upgrade`].
#[derive(Clone, Debug, Default)]
pub struct UpgradeOptions {
    /// How to read and check the new file.
    pub load: LoadOptions,
    /// Publish even if methods that callers hold handles to were removed or
    /// changed signature; those handles then answer
    /// [`Status::SignatureChanged`] or [`Status::StaleHandle`].
    pub force: bool,
}

/// A snapshot of what a module version declares.
#[derive(Clone, Debug)]
pub struct ModuleInfo {
    /// Module name.
    pub name: String,
    /// Semantic version.
    pub version: String,
    /// Description.
    pub description: String,
    /// Absolute path of the file it was loaded from.
    pub path: PathBuf,
    /// SHA-256 of the bytes that were loaded, lowercase hex.
    pub sha256: String,
    /// Whether the plugin declared itself safe to unmap.
    pub safe_to_unload: bool,
    /// What the loader read from the file's ELF headers before mapping it.
    pub elf: ElfFacts,
    /// Whether this version will stay mapped after it is replaced or
    /// unloaded: it did not declare itself safe to unload, or its ELF facts
    /// say it cannot really be unmapped ([`ElfFacts::unmap_blockers`]).
    pub stays_mapped: bool,
    /// Plugin ABI minor it was built against.
    pub abi_minor: u16,
    /// Methods in declaration order.
    pub methods: Vec<MethodInfo>,
    /// Declared dependencies.
    pub dependencies: Vec<DependencyInfo>,
}

/// One method as declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MethodInfo {
    /// Method name.
    pub name: String,
    /// Declared signature string.
    pub signature: String,
    /// Hash of name and signature.
    pub signature_hash: u64,
}

/// One dependency as declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DependencyInfo {
    /// Needed module.
    pub name: String,
    /// Required version range.
    pub requirement: String,
    /// Whether it is optional.
    pub optional: bool,
}

impl ModuleInfo {
    fn of(v: &Version) -> ModuleInfo {
        ModuleInfo::declared(&v.info, &v.path, &v.sha256, v.elf())
    }

    fn declared(info: &PluginInfo, path: &Path, sha256: &[u8; 32], elf: Option<&loader::ElfFacts>) -> ModuleInfo {
        ModuleInfo {
            name: info.name.clone(),
            version: info.version.to_string(),
            description: info.description.clone(),
            path: path.to_path_buf(),
            sha256: loader::sha256_hex(sha256),
            safe_to_unload: info.safe_to_unload(),
            elf: elf.cloned().unwrap_or_default(),
            stays_mapped: !info.safe_to_unload() || elf.is_some_and(|f| !f.can_unmap()),
            abi_minor: info.abi_minor,
            methods: info
                .methods
                .iter()
                .map(|m| MethodInfo {
                    name: m.name.clone(),
                    signature: m.signature.clone(),
                    signature_hash: m.signature_hash,
                })
                .collect(),
            dependencies: info
                .dependencies
                .iter()
                .map(|d| DependencyInfo {
                    name: d.name.clone(),
                    requirement: d.requirement.to_string(),
                    optional: d.optional,
                })
                .collect(),
        }
    }
}

/// A loaded module.
///
/// Calls through it reach the module's active version. [`info`](Self::info)
/// describes the version that was active when this value was obtained; get a
/// fresh `Module` from [`Runtime::module`] after an upgrade to see the new one.
#[derive(Clone)]
pub struct Module {
    slot: Arc<ModuleSlot>,
    info: Arc<ModuleInfo>,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Module({}@{})", self.info.name, self.info.version)
    }
}

impl Module {
    fn of(slot: &Arc<ModuleSlot>, v: &Version) -> Module {
        Module { slot: slot.clone(), info: Arc::new(ModuleInfo::of(v)) }
    }

    /// What this module declared (at the time this value was obtained).
    pub fn info(&self) -> &ModuleInfo {
        &self.info
    }

    /// Module name.
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// Whether the module is still loaded.
    pub fn is_loaded(&self) -> bool {
        self.slot.active.load(&rcu::read()).is_some()
    }

    /// Resolves a method of the active version.
    pub fn method(&self, name: &str) -> Result<MethodHandle> {
        let g = rcu::read();
        let Some(v) = self.slot.active.load(&g) else {
            return Err(unloaded(&self.info.name));
        };
        MethodHandle::resolve(&self.slot, &v, name)
    }

    /// Calls a method of the active version by name.
    pub fn call(&self, method: &str, input: &[u8]) -> Result<Output> {
        let g = rcu::read();
        call::with_named(
            &self.slot,
            &g,
            method,
            || unloaded(&self.info.name),
            |v, e| call::call_owned(v, e, input, call::DEFAULT_OUTPUT_OFFER),
        )
    }
}

#[cold]
fn unloaded(name: &str) -> Error {
    Error::new(Status::StaleHandle, format!("stale handle: module '{name}' is no longer loaded"))
}

/// Statistics of one method.
#[derive(Clone, Debug)]
pub struct MethodStats {
    /// Module name.
    pub module: String,
    /// Active version of the module.
    pub version: String,
    /// Method name.
    pub method: String,
    /// Whether the active version has this method (it may have been removed
    /// by a forced upgrade while its counters remain).
    pub present: bool,
    /// Handles callers hold to the method.
    pub handles: usize,
    /// The counters, summed over every version of the module.
    pub counters: CounterSnapshot,
}

/// A plugin file mapped and validated, not yet initialised.
struct Prepared {
    info: PluginInfo,
    path: PathBuf,
    sha256: [u8; 32],
    mapped: Mapped,
}

pub(crate) struct RuntimeInner {
    registry: Registry,
    admin: Mutex<()>,
    /// The thread holding `admin` (see [`thread_token`]), 0 if none.
    admin_owner: AtomicUsize,
    host_fns: RcuCell<FxHashMap<String, Arc<dyn HostFunction>>>,
    events: RwLock<Option<EventHandler>>,
    options: RuntimeOptions,
    /// What each manifest applied through [`Runtime::apply_manifest`] owns,
    /// by the manifest's canonical path.
    pub(crate) manifests: Mutex<std::collections::HashMap<PathBuf, crate::manifest::ManifestState>>,
    /// The directories watched for this runtime (canonical paths), shared
    /// with each [`crate::watch::Watcher`] so dropping one unregisters it.
    pub(crate) watched: Arc<Mutex<std::collections::HashSet<PathBuf>>>,
    /// How many versions of this runtime are kept mapped (shared with
    /// each mapped version, which counts itself when it is kept).
    kept_mapped: Arc<std::sync::atomic::AtomicUsize>,
}

impl RuntimeInner {
    pub(crate) fn emit_event(
        &self,
        kind: EventKind,
        module: &str,
        version: &str,
        path: &str,
        message: String,
        code: i32,
    ) {
        let handler = self.events.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(h) = handler {
            let ev = Event {
                kind,
                module: module.to_owned(),
                version: version.to_owned(),
                path: path.to_owned(),
                message,
                code,
            };
            // A panicking handler must not take the runtime down with it.
            let _ = catch_unwind(AssertUnwindSafe(|| h(&ev)));
        }
    }

    pub(crate) fn emit_for(
        &self,
        kind: EventKind,
        module: &str,
        version: &str,
        path: &Path,
        message: String,
        code: i32,
    ) {
        self.emit_event(kind, module, version, &path.display().to_string(), message, code);
    }

    pub(crate) fn host_function(&self, name: &str) -> Option<Arc<dyn HostFunction>> {
        let g = rcu::read();
        self.host_fns.load(&g).and_then(|m| m.get(name).cloned())
    }

    /// The active version of module `name` (tests look inside versions).
    #[cfg(test)]
    pub(crate) fn active_version(&self, name: &str) -> Option<Arc<Version>> {
        self.registry.get(name).and_then(|s| s.active.load_full())
    }

    /// The cap on output a plugin may ask for ([`RuntimeOptions::max_output_size`]).
    pub(crate) fn max_output_size(&self) -> usize {
        self.options.max_output_size
    }

    /// Calls by name on behalf of a plugin, into the slot it offered; see
    /// [`call::call_for_plugin`].
    pub(crate) fn call_raw_by_name(
        &self,
        module: &str,
        method: &str,
        input: &[u8],
        out: &mut abi::hotmod_output,
    ) -> Result<Option<Arc<Version>>> {
        self.with_method(module, method, |v, e| call::call_for_plugin(v, e, input, out))
    }

    /// Finds `module.method` in the active version and runs `f` on it,
    /// inside one read section.
    #[inline(always)]
    fn with_method<R>(
        &self,
        module: &str,
        method: &str,
        f: impl FnOnce(&rcu::Pinned<'_, Version>, &crate::registry::MethodEntry) -> Result<R>,
    ) -> Result<R> {
        let g = rcu::read();
        let Some(slot) = self.registry.load(&g).get(module) else { return Err(self.module_not_found(module)) };
        call::with_named(slot, &g, method, || self.module_not_found(module), f)
    }

    #[cold]
    fn module_not_found(&self, name: &str) -> Error {
        let names = self.registry.names();
        let loaded = if names.is_empty() { "none".to_string() } else { names.join(", ") };
        Error::new(Status::ModuleNotFound, format!("module '{name}' is not loaded; loaded modules: {loaded}"))
    }

    /// Takes the admin lock for operation `what`, or answers
    /// [`Status::Busy`] when this thread already holds it (a call from a
    /// plugin's hook, a host function or an event handler run by an
    /// administrative operation).
    fn admin(&self, what: &str) -> Result<AdminGuard<'_>> {
        if self.holds_admin() {
            return Err(Error::new(
                Status::Busy,
                format!(
                    "{what} refused: expected it to be called outside this runtime's administrative operations, \
                     found it called on the thread running one (from a plugin's init/activate/state hook, a host \
                     function it called, or an event handler); it would wait for itself. Run it after that \
                     operation returns, or from another thread"
                ),
            ));
        }
        let lock = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        self.admin_owner.store(thread_token(), Ordering::Relaxed);
        Ok(AdminGuard { owner: &self.admin_owner, _lock: lock })
    }

    /// Whether the calling thread holds the admin lock.
    fn holds_admin(&self) -> bool {
        // Only the holder stores its own token, so reading it back equal can
        // only mean that this thread holds the lock.
        self.admin_owner.load(Ordering::Relaxed) == thread_token()
    }
}

/// The admin lock, held; records its owner for the re-entrancy check.
struct AdminGuard<'a> {
    owner: &'a AtomicUsize,
    _lock: MutexGuard<'a, ()>,
}

impl Drop for AdminGuard<'_> {
    fn drop(&mut self) {
        self.owner.store(0, Ordering::Relaxed);
    }
}

/// A non-zero number unique to the calling thread among live threads (the
/// address of a thread-local).
fn thread_token() -> usize {
    thread_local! {
        static TOKEN: u8 = const { 0 };
    }
    TOKEN.with(|t| t as *const u8 as usize)
}

/// Every live runtime, for reports that concern them all (from the
/// reclaimer: a thread that exited inside a call).
static RUNTIMES: Mutex<Vec<Weak<RuntimeInner>>> = Mutex::new(Vec::new());

fn register_runtime(inner: &Arc<RuntimeInner>) {
    static REPORTER: std::sync::Once = std::sync::Once::new();
    REPORTER.call_once(|| {
        rcu::set_reporter(|msg| {
            let live: Vec<Arc<RuntimeInner>> =
                RUNTIMES.lock().unwrap_or_else(|e| e.into_inner()).iter().filter_map(Weak::upgrade).collect();
            for rt in live {
                rt.emit_event(EventKind::Log, "", "", "", format!("hotmod: {msg}"), abi::HOTMOD_LOG_WARN);
            }
        })
    });
    let mut all = RUNTIMES.lock().unwrap_or_else(|e| e.into_inner());
    all.retain(|w| w.strong_count() > 0);
    all.push(Arc::downgrade(inner));
}

/// A hotmod runtime: a set of loaded modules and the host's services.
///
/// All methods take `&self` and may be called from many threads. Dropping the
/// runtime unloads every module (dependents first).
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime::new()
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.modules().iter().map(|m| m.name().to_owned()).collect();
        f.debug_struct("Runtime").field("modules", &names).finish()
    }
}

impl Runtime {
    /// A runtime with default options.
    pub fn new() -> Runtime {
        Runtime::with_options(RuntimeOptions::default())
    }

    /// A runtime with the given options.
    pub fn with_options(options: RuntimeOptions) -> Runtime {
        let inner = Arc::new(RuntimeInner {
            registry: Registry::default(),
            admin: Mutex::new(()),
            admin_owner: AtomicUsize::new(0),
            host_fns: RcuCell::new(Some(Arc::new(FxHashMap::default()))),
            events: RwLock::new(None),
            manifests: Mutex::default(),
            watched: Arc::default(),
            kept_mapped: Arc::default(),
            options,
        });
        register_runtime(&inner);
        Runtime { inner }
    }

    /// The shared state, for the core's own modules: the directory watcher
    /// (its registration, and events outside a load, upgrade or unload) and
    /// manifests (the state kept per manifest file).
    pub(crate) fn inner(&self) -> &Arc<RuntimeInner> {
        &self.inner
    }

    /// Sets (or clears) the event handler. See [`crate::events`] for the
    /// thread it runs on.
    pub fn set_event_handler(&self, handler: Option<EventHandler>) {
        *self.inner.events.write().unwrap_or_else(|e| e.into_inner()) = handler;
    }

    /// Registers (or replaces) a host function plugins can call by name.
    pub fn register_host_function(&self, name: &str, f: Arc<dyn HostFunction>) -> Result<()> {
        if name.is_empty() {
            return Err(Error::new(Status::InvalidArgument, "expected a non-empty host function name, found \"\""));
        }
        let _g = self.inner.admin(&format!("register_host_function(\"{name}\")"))?;
        self.inner.host_fns.update(self.inner.options.drain_timeout, |m| m.insert(name.to_owned(), f));
        Ok(())
    }

    /// Removes a host function; returns whether it existed. Called from
    /// inside an administrative operation (a plugin hook, a host function or
    /// an event handler it runs), it removes the function under the lock
    /// that operation already holds.
    pub fn unregister_host_function(&self, name: &str) -> bool {
        let _g = if self.inner.holds_admin() { None } else { self.inner.admin("unregister_host_function").ok() };
        self.inner.host_fns.update(self.inner.options.drain_timeout, |m| m.remove(name).is_some())
    }

    fn fail(&self, path: &Path, module: &str, e: Error) -> Error {
        self.inner.emit_for(EventKind::UpgradeFailed, module, "", path, e.message().to_owned(), e.status().code());
        e
    }

    /// How many replaced or unloaded versions of this runtime are kept
    /// mapped because they could not be unmapped (see
    /// [`RuntimeOptions::max_kept_mapped`]).
    pub fn kept_mapped(&self) -> usize {
        self.inner.kept_mapped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Refuses a file that could never be unmapped once this runtime keeps
    /// as many versions mapped as it may.
    fn check_kept_limit(&self, path: &Path, why: &[String]) -> Result<()> {
        let kept = self.kept_mapped();
        let cap = self.inner.options.max_kept_mapped;
        if kept < cap {
            return Ok(());
        }
        Err(Error::new(
            Status::KeptMappedLimit,
            format!(
                "cannot load '{}': expected fewer than {cap} versions kept mapped (RuntimeOptions::max_kept_mapped), found {kept} already, and this file could not be unmapped either ({}); restart the process or raise the cap",
                path.display(),
                why.join("; ")
            ),
        ))
    }

    /// Reads, checks, maps and validates a plugin file (runs no plugin code
    /// other than the dynamic loader's constructors and the entry symbol).
    fn prepare(&self, path: &Path, opts: &LoadOptions) -> Result<Prepared> {
        let image = loader::read_image(path, opts)?;
        // Known before mapping: refuse without running anything.
        let blockers = image.facts.unmap_blockers();
        if !blockers.is_empty() {
            self.check_kept_limit(&image.path, &blockers)?;
        }
        let mut mapped = loader::map(&image)?;
        mapped.count_kept_in(self.inner.kept_mapped.clone());
        let shown = image.path.display().to_string();
        let desc = mapped.descriptor(&image.path)?;
        // SAFETY: the pointer came from the plugin's entry symbol, which by
        // the ABI returns a static descriptor; read_descriptor checks the
        // magic block before trusting anything else.
        let info = unsafe { descriptor::read_descriptor(desc, &shown)? };
        if !info.safe_to_unload() {
            let mut why = vec!["it does not declare HOTMOD_PLUGIN_FLAG_SAFE_TO_UNLOAD".to_owned()];
            why.extend(blockers);
            self.check_kept_limit(&image.path, &why)?;
        }
        let how = if cfg!(target_os = "linux") { "a sealed in-memory copy" } else { "a private copy" };
        self.inner.emit_for(
            EventKind::Loaded,
            &info.name,
            &info.version.to_string(),
            &image.path,
            format!("mapped from {how}"),
            0,
        );
        // The image (its memfd and the view of it) is released here: the
        // mapping holds what the library needs.
        Ok(Prepared { info, path: image.path, sha256: image.sha256, mapped })
    }

    /// Checks that every non-optional dependency of `info` is loaded in a
    /// matching version.
    fn check_dependencies(&self, info: &PluginInfo, path: &Path) -> Result<()> {
        for dep in &info.dependencies {
            match self.inner.registry.get(&dep.name).and_then(|s| s.active.load_full()) {
                Some(v) if dep.requirement.matches(&v.info.version) => {}
                Some(v) if !dep.optional => {
                    return Err(Error::new(
                        Status::DependencyUnsatisfied,
                        format!(
                            "'{}' ({}) needs module '{}' {}, found version {} loaded from '{}'",
                            info.name,
                            path.display(),
                            dep.name,
                            dep.requirement,
                            v.info.version,
                            v.path.display()
                        ),
                    ))
                }
                None if !dep.optional => {
                    return Err(Error::new(
                        Status::DependencyUnsatisfied,
                        format!(
                            "'{}' ({}) needs module '{}' {}, found no such module loaded; load it first",
                            info.name,
                            path.display(),
                            dep.name,
                            dep.requirement
                        ),
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Initialises a prepared version (with the old version's state, if
    /// any), activates it and publishes it in `slot`. Returns the version it
    /// replaced.
    fn start_and_publish(
        &self,
        p: Prepared,
        slot: &Arc<ModuleSlot>,
        old: Option<&Arc<Version>>,
        config: &[u8],
    ) -> Result<(Arc<Version>, Option<Retired<Version>>)> {
        let version_str = p.info.version.to_string();
        let name = p.info.name.clone();
        let path = p.path.clone();
        let mut v = Version::new(p.info, p.path, p.sha256, p.mapped, slot, Arc::downgrade(&self.inner));
        self.inner.emit_for(
            EventKind::Validated,
            &name,
            &version_str,
            &path,
            "descriptor and dependencies checked".into(),
            0,
        );
        let init_failed = |msg: String| {
            Error::new(Status::InitFailed, format!("'{name}' {version_str} ({}) did not start: {msg}", path.display()))
        };
        v.start(config).map_err(init_failed)?;
        if let Some(old) = old {
            match old.export_state() {
                Ok(Some(state)) => v.import_state(&state).map_err(init_failed)?,
                Ok(None) => {}
                Err(msg) => return Err(init_failed(format!("the running version's {msg}"))),
            }
        }
        v.activate().map_err(init_failed)?;
        v.set_state(State::Active);
        let v = Arc::new(v);
        let previous = slot.active.replace(Some(v.clone()));
        if let Some(prev) = &previous {
            prev.value().set_state(State::Draining);
        }
        self.inner.emit_for(EventKind::Activated, &name, &version_str, &path, "published".into(), 0);
        Ok((v, previous))
    }

    /// Waits (up to the drain timeout) for the calls in flight on a replaced
    /// version to finish, then drops the registry's reference: the last
    /// reference (this one, or an output still holding plugin memory) runs
    /// deactivate and destroy and unmaps the code if that is safe. A version
    /// still in use after the timeout is released by a background thread
    /// when its last call returns.
    fn drain(&self, old: Retired<Version>) {
        let v = old.value().clone();
        self.inner.emit_for(
            EventKind::Draining,
            &v.info.name,
            &v.info.version.to_string(),
            &v.path,
            "calls in flight finish on this version".into(),
            0,
        );
        let timeout = self.inner.options.drain_timeout;
        if !old.release(timeout) {
            self.inner.emit_for(
                EventKind::Draining,
                &v.info.name,
                &v.info.version.to_string(),
                &v.path,
                format!(
                    "still in use after the drain timeout ({} ms): a call is running on it (or a thread left a \
                     call without returning); it is destroyed when its last call returns",
                    timeout.as_millis()
                ),
                0,
            );
        }
    }

    /// Loads a plugin file and activates it.
    ///
    /// The file is read once, checked (mode, optional SHA-256), mapped from a
    /// private copy, validated (magic, ABI, descriptor, dependencies), then
    /// initialised with `opts.config` and published.
    pub fn load(&self, path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Module> {
        let path = path.as_ref();
        let _g = self.inner.admin("load")?;
        let p = self.prepare(path, opts).map_err(|e| self.fail(path, "", e))?;
        let name = p.info.name.clone();
        self.install(p, &opts.config).map_err(|e| self.fail(path, &name, e))
    }

    /// Reads what a plugin file declares without loading it as a module:
    /// the file is checked and mapped exactly as [`load`](Self::load) does
    /// and its descriptor validated, but no hook of the plugin runs (no
    /// init) and nothing is registered. The dynamic loader still runs the
    /// library's constructors in this process: to keep a file of unknown
    /// origin out of the host, inspect it from a child process (as the
    /// `hotmod inspect` command does). The library is unmapped afterwards if
    /// it declared that safe, else kept mapped.
    pub fn inspect(&self, path: impl AsRef<Path>, opts: &LoadOptions) -> Result<ModuleInfo> {
        let path = path.as_ref();
        let _g = self.inner.admin("inspect")?;
        let p = self.prepare(path, opts).map_err(|e| self.fail(path, "", e))?;
        let info = ModuleInfo::declared(&p.info, &p.path, &p.sha256, Some(p.mapped.facts()));
        if info.stays_mapped {
            p.mapped.keep_mapped();
        } else {
            p.mapped.unmap();
        }
        Ok(info)
    }

    /// Starts a prepared plugin as a new module and registers it. The caller
    /// holds the admin lock.
    fn install(&self, p: Prepared, config: &[u8]) -> Result<Module> {
        let name = p.info.name.clone();
        if let Some(existing) = self.inner.registry.get(&name).and_then(|s| s.active.load_full()) {
            return Err(Error::new(
                Status::NameConflict,
                format!(
                    "cannot load '{}': a module named '{name}' is already loaded (version {} from '{}'); upgrade it instead",
                    p.path.display(),
                    existing.info.version,
                    existing.path.display()
                ),
            ));
        }
        self.check_dependencies(&p.info, &p.path)?;
        let slot = Arc::new(ModuleSlot::new(&name));
        let (v, previous) = self.start_and_publish(p, &slot, None, config)?;
        debug_assert!(previous.is_none(), "a new slot has no previous version");
        self.inner.registry.update(|m| {
            m.insert(name.clone(), slot.clone());
        });
        Ok(Module::of(&slot, &v))
    }

    /// Loads several plugin files, in dependency order. A dependency cycle
    /// among them is refused with the cycle named; nothing is loaded unless
    /// every file validates. If one fails to start, the ones already started
    /// by this call are unloaded again.
    pub fn load_all(&self, files: &[(PathBuf, LoadOptions)]) -> Result<Vec<Module>> {
        let prepared: Vec<(Prepared, &LoadOptions)> = {
            let _g = self.inner.admin("load_all")?;
            let mut out = Vec::with_capacity(files.len());
            for (path, opts) in files {
                out.push((self.prepare(path, opts).map_err(|e| self.fail(path, "", e))?, opts));
            }
            out
        };
        let nodes: Vec<(String, Vec<String>)> = prepared
            .iter()
            .map(|(p, _)| (p.info.name.clone(), p.info.dependencies.iter().map(|d| d.name.clone()).collect()))
            .collect();
        let order = deps::topo_order(&nodes).map_err(|cycle| {
            let files: Vec<String> = cycle
                .iter()
                .filter_map(|n| prepared.iter().find(|(p, _)| &p.info.name == n))
                .map(|(p, _)| p.path.display().to_string())
                .collect();
            Error::new(
                Status::DependencyCycle,
                format!("dependency cycle: {} (files: {})", cycle.join(" -> "), files.join(", ")),
            )
        })?;
        let mut slots: Vec<Option<(Prepared, &LoadOptions)>> = prepared.into_iter().map(Some).collect();
        let mut loaded: Vec<Module> = Vec::new();
        for i in order {
            let (p, opts) = slots[i].take().expect("each index once");
            let path = p.path.clone();
            let r = self.inner.admin("load_all").and_then(|_g| self.install(p, &opts.config));
            match r {
                Ok(m) => loaded.push(m),
                Err(e) => {
                    for m in loaded.iter().rev() {
                        let _ = self.unload(m.name(), false);
                    }
                    return Err(self.fail(&path, "", e));
                }
            }
        }
        Ok(loaded)
    }

    /// Replaces the running version of module `name` with the plugin at
    /// `path`, while calls keep flowing.
    ///
    /// The new build is loaded beside the old one, validated (it must have
    /// the same name; its dependencies must be satisfied; every module that
    /// depends on this one must accept its version; methods callers hold
    /// handles to must keep their signatures unless `opts.force`),
    /// initialised, handed the old version's exported state, activated and
    /// published atomically. Calls that started before the publish finish on
    /// the old version, which is then deactivated, destroyed and (if safe)
    /// unmapped. On any failure the old version keeps serving, an
    /// `UpgradeFailed` event is emitted, and the error says why.
    pub fn upgrade(&self, name: &str, path: impl AsRef<Path>, opts: &UpgradeOptions) -> Result<Module> {
        let path = path.as_ref();
        let _g = self.inner.admin(&format!("upgrade of '{name}'"))?;
        let r = self.upgrade_locked(name, path, opts);
        // Draining waits for calls; other administrative work need not.
        drop(_g);
        match r {
            Ok((module, old)) => {
                self.drain(old);
                Ok(module)
            }
            Err(e) => Err(self.fail(path, name, e)),
        }
    }

    fn upgrade_locked(&self, name: &str, path: &Path, opts: &UpgradeOptions) -> Result<(Module, Retired<Version>)> {
        let slot = self.inner.registry.get(name).ok_or_else(|| self.inner.module_not_found(name))?;
        let old = slot.active.load_full().ok_or_else(|| self.inner.module_not_found(name))?;
        let p = self.prepare(path, &opts.load)?;
        if p.info.name != name {
            return Err(Error::new(
                Status::InvalidArgument,
                format!(
                    "cannot upgrade module '{name}' with '{}': expected a plugin named '{name}', found '{}'",
                    p.path.display(),
                    p.info.name
                ),
            ));
        }
        self.check_dependencies(&p.info, &p.path)?;
        self.check_no_cycle(&p.info, &p.path)?;
        self.check_dependents_accept(&p.info, &p.path)?;
        if !opts.force {
            check_signatures(&slot, &old, &p.info, &p.path)?;
        }
        let (v, previous) = self.start_and_publish(p, &slot, Some(&old), &opts.load.config)?;
        let module = Module::of(&slot, &v);
        // Only the retired reference may keep the old version alive now.
        drop(old);
        let previous = previous.expect("an upgraded slot had a version");
        Ok((module, previous))
    }

    /// Refuses a new version whose dependencies lead back to itself.
    fn check_no_cycle(&self, info: &PluginInfo, path: &Path) -> Result<()> {
        let mut stack: Vec<Vec<String>> =
            info.dependencies.iter().map(|d| vec![info.name.clone(), d.name.clone()]).collect();
        let mut seen = std::collections::HashSet::new();
        while let Some(chain) = stack.pop() {
            let last = chain.last().expect("non-empty chain").clone();
            if last == info.name {
                return Err(Error::new(
                    Status::DependencyCycle,
                    format!("dependency cycle introduced by '{}': {}", path.display(), chain.join(" -> ")),
                ));
            }
            if !seen.insert(last.clone()) {
                continue;
            }
            if let Some(v) = self.inner.registry.get(&last).and_then(|s| s.active.load_full()) {
                for d in &v.info.dependencies {
                    let mut next = chain.clone();
                    next.push(d.name.clone());
                    stack.push(next);
                }
            }
        }
        Ok(())
    }

    /// Refuses a new version outside the range a dependent requires.
    fn check_dependents_accept(&self, info: &PluginInfo, path: &Path) -> Result<()> {
        for (_, v) in self.inner.registry.active_versions() {
            for d in &v.info.dependencies {
                if d.name == info.name && !d.requirement.matches(&info.version) {
                    return Err(Error::new(
                        Status::VersionConflict,
                        format!(
                            "cannot upgrade '{}' to {} from '{}': module '{}' {} requires '{}' {}",
                            info.name,
                            info.version,
                            path.display(),
                            v.info.name,
                            v.info.version,
                            info.name,
                            d.requirement
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Names of the loaded modules that need `name` (non-optional).
    fn dependents_of(&self, name: &str) -> Vec<String> {
        self.inner
            .registry
            .active_versions()
            .into_iter()
            .filter(|(_, v)| v.info.dependencies.iter().any(|d| d.name == name && !d.optional))
            .map(|(s, _)| s.name.clone())
            .collect()
    }

    /// Unloads module `name`: it stops taking new calls at once, calls in
    /// flight finish, then it is destroyed (and unmapped if safe). Refused
    /// with [`Status::ModuleInUse`] while other modules need it, unless
    /// `cascade`, which unloads those dependents first.
    pub fn unload(&self, name: &str, cascade: bool) -> Result<()> {
        let mut old = Vec::new();
        {
            let _g = self.inner.admin(&format!("unload of '{name}'"))?;
            self.unload_locked(name, cascade, &mut old)?;
        }
        for v in old {
            self.drain(v);
        }
        Ok(())
    }

    fn unload_locked(&self, name: &str, cascade: bool, out: &mut Vec<Retired<Version>>) -> Result<()> {
        let slot = self.inner.registry.get(name).ok_or_else(|| self.inner.module_not_found(name))?;
        let dependents = self.dependents_of(name);
        if !dependents.is_empty() {
            if !cascade {
                return Err(Error::new(
                    Status::ModuleInUse,
                    format!(
                        "cannot unload '{name}': expected no loaded module to depend on it, found {} depending on it (unload them first, or cascade)",
                        dependents.join(", ")
                    ),
                ));
            }
            for d in dependents {
                if self.inner.registry.get(&d).is_some() {
                    self.unload_locked(&d, true, out)?;
                }
            }
        }
        self.inner.registry.update(|m| {
            m.remove(name);
        });
        if let Some(v) = slot.active.replace(None) {
            v.value().set_state(State::Draining);
            out.push(v);
        }
        Ok(())
    }

    /// The module named `name`.
    pub fn module(&self, name: &str) -> Result<Module> {
        let slot = self.inner.registry.get(name).ok_or_else(|| self.inner.module_not_found(name))?;
        let v = slot.active.load_full().ok_or_else(|| self.inner.module_not_found(name))?;
        Ok(Module::of(&slot, &v))
    }

    /// All loaded modules, sorted by name.
    pub fn modules(&self) -> Vec<Module> {
        self.inner.registry.active_versions().iter().map(|(s, v)| Module::of(s, v)).collect()
    }

    /// Resolves `module.method` to a handle (the fast path for repeated calls).
    pub fn method(&self, module: &str, method: &str) -> Result<MethodHandle> {
        let g = rcu::read();
        let slot = self.inner.registry.load(&g).get(module);
        let Some((slot, v)) = slot.and_then(|s| Some((s, s.active.load(&g)?))) else {
            return Err(self.inner.module_not_found(module));
        };
        MethodHandle::resolve(slot, &v, method)
    }

    /// Calls `module.method` by name. The output is zero-copy when the plugin
    /// returns its own memory.
    pub fn call(&self, module: &str, method: &str, input: &[u8]) -> Result<Output> {
        self.inner.with_method(module, method, |v, e| call::call_owned(v, e, input, call::DEFAULT_OUTPUT_OFFER))
    }

    /// Calls `module.method` by name, writing the output into `dst`;
    /// returns the number of bytes written.
    #[inline]
    pub fn call_into(&self, module: &str, method: &str, input: &[u8], dst: &mut [u8]) -> Result<usize> {
        self.inner.with_method(module, method, |v, e| call::call_into(v, e, input, dst))
    }

    /// Statistics of every method of every loaded module, sorted by module
    /// then method slot. Counters persist across upgrades.
    pub fn stats(&self) -> Vec<MethodStats> {
        let mut out = Vec::new();
        for (slot, v) in self.inner.registry.active_versions() {
            for shared in slot.all_slots() {
                out.push(MethodStats {
                    module: slot.name.clone(),
                    version: v.info.version.to_string(),
                    method: shared.name.clone(),
                    present: v.by_name.contains_key(&shared.name),
                    handles: shared.handles.load(std::sync::atomic::Ordering::Relaxed),
                    counters: shared.counters.snapshot(),
                });
            }
        }
        out
    }

    /// The statistics in Prometheus text exposition format.
    pub fn stats_prometheus(&self) -> String {
        crate::metrics::prometheus(&self.stats())
    }

    /// The lifecycle state of module `name`'s active version.
    pub fn state(&self, name: &str) -> Result<State> {
        let slot = self.inner.registry.get(name).ok_or_else(|| self.inner.module_not_found(name))?;
        let v = slot.active.load_full().ok_or_else(|| self.inner.module_not_found(name))?;
        Ok(v.state())
    }
}

/// Refuses a new version that removes or changes a method callers hold
/// handles to.
fn check_signatures(slot: &ModuleSlot, old: &Version, new: &PluginInfo, path: &Path) -> Result<()> {
    for shared in slot.all_slots() {
        if shared.handles.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            continue;
        }
        let Some(&id) = old.by_name.get(&shared.name) else { continue };
        let old_hash = old.entry(id).expect("present").signature_hash;
        let old_sig = &old.info.methods.iter().find(|m| m.name == shared.name).expect("declared").signature;
        match new.methods.iter().find(|m| m.name == shared.name) {
            None => {
                return Err(Error::new(
                    Status::SignatureMismatch,
                    format!(
                        "upgrade of '{}' to {} refused: '{}' removes method '{}' (signature \"{old_sig}\"), which callers hold handles to; force the upgrade to accept",
                        new.name,
                        new.version,
                        path.display(),
                        shared.name
                    ),
                ))
            }
            Some(m) if m.signature_hash != old_hash => {
                return Err(Error::new(
                    Status::SignatureMismatch,
                    format!(
                        "upgrade of '{}' to {} refused: method '{}' has signature \"{old_sig}\" in the running version, found \"{}\" in '{}'; callers hold handles to it; force the upgrade to accept",
                        new.name,
                        new.version,
                        shared.name,
                        m.signature,
                        path.display()
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

impl Drop for Runtime {
    /// Unloads every module, dependents before the modules they need.
    fn drop(&mut self) {
        let nodes: Vec<(String, Vec<String>)> = self
            .inner
            .registry
            .active_versions()
            .iter()
            .map(|(s, v)| (s.name.clone(), v.info.dependencies.iter().map(|d| d.name.clone()).collect()))
            .collect();
        let order = deps::order_or_as_given(&nodes);
        for i in order.into_iter().rev() {
            let _ = self.unload(&nodes[i].0, true);
        }
    }
}
