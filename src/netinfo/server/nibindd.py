"""nibindd: the NIBIND program, an embedded portmapper, and one netinfod per tag.

Spec §1.5 (portmapper, CALLIT), §6 (NIBIND), tools §4.6. Each tag is served by a child
``netinfod`` process (crash isolation, and both cores busy under load); the children register
with nibindd over UDP exactly as NeXT's and Apple's netinfods did.

The portmapper is either the system's rpcbind (we UNSET then SET our registration, re-check
it periodically and remove it on exit; Debian's rpcbind forwards CALLIT only when started
with ``-r``) or our own, embedded one, with CALLIT.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..client.binding import pmap_getport, pmap_set, pmap_unset, portmapper_address
from ..client.transport import udp_call
from ..errors import NetInfoError, NiError, RpcError, Status, Timeout, WireError
from ..model import uint_to_addr
from ..netif import bind_problem, is_local, local_addresses, peer_uid, port_owner
from ..wire import rpc
from ..wire.nibind import (
    FORWARDABLE,
    NIBIND_PROG,
    NIBIND_VERS,
    PRIVILEGED,
    BindProc,
    CloneArgs,
    Registration,
    decode_bind_args,
    decode_clone_args,
    decode_registration,
    decode_tag,
    encode_getregister_res,
    encode_listreg_res,
    encode_status,
    valid_tag,
)
from ..wire.portmap import (
    IPPROTO_TCP,
    IPPROTO_UDP,
    PMAP_PROG,
    PMAP_VERS,
    Mapping,
    PmapProc,
    decode_callit_args,
    encode_bool,
    encode_callit_result,
    encode_dump,
    encode_uint,
)
from ..wire.rpcb import RPCBVERS_4, Registry, Rpcb, RpcbProc, encode_rpcblist, encode_string
from ..wire.protocol import NETINFO_PROG, NETINFO_VERS, PROCEDURES, Proc, encode_args
from ..wire.rpc import AcceptStat
from ..storage import Catalog, open_catalog
from .database import catalog_of
from .netinfod import bind_pair
from .rpc import Peer, Program, RpcServer

log = logging.getLogger("netinfo.nibindd")

#: How long CALLIT waits for the service it forwards to (the caller retransmits anyway).
CALLIT_TIMEOUT = 2.0
#: CALLIT forwards in flight at once; more are dropped (as rpcbind limits them).
CALLIT_IN_FLIGHT = 64
#: NIBIND BIND asks the tag's netinfod with a 2 s timeout (spec §6.3).
BIND_TIMEOUT = 2.0
#: How often the registration with a system rpcbind is re-checked (it accepts UNSET from
#: any local process; notes/ecosystem.md §2.3). ``NETINFO_RPCBIND_RECHECK`` overrides it.
RECHECK_SECONDS = 60.0


class PortmapperTaken(NetInfoError):
    """The portmapper nibindd was told to use is another nibindd's or another user's; the
    message is one line saying whose, and what to do."""


async def _nibind_answers(host: str, port: int) -> bool:
    """Whether a NIBIND server answers PING on *host*:*port* (spec §6.1, procedure 0)."""
    try:
        await udp_call(host, port, NIBIND_PROG, NIBIND_VERS, BindProc.PING, timeout=1.0,
                       retries=1, privileged=False)
        return True
    except (Timeout, RpcError, OSError, WireError):
        return False


def recheck_seconds() -> float:
    try:
        return max(0.5, float(os.environ.get("NETINFO_RPCBIND_RECHECK", RECHECK_SECONDS)))
    except ValueError:
        return RECHECK_SECONDS


class PortmapperProgram:
    """Portmapper v2 (program 100000): NULL, SET, UNSET, GETPORT, DUMP, CALLIT."""

    def __init__(self, own_addresses: list[str]) -> None:
        self.registry = Registry()
        self.own = frozenset(own_addresses)
        #: CALLIT calls being forwarded now
        self.in_flight = 0

    def program(self) -> Program:
        # versions 2 (portmapper) and 3, 4 (rpcbind: libtirpc services register that
        # way, issue 21 item 6)
        return Program(PMAP_PROG, PMAP_VERS, RPCBVERS_4, self.handle)

    async def handle(self, call: rpc.Call, peer: Peer) -> bytes | None:
        if call.vers != PMAP_VERS:
            return self._rpcb(call, peer)
        xid, proc, reg = call.xid, call.proc, self.registry
        if proc == PmapProc.NULL:
            return rpc.reply_success(xid)
        if proc in (PmapProc.SET, PmapProc.UNSET):
            m = Mapping.decode(call.args)
            if not owner_may_register(peer, self.own):
                log.info("refusing portmapper %s from %s:%d", PmapProc(proc).name,
                         peer.addr, peer.port)
                return rpc.reply_success(xid, encode_bool(False))
            ok = reg.set(m) if proc == PmapProc.SET else reg.unset(m.prog, m.vers)
            return rpc.reply_success(xid, encode_bool(ok))
        if proc == PmapProc.GETPORT:
            m = Mapping.decode(call.args)
            return rpc.reply_success(xid, encode_uint(reg.getport(m.prog, m.vers, m.prot)))
        if proc == PmapProc.DUMP:
            if call.args:
                raise WireError("DUMP takes no arguments")
            return rpc.reply_success(xid, encode_dump(reg.dump()))
        if proc == PmapProc.CALLIT:
            if not peer.udp:
                return rpc.reply_accept_error(xid, AcceptStat.PROC_UNAVAIL)
            return await self._callit(call)
        return rpc.reply_accept_error(xid, AcceptStat.PROC_UNAVAIL)

    def _rpcb(self, call: rpc.Call, peer: Peer) -> bytes:
        """rpcbind versions 3 and 4 (RFC 1833 §2.2, §2.3): SET, UNSET, GETADDR, DUMP,
        GETTIME, and version 4's GETVERSADDR, on the same registry as version 2. SET
        and UNSET are for whoever may administer the host (:func:`owner_may_register`);
        an UNSET of someone else's registration needs the superuser, as rpcbind's."""
        xid, proc, reg = call.xid, call.proc, self.registry
        if proc == RpcbProc.NULL:
            return rpc.reply_success(xid)
        if proc in (RpcbProc.SET, RpcbProc.UNSET):
            r = Rpcb.decode(call.args)
            if not owner_may_register(peer, self.own):
                log.info("refusing rpcbind %s from %s:%d", RpcbProc(proc).name,
                         peer.addr, peer.port)
                return rpc.reply_success(xid, encode_bool(False))
            owner = "superuser" if peer.uid == 0 or peer.port < 1024 else (r.owner or "")
            ok = (reg.set_rpcb(Rpcb(r.prog, r.vers, r.netid, r.addr, owner))
                  if proc == RpcbProc.SET else reg.unset_rpcb(r))
            return rpc.reply_success(xid, encode_bool(ok))
        if proc in (RpcbProc.GETADDR, RpcbProc.GETVERSADDR):
            r = Rpcb.decode(call.args)
            found = reg.getaddr(r.prog, r.vers, r.netid,
                                any_version=proc == RpcbProc.GETADDR)
            if found.startswith("0.0.0.0."):   # registered on every address: ours
                found = "127.0.0.1" + found[len("0.0.0.0"):]
            return rpc.reply_success(xid, encode_string(found))
        if proc == RpcbProc.DUMP:
            if call.args:
                raise WireError("DUMP takes no arguments")
            return rpc.reply_success(xid, encode_rpcblist(reg.dump_rpcb()))
        if proc == RpcbProc.GETTIME:
            return rpc.reply_success(xid, encode_uint(int(time.time()) & 0xFFFFFFFF))
        return rpc.reply_accept_error(xid, AcceptStat.PROC_UNAVAIL)

    async def _callit(self, call: rpc.Call) -> bytes | None:
        """Forward to a local UDP service; answer only a success (spec §1.5).

        Never to the portmapper itself (so SET/UNSET and CALLIT are never forwarded and
        forwarding never nests), to NIBIND only what anyone may call, and at most
        :data:`CALLIT_IN_FLIGHT` at once (more are dropped): a forwarded call leaves from
        this host, and must not lend its locality to an anonymous sender.
        """
        prog, vers, proc, args = decode_callit_args(call.args)
        if prog == PMAP_PROG or (prog == NIBIND_PROG and proc not in FORWARDABLE):
            return None
        if self.in_flight >= CALLIT_IN_FLIGHT:
            return None
        port = self.registry.getport(prog, vers, IPPROTO_UDP)
        if not port:
            return None
        self.in_flight += 1
        try:
            u = await udp_call("127.0.0.1", port, prog, vers, proc, args, call.auth,
                               timeout=CALLIT_TIMEOUT, retries=1, privileged=False)
        except (RpcError, Timeout, WireError, OSError):
            return None  # silent on any failure: that is what makes broadcast binding work
        finally:
            self.in_flight -= 1
        return rpc.reply_success(call.xid, encode_callit_result(port, u.data[u.pos:]))


#: Where libtirpc looks for rpcbind first (its local transport; /var/run is /run).
RPCBIND_SOCKET = "/run/rpcbind.sock"


async def serve_local_socket(server: RpcServer,
                             path: str = RPCBIND_SOCKET) -> tuple[str, int] | None:
    """Serve the embedded portmapper on rpcbind's local socket too (nibindd
    --rpcbind-socket; a host with no rpcbind, where the portmapper on port 111 is ours):
    libtirpc services such as Debian's
    ``ypbind`` register through it and give up when it is missing (issue 21 item 6).
    A socket some live process answers on is left alone; a stale one is replaced.
    Returns (path, inode) to remove at exit, or None when it was not served."""
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
            log.info("%s answers already: not serving rpcbind's local socket", path)
            return None
        except OSError:
            pass
        finally:
            probe.close()
        try:
            os.unlink(path)
        except OSError:
            return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o666)
        sock.listen(64)
        sock.setblocking(False)
        await server.start_local(sock)
    except OSError as e:
        sock.close()
        log.info("not serving rpcbind's local socket %s: %s", path, e)
        return None
    return path, os.stat(path).st_ino


def release_local_socket(held: tuple[str, int]) -> None:
    """Remove the local socket if it is still the one we made."""
    path, ino = held
    try:
        if os.stat(path).st_ino == ino:
            os.unlink(path)
    except OSError:
        pass


def owner_may_register(peer: Peer, own: frozenset[str]) -> bool:
    """Who may administer this host's portmapper and nibindd (spec §6.2, §10.6).

    A local address, and a reserved source port (only root can bind one). A non-root
    daemon, where nobody can hold a reserved port, also accepts its own user's sockets
    (their owner read from /proc/net), never "any local caller".
    """
    if peer.uid is not None:   # the local socket: its peer's credentials
        return peer.uid in (0, os.geteuid())
    if not is_local(peer.addr, own):
        return False
    if peer.port < 1024:
        return True
    euid = os.geteuid()
    return euid != 0 and peer_uid(peer.addr, peer.port, peer.udp) == euid


@dataclass
class Child:
    """One served tag."""

    tag: str
    proc: asyncio.subprocess.Process | None = None
    reg: Registration | None = None
    registered: asyncio.Event = field(default_factory=asyncio.Event)
    #: the task that waits for the child to exit (kept so it is not collected)
    watcher: asyncio.Future | None = None
    #: seconds before the next restart after a crash
    backoff: float = 0.0


class Nibindd:
    """The NIBIND program and the netinfods it runs (spec §6)."""

    def __init__(self, directory: Path, bind: str = "0.0.0.0", portmapper: str = "auto",
                 netinfod_args: list[str] | None = None, store: str | None = None) -> None:
        self.directory = directory
        #: the catalog location URL the domains live at (``nibindd --store URL``: every
        #: domain of a PostgreSQL database), None: the directory's ``*.nidb``
        self.store = store
        #: where the domains are found, created (``netinfod -m``, a clone) and destroyed
        self.catalog: Catalog = catalog_of(directory) if store is None else \
            open_catalog(store)
        self.bind = bind
        #: rpcbind's local socket, when the embedded portmapper serves it (its inode)
        self.local_socket: tuple[str, int] | None = None
        self.portmapper_mode = portmapper
        self.netinfod_args = netinfod_args or []
        #: tag → the NIS domains its netinfod serves (--nis-domain NISDOMAIN=TAG)
        self.nis_domains: dict[str, list[str]] = {}
        #: ... with the ancestors' entries (--nis-hierarchy)
        self.nis_hierarchy = False
        #: serve rpcbind's local socket at this path with the embedded portmapper
        self.rpcbind_socket: str | None = None
        #: arguments for one tag's netinfod only (nibindd --ldap* → its --ldap-tag)
        self.tag_args: dict[str, list[str]] = {}
        self.own = local_addresses()
        self.own_set = frozenset(self.own)
        self._closing = False
        self.children: dict[str, Child] = {}
        self.pmap: PortmapperProgram | None = None
        self.pmap_server: RpcServer | None = None
        self.server = RpcServer([Program(NIBIND_PROG, NIBIND_VERS, NIBIND_VERS, self.handle)])
        self.system_rpcbind = False
        self._recheck: asyncio.Task | None = None
        self.pmap_port = 0
        #: "embedded" or "system" once :meth:`claim_portmapper` has decided
        self._mode: str | None = None

    # -- start-up and shutdown ------------------------------------------------------------

    async def claim_portmapper(self) -> str:
        """Decide which portmapper to use (``embedded`` or ``system``), or refuse one that
        is not ours to use; changes nothing, so it may run before ``--init``.

        A portmapper that already lists a NIBIND that answers belongs to another nibindd:
        registering there would send one user's clients to another user's domains, and the
        other's NIBIND would vanish when we stop (spec §6: one nibindd per portmapper). A
        portmapper on an unreserved port owned by another user is not ours either.

        :raises PortmapperTaken: one line saying whose it is and what to do.
        """
        if self._mode is not None:
            return self._mode
        host, port = portmapper_address()
        where = f"the portmapper at {host}:{port} (NETINFO_PORTMAPPER)"
        try:
            nibind = await pmap_getport(None, NIBIND_PROG, NIBIND_VERS, IPPROTO_UDP,
                                        timeout=1.0)
            answers = True
        except (Timeout, RpcError, OSError, WireError):
            nibind, answers = 0, False
        me = os.geteuid()
        if nibind and await _nibind_answers(host, nibind):
            owner = port_owner(nibind)
            whose = "" if owner is None else (" of this user" if owner == me
                                              else f" of uid {owner}")
            raise PortmapperTaken(f"{where} already serves another nibindd{whose} (NIBIND "
                                  f"port {nibind}); stop it, or give this one its own "
                                  f"NETINFO_PORTMAPPER port")
        owner = next((u for u in (port_owner(port), port_owner(port, udp=False))
                      if u is not None), None)
        if port >= 1024 and owner not in (None, 0, me):
            raise PortmapperTaken(f"{where} belongs to uid {owner}, not to this user; "
                                  f"give this nibindd its own NETINFO_PORTMAPPER port")
        mode = self.portmapper_mode
        if mode == "auto":
            mode = "system" if answers else "embedded"
        if mode == "embedded":
            # asked now, so that --init creates nothing when the port is not ours to serve
            problem = ("a portmapper already answers there" if answers
                       else "the port is in use" if owner is not None
                       else bind_problem(self.bind, port))
            if problem:
                whose = "" if owner is None else f" (held by uid {owner})"
                raise PortmapperTaken(f"cannot serve a portmapper on {self.bind} port "
                                      f"{port}{whose}: {problem}")
        self._mode = mode
        return mode

    async def start(self) -> None:
        """Claim the portmapper (:meth:`claim_portmapper`), serve NIBIND, start the
        netinfods.

        :raises PortmapperTaken: the portmapper is another nibindd's or another user's.
        :raises OSError: a port cannot be bound.
        """
        mode = await self.claim_portmapper()
        if mode == "embedded":
            self.pmap = PortmapperProgram(self.own)
            self.pmap_server = RpcServer([self.pmap.program()])
            _, port = portmapper_address()
            # On the addresses nibindd serves (loopback unless told otherwise); the
            # netinfods register with it on 127.0.0.1.
            try:
                t, u = bind_pair(self.bind, (port, port))
            except OSError as e:
                owner = port_owner(port, udp=False) or port_owner(port)
                whose = "" if owner is None else f" (held by uid {owner})"
                raise PortmapperTaken(f"cannot serve a portmapper on {self.bind} port "
                                      f"{port}{whose}: {e.strerror or e}") from None
            await self.pmap_server.start(t, u)
            self.pmap_port = port
            for prot in (IPPROTO_TCP, IPPROTO_UDP):  # the portmapper lists itself
                self.pmap.registry.set(Mapping(PMAP_PROG, PMAP_VERS, prot, port))
            if self.rpcbind_socket is not None:
                self.local_socket = await serve_local_socket(self.pmap_server,
                                                             self.rpcbind_socket)
        else:
            self.system_rpcbind = True
            self.pmap_port = portmapper_address()[1]
        t, u = bind_pair(self.bind, (None, None))
        await self.server.start(t, u)
        await self._register_self()
        if self.system_rpcbind:
            self._recheck = asyncio.ensure_future(self._recheck_loop())
        await self.rescan()

    async def _register_self(self) -> None:
        ports = ((IPPROTO_UDP, self.server.udp_port), (IPPROTO_TCP, self.server.tcp_port))
        if self.pmap is not None:
            self.pmap.registry.unset(NIBIND_PROG, NIBIND_VERS)
            for prot, port in ports:
                self.pmap.registry.set(Mapping(NIBIND_PROG, NIBIND_VERS, prot, port))
            return
        # System rpcbind: UNSET, then SET (a SET of a mapped triple fails, ecosystem §2.3).
        await pmap_unset(NIBIND_PROG, NIBIND_VERS)
        for prot, port in ports:
            if not await pmap_set(NIBIND_PROG, NIBIND_VERS, prot, port):
                log.warning("rpcbind refused to register NIBIND %d", prot)

    async def _recheck_loop(self) -> None:
        period = recheck_seconds()
        while True:
            await asyncio.sleep(period)
            try:
                port = await pmap_getport(None, NIBIND_PROG, NIBIND_VERS, IPPROTO_UDP)
                if port != self.server.udp_port:
                    log.warning("registration with rpcbind lost; registering again")
                    await self._register_self()
            except (Timeout, RpcError, OSError, WireError) as e:
                log.warning("rpcbind does not answer: %s", e)

    async def stop(self) -> None:
        self._closing = True
        if self._recheck is not None:
            self._recheck.cancel()
        for child in list(self.children.values()):
            await self._stop_child(child)
        if self.system_rpcbind:
            try:
                await pmap_unset(NIBIND_PROG, NIBIND_VERS)
            except (Timeout, RpcError, OSError, WireError):
                pass
        await self.server.close()
        if self.pmap_server is not None:
            await self.pmap_server.close()
        if self.local_socket is not None:
            release_local_socket(self.local_socket)
            self.local_socket = None

    # -- the netinfods ------------------------------------------------------------------

    def served_tags(self) -> list[str]:
        """Every domain of the catalog: the directory's ``*.nidb`` (spec §6.4), or every
        domain of the ``--store`` database."""
        return self.catalog.domains()

    async def rescan(self) -> None:
        """Serve every database in the directory; stop serving vanished ones (SIGHUP).

        ``local`` starts last, once the others have registered, so that its parent search
        finds a parent served on this host at once (spec §8.2 timing).
        """
        # a PostgreSQL catalog is a query over the network: not on the event loop
        tags = set(await asyncio.to_thread(self.served_tags))
        new = sorted(tags - set(self.children), key=lambda t: (t == "local", t))
        for tag in new:
            await self.start_child(tag, wait=10.0 if tag != "local" and "local" in new else 0)
        for tag in sorted(set(self.children) - tags):
            await self._stop_child(self.children[tag])

    async def start_child(self, tag: str, *extra: str, wait: float = 0.0) -> bool:
        """Start ``netinfod TAG``; with *wait*, until it has registered (or not)."""
        child = self.children.get(tag) or Child(tag)
        self.children[tag] = child
        env = dict(os.environ)
        env["NETINFO_PORTMAPPER"] = f"127.0.0.1:{self.pmap_port}"
        # the NIS domains this tag serves (nibindd --nis-domain NISDOMAIN=TAG, issue 21)
        nis = [a for d in self.nis_domains.get(tag, ()) for a in ("--nis-domain", d)]
        if nis and self.nis_hierarchy:
            nis.append("--nis-hierarchy")
        # a domain of a --store catalog is served from its own store URL (a new one is
        # created there by ``netinfod -m`` or a clone's copy)
        store = () if self.store is None else ("--store", self.catalog.url(tag))
        cmd = [sys.executable, "-m", "netinfo.cli.netinfod", "--dir", str(self.directory),
               "--bind", self.bind, *self.netinfod_args, *nis, *self.tag_args.get(tag, ()),
               *store, *extra, tag]
        child.proc = await asyncio.create_subprocess_exec(*cmd, env=env,
                                                          stdin=asyncio.subprocess.DEVNULL)
        child.watcher = asyncio.ensure_future(self._watch(child, child.proc))
        if wait:
            try:
                async with asyncio.timeout(wait):
                    await child.registered.wait()
            except TimeoutError:
                return False
        return True

    async def _watch(self, child: Child, proc: asyncio.subprocess.Process) -> None:
        started = time.monotonic()
        rc = await proc.wait()
        if child.proc is not proc:
            return
        # nibindd unregisters a netinfod automatically when it exits (spec §6.2).
        log.info("netinfod %s exited with %s", child.tag, rc)
        child.reg = None
        child.registered.clear()
        child.proc = None
        if rc == 0 or self.children.get(child.tag) is not child or self._closing:
            return
        # It crashed or was killed: serve the domain again, waiting longer each time it
        # fails quickly (a damaged database must not make a busy loop).
        # Killed by a signal (rc < 0) or after a good run: again at once, nearly; failing
        # by itself soon after each start: longer and longer, up to 30 s.
        quick = rc > 0 and time.monotonic() - started < 60
        child.backoff = min(child.backoff * 2 or 1.0, 30.0) if quick else 0.5
        log.warning("restarting netinfod %s in %.0f s", child.tag, child.backoff)
        await asyncio.sleep(child.backoff)
        if self.children.get(child.tag) is child and child.proc is None and not self._closing:
            await self.start_child(child.tag)

    async def _stop_child(self, child: Child) -> None:
        proc = child.proc
        self.children.pop(child.tag, None)
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()

    # -- NIBIND ---------------------------------------------------------------------------

    def privileged(self, peer: Peer) -> bool:
        """Local address and reserved port (spec §6.2); when we are not root, our own
        user's sockets instead (see :func:`owner_may_register`)."""
        return owner_may_register(peer, self.own_set)

    def registrations(self) -> list[Registration]:
        return [c.reg for c in self.children.values() if c.reg is not None]

    async def handle(self, call: rpc.Call, peer: Peer) -> bytes | None:
        xid = call.xid
        try:
            proc = BindProc(call.proc)
        except ValueError:
            return rpc.reply_accept_error(xid, AcceptStat.PROC_UNAVAIL)
        if proc in PRIVILEGED and not self.privileged(peer):
            # still decode, so that garbage gets GARBAGE_ARGS rather than NI_PERM
            _DECODERS[proc](call.args)
            return rpc.reply_success(xid, encode_status(Status.PERM))
        if proc == BindProc.PING:
            return rpc.reply_success(xid)
        if proc == BindProc.BIND:
            return await self._bind(call)
        if proc == BindProc.GETREGISTER:
            child = self.children.get(decode_tag(call.args))
            if child is None or child.reg is None:
                return rpc.reply_success(xid, encode_getregister_res(Status.NOTAG))
            return rpc.reply_success(xid, encode_getregister_res(
                Status.OK, child.reg.udp_port, child.reg.tcp_port))
        if proc == BindProc.LISTREG:
            if call.args:
                raise WireError("LISTREG takes no arguments")
            return rpc.reply_success(xid, encode_listreg_res(self.registrations()))
        status = await self._admin(proc, call.args)
        return rpc.reply_success(xid, encode_status(status))

    async def _admin(self, proc: BindProc, args: bytes) -> int:
        tag = _DECODERS[proc](args)
        tag = tag if isinstance(tag, str) else tag.tag
        if not valid_tag(tag):
            # A tag names DIR/TAG.nidb: nothing that could leave the directory.
            log.warning("refusing %s of invalid tag %r", proc.name, tag)
            return Status.NOTAG
        if proc == BindProc.REGISTER:
            reg = decode_registration(args)
            child = self.children.get(reg.tag)
            if child is None:
                child = self.children[reg.tag] = Child(reg.tag)
            child.reg = reg
            child.registered.set()
            return Status.OK
        if proc == BindProc.UNREGISTER:
            child = self.children.get(decode_tag(args))
            if child is not None:
                child.reg = None
                child.registered.clear()
            return Status.OK
        if proc == BindProc.CREATEMASTER:
            tag = decode_tag(args)
            if self._is_served(tag):
                return Status.DUPTAG
            ok = await self.start_child(tag, "-m", wait=20.0)
            return Status.OK if ok else Status.SYSTEMERR
        if proc == BindProc.CREATECLONE:
            a = decode_clone_args(args)
            if self._is_served(a.tag):
                return Status.DUPTAG
            if not _may_be_a_host(a.master_addr):
                # 0.0.0.0/8 ("this network", RFC 1122 §3.2.1.3: a source, never a
                # destination), multicast, reserved and broadcast: no master lives there,
                # and a clone would only knock at it forever
                return Status.CANTFINDADDRESS
            ok = await self.start_child(a.tag, "-c", a.master_name,
                                        uint_to_addr(a.master_addr), a.master_tag, wait=20.0)
            return Status.OK if ok else Status.SYSTEMERR
        if proc == BindProc.PROMOTE:
            # The clone's netinfod makes itself master (replicator.Replicator.promote).
            child = self.children.get(tag)
            if child is None or child.proc is None or child.proc.returncode is not None:
                return Status.NOTAG
            child.proc.send_signal(signal.SIGUSR1)
            return Status.OK
        if proc == BindProc.DESTROYDOMAIN:
            tag = decode_tag(args)
            child = self.children.get(tag)
            if child is None or child.reg is None:
                return Status.NOTAG
            await self._stop_child(child)
            await asyncio.to_thread(self.catalog.destroy, tag)
            return Status.OK
        raise AssertionError(proc)

    def _is_served(self, tag: str) -> bool:
        child = self.children.get(tag)
        return child is not None and (child.reg is not None or child.proc is not None)

    async def _bind(self, call: rpc.Call) -> bytes:
        """Ask the server tag's netinfod whether it serves the child (spec §6.3)."""
        a = decode_bind_args(call.args)
        child = self.children.get(a.server_tag)
        if child is not None and child.reg is not None:
            args = encode_args(PROCEDURES[Proc.BIND], a.client_tag, a.client_addr)
            try:
                await udp_call("127.0.0.1", child.reg.udp_port, NETINFO_PROG, NETINFO_VERS,
                               Proc.BIND, args, timeout=BIND_TIMEOUT, retries=1,
                               privileged=False)
                return rpc.reply_success(call.xid)
            except (RpcError, Timeout, WireError, OSError, NiError):
                pass
        # Apple answers SYSTEM_ERR; the portmapper then stays silent on a CALLIT.
        return rpc.reply_accept_error(call.xid, AcceptStat.SYSTEM_ERR)


#: The administration procedures' argument decoders (each argument holds the tag).
_DECODERS: dict[BindProc, Callable[[bytes], str | Registration | CloneArgs]] = {
    BindProc.REGISTER: decode_registration,
    BindProc.UNREGISTER: decode_tag,
    BindProc.CREATEMASTER: decode_tag,
    BindProc.CREATECLONE: decode_clone_args,
    BindProc.DESTROYDOMAIN: decode_tag,
    BindProc.PROMOTE: decode_tag,
}


async def run_nibindd(nb: Nibindd) -> None:
    """Run until SIGTERM/SIGINT; SIGHUP re-reads the directory."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(nb.rescan()))
    await stop.wait()
    await nb.stop()


def _may_be_a_host(addr: int) -> bool:
    """Whether IPv4 address *addr* (host order) can be a master's: not in 0.0.0.0/8 nor
    in 224.0.0.0/3 (multicast, reserved, the limited broadcast)."""
    first = addr >> 24
    return first != 0 and first < 224
