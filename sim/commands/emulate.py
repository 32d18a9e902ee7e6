"""``collsim emulate up|down|status``: a topology as network namespaces and shaped veth links.

``up`` builds the emulation (:class:`topologies.emulate.Emulation`) and leaves it until ``down``;
``down`` removes emulations brought up by ``up`` (all, or those of ``--topology``) and leftovers of
crashed runs, never an emulation whose owning process is still running; ``status`` lists the
emulations and their namespaces. Needs root and the ``tbf`` qdisc; otherwise one line says why.
"""

from __future__ import annotations

import argparse

__all__ = ["NAME", "HELP", "add_arguments", "run"]

NAME = "emulate"
HELP = "emulate a topology with network namespaces and tc-shaped links (up, down, status)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("up", "down", "status"), help="bring up, tear down or list emulations")
    parser.add_argument(
        "--topology", metavar="SPEC", help="topology spec, e.g. switch:n=4,bandwidth=200Mbps (required for up)"
    )


def _matches(state: dict, spec: str | None) -> bool:
    return spec is None or state.get("spec") == spec


def run(args: argparse.Namespace) -> int:
    from sim.cli import UsageError
    from topologies import emulate

    if args.action == "up":
        if not args.topology:
            raise UsageError("collsim: error: emulate up needs --topology SPEC")
        import topologies

        G = topologies.from_spec(args.topology)
        for state in emulate.list_emulations():
            if state.get("alive") and state.get("spec") == args.topology:
                raise UsageError(
                    f"collsim: error: {args.topology!r} is already emulated as {state['prefix']}; "
                    f"run 'collsim emulate down --topology {args.topology}' first"
                )
        emu = emulate.Emulation(G, spec=args.topology, persistent=True)
        try:
            emu.up()
        except emulate.EmulationUnavailable as err:
            raise UsageError(f"collsim: error: {err}") from None
        print(f"emulation {emu.prefix} up: {G.graph.get('name')} ({len(emu.namespaces)} namespaces, {len(emu.links)} links)")
        _print_hosts(emu.describe())
        print(f"run a rank:  ip netns exec {emu.host_namespace(0)} env GLOO_SOCKET_IFNAME=host python ...")
        print(f"tear down:   collsim emulate down --topology {args.topology}")
        return 0

    reason = emulate.emulation_unavailable_reason()
    if reason is not None and args.action == "down":
        raise UsageError(f"collsim: error: {reason}")
    states = [s for s in emulate.list_emulations() if _matches(s, args.topology)]
    if args.action == "status":
        if not states:
            print("no emulations" + (f" of {args.topology!r}" if args.topology else ""))
            return 0
        for state in states:
            kind = "persistent" if state.get("persistent") else ("running" if state["alive"] else "leftover")
            print(
                f"{state['prefix']}  {kind}  {state.get('name') or '?'}  spec={state.get('spec') or '-'}  "
                f"pid={state.get('pid', '-')}  {len(state['present'])} namespaces"
            )
            _print_hosts(state)
            others = sorted(set(state["present"]) - {h["namespace"] for h in state.get("hosts", [])})
            if others:
                print("  forwarding: " + " ".join(others))
        return 0

    # down
    removed = []
    for state in states:
        if state["alive"] and not state.get("persistent"):
            continue  # owned by a live process (a test, a validation): it tears itself down
        removed.extend(emulate.remove_emulation(state["prefix"]))
    if args.topology is not None:  # leftovers of crashed runs go too
        for state in emulate.list_emulations():
            if not state["alive"]:
                removed.extend(emulate.remove_emulation(state["prefix"]))
    print(f"removed {len(removed)} namespaces" + (": " + " ".join(removed) if removed else ""))
    return 0


def _print_hosts(state: dict) -> None:
    for host in state.get("hosts", []):
        print(f"  rank {host['rank']:<4} {host['namespace']:<20} {host['address']:<15} node {host['node']}")
