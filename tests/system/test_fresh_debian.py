"""The README's two set-up commands on a fresh Debian 12 (issue 14, item 1).

A stock Debian 12 root (``debootstrap --variant=minbase`` plus python3 and
iproute2, the tarball :func:`tests.system.test_packaging.base_root_tarball`
caches) has Debian's own ``/usr/bin/python3`` with the PEP 668
``EXTERNALLY-MANAGED`` marker, no ``python3-venv``, no pip and no sudo.  A
copy of this checkout goes into it, and ``chroot`` runs the README's
commands exactly as written, in the order a newcomer meets them:

1. an ordinary user without sudo: ``./bin/test --co -q`` stops and says what
   to run as root (``apt-get install python3-venv``); ``./bin/demo`` says to
   run it as root, before doing any work;
2. root without sudo: ``./bin/test --co -q`` installs python3-venv through
   apt, makes ``.venv`` and collects the suite; the second run reinstalls
   nothing; the system Python stays untouched; ``./bin/demo`` installs QEMU
   and binutils through apt and runs to its end (a real VM under QEMU/KVM,
   taps on a bridge of its own, TLS on loopback);
3. an ordinary user in group sudo (sudo installed, python3-venv purged
   again): ``./bin/test --co -q`` gets python3-venv through sudo, ``.venv``
   belongs to the user; ``./bin/demo`` goes on through sudo and runs to its
   end; ``sudo ./bin/test`` out of habit still makes the venv as the user.

The chroot gets /proc, a read-only /sys, its own devpts instance and device
nodes of its own (kvm, net/tun) in its /dev, never a bind mount of the host's
/dev, so removing the tree can never touch the host.  It shares the host's
network namespace (the demo's bridge has a random name and is removed) and
reaches the Debian mirror and PyPI, as ``.ci/run``'s apt-get does.  Where
this machine reaches PyPI through a TLS proxy of its own (``PIP_CERT`` names
its CA bundle), that bundle and variable go into the chroot too: that is the
network's set-up, not the checkout's.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.system.test_packaging import IS_ROOT, base_root_tarball

REPO = Path(__file__).resolve().parents[2]
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: This machine's CA bundle for PyPI, when its network needs one (see above).
PIP_CERT = os.environ.get("PIP_CERT")
#: Where the chroot gets it: a path no Debian package writes (installing
#: ca-certificates there regenerates /etc/ssl/certs/ca-certificates.crt).
CHROOT_PIP_CERT = "/etc/ssl/host-pip-ca.crt"
#: One command in the chroot: apt-get and pip fetch packages, the demo boots a VM.
COMMAND_TIMEOUT = 900
#: Device nodes the demo needs: (path, major, minor, mode).
DEVICES = (("kvm", 10, 232, 0o660), ("net/tun", 10, 200, 0o666))

pytestmark = [pytest.mark.slow, pytest.mark.system]


def _checkout_files() -> list[str]:
    """This checkout's files as git sees them (tracked and new, not ignored)."""
    out = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    return sorted({f for f in out.decode().split("\0") if f and (REPO / f).is_file()})


def copy_checkout(dest: Path, uid: int = 0, gid: int = 0) -> None:
    for rel in _checkout_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target)
    for path in [dest, *dest.rglob("*")]:
        os.lchown(path, uid, gid)


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve())
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


class Chroot:
    def __init__(self, root: Path) -> None:
        self.root = root

    def run(self, script: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
        home = f"/home/{user}" if user else "/root"
        env = ["env", "-i", f"HOME={home}", f"PATH={PATH}", "LANG=C.UTF-8", "TERM=dumb"]
        if PIP_CERT:
            env.append(f"PIP_CERT={CHROOT_PIP_CERT}")
        if user:
            env += [f"USER={user}", f"LOGNAME={user}"]
            cmd = ["chroot", str(self.root), "runuser", "-u", user, "--", *env, "sh", "-c", script]
        else:
            cmd = ["chroot", str(self.root), *env, "sh", "-c", script]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)

    def ok(self, script: str, user: str | None = None) -> str:
        result = self.run(script, user)
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{script!r} as {user or 'root'}: {output[-4000:]}"
        return output

    def ids(self, user: str) -> tuple[int, int]:
        for line in (self.root / "etc" / "passwd").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == user:
                return int(fields[2]), int(fields[3])
        raise AssertionError(f"{user} not in the chroot's passwd")


@contextmanager
def fresh_debian(tmp_path: Path) -> Iterator[Chroot]:
    tarball = base_root_tarball()
    root = tmp_path / "root"
    root.mkdir()
    mounted: list[Path] = []
    try:
        subprocess.run(["tar", "--numeric-owner", "-C", str(root), "-xpf", str(tarball)],
                       check=True)  # fmt: skip
        # the network as this host sees it; its own name too, as an installed system
        # has (sudo looks it up, and waits for DNS if it is missing)
        for name in ("resolv.conf", "hosts", "hostname"):
            if Path("/etc", name).is_file():
                shutil.copy(Path("/etc", name), root / "etc" / name)
        if PIP_CERT and Path(PIP_CERT).is_file():
            bundle = root / CHROOT_PIP_CERT.lstrip("/")
            bundle.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(PIP_CERT, bundle)
        for rel, major, minor, mode in DEVICES:
            node = root / "dev" / rel
            node.parent.mkdir(parents=True, exist_ok=True)
            node.unlink(missing_ok=True)
            os.mknod(node, stat.S_IFCHR | mode, os.makedev(major, minor))
        (root / "dev" / "pts").mkdir(exist_ok=True)
        ptmx = root / "dev" / "ptmx"
        if ptmx.exists() or ptmx.is_symlink():
            ptmx.unlink()
        ptmx.symlink_to("pts/ptmx")
        pts = "newinstance,ptmxmode=0666"
        for fstype, point, options in (("proc", "proc", "rw"), ("sysfs", "sys", "ro"),
                                       ("devpts", "dev/pts", pts)):  # fmt: skip
            target = root / point
            target.mkdir(exist_ok=True)
            subprocess.run(["mount", "-t", fstype, "-o", options, fstype, str(target)], check=True)
            mounted.append(target)
        yield Chroot(root)
    finally:
        for target in reversed(mounted):
            subprocess.run(["umount", "-l", str(target)], check=False)
        left = _mounts_under(root)
        # never remove a tree that still has something mounted in it
        assert not left, f"still mounted, {root} left in place: {left}"
        shutil.rmtree(root, ignore_errors=True)


def _owned_by_others(tree: Path, uid: int) -> list[str]:
    return [str(p) for p in [tree, *tree.rglob("*")] if p.lstat().st_uid != uid]


def _stamp(chroot: Chroot, checkout: str) -> str:
    return (chroot.root / checkout.lstrip("/") / ".venv" / "albatross-stamp").read_text()


def test_readme_commands_on_a_fresh_debian_12(tmp_path: Path) -> None:
    if not IS_ROOT:
        pytest.skip("needs root (chroot, mount, mknod)")
    if not Path("/dev/kvm").exists():
        pytest.skip("no /dev/kvm: the demo boots a VM")
    with fresh_debian(tmp_path) as chroot:
        marker = chroot.root / "usr/lib/python3.11/EXTERNALLY-MANAGED"
        assert marker.is_file(), "not Debian's python3.11 with its PEP 668 marker"
        assert chroot.run("python3 -c 'import ensurepip'").returncode != 0  # no python3-venv
        assert chroot.run("command -v sudo").returncode != 0

        # 1. an ordinary user, no sudo: nothing works yet, and both say what to do
        newbie = f"nb{secrets.token_hex(3)}"
        chroot.ok(f"useradd -m -s /bin/sh {newbie}")
        uid, gid = chroot.ids(newbie)
        user_src = f"/home/{newbie}/albatross-py"
        copy_checkout(chroot.root / user_src.lstrip("/"), uid, gid)
        result = chroot.run(f"cd {user_src} && ./bin/test --co -q", newbie)
        output = result.stdout + result.stderr
        assert result.returncode == 1, output
        assert "sudo is not installed" in output and "apt-get install python3-venv" in output
        result = chroot.run(f"cd {user_src} && ./bin/demo", newbie)
        output = result.stdout + result.stderr
        assert result.returncode == 1 and "su -c ./bin/demo" in output, output
        assert not (chroot.root / user_src.lstrip("/") / ".venv").exists()  # no work done

        # 2. root, no sudo: python3-venv through apt, .venv, then nothing reinstalled
        src = "/root/albatross-py"
        copy_checkout(chroot.root / src.lstrip("/"))
        first = chroot.ok(f"cd {src} && ./bin/test --co -q")
        assert "apt-get install python3-venv" in first and "installing albatross-py" in first
        assert "tests collected" in first
        stamp = _stamp(chroot, src)
        second = chroot.ok(f"cd {src} && ./bin/test --co -q")
        assert "installing albatross-py" not in second and "making /" not in second, second
        assert "tests collected" in second and _stamp(chroot, src) == stamp
        system = chroot.run("/usr/bin/python3 -c 'import trio'")
        assert system.returncode != 0, "the package went into the system Python"
        demo = chroot.ok(f"cd {src} && ./bin/demo")
        assert "apt-get install binutils qemu-system-x86" in demo, demo[-4000:]
        assert "demo finished" in demo and "success: created unikernel" in demo
        assert "going on through sudo" not in demo

        # 3. an ordinary user with sudo: apt through sudo, the venv is the user's
        chroot.ok("apt-get install -y -qq sudo && apt-get purge -y -qq python3.11-venv")
        sudoers = f"{newbie} ALL=(ALL) NOPASSWD: ALL\n"
        if PIP_CERT:  # the network's CA for PyPI (see above) through sudo's env_reset
            sudoers += 'Defaults env_keep += "PIP_CERT"\n'
        (chroot.root / "etc/sudoers.d" / newbie).write_text(sudoers)
        (chroot.root / "etc/sudoers.d" / newbie).chmod(0o440)
        chroot.ok(f"usermod -aG sudo {newbie}")
        first = chroot.ok(f"cd {user_src} && ./bin/test --co -q", newbie)
        assert "asking sudo" in first and "apt-get install python3-venv" in first, first
        assert "tests collected" in first
        venv = chroot.root / user_src.lstrip("/") / ".venv"
        assert (venv.stat().st_uid, (venv / "albatross-stamp").stat().st_uid) == (uid, uid)
        second = chroot.ok(f"cd {user_src} && ./bin/test --co -q", newbie)
        assert "installing albatross-py" not in second and "asking sudo" not in second, second
        demo = chroot.ok(f"cd {user_src} && ./bin/demo", newbie)
        assert "going on through sudo" in demo and "demo finished" in demo, demo[-4000:]
        checkout = chroot.root / user_src.lstrip("/")
        assert not _owned_by_others(checkout, uid)  # root left nothing in it

        # out of habit, with sudo: the venv is still made as (and for) the user
        shutil.rmtree(venv)
        chroot.ok(f"cd {user_src} && sudo ./bin/test --co -q", newbie)
        assert (venv.stat().st_uid, (venv / "albatross-stamp").stat().st_uid) == (uid, uid)
        assert not _owned_by_others(checkout, uid)
        again = chroot.ok(f"cd {user_src} && ./bin/test --co -q", newbie)
        assert "installing albatross-py" not in again
