"""The examples' command lines: usage errors are one line from rank 0, status 2, before any work.

Alone (``python examples/...``) and under torchrun, where every rank parses the same arguments:
the message must appear once, as the example's last output, and every rank must exit with status 2
without a traceback (torchrun then prints its own failure summary, which the example cannot shorten).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def example(name: str, *args, cwd):
    return subprocess.run([sys.executable, str(ROOT / "examples" / name), *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name, args, message", [
    ("allreduce.py", ["--json", "/nonexistent/x.jsonl"], "--json: folder '/nonexistent' of '/nonexistent/x.jsonl' does not exist"),
    ("allreduce.py", ["--json", "."], "--json: '.' is a folder"),
    ("allreduce.py", ["-b", "3", "-e", "3"], "-b/--minbytes: size 3 B is smaller than one float32 element (4 B)"),
    ("allreduce.py", ["-b", "4", "-e", "64", "--dtype", "float64"], "smaller than one float64 element (8 B)"),
    ("allreduce.py", ["--dtype", "int8", "--op", "avg"], "--op avg needs a floating point --dtype, got int8"),
    ("allreduce.py", ["--algorithms", "rings"], "unknown algorithm(s) rings"),
    ("ddp_train.py", ["--steps", "0"], "--steps must be >= 1, got 0"),
    ("ddp_train.py", ["--algorithm", "rings"], "argument --algorithm: invalid choice: 'rings'"),
])
def test_usage_error_alone_is_one_line_and_status_2(tmp_path, name, args, message):
    out = example(name, *args, cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert lines == [f"{name}: error: {lines[0].split(': error: ', 1)[1]}"] and message in lines[0], out.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.slow  # three ranks start torch under torchrun: ~10 s on two idle cores
@pytest.mark.parametrize("args, message", [
    (["--dtype", "int8", "--op", "avg"], "allreduce.py: error: --op avg needs a floating point --dtype, got int8"),
    (["--algorithms", "rings"], "allreduce.py: error: argument --algorithms: unknown algorithm(s) rings"),
])
def test_usage_error_under_torchrun_prints_once_and_every_rank_exits_2(tmp_path, args, message):
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=3",
         str(ROOT / "examples" / "allreduce.py"), *args],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300,
    )
    text = out.stdout + out.stderr
    assert out.returncode != 0, text
    assert text.count(message) == 1, text
    # the example's last output: only torchrun's own lines follow it
    after = text.split(message, 1)[1].splitlines()[1:]
    assert not [line for line in after if re.match(r"allreduce\.py:|#|\s*\d", line)], after
    assert 'examples/allreduce.py", line' not in text  # no traceback from any rank
    codes = re.findall(r"exitcode\s*:\s*(-?\d+)", text)
    assert codes and codes[-1] == "2", text  # the root cause: a rank that exited with status 2
    assert set(codes) <= {"2", "-15"}, text  # the rest exited 2, or were stopped by torchrun after it
