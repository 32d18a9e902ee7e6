"""Execution tactics as data: the runtime's decisions and the simulator's input are the same."""

import dataclasses

import numpy as np
import pytest

import collectives.execution as ex
from collectives.algorithms import ALGORITHMS, collectives_of, get_schedule
from collectives.layout import Layout
from collectives.plan import compile_program


def _schedules():
    for algorithm in ALGORITHMS:
        for collective in collectives_of(algorithm):
            for p in range(2, 10):
                yield collective, algorithm, p, {}
    for p, nodes in ((4, 2), (6, 2), (8, 4)):
        layout = Layout.regular(nodes, p // nodes, nics_per_node=2)
        yield "allreduce", "hierarchical", p, {"layout": layout}
        yield "allreduce", "ring", p, {"layout": layout, "channels": 2}


CASES = list(_schedules())


@pytest.mark.parametrize("collective,algorithm,p,params", CASES,
                         ids=[f"{c}-{a}-{p}{'-laid-out' if k else ''}" for c, a, p, k in CASES])
def test_simulator_sees_every_ranks_decision(collective, algorithm, p, params, monkeypatch):
    """posted_ahead (all ranks at once, for the simulator) equals each rank's own rank_ahead (the runtime's),
    also where partner switches hold receives back (a threshold of 16 bytes makes every message large)."""
    schedule = get_schedule(collective, algorithm, p, **params)
    sizes = (schedule.nchunks * 12, schedule.nchunks * 5 + p, p)  # equal, unequal and empty chunks
    for switch, count in [(ex.SWITCH_BYTES, n) for n in sizes] + [(16, n) for n in sizes]:
        monkeypatch.setattr(ex, "SWITCH_BYTES", switch)
        count -= count % schedule.nblocks
        masks = ex.posted_ahead(schedule, count)
        offsets = schedule.chunk_offsets(count)
        for rank in range(p):
            program = compile_program(schedule, rank, count)
            decided = ex.rank_ahead(program)
            for k, rs in enumerate(program.steps):
                step = schedule.step(rs.index)
                live = offsets[step.chunk + step.nchunks] > offsets[step.chunk]
                mine = np.flatnonzero((step.dst == rank) & live)
                expect = k > 0 and decided[k - 1]
                assert masks[rs.index] is not None
                assert (masks[rs.index][mine] == expect).all(), (rank, rs.index, count)
        for i, mask in enumerate(masks):  # empty transfers are never posted
            if mask is not None:
                step = schedule.step(i)
                empty = offsets[step.chunk + step.nchunks] == offsets[step.chunk]
                assert not mask[empty].any()


def test_post_ahead_only_into_slices_the_step_leaves_alone():
    """A copy-receive may be posted a step early only into a slice the current step does not touch."""
    busy = [(0, 10), (10, 20)]  # sends [0, 10), receives [10, 20)
    assert ex.can_post_ahead(busy, [(20, 30)])
    assert not ex.can_post_ahead(busy, [(5, 15)])   # overwrites what is sent
    assert not ex.can_post_ahead(busy, [(19, 25)])  # overlaps what is received
    assert ex.can_post_ahead(busy, [])              # reduce-receives land in the other scratch region


def test_some_steps_cannot_be_posted_ahead():
    """The ring's first allgather step at p = 2 overwrites the chunk its reduce-scatter step sent."""
    masks = ex.posted_ahead(get_schedule("allreduce", "ring", 2), 1000)
    assert [m.tolist() for m in masks] == [[False, False], [False, False]]
    masks = ex.posted_ahead(get_schedule("allreduce", "ring", 3), 999)
    assert [bool(m.all()) for m in masks] == [False, True, True, True]


@pytest.mark.parametrize("runtime,device", [("mpi", "cpu"), ("mpi", "cuda"), ("torch", "cuda")])
def test_runtimes_without_tactics_run_plain_steps(runtime, device):
    schedule = get_schedule("allreduce", "ring", 4)
    for nbytes in (4096, 1 << 20, 256 << 20):
        assert ex.execution_for(schedule, nbytes, runtime=runtime, device=device).plain


def test_torch_cpu_tactics_follow_the_thresholds(monkeypatch):
    schedule = get_schedule("allreduce", "ring", 2)
    small = ex.execution_for(get_schedule("allreduce", "ring", 4), 1 << 20)
    assert small.posts_ahead and small.lanes == 1
    assert ex.execution_for(schedule, 1 << 20).plain  # at p = 2 no ring step can go ahead
    big = ex.execution_for(schedule, 64 << 20)  # 32 MiB chunks: 8 segments of 4 MiB
    assert big.lanes == 8 and not big.posts_ahead
    assert ex.execution_for(schedule, 1 << 30).lanes == ex.MAX_LANES
    monkeypatch.setattr(ex, "PREPOST_BYTES", 0)
    assert ex.execution_for(get_schedule("allreduce", "ring", 4), 1 << 20).plain
    monkeypatch.setattr(ex, "SEGMENT_BYTES", 1 << 20)
    assert ex.execution_for(schedule, 4 << 20).lanes == 2


def test_bad_runtime_and_device_are_named():
    schedule = get_schedule("allreduce", "ring", 2)
    with pytest.raises(ValueError, match="runtime must be one of: torch, mpi"):
        ex.execution_for(schedule, 1024, runtime="nccl")
    with pytest.raises(ValueError, match="device must be one of: cpu, cuda"):
        ex.execution_for(schedule, 1024, device="gpu")


def test_every_field_of_the_runtime_plan_is_modeled():
    """A new field in the torch runtime's plan is a new tactic: it must be listed, with what the simulator makes of it."""
    pytest.importorskip("torch")
    from collectives.distributed import _Plan

    fields = {f.name for f in dataclasses.fields(_Plan)}
    assert fields == set(ex.MODELED_PLAN_FIELDS), (
        f"the runtime's plan has {sorted(fields - set(ex.MODELED_PLAN_FIELDS))} that the simulator does not "
        f"model; cost it in sim and list it in collectives.execution.MODELED_PLAN_FIELDS")


def test_runtime_reads_its_tactics_from_the_execution_module():
    """The runtime keeps no thresholds of its own that the simulator could miss."""
    pytest.importorskip("torch")
    import collectives.distributed as runtime

    for name in ("SEGMENT_BYTES", "PREPOST_BYTES", "MAX_LANES", "_nlanes", "_posts_ahead", "_can_post_ahead"):
        assert not hasattr(runtime, name), name


# -- the simulator costs the tactics ---------------------------------------------------------------

def _uniform(p, params):
    import topologies
    from sim.flow import Network

    return Network(topologies.fully_connected(p, bandwidth=1e9, latency=1e-6), params)


def test_posted_receives_cost_posted_alpha_in_lock_step():
    """Ring on 4 ranks: steps 1-5 are posted ahead, so each costs posted_alpha instead of alpha (flow = analytic)."""
    from sim.analytic import predict
    from sim.flow import simulate
    from sim.params import ModelParams

    params = ModelParams(alpha=1e-3, gamma=1e-10, posted_alpha=2e-4)
    schedule, nbytes = get_schedule("allreduce", "ring", 4), 1 << 20
    net = _uniform(4, params)
    execution = ex.execution_for(schedule, nbytes)
    plain = simulate(schedule, net, nbytes).time
    tactic = simulate(schedule, net, nbytes, execution=execution).time
    assert tactic == pytest.approx(plain - 5 * (1e-3 - 2e-4), rel=1e-9)
    assert predict(schedule, net, nbytes, execution=execution).time == pytest.approx(tactic, rel=1e-9)
    assert predict(schedule, net, nbytes).time == pytest.approx(plain, rel=1e-9)


def test_lanes_leave_one_lanes_reduction_on_the_critical_path():
    """Ring on 2 ranks, 64 MiB: 8 lanes; the reduce step's gamma * chunk shrinks to an eighth (flow = analytic)."""
    from sim.analytic import predict
    from sim.flow import simulate
    from sim.params import ModelParams

    params = ModelParams(alpha=1e-5, gamma=1e-10)
    schedule, nbytes = get_schedule("allreduce", "ring", 2), 64 << 20
    net = _uniform(2, params)
    execution = ex.execution_for(schedule, nbytes)
    assert execution.lanes == 8
    plain = simulate(schedule, net, nbytes).time
    tactic = simulate(schedule, net, nbytes, execution=execution).time
    assert plain - tactic == pytest.approx(1e-10 * (32 << 20) * 7 / 8, rel=1e-9)
    assert predict(schedule, net, nbytes, execution=execution).time == pytest.approx(tactic, rel=1e-9)


@pytest.mark.parametrize("algorithm", ["ring", "recursive_doubling"])
def test_posted_receives_start_with_their_sender_when_ranks_drift(algorithm, monkeypatch):
    """On an ECMP leaf-spine ranks drift apart (issue 16): a receive posted ahead does not hold its
    sender, which is the eager model wherever everything but a synchronised first step is posted
    (recursive halving is not such a case: its first allgather step cannot be posted ahead)."""
    import topologies
    from sim.flow import Network, simulate
    from sim.params import ModelParams

    G = topologies.from_spec("leaf_spine:leaves=4,spines=4,hosts_per_leaf=4,oversubscription=1,bandwidth=100Gbps,"
                         "latency=1us,routing=ecmp")
    monkeypatch.setattr(ex, "SWITCH_BYTES", 0)  # recursive doubling switches partners every step
    schedule, nbytes = get_schedule("allreduce", algorithm, 16), 1 << 20
    execution = ex.execution_for(schedule, nbytes)
    assert all(m.all() for m in execution.posted[1:]) and not execution.posted[0].any()
    params = ModelParams(alpha=2e-6, gamma=1e-10)
    rendezvous = simulate(schedule, Network(G, params), nbytes).time
    posted = simulate(schedule, Network(G, params), nbytes, execution=execution).time
    eager = simulate(schedule, Network(G, params.replace(eager_threshold=1e18)), nbytes).time
    assert posted == pytest.approx(eager, rel=1e-9)
    assert posted <= rendezvous * (1 + 1e-9)


# -- partner switches ------------------------------------------------------------------------------

def _masks(masks):
    return None if masks is None else [None if m is None else m.astype(int).tolist() for m in masks]


def test_partner_switches_textbook():
    """Recursive halving on 4 ranks (partners r^1, r^2, r^2, r^1): the steps before a switch are
    receipted and the steps after one are not posted ahead; the ring never switches; small buffers,
    lanes and the other runtimes have none of it."""
    rh = ex.execution_for(get_schedule("allreduce", "recursive_halving", 4), 1 << 20)  # 512, 256, 256, 512 KiB
    assert _masks(rh.receipts) == [[1, 1, 1, 1], None, [1, 1, 1, 1], None]
    assert rh.posted is None  # step 2 could go ahead (same partner) but its copy-receives overwrite step 1's sends
    rd = ex.execution_for(get_schedule("allreduce", "recursive_doubling", 8), 1 << 20)
    assert _masks(rd.receipts) == [[1] * 8, [1] * 8, None] and rd.posted is None
    small = ex.execution_for(get_schedule("allreduce", "recursive_doubling", 8), 128 << 10)  # below SWITCH_BYTES
    assert small.receipts is None and _masks(small.posted) == [[0] * 8, [1] * 8, [1] * 8]
    ring = ex.execution_for(get_schedule("allreduce", "ring", 4), 4 << 20)
    assert ring.receipts is None and ring.posted is not None and all(m.all() for m in ring.posted[1:])
    # two channels send to the same two ranks every step: no new partner, no receipt
    channels = get_schedule("allreduce", "ring", 4, layout=Layout.regular(2, 2, nics_per_node=2), channels=2)
    assert ex.execution_for(channels, 4 << 20).receipts is None
    # recursive halving at 1 MiB: step 2 (256 KiB) is receipted, step 1 (256 KiB) is not: it is followed by
    # the same partner; at 512 KiB step 2 carries 128 KiB, below the threshold
    assert _masks(ex.execution_for(get_schedule("allreduce", "recursive_halving", 4), 512 << 10).receipts) == [
        [1, 1, 1, 1], None, None, None]
    assert ex.execution_for(get_schedule("allreduce", "recursive_halving", 4), 64 << 20).receipts is None  # 4 lanes
    for runtime, device in (("mpi", "cpu"), ("torch", "cuda")):
        assert ex.execution_for(get_schedule("allreduce", "recursive_doubling", 8), 1 << 20, runtime=runtime,
                                device=device).plain
    assert "8 transfers receipted" in rh.describe()


@pytest.mark.parametrize("algorithm", ["ring", "tree", "recursive_halving", "recursive_doubling"])
def test_two_ranks_never_switch_partners(algorithm, monkeypatch):
    """At p = 2 every step has the one partner: the execution is the same with partner switches off."""
    schedule = get_schedule("allreduce", algorithm, 2)
    for nbytes in (4096, 1 << 20, 4 << 20, 64 << 20):
        on = ex.execution_for(schedule, nbytes)
        monkeypatch.setattr(ex, "SWITCH_BYTES", 0)
        off = ex.execution_for(schedule, nbytes)
        monkeypatch.undo()
        assert on.receipts is None and _masks(on.posted) == _masks(off.posted) and on.lanes == off.lanes


def test_switch_threshold_zero_turns_partner_switches_off(monkeypatch):
    monkeypatch.setattr(ex, "SWITCH_BYTES", 0)
    rd = ex.execution_for(get_schedule("allreduce", "recursive_doubling", 8), 1 << 20)
    assert rd.receipts is None and _masks(rd.posted) == [[0] * 8, [1] * 8, [1] * 8]


def test_a_receipt_costs_posted_alpha_and_latency_after_the_arrival():
    """Recursive doubling on 4 ranks, no reduction cost: the one switch holds every rank until its
    receipt is back, posted_alpha + latency after the arrival (flow = analytic = the sum)."""
    from sim.analytic import predict
    from sim.flow import simulate
    from sim.params import ModelParams

    params = ModelParams(alpha=1e-4, gamma=0.0, posted_alpha=3e-5)
    schedule, nbytes = get_schedule("allreduce", "recursive_doubling", 4), 1 << 20
    net = _uniform(4, params)
    execution = ex.execution_for(schedule, nbytes)
    assert execution.posted is None and execution.receipts is not None
    plain = simulate(schedule, net, nbytes).time
    assert plain == pytest.approx(2 * (1e-4 + (1 << 20) / 1e9 + 1e-6), rel=1e-12)
    receipted = simulate(schedule, net, nbytes, execution=execution).time
    assert receipted == pytest.approx(plain + 3e-5 + 1e-6, rel=1e-12)
    assert predict(schedule, net, nbytes, execution=execution).time == pytest.approx(receipted, rel=1e-12)
    # a reduction longer than the receipt's trip hides it
    slow = params.replace(gamma=1e-10)
    assert simulate(schedule, _uniform(4, slow), nbytes, execution=execution).time == pytest.approx(
        simulate(schedule, _uniform(4, slow), nbytes).time, rel=1e-12)


@pytest.mark.parametrize("algorithm,p", [("recursive_halving", 4), ("recursive_halving", 6), ("recursive_doubling", 8),
                                         ("tree", 5)])
def test_the_event_clock_costs_receipts_as_the_step_loop(algorithm, p):
    """The step loop and the event clock (every step from the start, as when flows of different steps meet)
    give the same time with receipts, on a switch where nothing drifts."""
    import topologies
    from sim.flow import Network, _Clock, element_count, simulate
    from sim.params import ModelParams

    net = Network(topologies.from_spec(f"switch:n={p},bandwidth=10Gbps,latency=2us"),
                  ModelParams(alpha=1e-5, gamma=1e-13, posted_alpha=4e-6))
    schedule, nbytes = get_schedule("allreduce", algorithm, p), 4 << 20
    execution = ex.execution_for(schedule, nbytes)
    assert execution.receipts is not None
    loop = simulate(schedule, net, nbytes, execution=execution).time
    count = element_count(schedule, nbytes, 4)
    clock = _Clock(schedule, net, schedule.chunk_offsets(count) * 4, {}, 0, np.zeros(p), net.params.eager_threshold,
                   resync=False, execution=execution)
    assert clock.run() is None
    assert float(clock.ready.max()) == pytest.approx(loop, rel=1e-9)
    assert loop > simulate(schedule, net, nbytes, execution=dataclasses.replace(execution, receipts=None)).time


def test_the_cpu_model_costs_the_torch_runtime_by_default():
    """run_model costs the torch runtime's tactics on CPU topologies; runtime="mpi" the plain steps."""
    import topologies
    from sim.flow import Network
    from sim.params import ModelParams
    from sim.results import Record
    from sim.select import run_model

    net = Network(topologies.from_spec("switch:n=4"), ModelParams(alpha=1e-3, gamma=1e-10, posted_alpha=2e-4))
    torch_run = run_model("flow", "allreduce", "ring", net, 4, 1 << 20)
    mpi_run = run_model("flow", "allreduce", "ring", net, 4, 1 << 20, runtime="mpi")
    assert torch_run.time == pytest.approx(mpi_run.time - 5 * 8e-4, rel=1e-9)
    assert "receives posted ahead (20 of 24 transfers)" in Record.from_result(torch_run).extra["execution"]
    assert "execution" not in Record.from_result(mpi_run).extra
    with pytest.raises(ValueError, match="runtime must be one of: torch, mpi"):
        run_model("flow", "allreduce", "ring", net, 4, 1 << 20, runtime="gloo")


def test_cli_costs_the_runtime_it_is_told(tmp_path):
    """``collsim simulate --runtime``: torch posts receives ahead (posted_alpha), mpi runs plain steps; bad values exit 2."""
    import json
    import subprocess
    import sys

    from sim.params import ModelParams, save_params

    save_params(ModelParams(alpha=1e-3, gamma=1e-10, posted_alpha=2e-4), tmp_path / "p.json")

    def run(*extra):
        return subprocess.run([sys.executable, "-m", "sim", "simulate", "--topology", "switch:n=4", "--sizes", "1MiB",
                               "--algorithms", "ring", "--params", str(tmp_path / "p.json"), *extra],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)

    times = {}
    for runtime in ("torch", "mpi"):
        out = run("--runtime", runtime, "--json", f"{runtime}.jsonl")
        assert out.returncode == 0, out.stderr
        assert f"{runtime} runtime" in out.stdout
        rec = json.loads((tmp_path / f"{runtime}.jsonl").read_text().splitlines()[0])
        times[runtime] = rec["time_us"]
        assert ("execution" in rec) == (runtime == "torch")
    assert times["mpi"] - times["torch"] == pytest.approx(5 * 800, rel=1e-6)  # 5 steps posted ahead, 0.8 ms each
    bad = run("--runtime", "gloo")
    assert bad.returncode == 2 and bad.stderr.strip() == "collsim: error: --runtime must be one of: torch, mpi; got 'gloo'"
