"""A whole stored domain read a chunk at a time, in SQL both engines speak (``nistore``).

:class:`SqlDump` is the :class:`~netinfo.storage.Dump` of the SQLite and PostgreSQL
engines: the same tables by concern (``dirs``, ``kids``, ``freed``, ``meta``, ``keys``;
storage/sqlite.py), read by the same statements, in a read transaction of the dump's own
(a SQLite WAL snapshot, a PostgreSQL ``REPEATABLE READ`` one), each stream in an order
the database gives from an index or sorts itself (on disk when it must): this process
holds one chunk of rows at a time, and one child list. An engine gives only
:meth:`SqlDump._rows`, a query's rows a chunk at a time, and :meth:`SqlDump.close`.
"""

from __future__ import annotations

from abc import abstractmethod
from array import array
from collections.abc import Iterator
from itertools import groupby
from operator import itemgetter
from typing import Any

from . import DirRow, Dump

#: rows per chunk of the streams but :meth:`SqlDump.dirs`
ROWS = 16384

_DIRS = "SELECT id, instance, parent, props FROM dirs ORDER BY id"
_KIDS = "SELECT parent, child FROM kids ORDER BY parent, ord"
_PARENTS = "SELECT DISTINCT parent FROM kids ORDER BY parent"
_LISTINGS = "SELECT child, parent FROM kids ORDER BY child, parent"
_FREED = ("SELECT f.id, f.instance FROM freed f LEFT JOIN dirs d ON d.id = f.id"
          " WHERE d.id IS NULL ORDER BY f.id")
# by child alone: each directory's rows are compared as a set (PostgreSQL may read them
# along its keys_child index; SQLite sorts)
_KEYS = "SELECT child, parent, key, value FROM keys ORDER BY child"
_META = "SELECT key, value FROM meta"
_COUNTS = ("SELECT (SELECT count(*) FROM dirs), (SELECT max(id) FROM dirs),"
           " (SELECT count(*) FROM freed)")
# The directories the root reaches through the child lists (UNION ALL: only asked when
# no directory is listed twice and the root by none, so each is reached once at most).
_REACHED = ("WITH RECURSIVE r(id) AS (SELECT id FROM dirs WHERE id = 0 UNION ALL"
            " SELECT k.child FROM kids k JOIN r ON k.parent = r.id)"
            " SELECT d.id FROM dirs d LEFT JOIN r ON r.id = d.id WHERE r.id IS NULL")


class SqlDump(Dump):
    """:class:`~netinfo.storage.Dump` by SQL (the module's docstring)."""

    @abstractmethod
    def _rows(self, sql: str, size: int) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of *sql*, *size* at a time (``StorageError`` when it fails)."""

    def dirs(self) -> Iterator[list[DirRow]]:
        return self._rows(_DIRS, self.chunk)

    def kids(self) -> Iterator[tuple[int, array[int]]]:
        rows = (r for chunk in self._rows(_KIDS, ROWS) for r in chunk)
        for parent, group in groupby(rows, itemgetter(0)):
            yield parent, array("I", map(itemgetter(1), group))

    def parents(self) -> Iterator[int]:
        return (r[0] for chunk in self._rows(_PARENTS, ROWS) for r in chunk)

    def listings(self) -> Iterator[tuple[int, int]]:
        return (r for chunk in self._rows(_LISTINGS, ROWS) for r in chunk)

    def freed(self) -> Iterator[tuple[int, int]]:
        return (r for chunk in self._rows(_FREED, ROWS) for r in chunk)

    def meta(self) -> tuple[int | None, dict[str, int]]:
        meta = {k: v for chunk in self._rows(_META, ROWS) for k, v in chunk}
        checksum = meta.pop("checksum", None)
        return (checksum if isinstance(checksum, int) else None,
                {k: v for k, v in meta.items() if isinstance(v, int)})

    def summary(self) -> tuple[int, int, int]:
        count, top, freed = next(iter(self._rows(_COUNTS, 1)))[0]
        return int(count), -1 if top is None else int(top), int(freed)

    def keys(self) -> Iterator[tuple[int, int, bytes, bytes]] | None:
        return (r for chunk in self._rows(_KEYS, ROWS) for r in chunk)

    def unreached(self, most: int = 10) -> tuple[int, list[int]]:
        first: list[int] = []
        n = 0
        for chunk in self._rows(_REACHED + " ORDER BY d.id", ROWS):
            n += len(chunk)
            if len(first) < most:
                first.extend(r[0] for r in chunk[:most - len(first)])
        return n, first
