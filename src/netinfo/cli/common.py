"""What every NetInfo tool shares: opening the domain argument, authentication, the one
mapping from errors to messages and exit codes, JSON output and progress bars.

Tools spec §0.2 (domain arguments and ``-t`` errors), §0.3 (status messages), §1.5 (exit
codes), spec §10.1 (``-p``/``-u``/``-P``: ``ni_setuser`` + ``ni_setpassword``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import sys
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..domain import DomainClient, TaggedError, open_domain
from ..binding import portmapper_address
from ..errors import ConfigError, NetInfoError, NiError, RpcError, Status, Timeout, WireError
from ..model import atoi

#: Exit status for NI_FAILED / communication failures and unknown domain names (tools §1.5).
EXIT_FAILED = 199
#: Exit status when ``-t`` names a server that cannot be reached (tools §1.5).
EXIT_TAGGED_CONNECT = 200
#: A ``-t`` parse error exits 10000 + status + 200 truncated to 8 bits, i.e. 216 + status
#: (217–221), as the original binaries did (tools §1.5: we copy the binaries, not the
#: comment's intended 201–205).
EXIT_TAGGED_PARSE_BASE = 216
#: A malformed ``NETINFO_*`` setting: the status of a usage error, in every tool (tools §1.5).
EXIT_SETTING = 1
#: ``-T``'s default, in seconds (tools §1.1, §2.5; nifind's is its own, tools §4.3).
DEFAULT_TIMEOUT = 30.0


def ni_message(status: int) -> str:
    """``ni_error`` text; "(unknown error)" for a code outside the table (tools §0.3)."""
    from ..errors import MESSAGES  # noqa: PLC0415
    return MESSAGES.get(status, "(unknown error)")


def exit_code(err: BaseException) -> int:
    """The one error → exit status mapping: ni_status + 100, 199 for communication."""
    if isinstance(err, NiError) and err.status != Status.FAILED:
        return 100 + err.status
    return EXIT_FAILED


def error_text(err: BaseException) -> str:
    """What follows ``: `` in a tool's error message."""
    if isinstance(err, NiError):
        return ni_message(err.status)
    return ni_message(Status.FAILED)


class ToolExit(Exception):
    """Stop a tool with *code*, after printing *lines* on stderr."""

    def __init__(self, code: int, *lines: str) -> None:
        super().__init__(lines[0] if lines else "")
        self.code = code
        self.lines = lines


class UsageError(Exception):
    """Print *lines* (on stdout when ``to_stdout``), then the tool's usage on stderr, and
    exit 1."""

    to_stdout = False

    def __init__(self, *lines: str) -> None:
        super().__init__(*lines)
        self.lines = lines


def parse_timeout(text: str | None, default: float = DEFAULT_TIMEOUT, *,
                  prog: str | None = None) -> float:
    """The one ``-T <seconds>`` parser of the tools.

    Without *prog*, as the C tools read it (niutil, nidump, niload; tools §1.1, §2.1,
    §2.5): ``atoi``, so the leading integer counts and junk or a non-positive number
    means *default*. With *prog* (nireport, nigrep, nifind, tools §4.1-§4.3): a positive
    finite number, fractions allowed; anything else is a usage error
    ``<prog>: invalid timeout <text>``. *text* None: *default*.

    :raises UsageError: only with *prog*.
    """
    if text is None:
        return default
    if prog is None:
        n = atoi(text)
        return float(n) if n > 0 else default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):   # also refuses NaN
        raise UsageError(f"{prog}: invalid timeout {text}")
    return value


def environment_problem() -> str | None:
    """What is wrong with the ``NETINFO_*`` settings, on one line (None: nothing). A
    malformed ``NETINFO_PORTMAPPER`` must never quietly mean port 111."""
    try:
        portmapper_address()
    except ConfigError as e:
        return str(e)
    return None


def privileged_from_env() -> bool | None:
    """``NETINFO_PRIVILEGED=0`` keeps a root tool off reserved ports (it then writes as an
    ordinary, unauthenticated caller); unset: reserved ports when root (spec §7.1)."""
    v = os.environ.get("NETINFO_PRIVILEGED")
    if v is None or v == "":
        return None
    return v.lower() not in ("0", "no", "off", "false")


async def open_for_tool(prog: str, domain: str, *, tagged: bool = False,
                        timeout: float = 30.0, privileged: bool | None = None) -> DomainClient:
    """Open the domain argument as the original tools did, or raise :class:`ToolExit` with
    their messages and exit codes (tools §0.2, §1.5)."""
    if privileged is None:
        privileged = privileged_from_env()
    try:
        return await open_domain(domain, tagged=tagged, timeout=timeout, retries=2,
                                 privileged=privileged)
    except TaggedError as e:
        lines = []
        if e.code == 5:
            lines.append(f"Can't find address for {e.host}")
        lines += [f"{prog}: incorrect format for domain {domain} ({e})",
                  "usage: -t <host>/<tag>", "<host> can be a host name or IP address"]
        raise ToolExit(EXIT_TAGGED_PARSE_BASE + e.code, *lines) from None
    except (NetInfoError, OSError):
        if tagged:
            raise ToolExit(EXIT_TAGGED_CONNECT, f"{prog}: can't connect to server {domain}") \
                from None
        raise ToolExit(EXIT_FAILED, f"{prog}: can't connect to server for domain {domain}") \
            from None


# -- nidump/niload argument scanning (tools §2.1, §2.5) ------------------------------------

def usage_text(prog: str, synopsis: str, formats: Sequence[str]) -> str:
    """A usage block: the synopsis, then the known formats, eight to a line."""
    lines = [f"usage: {prog} {synopsis}", "known formats:"]
    for i in range(0, len(formats), 8):
        lines.append("\t" + " ".join(formats[i:i + 8]))
    return "\n".join(lines) + "\n"


class UnknownOption(UsageError):
    """An option the tool does not know: ``<prog>: unknown option <option>`` (niload words
    it its own way)."""

    def __init__(self, prog: str, option: str) -> None:
        super().__init__(f"{prog}: unknown option {option}")
        self.option = option


@dataclass
class Scanned:
    """What :func:`scan_args` found: flags and option values by letter, the operands, and
    the domain ``-t`` took as its argument (None when ``-t`` was a plain flag)."""

    flags: set[str] = field(default_factory=set)
    values: dict[str, str] = field(default_factory=dict)
    operands: list[str] = field(default_factory=list)
    tagged_domain: str | None = None


def _could_be_tagged_domain(word: str, formats: Iterable[str]) -> bool:
    # host/tag: never starts with '/' (that is "No host") and always has a '/'.
    return ("/" in word and not word.startswith(("/", "-")) and word not in formats)


def scan_args(prog: str, args: list[str], flags: str, valued: str,
              formats: Iterable[str]) -> Scanned:
    """Scan nidump/niload arguments: single-letter *flags*, *valued* options that take the
    next argument, ``--help``/``--json``, and ``-t`` in either order (tools §2.1, §2.5).

    :raises UnknownOption: an option not listed. :raises UsageError: a value is missing.
    """
    s = Scanned()
    formats = tuple(formats)
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("--help", "--json"):
            s.flags.add(a)
        elif a == "-t":
            s.flags.add("t")
            nxt = args[i + 1] if i + 1 < len(args) else None
            if nxt is not None and _could_be_tagged_domain(nxt, formats):
                s.tagged_domain = nxt
                i += 1
        elif len(a) == 2 and a[0] == "-" and a[1] in flags:
            s.flags.add(a[1])
        elif len(a) == 2 and a[0] == "-" and a[1] in valued:
            if i + 1 >= len(args):
                raise UsageError()
            s.values[a[1]] = args[i + 1]
            i += 1
        elif a.startswith("-") and len(a) > 1:
            raise UnknownOption(prog, a)
        else:
            s.operands.append(a)
        i += 1
    return s


def hide_password(password: str | None) -> None:
    """The originals erased ``-P``'s value from their arguments; blank it in sys.argv so
    that ps(1) does not show it."""
    if password is None:
        return
    for i, a in enumerate(sys.argv):
        if i > 0 and sys.argv[i - 1] == "-P" and a == password:
            sys.argv[i] = "*" * len(a)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for one bulk job.

    A dump or load allocates hundreds of thousands of small objects that all stay alive
    until the end (records, pending calls), so the collector's full passes find nothing
    to free and cost ~40% of the run (measured with bench/bench_niload.py). Reference
    counting still frees everything else; the previous state is restored afterwards.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def tool_main(argv: list[str] | None, parse: Callable[[list[str]], Any], usage: str,
              help_text: str, body: Callable[[Any], Coroutine[Any, Any, int]], *,
              bulk: bool = False, prog: str = "") -> int:
    """The ``main`` of every ni* tool: parse (:class:`UsageError`: its lines, then *usage*
    on stderr, exit 1; a parser may also stop the tool itself with :class:`ToolExit`),
    ``--help`` (*help_text* on stdout, exit 0), refuse a malformed ``NETINFO_PORTMAPPER``
    (one line, :data:`EXIT_SETTING`, before any traffic), keep a ``-P`` password out of
    ps(1), then run *body* through :func:`run` (with the collector paused for *bulk*
    jobs)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        o = parse(args)
    except UsageError as e:
        stream = sys.stdout if e.to_stdout else sys.stderr
        for line in e.lines:
            print(line, file=stream)
        sys.stdout.flush()
        sys.stderr.write(usage)
        return 1
    except ToolExit as e:
        return _exit(e)
    if getattr(o, "help", False):
        sys.stdout.write(help_text)
        return 0
    problem = environment_problem()
    if problem:
        print(f"{prog}: {problem}" if prog else problem, file=sys.stderr)
        return EXIT_SETTING
    if argv is None:
        hide_password(getattr(o, "password", None))
    if bulk:
        with gc_paused():
            return run(lambda: body(o))
    return run(lambda: body(o))


def run(coro_fn: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run a tool's coroutine; :class:`ToolExit` prints its lines and gives its code,
    ^C exits 130, a reader that went away (``| head``) exits 1 quietly."""
    try:
        return asyncio.run(coro_fn())
    except ToolExit as e:
        return _exit(e)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `niutil -list ... | head -1`: the reader went away; say nothing more.
        silence_stdout()
        return 1


def _exit(e: ToolExit) -> int:
    for line in e.lines:
        print(line, file=sys.stderr)
    return e.code


def silence_stdout() -> None:
    """Point stdout at /dev/null after a broken pipe, so that the interpreter's final
    flush does not fail and print a traceback."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError):
        pass


def dump_json(value: Any, out: TextIO | None = None) -> None:
    """``--json`` output: one JSON document, UTF-8, bytes that are not UTF-8 escaped."""
    out = out or sys.stdout
    json.dump(value, out, ensure_ascii=False, indent=2, default=_json_default)
    out.write("\n")


def _json_default(o: Any) -> Any:
    if hasattr(o, "_asdict"):
        return o._asdict()
    raise TypeError(f"not JSON serialisable: {o!r}")


def props_json(props: list[tuple[str, list[str]]]) -> list[dict[str, Any]]:
    """A proplist as JSON: a list keeps order and duplicates."""
    return [{"name": k, "values": list(v)} for k, v in props]


class Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal and the job is big
    enough to be worth it (issue: more than about 1,000 records)."""

    THRESHOLD = 1000

    def __init__(self, label: str, total: int | None, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.label = label
        self.total = total
        self.done = 0
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)()) and (
            total is None or total > self.THRESHOLD)
        self._last = -1

    def advance(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        if self.total:
            pct = self.done * 100 // self.total
            if pct == self._last:
                return
            self._last = pct
            width = 30
            fill = width * self.done // self.total
            self.stream.write(f"\r{self.label} [{'#' * fill}{'.' * (width - fill)}] "
                              f"{self.done}/{self.total}")
        elif self.done % 100 == 0:
            self.stream.write(f"\r{self.label} {self.done}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


COMM_ERRORS = (Timeout, RpcError, WireError, OSError, ConnectionError)
