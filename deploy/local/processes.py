"""Start, watch and stop the service processes (for `make run` and the e2e tests): the
three of the saga, the operator service (the dashboard's backend) beside them, and the
outside world's simulators (deploy/local/outside_world.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.local.errors import StackError, first_line, log_tail
from deploy.local.kafka import REPO_ROOT, free_port
from deploy.local.lifetime import die_with_parent
from deploy.local.outside_world import CARRIER_SIMULATOR, SIMULATORS, outside_world_for

SERVICES = ("orders", "payments", "provisioning")
OPERATOR = "operator"
OPERATOR_DEFAULT_PORT = 8000


@dataclass
class ServiceProcess:
    """One service as its own OS process: `python -m services.<name>`."""

    name: str
    port: int
    env: dict[str, str]
    log_path: Path | None = None
    # SIGTERM when the thread that started it ends (`make run`; deploy/local/lifetime.py).
    die_with_parent: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, **self.env, "HTTP_PORT": str(self.port), "PYTHONUNBUFFERED": "1"}
        output: Any = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            output = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.name}"],
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGTERM) if self.die_with_parent else None,
        )

    def health(self) -> dict[str, Any] | None:
        """The parsed /health body, or None while the process does not answer."""
        try:
            url = f"{self.base_url}/health"  # always http on loopback
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
                body: dict[str, Any] = json.load(response)
                return body
        except urllib.error.HTTPError as error:
            try:
                unhealthy: dict[str, Any] = json.load(error)
            except ValueError:  # not our health body: a plain error page
                return {"status": f"HTTP {error.code}"}
            return unhealthy
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    def wait_healthy(self, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                tail = self.log_tail()
                reason = first_line(tail, containing=("Error", "error", "Exception"))
                raise StackError(
                    f"{self.name} exited during start-up (exit {self.process.returncode}): "
                    f"{reason}; log: {self.log_path}",
                    details=tail,
                )
            last = self.health()
            if last is not None and last.get("status") in ("ok", "degraded"):  # serving
                return last
            time.sleep(0.25)
        raise StackError(
            f"{self.name} was not healthy after {timeout:.0f}s ({str(last)[:200]}); "
            f"log: {self.log_path}",
            details=self.log_tail(),
        )

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (uvicorn shuts the broker and database down), then SIGKILL."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


def service_process(
    name: str, kafka_servers: str, database_url: str, env: Mapping[str, str], log_path: Path
) -> ServiceProcess:
    """One service on a free port, on the given broker and database (for test stacks)."""
    return ServiceProcess(
        name,
        free_port(),
        env={**env, "KAFKA_BOOTSTRAP_SERVERS": kafka_servers, "DATABASE_URL": database_url},
        log_path=log_path,
    )


@contextmanager
def running(processes: Iterable[ServiceProcess], healthy_within: float = 90.0) -> Iterator[None]:
    """Start every process, wait until all are healthy, and stop them all on the way out.

    When they wrote logs, the last lines of each are printed at the end: pytest shows
    them for a failing test, the services' own account of what happened.
    """
    started = list(processes)
    try:
        for process in started:
            process.start()
        for process in started:
            process.wait_healthy(timeout=healthy_within)
        yield
    finally:
        for process in reversed(started):  # last started, first stopped: clients first
            process.stop()
        print_log_tails(p.log_path for p in started if p.log_path is not None)


def print_log_tails(logs: Iterable[Path], lines: int = 40) -> None:
    for log in sorted(logs):
        if log.exists():
            print(f"----- {log.name} (last {lines} lines) -----")
            print(log_tail(log, lines))


def simulator_processes(
    services: Mapping[str, Iterable[ServiceProcess]],
    databases: Mapping[str, str] | None,
    env: Mapping[str, str],
    log_dir: Path,
    carrier_kafka: Mapping[str, str],
) -> list[ServiceProcess]:
    """The outside world for `services` (name -> its processes): one process of each
    simulator on a free port with its own database (None: an SQLite file each in
    `log_dir`), each service's processes told where its simulator listens and with which
    credentials (deploy/local/outside_world.py). `carrier_kafka` is the carrier's broker
    settings: it publishes its usage reports."""
    simulators = {
        name: service_process(
            name,
            carrier_kafka.get("KAFKA_BOOTSTRAP_SERVERS", ""),
            databases[name] if databases else f"sqlite+aiosqlite:///{log_dir / name}.db",
            {**env, **(carrier_kafka if name == CARRIER_SIMULATOR else {})},
            log_dir / f"{name}.log",
        )
        for name in SIMULATORS
    }
    every = {name: list(processes) for name, processes in services.items()}
    world = outside_world_for(
        {name: [p.base_url for p in processes] for name, processes in every.items()}
        | {name: simulator.base_url for name, simulator in simulators.items()}
    )
    for name, processes in every.items():
        for process in processes:
            process.env |= world.env(name)
    for name, simulator in simulators.items():
        simulator.env |= world.env(name)
    return list(simulators.values())
