"""nifind: find a directory in every domain of the hierarchy (tools §4.3).

::

    nifind [-anvp] [-T timeout] directory [domain]

By default the search starts in the local domain ``.`` and climbs ``..`` until the root,
or until it has searched the optional *domain*. With ``-a`` it walks the whole hierarchy
below the root (or below *domain*), depth first, child domains taken from the ``serves``
values ``name/tag`` of each domain's ``/machines`` (``./...`` and ``../...`` name the
domain itself and its parent, so they are skipped). Each hit prints
``<directory> found in <domain name>, id = <n>``. The exit status is 0 whether or not
anything was found; 1 for usage errors and for a domain that cannot be opened, in the
original's words (``error: can't open root domain`` for ``/`` or the domain given,
``error: can't open local domain``, with ``-a`` ``error: can't open domain X``), then
``: `` and the reason.

``-n`` skips child domains served with the tag ``local`` in the ``-a`` walk only (and
what lies below them): the default climb reports the local domain and its parents
whatever ``-n`` says (the original's behaviour). ``-v`` adds the original's
``<directory> not found in <domain>`` lines, on stdout among the hits, and in the
``-a`` walk its line for each ``serves`` value that names a child domain, on stderr
(``/: vm serves vm/local - new child domain``; :meth:`Finder.children`). The binding
and search tracing this implementation can give is behind ``--debug`` (stderr).
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from typing import Any

from ..client.domain import DomainClient, domain_name, open_child, open_domain, open_parent
from ..errors import NiError, Status, TooLong
from ..model import Proplist, first_values
from .common import (
    COMM_ERRORS,
    ToolExit,
    UsageError,
    dump_json,
    error_text,
    failure_reason,
    parse_timeout,
    privileged_from_env,
    props_json,
    tool_main,
)

PROG = "nifind"
USAGE = "usage: nifind [-anvp] [-T timeout] directory [domain]"
HELP = f"""{USAGE}

Search for <directory> in the local domain and each domain above it, up to the root or
up to <domain>, and print where it is found.

options:
  -a            search all domains: the whole hierarchy below the root (or <domain>)
  -n            with -a, skip child domains served with the tag "local"
  -p            print the properties of each directory found, then a blank line
  -v            verbose: also print "<directory> not found in <domain>" lines, and
                with -a each child domain the walk finds (on stderr)
  --debug       trace binding and searching on stderr
  -T timeout    connect and read timeout in seconds (default 2)
  --json        print the results as JSON instead
  -h, --help    show this help and exit
"""
#: nifind's default connect timeout (tools §4.3).
DEFAULT_TIMEOUT = 2.0
#: Most domain levels followed in either direction (a guard against ``serves`` loops).
MAX_DEPTH = 32
#: Tries of RPARENT while the server still searches for its parent (NI_NORESPONSE).
PARENT_TRIES = 3

_OPEN_ERRORS = (NiError, *COMM_ERRORS)


@dataclass
class Options:
    """A parsed nifind command line."""

    all: bool = False
    skip_local: bool = False
    verbose: bool = False
    print_props: bool = False
    debug: bool = False
    timeout: float = DEFAULT_TIMEOUT
    json: bool = False
    help: bool = False
    operands: list[str] = field(default_factory=list)


def parse_args(argv: list[str]) -> Options:
    """Flags may be grouped (``-ap``) and may come anywhere; ``-T`` takes the rest of its
    word or the next argument; ``--`` ends the options.

    :raises UsageError: (exit 1). ``-h``/``--help`` stops the scan (help, exit 0).
    """
    opts = Options()
    flags = {"a": "all", "n": "skip_local", "v": "verbose", "p": "print_props"}
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            opts.operands.extend(argv[i:])
            break
        if not arg.startswith("-") or arg == "-":
            opts.operands.append(arg)
        elif arg in ("-h", "--help"):
            opts.help = True
            return opts
        elif arg == "--json":
            opts.json = True
        elif arg == "--debug":
            opts.debug = True
        else:
            letters = arg[1:]
            j = 0
            while j < len(letters):
                ch = letters[j]
                j += 1
                if ch in flags:
                    setattr(opts, flags[ch], True)
                elif ch == "T":
                    if j < len(letters):
                        value, j = letters[j:], len(letters)
                    elif i < len(argv):
                        value, i = argv[i], i + 1
                    else:
                        raise UsageError(f"{PROG}: option -T needs a value")
                    opts.timeout = parse_timeout(value, prog=PROG)
                else:
                    raise UsageError(f"{PROG}: unknown option -{ch}")
    if not 1 <= len(opts.operands) <= 2:
        raise UsageError()
    return opts


def read_format(props: Proplist) -> str:
    """niutil ``-read`` format: ``key: v1 v2``, ``key:`` without values (tools §1.4)."""
    return "".join(f"{k}:" + "".join(" " + v for v in vals) + "\n" for k, vals in props)


class Finder:
    """One nifind run: searches domains, prints hits, and remembers them for ``--json``."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.directory = opts.operands[0]
        self.results: list[dict[str, Any]] = []
        self.privileged = privileged_from_env()

    def note(self, text: str) -> None:
        """A ``--debug`` trace line on stderr."""
        if self.opts.debug:
            print(text, file=sys.stderr, flush=True)

    def miss(self, name: str) -> None:
        """``-v``: the original's ``<directory> not found in <domain>``, on stdout."""
        if self.opts.verbose and not self.opts.json:
            sys.stdout.write(f"{self.directory} not found in {name}\n")
            sys.stdout.flush()

    async def open(self, name: str, what: str) -> DomainClient:
        """Open the domain *name* (a domain argument).

        :raises ToolExit: ``error: can't open <what>`` (the original's line, tools
            §4.3), then ``: `` and why; exit 1."""
        try:
            return await open_domain(name, timeout=self.opts.timeout,
                                     privileged=self.privileged, retries=2)
        except (*_OPEN_ERRORS, ValueError) as e:
            raise ToolExit(1, f"error: can't open {what}: {failure_reason(e)}") from None

    async def name_of(self, client: DomainClient, fallback: str) -> str:
        try:
            return await domain_name(client)
        except _OPEN_ERRORS as e:
            self.note(f"{PROG}: can't get the name of domain {fallback}: {_reason(e)}")
            return fallback

    async def search(self, client: DomainClient, name: str) -> None:
        """Look for the directory in one domain and report the result."""
        addr, tag = client.server
        self.note(f"searching {name} ({tag}@{addr})")
        try:
            _, root_props = await client.read(0)
            if first_values(root_props, "master") is None:
                print(f"Domain {name} has no master property!", file=sys.stderr, flush=True)
            did = await client.pathsearch(self.directory)
            props = await client.read(did) if self.opts.print_props else None
        except _OPEN_ERRORS as e:
            if isinstance(e, TooLong):   # no domain can hold it: say so, once
                raise ToolExit(1, f"{PROG}: can't search for {self.directory}: {e}") \
                    from None
            if not (isinstance(e, NiError) and e.status == Status.NODIR):
                self.note(f"{PROG}: can't search domain {name}: {_reason(e)}")
            self.miss(name)
            self.results.append({"domain": name, "found": False, "id": None})
            return
        hit: dict[str, Any] = {"domain": name, "found": True, "id": did.object}
        if props is not None:
            hit["properties"] = props_json(props[1])
        self.results.append(hit)
        if not self.opts.json:
            text = f"{self.directory} found in {name}, id = {did.object}\n"
            if props is not None:
                text += read_format(props[1]) + "\n"
            sys.stdout.write(text)
            sys.stdout.flush()

    async def climb(self) -> None:
        """Default search: ``.``, then ``..`` upwards until the root or the domain given.

        As the original, the top (the domain given, else ``/``) is opened first, then
        ``.``: ``error: can't open root domain`` names a failure of the first (whichever
        it is), ``error: can't open local domain`` of the second (tools §4.3)."""
        given = len(self.opts.operands) > 1
        top = self.opts.operands[1] if given else "/"
        target = await self.open(top, "root domain")
        stop: str | None = None
        try:
            if given:
                stop = await self.name_of(target, top)
        finally:
            await target.close()
        cur = await self.open(".", "local domain")
        try:
            for _ in range(MAX_DEPTH):
                name = await self.name_of(cur, ".")
                await self.search(cur, name)
                if name == stop:
                    return
                parent = await self.parent(cur, name)
                if parent is None:
                    if stop is not None:
                        self.note(f"{PROG}: reached the root without meeting {stop}")
                    return
                await cur.close()
                cur = parent
        finally:
            await cur.close()

    async def parent(self, client: DomainClient, name: str) -> DomainClient | None:
        """The parent domain, or None at the root (or when it cannot be reached)."""
        for attempt in range(PARENT_TRIES):
            try:
                parent = await open_parent(client)
            except NiError as e:
                if e.status == Status.NETROOT:
                    self.note(f"{name} is the root domain")
                    return None
                if e.status == Status.NORESPONSE and attempt + 1 < PARENT_TRIES:
                    self.note(f"{name}: the server is still looking for its parent")
                    await asyncio.sleep(1.0)
                    continue
                self.note(f"{PROG}: can't open the parent of {name}: {_reason(e)}")
                return None
            except COMM_ERRORS as e:
                self.note(f"{PROG}: can't open the parent of {name}: {_reason(e)}")
                return None
            self.note(f"parent of {name} is {parent.server[1]}@{parent.server[0]}")
            return parent
        return None

    async def walk_all(self) -> None:
        """``-a``: the root (or the domain given) and every domain below it."""
        start = self.opts.operands[1] if len(self.opts.operands) > 1 else "/"
        client = await self.open(start, f"domain {start}")   # the original's words
        try:
            name = await self.name_of(client, start)
            await self.walk(client, name, 0, set())
        finally:
            await client.close()

    async def walk(self, client: DomainClient, name: str, depth: int,
                   seen: set[tuple[str, str]]) -> None:
        if client.server in seen:
            # two serves entries lead to the same server, or they form a loop
            self.note(f"{PROG}: {name} was already searched (a serves loop?)")
            return
        if depth > MAX_DEPTH:
            self.note(f"{PROG}: {name} is more than {MAX_DEPTH} levels deep; not searched")
            return
        seen.add(client.server)
        await self.search(client, name)
        children = await self.children(client, name)
        try:
            for child_name, sub in children:
                self.note(f"child {child_name} of {name} is at {sub.server[1]}@{sub.server[0]}")
                await self.walk(sub, child_name, depth + 1, seen)
        finally:
            for _, sub in children:
                await sub.close()

    def verbose(self, text: str) -> None:
        """``-v``: one of the original's lines about the ``-a`` walk, on stderr."""
        if self.opts.verbose:
            print(text, file=sys.stderr, flush=True)

    async def children(self, client: DomainClient,
                       name: str) -> list[tuple[str, DomainClient]]:
        """The child domains named by the ``serves`` values of /machines, opened, in
        order (tools §4.3). With ``-v``, each value that names a child domain (neither
        ``./…`` nor ``../…``) gets the original's line on stderr:
        ``<domain>: <host> serves <value> - `` then ``new child domain`` (opened now),
        ``already have this child`` (that name opened already, from another host) or,
        with ``-n`` and a ``local`` tag, ``ignoring local domain``; a new child that
        does not answer adds ``No response from <child>``. <host> is the entry's first
        ``name``."""
        try:
            mid = await client.pathsearch("/machines")
            _, entries = await client.listall(mid)
        except _OPEN_ERRORS as e:
            self.note(f"{PROG}: can't list the child domains of {name}: {_reason(e)}")
            return []
        opened: list[tuple[str, DomainClient]] = []
        for props in entries:
            host = (first_values(props, "name") or [""])[0]
            for value in first_values(props, "serves") or ():
                if value.startswith(("./", "../")):
                    continue   # this domain and its parent
                child, _, tag = value.partition("/")
                head = f"{name}: {host} serves {value} - "
                if self.opts.skip_local and tag == "local":   # -n: -a only
                    self.verbose(head + "ignoring local domain")
                    continue
                if any(child == known for known, _ in opened):
                    self.verbose(head + "already have this child")
                    continue
                self.verbose(head + "new child domain")
                child_name = ("" if name == "/" else name) + "/" + child
                try:
                    opened.append((child, await open_child(client, child)))
                except _OPEN_ERRORS as e:
                    if not (isinstance(e, NiError) and e.status == Status.NODIR):
                        self.verbose(f"No response from {child}")
                    self.note(f"{PROG}: can't open domain {child_name}: {_reason(e)}")
        return [(("" if name == "/" else name) + "/" + child, sub) for child, sub in opened]


def _reason(e: BaseException) -> str:
    if isinstance(e, NiError):
        return error_text(e)
    return str(e) or error_text(e)


async def find(opts: Options) -> int:
    """Search and print the hits (or ``--json``); returns the exit status."""
    f = Finder(opts)
    if opts.all:
        await f.walk_all()
    else:
        await f.climb()
    if opts.json:
        dump_json({"directory": f.directory, "results": f.results})
    return 0


def main(argv: list[str] | None = None) -> int:
    """``nifind``: returns the exit status (tools §4.3)."""
    return tool_main(argv, parse_args, USAGE + "\n", HELP, find, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
