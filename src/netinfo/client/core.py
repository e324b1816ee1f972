"""The one client core: the NETINFO client over the RPC transports of
:mod:`netinfo.client.transport`.

:class:`Client` is asyncio-native; :class:`SyncClient` runs the very same coroutines on a
private event loop, adding no protocol logic of its own. Every tool and the web UI go
through here, and so does a clone copying its master: :meth:`Client.readall_stream`
decodes READALL as it arrives (:class:`ReadAllStream`).

Spec: §4 (procedures), §7.1 (connecting to one (address, tag)), §7.6 (path search),
§9.4 (the READALL stream), §10.1 (credentials).
"""

from __future__ import annotations

import asyncio
import builtins
import inspect
import os
import struct
from collections import deque
from collections.abc import Callable, Iterable
from itertools import chain
from typing import Any

from ..errors import NetInfoError, NiError, RpcError, Status, Timeout, WireError
from ..model import NI_INDEX_NULL, NiId, Proplist, is_digits, parse_path
from ..wire import rpc
from ..wire.protocol import (
    NETINFO_PROG,
    NETINFO_VERS,
    PROCEDURES,
    RESULT_KINDS,
    Kind,
    Proc,
    ProcInfo,
    encode_args,
)
from ..wire.limits import BIG_LIST_MAX, MAX_PROPLIST_BYTES
from ..wire.proplist import take_proplists
from ..wire.readall import ReadAllDecoder, WireObject
from .binding import lookup_netinfod
from .transport import READ_TIMEOUT, WRITE_TIMEOUT, ReplyStream, RpcConnection, open_tcp


#: Every failure one call can end in (:meth:`Client.call_window` keeps them as results).
_CALL_ERRORS = (NetInfoError, OSError)


def parse_server(spec: str, default_tag: str = "local") -> tuple[str, str, int | None]:
    """``tag@host:port``, ``tag@host``, ``host:port`` → (tag, host, port or None)."""
    tag, at, rest = spec.rpartition("@")
    if not at:
        tag, rest = default_tag, spec
    host, port = rest, None
    if rest.count(":") == 1:
        host, _, p = rest.partition(":")
        if not is_digits(p):
            raise ValueError(f"bad port in {spec!r}")
        port = int(p)
    if not host:
        raise ValueError(f"no host in {spec!r}")
    return tag or default_tag, host, port


class Client:
    """Async NETINFO client for one server: a typed method per procedure (spec §4.1).

    Create with :meth:`connect`. Calls may be issued concurrently: they are pipelined on one
    TCP connection and answered in order.
    """

    def __init__(self, conn: RpcConnection, host: str, port: int, tag: str,
                 timeout: float = READ_TIMEOUT, write_timeout: float = WRITE_TIMEOUT) -> None:
        self.conn = conn
        self.host = host
        self.port = port
        self.tag = tag
        self.timeout = timeout
        self.write_timeout = write_timeout
        self.auth: rpc.AuthUnix | None = None

    @classmethod
    async def connect(cls, host: str, port: int, tag: str = "local", *,
                      privileged: bool | None = None, timeout: float = READ_TIMEOUT) -> Client:
        """Connect straight to a netinfod at *host*:*port* (no portmapper needed)."""
        conn = await open_tcp(host, port, privileged, timeout)
        return cls(conn, host, port, tag, timeout)

    @classmethod
    async def open(cls, spec: str, **kw: Any) -> Client:
        """Connect to ``tag@host:port`` (see :func:`parse_server`)."""
        tag, host, port = parse_server(spec)
        if port is None:
            port = await lookup_netinfod(host, tag)
        return await cls.connect(host, port, tag, **kw)

    async def close(self) -> None:
        self.conn.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def set_password(self, password: str | None, uid: int | None = None) -> None:
        """``ni_setpassword``: AUTH_UNIX with the inverted password, or back to AUTH_NONE."""
        if password is None:
            self.auth = None
        else:
            self.auth = rpc.AuthUnix.for_password(
                password, os.getuid() if uid is None else uid)

    # -- the generic call ---------------------------------------------------------------------

    async def call(self, proc: int, *args: Any) -> Any:
        """Call NETINFO procedure *proc* with decoded *args*; returns the decoded result.

        :raises NiError: a status other than NI_OK. :raises RpcError, Timeout, WireError.
        """
        return await self.call_on(self.conn, proc, *args)

    async def call_on(self, conn: RpcConnection, proc: int, *args: Any) -> Any:
        """:meth:`call` over a given connection (domain handles pick one per call)."""
        info = PROCEDURES[proc]
        timeout = self.write_timeout if info.is_write else self.timeout
        try:
            u = await conn.call(NETINFO_PROG, NETINFO_VERS, proc,
                                encode_args(info, *args), self.auth, timeout)
        except RpcError as e:
            if info.kind is Kind.NO_REPLY_UNLESS_OK and e.stat == rpc.AcceptStat.SYSTEM_ERR:
                return False
            raise
        # The result-kind table (protocol) decodes what the server's side encoded.
        return RESULT_KINDS[info.kind].decode(info, u)

    async def connection_for(self, proc: int) -> RpcConnection:
        """The connection :meth:`call_window` sends *proc* over (a domain handle sends
        writes to the master, spec §7.5)."""
        return self.conn

    async def call_window(self, calls: Iterable[tuple[int, tuple[Any, ...]]], *,
                          window: int, done: Callable[[int], None] | None = None
                          ) -> list[Any]:
        """Many calls on one connection, in the order given, up to *window* in flight:
        each ``(proc, args)`` as :meth:`call` would make it, without a task, a timer and
        a coroutine for each (a bulk load or dump sends a million). Returns the results
        in order, a failed call's exception (``NetInfoError``, ``OSError``) in its
        place; *done(i)* is called as the i-th result is taken. The connection is the
        first call's (:meth:`connection_for`): the calls are all reads or all writes.
        No answer to the oldest call within the timeout (the writes' for writes; the
        deadline moves on with the answers, a quarter of it at a time, so a wait may
        last up to 1.25 times the timeout) fails it and every later one with
        :class:`~netinfo.errors.Timeout`.
        """
        out: list[Any] = []
        if done is None:
            await self.call_each(calls, window=window, each=out.append)
        else:
            def each(result: Any) -> None:
                out.append(result)
                done(len(out) - 1)
            await self.call_each(calls, window=window, each=each)
        return out

    async def call_each(self, calls: Iterable[tuple[int, tuple[Any, ...]]], *,
                        window: int, each: Callable[[Any], None]) -> None:
        """:meth:`call_window` without keeping the results: *each(result)* is called
        with each in order as it is taken (a failed call's exception in its place), so
        a stream of a million calls holds a window of them, not the million.

        *calls* is taken lazily, one call ahead of what is sent: a generator may plan
        more calls while the earlier ones are out (a bulk load plans its next piece
        then: ``dumps.FlatLoad``) and stop early (after a failure *each* saw). After a
        timeout the rest of *calls* is still taken, each failed at once."""
        it = iter(calls)
        first = next(it, None)
        if first is None:
            return
        conn = await self.connection_for(first[0])
        timeout = self.write_timeout if PROCEDURES[first[0]].is_write else self.timeout
        loop = asyncio.get_running_loop()
        flying: deque[tuple[int, ProcInfo, asyncio.Future[bytes] | BaseException]] = deque()
        moved = loop.time()   # when the deadline was last moved on

        async def oldest() -> None:
            nonlocal moved
            _, info, fut = flying[0]
            if not isinstance(fut, BaseException):
                try:
                    await fut
                except _CALL_ERRORS:
                    pass
                now = loop.time()
                if now - moved >= timeout / 4:   # one timer change per quarter
                    limit.reschedule(now + timeout * 1.25)
                    moved = now
            flying.popleft()
            try:
                result = fut if isinstance(fut, BaseException) \
                    else self._reply(info, fut.result())
            except _CALL_ERRORS as e:
                result = e
            each(result)

        held = False   # a call taken from *calls*, not sent yet
        try:
            async with asyncio.timeout(timeout * 1.25) as limit:
                for proc, args in chain((first,), it):
                    held = True
                    if len(flying) >= window:
                        await oldest()
                    held = False
                    info = PROCEDURES[proc]
                    xid = conn.next_xid()
                    try:
                        sent: asyncio.Future[bytes] | BaseException = conn.send(
                            rpc.encode_call(xid, NETINFO_PROG, NETINFO_VERS, proc,
                                            encode_args(info, *args), self.auth), xid)
                    except _CALL_ERRORS as e:
                        sent = e
                    flying.append((xid, info, sent))
                while flying:
                    await oldest()
        except TimeoutError:
            late = Timeout(f"no reply within {timeout} s")
            for xid, _, fut in flying:
                conn.waiting.pop(xid, None)
                if not isinstance(fut, BaseException):
                    fut.cancel()
            for _ in range(len(flying) + held):
                each(late)
            for _ in it:
                each(late)

    @staticmethod
    def _reply(info: ProcInfo, rec: bytes) -> Any:
        """A reply record's decoded result, as :meth:`call_on` gives it."""
        try:
            u = rpc.decode_reply(rec)[1]
        except RpcError as e:
            if info.kind is Kind.NO_REPLY_UNLESS_OK and e.stat == rpc.AcceptStat.SYSTEM_ERR:
                return False
            raise
        return RESULT_KINDS[info.kind].decode(info, u)

    # -- one typed method per procedure -------------------------------------------------------

    async def ping(self) -> None:
        await self.call(Proc.PING)

    async def statistics(self) -> Proplist:
        return await self.call(Proc.STATISTICS)

    async def root(self) -> NiId:
        return await self.call(Proc.ROOT)

    async def self_id(self, d: NiId | int) -> NiId:
        """SELF: *d*'s current instance. An ID that does not fit the wire's 32 bits (a
        user's ``niutil -read . 99999999999``) names no directory: NI_BADID, as the
        server answers for any ID it does not hold."""
        if isinstance(d, int) and not 0 <= d <= 0xFFFFFFFF:
            raise NiError(Status.BADID)
        return await self.call(Proc.SELF, _nid(d))

    async def parent(self, d: NiId | int) -> tuple[int, NiId]:
        return await self.call(Proc.PARENT, _nid(d))

    async def create(self, parent: NiId, props: Proplist, where: int = NI_INDEX_NULL,
                     target: NiId | None = None) -> tuple[NiId, NiId]:
        """Returns (child id, parent's new id)."""
        return await self.call(Proc.CREATE, parent, props, where, target)

    async def destroy(self, parent: NiId, child: NiId) -> NiId:
        return await self.call(Proc.DESTROY, parent, child)

    async def read(self, d: NiId | int) -> tuple[NiId, Proplist]:
        return await self.call(Proc.READ, _nid(d))

    async def write(self, d: NiId, props: Proplist) -> NiId:
        return await self.call(Proc.WRITE, d, props)

    async def children(self, d: NiId | int) -> tuple[list[int], NiId]:
        return await self.call(Proc.CHILDREN, _nid(d))

    async def lookup(self, d: NiId | int, key: str, value: str) -> tuple[list[int], NiId]:
        return await self.call(Proc.LOOKUP, _nid(d), key, value)

    # From here on, ``list`` in this class body is this method: the annotations below spell
    # the builtin ``builtins.list``.
    async def list(self, d: NiId | int,
                   name: str = "name") -> tuple[list[tuple[int, list[str] | None]], NiId]:
        return await self.call(Proc.LIST, _nid(d), name)

    async def createprop(self, d: NiId, name: str, values: builtins.list[str],
                         where: int = NI_INDEX_NULL) -> NiId:
        return await self.call(Proc.CREATEPROP, d, (name, values), where)

    async def destroyprop(self, d: NiId, index: int) -> NiId:
        return await self.call(Proc.DESTROYPROP, d, index)

    async def readprop(self, d: NiId | int, index: int) -> tuple[builtins.list[str], NiId]:
        return await self.call(Proc.READPROP, _nid(d), index)

    async def writeprop(self, d: NiId, index: int, values: builtins.list[str]) -> NiId:
        return await self.call(Proc.WRITEPROP, d, index, values)

    async def renameprop(self, d: NiId, index: int, name: str) -> NiId:
        return await self.call(Proc.RENAMEPROP, d, index, name)

    async def listprops(self, d: NiId | int) -> tuple[builtins.list[str], NiId]:
        return await self.call(Proc.LISTPROPS, _nid(d))

    async def createname(self, d: NiId, index: int, name: str,
                         where: int = NI_INDEX_NULL) -> NiId:
        return await self.call(Proc.CREATENAME, d, index, name, where)

    async def destroyname(self, d: NiId, index: int, name_index: int) -> NiId:
        return await self.call(Proc.DESTROYNAME, d, index, name_index)

    async def readname(self, d: NiId | int, index: int, name_index: int) -> tuple[NiId, str]:
        return await self.call(Proc.READNAME, _nid(d), index, name_index)

    async def writename(self, d: NiId, index: int, name_index: int, name: str) -> NiId:
        return await self.call(Proc.WRITENAME, d, index, name_index, name)

    async def rparent(self) -> tuple[str, int]:
        """(parent tag, parent address as uint). :raises NiError: NETROOT, NORESPONSE."""
        return await self.call(Proc.RPARENT)

    async def listall(self, d: NiId | int) -> tuple[NiId, builtins.list[Proplist]]:
        return await self.call(Proc.LISTALL, _nid(d))

    async def bind(self, tag: str, addr: int) -> bool:
        """NETINFO BIND: True when this server serves the child (tag, addr) (spec §4.4)."""
        return await self.call(Proc.BIND, tag, addr)

    async def readall(self, checksum: int = 0) -> tuple[int, int, builtins.list]:
        """(checksum, highest_id, objects); checksum 0 = the caller is current (§9.4).
        The whole reply is held: a big domain is read with :meth:`readall_stream`."""
        return await self.call(Proc.READALL, checksum)

    async def readall_stream(self, checksum: int = 0) -> ReadAllStream:
        """READALL taken as it arrives (spec §9.4): a :class:`ReadAllStream` whose head
        (status, checksum, highest number) is read; its directories follow, a batch at a
        time, in memory bounded by the batch, never the domain. Close it (or use it with
        ``async with``) to abandon the rest. ``timeout`` bounds each wait for more bytes.

        :raises NiError: a status other than NI_OK (NI_MASTERBUSY, NI_NOTMASTER, ...).
        :raises RpcError, Timeout, ConnectionFailed, WireError:
        """
        reply = await self.conn.call_stream(
            NETINFO_PROG, NETINFO_VERS, Proc.READALL,
            encode_args(PROCEDURES[Proc.READALL], checksum), self.auth, self.timeout)
        stream = ReadAllStream(reply)
        try:
            await stream.start()
        except BaseException:
            stream.close()
            raise
        return stream

    async def listall_stream(self, d: NiId | int) -> ListAllStream:
        """LISTALL taken as it arrives (spec §4.4): a :class:`ListAllStream` whose head
        (status, the directory's id, the count) is read; the children's proplists
        follow, in child order, a batch at a time, in memory bounded by the batch, never
        the directory (a million users, issue 20). Close it (or use ``async with``) to
        abandon the rest. ``timeout`` bounds each wait for more bytes.

        :raises NiError: a status other than NI_OK. :raises RpcError, Timeout,
            ConnectionFailed, WireError:
        """
        reply = await self.conn.call_stream(
            NETINFO_PROG, NETINFO_VERS, Proc.LISTALL,
            encode_args(PROCEDURES[Proc.LISTALL], _nid(d)), self.auth, self.timeout)
        stream = ListAllStream(reply)
        try:
            await stream.start()
        except BaseException:
            stream.close()
            raise
        return stream

    async def crashed(self, checksum: int) -> None:
        await self.call(Proc.CRASHED, checksum)

    async def resync(self) -> int:
        return await self.call(Proc.RESYNC)

    async def lookupread(self, d: NiId | int, key: str, value: str) -> tuple[NiId, Proplist]:
        return await self.call(Proc.LOOKUPREAD, _nid(d), key, value)

    # -- conveniences built on the procedures -----------------------------------------------

    async def pathsearch(self, path: str, start: NiId | int | None = None) -> NiId:
        """``ni_pathsearch``: resolve ``/users/uid=0``-style paths (spec §7.6).

        :raises NiError: NI_NODIR when a component does not resolve.
        """
        cur = (await self.root()).object if start is None else _nid(start).object
        for key, value in parse_path(path):
            found, _ = await self.lookup(cur, key, value)
            cur = found[0]
        return await self.self_id(cur)

    async def lookupprop(self, d: NiId | int, name: str) -> builtins.list[str]:
        """``ni_lookupprop``: values of the first property *name* (LISTPROPS + READPROP)."""
        names, _ = await self.listprops(d)
        if name not in names:
            raise NiError(Status.NOPROP)
        values, _ = await self.readprop(d, names.index(name))
        return values


def _nid(d: NiId | int) -> NiId:
    return NiId(d, 0) if isinstance(d, int) else d


class ReadAllStream:
    """A READALL reply (spec §9.4) decoded as it arrives (:meth:`Client.readall_stream`).

    ``checksum`` is the sender's (0: the caller's copy is current and nothing follows) and
    ``highest`` its highest number + 1; ``async for batch in stream`` then gives the
    directories in pre-order as lists of :class:`~netinfo.wire.protocol.WireObject`
    (undecoded proplists, as a store keeps them), each list what one piece of the reply
    completed. Between pieces the event loop runs other work.

    :raises WireError: bytes that are not a READALL reply, or a reply cut short.
    :raises ConnectionFailed, Timeout: the connection failed or went quiet.
    """

    def __init__(self, reply: ReplyStream) -> None:
        self._reply = reply
        self._decoder = ReadAllDecoder()
        self._ready: builtins.list[WireObject] = []
        self._done = False
        #: bytes of the reply received so far (a copy bounds it: netinfod --max-copy-mb)
        self.received = 0

    async def start(self) -> None:
        """Read the head. :raises NiError: its status is not NI_OK."""
        d = self._decoder
        while not d.head_read:
            if not await self._piece():
                break
        if d.status is not None and d.status != Status.OK:
            raise NiError(d.status)

    async def _piece(self) -> bool:
        """Decode the next piece of the reply; False once it has ended."""
        if self._done:
            return False
        data = await self._reply.read()
        if data:
            self.received += len(data)
            self._ready += self._decoder.feed(data)
        else:
            self._ready += self._decoder.finish()
            self._done = True
        return True

    @property
    def checksum(self) -> int:
        return self._decoder.checksum

    @property
    def highest(self) -> int:
        return self._decoder.highest

    @property
    def current(self) -> bool:
        """The caller's checksum matched: nothing to copy (spec §9.4)."""
        return self._decoder.checksum == 0

    def __aiter__(self) -> ReadAllStream:
        return self

    async def __anext__(self) -> builtins.list[WireObject]:
        while not self._ready:
            if not await self._piece():
                raise StopAsyncIteration
            # the loop's other work between two pieces, even when the next one is
            # already here (a piece's decoding is a bounded slice of work)
            await asyncio.sleep(0)
        batch, self._ready = self._ready, []
        return batch

    def close(self) -> None:
        """Abandon what is left of the reply (the connection stays usable)."""
        self._reply.close()

    async def __aenter__(self) -> ReadAllStream:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()


class ListAllStream:
    """A LISTALL reply decoded as it arrives (:meth:`Client.listall_stream`): ``id`` is
    the directory's, ``count`` how many proplists follow; ``async for batch in stream``
    gives them in child order, as lists of the proplists each piece of the reply
    completed.

    :raises WireError: bytes that are not a LISTALL reply, or a reply cut short or
        longer than its count. :raises ConnectionFailed, Timeout:.
    """

    def __init__(self, reply: ReplyStream) -> None:
        self._reply = reply
        self._buf = b""
        self._at = 0
        self.id = NiId(0, 0)
        self.count = 0
        self._left = 0

    async def _more(self) -> bool:
        """Append the reply's next bytes to what is not decoded yet; False at its end."""
        data = await self._reply.read()
        if not data:
            return False
        self._buf = self._buf[self._at:] + data
        self._at = 0
        return True

    async def start(self) -> None:
        """Read the head. :raises NiError: its status is not NI_OK."""
        while len(self._buf) < 4 and await self._more():
            pass
        if len(self._buf) < 4:
            raise WireError("LISTALL reply without a status")
        (status,) = _HEAD.unpack_from(self._buf, 0)
        if status != Status.OK:
            raise NiError(status)
        while len(self._buf) < 16 and await self._more():
            pass
        if len(self._buf) < 16:
            raise WireError("LISTALL reply cut short in its head")
        _, oid, instance, count = _LISTALL_HEAD.unpack_from(self._buf, 0)
        if count > BIG_LIST_MAX:
            raise WireError(f"LISTALL of {count} proplists (at most {BIG_LIST_MAX})")
        self.id, self.count, self._left, self._at = NiId(oid, instance), count, count, 16

    def __aiter__(self) -> ListAllStream:
        return self

    async def __anext__(self) -> builtins.list[Proplist]:
        while self._left:
            batch, self._at = take_proplists(self._buf, self._at, self._left,
                                             MAX_PROPLIST_BYTES)
            if batch:
                self._left -= len(batch)
                return batch
            if not await self._more():
                raise WireError(f"LISTALL reply cut short: {self._left} of {self.count} "
                                "proplists missing")
        if self._at < len(self._buf) or await self._reply.read():
            raise WireError("bytes after the LISTALL reply's proplists")
        raise StopAsyncIteration

    def close(self) -> None:
        """Abandon what is left of the reply (the connection stays usable)."""
        self._reply.close()

    async def __aenter__(self) -> ListAllStream:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()


#: LISTALL's head: status, the directory's id (object, instance), the count
_HEAD = struct.Struct(">I")
_LISTALL_HEAD = struct.Struct(">IIII")


class SyncClient:
    """Blocking facade: the :class:`Client` coroutines run on a private event loop.

    ``SyncClient.connect(host, port)`` / ``SyncClient.open("tag@host:port")``; every
    :class:`Client` method is available with the same arguments, returning its result.
    """

    def __init__(self, client: Client, loop: asyncio.AbstractEventLoop) -> None:
        self._client = client
        self._loop = loop

    @staticmethod
    def _run_new(factory: Callable[[], Any]) -> SyncClient:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("SyncClient cannot be used inside a running event loop; "
                               "use the async Client")
        loop = asyncio.new_event_loop()
        try:
            client = loop.run_until_complete(factory())
        except BaseException:
            loop.close()
            raise
        return SyncClient(client, loop)

    @classmethod
    def connect(cls, host: str, port: int, tag: str = "local", **kw: Any) -> SyncClient:
        return cls._run_new(lambda: Client.connect(host, port, tag, **kw))

    @classmethod
    def open(cls, spec: str, **kw: Any) -> SyncClient:
        return cls._run_new(lambda: Client.open(spec, **kw))

    @property
    def client(self) -> Client:
        return self._client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if inspect.iscoroutinefunction(attr):
            def run(*args: Any, **kw: Any) -> Any:
                return self._loop.run_until_complete(attr(*args, **kw))
            run.__name__ = name
            run.__doc__ = attr.__doc__
            return run
        return attr

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.run_until_complete(self._client.close())
            self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
