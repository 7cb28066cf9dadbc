"""`make clean`: the clone's state (data, logs, clusters, broker), never under a running
`make run`; also the clusters kept outside the clone when the postgres user could not enter
it (deploy/local/postgres.py). The standard library only: it runs without the venv."""

from __future__ import annotations

import shutil
import sys

from deploy.local.kafka import REPO_ROOT
from deploy.local.lock import holder, is_held
from deploy.local.postgres import SHARED_HOME, shared_home_of_this_clone

STATE = (
    "var/data", "var/log", "var/pg", "var/kafka/run", "var/kafka/cluster", "var/run", "test-results"
)  # fmt: skip
CACHES = (".pytest_cache", ".mypy_cache", ".ruff_cache")


def main() -> int:
    if is_held():
        print(f"make clean: make run is running in this clone ({holder()}): stop it first")
        return 1
    for name in (*STATE, *CACHES):
        shutil.rmtree(REPO_ROOT / name, ignore_errors=True)
    outside = shared_home_of_this_clone()
    if outside.is_dir():
        shutil.rmtree(outside, ignore_errors=True)
        print(f"removed {outside} (this clone's PostgreSQL clusters under {SHARED_HOME})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
