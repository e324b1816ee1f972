"""NetInfo Manager on a directory with 100,000 children (issue #12): the first page and
the filter are served from one LIST per directory instance, paged on the server.

Prints the timings it measures (no timed assertions: DESIGN.md "Tests and benchmarks");
the numbers go into the issue's closing note.
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.testclient import TestClient

from netinfo.client.domain import open_domain
from netinfo.web import create_app

N = 100_000


def _build(directory, tag: str) -> float:
    """/big with N children, written into the stopped server's domain in this process
    (one ``Database.replace``: the suite's time goes to the manager, not to 100,000
    CREATEs over the wire, which tests/test_niload.py and the benchmarks drive)."""
    from netinfo.server.database import open_database
    from netinfo.storage import Record

    t = time.perf_counter()
    db = open_database(directory, tag)
    try:
        image = db.store.load()
        big = max(image.records) + 1
        image.records[big] = Record(1, 0, [("name", ["big"])])
        image.children.setdefault(0, []).append(big)
        kids = image.children[big] = []
        for i in range(N):
            oid = big + 1 + i
            image.records[oid] = Record(1, big, [("name", [f"e{i:06d}"]), ("uid", [str(i)])])
            kids.append(oid)
        image.checksum = None
        db.replace(image)
    finally:
        db.close()
    return time.perf_counter() - t


async def _pathsearch(spec: str, path: str) -> int:
    c = await open_domain(spec, tagged=False)
    try:
        return (await c.pathsearch(path)).object
    finally:
        await c.close()


def test_a_100000_child_directory_pages_and_filters(netinfod, capsys):
    srv = netinfod("big", "-m", "--trust-local")
    port = srv.port
    srv.stop()
    load = _build(srv.directory, "big")
    srv = netinfod("big", "--trust-local", port=port)
    spec = f"big@127.0.0.1:{port}"
    big = asyncio.run(_pathsearch(spec, "/big"))
    timings: list[tuple[str, float]] = [("100,000 children written in process (setup)", load)]

    with TestClient(create_app(spec)) as tc:
        def timed(what: str, where: str, /, **params):
            t = time.perf_counter()
            r = tc.get(where, params={"d": spec, **params})
            timings.append((what, time.perf_counter() - t))
            assert r.status_code == 200, r.text
            return r.text

        html = timed("first page, cold (CHILDREN + 100 READs)", "/browse", id=big)
        assert "100,000 subdirectories, showing 1–100" in html
        assert html.count('class="twisty"') == 100
        assert "e000099" in html and "e000100" not in html
        html = timed("filter right after (waits for the background LIST)", "/children",
                     id=big, q="e000042")
        assert "1 of 100,000 match" in html
        html = timed("first page, warm (cached LIST of this instance)", "/browse", id=big)
        assert "e000099" in html and "e000100" not in html
        html = timed("page at offset 50,000", "/children", id=big, offset=50_000)
        assert "showing 50,001–50,100" in html
        html = timed("filter, one match (\"e099999\")", "/children", id=big, q="e099999")
        assert "1 of 100,000 match" in html
        html = timed("filter, 10,000 matches (\"e01\")", "/children", id=big, q="e01")
        assert "10,000 of 100,000 match" in html
        html = timed("open a child by path", "/browse", path="/big/e077777")
        assert re.search(r"<h1>/big/e077777</h1>", html)

    with capsys.disabled():
        print(f"\nNetInfo Manager, a directory of {N:,} children (TestClient, loopback):")
        for what, secs in timings:
            print(f"  {what:<50} {secs * 1000:9.1f} ms")

