"""The core against albatross 2.7.2's own test suite: names.json, trie.json, resources.json."""

from __future__ import annotations

from typing import Any

import pytest

from albatross_py.core.policy import PolicyError
from albatross_py.core.resources import (
    DuplicateUnikernelError,
    Resources,
    RunningUnikernel,
)
from albatross_py.core.trie import Trie
from albatross_py.wire import names
from albatross_py.wire.jsonview import config_of_json, policy_of_json
from albatross_py.wire.names import ROOT, Name, path_of_string
from tests.vectors import VECTORS, load_json

# ---------------------------------------------------------------------------
# names.json


def test_names_parse() -> None:
    cases = load_json("names.json")["parse"]
    assert len(cases) == 4
    for case in cases:
        n = Name.of_string(case["input"])
        assert list(n.path) == case["path"], case["test"]
        assert n.label == case["label"], case["test"]
        assert str(n) == case["canonical"], case["test"]
        if "path_parent" in case:
            assert list(n.path[:-1]) == case["path_parent"]


def test_names_path_append() -> None:
    for case in load_json("names.json")["path_append"]:
        assert list(names.append(tuple(case["path"]), case["label"])) == case["result"]


def test_names_drop_prefix_and_path() -> None:
    data = load_json("names.json")
    for case in data["drop_prefix"]:
        got = Name.of_string(case["name"]).drop_prefix(tuple(case["prefix"]))
        assert str(got) == case["result"]
    for case in data["drop_path"]:
        assert str(Name.of_string(case["name"]).drop_path()) == case["result"]


def test_names_notes() -> None:
    # The notes of names.json: "foo" is ":foo"; dots belong to labels; "foo:foo" is foo under foo.
    assert Name.of_string("foo") == Name.of_string(":foo") == Name((), "foo")
    assert Name.of_string("foo.bar") == Name((), "foo.bar")
    assert Name.of_string("foo:foo") == Name(("foo",), "foo")


# ---------------------------------------------------------------------------
# trie.json


def _entries(items: list[tuple[Name, int]]) -> list[dict[str, Any]]:
    return [{"name": str(n), "value": v} for n, v in items]


def _trie_cases() -> list[dict[str, Any]]:
    if not VECTORS.is_dir():
        return []
    return load_json("trie.json")["cases"]


def test_trie_vectors_present() -> None:
    assert [c["test"] for c in load_json("trie.json")["cases"]] == [
        "empty trie is empty",
        "trie with one element works",
        "flat trie with multiple elements work",
        "nested trie work",
        "nested trie work 2",
        "collect nested",
    ]


@pytest.mark.parametrize("case", _trie_cases(), ids=lambda c: c["test"])
def test_trie_case(case: dict[str, Any]) -> None:
    trie: Trie[int] = Trie()
    for entry in case["insert"]:
        assert trie.insert(Name.of_string(entry["name"]), entry["value"]) is None
    assert _entries(trie.all()) == case["all"]
    assert len(trie) == len(case["all"])
    for name, value in case.get("find", {}).items():
        assert trie.find(Name.of_string(name)) == value, name
    empty: Trie[int] = Trie()
    for name, value in case.get("find_in_empty", {}).items():
        assert empty.find(Name.of_string(name)) == value
    if "fold_root" in case:
        assert _entries(list(trie.fold(ROOT))) == case["fold_root"]
    if "fold_alpha" in case:
        assert _entries(list(trie.fold(("alpha",)))) == case["fold_alpha"]
    for name, expected in case.get("collect", {}).items():
        assert _entries(trie.collect(Name.of_string(name))) == expected


# ---------------------------------------------------------------------------
# resources.json
#
# Our Resources is deliberately stricter than albatross 2.7.2: every ancestor's
# policy, the root policy included, bounds the whole subtree (see the comment at
# the top of albatross_py/core/resources.py).  Checks whose outcome differs from
# albatross because of that are listed here as (case name, check index) and we
# assert OUR outcome (the opposite of the vector's) for them.  The parametrized
# test fails both when a listed check does not differ and when an unlisted one
# does, so this set cannot silently grow or go stale.
#
# It is empty: albatross's "Resources" suite never runs a unikernel below
# another policy-carrying path, never inserts a policy below an existing root
# policy, and never relies on two siblings exceeding their parent, so none of
# its outcomes change under the stricter rule.  Where the rule does bite is
# covered in tests/unit/test_core_resources.py.
STRICTER_DIFFERS: frozenset[tuple[str, int]] = frozenset()


def _resources_cases() -> list[dict[str, Any]]:
    if not VECTORS.is_dir():
        return []
    return load_json("resources.json")["cases"]


def _name(s: str) -> Name:
    return Name.of_string(s)


def _apply(res: Resources[RunningUnikernel], op: dict[str, Any]) -> str:
    """Run one vector operation; return "ok", "error" or "exception"."""
    kind = op["op"]
    if kind == "sequence":
        for i, step in enumerate(op["steps"]):
            got = _apply_checked(res, step)
            assert got == step["expect"], f"step {i} ({step['op']})"
        return "ok"
    try:
        if kind == "insert_policy":
            res.insert_policy(path_of_string(op["path"]), policy_of_json(op["policy"]))
        elif kind == "remove_policy":
            res.remove_policy(path_of_string(op["path"]))
        elif kind == "check_unikernel":
            res.check_create(_name(op["name"]), config_of_json(op["config"]))
        elif kind == "insert_unikernel":
            vm = RunningUnikernel(config_of_json(op["config"]))
            res.insert_unikernel(_name(op["name"]), vm)
        elif kind == "remove_unikernel":
            res.remove_unikernel(_name(op["name"]))
        elif kind == "check_block":
            res.check_block(_name(op["name"]), op["size"])
        elif kind == "insert_block":
            res.add_block(_name(op["name"]), op["size"])
        elif kind == "remove_block":
            res.remove_block(_name(op["name"]))
        else:  # pragma: no cover - a new vector operation
            raise AssertionError(f"unknown vector operation {kind}")
    except PolicyError:
        return "error"
    except DuplicateUnikernelError:
        return "exception"
    return "ok"


def _apply_checked(res: Resources[RunningUnikernel], op: dict[str, Any]) -> str:
    """:func:`_apply`, asserting that a refused operation changed nothing."""
    before = res.snapshot()
    got = _apply(res, op)
    if got != "ok" or op["op"].startswith("check_"):
        assert res.snapshot() == before, f"{op['op']} changed the map although it {got}"
    return got


def _setup(case: dict[str, Any]) -> Resources[RunningUnikernel]:
    res: Resources[RunningUnikernel] = Resources()
    for op in case["setup"]:
        assert _apply(res, op) == "ok", op
    return res


def test_resources_vectors_present() -> None:
    cases = load_json("resources.json")["cases"]
    assert len(cases) == 12
    checks = {(c["test"], i) for c in cases for i in range(len(c["checks"]))}
    assert len(checks) == 42
    assert checks >= STRICTER_DIFFERS


@pytest.mark.parametrize("case", _resources_cases(), ids=lambda c: c["test"])
def test_resources_case(case: dict[str, Any]) -> None:
    for i, check in enumerate(case["checks"]):
        res = _setup(case)  # every check starts from the setup state
        expected = check["expect"]
        if (case["test"], i) in STRICTER_DIFFERS:
            expected = "error" if expected == "ok" else "ok"
        assert _apply_checked(res, check) == expected, f"check {i}: {check['op']}"
