"""Node processes on loopback, started and stopped by one parent (``run --nodes``).

Contract:

- :meth:`NodeFleet.start` launches one ``shardline node`` per name on
  ``127.0.0.1:0`` against the given PostgreSQL store, with the secret in
  an environment variable (never argv), each node's events appended to
  ``<logs>/<name>.log``, and waits until every one printed ``READY``.
  A node that exits or stays silent instead raises :class:`NodeStartFailed`
  naming it and quoting the last line it logged. With ``systems`` each node
  hosts only those (``shardline node --systems``; a run passes its own).
- :meth:`NodeFleet.stop` sends SIGTERM to every node still running (a
  clean leave) and SIGKILLs one that has not exited after ``grace`` s.
- ``kill`` (SIGKILL), ``pause`` (SIGSTOP) and ``resume`` (SIGCONT) act on
  one node; ``restart`` starts a killed node again under the same name.
  ``kills`` counts the SIGKILLs per node.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from runtime._errors import ScenarioError, ShardlineError, StoreError
from runtime.store._url import check_store_url, shown_url

SECRET_ENV = "SHARDLINE_NODE_SECRET"
SHARED_STORE = "several nodes need a shared store: postgresql://user@host:port/db"


def shared_store(url: str, option: str = "--store") -> str:
    """``url`` if several processes can share it; ``ValueError`` with the reason otherwise."""
    try:
        check_store_url(url)
    except (ValueError, StoreError, ScenarioError) as exc:
        raise ValueError(f"{option} {shown_url(url)}: {exc}") from None
    if not url.lower().startswith(("postgresql://", "postgres://")):
        raise ValueError(f"{option} {shown_url(url)}: {SHARED_STORE}")
    return url


class NodeStartFailed(ShardlineError):
    """A node process did not join: it exited or never said READY in time."""


class NodeFleet:
    """Node processes owned by this process; see the module docstring."""

    def __init__(self, store: str, secret: str, logs: Path, *, lease_ttl: float = 3.0,
                 ready_within: float = 30.0, systems: Sequence[str] | None = None) -> None:
        self.store = store
        self.systems = systems
        self.logs = logs
        self.lease_ttl = lease_ttl
        self.ready_within = ready_within
        self.processes: dict[str, subprocess.Popen[str]] = {}
        self.addresses: dict[str, str] = {}
        self.kills: dict[str, int] = {}
        self._secret = secret
        self._log_files: dict[str, IO[str]] = {}

    def start(self, names: Sequence[str]) -> None:
        """Start a node per name and wait until every one joined (``NodeStartFailed``)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        for name in names:
            self._launch(name)
        for name in names:
            self._await_ready(name)

    def _launch(self, name: str) -> None:
        env = {**os.environ, SECRET_ENV: self._secret}
        log = self._log_files.get(name) or (self.logs / f"{name}.log").open("a",
                                                                           encoding="utf-8")
        self._log_files[name] = log
        self.kills.setdefault(name, 0)
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", "node", "--store", self.store,
             "--listen", "127.0.0.1:0", "--secret-env", SECRET_ENV, "--name", name,
             "--lease-ttl", f"{self.lease_ttl}s",
             *(["--systems", ",".join(self.systems)] if self.systems is not None else [])],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True, env=env)

    def _await_ready(self, name: str) -> None:
        child = self.processes[name]
        assert child.stdout is not None
        deadline = time.monotonic() + self.ready_within
        while time.monotonic() < deadline:
            ready, _, _ = select.select([child.stdout], [], [], 0.1)
            if ready:
                line = child.stdout.readline()
                if line.startswith("READY "):
                    self.addresses[name] = line.split()[-1]
                    return
                if not line and child.poll() is not None:
                    break
        if child.poll() is None:
            child.kill()
            child.wait()
            raise NodeStartFailed(f"node {name} did not join within {self.ready_within:g} s"
                                  f"{self._last_words(name)}")
        raise NodeStartFailed(f"node {name} could not join (exit {child.returncode})"
                              f"{self._last_words(name)}")

    def _last_words(self, name: str) -> str:
        self._log_files[name].flush()
        lines = (self.logs / f"{name}.log").read_text(encoding="utf-8").strip().splitlines()
        return f": {lines[-1]}" if lines else ""

    def kill(self, name: str) -> None:
        """SIGKILL node ``name`` (no leave: its leases expire after their TTL)."""
        child = self.processes[name]
        if child.poll() is None:
            child.send_signal(signal.SIGCONT)  # a paused node dies as well
            child.kill()
            child.wait()
            self.kills[name] += 1

    def pause(self, name: str) -> None:
        """SIGSTOP node ``name``: it keeps its sockets and leases but does nothing."""
        if self.processes[name].poll() is None:
            self.processes[name].send_signal(signal.SIGSTOP)

    def resume(self, name: str) -> None:
        """SIGCONT node ``name``: it wakes up with whatever leases it thinks it holds."""
        if self.processes[name].poll() is None:
            self.processes[name].send_signal(signal.SIGCONT)

    def restart(self, name: str) -> None:
        """Start node ``name`` again after a kill and wait until it joined."""
        if self.processes[name].poll() is None:
            raise ValueError(f"node {name} is still running")
        self._launch(name)
        self._await_ready(name)

    def running(self) -> list[str]:
        return [name for name, child in self.processes.items() if child.poll() is None]

    def stop(self, grace: float = 10.0) -> dict[str, int]:
        """SIGTERM every running node, SIGKILL any not gone after ``grace`` s; exit codes."""
        for child in self.processes.values():
            if child.poll() is None:
                child.send_signal(signal.SIGCONT)
                child.terminate()
        codes: dict[str, int] = {}
        for name, child in self.processes.items():
            try:
                codes[name] = child.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                child.kill()
                codes[name] = child.wait()
            if child.stdout is not None:
                child.stdout.close()
        for log in self._log_files.values():
            log.close()
        return codes
