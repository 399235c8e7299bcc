"""``shardline node``: one cluster node as a long-lived process.

Contract:

- The node joins the cluster of ``--store`` (PostgreSQL only: the nodes of
  a cluster share one store, and neither ``sqlite://`` nor ``memory://``
  can be shared between processes), listens on ``--listen`` and proves the
  cluster secret, read from ``--secret-file`` or the environment variable
  ``--secret-env`` (never from argv, which ``ps`` shows), to its peers.
- It hosts the entity kinds every installed system declares
  (``ScenarioSystem.register_node``), or only those of ``--systems`` (a node
  then imports only what they need: deploy's statistics, scipy, are three
  quarters of a node's start-up; every node of a cluster must host the
  systems its runs use), and spawns the node agent
  (``runtime.cluster._agent``), then prints ``READY <name> <address>`` on
  stdout. Events go to stderr as JSON lines.
- Before saying READY it asks every live peer's agent; if there are peers
  and none of them answers within two lease TTLs, the node was refused
  (a wrong secret, most likely): it logs ``node.refused``, leaves and
  exits 2 (``_refused_by``).
- SIGTERM or SIGINT: the node leaves (releases its membership and its
  entities' leases, so others take them over at once) and exits 0.
- Bad input (a store that cannot be shared, a bad listen address, no
  secret) is exit 2 with one line naming the option; a password in the
  store URL is never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import structlog

from runtime._durations import parse_duration
from runtime._errors import ShardlineError
from runtime._logging import configure_logging
from runtime._node_fleet import shared_store
from runtime._simloop import run
from runtime._system import Runtime
from runtime.cluster._agent import AGENT_NAME, NodeAgent, unreachable_peers
from runtime.cluster._config import Cluster, split_address
from runtime.scenario._nodes import host_everything
from runtime.scenario._registry import load_system, system_names
from runtime.store._url import shown_url

EXIT_OK, EXIT_BAD_INPUT = 0, 2
_PROBE_ASK = 1.0
_log = structlog.get_logger("shardline")


@dataclass(frozen=True)
class NodeOptions:
    """A node's validated command line (the secret is never printed)."""

    store: str
    listen: str
    secret: str
    name: str | None
    lease_ttl: float
    systems: tuple[str, ...]


def add_node_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``node`` subcommand to the ``shardline`` sub-parsers."""
    node = sub.add_parser("node", help="run a cluster node that hosts the systems' entities")
    node.add_argument("--store", required=True, help="the cluster's store: postgresql://...")
    node.add_argument("--listen", default="127.0.0.1:0",
                      help="host:port to listen on (default 127.0.0.1:0, a free loopback port)")
    secret = node.add_mutually_exclusive_group(required=True)
    secret.add_argument("--secret-file", help="file holding the cluster secret")
    secret.add_argument("--secret-env", metavar="VAR",
                        help="environment variable holding the cluster secret")
    node.add_argument("--name", default=None, help="node name (default: generated)")
    node.add_argument("--lease-ttl", default="3s",
                      help="membership and entity lease TTL (default 3s)")
    node.add_argument("--systems", default=None, metavar="S,..",
                      help="host only these systems (default: every installed one)")
    node.add_argument("--log-level", default="info",
                      choices=("debug", "info", "warning", "error", "critical"))
    node.set_defaults(handler=cmd_node)


def read_secret(args: argparse.Namespace) -> str:
    """The cluster secret of ``--secret-file`` or ``--secret-env``; ``ValueError`` naming
    the option (never the secret)."""
    if args.secret_file is not None:
        try:
            text = Path(args.secret_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"--secret-file {args.secret_file}: cannot read it: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
        if not text:
            raise ValueError(f"--secret-file {args.secret_file}: the file is empty; "
                             "expected the cluster secret")
        return text
    value = os.environ.get(args.secret_env, "").strip()
    if not value:
        raise ValueError(f"--secret-env {args.secret_env}: the environment variable is unset "
                         "or empty; expected the cluster secret")
    return value


def node_options(args: argparse.Namespace) -> NodeOptions:
    """Validate the command line; ``ValueError`` naming the bad option."""
    store = shared_store(args.store)
    try:
        split_address(args.listen)
    except ValueError as exc:
        raise ValueError(f"--listen: {exc}") from None
    if args.name is not None and (not args.name or "/" in args.name):
        raise ValueError(f"--name: expected a non-empty name without '/', got {args.name!r}")
    try:
        lease_ttl = parse_duration(args.lease_ttl)
    except ValueError as exc:
        raise ValueError(f"--lease-ttl: {exc}") from None
    if lease_ttl <= 0:
        raise ValueError(f"--lease-ttl: expected a positive duration, got {args.lease_ttl!r}")
    return NodeOptions(store, args.listen, read_secret(args), args.name, lease_ttl,
                       hosted_systems(args.systems))


def hosted_systems(option: str | None) -> tuple[str, ...]:
    """The systems of ``--systems`` (every installed one without it); ``ValueError``
    naming a name that is not installed."""
    known = system_names()
    if option is None:
        return tuple(known)
    names = tuple(dict.fromkeys(name.strip() for name in option.split(",")))
    for name in names:
        if name not in known:
            raise ValueError(f"--systems: expected names from {', '.join(known)} separated "
                             f"by commas, got {name!r}")
    return names


def cmd_node(args: argparse.Namespace) -> int:
    try:
        options = node_options(args)
    except ValueError as exc:
        print(f"shardline: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    configure_logging(json=True, level=args.log_level, stream=sys.stderr)
    try:
        refused_by: list[str] = run(serve_node, options)
    except (ShardlineError, OSError, ValueError) as exc:
        print(f"shardline: error: node {options.name or '(unnamed)'} could not join "
              f"{shown_url(options.store)}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if refused_by:
        print(f"shardline: error: node {options.name or '(unnamed)'} was refused by every peer "
              f"({', '.join(refused_by)}): none answered through the cluster handshake; "
              "is the secret the same on every node?", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


async def serve_node(options: NodeOptions) -> list[str]:
    """Join, host, say READY, and serve until SIGTERM/SIGINT.

    Returns ``[]`` after a clean leave, or the peers that refused this node (it left
    without saying READY)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # Import the hosted systems before joining: their imports (scipy for deploy's
    # analysis) take seconds, and a node that blocked its loop that long inside the
    # cluster would miss its first lease renewals.
    hosted = [load_system(name) for name in options.systems]
    cluster = Cluster(listen=options.listen, secret=options.secret, name=options.name,
                      lease_ttl=options.lease_ttl)
    async with Runtime(store=options.store, cluster=cluster) as rt:
        await host_everything(rt, hosted)
        await rt.spawn(NodeAgent, list(options.systems), name=AGENT_NAME)
        refused_by = await _refused_by(rt, 2 * options.lease_ttl)
        if refused_by:
            _log.error("node.refused", node=rt.node_name, peers=refused_by)
            return refused_by
        # A node is long-lived: keep what start-up built out of the collector's full
        # passes (README, "Running a cluster").
        gc.freeze()
        print(f"READY {rt.node_name} {rt.cluster_statistics().address}", flush=True)
        await stop.wait()
        _log.info("node.stopping", node=rt.node_name, reason="signal")
    return []


async def _refused_by(rt: Runtime, window: float) -> list[str]:
    """The peers this node saw during ``window`` s if none of them ever answered; else [].

    Accepted as soon as one peer answers (any answer passed the handshake). A node
    that sees no peer at its first look is the first of its cluster. A peer that
    drops out of the membership meanwhile (its lease lapsed on a loaded machine, or
    it died) still counts as silent: its absence proves nothing about the secret,
    and taking it for an answer let a node with the wrong secret say READY.
    """
    deadline = rt.now() + window
    seen: set[str] = set()
    while True:
        peers = [name for name in rt.nodes() if name != rt.node_name]
        seen.update(peers)
        if not seen:
            return []
        silent = await unreachable_peers(rt, _PROBE_ASK, peers)
        if len(silent) < len(peers):
            return []
        if rt.now() >= deadline:
            return sorted(seen)
        await asyncio.sleep(_PROBE_ASK / 4)
