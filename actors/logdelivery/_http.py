"""The HTTP/JSON API (Starlette), over a ``LogService``.

    POST /logs/{log}/records                      [{key, payload_b64}, ...] -> {first_seq, count}
    POST /logs/{log}/sessions                     {start, ack_wait?, max_in_flight?,
                                                   max_deliveries?, ttl?} -> {session, start_seq}
    GET  /logs/{log}/sessions/{session}/records?max=N&wait=SECONDS
                                                  -> {records: [{seq, key, payload_b64,
                                                      delivery}], ack_deadline}
    POST /logs/{log}/sessions/{session}/ack       {receipts: [[seq, delivery], ...]}
                                                  -> {acked, floor, in_flight, superseded}
    GET  /logs/{log}/sessions/{session}           the session's counters
    GET  /logs/{log}/sessions/{session}/dead_letters?offset=&limit=
    GET  /healthz                                 (no token needed)

Every error is ``{"error": code, "detail": text}`` with 400 (malformed),
401 (token), 404 (unknown session or route), 409 (ack of a record never
delivered, or not that many times), 410 (session expired, or ``truncated``: the
session's next record was dropped by retention; the body's ``floor`` is the
log's first record now), 413 (body, batch or record too large)
or 503 (store failure, server restart, or a log moving to another process of a
cluster: retry after ``Retry-After`` seconds). A request is validated
completely before it reaches a log server, so a malformed one changes
nothing and cannot disturb another session.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from actors.logdelivery import _keys as keys
from actors.logdelivery._client import LogClient, LogService
from actors.logdelivery._errors import (
    BadRequest,
    LogDeliveryError,
    LogUnavailable,
    SessionNotFound,
    TooLarge,
)
from actors.logdelivery._limits import (
    MAX_ACK_RECEIPTS,
    MAX_APPEND_RECORDS,
    MAX_BODY_BYTES,
    MAX_READ_RECORDS,
    MAX_WAIT,
    Receipt,
)
from runtime import StoreError

T = TypeVar("T")
_INT = re.compile(r"\d{1,12}")
_SECONDS = re.compile(r"\d{1,6}(?:\.\d{1,9})?")
_json = msgspec.json.Encoder()
MAX_DEAD_LETTER_PAGE = 10_000


class RecordIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    key: str
    payload_b64: bytes


class SessionIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    start: str | int = "earliest"
    ack_wait: float | None = None
    max_in_flight: int | None = None
    max_deliveries: int | None = None
    ttl: float | None = None


class AckIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Receipts ``[seq, delivery]`` as a read returned them; a receipt of a superseded
    delivery is not acknowledged and comes back in ``superseded``."""

    receipts: list[Receipt]


def json_response(body: object, status: int = 200) -> Response:
    return Response(_json.encode(body), status_code=status, media_type="application/json")


def error_response(status: int, code: str, detail: str,
                   fields: dict[str, int] | None = None) -> Response:
    return json_response({"error": code, "detail": detail, **(fields or {})}, status)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not _INT.fullmatch(declared):
            raise BadRequest(f"malformed Content-Length {declared!r}")
        if int(declared) > limit:
            raise TooLarge(f"request body of {declared} bytes exceeds the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(body: bytes, kind: type[T], what: str) -> T:
    if not body.strip():
        raise BadRequest(f"{what}: expected a JSON body")
    try:
        return msgspec.json.decode(body, type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise BadRequest(f"{what}: {exc}") from None


_READ_PARAMS = {"max": (_INT, f"an integer in 1..{MAX_READ_RECORDS}"),
                "wait": (_SECONDS, f"seconds in 0..{MAX_WAIT:g}")}
_PAGE_PARAMS = {"offset": (_INT, "an integer >= 0"),
                "limit": (_INT, f"an integer in 1..{MAX_DEAD_LETTER_PAGE}")}


def _query(request: Request,
           allowed: Mapping[str, tuple[re.Pattern[str], str]]) -> dict[str, str]:
    """The query parameters, each matched against its pattern; a refusal says what
    the parameter expects (``max='-3': expected an integer in 1..10000``)."""
    found: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in allowed:
            raise BadRequest(f"unknown query parameter {name!r}; expected "
                             + ", ".join(sorted(allowed)))
        pattern, expected = allowed[name]
        if name in found:
            raise BadRequest(f"query parameter {name!r} given twice")
        if not pattern.fullmatch(value):
            raise BadRequest(f"query parameter {name}={value!r}: expected {expected}")
        found[name] = value
    return found


class _Routes:
    """The endpoint functions, bound to one service and body limit."""

    def __init__(self, service: LogService, max_body: int) -> None:
        self.service = service
        self.max_body = max_body

    async def _log(self, request: Request) -> LogClient:
        return await self.service.log(request.path_params["log"])

    async def _session_log(self, request: Request) -> LogClient:
        """The client of a session's log. A session the store does not hold is 404
        without starting a server for its log: requests naming unknown logs must not
        use up ``max_logs`` (only appends and session creation start a log)."""
        log, session = request.path_params["log"], request.path_params["session"]
        if not self.service.serves(log) and keys.valid_log_name(log):
            found = None
            if keys.valid_session_id(session):
                try:
                    found = await self.service.rt.store.get(keys.session_key(log, session))
                except StoreError as exc:
                    raise LogUnavailable(f"store unavailable: {exc}") from None
            if found is None:
                raise SessionNotFound(f"log {log!r} has no session {session!r} (a session "
                                      "id is 32 lowercase hex digits)")
        return await self.service.log(log)

    async def append(self, request: Request) -> Response:
        body = await _read_body(request, self.max_body)
        records = _decode(body, list[RecordIn], "append body")
        if not records:
            raise BadRequest("append body: expected at least one record")
        if len(records) > MAX_APPEND_RECORDS:
            raise TooLarge(f"an append carries at most {MAX_APPEND_RECORDS} records, "
                           f"got {len(records)}")
        key = request.headers.get("idempotency-key")
        log = await self._log(request)
        appended = await log.append([(r.key, r.payload_b64) for r in records],
                                    idempotency_key=key)
        return json_response(appended, 201)

    async def create_session(self, request: Request) -> Response:
        body = await _read_body(request, self.max_body)
        spec = _decode(body, SessionIn, "session body") if body.strip() else SessionIn()
        log = await self._log(request)
        created = await log.open_session(
            spec.start, ack_wait=spec.ack_wait, max_in_flight=spec.max_in_flight,
            max_deliveries=spec.max_deliveries, ttl=spec.ttl)
        return json_response(created, 201)

    async def read(self, request: Request) -> Response:
        params = _query(request, _READ_PARAMS)
        max_records = int(params.get("max", "100"))
        wait = float(params.get("wait", "0"))
        log = await self._session_log(request)
        result = await log.read(request.path_params["session"], max_records, wait)
        return json_response(result)

    async def ack(self, request: Request) -> Response:
        body = await _read_body(request, self.max_body)
        spec = _decode(body, AckIn, 'ack body (expected {"receipts": [[seq, delivery], ...]})')
        if len(spec.receipts) > MAX_ACK_RECEIPTS:
            raise TooLarge(f"an ack lists at most {MAX_ACK_RECEIPTS} receipts, "
                           f"got {len(spec.receipts)}")
        log = await self._session_log(request)
        acked = await log.ack(request.path_params["session"], spec.receipts)
        return json_response(acked)

    async def describe(self, request: Request) -> Response:
        log = await self._session_log(request)
        return json_response(await log.describe(request.path_params["session"]))

    async def dead_letters(self, request: Request) -> Response:
        params = _query(request, _PAGE_PARAMS)
        offset = int(params.get("offset", "0"))
        limit = min(int(params.get("limit", "1000")), MAX_DEAD_LETTER_PAGE)
        log = await self._session_log(request)
        found = await log.dead_letters(request.path_params["session"], offset, max(1, limit))
        return json_response({"dead_letters": found})

    async def health(self, request: Request) -> Response:
        return json_response({"status": "ok"})


class BearerAuth:
    """Refuse (401) any request but ``/healthz`` without ``Authorization: Bearer <token>``.

    The comparison takes constant time, so the token cannot be guessed byte by byte.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != "/healthz":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                detail = ("missing bearer token" if not given
                          else "wrong bearer token")
                response = error_response(401, "unauthorized", detail)
                response.headers["WWW-Authenticate"] = "Bearer"
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


RETRY_AFTER = "1"
"""Seconds a 503 asks the client to wait before trying again (any process will do)."""


async def _on_log_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LogDeliveryError)
    response = error_response(exc.status, exc.code, exc.detail, exc.fields)
    if isinstance(exc, LogUnavailable):
        response.headers["Retry-After"] = RETRY_AFTER
    return response


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    return error_response(exc.status_code, codes.get(exc.status_code, "bad_request"),
                          str(exc.detail))


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    return error_response(500, "internal", f"{type(exc).__name__}: {exc}")


def create_app(service: LogService, *, token: str | None = None,
               max_body: int = MAX_BODY_BYTES) -> Starlette:
    """The ASGI app serving ``service``'s logs; with ``token``, requests need it as bearer."""
    r = _Routes(service, max_body)
    session = "/logs/{log}/sessions/{session}"
    routes = [
        Route("/healthz", r.health, methods=["GET"]),
        Route("/logs/{log}/records", r.append, methods=["POST"]),
        Route("/logs/{log}/sessions", r.create_session, methods=["POST"]),
        Route(session, r.describe, methods=["GET"]),
        Route(f"{session}/records", r.read, methods=["GET"]),
        Route(f"{session}/ack", r.ack, methods=["POST"]),
        Route(f"{session}/dead_letters", r.dead_letters, methods=["GET"]),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        LogDeliveryError: _on_log_error,
        HTTPException: _on_http_error,
        Exception: _on_unexpected,
    }
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.service = service
    if token:
        app.add_middleware(BearerAuth, token=token)
    return app
