"""A simulated network for several nodes in one simulated process.

Nodes built with ``Cluster(listen=NAME, network=net)`` talk over ``net``
instead of TCP; their address on it is ``NAME``. Everything the network
does is drawn from its own seeded generator and timed on the loop's
(virtual) clock, so a seed replays exactly:

- every frame takes ``delay`` seconds (uniform in the given range); frames
  on one link stay in order, as on a TCP connection;
- with probability ``drop`` a frame is lost, with ``duplicate`` it arrives
  twice (a transport that misbehaves worse than TCP, to test what the
  entity layer promises above it);
- ``partition(group, group, ...)`` cuts every pair of nodes named in
  different groups (frames between them vanish, new connections fail)
  until ``heal()``; a node named in no group reaches everyone;
- ``kill_node(name)`` is a SIGKILL: the node stops at once, releases
  nothing, and its links close; ``pause_node(name, seconds)`` is a long GC
  pause or SIGSTOP: it handles nothing and its frames wait.

Both sides of a connection prove the cluster secret (``_auth``) as over TCP.

The node faults are also fault kinds of every node's runtime on a simulated
network, so a fault plan can schedule them like any other:
``Fault(kind="kill_node", target="n2", at=5.0)``, ``pause_node`` (for
``duration``), ``partition`` (target ``"n1|n2,n3"``: groups split by ``|``,
members by ``,``) and ``heal``. So are windows of link faults, each for
``duration`` seconds on every frame sent to or from a node matching
``target``: ``net_drop`` (the frame is lost), ``net_duplicate`` (it arrives
twice) and ``net_delay`` (it takes ``delay`` seconds more). A window that
fires while the same kind is open on the same target extends it instead of
stacking (triggers never pile up, as in ``runtime._faults``).
"""

from __future__ import annotations

import asyncio
import fnmatch
import random
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

import structlog

from runtime._simloop import current_seed
from runtime._trace import Trace, TraceLevel
from runtime.cluster import _auth
from runtime.cluster._errors import FrameError, LinkClosed
from runtime.cluster._transport import Accept, Link, Transport

if TYPE_CHECKING:
    from runtime._faults import Fault, FaultInjector

_log = structlog.get_logger("shardline")
CONNECT_TIMEOUT = 1.0
NODE_FAULT_KINDS = ("kill_node", "pause_node", "partition", "heal")
LINK_FAULT_KINDS = ("net_drop", "net_duplicate", "net_delay")


class _LinkFault:
    """An open window of one link fault kind on the nodes matching ``target``."""

    __slots__ = ("delay", "kind", "target", "until")

    def __init__(self, kind: str, target: str, until: float, delay: float) -> None:
        self.kind = kind
        self.target = target
        self.until = until
        self.delay = delay

    def hits(self, src: str, dst: str) -> bool:
        return fnmatch.fnmatchcase(src, self.target) or fnmatch.fnmatchcase(dst, self.target)


class NodeControl(Protocol):
    def kill(self) -> None: ...

    def pause(self, seconds: float) -> None: ...


class _Channel:
    """Frames one way between two addresses, in order."""

    def __init__(self, net: SimulatedNetwork, src: str, dst: str, max_frame: int) -> None:
        self.net = net
        self.src = src
        self.dst = dst
        self.max_frame = max_frame
        self.inbox: deque[bytes] = deque()
        self.in_transit: deque[bytes] = deque()
        """Frames pushed and not yet arrived, in push order."""
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.last_arrival = 0.0

    def push(self, frame: bytes) -> None:
        if self.closed:
            raise LinkClosed(f"link {self.src} -> {self.dst} is closed")
        net = self.net
        if not net.reachable(self.src, self.dst):
            net.dropped += 1
            return
        rng = net.rng
        windows = net.link_faults_on(self.src, self.dst)
        if (net.drop and rng.random() < net.drop) or "net_drop" in windows:
            net.dropped += 1
            net.trace.record(net.now(), "frame_dropped", f"{self.src}->{self.dst}")
            return
        duplicated = (net.duplicate and rng.random() < net.duplicate) or (
            "net_duplicate" in windows)
        copies = 2 if duplicated else 1
        if copies == 2:
            net.duplicated += 1
            net.trace.record(net.now(), "frame_duplicated", f"{self.src}->{self.dst}")
        loop = asyncio.get_running_loop()
        extra = windows.get("net_delay", 0.0)
        for _ in range(copies):
            arrival = max(self.last_arrival, loop.time() + rng.uniform(*net.delay) + extra,
                          net.paused_until.get(self.src, 0.0), net.paused_until.get(self.dst, 0.0))
            self.last_arrival = arrival
            self.in_transit.append(frame)
            loop.call_at(arrival, self._arrive)

    def _arrive(self) -> None:
        """One frame arrives: the oldest in transit. Timers due at the same instant run in
        a seeded order (the simulated loop shuffles), so each takes the next frame in
        push order rather than its own: a link delivers in order, Hello first."""
        if self.closed or not self.in_transit:
            return
        hold = self.net.paused_until.get(self.dst, 0.0)
        if hold > asyncio.get_running_loop().time():
            asyncio.get_running_loop().call_at(hold, self._arrive)
            return
        frame = self.in_transit.popleft()
        if not self.net.reachable(self.src, self.dst):
            self.net.dropped += 1
            return
        self.inbox.append(frame)
        self._wake()

    def close(self) -> None:
        self.closed = True
        self.inbox.clear()
        self.in_transit.clear()
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def pop(self) -> bytes:
        while not self.inbox:
            if self.closed:
                raise LinkClosed(f"link {self.src} -> {self.dst} closed")
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        frame = self.inbox.popleft()
        if len(frame) > self.max_frame:
            raise FrameError(f"frame of {len(frame)} bytes from {self.src} exceeds the "
                             f"maximum of {self.max_frame}")
        return frame


class _SimLink(Link):
    def __init__(self, out: _Channel, into: _Channel) -> None:
        self._out = out
        self._in = into
        self.peer = out.dst

    async def send(self, frame: bytes) -> None:
        self._out.push(frame)

    async def receive(self) -> bytes:
        return await self._in.pop()

    async def close(self) -> None:
        self._out.close()
        self._in.close()


class _SimTransport(Transport):
    def __init__(self, net: SimulatedNetwork, secret: str, max_frame: int,
                 control: NodeControl) -> None:
        self.net = net
        self.secret = secret.encode()
        self.max_frame = max_frame
        self.control = control
        self.address = ""
        self.accept: Accept | None = None
        self.tasks: dict[asyncio.Task[None], None] = {}
        self.refused = 0

    async def listen(self, address: str, accept: Accept) -> str:
        if address in self.net._listeners:
            raise OSError(f"address {address!r} is already in use on the simulated network")
        self.address = address
        self.accept = accept
        self.net._listeners[address] = self
        return address

    async def connect(self, address: str) -> Link:
        net = self.net
        await asyncio.sleep(net.rng.uniform(*net.delay))
        server = net._listeners.get(address)
        if server is None or not net.reachable(self.address, address):
            if server is not None:
                await asyncio.sleep(CONNECT_TIMEOUT)
            raise LinkClosed(f"cannot connect to {address} on the simulated network")
        nonce = net.rng.randbytes(_auth.NONCE_SIZE)
        mine = net.rng.randbytes(_auth.NONCE_SIZE)
        claimed = _auth.proof(self.secret, _auth.CLIENT, nonce)
        if not _auth.verify(server.secret, _auth.CLIENT, nonce, claimed):
            server.refused += 1
            _log.warning("connection.refused", peer=self.address,
                         reason="wrong proof of the cluster secret")
            raise LinkClosed(f"{address} refused the connection: wrong proof of the secret")
        if not _auth.verify(self.secret, _auth.SERVER, mine,
                            _auth.proof(server.secret, _auth.SERVER, mine)):
            raise LinkClosed(f"{address} did not prove the cluster secret")
        out = _Channel(net, self.address, address, server.max_frame)
        back = _Channel(net, address, self.address, self.max_frame)
        net._channels.extend((out, back))
        server._serve(_SimLink(back, out))
        return _SimLink(out, back)

    def _serve(self, link: _SimLink) -> None:
        assert self.accept is not None
        task = asyncio.get_running_loop().create_task(self._run_accepted(link))
        self.tasks[task] = None
        task.add_done_callback(self.tasks.pop)

    async def _run_accepted(self, link: _SimLink) -> None:
        assert self.accept is not None
        try:
            await self.accept(link)
        finally:
            await link.close()

    async def close(self) -> None:
        if self.net._listeners.get(self.address) is self:
            del self.net._listeners[self.address]
        self.net._close_links_of(self.address)
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks))


class SimulatedNetwork:
    """Seeded delay, drop, duplicate, partitions, kills and pauses; see the module docstring."""

    def __init__(self, *, delay: tuple[float, float] = (0.0005, 0.002), drop: float = 0.0,
                 duplicate: float = 0.0, seed: int | None = None) -> None:
        if not 0 <= delay[0] <= delay[1]:
            raise ValueError(f"delay must be (low, high) with 0 <= low <= high, got {delay}")
        for what, p in (("drop", drop), ("duplicate", duplicate)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{what} must be a probability in [0, 1), got {p}")
        self.delay = delay
        self.drop = drop
        self.duplicate = duplicate
        self._seed = seed
        self._rng: random.Random | None = None
        self.trace = Trace(TraceLevel.FULL)
        self._listeners: dict[str, _SimTransport] = {}
        self._channels: list[_Channel] = []
        self._groups: list[frozenset[str]] = []
        self.paused_until: dict[str, float] = {}
        self.dropped = 0
        self.duplicated = 0
        self._link_faults: list[_LinkFault] = []

    @property
    def rng(self) -> random.Random:
        if self._rng is None:
            seed = self._seed if self._seed is not None else current_seed()
            self._rng = random.Random(f"shardline-network:{seed}")
        return self._rng

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def transport(self, secret: str, max_frame: int, control: NodeControl) -> Transport:
        return _SimTransport(self, secret, max_frame, control)

    # -- faults ------------------------------------------------------------
    def reachable(self, a: str, b: str) -> bool:
        group_a = next((g for g in self._groups if a in g), None)
        group_b = next((g for g in self._groups if b in g), None)
        return group_a is None or group_b is None or group_a is group_b

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut every pair of nodes named in different groups, until ``heal``."""
        self._groups = [frozenset(g) for g in groups]
        described = " | ".join(",".join(sorted(g)) for g in self._groups)
        self.trace.record(self.now(), "partition", "network", described)
        _log.warning("network.partitioned", groups=described)

    def heal(self) -> None:
        self._groups = []
        self.trace.record(self.now(), "heal", "network")
        _log.info("network.healed")

    def kill_node(self, name: str) -> None:
        """SIGKILL the node listening as ``name``: it stops now and releases nothing."""
        transport = self._listeners.pop(name, None)
        if transport is None:
            raise ValueError(f"no live node {name!r} on this network")
        self.trace.record(self.now(), "kill_node", name)
        self._close_links_of(name)
        transport.control.kill()

    def pause_node(self, name: str, seconds: float) -> None:
        """Freeze the node ``name`` for ``seconds``: no handling, no renewal, frames wait."""
        transport = self._listeners.get(name)
        if transport is None:
            raise ValueError(f"no live node {name!r} on this network")
        self.paused_until[name] = max(self.paused_until.get(name, 0.0), self.now() + seconds)
        self.trace.record(self.now(), "pause_node", name, f"{seconds:g}s")
        transport.control.pause(seconds)

    def open_link_fault(self, kind: str, target: str, seconds: float,
                        delay: float = 0.0) -> None:
        """Open a ``net_drop``/``net_duplicate``/``net_delay`` window on frames to or from
        nodes matching ``target`` for ``seconds``; the same kind on the same target extends
        the open window rather than stacking a second one."""
        if kind not in LINK_FAULT_KINDS:
            raise ValueError(f"unknown link fault {kind!r}; expected one of "
                             + ", ".join(LINK_FAULT_KINDS))
        until = self.now() + seconds
        for window in self._link_faults:
            if (window.kind, window.target) == (kind, target) and window.until > self.now():
                window.until = max(window.until, until)
                window.delay = max(window.delay, delay)
                break
        else:
            self._link_faults.append(_LinkFault(kind, target, until, delay))
        self.trace.record(self.now(), kind, target, f"{seconds:g}s")
        _log.warning("network.link_fault", kind=kind, target=target, seconds=seconds)

    def link_faults_on(self, src: str, dst: str) -> dict[str, float]:
        """The link fault kinds open on frames ``src -> dst`` now (``net_delay`` → seconds)."""
        if not self._link_faults:
            return {}
        now = self.now()
        self._link_faults = [w for w in self._link_faults if w.until > now]
        return {w.kind: w.delay for w in self._link_faults if w.hits(src, dst)}

    def _close_links_of(self, address: str) -> None:
        keep: list[_Channel] = []
        for channel in self._channels:
            if address in (channel.src, channel.dst):
                channel.close()
            elif not channel.closed:
                keep.append(channel)
        self._channels = keep


def register_network_faults(faults: FaultInjector, net: SimulatedNetwork) -> None:
    """Make the network's node faults kinds of a runtime's fault plan (see the docstring)."""

    def kill(fault: Fault) -> None:
        for name in sorted(net._listeners):
            if fault.matches(name):
                net.kill_node(name)

    def pause(fault: Fault) -> None:
        for name in sorted(net._listeners):
            if fault.matches(name):
                net.pause_node(name, fault.duration)

    def partition(fault: Fault) -> None:
        net.partition(*(group.split(",") for group in fault.target.split("|")))

    def link(fault: Fault) -> None:
        net.open_link_fault(fault.kind, fault.target, fault.duration, fault.delay)

    handlers = {"kill_node": kill, "pause_node": pause, "partition": partition,
                "heal": lambda fault: net.heal(),
                **dict.fromkeys(LINK_FAULT_KINDS, link)}
    for kind in (*NODE_FAULT_KINDS, *LINK_FAULT_KINDS):
        if kind not in faults.known_kinds():
            faults.register_kind(kind, handlers[kind])
