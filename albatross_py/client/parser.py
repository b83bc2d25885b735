"""albatross-client's argument parser (spec 7.1, 7.2), and ``help``.

One parser describes every subcommand, its options and their defaults (those
of albatross's ``client/albatross_client.ml``); ``--help``, ``help COMMAND``,
the bash completion and the man page (:mod:`albatross_py.client.docgen`) all
come from it, so they cannot disagree.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from albatross_py import __version__
from albatross_py.client import certs
from albatross_py.client.config_args import Exit, add_config_flags, add_policy_flags
from albatross_py.defaults import DEFAULT_DBDIR, DEFAULT_TMPDIR
from albatross_py.wire.messages import WIRE_VERSION


def _common(json_default: bool = False) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("output")
    g.add_argument("--json", action="store_true", default=json_default,
                   help="JSON lines instead of albatross's text")  # fmt: skip
    g.add_argument("-v", "--verbose", action="count", default=0, help="more output (argv in info)")
    g.add_argument("-q", "--quiet", action="store_true", help="no output on success")
    g.add_argument("--verbosity", help="log level (accepted for albatross compatibility)")
    g.add_argument("--color", choices=("auto", "always", "never"), help="(accepted, ignored)")
    return p


def _destination() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("destination (choose one)")
    g.add_argument("--socket", metavar="PATH", help="local daemon socket; '-' prints the hex")
    g.add_argument("-d", "--destination", metavar="HOST[:PORT]",
                   help="remote TLS endpoint (port 1025); '-' prints the chain")  # fmt: skip
    g.add_argument("--csr", action="store_true", help="write <name>.key and <name>.req")
    g.add_argument("--tmpdir", default=DEFAULT_TMPDIR, help=f"default {DEFAULT_TMPDIR}")
    k = p.add_argument_group("certificates (remote, --csr)")
    k.add_argument("--ca", default="ca.pem", help="your CA chain (default ca.pem)")
    k.add_argument("--ca-key", default="ca.key", help="its key (default ca.key)")
    k.add_argument("--server-ca", default="cacert.pem", help="server CA (default cacert.pem)")
    k.add_argument("--key-type", choices=certs.KEY_TYPES, default=certs.DEFAULT_KEY_TYPE)
    return p


def _level(p: argparse.ArgumentParser) -> None:
    p.add_argument("--compression-level", type=int, choices=range(10), metavar="0-9",
                   help="zlib level (default 0 locally, 9 remote/--csr)")  # fmt: skip


def build_parser(prog: str = "albatross-client") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Manage unikernels run by albatross, locally or remotely.",
        epilog="examples: albatross-client info; albatross-client create web web.hvt --net "
        "service --mem 64; albatross-client console web -d host --ca tenant.pem --ca-key "
        "tenant.key --server-ca cacert.pem.  Exit codes: 0 ok, 116 chain, 117 command "
        "failed, 118 HTTP failure (update), 119/120 TLS authentication, 121 communication, "
        "122 connect, 124 cli, 125 internal.  More: albatross-client help COMMAND.",
    )  # fmt: skip
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s version {__version__} protocol version {WIRE_VERSION} "
                        "(albatross-py)")  # fmt: skip
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    net = [_common(), _destination()]
    loc = [_common()]

    def add(name: str, help_: str, parents: list[argparse.ArgumentParser],
            aliases: Sequence[str] = ()) -> argparse.ArgumentParser:  # fmt: skip
        p = sub.add_parser(name, help=help_, parents=parents, aliases=list(aliases))
        p.set_defaults(cmd=name)
        return p

    p = add("create", "create a unikernel", net)
    p.add_argument("name")
    p.add_argument("image", nargs="?", help="image file (not for bhyve)")
    p.add_argument("--typ", choices=("solo5", "bhyve", "qemu"), default="solo5")
    p.add_argument("-f", "--force", action="store_true", help="replace a running unikernel")
    add_config_flags(p)
    _level(p)
    add("destroy", "destroy a unikernel", net, ["remove"]).add_argument("name")
    p = add("restart", "restart a unikernel", net)
    p.add_argument("name")
    p.add_argument("--replace-arguments", action="store_true", help="use the flags below")
    add_config_flags(p)
    for name, help_, aliases in (("info", "information about unikernels", ()),
                                 ("stats", "subscribe to statistics", ()),
                                 ("block", "information about block devices", ())):  # fmt: skip
        p = add(name, help_, net, aliases)
        p.add_argument("name", nargs="?", help="name or path (default: everything)")
        p.add_argument("-n", "--name", dest="name_opt")
    p = add("get", "download a unikernel's image", net)
    p.add_argument("name")
    p.add_argument("-o", "--output", help="file (default $TMPDIR/<name>.<time>)")
    _level(p)
    p = add("update", "force-create a unikernel's newer build from the builds server", net)
    p.add_argument("name")
    p.add_argument("--http-host", default="https://builds.robur.coop", metavar="URL",
                   help="builder-web, http[s]://host[:port] (default %(default)s)")  # fmt: skip
    p.add_argument("--dryrun", "--dry-run", action="store_true",
                   help="only say whether there is a newer build")  # fmt: skip
    _level(p)
    for name, help_, aliases in (("policy", "show policies", ()),
                                 ("remove-policy", "remove a policy", ("remove_policy",)),
                                 ("inactive-consoles", "consoles of stopped unikernels",
                                  ("inactive_consoles",))):  # fmt: skip
        p = add(name, help_, net, aliases)
        p.add_argument("path", nargs="?", help="path (default: root)")
        p.add_argument("-p", "--path", dest="path_opt")
    for name, aliases in (("add-policy", ["add_policy"]), ("replace-policy", [])):
        p = add(name, "add or replace a policy", net, aliases)
        p.set_defaults(cmd="add-policy")  # replace-policy is add-policy, as in albatross
        p.add_argument("path")
        p.add_argument("unikernels")
        add_policy_flags(p)
    p = add("create-block", "create a block device", net, ["create_block"])
    p.add_argument("name")
    p.add_argument("size", type=int, metavar="SIZE-MB")
    p.add_argument("--data", help="initial content")
    _level(p)
    p = add("set-block", "set a block device's content", net, ["set_block"])
    p.add_argument("name")
    p.add_argument("file")
    _level(p)
    p = add("dump-block", "download a block device", net, ["dump_block"])
    p.add_argument("name")
    p.add_argument("-o", "--output", help="file (default $TMPDIR/<name>.<time>)")
    _level(p)
    add("destroy-block", "destroy a block device", net, ["destroy_block"]).add_argument("name")
    p = add("console", "show a unikernel's console, follow until Ctrl-C", net)
    p.add_argument("name")
    p.add_argument("--since", help="RFC 3339 time or date")
    p.add_argument("--count", type=int, default=20, help="last N lines (default 20)")
    p = add("stats-add", "start statistics for a pid (debugging)", net, ["stats_add"])
    p.add_argument("pid", type=int)
    p.add_argument("--vmmdev", default="")
    p.add_argument("--bridge", action="append", metavar="NAME:TAP")
    p.add_argument("-n", "--name", dest="name_opt", default="", help="name (default: the root)")
    p = add("stats-remove", "stop statistics (debugging)", net, ["stats_remove"])
    p.add_argument("-n", "--name", dest="name_opt", default="", help="name (default: the root)")
    p = add("log", "show events (albatross-log), follow until Ctrl-C", net)
    p.add_argument("name", nargs="?", help="name or path (default: everything)")
    p.add_argument("-n", "--name", dest="name_opt", metavar="PATH", help="same as NAME")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--since", help="RFC 3339 time or date")
    g.add_argument("--count", type=int, default=20, help="last N events (default 20)")
    for name, help_, aliases in (
        ("inspect-dump", "show the unikernels and policies of albatrossd's state file",
         ["inspect_dump"]),
        ("extract-dump", "write a unikernel's image from albatrossd's state file",
         ["extract_dump"]),
    ):  # fmt: skip
        p = add(name, help_, loc, aliases)
        if name == "extract-dump":
            p.add_argument("name")
            p.add_argument("-o", "--output", help="file (default $TMPDIR/<name>.<time>)")
        p.add_argument("--dbdir", default=DEFAULT_DBDIR, help=f"default {DEFAULT_DBDIR}")
        p.add_argument("--file", default="state", help="relative to --dbdir")
    p = add("certificate", "send a pre-made certificate chain", [_common(), _destination()])
    p.add_argument("cert")
    p.add_argument("key")
    p = add("sign", "sign a request with your CA", loc)
    for a in ("cacert", "db", "key", "csr"):
        p.add_argument(a)
    p.add_argument("--days", type=int)
    p = add("generate", "a new CA and server certificate", loc)
    p.add_argument("name")
    p.add_argument("db")
    p.add_argument("--days", type=int, default=certs.CA_DAYS)
    p.add_argument("--server", default="server")
    p.add_argument("--server-days", type=int, default=certs.SERVER_DAYS)
    p.add_argument("--key-type", choices=certs.KEY_TYPES, default=certs.DEFAULT_KEY_TYPE)
    p = add("revoke", "write a CRL revoking serials (hex, as in DB)", loc)
    p.add_argument("cacert")
    p.add_argument("key")
    p.add_argument("serial", nargs="+")
    p.add_argument("--crl", help="CRL file, extended if it exists (default <CA>.crl)")
    p.add_argument("--days", type=int, default=30)
    p = add("help", "help on a command (or on all of them)", [])
    p.add_argument("topic", nargs="?", metavar="COMMAND")
    return parser


def print_help(parser: argparse.ArgumentParser, topic: str | None) -> int:
    """``help``: the overview; ``help COMMAND``: that command's help (as ``COMMAND --help``)."""
    if topic is None:
        parser.print_help()
        return Exit.SUCCESS
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands = sub.choices
    if topic not in commands:
        print(f"unknown command '{topic}', available commands:", file=sys.stderr)
        for choice in sub._choices_actions:  # the commands' own names, not their aliases
            print(f"  {choice.dest}", file=sys.stderr)
        return Exit.CLI_ERROR
    commands[topic].print_help()
    return Exit.SUCCESS
