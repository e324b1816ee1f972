"""The flat files of nidump and niload (passwd, group, hosts, ...), as pure ``str`` ⇄ data
codecs, and niload's update rules. (The raw format is :mod:`netinfo.client.raw`.)

Everything here is pure: it takes and returns ``str``; reading stdin, walking a domain
and writing directories are the tools' job (DESIGN.md "Pure core, I/O at the edges").

* Flat files (tools spec §2.2 output, §2.6 input): one literal table :data:`FORMATS`,
  format name → :class:`FormatSpec` (codec pair, directory, key property, which tool
  knows it). ``to_text(records)`` prints exactly what nidump printed; ``from_text(text)``
  parses the way niload did and returns :class:`Loaded` (records + notes). A line niload
  skipped is skipped here too, but with a :class:`Note` so ``niload -v`` can say why.
  Broken input raises :class:`~netinfo.client.raw.FormatError`.
* niload update rules (§2.7) as pure helpers: :func:`record_key`, :func:`record_path`,
  :func:`merge_proplists`, :func:`plan_update`, :func:`record_text`.

A *record* is a :data:`~netinfo.model.Proplist`: a list of ``(name, [values])`` tuples.
Records made by ``from_text`` keep their properties sorted by key in byte order, as the
original niload's dictionary did (§2.6 "Property order").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

from ..model import Proplist, first_values
from ..wire.limits import proplist_problem
from .raw import FormatError

__all__ = [
    "FormatError", "Note", "Loaded", "FormatSpec", "FORMATS", "NIDUMP_FORMATS",
    "NILOAD_FORMATS", "iter_loaded", "survey", "record_key", "record_path",
    "merge_proplists", "plan_update", "UPDATE_MESSAGES", "record_text",
]


class Note(NamedTuple):
    """Something niload -v should report about one input line.

    ``kind`` is ``"skipped"`` (the line made no record), ``"cookie"`` (an NIS ``+``
    entry, skipped) or ``"passwd7"`` (a 7-field /etc/passwd line read as passwd.43).
    """

    line: int
    kind: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class Loaded(NamedTuple):
    """What ``from_text`` returns: the records in input order, and the notes."""

    records: list[Proplist]
    notes: list[Note]


# -- flat-file input helpers (spec §2.6) ----------------------------------------------------

_TRIM = " \t\n"


_FIELD_RX: dict[str, re.Pattern[str]] = {}


def _fields(data: str, seps: str, stop_at_pound: bool = False) -> list[str]:
    """Split a line the way niload's parser did (spec §2.6).

    Each field is trimmed of blanks; a field starting with ``#`` ends the data when
    *stop_at_pound*; one separator is skipped after a field (blanks after it are skipped as
    leading blanks, so runs of blanks merge); a line that ends right on a separator gets an
    extra empty field.
    """
    rx = _FIELD_RX.get(seps)
    if rx is None:
        rx = _FIELD_RX[seps] = re.compile(r"[ \t\n]*+([^" + re.escape(seps) + r"]*)")
    out: list[str] = []
    p, n = 0, len(data)
    while True:
        m = rx.match(data, p)   # always matches: leading blanks, then the field
        assert m is not None    # (both parts of the pattern may be empty)
        start = m.start(1)
        if start >= n or (stop_at_pound and data[start] == "#"):
            break
        out.append(m.group(1).rstrip(_TRIM))
        p = m.end() + 1         # past the field and its one separator
        if p > n:
            break
        if p == n:
            out.append("")
            break
    return out


def _explode(data: str, sep: str) -> list[str]:
    """Split on every *sep*, keeping empty pieces; the empty string gives no pieces."""
    return data.split(sep) if data else []


def _lines(text: str, join: str | None = None) -> list[tuple[int, str]]:
    """Logical input lines as ``(first line number, text)``; comment lines (``#`` in
    column 1) are dropped. *join*: ``"backslash"`` (printcap, bootparams: a trailing
    ``\\`` joins the next line, nothing inserted) or ``"indent"`` (aliases: a next line
    starting with a blank is joined without that first blank) (spec §2.6)."""
    raw = text.split("\n")
    if raw and raw[-1] == "":
        raw.pop()
    out: list[tuple[int, str]] = []
    i = 0
    while i < len(raw):
        number, line = i + 1, raw[i]
        i += 1
        if line.startswith("#"):
            continue
        if join == "indent":
            while i < len(raw) and raw[i][:1] in (" ", "\t"):
                line += raw[i][1:]
                i += 1
        elif join == "backslash" and line.endswith("\\"):
            line = line[:-1]
            while i < len(raw):
                nxt = raw[i]
                i += 1
                more = nxt.endswith("\\")
                line += nxt[:-1] if more else nxt
                if not more:
                    break
        out.append((number, line))
    return out


def _record(props: dict[str, list[str]]) -> Proplist:
    """A record with its keys in byte order, as niload created it (spec §2.6)."""
    return [(k, props[k]) for k in sorted(props)]


def _load(text: str, parse_line: Callable[[str, int, list[Note]], Proplist | None],
          join: str | None = None) -> Loaded:
    records: list[Proplist] = []
    notes: list[Note] = []
    for number, line in _lines(text, join):
        rec = parse_line(line, number, notes)
        if rec is not None:
            # a record no server could hold is refused as a line that does not parse:
            # niload loads nothing (issue 18 #12), however late in the input it comes
            why = proplist_problem(rec)
            if why is not None:
                _skip(notes, number, why)
                continue
            records.append(rec)
    return Loaded(records, notes)


def _skip(notes: list[Note], number: int, message: str) -> None:
    notes.append(Note(number, "skipped", message))


# -- flat-file output helpers (spec §2.2) ---------------------------------------------------

def _first(props: Proplist, key: str, default: str = "") -> str:
    """first(x): the first value of the first property *key*, else *default*."""
    values = first_values(props, key)
    return values[0] if values else default


def _all(props: Proplist, key: str) -> list[str]:
    return list(first_values(props, key) or [])


def _has_name(props: Proplist) -> bool:
    return bool(first_values(props, "name"))


# -- passwd, passwd.43 ----------------------------------------------------------------------

_PASSWD10 = ("name", "passwd", "uid", "gid", "class", "change", "expire", "realname",
             "home", "shell")
_PASSWD7 = ("name", "passwd", "uid", "gid", "realname", "home", "shell")


def passwd_to_text(records: Sequence[Proplist]) -> str:
    """``name:passwd:uid:gid:class:change:expire:realname:home:shell``; change and expire
    print ``0`` when absent (spec §2.2)."""
    out = []
    for r in records:
        if not _has_name(r):
            continue
        out.append(":".join(_first(r, k, "0" if k in ("change", "expire") else "")
                            for k in _PASSWD10) + "\n")
    return "".join(out)


#: a line whose fields ``line.split(":")`` gives exactly as :func:`_fields` would: no
#: blank at the start or end of a field (those are trimmed) and not blank only
_BLANK_EDGE = re.compile(r"(?:^|:)[ \t]|[ \t](?::|$)")


def _user10(f: list[str]) -> Proplist:
    """:func:`_user` of 10 fields: every key present, so the byte order is fixed."""
    return [("_writers_passwd", [f[0]]), ("change", [f[5]]), ("class", [f[4]]),
            ("expire", [f[6]]), ("gid", [f[3]]), ("home", [f[8]]), ("name", [f[0]]),
            ("passwd", [f[1]]), ("realname", [f[7]]), ("shell", [f[9]]), ("uid", [f[2]])]


def _user(fields: list[str], names: tuple[str, ...]) -> Proplist:
    props = {k: [v] for k, v in zip(names, fields, strict=False)}
    props.setdefault("class", [""])
    props.setdefault("change", ["0"])
    props.setdefault("expire", ["0"])
    props["_writers_passwd"] = [fields[0]]
    return _record(props)


def _passwd_line(line: str, number: int, notes: list[Note], accept: tuple[int, ...]) -> \
        Proplist | None:
    # the common line (no field with blanks around it) splits as _fields would split it
    fields = line.split(":") if line and not _BLANK_EDGE.search(line) else _fields(line, ":")
    if len(fields) == 10 and 10 in accept and not fields[0].startswith("+"):
        return _user10(fields)
    if not fields:
        return None
    if fields[0].startswith("+"):
        notes.append(Note(number, "cookie", f"NIS entry {fields[0]!r} skipped"))
        return None
    if len(fields) == 10 and 10 in accept:
        return _user(fields, _PASSWD10)
    if len(fields) == 7 and 7 in accept:
        if 10 in accept:
            notes.append(Note(number, "passwd7", f"7-field /etc/passwd entry for "
                              f"{fields[0]!r} loaded as passwd.43 (class empty, change "
                              f"and expire 0)"))
        return _user(fields, _PASSWD7)
    want = " or ".join(str(n) for n in sorted(accept, reverse=True))
    _skip(notes, number, f"{len(fields)} fields, expected {want}")
    return None


def passwd_from_text(text: str) -> Loaded:
    """10-field master.passwd lines, as niload did (spec §2.6) — and, unlike the
    original, 7-field /etc/passwd lines too, read as passwd.43 with a ``passwd7`` note."""
    return _load(text, lambda line, n, notes: _passwd_line(line, n, notes, (10, 7)))


def passwd43_to_text(records: Sequence[Proplist]) -> str:
    """``name:passwd:uid:gid:realname:home:shell`` (no nidump format: the inverse of
    passwd.43, for the codec pair)."""
    return "".join(":".join(_first(r, k) for k in _PASSWD7) + "\n"
                   for r in records if _has_name(r))


def passwd43_from_text(text: str) -> Loaded:
    """passwd.43: exactly 7 fields; class "", change "0", expire "0" (spec §2.6)."""
    return _load(text, lambda line, n, notes: _passwd_line(line, n, notes, (7,)))


# -- group ----------------------------------------------------------------------------------

def group_to_text(records: Sequence[Proplist]) -> str:
    """``name:passwd:gid:u1,u2,…`` (spec §2.2)."""
    return "".join(f"{_first(r, 'name')}:{_first(r, 'passwd')}:{_first(r, 'gid')}:"
                   f"{','.join(_all(r, 'users'))}\n" for r in records if _has_name(r))


def _group_line(line: str, number: int, notes: list[Note]) -> Proplist | None:
    fields = _fields(line, ":")
    if not fields:
        return None
    if fields[0].startswith("+"):
        notes.append(Note(number, "cookie", f"NIS entry {fields[0]!r} skipped"))
        return None
    if len(fields) < 3:
        _skip(notes, number, f"{len(fields)} fields, expected at least 3")
        return None
    # No 4th field: users = one empty value; an empty 4th field: no values (spec §2.6).
    users = [""] if len(fields) < 4 else _fields(fields[3], ",")
    return _record({"name": [fields[0]], "passwd": [fields[1]], "gid": [fields[2]],
                    "users": users})


def group_from_text(text: str) -> Loaded:
    """``name:passwd:gid[:u1,u2]``, at least 3 fields (spec §2.6)."""
    return _load(text, _group_line)


# -- hosts, ethers --------------------------------------------------------------------------

def hosts_to_text(records: Sequence[Proplist]) -> str:
    """One line per ``ip_address`` value: ``ip TAB names…`` (spec §2.2). Only a child
    without ip_address is skipped; one without a name prints ``ip TAB``."""
    out: list[str] = []
    for r in records:
        names = " ".join(_all(r, "name"))
        out.extend(f"{ip}\t{names}\n" for ip in _all(r, "ip_address"))
    return "".join(out)


def _two_field_line(build: Callable[[list[str]], dict[str, list[str]]]
                    ) -> Callable[[str, int, list[Note]], Proplist | None]:
    """A parser of blank-separated lines of at least two fields (``#`` starts a comment),
    building a record with *build*; shorter lines are skipped with a note."""
    def parse(line: str, number: int, notes: list[Note]) -> Proplist | None:
        fields = _fields(line, " \t", stop_at_pound=True)
        if not fields:
            return None
        if len(fields) < 2:
            _skip(notes, number, f"{len(fields)} field, expected at least 2")
            return None
        return _record(build(fields))
    return parse


def _addr_names_line(key: str) -> Callable[[str, int, list[Note]], Proplist | None]:
    return _two_field_line(lambda f: {key: [f[0]], "name": f[1:]})


def hosts_from_text(text: str) -> Loaded:
    """``ip name [aliases…]``: ip_address=[ip], name=[name, aliases…] (spec §2.6)."""
    return _load(text, _addr_names_line("ip_address"))


def ethers_to_text(records: Sequence[Proplist]) -> str:
    """``en_address TAB names…``; children without en_address skipped (spec §2.2)."""
    return "".join(f"{_first(r, 'en_address')}\t{' '.join(_all(r, 'name'))}\n"
                   for r in records if first_values(r, "en_address"))


def ethers_from_text(text: str) -> Loaded:
    """``en_address name [aliases…]`` (no niload loader; the inverse of the dump)."""
    return _load(text, _addr_names_line("en_address"))


# -- networks, protocols, rpc, services -----------------------------------------------------

def _nna_to_text(records: Sequence[Proplist], key: str) -> str:
    # name TAB value TAB aliases(TAB-joined): the TAB after the value is always there.
    return "".join(f"{_first(r, 'name')}\t{_first(r, key)}\t"
                   f"{chr(9).join(_all(r, 'name')[1:])}\n" for r in records if _has_name(r))


def _nna_line(key: str) -> Callable[[str, int, list[Note]], Proplist | None]:
    return _two_field_line(lambda f: {"name": [f[0], *f[2:]], key: [f[1]]})


def networks_to_text(records: Sequence[Proplist]) -> str:
    """``name TAB address TAB aliases…`` (spec §2.2)."""
    return _nna_to_text(records, "address")


def networks_from_text(text: str) -> Loaded:
    """``name number [aliases]``: name=[name, aliases…], address (spec §2.6)."""
    return _load(text, _nna_line("address"))


def protocols_to_text(records: Sequence[Proplist]) -> str:
    """``name TAB number TAB aliases…`` (spec §2.2)."""
    return _nna_to_text(records, "number")


def protocols_from_text(text: str) -> Loaded:
    """``name number [aliases]``: name=[…], number (spec §2.6)."""
    return _load(text, _nna_line("number"))


rpc_to_text = protocols_to_text
rpc_from_text = protocols_from_text


def services_to_text(records: Sequence[Proplist]) -> str:
    """``name TAB port/protocol TAB aliases…``; only the first protocol (spec §2.2)."""
    return "".join(f"{_first(r, 'name')}\t{_first(r, 'port')}/{_first(r, 'protocol')}\t"
                   f"{chr(9).join(_all(r, 'name')[1:])}\n" for r in records if _has_name(r))


def _services_line(line: str, number: int, notes: list[Note]) -> Proplist | None:
    rec = _nna_line("protport")(line, number, notes)
    if rec is None:
        return None
    props = dict(rec)
    port, slash, proto = props.pop("protport")[0].partition("/")
    if not slash:
        _skip(notes, number, "no '/' between port and protocol")
        return None
    props["port"], props["protocol"] = [port], [proto]
    return _record(props)


def services_from_text(text: str) -> Loaded:
    """``name port/proto [aliases]``: name=[…], port, protocol (spec §2.6)."""
    return _load(text, _services_line)


# -- aliases --------------------------------------------------------------------------------

_WIDTH = 72


def aliases_to_text(records: Sequence[Proplist]) -> str:
    """``name: m1,m2,…`` wrapped before 72 columns with ``⏎TAB`` (spec §2.2).

    The running width starts at len(name)+2; each member counts with its comma (the last
    has none); when adding one passes 72 the line breaks before it and the width restarts
    at 8 plus that member. Records without members are skipped.
    """
    out = []
    for r in records:
        members = _all(r, "members")
        if not members or not _has_name(r):
            continue
        name = _first(r, "name")
        parts = [f"{name}: "]
        width = len(name) + 2
        for i, m in enumerate(members):
            word = m + ("," if i + 1 < len(members) else "")
            width += len(word)
            if width > _WIDTH:
                parts.append("\n\t")
                width = 8 + len(word)
            parts.append(word)
        out.append("".join(parts) + "\n")
    return "".join(out)


def _aliases_line(line: str, number: int, notes: list[Note]) -> Proplist | None:
    fields = _fields(line, ":")
    if not fields:
        return None
    if len(fields) < 2:
        _skip(notes, number, "no ':' after the alias name")
        return None
    # Only the second ':' field is the member list (":include:" breaks, spec §2.6).
    return _record({"name": [fields[0]], "members": _fields(fields[1], ",")})


def aliases_from_text(text: str) -> Loaded:
    """``name: m1, m2, …``; a line starting with a blank continues the previous one."""
    return _load(text, _aliases_line, join="indent")


# -- printcap, bootparams -------------------------------------------------------------------

def _printcap_item(key: str, values: list[str]) -> str:
    if not values:
        return f"{key}:"
    if values[0].startswith("#"):
        return f"{key}{values[0]}:"
    return f"{key}={values[0]}:"


def printcap_to_text(records: Sequence[Proplist]) -> str:
    """``n1|n2|…: \\⏎TAB:`` then ``key=v:`` / ``key#n:`` / ``key:`` for each property
    other than name, wrapped with `` \\⏎TAB:`` past 72 (width starts at 9) (spec §2.2)."""
    out = []
    for r in records:
        if not _has_name(r):
            continue
        parts = ["|".join(_all(r, "name")), ": \\\n\t:"]
        width = 9
        for key, values in r:
            if key == "name":
                continue
            item = _printcap_item(key, values)
            width += len(item)
            if width > _WIDTH:
                parts.append(" \\\n\t:")
                width = 9 + len(item)
            parts.append(item)
        out.append("".join(parts) + "\n")
    return "".join(out)


def _keyed_line(sep: str, what: str) -> Callable[[str, int, list[Note]], Proplist | None]:
    # name SEP key=value SEP key=value…; only key=value pieces become properties, one
    # value each, a later key replacing an earlier one (spec §2.6).
    def parse(line: str, number: int, notes: list[Note]) -> Proplist | None:
        pieces = _explode(line, sep)
        if not pieces or not pieces[0].strip(_TRIM):
            if line.strip(_TRIM):
                _skip(notes, number, f"no {what} name")
            return None
        props = {"name": [pieces[0].strip(_TRIM)]}
        for piece in pieces[1:]:
            kv = _explode(piece.strip(_TRIM), "=")
            if len(kv) == 2:
                props[kv[0]] = [kv[1]]
        return _record(props)
    return parse


def printcap_from_text(text: str) -> Loaded:
    """``names:cap:cap:…`` with ``\\`` continuations; name is the whole first field
    (``|`` aliases unsplit); booleans and ``#`` numerics are dropped (spec §2.6)."""
    return _load(text, _keyed_line(":", "printer"), join="backslash")


def bootparams_to_text(records: Sequence[Proplist]) -> str:
    """``name bp1 \\⏎TABbp2…`` for children with a name and ≥1 bootparams (spec §2.2)."""
    return "".join(_first(r, "name") + " " + " \\\n\t".join(_all(r, "bootparams")) + "\n"
                   for r in records if _has_name(r) and first_values(r, "bootparams"))


def bootparams_from_text(text: str) -> Loaded:
    """``name TAB key=val TAB key=val…`` (TAB-separated only, ``\\`` continuations):
    one property per key, not a ``bootparams`` list (spec §2.6)."""
    return _load(text, _keyed_line("\t", "client"), join="backslash")


# -- bootptab -------------------------------------------------------------------------------

_BOOTPTAB_HEADER = "/private/tftpboot:/\nmach\n%%\n"


def bootptab_to_text(records: Sequence[Proplist]) -> str:
    """Header ``/private/tftpboot:/``, ``mach``, ``%%``, then
    ``name TAB 1 TAB en_address TAB ip_address TAB bootfile`` (spec §2.2)."""
    lines = [_BOOTPTAB_HEADER]
    for r in records:
        if _has_name(r):
            lines.append("\t".join((_first(r, "name"), "1",
                                    _first(r, "en_address", "0:0:0:0:0:0"),
                                    _first(r, "ip_address", "0.0.0.0"),
                                    _first(r, "bootfile", "mach"))) + "\n")
    return "".join(lines)


def _bootptab_line(line: str, number: int, notes: list[Note]) -> Proplist | None:
    fields = _fields(line, " \t")
    if not fields:
        return None
    if len(fields) < 5:
        _skip(notes, number, f"{len(fields)} fields, expected at least 5")
        return None
    return _record({k: [v] for k, v in zip(
        ("name", "htype", "en_address", "ip_address", "bootfile"), fields, strict=False)})


def bootptab_from_text(text: str) -> Loaded:
    """Lines after the first line starting ``%%``: ``name htype en ip bootfile``."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("%%"):
            loaded = _load("\n".join(lines[i + 1:]), _bootptab_line)
            notes = [n._replace(line=n.line + i + 1) for n in loaded.notes]
            return Loaded(loaded.records, notes)
    if not text.strip(_TRIM):
        return Loaded([], [])
    return Loaded([], [Note(1, "skipped", "no '%%' line: nothing read")])


# -- fstab, exports -------------------------------------------------------------------------

def fstab_to_text(records: Sequence[Proplist]) -> str:
    """``name dir vfstype opts freq passno``: vfstype defaults to nfs, opts to rw,
    freq (property ``freq``) and passno to 0 (spec §2.2)."""
    return "".join(" ".join((_first(r, "name"), _first(r, "dir"),
                             _first(r, "vfstype", "nfs"),
                             ",".join(_all(r, "opts")) if _all(r, "opts") else "rw",
                             _first(r, "freq", "0"), _first(r, "passno", "0"))) + "\n"
                   for r in records if _has_name(r))


def _fstab_line(line: str, number: int, notes: list[Note]) -> Proplist | None:
    fields = _fields(line, " \t")
    if not fields:
        return None
    if len(fields) < 6:
        _skip(notes, number, f"{len(fields)} fields, expected at least 6")
        return None
    return _record({"name": [fields[0]], "dir": [fields[1]], "vfstype": [fields[2]],
                    "opts": _fields(fields[3], ","), "dump_freq": [fields[4]],
                    "passno": [fields[5]]})


def fstab_from_text(text: str) -> Loaded:
    """``spec file type opts freq passno``: name, dir, vfstype, opts (split on ``,``),
    **dump_freq**, passno (spec §2.6; nidump reads ``freq``: a known asymmetry)."""
    return _load(text, _fstab_line)


def exports_to_text(records: Sequence[Proplist]) -> str:
    """``name <other names> <-opt …> <clients>``: four groups, each space-joined, joined by
    exactly one space, so an empty group leaves a double space (spec §2.2)."""
    return "".join(" ".join((_first(r, "name"), " ".join(_all(r, "name")[1:]),
                             " ".join("-" + o for o in _all(r, "opts")),
                             " ".join(_all(r, "clients")))) + "\n"
                   for r in records if _has_name(r))


def _exports_line(line: str, number: int, notes: list[Note]) -> Proplist | None:
    # The inverse of the dump's single-space groups: an empty group is one empty token.
    if not line.strip(_TRIM):
        return None
    toks = line.split(" ")
    if not toks[0]:
        _skip(notes, number, "no exported path at the start of the line")
        return None
    i, n = 1, len(toks)
    names, opts = [toks[0]], []
    if i < n and toks[i] == "":
        i += 1
    else:
        while i < n and toks[i] and not toks[i].startswith("-"):
            names.append(toks[i])
            i += 1
    if i < n and toks[i] == "":
        i += 1
    else:
        while i < n and toks[i].startswith("-"):
            opts.append(toks[i][1:])
            i += 1
    clients = [t for t in toks[i:] if t]
    return _record({"name": names, "opts": opts, "clients": clients})


def exports_from_text(text: str) -> Loaded:
    """The dump's line back into name, opts (without ``-``) and clients (no niload
    loader exists, spec §2.5; this is the inverse of :func:`exports_to_text`)."""
    return _load(text, _exports_line)


# -- mountmaps ([208]) ----------------------------------------------------------------------

def mountmaps_to_text(records: Sequence[Proplist]) -> str:
    """NeXT's automounter maps, the children of ``/mountmaps`` ([208] ``nidump
    mountmaps``; Appendix B lists it among the formats). The spec does not record the
    original's layout, so this one loses nothing: one line per named map, its names
    comma-joined, then each other property as TAB ``key=v1,v2`` in stored order."""
    out = []
    for r in records:
        if not _has_name(r):
            continue
        fields = [",".join(_all(r, "name"))]
        seen_name = False
        for k, vals in r:
            if k == "name" and not seen_name:
                seen_name = True
                continue
            fields.append(f"{k}={','.join(vals)}")
        out.append("\t".join(fields) + "\n")
    return "".join(out)


def _mountmaps_line(line: str, number: int, notes: list[Note]) -> Proplist | None:
    if not line.strip(_TRIM):
        return None
    first, *rest = line.split("\t")
    if not first:
        _skip(notes, number, "no map name at the start of the line")
        return None
    props: Proplist = [("name", first.split(","))]
    for piece in rest:
        key, eq, vals = piece.partition("=")
        if not eq or not key:
            _skip(notes, number, f"field {piece!r} is not key=values")
            return None
        props.append((key, _explode(vals, ",")))
    return props


def mountmaps_from_text(text: str) -> Loaded:
    """The inverse of :func:`mountmaps_to_text` (no niload loader, spec §2.5); the
    properties stay in the order read."""
    return _load(text, _mountmaps_line)


# -- resolv.conf ----------------------------------------------------------------------------

def resolv_to_text(records: Sequence[Proplist]) -> str:
    """For /locations/resolver itself (pass ``[its props]``): only with a domain and ≥1
    nameserver: ``domain X``, ``search a b`` when present, ``nameserver ip`` per value."""
    out = []
    for r in records:
        servers = _all(r, "nameserver")
        if not first_values(r, "domain") or not servers:
            continue
        out.append(f"domain {_first(r, 'domain')}\n")
        if first_values(r, "search"):
            out.append(f"search {' '.join(_all(r, 'search'))}\n")
        out.extend(f"nameserver {s}\n" for s in servers)
    return "".join(out)


def resolv_from_text(text: str) -> Loaded:
    """``domain``, ``search`` and ``nameserver`` lines into one record (no niload loader;
    the inverse of :func:`resolv_to_text`). ``#`` and ``;`` start comments."""
    props: dict[str, list[str]] = {}
    notes: list[Note] = []
    for number, line in _lines(text):
        words = line.split()
        if not words or words[0].startswith(";") or words[0].startswith("#"):
            continue
        key, args = words[0], words[1:]
        if key in ("domain", "search", "nameserver") and args:
            if key == "nameserver":
                props.setdefault(key, []).append(args[0])
            else:
                props[key] = args if key == "search" else [args[0]]
        else:
            _skip(notes, number, f"unknown or empty resolver line {key!r}")
    return Loaded([_record(props)] if props else [], notes)


# -- the table ------------------------------------------------------------------------------

class FormatSpec(NamedTuple):
    """One flat-file format: codecs and where its records live.

    :ivar to_text: records → the lines nidump prints.
    :ivar from_text: text → :class:`Loaded`, as niload parses it.
    :ivar directory: the table directory (for resolv.conf, the directory itself).
    :ivar key: the property niload finds records by (§2.7), None when not a table.
    :ivar nidump: nidump knows this format (§2.1); :ivar niload: niload does (§2.5).
    :ivar table: records are the children of *directory* (False: the directory itself).
    :ivar dump_when_missing: nidump prints ``to_text([])`` even if *directory* is missing
        (bootptab prints its header first, whatever happens).
    """

    to_text: Callable[[Sequence[Proplist]], str]
    from_text: Callable[[str], Loaded]
    directory: str
    key: str | None = "name"
    nidump: bool = True
    niload: bool = True
    table: bool = True
    dump_when_missing: bool = False


#: Format name → codecs, in nidump's usage order (spec §2.1 [369] and Appendix B, which
#: ends with [208]'s mountmaps), plus niload's undocumented passwd.43 (§2.5).
FORMATS: dict[str, FormatSpec] = {
    "aliases": FormatSpec(aliases_to_text, aliases_from_text, "/aliases"),
    "bootptab": FormatSpec(bootptab_to_text, bootptab_from_text, "/machines",
                           dump_when_missing=True),
    "bootparams": FormatSpec(bootparams_to_text, bootparams_from_text, "/machines"),
    "ethers": FormatSpec(ethers_to_text, ethers_from_text, "/machines", niload=False),
    "exports": FormatSpec(exports_to_text, exports_from_text, "/exports", niload=False),
    "fstab": FormatSpec(fstab_to_text, fstab_from_text, "/mounts"),
    "group": FormatSpec(group_to_text, group_from_text, "/groups"),
    "hosts": FormatSpec(hosts_to_text, hosts_from_text, "/machines"),
    "networks": FormatSpec(networks_to_text, networks_from_text, "/networks"),
    "passwd": FormatSpec(passwd_to_text, passwd_from_text, "/users"),
    "passwd.43": FormatSpec(passwd43_to_text, passwd43_from_text, "/users", nidump=False),
    "printcap": FormatSpec(printcap_to_text, printcap_from_text, "/printers"),
    "protocols": FormatSpec(protocols_to_text, protocols_from_text, "/protocols"),
    "resolv.conf": FormatSpec(resolv_to_text, resolv_from_text, "/locations/resolver",
                              key=None, niload=False, table=False),
    "rpc": FormatSpec(rpc_to_text, rpc_from_text, "/rpcs"),
    "services": FormatSpec(services_to_text, services_from_text, "/services"),
    # [208]'s mount maps, back in the list as Appendix B prints it; nothing without
    # /mountmaps, like every other missing table (tools §2.1).
    "mountmaps": FormatSpec(mountmaps_to_text, mountmaps_from_text, "/mountmaps",
                            niload=False),
}

#: The niload formats whose records are read line by line (``_load``), so that the input
#: can be parsed a piece at a time (:func:`iter_loaded`), and how their lines continue:
#: ``"indent"`` (aliases), ``"backslash"`` (printcap, bootparams) or None. bootptab (its
#: ``%%`` section) and resolv.conf (one record) are parsed whole.
LINE_FORMATS: dict[str, str | None] = {
    "aliases": "indent", "bootparams": "backslash", "fstab": None, "group": None,
    "hosts": None, "networks": None, "passwd": None, "passwd.43": None,
    "printcap": "backslash", "protocols": None, "rpc": None, "services": None,
}

#: The nidump formats whose text is one piece per record (``to_text(a + b)`` is
#: ``to_text(a) + to_text(b)``), so a big table can be printed as it is read; bootptab
#: (a header) and resolv.conf (not a table) are printed whole.
RECORD_FORMATS: frozenset[str] = frozenset(
    n for n, s in FORMATS.items() if s.nidump and s.table and n != "bootptab")

#: Input lines per piece of :func:`iter_loaded` (niload plans and writes a piece at a
#: time: memory stays bounded whatever the input's size).
PIECE_LINES = 2_000


def _may_cut(text: str | bytes, at: int, join: str | None) -> bool:
    """Whether a piece may end just before offset *at* (the start of a line): never
    inside a continued logical line (spec §2.6's joins)."""
    nl, bs = ("\n", "\\") if isinstance(text, str) else (b"\n", b"\\")
    if join == "indent":
        return text[at:at + 1] not in ((" ", "\t") if isinstance(text, str) else (b" ", b"\t"))
    if join == "backslash":
        return not (at >= 2 and text[at - 1:at] == nl and text[at - 2:at - 1] == bs)
    return True


def _pieces(fmt: str, text: str | bytes, lines: int | None) -> Iterator[
        tuple[str | bytes, int]]:
    """The pieces :func:`iter_loaded` parses: (text of about *lines* input lines, how
    many lines come before it). Whole for a format not read line by line."""
    if fmt not in LINE_FORMATS:
        yield text, 0
        return
    lines = lines or PIECE_LINES
    join = LINE_FORMATS[fmt]
    nl = "\n" if isinstance(text, str) else b"\n"
    start, before, size = 0, 0, len(text)
    while start < size:
        end, n = start, 0
        if join is None:   # any line end will do: jump there at once
            j = text.find(nl, start)   # type: ignore[arg-type]
            while j >= 0 and n < lines - 1:
                n += 1
                j = text.find(nl, j + 1)   # type: ignore[arg-type]
            end = size if j < 0 else j + 1
            n += 1
        else:
            while end < size and (n < lines or not _may_cut(text, end, join)):
                j = text.find(nl, end)   # type: ignore[arg-type]
                end = size if j < 0 else j + 1
                n += 1
        yield text[start:end], before
        before += n
        start = end


def _parse_piece(fmt: str, piece: str | bytes, before: int) -> Loaded:
    got = FORMATS[fmt].from_text(piece if isinstance(piece, str)
                                 else piece.decode("utf-8", "surrogateescape"))
    if before:
        got = Loaded(got.records, [nt._replace(line=nt.line + before) for nt in got.notes])
    return got


def iter_loaded(fmt: str, text: str | bytes, lines: int | None = None) -> Iterator[Loaded]:
    """``FORMATS[fmt].from_text`` a piece at a time: the records of about *lines* input
    lines (default :data:`PIECE_LINES`) per :class:`Loaded`, in input order, notes
    numbered as in the whole input. Pieces end only between logical lines, so the
    records are exactly those of parsing the whole text at once. *text* may be bytes
    (decoded a piece at a time, UTF-8 with surrogateescape, as niload reads its input):
    the input is held once, never twice."""
    for piece, before in _pieces(fmt, text, lines):
        yield _parse_piece(fmt, piece, before)


def _plain(fields: int, longest: int) -> tuple[re.Pattern[str], re.Pattern[bytes]]:
    """A piece of lines each of which is a comment (``#`` in column 1) or exactly
    *fields* ``:``-separated fields of at most *longest* characters in all, starting
    with neither a blank nor ``+`` and not ending in a blank: lines that give one
    record each and no note (str and bytes patterns). An empty line is not plain."""
    field = r"[^\n:]*"
    line = (r"(?:#[^\n]*|(?=[^\n]{0,%d}(?:\n|\Z))[^\n:+ \t]%s(?::%s){%d}(?<![ \t]))"
            % (longest, field, field, fields - 1))
    rx = rf"(?:{line}\n)*(?:{line})?"
    return re.compile(rx), re.compile(rx.encode())


#: The formats whose well-formed pieces :func:`survey` counts without parsing them: a
#: line :func:`_plain` accepts gives one record and no note, and is far below every
#: bound of :func:`~netinfo.wire.limits.proplist_problem` (4,096 characters in a line:
#: a passwd record then holds under 8,400 characters and list entries, half the bound).
_PLAIN: dict[str, tuple[re.Pattern[str], re.Pattern[bytes]]] = {
    "passwd": _plain(10, 4096),
    "passwd.43": _plain(7, 4096),
}


def survey(fmt: str, text: str | bytes, lines: int | None = None) -> tuple[int, list[Note]]:
    """How many records *text* holds and its notes: what :func:`iter_loaded` would give,
    without building the records of a piece whose every line is plain (:data:`_PLAIN`,
    one regular expression over the piece); any other piece is parsed."""
    total = 0
    notes: list[Note] = []
    plain = _PLAIN.get(fmt)
    for piece, before in _pieces(fmt, text, lines):
        if plain is not None and piece:
            rx = plain[0] if isinstance(piece, str) else plain[1]
            if rx.fullmatch(piece) is not None:   # type: ignore[arg-type]
                total += _records_in_plain(piece)
                continue
        got = _parse_piece(fmt, piece, before)
        total += len(got.records)
        notes.extend(got.notes)
    return total, notes


def _records_in_plain(piece: str | bytes) -> int:
    """The records of a piece of plain lines: its lines less the comments."""
    if isinstance(piece, str):
        return (piece.count("\n") + (not piece.endswith("\n"))
                - piece.count("\n#") - piece.startswith("#"))
    return (piece.count(b"\n") + (not piece.endswith(b"\n"))
            - piece.count(b"\n#") - piece.startswith(b"#"))


#: The formats nidump accepts, in its usage order (16, spec §2.1 and Appendix B).
NIDUMP_FORMATS: tuple[str, ...] = tuple(n for n, s in FORMATS.items() if s.nidump)
#: The formats niload accepts (spec §2.5).
NILOAD_FORMATS: tuple[str, ...] = tuple(n for n, s in FORMATS.items() if s.niload)


# -- niload update rules (spec §2.7) --------------------------------------------------------

def record_key(record: Proplist) -> str | None:
    """The record's key: the first value of ``name``, or None ("input item has no name -
    ignored", spec §2.7 rule 1). An empty name is no name either: the original would have
    written to ``<table>/``, which is the table directory itself."""
    values = first_values(record, "name")
    return values[0] if values and values[0] else None


def record_path(table: str, name: str) -> str:
    """``<table>/<name>`` with each ``/`` in the name escaped as ``\\/``; ``=`` is *not*
    escaped, so ``a=b`` is read as ``key=value`` (spec §2.7 rule 2)."""
    return f"{table.rstrip('/')}/{name.replace('/', chr(92) + '/')}"


def merge_proplists(new: Proplist, old: Proplist) -> Proplist:
    """``niload -m``: the new list first, then the old data merged in (spec §2.7 rule 6).

    Old properties are taken in order: one whose key is not yet present is appended whole;
    otherwise each of its values not already among the first same-named property's
    values is appended to it. Neither argument is modified.
    """
    out: Proplist = [(k, list(v)) for k, v in new]
    for key, values in old:
        for k, vals in out:
            if k == key:
                for v in values:
                    if v not in vals:
                        vals.append(v)
                break
        else:
            out.append((key, list(values)))
    return out


#: niload -v messages for each update action (spec §2.7), formatted with ``path=``.
UPDATE_MESSAGES: dict[str, str] = {
    "create": "writing new directory {path}",
    "write": "writing directory {path}",
    "merge": "merging directory {path}",
}


def plan_update(existing: Proplist | None, parsed: Proplist, merge: bool) -> \
        tuple[str, Proplist]:
    """What niload does with one parsed record (spec §2.7 rules 4-6).

    *existing* is the found directory's property list, or None when the lookup found
    nothing. Returns ``(action, proplist)``: ``"create"`` a new child with exactly the
    parsed properties; ``"write"`` (replace the whole list); or ``"merge"``
    (:func:`merge_proplists`). The action keys :data:`UPDATE_MESSAGES`.
    """
    if existing is None:
        return ("create", [(k, list(v)) for k, v in parsed])
    if merge:
        return ("merge", merge_proplists(parsed, existing))
    return ("write", [(k, list(v)) for k, v in parsed])


def record_text(record: Proplist) -> str:
    """A record as ``niload -v`` prints it after ``Processing input item:``: one
    ``key: v1 v2`` line per property, then a blank line; a single empty value gives
    ``key: `` with a trailing space, no values gives ``key:`` (spec §2.7)."""
    return "".join(k + ":" + "".join(" " + v for v in vals) + "\n"
                   for k, vals in record) + "\n"
