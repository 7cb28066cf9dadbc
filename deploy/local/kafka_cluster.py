"""Three Kafka nodes on this machine, from the same jars as the single broker: each a
broker and a controller (a KRaft quorum of three), every topic replicated three times with
two replicas in sync (deploy/local/kafka.py `Quorum`). `make run KAFKA_BROKERS=3` runs
one; the fault suite's cluster run kills its brokers one by one (tests/faults).

Each node keeps its state in `data_dir/node-<id>`, and the cluster's id is kept in
`data_dir/cluster-id`: a cluster stopped and started again is the same cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from deploy.local.kafka import JVM_FLAGS, LocalKafka, Quorum, free_port, random_cluster_id

BROKERS = 3


class LocalKafkaCluster:
    """`size` nodes, started together (none is ready before a majority of controllers
    runs) and stopped together; each node is a `LocalKafka`, to kill and start alone."""

    def __init__(
        self,
        data_dir: Path,
        size: int = BROKERS,
        ports: Sequence[int] | None = None,
        host: str = "127.0.0.1",
        *,
        jvm_flags: Sequence[str] = JVM_FLAGS,
        die_with_parent: bool = False,
        passwords: Mapping[str, str] | None = None,
    ) -> None:
        if size < 1 or (ports is not None and len(ports) != size):
            raise ValueError(f"a cluster of {size} nodes needs {size} ports, not {ports}")
        self.data_dir = Path(data_dir).resolve()
        cluster_id = self._cluster_id()
        client_ports = list(ports) if ports is not None else [free_port() for _ in range(size)]
        # A static quorum's addresses are read from the configuration at every start, not
        # kept: new controller ports each time are as good as the same ones.
        controller_ports = [free_port() for _ in range(size)]
        voters = {node: f"{host}:{port}" for node, port in enumerate(controller_ports, start=1)}
        self.nodes = [
            LocalKafka(
                self.data_dir / f"node-{node}",
                client_ports[node - 1],
                controller_ports[node - 1],
                host,
                jvm_flags=jvm_flags,
                die_with_parent=die_with_parent,
                passwords=passwords,
                quorum=Quorum(node, voters, cluster_id),
            )
            for node in voters
        ]

    def _cluster_id(self) -> str:
        """The id kept from an earlier start, else a new one (and kept)."""
        kept = self.data_dir / "cluster-id"
        if kept.exists():
            return kept.read_text().strip()
        cluster_id = random_cluster_id()
        # A new id is a new cluster: storage formatted for another would not join it.
        for node in self.data_dir.glob("node-*/logs/meta.properties"):
            node.unlink()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        kept.write_text(cluster_id + "\n")
        return cluster_id

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap_servers for node in self.nodes)

    @property
    def secured(self) -> bool:
        return self.nodes[0].secured

    @property
    def passwords(self) -> dict[str, str] | None:
        return self.nodes[0].passwords

    def node(self, node_id: int) -> LocalKafka:
        return self.nodes[node_id - 1]

    def start(self, timeout: float = 90.0) -> None:
        try:
            for node in self.nodes:
                node.launch()
            for node in self.nodes:
                node.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 20.0) -> None:
        """Every node told at once: one by one, the last would wait for a quorum that is
        gone (its controlled shutdown) until killed."""
        for node in self.nodes:
            node.terminate()
        for node in self.nodes:
            node.stop(timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
