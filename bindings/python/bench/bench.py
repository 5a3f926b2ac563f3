"""Per-call cost of a hotmod call from Python, against same-run baselines.

For 16 B and 1 MiB payloads, times the same plugin function
(``probe.noop``: reads no payload byte, so the plugin's own work is constant)
called

* through a resolved hotmod method handle (``Method.__call__``),
* by name (``Runtime.call``),
* through ctypes: the .so loaded with ``ctypes.CDLL``, ``hotmod_plugin_v1``
  called for the descriptor, the method's function pointer called with a
  ``hotmod_slice`` built over the bytes (no copy) and a ``hotmod_output``,
* through cffi (ABI mode, ``ffi.dlopen``), the same way, the slice built
  over ``ffi.from_buffer(data)`` (no copy),
* through a handle whose GIL policy is forced to "hold" and to "release"
  (``Method.gil``), to show what the policy costs,

and the floor: a pyo3 function in the same native module that takes one
argument and does nothing, plus the steps from it to a call: acquiring the
input buffer; that plus releasing the GIL; that plus the core call (the
output dropped in Rust rather than returned as an Output object; called
through functools.partial, which adds a little).

Prints a table and the ratios; ``--json FILE`` also writes the numbers.
Nothing is hard-coded: every figure is measured in this run.

Usage: python bench/bench.py [--plugins DIR] [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import hotmod
from hotmod import _native

HERE = Path(__file__).resolve().parent
DEFAULT_PLUGINS = Path(os.environ.get("HOTMOD_PLUGIN_DIR") or HERE.parent.parent.parent / "build" / "plugins")

PAYLOADS = [("16 B", 16), ("1 MiB", 1024 * 1024)]


# The plugin ABI v1 structures (abi/src/lib.rs, include/hotmod_plugin.h).
class HotmodSlice(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_char_p), ("len", ctypes.c_size_t)]


RELEASE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)


class HotmodOutput(ctypes.Structure):
    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("capacity", ctypes.c_size_t),
        ("data", ctypes.c_void_p),
        ("len", ctypes.c_size_t),
        ("release", ctypes.c_void_p),
        ("release_ctx", ctypes.c_void_p),
    ]


METHOD_FN = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, HotmodSlice, ctypes.POINTER(HotmodOutput))
INIT_FN = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, HotmodSlice, ctypes.POINTER(ctypes.c_void_p))


class HotmodMethodDef(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("signature", ctypes.c_char_p), ("func", ctypes.c_void_p)]


class HotmodDescriptor(ctypes.Structure):
    _fields_ = [
        ("magic", ctypes.c_uint32),
        ("abi_major", ctypes.c_uint16),
        ("abi_minor", ctypes.c_uint16),
        ("descriptor_size", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("name", ctypes.c_char_p),
        ("version", ctypes.c_char_p),
        ("description", ctypes.c_char_p),
        ("dependencies", ctypes.c_void_p),
        ("dependency_count", ctypes.c_size_t),
        ("methods", ctypes.POINTER(HotmodMethodDef)),
        ("method_count", ctypes.c_size_t),
        ("init", ctypes.c_void_p),
        ("activate", ctypes.c_void_p),
        ("deactivate", ctypes.c_void_p),
        ("destroy", ctypes.c_void_p),
        ("export_state", ctypes.c_void_p),
        ("import_state", ctypes.c_void_p),
    ]


def ctypes_method(path: Path, method: str) -> Callable[[bytes], int]:
    """The plugin's method called through ctypes, as a ctypes user would."""
    lib = ctypes.CDLL(str(path))
    entry = lib.hotmod_plugin_v1
    entry.restype = ctypes.POINTER(HotmodDescriptor)
    desc = entry().contents
    if desc.magic != 0x484D4F44:
        raise RuntimeError(f"{path}: expected the hotmod magic, found {desc.magic:#x}")
    instance = ctypes.c_void_p()
    if desc.init:
        rc = INIT_FN(desc.init)(None, HotmodSlice(None, 0), ctypes.byref(instance))
        if rc != 0:
            raise RuntimeError(f"{path}: init returned {rc}")
    for i in range(desc.method_count):
        if desc.methods[i].name == method.encode():
            fn = METHOD_FN(desc.methods[i].func)
            break
    else:
        raise RuntimeError(f"{path}: no method {method!r}")
    inst = instance.value
    scratch = ctypes.create_string_buffer(256)
    out = HotmodOutput(buf=ctypes.addressof(scratch), capacity=256)
    out_ref = ctypes.byref(out)

    # As lean as a ctypes caller can be while still correct: the output
    # slot is reused (only its length reset), the slice points at the bytes
    # object's own buffer (no copy).
    def call(data: bytes) -> int:
        out.len = 0
        if fn(inst, HotmodSlice(data, len(data)), out_ref) != 0:
            raise RuntimeError("ctypes call failed")
        return out.len

    call._keep = (lib, scratch, out)  # type: ignore[attr-defined]
    return call


CFFI_CDEF = """
typedef struct { const uint8_t *ptr; size_t len; } hotmod_slice;
typedef struct {
    uint8_t *buf; size_t capacity; const uint8_t *data; size_t len;
    void (*release)(void *, const uint8_t *, size_t); void *release_ctx;
} hotmod_output;
typedef int32_t (*hotmod_method_fn)(void *, hotmod_slice, hotmod_output *);
typedef struct { const char *name; const char *signature; hotmod_method_fn func; } hotmod_method_def;
typedef struct {
    uint32_t magic; uint16_t abi_major; uint16_t abi_minor; uint32_t descriptor_size; uint32_t flags;
    const char *name; const char *version; const char *description;
    const void *dependencies; size_t dependency_count;
    const hotmod_method_def *methods; size_t method_count;
    int32_t (*init)(const void *, hotmod_slice, void **);
    void *activate; void *deactivate; void *destroy; void *export_state; void *import_state;
} hotmod_plugin_descriptor;
const hotmod_plugin_descriptor *hotmod_plugin_v1(void);
"""


def cffi_method(path: Path, method: str) -> Callable[[bytes], int] | None:
    """The plugin's method called through cffi's ABI mode, as a cffi user
    would (None when cffi is not installed)."""
    try:
        import cffi  # type: ignore[import-untyped]
    except ImportError:
        return None
    ffi = cffi.FFI()
    ffi.cdef(CFFI_CDEF)
    lib = ffi.dlopen(str(path))
    desc = lib.hotmod_plugin_v1()
    if desc.magic != 0x484D4F44:
        raise RuntimeError(f"{path}: expected the hotmod magic, found {desc.magic:#x}")
    instance = ffi.new("void **")
    empty = ffi.new("hotmod_slice *")
    if desc.init != ffi.NULL and desc.init(ffi.NULL, empty[0], instance) != 0:
        raise RuntimeError(f"{path}: init failed")
    for i in range(desc.method_count):
        if ffi.string(desc.methods[i].name) == method.encode():
            fn = desc.methods[i].func
            break
    else:
        raise RuntimeError(f"{path}: no method {method!r}")
    inst = instance[0]
    scratch = ffi.new("uint8_t[]", 256)
    out = ffi.new("hotmod_output *", {"buf": scratch, "capacity": 256})
    slice_ = ffi.new("hotmod_slice *")
    from_buffer = ffi.from_buffer

    def call(data: bytes) -> int:
        out.len = 0
        view = from_buffer(data)
        slice_.ptr = view
        slice_.len = len(data)
        if fn(inst, slice_[0], out) != 0:
            raise RuntimeError("cffi call failed")
        return int(out.len)

    call._keep = (ffi, lib, scratch, out, slice_)  # type: ignore[attr-defined]
    return call


def loop_size(fn: Callable[[Any], Any], arg: Any, seconds: float) -> int:
    """How many calls take about `seconds` (at least 1000, so that a
    preemption while sizing cannot leave a loop so short that reading the
    clock dominates it)."""
    n = 1
    while True:
        dt = float("inf")
        for _ in range(3):
            t0 = time.perf_counter_ns()
            for _ in range(n):
                fn(arg)
            dt = min(dt, time.perf_counter_ns() - t0)
        if dt > seconds * 1e9 / 4 or n >= 1 << 24:
            return max(1000, int(n * seconds * 1e9 / max(dt, 1)))
        n *= 2


def timed_loop_ns(fn: Callable[[Any], Any], arg: Any, n: int) -> float:
    """Mean time per call over one loop of `n` calls, in ns."""
    t0 = time.perf_counter_ns()
    for _ in range(n):
        fn(arg)
    return (time.perf_counter_ns() - t0) / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plugins", type=Path, default=DEFAULT_PLUGINS, help="directory with libprobe.so")
    ap.add_argument("--quick", action="store_true", help="shorter runs (noisier)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON")
    args = ap.parse_args()
    probe_so = args.plugins / "libprobe.so"
    if not probe_so.exists():
        print(f"bench: expected {probe_so}, found nothing; run `make plugins` at the repository root", file=sys.stderr)
        return 2
    # Many short loops, keeping each cell's best: on a shared machine a short
    # loop often runs without being preempted, a long one rarely does.
    budget, repeats = (0.002, 30) if args.quick else (0.002, 150)

    rt = hotmod.Runtime()
    rt.load(probe_so)
    handle = rt.method("probe", "noop")
    by_name = rt.call
    via_ctypes = ctypes_method(probe_so, "noop")
    via_cffi = cffi_method(probe_so, "noop")

    call_no_output = functools.partial(_native._bench_call_no_output, handle)

    def name_call(data: bytes) -> Any:
        return by_name("probe", "noop", data)

    rows = [
        ("pyo3 no-op (floor)", _native._bench_noop),
        ("  + buffer acquire", _native._bench_buffer),
        ("  + GIL release", _native._bench_detach),
        ("  + core call", call_no_output),
        ("hotmod handle.call", handle.call),
        ("hotmod handle()", handle),
        ("hotmod by name", name_call),
        ("ctypes", via_ctypes),
    ]
    if via_cffi is not None:
        rows.append(("cffi", via_cffi))
    if hasattr(handle, "gil"):
        # The same method through handles whose GIL policy is forced (the
        # main handle is "auto", which holds the GIL for a method this short).
        for policy in ("release", "hold"):
            rows.insert(6, (f"handle() gil={policy}", rt.method("probe", "noop", gil=policy)))
    results: dict[str, dict[str, float]] = {name: {} for name, _ in rows}
    inputs = {label: bytes(size) for label, size in PAYLOADS}
    for data in inputs.values():
        # Same function, same answer, before timing anything.
        assert len(handle(data)) == 0 and via_ctypes(data) == 0
    sizes = {(name, label): loop_size(fn, inputs[label], budget) for name, fn in rows for label, _ in PAYLOADS}
    # Round-robin over every cell, `repeats` times, keeping each cell's best
    # loop: load from other processes then spreads over all cells instead of
    # skewing the ones that happened to run during it.
    for _ in range(repeats):
        for name, fn in rows:
            for label, _ in PAYLOADS:
                t = timed_loop_ns(fn, inputs[label], sizes[(name, label)])
                results[name][label] = min(results[name].get(label, float("inf")), t)

    print(f"hotmod {hotmod.__version__} | Python {platform.python_version()} | {platform.machine()} | probe.noop")
    print(f"ns per call (best mean of {repeats} loops)\n")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at the end of the run\n")
    header = f"{'':22}" + "".join(f"{label:>12}" for label, _ in PAYLOADS)
    print(header)
    print("-" * len(header))
    for name, _ in rows:
        print(f"{name:22}" + "".join(f"{results[name][label]:>12.1f}" for label, _ in PAYLOADS))

    def ratio(a: str, b: str, label: str) -> float:
        return results[a][label] / results[b][label]

    print("\nratios (lower is better)")
    floor = "pyo3 no-op (floor)"
    checks = []
    for label, _ in PAYLOADS:
        for name, target in (("hotmod handle()", 2.0), ("hotmod handle.call", 2.0), ("handle() gil=release", 2.0), ("hotmod by name", 2.0)):
            if name in results:
                checks.append((f"{name.removeprefix('hotmod '):<20} / pyo3 floor {label:>6}", ratio(name, floor, label), target))
        for base in ("ctypes", "cffi"):
            if base in results:
                checks.append((f"{'handle()':<20} / {base:<10} {label:>6}", ratio("hotmod handle()", base, label), 1.0))
    for name in ("hotmod handle()", "hotmod handle.call", "hotmod by name"):
        checks.append((f"{name.removeprefix('hotmod '):<20} 1 MiB / 16 B     ", results[name]["1 MiB"] / results[name]["16 B"], 1.2))
    for text, value, target in checks:
        verdict = "meets" if value < target else "MISSES"
        print(f"  {text}  {value:6.3f}   target < {target:<4} {verdict}")

    if args.json:
        args.json.write_text(json.dumps({"ns_per_call": results, "ratios": {t.strip(): v for t, v, _ in checks}}, indent=2))
    rt.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
