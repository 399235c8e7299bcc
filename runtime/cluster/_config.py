"""``Cluster``: how a node joins the others (what ``Runtime(cluster=...)`` takes).

Policy:

- A node listens on ``listen`` (``"host:port"``; ``"127.0.0.1:0"``, the
  default, picks a free port on loopback: binding beyond it is a choice;
  on a simulated network the default is the node's name) and proves
  ``secret`` to every peer with an HMAC challenge; the secret itself
  never crosses the wire and never appears in a message or a ``repr``.
- It registers in the shared store under a lease of ``lease_ttl`` seconds,
  renewed every ``lease_ttl / 3``; its entities hold leases of the same TTL.
  A node that cannot renew for a whole TTL considers itself dead and stops
  its entities, because by then the others may already run them. Choose
  the TTL above the longest stretch the node's event loop may be busy
  without yielding (a long handler, a GC pause), or the node will be
  declared dead while it works.
- An entity idle for ``passivate_after`` seconds is stopped and its lease
  released (``None``: never).
- Messages to an entity are re-sent by the sender's node until the entity's
  node acknowledges them (every ``retry_interval`` without an
  acknowledgement), for at most ``entity_retry_for`` seconds for a ``tell``
  and the ask's timeout for an ``ask``.
- A frame holds at most ``batch`` messages and ``max_frame`` bytes; a peer
  sending a bigger one is disconnected. At most ``outbox_capacity``
  messages wait for one peer; beyond that ``tell`` waits and
  ``tell_nowait`` raises ``MailboxFull``.
- ``network``: the transport to use: ``None`` for TCP, or a
  ``runtime.testing.SimulatedNetwork`` to run nodes in one simulated process.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from runtime._supervisor import Backoff

if TYPE_CHECKING:
    from runtime.cluster._simnet import SimulatedNetwork

DEFAULT_MAX_FRAME = 8 * 1024 * 1024
LOOPBACK = "127.0.0.1:0"


def _positive(what: str, value: float) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) \
            or value <= 0:
        raise ValueError(f"Cluster {what} must be a finite number of seconds > 0, got {value!r}")
    return float(value)


def _count(what: str, value: int, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"Cluster {what} must be an int >= {minimum}, got {value!r}")
    return value


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` to ``(host, port)``; ``ValueError`` naming the address otherwise."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"Cluster listen address {address!r} is not host:port "
                         "(e.g. '127.0.0.1:7401', or port 0 for a free one)")
    return host, int(port)


class Cluster:
    """Configuration of this process as a cluster node; see the module docstring."""

    __slots__ = ("batch", "entity_retry_for", "lease_ttl", "listen", "max_frame", "name",
                 "network", "outbox_capacity", "passivate_after", "reconnect", "retry_interval",
                 "secret")

    def __init__(
        self,
        *,
        listen: str = LOOPBACK,
        secret: str,
        name: str | None = None,
        lease_ttl: float = 3.0,
        passivate_after: float | None = 300.0,
        retry_interval: float = 0.5,
        entity_retry_for: float = 30.0,
        max_frame: int = DEFAULT_MAX_FRAME,
        batch: int = 512,
        outbox_capacity: int = 16_384,
        reconnect: Backoff | None = None,
        network: SimulatedNetwork | None = None,
    ) -> None:
        if not isinstance(secret, str) or not secret:
            raise ValueError("Cluster secret must be a non-empty str")
        if not isinstance(listen, str):
            raise TypeError(f"Cluster listen must be a str, got {type(listen).__name__}")
        if network is None:
            split_address(listen)
        elif listen == LOOPBACK:  # on a simulated network a node's address is its name
            if name is None:
                raise ValueError("Cluster on a simulated network needs a name (its address)")
            listen = name
        elif not listen:
            raise ValueError("Cluster listen must name this node's address on the network")
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ValueError(f"Cluster name must be a non-empty str without '/', got {name!r}")
        self.listen = listen
        self.secret = secret
        self.name = name
        self.lease_ttl = _positive("lease_ttl", lease_ttl)
        self.passivate_after = (None if passivate_after is None
                                else _positive("passivate_after", passivate_after))
        self.retry_interval = _positive("retry_interval", retry_interval)
        self.entity_retry_for = _positive("entity_retry_for", entity_retry_for)
        self.max_frame = _count("max_frame", max_frame, 1024)
        self.batch = _count("batch", batch, 1)
        self.outbox_capacity = _count("outbox_capacity", outbox_capacity, 1)
        self.reconnect = reconnect or Backoff(min=0.05, max=2.0, jitter=0.2)
        self.network = network

    def __repr__(self) -> str:  # never the secret
        return f"Cluster(listen={self.listen!r}, name={self.name!r}, secret=<hidden>)"
