"""Pipelined calls and the pipelined tree walk, shared by the bulk tools (nidump, niload).

:func:`pipelined` keeps up to :data:`WINDOW` calls in flight on one connection and gives
their results back in order; :func:`walk` reads a whole subtree level by level with its
READ and CHILDREN calls pipelined (DESIGN "Tools pipeline"; tools §2.3). Progress is
reported through a plain callable, so a tool can drive its own progress bar; nothing here
prints.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar, cast

from ..errors import NetInfoError, NiError, Status
from ..model import NiId, Proplist
from .core import Client

#: Calls kept in flight on the connection at once (pipelining, DESIGN "Tools pipeline").
WINDOW = 512

T = TypeVar("T")

#: What a pipelined call may fail with and still be given back as a result: every error
#: of the library (NiError, Timeout, RpcError, WireError, ConnectionFailed) and OSError.
CALL_ERRORS = (NetInfoError, OSError)


async def _settle(task: Awaitable[T]) -> T | BaseException:
    try:
        return await task
    except CALL_ERRORS as e:
        return e


async def pipelined(factories: Iterable[Callable[[], Awaitable[T]]], window: int = WINDOW,
                    done: Callable[[int], None] | None = None) -> list[T | BaseException]:
    """Start each call in order, keeping up to *window* in flight on the connection, and
    return their results in the same order (a failed call's exception in its place).

    Calls are issued in the order given: a task sends its request at its first step and
    tasks start in creation order, so the server sees them in that order and answers in
    order (transport.py). A factory may await an earlier call's result before sending (a
    child needs its parent's id); it must never wait on a later one. *done(i)* is called
    as the i-th result arrives.
    """
    out: list[T | BaseException] = []
    flying: deque[asyncio.Future[T]] = deque()
    for make in factories:
        if len(flying) >= window:
            out.append(await _settle(flying.popleft()))
            if done:
                done(len(out) - 1)
        flying.append(asyncio.ensure_future(make()))
    while flying:
        out.append(await _settle(flying.popleft()))
        if done:
            done(len(out) - 1)
    return out


@dataclass
class TreeNode:
    """One directory of a walked subtree: its id with the instance read, its properties
    (None when not read) and its children's numbers."""

    id: NiId
    props: Proplist | None
    kids: list[int]


async def walk(c: Client, top: int, *, with_props: bool = True, window: int = WINDOW,
               progress: Callable[[int], None] | None = None) -> dict[int, TreeNode]:
    """Every directory of the subtree at *top*, level by level, with its READ and
    CHILDREN calls pipelined (tools §2.3; DESIGN "Tools pipeline").

    *progress(n)* is called as directories are read, with how many were just read (1).
    A directory that vanishes during the walk (NI_BADID) is left out, with its subtree.

    :raises NiError: any other failure. :raises CALL_ERRORS: communication failures.
    """
    nodes: dict[int, TreeNode] = {}
    level = [top]
    step = 2 if with_props else 1
    done = None
    if progress is not None:
        def done(i: int) -> None:
            if i % step == 0:
                progress(1)
    while level:
        calls: list[Callable[[], Awaitable[Any]]] = []
        for oid in level:
            if with_props:
                calls.append(partial(c.read, oid))
            calls.append(partial(c.children, oid))
        results = await pipelined(calls, window, done)
        nxt: list[int] = []
        for n, oid in enumerate(level):
            got = results[n * step:(n + 1) * step]
            bad = next((r for r in got if isinstance(r, BaseException)), None)
            if bad is not None:
                if isinstance(bad, NiError) and bad.status == Status.BADID and oid != top:
                    continue
                raise bad
            ok = cast("list[Any]", got)   # no exception among them (checked above)
            props = ok[0][1] if with_props else None
            kids, nid = ok[-1]
            kids = list(kids)
            nodes[oid] = TreeNode(nid, props, kids)
            nxt.extend(kids)
        level = nxt
    for node in nodes.values():   # drop children that vanished mid-walk
        if any(k not in nodes for k in node.kids):
            node.kids = [k for k in node.kids if k in nodes]
    return nodes


__all__ = ["WINDOW", "CALL_ERRORS", "pipelined", "TreeNode", "walk"]
