"""One exception hierarchy for everything Shardline raises on purpose.

Each message names the actor, message type and value involved, so a log line
is enough to find the cause (Akka's users asked for exactly this in
``AskTimeoutException``).
"""

from __future__ import annotations


class ShardlineError(Exception):
    """Root of every error Shardline raises deliberately."""


class MailboxFull(ShardlineError):
    """``tell_nowait`` found the mailbox at capacity; nothing was enqueued."""

    def __init__(self, actor: str, message_type: str, capacity: int) -> None:
        super().__init__(
            f"mailbox of actor {actor!r} is full ({capacity} messages); "
            f"{message_type} was not enqueued"
        )
        self.actor = actor
        self.message_type = message_type
        self.capacity = capacity


class AskTimeout(ShardlineError, TimeoutError):
    """An ``ask`` got no reply within its timeout."""

    def __init__(self, actor: str, message_type: str, timeout: float,
                 node: str | None = None) -> None:
        where = f" on node {node!r}" if node is not None else ""
        super().__init__(
            f"ask to actor {actor!r}{where} with {message_type} got no reply within {timeout:g} s"
        )
        self.actor = actor
        self.message_type = message_type
        self.timeout = timeout
        self.node = node


class ActorStopped(ShardlineError):
    """The target actor has stopped for good (or stopped before replying)."""

    def __init__(self, actor: str, message_type: str | None = None) -> None:
        what = f" ({message_type} not handled)" if message_type else ""
        super().__init__(f"actor {actor!r} is stopped{what}")
        self.actor = actor
        self.message_type = message_type


class InjectedFault(ShardlineError):
    """Raised on purpose by the fault injector; never a real bug."""


class NameTaken(ShardlineError):
    """An actor name is already registered to a live actor."""


class RestartIntensityExceeded(ShardlineError):
    """A supervisor saw more than ``max_restarts`` restarts within ``within`` seconds."""

    def __init__(self, supervisor: str, max_restarts: int, within: float, child: str) -> None:
        super().__init__(
            f"supervisor {supervisor!r}: more than {max_restarts} restarts within "
            f"{within:g} s (last failing child {child!r}); escalating"
        )
        self.supervisor = supervisor
        self.child = child


class ScenarioError(ShardlineError):
    """A scenario file is unreadable or invalid: names the file, field path and expectation."""


class StoreError(ShardlineError):
    """A store call failed (bad URL, unreadable database, I/O error, injected failure)."""


class StoreURLError(StoreError):
    """A store URL could not be parsed or names an unsupported backend."""


class ConflictError(StoreError):
    """A compare-and-set write named a version that is no longer current."""


class LogTruncated(StoreError):
    """A read asked for entries below a log's floor: ``truncate`` dropped them."""

    def __init__(self, log: str, from_seq: int, floor: int) -> None:
        super().__init__(
            f"log {log!r} is truncated below seq {floor}: entries from seq {from_seq} "
            f"are gone (the first live entry is {floor})"
        )
        self.log = log
        self.from_seq = from_seq
        self.floor = floor


class LeaseLost(ShardlineError):
    """The caller no longer holds the lease it acted under."""


class StaleFencingToken(LeaseLost, StoreError):
    """A write carried a fencing token older than the newest grant; it was refused."""
