"""albatross-client generate / --csr / sign / revoke: a delegation tree on disk."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509

from albatross_py.client.certs import load_chain, load_csr, policy_of_certificate
from albatross_py.client.cli import main
from albatross_py.wire.cert import command_of_csr
from albatross_py.wire.messages import PolicyAdd
from albatross_py.wire.types import Policy


@pytest.fixture
def ca_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "root", "db"]) == 0
    return tmp_path


def test_generate(ca_dir: Path) -> None:
    for f in ("cacert.pem", "root.key", "server.pem", "server.key"):
        assert (ca_dir / f).exists(), f
    assert stat.S_IMODE((ca_dir / "root.key").stat().st_mode) == 0o400
    (ca,) = load_chain(ca_dir / "cacert.pem")
    assert ca.subject == ca.issuer and policy_of_certificate(ca) is None
    lines = (ca_dir / "db").read_text().splitlines()
    assert [line.split()[1] for line in lines] == ["root", "server"]
    assert lines[0].split()[0] == f"{ca.serial_number:x}"
    # never overwrites
    assert main(["generate", "root", "db"]) == 124


def test_csr_sign_subca_and_escalation(ca_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["add-policy", "tenant", "4", "--mem", "1024", "--cpu", "0", "--cpu", "1",
                 "--block", "100", "--network", "service", "--csr"]) == 0  # fmt: skip
    assert stat.S_IMODE((ca_dir / "tenant.key").stat().st_mode) == 0o400
    found = command_of_csr(load_csr(ca_dir / "tenant.req"))
    want = Policy(4, frozenset({0, 1}), 1024, 100, frozenset({"service"}))
    assert found is not None and found[1] == PolicyAdd(want)

    assert main(["sign", "cacert.pem", "db", "root.key", "tenant.req"]) == 0
    (tenant,) = load_chain(ca_dir / "tenant.pem")  # signed by the root: no chain appended
    assert policy_of_certificate(tenant) == want
    assert tenant.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    # the tenant delegates further; more than it has is refused with the reason
    assert main(["add-policy", "greedy", "8", "--csr"]) == 0
    capsys.readouterr()
    assert main(["sign", "tenant.pem", "db", "tenant.key", "greedy.req"]) == 124
    err = capsys.readouterr().err
    assert "refusing to sign greedy" in err and "4 unikernels" in err and "8" in err
    assert not (ca_dir / "greedy.pem").exists()
    assert main(["add-policy", "wide", "1", "--network", "other", "--csr"]) == 0
    assert main(["sign", "tenant.pem", "db", "tenant.key", "wide.req"]) == 124
    assert "bridge" in capsys.readouterr().err

    assert main(["add-policy", "sub", "2", "--mem", "256", "--csr"]) == 0
    assert main(["sign", "tenant.pem", "db", "tenant.key", "sub.req"]) == 0
    sub, parent = load_chain(ca_dir / "sub.pem")
    assert parent.subject == tenant.subject and sub.issuer == tenant.subject
    assert policy_of_certificate(sub) == Policy(2, frozenset({0}), 256, None, frozenset())
    names = [line.split()[1] for line in (ca_dir / "db").read_text().splitlines()]
    assert names == ["root", "server", "tenant", "sub"]


def test_csr_for_commands(ca_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["destroy", "web", "--csr"]) == 0
    assert (ca_dir / "web.req").exists()
    capsys.readouterr()
    assert main(["destroy", "a:web", "--csr"]) == 124  # the path must come from the CA chain
    assert "non-empty path" in capsys.readouterr().err


def test_revoke_writes_and_extends_a_crl(ca_dir: Path) -> None:
    assert main(["add-policy", "tenant", "2", "--csr"]) == 0
    assert main(["sign", "cacert.pem", "db", "root.key", "tenant.req"]) == 0
    (tenant,) = load_chain(ca_dir / "tenant.pem")
    (server,) = load_chain(ca_dir / "server.pem")
    (ca,) = load_chain(ca_dir / "cacert.pem")
    assert main(["revoke", "cacert.pem", "root.key", f"{tenant.serial_number:x}",
                 "--crl", "root.crl"]) == 0  # fmt: skip
    crl = x509.load_pem_x509_crl((ca_dir / "root.crl").read_bytes())
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    assert crl.get_revoked_certificate_by_serial_number(tenant.serial_number) is not None
    assert main(["revoke", "cacert.pem", "root.key", f"0x{server.serial_number:x}",
                 "--crl", "root.crl"]) == 0  # fmt: skip
    crl = x509.load_pem_x509_crl((ca_dir / "root.crl").read_bytes())
    assert {r.serial_number for r in crl} == {tenant.serial_number, server.serial_number}
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2
    assert main(["revoke", "cacert.pem", "root.key", "zz"]) == 124
