"""nifind (tools §4.3): climbing from the local domain to the root, ``-a`` over the whole
hierarchy, ``-n``, ``-p``, ``-v``, ``--json`` and the errors; in process and as a real
subprocess against a real nibindd (scenario A10)."""

from __future__ import annotations

import asyncio
import json

import pytest

from netinfo.cli import nifind
from netinfo.client.domain import open_domain

from . import test_nireport
from .test_nireport import call, dead_env, tool

# A10's module-scoped world, shared by name (this module gets its own nibindd)
world = test_nireport.world

USAGE = "usage: nifind [-anvp] [-T timeout] directory [domain]\n"


def mailhosts(w) -> str:
    """``nifind -a -p /machines/mailhost``: the root first, then the local domain."""
    return (f"/machines/mailhost found in /, id = {w.root['/machines/mailhost']}\n"
            "name: mailhost\nip_address: 10.0.0.26\n\n"
            f"/machines/mailhost found in {w.local_name}, "
            f"id = {w.local['/machines/mailhost']}\n"
            "name: mailhost\nip_address: 10.0.0.25\n\n")


# -- scenario A10 ------------------------------------------------------------------------------

def test_a10_find_bob_subprocess(world):
    r = tool("nifind", "/users/bob", env=world.env)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == \
        f"/users/bob found in {world.local_name}, id = {world.local['/users/bob']}\n"


def test_a10_find_bob_in_process(world, capsys):
    assert call(nifind.main, capsys, "/users/bob") == \
        (0, f"/users/bob found in {world.local_name}, id = {world.local['/users/bob']}\n", "")


def test_a10_all_domains_with_properties_in_process(world, capsys):
    assert call(nifind.main, capsys, "-a", "-p", "/machines/mailhost") == \
        (0, mailhosts(world), "")


def test_a10_all_domains_with_properties_subprocess(world):
    r = tool("nifind", "-a", "-p", "/machines/mailhost", env=world.env)
    assert (r.returncode, r.stdout, r.stderr) == (0, mailhosts(world), "")


# -- the default climb ---------------------------------------------------------------------------

def test_climb_local_then_root(world, capsys):
    assert call(nifind.main, capsys, "/users/root") == \
        (0, f"/users/root found in {world.local_name}, id = {world.local['/users/root']}\n"
            f"/users/root found in /, id = {world.root['/users/root']}\n", "")


def test_climb_finds_root_only_entry(world, capsys):
    assert call(nifind.main, capsys, "/users/carol") == \
        (0, f"/users/carol found in /, id = {world.root['/users/carol']}\n", "")


def test_stop_at_the_domain_given(world, capsys):
    local_only = f"/users/root found in {world.local_name}, id = {world.local['/users/root']}\n"
    assert call(nifind.main, capsys, "/users/root", ".") == (0, local_only, "")
    assert call(nifind.main, capsys, "/users/root", world.local_name) == (0, local_only, "")
    assert call(nifind.main, capsys, "/users/root", "/")[1].count(" found in ") == 2


def test_n_affects_only_the_all_walk(world, capsys):
    # Without -a, -n changes nothing: the local domain and its parent are both reported
    # (the original's behaviour; -n used to skip the local domain here too).
    both = (f"/users/root found in {world.local_name}, id = {world.local['/users/root']}\n"
            f"/users/root found in /, id = {world.root['/users/root']}\n")
    assert call(nifind.main, capsys, "-n", "/users/root") == (0, both, "")
    assert call(nifind.main, capsys, "/users/root") == (0, both, "")
    bob = world.local["/users/bob"]
    assert call(nifind.main, capsys, "-n", "/users/bob") == (
        0, f"/users/bob found in {world.local_name}, id = {bob}\n", "")


def test_n_without_a_subprocess(world):
    r = tool("nifind", "-n", "/users/bob", env=world.env)
    assert (r.returncode, r.stdout, r.stderr) == (
        0, f"/users/bob found in {world.local_name}, id = {world.local['/users/bob']}\n", "")


def test_nothing_found_exits_0(world, capsys):
    assert call(nifind.main, capsys, "/users/nosuch") == (0, "", "")


def test_verbose_reports_misses_only(world, capsys):
    # -v: the original's "not found in" lines, on stdout among the hits; nothing else
    assert call(nifind.main, capsys, "-v", "/users/carol") == (
        0, f"/users/carol not found in {world.local_name}\n"
           f"/users/carol found in /, id = {world.root['/users/carol']}\n", "")
    rc, out, err = call(nifind.main, capsys, "--debug", "/users/carol")
    assert (rc, out) == (0, f"/users/carol found in /, id = {world.root['/users/carol']}\n")
    lines = err.splitlines()
    assert f"parent of {world.local_name} is network@127.0.0.1" in lines
    assert "/ is the root domain" in lines


def test_verbose_subprocess(world):
    # Before, -v wrote misses and binding traces on stderr.
    r = tool("nifind", "-v", "/users/nosuch", env=world.env)
    assert (r.returncode, r.stdout, r.stderr) == (
        0, f"/users/nosuch not found in {world.local_name}\n/users/nosuch not found in /\n",
        "")


def test_print_read_format_zero_values(world, capsys):
    bob = world.local["/users/bob"]
    rc, out, _ = call(nifind.main, capsys, "-p", "/users/bob", ".")
    assert rc == 0
    assert out == (f"/users/bob found in {world.local_name}, id = {bob}\n"
                   "name: bob\npasswd:\nuid: 501\ngid: 20\nrealname: Bob Smith\n"
                   "home: /Users/bob\nshell: /bin/tcsh\n_writers_passwd: bob\n\n")


# -- -a ------------------------------------------------------------------------------------------

def test_all_skip_local(world, capsys):
    assert call(nifind.main, capsys, "-an", "/machines/mailhost") == \
        (0, f"/machines/mailhost found in /, id = {world.root['/machines/mailhost']}\n", "")


def test_all_below_the_domain_given(world, capsys):
    assert call(nifind.main, capsys, "-a", "/machines/mailhost", world.local_name) == \
        (0, f"/machines/mailhost found in {world.local_name}, "
            f"id = {world.local['/machines/mailhost']}\n", "")


async def _setup_top(port: int) -> None:
    """A standalone root "top" without a master property, whose /machines names the
    world's local domain twice (as kid and kid2) and a child nobody serves (ghost)."""
    c = await open_domain(f"top@127.0.0.1:{port}")
    try:
        names, _ = await c.listprops(0)
        await c.destroyprop(await c.self_id(0), names.index("master"))
        for name, serves in (("kidhost", ["kid/local"]), ("ghosthost", ["ghost/nosuchtag"]),
                             ("kidhost2", ["../up", "./top", "kid2/local"])):
            mid = await c.pathsearch("/machines")
            await c.create(mid, [("name", [name]), ("ip_address", ["127.0.0.1"]),
                                 ("serves", serves)])
    finally:
        await c.close()


def test_all_walks_child_domains_and_reports_missing_master(world, netinfod, capsys):
    d = netinfod("top", "-m", "-n")
    asyncio.run(_setup_top(d.port))
    top = f"top@127.0.0.1:{d.port}"
    bob = world.local["/users/bob"]
    rc, out, err = call(nifind.main, capsys, "-a", "/users/bob", top)
    assert (rc, out) == (0, f"/users/bob found in /kid, id = {bob}\n")
    assert err == "Domain / has no master property!\n"
    # verbose: the misses on stdout; on stderr the original's line for each serves value
    # naming a child domain (issue 17), and "No response from" for the one that does not
    # answer; debug: the unreachable child and the second name of an already searched
    # domain
    rc, out, err = call(nifind.main, capsys, "-av", "/users/bob", top)
    assert (rc, out, err) == (0, f"/users/bob not found in /\n/users/bob found in /kid, id = "
                                 f"{bob}\n",
                              "Domain / has no master property!\n"
                              "/: kidhost serves kid/local - new child domain\n"
                              "/: ghosthost serves ghost/nosuchtag - new child domain\n"
                              "No response from ghost\n"
                              "/: kidhost2 serves kid2/local - new child domain\n")
    rc, out, err = call(nifind.main, capsys, "-a", "--debug", "/users/bob", top)
    assert (rc, out) == (0, f"/users/bob found in /kid, id = {bob}\n")
    lines = err.splitlines()
    assert "Domain / has no master property!" in lines
    assert any(line.startswith("nifind: can't open domain /ghost: ") for line in lines)
    assert "nifind: /kid2 was already searched (a serves loop?)" in lines
    # a domain with a master prints no warning
    assert call(nifind.main, capsys, "-a", "/users/bob", world.local_name)[2] == ""


# -- options -------------------------------------------------------------------------------------

def test_option_forms(world, capsys):
    expected = call(nifind.main, capsys, "-a", "-p", "/machines/mailhost")
    for args in (("-ap", "/machines/mailhost"), ("-pa", "-T", "5", "/machines/mailhost"),
                 ("-apT5", "/machines/mailhost"), ("/machines/mailhost", "-a", "-p"),
                 ("-a", "-p", "--", "/machines/mailhost")):
        assert call(nifind.main, capsys, *args) == expected, args


def test_json(world, capsys):
    rc, out, err = call(nifind.main, capsys, "--json", "-p", "/users/carol")
    assert (rc, err) == (0, "")
    assert json.loads(out) == {
        "directory": "/users/carol",
        "results": [
            {"domain": world.local_name, "found": False, "id": None},
            {"domain": "/", "found": True, "id": world.root["/users/carol"],
             "properties": [{"name": "name", "values": ["carol"]},
                            {"name": "uid", "values": ["502"]}]},
        ]}


def test_json_subprocess(world):
    r = tool("nifind", "--json", "-a", "/machines/mailhost", env=world.env)
    assert r.returncode == 0
    assert json.loads(r.stdout)["results"] == [
        {"domain": "/", "found": True, "id": world.root["/machines/mailhost"]},
        {"domain": world.local_name, "found": True, "id": world.local["/machines/mailhost"]},
    ]


def test_help(capsys):
    rc, out, err = call(nifind.main, capsys, "--help")
    assert (rc, err) == (0, "")
    assert out.startswith(USAGE) and "--json" in out


# -- errors: exit 1 ------------------------------------------------------------------------------

@pytest.mark.parametrize("args, err", [
    ((), USAGE),
    (("-a",), USAGE),
    (("/users", ".", "extra"), USAGE),
    (("-x", "/users"), "nifind: unknown option -x\n" + USAGE),
    (("-aq", "/users"), "nifind: unknown option -q\n" + USAGE),
    (("/users", "-T"), "nifind: option -T needs a value\n" + USAGE),
    (("-T", "never", "/users"), "nifind: invalid timeout never\n" + USAGE),
])
def test_usage_errors(capsys, args, err):
    assert call(nifind.main, capsys, *args) == (1, "", err)


NO_NIBINDD = "no nibindd at 127.0.0.1 (no answer from the portmapper at 127.0.0.1:1)"


def unknown(name: str) -> str:
    return (f"unknown domain {name}: no /machines entry of network@127.0.0.1 serves "
            f"{name}/<tag>")


# The original opened the top first (the domain given, else "/"), then ".", and named
# them "root domain" and "local domain"; with -a, "domain <top>" (issue 17).

def test_cannot_open_root_domain(capsys, monkeypatch):
    dead_env(monkeypatch)
    assert call(nifind.main, capsys, "/users") == (
        1, "", f"error: can't open root domain: {NO_NIBINDD}\n")


def test_cannot_open_local_domain(netinfod, capsys, monkeypatch):
    # the top answers (reached straight, tag@host:port), "." does not
    d = netinfod("top", "-m", "-n")
    dead_env(monkeypatch)
    assert call(nifind.main, capsys, "/users", f"top@127.0.0.1:{d.port}") == (
        1, "", f"error: can't open local domain: {NO_NIBINDD}\n")


def test_cannot_open_top_with_a(capsys, monkeypatch):
    dead_env(monkeypatch)
    assert call(nifind.main, capsys, "-a", "/users") == \
        (1, "", f"error: can't open domain /: {NO_NIBINDD}\n")


def test_cannot_open_domain_given(world, capsys):
    assert call(nifind.main, capsys, "/users", "/nonexistent") == \
        (1, "", f"error: can't open root domain: {unknown('nonexistent')}\n")
    assert call(nifind.main, capsys, "-a", "/users", "/nonexistent") == \
        (1, "", f"error: can't open domain /nonexistent: {unknown('nonexistent')}\n")


def test_cannot_open_subprocess(world):
    env = dict(world.env, NETINFO_PORTMAPPER="127.0.0.1:1")
    r = tool("nifind", "/users/bob", env=env)
    assert (r.returncode, r.stdout, r.stderr) == (
        1, "", f"error: can't open root domain: {NO_NIBINDD}\n")
    r = tool("nifind", "-a", "/users/bob", "/x", env=world.env)
    assert (r.returncode, r.stdout, r.stderr) == (
        1, "", f"error: can't open domain /x: {unknown('x')}\n")
