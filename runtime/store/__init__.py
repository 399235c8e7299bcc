"""Durable state: logs, compare-and-set records and fenced leases.

Open a store with :func:`open_store` (``memory://``, ``sqlite:///path.db`` or
``postgresql://user@host:port/database``);
the contract every backend keeps is in the docstring of :class:`Store`'s
module, ``runtime.store._base``.
"""

from runtime.store._base import Store
from runtime.store._faulty import FaultyStore, without_faults
from runtime.store._types import (
    Append,
    Clock,
    Delete,
    Fence,
    Lease,
    LogEntry,
    Put,
    StoreSize,
    StoreStatistics,
    Truncate,
    Versioned,
    WriteResult,
)
from runtime.store._url import check_store_url, open_store

__all__ = [
    "Append",
    "Clock",
    "Delete",
    "FaultyStore",
    "Fence",
    "Lease",
    "LogEntry",
    "Put",
    "Store",
    "StoreSize",
    "StoreStatistics",
    "Truncate",
    "Versioned",
    "WriteResult",
    "check_store_url",
    "open_store",
    "without_faults",
]
