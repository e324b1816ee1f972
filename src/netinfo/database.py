"""Where a tag's database lives on disk, and how it is opened or created.

One database per tag: the directory ``DIR/TAG.nidb`` (spec §13), holding our SQLite file
``netinfo.sqlite``. A NeXT ``collection`` file found there instead is converted on first
start, as Apple's netinfod converted old databases (spec §13).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .errors import StorageError, WireError
from .legacy import decode_collection
from .service import DirectoryService, ServerInfo
from .storage import Store, open_store

log = logging.getLogger("netinfo.database")

DEFAULT_DIR = "/var/db/netinfo"
SQLITE_NAME = "netinfo.sqlite"


def netinfo_dir(explicit: str | None = None) -> Path:
    """``--dir``, else ``$NETINFO_DIR``, else /var/db/netinfo (DESIGN: netinfod interface)."""
    return Path(explicit or os.environ.get("NETINFO_DIR") or DEFAULT_DIR)


def nidb_path(directory: Path, tag: str) -> Path:
    return directory / f"{tag}.nidb"


def database_exists(directory: Path, tag: str) -> bool:
    p = nidb_path(directory, tag)
    return (p / SQLITE_NAME).exists() or (p / "collection").exists()


def open_database(directory: Path, tag: str, info: ServerInfo | None = None,
                  create: bool = False) -> tuple[DirectoryService, Store]:
    """Open (or, with *create*, make) the database of *tag*: a service and its store.

    :raises FileNotFoundError: no database and *create* is false.
    :raises StorageError: the store cannot be opened or a NeXT collection does not decode.
    """
    p = nidb_path(directory, tag)
    sqlite_file = p / SQLITE_NAME
    collection = p / "collection"
    if not sqlite_file.exists() and not collection.exists() and not create:
        raise FileNotFoundError(f"no database for tag {tag!r} in {directory}")
    p.mkdir(parents=True, exist_ok=True)
    store = open_store(f"sqlite:{sqlite_file}")
    image = store.load()
    if not image.records and collection.exists():
        image = _convert_collection(p, store)
    svc = DirectoryService(image, info)
    if image.checksum is not None and image.checksum != svc.checksum:
        log.warning("stored checksum %d differs from the recomputed %d; using the latter",
                    image.checksum, svc.checksum)
    if svc.pending:  # a new database: its empty root
        store.commit(svc.take_pending(), svc.checksum)
    return svc, store


def _convert_collection(p: Path, store: Store) -> object:
    data = (p / "collection").read_bytes()

    def extension(k: int) -> bytes | None:
        f = p / f"extension_{k}"
        return f.read_bytes() if f.exists() else None

    try:
        image = decode_collection(data, 256, extension)
    except WireError as e:
        raise StorageError(f"{p / 'collection'}: {e}") from e
    svc = DirectoryService(image)
    svc.replace(image)
    store.commit(svc.take_pending(), svc.checksum)
    log.info("converted NeXT collection %s (%d directories, checksum %d)",
             p / "collection", len(image.records), svc.checksum)
    return store.load()
