"""nibindd with Debian's system rpcbind (spec §1.5; notes/ecosystem.md §2): it registers
NIBIND (UNSET then SET), re-registers when someone removes the entry, and removes it on
exit. One namespace host with its own rpcbind and a private /run."""

from __future__ import annotations

import shutil
import sys

import pytest

from .netns import Network, available, wait_until

pytestmark = pytest.mark.slow


def test_registration_is_kept_and_removed(tmp_path):
    why = available()
    if why:
        pytest.skip(why)
    if not shutil.which("rpcbind"):
        pytest.skip("Debian's rpcbind is not installed")
    net = Network()
    try:
        h = net.add_host("hostR", 1)
        h.spawn(["unshare", "-m", "sh", "-c",
                 "mount -t tmpfs tmpfs /run && mkdir -p /run/rpcbind && "
                 "(chown _rpc /run/rpcbind 2>/dev/null || true) && exec rpcbind -f -r"],
                tmp_path / "rpcbind.log")
        wait_until(lambda: h.run(["rpcinfo", "-p", "127.0.0.1"]).returncode == 0, 15)
        (tmp_path / "db").mkdir()
        nib = h.spawn([sys.executable, "-m", "netinfo.cli.nibindd", "--dir",
                       str(tmp_path / "db"), "--portmapper", "system"],
                      tmp_path / "nibindd.log", NETINFO_RPCBIND_RECHECK="1")

        def listed() -> bool:
            return " 200100001 " in h.run(["rpcinfo", "-p", "127.0.0.1"]).stdout
        assert wait_until(listed, 20)
        # anyone local may UNSET with rpcbind: nibindd notices and registers again
        assert h.run(["rpcinfo", "-d", "200100001", "1"]).returncode == 0
        assert not listed()
        assert wait_until(listed, 20), (tmp_path / "nibindd.log").read_text()
        # a clean exit removes the registration
        nib.terminate()
        nib.wait(20)
        assert not listed(), h.run(["rpcinfo", "-p", "127.0.0.1"]).stdout
    finally:
        net.close()
