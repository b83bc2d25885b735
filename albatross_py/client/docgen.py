"""Bash completion and man pages, generated from the programs' argument parsers.

Nothing here is kept by hand: ``albatross-client``'s completion and every
program's man page are written from the same ``argparse`` parsers that parse
the command lines, so a new option appears in ``--help``, the completion and
the man page at once.  The generated files live in the repository
(``packaging/completion/``, ``packaging/man/``) so that the Debian package
build needs nothing but the tree, and ``tests/unit/test_docgen.py`` fails
when they are not what the parsers give now::

    python -m albatross_py.client.docgen write     # regenerate them
    python -m albatross_py.client.docgen check     # exit 1 if one is stale

Why our own generator rather than shtab or argparse-manpage: both would be
new dependencies for two small text files; neither knows albatross-client's
shared option groups (destination, certificates, output), which we print once
in the man page instead of 27 times; and we want the completion to offer file
names exactly for the arguments that are files (:data:`FILE_DESTS`).

The daemons build their parser inside their ``parse_args`` function;
:func:`captured_parser` calls that function with ``parse_args`` of argparse
replaced by one that hands the parser back, so their modules stay as they are.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from albatross_py import __version__
from albatross_py.client.config_args import Exit
from albatross_py.client.parser import build_parser
from albatross_py.defaults import DEFAULT_TMPDIR
from albatross_py.transport import socket_path

REPO = Path(__file__).resolve().parents[2]
COMPLETION = REPO / "packaging" / "completion" / "albatross-client.bash"
MAN_DIR = REPO / "packaging" / "man"

#: Arguments (by ``dest``) whose values are files, or directories.
FILE_DESTS = frozenset({
    "socket", "ca", "ca_key", "server_ca", "output", "data", "crl", "image", "file",
    "cert", "key", "cacert", "csr", "db",
})  # fmt: skip
DIR_DESTS = frozenset({"tmpdir", "dbdir"})

#: program -> (man section, where its parser comes from)
PROGRAMS = {
    "albatross-client": (1, "albatross_py.client.parser:build_parser"),
    "albatross-wire": (1, "albatross_py.wire.tool:main"),
    "albatrossd": (8, "albatross_py.daemons.vmmd:parse_args"),
    "albatross-console": (8, "albatross_py.daemons.console:parse_args"),
    "albatross-log": (8, "albatross_py.daemons.events:parse_args"),
    "albatross-stats": (8, "albatross_py.daemons.stats:parse_args"),
    "albatross-tls-endpoint": (8, "albatross_py.daemons.tls_endpoint:parse_args"),
    "albatross-influx": (8, "albatross_py.daemons.metrics:parse_influx_args"),
    "albatross-prometheus": (8, "albatross_py.daemons.metrics:parse_prometheus_args"),
}

#: What each exit code of albatross-client means (spec 7.5).
EXIT_MEANINGS = {
    Exit.SUCCESS: "success (also for --help, help, --version)",
    Exit.CHAIN_FAILURE: "your certificate chain does not lead to --server-ca",
    Exit.REMOTE_COMMAND_FAILED: "the daemon refused or failed the command",
    Exit.HTTP_FAILURE: "update: an HTTP request to the builds server failed",
    Exit.LOCAL_AUTHENTICATION_FAILED: "the server rejected our certificate",
    Exit.REMOTE_AUTHENTICATION_FAILED: "the server's certificate is not trusted",
    Exit.COMMUNICATION_FAILED: "the connection failed or ended early (a dropped console)",
    Exit.CONNECT_FAILED: "cannot connect to the socket or the endpoint",
    Exit.CLI_ERROR: "invalid command line or local files",
    Exit.INTERNAL_ERROR: "internal error (update: the new image's manifest does not fit)",
}

#: The daemons' sockets the client talks to (under --tmpdir), and who listens.
SOCKETS = {
    "vmmd": "albatrossd: unikernels, policies, block devices",
    "console": "albatross-console: console, inactive-consoles",
    "stats": "albatross-stats: stats, stats-add, stats-remove",
    "log": "albatross-log: log",
}

#: Option groups every network subcommand shares: the man page lists them once.
SHARED_GROUPS = ("output", "destination (choose one)", "certificates (remote, --csr)")


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__(parser.prog)
        self.parser = parser


def captured_parser(target: str) -> argparse.ArgumentParser:
    """The parser ``module:function`` builds (a builder, or a function that parses)."""
    module, function = target.split(":")
    made = getattr(importlib.import_module(module), function)
    if function == "build_parser":
        return made()  # type: ignore[no-any-return]

    def grab(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        raise _Captured(self)

    original = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_args = grab  # type: ignore[method-assign, assignment]
    try:
        made([])
    except _Captured as got:
        return got.parser
    finally:
        argparse.ArgumentParser.parse_args = original  # type: ignore[method-assign]
    raise RuntimeError(f"{target} parsed no command line")


# -- walking a parser -----------------------------------------------------------------


def subcommands(
    parser: argparse.ArgumentParser,
) -> list[tuple[str, list[str], str, argparse.ArgumentParser]]:
    """(name, aliases, help, parser) of each subcommand, in the parser's order."""
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    if sub is None:
        return []
    out = []
    for choice in sub._choices_actions:
        name = choice.dest
        aliases = [n for n, p in sub.choices.items() if p is sub.choices[name] and n != name]
        out.append((name, aliases, choice.help or "", sub.choices[name]))
    return out


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)
    ]


def positionals(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions
            if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]  # fmt: skip


def takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


def values_of(action: argparse.Action) -> str:
    """What completes an option's value: ``@file``, ``@dir``, words, or ``""`` (anything)."""
    if action.choices is not None:
        return " ".join(str(c) for c in action.choices)
    if action.dest in FILE_DESTS:
        return "@file"
    if action.dest in DIR_DESTS:
        return "@dir"
    return ""


# -- bash completion ------------------------------------------------------------------


def bash_completion() -> str:
    parser = build_parser()
    commands = subcommands(parser)
    names = [n for name, aliases, _, _ in commands for n in (name, *aliases)]
    value_words: dict[str, str] = {}
    for _, _, _, p in commands:
        for action in options(p):
            if not takes_value(action):
                continue
            for opt in action.option_strings:
                words = values_of(action)
                if value_words.setdefault(opt, words) != words:
                    raise ValueError(f"{opt} completes differently in two subcommands")
    lines = [
        f"# bash completion for albatross-client and vmmc (albatross-py {__version__})",
        "# Installed as /usr/share/bash-completion/completions/albatross-client (and vmmc).",
        "# Generated from the argument parser: python -m albatross_py.client.docgen write",
        "# (do not edit; tests/unit/test_docgen.py checks that it is current).",
        "",
        "_albatross_client() {",
        "  local cur prev words cword",
        "  if declare -F _init_completion >/dev/null; then",
        "    _init_completion -n : || return",
        "  else",
        "    cur=${COMP_WORDS[COMP_CWORD]}",
        "    prev=${COMP_WORDS[COMP_CWORD-1]}",
        '    words=("${COMP_WORDS[@]}")',
        "    cword=$COMP_CWORD",
        "  fi",
        f'  local commands="{" ".join(names)}"',
        "  # the subcommand is the first word that is not an option",
        '  local i sub=""',
        "  for ((i = 1; i < cword; i++)); do",
        "    case ${words[i]} in -*) ;; *) sub=${words[i]}; break ;; esac",
        "  done",
        '  if [ -z "$sub" ]; then',
        "    if [[ $cur == -* ]]; then",
        '      COMPREPLY=($(compgen -W "-h --help --version" -- "$cur"))',
        "    else",
        '      COMPREPLY=($(compgen -W "$commands" -- "$cur"))',
        "    fi",
        "    return",
        "  fi",
        '  local opts="" valued="" files=""',
        "  case $sub in",
    ]
    for name, aliases, _, p in commands:
        opts = " ".join(["-h", "--help", *(o for a in options(p) for o in a.option_strings)])
        valued = " ".join(o for a in options(p) if takes_value(a) for o in a.option_strings)
        files = any(a.dest in FILE_DESTS for a in positionals(p))
        pattern = "|".join((name, *aliases))
        lines.append(f'    {pattern}) opts="{opts}"')
        lines.append(f'      valued="{valued}"{" files=1" if files else ""} ;;')
    lines += ["  esac", "  case $prev in"]
    by_words: dict[str, list[str]] = {}
    for opt, words in sorted(value_words.items()):
        by_words.setdefault(words, []).append(opt)
    for words, opts in sorted(by_words.items()):
        if words == "@file":
            reply = 'COMPREPLY=($(compgen -f -- "$cur"))'
        elif words == "@dir":
            reply = 'COMPREPLY=($(compgen -d -- "$cur"))'
        elif words:
            reply = f'COMPREPLY=($(compgen -W "{words}" -- "$cur"))'
        else:
            reply = "COMPREPLY=()"
        lines.append(f"    {'|'.join(opts)})")
        lines.append(f'      [[ " $valued " == *" $prev "* ]] && {{ {reply}; return; }} ;;')
    lines += [
        "  esac",
        "  if [[ $cur == -* ]]; then",
        '    COMPREPLY=($(compgen -W "$opts" -- "$cur"))',
        '  elif [ "$sub" = help ]; then',
        '    COMPREPLY=($(compgen -W "$commands" -- "$cur"))',
        '  elif [ -n "$files" ]; then',
        '    COMPREPLY=($(compgen -f -- "$cur"))',
        "  fi",
        "}",
        "",
        "complete -F _albatross_client albatross-client vmmc",
        "",
    ]
    return "\n".join(lines)


# -- man pages ------------------------------------------------------------------------


def _roff(text: str) -> str:
    """Text for a roff line: backslashes and hyphens escaped, no leading control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in (".", "'") else text


def _metavar(action: argparse.Action) -> str:
    if action.metavar is not None:
        return (
            str(action.metavar)
            if not isinstance(action.metavar, tuple)
            else " ".join(action.metavar)
        )
    if action.choices is not None:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    return action.dest.upper()


def _help_text(action: argparse.Action, parser: argparse.ArgumentParser) -> str:
    text = action.help or ""
    if "%(" in text:
        params = dict(vars(action), prog=parser.prog)
        params = {k: (getattr(v, "__name__", v)) for k, v in params.items()}
        text = text % params
    shown = action.default not in (None, False, 0, "", argparse.SUPPRESS, [])
    if shown and "default" not in text and takes_value(action) and action.option_strings:
        text = f"{text} (default {action.default})".strip()
    return text


def _option_items(actions: list[argparse.Action], parser: argparse.ArgumentParser) -> Iterator[str]:
    for action in actions:
        if action.option_strings:
            head = ", ".join(f"\\fB{_roff(o)}\\fR" for o in action.option_strings)
            if takes_value(action):
                head += f" \\fI{_roff(_metavar(action))}\\fR"
        elif not action.help:
            continue  # the synopsis names it; nothing more to say
        else:
            head = f"\\fI{_roff(_metavar(action) if action.metavar else action.dest.upper())}\\fR"
        yield ".TP"
        yield head
        yield _roff(_help_text(action, parser) or "(no description)")


def _usage_words(parser: argparse.ArgumentParser) -> str:
    """The positional arguments, as the synopsis shows them (options are listed below)."""
    words = []
    for action in positionals(parser):
        name = _metavar(action) if action.metavar else action.dest.upper()
        words.append(f"[{name}]" if action.nargs in ("?", "*") else name)
        if action.nargs in ("+", "*"):
            words[-1] += "..."
    return " ".join(words)


@dataclass
class ManPage:
    program: str
    section: int
    parser: argparse.ArgumentParser

    def render(self) -> str:
        p = self.parser
        title = self.program.upper()
        out = [
            f'.TH "{title}" "{self.section}" "" "albatross-py {__version__}" '
            f'"{"User Commands" if self.section == 1 else "System Administration"}"',
            '.\\" Generated from the argument parser: python -m albatross_py.client.docgen write',
            ".SH NAME",
            f"{_roff(self.program)} \\- {_roff((p.description or '').rstrip('.'))}",
            ".SH SYNOPSIS",
        ]
        commands = subcommands(p)
        if commands:
            out += [
                f".B {_roff(self.program)}",
                "\\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIARGUMENTS\\fR]",
            ]
        else:
            out += [f".B {_roff(self.program)}", f"[\\fIOPTIONS\\fR] {_roff(_usage_words(p))}"]
        out += [".SH DESCRIPTION", _roff(p.description or "")]
        if p.epilog:
            out += [".PP", _roff(p.epilog)]
        if commands:
            out += self._commands(commands)
            out += [".SH OPTIONS", *_option_items(options(p), p)]
            out += [".SH EXIT STATUS"]
            for code, meaning in EXIT_MEANINGS.items():
                out += [".TP", f"\\fB{int(code)}\\fR", _roff(meaning)]
            out += [".SH FILES"]
            for service, what in SOCKETS.items():
                path = socket_path(DEFAULT_TMPDIR, service)
                out += [".TP", f"\\fI{_roff(str(path))}\\fR", _roff(what)]
        else:
            out += [".SH OPTIONS", *_option_items(positionals(p) + options(p), p)]
        see = sorted(
            f"\\fB{_roff(n)}\\fR({s})" for n, (s, _) in PROGRAMS.items() if n != self.program
        )
        out += [".SH SEE ALSO", ",\n".join(see)]
        return "\n".join(out) + "\n"

    def _commands(
        self, commands: list[tuple[str, list[str], str, argparse.ArgumentParser]]
    ) -> list[str]:
        out = [".SH COMMANDS"]
        shared: dict[str, list[argparse.Action]] = {}
        for name, aliases, help_, p in commands:
            groups = {g.title: g._group_actions for g in p._action_groups}
            for title in SHARED_GROUPS:
                if title in groups:
                    shared.setdefault(title, groups[title])
            own = [
                a for g in p._action_groups if g.title not in SHARED_GROUPS
                for a in g._group_actions if not isinstance(a, argparse._HelpAction)
            ]  # fmt: skip
            usage = " ".join(filter(None, (name, _usage_words(p))))
            out += [f'.SS "{_roff(usage)}"', _roff(help_ + ".")]
            if aliases:
                out += [".br", _roff(f"Also: {', '.join(aliases)}.")]
            if any(title in groups for title in SHARED_GROUPS):
                used = [t for t in SHARED_GROUPS if t in groups]
                out += [".br", _roff(f"Takes the common options: {'; '.join(used)}.")]
            out += list(_option_items(own, p))
        out += [".SH COMMON OPTIONS"]
        for title in SHARED_GROUPS:
            if title in shared:
                out += [f'.SS "{_roff(title)}"', *_option_items(shared[title], commands[0][3])]
        return out


def man_page(program: str) -> str:
    section, target = PROGRAMS[program]
    parser = captured_parser(target)
    parser.prog = program
    return ManPage(program, section, parser).render()


# -- the files ------------------------------------------------------------------------


def generated() -> dict[Path, str]:
    """Every generated file and what it should hold now."""
    files = {COMPLETION: bash_completion()}
    for program, (section, _) in PROGRAMS.items():
        files[MAN_DIR / f"{program}.{section}"] = man_page(program)
    return files


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in (["write"], ["check"]):
        print("usage: python -m albatross_py.client.docgen write|check", file=sys.stderr)
        return 2
    stale = []
    for path, text in generated().items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if args == ["write"]:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    for path in stale:
        verb = "wrote" if args == ["write"] else "stale:"
        print(f"{verb} {path.relative_to(REPO)}")
    if stale and args == ["check"]:
        print("regenerate with: python -m albatross_py.client.docgen write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
