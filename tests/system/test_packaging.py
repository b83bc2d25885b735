"""The systemd units and the Debian package (packaging/).

* ``test_units_verify``: ``systemd-analyze verify`` on every unit, in a
  scratch root that holds the system's own units and stand-ins for our
  binaries (verify checks that ExecStart is executable), so nothing is
  installed on this machine.  A warning counts as a failure.
* ``test_unit_flags_parse``: the command line of every unit, with the flags
  of ``etc/default/albatross``, is accepted by the daemon's own parser.
* ``test_deb_installs_into_fresh_root``: builds the .deb, installs it with
  ``dpkg -i`` into a fresh Debian 12 (``debootstrap --variant=minbase`` plus
  python3 and iproute2, cached as a tarball under /tmp), and checks files,
  modes, the albatross user in *that root's* /etc/passwd, and that the
  installed programs run there; then purges it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "packaging" / "systemd"
DEFAULTS = REPO / "etc" / "default" / "albatross"
BUILD_DEB = REPO / "packaging" / "debian" / "build-deb.sh"
CACHE = Path(os.environ.get("ALBATROSS_TEST_CACHE", "/tmp/albatross-py-test-cache"))
MIRROR = os.environ.get("ALBATROSS_DEBIAN_MIRROR", "http://deb.debian.org/debian")
IS_ROOT = os.geteuid() == 0

#: binary -> the function that parses its command line
PARSERS = {
    "albatrossd": "albatross_py.daemons.vmmd:parse_args",
    "albatross-console": "albatross_py.daemons.console:parse_args",
    "albatross-log": "albatross_py.daemons.events:parse_args",
    "albatross-stats": "albatross_py.daemons.stats:parse_args",
    "albatross-influx": "albatross_py.daemons.metrics:parse_influx_args",
    "albatross-prometheus": "albatross_py.daemons.metrics:parse_prometheus_args",
    "albatross-tls-endpoint": "albatross_py.daemons.tls_endpoint:parse_args",
}


def unit_files() -> list[Path]:
    return sorted(p for p in UNITS.iterdir() if p.suffix in (".service", ".socket"))


def exec_start(unit: Path) -> list[str]:
    for line in unit.read_text().splitlines():
        if line.startswith("ExecStart="):
            return shlex.split(line.removeprefix("ExecStart="))
    raise AssertionError(f"{unit.name} has no ExecStart")


def defaults() -> dict[str, str]:
    env = {}
    for line in DEFAULTS.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = shlex.split(value)[0] if value.strip() else ""
    return env


def test_every_daemon_has_a_unit() -> None:
    binaries = {Path(exec_start(u)[0]).name for u in unit_files() if u.suffix == ".service"}
    assert binaries == set(PARSERS)
    for unit in unit_files():
        if unit.suffix == ".socket":
            assert unit.with_suffix(".service").exists(), unit.name


def test_unit_flags_parse() -> None:
    import importlib

    env = defaults()
    for unit in unit_files():
        if unit.suffix != ".service":
            continue
        argv = exec_start(unit)
        unit_env = dict(
            re.findall(r"^Environment=(\w+)=(.*)$", unit.read_text(), flags=re.MULTILINE)
        )
        unit_env.update(env)
        args: list[str] = []
        for word in argv[1:]:
            word = word.replace("%t", "/run")
            if re.fullmatch(r"\$\w+", word):  # $VAR: split into words, dropped if empty
                args.extend(shlex.split(unit_env.get(word[1:], "")))
            else:
                args.append(re.sub(r"\$\{(\w+)\}", lambda m, e=unit_env: e[m.group(1)], word))
        module, func = PARSERS[Path(argv[0]).name].split(":")
        try:
            parser = getattr(importlib.import_module(module), func)
        except ImportError as exc:
            pytest.fail(f"{unit.name}: cannot import {module}: {exc}")
        try:
            parser(args)
        except SystemExit as exc:
            pytest.fail(f"{unit.name}: {argv[0]} refuses {args}: exit {exc.code}")


@pytest.mark.system
def test_units_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (Debian: systemd)")
    system = Path("/usr/lib/systemd/system")
    if not (system / "multi-user.target").exists():
        pytest.skip(f"no systemd units in {system} to verify against")
    root = tmp_path / "root"
    units = root / "usr/lib/systemd/system"
    shutil.copytree(system, units, symlinks=True)
    for unit in unit_files():
        shutil.copy(unit, units / unit.name)
        if unit.suffix != ".service":
            continue
        daemon = Path(exec_start(unit)[0])
        assert daemon.parent == Path("/usr/libexec/albatross"), f"{unit.name}: {daemon}"
        # verify checks every Exec*= command (ExecStartPre's chmod too): stand-ins
        for command in re.findall(r"^Exec\w+=[-+@!:]*(/\S+)", unit.read_text(), re.MULTILINE):
            stub = root / command.lstrip("/")
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\n")
            stub.chmod(0o755)
    paths = [str(units / u.name) for u in unit_files()]
    result = subprocess.run(
        [analyze, "verify", "--man=no", f"--root={root}", *paths],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, output
    assert output == "", f"systemd-analyze verify warns:\n{output}"


def test_example_ca_script(tmp_path: Path) -> None:
    """etc/example-ca/make-example.sh runs through with our albatross-client."""
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO),
        ALBATROSS_CLIENT=f"{sys.executable} -m albatross_py.client.cli",
    )
    out = tmp_path / "example"
    script = REPO / "etc" / "example-ca" / "make-example.sh"
    result = _run(["sh", str(script), str(out)], env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "refused, as it should be" in result.stdout
    for name in ("operator/cacert.pem", "operator/server.pem", "acme/acme.pem", "web/web.pem"):
        assert (out / name).is_file(), name
    chain = (out / "web" / "hello-console-chain.pem").read_text()
    assert chain.count("BEGIN CERTIFICATE") == 3  # leaf, web, acme (never the root)


# -- the Debian package ------------------------------------------------------------------


def _run(cmd: list[str], timeout: float = 600, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]


def base_root_tarball() -> Path:
    """A Debian 12 minbase root with python3 and iproute2, made once and cached."""
    tarball = CACHE / "bookworm-minbase-python3.tar"
    if tarball.exists():
        return tarball
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        pytest.skip("debootstrap not installed (Debian: apt-get install debootstrap)")
    debs = CACHE / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="debootstrap-", dir=CACHE) as tmp:
        target = Path(tmp) / "root"
        result = _run(
            [debootstrap, "--variant=minbase", "--include=python3,iproute2",
             f"--cache-dir={debs}", "bookworm", str(target), MIRROR],
            timeout=900,
        )  # fmt: skip
        if result.returncode != 0:
            log = (result.stdout + result.stderr).strip().splitlines()[-5:]
            if any("Failed getting release file" in line or "Couldn't" in line for line in log):
                pytest.skip(f"Debian mirror {MIRROR} not reachable: {' / '.join(log)}")
            pytest.fail("debootstrap failed:\n" + "\n".join(log))
        partial = tarball.with_suffix(f".tar.{os.getpid()}")
        subprocess.run(
            ["tar", "--numeric-owner", "-C", str(target), "-cpf", str(partial), "."], check=True
        )
        partial.rename(tarball)
    return tarball


def _mode(path: Path) -> tuple[int, int, int]:
    """(uid, gid, permission bits): ids, since the names are in the chroot's databases."""
    st = path.stat()
    return st.st_uid, st.st_gid, st.st_mode & 0o7777


def _ids(root: Path, db: str, name: str) -> int | None:
    for line in (root / "etc" / db).read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2])
    return None


@pytest.mark.slow
@pytest.mark.system
def test_deb_installs_into_fresh_root(tmp_path: Path) -> None:
    if not IS_ROOT:
        pytest.skip("needs root (debootstrap, chroot, dpkg)")
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb not installed")
    tarball = base_root_tarball()

    built = _run([str(BUILD_DEB), "-o", str(tmp_path / "dist")], cwd=REPO)
    assert built.returncode == 0, built.stderr[-3000:]
    deb = Path(built.stdout.strip().splitlines()[-1])
    assert re.fullmatch(r"albatross-py_[\w.+~-]+_(all|amd64|arm64)\.deb", deb.name), deb.name
    info = _run(["dpkg-deb", "--field", str(deb), "Depends", "Recommends"]).stdout
    assert "python3 (>= 3.11" in info and "iproute2" in info and "qemu-system-x86" in info

    root = tmp_path / "root"
    root.mkdir()
    try:
        untar = ["tar", "--numeric-owner", "-C", str(root), "-xpf", str(tarball)]
        subprocess.run(untar, check=True)
        install_and_check(root, deb)
    finally:
        shutil.rmtree(root, ignore_errors=True)  # 270 MB; pytest keeps its last tmp dirs


def install_and_check(root: Path, deb: Path) -> None:
    shutil.copy(deb, root / "tmp" / deb.name)

    def chroot(*cmd: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}
        return _run(["chroot", str(root), *cmd], env=env, timeout=300)

    installed = chroot("dpkg", "-i", f"/tmp/{deb.name}")
    assert installed.returncode == 0, installed.stdout + installed.stderr

    # files
    for path in [
        "usr/libexec/albatross/albatrossd",
        "usr/libexec/albatross/albatross-console",
        "usr/libexec/albatross/albatross-stats",
        "usr/libexec/albatross/albatross-log",
        "usr/libexec/albatross/albatross-influx",
        "usr/libexec/albatross/albatross-prometheus",
        "usr/libexec/albatross/albatross-tls-endpoint",
        "usr/bin/albatross-client",
        "usr/bin/vmmc",
        "usr/bin/albatross-wire",
    ]:
        assert os.access(root / path, os.X_OK), path
    for unit in unit_files():
        assert (root / "usr/lib/systemd/system" / unit.name).is_file(), unit.name
    assert (root / "usr/lib/tmpfiles.d/albatross.conf").is_file()
    man = root / "usr/share/man"
    for page in ("man1/albatross-client.1.gz", "man1/vmmc.1.gz", "man8/albatrossd.8.gz"):
        assert (man / page).is_file(), page
    assert (root / "usr/share/bash-completion/completions/albatross-client").is_file()
    assert (root / "usr/lib/albatross-py/albatross_py/__init__.py").is_file()
    assert (root / "etc/default/albatross").read_text() == DEFAULTS.read_text()
    conffiles = (root / "var/lib/dpkg/info/albatross-py.conffiles").read_text().split()
    assert conffiles == ["/etc/default/albatross", "/etc/logrotate.d/albatross-py"]

    # the user and group, in the chroot's own databases (a fresh root: 496 is free)
    uid, gid = _ids(root, "passwd", "albatross"), _ids(root, "group", "albatross")
    assert (uid, gid) == (496, 496)
    passwd_line = next(
        line
        for line in (root / "etc/passwd").read_text().splitlines()
        if line.startswith("albatross:")
    )
    assert passwd_line.endswith(":/nonexistent:/usr/sbin/nologin")

    # directories and modes
    assert _mode(root / "var/lib/albatross") == (0, gid, 0o750)
    assert _mode(root / "var/lib/albatross/block") == (uid, gid, 0o700)
    assert _mode(root / "var/lib/albatross/crl") == (0, gid, 0o750)
    assert _mode(root / "etc/albatross") == (0, gid, 0o750)
    assert _mode(root / "var/log/albatross") == (uid, gid, 0o750)

    # the programs run with the chroot's Python (bundled compiled wheels included)
    for cmd in (
        ["/usr/bin/albatross-client", "--help"],
        ["/usr/bin/vmmc", "--help"],
        ["/usr/bin/albatross-wire", "--help"],
        ["/usr/libexec/albatross/albatrossd", "--help"],
        ["/usr/libexec/albatross/albatross-console", "--help"],
        ["/usr/libexec/albatross/albatross-log", "--help"],
        ["/usr/libexec/albatross/albatross-tls-endpoint", "--help"],
    ):
        result = chroot(*cmd)
        assert result.returncode == 0, f"{cmd}: {result.stdout}{result.stderr}"
        assert "usage:" in result.stdout, cmd
    crypto = chroot(
        "/usr/bin/python3", "-I", "-c",
        "import sys; sys.path.insert(0, '/usr/lib/albatross-py'); "
        "from cryptography.hazmat.primitives.asymmetric import ed25519; "
        "ed25519.Ed25519PrivateKey.generate(); print('ok')",
    )  # fmt: skip
    assert crypto.stdout.strip() == "ok", crypto.stderr
    generate = chroot(
        "sh", "-c", "mkdir -p /tmp/ca && cd /tmp/ca && albatross-client generate ca db"
    )
    assert generate.returncode == 0, generate.stdout + generate.stderr
    assert (root / "tmp/ca/cacert.pem").is_file()

    # purge: code, units and empty state directories go; the user stays (policy)
    purged = chroot("dpkg", "--purge", "albatross-py")
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert not (root / "usr/lib/albatross-py").exists()
    assert not (root / "usr/libexec/albatross").exists()
    assert not (root / "etc/default/albatross").exists()
    assert not (root / "var/lib/albatross").exists()
    assert not (root / "var/log/albatross").exists()
    assert _ids(root, "passwd", "albatross") == 496
