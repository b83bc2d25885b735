"""The state dump file (``<dbdir>/state``, spec 3.7): one unframed DER value.

albatrossd writes layout [6] (running unikernels' configs plus all policies)
and reads every historical layout [0]-[6].  Entries are written in trie
order (a node before its children, children by label), which for names is
the order of their label tuples.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from albatross_py.wire import der
from albatross_py.wire.der import Field, SequenceOf
from albatross_py.wire.der import Sequence_ as Seq
from albatross_py.wire.errors import WireError
from albatross_py.wire.names import Name
from albatross_py.wire.types import Policy, UnikernelConfig
from albatross_py.wire.types_grammar import (
    CONFIG,
    CONFIG_V0,
    CONFIG_V1,
    CONFIG_V2,
    CONFIG_V3,
    CONFIG_V4,
    NAME,
    POLICY,
    Rejected,
)

#: The layout albatross 2.7.2 writes, and so do we.
CURRENT_LAYOUT = 6


@dataclass(frozen=True)
class State:
    unikernels: tuple[tuple[Name, UnikernelConfig], ...] = ()
    policies: tuple[tuple[Name, Policy], ...] = ()
    layout: int = CURRENT_LAYOUT
    extra: dict[str, object] = field(default_factory=dict, compare=False)


def _entries(value: der.Schema) -> SequenceOf:
    return SequenceOf(Seq([Field("name", NAME), Field("value", value)]))


def _with_policies(value: der.Schema) -> Seq:
    return Seq([Field("unikernels", _entries(value)), Field("policies", _entries(POLICY))])


STATE = der.Choice(
    "state",
    {
        0: ("unikernel-OLD1", _entries(CONFIG_V1)),
        1: ("unikernel-OLD0", _entries(CONFIG_V0)),
        2: ("unikernel-OLD2", _entries(CONFIG_V2)),
        3: ("unikernel-OLD3", _entries(CONFIG_V3)),
        4: ("unikernel-and-policy-OLD", _with_policies(CONFIG_V3)),
        5: ("unikernel-and-policy-v4", _with_policies(CONFIG_V4)),
        6: ("unikernel-and-policy", _with_policies(CONFIG)),
        7: ("NYI", Rejected("state layout [7] is reserved and not implemented")),
    },
)
_LAYOUTS = {alt: tag for tag, (alt, _) in ((t & 0x1F, v) for t, v in STATE.by_tag.items())}


def trie_key(name: Name) -> tuple[bytes, ...]:
    return tuple(label.encode() for label in name.labels())


def read_state(data: bytes) -> State:
    """Parse a state file of any layout; raise :class:`WireError` if it is not one."""
    if not data:
        raise WireError("state file is empty")
    alt, value = der.decode(STATE, data)
    layout = _LAYOUTS[alt]
    if isinstance(value, dict):
        unikernels, policies = value["unikernels"], value["policies"]
    else:
        unikernels, policies = value, []
    return State(
        unikernels=tuple((e["name"], e["value"]) for e in unikernels),
        policies=tuple((e["name"], e["value"]) for e in policies),
        layout=layout,
    )


def write_state(state: State) -> bytes:
    """Encode as layout [6], entries in trie order."""
    unikernels = sorted(state.unikernels, key=lambda e: trie_key(e[0]))
    policies = sorted(state.policies, key=lambda e: trie_key(e[0]))
    for name, _ in policies:
        if not name.is_path:
            raise WireError(f"policy name {name} is not a path")
    return der.encode(
        STATE,
        (
            "unikernel-and-policy",
            {
                "unikernels": [{"name": n, "value": c} for n, c in unikernels],
                "policies": [{"name": n, "value": p} for n, p in policies],
            },
        ),
    )


__all__ = ["CURRENT_LAYOUT", "State", "read_state", "trie_key", "write_state"]
