"""List the destinations beyond loopback in an strace log of a test run (issue 17).

The suite's guard (tests/guard) sees only Python sockets; this checks every process, the
browser included, from the system calls themselves. Record a run as root with::

    strace -f -qq -yy --seccomp-bpf -e signal=none \\
        -e trace=connect,sendto,sendmsg,sendmmsg,clone,clone3,fork,vfork,setns,unshare \\
        -o /tmp/hermetic.trace python3 -m pytest -q tests/test_niutil.py ...
    python3 tests/tools/strace_check.py /tmp/hermetic.trace

(``-o FILE`` without ``-ff``: one file, each line led by its pid; ``-yy`` names each
socket's protocol and addresses.) Processes are followed from parent to child: one that
enters another network namespace (``unshare`` or ``clone`` with CLONE_NEWNET, ``setns`` into
a namespace other than the host's) and its descendants are in a test's namespace, where the
rule allows any address; they are listed apart. AF_UNIX and AF_NETLINK sockets are ignored.

Traffic is a TCP connect beyond loopback (its SYN), a datagram sent to an address beyond
loopback, or one sent on a socket connected to such an address. A UDP connect alone sends
nothing (the kernel only picks a route and a source address; Chromium's IPv6 reachability
probe does this before every host resolution, literals included): listed as a route
lookup, not counted. Sends through write(2) are not traced.

Exit status: 0 when no traffic left the host's namespace for beyond 127.0.0.0/8 and ::1,
1 when some did, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable
from typing import NamedTuple

_LINE = re.compile(r"^(?P<pid>\d+)\s+(?:<\.\.\. (?P<resumed>\w+) resumed>|(?P<call>\w+)\()"
                   r"(?P<rest>.*)$")
_RESULT = re.compile(r"\)\s+=\s+(?P<ret>-?\d+|\?)(?:\s+(?P<err>E[A-Z]+))?")
_INET4 = re.compile(r'sa_family=AF_INET, sin_port=htons\((\d+)\), sin_addr=inet_addr\("([^"]+)"\)')
_INET6 = re.compile(r'sa_family=AF_INET6, sin6_port=htons\((\d+)\).*?'
                    r'inet_pton\(AF_INET6, "([^"]+)"')
#: the first argument as ``strace -yy`` shows a socket: ``5<UDP:[a:p->b:q]>``, ``5<UNIX:[..]>``
_FD = re.compile(r"^\s*(?P<fd>\d+)<(?P<kind>[A-Za-z0-9]+):\[(?P<info>.*?)\]>")
_PEER = re.compile(r"->\[?(?P<addr>[0-9A-Fa-f:.]+?)\]?:(?P<port>\d+)$")
_NETNS_FD = re.compile(r"setns\(\d+<(?P<target>[^>]*)>")
_SENDS = frozenset({"sendto", "sendmsg", "sendmmsg"})
_FORKS = frozenset({"clone", "clone3", "fork", "vfork"})
#: socket kinds whose traffic never leaves the host
_LOCAL_KINDS = frozenset({"UNIX", "NETLINK"})


class Finding(NamedTuple):
    """One destination beyond loopback."""

    pid: str
    call: str
    destination: str
    result: str
    host_ns: bool     #: made from the host's namespace (else from a test's)
    traffic: bool     #: something was sent (False: a UDP connect, a route lookup only)


def loopback(addr: str) -> bool:
    """127.0.0.0/8, ::1, or an IPv4-mapped loopback address."""
    try:
        ip = ipaddress.ip_address(addr.partition("%")[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def host_netns() -> str:
    """The host's network namespace as strace -y writes it (``net:[INODE]``)."""
    return f"net:[{os.stat('/proc/self/ns/net').st_ino}]"


def _destinations(rest: str) -> list[str]:
    return [f"{a}:{p}" if ":" not in a else f"[{a}]:{p}"
            for p, a in [*_INET4.findall(rest), *_INET6.findall(rest)]]


def _host(dest: str) -> str:
    return dest.rpartition(":")[0].strip("[]")


def scan(lines: Iterable[str], host_ns: str | None = None) -> list[Finding]:
    """Every connect or send beyond loopback, in order.

    A UDP ``connect`` sends nothing (it picks a route and a source address); it counts as
    traffic only when a datagram is then sent on that socket. Descriptors are followed per
    descriptor table (threads and CLONE_FILES share one; a fork copies it).
    """
    away: set[str] = set()                      # pids in a namespace a test made
    pending: dict[str, str] = {}                # pid → the unfinished call's first half
    tables: dict[str, dict[str, tuple[str, int]]] = {}  # pid → its fd → (dest, finding)
    out: list[Finding] = []

    def fds(pid: str) -> dict[str, tuple[str, int]]:
        return tables.setdefault(pid, {})

    for raw in lines:
        m = _LINE.match(raw.rstrip("\n"))
        if m is None:
            continue
        pid, rest = m["pid"], m["rest"]
        if m["resumed"]:
            call = m["resumed"]
            rest = pending.pop(pid, "") + rest
        else:
            call = m["call"]
            if rest.endswith("<unfinished ...>"):
                pending[pid] = rest.removesuffix("<unfinished ...>")
                continue
        res = _RESULT.search(rest)
        ret = res["ret"] if res else "?"
        ok = res is not None and ret != "?" and not ret.startswith("-")
        result = ret if ok or res is None else f"{ret} {res['err'] or ''}".strip()
        if call in _FORKS:
            if ok and ret != "0":
                if pid in away or "CLONE_NEWNET" in rest:
                    away.add(ret)
                shared = "CLONE_FILES" in rest or "CLONE_THREAD" in rest
                tables[ret] = fds(pid) if shared else dict(fds(pid))
        elif call == "unshare":
            if ok and "CLONE_NEWNET" in rest:
                away.add(pid)
        elif call == "setns":
            t = _NETNS_FD.search("setns(" + rest)
            target = t["target"] if t else ""
            if ok and ("CLONE_NEWNET" in rest or target.startswith("net:")):
                if host_ns is not None and target == host_ns:
                    away.discard(pid)
                else:
                    away.add(pid)
        elif call == "connect" or call in _SENDS:
            f = _FD.match(rest)
            kind = f["kind"] if f else ""
            if kind in _LOCAL_KINDS:
                continue
            dests = _destinations(rest)
            if call == "connect":
                for dest in dests:
                    if f is not None:
                        fds(pid).pop(f["fd"], None)
                    if loopback(_host(dest)):
                        continue
                    udp = kind.startswith("UDP")
                    out.append(Finding(pid, call, dest, result, pid not in away, not udp))
                    if f is not None and udp and ok:
                        fds(pid)[f["fd"]] = (dest, len(out) - 1)
                continue
            if not dests and f is not None:   # a send on a connected socket
                peer = _PEER.search(f["info"])
                known = fds(pid).get(f["fd"])
                if known is not None:   # the UDP connect did carry traffic
                    out[known[1]] = out[known[1]]._replace(traffic=True)
                if peer is not None:
                    dests = [f"{peer['addr']}:{peer['port']}"]
                elif known is not None:
                    dests = [known[0]]
            for dest in dests:
                if not loopback(_host(dest)):
                    out.append(Finding(pid, call, dest, result, pid not in away, True))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("trace", nargs="+", help="strace -f -yy output file(s)")
    p.add_argument("--host-netns", default=None,
                   help="the host's namespace as strace -y shows it (default: this one's)")
    args = p.parse_args(argv)
    host_ns = args.host_netns or host_netns()
    found: list[tuple[str, Finding]] = []
    for path in args.trace:
        with open(path, encoding="utf-8", errors="replace") as f:
            found += [(path, row) for row in scan(f, host_ns)]
    bad = [(path, r) for path, r in found if r.host_ns and r.traffic]
    probes = Counter(r.destination for _, r in found if r.host_ns and not r.traffic)
    inside = Counter((r.call, r.destination) for _, r in found if not r.host_ns)
    for (call, dest), n in sorted(inside.items()):
        print(f"in a test's namespace: {call} {dest} x{n}")
    for dest, n in sorted(probes.items()):
        print(f"route lookup only (UDP connect, nothing sent): {dest} x{n}")
    for path, r in bad:
        print(f"BEYOND LOOPBACK from the host namespace: {path}: pid {r.pid} {r.call} "
              f"{r.destination} = {r.result}")
    print(f"{len(bad)} beyond loopback from the host's namespace "
          f"({sum(probes.values())} route lookups without traffic), "
          f"{sum(inside.values())} inside test namespaces")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
