"""Default directories, shared by the daemons and the client (spec 2.3).

albatross takes them from ``command-line/albatross_cli.ml``: the runtime
directory (sockets, FIFOs, images) and the persistent one (state, block
devices) differ between Linux and the BSDs/macOS.  Everything takes
``--tmpdir``/``--dbdir`` so tests and unprivileged users can point elsewhere.
"""

from __future__ import annotations

import sys

_LINUX = sys.platform.startswith("linux")

#: Runtime directory: ``/run/albatross`` on Linux, ``/var/run/albatross`` elsewhere.
DEFAULT_TMPDIR = "/run/albatross" if _LINUX else "/var/run/albatross"
#: Persistent directory: ``/var/lib/albatross`` on Linux, ``/var/db/albatross`` elsewhere.
DEFAULT_DBDIR = "/var/lib/albatross" if _LINUX else "/var/db/albatross"
