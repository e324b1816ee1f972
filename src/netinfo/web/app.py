"""The ASGI application: routes, sessions and the security headers every answer carries.

Routes (GET reads, POST writes; every POST needs the session's CSRF token, checked
before its body is read: :mod:`netinfo.web.guard`):

=====================  =========================================================
``/``                  open a domain by name (``.``, ``..``, ``/``, ``/a``, ``tag@host``)
``/browse``            a directory: breadcrumbs, a page of children with a filter,
                       properties and values in order, edit forms (``ids=1``: ids and
                       instances); ``path=`` opens a directory by path (tools §0.4)
``/children``          a page of children as an HTML fragment (lazy tree, filter box)
``/login`` ``/logout``  the lock: AUTH_UNIX credentials kept in the server-side session
``/dir/*`` ``/prop/*`` ``/value/*``  the edits (:data:`netinfo.web.edits.EDITS`)
``/find``              nigrep-style search in a subtree, nifind-style search up the
                       hierarchy
``/transfer`` ``/export`` ``/import``  raw and flat dumps and loads
``/history``           a directory's change history; ``POST /history/revert`` puts a
                       change back (:mod:`netinfo.web.history`, issue 24)
``/info``              master and clones with state and checksum, statistics, parent
                       and child domains
``/static/*``          the stylesheet, the script, the icon (vendored: works offline)
=====================  =========================================================

Every answer carries a Content-Security-Policy without inline script or style, and
``nosniff``, a same-origin referrer policy and ``DENY`` framing; pages are not cached.
Domains are opened only as :mod:`netinfo.web.domains` admits them, every reply the
manager gathers is bounded (:data:`~netinfo.web.domains.MAX_REPLY`), and logins are
limited per client and per user (:mod:`netinfo.web.lock`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..client.transport import REPLY_LIMIT
from . import edits, history, transfer, views
from .common import HERE
from .domains import MAX_REPLY, DomainPolicy
from .lock import LoginLimiter
from .pool import Pool
from .sessions import COOKIE, SessionStore

#: The policy: only this site's own script, styles, images and form targets.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer Chromium sends "Origin: null" on form
    # posts, and the CSRF check (an Origin of this site) could not tell them apart
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


class SessionMiddleware(BaseHTTPMiddleware):
    """Attach the browser's server-side session (a new one when it has none; for a POST,
    one that is not kept), set the cookie when its token is new or rotated, bound the
    replies gathered for the request, and add the security headers."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        store: SessionStore = request.app.state.sessions
        static = request.url.path.startswith("/static/") or request.url.path == "/favicon.ico"
        sent = request.cookies.get(COOKIE)
        s = None if static else store.get(sent)
        if s is None and not static:
            s = store.new() if request.method in ("GET", "HEAD") else store.ephemeral()
        request.state.session = s
        REPLY_LIMIT.set(MAX_REPLY)   # the connections this request opens (issue 18)
        response = await call_next(request)
        if s is not None and s.token != sent and store.get(s.token) is s:
            response.set_cookie(COOKIE, s.token, httponly=True, samesite="strict",
                                secure=request.url.scheme == "https", path="/")
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        if not static:
            response.headers["Cache-Control"] = "no-store"
        if "content-length" in request.headers or "transfer-encoding" in request.headers:
            # The connection ends with the answer: a body refused before it was read (a
            # CSRF check, a limit) or never wanted (a GET's) would otherwise be read to
            # its end, however long, to reach the next request (issue 18, N10).
            response.headers["Connection"] = "close"
        return response


async def favicon(request: Request) -> Response:
    return RedirectResponse("/static/favicon.svg", 301)


def create_app(default_domain: str = ".", *, timeout: float | None = None,
               allow_hosts: Iterable[str] = ()) -> Starlette:
    """The NetInfo Manager application; *default_domain* is opened when a URL names none.
    Other servers than *default_domain*'s and those the hierarchy names are reached only
    when *allow_hosts* lists them (``HOST`` or ``HOST:PORT``, :mod:`.domains`).

    :raises ValueError: an *allow_hosts* entry that does not parse."""
    policy = DomainPolicy(default_domain, allow_hosts)
    pool = Pool(policy=policy) if timeout is None else Pool(timeout, policy)
    sessions = SessionStore()
    sessions.on_end.append(pool.end_session)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await pool.close()

    routes = [
        Route("/", views.home),
        Route("/browse", views.browse),
        Route("/children", views.children),
        Route("/find", views.find),
        Route("/info", views.info),
        Route("/login", edits.login_form, methods=["GET"]),
        Route("/login", edits.login, methods=["POST"]),
        Route("/logout", edits.logout, methods=["POST"]),
        Route("/history", history.page),
        Route("/history/revert", history.revert, methods=["POST"]),
        Route("/transfer", transfer.page),
        Route("/export", transfer.export),
        Route("/import", transfer.import_, methods=["POST"]),
        *(Route(path, edits.endpoint(fn), methods=["POST"])
          for path, fn in edits.EDITS.items()),
        Route("/favicon.ico", favicon),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(SessionMiddleware)],
                    lifespan=lifespan)
    app.state.pool = pool
    app.state.sessions = sessions
    app.state.default_domain = default_domain
    app.state.names = {}
    app.state.limiter = LoginLimiter()
    app.state.imports = asyncio.Semaphore(transfer.IMPORTS)
    return app
