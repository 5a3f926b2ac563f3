"""Calls by handle and by name, outputs, and every call-time status code
(and argument mistake) that can reach Python."""

from __future__ import annotations

import array
import ctypes
import zlib

import numpy as np
import pytest
from conftest import plugin, u64

import hotmod


def test_call_by_handle_and_by_name(rt: hotmod.Runtime) -> None:
    m = rt.load(plugin("checksum"))
    data = b"hello world"
    crc = m.method("crc32")
    assert (crc.module, crc.name) == ("checksum", "crc32")
    assert crc.signature_hash == m.methods[0].signature_hash
    assert "checksum.crc32" in repr(crc)
    expected = zlib.crc32(data)
    assert u64(crc(data)) == expected
    assert u64(crc.call(data)) == expected
    assert u64(crc.call(data, offer=4)) == expected
    assert u64(rt.call("checksum", "crc32", data)) == expected
    assert u64(m.call("crc32", data)) == expected
    assert u64(rt.method("checksum", "adler32")(data)) == zlib.adler32(data)
    assert u64(rt.call("checksum", "length", bytes(12345))) == 12345


def test_any_buffer_is_accepted(rt: hotmod.Runtime) -> None:
    rt.load(plugin("checksum"))
    crc = rt.method("checksum", "crc32")
    raw = bytes(range(256)) * 4
    want = zlib.crc32(raw)
    inputs = [
        raw,
        bytearray(raw),
        memoryview(raw),
        array.array("B", raw),
        array.array("I", raw),  # item type does not matter: its bytes are read
        np.frombuffer(raw, dtype=np.uint8),
        np.frombuffer(raw, dtype=np.float64).reshape(8, 16),  # C-contiguous 2-D
    ]
    for x in inputs:
        assert u64(crc(x)) == want, type(x)
    assert u64(crc(memoryview(raw)[10:20])) == zlib.crc32(raw[10:20])
    assert u64(crc(b"")) == zlib.crc32(b"")


def test_outputs(rt: hotmod.Runtime) -> None:
    rt.load(plugin("checksum"))
    rt.load(plugin("text"))
    out = rt.call("text", "upper", b"hello")
    assert isinstance(out, hotmod.Output)
    assert out == b"HELLO" and out == bytearray(b"HELLO") and out != b"hello" and out != 5
    assert bytes(out) == b"HELLO" and out.tobytes() == b"HELLO" and out.decode() == "HELLO"
    assert len(out) == 5 and hash(out) == hash(b"HELLO")
    assert "HELLO" in repr(out)
    assert memoryview(out).readonly and memoryview(out).tobytes() == b"HELLO"
    hx = rt.call("checksum", "hex", b"\x01\xab")
    assert hx == b"01ab" and hx.is_plugin_memory
    rep = rt.call("text", "repeat", b"\x03ab")
    assert rep == b"ababab"
    assert rt.call("text", "reverse", "héllo".encode()).decode() == "olléh"
    empty = rt.call("text", "upper", b"")
    assert len(empty) == 0 and bytes(empty) == b"" and memoryview(empty).nbytes == 0
    big = rt.call("text", "upper", b"x" * 100_000)  # more than the 256 bytes offered first
    assert big == b"X" * 100_000


def test_output_is_read_only(rt: hotmod.Runtime) -> None:
    rt.load(plugin("text"))
    out = rt.call("text", "upper", b"abc")
    with pytest.raises(ValueError):
        np.frombuffer(out, dtype=np.uint8).setflags(write=True)
    with pytest.raises(TypeError):
        ctypes.c_char.from_buffer(out)  # asks for a writable buffer: refused
    with pytest.raises(TypeError):
        memoryview(out)[0] = 1  # type: ignore[index]
    with pytest.raises(TypeError, match="writable .* found a read-only hotmod.Output"):
        rt.call_into("text", "upper", b"x", out)  # an Output cannot be written into


def test_call_into(rt: hotmod.Runtime) -> None:
    rt.load(plugin("text"))
    rt.load(plugin("probe"))
    dst = bytearray(16)
    n = rt.call_into("text", "upper", b"abc", dst)
    assert n == 3 and dst[:3] == b"ABC"
    arr = np.zeros(32, dtype=np.uint8)
    n = rt.method("probe", "give").call_into(b"plugin memory", arr)  # plugin memory is copied in
    assert bytes(arr[:n]) == b"plugin memory"
    with pytest.raises(hotmod.OutputTooLargeError) as e:
        rt.call_into("text", "upper", b"too long for it", bytearray(4))
    assert e.value.code == 2009 and "4" in e.value.message
    with pytest.raises(TypeError, match="writable"):
        rt.call_into("text", "upper", b"abc", b"read-only bytes")
    buf = bytearray(b"abcdef")
    with pytest.raises(hotmod.InvalidArgumentError, match="overlapping"):
        rt.call_into("text", "upper", memoryview(buf)[:3], memoryview(buf)[2:])


def test_call_errors(rt: hotmod.Runtime) -> None:
    probe = rt.load(plugin("probe"))
    rt.load(plugin("lifecycle"))
    with pytest.raises(hotmod.MethodNotFoundError) as e:
        rt.method("probe", "nope")
    assert e.value.code == 2001 and "echo" in e.value.message  # lists what it has
    with pytest.raises(hotmod.MethodNotFoundError):
        rt.call("probe", "nope", b"")
    with pytest.raises(hotmod.MethodNotFoundError):
        probe.method("nope")
    with pytest.raises(hotmod.ModuleNotLoadedError) as e2:
        rt.call("nope", "x", b"")
    assert e2.value.code == 2002 and "probe" in e2.value.message
    with pytest.raises(hotmod.ModuleNotLoadedError):
        rt.method("nope", "x")

    with pytest.raises(hotmod.PluginError) as e3:
        rt.call("probe", "fail", b"")
    assert e3.value.code == 2003 and "failure requested" in e3.value.message
    assert isinstance(e3.value, hotmod.CallError)
    with pytest.raises(hotmod.PluginError, match="input rejected"):
        rt.method("probe", "bad_input")(b"")
    with pytest.raises(hotmod.PluginError, match="expected 4 bytes"):
        rt.call("probe", "sleep_ms", b"\x01")

    panic = rt.method("lifecycle", "panic")
    for _ in range(3):  # contained every time; the interpreter and the module go on
        with pytest.raises(hotmod.PluginPanickedError) as e4:
            panic(b"")
        assert e4.value.code == 2004 and "panicked on purpose" in e4.value.message
    assert len(rt.call("lifecycle", "work", b"still fine")) == 8

    badout = rt.load(plugin("badout"))  # claims more bytes than it was offered
    with pytest.raises(hotmod.InvalidOutputError) as e5:
        badout.call("overflow", b"")
    assert e5.value.code == 2011


def test_stale_handle_after_unload(rt: hotmod.Runtime) -> None:
    m = rt.load(plugin("probe"))
    echo = m.method("echo")
    assert echo(b"x") == b"x"
    rt.unload("probe")
    with pytest.raises(hotmod.StaleHandleError) as e:
        echo(b"x")
    assert e.value.code == 2008 and "echo" in e.value.message and "probe" in e.value.message
    with pytest.raises(hotmod.StaleHandleError):
        m.method("echo")
    with pytest.raises(hotmod.StaleHandleError):
        m.call("echo", b"x")
    rt.load(plugin("probe"))
    with pytest.raises(hotmod.StaleHandleError):  # a new load is a new module
        echo(b"x")


def test_bad_call_arguments(rt: hotmod.Runtime) -> None:
    rt.load(plugin("probe"))
    echo = rt.method("probe", "echo")
    for bad in ("text", 42, None, [1, 2], {"a": 1}):
        with pytest.raises(TypeError, match="bytes-like") as e:
            echo(bad)
        assert type(bad).__name__ in str(e.value)
    with pytest.raises(TypeError, match="bytes-like"):
        rt.call("probe", "echo", "text")
    with pytest.raises(TypeError):
        rt.call("probe", 5, b"")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        echo()  # type: ignore[call-arg]
    with pytest.raises(hotmod.InvalidArgumentError, match="offer"):
        echo.call(b"", offer=-1)
    strided = np.arange(64, dtype=np.uint8)[::2]
    with pytest.raises(hotmod.InvalidArgumentError, match="C-contiguous") as e2:
        echo(strided)
    assert "strides (2,)" in e2.value.message and isinstance(e2.value, ValueError)
    fortran = np.asfortranarray(np.zeros((4, 3), dtype=np.uint8))
    with pytest.raises(hotmod.InvalidArgumentError, match="C-contiguous"):
        echo(fortran)
    with pytest.raises(hotmod.InvalidArgumentError, match="C-contiguous"):
        echo(memoryview(bytes(10))[::3])
    assert echo(np.ascontiguousarray(strided)) == bytes(strided)
