"""CPU seconds of other processes, read from ``/proc`` (Linux): the node processes a
run started, and a PostgreSQL server with its backends.

Reading a known process is cheap (one small file); finding processes is a
scan of ``/proc`` (~5 ms with ~100 processes): the node processes are found
once (and again when one is gone), a server's backends at every reading.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (field 3 on)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def process_cpu(pid: int, *, waited_children: bool = False) -> float | None:
    """User + system CPU seconds of ``pid`` (and of the children it waited for, if
    ``waited_children``); None if it is gone."""
    fields = _stat(pid)
    if fields is None:
        return None
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if waited_children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / _TICK


def children_of(parent: int) -> list[int]:
    """The live processes whose parent is ``parent``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None and int(fields[1]) == parent:
                found.append(int(entry))
    return found


def node_name(pid: int) -> str | None:
    """The ``--name`` of a ``shardline node`` process, None for any other process."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return None
    if "node" not in argv or "--name" not in argv:
        return None
    return argv[argv.index("--name") + 1]


class NodeCpu:
    """CPU seconds of each ``shardline node`` child of this process, by node name."""

    def __init__(self) -> None:
        self._pids: dict[int, str] = {}

    def read(self) -> dict[str, float]:
        seconds = {self._pids[pid]: process_cpu(pid) for pid in self._pids}
        if not self._pids or any(s is None for s in seconds.values()):
            self._pids = {pid: name for pid in children_of(os.getpid())
                          if (name := node_name(pid)) is not None}
            seconds = {self._pids[pid]: process_cpu(pid) for pid in self._pids}
        return {name: s for name, s in seconds.items() if s is not None}


class ServerCpu:
    """CPU seconds of a PostgreSQL server: the postmaster, the backends it waited for,
    and the live ones (the backends are its children)."""

    def __init__(self, postmaster: int) -> None:
        self.postmaster = postmaster

    def read(self) -> float:
        """A scan of ``/proc`` each time: a run's pools open new backends at any moment."""
        total = process_cpu(self.postmaster, waited_children=True) or 0.0
        return total + sum(process_cpu(pid) or 0.0 for pid in children_of(self.postmaster))
