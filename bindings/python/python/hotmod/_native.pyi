"""Type stubs for the native half of hotmod (``hotmod._native``).

Import from :mod:`hotmod`, not from here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Literal, final

from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

from ._enums import EventKind

__version__: str

_StrPath = str | os.PathLike[str]
_Config = Buffer | str
_Gil = Literal["auto", "release", "hold"]
_Preflight = Literal["off", "if-available", "on"]

@final
class Runtime:
    """A hotmod runtime: a set of loaded plugin modules and the services the
    host offers them.

    Use it as a context manager (or call :meth:`close`): closing unloads every
    module, dependents first. All methods may be called from many threads;
    administrative operations release the GIL, plugin calls follow the GIL
    policy (``gil``).
    """

    def __init__(
        self,
        *,
        drain_timeout: float = 0.2,
        gil: _Gil = "auto",
        gil_threshold: float | None = None,
        max_output_size: int | None = None,
        max_kept_mapped: int | None = None,
    ) -> None:
        """Creates a runtime. ``drain_timeout`` (seconds) is how long an
        upgrade or unload waits for calls in flight on the old version before
        returning (calls are never cut short).

        ``gil`` is the GIL policy of plugin calls: ``"release"`` (other
        Python threads run while a plugin does), ``"hold"`` (no release and
        retake, 30-40 ns saved per call; no other thread runs Python
        meanwhile; host functions written in Python still work, on the
        calling thread), or ``"auto"``: each handle times its calls (the
        first 8, then 1 in 64, or every call while they are slow) and
        releases the GIL while their mean latency exceeds ``gil_threshold``
        seconds (default 5e-6), holding it again under half of that; a
        handle never called releases it. Handles can override it
        (``method(..., gil=...)``, :attr:`Method.gil`). By-name calls hold
        the GIL only under ``"hold"``.

        ``max_output_size`` (bytes, default 64 MiB) caps the output a plugin
        may ask the host to allocate (:class:`hotmod.OutputTooLargeError`
        beyond it); ``max_kept_mapped`` (default 1024) is how many versions
        that cannot be unmapped the runtime may keep before refusing another
        such file (:class:`hotmod.KeptMappedLimitError`)."""
    @property
    def gil(self) -> _Gil:
        """The runtime's GIL policy."""
    @property
    def gil_threshold(self) -> float:
        """Mean latency (seconds) above which ``"auto"`` handles release the GIL."""

    def load(
        self,
        path: _StrPath,
        *,
        config: _Config | None = None,
        sha256: str | None = None,
        allow_world_writable: bool = False,
        max_file_size: int | None = None,
        preflight: _Preflight | None = None,
        preflight_helper: _StrPath | None = None,
        preflight_timeout: float | None = None,
    ) -> Module:
        """Loads the plugin file at ``path`` and activates it.

        ``config`` is handed to the plugin's init hook; ``sha256`` (64 hex
        digits) refuses the file unless its bytes match, checked before any
        plugin code runs; ``allow_world_writable`` accepts files or
        directories anyone may write to. ``max_file_size`` (bytes) refuses a
        larger file (:class:`hotmod.FileTooLargeError`) before it is read.
        ``preflight`` (``"off"``, the default, ``"if-available"`` or ``"on"``)
        maps the file in a child process first, run from
        ``preflight_helper`` (default: ``$HOTMOD_WORKER``, or
        ``hotmod-worker`` installed beside the library) and killed after
        ``preflight_timeout`` seconds (default 5): a file whose constructors
        crash or hang is refused with :class:`hotmod.PreflightFailedError`.
        Raises a :class:`hotmod.LoadError` subclass on failure.
        """

    def load_all(
        self,
        paths: Sequence[_StrPath],
        *,
        config: _Config | None = None,
        sha256: str | None = None,
        allow_world_writable: bool = False,
        max_file_size: int | None = None,
        preflight: _Preflight | None = None,
        preflight_helper: _StrPath | None = None,
        preflight_timeout: float | None = None,
    ) -> list[Module]:
        """Loads several plugin files in dependency order; nothing is loaded
        unless every file validates (a cycle raises
        :class:`hotmod.DependencyCycleError`)."""

    def upgrade(
        self,
        name: str,
        path: _StrPath,
        *,
        force: bool = False,
        config: _Config | None = None,
        sha256: str | None = None,
        allow_world_writable: bool = False,
        max_file_size: int | None = None,
        preflight: _Preflight | None = None,
        preflight_helper: _StrPath | None = None,
        preflight_timeout: float | None = None,
    ) -> Module:
        """Replaces the running version of module ``name`` with the plugin at
        ``path`` while calls keep flowing; returns the new :class:`Module`.

        Refused (the old version keeps serving) when the new build removes or
        changes methods that callers hold handles to, unless ``force``.
        """

    def unload(self, name: str, *, cascade: bool = False) -> None:
        """Unloads module ``name`` (calls in flight finish first). Raises
        :class:`hotmod.ModuleInUseError` while other modules depend on it,
        unless ``cascade``, which unloads them first."""

    def apply_manifest(self, path: _StrPath) -> ManifestReport:
        """Brings the runtime to the state the TOML manifest at ``path``
        describes; returns what changed.

        Each ``[[plugin]]`` entry has a ``path`` (relative to the manifest's
        directory) and optionally ``enabled`` (default true), ``sha256``,
        ``config`` and ``isolation = "in-process"``. The runtime keeps one
        state per manifest file: applying the edited file again upgrades the
        entries whose content or config changed, loads new ones and unloads
        those removed or disabled; modules loaded by other means are never
        touched. Raises :class:`hotmod.BadManifestError` (file and line in the
        message) for an invalid manifest, or the error of the entry at fault
        (:class:`hotmod.HashMismatchError`, ...). The GIL is released while it
        runs.
        """

    def watch(
        self,
        dir: _StrPath,
        *,
        debounce: float = 0.2,
        unload_on_remove: bool = False,
        allow_world_writable: bool = False,
        max_file_size: int | None = None,
        preflight: _Preflight | None = None,
        preflight_helper: _StrPath | None = None,
        preflight_timeout: float | None = None,
    ) -> Watcher:
        """Watches the plugin directory ``dir``.

        The plugin files already there are loaded before this returns; then,
        on the runtime's ``hotmod-watch`` thread, a new file is loaded, a
        replaced one (publish with ``os.replace``) upgrades its module while
        calls keep flowing, and a removed one unloads its module if
        ``unload_on_remove``. A file is acted on once unchanged for
        ``debounce`` seconds. Failures are ``UPGRADE_FAILED`` or
        ``WATCH_ERROR`` events (the old version keeps serving), delivered to
        the event handler on the ``hotmod-watch`` thread.

        Runs until :meth:`Watcher.stop`, the end of a with-block on the
        watcher, or :meth:`close`. Raises :class:`hotmod.FileMissingError`,
        :class:`hotmod.InvalidArgumentError` (not a directory) or
        :class:`hotmod.BusyError` (already watched by this runtime).

        The load options apply to every file, as for :meth:`load`, except
        that ``preflight`` defaults to ``"if-available"`` here.
        """

    def module(self, name: str) -> Module:
        """The loaded module named ``name`` (:class:`hotmod.ModuleNotLoadedError` if none)."""

    def modules(self) -> list[Module]:
        """Every loaded module, sorted by name."""

    def __contains__(self, name: str) -> bool:
        """Whether a module named ``name`` is loaded."""

    def state(self, name: str) -> str:
        """Lifecycle state of module ``name``'s active version (``"active"``)."""

    def method(self, module: str, method: str, *, gil: _Gil | None = None) -> Method:
        """Resolves ``module.method`` to a handle (the fast path for repeated
        calls); ``gil`` overrides the runtime's GIL policy for it."""

    def call(self, module: str, method: str, data: Buffer) -> Output:
        """Calls ``module.method`` by name with ``data`` (any C-contiguous
        bytes-like object, read in place); the GIL is held under the
        ``"hold"`` policy, released otherwise."""

    def call_into(self, module: str, method: str, data: Buffer, out: Buffer) -> int:
        """Calls ``module.method`` with its output written into the writable
        buffer ``out``; returns the number of bytes written."""

    def register_host_function(self, name: str, function: Callable[[bytes], Buffer | str | None]) -> Callable[[bytes], Buffer | str | None]:
        """Registers (or replaces) a host function plugins can call by
        ``name``; it runs on the plugin's calling thread with the GIL taken
        only while it runs. An exception becomes a plugin error in the
        calling plugin. Returns ``function``."""

    def unregister_host_function(self, name: str) -> bool:
        """Removes a host function; returns whether one was registered."""

    def set_event_handler(self, handler: Callable[[Event], object] | None) -> None:
        """Sets (or clears) the lifecycle event handler. It runs synchronously
        on the thread that caused the event (for a watch's changes, its
        ``hotmod-watch`` thread) and must not call load, upgrade, unload,
        close or apply_manifest (:meth:`Watcher.stop` is fine: it does not
        wait there); exceptions go to ``sys.unraisablehook``."""

    def stats(self) -> list[MethodStats]:
        """Statistics of every method of every loaded module."""

    def stats_prometheus(self) -> str:
        """The statistics in the Prometheus text exposition format."""

    def close(self) -> None:
        """Stops the runtime's watches, then unloads every module and releases
        the runtime. Idempotent."""

    @property
    def kept_mapped(self) -> int:
        """How many replaced or unloaded versions this runtime keeps mapped
        because they could not be unmapped (at most ``max_kept_mapped``)."""
    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""

    def __enter__(self) -> Runtime: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool: ...

@final
class Module:
    """A loaded module. Attributes describe the version active when the object
    was obtained; :meth:`call` and :meth:`method` reach the active version."""

    @property
    def name(self) -> str:
        """Module name."""
    @property
    def version(self) -> str:
        """Semantic version."""
    @property
    def description(self) -> str:
        """The plugin's description of itself."""
    @property
    def path(self) -> str:
        """Absolute path of the file it was loaded from."""
    @property
    def sha256(self) -> str:
        """SHA-256 of the bytes loaded, 64 lowercase hex digits."""
    @property
    def safe_to_unload(self) -> bool:
        """Whether the plugin declared itself safe to unmap."""
    @property
    def elf(self) -> ElfFacts:
        """What the loader read from the file's ELF headers before mapping it."""
    @property
    def stays_mapped(self) -> bool:
        """Whether this version stays mapped after it is replaced or unloaded
        (not declared safe to unload, or :attr:`ElfFacts.unmap_blockers`)."""
    @property
    def abi_minor(self) -> int:
        """Plugin ABI minor version it was built against."""
    @property
    def methods(self) -> list[MethodInfo]:
        """Declared methods, in declaration order."""
    @property
    def dependencies(self) -> list[DependencyInfo]:
        """Declared dependencies."""
    @property
    def is_loaded(self) -> bool:
        """Whether the module is still loaded."""
    def method(self, name: str, *, gil: _Gil | None = None) -> Method:
        """Resolves a method of the active version to a handle; ``gil``
        overrides the runtime's GIL policy for it."""
    def call(self, name: str, data: Buffer) -> Output:
        """Calls method ``name`` with ``data`` (read in place)."""

@final
class Method:
    """A resolved method handle: follows upgrades; raises
    :class:`hotmod.StaleHandleError` after its module is unloaded."""

    @property
    def module(self) -> str:
        """Name of the module the method belongs to."""
    @property
    def name(self) -> str:
        """Method name."""
    @property
    def signature_hash(self) -> int:
        """Signature hash this handle was resolved with."""
    @property
    def gil(self) -> _Gil:
        """The handle's GIL policy; assign one, or None for the runtime's."""
    @gil.setter
    def gil(self, value: _Gil | None) -> None: ...
    @property
    def releases_gil(self) -> bool:
        """Whether the next call releases the GIL."""
    @property
    def mean_latency(self) -> float | None:
        """Mean latency (seconds) of the calls an ``"auto"`` handle timed."""
    def __call__(self, data: Buffer) -> Output:
        """Calls the method with ``data`` (any C-contiguous bytes-like object,
        read in place; a vectorcall); the GIL is held or released as the
        handle's policy says."""
    def call(self, data: Buffer, *, offer: int | None = None) -> Output:
        """Same as calling the handle; ``offer`` is the output space offered first."""
    def call_into(self, data: Buffer, out: Buffer) -> int:
        """Calls the method with its output written into the writable buffer
        ``out``; returns the number of bytes written."""

@final
class Output(Buffer):
    """The read-only bytes a call returned, shared without a copy through the
    buffer protocol. Plugin memory is released (once) when the object and
    every view of it are gone."""

    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __len__(self) -> int:
        """Number of bytes."""
    def __bytes__(self) -> bytes:
        """A copy of the bytes."""
    def tobytes(self) -> bytes:
        """A copy of the bytes."""
    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        """The bytes decoded as text."""
    @property
    def address(self) -> int:
        """Address of the first byte."""
    @property
    def is_plugin_memory(self) -> bool:
        """Whether the bytes are memory the plugin handed over (zero-copy path)."""
    @property
    def exports(self) -> int:
        """Number of buffer views currently exported from this object."""
    def __eq__(self, other: object) -> bool:
        """Compares the bytes with any bytes-like object."""
    def __hash__(self) -> int:
        """Equal to ``hash(bytes(out))``."""

@final
class MethodInfo:
    """One method as a module declares it."""

    @property
    def name(self) -> str:
        """Method name."""
    @property
    def signature(self) -> str:
        """Declared signature string."""
    @property
    def signature_hash(self) -> int:
        """Hash of name and signature."""

@final
class ElfFacts:
    """What the loader read from a plugin file's ELF headers before mapping it."""

    @property
    def machine(self) -> str:
        """The machine the file is built for (``"x86_64"``, ``"aarch64"``, ...;
        ``""`` if not ELF)."""
    @property
    def elf_class(self) -> int:
        """ELF class: 32 or 64 (0 if not ELF); ``class`` in the core and C API."""
    @property
    def nodelete(self) -> bool:
        """``DF_1_NODELETE``: the dynamic loader never unmaps it."""
    @property
    def tls(self) -> bool:
        """A ``PT_TLS`` segment: the library has thread-local variables."""
    @property
    def static_tls(self) -> bool:
        """``DF_STATIC_TLS``: static-model thread-local storage."""
    @property
    def gnu_unique(self) -> list[str]:
        """Exported ``STB_GNU_UNIQUE`` symbols (the first few names)."""
    @property
    def go_runtime(self) -> bool:
        """A Go runtime is linked in."""
    @property
    def constructors(self) -> int:
        """Constructors run when the file is mapped (``DT_INIT`` plus ``DT_INIT_ARRAY``)."""
    @property
    def entry_checked(self) -> bool:
        """Whether the entry symbol was checked in ``.dynsym`` before mapping."""
    @property
    def unmap_blockers(self) -> list[str]:
        """Why the library can never really be unmapped (empty if nothing prevents it)."""

@final
class DependencyInfo:
    """One dependency as a module declares it."""

    @property
    def name(self) -> str:
        """Name of the module needed."""
    @property
    def requirement(self) -> str:
        """Semver range required."""
    @property
    def optional(self) -> bool:
        """Whether the dependency is optional."""

@final
class MethodStats:
    """Statistics of one method, summed over every version of its module."""

    @property
    def module(self) -> str:
        """Module name."""
    @property
    def version(self) -> str:
        """Active version of the module."""
    @property
    def method(self) -> str:
        """Method name."""
    @property
    def present(self) -> bool:
        """Whether the active version has this method."""
    @property
    def handles(self) -> int:
        """Method handles callers hold."""
    @property
    def calls(self) -> int:
        """Calls started."""
    @property
    def errors(self) -> int:
        """Calls that failed."""
    @property
    def panics(self) -> int:
        """Calls in which the plugin panicked."""
    @property
    def latency_samples(self) -> int:
        """Calls whose latency was sampled (one call in 128 of each method)."""
    @property
    def mean_ns(self) -> int:
        """Mean sampled latency, nanoseconds."""
    @property
    def p50_ns(self) -> int:
        """Median sampled latency (upper bound of its log2 bucket), nanoseconds."""
    @property
    def p99_ns(self) -> int:
        """99th percentile sampled latency (upper bound of its bucket), nanoseconds."""
    def as_dict(self) -> dict[str, str | int | bool]:
        """The fields as a dict."""

@final
class Event:
    """A lifecycle event, or a plugin's log line."""

    @property
    def kind(self) -> EventKind:
        """What happened."""
    @property
    def module(self) -> str:
        """Module name ("" when not known)."""
    @property
    def version(self) -> str:
        """Module version ("" when not known)."""
    @property
    def path(self) -> str:
        """Plugin file involved."""
    @property
    def message(self) -> str:
        """Details: the reason of a failure, or a log line."""
    @property
    def code(self) -> int:
        """Status code of a failure (0 otherwise), or the level of a log line."""

@final
class ManifestReport:
    """What an application of a manifest changed: module names, in the order
    the changes were made."""

    @property
    def loaded(self) -> list[str]:
        """Modules loaded (entries new to the runtime)."""
    @property
    def upgraded(self) -> list[str]:
        """Modules upgraded in place (file content or config changed)."""
    @property
    def unloaded(self) -> list[str]:
        """Modules unloaded (entry removed or disabled)."""
    @property
    def unchanged(self) -> list[str]:
        """Enabled entries already running with the same content and config."""
    @property
    def changed(self) -> bool:
        """Whether anything was loaded, upgraded or unloaded."""

@final
class Watcher:
    """A running watch of a plugin directory, returned by :meth:`Runtime.watch`.

    The runtime owns the watch: it runs until :meth:`stop`, the end of a
    with-block on this object, or the runtime's ``close()``; dropping the
    object does not stop it. Modules it loaded stay loaded after it stops.
    """

    @property
    def dir(self) -> str:
        """The watched directory (absolute, symbolic links resolved)."""
    @property
    def debounce(self) -> float:
        """Seconds a file must stay unchanged before it is acted on."""
    @property
    def unload_on_remove(self) -> bool:
        """Whether removing a plugin file unloads its module."""
    @property
    def running(self) -> bool:
        """Whether the watch still runs."""
    def stop(self) -> None:
        """Stops the watch and waits for its thread (with the GIL released).
        Idempotent; modules it loaded stay loaded. From an event handler or a
        host function it does not wait: no change starts after it, and the
        thread ends in the background."""
    def __enter__(self) -> Watcher: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool: ...

def _status_table() -> list[tuple[int, str, str]]:
    """``(code, name, description)`` of every status."""

def _stop_watchers() -> None:
    """Stops every watch still running (registered with ``atexit``)."""

def _bench_noop(data: object) -> None:
    """Benchmark floor: takes one argument, does nothing."""

def _bench_buffer(data: Buffer) -> int:
    """Benchmark step: acquires and releases ``data``'s buffer."""

def _bench_detach(data: Buffer) -> int:
    """Benchmark step: acquires the buffer and releases/retakes the GIL."""

def _bench_call_no_output(method: Method, data: Buffer) -> int:
    """Benchmark step: a whole call with the output dropped in Rust."""
