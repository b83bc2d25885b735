"""What this host's QEMU can run: the CPU model, probed once and cached.

``-cpu qemu64`` asks for features that a nested or old host may lack; QEMU
then starts anyway but prints ``qemu-system-x86_64: warning: host doesn't
support requested feature: CPUID.01H:ECX.pni [bit 0]`` on its stderr, which
is the VM's console (spec 5.7).  So the model is chosen from what the host
supports:

* QEMU is asked once, through QMP's ``query-cpu-definitions`` on a machine
  with no guest (``-machine none``, about 0.15 s), with the accelerator VMs
  will use first (KVM where ``/dev/kvm`` opens, else TCG).  For each model
  it names the ``unavailable-features``.
* The model is the first of :data:`PREFERRED_MODELS` that QEMU knows and
  calls ``migration-safe`` (a named, versioned model, never ``host`` or
  ``max``: those copy the host CPU and cannot move to another host), with
  every unavailable feature switched off: ``qemu64,-pni`` on these nested
  hosts, plain ``qemu64`` on ordinary ones.  Two hosts that both run the
  result agree on the CPU the guest sees as long as they lack the same
  features; an operator who moves VMs between unlike hosts passes one
  model for all with ``albatrossd --qemu-cpu``.
* The answer is cached in ``<dbdir>/qemu-host.json`` keyed by the QEMU
  binary's path, its ``--version`` line, its size and mtime, and the
  accelerator, so a QEMU upgrade probes again and an unchanged one costs
  one ``--version`` run at startup.

If the probe fails (QEMU missing, QMP broken), the default model is used
and the failure is logged: the VM still runs, perhaps with the warning.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("albatrossd")

#: Tried in order; the first QEMU knows and calls migration-safe wins.
PREFERRED_MODELS = ("qemu64", "kvm64")
FALLBACK_MODEL = "qemu64"
CACHE_FILE = "qemu-host.json"
#: A probe normally takes 0.15 s; past this QEMU is wedged.
PROBE_TIMEOUT = 20.0


class ProbeError(Exception):
    """QEMU could not be asked."""


@dataclass(frozen=True, slots=True)
class CpuDefinition:
    name: str
    unavailable: tuple[str, ...]
    migration_safe: bool


def parse_cpu_definitions(reply: Sequence[dict[str, Any]]) -> list[CpuDefinition]:
    """``query-cpu-definitions``' ``return`` as :class:`CpuDefinition` s."""
    out = []
    for d in reply:
        if not isinstance(d, dict) or not isinstance(d.get("name"), str):
            continue
        unavailable = tuple(str(f) for f in d.get("unavailable-features") or ())
        out.append(CpuDefinition(d["name"], unavailable, bool(d.get("migration-safe"))))
    return out


def choose_cpu_model(
    definitions: Sequence[CpuDefinition], preferred: Sequence[str] = PREFERRED_MODELS
) -> str:
    """The first preferred migration-safe model, minus what the host lacks (pure)."""
    by_name = {d.name: d for d in definitions}
    for name in preferred:
        d = by_name.get(name)
        if d is None or not d.migration_safe:
            continue
        # "type" or similar non-feature entries never appear for these models;
        # feature names are QEMU's own spelling, valid as "-feature".
        return ",".join([name, *(f"-{f}" for f in d.unavailable)])
    return FALLBACK_MODEL


def kvm_usable() -> bool:
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def probe_accel() -> str:
    """The accelerator QEMU tries first for ``auto`` and ``kvm``: KVM where it opens."""
    return "kvm" if kvm_usable() else "tcg"


def _qmp_script() -> bytes:
    lines = [
        {"execute": "qmp_capabilities"},
        {"execute": "query-cpu-definitions", "id": "defs"},
        {"execute": "quit"},
    ]
    return b"".join(json.dumps(m).encode() + b"\n" for m in lines)


def probe_cpu_definitions(binary: str, accel: str) -> list[CpuDefinition]:
    """Start QEMU without a guest and ask QMP for its CPU models."""
    argv = [binary, "-machine", "none", "-accel", accel, "-nodefaults", "-nographic",
            "-no-user-config", "-qmp", "stdio"]  # fmt: skip
    try:
        r = subprocess.run(argv, input=_qmp_script(), capture_output=True, timeout=PROBE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ProbeError(f"{binary}: {e}") from e
    for line in r.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if isinstance(msg, dict) and msg.get("id") == "defs":
            if "return" not in msg:
                raise ProbeError(f"query-cpu-definitions failed: {msg.get('error')}")
            return parse_cpu_definitions(msg["return"])
    err = r.stderr.decode(errors="replace").strip()
    raise ProbeError(f"{binary} gave no CPU definitions (exit {r.returncode}): {err[-300:]}")


def qemu_identity(binary: str) -> dict[str, Any]:
    """What the cache is keyed by: path, version line, size and mtime of the binary."""
    path = shutil.which(binary)
    if path is None:
        raise ProbeError(f"{binary} not found")
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
        r = subprocess.run([real, "--version"], capture_output=True, timeout=PROBE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ProbeError(f"{real}: {e}") from e
    version = r.stdout.decode(errors="replace").splitlines()[:1]
    return {"binary": real, "version": version[0] if version else "", "size": st.st_size,
            "mtime_ns": st.st_mtime_ns}  # fmt: skip


def host_cpu_model(binary: str, dbdir: Path | None, accel: str | None = None) -> str:
    """The CPU model for VMs on this host (cached in ``<dbdir>/qemu-host.json``)."""
    accel = accel or probe_accel()
    try:
        key = {**qemu_identity(binary), "accel": accel}
    except ProbeError as e:
        log.warning("cannot identify QEMU (%s); CPU model %s", e, FALLBACK_MODEL)
        return FALLBACK_MODEL
    cache = dbdir / CACHE_FILE if dbdir is not None else None
    if cache is not None:
        try:
            stored = json.loads(cache.read_text())
            if stored.get("key") == key and isinstance(stored.get("cpu_model"), str):
                return str(stored["cpu_model"])
        except (OSError, ValueError, AttributeError):
            pass
    try:
        model = choose_cpu_model(probe_cpu_definitions(binary, accel))
    except ProbeError as e:
        log.warning("cannot probe QEMU's CPU models (%s); CPU model %s", e, FALLBACK_MODEL)
        return FALLBACK_MODEL
    log.info("QEMU CPU model for this host: %s (probed, %s)", model, accel)
    if cache is not None:
        try:
            tmp = cache.with_name(f".{cache.name}.tmp")
            tmp.write_text(json.dumps({"key": key, "cpu_model": model}, indent=2) + "\n")
            os.replace(tmp, cache)
        except OSError as e:
            log.warning("cannot write %s: %s", cache, e)
    return model


__all__ = [
    "CACHE_FILE",
    "FALLBACK_MODEL",
    "PREFERRED_MODELS",
    "CpuDefinition",
    "ProbeError",
    "choose_cpu_model",
    "host_cpu_model",
    "parse_cpu_definitions",
    "probe_accel",
    "probe_cpu_definitions",
    "qemu_identity",
]
