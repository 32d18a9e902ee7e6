"""Records, the nccl-tests table, JSON lines, size sweeps and the parameter file."""

from __future__ import annotations

import json

import pytest

import topologies
from collectives import get_schedule
from sim.flow import Network, simulate
from sim.params import FORMAT, ModelParams, load_params, save_params
from sim.results import (
    Record,
    busbw_factor,
    format_header,
    format_row,
    format_table,
    parse_size,
    parse_sizes,
    read_jsonl,
    write_jsonl,
)


@pytest.mark.parametrize("collective, n, factor", [("allreduce", 8, 1.75), ("reduce_scatter", 8, 0.875), ("allgather", 3, 2 / 3),
                                                   ("allreduce", 1, 0.0)])
def test_busbw_factor_is_nccl_tests(collective, n, factor):
    assert busbw_factor(collective, n) == pytest.approx(factor)


def test_simulated_record_has_the_fields_and_table_columns():
    net = Network(topologies.switch(4), ModelParams(alpha=1e-6, gamma=0))
    res = simulate(get_schedule("allreduce", "ring", 4), net, 1 << 20)
    rec = Record.from_result(res)
    data = rec.to_json()
    for key in ("source", "collective", "algorithm", "nranks", "size", "count", "dtype", "op", "time_us",
                "algbw", "busbw", "wrong", "topology", "model"):
        assert key in data
    assert data["source"] == "simulated" and data["topology"] == "switch:n=4" and data["size"] == 1 << 20
    assert rec.algbw == pytest.approx(res.algbw) and rec.busbw == pytest.approx(res.busbw)
    header = format_header().lstrip("#").split()
    assert header == ["size(B)", "count", "type", "redop", "algorithm", "time(us)", "algbw(GB/s)", "busbw(GB/s)", "#wrong"]
    cells = format_row(rec).split()
    assert cells[:5] == [str(1 << 20), str(1 << 18), "float32", "sum", "ring"] and cells[-1] == "N/A"
    assert float(cells[6]) == pytest.approx(rec.algbw, abs=1e-3)


def test_jsonl_round_trip_and_errors(tmp_path):
    recs = [Record("measured", "allreduce", "ring", 4, 1024 << i, 256 << i, "float32", "sum", 10.0 * (i + 1), wrong=0)
            for i in range(3)]
    path = tmp_path / "m.jsonl"
    assert write_jsonl(recs, path) == 3
    assert read_jsonl(path) == recs
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(recs[0].to_json()) + "\n{not json}\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not a collsim record"):
        read_jsonl(bad)
    (tmp_path / "e.jsonl").write_text("")
    with pytest.raises(ValueError, match="no records"):
        read_jsonl(tmp_path / "e.jsonl")
    with pytest.raises(ValueError, match="source must be one of"):
        Record("guessed", "allreduce", "ring", 4, 1, 1, "float32", "sum", 1.0)
    assert format_table(recs, title="t").splitlines()[0] == "# t"


@pytest.mark.parametrize("text, sizes", [
    ("1KiB:8KiB", [1024, 2048, 4096, 8192]),
    ("1KiB:1GiB:x4", [1 << k for k in range(10, 31, 2)]),
    ("8", [8]),
    ("1MB,1KiB,1KiB", [1024, 10**6]),
    ("128M", [1 << 27]),
])
def test_parse_sizes(text, sizes):
    assert parse_sizes(text) == sizes


@pytest.mark.parametrize("text", ["1KiB:1GiB:x1", "2K:1K", "1QB", "1KiB:1MiB:+4", "a:b:c:d", "0.5B", ""])
def test_parse_sizes_rejects(text):
    with pytest.raises(ValueError, match="bad size"):
        parse_sizes(text)


def test_params_file_round_trip_and_validation(tmp_path):
    p = ModelParams(alpha=3e-6, gamma=1e-10, bandwidth_efficiency=0.9, link_classes={"nvlink": {"bandwidth": 1e11}},
                    extra={"fitted_from": "probes"})
    path = tmp_path / "calib.json"
    save_params(p, path)
    data = json.loads(path.read_text())
    assert data["format"] == FORMAT and data["fitted_from"] == "probes"
    assert load_params(path) == p
    for bad, match in [({"alpha": -1}, "alpha must be"), ({"bandwidth_efficiency": 1.5}, "bandwidth_efficiency must be in"),
                       ({"link_classes": {"x": {"speed": 1}}}, "unknown keys"), ({"format": "other"}, "not a collsim parameter file")]:
        path.write_text(json.dumps({**p.to_json(), **bad}))
        with pytest.raises(ValueError, match=match):
            load_params(path)
    with pytest.raises(ValueError, match="cannot read parameter file"):
        load_params(tmp_path / "missing.json")
    assert parse_size("1GiB") == 1 << 30
