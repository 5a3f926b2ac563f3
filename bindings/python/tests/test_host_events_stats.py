"""Host functions (Python callables plugins call), lifecycle events to a
Python callback, and statistics."""

from __future__ import annotations

import gc
import sys
import threading
import weakref

import pytest
from conftest import plugin, u64

import hotmod


def test_host_function_called_by_plugin(rt: hotmod.Runtime) -> None:
    rt.load(plugin("text"))
    greet = rt.method("text", "greet")
    assert greet(b"world") == b"Hello, world!"  # no host function: the plugin's fallback
    seen: list[tuple[bytes, str]] = []

    def greeting(data: bytes) -> bytes:
        seen.append((data, threading.current_thread().name))
        return b"Hi"

    assert rt.register_host_function("greeting", greeting) is greeting
    assert greet(b"world") == b"Hi, world!"
    assert seen == [(b"world", threading.current_thread().name)]
    rt.register_host_function("greeting", lambda data: "Grüß " + data.decode())  # str is UTF-8 encoded
    assert greet(b"dich").decode() == "Grüß dich, dich!"
    rt.register_host_function("greeting", lambda data: memoryview(b"Yo"))
    assert greet(b"x") == b"Yo, x!"
    assert rt.unregister_host_function("greeting") is True
    assert rt.unregister_host_function("greeting") is False
    assert greet(b"world") == b"Hello, world!"


def test_host_function_failures_do_not_escape(rt: hotmod.Runtime) -> None:
    rt.load(plugin("text"))

    def broken(data: bytes) -> bytes:
        raise ValueError("nope")

    rt.register_host_function("greeting", broken)
    # text.greet falls back to "Hello" when the host function fails.
    assert rt.call("text", "greet", b"a") == b"Hello, a!"
    rt.register_host_function("greeting", lambda data: 42)  # wrong return type
    assert rt.call("text", "greet", b"a") == b"Hello, a!"
    with pytest.raises(TypeError, match="callable"):
        rt.register_host_function("greeting", "not callable")  # type: ignore[arg-type]
    with pytest.raises(hotmod.InvalidArgumentError):
        rt.register_host_function("", lambda d: d)


def test_host_function_from_many_threads(rt: hotmod.Runtime) -> None:
    rt.load(plugin("text"))
    count = [0]
    lock = threading.Lock()

    def greeting(data: bytes) -> bytes:
        with lock:
            count[0] += 1
        return b"Hey"

    rt.register_host_function("greeting", greeting)
    greet = rt.method("text", "greet")

    def work(k: int) -> None:
        for i in range(300):
            assert greet(b"%d-%d" % (k, i)) == b"Hey, %d-%d!" % (k, i)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert count[0] == 1200


def test_host_function_called_from_plugin_destroy(rt: hotmod.Runtime) -> None:
    destroyed: list[int] = []
    rt.register_host_function("destroyed", lambda data: destroyed.append(u64(data)))
    rt.load(plugin("lifecycle"))
    assert destroyed == []
    rt.unload("lifecycle")
    assert len(destroyed) == 1


def test_events(rt: hotmod.Runtime) -> None:
    events: list[hotmod.Event] = []
    rt.set_event_handler(events.append)
    path = plugin("checksum")
    rt.load(path)
    kinds = [e.kind for e in events]
    assert kinds == [hotmod.EventKind.LOADED, hotmod.EventKind.VALIDATED, hotmod.EventKind.ACTIVATED]
    ev = events[-1]
    assert (ev.module, ev.version, ev.path, ev.code) == ("checksum", "1.0.0", str(path), 0)
    assert isinstance(ev.kind, hotmod.EventKind) and "ACTIVATED" in repr(ev)

    events.clear()
    rt.upgrade("checksum", plugin("checksum-v2"))
    kinds = [(e.kind, e.version) for e in events]
    assert (hotmod.EventKind.ACTIVATED, "2.0.0") in kinds
    assert (hotmod.EventKind.DRAINING, "1.0.0") in kinds
    assert (hotmod.EventKind.UNLOADED, "1.0.0") in kinds

    events.clear()
    with pytest.raises(hotmod.FileMissingError):
        rt.upgrade("checksum", "/nonexistent/libchecksum.so")
    failed = [e for e in events if e.kind == hotmod.EventKind.UPGRADE_FAILED]
    assert len(failed) == 1 and failed[0].code == 1001 and "/nonexistent" in failed[0].message

    events.clear()
    rt.unload("checksum")
    rt.load(plugin("checksum"))
    rt.load(plugin("dependent"))  # logs from init
    logs = [e for e in events if e.kind == hotmod.EventKind.LOG]
    assert [(e.module, e.message) for e in logs] == [("dependent", "dependent: init says hello")]
    assert logs[0].code == 3  # HOTMOD_LOG_INFO

    rt.set_event_handler(None)
    events.clear()
    rt.unload("dependent")
    assert events == []
    with pytest.raises(TypeError, match="callable"):
        rt.set_event_handler(42)  # type: ignore[arg-type]


def test_event_handler_exception_is_reported_not_raised(rt: hotmod.Runtime, monkeypatch) -> None:
    reported: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: reported.append(u.exc_value))

    def bad_handler(event: hotmod.Event) -> None:
        raise RuntimeError("handler bug")

    rt.set_event_handler(bad_handler)
    assert rt.load(plugin("probe")).name == "probe"  # the load is not affected
    assert reported and all(isinstance(e, RuntimeError) for e in reported)
    rt.set_event_handler(None)


def test_events_on_close() -> None:
    events: list[hotmod.Event] = []
    rt = hotmod.Runtime()
    rt.set_event_handler(events.append)
    rt.load(plugin("probe"))
    rt.close()
    assert [e.kind for e in events][-2:] == [hotmod.EventKind.DRAINING, hotmod.EventKind.UNLOADED]


def test_reference_cycle_through_handler_is_collected() -> None:
    rt = hotmod.Runtime()
    rt.load(plugin("probe"))
    events: list[hotmod.Event] = []
    rt.set_event_handler(lambda e, rt=rt: events.append(e))  # the handler refers to its runtime
    rt.register_host_function("greeting", lambda d, rt=rt: b"x")
    ref = weakref.ref(rt)
    del rt
    gc.collect()
    assert ref() is None, "a Runtime referenced from its own callbacks was never freed"


def test_stats_and_prometheus(rt: hotmod.Runtime) -> None:
    rt.load(plugin("probe"))
    echo = rt.method("probe", "echo")
    for _ in range(40):
        echo(b"x")
    for _ in range(2):
        with pytest.raises(hotmod.PluginError):
            rt.call("probe", "fail", b"")
    stats = {s.method: s for s in rt.stats()}
    assert set(stats) >= {"echo", "fail", "addr", "give"}
    e = stats["echo"]
    assert (e.module, e.version, e.present) == ("probe", "1.0.0", True)
    assert e.calls == 40 and e.errors == 0 and e.panics == 0 and e.handles == 1
    assert e.latency_samples >= 1 and e.p99_ns >= e.p50_ns > 0
    assert stats["fail"].errors == 2
    d = e.as_dict()
    assert d["calls"] == 40 and d["method"] == "echo" and "p99_ns" in d
    assert "calls=40" in repr(e)
    text = rt.stats_prometheus()
    assert 'hotmod_method_calls_total{module="probe",method="echo"} 40' in text
    assert 'hotmod_method_errors_total{module="probe",method="fail"} 2' in text
    assert "# TYPE hotmod_method_latency_seconds histogram" in text
