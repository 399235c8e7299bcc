"""One cluster node as an OS process, for the multi-process tests and the benchmark.

    python tests/cluster_node_program.py STORE_URL NODE_NAME [--hosts] [--ttl S]

The cluster secret comes from ``SHARDLINE_SECRET`` (never argv, which ``ps``
shows). Prints ``READY <address>`` on stdout once joined, logs events to
stderr, spawns an ``Echo`` actor (for remote-ref benchmarks), hosts
``Account`` entities with ``--hosts``, and leaves gracefully when stdin
closes (a SIGKILL, of course, leaves no chance to).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster_helpers import Account

import runtime
from runtime import Actor, Cluster, Message, Runtime, configure_logging
from runtime.cluster._agent import AGENT_NAME, NodeAgent


class Bump(Message, frozen=True):
    n: int


class Echo(Actor[Bump]):
    """Counts what it is told and answers an ask with the count so far."""

    def __init__(self) -> None:
        self.count = 0

    async def receive(self, msg: Bump) -> int:
        self.count += 1
        return self.count


async def main(url: str, name: str, hosts: bool, ttl: float) -> None:
    configure_logging(json=True, level="info", stream=sys.stderr)
    cluster = Cluster(listen="127.0.0.1:0", secret=os.environ["SHARDLINE_SECRET"], name=name,
                      lease_ttl=ttl)
    async with Runtime(store=url, cluster=cluster) as rt:
        await rt.spawn(Echo, name="echo", mailbox_capacity=100_000)
        await rt.spawn(NodeAgent, name=AGENT_NAME)  # node faults a driver strikes through it
        if hosts:
            rt.register_entity(Account)
        # A node process is long-lived: take what start-up built (store driver, pools,
        # modules) out of the collector's full passes, which otherwise stall every
        # ~100th round trip for a millisecond or more (README, "Running a cluster").
        gc.freeze()
        print(f"READY {rt.cluster_statistics().address}", flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin


@contextmanager
def node_processes(url: str, names: Sequence[str], *, secret: str, hosts: bool, ttl: float,
                   log: IO[str] | int = subprocess.DEVNULL,
                   ) -> Iterator[dict[str, subprocess.Popen[str]]]:
    """Start one node process per name, wait until each has joined, and on exit close
    their stdin (a graceful leave), killing any that do not stop within 10 s."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "SHARDLINE_SECRET": secret, "PYTHONPATH": str(root)}
    extra = ["--hosts"] if hosts else []
    children = {name: subprocess.Popen(
        [sys.executable, __file__, url, name, "--ttl", str(ttl), *extra],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        for name in names}
    try:
        for name, child in children.items():
            assert child.stdout is not None
            line = child.stdout.readline()
            if not line.startswith("READY 127.0.0.1:"):
                raise RuntimeError(f"node {name} did not start: {line!r}")
        yield children
    finally:
        for child in children.values():
            if child.poll() is None and child.stdin is not None:
                child.stdin.close()
        for child in children.values():
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("name")
    parser.add_argument("--hosts", action="store_true")
    parser.add_argument("--ttl", type=float, default=1.0)
    args = parser.parse_args()
    runtime.run(main, args.url, args.name, args.hosts, args.ttl)
