//! Status codes and the error type every fallible core function returns.
//!
//! The numbers are part of hotmod's stable interface: the C API returns them,
//! Python maps them to exception classes and Node puts them in `err.code`.
//! Groups: 1xxx load and validation, 2xxx calls, 3xxx misuse, 9xxx runtime.

use std::fmt;

/// A stable hotmod status code.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    /// Mapping the file in a short-lived preflight child process failed:
    /// the dynamic loader or a constructor crashed, exited or hung there.
    PreflightFailed = 1018,
    /// Too many versions of modules that cannot be unmapped are kept mapped
    /// (the configured cap, set below the process's descriptor and memory limits).
    KeptMappedLimit = 1019,
    /// The sandbox asked for (seccomp, Landlock, resource limits) is not
    /// available on this kernel, and the host did not allow running without it.
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
    /// The plugin crashed (out-of-process worker died). Reserved: not
    /// produced until the out-of-process mode exists.
    PluginCrashed = 2005,
    /// The call did not finish in time. Reserved: not produced until call
    /// timeouts (out-of-process mode) exist.
    Timeout = 2006,
    /// The method's circuit breaker is open. Reserved: not produced until
    /// the circuit breaker exists.
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

static ALL_STATUSES: [Status; 39] = [
    Status::Ok,
    Status::FileMissing,
    Status::DependencyUnsatisfied,
    Status::PermissionDenied,
    Status::EntrySymbolMissing,
    Status::NotALibrary,
    Status::NotAPlugin,
    Status::AbiUnsupported,
    Status::InvalidDescriptor,
    Status::HashMismatch,
    Status::SignatureMismatch,
    Status::NameConflict,
    Status::DependencyCycle,
    Status::InitFailed,
    Status::BadManifest,
    Status::VersionConflict,
    Status::UnsafeFile,
    Status::FileTooLarge,
    Status::PreflightFailed,
    Status::KeptMappedLimit,
    Status::SandboxUnavailable,
    Status::WorkerUnavailable,
    Status::MethodNotFound,
    Status::ModuleNotFound,
    Status::PluginError,
    Status::PluginPanicked,
    Status::PluginCrashed,
    Status::Timeout,
    Status::CircuitOpen,
    Status::StaleHandle,
    Status::OutputTooLarge,
    Status::SignatureChanged,
    Status::InvalidOutput,
    Status::NullArgument,
    Status::InvalidArgument,
    Status::Busy,
    Status::ModuleInUse,
    Status::Io,
    Status::Internal,
];

impl Status {
    /// Every status, in numeric order.
    pub fn all() -> &'static [Status] {
        &ALL_STATUSES
    }

    /// The numeric code.
    pub const fn code(self) -> i32 {
        self as i32
    }

    /// The status with this numeric code, if any.
    pub fn from_code(code: i32) -> Option<Status> {
        ALL_STATUSES.iter().copied().find(|s| s.code() == code)
    }

    /// A short, static description.
    pub const fn describe(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::FileMissing => "plugin file not found",
            Status::DependencyUnsatisfied => "dependency unsatisfied",
            Status::PermissionDenied => "permission denied",
            Status::EntrySymbolMissing => "entry symbol hotmod_plugin_v1 missing",
            Status::NotALibrary => "not a loadable shared library",
            Status::NotAPlugin => "not a hotmod plugin (bad magic)",
            Status::AbiUnsupported => "unsupported plugin ABI version",
            Status::InvalidDescriptor => "invalid plugin descriptor",
            Status::HashMismatch => "SHA-256 mismatch",
            Status::SignatureMismatch => "method signature mismatch",
            Status::NameConflict => "module name already loaded",
            Status::DependencyCycle => "dependency cycle",
            Status::InitFailed => "plugin initialisation failed",
            Status::BadManifest => "invalid manifest",
            Status::VersionConflict => "version conflicts with a dependent",
            Status::UnsafeFile => "file or directory writable by anyone",
            Status::FileTooLarge => "file larger than the configured cap",
            Status::PreflightFailed => "preflight load in a child process failed",
            Status::KeptMappedLimit => "too many versions kept mapped",
            Status::SandboxUnavailable => "sandbox unavailable on this system",
            Status::WorkerUnavailable => "out-of-process worker unavailable",
            Status::MethodNotFound => "method not found",
            Status::ModuleNotFound => "module not found",
            Status::PluginError => "plugin returned an error",
            Status::PluginPanicked => "plugin panicked",
            Status::PluginCrashed => "plugin crashed",
            Status::Timeout => "timeout",
            Status::CircuitOpen => "circuit open",
            Status::StaleHandle => "stale handle",
            Status::OutputTooLarge => "output too large",
            Status::SignatureChanged => "method signature changed",
            Status::InvalidOutput => "plugin produced invalid output",
            Status::NullArgument => "null argument",
            Status::InvalidArgument => "invalid argument",
            Status::Busy => "busy",
            Status::ModuleInUse => "module in use by dependents",
            Status::Io => "I/O error",
            Status::Internal => "internal error",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.describe(), self.code())
    }
}

/// An error: a [`Status`] and a message that says what was expected, what
/// was found, and where. Boxed so that `Result<T, Error>` stays one word on
/// the call path.
#[derive(Clone, PartialEq, Eq)]
pub struct Error(Box<(Status, String)>);

impl Error {
    /// An error with a status and message.
    #[cold]
    pub fn new(status: Status, message: impl Into<String>) -> Error {
        Error(Box::new((status, message.into())))
    }

    /// The status code.
    pub fn status(&self) -> Status {
        self.0 .0
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0 .1
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({:?} {}: {})", self.status(), self.status().code(), self.message())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Error {}

/// Result alias used throughout hotmod.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_unique() {
        assert_eq!(Status::FileMissing.code(), 1001);
        assert_eq!(Status::DependencyUnsatisfied.code(), 1002);
        assert_eq!(Status::PermissionDenied.code(), 1003);
        assert_eq!(Status::EntrySymbolMissing.code(), 1004);
        assert_eq!(Status::MethodNotFound.code(), 2001);
        assert_eq!(Status::NullArgument.code(), 3001);
        let mut codes: Vec<i32> = Status::all().iter().map(|s| s.code()).collect();
        let n = codes.len();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), n);
        for c in codes {
            assert_eq!(Status::from_code(c).unwrap().code(), c);
        }
        assert_eq!(Status::from_code(42), None);
    }
}
