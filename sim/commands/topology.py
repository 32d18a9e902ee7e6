"""``collsim topology SPEC``: build a topology, print its summary, optionally draw or save it.

The summary: counts of endpoints, GPUs, NICs, switches and links; machines (``nodes``: endpoints
that share a ``node``), NICs per node, the routing policy, each node's injection bandwidth (its NIC
links into the fabric), link bandwidths, bisection and diameter.

Example::

    collsim topology gpu_cluster:nodes=2,nics_per_node=4,fabric=fat_tree --draw cluster.png
    collsim topology fat_tree:k=4,bandwidth=100Gbps --draw fat_tree.png --save fat_tree.graphml
    collsim topology --list
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["NAME", "HELP", "add_arguments", "run"]

NAME = "topology"
HELP = "Build a topology from a spec string (or file) and print its summary; draw or save it."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from topologies import BUILDERS
    from topologies.io import FORMATS

    parser.add_argument(
        "spec",
        nargs="?",
        help=f"NAME[:key=value,...] with NAME one of: {', '.join(BUILDERS)}; or a .json/.graphml file",
    )
    parser.add_argument(
        "--draw",
        metavar="FILE.png",
        help="draw the topology to an image file (large graphs: a tier summary, or a plane of a 3-D lattice)",
    )
    parser.add_argument("--save", metavar="FILE", help=f"write the topology to a file ({', '.join(FORMATS)})")
    parser.add_argument(
        "--list", action="store_true", help="list the topologies and their parameters with defaults"
    )
    parser.epilog = (
        "units: bandwidth in bits or bytes per second (100Gbps, 400Gb/s, 50GB/s, 12.5e9bytes/s),\n"
        "latency in s, ms, us, ns (1us); a number without its unit is refused.\n"
        "The summary names the machines (endpoints sharing a node), NICs per node, the routing\n"
        "policy (routing=ecmp|dmodk|shortest|dor) and each node's injection bandwidth.\n"
        "Run with --list for every topology's parameters."
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def run(args: argparse.Namespace) -> int:
    from topologies import format_summary, from_spec, spec_help, summary

    if args.list:
        print(spec_help())
        return 0
    if not args.spec:
        raise ValueError("topology: give a SPEC such as fat_tree:k=4 (or --list for the choices)")
    # Check the output paths before any work, so a bad path leaves nothing behind.
    if args.save:
        from topologies.io import _format

        _format(args.save)
    from sim.commands._args import check_output

    check_output(args.save, "--save")
    check_output(args.draw, "--draw", figure=True)

    G = from_spec(args.spec)
    if G.number_of_nodes() > 5000:
        print(
            f"collsim topology: {G.number_of_nodes()} nodes, computing bisection and diameter ...",
            file=sys.stderr,
        )
    print(format_summary(summary(G)))
    if args.save:
        from topologies import save

        save(G, args.save)
        print(f"saved {args.save}")
    if args.draw:
        from topologies import draw
        from topologies.drawing import MAX_DRAWN_NODES, MAX_GRID_NODES, picture

        how = picture(G)
        draw(G, args.draw)
        if how == "summary":
            print(f"drew {args.draw} (a tier summary: {G.number_of_nodes()} nodes are too many to draw one by one, "
                  f"the bound is {MAX_DRAWN_NODES}, {MAX_GRID_NODES} on a grid)")
        elif how == "plane":
            print(f"drew {args.draw} (the plane z = 0: {G.number_of_nodes()} nodes are too many to draw one by one)")
        else:
            print(f"drew {args.draw}")
    return 0
