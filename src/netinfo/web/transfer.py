"""Moving data in and out: export and import of a subtree in nidump's raw format and of
the flat formats (passwd, group, hosts, ...), through :mod:`netinfo.client.dumps`, the very
code nidump and niload run (tools §2).

Safety is niload's (tools §2.7): input is parsed completely before anything is written;
a flat import that reads no records changes nothing (even with "replace the table"); a
raw import replaces the target directory and everything below it, so it also needs a
ticked confirmation and is refused when the input holds no properties and no children.

Bounds (issue 18): an import's body is at most :data:`~netinfo.web.guard.MAX_IMPORT`
bytes, refused from its Content-Length or as it streams, after its CSRF check; at most
:data:`IMPORTS` imports are read and parsed at once (others get 503 at once, before
their body is read); the parse runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from ..client import dumps
from ..client.domain import DomainClient
from ..client.flat import FORMATS, NIDUMP_FORMATS, NILOAD_FORMATS
from ..client.raw import FormatError, raw_from_text, raw_to_text
from ..client.walk import CALL_ERRORS
from ..errors import MESSAGES, NiError, TooLong
from .common import BadInput, domain_of, explain, pool, render, session, url
from .edits import form_post
from .guard import MAX_IMPORT

#: Imports read, parsed and loaded at once: a raw parse holds about 20-40 times its
#: input (measured: 170 MiB over the process for 7.7 MiB of users), so one at a time.
IMPORTS = 1


def _context(domain: str, **extra: Any) -> dict[str, Any]:
    ctx = {"domain": domain, "nav": "transfer", "dump_formats": NIDUMP_FORMATS,
           "load_formats": NILOAD_FORMATS, "formats": FORMATS, "result": None,
           "log": "", "path": "/", "fmt": "raw", "merge": False, "replace": False,
           "title": f"Export and import — {domain} — NetInfo Manager",
           "path_here": url("/transfer", d=domain)}
    ctx.update(extra)
    return ctx


async def page(request: Request) -> Response:
    domain = domain_of(request)
    q = request.query_params
    return render(request, "transfer.html", _context(domain, path=q.get("path") or "/"))


def _filename(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "netinfo"


async def export(request: Request) -> Response:
    """``nidump -r <path>`` or ``nidump <format>`` as a download (tools §2.2, §2.3)."""
    domain = domain_of(request)
    q = request.query_params
    fmt = q.get("format") or "raw"
    path = q.get("path") or "/"
    if fmt != "raw" and fmt not in NIDUMP_FORMATS:
        return render(request, "transfer.html", _context(
            domain, extra_notices=[("error", f"Unknown format {fmt}.")]), status_code=400)

    async def go(c: DomainClient) -> str | None:
        if fmt == "raw":
            tree = await dumps.read_subtree(c, path)
            # escape_backslashes: lossless, as nidump -r (cli/nidump docstring)
            return None if tree is None else raw_to_text(tree, escape_backslashes=True)
        found, records = await dumps.read_table(c, fmt)
        if not found and not FORMATS[fmt].dump_when_missing:
            return None
        return FORMATS[fmt].to_text(records)
    try:
        text = await pool(request).run(session(request), domain, go)
    except (NiError, *CALL_ERRORS) as e:
        code, message = explain(e)
        return render(request, "transfer.html", _context(
            domain, path=path, extra_notices=[("error", message)]), status_code=code)
    if text is None:
        where = path if fmt == "raw" else FORMATS[fmt].directory
        return render(request, "transfer.html", _context(
            domain, path=path, extra_notices=[("error", f"No directory {where} here.")]),
            status_code=404)
    name = _filename((path.strip("/") or "root") + ".raw" if fmt == "raw" else fmt)
    return Response(text.encode("utf-8", "surrogateescape"),
                    media_type="text/plain; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


async def _input_text(form: Any) -> bytes:
    upload = form.get("file")
    if isinstance(upload, UploadFile) and upload.filename:
        data = await upload.read(MAX_IMPORT + 1)
        if len(data) > MAX_IMPORT:
            raise BadInput("the file is too large")
        return data
    text = form.get("text")
    return text.encode("utf-8", "surrogateescape") if isinstance(text, str) else b""


def _parse_raw(data: bytes) -> Any:
    """``raw_from_text`` of the input (in a worker thread)."""
    return raw_from_text(data.decode("utf-8", "surrogateescape"))


async def import_(request: Request) -> Response:
    """``niload -r <path>`` or ``niload [-m] [-d] <format>`` from a file or the text box;
    :data:`IMPORTS` at a time."""
    slots: asyncio.Semaphore = request.app.state.imports
    if slots.locked():
        return render(request, "transfer.html", _context(domain_of(request), extra_notices=[
            ("error", "Another import is being read: try again in a moment. Nothing was "
                      "changed.")]), status_code=503)
    async with slots:
        return await _import(request)


@form_post(limit=MAX_IMPORT)
async def _import(request: Request, form: Any, domain: str) -> Response:
    fmt = str(form.get("format") or "raw")
    path = str(form.get("path") or "")
    merge = form.get("merge") == "1"
    replace = form.get("replace") == "1"
    ctx = _context(domain, path=path or "/", fmt=fmt, merge=merge, replace=replace)
    log: list[str] = []
    try:
        data = await _input_text(form)
        if fmt == "raw":
            if not path.startswith("/"):
                raise BadInput("A raw import needs an absolute directory path, such as "
                               "/users.")
            try:
                tree = await asyncio.to_thread(_parse_raw, data)
            except FormatError as e:
                raise BadInput(f"The input does not parse: {e}. Nothing was changed.") \
                    from None
            del data
            if not tree.props and not tree.children:
                raise BadInput("The input is empty: nothing was changed (an empty import "
                               "never deletes).")
            if form.get("confirm") != "1":
                raise BadInput(f"Tick the confirmation: a raw import replaces {path} and "
                               "everything below it. Nothing was changed.")

            async def load_raw(c: DomainClient) -> str:
                await dumps.raw_load(c, path, tree)
                return (f"Imported {path}: {1 + _count(tree.children)} directories "
                        "written.")
            result = await pool(request).run(session(request), domain, load_raw,
                                             retry=False)
        elif fmt in NILOAD_FORMATS:
            async def load_flat(c: DomainClient) -> str:
                run = await dumps.load_flat(c, fmt, data, merge=merge, delete=replace,
                                            verbose=True, write=log.append, prog="import")
                if run is None:
                    return "0 items read from input: nothing was changed."
                counts = run.counts
                words = {"create": "created", "write": "replaced", "merge": "merged"}
                return "Imported into {}: {}.".format(FORMATS[fmt].directory, ", ".join(
                    f"{n} {words[a]}" for a, n in counts.items()) or "nothing to do")
            result = await pool(request).run(session(request), domain, load_flat,
                                             retry=False)
        else:
            raise BadInput(f"Unknown format {fmt}.")
    except dumps.LoadError as e:
        err = e.err
        detail = MESSAGES.get(err.status, str(err)) if isinstance(err, NiError) \
            else str(err) or type(err).__name__
        code = explain(err)[0]
        after = ("Nothing was changed." if isinstance(err, TooLong) else   # checked first
                 "Records before it were written." if fmt != "raw" else
                 "The import stopped part way: export the directory to see what it holds.")
        if isinstance(err, TooLong):
            code = 400
        ctx.update(log="".join(log), extra_notices=[("error", f"{e.what}: {detail}. {after}")])
        return render(request, "transfer.html", ctx, status_code=code)
    except FormatError as e:
        # a flat input with a line that does not parse or a record over a bound
        # (netinfo.wire.limits): refused whole before any write, the table untouched
        ctx.update(log="".join(log), extra_notices=[
            ("error", f"The input cannot be loaded: {e}. Nothing was changed.")])
        return render(request, "transfer.html", ctx, status_code=400)
    except (BadInput, NiError, *CALL_ERRORS) as e:
        code, message = explain(e)
        ctx.update(log="".join(log), extra_notices=[("error", message)])
        return render(request, "transfer.html", ctx, status_code=code)
    ctx.update(result=result, log="".join(log))
    return render(request, "transfer.html", ctx)


def _count(nodes: list) -> int:
    n = 0
    stack = list(nodes)
    while stack:
        node = stack.pop()
        n += 1
        stack.extend(node.children)
    return n
