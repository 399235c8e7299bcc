"""A throwaway PostgreSQL server on loopback, for tests and benchmarks.

``ThrowawayPostgres`` runs ``initdb`` into a temporary directory and starts
``postgres`` on 127.0.0.1 and a free port (its unix socket in that directory
too), from the Debian packages' binaries under ``/usr/lib/postgresql/*/bin``.
``initdb`` refuses to run as root, so under root every server command runs
as the ``postgres`` user (``runuser``) and the directory is handed to it.
Missing binaries raise ``PostgresUnavailable`` (CI installs the package:
see ``.ci/run``); nothing is skipped.

The superuser ``postgres`` logs in over TCP with a generated password
(``scram-sha-256``), so tests can also exercise wrong passwords and roles
without privileges. ``url(schema)`` gives a store URL for one schema of the
``postgres`` database: tests share one server and isolate by schema.

``durable=False`` (tests) turns ``fsync`` off: an acknowledged commit still
survives a crash of any *process* (the server's included), only not of the
machine. Benchmarks keep the default, ``durable=True``.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are not installed (or the server did not start)."""


def find_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb``."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if not found:
        raise PostgresUnavailable(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: install "
            "them with `apt-get install postgresql` (.ci/run does this)")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ThrowawayPostgres:
    """One PostgreSQL server in a temporary directory; ``with`` starts and removes it."""

    def __init__(self, *, durable: bool = False) -> None:
        self.bin_dir = find_bin_dir()
        self.durable = durable
        self.password = "pw-" + secrets.token_hex(8)
        self.port = 0
        self.directory = Path(tempfile.mkdtemp(prefix="shardline-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"
        self._as_root = os.geteuid() == 0

    # -- urls ------------------------------------------------------------------

    def url(self, schema: str = "shardline", *, user: str = "postgres",
            password: str | None = None, database: str = "postgres", **options: str) -> str:
        """A store URL on this server; the superuser's password unless one is given."""
        query = "&".join(f"{k}={v}" for k, v in {"schema": schema, **options}.items())
        secret = self.password if password is None else password
        return f"postgresql://{user}:{secret}@127.0.0.1:{self.port}/{database}?{query}"

    # -- lifecycle -------------------------------------------------------------

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / argv[0]), *argv[1:]]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False,
                              cwd=self.directory)
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise PostgresUnavailable(
                f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()}\n{log[-2000:]}")
        return done

    def start(self) -> ThrowawayPostgres:
        pwfile = self.directory / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._as_root:
            shutil.chown(self.directory, "postgres")
            shutil.chown(pwfile, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-E", "UTF8",
                  "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256",
                  f"--pwfile={pwfile}")
        pwfile.unlink()
        self.port = _free_port()
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.directory),
            "fsync": "on" if self.durable else "off",
            "max_connections": "200",
            "shared_buffers": "128MB",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = '{value}'\n" for name, value in settings.items())
        self.pg_ctl("start")
        return self

    def pg_ctl(self, action: str, *extra: str) -> None:
        """``pg_ctl start|stop|restart`` and wait; ``("restart", "-m", "immediate")`` crashes."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                  action, *extra)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` as the superuser over the unix socket; its output, unaligned."""
        return self._run("psql", "-h", str(self.directory), "-p", str(self.port),
                         "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1",
                         "-qAt", "-c", sql).stdout

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.pg_ctl("stop", "-m", "immediate")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> ThrowawayPostgres:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
