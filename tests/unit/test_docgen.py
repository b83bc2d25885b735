"""The bash completion and the man pages match the argument parsers (docgen).

* the files in packaging/ are exactly what the parsers generate now;
* the completion, run by a real bash, offers each subcommand's own options
  (all of them, nothing else), option values (choices, files), and the
  commands after ``help``;
* every man page renders with groff without a warning, and albatross-client's
  names every subcommand and every option.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from albatross_py.client import docgen
from albatross_py.client.parser import build_parser


def test_generated_files_are_current() -> None:
    stale = [str(path) for path, text in docgen.generated().items()
             if not path.exists() or path.read_text() != text]  # fmt: skip
    assert not stale, f"stale: {stale}; run python -m albatross_py.client.docgen write"
    assert docgen.main(["check"]) == 0


def complete(*words: str, cwd: Path | None = None) -> list[str]:
    """What the completion offers for the command line ``words`` (the last one is completed)."""
    line = " ".join(f"'{w}'" for w in ("albatross-client", *words))
    script = (
        f"source {docgen.COMPLETION}\n"
        f"COMP_WORDS=({line}); COMP_CWORD={len(words)}\n"
        "_albatross_client\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    out = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], cwd=cwd,
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return [w for w in out.splitlines() if w]


def test_completion_offers_commands_options_and_values(tmp_path: Path) -> None:
    assert complete("cre") == ["create", "create-block", "create_block"]
    assert complete("he") == ["help"]
    assert complete("--v") == ["--version"]
    assert complete("help", "dump") == ["dump-block", "dump_block"]
    assert complete("create", "web", "--ty") == ["--typ"]
    assert complete("create", "web", "--typ", "") == ["solo5", "bhyve", "qemu"]
    assert complete("info", "--key-type", "ed") == ["ed25519"]
    assert complete("create", "web", "--mem", "") == []  # a number: nothing to offer
    (tmp_path / "web.hvt").write_bytes(b"")
    (tmp_path / "run").mkdir()
    assert complete("create", "web", "we", cwd=tmp_path) == ["web.hvt"]
    assert complete("info", "--socket", "we", cwd=tmp_path) == ["web.hvt"]
    assert complete("info", "--tmpdir", "", cwd=tmp_path) == ["run"]
    assert "--name" in complete("stats-remove", "--")
    assert complete("replace-policy", "--net") == ["--network"]


def test_completion_options_are_the_parsers() -> None:
    for name, aliases, _, parser in docgen.subcommands(build_parser()):
        wanted = {"-h", "--help"} | {o for a in docgen.options(parser) for o in a.option_strings}
        for word in (name, *aliases):
            offered = set(complete(word, "-"))
            assert offered == wanted, (word, offered ^ wanted)


@pytest.mark.system
def test_man_pages_render_without_warnings() -> None:
    if shutil.which("groff") is None:
        pytest.skip("groff not installed (Debian: groff-base)")
    for path in sorted(docgen.MAN_DIR.iterdir()):
        result = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(path)],
                                capture_output=True, text=True)  # fmt: skip
        assert result.returncode == 0 and result.stderr == "", (path.name, result.stderr)
    assert {p.name for p in docgen.MAN_DIR.iterdir()} == {
        f"{program}.{section}" for program, (section, _) in docgen.PROGRAMS.items()
    }


def test_client_man_page_names_every_command_and_option() -> None:
    page = (docgen.MAN_DIR / "albatross-client.1").read_text().replace("\\-", "-")
    for name, aliases, _, parser in docgen.subcommands(build_parser()):
        assert f'.SS "{name}' in page, name
        for alias in aliases:
            assert alias in page, alias
        for action in docgen.options(parser):
            for option in action.option_strings:
                assert f"\\fB{option}\\fR" in page, (name, option)
    for code in docgen.EXIT_MEANINGS:
        assert f"\\fB{int(code)}\\fR" in page
