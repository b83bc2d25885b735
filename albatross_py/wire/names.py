"""Labels, paths and names: albatross's administrative namespace.

A *label* is 1-63 characters of ``[a-zA-Z0-9-.]`` that does not start with
``-``; it is normalised to lower case.  A *path* is a tuple of labels (the
root path is empty).  A *name* is a path plus an optional label: with a label
it names a unikernel or block device, without one it names the path itself.

The string form is albatross's ``Name.to_string``: the path's labels joined
with ``:``, then ``:``, then the label (or nothing).  So ``":"`` is the root,
``":foo"`` is ``foo`` at the root, ``"a:b:foo"`` is ``foo`` under ``a:b`` and
``"a:b:"`` is the path ``a:b``.  Parsing also accepts ``"foo"`` for ``":foo"``
(one leading empty element is dropped), as albatross does.

This module is pure: the wire codec uses it to validate names while decoding
(an invalid label makes the whole message invalid), the core uses it for the
policy tree, and the daemons use it before anything becomes a file path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: albatross's label limit: a DNS label's length (RFC 1035, 63 octets).
MAX_LABEL_LENGTH = 63

_LABEL_RE = re.compile(r"[a-z0-9.][a-z0-9.-]{0,62}\Z")

Path = tuple[str, ...]

ROOT: Path = ()


class NameError_(ValueError):
    """A string that is not a valid label, path or name."""


def label_of_string(s: str) -> str:
    """Validate and normalise a label; raise :class:`NameError_` if invalid."""
    low = s.lower()
    if not low:
        raise NameError_("label is empty")
    if len(low) > MAX_LABEL_LENGTH:
        raise NameError_(f"label {s!r} is longer than {MAX_LABEL_LENGTH} characters")
    if low.startswith("-"):
        raise NameError_(f"label {s!r} starts with '-'")
    if not _LABEL_RE.match(low):
        raise NameError_(f"label {s!r} contains characters outside [a-zA-Z0-9-.]")
    return low


def is_label(s: str) -> bool:
    try:
        label_of_string(s)
    except NameError_:
        return False
    return True


def path_of_labels(labels: list[str] | tuple[str, ...]) -> Path:
    return tuple(label_of_string(x) for x in labels)


def path_to_string(path: Path) -> str:
    """The path's own name string, e.g. ``"a:b:"`` (``":"`` for the root)."""
    return ":".join(path) + ":"


def path_of_string(s: str) -> Path:
    """Parse a path given as ``"a:b"``, ``"a:b:"``, ``":"`` or ``""`` (root)."""
    if s in ("", ":"):
        return ROOT
    body = s[:-1] if s.endswith(":") else s
    parts = body.split(":")
    if parts and parts[0] == "":
        parts = parts[1:]
    return path_of_labels(parts)


def is_prefix(prefix: Path, path: Path) -> bool:
    return path[: len(prefix)] == prefix


@dataclass(frozen=True, order=True, slots=True)
class Name:
    """A path with an optional label (``None`` names the path itself)."""

    path: Path = ROOT
    label: str | None = None

    # -- construction -----------------------------------------------------
    @classmethod
    def of_string(cls, s: str) -> Name:
        if s == "":
            raise NameError_("name is empty")
        if s.endswith(":"):
            return cls(path_of_string(s), None)
        parts = s.split(":")
        if parts[0] == "" and len(parts) > 1:
            parts = parts[1:]
        *path, label = parts
        return cls(path_of_labels(path), label_of_string(label))

    @classmethod
    def of_path(cls, path: Path) -> Name:
        return cls(tuple(path), None)

    @classmethod
    def make(cls, path: Path, label: str) -> Name:
        return cls(tuple(path), label_of_string(label))

    # -- views ------------------------------------------------------------
    def __str__(self) -> str:
        return ":".join(self.path) + ":" + (self.label or "")

    def to_string(self) -> str:
        return str(self)

    @property
    def is_path(self) -> bool:
        return self.label is None

    @property
    def is_root(self) -> bool:
        return self.path == ROOT and self.label is None

    def labels(self) -> Path:
        """The trie key: the path's labels, then the label if there is one.

        A path and a name with the same labels share a trie node, as in
        albatross's ``Vmm_trie``.
        """
        return self.path if self.label is None else (*self.path, self.label)

    def drop_prefix(self, prefix: Path) -> Name:
        """This name relative to ``prefix`` (which must be a prefix of its path)."""
        if not is_prefix(prefix, self.path):
            raise NameError_(f"{path_to_string(prefix)} is not a prefix of {self}")
        return Name(self.path[len(prefix) :], self.label)

    def drop_path(self) -> Name:
        return Name(ROOT, self.label)

    def under(self, prefix: Path) -> Name:
        """This (relative) name placed below ``prefix``."""
        return Name((*prefix, *self.path), self.label)

    def parent_path(self) -> Path:
        """The path a unikernel lives in; for a path, the path itself."""
        return self.path

    def file_component(self) -> str:
        """The string used in file names (``<tmpdir>/fifo/<this>``).

        Safe by construction: labels cannot hold ``/`` or be ``..`` alone
        followed by a separator, and the string always contains ``:``.
        """
        s = str(self)
        if "/" in s or "\0" in s:  # unreachable for validated names
            raise NameError_(f"name {s!r} cannot be a file name")
        return s


def append(path: Path, label: str) -> Path:
    return (*path, label_of_string(label))
