"""The manager's history page and revert (issue 24), against the real servers of
test_web's module fixture: nothing without a login, a user's page lists the changes of
the directories it may write, a revert of a DESTROY brings the directory back with its
number, a revert over a later change refuses (409, naming it) unless "revert anyway"."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("starlette")

from netinfo.model import NI_INDEX_NULL

from .test_web import admin, client, dom, ensure, login, post  # noqa: F401 - fixtures


@pytest.fixture
def tc(client):  # noqa: F811 - test_web's fixture, under a name of our own
    return client


def oid(path: str) -> int:
    async def go(c):
        return (await c.pathsearch(path)).object
    return admin(go)


def seqs(text: str) -> list[int]:
    return [int(s) for s in re.findall(r'<tr id="c(\d+)">', text)]


def test_history_needs_a_login_and_reverts_a_destroy(tc):
    web_client = tc
    web = oid("/web")

    async def make(c):
        h1 = await ensure(c, "/web", [("name", ["h1"]), ("color", ["red", "blue"])])
        kids_before = (await c.children(web))[0]
        parent = await c.self_id(web)
        await c.destroy(parent, await c.self_id(h1))
        return h1, kids_before
    h1, kids_before = admin(make)
    r = web_client.get("/history", params={"d": ".", "id": web})
    assert r.status_code == 200 and "Authenticate" in r.text and not seqs(r.text)
    assert login(web_client).status_code == 303
    r = web_client.get("/history", params={"d": ".", "id": web})
    assert r.status_code == 200, r.text
    newest = seqs(r.text)[0]
    assert "DESTROY" in r.text and "/web/h1" in r.text
    token = re.search(r'action="/history/revert\?csrf=([^"&]+)"', r.text).group(1)
    r = post(web_client, "/history/revert", data={"d": ".", "id": web, "seq": newest,
                                              "csrf": token}, follow_redirects=False)
    assert r.status_code == 303, r.text

    async def back(c):
        nid, props = await c.read(h1)
        return nid.object, [(k, list(v)) for k, v in props], (await c.children(web))[0]
    got, props, kids = admin(back)
    assert got == h1 and props == [("name", ["h1"]), ("color", ["red", "blue"])]
    assert kids == kids_before


def test_a_revert_over_a_later_change_refuses_unless_forced(tc):
    web_client = tc
    async def make(c):
        h2 = await ensure(c, "/web", [("name", ["h2"]), ("_writers", ["alice"])])
        d = await c.createprop(await c.self_id(h2), "k", ["1"], NI_INDEX_NULL)
        await c.writeprop(d, 2, ["2"])
        return h2
    h2 = admin(make)
    assert login(web_client).status_code == 303
    r = web_client.get("/history", params={"d": ".", "id": h2})
    later, first = seqs(r.text)[:2]
    token = re.search(r'action="/history/revert\?csrf=([^"&]+)"', r.text).group(1)
    r = post(web_client, "/history/revert", data={"d": ".", "id": h2, "seq": first,
                                              "csrf": token})
    assert r.status_code == 409 and f"change {later} " in r.text
    r = post(web_client, "/history/revert", data={"d": ".", "id": h2, "seq": first,
                                              "force": "1", "csrf": token},
             follow_redirects=False)
    assert r.status_code == 303, r.text

    async def now(c):
        return [(k, list(v)) for k, v in (await c.read(h2))[1]]
    assert admin(now) == [("name", ["h2"]), ("_writers", ["alice"])]
