"""The GIL policy of plugin calls ("release", "hold", "auto") and the
vectorcall entry point of method handles."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import hotmod

POLICIES = ("release", "hold", "auto")


def ms(n: int) -> bytes:
    return n.to_bytes(4, "little")


def test_policy_settings() -> None:
    with hotmod.Runtime() as rt:
        assert rt.gil == "auto" and rt.gil_threshold == pytest.approx(5e-6)
    with hotmod.Runtime(gil="hold", gil_threshold=0.25) as rt:
        assert rt.gil == "hold" and rt.gil_threshold == pytest.approx(0.25)
    with pytest.raises(hotmod.InvalidArgumentError, match=r'Runtime\(gil=...\): expected a GIL policy "auto", "release" or "hold", found "sometimes"'):
        hotmod.Runtime(gil="sometimes")
    with pytest.raises(hotmod.InvalidArgumentError, match=r"gil_threshold"):
        hotmod.Runtime(gil_threshold=-1.0)


def test_per_handle_policy(plugins: Callable[[str], Path]) -> None:
    with hotmod.Runtime(gil="release") as rt:
        probe = rt.load(plugins("probe"))
        h = rt.method("probe", "noop")
        assert h.gil == "release" and h.releases_gil
        held = probe.method("noop", gil="hold")
        assert held.gil == "hold" and not held.releases_gil
        h.gil = "hold"
        assert h.gil == "hold" and not h.releases_gil
        h.gil = None  # back to the runtime's
        assert h.gil == "release"
        with pytest.raises(hotmod.InvalidArgumentError, match=r"Method.gil: expected a GIL policy"):
            h.gil = "never"
        with pytest.raises(hotmod.InvalidArgumentError, match=r"Runtime.method\(gil=...\)"):
            rt.method("probe", "noop", gil="x")
        # Only "auto" handles time their calls.
        h(b"")
        assert h.mean_latency is None


@pytest.mark.parametrize("policy", POLICIES)
def test_python_host_function_under_each_policy(plugins: Callable[[str], Path], policy: str) -> None:
    """A host function written in Python, called by the plugin on the
    caller's thread, works whether that thread holds the GIL or not; it may
    itself call a plugin (re-entrant), from several threads at once."""
    with hotmod.Runtime(gil=policy) as rt:
        rt.load(plugins("text"))
        rt.load(plugins("probe"))
        echo = rt.method("probe", "echo")
        seen: list[str] = []

        def greeting(data: bytes) -> bytes:
            seen.append(threading.current_thread().name)
            return bytes(echo(b"Hi"))

        rt.register_host_function("greeting", greeting)
        greet = rt.method("text", "greet")
        assert bytes(greet(b"you")) == b"Hi, you!"
        assert bytes(rt.call("text", "greet", b"me")) == b"Hi, me!"
        assert seen == [threading.current_thread().name] * 2

        errors: list[BaseException] = []

        def worker() -> None:
            try:
                for _ in range(200):
                    assert bytes(greet(b"t")) == b"Hi, t!"
            except BaseException as e:  # noqa: BLE001 (reported below)
                errors.append(e)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads), f"calls under gil={policy!r} did not finish"
        assert errors == []
        assert len(seen) == 2 + 4 * 200


def ticks_during_call(h: hotmod.Method, duration_ms: int) -> int:
    """How many times this thread got to run Python while another thread
    was inside a `duration_ms` plugin call through `h`. Each tick sleeps
    1 ms, handing the GIL back, so the other thread never waits for it:
    with the GIL held through the call, there is at most a tick at either
    edge of it."""
    started = threading.Event()
    done = threading.Event()

    def worker() -> None:
        started.set()
        h(ms(duration_ms))
        done.set()

    t = threading.Thread(target=worker)
    t.start()
    started.wait()
    ticks = 0
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    t.join()
    return ticks


def test_release_lets_other_threads_run(plugins: Callable[[str], Path]) -> None:
    with hotmod.Runtime(gil="release") as rt:
        rt.load(plugins("probe"))
        # 1 s in the plugin: even on a loaded machine (a wake-up late by tens
        # of ms) far more than 10 ticks.
        assert ticks_during_call(rt.method("probe", "sleep_ms"), 1000) >= 10


def test_hold_keeps_the_gil(plugins: Callable[[str], Path]) -> None:
    with hotmod.Runtime(gil="hold") as rt:
        rt.load(plugins("probe"))
        # Nothing else runs Python until the call returns: at most a tick at
        # either edge of the call.
        assert ticks_during_call(rt.method("probe", "sleep_ms"), 1000) <= 4


def test_auto_switches_on_measured_latency(plugins: Callable[[str], Path]) -> None:
    threshold = 0.005
    with hotmod.Runtime(gil="auto", gil_threshold=threshold) as rt:
        rt.load(plugins("probe"))
        h = rt.method("probe", "sleep_ms")
        # Never called: assumed long, the first call releases the GIL.
        assert h.gil == "auto" and h.releases_gil and h.mean_latency is None
        for _ in range(50):
            h(ms(0))
        latency = h.mean_latency
        assert latency is not None and latency < threshold / 2
        assert not h.releases_gil
        # Slow calls: sampled one in 64 at first, then every one.
        for n in range(1, 201):
            h(ms(10))
            if h.releases_gil:
                break
        assert h.releases_gil, f"still holding the GIL after {n} calls of 10 ms (mean {h.mean_latency})"
        latency = h.mean_latency
        assert latency is not None and latency > threshold
        # Released now: another thread runs during a long call.
        assert ticks_during_call(h, 1000) >= 10
        for _ in range(3000):
            h(ms(0))
        assert not h.releases_gil


def test_auto_holds_for_a_short_method(plugins: Callable[[str], Path]) -> None:
    with hotmod.Runtime() as rt:
        rt.load(plugins("probe"))
        h = rt.method("probe", "noop")
        for _ in range(1000):
            h(b"x" * 16)
        latency = h.mean_latency
        assert latency is not None and latency < rt.gil_threshold
        assert not h.releases_gil


def test_handle_call_protocol(plugins: Callable[[str], Path]) -> None:
    """handle(data) is a vectorcall; keywords and wrong counts behave as
    for any Python function."""
    with hotmod.Runtime() as rt:
        rt.load(plugins("probe"))
        h = rt.method("probe", "echo")
        assert type(h) is hotmod.Method and isinstance(h, hotmod.Method)
        assert bytes(h(b"abc")) == b"abc"
        assert bytes(h(data=b"kw")) == b"kw"
        assert bytes(h(bytearray(b"ba"))) == b"ba"
        with pytest.raises(TypeError, match="expected one argument"):
            h()
        with pytest.raises(TypeError, match="expected one argument"):
            h(b"a", b"b")
        with pytest.raises(TypeError):
            h(b"a", data=b"b")
        with pytest.raises(TypeError, match="bytes-like"):
            h(42)
        with pytest.raises(TypeError):
            hotmod.Method()  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="Runtime.method"):
            type(h).__mro__[1]()
        with pytest.raises(hotmod.PluginError, match="probe: failure requested"):
            rt.method("probe", "fail")(b"")
        rt.unload("probe")
        with pytest.raises(hotmod.StaleHandleError):
            h(b"x")
