"""The bulk paths of issue 20 item 4: niload's checking pass without parsing, its passwd
fast split, calls sent in one window without a task each, nidump's LISTALL taken as it
arrives, the SQLite store's cached end of a child list, and a load cut short by a crash.

Each fast path is held against the slow one it stands in for (same records, notes,
results, dumps), over the real wire where there is one.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netinfo.client import dumps
from netinfo.client import flat as formats
from netinfo.client.core import Client
from netinfo.client.flat import FORMATS, iter_loaded, survey
from netinfo.errors import NiError, Status, StorageError, Timeout, WireError
from netinfo.model import NiId
from netinfo.storage import KidDel, KidIns, Put
from netinfo.storage.sqlite import SqliteStore, key_row_list
from netinfo.wire.proplist import decode_proplist, encode_proplist, take_proplists
from netinfo.wire.protocol import Proc

from .conftest import Netinfod, env_with_src
from .test_niload import dump, load, populate

# -- the checking pass and the passwd split (pure) ---------------------------------------------

_PIECES = st.sampled_from([
    "u:*:1:2::0:0:U One:/h:/bin/sh", "#comment", "", "   ", "v:*:2:2:V:/h:/sh",
    "w:x:3:3::0:0: Lead:/h:/bin/sh", "x:x:4:4::0:0:Trail :/h:/sh ", "+nis:::::::::",
    "a:b:c", ":*:5:5::0:0::/:/", "é:\udcff:6:6::0:0::/:/", "t\tab:1:2:3:4:5:6:7:8:9",
    "y:" + "z" * 5000 + ":7:7::0:0::/:/", "m:1:2:3:4:5:6:7:8:9:10", "#x:1:2:3:4:5:6:7:8:9",
])


def _reference(fmt: str, text: str | bytes, lines: int):
    total, notes = 0, []
    for loaded in iter_loaded(fmt, text, lines):
        total += len(loaded.records)
        notes += loaded.notes
    return total, notes


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(_PIECES, max_size=12), end=st.booleans(), piece=st.integers(1, 5),
       as_bytes=st.booleans(), fmt=st.sampled_from(["passwd", "passwd.43"]))
def test_survey_counts_what_parsing_gives(lines, end, piece, as_bytes, fmt):
    text = "\n".join(lines) + ("\n" if end and lines else "")
    data: str | bytes = text.encode("utf-8", "surrogateescape") if as_bytes else text
    assert survey(fmt, data, piece) == _reference(fmt, data, piece)


def _slow_passwd(text: str):
    """The passwd parse without the split fast path: every line through _fields."""
    records = []
    for _, line in formats._lines(text):
        fields = formats._fields(line, ":")
        if len(fields) == 10 and not fields[0].startswith("+"):
            records.append(formats._user(fields, formats._PASSWD10))
    return records


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["a", "b c", " d", "e ", "", "\t", "f\t", "+g",
                                          "é", "\udcff", "#"]), min_size=10, max_size=10),
                max_size=6))
def test_passwd_split_gives_the_records_of_the_field_parser(rows):
    text = "".join(":".join(r) + "\n" for r in rows)
    got = [r for r in FORMATS["passwd"].from_text(text).records]
    assert got == _slow_passwd(text)


def test_a_plain_piece_is_not_parsed(monkeypatch):
    text = "".join(f"u{i}:*:{i}:20::0:0:U {i}:/h:/bin/sh\n" for i in range(50))
    seen = []
    real = formats._parse_piece
    monkeypatch.setattr(formats, "_parse_piece",
                        lambda *a: seen.append(a[2]) or real(*a))
    assert survey("passwd", text.encode(), 20) == (50, [])
    assert seen == []
    # one 7-field line: only its piece is parsed, and its note comes out numbered
    lines = text.splitlines(keepends=True)
    lines[33] = "s:*:9:9:S:/h:/sh\n"
    total, notes = survey("passwd", "".join(lines), 20)
    assert (total, seen) == (50, [20])
    assert [(n.line, n.kind) for n in notes] == [(34, "passwd7")]


# -- proplists taken from a reply as it arrives (pure) -----------------------------------------

def test_take_proplists_at_every_cut():
    lists = [[("name", [f"u{i}"]), ("v", ["x" * (i * 7 % 23), "é\udcff"]), ("e", [])]
             for i in range(9)]
    blob = b"".join(encode_proplist(p) for p in lists)
    for cut in range(len(blob) + 1):
        got, at = take_proplists(blob[:cut], 0, 100, 1 << 20)
        more, end = take_proplists(blob[at:], 0, 100, 1 << 20)
        assert got + more == lists and at + end == len(blob)
        assert [encode_proplist(p) for p in got] == [encode_proplist(p) for p in lists[:len(got)]]
    assert take_proplists(blob, 0, 3, 1 << 20)[0] == lists[:3]


def test_take_proplists_refuses_what_cannot_be_whole():
    bad = b"\0\0\0\1" + b"\xff\xff\xff\xff" + b"\0" * 60   # a name of 4 GiB
    assert take_proplists(bad, 0, 5, 1 << 20) == ([], 0)   # might still come: wait
    with pytest.raises(WireError):
        take_proplists(bad, 0, 5, 64)                      # 64 bytes at hand: no


# -- over the wire -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = Netinfod(tmp_path_factory.mktemp("bulk"), "bulk", "-m").start()
    try:
        yield d
    finally:
        d.stop()


def _users(n: int, tag: str = "u") -> str:
    return "".join(f"{tag}{i:04d}:$1$s$h{i}:{1000 + i}:20::0:0:User é {i}:/Users/{tag}{i}:"
                   f"/bin/{'z' * (i % 37)}sh\n" for i in range(n))


def test_call_window_gives_each_result_or_error_in_order(server):
    dom = f"127.0.0.1:{server.port}/bulk"
    populate(dom, True, {"/cw": [([("name", [f"c{i}"])], []) for i in range(5)]})

    async def go():
        c = await Client.connect("127.0.0.1", server.port, "bulk")
        try:
            table = await c.pathsearch("/cw")
            kids, _ = await c.children(table)
            calls = [(Proc.READ, (NiId(k, 0),)) for k in kids]
            calls.insert(2, (Proc.READ, (NiId(999_999, 0),)))   # no such directory
            seen = []
            out = {w: await c.call_window(calls, window=w, done=seen.append)
                   for w in (1, 3, 64)}
            return kids, out, seen, await c.call_window([], window=4)
        finally:
            await c.close()

    kids, out, seen, empty = asyncio.run(go())
    assert empty == [] and seen == list(range(6)) * 3
    for got in out.values():
        assert isinstance(got[2], NiError) and got[2].status == Status.BADID
        rest = got[:2] + got[3:]
        assert [r[0].object for r in rest] == kids
        assert [dict(r[1])["name"] for r in rest] == [[f"c{i}"] for i in range(5)]


def test_call_window_times_out_every_call_left():
    async def go():
        async def mute(reader, writer):   # takes the calls, answers none
            while await reader.read(1 << 16):
                pass
            writer.close()
        srv = await asyncio.start_server(mute, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        c = await Client.connect("127.0.0.1", port, "x", privileged=False, timeout=0.3)
        try:
            t = time.monotonic()
            got = await c.call_window([(Proc.READ, (NiId(i, 0),)) for i in range(7)],
                                      window=3)
            return got, time.monotonic() - t, c.conn.waiting
        finally:
            await c.close()
            srv.close()

    got, took, waiting = asyncio.run(go())
    assert len(got) == 7 and all(isinstance(r, Timeout) for r in got)
    assert 0.3 <= took < 2 and not waiting


def test_a_big_table_streamed_dumps_as_one_listall(server, monkeypatch):
    dom = f"127.0.0.1:{server.port}/bulk"
    rc, _, err = load(dom, "passwd", stdin=_users(1500))
    assert rc == 0, err
    want = dump(dom, "passwd")
    assert want.count("\n") == 1500
    monkeypatch.setattr(dumps, "LISTALL_TABLE", 10)
    asked = []
    real = Client.listall_stream

    async def spy(self, d):
        asked.append(d)
        return await real(self, d)
    monkeypatch.setattr(Client, "listall_stream", spy)
    assert dump(dom, "passwd") == want
    assert len(asked) == 1


def test_listall_stream_of_a_missing_directory_is_its_status(server):
    async def go():
        c = await Client.connect("127.0.0.1", server.port, "bulk")
        try:
            with pytest.raises(NiError) as e:
                await c.listall_stream(987_654)
            # the connection goes on
            return e.value.status, await c.self_id(0)
        finally:
            await c.close()

    status, root = asyncio.run(go())
    assert status == Status.BADID and root.object == 0


# -- the SQLite store --------------------------------------------------------------------------

def _rows(db: sqlite3.Connection, table: str):
    return sorted(db.execute(f"SELECT * FROM {table}").fetchall())


def test_appends_after_removals_keep_the_order_and_the_index(tmp_path):
    path = str(tmp_path / "s.sqlite")
    s = SqliteStore(path)
    props = {i: [("name", [f"n{i}", "alias"]), ("uid", [str(i)])] for i in range(1, 9)}
    s.commit([Put(0, 1, 0, [])], 0)
    s.commit([op for i in range(1, 5) for op in (Put(i, 1, 0, props[i]), KidIns(0, i - 1, i))],
             0)
    # the last one goes, then appends: each lands after the list's true end
    s.commit([KidDel(0, 4), Put(5, 1, 0, props[5]), KidIns(0, 3, 5)], 0)
    s.commit([KidIns(0, 0, 6), Put(6, 1, 0, props[6]), Put(7, 1, 0, props[7]),
              KidIns(0, 5, 7)], 0)
    with pytest.raises(StorageError):   # a failed batch: nothing of it stays, caches dropped
        s.commit([Put(8, 1, 0, props[8]), KidIns(0, 6, 8), KidDel(0, 1), ("bogus",)], 0)
    s.commit([Put(8, 1, 0, props[8]), KidIns(0, 9, 8)], 0)
    order = [k for (k,) in s._conn.execute("SELECT child FROM kids WHERE parent = 0 "
                                            "ORDER BY ord")]
    assert order == [6, 1, 2, 3, 5, 7, 8]
    s.close()
    s = SqliteStore(path)   # after a restart: the same list, the same index
    image = s.load()
    assert list(image.children[0]) == order
    db = sqlite3.connect(path)
    want = sorted({r for oid, parent, blob in db.execute("SELECT id, parent, props FROM dirs")
                   for r in key_row_list(oid, parent, decode_proplist(blob))})
    assert _rows(db, "keys") == want
    assert {c for (c,) in db.execute("SELECT child FROM keys WHERE key = ? AND value = ?",
                                     (b"name", b"alias"))} == {1, 2, 3, 5, 6, 7, 8, 4}
    db.close()
    s.close()


def test_an_append_after_the_end_was_re_keyed_is_last(tmp_path):
    # inserts just before the last child use up the room there: the rows around it,
    # the last one included, get new keys (_spread), and the next append goes after it
    s = SqliteStore(str(tmp_path / "s.sqlite"))
    s.commit([Put(0, 1, 0, []), KidIns(0, 0, 1), KidIns(0, 1, 2)], 0)
    n = 2
    for child in range(3, 60):
        s.commit([KidIns(0, n - 1, child)], 0)
        n += 1
    s.commit([KidIns(0, n, 99)], 0)
    order = [k for (k,) in s._conn.execute("SELECT child FROM kids WHERE parent = 0 "
                                            "ORDER BY ord")]
    assert order == [1, *range(3, 60), 2, 99]
    s.close()


def test_a_load_cut_short_by_a_crash_leaves_a_consistent_domain(tmp_path):
    n = 6000
    d = Netinfod(tmp_path, "crash", "-m").start()
    dom = f"127.0.0.1:{d.port}/crash"
    text = _users(n, "k")
    p = subprocess.Popen([sys.executable, "-m", "netinfo.cli.niload", "passwd", "-t", dom],
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=env_with_src())
    assert p.stdin is not None
    p.stdin.write(text.encode())
    p.stdin.close()
    db_path = tmp_path / "crash.nidb" / "netinfo.sqlite"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:   # some users are in, not all
        time.sleep(0.05)
        try:
            with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
                if db.execute("SELECT count(*) FROM dirs").fetchone()[0] > 300:
                    break
        except sqlite3.Error:
            continue
    assert d.stop(signal.SIGKILL) == -signal.SIGKILL
    assert p.wait(60) != 0   # niload saw its server go
    p.stderr.close()
    with sqlite3.connect(db_path) as db:
        made = db.execute("SELECT count(*) FROM kids WHERE parent = (SELECT parent FROM "
                          "dirs ORDER BY id DESC LIMIT 1)").fetchone()[0]   # /users
        assert 0 < made < n
        # the index holds exactly the rows of what is stored, children exactly the dirs
        want = sorted({r for oid, parent, blob in
                       db.execute("SELECT id, parent, props FROM dirs")
                       for r in key_row_list(oid, parent, decode_proplist(blob))})
        assert _rows(db, "keys") == want
        kids = {c for (c,) in db.execute("SELECT child FROM kids")}
        assert kids == {i for (i,) in db.execute("SELECT id FROM dirs WHERE id != 0")}
    d.start()
    try:
        have = dump(dom, "passwd")
        assert have.count("\n") == made and text.startswith(have)
        names = [ln.split(":", 1)[0] for ln in text.splitlines()]
        # LOOKUP (the persisted index) finds each stored user and none of the others
        assert _found(d.port, names[made - 3:made + 3]) == [True] * 3 + [False] * 3
        rc, _, err = load(dom, "passwd", stdin=text)   # the load again completes it
        assert rc == 0, err
        assert dump(dom, "passwd") == text
        assert _found(d.port, names[made - 3:made + 3]) == [True] * 6
    finally:
        d.stop()


def _found(port: int, names: list[str]) -> list[bool]:
    async def go():
        c = await Client.connect("127.0.0.1", port, "crash")
        try:
            table = await c.pathsearch("/users")
            got = await c.call_window([(Proc.LOOKUP, (table, "name", nm)) for nm in names],
                                      window=8)
            return [not isinstance(r, NiError) and len(r[0]) == 1 for r in got]
        finally:
            await c.close()
    return asyncio.run(go())


# -- a flat load's stream of pieces (issue 20 item 4: the server never waits between them) --

def _spy_pictures(monkeypatch) -> list[int]:
    """Count the pictures of the table a load takes (one per piece not streamed)."""
    seen: list[int] = []
    real = dumps.FlatLoad.picture

    async def picture(self, oid, keys):
        seen.append(len(keys))
        return await real(self, oid, keys)
    monkeypatch.setattr(dumps.FlatLoad, "picture", picture)
    return seen


def _load_both(tmp_path, monkeypatch, name: str, text: str, *extra: str):
    """Load *text* into two new domains, streamed and with every piece pictured (the
    path before the stream); the -v output and the dump of each."""
    monkeypatch.setattr(formats, "PIECE_LINES", 40)
    out = []
    for stream in (True, False):
        d = Netinfod(tmp_path / f"{name}{stream}", "s", "-m").start()
        try:
            dom = f"127.0.0.1:{d.port}/s"
            if not stream:
                monkeypatch.setattr(dumps.FlatLoad, "fast_plan", lambda self, oid, r: None)
            pictures = _spy_pictures(monkeypatch)
            rc, stdout, err = load(dom, "-v", *extra, "passwd", stdin=text)
            assert rc == 0, err
            out.append((stdout, err, dump(dom, "passwd"), dump(dom, "-r", "/users"),
                        len(pictures)))
        finally:
            d.stop()
            monkeypatch.undo()
            monkeypatch.setattr(formats, "PIECE_LINES", 40)
    return out


def test_a_streamed_load_matches_the_pictured_one(tmp_path, monkeypatch):
    # 400 users in pieces of 40, with a record without a name, a name twice (in one
    # piece: that piece is pictured) and a comment: -v output, dumps and order the same
    lines = _users(400, "s").splitlines(keepends=True)
    lines[130] = ":*:5:5::0:0::/:/\n"
    lines[250] = lines[245]
    lines.insert(300, "# a comment\n")
    streamed, pictured = _load_both(tmp_path, monkeypatch, "m", "".join(lines))
    assert streamed[:4] == pictured[:4]
    assert streamed[2].count("\n") == 398   # one without a name, s0250 replaced
    assert "input item has no name - ignored" in streamed[1]
    # the first piece and the one with the name twice were pictured; the rest streamed
    assert (streamed[4], pictured[4]) == (2, 11)


def test_a_streamed_load_with_merge_matches_too(tmp_path, monkeypatch):
    streamed, pictured = _load_both(tmp_path, monkeypatch, "g", _users(200, "g"), "-m")
    assert streamed[:4] == pictured[:4] and streamed[4] == 1


def _write_meanwhile(port: int, when, what):
    """Run *what(client)* on another connection (its own thread and loop) as the load
    takes a piece that *when(records)* accepts, once."""
    import threading
    real = dumps._Ahead.take
    done: list[bool] = []

    def take(self):
        recs = real(self)
        if recs and not done and when(recs):
            done.append(True)

            async def go():
                c = await Client.connect("127.0.0.1", port, "s")
                try:
                    await what(c)
                finally:
                    await c.close()
            t = threading.Thread(target=lambda: asyncio.run(go()))
            t.start()
            t.join()
        return recs
    return take, done


def _props(name: str, uid: str) -> list:
    return [("name", [name]), ("uid", [uid])]


def test_a_stream_that_another_writer_overtakes_is_planned_again(tmp_path, monkeypatch):
    # While piece 4 is planned (pieces 2-3 out), somebody else creates s0300 (a name of
    # piece 8) in /users: the stream's predicted instances fail (NI_STALE); the rest is
    # planned again from a fresh read, and s0300 is replaced, never made twice.
    monkeypatch.setattr(formats, "PIECE_LINES", 40)
    d = Netinfod(tmp_path, "s", "-m").start()
    try:
        dom = f"127.0.0.1:{d.port}/s"
        text = _users(400, "s")
        rc, _, err = load(dom, "passwd", stdin=text[:text.index("s0001:")])
        assert rc == 0, err

        async def other(c):
            users = await c.pathsearch("/users")
            await c.create(await c.self_id(users), _props("s0300", "77"))
        take, done = _write_meanwhile(d.port, lambda r: dict(r[0])["name"] == ["s0120"],
                                      other)
        monkeypatch.setattr(dumps._Ahead, "take", take)
        rc, _, err = load(dom, "passwd", stdin=text)
        assert rc == 0, err
        assert done
        have = dump(dom, "passwd").splitlines(keepends=True)
        assert sorted(have) == sorted(text.splitlines(keepends=True))
        names = [ln.split(":", 1)[0] for ln in have]
        assert len(names) == len(set(names)) == 400
    finally:
        d.stop()


def test_a_table_locked_during_the_stream_stops_the_load(tmp_path, monkeypatch):
    # /users locked meanwhile: the stream fails (NI_STALE), the rest is planned again and
    # its first CREATE is refused (NI_RDONLY): niload says which, and nothing after it
    # is in
    monkeypatch.setattr(formats, "PIECE_LINES", 40)
    d = Netinfod(tmp_path, "s", "-m").start()
    try:
        dom = f"127.0.0.1:{d.port}/s"
        text = _users(400, "s")

        async def lock(c):
            users = await c.pathsearch("/users")
            await c.write(await c.self_id(users), [("name", ["users"]), ("_locked", [])])
        take, done = _write_meanwhile(d.port, lambda r: dict(r[0])["name"] == ["s0200"],
                                      lock)
        monkeypatch.setattr(dumps._Ahead, "take", take)
        rc, _, err = load(dom, "passwd", stdin=text)
        assert done and rc == 1
        have = dump(dom, "passwd")
        assert 0 < have.count("\n") < 400 and text.startswith(have)
        first_out = text.splitlines()[have.count("\n")].split(":", 1)[0]
        assert err == (f"niload: can't update NetInfo /users/{first_out}: "
                       "No writes allowed: all objects are read-only\n"), err
    finally:
        d.stop()


# -- a CREATE's LOOKUP rows taken as its proplist is decoded (issue 20 item 4) -----------------

_NAMES = st.sampled_from(["name", "uid", "n", "", "é", "\udcff", "name "])
_VALUES = st.lists(st.sampled_from(["a", "", "é", "\udcfe\udcff", "x" * 9, "a"]), max_size=4)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=8))
def test_the_pairs_taken_while_decoding_make_the_rows_encoding_makes(props):
    from netinfo.wire.proplist import _scan_proplist, unpack_wire_proplist
    from netinfo.wire.xdr import Unpacker
    data = encode_proplist([(k, list(v)) for k, v in props]) + b"\0\0\0\7"
    u = Unpacker(data)
    got = unpack_wire_proplist(u)
    assert got.firsts is not None and u.pos == len(data) - 4
    assert list(got) == _scan_proplist(data, 0)[0] == [(k, list(v)) for k, v in props]
    assert got.wire == data[:-4]
    assert key_row_list(7, 3, got) == key_row_list(7, 3, list(got))
    assert got.firsts is None   # used once: the cached directory does not keep them
    assert key_row_list(7, 3, got) == key_row_list(7, 3, list(got))


def test_created_directories_are_indexed_as_stored(tmp_path):
    # odd proplists over the wire: a name twice (only its first property is looked
    # up), several values, a value twice, none, bytes that are not UTF-8; the keys
    # table then holds exactly the rows the stored proplists give
    d = Netinfod(tmp_path, "k", "-m").start()
    try:
        odd = [[("name", ["a", "b", "a"]), ("uid", ["1"]), ("name", ["c"])],
               [("name", ["é"]), ("e", []), ("v", ["", "\udcff\udcfe", "é"])],
               [("x", ["1"])], []]

        async def go():
            c = await Client.connect("127.0.0.1", d.port, "k")
            try:
                made = [(await c.create(await c.self_id(0), props))[0].object
                        for props in odd]
                root = await c.self_id(0)
                return made, [await dumps._holders(c, root, "b"),
                              await dumps._holders(c, root, "c"),
                              (await c.lookup(root, "v", "\udcff\udcfe"))[0]]
            finally:
                await c.close()
        made, found = asyncio.run(go())
        assert found == [[made[0]], [], [made[1]]]
    finally:
        d.stop()
    with sqlite3.connect(tmp_path / "k.nidb" / "netinfo.sqlite") as db:
        want = sorted({r for oid, parent, blob in db.execute("SELECT id, parent, props FROM dirs")
                       for r in key_row_list(oid, parent, list(decode_proplist(blob)))})
        assert _rows(db, "keys") == want
        assert (b"name", b"c") not in {(k, v) for _, k, v, _ in want}
        assert (b"v", b"\xff\xfe") in {(k, v) for _, k, v, _ in want}
