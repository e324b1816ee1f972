"""The lock's own defences (issue 18 item 6): how often a browser may guess a password,
and why a wrong guess never reaches netinfod.

netinfod limits failures per peer address (docs/security.md) and lets loopback through.
A manager is one peer for all its visitors: on the server's host it guessed without
limit; on another host, five wrong passwords from anyone locked everyone out. So:

**Checked here first.** ``/users`` is readable by anyone (spec §10.3), so the manager
checks the password against the ``passwd`` of every user with that uid itself, as
netinfod would (spec §10.2: missing or empty ``passwd`` admits; ``crypt`` must match;
``authentication_authority`` other than basic is skipped), in a worker thread. Only a
password that matches here, or one whose hash format this process cannot check (a
bcrypt or argon2 backend not installed), is sent to the server: wrong guesses never
count against the manager's address there.

**Per client** (the browser's address, loopback included): :data:`CLIENT_FREE` failures
cost nothing; each further one doubles the wait before the next try (1 s, 2 s, 4 s ...,
at most :data:`MAX_WAIT`). A success clears the record; a record is forgotten
:data:`FORGET` seconds after its last failure.

**Per user** (domain and name): past :data:`USER_LIMIT` failures within
:data:`USER_WINDOW` seconds, from all clients together, the user may be tried only from
a client with a good record: one with no failure on record, or one this user logged in
from before (the last :data:`KNOWN` such clients per user). Guessing one password from
many addresses then costs an address per guess per window, and the user, at a client of
their own, is never locked out.

At most :data:`RECORDS` client records and as many user records are held; the oldest
go first.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from ..client.domain import DomainClient
from ..errors import NiError, Status
from ..model import first_values
from ..passwords import verdict

#: Failures from one client before it has to wait.
CLIENT_FREE = 3
#: Longest wait imposed on one client, seconds.
MAX_WAIT = 300.0
#: Seconds after its last failure a client's record is forgotten.
FORGET = 900.0
#: Failures of one user, from all clients, within :data:`USER_WINDOW` before only
#: clients with a good record may try it.
USER_LIMIT = 10
#: Seconds over which a user's failures are counted.
USER_WINDOW = 900.0
#: Clients remembered per user as having logged in as it.
KNOWN = 16
#: Client records, and user records, held at once.
RECORDS = 10_000


@dataclass
class _Client:
    fails: int = 0
    last: float = 0.0
    until: float = 0.0


@dataclass
class _User:
    fails: deque[float] = field(default_factory=deque)
    known: OrderedDict[str, None] = field(default_factory=OrderedDict)


class LoginLimiter:
    """Failures per client and per user, and the waits they impose."""

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._users: OrderedDict[tuple[str, str], _User] = OrderedDict()

    def _client(self, addr: str, now: float) -> _Client | None:
        rec = self._clients.get(addr)
        if rec is not None and now - rec.last > FORGET:
            del self._clients[addr]
            return None
        return rec

    def wait(self, addr: str, domain: str, user: str) -> float:
        """Seconds *addr* must wait before trying *user* in *domain*; 0 when it may now.
        ``inf`` when the user is over its limit and *addr* has no good record."""
        now = self.clock()
        rec = self._client(addr, now)
        if rec is not None and rec.until > now:
            return rec.until - now
        u = self._users.get((domain, user))
        if u is None:
            return 0.0
        while u.fails and now - u.fails[0] > USER_WINDOW:
            u.fails.popleft()
        if len(u.fails) < USER_LIMIT or addr in u.known or rec is None or rec.fails == 0:
            return 0.0
        return float("inf")

    def failed(self, addr: str, domain: str, user: str) -> None:
        now = self.clock()
        rec = self._client(addr, now) or _Client()
        rec.fails += 1
        rec.last = now
        if rec.fails > CLIENT_FREE:
            rec.until = now + min(MAX_WAIT, 2.0 ** (rec.fails - CLIENT_FREE - 1))
        self._clients[addr] = rec
        self._clients.move_to_end(addr)
        u = self._users.setdefault((domain, user), _User())
        self._users.move_to_end((domain, user))
        u.fails.append(now)
        while len(u.fails) > USER_LIMIT * 4:    # only the window's count matters
            u.fails.popleft()
        self._trim()

    def succeeded(self, addr: str, domain: str, user: str) -> None:
        self._clients.pop(addr, None)
        u = self._users.setdefault((domain, user), _User())
        self._users.move_to_end((domain, user))
        u.known[addr] = None
        u.known.move_to_end(addr)
        while len(u.known) > KNOWN:
            u.known.popitem(last=False)
        self._trim()

    def _trim(self) -> None:
        for table in (self._clients, self._users):
            while len(table) > RECORDS:
                table.popitem(last=False)


async def check_here(c: DomainClient, uid: int, password: str) -> None:
    """Check *password* against the users of *uid* in *c*'s domain as netinfod would
    (spec §10.2 step 3), without sending it. Returns when one matches or cannot be
    judged here (the server decides). :raises NiError: NI_AUTHERROR when none can
    match, NI_NOUSER when no user has the uid."""
    users = await c.pathsearch("/users")
    ids, _ = await c.lookup(users, "uid", str(uid))
    if not ids:
        raise NiError(Status.NOUSER)
    for oid in ids:
        _, props = await c.read(oid)
        authority = first_values(props, "authentication_authority")
        if authority and authority[0] not in (";basic;", ""):
            continue
        stored = first_values(props, "passwd")
        if not stored or stored[0] == "":
            return
        if await asyncio.to_thread(verdict, password, stored[0]) is not False:
            return
    raise NiError(Status.AUTHERROR)


__all__ = ["LoginLimiter", "check_here", "CLIENT_FREE", "MAX_WAIT", "FORGET",
           "USER_LIMIT", "USER_WINDOW", "KNOWN", "RECORDS"]
