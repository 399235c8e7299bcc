"""Idempotent stream processing with pending-checkpoint replay.

Public API for embedding: :class:`StreamJob` with :class:`StreamConfig`,
sources (:class:`GeneratedSource` or ``fn(seed)``), destinations
(:func:`open_destination`), and the records a destination receives
(:class:`Batch`, :class:`Record`). ``SYSTEM`` is the ``[stream]`` scenario
system registered under the ``shardline.systems`` entry point.
"""

from actors.stream._append import AppendDestination
from actors.stream._config import StreamConfig, StreamExpect
from actors.stream._destinations import (
    CallableDestination,
    Destination,
    DirectoryDestination,
    SqliteDestination,
    open_destination,
)
from actors.stream._job import StreamJob
from actors.stream._records import Batch, Checkpoint, PendingCheckpoint, Record, batch_id
from actors.stream._source import GeneratedSource
from actors.stream._system import SYSTEM, StreamSystem

__all__ = [
    "SYSTEM",
    "AppendDestination",
    "Batch",
    "CallableDestination",
    "Checkpoint",
    "Destination",
    "DirectoryDestination",
    "GeneratedSource",
    "PendingCheckpoint",
    "Record",
    "SqliteDestination",
    "StreamConfig",
    "StreamExpect",
    "StreamJob",
    "StreamSystem",
    "batch_id",
    "open_destination",
]
