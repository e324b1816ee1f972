"""What a POST must show before the manager reads its body, and how much it may send
(issue 18 item 6).

Order of the checks, none of which reads the body:

1. the request has a live session (its cookie; a POST without one gets no session);
2. its ``Origin``, or when a browser sent none its ``Referer``, is this site;
3. the session's CSRF token is in the ``X-CSRF-Token`` header or the ``csrf`` query
   parameter (every form's action carries it: ``/prop/add?csrf=…``);
4. its ``Content-Length``, when given, is within the route's limit.

Only then is the body read, counted as it streams and abandoned past the limit
(:data:`MAX_FORM`, or :data:`MAX_IMPORT` for ``/import``) or past :data:`BODY_TIMEOUT`,
and parsed from memory.
Redirect targets (``next``) are checked by :func:`safe_next`.
"""

from __future__ import annotations

import asyncio
import unicodedata
from urllib.parse import unquote, urlsplit

from starlette.datastructures import FormData
from starlette.requests import ClientDisconnect, Request

from .sessions import Session, csrf_ok

#: Largest form body of an edit, the lock or logout, bytes.
MAX_FORM = 1024 * 1024
#: Largest body of an import (the file or the text box, with the form around it), bytes.
MAX_IMPORT = 8 * 1024 * 1024


#: Seconds a body may take to arrive.
BODY_TIMEOUT = 60.0

#: Unicode categories a redirect target may not hold: controls (tab, newline), format
#: characters (zero-width, direction marks), line and paragraph separators.
_UNSAFE = frozenset({"Cc", "Cf", "Zl", "Zp"})


class Forbidden(Exception):
    """A write without the session's CSRF token (an old page, or another site)."""


class TooLarge(Exception):
    """A body over the route's limit (HTTP 413), slower than :data:`BODY_TIMEOUT`
    (HTTP 408), or cut short by the client (400)."""

    TEXTS = {413: "the request is larger than {limit:,} bytes",
             408: f"the request took longer than {BODY_TIMEOUT:g} s to arrive",
             400: "the request was cut short"}

    def __init__(self, limit: int, status: int = 413) -> None:
        super().__init__(self.TEXTS[status].format(limit=limit))
        self.limit = limit
        self.status = status


def own_origin(request: Request) -> str:
    """``scheme://host[:port]`` of this site as the browser addressed it."""
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"


def sender_origin(request: Request) -> str | None:
    """The origin a browser says the request came from: ``Origin``, else the scheme and
    host of ``Referer``; None when neither was sent (a script, not a browser)."""
    origin = request.headers.get("origin")
    if origin is not None:
        return origin
    referer = request.headers.get("referer")
    if referer is None:
        return None
    try:
        parts = urlsplit(referer)
    except ValueError:
        return "null"
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else "null"


def sent_token(request: Request) -> str | None:
    """The CSRF token of a POST: the ``X-CSRF-Token`` header, else the ``csrf`` query
    parameter (never the body: it is checked before the body is read)."""
    return request.headers.get("x-csrf-token") or request.query_params.get("csrf")


def precheck(request: Request, session: Session | None, limit: int) -> None:
    """Steps 1-4 above. :raises Forbidden: :raises TooLarge:."""
    if session is None or not csrf_ok(session, sent_token(request), sender_origin(request),
                                      own_origin(request)):
        raise Forbidden()
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise TooLarge(limit)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, at most *limit* bytes, counted as it arrives. :raises TooLarge:."""
    buf = bytearray()
    try:
        async with asyncio.timeout(BODY_TIMEOUT):
            async for chunk in request.stream():
                buf += chunk
                if len(buf) > limit:
                    raise TooLarge(limit)
    except TimeoutError:
        raise TooLarge(limit, 408) from None
    except ClientDisconnect:
        raise TooLarge(limit, 400) from None
    body = bytes(buf)
    # Starlette parses request.form() from a body already read (Request.stream)
    request._body = body
    return body


async def checked_form(request: Request, session: Session | None,
                       limit: int = MAX_FORM) -> FormData:
    """The form of a POST that passed :func:`precheck`, read within *limit*.
    :raises Forbidden: :raises TooLarge:."""
    precheck(request, session, limit)
    await read_body(request, limit)
    return await request.form(max_part_size=limit)


def safe_next(target: str | None, fallback: str) -> str:
    """*target* when it is a path of this site, else *fallback*: it starts with one
    ``/`` not followed by ``/`` or ``\\`` (as written and percent-decoded), holds no
    backslash, and no control or format character once decoded (a browser drops tab
    and newline from a URL, so ``/\\t/evil.example`` would become ``//evil.example``)."""
    if not target:
        return fallback
    if "\\" in target:
        return fallback
    for text in (target, unquote(target)):
        if not text.startswith("/") or text[1:2] in ("/", "\\"):
            return fallback
        if any(unicodedata.category(ch) in _UNSAFE for ch in text):
            return fallback
    return target


__all__ = ["MAX_FORM", "MAX_IMPORT", "Forbidden", "TooLarge", "own_origin",
           "sender_origin", "sent_token", "precheck", "read_body", "checked_form",
           "safe_next"]
