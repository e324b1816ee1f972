"""niload and nidump at scale (issue #10): input parsed and loaded a piece at a time, big
tables pictured by LOOKUP instead of one LIST; tables dumped a window of READs at a time
and trees written as they are read.

The pieces and the LOOKUP picture must give exactly what one whole-input run over a LIST
picture gives (tools §2.7's rules: first child holding the name, create / replace /
merge, aliases, records that rename an entry). These tests load the same tricky input
both ways into real servers and compare the dumps; the piece size and the LIST limit
are shrunk so that a few records cross every boundary.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netinfo.client import dumps
from netinfo.client import flat as formats
from netinfo.client.flat import FORMATS, LINE_FORMATS, RECORD_FORMATS, iter_loaded
from netinfo.client.raw import raw_to_text

from .conftest import Netinfod
from .test_niload import dump, load, populate


def _tree():
    """Nesting, empty directories, a leaf after a subtree, quoting and backslashes."""
    return {"/t": [
        ([("name", ["a"]), ("v", ['q"uote', "back\\slash", ""])],
         [([("name", ["a1"])], [([("name", ["a11"])], []), ([("name", ["a12"])], [])]),
          ([("name", ["a2"]), ("empty", [])], []),
          ([("name", ["a3"])], [([("name", ["a31"])], [])])]),
        ([("name", ["b"])], []),
        ([], [([("name", ["c1"])], [])]),
    ]}


def _whole(fmt: str, text: str):
    got = FORMATS[fmt].from_text(text)
    return got.records, got.notes


def _pieces(fmt: str, text: str | bytes, lines: int):
    records, notes = [], []
    for loaded in iter_loaded(fmt, text, lines):
        records += loaded.records
        notes += loaded.notes
    return records, notes


_LINE = st.sampled_from([
    "a: b, c", "  d, e", "\tf", "#c", "#c\\", "", "x\\", "\t:rm=h:\\", ":rp=q:",
    "lp|x:\\", "u:*:1:1::0:0:U:/h:/bin/sh", "bad:line", "v:*:2:2:V:/h:/sh", "c1\troot=x",
    "h 10.0.0.1", "10.0.0.2 h2 alias", "g:*:5:a,b", "é:\udcff:3:3::0:0::/:/",
])


@settings(max_examples=300, deadline=None)
@given(fmt=st.sampled_from(sorted(LINE_FORMATS)), lines=st.lists(_LINE, max_size=40),
       size=st.integers(1, 7), end=st.booleans())
def test_pieces_parse_exactly_as_the_whole_input(fmt, lines, size, end):
    text = "\n".join(lines) + ("\n" if end and lines else "")
    want = _whole(fmt, text)
    assert _pieces(fmt, text, size) == want
    assert _pieces(fmt, text.encode("utf-8", "surrogateescape"), size) == want


def test_whole_formats_come_in_one_piece():
    text = "%%\nhost 1 00:00:00:00:00:01 10.0.0.1 boot\n"
    assert len(list(iter_loaded("bootptab", text, 1))) == 1


def _input(n: int, seed: int) -> str:
    """passwd lines with repeats (the second of a name replaces or merges into the
    first), and names other entries already hold as an alias."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        k = rnd.randrange(n // 2 + 1)
        out.append(f"u{k}:*:{1000 + i}:20::0:0:User {i}:/home/u{k}:/bin/sh\n")
    return "".join(out)


def _existing():
    """A table whose entries hold several names: the input's names hit the first holder
    (an alias), and one entry holds a name twice."""
    return {"/users": [
        ([("name", ["old", "u3"]), ("uid", ["1"])], []),
        ([("name", ["u3"]), ("uid", ["2"])], []),
        ([("name", ["u5", "u5"]), ("uid", ["3"])], []),
        ([("uid", ["4"])], []),
        ([("name", ["u7"]), ("shell", ["/bin/old"])], []),
    ]}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Two servers: one loaded the way small inputs are, one piece by piece."""
    a = Netinfod(tmp_path_factory.mktemp("whole"), "whole", "-m").start()
    b = Netinfod(tmp_path_factory.mktemp("pieces"), "pieces", "-m").start()
    try:
        yield f"127.0.0.1:{a.port}/whole", f"127.0.0.1:{b.port}/pieces"
    finally:
        a.stop()
        b.stop()


@pytest.mark.parametrize("flags", [(), ("-m",)], ids=["replace", "merge"])
def test_pieces_and_lookup_picture_load_what_one_whole_run_loads(pair, monkeypatch, flags):
    whole, pieces = pair
    text = _input(60, seed=len(flags))
    populate(whole, True, _existing())
    rc, _out, err = load(whole, "-v", *flags, "passwd", stdin=text)
    assert rc == 0, err
    want_log = err
    monkeypatch.setattr(formats, "PIECE_LINES", 7)     # 9 pieces
    monkeypatch.setattr(dumps, "LIST_TABLE", 2)        # LOOKUP picture from the start
    populate(pieces, True, _existing())
    rc, _out, err = load(pieces, "-v", *flags, "passwd", stdin=text)
    assert rc == 0, err
    assert dump(pieces, "-r", "/users") == dump(whole, "-r", "/users")
    # the -v log is the same too (but for the table's count, once, and which server)
    assert err == want_log


def test_a_table_the_run_grows_moves_to_lookups(pair, monkeypatch):
    # Starts empty (LIST pictures), passes LIST_TABLE part way (LOOKUP pictures after).
    whole, pieces = pair
    text = _input(50, seed=5)
    populate(whole, True, {"/users": []})
    rc, _, want_log = load(whole, "-v", "passwd", stdin=text)
    assert rc == 0, want_log
    monkeypatch.setattr(formats, "PIECE_LINES", 4)
    monkeypatch.setattr(dumps, "LIST_TABLE", 6)
    populate(pieces, True, {"/users": []})
    lists = []
    real = dumps.Client.list

    async def counted(self, *a, **kw):
        lists.append(a)
        return await real(self, *a, **kw)
    monkeypatch.setattr(dumps.Client, "list", counted)
    rc, _, err = load(pieces, "-v", "passwd", stdin=text)
    assert rc == 0, err
    assert dump(pieces, "-r", "/users") == dump(whole, "-r", "/users")
    assert err == want_log
    assert 1 <= len(lists) <= 3   # LIST until the table passed 6 children, then LOOKUPs


def _hosts(n: int, seed: int) -> str:
    """hosts lines whose names repeat across lines, as first names and as aliases."""
    rnd = random.Random(seed)
    return "".join(f"10.0.{i // 250}.{i % 250} h{rnd.randrange(n // 3 + 1)} "
                   f"h{rnd.randrange(n // 3 + 1)}\n" for i in range(n))


@pytest.mark.parametrize("flags", [(), ("-m",)], ids=["replace", "merge"])
def test_hosts_with_aliases_load_alike_whole_and_in_pieces(pair, monkeypatch, flags):
    # Records that bring two names, entries holding several keys: the LOOKUP picture
    # takes the child order from CHILDREN.
    whole, pieces = pair
    existing = {"/machines": [([("name", ["h1", "h2"]), ("ip_address", ["1.1.1.1"])], []),
                              ([("name", ["h2"])], []),
                              ([("name", ["h4", "h9"])], [])]}
    text = _hosts(40, seed=3)
    populate(whole, True, existing)
    rc, _, want_log = load(whole, "-v", *flags, "hosts", stdin=text)
    assert rc == 0, want_log
    monkeypatch.setattr(formats, "PIECE_LINES", 6)
    monkeypatch.setattr(dumps, "LIST_TABLE", 1)
    populate(pieces, True, existing)
    rc, _, err = load(pieces, "-v", *flags, "hosts", stdin=text)
    assert rc == 0, err
    assert dump(pieces, "-r", "/machines") == dump(whole, "-r", "/machines")
    assert err == want_log


def test_a_bad_line_anywhere_loads_nothing(pair, monkeypatch):
    _, pieces = pair
    monkeypatch.setattr(formats, "PIECE_LINES", 3)
    populate(pieces, True, {"/users": []})
    before = dump(pieces, "-r", "/users")
    text = _input(20, seed=9) + "broken:line\n" + _input(5, seed=10)
    rc, out, err = load(pieces, "passwd", stdin=text)
    assert (rc, out) == (1, "")
    assert err == "niload: line 21: 2 fields, expected 10 or 7 (nothing loaded)\n"
    assert dump(pieces, "-r", "/users") == before


def test_a_stale_picture_in_a_later_piece_is_read_again(pair, monkeypatch):
    # Another writer adds a child to the table while the second piece is pictured: that
    # piece's first CREATE carries a stale table instance (NI_STALE), so the rest of the
    # piece is pictured and planned again; nothing is lost or duplicated.
    _, pieces = pair
    monkeypatch.setattr(formats, "PIECE_LINES", 4)
    monkeypatch.setattr(dumps, "LIST_TABLE", 0)
    populate(pieces, True, {"/users": [([("name", ["u1"]), ("x", ["1"])], [])]})
    real = dumps.FlatLoad.picture
    seen = []

    async def picture(self, oid, keys):
        got = await real(self, oid, keys)
        seen.append(sorted(keys))
        if len(seen) == 2:
            await self.c.create(got[0], [("name", ["zz"])])
        return got
    monkeypatch.setattr(dumps.FlatLoad, "picture", picture)
    text = "".join(f"u{i}:*:{i}:20::0:0:U:/h:/sh\n" for i in range(10))
    rc, _out, err = load(pieces, "passwd", stdin=text)
    assert rc == 0, err
    got = dump(pieces, "passwd")
    assert sorted(line.split(":")[0] for line in got.splitlines()) == \
        sorted([*(f"u{i}" for i in range(10)), "zz"])
    assert seen[1] == seen[2] == ["u4", "u5", "u6", "u7"]   # the second piece, twice
    assert len(seen) == 4


def test_a_small_table_known_from_its_first_list_needs_no_lookups(pair, monkeypatch):
    # A table of at most LIST_TABLE children is LISTed once; while its instance shows
    # nobody else added or removed a child, later pieces ask no LOOKUP for a name that
    # neither that LIST nor the run's own writes brought (only the repeated ones).
    whole, pieces = pair
    text = _input(40, seed=11)
    populate(whole, True, _existing())
    rc, _, want_log = load(whole, "-v", "passwd", stdin=text)
    assert rc == 0, want_log
    monkeypatch.setattr(formats, "PIECE_LINES", 5)
    populate(pieces, True, _existing())
    asked: list[str] = []
    calls = {"list": 0}
    real_lookup, real_list = dumps.Client.lookup, dumps.Client.list

    async def lookup(self, d, key, value):
        asked.append(value)
        return await real_lookup(self, d, key, value)

    async def listed(self, *a, **kw):
        calls["list"] += 1
        return await real_list(self, *a, **kw)
    monkeypatch.setattr(dumps.Client, "lookup", lookup)
    monkeypatch.setattr(dumps.Client, "list", listed)
    rc, _, err = load(pieces, "-v", "passwd", stdin=text)
    assert rc == 0, err
    assert dump(pieces, "-r", "/users") == dump(whole, "-r", "/users")
    assert err == want_log
    assert calls["list"] == 1
    keys = [line.split(":")[0] for line in text.splitlines()]
    first_piece = set(keys[:5])
    earlier = {k for i, k in enumerate(keys) if k in keys[:i] or k in first_piece}
    existing = {"old", "u3", "u5", "u7"}
    # every LOOKUP is of a name the table may hold; new names are never asked
    asked = [v for v in asked if v != "users"]   # finding the table itself
    assert set(asked) <= earlier | existing
    assert len(asked) < len(keys) - 5


def test_another_writers_child_between_pieces_ends_the_known_names(pair, monkeypatch):
    # Someone adds a child named like a later record between two pieces: the table's
    # instance is not the one the run left, so the run pictures it again (LIST) and the
    # record replaces that child instead of creating a second one.
    _, pieces = pair
    monkeypatch.setattr(formats, "PIECE_LINES", 3)
    populate(pieces, True, {"/users": []})
    real = dumps.FlatLoad.picture
    seen = []

    async def picture(self, oid, keys):
        seen.append(sorted(keys))
        if len(seen) == 2:
            table = await self.c.self_id(oid)
            await self.c.create(table, [("name", ["u7"]), ("shell", ["/bin/other"])])
        return await real(self, oid, keys)
    monkeypatch.setattr(dumps.FlatLoad, "picture", picture)
    text = "".join(f"u{i}:*:{i}:20::0:0:U:/h:/sh\n" for i in range(9))
    rc, _out, err = load(pieces, "passwd", stdin=text)
    assert rc == 0, err
    got = dump(pieces, "passwd")
    names = [line.split(":")[0] for line in got.splitlines()]
    assert sorted(names) == [f"u{i}" for i in range(9)]   # one u7, from the input
    assert "u7:*:7:20::0:0:U:/h:/sh" in got


# -- nidump ------------------------------------------------------------------------------------

def _whole_raw(dom: str, path: str) -> str:
    async def go():
        from netinfo.client.domain import open_domain
        c = await open_domain(dom, tagged=True)
        try:
            return raw_to_text(await dumps.read_subtree(c, path), escape_backslashes=True)
        finally:
            await c.close()
    import asyncio
    return asyncio.run(go())


@pytest.mark.parametrize("window", [1, 2, 3, 2000])
def test_raw_dump_written_as_read_is_the_tree_read_whole(pair, monkeypatch, window):
    _, dom = pair
    populate(dom, True, _tree())
    monkeypatch.setattr(dumps, "DUMP_WINDOW", window)
    for path in ("/t", "/t/a", "/t/b", "/"):
        assert dump(dom, "-r", path) == _whole_raw(dom, path), (path, window)


def test_big_table_dumped_in_windows_is_the_listall_dump(pair, monkeypatch):
    _, dom = pair
    users = [([("name", [f"w{i}"]), ("uid", [str(i)]), ("shell", ["/bin/sh"])], [])
             for i in range(23)]
    populate(dom, True, {"/users": users, "/groups": [([("name", ["g"]), ("gid", ["5"])], [])]})
    want = {fmt: dump(dom, fmt) for fmt in ("passwd", "group", "bootptab")}
    assert want["passwd"].count("\n") == 23
    monkeypatch.setattr(dumps, "LISTALL_TABLE", 0)
    monkeypatch.setattr(dumps, "DUMP_WINDOW", 4)
    assert {fmt: dump(dom, fmt) for fmt in want} == want


@settings(max_examples=100, deadline=None)
@given(fmt=st.sampled_from(sorted(RECORD_FORMATS)), cut=st.integers(0, 6), data=st.data())
def test_record_formats_print_record_by_record(fmt, cut, data):
    keys = ["name", "passwd", "uid", "gid", "ip_address", "en_address", "members",
            "address", "number", "port", "protocol", "dir", "type", "opts", "bootparams",
            "rm", "clients"]
    rec = st.lists(st.tuples(st.sampled_from(keys),
                             st.lists(st.sampled_from(["a", "b c", "", "x:y", "1"]),
                                      max_size=3)), max_size=6)
    records = data.draw(st.lists(rec, max_size=6))
    to_text = FORMATS[fmt].to_text
    assert to_text(records) == to_text(records[:cut]) + to_text(records[cut:])
