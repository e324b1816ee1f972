"""What every page of the web manager shares: templates, URLs, the domain parameter,
rendering with the session's state, and the one mapping from failures to pages.

Values are ``str`` decoded with ``surrogateescape`` (architecture "Names are str"): the
template layer prints bytes that are not UTF-8 as U+FFFD instead of failing, and URLs
carry them percent-encoded.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from ..client.domain import DomainClient, DomainSyntaxError, TaggedError, domain_name
from ..client.walk import CALL_ERRORS
from ..errors import MESSAGES, NetInfoError, NiError, Status, Timeout
from ..model import first_values
from .domains import DomainRefused
from .paging import PAGE
from .pool import Pool
from .sessions import Session, SessionStore

HERE = Path(__file__).resolve().parent
#: Seconds a domain's printed name (spec §7.7, a climb of RPARENT calls) is reused.
NAME_TTL = 30.0
#: Printed names cached at once (expired ones, else all, are dropped beyond it).
NAMES = 256


def printable(value: Any) -> Any:
    """Template output: a ``str`` with lone surrogates (bytes that were not UTF-8) gets
    U+FFFD in their place, so a page always encodes."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return "" if value is None else value


def url(where: str, /, **params: Any) -> str:
    """*path* with query *params* (None values left out), encoded losslessly."""
    q = {k: v for k, v in params.items() if v is not None and v is not False}
    if not q:
        return where
    return where + "?" + urlencode(q, encoding="utf-8", errors="surrogateescape")


def label(did: int, props: list | None = None, names: list[str] | None = None) -> str:
    """How the browser names a directory: its first ``name`` value, else its number
    (tools §6: "Directories without a name are shown by numeric ID")."""
    if names is None and props is not None:
        names = first_values(props, "name")
    return names[0] if names else f"#{did}"


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=jinja2.select_autoescape(("html",), default=True),
        finalize=printable, trim_blocks=True, lstrip_blocks=True,
        undefined=jinja2.StrictUndefined)
    env.globals["url"] = url
    env.globals["PAGE"] = PAGE
    env.filters["label"] = label
    env.filters["thousands"] = lambda n: f"{n:,}"
    return env


templates = Jinja2Templates(env=_env())


# -- request state ------------------------------------------------------------------------------

def pool(request: Request) -> Pool:
    return request.app.state.pool


def store(request: Request) -> SessionStore:
    return request.app.state.sessions


def session(request: Request) -> Session:
    return request.state.session


def domain_of(request: Request, form: Any = None) -> str:
    """The domain the request is about (``d``), else the server's default domain."""
    src = form if form is not None else request.query_params
    d = (src.get("d") or "").strip()
    return d or request.app.state.default_domain


def int_param(value: Any, default: int | None = None) -> int:
    """A non-negative decimal number from a form or query; :raises BadInput:."""
    if value is None or value == "":
        if default is not None:
            return default
        raise BadInput("a number is missing")
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        raise BadInput(f"not a number: {text[:20]!r}")
    return int(text)


class BadInput(ValueError):
    """A form or query that does not make sense: 400 with the message."""


async def display_name(request: Request, c: DomainClient, domain: str) -> str:
    """The domain's absolute name (``/``, ``/sales``, ``tag@addr``), cached a while."""
    cache: dict[str, tuple[float, str]] = request.app.state.names
    now = time.monotonic()
    got = cache.get(domain)
    if got is not None and got[0] > now:
        return got[1]
    try:
        name = await domain_name(c, retries=0)
    except CALL_ERRORS:
        name = f"{c.server[1]}@{c.server[0]}"
    if len(cache) >= NAMES:
        for key in [k for k, (until, _) in cache.items() if until <= now] or list(cache):
            del cache[key]
    cache[domain] = (now + NAME_TTL, name)
    return name


def render(request: Request, template: str, context: dict[str, Any],
           status_code: int = 200) -> Response:
    """A page with what every page shows: the domain, who is logged in, notices, the CSRF
    token for its forms."""
    s = session(request)
    domain = context.get("domain") or domain_of(request)
    ctx = {
        "domain": domain,
        "user": s.creds[domain].user if domain in s.creds else None,
        "csrf": s.csrf,
        "notices": s.take_notices() + context.pop("extra_notices", []),
        "path_here": request.url.path + ("?" + request.url.query if request.url.query
                                         else ""),
        "title": "NetInfo Manager",
        "domain_label": domain,
        "nav": "",
    }
    ctx.update(context)
    return templates.TemplateResponse(request, template, ctx, status_code=status_code)


# -- failures -----------------------------------------------------------------------------------

#: NetInfo statuses → (HTTP status, what the page says), spec §0.3 wording after it.
STATUS_PAGES: dict[int, tuple[int, str]] = {
    Status.STALE: (409, "Not saved: this directory was changed by someone else since you "
                        "loaded it. Reload to see the current version, then make your "
                        "change again."),
    Status.PERM: (403, "The server refused this change: permission denied. Click the "
                       "lock to authenticate, or ask for a name in this directory's "
                       "_writers."),
    Status.AUTHERROR: (403, "The server refused the credentials: authentication error."),
    Status.NOUSER: (403, "No such user in this domain."),
    Status.RDONLY: (403, "The server refused this change: the directory or domain is "
                         "read-only."),
    Status.NODIR: (404, "No such directory."),
    Status.BADID: (404, "That directory no longer exists (someone removed it)."),
    Status.NOPROP: (409, "That property no longer exists: reload."),
    Status.NONAME: (409, "That value no longer exists: reload."),
    Status.NOTEMPTY: (409, "The directory still has children."),
    Status.UNRELATED: (400, "That is not possible here (the root has no parent)."),
}


def explain(err: BaseException) -> tuple[int, str]:
    """(HTTP status, message) for a failure; the server's own words follow in brackets."""
    if isinstance(err, BadInput):
        return 400, str(err)
    if isinstance(err, (TaggedError, DomainSyntaxError)):
        return 400, f"Not a domain name: {err}"
    if isinstance(err, DomainRefused):
        return 403, f"Refused: {err}."
    if isinstance(err, NiError):
        code, text = STATUS_PAGES.get(err.status, (502, "The server could not do it."))
        return code, f"{text} (server: {MESSAGES.get(err.status, err.status)})"
    if isinstance(err, Timeout):
        return 504, "The domain's server did not answer in time."
    if isinstance(err, (NetInfoError, OSError)):
        return 502, "Cannot reach the domain's server."
    return 500, "Something went wrong."


def error_page(request: Request, err: BaseException, *, domain: str | None = None,
               title: str = "Error") -> Response:
    code, text = explain(err)
    return render(request, "error.html", {"message": text, "title": f"{title} — NetInfo "
                                          "Manager", "domain": domain or domain_of(request)},
                  status_code=code)


__all__ = ["PAGE", "printable", "url", "templates", "label", "pool", "store", "session",
           "domain_of", "int_param", "BadInput", "display_name", "render", "explain",
           "error_page", "STATUS_PAGES"]
