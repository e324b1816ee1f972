"""The SQLite engine's files: its stores, the one-writer lock, leftover copies, the catalog.

On disk, one domain per tag: the directory ``DIR/TAG.nidb`` (spec §13), holding the
SQLite file ``netinfo.sqlite`` and ``netinfo.sqlite.lock``, which keeps a second writer
out (and, while a clone copies its master, ``netinfo.sqlite.temp``: ``sqlite.SqliteCopy``).
A NeXT ``collection`` file found there instead is a domain too (the database converts it
on first start, as Apple's netinfod did, spec §13).

:class:`SqliteEngine` is the ``sqlite:`` row of ``storage.open_store``'s scheme table;
``sqlite:DIR`` names the :class:`SqliteCatalog` of a directory (what nibindd serves).
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from typing import IO

from ..wire.nibind import valid_tag
from . import Catalog, DatabaseInUse, Engine, Store, WriterLock

#: The SQLite file of a domain, inside ``DIR/TAG.nidb``.
SQLITE_NAME = "netinfo.sqlite"
#: What names a domain's directory: ``TAG.nidb``.
NIDB = ".nidb"
#: What DESTROYDOMAIN removes of a tag: its database and spec §9.5's copy directories.
_DESTROYED = (NIDB, ".temp", ".move")


class FileLock(WriterLock):
    """An exclusive ``flock`` on a lock file, held for the process's life (or until
    :meth:`release`). The file holds the owner's pid, for the message a second opener
    gets. The kernel drops the lock when the process dies, so a crash leaves no stale
    lock behind.
    """

    def __init__(self, path: Path, where: str) -> None:
        self.path = path
        self.where = where
        self._file: IO[str] | None = None
        f = open(path, "a+", encoding="ascii")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            text = f.read().strip()
            f.close()
            pid = int(text) if text.isascii() and text.isdecimal() else None
            raise DatabaseInUse(where, pid) from None
        except OSError:
            f.close()
            raise
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor drops the flock
            self._file = None


class SqliteCatalog(Catalog):
    """Every ``DIR/TAG.nidb`` of a directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, tag: str) -> Path:
        """``DIR/TAG.nidb``."""
        return self.directory / f"{tag}{NIDB}"

    def domains(self) -> list[str]:
        """Every ``*.nidb`` directory with a valid tag (spec §6.4)."""
        if not self.directory.is_dir():
            return []
        n = len(NIDB)
        return sorted(p.name[:-n] for p in self.directory.glob(f"*{NIDB}")
                      if p.is_dir() and valid_tag(p.name[:-n]))

    def url(self, tag: str) -> str:
        return f"sqlite:{self.path(tag) / SQLITE_NAME}"

    def where(self, tag: str) -> str:
        return str(self.path(tag))

    def exists(self, tag: str) -> bool:
        p = self.path(tag)
        return (p / SQLITE_NAME).exists() or (p / "collection").exists()

    def create(self, tag: str) -> None:
        self.path(tag).mkdir(parents=True, exist_ok=True)

    def destroy(self, tag: str) -> None:
        for suffix in _DESTROYED:
            shutil.rmtree(self.directory / f"{tag}{suffix}", ignore_errors=True)

    def check_free(self, tag: str) -> None:
        lock = self.path(tag) / (SQLITE_NAME + ".lock")
        if lock.exists():
            FileLock(lock, self.where(tag)).release()


class SqliteEngine(Engine):
    """``sqlite:PATH`` stores, locked by ``PATH.lock`` beside the file."""

    scheme = "sqlite"

    def open(self, rest: str) -> Store:
        from .sqlite import SqliteStore  # noqa: PLC0415 - loaded with the first store
        return SqliteStore(rest)

    def lock(self, rest: str, where: str) -> FileLock:
        return FileLock(Path(rest + ".lock"), where)

    def discard_leftovers(self, rest: str) -> None:
        from .sqlite import discard_copy  # noqa: PLC0415 - loaded with the first store
        discard_copy(rest)

    def catalog(self, location: str) -> SqliteCatalog:
        return SqliteCatalog(Path(location))
