"""Clones of this working tree in chosen places, and `make` run in them as a user would.

A clone holds the files `git ls-files` lists (tracked and new, as they are now in the
working tree, times kept), so a case tries the code under test, not the last commit. Its
`.venv` is a new venv that borrows the packages of the one running the tests (one `.pth`
line): `make` then installs what it still misses (the clone itself, editable) in seconds,
and nothing it does can touch this clone's own venv.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psutil  # type: ignore[import-untyped]

from deploy.local.kafka import REPO_ROOT, free_port
from deploy.local.leftovers import MARKER
from deploy.local.postgres import SHARED_HOME

# The ports of a `make run` and the variables that set them.
PORT_VARIABLES = (
    "KAFKA_PORT",
    "PG_PORT",
    "ORDERS_PORT",
    "PAYMENTS_PORT",
    "PROVISIONING_PORT",
    "OPERATOR_PORT",
    "STRIPE_SIMULATOR_PORT",
    "CARRIER_SIMULATOR_PORT",
)
READY = "Ctrl-C stops everything."  # the last line `make run` prints once all is up
FIRST_START_S = 300  # a fresh clone installs itself and fetches Kafka's jars first
HTTP_PORTS = (
    "ORDERS_PORT",
    "PAYMENTS_PORT",
    "PROVISIONING_PORT",
    "OPERATOR_PORT",
    "STRIPE_SIMULATOR_PORT",
    "CARRIER_SIMULATOR_PORT",
)
# What the pytest and make that run us put in the environment, and a clone must not inherit.
NOT_INHERITED = (
    "MAKEFLAGS",
    "MAKELEVEL",
    "MFLAGS",
    "MAKEOVERRIDES",
    "KAFKA_BOOTSTRAP_SERVERS",
    "DATABASE_URL",
    "PG_HOME",
    "VIRTUAL_ENV",
    MARKER,
    *PORT_VARIABLES,
)


def working_tree_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    )
    names = [name.decode() for name in listed.stdout.split(b"\0") if name]
    return [name for name in names if (REPO_ROOT / name).is_file()]  # not the deleted ones


def free_ports() -> dict[str, str]:
    return {variable: str(free_port()) for variable in PORT_VARIABLES}


@dataclass
class Clone:
    root: Path
    ports: dict[str, str] = field(default_factory=free_ports)

    def env(self, **extra: str) -> dict[str, str]:
        """The user's environment (not the test run's), this clone's ports, `extra`."""
        env = {key: value for key, value in os.environ.items() if key not in NOT_INHERITED}
        env = {key: value for key, value in env.items() if not key.startswith("PYTEST_")}
        return {**env, **self.ports, **extra}

    def make(self, *args: str, timeout: float, **extra: str) -> subprocess.CompletedProcess[str]:
        """`make args...` in the clone, to its end; its output joined in `.stdout`."""
        return subprocess.run(
            ["make", *args],
            cwd=self.root,
            env=self.env(**extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start_make_run(self, **extra: str) -> MakeRun:
        return MakeRun(self, self.env(**extra))

    def make_run_until_ready(self, **extra: str) -> MakeRun:
        run = self.start_make_run(**extra)
        run.wait_until_ready()
        return run

    def processes(self) -> list[psutil.Process]:
        """Every live process that belongs to this clone: started by its `make run`, running
        from it, or naming it (or its PostgreSQL folder outside it) on its command line."""
        ours = [str(self.root), *(str(p) for p in self.postgres_homes())]
        found = []
        for process in psutil.process_iter(["cmdline", "environ", "cwd", "status"]):
            info = process.info
            if process.pid == os.getpid() or info["status"] == psutil.STATUS_ZOMBIE:
                continue
            texts = [*(info["cmdline"] or []), info["cwd"] or ""]
            if (info["environ"] or {}).get(MARKER) == str(self.root) or any(
                place in text for text in texts for place in ours
            ):
                found.append(process)
        return found

    def postgres_homes(self) -> list[Path]:
        """The clone's PostgreSQL folder outside it, when it has one (it names the clone)."""
        if not SHARED_HOME.is_dir():
            return []
        return [
            home.parent
            for home in SHARED_HOME.glob("*/clone")
            if home.read_text().strip() == str(self.root)
        ]

    def listening_ports(self) -> set[int]:
        wanted = {int(port) for port in self.ports.values()}
        try:
            connections = psutil.net_connections(kind="tcp")
        except psutil.Error:
            return set()
        return {
            c.laddr.port
            for c in connections
            if c.status == psutil.CONN_LISTEN and c.laddr.port in wanted
        }

    def wait_until_nothing_runs(self, within: float) -> None:
        """Fail with what is still running if the clone's processes or ports outlive `within`."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            left, ports = self.processes(), self.listening_ports()
            if not left and not ports:
                return
            time.sleep(0.5)
        raise AssertionError(f"still running after {within:.0f}s: {describe(left)}; ports {ports}")

    def healthy(self) -> dict[str, int]:
        """The HTTP status of every service's /health."""
        statuses = {}
        for variable in HTTP_PORTS:
            url = f"http://127.0.0.1:{self.ports[variable]}/health"
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    statuses[variable] = response.status
            except OSError:
                statuses[variable] = 0
        return statuses

    def cleanup(self) -> None:
        for process in self.processes():
            try:
                process.kill()
            except psutil.Error:
                continue
        for home in self.postgres_homes():
            shutil.rmtree(home, ignore_errors=True)


def make_clone(where: Path) -> Clone:
    """A clone of the working tree at `where` (made, with its parents), with its venv."""
    where.mkdir(parents=True)
    for name in working_tree_files():
        target = where / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target)
    python = shutil.which("python3.11") or sys.executable
    subprocess.run([python, "-m", "venv", str(where / ".venv")], check=True, timeout=120)
    borrowed = Path(sysconfig.get_paths()["purelib"])
    site = Path(
        sysconfig.get_paths(vars={"base": str(where / ".venv"), "platbase": str(where / ".venv")})[
            "purelib"
        ]
    )
    (site / "borrowed-from-the-test-run.pth").write_text(f"{borrowed}\n")
    return Clone(where.resolve())


class MakeRun:
    """`make run` in the foreground of a terminal of its own (a process group, as a shell
    gives it), its output in a file."""

    def __init__(self, clone: Clone, env: dict[str, str]) -> None:
        self.clone = clone
        self.output_path = clone.root.parent / f"make-run-{time.monotonic_ns()}.log"
        self._output: IO[bytes] = self.output_path.open("wb")
        self.process = subprocess.Popen(
            ["make", "run"],
            cwd=clone.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float) -> None:
        """Until `text` is in the output; fails with the output if it exits or times out."""
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.process.poll() is not None:
                raise AssertionError(f"make run exited ({self.process.returncode}):\n{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} within {timeout:.0f}s:\n{self.output}")
            time.sleep(0.2)

    def wait_until_ready(self, timeout: float = FIRST_START_S) -> None:
        """Until it prints that everything is up; killed (and failing) if it does not."""
        try:
            self.wait_for(READY, timeout)
        except AssertionError:
            self.signal_group(signal.SIGKILL)
            raise

    def stop_with_ctrl_c(self) -> None:
        """Ctrl-C, then nothing of the clone runs any more."""
        self.signal_group(signal.SIGINT)
        self.wait(90)
        assert "stopping ..." in self.output, self.output
        self.clone.wait_until_nothing_runs(within=30)

    def signal_group(self, sig: signal.Signals) -> None:
        """As a terminal does: Ctrl-C is SIGINT to the whole foreground group."""
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            return

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            self._output.close()


def describe(processes: Iterable[psutil.Process]) -> str:
    described = []
    for process in processes:
        try:
            described.append(f"{process.pid} {' '.join(process.cmdline())[:120]}")
        except psutil.Error:
            described.append(f"{process.pid} (gone)")
    return "; ".join(described) or "no process"
