"""The ``[log]`` scenario section and its ``[expect]`` table.

```toml
[log]
records = 20000            # appended by the workload's producer
sessions = 3               # sessions read by readers, each from "earliest"
clients_per_session = 2    # readers sharing each session (actors reader.s<i>.c<j>)
read_batch = 200           # max records per read
ack_wait = "1s"            # deadline before an unacked record is redelivered
max_in_flight = 1000       # unacked records per session
max_deliveries = 5         # deliveries before a record is dead-lettered (0: no limit)
session_ttl = "30s"        # idle time before a session expires
retention = { time = "24h" }  # what the log keeps (also bytes = N, acked = true)
```

Faults (``[[faults]]``): ``crash`` / ``pause`` on ``reader.*`` (a reader dies
holding unacknowledged records and is restarted with only its session id;
a paused reader is a slow one) or on ``logserver.*`` (server crash);
``store_error`` on ``store.*``; and two kinds of this system, both aimed at
readers: ``poison`` (the reader never acknowledges the batch it holds;
``probability = 1.0`` makes a reader that never acks) and ``slow`` (the
reader takes ``delay`` longer over the batch it holds, often past its
deadline, so the batch is redelivered to another reader meanwhile).
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from actors.logdelivery import _keys as keys
from actors.logdelivery._errors import BadRequest
from actors.logdelivery._limits import (
    MAX_APPEND_RECORDS,
    MAX_BODY_BYTES,
    MAX_PAYLOAD_BYTES,
    MAX_READ_RECORDS,
    check_session_settings,
)
from actors.logdelivery._retention import LogRetention
from runtime.scenario import Duration, bound_problems


class LogConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Workload and session settings of a log scenario. Durations are seconds."""

    records: Annotated[int, Meta(ge=1, le=100_000_000)]
    sessions: Annotated[int, Meta(ge=1, le=1000)] = 2
    clients_per_session: Annotated[int, Meta(ge=1, le=100)] = 2
    read_batch: Annotated[int, Meta(ge=1, le=MAX_READ_RECORDS)] = 100
    ack_wait: Duration = Duration(2.0)
    max_in_flight: int = 1000
    max_deliveries: int = 5
    session_ttl: Duration = Duration(60.0)
    log: str = "events"
    append_batch: Annotated[int, Meta(ge=1, le=MAX_APPEND_RECORDS)] = 100
    append_rate: Annotated[float, Meta(ge=0)] = 0.0
    """Records appended per second (0: as fast as the server takes them)."""
    keys: Annotated[int, Meta(ge=1, le=10_000_000)] = 100
    payload_bytes: Annotated[int, Meta(ge=8, le=MAX_PAYLOAD_BYTES)] = 32
    """At least 8: the record index is stored in the payload."""
    read_wait: Duration = Duration(0.5)
    """How long a reader's read waits (long-polls) when nothing is there."""
    process_time: Duration = Duration(0.0)
    """Time a reader spends on each batch before acknowledging it."""
    idle_sessions: Annotated[int, Meta(ge=0, le=1000)] = 0
    """Extra sessions read once and then abandoned: each must expire after its TTL."""
    ask_timeout: Duration = Duration(30.0)
    retry_delay: Duration = Duration(0.05)
    """Pause before a reader or the producer retries after the server was unavailable."""
    retention: LogRetention = LogRetention()
    """What the log keeps (``_retention``): by default 24 h of records."""

    def problems(self) -> list[tuple[str, str]]:
        """(field, message) for every value out of range."""
        found = bound_problems(self)
        found += self.retention.problems()
        if self.append_batch * self.payload_bytes > MAX_BODY_BYTES:
            found.append(("append_batch", f"an append of {self.append_batch} records of "
                          f"{self.payload_bytes} bytes exceeds {MAX_BODY_BYTES} bytes; lower "
                          "append_batch or payload_bytes"))
        for name in ("ask_timeout", "retry_delay"):
            if getattr(self, name) <= 0:
                found.append((name, "expected a positive duration"))
        if not keys.valid_log_name(self.log):
            found.append(("log", f"expected a name matching {keys.LOG_NAME.pattern}"))
        try:
            check_session_settings(self.ack_wait, self.max_in_flight, self.max_deliveries,
                                   self.session_ttl)
        except BadRequest as exc:
            field = str(exc).split(" ", 1)[0]
            found.append(({"ack_wait": "ack_wait", "ttl": "session_ttl"}.get(field, field),
                          str(exc)))
        return found


class LogExpect(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The ``[expect]`` table: which invariants to check and which faults must have happened."""

    no_gaps: bool = True
    at_least_once_in_order: bool = True
    no_client_offsets: bool = True
    in_flight_bounded: bool = True
    min_client_restarts: int = 0
    min_server_restarts: int = 0
    min_redeliveries: int = 0
    min_dead_letters: int = 0
    max_dead_letters: int | None = None
    min_expired_sessions: int = 0
    min_unavailable: int = 0
    """Reads, acks or appends answered ``unavailable`` (store errors, server restarts)."""
