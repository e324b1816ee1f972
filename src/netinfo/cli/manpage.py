"""Man pages for every tool, from one table (:data:`PAGES`) and the tool's own ``--help``.

``python -m netinfo.cli.manpage DIR`` writes ``DIR/man1/<tool>.1`` (DIR is a man tree, so
``MANPATH=DIR:`` finds the pages); ``tests/test_manpages.py`` checks that the committed pages
in ``docs/man/man1`` are exactly what this renders now. SYNOPSIS and OPTIONS are the
parser's text (so a new option cannot go undocumented); NAME, DESCRIPTION, ENVIRONMENT,
EXIT STATUS, EXAMPLES and FILES come from :data:`PAGES`. A regular install puts the pages
into ``<venv>/share/man/man1`` (pyproject ``data-files``), where ``man`` finds them from
``PATH``; an editable install (``pip install -e``) installs no data files (a setuptools
limitation), hence the README's ``MANPATH``.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .. import __version__

#: Every ``NETINFO_*`` variable the programs read, and what it does (one table; a page
#: lists the ones that apply to its tool).
ENVIRONMENT: dict[str, str] = {
    "NETINFO_PORTMAPPER":
        "HOST:PORT (or PORT) of the portmapper, when it is not on port 111 of 127.0.0.1 "
        "(DESIGN, \"Interfaces\"): its port applies to every host, its host to this one. "
        "The README's quick start gives each user a port of their own, "
        "127.0.0.1:$((10000 + $(id -u) % 20000)). A malformed value is an error that names "
        "it; it never quietly means port 111.",
    "NETINFO_DIR":
        "The database directory when --dir is not given (default /var/db/netinfo).",
    "NETINFO_BROADCAST":
        "off (or 0, no) keeps this host from broadcasting when a domain looks for its "
        "parent (spec §8.2); the parent is then found only at the addresses /machines "
        "lists.",
    "NETINFO_PRIVILEGED":
        "0 (or no, off, false) keeps a tool run by root off reserved source ports: it then "
        "calls as an ordinary caller, not as the superuser (spec §7.1, §10.2).",
    "NETINFO_RPCBIND_RECHECK":
        "Seconds between checks of nibindd's registration with a system rpcbind "
        "(default 60).",
    "NETINFO_HOSTS":
        "A hosts(5) file: host names (in -t host/tag, tag@host and the like) are "
        "resolved from it only, never through DNS, and a name it does not list is not "
        "found. Unset: the system's resolver. Names under .invalid are never looked up "
        "(RFC 6761).",
}

#: Exit statuses several tools share (tools §1.5).
_NI_STATUS = ("101\\(en124", "the NetInfo status of the failure + 100: 104 permission "
              "denied, 105 no such directory, 106 no such property, 111 the root domain has "
              "no parent, 113 read-only, 120 authentication error, 122 master busy")
_USAGE = ("1", "a usage error, or a malformed NETINFO_PORTMAPPER")
_COMM = ("199", "communication failure, or a domain name that does not resolve")
_TAGGED = ("200", "the server -t names cannot be reached")
_TAGGED_PARSE = ("217\\(en221", "a -t argument that does not parse (216 + its parse "
                 "status, as the original binaries computed it)")
_CLIENT_ENV = ("NETINFO_PORTMAPPER", "NETINFO_PRIVILEGED", "NETINFO_HOSTS")
_CLIENT_FILES = (("", "None: the tool reaches the domain's servers through the portmapper "
                  "(NETINFO_PORTMAPPER), nibindd and netinfod."),)


@dataclass(frozen=True)
class Page:
    """What a tool's page says besides its parser's text."""

    summary: str
    description: tuple[str, ...]
    environment: tuple[str, ...]
    exit_status: tuple[tuple[str, str], ...]
    examples: tuple[tuple[str, str], ...]
    files: tuple[tuple[str, str], ...] = _CLIENT_FILES


PAGES: dict[str, Page] = {
    "niutil": Page(
        "NetInfo utility: read and write directories and properties of a domain",
        ("niutil reads and changes one NetInfo domain: it creates and destroys directories, "
         "sets, appends and removes properties and values, and prints directories, lists, "
         "the domain's name, its parent and its statistics. Writes go to the domain's "
         "master (tools §1.3).",
         "Domains are named ., .., /, /a/b, tag@host[:port], or host/tag with -t. Writing "
         "needs the superuser (root on one of the server's own addresses, through a "
         "reserved source port), a password (-p, -u, -P), or a directory whose _writers "
         "lists the caller or *."),
        _CLIENT_ENV,
        (("0", "success (also -readval with an index past the end)"), _USAGE,
         ("3", "an -insertval index that is not a number"), _NI_STATUS, _COMM, _TAGGED,
         _TAGGED_PARSE),
        (("niutil -read . /users/root", "print root's user record in the local domain"),
         ("niutil -create / /users/bob && niutil -createprop / /users/bob uid 501",
          "as root: add a user to the network domain"),
         ("niutil -list . /users name", "list the users with their names"),
         ("niutil -domainname .", "print the local domain's name"))),
    "nicl": Page(
        "NetInfo command line: a shell over a domain or a database directory",
        ("nicl runs one command on a domain, or reads commands from its standard input "
         "(interactively on a terminal) when none is given. With -raw the datasource is a "
         "database directory (DIR/TAG.nidb) that nicl opens itself, with no server; the "
         "database must not be in use by a running netinfod (tools §3).",),
        _CLIENT_ENV,
        (("0", "success"), _USAGE,
         ("2\\(en255", "the low byte of the Directory Services status of the command that "
          "failed (e.g. a record or key that does not exist)"),
         ("233", "a domain that cannot be opened (1001, Invalid Datastore)")),
        (("nicl . -read /users/root", "print root's record"),
         ("nicl / -create /users/bob uid 501", "as root: add a user with a uid"),
         ("nicl -raw /var/db/netinfo/local.nidb -list /users",
          "list the users of a database that no server is running")),
        (("DIR/TAG.nidb", "a database that -raw edits directly (its lock file says who "
          "holds it)"),)),
    "nidump": Page(
        "write NetInfo data as flat files or in the raw format",
        ("nidump prints a directory of a domain in one of the classic flat-file formats "
         "(passwd, group, hosts, ...) or, with -r, a subtree in the raw format that "
         "niload -r reads back (tools §2.1\\(en2.3).",
         "A raw dump indents each level by four blanks up to 16 levels; deeper "
         "directories are indented as at level 16, so a dump grows with the tree, not "
         "with the square of its depth.",
         "The ldif format writes the domain (ldif -r DIRECTORY: that subtree) as the "
         "RFC 2307 entries netinfod's LDAP door serves, under dc=TAG,dc=netinfo or the DN "
         "--base gives, parents first, userPassword included, for slapadd, ldapadd or "
         "niload ldif; ldif --schema prints the schema OpenLDAP needs beyond its core, "
         "cosine, inetorgperson, nis and misc schemas (docs/ldap.md)."),
        ("NETINFO_PORTMAPPER", "NETINFO_HOSTS"),
        (("0", "success"),
         ("1", "a usage error, a domain that cannot be opened (then the usage is printed, "
          "a -t argument that does not parse included) or read, a directory that does "
          "not exist (-r), or a malformed NETINFO_PORTMAPPER"),),
        (("nidump passwd .", "the local domain's users as an /etc/passwd file"),
         ("nidump -r /users . > users.raw", "back up /users in the raw format"),
         ("nidump ldif --base dc=example,dc=com . | slapadd -q",
          "the local domain into an OpenLDAP server (its schema loaded first)"))),
    "niload": Page(
        "load flat files or the raw format into NetInfo",
        ("niload reads a flat file (passwd, group, hosts, ...) or, with -r, a raw dump "
         "from its standard input and writes it into a domain, adding and replacing "
         "entries by name; -d first destroys the table, -m merges values (tools "
         "§2.5\\(en2.7).",
         "The whole input is checked before anything is written or destroyed: a line "
         "that does not parse, or a record no server can hold (a name or value over "
         "65,535 bytes, more than 65,535 values or properties, a directory larger than "
         "one call carries, more entries than a directory holds, or, with -r, directories "
         "nested more than 256 levels below the root), is reported with its line number "
         "and nothing is loaded; -d then destroys nothing.",
         "The ldif format reads LDIF (RFC 2849): nidump ldif's, or an LDAP server's "
         "export of RFC 2307 entries (slapcat, ldapsearch -LLL). An entry of an RFC 2307 "
         "class goes into that class's directory (posixAccount into /users, posixGroup "
         "into /groups, ipHost into /machines, ...), a NetInfo entry (netinfoDirectory) at "
         "its DN's path below the input's first entry, whose own properties are left "
         "alone; each is created, replaced or with -m merged like a flat file's record. "
         "With ldif -r DIRECTORY the input (its first entry that directory) replaces the "
         "subtree, as a raw load does. Change records (modify, delete, modrdn), values "
         "by URL and input that does not parse are refused before anything is written; "
         "entries and attributes NetInfo has no place for are named on standard error."),
        _CLIENT_ENV,
        (("0", "success"),
         ("1", "a usage error, a domain that cannot be opened (then the usage is printed, "
          "a -t argument that does not parse included), input that does not parse or is "
          "over a bound (nothing loaded), a failed write (a raw load "
          "included), a password that cannot be read, or a malformed "
          "NETINFO_PORTMAPPER"),),
        (("niload passwd . < passwd", "as root: load users into the local domain"),
         ("niload -r /users . < users.raw", "restore a backup made with nidump -r"),
         ("slapcat | niload -m ldif .", "as root: merge an OpenLDAP server's users, "
          "groups and hosts into the local domain"))),
    "nireport": Page(
        "print a table of properties of a directory's children",
        ("nireport prints one line per child of a directory: for each property named, its "
         "values joined with commas, or #NoValue#, each column followed by a TAB "
         "(tools §4.1).",),
        _CLIENT_ENV,
        (("0", "success"), _USAGE, _NI_STATUS, _COMM, _TAGGED, _TAGGED_PARSE),
        (("nireport . /users name uid", "the users' names and uids"),)),
    "nigrep": Page(
        "search a NetInfo domain for a regular expression",
        ("nigrep prints every property whose key or any value matches a POSIX extended "
         "regular expression, searching depth-first from / or from the directories given "
         "(tools §4.2).",),
        _CLIENT_ENV,
        (("0", "success, matches or not"),
         ("1", "a usage error, a domain that cannot be opened (then the usage is printed, "
          "as the original did), or a malformed NETINFO_PORTMAPPER"), _NI_STATUS,
         ("199", "communication failure while searching")),
        (("nigrep root .", "every property mentioning root in the local domain"),)),
    "nifind": Page(
        "find a directory in the NetInfo hierarchy",
        ("nifind looks for a directory in the local domain and each domain above it (or, "
         "with -a, in the whole hierarchy below the root) and prints where it is found "
         "(tools §4.3).",),
        _CLIENT_ENV,
        (("0", "success, found or not"),
         ("1", "a usage error, a domain that cannot be opened, or a malformed "
          "NETINFO_PORTMAPPER")),
        (("nifind /users/root", "where root's record is, from the local domain up"),
         ("nifind -a /printers/lp /", "every domain below the root that has the printer"))),
    "nidomain": Page(
        "list, create and destroy the databases served by nibindd",
        ("nidomain asks nibindd on this host (or on host) to list its tags (-l), look one "
         "up (-g), create a master database and its netinfod (-m), destroy one (-d), "
         "unregister a netinfod (-u), create a clone of master/remotetag (-c), or register "
         "a tag under another name (-a) (tools §4.4). Everything but -l and -g needs the "
         "superuser: root on the same host, or, when nibindd is not root, its own user.",),
        ("NETINFO_PORTMAPPER", "NETINFO_HOSTS"),
        (("0", "success; also -l and -g when no nibindd runs (port information is not "
          "available)"),
         ("1", "a usage error, a failed operation, nibindd not running, an unknown host, or "
          "a malformed NETINFO_PORTMAPPER"),),
        (("nidomain -l", "the tags served here, with their ports"),
         ("nidomain -m sales", "create and serve a new master database sales"))),
    "nipasswd": Page(
        "set a user's password in a NetInfo domain",
        ("nipasswd sets the password of user (default: your login name) in the domain (default "
         "the local domain .): it asks for the new password twice on the terminal, or reads "
         "it from standard input with --stdin, hashes it (SHA-512 crypt unless --hash says "
         "otherwise) and writes it as /users/user passwd (spec §10.2).",
         "The server decides who may. The superuser sets any password without the old one: "
         "root on a reserved port, or the user that runs an unprivileged server (the owner "
         "of the domain, as after nibindd --init run by an ordinary user). Anyone else "
         "changes a user's password as that user, with the old password, where the user's "
         "_writers_passwd lists it (tools §0.5). The old password is asked only when the "
         "server refuses the write without it; with --stdin it is the first of two lines, "
         "the new password the second. A new domain's root is locked (passwd *): "
         "nipasswd root, run as its owner, unlocks it."),
        _CLIENT_ENV,
        (("0", "the password was changed"),
         ("1", "a usage error, a malformed NETINFO_PORTMAPPER, an empty or mismatched "
          "password, or no terminal without --stdin"),
         _NI_STATUS, _COMM, _TAGGED_PARSE),
        (("nipasswd root", "as the owner of the local domain: give root a password"),
         ("printf '%s\\n' \"$OLD\" \"$NEW\" | nipasswd --stdin . bob",
          "bob changes his own password from a script"),
         ("nipasswd -t 127.0.0.1/network --hash sha256 alice",
          "set alice's password in the network domain, hashed with SHA-256 crypt"))),
    "nihistory": Page(
        "who changed what in a NetInfo domain, when, and put it back",
        ("nihistory reads a domain's change history, which netinfod keeps for every write "
         "in the write's own transaction (netinfod --history-days, --history-max-mb), "
         "through the history program (200100002 version 1) on the server's TCP port. "
         "Without a mode it lists the changes, newest first, one line each: sequence "
         "number, time, who (user@address), the NETINFO procedure and the path of the "
         "directory written; --since, --until, --user and a PATH (that directory and "
         "below) narrow it, --json gives a list of objects (seq, time, user, procedure, "
         "path and more).",
         "--show SEQ prints one change's before and after states of every directory it "
         "touched; --at TIME PATH prints a directory (with -r its subtree) as it was.",
         "--revert SEQ and --revert-after TIME [PATH] put things back as new writes "
         "through the master, with the NETINFO procedures: a destroyed directory is "
         "created again with its old number, properties, property order and position, a "
         "created one destroyed, a changed one written back; the reverts are replicated "
         "and journalled like any write. A revert that would clobber a later change to "
         "the same directory refuses and names it, unless --force.",
         "Who may read: the superuser (root on a reserved port, or the user running an "
         "unprivileged server) all of it; a user who gives a password (-u, -p, -P) the "
         "changes of the directories it may write (_writers); an anonymous caller "
         "nothing."),
        _CLIENT_ENV,
        (("0", "done"),
         ("1", "a usage error, a change not in the history, or a revert refused because "
          "of a later change"),
         _NI_STATUS, _COMM),
        (("nihistory . /users --since -1d", "what changed under /users since yesterday"),
         ("nihistory . --show 1234", "the before and after of change 1234"),
         ("nihistory . --at '#1200' /users/bob", "bob's entry right after change 1200"),
         ("nihistory . --revert 1234", "undo change 1234 (a DESTROY: bob comes back)"))),
    "netinfod": Page(
        "serve one NetInfo database",
        ("netinfod serves DIR/TAG.nidb (or the store --store names) over ONC RPC, program "
         "200100000 version 2, on UDP and TCP, and registers with the local nibindd when "
         "one runs; nibindd normally starts it (tools §4.5). With -m it first creates a "
         "master database, with -c a clone that copies its master.",
         "Every write is kept in the domain's change history, in the write's own "
         "transaction, for --history-days days (default 90; 0 keeps none) and up to "
         "--history-max-mb MB (default 256), the oldest going first; nihistory reads it "
         "through the history program, 200100002 version 1, on the same TCP port.",
         "It listens on 127.0.0.1 unless --bind says otherwise, and refuses an address "
         "that is not this host's before it creates anything. One process holds a "
         "database: a second netinfod, nibindd or nicl -raw on it is refused. SIGTERM and "
         "SIGINT shut it down cleanly.",
         "With --store postgresql://...?domain=NAME the domain lives in PostgreSQL "
         "(pip install 'opennetinfo[postgres]'); its writer holds an advisory lock there, "
         "and a second netinfod is refused with one line naming the holder, unless "
         "--standby: it then waits, and serves, writable, as soon as the writer's "
         "connection ends. A netinfod that loses its connection refuses every write "
         "from then on and logs why (nistore(1) copies domains between engines).",
         "With --read-workers N (SQLite stores only) it also starts N worker processes "
         "that open the database read only and accept connections on the same TCP port "
         "(SO_REUSEPORT); each answers the anonymous NETINFO reads itself and hands a "
         "connection to this process, socket and all, at its first other call (a write, a "
         "credential, READALL, ...), which then serves it; with --nis-domain (without "
         "--nis-hierarchy) the workers also answer YP MATCH over TCP. A read sent after a "
         "write's reply sees the write on any connection. UDP, LDAP and the "
         "portmapper registration stay with this process; a worker that dies is started "
         "again; SIGTERM stops them all. The peer bounds apply per process. "
         "--read-worker-fds is internal: how a worker is told its sockets."),
        ("NETINFO_DIR", "NETINFO_PORTMAPPER", "NETINFO_BROADCAST"),
        (("0", "stopped by SIGTERM or SIGINT"),
         ("2", "no database (without -m or -c), a damaged or busy database, an invalid tag, "
          "an address or port it cannot listen on, or a malformed NETINFO_PORTMAPPER; "
          "the one line on standard error says which"),),
        (("netinfod --dir \"$HOME/netinfo-alone\" --port 1033 -m --populate mytag",
          "create and serve a populated master database on a fixed port, alone: from a "
          "directory of its own, since nibindd serves every DIR/*.nidb (also on SIGHUP)"),
         ("netinfod --dir /var/db/netinfo local", "serve an existing database")),
        (("/var/db/netinfo/TAG.nidb", "the database (NETINFO_DIR, --dir)"),
         ("TAG.nidb/netinfo.sqlite", "the SQLite store"),
         ("TAG.nidb/netinfo.sqlite.lock", "the lock, holding the owner's process id"),
         ("TAG.nidb/collection", "a NeXT database, converted on first start"))),
    "nibindd": Page(
        "serve every NetInfo database of a directory, NIBIND and a portmapper",
        ("nibindd runs one netinfod per DIR/*.nidb, answers the NIBIND program (200100001) "
         "that maps tags to ports, and either registers with the system rpcbind or serves "
         "its own portmapper version 2, with CALLIT, on NETINFO_PORTMAPPER's port (111 "
         "when unset) (spec §6, tools §4.6). SIGHUP re-reads DIR; SIGTERM and SIGINT stop "
         "it and its netinfods.",
         "One nibindd per portmapper: when the portmapper it is told to use already lists "
         "another nibindd, or belongs to another user, it prints one line saying whose and "
         "exits with status 2, changing nothing; give each user their own "
         "NETINFO_PORTMAPPER. It also refuses, before creating anything, a --bind address "
         "that is not this host's and a DIR that does not exist (without --init).",
         "With --init and neither --root-password-file nor a terminal, root of the new "
         "domains stays locked (passwd *), and one line says so. The user running nibindd "
         "is the superuser of the domains it serves (root through a reserved port, anyone "
         "else through their own sockets, docs/security.md): nipasswd root, run by that "
         "user, gives root a password."),
        ("NETINFO_PORTMAPPER", "NETINFO_DIR", "NETINFO_BROADCAST", "NETINFO_RPCBIND_RECHECK"),
        (("0", "stopped by SIGTERM or SIGINT"),
         ("2", "the portmapper is another nibindd's or another user's, DIR does not exist, "
          "an address or port it cannot listen on, a database in use, or a malformed "
          "NETINFO_PORTMAPPER; the one line on standard error says which"),),
        (("export NETINFO_PORTMAPPER=127.0.0.1:$((10000 + $(id -u) % 20000))\n"
          "nibindd --init --dir \"$HOME/.netinfo\"",
          "the README's quick start: a local domain bound to a network root, on a "
          "portmapper of your own"),
         ("nibindd --bind 0.0.0.0", "as root: serve /var/db/netinfo to the network")),
        (("/var/db/netinfo/*.nidb", "the databases served (NETINFO_DIR, --dir)"),
         ("$HOME/.netinfo", "the README's quick start directory"))),
    "netinfo-web": Page(
        "NetInfo Manager in the browser",
        ("netinfo-web serves NetInfo Manager over http (https with --certfile and "
         "--keyfile): open a domain by name, walk its directories, read and edit "
         "properties and values, search, export and import subtrees and flat files "
         "(tools §6). It reaches domains through the portmapper, nibindd and netinfod as "
         "the tools do; the servers decide every permission, and credentials given to "
         "its lock stay in its memory. Starlette, Jinja2 and uvicorn come with the web "
         "extra (pip install 'opennetinfo[web]').",
         "It listens on 127.0.0.1 unless --bind says otherwise, and on a port of the "
         "user's own unless --bind names one: 8966 for root, 30000 + uid % 20000 for "
         "everyone else (uid 1000: 31000), a range apart from the README's portmapper "
         "ports (10000 + uid % 20000), so that two users on one machine never meet on "
         "one port (ports from 32768 up are also the kernel's for outgoing connections, "
         "which may hold one for a moment). It prints the address it serves on once it "
         "listens; a port in use, a "
         "reserved port or an address that is not this host's is one line on standard "
         "error instead, and nothing is served."),
        ("NETINFO_PORTMAPPER",),
        (("0", "stopped by SIGINT (Ctrl-C); SIGTERM also stops it cleanly, then ends it "
          "as that signal does"),
         ("1", "the web extra is not installed"),
         ("2", "a usage error, an address or port it cannot listen on (the port is in "
          "use, reserved (below 1024, not root) or not this host's), or a certificate or "
          "key it cannot read; the one line on standard error says which")),
        (("netinfo-web", "serve the local domain on this user's port of 127.0.0.1"),
         ("netinfo-web --domain / --bind 127.0.0.1:8080",
          "open the network root first, on port 8080"),
         ("netinfo-web --bind 0.0.0.0:443 --certfile cert.pem --keyfile key.pem",
          "as root: serve https to the network")),
        (("", "None: the manager reaches the domain's servers through the portmapper "
          "(NETINFO_PORTMAPPER), nibindd and netinfod."),)),
    "nistore": Page(
        "copy, check and describe a NetInfo domain's store",
        ("nistore works on a domain's store directly, whatever its engine: a SQLite file "
         "(its path, a TAG.nidb directory, or sqlite:PATH) or a PostgreSQL domain "
         "(postgresql://[user@][host]/DBNAME?host=SOCKETDIR&domain=NAME, libpq's URL with "
         "domain naming the domain; one database holds any number of them).",
         "copy reads the whole of SRC in one transaction and writes it into DST in one "
         "transaction: numbers, instances, parents, properties byte for byte, child lists "
         "in order, freed numbers, counters and checksum; then it reads DST back and "
         "compares. DST is taken as its writer (a served domain is refused: the SQLite "
         "lock, PostgreSQL's advisory lock), and a DST that holds a domain is replaced "
         "only with -f.",
         "check reads a domain, served or not, and verifies its tree, its checksum "
         "and its LOOKUP index; info prints what a store holds (for PostgreSQL also its "
         "writer and the other domains in that database)."),
        ("NETINFO_PORTMAPPER",),
        (("0", "done; for check, the domain is whole"),
         ("1", "check found a problem (one line each), or a copy differs when read back"),
         ("2", "a usage error, a store that cannot be opened or read, a busy destination, "
          "or one that holds a domain without -f; the one line on standard error says "
          "which")),
        (("nistore copy /var/db/netinfo/net.nidb 'postgresql:///netinfo?domain=net'",
          "move the domain net into PostgreSQL (then: netinfod --store URL net)"),
         ("nistore check 'postgresql:///netinfo?domain=net'", "verify it"),
         ("nistore info net.nidb", "describe a SQLite store")),
        (("TAG.nidb/netinfo.sqlite", "a SQLite store"),
         ("TAG.nidb/netinfo.sqlite.lock", "its lock, taken while copying into it"))),
}

#: The module whose ``main`` a tool runs, where it is not ``netinfo.cli.<tool>``.
MODULES: dict[str, str] = {"netinfo-web": "netinfo.web.server"}


def module_of(tool: str) -> str:
    """The module of *tool*'s ``main`` (its console script's entry point)."""
    return MODULES.get(tool, f"netinfo.cli.{tool}")


#: Tool → NAME line (kept for callers that list the tools).
TOOLS: dict[str, str] = {tool: page.summary for tool, page in PAGES.items()}

#: Lines of ``--help`` that start its options (everything before is the synopsis).
_OPTION_HEADS = ("opts:", "options:", "known formats:", "positional arguments:",
                 "commands:")


def help_text(tool: str) -> str:
    """What ``<tool> --help`` prints (stdout and stderr), from the tool's parser."""
    module = importlib.import_module(module_of(tool))
    out, err = io.StringIO(), io.StringIO()
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "80"  # argparse wraps to the terminal: pin it
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                module.main(["--help"])
            except SystemExit:
                pass
    finally:
        if columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = columns
    return out.getvalue() + err.getvalue()


def split_help(text: str) -> tuple[list[str], list[str]]:
    """(synopsis lines, option lines) of a ``--help`` text: the synopsis runs to the first
    blank line or option heading; the options start at the first heading (an argparse
    description before it is the DESCRIPTION's business)."""
    lines = text.rstrip("\n").splitlines()
    end = next((i for i, x in enumerate(lines)
                if not x.strip() or x.startswith(_OPTION_HEADS)), len(lines))
    start = next((i for i, x in enumerate(lines) if x.startswith(_OPTION_HEADS)), len(lines))
    return lines[:end], lines[max(start, end):]


def _escape(line: str) -> str:
    line = line.replace("\\", "\\e").replace("-", "\\-")
    if line.startswith((".", "'")):
        line = "\\&" + line
    return line


def _text(s: str) -> str:
    """Prose from the table: escaped like the parser's text, but its ``\\(en`` kept."""
    return "\n".join(_escape(x).replace("\\e(en", "\\(en") for x in s.split("\n"))


def render(tool: str) -> str:
    """The troff man page of *tool*."""
    page = PAGES[tool]
    synopsis, options = split_help(help_text(tool))
    out = [f'.TH {tool.upper()} 1 "" "opennetinfo {__version__}" "NetInfo"',
           ".SH NAME", f"{tool} \\- {_text(page.summary)}",
           ".SH SYNOPSIS", ".nf", *map(_escape, synopsis), ".fi",
           ".SH DESCRIPTION"]
    for i, para in enumerate(page.description):
        out += ([".PP"] if i else []) + [_text(para)]
    out += [".SH OPTIONS"]
    out += ([".nf", *map(_escape, options), ".fi"] if options else
            ["None besides the operations in the SYNOPSIS; --help prints it."])
    out += [".SH ENVIRONMENT"]
    for name in page.environment:
        out += [".TP", f".B {name}", _text(ENVIRONMENT[name])]
    out += [".SH EXIT STATUS"]
    for code, meaning in page.exit_status:
        out += [".TP", f".B {code}", _text(meaning)]
    out += [".SH EXAMPLES"]
    for command, what in page.examples:
        out += [".PP", _text(what[0].upper() + what[1:]) + ":",
                ".RS", ".nf", _text(command), ".fi", ".RE"]
    out += [".SH FILES"]
    for path, what in page.files:
        out += [".TP", f".I {_text(path)}", _text(what)] if path else [_text(what)]
    out += [".SH SEE ALSO",
            ", ".join(f"\\fB{t}\\fR(1)" for t in PAGES if t != tool)
            + ", README.md, docs/security.md"]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0] if args else "docs/man") / "man1"
    target.mkdir(parents=True, exist_ok=True)
    for tool in PAGES:
        (target / f"{tool}.1").write_text(render(tool))
    return 0


if __name__ == "__main__":
    sys.exit(main())
