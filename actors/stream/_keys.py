"""Store key layout of one stream (one place, so tools and checks agree)."""

from __future__ import annotations

import zlib


def partition_of(key: str, partitions: int) -> int:
    """Stable hash partitioning (CRC-32; never Python's per-process ``hash``)."""
    return zlib.crc32(key.encode()) % partitions


def log_name(stream: str, partition: int) -> str:
    return f"stream/{stream}/p{partition}"


def checkpoint_key(stream: str, partition: int) -> str:
    return f"stream/{stream}/p{partition}/checkpoint"


def producer_key(stream: str, partition: int) -> str:
    return f"stream/{stream}/p{partition}/producer"


def commits_log(stream: str, partition: int) -> str:
    return f"stream/{stream}/p{partition}/commits"


def lease_prefix(stream: str) -> str:
    return f"stream/{stream}/lease/"


def lease_key(stream: str, partition: int) -> str:
    return f"{lease_prefix(stream)}p{partition}"


def partition_from_lease(key: str) -> int:
    return int(key.rsplit("/p", 1)[1])


def recipe_key(stream: str) -> str:
    """What a node needs to run ``stream``'s worker (written by the driver of a run)."""
    return f"stream/{stream}/recipe"


def worker_lease_prefix(stream: str) -> str:
    """Leases the node workers of ``stream`` hold while they live (outside
    ``lease_prefix``, which holds partition leases only)."""
    return f"stream-workers/{stream}/"


def worker_lease_key(stream: str, worker: str) -> str:
    return f"{worker_lease_prefix(stream)}{worker}"
