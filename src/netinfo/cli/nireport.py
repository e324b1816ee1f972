"""nireport: one line per child of a directory, one TAB-terminated column per property
(tools §4.1).

::

    nireport [-T timeout] [-t] domain directory property...

Every column is followed by a TAB, so each line ends in TAB then newline. A property that
is missing, or present with no values, prints ``#NoValue#``; several values are joined
with ``,``. Errors use the niutil exit mapping (tools §1.5): ni_status + 100, 199 for a
communication failure or an unknown domain, 200 when a ``-t`` server cannot be reached,
217–221 for a ``-t`` argument that does not parse.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from typing import Any

from ..errors import NiError
from ..model import NiId, Proplist, first_values
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
    tool_main,
)

PROG = "nireport"
USAGE = "usage: nireport [-T timeout] [-t] domain directory property..."
HELP = f"""{USAGE}

Print one line per child of <directory> in <domain>: for each <property>, its values
joined with ',' (or #NoValue# when missing or empty), each column followed by a TAB.

options:
  -t            <domain> is <host>/<tag> (the server's address and the domain's tag)
  -T timeout    read timeout in seconds (default 30)
  --json        print the report as JSON instead
  -h, --help    show this help and exit
"""
#: The column text of a missing property or one without values (tools §4.1).
NO_VALUE = "#NoValue#"
#: How many READs are kept in flight at once when the child IDs are wanted (``--json``).
BATCH = 128


@dataclass
class Options:
    """A parsed nireport command line."""

    tagged: bool = False
    timeout: float = DEFAULT_TIMEOUT
    json: bool = False
    help: bool = False
    operands: list[str] = field(default_factory=list)


def parse_args(argv: list[str]) -> Options:
    """Options are read until the first operand (the domain); ``--`` ends them. Everything
    from the domain on is an operand, as in niutil (tools §1.2).

    :raises UsageError: (exit 1). ``-h``/``--help`` stops the scan (help, exit 0).
    """
    opts = Options()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            opts.operands.extend(argv[i + 1:])
            break
        if opts.operands or not arg.startswith("-") or arg == "-":
            opts.operands.append(arg)
        elif arg in ("-h", "--help"):
            opts.help = True
            return opts
        elif arg == "-t":
            opts.tagged = True
        elif arg == "--json":
            opts.json = True
        elif arg == "-T":
            if i + 1 >= len(argv):
                raise UsageError(f"{PROG}: option -T needs a value")
            i += 1
            opts.timeout = parse_timeout(argv[i], prog=PROG)
        else:
            raise UsageError(f"{PROG}: unknown option {arg}")
        i += 1
    if len(opts.operands) < 2:
        raise UsageError()
    if len(opts.operands) == 2:
        raise UsageError("no properties")
    return opts


def column(props: Proplist, key: str) -> str:
    """One cell: the first property *key*'s values joined with ``,``, else ``#NoValue#``."""
    values = first_values(props, key)
    return ",".join(values) if values else NO_VALUE


def format_row(props: Proplist, keys: list[str]) -> str:
    """One report line: every column followed by a TAB (tools §4.1)."""
    return "".join(column(props, k) + "\t" for k in keys) + "\n"


async def step(name: str, coro: Any) -> Any:
    """Await one library call; a failure stops the tool with ``<name>: <message>`` and
    the niutil exit mapping (tools §1.5)."""
    try:
        return await coro
    except (NiError, *COMM_ERRORS) as e:
        raise ToolExit(exit_code(e), f"{name}: {error_text(e)}") from None


async def _read_children(client: Any, did: NiId) -> list[tuple[int, Proplist]]:
    """(id, properties) of every child in child order: CHILDREN, then pipelined READs."""
    ids, _ = await step("ni_children", client.children(did))
    out: list[tuple[int, Proplist]] = []
    for start in range(0, len(ids), BATCH):
        batch = ids[start:start + BATCH]
        reads = await step("ni_read", asyncio.gather(*(client.read(c) for c in batch)))
        out.extend((c, props) for c, (_, props) in zip(batch, reads, strict=True))
    return out


async def report(opts: Options) -> int:
    domain, directory, keys = opts.operands[0], opts.operands[1], opts.operands[2:]
    client = await open_for_tool(PROG, domain, tagged=opts.tagged, timeout=opts.timeout)
    try:
        did = await step("ni_pathsearch", client.pathsearch(directory))
        if opts.json:
            rows = await _read_children(client, did)  # JSON rows carry the child IDs
        else:
            # one LISTALL gives every child's properties, in child order
            _, entries = await step("ni_listall", client.listall(did))
    finally:
        await client.close()
    if opts.json:
        dump_json({
            "domain": domain,
            "directory": directory,
            "properties": keys,
            "rows": [{"id": cid,
                      "values": [None if (v := first_values(props, k)) is None else list(v)
                                 for k in keys]}
                     for cid, props in rows],
        })
    else:
        sys.stdout.write("".join(format_row(props, keys) for props in entries))
    sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``nireport``: returns the exit status (tools §4.1, §1.5)."""
    return tool_main(argv, parse_args, USAGE + "\n", HELP, report, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
