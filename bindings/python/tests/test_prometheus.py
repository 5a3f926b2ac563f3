"""hotmod.prometheus: a runtime's metrics on a prometheus_client registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import hotmod
import hotmod.prometheus
from conftest import plugin


def sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise AssertionError(f"no sample {name}{labels} in:\n{text}")


def test_one_line_exposes_the_runtime_on_a_registry() -> None:
    registry = CollectorRegistry()
    with hotmod.Runtime() as rt:
        crc32 = rt.load(plugin("checksum")).method("crc32")
        hotmod.prometheus.register(rt, registry)
        for _ in range(3):
            crc32(b"hello")
        text = generate_latest(registry).decode()
        assert sample(text, "hotmod_method_calls_total", module="checksum", method="crc32") == 3
        assert sample(text, "hotmod_method_errors_total", module="checksum", method="crc32") == 0
        crc32(b"more")
        again = generate_latest(registry).decode()
        assert sample(again, "hotmod_method_calls_total", module="checksum", method="crc32") == 4, "read at each scrape"
    # A closed runtime contributes nothing, and the scrape still works.
    assert "hotmod_method_calls_total" not in generate_latest(registry).decode()


def test_the_default_registry_and_unregister() -> None:
    from prometheus_client import REGISTRY

    with hotmod.Runtime() as rt:
        rt.load(plugin("checksum")).method("length")(b"abc")
        collector = hotmod.prometheus.register(rt)
        try:
            text = generate_latest(REGISTRY).decode()
            assert sample(text, "hotmod_method_calls_total", module="checksum", method="length") == 1
        finally:
            REGISTRY.unregister(collector)
