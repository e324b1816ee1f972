"""A directory's change history in the manager, and revert (issue 24).

``/history?d=DOMAIN&id=OID`` lists the changes that touched the directory, newest first,
a page at a time, each with its before and after; ``POST /history/revert`` puts one back
as new writes through the master (``client.history.revert_one``), refusing — and naming
it — when a later change touched the same directory, unless "revert anyway" is ticked.

The same rules as ``nihistory``: the server decides who reads what (the superuser all,
a user the directories its ``_writers`` admit, nobody anonymously). The manager asks only
with the session's credential for the domain: without one it shows nothing and offers
the login (a manager run by a server's owner would otherwise read as the superuser for
anonymous visitors).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..client.domain import DomainClient
from ..client.history import (
    CannotRevert,
    changed,
    conflicts,
    entry,
    query,
    revert_one,
)
from ..client.walk import CALL_ERRORS
from ..errors import NiError
from ..wire.history import FROM_MASTER, SUPERUSER, WHOLE_TREE, Entry, Query
from ..wire.protocol import Proc
from .common import BadInput, domain_of, error_page, int_param, pool, render, session, url
from .edits import form_post

#: Changes a page shows.
PAGE = 50


def _proc(e: Entry) -> str:
    return "REPLACE" if e.proc == WHOLE_TREE else Proc(e.proc).name


def _who(e: Entry) -> str:
    name = "master" if e.flags & FROM_MASTER else (
        e.user or ("root" if e.flags & SUPERUSER else "anonymous"))
    return f"{name}@{e.addr}" if e.addr else name


def row(e: Entry) -> dict[str, Any]:
    """What the page shows of one change."""
    return {
        "seq": e.seq, "time": datetime.fromtimestamp(e.time / 1e6).isoformat(
            sep=" ", timespec="seconds"),
        "who": _who(e), "proc": _proc(e), "path": e.path,
        "dirs": [{"id": d.id, "what": ("created" if d.before is None else "destroyed"
                                       if d.after is None else "changed"),
                  "before": d.before.props if d.before else None,
                  "after": d.after.props if d.after else None}
                 for d in e.touched if changed(d.before, d.after)],
        "revertible": e.proc != WHOLE_TREE}


async def page(request: Request) -> Response:
    domain = domain_of(request)
    q = request.query_params
    s = session(request)
    ctx: dict[str, Any] = {"domain": domain, "nav": "browse", "changes": None,
                           "title": f"History — {domain} — NetInfo Manager"}
    try:
        oid = int_param(q.get("id"), 0)
        cursor = int_param(q.get("cursor"), 0)
        ctx["oid"] = oid
        if domain not in s.creds:
            ctx["login"] = url("/login", d=domain, next=url("/history", d=domain, id=oid))
            return render(request, "history.html", ctx)

        async def read(c: DomainClient) -> Any:
            return await query(c, Query(dir=oid, cursor=cursor, limit=PAGE))
        got = await pool(request).run(s, domain, read)
    except (BadInput, NiError, *CALL_ERRORS) as e:
        return error_page(request, e, domain=domain, title="Cannot show the history")
    ctx["changes"] = [row(e) for e in got.entries]
    ctx["next"] = url("/history", d=domain, id=oid, cursor=got.cursor) if got.more else None
    return render(request, "history.html", ctx)


@form_post
async def revert(request: Request, form: FormData, domain: str) -> Response:
    s = session(request)
    try:
        seq = int_param(form.get("seq"))
        oid = int_param(form.get("id"), 0)
        force = form.get("force") == "1"
        if domain not in s.creds:
            raise BadInput("log in to revert: the history is read with a credential")

        async def put_back(c: DomainClient) -> list[str]:
            e = await entry(c, seq)
            if e is None:
                raise BadInput(f"no change {seq} in the history")
            if not force:
                found = await conflicts(c, [e], {seq})
                if found:
                    return [f"change {later.seq} ({_proc(later)} {later.path} by "
                            f"{_who(later)}) came after change {seq} to directory {d}"
                            for _, d, later in found]
            try:
                await revert_one(c, e)
            except CannotRevert as err:
                raise BadInput(str(err)) from None
            return []
        refused = await pool(request).run(s, domain, put_back, retry=False)
    except (BadInput, NiError, *CALL_ERRORS) as e:
        return error_page(request, e, domain=domain, title="Not reverted")
    if refused:
        return render(request, "error.html", {
            "domain": domain, "title": "Not reverted — NetInfo Manager",
            "message": "Nothing was reverted: " + "; ".join(refused)
                       + ". Tick \u201crevert anyway\u201d to put it back over them."},
            status_code=409)
    s.notice("ok", f"Change {seq} was reverted (new writes, themselves in the history).")
    return RedirectResponse(url("/history", d=domain, id=oid), 303)


__all__ = ["page", "revert", "row", "PAGE"]
