"""Browser sessions, kept on the server: credentials never leave it (issue #12).

A browser holds only a random session token in an HttpOnly, SameSite=Strict cookie
(Secure when served over https). The token maps to a :class:`Session` in this process's
memory: a CSRF token, the AUTH_UNIX credentials it logged in with per domain (tools §0.5,
spec §10.1), and one-shot notices for the next page. Nothing here is written to disk,
logged, or put in a page. Sessions end after :data:`IDLE` seconds unused.

Two pools, so that requests without a cookie cannot push out a logged-in browser
(issue 18): at most :data:`CAPACITY` sessions that never logged in, and apart from them
at most :data:`AUTH_CAPACITY` that did (the least recently used of a pool goes first). A
POST without a live session gets a session that is never stored.

CSRF: every form's action carries the session's token (``?csrf=``; scripts send the
``X-CSRF-Token`` header); a write whose token does not match, or whose ``Origin`` is
another site's, is refused before its body is read (:func:`csrf_ok`,
:mod:`netinfo.web.guard`). The token is not a secret of the account: a URL is the
manager's own (the referrer policy keeps it on this site). Logging in issues a new
session token (no fixation) and keeps the CSRF token.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field

#: Seconds a session lives without being used.
IDLE = 1800.0
#: Sessions that never logged in held at once; the least recently used is dropped.
CAPACITY = 1000
#: Sessions that logged in held at once (apart from the others).
AUTH_CAPACITY = 1000
#: The cookie's name.
COOKIE = "ni_session"


@dataclass
class Credential:
    """Who a session is in one domain: the user name, its uid there and the password
    (sent inverted in AUTH_UNIX, spec §10.1; held only in memory)."""

    user: str
    uid: int
    password: str = field(repr=False)


@dataclass
class Session:
    """One browser's state. *id* is internal (handles are keyed by it), *token* is what
    the cookie holds and changes at login."""

    id: str
    token: str
    csrf: str
    seen: float
    creds: dict[str, Credential] = field(default_factory=dict)
    notices: list[tuple[str, str]] = field(default_factory=list)

    def notice(self, kind: str, text: str) -> None:
        """Show *text* on the next page (kind: ``ok`` or ``error``)."""
        self.notices.append((kind, text))
        del self.notices[:-5]

    def take_notices(self) -> list[tuple[str, str]]:
        out, self.notices = self.notices, []
        return out


class SessionStore:
    """Token → :class:`Session`, bounded in time and number, in two pools: sessions that
    never logged in, and sessions that did (:meth:`rotate` moves one there)."""

    def __init__(self, idle: float = IDLE, capacity: int = CAPACITY,
                 auth_capacity: int = AUTH_CAPACITY) -> None:
        self.idle = idle
        self.capacity = capacity
        self.auth_capacity = auth_capacity
        self._anon: OrderedDict[str, Session] = OrderedDict()
        self._auth: OrderedDict[str, Session] = OrderedDict()
        #: called with a session's id when it ends (closes its domain handles)
        self.on_end: list = []

    def __len__(self) -> int:
        return len(self._anon) + len(self._auth)

    def _end(self, s: Session) -> None:
        s.creds.clear()
        for fn in self.on_end:
            fn(s.id)

    def expire(self, now: float | None = None) -> None:
        """Drop sessions unused for longer than :attr:`idle`."""
        now = time.monotonic() if now is None else now
        for pool in (self._anon, self._auth):
            while pool:
                token, s = next(iter(pool.items()))
                if now - s.seen <= self.idle:
                    break
                del pool[token]
                self._end(s)

    def get(self, token: str | None) -> Session | None:
        """The live session of *token*, marked as used; None when unknown or expired."""
        self.expire()
        if not token:
            return None
        for pool in (self._auth, self._anon):
            s = pool.get(token)
            if s is not None:
                s.seen = time.monotonic()
                pool.move_to_end(token)
                return s
        return None

    @staticmethod
    def ephemeral() -> Session:
        """A session that is never stored (a POST that came without one)."""
        return Session(secrets.token_hex(8), secrets.token_urlsafe(32),
                       secrets.token_urlsafe(32), time.monotonic())

    def new(self) -> Session:
        """A fresh session with new random tokens, in the pool of those never logged in."""
        while len(self._anon) >= self.capacity:
            _, old = self._anon.popitem(last=False)
            self._end(old)
        s = self.ephemeral()
        self._anon[s.token] = s
        return s

    def rotate(self, s: Session) -> None:
        """Give *s* a new cookie token (at login: a token seen before login is no use),
        and keep it with the sessions that logged in."""
        self._anon.pop(s.token, None)
        self._auth.pop(s.token, None)
        while len(self._auth) >= self.auth_capacity:
            _, old = self._auth.popitem(last=False)
            self._end(old)
        s.token = secrets.token_urlsafe(32)
        self._auth[s.token] = s

    def drop(self, s: Session) -> None:
        self._anon.pop(s.token, None)
        self._auth.pop(s.token, None)
        self._end(s)


def csrf_ok(session: Session, sent: str | None, origin: str | None, own: str) -> bool:
    """The write may proceed: the token sent equals the session's (constant time), and a
    browser-sent ``Origin``, when present, is this site (*own* = ``scheme://host``)."""
    if origin is not None and (origin == "null" or origin.rstrip("/") != own):
        return False
    if not sent:
        return False
    return hmac.compare_digest(sent.encode(), session.csrf.encode())
