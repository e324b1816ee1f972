"""LDAPv3 messages (RFC 4511 §4) on the BER codec of :mod:`ber`: one dataclass per
operation, one table from APPLICATION tag to decoder, one from type to encoder. Pure.

Strings the protocol defines as LDAPString or LDAPDN are ``str`` (UTF-8, bytes that are
not kept by ``surrogateescape``); attribute and assertion values are ``bytes`` (RFC 4511
§4.1.6: OCTET STRING, their syntax the attribute's). Decoders raise only
:class:`~netinfo.errors.WireError`; one whose ``fatal`` is True means the stream cannot be
read further (RFC 4511 §4.1.1: the server answers a notice of disconnection and closes).

Filters (§4.5.1.7) are a tree of small frozen dataclasses, bounded in depth and terms
(:data:`MAX_FILTER_DEPTH`, :data:`MAX_FILTER_TERMS`). The controls and extended
operations the server speaks have their value codecs here too: paged results (RFC
2696), password modify (RFC 3062), StartTLS (RFC 4511 §4.14), Who am I? (RFC 4532).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from ..errors import WireError
from .ber import (
    BOOLEAN, CONSTRUCTED, ENUMERATED, INTEGER, OCTET_STRING, SEQUENCE, SET,
    Reader, decode_bool, decode_int, decode_str, encode_bool, encode_enum, encode_int,
    encode_octets, encode_str, seq, tlv,
)

#: RFC 4511 §4.1.1 ``maxInt``: message ids, limits and page sizes lie in 0..maxInt.
MAX_INT = 2**31 - 1
#: Filters nested deeper than this are refused (protocolError). RFC 4511 sets no bound;
#: SSSD's deepest is 3 (issue 22), hand-written ones a handful; 32 keeps the evaluator's
#: recursion far from Python's limit.
MAX_FILTER_DEPTH = 32
#: Terms (nodes) in one filter: each is evaluated against every candidate entry, so a
#: search's cost is entries × terms. SSSD sends under 20; 1,024 is fifty times that.
MAX_FILTER_TERMS = 1024
#: Attributes one search may name, values one attribute may carry in a request, and
#: changes one modify may make: each is also under ber.MAX_MESSAGE, but a count bound
#: keeps the per-entry work small. 65,535 is NetInfo's own list bound (spec §2).
MAX_LIST = 65535

OID_STARTTLS = "1.3.6.1.4.1.1466.20037"        # RFC 4511 §4.14.1
OID_WHOAMI = "1.3.6.1.4.1.4203.1.11.3"          # RFC 4532 §2
OID_PASSWD_MODIFY = "1.3.6.1.4.1.4203.1.11.1"   # RFC 3062 §2
OID_PAGED_RESULTS = "1.2.840.113556.1.4.319"    # RFC 2696 §2
OID_NOTICE_OF_DISCONNECTION = "1.3.6.1.4.1.1466.20036"  # RFC 4511 §4.4.1


class ResultCode(IntEnum):
    """RFC 4511 §4.1.9 and Appendix A."""

    SUCCESS = 0
    OPERATIONS_ERROR = 1
    PROTOCOL_ERROR = 2
    TIME_LIMIT_EXCEEDED = 3
    SIZE_LIMIT_EXCEEDED = 4
    COMPARE_FALSE = 5
    COMPARE_TRUE = 6
    AUTH_METHOD_NOT_SUPPORTED = 7
    STRONGER_AUTH_REQUIRED = 8
    REFERRAL = 10
    ADMIN_LIMIT_EXCEEDED = 11
    UNAVAILABLE_CRITICAL_EXTENSION = 12
    CONFIDENTIALITY_REQUIRED = 13
    SASL_BIND_IN_PROGRESS = 14
    NO_SUCH_ATTRIBUTE = 16
    UNDEFINED_ATTRIBUTE_TYPE = 17
    INAPPROPRIATE_MATCHING = 18
    CONSTRAINT_VIOLATION = 19
    ATTRIBUTE_OR_VALUE_EXISTS = 20
    INVALID_ATTRIBUTE_SYNTAX = 21
    NO_SUCH_OBJECT = 32
    ALIAS_PROBLEM = 33
    INVALID_DN_SYNTAX = 34
    ALIAS_DEREFERENCING_PROBLEM = 36
    INAPPROPRIATE_AUTHENTICATION = 48
    INVALID_CREDENTIALS = 49
    INSUFFICIENT_ACCESS_RIGHTS = 50
    BUSY = 51
    UNAVAILABLE = 52
    UNWILLING_TO_PERFORM = 53
    LOOP_DETECT = 54
    NAMING_VIOLATION = 64
    OBJECT_CLASS_VIOLATION = 65
    NOT_ALLOWED_ON_NON_LEAF = 66
    NOT_ALLOWED_ON_RDN = 67
    ENTRY_ALREADY_EXISTS = 68
    OBJECT_CLASS_MODS_PROHIBITED = 69
    AFFECTS_MULTIPLE_DSAS = 71
    OTHER = 80


class Scope(IntEnum):
    """SearchRequest scope (RFC 4511 §4.5.1.2)."""

    BASE = 0
    ONE = 1
    SUB = 2


class ModOp(IntEnum):
    """ModifyRequest operation (RFC 4511 §4.6)."""

    ADD = 0
    DELETE = 1
    REPLACE = 2


# -- filters (RFC 4511 §4.5.1.7) -------------------------------------------------------------

F_AND, F_OR, F_NOT = 0xA0, 0xA1, 0xA2
F_EQUAL, F_SUBSTRINGS, F_GE, F_LE = 0xA3, 0xA4, 0xA5, 0xA6
F_PRESENT, F_APPROX, F_EXTENSIBLE = 0x87, 0xA8, 0xA9


@dataclass(frozen=True, slots=True)
class And:
    terms: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Or:
    terms: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Not:
    term: Filter


@dataclass(frozen=True, slots=True)
class Compare:
    """equalityMatch, greaterOrEqual, lessOrEqual or approxMatch: *op* is the filter's tag
    (:data:`F_EQUAL`, :data:`F_GE`, :data:`F_LE`, :data:`F_APPROX`)."""

    op: int
    attr: str
    value: bytes


@dataclass(frozen=True, slots=True)
class Substrings:
    attr: str
    initial: bytes | None
    any: tuple[bytes, ...]
    final: bytes | None


@dataclass(frozen=True, slots=True)
class Present:
    attr: str


@dataclass(frozen=True, slots=True)
class Extensible:
    rule: str | None
    attr: str | None
    value: bytes
    dn_attributes: bool = False


Filter = And | Or | Not | Compare | Substrings | Present | Extensible


class _Budget:
    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_FILTER_TERMS

    def take(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise WireError(f"filter of more than {MAX_FILTER_TERMS} terms")


def _ava(r: Reader, what: str) -> tuple[str, bytes]:
    return r.string(what), r.octets(what)


def _decode_filter(r: Reader, tag: int, start: int, stop: int, depth: int,
                   budget: _Budget) -> Filter:
    budget.take()
    if depth > MAX_FILTER_DEPTH:
        raise WireError(f"filter nested deeper than {MAX_FILTER_DEPTH} levels")
    if tag == F_PRESENT:
        return Present(decode_str(r.data, start, stop))
    inner = r.inner(start, stop)
    if tag == F_AND or tag == F_OR:
        terms = []
        while inner.more():
            t, s, e = inner.next()
            terms.append(_decode_filter(inner, t, s, e, depth + 1, budget))
        # RFC 4511 §4.5.1.7: SET SIZE (1..MAX), but RFC 4526 absolute true/false (the
        # empty and/or) is accepted by real servers; keep it, it evaluates plainly.
        return And(tuple(terms)) if tag == F_AND else Or(tuple(terms))
    if tag == F_NOT:
        t, s, e = inner.next()
        term = _decode_filter(inner, t, s, e, depth + 1, budget)
        inner.done("not")
        return Not(term)
    if tag in (F_EQUAL, F_GE, F_LE, F_APPROX):
        attr, value = _ava(inner, "assertion")
        return Compare(tag, attr, value)
    if tag == F_SUBSTRINGS:
        attr = inner.string("substrings type")
        parts = inner.seq(SEQUENCE, "substrings")
        initial: bytes | None = None
        final: bytes | None = None
        middle: list[bytes] = []
        while parts.more():
            t, s, e = parts.next()
            value = r.data[s:e]
            # initial first and at most once, final last and at most once (§4.5.1.7.2)
            if t == 0x80 and initial is None and not middle and final is None:
                initial = value
            elif t == 0x81 and final is None:
                middle.append(value)
            elif t == 0x82 and final is None:
                final = value
            else:
                raise WireError(f"substrings: misplaced component 0x{t:02x}")
        if initial is None and final is None and not middle:
            raise WireError("substrings without any component")
        return Substrings(attr, initial, tuple(middle), final)
    if tag == F_EXTENSIBLE:
        rule = inner.optional(0x81)
        typ = inner.optional(0x82)
        value = inner.octets("extensible matchValue", 0x83)
        dn = inner.optional(0x84)
        return Extensible(None if rule is None else decode_str(r.data, *rule),
                          None if typ is None else decode_str(r.data, *typ), value,
                          dn is not None and decode_bool(r.data, *dn))
    raise WireError(f"unknown filter choice 0x{tag:02x}")


def decode_filter(data: bytes) -> Filter:
    """One encoded filter on its own (tests, tools)."""
    r = Reader(data)
    t, s, e = r.next()
    f = _decode_filter(r, t, s, e, 1, _Budget())
    if r.more():
        raise WireError("bytes after the filter")
    return f


def encode_filter(f: Filter) -> bytes:
    if isinstance(f, Compare):
        return seq(f.op, encode_str(f.attr), encode_octets(f.value))
    if isinstance(f, And):
        return seq(F_AND, *map(encode_filter, f.terms))
    if isinstance(f, Or):
        return seq(F_OR, *map(encode_filter, f.terms))
    if isinstance(f, Not):
        return seq(F_NOT, encode_filter(f.term))
    if isinstance(f, Present):
        return encode_str(f.attr, F_PRESENT)
    if isinstance(f, Substrings):
        parts = ([] if f.initial is None else [tlv(0x80, f.initial)]) \
            + [tlv(0x81, v) for v in f.any] \
            + ([] if f.final is None else [tlv(0x82, f.final)])
        return seq(F_SUBSTRINGS, encode_str(f.attr), seq(SEQUENCE, *parts))
    parts = []
    if f.rule is not None:
        parts.append(encode_str(f.rule, 0x81))
    if f.attr is not None:
        parts.append(encode_str(f.attr, 0x82))
    parts.append(encode_octets(f.value, 0x83))
    if f.dn_attributes:
        parts.append(encode_bool(True, 0x84))
    return seq(F_EXTENSIBLE, *parts)


def _escape(v: bytes) -> str:
    """An assertion value in RFC 4515 §3 form: ``*()\\`` and NUL as ``\\XX``; other bytes
    that are not printable UTF-8 escaped too."""
    try:
        text = v.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(f"\\{b:02x}" for b in v)
    return "".join(f"\\{ord(c):02x}" if c in "*()\\\0" else c for c in text)


_OPS = {F_EQUAL: "=", F_GE: ">=", F_LE: "<=", F_APPROX: "~="}


def filter_text(f: Filter) -> str:
    """The RFC 4515 string form (for logs and messages)."""
    if isinstance(f, Compare):
        return f"({f.attr}{_OPS[f.op]}{_escape(f.value)})"
    if isinstance(f, And):
        return "(&" + "".join(map(filter_text, f.terms)) + ")"
    if isinstance(f, Or):
        return "(|" + "".join(map(filter_text, f.terms)) + ")"
    if isinstance(f, Not):
        return "(!" + filter_text(f.term) + ")"
    if isinstance(f, Present):
        return f"({f.attr}=*)"
    if isinstance(f, Substrings):
        return (f"({f.attr}=" + ("" if f.initial is None else _escape(f.initial)) + "*"
                + "".join(_escape(v) + "*" for v in f.any)
                + ("" if f.final is None else _escape(f.final)) + ")")
    return ("(" + (f.attr or "") + (":dn" if f.dn_attributes else "")
            + (f":{f.rule}" if f.rule else "") + ":=" + _escape(f.value) + ")")


# -- operations (RFC 4511 §4.2-§4.14) -------------------------------------------------------

#: A PartialAttribute: description and values (§4.1.7).
Attribute = tuple[str, tuple[bytes, ...]]


@dataclass(frozen=True, slots=True)
class Control:
    """RFC 4511 §4.1.11."""

    oid: str
    critical: bool = False
    value: bytes | None = None


@dataclass(frozen=True, slots=True)
class BindRequest:
    """Simple (*password* set) or SASL (*mechanism* set) bind (§4.2)."""

    version: int
    name: str
    password: bytes | None = None
    mechanism: str | None = None
    credentials: bytes | None = None


@dataclass(frozen=True, slots=True)
class UnbindRequest:
    pass


@dataclass(frozen=True, slots=True)
class SearchRequest:
    base: str
    scope: int
    deref: int
    size_limit: int
    time_limit: int
    types_only: bool
    filter: Filter
    attributes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SearchEntry:
    dn: str
    attributes: tuple[Attribute, ...]


@dataclass(frozen=True, slots=True)
class SearchReference:
    uris: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ModifyRequest:
    dn: str
    changes: tuple[tuple[int, Attribute], ...]


@dataclass(frozen=True, slots=True)
class AddRequest:
    dn: str
    attributes: tuple[Attribute, ...]


@dataclass(frozen=True, slots=True)
class DelRequest:
    dn: str


@dataclass(frozen=True, slots=True)
class ModDNRequest:
    dn: str
    new_rdn: str
    delete_old: bool
    new_superior: str | None = None


@dataclass(frozen=True, slots=True)
class CompareRequest:
    dn: str
    attr: str
    value: bytes


@dataclass(frozen=True, slots=True)
class AbandonRequest:
    id: int


@dataclass(frozen=True, slots=True)
class ExtendedRequest:
    name: str
    value: bytes | None = None


# Responses: the APPLICATION numbers of the LDAPResult-shaped ones (§4.2.2 ... §4.11)
BIND_RESPONSE, SEARCH_DONE, MODIFY_RESPONSE, ADD_RESPONSE = 1, 5, 7, 9
DEL_RESPONSE, MODDN_RESPONSE, COMPARE_RESPONSE = 11, 13, 15


@dataclass(frozen=True, slots=True)
class Response:
    """An LDAPResult-shaped response; *op* is its APPLICATION number (BIND_RESPONSE,
    SEARCH_DONE, ...). *sasl_creds* only in a BindResponse (§4.2.2)."""

    op: int
    code: int
    matched: str = ""
    message: str = ""
    referral: tuple[str, ...] = ()
    sasl_creds: bytes | None = None


@dataclass(frozen=True, slots=True)
class ExtendedResponse:
    code: int
    matched: str = ""
    message: str = ""
    referral: tuple[str, ...] = ()
    name: str | None = None
    value: bytes | None = None


Operation = (BindRequest | UnbindRequest | SearchRequest | SearchEntry | SearchReference
             | ModifyRequest | AddRequest | DelRequest | ModDNRequest | CompareRequest
             | AbandonRequest | ExtendedRequest | Response | ExtendedResponse)


@dataclass(frozen=True, slots=True)
class Message:
    """LDAPMessage (§4.1.1)."""

    id: int
    op: Operation
    controls: tuple[Control, ...] = ()


# -- decoders: APPLICATION tag → (reader of the operation's contents) → operation -----------

def _one_attr(r: Reader, what: str) -> Attribute:
    a = r.seq(SEQUENCE, what)
    desc = a.string(what)
    vals = a.seq(SET, what)
    values = []
    while vals.more():
        values.append(vals.octets(what))
        if len(values) > MAX_LIST:
            raise WireError(f"{what}: more than {MAX_LIST} values")
    a.done(what)
    return desc, tuple(values)


def _attr_list(r: Reader, what: str) -> tuple[Attribute, ...]:
    out: list[Attribute] = []
    while r.more():
        out.append(_one_attr(r, what))
        if len(out) > MAX_LIST:
            raise WireError(f"{what}: more than {MAX_LIST} attributes")
    return tuple(out)


def _bind(r: Reader) -> BindRequest:
    version = r.integer("bind version")
    name = r.string("bind name")
    tag, s, e = r.next()
    if tag == 0x80:
        return BindRequest(version, name, password=r.data[s:e])
    if tag == 0xA3:
        sasl = r.inner(s, e)
        mech = sasl.string("sasl mechanism")
        creds = sasl.optional(OCTET_STRING)
        return BindRequest(version, name, mechanism=mech,
                           credentials=None if creds is None else r.data[creds[0]:creds[1]])
    raise WireError(f"bind authentication choice 0x{tag:02x}")


def _search(r: Reader) -> SearchRequest:
    base = r.string("search base")
    scope = r.integer("search scope", ENUMERATED)
    deref = r.integer("search derefAliases", ENUMERATED)
    size = r.integer("search sizeLimit")
    time = r.integer("search timeLimit")
    if scope not in (0, 1, 2) or not 0 <= deref <= 3 or not 0 <= size <= MAX_INT \
            or not 0 <= time <= MAX_INT:
        raise WireError("search request out of range")
    types_only = r.boolean("search typesOnly")
    t, s, e = r.next()
    f = _decode_filter(r, t, s, e, 1, _Budget())
    sel = r.seq(SEQUENCE, "search attributes")
    attrs = []
    while sel.more():
        attrs.append(sel.string("search attribute"))
        if len(attrs) > MAX_LIST:
            raise WireError(f"search names more than {MAX_LIST} attributes")
    return SearchRequest(base, scope, deref, size, time, types_only, f, tuple(attrs))


def _entry(r: Reader) -> SearchEntry:
    dn = r.string("entry name")
    return SearchEntry(dn, _attr_list(r.seq(SEQUENCE, "entry attributes"), "entry attribute"))


def _reference(r: Reader) -> SearchReference:
    uris = []
    while r.more():
        uris.append(r.string("reference URI"))
    return SearchReference(tuple(uris))


def _modify(r: Reader) -> ModifyRequest:
    dn = r.string("modify object")
    changes = r.seq(SEQUENCE, "modify changes")
    out: list[tuple[int, Attribute]] = []
    while changes.more():
        c = changes.seq(SEQUENCE, "modify change")
        op = c.integer("modify operation", ENUMERATED)
        if op not in (0, 1, 2, 3):   # 3: increment (RFC 4525), refused by the server
            raise WireError(f"modify operation {op}")
        out.append((op, _one_attr(c, "modification")))
        c.done("modify change")
        if len(out) > MAX_LIST:
            raise WireError(f"modify of more than {MAX_LIST} changes")
    return ModifyRequest(dn, tuple(out))


def _add(r: Reader) -> AddRequest:
    dn = r.string("add entry")
    return AddRequest(dn, _attr_list(r.seq(SEQUENCE, "add attributes"), "add attribute"))


def _moddn(r: Reader) -> ModDNRequest:
    dn = r.string("modrdn entry")
    rdn = r.string("modrdn newrdn")
    delete = r.boolean("modrdn deleteoldrdn")
    sup = r.optional(0x80)
    return ModDNRequest(dn, rdn, delete, None if sup is None else decode_str(r.data, *sup))


def _compare(r: Reader) -> CompareRequest:
    dn = r.string("compare entry")
    ava = r.seq(SEQUENCE, "compare assertion")
    attr, value = _ava(ava, "compare assertion")
    return CompareRequest(dn, attr, value)


def _extended(r: Reader) -> ExtendedRequest:
    name = r.string("extended requestName", 0x80)
    value = r.optional(0x81)
    return ExtendedRequest(name, None if value is None else r.data[value[0]:value[1]])


def _result_fields(r: Reader) -> tuple[int, str, str, tuple[str, ...]]:
    code = r.integer("resultCode", ENUMERATED)
    matched = r.string("matchedDN")
    message = r.string("diagnosticMessage")
    ref = r.optional(0xA3)
    uris: tuple[str, ...] = ()
    if ref is not None:
        uris = _reference(r.inner(*ref)).uris
    return code, matched, message, uris


def _response(op: int) -> Callable[[Reader], Response]:
    def decode(r: Reader) -> Response:
        code, matched, message, ref = _result_fields(r)
        creds = r.optional(0x87) if op == BIND_RESPONSE else None
        return Response(op, code, matched, message, ref,
                        None if creds is None else r.data[creds[0]:creds[1]])
    return decode


def _extended_response(r: Reader) -> ExtendedResponse:
    code, matched, message, ref = _result_fields(r)
    name = r.optional(0x8A)
    value = r.optional(0x8B)
    return ExtendedResponse(code, matched, message, ref,
                            None if name is None else decode_str(r.data, *name),
                            None if value is None else r.data[value[0]:value[1]])


#: constructed operations: APPLICATION tag (with the constructed bit) → decoder
DECODERS: dict[int, Callable[[Reader], Operation]] = {
    0x60: _bind, 0x61: _response(BIND_RESPONSE), 0x63: _search, 0x64: _entry,
    0x65: _response(SEARCH_DONE), 0x66: _modify, 0x67: _response(MODIFY_RESPONSE),
    0x68: _add, 0x69: _response(ADD_RESPONSE), 0x6B: _response(DEL_RESPONSE),
    0x6C: _moddn, 0x6D: _response(MODDN_RESPONSE), 0x6E: _compare,
    0x6F: _response(COMPARE_RESPONSE), 0x73: _reference, 0x77: _extended,
    0x78: _extended_response,
}
#: primitive operations: UnbindRequest (NULL), DelRequest (LDAPDN), AbandonRequest (ID)
UNBIND, DELETE, ABANDON = 0x42, 0x4A, 0x50


def decode_message(data: bytes) -> Message:
    """One whole LDAPMessage (``ber.frame`` says where it ends).

    :raises WireError: anything malformed; ``fatal`` when the message id itself cannot be
        read (nothing can be answered).
    """
    try:
        r = Reader(data)
        m = r.seq(SEQUENCE, "LDAPMessage")
        msgid = m.integer("messageID")
    except WireError as err:
        raise WireError(str(err), fatal=True) from None
    if not 0 <= msgid <= MAX_INT:
        raise WireError(f"messageID {msgid} out of range", fatal=True)
    tag, s, e = m.next()
    op: Operation
    decoder = DECODERS.get(tag)
    if decoder is not None:
        inner = m.inner(s, e)
        op = decoder(inner)
        inner.done("operation")
    elif tag == UNBIND:
        op = UnbindRequest()
    elif tag == DELETE:
        op = DelRequest(decode_str(data, s, e))
    elif tag == ABANDON:
        op = AbandonRequest(decode_int(data, s, e))
    else:
        raise WireError(f"unknown LDAP operation 0x{tag:02x}")
    controls: list[Control] = []
    c = m.optional(0xA0)
    if c is not None:
        cs = m.inner(*c)
        while cs.more():
            one = cs.seq(SEQUENCE, "control")
            oid = one.string("controlType")
            crit = one.optional(BOOLEAN)
            value = one.optional(OCTET_STRING)
            one.done("control")
            controls.append(Control(oid, crit is not None and decode_bool(data, *crit),
                                    None if value is None else data[value[0]:value[1]]))
            if len(controls) > MAX_LIST:
                raise WireError("too many controls")
    m.done("LDAPMessage")
    return Message(msgid, op, tuple(controls))


def message_id(data: bytes) -> int | None:
    """The message id of an undecodable message when it can still be read (to answer
    protocolError to it), else None."""
    try:
        r = Reader(data)
        m = r.seq(SEQUENCE, "LDAPMessage")
        msgid = m.integer("messageID")
    except WireError:
        return None
    return msgid if 0 <= msgid <= MAX_INT else None


# -- encoders: operation type → contents ---------------------------------------------------

def _enc_attr(attr: Attribute) -> bytes:
    return seq(SEQUENCE, encode_str(attr[0]), seq(SET, *map(encode_octets, attr[1])))


def _enc_attrs(attrs: tuple[Attribute, ...]) -> bytes:
    return seq(SEQUENCE, *map(_enc_attr, attrs))


def _enc_result(code: int, matched: str, message: str,
                referral: tuple[str, ...]) -> list[bytes]:
    parts = [encode_enum(code), encode_str(matched), encode_str(message)]
    if referral:
        parts.append(seq(0xA3, *map(encode_str, referral)))
    return parts


def _enc_entry(dn: str, attrs: tuple[Attribute, ...]) -> bytes:
    """SearchResultEntry, the hottest encoding of a server: :func:`_enc_attrs` with the
    short forms written out (a value under 128 bytes: tag, length, contents)."""
    parts = []
    for name, values in attrs:
        vs = [b"\x04" + bytes((len(v),)) + v if len(v) < 0x80 else tlv(OCTET_STRING, v)
              for v in values]
        nb = name.encode("utf-8", "surrogateescape")
        head = b"\x04" + bytes((len(nb),)) + nb if len(nb) < 0x80 else tlv(OCTET_STRING, nb)
        parts.append(tlv(SEQUENCE, head + tlv(SET, b"".join(vs))))
    return tlv(0x64, encode_str(dn) + tlv(SEQUENCE, b"".join(parts)))


def _enc(o: Operation) -> bytes:
    if isinstance(o, SearchEntry):
        return _enc_entry(o.dn, o.attributes)
    if isinstance(o, Response):
        parts = _enc_result(o.code, o.matched, o.message, o.referral)
        if o.sasl_creds is not None:
            parts.append(encode_octets(o.sasl_creds, 0x87))
        return seq(APP_CONSTRUCTED | o.op, *parts)
    if isinstance(o, SearchRequest):
        return seq(0x63, encode_str(o.base), encode_enum(o.scope), encode_enum(o.deref),
                   encode_int(o.size_limit), encode_int(o.time_limit),
                   encode_bool(o.types_only), encode_filter(o.filter),
                   seq(SEQUENCE, *map(encode_str, o.attributes)))
    if isinstance(o, BindRequest):
        if o.mechanism is not None:
            sasl = [encode_str(o.mechanism)]
            if o.credentials is not None:
                sasl.append(encode_octets(o.credentials))
            auth = seq(0xA3, *sasl)
        else:
            auth = encode_octets(o.password or b"", 0x80)
        return seq(0x60, encode_int(o.version), encode_str(o.name), auth)
    if isinstance(o, UnbindRequest):
        return b"\x42\x00"
    if isinstance(o, ExtendedResponse):
        parts = _enc_result(o.code, o.matched, o.message, o.referral)
        if o.name is not None:
            parts.append(encode_str(o.name, 0x8A))
        if o.value is not None:
            parts.append(encode_octets(o.value, 0x8B))
        return seq(0x78, *parts)
    if isinstance(o, ExtendedRequest):
        parts = [encode_str(o.name, 0x80)]
        if o.value is not None:
            parts.append(encode_octets(o.value, 0x81))
        return seq(0x77, *parts)
    if isinstance(o, SearchReference):
        return seq(0x73, *map(encode_str, o.uris))
    if isinstance(o, ModifyRequest):
        return seq(0x66, encode_str(o.dn), seq(SEQUENCE, *(
            seq(SEQUENCE, encode_enum(op), _enc_attr(attr)) for op, attr in o.changes)))
    if isinstance(o, AddRequest):
        return seq(0x68, encode_str(o.dn), _enc_attrs(o.attributes))
    if isinstance(o, DelRequest):
        return encode_str(o.dn, 0x4A)
    if isinstance(o, ModDNRequest):
        parts = [encode_str(o.dn), encode_str(o.new_rdn), encode_bool(o.delete_old)]
        if o.new_superior is not None:
            parts.append(encode_str(o.new_superior, 0x80))
        return seq(0x6C, *parts)
    if isinstance(o, CompareRequest):
        return seq(0x6E, encode_str(o.dn),
                   seq(SEQUENCE, encode_str(o.attr), encode_octets(o.value)))
    if isinstance(o, AbandonRequest):
        return encode_int(o.id, 0x50)
    raise TypeError(f"not an LDAP operation: {o!r}")


APP_CONSTRUCTED = 0x40 | CONSTRUCTED


def encode_message(m: Message) -> bytes:
    parts = [encode_int(m.id), _enc(m.op)]
    if m.controls:
        parts.append(seq(0xA0, *(seq(SEQUENCE, encode_str(c.oid),
                                     *([encode_bool(True)] if c.critical else []),
                                     *([] if c.value is None else [encode_octets(c.value)]))
                                 for c in m.controls)))
    return seq(SEQUENCE, *parts)


def encode_op(o: Operation) -> bytes:
    """An operation's encoding alone (the protocolOp of an LDAPMessage): what a server
    keeps to send again under other message ids (:func:`message_with`)."""
    return _enc(o)


def message_with(msgid: int, op: bytes) -> bytes:
    """The LDAPMessage (no controls) of message id *msgid* carrying the operation
    *op* already encoded (:func:`encode_op`): ``encode_message`` without re-encoding."""
    return tlv(SEQUENCE, encode_int(msgid) + op)


# -- control and extended-operation values ---------------------------------------------------

def decode_paged(value: bytes | None) -> tuple[int, bytes]:
    """RFC 2696 realSearchControlValue: (size, cookie)."""
    if value is None:
        raise WireError("paged results control without a value")
    r = Reader(value).seq(SEQUENCE, "paged results")
    size = r.integer("paged results size")
    cookie = r.octets("paged results cookie")
    if not 0 <= size <= MAX_INT:
        raise WireError(f"page size {size}")
    return size, cookie


def encode_paged(size: int, cookie: bytes) -> bytes:
    return seq(SEQUENCE, encode_int(size), encode_octets(cookie))


def decode_passwd_modify(value: bytes | None) -> tuple[str | None, bytes | None,
                                                       bytes | None]:
    """RFC 3062 PasswdModifyRequestValue: (userIdentity, oldPasswd, newPasswd); every
    field optional, the value itself too."""
    if value is None:
        return None, None, None
    r = Reader(value).seq(SEQUENCE, "password modify")
    user = r.optional(0x80)
    old = r.optional(0x81)
    new = r.optional(0x82)
    r.done("password modify")
    d = r.data
    return (None if user is None else decode_str(d, *user),
            None if old is None else d[old[0]:old[1]],
            None if new is None else d[new[0]:new[1]])


def encode_passwd_modify(user: str | None, old: bytes | None, new: bytes | None) -> bytes:
    return seq(SEQUENCE, *([] if user is None else [encode_str(user, 0x80)]),
               *([] if old is None else [encode_octets(old, 0x81)]),
               *([] if new is None else [encode_octets(new, 0x82)]))


def encode_passwd_generated(password: bytes) -> bytes:
    """RFC 3062 PasswdModifyResponseValue with genPasswd."""
    return seq(SEQUENCE, encode_octets(password, 0x80))


__all__ = [
    "ABANDON", "ADD_RESPONSE", "AbandonRequest", "AddRequest", "And", "Attribute",
    "BIND_RESPONSE", "BindRequest", "COMPARE_RESPONSE", "Compare", "CompareRequest",
    "Control", "DECODERS", "DELETE", "DEL_RESPONSE", "DelRequest", "ExtendedRequest",
    "ExtendedResponse", "Extensible", "F_AND", "F_APPROX", "F_EQUAL", "F_EXTENSIBLE", "F_GE",
    "F_LE", "F_NOT", "F_OR", "F_PRESENT", "F_SUBSTRINGS", "Filter",
    "MAX_FILTER_DEPTH", "MAX_FILTER_TERMS", "MAX_INT", "MAX_LIST", "MODDN_RESPONSE",
    "MODIFY_RESPONSE", "Message", "ModDNRequest", "ModOp", "ModifyRequest", "Not",
    "OID_NOTICE_OF_DISCONNECTION", "OID_PAGED_RESULTS", "OID_PASSWD_MODIFY", "OID_STARTTLS",
    "OID_WHOAMI", "Operation", "Or", "Present", "Response", "ResultCode", "SEARCH_DONE",
    "Scope", "SearchEntry", "SearchReference", "SearchRequest", "Substrings", "UNBIND",
    "UnbindRequest", "decode_filter", "decode_message", "decode_paged",
    "decode_passwd_modify", "encode_filter", "encode_message", "encode_op", "encode_paged",
    "scan_equality_search", "equality_value_span", "message_parts",
    "message_with",
    "encode_passwd_generated", "encode_passwd_modify", "filter_text", "message_id",
]


# -- the short path's request shapes (server/ldap.py, ``Connection._quick``) ------------------

def _quick_len(data: bytes, i: int) -> tuple[int, int]:
    """A BER length at *i* in short form or 0x81/0x82 long form: (length, where the
    contents begin); (-1, 0) for any other form."""
    n = data[i]
    if n < 0x80:
        return n, i + 1
    if n == 0x81:
        return data[i + 1], i + 2
    if n == 0x82:
        return (data[i + 1] << 8) | data[i + 2], i + 3
    return -1, 0


def _quick_ava(data: bytes, i: int, end: int) -> tuple[str, bytes, int] | None:
    """An equalityMatch filter ``[3] { attr, value }`` at *i* (short forms only): the
    attribute, the value and where it ends; None for anything else."""
    if data[i] != F_EQUAL or i + 6 > end:
        return None
    n = data[i + 1]
    stop = i + 2 + n
    if n >= 0x80 or stop > end or data[i + 2] != OCTET_STRING:
        return None
    la = data[i + 3]
    j = i + 4 + la
    if la >= 0x80 or j + 2 > stop or data[j] != OCTET_STRING:
        return None
    lv = data[j + 1]
    if lv >= 0x80 or j + 2 + lv != stop:
        return None
    return data[i + 4:j].decode("utf-8", "surrogateescape"), data[j + 2:stop], stop


def message_parts(data: bytes) -> tuple[int, int, int] | None:
    """Of the LDAPMessage at the start of *data*: where its messageID begins, where its
    protocolOp begins and where the message ends by its length, when that length is in
    short form or 0x81/0x82 long form and the id is an INTEGER of one to four bytes, not
    negative (what the short path's answers echo); None for anything else (the general
    decoder decides)."""
    try:
        if data[0] != SEQUENCE:
            return None
        n, p = _quick_len(data, 1)
        if n < 0:
            return None
        size = data[p + 1]
        if data[p] != INTEGER or not 1 <= size <= 4 or data[p + 2] & 0x80:
            return None
        return p, p + 2 + size, p + n
    except IndexError:
        return None


def equality_value_span(data: bytes, q: int) -> tuple[int, int] | None:
    """Where the value of the last equality in the filter of the SearchRequest at *q*
    of the whole message *data* lies, for the short path's filter shapes (``(A=V)``, or
    an AND whose last term is ``(A=V)``): read no further than that value and checked
    no more than it takes to find it. The bytes before and after it are the search's
    shape: two messages with the same shape are the same search but for that value
    (its length is in the shape), which is how ``server.ldap`` routes a search to a
    users' map held in memory once one of its shape was answered from it (the shape
    checked then by :func:`scan_equality_search`). None for anything else."""
    try:
        if data[q] != 0x63:
            return None
        n, i = _quick_len(data, q + 1)
        if n < 0 or data[i] != OCTET_STRING:
            return None
        j = i + 2 + data[i + 1] + 6   # the base; scope and derefAliases
        j += 2 + data[j + 1]          # sizeLimit
        j += 2 + data[j + 1] + 3      # timeLimit; typesOnly
        if data[j] == F_AND:
            j += 2
            j += 2 + data[j + 1]      # the first term
        if data[j] != F_EQUAL:
            return None
        k = j + 4 + data[j + 3]       # past the attribute's name
        start = k + 2
        end = start + data[k + 1]
        if end > len(data) or data[k] != OCTET_STRING:
            return None
        return start, end
    except IndexError:
        return None


def scan_equality_search(data: bytes, q: int) -> SearchRequest | None:
    """The SearchRequest at *q* of the whole message *data* when it is one of the short
    path's shapes, read with no more than it needs: scope one level or subtree,
    typesOnly FALSE, the filter ``(uid=V)`` or an AND of two equalities (nslcd's
    ``(&(objectClass=posixAccount)(uid=V))``), any attribute list, nothing after it (no
    controls), every length in the forms this reader knows. What it returns is what
    :func:`decode_message` decodes of the same bytes; None for anything else (the
    general decoder then decides, errors included)."""
    try:
        end = len(data)
        if data[q] != 0x63:
            return None
        n, i = _quick_len(data, q + 1)
        if n < 0 or i + n != end or data[i] != OCTET_STRING:
            return None
        lb = data[i + 1]
        j = i + 2 + lb
        if lb >= 0x80 or j + 18 > end:
            return None
        base = data[i + 2:j].decode("utf-8", "surrogateescape")
        # scope, derefAliases: ENUMERATED of one byte; sizeLimit, timeLimit: INTEGER of
        # one to four bytes, not negative; typesOnly: BOOLEAN FALSE
        if data[j] != ENUMERATED or data[j + 1] != 1 or data[j + 3] != ENUMERATED \
                or data[j + 4] != 1:
            return None
        scope, deref = data[j + 2], data[j + 5]
        if scope not in (1, 2) or deref > 3:
            return None
        j += 6
        limits = []
        for _ in (0, 1):
            ln = data[j + 1]
            if data[j] != INTEGER or not 1 <= ln <= 4 or data[j + 2] & 0x80:
                return None
            limits.append(int.from_bytes(data[j + 2:j + 2 + ln], "big"))
            j += 2 + ln
        if data[j:j + 3] != b"\x01\x01\x00":
            return None
        j += 3
        t = data[j]
        f: Filter
        if t == F_EQUAL:
            one = _quick_ava(data, j, end)
            if one is None:
                return None
            f = Compare(F_EQUAL, one[0], one[1])
            j = one[2]
        elif t == F_AND:
            ln = data[j + 1]
            stop = j + 2 + ln
            if ln >= 0x80 or stop > end:
                return None
            a = _quick_ava(data, j + 2, stop)
            if a is None:
                return None
            b = _quick_ava(data, a[2], stop)
            if b is None or b[2] != stop:
                return None
            f = And((Compare(F_EQUAL, a[0], a[1]), Compare(F_EQUAL, b[0], b[1])))
            j = stop
        else:
            return None
        if data[j] != SEQUENCE:
            return None
        n, k = _quick_len(data, j + 1)
        if n < 0 or k + n != end:
            return None
        names = []
        while k < end:
            ln = data[k + 1]
            stop = k + 2 + ln
            if data[k] != OCTET_STRING or ln >= 0x80 or stop > end:
                return None
            names.append(data[k + 2:stop].decode("utf-8", "surrogateescape"))
            k = stop
        if len(names) > MAX_LIST:
            return None
        return SearchRequest(base, scope, deref, limits[0], limits[1], False, f,
                             tuple(names))
    except IndexError:
        return None
