"""The label trie: sharing of path and name nodes, orders, relative names, pruning."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from albatross_py.core.trie import Trie
from albatross_py.wire.names import ROOT, Name


def n(s: str) -> Name:
    return Name.of_string(s)


def test_insert_returns_previous_value() -> None:
    t: Trie[int] = Trie()
    assert t.insert(n(":foo"), 1) is None
    assert t.insert(n(":foo"), 2) == 1
    assert t.find(n(":foo")) == 2
    assert len(t) == 1


def test_path_and_name_share_a_node_and_keep_their_form() -> None:
    t: Trie[str] = Trie()
    t.insert(n("alpha:beta:"), "path")
    assert t.find(n("alpha:beta")) == "path"  # same labels, same node
    assert [str(k) for k, _ in t.all()] == ["alpha:beta:"]
    assert t.insert(n("alpha:beta"), "name") == "path"
    assert [str(k) for k, _ in t.all()] == ["alpha:beta"]


def test_remove_prunes_and_reports() -> None:
    t: Trie[int] = Trie()
    t.insert(n("a:b:c"), 1)
    t.insert(n("a:"), 2)
    assert t.remove(n("a:b:x")) is None
    assert t.remove(n("a:b:c")) == 1
    assert t.remove(n("a:b:c")) is None
    assert t.all() == [(n("a:"), 2)]
    assert t._root.children["a"].children == {}  # the empty b node is gone
    assert t.remove(n("a:")) == 2
    assert t._root.children == {}
    assert len(t) == 0


def test_remove_keeps_nodes_with_children() -> None:
    t: Trie[int] = Trie()
    t.insert(n("a:"), 1)
    t.insert(n("a:b"), 2)
    assert t.remove(n("a:")) == 1
    assert t.all() == [(n("a:b"), 2)]


def test_all_is_preorder_by_label_bytes() -> None:
    t: Trie[int] = Trie()
    for i, s in enumerate(["b:", "a:z", "a:", "a:b-c:", "a:b.c", ":", "a:b"]):
        t.insert(n(s), i)
    assert [str(k) for k, _ in t.all()] == [":", "a:", "a:b", "a:b-c:", "a:b.c", "a:z", "b:"]


def test_fold_is_post_order_relative_and_reply_is_reversed() -> None:
    t: Trie[int] = Trie()
    t.insert(n("a:"), 1)
    t.insert(n("a:x:"), 2)
    t.insert(n("a:x:vm"), 3)
    t.insert(n("a:y"), 4)
    t.insert(n("b:z"), 5)
    folded = [(str(k), v) for k, v in t.fold(("a",))]
    assert folded == [("x:vm", 3), ("x:", 2), (":y", 4), (":", 1)]
    assert [(str(k), v) for k, v in t.fold_reply(("a",))] == list(reversed(folded))
    assert list(t.fold(("nope",))) == []
    # a name at the queried node itself is reported as ":" too
    assert [str(k) for k, _ in t.fold(("a", "y"))] == [":"]


def test_iter_subtree_absolute_names() -> None:
    t: Trie[int] = Trie()
    t.insert(n("a:x"), 1)
    t.insert(n("a:b:y"), 2)
    t.insert(n("c:z"), 3)
    assert [str(k) for k, _ in t.iter_subtree(("a",))] == ["a:b:y", "a:x"]
    assert list(t.iter_subtree(("q",))) == []


def test_collect_deepest_first_stops_at_missing() -> None:
    t: Trie[int] = Trie()
    t.insert(n(":"), 0)
    t.insert(n("a:"), 1)
    t.insert(n("a:b:c:"), 3)
    assert [str(k) for k, _ in t.collect(n("a:b:c:d"))] == ["a:b:c:", "a:", ":"]
    assert [str(k) for k, _ in t.collect(n("x:y"))] == [":"]


def test_copy_and_equality() -> None:
    t: Trie[int] = Trie()
    t.insert(n("a:b"), 1)
    c = t.copy()
    assert c == t
    c.insert(n("a:c"), 2)
    assert c != t
    assert t.map_values(lambda v: v * 10).all() == [(n("a:b"), 10)]


labels = st.sampled_from(["a", "b", "c.d", "e-f"])
names_st = st.builds(
    lambda path, label: Name(tuple(path), label),
    st.lists(labels, max_size=3),
    st.one_of(st.none(), labels),
)


@given(st.lists(st.tuples(st.booleans(), names_st, st.integers()), max_size=30))
def test_trie_behaves_like_a_dict_keyed_by_labels(ops: list[tuple[bool, Name, int]]) -> None:
    t: Trie[int] = Trie()
    model: dict[tuple[str, ...], tuple[Name, int]] = {}
    for insert, name, value in ops:
        key = name.labels()
        if insert:
            prev = model.get(key)
            assert t.insert(name, value) == (None if prev is None else prev[1])
            model[key] = (name, value)
        else:
            prev = model.pop(key, None)
            assert t.remove(name) == (None if prev is None else prev[1])
    assert t.all() == [model[k] for k in sorted(model)]
    assert len(t) == len(model)
    assert sorted(t.fold(ROOT), key=lambda e: e[0].labels()) == [model[k] for k in sorted(model)]
