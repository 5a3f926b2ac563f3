#!/usr/bin/env python3
"""Runs the code blocks of hotmod's READMEs that claim to run.

A block is tested when an HTML comment right before its opening fence says
how (comments are invisible on rendered pages, so a reader sees the README
exactly as it is tested):

    <!-- readme-test: file=NAME -->        write the block to NAME in the scratch dir
    <!-- readme-test: run -->              run the block (sh) with bash -euo pipefail
    <!-- readme-test: run cwd=repo -->     ... from the repository's root
    <!-- readme-test: expect -->           the previous run's stdout must equal the block
    <!-- readme-test: file=NAME then=CMD --> write NAME, then run CMD (sh) in the scratch dir

Every README gets one scratch directory, in which the blocks run in order.
The environment says where things are, as a reader's shell would after
following the README: HOTMOD_PLUGINS (the built example plugins), PREFIX
(a scratch prefix that the README's own `make install` fills), HOME (inside
the scratch directory), and PATH with the test tools (the Python binding's
virtualenv, the Node binding's node_modules/.bin) first.

Usage: readme-test.py README.md [more.md ...]
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"<!--\s*readme-test:(.*?)-->")
FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)")


def blocks(text: str):
    """Yields (line, options, lang, code) for every marked block."""
    lines = text.splitlines()
    i = 0
    pending: dict[str, str] | None = None
    while i < len(lines):
        m = MARKER.search(lines[i])
        if m:
            pending = {}
            for tok in shlex.split(m.group(1)):
                k, _, v = tok.partition("=")
                pending[k] = v
            i += 1
            continue
        f = FENCE.match(lines[i])
        if f:
            fence, lang = f.group(1), f.group(2)
            start = i + 1
            j = start
            while j < len(lines) and not lines[j].startswith(fence):
                j += 1
            if pending is not None:
                yield start, pending, lang, "\n".join(lines[start:j]) + "\n"
            pending = None
            i = j + 1
            continue
        if lines[i].strip():
            pending = None  # a marker applies only to the block right after it
        i += 1


def run(cmd: str, cwd: Path, env: dict[str, str], where: str) -> str:
    p = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    if p.returncode != 0:
        sys.stderr.write(f"{where}: FAILED (exit {p.returncode})\n--- command\n{cmd}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}\n")
        raise SystemExit(1)
    return p.stdout


def test_readme(path: Path) -> int:
    text = path.read_text()
    scratch = Path(tempfile.mkdtemp(prefix="hotmod-readme-"))
    home = scratch / "home"
    home.mkdir()
    env = dict(os.environ)
    plugins = os.environ.get("HOTMOD_PLUGIN_DIR", str(REPO / "build" / "plugins"))
    tools = [REPO / "bindings" / "python" / ".venv" / "bin", REPO / "bindings" / "node" / "node_modules" / ".bin"]
    # The reader's toolchains stay where they are when HOME moves.
    real_home = Path.home()
    env.setdefault("RUSTUP_HOME", str(real_home / ".rustup"))
    env.setdefault("CARGO_HOME", str(real_home / ".cargo"))
    env.update(
        HOME=str(home),
        HOTMOD_PLUGINS=plugins,
        HOTMOD_REPO=str(REPO),
        PREFIX=str(scratch / "prefix"),
        PATH=os.pathsep.join([*(str(t) for t in tools if t.is_dir()), env.get("PATH", "")]),
    )
    last_out = None
    count = 0
    for line, opts, lang, code in blocks(text):
        where = f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}:{line}"
        count += 1
        if "file" in opts:
            (scratch / opts["file"]).write_text(code)
            if opts.get("then"):
                last_out = run(opts["then"], scratch, env, where)
        elif "run" in opts:
            cwd = REPO if opts.get("cwd") == "repo" else scratch
            last_out = run(code, cwd, env, where)
        elif "expect" in opts:
            if last_out is None or last_out.strip() != code.strip():
                sys.stderr.write(f"{where}: expected output\n{code}--- found\n{last_out}\n")
                raise SystemExit(1)
        else:
            sys.stderr.write(f"{where}: unknown readme-test marker {opts}\n")
            raise SystemExit(2)
        print(f"  ok  {where} ({lang or 'text'}{', ' + ' '.join(f'{k}={v}' if v else k for k, v in opts.items())})")
    return count


def main() -> None:
    total = 0
    for arg in sys.argv[1:]:
        n = test_readme(Path(arg).resolve())
        if n == 0:
            sys.stderr.write(f"{arg}: no block is marked readme-test\n")
            raise SystemExit(1)
        total += n
    print(f"{total} passed, 0 failed")


if __name__ == "__main__":
    main()
