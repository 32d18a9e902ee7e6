"""What rate TCP gets over emulated links: one flow, and four hosts all sending at once.

Run as root::

    sudo python benchmarks/link_rate.py                      # 100 Mbit/s, 400 Mbit/s, 1 Gbit/s
    sudo python benchmarks/link_rate.py --bucket-seconds 0   # tbf's bucket two frames at every rate

For each rate it emulates ``switch:n=2`` and sends 64 MiB (``--mib``) one way over plain TCP
sockets, then ``switch:n=4`` with hosts 0-1 and 2-3 exchanging half as much both ways at once. It
prints the rate each receiver saw. TCP's payload is at most 1448 of 1514 bytes a frame (95.6 % of
the shaped rate).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

_PEER = r"""
import socket, sys, threading, time
me, peer, n, port, peer_port = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
send, recv = sys.argv[6] == "1", sys.argv[7] == "1"
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); srv.bind((me, port)); srv.listen(1)
rate = {}
def receive():
    conn, _ = srv.accept(); got = 0; buf = memoryview(bytearray(1 << 20)); t0 = first = None
    while got < n:
        k = conn.recv_into(buf)
        if not k: break
        if t0 is None: t0, first = time.perf_counter(), k  # the clock starts once the first bytes are in
        got += k
    rate["rx"] = (got - first) * 8 / (time.perf_counter() - t0) / 1e6
    conn.sendall(b"x")
rx = threading.Thread(target=receive)
if recv: rx.start()
if send:
    for _ in range(100):
        try:
            out = socket.create_connection((peer, peer_port)); break
        except OSError:
            time.sleep(0.05)
    data = bytes(1 << 20); sent = 0
    while sent < n:
        out.sendall(data); sent += len(data)
    out.recv(1)
if recv: rx.join(); print(f"{rate['rx']:.1f}")
"""


def _run(spec: str, pairs: dict[int, int], nbytes: int, timeout: float, bucket_seconds: float) -> list[float]:
    """Receivers' rates (Mbit/s) with every host in ``pairs`` sending to its partner."""
    from topologies import from_spec
    from topologies.emulate import Emulation

    with Emulation(from_spec(spec), bucket_seconds=bucket_seconds) as emu:
        procs = {}
        for i in sorted(set(pairs) | set(pairs.values())):
            peer = pairs[i] if i in pairs else next(s for s, d in pairs.items() if d == i)
            argv = [sys.executable, "-c", _PEER, emu.host_address(i), emu.host_address(peer), str(nbytes),
                    str(6000 + i), str(6000 + peer), "1" if i in pairs else "0", "1" if i in pairs.values() else "0"]
            procs[i] = emu.run(i, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, nice=-19)
        outs = {i: p.communicate(timeout=timeout) for i, p in procs.items()}
    for i, p in procs.items():
        if p.returncode != 0:
            raise RuntimeError(f"{spec}: the process of host {i} exited with {p.returncode}: "
                               f"{outs[i][1].strip().splitlines()[-1:] or 'no output'}")
    return [float(outs[j][0]) for j in sorted(set(pairs.values()))]


def main(argv=None) -> int:
    from topologies import emulate, parse_bandwidth

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rates", default="100Mbps,400Mbps,1Gbps", help="comma-separated link rates")
    p.add_argument("--bucket-seconds", type=float, default=None,
                   help=f"tbf's bucket in seconds at the rate (default {emulate._BUCKET_SECONDS:g}; "
                        "0: two full-size frames at every rate)")
    p.add_argument("--mib", type=int, default=64, help="MiB the one flow sends (default 64; each of four: half)")
    p.add_argument("--timeout", type=float, default=300.0)
    args = p.parse_args(argv)
    rates = [r.strip() for r in args.rates.split(",") if r.strip()]
    try:
        for r in rates:
            parse_bandwidth(r)
    except ValueError as err:
        p.error(f"--rates: {err}")
    if args.mib < 2:
        p.error(f"--mib must be at least 2, got {args.mib}")
    bucket = emulate._BUCKET_SECONDS if args.bucket_seconds is None else args.bucket_seconds
    if not 0 <= bucket <= 0.1:
        p.error(f"--bucket-seconds must be within 0..0.1, got {bucket!r}")
    reason = emulate.emulation_unavailable_reason()
    if reason:
        print(f"link_rate: {reason}", file=sys.stderr)
        return 2
    print(f"# TCP over emulated links, tbf bucket {bucket * 1e6:g} us at the rate "
          f"(at least two frames); Mbit/s each receiver saw", flush=True)
    for rate in rates:
        t0 = time.perf_counter()
        try:
            one = _run(f"switch:n=2,bandwidth={rate}", {0: 1}, args.mib << 20, args.timeout, bucket)
            four = _run(f"switch:n=4,bandwidth={rate}", {0: 1, 1: 0, 2: 3, 3: 2}, args.mib << 19, args.timeout,
                        bucket)
        except (RuntimeError, subprocess.TimeoutExpired) as err:
            print(f"link_rate: {err}", file=sys.stderr)
            return 1
        print(f"{rate:>10}  one flow {one[0]:7.1f}   four hosts both ways "
              + " ".join(f"{x:6.1f}" for x in four) + f"   ({time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
