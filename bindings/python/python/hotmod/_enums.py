"""Status codes and event kinds, the same numbers as in C (``hotmod.h``) and Node.

The native module's ``_status_table()`` is the source of truth; a test checks
that this hand-written enum (written out so that editors and type checkers see
it) matches it.
"""

from __future__ import annotations

import enum

__all__ = ["Status", "EventKind"]


class Status(enum.IntEnum):
    """A stable hotmod status code.

    Groups: 1xxx load and validation, 2xxx calls, 3xxx misuse, 9xxx runtime.
    Every :class:`hotmod.HotmodError` carries one in ``.code`` (and as this
    enum in ``.status``).
    """

    OK = 0
    FILE_MISSING = 1001
    DEPENDENCY_UNSATISFIED = 1002
    PERMISSION_DENIED = 1003
    ENTRY_SYMBOL_MISSING = 1004
    NOT_A_LIBRARY = 1005
    NOT_A_PLUGIN = 1006
    ABI_UNSUPPORTED = 1007
    INVALID_DESCRIPTOR = 1008
    HASH_MISMATCH = 1009
    SIGNATURE_MISMATCH = 1010
    NAME_CONFLICT = 1011
    DEPENDENCY_CYCLE = 1012
    INIT_FAILED = 1013
    BAD_MANIFEST = 1014
    VERSION_CONFLICT = 1015
    UNSAFE_FILE = 1016
    FILE_TOO_LARGE = 1017
    PREFLIGHT_FAILED = 1018
    KEPT_MAPPED_LIMIT = 1019
    SANDBOX_UNAVAILABLE = 1020
    WORKER_UNAVAILABLE = 1021
    METHOD_NOT_FOUND = 2001
    MODULE_NOT_FOUND = 2002
    PLUGIN_ERROR = 2003
    PLUGIN_PANICKED = 2004
    PLUGIN_CRASHED = 2005
    TIMEOUT = 2006
    CIRCUIT_OPEN = 2007
    STALE_HANDLE = 2008
    OUTPUT_TOO_LARGE = 2009
    SIGNATURE_CHANGED = 2010
    INVALID_OUTPUT = 2011
    NULL_ARGUMENT = 3001
    INVALID_ARGUMENT = 3002
    BUSY = 3003
    MODULE_IN_USE = 3004
    IO = 9001
    INTERNAL = 9002

    @property
    def description(self) -> str:
        """A short description of the status, as the runtime gives it."""
        return _descriptions()[int(self)]


def _descriptions() -> dict[int, str]:
    from . import _native

    global _DESCRIPTIONS
    if _DESCRIPTIONS is None:
        _DESCRIPTIONS = {code: text for code, _name, text in _native._status_table()}
    return _DESCRIPTIONS


_DESCRIPTIONS: dict[int, str] | None = None


class EventKind(enum.IntEnum):
    """What a :class:`hotmod.Event` reports."""

    #: A plugin file was mapped and its entry symbol found.
    LOADED = 1
    #: Its descriptor and dependencies were validated.
    VALIDATED = 2
    #: The version was initialised and now serves calls.
    ACTIVATED = 3
    #: The version was replaced or removed; calls in flight finish on it.
    DRAINING = 4
    #: The version ran its last call and was destroyed.
    UNLOADED = 5
    #: A load or upgrade was refused or failed; the previous state stands.
    UPGRADE_FAILED = 6
    #: The version was destroyed but its code stays mapped (not safe to unload).
    KEPT_MAPPED = 7
    #: A log line written by a plugin (``Event.code`` is the level).
    LOG = 8
    #: A watched directory or manifest reported a problem.
    WATCH_ERROR = 9
