"""Fresh, empty stores for one benchmark run each (shared by the store benchmarks)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import tempfile
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def with_schema(url: str, schema: str) -> str:
    """``url`` naming ``schema`` instead of whatever schema it named."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"] + [("schema", schema)]
    return urlunsplit(parts._replace(query=urlencode(query)))


async def drop_schema(url: str) -> None:
    import asyncpg

    from runtime.store._postgres_target import parse_postgres_url

    target = parse_postgres_url(url, urlsplit(url))
    conn = await asyncpg.connect(host=target.host, port=target.port, user=target.user,
                                 password=target.password, database=target.database)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{target.schema}" CASCADE')
    finally:
        await conn.close()


@contextlib.contextmanager
def fresh_store(kind: str, base: str) -> Iterator[str]:
    """A URL of an empty store of ``kind``; removed afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="shardline-bench-") as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    url = with_schema(base, f"bench_{secrets.token_hex(4)}")
    try:
        yield url
    finally:
        asyncio.run(drop_schema(url))
