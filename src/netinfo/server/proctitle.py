"""The daemons' process names: ``netinfod`` and ``nibindd`` in ``ps``, ``pidof`` and ``ss -p``.

Started as ``python3 -m netinfo.cli.netinfod`` (nibindd's children, the tests) or as
``python3 .../bin/netinfod`` (console scripts), a daemon would show as ``python3``. Two
things name a process on Linux, and :func:`name_process` sets both:

- the kernel's *comm* (15 bytes, ``/proc/PID/comm``), read by ``ps -C``, ``ps -o comm``,
  ``ss -p``, ``top`` and ``killall``: set with ``prctl(PR_SET_NAME)`` through ctypes;
- the command line (``/proc/PID/cmdline``), read by ``ps -f``, ``ps aux``, ``pgrep -f``
  and Debian's ``pidof`` (sysvinit-utils: it matches argv[0], never comm): rewritten by
  the ``setproctitle`` package to ``netinfod TAG ARGS...`` (the tag first, as the issue
  asks, then the other arguments: the line still parses the same), so that two netinfods
  of one tag (other directories, other ports) can be told apart.

Both are best effort: on a system without ``prctl`` or without ``setproctitle`` the
process keeps the name it has, and nothing else changes.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Sequence

#: prctl option that sets the calling thread's name (linux/prctl.h).
PR_SET_NAME = 15
#: The kernel keeps 16 bytes of comm, the last a NUL.
COMM_MAX = 15


def set_comm(name: str) -> bool:
    """Set the kernel's name of this thread (the process's, on the main thread) to *name*
    (cut to 15 bytes); False where prctl is not available. Threads started later inherit it.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        # the process's own symbols, libc's among them (find_library would run
        # ldconfig: 0.15 s of every server's start)
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_NAME, name.encode()[:COMM_MAX], 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def set_cmdline(words: Sequence[str]) -> bool:
    """Show *words* as this process's command line; False without ``setproctitle``."""
    try:
        import setproctitle  # noqa: PLC0415  (optional at run time: best effort)
    except ImportError:
        return False
    setproctitle.setproctitle(" ".join(words))
    return True


def name_process(name: str, args: Sequence[str]) -> None:
    """Make this process ``name`` to ``ps``, ``pidof`` and ``ss -p``, with the command line
    ``name args...``. The command line first: setproctitle also sets comm, to the first
    15 bytes of the whole line, which :func:`set_comm` then puts right."""
    set_cmdline([name, *args])
    set_comm(name)
