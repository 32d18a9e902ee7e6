"""Emulate a topology on one Linux machine: network namespaces, veth links shaped with ``tc tbf``.

Model
-----
Every node of the topology becomes a network namespace; every full-duplex link (the two arcs
``(u, v)`` and ``(v, u)``) becomes a veth pair with one end in each node's namespace. Each end's
egress is shaped by a ``tbf`` qdisc to the bandwidth of the arc that leaves through it, so the two
directions of a link are shaped independently, as the simulator models them. Every namespace
forwards IPv4 (switches, NICs and hosts alike: on a ring, hosts forward for each other).

Routing is the simulator's: for every ordered pair of endpoints ``(s, d)`` the path is
``topologies.Router(G).route(s, d)``, and every node on it gets a static route for ``d``'s address
in a routing table of its own for source ``s`` (a policy rule ``from addr(s) lookup 1000+s``), so
paths that depend on both ends (ECMP spread per pair) are reproduced exactly. The source host
itself uses its main table, with ``src addr(s)``. Replies and acknowledgements follow the path
``(d, s)``, as in the simulator. :meth:`Emulation.trace` reads the kernel's route lookups back
hop by hop (``ip route get`` with ``iif``), so a test compares the emulated path against the
Router's without sending a packet.

Latency cannot be imposed here (no ``netem``); a link's ``latency`` attribute is ignored and the
latency of the emulated network (tens of microseconds per hop) is measured by calibration.

Address plan
------------
* Endpoint ``i`` (rank ``i`` runs there): ``10.200.0.0/16`` + ``i + 1`` as a /32 on an interface
  named ``host`` in its namespace (one end of a veth pair whose other end, ``host-peer``, stays in
  the same namespace: this kernel has no ``dummy`` driver). Point Gloo at it with
  ``GLOO_SOCKET_IFNAME=host``; :meth:`Emulation.run` sets that.
* Link ``l`` (undirected links numbered in the order of ``G.edges``): the /30 ``10.1.0.0 + 4 l``;
  the end at ``u`` (``l{l}a``) gets ``.1``, the end at ``v`` (``l{l}b``) gets ``.2``.
* Namespaces: ``cs<6 hex>-h<i>`` for endpoint ``i``, ``cs<6 hex>-x<k>`` for the other nodes in
  graph order; the 6 hex digits are random per emulation, so emulations never collide, and
  :func:`remove_leftovers` only ever removes names of that shape.

State of every emulation (its prefix, the owning process, the namespaces, the topology) is
kept in ``/run/collsim/<prefix>.json`` while it is up, so ``collsim emulate status`` and
``collsim emulate down`` find them again (``/run`` is cleared on reboot, as namespaces are).

Safety
------
Only namespaces and links of the emulation's own prefix are created or removed; nothing is
created in or changed about the root namespace; addresses are private (``10.0.0.0/8``) and only
exist inside the emulation's namespaces. Teardown runs on exit of the context manager, on
exceptions, at interpreter exit and on SIGINT/SIGTERM, and kills processes started with
:meth:`Emulation.run` first.

Examples
--------
>>> import topologies  # doctest: +SKIP
>>> G = topologies.from_spec("switch:n=4,bandwidth=200Mbps")  # doctest: +SKIP
>>> with Emulation(G) as emu:  # doctest: +SKIP
...     p = emu.run(1, ["python", "-m", "http.server", "--bind", emu.host_address(1)])
...     out = emu.run(0, ["curl", f"http://{emu.host_address(1)}:8000/"]).wait()
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ipaddress
import json
import os
import re
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

__all__ = [
    "Emulation",
    "EmulationUnavailable",
    "EmuLink",
    "PREFIX_PATTERN",
    "HOST_IFNAME",
    "emulation_unavailable_reason",
    "check_available",
    "list_emulations",
    "remove_emulation",
    "remove_leftovers",
]

#: Names this module creates (and the only ones it ever removes): ``cs`` + 6 hex digits + ``-``.
PREFIX_PATTERN = re.compile(r"^(cs[0-9a-f]{6})-")
#: Interface carrying an endpoint's address inside its namespace (``GLOO_SOCKET_IFNAME``).
HOST_IFNAME = "host"
STATE_DIR = Path("/run/collsim")
NETNS_DIR = Path("/run/netns")

_HOST_NET = ipaddress.IPv4Network("10.200.0.0/16")
_LINK_BASE = ipaddress.IPv4Address("10.1.0.0")
_LINK_LIMIT = ipaddress.IPv4Address("10.128.0.0")
_TABLE_BASE = 1000
_MAX_RATE = 2**32 - 1  # tbf's rate field is u32 bytes/s (about 34 Gbit/s)
_CLONE_NEWNET = 0x40000000


class EmulationUnavailable(RuntimeError):
    """This machine cannot emulate (not root, no netns, no pyroute2 or no ``tbf`` qdisc)."""


@dataclass(frozen=True)
class EmuLink:
    """One full-duplex link of the emulation: a veth pair ``ifname_u`` (at ``u``) -- ``ifname_v``."""

    index: int
    u: Hashable
    v: Hashable
    ifname_u: str
    ifname_v: str
    addr_u: str
    addr_v: str
    rate_uv: float  # bytes/s shaped on u's egress (arc u -> v)
    rate_vu: float  # bytes/s shaped on v's egress (arc v -> u)


_REASON: list[str | None] = []


def emulation_unavailable_reason() -> str | None:
    """Return why this machine cannot emulate, or None when it can (probed once, then cached).

    The probe needs root, ``pyroute2``, network namespaces and the ``tbf`` qdisc: it creates one
    namespace of its own (``cs<hex>-probe``), adds a veth pair and a tbf qdisc there, and removes it.
    """
    if _REASON:
        return _REASON[0]
    reason = _probe()
    _REASON.append(reason)
    return reason


def check_available() -> None:
    """Raise :class:`EmulationUnavailable` with one line saying why, if emulation is unavailable."""
    reason = emulation_unavailable_reason()
    if reason is not None:
        raise EmulationUnavailable(reason)


def _probe() -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "emulation needs root (CAP_NET_ADMIN) to create network namespaces and tc qdiscs"
    try:
        from pyroute2 import NetNS, netns
    except ImportError:
        return "emulation needs pyroute2 (pip install 'collsim[emulation]')"
    name = f"cs{secrets.token_hex(3)}-probe"
    try:
        netns.create(name)
    except OSError as err:
        return f"cannot create a network namespace: {err}"
    try:
        with NetNS(name) as ns:
            ns.link("add", ifname="p0", kind="veth", peer={"ifname": "p1"})
            idx = ns.link_lookup(ifname="p0")[0]
            try:
                ns.tc("add", kind="tbf", index=idx, handle="1:", rate="100mbit", burst=16384, latency="10ms")
            except Exception as err:  # noqa: BLE001 - any failure means no usable tbf
                return f"the kernel has no usable tc tbf qdisc (sch_tbf): {err}"
    except Exception as err:  # noqa: BLE001
        return f"cannot create veth links in a network namespace: {err}"
    finally:
        with contextlib.suppress(OSError):
            netns.remove(name)
    return None


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _write_sysctls(nsname: str, values: Mapping[str, str]) -> None:
    """Write ``/proc/sys`` entries inside namespace ``nsname`` (``/proc/sys/net`` is per netns)."""
    from pyroute2 import netns

    netns.pushns(nsname)
    try:
        for key, value in values.items():
            with open(f"/proc/sys/{key.replace('.', '/')}", "w") as f:
                f.write(value)
    finally:
        netns.popns()


_TSQ_BYTES = 32768  # net.ipv4.tcp_limit_output_bytes in every namespace

_NS_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
    # Collectives idle between steps and repetitions; do not restart slow start after an idle
    # period, so a transfer's time depends on the link, not on how long the socket waited.
    "net.ipv4.tcp_slow_start_after_idle": "0",
    # TCP small queues: a socket keeps at most this much in the qdisc, so the acknowledgements of
    # the opposite direction (same queue) wait behind about a millisecond of data, not hundreds.
    "net.ipv4.tcp_limit_output_bytes": str(_TSQ_BYTES),
}


_BUCKET_SECONDS = 250e-6  # tbf's bucket: what the link sends in this long, at least two full-size frames


def _tbf_params(rate: float, sockets: int = 1, bucket_seconds: float = _BUCKET_SECONDS) -> dict:
    """tbf parameters for ``rate`` bytes/s: a small bucket and a deep queue.

    The bucket holds what the link sends in ``bucket_seconds`` (by default a quarter millisecond:
    two full-size frames at 100 Mbit/s), and never less than two frames. A larger bucket lets small
    messages pass faster than the link rate, which a real link never does. A bucket of two frames
    at every rate starves fast links instead: tbf sends at most a bucket per wake of its timer, and
    on a 2-core virtual machine the wakes came too seldom for fast links. One TCP flow over an
    emulated switch got 299 of 400 Mbit/s and 270 of 1000 with two frames, 359 and 679 with a
    quarter millisecond (``benchmarks/link_rate.py``).

    The queue is deep, so TCP flows sharing a link queue rather than lose packets (a lost packet in
    a short transfer costs a retransmission timeout of 200 ms). It holds 10 ms at the rate, and at
    least 64 KiB plus what ``sockets`` senders may each keep queued (TCP small queues). A rank
    that hands a step's send to the kernel goes on to its next partner while the first socket
    still drains, so a host's link can hold the data of several sockets at once: with room for
    one, a validation of the ring and recursive halving on a 20 Mbit/s switch dropped 2 % of the
    hosts' packets at their own links, where a real host's queue drops none.
    """
    burst = max(2 * 1514 + 64, int(rate * bucket_seconds))
    limit = int(max(rate * 10e-3, (64 << 10) + sockets * _TSQ_BYTES))
    return {"rate": f"{int(rate * 8)}bit", "burst": burst, "limit": limit}


class Emulation:
    """A topology as real network namespaces and shaped veth links; a context manager.

    Parameters
    ----------
    G : networkx.DiGraph
        Topology following the contract (arcs in both directions with ``bandwidth`` in bytes/s;
        ``G.graph["endpoints"]``).
    spec : str, optional
        The spec string ``G`` was built from, recorded for ``collsim emulate status``.
    persistent : bool
        When True (``collsim emulate up``) nothing is removed at interpreter exit or on signals;
        ``collsim emulate down`` removes it.
    router : object, optional
        Anything with ``route(src_node, dst_node) -> list of arcs``; default ``topologies.Router(G)``,
        the routing the simulator uses.
    send_buffer : int, optional
        The most a TCP socket may hold unsent, in bytes (``net.ipv4.tcp_wmem``'s maximum in every
        namespace; at least 4096). Default: the kernel's own (autotuned up to 4 MiB), so a rank
        whose send is handed to its socket goes on to its next step while the bytes still leave.
    bucket_seconds : float
        tbf's bucket: what a link sends in this long at its rate, at least two full-size frames
        (default a quarter millisecond; 0: two frames at every rate, which starves fast links).

    Raises
    ------
    EmulationUnavailable
        Not root, or no namespaces, pyroute2 or tbf (raised by :meth:`up`).
    ValueError
        A topology the emulation cannot build (an arc without its reverse, a bandwidth that is not
        positive or above tbf's 34 Gbit/s, more than 65535 endpoints).
    """

    def __init__(self, G: nx.DiGraph, *, spec: str | None = None, persistent: bool = False, router=None,
                 send_buffer: int | None = None, bucket_seconds: float = _BUCKET_SECONDS):
        if not isinstance(G, nx.DiGraph):
            raise TypeError(f"G must be a networkx.DiGraph, got {type(G).__name__}")
        if send_buffer is not None and (isinstance(send_buffer, bool) or not isinstance(send_buffer, int)
                                        or send_buffer < 4096):
            raise ValueError(f"send_buffer must be an int of at least 4096 bytes or None, got {send_buffer!r}")
        if isinstance(bucket_seconds, bool) or not isinstance(bucket_seconds, int | float) \
                or not 0 <= bucket_seconds <= 0.1:
            raise ValueError(f"bucket_seconds must be a number of seconds within 0..0.1, got {bucket_seconds!r}")
        self.bucket_seconds = float(bucket_seconds)
        self._sysctls = dict(_NS_SYSCTLS)
        if send_buffer is not None:
            self._sysctls["net.ipv4.tcp_wmem"] = f"4096 {min(16384, send_buffer)} {send_buffer}"
        self.G = G
        self.spec = spec
        self.persistent = persistent
        self.endpoints: list = list(G.graph.get("endpoints") or [])
        if not self.endpoints:
            raise ValueError("G.graph['endpoints'] must list the nodes ranks run on")
        if len(self.endpoints) >= 2**16 - 1:
            raise ValueError(f"at most 65534 endpoints can be emulated, got {len(self.endpoints)}")
        self._router = router
        self.prefix = f"cs{secrets.token_hex(3)}"
        endpoint_index = {node: i for i, node in enumerate(self.endpoints)}
        self.namespaces: dict[Hashable, str] = {}
        k = 0
        for node in G.nodes:
            if node in endpoint_index:
                self.namespaces[node] = f"{self.prefix}-h{endpoint_index[node]}"
            else:
                self.namespaces[node] = f"{self.prefix}-x{k}"
                k += 1
        self.links: list[EmuLink] = self._plan_links()
        self._by_iface: dict[tuple[Hashable, str], tuple[EmuLink, Hashable]] = {}
        self._arc_iface: dict[tuple[Hashable, Hashable], tuple[str, str]] = {}
        for link in self.links:
            self._by_iface[(link.u, link.ifname_u)] = (link, link.v)
            self._by_iface[(link.v, link.ifname_v)] = (link, link.u)
            # arc -> (interface it leaves by at the tail, next-hop address at the head)
            self._arc_iface[(link.u, link.v)] = (link.ifname_u, link.addr_v)
            self._arc_iface[(link.v, link.u)] = (link.ifname_v, link.addr_u)
        self._procs: list[subprocess.Popen] = []
        self._is_up = False
        self._lock = threading.Lock()
        self._old_handlers: dict[int, object] = {}
        self._owner = os.getpid()

    # -- plan ---------------------------------------------------------------------------------

    def _plan_links(self) -> list[EmuLink]:
        links = []
        seen = set()
        for u, v in self.G.edges:
            if (v, u) in seen or (u, v) in seen:
                continue
            if not self.G.has_edge(v, u):
                raise ValueError(f"arc ({u!r}, {v!r}) has no reverse arc; emulated links are full duplex")
            seen.add((u, v))
            rates = []
            for a, b in ((u, v), (v, u)):
                bw = self.G.edges[a, b].get("bandwidth")
                if not isinstance(bw, (int, float)) or not bw > 0:
                    raise ValueError(f"arc ({a!r}, {b!r}) needs a positive 'bandwidth' in bytes/s, got {bw!r}")
                if bw > _MAX_RATE:
                    raise ValueError(
                        f"arc ({a!r}, {b!r}) bandwidth {bw:.3g} B/s is above what tc tbf can shape "
                        f"({_MAX_RATE:.3g} B/s, about 34 Gbit/s); emulate with lower bandwidths, e.g. 200Mbps"
                    )
                rates.append(float(bw))
            index = len(links)
            base = int(_LINK_BASE) + 4 * index
            if base + 4 > int(_LINK_LIMIT):
                raise ValueError(f"too many links to emulate ({index + 1}); the address plan allows 2**21")
            links.append(
                EmuLink(
                    index=index,
                    u=u,
                    v=v,
                    ifname_u=f"l{index}a",
                    ifname_v=f"l{index}b",
                    addr_u=str(ipaddress.IPv4Address(base + 1)),
                    addr_v=str(ipaddress.IPv4Address(base + 2)),
                    rate_uv=rates[0],
                    rate_vu=rates[1],
                )
            )
        return links

    @property
    def router(self):
        if self._router is None:
            from topologies import Router

            self._router = Router(self.G)
        return self._router

    @property
    def nhosts(self) -> int:
        """Number of endpoints (ranks)."""
        return len(self.endpoints)

    def host_address(self, i: int) -> str:
        """IPv4 address of endpoint ``i`` (on interface ``host`` of its namespace)."""
        self._check_host(i)
        return str(_HOST_NET.network_address + i + 1)

    def host_namespace(self, i: int) -> str:
        """Name of endpoint ``i``'s network namespace."""
        self._check_host(i)
        return self.namespaces[self.endpoints[i]]

    def _check_host(self, i: int) -> None:
        if not isinstance(i, int) or not 0 <= i < len(self.endpoints):
            raise ValueError(f"host_index must be an integer in 0..{len(self.endpoints) - 1}, got {i!r}")

    @property
    def is_up(self) -> bool:
        return self._is_up

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> Emulation:
        self.up()
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    def up(self) -> Emulation:
        """Create the namespaces, links, shaping, addresses and routes.

        On any failure everything created so far is removed before the error propagates.
        """
        check_available()
        if self._is_up:
            return self
        self._owner = os.getpid()
        self._is_up = True  # from here on down() has something to remove
        self._write_state()
        if not self.persistent:
            atexit.register(self.down)
            self._install_signal_handlers()
        try:
            self._build()
        except BaseException:
            self.down()
            raise
        return self

    def down(self) -> None:
        """Kill processes started with :meth:`run`, remove the namespaces and the state file."""
        if os.getpid() != self._owner:
            # A forked child (pyroute2 forks to create namespaces) inherits atexit and signal
            # handlers; only the process that built the emulation may tear it down.
            return
        with self._lock:
            if not self._is_up:
                return
            self._is_up = False
        for proc in self._procs:
            _kill(proc)
        self._procs.clear()
        remove_emulation(self.prefix)
        if not self.persistent:
            with contextlib.suppress(Exception):
                atexit.unregister(self.down)
            self._restore_signal_handlers()

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # atexit and the context manager still clean up

        def handler(signum, frame):
            if os.getpid() != self._owner:
                os._exit(128 + signum)
            self.down()
            old = self._old_handlers.get(signum)
            if callable(old):
                old(signum, frame)
            raise SystemExit(128 + signum)

        for signum in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[signum] = signal.getsignal(signum)
            signal.signal(signum, handler)

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, old in self._old_handlers.items():
            with contextlib.suppress(Exception):
                signal.signal(signum, old)
        self._old_handlers.clear()

    def _write_state(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        state = self.describe()
        path = STATE_DIR / f"{self.prefix}.json"
        path.write_text(json.dumps(state, indent=1, default=str))

    def describe(self) -> dict:
        """The emulation as a JSON-able dict (what ``collsim emulate status`` prints)."""
        return {
            "prefix": self.prefix,
            "name": self.G.graph.get("name"),
            "spec": self.spec,
            "pid": os.getpid(),
            "persistent": self.persistent,
            "created": time.time(),
            "hosts": [
                {"rank": i, "node": str(node), "namespace": self.namespaces[node], "address": self.host_address(i)}
                for i, node in enumerate(self.endpoints)
            ],
            "namespaces": sorted(self.namespaces.values()),
            "links": [
                {
                    "u": str(link.u),
                    "v": str(link.v),
                    "ifname_u": link.ifname_u,
                    "ifname_v": link.ifname_v,
                    "rate_uv": link.rate_uv,
                    "rate_vu": link.rate_vu,
                }
                for link in self.links
            ],
        }

    def _build(self) -> None:
        from pyroute2 import NetNS, netns

        for name in self.namespaces.values():
            netns.create(name)
        handles: dict[Hashable, NetNS] = {}
        try:
            for node, name in self.namespaces.items():
                _write_sysctls(name, self._sysctls)
                handles[node] = NetNS(name)
                ns = handles[node]
                ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
            for i, node in enumerate(self.endpoints):
                ns = handles[node]
                ns.link("add", ifname=HOST_IFNAME, kind="veth", peer={"ifname": f"{HOST_IFNAME}-peer"})
                for ifname in (HOST_IFNAME, f"{HOST_IFNAME}-peer"):
                    ns.link("set", index=ns.link_lookup(ifname=ifname)[0], state="up")
                idx = ns.link_lookup(ifname=HOST_IFNAME)[0]
                ns.addr("add", index=idx, address=self.host_address(i), prefixlen=32)
            for link in self.links:
                nu, nv = handles[link.u], handles[link.v]
                nu.link(
                    "add",
                    ifname=link.ifname_u,
                    kind="veth",
                    peer={"ifname": link.ifname_v, "net_ns_fd": self.namespaces[link.v]},
                )
                for ns, ifname, addr, rate in (
                    (nu, link.ifname_u, link.addr_u, link.rate_uv),
                    (nv, link.ifname_v, link.addr_v, link.rate_vu),
                ):
                    idx = ns.link_lookup(ifname=ifname)[0]
                    ns.addr("add", index=idx, address=addr, prefixlen=30)
                    # every other endpoint may have a socket whose data crosses this link
                    tbf = _tbf_params(rate, len(self.endpoints) - 1, self.bucket_seconds)
                    ns.tc("add", kind="tbf", index=idx, handle="1:", **tbf)
                    ns.link("set", index=idx, state="up")
            self._install_routes(handles)
        finally:
            for ns in handles.values():
                with contextlib.suppress(Exception):
                    ns.close()

    def _install_routes(self, handles) -> None:
        n = len(self.endpoints)
        rules_done: set[tuple[Hashable, int]] = set()
        for s in range(n):
            src_node = self.endpoints[s]
            src_addr = self.host_address(s)
            for d in range(n):
                if d == s:
                    continue
                dst_addr = self.host_address(d)
                path = self.route(s, d)
                for hop, (a, b) in enumerate(path):
                    ifname, via = self._arc_iface[(a, b)]
                    ns = handles[a]
                    oif = ns.link_lookup(ifname=ifname)[0]
                    if hop == 0:
                        if a != src_node:
                            raise ValueError(f"route {s}->{d} starts at {a!r}, not at endpoint {src_node!r}")
                        ns.route("add", dst=f"{dst_addr}/32", gateway=via, oif=oif, prefsrc=src_addr)
                    else:
                        table = _TABLE_BASE + s
                        if (a, s) not in rules_done:
                            ns.rule("add", src=src_addr, src_len=32, table=table, priority=_TABLE_BASE + s)
                            rules_done.add((a, s))
                        ns.route("add", dst=f"{dst_addr}/32", gateway=via, oif=oif, table=table)

    def route(self, i: int, j: int) -> list[tuple[Hashable, Hashable]]:
        """The Router's path (list of arcs) from endpoint ``i`` to endpoint ``j``."""
        self._check_host(i)
        self._check_host(j)
        path = [tuple(arc) for arc in self.router.route(self.endpoints[i], self.endpoints[j])]
        for k in range(1, len(path)):
            if path[k][0] != path[k - 1][1]:
                raise ValueError(f"router returned a broken path from {i} to {j}: {path}")
        return path

    # -- inspection ---------------------------------------------------------------------------

    def trace(self, i: int, j: int) -> list[tuple[Hashable, Hashable]]:
        """The path the kernel routes from endpoint ``i`` to endpoint ``j``, as arcs.

        Asks each namespace along the way for its route lookup (``ip route get`` with the source
        address and the incoming interface), without sending a packet.
        """
        return self.traces([(i, j)])[(i, j)]

    def traces(self, pairs) -> dict[tuple[int, int], list[tuple[Hashable, Hashable]]]:
        """:meth:`trace` for every ``(i, j)`` in ``pairs``, sharing one netlink socket per namespace."""
        from pyroute2 import NetNS

        handles: dict[Hashable, NetNS] = {}
        try:
            out = {}
            for i, j in pairs:
                self._check_host(i)
                self._check_host(j)
                out[(i, j)] = self._trace(i, j, handles)
            return out
        finally:
            for ns in handles.values():
                with contextlib.suppress(Exception):
                    ns.close()

    def _trace(self, i: int, j: int, handles) -> list[tuple[Hashable, Hashable]]:
        from pyroute2 import NetNS

        src, dst = self.host_address(i), self.host_address(j)
        node, iif = self.endpoints[i], None
        arcs: list[tuple[Hashable, Hashable]] = []
        for _ in range(self.G.number_of_nodes() + 1):
            if node == self.endpoints[j]:
                return arcs
            if node not in handles:
                handles[node] = NetNS(self.namespaces[node])
            ns = handles[node]
            kwargs = {"dst": dst, "src": src}
            if iif is not None:
                kwargs["iif"] = ns.link_lookup(ifname=iif)[0]
            msg = ns.route("get", **kwargs)[0]
            oif = msg.get_attr("RTA_OIF")
            ifname = ns.get_links(oif)[0].get_attr("IFLA_IFNAME")
            if (node, ifname) not in self._by_iface:
                raise RuntimeError(f"{self.namespaces[node]} routes {src}->{dst} out of {ifname}, not a link")
            link, nxt = self._by_iface[(node, ifname)]
            arcs.append((node, nxt))
            iif = link.ifname_v if nxt == link.v else link.ifname_u
            node = nxt
        raise RuntimeError(f"routing loop from endpoint {i} to endpoint {j}: {arcs}")

    def arc_bytes(self) -> dict[tuple[Hashable, Hashable], int]:
        """Bytes sent so far on every arc (tx bytes of the veth end at the arc's tail)."""
        from pyroute2 import NetNS

        out: dict[tuple[Hashable, Hashable], int] = {}
        by_node: dict[Hashable, list[tuple[str, Hashable]]] = {}
        for (a, b), (ifname, _) in self._arc_iface.items():
            by_node.setdefault(a, []).append((ifname, b))
        for node, ifaces in by_node.items():
            with NetNS(self.namespaces[node]) as ns:
                stats = {
                    link.get_attr("IFLA_IFNAME"): link.get_attr("IFLA_STATS64")["tx_bytes"]
                    for link in ns.get_links()
                }
            for ifname, b in ifaces:
                out[(node, b)] = int(stats[ifname])
        return out

    def qdiscs(self, node: Hashable) -> dict[str, dict]:
        """The tbf qdisc of every link interface of ``node``: ``{ifname: {"rate": bytes/s, ...}}``."""
        from pyroute2 import NetNS

        out = {}
        with NetNS(self.namespaces[node]) as ns:
            names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ns.get_links()}
            for q in ns.get_qdiscs():
                if q.get_attr("TCA_KIND") != "tbf":
                    continue
                parms = q.get_attr("TCA_OPTIONS").get_attr("TCA_TBF_PARMS")
                out[names[q["index"]]] = {"rate": parms["rate"], "limit": parms["limit"]}
        return out

    # -- processes ----------------------------------------------------------------------------

    def env(self, i: int) -> dict[str, str]:
        """Environment a process on endpoint ``i`` needs: Gloo on the ``host`` interface."""
        return {
            "GLOO_SOCKET_IFNAME": HOST_IFNAME,
            "COLLSIM_HOST_ADDR": self.host_address(i),
            "COLLSIM_EMULATION": self.prefix,
        }

    def run(
        self,
        host_index: int,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        nice: int = 0,
        **popen_kwargs,
    ) -> subprocess.Popen:
        """Start ``argv`` inside endpoint ``host_index``'s namespace; return the Popen.

        The process inherits this environment plus :meth:`env` plus ``env``; it runs in a session
        of its own and is killed (its whole process group) when the emulation goes down. ``nice``
        is added to its scheduling niceness (negative: more CPU priority, as a rank on a cluster
        node has cores of its own; needs root).
        """
        if not isinstance(nice, int) or not -20 <= nice <= 19:
            raise ValueError(f"nice must be an integer in -20..19, got {nice!r}")
        if not self._is_up:
            raise RuntimeError("the emulation is not up; use it as a context manager or call up()")
        name = self.host_namespace(host_index)
        if isinstance(argv, str) or not argv:
            raise ValueError("argv must be a non-empty list of strings")
        full_env = dict(os.environ)
        full_env.update(self.env(host_index))
        full_env.update(env or {})
        fd = os.open(NETNS_DIR / name, os.O_RDONLY)
        libc = _libc()

        def enter_namespace():
            if libc.setns(fd, _CLONE_NEWNET) != 0:
                os._exit(126)
            if nice:
                os.nice(nice)

        try:
            proc = subprocess.Popen(
                list(argv), env=full_env, preexec_fn=enter_namespace, start_new_session=True, **popen_kwargs
            )
        finally:
            os.close(fd)
        self._procs.append(proc)
        return proc


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=3)


def _our_namespaces() -> dict[str, list[str]]:
    """Namespaces named like ours, grouped by emulation prefix."""
    out: dict[str, list[str]] = {}
    if NETNS_DIR.is_dir():
        for entry in sorted(os.listdir(NETNS_DIR)):
            m = PREFIX_PATTERN.match(entry)
            if m:
                out.setdefault(m.group(1), []).append(entry)
    return out


def _pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_emulations() -> list[dict]:
    """Emulations on this machine: state of each (see :meth:`Emulation.describe`) plus ``alive``.

    ``alive`` is False for leftovers: the owning process died without tearing down (and the
    emulation is not a persistent one from ``collsim emulate up``), or the state file is missing.
    """
    groups = _our_namespaces()
    states = {}
    if STATE_DIR.is_dir():
        for path in sorted(STATE_DIR.glob("cs*.json")):
            if PREFIX_PATTERN.match(path.stem + "-"):
                try:
                    states[path.stem] = json.loads(path.read_text())
                except (OSError, ValueError):
                    states[path.stem] = {"prefix": path.stem}
    out = []
    for prefix in sorted(set(groups) | set(states)):
        state = dict(states.get(prefix, {"prefix": prefix, "name": None, "spec": None}))
        state["present"] = groups.get(prefix, [])
        state["alive"] = prefix in states and (state.get("persistent") or _pid_alive(state.get("pid")))
        out.append(state)
    return out


def remove_emulation(prefix: str) -> list[str]:
    """Remove the namespaces and the state file of emulation ``prefix``; return what was removed.

    Processes still running inside the namespaces (started by a crashed owner) are killed first,
    found by their ``/proc/<pid>/ns/net`` inode, so the links really disappear.
    """
    from pyroute2 import netns

    if not PREFIX_PATTERN.match(prefix + "-"):
        raise ValueError(f"not an emulation prefix: {prefix!r} (expected 'cs' and 6 hex digits)")
    names = _our_namespaces().get(prefix, [])
    inodes = set()
    for name in names:
        with contextlib.suppress(OSError):
            inodes.add(os.stat(NETNS_DIR / name).st_ino)
    if inodes:
        _kill_processes_in(inodes)
    removed = []
    for name in names:
        try:
            netns.remove(name)
            removed.append(name)
        except OSError:
            pass
    with contextlib.suppress(FileNotFoundError):
        (STATE_DIR / f"{prefix}.json").unlink()
    return removed


def _kill_processes_in(inodes: set[int]) -> None:
    me = os.getpid()
    victims = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                victims.append(int(entry))
        except OSError:
            continue
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
                alive.append(pid)
        if not alive:
            return
        deadline = time.time() + 2
        while time.time() < deadline and any(_pid_alive(p) for p in alive):
            time.sleep(0.05)
        victims = [p for p in alive if _pid_alive(p)]


def remove_leftovers(*, include_persistent: bool = True) -> list[str]:
    """Remove emulations whose owner is gone (crashed runs) and, by default, persistent ones.

    Emulations owned by a live process (a test or a validation running right now) are left alone.
    Returns the namespaces removed.
    """
    removed = []
    for state in list_emulations():
        owned_by_live = state["alive"] and not state.get("persistent")
        if owned_by_live or (state.get("persistent") and not include_persistent):
            continue
        removed.extend(remove_emulation(state["prefix"]))
    return removed
