"""This host's network interfaces and addresses (Linux ioctls; IPv4), and the one place
where the package turns host names into addresses and back (:func:`address_of`,
:func:`name_of`)."""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import socket
import struct
from collections.abc import Iterator

_SIOCGIFFLAGS = 0x8913
_SIOCGIFADDR = 0x8915
_SIOCGIFBRDADDR = 0x8919
_IFF_UP = 0x1
_IFF_BROADCAST = 0x2


def interfaces() -> list[tuple[str, str, str | None]]:
    """(name, address, broadcast address or None) of every IPv4 interface that is up."""
    out: list[tuple[str, str, str | None]] = []
    try:
        names = [n for _, n in socket.if_nameindex()]
    except OSError:
        return out
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for name in names:
            req = struct.pack("256s", name.encode()[:15])
            try:
                flags = struct.unpack_from("H", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, req),
                                           16)[0]
                addr = socket.inet_ntoa(fcntl.ioctl(s.fileno(), _SIOCGIFADDR, req)[20:24])
            except OSError:
                continue
            if not flags & _IFF_UP:
                continue
            bcast = None
            if flags & _IFF_BROADCAST:
                try:
                    bcast = socket.inet_ntoa(
                        fcntl.ioctl(s.fileno(), _SIOCGIFBRDADDR, req)[20:24])
                except OSError:
                    pass
            out.append((name, addr, bcast))
    return out


def local_addresses() -> list[str]:
    """IPv4 addresses of this host's interfaces that are up, loopback included."""
    addrs = [a for _, a, _ in interfaces()]
    if "127.0.0.1" not in addrs:
        addrs.append("127.0.0.1")
    return addrs


def non_loopback(addrs: list[str]) -> list[str]:
    return [a for a in addrs if not a.startswith("127.")]


def is_local(addr: str, own: frozenset[str] | set[str]) -> bool:
    """One of this host's addresses (any 127/8 address counts)."""
    if addr.startswith("::ffff:"):
        addr = addr[7:]
    return addr in own or addr.startswith("127.") or addr == "::1"


def source_address_for(dest: str) -> str:
    """The local address the kernel would use to reach *dest*."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((dest, 9))
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def hostname() -> str:
    """This host's short name (what /machines and ``master`` call it)."""
    return socket.gethostname().split(".")[0] or "localhost"


#: RFC 6761 §6.4: names under ``invalid`` never resolve, so no resolver is asked about them.
_NEVER_RESOLVED = "invalid"


def _never_resolved(name: str) -> bool:
    return name.rstrip(".").lower().rpartition(".")[2] == _NEVER_RESOLVED


def _hosts_file() -> str | None:
    """``NETINFO_HOSTS=FILE``: resolve from that hosts(5) file only, never by DNS."""
    return os.environ.get("NETINFO_HOSTS") or None


def _hosts_entries(path: str) -> Iterator[tuple[str, list[str]]]:
    """(address, names) of each line of a hosts(5) file; an unreadable file has none."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except OSError:
        return
    for line in lines:
        fields = line.partition("#")[0].split()
        if len(fields) < 2:
            continue
        try:
            addr = str(ipaddress.ip_address(fields[0]))
        except ValueError:
            continue
        yield addr, fields[1:]


def _not_found(what: str) -> socket.gaierror:
    return socket.gaierror(socket.EAI_NONAME, f"{what}: Name or service not known")


def address_of(name: str) -> str:
    """The address of host *name* (IPv4 first, as ``gethostbyname``), the way every part of
    the package resolves a host name.

    ``*.invalid`` is never found (RFC 6761). With ``NETINFO_HOSTS=FILE`` only that hosts(5)
    file is read (the first IPv4 line naming the host, else the first IPv6 one) and no
    resolver is asked; otherwise the system's resolver is.

    :raises OSError: (``socket.gaierror``) the name is not found.
    """
    if _never_resolved(name):
        raise _not_found(name)
    path = _hosts_file()
    if path is None:
        return socket.gethostbyname(name)
    want = name.lower().rstrip(".")
    found = [addr for addr, names in _hosts_entries(path)
             if want in (n.lower().rstrip(".") for n in names)]
    found.sort(key=lambda a: ":" in a)   # stable: IPv4 lines first, each in file order
    if not found:
        raise _not_found(name)
    return found[0]


def name_of(addr: str) -> str:
    """The host name of address *addr* (reverse resolution), from ``NETINFO_HOSTS`` alone
    when that is set (the first name on the first line with that address).

    :raises OSError: the address has no name.
    """
    path = _hosts_file()
    if path is None:
        return socket.gethostbyaddr(addr)[0]
    try:
        want = str(ipaddress.ip_address(addr))
    except ValueError:
        raise _not_found(addr) from None
    for a, names in _hosts_entries(path):
        if a == want:
            return names[0]
    raise _not_found(addr)


def _proc_net_address(addr: str, port: int) -> set[str]:
    """How /proc/net/{tcp,udp}[6] write a local socket address (host byte order words)."""
    addr = addr.removeprefix("::ffff:")
    out = set()
    try:
        if ":" in addr:
            raw = socket.inet_pton(socket.AF_INET6, addr)
        else:
            raw4 = socket.inet_aton(addr)
            out.add(f"{struct.unpack('=I', raw4)[0]:08X}:{port:04X}")
            raw = b"\0" * 10 + b"\xff\xff" + raw4  # the same socket seen through tcp6/udp6
    except OSError:
        return out
    words = struct.unpack("=4I", raw)
    out.add("".join(f"{w:08X}" for w in words) + f":{port:04X}")
    return out


def peer_uid(addr: str, port: int, udp: bool,
             towards: tuple[str, int] | None = None) -> int | None:
    """The uid owning the local socket bound to (*addr*, *port*), from /proc/net; None
    when no local socket has that address (the peer is remote, or gone).

    This is how a non-root daemon tells its own user's processes from other local users
    (a reserved port cannot, since nobody may bind one without root). For TCP, *towards*
    is our end of the connection (our address and port): the peer's row must point at it,
    so that a listener or another connection on the same local port is never taken for
    the peer. A connection in TIME_WAIT no longer has an owner (the kernel writes uid 0
    for it), and one of those may share the peer's new port: its row never counts.
    """
    keys = _proc_net_address(addr, port)
    if not keys:
        return None
    remote = _proc_net_address(*towards) if towards is not None else None
    for fields in _proc_net_sockets(udp):
        if fields[1] not in keys:
            continue
        if not udp and (fields[3] == _TCP_TIME_WAIT
                        or (remote is not None and fields[2] not in remote)):
            continue
        return int(fields[7])
    return None


#: /proc/net/tcp's state column for TIME_WAIT (include/net/tcp_states.h)
_TCP_TIME_WAIT = "06"


def port_owner(port: int, udp: bool = True) -> int | None:
    """The uid owning a local socket bound to *port* on any address (for TCP, a
    listening one), from /proc/net; None when there is none (or it is not visible).

    This is how nibindd tells whose portmapper answers on ``NETINFO_PORTMAPPER``'s port.
    """
    suffix = f":{port:04X}"
    for fields in _proc_net_sockets(udp):
        # TCP state 0A is LISTEN; a UDP socket's state does not matter
        if fields[1].endswith(suffix) and (udp or fields[3] == "0A"):
            return int(fields[7])
    return None


def _proc_net_sockets(udp: bool) -> Iterator[list[str]]:
    """The rows of /proc/net/{udp,udp6} or {tcp,tcp6}, split into fields (local address
    is field 1, state field 3, uid field 7); a table that cannot be read is skipped."""
    for kind in ("udp", "udp6") if udp else ("tcp", "tcp6"):
        try:
            # in one read, as far as it goes: the kernel builds the table afresh for
            # each read() call, and rows can be missed between two calls
            with open(f"/proc/net/{kind}", "rb", buffering=0) as f:
                text = f.readall().decode("ascii", "replace")
        except OSError:
            continue
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) > 7:
                yield fields


#: Why a bind to an address fails, for the errors a mistyped --bind gives.
_BIND_ERRORS = {
    errno.EADDRNOTAVAIL: "not an address of this host",
    errno.EADDRINUSE: "the port is in use",
    errno.EACCES: "permission denied (a port below 1024 needs root)",
}


def bind_problem(addr: str, port: int = 0) -> str | None:
    """Why this host cannot listen on (*addr*, *port*), a few words; None when it can.

    Asked before a daemon creates anything, so that ``--bind`` with an address that is
    not this host's fails at once and leaves nothing behind.
    """
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    try:
        with socket.socket(fam, socket.SOCK_DGRAM) as s:
            s.bind((addr, port))
    except socket.gaierror:
        return "not an address"
    except OSError as e:
        return _BIND_ERRORS.get(e.errno or 0, e.strerror or str(e))
    return None


def served_addresses(bind: str) -> list[str]:
    """The addresses a new domain lists for this host (the network root made by
    ``nibindd --init``, the master made by ``netinfod -m``): where its servers answer.

    Bound to a loopback address (the default), only that one: the host's other addresses
    would name servers that are not listening there, and a client would try them first.
    Otherwise every address of this host, 127.0.0.1 last."""
    try:
        ip = ipaddress.ip_address(bind)
    except ValueError:
        ip = None
    if ip is not None and ip.is_loopback:
        return [str(ip)]
    return non_loopback(local_addresses()) + ["127.0.0.1"]
