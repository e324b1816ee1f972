"""One write, one record (issue 19 item 1): every write procedure, and every template
write, reaches the store and the subscribers as one :class:`~netinfo.storage.changes.Change`
carrying the directories it touched with their states before and after, its storage ops
and a sequence number that increases by one per write and survives a restart.

Both engines (memory, SQLite) run the same table; ``nibindd --init`` and ``netinfod -m``
run as real processes, and their databases are read back afterwards.
"""

from __future__ import annotations

import pytest

from netinfo.cli.nibindd import init_domains
from netinfo.client.core import SyncClient
from netinfo.errors import NiError, StorageError
from netinfo.model import NI_INDEX_NULL, NiId
from netinfo.server.database import Database, open_database
from netinfo.server.service import SUPERUSER
from netinfo.server.templates import create_master, populate_standard, set_password
from netinfo.storage import Image, Meta, Store, open_store
from netinfo.storage.changes import SEQ_KEY, Caller, Change, DirState, Touched
from netinfo.storage.sqlite import SqliteStore
from netinfo.wire.protocol import PROCEDURES, Proc

ALICE_PROPS = [("name", ["alice"]), ("shell", ["sh", "csh"]), ("uid", ["501"])]


class RecordingStore(Store):
    """An engine store that keeps what each commit was given."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.scheme = inner.scheme
        self.commits: list[tuple[list, int, list[Change]]] = []
        self.fail_next = False

    def load(self) -> Image:
        return self.inner.load()

    def exists(self) -> bool:
        return self.inner.exists()

    def source(self, cache=None, cache_bytes=None):
        return self.inner.source(cache, cache_bytes)

    def commit(self, ops, checksum, changes=()) -> None:
        if self.fail_next:
            self.fail_next = False
            raise StorageError("disk full (test)")
        self.commits.append((list(ops), checksum, list(changes)))
        self.inner.commit(ops, checksum, changes)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def url(store_url) -> str:
    """A new domain of each engine under test (conftest: ``NETINFO_TEST_STORES``)."""
    return store_url


class Domain:
    """A database with /users holding alice and bob (bob empty), and what it heard."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.store = RecordingStore(open_store(url))
        self.db = Database(self.store)
        db = self.db
        r = db.call(Proc.ROOT, SUPERUSER, ())
        self.users, _ = db.call(Proc.CREATE, SUPERUSER,
                                (r, [("name", ["users"])], NI_INDEX_NULL, None))
        self.alice, self.users = db.call(Proc.CREATE, SUPERUSER,
                                         (self.users, ALICE_PROPS, NI_INDEX_NULL, None))
        self.bob, self.users = db.call(Proc.CREATE, SUPERUSER,
                                       (self.users, [("name", ["bob"])], NI_INDEX_NULL, None))
        db.commit()
        self.heard: list[list[Change]] = []
        db.subscribe(self.heard.append)

    def props(self, i: NiId):
        return self.db.call(Proc.READ, SUPERUSER, (i,))[1]

    def state(self, i: NiId, position: int | None) -> DirState:
        parent = self.db.call(Proc.PARENT, SUPERUSER, (i,))[0]
        return DirState(i.instance, parent, position, self.props(i))


#: write procedure → (arguments given the Domain, the touched directories' names)
WRITES = {
    Proc.CREATE: (lambda d: (d.users, [("name", ["carol"])], NI_INDEX_NULL, None),
                  ("users", "new")),
    Proc.DESTROY: (lambda d: (d.users, d.bob), ("users", "bob")),
    Proc.WRITE: (lambda d: (d.alice, [("name", ["alice"]), ("uid", ["502"])]), ("alice",)),
    Proc.CREATEPROP: (lambda d: (d.alice, ("home", ["/h"]), 1), ("alice",)),
    Proc.DESTROYPROP: (lambda d: (d.alice, 1), ("alice",)),
    Proc.WRITEPROP: (lambda d: (d.alice, 1, ["zsh"]), ("alice",)),
    Proc.RENAMEPROP: (lambda d: (d.alice, 1, "loginshell"), ("alice",)),
    Proc.CREATENAME: (lambda d: (d.alice, 1, "ksh", 0), ("alice",)),
    Proc.DESTROYNAME: (lambda d: (d.alice, 1, 0), ("alice",)),
    Proc.WRITENAME: (lambda d: (d.alice, 1, 1, "tcsh"), ("alice",)),
}


def test_the_table_covers_every_write_procedure():
    assert set(WRITES) == {p for p, row in PROCEDURES.items() if row.is_write}


@pytest.mark.parametrize("proc", list(WRITES), ids=lambda p: p.name)
def test_every_write_reaches_the_store_and_subscribers_with_before_images(url, proc):
    d = Domain(url)
    db = d.db
    args_of, names = WRITES[proc]
    args = args_of(d)
    # the states before, read as a client would; a position only where the write moves
    # the directory (DESTROY's bob; CREATE's new one, below)
    before = {"users": d.state(d.users, None), "alice": d.state(d.alice, None),
              "bob": d.state(d.bob, 1)}
    ids = {"users": d.users[0], "alice": d.alice[0], "bob": d.bob[0]}
    seq_before = db._seq
    assert seq_before == 3     # the set-up's three CREATEs

    result = db.call(proc, SUPERUSER, args)
    committed = db.commit()

    # the subscriber heard exactly the committed objects, numbered in order
    assert d.heard == [committed] and len(committed) == 1
    (c,) = committed
    assert c.proc == proc and c.args == args and c.result == result
    assert c.caller == SUPERUSER and c.seq == seq_before + 1
    # ... and the store got the same objects, with their ops, in the same transaction
    ops, checksum, changes = d.store.commits[-1]
    assert changes == committed and changes[0] is c and checksum == db.checksum
    assert c.ops and list(c.ops) == ops[:len(c.ops)]
    assert ops[len(c.ops):] == [Meta(SEQ_KEY, c.seq)]

    touched = {t.id: t for t in c.touched}
    if proc == Proc.CREATE:
        new, _ = result
        ids["new"] = new[0]
        assert touched[new[0]] == Touched(new[0], None, d.state(new, 2))
        assert touched[new[0]].after.props == [("name", ["carol"])]
    assert [t.id for t in c.touched] == [ids[n] for n in names]
    assert set(c.directories) == {ids[n] for n in names}
    assert c.expected == {t.id: (before[n].instance if n != "new" else None)
                          for t, n in zip(c.touched, names, strict=True)}
    for name in names:
        t = touched[ids[name]]
        if name == "new":
            continue
        assert t.before == before[name], name
        if proc == Proc.DESTROY and name == "bob":
            assert t.after is None                       # destroyed
            continue
        after = db.call(Proc.SELF, SUPERUSER, (NiId(ids[name], 0),))
        assert t.after == d.state(after, None)
        assert t.after.instance == t.before.instance + 1
    if proc not in (Proc.CREATE, Proc.DESTROY):
        assert touched[ids["alice"]].after.props != touched[ids["alice"]].before.props
    db.close()


@pytest.mark.parametrize("proc", list(WRITES), ids=lambda p: p.name)
def test_a_failed_commit_takes_every_write_back_from_its_before_images(url, proc):
    d = Domain(url)
    db = d.db
    before = db.service_for_tests().image()
    db.call(proc, SUPERUSER, WRITES[proc][0](d))
    # a second write on top, to the same directory: the first before-image wins
    alice = db.call(Proc.SELF, SUPERUSER, (NiId(d.alice[0], 0),))
    db.call(Proc.CREATEPROP, SUPERUSER, (alice, ("extra", ["1"]), 0))
    d.store.fail_next = True
    with pytest.raises(StorageError):
        db.commit()
    assert db.service_for_tests().image() == before and not d.heard
    assert db._seq == 3
    # the numbering goes on from the last durable change
    db.call(Proc.WRITEPROP, SUPERUSER, (d.alice, 0, ["again"]))
    assert [c.seq for c in db.commit()] == [4]
    db.close()


def test_sequence_numbers_increase_and_survive_a_restart(tmp_path):
    url = f"sqlite:{tmp_path / 'd.sqlite'}"
    d = Domain(url)
    seqs = []
    for value in ("a", "b", "c"):
        d.alice = d.db.call(Proc.WRITEPROP, SUPERUSER, (d.alice, 0, [value]))
        seqs += [c.seq for c in d.db.commit()]
    assert seqs == [4, 5, 6]
    d.db.close()
    st = SqliteStore(str(tmp_path / "d.sqlite"))
    try:
        assert st.load().meta[SEQ_KEY] == 6
    finally:
        st.close()
    db = Database(open_store(url))
    try:
        alice = db.call(Proc.SELF, SUPERUSER, (NiId(d.alice[0], 0),))
        db.call(Proc.WRITEPROP, SUPERUSER, (alice, 0, ["d"]))
        assert [c.seq for c in db.commit()] == [7]
    finally:
        db.close()


def test_a_failed_write_is_no_change_and_takes_no_number(url):
    d = Domain(url)
    with pytest.raises(NiError):   # NI_STALE
        d.db.call(Proc.WRITEPROP, SUPERUSER, (NiId(d.alice[0], 99), 0, ["x"]))
    d.db.call(Proc.WRITEPROP, SUPERUSER, (d.alice, 0, ["y"]))
    (c,) = d.db.commit()
    assert c.seq == 4 and [t.id for t in c.touched] == [d.alice[0]]
    d.db.close()


def test_the_authenticated_caller_is_the_one_recorded(url):
    d = Domain(url)
    db = d.db
    # anyone may write alice now
    d.alice = db.call(Proc.CREATEPROP, SUPERUSER, (d.alice, ("_writers", ["*"]), 0))
    db.commit()
    anon = Caller("127.0.0.9", 5000)
    db.call(Proc.WRITEPROP, anon, (d.alice, 2, ["ksh"]))
    (c,) = db.commit()
    assert c.caller == anon and not c.caller.superuser
    db.close()


def test_a_template_write_reaches_a_subscriber(url):
    db = Database(RecordingStore(open_store(url)))
    heard: list[Change] = []
    db.subscribe(heard.extend)
    door = db.procedures
    create_master(door, "net", "here", ["127.0.0.1"])
    populate_standard(door)
    set_password(door, "root", "*")
    changes = db.commit()
    assert heard == changes and len(changes) > 5
    assert [c.seq for c in changes] == list(range(1, len(changes) + 1))
    assert all(c.caller == SUPERUSER and c.touched and c.ops for c in changes)
    assert {c.proc for c in changes} >= {Proc.CREATE, Proc.WRITE}
    users = db.call(Proc.LOOKUP, SUPERUSER, (NiId(0, 0), "name", "users"))[0][0]
    assert any(t.id == users and t.before is None for c in changes for t in c.touched)
    # the store received them in the same transaction
    assert db.store.commits[-1][2] == changes
    db.close()


def test_nibindd_init_writes_through_the_door(tmp_path):
    made = init_domains(tmp_path, root_crypt="*")
    assert made == ["network", "local"]
    for tag in made:
        db = open_database(tmp_path, tag)
        try:
            # every template write was numbered: none went round the database
            assert db._seq > 0
            assert db._seq == db.service_for_tests().source.stored_meta(SEQ_KEY)
        finally:
            db.close()


def _stored_seq(path) -> int:
    st = SqliteStore(str(path))
    try:
        return st.load().meta.get(SEQ_KEY, 0)
    finally:
        st.close()


def test_netinfod_m_writes_through_the_door(tmp_path, netinfod):
    db_file = tmp_path / "chg.nidb" / "netinfo.sqlite"
    server = netinfod("chg", "-m", "--populate")
    server.stop()
    # the master template and the standard directories: a numbered change each
    templates = _stored_seq(db_file)
    assert templates > 5
    # and the writes of clients over the wire go on from there, after a restart
    server = netinfod("chg")
    with SyncClient.connect("127.0.0.1", server.port, "chg") as c:
        made, _ = c.create(c.root(), [("name", ["over-the-wire"])])
        c.createprop(made, "x", ["1"])
    server.stop()
    assert _stored_seq(db_file) == templates + 2



def test_a_write_around_the_door_is_stored_but_flagged(url, caplog):
    d = Domain(url)
    caplog.set_level("WARNING", logger="netinfo.database")
    d.db.procedures.proc_writeprop(SUPERUSER, d.alice, 0, ["through"])
    assert len(d.db.commit()) == 1 and not caplog.records
    alice = d.db.call(Proc.SELF, SUPERUSER, (NiId(d.alice[0], 0),))
    d.db.service_for_tests().proc_writeprop(SUPERUSER, alice, 0, ["around"])   # not through call
    assert d.db.commit() == [] and d.heard[-1][0].args[2] == ["through"]
    assert "committed unrecorded" in caplog.text
    d.db.close()


def test_positions_where_a_write_moves_a_directory(url):
    d = Domain(url)
    db = d.db
    new, d.users = db.call(Proc.CREATE, SUPERUSER, (d.users, [("name", ["first"])], 0, None))
    (c,) = db.commit()
    assert c.touched[1] == Touched(new[0], None, DirState(new.instance, d.users[0], 0,
                                                          [("name", ["first"])]))
    d.users = db.call(Proc.DESTROY, SUPERUSER, (d.users, d.bob))   # bob is third now
    (c,) = db.commit()
    assert c.touched[1] == Touched(d.bob[0], DirState(d.bob.instance, d.users[0], 2,
                                                      [("name", ["bob"])]), None)
    assert c.touched[0].before.position is None and c.touched[0].after.position is None
    db.close()
