"""The NIS front door (issue 21): YP v2 (program 100004) answered from a NetInfo domain.

Maps are computed live from the domain's directories (``nismaps.MAPS``), never copied to
files: a MATCH finds its directory through LOOKUP (the service's index) and renders the
line, so a write through NetInfo is seen by the next MATCH. What is kept is dropped by the
write records (``Database.subscribe``; a change's touched directories and their parents
say which maps): the sorted keys that FIRST and NEXT walk, and the maps made from several
directories (netgroup, netid.byname, the automounter's). ORDER is the domain's change
sequence number (``Change.seq``), so it moves with every write. ALL is streamed from a
snapshot of the domain (``database.SnapshotStream``, as READALL): writes go on meanwhile.

Access: ``trusted_networks`` of the domain acts as YP's securenets (a call from
elsewhere gets no answer, spec §10.5); DOMAIN answers TRUE only for the NIS domains
configured (DOMAIN_NONACK does not answer the others); ``shadow.byname`` is answered
only to a reserved source port, as ypserv does. XFR and CLEAR are answered as by a server
that pushes no maps.

Keys are exact bytes, as ypserv 4.2's (measured against it: ``Alice`` and ``alice\\0`` do
not find ``alice``; NEXT after a key the map does not hold answers NOMORE).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import struct
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

from ..errors import DamagedDirectory, NiError, WireError
from ..model import NiId, Proplist, first_values
from ..storage.changes import Caller, Change
from ..storage.nodes import Node, NodeSource
from ..wire import rpc, yp
from ..wire.proplist import StoredProplist, decode_proplist, stored_first_props
from ..wire.protocol import Proc
from ..wire.xdr import decode_str, encode_str
from ..wire.yp import YpProc, YpStat
from .admission import Doorkeeper
from .database import Database, SnapshotStream
from .nis_hierarchy import Ancestors
from .nismaps import AUTO_DIRECTORY, AUTO_PREFIX, MAPS, WHOLE_MAPS, MapSpec, automounts
from .nisresident import ResidentMap, entry_bytes
from .residents import Residents

log = logging.getLogger("netinfo.nis")

#: ALL sends this many entries per piece of the stream.
ALL_BATCH = 64
#: MATCH answers kept, by their arguments as sent (dropped by every write, and all at
#: once when this many are held, or when their bytes pass HOT_BYTES): the NETINFO reply
#: table's bounds (fastpath.MAX_ENTRIES; its MAX_BYTES halved, as a MATCH's arguments and
#: line are each at most YPMAXRECORD, 1,024 bytes, and most are under 100).
HOT_MAX = 100_000
HOT_BYTES = 16 << 20
#: What a kept answer costs beyond its bytes (dict slot, two bytes objects' headers):
#: fastpath.ENTRY_OVERHEAD's measurement, less the per-directory index kept there.
HOT_OVERHEAD = 250
#: MATCHes of a map answered from the domain (the kept answers missed) after which the
#: door reads the map whole into memory (``nisresident``): a handful of logins reads
#: nothing, a busy map is read at once.
RESIDENT_AFTER = 256
#: Bytes of resident maps one door holds at most unless told (``netinfod
#: --nis-resident-mb``): passwd.byname of 1,000,000 users is about 100 MiB, so one map
#: of that size and the small ones.
RESIDENT_BYTES = 160 << 20
#: A map dropped (too changed, its read failed or passed the budget) is read again only
#: after this many times the duration of its last read (and RESIDENT_AFTER misses).
RESIDENT_COOLDOWN = 10
#: Seconds of one turn of reading a map on the event loop (netinfod.STREAM_TURN's, the
#: turns a streamed reply takes): the other connections are answered between turns.
RESIDENT_TURN = 0.002
#: Entries per piece read from the snapshot (a turn ends after the piece that passes
#: RESIDENT_TURN: about 0.5 ms of reading a piece here).
RESIDENT_BATCH = 32
#: (NIS domain, map) pairs as sent whose MATCHes go straight to their resident map
#: (``NisDoor._prefixes``); past it they are forgotten (and checked again).
MAX_PREFIXES = 64
#: The 36 bytes after the xid of a YP v2 MATCH with AUTH_NONE credential and verifier
#: (RFC 5531 §9: msg_type, rpcvers, prog, vers, proc, cred and verf flavor and length):
#: what every NIS client sends (glibc's nss_nis, yp-tools), answered before the prologue.
MATCH_HEAD = struct.pack(">9I", rpc.CALL, rpc.RPC_VERSION, yp.YPPROG, yp.YPVERS,
                         YpProc.MATCH, 0, 0, 0, 0)
#: The accepted-success reply header after the xid (as fastpath's)
_ACCEPTED = rpc.reply_success(0)[4:]
_U32 = struct.Struct(">I")
#: A lane's reply before its body: the record mark, the xid, the accepted-success header
_REPLY_HEAD = struct.Struct(f">I4s{len(_ACCEPTED)}s")
#: a MATCH that the short path leaves to the general one
_GENERAL = object()
#: who the door's own reads are made as (reads ignore the caller, spec §4.2)
_NOBODY = Caller()
#: A result body, a streamed one (ALL), or no reply at all.
Reply = bytes | Iterator[bytes] | None


def _enc(s: str) -> bytes:
    return encode_str(s)


#: map → the UTF-8 names of the properties its lines read (MapSpec.reads)
_READS = {m.name: frozenset(map(_enc, m.reads)) for m in MAPS.values() if m.reads is not None}


class NisDoor:
    """YP v2 for one domain's :class:`Database`, serving the NIS domains *domains*.

    :meth:`handle` answers one call's arguments with its result body (bytes), a stream
    of pieces (ALL over TCP) or None (no reply). *is_local* says whether an address is
    this host's (trusted_networks always admits those)."""

    def __init__(self, db: Database, domains: Iterable[str],
                 is_local: Callable[[str], bool] = lambda _a: False,
                 master: str = "", short: bool = True,
                 resident_bytes: int = RESIDENT_BYTES) -> None:
        self.db = db
        #: the short path (issue 20): MATCH answers kept and taken before the prologue
        #: (:meth:`fast`), a line rendered from the stored bytes of the directory found;
        #: False (netinfod --no-fast-path) computes every MATCH the general way
        self.short = short
        self.domains = frozenset(domains)
        self.is_local = is_local
        #: MASTER's answer: this server's host name
        self.master = master or db.info.hostname or "localhost"
        self.order = db.last_seq
        #: root directory name → its number (dropped when the root's children change)
        self._dirs: dict[str, int | None] = {}
        #: map → its keys sorted (FIRST, NEXT), made on first use
        self._sorted: dict[str, list[bytes]] = {}
        #: map made from several directories → its entries
        self._whole: dict[str, dict[bytes, bytes]] = {}
        #: MATCH's arguments as sent → its result body (never a secure map's); any
        #: write empties it, as it does the securenets answers by address
        self._hot: dict[bytes, bytes] = {}
        #: which answers are kept: those asked twice within the last HOT_MAX misses
        self._door = Doorkeeper(HOT_MAX)
        self._hot_bytes = 0
        #: Database.read_state when _hot was filled (a change no record tells empties it)
        self._hot_state = db.read_state()
        self._admitted: dict[str, bool] = {}
        self._hot_generation = 0
        #: maps read whole into memory (``nisresident``; only with the short path), at
        #: most this many bytes of them (0: none)
        self.resident_bytes = resident_bytes if short else 0
        #: a MATCH's domain and map as sent (XDR) → their resident map, for those
        #: checked already (never a secure map): read without decoding (_held)
        self._prefixes: dict[bytes, ResidentMap] = {}
        self._resident = Residents(db, self.resident_bytes, "NIS", after=RESIDENT_AFTER,
                                   cooldown=RESIDENT_COOLDOWN, turn=RESIDENT_TURN,
                                   on_drop=lambda _name: self._prefixes.clear(),
                                   on_read=self._map_read)
        self._unsubscribe = db.subscribe(self._changed)
        #: the ancestors' maps (--nis-hierarchy; nis_hierarchy.Ancestors), or None
        self.ancestors: Ancestors | None = None
        #: the task refreshing them (its owner cancels it)
        self.ancestors_task: asyncio.Future[None] | None = None
        self._procs: dict[int, Callable[[bytes, Caller, bool], Reply]] = {
            YpProc.NULL: self._null, YpProc.DOMAIN: self._domain,
            YpProc.DOMAIN_NONACK: self._domain_nonack, YpProc.MATCH: self._match,
            YpProc.FIRST: self._first, YpProc.NEXT: self._next, YpProc.XFR: self._xfr,
            YpProc.CLEAR: self._null, YpProc.ALL: self._all, YpProc.MASTER: self._master,
            YpProc.ORDER: self._order, YpProc.MAPLIST: self._maplist,
        }

    def close(self) -> None:
        self._unsubscribe()
        self._resident.drop()

    # -- the write records drop what is kept ---------------------------------------------

    def _changed(self, changes: list[Change]) -> None:
        self.order = changes[-1].seq or self.order + 1
        self._hot.clear()
        self._hot_bytes = 0
        self._admitted.clear()
        ids = {v: k for k, v in self._dirs.items() if v is not None}
        if self._resident:
            self._forget_resident(changes, ids)
        hit: set[str] = set()
        for change in changes:
            if change.proc is None:        # a whole new tree
                self._forget_all()
                return
            for t in change.touched:
                states = [st for st in (t.before, t.after) if st is not None]
                parents = {st.parent for st in states}
                if t.id == 0 or (0 in parents and len(states) == 2 and
                                 first_values(states[0].props, "name") !=
                                 first_values(states[1].props, "name")):
                    # the root's children, or one's name, changed: which is /users?
                    self._forget_all()
                    return
                if t.id in ids:
                    hit.add(ids[t.id])
                hit.update(ids[p] for p in parents if p in ids)
        if not hit:
            return
        for name in list(self._sorted):
            if self._sources(name.split("@", 1)[0]) & hit:
                del self._sorted[name]
        for name in list(self._whole):
            if self._sources(name.split("@", 1)[0].lstrip("\0")) & hit:
                del self._whole[name]

    def forget(self) -> None:
        """Drop everything kept (a read worker heard that the owner wrote:
        ``readworkers``)."""
        self._hot.clear()
        self._admitted.clear()
        self._forget_all()

    def _forget_all(self) -> None:
        self._dirs.clear()
        self._sorted.clear()
        self._whole.clear()
        self._resident.drop()

    def _forget_resident(self, changes: list[Change], ids: dict[int, str]) -> None:
        """The keys of the resident maps' entries of every directory the changes touched
        (before and after) are answered the usual way from now on; a map with too many
        such keys is dropped (and read again later)."""
        for change in changes:
            for t in change.touched:
                for st in (t.before, t.after):
                    where = ids.get(st.parent) if st is not None else None
                    if where is None or st is None:
                        continue
                    for name in list(self._resident.maps):
                        spec = MAPS[name]
                        if spec.directory == where:
                            self._resident.forget(
                                name, (_enc(k) for k, _ in spec.entries(st.props)))
        self._resident.settle()

    def _resident_body(self, name: str, key: bytes, state: int | None) -> bytes | None:
        """MATCH's result body for *key* from resident map *name*, or None: ask the
        domain (and count it: past RESIDENT_AFTER the map is read)."""
        if state is None:
            return None               # writes pending: the domain answers
        kept = self._resident.get(name, state)
        if kept is not None:
            return kept.body(key)
        spec = MAPS[name]
        if spec.probe is not None and self._dir(spec.directory) is not None:
            self._resident.missed(name, state, partial(self._read_map, spec))
        return None

    @staticmethod
    def _read_map(spec: MapSpec, view: NodeSource, kept: ResidentMap) -> Iterator[bytes]:
        """Map *spec*'s entries in *view*, as pieces for a resident map."""
        node = _map_directory(view, spec)
        if node is None:
            return
        kept.reserve(len(node.children))
        batch: list[bytes] = []
        for k, v in _own_entries(view, node, spec):
            batch.append(entry_bytes(k, yp.encode_val(YpStat.TRUE, v)))
            if len(batch) >= RESIDENT_BATCH:
                yield b"".join(batch)
                batch = []
        yield b"".join(batch)

    @staticmethod
    def _sources(name: str) -> set[str]:
        spec = MAPS.get(name)
        if spec is not None:
            return {spec.directory}
        whole = WHOLE_MAPS.get(name)
        if whole is not None:
            return set(whole[1])
        return {AUTO_DIRECTORY}

    # -- reading the live domain ---------------------------------------------------------

    @property
    def _source(self) -> NodeSource:
        return self.db.source

    def _lookup(self, parent: int, prop: str, value: str) -> list[int]:
        try:
            found, _ = self.db.call(Proc.LOOKUP, Caller(), (NiId(parent, 0), prop, value))
        except NiError:
            return []
        return list(found)

    def _dir(self, name: str) -> int | None:
        if name not in self._dirs:
            found = self._lookup(0, "name", name)
            self._dirs[name] = found[0] if found else None
        return self._dirs[name]

    def _children(self, name: str) -> Iterator[Proplist]:
        oid = self._dir(name)
        if oid is None:
            return
        src = self._source
        node = src.get(oid)
        if node is None:
            return
        for _, child in src.children_of(node):
            yield child.props

    # -- maps ------------------------------------------------------------------------------

    def _known(self, name: str) -> bool:
        """Is *name* a map of this domain? (Its directory exists.)"""
        spec = MAPS.get(name)
        if spec is not None:
            return self._dir(spec.directory) is not None or (
                self.ancestors is not None and self.ancestors.has(name))
        whole = WHOLE_MAPS.get(name)
        if whole is not None:
            return self._dir(whole[1][0]) is not None
        return name.startswith(AUTO_PREFIX) and name in self._autos()

    def _autos(self) -> dict[str, dict[bytes, bytes]]:
        """Every automounter map but auto.master (kept as one entry of ``_whole``)."""
        key = AUTO_PREFIX
        if key not in self._whole:
            maps: dict[str, dict[bytes, bytes]] = {}
            for name, k, line in automounts(self._children):
                _add(maps.setdefault(name, {}), k, line)
            self._whole[key] = {_enc(n): b"" for n in maps}
            for n, entries in maps.items():
                self._whole["\0" + n] = entries
        return {n: self._whole["\0" + n] for n in map(decode_str, self._whole[key])
                if "\0" + n in self._whole}

    def _whole_map(self, name: str, domain: str) -> dict[bytes, bytes]:
        """The entries of a map made from several directories (or an automounter map)."""
        if name in WHOLE_MAPS:
            cache = f"{name}@{domain}"
            if cache not in self._whole:
                make, _ = WHOLE_MAPS[name]
                entries: dict[bytes, bytes] = {}
                for k, line in make(self._children, domain):
                    _add(entries, k, line)
                self._whole[cache] = entries
            return self._whole[cache]
        return self._autos().get(name, {})

    def _value(self, domain: str, name: str, key: bytes) -> bytes | None:
        """The line of *key*: the domain's own, else (--nis-hierarchy) the nearest
        ancestor's."""
        spec = MAPS.get(name)
        if spec is None:
            return self._whole_map(name, domain).get(key)
        own = self._own_value(spec, key)
        if own is None and self.ancestors is not None:
            return self.ancestors.get(name, key)
        return own

    def _own_value(self, spec: MapSpec, key: bytes) -> bytes | None:
        if spec.probe is None:
            return self._kept(spec).get(key)
        text = decode_str(key)
        probe = spec.probe(text)
        oid = self._dir(spec.directory)
        if probe is None or oid is None:
            return None
        if self.short:
            first = self._first_value(spec, oid, probe, text)
            if first is not _GENERAL:
                assert first is None or isinstance(first, bytes)
                return first
        src = self._source
        for child in self._lookup(oid, *probe):
            node = src.get(child)
            if node is None:
                continue
            for k, line in spec.entries(node.props):
                if k == text:
                    value = _enc(line)
                    if yp.fits(value):
                        return value
        return None

    def _first_value(self, spec: MapSpec, oid: int, probe: tuple[str, str],
                     text: str) -> bytes | object | None:
        """The line of *text* when the first child that *probe* finds (LOOKUPREAD: one
        index query with the child's stored row, nothing decoded or cached) holds it —
        the general loop's first answer — read from the stored bytes (only the
        properties the map's lines read); :data:`_GENERAL` when that child does not
        hold it or cannot be read (the general loop then decides, and reports)."""
        props: Any   # a Proplist, or a StoredProplist that reads as one
        try:
            # the one child's stored bytes as the resident index names it (no NETINFO
            # call around it: issue 21's profile), else LOOKUPREAD itself
            blob = None if self.db.is_watched(Proc.LOOKUPREAD) else \
                self._source.stored_first(oid, probe[0], encode_str(probe[1]))
            if blob is not None:
                props = StoredProplist(blob)
            else:
                _, props = self.db.call(Proc.LOOKUPREAD, _NOBODY, (NiId(oid, 0), *probe))
        except NiError:
            return None          # no child matches (or the directory went): no line
        except DamagedDirectory:
            return _GENERAL
        reads = _READS.get(spec.name)
        if reads is not None and type(props) is StoredProplist:
            try:
                props = stored_first_props(props.wire, reads)
            except WireError:
                return _GENERAL
        for k, line in spec.entries(props):
            if k == text:
                value = _enc(line)
                if yp.fits(value):
                    return value
        return _GENERAL

    def _kept(self, spec: MapSpec) -> dict[bytes, bytes]:
        """A one-directory map kept whole (no probe: its keys are not stored values)."""
        entries = self._whole.get(spec.name)
        if entries is None:
            entries = {}
            for props in self._children(spec.directory):
                for k, line in spec.entries(props):
                    _add(entries, k, line)
            self._whole[spec.name] = entries
        return entries

    def _keys(self, domain: str, name: str) -> list[bytes]:
        generation = self.ancestors.generation if self.ancestors is not None else 0
        cache = f"{name}@{domain}#{generation}"
        keys = self._sorted.get(cache)
        if keys is None:
            spec = MAPS.get(name)
            if spec is None:
                keys = sorted(self._whole_map(name, domain))
            else:
                entries: dict[bytes, bytes] = {}
                for props in self._children(spec.directory):
                    for k, line in spec.entries(props):
                        _add(entries, k, line)
                if self.ancestors is not None:
                    entries.update(dict.fromkeys(self.ancestors.keys(name), b""))
                keys = sorted(entries)
            self._sorted[cache] = keys
        return keys

    # -- procedures ------------------------------------------------------------------------

    def handle(self, proc: int, args: bytes, caller: Caller, udp: bool) -> Reply:
        """The result body of YP procedure *proc* for *caller* (None: no reply).

        :raises WireError: the arguments do not decode (GARBAGE_ARGS).
        :raises KeyError: no such procedure (the dispatcher answers PROC_UNAVAIL first).
        """
        fn = self._procs[proc]
        admitted = self._admitted.get(caller.addr)
        if admitted is None:
            if len(self._admitted) >= HOT_MAX:
                self._admitted.clear()
            admitted = self._admitted[caller.addr] = self.db.admits_tcp(
                caller.addr, self.is_local(caller.addr))
        if not admitted:
            return None   # securenets: trusted_networks (spec §10.5)
        return fn(args, caller, udp)

    def _null(self, args: bytes, caller: Caller, udp: bool) -> Reply:
        if args:
            raise WireError("arguments to a void procedure")
        return b""

    def _domain(self, args: bytes, caller: Caller, udp: bool) -> Reply:
        return yp.encode_bool(yp.decode_domain(args) in self.domains)

    def _domain_nonack(self, args: bytes, caller: Caller, udp: bool) -> Reply:
        return yp.encode_bool(True) if yp.decode_domain(args) in self.domains else None

    def _check(self, domain: str, name: str, caller: Caller) -> YpStat | None:
        """The failure of a call on map *name* of *domain*, or None."""
        if domain not in self.domains:
            return YpStat.NODOM
        if not self._known(name):
            return YpStat.NOMAP
        spec = MAPS.get(name)
        if spec is not None and spec.secure and not caller.port < 1024:
            return YpStat.NOMAP    # as ypserv 4.2 answers it an unprivileged port (measured)
        return None

    def fast(self, record: bytes, caller: Caller) -> bytes | None:
        """The short path of the YP row (``Program.fast``, TCP records only): a MATCH
        with the plain header (:data:`MATCH_HEAD`) answered as :meth:`handle` answers it
        — kept answers first — with no prologue; None for any other record, and for a
        MATCH that gets no reply or whose arguments do not decode (the normal path then
        answers, GARBAGE_ARGS or not)."""
        if record[4:40] != MATCH_HEAD:
            return None
        try:
            body = self.handle(YpProc.MATCH, record[40:], caller, False)
        except Exception:
            return None     # the normal path answers it and reports any failure
        if body is None or not isinstance(body, bytes):
            return None
        return record[:4] + _ACCEPTED + body

    def lane(self, data: bytes, caller: Caller) -> bytes | None:
        """A plain MATCH's reply given at once (``Program.lane``: *data* and the reply
        with their record marks): for a caller admitted before, what :meth:`_match`
        answers first (a kept answer, or the resident map's), without the calls of
        :meth:`handle`; else, where reads never wait for a round trip
        (``Database.waiting`` None), :meth:`fast`'s. None: the usual way."""
        if not data.startswith(MATCH_HEAD, 8):
            return None
        if self._admitted.get(caller.addr):   # (trusted_networks: handle's check)
            state = self._hot_now()
            body = None if state is None else self._held(data[44:], state)
            if body is not None:
                return _REPLY_HEAD.pack(rpc.LAST_FRAGMENT | 24 + len(body), data[4:8],
                                        _ACCEPTED) + body
        if self.db.waiting is not None:
            return None
        reply = self.fast(data[4:], caller)
        return None if reply is None else rpc.frame(reply)

    def _hot_now(self) -> int | None:
        """The state the kept MATCH answers may be used and filled at (their table
        emptied first when the tree or the ancestors moved without a write record: a
        copy adopted); None while writes are pending, or without the short path."""
        if self.ancestors is not None and self.ancestors.generation != self._hot_generation:
            self._hot.clear()
            self._hot_bytes = 0
            self._hot_generation = self.ancestors.generation
        state = self.db.read_state() if self.short else None
        if state is not None and state != self._hot_state:
            self._hot.clear()
            self._hot_bytes = 0
            self._hot_state = state
        return state

    def _map_read(self, kept: ResidentMap) -> None:
        """A map read whole: past HOT_MAX entries (its answers never kept), the answers
        kept until then, mostly its own, are let go. They answer nothing the map does
        not, and a table of up to HOT_MAX of them asked first at every MATCH is a cache
        miss a call (issue 21)."""
        if kept.entries > HOT_MAX:
            self._hot.clear()
            self._hot_bytes = 0

    def _held(self, args: bytes, state: int) -> bytes | None:
        """MATCH's result body for *args* (``ypreq_key``) kept, or held in a resident
        map read at *state*; None: computed.

        A resident map is asked when the domain and map *args* begin with, as sent, were
        checked before and name it (``_prefixes``: a well-formed domain and map, so
        *args* beginning with one is parsed as that one), without decoding them; the
        rest is the key as an XDR string, or the map holds no such key. Its answer is
        kept among the answers (``_keep``) only when the whole map would fit there: a
        million keys asked at random would only churn that table (issue 21's
        profile)."""
        body = self._hot.get(args)
        if body is None:
            for prefix in self._prefixes:
                if args.startswith(prefix):
                    kept = self._prefixes[prefix]
                    if kept.state != state:
                        return None
                    body = kept.answer(args[len(prefix):])
                    if body is not None and kept.entries <= HOT_MAX:
                        self._keep(args, body, state)
                    return body
        return body

    def _match(self, args: bytes, caller: Caller, udp: bool) -> Reply:
        state = self._hot_now()
        if state is not None:
            held = self._held(args, state)
            if held is not None:
                return held
        split = _split_key(args) if self.short else None
        req = split or yp.decode_key(args)
        bad = self._check(req.domain, req.map, caller)
        spec = MAPS.get(req.map)
        if bad is not None:
            body = yp.encode_val(bad)
        else:
            kept = self._resident_body(req.map, req.key, state) \
                if self.resident_bytes and spec is not None else None
            if kept is not None:
                body = kept
                if split is not None and spec is not None and not spec.secure:
                    # the next MATCHes of this domain and map (plainly well formed, so
                    # what is before the key is exactly them): _held
                    kl = len(split.key)
                    if len(self._prefixes) >= MAX_PREFIXES:
                        self._prefixes.clear()
                    self._prefixes[args[:len(args) - 4 - kl - (-kl & 3)]] = \
                        self._resident.maps[req.map]
            else:
                value = self._value(req.domain, req.map, req.key)
                body = yp.encode_val(YpStat.NOKEY) if value is None else \
                    yp.encode_val(YpStat.TRUE, value)
        # kept unless a secure map's (its answer depends on the port), or read while
        # writes are pending (the answer sees them, and they may be rolled back)
        if state is not None and (spec is None or not spec.secure):
            self._keep(args, body, state)
        return body

    def _keep(self, args: bytes, body: bytes, state: int) -> None:
        """Keep *body* as the answer to *args* (computed at *state*) if no write began
        meanwhile and it was asked once before lately (the doorkeeper: issue 20)."""
        if self.db.read_state() == state and self._door.admit(args):
            size = len(args) + len(body) + HOT_OVERHEAD
            if len(self._hot) >= HOT_MAX or self._hot_bytes + size > HOT_BYTES:
                self._hot.clear()
                self._hot_bytes = 0
            self._hot[args] = body
            self._hot_bytes += size

    def _walk(self, domain: str, name: str, start: int) -> bytes:
        """FIRST / NEXT: the first entry at or after position *start* of the sorted keys
        whose line can still be read (a key may have gone since the keys were sorted)."""
        keys = self._keys(domain, name)
        for key in keys[start:]:
            value = self._value(domain, name, key)
            if value is not None:
                return yp.encode_key_val(YpStat.TRUE, key, value)
        return yp.encode_key_val(YpStat.NOMORE)

    def _first(self, args: bytes, caller: Caller, udp: bool) -> Reply:
        req = yp.decode_nokey(args, trailing_key=True)
        bad = self._check(req.domain, req.map, caller)
        if bad is not None:
            return yp.encode_key_val(bad)
        return self._walk(req.domain, req.map, 0)

    def _next(self, args: bytes, caller: Caller, udp: bool) -> Reply:
        """The entry after *key* in the map's order. After a key the map does not hold
        (deleted since the walk began), NOMORE: what ypserv 4.2 answers (measured: its
        database finds no successor of a missing key), so a client's walk ends there."""
        req = yp.decode_key(args)
        bad = self._check(req.domain, req.map, caller)
        if bad is not None:
            return yp.encode_key_val(bad)
        if self._value(req.domain, req.map, req.key) is None:
            return yp.encode_key_val(YpStat.NOMORE)
        keys = self._keys(req.domain, req.map)
        return self._walk(req.domain, req.map, bisect.bisect_right(keys, req.key))

    def _xfr(self, args: bytes, caller: Caller, udp: bool) -> Reply:
        req = yp.decode_xfr(args)
        return yp.encode_xfr_result(req.transid, yp.YpXfrStat.REFUSED)

    def _master(self, args: bytes, caller: Caller, udp: bool) -> Reply:
        req = yp.decode_nokey(args)
        bad = self._check(req.domain, req.map, caller)
        if bad is not None:
            return yp.encode_master(bad)
        return yp.encode_master(YpStat.TRUE, self.master[:yp.YPMAXPEER])

    def _order(self, args: bytes, caller: Caller, udp: bool) -> Reply:
        req = yp.decode_nokey(args)
        bad = self._check(req.domain, req.map, caller)
        if bad is not None:
            return yp.encode_order(bad)
        moved = self.ancestors.generation if self.ancestors is not None else 0
        return yp.encode_order(YpStat.TRUE, self.order + moved)

    def _maplist(self, args: bytes, caller: Caller, udp: bool) -> Reply:
        domain = yp.decode_domain(args)
        if domain not in self.domains:
            return yp.encode_maplist(YpStat.NODOM)
        names = [n for n in (*MAPS, *WHOLE_MAPS) if self._known(n)]
        names += sorted(self._autos())
        return yp.encode_maplist(YpStat.TRUE, names)

    def _all(self, args: bytes, caller: Caller, udp: bool) -> Reply:
        req = yp.decode_nokey(args)
        bad = self._check(req.domain, req.map, caller)
        if bad is None and udp:
            bad = YpStat.YPERR     # a stream: over TCP only
        if bad is not None:
            return yp.encode_all_entry(bad) + yp.ALL_END
        spec = MAPS.get(req.map)
        if spec is None:   # a map kept whole: sent from what is kept
            entries = self._whole_map(req.map, req.domain)
            return iter(_all_pieces(list(entries.items())))
        busy = self.db.stream_room(caller.addr, caller.port < 1024)
        if busy is not None:
            return yp.encode_all_entry(YpStat.YPERR) + yp.ALL_END
        extra = None
        if self.ancestors is not None:
            ancestors = self.ancestors

            def extra() -> Iterator[tuple[bytes, bytes]]:
                # the ancestors' entries of keys the domain does not define (now)
                for k, v in ancestors.entries(spec.name):
                    if self._own_value(spec, k) is None:
                        yield k, v
        return SnapshotStream(self.db, caller.addr,
                              lambda view: _all_from(view, spec, extra))


def _split_key(args: bytes) -> yp.ReqKey | None:
    """A ``ypreq_key`` as :func:`yp.decode_key` decodes it, read with precompiled
    structs; None when it is not plainly well formed (``decode_key`` then says why)."""
    n = len(args)
    if n < 12:
        return None
    u32 = _U32.unpack_from
    dl = u32(args, 0)[0]
    p = 4 + dl + (-dl & 3)
    if dl > yp.YPMAXDOMAIN or p + 4 > n:
        return None
    ml = u32(args, p)[0]
    q = p + 4 + ml + (-ml & 3)
    if ml > yp.YPMAXMAP or q + 4 > n:
        return None
    kl = u32(args, q)[0]
    if kl > yp.YPMAXRECORD or q + 4 + kl + (-kl & 3) != n:
        return None
    return yp.ReqKey(args[4:4 + dl].decode("utf-8", "surrogateescape"),
                     args[p + 4:p + 4 + ml].decode("utf-8", "surrogateescape"),
                     args[q + 4:q + 4 + kl])


def _add(entries: dict[bytes, bytes], key: str, line: str) -> None:
    """Keep the first line of *key* (as makedbm keeps the first of duplicate keys), when
    both fit YP's records."""
    k, v = _enc(key), _enc(line)
    if k not in entries and yp.fits(k) and yp.fits(v):
        entries[k] = v


def _all_pieces(entries: Iterable[tuple[bytes, bytes]]) -> Iterator[bytes]:
    batch: list[bytes] = []
    for k, v in entries:
        batch.append(yp.encode_all_entry(YpStat.TRUE, k, v))
        if len(batch) >= ALL_BATCH:
            yield b"".join(batch)
            batch = []
    batch.append(yp.encode_all_entry(YpStat.NOMORE) + yp.ALL_END)
    yield b"".join(batch)


def _map_directory(view: NodeSource, spec: MapSpec) -> Node | None:
    """The root directory *spec*'s map is made from, in *view* (None: there is none)."""
    root = view.get(0)
    if root is None:
        return None
    for _, node in view.children_of(root):
        if (first_values(node.props, "name") or [""])[0] == spec.directory:
            return node
    return None


def _own_entries(view: NodeSource, node: Node, spec: MapSpec
                 ) -> Iterator[tuple[bytes, bytes]]:
    """The (key, line) entries of *spec*'s map that fit YP's records, from the children
    of *node* in *view*, in child order (a key two children share comes twice): read
    from their stored bytes (checked), only the properties the lines read decoded.

    :raises DamagedDirectory: a child's stored bytes do not decode."""
    reads = _READS.get(spec.name)
    for wire in view.listall_wire(node):
        props = decode_proplist(wire) if reads is None else stored_first_props(wire, reads)
        for key, line in spec.entries(props):
            k, v = _enc(key), _enc(line)
            if yp.fits(k) and yp.fits(v):
                yield k, v


def _all_from(view: NodeSource, spec: MapSpec,
              extra: Callable[[], Iterator[tuple[bytes, bytes]]] | None = None
              ) -> Iterator[bytes]:
    """ALL of *spec* read from a snapshot *view*: one directory's children, in order, in
    memory bounded by a batch (a key two children share is sent twice: nothing is
    remembered across the stream)."""
    def entries() -> Iterator[tuple[bytes, bytes]]:
        node = _map_directory(view, spec)
        if node is not None:
            yield from _own_entries(view, node, spec)
        if extra is not None:
            yield from extra()
    return _all_pieces(entries())


__all__ = ["NisDoor"]


# -- the portmapper's registration ---------------------------------------------------------------

async def register(udp_port: int, tcp_port: int) -> bool:
    """Register YP v2 on UDP and TCP with the portmapper ``NETINFO_PORTMAPPER`` names
    (the system rpcbind by default). The portmapper holds one YP registration per host:
    an earlier one (another netinfod's, a ypserv's) is replaced, UNSET then SET.
    False when no portmapper answered or it refused."""
    from ..client.binding import pmap_getport, pmap_set, pmap_unset  # noqa: PLC0415
    from ..errors import RpcError, Timeout  # noqa: PLC0415
    from ..wire.portmap import IPPROTO_TCP, IPPROTO_UDP  # noqa: PLC0415
    try:
        held = await pmap_getport(None, yp.YPPROG, yp.YPVERS, IPPROTO_UDP, timeout=1.5)
        if held and held != udp_port:
            log.warning("YP was registered at port %d: replaced by this netinfod's", held)
        await pmap_unset(yp.YPPROG, yp.YPVERS, timeout=1.5)
        ok = await pmap_set(yp.YPPROG, yp.YPVERS, IPPROTO_UDP, udp_port, timeout=1.5)
        ok = await pmap_set(yp.YPPROG, yp.YPVERS, IPPROTO_TCP, tcp_port, timeout=1.5) and ok
    except (Timeout, RpcError, WireError, OSError) as e:
        log.warning("NIS: no portmapper to register YP with (%s): clients must be told "
                    "the port", e)
        return False
    if not ok:
        log.warning("NIS: the portmapper refused YP's registration")
    return ok


async def unregister(udp_port: int) -> None:
    """Remove YP's registration if it is still this netinfod's."""
    from ..client.binding import pmap_getport, pmap_unset  # noqa: PLC0415
    from ..errors import RpcError, Timeout  # noqa: PLC0415
    from ..wire.portmap import IPPROTO_UDP  # noqa: PLC0415
    try:
        if await pmap_getport(None, yp.YPPROG, yp.YPVERS, IPPROTO_UDP, timeout=1.0) \
                == udp_port:
            await pmap_unset(yp.YPPROG, yp.YPVERS, timeout=1.0)
    except (Timeout, RpcError, WireError, OSError):
        pass
