"""``shardline serve``: the HTTP API over a store, on loopback by default.

    shardline serve --store URL [--host 127.0.0.1] [--port N] [--token TOKEN] [--insecure]
                    [--retention-time 24h|none] [--retention-bytes N] [--retention-acked]
                    [--idempotency-window 1h]
                    [--cluster-listen HOST:PORT (--secret-file F | --secret-env VAR)
                     [--node-name NAME] [--lease-ttl 3s]]

Prints ``listening on http://HOST:PORT`` once it accepts connections
(``--port 0`` picks a free port). SIGTERM or Ctrl-C stops it cleanly:
waiting reads are answered at once, requests in progress finish, the store
is closed, exit status 0. A ``kill -9`` loses nothing a client was told:
every answer is given after the store committed what it reports.
The retention options set what each log this server creates keeps (``_retention``):
records older than ``--retention-time`` (default 24h; ``none``: no age limit), the
oldest appends beyond ``--retention-bytes`` of keys and payloads, and with
``--retention-acked`` every record all live sessions have settled; an append's
``Idempotency-Key`` is remembered for ``--idempotency-window``. With the cluster
options they are stored as the log's recipe when it has none yet, so the first
server to serve a log decides, whichever node then owns it.
Exit status 2 for bad input (store URL, address in use, and a non-loopback
``--host`` without ``--token``: anyone who can reach it could read, append and
acknowledge, so that takes ``--insecure`` to say it is meant).

With the cluster options, several ``serve`` processes on one ``postgresql://``
store form one service (``_entity``): any of them answers any request; each
log is served by the one holding its lease and the others forward to it. When
its process dies the log moves to a survivor within a lease TTL or two; a
request meanwhile is retried inside the cluster, or answered 503 with
``Retry-After`` once its ask times out. Cluster options with another store,
or without a secret, are exit 2.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

from actors.logdelivery._errors import BadRequest
from actors.logdelivery._limits import MAX_BODY_BYTES, SessionSettings
from actors.logdelivery._retention import LogRetention
from runtime import ShardlineError, StoreError
from runtime._node_cli import NodeOptions, node_options
from runtime.cluster._config import LOOPBACK
from runtime.scenario import Duration, parse_duration
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
    p.add_argument("--insecure", action="store_true",
                   help="allow a non-loopback --host without --token")
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
    p.add_argument("--retention-time", default="24h", metavar="DURATION",
                   help="drop records appended longer ago than this, e.g. 30m or 168h; "
                        "'none' for no age limit (24h)")
    p.add_argument("--retention-bytes", metavar="N",
                   help="keep at most N bytes of keys and payloads per log, dropping the "
                        "oldest appends first (no limit)")
    p.add_argument("--retention-acked", action="store_true",
                   help="drop records every live session has acknowledged or dead-lettered")
    p.add_argument("--idempotency-window", default="1h", metavar="DURATION",
                   help="how long an append's Idempotency-Key is remembered: a retry "
                        "within it stores nothing new (1h)")
    p.add_argument("--log-level", default="warning",
                   choices=("critical", "error", "warning", "info", "debug", "trace"),
                   help="uvicorn log level (warning)")
    c = p.add_argument_group(
        "cluster", "several serve processes on one postgresql:// store form one service: "
        "each log is served by one of them, the others forward its requests")
    c.add_argument("--cluster-listen", metavar="HOST:PORT",
                   help="host:port for the cluster's messages (default 127.0.0.1:0)")
    secret = c.add_mutually_exclusive_group()
    secret.add_argument("--secret-file", help="file holding the cluster secret")
    secret.add_argument("--secret-env", metavar="VAR",
                        help="environment variable holding the cluster secret")
    c.add_argument("--node-name", help="this process's name in the cluster (default: generated)")
    c.add_argument("--lease-ttl", default="3s",
                   help="membership and log-ownership lease TTL (default 3s)")
    p.set_defaults(handler=serve_command)


def cluster_options(args: argparse.Namespace) -> NodeOptions | None:
    """The cluster this serve joins (``None``: it serves alone); ``ValueError`` naming the
    option that is wrong. Validated as ``shardline node`` validates its own."""
    if args.cluster_listen is None and args.secret_file is None and args.secret_env is None \
            and args.node_name is None:
        return None
    if args.secret_file is None and args.secret_env is None:
        raise ValueError("the cluster options need the cluster secret: give --secret-file FILE "
                         "or --secret-env VAR")
    try:
        return node_options(argparse.Namespace(
            store=args.store, listen=args.cluster_listen or LOOPBACK, name=args.node_name,
            lease_ttl=args.lease_ttl, secret_file=args.secret_file,
            secret_env=args.secret_env, systems=None))
    except ValueError as exc:
        text = str(exc).replace("--listen:", "--cluster-listen:").replace("--name:",
                                                                         "--node-name:")
        if text.startswith("--store"):
            text += " (the cluster options make this serve one process of a shared service)"
        raise ValueError(text) from None


def retention_options(args: argparse.Namespace) -> LogRetention:
    """What the logs this server creates keep; ``ValueError`` naming the flag that is
    wrong and what it expects."""
    time: Duration | None = None
    if args.retention_time.strip().lower() != "none":
        try:
            time = parse_duration(args.retention_time.strip())
        except ValueError as exc:
            raise ValueError(f"--retention-time: {exc} (or 'none' for no age limit)") from None
    size: int | None = None
    if args.retention_bytes is not None:
        text = args.retention_bytes.strip().replace("_", "")
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"--retention-bytes: expected a whole number of bytes >= 1, "
                             f"got {args.retention_bytes!r}")
        size = int(text)
    try:
        window = parse_duration(args.idempotency_window.strip())
    except ValueError as exc:
        raise ValueError(f"--idempotency-window: {exc}") from None
    if not window > 0:
        raise ValueError(f"--idempotency-window: expected a duration > 0, "
                         f"got {args.idempotency_window!r}")
    return LogRetention(time, size, args.retention_acked, window)


def _error(message: str) -> int:
    print(f"shardline serve: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def is_loopback(host: str) -> bool:
    """Whether ``host`` is an address only this machine can reach (``localhost`` too)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def exposure_problem(host: str, token: str | None, insecure: bool) -> str | None:
    """Why serving on ``host`` is refused, or ``None``: beyond loopback, a token or
    an explicit ``--insecure`` is required."""
    if token or insecure or is_loopback(host):
        return None
    return (f"--host {host} accepts connections from other machines, and without --token "
            "anyone who reaches it can read, append and acknowledge; give --token TOKEN "
            "(or set $SHARDLINE_TOKEN), or add --insecure if that is meant")


def serve_command(args: argparse.Namespace) -> int:
    problem = exposure_problem(args.host, args.token, args.insecure)
    if problem is not None:
        return _error(problem)
    if not args.token and not is_loopback(args.host):
        print(f"shardline serve: warning: serving {args.host} without a token (--insecure)",
              file=sys.stderr)
    try:
        check_store_url(args.store)
        defaults = SessionSettings(args.ack_wait, args.max_in_flight, args.max_deliveries,
                                   args.session_ttl)
        cluster = cluster_options(args)
        retention = retention_options(args)
    except (StoreError, BadRequest, ValueError) as exc:
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
              max_body=args.max_body, max_logs=args.max_logs, log_level=args.log_level,
              cluster=cluster, retention=retention)
    except (ShardlineError, OSError) as exc:  # the store, or joining the cluster
        return _error(str(exc))
    finally:
        sock.close()
    return EXIT_OK
