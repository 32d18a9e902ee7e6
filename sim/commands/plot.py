"""``collsim plot``: bus bandwidth and time against size from JSON-lines records, simulated and measured."""

from __future__ import annotations

import sys

NAME = "plot"
HELP = "plot busbw and time against size from JSON-lines files (simulated dashed, measured solid)"

__all__ = ["NAME", "HELP", "add_arguments", "run"]


def add_arguments(parser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE.jsonl", help="records written by --json (simulate, benchmarks)")
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="image to write (.png, .svg, .pdf, .jpg, ...)")
    parser.add_argument("--title", default=None, help="figure title")


def run(args) -> int:
    from sim.commands._args import check_output
    from sim.plots import plot_curves
    from sim.results import read_jsonl

    check_output(args.output, "-o/--output", figure=True)
    records = []
    for path in args.files:
        records.extend(read_jsonl(path))
    plot_curves(records, args.output, title=args.title)
    print(f"# plotted {len(records)} records from {len(args.files)} file(s) to {args.output}", file=sys.stderr)
    return 0
