"""``collsim simulate / select / plot / draw`` end to end, through a subprocess in a temporary folder."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from collectives import ALGORITHMS
from collectives.tuning import load_table
from sim.results import Record, read_jsonl, write_jsonl

PNG = b"\x89PNG\r\n\x1a\n"


def collsim(*args, cwd):
    return subprocess.run([sys.executable, "-m", "sim", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_simulate_prints_the_table_and_writes_json_and_plot(tmp_path):
    out = collsim("simulate", "--topology", "fat_tree:k=4", "--sizes", "1KiB:16MiB:x16", "--json", "s.jsonl",
                  "--plot", "s.png", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if "size(B)" in line)
    rows = [line.split() for line in lines[header + 1:] if not line.startswith("#")]
    assert len(rows) == 4 * len(ALGORITHMS)  # 4 sizes x every algorithm ('all')
    assert {r[4] for r in rows} == set(ALGORITHMS)
    assert all(len(r) == 9 and float(r[7]) > 0 for r in rows)
    assert "# best algorithm per size:" in out.stdout
    records = read_jsonl(tmp_path / "s.jsonl")
    assert len(records) == len(rows) and {r.source for r in records} == {"simulated"}
    assert {r.topology for r in records} == {"fat_tree:k=4"} and {r.nranks for r in records} == {16}
    assert (tmp_path / "s.png").read_bytes()[:8] == PNG


def test_analytic_model_with_a_params_file(tmp_path):
    (tmp_path / "calib.json").write_text(json.dumps(
        {"format": "collsim-params/1", "alpha": 1e-5, "gamma": 0, "bandwidth_efficiency": 0.5}))
    out = collsim("simulate", "--topology", "switch:n=8", "--model", "analytic", "--params", "calib.json",
                  "--algorithms", "ring", "--sizes", "1GiB", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    row = [line.split() for line in out.stdout.splitlines() if line.strip().startswith("1073741824")][0]
    # 100 Gb/s links at half efficiency: the ring's busbw approaches 6.25 GB/s
    assert 6.0 < float(row[7]) <= 6.25


def test_select_prints_crossovers_and_writes_a_tuning_table(tmp_path):
    out = collsim("select", "--topology", "switch:n=8", "--nranks", "4,8", "--sizes", "1KiB:64MiB:x8",
                  "--algorithms", "ring,recursive_doubling", "-o", "tuning.json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "# crossovers:" in out.stdout and "recursive_doubling -> ring at" in out.stdout
    table = load_table(tmp_path / "tuning.json")
    assert sorted(table.tables) == [4, 8]
    assert table.choose(8, 1024) == "recursive_doubling" and table.choose(8, 1 << 26) == "ring"


def test_plot_overlays_simulated_and_measured(tmp_path):
    sim = collsim("simulate", "--topology", "switch:n=4", "--sizes", "1KiB:1MiB:x32", "--json", "sim.jsonl", cwd=tmp_path)
    assert sim.returncode == 0, sim.stderr
    measured = [Record("measured", "allreduce", r.algorithm, 4, r.size, r.count, "float32", "sum", r.time_us * 1.3, wrong=0)
                for r in read_jsonl(tmp_path / "sim.jsonl")]
    write_jsonl(measured, tmp_path / "measured.jsonl")
    out = collsim("plot", "sim.jsonl", "measured.jsonl", "-o", "curves.png", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "curves.png").read_bytes()[:8] == PNG


def test_draw_writes_the_utilisation_picture(tmp_path):
    out = collsim("draw", "--topology", "fat_tree:k=4", "--algorithm", "ring", "--size", "4MiB", "-o", "links.png", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "bottleneck links" in out.stdout
    assert (tmp_path / "links.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize("args, message", [
    (["simulate", "--topology", "fat_tree:k=3"], "--topology"),
    (["simulate", "--topology", "switch:n=4", "--sizes", "1KiB:1MiB:x0"], "--sizes"),
    (["simulate", "--topology", "switch:n=4", "--algorithms", "ring,bogus"], "unknown algorithm 'bogus'"),
    (["simulate", "--topology", "switch:n=4", "--nranks", "5"], "only 4 endpoints"),
    (["simulate", "--topology", "switch:n=4", "--model", "quantum"], "unknown model"),
    (["simulate", "--topology", "switch:n=4", "--params", "missing.json"], "cannot read parameter file"),
    (["simulate", "--topology", "switch:n=4", "--json", "no/such/dir/x.jsonl"], "--json"),
    (["simulate", "--topology", "switch:n=4", "--collective", "alltoall"], "unknown collective"),
    (["select", "--topology", "switch:n=4", "--nranks", "2,x"], "--nranks"),
    (["plot", "nothing.jsonl", "-o", "x.png"], "cannot read nothing.jsonl"),
    (["draw", "--topology", "switch:n=4", "--algorithm", "ring", "--size", "lots", "-o", "x.png"], "--size"),
    (["draw", "--topology", "switch:n=4", "--algorithm", "ring", "--size", "1MiB", "-o", "x.txt"], ".png"),
    (["simulate"], "--topology"),
])
def test_bad_arguments_fail_in_one_line_with_status_2(tmp_path, args, message):
    out = collsim(*args, cwd=tmp_path)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("collsim"), out.stderr
    assert message in lines[0]
    assert "Traceback" not in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing half-created


def _plotted(records, tmp_path, monkeypatch, title=None):
    """Plot ``records`` and return the matplotlib figure that was saved."""
    from matplotlib.figure import Figure

    from sim.plots import plot_curves

    saved = []
    savefig = Figure.savefig

    def keep(self, *args, **kwargs):
        saved.append(self)
        return savefig(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    plot_curves(records, tmp_path / "p.png", title=title)
    (fig,) = saved
    fig.canvas.draw()
    return fig


def _records(source, topology, model):
    return [Record(source, "allreduce", a, 16, size, size // 4, "float32", "sum", t * size / 1024, wrong=0,
                   topology=topology, model=model)
            for a, t in (("ring", 3.0), ("tree", 2.0)) for size in (1024, 1 << 20, 1 << 30)]


def test_plot_labels_sizes_in_binary_units_and_names_the_topology_once(tmp_path, monkeypatch):
    fig = _plotted(_records("simulated", "fat_tree:k=4", "flow"), tmp_path, monkeypatch)
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert {"1 KiB", "1 MiB", "1 GiB"} <= set(ticks), ticks
    assert fig.axes[0].get_xlabel() == "message size"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["ring", "tree"]
    assert "on fat_tree:k=4" in fig._suptitle.get_text()


def test_plot_legend_names_only_what_differs(tmp_path, monkeypatch):
    records = _records("simulated", "switch:n=16", "flow") + _records("measured", "", "")
    fig = _plotted(records, tmp_path, monkeypatch, title="overlay")
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "ring (measured)", "tree (measured)", "ring (simulated: switch:n=16, flow model)",
        "tree (simulated: switch:n=16, flow model)"]
