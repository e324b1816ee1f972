"""nipasswd: set a user's password in a NetInfo domain.

::

    nipasswd [-T timeout] [--stdin] [--hash sha512|sha256|bcrypt|md5|des] [[-t] domain] [user]

The new password is asked twice on the terminal, or read from standard input with
``--stdin``. It is hashed here (SHA-512 crypt unless ``--hash`` says otherwise;
``netinfo.passwords``) and written as ``/users/<user>`` ``passwd`` through the client
library (``netinfo.client.verbs.set_password``, the web manager's "Set password" too). The
server decides who may (spec §10.2, §10.4):

* the superuser: root on a reserved port, or the user that runs an unprivileged server
  (its owner, docs/security.md): no old password is asked;
* anyone else as *user*, with its old password, where ``_writers_passwd`` lists *user*
  (every user the templates and niload make does, tools §0.5).

The write is first tried without a credential; only when the server refuses it
(NI_PERM) is the old password asked for (on the terminal) or taken from standard input.
With ``--stdin``, one line is the new password; two lines are the old password, then the
new one.

One operand is the user (in the local domain ``.``); two are the domain and the user; with
``-t`` the first is ``host/tag``. The user defaults to the invoking login name.
Errors are one line ``nipasswd: what failed: why``; exit statuses as niutil's (tools §1.5):
1 usage, 100 + the NetInfo status of a refusal, 199 communication failure.
"""

from __future__ import annotations

import getpass
import sys
from dataclasses import dataclass

from ..client import verbs
from ..client.domain import authenticate
from ..errors import NiError, Status, error_text
from ..passwords import DEFAULT_HASH, HASHES, hash_password
from .common import (
    COMM_ERRORS,
    DEFAULT_TIMEOUT,
    EXIT_USAGE,
    ToolExit,
    UsageError,
    exit_code,
    open_for_tool,
    parse_timeout,
    tool_main,
)

PROG = "nipasswd"
USAGE = ("usage: nipasswd [-T timeout] [--stdin] [--hash "
         + "|".join(HASHES) + "] [[-t] domain] [user]\n")
HELP = USAGE + f"""
options:
  -t              the domain is host/tag: that server, directly
  -T timeout      seconds to wait for each answer (default {DEFAULT_TIMEOUT:g})
  --stdin         read the passwords from standard input: one line, the new
                  password; two lines, the old password then the new one
  --hash NAME     how to hash the new password: {", ".join(HASHES)}
                  (default {DEFAULT_HASH}; bcrypt needs the hashes extra)
  -h, --help      this text

One operand is the user, in the local domain (.); two are the domain and the
user. The user defaults to your login name. The superuser (root on a reserved
port, or the user running an unprivileged server) sets any password; anyone else
gives the user's old password, asked only when the server wants it.
"""
_ERRORS = (NiError, *COMM_ERRORS)


@dataclass
class Options:
    """A parsed nipasswd command line."""

    domain: str = "."
    user: str | None = None
    tagged: bool = False
    stdin: bool = False
    hash: str = DEFAULT_HASH
    timeout: float = DEFAULT_TIMEOUT
    help: bool = False


def parse_args(args: list[str]) -> Options:
    """Options, then at most two operands. :raises UsageError:."""
    o = Options()
    operands: list[str] = []
    it = iter(args)
    for a in it:
        if a in ("-h", "--help"):
            o.help = True
        elif a == "-t":
            o.tagged = True
        elif a == "--stdin":
            o.stdin = True
        elif a in ("--hash", "-T"):
            value = next(it, None)
            if value is None:
                raise UsageError(f"{PROG}: {a} needs a value")
            if a == "-T":
                o.timeout = parse_timeout(value, prog=PROG)
            elif value not in HASHES:
                raise UsageError(f"{PROG}: unknown hash {value} (one of {', '.join(HASHES)})")
            else:
                o.hash = value
        elif a.startswith("--hash="):
            value = a.split("=", 1)[1]
            if value not in HASHES:
                raise UsageError(f"{PROG}: unknown hash {value} (one of {', '.join(HASHES)})")
            o.hash = value
        elif a.startswith("-") and a != "-":
            raise UsageError(f"{PROG}: unknown option {a}")
        else:
            operands.append(a)
    if len(operands) > 2:
        raise UsageError(f"{PROG}: too many operands")
    if o.tagged and not operands:
        raise UsageError(f"{PROG}: -t needs host/tag")
    if len(operands) == 2 or o.tagged:
        o.domain = operands.pop(0)
    o.user = operands[0] if operands else None
    return o


class Passwords:
    """Where the passwords come from: the terminal (asked as needed) or standard input
    (all lines read at once: ``new``, or ``old`` then ``new``)."""

    def __init__(self, from_stdin: bool) -> None:
        self.from_stdin = from_stdin
        self.lines: list[str] = []
        if from_stdin:
            self.lines = sys.stdin.read().splitlines()[:2]
            if not self.lines or not self.lines[-1]:
                raise ToolExit(EXIT_USAGE, f"{PROG}: no new password on standard input")
        elif not sys.stdin.isatty():
            raise ToolExit(EXIT_USAGE, f"{PROG}: no terminal to ask for the password "
                           "(--stdin reads it from standard input)")

    def new(self, user: str) -> str:
        if self.from_stdin:
            return self.lines[-1]
        password = _ask(f"New password for {user}: ")
        if not password:
            raise ToolExit(EXIT_USAGE, f"{PROG}: empty password: nothing changed")
        if _ask("Again: ") != password:
            raise ToolExit(EXIT_USAGE, f"{PROG}: the passwords differ: nothing changed")
        return password

    def old(self, user: str) -> str | None:
        """The old password; None when standard input gave none."""
        if self.from_stdin:
            return self.lines[0] if len(self.lines) == 2 else None
        return _ask(f"Old password for {user}: ")


def _ask(prompt: str) -> str:
    try:
        return getpass.getpass(prompt)
    except EOFError:
        raise ToolExit(EXIT_USAGE, f"{PROG}: no password given: nothing changed") from None


def login_name() -> str:
    """Who runs this (``LOGNAME``, ``USER``, else the password database)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        raise ToolExit(EXIT_USAGE, f"{PROG}: cannot tell your login name: "
                       "name the user") from None


async def _main(o: Options) -> int:
    user = o.user or login_name()
    where = f"server {o.domain}" if o.tagged else f"domain {o.domain}"
    c = await open_for_tool(PROG, o.domain, tagged=o.tagged, timeout=o.timeout)
    try:
        c.timeout = c.write_timeout = o.timeout
        try:
            await verbs.user_dir(c, user)
        except _ERRORS as e:
            why = f"no such user in {where}" if isinstance(e, NiError) and \
                e.status == Status.NOUSER else error_text(e)
            raise ToolExit(exit_code(e), f"{PROG}: {user}: {why}") from None
        source = Passwords(o.stdin)
        try:
            crypted = hash_password(source.new(user), HASHES[o.hash])
        except RuntimeError as e:   # the scheme's backend is not installed
            raise ToolExit(EXIT_USAGE, f"{PROG}: cannot hash with {o.hash}: {e}") from None
        failed = f"{PROG}: can't set the password of {user} in {where}"
        try:
            await verbs.set_password(c, user, crypted)
        except _ERRORS as e:
            if not (isinstance(e, NiError) and e.status == Status.PERM):
                raise ToolExit(exit_code(e), f"{failed}: {error_text(e)}") from None
            old = source.old(user)
            if old is None:
                raise ToolExit(exit_code(e), f"{failed}: {error_text(e)} (not the "
                               "superuser: give the old password first, on the line "
                               "before the new one)") from None
            try:
                await authenticate(c, user, old, prompt=False)
            except _ERRORS as e2:
                raise ToolExit(exit_code(e2), f"{PROG}: can't authenticate as {user}: "
                               f"{error_text(e2)}") from None
            try:
                await verbs.set_password(c, user, crypted)
            except _ERRORS as e2:
                what = ("can't authenticate as " + user if isinstance(e2, NiError)
                        and e2.status == Status.AUTHERROR else failed[len(PROG) + 2:])
                raise ToolExit(exit_code(e2), f"{PROG}: {what}: {error_text(e2)}") from None
    finally:
        await c.close()
    print(f"{PROG}: password of {user} in {where} changed", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``nipasswd``: returns the exit status."""
    return tool_main(argv, parse_args, USAGE, HELP, _main, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
