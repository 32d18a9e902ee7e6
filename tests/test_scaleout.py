"""Scale-out path: two torchrun "nodes" in two emulated host namespaces, torchrun's own rendezvous.

Each node is a network namespace of an emulated two-host switch; each runs
``torchrun --nnodes=2 --nproc-per-node=1 --rdzv-backend=c10d --rdzv-endpoint=<node 0>:29400``
with ``examples/allreduce.py``, exactly as on two real machines (the only emulation-specific
settings are the addresses and ``GLOO_SOCKET_IFNAME=host``, which :meth:`Emulation.run` sets).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from topologies.emulate import emulation_unavailable_reason

REASON = emulation_unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"emulation unavailable: {REASON}")

ROOT = Path(__file__).resolve().parents[1]


def test_two_torchrun_nodes_in_two_namespaces(tmp_path):
    import topologies
    from topologies.emulate import Emulation

    G = topologies.from_spec("switch:n=2,bandwidth=1Gbps")
    with Emulation(G) as emu:
        procs = []
        for node in range(2):
            argv = [
                sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
                "--rdzv-backend=c10d", f"--rdzv-endpoint={emu.host_address(0)}:29400", "--rdzv-id=collsim-scaleout",
                f"--local-addr={emu.host_address(node)}",
                # c10d decides who hosts the store by host name; in a namespace, say it
                f"--rdzv-conf=is_host={str(node == 0).lower()},join_timeout=60",
                str(ROOT / "examples" / "allreduce.py"), "-b", "64K", "-e", "1M", "-f", "4", "-n", "2", "-w", "1",
                "--algorithms", "ring,tree,recursive_halving,native", "--json", str(tmp_path / f"node{node}.jsonl"),
            ]
            procs.append(emu.run(node, argv, {"OMP_NUM_THREADS": "1"}, cwd=tmp_path,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        outputs = [p.communicate(timeout=150)[0] for p in procs]
    for node, (p, out) in enumerate(zip(procs, outputs, strict=True)):
        assert p.returncode == 0, f"node {node} failed:\n{out[-3000:]}"
    table = "\n".join(outputs)
    assert "nranks 2" in table, table
    rows = [line.split() for line in table.splitlines() if line.strip()[:1].isdigit() and len(line.split()) == 9]
    assert len(rows) == 3 * 4, table  # 3 sizes x 4 algorithms, printed by rank 0
    assert all(row[-1] == "0" for row in rows), table  # #wrong
    assert {row[4] for row in rows} == {"ring", "tree", "recursive_halving", "native"}
