"""Client side of binding: portmapper and nibindd calls, CALLIT multicast, parent search.

Spec §1.5 (portmapper operations), §6 (NIBIND), §7.1 (connecting to one (address, tag)),
§8.2 (how a netinfod finds its parent). Domain opening (``.``, ``..``, ``/``) builds on
these in ``domain.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import socket
from collections.abc import Sequence

from ..errors import ConfigError, NiError, RpcError, Status, Timeout, WireError
from ..model import addr_to_uint, is_digits, is_ipv4, uint_to_addr
from ..netif import interfaces, is_local, local_addresses, source_address_for
from ..wire import rpc
from ..wire.nibind import (
    NIBIND_PROG,
    NIBIND_VERS,
    BindArgs,
    BindProc,
    CloneArgs,
    Registration,
    decode_getregister_res,
    decode_listreg_res,
    decode_status,
    encode_bind_args,
    encode_clone_args,
    encode_registration,
    encode_tag,
)
from ..wire.portmap import (
    IPPROTO_TCP,
    IPPROTO_UDP,
    PMAP_PORT,
    PMAP_PROG,
    PMAP_VERS,
    Mapping,
    PmapProc,
    decode_callit_result,
    decode_dump,
    encode_callit_args,
)
from .transport import udp_call

log = logging.getLogger("netinfo.binding")

BROADCAST = "255.255.255.255"


#: The variable that says where the portmapper is when it is not on port 111 (DESIGN
#: "Interfaces"; the README's quick start gives each user a port of their own).
PORTMAPPER_VAR = "NETINFO_PORTMAPPER"
_EXPECTED = "expected HOST:PORT or PORT, e.g. 127.0.0.1:1111"
_HOST_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")


def _host_ok(h: str) -> bool:
    """An IPv4 address or a host name (RFC 1123 labels; not a malformed dotted number)."""
    if is_ipv4(h):
        return True
    labels = h.split(".")
    return (len(h) <= 253 and not all(x.isdigit() for x in labels)
            and all(_HOST_LABEL.match(x) for x in labels))


def parse_portmapper(value: str) -> tuple[str | None, int]:
    """``HOST:PORT``, ``:PORT`` or ``PORT`` → (host or None, port).

    :raises ConfigError: one line naming :data:`PORTMAPPER_VAR` and the part that is
        wrong, never a silent port 111.
    """
    h, sep, p = value.rpartition(":")
    # (is it wrong?, what to say): the first that applies is the message.
    checks = (
        (not p, f"no port after {h + sep!r}"),
        (not (is_digits(p) and 0 < int(p) < 65536), f"port {p!r} is not a number from 1 to "
                                                    "65535"),
        (bool(h) and not _host_ok(h), f"host {h!r} is neither an IPv4 address nor a host "
                                      "name"),
    )
    for wrong, why in checks:
        if wrong:
            raise ConfigError(f"{PORTMAPPER_VAR}={value!r}: {why} ({_EXPECTED})")
    return h or None, int(p)


def portmapper_address(host: str | None = None) -> tuple[str, int]:
    """Where the portmapper of *host* listens: port 111, or ``NETINFO_PORTMAPPER``'s.

    ``NETINFO_PORTMAPPER=host:port`` names the portmapper used when it is not on port 111
    (unprivileged runs, tests); its port applies to every host, its host to the local one.

    :raises ConfigError: the variable is set but malformed (see :func:`parse_portmapper`).
    """
    env = os.environ.get(PORTMAPPER_VAR, "")
    if env:
        h, port = parse_portmapper(env)
        return (host if host is not None else (h or "127.0.0.1")), port
    return (host if host is not None else "127.0.0.1"), PMAP_PORT


# -- portmapper calls ---------------------------------------------------------------------

async def pmap_getport(host: str | None, prog: int, vers: int, prot: int = IPPROTO_UDP,
                       timeout: float = 3.0) -> int:
    """GETPORT (spec §1.5): the port, 0 when not registered. *host* None: the local
    portmapper (see :func:`portmapper_address`)."""
    h, p = portmapper_address(host)
    u = await udp_call(h, p, PMAP_PROG, PMAP_VERS, PmapProc.GETPORT,
                       Mapping(prog, vers, prot, 0).encode(), timeout=timeout)
    return u.unpack_uint()


async def pmap_set(prog: int, vers: int, prot: int, port: int, host: str | None = None,
                   timeout: float = 3.0) -> bool:
    h, p = portmapper_address(host)
    u = await udp_call(h, p, PMAP_PROG, PMAP_VERS, PmapProc.SET,
                       Mapping(prog, vers, prot, port).encode(), timeout=timeout)
    return u.unpack_uint() == 1


async def pmap_unset(prog: int, vers: int, host: str | None = None,
                     timeout: float = 3.0) -> bool:
    h, p = portmapper_address(host)
    u = await udp_call(h, p, PMAP_PROG, PMAP_VERS, PmapProc.UNSET,
                       Mapping(prog, vers, 0, 0).encode(), timeout=timeout)
    return u.unpack_uint() == 1


async def pmap_dump(host: str | None = None, timeout: float = 3.0) -> list[Mapping]:
    h, p = portmapper_address(host)
    u = await udp_call(h, p, PMAP_PROG, PMAP_VERS, PmapProc.DUMP, timeout=timeout)
    return decode_dump(u)


# -- nibindd calls ------------------------------------------------------------------------

async def nibindd_port(host: str, timeout: float = 3.0) -> int:
    """nibindd's UDP port on *host*, from its portmapper (spec §7.1 step 1)."""
    port = await pmap_getport(host, NIBIND_PROG, NIBIND_VERS, IPPROTO_UDP, timeout)
    if not port:
        raise NiError(Status.CANTFINDADDRESS, f"no nibindd registered on {host}")
    return port


async def nibind_call(host: str, proc: int, args: bytes = b"", timeout: float = 3.0,
                      auth: rpc.AuthUnix | None = None, port: int | None = None):
    """One NIBIND call over UDP; returns an unpacker at the results."""
    if port is None:
        port = await nibindd_port(host, timeout)
    return await udp_call(host, port, NIBIND_PROG, NIBIND_VERS, proc, args, auth,
                          timeout=timeout)


async def getregister(host: str, tag: str, timeout: float = 3.0,
                      port: int | None = None) -> tuple[int, int]:
    """(udp_port, tcp_port) of *tag*'s netinfod on *host* (spec §7.1 step 2).

    :raises NiError: NI_NOTAG when the tag is not served there.
    """
    u = await nibind_call(host, BindProc.GETREGISTER, encode_tag(tag), timeout, port=port)
    return decode_getregister_res(u)


async def listreg(host: str, timeout: float = 3.0) -> list[Registration]:
    return decode_listreg_res(await nibind_call(host, BindProc.LISTREG, b"", timeout))


async def _status_call(host: str, proc: int, args: bytes, timeout: float,
                       port: int | None = None) -> None:
    status = decode_status(await nibind_call(host, proc, args, timeout, port=port))
    if status != Status.OK:
        raise NiError(status)


async def register(tag: str, udp_port: int, tcp_port: int, host: str = "127.0.0.1",
                   timeout: float = 3.0) -> None:
    """REGISTER a netinfod with the local nibindd (spec §6.2)."""
    await _status_call(host, BindProc.REGISTER,
                       encode_registration(Registration(tag, udp_port, tcp_port)), timeout)


async def unregister(tag: str, host: str = "127.0.0.1", timeout: float = 3.0) -> None:
    await _status_call(host, BindProc.UNREGISTER, encode_tag(tag), timeout)


async def createmaster(tag: str, host: str = "127.0.0.1", timeout: float = 30.0) -> None:
    await _status_call(host, BindProc.CREATEMASTER, encode_tag(tag), timeout)


async def createclone(tag: str, master_name: str, master_addr: str, master_tag: str,
                      host: str = "127.0.0.1", timeout: float = 30.0) -> None:
    await _status_call(host, BindProc.CREATECLONE, encode_clone_args(
        CloneArgs(tag, master_name, addr_to_uint(master_addr), master_tag)), timeout)


async def destroydomain(tag: str, host: str = "127.0.0.1", timeout: float = 30.0) -> None:
    await _status_call(host, BindProc.DESTROYDOMAIN, encode_tag(tag), timeout)


async def promote(tag: str, host: str = "127.0.0.1", timeout: float = 30.0) -> None:
    """Make the clone serving *tag* on *host* its domain's master (our NIBIND extension,
    ``nidomain -p``)."""
    await _status_call(host, BindProc.PROMOTE, encode_tag(tag), timeout)


async def lookup_netinfod(host: str, tag: str, timeout: float = 3.0) -> int:
    """The TCP port of *tag*'s netinfod on *host* via portmapper and nibindd (spec §7.1)."""
    _, tcp = await getregister(host, tag, timeout)
    return tcp


# -- CALLIT multicast (spec §1.5) and the parent search (spec §8.2) -----------------------

class _Multicast(asyncio.DatagramProtocol):
    def __init__(self, base: int, count: int) -> None:
        self.base = base
        self.count = count
        self.winner: asyncio.Future[tuple[int, str, bytes]] = \
            asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        try:
            xid, u = rpc.decode_reply(data)
        except (WireError, RpcError):
            return
        idx = (xid - self.base) & 0xFFFFFFFF
        if idx < self.count and not self.winner.done():
            try:
                _, result = decode_callit_result(u)
            except WireError:
                return
            self.winner.set_result((idx, addr[0], result))

    def error_received(self, exc: Exception) -> None:
        pass


async def multicall(targets: Sequence[tuple[str, bytes]], prog: int, vers: int, proc: int,
                    rounds: Sequence[float] = (0.5, 1.0, 2.0, 2.0),
                    auth: rpc.AuthUnix | None = None) -> tuple[int, str, bytes] | None:
    """Send CALLIT(prog, vers, proc, args_i) to each target address's portmapper.

    Each target's datagram carries xid base + i; the first successful reply wins:
    returns (index, replying address, result bytes), or None when nobody answered
    (portmappers stay silent on failure). Retransmits in *rounds* (Apple: 4 rounds,
    0.5 s growing to 2 s).
    """
    if not targets:
        return None
    loop = asyncio.get_running_loop()
    base = random.getrandbits(32)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.bind(("0.0.0.0", 0))
    sock.setblocking(False)
    transport, proto = await loop.create_datagram_endpoint(
        lambda: _Multicast(base, len(targets)), sock=sock)
    msgs = []
    for i, (addr, args) in enumerate(targets):
        body = encode_callit_args(prog, vers, proc, args)
        call = rpc.encode_call((base + i) & 0xFFFFFFFF, PMAP_PROG, PMAP_VERS, PmapProc.CALLIT,
                               body, auth)
        msgs.append((call, portmapper_address(addr)))
    try:
        for wait in rounds:
            for call, dest in msgs:
                try:
                    transport.sendto(call, dest)
                except OSError as e:
                    log.debug("callit to %s: %s", dest, e)
            try:
                async with asyncio.timeout(wait):
                    return await asyncio.shield(proto.winner)
            except TimeoutError:
                continue
        return None
    finally:
        transport.close()


def broadcast_allowed() -> bool:
    """False when ``NETINFO_BROADCAST=off``: this host must not broadcast (tests do this,
    since they may send only to loopback and to namespaces they create)."""
    return os.environ.get("NETINFO_BROADCAST", "on").lower() not in ("off", "0", "no")


def expand_candidates(candidates: Sequence[tuple[str, str]],
                      ifaces: list[tuple[str, str, str | None]] | None = None
                      ) -> list[tuple[str, str, str]]:
    """(address, parent tag) → (destination, parent tag, our client address).

    255.255.255.255 means the broadcast address of every non-loopback interface, with that
    interface's own address as the client address (spec §8.2 step 5, Apple).
    """
    if ifaces is None:
        ifaces = interfaces() if broadcast_allowed() else []
    out = []
    for addr, tag in candidates:
        if addr == BROADCAST:
            for _, own, bcast in ifaces:
                if bcast and not own.startswith("127."):
                    out.append((bcast, tag, own))
        elif is_ipv4(addr):  # never a name: no DNS lookup may stall a server
            out.append((addr, tag, source_address_for(addr)))
    return out


async def find_parent(own_tag: str, candidates: Sequence[tuple[str, str]],
                      rounds: Sequence[float] = (0.5, 1.0, 2.0, 2.0)) -> tuple[str, str] | None:
    """Multicast NIBIND BIND to the candidates (spec §8.2 step 6).

    :returns: (parent address, parent tag) of the first server that answers, or None.
    """
    expanded = expand_candidates(candidates)
    own = set(local_addresses())
    # Apple asks the candidates on this host first, then everyone (spec §8.2 step 6): a
    # parent served on this host is found without a datagram leaving it.
    local = [c for c in expanded if is_local(c[0], own)]
    stages = ([local, expanded] if local and len(local) < len(expanded) else [expanded])
    for stage in stages:
        targets = [(dest, encode_bind_args(BindArgs(addr_to_uint(client), own_tag, tag)))
                   for dest, tag, client in stage]
        won = await multicall(targets, NIBIND_PROG, NIBIND_VERS, BindProc.BIND,
                              rounds[:2] if stage is local and len(stages) > 1 else rounds)
        if won is not None:
            idx, addr, _ = won
            return addr, stage[idx][1]
    return None


async def ping_netinfod(host: str, tag: str, timeout: float = 2.0) -> bool:
    """GETREGISTER + NETINFO PING over UDP: is (host, tag) still served? (spec §8.2 step 2)"""
    from ..wire.protocol import NETINFO_PROG, NETINFO_VERS, Proc  # noqa: PLC0415
    try:
        udp, _ = await getregister(host, tag, timeout)
        await udp_call(host, udp, NETINFO_PROG, NETINFO_VERS, Proc.PING, timeout=timeout,
                       retries=1)
        return True
    except (NiError, RpcError, Timeout, OSError):
        return False


__all__ = ["portmapper_address", "pmap_getport", "pmap_set", "pmap_unset", "pmap_dump",
           "getregister", "listreg", "register", "unregister", "createmaster", "createclone",
           "destroydomain", "lookup_netinfod", "multicall", "find_parent", "ping_netinfod",
           "addr_to_uint", "uint_to_addr", "IPPROTO_TCP", "IPPROTO_UDP"]
