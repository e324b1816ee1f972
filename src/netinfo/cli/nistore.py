"""nistore: copy, check and describe a domain's store, whatever its engine (issue 23).

::

    nistore copy /var/db/netinfo/net.nidb 'postgresql:///netinfo?domain=net'
    nistore check 'postgresql:///netinfo?domain=net'
    nistore info /var/db/netinfo/net.nidb/netinfo.sqlite

A store is named by its URL (``sqlite:PATH``, ``postgresql://...``, storage/__init__.py)
or, for SQLite, by a path: the file itself, or a ``TAG.nidb`` directory (its
``netinfo.sqlite``).

``copy`` reads the source domain in one read transaction of its own (a SQLite WAL
snapshot, a PostgreSQL ``REPEATABLE READ`` transaction), a chunk of directories at a
time in number order with their child lists (``Store.dump``: this process holds one
chunk and one child list, never the domain), and writes it as the engine writes a
clone's copy (``Store.new_copy``): beside the destination's domain (SQLite: ``FILE.temp``;
PostgreSQL: the schema ``ni_NAME~copy``), every directory with its number, instance,
parent and properties byte for byte, every child list in order, the freed numbers with
their last instances (spec §5.3), the service's counters and the source's stored checksum
(spec §5.6); the destination's LOOKUP index is built from the properties as it is written.
The copy is then swapped in at once (``Store.adopt``): a crash midway leaves the
destination as it was (no domain, or the old one), and what the copy had written is
discarded by the next writer (a leftover ``.temp`` or ``~copy`` is never the domain). It
then reads the destination back and compares it with the source's snapshot, chunk by
chunk, both in the same order. The destination is taken as its writer (the SQLite file's
lock, PostgreSQL's advisory lock): a served domain is refused. A destination that already
holds a domain is refused unless ``-f``, which replaces it (atomically: the old domain or
the new, never a mix). The destination's change history stays as it was.

``check`` reads the domain (no lock: a served domain may be checked) in a snapshot, a
chunk at a time, and verifies its tree (every listed child exists and names its lister as
parent; no directory is listed twice; nothing but the root is outside the tree, nor in a
cycle of child lists), its checksum against the one stored, and its LOOKUP index against
the properties, directory by directory (the index read in child order, which the
database sorts). ``info`` prints what a store holds, from counts.
"""

from __future__ import annotations

import argparse
import sys
from array import array
from collections.abc import Iterator
from itertools import zip_longest
from pathlib import Path
from typing import Any

from ..errors import StorageError, WireError
from ..storage import (
    RESET,
    Dump,
    Free,
    Image,
    KidIns,
    Meta,
    NewCopy,
    Op,
    Put,
    Store,
    engine_of,
    open_store,
)
from ..wire.proplist import decode_proplist
from ..wire.readall import (
    READALL_END,
    ReadAllDecoder,
    encode_readall_head,
    encode_readall_stored,
)

PROG = "nistore"
MASK32 = 0xFFFFFFFF


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Copy, check and describe a NetInfo domain's store "
        "(SQLite path or store URL).")
    sub = p.add_subparsers(dest="command", required=True, metavar="command",
                           title="commands")
    c = sub.add_parser("copy", help="copy a domain exactly from SRC to DST")
    c.add_argument("src", metavar="SRC")
    c.add_argument("dst", metavar="DST")
    c.add_argument("-f", "--force", action="store_true",
                   help="replace a domain DST already holds")
    k = sub.add_parser("check", help="verify a domain's tree, checksum and index")
    k.add_argument("store", metavar="STORE")
    i = sub.add_parser("info", help="describe what a store holds")
    i.add_argument("store", metavar="STORE")
    return p


def store_url(spec: str) -> str:
    """A store URL for *spec*: a URL as it is; a path is SQLite (a ``TAG.nidb``
    directory means its ``netinfo.sqlite``)."""
    scheme, sep, _ = spec.partition(":")
    if sep and scheme.isalpha() and len(scheme) > 1:
        return spec
    path = Path(spec)
    if path.is_dir():
        path = path / "netinfo.sqlite"
    return f"sqlite:{path}"


def checksum_of(image: Image) -> int:
    """Σ (object+1) × instance mod 2³² (spec §5.6)."""
    return sum((oid + 1) * r.instance for oid, r in image.records.items()) & MASK32


def copy_ops(image: Image) -> list[Op]:
    """The batch that makes a store hold exactly *image* (an engine whose copies are
    images: the memory engine's)."""
    ops: list[Op] = [RESET]
    ops.extend(Put(oid, r.instance, r.parent, r.props)
               for oid, r in sorted(image.records.items()))
    for parent, kids in sorted(image.children.items()):
        ops.extend(KidIns(parent, i, child) for i, child in enumerate(kids))
    ops.extend(Free(oid, inst) for oid, inst in sorted(image.freed.items())
               if oid not in image.records)
    ops.extend(Meta(k, v) for k, v in sorted(image.meta.items()))
    return ops


#: problems ``check`` lists at most (then how many more it found)
SHOWN = 100
#: freed numbers written to a copy at a time
FREED_CHUNK = 65536
_NO_KIDS: array[int] = array("I")


class Problems:
    """What ``check`` found, kept up to :data:`SHOWN` (the rest counted)."""

    def __init__(self) -> None:
        self.shown: list[str] = []
        self.more = 0

    def add(self, message: str) -> None:
        if len(self.shown) < SHOWN:
            self.shown.append(message)
        else:
            self.more += 1

    def lines(self) -> list[str]:
        return self.shown + ([f"... and {self.more} more problems"] if self.more else [])

    def __bool__(self) -> bool:
        return bool(self.shown)


def check_dump(dump: Dump) -> tuple[Problems, int, int | None, bool]:
    """Check a stored domain a chunk at a time: (the problems, directories, the stored
    checksum, whether a LOOKUP index was checked). Three streams are merged with the
    directories (by number): the child list entries by child (listed once, by the
    parent the child names), the numbers with a child list (each a directory), and the
    index rows by child (each directory's rows are those its properties give:
    ``sqlite.key_rows``, the index's definition)."""
    from ..storage.sqlite import key_rows  # noqa: PLC0415 - the index's definition

    found = Problems()
    stored, _ = dump.meta()
    listings = dump.listings()
    parents = dump.parents()
    index = dump.keys()
    listing = next(listings, None)
    parent_no = next(parents, None)
    key = next(index, None) if index is not None else None
    total = count = 0
    twice = root_listed = dangling = False
    orphans: list[int] = []
    n_orphans = 0
    extra = lost = 0
    min_extra: tuple[int, bytes, bytes, int] | None = None
    min_lost: tuple[int, bytes, bytes, int] | None = None
    first = True
    for chunk in dump.dirs():
        for oid, instance, parent, props in chunk:
            if first and oid != 0:
                found.add("no root directory (0)")
                return found, 0, stored, False
            first = False
            count += 1
            total += (oid + 1) * instance
            # the numbers below this one that have a child list are no directories
            while parent_no is not None and parent_no < oid:
                found.add(f"directory {parent_no} has a child list but does not exist")
                parent_no = next(parents, None)
            if parent_no == oid:
                parent_no = next(parents, None)
            # child list entries naming numbers below this one: no such directory
            while listing is not None and listing[0] < oid:
                found.add(f"directory {listing[1]} lists child {listing[0]}, which does "
                          f"not exist")
                dangling = True
                listing = next(listings, None)
            listers: list[int] = []
            while listing is not None and listing[0] == oid:
                listers.append(listing[1])
                listing = next(listings, None)
            if oid == 0:
                if listers:
                    root_listed = True
                    found.add(f"the root is listed as a child of {listers[0]}")
            elif not listers:
                n_orphans += 1
                if len(orphans) < 10:
                    orphans.append(oid)
            else:
                if len(listers) > 1:
                    twice = True
                    found.add(f"directory {oid} is listed by {listers[0]} and {listers[1]}")
                wrong = [p for p in listers if p != parent]
                if wrong:
                    found.add(f"directory {oid} is listed by {wrong[0]} but names {parent}")
            if index is None:
                continue
            have: set[tuple[int, bytes, bytes, int]] = set()
            while key is not None and key[0] <= oid:
                row = (key[1], bytes(key[2]), bytes(key[3]), key[0])
                if key[0] == oid:
                    have.add(row)
                else:   # a row of no directory
                    extra += 1
                    min_extra = row if min_extra is None else min(min_extra, row)
                key = next(index, None)
            try:
                want = key_rows(oid, parent, decode_proplist(props))
            except (WireError, TypeError, ValueError) as exc:
                found.add(f"directory {oid}'s properties do not decode ({exc})")
                want = have
            if want != have:
                for row in have - want:
                    extra += 1
                    min_extra = row if min_extra is None else min(min_extra, row)
                for row in want - have:
                    lost += 1
                    min_lost = row if min_lost is None else min(min_lost, row)
    if first:
        found.add("no root directory (0)")
        return found, 0, stored, False
    while parent_no is not None:
        found.add(f"directory {parent_no} has a child list but does not exist")
        parent_no = next(parents, None)
    while listing is not None:
        found.add(f"directory {listing[1]} lists child {listing[0]}, which does not exist")
        dangling = True
        listing = next(listings, None)
    while key is not None:
        extra += 1
        row = (key[1], bytes(key[2]), bytes(key[3]), key[0])
        min_extra = row if min_extra is None else min(min_extra, row)
        key = next(index, None)  # type: ignore[arg-type]
    if n_orphans:
        found.add(f"{n_orphans} directories are in no child list: {orphans}")
    if not (twice or root_listed or dangling):
        # every number listed once at most (and only directories): a walk from the root
        # ends; what it does not reach is an orphan's subtree, or a cycle of child lists
        n, some = dump.unreached()
        if n > n_orphans:
            found.add(f"{n} directories are not reachable from the root: {some}")
    computed = total & MASK32
    if stored != computed:
        found.add(f"stored checksum {stored} differs from the computed {computed}")
    if extra:
        found.add(f"the LOOKUP index has {extra} rows no property gives, e.g. {min_extra}")
    if lost:
        found.add(f"the LOOKUP index lacks {lost} rows, e.g. {min_lost}")
    return found, count, stored, index is not None


def _open(spec: str) -> Store:
    url = store_url(spec)
    if url.startswith("sqlite:") and not Path(url[7:].removeprefix("//")).exists():
        raise StorageError(f"no SQLite store at {url[7:]}")
    return open_store(url)


def write_copy(dump: Dump, copy: NewCopy) -> int:
    """Write the domain *dump* reads into *copy*, a chunk of directories at a time, each
    with its child list, as a READALL stream of the stored bytes (decoded as a clone
    decodes one: the LOOKUP pairs picked up, every length checked); then the freed
    numbers and the counters; set the copy's checksum to the stored one (the computed
    one when none is stored). Returns the checksum."""
    decoder = ReadAllDecoder()
    decoder.feed(encode_readall_head(0, 0))
    lists = dump.kids()
    pending = next(lists, None)
    for chunk in dump.dirs():
        top = chunk[-1][0]
        kids: dict[int, array[int]] = {}
        while pending is not None and pending[0] <= top:
            kids[pending[0]] = pending[1]
            pending = next(lists, None)
        objects = decoder.feed(b"".join(
            [encode_readall_stored(oid, inst, props, parent, kids.get(oid, _NO_KIDS))
             for oid, inst, parent, props in chunk]))
        if len(objects) != len(chunk):
            raise StorageError("a directory of the source does not decode")
        # the stored bytes exactly (the decoder gives a non-canonical padding's
        # encode_proplist form)
        copy.add([o if o.props == row[3] else o._replace(props=bytes(row[3]))
                  for o, row in zip(objects, chunk, strict=True)])
    decoder.feed(READALL_END)
    decoder.finish()
    freed: list[tuple[int, int]] = []
    for row in dump.freed():
        freed.append(row)
        if len(freed) >= FREED_CHUNK:
            copy.add_freed(freed)
            freed = []
    if freed:
        copy.add_freed(freed)
    stored, meta = dump.meta()
    for k, v in sorted(meta.items()):
        copy.add_meta(k, v)
    if stored is not None:
        copy.checksum = stored
    return copy.checksum


def differs(a: Dump, b: Dump) -> str | None:
    """Where two stored domains differ (None: they do not), compared a chunk at a time,
    both read in the same order."""
    rows_a = (r for chunk in a.dirs() for r in chunk)
    rows_b = (r for chunk in b.dirs() for r in chunk)
    streams: list[tuple[str, Iterator[Any], Iterator[Any]]] = [
        ("directory", rows_a, rows_b), ("child list", a.kids(), b.kids()),
        ("freed number", a.freed(), b.freed())]
    for what, x, y in streams:
        for p, q in zip_longest(x, y):
            if p is None or q is None or tuple(p) != tuple(q):
                where = (p if q is None else q)[0]
                return f"{what} {where} differs"
    if a.meta() != b.meta():
        return f"the checksum or counters differ ({a.meta()} against {b.meta()})"
    return None


def cmd_copy(args: argparse.Namespace) -> int:
    src = _open(args.src)
    try:
        source = src.dump()
        try:
            return _copy(args, source)
        finally:
            source.close()
    finally:
        src.close()


def _copy(args: argparse.Namespace, source: Dump) -> int:
    count, _, _ = source.summary()
    if not count:
        print(f"{PROG}: {args.src} holds no domain", file=sys.stderr)
        return 2
    url = store_url(args.dst)
    eng, rest = engine_of(url)
    lock = eng.lock(rest, url)   # SQLite's flock; PostgreSQL's is claim() below
    try:
        eng.discard_leftovers(rest)
        dst = open_store(url)
        try:
            dst.claim()
            if dst.exists() and not args.force:
                print(f"{PROG}: {args.dst} already holds a domain (-f replaces it)",
                      file=sys.stderr)
                return 2
            copy = dst.new_copy()
            try:
                checksum = write_copy(source, copy)
                copy.finish()
                if copy.image is not None:   # an engine without a swap of its own
                    dst.commit(copy_ops(copy.image), checksum)
                else:
                    dst.adopt(copy)
            except BaseException:
                copy.discard()
                raise
            back = dst.dump()
            try:
                wrong = differs(source, back)
            finally:
                back.close()
        finally:
            dst.close()
    finally:
        if lock is not None:
            lock.release()
    if wrong is not None:
        print(f"{PROG}: the copy in {args.dst} differs from {args.src}: {wrong}",
              file=sys.stderr)
        return 1
    print(f"copied {copy.count} directories, checksum {checksum}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    store = _open(args.store)
    try:
        dump = store.dump()
        try:
            found, count, checksum, indexed = check_dump(dump)
        finally:
            dump.close()
    finally:
        store.close()
    for p in found.lines():
        print(f"{args.store}: {p}")
    if found:
        return 1
    print(f"{args.store}: {count} directories, checksum {checksum}: "
          f"tree, checksum{' and LOOKUP index' if indexed else ''} are whole")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    store = _open(args.store)
    try:
        facts: list[tuple[str, Any]] = [("store", store_url(args.store)),
                                        ("engine", store.scheme)]
        version = getattr(store, "schema_version", None)
        if version is not None:
            facts.append(("schema version", version()))
        if store.scheme == "postgresql":
            from ..storage.postgres import domains  # noqa: PLC0415 - the engine's catalog
            facts.append(("writer", store.holder()))  # type: ignore[attr-defined]
            facts.append(("domains in the database", " ".join(domains(store.url))))  # type: ignore[attr-defined]
        dump = store.dump()
        try:
            count, highest, freed = dump.summary()
            checksum, meta = dump.meta()
        finally:
            dump.close()
    finally:
        store.close()
    facts += [("directories", count),
              ("highest number", highest),
              ("freed numbers", freed),
              ("checksum", checksum)]
    facts += [(f"counter {k}", v) for k, v in sorted(meta.items())]
    for name, value in facts:
        print(f"{name}: {value}")
    return 0


COMMANDS = {"copy": cmd_copy, "check": cmd_check, "info": cmd_info}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (StorageError, ValueError, OSError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
