"""nibindd and its portmapper over the real wire: every NIBIND procedure, the privilege
rule, portmapper v2 (and PROG_MISMATCH for v3/v4), CALLIT, SIGHUP, and nidomain.

Runs against the ``nibindd`` fixture: a real ``nibindd --init`` with its embedded
portmapper on a free loopback port (spec §1.5, §6; tools §4.4).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from netinfo.client import binding
from netinfo.client.transport import udp_call
from netinfo.errors import NiError, RpcError, Status
from netinfo.model import addr_to_uint
from netinfo.wire import rpc
from netinfo.wire.nibind import (
    NIBIND_PROG,
    NIBIND_VERS,
    BindArgs,
    BindProc,
    Registration,
    decode_status,
    encode_bind_args,
    encode_registration,
    encode_tag,
)
from netinfo.wire.portmap import IPPROTO_TCP, IPPROTO_UDP, PMAP_PROG, PmapProc
from netinfo.wire.protocol import NETINFO_PROG, NETINFO_VERS, Proc

from .conftest import tool_process
from .netns import wait_until

ROOT = os.geteuid() == 0


def run(coro):
    return asyncio.run(coro)


def pmap_port() -> int:
    return binding.portmapper_address()[1]


def test_portmapper_lists_itself_and_nibindd(nibindd):
    maps = run(binding.pmap_dump())
    progs = {(m.prog, m.prot) for m in maps}
    assert {(PMAP_PROG, IPPROTO_TCP), (PMAP_PROG, IPPROTO_UDP),
            (NIBIND_PROG, IPPROTO_TCP), (NIBIND_PROG, IPPROTO_UDP)} <= progs
    # NETINFO itself is registered with nibindd, not with the portmapper (spec §1.1)
    assert all(m.prog != NETINFO_PROG for m in maps)
    assert run(binding.pmap_getport("127.0.0.1", NIBIND_PROG, 1)) > 0
    assert run(binding.pmap_getport("127.0.0.1", 123456, 1)) == 0


@pytest.mark.parametrize("vers", [3, 4])
def test_portmapper_speaks_rpcbind_v3_v4(nibindd, vers):
    """Issue 21 item 6: rpcbind's SET, GETADDR, DUMP and UNSET on the registry version 2
    answers too; version 5 is a PROG_MISMATCH (2, 4)."""
    from netinfo.wire.rpcb import Rpcb, RpcbProc, decode_rpcblist, decode_string

    def call(proc, args=b""):
        u = run(udp_call("127.0.0.1", pmap_port(), PMAP_PROG, vers, proc, args))
        return u.data[u.pos:]
    reg = Rpcb(300002, 1, "udp", "127.0.0.1.16.146", "me")
    assert call(RpcbProc.SET, reg.encode()) == b"\0\0\0\x01"
    assert call(RpcbProc.SET, reg.encode()) == b"\0\0\0\0"         # registered already
    assert decode_string(call(RpcbProc.GETADDR, Rpcb(300002, 1, "udp", "").encode())) == \
        "127.0.0.1.16.146"
    assert decode_string(call(RpcbProc.GETADDR, Rpcb(300002, 1, "tcp", "").encode())) == ""
    assert run(binding.pmap_getport("127.0.0.1", 300002, 1)) == 16 * 256 + 146   # v2 view
    listed = decode_rpcblist(call(RpcbProc.DUMP))
    assert any(r.prog == 300002 and r.netid == "udp" for r in listed)
    assert any(r.prog == NIBIND_PROG and r.netid == "tcp" for r in listed)
    assert call(RpcbProc.UNSET, Rpcb(300002, 1, "", "").encode()) == b"\0\0\0\x01"
    assert run(binding.pmap_getport("127.0.0.1", 300002, 1)) == 0
    with pytest.raises(RpcError) as ei:
        run(udp_call("127.0.0.1", pmap_port(), PMAP_PROG, 5, 3, b""))
    assert (ei.value.stat, ei.value.detail) == (rpc.AcceptStat.PROG_MISMATCH, (2, 4))


def test_portmapper_set_and_unset_from_local_callers(nibindd):
    assert run(binding.pmap_set(300001, 1, IPPROTO_UDP, 4242)) is True
    assert run(binding.pmap_set(300001, 1, IPPROTO_UDP, 4343)) is False  # RFC 1833
    assert run(binding.pmap_getport("127.0.0.1", 300001, 1)) == 4242
    assert run(binding.pmap_unset(300001, 1)) is True
    assert run(binding.pmap_getport("127.0.0.1", 300001, 1)) == 0


def test_callit_forwards_success_and_is_silent_on_failure(nibindd):
    """CALLIT of NIBIND BIND: answered for a served child, silent otherwise (spec §1.5, §6.3).

    The ``network`` root of ``nibindd --init`` lists this host's local domain as the child
    ``<host>/local`` at 127.0.0.1 (where it listens)."""
    ok = encode_bind_args(BindArgs(addr_to_uint("127.0.0.1"), "local", "network"))
    wrong_tag = encode_bind_args(BindArgs(addr_to_uint("127.0.0.1"), "local", "nosuch"))
    wrong_child = encode_bind_args(BindArgs(addr_to_uint("10.9.9.9"), "local", "network"))
    won = run(binding.multicall([("127.0.0.1", ok)], NIBIND_PROG, 1, BindProc.BIND, (2.0,)))
    assert won is not None and won[0] == 0 and won[1] == "127.0.0.1" and won[2] == b""
    for args in (wrong_tag, wrong_child):
        assert run(binding.multicall([("127.0.0.1", args)], NIBIND_PROG, 1, BindProc.BIND,
                                     (1.0, 1.0))) is None
    # CALLIT of NIBIND PING, and of a program nobody registered
    assert run(binding.multicall([("127.0.0.1", b"")], NIBIND_PROG, 1, BindProc.PING,
                                 (2.0,))) is not None
    assert run(binding.multicall([("127.0.0.1", b"")], 123456, 1, 0, (1.0,))) is None


def test_callit_over_tcp_is_refused(nibindd):
    async def go():
        from netinfo.client.transport import open_tcp
        conn = await open_tcp("127.0.0.1", pmap_port(), privileged=False)
        try:
            await conn.call(PMAP_PROG, 2, PmapProc.CALLIT, b"\0" * 16, None, 3.0)
        finally:
            conn.close()
    with pytest.raises(RpcError) as ei:
        run(go())
    assert ei.value.stat == rpc.AcceptStat.PROC_UNAVAIL


def test_nibind_ping_getregister_listreg(nibindd):
    port = run(binding.nibindd_port("127.0.0.1"))
    run(udp_call("127.0.0.1", port, NIBIND_PROG, NIBIND_VERS, BindProc.PING))
    regs = {r.tag: r for r in run(binding.listreg("127.0.0.1"))}
    assert set(regs) == {"local", "network"}
    assert run(binding.getregister("127.0.0.1", "network")) == (regs["network"].udp_port,
                                                               regs["network"].tcp_port)
    with pytest.raises(NiError) as ei:
        run(binding.getregister("127.0.0.1", "nosuch"))
    assert ei.value.status == Status.NOTAG
    # the registered ports answer NETINFO PING over UDP
    run(udp_call("127.0.0.1", regs["local"].udp_port, NETINFO_PROG, NETINFO_VERS, Proc.PING))


def test_nibind_register_unregister(nibindd):
    run(binding.register("extra", 1111, 2222))
    assert run(binding.getregister("127.0.0.1", "extra")) == (1111, 2222)
    run(binding.register("extra", 3333, 4444))  # replaces (spec §6.2)
    assert run(binding.getregister("127.0.0.1", "extra")) == (3333, 4444)
    run(binding.unregister("extra"))
    run(binding.unregister("extra"))  # absent: still NI_OK
    with pytest.raises(NiError):
        run(binding.getregister("127.0.0.1", "extra"))


@pytest.mark.skipif(not ROOT, reason="the privilege rule only binds when nibindd is root")
def test_privileged_procedures_need_a_reserved_port(nibindd):
    """From an ordinary port a root nibindd answers NI_PERM (spec §6.2, §10.6)."""
    port = run(binding.nibindd_port("127.0.0.1"))
    calls = [(BindProc.REGISTER, encode_registration(Registration("x", 1, 2))),
             (BindProc.UNREGISTER, encode_tag("local")),
             (BindProc.CREATEMASTER, encode_tag("x")),
             (BindProc.DESTROYDOMAIN, encode_tag("local"))]
    for proc, args in calls:
        u = run(udp_call("127.0.0.1", port, NIBIND_PROG, NIBIND_VERS, proc, args,
                         privileged=False))
        assert decode_status(u) == Status.PERM, proc
    assert "local" in {r.tag for r in run(binding.listreg("127.0.0.1"))}
    # garbage to a privileged procedure is GARBAGE_ARGS, not NI_PERM
    with pytest.raises(RpcError) as ei:
        run(udp_call("127.0.0.1", port, NIBIND_PROG, NIBIND_VERS, BindProc.REGISTER, b"\1",
                     privileged=False))
    assert ei.value.stat == rpc.AcceptStat.GARBAGE_ARGS
    with pytest.raises(RpcError) as ei:
        run(udp_call("127.0.0.1", port, NIBIND_PROG, NIBIND_VERS, 9, b""))
    assert ei.value.stat == rpc.AcceptStat.PROC_UNAVAIL


def nidomain(nb, *args):
    return tool_process("nidomain", *args, env=nb.env, timeout=60)


def test_nidomain_create_list_destroy(nibindd):
    r = nidomain(nibindd, "-l")
    assert r.returncode == 0
    assert sorted(x.split()[0] for x in r.stdout.splitlines()) == ["tag=local", "tag=network"]
    r = nidomain(nibindd, "-m", "eng")
    assert (r.returncode, r.stderr) == (0, "")
    db = nibindd.directory / "eng.nidb"
    assert db.is_dir()
    r = nidomain(nibindd, "-g", "eng")
    assert r.returncode == 0 and r.stdout.startswith("tag=eng udp=")
    # CREATEMASTER made the master layout of spec §6.2
    tcp = int(r.stdout.split("tcp=")[1])

    async def layout():
        from netinfo.client.core import Client
        async with await Client.connect("127.0.0.1", tcp, "eng") as c:
            return dict((await c.read(0))[1])
    assert run(layout())["master"][0].endswith("/eng")
    r = nidomain(nibindd, "-m", "eng")
    assert (r.returncode, r.stderr.strip()) == (
        1, "nidomain: operation failed - Duplicate domain tag: can't serve it")
    r = nidomain(nibindd, "-d", "eng")
    assert r.returncode == 0 and not db.exists()
    r = nidomain(nibindd, "-d", "eng")
    assert (r.returncode, r.stderr.strip()) == (1, "nidomain: operation failed - No such tag")
    r = nidomain(nibindd, "-g", "eng")
    assert r.returncode == 1 and "No such tag" in r.stderr


def test_nidomain_clone_creates_the_clone_database(nibindd):
    """CREATECLONE makes <tag>.nidb naming the master and serves it as a clone (spec
    §6.2), which copies the master's data at once (§9.5): a clone of 127.0.0.1/network
    on the same host (its tag differs, so it is a clone, Apple's rule in §9.1)."""
    r = nidomain(nibindd, "-c", "copy", "127.0.0.1/network")
    assert r.returncode == 0, r.stderr
    r = nidomain(nibindd, "-g", "network")
    master_port = int(r.stdout.split("tcp=")[1])
    r = nidomain(nibindd, "-g", "copy")
    tcp = int(r.stdout.split("tcp=")[1])

    async def check():
        from netinfo.client.core import Client
        async with await Client.connect("127.0.0.1", master_port, "network") as m:
            want = (dict(await m.statistics())["checksum"], (await m.read(0))[1])
        async with await Client.connect("127.0.0.1", tcp, "copy") as c:
            stats = dict(await c.statistics())
            return want, (stats["checksum"], (await c.read(0))[1]), stats["tag"]
    deadline = time.monotonic() + 20
    while True:
        want, got, tag = run(check())
        if got == want or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert got == want and tag == ["copy", "clone"]


def test_createclone_refuses_a_master_no_host_can_have(nibindd):
    """CREATECLONE naming a master in 0.0.0.0/8, multicast or broadcast answers
    NI_CANTFINDADDRESS and starts nothing (a clone would knock at it forever)."""
    before = set(nibindd.directory.glob("*.nidb"))
    for addr in ("0.1.0.0", "224.0.0.1", "255.255.255.255"):
        r = nidomain(nibindd, "-c", "nowhere", f"{addr}/network")
        assert r.returncode == 1 and "address" in r.stderr.lower(), (addr, r.stderr)
    assert set(nibindd.directory.glob("*.nidb")) == before


def test_nidomain_usage_and_errors(nibindd):
    r = nidomain(nibindd)
    assert r.returncode == 1 and r.stderr.startswith("usage: nidomain -l [host]")
    assert nidomain(nibindd, "-x").returncode == 1
    assert nidomain(nibindd, "--help").returncode == 0
    r = nidomain(nibindd, "-l", "no-such-host.invalid")
    assert (r.returncode, r.stderr.strip()) == (1, "nidomain: unknown host - no-such-host.invalid")


def test_the_network_root_lists_this_host_where_it_listens(nibindd, run_tool):
    # bound to 127.0.0.1, the host is listed there alone: an interface address would
    # send clients (nifind -a, the web manager) to servers that are not listening there
    from netinfo.netif import hostname, local_addresses, non_loopback, served_addresses
    r = run_tool("niutil", "-readprop", "-t", "127.0.0.1/network", f"/machines/{hostname()}",
                 "ip_address", env=nibindd.env, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, "127.0.0.1\n", "")
    assert served_addresses("127.0.0.1") == ["127.0.0.1"]
    assert served_addresses("::1") == ["::1"]
    assert served_addresses("0.0.0.0") == non_loopback(local_addresses()) + ["127.0.0.1"]


def test_host_names_resolve_from_netinfo_hosts_only(nibindd, tmp_path):
    """NETINFO_HOSTS=FILE: names come from that file alone (no DNS), for -t host/tag,
    tag@host and nidomain's host alike."""
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 niserver.test  # where nibindd listens\n")
    env = dict(nibindd.env, NETINFO_HOSTS=str(hosts))

    def tool(*args):
        return subprocess.run([sys.executable, "-m", *args], env=env, capture_output=True,
                              text=True, timeout=60)
    r = tool("netinfo.cli.nidomain", "-l", "niserver.test")
    assert r.returncode == 0 and "tag=local" in r.stdout, r.stderr
    r = tool("netinfo.cli.niutil", "-readprop", "-t", "niserver.test/local", "/users/root",
             "uid")
    assert (r.returncode, r.stdout) == (0, "0\n"), r.stderr
    r = tool("netinfo.cli.niutil", "-readprop", "local@niserver.test", "/users/root", "uid")
    assert (r.returncode, r.stdout) == (0, "0\n"), r.stderr
    # "localhost" is not in this file: not found, although the system would know it
    r = tool("netinfo.cli.nidomain", "-l", "localhost")
    assert (r.returncode, r.stderr) == (1, "nidomain: unknown host - localhost\n")
    r = tool("netinfo.cli.niutil", "-read", "-t", "localhost/local", "/")
    assert r.returncode == 221 and r.stderr.startswith("Can't find address for localhost\n")


def test_nidomain_without_nibindd(tmp_path, run_tool):
    # Every operation fails (exit 1) naming the portmapper asked; the original's -l and
    # -g exited 0 here (tools §4.4), which a script could not tell from "no domains".
    env = dict(os.environ, NETINFO_PORTMAPPER="127.0.0.1:9", NETINFO_BROADCAST="off")
    for args in (["-l"], ["-m", "x"]):
        r = run_tool("nidomain", *args, env=env, timeout=60)
        assert (r.returncode, r.stdout, r.stderr) == (
            1, "", "nidomain: no nibindd at 127.0.0.1 (no answer from the portmapper at "
                   "127.0.0.1:9)\n")


def test_sighup_rereads_the_directory(nibindd):
    """A database added to DIR is served after SIGHUP; a removed one stops (spec §6.4)."""
    from netinfo.server.database import open_database
    from netinfo.server.templates import create_master
    db = open_database(nibindd.directory, "late", create=True)
    svc = db.service_for_tests()
    create_master(svc, "late", "here", ["127.0.0.1"])
    db.close()
    nibindd.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: "late" in {r.tag for r in run(binding.listreg("127.0.0.1"))}, 30)
