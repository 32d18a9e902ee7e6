"""Issue 15's rough edges in topologies, each run as the exact command: one line and exit 2, or the fix."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

PNG = b"\x89PNG\r\n\x1a\n"


def collsim(*args, cwd, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "sim", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


def one_line_error(out, message):
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert out.stderr.startswith("collsim: error: ") and message in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "content, message",
    [
        ("garbage<<<", "cannot read topology file 'g.graphml': not GraphML (the XML does not parse"),
        ("", "cannot read topology file 'g.graphml': not GraphML"),
        ("<a/>", "cannot read topology file 'g.graphml': file not successfully read as graphml"),
    ],
)
def test_garbage_graphml(tmp_path, content, message):
    (tmp_path / "g.graphml").write_text(content)
    one_line_error(collsim("topology", "g.graphml", cwd=tmp_path), message)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{}", "cannot read topology file 'g.json': not a node-link topology: the JSON object needs a list 'nodes' "
               "and a list 'edges'"),
        ('{"nodes": []}', "keys found: 'nodes'"),
        ("[1, 2]", "not a node-link topology"),
        ("{bad", "cannot read topology file 'g.json': not JSON"),
        ('{"nodes": [{"x": 1}], "edges": []}', "nodes[0] must be an object with an 'id'"),
        ('{"nodes": [{"id": "a"}], "edges": [{"source": "a"}]}', "edges[0] must be an object with 'source' and 'target'"),
    ],
)
def test_json_without_nodes_says_what_is_missing(tmp_path, content, message):
    (tmp_path / "g.json").write_text(content)
    one_line_error(collsim("topology", "g.json", cwd=tmp_path), message)


@pytest.mark.parametrize(
    "args, message",
    [
        (["topology", "fat_tree:k=4,bandwidth=100"], "fat_tree: bandwidth: cannot read '100' as a bandwidth: a number needs a unit"),
        (["topology", "ring:latency=1"], "ring: latency: cannot read '1' as a time: a number needs a unit; units: s, ms, us"),
        (
            ["simulate", "--topology", "fat_tree:k=4,bandwidth=100", "--sizes", "1MiB"],
            "fat_tree: bandwidth: cannot read '100' as a bandwidth",
        ),
    ],
)
def test_rate_without_unit_is_refused_naming_the_units(tmp_path, args, message):
    out = collsim(*args, cwd=tmp_path)
    one_line_error(out, message)
    if "bandwidth" in message:
        assert "units: bps, b/s, bit/s (bits) or Bps, B/s, byte/s, bytes/s" in out.stderr


def test_big_fat_tree_draws_a_tier_summary_fast(tmp_path):
    start = time.perf_counter()
    out = collsim("topology", "fat_tree:k=32", "--draw", "ft.png", cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "drew ft.png (a tier summary: 9472 nodes are too many to draw one by one" in out.stdout
    assert (tmp_path / "ft.png").read_bytes()[:8] == PNG
    assert time.perf_counter() - start < 120  # summary + bisection + a small picture; the 2-core CI is shared


def test_drawing_a_large_fabric_is_fast():
    import os
    import tempfile

    import topologies

    G = topologies.fat_tree(32)
    start = time.perf_counter()
    topologies.draw(G, os.path.join(tempfile.mkdtemp(), "ft.png"))
    assert time.perf_counter() - start < 10  # it took 9 s (of a grey block) before


def test_dragonfly_tree_marks_no_bottleneck_when_nothing_saturates(tmp_path):
    # The tree keeps every host link about half busy: none binds, so none is painted red.
    import topologies
    from sim.flow import Network
    from sim.params import ModelParams
    from sim.select import run_model
    from topologies.drawing import bottleneck_arcs

    out = collsim(
        "draw", "--topology", "dragonfly", "--algorithm", "tree", "--size", "64MiB", "-o", "df.png", cwd=tmp_path,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "df.png").read_bytes()[:8] == PNG
    G = topologies.dragonfly()
    result = run_model("flow", "allreduce", "tree", Network(G), 40, 64 * 2**20)
    util = result.utilization_map()
    assert len(result.bottlenecks) > 40 and max(util.values()) < 0.6  # what used to be painted red
    assert bottleneck_arcs(util, result.bottlenecks) == []
    # a ring with nothing but the links to pay for saturates every host link: all of them bind
    bare = ModelParams(alpha=0.0, gamma=0.0, bandwidth_efficiency=1.0)
    ring = run_model("flow", "allreduce", "ring", Network(topologies.switch(8), bare), 8, 64 * 2**20)
    assert max(ring.utilization) > 0.95
    assert set(bottleneck_arcs(ring.utilization_map(), ring.bottlenecks)) == set(ring.bottlenecks)
