"""A reusable pool of torch.distributed worker processes for multi-process tests.

Starting a Gloo process group costs seconds (a process per rank, importing torch, a rendezvous);
running a collective costs milliseconds. :class:`WorkerPool` starts ``nprocs`` processes once, each
joined to one Gloo group through a ``FileStore`` (nothing leaves the machine), and then runs any
number of cases on them: :meth:`WorkerPool.run` sends a picklable function (a module-level function
of an importable module) to every rank and returns the per-rank results. A rank that raises, dies
or takes longer than the timeout makes :meth:`run` raise :class:`WorkerError` with the remote
traceback, and the pool is torn down so nothing is left hanging.

Workers are forked from a forkserver that has already imported torch, so a pool of 8 starts in
about a second. :func:`pool` keeps the pool of the most recent world size alive between tests.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing as mp
import os
import queue
import shutil
import tempfile
import time
import traceback
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

__all__ = ["WorkerError", "WorkerPool", "pool", "close_pools", "mp_context", "node_environment"]

#: Variables that place a rank on a node: collsim's overrides and torchrun's own.
NODE_VARIABLES = ("COLLSIM_LAYOUT", "COLLSIM_RANKS_PER_NODE", "COLLSIM_NICS_PER_NODE", "LOCAL_WORLD_SIZE",
                  "LOCAL_RANK", "GROUP_RANK")

_PRELOAD = ["torch", "torch.distributed", "collectives.distributed"]


class WorkerError(RuntimeError):
    """A case failed (or hung) on one or more ranks of a :class:`WorkerPool`."""


def mp_context() -> mp.context.BaseContext:
    """The multiprocessing context for workers: a forkserver that has imported torch."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def _worker_main(rank: int, nprocs: int, store_path: str, inbox, outbox, pg_timeout: float) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    store = dist.FileStore(store_path, nprocs)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=nprocs,
                            timeout=timedelta(seconds=pg_timeout))
    outbox.put((rank, True, "ready"))
    while True:
        msg = inbox.get()
        if msg is None:
            break
        fn, args, kwargs = msg
        try:
            outbox.put((rank, True, fn(*args, **kwargs)))
        except BaseException:  # report everything, keep serving
            outbox.put((rank, False, traceback.format_exc()))
    dist.destroy_process_group()


class WorkerPool:
    """``nprocs`` processes in one Gloo process group, running cases sent by :meth:`run`.

    Parameters
    ----------
    nprocs : int
        World size.
    pg_timeout : float
        The process group's timeout in seconds (bounds any blocked collective).
    start_timeout : float
        Seconds to wait for every rank to join.
    """

    def __init__(self, nprocs: int, pg_timeout: float = 60.0, start_timeout: float = 120.0):
        self.nprocs = nprocs
        self.pg_timeout = pg_timeout
        self._tmp = tempfile.mkdtemp(prefix="collsim-pool-")
        ctx = mp_context()
        self._inboxes = [ctx.Queue() for _ in range(nprocs)]
        self._outbox = ctx.Queue()
        store = os.path.join(self._tmp, "store")
        self._procs = [
            ctx.Process(target=_worker_main, args=(r, nprocs, store, self._inboxes[r], self._outbox, pg_timeout),
                        daemon=True, name=f"collsim-worker-{r}")
            for r in range(nprocs)
        ]
        for proc in self._procs:
            proc.start()
        try:
            self._collect(start_timeout, "start")
        except BaseException:
            self.close()
            raise

    @property
    def alive(self) -> bool:
        return bool(self._procs) and all(p.is_alive() for p in self._procs)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def _collect(self, timeout: float, what: str) -> list[Any]:
        results: dict[int, Any] = {}
        errors: dict[int, str] = {}
        deadline = time.monotonic() + timeout
        while len(results) + len(errors) < self.nprocs:
            left = deadline - time.monotonic()
            dead = [p.name for p in self._procs if not p.is_alive()]
            if left <= 0 or dead:
                missing = sorted(set(range(self.nprocs)) - set(results) - set(errors))
                self.close()
                why = f"dead workers {dead}" if dead else f"timed out after {timeout:.0f} s"
                detail = "".join(f"\n--- rank {r} ---\n{tb}" for r, tb in sorted(errors.items()))
                raise WorkerError(f"{what}: {why}; no answer from ranks {missing}{detail}")
            try:
                rank, ok, value = self._outbox.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if ok:
                results[rank] = value
            else:
                errors[rank] = value
                # the others may be blocked on the failed rank: give them a moment, then give up
                deadline = min(deadline, time.monotonic() + 10.0)
        if errors:
            detail = "".join(f"\n--- rank {r} ---\n{tb}" for r, tb in sorted(errors.items()))
            raise WorkerError(f"{what}: failed on ranks {sorted(errors)}{detail}")
        return [results[r] for r in range(self.nprocs)]

    def run(self, fn, *args, timeout: float = 300.0, **kwargs) -> list[Any]:
        """Call ``fn(*args, **kwargs)`` on every rank; return the results ordered by rank."""
        if not self.alive:
            raise WorkerError("the worker pool has been closed")
        for box in self._inboxes:
            box.put((fn, args, kwargs))
        return self._collect(timeout, getattr(fn, "__name__", str(fn)))

    def close(self) -> None:
        """Stop the workers (politely, then by force) and remove the store."""
        for proc, box in zip(self._procs, self._inboxes, strict=False):
            if proc.is_alive():
                try:
                    box.put(None)
                except (OSError, ValueError):
                    pass
        deadline = time.monotonic() + 5.0
        for proc in self._procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in self._procs:
            if proc.is_alive():
                proc.kill()
                proc.join(5.0)
        self._procs = []
        shutil.rmtree(self._tmp, ignore_errors=True)


@contextlib.contextmanager
def node_environment(env: dict[str, str], torchrun_local: int | None = None) -> Iterator[None]:
    """On a worker: place this rank on a node for the duration (and clear the runtime's caches).

    ``env`` sets variables (``COLLSIM_LAYOUT``, ``COLLSIM_TUNING``, ...); ``torchrun_local=k`` also sets what
    ``torchrun --nproc_per_node=k`` would on ``world / k`` nodes (``LOCAL_WORLD_SIZE``,
    ``LOCAL_RANK``, ``GROUP_RANK``). Every other placement variable is unset meanwhile.
    """
    import torch.distributed as dist

    import collectives.distributed as runtime

    env = dict(env)
    if torchrun_local is not None:
        rank = dist.get_rank()
        env.update(LOCAL_WORLD_SIZE=str(torchrun_local), LOCAL_RANK=str(rank % torchrun_local),
                   GROUP_RANK=str(rank // torchrun_local))
    saved = {k: os.environ.pop(k, None) for k in (*NODE_VARIABLES, *env)}
    os.environ.update(env)
    runtime.clear_cache()
    try:
        yield
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None)
            if v is not None:
                os.environ[k] = v
        runtime.clear_cache()


_current: WorkerPool | None = None


def pool(nprocs: int) -> WorkerPool:
    """The shared pool of ``nprocs`` workers, closing the previous one if its size differs."""
    global _current
    if _current is not None and (_current.nprocs != nprocs or not _current.alive):
        _current.close()
        _current = None
    if _current is None:
        _current = WorkerPool(nprocs)
    return _current


def close_pools() -> None:
    """Close the shared pool (registered with atexit too)."""
    global _current
    if _current is not None:
        _current.close()
        _current = None


atexit.register(close_pools)
