"""Run the docstring examples of the pure modules (schedules, topologies, simulator)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import collectives
import sim
import topologies

# modules whose examples are multi-rank or need a launcher, root or MPI: documented, not run here
NOT_RUN = {"collectives.distributed", "collectives.ddp", "collectives.mpi", "topologies.emulate", "sim.calibrate", "sim.validate"}


def _modules():
    for package in (collectives, topologies, sim):
        for info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + "."):
            if info.name not in NOT_RUN and not info.name.endswith("__main__"):
                yield info.name


@pytest.mark.parametrize("name", sorted(_modules()))
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
