"""READ calls per second over one TCP connection against a real netinfod.

Usage: python bench/bench_read.py [--seconds S] [--json FILE] [--no-fast-path]

Measures, on one connection to a netinfod subprocess on 127.0.0.1 (SQLite store):
  * sequential READs from a raw blocking socket (one call in flight: the server's latency),
  * the same from 4 client processes at once, each with its own connection (summed),
  * sequential READs through the async Client,
  * pipelined READs through the async Client (64 in flight).
Prints a table and the machine's state (CPU count, load, Python).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from netinfo.client.core import Client  # noqa: E402
from netinfo.model import NiId  # noqa: E402
from netinfo.wire import rpc  # noqa: E402
from netinfo.wire.protocol import NETINFO_PROG, NETINFO_VERS, Proc  # noqa: E402


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start_server(directory: str, port: int, extra: tuple[str, ...] = ()) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    p = subprocess.Popen([sys.executable, "-m", "netinfo.cli.netinfod", "--dir", directory,
                          "--bind", "127.0.0.1", "--port", str(port), "-m", "--populate",
                          *extra, "bench"], stderr=subprocess.PIPE, text=True, env=env)
    for line in p.stderr:
        if line.startswith("netinfod: serving"):
            break
    return p


def raw_sequential(port: int, oid: int, seconds: float) -> float:
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    args = struct.pack(">II", oid, 0)
    n = 0
    xid = 1
    end = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < end:
        for _ in range(100):
            xid += 1
            s.sendall(rpc.frame(rpc.encode_call(xid, NETINFO_PROG, NETINFO_VERS, Proc.READ,
                                                args)))
            hdr = b""
            while len(hdr) < 4:
                hdr += s.recv(4 - len(hdr))
            ln = struct.unpack(">I", hdr)[0] & 0x7FFFFFFF
            body = b""
            while len(body) < ln:
                body += s.recv(ln - len(body))
        n += 100
    el = time.perf_counter() - start
    s.close()
    return n / el


def raw_parallel(port: int, oid: int, seconds: float, clients: int) -> float:
    """*clients* processes, each with its own connection and one call in flight."""
    import multiprocessing
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        return sum(pool.starmap(raw_sequential, [(port, oid, seconds)] * clients))


def raw_pipelined(port: int, oid: int, seconds: float, depth: int = 64) -> float:
    """Server capacity: *depth* calls written at once, then their replies read."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    args = struct.pack(">II", oid, 0)
    batch = b"".join(rpc.frame(rpc.encode_call(i, NETINFO_PROG, NETINFO_VERS, Proc.READ, args))
                     for i in range(depth))
    reader = rpc.RecordReader(rpc.MAX_REPLY_RECORD)
    n = 0
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        s.sendall(batch)
        got = 0
        while got < depth:
            got += len(reader.feed(s.recv(1 << 20)))
        n += depth
    el = time.perf_counter() - start
    s.close()
    return n / el


async def client_rates(port: int, oid: int, seconds: float) -> tuple[float, float]:
    c = await Client.connect("127.0.0.1", port, "bench", privileged=False)
    d = NiId(oid, 0)
    n = 0
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        for _ in range(100):
            await c.read(d)
        n += 100
    seq = n / (time.perf_counter() - start)
    n = 0
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        await asyncio.gather(*(c.read(d) for _ in range(64)))
        n += 64
    pipe = n / (time.perf_counter() - start)
    await c.close()
    return seq, pipe


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--no-fast-path", action="store_true",
                    help="run netinfod --no-fast-path (the general path alone)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        port = free_port()
        srv = start_server(d, port, ("--no-fast-path",) if args.no_fast_path else ())
        try:
            async def find():
                c = await Client.connect("127.0.0.1", port, "bench", privileged=False)
                oid = (await c.pathsearch("/users/uid=0")).object
                await c.close()
                return oid
            oid = asyncio.run(find())
            raw = raw_sequential(port, oid, args.seconds)
            raw4 = raw_parallel(port, oid, args.seconds, 4)
            rawp = raw_pipelined(port, oid, args.seconds)
            seq, pipe = asyncio.run(client_rates(port, oid, args.seconds))
        finally:
            srv.terminate()
            srv.wait()
    state = {"cpus": os.cpu_count(), "loadavg": os.getloadavg(),
             "python": platform.python_version(), "machine": platform.machine(),
             "kernel": platform.release()}
    results = {"read_per_s_raw_sequential": round(raw),
               "read_per_s_raw_sequential_4_clients": round(raw4),
               "read_per_s_raw_pipelined_64": round(rawp),
               "read_per_s_client_sequential": round(seq),
               "read_per_s_client_pipelined_64": round(pipe), "machine": state}
    path = "general path" if args.no_fast_path else "short path on"
    print(f"READ over TCP (user root directory, {args.seconds:.0f} s each, {path})")
    print(f"  raw socket, 1 in flight      {raw:10.0f} calls/s")
    print(f"  raw socket, 4 clients, 1 each {raw4:9.0f} calls/s")
    print(f"  raw socket, 64 in flight     {rawp:10.0f} calls/s")
    print(f"  async Client, 1 in flight    {seq:10.0f} calls/s")
    print(f"  async Client, 64 in flight   {pipe:10.0f} calls/s")
    print(f"machine: {state}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
