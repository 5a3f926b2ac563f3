"""hotmod: hot-swappable native plugin modules for Python.

Load plugin modules (``.so`` files written in C, C++, Rust, Zig, Go...), call
their methods with zero-copy buffers, holding or releasing the GIL as a
policy says (``Runtime(gil=...)``, ``Method.gil``), upgrade them
under load without a restart, and watch them; or let a TOML manifest
(:meth:`Runtime.apply_manifest`) or a watched directory
(:meth:`Runtime.watch`) decide what runs::

    import hotmod

    with hotmod.Runtime() as rt:
        checksum = rt.load("build/plugins/libchecksum.so")
        crc32 = checksum.method("crc32")          # resolve once...
        out = crc32(b"hello world")               # ...call fast; any bytes-like input
        print(int.from_bytes(out, "little"))      # out is a read-only buffer
        rt.upgrade("checksum", "build/plugins/libchecksum-v2.so")  # crc32 keeps working

        with rt.watch("/srv/plugins"):            # drop a build in: loaded, or upgraded
            ...

Errors are :class:`HotmodError` subclasses carrying the numeric status code
shared with the C API and Node (:class:`Status`).
"""

from __future__ import annotations

import atexit as _atexit

from ._enums import EventKind, Status
from ._errors import *  # noqa: F403  (the exception classes, listed in _errors.__all__)
from ._errors import __all__ as _error_names
from ._native import (
    DependencyInfo,
    ElfFacts,
    Event,
    ManifestReport,
    Method,
    MethodInfo,
    MethodStats,
    Module,
    Output,
    Runtime,
    Watcher,
    __version__,
)
from ._native import _stop_watchers

# Watcher threads take the GIL to deliver events: stop them while the
# interpreter is still whole, before it is torn down.
_atexit.register(_stop_watchers)

__all__ = [
    "Runtime",
    "Module",
    "Method",
    "Output",
    "MethodInfo",
    "DependencyInfo",
    "ElfFacts",
    "MethodStats",
    "Event",
    "ManifestReport",
    "Watcher",
    "Status",
    "EventKind",
    "__version__",
    *_error_names,
]
