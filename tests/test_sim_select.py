"""Selection of the best algorithm per size, crossovers, and the tuning table the runtime reads."""

from __future__ import annotations

import pytest

import topologies
from collectives.tuning import load_table
from sim.flow import Network
from sim.params import ModelParams
from sim.select import run_model, select, sweep, tuning_table

SIZES = [1 << k for k in range(10, 27, 2)]


@pytest.fixture(scope="module")
def net():
    return Network(topologies.switch(8, bandwidth=12.5e9, latency=1e-6), ModelParams(alpha=5e-6, gamma=1e-10))


@pytest.mark.parametrize("model", ["flow", "analytic"])
def test_small_sizes_go_to_recursive_doubling_large_ones_to_bandwidth_optimal_algorithms(net, model):
    sel = select(sweep(net, 8, SIZES, ["ring", "recursive_halving", "recursive_doubling"], model=model))
    assert sel.best[0][1] == "recursive_doubling"
    # on a non-blocking switch Rabenseifner moves as few bytes as the ring in fewer steps
    assert sel.best[-1][1] == "recursive_halving"
    assert [c.before for c in sel.crossovers][0] == "recursive_doubling"
    for (s0, _, t0), (s1, _, _) in zip(sel.best, sel.best[1:], strict=False):
        assert s0 < s1
        assert t0 == min(r.time for r in sel.results if r.nbytes == s0)


def test_refined_crossover_lies_between_the_swept_sizes_and_is_where_the_winner_flips(net):
    algorithms = ["ring", "recursive_doubling"]
    sel = select(sweep(net, 8, SIZES, algorithms), refine=6, network=net)
    (c,) = sel.crossovers
    assert (c.before, c.after) == ("recursive_doubling", "ring")
    assert c.below < c.at <= c.above
    at = {a: run_model("flow", "allreduce", a, net, 8, c.at).time for a in algorithms}
    assert at["ring"] < at["recursive_doubling"]


def test_tuning_table_round_trips_and_chooses_the_predicted_winner(net, tmp_path):
    selections = [select(sweep(net, p, SIZES, ["ring", "recursive_halving", "recursive_doubling"]), refine=2, network=net)
                  for p in (4, 8)]
    path = tmp_path / "tuning.json"
    tuning_table(selections).save(path)
    table = load_table(path)
    assert sorted(table.tables) == [4, 8]
    assert "switch" in table.source
    for sel in selections:
        for size, algorithm, _ in sel.best:
            assert table.choose(sel.nranks, size) == algorithm


def test_bad_inputs(net):
    with pytest.raises(ValueError, match="unknown model"):
        run_model("magic", "allreduce", "ring", net, 4, 1024)
    with pytest.raises(ValueError, match="no results"):
        select([])
    with pytest.raises(ValueError, match="cannot place 9 ranks"):
        sweep(net, 9, [1024], ["ring"])
    with pytest.raises(ValueError, match="unknown algorithm"):
        sweep(net, 4, [1024], ["ring", "butterfly"])


def test_gpu_selection_names_protocols_and_refines_with_them():
    from sim.params import defaults_for
    from sim.select import label, layout_for

    G = topologies.gpu_cluster(nodes=2, gpus_per_node=4, nics_per_node=2, fabric="single")
    gpu = Network(G, defaults_for(G))
    assert layout_for(gpu, 8).nnodes == 2 and layout_for(Network(topologies.switch(4)), 4) is None
    sel = select(sweep(gpu, 8, [4096, 1 << 28], ["ring", "tree"], protocol="auto"), refine=3, network=gpu)
    assert all(r.protocol in ("ll", "ll128", "simple") for r in sel.results)
    assert all("/" in label(r) for r in sel.results)
    forced = sweep(gpu, 8, [4096], ["ring"], protocol="simple")
    assert forced[0].protocol == "simple"
    with pytest.raises(ValueError, match="unknown protocol"):
        sweep(gpu, 8, [4096], ["ring"], protocol="fast")
