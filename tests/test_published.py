"""Published nccl-tests data: the copy in the repository, the nccl-tests reader, calibration from it, the benchmark."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from sim.calibrate import Measured, fit_measured, read_measured, read_nccl_tests
from sim.params import load_params
from sim.results import busbw_factor

ROOT = Path(__file__).resolve().parents[1]


def _benchmark():
    spec = importlib.util.spec_from_file_location("published", ROOT / "benchmarks" / "published.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


published = _benchmark()
DATA = published.load()


def test_every_dataset_names_its_source_and_every_point_is_complete():
    assert set(DATA["datasets"]) >= {"D2", "D4", "D7", "D8"}
    for name, ds in DATA["datasets"].items():
        assert ds["source"] and ds["title"] and ds["points"], name
        for p in ds["points"]:
            assert p["collective"] in ("allreduce", "allgather", "reduce_scatter")
            assert p["size"] >= 8 and p["nranks"] >= 2
            assert set(p["candidates"]) <= {"ring", "tree", "nvls", "collnet"}
            assert p.get("time_us") is not None or p.get("busbw") is not None
            if p.get("time_us") and p.get("busbw"):  # the two published columns agree (rounding aside)
                busbw = p["size"] / (p["time_us"] * 1e3) * busbw_factor(p["collective"], p["nranks"])
                assert busbw == pytest.approx(p["busbw"], rel=0.03, abs=0.006)


@pytest.mark.parametrize("prefix", ["", "0: ", "[1,0]<stdout>:"])
def test_nccl_tests_layout_round_trips(tmp_path, prefix):
    points = DATA["datasets"]["D7"]["points"]
    published.write_nccl_tests(points, tmp_path / "raw.txt", hosts=["box0", "box0"])
    text = "".join(prefix + line + "\n" for line in (tmp_path / "raw.txt").read_text().splitlines())
    (tmp_path / "all_reduce_perf.txt").write_text(text)
    m = read_nccl_tests(tmp_path / "all_reduce_perf.txt")
    assert (m.collective, m.nranks, m.nnodes) == ("allreduce", 2, 1)
    assert sorted(m.times) == [p["size"] for p in points]
    for p in points:
        assert m.times[p["size"]] == pytest.approx(p["time_us"] * 1e-6, rel=1e-3)
    assert read_measured(tmp_path / "all_reduce_perf.txt").times == m.times


def test_older_layout_without_root_and_unnamed_ranks(tmp_path):
    (tmp_path / "old.txt").write_text(
        "#                                                     out-of-place                    in-place\n"
        "#       size         count    type   redop     time   algbw   busbw  error     time   algbw   busbw  error\n"
        "     1048576        262144   float     sum    100.0   10.49   18.35  0e+00    101.0   10.38   18.17  0e+00\n"
        "    16777216       4194304   float     sum   1000.0   16.78   29.36  0e+00   1001.0   16.76   29.33  0e+00\n")
    m = read_nccl_tests(tmp_path / "old.txt")
    assert m.nranks == 8  # from busbw / algbw = 2 (n - 1) / n
    assert m.times == {1048576: pytest.approx(100e-6), 16777216: pytest.approx(1000e-6)}
    assert read_nccl_tests(tmp_path / "old.txt", in_place=True).times[1048576] == pytest.approx(101e-6)
    (tmp_path / "empty.txt").write_text("# nothing measured\n")
    with pytest.raises(ValueError, match="no nccl-tests result rows"):
        read_nccl_tests(tmp_path / "empty.txt")


def test_calibrate_from_a_real_layout_file_end_to_end(tmp_path):
    """collsim calibrate --from on D7 written in nccl-tests' layout: fit two sizes, predict the other six."""
    published.write_nccl_tests(DATA["datasets"]["D7"]["points"], tmp_path / "d7.txt", hosts=["box0", "box0"])
    spec = "gpu_cluster:nodes=1,gpus_per_node=2,intra=pcie,pcie_bandwidth=15.75GB/s"
    out = subprocess.run([sys.executable, "-m", "sim", "calibrate", "--from", "d7.txt", "--topology", spec, "--fit",
                          "8KiB,1GiB", "--out", "d7.json"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    params = load_params(tmp_path / "d7.json")
    cal = params.extra["calibration"]
    assert cal["fitted_sizes"] == [8192, 1 << 30] and params.device == "gpu"
    fitted = [p for p in cal["points"] if p["fitted"]]
    assert all(abs(p["error"]) < 1e-3 for p in fitted)  # two terms, two sizes: exact
    assert cal["median_abs_error_unfitted"] < 0.15
    assert cal["bandwidth_factor"] < 0.5  # staged through host memory: a third of PCIe Gen3's nominal rate
    sim = subprocess.run([sys.executable, "-m", "sim", "simulate", "--topology", spec, "--params", "d7.json",
                          "--algorithms", "ring", "--sizes", "128MiB"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert sim.returncode == 0, sim.stderr
    row = [line.split() for line in sim.stdout.splitlines() if line.strip().startswith("134217728")][0]
    assert float(row[7]) == pytest.approx(4.0, rel=0.05)  # the published 4.00 GB/s busbw


def test_fit_recovers_known_factors():
    """Measurements made by the model itself with latency x2 and bandwidth x0.5 are fitted back."""
    import topologies
    from sim.flow import Network
    from sim.params import defaults_for
    from sim.select import run_model

    G = topologies.gpu_cluster(nodes=1, gpus_per_node=4)
    truth = defaults_for(G)
    truth = truth.replace(latency_scale=2.0, link_classes={k: {"bandwidth_efficiency": v["bandwidth_efficiency"] * 0.5}
                                                            for k, v in truth.link_classes.items()})
    net = Network(G, truth)
    sizes = [4096, 1 << 20, 1 << 28]
    times = {s: min(run_model("flow", "allreduce", a, net, 4, s).time for a in ("ring", "tree")) for s in sizes}
    params = fit_measured(G, Measured("allreduce", times, 4), [4096, 1 << 28])
    cal = params.extra["calibration"]
    assert cal["latency_factor"] == pytest.approx(2.0, rel=0.05)
    assert cal["bandwidth_factor"] == pytest.approx(0.5, rel=0.02)
    assert abs(cal["points"][1]["error"]) < 0.05  # the size in between, predicted
    with pytest.raises(ValueError, match="one or two sizes"):
        fit_measured(G, Measured("allreduce", times, 4), [])
    with pytest.raises(ValueError, match="no size"):
        fit_measured(G, Measured("allreduce", times, 4), [12345])


def test_benchmark_on_d4_meets_its_targets_and_picks_nvls_from_2_mib():
    datasets = {"D4": DATA["datasets"]["D4"]}
    report = published.run(datasets, ["nominal"])
    d4 = report["modes"]["nominal"]["datasets"]["D4"]
    assert d4["median_abs_error"] <= published.TARGETS["nominal"]
    assert report["picks"] and all(p["ok"] for p in report["picks"])
    text = published.format_report(report, datasets)
    assert "Median |error| D4 (nominal)" in text and "Algorithm picks on D4" in text


@pytest.mark.parametrize("pcie_bandwidth, busbw", [(15.75e9, 12.0), (7.875e9, 6.0), (3.9375e9, 3.0)])
def test_d7_pcie_layouts_named_in_the_data_give_the_rates_it_states(pcie_bandwidth, busbw):
    """D7's ``checked`` note: x16 per GPU, x8 (or a shared x16 uplink), a shared x8 uplink; none gives 4.0."""
    import topologies
    from sim.flow import Network
    from sim.params import defaults_for
    from sim.select import run_model

    G = topologies.gpu_cluster(nodes=1, gpus_per_node=2, intra="pcie", pcie_bandwidth=pcie_bandwidth)
    r = run_model("flow", "allreduce", "ring", Network(G, defaults_for(G)), 2, 1 << 30)
    assert r.busbw == pytest.approx(busbw, rel=0.02)
    assert abs(r.busbw / 4.00 - 1) > 0.2  # the published 4.00 GB/s is out of reach of every layout
    assert any(f"{busbw:.1f}" in fact for fact in DATA["datasets"]["D7"]["hardware"]["checked"])
