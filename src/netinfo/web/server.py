"""``netinfo-web``: serve NetInfo Manager in the browser (issue #12).

::

    netinfo-web [--domain SPEC] [--allow-host HOST[:PORT]]... [--bind 127.0.0.1:8966]
                [--certfile F --keyfile F] [-v]

Listens on loopback unless told otherwise; with a certificate it serves https and the
session cookie is marked Secure. Uvicorn's access log shows paths and query strings only:
credentials travel in POST bodies and stay in the server's memory.

Pages open the ``--domain``, the domains the hierarchy reaches from the local domain
(``.``, ``..``, ``/``, ``/a/b``) and ``tag@host`` names only at the ``--domain``'s own
server or at an ``--allow-host`` (``netinfo.web.domains``, docs/security.md).
"""

from __future__ import annotations

import argparse
import ipaddress
import sys


def parse_bind(text: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``host`` (port 8966)."""
    host, port = text, 8966
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = int(p)
    if not 0 < port < 65536:
        raise ValueError(f"bad port in {text!r}")
    return host or "127.0.0.1", port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="netinfo-web", description=(
        "NetInfo Manager in the browser: browse, edit, search, export and import a domain."))
    p.add_argument("--domain", default=".", metavar="SPEC",
                   help="the domain opened first: ., .., /, /a/b or tag@host[:port] "
                        "(default .)")
    p.add_argument("--allow-host", action="append", default=[], metavar="HOST[:PORT]",
                   help="let pages open tag@HOST (through HOST's portmapper) or, with a "
                        "port, tag@HOST:PORT; repeatable (default: only the --domain's "
                        "server and the hierarchy's)")
    p.add_argument("--bind", default="127.0.0.1:8966", metavar="HOST:PORT",
                   help="where to listen (default 127.0.0.1:8966, loopback only)")
    p.add_argument("--certfile", help="serve https with this certificate (PEM)")
    p.add_argument("--keyfile", help="the certificate's private key (PEM)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")
    o = p.parse_args(argv)
    try:
        host, port = parse_bind(o.bind)
    except ValueError as e:
        p.error(str(e))
    if bool(o.certfile) != bool(o.keyfile):
        p.error("--certfile and --keyfile go together")
    try:
        import uvicorn  # noqa: PLC0415

        from .app import create_app  # noqa: PLC0415
    except ImportError as e:
        print(f"netinfo-web: {e.name} is missing: pip install 'opennetinfo[web]'",
              file=sys.stderr)
        return 1
    if not is_loopback(host):
        print(f"netinfo-web: warning: listening on {host}, not loopback: anyone who reaches "
              "it can browse and, with credentials, edit", file=sys.stderr)
    scheme = "https" if o.certfile else "http"
    shown = f"[{host}]" if ":" in host else host
    print(f"netinfo-web: serving {o.domain} on {scheme}://{shown}:{port}/", file=sys.stderr,
          flush=True)
    try:
        app = create_app(o.domain, allow_hosts=o.allow_host)
    except ValueError as e:
        p.error(str(e))
    uvicorn.run(app, host=host, port=port,
                log_level="info" if o.verbose else "warning", access_log=o.verbose,
                ssl_certfile=o.certfile, ssl_keyfile=o.keyfile, proxy_headers=False,
                server_header=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
