"""The README's examples run as written (against the built plugins)."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

from conftest import PLUGIN_DIR, plugin

README = Path(__file__).resolve().parent.parent / "README.md"


def run_block(index: int) -> str:
    """Runs the README's python block `index`; returns what it printed."""
    for name in ("checksum", "checksum-v2", "text"):
        plugin(name)  # fails with the build command if missing
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) > index, f"README.md has no python block #{index}"
    code = blocks[index].replace('"build/plugins/', f'"{PLUGIN_DIR}/')  # f"build/plugins/..." too
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
    return out.getvalue()


def test_every_block_passes_mypy_strict(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README.md has python blocks"
    files = []
    for i, code in enumerate(blocks):
        f = tmp_path / f"readme_block_{i}.py"
        f.write_text(code)
        files.append(str(f))
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", *files],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 0, f"mypy --strict on README.md's python blocks:\n{r.stdout}{r.stderr}"


def test_quickstart_runs() -> None:
    text = run_block(0)
    assert "222957957" in text
    assert "b'01ab' True" in text
    assert "Hi, Ada!" in text
    assert "ACTIVATED checksum 2.0.0" in text
    assert "2001 METHOD_NOT_FOUND" in text
    assert "hotmod_method_calls_total" in text


def test_manifest_and_watch_example_runs() -> None:
    lines = run_block(1).splitlines()
    assert lines[:3] == ["['checksum']", "['checksum']", "['checksum']"]
    # Loaded by the watch's scan, then upgraded by the watcher.
    assert lines.index("ACTIVATED checksum 1.0.0") < lines.index("b'1.0.0'") < lines.index("ACTIVATED checksum 2.0.0")
    assert lines.index("ACTIVATED checksum 2.0.0") < lines.index("b'2.0.0'")
