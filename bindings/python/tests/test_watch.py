"""Runtime.watch: a plugin directory followed on the runtime's hotmod-watch
thread. Asynchronous effects are awaited by polling with a timeout; the
scenarios that could deadlock run in a subprocess with a time limit, so a
regression fails instead of hanging the suite."""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import PLUGIN_DIR, plugin

import hotmod

TIMEOUT = 10.0
FAST = 0.05  # debounce used by the tests, seconds


def wait_for(what: str, pred: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout}s waiting for: {what}")
        time.sleep(0.01)


def version(rt: hotmod.Runtime) -> bytes | None:
    try:
        return bytes(rt.call("checksum", "version", b""))
    except hotmod.HotmodError:
        return None


def publish(directory: Path, name: str, data: bytes) -> None:
    """Writes `data` beside `name` under a name the watcher ignores, then
    renames it over `name` (atomic: the watcher never sees a partial file)."""
    tmp = directory / f"{name}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, directory / name)


def thread_comm(native_id: int) -> str:
    """The OS-level name of a thread of this process."""
    return Path(f"/proc/self/task/{native_id}/comm").read_text().strip()


@pytest.fixture
def watched(tmp_path: Path) -> Path:
    """A private directory with a copy of libchecksum.so (v1)."""
    d = tmp_path / "plugins"
    d.mkdir(mode=0o700)
    shutil.copy(plugin("checksum"), d / "libchecksum.so")
    return d


class Recorder:
    """An event handler that records events and the thread each came on."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[hotmod.Event, int]] = []

    def __call__(self, ev: hotmod.Event) -> None:
        with self.lock:
            self.events.append((ev, threading.get_native_id()))

    def of(self, kind: hotmod.EventKind) -> list[tuple[hotmod.Event, int]]:
        with self.lock:
            return [(e, t) for e, t in self.events if e.kind == kind]


def test_files_present_load_and_a_replaced_file_upgrades(rt: hotmod.Runtime, watched: Path) -> None:
    rec = Recorder()
    rt.set_event_handler(rec)
    with rt.watch(watched, debounce=FAST) as w:
        assert isinstance(w, hotmod.Watcher)
        # Loaded before watch() returns, on this thread.
        assert version(rt) == b"1.0.0"
        assert rt.module("checksum").path == str(watched.resolve() / "libchecksum.so")
        assert [t for _, t in rec.of(hotmod.EventKind.ACTIVATED)] == [threading.get_native_id()]
        assert w.dir == str(watched.resolve())
        assert w.running and w.debounce == FAST and w.unload_on_remove is False
        assert repr(w) == f"<hotmod.Watcher {str(watched.resolve())!r} running>"
        handle = rt.method("checksum", "version")

        publish(watched, "libchecksum.so", plugin("checksum-v2").read_bytes())
        wait_for("checksum 2.0.0", lambda: version(rt) == b"2.0.0")
        assert bytes(handle(b"")) == b"2.0.0"  # handles follow
        assert bytes(rt.call("checksum", "crc32", b"123456789")) == (0xCBF43926).to_bytes(4, "little")
        # The upgrade's events came from the watcher's own thread.
        wait_for("ACTIVATED 2.0.0", lambda: any(e.version == "2.0.0" for e, _ in rec.of(hotmod.EventKind.ACTIVATED)))
        tid = next(t for e, t in rec.of(hotmod.EventKind.ACTIVATED) if e.version == "2.0.0")
        assert tid != threading.get_native_id()
        assert thread_comm(tid) == "hotmod-watch"

        # A new file is loaded.
        shutil.copy(plugin("text"), watched / "libtext.so")
        wait_for("text loaded", lambda: "text" in rt)
        # Files that are not plugins are ignored.
        (watched / "notes.txt").write_text("not a plugin")
        assert rec.of(hotmod.EventKind.UPGRADE_FAILED) == []
    assert not w.running
    assert repr(w).endswith("stopped>")


def test_corrupt_file_reports_upgrade_failed_while_old_version_serves(rt: hotmod.Runtime, watched: Path) -> None:
    rec = Recorder()
    rt.set_event_handler(rec)
    w = rt.watch(watched, debounce=FAST)
    crc32 = rt.method("checksum", "crc32")
    stop = threading.Event()
    calls = [0]
    failures: list[BaseException] = []

    def caller() -> None:
        while not stop.is_set():
            try:
                assert bytes(crc32(b"123456789")) == (0xCBF43926).to_bytes(4, "little")
                calls[0] += 1
            except BaseException as e:  # noqa: BLE001
                failures.append(e)
                return

    t = threading.Thread(target=caller)
    t.start()
    try:
        publish(watched, "libchecksum.so", b"definitely not a shared library")
        wait_for("UPGRADE_FAILED reaches the Python handler", lambda: rec.of(hotmod.EventKind.UPGRADE_FAILED) != [])
        ev, tid = rec.of(hotmod.EventKind.UPGRADE_FAILED)[0]
        assert ev.module == "checksum"
        assert ev.code == hotmod.Status.NOT_A_LIBRARY
        assert ev.path == str(watched.resolve() / "libchecksum.so")
        assert ev.message
        assert thread_comm(tid) == "hotmod-watch"
        assert version(rt) == b"1.0.0"  # the old version keeps serving

        # A truncated build as a new file: refused before it is mapped.
        v2 = plugin("checksum-v2").read_bytes()
        (watched / "libhalf.so").write_bytes(v2[: len(v2) // 3])
        wait_for(
            "UPGRADE_FAILED for libhalf.so",
            lambda: any(e.path.endswith("libhalf.so") for e, _ in rec.of(hotmod.EventKind.UPGRADE_FAILED)),
        )
        assert version(rt) == b"1.0.0"

        # A good build afterwards still upgrades: the watch went on.
        publish(watched, "libchecksum.so", v2)
        wait_for("checksum 2.0.0", lambda: version(rt) == b"2.0.0")
    finally:
        stop.set()
        t.join()
        w.stop()
    assert failures == []
    assert calls[0] > 0


def test_removed_file_unloads_only_when_asked(rt: hotmod.Runtime, watched: Path, tmp_path: Path) -> None:
    with rt.watch(watched, debounce=FAST, unload_on_remove=True) as w:
        assert w.unload_on_remove
        assert "checksum" in rt
        os.remove(watched / "libchecksum.so")
        wait_for("checksum unloaded", lambda: "checksum" not in rt)

    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    shutil.copy(plugin("checksum"), other / "libchecksum.so")
    with rt.watch(other, debounce=FAST):
        assert "checksum" in rt
        os.remove(other / "libchecksum.so")
        # Once a later file has been acted on, the removal has been too.
        shutil.copy(plugin("text"), other / "libtext.so")
        wait_for("text loaded", lambda: "text" in rt)
        assert version(rt) == b"1.0.0"  # kept running
        # rm then cp of a new build upgrades it.
        shutil.copy(plugin("checksum-v2"), other / "libchecksum.so")
        wait_for("checksum 2.0.0", lambda: version(rt) == b"2.0.0")


def test_stop_and_close_with_an_active_watcher(watched: Path, tmp_path: Path) -> None:
    rt = hotmod.Runtime()
    w = rt.watch(watched, debounce=FAST)
    w.stop()
    w.stop()  # idempotent
    assert not w.running
    assert "checksum" in rt  # modules stay loaded after the watch stops
    # Once stopped, the directory may be watched again; the new watch loads
    # what the old one did not (libchecksum.so is already loaded from there).
    shutil.copy(plugin("text"), watched / "libtext.so")
    w2 = rt.watch(watched, debounce=FAST)
    assert "text" in rt
    with pytest.raises(hotmod.BusyError, match="already watched"):
        rt.watch(str(watched) + "/.")

    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    w3 = rt.watch(other, debounce=FAST)
    assert w2.running and w3.running
    rt.close()  # stops both watches before unloading
    assert not w2.running and not w3.running
    assert rt.closed
    w2.stop()  # still fine after close
    with pytest.raises(hotmod.RuntimeClosedError, match="watch"):
        rt.watch(other)


def test_watcher_does_not_keep_the_runtime_alive(watched: Path) -> None:
    rt = hotmod.Runtime()
    w = rt.watch(watched, debounce=FAST)
    checksum = rt.module("checksum")
    del rt
    gc.collect()
    assert not w.running  # dropping the runtime stopped its watch
    assert not checksum.is_loaded


def test_watch_errors(rt: hotmod.Runtime, tmp_path: Path) -> None:
    with pytest.raises(hotmod.FileMissingError, match="nothing"):
        rt.watch(tmp_path / "missing")
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(hotmod.InvalidArgumentError, match="not a directory|found a file"):
        rt.watch(f)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(hotmod.InvalidArgumentError, match="debounce"):
            rt.watch(tmp_path, debounce=bad)
    with pytest.raises(TypeError):
        rt.watch(tmp_path, 0.1)  # type: ignore[misc]  (keyword-only)
    # A failed watch leaves nothing behind: the directory can be watched.
    with rt.watch(tmp_path, debounce=FAST) as w:
        assert w.running


def run_script(body: str, *, setup: bool = False, timeout: float = 60) -> str:
    """Runs `body` in a fresh interpreter (plugins in PLUGIN_DIR, after
    SETUP if `setup`); returns stdout. A deadlock fails the test after
    `timeout` seconds."""
    script = "import os, shutil, sys, tempfile, threading, time\nimport hotmod\n"
    script += f"PLUGINS = {str(PLUGIN_DIR)!r}\n" + (SETUP if setup else "") + textwrap.dedent(body)
    try:
        r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"deadlock: the script did not finish in {timeout}s\nstdout: {e.stdout}\nstderr: {e.stderr}")
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


# Shared by the subprocess scenarios: a watched directory holding v1, and a
# handler that signals the first event of an upgrade, then holds the
# watcher's thread in Python for a while (sleeping: the GIL is free, and the
# thread needs it back to return and to deliver the upgrade's other events),
# then says so; and watch_mid_upgrade(), which starts a runtime watching it
# and returns (runtime, watcher) once the watcher's thread, upgrading to v2,
# is in that handler.
SETUP = """
d = tempfile.mkdtemp()
shutil.copy(os.path.join(PLUGINS, "libchecksum.so"), d)
in_handler = threading.Event()
def handler(ev):
    if threading.current_thread() is not threading.main_thread() and not in_handler.is_set():
        in_handler.set()
        time.sleep(0.3)
        print("handler returned", flush=True)
def publish_v2():
    shutil.copy(os.path.join(PLUGINS, "libchecksum-v2.so"), os.path.join(d, "libchecksum.so.tmp"))
    os.replace(os.path.join(d, "libchecksum.so.tmp"), os.path.join(d, "libchecksum.so"))
def watch_mid_upgrade():
    rt = hotmod.Runtime()
    rt.set_event_handler(handler)
    w = rt.watch(d, debounce=0.05)
    publish_v2()
    assert in_handler.wait(10)
    return rt, w
"""


def test_stop_while_the_watcher_thread_needs_the_gil() -> None:
    out = run_script(
        """
        rt, w = watch_mid_upgrade()
        # The watcher's thread is mid-upgrade and will need the GIL, which
        # this thread holds: stop() must release it while it joins.
        w.stop()
        assert not w.running
        print(bytes(rt.call("checksum", "version", b"")).decode())
        rt.close()
        print("ok")
        """,
        setup=True,
    )
    # stop() waited for the change being applied.
    assert out.splitlines() == ["handler returned", "2.0.0", "ok"]


def test_close_while_the_watcher_thread_needs_the_gil() -> None:
    out = run_script(
        """
        rt, w = watch_mid_upgrade()
        rt.close()  # stops the watch (joining with the GIL released), then unloads
        assert not w.running and rt.closed
        print("ok")
        """,
        setup=True,
    )
    assert out.splitlines() == ["handler returned", "ok"]


def test_stop_from_the_event_handler_on_the_watcher_thread() -> None:
    out = run_script(
        """
        d = tempfile.mkdtemp()
        shutil.copy(os.path.join(PLUGINS, "libchecksum.so"), d)
        rt = hotmod.Runtime()
        box = {}
        stopped = threading.Event()
        def handler(ev):
            if ev.kind == hotmod.EventKind.UPGRADE_FAILED:
                box["w"].stop()  # on the hotmod-watch thread: must not join itself
                stopped.set()
        rt.set_event_handler(handler)
        box["w"] = rt.watch(d, debounce=0.05)
        with open(os.path.join(d, "libchecksum.so.tmp"), "wb") as f:
            f.write(b"garbage")
        os.replace(os.path.join(d, "libchecksum.so.tmp"), os.path.join(d, "libchecksum.so"))
        assert stopped.wait(10)
        assert not box["w"].running
        print(bytes(rt.call("checksum", "version", b"")).decode())
        rt.close()
        print("ok")
        """
    )
    assert out.splitlines() == ["1.0.0", "ok"]


def test_stop_from_a_handler_holding_the_runtime_lock() -> None:
    # The handler runs on this thread during a load, under the runtime's
    # administrative lock; the watcher's thread waits for that lock to apply
    # an upgrade. stop() must not wait for that thread there.
    out = run_script(
        """
        rt = hotmod.Runtime()
        w = rt.watch(d, debounce=0.05)
        def on_event(ev):
            if ev.kind == hotmod.EventKind.ACTIVATED and ev.module == "text":
                publish_v2()
                time.sleep(0.5)  # the watcher's thread settles the file and blocks
                w.stop()
                print("stopped", w.running, flush=True)
        rt.set_event_handler(on_event)
        rt.load(os.path.join(PLUGINS, "libtext.so"))
        print("loaded")
        rt.close()
        print("ok")
        """,
        setup=True,
    )
    assert out.splitlines() == ["stopped False", "loaded", "ok"]


def test_interpreter_exits_with_a_watch_running() -> None:
    # No stop(), no close(): the atexit hook stops the watch while the
    # interpreter is whole, even with an upgrade delivering events.
    out = run_script(
        """
        rt, w = watch_mid_upgrade()
        print("exiting")
        """,
        setup=True,
    )
    # The exit waited for the change being applied, rather than tearing the
    # interpreter down under the watcher's thread.
    assert out.splitlines() == ["exiting", "handler returned"]
