"""nistore: copy, check and describe a domain's store, whatever its engine (issue 23).

::

    nistore copy /var/db/netinfo/net.nidb 'postgresql:///netinfo?domain=net'
    nistore check 'postgresql:///netinfo?domain=net'
    nistore info /var/db/netinfo/net.nidb/netinfo.sqlite

A store is named by its URL (``sqlite:PATH``, ``postgresql://...``, storage/__init__.py)
or, for SQLite, by a path: the file itself, or a ``TAG.nidb`` directory (its
``netinfo.sqlite``).

``copy`` reads the whole source domain in one read transaction and writes it into the
destination as one batch, in one transaction: every directory with its number, instance,
parent and properties byte for byte, every child list in order, the freed numbers with
their last instances (spec §5.3), the service's counters and the checksum (spec §5.6);
the destination's LOOKUP index is the engine's own, kept by the same transaction. It then
reads the destination back and compares. The destination is taken as its writer (the
SQLite file's lock, PostgreSQL's advisory lock): a served domain is refused. A
destination that already holds a domain is refused unless ``-f``, which replaces it
(atomically: the old domain or the new, never a mix).

``check`` reads the domain (no lock: a served domain may be checked) and verifies its
tree (every listed child exists and names its lister as parent; no directory is listed
twice; nothing but the root is outside the tree), its checksum against the one stored,
and its LOOKUP index against the properties. ``info`` prints what a store holds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import StorageError
from ..storage import (
    RESET,
    Free,
    Image,
    KidIns,
    Meta,
    Op,
    Put,
    Store,
    engine_of,
    open_store,
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
    """The batch that makes a store hold exactly *image*."""
    ops: list[Op] = [RESET]
    ops.extend(Put(oid, r.instance, r.parent, r.props)
               for oid, r in sorted(image.records.items()))
    for parent, kids in sorted(image.children.items()):
        ops.extend(KidIns(parent, i, child) for i, child in enumerate(kids))
    ops.extend(Free(oid, inst) for oid, inst in sorted(image.freed.items())
               if oid not in image.records)
    ops.extend(Meta(k, v) for k, v in sorted(image.meta.items()))
    return ops


def problems(image: Image, index: set[tuple[int, bytes, bytes, int]] | None) -> list[str]:
    """What is wrong with a stored domain (empty: nothing)."""
    from ..storage.sqlite import key_rows  # noqa: PLC0415 - the index's definition

    out: list[str] = []
    records = image.records
    if 0 not in records:
        return ["no root directory (0)"]
    listed: dict[int, int] = {}
    for parent, kids in image.children.items():
        if parent not in records:
            out.append(f"directory {parent} has a child list but does not exist")
        for child in kids:
            if child in listed:
                out.append(f"directory {child} is listed by {listed[child]} and {parent}")
            listed[child] = parent
            r = records.get(child)
            if r is None:
                out.append(f"directory {parent} lists child {child}, which does not exist")
            elif r.parent != parent:
                out.append(f"directory {child} is listed by {parent} but names {r.parent}")
    if 0 in listed:
        out.append(f"the root is listed as a child of {listed[0]}")
    orphans = sorted(set(records) - set(listed) - {0})
    if orphans:
        out.append(f"{len(orphans)} directories are in no child list: {orphans[:10]}")
    computed = checksum_of(image)
    if image.checksum != computed:
        out.append(f"stored checksum {image.checksum} differs from the computed {computed}")
    if index is not None:
        want: set[tuple[int, bytes, bytes, int]] = set()
        for oid, r in records.items():
            want |= key_rows(oid, r.parent, r.props)
        extra, lost = index - want, want - index
        if extra:
            out.append(f"the LOOKUP index has {len(extra)} rows no property gives, "
                       f"e.g. {min(extra)}")
        if lost:
            out.append(f"the LOOKUP index lacks {len(lost)} rows, e.g. {min(lost)}")
    return out


def _open(spec: str) -> Store:
    url = store_url(spec)
    if url.startswith("sqlite:") and not Path(url[7:].removeprefix("//")).exists():
        raise StorageError(f"no SQLite store at {url[7:]}")
    return open_store(url)


def cmd_copy(args: argparse.Namespace) -> int:
    src = _open(args.src)
    try:
        image = src.load()
    finally:
        src.close()
    if not image.records:
        print(f"{PROG}: {args.src} holds no domain", file=sys.stderr)
        return 2
    url = store_url(args.dst)
    eng, rest = engine_of(url)
    lock = eng.lock(rest, url)   # SQLite's flock; PostgreSQL's is claim() below
    try:
        dst = open_store(url)
        try:
            dst.claim()
            if dst.exists() and not args.force:
                print(f"{PROG}: {args.dst} already holds a domain (-f replaces it)",
                      file=sys.stderr)
                return 2
            checksum = image.checksum if image.checksum is not None else checksum_of(image)
            dst.commit(copy_ops(image), checksum)
            back = dst.load()
        finally:
            dst.close()
    finally:
        if lock is not None:
            lock.release()
    image.checksum = checksum
    if back != image:
        print(f"{PROG}: the copy in {args.dst} differs from {args.src}", file=sys.stderr)
        return 1
    print(f"copied {len(image.records)} directories, checksum {checksum}")
    return 0


def _index(store: Store) -> set[tuple[int, bytes, bytes, int]] | None:
    rows = getattr(store, "index_rows", None)
    return None if rows is None else rows()


def cmd_check(args: argparse.Namespace) -> int:
    store = _open(args.store)
    try:
        image = store.load()
        index = _index(store)
    finally:
        store.close()
    found = problems(image, index)
    for p in found:
        print(f"{args.store}: {p}")
    if found:
        return 1
    print(f"{args.store}: {len(image.records)} directories, checksum {image.checksum}: "
          f"tree, checksum{' and LOOKUP index' if index is not None else ''} are whole")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    store = _open(args.store)
    try:
        image = store.load()
        facts: list[tuple[str, Any]] = [("store", store_url(args.store)),
                                        ("engine", store.scheme)]
        version = getattr(store, "schema_version", None)
        if version is not None:
            facts.append(("schema version", version()))
        if store.scheme == "postgresql":
            from ..storage.postgres import domains  # noqa: PLC0415 - the engine's catalog
            facts.append(("writer", store.holder()))  # type: ignore[attr-defined]
            facts.append(("domains in the database", " ".join(domains(store.url))))  # type: ignore[attr-defined]
    finally:
        store.close()
    facts += [("directories", len(image.records)),
              ("highest number", max(image.records, default=-1)),
              ("freed numbers", len(image.freed)),
              ("checksum", image.checksum)]
    facts += [(f"counter {k}", v) for k, v in sorted(image.meta.items())]
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
