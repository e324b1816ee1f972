"""What every NetInfo tool shares: opening the domain argument, authentication, the one
mapping from errors to messages and exit codes, JSON output and progress bars.

Tools spec §0.2 (domain arguments and ``-t`` errors), §0.3 (status messages), §1.5 (exit
codes), spec §10.1 (``-p``/``-u``/``-P``: ``ni_setuser`` + ``ni_setpassword``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import os
import sys
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..client.binding import portmapper_address
from ..client.domain import DomainClient, DomainSyntaxError, TaggedError, open_domain
from ..errors import (
    ConfigError,
    NetInfoError,
    NiError,
    NoPassword,
    RpcError,
    Status,
    Timeout,
    TooLong,
    WireError,
    error_text,
)

#: Exit status for NI_FAILED / communication failures and unknown domain names (tools §1.5).
EXIT_FAILED = 199
#: tools §1.5's status when ``-t``'s connect "returned nothing". The original connected
#: lazily, so an unreachable server surfaced as NI_FAILED (199) at the first call
#: (Appendix B); no tool exits 200 any more. Kept so that scripts can name it.
EXIT_TAGGED_CONNECT = 200
#: A ``-t`` parse error exits 10000 + status + 200 truncated to 8 bits, i.e. 216 + status
#: (217–221), as the original binaries did (tools §1.5: we copy the binaries, not the
#: comment's intended 201–205).
EXIT_TAGGED_PARSE_BASE = 216
#: Usage and argument errors (tools §1.5).
EXIT_USAGE = 1
#: Any error the spec gives no status for: output errors, an OSError or an unexpected
#: failure that reached the top (tools §1.5 is silent; 1, as for usage errors).
EXIT_ERROR = 1
#: A malformed ``NETINFO_*`` setting: the status of a usage error, in every tool (tools §1.5).
EXIT_SETTING = EXIT_USAGE
#: ``-T``'s default, in seconds (tools §1.1, §2.5; nifind's is its own, tools §4.3).
DEFAULT_TIMEOUT = 30.0


#: Failures that are not a NetInfo status → exit status: the one table beside the
#: ni_status + 100 rule (tools §1.5). A name or value the protocol cannot carry, and a
#: password that cannot be read, are argument errors (1); anything else that is not a
#: status (a timeout, a refused connection, a garbled reply) is NI_FAILED's 199.
EXIT_BY_ERROR: tuple[tuple[type[BaseException], int], ...] = (
    (TooLong, EXIT_USAGE),
    (NoPassword, EXIT_USAGE),
)


def exit_code(err: BaseException) -> int:
    """The one error → exit status mapping: ni_status + 100 (tools §1.5), then
    :data:`EXIT_BY_ERROR`, else 199 (communication)."""
    if isinstance(err, NiError) and err.status != Status.FAILED:
        return 100 + err.status
    for kind, code in EXIT_BY_ERROR:
        if isinstance(err, kind):
            return code
    return EXIT_FAILED


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


def parse_timeout(text: str | None, default: float = DEFAULT_TIMEOUT, *, prog: str) -> float:
    """The one ``-T <seconds>`` parser of the tools (tools §1.1, §2.1, §2.5, §4.1-§4.3):
    a positive finite number, fractions allowed; *text* None: *default*.

    The C tools read it with ``atoi``, so ``-T abc`` or ``-T 0`` silently meant the
    default; a mistyped timeout is now refused (issue #9).

    :raises UsageError: ``<prog>: invalid timeout <text>`` (then the usage, exit 1).
    """
    if text is None:
        return default
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


def failure_reason(err: BaseException) -> str:
    """Why a domain could not be opened, as specific as the library said it: ``unknown
    domain X: ...``, ``no such tag T at A``, ``no nibindd at A (...)``, ``cannot connect
    to A:P: Connection refused``; the ni_status message when nothing more is known."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror   # without str()'s "[Errno N]"
    return str(err) or error_text(err)


async def open_for_tool(prog: str, domain: str, *, tagged: bool = False,
                        timeout: float = 30.0, privileged: bool | None = None) -> DomainClient:
    """Open the domain argument as the original tools did, or raise :class:`ToolExit` with
    their messages and exit codes (tools §0.2, §1.5):

    * a ``-t`` argument that does not parse: the three lines of tools §0.2, 217-221;
    * ``-t`` host/tag that cannot be reached: ``<prog>: can't connect to server
      host/tag: <reason>``, 199. The original connected lazily, so the failure surfaced
      as NI_FAILED ("Communication failure") at the first call (200 is never used); the
      reason says more, and the same as for ``tag@host`` (``no such tag T at A``);
    * a domain name that does not parse (``local@``, ``@host``, ``tag@host:99999``):
      ``<prog>: bad domain <d>: <what is wrong>``, 1 (an argument error, tools §1.5);
    * a domain that cannot be opened: ``<prog>: can't connect to server for domain <d>:
      <reason>``, 199, the reason naming what failed (:func:`failure_reason`): an unknown
      domain, an unknown tag and an absent nibindd each say so.
    """
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
    except DomainSyntaxError as e:
        raise ToolExit(EXIT_USAGE, f"{prog}: bad domain {domain}: {e}") from None
    except (NetInfoError, OSError) as e:
        if tagged:
            raise ToolExit(EXIT_FAILED, f"{prog}: can't connect to server {domain}: "
                           f"{failure_reason(e)}") from None
        raise ToolExit(EXIT_FAILED, f"{prog}: can't connect to server for domain {domain}: "
                       f"{failure_reason(e)}") from None


async def open_or_usage(prog: str, domain: str, usage: str, **kw: Any) -> DomainClient:
    """:func:`open_for_tool` for the tools whose original printed its usage after any
    failure to open the domain and exited 1 (nidump tools §2.1, niload §2.7, nigrep):
    the same lines (a ``-t`` parse error's three included), then *usage*, exit 1."""
    try:
        return await open_for_tool(prog, domain, **kw)
    except ToolExit as e:
        raise ToolExit(EXIT_USAGE, *e.lines, *usage.rstrip("\n").split("\n")) from None


# -- nidump/niload argument scanning (tools §2.1, §2.5) ------------------------------------

def usage_text(prog: str, synopsis: str, formats: Sequence[str]) -> str:
    """A usage block as the original nidump prints it (tools Appendix B): the synopsis,
    ``known formats:``, then one tab-indented format a line."""
    lines = [f"usage: {prog} {synopsis}", "known formats:"]
    lines += ["\t" + f for f in formats]
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
              prog: str, bulk: bool = False) -> int:
    """The ``main`` of every ni* tool: parse (:class:`UsageError`: its lines, then *usage*
    on stderr, exit 1; a parser may also stop the tool itself with :class:`ToolExit`),
    ``--help`` (*help_text* on stdout, exit 0), refuse a malformed ``NETINFO_PORTMAPPER`` (one
    line, :data:`EXIT_SETTING`, before any traffic), keep a ``-P`` password out of ps(1),
    then run *body* through :func:`run` (with the collector paused for *bulk* jobs).

    Everything runs under :func:`guarded`, the one top-level handler: no traceback ever
    reaches the user."""
    args = list(sys.argv[1:] if argv is None else argv)

    def main() -> int:
        try:
            o = parse(args)
        except UsageError as e:
            stream = sys.stdout if e.to_stdout else sys.stderr
            for line in e.lines:
                print(line, file=stream)
            sys.stdout.flush()
            sys.stderr.write(usage)
            return EXIT_USAGE
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
                return asyncio.run(body(o))
        return asyncio.run(body(o))
    return guarded(prog, main)


def run_loop(coro: Coroutine[Any, Any, int], which: str = "auto") -> int:
    """Run a daemon's *coro* to its end on the event loop *which* names: ``asyncio``,
    ``uvloop`` (libuv's loop: a quarter less CPU per call than asyncio's own, issue 21's
    benchmarks), or ``auto``: uvloop when it is installed.

    :raises SystemExit: uvloop asked for and not installed."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if which != "asyncio":
        try:
            import uvloop  # noqa: PLC0415
        except ImportError:
            if which == "uvloop":
                raise SystemExit("--event-loop uvloop: uvloop is not installed "
                                 "(pip install uvloop)") from None
        else:
            factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def run(coro_fn: Callable[[], Coroutine[Any, Any, int]], prog: str = "netinfo") -> int:
    """Run a tool's coroutine under :func:`guarded`."""
    return guarded(prog, lambda: asyncio.run(coro_fn()))


#: errno values that can only come from writing: their message says the output failed.
OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def os_error_text(e: OSError) -> str:
    """One line for an :class:`OSError` that reached the top: what failed and why."""
    reason = e.strerror or str(e) or type(e).__name__
    if e.filename is not None:
        return f"{e.filename}: {reason}"
    if e.errno in OUTPUT_ERRNOS:
        return f"can't write output: {reason}"
    return reason


def guarded(prog: str, fn: Callable[[], int]) -> int:
    """The one top-level handler of the tools: run *fn* and flush stdout, so that an
    output error surfaces here and not in the interpreter's final flush.

    * :class:`ToolExit`: its lines on stderr, its code;
    * any other :class:`NetInfoError` no tool caught (a name longer than the protocol
      allows, a password that cannot be read): ``<prog>: <message>`` and
      :func:`exit_code`'s status;
    * ^C: 130; a reader that went away (EPIPE, ``| head``): 1, quietly;
    * any other :class:`OSError` (a full disk, ``> /dev/full``, a socket error nothing
      caught): ``<prog>: <reason>`` and :data:`EXIT_ERROR`;
    * anything unexpected (a bug, a damaged database): ``<prog>: internal error: <type>:
      <message>`` and :data:`EXIT_ERROR`, never a traceback.

    The spec gives no exit status for the last two (tools §1.5 is silent): 1, as for the
    other argument and usage errors.
    """
    try:
        code = fn()
        sys.stdout.flush()
        return code
    except ToolExit as e:
        _flush_quietly()
        return _exit(e)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `niutil -list ... | head -1`: the reader went away; say nothing more.
        silence_stdout()
        return EXIT_ERROR
    except OSError as e:
        silence_stdout()
        print(f"{prog}: {os_error_text(e)}", file=sys.stderr)
        return EXIT_ERROR
    except NetInfoError as e:
        _flush_quietly()
        print(f"{prog}: {str(e) or error_text(e)}", file=sys.stderr)
        return exit_code(e)
    except Exception as e:   # the one place that turns bugs into a message
        _flush_quietly()
        detail = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        print(f"{prog}: internal error: {detail}", file=sys.stderr)
        return EXIT_ERROR


def _flush_quietly() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
    except (OSError, ValueError):
        silence_stdout()


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
    import json  # only for --json: keeps the tools' start-up short (issue 10)
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


#: What a call can fail with besides a status: communication failures, and a name or
#: value too long to send (:class:`TooLong`, exit 1 by :data:`EXIT_BY_ERROR`). Every tool
#: catches these where it catches :class:`NiError`, and words them its own way.
COMM_ERRORS = (Timeout, RpcError, WireError, OSError, ConnectionError, TooLong)


#: the LDIF format's name among nidump's and niload's formats (docs/ldap.md)
LDIF = "ldif"


def ldif_operands(ops: list[str], tagged: bool) -> tuple[str, list[str]] | None:
    """With ``-r``: the subtree path and the rest of the operands when they name the
    ldif format too (``ldif -r PATH DOMAIN`` or ``-r PATH ldif DOMAIN``; with ``-t
    host/tag`` the domain is not among them), else None (``-r ldif DOMAIN`` stays a raw
    dump or load of a directory called ldif): nidump's and niload's."""
    want = 2 if tagged else 3
    if len(ops) != want:
        return None
    if ops[0] == LDIF:
        return ops[1], ops[2:]
    if ops[1] == LDIF:
        return ops[0], ops[2:]
    return None
