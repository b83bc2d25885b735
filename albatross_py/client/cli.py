"""``albatross-client`` (and ``vmmc``): albatross's command-line client (spec 7).

Destinations (exactly one): ``--socket PATH`` (default: the daemon's socket
under ``--tmpdir``: console commands use ``console.sock``, stats commands
``stat.sock``, ``log`` uses albatross-log's ``log.sock``, everything else
``vmmd.sock``), ``--socket -`` (print the encoded message as hex, exit 121,
as albatross; for ``log`` our ``events subscribe``), ``-d/--destination
HOST[:PORT]`` (remote TLS, see :mod:`albatross_py.client.remote`;
``-d -`` prints the PEM chain that would be sent) or ``--csr`` (write
``<name>.key`` (0400) and ``<name>.req`` for ``sign``).

v1.x underscore names (``add_policy``, ``create_block`` …) and the pre-1.0
``vmmc`` names (``remove`` = destroy, ``policy``, ``add_policy`` …) are
aliases; ``replace-policy`` is a command of its own that does what
``add-policy`` does (as albatross 2.7).  ``update`` fetches a newer build
from ``--http-host`` (:mod:`albatross_py.client.update`).  ``help [COMMAND]``,
a bare call and ``--help`` print help and exit 0; ``--version``.  Exit codes:
spec 7.5 (:class:`~albatross_py.client.config_args.Exit`).

``log [NAME] [--since T | --count N]`` subscribes to albatross-log (our
``events subscribe``; albatross's own ``log`` was retired in 1.2 and its wire
tags stay retired): the matching history, then live events, one line each in
the log file's format (``--json``: JSON lines), until Ctrl-C/SIGTERM as
``console``.  Remotely the subscription is at the certificate's name, so a
tenant sees its own subtree.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path as FsPath

import trio

from albatross_py.client import certs, local_ops, update
from albatross_py.client.advice import connect_failed, subscription_closed
from albatross_py.client.config_args import (
    CliError,
    Exit,
    arguments_from_args,
    config_from_args,
    parse_name,
    parse_name_or_path,
    parse_path,
    parse_stats_bridge,
    policy_from_args,
)
from albatross_py.client.output import Printer, dump_sink, image_sink, rfc3339
from albatross_py.client.parser import build_parser, print_help
from albatross_py.client.remote import (
    INLINE_IMAGE_LIMIT,
    ChainCheckError,
    ConversationEnded,
    SubscriptionClosed,
    Upload,
    bytes_chunks,
    client_context,
    converse,
    file_chunks,
    parse_destination,
    run_remote,
    validate_chain,
)
from albatross_py.core.policy import PolicyError, usable
from albatross_py.transport import FramedStream, connect_unix, socket_path
from albatross_py.virt.solo5_elf import Solo5ImageError, check_manifest, read_manifest
from albatross_py.wire.cert import command_of_certificate
from albatross_py.wire.codec import encode_wire
from albatross_py.wire.errors import WireError
from albatross_py.wire.framing import MAX_IMAGE_SIZE
from albatross_py.wire.messages import (
    BlockAdd,
    BlockDump,
    BlockInfoQuery,
    BlockRemove,
    BlockSet,
    Command,
    ConsoleListInactive,
    ConsoleSubscribe,
    EventsSubscribe,
    Failure,
    Header,
    PolicyAdd,
    PolicyInfoQuery,
    PolicyRemove,
    StatsAdd,
    StatsRemove,
    StatsSubscribe,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelGet,
    UnikernelInfoQuery,
    UnikernelRestart,
    Wire,
)
from albatross_py.wire.names import Name
from albatross_py.wire.routing import Shape, endpoint
from albatross_py.wire.types import Typ, UnikernelConfig

MB = 1024 * 1024


@dataclass
class Plan:
    """One conversation: the command for ``name``, raw data after it, local effects."""

    name: Name
    command: Command
    upload: Callable[[], Upload] | None = None
    on_wire: Callable[[Wire], bool] | None = None  # True: handled, do not print
    stream_image: bytes | None = None  # remote create: image sent as raw chunks
    extra: list[Plan] = field(default_factory=list)


# -- commands ------------------------------------------------------------------------


def _level_of(a: argparse.Namespace, remote: bool) -> int:
    if a.compression_level is not None:
        return int(a.compression_level)
    return 9 if remote else 0


def _out_file(a: argparse.Namespace, name: Name) -> FsPath:
    if getattr(a, "output", None):
        return FsPath(a.output)
    tmp = os.environ.get("TMPDIR") or "/tmp"
    return FsPath(tmp) / f"{name}.{rfc3339(datetime.now(UTC))}"


def _read(path: str) -> bytes:
    try:
        return FsPath(path).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None


def _create(a: argparse.Namespace, remote: bool) -> Plan:
    typ = Typ[a.typ.upper()]
    config = config_from_args(a, b"", False)  # validates the flags before any file IO
    image = b""
    if typ is not Typ.BHYVE:
        if a.image is None:
            raise CliError("create needs an IMAGE file")
        image = _read(a.image)
    if typ is Typ.SOLO5:
        try:
            check_manifest(read_manifest(image), [b.name for b in config.blocks],
                           [n.netif for n in config.bridges])  # fmt: skip
        except Solo5ImageError as exc:
            raise CliError(f"{a.image}: {exc}") from None
    level = _level_of(a, remote)
    if level and image:
        image = zlib.compress(image, level)
    config = config_from_args(a, image, bool(level and image))
    return _create_plan(parse_name(a.name), config, a.force, remote)


def _create_plan(name: Name, config: UnikernelConfig, force: bool, remote: bool) -> Plan:
    """(Force-)create ``config``; remotely a large image goes as raw chunks after the leaf."""
    if len(config.image) > MAX_IMAGE_SIZE:
        how = "compressed, " if config.compressed else ""
        raise CliError(
            f"the image is {_mib(len(config.image))} ({how}as sent): a create carries at most"
            f" {_mib(MAX_IMAGE_SIZE)} (the wire protocol's frame limit); compress it"
            " (--compression-level 9) or boot a smaller kernel"
        )
    plan = Plan(name, UnikernelCreate(config, force=force))
    if remote and len(config.image) > INLINE_IMAGE_LIMIT:
        plan.command = UnikernelCreate(replace(config, image=b""), force)
        plan.stream_image = config.image
    return plan


def _mib(size: int) -> str:
    return f"{size} bytes ({size / (1 << 20):.1f} MiB)"


def _block_set_plan(name: Name, path: str, level: int, size_mb: int | None) -> Plan:
    try:
        total = FsPath(path).stat().st_size
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    if size_mb is not None and total > size_mb * MB:
        raise CliError(f"{path} ({total} bytes) does not fit into {size_mb} MB")

    def upload() -> Upload:
        chunks = file_chunks(path)
        if level:
            chunks = _compressed(chunks, level)
        return Upload(chunks, None if level else total, f"uploading {path}")

    return Plan(name, BlockSet(compressed=level > 0), upload=upload)


def _compressed(chunks: object, level: int) -> object:
    z = zlib.compressobj(level)
    for chunk in chunks:  # type: ignore[attr-defined]
        if out := z.compress(chunk):
            yield out
    yield z.flush()


def build_plan(a: argparse.Namespace, printer: Printer, remote: bool) -> Plan:
    """The conversation(s) a network subcommand asks for."""
    c = a.cmd
    if c == "create":
        return _create(a, remote)
    if c == "log":
        name = parse_name_or_path(a.name_opt if a.name_opt is not None else a.name)
        if a.since is not None:
            return Plan(name, EventsSubscribe(since=_parse_time(a.since)))
        return Plan(name, EventsSubscribe(count=a.count))
    if c in ("info", "stats", "block"):
        name = parse_name_or_path(a.name_opt or a.name)
        cmd: Command = {"info": UnikernelInfoQuery, "stats": StatsSubscribe,
                        "block": BlockInfoQuery}[c]()  # fmt: skip
        return Plan(name, cmd)
    if c in ("policy", "remove-policy", "inactive-consoles"):
        path = parse_path(a.path_opt or a.path or "")
        cmd = {"policy": PolicyInfoQuery, "remove-policy": PolicyRemove,
               "inactive-consoles": ConsoleListInactive}[c]()  # fmt: skip
        return Plan(Name.of_path(path), cmd)
    if c == "add-policy":
        policy = policy_from_args(a)
        try:
            usable(policy)
        except PolicyError as exc:
            raise CliError(str(exc)) from None
        return Plan(Name.of_path(parse_path(a.path)), PolicyAdd(policy))
    if c in ("stats-add", "stats-remove"):
        name = parse_name_or_path(a.name_opt)
        if c == "stats-remove":
            return Plan(name, StatsRemove())
        bridges = tuple(parse_stats_bridge(b) for b in a.bridge or ())
        return Plan(name, StatsAdd(a.vmmdev, a.pid, bridges))
    name = parse_name(a.name)
    if c == "destroy":
        return Plan(name, UnikernelDestroy())
    if c == "restart":
        args = arguments_from_args(a) if a.replace_arguments else None
        return Plan(name, UnikernelRestart(args))
    if c == "get":
        return Plan(
            name,
            UnikernelGet(_level_of(a, remote)),
            on_wire=image_sink(_out_file(a, name), name, printer),
        )
    if c == "console":
        if a.since is not None:
            return Plan(name, ConsoleSubscribe(since=_parse_time(a.since)))
        return Plan(name, ConsoleSubscribe(count=a.count))
    if c == "create-block":
        plan = Plan(name, BlockAdd(a.size))
        if a.data:
            plan.extra.append(_block_set_plan(name, a.data, _level_of(a, remote), a.size))
        return plan
    if c == "set-block":
        return _block_set_plan(name, a.file, _level_of(a, remote), None)
    if c == "dump-block":
        dump = BlockDump(_level_of(a, remote))
        return Plan(name, dump, on_wire=dump_sink(_out_file(a, name), name, printer))
    if c == "destroy-block":
        return Plan(name, BlockRemove())
    raise CliError(f"unknown command {c}")  # pragma: no cover


def _parse_time(s: str) -> datetime:
    try:
        t = datetime.fromisoformat(s)
    except ValueError:
        raise CliError(f"--since {s!r} is not an RFC 3339 time or a date") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


# -- running ----------------------------------------------------------------------


def _printing(plan: Plan, printer: Printer, quiet: bool) -> Callable[[Wire], None]:
    def on_wire(wire: Wire) -> None:
        if plan.on_wire is not None and plan.on_wire(wire):
            return
        if quiet and not printer.json_mode and not isinstance(wire.payload, Failure):
            return
        printer.wire(wire)

    return on_wire


async def _follow(run: Callable[[], object], shape: Shape) -> Exit:
    """Run a conversation; a subscription ends cleanly on SIGINT/SIGTERM (exit 0).

    How the conversation ends (:class:`ConversationEnded`) leaves the nursery
    as itself, not wrapped in an exception group.
    """
    if shape is not Shape.READ or threading.current_thread() is not threading.main_thread():
        return await run()  # type: ignore[no-any-return, misc]
    result: list[Exit] = [Exit.SUCCESS]
    ended: list[ConversationEnded] = []
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def conversation() -> None:
                try:
                    result[0] = await run()  # type: ignore[misc]
                except ConversationEnded as exc:
                    ended.append(exc)
                nursery.cancel_scope.cancel()

            async def watch() -> None:
                async for _ in signals:
                    nursery.cancel_scope.cancel()  # detach: just close the socket
                    return

            nursery.start_soon(conversation)
            nursery.start_soon(watch)
    if ended:
        raise ended[0]
    return result[0]


async def _local(plan: Plan, a: argparse.Namespace, printer: Printer) -> Exit:
    service, shape = endpoint(plan.command)
    path = a.socket or socket_path(a.tmpdir, service)
    try:
        stream = await connect_unix(path)
    except OSError as exc:
        tmpdir = None if a.socket else a.tmpdir
        message = connect_failed(path, service, exc, tmpdir)
        raise ConversationEnded(Exit.CONNECT_FAILED, message) from None
    conn = FramedStream(stream)
    wire = Wire(Header(name=plan.name), plan.command)
    upload = plan.upload() if plan.upload else None
    try:
        return await _follow(
            lambda: converse(conn, wire, shape, _printing(plan, printer, a.quiet), upload), shape
        )
    except SubscriptionClosed:
        message = subscription_closed(service, str(plan.name))
        raise ConversationEnded(Exit.COMMUNICATION_FAILED, message) from None
    finally:
        await trio.aclose_forcefully(stream)


def _remote_chain(a: argparse.Namespace, plan: Plan) -> tuple[list[object], object]:
    try:
        ca_chain = certs.load_chain(a.ca)
        ca_key = certs.load_key(a.ca_key)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot load --ca {a.ca} / --ca-key {a.ca_key}: {exc}") from None
    if not ca_chain:
        raise CliError(f"{a.ca} holds no certificate")
    try:
        leaf, key = certs.sign_leaf_on_the_fly(ca_chain[0], ca_key, plan.name, plan.command,
                                               a.key_type)  # fmt: skip
    except (certs.CertError, PolicyError) as exc:
        raise CliError(str(exc)) from None
    return [leaf, *ca_chain], key


async def _remote(plan: Plan, a: argparse.Namespace, printer: Printer,
                  chain: list[object], key: object) -> Exit:  # fmt: skip
    host, port = parse_destination(a.destination)
    try:
        anchors = certs.load_chain(a.server_ca)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot load --server-ca {a.server_ca}: {exc}") from None
    try:
        validate_chain(chain, anchors)  # type: ignore[arg-type]
    except ChainCheckError as exc:
        raise ConversationEnded(Exit.CHAIN_FAILURE, f"chain failure: {exc}") from None
    ctx = client_context(chain, key, a.server_ca)  # type: ignore[arg-type]
    _, shape = endpoint(plan.command)
    upload = plan.upload() if plan.upload else None
    if plan.stream_image is not None:
        upload = Upload(bytes_chunks(plan.stream_image), len(plan.stream_image), "uploading image")
    on_wire = _printing(plan, printer, a.quiet)
    try:
        return await _follow(lambda: run_remote(host, port, ctx, shape, on_wire, upload), shape)
    except SubscriptionClosed:
        message = subscription_closed(None, str(plan.name))
        raise ConversationEnded(Exit.COMMUNICATION_FAILED, message) from None


def _csr(plan: Plan, a: argparse.Namespace, printer: Printer) -> Exit:
    try:
        cn = certs.leaf_common_name(plan.name, plan.command)
        csr, key = certs.make_csr(cn, plan.command, a.key_type)
        certs.write_key(f"{cn}.key", key)
    except (certs.CertError, FileExistsError) as exc:
        raise CliError(str(exc)) from None
    certs.write_csr(f"{cn}.req", csr)
    printer.result(f"wrote {cn}.key and {cn}.req", {"key": f"{cn}.key", "csr": f"{cn}.req"})
    return Exit.SUCCESS


def _certificate(a: argparse.Namespace, printer: Printer) -> Exit:
    if not a.destination:
        raise CliError("certificate needs -d/--destination")
    try:
        chain = certs.load_chain(a.cert)
        key = certs.load_key(a.key)
        found = command_of_certificate(chain[0]) if chain else None
    except (OSError, ValueError, WireError) as exc:
        raise CliError(f"cannot load {a.cert} / {a.key}: {exc}") from None
    if found is None:
        raise CliError(f"{a.cert}: the first certificate carries no albatross command")
    plan = Plan(Name(), found[1])
    return trio.run(_remote, plan, a, printer, chain, key)


def _network(a: argparse.Namespace, printer: Printer) -> Exit:
    chosen = [x for x in (a.socket is not None, a.destination is not None, a.csr) if x]
    if len(chosen) > 1:
        raise CliError("The options --csr, --destination, and --socket are mutually exclusive")
    remote = a.destination is not None or a.csr
    if a.cmd == "update":
        return _update(a, printer, remote)
    plan = build_plan(a, printer, remote)
    if a.socket == "-":
        print(encode_wire(Wire(Header(name=plan.name), plan.command)).hex(), flush=True)
        return Exit.COMMUNICATION_FAILED
    if a.csr:
        return _csr(plan, a, printer)
    for step in (plan, *plan.extra):
        code = _converse(step, a, printer)
        if code != Exit.SUCCESS:
            return code
    return Exit.SUCCESS


def _converse(plan: Plan, a: argparse.Namespace, printer: Printer) -> Exit:
    """One conversation with the chosen destination (``-d -``: print the chain)."""
    if a.destination is None:
        return trio.run(_local, plan, a, printer)
    chain, key = _remote_chain(a, plan)
    if a.destination == "-":
        sys.stdout.write(certs.certs_to_pem(chain).decode())  # type: ignore[arg-type]
        return Exit.SUCCESS
    return trio.run(_remote, plan, a, printer, chain, key)


def _update(a: argparse.Namespace, printer: Printer, remote: bool) -> Exit:
    """``info``, the builds server, then ``force-create`` (:mod:`.update`)."""
    if a.csr:
        raise CliError("update with --csr is not supported (it needs two conversations)")
    host = update.parse_http_host(a.http_host)
    name = parse_name(a.name)
    sink = update.InfoSink()
    info = Plan(name, UnikernelInfoQuery(), on_wire=sink)
    if a.socket == "-":
        print(encode_wire(Wire(Header(name=name), info.command)).hex(), flush=True)
        return Exit.COMMUNICATION_FAILED
    code = _converse(info, a, printer)
    if code != Exit.SUCCESS or a.destination == "-":
        return code
    try:
        config = update.prepare(host, name, sink, a.dryrun, _level_of(a, remote), printer)
    except update.UpdateError as exc:
        printer.error(str(exc))
        return exc.code
    if config is None:
        return Exit.SUCCESS
    return _converse(_create_plan(name, config, True, remote), a, printer)


LOCAL_COMMANDS = {"inspect-dump", "extract-dump", "sign", "generate", "revoke"}


def _innermost(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def main(argv: Sequence[str] | None = None, prog: str = "albatross-client") -> int:
    parser = build_parser(prog)
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:  # as albatross: a bare call shows the help
        return print_help(parser, None)
    try:
        a = parser.parse_args(args)
    except SystemExit as exc:
        return Exit.SUCCESS if exc.code == 0 else Exit.CLI_ERROR
    if a.cmd == "help":
        return print_help(parser, a.topic)
    printer = Printer(json_mode=a.json, verbose=a.verbose > 0)
    try:
        if a.cmd in LOCAL_COMMANDS:
            return int(local_ops.run(a, printer))
        if a.cmd == "certificate":
            return int(_certificate(a, printer))
        return int(_network(a, printer))
    except CliError as exc:
        printer.error(str(exc))
        return Exit.CLI_ERROR
    except ConversationEnded as exc:
        printer.error(str(exc))
        return int(exc.code)
    except KeyboardInterrupt:  # Ctrl-C outside a subscription: interrupted, as a shell says
        return 130
    except Exception as exc:  # an internal error: say what, exit 125
        inner = _innermost(exc)
        if isinstance(inner, ConversationEnded | CliError):
            printer.error(str(inner))
            return int(inner.code) if isinstance(inner, ConversationEnded) else Exit.CLI_ERROR
        printer.error(f"internal error: {type(inner).__name__}: {inner}")
        return Exit.INTERNAL_ERROR


def vmmc_main(argv: Sequence[str] | None = None) -> int:
    """The pre-1.0 name; same subcommands (``remove`` = destroy, ``add_policy`` …)."""
    return main(argv, prog="vmmc")


def _entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    _entry()
