"""Where the shared conformance vectors live, and how tests skip without them.

The vectors are read in place from ``<repo>/../shared/vectors/albatross-2.7.2``
(never copied into the repository).  Tests that need them call
:func:`require_vectors` (or use :data:`needs_vectors` as a marker) so a
checkout without the shared directory skips with a reason instead of failing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
VECTORS: Path = REPO_ROOT.parent / "shared" / "vectors" / "albatross-2.7.2"

needs_vectors = pytest.mark.skipif(
    not VECTORS.is_dir(), reason=f"conformance vectors not found at {VECTORS}"
)


def require_vectors() -> Path:
    """The vector directory; skip the calling test if it is missing."""
    if not VECTORS.is_dir():
        pytest.skip(f"conformance vectors not found at {VECTORS}")
    return VECTORS


def load_json(relative: str) -> Any:
    """Parse one JSON vector file (skips the test if the vectors are missing)."""
    with (require_vectors() / relative).open(encoding="utf-8") as f:
        return json.load(f)
