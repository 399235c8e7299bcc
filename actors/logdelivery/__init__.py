"""Log delivery to stateless clients through server-side receiver sessions.

A ``LogServer`` actor per log appends records durably and serves *receiver
sessions*: the server records what it sent in each session and what was
acknowledged, so a reader keeps no offset and a reader restarted with only
the session id carries on where the session left off.

Embedding API: :func:`open_log` / :class:`LogService` give a
:class:`LogClient` with ``append``, ``create_session``, ``read``, ``ack``,
``describe`` and ``dead_letters``. Over the network: :func:`create_app`
(Starlette) and the ``shardline serve`` command. Across cluster nodes:
``LogService(rt, on_nodes=True)`` on nodes that ``rt.register_entity(LogServerEntity)``
(each log served by one of them, the others forwarding). ``SYSTEM`` is the ``[log]``
scenario system registered under the ``shardline.systems`` entry point.
"""

from actors.logdelivery._cli import serve_command
from actors.logdelivery._client import LogClient, LogService, open_log
from actors.logdelivery._config import LogConfig, LogExpect
from actors.logdelivery._entity import LogServerEntity
from actors.logdelivery._errors import (
    BadRequest,
    IdempotencyKeyReused,
    LogDeliveryError,
    LogUnavailable,
    NotDelivered,
    RecordsTruncated,
    SessionExpired,
    SessionNotFound,
    TooLarge,
    Unauthorized,
)
from actors.logdelivery._http import create_app
from actors.logdelivery._limits import SessionSettings
from actors.logdelivery._messages import (
    Acked,
    Appended,
    Delivery,
    ReadResult,
    SessionCreated,
    SessionInfo,
)
from actors.logdelivery._retention import LogRetention
from actors.logdelivery._server import LogServer
from actors.logdelivery._state import DeadLetter
from actors.logdelivery._system import SYSTEM, LogSystem

__all__ = [
    "SYSTEM",
    "Acked",
    "Appended",
    "BadRequest",
    "DeadLetter",
    "Delivery",
    "IdempotencyKeyReused",
    "LogClient",
    "LogConfig",
    "LogDeliveryError",
    "LogExpect",
    "LogRetention",
    "LogServer",
    "LogServerEntity",
    "LogService",
    "LogSystem",
    "LogUnavailable",
    "NotDelivered",
    "ReadResult",
    "RecordsTruncated",
    "SessionCreated",
    "SessionExpired",
    "SessionInfo",
    "SessionNotFound",
    "SessionSettings",
    "TooLarge",
    "Unauthorized",
    "create_app",
    "open_log",
    "serve_command",
]
