"""Event-log commands in leaf certificates: subscribe is a tenant's, record is not."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509

from albatross_py.client import certs
from albatross_py.client.certs import generate_ca, make_csr, sign_csr, sign_leaf_on_the_fly
from albatross_py.tls.chain import ChainError, handle_chain
from albatross_py.wire import events as ev
from albatross_py.wire.messages import EventsRecord, EventsSubscribe, PolicyAdd
from albatross_py.wire.names import Name
from albatross_py.wire.routing import Shape, endpoint
from albatross_py.wire.types import Policy

POLICY = Policy(2, frozenset({0}), 256, None, frozenset())
SINCE = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def tenant() -> tuple[x509.Certificate, certs.PrivateKey]:
    root, root_key = generate_ca("root")
    csr, key = make_csr("tenant", PolicyAdd(POLICY))
    return sign_csr(root, root_key, csr), key


@pytest.mark.parametrize("cmd", [EventsSubscribe(count=20), EventsSubscribe(since=SINCE)])
def test_events_subscribe_allowed_at_the_chain_path(
    tenant: tuple[x509.Certificate, certs.PrivateKey], cmd: EventsSubscribe
) -> None:
    cert, key = tenant
    leaf, _ = sign_leaf_on_the_fly(cert, key, Name(), cmd)
    request = handle_chain([leaf, cert])
    assert request.command == cmd
    assert request.name == Name.of_path(("tenant",))  # scoped by the chain, not the client
    assert request.policies == [(("tenant",), POLICY)]
    # a label narrows the subscription to that name inside the tenant's path
    leaf, _ = sign_leaf_on_the_fly(cert, key, Name((), "web"), cmd)
    assert str(handle_chain([leaf, cert]).name) == "tenant:web"


def test_events_record_is_refused_in_a_leaf(
    tenant: tuple[x509.Certificate, certs.PrivateKey],
) -> None:
    cert, key = tenant
    forged = EventsRecord(ev.Login(Name.of_string("other:vm"), "10.0.0.1:1"))
    for name in (Name(), Name((), "vm")):
        leaf, _ = sign_leaf_on_the_fly(cert, key, name, forged)
        with pytest.raises(ChainError, match=r"^unexpected command$"):
            handle_chain([leaf, cert])


def test_endpoint_routes_events_subscribe_to_the_log_as_a_stream() -> None:
    assert endpoint(EventsSubscribe(count=1)) == ("log", Shape.READ)
    assert endpoint(EventsSubscribe(since=SINCE)) == ("log", Shape.READ)
