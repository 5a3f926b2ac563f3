"""The README's quickstart runs as written (against the built plugins)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from conftest import PLUGIN_DIR, plugin

README = Path(__file__).resolve().parent.parent / "README.md"


def test_quickstart_runs() -> None:
    for name in ("checksum", "checksum-v2", "text"):
        plugin(name)  # fails with the build command if missing
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README.md has no python block"
    code = blocks[0].replace('"build/plugins/', f'"{PLUGIN_DIR}/')
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
    text = out.getvalue()
    assert "222957957" in text
    assert "b'01ab' True" in text
    assert "Hi, Ada!" in text
    assert "ACTIVATED checksum 2.0.0" in text
    assert "2001 METHOD_NOT_FOUND" in text
    assert "hotmod_method_calls_total" in text
