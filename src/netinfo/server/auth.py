"""Authentication: who a caller is, by name or uid and password, behind one failure
limiter (spec §10.2). Pure (the clock is passed in).

:class:`Authenticator` is the one door every credential goes through: NETINFO's AUTH_UNIX
(the inverted password of the machinename, with the credential's uid) on a write, and any
later front door that checks a name and a password (an LDAP simple bind, say), so that no
door guesses passwords past the limiter. The password check itself is the domain's
(:meth:`service.DirectoryService.check_user`: /users, ``passwd``, ``/groups/admin``).

The limiter (:class:`FailureLimiter`): :data:`AUTH_FAILURES` failures from one peer
address within :data:`AUTH_WINDOW` seconds refuse that address's credentials for
:data:`AUTH_WINDOW` seconds without checking a password. Loopback peers are only logged:
anyone on this host can read the hashes anyway (READ of /users), and the host's own
tools must not lock each other out. Failures are reported (the owner logs them) with the
user, the peer and the reason, never the password.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from ..errors import NiError, Status
from ..storage.changes import Caller

#: Failed authentications from one address within AUTH_WINDOW seconds, after which its
#: credentials are refused for AUTH_WINDOW seconds without checking a password.
AUTH_FAILURES = 5
AUTH_WINDOW = 60
#: Peers remembered at most before the stale ones are dropped.
MAX_PEERS = 4096

#: The domain's check: (name or uid, password) → (user name, superuser), or NiError
#: NI_NOUSER / NI_AUTHERROR.
UserCheck = Callable[[str | int, str], tuple[str, bool]]


def is_loopback(addr: str) -> bool:
    """A peer on this host's loopback (its failures are logged, never limited)."""
    return addr.startswith("127.") or addr.removeprefix("::ffff:").startswith("127.") \
        or addr in ("::1", "")


class FailureLimiter:
    """Failed authentications per peer address (module docstring)."""

    def __init__(self, report: Callable[[str], None] | None = None,
                 failures: int = AUTH_FAILURES, window: float = AUTH_WINDOW,
                 clock: Callable[[], float] = time.monotonic) -> None:
        #: told of each failure and each refusal, as a sentence (the owner logs it)
        self.report = report or (lambda message: None)
        self.failures = failures
        self.window = window
        self.clock = clock
        #: peer address → times of its recent failed authentications
        self._failed: dict[str, list[float]] = {}
        #: peer address → until when its credentials are refused
        self._blocked: dict[str, float] = {}

    def check(self, addr: str) -> None:
        """:raises NiError: NI_AUTHERROR while *addr*'s credentials are refused."""
        if self._blocked.get(addr, 0.0) > self.clock():
            raise NiError(Status.AUTHERROR, "too many failed authentications; retry later")

    def failed(self, addr: str, port: int, who: str, reason: str) -> None:
        """Count (and log) one failure of *who* (``uid N`` or ``user NAME``) from
        *addr*:*port*."""
        now = self.clock()
        recent = [t for t in self._failed.get(addr, ()) if now - t < self.window]
        recent.append(now)
        self.report(f"authentication failed for {who} from {addr}:{port}: {reason}")
        if len(recent) >= self.failures and not is_loopback(addr):
            self._blocked[addr] = now + self.window
            self.report(f"{len(recent)} failed authentications from {addr} within "
                        f"{self.window:g} s: refusing its credentials for {self.window:g} s")
            recent = []
        self._failed[addr] = recent
        if len(self._failed) > MAX_PEERS:  # many peers: keep only the recent ones
            for a in [a for a, ts in self._failed.items()
                      if not ts or now - ts[-1] >= self.window]:
                del self._failed[a]
            for a in [a for a, t in self._blocked.items() if t <= now]:
                del self._blocked[a]


class Authenticator:
    """``authenticate(name or uid, password, peer) -> Caller`` behind the limiter."""

    def __init__(self, check: UserCheck, limiter: FailureLimiter | None = None) -> None:
        self.check = check
        self.limiter = limiter if limiter is not None else FailureLimiter()

    def authenticate(self, who: str | int, password: str, peer: Caller) -> Caller:
        """Who *peer* (its address, port and ``checksum_only``) is when it proves to be
        *who* — a user name or a uid — with *password* (spec §10.2 step 3): the caller
        as that user (superuser for uid 0 and, unless ``promote_admins`` is NO, for
        members of /groups/admin).

        :raises NiError: NI_NOUSER (no such user), NI_AUTHERROR (wrong password, or the
            peer's credentials refused after too many failures); never a fall-back to
            anonymous (step 4).
        """
        self.limiter.check(peer.addr)
        try:
            user, superuser = self.check(who, password)
        except NiError as e:
            self._count(e, who, peer)
            raise
        return Caller(peer.addr, peer.port, superuser, user, peer.checksum_only)

    async def authenticate_with(self, who: str | int, password: str, peer: Caller,
                                check: Callable[[str | int, str],
                                                Awaitable[tuple[str, bool]]]) -> Caller:
        """:meth:`authenticate` with the domain's check awaited (the LDAP door verifies
        the hash in a worker thread, so that a bind does not hold the event loop): the
        same limiter before, the same failures counted, the same caller or error."""
        self.limiter.check(peer.addr)
        try:
            user, superuser = await check(who, password)
        except NiError as e:
            self._count(e, who, peer)
            raise
        return Caller(peer.addr, peer.port, superuser, user, peer.checksum_only)

    def _count(self, e: NiError, who: str | int, peer: Caller) -> None:
        """A refused password or unknown user counts against *peer*'s address."""
        if e.status in (Status.AUTHERROR, Status.NOUSER):
            label = f"uid {who}" if isinstance(who, int) else f"user {who!r}"
            self.limiter.failed(peer.addr, peer.port, label, str(e))


__all__ = ["AUTH_FAILURES", "AUTH_WINDOW", "Authenticator", "FailureLimiter", "UserCheck",
           "is_loopback"]
