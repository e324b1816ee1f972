"""Opening domains by name: ``.``, ``..``, ``/``, ``/a/b``, ``tag@host``, ``-t host/tag``.

A domain handle (:class:`DomainClient`) holds the ordered list of the domain's servers
(address, tag), talks to one of them, fails reads over to the others, and sends writes to
the master (spec §7.1–§7.5). Domain names (``/sales/polaris``) are computed as spec §7.7
says.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import sys
from typing import Any

from ..errors import NetInfoError, NiError, NoPassword, RpcError, Status, Timeout, WireError
from ..facts import DomainFacts, addresses
from ..model import (
    first_values,
    format_host_port,
    is_digits,
    split_host_port,
    split_unescaped,
    uint_to_addr,
    unescape,
)
from ..netif import address_of, local_addresses
from ..wire.protocol import PROCEDURES
from .binding import getregister, nibindd_port, portmapper_address
from .core import Client
from .transport import READ_TIMEOUT, RpcConnection, open_tcp

log = logging.getLogger("netinfo.domain")

#: Apple's netinfod serves ``local`` on TCP 1033 and its library tries it first (spec §7.1).
APPLE_LOCAL_PORT = 1033
#: How many RPARENT levels a climb to "/" may take before we call it a loop.
MAX_DEPTH = 32

Server = tuple[str, str]  # (address, tag)

_CONNECT_ERRORS = (OSError, Timeout, RpcError, WireError, NiError, ConnectionError)


async def connect_server(addr: str, tag: str, port: int | None = None, *,
                         timeout: float = READ_TIMEOUT,
                         privileged: bool | None = None) -> RpcConnection:
    """A TCP connection to (addr, tag): GETREGISTER at *addr*'s nibindd, then connect.

    With *port*, connect straight to it. For ``local`` on this host, Apple's fixed port
    1033 is tried when nibindd does not know the tag (spec §7.1).
    """
    if port is None:
        try:
            port = await lookup_port(addr, tag, timeout)
        except (NiError, Timeout, RpcError, OSError, WireError) as e:
            if tag != "local" or not _is_local(addr):
                raise
            try:
                return await open_tcp(addr, APPLE_LOCAL_PORT, privileged, timeout)
            except (OSError, Timeout):
                raise e from None   # the lookup's failure says more than 1033's
    return await open_tcp(addr, port, privileged, timeout)


async def lookup_port(addr: str, tag: str, timeout: float = READ_TIMEOUT) -> int:
    """*tag*'s TCP port from *addr*'s nibindd (spec §7.1 steps 1-2), with failures that
    say what was asked: the portmapper's address, the nibindd, the tag.

    :raises NiError: NI_CANTFINDADDRESS (no nibindd: ``no nibindd at A (...)``),
        NI_NOTAG (``no such tag T at A``). :raises Timeout: nibindd did not answer.
    """
    pm = format_host_port(*portmapper_address(addr))
    try:
        nb_port = await nibindd_port(addr, timeout)
    except NiError:
        raise NiError(Status.CANTFINDADDRESS, f"no nibindd at {addr} (not registered with "
                      f"the portmapper at {pm})") from None
    except (Timeout, RpcError, WireError, OSError):
        raise NiError(Status.CANTFINDADDRESS, f"no nibindd at {addr} (no answer from the "
                      f"portmapper at {pm})") from None
    try:
        _, tcp = await getregister(addr, tag, timeout, port=nb_port)
    except NiError as e:
        if e.status != Status.NOTAG:
            raise
        raise NiError(Status.NOTAG, f"no such tag {tag} at {addr}") from None
    except (Timeout, RpcError, WireError, OSError):
        raise Timeout(f"no answer from nibindd at {format_host_port(addr, nb_port)}") \
            from None
    return tcp


def _is_local(addr: str) -> bool:
    return addr.startswith("127.") or addr == "::1" or addr in local_addresses()


def resolve_host(host: str) -> str:
    """A host name, dotted IPv4 or IPv6 literal → an address to connect to.

    :raises NiError: CANTFINDADDRESS (``unknown host <host>``)."""
    try:
        return str(ipaddress.ip_address(host.strip("[]") if host.startswith("[") else host))
    except ValueError:
        pass
    try:
        return address_of(host)
    except (OSError, UnicodeError):
        raise NiError(Status.CANTFINDADDRESS, f"unknown host {host}") from None


class DomainClient(Client):
    """A handle on one domain: every :class:`Client` method, with failover and master
    selection. Build with :func:`open_domain` or :meth:`for_servers`."""

    def __init__(self, conn: RpcConnection, servers: list[Server], index: int,
                 port: int | None = None, timeout: float = READ_TIMEOUT,
                 privileged: bool | None = None) -> None:
        addr, tag = servers[index]
        super().__init__(conn, addr, port or 0, tag, timeout)
        self.servers = servers
        self.index = index
        self.fixed_port = port
        self.privileged = privileged
        self._master: RpcConnection | None = None
        self._master_known = False

    @classmethod
    async def for_servers(cls, servers: list[Server], *, port: int | None = None,
                          timeout: float = READ_TIMEOUT,
                          privileged: bool | None = None) -> DomainClient:
        """Connect to the first server of *servers* that answers (spec §7.5)."""
        if not servers:
            raise NiError(Status.NORESPONSE, "the domain lists no servers")
        last: BaseException | None = None
        for i, (addr, tag) in enumerate(servers):
            try:
                conn = await connect_server(addr, tag, port, timeout=timeout,
                                            privileged=privileged)
            except _CONNECT_ERRORS as e:
                last = e
                continue
            return cls(conn, list(servers), i, port, timeout, privileged)
        assert last is not None
        raise last

    @property
    def server(self) -> Server:
        return self.servers[self.index]

    async def close(self) -> None:
        if self._master is not None and self._master is not self.conn:
            self._master.close()
        await super().close()

    async def call(self, proc: int, *args: Any) -> Any:
        """Writes go to the master (spec §7.5); reads fail over to the next server."""
        if PROCEDURES[proc].is_write:
            return await self.call_on(await self.master_connection(), proc, *args)
        tried = 0
        while True:
            try:
                return await self.call_on(self.conn, proc, *args)
            except (ConnectionError, Timeout, OSError):
                tried += 1
                if tried >= len(self.servers) or not await self._failover():
                    raise

    async def connection_for(self, proc: int) -> RpcConnection:
        """Writes go to the master (spec §7.5), reads to the server in use."""
        if PROCEDURES[proc].is_write:
            return await self.master_connection()
        return self.conn

    async def _failover(self) -> bool:
        """Move to the next server of the list that answers."""
        n = len(self.servers)
        for step in range(1, n):
            i = (self.index + step) % n
            addr, tag = self.servers[i]
            try:
                conn = await connect_server(addr, tag, self.fixed_port, timeout=self.timeout,
                                            privileged=self.privileged)
            except _CONNECT_ERRORS as e:
                log.info("cannot fail over to %s/%s: %r", addr, tag, e)
                continue
            log.info("failing over from %s/%s to %s/%s", *self.servers[self.index], addr, tag)
            if self._master is self.conn:
                self._master, self._master_known = None, False
            self.conn.close()
            self.conn, self.index, self.host, self.tag = conn, i, addr, tag
            return True
        return False

    async def master_connection(self) -> RpcConnection:
        """The master's connection: root ``master`` = host/tag, /machines/host's address
        matched against the server list; a single server is the master (spec §7.5)."""
        if self._master is not None and not (self._master.transport is None
                                             or self._master.transport.is_closing()):
            return self._master
        if len(self.servers) == 1 or self._master_known:
            self._master = self.conn
            return self.conn
        target = await self._find_master()
        self._master_known = True
        if target is None or target == self.server:
            self._master = self.conn
            return self.conn
        self._master = await connect_server(*target, self.fixed_port, timeout=self.timeout,
                                            privileged=self.privileged)
        return self._master

    async def use_master(self) -> None:
        """The library's "needwrite" mode (spec §7.5): reads go to the master too, so the
        instances a tool reads before writing are the master's."""
        master = await self.master_connection()
        if master is self.conn:
            return
        for i, (addr, _) in enumerate(self.servers):
            peer = master.transport.get_extra_info("peername") if master.transport else None
            if peer and peer[0] == addr:
                self.index, self.host, self.tag = i, addr, self.servers[i][1]
                break
        self.conn.close()
        self.conn = master

    async def _find_master(self) -> Server | None:
        try:
            master = first_values((await self.read(0))[1], "master")
            if not master or "/" not in master[0]:
                return None
            host, _, mtag = master[0].partition("/")
            mid = await self.pathsearch(f"/machines/{_escape(host)}")
            entry = (await self.read(mid))[1]
        except NiError:
            return None
        # the master's dotted addresses, by the rule every server uses (module facts)
        addrs = DomainFacts([("master", master)], [entry]).master_addresses()
        # the master's own (address, tag) in our list, else its first address; a server
        # of another tag at one of its addresses is not the master (a clone on its host)
        for addr, tag in self.servers:
            if addr in addrs and tag == mtag:
                return (addr, tag)
        return (addrs[0], mtag) if addrs else None


def _escape(name: str) -> str:
    return name.replace("\\", "\\\\").replace("/", "\\/").replace("=", "\\=")


# -- credentials (spec §10.1) ----------------------------------------------------------------

async def authenticate(client: Client, user: str | None, password: str | None,
                       prompt: bool, *, stdin_ok: bool = True) -> None:
    """``ni_setuser`` then ``ni_setpassword`` as ``niutil -p/-u/-P`` do (spec §10.1):
    *client*'s later calls carry AUTH_UNIX with the inverted password.

    The user (default ``root``) is looked up in the target domain's /users for its uid;
    the password is prompted for without echo when *prompt* and none was given
    (:func:`ask_password`; *stdin_ok* False: never from standard input, which holds a
    tool's data).
    """
    if user is None and password is None and not prompt:
        return
    name = user or "root"
    if password is None:
        password = ask_password(stdin_ok=stdin_ok)
    try:
        uid_s = await client.lookupprop(await client.pathsearch(
            "/users/" + name.replace("\\", "\\\\").replace("/", "\\/")), "uid")
    except NiError:
        raise NiError(Status.NOUSER) from None
    if not uid_s or not is_digits(uid_s[0]):
        raise NiError(Status.NOUSER)
    client.set_password(password, int(uid_s[0]))


def ask_password(prompt: str = "Password: ", *, stdin_ok: bool = True) -> str:
    """Read a password as the original tools' ``getpass(3)`` did (tools §1.2): without
    echo on the process's terminal; with no terminal at all (a script, cron), the prompt
    on stderr and the first line of standard input (without the warning Python's getpass
    gives, and without its traceback at end of input).

    :raises NoPassword: end of input at the prompt, or no terminal and nothing on
        standard input (or *stdin_ok* False).
    """
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
        has_tty = True
    except OSError:
        has_tty = False
    if has_tty:
        import getpass  # only when asking: keeps the tools' start-up short (issue 10)
        try:
            return getpass.getpass(prompt)
        except EOFError:
            if sys.stderr is not None:
                sys.stderr.write("\n")   # end the prompt's line before the error
            raise NoPassword("can't read the password: end of input at the prompt") \
                from None
    if not stdin_ok:
        raise NoPassword("can't read the password: no terminal (standard input holds the "
                         "data; give the password with -P)")
    if sys.stderr is not None:
        sys.stderr.write(prompt)   # as readpassphrase(3) did without a terminal
        sys.stderr.flush()
    line = sys.stdin.readline() if sys.stdin is not None else ""
    if not line:
        if sys.stderr is not None:
            sys.stderr.write("\n")   # end the prompt's line before the error
        raise NoPassword("can't read the password: no terminal, and nothing on standard "
                         "input")
    return line[:-1] if line.endswith("\n") else line


# -- walking the hierarchy ------------------------------------------------------------------

async def machines(c: Client) -> list[list[tuple[str, list[str]]]]:
    """The proplists of the domain's /machines entries (one LISTALL); [] without one."""
    try:
        return (await c.listall(await c.pathsearch("/machines")))[1]
    except NiError:
        return []


async def domain_servers(c: Client) -> list[Server]:
    """The servers of the domain *c* is connected to: every /machines entry serving
    ``./T``, as (ip_address, T) (spec §7.4 step 2)."""
    return DomainFacts([], await machines(c)).server_addresses()


async def open_parent(c: DomainClient) -> DomainClient:
    """``..``: RPARENT, then the parent's own server list, RPARENT's server first (§7.4).

    :raises NiError: NI_NETROOT at the root; NI_NORESPONSE while the server finds no parent.
    """
    tag, addr_n = await c.rparent()
    addr = uint_to_addr(addr_n)
    parent = await DomainClient.for_servers([(addr, tag)], timeout=c.timeout,
                                            privileged=c.privileged)
    servers = await domain_servers(parent)
    servers = [(addr, tag)] + [s for s in servers if s != (addr, tag)]
    parent.servers, parent.index = servers, 0
    return parent


async def open_child(c: DomainClient, name: str) -> DomainClient:
    """A child domain *name*: /machines entries serving ``name/T`` (spec §7.3)."""
    servers = DomainFacts([], await machines(c)).child_servers(name)
    if not servers:
        addr, tag = c.server
        raise NiError(Status.NODIR, f"unknown domain {name}: no /machines entry of "
                      f"{tag}@{addr} serves {name}/<tag>")
    return await DomainClient.for_servers(servers, timeout=c.timeout, privileged=c.privileged)


async def open_local(timeout: float = READ_TIMEOUT,
                     privileged: bool | None = None) -> DomainClient:
    """The local domain: tag ``local`` on 127.0.0.1 (Apple, spec §7.2)."""
    return await DomainClient.for_servers([("127.0.0.1", "local")], timeout=timeout,
                                          privileged=privileged)


async def _climb(c: DomainClient, retries: int) -> DomainClient:
    """Open ".." of *c*, waiting out NI_NORESPONSE a few times (the library sleeps 4 s)."""
    for attempt in range(retries + 1):
        try:
            return await open_parent(c)
        except NiError as e:
            if e.status != Status.NORESPONSE or attempt == retries:
                raise
            await asyncio.sleep(1.0)
    raise AssertionError


def split_domain_path(path: str) -> list[str]:
    """Components of a domain path; ``\\`` escapes ``/`` (spec §7.3)."""
    return [unescape(p) for p in split_unescaped(path, "/")]


def parse_tagged(arg: str) -> tuple[str, str, int | None]:
    """``-t host/tag``. A port may follow the host (``host:port/tag``); an IPv6 address
    is written bare or in brackets (``::1/tag``, ``[::1]:port/tag``).

    :raises TaggedError: with the parse status of tools §0.2 (1 Bad format, 2 No host,
        3 No tag, 4 Bad address, 5 Host not found).
    """
    if "/" not in arg:
        raise TaggedError(1)
    host, _, tag = arg.partition("/")
    if not host:
        raise TaggedError(2)
    if not tag:
        raise TaggedError(3)
    try:
        host, port = split_host_port(host)
    except ValueError:
        raise TaggedError(4) from None
    if ":" in host:
        return host, tag, port   # an IPv6 literal (split_host_port checked it)
    if all(ch in "0123456789." for ch in host):
        try:
            socket.inet_aton(host)
        except OSError:
            raise TaggedError(4) from None
        if host.count(".") != 3:
            raise TaggedError(4)
        return host, tag, port
    try:
        return address_of(host), tag, port
    except (OSError, UnicodeError):
        raise TaggedError(5, host) from None


def parse_direct(component: str) -> tuple[str, str, int | None]:
    """A ``tag@host[:port]`` domain component → (tag, host, port); the host may be an
    IPv6 literal, bare or in brackets (``local@::1``, ``local@[::1]:1033``).

    :raises DomainSyntaxError: naming the bad part (no tag, no host, a bad port).
    """
    tag, _, hostport = component.partition("@")
    if not tag:
        raise DomainSyntaxError("no tag before '@'")
    if not hostport:
        raise DomainSyntaxError("no host after '@'")
    try:
        host, port = split_host_port(hostport)
    except ValueError as e:
        raise DomainSyntaxError(str(e)) from None
    return tag, host, port


def check_component(component: str) -> None:
    """A domain component without ``@`` is a child domain's name; one holding a ``:`` is
    an address written without its tag, refused with what is wrong with it.

    :raises DomainSyntaxError:."""
    if ":" not in component:
        return
    try:
        split_host_port(component)
    except ValueError as e:
        raise DomainSyntaxError(str(e)) from None
    raise DomainSyntaxError(f"{component} names a server but no tag (write "
                            f"TAG@{component})")


class DomainSyntaxError(NetInfoError, ValueError):
    """A domain argument that does not parse; the message names the bad part."""


class TaggedError(NetInfoError):
    """A ``-t host/tag`` argument that does not parse (tools §0.2)."""

    TEXTS = {1: "Bad format", 2: "No host", 3: "No tag", 4: "Bad address",
             5: "Host not found"}

    def __init__(self, code: int, host: str = "") -> None:
        self.code = code
        self.host = host
        super().__init__(self.TEXTS[code])


async def open_domain(name: str = ".", *, tagged: bool = False, timeout: float = READ_TIMEOUT,
                      privileged: bool | None = None, retries: int = 3) -> DomainClient:
    """``ni_open``: a handle on the domain *name* (spec §7.3, tools §0.2).

    *name* is ``.``, ``..``, ``/``, ``/a/b``, ``./x``, ``../x``, ``a/b`` (relative to the
    local domain), or ends in a ``tag@host[:port]`` component (a direct connection). With
    *tagged*, *name* is ``host/tag`` (``-t``).
    """
    if tagged:
        host, tag, port = parse_tagged(name)
        return await DomainClient.for_servers([(host, tag)], port=port, timeout=timeout,
                                              privileged=privileged)
    comps = split_domain_path(name)
    # A tag@host component connects straight there and ignores what precedes it.
    for i in range(len(comps) - 1, -1, -1):
        if "@" in comps[i]:
            tag, host, port = parse_direct(comps[i])
            for comp in comps[i + 1:]:
                check_component(comp)
            cur = await DomainClient.for_servers([(resolve_host(host), tag)], port=port,
                                                 timeout=timeout, privileged=privileged)
            comps = comps[i + 1:]
            break
    else:
        for comp in comps:
            check_component(comp)
        cur = await open_local(timeout, privileged)
        if name.startswith("/"):
            # "/": climb ".." until RPARENT says NI_NETROOT (spec §7.3)
            for _ in range(MAX_DEPTH):
                try:
                    nxt = await _climb(cur, retries)
                except NiError as e:
                    if e.status == Status.NETROOT:
                        break
                    await cur.close()
                    raise
                await cur.close()
                cur = nxt
            comps = comps[1:]
    try:
        for comp in comps:
            if comp in ("", "."):
                continue
            nxt = await (_climb(cur, retries) if comp == ".." else open_child(cur, comp))
            await cur.close()
            cur = nxt
    except BaseException:
        await cur.close()
        raise
    return cur


async def domain_name(c: DomainClient, retries: int = 3) -> str:
    """``ni_pwdomain``: the absolute name of *c*'s domain (spec §7.7), e.g. ``/sales/eng``.

    A level whose server is still looking for its parent (NI_NORESPONSE) is retried a few
    times, as the library's open of ".." does."""
    names: list[str] = []
    cur = c
    own = False
    try:
        for _ in range(MAX_DEPTH):
            try:
                parent = await _climb(cur, retries)
            except NiError as e:
                if e.status == Status.NETROOT:
                    break
                raise
            addr, tag = cur.server
            mine = {addr} | (set(local_addresses()) if _is_local(addr) else set())
            label = f"{tag}@{addr}"
            for props in await machines(parent):
                if not mine & set(addresses(props)):
                    continue
                for s in first_values(props, "serves") or ():
                    n, slash, t = s.partition("/")
                    if slash and t == tag and n not in (".", ".."):
                        label = n
                        break
                else:
                    continue
                break
            names.append(label)
            if own:
                await cur.close()
            cur, own = parent, True
    finally:
        if own:
            await cur.close()
    return "/" + "/".join(reversed(names))

