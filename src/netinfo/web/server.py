"""``netinfo-web``: serve NetInfo Manager in the browser (issue #12).

::

    netinfo-web [--domain SPEC] [--allow-host HOST[:PORT]]... [--bind HOST[:PORT]]
                [--certfile F --keyfile F] [-v]

Listens on loopback unless told otherwise; with a certificate it serves https and the
session cookie is marked Secure. Uvicorn's access log shows paths and query strings only:
credentials travel in POST bodies and stay in the server's memory.

Pages open the ``--domain``, the domains the hierarchy reaches from the local domain
(``.``, ``..``, ``/``, ``/a/b``) and ``tag@host`` names only at the ``--domain``'s own
server or at an ``--allow-host`` (``netinfo.web.domains``, docs/security.md).

Each user has a default port of their own (:func:`default_port`), as the README gives each
user a portmapper of their own, so that two users on one machine do not meet on one port.
The listening socket is made here, before anything is printed: a port in use, a reserved
port or an address that is not this host's is one line on stderr and exit status 2, never
a "serving" line first (issue 17).
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import socket
import sys

#: root's port (the only default before issue 17).
ROOT_PORT = 8966
#: Everyone else: WEB_BASE + uid % UID_SPAN, 30000-49999. The README's portmappers use
#: 10000 + uid % 20000 (10000-29999), so a user's manager never takes a portmapper's
#: port, their own or another user's, nor root's 8966.
WEB_BASE = 30000
UID_SPAN = 20000
#: Exit status when netinfo-web cannot listen or cannot read its certificate (as
#: netinfod and nibindd when they cannot listen).
EXIT_CANNOT_LISTEN = 2


def default_port(uid: int | None = None) -> int:
    """The port netinfo-web listens on when ``--bind`` names none: 8966 for root,
    30000 + uid % 20000 for everyone else (uid 1000: 31000; nobody, 65534: 35534)."""
    uid = os.geteuid() if uid is None else uid
    return ROOT_PORT if uid == 0 else WEB_BASE + uid % UID_SPAN


def parse_bind(text: str, port: int = ROOT_PORT) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``host`` (then *port*)."""
    host = text
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


def shown(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


#: Why a bind failed, by errno, in the words of the one line netinfo-web prints.
_LISTEN_ERRORS = {
    errno.EADDRINUSE: "{addr} is in use; --bind HOST:PORT",
    errno.EACCES: "cannot listen on {addr}: permission denied (a port below 1024 needs "
                  "root); --bind HOST:PORT",
    errno.EADDRNOTAVAIL: "cannot listen on {addr}: not an address of this host",
}


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (*host*, *port*); ``OSError`` when the host cannot
    have it (``listen_problem`` says why in one line)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # SO_REUSEADDR as uvicorn sets it: a restart does not wait out TIME_WAIT, and a port
    # someone listens on is still refused
    return socket.create_server((host, port), family=family, backlog=2048)


def listen_problem(host: str, port: int, err: OSError) -> str:
    """The one line for a failed :func:`listen`."""
    addr = shown(host, port)
    if isinstance(err, socket.gaierror):
        return f"netinfo-web: cannot listen on {addr}: not an address"
    text = _LISTEN_ERRORS.get(err.errno or 0, "cannot listen on {addr}: {why}")
    return "netinfo-web: " + text.format(addr=addr, why=err.strerror or err)


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
    p.add_argument("--bind", metavar="HOST[:PORT]",
                   help="where to listen (default 127.0.0.1, loopback only, on port "
                        "8966 for root and 30000 + uid %% 20000 for other users)")
    p.add_argument("--certfile", help="serve https with this certificate (PEM)")
    p.add_argument("--keyfile", help="the certificate's private key (PEM)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")
    o = p.parse_args(argv)
    try:
        host, port = parse_bind(o.bind or "127.0.0.1", default_port())
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
    try:
        app = create_app(o.domain, allow_hosts=o.allow_host)
    except ValueError as e:
        p.error(str(e))
    try:
        sock = listen(host, port)
    except OSError as e:
        print(listen_problem(host, port, e), file=sys.stderr)
        return EXIT_CANNOT_LISTEN
    config = uvicorn.Config(app, host=host, port=port,
                            log_level="info" if o.verbose else "warning",
                            access_log=o.verbose, ssl_certfile=o.certfile,
                            ssl_keyfile=o.keyfile, proxy_headers=False, server_header=False)
    try:
        config.load()  # reads the certificate and key now, not after the "serving" line
    except OSError as e:  # ssl.SSLError too
        sock.close()
        print(f"netinfo-web: cannot use --certfile {o.certfile} with --keyfile {o.keyfile}: "
              f"{e.strerror or e}", file=sys.stderr)
        return EXIT_CANNOT_LISTEN
    if not is_loopback(host):
        print(f"netinfo-web: warning: listening on {host}, not loopback: anyone who reaches "
              "it can browse and, with credentials, edit", file=sys.stderr)
    scheme = "https" if o.certfile else "http"
    print(f"netinfo-web: serving {o.domain} on {scheme}://{shown(host, port)}/",
          file=sys.stderr, flush=True)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
