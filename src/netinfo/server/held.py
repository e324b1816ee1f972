"""A connection whose answering waits (the NETINFO TCP door's and the LDAP door's).

A connection answers what it reads in order; when a call must wait — a batch's commit in
the commit thread, a store read fetched off the event loop (``server.storeio``), a
bind's verification — the connection is *held*: what it reads meanwhile waits, the other
connections are answered, and once the wait is over it goes on where it stopped
(:meth:`HeldConnection._continue`, each door's own).
"""

from __future__ import annotations

import asyncio
import logging

#: :attr:`HeldConnection._held` while a store read is fetched off the loop
FETCHING = object()


class HeldConnection(asyncio.Protocol):
    """The hold of one connection (see the module). A door sets :attr:`_held` to
    :data:`FETCHING` when it fetches a read and calls :meth:`_fetched` once it is
    there, or holds on a future with :meth:`_hold_until`."""

    #: the future or the fetch the connection waits for; None: it answers
    _held: object | None = None
    transport: asyncio.Transport | None = None

    def _hold_until(self, fut: asyncio.Future[None], log: logging.Logger, who: str) -> None:
        """Held until *fut* is done, then :meth:`_continue`; if it failed, the
        connection is closed (said on *log*, naming *who*)."""
        self._held = fut

        def release(_: asyncio.Future[None]) -> None:
            if self._held is fut:
                self._held = None
            if not fut.cancelled() and fut.exception() is not None:
                log.error("closing %s: %s", who, fut.exception())
                if self.transport is not None:
                    self.transport.abort()
                return
            self._continue()
        fut.add_done_callback(release)

    def _fetched(self) -> None:
        """The read the connection's first waiting call missed is there: answer on."""
        if self._held is FETCHING:
            self._held = None
        self._continue()

    def _continue(self) -> None:
        """Go on answering what waits (each door's own)."""
        raise NotImplementedError
