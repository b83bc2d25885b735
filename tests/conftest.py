"""Suite-wide test policy.

Tests that need root, KVM, QEMU or network devices skip with a reason on
machines without them.  CI sets ``ALBATROSS_REQUIRE_SYSTEM=1``: there such a
skip is turned into a failure, so a missing package or capability in CI can
never pass silently.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

REQUIRE_SYSTEM = os.environ.get("ALBATROSS_REQUIRE_SYSTEM") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if not (REQUIRE_SYSTEM and report.skipped):
        return
    if "tests/system/" in item.nodeid or item.get_closest_marker("system"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"system test skipped in CI (ALBATROSS_REQUIRE_SYSTEM=1): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, object, None]:
    """A whole system-test module skipped at import (``allow_module_level``) fails in CI too."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if REQUIRE_SYSTEM and report.skipped and "tests/system/" in str(collector.path):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"system tests skipped in CI (ALBATROSS_REQUIRE_SYSTEM=1): {reason}"
