"""``collsim select --format nccl-tuner``: the CSV NCCL's example tuner plugin reads (NCCL_TUNER_CONFIG_FILE)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import topologies
from sim.flow import Network
from sim.params import defaults_for
from sim.select import run_model
from sim.tuner import HEADER, NCCL_ALGORITHMS, SIZE_MAX, TunerRow, format_tuner, parse_tuner, tuner_rows

SIZES = [1 << k for k in range(10, 31, 5)]  # 1 KiB .. 1 GiB


def _net(**kw):
    G = topologies.gpu_cluster(**kw)
    return Network(G, defaults_for(G))


@pytest.fixture(scope="module")
def d4():
    return _net(nodes=1, gpus_per_node=8, nvls=True)


def plugin_choice(rows, collective, nbytes, nnodes, nranks):
    """What the example plugin does: the first row whose collective, size range and communicator match."""
    for r in rows:
        if (r.collective == collective and r.min_bytes <= nbytes <= r.max_bytes
                and r.nnodes in (-1, nnodes) and r.nranks in (-1, nranks)):
            return r.algorithm, r.protocol
    return None


@pytest.mark.parametrize("kw, nranks", [
    (dict(nodes=1, gpus_per_node=8, nvls=True), 8),
    (dict(nodes=2, gpus_per_node=4, nics_per_node=2, fabric="single"), 8),
    (dict(nodes=3, gpus_per_node=2, fabric="single", sharp=True), 6),
])
def test_rows_cover_every_size_once_and_hand_nccl_the_predicted_winner(kw, nranks):
    net = _net(**kw)
    rows = tuner_rows(net, nranks, SIZES, refine=2)
    assert rows[0].min_bytes == 0 and rows[-1].max_bytes == SIZE_MAX
    for a, b in zip(rows, rows[1:], strict=False):
        assert a.min_bytes <= a.max_bytes and b.min_bytes == a.max_bytes + 1
        assert (a.algorithm, a.protocol) != (b.algorithm, b.protocol)
    nnodes = kw["nodes"]
    assert all(r.nnodes == nnodes and r.nranks == nranks and r.channels == -1 for r in rows)
    assert {r.algorithm for r in rows} <= set(NCCL_ALGORITHMS.values())
    names = {v: k for k, v in NCCL_ALGORITHMS.items()}
    for size in SIZES:
        algorithm, protocol = plugin_choice(rows, "allreduce", size, nnodes, nranks)
        predicted = run_model("flow", "allreduce", names[algorithm], net, nranks, size)
        best = min((run_model("flow", "allreduce", a, net, nranks, size) for a in {names[r.algorithm] for r in rows}),
                   key=lambda r: r.time)
        assert predicted.time == pytest.approx(best.time, rel=1e-9)
        assert protocol == best.protocol


def test_the_file_is_what_the_plugin_parses(d4):
    rows = tuner_rows(d4, 8, SIZES, refine=2)
    text = format_tuner(rows, source="test")
    lines = text.splitlines()
    assert lines[0] == f"# {HEADER}"
    data = [line for line in lines if not line.startswith("#")]
    assert len(data) == len(rows)
    for line in data:  # the plugin: 8 to 10 comma-separated fields, lower-case names, under 256 characters
        fields = line.split(",")
        assert len(fields) == 10 and len(line) < 256
        assert fields[0] == "allreduce" and fields[3] in {"tree", "ring", "nvls", "collnet_direct"}
        assert fields[4] in {"ll", "ll128", "simple"}
        assert all(f.lstrip("-").isdigit() for f in fields[1:3] + fields[5:])
    assert parse_tuner(text) == rows
    assert [r.algorithm for r in rows][-1] == "nvls"  # NVLS at large sizes on an NVLS node


def test_only_nccl_algorithms_and_gpu_topologies(d4):
    with pytest.raises(ValueError, match="not an NCCL algorithm"):
        tuner_rows(d4, 8, SIZES, algorithms=["ring", "recursive_doubling"])
    with pytest.raises(ValueError, match="GPU topology"):
        tuner_rows(Network(topologies.switch(4)), 4, SIZES)
    with pytest.raises(ValueError, match="fields"):
        parse_tuner("allreduce,0,10,ring,ll\n")
    with pytest.raises(ValueError, match="unknown"):
        parse_tuner("allreduce,0,10,butterfly,ll,-1,1,8\n")
    assert parse_tuner("allreduce,0,10,ring,ll,-1,1,8\n") == [TunerRow("allreduce", 0, 10, "ring", "ll", -1, 1, 8)]


def test_select_writes_the_tuner_file(tmp_path):
    out = subprocess.run([sys.executable, "-m", "sim", "select", "--topology",
                          "gpu_cluster:nodes=1,gpus_per_node=8,nvls=true", "--sizes", "32KiB:1GiB:x32", "--algorithms", "ring,tree,nvls",
                          "--refine", "1", "--format", "nccl-tuner", "-o", "tuner.csv"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = parse_tuner((tmp_path / "tuner.csv").read_text())
    assert rows and rows[-1].algorithm == "nvls" and rows[-1].max_bytes == SIZE_MAX
    assert "why the winner wins" in out.stdout and "simulated-only" in out.stdout
    assert "runner-up" in out.stdout and "busiest links" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "sim", "select", "--topology", "switch:n=4", "--format", "nccl-tuner",
                          "-o", "t.csv"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "GPU" in bad.stderr and not (tmp_path / "t.csv").exists()
