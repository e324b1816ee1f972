"""nidomain: the front end to nibindd (tools §4.4).

::

    nidomain -l [host]                          list tags served
    nidomain -g tag [host]                      look up one tag
    nidomain -m tag [host]                      create a master database + netinfod for tag
    nidomain -d tag [host]                      destroy server and database for tag
    nidomain -u tag [host]                      unregister server
    nidomain -c tag master/remotetag [host]     create a clone of master/remotetag as tag
    nidomain -a tag alias [host]                register an existing tag under another name
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from .. import binding
from ..domain import resolve_host
from ..errors import NiError, RpcError, Status, Timeout, WireError, status_message
from .common import ToolExit, UsageError, tool_main

PROG = "nidomain"
USAGE = """usage: nidomain -l [host]
       nidomain -g tag [host]
       nidomain -m tag [host]
       nidomain -d tag [host]
       nidomain -u tag [host]
       nidomain -c tag master/remotetag [host]
       nidomain -a tag alias [host]
"""

#: option → (operands before the optional host, needs a running nibindd to make sense)
OPERATIONS = {"-l": 0, "-g": 1, "-m": 1, "-d": 1, "-u": 1, "-c": 2, "-a": 2}
NOT_RUNNING = ("nidomain: nibindd is not running. Start it (nibindd; on Mac OS X set "
               "NETINFOSERVER=-YES- in /etc/hostconfig and restart) and try again.")


def _line(tag: str, udp: int, tcp: int) -> str:
    return f"tag={tag} udp={udp} tcp={tcp}"


async def _run(op: str, operands: list[str], host: str) -> int:
    if op == "-l":
        for r in await binding.listreg(host):
            print(_line(r.tag, r.udp_port, r.tcp_port))
        return 0
    tag = operands[0]
    if op == "-g":
        udp, tcp = await binding.getregister(host, tag)
        print(_line(tag, udp, tcp))
        return 0
    if op == "-m":
        await binding.createmaster(tag, host)
    elif op == "-d":
        await binding.destroydomain(tag, host)
    elif op == "-u":
        await binding.unregister(tag, host)
    elif op == "-c":
        master, slash, rtag = operands[1].partition("/")
        if not slash or not master or not rtag:
            print(f"{PROG}: bad master {operands[1]} (expected master/tag)", file=sys.stderr)
            return 1
        await binding.createclone(tag, master, resolve_host(master), rtag, host)
    elif op == "-a":
        udp, tcp = await binding.getregister(host, tag)
        await binding.register(operands[1], udp, tcp, host)
    return 0


@dataclass
class Options:
    """A parsed nidomain command line: the operation, its operands, the host argument."""

    op: str
    operands: list[str]
    host: str | None


def parse_args(args: list[str]) -> Options:
    """``-x operands... [host]`` (tools §4.4). ``-h``/``--help`` print the usage on stderr
    and exit 0. :raises UsageError: no or an unknown operation, or a wrong operand count."""
    if args and args[0] in ("-h", "--help"):
        raise ToolExit(0, *USAGE.rstrip("\n").split("\n"))
    if not args:
        raise UsageError()
    op = args[0]
    need = OPERATIONS.get(op)
    if need is None or len(args) - 1 < need or len(args) - 1 > need + 1:
        raise UsageError()
    return Options(op, args[1:1 + need], args[1 + need] if len(args) > 1 + need else None)


async def _main(o: Options) -> int:
    op, host_arg = o.op, o.host
    if host_arg is None:
        host = "127.0.0.1"
    else:
        try:
            host = resolve_host(host_arg)
        except NiError:
            raise ToolExit(1, f"{PROG}: unknown host - {host_arg}") from None
    try:
        return await _run(op, o.operands, host)
    except NiError as e:
        if e.status == Status.CANTFINDADDRESS and host_arg is None:
            # no nibindd registered here (tools §4.4: -l and -g exit 0, others 1)
            if op in ("-l", "-g"):
                raise ToolExit(0, f"{PROG}: port information is not available "
                               "(nibindd is not running)") from None
            raise ToolExit(1, NOT_RUNNING) from None
        raise ToolExit(1, f"{PROG}: operation failed - {status_message(e.status)}") from None
    except (Timeout, RpcError, WireError, OSError):
        if host_arg is None and op in ("-l", "-g"):
            raise ToolExit(0, f"{PROG}: port information is not available "
                           "(nibindd is not running)") from None
        if host_arg is None and op in ("-m", "-c", "-a"):
            raise ToolExit(1, NOT_RUNNING) from None
        raise ToolExit(1, f"{PROG}: cannot connect to server {host_arg or 'localhost'}") \
            from None


def main(argv: list[str] | None = None) -> int:
    """``nidomain``: returns the exit status (tools §4.4)."""
    return tool_main(argv, parse_args, USAGE, USAGE, _main, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
