"""Maps held in memory whole, read from snapshots of one domain (issues 21 and 22).

A door whose answers are rendered from the domain call by call (the NIS door's MATCH,
the LDAP door's equality searches) can instead hold a busy map of them whole
(``nisresident.ResidentMap``: keys and finished answers in one byte string). This is
the part that is the same for every door: when a map is read, how, and when it is
dropped.

- A map is read once it has missed :attr:`Residents.after` times (``missed``), not
  sooner than ``cooldown`` times its last read's duration after it was dropped, from a
  snapshot (``SnapshotStream``, so a copy swap closes it like any stream), on the event
  loop in turns of ``turn`` seconds: the other connections are answered between turns,
  and the map answers from what was read so far.
- It answers only at the read state it was read at (:meth:`Residents.get`): a state
  that moved without a write record (a copy adopted) drops it.
- Live: the door sends the keys of the entries every write record touched
  (:meth:`Residents.forget`); a map with too many of them is dropped (and read again
  later), as is one whose read fails or passes the budget.
- A door holds at most ``budget`` bytes of maps; a map that would pass it is not read.

The door gives what differs: how a map's entries are read from a snapshot (``make``:
pieces of ``nisresident.entry_bytes``), what to do when a map is dropped (``on_drop``:
the NIS door forgets its prefixes) and when one is read whole (``on_read``: the NIS
door lets go of the answers it kept meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
import mmap
from collections.abc import Callable, Iterable, Iterator
from time import monotonic

from ..errors import DamagedDirectory, NiError, StorageError, WireError
from ..storage.nodes import NodeSource
from .database import Database, SnapshotStream
from .nisresident import HUGE_FROM, ResidentMap, TooBig

log = logging.getLogger("netinfo.residents")

#: How a map's entries are read from a snapshot (*view*) into *kept*: pieces of
#: ``entry_bytes`` (it may ``kept.reserve`` first).
Make = Callable[[NodeSource, ResidentMap], Iterator[bytes]]


def anonymous_memory(size: int) -> mmap.mmap:
    """*size* bytes of private anonymous memory (``nisresident.Memory``): zeros, taken
    from the system as they are first written and given back when the map goes; from
    ``nisresident.HUGE_FROM`` bytes on in huge pages (``MADV_HUGEPAGE``, which Linux's
    default ``madvise`` mode of transparent huge pages grants) where the system has them:
    2 MiB pages, so a random read of a big map seldom walks the page tables too."""
    flags = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
    mem = mmap.mmap(-1, size, flags=flags) if flags else mmap.mmap(-1, size)
    if size >= HUGE_FROM and hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            mem.madvise(mmap.MADV_HUGEPAGE)
        except OSError:
            pass          # a kernel without transparent huge pages: small pages
    return mem


class Residents:
    """The maps one door holds in memory (see the module). *what* names the door in
    the log ("NIS", "LDAP")."""

    def __init__(self, db: Database, budget: int, what: str, *, after: int,
                 cooldown: float, turn: float,
                 on_drop: Callable[[str | None], None] = lambda _name: None,
                 on_read: Callable[[ResidentMap], None] = lambda _kept: None) -> None:
        self.db = db
        self.budget = budget
        self.what = what
        self.after = after
        self.cooldown = cooldown
        self.turn = turn
        self.on_drop = on_drop
        #: told of each map read whole (the NIS door lets go of the answers it kept)
        self.on_read = on_read
        self.maps: dict[str, ResidentMap] = {}
        #: the snapshots being read into them
        self._reading: dict[str, SnapshotStream] = {}
        #: misses of each map since it was last read
        self._live: dict[str, int] = {}
        #: no map read again before this time
        self._not_before: dict[str, float] = {}

    def __bool__(self) -> bool:
        return bool(self.maps)

    def reading(self) -> bool:
        return bool(self._reading)

    def get(self, name: str, state: int) -> ResidentMap | None:
        """Map *name* if held and read at *state* (one read at another state is
        dropped: the tree moved without a write record)."""
        kept = self.maps.get(name)
        if kept is not None and kept.state != state:
            self.drop(name)
            return None
        return kept

    def missed(self, name: str, state: int, make: Make) -> None:
        """A call for map *name* was answered from the domain; past :attr:`after` such
        calls (and its cooldown) the map is read."""
        if not self.budget or name in self.maps:
            return
        n = self._live.get(name, 0) + 1
        self._live[name] = n
        if n >= self.after and monotonic() >= self._not_before.get(name, 0.0):
            self._live.pop(name, None)
            self._read(name, state, make)

    def forget(self, name: str, keys: Iterable[bytes]) -> None:
        kept = self.maps.get(name)
        if kept is not None:
            kept.forget(keys)

    def settle(self) -> None:
        """Drop the maps too changed since they were read (read again later)."""
        for name in [n for n, kept in self.maps.items() if kept.too_changed()]:
            log.info("%s: %s changed by %d keys: read again later", self.what, name,
                     len(self.maps[name].forgotten))
            self.drop(name)

    def drop(self, name: str | None = None) -> None:
        """Drop map *name* (None: all), and stop reading it; no new read before
        ``cooldown`` times its last one's duration."""
        self.on_drop(name)
        for n in list(self.maps) if name is None else [name]:
            kept = self.maps.pop(n, None)
            stream = self._reading.pop(n, None)
            if stream is not None:
                stream.close("dropped")
            if kept is not None:
                self._not_before[n] = monotonic() + self.cooldown * kept.seconds

    def _read(self, name: str, state: int, make: Make) -> None:
        """Begin reading map *name* whole from a snapshot, in turns of the event loop
        (none running: nothing is read)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        room = self.budget - sum(m.nbytes for m in self.maps.values())
        kept = ResidentMap(room, state=state, memory=anonymous_memory)
        started = monotonic()
        self.maps[name] = kept
        self._reading[name] = SnapshotStream(self.db, "", lambda view: make(view, kept),
                                             privileged=True)
        self._not_before[name] = started   # its cooldown is set when it ends
        loop.call_soon(self._turn, name, kept, started)

    def _turn(self, name: str, kept: ResidentMap, started: float) -> None:
        """Read map *name* for :attr:`turn` seconds, then let the loop go on."""
        stream = self._reading.get(name)
        if stream is None or self.maps.get(name) is not kept:
            return                 # dropped meanwhile
        until = monotonic() + self.turn
        try:
            for piece in stream:
                kept.feed(piece)
                if monotonic() > until:
                    asyncio.get_running_loop().call_soon(self._turn, name, kept, started)
                    return
        except (TooBig, StorageError, NiError, DamagedDirectory, WireError,
                ValueError) as exc:
            kept.seconds = monotonic() - started
            log.info("%s: %s not kept in memory: %s", self.what, name, exc)
            self.drop(name)
            return
        except Exception:
            kept.seconds = monotonic() - started
            log.exception("%s: %s not kept in memory: its read failed", self.what, name)
            self.drop(name)
            return
        del self._reading[name]
        kept.seconds = monotonic() - started
        log.info("%s: %s kept in memory: %d entries, %d bytes, read in %.2f s", self.what,
                 name, kept.entries, kept.nbytes, kept.seconds)
        self.on_read(kept)
