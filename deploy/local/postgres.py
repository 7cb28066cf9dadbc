"""A throw-away PostgreSQL cluster from the distribution's binaries, no Docker.

`initdb` into a folder of ours, `postgres` on its own port, stopped by us. As
root (CI, this dev machine) the server runs as the `postgres` system user,
because PostgreSQL refuses to run as root; its folders are then where that user
can reach them (see pg_home), whatever the clone's location.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from deploy.local.errors import StackError, first_line, log_tail
from deploy.local.kafka import REPO_ROOT, free_port
from deploy.local.lifetime import die_with_parent

PG_ROOT = REPO_ROOT / "var" / "pg"
# Where the clusters go when the postgres user cannot enter the clone (a clone under
# /root, mode 700): a folder per clone, named by a hash of the clone's path.
SHARED_HOME = Path("/var/tmp/topup-billing-pg")  # noqa: S108 (checked: root-owned, 0711)
POSTGRES_USER = "postgres"


def bin_dir() -> Path:
    """The newest PostgreSQL server binaries: $PG_BIN, Debian's layout, or $PATH."""
    if env := os.environ.get("PG_BIN"):
        return Path(env)
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise RuntimeError(
        "PostgreSQL server binaries not found: install Debian's 'postgresql' package "
        "(make install-postgres) or set PG_BIN"
    )


def server_version() -> str:
    out = subprocess.run(
        [str(bin_dir() / "postgres"), "--version"], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def _as_server_user() -> dict[str, Any]:
    """Popen's arguments that run a server binary as `postgres` when we are root."""
    if os.geteuid() != 0:
        return {}
    return {"user": POSTGRES_USER, "group": POSTGRES_USER, "extra_groups": []}


@functools.cache
def pg_home() -> Path:
    """The folder our clusters live in: var/pg in the clone when the server's user can
    enter it (always, unless we are root), else a folder of this clone's own under
    SHARED_HOME; PG_HOME overrides both."""
    if given := os.environ.get("PG_HOME"):
        return Path(given).resolve()
    if os.geteuid() != 0:
        return PG_ROOT
    PG_ROOT.mkdir(parents=True, exist_ok=True)
    if _server_user_can_enter(PG_ROOT):
        return PG_ROOT
    return shared_home_of_this_clone()


def why_not_in_clone() -> str | None:
    """When the clusters are not under var/pg: which folder the server's user cannot enter."""
    if pg_home() == PG_ROOT or os.environ.get("PG_HOME"):
        return None
    blocked = next(
        (f for f in [*reversed(PG_ROOT.parents), PG_ROOT] if not _server_user_can_enter(f)),
        PG_ROOT,
    )
    mode = stat.filemode(blocked.stat().st_mode)
    return f"the {POSTGRES_USER} user cannot enter {blocked} ({mode})"


def _server_user_can_enter(folder: Path) -> bool:
    """Asked of the system as that user, so modes, owners, groups and ACLs all count."""
    probe = subprocess.run(["test", "-x", str(folder)], check=False, **_as_server_user())
    return probe.returncode == 0


def shared_home_of_this_clone() -> Path:
    """This clone's folder under SHARED_HOME (made when a cluster first starts there)."""
    return SHARED_HOME / hashlib.sha256(str(REPO_ROOT).encode()).hexdigest()[:12]


def _make_shared_home(home: Path) -> None:
    for folder in (SHARED_HOME, home):
        folder.mkdir(mode=0o711, exist_ok=True)
        info = folder.lstat()
        # In a world-writable /var/tmp: use it only if it is ours and nobody else's to change.
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o022:
            raise StackError(
                f"{folder} is not a folder of root's that only root can change: remove it, "
                "or set PG_HOME to a folder the postgres user can enter"
            )
    (home / "clone").write_text(f"{REPO_ROOT}\n")  # which clone these clusters belong to


def cluster_dir(name: str) -> Path:
    """The folder of cluster `name` (e.g. 'run' for `make run`)."""
    return pg_home() / name


@contextmanager
def scratch_postgres(
    prefix: str, *, fsync: bool = False, settings: Mapping[str, str] | None = None
) -> Iterator[LocalPostgres]:
    """A cluster of its own in a new folder, started, then stopped and removed."""
    data_dir = cluster_dir(f"{prefix}-{uuid.uuid4().hex[:8]}")
    try:
        with LocalPostgres(data_dir, fsync=fsync, settings=settings) as server:
            yield server
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


class LocalPostgres:
    """One cluster in `data_dir`. `die_with_parent`: the server gets a fast shutdown when
    the thread that started it ends (`make run`; see deploy/local/lifetime.py). `settings`:
    more server settings (`-c name=value`), e.g. the bench's pg_stat_statements."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        fsync: bool = False,
        die_with_parent: bool = False,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.settings = dict(settings or {})
        self.port = port or free_port()
        self.fsync = fsync
        self.die_with_parent = die_with_parent
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 60.0) -> None:
        if self.data_dir.parent == shared_home_of_this_clone():
            _make_shared_home(self.data_dir.parent)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            user = pwd.getpwnam(POSTGRES_USER)
            os.chown(self.data_dir, user.pw_uid, user.pw_gid)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        self._forget_a_dead_servers_lock()
        # TCP only: a Unix socket's path has a length limit that a deep clone would pass.
        command = [
            str(bin_dir() / "postgres"),
            "-D", str(self.pgdata),
            "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1",
            "-c", "unix_socket_directories=",
            "-c", f"fsync={'on' if self.fsync else 'off'}",
            "-c", "max_connections=200",
            *(arg for name, value in self.settings.items() for arg in ("-c", f"{name}={value}")),
        ]  # fmt: skip
        preexec: Callable[[], None] | None = None
        if self.die_with_parent:
            preexec = die_with_parent(signal.SIGINT)  # SIGINT: PostgreSQL's fast shutdown
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                cwd=self.data_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=preexec,
                **_as_server_user(),
            )
        self._wait_ready(timeout)

    def _initdb(self) -> None:
        """initdb into a scratch folder, then rename it: a run killed halfway leaves no
        half-made cluster that the next start would take for a whole one."""
        scratch = self.data_dir / "pgdata.initdb"
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(self.pgdata, ignore_errors=True)  # no PG_VERSION: never a whole cluster
        command = [
            str(bin_dir() / "initdb"),
            "-D", str(scratch),
            "-U", "postgres",
            "-A", "trust",
            "-E", "UTF8",
            "--no-sync",
        ]  # fmt: skip
        result = subprocess.run(
            command,
            cwd=self.data_dir,
            capture_output=True,
            text=True,
            check=False,
            **_as_server_user(),
        )
        if result.returncode != 0:
            reason = first_line(result.stderr, containing=("error", "FATAL", "denied"))
            raise StackError(
                f"PostgreSQL's initdb failed in {self.data_dir}: {reason}. "
                "Check that the postgres user can write there, or set PG_HOME to a folder it can",
                details=result.stdout + result.stderr,
            )
        scratch.rename(self.pgdata)

    def _forget_a_dead_servers_lock(self) -> None:
        """A server killed with SIGKILL leaves postmaster.pid; PostgreSQL refuses to start
        while the pid in it names a live process, which after a reboot or in a container
        may be any process. Removed when that pid is not a postgres on this pgdata."""
        lock = self.pgdata / "postmaster.pid"
        try:
            pid = int(lock.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            if lock.exists():
                lock.unlink()  # its pid is no process at all
            return
        except (OSError, ValueError, IndexError):
            return  # unreadable: let PostgreSQL judge it
        if str(self.pgdata).encode() not in cmdline:
            lock.unlink()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                tail = self._log_tail()
                raise StackError(
                    "PostgreSQL exited during start-up: "
                    f"{first_line(tail, containing=('FATAL', 'ERROR', 'PANIC'))}; "
                    f"log: {self.log_file}",
                    details=tail,
                )
            ready = subprocess.run(
                [str(bin_dir() / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.2)
        self.stop()
        raise StackError(
            f"PostgreSQL was not ready after {timeout:.0f}s; log: {self.log_file}",
            details=self._log_tail(),
        )

    def _log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_file, lines)

    def create_database(self, name: str) -> str:
        """Create `name` if it does not exist; return its SQLAlchemy URL."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"not a plain database name: {name!r}")
        psql = [str(bin_dir() / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        query = f"SELECT 1 FROM pg_database WHERE datname = '{name}'"  # noqa: S608
        exists = subprocess.run([*psql, "-tAc", query], capture_output=True, text=True, check=True)
        if exists.stdout.strip() != "1":
            subprocess.run([*psql, "-qc", f'CREATE DATABASE "{name}"'], check=True)
        return self.url(name)

    def stop(self, timeout: float = 20.0, *, immediate: bool = False) -> None:
        """Fast shutdown (SIGINT: sessions ended, a checkpoint written), or `immediate`
        (SIGQUIT: no checkpoint, crash recovery at the next start); SIGKILL if it does not
        go in time."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGQUIT if immediate else signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def __enter__(self) -> LocalPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Run a local PostgreSQL cluster.")
    parser.add_argument("--port", type=int, default=5432)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--databases", default="orders,payments,provisioning")
    args = parser.parse_args()
    with LocalPostgres(args.data_dir or cluster_dir("run"), args.port, fsync=True) as pg:
        for name in filter(None, args.databases.split(",")):
            print(pg.create_database(name), flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})


if __name__ == "__main__":
    main()
