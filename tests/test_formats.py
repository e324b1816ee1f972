"""nidump/niload formats (tools spec §2): golden output, spec vectors, round trips, and
hostile input. Golden files in tests/data/formats/ were written by hand from the spec."""

from __future__ import annotations

import ast
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netinfo.client import flat as formats
from netinfo.client import raw as raw_module
from netinfo.client.flat import (
    FORMATS,
    NIDUMP_FORMATS,
    NILOAD_FORMATS,
    UPDATE_MESSAGES,
    Loaded,
    Note,
    merge_proplists,
    plan_update,
    record_key,
    record_path,
    record_text,
)
from netinfo.client.raw import FormatError, RawNode, raw_from_text, raw_to_text
from netinfo.errors import NetInfoError

DATA = Path(__file__).resolve().parent / "data" / "formats"


def golden(name: str) -> str:
    return (DATA / name).read_bytes().decode("utf-8")


def load(fmt: str, text: str) -> Loaded:
    return FORMATS[fmt].from_text(text)


# -- the table ------------------------------------------------------------------------------

def test_nidump_formats_are_the_spec_list_in_usage_order():
    # §2.1 [369]: 15 formats; Appendix B's usage adds [208]'s mountmaps at the end.
    assert NIDUMP_FORMATS == ("aliases", "bootptab", "bootparams", "ethers", "exports",
                              "fstab", "group", "hosts", "networks", "passwd", "printcap",
                              "protocols", "resolv.conf", "rpc", "services", "mountmaps")
    assert FORMATS["mountmaps"].directory == "/mountmaps"
    assert "mountmaps" not in NILOAD_FORMATS


def test_niload_formats_and_directories_match_spec_table():
    # §2.5 "Formats and their targets"; no exports loader; passwd.43 undocumented.
    expected = {"aliases": "/aliases", "bootparams": "/machines", "bootptab": "/machines",
                "hosts": "/machines", "fstab": "/mounts", "group": "/groups",
                "networks": "/networks", "passwd": "/users", "passwd.43": "/users",
                "printcap": "/printers", "protocols": "/protocols", "rpc": "/rpcs",
                "services": "/services"}
    assert set(NILOAD_FORMATS) == set(expected)
    for name, directory in expected.items():
        assert FORMATS[name].directory == directory
        assert FORMATS[name].key == "name"


def test_nidump_only_directories():
    # §2.2 table.
    assert FORMATS["ethers"].directory == "/machines"
    assert FORMATS["exports"].directory == "/exports"
    spec = FORMATS["resolv.conf"]
    assert (spec.directory, spec.table, spec.key) == ("/locations/resolver", False, None)
    assert [n for n, s in FORMATS.items() if s.dump_when_missing] == ["bootptab"]


@pytest.mark.parametrize("module", [formats, raw_module])
def test_formats_modules_are_pure(module):
    tree = ast.parse(Path(module.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or ""))
    # the layout of issue 19: the root's model, the wire's bounds, the raw codec beside it
    assert imported <= {"__future__", "re", "collections.abc", "dataclasses", "typing",
                        "..errors", "..model", "..wire.limits", ".raw"}


def test_format_error_is_a_netinfo_error_with_line():
    err = FormatError('Expecting semicolon ";"', 3)
    assert isinstance(err, NetInfoError)
    assert str(err) == 'Expecting semicolon ";" at line 3'
    assert (err.reason, err.line) == ('Expecting semicolon ";"', 3)


# -- golden nidump output (§2.2) ------------------------------------------------------------

U = [f"user{i:05d}" for i in range(1, 21)]

SAMPLES: dict[str, list] = {
    "passwd": [
        [("name", ["root"]), ("passwd", ["*"]), ("uid", ["0"]), ("gid", ["0"]),
         ("change", ["0"]), ("expire", ["0"]), ("realname", ["System Administrator"]),
         ("home", ["/var/root"]), ("shell", ["/bin/tcsh"])],
        [("name", ["bob"]), ("passwd", ["XyZ12abcDEF34"]), ("uid", ["501"]),
         ("gid", ["20"]), ("realname", ["Bob Smith"]), ("home", ["/Users/bob"]),
         ("shell", ["/bin/tcsh"]), ("_writers_passwd", ["bob"]), ("picture", ["p.tif"])],
        [("uid", ["7"])],
        [("name", ["daemon", "alias"]), ("uid", ["1"]), ("gid", ["1"]), ("class", ["staff"]),
         ("change", []), ("expire", ["5"]), ("shell", ["/usr/bin/false", "/bin/sh"])],
        [("name", []), ("uid", ["9"])],
    ],
    "group": [
        [("name", ["wheel"]), ("passwd", ["*"]), ("gid", ["0"]), ("users", ["root"])],
        [("name", ["eng"]), ("gid", ["600"]), ("users", ["alice", "bob"])],
        [("name", ["nogroup"]), ("passwd", ["*"]), ("gid", ["-1"])],
        [("gid", ["5"])],
    ],
    "hosts": [
        [("name", ["localhost"]), ("ip_address", ["127.0.0.1"])],
        [("name", ["fileserver", "fs"]), ("ip_address", ["10.0.0.5"])],
        [("name", ["gw", "gateway"]), ("ip_address", ["10.0.0.1", "192.168.1.1"])],
        [("name", ["printer"]), ("en_address", ["0:1:2:3:4:5"])],
        [("ip_address", ["10.0.0.9"])],
    ],
    "ethers": [
        [("name", ["fileserver", "fs"]), ("en_address", ["0:0:f:0:7:5a"]),
         ("ip_address", ["10.0.0.5"])],
        [("name", ["gw"])],
        [("en_address", ["8:0:20:1:2:3"])],
    ],
    "networks": [
        [("name", ["loopback"]), ("address", ["127"])],
        [("name", ["eng-net", "engineering", "eng"]), ("address", ["10.1"])],
        [("address", ["10.2"])],
    ],
    "protocols": [
        [("name", ["ip", "IP"]), ("number", ["0"])],
        [("name", ["icmp", "ICMP"]), ("number", ["1"])],
        [("name", ["xns-idp"]), ("number", ["22"])],
    ],
    "rpc": [
        [("name", ["portmapper", "portmap", "sunrpc"]), ("number", ["100000"])],
        [("name", ["netinfo"]), ("number", ["200100000"])],
    ],
    "services": [
        [("name", ["ftp"]), ("port", ["21"]), ("protocol", ["tcp", "udp"])],
        [("name", ["smtp", "mail"]), ("port", ["25"]), ("protocol", ["tcp"])],
        [("name", ["weird"])],
    ],
    "aliases": [
        [("name", ["staff"]), ("members", ["alice", "bob"])],
        [("name", ["nobody-list"]), ("members", [])],
        [("name", ["nomembers"])],
        [("name", ["everyone"]), ("members", U)],
        [("name", ["x"]), ("members", ["a" * 68, "y"])],
        [("name", ["n" * 70]), ("members", ["m"])],
        [("members", ["orphan"])],
    ],
    "printcap": [
        [("name", ["lp2"]), ("rm", ["printhost"]), ("rp", ["lp2"]),
         ("sd", ["/var/spool/lpd/lp2"])],
        [("name", ["lp", "local"]), ("lp", ["/dev/lp"]), ("sh", []), ("mx", ["#0"]),
         ("br", ["#9600"]), ("sd", ["/var/spool/lpd"])],
        [("aa", ["x" * 27, "ignored"]), ("name", ["big"]), ("bb", ["y" * 28]),
         ("cc", ["zz"]), ("name", ["second-name-prop"]), ("dd", []), ("ee", [""])],
        [("rm", ["nameless"])],
    ],
    "fstab": [
        [("name", ["fs:/export/home"]), ("dir", ["/Network/Servers/"]), ("vfstype", ["nfs"]),
         ("opts", ["net", "rw"]), ("passno", ["0"]), ("dump_freq", ["0"])],
        [("name", ["/dev/disk0s2"]), ("dir", ["/"]), ("opts", [])],
        [("name", ["/dev/disk1"]), ("dir", ["/Volumes/x"]), ("vfstype", ["hfs"]),
         ("opts", ["ro"]), ("freq", ["1"]), ("dump_freq", ["7"]), ("passno", ["2"])],
        [("name", ["srv:/a"])],
        [("name", ["x"]), ("dir", ["/x"]), ("opts", [""])],
    ],
    "exports": [
        [("name", ["/export/home"]), ("opts", ["ro", "maproot=nobody"]),
         ("clients", ["client1", "client2"])],
        [("name", ["/usr", "/usr/local"]), ("opts", []), ("clients", [])],
        [("name", ["/x"])],
        [("name", ["/y"]), ("clients", ["h"])],
    ],
    "bootparams": [
        [("name", ["client1"]), ("bootparams", ["root=server:/export/root/client1",
                                                "swap=server:/export/swap/client1",
                                                "dump=server:/export/dump/client1"])],
        [("name", ["c2"]), ("bootparams", ["root=s:/r"])],
        [("name", ["c3"]), ("bootparams", [])],
        [("bootparams", ["root=s:/r"])],
    ],
    "bootptab": [
        [("name", ["host1"]), ("en_address", ["0:5:2:a:b:c"]), ("ip_address", ["10.0.0.7"]),
         ("bootfile", ["mach_kernel"])],
        [("name", ["host2"])],
        [("ip_address", ["10.0.0.8"])],
    ],
    "resolv.conf": [
        [("domain", ["example.com"]), ("search", ["example.com", "corp.example.com"]),
         ("nameserver", ["10.0.0.2", "10.0.0.3"])],
    ],
    "mountmaps": [
        [("name", ["auto.home", "home"]), ("dir", ["/home"]), ("opts", ["rw", "soft"])],
        [("name", ["auto.net"]), ("empty", []), ("name", ["second"])],
        [("dir", ["/nameless"])],
        [("name", ["bare"])],
    ],
}


def test_every_nidump_format_has_a_sample():
    assert set(SAMPLES) == set(NIDUMP_FORMATS)


@pytest.mark.parametrize("fmt", NIDUMP_FORMATS)
def test_golden_output(fmt):
    assert FORMATS[fmt].to_text(SAMPLES[fmt]) == golden(f"{fmt}.txt")


def test_empty_tables_print_nothing_but_the_bootptab_header():
    for fmt in NIDUMP_FORMATS:
        expected = "/private/tftpboot:/\nmach\n%%\n" if fmt == "bootptab" else ""
        assert FORMATS[fmt].to_text([]) == expected


# Spec vectors (§8 acceptance scenarios).

def test_a1_passwd_line():
    rec = [("name", ["bob"]), ("uid", ["501"]), ("gid", ["20"]), ("realname", ["Bob Smith"]),
           ("home", ["/Users/bob"]), ("shell", ["/bin/tcsh"]), ("passwd", ["<pw>"])]
    assert FORMATS["passwd"].to_text([rec]) == \
        "bob:<pw>:501:20::0:0:Bob Smith:/Users/bob:/bin/tcsh\n"


def test_a4_group_line():
    rec = [("name", ["eng"]), ("gid", ["600"]), ("users", ["alice", "bob"])]
    assert FORMATS["group"].to_text([rec]) == "eng::600:alice,bob\n"


def test_a5_hosts_both_ways():
    rec = [("name", ["fileserver", "fs"]), ("ip_address", ["10.0.0.5"])]
    assert FORMATS["hosts"].to_text([rec]) == "10.0.0.5\tfileserver fs\n"
    assert load("hosts", "10.0.0.5 fileserver fs\n") == Loaded(
        [[("ip_address", ["10.0.0.5"]), ("name", ["fileserver", "fs"])]], [])


def test_a6_fstab_line():
    rec = [("name", ["fs:/export/home"]), ("vfstype", ["nfs"]), ("dir", ["/Network/Servers/"]),
           ("opts", ["net", "rw"]), ("passno", ["0"]), ("dump_freq", ["0"])]
    assert FORMATS["fstab"].to_text([rec]) == \
        "fs:/export/home /Network/Servers/ nfs net,rw 0 0\n"


def test_a7_aliases_line():
    rec = [("name", ["staff"]), ("members", ["alice", "bob"])]
    assert FORMATS["aliases"].to_text([rec]) == "staff: alice,bob\n"


def test_resolv_conf_needs_domain_and_nameserver():
    to_text = FORMATS["resolv.conf"].to_text
    assert to_text([[("domain", ["a"])]]) == ""
    assert to_text([[("nameserver", ["1.2.3.4"])]]) == ""
    assert to_text([[("domain", ["a"]), ("nameserver", [])]]) == ""
    assert to_text([[("domain", ["a"]), ("search", []), ("nameserver", ["1.2.3.4"])]]) == \
        "domain a\nnameserver 1.2.3.4\n"


# -- raw format (§2.3, §2.4) ----------------------------------------------------------------

USERS_TREE = RawNode([("name", ["users"]), ("_writers", [])], [
    RawNode([("name", ["root"]), ("uid", ["0"]), ("shell", ["/bin/tcsh"])]),
    RawNode([("name", ["nobody", "nobody2"])]),
])

NESTED_TREE = RawNode([("master", ["localhost/local"]), ("trusted_networks", [])], [
    RawNode([("name", ["users"])], [
        RawNode([("name", ['say "hi"']), ("path", ["C:\\dir"])]),
    ]),
    RawNode([("name", ["machines"])]),
])


def test_raw_golden_spec_example():
    assert raw_to_text(USERS_TREE) == golden("users.raw")
    assert raw_from_text(golden("users.raw")) == USERS_TREE


def test_raw_golden_nested_quotes_and_bare_backslash():
    # [369] escapes only '"'; a backslash is printed bare (§2.3) ...
    assert raw_to_text(NESTED_TREE) == golden("nested.raw")
    # ... so the tolerant parser drops it on the way back (§2.4): the original's loss.
    back = raw_from_text(golden("nested.raw"))
    assert back.children[0].children[0].props[1] == ("path", ["C:dir"])
    assert raw_to_text(NESTED_TREE, escape_backslashes=True).count("C:\\\\dir") == 1
    assert raw_from_text(raw_to_text(NESTED_TREE, escape_backslashes=True)) == NESTED_TREE


def test_raw_golden_empty_child():
    tree = RawNode([], [RawNode()])
    assert raw_to_text(tree) == golden("empty-child.raw")
    assert raw_from_text(golden("empty-child.raw")) == tree


def test_raw_single_directory():
    assert raw_to_text(RawNode()) == "{\n}\n"
    assert raw_to_text(RawNode([("k", ["a", "b", "c"])])) == \
        '{\n  "k" = ( "a", "b", "c" );\n}\n'


def test_raw_very_deep_tree_prints():
    node = RawNode([("n", ["leaf"])])
    for _ in range(3000):
        node = RawNode([], [node])
    text = raw_to_text(node)
    assert text.count("CHILDREN = (") == 3000


@pytest.mark.parametrize("text,expected", [
    # Braces around the top level are optional; bare key = value; lines are valid.
    ("name = users;\n_writers = ( );\n", RawNode([("name", ["users"]), ("_writers", [])])),
    ("", RawNode()),
    ("{ }", RawNode()),
    # Words and quoted strings mix; backslash escapes inside quotes only.
    ('"a b" = ( x, "y\\"z", "\\\\" );', RawNode([("a b", ["x", 'y"z', "\\"])])),
    ('k = a\\b;', RawNode([("k", ["a\\b"])])),
    # A bare word does not end at '=', but does at ';' and ','.
    ("k = a=b;", RawNode([("k", ["a=b"])])),
    # CHILDREN: parentheses, braces and the final ';' are optional.
    ("CHILDREN = { a = b; }, { c = d; };",
     RawNode([], [RawNode([("a", ["b"])]), RawNode([("c", ["d"])])])),
    ("CHILDREN = ( a = b; , c = d; )",
     RawNode([], [RawNode([("a", ["b"])]), RawNode([("c", ["d"])])])),
    ("CHILDREN = ( )", RawNode()),
    ("{ CHILDREN = ( { x = y; } ) }", RawNode([], [RawNode([("x", ["y"])])])),
    # Properties may follow children; two CHILDREN clauses add up.
    ("CHILDREN = ({a = b;}); k = v; CHILDREN = ({c = d;});",
     RawNode([("k", ["v"])], [RawNode([("a", ["b"])]), RawNode([("c", ["d"])])])),
    # A quoted "CHILDREN" is an ordinary key.
    ('"CHILDREN" = ( "x" );', RawNode([("CHILDREN", ["x"])])),
    # A missing closing brace at the end is tolerated.
    ("{ a = b;", RawNode([("a", ["b"])])),
    # Newlines inside quoted strings are kept.
    ('k = "two\nlines";', RawNode([("k", ["two\nlines"])])),
])
def test_raw_tolerant_grammar(text, expected):
    assert raw_from_text(text) == expected


@pytest.mark.parametrize("text,message", [
    ("a=b;", 'Expecting equal "=" at line 1'),
    ("a = b", 'Expecting semicolon ";" at line 1'),
    ("a = b\nc = d;", 'Expecting semicolon ";" at line 2'),
    ("a = ( b c );", 'Expecting right paren ")" at line 1'),
    ("a = ( b, );", 'Unexpected token ")" at line 1'),
    ("a = ;", 'Unexpected token ";" at line 1'),
    ("a = (b);\n}", 'Unexpected token "}" at line 2'),
    ("\n\n)", 'Unexpected token ")" at line 3'),
    ("(", 'Unexpected token "(" at line 1'),
    ("{ a = b; } }", 'Unexpected token "}" at line 1'),
    ("{ a = b; } c = d;", 'Unexpected token "c" at line 1'),
    ('k = "open\n\n', "Unterminated quoted string at line 1"),
    ('k = "x\\', "Unterminated quoted string at line 1"),
    ("CHILDREN (", 'Expecting equal "=" at line 1'),
    ("CHILDREN = (", "Unexpected end of input at line 1"),
    ("CHILDREN = ( {a = b;}, )", 'Unexpected token ")" at line 1'),
    ("CHILDREN = ;", 'Unexpected token ";" at line 1'),
    ("a = (b", 'Expecting right paren ")" at line 1'),
    ("{ CHILDREN = ( {a = b;}\n x = y; }", 'Expecting right paren ")" at line 2'),
    ("CHILDREN = ( {a = b;}", 'Expecting right paren ")" at line 1'),
])
def test_raw_errors(text, message):
    with pytest.raises(FormatError) as info:
        raw_from_text(text)
    assert str(info.value) == message


def test_raw_nesting_limit_is_a_format_error():
    with pytest.raises(FormatError, match="nested deeper"):
        raw_from_text("{ CHILDREN = ( " * 5000)
    deep = "".join("{ CHILDREN = ( " for _ in range(100)) + "{}" + " ) }" * 100
    assert raw_from_text(deep).children


names = st.text(st.characters(codec="utf-8"), max_size=8) | st.sampled_from(
    ['"', "\\", "{", "}", "(", ")", ",", ";", "=", " ", "CHILDREN", "", "é ü", "\\\"",
     "a\nb", "x\\", '"quoted"'])
props = st.lists(st.tuples(names, st.lists(names, max_size=3)), max_size=4)
trees = st.recursive(st.builds(RawNode, props, st.just([])),
                     lambda kids: st.builds(RawNode, props, st.lists(kids, max_size=3)),
                     max_leaves=12)


@given(trees)
def test_raw_round_trip_lossless_with_escaped_backslashes(tree):
    text = raw_to_text(tree, escape_backslashes=True)
    assert raw_from_text(text) == tree


def _no_backslash(tree: RawNode) -> bool:
    return all("\\" not in k and all("\\" not in v for v in vs) for k, vs in tree.props) \
        and all(_no_backslash(c) for c in tree.children)


@given(trees.filter(_no_backslash))
def test_raw_round_trip_faithful_output(tree):
    text = raw_to_text(tree)
    assert raw_from_text(text) == tree
    assert text.endswith("}\n")


@given(st.text())
def test_raw_arbitrary_text_only_format_error(text):
    try:
        assert isinstance(raw_from_text(text), RawNode)
    except FormatError as err:
        assert err.line is not None and err.line >= 1


@given(st.lists(st.sampled_from(['{', '}', '(', ')', ',', ';', '=', '"', '\\', ' ', '\n',
                                 'CHILDREN', 'a', '"x"', 'k = v;']), max_size=40))
def test_raw_grammar_soup_only_format_error(pieces):
    try:
        raw_from_text("".join(pieces))
    except FormatError:
        pass


@given(trees, st.data())
def test_raw_damaged_dump_only_format_error(tree, data):
    text = raw_to_text(tree)
    i = data.draw(st.integers(0, len(text) - 1))
    try:
        raw_from_text(text[:i] + text[i + 1:])
    except FormatError:
        pass


# -- flat-file parsing (§2.6) ---------------------------------------------------------------

BOB = [("_writers_passwd", ["bob"]), ("change", ["0"]), ("class", [""]), ("expire", ["0"]),
       ("gid", ["20"]), ("home", ["/Users/bob"]), ("name", ["bob"]), ("passwd", ["*"]),
       ("realname", ["Bob Smith"]), ("shell", ["/bin/tcsh"]), ("uid", ["501"])]


def test_passwd_10_fields_sorted_properties():
    # §2.6: _writers_passwd first, then change, class, expire, gid, home, name, ...
    assert load("passwd", "bob:*:501:20::0:0:Bob Smith:/Users/bob:/bin/tcsh\n") == \
        Loaded([BOB], [])


def test_passwd_accepts_7_field_lines_with_a_note():
    text = ("# users\n"
            "bob:*:501:20::0:0:Bob Smith:/Users/bob:/bin/tcsh\n"
            "\n"
            "bob:*:501:20:Bob Smith:/Users/bob:/bin/tcsh\n")
    loaded = load("passwd", text)
    assert loaded.records == [BOB, BOB]
    assert [(n.line, n.kind) for n in loaded.notes] == [(4, "passwd7")]
    assert "7-field" in str(loaded.notes[0]) and str(loaded.notes[0]).startswith("line 4: ")


def test_passwd_bad_lines_are_skipped_with_notes_and_good_ones_kept():
    text = ("+@staff::::::::\n"
            "a:b:c\n"
            "root:*:0:0::0:0:System Administrator:/var/root:/bin/tcsh\n"
            "x:y:1:2:3:4:5:6\n"
            "   \n")
    loaded = load("passwd", text)
    assert [record_key(r) for r in loaded.records] == ["root"]
    assert [(n.line, n.kind) for n in loaded.notes] == \
        [(1, "cookie"), (2, "skipped"), (4, "skipped")]


def test_passwd43_exactly_7_fields():
    loaded = load("passwd.43", "bob:*:501:20:Bob Smith:/Users/bob:/bin/tcsh\n"
                               "bob:*:501:20::0:0:Bob Smith:/Users/bob:/bin/tcsh\n")
    assert loaded.records == [BOB]
    assert [(n.line, n.kind) for n in loaded.notes] == [(2, "skipped")]


def test_passwd_fields_trimmed_and_trailing_separator():
    # Fields are trimmed; a line ending on ':' gets an empty last field (§2.6).
    loaded = load("passwd", " bob : * :501:20::0:0: Bob Smith :/Users/bob:\n")
    assert loaded.notes == []
    rec = dict(loaded.records[0])
    assert rec["name"] == ["bob"] and rec["realname"] == ["Bob Smith"]
    assert rec["shell"] == [""]


def test_group_users_rules():
    # No 4th field: one empty value; an empty 4th field: no values (§2.6).
    recs = load("group", "staff:*:20\nstaff:*:20:\nstaff:*:20: alice , bob\n").records
    assert [dict(r)["users"] for r in recs] == [[""], [], ["alice", "bob"]]
    assert recs[0] == [("gid", ["20"]), ("name", ["staff"]), ("passwd", ["*"]),
                       ("users", [""])]


def test_group_cookie_and_short_lines():
    loaded = load("group", "+:::\nwheel:*\nwheel:*:0:root\n")
    assert [record_key(r) for r in loaded.records] == ["wheel"]
    assert [n.kind for n in loaded.notes] == ["cookie", "skipped"]


def test_hosts_comments_and_separators():
    text = ("# hosts\n"
            "127.0.0.1\tlocalhost   # loopback\n"
            "10.0.0.1 gw\tgateway\n"
            "10.0.0.2\n"
            "10.0.0.3 lonely \n")
    loaded = load("hosts", text)
    assert [r for r in loaded.records] == [
        [("ip_address", ["127.0.0.1"]), ("name", ["localhost"])],
        [("ip_address", ["10.0.0.1"]), ("name", ["gw", "gateway"])],
        # A line that ends on a separator gets an extra empty field (§2.6).
        [("ip_address", ["10.0.0.3"]), ("name", ["lonely", ""])],
    ]
    assert [(n.line, n.kind) for n in loaded.notes] == [(4, "skipped")]


def test_networks_protocols_rpc():
    assert load("networks", "eng-net 10.1 engineering eng\n").records == \
        [[("address", ["10.1"]), ("name", ["eng-net", "engineering", "eng"])]]
    assert load("protocols", "icmp\t1\tICMP\t# internet control\n").records == \
        [[("name", ["icmp", "ICMP"]), ("number", ["1"])]]
    assert load("rpc", "portmapper 100000 portmap sunrpc\n").records == \
        [[("name", ["portmapper", "portmap", "sunrpc"]), ("number", ["100000"])]]


def test_services_lines():
    loaded = load("services", "ftp 21/tcp\nftp 21/udp\nsmtp 25/tcp mail # mail\nbad 21\n")
    assert loaded.records == [
        [("name", ["ftp"]), ("port", ["21"]), ("protocol", ["tcp"])],
        [("name", ["ftp"]), ("port", ["21"]), ("protocol", ["udp"])],
        [("name", ["smtp", "mail"]), ("port", ["25"]), ("protocol", ["tcp"])],
    ]
    assert [(n.line, n.kind) for n in loaded.notes] == [(4, "skipped")]


def test_services_only_first_protocol_dumped():
    rec = [("name", ["domain"]), ("port", ["53"]), ("protocol", ["tcp", "udp"])]
    assert FORMATS["services"].to_text([rec]) == "domain\t53/tcp\t\n"


def test_fstab_writes_dump_freq():
    loaded = load("fstab", "fs:/export/home /Network/Servers/ nfs net,rw 0 0\nshort a b\n")
    assert loaded.records == [[("dir", ["/Network/Servers/"]), ("dump_freq", ["0"]),
                               ("name", ["fs:/export/home"]), ("opts", ["net", "rw"]),
                               ("passno", ["0"]), ("vfstype", ["nfs"])]]
    assert [(n.line, n.kind) for n in loaded.notes] == [(2, "skipped")]


def test_printcap_continuations_and_dropped_capabilities():
    text = ("# printers\n"
            "lp|local|Local Printer:\\\n"
            "\t:lp=/dev/lp:sh:mx#0:\\\n"
            "\t:sd=/var/spool/lpd:\n"
            "remote:rm=printhost:rp=lp:\n")
    assert load("printcap", text) == Loaded([
        [("lp", ["/dev/lp"]), ("name", ["lp|local|Local Printer"]),
         ("sd", ["/var/spool/lpd"])],
        [("name", ["remote"]), ("rm", ["printhost"]), ("rp", ["lp"])],
    ], [])


def test_printcap_dump_then_load_loses_aliases_booleans_numerics():
    # §2.6 known asymmetry.
    text = FORMATS["printcap"].to_text([SAMPLES["printcap"][1]])
    assert load("printcap", text).records == [
        [("lp", ["/dev/lp"]), ("name", ["lp|local"]), ("sd", ["/var/spool/lpd"])]]


def test_bootparams_per_key_properties():
    text = "client1\troot=server:/export/root\t\\\nswap=server:/export/swap\n"
    assert load("bootparams", text).records == [
        [("name", ["client1"]), ("root", ["server:/export/root"]),
         ("swap", ["server:/export/swap"])]]
    # TAB-separated only: blanks do not separate (§2.6).
    assert load("bootparams", "c root=a:/b\n").records == [[("name", ["c root=a:/b"])]]


def test_bootptab_skips_to_the_percent_line():
    text = ("/private/tftpboot:/\nmach\n%%\n# comment\n"
            "host1 1 0:5:2:a:b:c 10.0.0.7 mach_kernel\nbroken line\n")
    loaded = load("bootptab", text)
    assert loaded.records == [[("bootfile", ["mach_kernel"]), ("en_address", ["0:5:2:a:b:c"]),
                               ("htype", ["1"]), ("ip_address", ["10.0.0.7"]),
                               ("name", ["host1"])]]
    assert [(n.line, n.kind) for n in loaded.notes] == [(6, "skipped")]
    assert load("bootptab", "host1 1 a b c\n").records == []
    assert load("bootptab", "host1 1 a b c\n").notes[0].kind == "skipped"
    assert load("bootptab", "") == Loaded([], [])


def test_aliases_continuation_and_include():
    text = "staff: alice,\n\tbob,\n  carol\n# x\nlist: :include:/etc/list\nnocolon\n"
    loaded = load("aliases", text)
    assert loaded.records == [
        [("members", ["alice", "bob", "carol"]), ("name", ["staff"])],
        # Split on every ':', so :include: entries break (§2.6).
        [("members", []), ("name", ["list"])],
    ]
    assert [(n.line, n.kind) for n in loaded.notes] == [(6, "skipped")]


def test_ethers_exports_resolv_parsers():
    assert load("ethers", "0:0:f:0:7:5a fileserver fs\n").records == \
        [[("en_address", ["0:0:f:0:7:5a"]), ("name", ["fileserver", "fs"])]]
    assert load("exports", golden("exports.txt")).records == [
        [("clients", ["client1", "client2"]), ("name", ["/export/home"]),
         ("opts", ["ro", "maproot=nobody"])],
        [("clients", []), ("name", ["/usr", "/usr/local"]), ("opts", [])],
        [("clients", []), ("name", ["/x"]), ("opts", [])],
        [("clients", ["h"]), ("name", ["/y"]), ("opts", [])],
    ]
    assert load("resolv.conf", golden("resolv.conf.txt")).records == [
        [("domain", ["example.com"]), ("nameserver", ["10.0.0.2", "10.0.0.3"]),
         ("search", ["example.com", "corp.example.com"])]]
    assert load("resolv.conf", "; c\noptions ndots:2\n").notes[0].kind == "skipped"


def test_crlf_and_missing_final_newline():
    assert load("hosts", "10.0.0.1 gw").records == \
        [[("ip_address", ["10.0.0.1"]), ("name", ["gw"])]]
    # '\r' is data, as in the original: it stays on the last field.
    assert load("hosts", "10.0.0.1 gw\r\n").records[0][1] == ("name", ["gw\r"])


# -- round trips (data that survives nidump → niload) ---------------------------------------

tok = st.text(string.ascii_letters + string.digits + "._", min_size=1, max_size=10)
opt_tok = st.text(string.ascii_letters + string.digits + "._", max_size=10)
phrase = st.lists(tok, min_size=1, max_size=3).map(" ".join)


@st.composite
def passwd_records(draw, seven=False):
    fields = {"name": draw(tok), "passwd": draw(opt_tok), "uid": draw(opt_tok),
              "gid": draw(opt_tok), "realname": draw(phrase | st.just("")),
              "home": draw(opt_tok), "shell": draw(opt_tok)}
    if seven:
        fields.update({"class": "", "change": "0", "expire": "0"})
    else:
        fields.update({"class": draw(opt_tok), "change": draw(tok), "expire": draw(tok)})
    fields["_writers_passwd"] = fields["name"]
    return [(k, [fields[k]]) for k in sorted(fields)]


def _sorted(props: dict) -> list:
    return [(k, props[k]) for k in sorted(props)]


def nna_records(key):
    return st.builds(lambda n, v, a: _sorted({"name": [n, *a], key: [v]}),
                     tok, tok, st.lists(tok, min_size=1, max_size=3))


ROUND_TRIPS = {
    "passwd": passwd_records(),
    "passwd.43": passwd_records(seven=True),
    "group": st.builds(lambda n, p, g, u: _sorted({"name": [n], "passwd": [p], "gid": [g],
                                                   "users": u}),
                       tok, opt_tok, opt_tok, st.lists(tok, max_size=4)),
    "hosts": st.builds(lambda ip, ns: _sorted({"ip_address": [ip], "name": ns}),
                       tok, st.lists(tok, min_size=1, max_size=4)),
    "ethers": st.builds(lambda en, ns: _sorted({"en_address": [en], "name": ns}),
                        tok, st.lists(tok, min_size=1, max_size=4)),
    "networks": nna_records("address"),
    "protocols": nna_records("number"),
    "rpc": nna_records("number"),
    "services": st.builds(lambda n, p, pr, a: _sorted({"name": [n, *a], "port": [p],
                                                       "protocol": [pr]}),
                          tok, opt_tok, opt_tok, st.lists(tok, min_size=1, max_size=3)),
    "aliases": st.builds(lambda n, m: _sorted({"name": [n], "members": m}),
                         tok, st.lists(tok, min_size=1, max_size=30)),
    "printcap": st.builds(lambda n, caps: _sorted({"name": [n], **{k: [v] for k, v in
                                                                   caps.items()}}),
                          tok, st.dictionaries(tok.filter(lambda k: k != "name"),
                                               opt_tok, max_size=12)),
    "bootptab": st.builds(lambda n, e, i, b: _sorted({"name": [n], "htype": ["1"],
                                                      "en_address": [e], "ip_address": [i],
                                                      "bootfile": [b]}),
                          tok, tok, tok, tok),
    "exports": st.builds(lambda n, o, c: _sorted({"name": n, "opts": o, "clients": c}),
                         st.lists(tok, min_size=1, max_size=3), st.lists(tok, max_size=3),
                         st.lists(tok, max_size=3)),
    "mountmaps": st.builds(lambda ns, ps: [("name", ns), *ps.items()],
                           st.lists(tok, min_size=1, max_size=3),
                           st.dictionaries(tok.filter(lambda k: k != "name"),
                                           st.lists(tok, max_size=3), max_size=4)),
    "resolv.conf": st.builds(lambda d, s, ns: _sorted({"domain": [d], "nameserver": ns,
                                                       **({"search": s} if s else {})}),
                             tok, st.lists(tok, max_size=3),
                             st.lists(tok, min_size=1, max_size=3)),
}


@pytest.mark.parametrize("fmt", sorted(ROUND_TRIPS))
def test_round_trip(fmt):
    spec = FORMATS[fmt]

    @settings(max_examples=60)
    @given(st.lists(ROUND_TRIPS[fmt], max_size=5 if spec.table else 1))
    def check(records):
        loaded = spec.from_text(spec.to_text(records))
        assert loaded.records == records
        assert [n for n in loaded.notes if n.kind != "passwd7"] == []
    check()


def test_every_format_is_round_tripped_or_its_asymmetry_tested():
    # fstab and bootparams do not survive (§2.6 "Known asymmetries"): tested below.
    assert set(ROUND_TRIPS) | {"fstab", "bootparams"} == set(FORMATS)


@given(st.lists(ROUND_TRIPS["passwd.43"], min_size=1, max_size=4))
def test_7_field_dump_loads_through_passwd_with_notes(records):
    loaded = FORMATS["passwd"].from_text(FORMATS["passwd.43"].to_text(records))
    assert loaded.records == records
    assert [n.kind for n in loaded.notes] == ["passwd7"] * len(records)
    assert [n.line for n in loaded.notes] == list(range(1, len(records) + 1))


@given(st.builds(lambda n, d, t, o, f, p: (n, d, t, o, f, p), tok, tok, tok,
                 st.lists(tok, min_size=1, max_size=3), tok, tok))
def test_fstab_freq_becomes_dump_freq(fields):
    # §2.6 known asymmetry: nidump prints freq, niload writes dump_freq.
    n, d, t, o, f, p = fields
    dumped = [("name", [n]), ("dir", [d]), ("vfstype", [t]), ("opts", o), ("freq", [f]),
              ("passno", [p])]
    assert FORMATS["fstab"].from_text(FORMATS["fstab"].to_text([dumped])).records == [
        _sorted({"name": [n], "dir": [d], "vfstype": [t], "opts": o, "dump_freq": [f],
                 "passno": [p]})]


def test_bootparams_dump_does_not_load_back():
    # §2.6 known asymmetry: the dump uses blanks and a bootparams list; niload wants
    # TAB-separated key=value pieces and makes one property per key.
    loaded = load("bootparams", golden("bootparams.txt"))
    assert [record_key(r) for r in loaded.records] == [
        "client1 root=server:/export/root/client1", "c2 root=s:/r"]


def test_trailing_tab_adds_an_empty_alias():
    # "There is always a TAB after the address" (§2.2) + "a line that ends on a separator
    # gets an extra empty field" (§2.6): a record without aliases gains one empty name.
    assert load("networks", golden("networks.txt")).records[0] == \
        [("address", ["127"]), ("name", ["loopback", ""])]


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_arbitrary_text_never_crashes(fmt):
    spec = FORMATS[fmt]

    @settings(max_examples=150)
    @given(st.text() | st.lists(st.sampled_from(
        ["\n", "\t", " ", ":", ",", "#", "+", "/", "\\", "=", "|", "%%", "-", "a", "1",
         "\r", "\\\n", "\n\t"]), max_size=30).map("".join))
    def check(text):
        loaded = spec.from_text(text)
        assert isinstance(loaded, Loaded)
        for rec in loaded.records:
            assert all(isinstance(k, str) and all(isinstance(v, str) for v in vs)
                       for k, vs in rec)
        assert all(isinstance(n, Note) and n.line >= 1 for n in loaded.notes)
        spec.to_text(loaded.records)
    check()


# -- niload update rules (§2.7) -------------------------------------------------------------

def test_record_key():
    assert record_key([("name", ["bob", "robert"])]) == "bob"
    assert record_key([("uid", ["1"])]) is None
    assert record_key([("name", [])]) is None
    assert record_key([("name", [""])]) is None


def test_record_path_escapes_slash_not_equals():
    assert record_path("/mounts", "fs:/export/home") == "/mounts/fs:\\/export\\/home"
    assert record_path("/users", "a=b") == "/users/a=b"


def test_merge_proplists():
    new = [("name", ["bob"]), ("shell", ["/bin/zsh"]), ("users", ["a", "b"])]
    old = [("name", ["bob", "robert"]), ("picture", ["p.tif"]), ("shell", ["/bin/tcsh"]),
           ("users", ["b", "c"])]
    assert merge_proplists(new, old) == [
        ("name", ["bob", "robert"]), ("shell", ["/bin/zsh", "/bin/tcsh"]),
        ("users", ["a", "b", "c"]), ("picture", ["p.tif"])]
    assert new[1] == ("shell", ["/bin/zsh"])  # inputs untouched


def test_merge_old_duplicate_keys_fold_into_the_first():
    assert merge_proplists([("a", ["1"])], [("b", ["x"]), ("b", ["y", "x"])]) == \
        [("a", ["1"]), ("b", ["x", "y"])]


def test_duplicate_input_names_last_wins_or_accumulates():
    # §2.7 rule 8: "ftp 21/tcp" then "ftp 21/udp".
    first, second = load("services", "ftp 21/tcp\nftp 21/udp\n").records
    action, props = plan_update(None, first, merge=False)
    assert action == "create" and props == first
    assert plan_update(props, second, merge=False) == ("write", second)
    action, merged = plan_update(props, second, merge=True)
    assert action == "merge"
    assert dict(merged)["protocol"] == ["udp", "tcp"]
    assert UPDATE_MESSAGES[action].format(path="/services/ftp") == \
        "merging directory /services/ftp"


def test_update_messages():
    assert UPDATE_MESSAGES == {"create": "writing new directory {path}",
                               "write": "writing directory {path}",
                               "merge": "merging directory {path}"}


def test_record_text_for_verbose():
    rec = [("class", [""]), ("name", ["bob"]), ("users", []), ("x", ["a", "b"])]
    assert record_text(rec) == "class: \nname: bob\nusers:\nx: a b\n\n"
