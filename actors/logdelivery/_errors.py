"""Errors a log client can get, each with the HTTP status and code it maps to.

One class per way a request can be refused, so an embedding application
catches exactly what it can handle (``SessionExpired``: create a new session)
and the HTTP layer turns each into ``{error, detail}`` with its status.
"""

from __future__ import annotations

from typing import ClassVar

from runtime import ShardlineError


class LogDeliveryError(ShardlineError):
    """Root of the log delivery errors; ``code`` and ``status`` are what HTTP clients see."""

    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500

    def __init__(self, detail: str, **fields: int) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fields = fields
        """Extra values a client can act on (``floor`` of ``RecordsTruncated``), sent in
        the HTTP body beside ``error`` and ``detail``."""


class BadRequest(LogDeliveryError, ValueError):
    """An argument is out of range or malformed (nothing was changed)."""

    code = "bad_request"
    status = 400


class Unauthorized(LogDeliveryError):
    """The HTTP request lacked the server's bearer token."""

    code = "unauthorized"
    status = 401


class SessionNotFound(LogDeliveryError, LookupError):
    """No session with that id exists on that log."""

    code = "not_found"
    status = 404


class NotDelivered(LogDeliveryError):
    """An ack named a record this session never delivered (nothing was acknowledged)."""

    code = "conflict"
    status = 409


class IdempotencyKeyReused(LogDeliveryError):
    """An append named an idempotency key that an earlier append took for other
    records (nothing was appended)."""

    code = "idempotency_key_reused"
    status = 422


class SessionExpired(LogDeliveryError):
    """The session was idle longer than its TTL; its records are no longer tracked."""

    code = "expired"
    status = 410


class RecordsTruncated(LogDeliveryError):
    """The session's next record was dropped by the log's retention; ``floor`` is the
    first record the log still has (create a session from there)."""

    code = "truncated"
    status = 410

    @property
    def floor(self) -> int:
        return self.fields.get("floor", 0)


class TooLarge(LogDeliveryError):
    """A request body, batch or record exceeds the server's bounds."""

    code = "too_large"
    status = 413


class LogUnavailable(LogDeliveryError):
    """The server could not serve the request now (store failure, restart); retry later."""

    code = "unavailable"
    status = 503


ERRORS: dict[str, type[LogDeliveryError]] = {
    cls.code: cls
    for cls in (BadRequest, Unauthorized, SessionNotFound, NotDelivered, IdempotencyKeyReused,
                SessionExpired, RecordsTruncated, TooLarge, LogUnavailable)
}
"""Error class by code, to rebuild a refusal on the client side."""
