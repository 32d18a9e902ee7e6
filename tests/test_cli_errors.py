"""The rough edges a newcomer hit, each as the exact command: one-line errors with status 2, or the fix.

Every output path is checked before any work, every size holds at least one element, world sizes
are ``--nranks`` everywhere (``--ranks`` is an alias), pictures take the same file types everywhere,
and the tree's reduce_scatter/allgather are refused by the simulating commands as the runtimes
refuse them.
"""

from __future__ import annotations

import io
import subprocess
import sys
from importlib.metadata import version

import pytest

from sim.results import Progress

JPEG = b"\xff\xd8\xff"


def collsim(*args, cwd):
    return subprocess.run([sys.executable, "-m", "sim", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def unwritable() -> str:
    """A path in a folder nobody may create files in, whatever the user (``/sys`` is sysfs)."""
    try:
        with open("/sys/collsim-probe.png", "ab"):
            pass
    except OSError:
        return "/sys"
    pytest.skip("/sys is writable here")


SWITCH = ["--topology", "switch:n=4"]
DRAW = ["draw", *SWITCH, "--algorithm", "ring", "--size", "1MiB"]


@pytest.mark.parametrize("args, message", [
    # output paths, checked before any work
    (["simulate", *SWITCH, "--json", "{folder}"], "--json: '{folder}' is a folder"),
    (["simulate", *SWITCH, "--plot", "{sys}/x.png"], "--plot: cannot write '{sys}/x.png'"),
    (["simulate", *SWITCH, "--plot", "/nonexistent/x.png"], "--plot: folder '/nonexistent'"),
    (["show", "ring", "--plot", "/nonexistent/x.png"], "--plot: folder '/nonexistent'"),
    (["select", *SWITCH, "-o", "{sys}/t.json"], "-o/--output: cannot write '{sys}/t.json'"),
    ([*DRAW, "-o", "{sys}/d.png"], "-o/--output: cannot write '{sys}/d.png'"),
    (["plot", "missing.jsonl", "-o", "{sys}/p.png"], "-o/--output: cannot write"),
    (["simulate", *SWITCH, "--plot", "x.txt"], "--plot: cannot write a picture to 'x.txt'"),
    (["topology", "switch:n=4", "--draw", "{sys}/x.png"], "--draw: cannot write '{sys}/x.png'"),
    (["topology", "switch:n=4", "--save", "{sys}/x.json"], "--save: cannot write '{sys}/x.json'"),
    # one rule for sizes: at least one element
    (["simulate", *SWITCH, "--sizes", "3"], "--sizes: size 3 B is smaller than one float32 element (4 B)"),
    (["simulate", *SWITCH, "--sizes", "0"], "--sizes: size 0 B is smaller than one float32 element"),
    (["simulate", *SWITCH, "--sizes", "7", "--dtype", "float64"], "smaller than one float64 element (8 B)"),
    (["select", *SWITCH, "--sizes", "0:1MiB"], "--sizes: size 0 B is smaller than one float32 element"),
    ([*DRAW[:-2], "--size", "2", "-o", "d.png"], "--size: size 2 B is smaller than one float32 element"),
    # limits
    (["verify", "--max-ranks", "1000000"], "--max-ranks must be between 1 and 256"),
    (["verify", "--nranks", "100000"], "--nranks 100000 is above 1024"),
    # the tree's halves are phases of its allreduce: refused as the runtimes refuse them
    (["simulate", *SWITCH, "--collective", "reduce_scatter", "--algorithms", "tree"],
     "tree's reduce_scatter is a phase of its allreduce"),
    (["select", *SWITCH, "--collective", "allgather", "--algorithms", "ring,tree"],
     "tree's allgather is a phase of its allreduce"),
    ([*DRAW[:3], "--collective", "reduce_scatter", "--algorithm", "tree", "--size", "1MiB", "-o", "d.png"],
     "--algorithm: tree's reduce_scatter is a phase"),
    ([*DRAW[:3], "--algorithm", "all", "--size", "1MiB", "-o", "d.png"], "--algorithm: give one algorithm"),
])
def test_bad_input_is_one_line_and_status_2_before_any_work(tmp_path, args, message):
    sys_dir = unwritable() if any("{sys}" in a for a in args) else "/sys"
    (tmp_path / "out").mkdir()
    fill = {"sys": sys_dir, "folder": str(tmp_path / "out")}
    out = collsim(*(a.format(**fill) for a in args), cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("collsim: error: "), out.stderr
    assert message.format(**fill) in lines[0]
    assert out.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing written, nothing left behind
    assert not list((tmp_path / "out").iterdir())


def test_no_arguments_prints_the_usage_and_exits_2(tmp_path):
    out = collsim(cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith("usage: collsim") and "simulate" in out.stderr and "verify" in out.stderr


def test_version_comes_from_the_package_metadata(tmp_path):
    out = collsim("--version", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"collsim {version('collsim')}"


@pytest.mark.parametrize("option", ["--nranks", "--ranks"])
def test_world_size_is_nranks_everywhere_with_ranks_as_alias(tmp_path, option):
    show = collsim("show", "ring", option, "3", cwd=tmp_path)
    assert show.returncode == 0, show.stderr
    assert show.stdout.startswith("ring allreduce on 3 ranks")
    sim = collsim("simulate", *SWITCH, option, "3", "--algorithms", "ring", "--sizes", "1MiB", cwd=tmp_path)
    assert sim.returncode == 0, sim.stderr
    assert "(3 ranks)" in sim.stdout
    sel = collsim("select", *SWITCH, option, "2,3", "--algorithms", "ring,tree", "--sizes", "1KiB,1MiB", cwd=tmp_path)
    assert sel.returncode == 0, sel.stderr
    assert "(2 ranks)" in sel.stdout and "(3 ranks)" in sel.stdout
    ver = collsim("verify", "--max-ranks", "3", "--algorithms", "ring", option, "3", cwd=tmp_path)
    assert ver.returncode == 0, ver.stderr
    assert [line.split()[:2] for line in ver.stdout.splitlines()[2:]] == [["ring", "3"]]


def test_pictures_take_the_same_file_types_everywhere(tmp_path):
    """``topology --draw x.jpg`` worked while ``simulate --plot x.jpg`` was refused."""
    sim = collsim("simulate", *SWITCH, "--algorithms", "ring", "--sizes", "1KiB,1MiB", "--plot", "s.jpg", cwd=tmp_path)
    assert sim.returncode == 0, sim.stderr
    assert (tmp_path / "s.jpg").read_bytes()[:3] == JPEG
    show = collsim("show", "tree", "--plot", "t.svg", cwd=tmp_path)
    assert show.returncode == 0, show.stderr
    assert b"<svg" in (tmp_path / "t.svg").read_bytes()[:500]
    topo = collsim("topology", "switch:n=4", "--draw", "t.jpg", cwd=tmp_path)
    assert topo.returncode == 0, topo.stderr
    assert (tmp_path / "t.jpg").read_bytes()[:3] == JPEG


def test_reduce_scatter_all_leaves_out_the_tree_and_verify_says_why(tmp_path):
    sim = collsim("simulate", *SWITCH, "--collective", "reduce_scatter", "--sizes", "1MiB", cwd=tmp_path)
    assert sim.returncode == 0, sim.stderr
    algorithms = {line.split()[4] for line in sim.stdout.splitlines() if line.strip().startswith("1048576")}
    assert "tree" not in algorithms and {"ring", "recursive_halving", "recursive_doubling"} <= algorithms
    ver = collsim("verify", "--max-ranks", "4", "--algorithms", "tree,ring", cwd=tmp_path)
    assert ver.returncode == 0, ver.stderr
    tree = next(line for line in ver.stderr.splitlines() if line.startswith("# tree:"))
    assert tree.startswith("# tree: allreduce proved for p = 1..4; its reduce_scatter and allgather proved only as "
                           "phases of the allreduce")
    assert "# ring: allreduce, reduce_scatter, allgather proved for p = 1..4" in ver.stderr


def test_progress_writes_a_line_every_few_seconds_when_not_a_terminal(monkeypatch):
    """A 167 s sweep with stderr in a file printed nothing; now a plain line every ``every`` seconds."""
    clock = iter(range(0, 1000, 2))  # each reading 2 s later
    stream = io.StringIO()
    bar = Progress(10, "simulate", stream=stream)
    bar._clock = lambda: next(clock)
    bar._started = bar._last = bar._clock()
    with bar:
        for _ in range(10):
            bar.advance("ring 1 MiB")
    lines = stream.getvalue().splitlines()
    assert lines and all(line.startswith("simulate: ") and line.endswith(" s ring 1 MiB") for line in lines)
    assert lines[0] == "simulate: 3/10 (30%), 6 s ring 1 MiB"  # the first reading 5 s or more after the start
    assert len(lines) == 3
    silent = io.StringIO()
    with Progress(10, "simulate", stream=silent, enabled=False) as off:
        for _ in range(10):
            off.advance()
    assert silent.getvalue() == ""
