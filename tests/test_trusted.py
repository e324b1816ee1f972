"""trusted_networks matching (spec §10.5), pure."""

from __future__ import annotations

import pytest

from netinfo.model import NI_INDEX_NULL, NiId
from netinfo.server.service import SUPERUSER, DirectoryService, classful_network


@pytest.mark.parametrize("value,net", [
    ("10", (10, 0, 0)), ("128.1", (128, 1, 0)), ("192.42.172", (192, 42, 172)),
    ("10.0.2", (10, 0, 2)), ("10.", (10, 0, 0)), ("1.2.3.4", (1, 2, 3)),
    ("x", None), ("", None), ("300", None), ("1.2.3.4.5", None),
])
def test_classful_conversion(value, net):
    assert classful_network(value) == net


def _svc(values):
    svc = DirectoryService()
    svc.proc_write(SUPERUSER, svc.proc_root(SUPERUSER), [("trusted_networks", values)])
    nets, _ = svc.proc_create(SUPERUSER, svc.proc_root(SUPERUSER), [("name", ["networks"])],
                              NI_INDEX_NULL)
    svc.proc_create(SUPERUSER, svc.proc_self(SUPERUSER, NiId(nets.object)),
                    [("name", ["lan"]), ("address", ["192.168.5"])], NI_INDEX_NULL)
    return svc


@pytest.mark.parametrize("values,addr,ok", [
    (["10"], "10.1.2.3", True), (["10"], "11.1.2.3", False),
    (["192.42.172"], "192.42.172.9", True), (["192.42.172"], "192.42.173.9", False),
    (["10.0.2"], "10.200.1.1", True),   # the quirk: second byte 0 matches all of 10/8
    (["128.1"], "128.1.77.1", True), (["128.1"], "128.2.0.1", False),
    (["lan"], "192.168.5.20", True), (["lan"], "192.168.6.20", False),
    ([], "10.1.2.3", False),
])
def test_admits_tcp(values, addr, ok):
    assert _svc(values).admits_tcp(addr, local=False) is ok


def test_absent_admits_everyone_and_local_always_admitted():
    assert DirectoryService().admits_tcp("203.0.113.9", local=False)
    assert _svc([]).admits_tcp("127.0.0.1", local=True)
