"""``shardline serve``: the HTTP API over a store, on loopback by default.

    shardline serve --store URL [--host 127.0.0.1] [--port N] [--token TOKEN]

Prints ``listening on http://HOST:PORT`` once it accepts connections
(``--port 0`` picks a free port). SIGTERM or Ctrl-C stops it cleanly:
waiting reads are answered at once, requests in progress finish, the store
is closed, exit status 0. A ``kill -9`` loses nothing a client was told:
every answer is given after the store committed what it reports.
Exit status 2 for bad input (store URL, address in use).
"""

from __future__ import annotations

import argparse
import os
import sys

from actors.logdelivery._errors import BadRequest
from actors.logdelivery._limits import MAX_BODY_BYTES, SessionSettings
from runtime import StoreError
from runtime.store import check_store_url

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serve`` to the ``shardline`` command (entry point ``shardline.commands``)."""
    p = sub.add_parser("serve", help="serve logs to stateless clients over HTTP",
                       description="Serve the log delivery HTTP API against a store.")
    p.add_argument("--store", required=True, help="store URL (sqlite:///path.db, memory://, postgresql://...)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8470, help="port (default 8470; 0 = any free)")
    p.add_argument("--token", default=os.environ.get("SHARDLINE_TOKEN"),
                   help="require 'Authorization: Bearer TOKEN' (default $SHARDLINE_TOKEN)")
    d = SessionSettings()
    p.add_argument("--ack-wait", type=float, default=d.ack_wait,
                   help=f"default seconds before an unacked record is redelivered ({d.ack_wait:g})")
    p.add_argument("--max-in-flight", type=int, default=d.max_in_flight,
                   help=f"default unacked records per session ({d.max_in_flight})")
    p.add_argument("--max-deliveries", type=int, default=d.max_deliveries,
                   help=f"default deliveries before dead-lettering, 0 = no limit "
                        f"({d.max_deliveries})")
    p.add_argument("--session-ttl", type=float, default=d.ttl,
                   help=f"default seconds a session may idle ({d.ttl:g})")
    p.add_argument("--max-body", type=int, default=MAX_BODY_BYTES,
                   help=f"largest request body in bytes ({MAX_BODY_BYTES})")
    p.add_argument("--max-logs", type=int, default=1000,
                   help="most logs this server will serve (1000)")
    p.add_argument("--log-level", default="warning", help="uvicorn log level (warning)")
    p.set_defaults(handler=serve_command)


def _error(message: str) -> int:
    print(f"shardline serve: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def serve_command(args: argparse.Namespace) -> int:
    try:
        check_store_url(args.store)
        defaults = SessionSettings(args.ack_wait, args.max_in_flight, args.max_deliveries,
                                   args.session_ttl)
    except (StoreError, BadRequest) as exc:
        return _error(str(exc))
    if not 0 <= args.port <= 65535:
        return _error(f"--port must be in 0..65535, got {args.port}")
    if args.max_body < 1024:
        return _error(f"--max-body must be at least 1024 bytes, got {args.max_body}")
    if args.max_logs < 1:
        return _error(f"--max-logs must be at least 1, got {args.max_logs}")
    from actors.logdelivery._serve import listen, serve  # uvicorn only when serving

    try:
        sock = listen(args.host, args.port)
    except OSError as exc:
        return _error(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
    try:
        serve(sock, store=args.store, defaults=defaults, token=args.token,
              max_body=args.max_body, max_logs=args.max_logs, log_level=args.log_level)
    except StoreError as exc:
        return _error(str(exc))
    finally:
        sock.close()
    return EXIT_OK
