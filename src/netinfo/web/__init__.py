"""NetInfo Manager in the browser (tools §6): a Starlette + Jinja2 application.

It talks to domains only through the client library (``netinfo.client.domain``, ``verbs``,
``walk``, ``dumps``, ``search``, ``formats``), never to storage and never through the
tools in ``netinfo.cli`` (DESIGN.md "web/: talks through the client, never to storage").
The server decides every permission (tools §0.5): the manager forwards the AUTH_UNIX
credentials a browser session logged in with and shows the server's answer.

``create_app()`` builds the ASGI application; ``netinfo-web`` (:mod:`netinfo.web.server`)
serves it. Starlette, Jinja2 and uvicorn come with the ``web`` extra.
"""

from __future__ import annotations

__all__ = ["create_app"]


def __getattr__(name: str):  # PEP 562: importing netinfo.web does not load Starlette
    if name == "create_app":
        from .app import create_app  # noqa: PLC0415
        return create_app
    raise AttributeError(name)
