"""The change history (issue 24): one journal entry per write, written by the engine in
the write's own transaction.

Each :class:`~netinfo.storage.changes.Change` a batch brings to ``Store.commit`` becomes
one :class:`~netinfo.wire.history.Entry`: its sequence number, the time of the commit,
the caller as authenticated (spec §10.2), the procedure, the path of the written
directory at the time, and every touched directory's states before and after. An engine
keeps a :class:`Journal` (``Store.journal``): :meth:`Journal.record` runs inside its
commit transaction, so an entry and its write are durable together or not at all.

Retention (``netinfod --history-days N --history-max-mb M``): entries older than N days
and the oldest beyond M MiB go, at most :data:`TRIM_BATCH` per commit (so a write never
waits for a big trim) and the rest by :meth:`Journal.trim`, which netinfod calls in small
batches between requests.

:class:`MemoryJournal` is the memory engine's (and the reference implementation).

Pure: no I/O.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from ..model import Proplist, first_values
from ..wire.history import (
    FROM_MASTER,
    NO_DIR,
    OWNER,
    PAGE_BYTES,
    PAGE_MAX,
    SUPERUSER,
    WHOLE_TREE,
    Entry,
    Page,
    Query,
    decode_entry,
    encode_entry,
    encode_record,
)
from ..wire.protocol import Proc

if TYPE_CHECKING:
    from .changes import Change, DirState

#: Defaults of ``netinfod --history-days`` and ``--history-max-mb``.
DEFAULT_DAYS = 90.0
DEFAULT_MAX_MB = 256.0
#: The most entries one commit trims (retention never stalls a write).
TRIM_BATCH = 64

#: id → (parent, props) of a stored directory, or None
Lookup = Callable[[int], "tuple[int, Proplist] | None"]
#: Whether a caller may see an entry (None: everything)
Admit = Callable[[Entry], bool] | None


class Row:
    """An entry as a journal stores it: the columns searched on and its bytes."""

    __slots__ = ("seq", "time", "user", "path", "dirs", "blob")

    def __init__(self, seq: int, when: int, user: str, path: str, dirs: tuple[int, ...],
                 blob: bytes) -> None:
        self.seq, self.time, self.user, self.path = seq, when, user, path
        self.dirs, self.blob = dirs, blob

    @classmethod
    def of(cls, e: Entry, encoded: dict[int, bytes] | None = None) -> Row:
        return cls(e.seq, e.time, e.user, e.path, tuple(d.id for d in e.touched),
                   encode_entry(e, encoded))


def escape(name: str) -> str:
    """A path component (spec §6.1: ``/``, ``=`` and ``\\`` escaped), as :func:`text`."""
    return text(name.replace("\\", "\\\\").replace("/", "\\/").replace("=", "\\="))


def text(s: str) -> str:
    """*s* as text every store's text column takes: each byte that was not UTF-8 (the
    surrogate escapes the wire's decoder leaves, e.g. a NeXT domain's ISO 8859-1
    names) written as ``\\xNN``; unambiguous in a path, whose backslashes are escaped
    themselves. The history's paths and user names are for reading and finding
    entries; the entries' states keep the bytes as they were."""
    if s.isascii():
        return s
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else c
                       for c in s)
    return s


def component(oid: int, props: Proplist) -> str:
    """A directory's path component: its first name, else ``[N]``."""
    names = first_values(props, "name")
    return escape(names[0]) if names else f"[{oid}]"


def _flags(c: Change) -> int:
    who = c.caller
    return ((SUPERUSER if who.superuser else 0) | (OWNER if who.owner else 0)
            | (FROM_MASTER if who.from_master else 0))


def written_dir(c: Change) -> int:
    """The directory a change wrote: a CREATE's new one, a DESTROY's destroyed one,
    otherwise its first argument's (spec §4.3); NO_DIR for a whole new tree."""
    if c.proc is None:
        return NO_DIR
    if c.proc == Proc.CREATE:
        return int(c.result[0][0])
    if c.proc == Proc.DESTROY:
        return int(c.args[1][0])
    return int(c.args[0][0])


class Paths:
    """Directory paths at the time of each write, from the batch's own states, a cache,
    and the store (*lookup*, read before the batch's ops are applied). The cache is
    dropped whenever a write renames, moves or destroys a directory (every path below
    it may change), which writes rarely do."""

    def __init__(self) -> None:
        self._cache: dict[int, str] = {0: ""}

    def clear(self) -> None:
        self._cache = {0: ""}

    def path(self, oid: int, known: dict[int, tuple[int, Proplist]], lookup: Lookup) -> str:
        """*oid*'s path: "/" for the root, ``[N]`` for a directory not found."""
        walked: list[tuple[int, str]] = []
        cache = self._cache
        top = oid
        while top not in cache:
            got = known.get(top) or lookup(top)
            if got is None or len(walked) > 10000:
                walked.append((-1, f"[{top}]"))
                break
            walked.append((top, component(top, got[1])))
            top = got[0]
        prefix = cache.get(top, "")
        for d, part in reversed(walked):
            prefix = f"{prefix}/{part}"
            if d >= 0 and len(cache) < 100_000:
                cache[d] = prefix
        return prefix or "/"

    def remember(self, oid: int, path: str) -> None:
        if len(self._cache) < 100_000:
            self._cache[oid] = "" if path == "/" else path


def _renames(t: tuple[int, DirState | None, DirState | None]) -> bool:
    _, b, a = t
    if b is None or a is None:
        return b is not None   # a destroyed directory: its number may come back
    if b.props is a.props:
        return b.parent != a.parent   # the same proplist: an instance bump only
    return b.parent != a.parent or first_values(b.props, "name") != first_values(a.props,
                                                                               "name")


class Journal(ABC):
    """A domain's change history, kept by its engine."""

    def __init__(self) -> None:
        #: False: nothing is recorded (``--history-days 0``)
        self.enabled = True
        #: entries older than this many seconds go (None: kept)
        self.max_age: float | None = DEFAULT_DAYS * 86400
        #: the oldest entries go beyond this many bytes (None: no bound)
        self.max_bytes: int | None = int(DEFAULT_MAX_MB * 1024 * 1024)
        self.clock: Callable[[], float] = time.time
        #: a clone's journal is its master's, copied (``server.history_mirror``): its
        #: own commits (the master's pushes, a copy) record nothing
        self.mirrored = False
        self._paths = Paths()

    def configure(self, days: float | None, max_mb: float | None) -> None:
        """Retention: *days* (0: no journal; None: the default) and *max_mb*."""
        if days is not None:
            self.enabled = days > 0
            self.max_age = days * 86400
        if max_mb is not None:
            self.max_bytes = int(max_mb * 1024 * 1024)

    # -- writing (inside the engine's commit transaction) -------------------------------

    def record(self, changes: Sequence[Change], lookup: Lookup) -> None:
        """Journal *changes*; *lookup* reads a stored directory as it was before the
        batch. Then trim at most :data:`TRIM_BATCH` entries past retention."""
        if not self.enabled or self.mirrored or not changes:
            return
        now = int(self.clock() * 1_000_000)
        known: dict[int, tuple[int, Proplist]] = {}
        rows: list[Row] = []
        encoded: dict[int, bytes] = {}   # proplists alive throughout: ids stay theirs
        paths = self._paths
        for c in changes:
            oid = written_dir(c)
            if c.proc is None:
                paths.clear()
                known.clear()
                path = "/"
            elif c.proc == Proc.CREATE:
                child = c.result[0][0]
                after = next(t.after for t in c.touched if t.id == child)
                assert after is not None
                parent = paths.path(after.parent, known, lookup)
                path = ("" if parent == "/" else parent) + "/" + component(child, after.props)
            else:
                before = next((t.before for t in c.touched if t.id == oid), None)
                if before is not None:
                    known[oid] = (before.parent, before.props)
                path = paths.path(oid, known, lookup)
            who = c.caller
            user = text(who.user or "")
            touched = c.touched
            rows.append(Row(c.seq, now, user, path, tuple(t[0] for t in touched),
                            encode_record(c.seq, now, user, _flags(c), who.addr, who.port,
                                          WHOLE_TREE if c.proc is None else int(c.proc),
                                          path, oid, touched, encoded)))
            if any(_renames(t) for t in c.touched):
                paths.clear()
            elif c.proc == Proc.CREATE:
                paths.remember(oid, path)
            for t in c.touched:
                if t.after is not None:
                    known[t.id] = (t.after.parent, t.after.props)
                else:
                    known.pop(t.id, None)
        self._append(rows)
        self.trim(TRIM_BATCH, int(self.clock() * 1_000_000))

    def insert(self, copied: Sequence[Entry]) -> None:
        """Keep *copied* entries of another server's journal as they are (a clone's copy
        of its master's), in a transaction of their own where the engine has them."""
        last = self.last_seq()
        rows = [Row.of(e) for e in copied if e.seq > last]   # oldest first, once each
        if rows:
            self._in_transaction(lambda: self._append(rows))

    def _in_transaction(self, fn: Callable[[], object]) -> None:
        fn()

    @abstractmethod
    def last_seq(self) -> int:
        """The highest sequence number kept (0: none)."""

    @abstractmethod
    def stored(self, seq: int) -> bytes | None:
        """Entry *seq* as kept (its bytes), or None."""

    def clear(self) -> None:
        """Forget every entry (a clone whose history is not its master's)."""
        self._in_transaction(lambda: self._trim(1 << 62, None, 0))

    def forget_paths(self) -> None:
        """The store changed under the journal (a failed batch, a swapped copy)."""
        self._paths.clear()

    @abstractmethod
    def _append(self, rows: list[Row]) -> None:
        """Store *rows* (in the engine's current transaction)."""

    def trim(self, most: int, now: int | None = None) -> int:
        """Remove at most *most* entries past retention (the oldest first); how many."""
        if now is None:
            now = int(self.clock() * 1_000_000)
        cutoff = None if self.max_age is None else now - int(self.max_age * 1_000_000)
        return self._trim(most, cutoff, self.max_bytes)

    def trim_now(self, most: int) -> int:
        """:meth:`trim` outside any commit (in a transaction of its own where the engine
        has transactions): netinfod's retention between requests."""
        n = [0]

        def run() -> None:
            n[0] = self.trim(most)
        self._in_transaction(run)
        return n[0]

    @abstractmethod
    def _trim(self, most: int, cutoff: int | None, max_bytes: int | None) -> int:
        """Remove up to *most* of the oldest entries made before *cutoff* or beyond
        *max_bytes* bytes in all."""

    # -- reading ------------------------------------------------------------------------

    @abstractmethod
    def _scan(self, q: Query, after: int) -> Iterable[Row]:
        """Rows matching *q*'s filters, in *q*'s order, past cursor *after*."""

    @abstractmethod
    def size(self) -> tuple[int, int]:
        """(entries, bytes) kept."""

    def query(self, q: Query, admit: Admit = None) -> tuple[Page, list[bytes]]:
        """A page of entries matching *q* that *admit* lets through, with their stored
        bytes (:func:`~netinfo.wire.history.encode_page`): at most ``q.limit`` (and
        :data:`PAGE_MAX`) entries, about :data:`PAGE_BYTES` bytes."""
        limit = max(1, min(q.limit, PAGE_MAX))
        blobs: list[bytes] = []
        entries: list[Entry] = []
        nbytes, cursor, scanned = 0, q.cursor, 0
        for row in self._scan(q, q.cursor):
            if len(blobs) >= limit or nbytes >= PAGE_BYTES or scanned >= 20 * PAGE_MAX:
                return Page(entries, True, cursor), blobs
            scanned += 1
            cursor = row.seq
            entry = decode_entry(row.blob)
            if admit is not None and not admit(entry):
                continue
            blobs.append(row.blob)
            entries.append(entry)
            nbytes += len(row.blob)
        return Page(entries, False, cursor), blobs


def matches(q: Query, row: Row) -> bool:
    """Whether *row* passes *q*'s filters (cursor and order aside)."""
    if (q.since and row.time < q.since) or (q.until and row.time >= q.until):
        return False
    if q.user and row.user != q.user:
        return False
    if (q.min_seq and row.seq < q.min_seq) or (q.max_seq and row.seq > q.max_seq):
        return False
    if q.path and q.path != "/" and not (row.path == q.path
                                         or row.path.startswith(q.path + "/")):
        return False
    return q.dir == NO_DIR or q.dir in row.dirs


class MemoryJournal(Journal):
    """The journal in process memory (the memory engine's), in seq order."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[Row] = []
        self._bytes = 0

    def _trim(self, most: int, cutoff: int | None, max_bytes: int | None) -> int:
        n = 0
        rows = self.rows
        while n < most and n < len(rows) and (
                (cutoff is not None and rows[n].time < cutoff)
                or (max_bytes is not None and self._bytes > max_bytes)):
            self._bytes -= len(rows[n].blob)
            n += 1
        del rows[:n]
        return n

    def _scan(self, q: Query, after: int) -> Iterable[Row]:
        ordered = self.rows if q.oldest_first else reversed(self.rows)
        for row in list(ordered):
            if after and (row.seq <= after if q.oldest_first else row.seq >= after):
                continue
            if matches(q, row):
                yield row

    def size(self) -> tuple[int, int]:
        return len(self.rows), self._bytes

    def last_seq(self) -> int:
        return self.rows[-1].seq if self.rows else 0

    def stored(self, seq: int) -> bytes | None:
        return next((r.blob for r in reversed(self.rows) if r.seq == seq), None)

    def _append(self, rows: list[Row]) -> None:
        self.rows.extend(rows)
        self._bytes += sum(len(r.blob) for r in rows)


__all__ = ["Journal", "MemoryJournal", "Row", "Paths", "DEFAULT_DAYS", "DEFAULT_MAX_MB",
           "TRIM_BATCH", "written_dir", "matches", "escape", "component"]
