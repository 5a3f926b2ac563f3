"""Plugin error messages stay with the call that set them (issue 8,
item 21): nothing one module says surfaces in another's error, nor in a
later call of its own.

Needs the core's per-call error scope; until it is in, these tests fail
(the message of an earlier call leaks into the next failure).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO

import hotmod

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def chatty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/fixtures/chatty.c built into a private directory."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("expected a C compiler (cc or $CC) to build tests/fixtures/chatty.c, found none")
    out = tmp_path_factory.mktemp("chatty") / "libchatty.so"
    cmd = [cc, "-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-O2", "-fPIC", "-shared",
           "-fvisibility=hidden", f"-I{REPO / 'include'}", str(HERE / "fixtures" / "chatty.c"), "-o", str(out)]
    subprocess.run(cmd, check=True)
    return out


def test_message_of_a_successful_call_does_not_leak(
    rt: hotmod.Runtime, plugins: Callable[[str], Path], chatty: Path
) -> None:
    rt.load(chatty)
    rt.load(plugins("badout"))
    assert len(rt.call("chatty", "set_then_ok", b"")) == 0
    with pytest.raises(hotmod.HotmodError) as other_module:
        rt.call("badout", "weird", b"")
    assert "SECRET-FROM-CHATTY" not in str(other_module.value)
    assert "badout" in str(other_module.value)
    # Nor into a later failure of the same module.
    rt.call("chatty", "set_then_ok", b"")
    with pytest.raises(hotmod.PluginError) as same_module:
        rt.call("chatty", "fail_silent", b"")
    assert "SECRET-FROM-CHATTY" not in str(same_module.value)
    assert "fail_silent" in str(same_module.value)


def test_ignored_host_function_failure_does_not_leak(rt: hotmod.Runtime, plugins: Callable[[str], Path]) -> None:
    """text.greet calls the host function "greeting" and ignores its
    failure (falls back to "Hello"): the failure's message belongs to that
    call, not to badout's next one."""
    rt.load(plugins("text"))
    rt.load(plugins("badout"))

    def greeting(data: bytes) -> bytes:
        raise ValueError("SECRET-FROM-GREETING")

    rt.register_host_function("greeting", greeting)
    greet = rt.method("text", "greet")
    assert bytes(greet(b"x")) == b"Hello, x!"
    with pytest.raises(hotmod.HotmodError) as e:
        rt.call("badout", "weird", b"")
    assert "SECRET-FROM-GREETING" not in str(e.value)
    assert "greeting" not in str(e.value)
