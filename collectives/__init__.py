"""collsim collectives: schedules, algorithms, the checker, and the runtimes that execute them.

Ranks in a schedule are always *group-local*: positions ``0 .. p-1`` in the process group or
communicator the collective runs on. The runtimes translate them to global ranks where their
transport needs it.
"""

from collectives.algorithms import ALGORITHMS, algorithm_params, get_schedule
from collectives.checker import ScheduleError, VerifyReport, verify
from collectives.schedule import COLLECTIVES, Schedule, Step, chunk_offsets

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
