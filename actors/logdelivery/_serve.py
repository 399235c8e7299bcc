"""Running the HTTP API under uvicorn on a socket the command line opened.

Kept apart from the command-line parsing so that ``shardline`` commands
other than ``serve`` never import uvicorn.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from types import FrameType

import uvicorn

from actors.logdelivery._client import LogService
from actors.logdelivery._entity import LogServerEntity
from actors.logdelivery._http import create_app
from actors.logdelivery._limits import SessionSettings
from actors.logdelivery._retention import LogRetention
from runtime import Runtime
from runtime._node_cli import NodeOptions
from runtime.cluster import Cluster


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket. Made with an explicit ``IPPROTO_TCP``: asyncio sets
    TCP_NODELAY only on connections whose socket says so, and without it every small
    response waits ~40 ms for the client's delayed ACK (Nagle)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


class _Server(uvicorn.Server):
    """uvicorn, announcing its address once it accepts connections and answering
    long polls at once when asked to stop."""

    def __init__(self, config: uvicorn.Config, service: LogService, url: str) -> None:
        super().__init__(config)
        self.service = service
        self.url = url
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().startup(sockets)
        print(f"shardline serve: listening on {self.url}", flush=True)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.service.begin_shutdown)
        super().handle_exit(sig, frame)


def _ignore(signum: int, frame: FrameType | None) -> None:
    """Installed under uvicorn's handlers: uvicorn re-raises the signal that stopped it
    once it has shut down, and a clean stop should exit 0, not die of that signal."""


def serve(sock: socket.socket, *, store: str, defaults: SessionSettings, token: str | None,
          max_body: int, max_logs: int, log_level: str,
          cluster: NodeOptions | None = None, retention: LogRetention | None = None) -> None:
    """Serve on ``sock`` until SIGTERM or SIGINT; ``StoreError`` if the store cannot open.

    With ``cluster``, this process joins the cluster of its store as a node that hosts
    log servers (``LogServerEntity``) and forwards requests for logs another node owns.
    ``retention`` is what the logs it creates keep (default: 24 h of records)."""
    asyncio.run(_serve(sock, store, defaults, token, max_body, max_logs, log_level, cluster,
                       retention or LogRetention()))


def _ask_timeout(cluster: NodeOptions | None) -> float:
    """How long a request may wait for its log's server: across nodes, long enough for
    the log to move once (its owner's leases expire, a survivor recovers it) and then
    answered 503; alone, the embedding default."""
    return 30.0 if cluster is None else max(5.0, 4 * cluster.lease_ttl)


async def _serve(sock: socket.socket, store: str, defaults: SessionSettings, token: str | None,
                 max_body: int, max_logs: int, log_level: str,
                 cluster: NodeOptions | None, retention: LogRetention) -> None:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    joins = None if cluster is None else Cluster(
        listen=cluster.listen, secret=cluster.secret, name=cluster.name,
        lease_ttl=cluster.lease_ttl)
    async with Runtime(store=store, trace="lifecycle", cluster=joins) as rt:
        if joins is not None:
            rt.register_entity(LogServerEntity)
        service = LogService(rt, defaults=defaults, max_logs=max_logs,
                             ask_timeout=_ask_timeout(cluster), on_nodes=joins is not None,
                             retention=retention, offer_recipes=joins is not None)
        app = create_app(service, token=token, max_body=max_body)
        config = uvicorn.Config(app, lifespan="off", access_log=False,
                                log_level=log_level, timeout_graceful_shutdown=10)
        url = f"http://{shown}:{port}"
        if joins is not None:
            url += f" as node {rt.node_name} (cluster {rt.cluster_statistics().address})"
        server = _Server(config, service, url)
        previous = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            await server.serve(sockets=[sock])
        finally:
            await service.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
