"""Records, the nccl-tests table, JSON lines, size sweeps and the parameter file."""

from __future__ import annotations

import argparse
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


# ----------------------------------------------------------------------------------------------
# sim.bench: what examples/allreduce.py (torch) and examples/allreduce_mpi.py (MPI) share


def _measured(algorithm, size, time_us, nranks=3, wrong=0, dtype="float32", itemsize=4):
    return Record("measured", "allreduce", algorithm, nranks, size, size // itemsize, dtype, "sum", time_us, wrong=wrong,
                  extra={"backend": "mpi"})


@pytest.mark.parametrize("dtype, shown, wrong", [("float32", "float", 0), ("float64", "double", 5), ("int32", "int32", None),
                                                 ("complex64", "complex64", 0), ("complex128", "complex128", 0)])
def test_bench_table_keeps_the_nccl_tests_columns(dtype, shown, wrong):
    from sim.bench import TYPE_NAMES, WIDTHS

    # the f-strings the two benchmark scripts printed before they shared sim.bench
    header = (f"{'size(B)':>12} {'count':>12} {'type':>8} {'redop':>6} {'algorithm':>18} {'time(us)':>10} "
              f"{'algbw(GB/s)':>11} {'busbw(GB/s)':>11} {'#wrong':>6}")
    assert format_header(WIDTHS, " ") == "#" + header[1:]
    rec = _measured("recursive_doubling", 3 * 40960, 1234.56, nranks=5, wrong=wrong, dtype=dtype)
    want = (f"{rec.size:>12} {rec.count:>12} {shown:>8} {'sum':>6} {'recursive_doubling':>18} {1234.56:>10.1f} "
            f"{rec.algbw:>11.3f} {rec.busbw:>11.3f} {'N/A' if wrong is None else str(wrong):>6}")
    assert format_row(rec, WIDTHS, " ", time_format=".1f", type_names=TYPE_NAMES) == want


def test_bench_summary_best_per_size_against_native_and_avg_busbw():
    from sim.bench import format_summary

    recs = [_measured("ring", 96, 30.0), _measured("tree", 96, 20.0), _measured("native", 96, 40.0),
            _measured("ring", 960, 50.0), _measured("tree", 960, 60.0), _measured("native", 960, 25.0)]
    assert format_summary(recs, ["ring", "tree", "native"], check=True).splitlines() == [
        "#",
        "# Best algorithm per size (time relative to native)",
        "#            96  tree                     20.0 us  x0.50 of native",
        "#           960  ring                     50.0 us  x2.00 of native",
        "#",
        "# Out of bounds values : 0 OK",
        f"# Avg bus bandwidth    : {(96 / 30e3 + 960 / 50e3) / 2 * 4 / 3:<10.5g} ring",
        f"# Avg bus bandwidth    : {(96 / 20e3 + 960 / 60e3) / 2 * 4 / 3:<10.5g} tree",
        f"# Avg bus bandwidth    : {(96 / 40e3 + 960 / 25e3) / 2 * 4 / 3:<10.5g} native",
        "#",
    ]


@pytest.mark.parametrize("algorithms, check, wrongs, best_title, oob", [
    (["ring", "tree"], True, (0, 0), "# Best algorithm per size", "# Out of bounds values : 0 OK"),
    (["native"], True, (0,), None, "# Out of bounds values : 0 OK"),
    (["tree", "native"], True, (2, 5), "# Best algorithm per size (time relative to native)",
     "# Out of bounds values : 7 FAILED"),
    (["ring", "native"], False, (None, None), "# Best algorithm per size (time relative to native)",
     "# Out of bounds values : N/A"),
])
def test_bench_summary_sections(algorithms, check, wrongs, best_title, oob):
    from sim.bench import format_summary

    recs = [_measured(a, 12, 7.0 + i, wrong=w) for i, (a, w) in enumerate(zip(algorithms, wrongs, strict=True))]
    lines = format_summary(recs, algorithms, check=check).splitlines()
    assert (best_title in lines) if best_title else not any(line.startswith("# Best") for line in lines)
    assert not any("of native" in line for line in lines) or "native" in algorithms
    assert oob in lines
    assert [line.split()[-1] for line in lines if line.startswith("# Avg bus bandwidth")] == algorithms


def test_bench_summary_avg_is_nan_for_an_algorithm_without_rows():
    from sim.bench import format_summary

    assert "# Avg bus bandwidth    : nan        tree" in format_summary([_measured("ring", 12, 1.0)], ["ring", "tree"],
                                                                         check=True).splitlines()


@pytest.mark.parametrize("check", [True, False])
def test_bench_run_sweep_prints_the_table_and_writes_the_records(tmp_path, capsys, check):
    from sim.bench import add_arguments, run_sweep

    parser = argparse.ArgumentParser()
    add_arguments(parser, ops=["sum"], dtypes=["float32"], check_help="h")
    path = tmp_path / "m.jsonl"
    args = parser.parse_args(["-b", "2", "-e", "1K", "-f", "3", "--algorithms", "tree,native", "--json", str(path),
                              *([] if check else ["--no-check"])])
    calls = []

    def reference(count):
        calls.append(("reference", count))
        return count

    def measure(algorithm, count, ref):
        calls.append((algorithm, count, ref))
        return (2.0 if algorithm == "native" else 3.0) * count, (None if ref is None else int(algorithm == "tree"))

    recs = run_sweep(args, measure, reference, rank=0, nranks=5, itemsize=4, backend="loop", transport="backend loop")
    sizes = [6, 18, 54, 162, 486]  # 2 is smaller than one element
    counts = [s // 4 for s in sizes]
    want = [c for n in counts for c in ([("reference", n)] if check else []) + [("tree", n, n if check else None),
                                                                                  ("native", n, n if check else None)]]
    assert calls == want
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert lines[0].startswith("# collsim allreduce benchmark: nranks 5 backend loop minBytes 2 maxBytes 1024 step: 3(factor)")
    assert lines[0].endswith(f"validation: {int(check)}")
    rows = [line.split() for line in lines if line.strip()[:1].isdigit()]
    assert [(int(r[0]), r[4]) for r in rows] == [(4 * c, a) for c in counts for a in ("tree", "native")]
    assert [r[-1] for r in rows] == (["1", "0"] * len(counts) if check else ["N/A"] * 2 * len(counts))
    assert ("# Out of bounds values : 5 FAILED" if check else "# Out of bounds values : N/A") in lines
    assert lines[-1] == f"# wrote {2 * len(counts)} records to {path}"
    assert out.err.count(" B done, ") == len(counts)
    data = [json.loads(line) for line in path.read_text().splitlines()]
    assert [list(d) for d in data] == [["source", "collective", "algorithm", "nranks", "size", "count", "dtype", "op",
                                        "time_us", "algbw", "busbw", "wrong", "backend"]] * len(data)
    assert data == [r.to_json() for r in recs]
    assert data[0]["busbw"] == pytest.approx(data[0]["size"] / data[0]["time_us"] / 1e3 * 2 * 4 / 5)


def test_bench_run_sweep_is_silent_off_rank_0(tmp_path, capsys):
    from sim.bench import add_arguments, run_sweep

    parser = argparse.ArgumentParser()
    add_arguments(parser, ops=["sum"], dtypes=["float32"], check_help="h")
    args = parser.parse_args(["-b", "4", "-e", "64", "--json", str(tmp_path / "m.jsonl")])
    recs = run_sweep(args, lambda a, c, r: (1.0, 0), lambda c: None, rank=1, nranks=3, itemsize=4, backend="x",
                     transport="x")
    assert len(recs) == 3 * 5 and capsys.readouterr() == ("", "")
    assert not (tmp_path / "m.jsonl").exists()


@pytest.mark.parametrize("argv, message", [
    (["-b", "1X"], "argument -b/--minbytes: size must look like 8, 64K, 64M or 1G, got '1X'"),
    (["-e", "0"], "argument -e/--maxbytes: size must be positive, got '0'"),
    (["--algorithms", "foo,ring"], "argument --algorithms: unknown algorithm(s) foo; choose from: ring, tree, "
                                   "recursive_halving, recursive_doubling, hierarchical, auto, native"),
    (["--algorithms", ","], "unknown algorithm(s) (none)"),
    (["-b", "64K", "-e", "1K"], "-e/--maxbytes (1024) must be >= -b/--minbytes (65536)"),
    (["-f", "1"], "-f/--stepfactor must be >= 2, got 1"),
    (["-n", "0"], "-n/--iters must be >= 1 and -w/--warmup_iters >= 0"),
    (["-w", "-1"], "-n/--iters must be >= 1 and -w/--warmup_iters >= 0"),
])
def test_bench_arguments_reject_with_a_usage_error(capsys, argv, message):
    from sim.bench import add_arguments, validate_arguments

    parser = argparse.ArgumentParser(prog="bench")
    add_arguments(parser, ops=["sum"], dtypes=["float32"], check_help="h")
    with pytest.raises(SystemExit) as exc:
        validate_arguments(parser, parser.parse_args(argv))
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_bench_argument_defaults_are_nccl_tests_like():
    from sim.bench import add_arguments, size_arg

    parser = argparse.ArgumentParser()
    add_arguments(parser, ops=["sum", "max"], dtypes=["float32", "int8"], check_help="h")
    args = parser.parse_args([])
    assert (args.minbytes, args.maxbytes, args.stepfactor, args.iters, args.warmup_iters) == (16, 16 << 20, 4, 10, 2)
    assert args.algorithms == ["ring", "tree", "recursive_halving", "recursive_doubling", "native"]
    assert (args.op, args.dtype, args.check, args.json) == ("sum", "float32", True, None)
    assert [size_arg(t) for t in ("7", "3K", "5mb", " 1G ")] == [7, 3 << 10, 5 << 20, 1 << 30]
