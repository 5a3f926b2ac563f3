"""The package itself: status codes and exception classes match the core,
version, typing files and docstrings on every public item."""

from __future__ import annotations

import ast
import inspect
import pickle
import re
import tomllib
from pathlib import Path

import pytest

import hotmod
from hotmod import _native

BINDING = Path(__file__).resolve().parent.parent
REPO = BINDING.parent.parent


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()


def test_status_enum_matches_core() -> None:
    table = _native._status_table()
    assert [(s.value, s.name) for s in hotmod.Status] == [(code, snake(name)) for code, name, _ in table]
    for code, _name, text in table:
        assert hotmod.Status(code).description == text


def test_every_code_maps_to_its_class() -> None:
    groups = {1: hotmod.LoadError, 2: hotmod.CallError, 3: hotmod.UsageError, 9: hotmod.InternalError}
    seen = set()
    for status in hotmod.Status:
        if status == hotmod.Status.OK:
            continue
        cls = hotmod.error_class(status)
        assert issubclass(cls, groups[status // 1000]), status
        assert cls.default_code == status
        err = hotmod._errors._make_error(int(status), "msg")
        assert type(err) is cls and err.code == status and err.status is status and err.message == "msg"
        assert str(err) == f"msg [hotmod status {int(status)}]"
        seen.add(cls)
        # Picklable (e.g. across multiprocessing), code included.
        again = pickle.loads(pickle.dumps(err))
        assert type(again) is cls and again.code == err.code and again.message == "msg"
    assert len(seen) == len(hotmod.Status) - 1  # one class per code
    assert hotmod.error_class(1999) is hotmod.LoadError
    assert hotmod.error_class(2999) is hotmod.CallError
    assert hotmod.error_class(42) is hotmod.HotmodError
    assert hotmod.error_class(9002) is hotmod.InternalError
    assert issubclass(hotmod.InvalidArgumentError, ValueError)
    assert issubclass(hotmod.RuntimeClosedError, hotmod.InvalidArgumentError)
    assert hotmod.FileMissingError.__module__ == "hotmod"


def test_version_matches_workspace() -> None:
    root = tomllib.loads((REPO / "Cargo.toml").read_text())
    ours = tomllib.loads((BINDING / "Cargo.toml").read_text())
    assert hotmod.__version__ == ours["package"]["version"] == root["workspace"]["package"]["version"]


def test_typing_files_shipped() -> None:
    pkg = Path(hotmod.__file__).parent
    assert (pkg / "py.typed").exists()
    stub = (pkg / "_native.pyi").read_text()
    ast.parse(stub)
    classes = ("Runtime", "Module", "Method", "Output", "MethodInfo", "DependencyInfo", "ElfFacts", "MethodStats", "Event", "ManifestReport", "Watcher")
    for cls in classes:
        assert f"class {cls}" in stub
        # hotmod.Method is a subclass of the class that defines its members.
        members = {k: v for base in reversed(getattr(_native, cls).__mro__[:-1]) for k, v in vars(base).items()}
        for name, member in members.items():
            if name.startswith("_") or not (callable(member) or isinstance(member, property) or inspect.isdatadescriptor(member)):
                continue
            assert re.search(rf"def {name}\b", stub), f"{cls}.{name} missing from _native.pyi"


def public_items():
    for name in hotmod.__all__:
        obj = getattr(hotmod, name)
        if name == "__version__":
            continue
        yield name, obj
        if inspect.isclass(obj) and not issubclass(obj, BaseException):
            for member_name, member in vars(obj).items():
                if member_name.startswith("_") and member_name not in ("__call__", "__init__"):
                    continue
                if isinstance(member, (int, str)):
                    continue
                yield f"{name}.{member_name}", member


@pytest.mark.parametrize(("name", "obj"), list(public_items()), ids=lambda v: v if isinstance(v, str) else "")
def test_public_item_documented(name: str, obj: object) -> None:
    doc = getattr(obj, "__doc__", None)
    assert doc and doc.strip(), f"{name} has no docstring"


def test_all_is_complete() -> None:
    for name in hotmod.__all__:
        assert hasattr(hotmod, name)
    assert {"Runtime", "Output", "HotmodError", "Status", "EventKind", "StaleHandleError"} <= set(hotmod.__all__)
