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

import asyncio
import sys

from .. import binding
from ..domain import resolve_host
from ..errors import NiError, RpcError, Status, Timeout, WireError, status_message

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


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        sys.stderr.write(USAGE)
        return 0 if args else 1
    op = args[0]
    need = OPERATIONS.get(op)
    if need is None or len(args) - 1 < need or len(args) - 1 > need + 1:
        sys.stderr.write(USAGE)
        return 1
    operands = args[1:1 + need]
    host_arg = args[1 + need] if len(args) > 1 + need else None
    if host_arg is None:
        host = "127.0.0.1"
    else:
        try:
            host = resolve_host(host_arg)
        except NiError:
            print(f"{PROG}: unknown host - {host_arg}", file=sys.stderr)
            return 1
    try:
        return asyncio.run(_run(op, operands, host))
    except NiError as e:
        if e.status == Status.CANTFINDADDRESS and host_arg is None:
            # no nibindd registered here (tools §4.4: -l and -g exit 0, others 1)
            if op in ("-l", "-g"):
                print(f"{PROG}: port information is not available (nibindd is not running)",
                      file=sys.stderr)
                return 0
            print(NOT_RUNNING, file=sys.stderr)
            return 1
        print(f"{PROG}: operation failed - {status_message(e.status)}", file=sys.stderr)
        return 1
    except (Timeout, RpcError, WireError, OSError):
        if host_arg is None and op in ("-l", "-g"):
            print(f"{PROG}: port information is not available (nibindd is not running)",
                  file=sys.stderr)
            return 0
        if host_arg is None and op in ("-m", "-c", "-a"):
            print(NOT_RUNNING, file=sys.stderr)
            return 1
        print(f"{PROG}: cannot connect to server {host_arg or 'localhost'}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
