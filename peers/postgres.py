"""A real PostgreSQL server for the tests: Debian's package, a throwaway cluster on 127.0.0.1.

``start_postgres(folder)`` runs ``initdb`` into ``folder`` (trust authentication on loopback, no
fsync: the data dies with the test run), starts ``postgres`` on a free port listening on
127.0.0.1 only, with its socket directory inside ``folder``, and returns a :class:`Postgres`
handle whose :meth:`Postgres.create_database` gives a fresh database URL. PostgreSQL refuses to
run as root, so as root the cluster belongs to Debian's ``postgres`` user and every server
command runs as that user (``runuser``); otherwise everything runs as the current user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

_BIN_ROOT = Path("/usr/lib/postgresql")


def bin_dir() -> Path | None:
    """The newest installed server's ``bin`` folder (Debian keeps them per major version)."""
    if not _BIN_ROOT.is_dir():
        return None
    found = [
        path / "bin"
        for path in _BIN_ROOT.iterdir()
        if (path / "bin" / "initdb").is_file() and path.name.isdigit()
    ]
    return max(found, key=lambda path: int(path.parent.name)) if found else None


def available() -> bool:
    return bin_dir() is not None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_server_user() -> list[str]:
    """The command prefix that runs a server command as a user PostgreSQL accepts."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


@dataclass
class Postgres:
    host: str
    port: int
    user: str
    root: Path
    bin: Path
    process: subprocess.Popen[bytes]
    _databases: list[str] = field(default_factory=list)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        done = subprocess.run(
            [
                *(str(self.bin / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"),
                *("-d", self.url(database), "-c", sql),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        self.psql(f'CREATE DATABASE "{name}"')
        self._databases.append(name)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def log(self) -> str:
        path = self.root / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: smart shutdown
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(folder: Path, *, max_connections: int = 300) -> Postgres:
    """Start a throwaway cluster in ``folder`` (which must not exist yet or be empty)."""
    found = bin_dir()
    if found is None:
        raise RuntimeError("PostgreSQL is not installed (scripts/install-test-services.sh)")
    prefix = _as_server_user()
    user = "postgres" if prefix else pwd.getpwuid(os.geteuid()).pw_name
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data"
    sockets = folder / "run"
    sockets.mkdir(exist_ok=True)
    if prefix:
        entry = pwd.getpwnam("postgres")
        for path in (folder, sockets):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        # the server user must be able to reach the folder through its parents
        parent = folder.parent
        while parent != parent.parent:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, mode | 0o001)
            parent = parent.parent
    subprocess.run(
        [
            *(*prefix, str(found / "initdb"), "-D", str(data), "-U", user, "--auth=trust"),
            *("--no-sync", "-E", "UTF8", "--locale=C.UTF-8"),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = _free_port()
    log = (folder / "postgres.log").open("wb")
    if prefix:
        os.chown(folder / "postgres.log", pwd.getpwnam("postgres").pw_uid, -1)
    process = subprocess.Popen(
        [
            *(*prefix, str(found / "postgres"), "-D", str(data), "-p", str(port)),
            *("-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={sockets}"),
            *("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"),
            *("-c", f"max_connections={max_connections}", "-c", "shared_buffers=128MB"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    server = Postgres("127.0.0.1", port, user, folder, found, process)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"postgres exited at start:\n{server.log()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                pass
            server.psql("SELECT 1")
            return server
        except (OSError, RuntimeError):
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError("postgres did not start within 60 s") from None
            time.sleep(0.2)
