"""Loading, introspection, upgrade and unload, and every load-time status
code that can reach Python mapped to its exception class."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
from conftest import plugin, u64

import hotmod


def test_load_and_introspect(rt: hotmod.Runtime) -> None:
    path = plugin("checksum")
    m = rt.load(path)
    assert (m.name, m.version) == ("checksum", "1.0.0")
    assert m.description
    assert m.path == str(path)
    assert m.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert m.is_loaded and m.safe_to_unload in (True, False)
    assert m.abi_minor == 0
    names = [mi.name for mi in m.methods]
    assert names[:4] == ["crc32", "adler32", "fnv1a64", "length"]
    crc = m.methods[0]
    assert crc.signature == "bytes -> u32le"
    assert isinstance(crc.signature_hash, int) and crc.signature_hash > 0
    assert m.dependencies == []
    assert "checksum" in rt and "nope" not in rt
    assert [x.name for x in rt.modules()] == ["checksum"]
    assert rt.module("checksum").version == "1.0.0"
    assert rt.state("checksum") == "active"
    assert "checksum 1.0.0" in repr(m) and "checksum@1.0.0" in repr(rt)


def test_load_accepts_pathlike_and_str(rt: hotmod.Runtime) -> None:
    assert rt.load(str(plugin("probe"))).name == "probe"
    assert rt.load(plugin("text")).name == "text"


def test_dependencies_introspected_and_unload_cascade(rt: hotmod.Runtime) -> None:
    with pytest.raises(hotmod.DependencyUnsatisfiedError) as e:
        rt.load(plugin("dependent"))
    assert e.value.code == 1002 and "checksum" in e.value.message
    rt.load(plugin("checksum"))
    dep = rt.load(plugin("dependent"))
    assert [(d.name, d.requirement, d.optional) for d in dep.dependencies] == [("checksum", "^1", False)]
    assert dep.call("checksum_version", b"") == b"1.0.0"  # through the host, to checksum

    with pytest.raises(hotmod.ModuleInUseError) as e:
        rt.unload("checksum")
    assert e.value.code == 3004 and "dependent" in e.value.message
    assert isinstance(e.value, hotmod.UsageError)

    rt.unload("checksum", cascade=True)
    assert rt.modules() == [] and not dep.is_loaded


def test_version_conflict_on_upgrade(rt: hotmod.Runtime) -> None:
    rt.load(plugin("checksum"))
    rt.load(plugin("dependent"))
    with pytest.raises(hotmod.VersionConflictError) as e:
        rt.upgrade("checksum", plugin("checksum-v2"))
    assert e.value.code == 1015
    assert rt.module("checksum").version == "1.0.0"


def test_cycle_refused(rt: hotmod.Runtime) -> None:
    with pytest.raises(hotmod.DependencyCycleError) as e:
        rt.load_all([plugin("cycle-a"), plugin("cycle-b")])
    assert e.value.code == 1012 and "cycle_a" in e.value.message
    assert rt.modules() == []


def test_load_all_orders_dependencies(rt: hotmod.Runtime) -> None:
    mods = rt.load_all([plugin("dependent"), plugin("checksum")])
    assert [m.name for m in mods] == ["checksum", "dependent"]


@pytest.mark.parametrize(
    ("make", "cls", "code"),
    [
        ("missing", hotmod.FileMissingError, 1001),
        ("garbage", hotmod.NotALibraryError, 1005),
        ("directory", hotmod.NotALibraryError, 1005),
        ("unreadable", hotmod.PermissionDeniedError, 1003),
        ("world_writable", hotmod.UnsafeFileError, 1016),
    ],
)
def test_bad_files(rt: hotmod.Runtime, tmp_path: Path, make: str, cls: type, code: int) -> None:
    target = tmp_path / "libx.so"
    if make == "garbage":
        target.write_bytes(b"this is not an ELF file" * 10)
    elif make == "directory":
        target.mkdir()
    elif make == "unreadable":
        shutil.copy(plugin("probe"), target)
        target.chmod(0)
    elif make == "world_writable":
        shutil.copy(plugin("probe"), target)
        target.chmod(0o666)
    with pytest.raises(cls) as e:
        rt.load(target)
    err = e.value
    assert err.code == code and err.status == code
    assert isinstance(err, hotmod.LoadError) and isinstance(err, hotmod.HotmodError)
    assert str(target) in err.message, err.message
    assert rt.modules() == []


def test_world_writable_allowed_when_asked(rt: hotmod.Runtime, tmp_path: Path) -> None:
    target = tmp_path / "libprobe.so"
    shutil.copy(plugin("probe"), target)
    target.chmod(0o666)
    assert rt.load(target, allow_world_writable=True).name == "probe"


@pytest.mark.parametrize(
    ("name", "cls", "code"),
    [
        ("noentry", hotmod.EntrySymbolMissingError, 1004),
        ("bad_magic", hotmod.NotAPluginError, 1006),
        ("abi_v2", hotmod.AbiUnsupportedError, 1007),
        ("empty_name", hotmod.InvalidDescriptorError, 1008),
    ],
)
def test_bad_plugins(rt: hotmod.Runtime, name: str, cls: type, code: int) -> None:
    path = plugin(name)
    with pytest.raises(cls) as e:
        rt.load(path)
    assert e.value.code == code
    assert str(path) in e.value.message


def test_sha256_checked_before_load(rt: hotmod.Runtime) -> None:
    path = plugin("probe")
    good = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(hotmod.HashMismatchError) as e:
        rt.load(path, sha256="0" * 64)
    assert e.value.code == 1009 and good in e.value.message
    with pytest.raises(hotmod.InvalidArgumentError) as e2:
        rt.load(path, sha256="xyz")
    assert e2.value.code == 3002 and isinstance(e2.value, ValueError)
    assert rt.load(path, sha256=good.upper()).sha256 == good


def test_name_conflict(rt: hotmod.Runtime) -> None:
    rt.load(plugin("checksum"))
    with pytest.raises(hotmod.NameConflictError) as e:
        rt.load(plugin("checksum-v2"))
    assert e.value.code == 1011 and "checksum" in e.value.message
    assert rt.module("checksum").version == "1.0.0"


def test_init_failure_from_config(rt: hotmod.Runtime) -> None:
    with pytest.raises(hotmod.InitFailedError) as e:
        rt.load(plugin("lifecycle"), config=b"fail-init")
    assert e.value.code == 1013 and "init refused by config" in e.value.message
    with pytest.raises(hotmod.InitFailedError):
        rt.load(plugin("lifecycle"), config="panic-init")  # a panic in init is contained too
    assert rt.load(plugin("lifecycle"), config=bytearray(b"ok")).name == "lifecycle"


def test_upgrade_and_state_carried(rt: hotmod.Runtime) -> None:
    rt.load(plugin("checksum"))
    crc = rt.method("checksum", "crc32")
    for _ in range(3):
        crc(b"abc")
    new = rt.upgrade("checksum", plugin("checksum-v2"))
    assert new.version == "2.0.0" and rt.module("checksum").version == "2.0.0"
    assert rt.call("checksum", "version", b"") == b"2.0.0"
    assert u64(crc(b"abc")) == 0x352441C2  # the handle follows the upgrade
    assert u64(rt.call("checksum", "calls", b"")) >= 4  # counter carried across


def test_upgrade_refused_then_forced(rt: hotmod.Runtime) -> None:
    rt.load(plugin("checksum"))
    crc = rt.method("checksum", "crc32")
    adler = rt.method("checksum", "adler32")
    breaking = plugin("checksum-breaking")
    with pytest.raises(hotmod.SignatureMismatchError) as e:
        rt.upgrade("checksum", breaking)
    assert e.value.code == 1010
    assert u64(crc(b"abc")) == 0x352441C2  # the old version keeps serving

    with pytest.raises(hotmod.InvalidArgumentError):  # another module's file
        rt.upgrade("checksum", plugin("probe"))

    rt.upgrade("checksum", breaking, force=True)
    with pytest.raises(hotmod.SignatureChangedError) as e2:
        crc(b"abc")
    assert e2.value.code == 2010
    with pytest.raises(hotmod.StaleHandleError) as e3:
        adler(b"abc")
    assert e3.value.code == 2008 and "adler32" in e3.value.message
    assert u64(rt.method("checksum", "crc32")(b"abc")) == 3  # resolved again: the new signature


def test_unload_and_missing_module(rt: hotmod.Runtime) -> None:
    m = rt.load(plugin("probe"))
    rt.unload("probe")
    assert not m.is_loaded and "unloaded" in repr(m)
    with pytest.raises(hotmod.ModuleNotLoadedError) as e:
        rt.unload("probe")
    assert e.value.code == 2002
    with pytest.raises(hotmod.ModuleNotLoadedError):
        rt.module("probe")
    with pytest.raises(hotmod.ModuleNotLoadedError):
        rt.upgrade("probe", plugin("probe"))
    assert rt.load(plugin("probe")).is_loaded  # loadable again


def test_close_and_context_manager() -> None:
    with hotmod.Runtime() as rt:
        m = rt.load(plugin("probe"))
        handle = m.method("echo")
        assert not rt.closed
    assert rt.closed and "closed" in repr(rt)
    assert not m.is_loaded
    with pytest.raises(hotmod.StaleHandleError):
        handle(b"x")
    with pytest.raises(hotmod.StaleHandleError):
        m.call("echo", b"x")
    with pytest.raises(hotmod.RuntimeClosedError) as e:
        rt.load(plugin("probe"))
    assert e.value.code == 3002 and "closed" in e.value.message
    assert isinstance(e.value, hotmod.InvalidArgumentError)
    for op in (rt.modules, rt.stats, rt.stats_prometheus):
        with pytest.raises(hotmod.RuntimeClosedError):
            op()
    with pytest.raises(hotmod.RuntimeClosedError):
        rt.call("probe", "echo", b"")
    rt.close()  # idempotent


def test_bad_runtime_arguments(tmp_path: Path) -> None:
    with pytest.raises(hotmod.InvalidArgumentError):
        hotmod.Runtime(drain_timeout=-1)
    with pytest.raises(TypeError):
        hotmod.Runtime(0.5)  # type: ignore[misc]  (keyword-only)
    rt = hotmod.Runtime(drain_timeout=0.05)
    try:
        with pytest.raises(TypeError):
            rt.load(42)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            rt.load(plugin("probe"), config=1.5)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            rt.unload("probe", True)  # type: ignore[misc]  (cascade is keyword-only)
    finally:
        rt.close()
    assert os.path.exists(tmp_path)
