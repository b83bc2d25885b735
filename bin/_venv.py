"""The checkout's virtual environment, ``.venv``, for ``bin/test`` and ``bin/demo``.

A stock Debian 12 marks its Python ``EXTERNALLY-MANAGED`` (PEP 668), so
``pip install`` into it is refused, and it lacks ``python3-venv`` (the
``ensurepip`` module that ``python3 -m venv`` needs).  So both README
commands install nothing into the system Python: they make ``.venv`` in the
checkout (git ignores it) and install the package there, editable.

* ``python3 -m venv`` missing: ``apt-get install python3-venv``, directly as
  root, through ``sudo`` for anyone else; with neither, a message says what to
  run as root (:func:`apt_install`, also used by the demo for QEMU).
* Second runs are fast: ``.venv/albatross-stamp`` records the SHA-256 of
  ``pyproject.toml`` and the extras installed; when both still hold, nothing
  runs but this file (no pip, no subprocess).  A changed ``pyproject.toml``
  reinstalls; a ``.venv`` whose interpreter is gone is made anew.
* The venv belongs to whoever owns the checkout: run as root (``sudo
  ./bin/demo`` out of habit) in a user's checkout, venv and pip run as that
  user, so a later ``./bin/test`` of theirs can still update it.

Standard library only, and runnable by whatever ``python3`` comes first:
``python3 bin/_venv.py [--extras test]`` prints the venv's interpreter on
stdout (and nothing else there: what apt and pip print goes to stderr).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".venv"
STAMP = VENV / "albatross-stamp"
#: What pyproject.toml asks for (requires-python); checked before making a venv.
MIN_PYTHON = (3, 11)


class SetupError(SystemExit):
    """Set-up cannot go on; the message says what to do (exit status 1)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"set-up: {message}")


def say(text: str) -> None:
    print(f"set-up: {text}", file=sys.stderr, flush=True)


# -- root, sudo and apt ---------------------------------------------------------------


def as_root_prefix(why: str, what_to_run: str) -> list[str]:
    """``[]`` as root, ``["sudo"]`` with sudo; otherwise stop with what to run as root."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") is not None:
        say(f"{why}: this needs root, asking sudo")
        return ["sudo"]
    raise SetupError(
        f"{why}: this needs root, and sudo is not installed.\n"
        f"  As root, run: {what_to_run}\n"
        "  (or install sudo, add yourself to group sudo, and run this again)"
    )


def apt_install(packages: list[str], why: str) -> None:
    """``apt-get install`` the Debian ``packages`` (as root, or through sudo)."""
    words = " ".join(packages)
    if shutil.which("apt-get") is None:
        raise SetupError(f"{why}: install {words} (or your system's equivalent) and run this again")
    prefix = as_root_prefix(f"{why}: installing {words}", f"apt-get install {words}")
    say(f"apt-get install {words}")
    env = [*prefix, "env", "DEBIAN_FRONTEND=noninteractive"]  # sudo resets the environment
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
    for cmd in (["apt-get", "update", "-qq"], install):
        result = subprocess.run([*env, *cmd], check=False, stdout=sys.stderr)
        if result.returncode != 0:
            raise SetupError(f"{' '.join(cmd)} failed (exit {result.returncode})")


# -- the venv -------------------------------------------------------------------------


def _owner() -> dict[str, object]:
    """subprocess arguments to run as the checkout's owner when we are root and they are not."""
    st = REPO.stat()
    if os.geteuid() != 0 or st.st_uid == 0:
        return {}
    try:
        pw = pwd.getpwuid(st.st_uid)
    except KeyError:
        return {"user": st.st_uid, "group": st.st_gid, "extra_groups": []}
    env = dict(os.environ, HOME=pw.pw_dir, USER=pw.pw_name, LOGNAME=pw.pw_name)
    groups = os.getgrouplist(pw.pw_name, pw.pw_gid)
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": groups, "env": env}


def wanted(extras: list[str]) -> dict[str, object]:
    digest = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()
    return {"pyproject-sha256": digest, "extras": sorted(extras)}


def up_to_date(extras: list[str]) -> bool:
    """The fast path: the venv's interpreter runs and the stamp matches."""
    python = VENV / "bin" / "python"
    if not os.access(python, os.X_OK):  # follows the symlink: a removed base fails too
        return False
    try:
        stamp = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return False
    want = wanted(extras)
    return bool(
        stamp.get("pyproject-sha256") == want["pyproject-sha256"]
        and set(want["extras"]) <= set(stamp.get("extras", ()))  # type: ignore[arg-type]
    )


def _venv_works() -> bool:
    return importlib.util.find_spec("venv") is not None and (
        importlib.util.find_spec("ensurepip") is not None
    )


def make_venv() -> None:
    if sys.version_info < MIN_PYTHON:
        need = ".".join(map(str, MIN_PYTHON))
        raise SetupError(
            f"{sys.executable} is Python {sys.version.split()[0]}; albatross-py needs >= {need} "
            f"(run again with PYTHON=python{need} or newer)"
        )
    if not _venv_works():
        # Debian splits ensurepip off the standard library into python3.X-venv
        default = Path("/usr/bin/python3")
        same = default.exists() and default.resolve() == Path(sys.executable).resolve()
        minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
        package = "python3-venv" if same else f"python{minor}-venv"
        apt_install([package], f"{sys.executable} -m venv does not work (no ensurepip)")
        importlib.invalidate_caches()
        if not _venv_works():
            raise SetupError(
                f"{sys.executable} -m venv still lacks ensurepip ({package} installed)"
            )
    say(f"making {VENV} ({sys.executable} -m venv)")
    clear = ["--clear"] if VENV.exists() else []
    subprocess.run(
        [sys.executable, "-m", "venv", *clear, str(VENV)], check=True, stdout=sys.stderr, **_owner()
    )  # type: ignore[call-overload]


def ensure(extras: list[str]) -> Path:
    """The venv's interpreter, with the package (and ``extras``) installed and current."""
    python = VENV / "bin" / "python"
    if up_to_date(extras):
        return python
    if VENV.exists() and not os.access(VENV, os.W_OK) and not _owner():
        raise SetupError(
            f"{VENV} belongs to {pwd.getpwuid(VENV.stat().st_uid).pw_name}, not to you "
            f"(made by an earlier run as root?): remove it (sudo rm -rf {VENV}) and run again"
        )
    if not os.access(python, os.X_OK):
        make_venv()
    try:
        old = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        old = {}
    installed = set(old.get("extras", ())) if isinstance(old, dict) else set()
    extras = sorted(installed | set(extras))
    target = f"{REPO}[{','.join(extras)}]" if extras else str(REPO)
    say(f"installing albatross-py into .venv: pip install -e '{target}' (later runs reuse it)")
    STAMP.unlink(missing_ok=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-e", target], check=True, stdout=sys.stderr, **_owner())  # type: ignore[call-overload]
    STAMP.write_text(json.dumps(wanted(extras)) + "\n")
    owner = _owner()
    if owner:
        os.chown(STAMP, owner["user"], owner["group"])  # type: ignore[arg-type]
    return python


def main(argv: list[str]) -> int:
    extras = argv[argv.index("--extras") + 1 :] if "--extras" in argv else []
    try:
        print(ensure(extras))
    except subprocess.CalledProcessError as exc:
        raise SetupError(f"{' '.join(map(str, exc.cmd))} failed (exit {exc.returncode})") from None
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
