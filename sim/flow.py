"""Flow-level simulation of a schedule on a topology.

The simulator walks the *same* :class:`collectives.Schedule` the runtimes execute; it knows nothing
about any particular algorithm.

Model
-----
* **Ranks advance step by step**, as the runtimes do: rank ``r`` starts its next step (the next one
  that names it with a non-empty transfer; ranks skip the others) when it has finished the previous
  one, i.e. its sends of that step have left and its receives have arrived and been reduced, so the
  data it sends next is there. Transfers of zero bytes are dropped on both sides, as the runtimes do.
* **Rendezvous or eager**: a transfer starts when both its sender and its receiver have started the
  step, at ``start = max(ready[src], ready[dst])``. A transfer of fewer than
  ``ModelParams.eager_threshold`` bytes (default 0: none) is eager: it starts at ``ready[src]``,
  without waiting for its receiver, and the receiver's part is done at ``max(arrival,
  ready[dst])`` (plus its reduction), as an MPI eager message that waits in a buffer.
* **Per-message overhead**: the transfer's data starts to flow ``alpha`` seconds after ``start``.
* **Routing**: a transfer from rank ``i`` to rank ``j`` follows ``topologies.Router(G).route`` from
  ``endpoints[i]`` to ``endpoints[j]``.
* **Bandwidth sharing**: all flows in flight at the same time, whichever step they belong to, share
  every arc max-min fairly (progressive filling over the arcs they cross); the rates are
  recomputed whenever one of them starts or ends. An arc's capacity is ``bandwidth_efficiency * bandwidth``
  (:class:`sim.params.ModelParams`, which can also override bandwidth and latency per link role).
* **Duplex**: while the opposite arc of a link carries a flow of the same step, an arc keeps
  ``duplex_efficiency`` of its capacity (default 1: full duplex, as NVLink, InfiniBand and Ethernet
  are). TCP over a shaped link is not: each direction's acknowledgements queue behind the other
  direction's data, and ``collsim calibrate`` measures the share from exchanges against one-way
  transfers of the same pairs. On the event clock the share applies once both arcs of a link have
  carried flows in the window.
* **Latency**: the last byte leaves the sender at ``E``; it arrives at ``A = E + sum(latency)`` of
  the route's arcs. The sender's part of the transfer is done at ``E``, the receiver's at ``A``,
  plus ``gamma * bytes`` when the transfer is reduced. Reductions of different received messages do
  not wait for each other (a rank reduces every message as soon as it arrives).
* **Receipts** (the torch runtime's large messages whose sender's next step adds a partner:
  :func:`collectives.execution.receipts`): the sender's part of a receipted transfer is done when
  the receiver's receipt is back, at ``max(A, receiver ready) + posted_alpha + latency``.
* A rank's step ends when all its parts of the step's transfers are done; the collective ends when
  the last rank ends.

Flows of *different* steps share links too. When ranks drift apart (ECMP collisions, unequal links,
pipelined trees, eager sends), a rank that finished a step early starts its next one while late
ranks' flows of the step before still cross the links between switches; both get their max-min
share. (Issue 16: recursive doubling on an ECMP leaf-spine, 1 MiB, takes 591 us; costing steps one
after the other said 511 us; SimGrid says 595 us with its own latency convention and 591 us with
this one. ``tests/test_simgrid_oracle.py`` holds the model against SimGrid on 81 cases.)

How (see Scale): steps are simulated one after the other from the ranks' ready times, which is
exact as long as no flow starts on an arc before a flow of an earlier step has left it, and every
step's flows are checked for that. At the first step where it fails, the run goes back to the last
instant when all ranks were ready together (the start, or the end of a lock-step step) and from
there every transfer of every step runs on one event clock, until all ranks are again ready
together with nothing in flight (then the step loop takes over again) or the collective ends.

Max-min sharing is not monotone: giving one flow more bandwidth can take a shared link's capacity
from a flow on the critical path, so more bandwidth on one link can (rarely, slightly) make a
collective slower (``tests/test_sim_flow.py`` keeps such a case). The property tests check that
faster links everywhere, or one faster link where a step's flows have links of their own and no
flows of different steps meet, never do.

On a fully connected topology with identical links, every transfer has a link of its own, so a step
costs ``alpha + latency + bytes / bandwidth (+ gamma * bytes)``: exactly the analytic model
(:mod:`sim.analytic`), which the tests check to 1e-9.

Scale
-----
Everything is vectorised per step (numpy arrays of transfers, scipy.sparse incidence of flows on
arcs). Routes are cached per rank pair and the compiled flows of a step are cached per
:attr:`collectives.Step.key`. What a step's flows cross (:class:`_Incidence`: the arcs used, the
incidence, the groups of flows that share arcs) is built once per (src, dst) arrays and shared by
every protocol view of a GPU network (:mod:`sim.protocols` costs LL, LL128 and Simple on the same
routes) and by repeated simulations.

* When all ranks are in lock-step and a step's pattern has been costed before from a lock-step
  start, the step is not simulated again: its duration is added.
* A step pattern whose flows never share an arc (a ring on a switch or a fat tree) is costed with
  one vectorised update per step: each flow runs at the rate of its slowest arc.
* Flows that share arcs are split into independent groups (flows that share an arc during time
  windows that may overlap; found by a compiled sweep over the arcs that several flows cross,
  :func:`sim.eventclock.overlap_groups`). A flow alone in its group runs at its bottleneck's
  rate; every other group runs its own event clock, compiled (:mod:`sim.eventclock`): the large
  groups one after the other while the step's exact events (below) last, then the small groups
  and the large ones left, each on its own clock. A step that starts unevenly and has no large
  group is grouped and run in one compiled call (:func:`sim.eventclock.step_groups`). A run whose
  steps never share an arc loads no compiled code.
* Per event, the max-min rates are found by progressive filling over the arcs (the lowest
  ``capacity left / flows left`` freezes the flows that cross it): a scan of the arcs for the first
  rounds, then a heap of the arcs' shares.
* Exactness has a bound: after ``EXACT_EVENTS`` (64) rate recomputations in one step, flow starts
  and ends closer together than ``EVENT_WINDOW`` (10 %) of the step's shortest transfer time are
  merged into one event. Only long pipelines of ranks that drift apart (a segmented tree on a
  thousand ranks) get there; there it changes the predicted time by under 1 % (0.6 % for a
  256 MiB tree allreduce on ``fat_tree:k=16``) and makes it several times faster.
* The overlap check keeps, per arc, when the flows since the last lock-step point leave it; a
  run of steps with the same pattern whose flows never share an arc (a ring whose ranks drift) is
  checked per flow, since on its arcs a flow follows only its own earlier copies.
* The event clock across steps (``_Clock``) generates steps as the first rank reaches them and
  drops them when every rank is through. The live steps' transfers are rows of one table and every
  live step has a row in (step, rank) tables (entered when, parts left, sends, receives). The
  events run compiled (:mod:`sim.eventclock`, numba): per event, loops over the flows in flight
  instead of tens of small array operations. When flows start or end, it recomputes the rates of
  the flows connected to them through shared arcs only. Its exactness has a bound too: after
  ``CLOCK_EXACT_EVENTS`` (16) rate recomputations per step generated, events closer than
  ``EVENT_WINDOW`` of the shortest transfer time of the steps in progress are merged; a flow
  started early by that is given as much more to send, so its own end does not move. A 256 MiB
  tree allreduce on ``fat_tree:k=16,routing=ecmp`` then takes 4,700 rate recomputations instead
  of 114,000, and its time moves by 0.1 %. A lock-step run never needs the clock; a drifting one
  costs more than the step loop (``benchmarks/sim_scaling.py`` measures both).

Examples
--------
>>> import topologies
>>> from collectives import get_schedule
>>> net = Network(topologies.fully_connected(4, bandwidth=1e9, latency=1e-6), ModelParams(alpha=0, gamma=0))
>>> r = simulate(get_schedule("allreduce", "ring", 4), net, 4_000_000)
>>> round(r.time * 1e6, 3)  # 6 steps of (1 us + 1 MB / 1 GB/s)
6006.0
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from collectives.execution import Execution
from collectives.schedule import Schedule
from sim.params import DEFAULT_PARAMS, ModelParams
from sim.results import busbw_factor

__all__ = ["Network", "SimResult", "simulate", "element_count", "load_compiled"]

_REL = 1e-12  # relative tolerance for "the same instant"

#: Groups of interacting flows larger than this get an event loop of their own.
LARGE_GROUP = 32
#: Rate recomputations per step that are always exact (see ``_one_clock_events``).
EXACT_EVENTS = 64
#: Exact rate recomputations of the event clock per step it generates (then as ``EVENT_WINDOW``).
CLOCK_EXACT_EVENTS = 16
#: The event clock drops the transfers of the steps every rank is through once there are this many and
#: they are at least half of its table (the ids of the others stay as they are).
CLOCK_COMPACT = 4096
#: Past :data:`EXACT_EVENTS`, events closer than this fraction of the step's shortest transfer
#: time are merged.
EVENT_WINDOW = 0.1


class Network:
    """A topology compiled for simulation: arc arrays, capacities and cached routes.

    Build one per (topology, parameters) and reuse it across algorithms and sizes: routes are
    cached per rank pair.

    Parameters
    ----------
    G : networkx.DiGraph
        A topology (``topologies`` contract).
    params : ModelParams, optional
        Model parameters (default :data:`sim.params.DEFAULT_PARAMS`).
    router : topologies.Router, optional
        Router to use (default ``topologies.Router(G)``).
    """

    def __init__(self, G: nx.DiGraph, params: ModelParams | None = None, router=None):
        import topologies

        if not isinstance(G, nx.DiGraph):
            raise TypeError(f"topology must be a networkx.DiGraph, got {type(G).__name__}")
        self.params = params if params is not None else DEFAULT_PARAMS
        self.router = router if router is not None else topologies.Router(G)  # validates G
        self.G = G
        self.name = str(G.graph.get("name", "topology"))
        self.endpoints = list(G.graph["endpoints"])
        # one pass over the arcs in G.edges order (the adjacency directly: 3x faster than the edge view at a
        # million arcs), each distinct (value, role) through the parameters once
        data = [(u, v, d["bandwidth"], d["latency"], d.get("role")) for u, nbrs in G._succ.items() for v, d in nbrs.items()]
        self.arcs: list[tuple] = [(u, v) for u, v, *_ in data]
        self.arc_index: dict = {a: i for i, a in enumerate(self.arcs)}
        p = self.params
        capacity: dict = {}
        latency: dict = {}
        for _, _, bw, lat, role in data:
            if (bw, role) not in capacity:
                capacity[bw, role] = p.effective_bandwidth(bw, role)
            if (lat, role) not in latency:
                latency[lat, role] = p.arc_latency(lat, role)
        self.capacity = np.array([capacity[bw, role] for _, _, bw, _, role in data], dtype=float)
        self.latency = np.array([latency[lat, role] for _, _, _, lat, role in data], dtype=float)
        del data
        #: per arc: the index of the opposite arc of its link (-1: none) and the capacity factor while
        #: that arc carries a flow too (``ModelParams.duplex_efficiency``; None when every factor is 1)
        self.duplex: np.ndarray | None = None
        self.reverse = np.full(len(self.arcs), -1, dtype=np.int64)
        if p.has_duplex:
            self.duplex = np.array([p.duplex_factor(d.get("role")) for *_, d in G.edges(data=True)], dtype=float)
            self.reverse = np.array([self.arc_index.get((v, u), -1) for u, v in self.arcs], dtype=np.int64)
        self._pairs: dict[tuple[int, int], np.ndarray] = {}
        self._blocks: dict = {}  # routes(): (src, dst) bytes -> ((arcs, lengths), entries)
        self._incidence: dict = {}  # incidence(): (src, dst) bytes -> (_Incidence, entries); shared like _blocks

    def __repr__(self) -> str:
        return f"Network({self.name!r}, {len(self.endpoints)} endpoints, {len(self.arcs)} arcs)"

    def capacities(self, arcs: np.ndarray) -> np.ndarray:
        """Capacity of ``arcs`` (distinct arc indices) used together: an arc whose opposite arc is
        among them gets its ``duplex_efficiency`` share (:class:`sim.params.ModelParams`)."""
        cap = self.capacity[arcs]
        if self.duplex is not None and arcs.size:
            both = np.isin(self.reverse[arcs], arcs)
            cap[both] *= self.duplex[arcs[both]]
        return cap

    def check_ranks(self, nranks: int) -> None:
        """Raise ValueError when the topology has fewer endpoints than ``nranks``."""
        if nranks > len(self.endpoints):
            raise ValueError(
                f"topology {self.name!r} has {len(self.endpoints)} endpoints; cannot place {nranks} ranks on it"
            )

    def path(self, i: int, j: int) -> np.ndarray:
        """Arc indices of the route from rank ``i`` to rank ``j`` (cached)."""
        key = (i, j)
        arcs = self._pairs.get(key)
        if arcs is None:
            route = self.router.route(self.endpoints[i], self.endpoints[j])
            arcs = np.fromiter((self.arc_index[a] for a in route), dtype=np.int64, count=len(route))
            self._pairs[key] = arcs
        return arcs

    def route_latency(self, i: int, j: int) -> float:
        """Summed arc latency (s) of the route from rank ``i`` to rank ``j``."""
        return float(self.latency[self.path(i, j)].sum())

    def routes(self, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Routes of the flows ``src[k] -> dst[k]`` as ``(arcs, lengths)``: flow ``k``'s arc indices follow
        flow ``k - 1``'s. Routed all together (:meth:`topologies.Router.route_arcs`) and cached per
        (src, dst) arrays, so the protocol views of a GPU network (:mod:`sim.protocols`) share them."""
        src, dst, key, hit = _cached(self._blocks, src, dst)
        if hit is not None:
            return hit
        if hasattr(self.router, "route_arcs"):
            indptr, arcs = self.router.route_arcs(src, dst)
            out = (arcs, np.diff(indptr))
        else:
            paths = [self.path(i, j) for i, j in zip(src.tolist(), dst.tolist(), strict=True)]
            lengths = np.fromiter((len(q) for q in paths), dtype=np.int64, count=len(paths))
            out = (np.concatenate(paths) if paths else np.zeros(0, dtype=np.int64), lengths)
        _bounded_put(self._blocks, key, out, out[0].size)
        return out

    def incidence(self, src: np.ndarray, dst: np.ndarray) -> _Incidence:
        """Which arcs the flows ``src[k] -> dst[k]`` cross, whatever the capacities (cached per (src, dst)
        arrays, like :meth:`routes`, and shared by the protocol views of a GPU network)."""
        src, dst, key, hit = _cached(self._incidence, src, dst)
        if hit is not None:
            return hit
        out = _Incidence(self, src, dst, *self.routes(src, dst))
        _bounded_put(self._incidence, key, out, out.flat.size)
        return out

    def compile(self, src: np.ndarray, dst: np.ndarray) -> _Pattern:
        """Compile the flows ``src[k] -> dst[k]`` (rank arrays) into an incidence pattern."""
        return _Pattern(self, src, dst, self.incidence(src, dst))


#: Route and incidence caches of a :class:`Network` keep at least this many step patterns, and more
#: (oldest dropped first) while they hold fewer than :data:`CACHE_ENTRIES` arc entries in all.
CACHE_PATTERNS = 64
CACHE_ENTRIES = 1 << 23


def _cached(cache: dict, src, dst) -> tuple:
    """``(src, dst, key, value or None)``: the flows as int64 arrays, their cache key, and what
    ``cache`` (filled by :func:`_bounded_put`) holds for them."""
    src = np.ascontiguousarray(src, dtype=np.int64)
    dst = np.ascontiguousarray(dst, dtype=np.int64)
    key = (src.tobytes(), dst.tobytes())
    hit = cache.get(key)
    return src, dst, key, (hit[0] if hit is not None else None)


def _bounded_put(cache: dict, key, value, entries: int) -> None:
    """``cache[key] = value``, dropping the oldest entries beyond the bounds above (``entries``: its arc entries)."""
    cache[key] = (value, entries)
    total = sum(n for _, n in cache.values())
    while len(cache) > CACHE_PATTERNS and total > CACHE_ENTRIES:
        total -= cache.pop(next(iter(cache)))[1]


def net_ranks(src: np.ndarray, dst: np.ndarray) -> int:
    """Number of ranks a step involves when ``src`` and ``dst`` are the same set, else -1."""
    if src.size == 0:
        return 0
    top = int(max(src.max(), dst.max())) + 1
    return top if np.array_equal(np.sort(src), np.arange(top)) and np.array_equal(np.sort(dst), np.arange(top)) else -1


class _Incidence:
    """The arcs the flows of one step pattern cross: everything about them that capacities do not change.

    Built once per (src, dst) arrays by :meth:`Network.incidence` and shared by every
    :class:`_Pattern` of them (the protocol views of a GPU network, repeated simulations).
    """

    def __init__(self, net: Network, src: np.ndarray, dst: np.ndarray, flat: np.ndarray, lengths: np.ndarray):
        nflows = src.shape[0]
        if nflows and lengths.min() == 0:
            k = int(np.argmin(lengths))
            raise ValueError(f"ranks {src[k]} and {dst[k]} run on the same node of {net.name!r}; give every rank its own endpoint")
        self.flat = flat
        # global ids of the arcs used (ascending) and every entry's local index: np.unique without a sort
        used = np.zeros(len(net.arcs), dtype=bool)
        used[flat] = True
        self.arcs = np.flatnonzero(used)
        local = np.cumsum(used) - 1
        self.indices = local[flat].astype(np.int64, copy=False)
        self.indptr = np.zeros(nflows + 1, dtype=np.int64)
        np.cumsum(lengths, out=self.indptr[1:])
        self.lengths = lengths
        self.rows = np.repeat(np.arange(nflows, dtype=np.int64), lengths)
        self.load = np.bincount(self.indices, minlength=self.arcs.size)
        self.disjoint = bool(self.load.max(initial=0) <= 1)
        self.src_unique = _distinct(src)
        self.dst_unique = _distinct(dst)
        self.nranks_involved = int(np.count_nonzero(np.bincount(np.concatenate([src, dst]), minlength=1)))
        #: every rank sends exactly once and receives exactly once
        self.perm = self.src_unique and self.dst_unique and nflows == net_ranks(src, dst)
        #: the entries on arcs that more than one flow crosses: the only ones that can group flows
        self.shared_entries = np.flatnonzero(self.load[self.indices] > 1)
        self.by_arc = None  # (flows, arcs) of the shared entries sorted by arc (found when first needed)
        self._MT = None
        self._sharing = None
        self.nshared = 0  # flows in sharing groups of more than one flow
        self._layout = None  # _group_layout of the flows in sharing groups of several, all starting together

    @property
    def MT(self):
        """arcs x flows incidence (scipy.sparse), built when first asked."""
        if self._MT is None:
            from scipy.sparse import csr_array

            self._MT = csr_array((np.ones(self.flat.size), (self.indices, self.rows)),
                                 shape=(self.arcs.size, self.lengths.size))
        return self._MT

    def sharing(self) -> np.ndarray:
        """Connected components of "shares an arc with" over the flows (labels as ``connected_components``)."""
        if self._sharing is None:
            from scipy.sparse import coo_array
            from scipy.sparse.csgraph import connected_components

            nflows = self.lengths.size
            first = np.empty(self.arcs.size, dtype=np.int64)
            first[self.indices[::-1]] = self.rows[::-1]  # the first flow on every arc
            graph = coo_array((np.ones(self.rows.size), (self.rows, first[self.indices])), shape=(nflows, nflows))
            self._sharing = connected_components(graph, directed=False)[1]
            self.nshared = int(np.count_nonzero(np.bincount(self._sharing)[self._sharing] > 1))
        return self._sharing


def _distinct(ranks: np.ndarray) -> bool:
    """True when no rank appears twice in ``ranks``."""
    return ranks.size == 0 or int(np.bincount(ranks, minlength=1).max()) <= 1


class _Pattern:
    """The flows of one step pattern on one network: an :class:`_Incidence` with capacities and latencies."""

    def __init__(self, net: Network, src: np.ndarray, dst: np.ndarray, inc: _Incidence):
        self.src, self.dst = src, dst
        self.inc = inc
        nflows = src.shape[0]
        self.arcs, self.indptr, self.indices, self.lengths, self.rows = inc.arcs, inc.indptr, inc.indices, inc.lengths, inc.rows
        self.disjoint, self.src_unique, self.dst_unique = inc.disjoint, inc.src_unique, inc.dst_unique
        self.nranks_involved, self.perm = inc.nranks_involved, inc.perm
        self.cap = net.capacities(self.arcs)
        self.latency = np.add.reduceat(net.latency[inc.flat], self.indptr[:-1]) if nflows else np.zeros(0)
        self.static_rate = np.minimum.reduceat(self.cap[self.indices], self.indptr[:-1]) if nflows else np.zeros(0)
        self.worst_rate = None  # per flow, the least of capacity / flows crossing over its arcs (found when first needed)
        self.flow_bytes = np.zeros(nflows)  # bytes carried by each flow, summed over the steps using the pattern
        #: per flow (alpha + transfer time, latency + reduction, latency, reduction, bytes, eager or None,
        #: alpha), when chunks are equal and flows disjoint
        self.pre = None
        self.uses = 0  # steps costed through ``pre``

    @property
    def MT(self):
        """arcs x flows incidence (scipy.sparse)."""
        return self.inc.MT

    def run(self, start: np.ndarray, size: np.ndarray) -> np.ndarray:
        """Times at which each flow's last byte leaves (flows start at ``start`` with ``size`` bytes).

        Fluid max-min fair sharing, recomputed at every flow start and end. Flows that can never be
        in flight together on a common arc do not influence each other, so the flows are first
        split into independent groups (connected components of "shares an arc with, during a time
        window that may overlap"); every group then runs its own event clock, and all groups advance
        together, one vectorised event per iteration. A flow alone in its group needs no clock: it
        runs at its bottleneck's rate. Only arcs that several flows cross can group flows, so the
        grouping looks at those alone.
        """
        if self.disjoint:
            return start + size / self.static_rate
        if start.min() == start.max():
            # flows that start together overlap in time wherever they share an arc: the groups are the
            # pattern's own (cached)
            comp = self.inc.sharing()
        else:
            # the groups depend on when each flow can run; a step without a large group runs in the same call
            end, comp = self._step_groups(start, size)
            if end.size:
                return end
        counts = np.bincount(comp)
        # a flow alone in its group runs at its bottleneck's rate: what its own event loop would give, to the bit
        alone = counts[comp] == 1
        end = np.where(alone, start + size / self.static_rate, 0.0)
        # large groups get an event loop of their own while the step's exact events last, one after the other
        large = np.flatnonzero(counts > LARGE_GROUP)
        budget = [EXACT_EVENTS]  # exact rate recomputations left for this step
        done = np.zeros(counts.size, dtype=bool)
        for g in large.tolist():
            if budget[0] <= 0:
                break
            mine = np.flatnonzero(comp == g)
            end[mine] = _one_clock_events(self, start, size, mine, budget)
            done[g] = True
        # The large groups left merge close events from their first event on (the budget is spent);
        # they and the small groups (always exact) share one vectorised loop, each with its own clock.
        rest = np.flatnonzero(~(done[comp] | alone))
        if rest.size:
            late = large[~done[large]]
            window = None
            if late.size:
                shortest = np.full(counts.size, np.inf)
                np.minimum.at(shortest, comp, size / self.static_rate)
                window = np.zeros(counts.size)
                window[late] = EVENT_WINDOW * shortest[late]
            end[rest] = _grouped_events(self, comp, start, size, rest, window)
        return end

    def _worst_rate(self) -> np.ndarray:
        """Per flow, the least over its arcs of capacity / flows crossing (its share at worst); cached."""
        if self.worst_rate is None:
            share = self.cap / np.maximum(self.inc.load, 1)
            self.worst_rate = np.minimum.reduceat(share[self.indices], self.indptr[:-1])
        return self.worst_rate

    def _step_groups(self, start: np.ndarray, size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Group flows that start unevenly and run the step if no group is large, compiled
        (:func:`sim.eventclock.step_groups`): the end times (empty when a group is large) and the labels.

        A flow gets at least the least over its arcs of capacity / flows crossing: its latest end. Per
        arc that several flows cross, a flow joins the group of the flow with the latest latest end
        before it, if it starts before that end (:func:`sim.eventclock.overlap_groups`)."""
        from sim.eventclock import note_first_compile, step_groups

        note_first_compile()
        inc = self.inc
        if inc.by_arc is None:
            # the (flow, arc) of the shared entries by arc, then by entry
            entries = inc.shared_entries[np.argsort(self.indices[inc.shared_entries], kind="stable")]
            inc.by_arc = (self.rows[entries], self.indices[entries])
        f64 = np.float64
        return step_groups(*inc.by_arc, np.asarray(start, dtype=f64),
                           np.asarray(size, dtype=f64), self._worst_rate(), self.static_rate, self.indptr, self.indices,
                           np.asarray(self.cap, dtype=f64), LARGE_GROUP)


def _arcs_of(pat: _Pattern, flows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The arcs of ``flows``, in that order: flow ``flows[k]`` crosses ``earc[eptr[k]:eptr[k + 1]]``."""
    lens = pat.lengths[flows]
    eptr = np.zeros(flows.size + 1, dtype=np.int64)
    np.cumsum(lens, out=eptr[1:])
    return eptr, pat.indices[np.repeat(pat.indptr[flows] - eptr[:-1], lens) + np.arange(eptr[-1])].astype(np.int64)


def _one_clock_events(pat: _Pattern, start: np.ndarray, size: np.ndarray, flows: np.ndarray,
                      budget: list[int]) -> np.ndarray:
    """Event-driven max-min sharing of flows that form one group (:func:`sim.eventclock.group_events`, compiled).

    Exact while the step's ``budget`` of exact rate recomputations (:data:`EXACT_EVENTS`) lasts. Past that (long
    pipelines whose ranks have drifted apart, such as a segmented tree on thousands of ranks), flow
    starts and ends closer together than :data:`EVENT_WINDOW` times the shortest transfer time of
    the group are handled as one event, which bounds the work per step.
    """
    from sim.eventclock import group_events, note_first_compile

    note_first_compile()
    order = flows[np.argsort(start[flows], kind="stable")]
    eptr, earc = _arcs_of(pat, order)
    arcs, earc = np.unique(earc, return_inverse=True)  # the group's arcs renumbered 0..m-1 (small scratch)
    window = EVENT_WINDOW * float(np.min(size[flows] / pat.static_rate[flows]))
    end, budget[0] = group_events(start[order].astype(float), size[order].astype(float), eptr,
                                  earc.ravel().astype(np.int64), pat.cap[arcs].astype(float), budget[0], window)
    out = np.empty(size.shape[0])
    out[order] = end
    return out[flows]


def _group_layout(pat: _Pattern, comp: np.ndarray, start: np.ndarray, flows: np.ndarray) -> tuple:
    """``flows`` sorted by group, then start (``order`` into ``flows``, ``perm`` the flows), their arcs
    (``eptr``, ``earc``) and every group's first flow (``fptr``)."""
    groups, labels = np.unique(comp[flows], return_inverse=True)
    order = np.lexsort((start[flows], labels))  # by group, then by start
    perm = flows[order]
    eptr, earc = _arcs_of(pat, perm)
    fptr = np.searchsorted(labels[order], np.arange(groups.size + 1)).astype(np.int64)
    return groups, order, perm, eptr, earc, fptr


def _grouped_events(pat: _Pattern, comp: np.ndarray, start: np.ndarray, size: np.ndarray,
                    flows: np.ndarray, window: np.ndarray | None = None) -> np.ndarray:
    """Event-driven max-min sharing of ``flows``, each group with its own clock (see ``_Pattern.run``;
    compiled: :func:`sim.eventclock.grouped_events`).

    ``comp`` labels the groups of all flows of the pattern; returns the end times of ``flows``.
    ``window`` (indexed by ``comp`` label), when given, merges each group's flow starts and ends
    closer than that into one event, as :func:`_one_clock_events` does once its budget is spent.
    """
    from sim.eventclock import grouped_events, note_first_compile

    note_first_compile()
    inc = pat.inc
    if comp is inc._sharing and flows.shape[0] == inc.nshared and start.min() == start.max():
        # every flow that shares a group, all starting together, in the pattern's own groups: the same layout every time
        if inc._layout is None:
            inc._layout = _group_layout(pat, comp, start, flows)
        groups, order, perm, eptr, earc, fptr = inc._layout
    else:
        groups, order, perm, eptr, earc, fptr = _group_layout(pat, comp, start, flows)
    windows = np.zeros(groups.size) if window is None else window[groups].astype(float)
    f64 = np.float64
    end = grouped_events(fptr, np.asarray(start[perm], dtype=f64), np.asarray(size[perm], dtype=f64), eptr, earc,
                         np.asarray(pat.cap, dtype=f64), windows)
    out = np.empty(flows.shape[0])
    out[order] = end
    return out


# ---------------------------------------------------------------- one event clock across steps


def _ranges(ptr: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(ptr[r], ptr[r + 1])`` for every ``r`` in ``rows`` (a CSR row gather)."""
    first = ptr[rows]
    lens = ptr[rows + 1] - first
    total = int(lens.sum())
    if total == rows.size and (lens == 1).all():
        return first  # one entry per row, the common case
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    return np.repeat(first - np.cumsum(lens) + lens, lens) + np.arange(total)


def _table(values: np.ndarray, ptr: np.ndarray) -> np.ndarray:
    """CSR rows ``values[ptr[r]:ptr[r + 1]]`` as the rows of a 2-D array padded with -1 (gathered in one go)."""
    lens = np.diff(ptr)
    out = np.full((lens.size, max(int(lens.max(initial=0)), 1)), -1, dtype=np.int64)
    rows = np.repeat(np.arange(lens.size), lens)
    out[rows, np.arange(values.size) - ptr[rows]] = values
    return out


def _gather(table: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The entries of ``table``'s ``rows``, in order, without the padding (see :func:`_table`)."""
    out = table[rows].ravel()
    return out if table.shape[1] == 1 and out.size and out.min() >= 0 else out[out >= 0]


class _LiveStep:
    """One step as the event clock sees it: where its transfers lie in the clock's transfer table and its
    row in the clock's per-(step, rank) tables."""

    def __init__(self, index: int, row: int, base: int, n: int, shortest: float):
        self.index = index
        self.row = row  # the step's row in the clock's (step, rank) tables
        self.base = base  # its transfers are the clock's transfers base .. base + n - 1
        self.n = n
        self.shortest = shortest  # shortest transfer time of the step, alone on its route


class _Table:
    """Columns of one length (1-D, and one 2-D ``arcs`` padded with -1), appended at the end and dropped
    from the front: :class:`_Clock`'s transfers."""

    def __init__(self, **columns):
        self.fills = {name: fill for name, (_dtype, fill) in columns.items()}
        self.n = 0
        for name, (dtype, fill) in columns.items():
            setattr(self, name, np.full(1024, fill, dtype=dtype))
        self.arcs = np.full((1024, 1), -1, dtype=np.int64)

    def append(self, n: int, arcs: np.ndarray, **values) -> int:
        """Add ``n`` rows (every column given); returns the first."""
        first, size = self.n, self.arcs.shape[0]
        width = max(self.arcs.shape[1], arcs.shape[1])
        if first + n > size or width > self.arcs.shape[1]:
            size = max(2 * size, first + n) if first + n > size else size
            for name, fill in self.fills.items():
                col = np.full(size, fill, dtype=getattr(self, name).dtype)
                col[:first] = getattr(self, name)[:first]
                setattr(self, name, col)
            wide = np.full((size, width), -1, dtype=np.int64)
            wide[:first, :self.arcs.shape[1]] = self.arcs[:first]
            self.arcs = wide
        for name, value in values.items():
            getattr(self, name)[first:first + n] = value
        self.arcs[first:first + n, :arcs.shape[1]] = arcs
        self.n += n
        return first

    def drop(self, k: int) -> None:
        """Drop the first ``k`` rows (the others move down by ``k``)."""
        n = self.n
        for name, fill in self.fills.items():
            col = getattr(self, name)
            col[:n - k] = col[k:n].copy()
            col[n - k:n] = fill
        self.arcs[:n - k] = self.arcs[k:n].copy()
        self.arcs[n - k:n] = -1
        self.n = n - k


class _Clock:
    """The transfers of every step from ``first`` on, on one event clock (flows of any steps share arcs).

    The ranks start at ``ready`` with nothing in flight. A rank enters its next step when all its
    parts of the previous one are done; a transfer starts ``alpha`` after both its ranks entered its
    step (after its sender did, for an eager transfer); every flow in flight, whatever its step,
    shares arcs max-min fairly, rates recomputed at every flow start and end. A receive is done at
    ``max(arrival, when the receiver entered the step)`` plus its reduction.

    Every live step's transfers are rows of one table (:class:`_Table`, ids in generation order)
    and every live step has a row in the (step, rank) tables ``enter``, ``left`` and ``tmax``. This
    class generates the steps as the first rank reaches them and drops them when every rank is
    through; the events run compiled (:func:`sim.eventclock.run`), which returns here whenever a
    rank needs a step not generated yet.
    """

    def __init__(self, schedule: Schedule, network: Network, offsets: np.ndarray, patterns: dict,
                 first: int, ready: np.ndarray, eager_below: float, resync: bool = True, *,
                 execution: Execution | None = None):
        self.schedule, self.network, self.offsets, self.patterns = schedule, network, offsets, patterns
        self.resync = resync  # return at the first instant all ranks are ready together
        self.alpha, self.gamma, self.eager_below = network.params.alpha, network.params.gamma, eager_below
        self.posted = execution.posted if execution is not None else None
        self.receipts = execution.receipts if execution is not None else None
        self.alpha_posted = network.params.alpha_posted
        if execution is not None:
            self.gamma /= execution.lanes
        self.p = p = schedule.nranks
        self.first = first
        self.ready = np.asarray(ready, dtype=float).copy()
        self.cur = np.full(p, first, dtype=np.int64)  # the step each rank is in (nsteps: done)
        self.steps: dict[int, _LiveStep] = {}
        self.order: list[int] = []  # indices of the live steps, ascending
        self.next_index = first  # next step to materialise
        self.local = np.full(len(network.arcs), -1, dtype=np.int64)  # topology arc -> clock arc
        self.glob = np.zeros(0, dtype=np.int64)  # clock arc -> topology arc
        self.cap = np.zeros(0)
        self.load = np.zeros(0, dtype=np.int64)  # flows in flight per clock arc
        self.carried = np.zeros(0)  # bytes per clock arc
        # the transfers of the live steps: sender, receiver, bytes, reduction cost, route latency and
        # length, alpha, eager, started, arrival of the last byte (once known), (step, rank) table row
        # of the sender and of the receiver, step, and route (clock arcs, padded with -1); ``back``: a
        # receipted transfer's receipt, from the receiver's receive back to its sender (0: none)
        self.tr = _Table(size=(float, 0.0), red=(float, 0.0), back=(float, 0.0), lat=(float, 0.0), lens=(np.int64, 0),
                         alpha=(float, 0.0), eager=(bool, False), started=(bool, False), arrival=(float, np.nan),
                         srow=(np.int64, 0), drow=(np.int64, 0), step=(np.int64, 0))
        self.tr_base = 0  # clock id of the table's first row (ids already handed out keep their value)
        # (step, rank) tables, one row per live step (rows reused): when the rank entered the step, its
        # parts left, its latest part done so far; the flat index of (row, rank) is row * p + rank
        self.rows = 4
        self.enter = np.full(self.rows * p, np.nan)
        self.left = np.zeros(self.rows * p, dtype=np.int64)
        self.tmax = np.full(self.rows * p, -np.inf)
        self.involved = np.zeros(self.rows * p, dtype=bool)
        # the transfers the rank sends and receives in the step (clock ids, rows padded with -1)
        self.sends = np.full((self.rows * p, 1), -1, dtype=np.int64)
        self.recvs = np.full((self.rows * p, 1), -1, dtype=np.int64)
        self.parts = np.zeros(self.rows, dtype=np.int64)  # parts left per row
        self.rowstep = np.zeros(self.rows, dtype=np.int64)  # the step in each row
        self.free = list(range(self.rows))
        self.events = 0  # rate recomputations
        self.budget = 0  # exact ones allowed so far: CLOCK_EXACT_EVENTS per step generated

    def arc_bytes(self) -> np.ndarray:
        """Bytes each topology arc carried."""
        out = np.zeros(len(self.network.arcs))
        out[self.glob] = self.carried
        return out

    # ---------------------------------------------------------------- steps, generated as ranks reach them

    def _row(self) -> int:
        """A free row of the (step, rank) tables (the tables grow when none is)."""
        if not self.free:
            p, old = self.p, self.rows
            self.rows *= 2
            for name, fill in (("enter", np.nan), ("left", 0), ("tmax", -np.inf), ("involved", False), ("sends", -1),
                               ("recvs", -1)):
                col = getattr(self, name)
                new = np.full((self.rows * p, *col.shape[1:]), fill, dtype=col.dtype)
                new[:old * p] = col
                setattr(self, name, new)
            for name in ("parts", "rowstep"):
                col = np.zeros(self.rows, dtype=np.int64)
                col[:old] = getattr(self, name)
                setattr(self, name, col)
            self.free = list(range(old, self.rows))
        return self.free.pop()

    def _materialise(self) -> bool:
        """Add the next step that has a non-empty transfer; False at the end of the schedule."""
        net, offsets, p = self.network, self.offsets, self.p
        while self.next_index < self.schedule.nsteps:
            i = self.next_index
            self.next_index += 1
            step = self.schedule.make_step(i)
            size = offsets[step.chunk + step.nchunks] - offsets[step.chunk]
            keep = np.flatnonzero(size > 0)
            if keep.size == 0:
                continue
            full = self.patterns.get(step.key)
            if full is None:
                full = self.patterns[step.key] = net.compile(np.ascontiguousarray(step.src), np.ascontiguousarray(step.dst))
            ptr = np.zeros(keep.size + 1, dtype=np.int64)
            np.cumsum(full.lengths[keep], out=ptr[1:])
            arcs = full.arcs[full.indices[_ranges(full.indptr, keep)]]
            new = np.unique(arcs[self.local[arcs] < 0])
            if new.size:
                self.local[new] = np.arange(self.glob.size, self.glob.size + new.size)
                self.glob = np.concatenate([self.glob, new])
                self.cap = np.concatenate([self.cap, net.capacity[new]])
                if net.duplex is not None:  # both directions of a link in the window: both share it
                    self.cap = net.capacities(self.glob)
                self.load = np.concatenate([self.load, np.zeros(new.size, dtype=np.int64)])
                self.carried = np.concatenate([self.carried, np.zeros(new.size)])
            size = size[keep].astype(float)
            eager = size < self.eager_below
            alpha = np.full(keep.size, self.alpha)
            if self.posted is not None and self.posted[i] is not None:
                ahead = self.posted[i][keep]
                eager |= ahead
                alpha[ahead] = self.alpha_posted
            back = 0.0
            if self.receipts is not None and self.receipts[i] is not None:
                back = np.where(self.receipts[i][keep], self.alpha_posted + full.latency[keep], 0.0)
            src, dst = step.src[keep], step.dst[keep]
            row = self._row()
            at = row * p
            base = self.tr_base + self.tr.append(
                keep.size, _table(self.local[arcs], ptr), size=size, red=np.where(step.reduce[keep], self.gamma * size, 0.0),
                back=back, lat=full.latency[keep], lens=np.diff(ptr), alpha=alpha, eager=eager, srow=at + src, drow=at + dst,
                step=np.full(keep.size, i))
            by_src = np.argsort(src, kind="stable")
            src_ptr = np.searchsorted(src[by_src], np.arange(p + 1))
            by_dst = np.argsort(dst, kind="stable")
            dst_ptr = np.searchsorted(dst[by_dst], np.arange(p + 1))
            for name, tab in (("sends", _table(by_src, src_ptr)), ("recvs", _table(by_dst, dst_ptr))):
                tab[tab >= 0] += base
                col = getattr(self, name)
                if tab.shape[1] > col.shape[1]:  # more transfers per rank than any step before: widen
                    wide = np.full((col.shape[0], tab.shape[1]), -1, dtype=np.int64)
                    wide[:, :col.shape[1]] = col
                    setattr(self, name, wide)
                    col = wide
                col[at:at + p] = -1
                col[at:at + p, :tab.shape[1]] = tab
            left = np.diff(src_ptr) + np.diff(dst_ptr)  # parts (sends, receives) each rank has left
            rows = slice(at, at + p)
            self.left[rows] = left
            self.involved[rows] = left > 0
            self.enter[rows] = np.nan
            self.tmax[rows] = -np.inf
            self.parts[row] = int(left.sum())
            self.rowstep[row] = i
            self.steps[i] = _LiveStep(i, row, base, keep.size, float((size / full.static_rate[keep]).min()))
            self.order.append(i)
            self.budget += CLOCK_EXACT_EVENTS
            return True
        return False

    def _drop_done(self) -> None:
        """Drop the steps at the front that every rank is through (and their transfers, now and then)."""
        order, steps = self.order, self.steps
        while order and self.parts[steps[order[0]].row] == 0:
            st = steps.pop(order.pop(0))
            self.free.append(st.row)
        dead = (steps[order[0]].base if order else self.tr_base + self.tr.n) - self.tr_base
        if dead and dead >= CLOCK_COMPACT and 2 * dead >= self.tr.n:
            self.tr.drop(dead)
            self.tr_base += dead

    # ---------------------------------------------------------------- the clock

    def run(self) -> float | None:
        """Simulate until every rank is done (returns None) or all ranks are ready together with nothing
        in flight (returns that time; :attr:`cur` ``.min()`` is the step they go on from)."""
        from sim import eventclock as ec

        ec.note_first_compile()
        p, tr = self.p, self.tr
        ist, fst = ec.istate(self.resync, self.schedule.nsteps, self.tr_base), ec.fstate()
        # the ranks that move on (a stack: the step they finished, the rank, when), all of them at first
        mv_after, mv_rank, mv_time = np.full(p, self.first - 1, dtype=np.int64), np.arange(p), self.ready.copy()
        ist[ec.N_MV] = p
        # flows in flight (transfer, bytes left, rate) and transfers waiting for their start time: a
        # transfer is at most one of them, so the transfer table's rows bound both
        flows = [np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0)]
        # the arcs whose flows' rates may change at the event in progress (a list, and a flag per arc)
        seeds, seeded = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
        while True:
            if flows[0].size < tr.arcs.shape[0]:
                n = tr.arcs.shape[0]
                flows = [np.concatenate([f, np.zeros(n - f.size, dtype=f.dtype)]) for f in flows]
            a_id, a_rem, a_rate, p_id, p_time = flows
            if seeds.size < self.cap.size:  # (arcs seen for the first time)
                seeds = np.concatenate([seeds, np.zeros(self.cap.size - seeds.size, dtype=np.int64)])
                seeded = np.concatenate([seeded, np.zeros(self.cap.size - seeded.size, dtype=bool)])
            live = [self.steps[i] for i in self.order]
            status = ec.run(ist, fst, EVENT_WINDOW, np.array([st.shortest for st in live]),
                            tr.size, tr.red, tr.back, tr.lat, tr.alpha, tr.eager, tr.started, tr.arrival, tr.srow, tr.drow,
                            tr.step, tr.arcs, tr.lens, self.enter, self.left, self.tmax, self.involved, self.sends,
                            self.recvs, self.parts, self.rowstep, np.array(self.order, dtype=np.int64),
                            np.array([st.row for st in live], dtype=np.int64), self.cap, self.load, self.carried,
                            self.cur, self.ready, a_id, a_rem, a_rate, p_id, p_time, mv_after, mv_rank, mv_time,
                            seeds, seeded)
            self.events = int(ist[ec.EVENTS])
            if status != ec.NEED_STEP:
                break
            self._drop_done()
            ist[ec.LIVE_LO] = 0
            ist[ec.TR_BASE] = self.tr_base
            if self._materialise():
                ist[ec.BUDGET] = self.budget
            else:
                ist[ec.EXHAUSTED] = 1
        if status == ec.SYNC:
            return float(fst[ec.T])
        if (self.cur < self.schedule.nsteps).any():
            r = int(np.argmin(self.cur))
            raise RuntimeError(f"rank {r} waits forever in step {int(self.cur[r])}: the schedule deadlocks")
        return None


@dataclass
class SimResult:
    """What a simulation predicts for one (collective, algorithm, size) on one topology.

    Attributes
    ----------
    collective, algorithm : str
    nranks : int
    nbytes : int
        Buffer size actually simulated (``count * itemsize``; for reduce_scatter and allgather
        rounded down to a multiple of ``nranks`` elements, as nccl-tests does).
    count, itemsize : int
    time : float
        Seconds until the last rank finishes.
    finish : ndarray, shape (nranks,)
        Time each rank finishes its last step (0 for ranks with nothing to do).
    arcs : list of (u, v)
        The topology's arcs, in the order of ``arc_bytes`` and ``utilization``.
    arc_bytes : ndarray
        Bytes each arc carried.
    utilization : ndarray
        ``arc_bytes / (capacity * time)``: the fraction of the arc's usable bandwidth it was busy
        on average over the collective.
    bottlenecks : list of (u, v)
        The arcs of highest utilisation (ties within 0.1 %).
    topology, model : str
        Topology name and ``"flow"`` or ``"analytic"``.
    params : dict
        Schedule parameters (e.g. the tree's ``segments``).
    """

    collective: str
    algorithm: str
    nranks: int
    nbytes: int
    count: int
    itemsize: int
    time: float
    topology: str = ""
    model: str = "flow"
    finish: np.ndarray = field(default_factory=lambda: np.zeros(0))
    arcs: list = field(default_factory=list)
    arc_bytes: np.ndarray = field(default_factory=lambda: np.zeros(0))
    utilization: np.ndarray = field(default_factory=lambda: np.zeros(0))
    bottlenecks: list = field(default_factory=list)
    params: dict = field(default_factory=dict)

    @property
    def algbw(self) -> float:
        """Algorithm bandwidth in GB/s (decimal): ``nbytes / time``."""
        return self.nbytes / self.time / 1e9 if self.time > 0 else 0.0

    @property
    def busbw(self) -> float:
        """Bus bandwidth in GB/s, nccl-tests definition."""
        return self.algbw * busbw_factor(self.collective, self.nranks)

    def utilization_map(self) -> dict:
        """``{arc: utilisation}`` for the arcs that carried data."""
        return {self.arcs[i]: float(self.utilization[i]) for i in np.flatnonzero(self.arc_bytes)}


def _advance(ready: np.ndarray, pat: _Pattern, sent: np.ndarray, received: np.ndarray, src=None, dst=None) -> None:
    """Set the ready time of every rank of a step: its last send or receive (in place)."""
    src = pat.src if src is None else src
    dst = pat.dst if dst is None else dst
    upd = np.full(ready.shape[0], -np.inf)
    if pat.src_unique:
        upd[src] = sent
    else:
        np.maximum.at(upd, src, sent)
    if pat.dst_unique:
        upd[dst] = np.maximum(upd[dst], received)
    else:
        np.maximum.at(upd, dst, received)
    involved = upd > -np.inf
    ready[involved] = upd[involved]


def element_count(schedule: Schedule, nbytes: int, itemsize: int) -> int:
    """Elements simulated for a buffer of ``nbytes``: rounded down to whole elements (and blocks)."""
    if isinstance(nbytes, bool) or not isinstance(nbytes, (int, np.integer)) or nbytes < 0:
        raise ValueError(f"size must be a non-negative number of bytes, got {nbytes!r}")
    if isinstance(itemsize, bool) or not isinstance(itemsize, (int, np.integer)) or itemsize < 1:
        raise ValueError(f"itemsize must be a positive integer, got {itemsize!r}")
    count = int(nbytes) // int(itemsize)
    return count - count % schedule.nblocks


class _Busy:
    """When each arc is next free of the flows simulated step by step since the last lock-step point.

    The step loop is exact as long as no flow starts on an arc before a flow of an earlier step has
    left it (then no two flows of different steps are ever in flight on one arc). :meth:`clash`
    checks that for a step's flows and records them. Runs of the same pattern whose flows never
    share an arc (a ring) are checked per flow, not per arc: on its arcs, a flow of such a run
    follows only its own earlier copies, which its sender finished before starting it.
    """

    def __init__(self, narcs: int):
        self.until = np.full(narcs, -np.inf)
        self.run = None  # (pattern, latest earlier end on each flow's arcs, each flow's last end)

    def reset(self) -> None:
        """Forget every flow (all of them end before anything that follows starts)."""
        self.until.fill(-np.inf)
        self.run = None

    def _flush(self) -> None:
        if self.run is not None:
            pat, _, last = self.run
            arcs = pat.arcs[pat.indices]
            self.until[arcs] = np.maximum(self.until[arcs], np.repeat(last, pat.lengths))
            self.run = None

    def clash(self, pat: _Pattern, sub: np.ndarray | None, start: np.ndarray, sent: np.ndarray, delay: float = 0.0) -> bool:
        """True when a flow (``start + delay`` to ``sent``) starts on an arc before an earlier one leaves it; else record them."""
        if self.run is None or self.run[0] is not pat:
            self._flush()
            if pat.disjoint:
                late = np.maximum.reduceat(self.until[pat.arcs[pat.indices]], pat.indptr[:-1]) if pat.lengths.size else np.zeros(0)
                self.run = (pat, late if (late > -np.inf).any() else None, np.full(pat.lengths.size, -np.inf))
            else:
                rows = pat.rows if sub is None else np.repeat(np.arange(sub.size), pat.lengths[sub])
                arcs = pat.arcs[pat.indices if sub is None else pat.indices[_ranges(pat.indptr, sub)]]
                late = np.full(start.size, -np.inf)
                np.maximum.at(late, rows, self.until[arcs])
                if (start + delay < late * (1 - 1e-12)).any():
                    return True
                np.maximum.at(self.until, arcs, sent[rows])
                return False
        _, late, last = self.run
        # (late is None: nothing ran on these arcs before the run, so only the run's own earlier copies)
        if late is not None and (start + delay < (late if sub is None else late[sub]) * (1 - 1e-12)).any():
            return True
        if sub is None:
            self.run = (pat, late, sent)  # the whole pattern ran: its latest copy is all that counts
        else:
            last[sub] = sent
        return False


def simulate(schedule: Schedule, network: Network | nx.DiGraph, nbytes: int, *, itemsize: int = 4,
             params: ModelParams | None = None, execution: Execution | None = None) -> SimResult:
    """Simulate ``schedule`` on a buffer of ``nbytes`` bytes with the flow model.

    Parameters
    ----------
    schedule : collectives.Schedule
        From ``collectives.get_schedule`` (use ``collectives.algorithm_params`` for the tree's
        segments at this size).
    network : Network or networkx.DiGraph
        The compiled topology (build one :class:`Network` and reuse it; a graph is compiled here
        with ``params``).
    nbytes : int
        Buffer size in bytes (the whole buffer, nccl-tests convention).
    itemsize : int
        Bytes per element (4 for float32).
    params : ModelParams, optional
        Only when ``network`` is a graph.
    execution : collectives.execution.Execution, optional
        How the runtime posts the schedule's transfers (:func:`collectives.execution.execution_for`):
        receives posted a step ahead start when their sender is ready, after
        ``ModelParams.posted_alpha``; a receipted transfer holds its sender until the receipt is back;
        with ``lanes`` > 1 each transfer is that many messages and only
        the last one's reduction follows it (``gamma / lanes``). None: the steps as written (the MPI
        runtime, CUDA buffers).

    Returns
    -------
    SimResult

    Raises
    ------
    ValueError
        More ranks than the topology has endpoints, or a negative size.
    """
    if not isinstance(network, Network):
        network = Network(network, params)
    elif params is not None and params != network.params:
        raise ValueError("params given with a compiled Network: build the Network with these params instead")
    p = schedule.nranks
    network.check_ranks(p)
    count = element_count(schedule, nbytes, itemsize)
    offsets = schedule.chunk_offsets(count) * itemsize
    chunk_bytes = np.diff(offsets)
    uniform = chunk_bytes.size == 0 or chunk_bytes.min() == chunk_bytes.max()
    alpha, gamma = network.params.alpha, network.params.gamma
    eager_below = network.params.eager_threshold
    posted = receipts = None
    if execution is not None:
        for tactic in (execution.posted, execution.receipts):
            if tactic is not None and len(tactic) != schedule.nsteps:
                raise ValueError(f"execution describes {len(tactic)} steps, the schedule has {schedule.nsteps}")
        gamma /= execution.lanes
        posted, receipts = execution.posted, execution.receipts
    tactics = execution is not None and execution.per_step
    if tactics:
        # the same pattern with different receives posted ahead or receipts costs differently: the
        # caches key on both
        masks: dict[tuple, int] = {}

        def _bytes(m) -> bytes:
            return b"" if m is None or not m.any() else m.tobytes()

        mask_id = []
        for i in range(schedule.nsteps):
            both = (_bytes(posted[i]) if posted is not None else b"", _bytes(receipts[i]) if receipts is not None else b"")
            mask_id.append(0 if both == (b"", b"") else masks.setdefault(both, len(masks) + 1))
    alpha_posted = network.params.alpha_posted

    ready = np.zeros(p)
    sync_t: float | None = 0.0  # when not None: every rank is ready at exactly this time
    synced = (0, 0.0)  # (step, time): the last step all ranks were ready to start at one time
    journal: list = []  # byte accounting since then: (pattern, flows or None, bytes), or (pattern, None, None) for a use
    busy = _Busy(len(network.arcs))
    clock_bytes = np.zeros(len(network.arcs))
    patterns: dict = {}  # (step key, nonzero mask) -> _Pattern
    lockstep: dict = {}  # step key -> [duration, uses, pattern, bytes] (uniform chunks only)
    runs: dict = {}  # (pattern key, bytes, starts) -> end offsets, for contended steps

    i = 0
    while i < schedule.nsteps:
        step = key = None
        if uniform:  # the lock-step and repeated-pattern paths need the step's key only
            if schedule.key_of is None:
                step = schedule.make_step(i)
                key = step.key
            else:
                key = schedule.key_of(i)
            if tactics:
                key = (key, mask_id[i])
        i += 1
        if sync_t is not None and uniform:
            hit = lockstep.get(key)
            if hit is not None:
                sync_t += hit[0]
                hit[1] += 1
                synced = (i, sync_t)
                continue
        clash = False
        if uniform and sync_t is None:
            pat = patterns.get(key)
            if pat is not None and pat.pre is not None:
                # a pattern seen before with all flows on links of their own: one vectorised update
                duration, tail, lat, red_cost, size, eager, alpha_t = pat.pre
                start = np.maximum(ready[pat.src], ready[pat.dst])
                if eager is not None:
                    start = np.where(eager, ready[pat.src], start)
                sent = start + duration
                if busy.clash(pat, None, start, sent, alpha_t):
                    clash = True
                else:
                    received = np.maximum(sent + lat, ready[pat.dst]) + red_cost if eager is not None else sent + tail
                    if pat.perm and pat.src.size == p:
                        new = np.empty(p)
                        new[pat.src] = sent
                        new[pat.dst] = np.maximum(new[pat.dst], received)
                        ready = new
                    else:
                        _advance(ready, pat, sent, received)
                    pat.uses += 1
                    journal.append((pat, None, None))
                    if pat.nranks_involved == p and (ready == ready[0]).all():
                        sync_t = float(ready[0])
                        synced, journal = (i, sync_t), []
                        busy.reset()
                    continue
        if step is None:
            step = schedule.make_step(i - 1)
        skey = step.key if not tactics else (step.key, mask_id[i - 1])
        if not clash:
            size = offsets[step.chunk + step.nchunks] - offsets[step.chunk]
            nonzero = size > 0
            if not nonzero.any():
                continue
            every = bool(nonzero.all())
            src, dst, red = step.src, step.dst, step.reduce
            if not every:
                src, dst, red, size = src[nonzero], dst[nonzero], red[nonzero], size[nonzero]
            full = patterns.get(skey)
            if full is None:
                full = patterns[skey] = network.compile(np.ascontiguousarray(step.src), np.ascontiguousarray(step.dst))
            if every:
                pkey, pat, sub = skey, full, None
            elif full.disjoint:
                # a subset of flows that never share an arc: reuse the full pattern's arrays
                pkey, pat, sub = skey, full, np.flatnonzero(nonzero)
            else:
                pkey, sub = (skey, nonzero.tobytes()), None
                pat = patterns.get(pkey)
                if pat is None:
                    pat = patterns[pkey] = network.compile(np.ascontiguousarray(src), np.ascontiguousarray(dst))
            size = size.astype(float)
            eager = size < eager_below if eager_below else None
            alpha_t = alpha
            ahead = None if posted is None else posted[i - 1]
            if ahead is not None and ahead.any():
                ahead = ahead if every else ahead[nonzero]
                eager = ahead if eager is None else eager | ahead
                alpha_t = np.where(ahead, alpha_posted, alpha)

            was_sync = sync_t is not None
            if was_sync:
                t0, rel = sync_t, None
                ready.fill(sync_t)
                sync_t = None
            else:
                s0 = np.maximum(ready[src], ready[dst])
                if eager is not None:
                    s0 = np.where(eager, ready[src], s0)
                t0 = float(s0.min())
                rel = s0 - t0
            if pat.disjoint:
                rate = pat.static_rate if sub is None else pat.static_rate[sub]
                end = (alpha_t if rel is None else rel + alpha_t) + size / rate
            else:
                rkey = (pkey, size.tobytes(), None if rel is None else rel.tobytes())
                end = runs.get(rkey)
                if end is None:
                    start = np.zeros(size.shape) + (alpha_t if rel is None else rel + alpha_t)
                    end = runs[rkey] = pat.run(start, size)
            sent = t0 + end
            flow_start = np.zeros(size.shape) + t0 + (alpha_t if rel is None else rel + alpha_t)
            clash = not was_sync and busy.clash(pat, sub, flow_start, sent)
        if clash:
            # Flows of different steps would share an arc: from the last lock-step point on, every
            # transfer runs on one event clock instead.
            for pat_, sub_, size_ in journal:
                if size_ is None:
                    pat_.uses -= 1
                elif sub_ is None:
                    pat_.flow_bytes -= size_
                else:
                    pat_.flow_bytes[sub_] -= size_
            journal = []
            start_step, start_t = synced
            clock = _Clock(schedule, network, offsets, patterns, start_step, np.full(p, start_t), eager_below,
                           execution=execution)
            sync_t = clock.run()
            clock_bytes += clock.arc_bytes()
            ready = clock.ready
            busy.reset()
            if sync_t is None:
                break
            i = int(clock.cur.min())
            synced = (i, sync_t)
            continue

        arrived = sent + (pat.latency if sub is None else pat.latency[sub])
        if eager is not None:
            arrived = np.maximum(arrived, ready[dst])
        recv_done = arrived + np.where(red, gamma * size, 0.0) if gamma else arrived
        receipted = None if receipts is None else receipts[i - 1]
        send_done = sent
        if receipted is not None and receipted.any():
            # a receipted sender is done when the receipt is back: it leaves once the receive is done
            receipted = receipted if every else receipted[nonzero]
            send_done = np.where(receipted, arrived + alpha_posted + (pat.latency if sub is None else pat.latency[sub]),
                                 sent)
        else:
            receipted = None

        _advance(ready, pat, send_done, recv_done, src, dst)
        if sub is None:
            pat.flow_bytes += size
            if uniform and pat.disjoint and receipted is None:
                red_cost = np.where(red, gamma * size, 0.0)
                pat.pre = (alpha_t + size / pat.static_rate, pat.latency + red_cost, pat.latency, red_cost, size, eager,
                           alpha_t)
        else:
            pat.flow_bytes[sub] += size
        journal.append((pat, sub, size))

        if sub is None and pat.nranks_involved == p and (ready == ready[0]).all():
            sync_t = float(ready[0])
            synced, journal = (i, sync_t), []
            busy.reset()
            if was_sync and uniform and skey not in lockstep and every:
                lockstep[skey] = [sync_t - t0, 0, pat, size]
        elif was_sync:
            busy.reset()
            busy.clash(pat, sub, flow_start, sent)

    if sync_t is not None:
        ready.fill(sync_t)
    for _duration, uses, pat, size in lockstep.values():
        pat.flow_bytes += uses * size
    for pat in patterns.values():
        if pat.uses:
            pat.flow_bytes += pat.uses * pat.pre[4]
    arc_bytes = clock_bytes
    for pat in patterns.values():
        if pat.arcs.size:
            np.add.at(arc_bytes, pat.arcs, pat.MT @ pat.flow_bytes)
    time = float(ready.max()) if p else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        util = np.where(arc_bytes > 0, arc_bytes / (network.capacity * time), 0.0) if time > 0 else np.zeros_like(arc_bytes)
    bottlenecks: list = []
    if arc_bytes.any():
        top = util.max()
        bottlenecks = [network.arcs[k] for k in np.flatnonzero(util >= top * (1 - 1e-3))]
    return SimResult(
        collective=schedule.collective,
        algorithm=schedule.algorithm,
        nranks=p,
        nbytes=count * itemsize,
        count=count,
        itemsize=itemsize,
        time=time,
        topology=network.name,
        model="flow",
        finish=ready.copy(),
        arcs=network.arcs,
        arc_bytes=arc_bytes,
        utilization=util,
        bottlenecks=bottlenecks,
        params=dict(schedule.params),
    )


def load_compiled() -> None:
    """Load the compiled event loops now (on a machine's first use: compile them, about 20 s on 2 cores)
    instead of inside the first simulation that needs them; a process does it once either way."""
    import topologies
    from collectives import get_schedule
    from sim.eventclock import group_events, step_groups

    ring = get_schedule("allreduce", "ring", 2)
    _Clock(ring, Network(topologies.switch(2)), ring.chunk_offsets(2) * 4, {}, 0, np.zeros(2), 0.0, resync=False).run()
    group_events(np.zeros(1), np.ones(1), np.array([0, 1]), np.array([0]), np.ones(1), 1, 0.1)
    two = np.array([0, 1])  # two flows on one arc, starting apart
    step_groups(two, np.zeros(2, dtype=np.int64), np.array([0.0, 0.5]), np.ones(2), np.full(2, 0.5), np.ones(2),
                np.arange(3), np.zeros(2, dtype=np.int64), np.ones(1), LARGE_GROUP)
