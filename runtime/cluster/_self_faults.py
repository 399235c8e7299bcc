"""Node faults a node process inflicts on itself, for a driver that did not start it.

A driver that joined a cluster started by hand (``shardline run --join``) cannot
signal the node processes, so it asks each node's agent, and the node acts on its
own process:

- :func:`kill_self` SIGKILLs it; with ``restart_after`` a small helper process,
  started first, waits that long (at least the node's lease TTL, so the old
  incarnation's membership lease has expired) and then starts the same command
  line again (``sys.orig_argv``), with the same environment and output.
- :func:`pause_self` SIGSTOPs it; a helper process started first sends SIGCONT
  after ``seconds``, so the node wakes with stale leases, as a paused machine does.

The helpers are plain ``python -c`` programs: nothing of the node survives in them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

_RESTART = (
    "import os, sys, time\n"
    "time.sleep(float(sys.argv[1]))\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)
_RESUME = (
    "import os, signal, sys, time\n"
    "time.sleep(float(sys.argv[2]))\n"
    "os.kill(int(sys.argv[1]), signal.SIGCONT)\n"
)
RESTART_MARGIN = 0.5
"""Seconds past the lease TTL before the command starts again (process start-up is on top)."""


def restart_delay(restart_after: float, lease_ttl: float) -> float:
    """When the killed node's command starts again: ``restart_after``, but never before
    its old membership lease has surely expired."""
    return max(restart_after, lease_ttl + RESTART_MARGIN)


def kill_self(restart_after: float | None, lease_ttl: float) -> None:
    """SIGKILL this process; with ``restart_after``, start its command line again later."""
    if restart_after is not None:
        command = [sys.executable, *sys.orig_argv[1:]]
        subprocess.Popen([sys.executable, "-c", _RESTART,
                          str(restart_delay(restart_after, lease_ttl)), *command])
    os.kill(os.getpid(), signal.SIGKILL)


def pause_self(seconds: float) -> None:
    """SIGSTOP this process; a helper process sends SIGCONT after ``seconds``."""
    subprocess.Popen([sys.executable, "-c", _RESUME, str(os.getpid()), str(seconds)])
    os.kill(os.getpid(), signal.SIGSTOP)
