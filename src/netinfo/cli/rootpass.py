"""The root password of a domain the daemons create (netinfod -m, nibindd --init).

A new domain never admits root with an empty password: its /users/root ``passwd`` is
``*`` (locked: only the local superuser, by reserved port, may write) unless a password
is given, from ``--root-password-file`` or, on a terminal, typed twice.
"""

from __future__ import annotations

import getpass
import os
import pwd
import sys
from pathlib import Path

from ..passwords import hash_password


class RootPasswordError(Exception):
    """The root password could not be read (one line for the user)."""


def root_password_hash(path: str | None, what: str) -> str | None:
    """The crypt string for the new root password of *what*, or None to keep root locked.

    *path*: a file whose first line is the password (``-`` for standard input).
    Without it, a terminal on standard input is asked (an empty answer keeps root
    locked); without a terminal root stays locked.

    :raises RootPasswordError: the file cannot be read, is empty, or the two typed
        passwords differ.
    """
    if path is not None:
        try:
            text = sys.stdin.read() if path == "-" else Path(path).read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise RootPasswordError(f"cannot read root password file {path}: {e}") from None
        password = text.splitlines()[0] if text else ""
        if not password:
            raise RootPasswordError(f"root password file {path} is empty")
        return hash_password(password)
    if not sys.stdin.isatty():
        return None
    try:
        password = getpass.getpass(f"New root password for {what} (empty: root stays "
                                   "locked): ")
        if not password:
            return None
        if getpass.getpass("Again: ") != password:
            raise RootPasswordError("the passwords differ")
    except EOFError:
        return None
    return hash_password(password)


def locked_notice(prog: str, what: str, command: str) -> str:
    """The one line a daemon prints when it created *what* with root locked: the
    *command* (a ``nipasswd`` line) that unlocks it, and who must run it (this user: the
    new domain's superuser, root on a reserved port or the owner of an unprivileged
    server, docs/security.md)."""
    try:
        me = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        me = f"uid {os.geteuid()}"
    return f"{prog}: root of {what} stays locked (no password); to set one, run {command} as {me}"


__all__ = ["RootPasswordError", "locked_notice", "root_password_hash"]
