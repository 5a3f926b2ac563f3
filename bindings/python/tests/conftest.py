"""Shared fixtures: where the plugins are and a fresh runtime per test.

The example plugins and the fixture plugins of the repository (sources in
tests/fixtures at the root: dependent, cycle-a, checksum-breaking, noentry,
bad_magic, badout, ...) are built by `make plugins` at the root (into
build/plugins, or $HOTMOD_PLUGIN_DIR); a missing one fails the test that
needs it with the command to run, never skips it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import hotmod

HERE = Path(__file__).resolve().parent
BINDING = HERE.parent
REPO = BINDING.parent.parent
PLUGIN_DIR = Path(os.environ.get("HOTMOD_PLUGIN_DIR") or REPO / "build" / "plugins").resolve()


def plugin(name: str) -> Path:
    """Path of a built plugin, e.g. plugin("checksum") -> .../libchecksum.so."""
    path = PLUGIN_DIR / f"lib{name}.so"
    if not path.is_file():
        pytest.fail(
            f"expected the plugin {path}, found nothing: build the plugins with `make -C {REPO} plugins` "
            f"(or point HOTMOD_PLUGIN_DIR at them)"
        )
    return path


@pytest.fixture(scope="session")
def plugins() -> Callable[[str], Path]:
    """plugins("checksum") -> path of build/plugins/libchecksum.so."""
    return plugin


@pytest.fixture
def rt() -> Iterator[hotmod.Runtime]:
    """A fresh runtime, closed after the test."""
    runtime = hotmod.Runtime()
    try:
        yield runtime
    finally:
        runtime.close()


@pytest.fixture
def probe(rt: hotmod.Runtime) -> hotmod.Module:
    """The probe module loaded into `rt`."""
    return rt.load(plugin("probe"))


def u64(b: object) -> int:
    """A little-endian unsigned integer from a bytes-like object."""
    return int.from_bytes(memoryview(b), "little")  # type: ignore[arg-type]
