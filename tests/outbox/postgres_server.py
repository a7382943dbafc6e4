"""A throwaway PostgreSQL server in a temporary folder, for the test session and the outbox benchmark.

It listens only on a Unix socket inside its own folder (no TCP port, nothing shared with the machine) and runs as
the ``postgres`` user when the tests run as root, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import attrs

BINARIES = ("initdb", "pg_ctl", "postgres")
#: Where this machine's PostgreSQL 15 lives when it is not on PATH.
FALLBACK_DIRS = ("/usr/local/bin", "/usr/lib/postgresql/15/bin")


class PostgresUnavailableError(Exception):
    """The PostgreSQL server binaries are not installed here."""


@attrs.frozen
class PostgresServer:
    """A running server: connect with ``conninfo`` (superuser ``postgres``, trust authentication)."""

    socket_dir: Path
    port: int = 5432

    @property
    def conninfo(self) -> str:
        return f"host={self.socket_dir} port={self.port} user=postgres dbname=postgres"


def find_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    return next((str(Path(d) / name) for d in FALLBACK_DIRS if (Path(d) / name).exists()), None)


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Start a server (initdb, then ``pg_ctl start -w``, which returns once it accepts connections); stop it after."""
    initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise PostgresUnavailableError(f"initdb and pg_ctl not found on PATH or in {', '.join(FALLBACK_DIRS)}")
    folder = Path(tempfile.mkdtemp(prefix="flowmailer-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data = folder / "data"
    try:
        _run([*run_as, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
        options = f"-c listen_addresses='' -c unix_socket_directories={folder} -c port=5432 -c max_connections=200"
        _run(
            [
                *run_as,
                pg_ctl,
                "-D",
                str(data),
                "-l",
                str(folder / "server.log"),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
            ]
        )
        try:
            yield PostgresServer(folder)
        finally:
            _run([*run_as, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"])
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
