"""The hotmod exception hierarchy, one class per status code.

::

    HotmodError                      .code (int), .status (Status), .message
    ├── LoadError                    1xxx: loading and validating plugins
    │   ├── FileMissingError         1001
    │   └── ...
    ├── CallError                    2xxx: calling methods
    │   ├── MethodNotFoundError      2001
    │   └── ...
    ├── UsageError                   3xxx: misuse of the API
    │   ├── InvalidArgumentError     3002 (also a ValueError)
    │   │   └── RuntimeClosedError   the Runtime was closed
    │   └── ...
    └── InternalError                9xxx: I/O and bugs in hotmod
        └── IOFailedError            9001

Catch a group (``except hotmod.LoadError``) or one code
(``except hotmod.FileMissingError``); ``err.code`` is the number shared with
the C API and Node.
"""

from __future__ import annotations

from typing import Any

from ._enums import Status

__all__ = [
    "HotmodError",
    "LoadError",
    "CallError",
    "UsageError",
    "InternalError",
    "FileMissingError",
    "DependencyUnsatisfiedError",
    "PermissionDeniedError",
    "EntrySymbolMissingError",
    "NotALibraryError",
    "NotAPluginError",
    "AbiUnsupportedError",
    "InvalidDescriptorError",
    "HashMismatchError",
    "SignatureMismatchError",
    "NameConflictError",
    "DependencyCycleError",
    "InitFailedError",
    "BadManifestError",
    "VersionConflictError",
    "UnsafeFileError",
    "FileTooLargeError",
    "PreflightFailedError",
    "KeptMappedLimitError",
    "SandboxUnavailableError",
    "WorkerUnavailableError",
    "MethodNotFoundError",
    "ModuleNotLoadedError",
    "PluginError",
    "PluginPanickedError",
    "PluginCrashedError",
    "CallTimeoutError",
    "CircuitOpenError",
    "StaleHandleError",
    "OutputTooLargeError",
    "SignatureChangedError",
    "InvalidOutputError",
    "NullArgumentError",
    "InvalidArgumentError",
    "RuntimeClosedError",
    "BusyError",
    "ModuleInUseError",
    "IOFailedError",
    "error_class",
]


class HotmodError(Exception):
    """Base class of every error the hotmod runtime reports.

    Attributes:
        code: the numeric status code (see :class:`hotmod.Status`).
        message: what was expected, what was found, and where.
    """

    #: Code used when the class is raised without one.
    default_code: int = Status.INTERNAL

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.message: str = message
        self.code: int = int(self.default_code if code is None else code)

    @property
    def status(self) -> Status | int:
        """The code as a :class:`hotmod.Status` (a plain int if unknown)."""
        try:
            return Status(self.code)
        except ValueError:
            return self.code

    def __str__(self) -> str:
        return f"{self.message} [hotmod status {self.code}]"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.code))


class LoadError(HotmodError):
    """A plugin could not be loaded, validated or upgraded (1xxx)."""

    default_code = 1000


class CallError(HotmodError):
    """A method call failed (2xxx)."""

    default_code = 2000


class UsageError(HotmodError):
    """The API was misused (3xxx)."""

    default_code = 3000


class InternalError(HotmodError):
    """An operating-system error or a bug in hotmod (9xxx)."""

    default_code = Status.INTERNAL


class FileMissingError(LoadError):
    """The plugin file does not exist (status 1001)."""

    default_code = Status.FILE_MISSING


class DependencyUnsatisfiedError(LoadError):
    """A declared dependency is not loaded, or its version is outside the range (status 1002)."""

    default_code = Status.DEPENDENCY_UNSATISFIED


class PermissionDeniedError(LoadError):
    """The plugin file or its directory cannot be read (status 1003)."""

    default_code = Status.PERMISSION_DENIED


class EntrySymbolMissingError(LoadError):
    """The library does not export hotmod_plugin_v1 (status 1004)."""

    default_code = Status.ENTRY_SYMBOL_MISSING


class NotALibraryError(LoadError):
    """The file is not a loadable shared library (status 1005)."""

    default_code = Status.NOT_A_LIBRARY


class NotAPluginError(LoadError):
    """The descriptor does not start with the hotmod magic number (status 1006)."""

    default_code = Status.NOT_A_PLUGIN


class AbiUnsupportedError(LoadError):
    """The plugin was built for a plugin ABI this runtime does not speak (status 1007)."""

    default_code = Status.ABI_UNSUPPORTED


class InvalidDescriptorError(LoadError):
    """The plugin descriptor is malformed (status 1008)."""

    default_code = Status.INVALID_DESCRIPTOR


class HashMismatchError(LoadError):
    """The file's SHA-256 differs from the expected one (status 1009)."""

    default_code = Status.HASH_MISMATCH


class SignatureMismatchError(LoadError):
    """An upgrade removes or changes a method that callers hold handles to (status 1010)."""

    default_code = Status.SIGNATURE_MISMATCH


class NameConflictError(LoadError):
    """A module with this name is already loaded (status 1011)."""

    default_code = Status.NAME_CONFLICT


class DependencyCycleError(LoadError):
    """The dependencies form a cycle (status 1012)."""

    default_code = Status.DEPENDENCY_CYCLE


class InitFailedError(LoadError):
    """The plugin's init, activate or state import failed (status 1013)."""

    default_code = Status.INIT_FAILED


class BadManifestError(LoadError):
    """The manifest cannot be read or is invalid (status 1014)."""

    default_code = Status.BAD_MANIFEST


class VersionConflictError(LoadError):
    """The new version is outside a dependent module's required range (status 1015)."""

    default_code = Status.VERSION_CONFLICT


class UnsafeFileError(LoadError):
    """The file or its directory is writable by anyone (status 1016)."""

    default_code = Status.UNSAFE_FILE


class FileTooLargeError(LoadError):
    """The file (plugin or manifest) is larger than the configured cap (status 1017)."""

    default_code = Status.FILE_TOO_LARGE


class PreflightFailedError(LoadError):
    """Mapping the file in a preflight child process failed (the loader or a constructor crashed, exited or hung there) (status 1018)."""

    default_code = Status.PREFLIGHT_FAILED


class KeptMappedLimitError(LoadError):
    """Too many versions of modules that cannot be unmapped are kept mapped (status 1019)."""

    default_code = Status.KEPT_MAPPED_LIMIT


class SandboxUnavailableError(LoadError):
    """The sandbox asked for is not available on this system, and running without it was not allowed (status 1020)."""

    default_code = Status.SANDBOX_UNAVAILABLE


class WorkerUnavailableError(LoadError):
    """The out-of-process worker could not be found or started (status 1021)."""

    default_code = Status.WORKER_UNAVAILABLE


class MethodNotFoundError(CallError):
    """No method of that name in the module (status 2001)."""

    default_code = Status.METHOD_NOT_FOUND


class ModuleNotLoadedError(CallError):
    """No module of that name is loaded (status 2002)."""

    default_code = Status.MODULE_NOT_FOUND


class PluginError(CallError):
    """The plugin method returned an error (status 2003)."""

    default_code = Status.PLUGIN_ERROR


class PluginPanickedError(CallError):
    """The plugin method panicked (status 2004)."""

    default_code = Status.PLUGIN_PANICKED


class PluginCrashedError(CallError):
    """The plugin crashed (its worker process died) (status 2005)."""

    default_code = Status.PLUGIN_CRASHED


class CallTimeoutError(CallError):
    """The call did not finish in time (status 2006)."""

    default_code = Status.TIMEOUT


class CircuitOpenError(CallError):
    """The method's circuit breaker is open (status 2007)."""

    default_code = Status.CIRCUIT_OPEN


class StaleHandleError(CallError):
    """The module was unloaded, or the method removed by a forced upgrade (status 2008)."""

    default_code = Status.STALE_HANDLE


class OutputTooLargeError(CallError):
    """The output does not fit in the space offered (status 2009)."""

    default_code = Status.OUTPUT_TOO_LARGE


class SignatureChangedError(CallError):
    """A forced upgrade changed the signature of the method this handle resolved (status 2010)."""

    default_code = Status.SIGNATURE_CHANGED


class InvalidOutputError(CallError):
    """The plugin filled the output slot in a way the protocol forbids (status 2011)."""

    default_code = Status.INVALID_OUTPUT


class NullArgumentError(UsageError):
    """A required argument was missing (status 3001)."""

    default_code = Status.NULL_ARGUMENT


class InvalidArgumentError(UsageError, ValueError):
    """An argument has an invalid value (status 3002)."""

    default_code = Status.INVALID_ARGUMENT


class BusyError(UsageError):
    """The object is busy (status 3003)."""

    default_code = Status.BUSY


class ModuleInUseError(UsageError):
    """The module is needed by other loaded modules (status 3004)."""

    default_code = Status.MODULE_IN_USE


class IOFailedError(InternalError):
    """An operating-system I/O error (status 9001)."""

    default_code = Status.IO


class RuntimeClosedError(InvalidArgumentError):
    """The :class:`hotmod.Runtime` was closed (status 3002)."""

    default_code = Status.INVALID_ARGUMENT


for _cls in list(globals().values()):
    if isinstance(_cls, type) and issubclass(_cls, HotmodError):
        # Shown (in tracebacks, reprs, pickles) where users import them from.
        _cls.__module__ = "hotmod"

_BY_CODE: dict[int, type[HotmodError]] = {
    int(c.default_code): c
    for c in (
        FileMissingError, DependencyUnsatisfiedError, PermissionDeniedError, EntrySymbolMissingError,
        NotALibraryError, NotAPluginError, AbiUnsupportedError, InvalidDescriptorError, HashMismatchError,
        SignatureMismatchError, NameConflictError, DependencyCycleError, InitFailedError, BadManifestError,
        VersionConflictError, UnsafeFileError, FileTooLargeError, PreflightFailedError, KeptMappedLimitError,
        SandboxUnavailableError, WorkerUnavailableError, MethodNotFoundError, ModuleNotLoadedError, PluginError,
        PluginPanickedError, PluginCrashedError, CallTimeoutError, CircuitOpenError, StaleHandleError,
        OutputTooLargeError, SignatureChangedError, InvalidOutputError, NullArgumentError, InvalidArgumentError,
        BusyError, ModuleInUseError, IOFailedError,
    )
}  # fmt: skip
_BY_CODE[int(Status.INTERNAL)] = InternalError

_BY_GROUP: dict[int, type[HotmodError]] = {1: LoadError, 2: CallError, 3: UsageError, 9: InternalError}


def error_class(code: int) -> type[HotmodError]:
    """The exception class raised for status ``code``.

    Unknown codes map to their group's class (``LoadError`` for 1xxx, ...),
    or to :class:`HotmodError`.
    """
    return _BY_CODE.get(code) or _BY_GROUP.get(code // 1000) or HotmodError


def _make_error(code: int, message: str, class_name: str | None = None) -> HotmodError:
    """Called by the native module to build the exception it raises."""
    cls = globals()[class_name] if class_name else error_class(code)
    return cls(message, code)
