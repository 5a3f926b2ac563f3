"""Zero copy both ways: the plugin reads Python's memory in place, and the
output is the plugin's memory, released exactly once after the last
reference (the Output or any view of it) goes."""

from __future__ import annotations

import array
import ctypes
import gc
import mmap

import numpy as np
import pytest
from conftest import plugin, u64

import hotmod


def address_of(obj: object) -> int:
    """The address of the first byte of a writable or read-only buffer."""
    if isinstance(obj, bytes):
        return ctypes.cast(ctypes.c_char_p(obj), ctypes.c_void_p).value or 0
    if isinstance(obj, np.ndarray):
        return obj.__array_interface__["data"][0]
    if isinstance(obj, array.array):
        return obj.buffer_info()[0]
    view = memoryview(obj)  # type: ignore[arg-type]
    if view.readonly:
        raise TypeError("address_of: use a writable buffer here")
    return ctypes.addressof(ctypes.c_char.from_buffer(view))


def counts(rt: hotmod.Runtime) -> tuple[int, int]:
    """(gives, releases) of probe.give so far."""
    c = bytes(rt.call("probe", "counts", b""))
    return int.from_bytes(c[:8], "little"), int.from_bytes(c[8:], "little")


def test_input_is_read_in_place(rt: hotmod.Runtime, probe: hotmod.Module) -> None:
    addr = probe.method("addr")
    payload = bytes(range(200))
    ba = bytearray(payload)
    arr = np.arange(1000, dtype=np.float64)
    a = array.array("I", range(50))
    mm = mmap.mmap(-1, 4096)
    mm.write(b"mapped")
    try:
        for obj in (payload, ba, arr, a, mm):
            assert u64(addr(obj)) == address_of(obj), type(obj)
            assert u64(rt.call("probe", "addr", obj)) == address_of(obj), type(obj)
        # A slice of a memoryview is read at its own offset, still no copy.
        assert u64(addr(memoryview(ba)[10:])) == address_of(ba) + 10
        assert u64(addr(arr[100:])) == address_of(arr) + 800
        assert u64(addr(memoryview(mm)[5:])) == address_of(mm) + 5
    finally:
        mm.close()
    big = bytes(1 << 20)
    assert u64(addr(big)) == address_of(big)


def test_output_is_plugin_memory_released_once(rt: hotmod.Runtime, probe: hotmod.Module) -> None:
    give = probe.method("give")
    g0, r0 = counts(rt)
    out = give(b"zero-copy output")
    assert out.is_plugin_memory and out == b"zero-copy output"
    assert counts(rt) == (g0 + 1, r0)
    # Views read the plugin's memory itself.
    view = memoryview(out)
    arr = np.frombuffer(out, dtype=np.uint8)
    assert arr.__array_interface__["data"][0] == out.address
    assert ctypes.cast((ctypes.c_char * len(out)).from_address(out.address), ctypes.c_void_p).value == out.address
    assert out.exports == 2
    del out
    gc.collect()
    assert counts(rt) == (g0 + 1, r0), "released while views still used it"
    assert view.tobytes() == b"zero-copy output" and bytes(arr) == b"zero-copy output"
    del view
    assert counts(rt) == (g0 + 1, r0), "released while a numpy array still used it"
    sub = arr[5:]  # a view of a view keeps it too
    del arr
    assert counts(rt) == (g0 + 1, r0)
    assert bytes(sub) == b"copy output"
    del sub
    assert counts(rt) == (g0 + 1, r0 + 1)
    gc.collect()
    assert counts(rt) == (g0 + 1, r0 + 1), "released more than once"


def test_output_outlives_handle_module_and_unload() -> None:
    # Each load maps a private copy of the file, so the unloaded version's
    # counters cannot be read afterwards; its end shows as the UNLOADED event
    # ("destroyed after its last call"), which must wait for the last output.
    events: list[hotmod.Event] = []
    with hotmod.Runtime(drain_timeout=0.02) as rt:
        rt.set_event_handler(events.append)
        rt.load(plugin("probe"))
        give = rt.method("probe", "give")
        payload = bytes(range(256)) * 64
        outs = [give(payload) for _ in range(5)]
        g, r = counts(rt)
        assert g - r == 5
        mv = memoryview(outs[0])
        del give
        rt.unload("probe")

        def unloaded() -> int:
            return sum(1 for e in events if e.kind == hotmod.EventKind.UNLOADED and e.module == "probe")

        gc.collect()
        assert unloaded() == 0, "destroyed while its outputs were alive"
        assert all(o == payload and o.is_plugin_memory for o in outs)
        assert mv.tobytes() == payload
        del outs
        gc.collect()
        assert unloaded() == 0, "destroyed while a memoryview was alive"
        assert mv.tobytes() == payload
        del mv
        assert unloaded() == 1
        gc.collect()
        assert unloaded() == 1


def test_output_outlives_runtime(probe: hotmod.Module) -> None:
    rt2 = hotmod.Runtime()
    rt2.load(plugin("probe"))
    out = rt2.call("probe", "give", b"survivor")
    rt2.close()
    assert out == b"survivor" and bytes(memoryview(out)) == b"survivor"


def test_many_outputs_across_threads_released_exactly_once(rt: hotmod.Runtime, probe: hotmod.Module) -> None:
    import threading

    give = probe.method("give")
    g0, r0 = counts(rt)
    n_threads, per_thread = 4, 500

    def work() -> None:
        kept = []
        for i in range(per_thread):
            o = give(i.to_bytes(4, "little"))
            if i % 3 == 0:
                kept.append(np.frombuffer(o, dtype=np.uint32))
        assert [int(k[0]) for k in kept] == list(range(0, per_thread, 3))

    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gc.collect()
    assert counts(rt) == (g0 + n_threads * per_thread, r0 + n_threads * per_thread)


def test_host_memory_output_owned_by_python(rt: hotmod.Runtime, probe: hotmod.Module) -> None:
    out = probe.call("echo", b"in the host's buffer")
    assert not out.is_plugin_memory
    assert np.frombuffer(out, dtype=np.uint8).__array_interface__["data"][0] == out.address


@pytest.mark.parametrize("size", [0, 1, 255, 256, 257, 1 << 20])
def test_echo_sizes(probe: hotmod.Module, size: int) -> None:
    data = bytes(i % 251 for i in range(size))
    assert probe.call("echo", data) == data
