"""The LDAP front door (issue 22): LDAPv3 over TCP inside netinfod, reading and writing the
domain through its :class:`~netinfo.server.database.Database` as an RFC 2307 directory
(the table in :mod:`rfc2307`, filters and selection in :mod:`ldapview`).

* Binds: anonymous, or simple with a user's DN (``uid=NAME,ou=users,BASE``) through the
  domain's one :class:`~netinfo.server.auth.Authenticator` and its failure limiter; a
  password bind on a connection without TLS is refused (confidentialityRequired) unless
  the peer is on loopback (RFC 4513 §5.1.2 lets a server require it; SSSD expects it).
* Reads: base searches and searches the filter narrows to one mapped directory by an
  equality (nslcd's ``(&(objectClass=posixAccount)(uid=NAME))``) read the live domain
  through its indexed LOOKUP; other one-level and subtree searches walk a snapshot of the
  domain (``DirectoryService.snapshot``), a batch of entries at a time, so writes go on
  meanwhile and other connections are answered in between.
* Writes (add, delete, modify, modrdn, password modify) are NETINFO procedures run through
  ``Database.call`` as the bound user (so ``_writers`` decides, spec §10.4), made durable
  by the connection's group commit (``Database.batch``: the requests of one read of the
  socket in one transaction, their answers sent after it, unavailable if it fails):
  recorded, replicated and told to subscribers like any write.
* Connections: each an asyncio Protocol (:class:`Connection`): the whole messages of a
  read are answered in order inside ``data_received`` and their answers written at
  once; a Task only for what must await (a bind's verification, StartTLS, a PostgreSQL
  commit, a search past its first yield). Equality searches read what :class:`_Kept`
  holds (the mapped directories, LOOKUP's answers, the entries and their encodings)
  while no write is pending; durable writes drop what they touch.
* Bounds: connections under :class:`~netinfo.server.peers.PeerBounds`, messages under
  ``ber.MAX_MESSAGE``, :data:`MAX_OPS_PER_CONN` operations and :data:`MAX_PAGED` paged
  searches in flight per connection, :data:`MAX_TIME_LIMIT` seconds a search; answers
  queued past :data:`WRITE_HIGH_WATER` stop the reading, and the connection goes after
  the bounds' ``stall`` seconds so; :data:`IDLE_TIMEOUT`, :data:`PARTIAL_TIMEOUT`
  (timers, not a wait around each read).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import ssl
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import cast

from ..errors import NiError, Status, StorageError, TooLong, WireError
from ..model import NiId, Proplist, first_values
from ..passwords import hash_password
from ..storage.cached import StoreWait
from ..storage.changes import Caller, Change, Touched
from ..storage.nodes import Node, NodeSource
from ..wire import ber
from ..wire import ldap as L
from .auth import is_loopback
from .admission import Doorkeeper
from .database import Batch, Database
from .nisresident import ResidentMap, entry_bytes
from .residents import Residents
from .held import FETCHING, HeldConnection
from .listener import Listener, listen_on
from .service import check_password, settle
from .ldapview import (
    SCHEMA_DN, encode_selected, equality_terms, evaluate, root_dse, schema_entry, select,
    selection_size, uses_dn_attributes,
)
from .peers import PeerBounds, PeerLimits
from .rfc2307 import (
    MAPPINGS, PRIVATE_ATTRS, Attrs, DnError, attr_type, default_base, dn_of, dn_text,
    entry_attrs, escape_value,
    norm_dn, parse_dn, property_from_text, props_from_attrs, rdn_attr, unknown_attrs,
)
from ..wire.proplist import decode_proplist, encode_proplist, stored_first_props
from ..wire.protocol import Proc
from .ldapentry import user_entry

log = logging.getLogger("netinfo.ldap")

#: Operations (searches, mostly) one connection may have in flight: SSSD keeps a handful;
#: past it a request is answered busy (RFC 4511 §4.1.9 busy: "too busy to perform").
MAX_OPS_PER_CONN = 16
#: Paged searches (RFC 2696) a connection may leave open between pages; the oldest is
#: dropped past it (its next page: unwillingToPerform, as §3 allows for a stale cookie).
MAX_PAGED = 4
#: Seconds a search may run, whatever its timeLimit asks (0 = none): the snapshot it
#: reads is held that long at most (server.STREAM_TIMEOUT plays that part for READALL).
MAX_TIME_LIMIT = 600
#: Entries a search examines between two yields to the event loop.
BATCH = 256
#: Seconds a connection may stay silent with nothing in flight before it is closed.
IDLE_TIMEOUT = 900
#: Bytes of partly received messages all connections may hold together (netinfod's
#: PARTIAL_BUDGET for NETINFO records, the same reasoning): past it the connection
#: holding the most is dropped, so 1,024 peers each sending most of a 16 MiB message
#: cannot make the server hold 16 GiB.
PARTIAL_BUDGET = 64 * 1024 * 1024
#: Seconds a message may take to arrive once begun (netinfod's PARTIAL_TIMEOUT): a peer
#: trickling a byte at a time holds its connection no longer.
PARTIAL_TIMEOUT = 30.0
#: Bytes of answers queued for a peer before its connection stops being read (the
#: transport's high-water mark; asyncio's streams used 64 KiB); past the bounds' ``stall``
#: seconds at it the connection goes.
WRITE_HIGH_WATER = 64 * 1024
#: Store fetches off the loop (``cached.StoreWait``) one search may wait for before it
#: reads where it is (netinfod's MAX_FETCHES for NETINFO calls, the same reasoning).
MAX_FETCHES = 32
#: who the door's own LOOKUPs are made as (anyone; a Caller is frozen, and making one
#: costs more than the LOOKUP of a kept directory)
_ANYONE = Caller()
#: a search's success (SearchResultDone), encoded once
_DONE = L.encode_op(L.Response(L.SEARCH_DONE, L.ResultCode.SUCCESS))
#: the reader (``Connection._reader``) that has not bound: not the superuser, no user
_ANONYMOUS = (False, None)
#: Seconds netinfod's stop waits for the sessions it has cut to finish (their searches
#: are cancelled; nothing they do then takes longer than a yield to the loop).
CLOSE_WAIT = 5.0

#: Password verifications of simple binds in flight for the whole door, each in a worker
#: thread (slapd checks ``crypt(3)`` in its worker threads likewise). The check is CPU
#: bound and, with libpass's pure-Python SHA-512 crypt, holds the interpreter lock, so
#: more threads than this machine's 2 cores add no rate, only latency for the event loop
#: (docs/benchmarks.md, issue 22). Further binds wait in arrival order: a bind answered
#: busy (RFC 4511 §4.1.9) fails SSSD's and nslcd's authentication at once, while the wait
#: is bounded by the connections (one bind at a time each: the read loop awaits it).
BIND_WORKERS = 2

#: ni_status → LDAP result code (RFC 4511 Appendix A), for writes and lookups
RESULT_OF_STATUS: dict[int, int] = {
    Status.NODIR: L.ResultCode.NO_SUCH_OBJECT, Status.PERM: L.ResultCode.INSUFFICIENT_ACCESS_RIGHTS,
    Status.AUTHERROR: L.ResultCode.INVALID_CREDENTIALS,
    Status.NOUSER: L.ResultCode.INVALID_CREDENTIALS,
    Status.RDONLY: L.ResultCode.UNWILLING_TO_PERFORM, Status.STALE: L.ResultCode.BUSY,
    Status.NOSPACE: L.ResultCode.ADMIN_LIMIT_EXCEEDED,
    Status.ALIVE: L.ResultCode.ENTRY_ALREADY_EXISTS,
    Status.NOTEMPTY: L.ResultCode.NOT_ALLOWED_ON_NON_LEAF,
    Status.MASTERBUSY: L.ResultCode.BUSY, Status.SERIAL: L.ResultCode.OTHER,
}


class LdapError(Exception):
    """An operation's failure: its result code and message."""

    def __init__(self, code: int, message: str = "", matched: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.matched = matched


@dataclass
class LdapConfig:
    base: str
    #: for StartTLS on the plain port and for LDAPS
    tls: ssl.SSLContext | None = None
    limits: PeerLimits = field(default_factory=PeerLimits)
    #: answer the common equality searches by the short path (``Connection._quick``);
    #: False: every search by the general one (netinfod's ``--no-fast-path``)
    quick: bool = True
    #: bytes of users' entries held in memory for the short path's searches
    #: (``residents``: RESIDENT_BYTES; 0 holds none)
    resident_bytes: int = 0


#: one entry in scope: its NetInfo path (None for the rootDSE and the schema), DN,
#: attributes, operational attributes, and for an entry kept by :class:`_Kept` its
#: encodings (attribute selection → the SearchResultEntry operation's bytes), else None
Item = tuple[tuple[str, ...] | None, str, Attrs, Attrs, dict[object, bytes] | None]

#: What :class:`_Kept` holds at most of each kind before that table starts again, and
#: what one costs (measured with tracemalloc, a user of 10,000 with nslcd's search):
#: entries with their encodings 3.4 KB, whole answers 0.9 KB, LOOKUP answers 0.26 KB;
#: about 38 MB in all when full (the fast path's reply table: 32 MiB).
MAX_KEPT_ENTRIES = 4_096
MAX_KEPT_REPLIES = 16_384
MAX_KEPT_LOOKUPS = 32_768
#: DNs whose paths :meth:`LdapServer.path_of` remembers at most before it starts again.
MAX_PATHS = 4096
#: The users' entries held in memory (``residents``, issue 22): read once the short
#: path missed this many times for one attribute selection, at most RESIDENT_BYTES of
#: them (1,000,000 users took 145 MB: about 110 bytes a user compressed, and the
#: table), read again after a drop not
#: sooner than RESIDENT_COOLDOWN times the last read, in turns of RESIDENT_TURN s
RESIDENT_AFTER = 256
RESIDENT_BYTES = 160 << 20
RESIDENT_COOLDOWN = 10
RESIDENT_TURN = 0.002
RESIDENT_BATCH = 32
#: Attribute selections with a resident map at most (nslcd's and SSSD's are one each)
MAX_SHAPES = 4
#: A resident entry's raw deflate stream: a 4 KiB window (the preset dictionary and an
#: entry fit) and a small hash table. A 32 KiB window and memLevel 9 made the same bytes
#: but set up far more state for each entry (a loop on a loaded machine: 65-120 µs
#: against 7 µs; the read of 1,000,003 users went from 75.9 to 73.1 s).
_ZWBITS = -12
_ZMEM = 4
#: Users' maps of at most this many entries are held as written, not compressed, when
#: a kilobyte each would take at most half their room (10,000 users: about 4.5 MB
#: against 1.5). An inflate costs 2 µs a search in a loop and 7 µs in a netinfod woken
#: for each search (one client, 10,000 users, this project's 2-core VM): a twentieth
#: of that search's round trip. Past this the memory matters more (1,000,000 users:
#: about 450 MB as written, 145 MB compressed).
RESIDENT_PLAIN_USERS = 65_536
#: Search shapes routed to a resident map at most (a shape per base, filter form,
#: attribute list and length of the uid's value: tens for one client program)
MAX_ROUTES = 1024
_NAME_ONLY = frozenset({b"name"})


def _name_keys(props: Proplist) -> list[bytes]:
    """Every value of every ``name`` property (what LOOKUP of a name matches), as a
    resident map's keys."""
    return [v.encode("utf-8", "surrogateescape") for k, vs in props if k == "name"
            for v in vs]
#: Encodings kept per entry (attribute selections: nslcd and SSSD each ask for one).
MAX_ENCODINGS = 4
#: What any of the kept tables is keyed by (a search's bytes, a LOOKUP's property and
#: value, an attribute selection, a DN) is kept only up to this many bytes or
#: characters: the counts above bound the tables, this bounds what each key holds (a
#: 16 MiB message could otherwise make each key 16 MiB). nslcd's and SSSD's searches
#: are a few hundred bytes.
MAX_KEPT_KEY = 1024
#: A whole answer (its operations' bytes) is kept only up to this size.
MAX_KEPT_ANSWER = 64 << 10


def _id_head(raw: bytes, p: int, q: int) -> bytes:
    """The messageID of message *raw* (at *p*, its protocolOp at *q*) as an answer
    carries it: as it came when in its fewest bytes (X.690 §8.3.2), else re-encoded, as
    ``encode_message`` writes it."""
    head = raw[p:q]
    if q - p > 3 and head[2] == 0 and head[3] < 0x80:
        return ber.encode_int(int.from_bytes(raw[p + 2:q], "big"))
    return head


class _Kept:
    """What equality searches read again and again, kept per domain state as the fast
    path's reply table is (``server/fastpath.py``): the directories under the root by
    name, LOOKUP's answers under a directory, and the entries LOOKUP found with their
    encodings. Used only while no write is pending (``Database.read_state`` not None)
    and nobody watches LOOKUP; each durable write drops what it touched: the entry of
    every directory it changed, the answers under those and under their parents, and
    everything when a directory under the root is made, destroyed or renamed (every
    DN below it changes) or a whole new tree arrives."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.state: int | None = None
        #: name → number of the directories under the root
        self.tops: dict[str, int] = {}
        #: parent → (property, value) → LOOKUP's answer
        self.lookups: dict[int, dict[tuple[str, str], list[int]]] = {}
        self.n_lookups = 0
        #: directory number → its entry
        self.items: dict[int, Item] = {}
        #: (reader, a search request's bytes after its message id) → the operations
        #: answering it, encoded (entries, then the result): a search asked again is
        #: answered without being decoded (:meth:`answer`)
        self.replies: dict[tuple[object, bytes], tuple[bytes, ...]] = {}
        #: directory number → the keys of the replies that read it
        self.by_dir: dict[int, set[tuple[object, bytes]]] = {}
        #: which replies are kept: those asked twice within the last MAX_KEPT_REPLIES
        #: searches answered (random users out of a million would only churn them)
        self.door = Doorkeeper(MAX_KEPT_REPLIES)

    def usable(self) -> bool:
        """May the kept things be read and filled now?"""
        db = self.db
        state = db.read_state()
        if state is None or db.is_watched(Proc.LOOKUP):
            return False
        if state != self.state:
            self.clear()
            self.state = state
        return True

    def clear(self) -> None:
        self.tops.clear()
        self.lookups.clear()
        self.n_lookups = 0
        self.items.clear()
        self.replies.clear()
        self.by_dir.clear()

    def answer(self, reader: object, raw: bytes) -> tuple[bytes | None, tuple[object, bytes]
                                                          | None]:
        """The answer to the whole message *raw* when it is a search kept for *reader*
        (its message id put in), else None and, for a search, the key to keep its
        answer under (:meth:`keep_reply`). Only a message whose bytes after the id are
        those of a search answered before: what decoded then decodes the same now."""
        # LDAPMessage ::= SEQUENCE { messageID INTEGER, protocolOp, controls }
        parts = L.message_parts(raw)
        if parts is None:
            return None, None
        p, q, _ = parts
        if len(raw) <= q or raw[q] != 0x63 or len(raw) - q > MAX_KEPT_KEY:
            return None, None
        key = (reader, raw[q:])
        ops = self.replies.get(key)
        if ops is None or not self.usable():
            return None, key
        head = _id_head(raw, p, q)
        return b"".join([ber.tlv(ber.SEQUENCE, head + op) for op in ops]), None

    def keep_reply(self, key: tuple[object, bytes], ops: tuple[bytes, ...],
                   deps: list[int]) -> None:
        if sum(map(len, ops)) > MAX_KEPT_ANSWER or not self.door.admit(key):
            return
        if len(self.replies) >= MAX_KEPT_REPLIES:
            self.replies.clear()
            self.by_dir.clear()
        self.replies[key] = ops
        for d in deps:
            self.by_dir.setdefault(d, set()).add(key)

    def _drop(self, oid: int) -> None:
        keys = self.by_dir.pop(oid, None)
        if keys:
            replies = self.replies
            for k in keys:
                replies.pop(k, None)

    def lookup(self, poid: int, prop: str, value: str) -> list[int]:
        """LOOKUP of *prop* = *value* under *poid* (kept). :raises NiError: NI_NODIR."""
        under = self.lookups.get(poid)
        if under is not None:
            found = under.get((prop, value))
            if found is not None:
                return found
        found = self.db.call(Proc.LOOKUP, _ANYONE, (NiId(poid), prop, value))[0]
        if len(prop) + len(value) > MAX_KEPT_KEY:
            return found
        if self.n_lookups >= MAX_KEPT_LOOKUPS:
            self.lookups.clear()
            self.n_lookups = 0
        self.lookups.setdefault(poid, {})[(prop, value)] = found
        self.n_lookups += 1
        return found

    def keep(self, oid: int, item: Item) -> None:
        if len(self.items) >= MAX_KEPT_ENTRIES:
            self.items.clear()
        self.items[oid] = item

    def changed(self, changes: list[Change]) -> None:
        """A durable batch (``Database.subscribe``)."""
        if not (self.tops or self.lookups or self.items or self.replies):
            return
        items, lookups = self.items, self.lookups
        for c in changes:
            if c.proc is None:
                self.clear()
                return
            for t in c.touched:
                b, a = t.before, t.after
                if t.id != 0 and _top_moved(t):
                    self.clear()   # a directory under the root made, gone or renamed
                    return
                items.pop(t.id, None)
                lookups.pop(t.id, None)
                self._drop(t.id)
                if b is not None:
                    lookups.pop(b.parent, None)
                    self._drop(b.parent)
                if a is not None:
                    lookups.pop(a.parent, None)
                    self._drop(a.parent)


@dataclass
class _Paged:
    entries: Iterator[Item]
    view: NodeSource | None
    started: float
    #: the directories the entries were read from and under (LOOKUP's parent, each
    #: entry), when they all came from :class:`_Kept`: what its answer depends on
    deps: list[int] | None = None

    def close(self) -> None:
        if self.view is not None:
            self.view.close()
            self.view = None


@dataclass
class _Search:
    """A search under way (``Connection.search_now``): what it reads, how far it got, the
    encoded entries not yet written."""
    msgid: int
    op: L.SearchRequest
    paged: bool
    size: int
    state: _Paged
    t0: float
    limit: float
    needs_dn: bool
    sent: int = 0
    examined: int = 0
    #: the entry it stopped at for a yield, examined first when it goes on
    pending: Item | None = None
    out: list[bytes] = field(default_factory=list)
    #: where its answer is to be kept (:meth:`_Kept.answer`), while it can be: begun
    #: and answered in one go, every entry a kept one
    fill: tuple[object, bytes] | None = None
    bodies: list[bytes] = field(default_factory=list)


class LdapServer:
    """The listeners of one domain's LDAP front door and their connections."""

    def __init__(self, db: Database, config: LdapConfig) -> None:
        self.db = db
        self.config = config
        self.base = parse_dn(config.base)
        self.base_norm = norm_dn(self.base)
        self.base_text = dn_text(self.base)
        #: the DN of ou=users (:meth:`quick`: a user's is ``uid=NAME,`` before it)
        self._users_dn = dn_of(_USERS, self.base)
        self._servers: list[Listener] = []
        #: the threads simple binds verify passwords in (:data:`BIND_WORKERS`; their
        #: queue is first come, first served)
        self.verifier = ThreadPoolExecutor(BIND_WORKERS, thread_name_prefix="ldap-bind")
        self.conns: set[Connection] = set()
        #: bytes of partly received messages, all connections together
        self.partial_bytes = 0
        # the one place the shared connection bounds are used (issue 22 item 6)
        self.bounds: PeerBounds[Connection] = PeerBounds(
            config.limits, drop=lambda c, why: c.abort(why), idle=lambda c: c.idle())
        #: what equality searches read again and again (the directories under the root,
        #: LOOKUP's answers, entries and their encodings), per domain state
        self.kept = _Kept(db)
        #: search bases and other DNs → their paths (:meth:`path_of`)
        self._paths: dict[str, tuple[str, ...] | None] = {}
        self._unsubscribe = db.subscribe(self.kept.changed)
        #: users' entries held whole per attribute selection (``residents``), answering
        #: the short path's searches of anonymous readers; compressed (:attr:`_zdicts`)
        self.residents = Residents(db, config.resident_bytes if config.quick else 0, "LDAP",
                                   after=RESIDENT_AFTER, cooldown=RESIDENT_COOLDOWN,
                                   turn=RESIDENT_TURN,
                                   on_drop=self._dropped)
        self._unsubscribe_residents = db.subscribe(self._forget_residents)
        #: attribute selection → its resident map's name
        self._shapes: dict[tuple[str, ...], str] = {}
        #: resident map → the preset dictionary its entries are compressed against
        #: (None: held as written, RESIDENT_PLAIN_USERS)
        self._zdicts: dict[str, bytes | None] = {}
        #: anonymous searches' shapes (``wire.ldap.equality_value_span``: the bytes
        #: before and after the uid's value) → the resident map their entries come from
        #: (:meth:`Connection._quick`)
        self.routes: dict[tuple[bytes, bytes], str] = {}

    async def listen(self, host: str, port: int, ldaps: bool = False) -> int:
        """Listen on *host*:*port* (0: any free port), LDAPS when *ldaps*; the port."""
        if ldaps and self.config.tls is None:
            raise ValueError("LDAPS needs a certificate and key")
        made = await listen_on(host, port, lambda: Connection(self),
                               "ldaps" if ldaps else "ldap",
                               ssl=self.config.tls if ldaps else None)
        self._servers.extend(made)
        return made[0].port

    async def close(self) -> None:
        """Stop listening and end every session now. A TLS session is cut, not shut
        down: a graceful close waits for the peer's close_notify (up to 30 s)."""
        for srv in self._servers:
            srv.close()
        ends = []
        for c in list(self.conns):
            c.abort("server stopping")
            if c.transport is not None:
                c.transport.abort()
            ends.append(c.finished)
            ends.extend(c.ops.values())
        if ends:
            await asyncio.wait(ends, timeout=CLOSE_WAIT)
        self._unsubscribe()
        self._unsubscribe_residents()
        self.residents.drop()
        self.verifier.shutdown(wait=False, cancel_futures=True)

    async def check_user(self, who: str | int, password: str) -> tuple[str, bool]:
        """The domain's ``check_user`` with the hashes verified in :attr:`verifier`: the
        users *who* names read here, on the event loop (where writes are made), each
        hash checked in a worker thread, the first match's outcome (or the same errors,
        NI_NOUSER / NI_AUTHERROR)."""
        label, candidates = self.db.user_candidates(who)
        loop = asyncio.get_running_loop()
        for stored, outcome in candidates:
            if stored is None or await loop.run_in_executor(
                    self.verifier, _verify, password, stored):
                return settle(outcome)
        raise NiError(Status.AUTHERROR, f"{label}: wrong password")

    # -- the directory as entries --------------------------------------------------------

    def path_of(self, dn: str) -> tuple[str, ...] | None:
        """The NetInfo path (names from the root) of an entry DN under the base, or None
        when the DN is not under the base (remembered for the next search that names
        it: a search base is mostly one of a few). :raises LdapError:
        invalidDNSyntax, noSuchObject."""
        paths = self._paths
        got = paths.get(dn, paths)
        if got is not paths:
            return got   # type: ignore[return-value]
        path = self._path_of(dn)
        if len(dn) > MAX_KEPT_KEY:
            return path
        if len(paths) >= MAX_PATHS:
            paths.clear()
        paths[dn] = path
        return path

    def _path_of(self, dn: str) -> tuple[str, ...] | None:
        try:
            parsed = parse_dn(dn)
        except DnError as e:
            raise LdapError(L.ResultCode.INVALID_DN_SYNTAX, str(e)) from None
        n = len(self.base)
        if len(parsed) < n or norm_dn(parsed[len(parsed) - n:]) != self.base_norm:
            return None
        rel = parsed[:len(parsed) - n]
        path = tuple(v for _, v in reversed(rel))
        for i, (a, _) in enumerate(reversed(rel)):
            if a.lower() != rdn_attr(path[:i + 1]).lower():
                raise LdapError(L.ResultCode.NO_SUCH_OBJECT,
                                f"{a} does not name entries here", self._dn(path[:i]))
        return path

    def _dn(self, path: tuple[str, ...]) -> str:
        return dn_of(path, self.base)

    def resolve(self, path: tuple[str, ...]) -> tuple[int, Node]:
        """The directory at *path* in the live domain. :raises LdapError: noSuchObject
        with the deepest existing entry as matchedDN."""
        src = self.db.source
        oid = 0
        for i, name in enumerate(path):
            try:
                if i == 0:
                    oid = self._top(name)
                else:
                    found, _ = self.db.call(Proc.LOOKUP, _ANYONE, (NiId(oid), "name", name))
                    oid = found[0]
            except NiError:
                raise LdapError(L.ResultCode.NO_SUCH_OBJECT, "",
                                self._dn(path[:i])) from None
        node = src.get(oid)
        if node is None:
            raise LdapError(L.ResultCode.NO_SUCH_OBJECT, "", self._dn(path[:-1]))
        return oid, node

    def _top(self, name: str) -> int:
        """The number of the directory *name* under the root, through LOOKUP, kept
        while nothing moves it (:class:`_Kept`). :raises NiError: NI_NODIR."""
        kept = self.kept
        if kept.usable():
            oid = kept.tops.get(name)
            if oid is None:
                oid = int(self.db.call(Proc.LOOKUP, _ANYONE, (NiId(0), "name", name))[0][0])
                kept.tops[name] = oid
            return oid
        return int(self.db.call(Proc.LOOKUP, _ANYONE, (NiId(0), "name", name))[0][0])

    def entry(self, path: tuple[str, ...], node: Node) -> Item:
        """(path, DN, attributes, operational attributes) of the directory at *path*."""
        dn = self._dn(path)
        attrs = entry_attrs(path, node.props, self.base[0])
        op: Attrs = {
            "entrydn": ("entryDN", [dn]),
            "subschemasubentry": ("subschemaSubentry", [SCHEMA_DN]),
            "hassubordinates": ("hasSubordinates", ["TRUE" if node.children else "FALSE"]),
        }
        return path, dn, attrs, op, None

    def walk(self, view: NodeSource, oid: int, node: Node, path: tuple[str, ...],
             scope: int) -> Iterator[Item]:
        """The entries of a one-level or subtree search from the directory at *path*,
        depth first, read from *view*; directories without a name are skipped (their
        entries would have no RDN)."""
        if scope == L.Scope.SUB:
            yield self.entry(path, node)
        stack = [(node, path)]
        while stack:
            n, p = stack.pop()
            kids = []
            for _c, cn in view.children_of(n):
                name = next((vs[0] for k, vs in cn.props if k == "name" and vs), None)
                if name is None:
                    continue
                yield self.entry(p + (name,), cn)
                if scope == L.Scope.SUB and cn.children:
                    kids.append((cn, p + (name,)))
            stack.extend(reversed(kids))

    def owner(self, path: tuple[str, ...], scope: int,
              f: L.Filter) -> tuple[str, ...] | None:
        """The one mapped directory (its path) whose children alone can match *f* in
        this search's scope, by an equality every match needs (``_OWNERS``), or None."""
        for attr, value in equality_terms(f):
            d = _OWNERS.get((attr, value.lower() if attr == "objectclass" else ""))
            if d is None:
                continue
            target = (d,)
            if (path == () and scope == L.Scope.SUB) or (path == target and scope != L.Scope.BASE):
                return target
            return None
        return None

    def lookup(self, target: tuple[str, ...], poid: int,
               f: L.Filter) -> tuple[list[Item], list[int] | None] | None:
        """The children of *target* an equality on a plain column names, through the
        domain's indexed LOOKUP (nslcd's ``uid=NAME``, SSSD's ``memberUid=NAME``), or None
        when no equality of *f* is on such a column; with the directories they depend
        on when all of them are kept (:class:`_Kept`), else None."""
        m = MAPPINGS[target[0]]
        for attr, value in equality_terms(f):   # noqa: B007 (value used after the loop)
            col = next((c for c in m.columns if c.attr.lower() == attr and c.out is None),
                       None)
            if col is not None:
                break
        else:
            return None
        # LOOKUP matches exactly; a case-ignore attribute (uid, cn) is also looked up in
        # lower case, the way names are conventionally written (a mixed-case name is
        # found by its own spelling or by lower case only: issue 22 notes)
        tries = [value]
        if attr_type(col.attr).equality == "ci" and value.lower() != value:
            tries.append(value.lower())
        found: list[int] = []
        kept = self.kept
        keeping = kept.usable()
        for v in tries:
            try:
                if keeping:
                    found = kept.lookup(poid, col.prop, v)
                else:
                    found, _ = self.db.call(Proc.LOOKUP, _ANYONE, (NiId(poid), col.prop, v))
                break
            except NiError:
                continue
        src = self.db.source
        # read now (a store fetch, if one is needed, comes before anything is sent)
        items: list[Item] = []
        deps = [poid, *found] if keeping else None
        for oid in found:
            item = kept.items.get(oid) if keeping else None
            if item is None:
                n = src.get(oid)
                if n is None:   # destroyed since
                    continue
                name = next((vs[0] for k, vs in n.props if k == "name" and vs), None)
                if name is None:
                    continue
                path, dn, attrs, op, _ = self.entry(target + (name,), n)
                item = (path, dn, attrs, op, {} if keeping else None)
                if keeping:
                    kept.keep(oid, item)
            items.append(item)
        return items, deps


    def quick(self, op: L.SearchRequest, hidden: Callable[[tuple[str, ...]], frozenset[str]]
              ) -> tuple[list[bytes], list[int]] | None:
        """The short path of an equality search (:meth:`Connection._quick`): a search
        under the base (subtree) or under ``ou=users`` (one level or subtree) for
        ``(uid=V)`` or ``(&(objectClass=posixAccount)(uid=V))``, answered as the general
        path answers it (``Connection._begin``, :meth:`lookup`, ``Connection._step``)
        with none of its bookkeeping: the encoded entries (none or one) and the
        directories the answer depends on (none for an entry held in memory, which is
        not kept again: :meth:`_resident_entry`). None for anything else, and whenever the
        general path would do more than this (several users found, an error to
        report): it then answers. Only while :class:`_Kept` is usable.
        :raises LdapError, NiError: (the caller goes to the general path)"""
        terms = equality_terms(op.filter)
        if len(terms) == 2:
            if terms[0][0] == "uid":
                terms.reverse()
            if terms[0] != ("objectclass", terms[0][1]) \
                    or terms[0][1].lower() != "posixaccount":
                return None
        if terms[-1][0] != "uid":
            return None
        base = op.base.strip()
        if "".join(base.lower().split()) == "cn=subschema":
            return None
        path = self.path_of(base)
        if path != _USERS and not (path == () and op.scope == L.Scope.SUB):
            return None
        if self.owner(path, op.scope, op.filter) != _USERS:
            return None
        if path:
            poid, _ = self.resolve(path)
        else:
            self.resolve(path)
            poid, _ = self.resolve(_USERS)
        value = terms[-1][1]
        if self.residents.budget and hidden(("users", value)) == PRIVATE_ATTRS:
            held = self._resident_entry(op.attributes, value)
            if held is not None:
                return [held], []
        tries = [value]
        if value.lower() != value:   # uid is case-ignore (as in lookup)
            tries.append(value.lower())
        found, row = self._user_row(poid, tries)
        if len(found) > 1:
            return None
        bodies: list[bytes] = []
        if not found or row is None:   # (destroyed since)
            return bodies, [poid, *found]
        if isinstance(row, Node):
            n: Node | None = row
            try:
                data = encode_proplist(row.props)
            except (TooLong, WireError):
                data = None
            kids: bool | None = bool(row.children) if data is not None else None
        else:
            n, data, kids = None, row, None
        got = None if data is None else user_entry(
            data, self._users_dn, op.filter, op.attributes, hidden, kids)
        if got is not None:   # (the common user: the entry from its stored bytes)
            if got[1] is not None:
                bodies.append(got[1])
            return bodies, [poid, *found]
        if n is None:
            n = self.db.source.peek(found[0])   # (a random user: not kept in the cache)
            if n is None:
                return bodies, [poid, *found]
        name = next((vs[0] for k, vs in n.props if k == "name" and vs), None)
        if name is None:
            return bodies, [poid, *found]
        path = ("users", name)
        attrs = entry_attrs(path, n.props, self.base[0])
        hide = hidden(path)
        if evaluate(op.filter, attrs, hide) is not True:
            return bodies, [poid, *found]
        dn = f"uid={escape_value(name)},{self._users_dn}"   # self._dn(path)
        opattrs: Attrs = {} if op.attributes in _USER_ATTRS_ONLY else {
            "entrydn": ("entryDN", [dn]),
            "subschemasubentry": ("subschemaSubentry", [SCHEMA_DN]),
            "hassubordinates": ("hasSubordinates", ["TRUE" if n.children else "FALSE"]),
        }
        bodies.append(encode_selected(dn, attrs, op.attributes, hide, opattrs))
        return bodies, [poid, *found]

    # -- users' entries held in memory (residents) ---------------------------------------

    def _resident_entry(self, wanted: tuple[str, ...], value: str) -> bytes | None:
        """The SearchResultEntry of user *value* with attribute selection *wanted* for
        an anonymous reader, from the resident map of that selection; None: the short
        path reads it (and the miss is counted: the map is read after RESIDENT_AFTER)."""
        state = self.db.read_state()
        if state is None:
            return None               # writes pending: the domain answers
        name = self._shapes.get(wanted)
        if name is None:
            if len(self._shapes) >= MAX_SHAPES or selection_size(wanted) > MAX_KEPT_KEY:
                return None
            name = self._shapes[wanted] = f"users {len(self._shapes)}"
        kept = self.residents.get(name, state)
        if kept is not None:
            return self._held_entry(name, kept, value.encode("utf-8", "surrogateescape"))
        self.residents.missed(name, state, partial(self._read_users, name, wanted))
        return None

    def _held_entry(self, name: str, kept: ResidentMap, key: bytes) -> bytes | None:
        z = kept.body(key)
        if z is None:
            return None
        zdict = self._zdicts[name]
        return z if zdict is None else zlib.decompressobj(_ZWBITS, zdict).decompress(z)

    def _dropped(self, name: str | None) -> None:
        """Maps dropped: all of them (a directory under the root made, gone or renamed)
        forgets the routes too. (A route holds while its map is read again: whether a
        search takes the resident map depends on its bytes, and on the reader and the
        users' directory, which a map held at the domain's state has.)"""
        if name is None:
            self.routes.clear()

    def routed_entry(self, shape: tuple[bytes, bytes], key: bytes) -> bytes | None:
        """The entry of user *key* when searches of *shape* (the request's bytes before
        and after the value) are routed to a resident map (:attr:`routes`) and the
        short path may answer now (``_Kept.usable``: no write pending, nobody watching
        LOOKUP); None: the short path answers as usual. (Routes are only made by the
        short path, which runs only where reads never wait: ``Database.waiting`` None.)"""
        name = self.routes.get(shape)
        if name is None:
            return None
        db = self.db
        state = db.read_state()
        if state is None or db.is_watched(Proc.LOOKUP):
            return None
        kept = self.residents.get(name, state)
        return None if kept is None else self._held_entry(name, kept, key)

    def add_route(self, raw: bytes, q: int, op: L.SearchRequest) -> None:
        """Search *op* (message *raw*, its SearchRequest at *q*), of an anonymous reader,
        was answered from the resident map of its attribute selection: route the
        searches of its shape there (at most MAX_ROUTES shapes)."""
        span = L.equality_value_span(raw, q)
        name = self._shapes.get(op.attributes)
        if span is None or name is None:
            return
        start, end = span
        # the span is the value of the one uid term, and the term is ``(uid=V)``
        uids = [v for a, v in equality_terms(op.filter) if a == "uid"]
        if raw[start - 7:start - 2].lower() != b"\x04\x03uid" or len(uids) != 1 \
                or raw[start:end] != uids[0].encode("utf-8", "surrogateescape"):
            return
        if len(self.routes) >= MAX_ROUTES:
            self.routes.clear()
        self.routes[raw[q:start], raw[end:]] = name

    def _read_users(self, name: str, wanted: tuple[str, ...], view: NodeSource,
                    kept: ResidentMap) -> Iterator[bytes]:
        """Every user's entry (as :meth:`quick` writes it for an anonymous reader) with
        attribute selection *wanted*, from snapshot *view*, compressed (but for a map
        of few users: RESIDENT_PLAIN_USERS), keyed by the user's name: pieces for a
        resident map. A user the short path does not write
        (``user_entry`` None) is not held: the short path answers it."""
        root = view.get(0)
        users = None
        if root is not None:
            for _, node in view.children_of(root):
                if (first_values(node.props, "name") or [""])[0] == _USERS[0]:
                    users = node
                    break
        if users is None:
            return
        n = len(users.children)
        kept.reserve(n)
        hidden: Callable[[tuple[str, ...]], frozenset[str]] = lambda _p: PRIVATE_ATTRS
        batch: list[bytes] = []
        # compressed against the first entry read (zlib's preset dictionary: what most
        # entries share, the DN's suffix, the classes, the attribute names)
        zdict: bytes | None = None
        plain = n <= RESIDENT_PLAIN_USERS and n * 1024 <= kept.room // 2
        if plain:
            self._zdicts[name] = None
        for wire in view.listall_wire(users):
            names = [v for k, vs in stored_first_props(wire, _NAME_ONLY) for v in vs[:1]
                     if k == "name"]
            if not names or not names[0]:
                continue
            user = names[0]
            got = user_entry(wire, self._users_dn, L.Compare(L.F_EQUAL, "uid",
                                                              user.encode()),
                             wanted, hidden, None)
            if got is None or got[1] is None:
                # not held; nor, then, any name it has (LOOKUP finds every holder)
                kept.forget(_name_keys(decode_proplist(wire)))
                continue
            if plain:
                body = got[1]
            else:
                if zdict is None:
                    zdict = self._zdicts[name] = got[1]
                co = zlib.compressobj(1, zlib.DEFLATED, _ZWBITS, _ZMEM,
                                      zlib.Z_DEFAULT_STRATEGY, zdict)
                body = co.compress(got[1]) + co.flush()
            key = user.encode("utf-8", "surrogateescape")
            if len(body) > 0xFFFF or len(key) > 0xFFFF:   # (entry_bytes: 16-bit lengths)
                kept.forget(_name_keys(decode_proplist(wire)))
                continue
            batch.append(entry_bytes(key, body))
            if len(batch) >= RESIDENT_BATCH:
                yield b"".join(batch)
                batch = []
        yield b"".join(batch)

    def _forget_residents(self, changes: list[Change]) -> None:
        """A durable batch: the names of the users it touched (before and after) are
        answered the usual way from now on; a directory under the root made, gone or
        renamed drops the maps."""
        res = self.residents
        if not res:
            return
        keys: list[bytes] = []
        for c in changes:
            if c.proc is None:
                res.drop()
                return
            for t in c.touched:
                b, a = t.before, t.after
                if t.id == 0 or _top_moved(t):
                    res.drop()   # the root, or a directory under it made, gone or renamed
                    return
                for st in (b, a):
                    if st is not None and st.parent != 0:
                        keys.extend(_name_keys(st.props))
        for name in list(res.maps):
            res.forget(name, keys)
        res.settle()

    def _user_row(self, poid: int, tries: list[str]
                  ) -> tuple[list[int], Node | bytes | None]:
        """LOOKUP of the first of *tries* that /users (*poid*) holds by name, and the
        first child it finds, read once: its node, or its stored proplist bytes
        (``NodeSource.lookup_stored``: the resident index, the row alone), else (a
        source that cannot, or pinned children) through :class:`_Kept`'s LOOKUP and
        ``peek``. :raises NiError: (not NI_NODIR)"""
        src = self.db.source
        lookups = self.kept.lookups.get(poid)
        for v in tries:
            found = lookups.get(("name", v)) if lookups is not None else None
            if found is None:
                got = src.lookup_stored(poid, "name", v)
                if got is not None:
                    if got[0]:
                        return got
                    continue
                try:
                    found = self.kept.lookup(poid, "name", v)
                except NiError:
                    continue
            if len(found) != 1:
                return found, None
            return found, src.peek(found[0])
        return [], None


_USERS = ("users",)
#: attribute lists that select no operational attribute (``select``)
_USER_ATTRS_ONLY = frozenset({(), ("*",)})


def _owners() -> dict[tuple[str, str], str]:
    """(attribute, value) → the one mapped directory whose entries alone can match an
    equality on it: ``objectClass`` values of one row only, and attributes one row
    alone carries (value ""; generic entries carry only cn, ou, dc and
    netinfoProperty)."""
    classes: dict[str, list[str]] = {}
    attrs: dict[str, list[str]] = {}
    for m in MAPPINGS.values():
        for c in m.classes:
            classes.setdefault(c.lower(), []).append(m.directory)
        for col in m.columns:
            attrs.setdefault(col.attr.lower(), []).append(m.directory)
    out = {("objectclass", c): ds[0] for c, ds in classes.items()
           if len(ds) == 1 and c not in ("top", "netinfodirectory")}
    out.update({(a, ""): ds[0] for a, ds in attrs.items() if len(ds) == 1 and a != "cn"})
    return out


_OWNERS = _owners()


class Connection(HeldConnection):
    """One client connection, an asyncio Protocol: the complete messages of each read
    are answered in order inside ``data_received`` (a search up to its first yield, a
    base or equality search whole), their answers written together; a Task only for
    what must await (a bind's verification, StartTLS, a PostgreSQL commit, the rest of
    a search past its first yield, which abandon can cancel). While such a wait holds
    the connection (:attr:`_held`) the messages read meanwhile wait in :attr:`buf`."""

    def __init__(self, server: LdapServer) -> None:
        self.server = server
        self.db = server.db
        self.transport: asyncio.Transport | None = None
        self.addr = ""
        self.port = 0
        self.tls = False
        self.caller = Caller()
        self.bound_dn = ""
        #: searches running as tasks (past their first yield), by message id
        self.ops: dict[int, asyncio.Task[None]] = {}
        self.paged: dict[bytes, _Paged] = {}
        self.closed = False
        #: bytes received and not yet answered (a message begun and not yet whole, or
        #: whole messages waiting while the connection is held)
        self.buf = bytearray()
        #: bytes of :attr:`buf` counted against :data:`PARTIAL_BUDGET`, and since when
        #: the message at its head is awaited
        self.partial = 0
        self.partial_since = 0.0
        #: when the peer last sent something, or the connection last finished work
        self.last = time.monotonic()
        #: the clock search time limits are measured by (tests give their own)
        self.clock = time.monotonic
        #: the group commit of the requests of one read of the socket
        #: (``Database.batch``): their writes are made durable together, and every
        #: response sent meanwhile waits for that commit (:meth:`flush_batch`)
        self.batch: Batch | None = None
        #: what the connection waits for before it reads on: a task (bind, StartTLS,
        #: commit) or :data:`FETCHING` (a store read off the loop); None: answering
        self._held: asyncio.Future[None] | object | None = None
        #: cancel :attr:`_held` if the connection goes first (a bind, StartTLS)
        self._cancel_held = False
        #: a message to run again first (its store read fetched, its batch committed)
        self._retry: L.Message | None = None
        #: fetches off the loop made for :attr:`_retry` so far (:data:`MAX_FETCHES`)
        self._fetches = 0
        #: answers gathered while a read's messages are answered: one write for all
        self._out: list[bytes] | None = None
        self._out_size = 0
        #: the peer is not taking its answers (the transport's buffer is past its mark)
        self._writing_paused = False
        #: search tasks waiting for the peer to take what is queued
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._stall: asyncio.TimerHandle | None = None
        #: the idle and partial-message timer (re-armed lazily: see :meth:`_timeout`)
        self._timer: asyncio.TimerHandle | None = None
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        #: between a StartTLS response and the TLS transport's arrival
        self._starting_tls = False
        #: inside :meth:`_process` (a callback it causes must not start another)
        self._processing = False
        #: the key the answer of the search being handled is to be kept under
        self._fill: tuple[object, bytes] | None = None

    def __hash__(self) -> int:
        return id(self)

    @property
    def _reader(self) -> tuple[bool, str | None]:
        """What a search's answer depends on of the reader (``hidden``)."""
        c = self.caller
        return c.is_root, c.user

    def idle(self) -> bool:
        return not self.ops and not self.partial and self._held is None

    # -- the transport ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's are not asyncio.Transport's subclasses)
        self.transport = transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername") or ("", 0)
        self.addr, self.port = peer[0], peer[1]
        self.tls = transport.get_extra_info("sslcontext") is not None
        self.caller = Caller(self.addr, self.port)
        srv = self.server
        why = srv.bounds.admit(self, self.addr, time.monotonic())
        if why is None and not self.db.admits_tcp(self.addr, is_loopback(self.addr)):
            why = "not in trusted_networks"
        if why is not None:
            log.info("ldap: refusing %s: %s", self.addr, why)
            srv.bounds.forget(self)
            self.closed = True
            transport.close()
            return
        srv.conns.add(self)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        srv = self.server
        self.closed = True
        self.flush_batch()   # the writes already made are committed (nothing is sent)
        self._partial(0)
        self.buf.clear()
        for h in (self._timer, self._stall):
            if h is not None:
                h.cancel()
        self._timer = self._stall = None
        held = self._held
        if isinstance(held, asyncio.Future) and self._cancel_held:
            held.cancel()   # a bind's or StartTLS's wait (never a commit's)
        for t in self.ops.values():
            t.cancel()
        for p in self.paged.values():
            p.close()
        self.paged.clear()
        self._wake()
        srv.conns.discard(self)
        srv.bounds.forget(self)
        if not self.finished.done():
            self.finished.set_result(None)

    def pause_writing(self) -> None:
        """The peer does not take its answers: no more requests are read, and after the
        bounds' ``stall`` seconds the connection goes (it then holds no more memory)."""
        self._writing_paused = True
        transport = self.transport
        if transport is not None:
            transport.pause_reading()
        if self._stall is None:
            self._stall = asyncio.get_running_loop().call_later(
                self.server.config.limits.stall, self._stalled)

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        self._wake()
        self._continue()

    def _stalled(self) -> None:
        self._stall = None
        self.abort(f"answers not taken for {self.server.config.limits.stall:g} s")
        if self.transport is not None:
            self.transport.abort()   # what is queued is dropped, not waited for

    def _wake(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    async def drain(self) -> None:
        """Until the peer has taken what is queued for it (below the transport's
        high-water mark); the stall timer (:meth:`pause_writing`) bounds the wait.
        :raises ConnectionResetError: the connection is gone."""
        while self._writing_paused and not self.closed:
            w = asyncio.get_running_loop().create_future()
            self._drain_waiters.append(w)
            await w
        if self.closed:
            raise ConnectionResetError("closed")

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        now = time.monotonic()
        self.last = now
        server = self.server
        server.bounds.active(self, now)
        buf = self.buf
        if not buf:
            if server.routes and self._held is None and self.batch is None \
                    and self._retry is None and not self.ops and not self._writing_paused \
                    and self._timer is not None and not self._starting_tls \
                    and self.caller.user is None and not self.caller.is_root \
                    and self._lane(data):
                return
            self.partial_since = now
        buf += data
        if self._held is not None or self._writing_paused:
            # the messages wait for what holds the connection: read no more meanwhile
            # (but for a StartTLS handshake's: the request after it may come before the
            # handshake's end reaches start_tls, and pausing the plain transport under
            # the TLS one would stop the connection for good)
            self._partial(len(buf))
            if self.transport is not None and not self._starting_tls:
                self.transport.pause_reading()
            self._arm()
            return
        self._process()

    def _lane(self, data: bytes) -> bool:
        """Answer *data* at once, and say so, when it is one whole search of a shape
        routed to a resident map (:meth:`LdapServer.add_route`) with a user held there:
        what :meth:`_process` would send for it, the same bytes, without its
        bookkeeping. The caller has checked that nothing else is outstanding on the
        connection (no bytes waiting, no hold, batch, search task or paused writing),
        that the reader is anonymous (the only reader routes serve) and that the idle
        timer is set (it finds the new :attr:`last` when it fires). False: the usual
        way, which answers the same message alike or tells why not."""
        parts = L.message_parts(data)
        if parts is None or parts[2] != len(data):   # (one whole message, nothing after)
            return False
        q = parts[1]
        span = L.equality_value_span(data, q)
        if span is None:
            return False
        start, end = span
        held = self.server.routed_entry((data[q:start], data[end:]), data[start:end])
        if held is None or self.transport is None:
            return False
        self._fetches = 0
        self.transport.write(self._entry_and_done(data, q, [held]))
        return True

    def _process(self) -> None:
        """Answer the whole messages in :attr:`buf` in order, until one must wait (a bind,
        StartTLS, a commit or a store fetch holds the connection) or the peer stops
        taking answers; then write the answers gathered, in one write."""
        buf = self.buf
        self._out = []
        self._out_size = 0
        self._processing = True
        kept = self.server.kept
        quick = self.server.config.quick
        took = False
        try:
            while not self.closed and self._held is None and not self._writing_paused:
                msg = self._retry
                if msg is not None:
                    self._retry = None
                else:
                    try:
                        n = ber.frame(buf)
                    except WireError as e:
                        self.disconnect(L.ResultCode.PROTOCOL_ERROR, str(e))
                        break
                    if n is None:
                        break
                    raw = bytes(buf) if n == len(buf) else bytes(buf[:n])
                    del buf[:n]
                    took = True
                    if self.batch is None:
                        hit, self._fill = kept.answer(self._reader, raw)
                        if hit is None and self._fill is not None and quick:
                            hit = self._quick(raw, self._fill)   # a new equality search
                        if hit is not None:   # a search answered before: its answer
                            self._fill = None
                            self._emit(hit)
                            if self._out_size > WRITE_HIGH_WATER:
                                self._write_out()
                            continue
                    try:
                        msg = L.decode_message(raw)
                    except WireError as e:
                        # RFC 4511 §4.1.1: a PDU that does not decode ends the session
                        self.disconnect(L.ResultCode.PROTOCOL_ERROR, str(e))
                        break
                try:
                    end = self.handle(msg)
                finally:
                    self._fill = None
                if end:   # unbind (RFC 4511 §4.3), or worse
                    self.abort("")
                    break
                if self._out_size > WRITE_HIGH_WATER:
                    self._write_out()   # may pause writing: the loop then stops
            if self._held is None:
                # the writes of this read's requests: one commit, then their answers
                self.flush_batch()
        finally:
            self._write_out()
            self._out = None
            self._processing = False
        if took and buf:
            self.partial_since = time.monotonic()
        self._partial(len(buf))
        if buf and (self._held is not None or self._writing_paused) \
                and self.transport is not None and not self._starting_tls:
            self.transport.pause_reading()
        self._arm()

    def _write_out(self) -> None:
        out = self._out
        if out:
            data = b"".join(out) if len(out) > 1 else out[0]
            out.clear()
            self._out_size = 0
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(data)

    def _emit(self, data: bytes) -> None:
        """Send *data*: gathered while a read's messages are answered, else at once."""
        if self.closed:
            return
        out = self._out
        if out is not None:
            out.append(data)
            self._out_size += len(data)
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _hold(self, fut: asyncio.Future[None], cancel_on_close: bool = False) -> None:
        """Hold the connection until *fut* is done (the messages read meanwhile wait),
        then answer on. *cancel_on_close*: cancel it if the connection goes first."""
        self._cancel_held = cancel_on_close
        self._hold_until(fut, log, f"ldap {self.addr}:{self.port}")

    def _continue(self) -> None:
        """Go on answering after a hold or a pause: what waits in :attr:`buf` first."""
        if self.closed or self._held is not None or self._writing_paused \
                or self._processing:
            return   # (while answering, the loop in _process goes on by itself)
        self.last = time.monotonic()
        transport = self.transport
        if transport is not None:
            transport.resume_reading()
        if self.buf or self._retry is not None:
            self._process()
        else:
            self._arm()

    # -- timers ------------------------------------------------------------------------

    def _deadline(self) -> float | None:
        """When the connection is to be closed if nothing happens: a message begun
        :data:`PARTIAL_TIMEOUT` ago and not whole, or :data:`IDLE_TIMEOUT` with nothing
        in flight (no search, no paged search left open, no wait)."""
        if self.buf and self._held is None and self._retry is None \
                and not self._writing_paused:
            return self.partial_since + PARTIAL_TIMEOUT
        if self.ops or self.paged or self._held is not None or self._retry is not None \
                or self._writing_paused:
            return None   # (a peer not taking its answers: the stall timer's part)
        return self.last + IDLE_TIMEOUT

    def _arm(self) -> None:
        """The timer set for :meth:`_deadline` (one call_later per connection, moved
        only when the deadline comes earlier; a later one is found when it fires)."""
        if self.closed:
            return
        d = self._deadline()
        if d is None:
            return
        timer = self._timer
        loop_now = time.monotonic()
        if timer is not None:
            if timer.when() <= d + 0.001:
                return
            timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(max(0.0, d - loop_now),
                                                            self._timeout)

    def _timeout(self) -> None:
        self._timer = None
        if self.closed:
            return
        d = self._deadline()
        if d is None:
            return
        if d > time.monotonic():
            self._arm()
            return
        self.disconnect(L.ResultCode.UNAVAILABLE,
                        "a message took too long" if self.buf else "idle too long")

    # -- sending -------------------------------------------------------------------------

    def _partial(self, held: int) -> None:
        """This connection now holds *held* bytes of a message not yet whole; past
        :data:`PARTIAL_BUDGET` for all together the connection holding the most goes."""
        srv = self.server
        srv.partial_bytes += held - self.partial
        self.partial = held
        if srv.partial_bytes > PARTIAL_BUDGET:
            biggest = max(srv.conns, key=lambda c: c.partial, default=self)
            biggest.abort(f"{biggest.partial} bytes of unfinished messages, "
                          f"{srv.partial_bytes} in all")
            srv.partial_bytes -= biggest.partial
            biggest.partial = 0

    def abort(self, why: str) -> None:
        """Close the connection once what is queued for it is sent."""
        if not self.closed and why:
            log.info("ldap: closing %s:%d: %s", self.addr, self.port, why)
        self._write_out()
        self.closed = True
        if self.transport is not None and not self.transport.is_closing():
            # once only: asyncio's TLS transport forgets its protocol at a second
            # close(), and its abort() then fails (CPython 3.11 sslproto)
            self.transport.close()

    def send(self, msgid: int, op: L.Operation, controls: tuple[L.Control, ...] = ()) -> None:
        if not self.closed:
            data = L.encode_message(L.Message(msgid, op, controls))
            if self.batch is None:
                self._emit(data)
            else:   # after the batch's commit; a write's success, unavailable if it fails
                self.batch.add(data, partial(_unwritten, msgid, op))

    def flush_batch(self) -> None:
        """End the open batch: commit its writes (one transaction), then send every
        response it held, those of writes that did not become durable replaced. On an
        engine whose commits wait on a server (PostgreSQL) the commit runs off the loop
        and the connection is held meanwhile (:meth:`_hold`; other connections go on)."""
        batch, self.batch = self.batch, None
        if batch is None:
            return
        if batch.close_now():
            self._batch_sent(batch)
            return

        async def settle() -> None:
            await batch.close_async()
            self._batch_sent(batch)
        task = asyncio.ensure_future(settle())
        if not self.closed:
            self._hold(task)

    def _batch_sent(self, batch: Batch) -> None:
        if batch.failed:
            log.error("ldap: a commit failed; its writes are answered unavailable")
        if batch.replies and not self.closed:
            self._emit(b"".join(batch.replies))

    def _settled(self, msg: L.Message) -> bool:
        """Close the open batch before *msg* runs (a bind, StartTLS or search sees and
        answers after the writes before it); False when its commit is awaited first
        (*msg* then runs again after it)."""
        if self.batch is None:
            return True
        self.flush_batch()
        if self._held is None:
            return True
        self._retry = msg
        return False

    def disconnect(self, code: int, message: str) -> None:
        """The notice of disconnection (RFC 4511 §4.4.1), then close."""
        self.send(0, L.ExtendedResponse(code, "", message,
                                        name=L.OID_NOTICE_OF_DISCONNECTION))
        self.abort(message)

    # -- dispatch ------------------------------------------------------------------------

    def handle(self, msg: L.Message) -> bool:
        """Run one request (what must await, started: :meth:`_hold`); True when the
        connection is to end."""
        op = msg.op
        if isinstance(op, L.UnbindRequest):
            return True
        if isinstance(op, L.AbandonRequest):
            task = self.ops.pop(op.id, None)
            if task is not None:
                task.cancel()
            return False
        for c in msg.controls:
            if c.critical and c.oid not in _CONTROLS.get(type(op), ()):
                self._answer(msg, L.ResultCode.UNAVAILABLE_CRITICAL_EXTENSION,
                             f"control {c.oid} not supported")
                return False
        if isinstance(op, L.SearchRequest):
            if len(self.ops) >= MAX_OPS_PER_CONN:
                self._answer(msg, L.ResultCode.BUSY, "too many operations in flight")
                return False
            if not self._settled(msg):
                return False
            # answered here as far as its first yield (all of it, for a search LOOKUP
            # narrows to a few entries); a task (which abandon can cancel) only for
            # what goes on after that
            run = self.search_now(msg, op)
            if run is not None:
                task = asyncio.ensure_future(self.search(msg, op, run))
                self.ops[msg.id] = task
                task.add_done_callback(self._done(msg.id))
            return False
        if isinstance(op, L.ExtendedRequest) and op.name == L.OID_STARTTLS:
            if self._settled(msg):
                self._hold(asyncio.ensure_future(self.start_tls(msg)), cancel_on_close=True)
            return False
        if isinstance(op, L.BindRequest):
            if self._settled(msg):
                self._hold(asyncio.ensure_future(self.bind(msg)), cancel_on_close=True)
            return False
        handler = _HANDLERS.get(type(op))
        if handler is None:
            self._answer(msg, L.ResultCode.PROTOCOL_ERROR, "not a request")
            return isinstance(op, L.Response | L.SearchEntry | L.ExtendedResponse)
        if self.batch is None and _writes(op):
            self.batch = self.db.batch()
        try:
            handler(self, msg)
        except LdapError as e:
            self._answer(msg, e.code, e.message, e.matched)
        except NiError as e:
            self._answer(msg, RESULT_OF_STATUS.get(e.status, L.ResultCode.OTHER), str(e))
        except StorageError as e:
            log.error("ldap: %s", e)
            self._answer(msg, L.ResultCode.UNAVAILABLE, "the domain could not be written")
        return False

    def _done(self, msgid: int) -> Callable[[asyncio.Task[None]], None]:
        def forget(_task: asyncio.Task[None]) -> None:
            self.ops.pop(msgid, None)
            self.last = time.monotonic()
            self._arm()
        return forget

    def _answer(self, msg: L.Message, code: int, message: str = "", matched: str = "") -> None:
        """The response to *msg* carrying only a result."""
        op = msg.op
        if isinstance(op, L.ExtendedRequest):
            self.send(msg.id, L.ExtendedResponse(code, matched, message))
            return
        self.send(msg.id, L.Response(_RESPONSE.get(type(op), L.BIND_RESPONSE), code,
                                     matched, message))

    # -- bind, StartTLS, Who am I? -------------------------------------------------------

    async def bind(self, msg: L.Message) -> None:
        """A bind: its password verified off the event loop (:meth:`LdapServer.check_user`);
        the connection answers nothing more meanwhile (RFC 4511 §4.2.1: requests after a
        bind run as its outcome)."""
        try:
            await self._bind(msg)
        except LdapError as e:
            self._answer(msg, e.code, e.message, e.matched)

    async def _bind(self, msg: L.Message) -> None:
        op = msg.op
        assert isinstance(op, L.BindRequest)
        self.caller = Caller(self.addr, self.port)
        self.bound_dn = ""
        if op.version != 3:
            raise LdapError(L.ResultCode.PROTOCOL_ERROR, "only LDAPv3 is supported")
        if op.mechanism is not None:
            raise LdapError(L.ResultCode.AUTH_METHOD_NOT_SUPPORTED, "no SASL mechanisms")
        password = op.password or b""
        if not password:
            if op.name:   # RFC 4513 §5.1.2: unauthenticated binds refused by default
                raise LdapError(L.ResultCode.UNWILLING_TO_PERFORM,
                                "unauthenticated bind (DN without password) refused")
            self._answer(msg, L.ResultCode.SUCCESS)
            return
        if not self.tls and not is_loopback(self.addr):
            raise LdapError(L.ResultCode.CONFIDENTIALITY_REQUIRED,
                            "password binds need TLS (use StartTLS or LDAPS)")
        path = self.server.path_of(op.name)
        if path is None or len(path) != 2 or path[0] != "users":
            raise LdapError(L.ResultCode.INVALID_CREDENTIALS, "")
        try:
            self.caller = await self.db.authenticator.authenticate_with(
                path[1], password.decode("utf-8", "surrogateescape"), self.caller,
                self.server.check_user)
        except NiError:
            raise LdapError(L.ResultCode.INVALID_CREDENTIALS, "") from None
        self.bound_dn = self.server._dn(path)
        self._answer(msg, L.ResultCode.SUCCESS)

    async def start_tls(self, msg: L.Message) -> None:
        ctx = self.server.config.tls
        if ctx is None or self.tls:
            self.send(msg.id, L.ExtendedResponse(
                L.ResultCode.UNAVAILABLE if ctx is None else L.ResultCode.OPERATIONS_ERROR,
                "", "TLS not available" if ctx is None else "TLS already started"))
            return
        if self.ops:
            self.send(msg.id, L.ExtendedResponse(L.ResultCode.OPERATIONS_ERROR, "",
                                                 "operations in flight"))
            return
        if self.buf:   # RFC 4511 §4.14.1: nothing may follow until the response
            self.disconnect(L.ResultCode.PROTOCOL_ERROR, "requests after StartTLS")
            return
        self.send(msg.id, L.ExtendedResponse(L.ResultCode.SUCCESS, name=L.OID_STARTTLS))
        transport = self.transport
        assert transport is not None
        self._starting_tls = True
        try:
            tls = await asyncio.get_running_loop().start_tls(transport, self, ctx,
                                                             server_side=True)
        except (ssl.SSLError, ConnectionError, OSError) as e:
            self.abort(f"TLS handshake failed: {e}")
            return
        finally:
            self._starting_tls = False
        if tls is None or self.closed:
            self.abort("TLS handshake failed")
            return
        self.transport = tls
        tls.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self.tls = True

    def extended(self, msg: L.Message) -> None:
        op = msg.op
        assert isinstance(op, L.ExtendedRequest)
        if op.name == L.OID_WHOAMI:
            authz = f"dn:{self.bound_dn}" if self.bound_dn else ""
            self.send(msg.id, L.ExtendedResponse(L.ResultCode.SUCCESS,
                                                 value=authz.encode()))
        elif op.name == L.OID_PASSWD_MODIFY:
            self.passwd_modify(msg, op)
        else:
            raise LdapError(L.ResultCode.PROTOCOL_ERROR, f"unknown extended operation {op.name}")

    def passwd_modify(self, msg: L.Message, op: L.ExtendedRequest) -> None:
        """RFC 3062: the user's ``passwd`` set to a crypt string of the new password, as
        nipasswd does (WRITEPROP, or CREATEPROP when absent: ``_writers_passwd``
        decides); a generated one returned when none is given."""
        try:
            user, _old, new = L.decode_passwd_modify(op.value)
        except WireError as e:
            raise LdapError(L.ResultCode.PROTOCOL_ERROR, str(e)) from None
        if not self.tls and not is_loopback(self.addr):
            raise LdapError(L.ResultCode.CONFIDENTIALITY_REQUIRED, "passwords need TLS")
        dn = user if user is not None else self.bound_dn
        if not dn:
            raise LdapError(L.ResultCode.UNWILLING_TO_PERFORM, "no user named and none bound")
        path = self.server.path_of(dn)
        if path is None or len(path) != 2 or path[0] != "users":
            raise LdapError(L.ResultCode.NO_SUCH_OBJECT, "not a user")
        generated = None
        if new is None:
            generated = secrets.token_urlsafe(12)
            new = generated.encode()
        oid, node = self.server.resolve(path)
        crypted = hash_password(new.decode("utf-8", "surrogateescape"))
        nid = NiId(oid, node.instance)
        at = next((i for i, (k, _) in enumerate(node.props) if k == "passwd"), -1)
        if at >= 0:
            self.db.call(Proc.WRITEPROP, self.caller, (nid, at, [crypted]))
        else:
            self.db.call(Proc.CREATEPROP, self.caller, (nid, ("passwd", [crypted]),
                                                        len(node.props)))
        self.send(msg.id, L.ExtendedResponse(
            L.ResultCode.SUCCESS,
            value=None if generated is None else L.encode_passwd_generated(new)))

    # -- reads -----------------------------------------------------------------------------

    def hidden(self, path: tuple[str, ...]) -> frozenset[str]:
        """Attributes this reader may neither read nor filter on in the entry at *path*:
        userPassword but for the superuser and the user's own entry."""
        c = self.caller
        if c.is_root or (c.user is not None and path == ("users", c.user)):
            return frozenset()
        return PRIVATE_ATTRS

    def compare(self, msg: L.Message) -> None:
        op = msg.op
        assert isinstance(op, L.CompareRequest)
        path = self.server.path_of(op.dn)
        if path is None:
            raise LdapError(L.ResultCode.NO_SUCH_OBJECT)
        _, node = self.server.resolve(path)
        _, _, attrs, _, _ = self.server.entry(path, node)
        if op.attr.lower() in self.hidden(path):
            raise LdapError(L.ResultCode.INSUFFICIENT_ACCESS_RIGHTS)
        if op.attr.lower() not in attrs:
            raise LdapError(L.ResultCode.NO_SUCH_ATTRIBUTE)
        r = evaluate(L.Compare(L.F_EQUAL, op.attr, op.value), attrs)
        if r is None:
            raise LdapError(L.ResultCode.INVALID_ATTRIBUTE_SYNTAX)
        self._answer(msg, L.ResultCode.COMPARE_TRUE if r else L.ResultCode.COMPARE_FALSE)

    def _quick(self, raw: bytes, key: tuple[object, bytes]) -> bytes | None:
        """The whole answer to the message *raw* when it is a search the short path
        takes (``wire.ldap.scan_equality_search``, :meth:`LdapServer.quick`): what
        :meth:`handle` would send for it, the same bytes, its answer kept as the general
        path keeps it (:meth:`_Kept.keep_reply`); None for any other message, and for
        a search the general path is to answer (its errors, its bookkeeping)."""
        q = len(raw) - len(key[1])
        server = self.server
        if len(self.ops) >= MAX_OPS_PER_CONN or self.db.waiting is not None \
                or not server.kept.usable():
            return None
        anonymous = key[0] == _ANONYMOUS
        if anonymous and server.routes:
            # a shape answered from a resident map before: the same map, by the value
            span = L.equality_value_span(raw, q)
            if span is not None:
                start, end = span
                held = server.routed_entry((raw[q:start], raw[end:]), raw[start:end])
                if held is not None:
                    self._fetches = 0
                    return self._entry_and_done(raw, q, [held])
        op = L.scan_equality_search(raw, q)
        if op is None:
            return None
        try:
            got = server.quick(op, self.hidden)
        except (LdapError, NiError):
            return None
        if got is None:
            return None
        bodies, deps = got
        self._fetches = 0
        if deps:
            server.kept.keep_reply(key, (*bodies, _DONE), deps)
        elif anonymous:   # a resident entry (not kept twice): route its shape there
            server.add_route(raw, q, op)
        return self._entry_and_done(raw, q, bodies)

    @staticmethod
    def _entry_and_done(raw: bytes, q: int, bodies: list[bytes]) -> bytes:
        """The messages of a search's entries *bodies* and its success, with the
        message id of *raw* (its protocolOp at *q*)."""
        n = raw[1]
        p = 2 if n < 0x80 else 2 + (n & 0x7F)
        head = _id_head(raw, p, q)
        done = head + _DONE
        done = bytes((ber.SEQUENCE, len(done))) + done   # (under 0x80 bytes)
        if not bodies:
            return done
        if len(bodies) == 1:
            return ber.tlv(ber.SEQUENCE, head + bodies[0]) + done
        tlv = ber.tlv
        return b"".join([*[tlv(ber.SEQUENCE, head + b) for b in bodies], done])

    def search_now(self, msg: L.Message, op: L.SearchRequest) -> _Search | None:
        """Begin a search without waiting: its entries up to its first yield to the event
        loop (every :data:`BATCH` entries examined). None when the search is answered
        (its result, or its error, sent) or waits for a store fetch (it then runs again:
        :attr:`_retry`), else the run to go on with after that yield (:meth:`search`).

        On a store whose reads are round trips (PostgreSQL, ``server.storeio``) what
        the search begins with (the base, LOOKUP and the entries it finds) is read
        without waiting: a read the cache misses raises ``cached.StoreWait`` before
        anything is sent, is fetched off the loop, and the search runs again, as
        NETINFO's calls do (up to :data:`MAX_FETCHES` times; then it reads where it
        is). A walk of a snapshot reads as it goes."""
        waiting = self.db.waiting
        try:
            if waiting is not None:
                waiting.no_wait = self._fetches < MAX_FETCHES
            try:
                run = self._open(msg, op)
            finally:
                if waiting is not None:
                    waiting.no_wait = False
            self._fetches = 0
            if run is None:
                return None
            if self._fill is not None and run.state.deps is not None and not run.paged:
                run.fill = self._fill
            if self._step(run):
                return None
            run.fill = None   # it yields: answered in more than one go
            return run
        except StoreWait as miss:
            self._retry = msg
            self._fetches += 1
            self._held = FETCHING
            self.db.fetch(miss, self._fetched)
        except (LdapError, NiError) as e:
            self._fetches = 0
            self._search_failed(msg, e)
        except (ConnectionError, OSError):
            self.abort("connection lost")
        return None

    async def search(self, msg: L.Message, op: L.SearchRequest,
                     run: _Search | None = None) -> None:
        """A search as a task (abandon cancels it): all of it, or what is left of *run*
        begun inline by :meth:`handle`."""
        try:
            await self._search(msg, op, run)
        except (LdapError, NiError) as e:
            self._search_failed(msg, e)
        except asyncio.CancelledError:
            pass   # abandoned: no response (RFC 4511 §4.11)
        except (ConnectionError, OSError):
            self.abort("connection lost")

    def _search_failed(self, msg: L.Message, e: LdapError | NiError) -> None:
        if isinstance(e, LdapError):
            self.send(msg.id, L.Response(L.SEARCH_DONE, e.code, e.matched, e.message))
        else:
            self.send(msg.id, L.Response(L.SEARCH_DONE, RESULT_OF_STATUS.get(
                e.status, L.ResultCode.OTHER), "", str(e)))

    async def _search(self, msg: L.Message, op: L.SearchRequest,
                      run: _Search | None = None) -> None:
        """A search (or what is left of *run*), yielding to the event loop every
        :data:`BATCH` entries examined. :raises LdapError, NiError:"""
        if run is None:
            run = self._open(msg, op)
            if run is None:
                return
        while not self._step(run):
            if not await self._yield(run):
                return

    def _open(self, msg: L.Message, op: L.SearchRequest) -> _Search | None:
        """A search's run: its paged state resumed or its entries begun; None when
        answered already (a paged search abandoned by a size of zero)."""
        page = next((c for c in msg.controls if c.oid == L.OID_PAGED_RESULTS), None)
        size, cookie = 0, b""
        if page is not None:
            try:
                size, cookie = L.decode_paged(page.value)
            except WireError as e:
                raise LdapError(L.ResultCode.PROTOCOL_ERROR, str(e)) from None
        t0 = self.clock()
        limit = min(op.time_limit or MAX_TIME_LIMIT, MAX_TIME_LIMIT)
        if cookie:
            state = self.paged.pop(cookie, None)
            if state is None:
                raise LdapError(L.ResultCode.UNWILLING_TO_PERFORM, "unknown paged cookie")
            if size == 0:   # RFC 2696 §3: a size of zero abandons the paged search
                state.close()
                self.send(msg.id, L.Response(L.SEARCH_DONE, L.ResultCode.SUCCESS),
                          (L.Control(L.OID_PAGED_RESULTS, False, L.encode_paged(0, b"")),))
                return None
            t0 = state.started
        else:
            state = self._begin(op)
        return _Search(msg.id, op, page is not None, size, state, t0, limit,
                       uses_dn_attributes(op.filter))

    async def _yield(self, run: _Search) -> bool:
        """Between two batches of a search: what it holds sent, the peer given time to
        take it, other connections served; False when its time limit is past (then
        answered timeLimitExceeded)."""
        try:
            if run.out:
                self._emit(b"".join(run.out))
                run.out.clear()
            await self.drain()
            await asyncio.sleep(0)
            if self.clock() - run.t0 > run.limit:
                self._flush(run.out)
                self.send(run.msgid, L.Response(L.SEARCH_DONE,
                                                L.ResultCode.TIME_LIMIT_EXCEEDED))
                run.state.close()
                return False
            return True
        except BaseException:
            run.state.close()
            raise

    def _step(self, run: _Search) -> bool:
        """Examine *run*'s entries until it is answered (True) or until the next yield
        is due (False: the entry it stopped at is examined first when it goes on)."""
        op = run.op
        more = False
        try:
            while True:
                item = run.pending
                run.pending = None
                if item is None:
                    item = next(run.state.entries, None)
                    if item is None:
                        break
                    run.examined += 1
                    if run.examined % BATCH == 0:
                        run.pending = item
                        return False
                path, dn, attrs, opattrs, encodings = item
                hidden = self.hidden(path) if path is not None else PRIVATE_ATTRS
                if evaluate(op.filter, attrs, hidden,
                            _safe_parse(dn) if run.needs_dn else ()) is not True:
                    continue
                if op.size_limit and run.sent >= op.size_limit:
                    self._flush(run.out)
                    self.send(run.msgid, L.Response(L.SEARCH_DONE,
                                                    L.ResultCode.SIZE_LIMIT_EXCEEDED))
                    run.state.close()
                    return True
                if encodings is None:
                    run.fill = None
                    body = _entry_body(dn, attrs, op, hidden, opattrs)
                else:   # a kept entry: its encoding for this selection, kept too
                    key = (op.attributes, op.types_only, hidden)
                    body = encodings.get(key) or b""
                    if not body:
                        body = _entry_body(dn, attrs, op, hidden, opattrs)
                        if len(encodings) < MAX_ENCODINGS \
                                and selection_size(op.attributes) <= MAX_KEPT_KEY:
                            encodings[key] = body
                run.out.append(L.message_with(run.msgid, body))
                if run.fill is not None:
                    run.bodies.append(body)
                run.sent += 1
                if run.paged and run.size and run.sent >= run.size:
                    more = True
                    break
        except BaseException:
            run.state.close()
            raise
        state = run.state
        controls: tuple[L.Control, ...] = ()
        if run.paged:
            next_cookie = b""
            if more:
                next_cookie = secrets.token_bytes(8)
                while len(self.paged) >= MAX_PAGED:
                    self.paged.pop(next(iter(self.paged))).close()
                self.paged[next_cookie] = state
            else:
                state.close()
            controls = (L.Control(L.OID_PAGED_RESULTS, False, L.encode_paged(0, next_cookie)),)
        else:
            state.close()
            if run.fill is not None and state.deps is not None and self.server.kept.usable():
                self.server.kept.keep_reply(run.fill, (*run.bodies, _DONE), state.deps)
        # the last entries and the result in one write: one system call, one segment
        run.out.append(L.encode_message(L.Message(run.msgid, L.Response(
            L.SEARCH_DONE, L.ResultCode.SUCCESS), controls)) if controls
            else L.message_with(run.msgid, _DONE))
        self._flush(run.out)
        return True

    def _flush(self, batch: list[bytes]) -> None:
        if batch and not self.closed:
            self._emit(b"".join(batch) if len(batch) > 1 else batch[0])
            batch.clear()

    def _begin(self, op: L.SearchRequest) -> _Paged:
        """The entries in scope: the rootDSE, the schema, a base entry, LOOKUP's
        candidates or a walk of a snapshot."""
        srv = self.server
        now = self.clock()
        base = op.base.strip()
        if base == "" and op.scope == L.Scope.BASE:
            dse = root_dse(srv.base_text, srv.config.tls is not None and not self.tls)
            return _Paged(iter([(None, "", dse, {}, None)]), None, now)
        if "".join(base.lower().split()) == "cn=subschema":
            if op.scope != L.Scope.BASE:
                return _Paged(iter(()), None, now)
            return _Paged(iter([(None, SCHEMA_DN, schema_entry(), {}, None)]), None, now)
        path = srv.path_of(base)
        if path is None:
            raise LdapError(L.ResultCode.NO_SUCH_OBJECT, "not under this server's base",
                            "")
        oid, node = srv.resolve(path)
        if op.scope == L.Scope.BASE:
            return _Paged(iter([srv.entry(path, node)]), None, now)
        scope = op.scope
        owner = srv.owner(path, scope, op.filter)
        if owner is not None:   # only one mapped directory's children can match
            try:
                oid, node = srv.resolve(owner)
            except LdapError:
                return _Paged(iter(()), None, now)
            found = srv.lookup(owner, oid, op.filter)
            if found is not None:
                return _Paged(iter(found[0]), None, now, found[1])
            path, scope = owner, L.Scope.ONE
        view = self.db.snapshot()
        try:
            vnode = view.get(oid)
            if vnode is None:
                raise LdapError(L.ResultCode.NO_SUCH_OBJECT)
            return _Paged(srv.walk(view, oid, vnode, path, scope), view, now)
        except BaseException:
            view.close()
            raise

    # -- writes ------------------------------------------------------------------------------

    def _parent(self, dn: str) -> tuple[tuple[str, ...], int, Node]:
        path = self.server.path_of(dn)
        if path is None or not path:
            raise LdapError(L.ResultCode.UNWILLING_TO_PERFORM, "not an entry of this domain")
        poid, parent = self.server.resolve(path[:-1])
        return path, poid, parent

    def add(self, msg: L.Message) -> None:
        op = msg.op
        assert isinstance(op, L.AddRequest)
        path, poid, parent = self._parent(op.dn)
        try:
            self.server.resolve(path)
        except LdapError:
            pass
        else:
            raise LdapError(L.ResultCode.ENTRY_ALREADY_EXISTS)
        _known(path, [a for a, _ in op.attributes], self.server.base[0][0])
        attrs = [(a, _hash_passwords(a, [v.decode("utf-8", "surrogateescape") for v in vs]))
                 for a, vs in op.attributes]
        props = props_from_attrs(path, attrs)
        self.db.call(Proc.CREATE, self.caller, (NiId(poid, parent.instance), props,
                                                len(parent.children)))
        self._answer(msg, L.ResultCode.SUCCESS)

    def delete(self, msg: L.Message) -> None:
        op = msg.op
        assert isinstance(op, L.DelRequest)
        path, poid, parent = self._parent(op.dn)
        oid, node = self.server.resolve(path)
        if node.children:
            raise LdapError(L.ResultCode.NOT_ALLOWED_ON_NON_LEAF)
        self.db.call(Proc.DESTROY, self.caller, (NiId(poid, parent.instance),
                                                 NiId(oid, node.instance)))
        self._answer(msg, L.ResultCode.SUCCESS)

    def modify(self, msg: L.Message) -> None:
        op = msg.op
        assert isinstance(op, L.ModifyRequest)
        path = self.server.path_of(op.dn)
        if path is None:
            raise LdapError(L.ResultCode.NO_SUCH_OBJECT)
        oid, node = self.server.resolve(path)
        attrs = entry_attrs(path, node.props, self.server.base[0])
        rdn = rdn_attr(path).lower() if path else ""
        _known(path, [a for _, (a, _) in op.changes], self.server.base[0][0])
        for kind, (name, raw) in op.changes:
            key = name.lower()
            values = _hash_passwords(name, [v.decode("utf-8", "surrogateescape")
                                            for v in raw])
            shown, have = attrs.get(key, (name, []))
            if kind == L.ModOp.ADD:
                new = have + [v for v in values if v not in have]
            elif kind == L.ModOp.DELETE:
                if values and not set(values) & set(have):
                    raise LdapError(L.ResultCode.NO_SUCH_ATTRIBUTE, name)
                new = [v for v in have if values and v not in values]
            elif kind == L.ModOp.REPLACE:
                new = values
            else:
                raise LdapError(L.ResultCode.UNWILLING_TO_PERFORM, "increment")
            if key == rdn and path and path[-1] not in new:
                raise LdapError(L.ResultCode.NOT_ALLOWED_ON_RDN)
            if new:
                attrs[key] = (shown, new)
            else:
                attrs.pop(key, None)
        props = props_from_attrs(path, list(attrs.values()), node.props) if path else \
            _root_props(attrs, node.props)
        self.db.call(Proc.WRITE, self.caller, (NiId(oid, node.instance), props))
        self._answer(msg, L.ResultCode.SUCCESS)

    def modrdn(self, msg: L.Message) -> None:
        op = msg.op
        assert isinstance(op, L.ModDNRequest)
        path, _poid, _parent = self._parent(op.dn)
        if op.new_superior is not None:
            sup = self.server.path_of(op.new_superior)
            if sup != path[:-1]:
                raise LdapError(L.ResultCode.UNWILLING_TO_PERFORM,
                                "entries cannot move to another parent")
        try:
            rdn = parse_dn(op.new_rdn)
        except DnError as e:
            raise LdapError(L.ResultCode.INVALID_DN_SYNTAX, str(e)) from None
        if len(rdn) != 1 or rdn[0][0].lower() != rdn_attr(path).lower():
            raise LdapError(L.ResultCode.NAMING_VIOLATION, f"RDN must be {rdn_attr(path)}")
        new_name = rdn[0][1]
        try:
            self.server.resolve(path[:-1] + (new_name,))
        except LdapError:
            pass
        else:
            raise LdapError(L.ResultCode.ENTRY_ALREADY_EXISTS)
        oid, node = self.server.resolve(path)
        props: Proplist = []
        for k, vs in node.props:
            if k == "name":
                rest = [v for v in vs[1:] if v != new_name]
                vs = [new_name] + rest + ([] if op.delete_old else [vs[0]])
            props.append((k, list(vs)))
        self.db.call(Proc.WRITE, self.caller, (NiId(oid, node.instance), props))
        self._answer(msg, L.ResultCode.SUCCESS)


def _entry_body(dn: str, attrs: Attrs, op: L.SearchRequest, hidden: frozenset[str],
                opattrs: Attrs) -> bytes:
    """The SearchResultEntry operation of one entry for search *op*."""
    if not op.types_only:
        return encode_selected(dn, attrs, op.attributes, hidden, opattrs)
    return L.encode_op(L.SearchEntry(dn, select(attrs, op.attributes, True, hidden, opattrs)))


def _names(props: Proplist) -> list[str] | None:
    return next((vs for k, vs in props if k == "name"), None)


def _top_moved(t: Touched) -> bool:
    """Whether a touched directory is one under the root made, gone or renamed (what
    the paths of the door's entries hang on)."""
    b, a = t.before, t.after
    return (b is None or b.parent == 0) and (a is None or a.parent == 0) and (
        b is None or a is None or _names(b.props) != _names(a.props))


def _writes(op: L.Operation) -> bool:
    """Whether a request may write (and so opens the connection's batch)."""
    return isinstance(op, L.AddRequest | L.DelRequest | L.ModifyRequest | L.ModDNRequest) \
        or (isinstance(op, L.ExtendedRequest) and op.name == L.OID_PASSWD_MODIFY)


def _unwritten(msgid: int, op: L.Operation, _reply: bytes) -> bytes:
    """The response of a write whose commit failed (``Batch.add``'s *on_failure*): the
    same operation's result, unavailable."""
    message = "the domain could not be written"
    if isinstance(op, L.ExtendedResponse):
        failed: L.Operation = L.ExtendedResponse(L.ResultCode.UNAVAILABLE, "", message)
    elif isinstance(op, L.Response):
        failed = L.Response(op.op, L.ResultCode.UNAVAILABLE, "", message)
    else:
        failed = op
    return L.encode_message(L.Message(msgid, failed))


def _known(path: tuple[str, ...], names: list[str], base_attr: str) -> None:
    """:raises LdapError: undefinedAttributeType for an attribute the table cannot keep
    (rather than accepting it and dropping it)."""
    unknown = unknown_attrs(path, names, base_attr)
    if unknown:
        raise LdapError(L.ResultCode.UNDEFINED_ATTRIBUTE_TYPE,
                        f"{unknown[0]}: not kept in this entry (use netinfoProperty)")


def _verify(password: str, stored: str) -> bool:
    """Whether *password* matches the crypt string *stored* (run in a bind worker)."""
    return check_password(password, stored)


def _safe_parse(dn: str) -> tuple[tuple[str, str], ...]:
    try:
        return parse_dn(dn)
    except DnError:
        return ()


def _hash_passwords(attr: str, values: list[str]) -> list[str]:
    """userPassword values that are not crypt strings already are hashed here: the domain
    keeps only hashes (as nipasswd writes them)."""
    if attr.lower() != "userpassword":
        return values
    return [v if v[:7].upper() == "{CRYPT}" else "{CRYPT}" + hash_password(v) for v in values]


def _root_props(attrs: Attrs, keep: Proplist) -> Proplist:
    out: dict[str, list[str]] = {}
    for text in attrs.get("netinfoproperty", ("", []))[1]:
        kv = property_from_text(text)
        if kv is not None:
            have = out.setdefault(kv[0], [])
            if kv[1] is not None:   # KEY alone: a property with no values
                have.append(kv[1])
    result: Proplist = [(k, out.pop(k)) for k, _ in keep if k in out]
    result.extend((k, vs) for k, vs in keep if k == "passwd")   # never shown
    result.extend(out.items())
    return result


#: request type → its handler (searches, binds, abandon, unbind and StartTLS are run by
#: handle)
_HANDLERS = {
    L.CompareRequest: Connection.compare,
    L.ExtendedRequest: Connection.extended, L.AddRequest: Connection.add,
    L.DelRequest: Connection.delete, L.ModifyRequest: Connection.modify,
    L.ModDNRequest: Connection.modrdn,
}
#: request type → its response's APPLICATION number
_RESPONSE: dict[type, int] = {
    L.BindRequest: L.BIND_RESPONSE, L.SearchRequest: L.SEARCH_DONE,
    L.ModifyRequest: L.MODIFY_RESPONSE, L.AddRequest: L.ADD_RESPONSE,
    L.DelRequest: L.DEL_RESPONSE, L.ModDNRequest: L.MODDN_RESPONSE,
    L.CompareRequest: L.COMPARE_RESPONSE,
}
#: controls honoured per request type (a critical control not listed: §4.1.11)
_CONTROLS: dict[type, tuple[str, ...]] = {L.SearchRequest: (L.OID_PAGED_RESULTS,)}


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context for StartTLS and LDAPS (TLS 1.2 or later)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(os.fspath(cert), os.fspath(key))
    return ctx


def parse_address(text: str, default_port: int) -> tuple[str, int]:
    """``ADDR:PORT``, ``ADDR``, ``:PORT`` or ``[V6]:PORT`` → (host, port); host defaults
    to 127.0.0.1 (loopback by default, like every listener here)."""
    host, port = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        number = int(port) if port else default_port
    except ValueError:
        raise ValueError(f"bad port in {text!r}") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"bad port in {text!r}")
    return host or "127.0.0.1", number


__all__ = ["BIND_WORKERS", "IDLE_TIMEOUT", "LdapConfig", "LdapError", "LdapServer",
           "MAX_OPS_PER_CONN", "start_ldap", "MAX_PAGED", "MAX_TIME_LIMIT", "default_base",
           "parse_address", "tls_context"]


async def start_ldap(db: Database, tag: str, plain: str | None, ldaps: str | None,
                     cert: str | None, key: str | None,
                     base: str | None, quick: bool = True,
                     resident_bytes: int = RESIDENT_BYTES) -> tuple[LdapServer, list[str]]:
    """netinfod's ``--ldap``/``--ldaps``: the front door listening, and one line per
    listener (``ldap://HOST:PORT/BASE``) for the start-up message.

    *quick*: the short path of equality searches (False: ``--no-fast-path``);
    *resident_bytes*: the users' entries held in memory at most (``--ldap-resident-mb``).

    :raises ValueError: a bad address, base or option combination; OSError, ssl.SSLError:
        cannot listen, or the certificate does not load.
    """
    if (cert is None) != (key is None):
        raise ValueError("--ldap-cert and --ldap-key go together")
    if ldaps is not None and cert is None:
        raise ValueError("--ldaps needs --ldap-cert and --ldap-key")
    try:
        parse_dn(base or "")
    except DnError as e:
        raise ValueError(f"bad --ldap-base: {e}") from None
    ctx = tls_context(cert, key) if cert is not None and key is not None else None
    srv = LdapServer(db, LdapConfig(base or default_base(tag), ctx, quick=quick,
                                    resident_bytes=resident_bytes))
    lines = []
    try:
        for text, secure in ((plain, False), (ldaps, True)):
            if text is None:
                continue
            host, port = parse_address(text, 636 if secure else 389)
            bound = await srv.listen(host, port, secure)
            shown = f"[{host}]" if ":" in host else host
            lines.append(f"{'ldaps' if secure else 'ldap'}://{shown}:{bound}/{srv.base_text}"
                         + (" (StartTLS)" if ctx is not None and not secure else ""))
    except BaseException:
        await srv.close()
        raise
    return srv, lines
