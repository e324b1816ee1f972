"""The suite's hermetic guard: refuses, and records, any traffic beyond loopback.

Tests may send only to loopback (127.0.0.0/8, ::1) or inside network namespaces they create
(DESIGN rules; issue 17). This module installs an audit hook (PEP 578) that sees every
``connect``, ``sendto`` and ``sendmsg`` of a Python socket and every name or address
lookup, *before* the system call: a destination beyond loopback, made from the host's own
network namespace, is appended to the log file named by ``NETINFO_TEST_GUARD`` and refused
with ``PermissionError``, so nothing leaves the host. tests/conftest.py installs it in the
pytest process and puts this directory first on ``PYTHONPATH``, so that Python imports
this file as ``sitecustomize`` at the start of every Python subprocess the tests run
(servers, tools, ``netinfo-web``); it then reads the log after each test and fails the test
during which something was refused.

Allowed: AF_UNIX and AF_NETLINK sockets; inet destinations in 127.0.0.0/8 or ::1 (or their
IPv4-mapped forms); lookups of an address literal (no resolver is asked) and of the names
that /etc/hosts maps to loopback (the files source answers before DNS); everything from a
process in another network namespace than ``NETINFO_TEST_NETNS`` (the inode of the host's
namespace: tests run servers inside namespaces they create). Anything else - another
address, a broadcast (255.255.255.255 or a subnet's), a host name that would need DNS, a
reverse lookup of another address, a raw or packet socket - is a violation.

Nothing here changes how a process behaves unless ``NETINFO_TEST_GUARD`` is set.
"""

from __future__ import annotations

import os
import sys

LOG_VAR = "NETINFO_TEST_GUARD"
NETNS_VAR = "NETINFO_TEST_NETNS"
# Linux's address families, as numbers: importing socket here would load it into every
# Python process of the suite (test_layers checks that pure modules load no I/O).
_AF_UNIX, _AF_INET, _AF_INET6, _AF_NETLINK = 1, 2, 10, 16
#: Families that never leave the host, whatever their address.
_LOCAL_FAMILIES = frozenset({_AF_UNIX, _AF_NETLINK})
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost",
                             "ip6-loopback"})

_state: dict[str, object] = {"log": None, "netns": None, "installed": False,
                             "names": None}


def netns() -> int | None:
    """The inode of this process's network namespace (None where /proc cannot say)."""
    try:
        return os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return None


def _ip(text: str):
    import ipaddress  # only on the rare path that needs it: keeps start-up cheap
    try:
        ip = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)
    return mapped or ip


def _loopback_names() -> frozenset[str]:
    """localhost, and the names /etc/hosts maps to loopback only (no DNS is asked)."""
    names = _state["names"]
    if isinstance(names, frozenset):
        return names
    found: dict[str, bool] = {}
    try:
        with open("/etc/hosts", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.partition("#")[0].split()
                ip = _ip(fields[0]) if len(fields) > 1 else None
                if ip is None:
                    continue
                for n in fields[1:]:
                    key = n.lower().rstrip(".")
                    found[key] = found.get(key, True) and ip.is_loopback
    except OSError:
        pass
    out = _LOOPBACK_NAMES | {n for n, loop in found.items() if loop}
    _state["names"] = out
    return out


def _host_text(host) -> str:
    if isinstance(host, (bytes, bytearray)):
        return bytes(host).decode("ascii", "replace")
    return str(host)


def _literal_or_local_name(host) -> bool:
    """A lookup of *host* asks no DNS server: None, an address literal, or a name that
    /etc/hosts maps to loopback."""
    if host is None or host == "" or isinstance(host, int):
        return True
    text = _host_text(host)
    return _ip(text) is not None or text.lower().rstrip(".") in _loopback_names()


def _loopback_host(host) -> bool:
    """*host* (an address, or a name Python would resolve first) is a loopback one."""
    text = _host_text(host)
    ip = _ip(text)
    if ip is not None:
        return ip.is_loopback
    return text.lower().rstrip(".") in _loopback_names()


def _destination_ok(sock, address) -> bool:
    family = getattr(sock, "family", None)
    if family in _LOCAL_FAMILIES or address is None:
        return True
    if family in (_AF_INET, _AF_INET6):
        if isinstance(address, tuple) and address:
            return _loopback_host(address[0])
        return False
    return False   # AF_PACKET and the like reach the wire directly


def _check_send(args) -> tuple[bool, object]:
    sock, address = args[0], args[1] if len(args) > 1 else None
    return _destination_ok(sock, address), address


def _check_name(args) -> tuple[bool, object]:
    return _literal_or_local_name(args[0]), args[0]


def _check_reverse(args) -> tuple[bool, object]:
    target = args[0]
    if isinstance(target, tuple):        # getnameinfo's sockaddr
        target = target[0] if target else ""
    return _loopback_host(target), args[0]


#: audit event → check of its arguments: (allowed?, what to report).
_CHECKS = {
    "socket.connect": _check_send,
    "socket.sendto": _check_send,
    "socket.sendmsg": _check_send,
    "socket.getaddrinfo": _check_name,
    "socket.gethostbyname": _check_name,
    "socket.gethostbyaddr": _check_reverse,
    "socket.getnameinfo": _check_reverse,
}


def _record(event: str, what: object) -> str:
    import json
    argv = list(getattr(sys, "orig_argv", None) or getattr(sys, "argv", []))
    entry = {"pid": os.getpid(), "argv": argv, "event": event, "destination": repr(what)}
    text = json.dumps(entry) + "\n"
    log = _state["log"]
    if isinstance(log, str):
        try:   # the file exists (the suite made it); one append per line, atomic
            fd = os.open(log, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
        except OSError:
            sys.stderr.write("hermetic guard (log not writable): " + text)
    return f"hermetic test guard: {event} to {what!r} refused (tests reach loopback only)"


def _hook(event: str, args) -> None:
    check = _CHECKS.get(event)
    if check is None or _state["log"] is None:
        return
    ok, what = check(args)
    if ok:
        return
    host_ns = _state["netns"]
    if host_ns is not None and netns() != host_ns:
        return   # a namespace a test made: its traffic stays there
    raise PermissionError(1, _record(event, what))


def install(log: str, host_netns: int | None) -> None:
    """Check this process from now on, recording violations in *log* (once per process;
    a second call only changes where they go)."""
    _state["log"] = log
    _state["netns"] = host_netns
    if not _state["installed"]:
        sys.addaudithook(_hook)
        _state["installed"] = True


def _from_environment() -> None:
    log = os.environ.get(LOG_VAR)
    if not log:
        return
    ns = os.environ.get(NETNS_VAR, "")
    install(log, int(ns) if ns.isdigit() else netns())


_from_environment()
