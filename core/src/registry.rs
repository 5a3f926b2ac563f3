//! The registry: module slots by name, and the versions they point to.
//!
//! A [`ModuleSlot`] is the stable identity of a module across upgrades. It
//! holds the active [`Version`] in an [`RcuCell`], so the call path reads it
//! inside a read section with one plain load, an upgrade publishes a new
//! version with one atomic swap, and the old version is destroyed only after
//! a grace period: once every call that could have seen it has returned. Method *slots* (one per method name ever seen in the module)
//! give handles a stable index: each version maps slot index to its own
//! function pointer, so a handle resolved against v1 reaches v2's function.
//!
//! The name → slot map is copy-on-write in an `RcuCell` too: lookups by
//! name take no lock; the rare writers (load, unload) serialise on the
//! runtime's admin lock.

use std::ffi::c_void;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use hotmod_abi as abi;
use rustc_hash::FxHashMap;

use crate::descriptor::{MethodFn, PluginInfo};
use crate::events::EventKind;
use crate::host::HostCtx;
use crate::loader::Mapped;
use crate::metrics::MethodCounters;
use crate::rcu::{self, RcuCell, ReadGuard};
use crate::runtime::RuntimeInner;

/// Lifecycle state of one module version.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Mapped; entry symbol found. Reserved: never reported today (a
    /// version becomes visible once validated).
    Loaded = 0,
    /// Descriptor and dependencies checked.
    Validated = 1,
    /// Initialised and published: serving calls.
    Active = 2,
    /// Replaced or removed; calls in flight finish on it.
    Draining = 3,
    /// Destroyed.
    Unloaded = 4,
}

impl State {
    /// The state's name in lower case ("loaded", "validated", "active",
    /// "draining", "unloaded"), as the bindings report it.
    pub fn name(self) -> &'static str {
        match self {
            State::Loaded => "loaded",
            State::Validated => "validated",
            State::Active => "active",
            State::Draining => "draining",
            State::Unloaded => "unloaded",
        }
    }

    fn from_u8(v: u8) -> State {
        match v {
            0 => State::Loaded,
            1 => State::Validated,
            2 => State::Active,
            3 => State::Draining,
            _ => State::Unloaded,
        }
    }
}

/// What all versions of one method share: its name, its counters, how
/// many handles callers hold to it, and how much output it needed.
#[derive(Debug)]
pub(crate) struct SlotShared {
    pub name: String,
    pub counters: MethodCounters,
    pub handles: AtomicUsize,
    /// The largest output (in bytes, within the runtime's cap) this method
    /// asked for with `HOTMOD_PLUGIN_OUTPUT_TOO_SMALL`, so later calls offer
    /// that much at once and the method runs once per call. Relaxed: it is
    /// a hint, written only when it grows.
    pub size_hint: AtomicUsize,
}

impl SlotShared {
    /// Remembers that the method needed `len` bytes of output.
    #[cold]
    pub fn note_size(&self, len: usize) {
        if len > self.size_hint.load(Ordering::Relaxed) {
            self.size_hint.store(len, Ordering::Relaxed);
        }
    }
}

/// One method of one version, as the call path sees it: the call is
/// `(func)(ctx, input, output)`. In process `ctx` is the plugin instance
/// (filled in after `init`, before the version is published); an entry can
/// equally point at a proxy with its own context, so every kind of version
/// goes through the same call path without a branch.
pub(crate) struct MethodEntry {
    pub func: MethodFn,
    pub ctx: *mut c_void,
    pub signature_hash: u64,
    pub shared: Arc<SlotShared>,
    /// The most output bytes a call may ask for (the runtime's
    /// `max_output_size`).
    pub max_output: usize,
    /// The version's count of error messages pending on some thread.
    pub pending: crate::call::PendingErrors,
}

/// The stable identity of a module across upgrades.
pub(crate) struct ModuleSlot {
    pub name: String,
    pub active: RcuCell<Version>,
    /// Method slots, indexed by slot id; only ever appended to.
    pub methods: Mutex<Vec<Arc<SlotShared>>>,
}

impl ModuleSlot {
    pub fn new(name: &str) -> ModuleSlot {
        ModuleSlot { name: name.to_owned(), active: RcuCell::new(None), methods: Mutex::new(Vec::new()) }
    }

    /// The slot id for method `name`, created if new.
    pub fn slot_for(&self, name: &str) -> (usize, Arc<SlotShared>) {
        let mut methods = self.methods.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = methods.iter().position(|m| m.name == name) {
            return (i, methods[i].clone());
        }
        let shared = Arc::new(SlotShared {
            name: name.to_owned(),
            counters: MethodCounters::default(),
            handles: AtomicUsize::new(0),
            size_hint: AtomicUsize::new(0),
        });
        methods.push(shared.clone());
        (methods.len() - 1, shared)
    }

    /// Every method slot, in slot order.
    pub fn all_slots(&self) -> Vec<Arc<SlotShared>> {
        self.methods.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// One loaded build of a module.
pub(crate) struct Version {
    pub info: PluginInfo,
    pub path: PathBuf,
    pub sha256: [u8; 32],
    /// Method entries by slot id (None: this version lacks that method).
    pub entries: Vec<Option<MethodEntry>>,
    /// Method name → slot id, for calls by name.
    pub by_name: FxHashMap<String, usize>,
    pub instance: *mut c_void,
    pub host: Box<HostCtx>,
    state: AtomicU8,
    initialized: bool,
    activated: bool,
    mapped: Option<Mapped>,
    runtime: Weak<RuntimeInner>,
}

// SAFETY: the plugin contract requires methods and hooks to be callable from
// any thread; `instance` is only ever passed back to the plugin.
unsafe impl Send for Version {}
// SAFETY: as above; all mutable state is atomic.
unsafe impl Sync for Version {}

impl Version {
    /// Builds a version over a mapped, validated plugin, assigning method
    /// slots in `slot`. Nothing of the plugin has run yet.
    pub fn new(
        info: PluginInfo,
        path: PathBuf,
        sha256: [u8; 32],
        mapped: Mapped,
        slot: &ModuleSlot,
        runtime: Weak<RuntimeInner>,
    ) -> Version {
        let host = HostCtx::new(runtime.clone(), &info);
        let max_output = runtime.upgrade().map_or(crate::runtime::DEFAULT_MAX_OUTPUT_SIZE, |rt| rt.max_output_size());
        let mut entries: Vec<Option<MethodEntry>> = Vec::new();
        let mut by_name = FxHashMap::default();
        for m in &info.methods {
            let (id, shared) = slot.slot_for(&m.name);
            if entries.len() <= id {
                entries.resize_with(id + 1, || None);
            }
            // ctx stays NULL until init produced the instance (see `start`).
            entries[id] = Some(MethodEntry {
                func: m.func,
                ctx: std::ptr::null_mut(),
                signature_hash: m.signature_hash,
                shared,
                max_output,
                pending: host.pending.clone(),
            });
            by_name.insert(m.name.clone(), id);
        }
        Version {
            info,
            path,
            sha256,
            entries,
            by_name,
            instance: std::ptr::null_mut(),
            host,
            state: AtomicU8::new(State::Validated as u8),
            initialized: false,
            activated: false,
            mapped: Some(mapped),
            runtime,
        }
    }

    /// What the loader read from the file's ELF headers.
    pub fn elf(&self) -> Option<&crate::loader::ElfFacts> {
        self.mapped.as_ref().map(Mapped::facts)
    }

    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    pub fn set_state(&self, s: State) {
        self.state.store(s as u8, Ordering::Release);
    }

    /// The entry for slot `id`, if this version has that method.
    #[inline(always)]
    pub fn entry(&self, id: usize) -> Option<&MethodEntry> {
        self.entries.get(id).and_then(Option::as_ref)
    }

    /// Runs `init` and gives every method entry the instance it produced
    /// as its context. On failure the version is left uninitialised and the
    /// plugin's message is returned.
    pub fn start(&mut self, config: &[u8]) -> Result<(), String> {
        let hooks = self.info.hooks;
        if let Some(init) = hooks.init {
            let scope = crate::call::ErrorScope::enter();
            let mut inst: *mut c_void = std::ptr::null_mut();
            // SAFETY: init receives the host table (alive until destroy) and a
            // config view valid for the call.
            let rc = unsafe { init(&self.host.api, abi::hotmod_slice::from_bytes(config), &mut inst) };
            if rc != abi::HOTMOD_PLUGIN_OK {
                return Err(format!("init failed: {}", scope.failure(rc)));
            }
            self.instance = inst;
        }
        // Before publish: no call can see the entries yet.
        let inst = self.instance;
        for e in self.entries.iter_mut().flatten() {
            e.ctx = inst;
        }
        self.initialized = true;
        Ok(())
    }

    /// Runs the `activate` hook.
    pub fn activate(&mut self) -> Result<(), String> {
        if let Some(activate) = self.info.hooks.activate {
            let scope = crate::call::ErrorScope::enter();
            let inst = self.instance;
            // SAFETY: instance came from this plugin's init.
            let rc = unsafe { activate(inst) };
            if rc != abi::HOTMOD_PLUGIN_OK {
                return Err(format!("activate failed: {}", scope.failure(rc)));
            }
        }
        self.activated = true;
        Ok(())
    }

    /// Asks the plugin for state to hand to its successor (None if the
    /// plugin has no `export_state` hook). The size the plugin asks for is
    /// bounded by the runtime's `max_output_size`, and the allocation may
    /// fail without aborting.
    pub fn export_state(&self) -> Result<Option<Vec<u8>>, String> {
        let Some(export) = self.info.hooks.export_state else { return Ok(None) };
        let scope = crate::call::ErrorScope::enter();
        let inst = self.instance;
        let mut buf: Vec<u8> = Vec::new();
        let mut out = abi::hotmod_output::offering(std::ptr::null_mut(), 0);
        // SAFETY: instance came from this plugin's init; out is a fresh slot.
        let mut rc = unsafe { export(inst, &mut out) };
        if rc == abi::HOTMOD_PLUGIN_OUTPUT_TOO_SMALL && out.len > 0 {
            let need = out.len;
            crate::call::release_now(&mut out);
            let cap = self.runtime.upgrade().map_or(crate::runtime::DEFAULT_MAX_OUTPUT_SIZE, |rt| rt.max_output_size());
            if need > cap {
                return Err(format!(
                    "export_state failed: expected at most {cap} bytes of state (max_output_size), the plugin asked for {need}"
                ));
            }
            buf.try_reserve_exact(need).map_err(|_| {
                format!("export_state failed: could not allocate the {need} bytes of state it asked for")
            })?;
            out = abi::hotmod_output::offering(buf.as_mut_ptr(), buf.capacity());
            // SAFETY: as above, now with the space the plugin asked for.
            rc = unsafe { export(inst, &mut out) };
        }
        if rc != abi::HOTMOD_PLUGIN_OK {
            crate::call::release_now(&mut out);
            return Err(format!("export_state failed: {}", scope.failure(rc)));
        }
        // SAFETY: the plugin filled `out` per the output protocol.
        unsafe { crate::call::take_output_bytes(&mut out) }.map(Some)
    }

    /// Hands exported state to this (new) version.
    pub fn import_state(&self, state: &[u8]) -> Result<(), String> {
        let Some(import) = self.info.hooks.import_state else { return Ok(()) };
        let scope = crate::call::ErrorScope::enter();
        let inst = self.instance;
        // SAFETY: instance came from this plugin's init; state is valid for the call.
        let rc = unsafe { import(inst, abi::hotmod_slice::from_bytes(state)) };
        if rc != abi::HOTMOD_PLUGIN_OK {
            return Err(format!("import_state failed: {}", scope.failure(rc)));
        }
        Ok(())
    }

    fn emit(&self, kind: EventKind, message: String) {
        if let Some(rt) = self.runtime.upgrade() {
            rt.emit_for(kind, &self.info.name, &self.info.version.to_string(), &self.path, message, 0);
        }
    }
}

impl Drop for Version {
    /// The end of a version: deactivate, destroy, then unmap if the plugin
    /// declared that safe. Runs exactly once, after the last call on this
    /// version returned, because every call holds a reference to it.
    fn drop(&mut self) {
        // Whatever the plugin says from these hooks concerns no later call.
        let _scope = crate::call::ErrorScope::enter();
        let hooks = self.info.hooks;
        if self.activated {
            if let Some(deactivate) = hooks.deactivate {
                // SAFETY: the instance is live; no call is in flight any more.
                unsafe { deactivate(self.instance) };
            }
        }
        if self.initialized {
            if let Some(destroy) = hooks.destroy {
                // SAFETY: as above; destroy runs exactly once, here.
                unsafe { destroy(self.instance) };
            }
        }
        self.set_state(State::Unloaded);
        let initialized = self.initialized;
        if initialized {
            self.emit(EventKind::Unloaded, "destroyed after its last call".into());
        }
        if let Some(mapped) = self.mapped.take() {
            // The flag is the plugin's word; the ELF facts are what the
            // dynamic loader will do. Either can keep the code mapped, and
            // the event says which.
            let mut why = mapped.facts().unmap_blockers();
            if !self.info.safe_to_unload() {
                why.insert(0, "the plugin did not declare HOTMOD_PLUGIN_FLAG_SAFE_TO_UNLOAD".to_owned());
            }
            if why.is_empty() {
                let still_mapped = mapped.unmap();
                if still_mapped && initialized {
                    self.emit(
                        EventKind::KeptMapped,
                        "still mapped after dlclose: the dynamic loader keeps it (for example while thread-local destructors of it are pending)".into(),
                    );
                }
            } else {
                mapped.keep_mapped();
                if initialized {
                    self.emit(EventKind::KeptMapped, format!("kept mapped: {}", why.join("; ")));
                }
            }
        }
    }
}

/// The name → slot map.
pub(crate) type SlotMap = FxHashMap<String, Arc<ModuleSlot>>;

/// Name → module slot, copy-on-write.
pub(crate) struct Registry {
    map: RcuCell<SlotMap>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry { map: RcuCell::new(Some(Arc::new(SlotMap::default()))) }
    }
}

impl Registry {
    /// The map, for the duration of a read section.
    #[inline(always)]
    pub fn load<'g>(&self, guard: &'g ReadGuard) -> &'g SlotMap {
        self.map.load(guard).expect("the registry always holds a map").into_ref()
    }

    pub fn get(&self, name: &str) -> Option<Arc<ModuleSlot>> {
        let g = rcu::read();
        self.load(&g).get(name).cloned()
    }

    /// Sorted names of the registered modules.
    pub fn names(&self) -> Vec<String> {
        let g = rcu::read();
        let mut names: Vec<String> = self.load(&g).keys().cloned().collect();
        names.sort();
        names
    }

    /// Inserts or removes under the caller's admin lock.
    pub fn update(&self, f: impl FnOnce(&mut SlotMap)) {
        self.map.update(std::time::Duration::from_millis(100), f)
    }

    /// The active versions of all modules, sorted by name.
    pub fn active_versions(&self) -> Vec<(Arc<ModuleSlot>, Arc<Version>)> {
        let g = rcu::read();
        let mut v: Vec<_> =
            self.load(&g).values().filter_map(|s| s.active.load(&g).map(|v| (s.clone(), v.to_arc()))).collect();
        drop(g);
        v.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        v
    }
}

#[cfg(test)]
mod tests {
    use crate::{LoadOptions, Runtime};

    fn plugin(name: &str) -> std::path::PathBuf {
        let dir = std::env::var_os("HOTMOD_PLUGIN_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../build/plugins")));
        dir.join(format!("lib{name}.so"))
    }

    #[test]
    fn every_entry_of_a_published_version_carries_the_instance_as_its_context() {
        let path = plugin("lifecycle");
        assert!(path.is_file(), "expected {} (run `make plugins`)", path.display());
        let rt = Runtime::new();
        rt.load(&path, &LoadOptions::default()).unwrap();
        let v = rt.inner().active_version("lifecycle").unwrap();
        assert!(!v.instance.is_null(), "the SDK's init produces an instance");
        let entries: Vec<_> = v.entries.iter().flatten().collect();
        assert_eq!(entries.len(), v.info.methods.len());
        for e in entries {
            assert_eq!(e.ctx, v.instance, "method '{}'", e.shared.name);
            assert_eq!(e.max_output, crate::DEFAULT_MAX_OUTPUT_SIZE);
        }
    }
}
