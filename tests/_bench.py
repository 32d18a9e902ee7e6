"""Run a script of ``benchmarks/`` the way a user does, with this checkout importable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_benchmark(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python benchmarks/<script> args...`` from the repository root; its output captured as text."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def refused(script: str, *args: str) -> str:
    """The one-line error of ``benchmarks/<script>`` refusing ``args`` (exit status 2 asserted)."""
    proc = run_benchmark(script, *args)
    assert proc.returncode == 2, (args, proc.returncode, proc.stderr)
    return proc.stderr


def namespaces() -> set[str]:
    """Network namespaces that exist now (a test holds them before and after an emulation)."""
    return set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
