"""fork(): a child forked by multiprocessing (the "fork" start method)
loads, calls and unloads, and exits cleanly (issue 8, item 17) — while a
thread of the parent was parked inside a plugin call at the fork, and
while the parent's threads were registering and leaving the reader list.

Needs the core's fork handling (reader state reset in the child); until
it is in, the child never sees its unloaded version destroyed, or hangs.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

import hotmod

DEADLINE = 60.0


def child(conn: Connection, rt: hotmod.Runtime, lifecycle: str) -> None:
    """In the forked child: the parent's runtime still answers; a runtime
    of its own loads, calls and unloads, and the unloaded version is
    destroyed (its destroy hook reports through a host function)."""
    try:
        assert bytes(rt.call("probe", "echo", b"child")) == b"child"
        rt.unload("probe")
        own = hotmod.Runtime()
        destroyed: list[int] = []
        own.register_host_function("destroyed", lambda d: destroyed.append(int.from_bytes(d, "little")))
        own.load(lifecycle)
        work = own.method("lifecycle", "work")
        for _ in range(100):
            work(b"x")
        own.unload("lifecycle")
        deadline = time.monotonic() + 10
        while not destroyed and time.monotonic() < deadline:
            time.sleep(0.01)
        own.close()
        conn.send(("ok", len(destroyed)))
    except BaseException as e:  # noqa: BLE001 (sent to the parent)
        conn.send(("error", repr(e)))


def test_forked_children_load_call_unload(plugins: Callable[[str], Path]) -> None:
    ctx = multiprocessing.get_context("fork")
    with hotmod.Runtime() as rt:
        rt.load(plugins("probe"))
        sleep = rt.method("probe", "sleep_ms", gil="release")
        echo = rt.method("probe", "echo")
        stop = threading.Event()

        def parked() -> None:
            # Inside a read section of the parent when the children fork.
            while not stop.is_set():
                sleep((500).to_bytes(4, "little"))

        def churn() -> None:
            # Threads that join and leave the reader list while forking.
            while not stop.is_set():
                t = threading.Thread(target=lambda: echo(b"c"))
                t.start()
                t.join()

        helpers = [threading.Thread(target=parked), threading.Thread(target=churn)]
        for t in helpers:
            t.start()
        try:
            time.sleep(0.05)
            for _ in range(4):
                ours, theirs = ctx.Pipe()
                p = ctx.Process(target=child, args=(theirs, rt, str(plugins("lifecycle"))))
                p.start()
                p.join(DEADLINE)
                if p.is_alive():
                    p.kill()
                    p.join()
                    raise AssertionError(f"expected the forked child to finish, found it still running after {DEADLINE} s")
                assert ours.poll(), f"the child sent nothing (exit code {p.exitcode})"
                status, detail = ours.recv()
                assert status == "ok", detail
                assert detail == 1, "expected the child's unloaded version destroyed once, found it never destroyed"
                assert p.exitcode == 0
        finally:
            stop.set()
            for t in helpers:
                t.join()
