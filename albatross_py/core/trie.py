"""A trie keyed by label tuples: albatross's ``Vmm_trie``.

Each node holds at most one entry.  A path (``"a:b:"``) and a name with the
same labels (``"a:b"``, the label ``b`` under path ``a``) share one node, as in
albatross; the entry keeps the :class:`~albatross_py.wire.names.Name` it was
inserted under, so listings give back ``"a:b:"`` or ``"a:b"`` as inserted.

Orders (checked against ``vectors/albatross-2.7.2/trie.json``):

* :meth:`Trie.all`: pre-order, a node before its children, children by label
  in byte order (the order of state dumps and policy lists);
* :meth:`Trie.fold`: albatross's ``Vmm_trie.fold`` call order, children by
  label first (recursively), then the node itself (post-order); names are
  relative to the queried path and the queried node itself shows up as ``":"``.
  albatross builds its replies by consing in this order, so a reply lists the
  reverse (see :meth:`Trie.fold_reply`);
* :meth:`Trie.collect`: the entry and its ancestors that carry a value,
  deepest first, with absolute names.

Lookups cost O(depth); subtree iteration costs O(depth + size of the subtree).
The trie is mutable (albatross's is persistent); copy with :meth:`Trie.copy`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from albatross_py.wire.names import ROOT, Name, Path

V = TypeVar("V")
W = TypeVar("W")


class _Node(Generic[V]):
    __slots__ = ("children", "entry")

    def __init__(self) -> None:
        self.entry: tuple[Name, V] | None = None
        self.children: dict[str, _Node[V]] = {}


def _sorted_children(node: _Node[V]) -> list[tuple[str, _Node[V]]]:
    # Labels are ASCII ([a-z0-9.-]); for str, code point order is UTF-8 byte order anyway.
    return sorted(node.children.items())


def _relative(name: Name, depth: int) -> Name:
    """``name`` with the first ``depth`` labels of its node key dropped."""
    rest = name.labels()[depth:]
    if not rest:
        return Name(ROOT, None)
    if name.is_path:
        return Name(rest, None)
    return Name(rest[:-1], rest[-1])


class Trie(Generic[V]):
    """A mutable map from names to values, one value per label tuple."""

    __slots__ = ("_root", "_size")

    def __init__(self) -> None:
        self._root: _Node[V] = _Node()
        self._size = 0

    # -- basic map operations ---------------------------------------------
    def __len__(self) -> int:
        return self._size

    def _node(self, labels: Path) -> _Node[V] | None:
        node = self._root
        for label in labels:
            nxt = node.children.get(label)
            if nxt is None:
                return None
            node = nxt
        return node

    def insert(self, name: Name, value: V) -> V | None:
        """Store ``value`` under ``name``; return the value it replaces, if any."""
        node = self._root
        for label in name.labels():
            nxt = node.children.get(label)
            if nxt is None:
                nxt = node.children[label] = _Node()
            node = nxt
        old = node.entry
        node.entry = (name, value)
        if old is None:
            self._size += 1
            return None
        return old[1]

    def remove(self, name: Name) -> V | None:
        """Remove the entry at ``name``'s node; return its value (None if absent).

        Nodes left without entry and children are pruned, as albatross does.
        """
        labels = name.labels()
        trail: list[_Node[V]] = [self._root]
        for label in labels:
            nxt = trail[-1].children.get(label)
            if nxt is None:
                return None
            trail.append(nxt)
        node = trail[-1]
        if node.entry is None:
            return None
        old = node.entry[1]
        node.entry = None
        self._size -= 1
        for depth in range(len(labels), 0, -1):
            child = trail[depth]
            if child.entry is not None or child.children:
                break
            del trail[depth - 1].children[labels[depth - 1]]
        return old

    def find(self, name: Name) -> V | None:
        """The value at ``name``'s node (a path and a name share a node)."""
        node = self._node(name.labels())
        if node is None or node.entry is None:
            return None
        return node.entry[1]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, Name):
            return False
        node = self._node(name.labels())
        return node is not None and node.entry is not None

    # -- traversals -------------------------------------------------------
    def all(self) -> list[tuple[Name, V]]:
        """Every entry with its name as inserted, pre-order, children by label."""
        return list(self.iter_subtree(ROOT))

    def iter_subtree(self, path: Path) -> Iterator[tuple[Name, V]]:
        """Entries at and below ``path`` (absolute names), in :meth:`all` order."""
        start = self._node(path)
        if start is None:
            return
        stack: list[_Node[V]] = [start]
        while stack:
            node = stack.pop()
            if node.entry is not None:
                yield node.entry
            stack.extend(child for _, child in reversed(_sorted_children(node)))

    def fold(self, path: Path) -> Iterator[tuple[Name, V]]:
        """``Vmm_trie.fold path`` call order, with names relative to ``path``.

        Post-order: a node's children (by label, recursively) before the node.
        The node at ``path`` itself is reported as ``":"``.
        """
        start = self._node(path)
        if start is None:
            return
        depth = len(path)

        def explore(node: _Node[V]) -> Iterator[tuple[Name, V]]:
            for _, child in _sorted_children(node):
                yield from explore(child)
            if node.entry is not None:
                name, value = node.entry
                yield _relative(name, depth), value

        yield from explore(start)

    def fold_reply(self, path: Path) -> list[tuple[Name, V]]:
        """What albatross replies for a query on ``path``: the reverse of :meth:`fold`.

        albatross's daemon builds its reply lists with ``fun n v acc -> (n, v) :: acc``.
        """
        out = list(self.fold(path))
        out.reverse()
        return out

    def collect(self, name: Name) -> list[tuple[Name, V]]:
        """The entry at ``name`` and its ancestors that carry a value, deepest first."""
        out: list[tuple[Name, V]] = []
        node = self._root
        if node.entry is not None:
            out.append(node.entry)
        for label in name.labels():
            nxt = node.children.get(label)
            if nxt is None:
                break
            node = nxt
            if node.entry is not None:
                out.append(node.entry)
        out.reverse()
        return out

    # -- conveniences -----------------------------------------------------
    def copy(self) -> Trie[V]:
        """A structural copy (values are shared, not copied)."""
        new: Trie[V] = Trie()
        for name, value in self.all():
            new.insert(name, value)
        return new

    def map_values(self, f: Callable[[V], W]) -> Trie[W]:
        new: Trie[W] = Trie()
        for name, value in self.all():
            new.insert(name, f(value))
        return new

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Trie):
            return NotImplemented
        return self.all() == other.all()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        body = ", ".join(f"{n}: {v!r}" for n, v in self.all())
        return f"Trie({{{body}}})"
