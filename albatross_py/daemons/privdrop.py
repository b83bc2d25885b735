"""Dropping root after the listening socket is bound (spec 2.5).

Only albatrossd needs root (taps, bridges, tenders).  albatross runs every
other daemon as user ``albatross`` from the start, through systemd's
``User=`` or FreeBSD's ``daemon -u``; we do the same in our units.  A daemon
started by hand as root (a test box, a container without systemd) calls
:func:`drop_privileges` right after binding its socket, so the socket file
already exists with mode 0660 and group ``albatross`` (see
``transport.unix.bind_unix``) when the process gives up root.

The order is the one every privilege-dropping daemon uses: supplementary
groups first (they can only be changed while still root), then the gid, then
the uid.  We change no file ownership and leave the umask alone.  Afterwards
we check that root cannot be regained; a process that could would be worse
than one that never tried.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd

log = logging.getLogger(__name__)

#: The account the unprivileged daemons run as (uid/gid 496 in albatross's packages).
DEFAULT_USER = "albatross"
DEFAULT_GROUP = "albatross"


class PrivilegeError(RuntimeError):
    """Root could still be regained after dropping privileges."""


def drop_privileges(user: str | None = DEFAULT_USER, group: str | None = DEFAULT_GROUP) -> bool:
    """Become ``user``:``group`` if running as root; whether we switched.

    Not root, or an empty ``user`` (``--user ''``: stay as is): ``False``.
    Root but ``user`` unknown: a warning and ``False``; the daemon keeps
    running as root, as it would have without this call.  ``group``
    falls back to the user's primary group when no such group exists.
    """
    if os.geteuid() != 0 or os.getuid() != 0:
        return False
    if not user:
        log.debug("running as root: no user given, staying root")
        return False
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        log.warning("running as root: user %r does not exist, not dropping privileges", user)
        return False
    gid = pw.pw_gid
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            log.warning("group %r does not exist, using %s's primary group", group, user)
    if pw.pw_uid == 0:
        log.warning("user %r is root, not dropping privileges", user)
        return False
    os.setgroups([gid])
    os.setgid(gid)
    os.setuid(pw.pw_uid)
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:  # pragma: no cover - only on a broken system
        raise PrivilegeError(f"could regain root after switching to {user}")
    log.info("dropped privileges to %s (uid %d, gid %d)", user, pw.pw_uid, gid)
    return True


__all__ = ["DEFAULT_GROUP", "DEFAULT_USER", "PrivilegeError", "drop_privileges"]
