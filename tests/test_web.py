"""NetInfo Manager in the browser (issue #12): its routes through Starlette's TestClient,
against a real nibindd serving ``.`` (local) under ``/`` (network).

The application talks to the servers as any browser's manager would: unprivileged, with
the AUTH_UNIX credentials a session logged in with. The setup writes as the local
superuser (these tests run as root: a reserved source port) to make the users.
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest

pytest.importorskip("starlette")
pytest.importorskip("jinja2")
pytest.importorskip("httpx")

from starlette.testclient import TestClient

from netinfo.client.domain import open_domain
from netinfo.client.raw import raw_from_text
from netinfo.errors import NiError
from netinfo.model import NiId
from netinfo.passwords import hash_password
from netinfo.web import create_app
from netinfo.web.sessions import COOKIE, SessionStore, csrf_ok

from .conftest import ROOT_USER, needs_privilege_rule, served_domains

PASSWORD = "s3cret pass"


def run(coro):
    return asyncio.run(coro)


async def _superuser(domain: str = "."):
    """A handle that writes as the local superuser (root's reserved port)."""
    return await open_domain(domain, privileged=True)


def admin(fn, domain: str = "."):
    async def go():
        c = await _superuser(domain)
        try:
            return await fn(c)
        finally:
            await c.close()
    return run(go())


async def ensure(c, parent_path: str, props):
    """Create (or replace the properties of) the child named props' name."""
    parent = await c.pathsearch(parent_path)
    name = dict(props)["name"][0]
    try:
        found = await c.pathsearch(f"{parent_path.rstrip('/')}/{name}")
        await c.write(found, props)
        return found.object
    except NiError:
        child, _ = await c.create(parent, props)
        return child.object


@pytest.fixture(scope="module")
def dom(tmp_path_factory):
    with served_domains(tmp_path_factory, "web") as d:
        async def setup(c):
            await ensure(c, "/users", [("name", ["alice"]), ("uid", ["501"]),
                                       ("passwd", [hash_password(PASSWORD)])])
            await ensure(c, "/users", [("name", ["bob"]), ("uid", ["502"]),
                                       ("passwd", [hash_password("bobpw")])])
            await ensure(c, "/", [("name", ["web"]), ("_writers", ["alice"])])
            await ensure(c, "/", [("name", ["open"]), ("_writers", ["*"])])
            # bob administers the domain: members of group admin are promoted (§0.5)
            await ensure(c, "/groups", [("name", ["admin"]), ("gid", ["80"]),
                                        ("users", ["bob"])])
        admin(setup)
        yield d


@pytest.fixture
def client(dom):
    with TestClient(create_app("."), base_url="http://127.0.0.1:8966") as tc:
        yield tc


def csrf_of(html: str) -> str:
    m = re.search(r'action="[^"?]*\?csrf=([^"&]+)"', html)
    assert m, "no CSRF token on the page"
    return m.group(1)


def post(tc, path: str, data: dict | None = None, **kw):
    """A form post as the page's form makes it: the CSRF token in the action's query
    (checked before the body is read), the fields in the body."""
    data = dict(data or {})
    token = data.pop("csrf", None)
    return tc.post(path, params={"csrf": token} if token is not None else None, data=data,
                   **kw)


def page_instance(tc, oid: int) -> tuple[int, str]:
    r = tc.get("/browse", params={"d": ".", "id": oid, "ids": "1"})
    assert r.status_code == 200, r.text
    inst = int(re.search(r'name="instance" value="(\d+)"', r.text).group(1))
    return inst, csrf_of(r.text)


def login(tc, user="alice", password=PASSWORD, domain="."):
    r = tc.get("/login", params={"d": domain})
    return post(tc, "/login", data={"d": domain, "user": user, "password": password,
                                   "csrf": csrf_of(r.text), "next": "/browse?d=."},
                   follow_redirects=False)


def oid_of(path: str) -> int:
    return admin(lambda c: c.pathsearch(path)).object


def props_of(path: str):
    async def go(c):
        return (await c.read(await c.pathsearch(path)))[1]
    return admin(go)


# -- reading -------------------------------------------------------------------------------------

def test_home_and_browse_root(client):
    r = client.get("/")
    assert r.status_code == 200
    assert "<title>NetInfo Manager</title>" in r.text
    r = client.get("/browse", params={"d": "."})
    assert r.status_code == 200
    assert "users" in r.text and "machines" in r.text
    # The title says where you are: the directory and the domain's name.
    title = re.search(r"<title>(.*)</title>", r.text).group(1)
    assert title.startswith("/ — /") and title.endswith("NetInfo Manager")


def test_browse_by_path_redirects_to_the_id_and_lists_properties_in_order(client):
    r = client.get("/browse", params={"d": ".", "path": "/users/alice"},
                   follow_redirects=False)
    assert r.status_code == 303 and "id=" in r.headers["location"]
    r = client.get(r.headers["location"])
    assert r.status_code == 200
    keys = re.findall(r'<span class="key">([^<]*)</span>', r.text)
    assert keys[:3] == ["name", "uid", "passwd"]
    assert "Show ids and instances" in r.text


def test_ids_and_instances_on_request(client):
    alice = oid_of("/users/alice")
    r = client.get("/browse", params={"d": ".", "id": alice, "ids": "1"})
    assert f"Directory id <strong>{alice}</strong>" in r.text
    assert 'id="instance"' in r.text


def test_domains_by_every_name(client):
    for spec in (".", "/", ".."):
        r = client.get("/browse", params={"d": spec})
        assert r.status_code == 200, (spec, r.text)
    r = client.get("/browse", params={"d": "/nosuchdomain"})
    assert r.status_code in (404, 502)


def test_missing_directory_is_a_404_page(client):
    r = client.get("/browse", params={"d": ".", "path": "/no/such/dir"})
    assert r.status_code == 404 and "No such directory" in r.text


def test_children_fragment_pages_and_filters(client):
    admin(lambda c: _many(c, "/pagetest", 250))
    oid = oid_of("/pagetest")
    r = client.get("/children", params={"d": ".", "id": oid})
    assert r.status_code == 200 and "<html" not in r.text
    assert "250 subdirectories, showing 1–100" in r.text
    assert r.text.count('class="twisty"') == 100
    r = client.get("/children", params={"d": ".", "id": oid, "offset": 200})
    assert "showing 201–250" in r.text and r.text.count('class="twisty"') == 50
    r = client.get("/children", params={"d": ".", "id": oid, "q": "E01"})
    assert "10 of 250 match" in r.text     # e010..e019: case-insensitive substring
    r = client.get("/browse", params={"d": ".", "id": oid, "q": "zzz"})
    assert "0 of 250 match" in r.text


async def _many(c, path: str, n: int):
    root = await c.pathsearch("/")
    try:
        top = await c.pathsearch(path)
        return top
    except NiError:
        pass
    top, _ = await c.create(root, [("name", [path.strip("/")])])
    inst = top.instance
    for i in range(n):
        _, parent = await c.create(NiId(top.object, inst), [("name", [f"e{i:03d}"])])
        inst = parent.instance
    return top


# -- security ------------------------------------------------------------------------------------

def test_security_headers_and_cookie(client):
    r = client.get("/")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert "Secure" not in cookie          # plain http on loopback
    assert "<script>" not in r.text and " style=" not in r.text
    assert re.search(r"<script[^>]*>\s*[^<\s]", r.text) is None   # no inline script


def test_cookie_is_secure_over_https(dom):
    with TestClient(create_app("."), base_url="https://127.0.0.1:8966") as tc:
        r = tc.get("/")
        assert "Secure" in r.headers["set-cookie"]


def test_every_write_needs_the_csrf_token(client):
    oid = oid_of("/open")
    inst, token = page_instance(client, oid)
    for path in ("/prop/add", "/dir/create", "/login", "/logout", "/import"):
        r = post(client, path, data={"d": ".", "id": oid, "instance": inst, "key": "x",
                                    "name": "x", "csrf": "forged"})
        assert r.status_code == 403 and "CSRF" in r.text, path
    # the right token, but sent from another site
    r = post(client, "/prop/add", data={"d": ".", "id": oid, "instance": inst, "key": "x",
                                       "csrf": token},
                    headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    assert all(k != "x" for k, _ in props_of("/open"))


def test_csrf_helper():
    s = SessionStore().new()
    assert csrf_ok(s, s.csrf, None, "http://h")
    assert csrf_ok(s, s.csrf, "http://h", "http://h")
    assert not csrf_ok(s, s.csrf, "http://other", "http://h")
    assert not csrf_ok(s, s.csrf, "null", "http://h")
    assert not csrf_ok(s, "", None, "http://h") and not csrf_ok(s, None, None, "http://h")


def test_sessions_expire_and_are_bounded():
    st = SessionStore(idle=10, capacity=3)
    ended = []
    st.on_end.append(ended.append)
    ss = [st.new() for _ in range(4)]
    assert len(st) == 3 and ended == [ss[0].id]
    st.expire(time.monotonic() + 11)
    assert len(st) == 0


# -- authentication and the server's permissions -------------------------------------------------

@needs_privilege_rule
def test_anonymous_write_refused_unless_writers_allow(client):
    oid = oid_of("/web")
    inst, token = page_instance(client, oid)
    r = post(client, "/prop/add", data={"d": ".", "id": oid, "instance": inst,
                                       "key": "anon", "values": "1", "csrf": token})
    assert r.status_code == 403
    assert "permission denied" in r.text and "not authenticated" in r.text
    # /open has _writers *: the server lets anyone write there
    oid = oid_of("/open")
    inst, token = page_instance(client, oid)
    r = post(client, "/prop/add", data={"d": ".", "id": oid, "instance": inst,
                                       "key": "anon", "values": "1", "csrf": token},
                    follow_redirects=False)
    assert r.status_code == 303
    assert ("anon", ["1"]) in props_of("/open")


@needs_privilege_rule
def test_login_wrong_password_and_unknown_user(client):
    r = login(client, password="wrong")
    assert r.status_code == 403 and "did not accept" in r.text
    assert PASSWORD not in r.text and "wrong" not in r.text.split("</header>")[1]
    r = login(client, user="nobody-here")
    assert r.status_code == 403


def test_login_rotates_the_cookie_and_keeps_credentials_off_the_page(client):
    client.get("/")
    before = client.cookies.get(COOKIE)
    r = login(client)
    assert r.status_code == 303, r.text
    after = client.cookies.get(COOKIE)
    assert after and after != before
    assert PASSWORD not in r.headers["location"]
    r = client.get("/browse", params={"d": "."})
    assert "alice" in r.text and PASSWORD not in r.text and "Authenticated as alice" in r.text
    # the old token is worth nothing now
    assert client.app.state.sessions.get(before) is None


@needs_privilege_rule
def test_authenticated_edits_and_the_servers_permissions(client):
    assert login(client).status_code == 303
    web = oid_of("/web")
    inst, token = page_instance(client, web)
    r = post(client, "/dir/create", data={"d": ".", "id": web, "instance": inst,
                                         "name": "carol", "csrf": token},
                    follow_redirects=False)
    assert r.status_code == 303
    carol = oid_of("/web/carol")
    assert f"id={carol}" in r.headers["location"]
    # alice may not write /users (its _writers does not name her): the server says no
    users = oid_of("/users")
    inst, token = page_instance(client, users)
    r = post(client, "/dir/create", data={"d": ".", "id": users, "instance": inst,
                                         "name": "mallory", "csrf": token})
    assert r.status_code == 403 and "permission denied" in r.text
    # logging out forgets the credential
    r = post(client, "/logout", data={"d": ".", "csrf": token}, follow_redirects=False)
    assert r.status_code == 303
    carol_inst, token = page_instance(client, carol)
    r = post(client, "/prop/add", data={"d": ".", "id": carol, "instance": carol_inst,
                                       "key": "k", "csrf": token})
    assert r.status_code == 403


def test_property_and_value_edits(client):
    assert login(client, "bob", "bobpw").status_code == 303
    d = admin(lambda c: ensure(c, "/web", [("name", ["dora"])]))
    steps = [
        ("/prop/add", {"key": "shell", "values": "/bin/sh\n/bin/zsh\n"}),
        ("/value/add", {"index": 1, "value": "/bin/tcsh"}),
        ("/value/edit", {"index": 1, "vindex": 0, "value": "/bin/bash"}),
        ("/value/move", {"index": 1, "vindex": 2, "to": "up"}),
        ("/value/move", {"index": 1, "vindex": 0, "to": "last"}),
        ("/prop/add", {"key": "tmp", "values": ""}),
        ("/prop/rename", {"index": 2, "key": "gone"}),
        ("/prop/values", {"index": 0, "values": "dora\nd2"}),
    ]
    for path, extra in steps:
        inst, token = page_instance(client, d)
        r = post(client, path, data={"d": ".", "id": d, "instance": inst, "csrf": token,
                                    **extra}, follow_redirects=False)
        assert r.status_code == 303, (path, r.text)
    assert props_of("/web/dora") == [("name", ["dora", "d2"]),
                                     ("shell", ["/bin/tcsh", "/bin/zsh", "/bin/bash"]),
                                     ("gone", [])]
    inst, token = page_instance(client, d)
    r = post(client, "/value/delete", data={"d": ".", "id": d, "instance": inst,
                                           "csrf": token, "index": 1, "vindex": 1},
                    follow_redirects=False)
    assert r.status_code == 303
    inst, token = page_instance(client, d)
    r = post(client, "/prop/delete", data={"d": ".", "id": d, "instance": inst,
                                          "csrf": token, "index": 2},
                    follow_redirects=False)
    assert r.status_code == 303
    assert props_of("/web/dora") == [("name", ["dora", "d2"]),
                                     ("shell", ["/bin/tcsh", "/bin/bash"])]


def test_stale_instance_is_reported_never_overwritten(client):
    assert login(client, "bob", "bobpw").status_code == 303
    e = admin(lambda c: ensure(c, "/web", [("name", ["eve"]), ("mail", ["a"])]))
    inst, token = page_instance(client, e)

    async def meddle(c):
        await c.createprop(await c.self_id(e), "other", ["writer"])
    admin(meddle)
    for path, extra in (("/prop/values", {"index": 1, "values": "mine"}),
                        ("/value/move", {"index": 1, "vindex": 0, "to": "down"}),
                        ("/prop/add", {"key": "x", "values": "y"}),
                        ("/dir/delete", {"confirm": "1"})):
        r = post(client, path, data={"d": ".", "id": e, "instance": inst, "csrf": token,
                                    **extra})
        assert r.status_code == 409, (path, r.text)
        assert "changed by someone else" in r.text and "Reload" in r.text
    assert props_of("/web/eve") == [("name", ["eve"]), ("mail", ["a"]),
                                    ("other", ["writer"])]


def test_copy_and_delete_directories(client):
    assert login(client, "bob", "bobpw").status_code == 303
    f = admin(lambda c: ensure(c, "/web", [("name", ["frank"]), ("x", ["1"])]))

    async def kid(c):
        child, _ = await c.create(await c.self_id(f), [("name", ["sub"])])
        return child.object
    admin(kid)
    # the copy's destination, writable by bob (on its own: other tests may be skipped)
    admin(lambda c: ensure(c, "/web", [("name", ["copies"]), ("_writers", ["bob"])]))
    web = oid_of("/web")
    inst, token = page_instance(client, f)
    r = post(client, "/dir/copy", data={"d": ".", "id": f, "instance": inst, "csrf": token,
                                       "to": "/web/copies"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    assert props_of("/web/copies/frank/sub") == [("name", ["sub"])]
    inst, token = page_instance(client, f)
    r = post(client, "/dir/delete", data={"d": ".", "id": f, "instance": inst,
                                         "csrf": token, "confirm": "1"},
                    follow_redirects=False)
    assert r.status_code == 303 and f"id={web}" in r.headers["location"]
    with pytest.raises(NiError):
        props_of("/web/frank")


# -- find, export, import, info ------------------------------------------------------------------

def test_find_grep_and_up_the_hierarchy(client):
    r = client.get("/find", params={"d": ".", "q": "^alic", "mode": "grep"})
    assert r.status_code == 200
    assert "/users/alice" in r.text and "matching propert" in r.text
    r = client.get("/find", params={"d": ".", "q": "a(", "mode": "grep"})
    assert r.status_code == 400 and "Bad expression" in r.text
    r = client.get("/find", params={"d": ".", "q": "/machines", "mode": "find"})
    assert r.status_code == 200
    assert r.text.count("/machines found in") == 2      # local, and the network root


def test_export_raw_and_flat(client):
    r = client.get("/export", params={"d": ".", "path": "/users", "format": "raw"})
    assert r.status_code == 200
    assert r.headers["content-disposition"] == 'attachment; filename="users.raw"'
    tree = raw_from_text(r.text)
    assert any(dict(ch.props).get("name") == ["alice"] for ch in tree.children)
    r = client.get("/export", params={"d": ".", "format": "passwd"})
    assert r.status_code == 200 and re.search(r"^alice:[^:]*:501:", r.text, re.M)
    r = client.get("/export", params={"d": ".", "path": "/nope", "format": "raw"})
    assert r.status_code == 404


@needs_privilege_rule
def test_import_raw_and_flat_with_niloads_safety(client):
    assert login(client, "bob", "bobpw").status_code == 303
    token = csrf_of(client.get("/transfer", params={"d": "."}).text)
    raw = '{ "name" = ( "imp" ); CHILDREN = ( { "name" = ( "one" ); "v" = ( "1", "2" ); } ) }'
    base = {"d": ".", "csrf": token, "format": "raw", "path": "/web/imp"}
    r = post(client, "/import", data={**base, "text": raw})
    assert r.status_code == 400 and "confirmation" in r.text      # not confirmed
    r = post(client, "/import", data={**base, "text": "   ", "confirm": "1"})
    assert r.status_code == 400 and "empty" in r.text             # never deletes
    r = post(client, "/import", data={**base, "text": "{ oops", "confirm": "1"})
    assert r.status_code == 400 and "does not parse" in r.text
    r = post(client, "/import", data={**base, "confirm": "1"},
                    files={"file": ("imp.raw", raw.encode(), "text/plain")})
    assert r.status_code == 200, r.text
    assert props_of("/web/imp/one") == [("name", ["one"]), ("v", ["1", "2"])]
    # flat: alice may not write /users, so the server refuses and the page says so
    assert login(client).status_code == 303
    token = csrf_of(client.get("/transfer", params={"d": "."}).text)
    r = post(client, "/import", data={"d": ".", "csrf": token, "format": "passwd",
                                     "text": "zed::600:20::0:0:Zed:/u/zed:/bin/sh\n"})
    assert r.status_code == 403 and "can&#39;t update NetInfo /users/zed" in r.text
    # an empty flat import changes nothing, even with "replace the whole table"
    before = props_of("/users/alice")
    r = post(client, "/import", data={"d": ".", "csrf": token, "format": "passwd",
                                     "replace": "1", "text": "# nothing\n"})
    assert r.status_code == 200 and "nothing was changed" in r.text
    assert props_of("/users/alice") == before


def test_imports_over_a_bound_change_nothing(client):
    # issue 18 #12: checked whole before the table is touched, even with "replace"
    assert login(client, "bob", "bobpw").status_code == 303
    token = csrf_of(client.get("/transfer", params={"d": "."}).text)
    before = props_of("/users/alice")
    text = "kim::700:20::0:0:Kim:/u/kim:/bin/sh\n" + \
        "lee::701:20::0:0:" + "x" * 70_000 + ":/u/lee:/bin/sh\n"
    r = post(client, "/import", data={"d": ".", "csrf": token, "format": "passwd",
                                     "replace": "1", "text": text})
    assert r.status_code == 400 and "line 2: property realname: a value of 70000 bytes" \
        in r.text and "Nothing was changed" in r.text
    assert props_of("/users/alice") == before
    with pytest.raises(NiError):
        props_of("/users/kim")
    deep = "".join('{ "name" = ( "n%d" ); CHILDREN = ( ' % i for i in range(256)) + \
        "{ }" + " ) }" * 256
    r = post(client, "/import", data={"d": ".", "csrf": token, "format": "raw",
                                     "path": "/web/deep", "text": deep, "confirm": "1"})
    assert r.status_code == 400 and "a server allows 256. Nothing was changed" in r.text
    with pytest.raises(NiError):
        props_of("/web/deep")


def test_a_chain_at_the_maximum_depth_exports_and_imports(client):
    # issue 18 N7: /web/chain is level 2, so 254 levels below it reach the maximum (256)
    assert login(client, "bob", "bobpw").status_code == 303
    token = csrf_of(client.get("/transfer", params={"d": "."}).text)
    deep = '{ "name" = ( "chain" ); ' + "".join(
        '  CHILDREN = ( { "name" = ( "n%d" );\n' % i for i in range(254)) + \
        " } )" * 254 + " }"
    r = post(client, "/import", data={"d": ".", "csrf": token, "format": "raw",
                                     "path": "/web/chain", "text": deep, "confirm": "1"})
    assert r.status_code == 200, r.text
    r = client.get("/export", params={"d": ".", "path": "/web/chain", "format": "raw"})
    assert r.status_code == 200
    assert len(r.text) < 500 * 256     # linear in the depth (indentation capped)
    assert r.text.count('"name" = ( "n') == 254
    r2 = post(client, "/import", data={"d": ".", "csrf": token, "format": "raw",
                                      "path": "/web/chain", "text": r.text, "confirm": "1"})
    assert r2.status_code == 200, r2.text
    again = client.get("/export", params={"d": ".", "path": "/web/chain", "format": "raw"})
    assert again.text == r.text


def test_flat_import_as_an_admin(client):
    assert login(client, "bob", "bobpw").status_code == 303
    token = csrf_of(client.get("/transfer", params={"d": "."}).text)
    r = post(client, "/import", data={"d": ".", "csrf": token, "format": "hosts",
                                     "text": "10.9.9.9 webhost wh\n"})
    assert r.status_code == 200, r.text
    assert "1 created" in r.text and "writing new directory /machines/webhost" in r.text
    assert ("ip_address", ["10.9.9.9"]) in props_of("/machines/webhost")


def test_domain_info(client):
    r = client.get("/info", params={"d": "."})
    assert r.status_code == 200, r.text
    assert "master" in r.text and "checksum" in r.text
    assert re.search(r"network@127\.0\.0\.1", r.text)      # the parent
    r = client.get("/info", params={"d": "/"})
    assert r.status_code == 200 and "root domain" in r.text
    assert "local@127.0.0.1" in r.text                      # a child domain


def test_static_files_and_favicon(client):
    for path in ("/static/app.css", "/static/app.js", "/static/favicon.svg"):
        r = client.get(path)
        assert r.status_code == 200 and r.content, path
    assert "prefers-color-scheme: dark" in client.get("/static/app.css").text
    r = client.get("/favicon.ico", follow_redirects=False)
    assert r.status_code == 301


def test_the_web_package_never_reaches_tools_or_storage():
    from .test_layers import reach
    seen = reach("netinfo.web.app")
    bad = [m for m in seen if m == "netinfo.cli" or m.startswith(("netinfo.cli.", "netinfo.storage",
                                            "netinfo.database", "netinfo.service",
                                            "netinfo.server"))]
    assert not bad, bad


def test_bad_input_is_a_400_not_a_crash(client):
    token = csrf_of(client.get("/login").text)
    r = post(client, "/login", data={"d": ".", "csrf": token, "user": "x" * 70000})
    assert r.status_code == 400
    r = post(client, "/prop/add", data={"d": ".", "csrf": token, "id": "1x",
                                       "instance": "0", "key": "k"})
    assert r.status_code == 400 and "not a number" in r.text
    r = client.get("/children", params={"d": ".", "id": 999999})
    assert r.status_code == 404 and r.text.startswith('<p class="notice error">')
    r = client.get("/browse", params={"d": ".", "offset": "-3"})
    assert r.status_code == 400


# -- passwords (issue 17) -------------------------------------------------------------------------

@needs_privilege_rule
def test_login_says_a_locked_user_is_locked(client):
    """nibindd --init without a terminal leaves root locked (passwd *): the login page says
    so instead of "did not accept"; a wrong password of a user that has one does not."""
    assert props_of("/users/root")[1] == ("passwd", ["*"])
    r = login(client, user="root", password="anything")
    assert r.status_code == 403 and "root is locked (no password set)" in r.text
    assert "nipasswd" in r.text
    r = login(client, password="wrong")
    assert r.status_code == 403 and "did not accept" in r.text and "locked" not in r.text


def _set_password(tc, oid: int, **fields):
    inst, token = page_instance(tc, oid)
    return post(tc, "/user/password", data={"d": ".", "id": oid, "instance": inst,
                                            "csrf": token, **fields}, follow_redirects=False)


@needs_privilege_rule
def test_set_password_on_a_users_page(client):
    """The form on /users/<name>: the user's old password (authenticated as that user,
    _writers_passwd), or an admin session without it; the new one twice; CSRF and the
    page's instance as for every edit."""
    from netinfo.passwords import verify
    dave = admin(lambda c: ensure(c, "/users", [
        ("name", ["dave"]), ("uid", ["503"]), ("passwd", [hash_password("davepw")]),
        ("_writers_passwd", ["dave"])]))

    def stored() -> str:
        return dict(props_of("/users/dave"))["passwd"][0]
    before = stored()
    page = client.get("/browse", params={"d": ".", "id": dave}).text
    assert "Set password of dave" in page and 'name="old"' in page
    assert "Set password" not in client.get("/browse", params={"d": ".",
                                                                "id": oid_of("/users")}).text
    # refused: the two new ones differ, no old password (anonymous), a wrong old one,
    # no CSRF token; nothing changes
    r = _set_password(client, dave, old="davepw", password="n1", again="n2")
    assert r.status_code == 400 and "differ" in r.text
    r = _set_password(client, dave, password="n1", again="n1")
    assert r.status_code == 403 and "permission denied" in r.text
    r = _set_password(client, dave, old="nope", password="n1", again="n1")
    assert r.status_code == 403 and "authentication error" in r.text
    inst, _ = page_instance(client, dave)
    r = client.post("/user/password", data={"d": ".", "id": dave, "instance": inst,
                                             "old": "davepw", "password": "n1", "again": "n1"})
    assert r.status_code == 403
    assert stored() == before
    # dave's own old password: done, SHA-512 crypt by default
    r = _set_password(client, dave, old="davepw", password="n1", again="n1")
    assert r.status_code == 303, r.text
    assert stored().startswith("$6$") and verify("n1", stored())
    assert login(client, "dave", "n1").status_code == 303
    # bob administers the domain (promoted): no old password needed; another hash
    assert login(client, "bob", "bobpw").status_code == 303
    r = _set_password(client, dave, password="n2", again="n2", hash="sha256")
    assert r.status_code == 303, r.text
    assert stored().startswith("$5$") and verify("n2", stored())
    # a page read before someone else's change is stale: reported, never overwritten
    inst, token = page_instance(client, dave)
    admin(lambda c: c.createprop(NiId(dave, inst), "shell", ["/bin/sh"]))
    r = post(client, "/user/password", data={"d": ".", "id": dave, "instance": inst,
                                              "csrf": token, "password": "n3", "again": "n3"})
    assert r.status_code == 409 and verify("n2", stored())


@pytest.mark.skipif(ROOT_USER, reason="the manager must run as the ordinary user that runs "
                    "the server (the suite run as root: no manager is a server's owner)")
def test_manager_run_by_the_servers_owner_writes_only_for_logged_in_sessions(client):
    """As an ordinary user the suite's nibindd and this manager are one uid's: the server
    would take the manager's uncredentialed calls for its owner's (the superuser's), so
    the manager refuses the writes of a session that did not log in, even where
    _writers is * (as root the manager is no server's owner: skipped)."""
    oid = oid_of("/open")
    inst, token = page_instance(client, oid)
    r = post(client, "/prop/add", data={"d": ".", "id": oid, "instance": inst,
                                       "key": "by-anyone", "values": "1", "csrf": token})
    assert r.status_code == 403 and "the user that owns the domain" in r.text
    assert "by-anyone" not in dict(props_of("/open"))
    # Set password with the user's old one writes as that user: allowed
    erin = admin(lambda c: ensure(c, "/users", [
        ("name", ["erin"]), ("uid", ["504"]), ("passwd", [hash_password("erinpw")]),
        ("_writers_passwd", ["erin"])]))
    assert _set_password(client, erin, password="n1", again="n1").status_code == 403
    r = _set_password(client, erin, old="erinpw", password="n1", again="n1")
    assert r.status_code == 303, r.text
    assert login(client).status_code == 303
    inst, token = page_instance(client, oid)
    r = post(client, "/prop/add", data={"d": ".", "id": oid, "instance": inst,
                                       "key": "by-alice", "values": "1", "csrf": token},
                    follow_redirects=False)
    assert r.status_code == 303
