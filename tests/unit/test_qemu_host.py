"""Choosing the QEMU CPU model from what the host supports (virt/qemu_host.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from albatross_py.virt import qemu_host
from albatross_py.virt.qemu_host import CpuDefinition, choose_cpu_model, parse_cpu_definitions

REPLY = [
    {"name": "host", "unavailable-features": [], "migration-safe": False, "static": False},
    {"name": "qemu64", "unavailable-features": ["pni"], "migration-safe": True},
    {"name": "kvm64", "unavailable-features": [], "migration-safe": True},
    {"name": "Westmere", "unavailable-features": ["pni", "aes"], "migration-safe": True},
    {"no-name": 1},
]


def test_parse_and_choose() -> None:
    defs = parse_cpu_definitions(REPLY)
    assert [d.name for d in defs] == ["host", "qemu64", "kvm64", "Westmere"]
    assert choose_cpu_model(defs) == "qemu64,-pni"
    assert choose_cpu_model(defs, ("Westmere",)) == "Westmere,-pni,-aes"
    assert choose_cpu_model([CpuDefinition("qemu64", (), True)]) == "qemu64"
    # never a model that is not migration-safe (host, max), whatever it lacks
    assert choose_cpu_model(defs, ("host", "kvm64")) == "kvm64"
    assert choose_cpu_model([], ("host",)) == qemu_host.FALLBACK_MODEL


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="no QEMU installed")
def test_probe_real_qemu_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    defs = qemu_host.probe_cpu_definitions("qemu-system-x86_64", "tcg")
    names = {d.name for d in defs}
    assert "qemu64" in names and "host" not in {d.name for d in defs if d.migration_safe}
    model = qemu_host.host_cpu_model("qemu-system-x86_64", tmp_path)
    assert model.startswith("qemu64")
    stored = json.loads((tmp_path / qemu_host.CACHE_FILE).read_text())
    assert stored["cpu_model"] == model and stored["key"]["version"].startswith("QEMU")

    def no_probe(*_: object) -> list[CpuDefinition]:
        raise AssertionError("probed again although cached")

    monkeypatch.setattr(qemu_host, "probe_cpu_definitions", no_probe)
    assert qemu_host.host_cpu_model("qemu-system-x86_64", tmp_path) == model
    # another key (accelerator) probes again; a failed probe falls back, never fails
    monkeypatch.setattr(qemu_host, "probe_cpu_definitions", _failing)
    other = "tcg" if stored["key"]["accel"] == "kvm" else "kvm"
    assert qemu_host.host_cpu_model("qemu-system-x86_64", tmp_path, other) == "qemu64"


def _failing(*_: object) -> list[CpuDefinition]:
    raise qemu_host.ProbeError("broken")
