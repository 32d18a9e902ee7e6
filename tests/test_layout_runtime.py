"""How the runtimes find a layout and turn an algorithm spec into generator parameters.

The pure helpers (:mod:`collectives.plan`) are tested directly; layout discovery in the torch
runtime runs on a reused pool of 4 Gloo ranks (:mod:`_dist_harness`), simulating nodes with
torchrun's variables, ``COLLSIM_LAYOUT`` and patched host names. The collectives on those layouts
are compared with native torch in ``test_torch_runtime.py`` and with MPI in ``mpi_suite.py``.
"""

from __future__ import annotations

import pytest
from _dist_harness import node_environment, pool

from collectives import get_schedule
from collectives.layout import Layout
from collectives.plan import (
    check_layout,
    format_algorithm,
    labels_from_env,
    layout_of_ranks,
    nics_from_env,
    parse_algorithm,
    rank_blocked,
    run_params,
    split_algorithms,
    takes_layout,
)
from collectives.tuning import TuningTable

# ----------------------------------------------------------------------------------------------
# algorithm specs


@pytest.mark.parametrize(("text", "name", "params"), [
    ("ring", "ring", {}),
    (" ring:channels=2 ", "ring", {"channels": 2}),
    ("ring:channels=auto", "ring", {"channels": "auto"}),
    ("hierarchical:outer=recursive_doubling,channels=3", "hierarchical", {"outer": "recursive_doubling", "channels": 3}),
    ("tree:segments=4", "tree", {"segments": 4}),
    ("recursive_halving:order=far_first", "recursive_halving", {"order": "far_first"}),
])
def test_parse_algorithm(text, name, params):
    assert parse_algorithm(text) == (name, params)
    assert parse_algorithm(format_algorithm(name, params)) == (name, params)


@pytest.mark.parametrize(("text", "words"), [
    ("bogus", ["'bogus'", "ring", "hierarchical"]),
    ("ring:lanes=2", ["lanes", "channels"]),
    ("ring:layout=0,0,1,1", ["layout"]),
    ("ring:channels", ["key=value"]),
    ("ring:channels=2,channels=3", ["twice"]),
    ("recursive_doubling:channels=2", ["recursive_doubling takes no parameter", "no parameters"]),
])
def test_parse_algorithm_refuses_clearly(text, words):
    with pytest.raises(ValueError) as err:
        parse_algorithm(text)
    assert all(w in str(err.value) for w in words), str(err.value)


@pytest.mark.parametrize(("text", "specs"), [
    ("ring,tree", ["ring", "tree"]),
    ("ring, ring:channels=2,hierarchical", ["ring", "ring:channels=2", "hierarchical"]),
    ("hierarchical:outer=tree,channels=2,ring", ["hierarchical:outer=tree,channels=2", "ring"]),
    ("ring,ring", ["ring"]),
])
def test_split_algorithms_keeps_parameters_with_their_algorithm(text, specs):
    assert split_algorithms(text) == specs


def test_takes_layout_follows_the_generators():
    assert takes_layout("ring") and takes_layout("tree") and takes_layout("hierarchical")
    assert not takes_layout("recursive_doubling")


# ----------------------------------------------------------------------------------------------
# layouts from the environment


@pytest.mark.parametrize(("env", "world", "labels"), [
    ({}, 4, None),
    ({"COLLSIM_LAYOUT": "0,0,1,1"}, 4, [0, 0, 1, 1]),
    ({"COLLSIM_LAYOUT": "a, b,a"}, 3, ["a", "b", "a"]),
    ({"COLLSIM_RANKS_PER_NODE": "2"}, 5, [0, 0, 1, 1, 2]),
    ({"COLLSIM_RANKS_PER_NODE": "8"}, 3, [0, 0, 0]),
])
def test_labels_from_env(env, world, labels):
    assert labels_from_env(world, env) == labels


@pytest.mark.parametrize(("env", "needle"), [
    ({"COLLSIM_LAYOUT": "0,0,1"}, "COLLSIM_LAYOUT"),
    ({"COLLSIM_LAYOUT": "0,,1,1"}, "COLLSIM_LAYOUT"),
    ({"COLLSIM_RANKS_PER_NODE": "0"}, "COLLSIM_RANKS_PER_NODE"),
    ({"COLLSIM_RANKS_PER_NODE": "two"}, "COLLSIM_RANKS_PER_NODE"),
    ({"COLLSIM_LAYOUT": "0,0,1,1", "COLLSIM_RANKS_PER_NODE": "2"}, "not both"),
])
def test_bad_layout_variables_are_named(env, needle):
    with pytest.raises(ValueError, match=needle):
        labels_from_env(4, env)


def test_nics_from_env():
    assert nics_from_env({}) == 1
    assert nics_from_env({"COLLSIM_NICS_PER_NODE": "4"}) == 4
    with pytest.raises(ValueError, match="COLLSIM_NICS_PER_NODE"):
        nics_from_env({"COLLSIM_NICS_PER_NODE": "0"})


@pytest.mark.parametrize(("labels", "ranks", "node_of"), [
    ([0, 0, 1, 1, 1], [1, 3, 4], (0, 1, 1)),
    ([0, 0, 1, 1, 1], [4, 0, 2], (0, 1, 0)),     # group order renumbers the nodes
    (["a", "b", "a", "b"], [0, 2], (0, 0)),      # a subgroup inside one node is flat
])
def test_layout_of_a_subgroup(labels, ranks, node_of):
    layout = layout_of_ranks(labels, ranks, nics_per_node=2)
    assert layout.node_of == node_of and layout.nics_per_node == 2


def test_check_layout():
    assert check_layout(Layout.regular(2, 2), 4) == Layout.regular(2, 2)
    with pytest.raises(ValueError, match="the group has 5"):
        check_layout(Layout.regular(2, 2), 5)
    with pytest.raises(ValueError, match="Layout"):
        check_layout([0, 0, 1, 1], 4)


# ----------------------------------------------------------------------------------------------
# generator parameters


TWO_BY_TWO = Layout.regular(2, 2, nics_per_node=2)


def test_run_params_flat_calls_are_unchanged():
    assert run_params("ring", {}, 4, 1 << 20) == ()
    assert run_params("ring", {}, 4, 1 << 20, layout=Layout.flat(4)) == ()
    assert run_params("recursive_doubling", {}, 4, 1 << 20, layout=TWO_BY_TWO) == ()


def test_run_params_channels_auto_and_explicit():
    assert dict(run_params("ring", {}, 4, 1 << 20, layout=TWO_BY_TWO)) == {"channels": 2, "layout": TWO_BY_TWO}
    assert dict(run_params("ring", {"channels": 1}, 4, 1 << 20, layout=TWO_BY_TWO)) == {"layout": TWO_BY_TWO}
    assert dict(run_params("ring", {}, 4, 1 << 20, layout=TWO_BY_TWO, channels=3))["channels"] == 3
    params = dict(run_params("hierarchical", {"outer": "recursive_doubling"}, 4, 1 << 20, layout=TWO_BY_TWO))
    assert params["outer"] == "recursive_doubling" and params["layout"] == TWO_BY_TWO


@pytest.mark.parametrize(("algorithm", "spec", "channels", "needle"), [
    ("ring", {"channels": 2}, 3, "contradicts"),
    ("ring", {}, 0, "channels must be"),
    ("ring", {}, "two", "channels must be"),
    ("recursive_doubling", {}, 2, "takes no channels"),
])
def test_run_params_refuses_clearly(algorithm, spec, channels, needle):
    with pytest.raises(ValueError, match=needle):
        run_params(algorithm, spec, 4, 1 << 20, layout=TWO_BY_TWO, channels=channels)


def test_rank_blocked():
    params = dict(run_params("ring", {"channels": 2}, 4, 1 << 20, layout=TWO_BY_TWO))
    assert rank_blocked(get_schedule("reduce_scatter", "ring", 4, **params))
    assert rank_blocked(get_schedule("allgather", "recursive_halving", 6))
    assert not rank_blocked(get_schedule("reduce_scatter", "tree", 4))
    assert not rank_blocked(get_schedule("allreduce", "ring", 4))


def test_tuning_table_rows_may_carry_parameters(tmp_path):
    table = TuningTable({4: [(1 << 20, "ring:channels=2"), (None, "hierarchical:outer=recursive_doubling")]})
    assert table.choose(4, 1000) == "ring:channels=2"
    assert table.choose(8, 1 << 30) == "hierarchical:outer=recursive_doubling"
    path = tmp_path / "t.json"
    table.save(path)
    assert TuningTable.from_json(__import__("json").loads(path.read_text())).tables == table.tables
    with pytest.raises(ValueError, match="lanes"):
        TuningTable({4: [(None, "ring:lanes=2")]})
    with pytest.raises(ValueError, match="reduce_scatter names algorithm 'tree:channels=2'"):
        TuningTable({4: [(None, "tree:channels=2")]}, collective="reduce_scatter")


# ----------------------------------------------------------------------------------------------
# discovery in the torch runtime (4 ranks)


def discovered(env: dict, torchrun_local: int | None = None, hosts: list | None = None,
               group_ranks: tuple | None = None):
    """Place this rank (variables, torchrun's variables, a fake host name); return the layout found."""
    import socket

    import torch.distributed as dist

    import collectives.distributed as runtime

    rank = dist.get_rank()
    real_hostname = socket.gethostname
    if hosts is not None:
        socket.gethostname = lambda: hosts[rank]
    try:
        with node_environment(env, torchrun_local):
            group = dist.new_group(list(group_ranks)) if group_ranks is not None else None  # every rank calls it
            if group_ranks is not None and rank not in group_ranks:
                return None
            try:
                layout = runtime.find_layout(group)
            except ValueError as err:
                return f"ValueError: {err}"
            again = runtime.find_layout(group)  # cached: no second all-gather
            return layout.node_of, layout.nics_per_node, again is layout
    finally:
        socket.gethostname = real_hostname


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"env": {}}, (0, 0, 0, 0)),                                                   # one machine
    ({"env": {}, "torchrun_local": 2}, (0, 0, 1, 1)),                              # torchrun, 2 agents
    ({"env": {}, "hosts": ["a", "b", "a", "b"]}, (0, 1, 0, 1)),                   # host names
    ({"env": {}, "torchrun_local": 1, "hosts": ["a"] * 4}, (0, 1, 2, 3)),          # torchrun wins over names
    ({"env": {"COLLSIM_LAYOUT": "x,y,y,x"}, "hosts": ["a"] * 4}, (0, 1, 1, 0)),   # the variable wins
    ({"env": {"COLLSIM_RANKS_PER_NODE": "3"}, "torchrun_local": 2}, (0, 0, 0, 1)),
], ids=["one-host", "torchrun", "hostnames", "torchrun-over-hostnames", "env-layout", "env-ranks-per-node"])
def test_torch_runtime_finds_the_layout(kwargs, expected):
    results = pool(4).run(discovered, **kwargs)
    assert results == [(expected, 1, True)] * 4


def test_torch_runtime_layout_of_subgroups_and_nics():
    env = {"COLLSIM_LAYOUT": "0,0,1,1", "COLLSIM_NICS_PER_NODE": "2"}
    results = pool(4).run(discovered, env, group_ranks=(3, 1, 2))
    assert results[0] is None and results[1:] == [((0, 1, 1), 2, True)] * 3  # group order 1, 2, 3
    results = pool(4).run(discovered, {}, hosts=["a", "b", "a", "b"], group_ranks=(1, 2, 3))
    assert results[1:] == [((0, 1, 0), 1, True)] * 3  # gathered over the subgroup


def test_torch_runtime_names_a_bad_variable_on_every_rank():
    results = pool(4).run(discovered, {"COLLSIM_LAYOUT": "0,0,1"})
    assert all(r.startswith("ValueError") and "COLLSIM_LAYOUT" in r for r in results), results
