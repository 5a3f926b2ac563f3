"""The GIL is released during plugin calls; calls run in parallel from
Python threads, including while the module is upgraded under them."""

from __future__ import annotations

import threading
import time
import zlib

from conftest import plugin, u64

import hotmod

SLEEP_MS = 200


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def test_gil_released_during_calls(rt: hotmod.Runtime, probe: hotmod.Module) -> None:
    sleep = probe.method("sleep_ms")
    arg = SLEEP_MS.to_bytes(4, "little")
    sleep(arg)  # warm up
    one = _timed(lambda: sleep(arg))
    assert one >= SLEEP_MS / 1000 * 0.95

    def two_in_parallel() -> None:
        threads = [threading.Thread(target=sleep, args=(arg,)), threading.Thread(target=rt.call, args=("probe", "sleep_ms", arg))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    both = _timed(two_in_parallel)
    # Serialised by the GIL this would take 2x; in parallel about 1x. The
    # bound leaves a wide margin for a loaded machine.
    assert both < 1.7 * one, f"two parallel calls took {both:.3f}s, one took {one:.3f}s"


def test_python_runs_while_a_plugin_call_blocks(probe: hotmod.Module) -> None:
    ticks = 0
    done = threading.Event()

    def call() -> None:
        probe.call("sleep_ms", SLEEP_MS.to_bytes(4, "little"))
        done.set()

    t = threading.Thread(target=call)
    t.start()
    while not done.is_set():
        ticks += 1  # pure Python work: needs the GIL
        time.sleep(0)
    t.join()
    assert ticks > 100


def test_parallel_calls_are_correct(rt: hotmod.Runtime) -> None:
    rt.load(plugin("checksum"))
    crc = rt.method("checksum", "crc32")
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(2000):
                data = f"{seed}-{i}".encode() * (1 + i % 7)
                assert u64(crc(data)) == zlib.crc32(data)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    stats = {s.method: s for s in rt.stats()}
    assert stats["crc32"].calls == 8000 and stats["crc32"].errors == 0


def test_upgrade_under_load_fails_no_call(rt: hotmod.Runtime) -> None:
    rt.load(plugin("checksum"))
    crc = rt.method("checksum", "crc32")
    stop = threading.Event()
    failures: list[BaseException] = []
    versions_seen: set[bytes] = set()
    calls = [0] * 4

    def caller(k: int) -> None:
        data = b"under load %d" % k
        want = zlib.crc32(data)
        while not stop.is_set():
            try:
                assert u64(crc(data)) == want
                assert u64(rt.call("checksum", "crc32", data)) == want
                versions_seen.add(bytes(rt.call("checksum", "version", b"")))
                calls[k] += 3
            except BaseException as e:  # noqa: BLE001 - reported below
                failures.append(e)
                return

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.05)
        for i in range(10):
            target = "checksum-v2" if i % 2 == 0 else "checksum"
            rt.upgrade("checksum", plugin(target))
            time.sleep(0.02)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == [], failures[:3]
    assert sum(calls) > 100
    assert versions_seen == {b"1.0.0", b"2.0.0"}
    assert rt.module("checksum").version == "1.0.0"
