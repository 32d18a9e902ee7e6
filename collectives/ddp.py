"""DistributedDataParallel communication hooks that allreduce gradient buckets with collsim.

A hook is a plain function ``hook(state, bucket) -> torch.futures.Future[torch.Tensor]`` (torch's
comm-hook protocol); :data:`HOOKS` is the registry, in the spirit of torch's ``DDPCommHookType``.
``state`` is a :class:`HookState` naming the process group and the collsim algorithm.

* ``allreduce`` — divide the bucket by the group size, then :func:`collectives.distributed.all_reduce`
  (SUM), asynchronously (the same numbers as DDP's default hook).
* ``fp16_compress`` / ``bf16_compress`` — the same on a half-precision copy of the bucket, decompressed
  into the bucket when done (half the bytes on the wire).

On CPU tensors the allreduce runs on collsim's background worker thread, so the backward pass keeps
computing while buckets are reduced; DDP waits on the returned futures at the end of backward.

Import this module before ``init_process_group`` (as ``examples/ddp_train.py`` does): it imports
``torch.distributed.nn.functional`` first, so that module's default arguments do not keep the world
group alive and ``destroy_process_group`` can stop Gloo's threads before the interpreter exits (see
the note at the imports).

Examples
--------
Under ``torchrun --nproc_per_node=2``::

    >>> model = DistributedDataParallel(net)                      # every rank
    >>> register(model, "allreduce", algorithm="ring")            # every rank
    >>> loss_fn(model(x), y).backward()                           # buckets go through collsim's ring
"""

# No ``from __future__ import annotations`` here: DDP checks the hooks' annotations at run time
# (``bucket: dist.GradBucket``, ``-> torch.futures.Future[torch.Tensor]``), so they must be objects.
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

# Before any process group exists, on purpose: torch.distributed.nn.functional binds
# ``group=group.WORLD`` as default arguments when it is first imported, and DDP imports it (through
# torch._dynamo) on first use. Imported after init_process_group it keeps the world group alive for
# the life of the process, so destroy_process_group cannot free it and Gloo's worker threads run on
# into interpreter shutdown; a worker that releases a finished allreduce there must take the GIL to
# free the tensor's Python object, and CPython ends such a thread, which aborts the process
# ("terminate called without an active exception"). Imported here, the defaults bind None.
import torch.distributed.nn.functional  # noqa: F401

from collectives.distributed import algorithms_for, all_reduce

__all__ = ["HookState", "HOOKS", "allreduce_hook", "fp16_compress_hook", "bf16_compress_hook", "register"]


@dataclass
class HookState:
    """What a hook needs: the process group (None: DDP's world) and the collsim algorithm."""

    group: dist.ProcessGroup | None = None
    algorithm: str = "auto"
    timeout: float | None = None

    def size(self) -> int:
        return dist.get_world_size(self.group)


def allreduce_hook(state: HookState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """Average the bucket across the group with collsim's allreduce (like DDP's default hook)."""
    tensor = bucket.buffer()
    tensor.div_(state.size())
    work = all_reduce(tensor, group=state.group, algorithm=state.algorithm, async_op=True, timeout=state.timeout)
    return work.get_future()


def _compress_hook(dtype: torch.dtype) -> Callable[[HookState, dist.GradBucket], torch.futures.Future[torch.Tensor]]:
    def hook(state: HookState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
        buffer = bucket.buffer()
        compressed = buffer.to(dtype).div_(state.size())
        work = all_reduce(compressed, group=state.group, algorithm=state.algorithm, async_op=True,
                          timeout=state.timeout)

        def decompress(fut: torch.futures.Future) -> torch.Tensor:
            buffer.copy_(fut.value())
            return buffer

        return work.get_future().then(decompress)

    return hook


fp16_compress_hook = _compress_hook(torch.float16)
fp16_compress_hook.__name__ = fp16_compress_hook.__qualname__ = "collsim_fp16_compress_hook"
fp16_compress_hook.__doc__ = "Allreduce a float16 copy of the bucket (divided first), then copy it back."
bf16_compress_hook = _compress_hook(torch.bfloat16)
# not "bf16_compress_hook": DDP refuses a hook of that name unless NCCL >= 2.10 (ours runs on Gloo too)
bf16_compress_hook.__name__ = bf16_compress_hook.__qualname__ = "collsim_bf16_compress_hook"
bf16_compress_hook.__doc__ = "Allreduce a bfloat16 copy of the bucket (divided first), then copy it back."

#: Hook name -> hook function.
HOOKS: dict[str, Callable[[Any, dist.GradBucket], torch.futures.Future[torch.Tensor]]] = {
    "allreduce": allreduce_hook,
    "fp16_compress": fp16_compress_hook,
    "bf16_compress": bf16_compress_hook,
}


def register(model: torch.nn.parallel.DistributedDataParallel, hook: str = "allreduce", algorithm: str = "auto",
             group: dist.ProcessGroup | None = None, timeout: float | None = None) -> HookState:
    """Register the named collsim hook on a DDP model; return its state.

    Raises
    ------
    ValueError
        Unknown hook or algorithm (the message lists the choices).
    """
    if hook not in HOOKS:
        raise ValueError(f"unknown hook {hook!r}; choose from: {', '.join(HOOKS)}")
    if algorithm not in algorithms_for("allreduce"):
        raise ValueError(f"unknown algorithm {algorithm!r}; choose from: {', '.join(algorithms_for('allreduce'))}")
    state = HookState(group=group if group is not None else model.process_group, algorithm=algorithm, timeout=timeout)
    model.register_comm_hook(state, HOOKS[hook])
    return state
