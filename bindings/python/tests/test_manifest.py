"""Runtime.apply_manifest: a TOML file decides which plugins run; applying
it again after an edit loads, upgrades and unloads exactly what changed."""

from __future__ import annotations

import hashlib
import shutil
import threading
from pathlib import Path

import pytest
from conftest import plugin

import hotmod


def version(rt: hotmod.Runtime) -> bytes:
    return bytes(rt.call("checksum", "version", b""))


def write(manifest: Path, text: str) -> Path:
    manifest.write_text(text)
    return manifest


@pytest.fixture
def deploy(tmp_path: Path) -> Path:
    """A directory holding copies of both checksum builds (for relative paths)."""
    d = tmp_path / "deploy"
    d.mkdir(mode=0o700)
    shutil.copy(plugin("checksum"), d / "libchecksum.so")
    shutil.copy(plugin("checksum-v2"), d / "libchecksum-v2.so")
    return d


def test_load_edit_upgrade_disable_remove(rt: hotmod.Runtime, deploy: Path) -> None:
    events: list[tuple[str, str, str, str]] = []
    rt.set_event_handler(lambda ev: events.append((ev.kind.name, ev.module, ev.version, threading.current_thread().name)))
    text_path = plugin("text")  # an absolute path, beside relative ones
    manifest = write(
        deploy / "plugins.toml",
        f'[[plugin]]\npath = "libchecksum.so"\n\n[[plugin]]\npath = "{text_path}"\nconfig = "x"\n',
    )

    report = rt.apply_manifest(manifest)
    assert isinstance(report, hotmod.ManifestReport)
    assert sorted(report.loaded) == ["checksum", "text"]
    assert report.upgraded == report.unloaded == report.unchanged == []
    assert report.changed
    assert version(rt) == b"1.0.0"
    assert rt.module("checksum").path == str(deploy.resolve() / "libchecksum.so")
    # Events of a manifest come on the calling thread.
    me = threading.current_thread().name
    assert ("ACTIVATED", "checksum", "1.0.0", me) in events
    handle = rt.method("checksum", "version")

    # Applying the same file again changes nothing (a str path works too, and
    # names the same manifest).
    again = rt.apply_manifest(str(manifest))
    assert sorted(again.unchanged) == ["checksum", "text"]
    assert again.loaded == again.upgraded == again.unloaded == []
    assert not again.changed
    assert again == rt.apply_manifest(deploy / "." / "plugins.toml")

    # Point the entry at the v2 build: an upgrade in place, handles follow.
    events.clear()
    write(manifest, f'[[plugin]]\npath = "libchecksum-v2.so"\n\n[[plugin]]\npath = "{text_path}"\nconfig = "x"\n')
    report = rt.apply_manifest(manifest)
    assert report.upgraded == ["checksum"]
    assert report.unchanged == ["text"]
    assert report.loaded == report.unloaded == []
    assert version(rt) == b"2.0.0"
    assert bytes(handle(b"")) == b"2.0.0"
    assert ("ACTIVATED", "checksum", "2.0.0", me) in events

    # A changed config is an upgrade too.
    write(manifest, f'[[plugin]]\npath = "libchecksum-v2.so"\n\n[[plugin]]\npath = "{text_path}"\nconfig = "y"\n')
    assert rt.apply_manifest(manifest).upgraded == ["text"]

    # Disabled: unloaded; handles go stale.
    write(
        manifest,
        f'[[plugin]]\npath = "libchecksum-v2.so"\nenabled = false\n\n[[plugin]]\npath = "{text_path}"\nconfig = "y"\n',
    )
    report = rt.apply_manifest(manifest)
    assert report.unloaded == ["checksum"]
    assert report.unchanged == ["text"]
    assert "checksum" not in rt
    with pytest.raises(hotmod.StaleHandleError):
        handle(b"")

    # Enabled again: loaded again. Entry removed: unloaded.
    write(manifest, f'[[plugin]]\npath = "libchecksum.so"\nenabled = true\nisolation = "in-process"\n')
    report = rt.apply_manifest(manifest)
    assert report.loaded == ["checksum"]
    assert report.unloaded == ["text"]
    assert version(rt) == b"1.0.0"
    assert [m.name for m in rt.modules()] == ["checksum"]
    assert repr(report) == "<hotmod.ManifestReport loaded=['checksum'] upgraded=[] unloaded=['text'] unchanged=[]>"

    write(manifest, "")
    assert rt.apply_manifest(manifest).unloaded == ["checksum"]
    assert rt.modules() == []


def test_sha256_pinned(rt: hotmod.Runtime, deploy: Path) -> None:
    good = hashlib.sha256((deploy / "libchecksum.so").read_bytes()).hexdigest()
    wrong = "0" * 64
    manifest = write(deploy / "plugins.toml", f'[[plugin]]\npath = "libchecksum.so"\nsha256 = "{wrong}"\n')
    with pytest.raises(hotmod.HashMismatchError) as e:
        rt.apply_manifest(manifest)
    assert e.value.code == hotmod.Status.HASH_MISMATCH == 1009
    assert isinstance(e.value, hotmod.LoadError)
    assert "line 1" in e.value.message and str(manifest.resolve()) in e.value.message
    assert "checksum" not in rt

    write(manifest, f'[[plugin]]\npath = "libchecksum.so"\nsha256 = "{good}"\n')
    assert rt.apply_manifest(manifest).loaded == ["checksum"]
    assert rt.module("checksum").sha256 == good

    # A wrong pin on the upgrade refuses it: the old version keeps serving.
    write(manifest, f'[[plugin]]\npath = "libchecksum-v2.so"\nsha256 = "{wrong}"\n')
    with pytest.raises(hotmod.HashMismatchError):
        rt.apply_manifest(manifest)
    assert version(rt) == b"1.0.0"


def test_invalid_manifests_raise_bad_manifest_with_line(rt: hotmod.Runtime, deploy: Path) -> None:
    manifest = write(deploy / "plugins.toml", '# plugins\n[[plugin]]\npath = "libchecksum.so"\nenabeld = true\n')
    with pytest.raises(hotmod.BadManifestError) as e:
        rt.apply_manifest(manifest)
    assert e.value.code == hotmod.Status.BAD_MANIFEST == 1014
    assert e.value.status is hotmod.Status.BAD_MANIFEST
    msg = e.value.message
    assert "line 4" in msg and "enabeld" in msg and str(manifest.resolve()) in msg, msg
    assert "checksum" not in rt  # checked before anything changed

    for text, where in [
        ('[[plugin]]\npath = "libchecksum.so"\nisolation = "elsewhere"\n', "line 3"),
        ("[[plugin]]\nenabled = true\n", "line 1"),  # path missing
        ('[[plugin]]\npath = "libchecksum.so\n', "line 2"),  # not TOML
        ('[[plugn]]\npath = "libchecksum.so"\n', "line 1"),
    ]:
        write(manifest, text)
        with pytest.raises(hotmod.BadManifestError, match=where):
            rt.apply_manifest(manifest)

    with pytest.raises(hotmod.BadManifestError, match="cannot read manifest"):
        rt.apply_manifest(deploy / "missing.toml")
    # A missing plugin names its entry's line.
    write(manifest, '[[plugin]]\npath = "libchecksum.so"\n\n[[plugin]]\npath = "libnothing.so"\n')
    with pytest.raises(hotmod.FileMissingError, match="line 4"):
        rt.apply_manifest(manifest)
    assert rt.modules() == []
    with pytest.raises(TypeError):
        rt.apply_manifest(42)  # type: ignore[arg-type]


def test_modules_loaded_otherwise_are_left_alone(rt: hotmod.Runtime, deploy: Path) -> None:
    rt.load(plugin("checksum"))
    manifest = write(deploy / "plugins.toml", '[[plugin]]\npath = "libchecksum-v2.so"\n')
    with pytest.raises(hotmod.NameConflictError, match="other means"):
        rt.apply_manifest(manifest)
    assert version(rt) == b"1.0.0"

    write(manifest, f'[[plugin]]\npath = "{plugin("text")}"\n')
    assert rt.apply_manifest(manifest).loaded == ["text"]
    write(manifest, "")
    assert rt.apply_manifest(manifest).unloaded == ["text"]
    assert [m.name for m in rt.modules()] == ["checksum"]


def test_one_state_per_manifest(rt: hotmod.Runtime, deploy: Path) -> None:
    a = write(deploy / "a.toml", '[[plugin]]\npath = "libchecksum.so"\n')
    b = write(deploy / "b.toml", f'[[plugin]]\npath = "{plugin("text")}"\n')
    assert rt.apply_manifest(a).loaded == ["checksum"]
    assert rt.apply_manifest(b).loaded == ["text"]
    # Emptying b unloads only what b loaded.
    write(b, "")
    assert rt.apply_manifest(b).unloaded == ["text"]
    assert [m.name for m in rt.modules()] == ["checksum"]
    # b cannot claim a module a loaded.
    write(b, '[[plugin]]\npath = "libchecksum-v2.so"\n')
    with pytest.raises(hotmod.NameConflictError):
        rt.apply_manifest(b)


def test_concurrent_manifests_with_an_event_handler_do_not_deadlock(rt: hotmod.Runtime, tmp_path: Path) -> None:
    # Each thread holds the GIL when it calls apply_manifest, and the handler
    # needs it on the applying thread: a lock taken with the GIL held would
    # deadlock here.
    seen = [0]
    lock = threading.Lock()

    def handler(ev: hotmod.Event) -> None:
        with lock:
            seen[0] += 1

    rt.set_event_handler(handler)
    names = ["checksum", "text", "probe", "lifecycle"]
    errors: list[BaseException] = []

    def churn(name: str) -> None:
        manifest = tmp_path / f"{name}.toml"
        try:
            for i in range(15):
                write(manifest, f'[[plugin]]\npath = "{plugin(name)}"\nenabled = {"true" if i % 2 == 0 else "false"}\n')
                report = rt.apply_manifest(manifest)
                assert (report.loaded if i % 2 == 0 else report.unloaded) == [name]
        except BaseException as e:  # noqa: BLE001  (reported by the main thread)
            errors.append(e)

    threads = [threading.Thread(target=churn, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "apply_manifest deadlocked"
    assert errors == []
    assert seen[0] > 0
    assert [m.name for m in rt.modules()] == sorted(names)


def test_closed_runtime(deploy: Path) -> None:
    rt = hotmod.Runtime()
    manifest = write(deploy / "plugins.toml", '[[plugin]]\npath = "libchecksum.so"\n')
    assert rt.apply_manifest(manifest).loaded == ["checksum"]
    rt.close()
    with pytest.raises(hotmod.RuntimeClosedError, match="apply_manifest"):
        rt.apply_manifest(manifest)
    # A new runtime starts with no manifest state: everything loads again.
    with hotmod.Runtime() as rt2:
        assert rt2.apply_manifest(manifest).loaded == ["checksum"]
