"""The NIS front door (issue 21): maps rendered from a NetInfo domain (server/nismaps.py),
YP v2 answered by the dispatcher (server/nis.py), and a real netinfod --nis-domain asked
over UDP and TCP on loopback. The real clients (ypbind, ypcat, nss_nis) are in
tests/test_nis_clients.py."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netinfo.errors import RpcError
from netinfo.model import NI_INDEX_NULL, NiId
from netinfo.server import nismaps
from netinfo.server.netinfod import yp_program
from netinfo.server.nis import NisDoor
from netinfo.server.service import SUPERUSER
from netinfo.server.templates import create_master, ensure_dir
from netinfo.storage.changes import Caller
from netinfo.wire import rpc, yp
from netinfo.wire.yp import YpProc, YpStat

from .conftest import env_with_src

DOM = "nitest"
ALICE = [("name", ["alice"]), ("passwd", ["$6$salt$hash"]), ("uid", ["5001"]),
         ("gid", ["5001"]), ("realname", ["Alice A."]), ("home", ["/home/alice"]),
         ("shell", ["/bin/sh"]), ("change", ["0"]), ("expire", ["0"])]
BOB = [("name", ["bob"]), ("passwd", ["*"]), ("uid", ["5002"]), ("gid", ["5001"]),
       ("realname", ["Bob"]), ("home", ["/home/bob"]), ("shell", ["/bin/bash"]),
       ("netgroups", ["staff"])]


def populate(door) -> None:
    """Users, groups, hosts, services, protocols, rpcs, aliases and mounts."""
    def add(dirname, props):
        d = ensure_dir(door, dirname)
        door.proc_create(SUPERUSER, door.proc_self(SUPERUSER, NiId(d)), props, NI_INDEX_NULL)
    add("users", ALICE)
    add("users", BOB)
    add("groups", [("name", ["niusers"]), ("passwd", ["*"]), ("gid", ["5001"]),
                   ("users", ["alice", "bob"])])
    add("machines", [("name", ["fileserver", "fs"]), ("ip_address", ["10.0.0.2"]),
                     ("netgroups", ["staff"])])
    add("services", [("name", ["ssh"]), ("port", ["22"]), ("protocol", ["tcp"])])
    add("protocols", [("name", ["tcp", "TCP"]), ("number", ["6"])])
    add("rpcs", [("name", ["netinfo"]), ("number", ["200100000"])])
    add("aliases", [("name", ["postmaster"]), ("members", ["alice", "bob"])])
    add("mounts", [("name", ["fileserver:/export/home"]), ("dir", ["/home/share"]),
                   ("opts", ["rw"]), ("vfstype", ["nfs"])])


# -- the lines ------------------------------------------------------------------------------------

def test_lines_are_the_flat_files():
    assert nismaps.passwd_line(ALICE) == "alice:x:5001:5001:Alice A.:/home/alice:/bin/sh"
    assert nismaps.shadow_line(ALICE) == "alice:$6$salt$hash:::::::"
    assert nismaps.shadow_line([("name", ["c"]), ("uid", ["1"]), ("passwd", []),
                                ("expire", ["864000"]), ("change", ["86400"])]) \
        == "c:*:0:::::10:"
    assert nismaps.group_line([("name", ["g"]), ("passwd", ["$1$x"]), ("gid", ["7"]),
                               ("users", ["a", "b"])]) == "g:x:7:a,b"
    # a field that would break the line leaves the entry out
    assert nismaps.passwd_line([("name", ["e:vil"]), ("uid", ["1"]), ("gid", ["1"])]) is None
    assert nismaps.passwd_line([("name", ["n"]), ("uid", ["x"]), ("gid", ["1"])]) is None
    assert list(nismaps.hosts_byname([("name", ["h", "al"]), ("ip_address", ["1.2.3.4"])])) \
        == [("h", "1.2.3.4\th al"), ("al", "1.2.3.4\th al")]
    assert list(nismaps.services_byname([("name", ["ssh"]), ("port", ["22"]),
                                         ("protocol", ["tcp", "udp"])])) \
        == [("22/tcp", "ssh\t22/tcp"), ("22/udp", "ssh\t22/udp")]
    assert nismaps.automount_map("/home/share") == ("/home", "auto.home")
    assert nismaps.automount_map("/net") == ("/-", "auto.direct")


# -- the door through the dispatcher --------------------------------------------------------------

@pytest.fixture
def door(wire):
    populate(wire.db.procedures)
    wire.db.commit()
    d = NisDoor(wire.db, [DOM], master="niserver")
    wire.dispatcher.add_program(yp_program(d)(wire.dispatcher))
    yield wire
    d.close()


def call(w, proc: int, args: bytes, port: int = 40000, vers: int = 2) -> bytes | None:
    """One YP call through the dispatcher; the result body (None: no reply)."""
    rec = rpc.encode_call(7, yp.YPPROG, vers, proc, args)
    reply = w.exchange(rec, Caller("127.0.0.1", port))
    if reply is None:
        return None
    _, u = rpc.decode_reply(reply)
    return u.data[u.pos:]


def match(w, name: str, key: bytes, port: int = 40000) -> tuple[int, bytes]:
    body = call(w, YpProc.MATCH, yp.encode_key(DOM, name, key), port)
    assert body is not None
    return yp.decode_val(body)


def test_match_every_map(door):
    ok = YpStat.TRUE
    assert match(door, "passwd.byname", b"alice") == \
        (ok, b"alice:x:5001:5001:Alice A.:/home/alice:/bin/sh")
    assert match(door, "passwd.byuid", b"5002")[1].startswith(b"bob:x:5002:")
    assert match(door, "group.byname", b"niusers") == (ok, b"niusers:*:5001:alice,bob")
    assert match(door, "group.bygid", b"5001")[0] == ok
    assert match(door, "hosts.byname", b"fs") == (ok, b"10.0.0.2\tfileserver fs")
    assert match(door, "hosts.byaddr", b"10.0.0.2")[0] == ok
    assert match(door, "services.byname", b"22/tcp") == (ok, b"ssh\t22/tcp")
    assert match(door, "services.byservicename", b"ssh/tcp") == (ok, b"ssh\t22/tcp")
    assert match(door, "services.byservicename", b"ssh")[0] == ok
    assert match(door, "protocols.bynumber", b"6") == (ok, b"tcp\t6 TCP")
    assert match(door, "rpc.byname", b"netinfo") == (ok, b"netinfo\t200100000")
    assert match(door, "mail.aliases", b"postmaster") == (ok, b"alice,bob")
    assert match(door, "netgroup", b"staff") == (ok, b"(fileserver,-,nitest) (-,bob,nitest)")
    assert match(door, "netid.byname", b"unix.5001@nitest") == (ok, b"5001:5001")
    assert match(door, "auto.master", b"/home") == (ok, b"auto.home")
    assert match(door, "auto.home", b"share") == (ok, b"-rw fileserver:/export/home")


def test_keys_are_exact_and_failures_are_yp_statuses(door):
    # exact, as ypserv 4.2 (measured): neither another case nor a C string's NUL
    assert match(door, "passwd.byname", b"Alice")[0] == YpStat.NOKEY
    assert match(door, "passwd.byname", b"alice\0")[0] == YpStat.NOKEY
    assert match(door, "nosuch.map", b"x")[0] == YpStat.NOMAP
    body = call(door, YpProc.MATCH, yp.encode_key("other", "passwd.byname", b"alice"))
    assert yp.decode_val(body)[0] == YpStat.NODOM


def test_shadow_only_to_a_reserved_port(door):
    # NOMAP, as ypserv 4.2 answers an unprivileged port (measured)
    assert match(door, "shadow.byname", b"alice", port=40000)[0] == YpStat.NOMAP
    assert match(door, "shadow.byname", b"alice", port=700) == \
        (YpStat.TRUE, b"alice:$6$salt$hash:::::::")


def test_domain_and_nonack(door):
    assert yp.decode_bool(call(door, YpProc.DOMAIN, yp.encode_domain(DOM)))
    assert not yp.decode_bool(call(door, YpProc.DOMAIN, yp.encode_domain("other")))
    assert call(door, YpProc.DOMAIN_NONACK, yp.encode_domain("other")) is None
    assert yp.decode_bool(call(door, YpProc.DOMAIN_NONACK, yp.encode_domain(DOM)))
    assert call(door, YpProc.NULL, b"") == b""


def test_first_next_walk_the_map_and_end_at_a_deleted_key(door):
    keys = []
    stat, key, _ = yp.decode_key_val(call(door, YpProc.FIRST, yp.encode_nokey(DOM,
                                                                              "passwd.byname")))
    while stat == YpStat.TRUE:
        keys.append(key)
        stat, key, _ = yp.decode_key_val(call(door, YpProc.NEXT, yp.encode_key(
            DOM, "passwd.byname", key)))
    assert stat == YpStat.NOMORE
    assert keys == [b"alice", b"bob"]
    # alice goes: NEXT after her answers NOMORE, as ypserv 4.2 does after a key its map
    # does not hold (measured)
    db = door.db
    p = db.procedures
    users = ensure_dir(p, "users")
    alice = p.proc_lookup(SUPERUSER, NiId(users), "name", "alice")[0][0]
    p.proc_destroy(SUPERUSER, p.proc_self(SUPERUSER, NiId(users)),
                   p.proc_self(SUPERUSER, NiId(alice)))
    db.commit()
    stat, key, _ = yp.decode_key_val(call(door, YpProc.NEXT, yp.encode_key(
        DOM, "passwd.byname", b"alice")))
    assert (stat, key) == (YpStat.NOMORE, b"")
    stat, key, _ = yp.decode_key_val(call(door, YpProc.FIRST, yp.encode_nokey(
        DOM, "passwd.byname")))
    assert key == b"bob"


def test_order_moves_and_match_sees_every_write(door):
    args = yp.encode_nokey(DOM, "passwd.byname")
    before = yp.decode_order(call(door, YpProc.ORDER, args))
    assert before[0] == YpStat.TRUE
    populate_one = door.db.procedures
    users = ensure_dir(populate_one, "users")
    populate_one.proc_create(SUPERUSER, populate_one.proc_self(SUPERUSER, NiId(users)),
                             [("name", ["carol"]), ("uid", ["5003"]), ("gid", ["5001"])],
                             NI_INDEX_NULL)
    door.db.commit()
    after = yp.decode_order(call(door, YpProc.ORDER, args))
    assert after[1] > before[1]
    assert match(door, "passwd.byname", b"carol") == (YpStat.TRUE, b"carol:x:5003:5001:::")
    # the sorted keys were dropped: the walk shows carol
    body = call(door, YpProc.ALL, args)
    entries, end = yp.decode_all(body)
    assert end == YpStat.NOMORE and (b"carol", b"carol:x:5003:5001:::") in entries


def test_all_master_maplist_xfr_clear(door):
    entries, end = yp.decode_all(call(door, YpProc.ALL, yp.encode_nokey(DOM, "group.bygid")))
    assert entries == [(b"5001", b"niusers:*:5001:alice,bob")] and end == YpStat.NOMORE
    entries, _ = yp.decode_all(call(door, YpProc.ALL, yp.encode_nokey(DOM, "netgroup")))
    assert [k for k, _ in entries] == [b"staff"]
    assert yp.decode_all(call(door, YpProc.ALL, yp.encode_nokey(DOM, "nope")))[1] == \
        YpStat.NOMAP
    assert yp.decode_master(call(door, YpProc.MASTER, yp.encode_nokey(
        DOM, "passwd.byname"))) == (YpStat.TRUE, "niserver")
    stat, maps = yp.decode_maplist(call(door, YpProc.MAPLIST, yp.encode_domain(DOM)))
    assert stat == YpStat.TRUE
    assert {"passwd.byname", "shadow.byname", "hosts.byaddr", "netid.byname", "auto.master",
            "auto.home"} <= set(maps)
    req = yp.ReqXfr(DOM, "passwd.byname", 1, "peer", 9, 0x40000000, 900)
    assert yp.decode_xfr_result(call(door, YpProc.XFR, yp.encode_xfr(req))) == \
        (9, yp.YpXfrStat.REFUSED)
    assert call(door, YpProc.CLEAR, b"") == b""


def test_rpc_errors(door):
    rec = rpc.encode_call(1, yp.YPPROG, 1, YpProc.MATCH, b"")
    with pytest.raises(RpcError, match=r"accept error 2 \(2, 2\)"):   # PROG_MISMATCH 2..2
        rpc.decode_reply(door.exchange(rec))
    rec = rpc.encode_call(1, yp.YPPROG, 2, 99, b"")
    with pytest.raises(RpcError, match="accept error 3"):     # PROC_UNAVAIL
        rpc.decode_reply(door.exchange(rec))
    rec = rpc.encode_call(1, yp.YPPROG, 2, YpProc.MATCH, b"\0\0\0\x05ab")
    with pytest.raises(RpcError, match="accept error 4"):     # GARBAGE_ARGS
        rpc.decode_reply(door.exchange(rec))


def test_trusted_networks_are_securenets(door):
    db = door.db
    p = db.procedures
    root = p.proc_root(SUPERUSER)
    _, props = p.proc_read(SUPERUSER, root)
    p.proc_write(SUPERUSER, root, [*props, ("trusted_networks", ["10.1.2"])])
    db.commit()
    rec = rpc.encode_call(3, yp.YPPROG, 2, YpProc.MATCH,
                          yp.encode_key(DOM, "passwd.byname", b"alice"))
    assert door.exchange(rec, Caller("192.168.7.7", 40000)) is None
    assert door.exchange(rec, Caller("10.1.2.9", 40000)) is not None


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(proc=st.integers(0, 12), args=st.binary(max_size=200))
def test_fuzzed_records_never_crash(door, proc, args):
    reply = door.exchange(rpc.encode_call(5, yp.YPPROG, 2, proc, args))
    assert reply is None or rpc.reply_xid(reply) == 5


# -- a real netinfod on loopback ------------------------------------------------------------------

def _udp_call(port: int, proc: int, args: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(rpc.encode_call(11, yp.YPPROG, 2, proc, args), ("127.0.0.1", port))
        data = s.recv(65536)
    _, u = rpc.decode_reply(data)
    return u.data[u.pos:]


def _tcp_call(port: int, proc: int, args: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        s.sendall(rpc.frame(rpc.encode_call(12, yp.YPPROG, 2, proc, args)))
        reader = rpc.RecordReader(1 << 26)
        while True:
            data = s.recv(65536)
            assert data, "connection closed"
            records = reader.feed(data)
            if records:
                break
    _, u = rpc.decode_reply(records[0])
    return u.data[u.pos:]


def test_netinfod_serves_nis_over_udp_and_tcp(tmp_path, netinfod, monkeypatch):
    from netinfo.server.database import open_database
    with open_database(tmp_path, "test", create=True) as db:
        create_master(db.procedures, "test", "localhost", ["127.0.0.1"])
        populate(db.procedures)
        users = ensure_dir(db.procedures, "users")
        for i in range(300):
            db.procedures.proc_create(
                SUPERUSER, db.procedures.proc_self(SUPERUSER, NiId(users)),
                [("name", [f"u{i}"]), ("uid", [str(10000 + i)]), ("gid", ["100"])],
                NI_INDEX_NULL)
        db.commit()
    # no portmapper there: served unregistered (never the machine's rpcbind)
    monkeypatch.setenv("NETINFO_PORTMAPPER", "127.0.0.1:1")
    env = env_with_src()
    d = netinfod("test", "--nis-domain", DOM, "--nis-domain", "second")
    port = d.port
    assert yp.decode_val(_udp_call(port, YpProc.MATCH, yp.encode_key(
        DOM, "passwd.byname", b"alice")))[1].startswith(b"alice:x:5001")
    assert yp.decode_bool(_udp_call(port, YpProc.DOMAIN, yp.encode_domain("second")))
    entries, end = yp.decode_all(_tcp_call(port, YpProc.ALL, yp.encode_nokey(
        DOM, "passwd.byname")))
    assert end == YpStat.NOMORE and len(entries) == 302
    # a write through NetInfo (niutil) is in the next MATCH
    r = subprocess.run([sys.executable, "-m", "netinfo.cli.niutil", "-create",
                        f"test@127.0.0.1:{port}", "/users/dave"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    for prop, val in (("uid", "5004"), ("gid", "5001")):
        r2 = subprocess.run([sys.executable, "-m", "netinfo.cli.niutil", "-createprop",
                             f"test@127.0.0.1:{port}", "/users/dave", prop, val],
                            capture_output=True, text=True, env=env, timeout=60)
        assert r2.returncode == 0, r2.stderr
    assert yp.decode_val(_tcp_call(port, YpProc.MATCH, yp.encode_key(
        DOM, "passwd.byuid", b"5004"))) == (YpStat.TRUE, b"dave:x:5004:5001:::")


def test_whole_maps_and_walks_follow_writes(door):
    """netgroup (kept whole) and the sorted keys of FIRST/NEXT are dropped by the write
    records of their directories."""
    assert match(door, "netgroup", b"staff")[0] == YpStat.TRUE
    first = yp.decode_key_val(call(door, YpProc.FIRST, yp.encode_nokey(DOM, "group.byname")))
    assert first[1] == b"niusers"
    p = door.db.procedures
    users = ensure_dir(p, "users")
    p.proc_create(SUPERUSER, p.proc_self(SUPERUSER, NiId(users)),
                  [("name", ["eve"]), ("uid", ["5005"]), ("gid", ["5001"]),
                   ("netgroups", ["ops"])], NI_INDEX_NULL)
    groups = ensure_dir(p, "groups")
    p.proc_create(SUPERUSER, p.proc_self(SUPERUSER, NiId(groups)),
                  [("name", ["admins"]), ("gid", ["80"]), ("users", ["eve"])], NI_INDEX_NULL)
    door.db.commit()
    assert match(door, "netgroup", b"ops") == (YpStat.TRUE, b"(-,eve,nitest)")
    assert match(door, "netid.byname", b"unix.5005@nitest") == (YpStat.TRUE, b"5005:5001,80")
    first = yp.decode_key_val(call(door, YpProc.FIRST, yp.encode_nokey(DOM, "group.byname")))
    assert first[1] == b"admins"


# -- --nis-hierarchy ------------------------------------------------------------------------------

def test_hierarchy_shows_the_ancestors_entries(tmp_path, monkeypatch):
    """``local`` bound to the ``network`` root (nibindd --init): with --nis-hierarchy,
    local's maps hold network's users that local does not define; local's own win; a
    write in the root shows within a few seconds."""
    import asyncio
    import time

    from netinfo.client import binding

    from .conftest import Nibindd, tool_process

    nb = Nibindd(tmp_path / "netinfo", "--init", "--nis-domain", f"{DOM}=local",
                 "--nis-hierarchy")
    monkeypatch.setenv("NETINFO_PORTMAPPER", nb.env["NETINFO_PORTMAPPER"])
    monkeypatch.setenv("NETINFO_BROADCAST", "off")
    nb.start()
    try:
        def niutil(tag, *args):
            r = tool_process("niutil", args[0], "-t", f"127.0.0.1/{tag}", *args[1:],
                             env=nb.env)
            assert r.returncode == 0, r.stderr
        for tag, name, uid in (("network", "rootuser", "7001"), ("network", "alice", "6001"),
                               ("local", "alice", "5001")):
            niutil(tag, "-create", f"/users/{name}")
            niutil(tag, "-createprop", f"/users/{name}", "uid", uid)
            niutil(tag, "-createprop", f"/users/{name}", "gid", "20")
        _, port = asyncio.run(binding.getregister("127.0.0.1", "local"))

        def found(key: bytes):
            return yp.decode_val(_tcp_call(port, YpProc.MATCH, yp.encode_key(
                DOM, "passwd.byname", key)))

        deadline = time.monotonic() + 30
        while found(b"rootuser")[0] != YpStat.TRUE and time.monotonic() < deadline:
            time.sleep(0.2)
        assert found(b"rootuser") == (YpStat.TRUE, b"rootuser:x:7001:20:::")
        assert found(b"alice") == (YpStat.TRUE, b"alice:x:5001:20:::")   # local wins
        entries, end = yp.decode_all(_tcp_call(port, YpProc.ALL, yp.encode_nokey(
            DOM, "passwd.byname")))
        assert end == YpStat.NOMORE
        names = [k for k, _ in entries]
        assert b"rootuser" in names and names.count(b"alice") == 1
        assert (b"alice", b"alice:x:5001:20:::") in entries
        order = yp.decode_order(_tcp_call(port, YpProc.ORDER, yp.encode_nokey(
            DOM, "passwd.byname")))[1]
        niutil("network", "-create", "/users/later")
        niutil("network", "-createprop", "/users/later", "uid", "7002")
        niutil("network", "-createprop", "/users/later", "gid", "20")
        deadline = time.monotonic() + 30
        while found(b"later")[0] != YpStat.TRUE and time.monotonic() < deadline:
            time.sleep(0.2)
        assert found(b"later")[0] == YpStat.TRUE
        assert yp.decode_order(_tcp_call(port, YpProc.ORDER, yp.encode_nokey(
            DOM, "passwd.byname")))[1] > order
    finally:
        nb.stop()


def test_hosts_byname_keys_are_lower_case(door):
    """As makedbm -l builds it and glibc's nss_nis asks it (the name lowercased)."""
    p = door.db.procedures
    machines = ensure_dir(p, "machines")
    p.proc_create(SUPERUSER, p.proc_self(SUPERUSER, NiId(machines)),
                  [("name", ["PrintServer", "PS2"]), ("ip_address", ["10.0.0.9"])],
                  NI_INDEX_NULL)
    door.db.commit()
    assert match(door, "hosts.byname", b"printserver") == \
        (YpStat.TRUE, b"10.0.0.9\tPrintServer PS2")
    assert match(door, "hosts.byname", b"ps2")[0] == YpStat.TRUE
    assert match(door, "hosts.byname", b"PrintServer")[0] == YpStat.NOKEY
    assert match(door, "hosts.byaddr", b"10.0.0.9")[0] == YpStat.TRUE


def test_a_renamed_directory_takes_its_maps_along(door):
    p = door.db.procedures
    groups = ensure_dir(p, "groups")
    assert match(door, "group.byname", b"niusers")[0] == YpStat.TRUE
    i, props = p.proc_read(SUPERUSER, p.proc_self(SUPERUSER, NiId(groups)))
    renamed = [("name", ["oldgroups"]) if k == "name" else (k, v) for k, v in props]
    p.proc_write(SUPERUSER, i, renamed)
    door.db.commit()
    assert match(door, "group.byname", b"niusers")[0] == YpStat.NOMAP
    stat, maps = yp.decode_maplist(call(door, YpProc.MAPLIST, yp.encode_domain(DOM)))
    assert stat == YpStat.TRUE and "group.byname" not in maps and "passwd.byname" in maps
    i, _ = p.proc_read(SUPERUSER, p.proc_self(SUPERUSER, NiId(groups)))
    p.proc_write(SUPERUSER, i, props)
    door.db.commit()
    assert match(door, "group.byname", b"niusers")[0] == YpStat.TRUE
