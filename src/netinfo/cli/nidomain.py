"""nidomain: the front end to nibindd (tools §4.4).

::

    nidomain -l [host]                          list tags served
    nidomain -g tag [host]                      look up one tag
    nidomain -m tag [host]                      create a master database + netinfod for tag
    nidomain -d tag [host]                      destroy server and database for tag
    nidomain -u tag [host]                      unregister server
    nidomain -c tag master/remotetag [host]     create a clone of master/remotetag as tag
    nidomain -a tag alias [host]                register an existing tag under another name
    nidomain -p tag [host]                      make the clone serving tag the master
    nidomain -s tag [host]                      replication state of tag's server

Errors (one line on stderr, exit 1): ``nidomain: no nibindd at <host> (<why>)`` names
the portmapper address asked (``NETINFO_PORTMAPPER`` or port 111); ``nidomain: operation
failed - <ni_error>`` (tools §4.4); ``nidomain: unknown host - <host>``. Unlike the
original, ``-l`` and ``-g`` also exit 1 when no nibindd answers (tools §4.4 has them exit
0), so that "no domains" and "could not ask" differ.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from ..client import binding
from ..client.domain import resolve_host
from ..errors import NiError, RpcError, Timeout, WireError, status_message
from .common import ToolExit, UsageError, tool_main

PROG = "nidomain"
USAGE = """usage: nidomain -l [host]
       nidomain -g tag [host]
       nidomain -m tag [host]
       nidomain -d tag [host]
       nidomain -u tag [host]
       nidomain -c tag master/remotetag [host]
       nidomain -a tag alias [host]
       nidomain -p tag [host]
       nidomain -s tag [host]
"""

#: option → operands before the optional host
OPERATIONS = {"-l": 0, "-g": 1, "-m": 1, "-d": 1, "-u": 1, "-c": 2, "-a": 2, "-p": 1,
              "-s": 1}
#: Exit status of every failure (tools §4.4: "operation failed", exit 1). The original
#: exited 0 for -l and -g when no nibindd ran; here an unreachable nibindd is an error for
#: every operation, so that a script can tell "no domains" from "could not ask".
EXIT_FAILED = 1


def _line(tag: str, udp: int, tcp: int) -> str:
    return f"tag={tag} udp={udp} tcp={tcp}"


async def _reach(host: str) -> None:
    """Make sure a nibindd is registered with *host*'s portmapper, or stop with a line
    naming the portmapper address that was asked."""
    pm_host, pm_port = binding.portmapper_address(host)
    try:
        await binding.nibindd_port(host)
        return
    except NiError:
        why = f"not registered with the portmapper at {pm_host}:{pm_port}"
    except (Timeout, RpcError, WireError, OSError):
        why = f"no answer from the portmapper at {pm_host}:{pm_port}"
    raise ToolExit(EXIT_FAILED, f"{PROG}: no nibindd at {host} ({why})")


#: STATISTICS properties that say how a server replicates (spec §4.4; ours after tag).
_STATE = ("tag", "checksum", "master_server", "sync_state", "last_sync", "clone_state")


async def _state(tag: str, host: str) -> list[str]:
    """``nidomain -s``: the role, checksum and replication state of *tag*'s server."""
    from ..client.core import Client  # noqa: PLC0415 - only this operation talks NETINFO
    _, port = await binding.getregister(host, tag)
    c = await Client.connect(host, port, tag, privileged=False)
    try:
        stats = dict(await c.statistics())
    finally:
        await c.close()
    lines = []
    for name in _STATE:
        if name in stats:
            values = stats[name] if name == "clone_state" else [" ".join(stats[name])]
            lines += [f"{name}: {v}" for v in values]
    return lines


async def _run(op: str, operands: list[str], host: str) -> list[str]:
    """Do *op*; returns the lines to print (printed by the caller, so that an output
    error is never mistaken for an unreachable nibindd)."""
    if op == "-l":
        return [_line(r.tag, r.udp_port, r.tcp_port) for r in await binding.listreg(host)]
    tag = operands[0]
    if op == "-g":
        udp, tcp = await binding.getregister(host, tag)
        return [_line(tag, udp, tcp)]
    if op == "-s":
        return await _state(tag, host)
    if op == "-p":
        await binding.promote(tag, host)
    elif op == "-m":
        await binding.createmaster(tag, host)
    elif op == "-d":
        await binding.destroydomain(tag, host)
    elif op == "-u":
        await binding.unregister(tag, host)
    elif op == "-c":
        master, slash, rtag = operands[1].partition("/")
        if not slash or not master or not rtag:
            raise ToolExit(EXIT_FAILED, f"{PROG}: bad master {operands[1]} "
                           "(expected master/tag)")
        try:
            addr = resolve_host(master)
        except NiError:
            raise ToolExit(EXIT_FAILED, f"{PROG}: unknown host - {master}") from None
        await binding.createclone(tag, master, addr, rtag, host)
    elif op == "-a":
        udp, tcp = await binding.getregister(host, tag)
        await binding.register(operands[1], udp, tcp, host)
    return []


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
            raise ToolExit(EXIT_FAILED, f"{PROG}: unknown host - {host_arg}") from None
    await _reach(host)
    try:
        lines = await _run(op, o.operands, host)
    except NiError as e:
        raise ToolExit(EXIT_FAILED, f"{PROG}: operation failed - {status_message(e.status)}") \
            from None
    except (Timeout, RpcError, WireError, OSError):
        raise ToolExit(EXIT_FAILED, f"{PROG}: no answer from nibindd at {host}") from None
    for line in lines:
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``nidomain``: returns the exit status (tools §4.4)."""
    return tool_main(argv, parse_args, USAGE, USAGE, _main, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
