"""The transport interface: authenticated, ordered links carrying whole frames.

A node's logic (``_node.py``) sees only this interface, so the same code
runs over TCP (``_tcp.py``) and over the simulated network (``_simnet.py``).

Contract of every implementation:

- ``listen`` starts accepting and returns the address peers should dial;
  ``accept`` is called with each connection that proved the cluster secret
  (one that did not is closed, counted in ``refused`` and logged, and no
  frame of it is ever read).
- ``connect`` returns a link once both sides proved the secret, or raises
  ``LinkClosed``.
- A link delivers frames in the order they were sent, or fails with
  ``LinkClosed``; ``receive`` raises ``FrameError`` for a frame larger than
  ``max_frame`` (the link is then unusable). Nothing is retried: a frame in
  flight when a link fails is lost (at most once).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable


class Link(ABC):
    """One direction of frames between two authenticated nodes."""

    peer: str
    """A description of the other end (its address), for logs."""

    @abstractmethod
    async def send(self, frame: bytes) -> None: ...

    @abstractmethod
    async def receive(self) -> bytes: ...

    @abstractmethod
    async def close(self) -> None: ...


Accept = Callable[[Link], Awaitable[None]]


class Transport(ABC):
    refused: int = 0
    """Connections closed because they did not prove the secret."""

    @abstractmethod
    async def listen(self, address: str, accept: Accept) -> str: ...

    @abstractmethod
    async def connect(self, address: str) -> Link: ...

    @abstractmethod
    async def close(self) -> None:
        """Stop listening and close every accepted link."""
