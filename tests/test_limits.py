"""Bounds checked before anything is written, and nesting depth bounded (issue 18 #12,
N7; docs/security.md "Bounds").

Each finding is reproduced against a real netinfod with the tools as real subprocesses:
a 70,000-character passwd field with ``niload -d`` (it used to delete root, daemon and
nobody and load half the file), a raw load with a bad record in the middle, a 100 KB
``niutil -createprop`` value, a chain at the maximum depth round-tripped through
``nidump -r`` / ``niload -r``, a CREATE one level deeper refused (NI_NOSPACE), and a
database made before the bound (a deeper chain) still read and dumped.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from netinfo.cli import niload
from netinfo.client import dumps
from netinfo.client.domain import open_domain
from netinfo.client.raw import INDENT_LEVELS, FormatError, RawNode, raw_from_text, raw_to_text
from netinfo.errors import NiError, Status
from netinfo.model import NI_INDEX_NULL, NiId
from netinfo.server.database import open_database
from netinfo.storage.changes import Caller
from netinfo.wire.limits import (
    LIST_MAX,
    MAX_DEPTH,
    MAX_PROPLIST_BYTES,
    NAME_MAX,
    proplist_bytes,
    proplist_problem,
)

from .conftest import Netinfod, env_with_src
from .test_nidump import call, sub

ENV = env_with_src()
BASE = ("root:*:0:0::0:0:System Administrator:/var/root:/bin/sh\n"
        "daemon:*:1:1::0:0:System Services:/var/root:/usr/bin/false\n"
        "nobody:*:-2:-2::0:0:Unprivileged User:/var/empty:/usr/bin/false\n")


@pytest.fixture
def dom(tmp_path, netinfod):
    """A fresh master of its own: ``-t`` domain argument."""
    d = netinfod("lim", "-m", directory=tmp_path)
    return f"127.0.0.1:{d.port}/lim"


def tool(module: str, *args: str, stdin: str | None = None):
    return sub(module, *args, env=ENV, stdin=stdin)


def names(dom: str, path: str) -> list[str]:
    p = tool("niutil", "-list", "-t", dom, path)
    assert p.returncode == 0, p.stderr
    return [line.split(None, 1)[1] for line in p.stdout.splitlines()]


def raw(dom: str, path: str) -> str:
    p = tool("nidump", "-r", path, "-t", dom)
    assert (p.returncode, p.stderr) == (0, ""), p.stderr
    return p.stdout


def instance(dom: str, path: str) -> int:
    async def go() -> int:
        c = await open_domain(dom, tagged=True)
        try:
            return (await c.pathsearch(path)).instance
        finally:
            await c.close()
    return asyncio.run(go())


def one_line(err: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1, err[:500]
    assert "internal error" not in err and "Traceback" not in err
    assert len(err) < 300, err[:500]
    return err


def pw(name: str, uid: int, gecos: str = "User") -> str:
    return f"{name}:*:{uid}:20::0:0:{gecos}:/home/{name}:/bin/sh\n"


def chain(levels: int, prefix: str = "l") -> RawNode:
    """A directory with *levels* levels of single children below it."""
    top = node = RawNode([("name", ["top"])])
    for i in range(levels):
        kid = RawNode([("name", [f"{prefix}{i}"])])
        node.children.append(kid)
        node = kid
    return top


# -- #12: a flat input over a bound loads nothing, and -d deletes nothing --------------------

def test_d_with_an_overlong_field_late_in_the_input_changes_nothing(dom):
    assert tool("niload", "passwd", "-t", dom, stdin=BASE).returncode == 0
    before = raw(dom, "/users")
    # the bad line comes after the first 2,000-line piece: checked before any write all
    # the same (it used to delete root, daemon and nobody and load 3,000 users)
    text = "".join(pw(f"u{i}", 1000 + i) for i in range(3000))
    text += pw("bad", 9999, "x" * 70_000)
    text += "".join(pw(f"v{i}", 5000 + i) for i in range(500))
    p = tool("niload", "-d", "passwd", "-t", dom, stdin=text)
    assert p.returncode == 1 and p.stdout == ""
    assert one_line(p.stderr) == (
        "niload: line 3001: property realname: a value of 70000 bytes is longer than the "
        f"protocol's limit of {NAME_MAX} bytes (nothing loaded)\n")
    assert names(dom, "/users") == ["root", "daemon", "nobody"]
    assert raw(dom, "/users") == before


def test_too_many_values_in_one_property_loads_nothing(dom):
    members = ",".join(f"m{i}" for i in range(LIST_MAX + 1))
    text = "staff:*:20:root\nbig:*:30:" + members + "\n"
    p = tool("niload", "group", "-t", dom, stdin=text)
    assert p.returncode == 1
    assert one_line(p.stderr) == (
        f"niload: line 2: property users: {LIST_MAX + 1} values, more than the protocol's "
        f"limit of {LIST_MAX} (nothing loaded)\n")
    assert names(dom, "/") == ["machines"]   # not even /groups was made


def test_more_records_than_a_directory_holds_loads_nothing(dom, monkeypatch):
    # the bound is 1,048,576 children (ni_idlist); a smaller one keeps the test quick
    monkeypatch.setattr(dumps, "BIG_LIST_MAX", 3)
    assert call(niload.main, "passwd", "-t", dom, stdin=BASE)[0] == 0
    rc, out, err = call(niload.main, "-d", "passwd", "-t", dom,
                        stdin=pw("a", 1) + pw("b", 2) + pw("c", 3) + pw("d", 4))
    assert (rc, out) == (1, "")
    assert one_line(err) == ("niload: 4 records: a directory holds at most 3 "
                             "(nothing loaded)\n")
    assert names(dom, "/users") == ["root", "daemon", "nobody"]


# -- #12: niload -r with a bad record in the middle changes nothing -----------------------------

def _raw_children(middle: str) -> str:
    kids = [f'{{ "name" = ( "a{i}" ); }}' for i in range(20)] + [middle] + \
        [f'{{ "name" = ( "b{i}" ); }}' for i in range(20)]
    return '{ "name" = ( "x" );\n  CHILDREN = (\n' + ",\n".join(kids) + "\n  )\n}\n"


@pytest.mark.parametrize("middle, reason", [
    ('{ "name" = ( "' + "z" * 70_000 + '" ); }',
     f"line 23: a value of 70000 bytes is longer than the protocol's limit of {NAME_MAX} "
     "bytes"),
    ('{ "' + "k" * 70_000 + '" = ( "v" ); }',
     f"line 23: a property name of 70000 bytes is longer than the protocol's limit of "
     f"{NAME_MAX} bytes"),
    ('{ "name" = ( "many" ); "v" = ( ' + ", ".join(["x"] * (LIST_MAX + 1)) + " ); }",
     f"line 23: property v: {LIST_MAX + 1} values, more than the protocol's limit of "
     f"{LIST_MAX}"),
    ('{ "name" = ( "huge" ); "v" = ( ' + ", ".join(['"' + "h" * 65_000 + '"'] * 260)
     + " ); }", "line 23: a directory of "
     f"{proplist_bytes([('name', ['huge']), ('v', ['h' * 65_000] * 260)])} bytes is more "
     f"than one call carries ({MAX_PROPLIST_BYTES} bytes)"),
])
def test_raw_load_with_a_bad_record_in_the_middle_changes_nothing(dom, middle, reason):
    assert tool("niutil", "-create", "-t", dom, "/x/old1").returncode == 0
    assert tool("niutil", "-create", "-t", dom, "/x/old2").returncode == 0
    before, inst = raw(dom, "/"), instance(dom, "/x")
    p = tool("niload", "-r", "/x", "-t", dom, stdin=_raw_children(middle))
    assert p.returncode == 1
    assert one_line(p.stderr) == f"niload: {reason}\n"
    assert raw(dom, "/") == before
    assert instance(dom, "/x") == inst   # not even rewritten unchanged


# -- #12: niutil refuses before its first write ----------------------------------------------

def test_niutil_createprop_of_a_100k_value_is_one_clear_line(dom):
    assert tool("niutil", "-create", "-t", dom, "/x").returncode == 0
    before = raw(dom, "/x")
    p = tool("niutil", "-createprop", "-t", dom, "/x", "big", "v" * 100_000)
    assert p.returncode != 0 and p.stdout == ""
    assert one_line(p.stderr) == (
        "niutil: can't modify big in directory /x: a name or value of 100000 bytes is "
        f"longer than the protocol's limit of {NAME_MAX} bytes\n")
    assert raw(dom, "/x") == before


def test_niutil_create_checks_every_component_first(dom):
    p = tool("niutil", "-create", "-t", dom, "/p/q/" + "n" * 70_000)
    assert p.returncode != 0
    assert p.stderr.endswith(": a name or value of 70000 bytes is longer than the "
                             f"protocol's limit of {NAME_MAX} bytes\n")
    assert p.stderr.count("\n") == 1
    assert names(dom, "/") == ["machines"]     # /p and /p/q were not made either
    deep = "/d" * (MAX_DEPTH + 1)
    p = tool("niutil", "-create", "-t", dom, deep)
    assert p.returncode != 0
    assert p.stderr.endswith(f": a path of {MAX_DEPTH + 1} levels is deeper than a server "
                             f"allows ({MAX_DEPTH} levels)\n")
    assert names(dom, "/") == ["machines"]


# -- N7: depth bounded, and what the server holds round-trips -----------------------------------

def test_a_chain_at_the_maximum_depth_round_trips(dom, tmp_path, netinfod):
    # /top is level 1, so MAX_DEPTH - 1 levels below it reach the maximum
    text = raw_to_text(chain(MAX_DEPTH - 1), escape_backslashes=True)
    p = tool("niload", "-r", "/top", "-t", dom, stdin=text)
    assert (p.returncode, p.stderr) == (0, "")
    dumped = raw(dom, "/top")
    assert dumped == text   # the same layout, so the same tree
    # a raw dump is linear in the depth: indentation stops growing (formats.INDENT_LEVELS)
    assert len(dumped) < 500 * MAX_DEPTH
    assert max(len(line) - len(line.lstrip()) for line in dumped.splitlines()) \
        == 4 * INDENT_LEVELS + 2
    # the whole domain, restored into another server (a raw backup of "/")
    whole = raw(dom, "/")
    other = netinfod("other", "-m", directory=tmp_path / "o")
    odom = f"127.0.0.1:{other.port}/other"
    p = tool("niload", "-r", "/", "-t", odom, stdin=whole)
    assert (p.returncode, p.stderr) == (0, "")
    assert raw(odom, "/") == whole


def test_create_beyond_the_maximum_depth_is_refused(dom):
    p = tool("niload", "-r", "/top", "-t", dom,
             stdin=raw_to_text(chain(MAX_DEPTH - 1), escape_backslashes=True))
    assert p.returncode == 0
    deepest = "/top" + "".join(f"/l{i}" for i in range(MAX_DEPTH - 1))

    async def create_below() -> Status:
        c = await open_domain(dom, tagged=True)
        try:
            where = await c.pathsearch(deepest)
            await c.create(where, [("name", ["deeper"])])
        except NiError as e:
            return Status(e.status)
        finally:
            await c.close()
        return Status.OK
    assert asyncio.run(create_below()) == Status.NOSPACE
    # niload -r of one level more: refused before anything is written
    before, inst = raw(dom, "/"), instance(dom, "/top")
    p = tool("niload", "-r", "/top", "-t", dom,
             stdin=raw_to_text(chain(MAX_DEPTH), escape_backslashes=True))
    assert p.returncode == 1
    assert one_line(p.stderr).startswith(
        f"niload: Directories nested deeper than {MAX_DEPTH} levels below the root "
        "(the input goes below /top) at line ")
    assert raw(dom, "/") == before and instance(dom, "/top") == inst


def _old_deep_database(directory: Path, tag: str, levels: int) -> None:
    """A database written before the bound: a chain *levels* deep (made as a master's
    update would reach a clone, which the bound lets through)."""
    master = Caller("127.0.0.1", 700, superuser=True, user="root", from_master=True)
    with open_database(directory, tag, create=True) as db:
        svc = db.service_for_tests()
        cur = 0
        for i in range(levels):
            kid, _ = svc.proc_create(master, svc.proc_self(master, NiId(cur)),
                                     [("name", [f"o{i}"])], NI_INDEX_NULL)
            cur = kid.object
        db.commit()


def test_an_older_deeper_chain_is_still_read_and_dumped(tmp_path, dom):
    levels = MAX_DEPTH + 44
    _old_deep_database(tmp_path / "old", "old", levels)
    d = Netinfod(tmp_path / "old", "old").start()
    try:
        odom = f"127.0.0.1:{d.port}/old"
        deepest = "".join(f"/o{i}" for i in range(levels))
        p = tool("niutil", "-read", "-t", odom, deepest)
        assert (p.returncode, p.stdout) == (0, f"name: o{levels - 1}\n")
        text = raw(odom, "/")
        assert text.count('"name"') == levels and len(text) < 500 * levels
        assert raw_from_text(text, max_depth=levels).children
        # it cannot be restored into a server that keeps the bound: refused whole
        before = raw(dom, "/")
        p = tool("niload", "-r", "/", "-t", dom, stdin=text)
        assert p.returncode == 1
        assert one_line(p.stderr).startswith(
            f"niload: Directories nested deeper than {MAX_DEPTH} levels at line ")
        assert raw(dom, "/") == before
    finally:
        d.stop()


# -- the pure checks -------------------------------------------------------------------------

def test_proplist_problem():
    assert proplist_problem([("name", ["a"]), ("empty", [])]) is None
    assert proplist_problem([("name", ["é" * 30_000])]) is None   # 60,000 bytes: fits
    assert proplist_problem([("name", ["é" * 40_000])]) == (
        "property name: a value of 80000 bytes is longer than the protocol's limit of "
        f"{NAME_MAX} bytes")
    assert proplist_problem([("k" * 65_536, [])]).startswith(
        "a property name of 65536 bytes is longer")
    assert proplist_problem([(f"p{i}", []) for i in range(LIST_MAX + 1)]).startswith(
        f"{LIST_MAX + 1} properties: a directory holds at most {LIST_MAX}")
    big = [("v", ["h" * 65_000] * 260)]
    assert proplist_bytes(big) > MAX_PROPLIST_BYTES
    assert proplist_problem(big) == (f"a directory of {proplist_bytes(big)} bytes is more "
                                     f"than one call carries ({MAX_PROPLIST_BYTES} bytes)")
    assert proplist_problem([("v", ["h" * 65_000] * 250)]) is None


def test_raw_depth_is_counted_below_the_target():
    text = raw_to_text(chain(3))
    assert dumps.check_raw_input(text, "/a").children
    with pytest.raises(FormatError, match="levels below the root"):
        dumps.check_raw_input(text, "/a" * (MAX_DEPTH - 2))
    with pytest.raises(FormatError, match="levels deep; a server allows"):
        dumps.check_raw_input(text, "/a" * (MAX_DEPTH + 1))
