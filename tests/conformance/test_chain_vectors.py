"""albatross 2.7.2's ``Vmm_tls.handle`` vectors through :func:`handle_chain`.

The certificates are expired; ``handle_chain`` ignores time by design (the
TLS handshake checks validity), exactly like the upstream test.
"""

from __future__ import annotations

import pytest
from cryptography import x509

from albatross_py.tls.chain import handle_chain
from albatross_py.wire.grammar import command_to_raw
from albatross_py.wire.jsonview import policy_to_json, raw_to_json
from albatross_py.wire.names import Name, path_of_string, path_to_string
from tests.vectors import VECTORS, load_json, require_vectors

CERT_STEMS = [
    "bistro_console_subscribe_v5",
    "bistro_console_subscribe_v5_2",
    "bistro_console_subscribe_v5_3",
]


@pytest.mark.parametrize("stem", CERT_STEMS)
def test_chain_vector(stem: str) -> None:
    require_vectors()
    meta = load_json(f"certs/{stem}.json")
    expected = meta["expected"]
    chain = x509.load_pem_x509_certificates((VECTORS / "certs" / f"{stem}.pem").read_bytes())

    request = handle_chain(chain)

    assert request.name == Name.of_string(expected["name"])
    assert str(request.name) == expected["name"]
    assert request.version == expected["version"] == 5
    assert raw_to_json(command_to_raw(request.command)) == expected["command"]
    assert len(request.policies) == len(expected["policies"])
    for (path, policy), want in zip(request.policies, expected["policies"], strict=True):
        assert path == path_of_string(want["path"])
        assert path_to_string(path) == want["name"]
        assert policy_to_json(policy) == want["policy"]


def test_v5_3_policy_path_is_arc() -> None:
    require_vectors()
    chain = x509.load_pem_x509_certificates(
        (VECTORS / "certs" / "bistro_console_subscribe_v5_3.pem").read_bytes()
    )
    request = handle_chain(chain)
    ((path, policy),) = request.policies
    assert path == ("arc",)
    assert (policy.unikernels, policy.memory, set(policy.cpuids), policy.block) == (
        1,
        512,
        {0},
        None,
    )


def test_root_alone_adds_nothing_to_the_name() -> None:
    """The self-signed root "test" carries no extension: it is skipped, not an error."""
    require_vectors()
    leaf, root = x509.load_pem_x509_certificates(
        (VECTORS / "certs" / "bistro_console_subscribe_v5.pem").read_bytes()
    )
    arc_chain = x509.load_pem_x509_certificates(
        (VECTORS / "certs" / "bistro_console_subscribe_v5_3.pem").read_bytes()
    )
    # The verified path OpenSSL hands over includes the root: same result.
    with_root = handle_chain([*arc_chain, root])
    assert str(with_root.name) == "arc:foo.bar"
    assert [p for p, _ in with_root.policies] == [("arc",)]
    assert str(handle_chain([leaf]).name) == ":foo"
