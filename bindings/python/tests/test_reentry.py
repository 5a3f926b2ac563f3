"""Administrative calls re-entered from a plugin's init or from an event
handler answer BusyError (3003) instead of deadlocking (issue 8, item 15).

Each case runs in a child interpreter with a deadline, so that a deadlock
fails the test instead of hanging the suite. Needs the core's re-entrancy
guard; until it is in, these tests fail on the deadline.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

DEADLINE = 30.0

FROM_INIT = r"""
import sys, hotmod
lifecycle, probe, text = sys.argv[1:4]
rt = hotmod.Runtime()
rt.load(text)
seen = []
def attempt(what, f):
    try:
        f()
        seen.append(f"{what}:ok")
    except hotmod.HotmodError as e:
        seen.append(f"{what}:{type(e).__name__}:{e.code}")
def new_id(data):
    # Called by lifecycle's init, while rt.load(lifecycle) is running.
    attempt("load", lambda: rt.load(probe))
    attempt("upgrade", lambda: rt.upgrade("text", text))
    attempt("unload", lambda: rt.unload("text"))
    return (7).to_bytes(8, "little")
rt.register_host_function("new_id", new_id)
rt.load(lifecycle)
assert "lifecycle" in rt and "text" in rt and "probe" not in rt, rt
print(" ".join(seen))
rt.close()
"""

FROM_EVENT = r"""
import sys, hotmod
probe, text = sys.argv[1:3]
rt = hotmod.Runtime()
seen = []
def handler(event):
    if event.module == "probe" and not seen:
        try:
            rt.load(text)
            seen.append("load:ok")
        except hotmod.HotmodError as e:
            seen.append(f"load:{type(e).__name__}:{e.code}")
rt.set_event_handler(handler)
rt.load(probe)
print(" ".join(seen))
rt.close()
"""


def run(script: str, *args: Path) -> str:
    try:
        p = subprocess.run(
            [sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, timeout=DEADLINE
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"expected BusyError, found a deadlock: the child was still running after {DEADLINE} s")
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def test_admin_calls_from_a_host_function_during_init(plugins: Callable[[str], Path]) -> None:
    out = run(FROM_INIT, plugins("lifecycle"), plugins("probe"), plugins("text"))
    assert out == "load:BusyError:3003 upgrade:BusyError:3003 unload:BusyError:3003"


def test_load_from_an_event_handler(plugins: Callable[[str], Path]) -> None:
    out = run(FROM_EVENT, plugins("probe"), plugins("text"))
    assert out == "load:BusyError:3003"
