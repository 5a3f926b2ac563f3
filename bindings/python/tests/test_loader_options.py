"""ELF facts of modules, file size caps, preflight in a child process, the
output cap and versions kept mapped: the loader options of this package."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import hotmod

from conftest import REPO

WORKER = REPO / "target" / "release" / "hotmod-worker"


def worker() -> Path:
    if not WORKER.is_file():
        pytest.fail(f"expected the preflight helper {WORKER}, found nothing: build it with `make -C {REPO} plugins`")
    return WORKER


def test_elf_facts_of_a_plain_plugin(rt: hotmod.Runtime, plugins: Callable[[str], Path]) -> None:
    m = rt.load(plugins("checksum"))
    facts = m.elf
    assert isinstance(facts, hotmod.ElfFacts)
    assert facts.machine == "x86_64"  # EM_X86_64 (62)
    assert facts.elf_class == 64
    assert facts.nodelete is False
    assert facts.static_tls is False
    assert facts.gnu_unique == []
    assert facts.go_runtime is False
    assert facts.entry_checked is True
    assert facts.unmap_blockers == []
    assert m.stays_mapped is False
    assert facts == rt.module(m.name).elf  # frozen records compare by value
    assert "x86_64" in repr(facts)


def test_elf_facts_of_a_nodelete_plugin(rt: hotmod.Runtime, plugins: Callable[[str], Path]) -> None:
    m = rt.load(plugins("facts_nodelete"))
    assert m.elf.nodelete is True
    assert m.stays_mapped is True
    assert any("NODELETE" in why for why in m.elf.unmap_blockers), m.elf.unmap_blockers
    with pytest.raises(AttributeError):
        m.elf.nodelete = False  # type: ignore[misc]


def test_max_file_size(rt: hotmod.Runtime, plugins: Callable[[str], Path]) -> None:
    path = plugins("checksum")
    size = path.stat().st_size
    with pytest.raises(hotmod.FileTooLargeError) as e:
        rt.load(path, max_file_size=size - 1)
    assert e.value.code == hotmod.Status.FILE_TOO_LARGE == 1017
    assert str(size - 1) in e.value.message and "libchecksum.so" in e.value.message
    assert "checksum" not in rt
    m = rt.load(path, max_file_size=size)
    with pytest.raises(hotmod.FileTooLargeError):
        rt.upgrade(m.name, plugins("checksum-v2"), max_file_size=1)
    with pytest.raises(hotmod.FileTooLargeError):
        rt.load_all([plugins("dependent")], max_file_size=16)
    for bad in (-1, 2**64):
        with pytest.raises(hotmod.InvalidArgumentError, match="max_file_size"):
            rt.load(path, max_file_size=bad)


def test_preflight_refuses_a_crashing_constructor(rt: hotmod.Runtime, plugins: Callable[[str], Path]) -> None:
    helper = worker()
    segv = plugins("checksum").parent / "faults" / "libctor_segv.so"
    assert segv.is_file(), f"expected {segv}: run `make -C {REPO} plugins`"
    with pytest.raises(hotmod.PreflightFailedError) as e:
        rt.load(segv, preflight="on", preflight_helper=helper, preflight_timeout=30)
    assert e.value.code == hotmod.Status.PREFLIGHT_FAILED == 1018
    assert "libctor_segv.so" in e.value.message
    # The host survived; a good plugin passes the same preflight.
    m = rt.load(plugins("checksum"), preflight="on", preflight_helper=str(helper))
    assert len(m.call("crc32", b"abc")) == 4
    assert rt.upgrade(m.name, plugins("checksum-v2"), preflight="on", preflight_helper=helper).name == m.name


def test_preflight_arguments_are_checked(rt: hotmod.Runtime, plugins: Callable[[str], Path], tmp_path: Path) -> None:
    path = plugins("checksum")
    with pytest.raises(hotmod.InvalidArgumentError, match=r"preflight=.*expected \"off\", \"if-available\" or \"on\", found \"always\""):
        rt.load(path, preflight="always")  # type: ignore[arg-type]
    with pytest.raises(hotmod.InvalidArgumentError, match="preflight_timeout"):
        rt.load(path, preflight="on", preflight_helper=worker(), preflight_timeout=-1)
    with pytest.raises(hotmod.InvalidArgumentError, match="preflight"):
        rt.watch(tmp_path, preflight="sometimes")  # type: ignore[arg-type]
    # "on" with a helper that does not exist refuses rather than loading unchecked.
    with pytest.raises(hotmod.HotmodError):
        rt.load(path, preflight="on", preflight_helper=tmp_path / "no-such-helper")
    assert "checksum" not in rt
    # "off" needs no helper.
    rt.load(path, preflight="off", preflight_helper=tmp_path / "no-such-helper")


def test_watch_takes_the_load_options(rt: hotmod.Runtime, plugins: Callable[[str], Path], tmp_path: Path) -> None:
    (tmp_path / "libchecksum.so").write_bytes(plugins("checksum").read_bytes())
    events: list[hotmod.Event] = []
    rt.set_event_handler(events.append)
    with rt.watch(tmp_path, max_file_size=1):
        assert "checksum" not in rt
    assert any(ev.code == hotmod.Status.FILE_TOO_LARGE for ev in events), events
    with rt.watch(tmp_path, preflight="on", preflight_helper=worker()):
        assert "checksum" in rt


def test_max_output_size(plugins: Callable[[str], Path]) -> None:
    # The cap bounds what a plugin asks the host to allocate (text.upper
    # answers OUTPUT_TOO_SMALL for more than the 256 bytes first offered);
    # memory a plugin hands over itself (checksum.hex) is not bounded by it.
    with hotmod.Runtime(max_output_size=1024) as rt:
        m = rt.load(plugins("text"))
        assert m.call("upper", b"x" * 1000) == b"X" * 1000
        with pytest.raises(hotmod.OutputTooLargeError) as e:
            m.call("upper", b"x" * 100_000)
        assert e.value.code == hotmod.Status.OUTPUT_TOO_LARGE == 2009
        assert "1024" in e.value.message and "upper" in e.value.message
        assert len(rt.load(plugins("checksum")).call("hex", b"\x01" * 100_000)) == 200_000
    with hotmod.Runtime() as rt:
        assert len(rt.load(plugins("text")).call("upper", b"x" * 100_000)) == 100_000
    for bad in (-1, 2**64):
        with pytest.raises(hotmod.InvalidArgumentError, match="max_output_size"):
            hotmod.Runtime(max_output_size=bad)


def test_kept_mapped(plugins: Callable[[str], Path]) -> None:
    with hotmod.Runtime(max_kept_mapped=2) as rt:
        assert rt.kept_mapped == 0
        m = rt.load(plugins("keep-v1"))
        assert m.stays_mapped is True and m.safe_to_unload is False
        rt.upgrade("keep", plugins("keep-v2"))
        assert rt.kept_mapped == 1
        rt.upgrade("keep", plugins("keep-v1"))
        assert rt.kept_mapped == 2
        with pytest.raises(hotmod.KeptMappedLimitError) as e:
            rt.upgrade("keep", plugins("keep-v2"))
        assert e.value.code == 1019
        assert rt.call("keep", "version", b"") == b"1.0.0"  # the old version keeps serving
        # A plugin that can be unmapped is not refused.
        rt.load(plugins("checksum"))
    with pytest.raises(hotmod.RuntimeClosedError):
        _ = rt.kept_mapped
    with pytest.raises(hotmod.InvalidArgumentError, match="max_kept_mapped"):
        hotmod.Runtime(max_kept_mapped=-3)
