"""The pages that write: the lock (log in, log out) and every edit of tools §6.

Every edit form carries the directory's id *and the instance it was read at*; the write
goes to the server with exactly that instance (spec §5.3), so a directory changed by
someone else in between answers NI_STALE, which is shown ("changed by someone else —
reload", HTTP 409) and never retried or overwritten. Every POST is checked against the
session's CSRF token before its body is read (:mod:`netinfo.web.guard`). Permissions are the
server's: the request carries the session's AUTH_UNIX credential for the domain, or none,
and the server applies ``_writers`` (tools §0.5); its answer is what the page shows.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..client import dumps, verbs
from ..client.domain import DomainClient, authenticate
from ..client.walk import CALL_ERRORS, walk
from ..errors import NiError, Status
from ..model import NI_INDEX_NULL, NiId, first_values
from ..passwords import DEFAULT_HASH, HASHES, hash_password
from .common import (
    BadInput,
    domain_of,
    explain,
    int_param,
    label,
    pool,
    render,
    session,
    store,
    url,
)
from .guard import MAX_FORM, Forbidden, TooLarge, safe_next
from .guard import checked_form as _guarded_form
from .lock import check_here
from .pool import OwnerRefusal
from .sessions import Credential
from .views import browse_context

#: Longest key, value or name a form may send (the wire allows 65535 bytes, spec §0.1).
MAX_TEXT = 65535
#: A probe write that can never succeed: its index is past any property list's end.
_PROBE_INDEX = 0xFFFFFFF0


def text_field(form: FormData, name: str, *, required: bool = True) -> str:
    value = form.get(name)
    if not isinstance(value, str):
        value = ""
    if required and value == "":
        raise BadInput(f"{name} is missing")
    if len(value) > MAX_TEXT:
        raise BadInput(f"{name} is too long")
    return value


def values_field(form: FormData, name: str = "values") -> list[str]:
    """A textarea of values, one per line (an empty textarea: no values)."""
    text = text_field(form, name, required=False).replace("\r\n", "\n")
    if text.endswith("\n"):
        text = text[:-1]
    return text.split("\n") if text else []


async def checked_form(request: Request, limit: int = MAX_FORM) -> FormData:
    """The form, once its CSRF token and Origin passed, read within *limit* bytes
    (:func:`netinfo.web.guard.checked_form`). :raises Forbidden: :raises TooLarge:."""
    return await _guarded_form(request, session(request), limit)


def form_post(fn: Callable[..., Awaitable[Response]] | None = None, *,
              limit: int = MAX_FORM) -> Any:
    """A handler of a posted form: ``fn(request, form, domain, *rest)`` runs once the
    form passed its CSRF check (:func:`checked_form`) and came within *limit* bytes; a
    form that did not is refused (403, 413) and nothing else happens. Use as
    ``@form_post`` or ``@form_post(limit=N)``."""
    def wrap(fn: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
        @functools.wraps(fn)
        async def handler(request: Request, *rest: Any) -> Response:
            try:
                form = await checked_form(request, limit)
            except Forbidden:
                return forbidden(request)
            except TooLarge as e:
                return render(request, "error.html", {
                    "title": "Refused — NetInfo Manager",
                    "message": f"Not saved: {e}. Nothing was changed."},
                    status_code=e.status)
            return await fn(request, form, domain_of(request, form), *rest)
        return handler
    return wrap if fn is None else wrap(fn)


def forbidden(request: Request) -> Response:
    return render(request, "error.html", {
        "title": "Refused — NetInfo Manager",
        "message": "This form has expired or did not come from this page (CSRF check). "
                   "Nothing was changed: reload the page and try again."}, status_code=403)


# -- the lock (spec §10.1, tools §0.5, tools §6 "Authenticate") ----------------------------------

async def login_form(request: Request) -> Response:
    domain = domain_of(request)
    return render(request, "login.html", {
        "domain": domain, "next": safe_next(request.query_params.get("next"),
                                            url("/browse", d=domain)),
        "title": f"Authenticate — {domain} — NetInfo Manager", "login_user": "root"})


async def verify(c: DomainClient) -> None:
    """Let the server check the credential *c* carries: a write of nothing to the root,
    at an instance that is not current. The server authenticates before it looks at the
    instance (spec §10.2 step 3 before step 2's staleness), so NI_STALE means the
    credential was accepted and nothing was written; NI_AUTHERROR/NI_NOUSER mean not."""
    nid = await c.self_id(0)
    try:
        await c.destroyprop(NiId(0, (nid.instance + 0x80000000) & 0xFFFFFFFF), _PROBE_INDEX)
    except NiError as e:
        if e.status in (Status.STALE, Status.NOPROP):
            return
        raise


class TooManyTries(Exception):
    """A login refused by :class:`netinfo.web.lock.LoginLimiter` without being tried."""

    def __init__(self, wait: float) -> None:
        when = "later" if wait == float("inf") else f"in {max(1, round(wait))} s"
        super().__init__(f"Too many failed logins: try again {when}. Nothing was sent "
                         "to the server.")


@form_post
async def login(request: Request, form: FormData, domain: str) -> Response:
    try:
        user = text_field(form, "user", required=False).strip() or "root"
        password = text_field(form, "password", required=False)
        nxt = safe_next(text_field(form, "next", required=False), url("/browse", d=domain))
    except BadInput as e:
        return render(request, "error.html", {"message": str(e), "domain": domain},
                      status_code=400)
    s = session(request)
    who = request.client.host if request.client else ""
    limiter = request.app.state.limiter        # netinfo.web.lock: per client, per user
    wait = limiter.wait(who, domain, user)
    try:
        if wait:
            raise TooManyTries(wait)
        c = await pool(request).connect(domain)
        try:
            await authenticate(c, user, password, prompt=False)
            await verbs.use_master(c)
            assert c.auth is not None
            uid = c.auth.uid
            await check_here(c, uid, password)   # a wrong guess never reaches the server
            await verify(c)
        finally:
            await c.close()
    except (NiError, TooManyTries, *CALL_ERRORS) as e:
        code, text = explain(e)
        if isinstance(e, NiError) and e.status in (Status.NOUSER, Status.AUTHERROR):
            limiter.failed(who, domain, user)
            code, text = 403, await _login_refusal(request, domain, user)
        elif isinstance(e, TooManyTries):
            code, text = 429, str(e)
        return render(request, "login.html", {
            "domain": domain, "next": nxt, "login_user": user,
            "title": f"Authenticate — {domain} — NetInfo Manager",
            "extra_notices": [("error", text)]}, status_code=code)
    limiter.succeeded(who, domain, user)
    pool(request).end_credential(s.id, domain)
    s.creds[domain] = Credential(user, uid, password)
    store(request).rotate(s)            # a new cookie: a token seen before login is void
    s.notice("ok", f"Authenticated as {user}: the server will check each change.")
    return RedirectResponse(nxt, 303)


async def _login_refusal(request: Request, domain: str, user: str) -> str:
    """Why a login failed, as far as a read can tell (anyone may read, spec §10.3): a
    locked user (``passwd`` ``*``, as root is in a new domain) admits no password at all."""
    try:
        locked = await pool(request).run(None, domain, lambda c: verbs.user_is_locked(c, user))
    except (NiError, *CALL_ERRORS):
        locked = False
    if locked:
        return (f"{user} is locked (no password set): no password is accepted for {user}. "
                "The domain's superuser can set one, with nipasswd or this manager's "
                "Set password.")
    return f"The server did not accept the name or password for {user}."


@form_post
async def logout(request: Request, form: FormData, domain: str) -> Response:
    s = session(request)
    if s.creds.pop(domain, None) is not None:
        pool(request).end_credential(s.id, domain)
        s.notice("ok", "Locked: changes are now made without credentials.")
    nxt = form.get("next")
    return RedirectResponse(safe_next(nxt if isinstance(nxt, str) else None,
                                      url("/browse", d=domain)), 303)


# -- edits ---------------------------------------------------------------------------------------

Edit = Callable[[DomainClient, FormData, NiId], Awaitable[tuple[str, int]]]


@form_post
async def apply(request: Request, form: FormData, domain: str, edit: Edit) -> Response:
    """Run one edit against the directory the form names, at the instance it names.
    Success: a notice and a redirect (303) to the directory the edit points to. Failure:
    the directory page again, read fresh, with the reason and its HTTP status."""
    s = session(request)
    oid = 0
    try:
        oid = int_param(form.get("id"))
        target = NiId(oid, int_param(form.get("instance")))
        # "Set password" with the old one writes as that user on its own connection
        own = edit is _user_password and bool(form.get("old"))
        run: Edit = edit
        if own:   # its own connection, to the domain this page was admitted for
            def run(c: DomainClient, form: FormData, t: NiId) -> Awaitable[tuple[str, int]]:
                return _user_password(c, form, t, lambda: pool(request).connect(domain))
        text, goto = await pool(request).run(s, domain, lambda c: run(c, form, target),
                                             retry=False, own_credential=own)
    except (BadInput, NiError, *CALL_ERRORS) as e:
        code, message = explain(e)
        if isinstance(e, NiError) and e.status == Status.PERM and domain not in s.creds:
            message += " You are not authenticated."
        if isinstance(e, OwnerRefusal):
            message += (" This manager runs as the user that owns the domain's server, "
                        "which would take every visitor for its superuser: it writes only "
                        "for a session that authenticated.")
        try:
            ctx = await browse_context(request, domain, oid)
        except (NiError, *CALL_ERRORS):
            return render(request, "error.html", {"message": message, "domain": domain,
                                                  "title": "Not saved — NetInfo Manager"},
                          status_code=code)
        ctx["extra_notices"] = [("error", message)]
        ctx["path_here"] = url("/browse", d=domain, id=oid)
        ctx["conflict"] = isinstance(e, NiError) and e.status == Status.STALE
        return render(request, "browse.html", ctx, status_code=code)
    s.notice("ok", text)
    show = "1" if form.get("ids") == "1" else None
    return RedirectResponse(url("/browse", d=domain, id=goto, ids=show), 303)


def _index(form: FormData, name: str = "index") -> int:
    return int_param(form.get(name))


async def _dir_create(c: DomainClient, form: FormData, t: NiId) -> tuple[str, int]:
    name = text_field(form, "name")
    child, _ = await c.create(t, [("name", [name])], NI_INDEX_NULL)
    return f"Created directory {name}.", child.object


async def _dir_delete(c: DomainClient, form: FormData, t: NiId) -> tuple[str, int]:
    """The directory and its subtree, leaves first, every call with the instances read in
    one walk whose top must be the instance the page showed (else NI_STALE)."""
    parent_no, _ = await c.parent(t.object)
    if parent_no == t.object:
        raise NiError(Status.UNRELATED)
    nodes = await walk(c, t.object, with_props=True)
    top = nodes[t.object]
    if top.id.instance != t.instance:
        raise NiError(Status.STALE)
    name = label(t.object, top.props)
    parent = await c.self_id(parent_no)
    bad = dumps.first_error(await dumps.run_calls(
        dumps.destroy_calls(c, nodes, t.object, parent=parent)))
    if bad is not None:
        raise bad[1]
    n = len(nodes) - 1
    return (f"Deleted {name}" + (f" and {n} directories below it." if n else ".")), parent_no


async def _dir_copy(c: DomainClient, form: FormData, t: NiId) -> tuple[str, int]:
    dest = text_field(form, "to")
    new_parent = (await c.pathsearch(dest)).object
    if (await c.self_id(t.object)).instance != t.instance:
        raise NiError(Status.STALE)
    new = await verbs.copy(c, t.object, new_parent)
    return f"Copied to {dest}.", new


async def _prop_add(c: DomainClient, form: FormData, t: NiId) -> tuple[str, int]:
    key = text_field(form, "key")
    await c.createprop(t, key, values_field(form), NI_INDEX_NULL)
    return f"Added property {key}.", t.object


async def _prop_rename(c: DomainClient, form: FormData, t: NiId) -> tuple[str, int]:
    new = text_field(form, "key")
    await c.renameprop(t, _index(form), new)
    return f"Renamed property to {new}.", t.object


async def _prop_delete(c: DomainClient, form: FormData, t: NiId) -> tuple[str, int]:
    await c.destroyprop(t, _index(form))
    return "Deleted the property.", t.object


async def _prop_values(c: DomainClient, form: FormData, t: NiId) -> tuple[str, int]:
    await c.writeprop(t, _index(form), values_field(form))
    return "Saved the values.", t.object


async def _value_add(c: DomainClient, form: FormData, t: NiId) -> tuple[str, int]:
    await c.createname(t, _index(form), text_field(form, "value", required=False),
                       NI_INDEX_NULL)
    return "Added the value.", t.object


async def _value_edit(c: DomainClient, form: FormData, t: NiId) -> tuple[str, int]:
    await c.writename(t, _index(form), _index(form, "vindex"),
                      text_field(form, "value", required=False))
    return "Saved the value.", t.object


async def _value_delete(c: DomainClient, form: FormData, t: NiId) -> tuple[str, int]:
    await c.destroyname(t, _index(form), _index(form, "vindex"))
    return "Deleted the value.", t.object


#: Where a value moves: position after the move, given (position, count).
MOVES: dict[str, Callable[[int, int], int]] = {
    "up": lambda i, n: max(0, i - 1),
    "down": lambda i, n: min(n - 1, i + 1),
    "first": lambda i, n: 0,
    "last": lambda i, n: n - 1,
}


async def _value_move(c: DomainClient, form: FormData, t: NiId) -> tuple[str, int]:
    """Reorder one value: the values as they are at the page's instance, rewritten in the
    new order with that instance (spec §4.2 WRITEPROP)."""
    index, vindex = _index(form), _index(form, "vindex")
    where = form.get("to")
    if where not in MOVES:
        raise BadInput("move where?")
    values, now = await c.readprop(t.object, index)
    if now.instance != t.instance:
        raise NiError(Status.STALE)
    if not 0 <= vindex < len(values):
        raise NiError(Status.NONAME)
    dest = MOVES[str(where)](vindex, len(values))
    moved = list(values)
    moved.insert(dest, moved.pop(vindex))
    if moved != values:
        await c.writeprop(t, index, moved)
    return "Moved the value.", t.object


async def _user_password(c: DomainClient, form: FormData, t: NiId,
                         connect: Callable[[], Awaitable[DomainClient]] | None = None
                         ) -> tuple[str, int]:
    """Set a user's password (what ``nipasswd`` does, through the same
    ``verbs.set_password``): the new one twice; the old one when the session is not the
    superuser's, then the write is made as that user (``_writers_passwd``, spec §10.4)
    on a connection of its own, never with the session's shared handle."""
    new = text_field(form, "password")
    if text_field(form, "again", required=False) != new:
        raise BadInput("The two new passwords differ: nothing was changed.")
    scheme = text_field(form, "hash", required=False) or DEFAULT_HASH
    if scheme not in HASHES:
        raise BadInput(f"Unknown hash {scheme}.")
    old = text_field(form, "old", required=False)
    _, props = await c.read(t.object)
    name = (first_values(props, "name") or [""])[0]
    try:
        crypted = hash_password(new, HASHES[scheme])
    except RuntimeError as e:
        raise BadInput(f"Cannot hash with {scheme} here: {e}") from None
    if not old:
        await verbs.set_password(c, t, crypted)
    else:
        if connect is None:
            raise BadInput("The old password is given on a connection of its own.")
        as_user = await connect()   # the page's domain, as the pool admits it
        try:
            await authenticate(as_user, name, old, prompt=False)
            await verbs.use_master(as_user)
            await verbs.set_password(as_user, t, crypted)
        finally:
            await as_user.close()
    return f"Set the password of {name}.", t.object


EDITS: dict[str, Edit] = {
    "/dir/create": _dir_create,
    "/dir/delete": _dir_delete,
    "/dir/copy": _dir_copy,
    "/prop/add": _prop_add,
    "/prop/rename": _prop_rename,
    "/prop/delete": _prop_delete,
    "/prop/values": _prop_values,
    "/value/add": _value_add,
    "/value/edit": _value_edit,
    "/value/delete": _value_delete,
    "/value/move": _value_move,
    "/user/password": _user_password,
}


def endpoint(edit: Edit) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        return await apply(request, edit)
    run.__name__ = edit.__name__.lstrip("_")
    return run


__all__ = ["EDITS", "endpoint", "login", "login_form", "logout", "verify", "checked_form",
           "form_post", "Forbidden", "forbidden", "text_field", "values_field", "safe_next",
           "TooManyTries"]
