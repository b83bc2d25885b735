"""bin/_venv.py's fast path: a second run installs nothing while pyproject.toml is unchanged.

A copy of bin/_venv.py in a scratch checkout (its own pyproject.toml, a
``.venv/bin/python`` that is this interpreter, a stamp): what makes it
reinstall and what does not.  The whole set-up, apt and sudo included, runs
for real in tests/system/test_fresh_debian.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def scratch_checkout(tmp_path: Path) -> ModuleType:
    (tmp_path / "bin").mkdir()
    shutil.copy(REPO / "bin" / "_venv.py", tmp_path / "bin" / "_venv.py")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    spec = importlib.util.spec_from_file_location("scratch_venv", tmp_path / "bin" / "_venv.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stamp_decides_whether_to_install(tmp_path: Path) -> None:
    venv = scratch_checkout(tmp_path)
    assert not venv.up_to_date(["test"])  # no .venv yet
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    os.symlink(sys.executable, tmp_path / ".venv" / "bin" / "python")
    assert not venv.up_to_date([])  # no stamp: install once
    venv.STAMP.write_text(json.dumps(venv.wanted(["test"])))
    assert venv.up_to_date(["test"]) and venv.up_to_date([])  # the demo needs less
    assert venv.ensure(["test"]) == tmp_path / ".venv" / "bin" / "python"  # no pip: it is current
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "2"\n')
    assert not venv.up_to_date(["test"])  # a changed pyproject.toml reinstalls
    venv.STAMP.write_text(json.dumps(venv.wanted([])))
    assert venv.up_to_date([]) and not venv.up_to_date(["test"])  # extras not there yet
    venv.STAMP.write_text("not json")
    assert not venv.up_to_date([])
    venv.STAMP.write_text(json.dumps(venv.wanted(["test"])))
    (tmp_path / ".venv" / "bin" / "python").unlink()
    os.symlink(tmp_path / "gone", tmp_path / ".venv" / "bin" / "python")
    assert not venv.up_to_date([])  # its interpreter is gone: make it anew
