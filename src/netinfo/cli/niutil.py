"""niutil: NetInfo's command-line editor, argument for argument (tools §1).

::

    niutil -read . /users/root
    niutil -createprop . /users/nobody uid -2
    niutil -list -t host/network /machines ip_address

The argument parsing copies the original's quirks on purpose (tools §1.2): every ``-x``
is looked at wherever it stands, the last operation wins, and the operands are everything
from the first word that does not start with ``-``. Output formats, messages and exit
codes are those of tools §1.4–§1.5. Beyond the original: ``--help`` and ``--json``.
The verbs themselves live in :mod:`netinfo.client.verbs`.

Where a slip used to pass silently, it is now an error (issue #9), except where the
original's exit status is the spec: ``-readval`` past the last value prints the
original's message on stderr and exits 0, as the original did (tools §1.5 quirk, issue
17); ``-T`` takes a positive number only (``niutil: invalid timeout abc``, usage, exit 1;
the original's atoi read junk as 30 s); ``-create`` refuses a nameless directory (an
empty path, or a component with an empty key or value: exit 1).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

from ..client import verbs
from ..client.core import Client
from ..client.domain import authenticate
from ..errors import NiError, Status
from ..model import atoi, is_integer
from .common import (
    COMM_ERRORS,
    DEFAULT_TIMEOUT,
    ToolExit,
    UsageError,
    dump_json,
    error_text,
    exit_code,
    open_for_tool,
    parse_timeout,
    props_json,
    tool_main,
)

PROG = "niutil"

#: The usage text exactly as the original prints it (tools Appendix B; §1.1 gives the
#: same lines unindented): stderr, exit 1.
USAGE = """\
usage:
\tniutil -create      [opts] <domain> <path>
\tniutil -destroy     [opts] <domain> <path>
\tniutil -createprop  [opts] <domain> <path> <propkey> [<val>...]
\tniutil -appendprop  [opts] <domain> <path> <propkey> <val>...
\tniutil -mergeprop   [opts] <domain> <path> <propkey> <val>...
\tniutil -insertval   [opts] <domain> <path> <propkey> <val> <index>
\tniutil -destroyprop [opts] <domain> <path> <propkey>...
\tniutil -destroyval  [opts] <domain> <path> <propkey> <val>...
\tniutil -renameprop  [opts] <domain> <path> <oldkey> <newkey>
\tniutil -read        [opts] <domain> <path>
\tniutil -list        [opts] <domain> <path> [<propkey>]
\tniutil -readprop    [opts] <domain> <path> <propkey>
\tniutil -readval     [opts] <domain> <path> <propkey> <index>
\tniutil -rparent     [opts] <domain>
\tniutil -resync      [opts] <domain>
\tniutil -statistics  [opts] <domain>
\tniutil -domainname  [opts] <domain>
opts:
\t-t\t\tdomain specified by <hostname>/<tag>
\t-p\t\tprompt for password
\t-u <user>\tauthenticate as another user (implies -p)
\t-P <password>\tpassword supplied on command line (overrides -p)
\t-T <timeout>\tread & write timeout in seconds (default 30)
\t-n\t\tnumeric output for -rparent
\t-R\t\tRetry operation if master is busy
"""

#: Extra lines of ``--help`` (not part of the original usage text).
HELP_EXTRA = """\
\t--json\t\tmachine-readable output for -read, -list, -readprop, -readval,
\t\t\t-rparent, -statistics, -domainname
\t--help\t\tthis text
"""

EXIT_USAGE = 1
EXIT_BAD_INDEX = 3
#: ``-readval`` past the last value: the original printed its message and exited 0
#: (tools §1.5 quirk: its status variable still held NI_OK). The original's bytes and
#: exit status are the spec (issue 17), so 0 it is; the message says what is missing.
EXIT_NO_VALUE = 0
MASTERBUSY_PAUSE = 1.0


class Op(NamedTuple):
    """One operation flag: its name, minimum operand count, and whether it must talk to
    the domain's master (writes, and -resync by domain name, tools §1.3)."""

    name: str
    minimum: int
    master: bool


#: Operation flag → (name, minimum operands, master) (tools §1.2 table).
OPS: dict[str, Op] = {
    "-create": Op("create", 2, True),
    "-destroy": Op("destroy", 2, True),
    "-createprop": Op("createprop", 3, True),
    "-appendprop": Op("appendprop", 4, True),
    "-mergeprop": Op("mergeprop", 4, True),
    "-insertval": Op("insertval", 5, True),
    "-destroyprop": Op("destroyprop", 3, True),
    "-destroyval": Op("destroyval", 4, True),
    "-renameprop": Op("renameprop", 4, True),
    "-read": Op("read", 2, False),
    "-list": Op("list", 2, False),
    "-readprop": Op("readprop", 3, False),
    "-readval": Op("readval", 4, False),
    "-rparent": Op("rparent", 1, False),
    "-resync": Op("resync", 1, True),
    "-statistics": Op("statistics", 1, False),
    "-stat": Op("statistics", 1, False),
    "-domainname": Op("domainname", 1, False),
}


@dataclass
class Options:
    """What the command line asked for."""

    op: Op | None = None
    operands: list[str] = field(default_factory=list)
    tagged: bool = False
    prompt: bool = False
    user: str | None = None
    password: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    numeric: bool = False
    retry: bool = False
    json: bool = False
    help: bool = False


def parse_args(args: list[str]) -> Options:
    """The original's parsing (tools §1.2). :raises UsageError:."""
    o = Options()
    first = args[0] if args else ""
    start: int | None = None
    i = 0

    def value() -> str:
        if i + 1 >= len(args):
            raise UsageError(f"{PROG}: insufficient number of arguments for {first}")
        return args[i + 1]

    while i < len(args):
        a = args[i]
        if a.startswith("-"):
            if a == "-t":
                o.tagged = True
            elif a == "-p":
                o.prompt = True
            elif a == "-u":
                o.user = value()
                o.prompt = True
                i += 1
            elif a == "-P":
                o.password = value()
                i += 1
            elif a == "-T":
                o.timeout = parse_timeout(value(), prog=PROG)
                i += 1
            elif a == "-n":
                o.numeric = True
            elif a == "-R":
                o.retry = True
            elif a == "--json":
                o.json = True
            elif a == "--help":
                o.help = True
            elif a in OPS:
                o.op = OPS[a]
            elif o.op is None:
                raise UsageError()
        elif start is None:
            start = i
        i += 1
    if o.help:
        return o
    if o.op is None:
        raise UsageError()
    o.operands = args[start:] if start is not None else []
    if len(o.operands) < o.op.minimum:
        raise UsageError(f"{PROG}: insufficient number of arguments for {first}")
    return o


# -- running an operation ---------------------------------------------------------------------

_ERRORS = (NiError, *COMM_ERRORS)


class Context:
    """One run: the open domain, the options, and the error wording."""

    def __init__(self, c: Client, o: Options) -> None:
        self.c = c
        self.o = o
        self.domain = o.operands[0]

    def fail(self, err: BaseException, text: str, colon: bool = True) -> ToolExit:
        """The per-operation message ``niutil: <text>: <ni_error>`` and ni_status + 100."""
        sep = ": " if colon else " "
        return ToolExit(exit_code(err), f"{PROG}{sep}{text}: {error_text(err)}")

    async def directory(self, path: str, colon: bool = True) -> int:
        """Resolve *path*, or stop with "can't open directory"."""
        try:
            return await verbs.resolve(self.c, path)
        except _ERRORS as e:
            raise self.fail(e, f"can't open directory {path}", colon) from None

    async def attempt(self, fn: Callable[[], Awaitable[Any]], always_retry: bool = False) -> Any:
        """Run *fn*; with ``-R`` (or *always_retry*) again while the master is busy."""
        while True:
            try:
                return await fn()
            except NiError as e:
                if e.status != Status.MASTERBUSY or not (self.o.retry or always_retry):
                    raise
            await asyncio.sleep(MASTERBUSY_PAUSE)

    def out(self, text: str) -> None:
        sys.stdout.write(text + "\n")


def _props_lines(props: list[tuple[str, list[str]]]) -> str:
    """``key: v1 v2`` lines; ``key:`` for no values (tools §1.4)."""
    return "".join(k + ":" + "".join(" " + v for v in vals) + "\n" for k, vals in props)


async def op_create(x: Context) -> int:
    path = x.o.operands[1]
    problem = verbs.nameless(path)
    if problem is not None:
        raise ToolExit(EXIT_USAGE, f"{PROG}: can't create directory {path or repr(path)}: "
                       f"{problem}")
    try:
        await x.attempt(lambda: verbs.create_path(x.c, path))
    except _ERRORS as e:
        raise x.fail(e, f"can't create directory {path}") from None
    return 0


async def op_destroy(x: Context) -> int:
    path = x.o.operands[1]
    try:
        oid = await verbs.resolve(x.c, path)
    except _ERRORS as e:   # the original says what it could not do (Appendix B)
        raise x.fail(e, f"can't destroy directory {path}") from None
    try:
        await x.attempt(lambda: verbs.destroy(x.c, oid))
    except _ERRORS as e:
        raise x.fail(e, f"can't destroy directory {path}") from None
    return 0


async def _modify(x: Context, verb: Callable[..., Awaitable[Any]], *args: Any,
                  always_retry: bool = False) -> int:
    path, key = x.o.operands[1], x.o.operands[2]
    oid = await x.directory(path)
    try:
        await x.attempt(lambda: verb(x.c, oid, key, *args), always_retry)
    except _ERRORS as e:
        raise x.fail(e, f"can't modify {key} in directory {path}") from None
    return 0


async def op_createprop(x: Context) -> int:
    return await _modify(x, verbs.createprop, x.o.operands[3:])


async def op_appendprop(x: Context) -> int:
    # [369]: -appendprop retries on NI_MASTERBUSY even without -R (tools §1.2).
    return await _modify(x, verbs.appendprop, x.o.operands[3:], always_retry=True)


async def op_mergeprop(x: Context) -> int:
    return await _modify(x, verbs.mergeprop, x.o.operands[3:])


async def op_insertval(x: Context) -> int:
    value, index = x.o.operands[3], x.o.operands[4]
    if not is_integer(index):
        raise ToolExit(EXIT_BAD_INDEX, f"{PROG}: index for -insertval must be an integer",
                       f"found {index}")
    return await _modify(x, verbs.insertval, value, int(index))


async def op_destroyval(x: Context) -> int:
    return await _modify(x, verbs.destroyval, x.o.operands[3:])


async def op_destroyprop(x: Context) -> int:
    path, keys = x.o.operands[1], x.o.operands[2:]
    oid = await x.directory(path)
    for key in keys:
        try:
            await x.attempt(partial(verbs.destroyprop, x.c, oid, [key]))
        except _ERRORS as e:
            raise x.fail(e, f"can't destroy {key} in directory {path}") from None
    return 0


async def op_renameprop(x: Context) -> int:
    path, old, new = x.o.operands[1:4]
    oid = await x.directory(path)
    try:
        await x.attempt(lambda: verbs.renameprop(x.c, oid, old, new))
    except _ERRORS as e:
        raise x.fail(e, f"can't rename {old} in directory {path}") from None
    return 0


def _show_props(x: Context, props: list[tuple[str, list[str]]]) -> int:
    """``-read`` / ``-statistics`` output: ``key: v1 v2`` lines, or ``--json``."""
    if x.o.json:
        dump_json(props_json(props))
    else:
        sys.stdout.write(_props_lines(props))
    return 0


async def op_read(x: Context) -> int:
    path = x.o.operands[1]
    oid = await x.directory(path)
    try:
        props = await x.attempt(lambda: verbs.read(x.c, oid))
    except _ERRORS as e:
        raise x.fail(e, f"can't read directory {path}") from None
    return _show_props(x, props)


async def op_list(x: Context) -> int:
    path = x.o.operands[1]
    key = x.o.operands[2] if len(x.o.operands) > 2 else "name"
    oid = await x.directory(path, colon=False)  # the original's missing colon (tools §1.5)
    try:
        entries = await x.attempt(lambda: verbs.list_children(x.c, oid, key))
    except _ERRORS as e:
        raise x.fail(e, f"can't list directory {path}") from None
    if x.o.json:
        dump_json([{"id": cid, "values": vals} for cid, vals in entries])
    else:
        sys.stdout.write("".join(f"{cid}\t" + "".join(" " + v for v in vals) + "\n"
                                 for cid, vals in entries))
    return 0


async def op_readprop(x: Context) -> int:
    path, key = x.o.operands[1], x.o.operands[2]
    oid = await x.directory(path)
    try:
        vals = await x.attempt(lambda: verbs.readprop(x.c, oid, key))
    except _ERRORS as e:
        raise x.fail(e, f"can't get property {key} in directory {path}") from None
    if x.o.json:
        dump_json(vals)
    else:
        x.out(" ".join(vals))
    return 0


async def op_readval(x: Context) -> int:
    path, key, index = x.o.operands[1], x.o.operands[2], x.o.operands[3]
    oid = await x.directory(path)
    try:
        vals = await x.attempt(lambda: verbs.readprop(x.c, oid, key))
    except _ERRORS as e:
        raise x.fail(e, f"can't get property {key} in directory {path}") from None
    i = atoi(index)
    if not 0 <= i < len(vals):
        # The original's message (its %d of atoi(index)), then exit 0 (tools §1.5 quirk).
        raise ToolExit(EXIT_NO_VALUE, f"{PROG}: property {key} in directory {path} has no "
                       f"value at index {i}")
    if x.o.json:
        dump_json(vals[i])
    else:
        x.out(vals[i])
    return 0


async def op_rparent(x: Context) -> int:
    try:
        p = await x.attempt(lambda: verbs.rparent(x.c, x.o.numeric))
    except NiError as e:
        if e.status == Status.NETROOT:
            if x.o.json:
                dump_json(None)
            else:
                x.out("root domain: no parent")  # stdout, as the original (tools §1.4)
            return exit_code(e)
        raise x.fail(e, f"can't find rparent for domain {x.domain}") from None
    except COMM_ERRORS as e:
        raise x.fail(e, f"can't find rparent for domain {x.domain}") from None
    if x.o.json:
        dump_json({"host": p.host, "address": p.address, "tag": p.tag})
    else:
        x.out(f"{p.host}/{p.tag}")
    return 0


async def op_resync(x: Context) -> int:
    try:
        await x.attempt(lambda: verbs.resync(x.c))
    except _ERRORS as e:
        raise x.fail(e, f"can't resync domain {x.domain}", colon=False) from None
    return 0


async def op_statistics(x: Context) -> int:
    try:
        props = await x.attempt(lambda: verbs.statistics(x.c))
    except _ERRORS as e:
        raise x.fail(e, f"can't get statistics for domain {x.domain}") from None
    return _show_props(x, props)


async def op_domainname(x: Context) -> int:
    try:
        name = await x.attempt(lambda: verbs.domainname(x.c))
    except _ERRORS as e:
        raise x.fail(e, f"can't get name for domain {x.domain}") from None
    if x.o.json:
        dump_json(name)
    else:
        x.out(name)
    return 0


#: Operation name → handler: the one dispatch table of niutil.
HANDLERS: dict[str, Callable[[Context], Awaitable[int]]] = {
    "create": op_create, "destroy": op_destroy, "createprop": op_createprop,
    "appendprop": op_appendprop, "mergeprop": op_mergeprop, "insertval": op_insertval,
    "destroyprop": op_destroyprop, "destroyval": op_destroyval,
    "renameprop": op_renameprop, "read": op_read, "list": op_list,
    "readprop": op_readprop, "readval": op_readval, "rparent": op_rparent,
    "resync": op_resync, "statistics": op_statistics, "domainname": op_domainname,
}


async def _main(o: Options) -> int:
    assert o.op is not None
    domain = o.operands[0]
    c = await open_for_tool(PROG, domain, tagged=o.tagged, timeout=o.timeout)
    try:
        c.timeout = c.write_timeout = o.timeout
        where = f"server {domain}" if o.tagged else f"server for domain {domain}"
        try:
            await c.root()
        except _ERRORS as e:
            raise ToolExit(exit_code(e), f"{PROG}: can't connect to {where}: "
                           f"{error_text(e)}") from None
        if o.prompt or o.password is not None:
            try:
                await authenticate(c, o.user, o.password, o.prompt and o.password is None)
            except _ERRORS as e:
                raise ToolExit(exit_code(e), f"{PROG}: can't authenticate as "
                               f"{o.user or 'root'}: {error_text(e)}") from None
        if o.op.master:
            # All writes go to the master ("needwrite", tools §0.5); with -t the one
            # server named is used as it is (a clone then answers NI_RDONLY, §8 A12).
            try:
                await verbs.use_master(c)
            except _ERRORS as e:
                raise ToolExit(exit_code(e), f"{PROG}: can't connect to {where}: "
                               f"{error_text(e)}") from None
        return await HANDLERS[o.op.name](Context(c, o))
    finally:
        await c.close()


def main(argv: list[str] | None = None) -> int:
    """``niutil``: returns the exit status (tools §1.5)."""
    return tool_main(argv, parse_args, USAGE, USAGE + HELP_EXTRA, _main, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
