"""collsim collectives: schedules, algorithms, the checker, and the runtimes that execute them.

Ranks in a schedule are always *group-local*: positions ``0 .. p-1`` in the process group or
communicator the collective runs on. The runtimes translate them to global ranks where their
transport needs it.
"""

from collectives.algorithms import ALGORITHMS, algorithm_params, get_schedule
from collectives.checker import ScheduleError, VerifyReport, verify
from collectives.schedule import COLLECTIVES, Schedule, Step, chunk_offsets

#: The torch.distributed runtime's collectives, imported on first use so that ``import collectives``
#: does not import torch.
_DISTRIBUTED = ("all_reduce", "reduce_scatter", "all_gather")

__all__ = [
    "ALGORITHMS",
    "COLLECTIVES",
    "Schedule",
    "ScheduleError",
    "Step",
    "VerifyReport",
    "algorithm_params",
    "chunk_offsets",
    "get_schedule",
    "verify",
]
# all_reduce, reduce_scatter and all_gather (the torch runtime) stay out of __all__: a star import
# would otherwise import torch.


def __getattr__(name: str):
    if name in _DISTRIBUTED:
        from collectives import distributed

        return getattr(distributed, name)
    raise AttributeError(f"module 'collectives' has no attribute {name!r}")
