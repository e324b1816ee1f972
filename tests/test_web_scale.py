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

from netinfo.client import dumps
from netinfo.client.domain import open_domain
from netinfo.client.raw import RawNode
from netinfo.web import create_app

N = 100_000


def _build(spec: str) -> tuple[int, float]:
    async def go():
        c = await open_domain(spec, tagged=False)
        try:
            tree = RawNode([("name", ["big"])],
                           [RawNode([("name", [f"e{i:06d}"]), ("uid", [str(i)])], [])
                            for i in range(N)])
            t = time.perf_counter()
            await dumps.raw_load(c, "/big", tree)
            took = time.perf_counter() - t
            return (await c.pathsearch("/big")).object, took
        finally:
            await c.close()
    return asyncio.run(go())


def test_a_100000_child_directory_pages_and_filters(netinfod, capsys):
    srv = netinfod("big", "-m", "--trust-local")
    spec = f"big@127.0.0.1:{srv.port}"
    big, load = _build(spec)
    timings: list[tuple[str, float]] = [("niload -r of 100,000 children (setup)", load)]

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

