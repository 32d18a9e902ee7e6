"""Flows of different steps share links; eager sends start without their receiver.

Hand-computed cases on tiny hand-built schedules, the case of issue 16 (recursive doubling on an
ECMP leaf-spine, where ranks that finish a step early meet late ranks' flows on spine links), and
the lock-step shortcut that keeps large symmetric runs fast. ``tests/test_simgrid_oracle.py`` holds
the same model against SimGrid.
"""

from __future__ import annotations

import numpy as np
import pytest

import sim.flow
import topologies
from collectives import algorithm_params, get_schedule
from collectives.schedule import Schedule, Step
from sim.analytic import predict
from sim.flow import Network, simulate
from sim.params import ModelParams

MB = 1_000_000
NOCOST = ModelParams(alpha=0.0, gamma=0.0)
ISSUE_SPEC = "leaf_spine:leaves=4,spines=4,hosts_per_leaf=4,oversubscription=1,bandwidth=100Gbps,latency=1us,routing=ecmp"


def hand_schedule(nranks: int, steps: list[list[tuple[int, int, int, int]]], nchunks: int) -> Schedule:
    """A schedule from ``[(src, dst, first chunk, chunks), ...]`` per step (copies, allreduce layout)."""

    def make_step(i: int) -> Step:
        src, dst, chunk, count = (np.array(col, dtype=np.int64) for col in zip(*steps[i], strict=True))
        return Step.build(src, dst, chunk, count, False, key=("hand", i), phase="allgather")

    return Schedule("allreduce", "hand", nranks, nchunks, np.zeros(nchunks, dtype=np.int64), len(steps), make_step)


def two_switches(latency: float = 0.0) -> Network:
    """h0, h1 on s0 and h2, h3 on s1; every link 1 GB/s, so s0 -> s1 is the one shared arc."""
    G = topologies.new_topology("two_switches", endpoints=["h0", "h1", "h2", "h3"])
    G.add_nodes_from(G.graph["endpoints"], kind="host")
    G.add_nodes_from(["s0", "s1"], kind="switch")
    for h, s in [("h0", "s0"), ("h1", "s0"), ("h2", "s1"), ("h3", "s1")]:
        topologies.add_link(G, h, s, 1e9, latency)
    topologies.add_link(G, "s0", "s1", 1e9, latency)
    return Network(G, NOCOST)


def test_a_flow_of_the_next_step_shares_the_link_with_a_late_flow():
    """h1 finishes step 0 early and its step-1 flow meets h0's step-0 flow on s0 -> s1.

    Step 0: h0 -> h2 sends 2 MB and h1 -> h3 1 MB, both over s0 -> s1 at 0.5 GB/s: h1's flow ends
    at 2 ms with 1 MB of h0's left. Step 1: h1 -> h3 sends 1 MB from 2 ms, sharing s0 -> s1 with
    the rest of h0's flow: both at 0.5 GB/s, both done at 4 ms. Steps costed one after the other
    would say 3 ms (h0 alone until 3 ms, then h1's second flow alone 2 -> 3 ms).
    """
    schedule = hand_schedule(4, [[(0, 2, 0, 2), (1, 3, 2, 1)], [(1, 3, 2, 1)]], nchunks=3)
    result = simulate(schedule, two_switches(), 3 * MB)
    assert result.time == pytest.approx(4e-3, rel=1e-12)
    assert result.finish == pytest.approx([4e-3, 4e-3, 4e-3, 4e-3], rel=1e-12)
    assert result.utilization.max() <= 1 + 1e-12


def test_flows_that_meet_no_earlier_flow_keep_the_step_by_step_answer():
    """The same, with h1's second flow going to h4 (idle, on s0): it never meets h0's flow on an arc."""
    G = two_switches().G.copy()
    G.graph["endpoints"] = [*G.graph["endpoints"], "h4"]
    G.add_node("h4", kind="host")
    topologies.add_link(G, "h4", "s0", 1e9, 0.0)
    schedule = hand_schedule(5, [[(0, 2, 0, 2), (1, 3, 2, 1)], [(1, 4, 2, 1)]], nchunks=3)
    result = simulate(schedule, Network(G, NOCOST), 3 * MB)
    assert result.time == pytest.approx(3e-3, rel=1e-12)  # h0 -> h2 alone from 2 to 3 ms
    assert result.finish[4] == pytest.approx(3e-3, rel=1e-12)  # h1 -> h4 alone from 2 to 3 ms


@pytest.mark.parametrize("latency", [0.0, 1e-6])
def test_eager_sends_start_before_the_receiver_is_there(latency):
    """Step 0: h0 -> h1 (1 MB); step 1: h2 -> h1 (1 MB), on one switch (h2 is idle in step 0).

    Rendezvous: h2 waits for h1, which has h0's data at 1 ms + 2L; then 1 ms more and 2L:
    2 ms + 4L. Eager (1 MB < threshold): h2's flow starts at 0 and shares s -> h1 with h0's: both
    at 0.5 GB/s, both leave at 2 ms and arrive at 2 ms + 2L, and h1 has both then.
    """
    G = topologies.new_topology("star", endpoints=["h0", "h1", "h2"])
    G.add_nodes_from(G.graph["endpoints"], kind="host")
    G.add_node("s", kind="switch")
    for h in G.graph["endpoints"]:
        topologies.add_link(G, h, "s", 1e9, latency)
    schedule = hand_schedule(3, [[(0, 1, 0, 1)], [(2, 1, 1, 1)]], nchunks=2)
    rendezvous = simulate(schedule, Network(G, NOCOST), 2 * MB)
    assert rendezvous.time == pytest.approx(2e-3 + 4 * latency, rel=1e-12)
    at_size = simulate(schedule, Network(G, NOCOST.replace(eager_threshold=MB)), 2 * MB)  # not below: rendezvous
    assert at_size.time == rendezvous.time
    eager = simulate(schedule, Network(G, NOCOST.replace(eager_threshold=MB + 1)), 2 * MB)
    assert eager.time == pytest.approx(2e-3 + 2 * latency, rel=1e-12)
    assert eager.finish[2] == pytest.approx(2e-3, rel=1e-12)  # the eager sender is done when its data has left


def issue_network(params: ModelParams = NOCOST) -> Network:
    return Network(topologies.from_spec(ISSUE_SPEC), params)


def test_issue_16_recursive_doubling_on_an_ecmp_leaf_spine():
    """SimGrid gives 595.2 us (issue 16); steps costed one after the other gave 511.3 us."""
    schedule = get_schedule("allreduce", "recursive_doubling", 16)
    result = simulate(schedule, issue_network(), 1 << 20)
    assert result.time * 1e6 == pytest.approx(595.2, rel=0.01)
    assert result.utilization.max() <= 1 + 1e-12


@pytest.mark.parametrize("algorithm", ["ring", "recursive_halving", "recursive_doubling", "tree"])
def test_eager_threshold_zero_is_rendezvous(algorithm):
    """0 (the default) and a threshold no transfer is below give the rendezvous model's numbers."""
    nbytes = (1 << 18) + 4  # unequal chunks: every step simulated
    schedule = get_schedule("allreduce", algorithm, 16, **algorithm_params(algorithm, 16, nbytes))
    smallest = min(int(np.diff(schedule.chunk_offsets(nbytes // 4)).min()) * 4, 1 << 30)
    base = simulate(schedule, issue_network(), nbytes)
    none_below = simulate(schedule, issue_network(NOCOST.replace(eager_threshold=smallest)), nbytes)
    assert none_below.time == base.time
    assert (none_below.finish == base.finish).all()
    assert ModelParams().eager_threshold == 0


@pytest.mark.parametrize(("algorithm", "p"), [("ring", 4), ("ring", 5), ("ring", 16), ("recursive_halving", 4),
                                              ("recursive_halving", 16), ("recursive_doubling", 8)])
def test_eager_or_not_a_switch_in_lock_step_is_the_analytic_model(algorithm, p):
    """On one switch every rank is ready at once after every step, so eager sends change nothing.

    (Not so for recursive halving or doubling on a world size that is not a power of two: the
    ranks left out of the fold step send their next messages eagerly while the fold is going on.)
    """
    params = ModelParams(alpha=1e-6, gamma=1e-10, eager_threshold=1 << 30)
    net = Network(topologies.switch(p, bandwidth=2e9, latency=1e-6), params)
    schedule = get_schedule("allreduce", algorithm, p)
    nbytes = schedule.nchunks * 4 * 1000
    assert simulate(schedule, net, nbytes).time == pytest.approx(predict(schedule, net, nbytes).time, rel=1e-9)


def test_eager_sends_make_the_ring_faster_where_ranks_drift():
    """Issue 16: below SMPI's 64 KiB eager limit the ring on the ECMP leaf-spine is ~1.38x faster."""
    schedule = get_schedule("allreduce", "ring", 16)
    rendezvous = simulate(schedule, issue_network(), 1 << 18).time
    eager = simulate(schedule, issue_network(NOCOST.replace(eager_threshold=1 << 16)), 1 << 18).time
    assert eager < rendezvous / 1.3


@pytest.mark.parametrize("spec", ["fat_tree:k=4", "leaf_spine:leaves=4,spines=4,hosts_per_leaf=4", "switch:n=16"])
@pytest.mark.parametrize("algorithm", ["ring", "recursive_halving", "recursive_doubling"])
def test_lock_step_runs_never_need_the_event_clock(spec, algorithm, monkeypatch):
    """Where every rank is ready at once after each step, the step loop is exact and stays in use."""

    def refuse(*args, **kwargs):
        raise AssertionError("the event clock ran")

    monkeypatch.setattr(sim.flow._Clock, "run", refuse)
    schedule = get_schedule("allreduce", algorithm, 16)
    simulate(schedule, Network(topologies.from_spec(spec)), 1 << 20)


@pytest.mark.parametrize(("algorithm", "p", "nbytes", "params"), [
    ("recursive_doubling", 16, 1 << 20, NOCOST),
    ("recursive_halving", 16, 1 << 20, NOCOST),
    ("tree", 15, 1 << 24, NOCOST.replace(eager_threshold=1 << 30)),  # every send eager
    ("recursive_halving", 16, 1 << 20, NOCOST.replace(eager_threshold=1 << 30)),
])
def test_the_clock_dropping_finished_steps_changes_nothing(algorithm, p, nbytes, params, monkeypatch):
    """The event clock keeps the live steps' transfers in one table and drops finished steps' rows
    now and then (``CLOCK_COMPACT``); dropping them at every chance gives the same run, bit for bit."""
    schedule = get_schedule("allreduce", algorithm, p, **algorithm_params(algorithm, p, nbytes))
    runs = []
    events = []
    run = sim.flow._Clock.run

    def counted(self):
        out = run(self)
        events.append(self.events)
        return out

    monkeypatch.setattr(sim.flow._Clock, "run", counted)
    net = issue_network(params)
    for compact in (sim.flow.CLOCK_COMPACT, 0):
        monkeypatch.setattr(sim.flow, "CLOCK_COMPACT", compact)
        runs.append(simulate(schedule, net, nbytes))
    assert sum(events) > 0  # the event clock ran
    assert runs[1].time == runs[0].time
    assert np.array_equal(runs[1].finish, runs[0].finish)
    assert np.array_equal(runs[1].arc_bytes, runs[0].arc_bytes)
