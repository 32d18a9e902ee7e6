"""Run collectives' transfers on SimGrid (s4u, CM02 max-min) and print when every rank finishes.

The oracle of ``tests/test_simgrid_oracle.py``. It runs under the Python that has SimGrid's
bindings (Debian's ``python3-simgrid``, usually ``/usr/bin/python3``), so it imports nothing from
collsim: it reads one JSON object on stdin and prints one JSON object on stdout.

Input: ``{"cases": [case, ...]}``, every case one of::

    {"platform": {"kind": "routes", "links": [[bandwidth B/s, latency s], ...],
                  "routes": [[src rank, dst rank, [link index, ...]], ...],
                  "latency": "links" | "receiver"},
     "steps": [[[src, dst, bytes], ...], ...], "eager_below": bytes}

with, instead of ``"routes"``, SimGrid's own clusters: ``{"kind": "fat_tree", "levels": 2,
"down": [4, 4], "up": [1, 4], "count": [1, 1], "bandwidth": B/s, "latency": s}`` (FAT_TREE,
ranks in SimGrid's host order) or ``{"kind": "torus", "dims": [4, 4], ...}`` (TORUS).

All cases run in one simulation, each on hosts and links of its own, so they cannot meet
(max-min sharing splits into independent parts). Each rank is an actor on its own host. In every
step that names it, a rank posts all its sends and receives of the step at once and waits for all
of them, as collsim's runtimes do; the transfer from ``a`` to ``b`` goes through the mailbox
``a>b``, so messages between two ranks match in step order. A send starts when its receiver has
posted the receive (rendezvous), or at once when it carries fewer than ``eager_below`` bytes (a
mailbox with a permanent receiver takes it ahead).

Latency: with ``"links"`` the links carry it and SimGrid applies its own convention (CM02: a
transfer waits its route's latency before it takes bandwidth, both ends finish when it has
arrived, and flows share a link in inverse proportion to their routes' latencies). With
``"receiver"`` the links carry none (plain max-min) and a receive is done its route's latency
after its last byte left, as in collsim's flow model; the sender is done when its last byte left.

Output: ``{"results": [{"finish": [seconds per rank], "time": seconds}, ...]}``.
"""

import json
import sys

import simgrid as sg


def build_routes(case, root, platform):
    """A full zone: one host per rank, one simplex link per collsim arc, the given routes."""
    zone = sg.NetZone.create_full_zone(f"case{case}")
    zone.set_parent(root)
    nranks = 1 + max(r for src, dst, _ in platform["routes"] for r in (src, dst))
    hosts = [zone.create_host(f"c{case}r{r}", 1e9).seal() for r in range(nranks)]
    receiver = platform.get("latency") == "receiver"
    links = []
    for k, (bandwidth, latency) in enumerate(platform["links"]):
        link = zone.create_link(f"c{case}a{k}", float(bandwidth))
        link.set_latency(0.0 if receiver else float(latency))
        links.append(link.seal())
    for src, dst, path in platform["routes"]:
        zone.add_route(hosts[src].netpoint, hosts[dst].netpoint, None, None,
                       [sg.LinkInRoute(links[k]) for k in path], False)
    zone.seal()
    return hosts


def build_cluster(case, root, platform):
    """SimGrid's own FAT_TREE or TORUS cluster, hosts in SimGrid's order (their ids)."""
    hosts = {}

    def set_netpoint(zone, coord, ident):
        host = zone.create_host(f"c{case}n{ident}", 1e9).seal()
        hosts[ident] = host
        return host.netpoint, None

    callbacks = sg.ClusterCallbacks(set_netpoint, None, None)  # no loopback or limiter links
    bandwidth, latency = float(platform["bandwidth"]), float(platform["latency"])
    if platform["kind"] == "fat_tree":
        params = sg.FatTreeParams(platform["levels"], platform["down"], platform["up"], platform["count"])
        zone = sg.NetZone.create_fatTree_zone(f"case{case}", root, params, callbacks, bandwidth, latency,
                                              sg.Link.SharingPolicy.SPLITDUPLEX)
    else:
        zone = sg.NetZone.create_torus_zone(f"case{case}", root, platform["dims"], callbacks, bandwidth, latency,
                                            sg.Link.SharingPolicy.SPLITDUPLEX)
    zone.seal()
    return [hosts[k] for k in sorted(hosts)]


def programs(steps, nranks):
    """Per rank, in step order: (sends [(dst, bytes)], receives [(src, bytes)]) of every step naming it."""
    program = [[] for _ in range(nranks)]
    for transfers in steps:
        mine = {}
        for src, dst, nbytes in transfers:
            if nbytes > 0:
                mine.setdefault(src, ([], []))[0].append((dst, int(nbytes)))
                mine.setdefault(dst, ([], []))[1].append((src, int(nbytes)))
        for rank, work in mine.items():
            program[rank].append(work)
    return program


def start(case, spec, hosts, results):
    """Create the ranks' actors of one case."""
    platform = spec["platform"]
    eager_below = float(spec.get("eager_below", 0))
    delay = {}  # (src, dst) -> the route's latency, when the receiver pays it
    if platform.get("latency") == "receiver":
        for src, dst, path in platform["routes"]:
            delay[src, dst] = sum(platform["links"][k][1] for k in path)
    program = programs(spec["steps"], len(hosts))
    finish = [0.0] * len(hosts)
    results.append({"finish": finish})

    def box(src, dst, nbytes):
        return sg.Mailbox.by_name(f"c{case}:{src}>{dst}" + ("!" if nbytes < eager_below else ""))

    def rank_main(rank):
        for sends, recvs in program[rank]:
            entered = sg.Engine.clock
            puts = [box(rank, dst, nbytes).put_async(rank, nbytes) for dst, nbytes in sends]
            gets = [box(src, rank, nbytes).get_async() for src, nbytes in recvs]  # (comm, buffer): keep both
            sg.Comm.wait_all(puts + [comm for comm, _ in gets])
            if delay:
                done = [comm.finish_time for comm in puts]
                done += [max(comm.finish_time + delay[src, rank], entered) for (comm, _), (src, _) in zip(gets, recvs, strict=True)]
                sg.this_actor.sleep_until(max(done))
        finish[rank] = sg.Engine.clock

    actors = {rank: sg.Actor.create(f"c{case}r{rank}", host, rank_main, rank)
              for rank, host in enumerate(hosts) if program[rank]}
    if eager_below > 0:
        for src, dst in {(src, dst) for transfers in spec["steps"] for src, dst, _ in transfers}:
            box(src, dst, 0).set_receiver(actors[dst])  # eager messages land ahead of the receive


def main():
    cases = json.load(sys.stdin)["cases"]
    engine = sg.Engine(["oracle", "--cfg=network/model:CM02", "--cfg=network/crosstraffic:0",
                        "--cfg=network/TCP-gamma:0", "--log=root.thres:critical"])
    root = sg.NetZone.create_full_zone("root")
    hosts = []
    for case, spec in enumerate(cases):
        build = build_routes if spec["platform"]["kind"] == "routes" else build_cluster
        hosts.append(build(case, root, spec["platform"]))
    root.seal()
    results = []
    for case, spec in enumerate(cases):
        start(case, spec, hosts[case], results)
    engine.run()
    for res in results:
        res["time"] = max(res["finish"])
    json.dump({"results": results}, sys.stdout)


if __name__ == "__main__":
    main()
