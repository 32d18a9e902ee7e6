"""Flow simulator at cluster scale: now ``python benchmarks/sim_scaling.py --cluster`` (this name is kept).

    python benchmarks/sim_scaling_cluster.py [--nodes 128 1024]   # the same as sim_scaling.py --cluster
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sim_scaling.py")
    os.execv(sys.executable, [sys.executable, script, "--cluster", *sys.argv[1:]])
