//! Status codes: the numbers in `err.code`, the same in C, Python and Node.

use hotmod_core::Status as CoreStatus;
use napi::bindgen_prelude::*;
use napi_derive::napi;

/// hotmod status codes: the value of `code` on every error this module
/// throws or rejects with. Stable numbers, shared with the C API and the
/// Python binding. The exported object is frozen.
#[napi]
pub enum Status {
    /// Success.
    Ok = 0,
    /// The plugin file does not exist.
    FileMissing = 1001,
    /// A declared dependency is not loaded, or its version is outside the range.
    DependencyUnsatisfied = 1002,
    /// The plugin file (or its directory) cannot be read, or its mode grants no read permission.
    PermissionDenied = 1003,
    /// The library does not export `hotmod_plugin_v1`.
    EntrySymbolMissing = 1004,
    /// The file is not a loadable shared library (not ELF/PE, truncated, wrong architecture).
    NotALibrary = 1005,
    /// The descriptor does not start with the hotmod magic number.
    NotAPlugin = 1006,
    /// The plugin was built for an ABI major this runtime does not speak.
    AbiUnsupported = 1007,
    /// The descriptor is malformed: bad size, names, version, methods or dependencies.
    InvalidDescriptor = 1008,
    /// The file's SHA-256 differs from the expected one.
    HashMismatch = 1009,
    /// An upgrade removes or changes a method that callers hold handles to.
    SignatureMismatch = 1010,
    /// A module with this name is already loaded.
    NameConflict = 1011,
    /// The dependencies form a cycle.
    DependencyCycle = 1012,
    /// The plugin's `init`, `activate` or state import failed (or panicked).
    InitFailed = 1013,
    /// The manifest cannot be read or is invalid.
    BadManifest = 1014,
    /// The new version is outside a dependent module's required range.
    VersionConflict = 1015,
    /// The file or its directory is writable by anyone.
    UnsafeFile = 1016,
    /// The file (plugin or manifest) is larger than the configured cap.
    FileTooLarge = 1017,
    /// Mapping the file in a preflight child process failed (the loader or a constructor crashed, exited or hung there).
    PreflightFailed = 1018,
    /// Too many versions of modules that cannot be unmapped are kept mapped.
    KeptMappedLimit = 1019,
    /// The sandbox asked for is not available on this system, and running without it was not allowed.
    SandboxUnavailable = 1020,
    /// The out-of-process worker could not be found or started.
    WorkerUnavailable = 1021,
    /// No method of that name in the module.
    MethodNotFound = 2001,
    /// No module of that name is loaded.
    ModuleNotFound = 2002,
    /// The plugin method returned an error.
    PluginError = 2003,
    /// The plugin method panicked (caught by the SDK or a worker).
    PluginPanicked = 2004,
    /// The plugin crashed (out-of-process worker died).
    PluginCrashed = 2005,
    /// The call did not finish in time.
    Timeout = 2006,
    /// The method's circuit breaker is open.
    CircuitOpen = 2007,
    /// The handle's module was unloaded, or its method removed by a forced upgrade.
    StaleHandle = 2008,
    /// The output does not fit in the space the caller offered.
    OutputTooLarge = 2009,
    /// A forced upgrade changed the signature of the method this handle resolved.
    SignatureChanged = 2010,
    /// The plugin filled the output slot in a way the protocol forbids.
    InvalidOutput = 2011,
    /// A required pointer argument was NULL.
    NullArgument = 3001,
    /// An argument has an invalid value (for example a name that is not UTF-8).
    InvalidArgument = 3002,
    /// The object is busy (for example an operation is already running).
    Busy = 3003,
    /// The module is needed by other loaded modules.
    ModuleInUse = 3004,
    /// An operating-system I/O error.
    Io = 9001,
    /// An internal error: a bug in hotmod (for example a caught panic).
    Internal = 9002,
}

// Not called: the exhaustive match is what matters, failing the build when
// the core gains a status that this enum (and so index.d.ts) lacks. The
// test suite checks the names and numbers against `statusTable()`.
impl From<CoreStatus> for Status {
    fn from(s: CoreStatus) -> Status {
        match s {
            CoreStatus::Ok => Status::Ok,
            CoreStatus::FileMissing => Status::FileMissing,
            CoreStatus::DependencyUnsatisfied => Status::DependencyUnsatisfied,
            CoreStatus::PermissionDenied => Status::PermissionDenied,
            CoreStatus::EntrySymbolMissing => Status::EntrySymbolMissing,
            CoreStatus::NotALibrary => Status::NotALibrary,
            CoreStatus::NotAPlugin => Status::NotAPlugin,
            CoreStatus::AbiUnsupported => Status::AbiUnsupported,
            CoreStatus::InvalidDescriptor => Status::InvalidDescriptor,
            CoreStatus::HashMismatch => Status::HashMismatch,
            CoreStatus::SignatureMismatch => Status::SignatureMismatch,
            CoreStatus::NameConflict => Status::NameConflict,
            CoreStatus::DependencyCycle => Status::DependencyCycle,
            CoreStatus::InitFailed => Status::InitFailed,
            CoreStatus::BadManifest => Status::BadManifest,
            CoreStatus::VersionConflict => Status::VersionConflict,
            CoreStatus::UnsafeFile => Status::UnsafeFile,
            CoreStatus::FileTooLarge => Status::FileTooLarge,
            CoreStatus::PreflightFailed => Status::PreflightFailed,
            CoreStatus::KeptMappedLimit => Status::KeptMappedLimit,
            CoreStatus::SandboxUnavailable => Status::SandboxUnavailable,
            CoreStatus::WorkerUnavailable => Status::WorkerUnavailable,
            CoreStatus::MethodNotFound => Status::MethodNotFound,
            CoreStatus::ModuleNotFound => Status::ModuleNotFound,
            CoreStatus::PluginError => Status::PluginError,
            CoreStatus::PluginPanicked => Status::PluginPanicked,
            CoreStatus::PluginCrashed => Status::PluginCrashed,
            CoreStatus::Timeout => Status::Timeout,
            CoreStatus::CircuitOpen => Status::CircuitOpen,
            CoreStatus::StaleHandle => Status::StaleHandle,
            CoreStatus::OutputTooLarge => Status::OutputTooLarge,
            CoreStatus::SignatureChanged => Status::SignatureChanged,
            CoreStatus::InvalidOutput => Status::InvalidOutput,
            CoreStatus::NullArgument => Status::NullArgument,
            CoreStatus::InvalidArgument => Status::InvalidArgument,
            CoreStatus::Busy => Status::Busy,
            CoreStatus::ModuleInUse => Status::ModuleInUse,
            CoreStatus::Io => Status::Io,
            CoreStatus::Internal => Status::Internal,
        }
    }
}

/// One row of the core's status table.
#[napi(object)]
pub struct StatusInfo {
    /// Name, as in the `Status` object.
    pub name: String,
    /// Numeric code.
    pub code: i32,
    /// Short description.
    pub description: String,
}

/// Every status the core defines, in numeric order (what `Status` mirrors).
#[napi]
pub fn status_table() -> Vec<StatusInfo> {
    CoreStatus::all()
        .iter()
        .map(|&s| StatusInfo { name: format!("{s:?}"), code: s.code(), description: s.describe().to_owned() })
        .collect()
}

/// A short description of a status code (`"plugin returned an error"` for
/// 2003), or `null` for a number that is not a hotmod status (a
/// fraction, NaN, or a number outside the codes' range included: none is
/// wrapped or truncated onto a code). Anything but a number throws a
/// `TypeError` with `Status.InvalidArgument`.
#[napi(catch_unwind, ts_args_type = "code: number")]
pub fn describe_status(env: &Env, code: Unknown) -> Result<Option<String>> {
    let env = env.raw();
    let mut t = 0;
    // SAFETY: napi-rs calls this on the JavaScript thread of `env`.
    unsafe {
        napi::sys::napi_typeof(env, code.raw(), &mut t);
        if t != napi::sys::ValueType::napi_number {
            return Err(crate::errors::throw_invalid(
                env,
                &format!(
                    "describeStatus: expected the code as a number, found {}",
                    crate::errors::describe_value(env, code.raw())
                ),
            ));
        }
        let Some(n) = crate::options::number_in(env, code.raw(), f64::from(i32::MIN), f64::from(i32::MAX)) else {
            return Ok(None);
        };
        if n != n.trunc() {
            return Ok(None);
        }
        Ok(CoreStatus::from_code(n as i32).map(|s| s.describe().to_owned()))
    }
}
