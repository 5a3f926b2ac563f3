"""Shared fixtures: where the example plugins are, a fresh runtime per test,
and the binding's own fixture plugins compiled from tests/fixtures/pyfixtures.c.

The example and fixture plugins of the repository are built by `make plugins`
at the root (into build/plugins, or $HOTMOD_PLUGIN_DIR); a missing one fails
the test that needs it with the command to run, never skips it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import hotmod

HERE = Path(__file__).resolve().parent
BINDING = HERE.parent
REPO = BINDING.parent.parent
PLUGIN_DIR = Path(os.environ.get("HOTMOD_PLUGIN_DIR") or REPO / "build" / "plugins").resolve()
FIXTURE_SOURCE = HERE / "fixtures" / "pyfixtures.c"
INCLUDE = REPO / "include"


def plugin(name: str) -> Path:
    """Path of an example plugin, e.g. plugin("checksum") -> .../libchecksum.so."""
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


@pytest.fixture(scope="session")
def fixture_plugin(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """fixture_plugin("DEPENDENT") -> a .so compiled from pyfixtures.c with -DFIX_DEPENDENT."""
    out_dir = tmp_path_factory.mktemp("fixture-plugins")
    built: dict[str, Path] = {}
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")

    def build(variant: str) -> Path:
        if variant in built:
            return built[variant]
        if cc is None:
            pytest.fail("expected a C compiler (cc) to build the test fixture plugins, found none on PATH")
        out = out_dir / f"libfix_{variant.lower()}.so"
        cmd = [
            cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-Wno-unused-function", "-O2", "-fPIC", "-shared",
            "-fvisibility=hidden", f"-I{INCLUDE}", f"-DFIX_{variant}", str(FIXTURE_SOURCE), "-o", str(out),
        ]  # fmt: skip
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            pytest.fail(f"building fixture {variant} failed: {' '.join(cmd)}\n{r.stderr}")
        built[variant] = out
        return out

    return build


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
