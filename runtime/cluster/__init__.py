"""Nodes, membership, location-transparent refs and entities.

A *node* is a ``Runtime`` given a ``Cluster``: it registers in the shared
store under a renewed lease, listens on a transport (TCP, or a simulated
network in tests), and exchanges MessagePack frames with its peers after
both sides proved the cluster secret. ``rt.remote(node, name, cls)`` is a
ref to an actor on another node; ``rt.entity(cls, key)`` a ref to an
entity, activated on demand on one node under a fenced lease.

The pieces, bottom up: ``_config`` (what a node is told), ``_auth`` and
``_frames`` (the wire), ``_transport`` with ``_tcp`` and ``_simnet`` (two
implementations of one interface), ``_outbox`` (per-peer batching and
reconnects) and ``_inbound`` (handling what arrives), ``_membership`` (who
is live, placement), ``_entities`` and ``_routing`` (hosting and sending),
``_watches``, ``_refs``, and ``_node`` tying them up.
"""

from runtime.cluster._config import Cluster
from runtime.cluster._errors import ClusterError, RemoteError, UnknownMessageTag
from runtime.cluster._simnet import SimulatedNetwork
from runtime.cluster._stats import ClusterStatistics

__all__ = [
    "Cluster",
    "ClusterError",
    "ClusterStatistics",
    "RemoteError",
    "SimulatedNetwork",
    "UnknownMessageTag",
]
