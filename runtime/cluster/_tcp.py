"""TCP links (anyio streams): HMAC handshake, then length-prefixed frames.

Wire format after the handshake (``_auth``): each frame is a 4-byte
big-endian length followed by that many bytes. A length above
``max_frame`` fails the link before its body is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

import anyio
import structlog
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from runtime.cluster import _auth
from runtime.cluster._config import split_address
from runtime.cluster._errors import FrameError, LinkClosed
from runtime.cluster._transport import Accept, Link, Transport

_log = structlog.get_logger("shardline")
_HEADER = 4
_BROKEN = (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError,
           anyio.ClosedResourceError, OSError)


class _TcpLink(Link):
    def __init__(self, stream: SocketStream, buffered: BufferedByteReceiveStream,
                 max_frame: int, peer: str) -> None:
        self._stream = stream
        self._buffered = buffered
        self._max_frame = max_frame
        self.peer = peer

    async def send(self, frame: bytes) -> None:
        try:
            await self._stream.send(len(frame).to_bytes(_HEADER, "big") + frame)
        except _BROKEN as exc:
            raise LinkClosed(f"link to {self.peer} failed: {type(exc).__name__}") from None

    async def receive(self) -> bytes:
        try:
            size = int.from_bytes(await self._buffered.receive_exactly(_HEADER), "big")
            if size > self._max_frame:
                raise FrameError(f"frame of {size} bytes from {self.peer} exceeds the "
                                 f"maximum of {self._max_frame}")
            return await self._buffered.receive_exactly(size)
        except _BROKEN as exc:
            raise LinkClosed(f"link from {self.peer} closed: {type(exc).__name__}") from None

    async def close(self) -> None:
        with contextlib.suppress(*_BROKEN):
            await self._stream.aclose()


def _peer_of(stream: SocketStream) -> str:
    try:
        address = stream.extra(SocketAttribute.remote_address)
        return f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
    except (OSError, anyio.TypedAttributeLookupError, ValueError):
        return "unknown"


class TcpTransport(Transport):
    """Listens on ``host:port`` (loopback unless told otherwise)."""

    def __init__(self, secret: str, max_frame: int, handshake_timeout: float = 5.0) -> None:
        self._secret = secret.encode()
        self._max_frame = max_frame
        self._timeout = handshake_timeout
        self._serving: asyncio.Task[None] | None = None
        self._links: dict[_TcpLink, None] = {}
        self.refused = 0

    async def listen(self, address: str, accept: Accept) -> str:
        host, port = split_address(address)
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        bound = listener.extra(SocketAttribute.local_port)

        async def handle(stream: SocketStream) -> None:
            link = await self._authenticate_incoming(stream)
            if link is None:
                return
            self._links[link] = None
            try:
                await accept(link)
            finally:
                self._links.pop(link, None)
                await link.close()

        self._serving = asyncio.get_running_loop().create_task(listener.serve(handle))
        return f"{host}:{bound}"

    async def _authenticate_incoming(self, stream: SocketStream) -> _TcpLink | None:
        peer = _peer_of(stream)
        buffered = BufferedByteReceiveStream(stream)
        nonce = os.urandom(_auth.NONCE_SIZE)
        try:
            with anyio.fail_after(self._timeout):
                await stream.send(nonce)
                answer = await buffered.receive_exactly(_auth.PROOF_SIZE + _auth.NONCE_SIZE)
                claimed, theirs = answer[:_auth.PROOF_SIZE], answer[_auth.PROOF_SIZE:]
                if _auth.verify(self._secret, _auth.CLIENT, nonce, claimed):
                    await stream.send(_auth.proof(self._secret, _auth.SERVER, theirs))
                    return _TcpLink(stream, buffered, self._max_frame, peer)
                reason = "wrong proof of the cluster secret"
        except TimeoutError:
            reason = "no proof of the cluster secret in time"
        except _BROKEN as exc:
            reason = f"closed during the handshake ({type(exc).__name__})"
        self.refused += 1
        _log.warning("connection.refused", peer=peer, reason=reason)
        await stream.aclose()
        return None

    async def connect(self, address: str) -> Link:
        host, port = split_address(address)
        try:
            with anyio.fail_after(self._timeout):
                stream = await anyio.connect_tcp(host, port)
                buffered = BufferedByteReceiveStream(stream)
                try:
                    nonce = await buffered.receive_exactly(_auth.NONCE_SIZE)
                    mine = os.urandom(_auth.NONCE_SIZE)
                    await stream.send(_auth.proof(self._secret, _auth.CLIENT, nonce) + mine)
                    claimed = await buffered.receive_exactly(_auth.PROOF_SIZE)
                except BaseException:
                    await stream.aclose()
                    raise
        except TimeoutError:
            raise LinkClosed(f"no handshake with {address} in time") from None
        except _BROKEN as exc:
            raise LinkClosed(f"cannot connect to {address}: {type(exc).__name__}: {exc}") \
                from None
        if not _auth.verify(self._secret, _auth.SERVER, mine, claimed):
            await stream.aclose()
            raise LinkClosed(f"{address} did not prove the cluster secret")
        return _TcpLink(stream, buffered, self._max_frame, address)

    async def close(self) -> None:
        if self._serving is not None:
            self._serving.cancel()
            await asyncio.wait({self._serving})
            self._serving = None
        for link in list(self._links):
            await link.close()
