"""What only the postgresql backend has to prove: the shared contract is in
``test_store.py`` (run on every backend); here are one clock for ownership,
simulated time over real I/O, the schema, and bad input.

Processes and faults (several OS processes, SIGKILL, a server restart) are
in ``test_store_postgres_processes.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from runtime import Runtime, run
from runtime._clock import reads_real_time
from runtime._errors import StoreError, StoreURLError
from runtime.cli import main
from runtime.store import Append, Put, Store, open_store
from runtime.store._postgres import PostgresStore
from tests._postgres import ThrowawayPostgres

# -- one clock for ownership ----------------------------------------------------------


def test_which_clocks_read_real_time() -> None:
    assert reads_real_time(time.time) and reads_real_time(time.monotonic)
    assert not reads_real_time(lambda: 5.0)

    async def wall_of_runtime() -> bool:
        async with Runtime() as rt:
            return reads_real_time(rt.clock.wall)

    assert run(wall_of_runtime) is True
    assert run(wall_of_runtime, simulated=True) is False


async def test_processes_with_skewed_clocks_cannot_both_hold_a_lease(
    postgres_url: Callable[..., str]
) -> None:
    """``time.monotonic`` (seconds since boot) and ``time.time`` (since 1970) disagree by
    decades: judged by either process's clock, the other's lease would look long
    expired. Judged by the database's clock, the second acquire is refused."""
    url = postgres_url()
    async with await open_store(url, clock=time.monotonic) as booted, \
            await open_store(url, clock=time.time) as epoch:
        assert isinstance(booted, PostgresStore) and booted.database_clock
        held = await booted.acquire("lease/p0", "booted", 30)
        assert held is not None
        assert abs(held.expires_at - (time.time() + 30)) < 5  # database epoch time
        assert await epoch.acquire("lease/p0", "epoch", 30) is None
        assert await epoch.lease("lease/p0") == held
        assert [lease.owner for lease in await epoch.leases("lease/")] == ["booted"]
        assert await epoch.revoke("lease/p0")
        taken = await epoch.acquire("lease/p0", "epoch", 30)
        assert taken is not None and taken.token == held.token + 1
        assert await booted.acquire("lease/p0", "booted", 30) is None
        assert await booted.release("lease/p0", "booted", held.token) is False
        assert await epoch.release("lease/p0", "epoch", taken.token) is True


async def test_a_test_clock_is_used_as_given(postgres_url: Callable[..., str]) -> None:
    now = [1_000.0]
    async with await open_store(postgres_url(), clock=lambda: now[0]) as store:
        assert isinstance(store, PostgresStore) and not store.database_clock
        lease = await store.acquire("lease/x", "me", 10)
        assert lease is not None and lease.expires_at == 1_010.0
        now[0] = 1_010.0
        assert await store.lease("lease/x") is None


async def test_a_name_text_cannot_hold_fails_its_write_alone(
    postgres_url: Callable[..., str]
) -> None:
    async with await open_store(postgres_url(), clock=time.time) as store:
        results = await asyncio.gather(
            store.write([Put("ok", b"v")]), store.write([Put("nul\x00key", b"v")]),
            store.write([Append("log", [("\ud800", b"v")])]), return_exceptions=True)
        assert not isinstance(results[0], BaseException)
        assert isinstance(results[1], StoreError) and "NUL" in str(results[1])
        assert isinstance(results[2], StoreError) and "UTF-8" in str(results[2])
        assert await store.get("ok") is not None and await store.high_water("log") == 0


# -- simulated time over real I/O -------------------------------------------------------


def test_virtual_time_stands_still_while_the_database_answers(
    postgres_url: Callable[..., str]
) -> None:
    """A timer is pending (a task sleeps 5 virtual seconds) while store calls wait on
    the socket: without ``real_io`` the loop, finding nothing runnable, would jump to
    the timer during the first reply."""
    url = postgres_url()

    async def main() -> list[float]:
        async with Runtime(store=url) as rt:
            sleeper = asyncio.create_task(rt.sleep(5.0))
            seen = [rt.now()]
            for i in range(20):
                await rt.store.write([Put(f"k{i}", b"v")])
                await rt.store.get(f"k{i}")
                seen.append(rt.now())
            sleeper.cancel()
            return seen

    seen = run(main, simulated=True, seed=3)
    assert seen == [seen[0]] * len(seen)


def test_a_simulated_runtime_judges_leases_by_virtual_time(
    postgres_url: Callable[..., str]
) -> None:
    url = postgres_url()

    async def main() -> tuple[bool, bool]:
        async with Runtime(store=url) as rt:
            lease = await rt.store.acquire("lease/sim", "me", 60)
            assert lease is not None
            await rt.sleep(59)
            before = await rt.store.lease("lease/sim") is not None
            await rt.sleep(2)
            return before, await rt.store.lease("lease/sim") is not None

    assert run(main, simulated=True, seed=1) == (True, False)


# -- schema ---------------------------------------------------------------------------


def catalog(server: ThrowawayPostgres, schema: str) -> str:
    """The schema's tables with their row counts, and the meta row: to compare before/after."""
    tables = server.psql(f"SELECT tablename FROM pg_tables WHERE schemaname = '{schema}' "
                         "ORDER BY tablename").split()
    counts = [server.psql(f'SELECT count(*) FROM "{schema}"."{t}"').strip() for t in tables]
    return ",".join(f"{t}={c}" for t, c in zip(tables, counts, strict=True))


async def test_schema_is_created_in_the_named_schema_with_a_version_row(
    postgres_server: ThrowawayPostgres,
) -> None:
    url = postgres_server.url("orders_store")
    async with await open_store(url, clock=time.time) as store:
        await store.write([Put("k", b"v")])
    assert postgres_server.psql('SELECT schema_version FROM "orders_store".meta').strip() == "2"
    assert catalog(postgres_server, "orders_store") == (
        "leases=0,log_entries=0,logs=0,meta=1,records=1")
    async with await open_store(url, clock=time.time) as again:  # reopened as it is
        assert await again.get("k") is not None
    bare = postgres_server.url().replace("?schema=shardline", "")
    async with await open_store(bare, clock=time.time) as default:
        assert "schema 'shardline'" in repr(default)
    assert postgres_server.psql("SELECT count(*) FROM shardline.meta").strip() == "1"


@pytest.mark.parametrize(("tamper", "expected"), [
    ("UPDATE {s}.meta SET schema_version = 3", ["schema version 3", "newer"]),
    ("UPDATE {s}.meta SET schema_version = 0", ["schema version 0"]),
    ("DELETE FROM {s}.meta", ["no version row"]),
    ("DROP TABLE {s}.meta", ["not a Shardline store"]),
])
async def test_unknown_or_newer_schema_is_refused_and_left_untouched(
    postgres_server: ThrowawayPostgres, tamper: str, expected: list[str]
) -> None:
    schema = f"tampered_{abs(hash(tamper)) % 10_000}"
    url = postgres_server.url(schema)
    async with await open_store(url, clock=time.time) as store:
        await store.append("log", [("k", b"v")])
    postgres_server.psql(tamper.format(s=schema))
    before = catalog(postgres_server, schema)
    with pytest.raises(StoreError) as refused:
        await open_store(url, clock=time.time)
    message = str(refused.value)
    assert all(part in message for part in expected), message
    assert f"port {postgres_server.port}" in message and "left untouched" in message
    assert catalog(postgres_server, schema) == before


async def test_a_foreign_schema_is_refused_and_left_untouched(
    postgres_server: ThrowawayPostgres,
) -> None:
    postgres_server.psql("CREATE SCHEMA billing; CREATE TABLE billing.invoices (id int); "
                         "INSERT INTO billing.invoices VALUES (1)")
    with pytest.raises(StoreError, match=r"'billing' exists but is not a Shardline store"):
        await open_store(postgres_server.url("billing"), clock=time.time)
    assert catalog(postgres_server, "billing") == "invoices=1"


async def test_an_empty_schema_made_for_the_role_gets_the_tables(
    postgres_server: ThrowawayPostgres,
) -> None:
    """A DBA creates the schema for a role that may not create schemas itself."""
    postgres_server.psql("CREATE ROLE appuser LOGIN PASSWORD 'app-pw'; "
                         "CREATE SCHEMA appschema AUTHORIZATION appuser")
    url = postgres_server.url("appschema", user="appuser", password="app-pw")
    async with await open_store(url, clock=time.time) as store:
        await store.append("log", [("k", b"v")])
    assert catalog(postgres_server, "appschema") == (
        "leases=0,log_entries=1,logs=1,meta=1,records=0")


# -- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "expected"), [
    ("postgresql://u:hunter2@h/db?schema=1x", ["schema='1x'"]),
    ("postgresql://u:hunter2@h/db?pool_size=1", ["pool_size='1'", "2 to 64"]),
    ("postgresql://u:hunter2@h/db?sslmode=maybe", ["sslmode='maybe'", "verify-full"]),
    ("postgresql://u:hunter2@h/db?timeout=5", ["unknown option 'timeout'", "connect_timeout"]),
    ("postgresql://u:hunter2@/db", ["names no host"]),
    ("postgresql://u:hunter2@h:99999/db", ["bad port"]),
    ("postgresql://u:hunter2@h", ["one database name"]),
    ("postgresql://u:hunter2@h/a/b", ["one database name"]),
])
async def test_bad_postgresql_urls_are_refused_without_the_password(
    url: str, expected: list[str]
) -> None:
    with pytest.raises(StoreURLError) as refused:
        await open_store(url, clock=time.time)
    message = str(refused.value)
    assert all(part in message for part in expected), message
    assert "hunter2" not in message and "u:***@" in message


SECRET = "s3cr3t-Never-Shown"


def bad_targets(server: ThrowawayPostgres, free_port: int) -> dict[str, tuple[str, list[str]]]:
    """name -> (store URL, words the error must hold); each URL carries ``SECRET``."""
    server.psql("DO $$ BEGIN CREATE ROLE weakling LOGIN PASSWORD '" + SECRET + "'; "
                "EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    where = f"host 127.0.0.1, port {server.port}"
    return {
        "unreachable": (f"postgresql://app:{SECRET}@127.0.0.1:{free_port}/shardline",
                        [f"host 127.0.0.1, port {free_port}", "database 'shardline'",
                         "cannot connect", "unreachable"]),
        "wrong password": (server.url(password=SECRET),
                           [where, "database 'postgres'", "authentication failed"]),
        "missing database": (server.url(database="nowhere"),
                             [where, "database 'nowhere'", "does not exist"]),
        "missing privileges": (server.url("locked_out", user="weakling", password=SECRET),
                               [where, "database 'postgres'", "user 'weakling'",
                                "cannot prepare schema 'locked_out'", "missing privilege"]),
    }


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.parametrize("case", ["unreachable", "wrong password", "missing database",
                                  "missing privileges"])
def test_cli_exits_2_naming_server_and_cause_never_the_password(
    postgres_server: ThrowawayPostgres, case: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, expected = bad_targets(postgres_server, free_port())[case]
    scenario = Path(__file__).resolve().parents[1] / "scenarios" / "stream_quickstart.toml"
    out = tmp_path / "out"
    assert main(["run", str(scenario), "--store", url, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert all(part in captured.err for part in expected), captured.err
    assert str(scenario) in captured.err
    assert "Traceback" not in captured.err
    written = "".join(p.read_text(errors="replace") for p in out.rglob("*") if p.is_file())
    assert SECRET not in captured.err + captured.out + written


async def test_store_calls_fail_with_store_error_when_the_server_is_gone(
    postgres_url: Callable[..., str],
) -> None:
    """A closed pool stands in for a vanished server here; the real restart is tested
    with processes. Every call raises ``StoreError``, none a driver exception."""
    store: Store = await open_store(postgres_url(), clock=time.time)
    assert isinstance(store, PostgresStore)
    store._pool.terminate()
    for call in (store.get("k"), store.write([Put("k", b"v")]), store.high_water("log"),
                 store.acquire("lease", "me", 5), store.scan("")):
        with pytest.raises(StoreError, match=r"postgresql store at host 127\.0\.0\.1"):
            await call
    await store.close()


def test_missing_server_binaries_fail_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without PostgreSQL installed the fixture raises (never skips), saying what to do."""
    from tests import _postgres

    monkeypatch.setattr(_postgres.glob, "glob", lambda pattern: [])
    with pytest.raises(_postgres.PostgresUnavailable, match="apt-get install postgresql"):
        _postgres.ThrowawayPostgres()


async def test_a_version_1_schema_is_upgraded_in_place_with_its_entries(
    postgres_server: ThrowawayPostgres,
) -> None:
    url = postgres_server.url("before_floors")
    async with await open_store(url, clock=time.time) as store:
        await store.append("log", [("a", b"1"), ("b", b"2")])
    postgres_server.psql('ALTER TABLE "before_floors".logs DROP COLUMN floor; '
                         'UPDATE "before_floors".meta SET schema_version = 1')
    async with await open_store(url, clock=time.time) as store:
        assert (await store.floor("log"), await store.high_water("log")) == (0, 2)
        assert await store.truncate("log", 1) == 1
        assert [e.key for e in await store.read("log", 1, 10)] == ["b"]
    assert postgres_server.psql('SELECT schema_version FROM "before_floors".meta').strip() == "2"
