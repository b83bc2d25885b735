"""OCaml's string escaping, which albatross's output and messages use.

``String.escaped`` (and so ``%S``): printable ASCII is kept, ``"`` and ``\\``
are backslashed, ``\\n \\t \\r \\b`` are named, every other byte is ``\\ddd``.
"""

from __future__ import annotations

_NAMED = {ord('"'): '\\"', ord("\\"): "\\\\", 10: "\\n", 9: "\\t", 13: "\\r", 8: "\\b"}


def escaped(data: bytes) -> str:
    """``String.escaped``."""
    return "".join(_NAMED.get(b) or (chr(b) if 0x20 <= b < 0x7F else f"\\{b:03d}") for b in data)


def quoted(s: str) -> str:
    """``%S``: the escaped string in double quotes."""
    return '"' + escaped(s.encode("utf-8", "surrogateescape")) + '"'
