"""Run blocking test code in a worker thread that a cancelled test can abandon.

trio renamed ``to_thread.run_sync(cancellable=)`` to ``abandon_on_cancel=``
(0.23); this works with both the machine's trio and the newest one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import trio

T = TypeVar("T")

_KW = (
    "abandon_on_cancel"
    if "abandon_on_cancel" in inspect.signature(trio.to_thread.run_sync).parameters
    else "cancellable"
)


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    return await trio.to_thread.run_sync(fn, *args, **{_KW: True})
