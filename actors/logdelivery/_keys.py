"""Store layout of one log and its sessions (one place, so the server and the checks agree).

    logdelivery/<log>/records              the log itself (a store log)
    logdelivery/<log>/sessions/<id>        a session's state (a versioned record)
    logdelivery/<log>/dead/<id>            a session's dead letters (a store log)
    logdelivery/<log>/recipe               how the log's server is built on a node (a record)
    logdelivery/<log>/served/<id>          reads a server on a node served (a store log;
                                           only when its recipe asks, for scenario checks)
    logdelivery/<log>/appends/<key>        what an append with that idempotency key did
                                           (a record, deleted after the key's window)
"""

from __future__ import annotations

import re

LOG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""What a log may be called: it appears in store keys, actor names and URLs."""

SESSION_ID = re.compile(r"[0-9a-f]{32}")
"""A session id: 128 random bits as 32 lowercase hex digits."""

IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
"""What an append's idempotency key may be: it appears in a store key."""


def records_log(log: str) -> str:
    return f"logdelivery/{log}/records"


def session_prefix(log: str) -> str:
    return f"logdelivery/{log}/sessions/"


def session_key(log: str, session: str) -> str:
    return f"{session_prefix(log)}{session}"


def dead_letter_log(log: str, session: str) -> str:
    return f"logdelivery/{log}/dead/{session}"


def recipe_key(log: str) -> str:
    return f"logdelivery/{log}/recipe"


def served_log(log: str, session: str) -> str:
    return f"logdelivery/{log}/served/{session}"


def server_name(log: str) -> str:
    """The actor name of a log's server in one process (what fault plans target)."""
    return f"logserver.{log}"


def append_prefix(log: str) -> str:
    return f"logdelivery/{log}/appends/"


def append_key(log: str, idempotency_key: str) -> str:
    return f"{append_prefix(log)}{idempotency_key}"


def valid_log_name(log: object) -> bool:
    return isinstance(log, str) and LOG_NAME.fullmatch(log) is not None


def valid_session_id(session: object) -> bool:
    return isinstance(session, str) and SESSION_ID.fullmatch(session) is not None


def valid_idempotency_key(key: object) -> bool:
    return isinstance(key, str) and IDEMPOTENCY_KEY.fullmatch(key) is not None
