"""albatross-client argument parsing: the exact wire commands (``--socket -``), errors, aliases."""

from __future__ import annotations

import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from albatross_py.client.cli import main, vmmc_main
from albatross_py.client.config_args import CliError, parse_block, parse_net
from albatross_py.client.output import Progress, ocaml_escaped, pp_wire, rfc3339
from albatross_py.client.parser import build_parser
from albatross_py.client.remote import parse_destination
from albatross_py.virt.solo5_elf import make_solo5_elf
from albatross_py.wire.codec import decode_wire
from albatross_py.wire.framing import MAX_IMAGE_SIZE
from albatross_py.wire.messages import (
    BlockAdd,
    BlockSet,
    ConsoleSubscribe,
    DataConsole,
    Failure,
    Header,
    PolicyAdd,
    ReplyString,
    StatsAdd,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelRestart,
    Wire,
)
from albatross_py.wire.names import Name
from albatross_py.wire.types import (
    BlockDevice,
    FailBehaviour,
    NetDevice,
    Policy,
    UnikernelArguments,
    UnikernelConfig,
)

VECTORS = Path("/work/shared/vectors/albatross-2.7.2/wire")


def hex_of(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main([*argv, "--socket", "-"]) == 121
    return capsys.readouterr().out.strip()


def wire_of(capsys: pytest.CaptureFixture[str], *argv: str) -> Wire:
    return decode_wire(bytes.fromhex(hex_of(capsys, *argv)))


def test_console_subscribe_matches_albatross_vector(capsys: pytest.CaptureFixture[str]) -> None:
    expected = (VECTORS / "console_subscribe_v5.hex").read_text().strip()
    assert hex_of(capsys, "console", "foo") == expected
    framed = json.loads((VECTORS / "console_subscribe_v5.json").read_text())["framed_hex"]
    assert framed.endswith(expected)  # albatross prints the unframed message


def test_worked_encodings(capsys: pytest.CaptureFixture[str]) -> None:
    # spec 3.10 (b), (c), (h)
    assert hex_of(capsys, "info", "hello") == (
        "301f3015020105040800000000000000000c063a68656c6c6fa006a304b3020500"
    )
    assert hex_of(capsys, "destroy", "hello").endswith("a006a304a3020500")
    assert hex_of(capsys, "create-block", "data", "10").endswith("a007a505a10302010a")
    w = wire_of(capsys, "info")
    assert w.header.name == Name()


def test_since_and_count(capsys: pytest.CaptureFixture[str]) -> None:
    w = wire_of(capsys, "console", "a:b:vm", "--count", "5")
    assert w.header.name == Name(("a", "b"), "vm") and w.payload == ConsoleSubscribe(count=5)
    w = wire_of(capsys, "console", "vm", "--since", "2025-08-22T13:04:43Z")
    assert w.payload == ConsoleSubscribe(since=datetime(2025, 8, 22, 13, 4, 43, tzinfo=UTC))


def test_create_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "u.hvt"
    image.write_bytes(make_solo5_elf("hvt", 2, ["service", "mgmt"], ["data"]))
    w = wire_of(
        capsys, "create", "web", str(image), "--net", "service", "--net",
        "mgmt:br1@00:de:ad:be:ef:00", "--block", "data:disk@4096", "--cpu", "1", "--cpu",
        "2", "--mem", "64", "--arg=--x=1", "--restart-on-fail", "--exit-code", "3",
        "--startup", "7", "--no-add-name", "--cpus", "2",
    )  # fmt: skip
    assert w.header.name == Name.of_string("web")
    assert w.payload == UnikernelCreate(
        UnikernelConfig(
            image=image.read_bytes(),
            startup=7,
            add_name=False,
            fail_behaviour=FailBehaviour(restart=True, exit_codes=frozenset({3})),
            cpuids=frozenset({1, 2}),
            memory=64,
            blocks=(BlockDevice("data", "disk", 4096),),
            bridges=(NetDevice("service"), NetDevice("mgmt", "br1", bytes.fromhex("00deadbeef00"))),
            argv=("--x=1",),
            cpus=2,
        )
    )
    forced = wire_of(capsys, "create", "web", str(image), "-f", "--net", "service", "--net",
                     "mgmt", "--block", "data", "--compression-level", "9")  # fmt: skip
    assert isinstance(forced.payload, UnikernelCreate) and forced.payload.force
    assert forced.payload.config.compressed and forced.payload.config.image != image.read_bytes()


def test_create_manifest_mismatch_is_a_cli_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "u.hvt"
    image.write_bytes(make_solo5_elf("hvt", 2, ["service"], []))
    assert main(["create", "web", str(image), "--socket", "-"]) == 124
    assert "does not match with the manifest" in capsys.readouterr().err
    assert main(["create", "web", str(tmp_path / "missing"), "--socket", "-"]) == 124


def test_an_image_over_the_frame_limit_is_refused_before_sending(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "vmlinux"
    with image.open("wb") as f:  # sparse: 1 byte over the limit, random at the end
        f.truncate(MAX_IMAGE_SIZE - 4096)
        f.seek(0, 2)
        f.write(os.urandom(4097))
    # a socket that does not exist: the refusal comes before any connection
    argv = ["create", "big", str(image), "--typ", "qemu", "--socket", str(tmp_path / "none")]
    assert main([*argv, "--compression-level", "0"]) == 124
    err = capsys.readouterr().err
    assert f"{MAX_IMAGE_SIZE + 1} bytes" in err and f"at most {MAX_IMAGE_SIZE} bytes" in err
    assert "--compression-level 9" in err
    # compressed it fits (zeros): the client goes on and fails to connect instead
    assert main([*argv, "--compression-level", "9"]) != 124
    assert "frame limit" not in capsys.readouterr().err


def test_restart(capsys: pytest.CaptureFixture[str]) -> None:
    assert wire_of(capsys, "restart", "web").payload == UnikernelRestart(None)
    w = wire_of(capsys, "restart", "web", "--replace-arguments", "--mem", "48", "--arg", "a")
    assert w.payload == UnikernelRestart(UnikernelArguments(memory=48, argv=("a",)))


def test_policies_and_blocks(capsys: pytest.CaptureFixture[str]) -> None:
    w = wire_of(capsys, "add-policy", "tenant", "4", "--mem", "1024", "--cpu", "0", "--cpu",
                "1", "--block", "100", "--network", "service")  # fmt: skip
    assert w.header.name == Name(("tenant",))
    assert w.payload == PolicyAdd(Policy(4, frozenset({0, 1}), 1024, 100, frozenset({"service"})))
    assert wire_of(capsys, "policy", "-p", "a:b").header.name == Name(("a", "b"))
    assert wire_of(capsys, "policy").header.name == Name()
    assert wire_of(capsys, "create-block", "a:disk", "10").payload == BlockAdd(10)
    assert wire_of(capsys, "set-block", "disk", __file__).payload == BlockSet(False)
    w = wire_of(capsys, "set-block", "disk", __file__, "--compression-level", "9")
    assert w.payload == BlockSet(True)
    assert hex_of(capsys, "set-block", "disk", __file__, "--compression-level", "9").endswith(
        "a007a505a7030101ff"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["create", "w", "x", "--block", "d@1000"], "power of two"),
        (["create", "w", "x", "--block", "d@256"], "power of two"),
        (["create", "w", "x", "--block", "d@abc"], "not a number"),
        (["create", "w", "x", "--block", "d", "--block", "d:e"], "must be a set"),
        (["create", "w", "x", "--net", "s", "--net", "s:br0"], "must be a set"),
        (["create", "w", "x", "--net", "s@00:11"], "MAC"),
        (["create", "w", "x", "--net", "a:b:c"], "invalid network device"),
        (["destroy", "bad name!"], "invalid name"),
        (["add-policy", "t", "0"], "Unusable policy"),
        (["add-policy", "t", "1", "--mem", "8"], "Unusable policy"),
        (["destroy", "w", "--csr", "-d", "h"], "mutually exclusive"),
        (["log", "--since", "yesterday"], "not an RFC 3339"),
        (["frobnicate"], ""),
    ],
)
def test_cli_errors_exit_124(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--socket", "-"] if argv[0] != "frobnicate" else argv) == 124
    assert message in capsys.readouterr().err


def test_help_version_and_a_bare_call_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0  # as albatross: a bare call shows the help
    overview = capsys.readouterr().out
    assert overview.startswith("usage: albatross-client") and "replace-policy" in overview
    assert main(["help"]) == 0 and capsys.readouterr().out == overview
    assert main(["--help"]) == 0 and capsys.readouterr().out == overview
    assert main(["help", "create"]) == 0
    create = capsys.readouterr().out
    assert create.startswith("usage: albatross-client create") and "--typ" in create
    assert main(["create", "--help"]) == 0 and capsys.readouterr().out == create
    assert main(["help", "frobnicate"]) == 124
    err = capsys.readouterr().err
    assert "unknown command 'frobnicate'" in err and "  update\n" in err
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == "albatross-client version 0.1.0 protocol version 5 " \
        "(albatross-py)\n"  # fmt: skip
    assert vmmc_main(["--version"]) == 0 and capsys.readouterr().out.startswith("vmmc version")


def test_each_command_names_itself_in_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("replace-policy", "add-policy", "update", "stats-add", "help"):
        assert main([command, "--help"]) == 0
        assert capsys.readouterr().out.startswith(f"usage: albatross-client {command} ")


def test_albatross_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    """Defaults as client/albatross_client.ml has them."""
    # stats-add / stats-remove / info / stats / block: the root unless -n/--name
    for argv in (["stats-remove"], ["stats-add", "42"], ["info"], ["stats"], ["block"],
                 ["inactive-consoles"], ["policy"], ["remove-policy"]):  # fmt: skip
        assert wire_of(capsys, *argv).header.name == Name(), argv
    assert wire_of(capsys, "stats-remove", "-n", "web").header.name == Name.of_string("web")
    assert wire_of(capsys, "stats-add", "42").payload == StatsAdd("", 42, ())
    assert wire_of(capsys, "console", "web").payload == ConsoleSubscribe(count=20)
    policy = wire_of(capsys, "add-policy", "t", "2").payload
    assert policy == PolicyAdd(Policy(2, frozenset({0}), 512, None, frozenset()))
    assert wire_of(capsys, "replace-policy", "t", "2").payload == policy
    a = build_parser().parse_args(["generate", "ca", "db"])
    assert (a.days, a.server, a.server_days, a.key_type) == (3650, "server", 365, "ed25519")
    a = build_parser().parse_args(["update", "web"])
    assert (a.http_host, a.dryrun, a.compression_level) == ("https://builds.robur.coop", False,
                                                            None)  # fmt: skip
    a = build_parser().parse_args(["info"])
    assert (a.ca, a.ca_key, a.server_ca, a.tmpdir) == ("ca.pem", "ca.key", "cacert.pem",
                                                      "/run/albatross")  # fmt: skip
    a = build_parser().parse_args(["inspect-dump"])
    assert (a.dbdir, a.file) == ("/var/lib/albatross", "state")


def test_aliases(capsys: pytest.CaptureFixture[str]) -> None:
    destroy = hex_of(capsys, "destroy", "vm")
    assert hex_of(capsys, "remove", "vm") == destroy
    policy = hex_of(capsys, "add-policy", "t", "2")
    assert hex_of(capsys, "add_policy", "t", "2") == policy
    assert hex_of(capsys, "replace-policy", "t", "2") == policy
    for new, old in (("remove-policy", "remove_policy"), ("destroy-block", "destroy_block"),
                     ("dump-block", "dump_block")):  # fmt: skip
        assert hex_of(capsys, new, *(["d"] if "block" in new else [])) == hex_of(
            capsys, old, *(["d"] if "block" in new else [])
        )
    assert hex_of(capsys, "create_block", "d", "1") == hex_of(capsys, "create-block", "d", "1")
    assert vmmc_main(["remove", "vm", "--socket", "-"]) == 121
    assert capsys.readouterr().out.strip() == destroy
    assert decode_wire(bytes.fromhex(destroy)).payload == UnikernelDestroy()


def test_value_parsers() -> None:
    assert parse_block("a") == BlockDevice("a")
    assert parse_block("a:b@512") == BlockDevice("a", "b", 512)
    assert parse_net("br0@00:00:00:00:00:01") == NetDevice("br0", None, b"\0\0\0\0\0\1")
    with pytest.raises(CliError):
        parse_block("a:")
    assert parse_destination("example.org") == ("example.org", 1025)
    assert parse_destination("10.0.0.1:4433") == ("10.0.0.1", 4433)
    assert parse_destination("[::1]") == ("::1", 1025)
    assert parse_destination("[::1]:99") == ("::1", 99)
    assert parse_destination("::1") == ("::1", 1025)
    with pytest.raises(CliError):
        parse_destination("host:notaport")


def test_output_format() -> None:
    hdr = Header(name=Name.of_string("foo"))
    assert pp_wire(Wire(hdr, ReplyString("created unikernel"))) == [
        "host :foo: success: created unikernel"
    ]
    assert pp_wire(Wire(hdr, Failure("no"))) == ["host :foo: command failed no"]
    ts = datetime(2025, 8, 22, 13, 4, 43, 123000, tzinfo=UTC)
    assert pp_wire(Wire(hdr, DataConsole(ts, b'a "b"\\\t\x01\xff'))) == [
        'console 2025-08-22T13:04:43-00:00: a \\"b\\"\\\\\\t\\001\\255'
    ]
    assert ocaml_escaped(b"it's\n") == "it's\\n"
    assert rfc3339(ts) == "2025-08-22T13:04:43-00:00"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_a_tty() -> None:
    tty = _Tty()
    p = Progress("uploading x", 200, tty)
    p.advance(100)
    p.advance(100)
    p.finish()
    assert "\ruploading x [##########          ]  50% 100/200 bytes" in tty.getvalue()
    assert tty.getvalue().endswith("100% 200/200 bytes\n")
    plain = io.StringIO()
    q = Progress("x", None, plain)
    q.advance(5)
    q.finish()
    assert plain.getvalue() == ""


def test_log_takes_the_name_as_argument_or_option(capsys: pytest.CaptureFixture[str]) -> None:
    from albatross_py.wire.messages import EventsSubscribe

    for argv in (("log", "a:"), ("log", "--name", "a:"), ("log", "-n", "a:")):
        wire = wire_of(capsys, *argv, "--count", "5")
        assert str(wire.header.name) == "a:"
        assert wire.payload == EventsSubscribe(count=5)


def test_ocaml_escaping_names_control_characters() -> None:
    from albatross_py.core.ocaml import escaped, quoted

    assert escaped(b'a\r\b\t"\\\x00\xff') == 'a\\r\\b\\t\\"\\\\\\000\\255'
    assert quoted("dev\r") == '"dev\\r"'
