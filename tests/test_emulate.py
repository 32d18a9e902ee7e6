"""Emulation on network namespaces: lifecycle, cleanup, routes equal to the Router's, real shaping.

Needs root, network namespaces and the tbf qdisc; without them every test here is skipped with the
reason the probe gives (one line), except the refusal test, which checks that reason path itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import topologies
from topologies import emulate
from topologies.emulate import Emulation, emulation_unavailable_reason

REASON = emulation_unavailable_reason()
needs_emulation = pytest.mark.skipif(REASON is not None, reason=f"emulation unavailable: {REASON}")

SINK = """
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5001)); s.listen(1)
print("ready", flush=True)
c, _ = s.accept(); n = 0; t0 = None
while True:
    b = c.recv(1 << 20)
    if not b:
        break
    if t0 is None:
        t0 = time.perf_counter()
    n += len(b)
print(n, n / (time.perf_counter() - t0), flush=True)
"""
SOURCE = """
import socket, sys
s = socket.create_connection((sys.argv[1], 5001)); s.sendall(b"x" * int(sys.argv[2])); s.close()
"""


def _ours() -> set[str]:
    return {n for n in os.listdir("/run/netns") if emulate.PREFIX_PATTERN.match(n)} if os.path.isdir("/run/netns") else set()


def _transfer(emu: Emulation, src: int, dst: int, nbytes: int) -> float:
    """Bytes/s of one TCP transfer from host ``src`` to host ``dst`` inside the emulation."""
    sink = emu.run(dst, [sys.executable, "-c", SINK, emu.host_address(dst)], stdout=subprocess.PIPE, text=True)
    assert sink.stdout.readline().strip() == "ready"
    source = emu.run(src, [sys.executable, "-c", SOURCE, emu.host_address(dst), str(nbytes)])
    assert source.wait(timeout=60) == 0
    received, rate = sink.communicate(timeout=60)[0].split()
    assert int(received) == nbytes
    return float(rate)


@needs_emulation
def test_up_creates_and_exit_removes_everything():
    G = topologies.from_spec("leaf_spine:leaves=2,spines=1,hosts_per_leaf=2,bandwidth=100Mbps")
    before = _ours()
    with Emulation(G) as emu:
        mine = set(emu.namespaces.values())
        assert len(mine) == G.number_of_nodes()
        assert mine <= _ours()
        assert all(n.startswith(emu.prefix + "-") for n in mine)
        state = json.loads(Path(emulate.STATE_DIR, f"{emu.prefix}.json").read_text())
        assert state["namespaces"] == sorted(mine)
        assert [h["address"] for h in state["hosts"]] == [emu.host_address(i) for i in range(4)]
        assert {s["prefix"] for s in emulate.list_emulations() if s["alive"]} >= {emu.prefix}
        # every link end is shaped to its arc's bandwidth
        shaped = {node: emu.qdiscs(node) for node in G.nodes}
        assert sum(len(q) for q in shaped.values()) == G.number_of_edges()
        for link in emu.links:
            assert shaped[link.u][link.ifname_u]["rate"] == int(G.edges[link.u, link.v]["bandwidth"])
            assert shaped[link.v][link.ifname_v]["rate"] == int(G.edges[link.v, link.u]["bandwidth"])
        assert {q["rate"] for q in shaped["leaf0"].values()} == {12_500_000, 25_000_000}  # hosts, uplink
    assert _ours() == before
    assert not Path(emulate.STATE_DIR, f"{emu.prefix}.json").exists()


@needs_emulation
def test_exception_inside_removes_everything():
    G = topologies.from_spec("switch:n=3,bandwidth=100Mbps")
    before = _ours()
    with pytest.raises(RuntimeError, match="boom"):
        with Emulation(G) as emu:
            emu.run(0, ["sleep", "30"])
            raise RuntimeError("boom")
    assert _ours() == before


@needs_emulation
@pytest.mark.parametrize("spec", [
    "switch:n=3,bandwidth=100Mbps",
    "leaf_spine:leaves=2,spines=2,hosts_per_leaf=3,oversubscription=3,bandwidth=100Mbps",
    "ring:n=5,bandwidth=100Mbps",
    "fat_tree:k=4,bandwidth=100Mbps",
    "cluster:nodes=2,hosts_per_node=2,nics_per_node=2,bandwidth=20Mbps,intra_bandwidth=160Mbps",
])
def test_kernel_routes_are_the_routers_paths(spec):
    """``ip route get`` hop by hop in every namespace gives exactly Router.route, ECMP included."""
    G = topologies.from_spec(spec)
    n = len(G.graph["endpoints"])
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    if n > 8:  # fat tree: every pair from two sources and to two destinations (all path shapes)
        pairs = [(i, j) for i, j in pairs if i in (0, 13) or j in (2, 7)]
    router = topologies.Router(G)
    with Emulation(G) as emu:
        traced = emu.traces(pairs)
    for i, j in pairs:
        assert traced[(i, j)] == router.route_ranks(i, j), (i, j)
    if spec.startswith("leaf_spine"):  # two spines: ECMP really spreads pairs over both
        spines = {arc[1] for (i, j) in pairs for arc in traced[(i, j)] if str(arc[1]).startswith("spine")}
        assert len(spines) == 2
    if spec.startswith("cluster"):  # inside a machine through its switch; between machines each host by its own NIC
        assert [v for _, v in traced[(0, 1)]] == ["n0_sw", "n0_h1"]
        assert traced[(0, 3)][0] == ("n0_h0", "n0_nic0") and traced[(1, 2)][0] == ("n0_h1", "n0_nic1")


@needs_emulation
def test_shaping_measured_with_tcp_per_direction():
    """A real TCP transfer runs at the arc's rate (minus TCP/IP header overhead), per direction."""
    G = topologies.new_topology("asymmetric", ["a", "b"])
    G.add_node("a", kind="host")
    G.add_node("b", kind="host")
    G.add_edge("a", "b", bandwidth=50e6 / 8, latency=1e-6)   # 50 Mbit/s a -> b
    G.add_edge("b", "a", bandwidth=150e6 / 8, latency=1e-6)  # 150 Mbit/s b -> a
    with Emulation(G) as emu:
        before = emu.arc_bytes()
        ab = _transfer(emu, 0, 1, 3 << 20)
        after = emu.arc_bytes()
        ba = _transfer(emu, 1, 0, 6 << 20)
    # goodput is the rate times 1448/1514 (headers); one short transfer also pays TCP's slow start
    # and recovery from tbf drops, and on a 2-core VM running the suite it has slow spells (69 % of
    # 50 Mbit/s once, in a full run; 82-95 % alone): allow half below, and hold the directions apart
    assert 0.5 * 50e6 / 8 < ab < 50e6 / 8, ab
    assert 0.5 * 150e6 / 8 < ba < 150e6 / 8, ba
    assert ba > 1.5 * ab, (ab, ba)  # each direction has its own rate
    assert after[("a", "b")] - before[("a", "b")] > 3 << 20  # data with headers went a -> b
    assert after[("b", "a")] - before[("b", "a")] < (3 << 20) // 10  # only acknowledgements came back


@needs_emulation
def test_traffic_follows_the_route_byte_counters():
    """Bytes sent h0 -> h2 on a line cross exactly the arcs of the route, and no others."""
    G = topologies.from_spec("line:n=4,bandwidth=200Mbps")
    with Emulation(G) as emu:
        before = emu.arc_bytes()
        _transfer(emu, 0, 2, 2 << 20)
        after = emu.arc_bytes()
        route = set(emu.route(0, 2))
    for arc in after:
        moved = after[arc] - before[arc]
        if arc in route:
            assert moved > 2 << 20, (arc, moved)
        else:
            assert moved < 200_000, (arc, moved)  # acknowledgements only, or nothing


@needs_emulation
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_crashed_or_terminated_owner(sig, tmp_path):
    """SIGTERM: the owner tears down itself. SIGKILL: leftovers, which ``emulate down`` removes."""
    script = tmp_path / "owner.py"
    script.write_text(
        "import sys, time, topologies\n"
        "from topologies.emulate import Emulation\n"
        "emu = Emulation(topologies.from_spec('switch:n=2,bandwidth=100Mbps')).up()\n"
        "emu.run(0, ['sleep', '60'])\n"
        "print(emu.prefix, flush=True)\n"
        "time.sleep(60)\n"
    )
    before = _ours()
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        prefix = owner.stdout.readline().strip()
        assert emulate.PREFIX_PATTERN.match(prefix + "-"), prefix
        assert {n for n in _ours() if n.startswith(prefix)}
        owner.send_signal(sig)
        owner.wait(timeout=20)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
    if sig == signal.SIGTERM:
        assert owner.returncode == 128 + signal.SIGTERM
        assert _ours() == before
        return
    left = {n for n in _ours() if n.startswith(prefix)}
    assert left, "SIGKILL cannot clean up: the namespaces must still be there"
    status = subprocess.run([sys.executable, "-m", "sim", "emulate", "status"], capture_output=True, text=True, timeout=60)
    assert f"{prefix}  leftover" in status.stdout, status.stdout
    down = subprocess.run([sys.executable, "-m", "sim", "emulate", "down"], capture_output=True, text=True, timeout=60)
    assert down.returncode == 0, down.stderr
    assert not {n for n in _ours() if n.startswith(prefix)}
    assert _ours() == before


@needs_emulation
def test_cli_up_status_down(tmp_path):
    spec = "ring:n=3,bandwidth=100Mbps"

    def collsim(*args):
        return subprocess.run([sys.executable, "-m", "sim", "emulate", *args], capture_output=True, text=True,
                              timeout=60, cwd=tmp_path)

    up = collsim("up", "--topology", spec)
    try:
        assert up.returncode == 0, up.stderr
        prefix = up.stdout.split()[1]
        again = collsim("up", "--topology", spec)
        assert again.returncode == 2 and again.stderr.count("\n") == 1 and "already emulated" in again.stderr
        status = collsim("status", "--topology", spec)
        assert f"{prefix}  persistent" in status.stdout
        for i in range(3):
            assert f"{prefix}-h{i}" in status.stdout and f"10.200.0.{i + 1}" in status.stdout
    finally:
        down = collsim("down", "--topology", spec)
    assert down.returncode == 0, down.stderr
    assert not {n for n in _ours() if n.startswith(prefix)}
    assert "no emulations" in collsim("status", "--topology", spec).stdout


def test_refuses_with_one_line_without_root(monkeypatch, capsys):
    """Not root: up() raises EmulationUnavailable and the CLI prints one line, exit status 2."""
    from sim.cli import main

    monkeypatch.setattr(emulate.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(emulate, "_REASON", [])
    G = topologies.from_spec("switch:n=2,bandwidth=100Mbps")
    with pytest.raises(emulate.EmulationUnavailable, match="needs root"):
        Emulation(G).up()
    assert main(["emulate", "up", "--topology", "switch:n=2,bandwidth=100Mbps"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("collsim: error: emulation needs root")


def test_rejects_what_tbf_cannot_shape():
    with pytest.raises(ValueError, match="above what tc tbf can shape"):
        Emulation(topologies.from_spec("switch:n=2,bandwidth=100Gbps"))
    G = topologies.new_topology("oneway", ["a", "b"])
    G.add_edge("a", "b", bandwidth=1e6, latency=0.0)
    with pytest.raises(ValueError, match="no reverse arc"):
        Emulation(G)
    with pytest.raises(ValueError, match="host_index"):
        Emulation(topologies.from_spec("switch:n=2,bandwidth=100Mbps")).host_address(2)


@needs_emulation
def test_run_needs_the_emulation_up():
    emu = Emulation(topologies.from_spec("switch:n=2,bandwidth=100Mbps"))
    with pytest.raises(RuntimeError, match="not up"):
        emu.run(0, ["true"])
    with emu:
        with pytest.raises(ValueError, match="argv"):
            emu.run(0, "true")
        assert emu.run(1, ["true"]).wait(timeout=10) == 0



def test_a_links_queue_holds_what_every_sending_socket_may_keep_queued():
    """tbf's queue: 10 ms at the rate, and never less than 64 KiB plus the TCP small-queue allowance of every
    socket that may send across the link (a real host's queue does not drop what its own sockets queue)."""
    tsq = int(emulate._NS_SYSCTLS["net.ipv4.tcp_limit_output_bytes"])
    slow = emulate._tbf_params(2.5e6, sockets=3)  # 20 Mbit/s, four hosts
    assert slow["limit"] == (64 << 10) + 3 * tsq
    assert slow["rate"] == "20000000bit"
    fast = emulate._tbf_params(125e6, sockets=3)  # 1 Gbit/s: 10 ms of it is more
    assert fast["limit"] == int(125e6 * 10e-3)
    assert emulate._tbf_params(2.5e6, sockets=7)["limit"] > slow["limit"]


def test_a_links_bucket_holds_a_quarter_millisecond_and_at_least_two_frames():
    """tbf's bucket: a quarter millisecond at the rate (so tbf's timer does not starve a fast link), never less
    than two full-size frames (below 100 Mbit/s, where a quarter millisecond is less)."""
    two_frames = 2 * 1514 + 64
    assert emulate._tbf_params(2.5e6)["burst"] == two_frames  # 20 Mbit/s
    assert emulate._tbf_params(12.5e6)["burst"] == 3125  # 100 Mbit/s: 33 B more than two frames
    assert emulate._tbf_params(50e6)["burst"] == 12500  # 400 Mbit/s
    assert emulate._tbf_params(125e6)["burst"] == 31250  # 1 Gbit/s


def test_bucket_seconds_is_checked_before_anything_is_built():
    G = topologies.from_spec("switch:n=2,bandwidth=100Mbps")
    before = _ours()
    for bad in (-1e-3, 0.5, True, "250us", None):
        with pytest.raises(ValueError, match=r"bucket_seconds must be a number of seconds within 0\.\.0\.1, got"):
            Emulation(G, bucket_seconds=bad)
    assert Emulation(G).bucket_seconds == 250e-6 and Emulation(G, bucket_seconds=0).bucket_seconds == 0.0
    assert emulate._tbf_params(125e6, bucket_seconds=0)["burst"] == 2 * 1514 + 64  # 1 Gbit/s, two frames
    assert _ours() == before


def test_send_buffer_is_checked_before_anything_is_built():
    G = topologies.from_spec("switch:n=2")
    before = _ours()
    for bad in (4095, 0, True, 65536.0, "64K"):
        with pytest.raises(ValueError, match=r"send_buffer must be an int of at least 4096 bytes or None, got"):
            Emulation(G, send_buffer=bad)
    assert _ours() == before


@needs_emulation
def test_send_buffer_caps_what_every_namespaces_sockets_hold_unsent():
    G = topologies.from_spec("switch:n=2,bandwidth=100Mbps")
    read = [sys.executable, "-c", "print(open('/proc/sys/net/ipv4/tcp_wmem').read().split())"]
    with Emulation(G) as emu:
        kernel = emu.run(0, read, stdout=subprocess.PIPE, text=True).communicate(timeout=30)[0].strip()
    with Emulation(G, send_buffer=65536) as emu:
        capped = {emu.run(i, read, stdout=subprocess.PIPE, text=True).communicate(timeout=30)[0].strip() for i in (0, 1)}
    assert capped == {"['4096', '16384', '65536']"}
    assert kernel != "['4096', '16384', '65536']"  # the default leaves the kernel's own
