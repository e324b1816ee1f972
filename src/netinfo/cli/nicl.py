"""nicl: the NetInfo command line of Mac OS X, one-shot or interactive (tools §3).

::

    nicl . -read /users/root
    nicl -t 127.0.0.1/network -list /machines ip_address
    nicl -raw /var/db/netinfo/local.nidb -create /users/bob uid 501
    nicl .            # interactive: "/ > " prompt on a terminal, commands from stdin

Against a server every command goes through the client core; with ``-raw`` the database
directory is opened and edited in this process, with the same directory semantics
(:mod:`netinfo.server.service`). The verbs are those of :mod:`netinfo.client.verbs`; this module
is the syntax, the output formats of tools §3.3 and nicl's own statuses and exit codes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ..client import verbs
from ..client.core import Client
from ..client.domain import TaggedError, authenticate, open_domain
from ..errors import NetInfoError, NiError, Status, StorageError, TooLong
from ..model import Proplist, atoi, format_component, parse_path
from ..server.database import SQLITE_NAME, Database, DatabaseInUse, LocalChannel, open_database
from ..server.service import ServerInfo
from ..wire.protocol import PROCEDURES, Proc
from .common import (
    COMM_ERRORS,
    EXIT_ERROR,
    OUTPUT_ERRNOS,
    ToolExit,
    UsageError,
    dump_json,
    failure_reason,
    os_error_text,
    privileged_from_env,
    props_json,
    tool_main,
)

PROG = "nicl"

USAGE = """\
usage: nicl [options] <datasource> [<command>]
options:
    -c               create a new datasource (raw mode)
    -ro              read-only
    -p               prompt for password (user root)
    -u <user>        authenticate as user (implies -p)
    -P <password>    authentication password
    -raw             datasource is a database directory, e.g. /var/db/netinfo/local.nidb
    -t               datasource is <host>/<tag>
    -v               verbose record printing (-vv: with property indexes)
    -q               no interactive prompt
    -i               ask before deleting directories (interactive mode only)
    -x500            experimental X.500 naming (accepted; refs and setrdn are not supported)
    --json           machine-readable output
    --help           this text
commands:
    -read <path> [<key> ...]
    -list <path> [<key>]
    -search <path> <scopemin> <scopemax> <key> <val> [<key> <val> ...]
    -path <path>
    -create [<path> [<key> [<val> ...]]]
    -append <path> <key> <val> ...
    -merge <path> <key> <val> ...
    -insert <path> <key> <val> <index>
    -rename <path> <old_key> <new_key>
    -delete <path> [<key> [<val> ...]]
    -copy <path> <new_parent>
    -move <path> <new_parent>
    -load [<path>] <delim> <key> <val> ... [<delim> <key> <val> ...]
    -history [<|=|>|lt|eq|gt] [<version>]
    -statistics
    -domainname
    -rparent
    -resync
    -flush
    -echo <text> ...
    -source <file>
interactive commands: cd <path>, pwd, auth [<user> [<password>]], quit
"""

# -- nicl statuses (tools §3.3) ---------------------------------------------------------------

OK = 0
INVALID_STORE = 1001
NO_SUCH_FILE = 1002
WRITE_FAILED = 1004
INVALID_RECORD_ID = 2003
INVALID_PATH = 2004
INVALID_KEY = 2005
ACCESS_RESTRICTED = 4001
WRITE_RESTRICTED = 4003
FAILED = 9999

#: dsstatus → message (tools §3.3).
MESSAGES: dict[int, str] = {
    0: "Operation Succeeded",
    1001: "Invalid Datastore",
    1002: "No Such File",
    1003: "Read Failed",
    1004: "Write Failed",
    1005: "Invalid Update on Clone",
    1006: "Duplicate Record in Datastore",
    1007: "No Root Record in Datastore",
    1008: "Datastore Locked",
    2001: "Invalid Record",
    2002: "No Data",
    2003: "Invalid Record ID",
    2004: "Invalid Path",
    2005: "Invalid Key",
    2006: "Stale Record Serial Number",
    2007: "Path Not Local to Datastore",
    2008: "Constraint Violation",
    2009: "Naming Violation",
    2010: "Object Class Violation",
    3001: "Invalid Session Mode",
    3002: "Invalid Session",
    4001: "Access Restricted",
    4002: "Read Access Restricted",
    4003: "Write Access Restricted",
    9999: "Operation Failed",
}

#: Server status → dsstatus; anything else is 9999 (tools §3.3).
FROM_NI: dict[int, int] = {
    Status.BADID: 2003, Status.STALE: 2006, Status.NOSPACE: 1004, Status.RDONLY: 1004,
    Status.PERM: 4001, Status.AUTHERROR: 4001, Status.NOUSER: 4001, Status.NODIR: 2004,
    Status.NOPROP: 2005, Status.NONAME: 2002,
}


def ds_status(err: BaseException) -> int:
    """The dsstatus of an exception (tools §3.3 mapping)."""
    if isinstance(err, NiError):
        return FROM_NI.get(err.status, FAILED)
    return FAILED


def ds_text(err: BaseException) -> str:
    """The message of an exception: its dsstatus's (tools §3.3), then why when the
    status alone would hide it (a name or value longer than the protocol allows)."""
    text = ds_message(ds_status(err))
    return f"{text}: {err}" if isinstance(err, TooLong) else text


def ds_message(status: int) -> str:
    return MESSAGES.get(status, MESSAGES[FAILED])


class Fail(Exception):
    """A command failed: print *lines* on stderr, end with *status*."""

    def __init__(self, status: int, *lines: str) -> None:
        super().__init__(*lines)
        self.status = status
        self.lines = lines


class TooFew(Exception):
    """Too few parameters for the command (usage, status 0)."""


_ERRORS = (NiError, *COMM_ERRORS)
#: Exit status of a one-shot unknown command (the original exited 0; tools §3.3 has no
#: status for it: 1, as for the other argument errors).
EXIT_UNKNOWN_COMMAND = 1


# -- raw mode: the database edited in this process --------------------------------------------

class RawClient(Client):
    """A :class:`Client` over an in-process channel to a database opened here (``-raw``).

    Each call is answered by the :class:`~netinfo.server.database.Database` as the superuser,
    through the same procedure and result-kind tables as a server, and every write is
    committed at once; the domain-level procedures (RPARENT, RESYNC, ...) make no sense
    here.
    """

    UNSUPPORTED = frozenset({Proc.RPARENT, Proc.RESYNC, Proc.BIND, Proc.CRASHED,
                             Proc.READALL})

    def __init__(self, path: str, db: Database) -> None:
        self.channel = LocalChannel(db, refused=self.UNSUPPORTED)
        super().__init__(self.channel, "raw", 0, db.info.tag)  # type: ignore[arg-type]
        self.path = path
        self.db = db

    async def statistics(self) -> Proplist:
        """Raw statistics: checksum, version, max ID and this session's counts (§3.2)."""
        db = self.db
        calls = self.channel.calls
        writes = sum(n for p, n in calls.items() if PROCEDURES[p].is_write)
        removes = calls.get(Proc.DESTROY, 0)
        top = max((d.id.instance for d in db.directories()), default=0)
        return [("checksum", [str(db.checksum)]), ("version", [str(top)]),
                ("max_id", [str(db.highest_id() - 1)]),
                ("fetch_count", [str(sum(calls.values()) - writes)]),
                ("save_count", [str(writes - removes)]),
                ("remove_count", [str(removes)])]


def open_raw(path: str, create: bool) -> RawClient:
    """Open (or with *create* make) the database directory *path*.

    :raises FileNotFoundError: no database; :raises DatabaseInUse: a server holds it;
    :raises StorageError:, OSError.
    """
    p = Path(path)
    name = p.name
    if name.endswith(".nidb") and len(name) > 5:
        tag = name[:-5]
        return RawClient(path, open_database(p.parent, tag, ServerInfo(tag=tag),
                                             create=create))
    db = p / SQLITE_NAME
    if not db.exists() and not create:
        raise FileNotFoundError(path)
    p.mkdir(parents=True, exist_ok=True)
    return RawClient(path, open_database(p, name, ServerInfo(tag=name or "raw"),
                                         create=create, store=f"sqlite:{db}"))


# -- command line -----------------------------------------------------------------------------

@dataclass
class Options:
    """A parsed nicl command line: the options, the datasource and the command words
    (none: an interactive session)."""

    create: bool = False
    readonly: bool = False
    prompt: bool = False
    user: str | None = None
    password: str | None = None
    raw: bool = False
    tagged: bool = False
    verbose: int = 0
    quiet: bool = False
    confirm: bool = False
    x500: bool = False
    bold: bool = True
    json: bool = False
    help: bool = False
    datasource: str = ""
    words: list[str] = field(default_factory=list)


_FLAGS = {"-c": "create", "-ro": "readonly", "-p": "prompt", "-raw": "raw", "-t": "tagged",
          "-q": "quiet", "-i": "confirm", "-x500": "x500", "--json": "json", "--help": "help"}


def parse_args(args: list[str]) -> tuple[Options, list[str]]:
    """Options up to the first unknown word (the datasource, tools §3.1); the rest.

    :raises TooFew: a missing ``-u``/``-P`` value.
    """
    o = Options()
    i = 0
    while i < len(args):
        a = args[i]
        if a in _FLAGS:
            setattr(o, _FLAGS[a], True)
        elif a in ("-u", "-P"):
            if i + 1 >= len(args):
                raise TooFew()
            i += 1
            if a == "-u":
                o.user, o.prompt = args[i], True
            else:
                o.password = args[i]
        elif a == "-v":
            o.verbose = max(o.verbose, 1)
        elif a == "-vv":
            o.verbose = 2
        elif a == "-nobold":
            o.bold = False
        elif a == "-nonotify":
            pass
        else:
            break
        i += 1
    return o, args[i:]


def tokenize(line: str) -> list[str]:
    """Interactive line syntax: blanks separate words, ``"…"`` quotes, ``\\`` escapes the
    next character (tools §3.1)."""
    words: list[str] = []
    cur: list[str] = []
    have = False
    quoted = False
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line):
            cur.append(line[i + 1])
            have = True
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
            have = True
        elif ch in " \t\r\n" and not quoted:
            if have:
                words.append("".join(cur))
                cur, have = [], False
        else:
            cur.append(ch)
            have = True
        i += 1
    if have:
        words.append("".join(cur))
    return words


# -- output -----------------------------------------------------------------------------------

def _line(key: str, vals: list[str]) -> str:
    return key + ":" + "".join(" " + v for v in vals)


def split_meta(props: Proplist) -> tuple[list[tuple[int, str, list[str]]],
                                          list[tuple[int, str, list[str]]]]:
    """(ordinary, meta) properties with their stored indexes; meta keys start with ``_``."""
    normal: list[tuple[int, str, list[str]]] = []
    meta: list[tuple[int, str, list[str]]] = []
    for i, (k, v) in enumerate(props):
        (meta if k.startswith("_") else normal).append((i, k, list(v)))
    return normal, meta


def format_record(r: verbs.Record, verbose: int) -> str:
    """A record as nicl prints it (tools §3.3): ordinary properties, then meta ones; with
    *verbose* the ``Record:``/``Parent:``/``Children`` header and indented sections, with
    ``-vv`` each property prefixed by its index ``[i]``."""
    normal, meta = split_meta(r.props)
    if not verbose:
        return "".join(_line(k, v) + "\n" for _, k, v in normal + meta)

    def section(items: list[tuple[int, str, list[str]]]) -> str:
        pre = (lambda i: f"[{i}] ") if verbose > 1 else (lambda i: "")
        return "".join(f"    {pre(i)}{_line(k, v)}\n" for i, k, v in items)
    kids = "".join(" " + str(c) for c in r.children)
    return (f"Record: {r.id}   Version: {r.instance}   Serial: {r.instance}\n"
            f"Parent: {r.parent}\n"
            f"Children ({len(r.children)}):{kids}\n"
            f"Attributes:\n{section(normal)}"
            f"Meta-attributes:\n{section(meta)}")


def record_json(r: verbs.Record) -> dict[str, Any]:
    return {"id": r.id, "version": r.instance, "serial": r.instance, "parent": r.parent,
            "children": r.children, "properties": props_json(r.props)}


def nicl_order(props: Proplist) -> Proplist:
    """Ordinary properties first, then meta properties (tools §3.3)."""
    normal, meta = split_meta(props)
    return [(k, v) for _, k, v in normal + meta]


# -- the session ------------------------------------------------------------------------------

class Cmd(NamedTuple):
    """One nicl command: its handler, minimum arguments and whether it writes."""

    handler: str
    minimum: int
    writes: bool = False
    raw_ok: bool = True
    interactive_only: bool = False


COMMANDS: dict[str, Cmd] = {
    "read": Cmd("c_read", 1), "list": Cmd("c_list", 1), "search": Cmd("c_search", 5),
    "path": Cmd("c_path", 1), "create": Cmd("c_create", 0, True),
    "append": Cmd("c_append", 3, True), "merge": Cmd("c_merge", 3, True),
    "insert": Cmd("c_insert", 4, True), "rename": Cmd("c_rename", 3, True),
    "delete": Cmd("c_delete", 1, True), "copy": Cmd("c_copy", 2, True),
    "move": Cmd("c_move", 2, True), "load": Cmd("c_load", 2, True),
    "history": Cmd("c_history", 0), "statistics": Cmd("c_statistics", 0),
    "domainname": Cmd("c_domainname", 0, raw_ok=False),
    "rparent": Cmd("c_rparent", 0, raw_ok=False), "resync": Cmd("c_resync", 0, raw_ok=False),
    "flush": Cmd("c_flush", 0), "echo": Cmd("c_echo", 0), "source": Cmd("c_source", 1),
    "cd": Cmd("c_cd", 0, interactive_only=True), "pwd": Cmd("c_pwd", 0, interactive_only=True),
    "auth": Cmd("c_auth", 0, interactive_only=True),
    "refs": Cmd("c_x500", 0), "setrdn": Cmd("c_x500", 0),
    "attach": Cmd("c_repair", 2), "detach": Cmd("c_repair", 2), "parent": Cmd("c_repair", 2),
}

ALIASES = {"cat": "read", ".": "read", "ls": "list", "mk": "create", "createprop": "create",
           "rm": "delete", "destroy": "delete", "destroyprop": "delete", "cp": "copy",
           "mv": "move", "hist": "history", "stats": "statistics", "name": "domainname",
           "<": "source", "su": "auth"}

QUIT = ("quit", "exit", "q")


class Session:
    """One nicl run: the datasource, the current directory, and the command table."""

    def __init__(self, c: Client, o: Options, datasource: str, interactive: bool) -> None:
        self.c = c
        self.o = o
        self.ds = datasource
        self.interactive = interactive
        self.cwd = 0
        self.cmd = ""
        self.on_master = False

    # -- helpers ------------------------------------------------------------------------------

    def out(self, text: str) -> None:
        """Write to stdout. An output error ends the run with its own message (common's
        top-level handler); it is not a failure of the command (tools §3.3 statuses)."""
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:
            raise
        except OSError as e:
            raise ToolExit(EXIT_ERROR, f"{PROG}: {os_error_text(e)}") from None

    async def dir(self, path: str) -> int:
        """Resolve a nicl path: an ID when all digits (``00`` is not 0), else from the root
        (leading ``/``) or the current directory, ``.`` and ``..`` allowed (tools §0.4)."""
        c = self.c
        if verbs.is_id(path):
            n = int(path)
            if n == 0 and path != "0":
                raise Fail(INVALID_RECORD_ID, f"{self.cmd}: {ds_message(INVALID_RECORD_ID)}")
            try:
                return (await c.self_id(n)).object
            except _ERRORS as e:
                raise Fail(ds_status(e), f"Fetch record {n} failed: "
                           f"{ds_message(ds_status(e))}") from None
        try:
            cur = 0 if path.startswith("/") else self.cwd
            for key, value in parse_path(path):
                if key == "name" and value == ".":
                    continue
                if key == "name" and value == "..":
                    cur = (await c.parent(cur))[0]
                    continue
                found, _ = await c.lookup(cur, key, value)
                cur = found[0]
            return cur
        except _ERRORS as e:
            raise Fail(ds_status(e), f"{self.cmd}: {ds_text(e)}") from None

    def failed(self, e: BaseException, prefix: str) -> Fail:
        return Fail(ds_status(e), f"{prefix}{ds_text(e)}")

    async def pathname(self, oid: int) -> str:
        """A printable path of *oid*: its ``name`` values up to the root."""
        parts: list[str] = []
        c = self.c
        seen = 0
        while oid != 0 and seen < 1000:
            seen += 1
            _, props = await c.read(oid)
            names = next((v for k, v in props if k == "name" and v), None)
            parts.append(format_component("name", names[0]) if names else str(oid))
            oid = (await c.parent(oid))[0]
        return "/" + "/".join(reversed(parts))

    def with_dir(self, args: list[str], needed: int) -> list[str]:
        """Interactive sessions default the directory to the current one when exactly
        one argument (the directory) is missing."""
        if self.interactive and len(args) == needed - 1:
            return ["."] + args
        return args

    async def show(self, oid: int) -> str:
        if self.o.verbose:
            return format_record(await verbs.record(self.c, oid), self.o.verbose)
        return format_record(verbs.Record(oid, 0, 0, [], await verbs.read(self.c, oid)),
                             0)

    # -- running ------------------------------------------------------------------------------

    async def execute(self, words: list[str]) -> int:
        """Run one command line; returns its dsstatus."""
        name = words[0]
        if name.startswith("-") and len(name) > 1:
            name = name[1:]
        name = ALIASES.get(name, name)
        cmd = COMMANDS.get(name)
        if cmd is None or (cmd.interactive_only and not self.interactive):
            if self.interactive:
                sys.stderr.write(USAGE)   # the original's answer (tools §3.1); go on
                return OK
            # One-shot: the original printed the usage and exited 0, so a typo in a
            # script passed unnoticed; now it is an error (issue #9).
            print(f"{PROG}: unknown command {words[0]} ({PROG} --help lists them)",
                  file=sys.stderr)
            return EXIT_UNKNOWN_COMMAND
        self.cmd = name
        args = words[1:]
        try:
            if cmd.writes and self.o.readonly:
                raise Fail(WRITE_RESTRICTED, f"{name}: {ds_message(WRITE_RESTRICTED)}")
            if not cmd.raw_ok and isinstance(self.c, RawClient):
                raise Fail(FAILED, f"{name}: not available in raw mode")
            if (cmd.writes or name == "resync") and not self.on_master:
                # from the first write on, read from the master too (fresh instances)
                await verbs.use_master(self.c)
                self.on_master = True
            return await getattr(self, cmd.handler)(args, cmd)
        except TooFew:
            print(f"Too few parameters for {name} operation", file=sys.stderr)
            sys.stderr.write(USAGE)
            return OK
        except Fail as f:
            for line in f.lines:
                print(line, file=sys.stderr)
            return f.status
        except _ERRORS as e:
            if isinstance(e, BrokenPipeError) or (isinstance(e, OSError)
                                                  and e.errno in OUTPUT_ERRNOS):
                raise   # our output failed, not the command: the top-level handler says so
            print(f"{name}: {ds_text(e)}", file=sys.stderr)
            return ds_status(e)

    def need(self, args: list[str], n: int) -> None:
        if len(args) < n:
            raise TooFew()

    # -- reading ------------------------------------------------------------------------------

    async def c_read(self, args: list[str], cmd: Cmd) -> int:
        args = self.with_dir(args, 1)
        self.need(args, 1)
        oid = await self.dir(args[0])
        try:
            r = await verbs.record(self.c, oid)
        except _ERRORS as e:
            raise self.failed(e, f"Fetch record {oid} failed: ") from None
        keys = args[1:]
        status = OK
        if keys:
            picked: Proplist = []
            for k in keys:
                vals = next((v for kk, v in r.props if kk == k), None)
                if vals is None:
                    print(f"No such key: {k}", file=sys.stderr)
                    status = INVALID_KEY
                else:
                    picked.append((k, vals))
            if self.o.json:
                dump_json(props_json(picked))
            else:
                self.out("".join(_line(k, v) + "\n" for k, v in picked))
            return status
        if self.o.json:
            dump_json(record_json(r))
        else:
            self.out(format_record(r, self.o.verbose))
        return OK

    async def c_list(self, args: list[str], cmd: Cmd) -> int:
        args = self.with_dir(args, 1)
        self.need(args, 1)
        oid = await self.dir(args[0])
        key = args[1] if len(args) > 1 else "name"
        entries = [(cid, vals) for cid, vals in
                   await verbs.list_children(self.c, oid, key) if vals]
        if self.o.json:
            dump_json([{"id": cid, "values": vals} for cid, vals in entries])
        else:
            self.out("".join(f"{cid:<10}" + "".join(" " + v for v in vals) + "\n"
                             for cid, vals in entries))
        return OK

    async def c_search(self, args: list[str], cmd: Cmd) -> int:
        if self.interactive and len(args) >= 4 and len(args) % 2 == 0:
            args = ["."] + args
        self.need(args, 5)
        oid = await self.dir(args[0])
        lo, hi = atoi(args[1]), atoi(args[2])
        if hi >= 0 and lo > hi:
            raise Fail(FAILED, f"Scope minimum ({lo}) > maximum ({hi}) precludes search")
        rest = args[3:]
        pairs = [(rest[i], rest[i + 1]) for i in range(0, len(rest) - 1, 2)]
        found = await verbs.search(self.c, oid, lo, hi, pairs)
        if self.o.json:
            dump_json([record_json(await verbs.record(self.c, d)) for d, _ in found])
            return OK
        n = len(found)
        text = [f"Search found {n} match{'' if n == 1 else 'es'}\n"]
        for d, props in found:
            text.append("\n")
            text.append(await self.show(d) if self.o.verbose else
                        format_record(verbs.Record(d, 0, 0, [], props), 0))
        self.out("".join(text))
        return OK

    async def c_path(self, args: list[str], cmd: Cmd) -> int:
        args = self.with_dir(args, 1)
        self.need(args, 1)
        oid = await self.dir(args[0])
        chain = await verbs.ancestry(self.c, oid)
        if self.o.json:
            dump_json([record_json(await verbs.record(self.c, d)) for d in chain])
            return OK
        self.out("\n".join([await self.show(d) for d in chain]))
        return OK

    async def c_history(self, args: list[str], cmd: Cmd) -> int:
        vers = await verbs.versions(self.c)
        top = max((v for _, v in vers), default=0)
        ops = {"<": "<", "lt": "<", "=": "=", "eq": "=", ">": ">", "gt": ">"}
        if not args:
            if self.o.json:
                dump_json({"maximum_version": top})
            else:
                self.out(f"Maximum version: {top}\n")
            return OK
        if args[0] in ops:
            self.need(args, 2)
            op, v = ops[args[0]], atoi(args[1])
            test = {"<": lambda x: x < v, "=": lambda x: x == v, ">": lambda x: x > v}[op]
            hits = [(d, x) for d, x in vers if test(x)]
            if self.o.json:
                dump_json([{"id": d, "version": x} for d, x in hits])
            else:
                self.out("".join(f"{d:<10} {x}\n" for d, x in hits))
            return OK
        v = atoi(args[0])
        hits = [(d, x) for d, x in vers if x == v]
        if self.o.json:
            dump_json([{"id": d, "version": x} for d, x in hits])
        else:
            self.out("".join(f"Record: {d}   Version: {x}\n" for d, x in hits))
        return OK

    async def c_statistics(self, args: list[str], cmd: Cmd) -> int:
        props = await verbs.statistics(self.c)
        if self.o.json:
            dump_json(props_json(props))
        else:
            self.out("".join(_line(k, v) + "\n" for k, v in props))
        return OK

    async def c_domainname(self, args: list[str], cmd: Cmd) -> int:
        name = await verbs.domainname(self.c)
        if self.o.json:
            dump_json(name)
        else:
            self.out(name + "\n")
        return OK

    async def c_rparent(self, args: list[str], cmd: Cmd) -> int:
        p = await verbs.rparent(self.c, numeric=True)
        if self.o.json:
            dump_json({"address": p.address, "tag": p.tag})
        else:
            self.out(f"{p.address}/{p.tag}\n")
        return OK

    async def c_resync(self, args: list[str], cmd: Cmd) -> int:
        await verbs.resync(self.c)
        return OK

    # -- writing ------------------------------------------------------------------------------

    async def c_create(self, args: list[str], cmd: Cmd) -> int:
        if not args:
            if isinstance(self.c, RawClient):
                return OK  # the database exists now (opened with create, see main)
            raise Fail(1, "Can't create a NetInfo domain")
        try:
            oid = await verbs.create_path(self.c, args[0], self.cwd, dots=True)
            if len(args) > 1:
                await verbs.createprop(self.c, oid, args[1], args[2:], meta_last=True)
        except _ERRORS as e:
            raise self.failed(e, "Create failed: ") from None
        return OK

    async def _values(self, args: list[str], verb: Callable[..., Awaitable[Any]],
                      label: str) -> int:
        self.need(args, 3)
        oid = await self.dir(args[0])
        try:
            await verb(self.c, oid, args[1], args[2:], meta_last=True)
        except _ERRORS as e:
            raise self.failed(e, f"{label} failed: ") from None
        return OK

    async def c_append(self, args: list[str], cmd: Cmd) -> int:
        return await self._values(args, verbs.appendprop, "Append")

    async def c_merge(self, args: list[str], cmd: Cmd) -> int:
        return await self._values(args, verbs.mergeprop, "Merge")

    async def c_insert(self, args: list[str], cmd: Cmd) -> int:
        args = self.with_dir(args, 4)
        self.need(args, 4)
        oid = await self.dir(args[0])
        key, val, index = args[1], args[2], atoi(args[3])
        try:
            # nicl refuses a missing key, whatever its manual says (tools §3.2).
            await verbs.insertval(self.c, oid, key, val, index, create=False,
                                     meta_last=True)
        except _ERRORS as e:
            raise self.failed(e, f"Insert failed: {key}: ") from None
        return OK

    async def c_rename(self, args: list[str], cmd: Cmd) -> int:
        args = self.with_dir(args, 3)
        self.need(args, 3)
        oid = await self.dir(args[0])
        try:
            await verbs.renameprop(self.c, oid, args[1], args[2])
        except _ERRORS as e:
            raise self.failed(e, "Rename: ") from None
        return OK

    async def c_delete(self, args: list[str], cmd: Cmd) -> int:
        self.need(args, 1)
        oid = await self.dir(args[0])
        c = self.c
        if len(args) == 1:
            if oid == 0:
                raise Fail(FAILED, "Can't delete root!")
            if self.o.confirm and not await self.ask(f"Delete {await self.pathname(oid)}? "):
                return OK
            name = await self.pathname(oid) if self.o.verbose else ""
            try:
                gone = await verbs.destroy(c, oid)
            except _ERRORS as e:
                raise self.failed(e, "Delete: ") from None
            if self.o.verbose:   # a deletion says how much it removed (issue #9)
                print(f"Deleted {name}: {gone} "
                      f"director{'y' if gone == 1 else 'ies'}", file=sys.stderr)
            if self.cwd != 0 and oid in await self._ancestry_or_root(self.cwd):
                self.cwd = 0
            return OK
        key = args[1]
        try:
            if len(args) == 2:
                await verbs.destroyprop(c, oid, [key], missing_ok=False)
            else:
                await verbs.destroyval(c, oid, key, args[2:], missing_ok=False)
        except NiError as e:
            if e.status == Status.NOPROP:
                raise Fail(INVALID_KEY, f"No such key: {key}") from None
            raise self.failed(e, "Delete: ") from None
        except COMM_ERRORS as e:
            raise self.failed(e, "Delete: ") from None
        return OK

    async def _ancestry_or_root(self, oid: int) -> list[int]:
        try:
            return await verbs.ancestry(self.c, oid)
        except _ERRORS:
            return [oid]

    async def ask(self, question: str) -> bool:
        self.out(question + "(y/n) ")
        answer = sys.stdin.readline()
        return answer.strip().lower().startswith("y")

    async def c_copy(self, args: list[str], cmd: Cmd) -> int:
        self.need(args, 2)
        src, dst = await self.dir(args[0]), await self.dir(args[1])
        try:
            await verbs.copy(self.c, src, dst)
        except _ERRORS as e:
            raise self.failed(e, "Copy failed: ") from None
        return OK

    async def c_move(self, args: list[str], cmd: Cmd) -> int:
        self.need(args, 2)
        src, dst = await self.dir(args[0]), await self.dir(args[1])
        try:
            await verbs.move(self.c, src, dst)
        except _ERRORS as e:
            raise self.failed(e, "Move failed: ") from None
        return OK

    async def c_load(self, args: list[str], cmd: Cmd) -> int:
        # "load + name foo + bar a b c": the first word is the delimiter; with a directory
        # first, the delimiter is the second word ("load /users + name foo").
        where = "."
        if len(args) >= 2 and len(args[1]) == 1 and not args[1].isalnum() \
                and args[0] != args[1] and len(args[0]) != 1:
            where, args = args[0], args[1:]
        elif len(args) >= 3 and len(args[0]) == 1 and len(args[1]) == 1 \
                and not args[1].isalnum() and args[2] != args[1] and args[0] != args[1]:
            where, args = args[0], args[1:]   # a one-character directory: "load / + ..."
        self.need(args, 2)
        delim = args[0]
        props: Proplist = []
        expect_key = True
        for w in args[1:]:
            if w == delim:
                expect_key = True
            elif expect_key:
                props.append((w, []))
                expect_key = False
            else:
                props[-1][1].append(w)
        if not props:
            raise TooFew()
        parent = await self.dir(where)
        try:
            await verbs.create_child(self.c, parent, nicl_order(props))
        except _ERRORS as e:
            raise self.failed(e, "Load failed: ") from None
        return OK

    # -- the rest -----------------------------------------------------------------------------

    async def c_flush(self, args: list[str], cmd: Cmd) -> int:
        return OK  # no cache is kept: every command reads the server afresh

    async def c_echo(self, args: list[str], cmd: Cmd) -> int:
        self.out(" ".join(args) + "\n")
        return OK

    async def c_source(self, args: list[str], cmd: Cmd) -> int:
        try:
            with open(args[0], encoding="utf-8", errors="surrogateescape") as f:
                lines = f.readlines()
        except OSError:
            raise Fail(NO_SUCH_FILE, f"source: {ds_message(NO_SUCH_FILE)}") from None
        status = OK
        for line in lines:
            words = tokenize(line)
            if not words:
                continue
            if words[0] in QUIT:
                break
            status = await self.execute(words)
        return status

    async def c_cd(self, args: list[str], cmd: Cmd) -> int:
        self.cwd = await self.dir(args[0]) if args else 0
        return OK

    async def c_pwd(self, args: list[str], cmd: Cmd) -> int:
        self.out(await self.pathname(self.cwd) + "\n")
        return OK

    async def c_auth(self, args: list[str], cmd: Cmd) -> int:
        user = args[0] if args else None
        pw = args[1] if len(args) > 1 else None
        try:
            await authenticate(self.c, user, pw, prompt=pw is None)
        except _ERRORS as e:
            raise self.failed(e, "auth: ") from None
        return OK

    async def c_x500(self, args: list[str], cmd: Cmd) -> int:
        raise Fail(FAILED, f"{self.cmd}: X.500 naming is not supported")

    async def c_repair(self, args: list[str], cmd: Cmd) -> int:
        raise Fail(FAILED, f"{self.cmd}: not supported")

    # -- interactive mode ---------------------------------------------------------------------

    async def prompt_text(self) -> str:
        try:
            p = await self.pathname(self.cwd) + " > "
        except _ERRORS:
            p = "> "
        if self.o.bold and os.environ.get("TERM", "").startswith("vt100"):
            p = "\033[1m" + p + "\033[0m"
        return p

    async def interact(self) -> int:
        show = not self.o.quiet and sys.stdin.isatty()
        while True:
            if show:
                self.out(await self.prompt_text())
            line = sys.stdin.readline()
            if not line:
                if show:
                    self.out("\n")
                break
            words = tokenize(line)
            if not words:
                continue
            if words[0].lstrip("-") in QUIT:
                break
            await self.execute(words)
        self.out("Goodbye\n")
        return 0


# -- main -------------------------------------------------------------------------------------

async def _open(o: Options, ds: str, create: bool) -> Client:
    """The datasource: a database directory (``-raw``) or a served domain."""
    if o.raw:
        try:
            return open_raw(ds, create or o.create)
        except FileNotFoundError:
            raise Fail(NO_SUCH_FILE & 0xFF, f"open({ds}): {ds_message(NO_SUCH_FILE)}") \
                from None
        except DatabaseInUse as e:
            raise Fail(INVALID_STORE & 0xFF, f"{PROG}: {e}") from None
        except (OSError, StorageError) as e:
            # tools §3.3's "open(<ds>): Invalid Datastore", then what is wrong with it
            what = "create" if create or o.create else "open"
            st = WRITE_FAILED if what == "create" else INVALID_STORE
            raise Fail(st & 0xFF, f"{what}({ds}): {ds_message(st)}: {failure_reason(e)}") \
                from None
    # The original's nistore_open turned every failure to open a served domain into
    # DSStatusInvalidStore (tools §3.3: "open(<ds>): Invalid Datastore", 1001 → exit
    # 233), after do_open's own lines for a -t argument that does not parse (§0.2).
    bad = f"open({ds}): {ds_message(INVALID_STORE)}"
    try:
        return await open_domain(ds, tagged=o.tagged, privileged=privileged_from_env(),
                                 retries=2)
    except TaggedError as e:
        lines = [f"Can't find address for {e.host}"] if e.code == 5 else []
        lines += [f"{PROG}: incorrect format for domain {ds} ({e})",
                  "usage: -t <host>/<tag>", "<host> can be a host name or IP address", bad]
        raise Fail(INVALID_STORE & 0xFF, *lines) from None
    except (NetInfoError, OSError) as e:
        # then why: an unknown domain, tag or nibindd, a malformed name
        raise Fail(INVALID_STORE & 0xFF, f"{bad}: {failure_reason(e)}") from None


async def _run(o: Options, ds: str, words: list[str]) -> int:
    sole_create = len(words) == 1 and words[0].lstrip("-") in ("create", "mk", "createprop")
    if (sole_create or o.create) and not o.raw:
        print("Can't create a NetInfo domain", file=sys.stderr)
        return 1
    c = await _open(o, ds, sole_create)
    try:
        if o.prompt or o.password is not None:
            try:
                await authenticate(c, o.user, o.password, o.prompt and o.password is None)
            except _ERRORS as e:
                st = ds_status(e)
                raise Fail(st & 0xFF, f"auth: {ds_message(st)}") from None
        s = Session(c, o, ds, interactive=not words)
        if not words:
            return await s.interact()
        return await s.execute(words) & 0xFF
    finally:
        await c.close()


def parse_command_line(args: list[str]) -> Options:
    """The whole command line (tools §3.1): options, then the datasource and the
    command words. :raises UsageError: no datasource, or a missing option value."""
    try:
        o, rest = parse_args(args)
    except TooFew:
        raise UsageError() from None
    if o.help:
        return o
    if not rest:
        raise UsageError()
    o.datasource, o.words = rest[0], rest[1:]
    return o


async def _main(o: Options) -> int:
    if o.confirm and o.words:
        raise ToolExit(1, f"{PROG}: -i needs an interactive session")
    try:
        return await _run(o, o.datasource, o.words)
    except Fail as f:
        raise ToolExit(f.status, *f.lines) from None


def main(argv: list[str] | None = None) -> int:
    """``nicl``: returns the exit status (tools §3.3)."""
    return tool_main(argv, parse_command_line, USAGE, USAGE, _main, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
