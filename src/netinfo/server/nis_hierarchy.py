"""``--nis-hierarchy`` (issue 21 item 7): the NIS maps of a domain's ancestors, so that one
NIS server shows a host the users, groups and hosts of its whole NetInfo path.

As lookupd searched the local domain, then its parent, then on up to the root, a map
served with the hierarchy holds the domain's own entries and, for every key the domain
does not define, the nearest ancestor's. The ancestors are read as any client reads
them (their netinfods, found by the parent binding of spec §8.2 and RPARENT from there
on), kept here as rendered maps, and read again when an ancestor's checksum changes
(checked every :data:`PERIOD` seconds: another server's writes come with no record to
this one). Maps made from one directory (``nismaps.MAPS``) take part; netgroup,
netid.byname and the automounter's maps are the domain's own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

from ..errors import NetInfoError, NiError
from ..model import uint_to_addr
from ..wire.xdr import encode_str
from ..wire.yp import fits
from .nismaps import MAPS
from .service import ServerInfo

log = logging.getLogger("netinfo.nis")

#: How often the ancestors' checksums are asked.
PERIOD = 2.0
#: Ancestors followed at most (a loop in the bindings ends there).
MAX_DEPTH = 16
#: Entries kept from one ancestor's map at most (memory stays bounded).
MAX_ENTRIES = 1_000_000

#: One ancestor's maps: map name → key → line.
Layer = dict[str, dict[bytes, bytes]]


class Ancestors:
    """The maps of the ancestor domains, nearest first, refreshed by :meth:`run`."""

    def __init__(self, info: ServerInfo, period: float = PERIOD) -> None:
        self.info = info
        self.period = period
        #: (address, tag, checksum, maps) per ancestor, the parent first
        self.layers: list[tuple[str, str, int, Layer]] = []
        #: moves whenever an ancestor's maps change (added to ORDER)
        self.generation = 0

    def get(self, name: str, key: bytes) -> bytes | None:
        """The nearest ancestor's line for *key* in map *name*, or None."""
        for *_, maps in self.layers:
            found = maps.get(name, {}).get(key)
            if found is not None:
                return found
        return None

    def has(self, name: str) -> bool:
        """Does some ancestor hold entries of map *name*?"""
        return any(maps.get(name) for *_, maps in self.layers)

    def keys(self, name: str) -> set[bytes]:
        out: set[bytes] = set()
        for *_, maps in self.layers:
            out.update(maps.get(name, ()))
        return out

    def entries(self, name: str) -> Iterator[tuple[bytes, bytes]]:
        """Every ancestor entry of map *name*, the nearest one of each key."""
        seen: set[bytes] = set()
        for *_, maps in self.layers:
            for k, v in maps.get(name, {}).items():
                if k not in seen:
                    seen.add(k)
                    yield k, v

    async def run(self) -> None:
        """Follow the parent binding up to the root, reading each ancestor's maps again
        when its checksum moved, until cancelled."""
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as e:   # an ancestor gone: keep what was read, ask again
                log.info("NIS hierarchy: %s", e)
            await asyncio.sleep(self.period)

    async def refresh(self) -> None:
        from ..client.binding import lookup_netinfod  # noqa: PLC0415 - a server as client
        from ..client.core import Client  # noqa: PLC0415
        found: list[tuple[str, str, int, Layer]] = []
        where = self.info.parent
        old = {(a, t): (s, m) for a, t, s, m in self.layers}
        while where is not None and len(found) < MAX_DEPTH:
            addr, tag = where
            port = await lookup_netinfod(addr, tag)
            client = await Client.connect(addr, port, tag)
            try:
                stats = dict(await client.statistics())
                checksum = int((stats.get("checksum") or ["0"])[0])
                kept = old.get((addr, tag))
                maps = kept[1] if kept is not None and kept[0] == checksum else \
                    await _read_maps(client)
                found.append((addr, tag, checksum, maps))
                try:
                    ptag, paddr = await client.rparent()
                    where = (uint_to_addr(paddr), ptag)
                except NiError:     # NETROOT (the root) or no binding
                    where = None
            finally:
                await client.close()
        if [(a, t, s) for a, t, s, _ in found] != [(a, t, s) for a, t, s, _ in self.layers]:
            self.layers = found
            self.generation += 1


async def _read_maps(client: object) -> Layer:
    """Every one-directory map of the domain *client* is connected to."""
    from ..client.core import Client  # noqa: PLC0415
    assert isinstance(client, Client)
    out: Layer = {}
    listed: dict[str, list] = {}
    for spec in MAPS.values():
        if spec.directory not in listed:
            try:
                d = await client.pathsearch("/" + spec.directory)
                _, children = await client.listall(d)
            except NetInfoError:
                children = []
            listed[spec.directory] = children
        entries: dict[bytes, bytes] = {}
        for props in listed[spec.directory]:
            for key, line in spec.entries(props):
                k, v = encode_str(key), encode_str(line)
                if k not in entries and fits(k) and fits(v) and len(entries) < MAX_ENTRIES:
                    entries[k] = v
        out[spec.name] = entries
    return out


__all__ = ["Ancestors"]
