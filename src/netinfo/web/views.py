"""The pages that only read: home, the directory browser (with its lazily loaded tree and
paged child lists), Find, and Domain info (tools §6)."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ..client import search
from ..client.core import Client
from ..client.domain import DomainClient, connect_server, domain_servers, machines
from ..client.walk import CALL_ERRORS
from ..errors import NiError, Status
from ..model import Proplist, first_values, uint_to_addr
from ..passwords import HASHES
from .common import (
    BadInput,
    display_name,
    domain_of,
    error_page,
    explain,
    int_param,
    label,
    pool,
    render,
    session,
    url,
)

#: Deepest ancestry shown in the breadcrumbs (a guard against a parent cycle).
MAX_DEPTH = 256
#: Matches a search shows at most.
FIND_LIMIT = 500


async def home(request: Request) -> Response:
    return render(request, "home.html", {"title": "NetInfo Manager", "nav": "home"})


# -- browsing ----------------------------------------------------------------------------------

async def crumbs(c: Client, oid: int, props: Proplist) -> list[tuple[int, str]]:
    """(id, label) from the root down to *oid*."""
    out = [(oid, "/" if oid == 0 else label(oid, props))]
    cur = oid
    for _ in range(MAX_DEPTH):
        if cur == 0:
            break
        parent, _ = await c.parent(cur)
        if parent == cur:
            break
        cur = parent
        if cur == 0:
            out.append((0, "/"))
            break
        out.append((cur, label(cur, (await c.read(cur))[1])))
    return list(reversed(out))


def dir_path(trail: list[tuple[int, str]]) -> str:
    """The NetInfo path of the breadcrumbs (``/users/root``), ``/`` escaped (tools §0.4)."""
    parts = [name.replace("\\", "\\\\").replace("/", "\\/") for _, name in trail[1:]]
    return "/" + "/".join(parts)


async def resolve(request: Request, c: DomainClient) -> int:
    """The directory a request names: ``id``, else ``path`` (tools §0.4), else the root."""
    q = request.query_params
    if q.get("id"):
        return int_param(q.get("id"))
    path = q.get("path")
    if path:
        if path.isascii() and path.isdigit():
            return int(path)
        return (await c.pathsearch(path)).object
    return 0


async def browse_context(request: Request, domain: str, oid: int, *, offset: int = 0,
                         text: str = "") -> dict[str, Any]:
    """Everything the directory page shows, read fresh."""
    p = pool(request)
    s = session(request)

    async def read(c: DomainClient) -> tuple[Any, Proplist, list[tuple[int, str]], str]:
        nid, props = await c.read(oid)
        trail = await crumbs(c, oid, props)
        return nid, list(props), trail, await display_name(request, c, domain)
    nid, props, trail, name = await p.run(s, domain, read)
    listing = await p.page(s, domain, oid, offset, text)
    here = dir_path(trail)
    return {
        "domain": domain, "domain_label": name, "oid": oid, "instance": nid.instance,
        "props": props, "trail": trail, "listing": listing, "dir_path": here,
        "parent": trail[-2][0] if len(trail) > 1 else None,
        "show_ids": request.query_params.get("ids") == "1", "tree": False,
        # a user's page (/users/<name>) offers "Set password"; the old password is asked
        # unless the session authenticated as root (uid 0: the superuser, spec §10.2)
        "user_name": _user_name(trail, props),
        "needs_old": getattr(s.creds.get(domain), "uid", None) != 0,
        "hashes": list(HASHES),
        "nav": "browse",
        "title": f"{here} — {name} — NetInfo Manager",
    }


def _user_name(trail: list[tuple[int, str]], props: Proplist) -> str | None:
    """The user a directory is (``/users/<name>``), or None."""
    if len(trail) != 3 or trail[1][1] != "users":
        return None
    names = first_values(props, "name")
    return names[0] if names else None


async def browse(request: Request) -> Response:
    domain = domain_of(request)
    q = request.query_params
    try:
        oid = await pool(request).run(session(request), domain,
                                      lambda c: resolve(request, c))
        if "path" in q and "id" not in q:
            return RedirectResponse(url("/browse", d=domain, id=oid,
                                        ids="1" if q.get("ids") == "1" else None), 303)
        ctx = await browse_context(request, domain, oid, offset=int_param(q.get("offset"), 0),
                                   text=q.get("q") or "")
    except (BadInput, NiError, *CALL_ERRORS) as e:
        return error_page(request, e, domain=domain, title="Cannot open")
    return render(request, "browse.html", ctx)


async def children(request: Request) -> Response:
    """A page of a directory's children as an HTML fragment (the tree's lazy loading and
    the filter box), or as a whole page without scripts."""
    domain = domain_of(request)
    q = request.query_params
    try:
        oid = int_param(q.get("id"), 0)
        listing = await pool(request).page(session(request), domain, oid,
                                           int_param(q.get("offset"), 0), q.get("q") or "")
    except (BadInput, NiError, *CALL_ERRORS) as e:
        code, message = explain(e)   # a fragment: it goes inside the page's tree
        return HTMLResponse(f'<p class="notice error">{html.escape(message)}</p>',
                            status_code=code)
    ctx = {"domain": domain, "oid": oid, "listing": listing,
           "show_ids": q.get("ids") == "1", "tree": q.get("tree") == "1"}
    return render(request, "_children.html", ctx)


# -- find (tools §4.2, §4.3) -------------------------------------------------------------------

async def find(request: Request) -> Response:
    domain = domain_of(request)
    q = request.query_params
    text = q.get("q") or ""
    mode = q.get("mode") if q.get("mode") in ("grep", "find") else "grep"
    start = q.get("at") or "/"
    ctx: dict[str, Any] = {"domain": domain, "q": text, "mode": mode, "start": start,
                           "nav": "find", "matches": None, "found": None, "complete": True,
                           "title": "Find — NetInfo Manager"}
    if not text:
        return render(request, "find.html", ctx)
    s = session(request)
    try:
        if mode == "grep":
            try:
                pattern = search.compile_ere(text)
            except search.BadExpression as e:
                raise BadInput(f"Bad expression: {text} ({e})") from None

            async def grep(c: DomainClient) -> tuple[list[search.Match], bool]:
                top = (await c.pathsearch(start)).object
                return await search.grep(c, pattern, top, limit=FIND_LIMIT)
            ctx["matches"], ctx["complete"] = await pool(request).run(s, domain, grep)
        else:
            ctx["found"] = await pool(request).run(
                s, domain, lambda c: search.find_up(c, text))
    except (BadInput, NiError, *CALL_ERRORS) as e:
        status, message = explain(e)
        ctx["extra_notices"] = [("error", message)]
        return render(request, "find.html", ctx, status_code=status)
    ctx["title"] = f"Find “{text}” — NetInfo Manager"
    return render(request, "find.html", ctx)


# -- domain info --------------------------------------------------------------------------------

@dataclass
class ServerState:
    """One server of the domain as the Domain info page shows it."""

    address: str
    tag: str
    role: str          #: master, clone, or "not answering"
    checksum: str
    stats: Proplist


def _role(stats: Proplist) -> str:
    tag = first_values(stats, "tag") or []
    return tag[1] if len(tag) > 1 else "?"


async def server_state(addr: str, tag: str, timeout: float = 3.0) -> ServerState:
    try:
        conn = await connect_server(addr, tag, timeout=timeout, privileged=False)
    except (*CALL_ERRORS,):
        return ServerState(addr, tag, "not answering", "", [])
    c = Client(conn, addr, 0, tag, timeout)
    try:
        stats = list(await c.statistics())
    except (*CALL_ERRORS,):
        return ServerState(addr, tag, "not answering", "", [])
    finally:
        await c.close()
    return ServerState(addr, tag, _role(stats), (first_values(stats, "checksum") or [""])[0],
                       stats)


async def info(request: Request) -> Response:
    domain = domain_of(request)
    s = session(request)

    async def gather(c: DomainClient) -> dict[str, Any]:
        name = await display_name(request, c, domain)
        _, root = await c.read(0)
        stats = list(await c.statistics())
        listed = await domain_servers(c)
        if not listed:
            listed = [c.server]
        servers = [await server_state(a, t) for a, t in listed]
        # the servers this page links to are the hierarchy's own: the manager may open
        # them by address from now on (netinfo.web.domains)
        learn = pool(request).policy.learn
        for a, _ in listed:
            learn(a)
        try:
            ptag, paddr = await c.rparent()
            parent = f"{ptag}@{uint_to_addr(paddr)}"
            learn(uint_to_addr(paddr))
            parent_note = ""
        except NiError as e:
            parent = None
            parent_note = ("none: this is the root domain" if e.status == Status.NETROOT
                           else "not known yet: the server is still looking for it")
        kids: list[tuple[str, str, str]] = []   # (name, tag, spec)
        for props in await machines(c):
            for sv in first_values(props, "serves") or ():
                n, slash, t = sv.partition("/")
                if slash and n not in (".", "..") and n and t:
                    for a in first_values(props, "ip_address") or ():
                        kids.append((n, t, f"{t}@{a}"))
                        learn(a)
        return {"domain_label": name, "master": (first_values(root, "master") or [""])[0],
                "connected": c.server, "stats": stats, "servers": servers,
                "parent": parent, "parent_note": parent_note, "children": kids}
    try:
        ctx = await pool(request).run(s, domain, gather)
    except (NiError, *CALL_ERRORS) as e:
        return error_page(request, e, domain=domain, title="Domain info")
    ctx.update(domain=domain, nav="info",
               title=f"Domain info — {ctx['domain_label']} — NetInfo Manager",
               child_base=("" if ctx["domain_label"] == "/" else ctx["domain_label"]))
    return render(request, "info.html", ctx)
