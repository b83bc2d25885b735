"""albatross-client subcommands that talk to no daemon (spec 4.2, 7.2).

* ``generate NAME DB``: a root CA (``cacert.pem``, ``NAME.key``) and the
  endpoint's certificate (``<server>.pem``, ``<server>.key``); appends
  ``"<hex serial> <name>"`` lines to DB.
* ``sign CACERT DB KEY CSR``: issue what a request asks for (a delegation
  sub-CA for ``add-policy --csr``, a 1-day leaf otherwise) after checking it
  against the CA's own policy; writes ``<CN>.pem`` (with the CA unless it is
  the root) and appends to DB.
* ``revoke CACERT KEY SERIAL…`` (ours; albatross has none, spec 4.6): a CRL
  signed by that CA, for the endpoint's ``<dbdir>/crl``.  An existing
  ``--crl`` file is extended (its serials kept, its CRL number increased).
* ``inspect-dump`` / ``extract-dump``: read albatrossd's state file.

Files are written in the current directory; keys with mode 0400 and never
over an existing file.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import zlib
from datetime import UTC, datetime
from pathlib import Path as FsPath
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from albatross_py.client import certs
from albatross_py.client.config_args import CliError, Exit, parse_name
from albatross_py.client.output import Printer, pp_fail, pp_policy, rfc3339
from albatross_py.core.policy import PolicyError
from albatross_py.wire.errors import WireError
from albatross_py.wire.jsonview import config_to_json, policy_to_json
from albatross_py.wire.state import read_state
from albatross_py.wire.types import UnikernelConfig


def _append_db(db: str, cert: x509.Certificate, name: str) -> None:
    with open(db, "a") as f:
        f.write(f"{cert.serial_number:x} {name}\n")


def _write_key(path: str, key: certs.PrivateKey) -> None:
    try:
        certs.write_key(path, key)
    except FileExistsError:
        raise CliError(f"{path} exists; not overwriting a key") from None


def _common_name(subject: x509.Name) -> str:
    cns = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cns:
        raise CliError("the request has no common name")
    value = cns[0].value
    return value if isinstance(value, str) else value.decode()


def generate(a: argparse.Namespace, printer: Printer) -> Exit:
    for path in ("cacert.pem", f"{a.name}.key", f"{a.server}.pem", f"{a.server}.key"):
        if FsPath(path).exists():
            raise CliError(f"{path} exists; not overwriting")
    try:
        ca, ca_key = certs.generate_ca(a.name, a.days, a.key_type)
        server, server_key = certs.generate_server(ca, ca_key, a.server, a.server_days,
                                                   a.key_type)  # fmt: skip
    except certs.CertError as exc:
        raise CliError(str(exc)) from None
    _write_key(f"{a.name}.key", ca_key)
    certs.write_certs("cacert.pem", [ca])
    _write_key(f"{a.server}.key", server_key)
    certs.write_certs(f"{a.server}.pem", [server])
    _append_db(a.db, ca, a.name)
    _append_db(a.db, server, a.server)
    printer.result(
        f"wrote cacert.pem, {a.name}.key, {a.server}.pem and {a.server}.key",
        {"ca": "cacert.pem", "ca-key": f"{a.name}.key", "server": f"{a.server}.pem",
         "server-key": f"{a.server}.key"},
    )  # fmt: skip
    return Exit.SUCCESS


def sign(a: argparse.Namespace, printer: Printer) -> Exit:
    try:
        ca = certs.load_chain(a.cacert)[0]
        key = certs.load_key(a.key)
        csr = certs.load_csr(a.csr)
    except (OSError, ValueError, IndexError) as exc:
        raise CliError(f"cannot load the CA, its key or the request: {exc}") from None
    cn = _common_name(csr.subject)
    try:
        cert = certs.sign_csr(ca, key, csr, a.days)
    except PolicyError as exc:
        raise CliError(f"refusing to sign {cn}: {exc}") from None
    except (certs.CertError, WireError) as exc:
        raise CliError(f"cannot sign {cn}: {exc}") from None
    out = f"{cn}.pem"
    certs.write_certs(out, certs.issued_chain(cert, ca))
    _append_db(a.db, cert, cn)
    printer.result(f"wrote {out} (serial {cert.serial_number:x})",
                   {"certificate": out, "serial": f"{cert.serial_number:x}"})  # fmt: skip
    return Exit.SUCCESS


def _serial(s: str) -> int:
    try:
        return int(s.removeprefix("0x"), 16)
    except ValueError:
        raise CliError(f"serial {s!r} is not hexadecimal") from None


def revoke(a: argparse.Namespace, printer: Printer) -> Exit:
    try:
        ca = certs.load_chain(a.cacert)[0]
        key = certs.load_key(a.key)
    except (OSError, ValueError, IndexError) as exc:
        raise CliError(f"cannot load the CA or its key: {exc}") from None
    serials = {_serial(s) for s in a.serial}
    out = FsPath(a.crl or f"{_common_name(ca.subject)}.crl")
    number = 1
    if out.exists():
        try:
            old = x509.load_pem_x509_crl(out.read_bytes())
        except ValueError as exc:
            raise CliError(f"{out} is not a PEM CRL: {exc}") from None
        if old.issuer != ca.subject:
            raise CliError(f"{out} was issued by {old.issuer.rfc4514_string()}, not this CA")
        serials |= {r.serial_number for r in old}
        try:
            number = old.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
        except x509.ExtensionNotFound:
            number = 2
    try:
        crl = certs.make_crl(ca, key, sorted(serials), a.days, number)
    except certs.CertError as exc:
        raise CliError(str(exc)) from None
    out.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    listed = [f"{s:x}" for s in sorted(serials)]
    printer.result(f"wrote {out} (CRL number {number}) revoking {', '.join(listed)}",
                   {"crl": str(out), "crl-number": number, "revoked": listed})  # fmt: skip
    return Exit.SUCCESS


def _config_summary(c: UnikernelConfig) -> str:
    blocks = ", ".join(f"{b.name}:{b.host_device}" for b in c.blocks) or "none"
    nets = ", ".join(f"{n.netif}:{n.host_bridge}" for n in c.bridges) or "none"
    return (
        f"typ {c.typ.name.lower()} compressed {str(c.compressed).lower()} "
        f"image {len(c.image)} bytes (sha256 {hashlib.sha256(c.image).hexdigest()}) "
        f"startup {c.startup_priority} fail behaviour {pp_fail(c.fail_behaviour)} "
        f"CPUids {', '.join(str(x) for x in sorted(c.cpuids))} {c.memory} MB memory "
        f"block devices {blocks} bridges {nets} #cpus {c.cpus}"
        + ("" if c.argv is None else " argv " + " ".join(c.argv))
    )


def _config_json(c: UnikernelConfig) -> dict[str, Any]:
    j: dict[str, Any] = config_to_json(c)
    del j["image"]
    j["image-size"] = len(c.image)
    j["image-sha256"] = hashlib.sha256(c.image).hexdigest()
    return j


def _load_state(a: argparse.Namespace) -> Any:
    path = FsPath(a.dbdir) / a.file
    try:
        return read_state(path.read_bytes())
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    except WireError as exc:
        raise CliError(f"{path} is not an albatross state file: {exc}") from None


def inspect_dump(a: argparse.Namespace, printer: Printer) -> Exit:
    state = _load_state(a)
    if printer.json_mode:
        printer.result("", {
            "layout": state.layout,
            "unikernels": {str(n): _config_json(c) for n, c in state.unikernels},
            "policies": {str(n): policy_to_json(p) for n, p in state.policies},
        })  # fmt: skip
        return Exit.SUCCESS
    printer.result(f"state layout [{state.layout}]: {len(state.unikernels)} unikernels, "
                   f"{len(state.policies)} policies")  # fmt: skip
    for n, c in state.unikernels:
        printer.result(f"unikernel {n}: {_config_summary(c)}")
    for n, p in state.policies:
        printer.result(f"policy {n}: {pp_policy(p)}")
    return Exit.SUCCESS


def extract_dump(a: argparse.Namespace, printer: Printer) -> Exit:
    name = parse_name(a.name)
    state = _load_state(a)
    found = [c for n, c in state.unikernels if n == name]
    if not found:
        raise CliError(f"{name} is not in the state file")
    config = found[0]
    image = zlib.decompress(config.image) if config.compressed else config.image
    if a.output:
        out = FsPath(a.output)
    else:
        out = FsPath(os.environ.get("TMPDIR") or "/tmp") / f"{name}.{rfc3339(datetime.now(UTC))}"
    out.write_bytes(image)
    printer.result(f"{name}: {_config_summary(config)}\nwrote image ({len(image)} bytes) to {out}",
                   {"name": str(name), "config": _config_json(config),
                    "image-file": str(out)})  # fmt: skip
    return Exit.SUCCESS


def run(a: argparse.Namespace, printer: Printer) -> Exit:
    ops = {"generate": generate, "sign": sign, "revoke": revoke,
           "inspect-dump": inspect_dump, "extract-dump": extract_dump}  # fmt: skip
    return ops[a.cmd](a, printer)
