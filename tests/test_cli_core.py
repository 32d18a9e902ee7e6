"""``collsim verify`` and ``collsim show`` end to end, through a subprocess."""

from __future__ import annotations

import subprocess
import sys

import pytest


def collsim(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sim", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_verify_prints_table_next_to_textbook():
    out = collsim("verify", "--max-ranks", "8")
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines() if line and not line.startswith("#")]
    assert rows[0][:3] == ["algorithm", "ranks", "steps"]
    ring8 = next(r for r in rows if r[0] == "ring" and r[1] == "8")
    assert ring8[2] == ring8[3] == "14" and ring8[4] == ring8[5] == "1.750"
    rh8 = next(r for r in rows if r[0] == "recursive_halving" and r[1] == "8")
    assert rh8[2] == rh8[3] == "6"
    assert "104 schedules proved" in out.stdout  # 4 algorithms x 3 collectives x 8, hierarchical: allreduce x 8


def test_show_ring_picture_and_plot(tmp_path):
    png = tmp_path / "ring.png"
    out = collsim("show", "ring", "--ranks", "4", "--plot", str(png))
    assert out.returncode == 0, out.stderr
    assert "step 0 [reduce_scatter]  0->1 c3+  1->2 c0+  2->3 c1+  3->0 c2+" in out.stdout
    assert out.stdout.splitlines()[-2].strip() == "r0:****  r1:****  r2:****  r3:****"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["show", "bruck"], "unknown algorithm 'bruck'; choose from: ring, tree"),
        (["show", "ring", "--ranks", "0"], "--nranks must be between 1 and 32"),
        (["show", "ring", "--nranks", "33"], "--nranks must be between 1 and 32"),
        (["show", "ring", "--plot", "/nonexistent/x.png"], "--plot: folder '/nonexistent'"),
        (["show", "ring", "--plot", "ring.txt"], "--plot: cannot write a picture"),
        (["verify", "--max-ranks", "1000000"], "--max-ranks must be between 1 and 256"),
        (["verify", "--nranks", "100000"], "--nranks 100000 is above 1024"),
        (["verify", "--ranks", "4,x"], "--nranks must be comma-separated integers"),
        (["show", "ring", "--segments", "2"], "--segments applies only to the tree"),
        (["show", "ring", "--collective", "scan"], "unknown collective 'scan'; choose from: allreduce"),
        (["verify", "--algorithms", "ring,foo"], "unknown algorithm 'foo'"),
        (["verify", "--max-ranks", "0"], "--max-ranks must be between 1 and 256"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_arguments_one_line_exit_2(args, message):
    out = collsim(*args)
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "error" in lines[0]
