"""Wire, certificate-extension and state vectors from albatross 2.7.2, byte for byte."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography import x509

from albatross_py.wire import decode_wire, encode_wire, read_state, write_state
from albatross_py.wire.cert import command_of_certificate
from albatross_py.wire.codec import encode_cert_extension
from albatross_py.wire.jsonview import config_to_json, policy_to_json, wire_to_json
from albatross_py.wire.messages import ConsoleSubscribe, Header, PolicyAdd, Wire
from albatross_py.wire.names import Name
from albatross_py.wire.state import trie_key
from tests.vectors import VECTORS, load_json, require_vectors

WIRE_STEMS = ["console_subscribe_v5", "console_subscribe_v5_2"]
STATE_STEMS = [
    "wire4_unikernel1",
    "wire4_unikernel2",
    "wire4_unikernel3",
    "wire5_unikernel1",
    "wire5_unikernel2",
    "wire5_unikernel3",
    "wire5_unikernel1_path",
    "wire5_unikernel2_path",
    "wire5_unikernel3_path",
    "wire5_unikernel3_with_mac",
]
CERT_STEMS = [
    "bistro_console_subscribe_v5",
    "bistro_console_subscribe_v5_2",
    "bistro_console_subscribe_v5_3",
]


def test_every_vector_file_is_covered() -> None:
    root = require_vectors()
    assert sorted(p.stem for p in (root / "wire").glob("*.json")) == sorted(WIRE_STEMS)
    assert sorted(p.stem for p in (root / "state").glob("*.json")) == sorted(STATE_STEMS)
    assert sorted(p.stem for p in (root / "certs").glob("*.json")) == sorted(CERT_STEMS)


@pytest.mark.parametrize("stem", WIRE_STEMS)
def test_wire_vector_decodes_and_encodes(stem: str) -> None:
    meta = load_json(f"wire/{stem}.json")
    raw = (VECTORS / "wire" / f"{stem}.der").read_bytes()
    assert raw.hex() == (VECTORS / "wire" / f"{stem}.hex").read_text().strip()
    wire = decode_wire(raw)
    assert wire_to_json(wire) == meta["decoded"]
    decoded = meta["decoded"]
    built = Wire(
        Header(
            decoded["header"]["version"],
            decoded["header"]["sequence"],
            Name.of_string(decoded["header"]["name"]),
        ),
        ConsoleSubscribe(count=decoded["payload"]["command"]["console"]["subscribe"]["count"]),
    )
    assert encode_wire(built) == raw
    framed = bytes.fromhex(meta["framed_hex"])
    assert framed[:4] == len(raw).to_bytes(4, "big") and framed[4:] == raw


def test_name_without_colon_encodes_with_it() -> None:
    # albatross parses "foo" from the command line and always writes ":foo"
    raw = (require_vectors() / "wire" / "console_subscribe_v5.der").read_bytes()
    wire = Wire(Header(name=Name.of_string("foo")), ConsoleSubscribe(count=20))
    assert encode_wire(wire) == raw


@pytest.mark.parametrize("stem", STATE_STEMS)
def test_state_vector(stem: str) -> None:
    meta = load_json(f"state/{stem}.json")
    raw = (VECTORS / "state" / f"{stem}.der").read_bytes()
    b64 = (VECTORS / "state" / f"{stem}.b64").read_text()
    assert base64.b64decode(b64) == raw
    state = read_state(raw)
    assert state.layout == meta["layout_tag"]
    assert [str(n) for n, _ in state.unikernels] == [
        str(Name.of_string(s)) for s in meta["names_in_file_order"]
    ]
    in_trie_order = sorted(state.unikernels, key=lambda e: trie_key(e[0]))
    got = [{"name": str(n), "value": config_to_json(c)} for n, c in in_trie_order]
    assert got == meta["expected"]["unikernels"]
    assert [policy_to_json(p) for _, p in state.policies] == meta["expected"]["policies"]
    # we read every layout and write [6]; what we write reads back the same
    again = read_state(write_state(state))
    assert again.layout == 6
    assert list(again.unikernels) == in_trie_order


def _chain(stem: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(
        (require_vectors() / "certs" / f"{stem}.pem").read_bytes()
    )


@pytest.mark.parametrize("stem", CERT_STEMS)
def test_certificate_extension_vectors(stem: str) -> None:
    meta = load_json(f"certs/{stem}.json")
    chain = _chain(stem)
    leaf = command_of_certificate(chain[0])
    assert leaf is not None
    version, cmd = leaf
    assert version == 5
    assert cmd == ConsoleSubscribe(count=20)
    assert encode_cert_extension(cmd).hex() == "300c020105a007a205a103020114"
    assert meta["expected"]["version"] == 5
    assert meta["expected"]["command"] == {"console": {"subscribe": {"count": 20}}}


def test_intermediate_policy_extension() -> None:
    meta = load_json("certs/bistro_console_subscribe_v5_3.json")
    arc = _chain("bistro_console_subscribe_v5_3")[1]
    found = command_of_certificate(arc)
    assert found is not None
    _, cmd = found
    assert isinstance(cmd, PolicyAdd)
    (expected,) = meta["expected"]["policies"]
    assert policy_to_json(cmd.policy) == expected["policy"]
    assert encode_cert_extension(cmd).hex() == (
        "3017020105a412a110300e3003020100020101020202003000"
    )
    assert json.dumps(policy_to_json(cmd.policy))  # JSON-able
