"""``collsim topology`` end to end, through a subprocess in a temporary folder."""

from __future__ import annotations

import subprocess
import sys

import pytest

import topologies


def collsim(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "sim", "topology", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_summary_draw_and_save(tmp_path):
    out = collsim(
        "fat_tree:k=4,bandwidth=100Gbps,latency=1us", "--draw", "ft.png", "--save", "ft.graphml", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    lines = dict(
        line.split(None, 1) for line in out.stdout.splitlines() if not line.startswith(("saved", "drew"))
    )
    assert lines["topology"] == "fat_tree:k=4"
    assert lines["endpoints"] == "16" and lines["switches"] == "20"
    assert lines["links"] == "48 full-duplex (96 arcs)"
    assert lines["bisection"] == "100 GB/s (800 Gb/s) one way, ranks 0..7 -> 8..15"
    assert lines["diameter"] == "6 hops between endpoints"
    assert (tmp_path / "ft.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    G = topologies.load(tmp_path / "ft.graphml")
    assert G.graph["endpoints"][:2] == ["h0", "h1"] and G.edges["h0", "edge0"]["bandwidth"] == 12.5e9
    # the saved file is itself a spec
    again = collsim("ft.graphml", "--save", "ft.json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[:7] == out.stdout.splitlines()[:7]
    assert topologies.load(tmp_path / "ft.json").number_of_edges() == 96


def test_gpu_cluster_summary(tmp_path):
    out = collsim("gpu_cluster:nodes=4", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "endpoints       32" in out.stdout
    assert "hosts / gpus    0 / 32" in out.stdout
    assert "bisection       800 GB/s (6400 Gb/s) one way" in out.stdout


@pytest.mark.parametrize(
    "spec, rows",
    [
        (
            "gpu_cluster:nodes=2,gpus_per_node=8,nics_per_node=8,bandwidth=200Gbps",
            ["nodes           2 machines, 8 endpoints each", "nics/node       8", "routing         dmodk",
             "injection       200 GB/s (1600 Gb/s) per node"],
        ),
        (
            "gpu_cluster:nodes=3,nics_per_node=2,routing=ecmp",
            ["nodes           3 machines, 8 endpoints each", "nics/node       2", "routing         ecmp",
             "injection       100 GB/s (800 Gb/s) per node"],
        ),
        (
            "cluster:nodes=2,hosts_per_node=2,nics_per_node=2,bandwidth=100Mbps",
            ["nodes           2 machines, 2 endpoints each", "nics/node       2",
             "injection       0.025 GB/s (0.2 Gb/s) per node"],
        ),
        ("torus:dims=4x4", ["nodes           16 machines, 1 endpoint each", "nics/node       1", "routing         dor"]),
        ("fat_tree:k=4", ["routing         dmodk", "injection       12.5 GB/s (100 Gb/s) per node"]),
    ],
)
def test_summary_machines_nics_routing_injection(tmp_path, spec, rows):
    out = collsim(spec, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for row in rows:
        assert row in out.stdout.splitlines(), (row, out.stdout)


def test_list_shows_every_registered_topology(tmp_path):
    out = collsim("--list", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert [line.split(":")[0] for line in out.stdout.splitlines()] == list(topologies.BUILDERS)


@pytest.mark.parametrize(
    "args, message",
    [
        (["fat_tree:k=3"], "collsim: error: fat_tree: k must be an even integer >= 2, got 3"),
        (["bus"], "collsim: error: unknown topology 'bus'; choose from: ring, line, switch, fully_connected"),
        (["torus:dims=4x"], "collsim: error: torus: dims: cannot read '4x' as dimensions"),
        (["ring:bandwidth=10Gbq"], "collsim: error: ring: bandwidth: cannot read '10Gbq' as a bandwidth"),
        (
            ["gpu_cluster:fabric=ib"],
            "collsim: error: gpu_cluster: fabric: cannot use 'ib'; allowed values: rail, fat_tree, single",
        ),
        (
            ["ring", "--save", "r.yaml"],
            "collsim: error: cannot tell the file format of 'r.yaml'; use one of: .json, .graphml",
        ),
        (["ring", "--draw", "nodir/r.png"], "collsim: error: --draw: folder "),
        (["ring", "--draw", "r.txt"], "collsim: error: --draw: cannot write a picture to 'r.txt'"),
        ([], "collsim: error: topology: give a SPEC"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, args, message):
    out = collsim(*args, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith(message) and len(out.stderr.strip().splitlines()) == 1
    assert out.stdout == "" and list(tmp_path.iterdir()) == []
