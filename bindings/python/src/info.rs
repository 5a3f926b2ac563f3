//! Plain records handed to Python: method and dependency declarations,
//! per-method statistics and lifecycle events. Immutable snapshots; none
//! refers back to the runtime.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

/// One method as a module declares it.
#[pyclass(module = "hotmod", name = "MethodInfo", frozen, get_all, eq)]
#[derive(Clone, PartialEq, Eq)]
pub struct MethodInfo {
    /// Method name.
    pub name: String,
    /// Declared signature string, e.g. "bytes -> u32le".
    pub signature: String,
    /// Hash of name and signature (changes when the signature does).
    pub signature_hash: u64,
}

impl From<&hotmod_core::MethodInfo> for MethodInfo {
    fn from(m: &hotmod_core::MethodInfo) -> Self {
        MethodInfo { name: m.name.clone(), signature: m.signature.clone(), signature_hash: m.signature_hash }
    }
}

#[pymethods]
impl MethodInfo {
    fn __repr__(&self) -> String {
        format!("<hotmod.MethodInfo {} ({:?}) hash={:016x}>", self.name, self.signature, self.signature_hash)
    }
}

/// One dependency as a module declares it.
#[pyclass(module = "hotmod", name = "DependencyInfo", frozen, get_all, eq)]
#[derive(Clone, PartialEq, Eq)]
pub struct DependencyInfo {
    /// Name of the module needed.
    pub name: String,
    /// Semver range required, e.g. "^1".
    pub requirement: String,
    /// Whether the dependency is optional.
    pub optional: bool,
}

impl From<&hotmod_core::DependencyInfo> for DependencyInfo {
    fn from(d: &hotmod_core::DependencyInfo) -> Self {
        DependencyInfo { name: d.name.clone(), requirement: d.requirement.clone(), optional: d.optional }
    }
}

#[pymethods]
impl DependencyInfo {
    fn __repr__(&self) -> String {
        let opt = if self.optional { " (optional)" } else { "" };
        format!("<hotmod.DependencyInfo {} {}{opt}>", self.name, self.requirement)
    }
}

/// What the loader read from a plugin file's ELF headers before mapping it.
#[pyclass(module = "hotmod", name = "ElfFacts", frozen, get_all, eq)]
#[derive(Clone, PartialEq, Eq)]
pub struct ElfFacts {
    /// The machine the file is built for ("x86_64", "aarch64", ...); ""
    /// for a file that is not ELF (macOS and Windows builds).
    pub machine: String,
    /// ELF class: 32 or 64 (0 if not ELF). Named `class` in the core;
    /// `class` is a keyword in Python.
    pub elf_class: u8,
    /// DF_1_NODELETE: the dynamic loader never unmaps it.
    pub nodelete: bool,
    /// A PT_TLS segment: the library has thread-local variables.
    pub tls: bool,
    /// DF_STATIC_TLS: its thread-local storage uses the static model, whose
    /// space cannot be given back once the library is loaded.
    pub static_tls: bool,
    /// Exported STB_GNU_UNIQUE symbols (the first few names): the dynamic
    /// loader keeps such a library loaded for the process.
    pub gnu_unique: Vec<String>,
    /// A Go runtime is linked in: Go cannot be unloaded.
    pub go_runtime: bool,
    /// Constructors run when the file is mapped (DT_INIT plus the
    /// DT_INIT_ARRAY entries).
    pub constructors: usize,
    /// Whether the entry symbol was found and checked in .dynsym before
    /// mapping (false for a library without section headers, or not ELF).
    pub entry_checked: bool,
    /// Why the library can never really be unmapped (empty if nothing in
    /// the file prevents it).
    pub unmap_blockers: Vec<String>,
}

impl From<&hotmod_core::ElfFacts> for ElfFacts {
    fn from(e: &hotmod_core::ElfFacts) -> Self {
        ElfFacts {
            machine: e.machine.clone(),
            elf_class: e.class,
            nodelete: e.nodelete,
            tls: e.tls,
            static_tls: e.static_tls,
            gnu_unique: e.gnu_unique.clone(),
            go_runtime: e.go_runtime,
            constructors: e.constructors,
            entry_checked: e.entry_checked,
            unmap_blockers: e.unmap_blockers(),
        }
    }
}

#[pymethods]
impl ElfFacts {
    fn __repr__(&self) -> String {
        format!(
            "<hotmod.ElfFacts {} class={} nodelete={} static_tls={} gnu_unique={:?} go_runtime={} constructors={}>",
            self.machine,
            self.elf_class,
            self.nodelete,
            self.static_tls,
            self.gnu_unique,
            self.go_runtime,
            self.constructors
        )
    }
}

/// Statistics of one method, summed over every version of its module.
#[pyclass(module = "hotmod", name = "MethodStats", frozen, get_all)]
pub struct MethodStats {
    /// Module name.
    pub module: String,
    /// Active version of the module.
    pub version: String,
    /// Method name.
    pub method: String,
    /// Whether the active version has this method (a forced upgrade may have
    /// removed it while its counters remain).
    pub present: bool,
    /// Method handles callers hold.
    pub handles: usize,
    /// Calls started.
    pub calls: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Calls in which the plugin panicked.
    pub panics: u64,
    /// Calls whose latency was sampled (one call in 128 of each method).
    pub latency_samples: u64,
    /// Mean sampled latency, nanoseconds (0 without samples).
    pub mean_ns: u64,
    /// Median sampled latency (upper bound of its log2 bucket), nanoseconds.
    pub p50_ns: u64,
    /// 99th percentile sampled latency (upper bound of its bucket), nanoseconds.
    pub p99_ns: u64,
}

impl From<&hotmod_core::MethodStats> for MethodStats {
    fn from(s: &hotmod_core::MethodStats) -> Self {
        let c = &s.counters;
        MethodStats {
            module: s.module.clone(),
            version: s.version.clone(),
            method: s.method.clone(),
            present: s.present,
            handles: s.handles,
            calls: c.calls,
            errors: c.errors,
            panics: c.panics,
            latency_samples: c.latency_samples,
            mean_ns: c.mean_ns(),
            p50_ns: c.quantile_ns(0.5),
            p99_ns: c.quantile_ns(0.99),
        }
    }
}

#[pymethods]
impl MethodStats {
    /// The fields as a dict.
    fn as_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("module", &self.module)?;
        d.set_item("version", &self.version)?;
        d.set_item("method", &self.method)?;
        d.set_item("present", self.present)?;
        d.set_item("handles", self.handles)?;
        d.set_item("calls", self.calls)?;
        d.set_item("errors", self.errors)?;
        d.set_item("panics", self.panics)?;
        d.set_item("latency_samples", self.latency_samples)?;
        d.set_item("mean_ns", self.mean_ns)?;
        d.set_item("p50_ns", self.p50_ns)?;
        d.set_item("p99_ns", self.p99_ns)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "<hotmod.MethodStats {}@{}.{} calls={} errors={} panics={} mean={}ns>",
            self.module, self.version, self.method, self.calls, self.errors, self.panics, self.mean_ns
        )
    }
}

static EVENT_KIND: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A lifecycle event (or a plugin's log line).
#[pyclass(module = "hotmod", name = "Event", frozen, get_all)]
pub struct Event {
    /// What happened: a `hotmod.EventKind` (a plain int for a kind this
    /// version of the package does not know).
    pub kind: Py<PyAny>,
    /// Module name ("" when not known yet, e.g. for a corrupt file).
    pub module: String,
    /// Module version ("" when not known).
    pub version: String,
    /// Plugin file involved ("" if none).
    pub path: String,
    /// Details: for UPGRADE_FAILED the reason, for LOG the line.
    pub message: String,
    /// Status code of a failure (0 otherwise), or the level of a LOG line.
    pub code: i32,
}

impl Event {
    /// Converts a core event (the GIL is held).
    pub fn new(py: Python<'_>, ev: &hotmod_core::Event) -> PyResult<Event> {
        let code = ev.kind as i32;
        // A kind newer than this package's enum still reaches the handler, as an int.
        let kind = match EVENT_KIND.import(py, "hotmod._enums", "EventKind")?.call1((code,)) {
            Ok(k) => k.unbind(),
            Err(_) => code.into_pyobject(py)?.into_any().unbind(),
        };
        Ok(Event {
            kind,
            module: ev.module.clone(),
            version: ev.version.clone(),
            path: ev.path.clone(),
            message: ev.message.clone(),
            code: ev.code,
        })
    }
}

#[pymethods]
impl Event {
    fn __repr__(&self, py: Python<'_>) -> String {
        let kind = self.kind.bind(py).getattr("name").map(|s| s.to_string()).unwrap_or_default();
        format!(
            "<hotmod.Event {kind} module={:?} version={:?} code={} message={:?}>",
            self.module, self.version, self.code, self.message
        )
    }
}
