"""nihistory: who changed what in a domain, when — and put it back (issue 24).

::

    nihistory [opts] [-t host/tag | domain] [PATH] [--since TIME] [--until TIME]
              [--user NAME] [--limit N] [--json]
    nihistory [opts] [domain] --show SEQ [--json]
    nihistory [opts] [domain] --at TIME PATH [-r] [--json]
    nihistory [opts] [domain] --revert SEQ [--force]
    nihistory [opts] [domain] --revert-after TIME [PATH] [--force]

It reads the domain's change history through netinfod's history program
(``wire.history``): the superuser (root on a reserved port, or the owner of an
unprivileged server) reads all of it; a user who gives a password (``-u``, ``-p``,
``-P``, as niutil) reads the changes to the directories it may write. Reverts are new
writes through the domain's master with the NETINFO procedures (spec §4.3): DESTROY of a
directory a change created, CREATE with its old number (and the next instance, spec
§5.3) of one it destroyed, at its old position, and WRITE of the old proplist (old
property order) of one it changed; they are replicated and journalled like any write. A
revert refuses, naming it, when a later change (one not being reverted) touched the same
directory, unless ``--force``.

TIME is ``#SEQ`` (right after change SEQ), an ISO date and time in local time
(``2026-12-06``, ``2026-12-06T04:30``, ``2026-12-06 04:30:15``), seconds since the epoch
as ``@N``, ``now``, or an age: ``-30s``, ``-10m``, ``-2h``, ``-3d``.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..client.domain import authenticate
from ..client.history import (
    CannotRevert,
    Past,
    changed,
    conflicts,
    entries,
    entry,
    last_seq_at,
    revert_one,
)
from ..errors import NiError, Status
from ..model import Proplist, parse_path
from ..wire.history import (
    FROM_MASTER,
    NO_DIR,
    OWNER,
    SUPERUSER,
    WHOLE_TREE,
    Entry,
    Query,
    State,
)
from ..wire.protocol import Proc
from .common import (
    COMM_ERRORS,
    DEFAULT_TIMEOUT,
    ToolExit,
    UsageError,
    dump_json,
    exit_code,
    open_for_tool,
    parse_timeout,
    props_json,
    tool_main,
)

PROG = "nihistory"
USAGE = f"""usage: {PROG} [opts] [-t host/tag | domain] [PATH] [--since TIME] [--until TIME]
                 [--user NAME] [--limit N] [--json]
       {PROG} [opts] [domain] --show SEQ [--json]
       {PROG} [opts] [domain] --at TIME PATH [-r] [--json]
       {PROG} [opts] [domain] --revert SEQ [--force]
       {PROG} [opts] [domain] --revert-after TIME [PATH] [--force]
"""
HELP = f"""{USAGE}
List a domain's changes, newest first, one line each: sequence number, time, who
(user@address), procedure and path; show one change's before and after; print a
directory as it was; or put changes back as new writes through the master.

options:
  -t              the domain operand is <host>/<tag>
  -T timeout      read timeout in seconds (default 30)
  -u user         authenticate as user (default root with -p or -P)
  -p              prompt for the password
  -P password     the password
  --since TIME    only changes made at or after TIME
  --until TIME    only changes made before TIME
  --user NAME     only NAME's changes
  --limit N       at most N changes
  --json          JSON output
  --show SEQ      change SEQ's before and after
  --at TIME       PATH as it was at TIME
  -r              with --at: the whole subtree
  --revert SEQ    undo change SEQ
  --revert-after TIME
                  undo every change after TIME (under PATH)
  --force         revert even over later changes to the same directories
  -h, --help      this text

The first operand is the domain (default ., the local domain; with -t, host/tag), the
second the PATH. TIME: #SEQ (right after change SEQ), an ISO date and time
(local), @SECONDS since the epoch, now, or an age: -30s, -10m, -2h, -3d.
"""
_ERRORS = (NiError, *COMM_ERRORS)


@dataclass
class Options:
    """A parsed nihistory command line."""

    domain: str = "."
    path: str | None = None
    tagged: bool = False
    timeout: float = DEFAULT_TIMEOUT
    user: str | None = None
    prompt: bool = False
    password: str | None = None
    since: str | None = None
    until: str | None = None
    who: str | None = None
    limit: int | None = None
    json: bool = False
    show: int | None = None
    at: str | None = None
    recursive: bool = False
    revert: int | None = None
    revert_after: str | None = None
    force: bool = False
    help: bool = False


_VALUED = {"-T": "timeout", "-u": "user", "-P": "password", "--since": "since",
           "--until": "until", "--user": "who", "--limit": "limit", "--show": "show",
           "--at": "at", "--revert": "revert", "--revert-after": "revert_after"}
_FLAGS = {"-t": "tagged", "-p": "prompt", "--json": "json", "-r": "recursive",
          "--force": "force", "-h": "help", "--help": "help"}


def _number(option: str, text: str) -> int:
    if not text.isdigit():
        raise UsageError(f"{PROG}: {option} needs a number, not {text!r}")
    return int(text)


def parse_args(args: list[str]) -> Options:
    """:raises UsageError:."""
    o = Options()
    operands: list[str] = []
    it = iter(args)
    for a in it:
        name, eq, inline = a.partition("=")
        if a in _FLAGS:
            setattr(o, _FLAGS[a], True)
        elif name in _VALUED:
            value = inline if eq else next(it, None)
            if value is None:
                raise UsageError(f"{PROG}: {name} needs a value")
            field = _VALUED[name]
            if field == "timeout":
                o.timeout = parse_timeout(value, prog=PROG)
            elif field in ("limit", "show", "revert"):
                setattr(o, field, _number(name, value))
            else:
                setattr(o, field, value)
        elif a.startswith("-") and len(a) > 1:
            raise UsageError(f"{PROG}: unknown option {a}")
        else:
            operands.append(a)
    modes = [m for m in (o.show, o.at, o.revert, o.revert_after) if m is not None]
    if len(modes) > 1:
        raise UsageError(f"{PROG}: --show, --at, --revert and --revert-after go alone")
    if len(operands) > 2:
        raise UsageError(f"{PROG}: too many operands")
    if operands:
        o.domain = operands.pop(0)
    elif o.tagged:
        raise UsageError(f"{PROG}: -t needs host/tag")
    o.path = operands[0] if operands else None
    if o.at is not None and o.path is None:
        raise UsageError(f"{PROG}: --at needs a PATH")
    for t in (o.since, o.until, o.at, o.revert_after):
        if t is not None:
            parse_time(t)
    return o


_AGE = re.compile(r"-(\d+(?:\.\d+)?)([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, now: float | None = None) -> tuple[str, int]:
    """("seq", N) for ``#N``, else ("time", microseconds since the epoch).
    :raises UsageError:."""
    now = time.time() if now is None else now
    if text.startswith("#") and text[1:].isdigit():
        return "seq", int(text[1:])
    if text == "now":
        return "time", int(now * 1e6)
    if text.startswith("@"):
        try:
            return "time", int(float(text[1:]) * 1e6)
        except ValueError:
            pass
    m = _AGE.fullmatch(text)
    if m:
        return "time", int((now - float(m.group(1)) * _UNIT[m.group(2)]) * 1e6)
    try:
        return "time", int(datetime.fromisoformat(text).timestamp() * 1e6)
    except ValueError:
        raise UsageError(f"{PROG}: not a time: {text!r} (#SEQ, an ISO date and time, "
                         f"@SECONDS, now, or -30s/-10m/-2h/-3d)") from None


# -- formatting -------------------------------------------------------------------------------

def when(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6).isoformat(sep=" ", timespec="seconds")


def proc_name(proc: int) -> str:
    if proc == WHOLE_TREE:
        return "REPLACE"
    try:
        return Proc(proc).name
    except ValueError:
        return str(proc)


def who(e: Entry) -> str:
    name = e.user or ("root" if e.flags & SUPERUSER else "anonymous")
    if e.flags & FROM_MASTER:
        name = "master"
    return f"{name}@{e.addr}" if e.addr else name


def entry_json(e: Entry, states: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "seq": e.seq, "time": datetime.fromtimestamp(e.time / 1e6).isoformat(),
        "timestamp": e.time / 1e6, "user": e.user or None,
        "superuser": bool(e.flags & SUPERUSER), "owner": bool(e.flags & OWNER),
        "from_master": bool(e.flags & FROM_MASTER), "address": e.addr, "port": e.port,
        "procedure": proc_name(e.proc), "path": e.path,
        "dir": None if e.dir == NO_DIR else e.dir}
    if states:
        out["touched"] = [{"dir": d.id, "before": state_json(d.before),
                           "after": state_json(d.after)} for d in e.touched]
    return out


def state_json(s: State | None) -> dict[str, Any] | None:
    if s is None:
        return None
    return {"instance": s.instance, "parent": s.parent,
            "position": None if s.position < 0 else s.position,
            "properties": props_json(s.props)}


def prop_lines(props: Proplist, indent: str = "") -> list[str]:
    return [f"{indent}{k}: {' '.join(v)}".rstrip() for k, v in props]


def show_text(e: Entry) -> list[str]:
    lines = [f"{e.seq}  {when(e.time)}  {who(e)}  {proc_name(e.proc)}  {e.path}"]
    for d in e.touched:
        b, a = d.before, d.after
        what = ("created" if b is None else "destroyed" if a is None
                else "changed" if changed(b, a) else "instance only")
        lines.append(f"directory {d.id}: {what}")
        for label, s in (("before", b), ("after", a)):
            if s is None:
                lines.append(f"  {label}: none")
                continue
            pos = "" if s.position < 0 else f", position {s.position}"
            lines.append(f"  {label} (instance {s.instance}, parent {s.parent}{pos}):")
            if label == "after" or what != "instance only":
                lines += prop_lines(s.props, "    ")
    return lines


# -- the modes ---------------------------------------------------------------------------------

async def _list(client: Any, o: Options) -> int:
    q = Query(path=o.path or "", user=o.who or "")
    for text, lo in ((o.since, True), (o.until, False)):
        if text is None:
            continue
        kind, v = parse_time(text)
        if kind == "seq":
            q = q._replace(min_seq=v + 1) if lo else q._replace(max_seq=v)
        else:
            q = q._replace(since=v) if lo else q._replace(until=v)
    got = [e async for e in entries(client, q, o.limit)]
    if o.json:
        dump_json([entry_json(e) for e in got])
    else:
        for e in got:
            print(f"{e.seq}\t{when(e.time)}\t{who(e)}\t{proc_name(e.proc)}\t{e.path}")
    return 0


async def _show(client: Any, o: Options) -> int:
    assert o.show is not None
    e = await entry(client, o.show)
    if e is None:
        raise ToolExit(1, f"{PROG}: no change {o.show} in the history (trimmed, not made "
                          f"yet, or not yours to read)")
    if o.json:
        dump_json(entry_json(e, states=True))
    else:
        print("\n".join(show_text(e)))
    return 0


async def boundary(client: Any, text: str) -> int:
    kind, v = parse_time(text)
    return v if kind == "seq" else await last_seq_at(client, v + 1)


async def _at(client: Any, o: Options) -> int:
    assert o.at is not None and o.path is not None
    past = Past(client, await boundary(client, o.at))
    components = [c.value for c in parse_path(o.path)]
    oid = await past.find(o.path, components)
    if oid is None:
        raise ToolExit(105, f"{PROG}: {o.path}: no such directory at {o.at}")
    out: list[dict[str, Any]] = []
    await _collect(past, oid, o.path.rstrip("/") or "/", o.recursive, out)
    if o.json:
        dump_json(out if o.recursive else out[0])
    else:
        for i, d in enumerate(out):
            if o.recursive:
                print(("\n" if i else "") + f"{d['path']}:")
            for p in d["properties"]:
                print(f"{p['name']}: {' '.join(p['values'])}".rstrip())
    return 0


async def _collect(past: Past, oid: int, path: str, deep: bool,
                   out: list[dict[str, Any]]) -> None:
    st = await past.state(oid)
    if st is None:
        return
    kids = await past.children(oid)
    out.append({"path": path, "dir": oid, "instance": st.instance,
                "properties": props_json(st.props), "children": kids})
    if deep:
        for kid in kids:
            ks = await past.state(kid)
            if ks is None:
                continue
            names = [v for k, v in ks.props if k == "name"]
            name = names[0][0] if names and names[0] else f"[{kid}]"
            await _collect(past, kid, f"{'' if path == '/' else path}/{name}", deep, out)


async def _revert(client: Any, o: Options) -> int:
    if o.revert is not None:
        e = await entry(client, o.revert)
        if e is None:
            raise ToolExit(1, f"{PROG}: no change {o.revert} in the history")
        targets = [e]
    else:
        assert o.revert_after is not None
        start = await boundary(client, o.revert_after)
        targets = [e async for e in entries(client, Query(oldest_first=True,
                                                          min_seq=start + 1,
                                                          path=o.path or ""))]
        if not targets:
            print(f"{PROG}: no change after {o.revert_after}", file=sys.stderr)
            return 0
    if not o.force:
        found = await conflicts(client, targets, {e.seq for e in targets})
        if found:
            raise ToolExit(1, *(f"{PROG}: {describe(later)} came after change {seq} to "
                                f"directory {oid}" for seq, oid, later in found),
                           f"{PROG}: nothing was reverted (--force reverts anyway)")
    await client.use_master()
    for e in reversed(targets):
        try:
            await revert_one(client, e)
        except CannotRevert as err:
            raise ToolExit(1, f"{PROG}: {err}") from None
        print(f"reverted {e.seq}: {proc_name(e.proc)} {e.path}")
    return 0


def describe(e: Entry) -> str:
    return f"change {e.seq} ({when(e.time)}, {who(e)}, {proc_name(e.proc)} {e.path})"


async def _main(o: Options) -> int:
    client = await open_for_tool(PROG, o.domain, tagged=o.tagged, timeout=o.timeout)
    try:
        await authenticate(client, o.user, o.password, o.prompt)
        if o.show is not None:
            return await _show(client, o)
        if o.at is not None:
            return await _at(client, o)
        if o.revert is not None or o.revert_after is not None:
            return await _revert(client, o)
        return await _list(client, o)
    except NiError as e:
        if e.status == Status.PERM:
            raise ToolExit(exit_code(e), f"{PROG}: permission denied: the history is read "
                                         f"by the superuser, or with a password (-p, -u, "
                                         f"-P) the changes a user may write") from None
        raise ToolExit(exit_code(e), f"{PROG}: {e}") from None
    except COMM_ERRORS as e:
        raise ToolExit(exit_code(e), f"{PROG}: {e}") from None
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    """``nihistory``: returns the exit status."""
    return tool_main(argv, parse_args, USAGE, HELP, _main, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
